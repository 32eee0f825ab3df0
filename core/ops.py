"""Dense numpy kernels for the linear maps of a graph (exact on integer arrays).

Used by the float reference, the importer's graph rewrites and the event simulator's
bookkeeping. The convolution is PyTorch's cross-correlation over [batch, C, H, W].
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pair(v: Any) -> tuple[int, int]:
    """An int, a pair or a 1- or 2-element array (torch's ``kernel_size=2`` or ``(2, 3)``, a
    NIR node's ``stride``) as two ints."""
    a = np.atleast_1d(np.asarray(v)).astype(int).ravel()
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def conv2d_out_hw(
    hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[int, int]:
    return tuple(
        (hw[i] + 2 * padding[i] - kernel[i]) // stride[i] + 1 for i in range(2)
    )  # type: ignore[return-value]


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    groups: int = 1,
) -> np.ndarray:
    """Cross-correlation of x [B, C_in, H, W] with weight [C_out, C_in // groups, kh, kw]."""
    b, c_in, _, _ = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    if c_in != c_per_group * groups:
        raise ValueError(f"conv2d: {c_in} input channels do not match weight {weight.shape}")
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, :: stride[0], :: stride[1]]
    # win: [B, C_in, Ho, Wo, kh, kw]
    o_per_group = c_out // groups
    outs = []
    for g in range(groups):
        wg = weight[g * o_per_group : (g + 1) * o_per_group]
        xg = win[:, g * c_per_group : (g + 1) * c_per_group]
        outs.append(np.einsum("bchwij,ocij->bohw", xg, wg, optimize=True))
    return np.concatenate(outs, axis=1) if groups > 1 else outs[0]


def pool2d(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int] = (0, 0),
    mode: str = "sum",
) -> np.ndarray:
    """Sum or average pooling over x [B, C, H, W] (zero padding counts in the average)."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    win = sliding_window_view(xp, kernel, axis=(2, 3))[:, :, :: stride[0], :: stride[1]]
    s = win.sum(axis=(-2, -1))
    if mode == "avg":
        return s / (kernel[0] * kernel[1])
    if mode != "sum":
        raise ValueError(f"pool2d: unknown mode {mode!r}")
    return s
