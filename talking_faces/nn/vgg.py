"""VGG-style frame encoder and decoder with skip connections (SVG-LP / ldm).

Batch ``frames``/``identity`` -> :class:`VGGEncoder` -> frame codes (+ skip maps of the reference
frame) -> recurrent models -> :class:`VGGDecoder` -> generated frames.

The layout follows Denton and Fergus (2018), "vgg_64" and "vgg_128", as the ldm authors' code
(``models/vgg_64.py``, ``models/vgg_128.py``) adapts them: blocks of conv3x3-BN-LeakyReLU(0.2)
with 2x max-pooling between blocks down to 4x4, then a 4x4 convolution to a ``code_dim`` vector
with BN and tanh. The decoder mirrors it: a 4x4 transposed convolution from the code, then per
block nearest-neighbour 2x upsampling, the encoder's skip map of the same resolution concatenated,
conv layers whose last one narrows to the next block's width, and at the finest block a 3x3
transposed convolution to a sigmoid image in [0, 1].

Encoder and decoder have their own conv-layer counts per block (``layers``, finest block first):

- 64 px (the authors' ``vgg_64``, unchanged from SVG): channels 64, 128, 256, 512; encoder and
  decoder 2, 2, 3, 3;
- 128 px (the authors' ``vgg_128``, which is not SVG's): channels 64, 128, 256, 512, 512; encoder
  one conv per block (1, 1, 1, 1, 1), decoder two (2, 2, 2, 2, 2).

In the decoder's finest block the output transposed convolution counts as its last layer (the
authors' 128 px block is one conv-BN-LeakyReLU and the output convolution: 2 layers). Channels
and layers are arguments so tiny test variants are the same code. :func:`init_weights` is the
authors' initialisation, applied by ldm to all of its networks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _vgg_layer(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)
    )


def num_blocks(image_size: int) -> int:
    """Encoder blocks for a square image: one per halving from ``image_size`` down to 4 px."""
    n = int(round(math.log2(image_size))) - 2
    if image_size < 8 or 2 ** (n + 2) != image_size:
        raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
    return n


def _check(image_size: int, channels: Sequence[int], layers: Sequence[int]) -> int:
    n = num_blocks(image_size)
    if len(channels) < n or len(layers) < n:
        raise ValueError(
            f"{image_size} px needs {n} blocks; got {len(channels)} channel entries and "
            f"{len(layers)} layer counts"
        )
    if min(layers[:n]) < 1:
        raise ValueError("every block needs at least one layer")
    return n


def init_weights(module: nn.Module) -> None:
    """The ldm authors' ``utils.init_weights`` (DCGAN/SVG): convolution, transposed convolution and
    linear weights N(0, 0.02) with zero bias; batch-norm weights N(1, 0.02) with zero bias.

    Use with ``net.apply(init_weights)``. Other modules (``nn.LSTM``) keep PyTorch's
    initialisation, as the authors' ``nn.LSTMCell`` layers do.
    """
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class VGGEncoder(nn.Module):
    """Frame -> ``code_dim`` vector in (-1, 1) and one skip map per block.

    Args:
        image_size: square input size (a power of two; 64 and 128 are the published variants).
        code_dim: length of the frame code (128 in ldm).
        channels: output channels per block (the first ``num_blocks(image_size)`` are used).
        layers: conv layers per block, finest first (the authors' 128 px encoder: 1, 1, 1, 1, 1).

    Shapes: ``forward(x)`` with ``x`` ``N,3,S,S`` in [0,1] returns ``(code N,code_dim,
    skips)`` where ``skips[i]`` is ``N,channels[i],S/2**i,S/2**i``.
    """

    def __init__(
        self,
        image_size: int = 128,
        code_dim: int = 128,
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        layers: Sequence[int] = (1, 1, 1, 1, 1),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        n = _check(image_size, channels, layers)
        self.image_size = image_size
        self.code_dim = code_dim
        blocks = []
        cin = in_channels
        for i in range(n):
            block = [
                _vgg_layer(cin if j == 0 else channels[i], channels[i]) for j in range(layers[i])
            ]
            blocks.append(nn.Sequential(*block))
            cin = channels[i]
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(
            nn.Conv2d(cin, code_dim, 4, 1, 0), nn.BatchNorm2d(code_dim), nn.Tanh()
        )

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        if _conv(self.head[0]).weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h if i == 0 else self.pool(h))
            skips.append(h)
        code = self.head(self.pool(h))
        return code.flatten(1), skips


class VGGDecoder(nn.Module):
    """Code vector + skip maps -> frame in [0,1] (mirror of :class:`VGGEncoder`).

    ``layers`` are conv layers per block, finest first, with the output transposed convolution
    counted in the finest block (the authors' 128 px decoder: 2, 2, 2, 2, 2).

    Shapes: ``forward(code, skips)`` with ``code`` ``N,code_dim`` and ``skips`` as returned by the
    encoder for the same ``N`` returns ``N,3,S,S``.

    For generation, where the skips (of the reference frame) stay the same for a whole clip,
    :meth:`skip_terms` computes once what the skips add to each block's first convolution and
    :meth:`step` decodes a frame from them: the same function as ``forward`` with no
    concatenation and less arithmetic per frame (the authors' 128 px decoder: 12.4 -> 7.3 GFLOP).
    """

    def __init__(
        self,
        image_size: int = 128,
        code_dim: int = 128,
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        layers: Sequence[int] = (2, 2, 2, 2, 2),
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        n = _check(image_size, channels, layers)
        self.image_size = image_size
        self.code_dim = code_dim
        top = channels[n - 1]
        self.stem = nn.Sequential(
            nn.ConvTranspose2d(code_dim, top, 4, 1, 0),
            nn.BatchNorm2d(top),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        blocks: list[nn.Module] = []
        for i in reversed(range(n)):
            c = channels[i]
            seq: list[nn.Module] = []
            cin = 2 * c  # previous block's output (c) + the skip map of this resolution (c)
            if i > 0:
                for j in range(layers[i]):
                    cout = channels[i - 1] if j == layers[i] - 1 else c
                    seq.append(_vgg_layer(cin, cout))
                    cin = cout
            else:
                for _ in range(layers[i] - 1):
                    seq.append(_vgg_layer(cin, c))
                    cin = c
                seq += [nn.ConvTranspose2d(cin, out_channels, 3, 1, 1), nn.Sigmoid()]
            blocks.append(nn.Sequential(*seq))
        # blocks[k] works at resolution index n-1-k (coarse to fine)
        self.blocks = nn.ModuleList(blocks)

    def forward(self, code: Tensor, skips: Sequence[Tensor]) -> Tensor:
        h = self.stem(code.view(code.shape[0], -1, 1, 1))
        n = len(self.blocks)
        for k, block in enumerate(self.blocks):
            skip = skips[n - 1 - k]
            h = block(torch.cat([self.up(h), skip], 1))
        return h

    def skip_terms(self, skips: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """What the skip maps add to each block's first convolution, coarse to fine.

        A convolution is linear in its input channels, so on ``cat([up(h), skip])`` it equals
        ``conv_h(up(h)) + conv_s(skip)`` with the weight split along its input channels (the
        bias goes with the first part). ``skips`` as returned by the encoder, ``N`` rows; returns
        per block the weight of the first part (a contiguous copy in the weight's memory format,
        so it is not re-laid out at every frame) and the second part ``N,C,s,s``, for
        :meth:`step`.
        """
        n = len(self.blocks)
        terms = []
        for k, block in enumerate(self.blocks):
            skip = skips[n - 1 - k]
            conv = _first_conv(_sequential(block))
            c = skip.shape[1]  # the skip is the last c input channels
            w = conv.weight
            layout = (
                torch.channels_last
                if w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
                else torch.contiguous_format
            )
            if isinstance(conv, nn.ConvTranspose2d):
                w_h, w_s = w[:-c], w[-c:]
                term = F.conv_transpose2d(skip, w_s, None, conv.stride, _padding(conv))
            else:
                w_h, w_s = w[:, :-c], w[:, -c:]
                term = F.conv2d(skip, w_s, None, conv.stride, conv.padding)
            terms.append((w_h.contiguous(memory_format=layout), term))
        return terms

    def step(self, code: Tensor, terms: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
        """``forward(code, skips)`` given ``terms = skip_terms(skips)``: ``N,code_dim`` ->
        ``N,3,S,S``."""
        h = self.stem(code.view(code.shape[0], -1, 1, 1))
        for module_block, (w_h, term) in zip(self.blocks, terms, strict=True):
            block = _sequential(module_block)
            x = self.up(h)
            conv = _first_conv(block)
            if isinstance(conv, nn.ConvTranspose2d):
                y = F.conv_transpose2d(x, w_h, conv.bias, conv.stride, _padding(conv))
            else:
                y = F.conv2d(x, w_h, conv.bias, conv.stride, conv.padding)
            y = y + term
            first = block[0]
            rest = list(first)[1:] if isinstance(first, nn.Sequential) else []
            for module in [*rest, *list(block)[1:]]:
                y = module(y)
            h = y
        return h


def _sequential(module: nn.Module) -> nn.Sequential:
    """``module``, typed as the :class:`nn.Sequential` every block of these networks is."""
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"expected an nn.Sequential block, got {type(module).__name__}")
    return module


def _conv(module: nn.Module) -> nn.Conv2d | nn.ConvTranspose2d:
    """``module``, typed as the (transposed) convolution it is by construction."""
    if not isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        raise TypeError(f"expected a Conv2d or ConvTranspose2d, got {type(module).__name__}")
    return module


def _first_conv(block: nn.Sequential) -> nn.Conv2d | nn.ConvTranspose2d:
    """The convolution that sees a decoder block's concatenated input."""
    first = block[0]
    return _conv(first[0] if isinstance(first, nn.Sequential) else first)


def _padding(conv: nn.ConvTranspose2d) -> tuple[int, ...]:
    """``conv.padding`` as the tuple it is: torch annotates the attribute ``str | tuple`` for
    every convolution, but a transposed one takes numbers only and stores them as a tuple."""
    padding = conv.padding
    if isinstance(padding, str):
        raise TypeError(f"ConvTranspose2d padding must be numeric, got {padding!r}")
    return padding
