"""davs: talking faces from an adversarially disentangled audio-visual representation
(Zhou, Liu, Liu, Luo, Wang, AAAI 2019).

Batch (identity, frames, audio, word, speaker) -> **DAVS** -> generated frames; selected by
``model.name: davs``. The method, the authors' code, our choices and the switch of every
difference are in ``docs/methods.md`` (its davs fidelity table); in short:

- a person-identity encoder (PID, :class:`~talking_faces.nn.lightcnn.IdentityEncoder`, widths per
  block ``pid_stage_widths``) over a face, a speech-content (word-ID, WID) encoder over each audio
  window (:class:`~talking_faces.nn.speech.SpeechEncoder`, ``audio_subsample``) and one over each
  video frame (the lip region, :class:`~talking_faces.nn.lipread.LipEncoder`, or the authors'
  FAN-hourglass trunk), and a decoder from ``[PID, WID]`` with the PID map at an eighth of the size
  as skip (:class:`~talking_faces.nn.skip_decoder.SkipDecoder`; ``upsample_align_corners``);
- sampling of a training window of ``data.num_frames`` frames: ``seq_frames`` WID frames every
  ``frame_stride`` frames (the authors: 12 at stride 2), ``gen_frames`` consecutive ones of them
  decoded (6), and ``pid_word_frames`` consecutive frames for the PID->word discriminator (20;
  None: the WID frames); ``aug_crop_margin`` / ``aug_flip`` shift and mirror each sample's frames
  and identity (the authors' random 256 crop of 260 px and horizontal flip);
- associative training: one word classifier over ``seq_frames`` WID codes shared by audio and video
  (``w_word``), a contrastive loss between L2-normalised audio and video WID sequences (margin 1,
  ``w_contrastive``; the video side detached as in the authors' code), and a modality
  discriminator on WID that the encoders fool (``w_modality``);
- adversarial disentanglement: a discriminator predicts the word from PID maps and the PID encoder
  is pushed to its uniform output (MSE of the softmax to uniform, ``w_pid_word``, 1e6 in the
  authors' code); the same in the paper's second direction, missing from the released code: a
  discriminator predicts the speaker from WID codes and the WID encoders are pushed to its uniform
  output (``w_wid_speaker``);
- generation: the decoded frames from audio WID and from video WID; L1 on the full frame
  (``w_l1``) and on the mouth box (``w_mouth``), pixels scaled by ``pixel_scale`` (255 in the
  authors' code) for both; an L1 between consecutive audio-driven frames outside the mouth (the
  first compared to the identity frame; ``w_temporal``); a sequence PatchGAN over the decoded
  frames with an audio-visual pair head (``w_seq_gan``, ``seq_pair_head``; BCE with the authors'
  soft labels by default). ``w_frame_gan`` adds a per-frame PatchGAN (off, as in the authors'
  defaults).

Every term has its weight; 0 removes it (and the computation it needs). Two optimizer groups:
``generator`` (encoders, decoder, word classifier, identity head) and ``discriminator`` (modality,
PID->word, WID->speaker, sequence and frame discriminators); each training step computes the
networks once and makes one step of each group, in ``update_order`` (the authors: the
discriminators first, then the generator against the updated discriminators). ``init: authors``
is the authors' initialisation. The authors' training stages: ``pid_pretrain_steps`` first trains
the PID encoder alone to classify the training speakers (the paper pretrains it on a face-identity
set), then ``classify_pretrain_steps`` trains the WID side alone (word classification, the
contrastive loss in both directions, the modality game; nothing decoded), then the joint stage.

The dataclass defaults keep the model of our earlier checkpoints (they load and compute what they
did); ``experiments/model/davs.yaml`` sets the authors' choices.

``generate(identity, audio)`` is audio-driven and deterministic; ``generate_driven(identity, frames,
"video")`` takes WID from another clip's frames. The authors' test-time procedure, off by default
and recorded by ``evaluate`` when set: ``wid_scale`` (audio WID x1.5) and ``video_wid_scale``
(video WID x0.8) scale the driving WID, and ``finetune_steps`` (5) fine-tunes copies of PID
encoder and decoder on each identity image alone: L1 to it with the mouth weighted
``finetune_mouth_weight`` (0.001), times ``finetune_weight`` (4), a fresh Adam each step
(``finetune_fresh_optimizer``), from the driving clip's audio WID of step i's frame (audio-driven)
or the identity image's own video WID (video-driven). ``method_metrics`` adds word accuracy (audio
WID, video WID, fused) and audio<->video retrieval (R@1/5/10, median and mean rank, by the L2
distance of L2-normalised WID sequences) over the evaluated split.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from talking_faces.config.choices import Choice, LRSchedule, OptimizerName
from talking_faces.errors import UserError
from talking_faces.models.base import MethodEvalData, ModelConfig, TalkingFaceModule, data_field
from talking_faces.nn.discriminators import (
    PairHead,
    PatchDiscriminator,
    SequenceDiscriminator,
    init_pix2pix,
)
from talking_faces.nn.gan import GanKind, GANLoss
from talking_faces.nn.heads import CodeDiscriminator, MapSequenceClassifier, SequenceClassifier
from talking_faces.nn.lightcnn import IdentityEncoder, stage_block_widths
from talking_faces.nn.lipread import MOUTH_BOX, HourglassEncoder, LipEncoder, box_mask
from talking_faces.nn.skip_decoder import SkipDecoder
from talking_faces.nn.speech import SpeechEncoder, Subsample

if TYPE_CHECKING:
    from talking_faces.data.batch import Batch


class VideoEncoder(Choice):
    """davs' video WID trunk (a config choice): the lip encoder, or the FAN hourglass."""

    lip = "lip"
    hourglass = "hourglass"


VIDEO_ENCODERS = VideoEncoder.names()


class Init(Choice):
    """davs' initialisation (a config choice): PyTorch's defaults, or the authors' (see
    :meth:`DAVS.init_authors`)."""

    default = "default"
    authors = "authors"


class UpdateOrder(Choice):
    """Which optimizer group of davs steps first in a training step (a config choice)."""

    generator_first = "generator_first"
    discriminator_first = "discriminator_first"


#: the authors' PID encoder: output width of every block of its four stages
AUTHORS_PID_WIDTHS: list[list[int]] = [
    [32, 32, 64, 64],
    [96, 96, 128, 128, 160, 160],
    [320, 320, 320, 320],
    [256, 256],
]


@dataclass
class DAVSConfig(ModelConfig):
    """davs hyper-parameters. Sizes and loss weights default to the authors' (256 px, LRW); the
    switches of the differences default to our earlier model (so its checkpoints load as they
    were), and ``davs.yaml`` sets the authors' choices (see ``docs/methods.md``)."""

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
    #: output width of every block of the four PID stages (the authors': AUTHORS_PID_WIDTHS);
    #: None: every block at its stage's width (pid_channels)
    pid_stage_widths: list[list[int]] | None = None
    #: WID code size (audio and video)
    wid_dim: int = 256
    #: channel multiplier of the audio WID encoder's two branches
    audio_width: float = 1.0
    #: the audio WID encoder's second branch: "stride" (the authors': kernel-1 pools, unpadded last
    #: conv) or "maxpool" (max-pools, padded last conv, mean)
    audio_subsample: Subsample = Subsample.maxpool
    #: video WID encoder: "lip" (lip-region conv trunk) or "hourglass" (the authors' FAN trunk)
    video_encoder: VideoEncoder = VideoEncoder.lip
    lip_channels: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    lip_crop: int = 64
    hourglass_width: float = 1.0
    #: decoder widths and convolutions per upsampling block (log2(image_size / 4) blocks)
    decoder_channels: list[int] = field(default_factory=lambda: [512, 512, 256, 256, 128, 64])
    decoder_layers: list[int] = field(default_factory=lambda: [2, 3, 4, 4, 3, 2])
    #: bilinear upsampling of decoder and hourglass with align_corners (the authors' PyTorch 0.2
    #: upsampling behaves as True)
    upsample_align_corners: bool = False
    classifier_hidden: int = 512
    #: WID codes per word-classifier input, contrastive pair and retrieval item
    seq_frames: int = 12
    #: the WID frames are every frame_stride-th frame of the window (the authors: 2)
    frame_stride: int = 1
    #: consecutive WID frames decoded per training window (and seen by the sequence discriminator)
    gen_frames: int = 6
    #: consecutive frames of the window whose PID maps the PID->word discriminator sees (the
    #: authors: 20); None: the seq_frames WID frames. The training window (data.num_frames) is
    #: max(seq_frames * frame_stride, pid_word_frames) frames
    pid_word_frames: int | None = None
    #: training augmentation: each sample's frames and identity shifted by a random crop of the
    #: frame padded by this many pixels in all (the authors: a 256 crop of 260 px, 4), and
    #: mirrored with probability 1/2 when aug_flip (the authors: yes)
    aug_crop_margin: int = 0
    aug_flip: bool = False
    #: mouth region of the aligned frame (x0, y0, x1, y1 fractions): mouth L1, temporal L1, lips
    mouth_box: list[float] = field(default_factory=lambda: list(MOUTH_BOX))
    disc_ndf: int = 64
    disc_layers: int = 3
    #: the sequence discriminator's audio-visual pair head: "crop" (the authors') or "pooled"
    seq_pair_head: PairHead = PairHead.pooled
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
    #: then train only the WID encoders, the word classifier and the modality discriminator for
    #: this many steps (the authors' classification stage; 0: none)
    classify_pretrain_steps: int = 0
    #: "default" (PyTorch's) or "authors" (their per-layer initialisation)
    init: Init = Init.default
    #: "generator_first" or "discriminator_first" (the authors')
    update_order: UpdateOrder = UpdateOrder.generator_first
    # ---- test-time options (generation only; off by default)
    #: audio WID multiplied by this before decoding (the authors use 1.5)
    wid_scale: float = 1.0
    #: video WID multiplied by this before decoding (the authors use 0.8)
    video_wid_scale: float = 1.0
    #: fine-tune copies of PID encoder and decoder on each identity image for this many Adam
    #: steps (the authors: 5)
    finetune_steps: int = 0
    finetune_lr: float = 2.0e-4
    #: weight of the mouth box in the fine-tuning L1 (the rest 1; the authors: 0.001)
    finetune_mouth_weight: float = 0.001
    #: the fine-tuning L1's factor (the authors: 4)
    finetune_weight: float = 4.0
    #: a new Adam for every fine-tuning step, as the authors (False: one for all steps)
    finetune_fresh_optimizer: bool = True


class DAVS(TalkingFaceModule):
    """The davs model (see the module docstring)."""

    Config = DAVSConfig
    stochastic = False
    drives = ("audio", "video")
    generation_options = (
        "wid_scale",
        "video_wid_scale",
        "finetune_steps",
        "finetune_lr",
        "finetune_mouth_weight",
        "finetune_weight",
    )

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
        self.pid = IdentityEncoder(size, c.pid_channels, c.pid_blocks, c.pid_stage_widths)
        self.audio_wid = SpeechEncoder(
            window, features, c.wid_dim, c.audio_width, str(c.audio_subsample)
        )
        if c.video_encoder == "lip":
            self.video_wid: nn.Module = LipEncoder(
                c.wid_dim, c.lip_channels, c.lip_crop, c.mouth_box
            )
        else:
            self.video_wid = HourglassEncoder(
                size, c.wid_dim, c.hourglass_width, align_corners=c.upsample_align_corners
            )
        pid_dim = c.pid_channels[-1]
        self.decoder = SkipDecoder(
            size,
            pid_dim + c.wid_dim,
            c.pid_channels[2],
            c.decoder_channels,
            c.decoder_layers,
            align_corners=c.upsample_align_corners,
        )
        self.word_classifier = (
            SequenceClassifier(c.seq_frames, c.wid_dim, words, c.classifier_hidden)
            if words and c.w_word > 0
            else None
        )
        self.identity_head = (
            nn.Linear(pid_dim, speakers) if c.pid_pretrain_steps > 0 and speakers >= 2 else None
        )
        self._build_discriminators(c, size, window, features, words, speakers)
        self.gan = GANLoss(c.gan_loss, soft_labels=c.soft_labels)
        self.hard_gan = GANLoss("bce")  # the modality game: hard labels, as the authors
        self.register_buffer("mouth", box_mask(size, size, c.mouth_box), persistent=False)
        if c.init == "authors":
            self.init_authors()

    def _build_discriminators(
        self, c: DAVSConfig, size: int, window: int, features: int, words: int, speakers: int
    ) -> None:
        self.modality_disc = CodeDiscriminator(c.wid_dim, 1) if c.w_modality > 0 else None
        self.pid_word_disc = (
            MapSequenceClassifier(
                c.pid_channels[1],
                size // 4,
                c.pid_word_frames or c.seq_frames,
                words,
                dropout=c.pid_word_dropout,
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
                pair_head=str(c.seq_pair_head),
                image_size=size,
                audio_window=window,
                audio_features=features,
            )
            if c.w_seq_gan > 0
            else None
        )
        self.frame_disc = (
            PatchDiscriminator(3, c.disc_ndf, c.disc_layers) if c.w_frame_gan > 0 else None
        )

    @torch.no_grad()
    def init_authors(self) -> None:
        """The authors' initialisation: PyTorch 0.2's defaults where they set nothing (batch-norm
        scales U(0, 1); convolutions and linear layers as PyTorch's today), the PID encoder's
        per-layer normal (:meth:`IdentityEncoder.init_authors`), Kaiming normal (fan-out) in the
        decoder's conv blocks, and pix2pix's N(0, 0.02) in the PID->word, sequence and frame
        discriminators (:func:`~talking_faces.nn.discriminators.init_pix2pix`). The heads' N(0,
        1e-4) layers (word classifier, PID->word output) are set by the heads themselves."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and m.affine:
                nn.init.uniform_(m.weight, 0.0, 1.0)
                nn.init.zeros_(m.bias)
        self.pid.init_authors()
        for m in self.decoder.blocks.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for disc in (self.pid_word_disc, self.seq_disc, self.frame_disc):
            if disc is not None:
                init_pix2pix(disc)

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
        if c.frame_stride < 1 or (c.pid_word_frames is not None and c.pid_word_frames < 1):
            raise UserError(
                f"model.frame_stride={c.frame_stride} and model.pid_word_frames="
                f"{c.pid_word_frames} must be at least 1 (pid_word_frames may be null)"
            )
        if c.aug_crop_margin < 0:
            raise UserError(f"model.aug_crop_margin must be >= 0, got {c.aug_crop_margin}")
        if data_field(c.image_size, "image_size") % 32:
            raise UserError(f"davs needs model.image_size a multiple of 32, got {c.image_size}")
        try:
            stage_block_widths(c.pid_channels, c.pid_blocks, c.pid_stage_widths)
        except ValueError as e:
            raise UserError(f"model.pid_stage_widths: {e}") from None

    @property
    def window_frames(self) -> int:
        """Frames of a training window (``data.num_frames``): the WID frames' span (one more
        stride to draw its phase) or the PID->word discriminator's frames, whichever is longer."""
        c = self.config
        return max(c.seq_frames * c.frame_stride, c.pid_word_frames or 0)

    def _window_error(self, frames: int, where: str) -> str:
        c = self.config
        pid = f", model.pid_word_frames={c.pid_word_frames}" if c.pid_word_frames else ""
        return (
            f"davs trains on windows of {self.window_frames} frames (model.seq_frames="
            f"{c.seq_frames} x model.frame_stride={c.frame_stride}{pid}) but {where} has {frames}; "
            f"set data.num_frames={self.window_frames} (or the model's frame settings)"
        )

    def check_run_config(self, cfg: Any) -> None:
        frames = cfg.data.num_frames
        if frames != self.window_frames:
            raise UserError(self._window_error(frames, "data.num_frames"))

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

    @staticmethod
    def _draw(high: int, generator: torch.Generator | None, n: int = 1) -> list[int]:
        """``n`` integers uniform in ``[0, high)`` from ``generator`` (none drawn when
        ``high`` is 1: the answer is 0)."""
        if high <= 1:
            return [0] * n
        device = generator.device if generator is not None else "cpu"
        return torch.randint(0, high, (n,), generator=generator, device=device).tolist()

    def _sample(
        self, t: int, generator: torch.Generator | None
    ) -> tuple[Tensor, slice, slice | None]:
        """Of a ``t``-frame window: the WID frames (``seq_frames`` indices ``o + stride * k``,
        ``o`` uniform), the decoded ``gen_frames`` of them (a random contiguous part, as a slice
        of the WID frames) and the PID->word discriminator's consecutive frames (None: the WID
        frames)."""
        c = self.config
        span = (c.seq_frames - 1) * c.frame_stride + 1
        (o,) = self._draw(t - span + 1, generator)
        wid = o + c.frame_stride * torch.arange(c.seq_frames)
        n = min(c.gen_frames, c.seq_frames)
        (start,) = self._draw(c.seq_frames - n + 1, generator)
        pid = None
        if c.pid_word_frames:
            (p,) = self._draw(t - c.pid_word_frames + 1, generator)
            pid = slice(p, p + c.pid_word_frames)
        return wid, slice(start, start + n), pid

    def _augment(
        self, frames: Tensor, identity: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Each sample's frames and identity shifted by one random crop of the frame padded
        (edge pixels repeated) by ``aug_crop_margin`` pixels in all, the padding split evenly so
        that the centre crop is the frame, and mirrored left-right with probability 1/2 when
        ``aug_flip`` (the authors: one crop and flip per clip, identity frame included)."""
        c = self.config
        m = c.aug_crop_margin
        if m <= 0 and not c.aug_flip:
            return frames, identity
        b, t = frames.shape[:2]
        h, w = frames.shape[-2:]
        ys, xs = self._draw(m + 1, generator, b), self._draw(m + 1, generator, b)
        flips = self._draw(2, generator, b) if c.aug_flip else [0] * b
        lo = m // 2
        out = []
        for i in range(b):
            x = torch.cat([frames[i], identity[i, None]])
            if m > 0:
                x = F.pad(x, (lo, m - lo, lo, m - lo), mode="replicate")
                x = x[..., ys[i] : ys[i] + h, xs[i] : xs[i] + w]
            out.append(x.flip(-1) if flips[i] else x)
        both = torch.stack(out)
        return both[:, :t], both[:, t]

    def forward_train(
        self, batch: Batch, generator: torch.Generator | None = None
    ) -> dict[str, Any]:
        """Everything the generator and discriminator losses need, on one batch: the sampled
        and augmented frames (``real``: the decoded frames' targets, ``audio``: their windows,
        ``identity``), the codes, the generated frames and the PID maps."""
        frames, identity, audio = batch["frames"], batch["identity"], batch["audio"]
        b, t = frames.shape[:2]
        if t != self.window_frames:
            raise UserError(self._window_error(t, "the batch"))
        gen = self.noise_generator(generator)
        frames, identity = self._augment(frames, identity, gen)
        wid_index, win, pid_frames = self._sample(t, gen)
        seq_frames, seq_audio = frames[:, wid_index], audio[:, wid_index]
        pid, skip = self.encode_identity(identity)
        wid_a = self.audio_codes(seq_audio)
        wid_v = self.video_codes(seq_frames)
        out: dict[str, Any] = {"pid": pid, "wid_a": wid_a, "wid_v": wid_v, "window": win}
        out.update(wid_index=wid_index, pid_frames=pid_frames, identity=identity)
        out.update(real=seq_frames[:, win], audio=seq_audio[:, win])
        out["fake_a"] = self.decode(pid, skip, wid_a[:, win])
        if self.config.video_driven:
            out["fake_v"] = self.decode(pid, skip, wid_v[:, win])
        if self.pid_word_disc is not None:
            seen = frames[:, pid_frames] if pid_frames is not None else seq_frames
            _, maps = self.pid(seen.flatten(0, 1))
            out["pid_maps"] = maps[0].view(b, seen.shape[1], *maps[0].shape[1:])
        return out

    def _gan_batch(self, fw: Mapping[str, Any], detach: bool) -> tuple[Tensor, Tensor, Tensor]:
        """The GANs' batches, as the authors form them: the audio- and video-driven fakes in one
        batch (``kB,F,3,H,W``), their audio windows and the real frames repeated to match (the
        same losses as one pass per fake, with the fakes sharing the batch-norm statistics)."""
        fakes = [fw["fake_a"]] + ([fw["fake_v"]] if self.config.video_driven else [])
        fake = torch.cat(fakes)
        k = len(fakes)
        audio, real = fw["audio"], fw["real"]
        reps = (k,) + (1,) * (real.dim() - 1)
        audio_reps = (k,) + (1,) * (audio.dim() - 1)
        fake = fake.detach() if detach else fake
        return fake, audio.repeat(audio_reps), real.repeat(reps)

    def generator_terms(
        self, batch: Batch, fw: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The generator group's loss terms (``loss`` their weighted sum)."""
        c = self.config
        real, identity = fw["real"], fw["identity"]
        terms: dict[str, Tensor] = {}
        total = real.new_zeros((), dtype=torch.float32)

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
        fake, fake_audio, _ = self._gan_batch(fw, detach=False)
        if self.seq_disc is not None:
            add("seq_gan", c.w_seq_gan, self.gan.generator(self.seq_disc(fake, fake_audio)))
        if self.frame_disc is not None:
            adv = self.gan.generator(self.frame_disc(fake.flatten(0, 1)))
            add("frame_gan", c.w_frame_gan, adv)
        terms["loss"] = total
        return terms

    def discriminator_terms(
        self, batch: Batch, fw: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The discriminator group's loss terms on detached generator outputs."""
        c = self.config
        gen = self.noise_generator(generator)
        real = fw["real"]
        terms: dict[str, Tensor] = {}
        total = real.new_zeros((), dtype=torch.float32)
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
        fake, fake_audio, reals = self._gan_batch(fw, detach=True)
        if self.seq_disc is not None:
            real_logits = self.seq_disc(reals, fake_audio)
            d = self.gan.discriminator(real_logits, self.seq_disc(fake, fake_audio), gen)
            terms["seq_gan"] = d.detach()
            total = total + d
        if self.frame_disc is not None:
            real_logits = self.frame_disc(reals.flatten(0, 1))
            d = self.gan.discriminator(real_logits, self.frame_disc(fake.flatten(0, 1)), gen)
            terms["frame_gan"] = d.detach()
            total = total + d
        terms["loss"] = total
        return terms

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Validation loss: the weighted full-frame and mouth L1 of audio-driven generations of
        every ``frame_stride``-th frame of the window (the reconstruction part of the generator's
        objective)."""
        c = self.config
        step = c.frame_stride
        pid, skip = self.encode_identity(batch["identity"])
        fake = self.decode(pid, skip, self.audio_codes(batch["audio"][:, ::step]))
        full, mouth = self._recon(fake, batch["frames"][:, ::step])
        return {
            "loss": c.w_l1 * full + c.w_mouth * mouth,
            "l1": full.detach(),
            "mouth": mouth.detach(),
        }

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        bs = batch["frames"].shape[0]
        pid_steps = self.config.pid_pretrain_steps if self.identity_head is not None else 0
        if self.global_step < pid_steps:
            terms = self.group_step("generator", lambda: self._pretrain_terms(batch))
            self.log_terms("pretrain", terms, bs)
            return
        if self.global_step < pid_steps + self.config.classify_pretrain_steps:
            self._classify_step(batch)
            return
        store: dict[str, Any] = {}
        disc = "discriminator" in self.optimizer_groups()

        def gen_closure() -> dict[str, Tensor]:
            if "fw" not in store:
                store["fw"] = self.forward_train(batch)
            return self.generator_terms(batch, store["fw"])

        def disc_step() -> None:
            d_terms = self.group_step(
                "discriminator", lambda: self.discriminator_terms(batch, store["fw"])
            )
            self.log_terms("train_d", d_terms, bs)

        if disc and self.config.update_order == "discriminator_first":
            # the networks run once, before either step (the graph reaches every generator
            # parameter); the discriminators step on the detached outputs, then the generator
            # steps against the updated discriminators, as the authors' optimize_parameters
            store["fw"] = self.forward_train(batch)
            disc_step()
            self.log_terms("train", self.group_step("generator", gen_closure), bs)
            return
        self.log_terms("train", self.group_step("generator", gen_closure), bs)
        if disc:
            disc_step()

    def _classify_step(self, batch: Batch) -> None:
        """One step of the classification stage: the modality discriminator, then the WID
        encoders and the word classifier on word cross-entropy, the contrastive loss in both
        directions (each side pulled to the other, detached) and fooling the modality
        discriminator, with the joint stage's weights; the other networks get no gradient."""
        c = self.config
        bs = batch["frames"].shape[0]
        frames, audio = batch["frames"], batch["audio"]
        if frames.shape[1] != self.window_frames:
            raise UserError(self._window_error(frames.shape[1], "the batch"))
        gen = self.noise_generator(None)
        frames, _ = self._augment(frames, batch["identity"], gen)
        index, _, _ = self._sample(frames.shape[1], gen)
        wid_a, wid_v = self.audio_codes(audio[:, index]), self.video_codes(frames[:, index])
        disc = self.modality_disc
        if disc is not None:
            d_terms = self.group_step(
                "discriminator",
                lambda: {
                    "loss": self.hard_gan.discriminator(disc(wid_a.detach()), disc(wid_v.detach()))
                },
            )
            self.log_terms("classify_d", d_terms, bs)

        def terms() -> dict[str, Tensor]:
            out: dict[str, Tensor] = {}
            known = batch["word"] >= 0
            if self.word_classifier is not None and bool(known.any()):
                words = batch["word"][known]
                for name, wid in (("word_audio", wid_a), ("word_video", wid_v)):
                    out[name] = F.cross_entropy(self.word_classifier(wid)[known].float(), words)
            out["contrastive"] = self._contrastive(wid_a, wid_v) + self._contrastive(wid_v, wid_a)
            if disc is not None:
                fool_a = self.hard_gan.classify(disc(wid_a), real=False)
                out["modality"] = fool_a + self.hard_gan.classify(disc(wid_v), real=True)
            weights = {"contrastive": c.w_contrastive, "modality": c.w_modality}
            total = _total(out, weights, c.w_word)
            return {**{k: v.detach() for k, v in out.items()}, "loss": total}

        self.log_terms("classify", self.group_step("generator", terms), bs)

    def _pretrain_terms(self, batch: Batch) -> dict[str, Tensor]:
        head = self.identity_head
        assert head is not None  # training_step pretrains only with an identity head
        speakers = batch["speaker"]
        keep = speakers >= 0
        code, _ = self.pid(batch["frames"][:, 0])
        ce = F.cross_entropy(head(code)[keep].float(), speakers[keep])
        return {"loss": ce, "identity_ce": ce.detach()}

    # ------------------------------------------------------------------------- generation
    def _finetuned(self, identity: Tensor, wids: Tensor) -> tuple[nn.Module, nn.Module]:
        """Copies of PID encoder and decoder fine-tuned on one identity image ``1,3,H,W`` (the
        model is unchanged), the authors' test-time training: ``finetune_steps`` Adam steps
        (a fresh Adam each step when ``finetune_fresh_optimizer``) on ``finetune_weight`` times
        the L1 between the image and its reconstruction from its PID and ``wids[i]`` (``S,D``,
        taken in turn), the mouth box weighted ``finetune_mouth_weight``; batch norm on its
        running statistics (eval mode)."""
        c = self.config
        pid, dec = copy.deepcopy(self.pid).eval(), copy.deepcopy(self.decoder).eval()
        params = [*pid.parameters(), *dec.parameters()]
        for p in params:
            p.requires_grad_(True)
        weight = 1.0 - (1.0 - c.finetune_mouth_weight) * self.mouth
        opt: torch.optim.Optimizer | None = None
        with torch.enable_grad():
            for step in range(c.finetune_steps):
                if opt is None or c.finetune_fresh_optimizer:
                    opt = torch.optim.Adam(params, lr=c.finetune_lr, betas=tuple(c.betas))
                code, maps = pid(identity)
                wid = wids[step % wids.shape[0]][None, None]
                out = self.decode(code, maps[1], wid, decoder=dec)[:, 0]
                loss = c.finetune_weight * F.l1_loss(out * weight, identity * weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return pid, dec

    def _generate_from(self, identity: Tensor, wid: Tensor, tune_wids: Tensor) -> Tensor:
        """Frames ``B,1,T,3,H,W`` from ``identity`` and the (scaled) driving WID ``B,T,D``; with
        ``finetune_steps``, each identity fine-tunes its own copies on ``tune_wids[i]``."""
        if self.config.finetune_steps <= 0:
            code, maps = self.pid(identity)
            return self.decode(code, maps[1], wid)[:, None]
        outs = []
        for i in range(identity.shape[0]):
            pid_net, decoder = self._finetuned(identity[i : i + 1], tune_wids[i].detach())
            code, maps = pid_net(identity[i : i + 1])
            outs.append(self.decode(code, maps[1], wid[i : i + 1], decoder=decoder))
        return torch.cat(outs)[:, None]

    def generate(
        self,
        identity: Tensor,
        audio: Tensor,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Audio-driven frames: ``identity`` ``B,3,H,W``, ``audio`` ``B,T,W,F`` -> ``B,1,T,3,H,W``
        in [0,1] (deterministic: ``generator`` is unused). Fine-tuning, when on, uses the driving
        audio's WID of frame i at step i (the authors' ``Test_Audio_Model``)."""
        self.check_num_samples(num_samples)
        wid = self.audio_codes(audio)
        return self._generate_from(identity, wid * self.config.wid_scale, wid)

    def generate_driven(
        self,
        identity: Tensor,
        driver: Tensor,
        drive: str,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Video-driven frames: WID from ``driver`` ``B,T,3,H,W`` -> ``B,1,T,3,H,W``. Fine-tuning,
        when on, uses the identity image's own video WID (the authors' ``Test_Video_Model``)."""
        if drive != "video":
            return super().generate_driven(identity, driver, drive, num_samples, generator)
        self.check_num_samples(num_samples)
        wid = self.video_codes(driver) * self.config.video_wid_scale
        tune = self.video_wid(identity)[:, None] if self.config.finetune_steps > 0 else wid
        return self._generate_from(identity, wid, tune)

    # ------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def method_metrics(self, data: MethodEvalData) -> dict[str, Any]:
        """Word accuracy (audio, video, fused) and audio<->video retrieval over every
        non-overlapping window of ``seq_frames * frame_stride`` frames of the split's clips, each
        seen through its ``seq_frames`` WID frames (every ``frame_stride``-th from the first, as
        in training; the word of a window: the one spoken at its centre frame)."""
        c = self.config
        span, step = c.seq_frames * c.frame_stride, c.frame_stride
        audio_seqs, video_seqs, words = [], [], []
        logits_a, logits_v = [], []
        for clip in data.clips():
            t = clip["frames"].shape[0] // span * span
            if t == 0:
                continue
            frames = clip["frames"][:t:step].view(-1, c.seq_frames, *clip["frames"].shape[1:])
            audio = clip["audio"][:t:step].view(-1, c.seq_frames, *clip["audio"].shape[1:])
            wa, wv = self.audio_codes(audio), self.video_codes(frames)
            audio_seqs.append(F.normalize(wa.flatten(1).float(), dim=1))
            video_seqs.append(F.normalize(wv.flatten(1).float(), dim=1))
            words.append(clip["words"][span // 2 : t : span])
            if self.word_classifier is not None:
                logits_a.append(self.word_classifier(wa).float())
                logits_v.append(self.word_classifier(wv).float())
        if not audio_seqs:
            return {}
        a, v, w = torch.cat(audio_seqs), torch.cat(video_seqs), torch.cat(words)
        out: dict[str, Any] = {"windows": int(a.shape[0]), "window_frames": span}
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


def _total(terms: Mapping[str, Tensor], weights: Mapping[str, float], default: float) -> Tensor:
    """The weighted sum of ``terms`` (``weights[name]``, else ``default``)."""
    total = torch.zeros((), dtype=torch.float32, device=next(iter(terms.values())).device)
    for name, value in terms.items():
        total = total + weights.get(name, default) * value
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
