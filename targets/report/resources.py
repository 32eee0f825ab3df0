"""The Loihi 2 resource map: every population and readout assigned to neuro-cores.

A node (population or readout) of ``n`` neurons is split into ``k`` cores of ``ceil(n / k)``
consecutive neurons, each core holding one node only (as NengoLoihi does: one block per core;
packing small nodes together would need fewer cores). "Consecutive" in one of two orders, the
one that needs fewer cores for the whole graph: C-order (channel by channel), or for (C, H, W)
nodes row bands across all channels (a convolution then reads a band of its source rather than
all of it). ``k`` grows until every core fits the per-core limits of
:class:`~targets.report.limits.CoreLimits`:

- **neurons**: compartments on the core: one per neuron, plus ``ph * pw`` input compartments per
  neuron when a synapse into it max-pools currents (the window's currents joined by MAX before
  the soma: our model of a dendritic MAX join / a neuron program);
- **fan-in axons**: for each synapse into the core, the distinct source neurons (input entries,
  bit planes counted apart) with at least one nonzero weight onto the core's neurons;
- **fan-out axons**: for each neuron of the core and each synapse out of its node, the cores of
  the target it reaches (one output axon per destination core);
- **memory**: the core's synapse lists in Loihi's format (blocks of 64 synapses with a 10-bit
  header, in 64-bit words; dense or sparse lists, whichever is smaller, at the weight width the
  synapse's weights actually need), plus the neurons' state.

The **binding constraint** of a node is the resource its fullest core uses most of (the one that
forced the split when ``k > 1``). A resource that one neuron per core would still overflow (a
dense fan-in above the axon limit) cannot be fixed by splitting: the node is reported as not
fitting, with that reason. Spike attention (dynamic weights) is not mapped: it needs a custom
process (embedded cores or a neuron program); so does what :attr:`LayerMap.needs` lists.

The fan-out tables are the event simulator's (:func:`targets.event_sim.fanout_table`), so the
connections counted here are exactly the ones it delivers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from core import fixedpoint as fx
from core.graph import INPUT, Conv, Dense, QGraph, SpikeAttention
from targets.event_sim.fanout import fanout_table
from targets.report.limits import (
    LOIHI2,
    SPARSE_INDEX_BITS_MAX,
    SPARSE_INDEX_BITS_MIN,
    SYNAPSE_BLOCK,
    SYNAPSE_BLOCK_HEADER_BITS,
    SYNAPSE_WORD_BITS,
    WEIGHT_WIDTHS,
    CoreLimits,
)

__all__ = ["RESOURCES", "LayerMap", "ResourceMap", "map_graph", "weight_bits",
           "synapse_list_bits"]

RESOURCES = ("neurons", "fan-in axons", "fan-out axons", "memory")


@dataclass
class LayerMap:
    """Where one node goes: its cores and what its fullest core uses of each resource."""

    node: str
    kind: str  # "population" or "readout"
    neurons: int
    compartments_per_neuron: int
    cores: int
    neurons_per_core: int  # ceil(neurons / cores)
    used: dict[str, int]  # resource -> use on the fullest core (memory in bits)
    limit: dict[str, int]  # resource -> per-core limit
    binding: str  # the resource with the highest use / limit
    fits: bool
    synapse_bits: int  # all synapse lists into the node, all cores
    weight_bits: dict[str, int]  # incoming synapse -> weight width stored (bits)
    connections: int  # nonzero synapses into the node (stored entries)
    out_axons_per_neuron: float  # mean destination cores per neuron (all outgoing synapses)
    split: str = "channels"  # neuron order of the cores: "channels" (C-order) or "rows"
    needs: list[str] = field(default_factory=list)  # what stock LIF neuro-cores cannot do
    reason: str | None = None  # why it does not fit, if it does not

    @property
    def utilisation(self) -> dict[str, float]:
        """resource -> use / limit on the fullest core."""
        return {r: self.used[r] / self.limit[r] for r in self.used}


@dataclass
class ResourceMap:
    """The whole graph on Loihi 2: nodes in graph order, totals and what is not mapped."""

    chip: str
    layers: list[LayerMap]
    cores: int
    chips: int
    fits: bool
    unmapped: list[str]  # synapses/processes left off the neuro-cores, one line each
    notes: list[str]

    def layer(self, node: str) -> LayerMap:
        """The entry of ``node``.

        Raises:
            KeyError: no such node.
        """
        for lay in self.layers:
            if lay.node == node:
                return lay
        raise KeyError(node)


def weight_bits(weight: np.ndarray) -> int:
    """Width (bits) a synapse's weights are stored at: the magnitude bits of its largest
    weight after the trailing zero bits all weights share (those go into the weight exponent),
    plus a sign bit when both signs occur, rounded up to a width of :data:`WEIGHT_WIDTHS`."""
    nz = np.asarray(weight, dtype=np.int64)
    nz = nz[nz != 0]
    if not nz.size:
        return WEIGHT_WIDTHS[0]
    mag = np.abs(nz)
    shared = int(np.bitwise_or.reduce(mag))
    tz = (shared & -shared).bit_length() - 1  # trailing zeros common to every weight
    bits = int(mag.max() >> tz).bit_length() + int(bool((nz < 0).any() and (nz > 0).any()))
    return next((w for w in WEIGHT_WIDTHS if w >= bits), WEIGHT_WIDTHS[-1])


def _word(bits: np.ndarray) -> np.ndarray:
    return -(-bits // SYNAPSE_WORD_BITS) * SYNAPSE_WORD_BITS


def synapse_list_bits(count: np.ndarray, bits_per_synapse: int) -> np.ndarray:
    """Memory (bits) of axon synapse lists of ``count`` synapses each: blocks of
    :data:`SYNAPSE_BLOCK` synapses with a header, each block rounded up to 64-bit words
    (NengoLoihi's ``SynapseConfig.bits_per_axon``)."""
    c = np.asarray(count, dtype=np.int64)
    full, rest = c // SYNAPSE_BLOCK, c % SYNAPSE_BLOCK
    block = int(_word(np.int64(SYNAPSE_BLOCK * bits_per_synapse + SYNAPSE_BLOCK_HEADER_BITS)))
    return full * block + np.where(rest > 0, _word(rest * bits_per_synapse
                                                   + SYNAPSE_BLOCK_HEADER_BITS), 0)


@dataclass
class _Conn:
    """One Dense/Conv's nonzero connections onto its target's neurons."""

    name: str
    source: str
    target: str
    src: np.ndarray  # int64 source entry (input: offset by the bit plane's slice)
    tgt: np.ndarray  # int64 target neuron (after max pooling: the pooled neuron)
    n_src: int
    wbits: int
    window: int  # max-pool window area (1 without)


def _connections(graph: QGraph, s: Dense | Conv) -> _Conn:
    t = fanout_table(s)
    src = np.repeat(np.arange(t.n_in, dtype=np.int64), t.fanout)
    tgt = t.indices.astype(np.int64)
    window = 1
    if isinstance(s, Conv) and s.max_pool is not None:
        c, h, w = s.conv_shape
        ph, pw = s.max_pool
        hp, wp = h // ph, w // pw
        y, x = (tgt % (h * w)) // w, tgt % w
        keep = (y // ph < hp) & (x // pw < wp)  # rows/columns the pooling drops
        tgt = (tgt // (h * w)) * hp * wp + (y // ph) * wp + x // pw
        src, tgt = src[keep], tgt[keep]
        window = ph * pw
    lo = s.source_slice[0] if s.source_slice is not None else 0
    n_src = graph.input.flat_size if s.source == INPUT else graph.source_size(s)
    return _Conn(s.name, s.source, s.target, src + lo, tgt, n_src, weight_bits(s.weight), window)


def _needs(graph: QGraph, node: str, conns: list[_Conn]) -> list[str]:
    out = []
    pools = [c for c in conns if c.target == node and c.window > 1]
    if pools:
        out.append("max pooling of currents (" + ", ".join(c.name for c in pools)
                   + "): a MAX join of the window's currents (multi-compartment neuron or a "
                   "neuron program)")
    for s in graph.synapses:
        if isinstance(s, SpikeAttention) and s.target == node:
            out.append(f"spike attention {s.name} (dynamic weights from q, k, v spikes): a "
                       "custom process, not on the neuro-cores")
        if (isinstance(s, Dense | Conv) and s.target == node and s.source == INPUT
                and not graph.input.binary):
            out.append(f"graded input into {s.name}: graded spikes (Loihi 2's spike payload) "
                       "multiplied by the weights")
    p = graph.populations.get(node)
    reset = getattr(p, "reset", "zero") if p is not None else "zero"
    if reset != "zero":
        what = ("graded spikes (a spike count as payload) and a neuron program"
                if fx.graded_spikes(reset) else "a neuron program (microcode)")
        out.append(f"reset mode {reset!r}: {what}; the stock LIF resets v to 0")
    for s in graph.synapses:
        if (isinstance(s, Dense | Conv) and s.target == node and s.source in graph.populations
                and getattr(graph.populations[s.source], "graded", False)):
            out.append(f"{s.name} reads spike counts of {s.source}: graded-spike synapses")
    return out


def _ranks(graph: QGraph, nodes: dict[str, int], order: str) -> dict[str, np.ndarray]:
    """Every node's neurons' positions in the order its cores take them: ``"channels"``,
    C-order (a core holds whole channels first); ``"rows"``, for a (C, H, W) node, row bands
    across all channels (neuron (c, h, w) at ``h*C*W + c*W + w``: a core holds every channel
    of a few rows, so a convolution reads a band of its source instead of every channel)."""
    out = {}
    for n, size in nodes.items():
        shape = tuple(graph.node_shape(n))
        if order == "rows" and len(shape) == 3 and shape[1] > 1:
            c, h, w = shape
            ci, hi, wi = np.unravel_index(np.arange(size), shape)
            out[n] = (hi * c * w + ci * w + wi).astype(np.int64)
        else:
            out[n] = np.arange(size, dtype=np.int64)
    return out


# Above this many (a, b) cells, distinct pairs are found by sorting instead of counting.
_DENSE_PAIRS_MAX = 1 << 24


def _pair_counts(a: np.ndarray, b: np.ndarray, na: int, nb: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pairs ``a * nb + b`` (sorted) and how often each occurs; a count over all
    ``na * nb`` cells when that is small (no sort: the mapper calls this many times), else
    ``np.unique``."""
    key = a * nb + b
    if na * nb <= _DENSE_PAIRS_MAX:
        counts = np.bincount(key, minlength=na * nb)
        nz = np.flatnonzero(counts)
        return nz, counts[nz]
    return np.unique(key, return_counts=True)


def _per_core_stats(graph: QGraph, nodes: dict[str, int], k: dict[str, int],
                    conns: list[_Conn], cpn: dict[str, int], limits: CoreLimits,
                    ranks: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """node -> resource -> use of each of its k cores (memory: synapses + neuron state);
    core j of a node holds the neurons of ranks ``[j*m, (j+1)*m)`` (:func:`_ranks`)."""
    m = {n: -(-size // k[n]) for n, size in nodes.items()}
    stats = {n: {"neurons": np.full(k[n], 0, dtype=np.int64),
                 "fan-in axons": np.zeros(k[n], dtype=np.int64),
                 "fan-out axons": np.zeros(k[n], dtype=np.int64),
                 "memory": np.zeros(k[n], dtype=np.int64),
                 "synapse bits": np.zeros(k[n], dtype=np.int64)} for n in nodes}
    for n, size in nodes.items():
        per = np.minimum(m[n], size - m[n] * np.arange(k[n]))
        stats[n]["neurons"] = per * cpn[n]
        stats[n]["memory"] = per * cpn[n] * limits.neuron_state_bits
    for c in conns:
        mt = m[c.target]
        core = ranks[c.target][c.tgt] // mt
        key, counts = _pair_counts(core, c.src, k[c.target], c.n_src)
        kcore = key // c.n_src
        st = stats[c.target]
        st["fan-in axons"] += np.bincount(kcore, minlength=k[c.target])
        # synapse memory: sparse lists (index bits) or dense lists (every neuron of the
        # core), whichever is smaller for this synapse on this core
        idx = max(SPARSE_INDEX_BITS_MIN, math.ceil(math.log2(max(mt * c.window, 2))))
        dense = np.bincount(kcore, weights=synapse_list_bits(
            np.full(len(key), mt * c.window), c.wbits), minlength=k[c.target])
        if idx <= SPARSE_INDEX_BITS_MAX:
            sparse = np.bincount(kcore, weights=synapse_list_bits(counts, c.wbits + idx),
                                 minlength=k[c.target])
            dense = np.minimum(dense, sparse)
        st["synapse bits"] += dense.astype(np.int64)
        st["memory"] += dense.astype(np.int64)
        if c.source in nodes:
            ms = m[c.source]
            pairs, _ = _pair_counts(c.src, core, c.n_src, k[c.target])
            st_src = stats[c.source]
            src_rank = ranks[c.source][pairs // k[c.target]]
            st_src["fan-out axons"] += np.bincount(src_rank // ms, minlength=k[c.source])
    for s in graph.synapses:  # q, k, v spikes go to the attention's process: one axon each
        if isinstance(s, SpikeAttention):
            for src in s.sources:
                if src in nodes:
                    ms = m[src]
                    per = np.minimum(ms, nodes[src] - ms * np.arange(k[src]))
                    stats[src]["fan-out axons"] += per
    return stats


def _search(graph: QGraph, nodes: dict[str, int], conns: list[_Conn], cpn: dict[str, int],
            lim: dict[str, int], limits: CoreLimits, ranks: dict[str, np.ndarray]
            ) -> tuple[dict[str, int], dict[str, dict[str, np.ndarray]], dict[str, list[str]],
                       bool]:
    """Cores per node for one neuron order: ``(k, per-core stats, resources that no split
    fixes, whether everything fits)``. ``k`` starts at what the neurons need and grows for
    every node whose fullest core is over a limit that splitting can fix, until none is."""
    k = {n: max(1, -(-size * cpn[n] // lim["neurons"])) for n, size in nodes.items()}
    # what one neuron per core still uses: a resource above its limit even then cannot be
    # fixed by splitting (a dense fan-in above the axon limit)
    floor = _per_core_stats(graph, nodes, dict(nodes), conns, cpn, limits, ranks)
    stuck = {n: [r for r in ("fan-in axons", "memory") if floor[n][r].max(initial=0) > lim[r]]
             for n in nodes}
    for _ in range(10_000):
        stats = _per_core_stats(graph, nodes, k, conns, cpn, limits, ranks)
        changed = False
        for n, size in nodes.items():
            worst = max((stats[n][r].max(initial=0) / lim[r] for r in RESOURCES
                         if r not in stuck[n]), default=0.0)
            if worst > 1 and k[n] < size:
                k[n] = min(size, max(k[n] + 1, math.ceil(k[n] * worst)))
                changed = True
        if not changed:
            break
    # growing overshoots (a node split for a neighbour that later split itself keeps its
    # cores): give each node back the cores it does not need, the others fixed
    # (targets first: a source's fan-out depends on how its targets are split)
    for _ in range(3):
        before = dict(k)
        for n in reversed(list(nodes)):
            k0 = max(1, -(-nodes[n] * cpn[n] // lim["neurons"]))
            if k[n] > k0:
                k[n] = _fewest_cores(graph, nodes, n, k, k0, conns, cpn, lim, limits, ranks,
                                     stuck)
        if k == before:
            break
    stats = _per_core_stats(graph, nodes, k, conns, cpn, limits, ranks)
    fits = all(stats[n][r].max(initial=0) <= lim[r] for n in nodes for r in RESOURCES)
    return k, stats, stuck, fits


def _fewest_cores(graph: QGraph, nodes: dict[str, int], n: str, k: dict[str, int], k0: int,
                  conns: list[_Conn], cpn: dict[str, int], lim: dict[str, int],
                  limits: CoreLimits, ranks: dict[str, np.ndarray],
                  stuck: dict[str, list[str]]) -> int:
    """The fewest cores in ``[k0, k[n]]`` for node ``n`` with which ``n`` and its sources
    (whose fan-out it changes) stay within every limit they met (binary search; splitting
    finer never makes a core fuller)."""
    srcs = {c.source for c in conns if c.target == n and c.source in nodes}
    touched = {n} | srcs
    sub = [c for c in conns if c.target == n or c.source in touched]

    def ok(kn: int) -> bool:
        st = _per_core_stats(graph, nodes, {**k, n: kn}, sub, cpn, limits, ranks)
        return all(st[x][r].max(initial=0) <= lim[r] for x in touched for r in RESOURCES
                   if r not in stuck[x])

    lo, hi = k0, k[n]
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def map_graph(graph: QGraph, limits: CoreLimits = LOIHI2) -> ResourceMap:
    """Assign every population and readout of ``graph`` to neuro-cores under ``limits``.

    Returns the map: per node its cores, the use of each resource on its fullest core, its
    binding constraint and what it needs beyond stock LIF neuro-cores; cores and chips in all.
    Deterministic; no inputs needed (it reads the weights, not activity).

    Raises:
        GraphError: a Conv whose shapes disagree (from the fan-out table).
    """
    nodes = {n: graph.populations[n].size if n in graph.populations else graph.readouts[n].size
             for n in graph.order()}
    conns = [_connections(graph, s) for s in graph.synapses if isinstance(s, Dense | Conv)]
    cpn = {n: 1 + max((c.window for c in conns if c.target == n and c.window > 1), default=0)
           for n in nodes}
    lim = {"neurons": limits.neurons_per_core, "fan-in axons": limits.fan_in_axons,
           "fan-out axons": limits.fan_out_axons, "memory": limits.core_memory_bits}
    searches = {order: _search(graph, nodes, conns, cpn, lim, limits,
                               _ranks(graph, nodes, order))
                for order in ("channels", "rows")
                if order == "channels" or any(len(graph.node_shape(n)) == 3 for n in nodes)}
    # the order with fewer cores (fitting first); C-order on a tie
    order = min(searches, key=lambda o: (not searches[o][3], sum(searches[o][0].values()),
                                         o != "channels"))
    k, stats, stuck, _ = searches[order]
    layers = []
    for n, size in nodes.items():
        st = stats[n]
        used = {r: int(st[r].max(initial=0)) for r in RESOURCES}
        util = {r: used[r] / lim[r] for r in RESOURCES}
        binding = max(RESOURCES, key=lambda r: util[r])
        over = [r for r in RESOURCES if util[r] > 1]
        reason = None
        if over:
            reason = "; ".join(
                f"{r} {used[r]} > {lim[r]} per core"
                + (" even with one neuron per core (splitting the node cannot fix it)"
                   if r in stuck[n] else "") for r in over)
        outs = [c for c in conns if c.source == n]
        out_axons = int(st["fan-out axons"].sum())
        layers.append(LayerMap(
            node=n, kind="population" if n in graph.populations else "readout",
            neurons=size, compartments_per_neuron=cpn[n], cores=k[n],
            neurons_per_core=-(-size // k[n]), used=used, limit=dict(lim), binding=binding,
            fits=not over, synapse_bits=int(st["synapse bits"].sum()),
            weight_bits={c.name: c.wbits for c in conns if c.target == n},
            connections=sum(len(c.tgt) for c in conns if c.target == n),
            out_axons_per_neuron=out_axons / size if outs or out_axons else 0.0,
            split=order if len(graph.node_shape(n)) == 3 else "channels",
            needs=_needs(graph, n, conns), reason=reason))
    cores = sum(lay.cores for lay in layers)
    chips = max(1, -(-cores // limits.cores_per_chip))
    unmapped = [f"{s.name} ({', '.join(s.sources)} -> {s.target}): spike attention has dynamic "
                "weights; it needs a custom process (embedded cores or a neuron program) and is "
                "not placed on neuro-cores here" for s in graph.synapses
                if isinstance(s, SpikeAttention)]
    notes = [f"input ({graph.input.flat_size} entries"
             + (f", {graph.input.bitplanes} bit planes" if graph.input.bitplanes else "")
             + ") is sent to the cores as spikes by the host / embedded cores (not mapped)",
             "one node per core (no packing of small nodes): cores are an upper bound",
             "(C, H, W) nodes split into cores " + ("by row bands across all channels"
                                                   if order == "rows" else "channel by channel")
             + " (the order that needs fewer cores)"]
    total_n = sum(lay.neurons * lay.compartments_per_neuron for lay in layers)
    total_syn = sum(lay.connections for lay in layers)
    if total_n > chips * limits.neurons_per_chip:
        notes.append(f"{total_n} compartments exceed {chips} chip(s) x "
                     f"{limits.neurons_per_chip}")
    if total_syn > chips * limits.synapses_per_chip:
        notes.append(f"{total_syn} synapses exceed {chips} chip(s) x "
                     f"{limits.synapses_per_chip}")
    return ResourceMap(limits.name, layers, cores, chips, all(lay.fits for lay in layers),
                       unmapped, notes)
