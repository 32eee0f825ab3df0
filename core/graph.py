"""The deployed (integer) graph that every target executes: plain dataclasses, numpy arrays.

A graph is populations of Loihi LIF neurons and readouts, joined by synapses. A synapse is one
linear map (Dense or Conv) from one source (the input or a population) to one target (a
population or a readout); several synapses into one target add up. Every synapse costs one
timestep of latency on the deployed chip, plus its ``delay`` (latency balancing; see
docs/contract.md, "Time", and docs/integer-nir.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core import fixedpoint as fx
from core.errors import GraphError

INPUT = "input"

__all__ = ["INPUT", "GraphError", "InputSpec", "LIFPopulation", "Readout", "Dense", "Conv",
           "SpikeAttention", "Synapse", "QGraph", "synapse_sources", "topo_order"]


@dataclass
class InputSpec:
    """What the user feeds: [sample, timestep, *shape] integers.

    ``bitplanes = B > 0`` deploys a graded input (values < 2**B) as B binary planes: the input
    vector the synapses see is then ``B * size`` spikes, plane-major (entry ``b * size + j`` is
    bit b of value j), and each plane projects through the same weights with weight exponent
    +b: an exactly equivalent, multiplication-free input layer.
    """

    shape: tuple[int, ...]
    kind: str = "spikes"  # "spikes": values in {0, 1}; "graded": integers in [0, max_value]
    max_value: int = 1
    bitplanes: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def flat_size(self) -> int:
        """Length of the input vector the synapses read (bit planes expanded)."""
        return self.size * self.bitplanes if self.bitplanes else self.size

    @property
    def binary(self) -> bool:
        return self.kind == "spikes" or self.bitplanes > 0


@dataclass
class LIFPopulation:
    name: str
    shape: tuple[int, ...]
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray  # int64, flat [size]
    bias_exp: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Readout:
    """Integer synaptic currents delivered off-chip each step; ``bias`` is added per step."""

    name: str
    shape: tuple[int, ...]
    bias: np.ndarray | None = None  # int64, flat [size]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Dense:
    name: str
    source: str
    target: str
    weight: np.ndarray  # int64 [n_out, n_in] over flattened (C-order) source and target
    weight_exp: int = 0
    delay: int = 0  # extra steps on top of the one every synapse takes (latency balancing)
    # read only source[start:stop] of the flat source vector (one bit plane of the input)
    source_slice: tuple[int, int] | None = None


@dataclass
class Conv:
    """A 2-D convolution in PyTorch's layout and sense (cross-correlation).

    ``weight`` is [C_out, C_in // groups, kh, kw]; source and target shapes are (C, H, W).
    The Lava target flips and transposes it into Lava's true convolution over (x, y, c).
    Lava ignores weight exponents on Conv: ``weight_exp`` is nonzero only on bit-plane input
    layers, which the Lava target runs as dense maps.
    """

    name: str
    source: str
    target: str
    weight: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]  # after max pooling, if any
    delay: int = 0
    max_pool: tuple[int, int] | None = None  # max over windows of the output currents (CML)
    # Only for bit-plane input layers: plane b reads source[start:stop] and shifts by +b.
    # (Lava's Conv has no exponent: the Lava target runs such a synapse as a dense map.)
    weight_exp: int = 0
    source_slice: tuple[int, int] | None = None

    @property
    def conv_shape(self) -> tuple[int, int, int]:
        """Shape of the convolution's own output (before any max pooling)."""
        c, h, w = self.in_shape
        kh, kw = self.weight.shape[2:]
        return (self.weight.shape[0], (h + 2 * self.padding[0] - kh) // self.stride[0] + 1,
                (w + 2 * self.padding[1] - kw) // self.stride[1] + 1)


@dataclass
class SpikeAttention:
    """Spikformer's attention product of three spike maps: a synapse with dynamic weights.

    ``sources`` = (q, k, v): populations of equal shape ``(dim, *tokens)``, read channel-major
    (flat C-order: entry ``c * n_tokens + n`` is feature c of token n). Per step, per head h
    (features ``h*dh ... h*dh + dh - 1``, ``dh = dim // heads``), from the three sources' spikes
    of the same step (they must have the same latency):

        A[n, m]      = sum_i q[h, i, n] k[h, i, m]       (AND + popcount)
        out[h, j, n] = floor_shift(sum_m A[n, m] v[h, j, m], shift)

    delivered to ``target`` (same shape) one step later, plus ``delay``, like any synapse
    (``core.fixedpoint.spike_attention``). ``shift`` is the float scale as a power of two
    (the quantizer chooses the target's integer scale so that it is one). Binary ANDs and
    counts only, but the "weights" (the counts) are dynamic: see convert/mfi.py.
    """

    name: str
    sources: tuple[str, str, str]
    target: str
    heads: int
    shift: int = 0
    delay: int = 0
    source_slice = None  # never reads part of a source (class attribute, not a field)

    @property
    def source(self) -> str:
        """q, the first source (for code that names one source per synapse)."""
        return self.sources[0]


Synapse = Dense | Conv | SpikeAttention


def synapse_sources(s: Any) -> tuple[str, ...]:
    """Every node a synapse reads: ``sources`` of a multi-source synapse, else its ``source``."""
    srcs = getattr(s, "sources", None)
    return tuple(srcs) if srcs else (s.source,)


def topo_order(nodes: list[str], synapses: list) -> list[str]:
    """``nodes`` ordered so that every synapse's source precedes its target."""
    done = {INPUT}
    pending = list(nodes)
    out: list[str] = []
    while pending:
        ready = [n for n in pending if all(src in done for s in synapses if s.target == n
                                           for src in synapse_sources(s))]
        if not ready:
            raise GraphError(f"graph has a cycle or dangling source among {pending}")
        for n in ready:
            out.append(n)
            done.add(n)
            pending.remove(n)
    return out


@dataclass
class QGraph:
    input: InputSpec
    populations: dict[str, LIFPopulation]
    readouts: dict[str, Readout]
    synapses: list[Synapse]
    timesteps: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def source_size(self, s: Synapse) -> int:
        """Length of the vector synapse ``s`` reads from its source."""
        if s.source_slice is not None:
            return s.source_slice[1] - s.source_slice[0]
        if s.source == INPUT:
            return self.input.flat_size
        return int(np.prod(self.node_shape(s.source)))

    def node_shape(self, name: str) -> tuple[int, ...]:
        if name == INPUT:
            return self.input.shape
        if name in self.populations:
            return self.populations[name].shape
        if name in self.readouts:
            return self.readouts[name].shape
        raise GraphError(f"unknown node {name!r}")

    def incoming(self, name: str) -> list[Synapse]:
        return [s for s in self.synapses if s.target == name]

    def outgoing(self, name: str) -> list[Synapse]:
        return [s for s in self.synapses if name in synapse_sources(s)]

    def order(self) -> list[str]:
        """Populations and readouts in an order where every source precedes its targets."""
        return topo_order([*self.populations, *self.readouts], self.synapses)

    def latency(self) -> dict[str, int]:
        """Deployed latency of every node: input column k reaches node n at step k + latency[n].

        Every synapse adds one step. Paths of different depth into one node would make the
        deployed net compute something other than the trained net, so they are refused here.
        """
        lat = {INPUT: 0}
        for n in self.order():
            depths = {lat[src] + 1 + s.delay for s in self.incoming(n)
                      for src in synapse_sources(s)}
            if not depths:
                raise GraphError(f"node {n!r} has no incoming synapse")
            if len(depths) > 1:
                raise GraphError(
                    f"paths of different depth {sorted(depths)} meet at {n!r}: "
                    "latency balancing is needed"
                )
            lat[n] = depths.pop()
        return lat

    def validate(self) -> None:
        """Shapes chain, names resolve, parameters are in Loihi's ranges."""
        names = {INPUT, *self.populations, *self.readouts}
        for s in self.synapses:
            if isinstance(s, SpikeAttention):
                self._validate_attention(s)
                continue
            for end in (s.source, s.target):
                if end not in names:
                    raise GraphError(f"synapse {s.name!r} refers to unknown node {end!r}")
            if s.target == INPUT or s.source in self.readouts:
                raise GraphError(f"synapse {s.name!r} runs the wrong way ({s.source}->{s.target})")
            n_in = self.source_size(s)
            n_out = int(np.prod(self.node_shape(s.target)))
            if s.source_slice is not None:
                lo, hi = s.source_slice
                full = self.input.flat_size if s.source == INPUT else int(
                    np.prod(self.node_shape(s.source)))
                if not 0 <= lo < hi <= full:
                    raise GraphError(f"synapse {s.name!r}: slice {s.source_slice} of {full}")
            if isinstance(s, Dense):
                if s.weight.shape != (n_out, n_in):
                    raise GraphError(
                        f"synapse {s.name!r}: weight {s.weight.shape} does not map "
                        f"{s.source} ({n_in}) to {s.target} ({n_out})"
                    )
            else:
                if s.max_pool is not None:
                    c, h, w = s.conv_shape
                    pooled = (c, h // s.max_pool[0], w // s.max_pool[1])
                    if pooled != tuple(s.out_shape):
                        raise GraphError(f"synapse {s.name!r}: max pool of {s.conv_shape} gives "
                                         f"{pooled}, not {s.out_shape}")
                elif tuple(s.conv_shape) != tuple(s.out_shape):
                    raise GraphError(f"synapse {s.name!r}: conv gives {s.conv_shape}, "
                                     f"not {s.out_shape}")
                in_ok = int(np.prod(s.in_shape)) == n_in
                out_ok = int(np.prod(s.out_shape)) == n_out
                if not (in_ok and out_ok):
                    raise GraphError(
                        f"synapse {s.name!r}: conv {s.in_shape}->{s.out_shape} does not chain "
                        f"{self.node_shape(s.source)}->{self.node_shape(s.target)}"
                    )
            if s.delay < 0:
                raise GraphError(f"synapse {s.name!r}: negative delay {s.delay}")
            if not fx.WEIGHT_EXP_MIN <= s.weight_exp <= fx.WEIGHT_EXP_MAX:
                raise GraphError(f"synapse {s.name!r}: weight_exp {s.weight_exp} out of range")
            if s.weight.size and (s.weight.min() < fx.WEIGHT_MIN or s.weight.max() > fx.WEIGHT_MAX):
                raise GraphError(f"synapse {s.name!r}: weights outside 8-bit range")
        for p in self.populations.values():
            checks = {
                "du": (p.du, 0, fx.DU_MAX),
                "dv": (p.dv, 0, fx.DV_MAX),
                "vth": (p.vth, 0, fx.VTH_MAX),
                "bias_exp": (p.bias_exp, fx.BIAS_EXP_MIN, fx.BIAS_EXP_MAX),
            }
            for key, (val, lo, hi) in checks.items():
                if not lo <= int(val) <= hi:
                    raise GraphError(f"population {p.name!r}: {key}={val} outside [{lo}, {hi}]")
            if p.bias_mant.shape != (p.size,):
                raise GraphError(f"population {p.name!r}: bias shape {p.bias_mant.shape}")
            if p.bias_mant.size and (
                p.bias_mant.min() < fx.BIAS_MANT_MIN or p.bias_mant.max() > fx.BIAS_MANT_MAX
            ):
                raise GraphError(f"population {p.name!r}: bias mantissa outside 13 bits")
        self.latency()

    def _validate_attention(self, s: SpikeAttention) -> None:
        if len(s.sources) != 3:
            raise GraphError(f"synapse {s.name!r}: attention needs 3 sources (q, k, v), "
                             f"got {s.sources}")
        for end in (*s.sources, s.target):
            if end not in self.populations and end not in self.readouts:
                raise GraphError(f"synapse {s.name!r} refers to unknown node {end!r}")
        for src in s.sources:
            if src not in self.populations:
                raise GraphError(f"synapse {s.name!r}: attention source {src!r} must be a "
                                 "population (binary spikes)")
        shapes = {tuple(self.node_shape(n)) for n in (*s.sources, s.target)}
        if len(shapes) != 1:
            raise GraphError(f"synapse {s.name!r}: q, k, v and target shapes differ {shapes}")
        shape = shapes.pop()
        if len(shape) < 2 or s.heads < 1 or shape[0] % s.heads:
            raise GraphError(f"synapse {s.name!r}: shape {shape} is not (dim, *tokens) with "
                             f"dim divisible by {s.heads} heads")
        if s.delay < 0:
            raise GraphError(f"synapse {s.name!r}: negative delay {s.delay}")
        if not fx.WEIGHT_EXP_MIN <= s.shift <= fx.WEIGHT_EXP_MAX:
            raise GraphError(f"synapse {s.name!r}: shift {s.shift} out of range")

    @property
    def depth(self) -> int:
        lat = self.latency()
        return max(lat[n] for n in (*self.populations, *self.readouts))
