"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``, the network
behind ``csim_dlib``) as a batched PyTorch module with dlib's own weights.

dlib's serialized network file -> :func:`read_dlib_network` (dlib's binary format, read by the
network's type as dlib's ``deserialize`` reads it) -> :class:`DlibNetworkFile` (the layers with
their weights, bottom-up) -> :class:`DlibFaceResNet` (``N,150,150,3`` uint8 RGB face chips, cut
as ``dlib.get_face_chip(frame, shape, 150, 0.25)`` cuts them -> ``N,128`` float32 descriptors,
those of ``face_recognition_model_v1.compute_face_descriptor(frame, shape, 0)``) ->
:class:`talking_faces.metrics.face_models.DlibFaceEmbedder`

Why: dlib's own forward pass takes about 62 ms a chip on one core and holds Python's lock for
all of it, so the dlib-based protocols ran at ~14 frames/s; here the same network runs batched
on torch's threads.

The network is the ``anet_type`` of dlib's ``tools/python/src/face_recognition.cpp`` (and
``examples/dnn_face_recognition_ex.cpp``)::

    loss_metric<fc_no_bias<128, avg_pool_everything<
        alevel0<alevel1<alevel2<alevel3<alevel4<
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>

``alevel4`` = 3 residual blocks of 32 channels; ``alevel3`` = a downsampling block and 3 blocks
of 64; ``alevel2`` and ``alevel1`` = a downsampling block and 2 blocks of 128 and 256;
``alevel0`` = one downsampling block of 256. A block is ``relu(add_prev(x, affine(con3x3(relu(
affine(con3x3(x)))))))``; a downsampling block strides its first convolution by 2 and adds
``avg_pool<2,2,2,2>(x)`` instead of ``x``. What this module copies from dlib exactly:

- padding: dlib's ``con_``/``max_pool_``/``avg_pool_`` default to padding 0 when the stride is
  not 1, else ``kernel // 2`` (the file records the padding; it is checked);
- ``affine``: per-channel ``gamma * x + beta`` (this file holds ``affine_`` layers; a file
  saved from a training net holds ``bn_con`` layers instead, which dlib turns into ``affine_``
  on loading as ``gamma / sqrt(running_variance + eps)``, ``beta - gamma' * running_mean`` in
  float32, and so does the reader);
- ``add_prev`` of tensors of different sizes (dlib's ``tt::add``): the output has the larger of
  each dimension, each source is added where it has an element, top-left aligned, zeros
  elsewhere. In the downsampling blocks the channels differ (32 + 64, ...), and at 8 px the
  block's 3x3 output meets the 4x4 average pool (so ``alevel1`` runs at 4x4, ``alevel0``'s sum
  is 2x2 with the block's 1x1 in its corner);
- the input layer: ``(pixel - mean) / 256`` per RGB channel, the means read from the file
  (122.782, 117.001, 104.298);
- the descriptor is the fc output as it is: ``loss_metric`` and ``compute_face_descriptor`` do
  not normalise it (its length is about 1.4 on real faces, not 1).

File format (dlib's ``serialize.h``, ``dnn/core.h``, ``dnn/layers.h``, ``dnn/input.h``,
``dnn/loss.h``, ``cuda/tensor.h``; read from them, not copied): an integer is a control byte
(low nibble: byte count, 0x80: negative) then that many little-endian bytes; a float is dlib's
``float_details``, an int64 mantissa and an int16 exponent in that integer format (``mantissa *
2**exponent``); a string is its length as an integer then its bytes; a bool is ``'1'``/``'0'``; a
tensor is version 2, four int64 dimensions, then raw little-endian float32s. The loss layer is
written first (its version, its parameters), then the layers below: every ``add_layer`` writes
its version, then its whole subnetwork, then its own layer's parameters and three bools and its
cached tensors, so the versions come outermost-first and the parameters innermost-first; tags and
skips write only a version. Every parameter tensor is read with one ``numpy.frombuffer``, so the
22 MB file loads in well under a second: no cache.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from talking_faces.errors import UserError

#: the face chip side the network takes (``input_rgb_image_sized<150>``)
CHIP_SIZE = 150
#: the padding of the chip around the face that ``compute_face_descriptor`` asks
#: ``get_face_chip_details`` for
CHIP_PADDING = 0.25
#: the descriptor's length
DESCRIPTOR_DIM = 128
#: the asset that holds the file (``talking_faces.utils.assets``)
ASSET_NAME = "dlib-face-embedding"

#: one layer of the network's type: (kind, its template arguments)
Spec = tuple[str, tuple[int, ...]]


def _ares(n: int, down: bool) -> list[Spec]:
    """A residual block of ``n`` channels, bottom-up as dlib's ``ares``/``ares_down`` nest."""
    stride = 2 if down else 1
    block: list[Spec] = [
        ("tag", (1,)),
        ("con", (n, 3, 3, stride, stride)),
        ("affine", ()),
        ("relu", ()),
        ("con", (n, 3, 3, 1, 1)),
        ("affine", ()),
    ]
    if down:  # add_prev2<avg_pool<2,2,2,2,skip1<tag2<block>>>>
        tail: list[Spec] = [("tag", (2,)), ("skip", (1,)), ("avg_pool", (2, 2, 2, 2))]
        return [*block, *tail, ("add_prev", (2,)), ("relu", ())]
    return [*block, ("add_prev", (1,)), ("relu", ())]


#: (channels, downsampling?) of every residual block, input side first (alevel4 .. alevel0)
BLOCKS: tuple[tuple[int, bool], ...] = (
    ((32, False),) * 3
    + ((64, True),) + ((64, False),) * 3
    + ((128, True),) + ((128, False),) * 2
    + ((256, True),) + ((256, False),) * 2
    + ((256, True),)
)  # fmt: skip


def anet_layers() -> list[Spec]:
    """dlib's ``anet_type``, bottom-up (input first, loss last)."""
    layers: list[Spec] = [
        ("input", (CHIP_SIZE,)),
        ("con", (32, 7, 7, 2, 2)),
        ("affine", ()),
        ("relu", ()),
        ("max_pool", (3, 3, 2, 2)),
    ]
    for channels, down in BLOCKS:
        layers += _ares(channels, down)
    return [*layers, ("avg_pool", (0, 0, 1, 1)), ("fc", (DESCRIPTOR_DIM,)), ("loss", ())]


def default_padding(kernel: int, stride: int) -> int:
    """dlib's default padding of ``con_`` and the pooling layers: 0 when the stride is not 1,
    else half the kernel."""
    return 0 if stride != 1 else kernel // 2


# ----------------------------------------------------------------------------------- reading
class _FormatError(Exception):
    """What did not read, at which byte (turned into a one-line UserError naming the file)."""

    def __init__(self, what: str, at: int) -> None:
        super().__init__(what)
        self.what, self.at = what, at


@dataclass
class DlibLayer:
    """One computational layer of the file: its kind, what it records (strides, paddings,
    versions, sizes) and its weights (float32 arrays, dlib's shapes)."""

    kind: str
    info: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNetworkFile:
    """A dlib network file as read: the input means (R, G, B), the computational layers
    bottom-up (tags and skips left out: :func:`anet_layers` says where they are), and the loss
    layer's margin and distance threshold."""

    path: Path
    input_mean: tuple[float, float, float]
    layers: list[DlibLayer]
    margin: float
    distance_threshold: float


class _Reader:
    """dlib's ``deserialize`` of the primitive types, over the whole file's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise _FormatError(f"file ends inside {what}", self.pos)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def integer(self, what: str, nbytes: int = 8, signed: bool = True) -> int:
        """dlib's ``unpack_int``: control byte (count in the low nibble, 0x80 negative), then
        the little-endian bytes; an ``nbytes``-byte C++ type takes at most ``nbytes``."""
        start = self.pos
        control = self._take(1, what)[0]
        negative = bool(control & 0x80)
        size = control & 0x0F if signed else control & 0x8F  # unsigned: a sign bit is an error
        if size == 0 or size > nbytes:
            raise _FormatError(f"bad integer control byte 0x{control:02x} for {what}", start)
        value = int.from_bytes(self._take(size, what), "little")
        return -value if negative and signed else value

    def floating(self, what: str, single: bool = False) -> float:
        """dlib's ``float_details``: ``mantissa * 2**exponent`` (exponents 32000-32002: inf,
        -inf, NaN); ``single``: a C++ float, rounded as ``ldexp((float)mantissa, exponent)``."""
        start = self.pos
        if start < len(self.data) and self.data[start] & 0x70:
            raise _FormatError(f"{what} is in dlib's old text format, not float_details", start)
        mantissa = self.integer(what, 8)
        exponent = self.integer(what, 2)
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        if single:
            return float(np.ldexp(np.float32(mantissa), exponent))
        return math.ldexp(float(mantissa), exponent)

    def string(self, what: str) -> str:
        size = self.integer(what, 8, signed=False)
        if size > 256:  # every name in the file is short; a long one is another file
            raise _FormatError(f"a {size}-byte string where {what} was expected", self.pos)
        return self._take(size, what).decode("latin-1")

    def version(self, expected: tuple[str, ...], what: str) -> str:
        start = self.pos
        name = self.string(what)
        if name not in expected:
            raise _FormatError(
                f"{name!r} where {what} ({' or '.join(expected)}) was expected", start
            )
        return name

    def boolean(self, what: str) -> bool:
        start = self.pos
        char = self._take(1, what)
        if char not in (b"0", b"1"):
            raise _FormatError(f"byte {char!r} where the bool {what} was expected", start)
        return char == b"1"

    def int_version(self, allowed: tuple[int, ...], what: str) -> int:
        start = self.pos
        value = self.integer(what, 4)
        if value not in allowed:
            raise _FormatError(f"version {value} of {what} (dlib reads {allowed})", start)
        return value

    def dims(self, what: str) -> tuple[int, int, int, int]:
        n, k, nr, nc = (self.integer(what, 8) for _ in range(4))
        if min(n, k, nr, nc) < 0:
            raise _FormatError(f"negative size of {what}", self.pos)
        return n, k, nr, nc

    def tensor(self, what: str, keep: bool = True) -> np.ndarray:
        """A ``resizable_tensor``: version 2, four int64 sizes, little-endian float32s."""
        self.int_version((2,), what)
        shape = self.dims(what)
        count = math.prod(shape)
        raw = self._take(4 * count, what)
        if not keep:
            return np.empty((0,), np.float32)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: version 1 and four int64 sizes (a view's shape, no data)."""
        self.int_version((1,), what)
        return self.dims(what)


def _multipliers(r: _Reader, what: str) -> None:
    for name in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        r.floating(f"{what} {name} multiplier")


def _pool(r: _Reader, kind: str, args: tuple[int, ...]) -> DlibLayer:
    """``max_pool_``/``avg_pool_``: window, stride, padding (checked against the type's)."""
    r.version((f"{kind}_2",), f"{kind}_")
    nr, nc = r.integer(f"{kind} rows"), r.integer(f"{kind} columns")
    sy, sx = r.integer(f"{kind} stride", 4), r.integer(f"{kind} stride", 4)
    py, px = r.integer(f"{kind} padding", 4), r.integer(f"{kind} padding", 4)
    want = (*args, default_padding(args[0], args[2]), default_padding(args[1], args[3]))
    if (nr, nc, sy, sx, py, px) != want:
        raise _FormatError(f"{kind} {(nr, nc, sy, sx, py, px)} where {want} was expected", r.pos)
    return DlibLayer(kind, {"window": (nr, nc), "stride": (sy, sx), "padding": (py, px)})


def _con(r: _Reader, args: tuple[int, ...]) -> DlibLayer:
    """``con_`` (versions 4-6): params (filters then biases), sizes, strides, paddings."""
    version = r.version(("con_4", "con_5", "con_6"), "con_")
    params = r.tensor("con_ params").reshape(-1)
    filters = r.integer("con_ num_filters")
    nr, nc = r.integer("con_ rows"), r.integer("con_ columns")
    sy, sx = r.integer("con_ stride", 4), r.integer("con_ stride", 4)
    py, px = r.integer("con_ padding", 4), r.integer("con_ padding", 4)
    shape = r.alias("con_ filters")
    bias_shape = r.alias("con_ biases")
    _multipliers(r, "con_")
    use_bias = r.boolean("con_ use_bias") if version in ("con_5", "con_6") else True
    use_relu = r.boolean("con_ use_relu") if version == "con_6" else False
    n, kr, kc, stride_y, stride_x = args
    pads = (default_padding(kr, stride_y), default_padding(kc, stride_x))
    want = (n, kr, kc, stride_y, stride_x, *pads)
    got = (filters, nr, nc, sy, sx, py, px)
    if got != want:  # (filters, rows, columns, strides, paddings)
        raise _FormatError(f"con {got} where {want} was expected", r.pos)
    size = math.prod(shape)
    nbias = math.prod(bias_shape) if use_bias else 0
    if shape[0] != n or shape[2:] != (kr, kc) or params.size != size + nbias:
        raise _FormatError(f"con_ filters {shape} do not fit its {params.size} params", r.pos)
    weights = {"weight": params[:size].reshape(shape)}
    if nbias:
        weights["bias"] = params[size : size + nbias].copy()
    info = {"version": version, "stride": (sy, sx), "padding": (py, px), "relu": use_relu}
    return DlibLayer("con", info, weights)


def _bn_as_affine(r: _Reader, version: str) -> DlibLayer:
    """A ``bn_con2``/``bn_fc2`` layer read where an ``affine_`` is declared: dlib converts it on
    loading (``affine_(const bn_&)``), in float32 as here."""
    params = r.tensor("bn_ params").reshape(-1)
    gamma_shape, beta_shape = r.alias("bn_ gamma"), r.alias("bn_ beta")
    r.tensor("bn_ means", keep=False)
    r.tensor("bn_ invstds", keep=False)
    means = r.tensor("bn_ running_means").reshape(-1)
    variances = r.tensor("bn_ running_variances").reshape(-1)
    r.integer("bn_ num_updates", signed=False)
    r.integer("bn_ running_stats_window_size", signed=False)
    _multipliers(r, "bn_")
    eps = np.float32(r.floating("bn_ eps"))
    size = math.prod(gamma_shape)
    if math.prod(beta_shape) != size or params.size != 2 * size or means.size != size:
        raise _FormatError(f"bn_ sizes {gamma_shape} do not fit its {params.size} params", r.pos)
    gamma = params[:size] / np.sqrt(variances + eps)
    beta = params[size:] - gamma * means
    mode = "conv" if version == "bn_con2" else "fc"
    info = {"version": version, "mode": mode, "shape": gamma_shape}
    weights = {"gamma": gamma.astype(np.float32), "beta": beta.astype(np.float32)}
    return DlibLayer("affine", info, weights)


def _affine(r: _Reader) -> DlibLayer:
    version = r.version(("affine_", "affine_2", "bn_con2", "bn_fc2"), "affine_")
    if version.startswith("bn_"):
        return _bn_as_affine(r, version)
    params = r.tensor("affine_ params").reshape(-1)
    gamma_shape, _ = r.alias("affine_ gamma"), r.alias("affine_ beta")
    mode = "fc" if r.integer("affine_ mode", 4) == 1 else "conv"  # layer_mode: CONV_MODE = 0
    disabled = r.boolean("affine_ disabled") if version == "affine_2" else False
    size = math.prod(gamma_shape)
    if disabled:
        return DlibLayer("affine", {"version": version, "mode": mode, "disabled": True})
    if params.size != 2 * size:
        raise _FormatError(f"affine_ gamma {gamma_shape} does not fit {params.size}", r.pos)
    info = {"version": version, "mode": mode, "shape": gamma_shape}
    return DlibLayer("affine", info, {"gamma": params[:size], "beta": params[size:]})


def _fc(r: _Reader, args: tuple[int, ...]) -> DlibLayer:
    """``fc_`` (versions 2-3): the weights are ``num_inputs x num_outputs``, row-major."""
    version = r.version(("fc_2", "fc_3"), "fc_")
    outputs = r.integer("fc_ num_outputs", signed=False)
    inputs = r.integer("fc_ num_inputs", signed=False)
    params = r.tensor("fc_ params").reshape(-1)
    shape = r.alias("fc_ weights")  # alias_tensor(num_inputs, num_outputs)
    r.alias("fc_ biases")
    bias_mode = r.integer("fc_ bias mode", 4)
    _multipliers(r, "fc_")
    if version == "fc_3":
        r.boolean("fc_ use_bias")
    fits = shape == (inputs, outputs, 1, 1) and params.size == inputs * outputs
    if bias_mode != 1 or outputs != args[0] or not fits:  # fc_bias_mode: FC_NO_BIAS = 1
        raise _FormatError(
            f"fc_ {inputs}x{outputs} bias mode {bias_mode} where fc_no_bias<{args[0]}> was "
            "expected",
            r.pos,
        )
    return DlibLayer("fc", {"version": version}, {"weight": params.reshape(inputs, outputs)})


def _details(r: _Reader, kind: str, args: tuple[int, ...]) -> DlibLayer:
    """The layer object's own ``deserialize``."""
    if kind == "con":
        return _con(r, args)
    if kind == "affine":
        return _affine(r)
    if kind == "relu":
        version = r.version(("relu_", "relu_2"), "relu_")
        disabled = r.boolean("relu_ disabled") if version == "relu_2" else False
        return DlibLayer("relu", {"disabled": disabled})
    if kind in ("max_pool", "avg_pool"):
        return _pool(r, kind, args)
    if kind == "add_prev":
        r.version(("add_prev_",), "add_prev_")
        return DlibLayer("add_prev", {"tag": args[0]})
    if kind == "fc":
        return _fc(r, args)
    raise AssertionError(kind)


def _input(r: _Reader) -> tuple[float, float, float]:
    r.version(("input_rgb_image_sized",), "the input layer")
    mean = tuple(r.floating(f"input {c} mean", single=True) for c in ("red", "green", "blue"))
    size = (r.integer("input rows", signed=False), r.integer("input columns", signed=False))
    if size != (CHIP_SIZE, CHIP_SIZE):
        raise _FormatError(f"input {size} where {CHIP_SIZE}x{CHIP_SIZE} was expected", r.pos)
    return mean[0], mean[1], mean[2]


def _parse(data: bytes, path: Path) -> DlibNetworkFile:
    r = _Reader(data)
    specs = anet_layers()
    # the loss layer: its version and parameters come first, then the subnetwork
    r.int_version((1,), "add_loss_layer")
    loss = r.version(("loss_metric_", "loss_metric_2"), "loss_metric_")
    margin, threshold = 0.1, 0.75  # loss_metric_ (version 1) had them hard-coded
    if loss == "loss_metric_2":
        margin = r.floating("loss margin", single=True)
        threshold = r.floating("loss distance threshold", single=True)
    # the versions, outermost first, down to the input layer
    stack = specs[1:-1]  # between the input and the loss
    versions: list[int] = []
    for depth, (kind, _) in enumerate(reversed(stack)):
        if kind in ("tag", "skip"):
            versions.append(r.int_version((1,), f"add_{kind}_layer"))
        elif depth == len(stack) - 1:  # the add_layer over the input layer
            versions.append(r.int_version((2, 3), "add_layer (over the input)"))
        else:
            versions.append(r.int_version((1, 2), "add_layer"))
    mean = _input(r)
    # then each add_layer's layer, innermost first
    layers: list[DlibLayer] = []
    for i, (kind, args) in enumerate(stack):
        if kind in ("tag", "skip"):
            continue
        version = versions[len(stack) - 1 - i]
        layer = _details(r, kind, args)
        for flag in ("setup called", "gradient input stale", "output getters disabled"):
            r.boolean(f"add_layer {flag}")
        r.tensor("x_grad", keep=False)
        r.tensor("cached_output", keep=False)
        if i == 0:  # over the input: grad_final, then (version 3) the sample expansion factor
            r.tensor("grad_final", keep=False)
            if version == 3:
                r.integer("sample expansion factor", 4, signed=False)
        elif version == 2:
            r.tensor("params_grad", keep=False)
        layers.append(layer)
    if r.pos != len(data):
        raise _FormatError(f"{len(data) - r.pos} bytes after the network", r.pos)
    return DlibNetworkFile(path, mean, layers, margin, threshold)


def read_dlib_network(path: str | os.PathLike[str]) -> DlibNetworkFile:
    """The layers and weights of a ``dlib_face_recognition_resnet_model_v1.dat``.

    Raises:
        UserError: the file is missing, truncated or not this network (one line: the file, what
            did not read and at which byte, and how to get the file again).
    """
    file = Path(path).expanduser()
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read dlib's face network {file}: {exc.strerror}") from None
    try:
        return _parse(data, file)
    except _FormatError as exc:
        raise UserError(
            f"{file} is not dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_"
            f"v1.dat): {exc.what} at byte {exc.at} of {len(data)}; fetch it again with "
            "'talking-faces weights --fetch'"
        ) from None


# ----------------------------------------------------------------------------------- network
def add_padded(a: Tensor, b: Tensor) -> Tensor:
    """dlib's ``tt::add(dest, a, b)`` of ``N,C,H,W`` tensors of different sizes: the larger of
    each dimension, each source where it has an element (top-left aligned), zeros elsewhere."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True))

    def grow(t: Tensor) -> Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


class Affine(nn.Module):
    """dlib's ``affine_`` in ``CONV_MODE``: ``gamma * x + beta`` per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels), requires_grad=False)
        self.beta = nn.Parameter(torch.zeros(channels), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.beta[:, None, None], x, self.gamma[:, None, None])


def fold_affine(conv: nn.Conv2d, affine: nn.Module) -> nn.Module:
    """Fold ``affine`` (an :class:`Affine`) into the convolution below it, ``w * gamma`` and
    ``bias * gamma + beta``, and return what replaces it (an identity); an identity is already
    folded and is returned as it is."""
    if not isinstance(affine, Affine):
        return affine
    assert conv.bias is not None
    with torch.no_grad():
        conv.weight.mul_(affine.gamma[:, None, None, None])
        conv.bias.mul_(affine.gamma).add_(affine.beta)
    return nn.Identity()


class DlibResidual(nn.Module):
    """dlib's ``ares`` (``down=False``) / ``ares_down`` block."""

    def __init__(self, inputs: int, channels: int, down: bool) -> None:
        super().__init__()
        stride = 2 if down else 1
        self.down = down
        self.conv1 = nn.Conv2d(inputs, channels, 3, stride, default_padding(3, stride))
        self.affine1: nn.Module = Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, default_padding(3, 1))
        self.affine2: nn.Module = Affine(channels)

    def fold_affines(self) -> None:
        """:func:`fold_affine` of both affines into their convolutions."""
        self.affine1 = fold_affine(self.conv1, self.affine1)
        self.affine2 = fold_affine(self.conv2, self.affine2)

    def forward(self, x: Tensor) -> Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        if self.down:  # add_prev2: avg_pool<2,2,2,2>(x) + the block
            return F.relu(add_padded(F.avg_pool2d(x, 2, 2), y))
        return F.relu(add_padded(y, x))


class DlibFaceResNet(nn.Module):
    """dlib's face-recognition ResNet: ``N,150,150,3`` uint8 RGB chips (or ``N,3,150,150``
    floats in dlib's input scale, :meth:`features`) -> ``N,128`` float32 descriptors, unnormalised
    as dlib returns them.

    ``channels_last``: run the convolutions in NHWC (oneDNN's preferred layout on CPU).
    """

    def __init__(
        self,
        mean: tuple[float, float, float] = (122.782, 117.001, 104.298),
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.mean: Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.channels_last = channels_last
        self.conv = nn.Conv2d(3, 32, 7, 2, default_padding(7, 2))
        self.affine: nn.Module = Affine(32)
        blocks, inputs = [], 32
        for channels, down in BLOCKS:
            blocks.append(DlibResidual(inputs, channels, down))
            inputs = channels
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(inputs, DESCRIPTOR_DIM, bias=False)

    def fold_affines(self) -> DlibFaceResNet:
        """Fold every affine into the convolution below it (:func:`fold_affine`): the same
        function with one pass over each activation less (about 10% faster on CPU; the
        descriptors move by about 3e-7)."""
        self.affine = fold_affine(self.conv, self.affine)
        for block in self.blocks:
            assert isinstance(block, DlibResidual)
            block.fold_affines()
        return self

    def features(self, x: Tensor) -> Tensor:
        """``N,3,150,150`` float32 in dlib's input scale (``(pixel - mean) / 256``) -> ``N,128``."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.contiguous(memory_format=fmt)
        x = F.relu(self.affine(self.conv(x)))
        x = F.max_pool2d(x, 3, 2, default_padding(3, 2))
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean((2, 3)))  # avg_pool_everything, then fc_no_bias

    def forward(self, chips: Tensor) -> Tensor:
        """``N,150,150,3`` uint8 RGB chips -> ``N,128`` float32."""
        if chips.dim() != 4 or tuple(chips.shape[1:]) != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(
                f"expected N,{CHIP_SIZE},{CHIP_SIZE},3 chips, got {tuple(chips.shape)}"
            )
        x = (chips.float() - self.mean) / 256.0  # NHWC: the channels-last view below is free
        return self.features(x.permute(0, 3, 1, 2))

    def load_dlib(self, net: DlibNetworkFile) -> DlibFaceResNet:
        """Copy the weights of a file read by :func:`read_dlib_network` (bottom-up, in the order
        :func:`anet_layers` gives) into this module.

        Raises:
            UserError: a layer of the file does not fit (one line naming the file and layer).
        """
        blocks = [b for b in self.blocks if isinstance(b, DlibResidual)]
        convs = [self.conv] + [c for b in blocks for c in (b.conv1, b.conv2)]
        affines = [self.affine] + [a for b in blocks for a in (b.affine1, b.affine2)]
        if not all(isinstance(a, Affine) for a in affines):
            raise ValueError("load_dlib needs the affines unfolded (load before fold_affines)")
        found = {k: [x for x in net.layers if x.kind == k] for k in ("con", "affine", "fc")}
        counts = (len(found["con"]), len(found["affine"]), len(found["fc"]))
        if counts != (len(convs), len(affines), 1):
            raise UserError(f"{net.path} does not hold the layers of dlib's face ResNet")

        def put(param: Tensor, value: np.ndarray, where: str) -> None:
            if tuple(value.shape) != tuple(param.shape):
                raise UserError(
                    f"{net.path}: {where} is {tuple(value.shape)} in the file, "
                    f"{tuple(param.shape)} in dlib's face ResNet"
                )
            param.data.copy_(torch.from_numpy(np.ascontiguousarray(value)))

        for i, (conv, layer) in enumerate(zip(convs, found["con"], strict=True)):
            if layer.info["relu"] or "bias" not in layer.weights:
                raise UserError(f"{net.path}: con layer {i} has a fused relu or no bias")
            put(conv.weight, layer.weights["weight"], f"con layer {i}")
            assert conv.bias is not None
            put(conv.bias, layer.weights["bias"], f"con layer {i} bias")
        for i, (affine, layer) in enumerate(zip(affines, found["affine"], strict=True)):
            if layer.info.get("disabled") or layer.info["mode"] != "conv":
                raise UserError(f"{net.path}: affine layer {i} is not a per-channel affine")
            assert isinstance(affine, Affine)
            put(affine.gamma, layer.weights["gamma"].reshape(-1), f"affine layer {i}")
            put(affine.beta, layer.weights["beta"].reshape(-1), f"affine layer {i} beta")
        put(self.fc.weight, found["fc"][0].weights["weight"].T, "the fc layer")
        self.mean.copy_(torch.tensor(net.input_mean, dtype=torch.float32))
        return self


def load_dlib_resnet(
    path: str | os.PathLike[str] | None = None, channels_last: bool = True, fold: bool = True
) -> DlibFaceResNet:
    """dlib's face ResNet with the weights of ``path`` (default: the registry asset
    ``dlib-face-embedding``), in eval mode, without gradients; ``fold``: its affines folded
    into the convolutions (:meth:`DlibFaceResNet.fold_affines`).

    Raises:
        MissingWeightsError: no ``path`` and the asset is not fetched.
        UserError: the file does not read as this network.
    """
    if path is None:
        from talking_faces.utils.assets import asset_path

        path = asset_path(ASSET_NAME)
    net = DlibFaceResNet(channels_last=channels_last).load_dlib(read_dlib_network(path))
    if fold:
        net.fold_affines()
    return net.eval().requires_grad_(False)


__all__ = [
    "BLOCKS",
    "CHIP_PADDING",
    "CHIP_SIZE",
    "DESCRIPTOR_DIM",
    "Affine",
    "DlibFaceResNet",
    "DlibLayer",
    "DlibNetworkFile",
    "DlibResidual",
    "add_padded",
    "anet_layers",
    "default_padding",
    "fold_affine",
    "load_dlib_resnet",
    "read_dlib_network",
]
