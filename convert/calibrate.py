"""Calibrated quantization scales: the ranges a float graph's states actually reach on data.

Without calibration the quantizer (:mod:`convert.quantize`) bounds each population's scale by
the worst case: every input at its largest value on every positive weight, step after step.
For a graded (pixel) input deployed as bit planes that bound is very loose (a 784-pixel
image at 255 everywhere) and leaves the first layer's weights a few bits. Calibration runs
the FLOAT graph (:func:`convert.float_sim.simulate`) on a batch of real inputs and records,
per population, the peak of ``|u|`` and of ``-v`` (how far the membrane falls below 0: above
its threshold v spikes and resets, so only its floor can saturate on Loihi). The quantizer
then keeps those peaks, times :data:`CALIBRATION_MARGIN`, inside the 24-bit range, instead of
the worst case (never below the worst-case scale: that one is a guarantee). A bit-plane input
layer is then also deployed with shifted planes (``quantize(shift_planes=True)``): plane b at
weight exponent ``b + e``, so that its weights keep 8 bits.

How a peak is summarised: per sample, the largest value over the population's neurons and
steps; over the batch, the ``percentile`` of those per-sample peaks (100, the default: the
largest in the batch). An input beyond the calibration batch can still drive u past 24 bits
or v to its floor: every target counts such events at run time (``overflow/<kind>/<pop>``
in its counters, docs/contract.md "Overflow"), and the report warns where the worst case
exceeds the range, so nothing is silent.

After quantization :func:`layer_errors` measures, per population and readout, the error of
the integer layer against the float one on the same batch, each layer in isolation (fed the
float graph's own spikes, so that errors of earlier layers do not accumulate): the relative
RMS error of its synaptic input current and the fraction of its spike entries that differ.
numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.float_graph import FGraph, FSpikeAttention, FSynapse
from convert.float_sim import simulate
from core import fixedpoint as fx
from core.datasets import load_dataset
from core.encoding import encode_as_recorded
from core.errors import UserError
from core.graph import INPUT, Conv, Dense, QGraph, SpikeAttention, is_recurrent, synapse_lag
from core.ops import conv2d

# Samples drawn from the recorded dataset's training split when no file is given: enough for
# the peaks of every population to settle on digits/MNIST (measured: benchmarks/
# deploy_accuracy.py), few enough that the float run takes seconds on a CPU.
CALIBRATION_SAMPLES = 256
# The training split: the test split, on which accuracy is reported, never sets a scale.
CALIBRATION_SPLIT = "train"
# Per-sample peaks summarised by their maximum over the batch.
DEFAULT_PERCENTILE = 100.0
# The calibration peak may be exceeded by this factor (one bit) before u wraps or v saturates:
# inputs beyond the calibration batch keep one bit of headroom.
CALIBRATION_MARGIN = 2.0


@dataclass
class Calibration:
    """What the float graph reached on a calibration batch, per population (float voltage
    units, the float graph's): ``u_peak`` the summarised peak of ``|u|``, ``v_peak`` that of
    ``max(-v, 0)`` (v before its reset). ``samples``: batch size; ``percentile``, ``margin``:
    see the module docstring; ``source``: where the batch came from, in words. ``inputs``
    ([N, T, *input_shape], as encoded) and ``spikes`` (the float graph's, population -> bool
    [N, T, size]) are kept for :func:`layer_errors`."""

    u_peak: dict[str, float]
    v_peak: dict[str, float]
    samples: int
    percentile: float
    margin: float
    source: str
    inputs: np.ndarray = field(repr=False)
    spikes: dict[str, np.ndarray] = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """The batch in plain JSON types (``QuantReport.calibration``)."""
        return {"samples": self.samples, "percentile": self.percentile,
                "margin": self.margin, "source": self.source}


def calibration_inputs(fg: FGraph, source: str | Path | None = None,
                       samples: int = CALIBRATION_SAMPLES) -> tuple[np.ndarray, str]:
    """The calibration batch ``[N, T, *input_shape]`` and its description: the first
    ``samples`` of ``source`` (a .npy file of inputs as encoded), or, with ``source=None``,
    of the training split of the dataset the graph records, encoded as it records.

    Raises:
        UserError: ``samples`` < 1; no file and no recorded dataset/encoding; a file that is
            missing, not .npy, or whose shape does not fit the graph's input and timesteps.
    """
    if samples < 1:
        raise UserError(f"calibration samples must be positive, got {samples}")
    if source is None:
        meta = fg.metadata
        dataset = meta.get("dataset")
        if not dataset or meta.get("encoding") not in ("direct", "rate"):
            raise UserError("calibration: the graph records no dataset and encoding; give the "
                            "batch as a file: --calibrate inputs.npy ([sample, timestep, "
                            "*input_shape])")
        images, _ = load_dataset(str(dataset), CALIBRATION_SPLIT)
        x = encode_as_recorded(meta, fg.timesteps, images[:samples])
        return x, f"{dataset}/{CALIBRATION_SPLIT} [0:{len(x)}]"
    p = Path(source)
    if not p.is_file():
        raise UserError(f"{p}: no such calibration file")
    try:
        x = np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # np.load raises several types for a file that is not .npy
        raise UserError(f"{p}: not a .npy array ({type(e).__name__}: {e})") from None
    # as every target reads inputs (targets.base.check_inputs): T steps of input.size values
    if (x.ndim < 2 or int(np.prod(x.shape[2:])) != fg.input.size
            or (fg.timesteps and x.shape[1] != fg.timesteps)):
        t = fg.timesteps or "timestep"
        raise UserError(f"{p}: calibration inputs must be [sample, {t}, *{fg.input.shape}] for "
                        f"this graph; got shape {list(x.shape)}")
    x = np.asarray(x[:samples])
    return x, f"{p} [0:{len(x)}]"


def measure(fg: FGraph, inputs: np.ndarray, *, percentile: float = DEFAULT_PERCENTILE,
            margin: float = CALIBRATION_MARGIN, source: str = "inputs") -> Calibration:
    """Run the float graph on ``inputs`` [N, T, *input_shape] and summarise each population's
    peaks (see the module docstring).

    Raises:
        UserError: an empty batch, a percentile outside (0, 100] or a margin below 1.
    """
    if not 0 < percentile <= 100:
        raise UserError(f"calibration percentile must be in (0, 100], got {percentile}")
    if margin < 1:
        raise UserError(f"calibration margin must be >= 1, got {margin}")
    x = np.asarray(inputs)
    if len(x) == 0:
        raise UserError("calibration batch is empty")
    u_max = {n: np.zeros(len(x)) for n in fg.populations}
    v_min = {n: np.zeros(len(x)) for n in fg.populations}

    def observe(name: str, _t: int, u: np.ndarray, v: np.ndarray) -> None:
        u_max[name] = np.maximum(u_max[name], np.abs(u).max(axis=1, initial=0.0))
        v_min[name] = np.maximum(v_min[name], (-v).max(axis=1, initial=0.0))

    _, spikes = simulate(fg, x, observe)
    return Calibration(
        u_peak={n: float(np.percentile(a, percentile)) for n, a in u_max.items()},
        v_peak={n: float(np.percentile(a, percentile)) for n, a in v_min.items()},
        samples=len(x), percentile=float(percentile), margin=float(margin), source=source,
        inputs=x, spikes=spikes,
    )


def calibrate(fg: FGraph, source: str | Path | None = None, *,
              samples: int = CALIBRATION_SAMPLES, percentile: float = DEFAULT_PERCENTILE,
              margin: float = CALIBRATION_MARGIN) -> Calibration:
    """:func:`calibration_inputs` then :func:`measure`: the calibration the quantizer takes
    (``quantize(fg, calibration=...)``).

    Raises:
        UserError: see :func:`calibration_inputs` and :func:`measure`.
    """
    x, desc = calibration_inputs(fg, source, samples)
    return measure(fg, x, percentile=percentile, margin=margin, source=desc)


def scale_caps(u_peak: float, v_peak: float, margin: float) -> list[float]:
    """The scales ``k`` at which the calibrated peaks, times ``margin``, stay inside Loihi's
    state: ``64 k u_peak margin < 2**23`` (u wraps at 24 bits) and ``64 k v_peak margin <
    2**23 - 1`` (v saturates); a zero peak sets no cap. The float-to-integer factor of both
    states is ``64 k`` (``fixedpoint.ACT_SHIFT``); the quantizer's ``HEADROOM_MARGIN`` for
    rounding is applied by the caller."""
    caps = []
    if u_peak > 0:
        caps.append((fx.A_IN_SAFE - 1) / (u_peak * margin))
    if v_peak > 0:
        caps.append(fx.V_LIMIT / ((1 << fx.ACT_SHIFT) * v_peak * margin))
    return caps


def state_headroom(peak: float, scale: float, limit: int) -> float:
    """``limit / (64 * scale * peak)``: how many times the calibrated peak fits the state's
    range at ``scale`` (inf for a zero peak)."""
    reach = (1 << fx.ACT_SHIFT) * scale * peak
    return limit / reach if reach > 0 else float("inf")


def _shifted(a: np.ndarray, steps: int) -> np.ndarray:
    """``a`` [N, T, ...] delayed by ``steps`` within each sample (zeros before)."""
    if steps <= 0:
        return a
    out = np.zeros_like(a)
    out[:, steps:] = a[:, : max(a.shape[1] - steps, 0)]
    return out


def _float_current(s: FSynapse | FSpikeAttention, acts: dict[str, np.ndarray],
                   fg: FGraph) -> np.ndarray:
    """One float synapse's input to its target per step [N, T, size], as float_sim feeds it
    (a recurrent synapse: the spikes of step t - 1 - delay; a lag: step t - lag)."""
    if isinstance(s, FSpikeAttention):
        n, t = acts[s.sources[0]].shape[:2]
        qkv = (acts[x].reshape(n * t, -1) for x in s.sources)
        return s.apply_qkv(*qkv).reshape(n, t, -1)
    src = _shifted(acts[s.source], (1 + s.delay) if is_recurrent(s) else s.lag)
    n, t = src.shape[:2]
    shape = fg.input.shape if s.source == INPUT else fg.populations[s.source].shape
    return s.apply(src.reshape(n * t, *shape)).reshape(n, t, -1)


def _int_synapse(s: Dense | Conv, src: np.ndarray) -> np.ndarray:
    """A Dense or Conv synapse's integer output [B, n_out] (int64) for source values [B, ...],
    with the shared arithmetic of :mod:`core.fixedpoint` (exponent flooring, the conv's 24-bit
    wrap, max pooling). Sums run as float64 products of integers: exact below 2**53, which
    8-bit weights times 8-bit values reach only past 10**11 terms."""
    b = src.shape[0]
    w = np.asarray(s.weight, dtype=np.float64)
    flat = src.reshape(b, -1).astype(np.float64)
    if isinstance(s, Dense):
        return fx.dense_output(np.rint(flat @ w.T).astype(np.int64), s.weight_exp)
    acc = np.rint(conv2d(flat.reshape(b, *s.in_shape), w, s.stride, s.padding,
                         s.groups)).astype(np.int64)
    out = fx.conv_output(acc, s.weight_exp)
    if s.max_pool is not None:
        out = fx.max_pool2d(out, s.max_pool)
    return np.asarray(out).reshape(b, -1)


def _int_current(s: Dense | Conv | SpikeAttention, acts: dict[str, np.ndarray], qg: QGraph
                 ) -> np.ndarray:
    """One integer synapse's input ``a_in`` to its target per step [N, T, size] (int64) from
    its sources' activity [N, T, size] (a recurrent synapse: the spikes of step t - 1 - delay;
    a lag: step t - lag); a bit-plane synapse reads bit ``b`` of the graded input."""
    if isinstance(s, SpikeAttention):
        n, t = acts[s.sources[0]].shape[:2]
        dim = qg.populations[s.sources[0]].shape[0]
        q, k, v = (acts[x].astype(np.int64).reshape(n * t, dim, -1) for x in s.sources)
        return np.asarray(fx.spike_attention(q, k, v, s.heads, s.shift)).reshape(n, t, -1)
    src = acts[s.source]
    if s.source_slice is not None:  # bit plane b of the graded input (InputSpec: plane-major)
        src = (src.astype(np.int64) >> (s.source_slice[0] // qg.input.size)) & 1
    src = _shifted(src, (1 + s.delay) if is_recurrent(s) else synapse_lag(s))
    n, t = src.shape[:2]
    return _int_synapse(s, src.reshape(n * t, -1)).reshape(n, t, -1)


def integer_forward(qg: QGraph, inputs: np.ndarray
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The integer graph's zero-latency forward in numpy, for calibration reports in the
    convert layer (which may not import torch): ``(spikes, readouts)``, population -> [N, T,
    size] (bool, or int64 counts for a graded reset mode) and readout -> int64 [N, T, size]
    (bias not included), equal to every target's records (tested against torch_ref). Inputs
    [N, T, *input_shape] as encoded (graded values; bit planes are read from them)."""
    x = np.asarray(inputs).astype(np.int64)
    n, t_steps = x.shape[:2]
    acts: dict[str, np.ndarray] = {INPUT: x.reshape(n, t_steps, -1)}
    spikes: dict[str, np.ndarray] = {}
    readouts: dict[str, np.ndarray] = {}
    for name in qg.order():
        incoming = qg.incoming(name)
        a_in = np.zeros((n, t_steps, int(np.prod(qg.node_shape(name)))), dtype=np.int64)
        for s in incoming:
            if not is_recurrent(s):
                a_in = a_in + _int_current(s, acts, qg)
        if name in qg.readouts:
            readouts[name] = a_in
            continue
        p = qg.populations[name]
        recurrent = [s for s in incoming if is_recurrent(s)]
        bias = fx.effective_bias(np.asarray(p.bias_mant, dtype=np.int64), p.bias_exp)
        u = np.zeros((n, p.size), dtype=np.int64)
        v = np.zeros_like(u)
        out = np.zeros((n, t_steps, p.size), dtype=np.int64)
        for t in range(t_steps):
            a_t = a_in[:, t]
            for s in recurrent:  # its own spikes of step t - 1 - delay; none before
                if t - 1 - s.delay >= 0:
                    a_t = a_t + _int_synapse(s, out[:, t - 1 - s.delay])
            u, v, s_t = fx.lif_step(u, v, a_t, p.du, p.dv, p.vth, bias, p.reset)
            out[:, t] = s_t
        acts[name] = out
        spikes[name] = out if p.graded else out.astype(bool)
    return spikes, readouts


@dataclass
class LayerError:
    """One population's or readout's integer layer against the float one on the calibration
    batch, in isolation (fed the float graph's spikes): ``current``, the relative RMS error of
    its per-step synaptic input (integer ``a_in / scale`` against the float current); and,
    for a population, ``spikes``, the fraction of its spike entries [N, T, size] that differ
    (None for a readout)."""

    current: float
    spikes: float | None


def layer_errors(fg: FGraph, qg: QGraph, scales: dict[str, float], cal: Calibration
                 ) -> dict[str, LayerError]:
    """Each target node's :class:`LayerError` (``scales``: the quantizer's scale ``k`` per
    node, integer units per float volt), in graph order.

    The integer neuron is the shared one (``fixedpoint.lif_step``), u and v from 0 at each
    sample's first step, as every target runs it.
    """
    x = np.asarray(cal.inputs)
    n, t = x.shape[:2]
    acts: dict[str, np.ndarray] = {INPUT: x.reshape(n, t, -1)}
    acts.update({p: s.reshape(n, t, -1).astype(np.int64) for p, s in cal.spikes.items()})
    out: dict[str, LayerError] = {}
    for name in fg.order():
        f_cur = sum((_float_current(s, acts, fg) for s in fg.incoming(name)),
                    np.zeros((n, t, _size(fg, name))))
        i_cur = sum((_int_current(s, acts, qg) for s in qg.synapses if s.target == name),
                    np.zeros((n, t, _size(fg, name)), dtype=np.int64))
        k = scales[name]
        den = float(np.sqrt(np.mean(f_cur**2))) if f_cur.size else 0.0
        err = float(np.sqrt(np.mean((i_cur / k - f_cur) ** 2)) / den) if den > 0 else 0.0
        spikes = None
        if name in qg.populations:
            p = qg.populations[name]
            bias = fx.effective_bias(np.asarray(p.bias_mant, dtype=np.int64), p.bias_exp)
            u = np.zeros((n, p.size), dtype=np.int64)
            v = np.zeros((n, p.size), dtype=np.int64)
            wrong = 0
            for step in range(t):
                u, v, s_t = fx.lif_step(u, v, i_cur[:, step], p.du, p.dv, p.vth, bias, p.reset)
                wrong += int(np.count_nonzero(np.asarray(s_t) != cal.spikes[name][:, step]
                                              .reshape(n, -1)))
            spikes = wrong / max(n * t * p.size, 1)
        out[name] = LayerError(err, spikes)
    return out


def _size(fg: FGraph, name: str) -> int:
    return fg.populations[name].size if name in fg.populations else fg.readouts[name].size
