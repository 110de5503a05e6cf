"""Every method in MODELS: its tiny preset builds, trains, and generates per the model contract.

Plus the pieces of ldm that a wrong implementation would get wrong silently: the encoder/decoder
layout at 64 and 128 px, the Gaussian KL with log-variances, causality of generation.
"""

from __future__ import annotations

from pathlib import Path

import lightning
import pytest
import torch
from omegaconf import OmegaConf

from talking_faces.errors import UserError
from talking_faces.models import MODELS
from talking_faces.models.ldm import LDM
from talking_faces.nn.audio import AudioEncoder
from talking_faces.nn.recurrent import LSTM, GaussianLSTM, gaussian_kl
from talking_faces.nn.vgg import VGGDecoder, VGGEncoder
from talking_faces.registry import create_model, load_model
from talking_faces.training.runconfig import load_config

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
B, T, W, F, S = 2, 4, 28, 12, 64


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(name: str):
    cfg = load_config([str(EXPERIMENTS / "model" / f"{name}_tiny.yaml")]).model
    for key, value in (("image_size", S), ("audio_window", W), ("audio_features", F)):
        if cfg[key] is None:
            cfg[key] = value
    torch.manual_seed(0)
    return MODELS[name](cfg)


def make_batch(seed: int = 0, b: int = B, t: int = T, size: int = S, w: int = W) -> dict:
    """A batch of the contract made from tensors: moving blobs on noise, audio that tracks them."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(b, t, 3, size, size, generator=g) * 0.2
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(b):
        for j in range(t):
            cx = size / 4 + (size / 2) * (j / max(t - 1, 1))
            blob = torch.exp(-((xx - cx) ** 2 + (yy - size / 2) ** 2) / (2 * (size / 8) ** 2))
            frames[i, j, i % 3] += 0.8 * blob
    audio = torch.randn(b, t, w, F, generator=g) * 0.1
    audio[..., 0] += torch.linspace(-1, 1, t)[None, :, None]
    return {
        "frames": frames.clamp(0, 1),
        "identity": frames[:, 0].clone(),
        "audio": audio,
        "waveform": torch.randn(b, t * 640, generator=g) * 0.1,
        "landmarks": torch.zeros(b, t, 68, 2),
        "landmarks_valid": torch.ones(b, t, dtype=torch.bool),
        "speaker": torch.zeros(b, dtype=torch.long),
        "word": torch.full((b,), -1, dtype=torch.long),
        "clip_id": [f"clip{i}" for i in range(b)],
        "start": torch.zeros(b, dtype=torch.long),
    }


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tiny_preset_forward_backward_finite(name: str) -> None:
    model = tiny(name).train()
    terms = model.loss(make_batch(w=model.config.audio_window))
    assert "loss" in terms and terms["loss"].ndim == 0
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_generate_contract(name: str) -> None:
    model = tiny(name).eval()
    batch = make_batch(w=model.config.audio_window)
    k = 3 if model.stochastic else 1
    with torch.no_grad():
        out = model.generate(batch["identity"], batch["audio"], k, torch.Generator().manual_seed(1))
        again = model.generate(
            batch["identity"], batch["audio"], k, torch.Generator().manual_seed(1)
        )
    assert out.shape == (B, k, T, 3, S, S)
    assert out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, again), "the same seed must give the same output"
    if model.stochastic:
        with torch.no_grad():
            other = model.generate(
                batch["identity"], batch["audio"], k, torch.Generator().manual_seed(2)
            )
        assert not torch.equal(out, other), "a different seed must give different samples"
        assert not torch.equal(out[:, 0], out[:, 1]), "the K samples of one input must differ"
    else:
        with pytest.raises(UserError, match="deterministic"):
            model.generate(batch["identity"], batch["audio"], 2)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_overfits_one_batch(name: str) -> None:
    model = tiny(name).train()
    batch = make_batch(t=3, w=model.config.audio_window)
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    if isinstance(opt, tuple):  # several network groups: the first one (the generator's)
        opt = opt[0][0]
    first = last = None
    for _ in range(25):
        loss = model.loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        last = loss.item()
    assert last < 0.7 * first


@pytest.mark.parametrize("name", sorted(MODELS))
def test_checkpoint_round_trip(name: str, tmp_path: Path) -> None:
    model = tiny(name)
    ckpt = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    torch.save(ckpt, tmp_path / "m.ckpt")
    loaded = load_model(tmp_path / "m.ckpt")
    assert type(loaded) is type(model)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    # the Lightning path too (the evaluator uses it)
    again = MODELS[name].load_from_checkpoint(tmp_path / "m.ckpt", map_location="cpu")
    assert again.config == model.config


def test_unknown_model_key_is_a_user_error() -> None:
    with pytest.raises(UserError, match="model.z_dimm"):
        create_model("ldm", {"image_size": 64, "audio_window": W, "audio_features": F, "z_dimm": 3})
    with pytest.raises(UserError, match="image_size"):
        create_model("ldm")


# ---------------------------------------------------------------------------------------- ldm
@pytest.mark.parametrize(("size", "blocks"), [(64, 4), (128, 5)])
def test_vgg_layout(size: int, blocks: int) -> None:
    ch = [8, 16, 32, 32, 32]
    enc = VGGEncoder(size, code_dim=20, channels=ch, layers=[1, 1, 2, 2, 2])
    dec = VGGDecoder(size, code_dim=20, channels=ch, layers=[1, 1, 2, 2, 2])
    x = torch.rand(3, 3, size, size)
    code, skips = enc(x)
    assert code.shape == (3, 20) and code.abs().max() <= 1
    assert [tuple(s.shape[1:]) for s in skips] == [
        (ch[i], size >> i, size >> i) for i in range(blocks)
    ]
    y = dec(code, skips)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("finest", [1, 2])  # output conv alone / after a conv-BN-LeakyReLU
@pytest.mark.parametrize("channels_last", [False, True])
def test_decoder_step_with_skip_terms_equals_forward(finest: int, channels_last: bool) -> None:
    """Generation's split of each block's first convolution (skip share computed once) gives the
    decoder's function, in training and in eval mode."""
    torch.manual_seed(0)
    ch = [8, 16, 32, 32]
    enc = VGGEncoder(64, code_dim=20, channels=ch, layers=[1, 1, 1, 1])
    dec = VGGDecoder(64, code_dim=20, channels=ch, layers=[finest, 2, 1, 3])
    if channels_last:
        enc, dec = (m.to(memory_format=torch.channels_last) for m in (enc, dec))
    _, skips = enc(torch.rand(3, 3, 64, 64))
    code = torch.rand(3, 20) * 2 - 1
    for train in (True, False):
        dec.train(train)
        with torch.no_grad():
            torch.testing.assert_close(
                dec.step(code, dec.skip_terms(skips)), dec(code, skips), atol=1e-5, rtol=1e-4
            )


#: parameters of each network in the ldm authors' code (ry85/Stochastic-Talking-Face-Generation-
#: Using-Latent-Distribution-Matching: models/vgg_64.py, vgg_128.py, rnn_audio.py, lstm.py), built
#: as their train.py builds them (g_dim 128, z_dim 24, rnn_size 256, 1/1/2 LSTM layers, 3
#: channels) and counted with sum(p.numel()); totals 36,587,363 (64 px) and 36,989,987 (128 px)
AUTHORS_PARAMETERS = {
    64: {
        "encoder": 8_689_600,
        "decoder": 11_822_659,
        "audio_encoder": 13_806_976,
        "posterior": 571_696,
        "prior": 571_696,
        "predictor": 1_124_736,
    },
    128: {
        "encoder": 4_962_688,
        "decoder": 15_952_195,
        "audio_encoder": 13_806_976,
        "posterior": 571_696,
        "prior": 571_696,
        "predictor": 1_124_736,
    },
}
#: the authors' 64 px networks (SVG's vgg_64) on top of the paper preset
AUTHORS_64 = {
    "image_size": 64,
    "channels": [64, 128, 256, 512],
    "encoder_layers": [2, 2, 3, 3],
    "decoder_layers": [2, 2, 3, 3],
}


def paper_ldm(size: int) -> LDM:
    cfg = load_config([str(EXPERIMENTS / "model" / "ldm.yaml")]).model
    return LDM(OmegaConf.merge(cfg, AUTHORS_64) if size == 64 else cfg)


@pytest.mark.parametrize("size", [64, 128])
def test_paper_preset_has_the_authors_parameter_counts(size: int) -> None:
    torch.manual_seed(0)
    model = paper_ldm(size)
    counts = {k: sum(p.numel() for p in net.parameters()) for k, net in model.networks().items()}
    assert counts == AUTHORS_PARAMETERS[size]
    total = sum(p.numel() for p in model.parameters())
    assert total == sum(AUTHORS_PARAMETERS[size].values())
    assert round(total / 1e6, 2) == {64: 36.59, 128: 36.99}[size]


def test_paper_architecture_at_128() -> None:
    model = paper_ldm(128)
    enc_convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    # one conv per block, then the 4x4 code convolution
    assert [c.out_channels for c in enc_convs] == [64, 128, 256, 512, 512, 128]
    assert enc_convs[-1].kernel_size == (4, 4)
    dec_convs = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    # two per block (coarse to fine): 8, 16, 32, 64 px, then 128 px ending in the output conv
    assert [(c.in_channels, c.out_channels) for c in dec_convs] == [
        (1024, 512),
        (512, 512),
        (1024, 512),
        (512, 256),
        (512, 256),
        (256, 128),
        (256, 128),
        (128, 64),
        (128, 64),
    ]
    out = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in out] == [
        (128, 512, (4, 4)),
        (64, 3, (3, 3)),
    ]
    audio_convs = [m for m in model.audio_encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in audio_convs] == [64, 128, 256, 256]
    pools = [m for m in model.audio_encoder.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, (1, 2)), (3, (2, 2))]
    fcs = [m for m in model.audio_encoder.fc if isinstance(m, torch.nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(6144, 2048), (2048, 128)]
    codes = model.audio_encoder(torch.randn(3, 28, 12))
    assert codes.shape == (3, 128) and codes.min() >= 0  # ReLU output, as the authors'
    assert model.prior.mu.out_features == 24 and model.posterior.lstm.num_layers == 1
    assert model.predictor.lstm.num_layers == 2 and model.predictor.lstm.hidden_size == 256
    assert isinstance(model.configure_optimizers(), torch.optim.RMSprop)


def test_ldm_initialisation_is_the_authors() -> None:
    """N(0, 0.02) weights and zero biases for every conv and linear layer of all six networks,
    N(1, 0.02) batch-norm scales; the LSTM cells keep PyTorch's uniform initialisation."""
    torch.manual_seed(0)
    model = paper_ldm(64)
    seen = {name: 0 for name in model.networks()}
    for name, net in model.networks().items():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Linear):
                seen[name] += 1
                assert torch.count_nonzero(m.bias) == 0
                if m.weight.numel() >= 4096:  # enough draws for a tight estimate
                    assert float(m.weight.detach().mean()) == pytest.approx(0.0, abs=0.002)
                    assert float(m.weight.detach().std()) == pytest.approx(0.02, rel=0.05)
            elif isinstance(m, torch.nn.BatchNorm2d):
                assert float(m.weight.detach().std()) == pytest.approx(0.02, rel=0.5)
                assert float((m.weight.detach() - 1).abs().max()) < 0.2
                assert torch.count_nonzero(m.bias) == 0
            elif isinstance(m, torch.nn.LSTM):
                bound = 1 / m.hidden_size**0.5
                assert float(m.weight_hh_l0.abs().max()) <= bound
                assert float(m.weight_hh_l0.std()) > 0.5 * bound / 3**0.5
    # embedding + heads of the posterior and prior, embedding + output of the predictor
    assert seen["posterior"] == seen["prior"] == 3 and seen["predictor"] == 2
    assert seen["audio_encoder"] == 6


def test_gaussian_kl_uses_log_variances() -> None:
    g = torch.Generator().manual_seed(0)
    mu_q, mu_p = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    lv_q, lv_p = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    q = torch.distributions.Normal(mu_q, torch.exp(0.5 * lv_q))
    p = torch.distributions.Normal(mu_p, torch.exp(0.5 * lv_p))
    ref = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu_q, lv_q, mu_p, lv_p), ref)
    assert torch.allclose(gaussian_kl(mu_q, lv_q, mu_q, lv_q), torch.zeros(5), atol=1e-6)


def test_lstm_step_equals_sequence() -> None:
    torch.manual_seed(0)
    net = LSTM(6, 4, 8, layers=2)
    x = torch.randn(3, 5, 6)
    seq, _ = net(x)
    state, steps = None, []
    for t in range(5):
        y, state = net.step(x[:, t], state)
        steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), seq)

    gauss = GaussianLSTM(6, 3, 8, layers=1)
    mu, logvar, (h, c) = gauss(x)
    state, mus = None, []
    for t in range(5):
        m, lv, state = gauss.step(x[:, t], state)
        mus.append(m)
    torch.testing.assert_close(torch.stack(mus, 1), mu)
    torch.testing.assert_close(lv, logvar[:, -1])
    torch.testing.assert_close(state[0], h)
    torch.testing.assert_close(state[1], c)


def test_audio_encoder_checks_window() -> None:
    enc = AudioEncoder(window=28, features=12, channels=(4, 4, 8, 8), hidden=16, code_dim=5)
    assert enc(torch.randn(2, 28, 12)).shape == (2, 5)
    assert enc.fc[0].in_features == 8 * 12 * 2  # 28 x 12 -> 26 x 5 -> 12 x 2
    with pytest.raises(ValueError, match="built for"):
        enc(torch.randn(2, 20, 12))
    # other windows size the FC layer from the same pools: 20 x 13 -> 18 x 6 -> 8 x 2
    assert AudioEncoder(window=20, features=13, channels=(4, 4, 8, 8)).fc[0].in_features == 128
    with pytest.raises(ValueError, match="too small"):
        AudioEncoder(window=28, features=6)


def test_ldm_generation_is_causal_in_audio() -> None:
    """Frame t depends on audio windows 0..t only (prior LSTM and autoregression run forward)."""
    model = tiny("ldm").eval()
    # The authors' N(0, 0.02) initialisation leaves the audio path's effect on the frames below
    # float32 resolution before training; PyTorch's default initialisation of the audio encoder
    # and the prior makes it visible (causality is a property of the computation, not of weights).
    for net in (model.audio_encoder, model.prior):
        for m in net.modules():
            if m is not net and hasattr(m, "reset_parameters"):
                m.reset_parameters()
    batch = make_batch()
    audio2 = batch["audio"].clone()
    audio2[:, 2:] += 1.0
    with torch.no_grad():
        a = model.generate(batch["identity"], batch["audio"], 1, torch.Generator().manual_seed(0))
        b = model.generate(batch["identity"], audio2, 1, torch.Generator().manual_seed(0))
    assert torch.equal(a[:, :, :2], b[:, :, :2])
    assert not torch.equal(a[:, :, 2:], b[:, :, 2:])


def test_ldm_loss_terms() -> None:
    """loss = sum_t MSE_t + beta * sum_t KL_t, with mse/kl reported per frame."""
    model = tiny("ldm").train()
    batch = make_batch()
    terms = model.loss(batch, generator=torch.Generator().manual_seed(0))
    expected = T * terms["mse"] + model.config.beta * T * terms["kl"]
    torch.testing.assert_close(terms["loss"].detach(), expected)
    assert terms["kl"] > 0
    # beta weighs the KL: a larger beta changes the loss by exactly the extra KL
    big = MODELS["ldm"](OmegaConf.merge(OmegaConf.structured(model.config), {"beta": 1.0}))
    big.load_state_dict(model.state_dict())
    terms_big = big.train().loss(batch, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(terms_big["kl"], terms["kl"])
    torch.testing.assert_close(terms_big["loss"].detach(), T * terms["mse"] + T * terms["kl"])
