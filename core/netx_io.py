"""lava-dl netx network files (HDF5) <-> integer graphs (:class:`core.graph.QGraph`).

A netx file is what lava-dl's slayer writes with ``net.export_hdf5(path)`` and what
``lava.lib.dl.netx.hdf5.Network`` turns into Lava processes. Its layout (lava-dl 0.6.0):

- ``layer/<i>`` groups, one per block, in order; each has a ``type`` string dataset
  (``(1,)``, ``S10``: ``input``, ``dense``, ``conv``, ``flatten``, ``pool``, ...)
  and ``shape``, the block's neuron shape in slayer's (C, H, W) order (netx reverses it to
  Lava's (x, y, c): ``netx/hdf5.py`` ``create_conv``);
- ``dense``: ``weight`` [out, in] (integers, slayer's ``pre_hook_fx(descale=True)``),
  optional ``bias`` [out] and ``delay`` (``slayer/block/base.py`` ``AbstractDense.export_hdf5``);
- ``conv``: ``weight`` [out, in/groups, kH, kW] (PyTorch cross-correlation layout; netx flips
  the kernel for Lava's true convolution), ``stride``/``padding``/``dilation`` in (H, W)
  order, ``groups``, optional per-channel ``bias`` (``AbstractConv.export_hdf5``);
- ``neuron/{type, iDecay, vDecay, vThMant, refDelay, gradedSpike}`` for CUBA neurons
  (``slayer/neuron/cuba.py`` ``device_params``).

How netx runs a CUBA layer (``netx/hdf5.py`` ``get_neuron_params``): Lava's ``LIF`` with
``du = iDecay - 1`` (Lava's bit-accurate LIF adds one back: ``core.fixedpoint.decay_u``),
``dv = vDecay``, ``vth = vThMant``, ``bias_mant = bias`` and ``bias_exp = 6``. A dense layer's
weights go through ``netx.utils.optimize_weight_bits`` (shifted left by ``s`` bits with
``weight_exp = -s``): that is exact when Lava's weight truncation keeps every shifted weight,
which the reader and the writer check (:func:`_netx_dense_exact`). Conv weights go to Lava's
Conv as they are. So a CUBA layer maps onto one Dense/Conv synapse and one
:class:`~core.graph.LIFPopulation` (reset ``"zero"``) without changing any arithmetic.

What has no exact counterpart is refused in one line naming the layer: SDNN, RF and complex
neurons, graded CUBA spikes, pooling, concatenation, recurrent and complex dense layers,
per-synapse delays that differ, dilated convs, an input layer with its own neuron. See
docs/netx.md.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from core import fixedpoint as fx
from core.errors import GraphError
from core.files import write_atomic
from core.graph import INPUT, Conv, Dense, InputSpec, LIFPopulation, QGraph, conv2d_out_hw

__all__ = ["NETX_SUFFIXES", "is_netx_file", "read_netx", "write_netx", "check_netx_writable"]

NETX_SUFFIXES = (".net", ".h5", ".hdf5")
# netx's fixed bias exponent (netx/hdf5.py get_neuron_params: 'bias_exp': 6).
NETX_BIAS_EXP = 6
# netx clamps larger delays (netx/hdf5.py create_dense: np.clip(delay, 0, 62)).
NETX_MAX_DELAY = 62
# Layer types netx knows but does not run or that have no exact counterpart here.
_REFUSED_TYPES = {
    "pool": "pooling layer (netx raises NotImplementedError for it)",
    "convT": "transposed conv (netx raises NotImplementedError for it)",
    "unpool": "unpooling layer (netx raises NotImplementedError for it)",
    "average": "average layer (netx raises NotImplementedError for it)",
    "concat": "concatenation (netx raises NotImplementedError for it)",
    "dense_rec": "recurrent dense layer (not mapped)",
    "dense_comp": "complex dense layer (not mapped)",
}


def is_netx_file(path: str | Path) -> bool:
    """Whether ``path`` names a netx network file (by its suffix, :data:`NETX_SUFFIXES`)."""
    return Path(path).suffix.lower() in NETX_SUFFIXES


# --- reading -----------------------------------------------------------------------------------

def _text(ds: Any) -> str:
    """A netx string dataset (``(1,)`` S10, or a scalar) as str."""
    v = ds[()]
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    return v.decode("ascii") if isinstance(v, bytes) else str(v)


def _pair(v: Any) -> tuple[int, int]:
    """A (H, W) pair from a scalar or a 2-vector dataset value."""
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        return int(a[0]), int(a[0])
    return int(a[0]), int(a[1])


def _netx_weight_bits(w: np.ndarray) -> tuple[int, int]:
    """``(scale_bits, num_weight_bits)`` that netx's ``optimize_weight_bits`` picks for ``w``
    (netx/utils.py): the left shift that fills 8 bits of the weights' sign mode, and the bits
    Lava keeps after it (fewer when the weights have trailing zero bits)."""
    wmax, wmin = int(w.max()), int(w.min())
    if wmax < 0:
        scale, signed = -256 / wmin, 0
    elif wmin >= 0:
        scale, signed = 255 / wmax, 0
    else:
        scale, signed = min(127 / wmax if wmax else math.inf, -128 / wmin), 1
    scale_bits = int(math.floor(math.log2(scale))) + signed
    n = 8  # the largest power of two dividing every weight, at most 2**8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    n -= signed
    return scale_bits, 8 - scale_bits - n


def _netx_dense_exact(w: np.ndarray) -> bool:
    """Whether netx's Dense computes exactly ``w @ s`` for integer weights ``w``: after its
    shift by ``scale_bits`` Lava's truncation to ``num_weight_bits`` (and its 8-bit clip,
    :func:`core.fixedpoint.lava_dense_weights`) must keep every weight, then ``weight_exp =
    -scale_bits`` shifts an exact multiple of ``2**scale_bits`` back."""
    w = np.asarray(w, dtype=np.int64)
    if not w.size or not w.any():
        return True  # netx divides by the largest weight: an all-zero layer fails there
    if int(w.max()) > 254 and int(w.min()) < 0 or int(w.min()) < -256 and int(w.max()) > 0:
        return False  # netx clips these (optimize_weight_bits' warning)
    sb, nb = _netx_weight_bits(w)
    if sb < 0 or nb <= 0 or nb > 8:
        return False
    shifted = w << sb
    return bool(np.array_equal(fx.lava_dense_weights(shifted, nb), shifted))


def _neuron(layer: h5py.Group, where: str) -> tuple[int, int, int]:
    """``(du, dv, vth)`` of a CUBA layer's neuron group, as netx gives them to Lava's LIF."""
    if "neuron" not in layer:
        raise GraphError(f"{where}: no neuron group; netx would use a default integrator with "
                         "iDecay 0 (du = -1), which our LIF populations cannot express")
    nrn = layer["neuron"]
    kind = _text(nrn["type"]) if "type" in nrn else "?"
    if kind not in ("CUBA", "LOIHI"):
        raise GraphError(f"{where}: neuron type {kind!r} is not mapped (only CUBA/LOIHI "
                         "neurons run as Loihi LIF populations)")
    if "gradedSpike" in nrn and bool(np.asarray(nrn["gradedSpike"][()]).reshape(-1)[0]):
        raise GraphError(f"{where}: graded CUBA spikes (gradedSpike) are not mapped: netx "
                         "runs them as binary LIF spikes, slayer trains them graded")
    if "messageBits" in nrn and int(np.asarray(nrn["messageBits"][()]).reshape(-1)[0]):
        raise GraphError(f"{where}: neuron messageBits > 0 (graded output) is not mapped")
    i_decay = int(np.asarray(nrn["iDecay"][()]).reshape(-1)[0])
    dv = int(np.asarray(nrn["vDecay"][()]).reshape(-1)[0])
    vth = int(np.asarray(nrn["vThMant"][()]).reshape(-1)[0])
    if i_decay < 1:
        raise GraphError(f"{where}: iDecay {i_decay} gives netx's du = iDecay - 1 < 0, "
                         "outside Loihi's 12-bit current decay")
    if vth > fx.VTH_MAX:
        # slayer's Affine output block writes vThMant = 2**18 - 1 (base.py AbstractAffine):
        # a layer that never spikes, read out as its voltage; no spiking population is that
        raise GraphError(f"{where}: vThMant {vth} is above Loihi's {fx.VTH_MAX} (slayer's "
                         "non-spiking Affine output layer?); not mapped")
    return i_decay - 1, dv, vth


def _bias(layer: h5py.Group, n_channels: int, size: int, where: str) -> np.ndarray:
    """The layer's bias per neuron (flat C-order over (C, H, W)), zeros without one."""
    if "bias" not in layer:
        return np.zeros(size, dtype=np.int64)
    b = np.asarray(layer["bias"][()])
    if not np.array_equal(b, np.round(b)):
        raise GraphError(f"{where}: bias is not integer (netx casts it to int32)")
    b = b.astype(np.int64).reshape(-1)
    if b.size == 1:
        return np.full(size, int(b[0]), dtype=np.int64)
    if b.size == n_channels:  # per channel (netx broadcasts it over x, y)
        return np.repeat(b, size // n_channels)
    raise GraphError(f"{where}: bias of {b.size} values fits neither one value nor "
                     f"{n_channels} channels (of {size} neurons)")


def _delay(layer: h5py.Group, where: str) -> int:
    """One delay for the whole layer (netx takes a scalar, per-output or per-input vector)."""
    if "delay" not in layer:
        return 0
    d = np.asarray(layer["delay"][()]).reshape(-1)
    if d.size == 0:
        return 0
    if not np.all(d == d[0]):
        raise GraphError(f"{where}: delays differ between synapses ({int(d.min())}.."
                         f"{int(d.max())}); only one delay per layer is mapped")
    delay = int(d[0])
    if not 0 <= delay <= NETX_MAX_DELAY:
        raise GraphError(f"{where}: delay {delay} outside netx's 0..{NETX_MAX_DELAY}")
    return delay


def _population(name: str, shape: tuple[int, ...], neuron: tuple[int, int, int],
                bias: np.ndarray) -> LIFPopulation:
    du, dv, vth = neuron
    exp, mant = NETX_BIAS_EXP, bias
    # keep the mantissa in Loihi's 13 bits by moving exact factors of two into the exponent
    while (exp < fx.BIAS_EXP_MAX and mant.size and np.abs(mant).max() > fx.BIAS_MANT_MAX
           and not np.any(mant % 2)):
        mant, exp = mant // 2, exp + 1
    return LIFPopulation(name=name, shape=shape, du=du, dv=dv, vth=vth,
                         bias_mant=mant.astype(np.int64), bias_exp=exp, reset="zero")


def read_netx(path: str | Path, *, timesteps: int = 0) -> QGraph:
    """Read a lava-dl netx HDF5 network (CUBA dense/conv layers) as an integer graph.

    Populations are named ``layer<i>`` after the file's block index, synapses ``syn<i>``
    (or the names :func:`write_netx` kept in the groups' HDF5 attributes);
    the input is binary spikes of the input layer's shape (C, H, W) or (N,), or of the first
    layer's input size when the file has no input layer (a dense first layer only). The file
    records no number of steps: ``timesteps`` (0: none, the caller's or the input's).

    Raises:
        GraphError: the file is unreadable or not a netx network, or a layer has no exact
            counterpart (one line naming ``layer/<i>`` and why); the graph's own rules
            (:meth:`QGraph.validate`).
    """
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise GraphError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        if "layer" not in f:
            raise GraphError(f"{path}: no 'layer' group; not a lava-dl netx network file")
        layers = f["layer"]
        keys = sorted(layers.keys(), key=lambda k: int(k) if k.isdigit() else -1)
        input_shape: tuple[int, ...] | None = None
        prev, prev_shape = INPUT, None
        pops: dict[str, LIFPopulation] = {}
        syns: list[Dense | Conv] = []
        for k in keys:
            layer, where = layers[k], f"{path}: layer/{k}"
            kind = _text(layer["type"]) if "type" in layer else "?"
            shape = tuple(int(s) for s in np.asarray(layer["shape"][()]).reshape(-1)) \
                if "shape" in layer else ()
            if kind in _REFUSED_TYPES:
                raise GraphError(f"{where}: {_REFUSED_TYPES[kind]} is not supported")
            if kind == "input":
                if "neuron" in layer:
                    raise GraphError(f"{where}: an input layer with its own neuron is not "
                                     "mapped (netx drives it through its bias); give its "
                                     "output spikes as the input instead")
                if syns:
                    raise GraphError(f"{where}: an input layer after other layers")
                input_shape = prev_shape = shape
                continue
            if kind == "flatten":
                continue  # our Dense reads its source flat in C order, as netx's flatten
            # names we wrote (HDF5 attributes: netx and slayer read datasets only), else ours
            name = str(layer.attrs.get("population", f"layer{k}"))
            syn = str(layer.attrs.get("synapse", f"syn{k}"))
            if kind == "dense":
                if "weight" not in layer:
                    raise GraphError(f"{where}: complex dense weights are not mapped")
                w = np.asarray(layer["weight"][()])
                if not np.array_equal(w, np.round(w)):
                    raise GraphError(f"{where}: weights are not integer")
                n_out = int(np.prod(shape))
                w = w.astype(np.int64).reshape(n_out, -1)
                if prev_shape is None:
                    input_shape = prev_shape = (w.shape[1],)
                if w.shape[1] != int(np.prod(prev_shape)):
                    raise GraphError(f"{where}: weight reads {w.shape[1]} inputs, the layer "
                                     f"before has {int(np.prod(prev_shape))}")
                if not _netx_dense_exact(w):
                    raise GraphError(f"{where}: netx's weight optimisation would not keep "
                                     "these weights exactly (optimize_weight_bits + Lava's "
                                     "truncation)")
                neuron = _neuron(layer, where)
                out_shape = (n_out,)
                syns.append(Dense(name=syn, source=prev, target=name, weight=w,
                                  delay=_delay(layer, where)))
                pops[name] = _population(name, out_shape, neuron,
                                         _bias(layer, n_out, n_out, where))
            elif kind == "conv":
                if prev_shape is None or len(prev_shape) != 3:
                    raise GraphError(f"{where}: a conv needs a (C, H, W) input; the file has "
                                     "no input layer giving one")
                if "weight" not in layer:
                    raise GraphError(f"{where}: complex conv weights are not mapped")
                w = np.asarray(layer["weight"][()])
                if not np.array_equal(w, np.round(w)):
                    raise GraphError(f"{where}: weights are not integer")
                w = w.astype(np.int64)
                w = w.reshape(w.shape[:4])
                dil = _pair(layer["dilation"][()]) if "dilation" in layer else (1, 1)
                if dil != (1, 1):
                    raise GraphError(f"{where}: dilation {dil} is not mapped")
                if _delay(layer, where):
                    raise GraphError(f"{where}: netx ignores conv delays; not mapped")
                stride = _pair(layer["stride"][()]) if "stride" in layer else (1, 1)
                padding = _pair(layer["padding"][()]) if "padding" in layer else (0, 0)
                groups = int(np.asarray(layer["groups"][()]).reshape(-1)[0]) \
                    if "groups" in layer else 1
                in_shape = (int(prev_shape[0]), int(prev_shape[1]), int(prev_shape[2]))
                ho, wo = conv2d_out_hw(in_shape[1:], w.shape[2:], stride, padding)
                out_shape = (int(w.shape[0]), int(ho), int(wo))
                if shape and tuple(shape) != out_shape:
                    raise GraphError(f"{where}: shape {shape} but the conv computes "
                                     f"{out_shape}")
                neuron = _neuron(layer, where)
                syns.append(Conv(name=syn, source=prev, target=name, weight=w, stride=stride,
                                 padding=padding, groups=groups, in_shape=in_shape,
                                 out_shape=out_shape))
                size = int(np.prod(out_shape))
                pops[name] = _population(name, out_shape, neuron,
                                         _bias(layer, out_shape[0], size, where))
            else:
                raise GraphError(f"{where}: layer type {kind!r} is not supported")
            prev, prev_shape = name, out_shape
        if not pops:
            raise GraphError(f"{path}: no dense or conv layer")
    g = QGraph(input=InputSpec(shape=tuple(input_shape or ())), populations=pops, readouts={},
               synapses=syns, timesteps=int(timesteps),
               metadata={"source": "lava-dl netx", "netx_file": Path(path).name})
    g.validate()
    return g


# --- writing -----------------------------------------------------------------------------------

def _chain(g: QGraph) -> list[Dense | Conv]:
    """The graph's synapses from the input to the last population, one per population.

    Raises:
        GraphError: the graph is not one chain netx can express (one line naming why).
    """
    if g.readouts:
        raise GraphError(f"readout {next(iter(g.readouts))!r}: netx has no off-chip readout "
                         "(its last layer spikes); write a graph that ends in a population")
    if g.input.kind != "spikes" or g.input.bitplanes:
        raise GraphError("input: netx files carry binary spike inputs only, this graph reads "
                         f"{g.input.kind} input")
    chain, node = [], INPUT
    remaining = list(g.synapses)
    while remaining:
        out = [s for s in remaining if node in ([s.source] if not hasattr(s, "sources")
                                                else list(s.sources))]
        if len(out) != 1:
            raise GraphError(f"node {node!r}: {len(out)} outgoing synapses; netx writes "
                             "sequential networks only")
        s = out[0]
        if not isinstance(s, (Dense, Conv)):
            raise GraphError(f"synapse {s.name!r}: {type(s).__name__} has no netx layer")
        if s.source_slice is not None or s.lag:
            raise GraphError(f"synapse {s.name!r}: reads part of its source or has a model "
                             "delay; no netx layer expresses it")
        if s.weight_exp:
            raise GraphError(f"synapse {s.name!r}: weight exponent {s.weight_exp}; netx "
                             "chooses its own and reads none from the file")
        chain.append(s)
        remaining.remove(s)
        node = s.target
    if [s.target for s in chain] != list(g.populations) and \
            sorted(s.target for s in chain) != sorted(g.populations):
        raise GraphError("populations: not every population lies on the one chain")
    return chain


def check_netx_writable(g: QGraph) -> None:
    """Refuse, in one line naming the node, what a netx file cannot express exactly.

    Raises:
        GraphError: readouts, non-binary input, branches, spike attention, weight exponents,
            source slices, reset modes other than ``"zero"``, a bias that is not a multiple
            of ``2**6`` after its exponent, conv max pooling or delay, weights netx's
            optimisation would change.
    """
    for s in _chain(g):
        p = g.populations[s.target]
        if p.reset != "zero":
            raise GraphError(f"population {p.name!r}: reset {p.reset!r}; netx's LIF resets "
                             "to zero")
        b = fx.effective_bias(np.asarray(p.bias_mant, dtype=np.int64), p.bias_exp)
        if np.any(b % (1 << NETX_BIAS_EXP)):
            raise GraphError(f"population {p.name!r}: bias << {p.bias_exp} is not a multiple "
                             f"of 2**{NETX_BIAS_EXP} (netx fixes bias_exp = 6)")
        if isinstance(s, Conv):
            if s.max_pool is not None:
                raise GraphError(f"synapse {s.name!r}: max pooling of currents has no netx "
                                 "layer")
            if s.delay:
                raise GraphError(f"synapse {s.name!r}: netx ignores conv delays")
            per_channel = b.reshape(s.out_shape[0], -1)
            if np.any(per_channel != per_channel[:, :1]):
                raise GraphError(f"population {p.name!r}: bias differs within a channel; a "
                                 "netx conv layer has one bias per channel")
        elif not _netx_dense_exact(s.weight):
            raise GraphError(f"synapse {s.name!r}: netx's weight optimisation would change "
                             "these weights")
        if s.delay > NETX_MAX_DELAY:
            raise GraphError(f"synapse {s.name!r}: delay {s.delay} > {NETX_MAX_DELAY}")


def _write_type(grp: h5py.Group, kind: str) -> None:
    # slayer writes the type as a (1,) S10 dataset (slayer/block/base.py export_hdf5)
    grp.create_dataset("type", (1,), "S10", [kind.encode("ascii")])


def write_netx(g: QGraph, path: str | Path) -> None:
    """Write a sequential integer graph as a lava-dl netx network file, atomically.

    Layout as slayer's ``export_hdf5`` (module docstring): ``layer/0`` is an input layer of
    the input's shape; then one ``dense``/``conv`` layer per synapse with its CUBA neuron
    (``iDecay = du + 1``, ``vDecay = dv``, ``vThMant = vth``, ``refDelay = 1``,
    ``gradedSpike = 0``), a ``bias`` (``bias_mant << bias_exp >> 6``) and, for a dense layer
    with a delay, a per-output ``delay``; a ``flatten`` layer before a dense layer that reads
    a (C, H, W) population.

    Raises:
        GraphError: what netx cannot express exactly (:func:`check_netx_writable`).
    """
    check_netx_writable(g)
    chain = _chain(g)

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            layers = f.create_group("layer")
            i = 0
            grp = layers.create_group(str(i))
            _write_type(grp, "input")
            grp.create_dataset("shape", data=np.array(g.input.shape, dtype=np.int64))
            prev_shape = g.input.shape
            for s in chain:
                p = g.populations[s.target]
                if isinstance(s, Dense) and len(prev_shape) > 1:
                    i += 1
                    grp = layers.create_group(str(i))
                    _write_type(grp, "flatten")
                    grp.create_dataset("shape", data=np.array(prev_shape, dtype=np.int64))
                i += 1
                grp = layers.create_group(str(i))
                grp.attrs["population"], grp.attrs["synapse"] = p.name, s.name
                bias = fx.effective_bias(np.asarray(p.bias_mant, dtype=np.int64),
                                         p.bias_exp) >> NETX_BIAS_EXP
                if isinstance(s, Dense):
                    _write_type(grp, "dense")
                    grp.create_dataset("shape", data=np.array([p.size], dtype=np.int64))
                    grp.create_dataset("inFeatures", data=s.weight.shape[1])
                    grp.create_dataset("outFeatures", data=s.weight.shape[0])
                    grp.create_dataset("weight", data=np.asarray(s.weight, dtype=np.int64))
                    if s.delay:
                        grp.create_dataset("delay", data=np.full(p.size, s.delay, np.int64))
                    grp.create_dataset("bias", data=bias.astype(np.int64))
                else:
                    _write_type(grp, "conv")
                    grp.create_dataset("shape", data=np.array(s.out_shape, dtype=np.int64))
                    grp.create_dataset("inChannels", data=s.in_shape[0])
                    grp.create_dataset("outChannels", data=s.out_shape[0])
                    grp.create_dataset("kernelSize", data=np.array(s.weight.shape[2:]))
                    grp.create_dataset("stride", data=np.array(s.stride, dtype=np.int64))
                    grp.create_dataset("padding", data=np.array(s.padding, dtype=np.int64))
                    grp.create_dataset("dilation", data=np.array([1, 1], dtype=np.int64))
                    grp.create_dataset("groups", data=int(s.groups))
                    grp.create_dataset("weight", data=np.asarray(s.weight, dtype=np.int64))
                    c = s.out_shape[0]
                    grp.create_dataset("bias", data=bias.reshape(c, -1)[:, 0])
                nrn = grp.create_group("neuron")
                _write_type(nrn, "CUBA")
                for key, val in (("iDecay", p.du + 1), ("vDecay", p.dv), ("vThMant", p.vth),
                                 ("refDelay", 1), ("gradedSpike", 0)):
                    nrn.create_dataset(key, data=int(val))
                prev_shape = p.shape

    write_atomic(path, write)
