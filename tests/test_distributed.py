"""Beyond one process: DDP resume, two nodes under torchrun, DDP from S3, sharded evaluation.

One uninterrupted 2-process run of tiny ldm on the ``trained`` dataset (24 training clips: 12 per
rank, 6 steps an epoch) is the reference the other runs must equal, weight for weight:

- the same run killed with SIGKILL after a checkpoint and resumed with ``ckpt_path=last`` (every
  rank's training-noise generator comes back: talking_faces/training/resume.py);
- the same run as 2 nodes x 1 process, two ``torchrun`` launches on this machine meeting on
  127.0.0.1 (both ranks must have trained for the weights to match);
- the same run reading the dataset from a local S3 server (moto), each rank streaming its own half
  of the clips (checked apart, on the datamodule fit uses).

``evaluate --devices 2`` on the S3 copy writes the per-clip CSV of ``evaluate`` in one process on
the local folder, byte for byte, and the same results JSON (metrics to the last bit).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import run_helpers
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from run_helpers import CLI, cli_env, column, load_checkpoint, read_metrics
from s3_server import S3Server, upload_prepared

from talking_faces.cli.main import main
from talking_faces.registry import load_model
from talking_faces.training.resume import STATES_KEY

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 8
URL = "s3://tf-distributed/trained"


def fit_args(prep: Path | str, out: Path, name: str, *extra: str) -> list[str]:
    """Tiny ldm: 8 steps of 2 windows of 4 frames per rank, a checkpoint every 3 steps, one
    validation at step 6."""
    return run_helpers.fit_args(
        "ldm_tiny",
        prep,
        out,
        name,
        "trainer.accelerator=cpu",
        f"trainer.max_steps={STEPS}",
        "trainer.val_check_interval=6",
        "checkpoint.every_n_train_steps=3",
        *extra,
    )


DDP = ["trainer.devices=2", "trainer.strategy=ddp"]


def run_cli(args: list[str], environ: dict[str, str], timeout: float = 300) -> None:
    proc = subprocess.run(
        [*CLI, *args], env=environ, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def checkpoint(run: Path) -> dict[str, Any]:
    return load_checkpoint(run / "checkpoints" / "last.ckpt")


def assert_same_weights(run: Path, reference: Path) -> None:
    ours, ref = checkpoint(run), checkpoint(reference)
    assert ours["global_step"] == ref["global_step"] == STEPS
    for name, value in ref["state_dict"].items():
        torch.testing.assert_close(ours["state_dict"][name], value, atol=0, rtol=0, msg=name)


def logged_steps(run: Path, key: str = "train/loss") -> list[int]:
    return [step for step, _ in column(read_metrics(run), key)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def reference(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted 2-process run."""
    out = tmp_path_factory.mktemp("ddp_runs")
    run_cli(fit_args(trained, out, "reference", *DDP), cli_env())
    return out / "reference"


@pytest.fixture(scope="module")
def s3_env(
    s3_server: S3Server, trained: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The variables that reach the S3 server, with ``trained`` (and its experts) at ``URL``."""
    variables = s3_server.env(tmp_path_factory.mktemp("s3_client"))
    s3_server.create_bucket(URL.split("/")[2])
    upload_prepared(variables, trained.parent / "raw", trained, URL)
    return variables


@pytest.mark.slow
@pytest.mark.ddp
def test_resume_after_kill_under_ddp_matches_uninterrupted_run(
    trained: Path, reference: Path, tmp_path: Path
) -> None:
    args = fit_args(trained, tmp_path, "killed", *DDP)
    # its own session: the launcher's second rank is killed with it
    proc = subprocess.Popen(
        [*CLI, *args], env=cli_env(), stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    try:
        while not last.exists() and proc.poll() is None:
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    assert last.exists(), err[-2000:]
    killed_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert 0 < killed_at < STEPS, "the run must be killed part-way"

    run_cli([*args, "ckpt_path=last"], cli_env())
    assert_same_weights(tmp_path / "killed", reference)
    states = checkpoint(tmp_path / "killed")[STATES_KEY]
    assert len(states) == 2 and not torch.equal(states[0], states[1])
    # the resumed run logs every step from the checkpoint on, once; a step's row is written after
    # its checkpoint callbacks, so the kill may have taken the row of step killed_at - 1 with it
    steps = logged_steps(tmp_path / "killed")
    assert steps == sorted(set(steps)) and set(steps) <= set(range(STEPS))
    assert steps[steps.index(killed_at) :] == list(range(killed_at, STEPS))


@pytest.mark.slow
@pytest.mark.ddp
def test_two_nodes_under_torchrun_equal_two_processes(
    trained: Path, reference: Path, tmp_path: Path
) -> None:
    args = fit_args(trained, tmp_path, "nodes", "trainer.num_nodes=2", "trainer.devices=1")
    port = str(free_port())
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
    rendezvous = ["--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", port]
    procs = [
        subprocess.Popen(
            [*torchrun, "--node_rank", str(node), *rendezvous, "-m", "talking_faces", *args],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    run = tmp_path / "nodes"
    # written once, by global rank 0: a second writer would have renamed config.yaml aside
    assert sorted(p.name for p in run.glob("config*.yaml")) == ["config.yaml"]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]
    assert_same_weights(run, reference)  # both ranks' gradients went into every step
    assert len(checkpoint(run)[STATES_KEY]) == 2
    model = load_model(run / "checkpoints" / "last.ckpt")
    out = model.generate(torch.rand(1, 3, 64, 64), torch.zeros(1, 3, 28, 12), 1)
    assert out.shape == (1, 1, 3, 3, 64, 64)


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_fit_streams_from_s3_like_from_disk(
    s3_env: dict[str, str], reference: Path, tmp_path: Path
) -> None:
    run_cli(fit_args(URL, tmp_path, "s3", *DDP), cli_env(**s3_env))
    assert_same_weights(tmp_path / "s3", reference)
    # the landmark expert came from s3://.../experts/ as from the folder
    assert logged_steps(tmp_path / "s3", "val/lmd") == logged_steps(reference, "val/lmd") != []


def _read_train_split(rank: int, port: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        from talking_faces.data import TalkingFaceDataModule

        dm = TalkingFaceDataModule(root=URL, num_frames=4, batch_size=2)
        ids = [cid for batch in dm.train_dataloader() for cid in batch["clip_id"]]
        Path(folder, f"rank{rank}.json").write_text(json.dumps(ids))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.ddp
def test_ranks_stream_disjoint_halves_of_the_split_from_s3(
    s3_env: dict[str, str], trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {**s3_env, "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)  # inherited by the spawned processes
    mp.spawn(_read_train_split, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    rows = (trained / "manifest.jsonl").read_text().splitlines()
    train = {r["clip_id"] for r in map(json.loads, rows) if r["split"] == "train"}
    assert len(seen[0]) == len(seen[1]) == len(train) // 2
    assert not set(seen[0]) & set(seen[1])
    assert set(seen[0]) | set(seen[1]) == train


def _without_run_specifics(results: dict[str, Any]) -> dict[str, Any]:
    """A results dict less what names the run rather than the scores: the time it was made and
    took, where the dataset and experts were read from."""
    out = json.loads(json.dumps(results))
    for key in ("created", "timing"):
        out.pop(key)
    out["dataset"].pop("path")
    for record in out["experts"].values():
        record.pop("path")
    return out


@pytest.mark.slow
@pytest.mark.ddp
def test_evaluate_on_two_processes_from_s3_equals_one_process_from_disk(
    s3_env: dict[str, str],
    trained: Path,
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ckpt = str(reference / "checkpoints" / "last.ckpt")
    # batches of one pair: the 4 test pairs are 2 batches per process
    common = ["--protocol", "synthetic", "--samples", "2", "--batch-size", "1", "--videos", "3"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the spawned processes' threads, as here
    one = tmp_path / "one" / "results.json"
    assert main(["evaluate", ckpt, "--data", str(trained), "--out", str(one), *common]) == 0
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    two = tmp_path / "two" / "results.json"
    args = ["evaluate", ckpt, "--data", URL, "--out", str(two), "--devices", "2", *common]
    assert main(args) == 0

    results = [json.loads(p.read_text()) for p in (one, two)]
    assert results[1]["dataset"]["path"] == URL
    assert results[1]["timing"]["devices"] == 2
    # the same results to the last bit: the metrics sum their per-pair terms exactly, in any
    # order (talking_faces/metrics/exact.py)
    assert _without_run_specifics(results[1]) == _without_run_specifics(results[0])
    csv_name = results[0]["per_clip"]
    assert (two.parent / csv_name).read_bytes() == (one.parent / csv_name).read_bytes()
    assert [v["pair"] for v in results[1]["videos"]] == [0, 1, 2]
    for video in results[1]["videos"]:
        assert (two.parent / video["path"]).stat().st_size > 0


@pytest.mark.slow
@pytest.mark.ddp
def test_evaluate_with_fewer_batches_than_processes(trained: Path, tmp_path: Path) -> None:
    # one batch holds every test pair: process 1 scores nothing but joins every reduction (an
    # empty process once aborted gloo with a collective mismatch)
    common = ["--baseline", "static", "--protocol", "synthetic", "--batch-size", "64"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert main(["evaluate", "--data", str(trained), "--out", str(one), *common]) == 0
    assert (
        main(["evaluate", "--data", str(trained), "--out", str(two), "--devices", "2", *common])
        == 0
    )
    results = [json.loads(p.read_text()) for p in (one, two)]
    assert results[1]["timing"]["devices"] == 2
    assert results[1]["metrics"] == results[0]["metrics"]
    assert two.with_suffix(".clips.csv").read_bytes() == one.with_suffix(".clips.csv").read_bytes()


@pytest.mark.parametrize(
    ("variables", "rank"),
    [
        ({}, 0),
        ({"TORCHELASTIC_RUN_ID": "x", "RANK": "1", "LOCAL_RANK": "0", "GROUP_RANK": "1"}, 1),
        ({"SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_JOB_NAME": "ldm"}, 3),
        # an interactive SLURM shell is not a SLURM launch: Lightning's launcher starts the ranks
        # (its children inherit the shell's SLURM_PROCID=0 and get LOCAL_RANK)
        (
            {"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "bash", "LOCAL_RANK": "2"},
            2,
        ),
        ({"NODE_RANK": "1"}, 10_000),  # Lightning's launcher, first process of node 1
        ({"NODE_RANK": "0", "LOCAL_RANK": "0"}, 0),
    ],
)
def test_global_rank_from_env_follows_the_launcher(
    variables: dict[str, str], rank: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talking_faces.utils.distributed import global_rank_from_env

    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    for key in [k for k in os.environ if k.startswith(("SLURM_", "PMI_", "OMPI_"))]:
        monkeypatch.delenv(key)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    assert global_rank_from_env() == rank
