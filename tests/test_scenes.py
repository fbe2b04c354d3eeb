"""Places365 classes and the scene map."""

from __future__ import annotations

import numpy as np
import pytest

from models.scenes import SceneMap, load_categories, load_indoor


def test_categories_are_the_365_places_classes_in_index_order() -> None:
    cats = load_categories()
    assert len(cats) == 365 and len(set(cats)) == 365
    assert cats[0] == "airfield" and cats[-1] == "zen_garden"
    assert "forest/broadleaf" in cats


def test_indoor_flags_follow_the_io_list() -> None:
    io = load_indoor()
    assert io["bedroom"] is True and io["coast"] is False


def test_album_score_is_the_sum_of_its_classes() -> None:
    """A mapped label's score is the sum of its fine classes' probabilities."""
    sm = SceneMap.load()
    probs = np.zeros((1, 365), dtype=np.float32)
    idx = {c: i for i, c in enumerate(sm.categories)}
    probs[0, idx["forest_path"]] = 0.2
    probs[0, idx["rainforest"]] = 0.17
    probs[0, idx["mountain_path"]] = 0.25
    ((best, *_),) = sm.album_scores(probs)
    assert best[0] == "forest" and best[1] == pytest.approx(0.37)
