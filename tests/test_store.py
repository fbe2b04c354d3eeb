"""Photo writes: idempotent upserts guarded by event order, and the album SQL over them."""

from __future__ import annotations

import numpy as np
import pytest

from handlers.contract import normalize_sequencer
from sightline import albums
from sightline.samples import synthetic_jpeg
from workers.inference import SceneLandmarkModel
from workers.pipeline import TagResult, analyse
from workers.store import status_item, tagged_item, write_photos


@pytest.fixture(scope="module")
def results() -> list[TagResult]:
    model = SceneLandmarkModel(weights=None, allow_untrained=True, arch="tiny")
    datas = [
        synthetic_jpeg(
            width=96, height=72, seed=i, taken_at=f"2024:01:0{i + 1} 12:00:00", offset="+00:00"
        )
        for i in range(5)
    ]
    out = analyse(datas, model)
    assert all(isinstance(r, TagResult) for r in out)
    return out  # type: ignore[return-value]


def task(
    key: str,
    seq: str | None = "0A",
    owner: str = "alice",
    etag: str = "e1",
    event_time: str | None = "2024-01-01T00:00:00Z",
) -> dict:
    return {
        "bucket": "b",
        "key": key,
        "version_id": None,
        "etag": etag,
        "size": 10,
        "sequencer": normalize_sequencer(seq),
        "event_time": event_time,
        "owner": owner,
    }


def _one(results: list[tuple[int | None, str]]) -> int | None:
    ((pid, outcome),) = results
    assert not outcome.startswith("error: "), outcome
    return pid


def write_tagged(cur, task: dict, result: TagResult) -> int | None:
    """One tagged photo through the batch write; its id, or None when a newer event won."""
    return _one(write_photos(cur, [tagged_item(task, result)]))


def write_status(cur, task: dict, status: str, reason: str | None = None) -> int | None:
    """One failed, gone or deleted photo through the batch write; as write_tagged."""
    return _one(write_photos(cur, [status_item(task, status, reason)]))


def _row(db, key: str) -> tuple:
    with db, db.cursor() as cur:
        cur.execute("SELECT status, etag, attempts, error FROM photos WHERE key = %s", (key,))
        return cur.fetchone()


def _count(db, sql: str, *args) -> int:
    with db, db.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def test_redelivered_task_gives_one_row(db, results) -> None:
    """The same event written twice leaves one photo row with one set of tags."""
    for _ in range(2):
        with db, db.cursor() as cur:
            assert write_tagged(cur, task("k.jpg"), results[0]) is not None
    assert _count(db, "SELECT count(*) FROM photos") == 1
    assert _count(db, "SELECT count(*) FROM photo_scenes") == 5
    assert _row(db, "k.jpg")[:3] == ("tagged", "e1", 2)


def test_embedding_and_probabilities_are_stored_as_written(db, results) -> None:
    with db, db.cursor() as cur:
        write_tagged(cur, task("k.jpg"), results[0])
        cur.execute("SELECT embedding, scene_probs, model_version, model_trained FROM photos")
        emb, probs, version, trained = cur.fetchone()
    # Stored at half precision (halfvec): 11 significant bits, a relative error <= 2^-11.
    want = np.asarray(results[0].embedding, dtype=np.float32)
    assert np.allclose(emb.to_numpy(), want, rtol=2**-11, atol=1e-7)
    assert not np.array_equal(emb.to_numpy().astype(np.float32), want)  # float16, not float32
    probs = probs.to_numpy().astype(np.float64)
    assert len(probs) == 365 and probs.sum() == pytest.approx(1.0, abs=1e-3)
    assert version.startswith("untrained-tiny") and trained is False


def test_older_event_never_overwrites_a_newer_one(db, results) -> None:
    with db, db.cursor() as cur:
        assert write_tagged(cur, task("k.jpg", seq="0B", etag="new"), results[0]) is not None
        assert write_tagged(cur, task("k.jpg", seq="0A", etag="old"), results[1]) is None
    assert _row(db, "k.jpg")[1] == "new"


def test_sequencers_of_unequal_length_compare_right_padded(db, results) -> None:
    """'0A01' is newer than '0A' (read as '0A00'), though shorter strings sort first."""
    with db, db.cursor() as cur:
        assert write_tagged(cur, task("k.jpg", seq="0A01", etag="new"), results[0]) is not None
        assert write_tagged(cur, task("k.jpg", seq="0A", etag="old"), results[1]) is None
    assert _row(db, "k.jpg")[1] == "new"


def test_newer_delete_wins_and_keeps_a_tombstone(db, results) -> None:
    with db, db.cursor() as cur:
        write_tagged(cur, task("k.jpg", seq="0A"), results[0])
        assert write_status(cur, task("k.jpg", seq="0C"), "deleted") is not None
        # The create event arriving late after the delete changes nothing.
        assert write_tagged(cur, task("k.jpg", seq="0B"), results[0]) is None
    assert _row(db, "k.jpg")[0] == "deleted"
    assert _count(db, "SELECT count(*) FROM photo_scenes") == 0
    assert _count(db, "SELECT count(*) FROM scene_albums('alice')") == 0


def test_reupload_after_delete_is_tagged_again(db, results) -> None:
    with db, db.cursor() as cur:
        write_status(cur, task("k.jpg", seq="0A"), "deleted")
        assert write_tagged(cur, task("k.jpg", seq="0B"), results[0]) is not None
    assert _row(db, "k.jpg")[0] == "tagged"


def test_without_sequencers_event_time_orders(db, results) -> None:
    """moto sends no sequencer: the event time orders events then."""
    with db, db.cursor() as cur:
        write_tagged(
            cur, task("k.jpg", seq=None, etag="new", event_time="2024-01-02T00:00:00Z"), results[0]
        )
        assert (
            write_tagged(
                cur,
                task("k.jpg", seq=None, etag="old", event_time="2024-01-01T00:00:00Z"),
                results[1],
            )
            is None
        )
    assert _row(db, "k.jpg")[1] == "new"


def test_failed_photo_keeps_its_reason(db) -> None:
    with db, db.cursor() as cur:
        write_status(cur, task("bad.jpg"), "failed", "corrupt or truncated image")
    assert _row(db, "bad.jpg")[0::3] == ("failed", "corrupt or truncated image")


def test_scene_albums_are_per_owner(db, results) -> None:
    """One owner's albums never show another owner's photos."""
    with db, db.cursor() as cur:
        for i, r in enumerate(results[:3]):
            write_tagged(cur, task(f"a{i}.jpg", owner="alice"), r)
        write_tagged(cur, task("b.jpg", owner="bob"), results[3])
        alice = albums.scene_albums(cur, "alice")
        bob = albums.scene_albums(cur, "bob")
        nobody = albums.scene_albums(cur, "carol")
    assert sum(a["photos"] for a in alice) == 3
    assert sum(a["photos"] for a in bob) == 1
    assert nobody == []
    assert all(a["untrained"] for a in alice)


def test_album_photos_pages_by_keyset_newest_first(db, results) -> None:
    """Paging with the last row's (sort_at, id) walks every photo once, newest first."""
    with db, db.cursor() as cur:
        for i, r in enumerate(results):
            write_tagged(cur, task(f"p{i}.jpg"), r)
        # Put every photo in one album so the page walk covers all five.
        cur.execute("UPDATE photo_albums SET album = 'same' WHERE rank = 1")
        seen, after = [], None
        while True:
            page = albums.album_photos(cur, "alice", "scene", "same", after=after, limit=2)
            if not page:
                break
            seen += page
            after = (page[-1]["sort_at"], page[-1]["photo_id"])
        other = albums.album_photos(cur, "bob", "scene", "same")
    assert [p["key"] for p in seen] == [f"p{i}.jpg" for i in reversed(range(5))]
    assert other == []


def _release(cur, version: str, status: str, model: str = "m") -> None:
    cur.execute(
        "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status) "
        "VALUES (%s, 512, %s, '{}', %s)",
        (version, model, status),
    )
    cur.execute(
        "INSERT INTO landmarks (release, landmark_id, name, city, country, lat, lon) VALUES "
        "(%s, 'eiffel', 'Eiffel Tower', 'Paris', 'France', 48.858, 2.294),"
        "(%s, 'louvre', 'Louvre', 'Paris', 'France', 48.861, 2.336)",
        (version, version),
    )


def test_landmark_albums_group_by_country_and_city_under_the_active_release(db, results) -> None:
    with db, db.cursor() as cur:
        ids = [write_tagged(cur, task(f"l{i}.jpg"), r) for i, r in enumerate(results[:3])]
        # The photos' own model: albums read each photo through its model's active release.
        _release(cur, "r1", "active", results[0].model_version)
        _release(cur, "r2", "imported", results[0].model_version)
        cur.execute(
            # The owner goes with each row: it routes the row to its partition (0017).
            "INSERT INTO landmark_matches (release, photo_id, landmark_id, score, owner) VALUES "
            "('r1', %s, 'eiffel', 0.9, 'alice'), ('r1', %s, 'eiffel', 0.8, 'alice'), "
            "('r1', %s, 'louvre', 0.7, 'alice'), ('r2', %s, 'louvre', 0.9, 'alice')",
            (ids[0], ids[1], ids[2], ids[0]),
        )
        rows = albums.landmark_albums(cur, "alice")
        page = albums.album_photos(cur, "alice", "landmark", "eiffel")
        bob = albums.landmark_albums(cur, "bob")
    assert [(r["country"], r["city"], r["name"], r["photos"]) for r in rows] == [
        ("France", "Paris", "Eiffel Tower", 2),
        ("France", "Paris", "Louvre", 1),
    ]
    assert {p["photo_id"] for p in page} == {ids[0], ids[1]}
    assert bob == []
