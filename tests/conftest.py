"""Shared fixtures: one tiny synthetic GRID corpus and its prepared dataset per test session.

Made through the real CLI (``synth`` then ``prepare``), so tests that use them exercise the whole
chain; session-scoped because preparing takes seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from talking_faces.cli import main


@pytest.fixture(scope="session")
def synthetic_grid_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw GRID-layout corpus: 2 speakers x 3 clips of 75 frames, 128 px, with sidecars."""
    raw = tmp_path_factory.mktemp("synthetic") / "grid_raw"
    args = ["synth", str(raw), "--layout", "grid", "--speakers", "2", "--clips", "3"]
    assert main([*args, "--size", "128"]) == 0
    return raw


@pytest.fixture(scope="session")
def prepared_grid(synthetic_grid_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synthetic_grid_raw`` prepared at 64 px with its sidecar landmarks."""
    prep = tmp_path_factory.mktemp("prepared") / "grid"
    args = ["prepare", str(synthetic_grid_raw), str(prep), "--layout", "grid"]
    assert main([*args, "--landmarks", "sidecar", "--size", "64"]) == 0
    return prep
