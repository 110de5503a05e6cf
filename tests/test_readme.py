"""Every command the README shows runs as written (in a scratch folder, in README order).

Blocks fenced as ```bash are run line by line with bash, blocks fenced as ```python whole with
this interpreter; ``make`` lines are skipped because they are what runs this test. Paths in the
README are relative to the repository root, so ``experiments/``
is linked into the scratch folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_commands() -> list[list[str]]:
    """argv of every README command in order: each line of a ```bash block, each ```python block
    whole (run by this interpreter)."""
    text = README.read_text()
    commands: list[list[str]] = []
    for lang, block in re.findall(r"```(bash|python)\n(.*?)```", text, flags=re.S):
        if lang == "python":
            commands.append([sys.executable, "-c", block])
            continue
        # join backslash continuations, drop comments and make targets
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("make "):
                continue
            commands.append(["bash", "-c", line])
    return commands


def test_readme_starts_with_setup_command() -> None:
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S)
    assert first_block is not None
    assert first_block.group(1).strip().splitlines()[0].strip() == "make test"


@pytest.mark.slow
def test_readme_commands_run(tmp_path: Path) -> None:
    commands = readme_commands()
    assert commands, "README shows no commands"
    (tmp_path / "experiments").symlink_to(ROOT / "experiments", target_is_directory=True)
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("WANDB_MODE", "offline")
    env["TALKING_FACES_QUIET"] = "1"
    assert any(argv[0] == sys.executable for argv in commands), "the Python example is not found"
    for argv in commands:
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"README command failed: {argv[-1]}\n{proc.stderr[-2000:]}"

    # what the README says the evaluate examples write
    ldm = json.loads((tmp_path / "results" / "ldm.json").read_text())
    assert ldm["method"] == "ldm" and ldm["num_samples"] == 3
    diversity = {"diversity_l1", "diversity_mouth_share", "diversity_lse_c_spread"}
    assert diversity <= set(ldm["metrics"])
    assert (tmp_path / "results" / "ground-truth.clips.csv").is_file()
