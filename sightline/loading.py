"""The serving policy (``models/``) for a command that runs once and exits, with its
failures as one-line command errors."""

from __future__ import annotations

from typing import Any

from workers.settings import Settings


def load_network(settings: Settings, weights: str | None = None) -> tuple[Any, Any]:
    """(net, meta) from ``weights`` or SIGHTLINE_WEIGHTS; an untrained network only when
    SIGHTLINE_ALLOW_UNTRAINED is set (``models.checkpoint.load_or_untrained``). Raises
    CliError otherwise."""
    from models.checkpoint import NoWeights, load_or_untrained
    from sightline.cli import CliError

    try:
        return load_or_untrained(
            weights or settings.weights,
            allow_untrained=settings.allow_untrained,
            arch=settings.arch,
        )
    except NoWeights as exc:
        if weights or settings.weights:  # a checkpoint refused (no trained head): say why
            raise CliError(str(exc)) from None
        raise CliError(
            "no weights: set SIGHTLINE_WEIGHTS (or --weights), or SIGHTLINE_ALLOW_UNTRAINED=1 "
            "to run an untrained network"
        ) from None
