"""Convolutional SNN::

conv1 (3x3, pad 1, bias) -> lif1 -> pool1 (avg 2) -> conv2 (3x3, pad 1, bias) -> lif2
-> pool2 (avg 2) -> flatten -> fc (no bias); logits = mean over time of fc output.
"""

from __future__ import annotations

import torch
from torch import nn

from core.errors import ConfigError
from models.neuron import LIF


class ConvSNN(nn.Module):
    """Input ``x [T, B, C, H, W]`` (or ``[T, B, H, W]`` when C == 1); returns logits ``[B, n_out]``.

    Works for any ``H, W`` divisible by 4 (28x28 MNIST, 8x8 digits). The attribute names
    ``conv1, lif1, pool1, conv2, lif2, pool2, fc`` are part of the export contract.
    """

    lif_names = ("lif1", "lif2")
    # Conv weights start at this multiple of PyTorch's default scale (uniform +-1/sqrt(fan_in)):
    # at 1x, pixel inputs and pooled spikes drive few LIF neurons over threshold and the net
    # starts silent (measured: MNIST, 10k samples, 1 epoch: 77% at 1x, 88% at 3x; digits
    # 3 epochs: 11% (no spike ever reaches the readout) at 1x, 41% at 3x).
    init_gain = 3.0

    def __init__(
        self,
        in_shape=(1, 28, 28),
        c1: int = 8,
        c2: int = 16,
        n_out: int = 10,
        beta: float = 0.5,
        threshold: float = 1.0,
    ):
        super().__init__()
        in_shape = tuple(int(d) for d in in_shape)
        if len(in_shape) != 3 or in_shape[1] % 4 or in_shape[2] % 4:
            raise ConfigError(
                f"ConvSNN in_shape must be (C, H, W) with H and W divisible by 4, got {in_shape}"
            )
        self.in_shape = in_shape
        c_in, h, w = in_shape
        self.conv1 = nn.Conv2d(c_in, c1, 3, padding=1)
        self.lif1 = LIF(beta=beta, threshold=threshold)
        self.pool1 = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.lif2 = LIF(beta=beta, threshold=threshold)
        self.pool2 = nn.AvgPool2d(2)
        self.fc = nn.Linear(c2 * (h // 4) * (w // 4), n_out, bias=False)
        with torch.no_grad():
            self.conv1.weight.mul_(self.init_gain)
            self.conv2.weight.mul_(self.init_gain)

    def forward(self, x: torch.Tensor, return_spikes: bool = False):
        """Logits ``[B, n_out]``; with ``return_spikes`` also ``{"lif1": ..., "lif2": ...}``
        (each ``[T, B, C, H, W]``)."""
        if x.dim() == 4 and self.in_shape[0] == 1:
            x = x.unsqueeze(2)
        if x.dim() != 5 or tuple(x.shape[2:]) != self.in_shape:
            raise ConfigError(
                f"ConvSNN expects input [T, B, {', '.join(map(str, self.in_shape))}], "
                f"got shape {tuple(x.shape)}"
            )
        t, b = x.shape[:2]

        def fold(f, y):  # apply a per-frame module to the T*B folded batch
            z = f(y.reshape(t * b, *y.shape[2:]))
            return z.reshape(t, b, *z.shape[1:])

        s1 = self.lif1(fold(self.conv1, x))
        s2 = self.lif2(fold(self.conv2, fold(self.pool1, s1)))
        p2 = fold(self.pool2, s2)
        logits = self.fc(p2.flatten(2)).mean(0)
        if return_spikes:
            return logits, {"lif1": s1, "lif2": s2}
        return logits

    def forward_with_spikes(self, x: torch.Tensor):
        return self.forward(x, return_spikes=True)
