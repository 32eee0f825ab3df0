"""A spiking network of my own, trained and deployed with neurodeploy (docs/custom-models.md).

    conv 3x3 (8 channels, bias) -> LIF -> average pool 2x2 -> flatten -> linear (no bias)

logits = the readout averaged over the T timesteps. Everything neurodeploy needs is here:
the model protocol of ``models/layers.py`` (``SpikingModel``: ``in_shape``,
``default_config``, ``compute_logits``, ``lif_names``) for ``python -m train``, and
``export_nir`` for ``python -m convert.to_nir``.
"""

from __future__ import annotations

import torch
from torch import nn

from models.layers import SpikingModel, TrainingDefaults, image_shape, seq_to_ann
from models.neuron import LIF


class MySNN(SpikingModel):
    lif_names = ("lif1",)  # the spike records' names = the NIR population names below
    TRAINING = TrainingDefaults(lr=5e-3, epochs=3)  # used for every flag not given

    def __init__(self, in_shape=(1, 8, 8), channels: int = 8, n_out: int = 10,
                 beta: float = 0.5, threshold: float = 1.0):
        super().__init__()
        self.in_shape = tuple(int(d) for d in in_shape)  # (C, H, W), H and W even
        c, h, w = self.in_shape
        self.conv = nn.Conv2d(c, channels, 3, padding=1)
        self.lif1 = LIF(beta=beta, threshold=threshold)  # beta: a multiple of 1/4096
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(channels * (h // 2) * (w // 2), n_out, bias=False)

    @classmethod
    def default_config(cls, input_shape, num_classes: int) -> dict:
        """Constructor arguments for a dataset (plain types: they go into the checkpoint)."""
        return {"in_shape": list(image_shape(input_shape)), "n_out": int(num_classes)}

    def compute_logits(self, x: torch.Tensor, rec: dict | None) -> torch.Tensor:
        """``x [T, B, C, H, W]`` -> logits ``[B, n_out]``; spikes into ``rec`` if asked."""
        s = self.lif1(seq_to_ann(self.conv, x))  # the conv sees T folded into the batch
        if rec is not None:
            rec["lif1"] = s
        return self.fc(seq_to_ann(self.pool, s).flatten(2)).mean(0)

    def export_nir(self, b) -> None:
        """The same network as NIR nodes, on the builder ``b`` (convert.nir_builder) whose
        ``"input"`` node has shape ``in_shape``."""
        x = b.conv("input", self.conv, name="conv")
        x = b.lif(x, module=self.lif1, name="lif1")
        x = b.avgpool(x, 2, name="pool")
        b.output(b.linear(b.flatten(x, name="flatten"), self.fc, name="fc"))
