"""Places365 classes and the scene map."""

from __future__ import annotations

import numpy as np
import pytest

from models.scenes import SceneMap, SceneMapError, load_categories, load_indoor


def test_categories_are_the_365_places_classes_in_index_order() -> None:
    cats = load_categories()
    assert len(cats) == 365 and len(set(cats)) == 365
    assert cats[0] == "airfield" and cats[-1] == "zen_garden"
    assert "forest/broadleaf" in cats


def test_indoor_flags_follow_the_io_list() -> None:
    io = load_indoor()
    assert io["bedroom"] is True and io["coast"] is False


def test_seed_groups_map_to_one_album() -> None:
    """The seed's examples: five forest classes -> forest, hotel classes -> hotel."""
    sm = SceneMap.load()
    by = dict(zip(sm.categories, sm.albums_by_class))
    for c in ["bamboo_forest", "forest/broadleaf", "forest_path", "forest_road", "rainforest"]:
        assert by[c] == "forest"
    for c in ["hospital", "hospital_room", "nursery", "operating_room"]:
        assert by[c] == "hospital"
    for c in ["hotel/outdoor", "hotel_room", "inn/outdoor", "youth_hostel"]:
        assert by[c] == "hotel"


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


def test_scene_map_missing_a_class_is_refused(tmp_path) -> None:
    cats = load_categories()
    path = tmp_path / "map.csv"
    path.write_text("places365_class,album\n" + "".join(f"{c},x\n" for c in cats[1:]))
    with pytest.raises(SceneMapError, match="misses 1 classes"):
        SceneMap.load(path)


def test_scene_map_with_unknown_class_is_refused(tmp_path) -> None:
    cats = load_categories()
    path = tmp_path / "map.csv"
    path.write_text("places365_class,album\n" + "".join(f"{c},x\n" for c in [*cats, "moon"]))
    with pytest.raises(SceneMapError, match="unknown classes"):
        SceneMap.load(path)
