"""ldm: stochastic talking faces by latent distribution matching (Yadav et al., Interspeech 2020).

Batch (identity, frames, audio) -> **LDM** -> generated frames; selected by ``model.name: ldm``.

SVG-LP (Denton and Fergus 2018) with the learned prior conditioned on audio (docs/methods.md):

- a VGG frame encoder ``E`` (:class:`~talking_faces.nn.vgg.VGGEncoder`) gives each frame a code
  ``h`` and skip maps; a decoder ``D`` mirrors it, fed skips of the reference frame only;
- an audio CNN (:class:`~talking_faces.nn.audio.AudioEncoder`) gives each frame's MFCC window a
  code ``a_t``;
- a Gaussian LSTM posterior ``q(z_t | x_t)`` over frame codes and a Gaussian LSTM prior
  ``p(z_t | a_t)`` over audio codes;
- an LSTM frame predictor ``g_t = LSTM([h_{t-1}, z_t])`` and ``x^_t = D(g_t, skips(x_ref))``.

Training (teacher forcing): ``h_{t-1} = E(x_{t-1})``, ``z_t ~ q(.|E(x_t))``; loss
``sum_t MSE(x^_t, x_t) + beta * sum_t KL(q_t || p_t)`` with the KL of two diagonal Gaussians
computed from log-variances (the authors' code passes a standard deviation where its KL expects a
log-variance; we do not). Generation: ``z_t ~ p(.|a_t)`` and the generated frame is fed back,
``h_{t-1} = E(x^_{t-1})``.

Where our batch contract differs from the paper's loader, the choice made here:

- The reference frame ``x_ref`` is the batch's ``identity`` image; its skips go to the decoder
  and ``E(identity)`` is the first ``h_{t-1}``. ``first_frame_given`` (the paper preset's setting)
  is the authors' loop (their ``train.py``: ``train`` and ``plot0``): frame 0 of the window is the
  reference, which needs ``data.identity: first-frame`` (the identity is the window's own frame 0,
  in training, in validation and, for same-clip test pairs, in evaluation, whose identity is frame 0
  of the identity clip); the loss is over frames 1..T-1 with audio windows 1..T-1, and
  ``generate`` returns the identity image as frame 0 and predicts frames 1..T-1 from audio windows
  1..T-1 (window 0 is not read). ``first_frame_given: false`` (the tiny preset, with windows
  anywhere in the clip and ``identity: random``) predicts all T frames, ``E(identity)`` standing in
  for ``h_{-1}``: ``generate`` returns T predicted frames for T audio windows.
- MSE is the mean over pixels of each frame and batch, summed over frames; the KL is summed over
  latent dimensions, averaged over the batch and summed over frames (as in the authors' code).

The networks are the authors' (``models/vgg_128.py``, ``models/vgg_64.py``,
``models/rnn_audio.py``, ``models/lstm.py`` of
``ry85/Stochastic-Talking-Face-Generation-Using-Latent-Distribution-Matching``): at 128 px the
encoder has one conv per block and the decoder two (``encoder_layers``, ``decoder_layers``); at
64 px both are SVG's 2, 2, 3, 3. The paper preset (``experiments/model/ldm.yaml``) has their
parameter counts, 36,989,987 at 128 px (encoder 4,962,688, decoder 15,952,195, audio 13,806,976,
predictor 1,124,736, posterior and prior 571,696 each) and 36,587,363 with the 64 px networks. The
one architectural difference is in the audio CNN (an activation between its convolutions, see
:mod:`talking_faces.nn.audio`). Every convolution and linear layer of the six networks starts
from N(0, 0.02) with zero bias and batch norm from N(1, 0.02) (their ``utils.init_weights``; the
LSTM cells keep PyTorch's initialisation, as theirs do).

Batch norm, a deliberate speed choice: the authors' training step calls the encoder and the
decoder once per time step, so batch norm normalises over the 5 images of one time step (batch 5)
and updates its running statistics at every call. :meth:`LDM.loss` runs the encoder once over all
``B x (T + 1)`` frames and the decoder once over all ``B x T`` predictions (380 and 375 in the
paper preset: batch 5, 75 frames), so batch statistics are taken over the whole clip window and
the running statistics move once per step. The large convolutions then run as one batched call
instead of 2T small ones. Our generation uses the running statistics (eval mode); the authors'
sampling code leaves the encoder, decoder and audio encoder in training mode (statistics of the
batch being generated), which makes a sample depend on the other clips of its batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from talking_faces.config.choices import OptimizerName
from talking_faces.errors import UserError
from talking_faces.models.base import ModelConfig, TalkingFaceModule, data_field
from talking_faces.nn.audio import AudioEncoder
from talking_faces.nn.recurrent import LSTM, GaussianLSTM, gaussian_kl, reparameterize
from talking_faces.nn.vgg import VGGDecoder, VGGEncoder, init_weights

if TYPE_CHECKING:
    from talking_faces.data.batch import Batch


@dataclass
class LDMConfig(ModelConfig):
    """ldm hyper-parameters; defaults are the published run (128 px, z 24, beta 1e-6), except
    ``first_frame_given`` (see its comment)."""

    name: str = "ldm"
    optimizer: OptimizerName = OptimizerName.rmsprop
    lr: float = 2e-4
    #: the authors' RMSprop settings
    alpha: float = 0.9
    eps: float = 1e-8
    #: frame encoder/decoder channels per block, finest first (first log2(size)-2 used)
    channels: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 512])
    #: conv layers per encoder block (the authors' 128 px encoder: one per block)
    encoder_layers: list[int] = field(default_factory=lambda: [1, 1, 1, 1, 1])
    #: conv layers per decoder block, the output convolution counted in the finest one (the
    #: authors' 128 px decoder: two per block)
    decoder_layers: list[int] = field(default_factory=lambda: [2, 2, 2, 2, 2])
    #: frame code size (g_dim)
    code_dim: int = 128
    #: latent size per frame
    z_dim: int = 24
    #: LSTM width of posterior, prior and frame predictor
    rnn_size: int = 256
    posterior_layers: int = 1
    prior_layers: int = 1
    predictor_layers: int = 2
    #: audio CNN: four conv widths, hidden FC width, output code size
    audio_channels: list[int] = field(default_factory=lambda: [64, 128, 256, 256])
    audio_hidden: int = 2048
    audio_code_dim: int = 128
    #: batch norm between the audio convolutions (not the authors'; narrow presets need it, see
    #: talking_faces.nn.audio)
    audio_batch_norm: bool = False
    #: weight of KL(q || p) in the loss
    beta: float = 1e-6
    #: frame 0 of the window is the given reference (needs data.identity: first-frame); the loss
    #: is over frames 1..T-1 and generate returns the identity as frame 0 (the authors' loop, set
    #: by the paper preset); false: every frame is predicted from the identity (module docstring).
    #: Off by default, unlike the other fields, so that checkpoints saved before it existed keep
    #: the behaviour they were trained with
    first_frame_given: bool = False


class LDM(TalkingFaceModule):
    """The ldm model (see the module docstring)."""

    Config = LDMConfig
    stochastic = True

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c: LDMConfig = self.config
        size = data_field(c.image_size, "image_size")
        self.encoder = VGGEncoder(size, c.code_dim, c.channels, c.encoder_layers)
        self.decoder = VGGDecoder(size, c.code_dim, c.channels, c.decoder_layers)
        self.audio_encoder = AudioEncoder(
            data_field(c.audio_window, "audio_window"),
            data_field(c.audio_features, "audio_features"),
            c.audio_channels,
            c.audio_hidden,
            c.audio_code_dim,
            c.audio_batch_norm,
        )
        self.posterior = GaussianLSTM(c.code_dim, c.z_dim, c.rnn_size, c.posterior_layers)
        self.prior = GaussianLSTM(c.audio_code_dim, c.z_dim, c.rnn_size, c.prior_layers)
        self.predictor = LSTM(c.code_dim + c.z_dim, c.code_dim, c.rnn_size, c.predictor_layers)
        for module in self.networks().values():
            module.apply(init_weights)
        # NHWC convolutions: 1.2x the generated frames per CPU-second of NCHW at batch 1 (oneDNN,
        # one thread), the same training step time; the parameters keep this layout through
        # .to(device) and checkpoints
        self.encoder.to(memory_format=torch.channels_last)
        self.decoder.to(memory_format=torch.channels_last)

    def networks(self) -> dict[str, torch.nn.Module]:
        """The six networks by name (the paper preset's parameter counts of each are in the module
        docstring)."""
        return {
            "encoder": self.encoder,
            "decoder": self.decoder,
            "audio_encoder": self.audio_encoder,
            "posterior": self.posterior,
            "prior": self.prior,
            "predictor": self.predictor,
        }

    def _audio_codes(self, audio: Tensor) -> Tensor:
        """``B,T,W,F`` -> ``B,T,audio_code_dim``."""
        b, t = audio.shape[:2]
        return self.audio_encoder(audio.flatten(0, 1)).view(b, t, -1)

    def check_run_config(self, cfg: Any) -> None:
        """``first_frame_given`` needs the window's frame 0 as the identity and a frame after it."""
        if not self.config.first_frame_given:
            return
        identity = str(cfg.data.identity)
        if identity != "first-frame":
            raise UserError(
                f"model.first_frame_given is true but data.identity is {identity!r} (the "
                "reference must be the window's frame 0, as in experiments/model/ldm.yaml): set "
                "data.identity=first-frame, or model.first_frame_given=false"
            )
        frames = cfg.data.num_frames
        if frames != "clip" and int(frames) < 2:
            raise UserError(
                f"model.first_frame_given predicts frames 1..T-1: data.num_frames={frames} "
                "leaves none; use data.num_frames of 2 or more"
            )

    def _targets(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """The frames ``B,N,3,H,W`` the loss predicts and their audio windows ``B,N,W,F``:
        frames 1..T-1 with ``first_frame_given`` (frame 0 is the reference), else all T."""
        frames, audio = batch["frames"], batch["audio"]
        if not self.config.first_frame_given:
            return frames, audio
        if frames.shape[1] < 2:
            raise ValueError("first_frame_given needs windows of at least 2 frames")
        return frames[:, 1:], audio[:, 1:]

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Teacher-forced reconstruction with posterior samples.

        Returns ``loss`` (sum over the predicted frames of MSE + beta * KL), and per-frame means
        ``mse`` and ``kl`` for logging.
        """
        frames, audio = self._targets(batch)
        identity = batch["identity"]
        b, t = frames.shape[:2]
        # one encoder pass over [identity, x_0 .. x_{N-1}] for all teacher-forced inputs
        codes, skips = self.encoder(torch.cat([identity[:, None], frames], 1).flatten(0, 1))
        codes = codes.view(b, t + 1, -1)
        ref_skips = [s.view(b, t + 1, *s.shape[1:])[:, 0] for s in skips]
        h_prev, h_target = codes[:, :-1], codes[:, 1:]
        mu_q, logvar_q, _ = self.posterior(h_target)
        mu_p, logvar_p, _ = self.prior(self._audio_codes(audio))
        z = reparameterize(mu_q, logvar_q, self.noise_generator(generator))
        g, _ = self.predictor(torch.cat([h_prev, z], -1))
        pred = self.decoder(g.flatten(0, 1), [_repeat(s, t) for s in ref_skips])
        pred = pred.view(b, t, *pred.shape[1:])
        mse = F.mse_loss(pred.float(), frames.float(), reduction="none").mean(dim=(0, 2, 3, 4))
        kl = gaussian_kl(mu_q.float(), logvar_q.float(), mu_p.float(), logvar_p.float()).mean(0)
        loss = mse.sum() + self.config.beta * kl.sum()
        return {"loss": loss, "mse": mse.mean().detach(), "kl": kl.mean().detach()}

    def generate(
        self,
        identity: Tensor,
        audio: Tensor,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Autoregressive sampling with ``z_t`` from the audio prior.

        ``identity`` ``B,3,H,W`` in [0,1]; ``audio`` ``B,T,W,F``; returns ``B,K,T,3,H,W`` in
        [0,1], K = ``num_samples``. ``generator`` (on the model's device) seeds every ``z_t``.
        With ``first_frame_given`` frame 0 is ``identity`` itself and frames 1..T-1 are sampled
        from audio windows 1..T-1 (the authors' sampling loop).
        """
        self.check_num_samples(num_samples)
        b, t = audio.shape[:2]
        k = num_samples
        given = self.config.first_frame_given
        steps = audio[:, 1:] if given else audio
        out = [identity.repeat_interleave(k, 0)] if given else []
        if steps.shape[1] > 0:
            out += self._rollout(identity, steps, k, generator)
        video = torch.stack(out, 1)
        return video.view(b, k, t, *video.shape[2:])

    def _rollout(
        self, identity: Tensor, audio: Tensor, k: int, generator: torch.Generator | None
    ) -> list[Tensor]:
        """``audio.shape[1]`` frames ``B*K,3,H,W`` after ``identity`` (samples of one input are
        rows b*K .. b*K+K-1), each generated frame fed back."""
        h, skips = self.encoder(identity)
        # the reference skips are the same for every frame: their share of the decoder's
        # convolutions is computed once per clip (VGGDecoder.skip_terms), not once per frame
        terms = self.decoder.skip_terms(skips)
        mu_p, logvar_p, _ = self.prior(self._audio_codes(audio))
        h = h.repeat_interleave(k, 0)
        terms = [(w, s.repeat_interleave(k, 0)) for w, s in terms]
        z = reparameterize(
            mu_p.repeat_interleave(k, 0), logvar_p.repeat_interleave(k, 0), generator
        )
        state = None
        out = []
        n = audio.shape[1]
        for step in range(n):
            g, state = self.predictor.step(torch.cat([h, z[:, step]], -1), state)
            frame = self.decoder.step(g, terms)
            out.append(frame)
            if step + 1 < n:
                h, _ = self.encoder(frame)
        return out


def _repeat(x: Tensor, t: int) -> Tensor:
    """``N,...`` -> ``N*t,...`` with each row repeated ``t`` times in place."""
    return x[:, None].expand(x.shape[0], t, *x.shape[1:]).reshape(-1, *x.shape[1:])
