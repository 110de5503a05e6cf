"""The notebooks (notebooks/*.ipynb): committed without outputs, and executed end to end.

Each notebook is read into memory and executed there by nbclient on a ``python3`` kernel that
runs this interpreter (the file on disk is never written), from the notebooks/ folder as Jupyter
runs it, with environment variables pointing it at small inputs the session fixtures make:
01_quickstart with a tiny corpus and a few steps in a temporary folder, 02_compare on the
``compare --quick`` report (``quick_run``), 03_ablation on the smoke run of
experiments/sweeps/ldm_beta.yaml (``sweep_dir``). A cell that raises fails the test; the outputs
are then checked for what each notebook shows (tables, plots, inline videos).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
#: every notebook, each executed by one test below
EXECUTED = ("01_quickstart.ipynb", "02_compare.ipynb", "03_ablation.ipynb")


def test_every_notebook_is_committed_without_outputs() -> None:
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert [p.name for p in paths] == sorted(EXECUTED), "a new notebook needs a test below"
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3", path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, path.name
        for cell in code:
            assert cell.outputs == [], f"{path.name}, cell {cell.id}: outputs committed"
            assert cell.execution_count is None, f"{path.name}, cell {cell.id}: execution count"
        # the first code cell holds the parameters, each overridable from the environment
        assert "os.environ.get(" in code[0].source, path.name


@pytest.fixture
def python3_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``python3`` kernelspec that runs this interpreter, first on Jupyter's search path (a
    user-wide ``python3`` kernel of another Python is not picked), and no inherited matplotlib
    backend (the kernel's inline one draws the figures into the outputs)."""
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager

    install(prefix=str(tmp_path), kernel_name="python3")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    # connection files and IPython's history in the test's folder, not the home directory
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable


def execute(name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Execute notebook ``name`` in memory with ``env`` set; return its cells' outputs."""
    from nbclient import NotebookClient

    for key, value in {"TALKING_FACES_QUIET": "1", "OMP_NUM_THREADS": "1", **env}.items():
        monkeypatch.setenv(key, value)
    path = NOTEBOOKS / name
    before = path.read_bytes()
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    start = time.monotonic()
    client.execute()
    seconds = time.monotonic() - start
    print(f"{name}: executed in {seconds:.1f} s")
    assert path.read_bytes() == before  # executed in memory only
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def shown(outputs: list[dict], mime: str) -> list[Any]:
    """The ``mime`` payloads the notebook displayed."""
    return [o["data"][mime] for o in outputs if mime in o.get("data", {})]


def printed(outputs: list[dict]) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def inline_videos(outputs: list[dict]) -> list[str]:
    return [h for h in shown(outputs, "text/html") if "data:video/mp4;base64," in h]


@pytest.mark.slow
@pytest.mark.usefixtures("python3_kernel")
def test_quickstart_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "quickstart"
    env = {
        "TF_NB_DIR": str(work),
        "TF_NB_SPEAKERS": "2",
        "TF_NB_CLIPS": "3",
        "TF_NB_SIZE": "64",
        "TF_NB_EXPERT_STEPS": "2",
        "TF_NB_STEPS": "2",
        "TF_NB_SAMPLES": "2",
    }
    outputs = execute("01_quickstart.ipynb", env, monkeypatch)
    # what it ran and wrote: the chain's outputs in the folder it was given
    results = json.loads((work / "results" / "ldm.json").read_text())
    assert results["num_samples"] == 2 and results["method"] == "ldm"
    assert (work / "results" / "static.json").is_file()
    text = printed(outputs)
    for command in ("synth", "prepare", "fit", "evaluate"):
        assert f"$ talking-faces {command} " in text
    # the contact sheet and the loss curve, the metrics beside the static frame's, the video
    assert len(shown(outputs, "image/png")) == 2
    table = next(t for t in shown(outputs, "text/markdown") if "static frame" in t)
    assert "| lse_c ↑ |" in table and "| lmd ↓ |" in table
    assert f"{results['metrics']['lmd']:.4g}" in table
    assert len(inline_videos(outputs)) == 1


@pytest.mark.slow
@pytest.mark.usefixtures("python3_kernel")
def test_compare_notebook(quick_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = execute("02_compare.ipynb", {"TF_NB_REPORT": str(quick_run)}, monkeypatch)
    markdown = "\n".join(shown(outputs, "text/markdown"))
    assert (quick_run / "leaderboard.md").read_text() in markdown
    assert "diversity_l1" in markdown  # the stochastic method's diversity table
    # bars with intervals, the per-pair scatter, ldm's diversity per pair, the curves
    assert len(shown(outputs, "image/png")) == 4
    assert "pairs (lower is better): ldm better on" in printed(outputs)
    assert len(inline_videos(outputs)) == len(list((quick_run / "videos").glob("*.mp4"))) == 2


@pytest.mark.slow
@pytest.mark.usefixtures("python3_kernel")
def test_ablation_notebook(sweep_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = execute("03_ablation.ipynb", {"TF_NB_SWEEP": str(sweep_dir)}, monkeypatch)
    text = printed(outputs)
    assert "2 configurations, 4 of 4 trials finished" in text
    assert "target: lse_c (maximize); baseline: 1e-06" in text
    markdown = "\n".join(shown(outputs, "text/markdown"))
    assert (sweep_dir / "summary.md").read_text() in markdown
    assert "| configuration | model.beta |" in markdown  # what each configuration switches
    assert "Against **1e-06**" in markdown and "| 0.0001 | 2 |" in markdown
    # the target metric, then every metric
    assert len(shown(outputs, "image/png")) == 2
