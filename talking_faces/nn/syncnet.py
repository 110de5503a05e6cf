"""SyncNet (Chung and Zisserman 2016), the audio-visual sync network behind LSE-D and LSE-C.

Generated frames + waveform -> :func:`talking_faces.metrics.sync.sync_windows` -> :class:`SyncNet`
(``forward_lip`` on 5-frame windows, ``forward_aud`` on 20-column MFCC windows) -> 1024-d
embeddings -> :func:`talking_faces.metrics.sync.sync_distances` -> LSE-D / LSE-C / AV offset.

The layer layout, the ``nn.Sequential`` indices and therefore the state-dict names and shapes are
those of the public ``syncnet_v2.model`` released with ``joonson/syncnet_python``
(``SyncNetModel.py``), so that file loads unchanged with ``strict=True``:

- ``netcnnaud``: 2-D convolutions over a ``1 x 13 x 20`` MFCC window (13 coefficients x 20 steps
  at 100 Hz = 0.2 s) down to ``512 x 1 x 1``;
- ``netcnnlip``: 3-D convolutions over ``3 x 5 x 224 x 224`` (5 frames, 0-255 floats, BGR as the
  public code reads frames with OpenCV, no normalisation) down to ``512 x 1 x 1 x 1``;
- ``netfcaud`` / ``netfclip``: ``Linear(512, 512) - BatchNorm1d - ReLU - Linear(512, 1024)``.

``image_size`` other than 224 is for experts the framework trains itself on small crops (e.g. 96
or 112 px of the lower face): the names stay the same, the last lip convolution shrinks its kernel
to the spatial size left at that point (at most the public 6) and the first lip FC layer takes its
input size from a shape-only dry run, so only the 224 px network matches the public weights.

Weights are looked up in :func:`default_weights_dir` (``~/.cache/talking_faces/weights``, or the
folder in ``$TALKING_FACES_WEIGHTS``) unless a path is given; a missing file is a
:class:`~talking_faces.errors.MissingWeightsError` naming the file and the folder.
"""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import torch
from torch import nn

from talking_faces.errors import MissingWeightsError, UserError

SYNCNET_FILENAME = "syncnet_v2.model"
WEIGHTS_ENV = "TALKING_FACES_WEIGHTS"
PUBLIC_IMAGE_SIZE = 224
_PUBLIC_LAST_LIP_KERNEL = 6


def default_weights_dir() -> Path:
    """Weights folder: ``$TALKING_FACES_WEIGHTS``, else ``~/.cache/talking_faces/weights``."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "talking_faces" / "weights"


def _conv_block(conv: nn.Module, channels: int, inplace: bool = True) -> list[nn.Module]:
    """``conv`` followed by the batch norm of matching dimensionality and a ReLU."""
    norm = nn.BatchNorm3d(channels) if isinstance(conv, nn.Conv3d) else nn.BatchNorm2d(channels)
    return [conv, norm, nn.ReLU(inplace=inplace)]


def _fc_head(in_features: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, 512),
        nn.BatchNorm1d(512),
        nn.ReLU(),
        nn.Linear(512, out_features),
    )


def _audio_trunk() -> nn.Sequential:
    """``B,1,13,20`` MFCC window -> ``B,512,1,1``."""
    layers: list[nn.Module] = []
    layers += _conv_block(nn.Conv2d(1, 64, 3, padding=1), 64)
    layers.append(nn.MaxPool2d(kernel_size=1, stride=1))  # a no-op kept for the public indices
    layers += _conv_block(nn.Conv2d(64, 192, 3, padding=1), 192)
    layers.append(nn.MaxPool2d(kernel_size=3, stride=(1, 2)))
    layers += _conv_block(nn.Conv2d(192, 384, 3, padding=1), 384)
    layers += _conv_block(nn.Conv2d(384, 256, 3, padding=1), 256)
    layers += _conv_block(nn.Conv2d(256, 256, 3, padding=1), 256)
    layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
    layers += _conv_block(nn.Conv2d(256, 512, kernel_size=(5, 4)), 512, inplace=False)
    return nn.Sequential(*layers)


def _lip_trunk_without_head() -> list[nn.Module]:
    """Lip layers up to (not including) the last convolution: ``B,3,5,H,W`` -> ``B,256,1,h,w``."""
    layers: list[nn.Module] = []
    layers += _conv_block(nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)), 96)
    layers.append(nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)))
    layers += _conv_block(nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), 256)
    layers.append(nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
    for _ in range(3):
        layers += _conv_block(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256)
    layers.append(nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)))
    return layers


def _spatial_size_before_last_lip_conv(layers: list[nn.Module], image_size: int) -> int:
    """Shape-only dry run (meta tensors, no arithmetic) of the lip trunk at ``image_size``."""
    probe = copy.deepcopy(nn.Sequential(*layers)).to("meta").eval()
    try:
        out = probe(torch.empty(1, 3, 5, image_size, image_size, device="meta"))
    except RuntimeError as err:
        raise ValueError(
            f"SyncNet image_size {image_size} is too small for the lip stream"
        ) from err
    return int(out.shape[-1])


class SyncNet(nn.Module):
    """SyncNet with the public ``syncnet_v2.model`` parameter names.

    Args:
        num_layers_in_fc_layers: embedding size (1024 in the public model).
        image_size: lip-stream input height and width; 224 for the public weights.

    ``forward_lip``: ``B,3,5,H,W`` float 0-255 (``H = W = image_size``) -> ``B,D``.
    ``forward_aud``: ``B,1,13,20`` MFCC (python_speech_features scale) -> ``B,D``.
    Embeddings are not normalised (LSE uses raw Euclidean distances).

    >>> net = SyncNet(image_size=96).eval()
    >>> net.forward_aud(torch.zeros(2, 1, 13, 20)).shape
    torch.Size([2, 1024])
    >>> net.forward_lip(torch.zeros(2, 3, 5, 96, 96)).shape
    torch.Size([2, 1024])
    """

    def __init__(self, num_layers_in_fc_layers: int = 1024, image_size: int = PUBLIC_IMAGE_SIZE):
        super().__init__()
        self.image_size = int(image_size)
        self.embedding_dim = int(num_layers_in_fc_layers)

        self.netcnnaud = _audio_trunk()
        self.netfcaud = _fc_head(512, num_layers_in_fc_layers)

        lip_layers = _lip_trunk_without_head()
        spatial = _spatial_size_before_last_lip_conv(lip_layers, self.image_size)
        kernel = min(_PUBLIC_LAST_LIP_KERNEL, spatial)
        lip_layers += _conv_block(nn.Conv3d(256, 512, (1, kernel, kernel)), 512)
        self.netcnnlip = nn.Sequential(*lip_layers)
        out_side = spatial - kernel + 1
        self.netfclip = _fc_head(512 * out_side * out_side, num_layers_in_fc_layers)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """``B,1,13,20`` MFCC windows -> ``B,D`` audio embeddings."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """``B,3,5,H,W`` frame windows (0-255) -> ``B,D`` video embeddings."""
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"SyncNet expects {self.image_size}x{self.image_size} frames, got "
                f"{tuple(x.shape[-2:])}"
            )
        return self.netfclip(self.netcnnlip(x).flatten(1))

    def forward(
        self, video: torch.Tensor, audio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B,3,5,H,W), (B,1,13,20)`` -> ``(B,D) video, (B,D) audio`` embeddings."""
        return self.forward_lip(video), self.forward_aud(audio)


def resolve_syncnet_path(path: str | os.PathLike[str] | None = None) -> Path:
    """SyncNet weights file: ``path`` if given, else ``default_weights_dir()/syncnet_v2.model``."""
    if path is not None:
        return Path(path).expanduser()
    return default_weights_dir() / SYNCNET_FILENAME


def load_syncnet(
    path: str | os.PathLike[str] | None = None, image_size: int = PUBLIC_IMAGE_SIZE
) -> SyncNet:
    """Build a :class:`SyncNet` and load a state dict with the public names, strictly, in eval mode.

    The file must be a state dict (``torch.load(weights_only=True)``) whose keys are exactly the
    public names (``netcnnaud.0.weight``, ..., ``netfclip.3.bias``). Files saved by PyTorch
    before ``num_batches_tracked`` existed lack only those counters; they are filled in, since
    they play no part in evaluation. Anything else missing or extra is an error.

    Raises:
        MissingWeightsError: the file does not exist (names the file and the folder).
        UserError: the file is not a state dict of this architecture.
    """
    file = resolve_syncnet_path(path)
    if not file.is_file():
        raise MissingWeightsError(
            f"SyncNet weights not found: {file}; put the public {SYNCNET_FILENAME} "
            f"(joonson/syncnet_python) or a trained expert's state dict in {file.parent} "
            f"(or set ${WEIGHTS_ENV} to the folder holding it)"
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise UserError(
            f"cannot read SyncNet weights {file} as a state dict ({type(err).__name__}); if it is "
            "a whole pickled model, re-save its state_dict() with torch.save and point to that file"
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{file} is not a SyncNet state dict (expected a dict of tensors)")

    model = SyncNet(image_size=image_size)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    filled = [k for k in missing if k.endswith("num_batches_tracked")]
    if len(filled) < len(missing) or unexpected:
        bad = [k for k in missing if k not in filled]
        raise UserError(
            f"{file} does not hold SyncNet parameters with the public names: "
            f"missing {bad[:3]}{'...' if len(bad) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
        )
    state = dict(state)
    for key in filled:
        state[key] = expected[key]
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        raise UserError(
            f"{file}: {k} has shape {tuple(state[k].shape)}, SyncNet(image_size={image_size}) "
            f"expects {tuple(expected[k].shape)}; the public weights need image_size=224"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()
