"""Every test that starts a process (a worker, the CLI, any subprocess) carries the `slow`
marker, so `./scripts/test -m "not slow"` is the quick loop. Read from the source with `ast`:
a test counts when it, a helper of its module, or a fixture of its module it takes as an
argument calls `start_worker`, `run_cli` or `subprocess.*`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SPAWN = {"start_worker", "run_cli"}


def _calls(fn: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                out.add(f.id)
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                out.add(f"{f.value.id}.{f.attr}")
    return out


def unmarked_spawners(source: str) -> list[str]:
    """Names of the test functions in ``source`` that start a process and are not `slow`."""
    tree = ast.parse(source)
    funcs = {
        n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    calls = {name: _calls(fn) for name, fn in funcs.items()}
    spawn = {
        n for n, c in calls.items() if c & SPAWN or any(x.startswith("subprocess.") for x in c)
    }
    grown = True
    while grown:
        more = {n for n, c in calls.items() if n not in spawn and c & spawn}
        more |= {
            n for n, f in funcs.items() if n not in spawn and {a.arg for a in f.args.args} & spawn
        }
        spawn |= more
        grown = bool(more)
    module_slow = any(
        isinstance(n, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)
        and "slow" in ast.unparse(n.value)
        for n in tree.body
    )
    return [
        name
        for name, fn in funcs.items()
        if name.startswith("test_")
        and name in spawn
        and not module_slow
        and not any("slow" in ast.unparse(d) for d in fn.decorator_list)
    ]


def test_the_scan_finds_a_spawner_through_a_helper_and_a_fixture() -> None:
    """A test reaching subprocess through a helper, or through a fixture argument, counts;
    a marked one and one that starts nothing do not."""
    src = (
        "import subprocess, pytest\n"
        "def helper():\n    subprocess.run(['true'])\n"
        "@pytest.fixture\ndef proc():\n    helper()\n"
        "def test_a():\n    helper()\n"
        "def test_b(proc):\n    pass\n"
        "@pytest.mark.slow\ndef test_c():\n    run_cli('x')\n"
        "def test_d():\n    assert 1 + 1 == 2\n"
    )
    assert unmarked_spawners(src) == ["test_a", "test_b"]


@pytest.mark.parametrize("path", sorted(TESTS.glob("test_*.py")), ids=lambda p: p.name)
def test_tests_that_start_processes_are_marked_slow(path: Path) -> None:
    """No test module has an unmarked test that starts a process."""
    assert unmarked_spawners(path.read_text("utf-8")) == []
