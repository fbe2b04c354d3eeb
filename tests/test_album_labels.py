"""Labels in the user's language: scene album names from the shipped catalogue, landmark
names from the release CSV's name_<locale> columns, English when a translation is missing."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np
import pytest

from models.landmarks import Thresholds
from models.release import ReleaseError, load_release, make_release, save_release
from models.scenes import SceneMap
from sightline import albums
from sightline.landmark_inputs import read_landmarks_csv
from workers.releases import import_release
from workers.store import write_photos

CATALOGUE = resources.files("models") / "data" / "album_labels.csv"


def test_catalogue_names_every_shipped_album_in_english_and_russian(db) -> None:
    """Every album label of the shipped map has an en and a ru name, and the migration loaded
    exactly the shipped catalogue file."""
    rows = list(csv.DictReader(CATALOGUE.read_text(encoding="utf-8").splitlines()))
    assert {r["label"] for r in rows} == set(SceneMap.load().albums)
    assert all(r["en"].strip() and r["ru"].strip() for r in rows)
    assert all(any("\u0400" <= ch <= "\u04ff" for ch in r["ru"]) for r in rows)
    with db, db.cursor() as cur:
        cur.execute("SELECT label, locale, name FROM scene_label_names")
        stored = set(cur.fetchall())
    assert stored == {(r["label"], loc, r[loc]) for r in rows for loc in ("en", "ru")}


@pytest.fixture
def landmark_csv(tmp_path):
    path = tmp_path / "landmarks.csv"
    path.write_text(
        "id,name,city,country,lat,lon,name_ru,name_pt_BR\n"
        "eiffel,Eiffel Tower,Paris,France,48.858,2.294,Эйфелева башня,Torre Eiffel\n"
        "louvre,Louvre,Paris,France,48.861,2.336,,\n",
        encoding="utf-8",
    )
    return path


def _release(rows, version: str = "r1"):
    rng = np.random.default_rng(0)
    c = rng.standard_normal((2, 8)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return make_release(
        version=version,
        model_version="m",
        thresholds=Thresholds(),
        landmarks=rows,
        centroids=c,
        centroid_landmarks=np.array([0, 1]),
    )


def test_release_carries_name_columns_through_its_file(landmark_csv, tmp_path) -> None:
    """name_<locale> columns of the landmark CSV survive save and load, normalised to
    lower-case locales; a release without them keeps the hash it had before."""
    rows = read_landmarks_csv(str(landmark_csv))
    release = _release(rows)
    save_release(release, tmp_path / "r.npz")
    back = load_release(tmp_path / "r.npz")
    assert sorted(back.localized_names) == ["pt-br", "ru"]
    assert back.localized_names["ru"].tolist() == ["Эйфелева башня", ""]
    assert back.content_hash() == release.content_hash()
    bare = _release([{k: v for k, v in r.items() if not k.startswith("name_")} for r in rows])
    assert bare.localized_names == {}
    assert bare.content_hash() != release.content_hash()
    with pytest.raises(ReleaseError, match="locale"):
        from dataclasses import replace

        replace(release, localized_names={"ru": np.array(["x"])}).validate()


def _tagged(owner: str, n: int, album: str, match: str | None) -> dict:
    return {
        "owner": owner,
        "bucket": "b",
        "key": f"{owner}/{n}.jpg",
        "status": "tagged",
        "taken_at": f"2024-05-0{n + 1}T10:00:00Z",
        "albums": [[album, 0.9]],
        "matches": [["r1", match, 0.9]] if match else [],
    }


def test_album_functions_answer_in_the_locale_asked_with_english_fallback(db, landmark_csv) -> None:
    """scene_albums/landmark_albums (owner, locale) give the display name beside the stable
    id: Russian for 'ru' and 'ru-RU'; English for a locale with no translation; a label the
    catalogue lacks is shown as itself; the one-argument forms are unchanged."""
    import_release(db, _release(read_landmarks_csv(str(landmark_csv))))
    with db, db.cursor() as cur:
        cur.execute("UPDATE releases SET status = 'active'")
        write_photos(
            cur,
            [
                _tagged("alice", 0, "forest", "eiffel"),
                _tagged("alice", 1, "forest", "louvre"),
                _tagged("alice", 2, "jungle", None),
            ],
        )

        def scenes(locale: str) -> dict[str, str]:
            sql = "SELECT album, name FROM scene_albums(%(o)s, %(l)s)"
            return {r["album"]: r["name"] for r in albums.rows(cur, sql, o="alice", l=locale)}

        def marks(locale: str) -> dict[str, str]:
            sql = "SELECT landmark_id, name FROM landmark_albums(%(o)s, %(l)s)"
            return {r["landmark_id"]: r["name"] for r in albums.rows(cur, sql, o="alice", l=locale)}

        assert (
            scenes("ru")
            == scenes("ru-RU")
            == scenes("ru_RU")
            == {
                "forest": "Лес",
                "jungle": "jungle",
            }
        )
        assert scenes("en") == scenes("de") == {"forest": "Forest", "jungle": "jungle"}
        assert marks("ru") == marks("RU-ru") == {"eiffel": "Эйфелева башня", "louvre": "Louvre"}
        assert marks("pt-BR") == {"eiffel": "Torre Eiffel", "louvre": "Louvre"}
        assert marks("pt") == marks("de") == {"eiffel": "Eiffel Tower", "louvre": "Louvre"}
        assert [r["album"] for r in albums.scene_albums(cur, "alice")] == ["forest", "jungle"]
        assert {r["name"] for r in albums.landmark_albums(cur, "alice")} == {
            "Eiffel Tower",
            "Louvre",
        }
