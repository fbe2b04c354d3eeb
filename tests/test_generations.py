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
