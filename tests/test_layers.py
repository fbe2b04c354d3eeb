"""The house's floors: `models/` imports neither `handlers/` nor `workers/`; neither of those
imports the CLI package `sightline/`; `handlers/` imports no torch, PIL or numpy. Read from
the source with `ast`, so an import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> top-level packages its modules must never import
FORBIDDEN = {
    "handlers": {"sightline", "workers", "models", "torch", "torchvision", "PIL", "numpy"},
    "workers": {"sightline"},
    "models": {"sightline", "handlers", "workers"},
}


def imported_roots(source: str) -> set[str]:
    """The top-level package of every absolute import in ``source`` (relative ones skipped)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_scan_sees_imports_at_any_depth() -> None:
    """Top-level, nested and `from` imports are all found; relative ones are not roots."""
    src = "import a.b\nfrom c.d import e\ndef f():\n    import g\n    from . import h\n"
    assert imported_roots(src) == {"a", "c", "g"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_imports_a_floor_above_it(package: str) -> None:
    """Every .py file under the package imports none of its forbidden packages."""
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    bad = {
        str(p.relative_to(ROOT)): sorted(imported_roots(p.read_text("utf-8")) & FORBIDDEN[package])
        for p in files
    }
    assert not {k: v for k, v in bad.items() if v}
