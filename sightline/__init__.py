"""sightline: automatic scene and landmark tagging for a photo cloud."""

__version__ = "0.1.0"
