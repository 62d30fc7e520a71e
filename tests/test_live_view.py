"""What `orch build` shows: a live view in a (pseudo-)terminal, plain timestamped lines when the
output is not a terminal or `CI` is set."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from .buildkit import in_terminal

PIPELINE = """\
version: 1
providers:
  offline: { kind: fake, echo: true }
steps:
  slow:
    run: "sleep 0.6 && echo done > slow.txt"
    output: slow.txt
  ask:
    prompt: "three little words"
    output: answer.md
"""
SPINNER = re.compile("[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]")
COLOR = re.compile(r"\x1b\[(?:\d+;)*(?:3\d|9\d|38;5;\d+)m")
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def build_in_terminal(folder: Path, **env: str) -> str:
    """Everything `orch build` writes to a pseudo-terminal, with newlines left as they are."""
    (folder / "orch.yaml").write_text(PIPELINE, encoding="utf-8")
    code, shown = in_terminal(folder, "build", "-j", "2", env=env)
    assert code == 0, shown
    return shown


def test_a_terminal_shows_a_row_per_running_step_then_the_summary(tmp_path: Path) -> None:
    shown = build_in_terminal(tmp_path)
    text = ESCAPE.sub("", shown)
    assert SPINNER.search(text), "a spinner"
    assert re.search(r"slow\s+\d+\.\d s", text), "the running step with its elapsed time"
    assert re.search(r"ok\s+slow  \(\d+\.\d\d s\)", text)
    assert re.search(r"ok\s+ask  \(\d+\.\d\d s\)", text)
    assert re.search(r"succeeded in \d+\.\d\d s: 2 ran; 6 tokens", text)
    assert "\x1b[2K" in shown, "a live view redraws itself"
    assert COLOR.search(shown), "and uses colour"


def test_the_warning_about_a_kept_file_shows_its_command_on_one_line(tmp_path: Path) -> None:
    (tmp_path / "slow.txt").write_text("made by hand\n", encoding="utf-8")
    text = ESCAPE.sub("", build_in_terminal(tmp_path))
    digest = hashlib.sha256(b"made by hand\n").hexdigest()
    command = f"orch cache cat {digest} > slow.txt"
    warning = "warning   slow  kept slow.txt, which orch had not recorded; bring it back with: "
    assert f"{warning}{command}\n" in text


def test_no_color_keeps_the_live_view_without_colours(tmp_path: Path) -> None:
    shown = build_in_terminal(tmp_path, NO_COLOR="1")
    assert SPINNER.search(shown)
    assert not COLOR.search(shown)


@pytest.mark.parametrize("ci", ["1", "true"])
def test_with_ci_set_a_terminal_gets_plain_timestamped_lines(tmp_path: Path, ci: str) -> None:
    shown = build_in_terminal(tmp_path, CI=ci)
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", shown), "no control characters"
    lines = shown.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d run       slow  \(never built\)", lines[0])
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d ok        ask  \(\d+\.\d\d s\)", x) for x in lines)
    assert lines[-1].startswith("succeeded in ")
