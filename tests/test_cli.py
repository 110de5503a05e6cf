"""The command line as a user meets it: help for every command, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from talking_faces import __version__
from talking_faces.cli.main import COMMANDS, main


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


def test_bare_command_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: talking-faces")
    listed = [
        line.split()[0] for line in out.splitlines() if line.startswith("    ") and line[4] != " "
    ]
    assert listed == COMMANDS


#: argument errors every command answers before importing torch (run in a fresh interpreter)
NO_TORCH_ERRORS = [
    (["evaluate", "nope.ckpt", "--data", "nope"], "checkpoint nope.ckpt does not exist"),
    (["evaluate", "--baseline", "static", "--data", "nope"], "prepared dataset nope does not"),
    (["fit", "nope.yaml"], "config file nope.yaml does not exist"),
    (["prepare", "nope", "out", "--layout", "grid"], "source folder nope does not exist"),
    (["generate", "nope.ckpt", "--image", "a.png", "--audio", "a.wav", "--out", "a.mp4"], "nope"),
]


def test_user_errors_come_before_torch_is_imported(tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        "from talking_faces.cli.main import main\n"
        "codes = [main(argv) for argv in json.loads(sys.argv[1])]\n"
        "print(json.dumps({'codes': codes, 'torch': 'torch' in sys.modules}))\n"
    )
    argvs = [argv for argv, _ in NO_TORCH_ERRORS]
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(argvs)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"codes": [2] * len(argvs), "torch": False}
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == len(argvs)
    for line, (_, needle) in zip(errors, NO_TORCH_ERRORS, strict=True):
        assert line.startswith("error: ") and needle in line, line
