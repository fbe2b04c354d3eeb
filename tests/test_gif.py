"""GIF end to end: the handler sends `.gif` uploads to the worker, which tags the first frame."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from test_handler_brokers import drain

from handlers.contract import QUEUE_OF, TAG_TASK
from handlers.core import handle
from handlers.publish import CeleryPublisher
from handlers.rules import OwnerRule
from sightline.sqs_source import s3_record, sqs_event
from workers.photos import decode


def _animated_gif(colours: list[tuple[int, int, int]]) -> bytes:
    frames = [Image.new("RGB", (64, 48), c) for c in colours]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def test_animated_gif_is_tagged_by_its_first_frame() -> None:
    """A red, blue, green animation decodes to a red crop: the first frame, not the last."""
    data = _animated_gif([(255, 0, 0), (0, 0, 255), (0, 255, 0)])
    assert Image.open(io.BytesIO(data)).n_frames == 3
    photo = decode(data, resize=32, crop=32)
    assert photo.format == "GIF"
    r, g, b = photo.crop.reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 50 and b < 50


@pytest.mark.parametrize("key", ["users/alice/anim.gif", "users/alice/Old Scan+1.GIF"])
def test_handler_publishes_a_tag_task_for_a_gif(key: str, redis_url: str) -> None:
    """An S3 event for a .gif key (any case) becomes a tag task on the broker, not an ignore."""
    publisher = CeleryPublisher(redis_url)
    try:
        event = sqs_event({"m1": {"Records": [s3_record("photos", key, sequencer="0A")]}})
        result = handle(event, OwnerRule(), publisher)
    finally:
        publisher.close()
    assert [a.action for a in result.actions] == ["tag"]
    assert result.response() == {"batchItemFailures": []}
    [(headers, body)] = drain(redis_url, QUEUE_OF[TAG_TASK], 1)
    assert headers["task"] == TAG_TASK
    assert body[1]["key"] == key
    assert body[1]["owner"] == "alice"
