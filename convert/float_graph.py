"""The float graph: what a NIR file means once import rewrites are done, before quantization.

Same shape as :class:`core.graph.QGraph` (populations, readouts, one linear map per synapse)
but in float. Synapse weights are in "voltage per unit of integer input": the input encoding's
scale and NIR's input gain (dt * r / tau) are already folded in, so the quantizer sees one
number per weight. numpy only.

One difference in shape from the integer IR: a float synapse (:class:`FSynapse`) holds its
linear map as ``op`` (an :class:`FDense` or :class:`FConv`), where core's ``Dense`` and ``Conv``
are synapses themselves. Records are built whole (``dataclasses.replace``), never patched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.fixedpoint import max_pool2d, spike_attention
from core.graph import InputSpec, topo_order
from core.ops import conv2d


@dataclass
class FDense:
    """A dense map: ``weight`` [n_out, n_in] over the flattened (C-order) source and target."""

    weight: np.ndarray


@dataclass
class FConv:
    """A 2-D convolution in PyTorch's layout and sense (cross-correlation), shapes (C, H, W),
    optionally followed by non-overlapping max pooling of its output currents."""

    weight: np.ndarray  # [C_out, C_in // groups, kh, kw], cross-correlation
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]  # after max pooling, if any
    max_pool: tuple[int, int] | None = None  # max over windows of the output currents (CML)


@dataclass
class FSynapse:
    """One linear map ``op`` from ``source`` (the input or a population) to ``target``."""

    name: str
    source: str
    target: str
    op: FDense | FConv
    delay: int = 0  # extra deployed steps that balance path latencies (no effect in float)
    lag: int = 0  # model delay (a NIR Delay): step t's input arrives at step t + lag

    def apply(self, x: np.ndarray) -> np.ndarray:
        """x: [B, *source_shape] -> [B, target_size] (flat)."""
        b = x.shape[0]
        if isinstance(self.op, FDense):
            return x.reshape(b, -1) @ self.op.weight.T
        y = conv2d(
            x.reshape(b, *self.op.in_shape), self.op.weight, self.op.stride, self.op.padding,
            self.op.groups,
        )
        if self.op.max_pool is not None:
            y = max_pool2d(y, self.op.max_pool)
        return y.reshape(b, -1)


@dataclass
class FSpikeAttention:
    """Spikformer's attention product from three populations (q, k, v) of shape
    ``(dim, *tokens)``: ``scale * (Q Kᵀ) V`` per head (see core.graph.SpikeAttention)."""

    name: str
    sources: tuple[str, str, str]
    target: str
    shape: tuple[int, ...]
    heads: int
    scale: float
    delay: int = 0

    @property
    def source(self) -> str:
        return self.sources[0]

    def apply_qkv(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """q, k, v: [B, size] (0/1) -> [B, size] float: the current the target receives."""
        b, dim = q.shape[0], self.shape[0]
        out = spike_attention(*(np.asarray(x, dtype=np.float64).reshape(b, dim, -1)
                                for x in (q, k, v)), self.heads)
        return self.scale * out.reshape(b, -1)


@dataclass
class FPopulation:
    """u <- alpha * u + I;  v <- beta * v + u + bias;  spike if v > threshold;  v <- 0 on spike.

    ``reset`` (one of ``core.fixedpoint.RESET_MODES``) changes the last two steps as
    :meth:`late_reset` and :meth:`fire` say; the default ``"zero"`` is the rule above.
    """

    name: str
    shape: tuple[int, ...]
    beta: float
    alpha: float
    threshold: float
    bias: np.ndarray  # flat [size], voltage units per step
    reset: str = "zero"

    @property
    def size(self) -> int:
        """Number of neurons (product of ``shape``)."""
        return int(np.prod(self.shape))

    def late_reset(self, v: np.ndarray) -> np.ndarray | float:
        """What ``subtract_late`` subtracts from this step's v after the decay: the threshold
        where the previous (un-reset) v was above it (snnTorch's ``reset_delay=True``); 0
        in every other mode."""
        if self.reset != "subtract_late":
            return 0.0
        return np.where(v > self.threshold, self.threshold, 0.0)

    def fire(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(spikes, v after the reset)`` for this step's v, in float: the float form of
        ``core.fixedpoint.lif_step`` (spike counts ``floor(v / threshold)`` from ``v >=
        threshold`` in the graded modes, 0/1 on ``v > threshold`` otherwise)."""
        thr = self.threshold
        if self.reset in ("multi", "multi_floor"):
            s = np.where(v > 0, np.floor(v / thr), 0.0)
            v = v - s * thr
            if self.reset == "multi_floor":
                v = np.maximum(v, -thr)
            return s, v
        s = (v > thr).astype(np.float64)
        if self.reset == "zero":
            v = np.where(s > 0, 0.0, v)
        elif self.reset == "subtract":
            v = v - s * thr
        return s, v


@dataclass
class FReadout:
    """Currents delivered off-chip each step, plus ``bias``, and their membrane
    ``v[t] = beta * v[t-1] + current[t] + bias``: ``beta = 1`` (an ``Output``) sums them, a
    leaky integrator (NIR ``LI``) has ``beta < 1``. The class score is ``v`` at the last step."""

    name: str
    shape: tuple[int, ...]
    bias: np.ndarray  # flat [size], added per step
    beta: float = 1.0  # retention of the membrane per step

    @property
    def size(self) -> int:
        """Number of neurons (product of ``shape``)."""
        return int(np.prod(self.shape))


@dataclass
class FGraph:
    """Populations and readouts joined by synapses, run for ``timesteps`` steps per sample."""

    input: InputSpec
    populations: dict[str, FPopulation]
    readouts: dict[str, FReadout]
    synapses: list[FSynapse | FSpikeAttention]
    timesteps: int
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # approximations the import had to make

    def incoming(self, name: str) -> list[FSynapse | FSpikeAttention]:
        """The synapses into ``name``, in graph order."""
        return [s for s in self.synapses if s.target == name]

    def order(self) -> list[str]:
        """Populations and readouts, every source before its targets (:func:`topo_order`)."""
        return topo_order([*self.populations, *self.readouts], self.synapses)
