"""Spiking multiscale attention (SMA) and attention zone-out (AZO): a VGG-lite or a
membrane-shortcut ResNet with one SMA block (docs/models/sma_net.md states every assumption).

All tensors are time-major, ``[T, B, C, H, W]``. Every LIF is ``models.neuron.LIF`` (beta 0.5,
threshold 1.0, arctan surrogate); every BatchNorm is a per-frame ``BatchNorm2d`` (folds into the
conv before it at export).

**SMA block** (``block="sma"``), on input spikes ``x`` with ``c`` output channels::

    S_k   = LIF(BN(conv_k(x)))            k in kernels (1, 3, 5, 7; padding k // 2), binary
    z     = GAP_{H,W}(sum_k S_k)          [T, B, c]  spike rates of the summed branches
    a     = K * softmax_k(fc2(ReLU(fc1(mean_t z))))   [B, K, c]  channel weights per scale
    b     = T * softmax_t(fc_t(z))        [B, T]     time weights (mix all T steps: non-causal)
    O[t]  = b[t] * sum_k a[k] * S_k[t]    [T, B, c, H, W]  graded (real-valued) output

``K *`` and ``T *`` make uniform attention the plain sum of the branches at every step
(``block="multiscale"``, the no-attention ablation); ``block="conv"`` is a single
conv3x3-BN-LIF (the single-scale baseline of the same output width).

**AZO** (``azo > 0``, training mode only): each position (t >= 1, channel) gets the attention
score ``b[t] * max_k a[k, c]``; per sample, the ``azo`` fraction of positions with the lowest
scores take their previous timestep's value, ``O[t, c] := O[t - 1, c]`` (a zone-out over the
least-attended positions: each batch trains a different sub-network, a pseudo-ensemble).
Evaluation is plain SMA.

**Deployable (static) attention.** The attention weights depend on the whole sample (all T
steps), so no chip computes them causally. In training mode the block keeps a running mean of
``a`` over batches (``attn_running_mean`` [K, c], momentum 0.1, as BatchNorm's statistics);
:meth:`SMANet.use_static_attention` makes the forward pass use it and the time weight 1 at every
step (the average of ``b`` over steps is exactly 1 by construction). That is the exact integer
form the exporter folds into the readout weights (``convert/export/sma_net.py``).

**Net** (``arch="vgg"``): ``stages`` of conv3x3-BN[-maxpool2]-LIF (CML: max pooling of the
pre-spike currents), the block, ``flatten -> Linear(no bias)``, mean over T.
``arch="msresnet"`` (MS-ResNet, membrane shortcut): a stem conv3x3-BN (currents ``u``) and
``res_blocks`` blocks ``u += BN(conv3x3(block(LIF(u))))`` -- the shortcut adds currents (the
membrane input), never spikes -- then ``LIF(u)``, flatten, Linear. Every block but the last is
``conv``-style (conv3x3-BN-LIF); the last is the configured ``block``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ConfigError
from models.layers import SpikingModel, TrainingDefaults, image_shape, seq_to_ann
from models.neuron import LIF

ARCHS = ("vgg", "msresnet")
BLOCKS = ("sma", "multiscale", "conv")
#: BatchNorm-style momentum of the running mean of the channel/scale attention.
ATTN_MOMENTUM = 0.1

# ImageNet-scale SMA/AZO nets are 104-layer MS-ResNets; this is the CIFAR-size configuration a
# GPU user can train (widths of MS-ResNet-18's first stages); not trained here.
PUBLISHED_CONFIG: dict = {
    "in_shape": [3, 32, 32],
    "arch": "vgg",
    "channels": [64, 128, 256],
    "downsample": [False, True, True],
    "block_channels": 256,
    "kernels": [1, 3, 5, 7],
    "block": "sma",
    "reduction": 4,
    "azo": 0.25,
    "res_blocks": 1,
    "n_out": 10,
    "beta": 0.5,
    "threshold": 1.0,
}


class ConvBNLIF(nn.Module):
    """conv_k (no bias, padding k // 2) -> BN [-> MaxPool2d(2) of currents: CML] -> LIF."""

    def __init__(self, c_in: int, c_out: int, kernel: int, beta: float, threshold: float,
                 downsample: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.downsample = bool(downsample)
        self.pool = nn.MaxPool2d(2) if self.downsample else None
        self.lif = LIF(beta=beta, threshold=threshold)

    def current(self, x: torch.Tensor) -> torch.Tensor:
        """The LIF's input current [T, B, c_out, h, w] (after the optional max pool)."""
        cur = seq_to_ann(self.bn, seq_to_ann(self.conv, x))
        return seq_to_ann(self.pool, cur) if self.pool is not None else cur

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.current(x))


class SMABlock(nn.Module):
    """Multiscale branches re-weighted by channel and time attention (module docstring).

    ``forward(x) -> (O [T, B, c, H, W], {branch name: spikes})``; the branch names are
    ``k{kernel}`` (``k3`` alone for ``block="conv"``).
    """

    def __init__(self, c_in: int, c_out: int, kernels: Sequence[int], block: str,
                 reduction: int, azo: float, beta: float, threshold: float):
        super().__init__()
        if block not in BLOCKS:
            raise ConfigError(f"block must be one of {BLOCKS}, got {block!r}")
        kernels = [int(k) for k in (kernels if block != "conv" else (3,))]
        if not kernels or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ConfigError(f"kernels must be odd and >= 1, got {kernels}")
        if not 0 <= float(azo) < 1:
            raise ConfigError(f"azo (zone-out fraction) must be in [0, 1), got {azo}")
        self.block = block
        self.kernels = kernels
        self.azo = float(azo)
        self.branches = nn.ModuleList(ConvBNLIF(c_in, c_out, k, beta, threshold)
                                      for k in kernels)
        self.static = False
        n_k = len(kernels)
        if block == "sma":
            hidden = max(int(c_out) // int(reduction), 4)
            self.fc1 = nn.Linear(c_out, hidden)
            self.fc2 = nn.Linear(hidden, n_k * c_out)
            self.fc_t = nn.Linear(c_out, 1)
        self.register_buffer("attn_running_mean", torch.ones(n_k, c_out))

    @property
    def names(self) -> list[str]:
        """Branch population names, in order."""
        return [f"k{k}" for k in self.kernels]

    def attention(self, spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel/scale weights ``a [B, K, c]`` (sum K over k) and time weights ``b [B, T]``
        (sum T over t) of the stacked branch spikes ``[K, T, B, c, H, W]``."""
        z = spikes.sum(0).mean(dim=(3, 4))  # [T, B, c]
        k, t = spikes.shape[0], spikes.shape[1]
        g = self.fc2(F.relu(self.fc1(z.mean(0))))  # [B, K * c]
        a = k * torch.softmax(g.reshape(g.shape[0], k, -1), dim=1)
        b = t * torch.softmax(self.fc_t(z).squeeze(-1).transpose(0, 1), dim=1)  # [B, T]
        return a, b

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        spikes = torch.stack([br(x) for br in self.branches])  # [K, T, B, c, H, W]
        rec = dict(zip(self.names, spikes, strict=True))
        if self.block != "sma":
            return spikes.sum(0), rec
        if self.static:
            a = self.attn_running_mean  # [K, c]: the deployed (static) form
            return torch.einsum("kc,ktbchw->tbchw", a, spikes), rec
        a, b = self.attention(spikes)
        if self.training:
            with torch.no_grad():
                self.attn_running_mean.lerp_(a.mean(0), ATTN_MOMENTUM)
        out = torch.einsum("bkc,ktbchw->tbchw", a, spikes) * b.t()[:, :, None, None, None]
        if self.training and self.azo > 0 and out.shape[0] > 1:
            out = self._zone_out(out, a, b)
        return out, rec

    def _zone_out(self, out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """AZO: the ``azo`` fraction of (t >= 1, channel) positions of each sample with the
        lowest attention score ``b[t] * max_k a[k, c]`` take ``out[t - 1]``."""
        score = (b[:, 1:, None] * a.max(dim=1).values[:, None, :]).detach()  # [B, T-1, c]
        flat = score.reshape(score.shape[0], -1)
        n = int(self.azo * flat.shape[1])
        if n == 0:
            return out
        cut = flat.kthvalue(n, dim=1).values[:, None, None]
        zone = (score <= cut).transpose(0, 1)[..., None, None]  # [T-1, B, c, 1, 1]
        return torch.cat([out[:1], torch.where(zone, out[:-1], out[1:])])


class SMANet(SpikingModel):
    """Input ``x [T, B, C, H, W]`` float (or ``[T, B, H, W]`` when C == 1); logits ``[B, n_out]``.

    Args:
        in_shape: (C, H, W); H and W divisible by 2 ** (downsampling stages).
        arch: ``"vgg"`` or ``"msresnet"`` (membrane shortcut; see the module docstring).
        channels, downsample: the conv3x3-BN-LIF stages before the block (vgg), CML max pool
            where ``downsample``; for msresnet the stem is ``channels[0]`` wide, no pooling.
        block_channels: output channels of the block (vgg; msresnet keeps ``channels[0]``).
        kernels: the SMA branch kernel sizes (odd). block: ``"sma"``, ``"multiscale"`` (no
            attention) or ``"conv"`` (one conv3x3 branch). reduction: fc1's width divisor.
        azo: zone-out fraction (training only; 0 disables AZO).
        res_blocks: msresnet residual blocks (the last one is the configured ``block``).
        n_out, beta, threshold: classes and LIF parameters.

    Raises:
        ConfigError: an invalid combination of the above.
    """

    # lr 5e-3 from a probe on digits (the attention MLP learns slowly at 2e-3).
    TRAINING: ClassVar[TrainingDefaults] = TrainingDefaults(
        lr=5e-3, batch_size=64, schedule="cosine", epochs=3
    )

    def __init__(
        self,
        in_shape=(1, 28, 28),
        arch: str = "vgg",
        channels=(16, 32),
        downsample=(True, True),
        block_channels: int = 32,
        kernels=(1, 3, 5, 7),
        block: str = "sma",
        reduction: int = 4,
        azo: float = 0.25,
        res_blocks: int = 2,
        n_out: int = 10,
        beta: float = 0.5,
        threshold: float = 1.0,
    ):
        super().__init__()
        in_shape = tuple(int(d) for d in in_shape)
        channels = [int(c) for c in channels]
        downsample = [bool(d) for d in downsample]
        if arch not in ARCHS:
            raise ConfigError(f"arch must be one of {ARCHS}, got {arch!r}")
        if not channels or len(channels) != len(downsample):
            raise ConfigError(f"channels and downsample need one entry per stage, got "
                              f"{channels} and {downsample}")
        f = 2 ** sum(downsample) if arch == "vgg" else 1
        if len(in_shape) != 3 or in_shape[1] % f or in_shape[2] % f:
            raise ConfigError(f"SMANet in_shape must be (C, H, W) with H and W divisible by {f}, "
                              f"got {in_shape}")
        if arch == "msresnet" and int(res_blocks) < 1:
            raise ConfigError("msresnet needs res_blocks >= 1")
        self.in_shape = in_shape
        self.arch = arch
        self.beta, self.threshold = float(beta), float(threshold)
        c = in_shape[0]
        if arch == "vgg":
            stages = []
            for c_out, d in zip(channels, downsample, strict=True):
                stages.append(ConvBNLIF(c, c_out, 3, beta, threshold, downsample=d))
                c = c_out
            self.stages = nn.ModuleList(stages)
            self.sma = SMABlock(c, int(block_channels), kernels, block, reduction, azo,
                                beta, threshold)
            c = int(block_channels)
        else:
            w = channels[0]
            self.stem = nn.Conv2d(c, w, 3, padding=1, bias=False)
            self.stem_bn = nn.BatchNorm2d(w)
            n = int(res_blocks)
            self.res_lifs = nn.ModuleList(LIF(beta=beta, threshold=threshold) for _ in range(n))
            self.res_blocks = nn.ModuleList(
                SMABlock(w, w, kernels, block if i == n - 1 else "conv", reduction, azo,
                         beta, threshold) for i in range(n))
            self.res_convs = nn.ModuleList(nn.Conv2d(w, w, 3, padding=1, bias=False)
                                           for _ in range(n))
            self.res_bns = nn.ModuleList(nn.BatchNorm2d(w) for _ in range(n))
            self.final_lif = LIF(beta=beta, threshold=threshold)
            c = w
        self.out_hw = (in_shape[1] // f, in_shape[2] // f)
        self.fc = nn.Linear(c * self.out_hw[0] * self.out_hw[1], int(n_out), bias=False)

    @property
    def attention_blocks(self) -> list[SMABlock]:
        """The SMA blocks, in order."""
        return [self.sma] if self.arch == "vgg" else list(self.res_blocks)

    def use_static_attention(self, static: bool = True) -> SMANet:
        """Forward with the deployed form: the running-mean channel/scale weights and time
        weight 1 (module docstring); returns ``self``."""
        for blk in self.attention_blocks:
            blk.static = bool(static)
        return self

    @property
    def lif_names(self) -> tuple[str, ...]:
        """``s{i}`` per stage and ``sma_k{k}`` per branch (vgg); ``r{i}_in`` (the LIF on the
        residual currents), ``r{i}_k{k}`` and ``out`` (msresnet)."""
        if self.arch == "vgg":
            return (*(f"s{i}" for i in range(len(self.stages))),
                    *(f"sma_{n}" for n in self.sma.names))
        names = []
        for i, blk in enumerate(self.res_blocks):
            names += [f"r{i}_in", *(f"r{i}_{n}" for n in blk.names)]
        return (*names, "out")

    @classmethod
    def default_config(cls, input_shape: Sequence[int], num_classes: int) -> dict:
        """The small VGG-lite (stages 16/32, SMA block of 32 channels, kernels 1/3/5/7, AZO
        0.25) for images of ``input_shape``; images smaller than 16 px downsample once."""
        shape = image_shape(input_shape)
        small = min(shape[1:]) < 16
        return {
            "in_shape": list(shape),
            "arch": "vgg",
            "channels": [16, 32],
            "downsample": [False, True] if small else [True, True],
            "block_channels": 32,
            "kernels": [1, 3, 5, 7],
            "block": "sma",
            "reduction": 4,
            "azo": 0.25,
            "res_blocks": 2,
            "n_out": int(num_classes),
            "beta": 0.5,
            "threshold": 1.0,
        }

    def compute_logits(self, x: torch.Tensor, rec: dict | None) -> torch.Tensor:
        """Logits ``[B, n_out]``; records every population's spikes under :attr:`lif_names`."""
        if self.arch == "vgg":
            s = x
            for i, st in enumerate(self.stages):
                s = st(s)
                if rec is not None:
                    rec[f"s{i}"] = s
            out, br = self.sma(s)
            if rec is not None:
                rec.update({f"sma_{k}": v for k, v in br.items()})
        else:
            u = seq_to_ann(self.stem_bn, seq_to_ann(self.stem, x))
            for i, (lif, blk, conv, bn) in enumerate(zip(self.res_lifs, self.res_blocks,
                                                         self.res_convs, self.res_bns,
                                                         strict=True)):
                s = lif(u)
                o, br = blk(s)
                u = u + seq_to_ann(bn, seq_to_ann(conv, o))
                if rec is not None:
                    rec[f"r{i}_in"] = s
                    rec.update({f"r{i}_{k}": v for k, v in br.items()})
            out = self.final_lif(u)
            if rec is not None:
                rec["out"] = out
        return self.fc(out.flatten(2)).mean(0)


def tiny_config(arch: str = "vgg") -> dict:
    """The golden regression's tiny sma_net on 8x8 digits (tests/data/make_golden.py)."""
    return {"arch": arch, "channels": [4, 8], "downsample": [False, True], "block_channels": 8,
            "res_blocks": 1}
