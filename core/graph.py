"""The deployed (integer) graph that every target executes: plain dataclasses, numpy arrays.

A graph is populations of Loihi LIF neurons and readouts, joined by synapses. A synapse is one
linear map (Dense or Conv) from one source (the input or a population) to one target (a
population or a readout); several synapses into one target add up. Every synapse costs one
timestep of latency on the deployed chip, plus its ``delay`` (latency balancing; see
docs/contract.md, "Time", and docs/integer-nir.md). A synapse from a population onto itself is
recurrent (:func:`is_recurrent`): it carries the spikes of step t to step t + 1 + delay of the
same sample, and is left out of the order and the latency of the nodes.

What makes a graph valid is a list of small named rules at the end of this module
(:meth:`QGraph.validate`), and the Lava target's extra limits another (:func:`check_lava_limits`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from core import fixedpoint as fx
from core.errors import GraphError
from core.ops import conv2d, conv2d_out_hw

INPUT = "input"

__all__ = ["INPUT", "GraphError", "InputSpec", "LIFPopulation", "Readout", "Dense", "Conv",
           "SpikeAttention", "Synapse", "QGraph", "synapse_sources", "synapse_lag",
           "lag_carries", "is_recurrent",
           "recurrent_carries", "find_cycle", "loop_error", "topo_order",
           "node_latencies", "balance_delays", "check_rules", "SYNAPSE_RULES",
           "POPULATION_RULES", "GRAPH_RULES", "LAVA_RULES", "LAVA_MAX_DELAY", "LAVA_CONV_FIELD_MAX",
           "runs_as_dense_on_lava", "check_lava_limits"]


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
    """Loihi LIF neurons with one du, dv, vth and bias exponent (core.fixedpoint.lif_step).

    ``reset`` is one of :data:`core.fixedpoint.RESET_MODES`: ``"zero"`` (the stock Loihi
    LIF, the default: every graph written before reset modes existed), or a mode that needs a
    neuron program of our own on Loihi 2 (``"subtract"``, ``"subtract_late"``, and the graded
    ``"multi"``/``"multi_floor"``, whose spikes carry a count that the synapses multiply by
    their weights). docs/contract.md, "Reset modes".
    """

    name: str
    shape: tuple[int, ...]
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray  # int64, flat [size]
    bias_exp: int = 0
    reset: str = "zero"

    @property
    def graded(self) -> bool:
        """Whether the population's spikes carry a count (int64) instead of 0/1."""
        return fx.graded_spikes(self.reset)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Readout:
    """Integer synaptic currents delivered off-chip each step; ``bias`` is added per step.

    Its membrane, computed off-chip from the recorded currents by every target alike
    (:func:`core.fixedpoint.readout_membrane`), is ``v[t] = decay_v(v[t-1], dv) +
    ((current[t] + bias) << 6)``: ``dv = 0`` sums the currents (an ``Output``), ``dv > 0`` is
    a leaky integrator (NIR ``LI``). The class score is ``v`` at the last step ``>> 6``.
    """

    name: str
    shape: tuple[int, ...]
    bias: np.ndarray | None = None  # int64, flat [size]
    dv: int = 0  # membrane decay, 12 bits as a population's (0: no leak, the plain sum)

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
    # model delay (a NIR Delay): the spikes of step t reach the target at step t + lag of the
    # same sample (none that would leave it); part of ``delay`` (see :func:`synapse_lag`)
    lag: int = 0


@dataclass
class Conv:
    """A 2-D convolution in PyTorch's layout and sense (cross-correlation).

    ``weight`` is [C_out, C_in // groups, kh, kw]; source and target shapes are (C, H, W).
    The Lava target flips and transposes it into Lava's true convolution over (x, y, c).
    ``weight_exp`` is nonzero only on convs that read the input: a graded input (the quantizer
    gives them a negative exponent, see convert/quantize.py ``_shiftable``) or one of its bit
    planes (exponent +b). Lava's Conv has no exponent, so the Lava target runs those as dense
    maps (:func:`runs_as_dense_on_lava`).
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
    # Nonzero only on convs reading the input (see the class docstring); bit plane b reads
    # source[start:stop] and shifts by +b.
    weight_exp: int = 0
    source_slice: tuple[int, int] | None = None
    lag: int = 0  # model delay (a NIR Delay), part of ``delay``: see Dense.lag, synapse_lag

    @property
    def conv_shape(self) -> tuple[int, int, int]:
        """Shape of the convolution's own output (before any max pooling)."""
        ho, wo = conv2d_out_hw(self.in_shape[1:], self.weight.shape[2:], self.stride,
                               self.padding)
        return (self.weight.shape[0], ho, wo)


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


def synapse_lag(s: Any) -> int:
    """A synapse's model delay in steps (``lag``, from a NIR ``Delay``; 0 for most): in the
    trained model it delivers the spikes of step t at step ``t + lag`` of the same sample, and
    nothing that would arrive after the sample's last step (:func:`lag_carries`). It is part of
    the deployed ``delay`` (``lag <= delay``): a node's latency counts ``1 + delay - lag``."""
    return int(getattr(s, "lag", 0) or 0)


def lag_carries(step: int, latency: int, timesteps: int, lag: int) -> bool:
    """Whether a synapse with model delay ``lag`` (> 0) carries what its source, of
    ``latency``, emits at global ``step``: sample step ``t = (step - latency) mod T`` must
    still be inside the sample at ``t + lag``, else it would reach the next sample's first
    steps, where the trained model has nothing. (:func:`recurrent_carries` is the same rule
    for a recurrent synapse, whose model delay is ``1 + delay``.)"""
    return (step - latency) % timesteps + lag < timesteps


def is_recurrent(s: Any) -> bool:
    """A recurrent synapse: one that reads its own target (a population onto itself).

    It carries the spikes of step t to step ``t + 1 + delay`` of the same sample, in the
    trained model and on the chip alike (docs/integer-nir.md §6): what the population emits
    in the last ``1 + delay`` steps of a sample is dropped (:func:`recurrent_carries`). It
    plays no part in the order of the nodes or their latency.
    """
    return s.target in synapse_sources(s)


def recurrent_carries(step: int, latency: int, timesteps: int, delay: int) -> bool:
    """Whether a recurrent synapse onto a population of ``latency`` carries what the
    population emits at global ``step`` of the deployed timeline: those spikes belong to
    sample step ``t = (step - latency) mod T`` and would arrive at ``t + 1 + delay``, which
    must still be inside the sample (else the next sample's first steps would receive them,
    where the trained model has no recurrent input). Steps before ``latency`` (no sample yet)
    count as the end of the sample before sample 0."""
    return (step - latency) % timesteps + 1 + delay < timesteps


def find_cycle(nodes: list[str], synapses: Sequence[Any]) -> list[str] | None:
    """A cycle through ``nodes`` over the non-recurrent synapses, as the list of its nodes
    with the first repeated at the end (``[a, b, a]``), or None."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for s in synapses:
        if is_recurrent(s):
            continue
        for src in synapse_sources(s):
            if src in succ and s.target in succ:
                succ[src].append(s.target)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in succ[n]:
            if state.get(m) == 1:
                return [*path[path.index(m):], m]
            if m not in state and (loop := visit(m)) is not None:
                return loop
        path.pop()
        state[n] = 2
        return None

    for n in nodes:
        if n not in state and (loop := visit(n)) is not None:
            # start at the loop's entry: its first node fed from outside the loop
            ring = loop[:-1]
            entry = next((i for i, m in enumerate(ring) if any(
                s.target == m and not is_recurrent(s) and
                any(src not in ring for src in synapse_sources(s)) for s in synapses)), 0)
            ring = ring[entry:] + ring[:entry]
            return [*ring, ring[0]]
    return None


def loop_error(loop: list[str]) -> GraphError:
    """The one-line refusal of a loop through several populations (``loop`` from
    :func:`find_cycle`): on the pipelined chip it takes one step per synapse, where the
    trained model's loop takes one step in all."""
    k = len(loop) - 1
    return GraphError(
        f"recurrent loop {' -> '.join(repr(n) for n in loop)} runs through {k} populations: "
        f"it takes {k} steps on the chip (one per synapse) but 1 in the trained model; only "
        "a population's synapses onto itself can be recurrent")


def topo_order(nodes: list[str], synapses: list) -> list[str]:
    """``nodes`` ordered so that every synapse's source precedes its target (recurrent
    synapses, :func:`is_recurrent`, are left out: they deliver one step later).

    Raises:
        GraphError: a loop through several nodes (named), or a synapse from an unknown node.
    """
    synapses = [s for s in synapses if not is_recurrent(s)]
    done = {INPUT}
    pending = list(nodes)
    out: list[str] = []
    while pending:
        ready = [n for n in pending if all(src in done for s in synapses if s.target == n
                                           for src in synapse_sources(s))]
        if not ready:
            loop = find_cycle(list(pending), synapses)
            if loop is not None:
                raise loop_error(loop)
            raise GraphError(f"graph has a cycle or dangling source among {pending}")
        for n in ready:
            out.append(n)
            done.add(n)
            pending.remove(n)
    return out


def node_latencies(nodes: list[str], synapses: Sequence[Any], *,
                   balanced: bool = True) -> dict[str, int]:
    """The latency walk: when input column k reaches each node (``k + latency[node]``).

    ``nodes`` are the populations and readouts, ``synapses`` anything with ``source`` (or
    ``sources``), ``target`` and ``delay`` (the integer IR's synapses and the float graph's).
    Walking in :func:`topo_order`, a synapse from ``src`` delivers at ``latency[src] + 1 +
    delay`` (every deployed synapse takes one step, plus its balancing delay); a node's latency
    is its latest delivery. The input has latency 0. Recurrent synapses (:func:`is_recurrent`)
    are ignored: a population's spikes reach it again one step later, exactly when it takes
    its next input step, whatever its latency.

    ``balanced=True`` (a deployed graph) refuses a node whose inputs arrive on different steps:
    the deployed net would then compute something other than the trained one.
    ``balanced=False`` gives the latest arrival anyway (what :func:`balance_delays` aligns to).

    Raises:
        GraphError: a cycle or dangling source, a node without incoming synapse, or (balanced)
            paths of different depth meeting at a node.
    """
    lat = {INPUT: 0}
    for n in topo_order(nodes, list(synapses)):
        depths = {lat[src] + 1 + s.delay - synapse_lag(s) for s in synapses if s.target == n
                  and not is_recurrent(s) for src in synapse_sources(s)}
        if not depths:
            raise GraphError(f"node {n!r} has no incoming synapse")
        if balanced and len(depths) > 1:
            raise GraphError(
                f"paths of different depth {sorted(depths)} meet at {n!r}: "
                "latency balancing is needed"
            )
        lat[n] = max(depths)
    return lat


_Syn = TypeVar("_Syn")


def balance_delays(nodes: list[str], synapses: Sequence[_Syn]) -> list[_Syn]:
    """Latency balancing: each synapse rebuilt (``dataclasses.replace``) with the ``delay`` that
    makes every input of a node arrive on the same step, as in the trained (zero-latency) model.

    A synapse's new delay is ``latency[target] - latency[source] - 1`` over
    :func:`node_latencies` (``balanced=False``), so a path that is already long enough keeps
    its delay and a shorter one waits. Same order as ``synapses``; the inputs are not changed.

    A recurrent synapse (:func:`is_recurrent`) keeps its delay: it is part of the model (the
    spikes of step t arrive at step t + 1 + delay), not a balancing delay.

    Raises:
        GraphError: a multi-source synapse (spike attention) whose sources have different
            latencies: a product of spikes needs all of them from the same step, so it must be
            balanced upstream. Also whatever :func:`node_latencies` raises.
    """
    lat = node_latencies(nodes, synapses, balanced=False)
    for n in topo_order(nodes, list(synapses)):
        for s in synapses:
            srcs = synapse_sources(s)
            if s.target == n and len({lat[x] for x in srcs}) > 1:
                raise GraphError(
                    f"synapse {s.name!r}: its sources {srcs} have different "
                    f"latencies {[lat[x] for x in srcs]}; a product of spikes "
                    "needs all of them from the same step (balance them upstream)")
    return [s if is_recurrent(s) else
            replace(s, delay=lat[s.target] - lat[s.source] - 1 + synapse_lag(s))
            for s in synapses]


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
        deployed net compute something other than the trained net, so they are refused here
        (:func:`node_latencies`, the one latency walk; :func:`balance_delays` uses it too).

        Raises:
            GraphError: a node without incoming synapse, or paths of different depth.
        """
        return node_latencies([*self.populations, *self.readouts], self.synapses)

    def validate(self) -> None:
        """Shapes chain, names resolve, parameters are in Loihi's ranges, paths are balanced.

        Runs the design rules of this module (:data:`SYNAPSE_RULES`, :data:`POPULATION_RULES`,
        :data:`GRAPH_RULES`) in that order: synapse by synapse, then population by population,
        then the whole graph. The Lava target's extra limits are :func:`check_lava_limits`.

        Raises:
            GraphError: the first rule broken, naming the synapse, population or node.
        """
        check_rules(self, SYNAPSE_RULES, POPULATION_RULES, GRAPH_RULES)

    @property
    def depth(self) -> int:
        lat = self.latency()
        return max(lat[n] for n in (*self.populations, *self.readouts))


# --- design rules ----------------------------------------------------------------------------
# Each rule checks one property of one synapse, one population or the whole graph and raises
# one GraphError naming it (Rockpool's design-rule-check style: ``xylo_drc``/``check_drc``).
# The order of the lists is the order of the checks: the first broken rule is reported.

SynapseRule = Callable[[QGraph, Any], None]
PopulationRule = Callable[[QGraph, LIFPopulation], None]
GraphRule = Callable[[QGraph], None]


def synapse_ends_exist(g: QGraph, s: Dense | Conv) -> None:
    """Source and target are the input, a population or a readout."""
    names = {INPUT, *g.populations, *g.readouts}
    for end in (s.source, s.target):
        if end not in names:
            raise GraphError(f"synapse {s.name!r} refers to unknown node {end!r}")


def synapse_direction(g: QGraph, s: Dense | Conv) -> None:
    """Nothing feeds the input and a readout feeds nothing (it leaves the chip)."""
    if s.target == INPUT or s.source in g.readouts:
        raise GraphError(f"synapse {s.name!r} runs the wrong way ({s.source}->{s.target})")


def source_slice_in_range(g: QGraph, s: Dense | Conv) -> None:
    """A ``source_slice`` (one bit plane of the input) lies inside the source vector."""
    if s.source_slice is None:
        return
    lo, hi = s.source_slice
    full = g.input.flat_size if s.source == INPUT else int(np.prod(g.node_shape(s.source)))
    if not 0 <= lo < hi <= full:
        raise GraphError(f"synapse {s.name!r}: slice {s.source_slice} of {full}")


def dense_shape(g: QGraph, s: Dense) -> None:
    """The weight is [target size, source size] (flattened, C-order)."""
    n_in, n_out = g.source_size(s), int(np.prod(g.node_shape(s.target)))
    if s.weight.shape != (n_out, n_in):
        raise GraphError(
            f"synapse {s.name!r}: weight {s.weight.shape} does not map "
            f"{s.source} ({n_in}) to {s.target} ({n_out})"
        )


def conv_output_shape(g: QGraph, s: Conv) -> None:
    """``out_shape`` is what the convolution (and its max pooling, if any) gives."""
    if s.max_pool is not None:
        c, h, w = s.conv_shape
        pooled = (c, h // s.max_pool[0], w // s.max_pool[1])
        if pooled != tuple(s.out_shape):
            raise GraphError(f"synapse {s.name!r}: max pool of {s.conv_shape} gives "
                             f"{pooled}, not {s.out_shape}")
    elif tuple(s.conv_shape) != tuple(s.out_shape):
        raise GraphError(f"synapse {s.name!r}: conv gives {s.conv_shape}, not {s.out_shape}")


def conv_chains(g: QGraph, s: Conv) -> None:
    """``in_shape`` and ``out_shape`` have the sizes of the source and target vectors."""
    n_in, n_out = g.source_size(s), int(np.prod(g.node_shape(s.target)))
    if int(np.prod(s.in_shape)) != n_in or int(np.prod(s.out_shape)) != n_out:
        raise GraphError(
            f"synapse {s.name!r}: conv {s.in_shape}->{s.out_shape} does not chain "
            f"{g.node_shape(s.source)}->{g.node_shape(s.target)}"
        )


def delay_not_negative(g: QGraph, s: Synapse) -> None:
    """A balancing delay only holds back, never advances; a model delay (``lag``) is part of
    the deployed delay, and not on a recurrent synapse (whose ``delay`` is its model delay)."""
    if s.delay < 0:
        raise GraphError(f"synapse {s.name!r}: negative delay {s.delay}")
    lag = synapse_lag(s)
    if lag < 0 or lag > s.delay or (lag and is_recurrent(s)):
        raise GraphError(f"synapse {s.name!r}: lag {lag} outside [0, delay {s.delay}]"
                         + (" on a recurrent synapse" if lag and is_recurrent(s) else ""))


def weight_exp_in_range(g: QGraph, s: Dense | Conv) -> None:
    """Loihi's weight exponent: ``WEIGHT_EXP_MIN <= weight_exp <= WEIGHT_EXP_MAX`` (-8..7)."""
    if not fx.WEIGHT_EXP_MIN <= s.weight_exp <= fx.WEIGHT_EXP_MAX:
        raise GraphError(f"synapse {s.name!r}: weight_exp {s.weight_exp} out of range")


def weights_in_8_bits(g: QGraph, s: Dense | Conv) -> None:
    """Every weight in Loihi's signed 8-bit (+ sign) range ``[WEIGHT_MIN, WEIGHT_MAX]``."""
    if s.weight.size and (s.weight.min() < fx.WEIGHT_MIN or s.weight.max() > fx.WEIGHT_MAX):
        raise GraphError(f"synapse {s.name!r}: weights outside 8-bit range")


def attention_three_sources(g: QGraph, s: SpikeAttention) -> None:
    """An attention reads exactly q, k and v."""
    if len(s.sources) != 3:
        raise GraphError(f"synapse {s.name!r}: attention needs 3 sources (q, k, v), "
                         f"got {s.sources}")


def attention_ends_exist(g: QGraph, s: SpikeAttention) -> None:
    """Sources and target are populations or readouts (never the input)."""
    for end in (*s.sources, s.target):
        if end not in g.populations and end not in g.readouts:
            raise GraphError(f"synapse {s.name!r} refers to unknown node {end!r}")


def attention_sources_spike(g: QGraph, s: SpikeAttention) -> None:
    """q, k and v are populations: the product is of binary spikes."""
    for src in s.sources:
        if src not in g.populations:
            raise GraphError(f"synapse {s.name!r}: attention source {src!r} must be a "
                             "population (binary spikes)")
        if g.populations[src].graded:  # an AND of counts is no longer a popcount
            raise GraphError(f"synapse {s.name!r}: attention source {src!r} emits spike "
                             f"counts (reset {g.populations[src].reset!r}); an attention "
                             "needs binary spikes")


def attention_shapes(g: QGraph, s: SpikeAttention) -> None:
    """q, k, v and the target share one shape ``(dim, *tokens)``, ``dim`` divisible by heads."""
    shapes = {tuple(g.node_shape(n)) for n in (*s.sources, s.target)}
    if len(shapes) != 1:
        raise GraphError(f"synapse {s.name!r}: q, k, v and target shapes differ {shapes}")
    shape = shapes.pop()
    if len(shape) < 2 or s.heads < 1 or shape[0] % s.heads:
        raise GraphError(f"synapse {s.name!r}: shape {shape} is not (dim, *tokens) with "
                         f"dim divisible by {s.heads} heads")


def attention_not_recurrent(g: QGraph, s: SpikeAttention) -> None:
    """An attention never reads its own target (only Dense and Conv synapses can be
    recurrent)."""
    if is_recurrent(s):
        raise GraphError(f"synapse {s.name!r}: a spike attention cannot read its own target "
                         f"{s.target!r} (recurrent attention is not supported)")


def attention_shift_in_range(g: QGraph, s: SpikeAttention) -> None:
    """The output shift is a weight exponent: ``WEIGHT_EXP_MIN <= shift <= WEIGHT_EXP_MAX``."""
    if not fx.WEIGHT_EXP_MIN <= s.shift <= fx.WEIGHT_EXP_MAX:
        raise GraphError(f"synapse {s.name!r}: shift {s.shift} out of range")


def population_parameters_in_range(g: QGraph, p: LIFPopulation) -> None:
    """du, dv (12 bits), vth (17 bits) and bias_exp in Loihi's ranges (core.fixedpoint)."""
    checks = {
        "du": (p.du, 0, fx.DU_MAX),
        "dv": (p.dv, 0, fx.DV_MAX),
        "vth": (p.vth, 0, fx.VTH_MAX),
        "bias_exp": (p.bias_exp, fx.BIAS_EXP_MIN, fx.BIAS_EXP_MAX),
    }
    for key, (val, lo, hi) in checks.items():
        if not lo <= int(val) <= hi:
            raise GraphError(f"population {p.name!r}: {key}={val} outside [{lo}, {hi}]")


def reset_mode_known(g: QGraph, p: LIFPopulation) -> None:
    """``reset`` is one of :data:`core.fixedpoint.RESET_MODES`; a graded mode (a spike count
    ``v // (vth << 6)``) needs ``vth > 0``."""
    if p.reset not in fx.RESET_MODES:
        raise GraphError(f"population {p.name!r}: reset mode {p.reset!r} is not one of "
                         f"{', '.join(fx.RESET_MODES)}")
    if p.graded and p.vth <= 0:
        raise GraphError(f"population {p.name!r}: reset mode {p.reset!r} counts spikes as "
                         "v // (vth << 6) and needs vth > 0")


def bias_shape(g: QGraph, p: LIFPopulation) -> None:
    """One bias mantissa per neuron, flat."""
    if p.bias_mant.shape != (p.size,):
        raise GraphError(f"population {p.name!r}: bias shape {p.bias_mant.shape}")


def bias_mantissa_in_13_bits(g: QGraph, p: LIFPopulation) -> None:
    """Bias mantissas in ``[BIAS_MANT_MIN, BIAS_MANT_MAX]`` (13 bits signed)."""
    if p.bias_mant.size and (
        p.bias_mant.min() < fx.BIAS_MANT_MIN or p.bias_mant.max() > fx.BIAS_MANT_MAX
    ):
        raise GraphError(f"population {p.name!r}: bias mantissa outside 13 bits")


def readout_decay_in_range(g: QGraph) -> None:
    """Every readout's ``dv`` in ``[0, DV_MAX]`` (12 bits, as a population's)."""
    for r in g.readouts.values():
        if not 0 <= int(r.dv) <= fx.DV_MAX:
            raise GraphError(f"readout {r.name!r}: dv={r.dv} outside [0, {fx.DV_MAX}]")


def paths_balanced(g: QGraph) -> None:
    """Every node's inputs arrive on one step (see :meth:`QGraph.latency`)."""
    g.latency()


_CONNECTION_RULES: tuple[SynapseRule, ...] = (synapse_ends_exist, synapse_direction,
                                              source_slice_in_range)
_RANGE_RULES: tuple[SynapseRule, ...] = (delay_not_negative, weight_exp_in_range,
                                         weights_in_8_bits)
SYNAPSE_RULES: dict[type, tuple[SynapseRule, ...]] = {
    Dense: (*_CONNECTION_RULES, dense_shape, *_RANGE_RULES),
    Conv: (*_CONNECTION_RULES, conv_output_shape, conv_chains, *_RANGE_RULES),
    SpikeAttention: (attention_three_sources, attention_ends_exist, attention_sources_spike,
                     attention_shapes, attention_not_recurrent, delay_not_negative,
                     attention_shift_in_range),
}
POPULATION_RULES: tuple[PopulationRule, ...] = (
    population_parameters_in_range, reset_mode_known, bias_shape, bias_mantissa_in_13_bits)
GRAPH_RULES: tuple[GraphRule, ...] = (readout_decay_in_range, paths_balanced)


def check_rules(g: QGraph, synapse_rules: dict[type, tuple[SynapseRule, ...]],
                population_rules: tuple[PopulationRule, ...] = (),
                graph_rules: tuple[GraphRule, ...] = ()) -> None:
    """Run rules in order: each synapse's (chosen by its type), each population's, the graph's.

    Raises:
        GraphError: the first rule broken, or a synapse of a type ``synapse_rules`` lacks.
    """
    for s in g.synapses:
        rules = synapse_rules.get(type(s))
        if rules is None:
            raise GraphError(f"synapse {s.name!r}: unsupported type {type(s).__name__}")
        for rule in rules:
            rule(g, s)
    for p in g.populations.values():
        for prule in population_rules:
            prule(g, p)
    for grule in graph_rules:
        grule(g)


# --- the Lava target's limits ------------------------------------------------------------------
# Valid graphs that Loihi 2 (as Lava simulates it) cannot run as they stand. Not part of
# validate(): torch_ref and event_sim run them; the Lava target checks them before it builds.

LAVA_MAX_DELAY = 63  # Lava's DelayDense (Loihi 2): 6 bits of synaptic delay
# Lava's Conv keeps kernel size, stride, padding and groups in signed 8-bit Vars.
LAVA_CONV_FIELD_MAX = 127


def runs_as_dense_on_lava(s: Conv) -> bool:
    """Whether the Lava target runs this Conv as a dense map: Lava's Conv has no weight
    exponent and cannot read part of a port, so bit-plane input convs (a weight exponent or
    a ``source_slice``) become the equivalent Dense."""
    return bool(s.weight_exp) or s.source_slice is not None


def lava_delay_fits(g: QGraph, s: Dense | Conv) -> None:
    """A delay carried by Lava's DelayDense (a Dense, or a dense-mapped Conv without max
    pooling; other delays ride in a relay process) is at most :data:`LAVA_MAX_DELAY`."""
    if isinstance(s, Conv) and (not runs_as_dense_on_lava(s) or s.max_pool is not None):
        return
    if s.delay > LAVA_MAX_DELAY:
        raise GraphError(f"synapse {s.name!r}: delay {s.delay} > "
                         f"{LAVA_MAX_DELAY}, Loihi 2's limit for DelayDense")


def lava_dense_conv_cannot_wrap(g: QGraph, s: Conv) -> None:
    """A Conv run as a dense map never reaches the 24-bit wrap of Lava's Conv output
    (``fixedpoint.conv_output`` wraps before the exponent; a Dense does not wrap): the largest
    sum of |weights| into one output, times the largest input value, stays below ``UV_MAX``."""
    if not runs_as_dense_on_lava(s):
        return
    graded = s.source == INPUT and not g.input.binary and g.input.max_value > 1
    top = g.input.max_value if graded else 1
    ones = np.ones((1, *s.in_shape))
    sums = conv2d(ones, np.abs(np.asarray(s.weight, dtype=np.float64)), s.stride, s.padding,
                  s.groups)
    worst = int(np.rint(sums).max(initial=0)) * int(top)
    if worst >= fx.UV_MAX:
        raise GraphError(f"synapse {s.name!r}: a bit-plane conv with worst-case sum {worst} "
                         "could wrap at 24 bits; the Lava target runs it as a dense map, "
                         "which does not wrap")


def lava_conv_fields_fit(g: QGraph, s: Conv) -> None:
    """A Conv run by Lava's own ``Conv`` has kernel size, stride and padding of at most
    :data:`LAVA_CONV_FIELD_MAX` (Lava stores them in signed 8-bit Vars, where 128 wraps).
    ``groups`` may be larger: the Lava target merges groups until at most that many remain
    (``targets.loihi.layout.lava_conv_groups``)."""
    if runs_as_dense_on_lava(s):
        return
    fields = {"kernel": tuple(int(k) for k in s.weight.shape[2:]),
              "stride": tuple(int(x) for x in s.stride),
              "padding": tuple(int(x) for x in s.padding)}
    for key, val in fields.items():
        if max(val) > LAVA_CONV_FIELD_MAX:
            raise GraphError(f"synapse {s.name!r}: {key} {val} is larger than "
                             f"{LAVA_CONV_FIELD_MAX}, the most Lava's Conv can hold (8 bits)")


LAVA_RULES: dict[type, tuple[SynapseRule, ...]] = {
    Dense: (lava_delay_fits,),
    Conv: (lava_dense_conv_cannot_wrap, lava_conv_fields_fit, lava_delay_fits),
    SpikeAttention: (),
}


def check_lava_limits(g: QGraph) -> None:
    """The Lava target's limits (:data:`LAVA_RULES`), on a graph that already validates.

    Raises:
        GraphError: the first limit broken, naming the synapse.
    """
    check_rules(g, LAVA_RULES)
