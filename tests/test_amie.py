"""amie: the MI estimators against a known answer, every switch, dynamic attention, and the
several-optimizer guarantees (exact resume with the estimator, DDP) through ``fit``.
"""

from __future__ import annotations

import math
import subprocess
from functools import partial
from pathlib import Path

import pytest
import run_helpers
import torch
import yaml
from run_helpers import (
    CLI,
    EXP,
    assert_same_weights,
    cli_env,
    column,
    read_metrics,
    uninterrupted_and_resumed,
)
from torch import nn

from talking_faces.cli.main import main
from talking_faces.config.schema import to_dict
from talking_faces.errors import UserError
from talking_faces.models.amie import AMIE
from talking_faces.nn.mutual_information import (
    MIEstimator,
    MovingAverage,
    dv_bound,
    estimate,
    infonce_bound,
    js_bound,
)
from talking_faces.registry import load_model
from talking_faces.training.runconfig import load_config

pytestmark = pytest.mark.usefixtures("one_thread")


def fit_args(prep: Path, out: Path, name: str, *extra: str) -> list[str]:
    return run_helpers.fit_args("amie_tiny", prep, out, name, "logger.sample_every_n_val=0", *extra)


def tiny_amie(**overrides) -> AMIE:
    cfg = to_dict(load_config([str(EXP / "model/amie_tiny.yaml")]))["model"]
    cfg.update({"image_size": 64, "audio_features": 12, **overrides})
    torch.manual_seed(0)
    return AMIE(cfg)


def batch(b: int = 3, t: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "frames": torch.rand(b, t, 3, 64, 64, generator=g),
        "identity": torch.rand(b, 3, 64, 64, generator=g),
        "audio": torch.randn(b, t, 20, 12, generator=g),
    }


# ------------------------------------------------------------------------- the estimators
def test_bounds_on_hand_made_scores() -> None:
    # a critic that cannot tell pairs apart: every bound says 0
    zeros = torch.zeros(64)
    assert float(js_bound(zeros, zeros)) == pytest.approx(0.0, abs=1e-6)
    assert float(dv_bound(zeros, zeros)) == pytest.approx(0.0, abs=1e-6)
    assert float(infonce_bound(torch.zeros(8, 8))) == pytest.approx(0.0, abs=1e-6)
    # a perfect critic: InfoNCE reaches log N, JS its ceiling 2 log 2
    assert float(infonce_bound(torch.eye(8) * 100)) == pytest.approx(math.log(8), abs=1e-4)
    assert float(js_bound(torch.full((8,), 50.0), torch.full((8,), -50.0))) == pytest.approx(
        math.log(4), abs=1e-4
    )


def test_moving_average_changes_the_gradient_not_the_value() -> None:
    pos = torch.randn(16, requires_grad=True)
    neg = torch.randn(16, requires_grad=True)
    ma = MovingAverage(0.5)
    value = ma.objective(pos, neg)
    assert float(value.detach()) == pytest.approx(float(dv_bound(pos, neg).detach()), abs=1e-6)
    value.backward()
    # d/dneg of -mean(e^T)/ma with ma = mean(e^T) (first call): -e^T / (N * mean e^T)
    expected = -neg.detach().exp() / (16 * neg.detach().exp().mean())
    torch.testing.assert_close(neg.grad, expected)
    # the average is a saved buffer that moves towards new batches
    first = float(ma.value)
    ma.objective(torch.zeros(4), torch.full((4,), 2.0))
    assert float(ma.value) == pytest.approx(0.5 * first + 0.5 * math.exp(2.0), rel=1e-5)
    assert "value" in ma.state_dict()


def _fit_critic(bound: str, rho: float, d: int = 2, steps: int = 300) -> float:
    """Train a critic on pairs of correlated Gaussians and return its estimate on fresh data."""
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(0)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, d, generator=g)
        return x, rho * x + math.sqrt(1 - rho**2) * torch.randn(n, d, generator=g)

    critic = MIEstimator(nn.Identity(), nn.Identity(), d, d, 32)
    average = MovingAverage(0.01) if bound == "dv" else None
    opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
    for _ in range(steps):
        x, y = sample(128)
        loss = -estimate(bound, critic, x, y, torch.randperm(128, generator=g), average)
        opt.zero_grad()
        loss.backward()
        opt.step()
    critic.eval()
    with torch.no_grad():
        values = []
        for _ in range(10):
            x, y = sample(128)
            values.append(float(estimate(bound, critic, x, y, torch.randperm(128, generator=g))))
    return sum(values) / len(values)


@pytest.mark.slow
def test_estimators_on_gaussians_with_known_mutual_information() -> None:
    """I(X;Y) = -d/2 log(1 - rho^2) for d pairs of unit Gaussians with correlation rho."""
    rhos = (0.5, 0.8, 0.9)
    truth = [-math.log(1 - r**2) for r in rhos]  # d = 2
    est = {b: [_fit_critic(b, r) for r in rhos] for b in ("dv", "js", "infonce")}
    for bound, values in est.items():
        assert values == sorted(values), f"{bound} must grow with the true MI: {values}"
    for value, true in zip(est["dv"], truth, strict=True):
        assert abs(value - true) < 0.2 * true, (est["dv"], truth)  # DV: close to the truth
    for value, true in zip(est["js"], truth, strict=True):
        assert 0 < value < true  # JS: a relative amplitude below the truth
    for value, true in zip(est["infonce"], truth, strict=True):
        assert value < true + 0.05 and value < math.log(128)


# --------------------------------------------------------------------------- the switches
def _step_terms(model: AMIE, b: dict) -> tuple[dict, dict, dict]:
    model.train()
    gen = torch.Generator().manual_seed(0)
    perm = model._repair(3, 4, gen, "cpu")
    fw = model.forward_train(b, generator=gen)
    e = model.estimator_terms(b, perm, None if model.config.asymmetric else fw["fake"])
    return model.generator_terms(b, fw, perm), model.discriminator_terms(b, fw), e


def test_every_switch_changes_the_loss_as_stated() -> None:
    b = batch()
    full = tiny_amie()
    g, d, e = _step_terms(full, b)
    assert {"l1", "gan", "mi_generated"} <= set(g) and "gan" in d
    assert set(e) == {"loss", "mi_real"}  # asymmetric: the estimator sees real pairs only
    assert list(full.optimizer_groups()) == ["generator", "discriminator", "estimator"]

    off = tiny_amie(mi_weight=0.0)
    g_off, _, _ = (None, None, None)
    assert off.estimator is None and "estimator" not in off.optimizer_groups()
    fw = off.forward_train(b, generator=torch.Generator().manual_seed(0))
    g_off = off.generator_terms(b, fw, torch.arange(12))
    assert "mi_generated" not in g_off

    sym = tiny_amie(asymmetric=False)
    _, _, e_sym = _step_terms(sym, b)
    assert {"mi_real", "mi_generated"} <= set(e_sym)  # also trained on generated pairs
    assert float(e_sym["loss"]) == pytest.approx(
        -float(e_sym["mi_real"]) - float(e_sym["mi_generated"]), abs=1e-5
    )

    for bound in ("dv", "infonce"):
        gb, _, eb = _step_terms(tiny_amie(mi_bound=bound), b)
        assert "mi_generated" in gb and torch.isfinite(eb["loss"])

    no_gan, _, _ = _step_terms(tiny_amie(w_gan=0.0), b)
    assert "gan" not in no_gan
    # DA off: no attention module, another skip path, another output
    no_da = tiny_amie(da=False)
    assert no_da.attention is None and "attention" not in dict(no_da.named_children())
    with pytest.raises(UserError, match="mi_bound"):
        tiny_amie(mi_bound="nwj")


def test_attention_starts_from_the_lip_box_and_is_shown() -> None:
    model = tiny_amie().eval()
    b = batch()
    with torch.no_grad():
        frames, masks = model.generate_with_attention(b["identity"], b["audio"])
        panels = model.debug_panels(b["identity"], b["audio"])
    assert masks.shape == (3, 4, 1, 8, 8)
    first = masks[0, 0, 0]
    assert first.max() == 1 and first.min() == 0  # the coarse box: ones inside, zeros outside
    assert first[5, 4] == 1 and first[1, 1] == 0  # inside: the lower centre; outside: a corner
    assert panels["attention"].shape == frames.shape
    assert tiny_amie(da=False).eval().debug_panels(b["identity"], b["audio"]) == {}


def test_scheduled_sampling_feeds_generated_frames() -> None:
    # eval mode: batch norm with running statistics, so one frame at a time (sampling) and all
    # frames at once (teacher forcing) compute the same function; DA in generation too, as in
    # training, so that generation is the sampled run
    model = tiny_amie(
        scheduled_sampling=1.0, scheduled_sampling_steps=0, attention_at_inference=True
    ).eval()
    b = batch()
    with torch.no_grad():
        a = model.forward_train(b, generator=torch.Generator().manual_seed(0))["fake"]
        teacher = tiny_amie(scheduled_sampling=0.0).eval()
        teacher = teacher.forward_train(b, generator=torch.Generator().manual_seed(0))
    assert a.shape == teacher["fake"].shape
    # frame 0 has the identity as its previous frame either way; later frames differ, and with
    # probability 1 the sampled run is the autoregressive generation itself
    torch.testing.assert_close(a[:, 0], teacher["fake"][:, 0])
    assert not torch.allclose(a[:, 1:], teacher["fake"][:, 1:])
    with torch.no_grad():
        torch.testing.assert_close(a, model.generate(b["identity"], b["audio"])[:, 0])


def test_attention_runs_in_training_only_unless_switched_on() -> None:
    """The paper describes DA for training: by default generate() uses the identity skip alone,
    exactly the function of a model without DA; attention_at_inference puts the blend back."""
    assert tiny_amie().config.attention_at_inference is False
    assert load_config([str(EXP / "model/amie.yaml")]).model.attention_at_inference is False
    model = tiny_amie().eval()
    plain = tiny_amie(da=False).eval()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert missing == [] and unexpected and all(k.startswith("attention.") for k in unexpected)
    b = batch()
    with torch.no_grad():
        off = model.generate(b["identity"], b["audio"])
        without_da = plain.generate(b["identity"], b["audio"])
        model.config.attention_at_inference = True
        on = model.generate(b["identity"], b["audio"])
        model.config.attention_at_inference = False
        frames, masks = model.generate_with_attention(b["identity"], b["audio"])
        trained = model.forward_train(b)["fake"]  # scheduled sampling at step 0: teacher forcing
        teacher, _ = model._teacher_forced(
            b["identity"], b["frames"], model.audio_codes(b["audio"])
        )
    assert torch.equal(off, without_da)
    assert not torch.allclose(on, off)
    # the debug path shows the masks DA refines along the frames generate() gives
    assert torch.equal(frames, off[:, 0]) and masks is not None and masks.shape == (3, 4, 1, 8, 8)
    torch.testing.assert_close(trained, teacher)  # training blends whatever the switch says
    with torch.no_grad():
        plain_teacher, _ = plain._teacher_forced(
            b["identity"], b["frames"], plain.audio_codes(b["audio"])
        )
    assert not torch.allclose(teacher, plain_teacher)


def test_attention_at_inference_is_a_test_time_option() -> None:
    from talking_faces.evaluation.request import apply_generation_options

    model = tiny_amie()
    assert apply_generation_options(model, {"attention_at_inference": True}) == {
        "attention_at_inference": True
    }
    assert model.config.attention_at_inference is True
    with pytest.raises(UserError, match="not a test-time option"):
        apply_generation_options(model, {"w_l1": 0.0})


def test_results_mark_the_l1_term_as_ours() -> None:
    losses = tiny_amie().loss_provenance()
    assert losses["l1"] == {"weight": 100.0, "source": "ours"}
    assert {k: v["source"] for k, v in losses.items()} == {
        "l1": "ours",
        "gan": "paper",
        "perceptual": "paper",
        "mi": "paper",
    }
    paper_only = tiny_amie(w_l1=0.0, perceptual="none").loss_provenance()
    assert set(paper_only) == {"gan", "mi"}
    g, _, _ = _step_terms(tiny_amie(w_l1=0.0), batch())
    # without the L1 weight the generator loss is the GAN, perceptual-free here, and MI terms
    expected = 0.1 * g["gan"] - g["mi_generated"]
    torch.testing.assert_close(g["loss"].detach(), expected)
    header = (EXP / "model/amie.yaml").read_text()
    assert "OUR ADDITION" in header and "no_l1" in header
    sweep = yaml.safe_load((EXP / "sweeps/amie_ablation.yaml").read_text())
    variants = sweep["parameters"]["talking_faces"]["value"]["variants"]["row"]
    assert variants["no_l1"] == {**variants["full"], "model.w_l1": 0.0}


# ------------------------------------------------------------------------- through fit
def test_perceptual_network_errors_name_what_is_missing(
    prepared_grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # prepared_grid has no landmark expert; the default tiny preset needs one
    assert main(fit_args(prepared_grid, tmp_path, "a", "trainer.max_steps=1")) == 2
    err = capsys.readouterr().err
    assert "experts/landmarks.yaml" in err and not (tmp_path / "a").exists()
    assert main(fit_args(prepared_grid, tmp_path, "b", "model.perceptual=vgg19")) == 2
    assert "vgg19-dcbedc0f.pth" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_with_the_estimator_matches_uninterrupted_run(trained: Path, tmp_path: Path) -> None:
    """Exact resume with three optimizers and MINE's moving average (mi_bound dv)."""
    extra = ["trainer.val_check_interval=4", "checkpoint.every_n_train_steps=2"]
    extra.append("model.mi_bound=dv")
    n = 8
    ref, got = uninterrupted_and_resumed(partial(fit_args, trained), tmp_path, n, *extra)
    assert got["global_step"] == n and len(got["optimizer_states"]) == 3
    assert "mi_average.value" in got["state_dict"]
    assert_same_weights(ref, got)


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_with_the_estimator(trained: Path, tmp_path: Path) -> None:
    args = fit_args(
        trained,
        tmp_path,
        "ddp",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_steps=12",
        "trainer.val_check_interval=12",
        "data.batch_size=2",
    )
    proc = subprocess.run([*CLI, *args], env=cli_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_metrics(tmp_path / "ddp")
    l1 = [v for _, v in column(rows, "train/l1")]
    assert len(l1) == 12 and sum(l1[-3:]) / 3 < sum(l1[:2]) / 2
    assert [r for r in rows if r.get("train/mi_real")]
    model = load_model(tmp_path / "ddp/checkpoints/last.ckpt")
    out = model.generate(torch.rand(1, 3, 64, 64), torch.zeros(1, 3, 20, 12))
    assert out.shape == (1, 1, 3, 3, 64, 64)
