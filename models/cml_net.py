"""Spiking conv net with CML downsampling (Spikformer / Spikingformer: ConvBN-MaxPool-LIF).

Each stage is ``conv3x3 (pad 1, no bias) -> BN`` followed, in a downsampling stage, by one of

- ``order="cml"`` (default): ``-> MaxPool2d(2) -> LIF`` -- max pooling of the pre-spike
  *currents* (the BN output), then the neuron;
- ``order="original"``: ``-> LIF -> MaxPool2d(2)`` -- the neuron, then max pooling of its
  binary *spikes* (an OR over each 2x2 window).

A stage that does not downsample is ``conv -> BN -> LIF``. The readout is a flatten of the last
stage's spikes (``readout="flatten"``) or their global average pool (``readout="gap"``), then a
``Linear(..., bias=False)``; logits are the mean over time of the readout. The small config uses
flatten: with GAP the 64 features are spike rates in [0, 1] and, at the default Adam lr 1e-3,
the logits grow an order of magnitude more slowly (measured: loss 2.18 vs 0.70 after 20 steps).

Small default (28x28 MNIST / Fashion-MNIST)::

    conv3x3(1->16)-BN-LIF                 28x28   (stem, no downsampling)
    conv3x3(16->32)-BN-maxpool2-LIF       28->14  (CML)
    conv3x3(32->64)-BN-maxpool2-LIF       14->7   (CML)
    flatten(64x7x7) -> Linear(3136->10, no bias) -> mean over T

``PUBLISHED_CONFIG`` is the Spikformer/Spikingformer conv tokenizer scale on 32x32 CIFAR
(widths 64/128/256/512, the last two stages downsample with CML); it is meant for GPU users and
is not trained here.

BatchNorm is a plain ``nn.BatchNorm2d`` applied per timestep (T folded into the batch), so in
eval mode it is a per-channel affine map that folds exactly into the preceding convolution at
export (``convert/export/cml_net.py``). beta must be a multiple of 1/4096 (see models.neuron).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from core.errors import ConfigError
from models.layers import SpikingModel, TrainingDefaults, image_shape, seq_to_ann
from models.neuron import LIF

ORDERS = ("cml", "original")
READOUTS = ("gap", "flatten")

PUBLISHED_CONFIG: dict = {
    "in_shape": [3, 32, 32],
    "channels": [64, 128, 256, 512],
    "downsample": [False, False, True, True],
    "n_out": 10,
    "beta": 0.5,
    "threshold": 1.0,
    "order": "cml",
    "readout": "gap",
}


class Stage(nn.Module):
    """conv3x3 -> BN [-> maxpool2 -> LIF (cml) | -> LIF -> maxpool2 (original)]."""

    def __init__(
        self, c_in: int, c_out: int, downsample: bool, order: str, beta: float, threshold: float
    ):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.lif = LIF(beta=beta, threshold=threshold)
        self.downsample = bool(downsample)
        self.order = order
        self.pool = nn.MaxPool2d(2) if self.downsample else None

    def extra_repr(self) -> str:
        return f"downsample={self.downsample}, order={self.order!r}"

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [T, B, C, H, W] -> (output spikes, the LIF's own spikes if they differ, else None)."""
        cur = seq_to_ann(self.bn, seq_to_ann(self.conv, x))
        if not self.downsample:
            return self.lif(cur), None
        if self.order == "cml":
            return self.lif(seq_to_ann(self.pool, cur)), None
        s = self.lif(cur)
        return seq_to_ann(self.pool, s), s


class CMLNet(SpikingModel):
    """Input ``x [T, B, C, H, W]`` float (or ``[T, B, H, W]`` when C == 1); logits ``[B, n_out]``.

    Args:
        in_shape: (C, H, W); H and W must be divisible by 2 ** (number of downsampling stages).
        channels: output channels of each conv stage.
        downsample: per stage, whether it halves H and W with a 2x2 max pool.
        n_out: number of classes.
        beta, threshold: LIF parameters shared by every stage.
        order: ``"cml"`` (max pool of currents, before the LIF) or ``"original"`` (max pool of
            spikes, after the LIF).
        readout: ``"gap"`` (global average pool, then Linear(C_last, n_out)) or ``"flatten"``
            (Linear(C_last * h * w, n_out)); the Linear has no bias.
    """

    # Measured with these (the CLI's defaults then): MNIST, 1 epoch on the first 8000 images,
    # 94.04 % test (docs/model-zoo.md).
    TRAINING: ClassVar[TrainingDefaults] = TrainingDefaults(
        lr=2e-3, batch_size=64, schedule="cosine", epochs=1
    )

    def __init__(
        self,
        in_shape=(1, 28, 28),
        channels=(16, 32, 64),
        downsample=(False, True, True),
        n_out: int = 10,
        beta: float = 0.5,
        threshold: float = 1.0,
        order: str = "cml",
        readout: str = "flatten",
    ):
        super().__init__()
        in_shape = tuple(int(d) for d in in_shape)
        channels = [int(c) for c in channels]
        downsample = [bool(d) for d in downsample]
        if order not in ORDERS:
            raise ConfigError(f"order must be one of {ORDERS}, got {order!r}")
        if readout not in READOUTS:
            raise ConfigError(f"readout must be one of {READOUTS}, got {readout!r}")
        if not channels or len(channels) != len(downsample):
            raise ConfigError(
                f"channels and downsample need one entry per stage, got {channels} and {downsample}"
            )
        f = 2 ** sum(downsample)
        if len(in_shape) != 3 or in_shape[1] % f or in_shape[2] % f:
            raise ConfigError(
                f"CMLNet in_shape must be (C, H, W) with H and W divisible by {f} "
                f"({sum(downsample)} downsampling stages), got {in_shape}"
            )
        self.in_shape = in_shape
        self.order = order
        self.readout = readout
        self.beta = float(beta)
        self.threshold = float(threshold)
        c = in_shape[0]
        stages = []
        for c_out, d in zip(channels, downsample, strict=True):
            stages.append(Stage(c, c_out, d, order, beta, threshold))
            c = c_out
        self.stages = nn.ModuleList(stages)
        self.out_hw = (in_shape[1] // f, in_shape[2] // f)
        n_feat = c if readout == "gap" else c * self.out_hw[0] * self.out_hw[1]
        self.fc = nn.Linear(n_feat, int(n_out), bias=False)

    @property
    def lif_names(self) -> tuple[str, ...]:
        """Names of the spike records ``forward(..., return_spikes=True)`` returns (and of the
        exported populations): ``lif{i}`` per stage, ``or{i}`` for the pooled spikes of a
        downsampling stage in the original order."""
        names = []
        for i, st in enumerate(self.stages):
            names.append(f"lif{i}")
            if st.downsample and self.order == "original":
                names.append(f"or{i}")
        return tuple(names)

    @classmethod
    def default_config(cls, input_shape: Sequence[int], num_classes: int) -> dict:
        """The small CMLNet (channels 16/32/64, CML order, flatten readout) for images of
        ``input_shape`` (plain types only)."""
        return {
            "in_shape": list(image_shape(input_shape)),
            "channels": [16, 32, 64],
            "downsample": [False, True, True],
            "n_out": int(num_classes),
            "beta": 0.5,
            "threshold": 1.0,
            "order": "cml",
            "readout": "flatten",
        }

    def compute_logits(self, x: torch.Tensor, rec: dict | None) -> torch.Tensor:
        """Logits ``[B, n_out]``; records ``[T, B, C, H, W]`` under :attr:`lif_names`."""
        s = x
        for i, st in enumerate(self.stages):
            s, pre = st(s)
            if rec is None:
                continue
            if pre is None:
                rec[f"lif{i}"] = s
            else:
                rec[f"lif{i}"] = pre
                rec[f"or{i}"] = s
        feat = s.mean(dim=(3, 4)) if self.readout == "gap" else s.flatten(2)
        return self.fc(feat).mean(0)
