"""amie: arbitrary talking faces via attentional audio-visual coherence learning (Zhu, Huang, Li,
Zheng, He, IJCAI 2020): an asymmetric mutual-information estimator and dynamic attention.

Batch (identity, frames, audio) -> **AMIE** -> generated frames; selected by ``model.name: amie``.
No code or weights were released; ``docs/methods.md`` lists what the paper's text confirms and
each choice made here. In short:

- generator, per output frame: an identity encoder over the given face and an image encoder over
  the previous frame (both :class:`~talking_faces.nn.lightcnn.IdentityEncoder`, own weights), an
  audio encoder over the frame's MFCC window (:class:`~talking_faces.nn.speech.SpeechEncoder`), and
  davs's decoder (:class:`~talking_faces.nn.skip_decoder.SkipDecoder`) from the three codes with
  the identity map at an eighth of the size as skip. Autoregressive in ``generate()`` (the first
  "previous frame" is the identity image); in training the previous frame is the real one
  (teacher forcing), or, with ``scheduled_sampling`` p > 0, the generated one (detached) with
  probability rising linearly to p over ``scheduled_sampling_steps``.
- dynamic attention (``da``, :class:`~talking_faces.nn.attention.DynamicAttention`): the skip map is
  the identity's, blended with the previous frame's inside a lip mask (a coarse lip box on the
  first frame with rate ``da_init_rate``; refined for each following frame from the previous mask
  and the previous frame, rate ``da_rate``). ``da: false`` keeps the identity skip alone. The
  paper describes DA for training: in ``generate`` the skip is the identity's alone unless
  ``attention_at_inference`` (off by default; a test-time option of ``evaluate``); training,
  scheduled sampling included, always blends.
- losses: L1 to the real frame (``w_l1``; OUR ADDITION, not among the paper's named losses, and
  at weight 100 the dominant term; ``method_metrics`` marks each loss as the paper's or ours), a
  perceptual loss (``w_perceptual``; feature network
  ``perceptual``: ``vgg19`` from the torch hub cache, ``landmarks`` = the dataset's landmark
  expert, or ``none``), the conditional GAN loss of an audio-conditioned frame discriminator
  (:class:`~talking_faces.nn.discriminators.AudioFrameDiscriminator`, ``gan_loss``, ``w_gan``),
  and the MI term (``mi_weight``; 0 removes it and the estimator).
- AMIE (:class:`~talking_faces.nn.mutual_information.MIEstimator`): a critic T(frame, audio) on
  embeddings; positives are real frames with their own audio, negatives real frames with audio
  re-paired from another clip of the batch; bound ``mi_bound``: ``js`` (default), ``dv`` (MINE,
  moving-average gradient correction), ``infonce``. ``asymmetric: true`` trains T on real pairs
  only, then the generator maximises the updated, frozen T's estimate on its own frames (with
  their audio and re-paired audio); ``asymmetric: false`` also trains T on generated pairs. The MI
  estimates on real, shuffled and generated pairs are logged (``train/mi_real``, ...) and written
  by ``evaluate`` (``method_metrics``).

Three optimizer groups step in each training step: ``estimator`` (first when asymmetric, so the
generator sees the updated T), ``generator``, ``discriminator``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from talking_faces.config.choices import OptimizerName
from talking_faces.errors import UserError
from talking_faces.models.base import MethodEvalData, ModelConfig, TalkingFaceModule, data_field
from talking_faces.nn.attention import DynamicAttention
from talking_faces.nn.discriminators import AudioFrameDiscriminator
from talking_faces.nn.gan import GAN_KINDS, GanKind, GANLoss
from talking_faces.nn.lightcnn import IdentityEncoder
from talking_faces.nn.lipread import MOUTH_BOX
from talking_faces.nn.mutual_information import (
    BOUNDS,
    MIBound,
    MIEstimator,
    MovingAverage,
    audio_embedding,
    estimate,
    frame_embedding,
)
from talking_faces.nn.perceptual import (
    PERCEPTUAL_NETS,
    PerceptualNet,
    perceptual_loss,
    vgg19_weights_path,
)
from talking_faces.nn.skip_decoder import SkipDecoder
from talking_faces.nn.speech import SpeechEncoder

if TYPE_CHECKING:
    from talking_faces.data.batch import Batch


@dataclass
class AMIEConfig(ModelConfig):
    """amie hyper-parameters. The paper gives none of them: every default is our choice."""

    name: str = "amie"
    optimizer: OptimizerName = OptimizerName.adam
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    # ---- generator
    #: identity and previous-frame encoders: widths and MFM blocks of stem + four stages
    encoder_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 256])
    encoder_blocks: list[int] = field(default_factory=lambda: [1, 2, 2, 2, 1])
    audio_dim: int = 256
    audio_width: float = 1.0
    decoder_channels: list[int] = field(default_factory=lambda: [512, 512, 256, 256, 128, 64])
    decoder_layers: list[int] = field(default_factory=lambda: [2, 2, 2, 2, 2, 2])
    #: highest probability of feeding the generated previous frame in training (0: teacher
    #: forcing only) and the steps over which it rises linearly from 0
    scheduled_sampling: float = 0.5
    scheduled_sampling_steps: int = 1000
    # ---- dynamic attention
    da: bool = True
    da_init_rate: float = 0.5
    da_rate: float = 0.8
    da_width: int = 16
    #: the first frame's coarse lip box (fractions of the aligned frame)
    da_box: list[float] = field(default_factory=lambda: list(MOUTH_BOX))
    #: DA in generate() too (the paper describes DA in training only: off)
    attention_at_inference: bool = False
    # ---- discriminator and losses
    disc_ndf: int = 64
    disc_audio_hidden: int = 256
    #: "bce", "lsgan" or "hinge"
    gan_loss: GanKind = GanKind.hinge
    #: L1 against GAN as pix2pix weighs them (100 : 1), the GAN lowered further to 0.1 (see
    #: experiments/model/amie_tiny.yaml for what each setting measured). The L1 term is our
    #: addition: the paper names a cGAN, a perceptual and the MI loss only
    w_l1: float = 100.0
    w_gan: float = 0.1
    #: feature network of the perceptual loss: "vgg19", "landmarks" or "none"
    perceptual: PerceptualNet = PerceptualNet.landmarks
    w_perceptual: float = 1.0
    # ---- AMIE
    #: weight of the generator's MI term (0: no estimator at all)
    mi_weight: float = 1.0
    #: "js", "dv" or "infonce"
    mi_bound: MIBound = MIBound.js
    #: train the estimator on real pairs only (the paper's AMIE); false: also on generated pairs
    asymmetric: bool = True
    mi_width: int = 32
    mi_hidden: int = 256
    #: rate of MINE's moving average (mi_bound: dv)
    mi_average_rate: float = 0.01
    #: frames per window of the MI estimates ``evaluate`` writes
    mi_eval_frames: int = 8


class TrainOutputs(TypedDict):
    """What :meth:`AMIE.forward_train` gives the loss terms."""

    #: generated frames ``B,T,3,H,W``
    fake: Tensor
    #: their DA masks ``B,T,1,h,w`` (None without DA)
    masks: Tensor | None


class AMIE(TalkingFaceModule):
    """The amie model (see the module docstring)."""

    Config = AMIEConfig
    stochastic = False
    generation_options = ("attention_at_inference",)

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c: AMIEConfig = self.config
        self.automatic_optimization = False
        self._check(c)
        size = data_field(c.image_size, "image_size")
        window = data_field(c.audio_window, "audio_window")
        features = data_field(c.audio_features, "audio_features")
        self.identity_encoder = IdentityEncoder(size, c.encoder_channels, c.encoder_blocks)
        self.previous_encoder = IdentityEncoder(size, c.encoder_channels, c.encoder_blocks)
        self.audio_encoder = SpeechEncoder(window, features, c.audio_dim, c.audio_width)
        code = 2 * c.encoder_channels[-1] + c.audio_dim
        self.decoder = SkipDecoder(
            size, code, c.encoder_channels[2], c.decoder_channels, c.decoder_layers
        )
        self.attention = (
            DynamicAttention(size // 8, c.da_box, c.da_init_rate, c.da_rate, c.da_width)
            if c.da
            else None
        )
        self.discriminator = AudioFrameDiscriminator(
            size, window, features, c.disc_ndf, c.disc_audio_hidden
        )
        self.gan = GANLoss(c.gan_loss)
        if c.mi_weight > 0:
            width = c.mi_width
            self.estimator: MIEstimator | None = MIEstimator(
                frame_embedding(width),
                audio_embedding(window * features, c.mi_hidden),
                4 * width,
                c.mi_hidden,
                c.mi_hidden,
            )
            self.mi_average = MovingAverage(c.mi_average_rate)
        else:
            self.estimator = None
        # the frozen perceptual feature network: out of the module tree (neither trained nor
        # saved); loaded when fit starts (see on_fit_start)
        self._perceptual: list[nn.Module] = []

    @staticmethod
    def _check(c: AMIEConfig) -> None:
        if c.mi_bound not in BOUNDS:
            raise UserError(
                f"model.mi_bound must be one of {', '.join(BOUNDS)}, got {c.mi_bound!r}"
            )
        if c.perceptual not in PERCEPTUAL_NETS:
            raise UserError(
                f"model.perceptual must be one of {', '.join(PERCEPTUAL_NETS)}, got "
                f"{c.perceptual!r}"
            )
        if c.gan_loss not in GAN_KINDS:
            raise UserError(f"model.gan_loss must be one of {', '.join(GAN_KINDS)}")
        if data_field(c.image_size, "image_size") % 32:
            raise UserError(f"amie needs model.image_size a multiple of 32, got {c.image_size}")
        if not 0 <= c.scheduled_sampling <= 1:
            raise UserError("model.scheduled_sampling is a probability: between 0 and 1")

    def check_run_config(self, cfg: Any) -> None:
        c = self.config
        if c.w_perceptual <= 0 or c.perceptual == "none":
            return
        if c.perceptual == "vgg19" and not vgg19_weights_path().is_file():
            perceptual_loss("vgg19")  # raises the one-line missing-weights error
        if c.perceptual == "landmarks":
            root = str(cfg.data.root)
            path = Path(root) / "experts" / "landmarks.ckpt"
            if "://" in root or not path.is_file():
                perceptual_loss("landmarks", None)  # raises the error naming the command

    def on_fit_start(self) -> None:
        super().on_fit_start()
        c = self.config
        if c.w_perceptual > 0 and c.perceptual != "none" and not self._perceptual:
            expert = self._landmark_model[0] if self._landmark_model else None
            net = getattr(expert, "net", None)
            loss = perceptual_loss(c.perceptual, net)
            if loss is not None:
                self._perceptual = [loss.to(self.device)]

    # ------------------------------------------------------------------------- groups
    def optimizer_groups(self) -> dict[str, list[nn.Module]]:
        gen = [self.identity_encoder, self.previous_encoder, self.audio_encoder, self.decoder]
        if self.attention is not None:
            gen.append(self.attention)
        groups: dict[str, list[nn.Module]] = {
            "generator": gen,
            "discriminator": [self.discriminator],
        }
        if self.estimator is not None:
            groups["estimator"] = [self.estimator]
        return groups

    # ------------------------------------------------------------------------- generator
    def audio_codes(self, audio: Tensor) -> Tensor:
        """``B,T,W,F`` -> ``B,T,D``."""
        b, t = audio.shape[:2]
        return self.audio_encoder(audio.flatten(0, 1)).view(b, t, -1)

    def _frame(
        self,
        id_code: Tensor,
        id_skip: Tensor,
        prev: Tensor,
        a_code: Tensor,
        mask: Tensor | None,
        first: bool,
    ) -> Tensor:
        """One frame ``N,3,H,W`` from the identity's code and skip, the previous frame ``N,3,H,W``,
        the frame's audio code and (with DA) its mask."""
        p_code, p_maps = self.previous_encoder(prev)
        skip = id_skip
        if self.attention is not None and mask is not None:
            skip = self.attention.blend(mask, first, id_skip, p_maps[1])
        return self.decoder(torch.cat([id_code, a_code, p_code], 1), skip)

    def _teacher_forced(
        self, identity: Tensor, frames: Tensor, a_codes: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """All frames at once from the real previous frames: ``B,T,3,H,W`` (and masks)."""
        b, t = frames.shape[:2]
        id_code, id_maps = self.identity_encoder(identity)
        prev = torch.cat([identity[:, None], frames[:, :-1]], 1)
        p_code, p_maps = self.previous_encoder(prev.flatten(0, 1))
        id_skip = id_maps[1][:, None].expand(b, t, *id_maps[1].shape[1:])
        masks = None
        skip = id_skip.flatten(0, 1)
        if self.attention is not None:
            masks = self._masks(prev)
            rate = torch.full((b, t, 1, 1, 1), self.attention.rate, device=frames.device)
            rate[:, 0] = self.attention.init_rate
            a = (rate * masks).flatten(0, 1)
            skip = (1 - a) * skip + a * p_maps[1]
        code = torch.cat(
            [id_code[:, None].expand(b, t, -1).flatten(0, 1), a_codes.flatten(0, 1), p_code], 1
        )
        out = self.decoder(code, skip)
        return out.view(b, t, *out.shape[1:]), masks

    def _masks(self, prev: Tensor) -> Tensor:
        """DA masks ``B,T,1,h,w`` for the previous frames ``B,T,3,H,W`` (real or generated)."""
        attention = self.attention
        assert attention is not None  # called with DA only
        mask = attention.first(prev.shape[0])
        masks = [mask]
        for step in range(1, prev.shape[1]):
            mask = attention.refine(mask, prev[:, step])
            masks.append(mask)
        return torch.stack(masks, 1)

    def _sequential(
        self,
        identity: Tensor,
        a_codes: Tensor,
        real: Tensor | None = None,
        p_generated: float = 1.0,
        generator: torch.Generator | None = None,
        blend: bool = True,
        track: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Frames one at a time, each from the previous one: the generated frame (autoregressive),
        or in training the real one with probability ``1 - p_generated`` per clip. With DA, the
        masks are computed when ``blend`` (the skip is blended with them) or ``track`` (returned
        only)."""
        b, t = a_codes.shape[:2]
        id_code, id_maps = self.identity_encoder(identity)
        id_skip = id_maps[1]
        prev = identity
        attention = self.attention if (blend or track) else None
        mask = attention.first(b) if attention is not None else None
        out, masks = [], []
        for step in range(t):
            if step > 0 and attention is not None and mask is not None:  # mask: None without DA
                mask = attention.refine(mask, prev)
            applied = mask if blend else None
            frame = self._frame(id_code, id_skip, prev, a_codes[:, step], applied, step == 0)
            out.append(frame)
            if mask is not None:
                masks.append(mask)
            prev = frame
            if real is not None:
                device = generator.device if generator is not None else frame.device
                use_gen = torch.rand(b, generator=generator, device=device) < p_generated
                prev = torch.where(
                    use_gen.view(b, 1, 1, 1).to(frame.device), frame.detach(), real[:, step]
                )
        return torch.stack(out, 1), (torch.stack(masks, 1) if masks else None)

    def _sampling_probability(self) -> float:
        c = self.config
        if c.scheduled_sampling <= 0:
            return 0.0
        if c.scheduled_sampling_steps <= 0:
            return c.scheduled_sampling
        return c.scheduled_sampling * min(1.0, self.global_step / c.scheduled_sampling_steps)

    def generate(
        self,
        identity: Tensor,
        audio: Tensor,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Autoregressive frames: ``identity`` ``B,3,H,W``, ``audio`` ``B,T,W,F`` ->
        ``B,1,T,3,H,W`` in [0,1] (deterministic). DA blends the skip only with
        ``attention_at_inference``."""
        self.check_num_samples(num_samples)
        blend = self.config.attention_at_inference
        frames, _ = self._sequential(identity, self.audio_codes(audio), blend=blend, track=False)
        return frames[:, None]

    def generate_with_attention(
        self, identity: Tensor, audio: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """The debug path: the frames ``B,T,3,H,W`` of :meth:`generate` and the DA masks
        ``B,T,1,h,w`` refined along them (None without DA); the masks weigh the skip only with
        ``attention_at_inference``, otherwise they show what DA would weigh."""
        blend = self.config.attention_at_inference
        return self._sequential(identity, self.audio_codes(audio), blend=blend, track=True)

    def debug_panels(
        self, identity: Tensor, audio: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The DA mask of each generated frame, upsampled and laid over it in red."""
        frames, masks = self.generate_with_attention(identity, audio)
        if masks is None:
            return {}
        b, t = masks.shape[:2]
        up = F.interpolate(
            masks.flatten(0, 1), size=frames.shape[-2:], mode="bilinear", align_corners=False
        )
        up = up.view(b, t, 1, *frames.shape[-2:])
        overlay = frames * (1 - 0.6 * up)
        overlay[:, :, 0:1] = overlay[:, :, 0:1] + 0.6 * up
        return {"attention": overlay.clamp(0, 1)}

    # ------------------------------------------------------------------------- MI
    def _repair(
        self, b: int, t: int, generator: torch.Generator | None, device: torch.device | str
    ) -> Tensor:
        """Indices re-pairing each of the ``B*T`` frames with audio of another clip of the batch
        (a random other clip, a random frame of it)."""
        gdev = generator.device if generator is not None else "cpu"
        offset = torch.randint(1, max(b, 2), (1,), generator=generator, device=gdev).item() % b
        clips = (torch.arange(b) + int(offset)) % b
        times = torch.randperm(t, generator=generator, device=gdev).cpu()
        idx = (clips[:, None] * t + times[None, :]).flatten()
        return idx.to(device)

    def _mi(
        self, frames: Tensor, audio: Tensor, perm: Tensor, train_average: bool = False
    ) -> Tensor:
        """The configured bound on flattened ``N,3,H,W`` frames and ``N,W,F`` audio."""
        estimator = self.estimator
        assert estimator is not None  # called with an estimator only (mi_weight > 0)
        avg = self.mi_average if (train_average and self.config.mi_bound == "dv") else None
        return estimate(self.config.mi_bound, estimator, frames, audio, perm, avg)

    # ------------------------------------------------------------------------- losses
    def forward_train(self, batch: Batch, generator: torch.Generator | None = None) -> TrainOutputs:
        frames, identity = batch["frames"], batch["identity"]
        a_codes = self.audio_codes(batch["audio"])
        p = self._sampling_probability()
        if p > 0:
            fake, masks = self._sequential(
                identity, a_codes, frames, p, self.noise_generator(generator)
            )
        else:
            fake, masks = self._teacher_forced(identity, frames, a_codes)
        return {"fake": fake, "masks": masks}

    def generator_terms(self, batch: Batch, fw: TrainOutputs, perm: Tensor) -> dict[str, Tensor]:
        c = self.config
        real, audio = batch["frames"], batch["audio"]
        fake = fw["fake"]
        flat_fake, flat_real, flat_audio = (
            fake.flatten(0, 1),
            real.flatten(0, 1),
            audio.flatten(0, 1),
        )
        terms: dict[str, Tensor] = {}
        l1 = F.l1_loss(fake.float(), real.float())
        terms["l1"] = l1.detach()
        total = c.w_l1 * l1
        if self._perceptual and c.w_perceptual > 0:
            per = self._perceptual[0](flat_fake, flat_real)
            terms["perceptual"] = per.detach()
            total = total + c.w_perceptual * per
        if c.w_gan > 0:
            adv = self.gan.generator(self.discriminator(flat_fake, flat_audio))
            terms["gan"] = adv.detach()
            total = total + c.w_gan * adv
        if self.estimator is not None:
            mi = self._mi(flat_fake, flat_audio, perm)
            terms["mi_generated"] = mi.detach()
            total = total - c.mi_weight * mi
        terms["loss"] = total
        return terms

    def discriminator_terms(self, batch: Batch, fw: TrainOutputs) -> dict[str, Tensor]:
        real, audio = batch["frames"].flatten(0, 1), batch["audio"].flatten(0, 1)
        fake = fw["fake"].detach().flatten(0, 1)
        d = self.gan.discriminator(self.discriminator(real, audio), self.discriminator(fake, audio))
        return {"loss": d, "gan": d.detach()}

    def estimator_terms(self, batch: Batch, perm: Tensor, fake: Tensor | None) -> dict[str, Tensor]:
        real, audio = batch["frames"].flatten(0, 1), batch["audio"].flatten(0, 1)
        mi_real = self._mi(real, audio, perm, train_average=True)
        terms = {"mi_real": mi_real.detach()}
        total = -mi_real
        if fake is not None:
            mi_gen = self._mi(fake.detach().flatten(0, 1), audio, perm)
            terms["mi_generated"] = mi_gen.detach()
            total = total - mi_gen
        terms["loss"] = total
        return terms

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Validation loss: the weighted L1 (+ perceptual when loaded) of teacher-forced frames."""
        c = self.config
        fake, _ = self._teacher_forced(
            batch["identity"], batch["frames"], self.audio_codes(batch["audio"])
        )
        l1 = F.l1_loss(fake.float(), batch["frames"].float())
        total = c.w_l1 * l1
        out = {"l1": l1.detach()}
        if self._perceptual and c.w_perceptual > 0:
            per = self._perceptual[0](fake.flatten(0, 1), batch["frames"].flatten(0, 1))
            out["perceptual"] = per.detach()
            total = total + c.w_perceptual * per
        out["loss"] = total
        return out

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        c = self.config
        b, t = batch["frames"].shape[:2]
        gen = self.noise_generator(None)
        perm = self._repair(b, t, gen, batch["frames"].device)
        store: dict[str, Any] = {}
        if self.estimator is not None and c.asymmetric:
            e_terms = self.group_step("estimator", lambda: self.estimator_terms(batch, perm, None))
            self.log_terms("train_mi", e_terms, b)

        def gen_closure() -> dict[str, Tensor]:
            store["fw"] = self.forward_train(batch)
            return self.generator_terms(batch, store["fw"], perm)

        self.log_terms("train", self.group_step("generator", gen_closure), b)
        if self.estimator is not None and not c.asymmetric:
            e_terms = self.group_step(
                "estimator", lambda: self.estimator_terms(batch, perm, store["fw"]["fake"])
            )
            self.log_terms("train_mi", e_terms, b)
        d_terms = self.group_step(
            "discriminator", lambda: self.discriminator_terms(batch, store["fw"])
        )
        self.log_terms("train_d", d_terms, b)
        if self.estimator is not None:
            self.log_dict(self._mi_readings(batch, store["fw"]["fake"], perm, gen), batch_size=b)

    @torch.no_grad()
    def _mi_readings(
        self, batch: Batch, fake: Tensor, perm: Tensor, generator: torch.Generator | None
    ) -> dict[str, Tensor]:
        """The estimate on real, shuffled (positives re-paired too) and generated pairs."""
        real, audio = batch["frames"].flatten(0, 1), batch["audio"].flatten(0, 1)
        b, t = batch["frames"].shape[:2]
        other = self._repair(b, t, generator, real.device)
        return {
            "train/mi_real": self._mi(real, audio, perm),
            "train/mi_shuffled": self._mi(real, audio[other], perm),
            "train/mi_generated": self._mi(fake.flatten(0, 1), audio, perm),
        }

    # ------------------------------------------------------------------------- evaluation
    def loss_provenance(self) -> dict[str, dict[str, Any]]:
        """Each generator loss term that is on: its weight and its source, ``paper`` (the
        paper's cGAN, perceptual and MI losses) or ``ours`` (the L1 term)."""
        c = self.config
        terms = {
            "l1": (c.w_l1, "ours"),
            "gan": (c.w_gan, "paper"),
            "perceptual": (c.w_perceptual if c.perceptual != "none" else 0.0, "paper"),
            "mi": (c.mi_weight, "paper"),
        }
        return {k: {"weight": float(w), "source": src} for k, (w, src) in terms.items() if w > 0}

    @torch.no_grad()
    def method_metrics(self, data: MethodEvalData) -> dict[str, Any]:
        """The estimator's MI estimates on the split's real, shuffled and generated pairs (mean
        over windows of ``mi_eval_frames`` frames), which perceptual network trained it, whether
        DA ran in generation, and the loss terms with their weights and sources."""
        c = self.config
        out: dict[str, Any] = {
            "perceptual": c.perceptual if c.w_perceptual > 0 else "none",
            "mi_bound": c.mi_bound if self.estimator is not None else None,
            "asymmetric": c.asymmetric,
            "da": c.da,
            "attention_at_inference": c.attention_at_inference,
            "losses": self.loss_provenance(),
        }
        if self.estimator is None:
            return out
        gen = torch.Generator(device="cpu").manual_seed(data.seed)
        sums = {"mi_real": 0.0, "mi_shuffled": 0.0, "mi_generated": 0.0}
        windows = 0
        for batch in data.windows(c.mi_eval_frames):
            b, t = batch["frames"].shape[:2]
            if b < 2:
                continue
            fake = self.generate(batch["identity"], batch["audio"])[:, 0]
            perm = self._repair(b, t, gen, fake.device)
            readings = self._mi_readings(batch, fake, perm, gen)
            for key in sums:
                sums[key] += float(readings[f"train/{key}"]) * b
            windows += b
        if windows:
            out.update({k: v / windows for k, v in sums.items()})
            out["windows"] = windows
        return out
