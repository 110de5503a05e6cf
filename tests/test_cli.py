"""The command line as a user meets it: help for every command, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from talking_faces import __version__
from talking_faces.cli import COMMANDS, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"talking-faces {command}" in out
    assert len(out.splitlines()) > 3


def test_unknown_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:")
    assert len(err.splitlines()) == 1


def test_console_script_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "talking_faces", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    for command in COMMANDS:
        assert command in proc.stdout
