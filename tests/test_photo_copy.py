"""The set-based write path (binary COPY + one guarded upsert) writes what the per-photo
function writes, keeps the sequencer rule, and never lets one bad row sink the batch."""

from __future__ import annotations

import json

import psycopg2
import pytest

from handlers.contract import normalize_sequencer
from sightline.samples import synthetic_jpeg
from workers.inference import SceneLandmarkModel
from workers.photo_copy import EncodeError, encode_row, encode_rows, write_photos_copy
from workers.pipeline import TagResult, analyse
from workers.store import status_item, tagged_item, write_photos


@pytest.fixture(scope="module")
def results() -> list[TagResult]:
    model = SceneLandmarkModel(weights=None, allow_untrained=True, arch="tiny")
    datas = [
        synthetic_jpeg(width=96, height=72, seed=i, taken_at=f"2024:01:0{i + 1} 12:00:00",
                       offset="+00:00" if i % 2 else None, gps=(48.85, 2.29) if i == 1 else None)
        for i in range(4)
    ]  # fmt: skip
    out = analyse(datas, model)
    assert all(isinstance(r, TagResult) for r in out)
    return out  # type: ignore[return-value]


def _task(bucket: str, key: str, seq: str | None = "0A", **extra) -> dict:
    return {"bucket": bucket, "key": key, "version_id": "v1", "etag": "e1", "size": 10,
            "sequencer": normalize_sequencer(seq), "event_time": "2024-01-01T00:00:00Z",
            "owner": f"alice-{bucket}", **extra}  # fmt: skip


def _batch(bucket: str, results: list[TagResult]) -> list[dict]:
    items = [tagged_item(_task(bucket, f"{i}.jpg"), r) for i, r in enumerate(results)]
    items[0]["matches"] = [["r1", "eiffel", 0.9], ["r1", "louvre", 0.5]]
    items[1]["warning"] = "EXIF block unreadable"  # 0009
    items[2]["scene_trained"], items[2]["embedding_trained"] = True, False  # 0010
    items.append(status_item(_task(bucket, "bad.jpg"), "failed", "corrupt image"))
    items.append(status_item(_task(bucket, "gone.jpg"), "gone", "object gone"))
    return items


def _dump(db, bucket: str) -> list[tuple]:
    with db, db.cursor() as cur:
        cur.execute(
            "SELECT key, replace(owner, %s, ''), version_id, etag, size, sequencer, event_time, "
            "status, error, attempts, taken_at, taken_at_local, gps_lat, gps_lon, width, "
            "height, camera, model_version, model_trained, embedding::text, "
            "scene_probs::text, indoor, "
            "(SELECT json_agg(json_build_array(rank, class_name, probability) ORDER BY rank) "
            " FROM photo_scene_names s WHERE s.photo_id = p.id), "
            "(SELECT json_agg(json_build_array(rank, album, score, owner = p.owner, sort_at, "
            "  trained) ORDER BY rank) FROM photo_albums a WHERE a.photo_id = p.id), "
            "(SELECT json_agg(json_build_array(release, landmark_id, score, owner = p.owner, "
            "  sort_at) ORDER BY landmark_id) "
            " FROM landmark_matches m WHERE m.photo_id = p.id), "
            "warning, scene_trained, embedding_trained "
            "FROM photos p WHERE bucket = %s ORDER BY key",
            (bucket, bucket),
        )
        rows = cur.fetchall()
        # album summaries (0012), kept by triggers through sightline_album_defer/flush
        cur.execute(
            "SELECT kind, release, album, photos, untrained, cover_sort_at, "
            "(SELECT key FROM photos WHERE id = cover_photo_id) FROM album_summaries "
            "WHERE owner = %s AND photos > 0 ORDER BY kind, release, album",
            (f"alice-{bucket}",),
        )
        return rows + [("summary", *r) for r in cur.fetchall()]


@pytest.fixture
def release(db) -> None:
    with db, db.cursor() as cur:
        cur.execute("INSERT INTO releases (version, embedding_dim, model_version, thresholds) "
                    "VALUES ('r1', 512, 'm', '{}')")  # fmt: skip
        cur.execute("INSERT INTO landmarks (release, landmark_id, name) VALUES "
                    "('r1', 'eiffel', 'Eiffel Tower'), ('r1', 'louvre', 'Louvre')")  # fmt: skip


def test_copy_path_writes_what_the_function_writes(db, results, release) -> None:
    """Every column and every scene, album and match row comes out the same, twice over
    (the second write replaces the children and counts the attempt)."""
    for _ in range(2):
        with db, db.cursor() as cur:
            fn = write_photos(cur, _batch("fn", results))
            cp = write_photos_copy(cur, _batch("cp", results))
        assert [o for _, o in cp] == [o for _, o in fn] == [
            "tagged", "tagged", "tagged", "tagged", "failed", "gone"
        ]  # fmt: skip
        assert all(pid is not None for pid, _ in cp)
    for a, b in zip(_dump(db, "cp"), _dump(db, "fn")):
        assert [(n, x, y) for n, (x, y) in enumerate(zip(a, b)) if x != y] == []
    assert _dump(db, "cp") == _dump(db, "fn")
    rows = [r for r in _dump(db, "cp") if r[0] != "summary"]
    assert [row[9] for row in rows] == [2] * 6  # attempts
    assert [m[:3] for m in json.loads(json.dumps(rows[0][24]))] == [
        ["r1", "eiffel", 0.9], ["r1", "louvre", 0.5]
    ]  # fmt: skip
    assert all(m[3] for m in rows[0][24]) and all(a[3] for a in rows[0][23])  # owner copied
    assert rows[1][25] == "EXIF block unreadable" and rows[2][26:] == (True, False)
    assert rows[2][23] and all(a[5] is True for a in rows[2][23])  # the scene head's flag
    assert any(r[0] == "summary" for r in _dump(db, "cp"))  # summaries kept by the copy path


def test_scene_classes_are_registered_once_and_read_back_by_name(db, results) -> None:
    """0021: scene rows store a class id. A class name no model wrote before is registered
    once by whichever path meets it first, both paths store the same ids, and the view gives
    every row its name back; a scene without a name refuses that photo alone."""
    for bucket, write in (("fn", write_photos), ("cp", write_photos_copy)):
        items = [tagged_item(_task(bucket, f"{i}.jpg"), r) for i, r in enumerate(results)]
        items[0]["scenes"] = [["my_own_class", 0.6], *items[0]["scenes"][1:]]
        items[1]["scenes"] = [[None, 0.5]]
        with db, db.cursor() as cur:
            got = [o for _, o in write(cur, items)]
        assert got[0] == "tagged" and got[2:] == ["tagged"] * (len(items) - 2), bucket
        assert got[1].startswith("error:") and "class_id" in got[1], (bucket, got[1])
    with db, db.cursor() as cur:
        cur.execute("SELECT count(*) FROM scene_classes WHERE name = 'my_own_class'")
        assert cur.fetchone() == (1,)
        cur.execute(
            "SELECT p.bucket, p.key, s.rank, s.class_name, s.probability "
            "FROM photo_scene_names s JOIN photos p ON p.id = s.photo_id ORDER BY 2, 3, 1"
        )
        named = cur.fetchall()
        cur.execute("SELECT count(*) FROM photo_scenes")
        assert cur.fetchone() == (len(named),)  # no row without its class
    fn = [r[1:] for r in named if r[0] == "fn"]
    assert fn == [r[1:] for r in named if r[0] == "cp"]
    assert fn[0][:3] == ("0.jpg", 1, "my_own_class")
    assert [r[2] for r in fn if r[0] == "2.jpg"] == [c for c, _ in results[2].scenes]


def test_a_photos_scenes_are_one_row_read_back_as_its_ranked_rows(db, results) -> None:
    """0025: a photo's top-5 is one photo_scene_sets row, and the photo_scenes view gives its
    rows back in rank order; a rewrite replaces the set, a failed rewrite removes it, and a
    scene without a probability refuses that photo alone (the set's check, the NOT NULL of
    the rows before)."""
    for bucket, write in (("fn", write_photos), ("cp", write_photos_copy)):
        items = [tagged_item(_task(bucket, f"{i}.jpg"), r) for i, r in enumerate(results)]
        items[1]["scenes"] = [[items[1]["scenes"][0][0], None]]
        with db, db.cursor() as cur:
            got = write(cur, items)
            assert [o for _, o in got][2:] == ["tagged"] * (len(items) - 2), bucket
            assert got[1][1].startswith("error:") and "probability" in got[1][1], got[1]
            pid = got[0][0]
            cur.execute(
                "SELECT cardinality(class_ids) FROM photo_scene_sets WHERE photo_id = %s", (pid,)
            )
            assert cur.fetchall() == [(len(results[0].scenes),)]  # one row holds them all
            cur.execute(
                "SELECT rank, class_name, probability FROM photo_scene_names "
                "WHERE photo_id = %s ORDER BY rank",
                (pid,),
            )
            assert [(r, c) for r, c, _ in cur.fetchall()] == [
                (k, c) for k, (c, _) in enumerate(results[0].scenes, 1)
            ]
        again = dict(items[0], sequencer=normalize_sequencer("0B"))
        again["scenes"] = [["zz_last", 0.25], ["aa_first", 0.5]]  # rank, not name, orders them
        failed = status_item(_task(bucket, "2.jpg", seq="0B"), "failed", "corrupt image")
        with db, db.cursor() as cur:
            assert [o for _, o in write(cur, [again, failed])] == ["tagged", "failed"]
            cur.execute(
                "SELECT p.key, s.rank, s.class_name, s.probability FROM photos p "
                "LEFT JOIN photo_scene_names s ON s.photo_id = p.id AND s.owner = p.owner "
                "WHERE p.bucket = %s AND p.key IN ('0.jpg', '2.jpg') ORDER BY 1, 2",
                (bucket,),
            )
            assert cur.fetchall() == [
                ("0.jpg", 1, "zz_last", 0.25), ("0.jpg", 2, "aa_first", 0.5),
                ("2.jpg", None, None, None),
            ]  # fmt: skip
            cur.execute(
                "SELECT count(*) FROM photo_scene_sets s JOIN photos p ON p.id = s.photo_id "
                "WHERE p.bucket = %s AND p.key = '2.jpg'",
                (bucket,),
            )
            assert cur.fetchone() == (0,)


def test_copy_path_keeps_one_embedding_width_per_model(db, results) -> None:
    """A photo whose embedding is not its model's width is refused alone, as the per-photo
    function refuses it (0012's check); the first photo of a model records the width."""
    for bucket, write in (("fn", write_photos), ("cp", write_photos_copy)):
        items = [tagged_item(_task(bucket, f"{i}.jpg"), r) for i, r in enumerate(results)]
        for item in items:
            item["model_version"] = "m-wide"  # the fn pass records its width
        items[2]["embedding"] = items[2]["embedding"][:-1]
        with db, db.cursor() as cur:
            got = [o for _, o in write(cur, items)]
        assert got[:2] + got[3:] == ["tagged"] * 3, bucket
        assert got[2].startswith("error: embedding has"), (bucket, got[2])
    assert _dump(db, "cp") == _dump(db, "fn")


def test_copy_path_keeps_the_sequencer_rule(db, results) -> None:
    """An older event is stale against a newer stored one; items for one key in one batch
    apply in batch order, as the per-photo function applies them."""
    with db, db.cursor() as cur:
        write_photos_copy(cur, [tagged_item(_task("b", "k.jpg", seq="20"), results[0])])
        older = tagged_item(_task("b", "k.jpg", seq="10"), results[1])
        assert write_photos_copy(cur, [older])[0] == (None, "stale")
        newer = status_item(_task("b", "k.jpg", seq="30"), "deleted", None)
        newest = tagged_item(_task("b", "k.jpg", seq="40"), results[2])
        got = write_photos_copy(cur, [newest, newer])
        assert [o for _, o in got] == ["tagged", "stale"]
        cur.execute("SELECT status, sequencer, attempts FROM photos WHERE key = 'k.jpg'")
        assert cur.fetchone() == ("tagged", normalize_sequencer("40"), 2)
        again = tagged_item(_task("b", "k.jpg", seq="40"), results[3])
        assert [o for _, o in write_photos_copy(cur, [again, dict(again)])] == ["tagged"] * 2
        cur.execute("SELECT attempts FROM photos WHERE key = 'k.jpg'")
        assert cur.fetchone() == (4,)


def test_one_bad_row_never_sinks_the_batch(db, results) -> None:
    """A row the database refuses (GPS out of range, a match to a landmark that does not
    exist) gets its own error; the batch's other photos are written."""
    items = [tagged_item(_task("b", f"{i}.jpg"), r) for i, r in enumerate(results)]
    items[1]["gps_lat"] = 123.0
    items[2]["matches"] = [["nope", "x", 0.5]]
    with db, db.cursor() as cur:
        got = write_photos_copy(cur, items)
    outcomes = [o for _, o in got]
    assert outcomes[0] == outcomes[3] == "tagged"
    assert outcomes[1].startswith("error: ") and "gps_lat" in outcomes[1]
    assert outcomes[2].startswith("error: ") and "foreign key" in outcomes[2]
    with db, db.cursor() as cur:
        cur.execute("SELECT key FROM photos ORDER BY key")
        assert cur.fetchall() == [("0.jpg",), ("3.jpg",)]


def test_unencodable_item_goes_the_per_photo_way(db, results) -> None:
    """A value COPY cannot carry (a time that is not a time) is refused by the function for
    that photo only."""
    bad = tagged_item(_task("b", "t.jpg"), results[0])
    bad["taken_at"] = "the day after"
    with pytest.raises(EncodeError):
        encode_row(0, bad)
    with db, db.cursor() as cur:
        got = write_photos_copy(cur, [bad, tagged_item(_task("b", "ok.jpg"), results[1])])
    assert got[0][1].startswith("error: ") and got[1][1] == "tagged"


def test_batch_encoding_is_the_rows_encoded_one_by_one(results) -> None:
    """encode_rows converts a batch's embeddings and probabilities to half in one step: its
    bytes are each row's own, whether the batch is uniform (lists of one length) or not
    (an array, a shorter list, None), and a value half cannot hold still fails the batch's
    encoding with that photo's key (the per-photo path then refuses it alone)."""
    import numpy as np

    items = [tagged_item(_task("b", f"{i}.jpg"), r) for i, r in enumerate(results)]
    for i, item in enumerate(items):
        item["scene_probs"][i] = 3e-8  # a subnormal half (rounds to 2**-25)
    one_by_one = b"".join(encode_row(i, x) for i, x in enumerate(items))
    assert encode_rows(items) == one_by_one
    mixed = [dict(x) for x in items]
    mixed[0]["embedding"] = np.asarray(mixed[0]["embedding"], dtype=np.float32)
    mixed[1]["scene_probs"] = mixed[1]["scene_probs"][:-1]
    mixed[2]["embedding"] = None
    assert encode_rows(mixed) == b"".join(encode_row(i, x) for i, x in enumerate(mixed))
    assert encode_rows(mixed) != one_by_one
    items[2]["embedding"] = [70000.0] * len(items[2]["embedding"])
    with pytest.raises(EncodeError, match=r"b/2\.jpg"):
        encode_rows(items)


def test_concurrent_writes_of_one_photo_leave_one_set_of_scene_rows(db_url, results) -> None:
    """photo_scenes has no key since 0020: its guard is the writers' lock on the photo row.
    Eight connections rewriting the same photos at once, through both write paths, leave
    each photo exactly the scene rows of the write that won (the newest sequencer)."""
    import threading

    from workers.db import connect

    def items(seq: int) -> list[dict]:
        return [
            tagged_item(_task("race", f"{i}.jpg", f"{seq:04X}"), r) for i, r in enumerate(results)
        ]

    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        conn = connect(db_url)
        try:
            start.wait()
            for round_ in range(6):
                seq = 16 * round_ + n + 1
                with conn, conn.cursor() as cur:
                    write = write_photos_copy if n % 2 else write_photos
                    write(cur, items(seq))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conn = connect(db_url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT p.key, p.sequencer, count(s.*), count(DISTINCT s.rank) FROM photos p "
            "LEFT JOIN photo_scenes s ON s.photo_id = p.id AND s.owner = p.owner "
            "WHERE p.bucket = 'race' GROUP BY 1, 2 ORDER BY 1"
        )
        rows = cur.fetchall()
    conn.close()
    newest = normalize_sequencer(f"{16 * 5 + 8:04X}")
    assert [(k, q) for k, q, _, _ in rows] == [(f"{i}.jpg", newest) for i in range(len(results))]
    want = [len(r.scenes) for r in results]
    assert [(n, d) for _, _, n, d in rows] == [(w, w) for w in want]


def test_copy_path_replaces_tags_of_a_row_other_writers_left_at_attempts_0(db, results) -> None:
    """0024 deletes a photo's old tags only when the upsert updated a row (attempts > 1). A
    row some other writer inserted with the default attempts 0 still counts as rewritten:
    its scene, album and match rows are replaced, not doubled; a batch of new photos, half of
    them with no landmark match, gets exactly its own rows."""
    with db, db.cursor() as cur:
        cur.execute("INSERT INTO releases (version, embedding_dim, model_version, thresholds) "
                    "VALUES ('r1', 512, 'm', '{}')")  # fmt: skip
        cur.execute("INSERT INTO landmarks (release, landmark_id, name) VALUES "
                    "('r1', 'eiffel', 'Eiffel Tower')")  # fmt: skip
        first = [tagged_item(_task("z", f"{i}.jpg", "10"), r) for i, r in enumerate(results)]
        for n, item in enumerate(first):
            item["matches"] = [["r1", "eiffel", 0.9]] if n % 2 else []
        write_photos_copy(cur, first)
        cur.execute("UPDATE photos SET attempts = 0 WHERE bucket = 'z'")
        again = [tagged_item(_task("z", f"{i}.jpg", "20"), r) for i, r in enumerate(results)]
        for item in again:
            item["matches"] = [["r1", "eiffel", 0.8]]
        assert [o for _, o in write_photos_copy(cur, again)] == ["tagged"] * len(results)
        cur.execute(
            "SELECT p.attempts, (SELECT count(*) FROM photo_scenes s WHERE s.photo_id = p.id),"
            " (SELECT count(*) FROM photo_albums a WHERE a.photo_id = p.id),"
            " (SELECT array_agg(m.score) FROM landmark_matches m WHERE m.photo_id = p.id)"
            " FROM photos p WHERE p.bucket = 'z' ORDER BY p.key"
        )
        rows = cur.fetchall()
    assert [r[0] for r in rows] == [2] * len(results)
    assert [r[1] for r in rows] == [len(r.scenes) for r in results]
    assert [r[2] for r in rows] == [len(item["albums"]) for item in again]
    assert [r[3] for r in rows] == [[pytest.approx(0.8)]] * len(results)


def test_staged_halfvecs_hold_the_bits_the_servers_casts_make(db, results) -> None:
    """The COPY path sends embeddings and scene probabilities as half floats it rounds
    itself; the per-photo path lets the server cast them. Both store the same bits where
    rounding can go wrong: a double float32 rounds onto a half tie (rounded twice: to
    float32, then to half), exact ties between two halves, half's subnormals and underflow,
    the top of its range, -0.0 (the per-photo path stores 0), and random doubles (the two
    paths start float32 rounding from the double and from its decimal text: they differ
    only within a float32 step of a half tie, which these do not hit). A value half cannot
    hold is refused for that photo alone."""
    import numpy as np

    rng = np.random.default_rng(3)
    # 1 + 2**-11 + 2**-30: float32 rounds it onto the tie (then down to 1.0); straight to
    # half it would go up
    hard = [1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-11 + 2**-30, 2**-20, 3e-8, 2.9e-8, 6.1e-5,
            65504.0, 65519.0, -0.0, 1e-30, 0.1, 1 / 3]  # fmt: skip
    rows = []
    for i in range(3):
        item = tagged_item(_task("x", f"{i}.jpg"), results[i])
        n = len(item["embedding"])
        emb = rng.standard_normal(n).tolist()  # float64: not float32 values
        emb[: len(hard)] = hard
        probs = rng.dirichlet(np.full(len(item["scene_probs"]), 0.05)).tolist()
        probs[: len(hard)] = hard
        item["embedding"], item["scene_probs"] = emb, probs
        rows.append(item)
    too_big = tagged_item(_task("x", "big.jpg"), results[3])
    too_big["scene_probs"] = [70000.0] * len(too_big["scene_probs"])
    for bucket, write in (("fn", write_photos), ("cp", write_photos_copy)):
        items = [{**r, "bucket": bucket, "owner": f"alice-{bucket}"} for r in rows]
        with db, db.cursor() as cur:
            assert [o for _, o in write(cur, items)] == ["tagged"] * 3, bucket
            # (a batch with an item the COPY path cannot encode goes the per-photo way whole)
            got = [o for _, o in write(cur, [{**too_big, "bucket": bucket}])]
        assert got[0].startswith("error: ") and "out of range" in got[0], (bucket, got)
    assert _dump(db, "cp") == _dump(db, "fn")
    with db, db.cursor() as cur:
        cur.execute("SELECT scene_probs::real[] FROM photos WHERE bucket = 'cp' ORDER BY key")
        stored = cur.fetchall()
    assert len(stored) == 3
    # ties go to the even half: 1 + 2**-11 down to 1, 1 + 3 * 2**-11 up to 1 + 2**-9
    assert stored[0][0][:3] == pytest.approx([1.0, 1 + 2**-9, 1.0], abs=1e-7)


@pytest.mark.parametrize("write", [write_photos, write_photos_copy])
def test_nan_or_infinity_in_an_item_is_refused_for_that_photo_alone(db, results, write) -> None:
    """JSON has no NaN or infinity and a float column would store them: an item with one
    anywhere (embedding, probabilities, GPS, a scene or album score) is refused alone by
    either path; before, the per-photo path's one JSON parameter failed the whole batch."""
    nan, inf = float("nan"), float("inf")
    items = [tagged_item(_task("b", f"{i}.jpg"), results[i % 4]) for i in range(7)]
    items[1]["embedding"] = [nan, *items[1]["embedding"][1:]]
    items[2]["scene_probs"] = [inf, *items[2]["scene_probs"][1:]]
    items[3]["gps_lat"] = nan
    items[4]["scenes"] = [[items[4]["scenes"][0][0], nan]]
    items[5]["albums"] = [["forest", -inf]]
    with db, db.cursor() as cur:
        got = [o for _, o in write(cur, items)]
    assert got[0] == got[6] == "tagged", got
    assert all(o.startswith("error: ") for o in got[1:6]), got
    with db, db.cursor() as cur:
        cur.execute("SELECT key FROM photos ORDER BY key")
        assert cur.fetchall() == [("0.jpg",), ("6.jpg",)]
        cur.execute("SELECT count(*) FROM photo_scenes WHERE probability = 'NaN'")
        assert cur.fetchone() == (0,)


def test_analyse_fails_a_photo_the_network_gave_infinity(monkeypatch) -> None:
    """`analyse` (the `sightline photos` path) turns a photo whose network output is not
    storable into its PhotoError, the others tagged."""
    import numpy as np

    from workers.photos import PhotoError

    model = SceneLandmarkModel(weights=None, allow_untrained=True, arch="tiny")
    model.load()
    predict = model.predict

    def faulty(crops):
        probs, embs = predict(crops)
        probs = np.array(probs, copy=True)
        probs[0, 7] = np.inf
        return probs, embs

    monkeypatch.setattr(model, "predict", faulty)
    out = analyse([synthetic_jpeg(width=64, height=48, seed=i) for i in range(2)], model)
    assert isinstance(out[0], PhotoError) and "scene probabilities" in str(out[0])
    assert isinstance(out[1], TagResult)


@pytest.mark.parametrize("write", [write_photos, write_photos_copy])
def test_a_lock_timeout_fails_the_batch_for_a_retry_not_the_photo(db, db_url, results, write):
    """A lock timeout (or a deadlock, a serialization failure) is no photo's fault: both paths
    raise it, and the worker retries the batch (psycopg2 counts it an OperationalError, which
    workers.db takes for transient). Before 0025 the photo was refused for good."""
    from workers.db import connect

    item = tagged_item(_task("lk", "0.jpg"), results[0])
    with db, db.cursor() as cur:
        assert write(cur, [item])[0][1] == "tagged"
    other = connect(db_url)
    try:
        with other, other.cursor() as cur:
            cur.execute("SELECT id FROM photos WHERE bucket = 'lk' FOR UPDATE")
            again = dict(item, sequencer=normalize_sequencer("0B"))
            with pytest.raises(psycopg2.errors.LockNotAvailable), db, db.cursor() as mine:
                mine.execute("SET LOCAL lock_timeout = '200ms'")
                write(mine, [again])
    finally:
        other.close()
    assert issubclass(psycopg2.errors.LockNotAvailable, psycopg2.OperationalError)
    with db, db.cursor() as cur:
        assert write(cur, [again])[0][1] == "tagged"  # the retry, once the lock is gone


def test_a_conflict_is_retried_on_the_same_connection_a_lost_one_on_a_new(db_url) -> None:
    """The worker's connections: a lock timeout (a conflict with another transaction, as a
    deadlock is) becomes a retry that says "conflict" and keeps the connection; a connection
    the server closed becomes "database unavailable" and the next call opens a new one."""
    from workers.db import ThreadConnections, connect

    conns = ThreadConnections(db_url)
    mine = conns.get()
    other = connect(db_url)
    try:
        with other, other.cursor() as cur:
            cur.execute("CREATE TABLE lockme (id int); INSERT INTO lockme VALUES (1)")
        with other, other.cursor() as cur:
            cur.execute("SELECT id FROM lockme FOR UPDATE")
            with pytest.raises(psycopg2.OperationalError) as caught, mine, mine.cursor() as c:
                c.execute("SET LOCAL lock_timeout = '100ms'")
                c.execute("SELECT id FROM lockme FOR UPDATE")
        assert conns.lost(caught.value)  # transient: the batch is retried
        err = conns.unavailable(caught.value)
        assert str(err).startswith("database conflict: ") and "lock" in str(err)
        assert conns.get() is mine and not mine.closed
        with other.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (mine.get_backend_pid(),))
        other.commit()
        with pytest.raises(psycopg2.Error) as caught, mine, mine.cursor() as c:
            c.execute("SELECT 1")
        assert conns.lost(caught.value)
        assert str(conns.unavailable(caught.value)).startswith("database unavailable: ")
        fresh = conns.get()
        assert fresh is not mine
        with fresh.cursor() as cur:
            cur.execute("SELECT count(*) FROM lockme")
            assert cur.fetchone() == (1,)
    finally:
        other.close()
        conns.drop()


def test_a_table_gone_from_under_the_write_function_fails_the_call(db, results) -> None:
    """A write function that meets a table gone from under it (a schema upgraded while the
    call ran) fails the call for the batch to be retried, instead of refusing each photo."""
    item = tagged_item(_task("gn", "0.jpg"), results[0])
    with db, db.cursor() as cur:
        assert write_photos(cur, [item])[0][1] == "tagged"
    again = dict(item, sequencer=normalize_sequencer("0B"))  # a rewrite: deletes old matches
    with pytest.raises(psycopg2.errors.UndefinedTable), db, db.cursor() as cur:
        cur.execute("ALTER TABLE landmark_matches RENAME TO landmark_matches_gone")
        write_photos(cur, [again])
    with db, db.cursor() as cur:  # the rename rolled back with the failed call
        assert write_photos(cur, [again])[0][1] == "tagged"
