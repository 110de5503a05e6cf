"""Where a run or a result came from: the git commit of the source checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


def git_info() -> dict[str, Any]:
    """``{"commit", "dirty", "repo"}`` of the checkout this package runs from.

    ``commit`` and ``dirty`` stay None when the package is not a git checkout (an installed wheel)
    or git is missing; ``dirty`` ignores untracked files.
    """
    repo = Path(__file__).resolve().parents[2]
    info: dict[str, Any] = {"commit": None, "dirty": None, "repo": str(repo)}
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        info["dirty"] = bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        pass  # not a git checkout: commit and dirty stay unknown
    return info
