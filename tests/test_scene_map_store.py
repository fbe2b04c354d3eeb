"""One scene map in force, stored with a version: installs, the lock a worker's write takes,
and a running worker and a re-file that never disagree."""

from __future__ import annotations

import json
import threading
import time
import uuid

import boto3
import pytest
from celery import Celery

from models.scenes import SceneMap, load_categories
from sightline.samples import synthetic_jpeg
from tests.support import object_task, run_cli, start_worker, stop_worker, wait_for, worker_env
from workers.db import connect
from workers.scenemaps import LiveSceneMap, in_force, install


def _one_album_map(tmp_path, album: str) -> str:
    path = tmp_path / f"{album}.csv"
    rows = [f"{c},{album}" for c in load_categories()]
    path.write_text("places365_class,album\n" + "\n".join(rows) + "\n")
    return str(path)


def test_install_versions_and_only_if_none(db_url, tmp_path) -> None:
    """The first install is version 1; the same content keeps its version; only_if_none
    leaves the map in force alone; a worker's view follows the version it is told."""
    conn = connect(db_url)
    try:
        shipped = SceneMap.load()
        other = SceneMap.load(_one_album_map(tmp_path, "anywhere"))
        assert install(conn, shipped, "test") == 1
        assert install(conn, other, "test", only_if_none=True) == 1
        assert install(conn, other, "test") == 2
        assert install(conn, shipped, "test") == 1  # back to the stored first map
        live = LiveSceneMap(shipped.categories, frozenset())
        with conn, conn.cursor() as cur:
            assert live.refresh(cur, in_force(cur)) and live.version == 1
            assert live.scene_map == shipped
            assert live.refresh(cur, 2) and live.scene_map.albums == ("anywhere",)
            assert not live.refresh(cur, 2)
    finally:
        conn.close()


def test_an_install_waits_for_a_write_holding_the_map(db_url, tmp_path) -> None:
    """A worker's write transaction holds the version in force (FOR SHARE): an install
    commits only after it, so the re-file that follows sees that write."""
    writer, installer = connect(db_url), connect(db_url)
    try:
        install(installer, SceneMap.load(), "test")
        cur = writer.cursor()
        assert in_force(cur, lock=True) == 1  # the write transaction stays open
        done: list[float] = []
        other = SceneMap.load(_one_album_map(tmp_path, "anywhere"))
        t = threading.Thread(target=lambda: done.append(install(installer, other, "test")))
        t.start()
        time.sleep(1.0)
        assert not done  # blocked behind the write
        writer.commit()
        t.join(10)
        assert done == [2]
        with writer, writer.cursor() as cur2:
            assert in_force(cur2, lock=True) == 2
    finally:
        writer.close()
        installer.close()


@pytest.mark.slow
def test_running_worker_and_refile_never_disagree(db, db_url, redis_url, moto_endpoint, tmp_path):
    """Photos tagged before, during and just after `retag --scene-map` (well inside the
    worker's 30 s cache) all end filed by the new map, and the worker reports its version."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"sm-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"users/m/{i}.jpg" for i in range(18)]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=synthetic_jpeg(seed=i, width=160, height=120))
    env = worker_env(db_url, redis_url, moto_endpoint)
    worker = start_worker(env, "--batch-size", "2", "--batch-wait-ms", "50", log=tmp_path / "w.log")
    sender = Celery(broker=redis_url, set_as_current=False)

    def send(batch: list[str]) -> None:
        for key in batch:
            sender.send_task(
                "sightline.tag", kwargs=object_task(bucket, key, owner="m"), queue="tag"
            )
            time.sleep(0.1)

    def tagged() -> int:
        with db, db.cursor() as cur:
            cur.execute("SELECT count(*) FROM photos WHERE status = 'tagged'")
            return cur.fetchone()[0]

    try:
        send(keys[:6])
        wait_for(lambda: tagged() == 6, timeout=120, what=f"first photos ({tmp_path})")
        with db, db.cursor() as cur:
            assert in_force(cur) == 1  # installed by the worker at start
        during = threading.Thread(target=send, args=(keys[6:12],))
        during.start()
        out = run_cli(
            # On the fleet (the worker also takes the maintenance queue): the map is put in
            # force before the chunks re-file the photos stored before it.
            "retag", "--scene-map", _one_album_map(tmp_path, "anywhere"), "--json",
            "--no-progress", "--wait", "--chunk-size", "4", env=env,
        )  # fmt: skip
        during.join()
        assert out.returncode == 0, out.stderr
        remap = json.loads(out.stdout)["scene_map"]
        assert (remap["version"], remap["state"]) == (2, "done")
        send(keys[12:])
        wait_for(lambda: tagged() == len(keys), timeout=120, what=f"all photos ({tmp_path})")
    finally:
        stop_worker(worker)
    with db, db.cursor() as cur:
        cur.execute(
            "SELECT p.key, array_agg(DISTINCT a.album) FROM photos p "
            "LEFT JOIN photo_albums a ON a.photo_id = p.id GROUP BY p.key"
        )
        albums = dict(cur.fetchall())
    assert albums == {key: ["anywhere"] for key in keys}
