"""The backfill publisher under backpressure: a pause while it waits for the tag queue waits
too (it used to end the publisher with the page's sent tasks uncounted), and a cancel there
counts what already went out."""

from __future__ import annotations

import threading
import time

import pytest

from handlers.publish import CeleryPublisher
from sightline.backfill.run import Backfill, Pacing
from sightline.backfill.select import Work
from tests.support import object_task
from workers import jobs
from workers.db import connect


class Queue:
    """A tag queue depth the test sets: full stops the publisher at its next chunk."""

    def __init__(self) -> None:
        self.full = False

    def depth(self) -> int:
        return 10 if self.full else 0


def _start(db_url: str, redis_url: str, queue: Queue, n: int):
    conn = connect(db_url)
    with conn, conn.cursor() as cur:
        job_id = jobs.create(cur, "backfill", {"test": True})
    pacing = Pacing(max_queue=5, chunk=2, poll_s=0.02, depth=queue.depth)
    publisher = CeleryPublisher(redis_url, {}, bulk=True)
    sent: list[int] = []
    real = publisher.publish

    def publish(tasks):
        sent.append(len(tasks))
        queue.full = True  # the queue fills after each chunk
        return real(tasks)

    publisher.publish = publish
    work = Work(listed=n, tasks=[object_task("b", f"users/alice/{i}.jpg") for i in range(n)],
                counted=0, position={"page": 1})  # fmt: skip
    runner = Backfill(conn, job_id, publisher, pacing)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(out=runner.run(iter([work]))))
    thread.start()
    for _ in range(200):  # until the first chunk went out and the publisher waits
        if sent:
            break
        time.sleep(0.02)
    return job_id, thread, result, sent, conn


def _counts(db, job_id: int) -> tuple[str, int]:
    with db, db.cursor() as cur:
        job = jobs.get(cur, job_id)
    return job.state, job.published


@pytest.mark.parametrize("then", ["resume", "cancel"])
def test_a_pause_while_the_queue_is_full_waits(db, db_url, redis_url, then) -> None:
    queue = Queue()
    job_id, thread, result, sent, conn = _start(db_url, redis_url, queue, 6)
    with db, db.cursor() as cur:
        jobs.move(cur, job_id, "paused")
    time.sleep(0.3)
    assert thread.is_alive() and sent == [2]  # waiting, not gone
    # the page's sent chunk shows before its checkpoint (published read 0 for a whole page)
    assert _counts(db, job_id) == ("paused", 2)
    with db, db.cursor() as cur:
        jobs.move(cur, job_id, "running" if then == "resume" else "cancelled")
    if then == "resume":
        queue.full = False

        def drain() -> None:  # the workers take each chunk
            while thread.is_alive():
                queue.full = False
                time.sleep(0.01)

        threading.Thread(target=drain, daemon=True).start()
    thread.join(10)
    conn.close()
    assert not thread.is_alive()
    out = result["out"]
    if then == "resume":
        assert sent == [2, 2, 2] and out.published == 6
        assert _counts(db, job_id) == ("running", 6)  # done when the workers count them
    else:
        assert sent == [2] and out.published == 2 and out.state == "cancelled"
        assert out.listed == 6  # the page was listed; its checkpoint was never written
        assert _counts(db, job_id) == ("cancelled", 2)


def test_a_chunk_is_never_more_than_the_queue_may_hold() -> None:
    """The depth is checked between chunks: a 500-task chunk overshot --max-queue 50 by 450."""
    assert Pacing(max_queue=50).chunk_size() == 50
    assert Pacing(max_queue=5000).chunk_size() == 500
    assert Pacing(max_queue=None).chunk_size() == 500
    assert Pacing(max_queue=50, rate=40).chunk_size() == 10
