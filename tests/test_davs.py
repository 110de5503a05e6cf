"""davs and the adversarial machinery every GAN method shares.

GAN losses and discriminators with known answers; davs's loss switches; several optimizers through
``fit`` (steps counted per batch, per-group settings, exact resume after a kill, 2-process DDP,
bf16); ``evaluate`` with davs's method metrics, video driving and test-time options.
"""

from __future__ import annotations

import json
import subprocess
from functools import partial
from pathlib import Path

import pytest
import run_helpers
import torch
from run_helpers import (
    CLI,
    EXP,
    assert_same_weights,
    cli_env,
    column,
    load_checkpoint,
    read_metrics,
    uninterrupted_and_resumed,
)

from talking_faces.cli.main import main
from talking_faces.errors import UserError
from talking_faces.models.davs import DAVS, retrieval_scores
from talking_faces.nn.discriminators import (
    AudioFrameDiscriminator,
    PatchDiscriminator,
    SequenceDiscriminator,
)
from talking_faces.nn.gan import GANLoss
from talking_faces.registry import load_model
from talking_faces.training.runconfig import load_config

pytestmark = pytest.mark.usefixtures("one_thread")


def fit_args(prep: Path, out: Path, name: str, *extra: str) -> list[str]:
    """Tiny davs with 4-frame WID sequences, 2 of them decoded; no sample videos."""
    seq = ["model.seq_frames=4", "model.gen_frames=2", "logger.sample_every_n_val=0"]
    return run_helpers.fit_args("davs_tiny", prep, out, name, *seq, *extra)


def tiny_davs(**overrides) -> DAVS:
    cfg = load_config([str(EXP / "model/davs_tiny.yaml")]).model
    values = {
        "image_size": 64,
        "audio_features": 12,
        "num_words": 5,
        "num_speakers": 3,
        "seq_frames": 4,
        "gen_frames": 2,
        **overrides,
    }
    for key, value in values.items():
        cfg[key] = value
    torch.manual_seed(0)
    return DAVS(cfg)


def batch(b: int = 3, t: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "frames": torch.rand(b, t, 3, 64, 64, generator=g),
        "identity": torch.rand(b, 3, 64, 64, generator=g),
        "audio": torch.randn(b, t, 20, 12, generator=g),
        "waveform": torch.zeros(b, t * 640),
        "landmarks": torch.zeros(b, t, 68, 2),
        "landmarks_valid": torch.ones(b, t, dtype=torch.bool),
        "speaker": torch.tensor([0, 1, 2])[:b],
        "word": torch.tensor([1, -1, 3])[:b],
        "clip_id": [f"c{i}" for i in range(b)],
        "start": torch.zeros(b, dtype=torch.long),
    }


# ----------------------------------------------------------------------------- GAN machinery
def test_gan_losses_have_their_known_values() -> None:
    big, small = torch.full((4,), 30.0), torch.full((4,), -30.0)
    bce = GANLoss("bce")
    assert float(bce.discriminator(big, small)) < 1e-6  # a perfect discriminator
    assert float(bce.generator(small)) == pytest.approx(30.0, rel=1e-4)  # -log sigmoid(-30)
    zero = torch.zeros(4)
    assert float(bce.discriminator(zero, zero)) == pytest.approx(torch.log(torch.tensor(2.0)))
    ls = GANLoss("lsgan")
    assert float(ls.discriminator(torch.ones(3), torch.zeros(3))) == 0.0
    assert float(ls.generator(torch.zeros(3))) == 1.0
    hinge = GANLoss("hinge")
    assert float(hinge.discriminator(torch.tensor([1.5]), torch.tensor([-1.0]))) == 0.0
    assert float(hinge.discriminator(torch.tensor([0.0]), torch.tensor([0.0]))) == 1.0
    assert float(hinge.generator(torch.tensor([2.0, 4.0]))) == -3.0
    # several outputs of one discriminator add up
    two = bce.discriminator([zero, zero], [zero, zero])
    assert float(two) == pytest.approx(2 * float(bce.discriminator(zero, zero)))
    with pytest.raises(ValueError, match="kind"):
        GANLoss("wasserstein")


def test_soft_labels_are_drawn_from_the_given_generator() -> None:
    soft = GANLoss("bce", soft_labels=True)
    big, small = torch.full((4,), 30.0), torch.full((4,), -30.0)
    a = soft.discriminator(big, small, torch.Generator().manual_seed(3))
    b = soft.discriminator(big, small, torch.Generator().manual_seed(3))
    c = soft.discriminator(big, small, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # targets 1-u and u with u <= 0.1: a confident, right discriminator pays about 30 u per side
    assert 0 < float(a) <= 0.1 * 30 + 1e-3
    assert float(soft.generator(small)) == pytest.approx(30.0, rel=1e-4)  # hard targets


def test_discriminator_shapes() -> None:
    frames = torch.rand(2, 3, 64, 64)
    assert PatchDiscriminator(3, 8, 3)(frames).shape == (2, 1, 6, 6)
    seq = SequenceDiscriminator(frames=4, ndf=8, n_layers=2, audio_width=8)
    patch, pair = seq(torch.rand(2, 4, 3, 64, 64), torch.randn(2, 4, 20, 12))
    assert patch.shape[:2] == (2, 1) and pair.shape == (2, 1)
    with pytest.raises(ValueError, match="4 frames"):
        seq(torch.rand(2, 3, 3, 64, 64), torch.randn(2, 3, 20, 12))
    afd = AudioFrameDiscriminator(64, 20, 12, ndf=8, audio_hidden=16)
    assert afd(frames, torch.randn(2, 20, 12)).shape == (2, 1)


# ----------------------------------------------------------------------------------- davs
SWITCHES = {
    "w_l1": ["l1_audio", "l1_video"],
    "w_mouth": ["mouth_audio", "mouth_video"],
    "w_temporal": ["temporal"],
    "w_contrastive": ["contrastive"],
    "w_word": ["word_audio", "word_video"],
    "w_modality": ["modality"],
    "w_pid_word": ["pid_word_uniform"],
    "w_wid_speaker": ["wid_speaker_uniform"],
    "w_seq_gan": ["seq_gan"],
}
D_TERMS = {"w_modality": "modality", "w_pid_word": "pid_word", "w_wid_speaker": "wid_speaker"}
D_TERMS["w_seq_gan"] = "seq_gan"


def _terms(model: DAVS, b: dict) -> tuple[dict, dict]:
    model.train()
    gen = torch.Generator().manual_seed(0)
    fw = model.forward_train(b, generator=gen)
    return model.generator_terms(b, fw, gen), model.discriminator_terms(b, fw, gen)


def test_every_loss_switch_removes_its_term() -> None:
    b = batch()
    g_all, d_all = _terms(tiny_davs(), b)
    for names in SWITCHES.values():
        assert all(n in g_all for n in names)
    assert set(D_TERMS.values()) <= set(d_all)
    for weight, names in SWITCHES.items():
        g, d = _terms(tiny_davs(**{weight: 0.0}), b)
        assert not set(names) & set(g), weight
        if weight in D_TERMS:
            assert D_TERMS[weight] not in d, weight
        assert not torch.isclose(g["loss"], g_all["loss"]), weight
    # the frame GAN is off by default (as the authors) and on when weighted
    g, d = _terms(tiny_davs(w_frame_gan=1.0), b)
    assert "frame_gan" in g and "frame_gan" in d and "frame_gan" not in g_all
    # video-driven generation off: its L1 terms go
    g, _ = _terms(tiny_davs(video_driven=False), b)
    assert "l1_video" not in g and "l1_audio" in g
    # no discriminator at all: one optimizer group
    off = {w: 0.0 for w in ("w_modality", "w_pid_word", "w_wid_speaker", "w_seq_gan")}
    assert list(tiny_davs(**off).optimizer_groups()) == ["generator"]


def test_generation_contract_video_driving_and_test_time_options() -> None:
    model = tiny_davs().eval()
    b = batch()
    with torch.no_grad():
        out = model.generate(b["identity"], b["audio"])
        video = model.generate_driven(b["identity"], b["frames"], "video")
        model.config.wid_scale = 1.5
        scaled = model.generate(b["identity"], b["audio"])
        model.config.wid_scale, model.config.finetune_steps = 1.0, 2
        tuned = model.generate(b["identity"], b["audio"])
    assert out.shape == video.shape == (3, 1, 4, 3, 64, 64)
    assert not torch.equal(out, video) and not torch.equal(out, scaled)
    assert not torch.equal(out, tuned)
    # fine-tuning works on copies: the model itself is unchanged
    model.config.finetune_steps = 0
    with torch.no_grad():
        assert torch.equal(model.generate(b["identity"], b["audio"]), out)
    with pytest.raises(UserError, match="deterministic"):
        model.generate(b["identity"], b["audio"], 2)


def test_retrieval_scores_known_answer() -> None:
    d = torch.tensor([[0.1, 0.5, 0.9], [0.2, 0.3, 0.1], [0.0, 0.8, 0.7]])
    # ranks of the matches: row 0 -> 1, row 1 -> 3, row 2 -> 2
    s = retrieval_scores(d)
    assert s["r@1"] == pytest.approx(1 / 3) and s["r@5"] == 1.0
    assert s["median_rank"] == 2.0 and s["mean_rank"] == 2.0


# -------------------------------------------------------------------------- through fit
def test_groups_settings_and_steps_through_fit(prepared_grid: Path, tmp_path: Path) -> None:
    args = fit_args(
        prepared_grid,
        tmp_path,
        "d",
        "trainer.max_steps=4",
        "trainer.val_check_interval=4",
        "model.lr_schedule=linear",
        "model.optim.discriminator.lr=1.0e-5",
        "model.optim.discriminator.clip_grad_norm=0.5",
    )
    assert main(args) == 0
    ckpt = load_checkpoint(tmp_path / "d/checkpoints/last.ckpt")
    # max_steps counts training steps (one generator and one discriminator step each)
    assert ckpt["global_step"] == 4
    steps = [step for step, _ in column(read_metrics(tmp_path / "d"), "train/loss")]
    assert steps == [0, 1, 2, 3]
    assert [r for r in read_metrics(tmp_path / "d") if r.get("train_d/seq_gan")]
    gen_opt, disc_opt = ckpt["optimizer_states"]
    # linear decay to 0 at step 4, each group from its own rate
    assert gen_opt["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert [s["base_lrs"] for s in ckpt["lr_schedulers"]] == [[5e-4], [1e-5]]
    model = load_model(tmp_path / "d/checkpoints/last.ckpt")
    assert isinstance(model, DAVS) and model.config.num_speakers == 2


def test_user_errors_of_several_optimizers(
    prepared_grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(fit_args(prepared_grid, tmp_path, "a", "model.optim.critic.lr=1")) == 2
    err = capsys.readouterr().err
    assert "model.optim.critic" in err and "generator, discriminator" in err
    assert main(fit_args(prepared_grid, tmp_path, "b", "model.optim.discriminator.lrr=1")) == 2
    assert "did you mean 'lr'" in capsys.readouterr().err
    assert main(fit_args(prepared_grid, tmp_path, "c", "trainer.gradient_clip_val=1.0")) == 2
    err = capsys.readouterr().err
    assert "clip_grad_norm" in err and len(err.strip().splitlines()) == 1
    # the refused start leaves no run folder behind: the corrected command just runs
    assert not (tmp_path / "c").exists()
    assert main(fit_args(prepared_grid, tmp_path, "e", "data.num_frames=6")) == 2
    assert "model.seq_frames=4" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(prepared_grid: Path, tmp_path: Path) -> None:
    """Several optimizers, their schedules and the discriminators resume exactly."""
    extra = [
        "trainer.val_check_interval=4",
        "checkpoint.every_n_train_steps=2",
        "model.lr_schedule=linear",
    ]
    n = 8
    ref, got = uninterrupted_and_resumed(partial(fit_args, prepared_grid), tmp_path, n, *extra)
    assert got["global_step"] == n
    assert_same_weights(ref, got)
    for a, b in zip(ref["optimizer_states"], got["optimizer_states"], strict=True):
        for (ka, sa), (_, sb) in zip(a["state"].items(), b["state"].items(), strict=True):
            torch.testing.assert_close(sa["exp_avg"], sb["exp_avg"], atol=1e-5, rtol=0, msg=ka)
    assert [s["last_epoch"] for s in got["lr_schedulers"]] == [n, n]


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_with_several_optimizers(prepared_grid: Path, tmp_path: Path) -> None:
    args = fit_args(
        prepared_grid,
        tmp_path,
        "ddp",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_steps=16",
        "trainer.val_check_interval=16",
        "data.batch_size=1",
    )
    proc = subprocess.run([*CLI, *args], env=cli_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_metrics(tmp_path / "ddp")
    l1 = [v for _, v in column(rows, "train/l1_audio")]
    assert len(l1) == 16
    assert sum(l1[-4:]) / 4 < 0.8 * sum(l1[:2]) / 2
    model = load_model(tmp_path / "ddp/checkpoints/last.ckpt")
    out = model.generate(torch.rand(1, 3, 64, 64), torch.zeros(1, 3, 20, 12))
    assert out.shape == (1, 1, 3, 3, 64, 64)


@pytest.mark.slow
def test_bf16_mixed(prepared_grid: Path, tmp_path: Path) -> None:
    args = fit_args(
        prepared_grid,
        tmp_path,
        "bf16",
        "trainer.precision=bf16-mixed",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
    )
    assert main(args) == 0
    rows = read_metrics(tmp_path / "bf16")
    loss = [v for _, v in column(rows, "train/loss")]
    assert len(loss) == 2 and all(torch.isfinite(torch.tensor(loss)))


# ---------------------------------------------------------------------------- evaluate
@pytest.mark.slow
def test_evaluate_writes_method_metrics_video_driving_and_options(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(fit_args(trained, tmp_path, "ev", "trainer.max_steps=2")) == 0
    ckpt = str(tmp_path / "ev/checkpoints/last.ckpt")
    base = ["evaluate", ckpt, "--data", str(trained), "--protocol", "synthetic"]
    assert main([*base, "--out", str(tmp_path / "a.json")]) == 0
    res = json.loads((tmp_path / "a.json").read_text())
    mm = res["method_metrics"]
    assert set(mm["retrieval"]) == {"audio_to_video", "video_to_audio", "candidates"}
    assert 0 <= mm["retrieval"]["audio_to_video"]["r@1"] <= 1
    assert set(mm["word_accuracy"]) >= {"audio", "video", "fused", "chance"}
    assert res["drive"] == "audio" and res["generation_options"] == {}

    out = tmp_path / "v.json"
    opts = ["--drive", "video", "--option", "wid_scale=1.5"]
    assert main([*base, *opts, "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["drive"] == "video" and res["generation_options"] == {"wid_scale": 1.5}
    assert "video-driven" in res["label"]
    capsys.readouterr()
    assert main([*base, "--option", "beta=2", "--out", str(tmp_path / "x.json")]) == 2
    assert "wid_scale" in capsys.readouterr().err
