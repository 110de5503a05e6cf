"""davs: talking faces from an adversarially disentangled audio-visual representation
(Zhou, Liu, Liu, Luo, Wang, AAAI 2019).

Batch (identity, frames, audio, word, speaker) -> **DAVS** -> generated frames; selected by
``model.name: davs``. The method, the authors' code and our choices are described in
``docs/methods.md``; in short:

- a person-identity encoder (PID, :class:`~talking_faces.nn.lightcnn.IdentityEncoder`) over a face,
  a speech-content (word-ID, WID) encoder over each audio window
  (:class:`~talking_faces.nn.speech.SpeechEncoder`) and one over each video frame (the lip region,
  :class:`~talking_faces.nn.lipread.LipEncoder`, or the authors' FAN-hourglass trunk), and a decoder
  from ``[PID, WID]`` with the PID map at an eighth of the size as skip
  (:class:`~talking_faces.nn.skip_decoder.SkipDecoder`);
- associative training: one word classifier over ``seq_frames`` WID codes shared by audio and video
  (``w_word``), a contrastive loss between L2-normalised audio and video WID sequences (margin 1,
  ``w_contrastive``; the video side detached as in the authors' code), and a modality
  discriminator on WID that the encoders fool (``w_modality``);
- adversarial disentanglement: a discriminator predicts the word from PID maps of the window's
  frames and the PID encoder is pushed to its uniform output (MSE of the softmax to uniform,
  ``w_pid_word``, 1e6 in the authors' code); the same in the paper's second direction, missing from
  the released code: a discriminator predicts the speaker from WID codes and the WID encoders are
  pushed to its uniform output (``w_wid_speaker``);
- generation: ``gen_frames`` consecutive frames of the window are decoded from audio WID and from
  video WID; L1 on the full frame (``w_l1``) and on the mouth box (``w_mouth``), pixels scaled by
  ``pixel_scale`` (255 in the authors' code) for both; an L1 between consecutive audio-driven
  frames outside the mouth (the first compared to the identity frame; ``w_temporal``); a sequence
  PatchGAN over the ``gen_frames`` frames with an audio branch (``w_seq_gan``; BCE with the
  authors' soft labels by default). ``w_frame_gan`` adds a per-frame PatchGAN (off, as in the
  authors' defaults).

Every term has its weight; 0 removes it (and the computation it needs). Two optimizer groups:
``generator`` (encoders, decoder, word classifier, identity head) and ``discriminator`` (modality,
PID->word, WID->speaker, sequence and frame discriminators); each training step makes one generator
step, then one discriminator step on the detached outputs. ``pid_pretrain_steps`` first trains the
PID encoder alone to classify the training speakers (the paper pretrains it on a face-identity
set).

``generate(identity, audio)`` is audio-driven and deterministic; ``generate_driven(identity, frames,
"video")`` takes WID from another clip's frames. Test-time options of the authors, off by default
and recorded by ``evaluate`` when set: ``wid_scale`` (they scale audio WID by 1.5) and
``finetune_steps`` (they fine-tune PID encoder and decoder for a few steps to reconstruct the
identity image from its own PID and video WID). ``method_metrics`` adds word accuracy (audio WID,
video WID, fused) and audio<->video retrieval (R@1/5/10, median and mean rank, by the L2 distance of
L2-normalised WID sequences) over the evaluated split.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from talking_faces.config.choices import Choice, LRSchedule, OptimizerName
from talking_faces.errors import UserError
from talking_faces.models.base import MethodEvalData, ModelConfig, TalkingFaceModule, data_field
from talking_faces.nn.discriminators import PatchDiscriminator, SequenceDiscriminator
from talking_faces.nn.gan import GanKind, GANLoss
from talking_faces.nn.heads import CodeDiscriminator, MapSequenceClassifier, SequenceClassifier
from talking_faces.nn.lightcnn import IdentityEncoder
from talking_faces.nn.lipread import MOUTH_BOX, HourglassEncoder, LipEncoder, box_mask
from talking_faces.nn.skip_decoder import SkipDecoder
from talking_faces.nn.speech import SpeechEncoder

if TYPE_CHECKING:
    from talking_faces.data.batch import Batch


class VideoEncoder(Choice):
    """davs' video WID trunk (a config choice): the lip encoder, or the FAN hourglass."""

    lip = "lip"
    hourglass = "hourglass"


VIDEO_ENCODERS = VideoEncoder.names()


@dataclass
class DAVSConfig(ModelConfig):
    """davs hyper-parameters; defaults are the authors' (256 px, LRW), see ``davs.yaml``."""

    name: str = "davs"
    optimizer: OptimizerName = OptimizerName.adam
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    lr_schedule: LRSchedule = LRSchedule.linear
    # ---- data-derived (fit fills them from the prepared dataset)
    #: words of the dataset (0: no word labels; the word terms are then off)
    num_words: int | None = None
    #: speakers of the dataset (fewer than 2: the WID->speaker terms are off)
    num_speakers: int | None = None
    # ---- networks
    #: PID encoder: widths and MFM blocks of the stem and four stages (the last width is PID's)
    pid_channels: list[int] = field(default_factory=lambda: [32, 64, 160, 320, 256])
    pid_blocks: list[int] = field(default_factory=lambda: [1, 4, 6, 4, 2])
    #: WID code size (audio and video)
    wid_dim: int = 256
    #: channel multiplier of the audio WID encoder's two branches
    audio_width: float = 1.0
    #: video WID encoder: "lip" (lip-region conv trunk) or "hourglass" (the authors' FAN trunk)
    video_encoder: VideoEncoder = VideoEncoder.lip
    lip_channels: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    lip_crop: int = 64
    hourglass_width: float = 1.0
    #: decoder widths and convolutions per upsampling block (log2(image_size / 4) blocks)
    decoder_channels: list[int] = field(default_factory=lambda: [512, 512, 256, 256, 128, 64])
    decoder_layers: list[int] = field(default_factory=lambda: [2, 3, 4, 4, 3, 2])
    classifier_hidden: int = 512
    #: WID codes per word-classifier input, contrastive pair and retrieval item; must equal the
    #: training window (data.num_frames)
    seq_frames: int = 12
    #: frames decoded per training window (and seen by the sequence discriminator)
    gen_frames: int = 6
    #: mouth region of the aligned frame (x0, y0, x1, y1 fractions): mouth L1, temporal L1, lips
    mouth_box: list[float] = field(default_factory=lambda: list(MOUTH_BOX))
    disc_ndf: int = 64
    disc_layers: int = 3
    #: "bce", "lsgan" or "hinge" for the sequence and frame GANs
    gan_loss: GanKind = GanKind.bce
    #: the authors' soft labels (targets 1-u / u, u ~ U(0, 0.1)) in the discriminators' GAN loss
    soft_labels: bool = True
    # ---- loss weights (the authors' code; 0 removes a term)
    pixel_scale: float = 255.0
    w_l1: float = 4.0
    w_mouth: float = 8.0
    w_temporal: float = 5.0
    #: also generate from video WID and apply the L1 terms to those frames
    video_driven: bool = True
    w_contrastive: float = 1.0
    contrastive_margin: float = 1.0
    #: contrastive loss pulls audio towards (detached) video WID only, as the authors' code
    contrastive_detach_video: bool = True
    w_word: float = 1.0
    w_modality: float = 5.0
    #: the PID encoder's pull to the PID->word discriminator's uniform output
    w_pid_word: float = 1.0e6
    #: the PID->word discriminator's own cross-entropy weight
    d_pid_word: float = 1.0
    #: the WID encoders' pull to the WID->speaker discriminator's uniform output (our choice:
    #: the authors' weight of the PID direction)
    w_wid_speaker: float = 1.0e6
    d_wid_speaker: float = 1.0
    w_seq_gan: float = 1.0
    w_frame_gan: float = 0.0
    #: dropout before the PID->word discriminator's classifier (0.5 in the authors' code)
    pid_word_dropout: float = 0.5
    #: train only PID encoder + a speaker head for this many first steps (0: none)
    pid_pretrain_steps: int = 0
    # ---- test-time options (generation only; off by default)
    #: audio WID multiplied by this before decoding (the authors use 1.5)
    wid_scale: float = 1.0
    #: fine-tune PID encoder and decoder on the identity image for this many Adam steps
    finetune_steps: int = 0
    finetune_lr: float = 1.0e-4


class DAVS(TalkingFaceModule):
    """The davs model (see the module docstring)."""

    Config = DAVSConfig
    stochastic = False
    drives = ("audio", "video")
    generation_options = ("wid_scale", "finetune_steps", "finetune_lr")

    #: 1 inside the mouth box of an ``image_size`` frame, 0 outside: ``1,1,H,W`` (a buffer)
    mouth: Tensor

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c: DAVSConfig = self.config
        self.automatic_optimization = False
        self._check(c)
        size = data_field(c.image_size, "image_size")
        window = data_field(c.audio_window, "audio_window")
        features = data_field(c.audio_features, "audio_features")
        words = int(c.num_words or 0)
        speakers = int(c.num_speakers or 0)
        self.pid = IdentityEncoder(size, c.pid_channels, c.pid_blocks)
        self.audio_wid = SpeechEncoder(window, features, c.wid_dim, c.audio_width)
        if c.video_encoder == "lip":
            self.video_wid: nn.Module = LipEncoder(
                c.wid_dim, c.lip_channels, c.lip_crop, c.mouth_box
            )
        else:
            self.video_wid = HourglassEncoder(size, c.wid_dim, c.hourglass_width)
        pid_dim = c.pid_channels[-1]
        self.decoder = SkipDecoder(
            size, pid_dim + c.wid_dim, c.pid_channels[2], c.decoder_channels, c.decoder_layers
        )
        self.word_classifier = (
            SequenceClassifier(c.seq_frames, c.wid_dim, words, c.classifier_hidden)
            if words and c.w_word > 0
            else None
        )
        self.identity_head = (
            nn.Linear(pid_dim, speakers) if c.pid_pretrain_steps > 0 and speakers >= 2 else None
        )
        # discriminators
        self.modality_disc = CodeDiscriminator(c.wid_dim, 1) if c.w_modality > 0 else None
        self.pid_word_disc = (
            MapSequenceClassifier(
                c.pid_channels[1], size // 4, c.seq_frames, words, dropout=c.pid_word_dropout
            )
            if words and c.w_pid_word > 0
            else None
        )
        self.wid_speaker_disc = (
            CodeDiscriminator(c.wid_dim, speakers)
            if speakers >= 2 and c.w_wid_speaker > 0
            else None
        )
        self.seq_disc = (
            SequenceDiscriminator(
                c.gen_frames,
                c.disc_ndf,
                c.disc_layers,
                audio_width=c.disc_ndf,
                mouth_box=c.mouth_box,
            )
            if c.w_seq_gan > 0
            else None
        )
        self.frame_disc = (
            PatchDiscriminator(3, c.disc_ndf, c.disc_layers) if c.w_frame_gan > 0 else None
        )
        self.gan = GANLoss(c.gan_loss, soft_labels=c.soft_labels)
        self.hard_gan = GANLoss("bce")  # the modality game: hard labels, as the authors
        self.register_buffer("mouth", box_mask(size, size, c.mouth_box), persistent=False)

    @staticmethod
    def _check(c: DAVSConfig) -> None:
        if c.video_encoder not in VIDEO_ENCODERS:
            raise UserError(
                f"model.video_encoder must be one of {', '.join(VIDEO_ENCODERS)}, got "
                f"{c.video_encoder!r}"
            )
        if not 1 <= c.gen_frames <= c.seq_frames:
            raise UserError(
                f"model.gen_frames={c.gen_frames} must be between 1 and model.seq_frames="
                f"{c.seq_frames}"
            )
        if data_field(c.image_size, "image_size") % 32:
            raise UserError(f"davs needs model.image_size a multiple of 32, got {c.image_size}")

    def check_run_config(self, cfg: Any) -> None:
        frames = cfg.data.num_frames
        if frames != self.config.seq_frames:
            raise UserError(
                f"davs trains on windows of model.seq_frames={self.config.seq_frames} frames but "
                f"data.num_frames={frames}; set data.num_frames={self.config.seq_frames} (or "
                "model.seq_frames)"
            )

    # ------------------------------------------------------------------------- groups
    def optimizer_groups(self) -> dict[str, list[nn.Module]]:
        gen = [self.pid, self.audio_wid, self.video_wid, self.decoder]
        gen += [m for m in (self.word_classifier, self.identity_head) if m is not None]
        disc: list[nn.Module] = [
            m
            for m in (
                self.modality_disc,
                self.pid_word_disc,
                self.wid_speaker_disc,
                self.seq_disc,
                self.frame_disc,
            )
            if m is not None
        ]
        return {"generator": gen, "discriminator": disc} if disc else {"generator": gen}

    # ------------------------------------------------------------------------- encoders
    def encode_identity(self, identity: Tensor) -> tuple[Tensor, Tensor]:
        """``B,3,H,W`` -> PID code ``B,P`` and the decoder's skip map ``B,C,H/8,W/8``."""
        code, maps = self.pid(identity)
        return code, maps[1]

    def audio_codes(self, audio: Tensor) -> Tensor:
        """``B,T,W,F`` -> audio WID ``B,T,D``."""
        b, t = audio.shape[:2]
        return self.audio_wid(audio.flatten(0, 1)).view(b, t, -1)

    def video_codes(self, frames: Tensor) -> Tensor:
        """``B,T,3,H,W`` -> video WID ``B,T,D``."""
        b, t = frames.shape[:2]
        return self.video_wid(frames.flatten(0, 1)).view(b, t, -1)

    def decode(
        self, pid: Tensor, skip: Tensor, wid: Tensor, decoder: nn.Module | None = None
    ) -> Tensor:
        """PID ``B,P`` + skip + WID ``B,T,D`` -> frames ``B,T,3,H,W``."""
        b, t = wid.shape[:2]
        dec = decoder if decoder is not None else self.decoder
        pid_t = pid[:, None].expand(b, t, pid.shape[-1]).flatten(0, 1)
        skip_t = skip[:, None].expand(b, t, *skip.shape[1:]).flatten(0, 1)
        out = dec(torch.cat([pid_t, wid.flatten(0, 1)], 1), skip_t)
        return out.view(b, t, *out.shape[1:])

    # ------------------------------------------------------------------------- losses
    def _recon(self, fake: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
        """Full-frame and mouth L1 (pixels scaled), means over all elements as the authors."""
        c = self.config
        s = c.pixel_scale
        full = F.l1_loss(fake.float() * s, real.float() * s)
        mouth = F.l1_loss(fake.float() * self.mouth * s, real.float() * self.mouth * s)
        return full, mouth

    def _temporal(self, fake: Tensor, identity: Tensor) -> Tensor:
        """Sum over frames of the L1 outside the mouth to the previous (detached) frame; the
        first frame is compared to the identity frame."""
        outside = 1.0 - self.mouth
        prev = torch.cat([identity[:, None], fake[:, :-1].detach()], 1)
        per_frame = ((fake.float() - prev.float()).abs() * outside).mean(dim=(0, 2, 3, 4))
        return per_frame.sum()

    def _contrastive(self, audio_seq: Tensor, video_seq: Tensor) -> Tensor:
        """The authors' L2 contrastive loss on L2-normalised sequences ``B,T*D``: squared
        distance of matching pairs plus squared hinge ``margin - d`` of the others, over 2B."""
        c = self.config
        a = F.normalize(audio_seq.flatten(1).float(), dim=1)
        v = F.normalize(video_seq.flatten(1).float(), dim=1)
        if c.contrastive_detach_video:
            v = v.detach()
        d = torch.cdist(v, a)
        eye = torch.eye(d.shape[0], dtype=torch.bool, device=d.device)
        neg = (c.contrastive_margin - d).clamp(min=0).masked_fill(eye, 0.0)
        return ((neg**2).sum() + (d.diagonal() ** 2).sum()) / (2 * d.shape[0])

    @staticmethod
    def _uniform(logits: Tensor) -> Tensor:
        """MSE between the softmax of ``logits`` and the uniform distribution."""
        p = logits.float().softmax(-1)
        return F.mse_loss(p, torch.full_like(p, 1.0 / p.shape[-1]))

    def _window(self, t: int, generator: torch.Generator | None) -> slice:
        """The ``gen_frames`` frames of a ``t``-frame window that are decoded in training."""
        n = min(self.config.gen_frames, t)
        device = generator.device if generator is not None else "cpu"
        start = int(torch.randint(0, t - n + 1, (1,), generator=generator, device=device))
        return slice(start, start + n)

    def forward_train(
        self, batch: Batch, generator: torch.Generator | None = None
    ) -> dict[str, Any]:
        """Everything the generator and discriminator losses need, on one batch."""
        c = self.config
        frames, identity, audio = batch["frames"], batch["identity"], batch["audio"]
        b, t = frames.shape[:2]
        if t != c.seq_frames:
            raise UserError(
                f"davs takes windows of model.seq_frames={c.seq_frames} frames, the batch has "
                f"{t}: set data.num_frames={c.seq_frames}"
            )
        pid, skip = self.encode_identity(identity)
        wid_a = self.audio_codes(audio)
        wid_v = self.video_codes(frames)
        win = self._window(t, self.noise_generator(generator))
        out: dict[str, Any] = {"pid": pid, "wid_a": wid_a, "wid_v": wid_v, "window": win}
        out["fake_a"] = self.decode(pid, skip, wid_a[:, win])
        if c.video_driven:
            out["fake_v"] = self.decode(pid, skip, wid_v[:, win])
        if self.pid_word_disc is not None:
            _, maps = self.pid(frames.flatten(0, 1))
            out["pid_maps"] = maps[0].view(b, t, *maps[0].shape[1:])
        return out

    def generator_terms(
        self, batch: Batch, fw: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The generator group's loss terms (``loss`` their weighted sum)."""
        c = self.config
        frames, identity, audio = batch["frames"], batch["identity"], batch["audio"]
        win = fw["window"]
        real = frames[:, win]
        terms: dict[str, Tensor] = {}
        total = frames.new_zeros((), dtype=torch.float32)

        def add(name: str, weight: float, value: Tensor) -> None:
            nonlocal total
            terms[name] = value.detach()
            total = total + weight * value

        full, mouth = self._recon(fw["fake_a"], real)
        if c.w_l1 > 0:
            add("l1_audio", c.w_l1, full)
        if c.w_mouth > 0:
            add("mouth_audio", c.w_mouth, mouth)
        if c.video_driven:
            full_v, mouth_v = self._recon(fw["fake_v"], real)
            if c.w_l1 > 0:
                add("l1_video", c.w_l1, full_v)
            if c.w_mouth > 0:
                add("mouth_video", c.w_mouth, mouth_v)
        if c.w_temporal > 0:
            add("temporal", c.w_temporal, self._temporal(fw["fake_a"], identity))
        if c.w_contrastive > 0:
            add("contrastive", c.w_contrastive, self._contrastive(fw["wid_a"], fw["wid_v"]))
        words = batch["word"]
        known = words >= 0
        if self.word_classifier is not None and bool(known.any()):
            logits_a = self.word_classifier(fw["wid_a"])
            logits_v = self.word_classifier(fw["wid_v"])
            add("word_audio", c.w_word, F.cross_entropy(logits_a[known].float(), words[known]))
            add("word_video", c.w_word, F.cross_entropy(logits_v[known].float(), words[known]))
        if self.modality_disc is not None:
            fool = self.hard_gan.classify(
                self.modality_disc(fw["wid_a"]), real=False
            ) + self.hard_gan.classify(self.modality_disc(fw["wid_v"]), real=True)
            add("modality", c.w_modality, fool)
        if self.pid_word_disc is not None:
            logits = self.pid_word_disc(fw["pid_maps"], generator=self.noise_generator(generator))
            add("pid_word_uniform", c.w_pid_word, self._uniform(logits))
        if self.wid_speaker_disc is not None:
            wid = torch.cat([fw["wid_a"], fw["wid_v"]], 1)
            add("wid_speaker_uniform", c.w_wid_speaker, self._uniform(self.wid_speaker_disc(wid)))
        fakes = [fw["fake_a"]] + ([fw["fake_v"]] if c.video_driven else [])
        if self.seq_disc is not None:
            seq_audio = audio[:, win]
            adv = _sum(self.gan.generator(self.seq_disc(f, seq_audio)) for f in fakes) / len(fakes)
            add("seq_gan", c.w_seq_gan, adv)
        if self.frame_disc is not None:
            adv = _sum(self.gan.generator(self.frame_disc(f.flatten(0, 1))) for f in fakes)
            add("frame_gan", c.w_frame_gan, adv / len(fakes))
        terms["loss"] = total
        return terms

    def discriminator_terms(
        self, batch: Batch, fw: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The discriminator group's loss terms on detached generator outputs."""
        c = self.config
        gen = self.noise_generator(generator)
        frames, audio = batch["frames"], batch["audio"]
        win = fw["window"]
        terms: dict[str, Tensor] = {}
        total = frames.new_zeros((), dtype=torch.float32)
        wid_a, wid_v = fw["wid_a"].detach(), fw["wid_v"].detach()
        if self.modality_disc is not None:
            d = self.hard_gan.discriminator(self.modality_disc(wid_a), self.modality_disc(wid_v))
            terms["modality"] = d.detach()
            total = total + d
        words = batch["word"]
        known = words >= 0
        if self.pid_word_disc is not None and bool(known.any()):
            logits = self.pid_word_disc(fw["pid_maps"].detach(), generator=gen)
            d = F.cross_entropy(logits[known].float(), words[known])
            terms["pid_word"] = d.detach()
            total = total + c.d_pid_word * d
        speakers = batch["speaker"]
        if self.wid_speaker_disc is not None and bool((speakers >= 0).any()):
            keep = speakers >= 0
            wid = torch.cat([wid_a, wid_v], 1)[keep]
            logits = self.wid_speaker_disc(wid)
            target = speakers[keep][:, None].expand(-1, wid.shape[1])
            d = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten())
            terms["wid_speaker"] = d.detach()
            total = total + c.d_wid_speaker * d
        fakes = [fw["fake_a"].detach()] + ([fw["fake_v"].detach()] if c.video_driven else [])
        real = frames[:, win]
        if self.seq_disc is not None:
            seq_audio = audio[:, win]
            real_logits = self.seq_disc(real, seq_audio)
            d = _sum(
                self.gan.discriminator(real_logits, self.seq_disc(f, seq_audio), gen) for f in fakes
            ) / len(fakes)
            terms["seq_gan"] = d.detach()
            total = total + d
        if self.frame_disc is not None:
            real_logits = self.frame_disc(real.flatten(0, 1))
            d = _sum(
                self.gan.discriminator(real_logits, self.frame_disc(f.flatten(0, 1)), gen)
                for f in fakes
            ) / len(fakes)
            terms["frame_gan"] = d.detach()
            total = total + d
        terms["loss"] = total
        return terms

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Validation loss: the weighted full-frame and mouth L1 of audio-driven generations of
        the whole window (the reconstruction part of the generator's objective)."""
        c = self.config
        pid, skip = self.encode_identity(batch["identity"])
        fake = self.decode(pid, skip, self.audio_codes(batch["audio"]))
        full, mouth = self._recon(fake, batch["frames"])
        return {
            "loss": c.w_l1 * full + c.w_mouth * mouth,
            "l1": full.detach(),
            "mouth": mouth.detach(),
        }

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        bs = batch["frames"].shape[0]
        if self.global_step < self.config.pid_pretrain_steps and self.identity_head is not None:
            terms = self.group_step("generator", lambda: self._pretrain_terms(batch))
            self.log_terms("pretrain", terms, bs)
            return
        store: dict[str, Any] = {}

        def gen_closure() -> dict[str, Tensor]:
            store["fw"] = self.forward_train(batch)
            return self.generator_terms(batch, store["fw"])

        g_terms = self.group_step("generator", gen_closure)
        self.log_terms("train", g_terms, bs)
        if "discriminator" in self.optimizer_groups():
            d_terms = self.group_step(
                "discriminator", lambda: self.discriminator_terms(batch, store["fw"])
            )
            self.log_terms("train_d", d_terms, bs)

    def _pretrain_terms(self, batch: Batch) -> dict[str, Tensor]:
        head = self.identity_head
        assert head is not None  # training_step pretrains only with an identity head
        speakers = batch["speaker"]
        keep = speakers >= 0
        code, _ = self.pid(batch["frames"][:, 0])
        ce = F.cross_entropy(head(code)[keep].float(), speakers[keep])
        return {"loss": ce, "identity_ce": ce.detach()}

    # ------------------------------------------------------------------------- generation
    def _finetuned(self, identity: Tensor) -> tuple[nn.Module, nn.Module]:
        """PID encoder and decoder fine-tuned on the identity images (copies; the model is
        unchanged): ``finetune_steps`` Adam steps reconstructing each identity image from its own
        PID and video WID."""
        c = self.config
        pid, dec = copy.deepcopy(self.pid), copy.deepcopy(self.decoder)
        opt = torch.optim.Adam([*pid.parameters(), *dec.parameters()], lr=c.finetune_lr)
        with torch.enable_grad():
            wid = self.video_wid(identity).detach()[:, None]
            for _ in range(c.finetune_steps):
                code, maps = pid(identity)
                out = self.decode(code, maps[1], wid, decoder=dec)[:, 0]
                loss = F.l1_loss(out, identity)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return pid.eval(), dec.eval()

    def _generate_from(self, identity: Tensor, wid: Tensor) -> Tensor:
        c = self.config
        pid_net, decoder = (
            self._finetuned(identity) if c.finetune_steps > 0 else (self.pid, self.decoder)
        )
        code, maps = pid_net(identity)
        return self.decode(code, maps[1], wid, decoder=decoder)[:, None]

    def generate(
        self,
        identity: Tensor,
        audio: Tensor,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Audio-driven frames: ``identity`` ``B,3,H,W``, ``audio`` ``B,T,W,F`` -> ``B,1,T,3,H,W``
        in [0,1] (deterministic: ``generator`` is unused)."""
        self.check_num_samples(num_samples)
        return self._generate_from(identity, self.audio_codes(audio) * self.config.wid_scale)

    def generate_driven(
        self,
        identity: Tensor,
        driver: Tensor,
        drive: str,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Video-driven frames: WID from ``driver`` ``B,T,3,H,W`` -> ``B,1,T,3,H,W``."""
        if drive != "video":
            return super().generate_driven(identity, driver, drive, num_samples, generator)
        self.check_num_samples(num_samples)
        return self._generate_from(identity, self.video_codes(driver))

    # ------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def method_metrics(self, data: MethodEvalData) -> dict[str, Any]:
        """Word accuracy (audio, video, fused) and audio<->video retrieval over every
        non-overlapping window of ``seq_frames`` frames of the split's clips (the word of a
        window: the one spoken at its centre frame)."""
        c = self.config
        audio_seqs, video_seqs, words = [], [], []
        logits_a, logits_v = [], []
        for clip in data.clips():
            t = clip["frames"].shape[0] // c.seq_frames * c.seq_frames
            if t == 0:
                continue
            frames = clip["frames"][:t].view(-1, c.seq_frames, *clip["frames"].shape[1:])
            audio = clip["audio"][:t].view(-1, c.seq_frames, *clip["audio"].shape[1:])
            wa, wv = self.audio_codes(audio), self.video_codes(frames)
            audio_seqs.append(F.normalize(wa.flatten(1).float(), dim=1))
            video_seqs.append(F.normalize(wv.flatten(1).float(), dim=1))
            words.append(clip["words"][c.seq_frames // 2 : t : c.seq_frames])
            if self.word_classifier is not None:
                logits_a.append(self.word_classifier(wa).float())
                logits_v.append(self.word_classifier(wv).float())
        if not audio_seqs:
            return {}
        a, v, w = torch.cat(audio_seqs), torch.cat(video_seqs), torch.cat(words)
        out: dict[str, Any] = {"windows": int(a.shape[0]), "window_frames": c.seq_frames}
        known = w >= 0
        if logits_a and bool(known.any()):
            la, lv = torch.cat(logits_a)[known], torch.cat(logits_v)[known]
            target = w[known]
            fused = (la.softmax(1) + lv.softmax(1)).argmax(1)
            out["word_accuracy"] = {
                "audio": float((la.argmax(1) == target).float().mean()),
                "video": float((lv.argmax(1) == target).float().mean()),
                "fused": float((fused == target).float().mean()),
                "windows": int(known.sum()),
                "chance": float(torch.bincount(target).max() / target.numel()),
            }
        out["retrieval"] = {
            "audio_to_video": retrieval_scores(torch.cdist(a, v)),
            "video_to_audio": retrieval_scores(torch.cdist(v, a)),
            "candidates": int(a.shape[0]),
        }
        return out


def _sum(terms: Iterable[Tensor]) -> Tensor:
    """``sum(terms)`` of one or more loss terms, typed as the tensor it is."""
    total = sum(terms)
    assert isinstance(total, Tensor)  # not sum's 0: every caller has at least one term
    return total


def retrieval_scores(distances: Tensor) -> dict[str, float]:
    """Recall at 1/5/10, median and mean rank of the matching item (the diagonal) when each row's
    candidates are sorted by ``distances`` ``N,N`` (smaller is closer; ranks start at 1).

    >>> retrieval_scores(torch.tensor([[0.0, 1.0], [2.0, 1.0]]))["r@1"]
    1.0
    """
    own = distances.diagonal()[:, None]
    ranks = (distances < own).sum(1) + 1
    n = distances.shape[0]
    scores = {f"r@{k}": float((ranks <= k).float().mean()) for k in (1, 5, 10)}
    scores["median_rank"] = float(ranks.float().median())
    scores["mean_rank"] = float(ranks.float().mean())
    scores["chance_r@1"] = 1.0 / n
    return scores
