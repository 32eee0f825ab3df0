"""The Lava target: run an integer graph on Lava's bit-accurate Loihi process models.

Import this module only inside the Lava environment (``.venv-lava``); from the main
environment use :mod:`targets.lava`, which runs it in a subprocess.

How the graph maps onto Lava (see docs/lava.md):

- the input is a ``RingBuffer`` source holding every sample back to back (input step t of
  sample s in column s*T + t), followed by ``graph.depth`` columns of zeros so that the
  deepest node sees the last input step;
- every population is a ``LIFReset`` whose reset fires at Lava's (1-based) time step
  ``s*T + latency + 1``: that is when sample s's first input reaches it, so consecutive
  samples pipeline through the net without ever sharing state;
- Dense synapses are ``Dense`` processes (binary spikes, or graded messages from a graded
  input), Conv synapses are ``Conv`` processes with the kernel flipped and transposed into
  Lava's true convolution over (x, y, c); several synapses into one node share its InPort,
  which sums them;
- populations and readouts touched by a Conv live in Lava's (W, H, C) layout; Dense weight
  rows/columns are permuted to match, and records are converted back to our flat (C, H, W)
  order;
- a spike attention (Spikformer's ``Q Kᵀ V``, a product of three populations' spikes) is our
  own fixed-point process with three InPorts (q, k, v) and one OutPort: one step of latency
  (plus its delay) like Dense, its arithmetic ``fixedpoint.spike_attention``;
- a sink ``RingBuffer`` records every population's spikes and every readout's summed
  synaptic current (without the readout bias); the timelines are cut back into samples
  with :func:`targets.base.unpipeline` using each node's latency.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings

import numpy as np

from core import fixedpoint as fx
from core.graph import INPUT, Conv, Dense, GraphError, QGraph, SpikeAttention
from targets.base import RunResult, check_inputs, unpipeline

RUN_TAG = "fixed_pt"
MAX_DENSE_DELAY = 63  # DelayDense: Loihi 2 has 6 bits of synaptic delay


def import_lava() -> None:
    """Import Lava's runtime now. Lava calls ``multiprocessing.set_start_method('fork')`` at
    import, which fails once anything has touched the default context (tqdm creating its
    lock does): call this before progress bars, data loaders, etc."""
    import lava.magma.core.process.process  # noqa: F401


# ----------------------------------------------------------------------------- layouts


def lava_to_ours(chw: tuple[int, int, int] | None, size: int) -> np.ndarray:
    """Index map: element i of a node's flat Lava layout is element ``map[i]`` of ours.

    Our layout is flat C-order over (C, H, W); Lava's conv layout is C-order over (W, H, C).
    """
    if chw is None:
        return np.arange(size)
    return np.arange(size).reshape(chw).transpose(2, 1, 0).reshape(-1)


def node_layouts(graph: QGraph) -> dict[str, tuple[int, int, int] | None]:
    """The (C, H, W) shape of every node that a Conv touches (it then uses Lava's (W, H, C)
    layout); ``None`` for nodes that stay flat."""
    layout: dict[str, tuple[int, int, int] | None] = {
        n: None for n in (INPUT, *graph.populations, *graph.readouts)
    }
    for s in graph.synapses:
        if not isinstance(s, Conv):
            continue
        ends = [(s.target, tuple(s.out_shape))]
        if not conv_as_dense(s):
            ends.append((s.source, tuple(s.in_shape)))
        for node, chw in ends:
            if layout[node] is not None and layout[node] != chw:
                raise GraphError(
                    f"node {node!r} is seen as {layout[node]} and as {chw} by different "
                    "convolutions: the Lava target needs one spatial layout per node"
                )
            layout[node] = chw  # type: ignore[assignment]
    return layout


def conv_as_dense(s: Conv) -> bool:
    """Bit-plane input convs (a weight exponent, or a slice of their source) run as dense
    maps: Lava's Conv has no weight exponent and cannot read part of a port."""
    return bool(s.weight_exp) or s.source_slice is not None


def _mixed_odd(w: np.ndarray) -> bool:
    return bool(w.size and w.min() < 0 < w.max() and (w & 1).any())


def conv_matrix(s: Conv) -> np.ndarray:
    """The dense matrix [prod(conv_shape), prod(in_shape)] (our C-order on both sides) of a
    Conv synapse's cross-correlation, before any max pooling."""
    from core.ops import conv2d

    n_in = int(np.prod(s.in_shape))
    basis = np.eye(n_in, dtype=np.int64).reshape(n_in, *s.in_shape)
    out = conv2d(basis, np.asarray(s.weight, dtype=np.int64), s.stride, s.padding, s.groups)
    return np.rint(out).astype(np.int64).reshape(n_in, -1).T


def lava_shape(chw: tuple[int, int, int] | None, size: int) -> tuple[int, ...]:
    return (size,) if chw is None else (chw[2], chw[1], chw[0])


def lava_conv_weight(weight: np.ndarray) -> np.ndarray:
    """Our [C_out, C_in/g, kh, kw] cross-correlation -> Lava's (C_out, kx, ky, C_in/g) true
    convolution: transpose to (x=W, y=H) order, then flip both spatial axes."""
    w = np.asarray(weight, dtype=np.int64).transpose(0, 3, 2, 1)
    return np.ascontiguousarray(w[:, ::-1, ::-1, :])


def message_bits(graph: QGraph, source: str) -> int:
    """Lava's ``num_message_bits`` for a synapse from ``source``: 0 carries binary spikes,
    anything else carries the integer value (graded input; bit planes are binary)."""
    if source != INPUT or graph.input.binary or graph.input.max_value <= 1:
        return 0
    return max(8, int(graph.input.max_value).bit_length())


def to_timeline(x: np.ndarray, depth: int) -> np.ndarray:
    """[N, T, size] -> [N*T + depth, size]: samples back to back, zero padding at the end."""
    n, t, size = x.shape
    out = np.zeros((n * t + depth, size), dtype=np.int64)
    out[: n * t] = x.reshape(n * t, size)
    return out


# ----------------------------------------------------------------------------- network


def _models(record_state: bool) -> dict:
    """Lava process models that add fast recording to stock ones (run_cfg exception map).

    Lava 0.10 reads a Var back to the host one element per message (``Var.get`` of a
    [256, 400] sink buffer takes seconds), so records are written to ``.npy`` files by the
    process models themselves at the last step. The subclasses only add that: every value
    is computed by the stock bit-accurate code (``super().run_spk()``).
    """
    from lava.proc.io.sink import PyReceiveModelFixed
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.lif.models import PyLifResetModelBitAcc
    from lava.proc.lif.process import LIFReset

    class FileSinkModel(PyReceiveModelFixed):
        """Stock fixed-point sink RingBuffer that also saves its buffer at the last step."""

        def run_spk(self) -> None:
            super().run_spk()
            if self.time_step == self.data.shape[-1]:
                _save(self.proc_params["record_path"], self.data.astype(np.int32))

    class StateLIFResetModel(PyLifResetModelBitAcc):
        """Stock bit-accurate LIFReset that also records u and v after every step."""

        def run_spk(self) -> None:
            super().run_spk()
            steps = self.proc_params["record_steps"]
            if not hasattr(self, "_uv"):
                self._uv = np.zeros((2, steps, *np.shape(self.u)), dtype=np.int32)
            self._uv[0, self.time_step - 1] = self.u
            self._uv[1, self.time_step - 1] = self.v
            if self.time_step == steps:
                _save(self.proc_params["record_path"], self._uv)

    models = {Sink: FileSinkModel}
    if record_state:
        models[LIFReset] = StateLIFResetModel
    return models


_RELAY: dict[str, type] = {}


def _relay_process() -> type:
    """A Lava process between a Conv and its target that max-pools the conv's output
    currents over non-overlapping (x, y) windows and/or delays them by ``delay`` steps. It
    receives and sends within the same step, so it adds no latency of its own. Stock Lava has
    no pooling of currents and no delayed Conv; this is plumbing only: it adds, multiplies and
    rounds nothing (max and a FIFO)."""
    if "proc" not in _RELAY:
        from lava.magma.core.process.ports.ports import InPort, OutPort
        from lava.magma.core.process.process import AbstractProcess

        class CurrentRelay(AbstractProcess):
            def __init__(self, *, in_shape, out_shape, pool, delay) -> None:
                super().__init__(in_shape=in_shape, out_shape=out_shape, pool=pool, delay=delay)
                self.a_in = InPort(shape=in_shape)
                self.a_out = OutPort(shape=out_shape)

        _RELAY["proc"] = CurrentRelay
    return _RELAY["proc"]


def _relay_model() -> type:
    if "model" not in _RELAY:
        from lava.magma.core.decorator import implements, requires, tag
        from lava.magma.core.model.py.model import PyLoihiProcessModel
        from lava.magma.core.model.py.ports import PyInPort, PyOutPort
        from lava.magma.core.model.py.type import LavaPyType
        from lava.magma.core.resources import CPU
        from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

        @implements(proc=_relay_process(), protocol=LoihiProtocol)
        @requires(CPU)
        @tag("fixed_pt")
        class PyCurrentRelayModel(PyLoihiProcessModel):
            a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
            a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

            def run_spk(self) -> None:
                x = self.a_in.recv()
                pool = self.proc_params["pool"]
                if pool is not None:
                    x = lava_max_pool(x, pool)
                delay = self.proc_params["delay"]
                if delay:
                    if not hasattr(self, "_fifo"):
                        self._fifo = [np.zeros_like(x) for _ in range(delay)]
                    self._fifo.append(x)
                    x = self._fifo.pop(0)
                self.a_out.send(x)

        _RELAY["model"] = PyCurrentRelayModel
    return _RELAY["model"]


_ATTN: dict[str, type] = {}


def _attention_process() -> type:
    """A Lava process for :class:`core.graph.SpikeAttention`: InPorts ``q_in``, ``k_in``,
    ``v_in`` (the three populations' spikes, each in its node's Lava layout) and OutPort
    ``a_out`` (the target's layout). Like Dense it outputs at every step what it computed at
    the step before (a one-step buffer, ``1 + delay`` deep with a balancing delay)."""
    if "proc" not in _ATTN:
        from lava.magma.core.process.ports.ports import InPort, OutPort
        from lava.magma.core.process.process import AbstractProcess

        class SpikeAttentionProcess(AbstractProcess):
            def __init__(self, *, q_shape, k_shape, v_shape, out_shape, dim, heads, shift,
                         delay, perms) -> None:
                super().__init__(q_shape=q_shape, k_shape=k_shape, v_shape=v_shape,
                                 out_shape=out_shape, dim=dim, heads=heads, shift=shift,
                                 delay=delay, perms=perms)
                self.q_in = InPort(shape=q_shape)
                self.k_in = InPort(shape=k_shape)
                self.v_in = InPort(shape=v_shape)
                self.a_out = OutPort(shape=out_shape)

        _ATTN["proc"] = SpikeAttentionProcess
    return _ATTN["proc"]


def _attention_model() -> type:
    if "model" not in _ATTN:
        from lava.magma.core.decorator import implements, requires, tag
        from lava.magma.core.model.py.model import PyLoihiProcessModel
        from lava.magma.core.model.py.ports import PyInPort, PyOutPort
        from lava.magma.core.model.py.type import LavaPyType
        from lava.magma.core.resources import CPU
        from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

        @implements(proc=_attention_process(), protocol=LoihiProtocol)
        @requires(CPU)
        @tag("fixed_pt")
        class PySpikeAttentionModel(PyLoihiProcessModel):
            q_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
            k_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
            v_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
            a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

            def run_spk(self) -> None:
                p = self.proc_params
                if not hasattr(self, "_fifo"):
                    self._fifo = [np.zeros(p["out_shape"], dtype=np.int32)
                                  for _ in range(1 + int(p["delay"]))]
                self.a_out.send(self._fifo.pop(0))  # what the last step (+ delay) computed
                q, k, v = (attention_ours(port.recv(), perm) for port, perm in
                           zip((self.q_in, self.k_in, self.v_in), p["perms"][:3],
                               strict=True))
                out = fx.spike_attention(*(x.reshape(int(p["dim"]), -1) for x in (q, k, v)),
                                         int(p["heads"]), int(p["shift"]))
                lava = out.reshape(-1)[p["perms"][3]].reshape(p["out_shape"])
                self._fifo.append(lava.astype(np.int32))

        _ATTN["model"] = PySpikeAttentionModel
    return _ATTN["model"]


def attention_ours(x: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """A node's spikes in its Lava layout -> int64 binary vector in our flat (C, ...) order."""
    ours = np.empty(perm.size, dtype=np.int64)
    ours[perm] = (np.asarray(x).reshape(-1) != 0)
    return ours


def lava_max_pool(x: np.ndarray, pool: tuple[int, int]) -> np.ndarray:
    """fixedpoint.max_pool2d in Lava's (W, H, C) layout: ``pool`` is (kh, kw) as in the graph;
    trailing columns/rows that do not fill a window are dropped."""
    kh, kw = int(pool[0]), int(pool[1])
    w, h, c = x.shape
    wo, ho = w // kw, h // kh
    return x[: wo * kw, : ho * kh].reshape(wo, kw, ho, kh, c).max(axis=(1, 3))


def _save(path: str, arr: np.ndarray) -> None:
    tmp = path + ".part.npy"
    np.save(tmp, arr)
    os.replace(tmp, path)


class _Net:
    """The Lava processes for one chunk of samples (built fresh per chunk)."""

    def __init__(self, graph: QGraph, timeline: np.ndarray, record_state: bool,
                 workdir: str) -> None:
        from lava.proc.conv.process import Conv as LavaConv
        from lava.proc.dense.process import DelayDense as LavaDelayDense
        from lava.proc.dense.process import Dense as LavaDense
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source
        from lava.proc.lif.process import LIFReset

        self.graph = graph
        self.steps = timeline.shape[0]
        self.record_state = record_state
        self.workdir = workdir
        T = graph.timesteps
        lat = graph.latency()
        self.layout = node_layouts(graph)
        sizes = {n: int(np.prod(graph.node_shape(n))) for n in self.layout}
        sizes[INPUT] = graph.input.flat_size  # bit planes expanded
        self.perm = {n: lava_to_ours(self.layout[n], sizes[n]) for n in self.layout}
        self.shape = {n: lava_shape(self.layout[n], sizes[n]) for n in self.layout}
        self.altered_weights = 0

        # Sources: the whole input vector, and one RingBuffer per slice of it that a synapse
        # reads (a bit plane): Lava cannot connect part of a port. Data is [*shape, steps].
        self.sources: dict = {}

        def source_port(key):
            if key not in self.sources:
                if key is None:
                    data = timeline[:, self.perm[INPUT]].T.reshape(*self.shape[INPUT],
                                                                   self.steps)
                else:
                    data = timeline[:, key[0] : key[1]].T
                self.sources[key] = Source(data=np.ascontiguousarray(data, dtype=np.int64))
            return self.sources[key].s_out

        self.lifs = {}
        for i, (name, p) in enumerate(graph.populations.items()):
            bias = np.asarray(p.bias_mant, dtype=np.int64)[self.perm[name]]
            lif = LIFReset(
                shape=self.shape[name], du=int(p.du), dv=int(p.dv), vth=int(p.vth),
                bias_mant=bias.reshape(self.shape[name]),
                bias_exp=np.full(self.shape[name], int(p.bias_exp), dtype=np.int64),
                reset_interval=T, reset_offset=(lat[name] + 1) % T,
            )
            lif.proc_params["record_path"] = self._path("state", i)
            lif.proc_params["record_steps"] = self.steps
            self.lifs[name] = lif

        def sink(kind: str, i: int, name: str):
            proc = Sink(shape=self.shape[name], buffer=self.steps)
            proc.proc_params["record_path"] = self._path(kind, i)
            return proc

        # One sink per readout: all its synapses are summed at the sink's InPort.
        self.readout_sinks = {n: sink("readout", i, n) for i, n in enumerate(graph.readouts)}
        self.spike_sinks = {}
        for i, (name, lif) in enumerate(self.lifs.items()):
            self.spike_sinks[name] = sink("spikes", i, name)
            lif.s_out.connect(self.spike_sinks[name].a_in)

        self.synapses = {}
        self.relays: list = []
        self.attentions: list = []
        for s in graph.synapses:
            if isinstance(s, SpikeAttention):
                self._attention(graph, s)
                continue
            in_slice = s.source == INPUT and s.source_slice is not None
            if s.source == INPUT:
                out_port = source_port(tuple(s.source_slice) if in_slice else None)
            else:
                out_port = self.lifs[s.source].s_out
            in_port = (
                self.readout_sinks[s.target].a_in
                if s.target in graph.readouts
                else self.lifs[s.target].a_in
            )
            bits = message_bits(graph, s.source)
            pool_relay = isinstance(s, Conv) and s.max_pool is not None
            if isinstance(s, Dense) or conv_as_dense(s):
                if isinstance(s, Dense):
                    w = np.asarray(s.weight, dtype=np.int64)
                    rows = self.perm[s.target]
                else:
                    w = conv_matrix(s)
                    self._check_dense_conv(graph, s, w)
                    conv_chw = tuple(s.conv_shape)
                    rows = (lava_to_ours(conv_chw, w.shape[0]) if pool_relay
                            else self.perm[s.target])
                if s.source_slice is not None and not in_slice:
                    # a slice of a population: zero columns elsewhere
                    full = np.zeros((w.shape[0], sizes[s.source]), dtype=np.int64)
                    full[:, s.source_slice[0] : s.source_slice[1]] = w
                    w = full
                cols = np.arange(w.shape[1]) if in_slice else self.perm[s.source]
                w = w[np.ix_(rows, cols)]
                parts = [w]
                if isinstance(s, Conv) and s.weight_exp >= 0 and _mixed_odd(w):
                    # A conv's weights are not prepared for Dense's mixed-sign truncation:
                    # run its positive and negative weights as two Dense (excitatory and
                    # inhibitory: no truncation); with exponent >= 0 the split is exact.
                    parts = [np.where(w > 0, w, 0), np.where(w < 0, w, 0)]
                self.altered_weights += sum(
                    int((fx.lava_dense_weights(pw) != pw).sum()) for pw in parts)
                delay = 0 if pool_relay else int(s.delay)
                if delay > MAX_DENSE_DELAY:
                    raise GraphError(f"synapse {s.name!r}: delay {s.delay} > "
                                     f"{MAX_DENSE_DELAY}, Loihi 2's limit for DelayDense")
                target_port = in_port
                reshape_to = self.shape[s.target] if self.layout[s.target] is not None else None
                if pool_relay:
                    conv_out = lava_shape(conv_chw, w.shape[0])
                    relay = _relay_process()(in_shape=conv_out, out_shape=self.shape[s.target],
                                             pool=s.max_pool, delay=int(s.delay))
                    self.relays.append(relay)
                    relay.a_out.connect(in_port)
                    target_port, reshape_to = relay.a_in, conv_out
                flat_src = in_slice or self.layout[s.source] is None
                for pw in parts:
                    if delay:
                        proc = LavaDelayDense(weights=pw, delays=np.full(pw.shape, delay),
                                              weight_exp=int(s.weight_exp),
                                              num_message_bits=bits)
                    else:
                        proc = LavaDense(weights=pw, weight_exp=int(s.weight_exp),
                                         num_message_bits=bits)
                    (out_port if flat_src else out_port.flatten()).connect(proc.s_in)
                    dst = proc.a_out if reshape_to is None else proc.a_out.reshape(reshape_to)
                    dst.connect(target_port)
            elif isinstance(s, Conv):
                proc = LavaConv(
                    weight=lava_conv_weight(s.weight),
                    input_shape=lava_shape(tuple(s.in_shape), int(np.prod(s.in_shape))),
                    padding=(int(s.padding[1]), int(s.padding[0])),
                    stride=(int(s.stride[1]), int(s.stride[0])),
                    groups=int(s.groups), num_message_bits=bits,
                )
                conv_out = lava_shape(tuple(s.conv_shape), int(np.prod(s.conv_shape)))
                if tuple(int(v) for v in proc.output_shape) != tuple(conv_out):
                    raise GraphError(
                        f"conv {s.name!r}: Lava computes output (W,H,C)="
                        f"{tuple(proc.output_shape)}, the graph says {conv_out}"
                    )
                out_port.connect(proc.s_in)
                if s.max_pool is None and not s.delay:
                    proc.a_out.connect(in_port)
                else:
                    # Max pooling of the (24-bit wrapped) conv currents and/or extra delay:
                    # a relay between the conv and its target (no latency of its own).
                    relay = _relay_process()(in_shape=conv_out, out_shape=self.shape[s.target],
                                             pool=s.max_pool, delay=int(s.delay))
                    self.relays.append(relay)
                    proc.a_out.connect(relay.a_in)
                    relay.a_out.connect(in_port)
            else:  # pragma: no cover - the graph only has Dense and Conv
                raise GraphError(f"synapse {s.name!r}: unsupported type {type(s).__name__}")
            self.synapses[s.name] = proc
        self._anchor_components(graph)
        self.source = next(iter(self.sources.values()))

    def _attention(self, graph: QGraph, s: SpikeAttention) -> None:
        """The spike attention as our fixed-point process, wired q, k, v -> it -> target."""
        proc = _attention_process()(
            q_shape=self.shape[s.sources[0]], k_shape=self.shape[s.sources[1]],
            v_shape=self.shape[s.sources[2]], out_shape=self.shape[s.target],
            dim=int(graph.node_shape(s.target)[0]), heads=int(s.heads), shift=int(s.shift),
            delay=int(s.delay), perms=[self.perm[n] for n in (*s.sources, s.target)])
        for port, src in zip((proc.q_in, proc.k_in, proc.v_in), s.sources, strict=True):
            self.lifs[src].s_out.connect(port)
        in_port = (self.readout_sinks[s.target].a_in if s.target in graph.readouts
                   else self.lifs[s.target].a_in)
        proc.a_out.connect(in_port)
        self.attentions.append(proc)
        self.synapses[s.name] = proc

    def _check_dense_conv(self, graph: QGraph, s: Conv, w: np.ndarray) -> None:
        """A conv run as a dense map must never reach the 24-bit wrap of Lava's Conv output
        (fixedpoint.conv_output wraps before the exponent; a Dense does not wrap)."""
        top = graph.input.max_value if message_bits(graph, s.source) else 1
        worst = int(np.abs(w).sum(axis=1).max(initial=0)) * int(top)
        if worst >= fx.UV_MAX:
            raise GraphError(f"synapse {s.name!r}: a bit-plane conv with worst-case sum {worst} "
                             "could wrap at 24 bits; the Lava target runs it as a dense map, "
                             "which does not wrap")

    def _anchor_components(self, graph: QGraph) -> None:
        """Lava compiles only the processes connected to the one it runs. With several input
        sources (bit planes) the graph may fall apart into pieces: join them through an
        inert LIF that receives nothing (zero weights) and sends nothing anywhere."""
        from lava.proc.dense.process import Dense as LavaDense
        from lava.proc.lif.process import LIF

        parent = {n: n for n in (*self.sources, *graph.populations, *graph.readouts)}

        def find(n):
            while parent[n] != n:
                parent[n] = parent[parent[n]]
                n = parent[n]
            return n

        for s in graph.synapses:
            if s.source == INPUT:
                a = tuple(s.source_slice) if s.source_slice is not None else None
            else:
                a = s.source
            parent[find(a)] = find(s.target)
        roots = {find(k) for k in self.sources}
        if len(roots) <= 1:
            return
        anchor = LIF(shape=(1,), du=0, dv=0, vth=1)
        seen = set()
        for key, src in self.sources.items():
            if find(key) in seen:
                continue
            seen.add(find(key))
            n = int(np.prod(src.s_out.shape))
            d = LavaDense(weights=np.zeros((1, n), dtype=np.int64))
            (src.s_out if len(src.s_out.shape) == 1 else src.s_out.flatten()).connect(d.s_in)
            d.a_out.connect(anchor.a_in)

    def _path(self, kind: str, i: int) -> str:
        return os.path.join(self.workdir, f"{kind}_{i}.npy")

    def run(self) -> dict[str, np.ndarray]:
        """Run every step; return raw timelines [steps, size] in OUR flat order.

        Sets ``self.compile_s`` (compilation and process start-up) and ``self.run_s``
        (the steps themselves).
        """
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg

        models = _models(self.record_state)
        # Our own process is mapped per instance: Lava would otherwise search for its model
        # by importing every module of the targets package (some need torch).
        models.update({relay: _relay_model() for relay in self.relays})
        models.update({att: _attention_model() for att in self.attentions})
        cfg = Loihi2SimCfg(select_tag=RUN_TAG, exception_proc_model_map=models)
        t0 = time.perf_counter()
        self.source.create_runtime(run_cfg=cfg)
        try:
            t1 = time.perf_counter()
            self.source.run(condition=RunSteps(num_steps=self.steps))
            t2 = time.perf_counter()
        finally:
            self.source.stop()
        self.compile_s, self.run_s = t1 - t0, t2 - t1
        out: dict[str, np.ndarray] = {}
        for name, proc in self.spike_sinks.items():
            out[f"spikes/{name}"] = self._ours(name, np.load(proc.proc_params["record_path"]))
        for name, proc in self.readout_sinks.items():
            out[f"readouts/{name}"] = self._ours(name, np.load(proc.proc_params["record_path"]))
        if self.record_state:
            for name, lif in self.lifs.items():
                uv = np.load(lif.proc_params["record_path"])  # [2, steps, *shape]
                for k, key in enumerate("uv"):
                    out[f"states/{name}/{key}"] = self._ours(name, np.moveaxis(uv[k], 0, -1))
        return out

    def _ours(self, name: str, data: np.ndarray) -> np.ndarray:
        """Lava [*lava_shape, steps] -> int64 [steps, size] in our flat order."""
        flat = np.asarray(data).astype(np.int64).reshape(-1, self.steps).T
        res = np.empty_like(flat)
        res[:, self.perm[name]] = flat
        return res


# ----------------------------------------------------------------------------- run


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="sample", desc="lava", file=sys.stderr)
    except ImportError:
        return _PlainProgress(total)


class _PlainProgress:
    """A minimal progress line when tqdm is not installed (the Lava env may lack it)."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def update(self, k: int) -> None:
        self.n += k
        rate = self.n / max(time.perf_counter() - self.t0, 1e-9)
        print(f"lava: {self.n}/{self.total} samples ({rate:.1f} samples/s)",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def run(
    graph: QGraph,
    inputs: np.ndarray,
    *,
    chunk: int = 100,
    record_state: bool = False,
    progress: bool = False,
) -> RunResult:
    """Run ``inputs`` [N, T, *input_shape] through Lava; records aligned as in targets.base.

    ``chunk`` samples share one Lava network (rebuilt per chunk to bound memory).
    ``record_state`` adds u and v (after each step, v after its spike reset) per population.
    Counters: ``lava_steps`` (all chunks), ``lava_wall_s`` (time in Lava's compile + run),
    ``lava_compile_s``, ``lava_run_s`` (the steps alone), ``lava_build_s`` (creating the
    processes), ``lava_steps_per_s`` (steps / lava_run_s), ``lava_runs``, ``spikes``.
    """
    import_lava()
    graph.validate()
    x = check_inputs(graph, inputs)
    n, T = x.shape[0], graph.timesteps
    lat = graph.latency()
    depth = graph.depth
    if chunk < 1:
        raise ValueError("chunk must be >= 1")

    spikes = {p: np.zeros((n, T, graph.populations[p].size), dtype=bool) for p in graph.populations}
    readouts = {r: np.zeros((n, T, graph.readouts[r].size), dtype=np.int64) for r in graph.readouts}
    states = {
        p: (np.zeros((n, T, pop.size), dtype=np.int64), np.zeros((n, T, pop.size), dtype=np.int64))
        for p, pop in graph.populations.items()
    } if record_state else {}
    counters: dict = {"samples": n, "lava_runs": 0, "lava_steps": 0, "lava_build_s": 0.0,
                      "lava_compile_s": 0.0, "lava_run_s": 0.0, "lava_wall_s": 0.0}
    bar = _progress(n, progress)
    try:
        for start in range(0, n, chunk):
            xs = x[start : start + chunk]
            k = xs.shape[0]
            with tempfile.TemporaryDirectory(prefix="neurodeploy-lava-") as workdir:
                t0 = time.perf_counter()
                net = _Net(graph, to_timeline(xs, depth), record_state, workdir)
                if net.altered_weights and start == 0:
                    warnings.warn(
                        f"Lava alters {net.altered_weights} Dense weight(s) of this graph "
                        "(mixed-sign matrices lose their lowest bit); results will differ "
                        "from other targets", stacklevel=2,
                    )
                t1 = time.perf_counter()
                raw = net.run()
                t2 = time.perf_counter()
            counters["lava_build_s"] += t1 - t0
            counters["lava_wall_s"] += t2 - t1
            counters["lava_compile_s"] += net.compile_s
            counters["lava_run_s"] += net.run_s
            counters["lava_steps"] += net.steps
            counters["lava_runs"] += 1
            sl = slice(start, start + k)
            for p in graph.populations:
                spikes[p][sl] = unpipeline(raw[f"spikes/{p}"], lat[p], k, T) != 0
                if record_state:
                    states[p][0][sl] = unpipeline(raw[f"states/{p}/u"], lat[p], k, T)
                    states[p][1][sl] = unpipeline(raw[f"states/{p}/v"], lat[p], k, T)
            for r in graph.readouts:
                readouts[r][sl] = unpipeline(raw[f"readouts/{r}"], lat[r], k, T)
            if bar is not None:
                bar.update(k)
    finally:
        if bar is not None:
            bar.close()
    counters["spikes"] = int(sum(int(s.sum()) for s in spikes.values()))
    counters["lava_steps_per_s"] = counters["lava_steps"] / max(counters["lava_run_s"], 1e-9)
    return RunResult(spikes=spikes, readouts=readouts, counters=counters, states=states)
