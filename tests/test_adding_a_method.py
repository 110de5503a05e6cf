"""docs/adding-a-method.md is true: its toy method, written outside the package exactly as the
page shows, is registered through the documented path and trains and scores through the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "adding-a-method.md"


def _block(lang: str, index: int = 0) -> str:
    blocks = re.findall(rf"```{lang}\n(.*?)```", PAGE.read_text(), flags=re.S)
    return blocks[index]


@pytest.mark.slow
def test_toy_method_from_the_docs_trains_and_is_scored(trained: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "my_methods"
    plugin.mkdir()
    (plugin / "toy_method.py").write_text(_block("python"))
    (plugin / "toy.yaml").write_text(_block("yaml"))
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(plugin), str(ROOT), env.get("PYTHONPATH", "")]),
        TALKING_FACES_PLUGINS="toy_method",
        TALKING_FACES_QUIET="1",
        OMP_NUM_THREADS="1",
    )
    cli = [sys.executable, "-m", "talking_faces"]
    fit = [
        *cli,
        "fit",
        str(ROOT / "experiments/base.yaml"),
        str(ROOT / "experiments/data/synthetic.yaml"),
        str(plugin / "toy.yaml"),
        f"data.root={trained}",
        f"out={tmp_path / 'runs'}",
        "name=toy",
        "trainer.max_steps=6",
        "trainer.val_check_interval=6",
        "data.num_workers=0",
        "data.num_frames=4",
        "data.batch_size=2",
    ]
    proc = subprocess.run(fit, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = tmp_path / "runs/toy/checkpoints/last.ckpt"
    out = tmp_path / "toy.json"
    score = [*cli, "evaluate", str(ckpt), "--data", str(trained), "--protocol", "synthetic"]
    proc = subprocess.run(
        [*score, "--out", str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["method"] == "toy" and "lse_c" in results["metrics"]
    # without the plugin the checkpoint names a method nobody registered: one clear line
    env.pop("TALKING_FACES_PLUGINS")
    proc = subprocess.run(
        [*score, "--out", str(tmp_path / "x.json")], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "unknown model.name 'toy'" in proc.stderr and "Traceback" not in proc.stderr
