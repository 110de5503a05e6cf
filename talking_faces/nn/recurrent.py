"""Recurrent blocks of SVG-LP / ldm: the frame predictor and the Gaussian LSTMs.

frame codes, audio codes -> :class:`GaussianLSTM` (posterior over frames, prior over audio) -> z
-> :class:`LSTM` frame predictor ([previous frame code, z] -> next frame code) -> decoder.

Both are "embed -> stacked LSTM -> linear head" as in Denton and Fergus (2018). They run either
over a whole sequence (``forward``, used with teacher forcing where every input is known) or one
step at a time (``step``, used when generating, where the next input depends on the last output);
both paths share the same ``nn.LSTM`` weights, so they compute the same function. ``step`` writes
the LSTM cell out (:func:`lstm_step`) instead of calling ``nn.LSTM`` on a length-1 sequence: on
CPU (oneDNN) that costs 3.6 ms a call for the 2-layer, 256-wide predictor at batch 1, the cell
0.3 ms. The Gaussian head returns a log-variance (the authors' ldm code returns a standard
deviation under that name and feeds it to a KL that expects a log-variance; we do not copy that).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: (h, c) of a stacked LSTM, each ``layers,N,hidden``
State = tuple[Tensor, Tensor]


class LSTM(nn.Module):
    """Linear embedding, ``layers`` stacked LSTM cells, linear output with tanh.

    Shapes: ``forward(x)`` with ``x`` ``N,T,input_size`` returns ``(y N,T,output_size, state)``;
    ``step(x, state)`` with ``x`` ``N,input_size`` returns ``(y N,output_size, state)``.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Linear(input_size, hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers=layers, batch_first=True)
        self.out = nn.Sequential(nn.Linear(hidden_size, output_size), nn.Tanh())

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        h, state = self.lstm(self.embed(x), state)
        return self.out(h), state

    def step(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        h, state = lstm_step(self.lstm, self.embed(x), state)
        return self.out(h), state


class GaussianLSTM(nn.Module):
    """Linear embedding, stacked LSTM cells, linear heads for a diagonal Gaussian.

    Shapes: ``forward(x)`` with ``x`` ``N,T,input_size`` returns ``(mu, logvar, state)`` with
    ``mu``, ``logvar`` ``N,T,output_size``; ``step`` does one time step on ``N,input_size``.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Linear(input_size, hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers=layers, batch_first=True)
        self.mu = nn.Linear(hidden_size, output_size)
        self.logvar = nn.Linear(hidden_size, output_size)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, Tensor, State]:
        h, state = self.lstm(self.embed(x), state)
        return self.mu(h), self.logvar(h), state

    def step(self, x: Tensor, state: State | None = None) -> tuple[Tensor, Tensor, State]:
        h, state = lstm_step(self.lstm, self.embed(x), state)
        return self.mu(h), self.logvar(h), state


def lstm_step(lstm: nn.LSTM, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
    """One time step of a stacked, unidirectional ``nn.LSTM`` (with biases) on ``x`` ``N,input``.

    PyTorch's LSTM equations with its weights (gates i, f, g, o): ``c' = sigmoid(f) c +
    sigmoid(i) tanh(g)``, ``h' = sigmoid(o) tanh(c')``, layer by layer. Returns the top layer's
    ``h'`` ``N,hidden`` and the new state (``layers,N,hidden`` each).
    """
    n, layers, hidden = x.shape[0], lstm.num_layers, lstm.hidden_size
    if state is None:
        zeros = x.new_zeros(layers, n, hidden)
        state = (zeros, zeros)
    hs, cs = [], []
    inp = x
    for k in range(layers):
        gates = F.linear(inp, getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"bias_ih_l{k}"))
        gates = gates + F.linear(
            state[0][k], getattr(lstm, f"weight_hh_l{k}"), getattr(lstm, f"bias_hh_l{k}")
        )
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * state[1][k] + torch.sigmoid(i) * torch.tanh(g)
        inp = torch.sigmoid(o) * torch.tanh(c)
        hs.append(inp)
        cs.append(c)
    return inp, (torch.stack(hs), torch.stack(cs))


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Sample ``mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` drawn from ``generator``."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(q || p) of diagonal Gaussians given log-variances, summed over the last dim.

    ``0.5 * (logvar_p - logvar_q + (exp(logvar_q) + (mu_q - mu_p)**2) / exp(logvar_p) - 1)``.
    """
    kl = 0.5 * (
        logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) * torch.exp(-logvar_p) - 1.0
    )
    return kl.sum(-1)
