"""Every `sightline` command's --help renders, and every option and argument in it says what
it is for."""

from __future__ import annotations

import argparse

import pytest

from sightline.cli import build_parser, main


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("sightline",)
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command path, its parser) for every command and sub-command, depth first."""
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _commands(sub, (*path, name))
    return out


COMMANDS = _commands(build_parser())


def test_every_option_has_a_help_string() -> None:
    """No option or argument of any command lacks a help string."""
    missing = [
        f"{' '.join(path)} {'/'.join(a.option_strings) or a.dest}"
        for path, parser in COMMANDS
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction) and not a.help
    ]
    assert missing == []


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_renders(path, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main([*path[1:], "--help"])
    out = capsys.readouterr()
    assert done.value.code == 0 and out.err == ""
    assert out.out.startswith(f"usage: {' '.join(path)}")
