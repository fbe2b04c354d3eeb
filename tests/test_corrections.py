"""Corrections that stick: an owner hides or adds a label through sightline_album_writer, the
album SQL honours it, and no re-map, re-tag with a new release or model switch undoes it."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator

import numpy as np
import psycopg2
import psycopg2.errors
import pytest

from models.centroids import build_centroids
from models.landmarks import Thresholds
from models.release import make_release, save_release
from models.scenes import SceneMap
from sightline import albums
from sightline.cli import main
from tests.synthetic_landmarks import make_world, photos, references
from workers.releases import import_release
from workers.retag import retag_release, retag_scenes
from workers.store import write_photos

MODEL, NEW_MODEL = "model-a", "model-b"


def _release(version: str, model: str, world, cs, refs, rl):
    return make_release(
        version=version,
        model_version=model,
        thresholds=Thresholds(geo=0.6, general=0.8, verify=0.7),
        landmarks=world.landmark_rows(),
        centroids=cs.centroids,
        centroid_landmarks=cs.labels,
        references=refs,
        reference_landmarks=rl,
    )


def _probs(sm: SceneMap, cls: str, p: float = 0.9) -> list[float]:
    n = len(sm.categories)
    v = np.full(n, (1 - p) / (n - 1), dtype=np.float32)
    v[sm.categories.index(cls)] = p
    return v.tolist()


def _item(owner: str, n: int, emb: np.ndarray, probs: list[float], model: str, seq: str) -> dict:
    """A tagged photo as the worker writes it (albums and matches come from re-tags here)."""
    return {
        "owner": owner,
        "bucket": "b",
        "key": f"users/{owner}/{n}.jpg",
        "version_id": None,
        "etag": None,
        "size": 10,
        "sequencer": seq,
        "event_time": None,
        "status": "tagged",
        "error": None,
        "taken_at": f"2024-05-{1 + n:02d}T10:00:00+00:00",
        "model_version": model,
        "model_trained": False,
        "embedding": np.asarray(emb, np.float32).tolist(),
        "scene_probs": probs,
        "scenes": [],
        "albums": [],
        "matches": [],
    }


@pytest.fixture
def library(db):
    """Alice owns 4 photos of landmark '0' in a forest, Bob 2; release A active and re-tagged,
    scene albums filed under the shipped map. Returns ids per owner and the pieces to re-tag."""
    rng = np.random.default_rng(7)
    world = make_world(rng, [1, 1, 1], dim=32)
    e, lab = photos(rng, world, [60, 60, 60])
    cs = build_centroids(e, lab, min_cluster=50)
    refs, rl = references(rng, world)
    pe, _ = photos(rng, world, [6, 0, 0], sigma=0.2)  # close to landmark 0: they match
    sm = SceneMap.load()
    items = [
        _item("alice" if n < 4 else "bob", n, pe[n], _probs(sm, "bamboo_forest"), MODEL, "0A")
        for n in range(6)
    ]
    with db, db.cursor() as cur:
        ids = [pid for pid, _ in write_photos(cur, items)]
    import_release(db, _release("A", MODEL, world, cs, refs, rl))
    retag_release(db, "A", progress=False)
    retag_scenes(db, sm, progress=False)
    return {
        "alice": ids[:4],
        "bob": ids[4:],
        "items": items,
        "world": (world, cs, refs, rl),
        "emb": pe,
    }


def _login(pg_server, db_url: str, *roles: str) -> Iterator[str]:
    name = f"ui_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(pg_server.get_uri())
    admin.autocommit = True
    member = f" IN ROLE {', '.join(roles)}" if roles else ""
    with admin.cursor() as cur:
        cur.execute(f'CREATE ROLE "{name}" LOGIN{member}')
    head, _, query = db_url.partition("?")
    scheme, _, rest = head.partition("://")
    try:
        yield f"{scheme}://{name}@{rest.split('@', 1)[1]}?{query}"
    finally:
        with admin.cursor() as cur:
            cur.execute(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'"
            )
            cur.execute(f'DROP ROLE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture
def writer(pg_server, db_url):
    """A connection as a login role that is a member of sightline_album_writer only."""
    gen = _login(pg_server, db_url, "sightline_album_writer")
    conn = psycopg2.connect(next(gen))
    conn.autocommit = True
    yield conn
    conn.close()
    gen.close()


def _in_album(db, owner: str, kind: str, label: str) -> set[int]:
    with db, db.cursor() as cur:
        return {p["photo_id"] for p in albums.album_photos(cur, owner, kind, label, limit=1000)}


def _count(db, fn: str, owner: str, key: str, label: str) -> int:
    with db, db.cursor() as cur:
        rows = albums.rows(cur, f"SELECT * FROM {fn}(%(owner)s)", owner=owner)
    return sum(r["photos"] for r in rows if r[key] == label)


def test_hidden_photo_stays_hidden_through_remap_new_release_and_model_switch(
    db, library, writer
) -> None:
    """Hidden as the writer role: out of its scene and landmark album while the machine still
    files it there after a re-map, a re-tag with a new release and a new model's re-tag."""
    hidden, *kept = library["alice"]
    assert _in_album(db, "alice", "landmark", "0") == set(library["alice"])
    assert _in_album(db, "alice", "scene", "forest") == set(library["alice"])
    with writer.cursor() as cur:
        cur.execute("SELECT verdict FROM hide_from_album('alice', %s, 'landmark', '0')", (hidden,))
        assert cur.fetchone()[0] == "hide"
        cur.execute(
            "SELECT verdict FROM hide_from_album('alice', %s, 'scene', 'forest')", (hidden,)
        )

    def check(release: str) -> None:
        with db, db.cursor() as cur:
            # The machine still says so: the photo is filed and matched...
            cur.execute("SELECT album FROM photo_albums WHERE photo_id = %s", (hidden,))
            assert ("forest",) in cur.fetchall()
            cur.execute(
                "SELECT count(*) FROM landmark_matches WHERE photo_id = %s AND release = %s "
                "AND landmark_id = '0'",
                (hidden, release),
            )
            assert cur.fetchone()[0] == 1
        # ...and the albums do not show it; the other photos are still there.
        assert _in_album(db, "alice", "landmark", "0") == set(kept)
        assert _in_album(db, "alice", "scene", "forest") == set(kept)
        assert _count(db, "landmark_albums", "alice", "landmark_id", "0") == len(kept)
        assert _count(db, "scene_albums", "alice", "album", "forest") == len(kept)

    check("A")
    # A re-map from stored probabilities, under another map.
    retag_scenes(db, SceneMap.load(excluded=frozenset({"rainforest"})), progress=False)
    check("A")
    # A new release, re-tagged and switched to.
    world, cs, refs, rl = library["world"]
    import_release(db, _release("B", MODEL, world, cs, refs, rl))
    assert retag_release(db, "B", progress=False).status == "active"
    check("B")
    # A model switch: every photo re-tagged by a new model (a newer event), its release
    # built for that model and switched to.
    sm = SceneMap.load()
    items = [
        {
            **it,
            "model_version": NEW_MODEL,
            "sequencer": "0B",
            "albums": [["forest", 0.9]],
            "scene_probs": _probs(sm, "forest_path"),
        }
        for it in library["items"]
    ]
    with db, db.cursor() as cur:
        assert [o for _, o in write_photos(cur, items)] == ["tagged"] * len(items)
    import_release(db, _release("C", NEW_MODEL, world, cs, refs, rl))
    assert retag_release(db, "C", progress=False).status == "active"
    check("C")
    # Undo: the photo is back where the tagger puts it.
    with writer.cursor() as cur:
        cur.execute("SELECT undo_correction('alice', %s, 'landmark', '0')", (hidden,))
        assert cur.fetchone()[0] is True
        cur.execute("SELECT undo_correction('alice', %s, 'landmark', '0')", (hidden,))
        assert cur.fetchone()[0] is False
    assert _in_album(db, "alice", "landmark", "0") == set(library["alice"])


def test_added_landmark_and_scene_show_in_their_albums(db, library, writer) -> None:
    """A label the tagger never gave, added by the owner, shows in that album (score NULL)
    with the release's landmark name; undoing it takes it out again."""
    photo = library["alice"][0]
    assert _in_album(db, "alice", "landmark", "1") == set()
    with writer.cursor() as cur:
        cur.execute("SELECT * FROM add_to_album('alice', %s, 'landmark', '1')", (photo,))
        cur.execute("SELECT * FROM add_to_album('alice', %s, 'scene', 'sea & beach')", (photo,))
    with db, db.cursor() as cur:
        page = albums.album_photos(cur, "alice", "landmark", "1")
        marks = {r["landmark_id"]: r for r in albums.landmark_albums(cur, "alice")}
        scenes = {r["album"]: r["photos"] for r in albums.scene_albums(cur, "alice")}
        bob = albums.landmark_albums(cur, "bob")
    assert [(p["photo_id"], p["score"]) for p in page] == [(photo, None)]
    assert (marks["1"]["name"], marks["1"]["photos"], marks["1"]["release"]) == (
        "Landmark 1",
        1,
        "A",
    )
    assert marks["0"]["photos"] == 4  # adding elsewhere takes nothing from landmark 0
    assert scenes == {"forest": 4, "sea & beach": 1}
    assert [r["landmark_id"] for r in bob] == ["0"]
    with writer.cursor() as cur:
        cur.execute("SELECT undo_correction('alice', %s, 'landmark', '1')", (photo,))
    assert _in_album(db, "alice", "landmark", "1") == set()


def test_corrections_across_owners_and_outside_the_functions_are_refused(
    db, library, writer, pg_server, db_url
) -> None:
    """As the writer role: another owner's photo (or a missing one) is refused for hide, add
    and undo; the tables cannot be read or written directly; nothing is recorded."""
    bob_photo = library["bob"][0]
    with writer.cursor() as cur:
        for sql in (
            "SELECT * FROM hide_from_album('alice', %s, 'landmark', '0')",
            "SELECT * FROM add_to_album('alice', %s, 'scene', 'forest')",
            "SELECT undo_correction('alice', %s, 'landmark', '0')",
        ):
            for photo in (bob_photo, 10**12):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="not a photo"):
                    cur.execute(sql, (photo,))
        for sql in (
            "SELECT * FROM photo_corrections",
            "SELECT * FROM photos",
            "INSERT INTO photo_corrections VALUES ('alice', 1, 'scene', 'x', 'hide')",
            "DELETE FROM photo_corrections",
            "UPDATE photo_albums SET album = 'x'",
            "SELECT * FROM album_membership",
            "SELECT * FROM sightline_correct('bob', 1, 'scene', 'x', 'hide')",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(sql)
        with pytest.raises(psycopg2.errors.InvalidParameterValue, match="kind"):
            cur.execute("SELECT * FROM hide_from_album('bob', %s, 'album', 'x')", (bob_photo,))
        with pytest.raises(psycopg2.errors.InvalidParameterValue, match="no landmark"):
            cur.execute("SELECT * FROM add_to_album('bob', %s, 'landmark', 'zz')", (bob_photo,))
        # Bob's own photo, under Bob: accepted.
        cur.execute("SELECT * FROM hide_from_album('bob', %s, 'landmark', '0')", (bob_photo,))
    with db, db.cursor() as cur:
        cur.execute("SELECT owner, photo_id, label FROM photo_corrections")
        assert cur.fetchall() == [("bob", bob_photo, "0")]
    assert _in_album(db, "bob", "landmark", "0") == set(library["bob"]) - {bob_photo}
    # A role outside sightline_album_writer cannot call the functions at all.
    gen = _login(pg_server, db_url)
    conn = psycopg2.connect(next(gen))
    conn.autocommit = True
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT * FROM hide_from_album('bob', %s, 'landmark', '0')", (bob_photo,))
    finally:
        conn.close()
        gen.close()


def test_reader_role_reads_locale_overloads_but_cannot_correct(db, library, pg_server, db_url):
    """sightline_album_reader may call the new locale overloads, not the correction functions."""
    gen = _login(pg_server, db_url, "sightline_album_reader")
    conn = psycopg2.connect(next(gen))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT album, name FROM scene_albums('alice', 'ru')")
            assert cur.fetchall() == [("forest", "Лес")]
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(
                    "SELECT * FROM hide_from_album('alice', %s, 'scene', 'forest')",
                    (library["alice"][0],),
                )
    finally:
        conn.close()
        gen.close()


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_export_carries_the_filing_scores_and_numeric_embeddings_back_into_calibrate(
    db, db_url, library, writer, capsys, monkeypatch, tmp_path
) -> None:
    """`corrections export`: a hide (scene or landmark) carries the score that filed the
    photo in that album, an add none; the embedding is a JSON array of numbers (the photo's
    stored vector). `calibrate --corrections` reads the JSON and the CSV export (and an
    older export with pgvector text) to the same photos and thresholds."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    a = library["alice"]
    with db, db.cursor() as cur:
        forest = {
            p["photo_id"]: p["score"] for p in albums.album_photos(cur, "alice", "scene", "forest")
        }
        marks = {
            p["photo_id"]: p["score"] for p in albums.album_photos(cur, "alice", "landmark", "0")
        }
    assert set(forest) == set(marks) == set(a)
    with writer.cursor() as cur:
        cur.execute("SELECT * FROM hide_from_album('alice', %s, 'scene', 'forest')", (a[0],))
        cur.execute("SELECT * FROM hide_from_album('alice', %s, 'landmark', '0')", (a[1],))
        cur.execute("SELECT * FROM add_to_album('alice', %s, 'landmark', '1')", (a[2],))
        cur.execute("SELECT * FROM add_to_album('alice', %s, 'scene', 'sea & beach')", (a[3],))

    code, text, err = _cli(capsys, "corrections", "export", "--json")
    assert code == 0 and err == ""
    rows = {(r["photo_id"], r["kind"], r["verdict"]): r for r in map(json.loads, text.splitlines())}
    assert sorted(rows) == sorted(
        [(a[0], "scene", "hide"), (a[1], "landmark", "hide"), (a[2], "landmark", "add"),
         (a[3], "scene", "add")]
    )  # fmt: skip
    assert rows[a[0], "scene", "hide"]["score"] == forest[a[0]]
    assert rows[a[1], "landmark", "hide"]["score"] == marks[a[1]]
    assert rows[a[2], "landmark", "add"]["score"] is None
    assert rows[a[3], "scene", "add"]["score"] is None
    for (pid, _, _), r in rows.items():
        emb = r["embedding"]
        assert isinstance(emb, list) and all(isinstance(x, float) for x in emb)
        want = library["emb"][a.index(pid)]
        np.testing.assert_allclose(emb, want, atol=2e-3)  # stored as halfvec
    (tmp_path / "c.jsonl").write_text(text)
    code, text_csv, err = _cli(capsys, "corrections", "export", "--csv")
    assert code == 0 and err == ""
    (tmp_path / "c.csv").write_text(text_csv)
    by_csv = {int(r["photo_id"]): r for r in csv.DictReader(io.StringIO(text_csv))}
    for (pid, _, _), r in rows.items():
        assert json.loads(by_csv[pid]["embedding"]) == r["embedding"]
    old = [{**r, "embedding": str(r["embedding"]).replace(" ", "")} for r in rows.values()]
    (tmp_path / "old.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))

    save_release(_release("A", MODEL, *library["world"]), tmp_path / "A.npz")
    results = []
    for name in ("c.jsonl", "c.csv", "old.jsonl"):
        code, out, err = _cli(
            capsys, "calibrate", "--release", str(tmp_path / "A.npz"), "--corrections",
            str(tmp_path / name), "--target-fpr", "0.1", "--out", str(tmp_path / f"{name}.npz"),
            "--json",
        )  # fmt: skip
        assert code == 0, err
        results.append(json.loads(out))
    used = results[0]["corrections"]
    assert (used["rows"], used["hidden"], used["added"], used["no_embedding"]) == (2, 1, 1, 0)
    assert all(r["corrections"] == used for r in results)
    assert all(r["thresholds"] == results[0]["thresholds"] for r in results)
