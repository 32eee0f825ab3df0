"""Fully connected SNN: ``fc1 (bias) -> lif1 -> fc2 (no bias)``, readout averaged over time."""

from __future__ import annotations

import torch
from torch import nn

from core.errors import ConfigError
from models.neuron import LIF


class FCSNN(nn.Module):
    """Input ``x [T, B, n_in]`` float; returns logits ``[B, n_out] = mean_t fc2(lif1(fc1(x)))``.

    The readout ``fc2`` has no bias. The attribute names ``fc1``, ``lif1``, ``fc2`` are part of
    the export contract.
    """

    lif_names = ("lif1",)

    def __init__(
        self,
        n_in: int = 784,
        n_hidden: int = 256,
        n_out: int = 10,
        beta: float = 0.5,
        threshold: float = 1.0,
    ):
        super().__init__()
        self.n_in, self.n_hidden, self.n_out = int(n_in), int(n_hidden), int(n_out)
        self.fc1 = nn.Linear(self.n_in, self.n_hidden)
        self.lif1 = LIF(beta=beta, threshold=threshold)
        self.fc2 = nn.Linear(self.n_hidden, self.n_out, bias=False)

    def forward(self, x: torch.Tensor, return_spikes: bool = False):
        """Logits ``[B, n_out]``; with ``return_spikes`` also ``{"lif1": [T, B, n_hidden]}``."""
        if x.dim() > 3:
            x = x.flatten(2)
        if x.dim() != 3 or x.shape[-1] != self.n_in:
            raise ConfigError(
                f"FCSNN expects input [T, B, {self.n_in}], got shape {tuple(x.shape)}")
        s1 = self.lif1(self.fc1(x))
        logits = self.fc2(s1).mean(0)
        if return_spikes:
            return logits, {"lif1": s1}
        return logits

    def forward_with_spikes(self, x: torch.Tensor):
        """``(logits, {"lif1": spikes})``."""
        return self.forward(x, return_spikes=True)
