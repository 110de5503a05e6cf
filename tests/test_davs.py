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
from omegaconf import OmegaConf
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
from talking_faces.models.davs import AUTHORS_PID_WIDTHS, DAVS, retrieval_scores
from talking_faces.models.optim import OptimConfig, lr_factor
from talking_faces.nn.discriminators import (
    AudioFrameDiscriminator,
    PatchDiscriminator,
    SequenceDiscriminator,
    crop_window,
    trunk_side,
)
from talking_faces.nn.gan import GANLoss
from talking_faces.nn.skip_decoder import SkipDecoder
from talking_faces.nn.speech import SpeechEncoder
from talking_faces.registry import load_model
from talking_faces.training.runconfig import load_config

pytestmark = pytest.mark.usefixtures("one_thread")


#: 4-frame windows for the tiny preset: 4 consecutive WID frames, 2 of them decoded, the PID->word
#: discriminator on the same 4
SHORT = {"seq_frames": 4, "gen_frames": 2, "frame_stride": 1, "pid_word_frames": None}


def fit_args(prep: Path, out: Path, name: str, *extra: str) -> list[str]:
    """Tiny davs on 4-frame windows (:data:`SHORT`); no sample videos."""
    short = [f"model.{k}={'null' if v is None else v}" for k, v in SHORT.items()]
    seq = [*short, "logger.sample_every_n_val=0"]
    return run_helpers.fit_args("davs_tiny", prep, out, name, *seq, *extra)


def tiny_davs(**overrides) -> DAVS:
    cfg = load_config([str(EXP / "model/davs_tiny.yaml")]).model
    values = {
        "image_size": 64,
        "audio_features": 12,
        "num_words": 5,
        "num_speakers": 3,
        **SHORT,
        **overrides,
    }
    for key, value in values.items():
        OmegaConf.update(cfg, key, value)
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


# ------------------------------------------------------------------- the authors' model
#: per-network parameters of the authors' modules as committed (LRW, 500 words, 256 px), as
#: counted in issue 18; their sequence discriminator's count includes 2,562 parameters of layers
#: it never uses (conv8 512, bn7 1,024, bn8 2, bn9 1,024), which are not built here
AUTHORS_COUNTS = {
    "pid": 15_619_584,
    "decoder": 22_404_547,
    "audio_wid": 1_602_112,
    "video_wid": 6_512_817,
    "word_classifier": 1_829_876,
    "modality_disc": 66_049,
    "pid_word_disc": 1_412_277,
    "seq_disc": 19_019_332 - 2_562,
}
#: our earlier model's counts where a switch changes them (PID widths, 12 frames for the PID->word
#: discriminator, the pooled pair head)
EARLIER_COUNTS = {"pid": 16_598_016, "pid_word_disc": 900_277, "seq_disc": 6_336_258}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def paper_davs(**overrides) -> DAVS:
    """The paper preset at 256 px, 500 words, hourglass video trunk, on the meta device."""
    cfg = load_config([str(EXP / "model/davs.yaml")]).model
    values = {"num_words": 500, "num_speakers": 0, "video_encoder": "hourglass", **overrides}
    for key, value in values.items():
        OmegaConf.update(cfg, key, value)
    with torch.device("meta"):
        return DAVS(cfg)


def test_paper_preset_has_the_authors_parameter_counts() -> None:
    model = paper_davs()
    counts = {name: _count(getattr(model, name)) for name in AUTHORS_COUNTS}
    assert counts == AUTHORS_COUNTS
    assert counts["seq_disc"] + 2_562 == 19_019_332
    earlier = paper_davs(pid_stage_widths=None, pid_word_frames=None, seq_pair_head="pooled")
    assert {name: _count(getattr(earlier, name)) for name in EARLIER_COUNTS} == EARLIER_COUNTS
    # the authors' widths inside the PID stages, block by block
    widths = [[block.cout for block in stage] for stage in model.pid.stages]
    assert widths == AUTHORS_PID_WIDTHS
    with pytest.raises(UserError, match="pid_stage_widths"):
        paper_davs(pid_stage_widths=[[32, 64], [160], [320], [256]])


def test_audio_subsample_stride_reads_the_rows_the_authors_do() -> None:
    """The authors' branch two keeps every third row of its first conv's 18 (rows 0, 3, ... 15),
    so the last two MFCC rows never reach it, and its last conv ends at one row."""
    torch.manual_seed(0)
    stride = SpeechEncoder(20, 12, 32, 0.25, "stride").eval()
    pool = SpeechEncoder(20, 12, 32, 0.25, "maxpool").eval()
    assert _count(stride) == _count(pool)
    pool.load_state_dict(stride.state_dict())
    a = torch.randn(2, 1, 20, 12)
    b = a.clone()
    b[:, :, 18:] += 5.0
    with torch.no_grad():
        assert torch.equal(stride.branch2(a), stride.branch2(b))
        assert not torch.equal(pool.branch2(a), pool.branch2(b))
        assert stride.branch2[:-1](a).shape[-2:] == (1, 1)
        assert pool.branch2[:-1](a).shape[-2:] == (3, 1)
        assert not torch.equal(stride(a[:, 0]), pool(a[:, 0]))
    with torch.device("meta"):
        assert _count(SpeechEncoder(subsample="stride")) == 1_602_112


def test_crop_pair_head_reads_the_authors_window() -> None:
    assert crop_window(31) == (slice(19, 28), slice(11, 20))  # 256 px, 3 layers: theirs
    assert trunk_side(256, 3) == 31
    torch.manual_seed(0)
    disc = SequenceDiscriminator(2, 8, 3, audio_width=8, pair_head="crop", image_size=128).eval()
    frames, audio = torch.rand(2, 2, 3, 128, 128), torch.randn(2, 2, 20, 12)
    moved = frames.clone()
    moved[..., :48, :] = 0.0  # the top: outside the window's receptive field
    with torch.no_grad():
        patch, pair = disc(frames, audio)
        patch2, pair2 = disc(moved, audio)
        _, pair3 = disc(frames, audio.flip(0))
    assert torch.equal(pair, pair2) and not torch.equal(patch, patch2)
    assert not torch.equal(pair, pair3)  # the pair logit reads the audio
    with pytest.raises(ValueError, match="trunk map"):
        disc(torch.rand(1, 2, 3, 64, 64), audio[:1])


def _indexed_batch(b: int, t: int) -> dict:
    """A batch whose frame j is the constant image j / 100 (so a frame tells its index)."""
    out = batch(b, t)
    out["frames"] = (
        (torch.arange(t, dtype=torch.float32) / 100).view(1, t, 1, 1, 1).expand(b, t, 3, 64, 64)
    )
    return out


def test_stride_sampling_picks_the_authors_frames() -> None:
    model = tiny_davs(frame_stride=2, pid_word_frames=6).train()
    assert model.window_frames == 8  # max(4 x 2, 6)
    b = _indexed_batch(2, 8)
    phases, pid_starts = set(), set()
    for seed in range(12):
        fw = model.forward_train(b, generator=torch.Generator().manual_seed(seed))
        index = fw["wid_index"]
        o = int(index[0])
        assert index.tolist() == [o, o + 2, o + 4, o + 6]
        phases.add(o)
        seen = (fw["real"][:, :, 0, 0, 0] * 100).round().long()
        assert (seen == index[fw["window"]]).all()  # the decoded frames are WID frames
        assert fw["window"].stop - fw["window"].start == 2
        assert fw["pid_maps"].shape[1] == 6
        pid = fw["pid_frames"]
        assert pid.stop - pid.start == 6 and 0 <= pid.start <= 2
        pid_starts.add(pid.start)
    assert phases == {0, 1} and pid_starts == {0, 1, 2}
    with pytest.raises(UserError, match="data.num_frames=8"):
        model.forward_train(_indexed_batch(2, 4))
    # stride 1, no PID frames: the window is the WID sequence, as before
    assert tiny_davs().window_frames == 4


def test_augmentation_crops_and_flips_frames_and_identity_together() -> None:
    model = tiny_davs(aug_crop_margin=2, aug_flip=True)
    g = torch.Generator().manual_seed(0)
    frames, identity = torch.rand(6, 3, 3, 64, 64, generator=g), torch.rand(6, 3, 64, 64)
    same = tiny_davs(aug_crop_margin=0, aug_flip=False)._augment(frames, identity, None)
    assert same[0] is frames and same[1] is identity
    out_f, out_i = model._augment(frames, identity, torch.Generator().manual_seed(1))
    assert out_f.shape == frames.shape and out_i.shape == identity.shape
    found = set()
    for i in range(6):
        # the centre 60 x 60 of each output is the input shifted by -1..1 px, perhaps mirrored
        hits = [
            (dy, dx, flip)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            for flip in (False, True)
            if _matches(out_f[i], out_i[i], frames[i], identity[i], dy, dx, flip)
        ]
        assert len(hits) == 1, i
        found.add(hits[0])
    assert len(found) > 1 and any(h[2] for h in found) and not all(h[2] for h in found)


def _matches(out_f, out_i, frames, identity, dy: int, dx: int, flip: bool) -> bool:
    src = torch.cat([frames, identity[None]])
    got = torch.cat([out_f, out_i[None]])
    got = got.flip(-1) if flip else got
    return torch.equal(got[..., 2:62, 2:62], src[..., 2 + dy : 62 + dy, 2 + dx : 62 + dx])


def test_align_corners_switch_changes_the_upsampling() -> None:
    torch.manual_seed(0)
    theirs = SkipDecoder(32, 16, 4, [16, 8, 8], [1, 1, 1], align_corners=True).eval()
    ours = SkipDecoder(32, 16, 4, [16, 8, 8], [1, 1, 1]).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.arange(4.0).view(1, 1, 2, 2)
    # 0 and 1 at the corners of a row: the corners' grid (theirs) puts 1/3 between, ours 1/4
    assert float(theirs.up(x)[0, 0, 0, 1]) == pytest.approx(1 / 3)
    assert float(ours.up(x)[0, 0, 0, 1]) == pytest.approx(1 / 4)
    code, skip = torch.randn(2, 16), torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        assert not torch.equal(theirs(code, skip), ours(code, skip))
    model = tiny_davs(upsample_align_corners=True, video_encoder="hourglass")
    assert model.decoder.up.align_corners and model.video_wid.hourglass.align_corners


@torch.no_grad()
def test_authors_initialisation() -> None:
    model = tiny_davs(init="authors")
    stem = model.pid.stem.conv.weight
    assert float(stem.std()) == pytest.approx((49 * 8) ** -0.5, rel=0.1)
    last = model.pid.stages[3][0].conv.weight  # 5x5, but the authors' 3x3 constant
    assert float(last.std()) == pytest.approx((9 * 64) ** -0.5, rel=0.1)
    conv = model.decoder.blocks[1][0]
    assert float(conv.weight.std()) == pytest.approx((2 / (9 * conv.out_channels)) ** 0.5, rel=0.1)
    assert float(model.seq_disc.trunk.body[0].weight.std()) == pytest.approx(0.02, rel=0.1)
    assert float(model.seq_disc.trunk.body[0].bias.abs().max()) == 0.0
    bn = model.seq_disc.trunk.body[3].weight
    assert float((bn - 1).abs().max()) < 0.1 and float(bn.std()) > 0
    assert float(model.pid_word_disc.conv.weight.std()) == pytest.approx(0.02, rel=0.25)
    audio_bn = model.audio_wid.branch1[1].weight  # PyTorch 0.2's default: U(0, 1)
    assert float(audio_bn.min()) >= 0 and float(audio_bn.max()) <= 1
    assert float(audio_bn.std()) > 0.1
    default = tiny_davs(init="default")
    assert torch.equal(default.audio_wid.branch1[1].weight, torch.ones_like(audio_bn))
    assert float(default.seq_disc.trunk.body[0].weight.std()) > 0.03


def test_authors_lr_schedule() -> None:
    """Full rate for 101 epochs, then lower by lr/10000 an epoch: at every epoch's first step
    the rate of the authors' epoch (their update_learning_rate after each epoch > 100)."""
    cfg = load_config([str(EXP / "model/davs.yaml")]).model
    per_epoch = 30_547  # LRW's 488,766 training clips at batch 16
    assert (cfg.lr_decay_start, cfg.lr_decay_span) == (101 * per_epoch, 10_000 * per_epoch)
    c = OptimConfig(lr_schedule="linear", lr_decay_start=101 * 10, lr_decay_span=10_000 * 10)
    for epoch in (0, 50, 101, 102, 150, 5000, 10_101, 10_500):
        authors = max(0.0, 1.0 - max(0, epoch - 101) / 10_000)
        assert lr_factor(epoch * 10, c, 100) == pytest.approx(authors, abs=1e-12), epoch


def test_authors_test_time_procedure_runs_on_the_tiny_model() -> None:
    model = tiny_davs().eval()
    b = batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opts = {"finetune_steps": 5, "wid_scale": 1.5}
    with torch.no_grad():
        plain = model.generate(b["identity"], b["audio"])
        for key, value in opts.items():
            setattr(model.config, key, value)
        tuned = model.generate(b["identity"], b["audio"])
        # each identity fine-tunes alone: its frames do not depend on the other identities
        other = b["identity"].clone()
        other[1:] = torch.rand_like(other[1:])
        alone = model.generate(other, b["audio"])
    assert tuned.shape == plain.shape and not torch.equal(tuned, plain)
    torch.testing.assert_close(alone[0], tuned[0], atol=1e-6, rtol=0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # fine-tuning works on copies
    # the steps are the authors': step i reconstructs the identity from the driving audio's
    # frame-i WID; one fresh Adam step moves every parameter by at most lr
    wids = model.audio_codes(b["audio"]).detach()
    pid, dec = model._finetuned(b["identity"][:1], wids[0])
    with torch.no_grad():
        code, maps = pid(b["identity"][:1])
        manual = model.decode(code, maps[1], wids[:1] * 1.5, decoder=dec)
    torch.testing.assert_close(manual[:, None], tuned[:1], atol=1e-6, rtol=0)
    model.config.finetune_steps = 1
    pid1, _ = model._finetuned(b["identity"][:1], wids[0])
    pairs = zip(pid1.parameters(), model.pid.parameters(), strict=True)
    moved = max(float((a - p).detach().abs().max()) for a, p in pairs)
    assert 0 < moved <= model.config.finetune_lr * 1.001
    # one Adam for all steps, and the mouth at full weight, are other procedures
    model.config.finetune_steps = 5
    for key, value in (("finetune_fresh_optimizer", False), ("finetune_mouth_weight", 1.0)):
        setattr(model.config, key, value)
        with torch.no_grad():
            assert not torch.equal(model.generate(b["identity"], b["audio"]), tuned), key
    # video driving: the driver's WID x video_wid_scale, fine-tuned on the identity's own WID
    model.config.finetune_steps, model.config.finetune_fresh_optimizer = 0, True
    with torch.no_grad():
        video = model.generate_driven(b["identity"], b["frames"], "video")
        model.config.video_wid_scale = 0.8
        scaled = model.generate_driven(b["identity"], b["frames"], "video")
    assert not torch.equal(video, scaled)


def test_update_order_discriminators_first(prepared_grid: Path, tmp_path: Path) -> None:
    """With the discriminators stepping first, they see what they see with the generator first
    (the same networks' outputs), and the generator's adversarial term is computed against the
    updated discriminators; no random draw in the losses, so only the order differs."""
    quiet = ["model.soft_labels=false", "model.w_pid_word=0", "trainer.max_steps=1"]
    first = {}
    for order in ("generator_first", "discriminator_first"):
        args = fit_args(prepared_grid, tmp_path, order, *quiet, f"model.update_order={order}")
        assert main(args) == 0
        rows = read_metrics(tmp_path / order)
        first[order] = {
            key: column(rows, key)[0][1] for key in ("train/seq_gan", "train_d/seq_gan")
        }
    g_first, d_first = first["generator_first"], first["discriminator_first"]
    assert d_first["train_d/seq_gan"] == pytest.approx(g_first["train_d/seq_gan"], rel=1e-5)
    assert d_first["train/seq_gan"] != pytest.approx(g_first["train/seq_gan"], rel=1e-4)


def test_training_stages_run_in_order(prepared_grid: Path, tmp_path: Path) -> None:
    """PID identity pretraining, then the classification stage (WID side only), then the joint
    stage; the classification stage gives gradients to the WID side only."""
    stages = ["model.pid_pretrain_steps=1", "model.classify_pretrain_steps=1"]
    assert main(fit_args(prepared_grid, tmp_path, "st", *stages, "trainer.max_steps=3")) == 0
    rows = read_metrics(tmp_path / "st")
    assert [s for s, _ in column(rows, "pretrain/identity_ce")] == [0]
    assert [s for s, _ in column(rows, "classify/contrastive")] == [1]
    assert [s for s, _ in column(rows, "classify_d/loss")] == [1]
    assert [s for s, _ in column(rows, "train/l1_audio")] == [2]
    assert main(fit_args(prepared_grid, tmp_path, "cl", *stages, "trainer.max_steps=2")) == 0
    ckpt = load_checkpoint(tmp_path / "cl/checkpoints/last.ckpt")
    model = load_model(tmp_path / "cl/checkpoints/last.ckpt")
    assert isinstance(model, DAVS)
    gen_state = ckpt["optimizer_states"][0]["state"]
    # the generator group's parameters in order (optimizer_groups): Adam keeps state only for
    # those that had a gradient: PID (stage 1) and the WID side (stage 2), not the decoder
    sizes = [len(list(m.parameters())) for m in (model.pid, model.audio_wid, model.video_wid)]
    decoder = range(sum(sizes), sum(sizes) + len(list(model.decoder.parameters())))
    assert not set(decoder) & set(gen_state)
    assert set(range(sum(sizes))) <= set(gen_state)
