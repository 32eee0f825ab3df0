"""Leaky integrate-and-fire neuron whose float forward pass is the chip contract.

Per timestep ``t`` (state ``v`` starts at 0 for every sample)::

    v = beta * v + x[t]
    s = v > threshold          # strictly greater
    v = v * (1 - s)            # hard reset to 0, after the spike

Training uses the arctan surrogate gradient (as snnTorch's ``surrogate.atan``)::

    ds/dv = (alpha / 2) / (1 + (pi / 2 * alpha * (v - threshold)) ** 2)

``beta`` is fixed (not learned) and must be a multiple of 1/4096 in (0, 1], so that it maps
exactly onto a 12-bit Loihi voltage decay ``dv = 4096 * (1 - beta)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from core.errors import ConfigError

DECAY_DENOMINATOR = 4096


def validate_beta(beta: float) -> float:
    """Return ``beta`` as float, or raise ConfigError if it is not k/4096 with 0 < k <= 4096."""
    try:
        b = float(beta)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"beta must be a number, got {beta!r}") from e
    k = b * DECAY_DENOMINATOR
    if not math.isfinite(b) or k != round(k) or not 0 < k <= DECAY_DENOMINATOR:
        hint = ""
        if math.isfinite(b):
            nearest = min(max(round(k), 1), DECAY_DENOMINATOR)
            hint = f" (nearest valid: {nearest}/{DECAY_DENOMINATOR})"
        raise ConfigError(
            f"beta must be a multiple of 1/{DECAY_DENOMINATOR} in (0, 1] so that it is exact "
            f"on the chip, got {beta!r}{hint}"
        )
    return b


class ATanSpike(torch.autograd.Function):
    """Heaviside ``v > threshold`` forward, arctan surrogate backward."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, threshold: float, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(v)
        ctx.threshold = threshold
        ctx.alpha = alpha
        return (v > threshold).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (v,) = ctx.saved_tensors
        a = ctx.alpha
        grad = (a / 2) / (1 + (math.pi / 2 * a * (v - ctx.threshold)) ** 2)
        return grad_out * grad, None, None


class LIF(nn.Module):
    """LIF layer over time-major input ``x [T, B, ...]``; returns spikes ``[T, B, ...]`` (0/1).

    Args:
        beta: voltage decay per step, a multiple of 1/4096 in (0, 1].
        threshold: the neuron spikes when ``v > threshold``.
        alpha: sharpness of the arctan surrogate gradient.
        detach_reset: if True, no gradient flows through the reset term.
    """

    def __init__(
        self,
        beta: float = 0.5,
        threshold: float = 1.0,
        alpha: float = 2.0,
        detach_reset: bool = False,
    ):
        super().__init__()
        self.beta = validate_beta(beta)
        self.threshold = float(threshold)
        self.alpha = float(alpha)
        self.detach_reset = bool(detach_reset)

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta}, threshold={self.threshold}, alpha={self.alpha}, "
            f"detach_reset={self.detach_reset}"
        )

    def forward(self, x: torch.Tensor, return_voltage: bool = False):
        if x.dim() < 2:
            raise ConfigError(
                f"LIF expects time-major input [T, B, ...], got shape {tuple(x.shape)}"
            )
        v = torch.zeros_like(x[0])
        spikes = []
        voltages = []
        for t in range(x.shape[0]):
            v = self.beta * v + x[t]
            s = ATanSpike.apply(v, self.threshold, self.alpha)
            if return_voltage:
                voltages.append(v)  # membrane value compared with the threshold
            r = s.detach() if self.detach_reset else s
            v = v * (1 - r)
            spikes.append(s)
        out = torch.stack(spikes)
        if return_voltage:
            return out, torch.stack(voltages)
        return out
