"""Spiking MLP with MFI-compatible batch norm (mixer-SNN; Li et al., "Efficient Deep Spiking
Multi-Layer Perceptrons with Multiplication-Free Inference", TNNLS 2024, arXiv 2306.12465).

Time-major tensors ``[T, B, C, H, W]`` throughout; every LIF is :class:`models.neuron.LIF`
(``v = beta v + x``, spike on ``v > threshold``, hard reset to 0, arctan surrogate, reset
detached from the graph as in the authors' code). Per stage ``i`` (width ``C_i = dim * 2**i``):

- **Embedding** (the stage's current ``h``, then ``x = LIF(h)``):
  stage 0: ``h = BN(conv_{k=s=patch}(pixels))``;
  stage i > 0, *spiking patch encoding* (:class:`PatchCell`): three ``conv3x3/2 + BN`` branches
  of ``C_i / 3`` channels each, mixed through LIFs and concatenated::

      n1 = BN(conv_a(x));  n2 = BN(conv_b(x)) + BN(conv3x3(LIF_a(n1)))
      n3 = BN(conv_c(x)) + n1 + BN(conv3x3(LIF_b(n2)));   h = cat(n1, n2, n3)

- **Blocks** (:class:`MixerBlock`), each receiving the block input spikes ``x`` and ``h``::

      x_h = LIF(BN_H(mix over H of x))      # 1x1 conv over the H axis (H x H), BN per row h
      x_w = LIF(BN_W(mix over W of x))      # same over W
      t   = BN_C(conv1x1(cat(x, x_h, x_w)))  # fuse: 3C -> C, BN per channel
      x1  = LIF(h + t)                      # the stage embedding current added (residual)
      f   = BN_tok(fc2(LIF(BN_tok(fc1(x1)))))  # C -> 3C -> C per token, BN per token
      x   = LIF(h + t + f)

- **Readout**: spatial mean of the last spikes, ``Linear`` without bias, mean over T.

Every BN sits directly after a linear map and before a LIF (or before a current sum that a LIF
receives), so it folds into that map at inference: the paper's MFI batch norm. Every linear map
except the first (on pixels) receives binary spikes; the residuals add *currents* into a
membrane, never spikes into a linear map. The paper's BN on the final spikes before the head is
left out: its shift would be a readout bias (our readouts have none).

Population names (``return_spikes`` keys = NIR node names of ``convert/export/spiking_mlp.py``;
see :attr:`SpikingMLP.lif_names`): ``s{i}_embed``, ``s{i}_pc_a``/``s{i}_pc_b`` (patch-cell
LIFs), ``s{i}b{j}_h``, ``_w``, ``_tok``, ``_ffn``, ``_ch``. Records are ``[T, B, C, H, W]``
except ``_ffn``: ``[T, B, H*W, 3C]`` (token-major, as the FFN computes it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from core.errors import ConfigError
from models.layers import SpikingModel, TrainingDefaults, image_shape, seq_to_ann
from models.neuron import LIF

# The authors' ImageNet configurations (models/configs.py of github.com/BugMaker-Boyan/Mixer-SNN;
# the patch-cell net needs 2 * dim divisible by 3). For GPU users; the exporter's dense token
# maps are only practical for small token grids.
PUBLISHED_CONFIGS = {
    "small": {
        "in_shape": [3, 224, 224],
        "n_out": 1000,
        "patch": 4,
        "dim": 78,
        "depths": [2, 8, 14, 2],
        "mlp_ratio": 3,
        "beta": 0.5,
        "threshold": 1.0,
    },
    "big": {
        "in_shape": [3, 224, 224],
        "n_out": 1000,
        "patch": 4,
        "dim": 96,
        "depths": [2, 8, 14, 2],
        "mlp_ratio": 3,
        "beta": 0.5,
        "threshold": 1.0,
    },
}


def tiny_config(input_shape: Sequence[int] = (8, 8), num_classes: int = 10) -> dict:
    """For tests: the default config (8x8 digits unless told otherwise) with dim 6."""
    return {**SpikingMLP.default_config(input_shape, num_classes), "dim": 6}


class ConvBN(nn.Module):
    """conv (no bias) + BatchNorm2d: a current; BN folds into the conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return seq_to_ann(lambda y: self.bn(self.conv(y)), x)


class PatchCell(nn.Module):
    """Spiking patch encoding: three conv3x3/2-BN branches mixed through two LIFs."""

    def __init__(self, c_in: int, c_out: int, lif: dict):
        super().__init__()
        if c_out % 3:
            raise ConfigError(f"spiking patch encoding needs a width divisible by 3, got {c_out}")
        n = c_out // 3
        self.branch = nn.ModuleList([ConvBN(c_in, n, 3, 2, 1) for _ in range(3)])
        self.mix12 = ConvBN(n, n, 3, 1, 1)
        self.mix23 = ConvBN(n, n, 3, 1, 1)
        self.lif_a = LIF(**lif)
        self.lif_b = LIF(**lif)

    def forward(self, x: torch.Tensor, rec: dict | None = None, prefix: str = ""):
        n1, n2, n3 = (br(x) for br in self.branch)
        sa = self.lif_a(n1)
        n2 = n2 + self.mix12(sa)
        sb = self.lif_b(n2)
        n3 = n3 + n1 + self.mix23(sb)
        if rec is not None:
            rec[f"{prefix}_pc_a"] = sa
            rec[f"{prefix}_pc_b"] = sb
        return torch.cat((n1, n2, n3), dim=2)


class TokenMixing(nn.Module):
    """Linear map over one spatial axis (a 1x1 conv with that axis as channels), then BN over
    the same axis (one scale per output row/column: folds into the map's rows)."""

    def __init__(self, n: int, axis: int):
        super().__init__()
        self.axis = axis  # 3: H, 4: W of [T, B, C, H, W]
        self.proj = nn.Conv2d(n, n, 1)
        self.bn = nn.BatchNorm2d(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.movedim(self.axis, 2)  # [T, B, H, C, W] or [T, B, W, C, H]
        return seq_to_ann(lambda z: self.bn(self.proj(z)), y).movedim(2, self.axis)


class MixerBlock(nn.Module):
    """Token mixing (H, W) fused with the identity path, then the per-token FFN; the stage
    embedding current ``h`` enters both LIFs' inputs (current-domain residual)."""

    def __init__(self, c: int, h: int, w: int, mlp_ratio: int, lif: dict):
        super().__init__()
        self.mix_h = TokenMixing(h, 3)
        self.lif_h = LIF(**lif)
        self.mix_w = TokenMixing(w, 4)
        self.lif_w = LIF(**lif)
        self.fuse = nn.Conv2d(3 * c, c, 1, bias=False)
        self.fuse_bn = nn.BatchNorm2d(c)
        self.lif_tok = LIF(**lif)
        self.fc1 = nn.Linear(c, mlp_ratio * c)
        self.bn1 = nn.BatchNorm1d(h * w)
        self.lif_ffn = LIF(**lif)
        self.fc2 = nn.Linear(mlp_ratio * c, c)
        self.bn2 = nn.BatchNorm1d(h * w)
        self.lif_ch = LIF(**lif)

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, rec: dict | None = None, prefix: str = ""
    ) -> torch.Tensor:
        t_steps, b, c, hh, ww = x.shape
        xh = self.lif_h(self.mix_h(x))
        xw = self.lif_w(self.mix_w(x))
        tok = seq_to_ann(lambda z: self.fuse_bn(self.fuse(z)), torch.cat((x, xh, xw), dim=2))
        x1 = self.lif_tok(h + tok)
        seq = x1.flatten(3).transpose(2, 3)  # [T, B, HW, C]
        hid = self.lif_ffn(seq_to_ann(lambda z: self.bn1(self.fc1(z)), seq))
        f = seq_to_ann(lambda z: self.bn2(self.fc2(z)), hid)
        f = f.transpose(2, 3).reshape(t_steps, b, c, hh, ww)
        out = self.lif_ch(h + tok + f)
        if rec is not None:
            rec.update(
                {
                    f"{prefix}_h": xh,
                    f"{prefix}_w": xw,
                    f"{prefix}_tok": x1,
                    f"{prefix}_ffn": hid,
                    f"{prefix}_ch": out,
                }
            )
        return out


class SpikingMLP(SpikingModel):
    """Input ``x [T, B, C, H, W]`` (or ``[T, B, H, W]`` when C == 1); returns logits ``[B, n_out]``.

    Args:
        in_shape: (C, H, W); H and W divisible by ``patch``.
        n_out: classes.
        patch: patch size of the stage-0 embedding (kernel = stride).
        dim: width of stage 0; stage i has ``dim * 2**i`` channels (must be divisible by 3 for
            i > 0) on a grid halved (rounded up) by each conv3x3/2 patch encoding.
        depths: blocks per stage.
        mlp_ratio: FFN hidden width factor.
        beta, threshold, alpha, detach_reset: of every LIF (see :class:`models.neuron.LIF`).
    """

    # lr 1e-2 and batch 32 from a 70-step probe; MNIST, 1 epoch on the first 8000 images:
    # 88.26 % test (docs/models/spiking_mlp.md; at lr 2e-3, batch 64: 74.24 % on 12 000).
    TRAINING: ClassVar[TrainingDefaults] = TrainingDefaults(
        lr=1e-2, batch_size=32, schedule="cosine", epochs=1
    )

    def __init__(
        self,
        in_shape=(1, 28, 28),
        n_out: int = 10,
        patch: int = 4,
        dim: int = 24,
        depths=(1, 1),
        mlp_ratio: int = 3,
        beta: float = 0.5,
        threshold: float = 1.0,
        alpha: float = 2.0,
        detach_reset: bool = True,
    ):
        super().__init__()
        in_shape = tuple(int(d) for d in in_shape)
        depths = tuple(int(d) for d in depths)
        if len(in_shape) != 3 or in_shape[1] % patch or in_shape[2] % patch:
            raise ConfigError(
                f"SpikingMLP in_shape must be (C, H, W) with H, W divisible by "
                f"patch={patch}, got {in_shape}"
            )
        if not depths or min(depths) < 1:
            raise ConfigError(f"depths must be positive block counts, got {depths}")
        self.in_shape = in_shape
        self.patch = int(patch)
        self.depths = depths
        self.mlp_ratio = int(mlp_ratio)
        lif = {"beta": beta, "threshold": threshold, "alpha": alpha, "detach_reset": detach_reset}
        self.embeds = nn.ModuleList()
        self.embed_lifs = nn.ModuleList()
        self.stages = nn.ModuleList()
        self.grids: list[tuple[int, int, int]] = []  # (C, H, W) of each stage
        c_in, hh, ww = in_shape[0], in_shape[1] // patch, in_shape[2] // patch
        for i, depth in enumerate(depths):
            c = int(dim) * 2**i
            if i == 0:
                self.embeds.append(ConvBN(c_in, c, patch, patch, 0))
            else:
                self.embeds.append(PatchCell(c_in, c, lif))
                hh, ww = (hh + 1) // 2, (ww + 1) // 2
            self.embed_lifs.append(LIF(**lif))
            self.stages.append(
                nn.ModuleList([MixerBlock(c, hh, ww, self.mlp_ratio, lif) for _ in range(depth)])
            )
            self.grids.append((c, hh, ww))
            c_in = c
        self.head = nn.Linear(c_in, int(n_out), bias=False)

    @property
    def lif_names(self) -> tuple[str, ...]:
        names = []
        for i, depth in enumerate(self.depths):
            if i > 0:
                names += [f"s{i}_pc_a", f"s{i}_pc_b"]
            names.append(f"s{i}_embed")
            for j in range(depth):
                names += [f"s{i}b{j}_{k}" for k in ("h", "w", "tok", "ffn", "ch")]
        return tuple(names)

    @classmethod
    def default_config(cls, input_shape: Sequence[int], num_classes: int) -> dict:
        """Small CPU config: patch 4 (7x7 tokens on 28x28; patch 2 on images under 16 pixels,
        such as 8x8 digits), dim 24, two stages of one block, beta 0.5, threshold 1.0 (plain
        types only)."""
        c, h, w = image_shape(input_shape)
        return {
            "in_shape": [c, h, w],
            "n_out": int(num_classes),
            "patch": 4 if min(h, w) >= 16 else 2,
            "dim": 24,
            "depths": [1, 1],
            "mlp_ratio": 3,
            "beta": 0.5,
            "threshold": 1.0,
        }

    def compute_logits(self, x: torch.Tensor, rec: dict | None) -> torch.Tensor:
        """Logits ``[B, n_out]``; records every population's spikes under :attr:`lif_names`."""
        s = x
        for i, (embed, lif, blocks) in enumerate(
            zip(self.embeds, self.embed_lifs, self.stages, strict=True)
        ):
            h = embed(s) if i == 0 else embed(s, rec, f"s{i}")
            s = lif(h)
            if rec is not None:
                rec[f"s{i}_embed"] = s
            for j, blk in enumerate(blocks):
                s = blk(s, h, rec, f"s{i}b{j}")
        return self.head(s.mean(dim=(3, 4))).mean(0)
