"""Spiking DS-ResNet with multi-level firing (MLF) and tdBN (Feng et al., IJCAI 2022).

Pieces (time-major tensors ``[T, B, C, H, W]`` throughout):

- **MLF unit** (:class:`MLF`): K membranes (default 3, thresholds 0.6 / 1.6 / 2.6) receive the
  same input; each is our LIF with ``beta = 0.25`` (= 1024/4096), strict ``>`` and hard reset
  to 0, i.e. ``u_k = 0.25 * u_k * (1 - s_k[t-1]) + x[t]``, ``s_k = u_k > th_k``. Every level
  has a rectangular surrogate gradient (width 1, height 1) centred on its own threshold, so
  the K windows tile the input range ``(th_0 - 0.5, th_{K-1} + 0.5)``. The unit's output is
  the sum of the K binary spikes; the per-level spikes are kept for export and analysis.
- **tdBN** (:class:`TdBN`): BatchNorm over (T, B, H, W) per channel, the normalised value
  scaled by ``alpha * Vth`` before the affine (``y = gamma * alpha * Vth * x_hat + beta``).
  At inference it is a per-channel affine (:meth:`TdBN.fold`), folded into the preceding conv.
- **Dormant-suppressed block** (:class:`DSBlock`): ``MLF(BN(conv3x3(x)))``, then
  ``MLF(BN(conv3x3(.)))``, **then** the shortcut is added: the identity (the block input's
  spike counts) or ``conv1x1-BN-MLF`` when the shape changes. The block output is the sum of
  spike counts, passed on unchanged (no neuron after the addition).
- **Net** (:class:`DSResNet`): stem conv3x3-BN-MLF, three stages (strides 1/2/2), global
  average pool, ``Linear`` without bias, mean over T.

Population names (``return_spikes`` keys and NIR node names of the exporter) are
``{unit}_l{k}`` for level k of MLF unit ``unit`` (see :meth:`DSResNet.mlf_units`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ConfigError
from models.layers import SpikingModel, TrainingDefaults, image_shape, seq_to_ann
from models.neuron import validate_beta

MLF_THRESHOLDS = (0.6, 1.6, 2.6)
MLF_BETA = 0.25


class RectSpike(torch.autograd.Function):
    """Heaviside ``v > th`` forward; rectangular surrogate ``1/w`` on ``|v - th| < w/2``.

    ``th`` is a tensor broadcasting against ``v`` (one threshold per level).
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, th: torch.Tensor, width: float) -> torch.Tensor:
        ctx.save_for_backward(v, th)
        ctx.width = width
        return (v > th).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        v, th = ctx.saved_tensors
        w = ctx.width
        window = ((v - th).abs() < w / 2).to(grad_out.dtype) / w
        return grad_out * window, None, None


class _MLFFunction(torch.autograd.Function):
    """The whole MLF unit over time as one autograd node (BPTT written out by hand).

    Same arithmetic as :func:`mlf_reference` (plain autograd over :class:`RectSpike`), but
    with in-place updates and only ``v`` (float) and the spikes (bool) saved per step: on a
    CPU the many small elementwise graph nodes of the plain version dominate training time.
    Returns ``(count [T, B, ...], levels bool [T, K, B, ...])``; only the count is
    differentiable (the levels are the same spikes, kept for export and analysis).
    """

    @staticmethod
    def forward(ctx, x, th, beta, width, detach_reset):
        k = th.shape[0]
        t_steps = x.shape[0]
        vs = x.new_empty((t_steps, k, *x.shape[1:]))  # membrane before the spike test
        levels = torch.empty(vs.shape, dtype=torch.bool, device=x.device)
        post = torch.empty_like(vs[0])  # membrane after the reset
        zero = x.new_zeros(())
        for t in range(t_steps):
            if t == 0:
                vs[0].copy_(x[0].expand_as(post))
            else:
                torch.add(x[t], post, alpha=beta, out=vs[t])  # v = beta v + x, same x per level
            torch.gt(vs[t], th, out=levels[t])
            torch.where(levels[t], zero, vs[t], out=post)  # hard reset to 0
        count = levels.sum(1, dtype=x.dtype)
        ctx.save_for_backward(vs, levels, th)
        ctx.beta, ctx.width, ctx.detach_reset = beta, width, detach_reset
        ctx.mark_non_differentiable(levels)
        return count, levels

    @staticmethod
    def backward(ctx, g_count, g_levels):
        vs, levels, th = ctx.saved_tensors
        beta, w = ctx.beta, ctx.width
        if g_count is None:
            return None, None, None, None, None
        g_count = g_count.contiguous()
        dx = torch.empty_like(g_count)
        window = torch.empty_like(vs[0])
        bufs = [torch.empty_like(vs[0]), torch.empty_like(vs[0])]
        a = None  # dL/dv after the reset of step t (= beta * dL/dv at step t + 1)
        for t in reversed(range(vs.shape[0])):
            v = vs[t]
            torch.sub(v, th, out=window).abs_()
            window.lt_(w / 2)  # rectangular surrogate: 1 inside the window, else 0
            gs = bufs[t % 2]
            if a is None or ctx.detach_reset:
                gs.copy_(g_count[t].expand_as(gs))
            else:
                torch.addcmul(g_count[t], a, v, value=-1.0, out=gs)  # via s in v * (1 - s)
            gs.mul_(window)
            if w != 1.0:
                gs.mul_(1.0 / w)
            if a is not None:
                gs.add_(a.masked_fill_(levels[t], 0.0))  # via (1 - s) of the reset
            torch.sum(gs, 0, out=dx[t])
            a = gs.mul_(beta)
        return dx, None, None, None, None


def mlf_reference(x: torch.Tensor, thresholds, beta: float, width: float = 1.0,
                  detach_reset: bool = False) -> torch.Tensor:
    """Plain-autograd MLF: per-level spikes ``[T, K, B, ...]`` (float). For tests."""
    k = len(thresholds)
    th = torch.tensor(thresholds, dtype=x.dtype).reshape(k, *([1] * (x.dim() - 1)))
    v = x.new_zeros((k, *x.shape[1:]))
    out = []
    for t in range(x.shape[0]):
        v = beta * v + x[t]
        s = RectSpike.apply(v, th, width)
        v = v * (1 - (s.detach() if detach_reset else s))
        out.append(s)
    return torch.stack(out)


class MLF(nn.Module):
    """Multi-level firing unit over ``x [T, B, ...]``.

    ``forward`` returns ``(count, levels)``: the unit's output, the spike count in 0..K
    ``[T, B, ...]`` (differentiable), and the per-level binary spikes ``[T, K, B, ...]`` (bool).
    """

    def __init__(self, thresholds=MLF_THRESHOLDS, beta: float = MLF_BETA,
                 surrogate_width: float = 1.0, detach_reset: bool = False):
        super().__init__()
        self.thresholds = tuple(float(t) for t in thresholds)
        if not self.thresholds or any(t <= 0 for t in self.thresholds):
            raise ConfigError(f"MLF thresholds must be positive, got {thresholds!r}")
        self.beta = validate_beta(beta)
        if not surrogate_width > 0:
            raise ConfigError(f"surrogate_width must be positive, got {surrogate_width!r}")
        self.surrogate_width = float(surrogate_width)
        self.detach_reset = bool(detach_reset)

    @property
    def levels(self) -> int:
        return len(self.thresholds)

    def extra_repr(self) -> str:
        return (f"thresholds={self.thresholds}, beta={self.beta}, "
                f"surrogate_width={self.surrogate_width}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() < 2:
            raise ConfigError(f"MLF expects time-major input [T, B, ...], got {tuple(x.shape)}")
        th = torch.tensor(self.thresholds, dtype=x.dtype, device=x.device)
        th = th.reshape(self.levels, *([1] * (x.dim() - 1)))
        return _MLFFunction.apply(x.contiguous(), th, self.beta, self.surrogate_width,
                                  self.detach_reset)


class TdBN(nn.BatchNorm2d):
    """Threshold-dependent BatchNorm on ``x [T, B, C, H, W]``: statistics over (T, B, H, W).

    ``y = gamma * alpha * vth * (x - mean) / sqrt(var + eps) + beta`` per channel (the
    published code divides by ``sqrt(var) + eps``; we use the standard ``sqrt(var + eps)``).
    """

    def __init__(self, num_features: int, alpha: float = 1.0, vth: float = 0.6, **kw):
        super().__init__(num_features, **kw)
        self.alpha = float(alpha)
        self.vth = float(vth)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}, vth={self.vth}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        av = self.alpha * self.vth
        if self.training:
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
            mom = self.momentum if self.momentum is not None else \
                1.0 / float(self.num_batches_tracked)
            use_batch = True
        else:
            mom, use_batch = 0.0, False
        return seq_to_ann(
            lambda y: F.batch_norm(y, self.running_mean, self.running_var, self.weight * av,
                                   self.bias, use_batch, mom, self.eps),
            x,
        )

    @torch.no_grad()
    def fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference-mode ``(scale, shift)`` per channel: ``y = scale * x + shift``."""
        scale = self.weight * (self.alpha * self.vth) / torch.sqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return scale.detach().clone(), shift.detach().clone()


class ConvBNMLF(nn.Module):
    """conv (no bias) -> tdBN -> MLF; ``forward`` returns ``(count, levels)`` as :class:`MLF`."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, mlf_kw: dict,
                 bn_kw: dict):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
        self.bn = TdBN(c_out, **bn_kw)
        self.mlf = MLF(**mlf_kw)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mlf(self.bn(seq_to_ann(self.conv, x)))


class DSBlock(nn.Module):
    """Dormant-suppressed residual block. Input and output are spike counts ``[T, B, C, H, W]``.

    ``unit1``, ``unit2``: the main path's conv3x3-BN-MLF units; ``shortcut``: ``None``
    (identity) or a conv1x1-BN-MLF unit. Output = levels of ``unit2`` + shortcut term.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, mlf_kw: dict, bn_kw: dict):
        super().__init__()
        self.unit1 = ConvBNMLF(c_in, c_out, 3, stride, mlf_kw, bn_kw)
        self.unit2 = ConvBNMLF(c_out, c_out, 3, 1, mlf_kw, bn_kw)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = ConvBNMLF(c_in, c_out, 1, stride, mlf_kw, bn_kw)

    def forward(self, x: torch.Tensor, rec: dict | None = None, prefix: str = ""):
        c1, l1 = self.unit1(x)
        out, l2 = self.unit2(c1)
        units = [("unit1", l1), ("unit2", l2)]
        if self.shortcut is None:
            out = out + x
        else:
            c3, l3 = self.shortcut(x)
            out = out + c3
            units.append(("shortcut", l3))
        if rec is not None:
            for name, lv in units:
                _record(rec, f"{prefix}{name}", lv, x.dtype)
        return out


def _record(rec: dict, unit: str, levels: torch.Tensor, dtype: torch.dtype) -> None:
    for k in range(levels.shape[1]):
        rec[f"{unit}_l{k}"] = levels[:, k].to(dtype)


class DSResNet(SpikingModel):
    """DS-ResNet with MLF. Input ``x [T, B, C, H, W]`` (or ``[T, B, H, W]`` when C == 1);
    returns logits ``[B, n_out]`` = mean over T of ``fc(GAP(last block output))``.

    Args:
        in_shape: (C, H, W) of the input.
        widths: channels of the three stages; the stem has ``widths[0]`` channels.
        blocks: DS blocks per stage (``[2, 2, 2]``: resnet14; ``[3, 3, 3]``: resnet20).
        strides: stride of the first block of each stage.
        n_out: classes.
        thresholds: MLF level thresholds (K = len).
        beta: MLF membrane decay (a multiple of 1/4096).
        bn_alpha, bn_vth: tdBN scaling ``alpha * Vth``.
        surrogate_width: width (and 1/height) of each level's rectangular surrogate window.
    """

    # Adam 5e-3, batch 128: MNIST 97.70 % / Fashion-MNIST 85.52 % test after 1 epoch (fast
    # config); at lr 1e-3 the net learns slowly, 87.15 % (docs/models/ds_resnet.md).
    TRAINING: ClassVar[TrainingDefaults] = TrainingDefaults(
        lr=5e-3, batch_size=128, schedule="cosine", epochs=1
    )

    def __init__(
        self,
        in_shape=(1, 28, 28),
        widths=(16, 32, 64),
        blocks=(2, 2, 2),
        strides=(1, 2, 2),
        n_out: int = 10,
        thresholds=MLF_THRESHOLDS,
        beta: float = MLF_BETA,
        bn_alpha: float = 1.0,
        bn_vth: float = 0.6,
        surrogate_width: float = 1.0,
    ):
        super().__init__()
        in_shape = tuple(int(d) for d in in_shape)
        widths = [int(w) for w in widths]
        blocks = [int(n) for n in blocks]
        strides = [int(s) for s in strides]
        if len(in_shape) != 3:
            raise ConfigError(f"DSResNet in_shape must be (C, H, W), got {in_shape}")
        if not (len(widths) == len(blocks) == len(strides)) or not widths:
            raise ConfigError("widths, blocks and strides need one entry per stage")
        if any(n < 1 for n in blocks) or any(w < 1 for w in widths):
            raise ConfigError("every stage needs at least one block and one channel")
        self.in_shape = in_shape
        self.arch = {"widths": widths, "blocks": blocks, "strides": strides}
        mlf_kw = {"thresholds": tuple(thresholds), "beta": beta,
                  "surrogate_width": surrogate_width}
        bn_kw = {"alpha": bn_alpha, "vth": bn_vth}
        self.stem = ConvBNMLF(in_shape[0], widths[0], 3, 1, mlf_kw, bn_kw)
        self.stages = nn.ModuleList()
        c = widths[0]
        for w, n, s in zip(widths, blocks, strides, strict=True):
            stage = nn.ModuleList()
            for i in range(n):
                stage.append(DSBlock(c, w, s if i == 0 else 1, mlf_kw, bn_kw))
                c = w
            self.stages.append(stage)
        self.fc = nn.Linear(c, int(n_out), bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def blocks(self):
        """``(prefix, DSBlock)`` in execution order; prefix ``s{stage}b{block}_``."""
        for i, stage in enumerate(self.stages):
            for j, blk in enumerate(stage):
                yield f"s{i + 1}b{j}_", blk

    def mlf_units(self) -> list[tuple[str, ConvBNMLF]]:
        """Every conv-BN-MLF unit with its population-name prefix, in execution order."""
        out = [("stem", self.stem)]
        for prefix, blk in self.blocks():
            out += [(f"{prefix}unit1", blk.unit1), (f"{prefix}unit2", blk.unit2)]
            if blk.shortcut is not None:
                out.append((f"{prefix}shortcut", blk.shortcut))
        return out

    @property
    def lif_names(self) -> tuple[str, ...]:
        """``{unit}_l{k}`` for every level k of every MLF unit, in execution order."""
        return tuple(f"{unit}_l{k}" for unit, u in self.mlf_units() for k in range(u.mlf.levels))

    @classmethod
    def default_config(cls, input_shape: Sequence[int], num_classes: int) -> dict:
        """Small default (resnet14-like: widths 16/32/64, [2, 2, 2] blocks) for images of
        ``input_shape`` (plain types only). The published CIFAR-10 size is
        :func:`published_config` (resnet20, 64/128/256)."""
        return {
            "in_shape": list(image_shape(input_shape)),
            "widths": [16, 32, 64],
            "blocks": [2, 2, 2],
            "strides": [1, 2, 2],
            "n_out": int(num_classes),
            "thresholds": list(MLF_THRESHOLDS),
            "beta": MLF_BETA,
            "bn_alpha": 1.0,
            "bn_vth": 0.6,
            "surrogate_width": 1.0,
        }

    def compute_logits(self, x: torch.Tensor, rec: dict | None) -> torch.Tensor:
        """Logits ``[B, n_out]``; records ``[T, B, C, H, W]`` for every level of every MLF unit
        (``stem_l0``, ``s1b0_unit1_l2``, ...)."""
        h, levels = self.stem(x)
        if rec is not None:
            _record(rec, "stem", levels, x.dtype)
        for prefix, blk in self.blocks():
            h = blk(h, rec, prefix)
        pooled = h.mean(dim=(3, 4))  # global average pool: [T, B, C]
        return self.fc(pooled).mean(0)


def published_config(in_shape=(3, 32, 32), n_out: int = 10) -> dict:
    """The paper's resnet20 for CIFAR-10 (widths 64/128/256, [3, 3, 3] blocks, T = 4; SGD 0.1)."""
    return {**DSResNet.default_config(in_shape, n_out), "widths": [64, 128, 256],
            "blocks": [3, 3, 3]}


def tiny_config(in_shape=(1, 8, 8), n_out: int = 10) -> dict:
    """A very small net for tests (widths 4/8/8, one block per stage)."""
    return {**DSResNet.default_config(in_shape, n_out), "widths": [4, 8, 8], "blocks": [1, 1, 1]}


def fast_config(input_shape: Sequence[int], num_classes: int) -> dict:
    """The reduced net measured on a 2-core CPU (docs/models/ds_resnet.md): widths 8/16/32,
    one block per stage, every stage stride 2 (28x28 -> 14 -> 7 -> 4)."""
    return {**DSResNet.default_config(input_shape, num_classes), "widths": [8, 16, 32],
            "blocks": [1, 1, 1], "strides": [2, 2, 2]}
