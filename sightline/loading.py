"""The network and scene map a command-line tool runs with, from settings (not the worker's
long-lived wrapper: these commands run once and exit)."""

from __future__ import annotations

from typing import Any

from workers.settings import Settings


def load_network(settings: Settings, weights: str | None = None) -> tuple[Any, Any]:
    """(net, meta) from ``weights`` or SIGHTLINE_WEIGHTS; an untrained network only when
    SIGHTLINE_ALLOW_UNTRAINED is set. Raises CliError otherwise."""
    from models.checkpoint import load_checkpoint, untrained
    from models.scenes import load_categories
    from models.transforms import default_transform
    from sightline.cli import CliError

    weights = weights or settings.weights
    if weights:
        return load_checkpoint(weights)
    if settings.allow_untrained:
        return untrained(
            arch=settings.arch,
            categories=load_categories(),
            transform=default_transform(settings.arch),
        )
    raise CliError(
        "no weights: set SIGHTLINE_WEIGHTS (or --weights), or SIGHTLINE_ALLOW_UNTRAINED=1 "
        "to run an untrained network"
    )


def scene_map_for(settings: Settings, meta: Any) -> Any:
    """The scene map in force for a checkpoint: the map setting, and as sift the classes the
    checkpoint was trained without plus those of the sift setting."""
    from models.scenes import SceneMap, load_sift

    excluded = frozenset(meta.excluded) | load_sift(settings.sift)
    return SceneMap.load(settings.scene_map, categories=meta.categories, excluded=excluded)
