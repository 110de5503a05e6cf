"""``talking-faces fit`` end to end on a prepared synthetic corpus (synth -> prepare -> fit).

Run folder contents, loss going down, resume after a kill giving the weights of an uninterrupted
run, DDP on two CPU processes, W&B offline with sample videos.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest
import run_helpers
import torch
import yaml
from run_helpers import CLI, cli_env, column, kill_after_checkpoint, load_checkpoint, read_metrics

from talking_faces.cli.main import main
from talking_faces.models.ldm import LDM
from talking_faces.registry import load_model

CONFIGS = run_helpers.model_configs("ldm_tiny")


def fit_args(prep: Path, out: Path, name: str, *extra: str) -> list[str]:
    return run_helpers.fit_args("ldm_tiny", prep, out, name, *extra)


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(ckpt)["state_dict"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_fit_writes_run_folder_and_learns(prepared_grid: Path, tmp_path: Path) -> None:
    args = fit_args(
        prepared_grid,
        tmp_path,
        "tiny",
        "trainer.max_steps=40",
        "trainer.val_check_interval=20",
        "logger.sample_videos=1",
    )
    assert main(args) == 0
    run = tmp_path / "tiny"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["root"] == str(prepared_grid)
    assert cfg["model"]["image_size"] == 64 and cfg["model"]["audio_features"] == 12
    assert cfg["trainer"]["max_steps"] == 40
    git = yaml.safe_load((run / "git.json").read_text())
    assert len(git["commit"]) == 40
    assert (run / "fit.log").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1

    rows = read_metrics(run)
    loss = [v for _, v in column(rows, "train/loss")]
    assert len(loss) == 40
    assert sum(loss[-8:]) / 8 < 0.7 * sum(loss[:4]) / 4
    val = column(rows, "val/loss")
    assert [s for s, _ in val] == [19, 39]  # Lightning logs validation at the last step taken
    assert column(rows, "val/psnr")

    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 40
    assert ckpt["run_config"]["data"]["root"] == str(prepared_grid)
    model = load_model(run / "checkpoints" / "last.ckpt")
    assert isinstance(model, LDM) and not model.training
    assert model.run_config["model"]["name"] == "ldm"

    videos = sorted((run / "samples").glob("*.mp4"))
    assert len(videos) == 2  # one per validation
    with av.open(str(videos[-1])) as container:
        kinds = sorted(s.type for s in container.streams)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert kinds == ["audio", "video"]
    assert len(frames) == 4 and frames[0].shape == (64, 128, 3)  # real | generated


def test_fit_refuses_existing_run_and_bad_shapes(
    prepared_grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("seed: 0\n")
    assert main(fit_args(prepared_grid, tmp_path, "r", "trainer.max_steps=1")) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "ckpt_path=last" in err
    assert main(fit_args(prepared_grid, tmp_path, "s", "model.image_size=128")) == 2
    err = capsys.readouterr().err
    assert "model.image_size=128" in err and "64" in err
    assert len(err.strip().splitlines()) == 1


def test_progress_counts_steps_of_max_steps_without_spurious_warnings(
    prepared_grid: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One training batch per epoch (2 clips, batch 2): Lightning's own bar would count epochs;
    ours counts the 6 steps. Logging every 3 steps works across epochs, so Lightning's warning
    that an epoch is shorter than the logging interval is not shown, nor the two it cannot help."""
    import warnings

    monkeypatch.delenv("TALKING_FACES_QUIET", raising=False)
    args = fit_args(
        prepared_grid,
        tmp_path,
        "bar",
        "trainer.max_steps=6",
        "trainer.val_check_interval=6",
        "trainer.log_every_n_steps=3",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(args) == 0
    out = capsys.readouterr().out
    assert "train step" in out and "6/6 [" in out and "train/loss=" in out
    assert "Epoch " not in out
    shown = [str(w.message) for w in caught]
    for text in ("logging interval", "`__len__` defined", "LeafSpec"):
        assert not any(text in m for m in shown), shown
    assert [s for s, _ in column(read_metrics(tmp_path / "bar"), "train/loss")] == [2, 5]


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(prepared_grid: Path, tmp_path: Path) -> None:
    steps = ["trainer.val_check_interval=6", "checkpoint.every_n_train_steps=3"]
    n = 15
    # reference: one uninterrupted run
    assert main(fit_args(prepared_grid, tmp_path, "ref", f"trainer.max_steps={n}", *steps)) == 0
    reference = weights(tmp_path / "ref" / "checkpoints" / "last.ckpt")

    # a run stopped at step 7 (a clean stop, not at a checkpoint interval), continued
    assert main(fit_args(prepared_grid, tmp_path, "cont", "trainer.max_steps=7", *steps)) == 0
    assert (
        main(
            fit_args(
                prepared_grid, tmp_path, "cont", f"trainer.max_steps={n}", "ckpt_path=last", *steps
            )
        )
        == 0
    )
    continued = weights(tmp_path / "cont" / "checkpoints" / "last.ckpt")

    # a run killed with SIGKILL as soon as it has written a checkpoint, then resumed
    args = fit_args(prepared_grid, tmp_path, "killed", f"trainer.max_steps={n}", *steps)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    killed_at = kill_after_checkpoint(args, last)
    assert 0 < killed_at < n, "the run must be killed part-way"
    # every step the checkpoint holds has its metrics row on disk before the checkpoint is
    logged = {s for s, _ in column(read_metrics(tmp_path / "killed"), "train/loss")}
    assert set(range(killed_at)) <= logged
    resume = fit_args(prepared_grid, tmp_path, "killed", f"trainer.max_steps={n}", "ckpt_path=last")
    assert main([*resume, *steps]) == 0
    resumed = weights(last)
    assert load_checkpoint(last)["global_step"] == n

    for name, ref in reference.items():
        torch.testing.assert_close(continued[name], ref, atol=1e-5, rtol=0, msg=name)
        torch.testing.assert_close(resumed[name], ref, atol=1e-5, rtol=0, msg=name)
    # the resumed run's metrics continue the killed run's, without duplicated steps
    steps_logged = [s for s, _ in column(read_metrics(tmp_path / "killed"), "train/loss")]
    assert steps_logged == list(range(n))


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_on_two_cpu_processes(prepared_grid: Path, tmp_path: Path) -> None:
    args = fit_args(
        prepared_grid,
        tmp_path,
        "ddp",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.accelerator=cpu",
        "trainer.max_steps=30",
        "trainer.val_check_interval=30",
        "data.batch_size=1",  # 2 training clips: one per process
    )
    proc = subprocess.run([*CLI, *args], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "ddp"
    loss = [v for _, v in column(read_metrics(run), "train/loss")]
    assert len(loss) == 30
    assert sum(loss[-6:]) / 6 < 0.8 * sum(loss[:3]) / 3
    model = load_model(run / "checkpoints" / "last.ckpt")
    batch_audio = torch.zeros(1, 3, 28, 12)
    out = model.generate(torch.rand(1, 3, 64, 64), batch_audio, 2, torch.Generator().manual_seed(0))
    assert out.shape == (1, 2, 3, 3, 64, 64)


@pytest.mark.slow
def test_wandb_offline_run_with_sample_videos_and_evaluation(
    prepared_grid: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import json

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.delenv("WANDB_SILENT", raising=False)  # W&B's own warnings must show here
    args = fit_args(
        prepared_grid,
        tmp_path,
        "wb",
        "logger.wandb=true",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "logger.sample_every_n_val=2",
    )
    assert main(args) == 0
    assert "anonymous" not in capfd.readouterr().err
    run = tmp_path / "wb"
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert list(offline[0].glob("*.wandb")), "the offline run must hold its event log"
    logged = list(offline[0].rglob("media/videos/**/*.mp4"))
    assert logged, "sample videos must be logged to W&B"
    # validations 1 and 2 ran; with every 2, only the first wrote samples (2 clips)
    assert len(list((run / "samples").glob("*.mp4"))) == 2
    run_id = (run / "wandb_id.txt").read_text().strip()
    assert run_id in offline[0].name
    # the run was finished: its summary and config are written, and nothing was abandoned
    summary = json.loads((offline[0] / "files" / "wandb-summary.json").read_text())
    assert summary["trainer/global_step"] >= 3 and "train/loss" in summary
    config = yaml.safe_load((offline[0] / "files" / "config.yaml").read_text())
    assert config["trainer"]["value"]["max_steps"] == 4
    for log in offline[0].glob("logs/debug*.log"):
        text = log.read_text()
        assert "Traceback" not in text and "HandleAbandonedError" not in text, log.name

    # evaluate adds its scores to that run (a protocol without experts: PSNR, SSIM, CPBD)
    protocol = tmp_path / "plain.yaml"
    protocol.write_text("name: plain\nresolution: 64\nsyncnet: none\nlandmarks: none\n")
    ckpt = run / "checkpoints" / "last.ckpt"
    out = tmp_path / "results" / "wb.json"
    evaluate = ["evaluate", str(ckpt), "--data", str(prepared_grid), "--protocol", str(protocol)]
    assert main([*evaluate, "--out", str(out)]) == 0
    printed = capfd.readouterr().out
    assert f"wrote {out} and {out.with_name('wb.clips.csv')}" in printed
    assert f"W&B run {run_id}" in printed
    results = json.loads(out.read_text())
    resumed = [p for p in (run / "wandb").glob("offline-run-*") if p != offline[0]]
    assert len(resumed) == 1 and run_id in resumed[0].name
    summary = json.loads((resumed[0] / "files" / "wandb-summary.json").read_text())
    assert summary["evaluate/plain/psnr"] == pytest.approx(results["metrics"]["psnr"])
    assert summary["evaluate/plain/per_clip"]["_type"] == "table-file"
    assert summary["evaluate/plain/checkpoint"] == str(ckpt)


@pytest.mark.slow
def test_bf16_mixed_and_channels_last(prepared_grid: Path, tmp_path: Path) -> None:
    args = fit_args(
        prepared_grid,
        tmp_path,
        "bf16",
        "trainer.precision=bf16-mixed",
        "trainer.channels_last=true",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
    )
    assert main(args) == 0
    rows = read_metrics(tmp_path / "bf16")
    loss = [v for _, v in column(rows, "train/loss")]
    assert len(loss) == 3 and all(torch.isfinite(torch.tensor(loss)))
    assert column(rows, "val/psnr")
    cfg = yaml.safe_load((tmp_path / "bf16" / "config.yaml").read_text())
    assert cfg["trainer"]["precision"] == "bf16-mixed" and cfg["trainer"]["channels_last"]


def test_tensorboard_logger(
    prepared_grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    args = fit_args(prepared_grid, tmp_path, "tb", "logger.tensorboard=true", "trainer.max_steps=1")
    if any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
        assert main(args) == 0
        assert list((tmp_path / "tb" / "tensorboard").rglob("events.out.tfevents.*"))
    else:  # optional: without the package it is a one-line error, before anything is written
        assert main(args) == 2
        assert "pip install tensorboard" in capsys.readouterr().err
        assert not (tmp_path / "tb").exists()


def test_shared_validation_and_predict_steps(prepared_grid: Path, tmp_path: Path) -> None:
    """trainer.validate scores generate() with PSNR/SSIM (+ LMD with a landmark model); predict
    gives B,K,T,3,H,W samples."""
    import lightning as L

    from talking_faces.data import TalkingFaceDataModule
    from talking_faces.experts.landmarks import LandmarkExpert
    from talking_faces.training.fit import build_datamodule
    from talking_faces.training.runconfig import load_config

    cfg = load_config(CONFIGS, [f"data.root={prepared_grid}", "data.num_workers=0"])
    cfg.data.num_frames, cfg.data.batch_size = 4, 2
    dm = build_datamodule(cfg)
    assert isinstance(dm, TalkingFaceDataModule)
    cfg.model.image_size, cfg.model.audio_window, cfg.model.audio_features = 64, 28, 12
    cfg.model.predict_samples = 2
    torch.manual_seed(0)
    model = LDM(cfg.model)
    model.attach_landmark_model(LandmarkExpert())
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    scores = trainer.validate(model, dataloaders=dm.test_dataloader(), verbose=False)[0]
    assert {"val/loss", "val/psnr", "val/ssim", "val/lmd"} <= set(scores)
    assert all(torch.isfinite(torch.tensor(v)) for v in scores.values())
    assert scores["val/lmd"] > 0  # an untrained landmark model is far from the real mouths
    preds = trainer.predict(model, dataloaders=dm.test_dataloader())
    assert preds[0].shape == (2, 2, 4, 3, 64, 64)
    assert not torch.equal(preds[0][:, 0], preds[0][:, 1])


# /proc/cpuinfo excerpts of real machines: an Intel Sapphire Rapids core (AMX), a Skylake-SP core
# (AVX-512 without bf16) and an Arm Neoverse V1 core (Features: bf16)
SAPPHIRE_RAPIDS = (
    "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
    "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8\n"
)
SKYLAKE = (
    "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz\n"
    "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl avx512cd\n"
)
NEOVERSE_V1 = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_native_bf16_from_cpuinfo() -> None:
    from talking_faces.utils.hardware import cpu_name, native_bf16_cpu, resolve_precision

    assert native_bf16_cpu(SAPPHIRE_RAPIDS) and native_bf16_cpu(NEOVERSE_V1)
    assert not native_bf16_cpu(SKYLAKE) and not native_bf16_cpu("")
    assert cpu_name(SKYLAKE) == "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"
    # only `auto` is resolved; every other value goes to Lightning as written
    assert resolve_precision("16-mixed", "cpu") == "16-mixed"
    assert resolve_precision("32-true", "cpu") == "32-true"


_MALLINFO = """
import ctypes, sys

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
if sys.argv[1] == "tune":
    from talking_faces.utils.allocator import tune_allocator
    print(tune_allocator())
else:
    print("untouched")
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc(64 * 2**20)  # 64 MiB, as torch's CPU allocator asks: above any mmap threshold
print(libc.mallinfo2().hblkhd)
"""


@pytest.mark.skipif(
    not hasattr(__import__("ctypes").CDLL(None), "mallinfo2"), reason="needs glibc >= 2.33"
)
@pytest.mark.parametrize(
    ("env", "said", "mapped"),
    [
        ({}, "glibc: mmap off, trim threshold 2 GiB", False),
        ({"MALLOC_ARENA_MAX": "2"}, "left as is (MALLOC_ARENA_MAX is set)", True),
        ({"TALKING_FACES_MALLOC": "default"}, "left as is (TALKING_FACES_MALLOC=default)", True),
    ],
)
def test_allocator_keeps_large_tensors_on_the_heap(
    env: dict[str, str], said: str, mapped: bool
) -> None:
    """After tune_allocator a 64 MiB tensor comes from the heap (glibc counts no mmapped bytes),
    so freeing and allocating it again costs no page faults; a user's own malloc settings are left
    alone, and the process says which it did."""
    import os
    import sys

    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    base.pop("TALKING_FACES_MALLOC", None)
    out = subprocess.run(
        [sys.executable, "-c", _MALLINFO, "tune"],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert out[0] == said
    assert (int(out[1]) >= 64 * 2**20) is mapped
    untouched = subprocess.run(
        [sys.executable, "-c", _MALLINFO, "plain"], env=base, capture_output=True, text=True
    ).stdout.split("\n")
    assert int(untouched[1]) >= 64 * 2**20  # glibc's default: mmap


def test_precision_auto_is_saved_resolved(prepared_grid: Path, tmp_path: Path) -> None:
    """`trainer.precision=auto` trains in bf16 exactly where this CPU has bf16 instructions and
    saves what it used, so the run folder (and compare's report) says how it was computed."""
    args = fit_args(
        prepared_grid, tmp_path, "auto", "trainer.precision=auto", "trainer.max_steps=2"
    )
    assert main(args) == 0
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            flags = set(line.split(":", 1)[1].split())
            break
    native = bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    cfg = yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())
    assert cfg["trainer"]["precision"] == ("bf16-mixed" if native else "32-true")
    log_text = (tmp_path / "auto" / "fit.log").read_text()
    assert f"trainer.precision auto -> {cfg['trainer']['precision']}" in log_text
    assert "C allocator: " in log_text  # what the run's process did to malloc (speed only)
