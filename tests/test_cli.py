"""The ``tuina`` command line: one module per command, each with its own --help."""

import re
import shlex
import sys
from pathlib import Path

import pytest

from tuina.cli import COMMANDS, main, parse
from tuina.evaluation import EVALUATIONS


def help_of(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_the_top_help_lists_every_command_without_importing_them(capsys):
    for name in ("tuina.calibrate", "tuina.recording.replay", "tuina.evaluation.tracking"):
        sys.modules.pop(name, None)
    text = help_of(capsys)
    assert all(name in text for name in COMMANDS)
    assert "tuina.calibrate" not in sys.modules and "tuina.recording.replay" not in sys.modules


@pytest.mark.parametrize("argv, option", [
    (("run",), "--verbose"), (("calibrate",), "--marker-in-ee"), (("record",), "--mandatory"),
    (("replay",), "--speed"), (("report",), "--output"), (("estop",), "--reason"),
    (("augment",), "--copies"), (("eval", "tracking"), "--frames-only"),
    (("eval", "coverage"), "--point"), (("eval", "grounding"), "--backend"),
])
def test_each_command_has_its_own_options(capsys, argv, option):
    assert option in help_of(capsys, *argv)


def test_eval_lists_every_evaluation(capsys):
    text = help_of(capsys, "eval")
    assert all(name in text for name in EVALUATIONS)


def test_a_missing_option_pair_is_one_error_line(capsys):
    assert main(["calibrate", "dataflows/sim.yml", "--pairs", "poses.csv"]) == 2
    assert capsys.readouterr().err == ("tuina calibrate: error: --pairs needs --marker-in-ee "
                                       "X Y Z (the marker centre on the tool)\n")


def documented_commands() -> list[tuple[str, str]]:
    """Every ``.venv/bin/tuina ...`` line of the README and docs/ (file, line)."""
    root = Path(__file__).resolve().parents[1]
    found = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for line in page.read_text().splitlines():
            if line.lstrip().startswith(".venv/bin/tuina "):
                found.append((page.name, line.split(" #")[0].strip()))
    return found


def test_every_documented_command_parses_as_written():
    commands = documented_commands()
    assert len(commands) > 20
    for page, line in commands:
        words = line.split(" ", 1)[1]
        bare = re.sub(r"\[[^\]]*\]", "", words)  # without its optional parts
        full = re.sub(r"[\[\]]", "", words)  # with them, first of each a|b choice
        full = re.sub(r"(\S+?)\|\S+", r"\1", full)
        for text in (bare, full):
            try:
                parse(shlex.split(text))
            except SystemExit:
                pytest.fail(f"{page}: `{line}` does not parse ({text})")
