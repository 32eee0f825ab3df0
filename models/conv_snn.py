"""Convolutional SNN::

conv1 (3x3, pad 1, bias) -> lif1 -> pool1 (avg 2) -> conv2 (3x3, pad 1, bias) -> lif2
-> pool2 (avg 2) -> flatten -> fc (no bias); logits = mean over time of fc output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from core.errors import ConfigError
from models.layers import SpikingModel, TrainingDefaults, image_shape, seq_to_ann
from models.neuron import LIF


class ConvSNN(SpikingModel):
    """Input ``x [T, B, C, H, W]`` (or ``[T, B, H, W]`` when C == 1); returns logits ``[B, n_out]``.

    Works for any ``H, W`` divisible by 4 (28x28 MNIST, 8x8 digits). The attribute names
    ``conv1, lif1, pool1, conv2, lif2, pool2, fc`` are part of the export contract.
    """

    lif_names = ("lif1", "lif2")
    # Measured with these (the CLI's defaults then): MNIST 1 epoch, 95.41 % test
    # (docs/model-zoo.md; commit 52e6548).
    TRAINING: ClassVar[TrainingDefaults] = TrainingDefaults(
        lr=2e-3, batch_size=64, schedule="cosine", epochs=1
    )
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

    @classmethod
    def default_config(cls, input_shape: Sequence[int], num_classes: int) -> dict:
        """8 and 16 channels, beta 0.5, threshold 1.0, for images of ``input_shape``."""
        return {"in_shape": list(image_shape(input_shape)), "c1": 8, "c2": 16,
                "n_out": int(num_classes), "beta": 0.5, "threshold": 1.0}

    def compute_logits(self, x: torch.Tensor, rec: dict | None) -> torch.Tensor:
        """Logits ``[B, n_out]``; records ``lif1``, ``lif2`` (each ``[T, B, C, H, W]``)."""
        s1 = self.lif1(seq_to_ann(self.conv1, x))
        s2 = self.lif2(seq_to_ann(self.conv2, seq_to_ann(self.pool1, s1)))
        p2 = seq_to_ann(self.pool2, s2)
        if rec is not None:
            rec.update(lif1=s1, lif2=s2)
        return self.fc(p2.flatten(2)).mean(0)
