"""Model generations: a model switch with albums sampled throughout loses no photo from its
albums; the old model's release retires by command once none of its photos is left."""

from __future__ import annotations

import pytest

from sightline.benches._switch import run_switch


@pytest.mark.slow
def test_model_switch_keeps_every_photo_in_its_albums(db_url) -> None:
    """Switching weights A -> B with B's release active beside A's: every sample of
    scene_albums and landmark_albums, taken while photos are re-embedded, holds every photo
    where its own model's results put it (album_drops 0), through mid-switch samples."""
    r = run_switch(db_url, photos=400, landmarks=4, batch=50, sample_every_s=0.05)
    assert r.reembedded == r.photos == 400
    assert r.landmark_photos_a > 20 and r.landmark_photos_b > 20  # albums to lose exist
    assert r.mid_switch_samples >= 3 and r.samples > r.mid_switch_samples
    assert r.scene_refiled > 0  # a photo is filed by the model that last tagged it
    assert r.album_drops == 0


@pytest.mark.slow
def test_reembedding_before_the_new_release_is_active_drops_photos(db_url) -> None:
    """The sampler sees drops when they happen: re-embedding under B before B's release is
    active takes photos out of their landmark albums until it is (why the release comes
    first)."""
    r = run_switch(
        db_url, photos=200, landmarks=4, batch=25, sample_every_s=0.05, new_release_first=False
    )
    assert r.landmark_photos_a > 10 and r.mid_switch_samples >= 2
    assert r.album_drops > 0


def _landmarks_truth(cur, owner: str) -> list[tuple]:
    """(landmark, photos, cover) by a full scan of album_membership (0015's rule)."""
    cur.execute(
        "SELECT label, count(*), (array_agg(photo_id ORDER BY sort_at DESC, photo_id DESC))[1] "
        "FROM album_membership WHERE owner = %s AND kind = 'landmark' GROUP BY label "
        "ORDER BY label",
        (owner,),
    )
    return cur.fetchall()


def _check_two_generations(cur) -> dict[str, int]:
    """Summaries equal a rebuild; landmark_albums (both overloads) and album_photos equal the
    membership view's full scan. Returns photos per landmark."""
    cur.execute("SELECT * FROM album_summaries WHERE photos > 0 ORDER BY 1, 2, 3, 4")
    kept = cur.fetchall()
    cur.execute("SAVEPOINT rebuild")
    cur.execute("SELECT sightline_album_summaries_rebuild()")
    cur.execute("SELECT * FROM album_summaries WHERE photos > 0 ORDER BY 1, 2, 3, 4")
    assert cur.fetchall() == kept
    cur.execute("ROLLBACK TO SAVEPOINT rebuild")
    truth = _landmarks_truth(cur, "alice")
    cur.execute("SELECT landmark_id, photos, cover_photo_id FROM landmark_albums('alice')")
    assert sorted(cur.fetchall()) == truth
    cur.execute("SELECT landmark_id, photos FROM landmark_albums('alice', 'en')")
    assert sorted(cur.fetchall()) == [(t[0], t[1]) for t in truth]
    for label, _, _ in truth:
        cur.execute(
            "SELECT photo_id FROM album_membership WHERE owner = 'alice' AND kind = 'landmark' "
            "AND label = %s ORDER BY sort_at DESC, photo_id DESC",
            (label,),
        )
        want = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT photo_id FROM album_photos('alice', 'landmark', %s)", (label,))
        assert [r[0] for r in cur.fetchall()] == want
    return {t[0]: t[1] for t in truth}


def test_two_active_generations_keep_summaries_and_corrections(db) -> None:
    """With model a's release and model b's release both active, a landmark album counts each
    photo once, through its own model's release; hides and adds apply across both; a photo
    re-embedded by b moves to b's matches, and one whose model version another writer changes
    leaves a's release. After each step the summaries equal a rebuild, and landmark_albums
    and album_photos equal the membership view's full scan."""
    from workers.store import write_photos

    with db, db.cursor() as cur:
        for rel, model in (("RA", "a"), ("RB", "b")):
            cur.execute(
                "INSERT INTO releases (version, embedding_dim, model_version, thresholds, status,"
                " activated_at) VALUES (%s, 8, %s, '{}', 'active', now())",
                (rel, model),
            )
            cur.execute(
                "INSERT INTO landmarks (release, landmark_id, name) VALUES (%s, 'L0', %s), "
                "(%s, 'L1', %s)",
                (rel, f"Zero {model}", rel, f"One {model}"),
            )

        def item(i: int, model: str, matches: list) -> dict:
            return {
                "owner": "alice", "bucket": "b", "key": f"{i}.jpg", "status": "tagged",
                "model_version": model, "model_trained": True,
                "taken_at": f"2024-01-0{i + 1}T00:00:00+00:00", "albums": [["forest", 0.6]],
                "matches": matches,
            }  # fmt: skip

        items = [item(i, "a", [["RA", "L0", 0.9]]) for i in range(3)]
        items += [item(i, "b", [["RB", "L0", 0.8]]) for i in range(3, 5)]
        items += [item(5, "b", [["RB", "L1", 0.7]])]
        ids = [pid for pid, _ in write_photos(cur, items)]
        assert _check_two_generations(cur) == {"L0": 5, "L1": 1}

        cur.execute("SELECT hide_from_album('alice', %s, 'landmark', 'L0')", (ids[0],))
        cur.execute("SELECT add_to_album('alice', %s, 'landmark', 'L1')", (ids[1],))
        assert _check_two_generations(cur) == {"L0": 4, "L1": 2}

        # ids[2] re-embedded by b: its a match goes, b's result files it under L1.
        (out,) = write_photos(cur, [item(2, "b", [["RB", "L1", 0.9]])])
        assert out == (ids[2], "tagged")
        assert _check_two_generations(cur) == {"L0": 3, "L1": 3}

        # Another writer moves ids[1] to model b: its match in a's release is dropped.
        cur.execute("UPDATE photos SET model_version = 'b' WHERE id = %s", (ids[1],))
        cur.execute("SELECT count(*) FROM landmark_matches WHERE photo_id = %s", (ids[1],))
        assert cur.fetchone()[0] == 0
        assert _check_two_generations(cur) == {"L0": 2, "L1": 3}  # still added to L1

        cur.execute("SELECT undo_correction('alice', %s, 'landmark', 'L0')", (ids[0],))
        assert _check_two_generations(cur) == {"L0": 3, "L1": 3}
