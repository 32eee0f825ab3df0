"""Spikformer with CML downsampling: a spiking tokenizer and one spiking self-attention block.

All tensors are time-major, ``[T, B, C, H, W]``; a token is one spatial position of the
tokenizer's output map and its ``dim`` channels are the token's features (so every per-token
linear layer is a 1x1 convolution, and BatchNorm is a per-channel ``BatchNorm2d``).

Tokenizer (Spikformer's SPS, CML variant): conv3x3-BN-LIF stages; the last two downsample with
CML, ``conv3x3 -> BN -> MaxPool2d(2) -> LIF`` (max pooling of the pre-spike currents)::

    conv3x3(1->8)-BN-LIF                  28x28
    conv3x3(8->16)-BN-maxpool2-LIF        28->14
    conv3x3(16->dim)-BN-maxpool2-LIF      14->7    = 49 tokens of dim 64: x0 (spikes)

Encoder block (``depth`` of them; residuals add spikes, so the stream is a sum of binary spike
maps and every linear layer is applied to spikes -- on the chip as one binary projection per
summand, through the same weights)::

    q, k, v = LIF(BN(conv1x1(x)))                     x = sum of the stream's spike maps
    a[h]    = (q[h] k[h]ᵀ) v[h] * attn_scale          per head: integer counts (AND/popcount)
    s       = LIF_{threshold attn_threshold}(a)       no BN (Spikformer's attn_lif)
    p       = LIF(BN(conv1x1(s)))                     projection;   stream += [p]
    m       = LIF(BN(conv1x1(LIF(BN(conv1x1(x))))))   MLP dim -> mlp_ratio*dim -> dim, x = sum
                                                                    stream += [m]

Head: the stream's sum, averaged over tokens (global average pool), ``Linear(dim, n_out,
bias=False)``, mean over T. Small default: dim 64, 4 heads (head dim 16), depth 1, MLP
ratio 4, T = 4. Every LIF is ``models.neuron.LIF`` (beta 0.5, threshold 1.0; the
attention LIF 0.5), arctan surrogate.

``forward(x, return_spikes=True)`` also returns every population's spikes by the names the
exporter (``convert/export/cml_spikformer.py``) gives them: ``tok{i}``, ``b{i}_q``, ``b{i}_k``,
``b{i}_v``, ``b{i}_attn``, ``b{i}_proj``, ``b{i}_fc1``, ``b{i}_fc2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from core.errors import ConfigError
from core.fixedpoint import spike_attention
from models.layers import SpikingModel, TrainingDefaults, image_shape, seq_to_ann
from models.neuron import LIF

# Spikformer-4-384 scale on CIFAR (32x32 -> 8x8 tokens); for GPU users, not trained here.
PUBLISHED_CONFIG: dict = {
    "in_shape": [3, 32, 32],
    "tokenizer_channels": [48, 96, 192],
    "dim": 384,
    "heads": 12,
    "depth": 4,
    "mlp_ratio": 4,
    "n_out": 10,
    "beta": 0.5,
    "threshold": 1.0,
    "attn_threshold": 0.5,
    "attn_scale": 0.125,
}


class ConvBNLIF(nn.Module):
    """conv (no bias) -> BN [-> MaxPool2d(2), of currents: CML] -> LIF."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        beta: float,
        threshold: float,
        downsample: bool = False,
    ):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.downsample = bool(downsample)
        self.pool = nn.MaxPool2d(2) if self.downsample else None
        self.lif = LIF(beta=beta, threshold=threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cur = seq_to_ann(self.bn, seq_to_ann(self.conv, x))
        if self.pool is not None:
            cur = seq_to_ann(self.pool, cur)
        return self.lif(cur)


class Block(nn.Module):
    """Spiking self-attention + spiking MLP; ``forward(stream)`` returns the new spike maps."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: int,
        beta: float,
        threshold: float,
        attn_threshold: float,
        attn_scale: float,
    ):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = int(heads)
        self.attn_scale = float(attn_scale)
        self.q = ConvBNLIF(dim, dim, 1, beta, threshold)
        self.k = ConvBNLIF(dim, dim, 1, beta, threshold)
        self.v = ConvBNLIF(dim, dim, 1, beta, threshold)
        self.attn_lif = LIF(beta=beta, threshold=attn_threshold)
        self.proj = ConvBNLIF(dim, dim, 1, beta, threshold)
        self.fc1 = ConvBNLIF(dim, dim * int(mlp_ratio), 1, beta, threshold)
        self.fc2 = ConvBNLIF(dim * int(mlp_ratio), dim, 1, beta, threshold)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``attn_scale * (q kᵀ) v`` per head on spike maps [T, B, dim, H, W] (the arithmetic
        of core.fixedpoint.spike_attention, here in float with gradients)."""
        shape = q.shape
        flat = [x.reshape(*shape[:3], -1) for x in (q, k, v)]
        return (spike_attention(*flat, self.heads) * self.attn_scale).reshape(shape)

    def forward(self, stream: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        x = sum(stream[1:], stream[0])
        q, k, v = self.q(x), self.k(x), self.v(x)
        s = self.attn_lif(self.attention(q, k, v))
        p = self.proj(s)
        h = self.fc1(x + p)
        m = self.fc2(h)
        return {"q": q, "k": k, "v": v, "attn": s, "proj": p, "fc1": h, "fc2": m}


class CMLSpikformer(SpikingModel):
    """Input ``x [T, B, C, H, W]`` float (or ``[T, B, H, W]`` when C == 1); logits ``[B, n_out]``.

    Args:
        in_shape: (C, H, W); H and W must be divisible by 4 (two CML downsamplings).
        tokenizer_channels: output channels of the tokenizer stages before the last one (the
            last one outputs ``dim``); the last two stages downsample.
        dim, heads, depth, mlp_ratio: token features, attention heads, encoder blocks, MLP
            hidden width factor.
        n_out: classes. beta, threshold: every LIF; attn_threshold: the LIF after the
            attention product; attn_scale: Spikformer's 0.125.
    """

    # lr 1e-2 and batch 32 from a probe; MNIST, 1 epoch on the first 30 000 images: 96.37 % test
    # (docs/models/cml_spikformer.md; at lr 2e-3, batch 64 the GAP head learns slowly).
    TRAINING: ClassVar[TrainingDefaults] = TrainingDefaults(
        lr=1e-2, batch_size=32, schedule="cosine", epochs=1
    )

    def __init__(
        self,
        in_shape=(1, 28, 28),
        tokenizer_channels=(8, 16),
        dim: int = 32,
        heads: int = 4,
        depth: int = 1,
        mlp_ratio: int = 4,
        n_out: int = 10,
        beta: float = 0.5,
        threshold: float = 1.0,
        attn_threshold: float = 0.5,
        attn_scale: float = 0.125,
    ):
        super().__init__()
        in_shape = tuple(int(d) for d in in_shape)
        chans = [int(c) for c in tokenizer_channels] + [int(dim)]
        if len(chans) < 2:
            raise ConfigError("the tokenizer needs at least two stages (both downsample)")
        if len(in_shape) != 3 or in_shape[1] % 4 or in_shape[2] % 4:
            raise ConfigError(
                f"CMLSpikformer in_shape must be (C, H, W) with H and W divisible "
                f"by 4 (two CML downsamplings), got {in_shape}"
            )
        if int(depth) < 1:
            raise ConfigError("depth must be at least 1")
        self.in_shape = in_shape
        self.dim = int(dim)
        self.heads = int(heads)
        stages, c = [], in_shape[0]
        for i, c_out in enumerate(chans):
            stages.append(ConvBNLIF(c, c_out, 3, beta, threshold, downsample=i >= len(chans) - 2))
            c = c_out
        self.tokenizer = nn.ModuleList(stages)
        self.blocks = nn.ModuleList(
            Block(self.dim, heads, mlp_ratio, beta, threshold, attn_threshold, attn_scale)
            for _ in range(int(depth))
        )
        self.tokens_hw = (in_shape[1] // 4, in_shape[2] // 4)
        self.head = nn.Linear(self.dim, int(n_out), bias=False)

    @property
    def lif_names(self) -> tuple[str, ...]:
        names = [f"tok{i}" for i in range(len(self.tokenizer))]
        for i in range(len(self.blocks)):
            names += [f"b{i}_{n}" for n in ("q", "k", "v", "attn", "proj", "fc1", "fc2")]
        return tuple(names)

    @classmethod
    def default_config(cls, input_shape: Sequence[int], num_classes: int) -> dict:
        """The small CMLSpikformer (tokenizer 8/16 channels, dim 64, 4 heads, depth 1) for
        images of ``input_shape`` (plain types only)."""
        return {
            "in_shape": list(image_shape(input_shape)),
            "tokenizer_channels": [8, 16],
            "dim": 64,
            "heads": 4,
            "depth": 1,
            "mlp_ratio": 4,
            "n_out": int(num_classes),
            "beta": 0.5,
            "threshold": 1.0,
            "attn_threshold": 0.5,
            "attn_scale": 0.125,
        }

    def compute_logits(self, x: torch.Tensor, rec: dict | None) -> torch.Tensor:
        """Logits ``[B, n_out]``; records every population's spikes ``[T, B, C, H, W]``
        under :attr:`lif_names`."""
        s = x
        for i, st in enumerate(self.tokenizer):
            s = st(s)
            if rec is not None:
                rec[f"tok{i}"] = s
        stream = [s]
        for i, blk in enumerate(self.blocks):
            out = blk(stream)
            stream += [out["proj"], out["fc2"]]
            if rec is not None:
                rec.update({f"b{i}_{k}": v for k, v in out.items()})
        feat = sum(stream[1:], stream[0]).mean(dim=(3, 4))  # [T, B, dim]
        return self.head(feat).mean(0)
