"""Read any NIR graph (ours, snnTorch's, Norse's, rockpool's) into a :class:`FGraph`.

The rewrites done here are exact in float:
- every chain of linear nodes (Affine, Linear, Conv2d, Conv1d, pooling, Flatten, Scale) between
  two neuron nodes becomes one synapse; pooling followed by a convolution becomes one strided
  convolution with an expanded kernel, a chain into a (C, H, W) map one convolution (checked
  exact), any other chain one dense matrix (:class:`convert.nir_view.NIRView`); a Conv1d is a
  Conv2d with H = 1;
- biases along a chain become the target population's per-step bias;
- NIR's continuous-time parameters become per-step factors with the graph's ``dt`` (given,
  recorded, pinned by an exporter's convention, or guessed with a warning:
  :func:`convert.neuron_params.resolve_dt`), forward Euler, and the input gain ``dt * r / tau``
  is folded into the incoming weights; per-neuron thresholds are normalised to one value per
  population (Loihi has one ``vth`` per process) by scaling each neuron's incoming weights and
  bias, and a node whose neurons have different time constants is split into one population
  per decay (:mod:`convert.neuron_params`);
- ``LIF``/``CubaLIF``/``IF``/``Threshold`` nodes become populations; the non-spiking ``LI`` and
  ``I`` become readouts (their membrane: ``FReadout.beta``), only directly into an ``Output``;
- a leading batch axis of size 1 on the Input is dropped (nirtorch's ``(1, C, H, W)``);
- where paths of different depth meet, the shorter ones get balancing delays
  (:func:`core.graph.balance_delays`).
What cannot be mapped is refused with the node's name and the reason. numpy only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from convert.float_graph import (
    FConv,
    FDense,
    FGraph,
    FPopulation,
    FReadout,
    FSpikeAttention,
    FSynapse,
)
from convert.neuron_params import (
    DEFAULT_DT,
    INTEGRATORS,
    NEURONS,
    decay_groups,
    kind,
    normalise_threshold,
    resolve_dt,
    step_params,
)
from convert.nir_view import CONVS, DENSE_LIMIT, PRODUCTS, NIRView
from core.errors import UserError
from core.fixedpoint import RESET_MODES
from core.graph import INPUT, GraphError, InputSpec, balance_delays
from core.nir_ext import read_nir
from core.nir_io import meta_value

__all__ = ["DEFAULT_DT", "NIRView", "import_nir", "resolve_reset", "timesteps_for"]


def _attention(view: NIRView, node: str, chain: list[str], target: str,
               rename: dict[str, str]) -> FSpikeAttention:
    """The SpikeAttention node ``node`` as a synapse into ``target``: it must read three
    neuron populations directly and feed the neuron with no linear map in between."""
    att = view.nodes[node]
    if chain:
        raise GraphError(f"SpikeAttention {node!r} must feed a neuron population directly, "
                         f"not through {chain}")
    roles = att.input_names
    if sorted(roles) != sorted(view.preds[node]):
        raise GraphError(f"SpikeAttention {node!r}: inputs {roles} (q, k, v) are not its "
                         f"predecessors {view.preds[node]}")
    for r in roles:
        if kind(view.nodes[r]) not in NEURONS:
            raise GraphError(f"SpikeAttention {node!r}: input {r!r} is a "
                             f"{kind(view.nodes[r])}, not a neuron population (spikes)")
    return FSpikeAttention(node, tuple(rename.get(r, r) for r in roles), target,
                           view.shape(node), int(att.heads), float(att.scale))


def _input_spec(view: NIRView, meta: dict[str, Any], input_kind: str | None
                ) -> tuple[str, InputSpec]:
    """The one Input node's name and what the user feeds it: the kind (``input_kind``, else
    graded for a ``direct`` encoding, else spikes) and the largest value (``input_max``)."""
    inputs = [n for n, v in view.nodes.items() if kind(v) == "Input"]
    if len(inputs) != 1:
        raise GraphError(f"graph needs exactly one Input node, found {len(inputs)}")
    in_kind = input_kind or ("graded" if meta.get("encoding") == "direct" else "spikes")
    max_value = int(meta.get("input_max", 255 if in_kind == "graded" else 1))
    return inputs[0], InputSpec(shape=view.shape(inputs[0]), kind=in_kind, max_value=max_value)


def _incoming(view: NIRView, name: str, taken: set[str], in_name: str, scale: float,
              dt: float = 1.0, notes: list[str] | None = None
              ) -> list[FSynapse | FSpikeAttention]:
    """The synapses into the neuron or Output ``name``: one per path from a source, its
    chain of linear nodes composed; the Input's ``scale`` folded into its weights; the
    ``Delay`` nodes on a path (in steps of ``dt``) its model delay (``lag``; the ``delay`` of
    a recurrent synapse). ``taken``: synapse names already used (a linear node on several
    paths gets one each); ``notes``: where an approximation is reported."""
    rename = {in_name: INPUT}
    incoming: list[FSynapse | FSpikeAttention] = []
    paths = view.paths_into(name)
    for src, chain in paths:
        if kind(view.nodes[src]) in PRODUCTS:
            incoming.append(_attention(view, src, chain, name, rename))
            continue
        pooled = [n for n in chain if kind(view.nodes[n]) == "MaxPool2d"]
        if pooled and sum(pooled[0] in c for _, c in paths) > 1:
            raise GraphError(f"max pooling {pooled[0]!r} takes the max of a sum of "
                             "several inputs: not expressible as synapses")
        delays = [i for i, n in enumerate(chain) if kind(view.nodes[n]) == "Delay"]
        ops = [n for n in chain if kind(view.nodes[n]) != "Delay"]
        lag = sum(view.delay_steps(chain[i], dt) for i in delays)
        # neuron straight into neuron: an identity synapse (a 1x1 convolution between (C, H, W)
        # maps: NIR cannot write a dense map into a shaped node)
        op = view.compose(src, ops) if ops else _identity(view.shape(name))
        if src == in_name:
            op = _scaled(op, scale)
        maps = [n for n in chain if kind(view.nodes[n]) in ("Affine", "Linear", *CONVS)]
        label = (maps or chain)[-1] if chain else f"{src}_to_{name}"
        if label in taken | {s.name for s in incoming}:  # one linear node on several paths
            label = f"{label}_{src}_to_{name}"
        syn = FSynapse(label, rename.get(src, src), name, op)
        if lag and src == name:  # recurrent: its delay is the model's (core.graph.is_recurrent)
            syn = replace(syn, delay=lag)
        elif lag:  # deployed, the synapse takes at least its model delay
            syn = replace(syn, lag=lag, delay=lag)
            biased = [n for n in chain[:delays[-1]] if kind(view.nodes[n]) in ("Affine", *CONVS)
                      and np.any(np.asarray(getattr(view.nodes[n], "bias", 0.0)) != 0)]
            if biased and notes is not None:
                notes.append(f"{label}: the bias of {biased[0]} enters {name} from the first "
                             f"step of a sample (NIR's Delay would hold it back {lag} steps)")
        incoming.append(syn)
    return incoming


def _identity(shape: tuple[int, ...]) -> FDense | FConv:
    """The identity map of a node of ``shape``: a 1x1 convolution for a (C, H, W) map, else a
    dense identity matrix."""
    size = int(np.prod(shape))
    if len(shape) == 3:
        c = shape[0]
        return FConv(np.eye(c)[:, :, None, None], (1, 1), (0, 0), 1, tuple(shape), tuple(shape))
    return FDense(np.eye(size))


def _population(view: NIRView, name: str, incoming: list[FSynapse | FSpikeAttention],
                bias: np.ndarray, dt: float, index: np.ndarray | None = None,
                part: str | None = None
                ) -> tuple[FPopulation, list[FSynapse | FSpikeAttention], str | None]:
    """The neuron node ``name`` (or the neurons ``index`` of it, named ``part``) as a
    population with one threshold, its incoming synapses rescaled (input gain and threshold
    normalisation), and a note on any approximation."""
    params = step_params(name, view.nodes[name], int(np.prod(view.shape(name))), dt, index)
    norm = normalise_threshold(part or name, params, bias)
    incoming = [_scale_rows(s, norm.input_scale) for s in incoming]
    shape = view.shape(name) if index is None else (len(index),)
    pop = FPopulation(part or name, shape, params.beta, params.alpha, norm.threshold,
                      norm.bias)
    return pop, incoming, norm.note


def _integrator(view: NIRView, name: str, incoming: list[FSynapse | FSpikeAttention],
                bias: np.ndarray, dt: float, index: np.ndarray | None = None,
                part: str | None = None) -> tuple[FReadout, list[FSynapse | FSpikeAttention]]:
    """The non-spiking ``LI``/``I`` node ``name`` (or the neurons ``index`` of it, named
    ``part``) as a readout whose value is its membrane: ``v <- beta v + gain I + leak``, the
    gain folded into the incoming weights."""
    size = int(np.prod(view.shape(name)))
    p = step_params(name, view.nodes[name], size, dt, index)
    if any(isinstance(s, FSpikeAttention) for s in incoming):
        raise GraphError(f"node {name!r} ({p.kind}): a spike attention into a readout is not "
                         "supported (feed a population)")
    incoming = [_scale_rows(s, p.gain) for s in incoming]
    shape = view.shape(name) if index is None else (len(index),)
    return FReadout(part or name, shape, bias * p.gain + p.leak, beta=p.beta), incoming


def _into_integrator(view: NIRView, name: str) -> bool:
    """Whether the Output ``name`` shows an ``LI``/``I`` node (directly or through Flatten):
    that node is then the readout, and the Output only its name in the graph."""
    node = name
    while len(view.preds[node]) == 1:
        node = view.preds[node][0]
        k = kind(view.nodes[node])
        if k in INTEGRATORS:
            return True
        if k != "Flatten":
            return False
    return False


def _split(view: NIRView, name: str, groups: list[np.ndarray],
           incoming: list[FSynapse | FSpikeAttention]
           ) -> list[tuple[str, np.ndarray, list[FSynapse | FSpikeAttention]]]:
    """The node ``name`` cut into one part per decay group (Loihi has one ``du``/``dv`` per
    population): ``(part name, neuron indices, its incoming synapses)``, each synapse's rows
    of the target's neurons (dense; a conv becomes its dense map)."""
    parts = []
    for i, idx in enumerate(groups):
        part = f"{name}.d{i}"
        rows = [replace(s, name=f"{s.name}.d{i}", target=part,
                        op=FDense(_dense_weight(s, name)[idx])) for s in incoming]
        parts.append((part, idx, rows))
    return parts


def _dense_weight(s: FSynapse | FSpikeAttention, split: str) -> np.ndarray:
    """The [n_out, n_in] matrix of synapse ``s`` (a conv's dense map), to cut for the split
    population ``split``.

    Raises:
        GraphError: a spike attention or a max pooling (not a linear map of one source), or a
            conv too large to write densely.
    """
    if isinstance(s, FSpikeAttention) or (isinstance(s.op, FConv) and s.op.max_pool):
        raise GraphError(f"node {split!r}: its neurons have different time constants and "
                         f"must be split (one decay per population on Loihi), but synapse "
                         f"{s.name!r} cannot be cut per neuron (spike attention or max pooling)")
    if isinstance(s.op, FDense):
        return s.op.weight
    n_in = int(np.prod(s.op.in_shape))
    if n_in > DENSE_LIMIT:
        raise GraphError(f"node {split!r}: its neurons have different time constants and must "
                         f"be split, but conv {s.name!r} reads {n_in} inputs, too many to cut "
                         "densely")
    return s.apply(np.eye(n_in).reshape(n_in, *s.op.in_shape)).T


def _split_sources(syns: list[FSynapse | FSpikeAttention],
                   splits: dict[str, list[tuple[str, np.ndarray]]]
                   ) -> list[FSynapse | FSpikeAttention]:
    """Synapses that read a split population, cut by its parts' columns (an all-zero block
    dropped, one kept per synapse)."""
    out: list[FSynapse | FSpikeAttention] = []
    for s in syns:
        srcs = s.sources if isinstance(s, FSpikeAttention) else (s.source,)
        if not set(srcs) & set(splits):
            out.append(s)
            continue
        src = next(x for x in srcs if x in splits)
        if s.target.startswith(f"{src}.d") or s.target == src:
            raise GraphError(f"node {src!r}: its neurons have different time constants, and "
                             "a recurrent population cannot be split into several")
        w = _dense_weight(s, src)
        cut = [replace(s, name=f"{s.name}.s{j}", source=part, op=FDense(w[:, idx]))
               for j, (part, idx) in enumerate(splits[src])]
        out.extend([c for c in cut if np.any(c.op.weight)] or cut[:1])
    return out


def _build(view: NIRView, meta: dict[str, Any], dt: float, input_kind: str | None,
           input_scale: float | None, timesteps: int | None) -> FGraph:
    """The float graph of ``view``: populations, readouts, composed and balanced synapses.

    A neuron node whose neurons have different time constants becomes one population (or
    readout) per decay, ``<name>.d<i>`` (:func:`_split`)."""
    in_name, in_spec = _input_spec(view, meta, input_kind)
    scale = float(meta.get("input_scale", 1.0)) if input_scale is None else input_scale
    pops: dict[str, FPopulation] = {}
    readouts: dict[str, FReadout] = {}
    syns: list[FSynapse | FSpikeAttention] = []
    notes: list[str] = []
    splits: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name in view.order():
        k = kind(view.nodes[name])
        if k not in (*NEURONS, *INTEGRATORS, "Output"):
            continue
        if k == "Output" and _into_integrator(view, name):
            continue  # the LI/I before it is the readout
        incoming = _incoming(view, name, {s.name for s in syns}, in_name, scale, dt, notes)
        bias = view.bias_into(name)
        if k == "Output":
            readouts[name] = FReadout(name, view.shape(name), bias)
            syns.extend(incoming)
            continue
        size = int(np.prod(view.shape(name)))
        groups = decay_groups(name, view.nodes[name], size, dt)
        parts = ([(name, None, incoming)] if len(groups) == 1
                 else _split(view, name, groups, incoming))
        if len(groups) > 1:
            splits[name] = [(part, idx) for part, idx, _ in parts]
        for part, idx, rows in parts:
            b = bias if idx is None else bias[idx]
            if k in INTEGRATORS:
                readouts[part], rows = _integrator(view, name, rows, b, dt, idx, part)
            else:
                pops[part], rows, note = _population(view, name, rows, b, dt, idx, part)
                notes.extend([note] if note else [])
            syns.extend(rows)
    for s in syns:
        if s.source in readouts:
            raise GraphError(f"Output node {s.source!r} feeds {s.target!r}")
    if splits:
        syns = _split_sources(syns, splits)
    if not readouts and not pops:
        raise GraphError("graph has no neurons and no Output node")
    syns = balance_delays([*pops, *readouts], syns)
    t = timesteps or 0
    if t <= 0:
        raise GraphError("the graph records no timesteps: pass --timesteps, or --input "
                         "inputs.npy ([sample, timestep, ...]: its T is used)")
    return FGraph(in_spec, pops, readouts, syns, t, dict(meta), notes)


def _scaled(op: FDense | FConv, scale: float, weight: np.ndarray | None = None) -> FDense | FConv:
    """``op`` with its weights (or ``weight``) times ``scale``."""
    return replace(op, weight=(op.weight if weight is None else weight) * scale)


def _scale_rows(s: FSynapse, per: np.ndarray) -> FSynapse:
    """Scale each target neuron's incoming weights by per[i] (exact for Dense; Conv needs the
    factor to be uniform per output channel)."""
    if np.allclose(per, 1.0):
        return s
    if isinstance(s, FSpikeAttention):  # one scale for the whole product
        if not np.allclose(per, per[0]):
            raise GraphError(f"synapse {s.name!r}: per-neuron gains/thresholds vary behind "
                             "a spike attention")
        return replace(s, scale=s.scale * float(per[0]))
    if isinstance(s.op, FDense):
        return replace(s, op=FDense(s.op.weight * per[:, None]))
    co = s.op.out_shape[0]
    per_c = per.reshape(co, -1)
    if not np.allclose(per_c, per_c[:, :1]):
        raise GraphError(
            f"synapse {s.name!r}: per-neuron gains/thresholds vary within a conv channel"
        )
    w = s.op.weight * per_c[:, 0][:, None, None, None]
    return replace(s, op=_scaled(s.op, 1.0, weight=w))


def import_nir(
    source: Any,
    *,
    dt: float | None = None,
    timesteps: int | None = None,
    input_kind: str | None = None,
    input_scale: float | None = None,
    input_timesteps: int | None = None,
    reset: str | None = None,
) -> FGraph:
    """A NIR graph (object or file path) as a float graph ready for quantization.

    ``dt`` (s): the time step of the discretization (default: the graph's ``dt`` metadata,
    else the step its neuron parameters pin by an exporter's convention, else snnTorch's 1e-4
    with a warning: :func:`convert.neuron_params.resolve_dt`); the float graph's metadata
    records it as ``dt``, with ``dt_source`` (given, recorded, inferred, guessed, default) and
    ``dt_detail`` (in words). ``timesteps``: steps per sample (default: the graph's);
    ``input_timesteps``: the T of the inputs it will run on (used when the graph records none;
    :func:`timesteps_for`); ``input_kind``: ``"spikes"`` (0/1) or ``"graded"`` (integers up to
    ``input_max``), default from the graph's ``encoding``; ``input_scale``: float value of one
    integer input unit (default: the graph's ``input_scale``, else 1). ``reset``: the reset
    mode of every spiking population (one of ``core.fixedpoint.RESET_MODES``; default: the
    graph's ``reset`` metadata, else ``"zero"``, since NIR records none:
    :func:`resolve_reset`); the float graph's metadata records it as ``reset`` with
    ``reset_source``.

    Raises:
        GraphError: metadata Loihi cannot honour (an unknown reset mode, ``>=`` spikes), an
            unknown input kind, a node or structure that cannot be mapped (named), or no
            timesteps.
        UserError: ``timesteps`` or the graph's recorded T disagree with ``input_timesteps``;
            an unknown ``reset``.
    """
    g = read_nir(source) if isinstance(source, str | Path) else source
    meta = {k: meta_value(v) for k, v in dict(getattr(g, "metadata", {}) or {}).items()}
    mode, mode_source = resolve_reset(meta, reset)
    if meta.get("spike_comparison") not in (None, ">"):
        raise GraphError("graph fires on '>=' but Loihi fires on '>' (strictly greater)")
    if input_kind not in (None, "spikes", "graded"):
        raise GraphError(f"input kind must be 'spikes' or 'graded', not {input_kind!r}")
    view = NIRView(g)
    step = resolve_dt(view.nodes, meta, dt)
    meta = {**meta, "dt": step.dt, "dt_source": step.source, "dt_detail": step.how}
    t = timesteps_for(meta.get("timesteps"), timesteps, input_timesteps)
    fg = _build(view, meta, step.dt, input_kind, input_scale, t)
    fg = replace(fg, populations={k: replace(p, reset=mode) for k, p in fg.populations.items()},
                 metadata={**fg.metadata, "reset": mode, "reset_source": mode_source})
    return replace(fg, notes=[step.warning, *fg.notes]) if step.warning else fg


def resolve_reset(meta: dict[str, Any], given: str | None) -> tuple[str, str]:
    """The reset mode of every population of an imported graph and where it came from:
    ``(mode, "given")`` for ``--reset``, ``(mode, "recorded")`` for the graph's ``reset``
    metadata (our exports record ``"zero"``), else ``("zero", "default")``: NIR has no
    reset field and the exporters that subtract (snnTorch, Sinabs) do not record it
    (docs/foreign-nir.md, "Reset").

    Raises:
        UserError: ``given`` is not one of ``core.fixedpoint.RESET_MODES``.
        GraphError: the recorded mode is not one of them.
    """
    if given is not None:
        if given not in RESET_MODES:
            raise UserError(f"--reset {given!r} is not one of {', '.join(RESET_MODES)}")
        return given, "given"
    recorded = meta.get("reset")
    if recorded is None:
        return "zero", "default"
    if recorded not in RESET_MODES:
        raise GraphError(f"graph metadata says reset={recorded!r}, not one of "
                         f"{', '.join(RESET_MODES)}")
    return str(recorded), "recorded"


def timesteps_for(recorded: Any, given: int | None, from_input: int | None) -> int | None:
    """The steps per sample to run: ``given`` (``--timesteps``), else the graph's ``recorded``
    T, else the input's (``from_input``, the T axis of an ``[N, T, ...]`` input file).

    Raises:
        UserError: ``given`` or ``recorded`` disagrees with ``from_input`` (one line that
            says what to pass), or a T that is not positive.
    """
    rec = int(recorded) if recorded not in (None, "", 0) else None
    for what, v in (("--timesteps", given), ("the input's timesteps", from_input)):
        if v is not None and int(v) <= 0:
            raise UserError(f"{what} must be positive, got {v}")
    if given:
        if from_input and int(from_input) != int(given):
            raise UserError(f"--timesteps {given} disagrees with the input, which has "
                            f"{from_input} timesteps ([sample, timestep, ...])")
        return int(given)
    if rec:
        if from_input and int(from_input) != rec:
            raise UserError(f"the input has {from_input} timesteps but the graph records "
                            f"timesteps={rec}; pass --timesteps {from_input} to run the graph "
                            f"for {from_input} steps, or give inputs of {rec} steps")
        return rec
    return int(from_input) if from_input else None
