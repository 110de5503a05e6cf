"""SyncNet expert: a SyncNet trained on a prepared dataset, used to score LSE-D / LSE-C.

prepared dataset (frames + waveform) -> TalkingFaceDataModule (windows of T frames)
-> :func:`~talking_faces.metrics.sync.sync_windows` (the same 5-frame / 20-MFCC-column windows the
metric cuts) -> **SyncNetExpert** (trained) -> evaluate: LSE-D / LSE-C / AV offset

The public ``syncnet_v2.model`` cannot be downloaded everywhere and the synthetic corpus is not its
domain, so the framework trains its own SyncNet on any prepared dataset. The network is the
SyncNet family (:class:`ScalableSyncNet`: the public layer layout and state-dict names, with the
channel widths, embedding size and lip input size as parameters; at ``width=1``, ``fc_hidden=512``,
``embedding_dim=1024``, ``image_size=224`` it is exactly the public network and loads
``syncnet_v2.model``). Its lip stream sees what the LSE metric will feed it: the protocol's crop
(``crop_mode``/``crop_box``) of each frame resized to ``input_size``, 0-255, in ``channel_order``.

Training (contrastive, after SyncNet's and Wav2Lip's expert recipes): from each window of
``T = data.num_frames`` frames every 5-frame video window ``v_i`` and every 20-column MFCC window
``a_j`` (``i, j = 0..T-6``) are embedded (L2-normalised); ``v_i`` must pick ``a_i`` among the audio
windows of the same clip at offsets ``|j - i| <= max_offset`` and the aligned audio windows of the
other clips in the batch (InfoNCE with a learned scale on cosine similarity), and symmetrically for
audio. Because LSE searches exactly such offsets for the minimum distance, this trains the
distance the metric reads.

Validation logs ``val/acc``: in-sync vs off-sync classification accuracy of the embedding distance
(positives ``d(v_i, a_i)``; negatives ``d(v_i, a_j)`` with ``|j - i| >= min_negative_shift`` in the
same clip, and ``d(v_i, a'_i)`` with another clip's audio), balanced over the two classes, at the
threshold that is best on the validation windows; ``val/offset_acc``: the share of validation clips
whose LSE AV offset (``vshift = max_offset``) is 0.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from talking_faces.experts.base import ExpertConfig, ExpertModule
from talking_faces.metrics.sync import (
    CHANNEL_ORDERS,
    MFCC_PER_FRAME,
    MODES,
    WINDOW_MFCC,
    ChannelOrder,
    LSEMode,
    _frames_to_syncnet,
    lse_from_distances,
    num_sync_windows,
    sync_distances,
    syncnet_mfcc,
)

if TYPE_CHECKING:
    from talking_faces.data.batch import Batch

# public SyncNet widths (SyncNetModel.py), scaled by ``width``
_AUDIO_CHANNELS = (64, 192, 384, 256, 256, 512)
_LIP_CHANNELS = (96, 256, 256, 256, 256, 512)
_PUBLIC_LAST_LIP_KERNEL = 6
#: lower-centre square of an aligned face crop, as fractions (x0, y0, x1, y1)
DEFAULT_CROP_BOX = (0.25, 0.5, 0.75, 1.0)


def _block(conv: nn.Module, channels: int, inplace: bool = True) -> list[nn.Module]:
    norm = nn.BatchNorm3d(channels) if isinstance(conv, nn.Conv3d) else nn.BatchNorm2d(channels)
    return [conv, norm, nn.ReLU(inplace=inplace)]


class ScalableSyncNet(nn.Module):
    """SyncNet with the public layer layout and names, and configurable size.

    Args:
        width: multiplier of every convolution's channels (1.0 = public).
        embedding_dim: output size (``num_layers_in_fc_layers``, 1024 public).
        fc_hidden: width of the first FC layer of each head (512 public).
        image_size: lip-stream input height and width (224 public; at least 56).
        normalize: L2-normalise the embeddings (experts train on cosine similarity; the
            public network does not normalise).
        lift: with ``normalize``, append this constant as one more coordinate. Distances
            between embeddings do not change, but the zero rows that LSE pads the audio sequence
            with are then ``sqrt(1 + lift**2)`` away, farther than any real pair when
            ``lift > sqrt(3)``, as they are for the public network (whose embeddings are long):
            without it a padded row (distance 1) could beat a poorly matching real one.

    ``forward_lip``: ``B,3,5,H,W`` float 0-255 -> ``B,D``; ``forward_aud``: ``B,1,13,20`` MFCC
    -> ``B,D``: the interface :func:`talking_faces.metrics.sync.lip_sync_errors` calls.

    >>> net = ScalableSyncNet(width=0.25, embedding_dim=64, fc_hidden=64, image_size=64).eval()
    >>> net.forward_lip(torch.zeros(2, 3, 5, 64, 64)).shape
    torch.Size([2, 64])
    >>> net.forward_aud(torch.zeros(2, 1, 13, 20)).shape
    torch.Size([2, 64])
    """

    def __init__(
        self,
        width: float = 1.0,
        embedding_dim: int = 1024,
        fc_hidden: int = 512,
        image_size: int = 224,
        normalize: bool = False,
        lift: float = 0.0,
    ) -> None:
        super().__init__()
        self.image_size = int(image_size)
        self.normalize = bool(normalize)
        self.lift = float(lift) if normalize else 0.0
        self.embedding_dim = int(embedding_dim) + (1 if self.lift else 0)
        a = [max(4, round(c * width)) for c in _AUDIO_CHANNELS]
        v = [max(4, round(c * width)) for c in _LIP_CHANNELS]

        aud: list[nn.Module] = []
        aud += _block(nn.Conv2d(1, a[0], 3, padding=1), a[0])
        aud.append(nn.MaxPool2d(kernel_size=1, stride=1))  # a no-op kept for the public indices
        aud += _block(nn.Conv2d(a[0], a[1], 3, padding=1), a[1])
        aud.append(nn.MaxPool2d(kernel_size=3, stride=(1, 2)))
        aud += _block(nn.Conv2d(a[1], a[2], 3, padding=1), a[2])
        aud += _block(nn.Conv2d(a[2], a[3], 3, padding=1), a[3])
        aud += _block(nn.Conv2d(a[3], a[4], 3, padding=1), a[4])
        aud.append(nn.MaxPool2d(kernel_size=3, stride=2))
        aud += _block(nn.Conv2d(a[4], a[5], kernel_size=(5, 4)), a[5], inplace=False)
        self.netcnnaud = nn.Sequential(*aud)
        self.netfcaud = self._head(a[5], fc_hidden, embedding_dim)

        lip: list[nn.Module] = []
        lip += _block(nn.Conv3d(3, v[0], (5, 7, 7), stride=(1, 2, 2)), v[0])
        lip.append(nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)))
        lip += _block(nn.Conv3d(v[0], v[1], (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), v[1])
        lip.append(nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
        lip += _block(nn.Conv3d(v[1], v[2], (1, 3, 3), padding=(0, 1, 1)), v[2])
        lip += _block(nn.Conv3d(v[2], v[3], (1, 3, 3), padding=(0, 1, 1)), v[3])
        lip += _block(nn.Conv3d(v[3], v[4], (1, 3, 3), padding=(0, 1, 1)), v[4])
        lip.append(nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)))
        spatial = self._spatial_size(lip, self.image_size)
        kernel = min(_PUBLIC_LAST_LIP_KERNEL, spatial)
        lip += _block(nn.Conv3d(v[4], v[5], (1, kernel, kernel)), v[5])
        self.netcnnlip = nn.Sequential(*lip)
        side = spatial - kernel + 1
        self.netfclip = self._head(v[5] * side * side, fc_hidden, embedding_dim)

    @staticmethod
    def _head(cin: int, hidden: int, out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(cin, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out)
        )

    @staticmethod
    def _spatial_size(layers: list[nn.Module], image_size: int) -> int:
        probe = copy.deepcopy(nn.Sequential(*layers)).to("meta").eval()
        try:
            out = probe(torch.empty(1, 3, 5, image_size, image_size, device="meta"))
        except RuntimeError as err:
            raise ValueError(f"SyncNet input size {image_size} is too small (at least 56)") from err
        return int(out.shape[-1])

    def _out(self, x: Tensor) -> Tensor:
        if not self.normalize:
            return x
        x = F.normalize(x, dim=-1)
        if self.lift:
            x = torch.cat([x, x.new_full((*x.shape[:-1], 1), self.lift)], dim=-1)
        return x

    def forward_aud(self, x: Tensor) -> Tensor:
        """``B,1,13,20`` MFCC windows -> ``B,D`` audio embeddings."""
        return self._out(self.netfcaud(self.netcnnaud(x).flatten(1)))

    def forward_lip(self, x: Tensor) -> Tensor:
        """``B,3,5,H,W`` frame windows (0-255) -> ``B,D`` video embeddings."""
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"SyncNet expects {self.image_size}x{self.image_size} frames, got "
                f"{tuple(x.shape[-2:])}"
            )
        return self._out(self.netfclip(self.netcnnlip(x).flatten(1)))

    def forward_lip_clip(self, x: Tensor) -> Tensor:
        """``B,3,T,H,W`` whole clips (0-255) -> ``B,T-4,D``: the embedding of every 5-frame window.

        Equal to ``forward_lip`` on each window ``x[:, :, i:i+5]`` (only the first convolution
        spans time, with kernel 5 and no padding), without materialising the windows.
        """
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"SyncNet expects {self.image_size}x{self.image_size} frames, got "
                f"{tuple(x.shape[-2:])}"
            )
        f = self.netcnnlip(x)  # B,C,T-4,h,w
        b, n = f.shape[0], f.shape[2]
        f = f.transpose(1, 2).reshape(b * n, -1)
        return self._out(self.netfclip(f)).view(b, n, -1)

    def forward(self, video: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        """``(B,3,5,H,W), (B,1,13,20)`` -> ``(B,D) video, (B,D) audio`` embeddings."""
        return self.forward_lip(video), self.forward_aud(audio)


@dataclass
class SyncNetExpertConfig(ExpertConfig):
    """Hyper-parameters of the SyncNet expert (``image_size`` is the dataset's crop size)."""

    name: str = "syncnet"
    lr: float = 1e-3
    #: SyncNet lip-stream input size (the crop is resized to it)
    input_size: int = 64
    #: "crop" (``crop_box`` of each aligned frame) or "full" (whole frame), as in sync_windows
    crop_mode: LSEMode = LSEMode.crop
    #: (x0, y0, x1, y1) as fractions of the frame (as the protocol's ``lse_crop_box``); None:
    #: the lower-centre square (0.25, 0.5, 0.75, 1.0)
    crop_box: list[float] | None = None
    #: channel order of the lip input: "bgr" (as the public weights) or "rgb"
    channel_order: ChannelOrder = ChannelOrder.bgr
    #: channel multiplier of the public layout
    width: float = 0.25
    embedding_dim: int = 128
    fc_hidden: int = 128
    #: largest audio offset (frames) among the same-clip candidates of the contrastive loss
    max_offset: int = 8
    #: smallest |offset| counted as off-sync in val/acc
    min_negative_shift: int = 3
    #: initial scale of the cosine similarities (learned)
    init_logit_scale: float = 10.0
    #: constant extra coordinate of the unit embeddings (see ScalableSyncNet): keeps LSE's zero
    #: padding rows farther than any real pair
    lift: float = 2.0
    #: training-time jitter, per clip: crop box shifted by up to ``crop_jitter`` of its size,
    #: brightness/contrast, and a 3x3 blur on a third of the clips (generated frames are soft)
    augment: bool = True
    crop_jitter: float = 0.06


class SyncNetExpert(ExpertModule):
    """Trains :class:`ScalableSyncNet` to tell in-sync from shifted or mismatched audio.

    ``self.net`` is what the LSE metric runs; :meth:`lse_settings` gives the ``mode``,
    ``crop_box`` and ``channel_order`` it was trained with.
    """

    Config: ClassVar[type] = SyncNetExpertConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        if c.crop_mode not in MODES:
            raise ValueError(f"crop_mode must be one of {MODES}, got {c.crop_mode!r}")
        if c.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}")
        self.net = ScalableSyncNet(
            width=c.width,
            embedding_dim=c.embedding_dim,
            fc_hidden=c.fc_hidden,
            image_size=c.input_size,
            normalize=True,
            lift=c.lift,
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(c.init_logit_scale)).log())
        self._val: dict[str, list[Tensor]] = {}

    def lse_settings(self) -> dict[str, Any]:
        """The protocol fields this expert was trained for: ``lse_mode``, ``lse_crop_box``
        (fractions, None in full mode) and ``lse_channel_order``."""
        c = self.config
        box = None
        if c.crop_mode == "crop":
            box = [float(v) for v in (c.crop_box or DEFAULT_CROP_BOX)]
        return {"lse_mode": c.crop_mode, "lse_crop_box": box, "lse_channel_order": c.channel_order}

    def crop_box_pixels(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """The crop box in pixels of ``height`` x ``width`` frames, rounded as the metric suite
        rounds it."""
        box = self.lse_settings()["lse_crop_box"]
        if box is None:
            return None
        x0, y0, x1, y1 = box
        return (round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height))

    # ----------------------------------------------------------------------------- windows
    def inputs(self, batch: Batch, augment: bool = False) -> tuple[Tensor, Tensor]:
        """Batch -> lip clips ``B,3,T,s,s`` (0-255) and MFCC windows ``B,N,1,13,20``.

        Frames go through the LSE metric's own transform (crop, 8-bit, resize, channel order:
        ``_frames_to_syncnet``, what ``sync_windows`` applies), cropped first, which gives the same
        numbers as cropping inside it. The 5-frame windows are not unfolded here:
        :meth:`ScalableSyncNet.forward_lip_clip` runs the lip stream over whole clips. With
        ``augment`` each clip gets its own crop jitter, colour change and maybe blur.
        """
        c = self.config
        h, w = batch["frames"].shape[-2:]
        box = self.crop_box_pixels(h, w)
        clips, audio = [], []
        for frames, wave in zip(batch["frames"], batch["waveform"], strict=True):
            clip_box = box
            if augment and box is not None:
                clip_box = self._jitter_box(box, h, w)
            if clip_box is not None:
                x0, y0, x1, y1 = clip_box
                frames = frames[..., y0:y1, x0:x1]
            if augment and torch.rand(()) < 1 / 3:
                frames = F.avg_pool2d(F.pad(frames, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
            x = _frames_to_syncnet(frames, c.input_size, "full", None, c.channel_order)
            if augment:
                gain = 0.8 + 0.4 * torch.rand((), device=x.device)
                bias = (torch.rand((), device=x.device) - 0.5) * 40.0
                x = ((x - 128.0) * gain + 128.0 + bias).clamp(0, 255)
            n = num_sync_windows(frames.shape[0], wave.shape[-1])
            if n < 1:
                raise ValueError(f"windows of {frames.shape[0]} frames are too short for SyncNet")
            mfcc = syncnet_mfcc(wave).to(x.device)
            audio.append(mfcc.unfold(1, WINDOW_MFCC, MFCC_PER_FRAME).transpose(0, 1)[:n, None])
            clips.append(x.transpose(0, 1))  # 3,T,s,s
        return torch.stack(clips), torch.stack(audio)

    def _jitter_box(
        self, box: tuple[int, int, int, int], h: int, w: int
    ) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = box
        reach = round(self.config.crop_jitter * (x1 - x0))
        dx, dy = (int(v) for v in torch.randint(-reach, reach + 1, (2,)))
        dx = max(-x0, min(dx, w - x1))
        dy = max(-y0, min(dy, h - y1))
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)

    def embed(self, clips: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        """``B,3,T,s,s`` lip clips and ``B,N,1,13,20`` MFCC windows -> ``B,N,D`` each (unit
        norm); video window ``i`` covers frames ``i..i+4`` and audio window ``i`` the same 0.2 s."""
        b, n = audio.shape[:2]
        v = self.net.forward_lip_clip(clips)[:, :n]
        a = self.net.forward_aud(audio.flatten(0, 1)).view(b, n, -1)
        return v, a

    def contrastive_loss(self, v: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        """InfoNCE over same-clip offsets ``|j-i| <= max_offset`` and other clips' aligned audio.

        ``v``, ``a``: ``B,N,D``. Returns the loss and the share of windows whose best candidate
        is the aligned one.
        """
        b, n, _ = v.shape
        scale = self.logit_scale.exp().clamp(max=100.0)
        same = torch.einsum("bid,bjd->bij", v, a) * scale  # B,N,N (video i, audio j)
        idx = torch.arange(n, device=v.device)
        near = (idx[None, :] - idx[:, None]).abs() <= self.config.max_offset  # N,N
        same = same.masked_fill(~near, float("-inf"))
        # other clips' audio at the same position i (B,N,B), own clip masked out
        cross = torch.einsum("bid,cid->bic", v, a) * scale
        own = torch.eye(b, dtype=torch.bool, device=v.device)[:, None, :]
        cross = cross.masked_fill(own, float("-inf"))
        logits_v = torch.cat([same, cross], dim=-1)  # B,N,N+B
        target = idx.expand(b, n)
        loss_v = F.cross_entropy(logits_v.flatten(0, 1), target.flatten())
        # audio -> video: transpose the same-clip block; cross from the audio side
        cross_a = torch.einsum("bid,cid->bic", a, v) * scale
        cross_a = cross_a.masked_fill(own, float("-inf"))
        logits_a = torch.cat([same.transpose(1, 2), cross_a], dim=-1)
        loss_a = F.cross_entropy(logits_a.flatten(0, 1), target.flatten())
        acc = (logits_v.argmax(-1) == target).float().mean()
        return (loss_v + loss_a) / 2, acc

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        clips, audio = self.inputs(batch, augment=self.config.augment)
        v, a = self.embed(clips, audio)
        loss, acc = self.contrastive_loss(v, a)
        bs = clips.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/window_acc", acc, batch_size=bs)
        self.log("train/logit_scale", self.logit_scale.exp().detach(), batch_size=bs)
        return loss

    # -------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self._val = {"pos": [], "neg": [], "offset": []}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        clips, audio = self.inputs(batch)
        v, a = self.embed(clips, audio)
        bs = clips.shape[0]
        if v.shape[0] > 1:
            loss, acc = self.contrastive_loss(v, a)
            self.log("val/loss", loss, batch_size=bs, sync_dist=True)
            self.log("val/window_acc", acc, batch_size=bs, sync_dist=True)
        d = torch.cdist(v, a)  # B,N,N
        n = d.shape[1]
        idx = torch.arange(n, device=d.device)
        shift = (idx[None, :] - idx[:, None]).abs()
        self._val["pos"].append(d.diagonal(dim1=1, dim2=2).flatten())
        self._val["neg"].append(d[:, shift >= self.config.min_negative_shift].flatten())
        if bs > 1:  # another clip's aligned audio
            other = a.roll(1, dims=0)
            self._val["neg"].append((v - other).norm(dim=-1).flatten())
        vshift = min(self.config.max_offset, n - 1)
        for vb, ab in zip(v, a, strict=True):
            offset = lse_from_distances(sync_distances(vb, ab, vshift))["offset"]
            self._val["offset"].append(torch.tensor(float(offset == 0), device=d.device))

    def on_validation_epoch_end(self) -> None:
        if not self._val.get("pos"):
            return
        pos = self._gather(torch.cat(self._val["pos"])).flatten()
        neg = self._gather(torch.cat(self._val["neg"])).flatten()
        acc, threshold = balanced_accuracy(pos, neg)
        offset_acc = self._gather(torch.stack(self._val["offset"])).float().mean()
        self.log("val/acc", acc, prog_bar=True, rank_zero_only=True)
        self.log("val/threshold", threshold, rank_zero_only=True)
        self.log("val/offset_acc", offset_acc, rank_zero_only=True)
        self._val = {}

    def _gather(self, x: Tensor) -> Tensor:
        """``all_gather`` of one tensor (Lightning annotates the union of every collection)."""
        out = self.all_gather(x)
        assert isinstance(out, Tensor)
        return out


def balanced_accuracy(pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
    """Best balanced accuracy of the rule ``distance < t`` -> in sync, and that threshold ``t``.

    ``pos``: distances of in-sync pairs; ``neg``: of off-sync pairs (any lengths).

    >>> balanced_accuracy(torch.tensor([0.1, 0.2]), torch.tensor([0.5, 0.15, 0.9, 0.7]))
    (tensor(0.8750), tensor(0.2000))
    """
    values = torch.cat([pos, neg]).double()
    labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]).double()
    order = values.argsort()
    values, labels = values[order], labels[order]
    # threshold at each value: in sync iff distance <= value
    tp = labels.cumsum(0)
    fp = (1 - labels).cumsum(0)
    tpr = tp / max(len(pos), 1)
    tnr = 1 - fp / max(len(neg), 1)
    bal = (tpr + tnr) / 2
    best = int(bal.argmax())
    return bal[best].float(), values[best].float()
