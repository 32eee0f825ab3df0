"""Float graph -> Loihi integers. The one place where float becomes fixed point (deterministic).

Per target population we pick one scale ``k`` (integer units per unit of float voltage, before
Loihi's 2**6 alignment): as large as possible while the biggest weight fits 8 bits, the
threshold fits 17 bits and no single step's worst-case input can wrap the 24-bit current.
Dense synapses whose weights are small at that scale take a negative weight exponent so that
their weights still use the 8-bit range (Conv cannot: Lava ignores its exponent). Mixed-sign weights
are even, so Lava's truncation of the lowest bit leaves them unchanged (checked, not assumed).
Everything clipped or approximated is counted in the report (:class:`QuantReport`; written into
the integer NIR file as JSON with the same field names, see docs/integer-nir.md).

With a calibration batch (``quantize(fg, calibration=...)``, ``--calibrate``; see
:mod:`convert.calibrate`) the 24-bit bound on u comes from the peaks the float graph reaches on
real inputs, with a margin, instead of the worst case; the report then also gives, per
population, the bits its weights use, the headroom on the calibration batch and the error of
the integer layer against the float one. Without it, nothing changes.

    python -m convert.quantize model.nir [-o model.loihi.nir] [--calibrate [inputs.npy]] [--json]
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from convert.calibrate import (
    CALIBRATION_MARGIN,
    CALIBRATION_SAMPLES,
    DEFAULT_PERCENTILE,
    Calibration,
    calibrate,
    integer_forward,
    layer_errors,
    scale_caps,
    state_headroom,
)
from convert.float_graph import (
    FConv,
    FGraph,
    FPopulation,
    FReadout,
    FSpikeAttention,
    FSynapse,
)
from convert.float_sim import simulate
from convert.neuron_params import RESET_HELP
from convert.nir_import import import_nir
from core import fixedpoint as fx
from core.cli import add_output_flags, check_writable, print_json, run_cli
from core.datasets import load_dataset
from core.encoding import encode_as_recorded
from core.errors import UserError
from core.graph import (
    INPUT,
    Conv,
    Dense,
    GraphError,
    LIFPopulation,
    QGraph,
    Readout,
    SpikeAttention,
    check_lava_limits,
)
from core.nir_ext import read_nir
from core.nir_io import is_integer_graph, to_nir, write_qgraph
from core.plots import add_plot_flag, check_plot_dir
from core.readout import predictions

WEIGHT_LIMIT = 254  # largest |weight| we produce: even, so mixed-sign matrices survive Lava
HEADROOM_MARGIN = 0.98  # room for rounding when the worst-case input bounds the scale


# --- the report ------------------------------------------------------------------------------
# Plain dataclasses; ``QuantReport.to_dict()`` is the JSON object written into integer NIR files
# (metadata ``quantization_report``) with the field names readers use. Fields that are constant
# for a kind (``kind`` itself, an attention's weight columns) are not constructor arguments.


@dataclass
class PopulationReport:
    """One LIF population: its scale (integer units per float volt, before Loihi's 2**6
    alignment), the quantized parameters, what was clipped, and how far its state stays from
    the limits of Loihi's fixed point when every input peaks at once, step after step:

    - ``worst_a_in``: the largest |synaptic input| of one step;
    - ``u_steps``: how many steps' inputs the current holds at once, ``sum_{t<T} alpha_q**t``
      (1 for a current-based neuron, ``du = 4095``); ``T`` is ``timesteps`` (u and v reset
      between samples; 0 when unknown: the infinite sum);
    - ``a_in_headroom``: ``A_IN_SAFE / (worst_a_in * u_steps)``, i.e. ``2**23 /`` the largest
      ``|u|``: below 1, u can wrap at 24 bits;
    - ``v_steps``: ``sum_{t<T} beta_q**t``; ``worst_v``: the lowest v can reach,
      ``v_steps * (64 * worst inhibitory input * u_steps + |negative bias|)`` in magnitude
      (above, v spikes and resets: it never needs a bound); ``v_headroom``:
      ``(2**23 - 1) / worst_v``: below 1, v can saturate. ``worst_v`` is None (and
      ``v_headroom`` 0) when v has no bound: no leak (``dv = 0``) and no known T.

    The quantizer picks a scale at which ``a_in_headroom`` is at least 1 (u wraps: it scales
    down) and warns when ``v_headroom`` is below 1 (v saturates, a floor; see
    :func:`_range_caps`, and docs/contract.md, "Overflow"). Reports written before these fields
    existed read with the defaults.
    """

    kind: str = field(default="lif", init=False)
    scale: float
    vth: int
    vth_clipped: bool
    du: int
    dv: int
    beta: float
    beta_quantized: float
    alpha: float
    alpha_quantized: float
    bias_exp: int
    biases_clipped: int
    worst_a_in: int
    a_in_headroom: float
    u_steps: float = 1.0
    v_steps: float = 1.0
    worst_v: int | None = 0
    v_headroom: float = float("inf")
    timesteps: int = 0
    # Set only when the scale was calibrated (None otherwise, and absent from the JSON):
    # the scale the worst case alone gives; the bits of the largest |integer weight| into the
    # population; the calibrated peaks of |u| and -v (float volts) and their headroom at this
    # scale (2**23 / (64 * scale * u_peak), (2**23 - 1) / (64 * scale * v_peak): above 1 the
    # calibration batch stays in range); the layer's error against the float graph on that
    # batch, in isolation (convert.calibrate.LayerError: relative RMS error of its input
    # current, fraction of spike entries that differ).
    worst_case_scale: float | None = None
    scale_limit: str | None = None  # what set the scale, in words (_scale_limit)
    weight_bits: int | None = None
    calibration_u_peak: float | None = None
    calibration_v_peak: float | None = None
    calibration_u_headroom: float | None = None
    calibration_v_headroom: float | None = None
    layer_current_error: float | None = None
    layer_spike_mismatch: float | None = None


@dataclass
class ReadoutReport:
    """One readout: the scale of its integer currents (integer units per float unit) and its
    membrane decay ``dv`` (0: the plain sum of an ``Output``; > 0: a leaky integrator)."""

    kind: str = field(default="readout", init=False)
    scale: float
    dv: int = 0
    # Calibrated graphs only (see PopulationReport): the bits of its largest |integer weight|
    # and the relative RMS error of its input current against the float graph's.
    weight_bits: int | None = None
    layer_current_error: float | None = None


@dataclass
class SynapseReport:
    """One Dense or Conv synapse (``kind`` ``"dense"``/``"conv"``): its weight exponent, the
    largest |integer weight|, how many weights were clipped, whether all rounded to zero, and
    the relative RMS error of ``w * 2**weight_exp`` against the float weights at scale.
    ``bitplanes``: the number of input bit planes it was deployed as (absent otherwise).
    ``floors_to_zero``: its weights are not all zero, none is negative, yet even every input
    at its largest value at once delivers 0 after the weight exponent: it never changes its
    target (like ``all_zero``, a warning)."""

    source: str
    target: str
    kind: str
    delay: int
    max_pool: bool
    weight_exp: int
    max_abs_weight: int
    weights_clipped: int
    all_zero: bool
    rel_rms_error: float
    bitplanes: int | None = None
    floors_to_zero: bool = False


@dataclass
class AttentionReport:
    """One spike attention: its float ``scale`` became the output ``shift`` (also given as
    ``weight_exp``) with relative error ``rel_rms_error``; ``max_count`` is the largest
    ``sum_m A[n, m] v[j, m]`` (tokens x head dim). It has no stored weights."""

    source: str
    sources: list[str]
    target: str
    kind: str = field(default="attention", init=False)
    delay: int
    max_pool: bool = field(default=False, init=False)
    weight_exp: int
    max_abs_weight: int = field(default=0, init=False)
    weights_clipped: int = field(default=0, init=False)
    all_zero: bool = field(default=False, init=False)
    rel_rms_error: float
    scale: float
    shift: int
    heads: int
    max_count: int


@dataclass
class QuantReport:
    """What quantization cost: one entry per population/readout and per synapse (by name),
    the warnings (import approximations first), the input's bit planes (0: none), and the
    step ``dt`` (s) the float graph was imported with and where it came from (``dt_source``,
    in words: given, recorded, inferred from the file, or guessed; None when unknown), and the
    calibration batch when the scales were calibrated (``Calibration.summary()``: samples,
    percentile, margin, source; None otherwise)."""

    populations: dict[str, PopulationReport | ReadoutReport]
    synapses: dict[str, SynapseReport | AttentionReport]
    warnings: list[str]
    input_bitplanes: int
    dt: float | None = None
    dt_source: str | None = None
    calibration: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types, with the field names of the file format (a
        synapse's ``bitplanes`` only where it was deployed as bit planes)."""
        return asdict(self, dict_factory=lambda items: {k: v for k, v in items if v is not None})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantReport:
        """The inverse of :meth:`to_dict` (e.g. the JSON read back from an integer NIR file).

        Raises:
            GraphError: an entry of unknown ``kind`` or with missing fields.
        """
        return cls(
            populations={n: _entry(_POPULATION_KINDS, n, e) for n, e in d["populations"].items()},
            synapses={n: _entry(_SYNAPSE_KINDS, n, e) for n, e in d["synapses"].items()},
            warnings=list(d.get("warnings", [])),
            input_bitplanes=int(d.get("input_bitplanes", 0)),
            dt=None if d.get("dt") is None else float(d["dt"]),
            dt_source=d.get("dt_source"),
            calibration=d.get("calibration"),
        )

    def silent_synapses(self) -> list[str]:
        """Synapses that never change their target: all weights zero, or every input they
        can deliver floors to zero (``SynapseReport.floors_to_zero``)."""
        return [n for n, s in self.synapses.items()
                if s.all_zero or getattr(s, "floors_to_zero", False)]


_POPULATION_KINDS: dict[str, type] = {"lif": PopulationReport, "readout": ReadoutReport}
_SYNAPSE_KINDS: dict[str, type] = {"dense": SynapseReport, "conv": SynapseReport,
                                   "attention": AttentionReport}


def _entry(kinds: dict[str, type], name: str, d: dict[str, Any]) -> Any:
    """One report entry from its JSON object: the dataclass its ``kind`` names."""
    cls = kinds.get(d.get("kind", ""))
    if cls is None:
        raise GraphError(f"quantization report: {name!r} has unknown kind {d.get('kind')!r}")
    try:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.init and f.name in d})
    except TypeError as e:
        raise GraphError(f"quantization report: entry {name!r} is incomplete ({e})") from None


def _int_weights(w: np.ndarray) -> tuple[np.ndarray, int]:
    """Round to integers Lava keeps unchanged; returns (weights, number clipped)."""
    q = np.round(w)
    if q.size and q.min() < 0 < q.max():
        q = 2 * np.round(w / 2)
        lo, hi = -WEIGHT_LIMIT, WEIGHT_LIMIT
    else:
        lo, hi = -255, 255
    clipped = int(np.count_nonzero((q < lo) | (q > hi)))
    q = np.clip(q, lo, hi).astype(np.int64)
    if not np.array_equal(fx.lava_dense_weights(q), q):
        raise GraphError("quantized weights would be altered by Lava's truncation (a bug in the "
                         "quantizer: please report the graph)")
    return q, clipped


def _max_abs(s: FSynapse) -> float:
    """The largest |float weight| of a synapse (0 for an empty one)."""
    return float(np.abs(s.op.weight).max()) if s.op.weight.size else 0.0


def _worst_sides(w: np.ndarray, weight_exp: int, max_value: int, conv: bool
                 ) -> tuple[float, float]:
    """(largest excitatory, largest inhibitory) input one synapse can deliver to one neuron in
    one step, both >= 0: every input with a positive (negative) weight at its maximum."""
    axes = (1, 2, 3) if conv else (1,)
    pos = np.clip(w, 0, None).sum(axis=axes) * max_value
    neg = np.clip(w, None, 0).sum(axis=axes) * max_value
    scale = 2.0**weight_exp
    return float(pos.max(initial=0)) * scale, -float(neg.min(initial=0)) * scale


def _worst_input(w: np.ndarray, weight_exp: int, max_value: int, conv: bool) -> float:
    """Largest |a_in| one synapse can deliver in one step (every input at its maximum)."""
    return max(_worst_sides(w, weight_exp, max_value, conv))


def _accumulation(factor: float, timesteps: int) -> float:
    """``sum_{t<T} factor**t``: how many steps' inputs a state that keeps ``factor`` of itself
    per step holds at once, at most (T = ``timesteps``: u and v reset between samples; T <= 0
    when unknown: the infinite sum, ``inf`` for ``factor = 1``)."""
    if factor <= 0.0:
        return 1.0
    if timesteps > 0:
        return float(timesteps) if factor >= 1.0 else (1.0 - factor**timesteps) / (1.0 - factor)
    return float("inf") if factor >= 1.0 else 1.0 / (1.0 - factor)


def _decays(pop: FPopulation) -> tuple[int, int]:
    """The population's 12-bit ``(du, dv)``: du 4095 (no current) for ``alpha = 0``."""
    dv = min(max(fx.decay_from_factor(pop.beta), 0), fx.DV_MAX)
    du = (fx.DU_MAX if pop.alpha == 0 else
          min(max(fx.du_from_factor(pop.alpha), 0), fx.DU_MAX))
    return du, dv


def _steps(pop: FPopulation, timesteps: int) -> tuple[float, float]:
    """``(u_steps, v_steps)``: :func:`_accumulation` under the quantized current and voltage
    retention (``1 - (du + 1)/4096`` and ``1 - dv/4096``: what the integer decays keep, at
    most, since they round toward zero)."""
    du, dv = _decays(pop)
    return (_accumulation(fx.factor_from_du(du), timesteps),
            _accumulation(fx.factor_from_dv(dv), timesteps))


def _scale_for(pop: FPopulation | None, syns: list[FSynapse], max_in: dict[str, int],
               timesteps: int = 1, cal: _Peaks | None = None) -> float:
    """The scale of a population (or, ``pop=None``, a readout) fed by ``syns``: the biggest
    weight at ``WEIGHT_LIMIT``, unless a range cap (:func:`_range_caps`) is lower; then, when
    the biggest synapse can shift, a power-of-two fraction of that (it takes a negative weight
    exponent), else the cap. ``max_in``: the largest value each source sends; ``timesteps``:
    the steps per sample over which u and v accumulate (:func:`_accumulation`); ``cal``: the
    population's calibrated peaks (:func:`_range_caps`)."""
    maxw = max((_max_abs(s) for s in syns), default=0.0)
    k_w = WEIGHT_LIMIT / maxw if maxw > 0 else 1.0
    if pop is None:  # readout: no threshold, full weight range
        return k_w
    # The largest scale at which the biggest weight fits 8 bits, the threshold 17 bits, the
    # biases 13+3 bits, and even every input at its worst, step after step, cannot wrap the
    # 24-bit current.
    cap = min(_range_caps(pop, _worst_per_scale(syns, max_in), timesteps, cal))
    if k_w <= cap:
        return k_w
    biggest = max(syns, key=_max_abs)
    if not _shiftable(biggest, max_in) or (cal is not None and cal.fixed_biggest):
        # Calibrated, a biggest synapse held at exponent 0 (a bit-plane input) cannot use the
        # power-of-two fraction below: the cap itself is the finest scale.
        return cap
    # A power-of-two fraction of k_w: the biggest Dense weight then uses the full 8 bits with
    # a negative weight exponent.
    return k_w / 2 ** math.ceil(math.log2(k_w / cap))


def _worst_per_scale(syns: list[FSynapse], max_in: dict[str, int]) -> float:
    """The largest |input| of one step into one neuron, per unit of scale, summed over
    ``syns`` (float weights; every source at its largest value)."""
    return sum(_worst_input(s.op.weight, 0, max_in.get(s.source, 1), isinstance(s.op, FConv))
               for s in syns)


@dataclass(frozen=True)
class _Peaks:
    """A population's calibrated peaks of |u| and -v (float volts) and the margin they keep
    (:class:`convert.calibrate.Calibration`)."""

    u: float
    v: float
    margin: float
    fixed_biggest: bool = False  # the biggest input synapse keeps weight exponent 0


def _range_caps(pop: FPopulation, worst: float, timesteps: int = 1,
                cal: _Peaks | None = None) -> list[float]:
    """Scales at which the threshold fits 17 bits, the biases 13+3 bits, and the inputs cannot
    wrap the 24-bit current even when every one peaks at once, step after step:
    ``64 * k * worst * u_steps < 2**23``, ``worst`` being one step's largest |input| per unit
    of scale and ``u_steps`` the current's accumulation over ``timesteps`` (:func:`_steps`; 1
    for ``du = 4095``: one step's input, as before).

    v has no cap: it saturates (a floor at ``-(2**23 - 1)``; above the threshold it spikes and
    resets) and only under sustained inhibition, and a bound on it grows with T for a neuron
    without leak (an IF neuron: T times one step's input), so a cap would cost the resolution
    of every weight. Its worst case is reported and warned about instead
    (:func:`_quantize_population`), and every run counts its saturations.

    Calibrated (``cal``): the u cap is the larger of the worst-case one and the one that keeps
    the calibrated peak of |u| times ``cal.margin`` in range (the worst case is a guarantee:
    calibration never makes it coarser), and v gets a cap too, from its calibrated peak
    (:func:`convert.calibrate.scale_caps`); a population that never received input on the
    batch (peak 0) keeps the worst-case cap. Inputs beyond the batch may wrap u or saturate
    v: every target counts it.
    """
    caps = [fx.VTH_MAX / pop.threshold]
    u_steps, _ = _steps(pop, timesteps)
    if worst > 0:
        caps.append(HEADROOM_MARGIN * (fx.A_IN_SAFE - 1) / (worst * u_steps))
    if cal is not None and cal.u > 0:
        u_cap, *v_cap = scale_caps(cal.u, cal.v, cal.margin)
        calibrated = [HEADROOM_MARGIN * c for c in v_cap]
        if worst > 0:
            caps[-1] = max(caps[-1], HEADROOM_MARGIN * u_cap)
        caps.extend(calibrated)
    peak_bias = float(np.abs(pop.bias).max(initial=0.0))
    if peak_bias > 0:
        caps.append(fx.BIAS_MANT_MAX * 2**fx.BIAS_EXP_MAX / ((1 << fx.ACT_SHIFT) * peak_bias))
    return caps


def _scale_limit(pop: FPopulation, syns: list[FSynapse], atts: list[FSpikeAttention],
                 fixed: list[FSynapse], max_in: dict[str, int], timesteps: int, cal: _Peaks,
                 k: float) -> str:
    """What set a calibrated population's scale ``k``, in words: the weights' 8 bits, or the
    lowest of the limits of :func:`_range_caps` (threshold, worst-case or calibrated u,
    calibrated v, bias), "(power of two below)" when a weight exponent took ``k`` under it, or
    the attention's exact shift."""
    if atts:
        return "attention shift"
    maxw = max((_max_abs(s) for s in syns), default=0.0)
    k_w = WEIGHT_LIMIT / maxw if maxw > 0 else float("inf")
    if k >= k_w * (1 - 1e-12):
        return "input weights at exponent 0" if fixed else "8-bit weights"
    worst = _worst_per_scale(syns, max_in)
    u_steps, _ = _steps(pop, timesteps)
    named = {"threshold": fx.VTH_MAX / pop.threshold}
    if worst > 0:
        named["u worst case"] = HEADROOM_MARGIN * (fx.A_IN_SAFE - 1) / (worst * u_steps)
    if cal.u > 0:
        u_cap, *v_cap = scale_caps(cal.u, cal.v, cal.margin)
        if worst > 0 and HEADROOM_MARGIN * u_cap > named["u worst case"]:
            named["u calibrated"] = HEADROOM_MARGIN * u_cap
            del named["u worst case"]
        if v_cap:
            named["v calibrated"] = HEADROOM_MARGIN * v_cap[0]
    peak_bias = float(np.abs(pop.bias).max(initial=0.0))
    if peak_bias > 0:
        named["bias"] = fx.BIAS_MANT_MAX * 2**fx.BIAS_EXP_MAX / ((1 << fx.ACT_SHIFT) * peak_bias)
    name = min(named, key=named.__getitem__)
    return name if k >= named[name] * (1 - 1e-12) else f"{name} (power of two below)"


def _shiftable(s: FSynapse, max_in: dict[str, int]) -> bool:
    """Can this synapse take a weight exponent? Dense always; a Conv only when it reads the
    graded input (Lava's Conv has no exponent: the Lava target runs such a conv as the
    equivalent dense map, which is exact because that sum cannot reach the 24-bit wrap)."""
    if not isinstance(s.op, FConv):
        return True
    return s.source == INPUT and max_in.get(INPUT, 1) > 1 and s.op.max_pool is None


def _attention_worst(a: FSpikeAttention) -> int:
    """Largest count ``sum_m A[n, m] v[j, m]`` of one attention output: tokens x head dim."""
    return int(np.prod(a.shape[1:])) * (a.shape[0] // a.heads)


def _attention_scale(pop: FPopulation, syns: list[FSynapse], atts: list[FSpikeAttention],
                     max_in: dict[str, int], timesteps: int = 1, cal: _Peaks | None = None
                     ) -> float:
    """The scale of a population that spike attentions feed: within every limit of
    :func:`_scale_for` (the worst-case input now includes the attention's largest count), and
    such that the first attention's float scale becomes an exact shift: ``k * scale = 2**s``
    with ``s <= WEIGHT_EXP_MAX`` (the output is then ``(A V) << s``, no rounding at all).
    ``cal``: calibrated peaks, as for :func:`_scale_for`."""
    worst = sum(a.scale * _attention_worst(a) for a in atts)
    worst += _worst_per_scale(syns, max_in)
    caps = _range_caps(pop, worst, timesteps, cal)
    if syns:
        caps.append(_scale_for(pop, syns, max_in, timesteps, cal))
    ref = atts[0].scale
    if ref <= 0:
        raise GraphError(f"synapse {atts[0].name!r}: attention scale {ref} must be positive")
    shift = min(math.floor(math.log2(min(caps) * ref) + 1e-12), fx.WEIGHT_EXP_MAX)
    if shift < fx.WEIGHT_EXP_MIN:
        raise GraphError(f"synapse {atts[0].name!r}: attention scale {ref} needs a shift "
                         f"{shift} < {fx.WEIGHT_EXP_MIN} at this population's limits")
    return 2.0**shift / ref


def _bias(b: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(mantissa, exponent, number clipped) for an integer bias added to v each step."""
    peak = float(np.abs(b).max(initial=0.0))
    exp = 0
    while exp < fx.BIAS_EXP_MAX and peak / 2**exp > fx.BIAS_MANT_MAX:
        exp += 1
    m = np.round(b / 2**exp)
    clipped = int(np.count_nonzero((m < fx.BIAS_MANT_MIN) | (m > fx.BIAS_MANT_MAX)))
    return np.clip(m, fx.BIAS_MANT_MIN, fx.BIAS_MANT_MAX).astype(np.int64), exp, clipped


def quantize(fg: FGraph, *, input_bitplanes: bool = False,
             input_exp_zero: bool | None = None, calibration: Calibration | None = None,
             shift_planes: bool | None = None) -> tuple[QGraph, QuantReport]:
    """The integer graph every target runs, and a report of what quantization cost.

    Targets are quantized in topological order; each gets one scale (:func:`_target_scale`),
    then its synapses, attentions and population (or readout) are rounded at that scale.

    ``calibration`` (:func:`convert.calibrate.calibrate` on this graph): bound each
    population's current by the peaks reached on that batch instead of the worst case
    (:func:`_range_caps`), and report per population the weight bits, the headroom on the
    batch and the layer's error against the float graph. None (the default): the worst case
    alone, exactly as before calibration existed.

    ``input_bitplanes``: deploy a graded input as binary bit planes (multiplication-free);
    each plane projects through the same integer weights with weight exponent +b. Exactly
    equivalent to the graded deployment quantized with ``input_exp_zero=True`` (the default
    then): input synapses keep weight exponent 0 so that no plane's sum is floored.

    ``shift_planes`` (default: True with a calibration, False without): the input synapse
    takes the weight exponent ``e <= 0`` that the graded input would (its weights then use the
    8-bit range at the input layer's scale) and plane b the exponent ``b + e``, so the sums of
    the planes below ``-e`` are floored, each by less than one unit of ``a_in`` per step
    (against the up to 17-bit current of the layer: negligible, where exponent 0 can leave a
    large input layer 2-3 bits per weight). No longer exactly the graded deployment; every
    target still runs it exactly (plane b: ``floor_shift(sum, b + e)``).

    Raises:
        GraphError: a spike attention into a readout, an attention scale that no shift in
            Loihi's exponent range reaches, bit planes into a max pooling, or a result that
            fails :meth:`QGraph.validate` or the Lava target's limits
            (:func:`core.graph.check_lava_limits`: every target runs the same graphs).
        UserError: a calibration measured on another graph (a population it lacks).
    """
    if calibration is not None and set(calibration.u_peak) != set(fg.populations):
        raise UserError("calibration: measured on another graph (its populations are "
                        f"{sorted(calibration.u_peak)}, this graph's {sorted(fg.populations)})")
    if shift_planes is None:
        shift_planes = calibration is not None
    if input_exp_zero is None:
        input_exp_zero = input_bitplanes and not shift_planes
    graded_in = fg.input.kind == "graded"
    planes = int(fg.input.max_value).bit_length() if (input_bitplanes and graded_in) else 0
    exp_zero_on_input = graded_in and input_exp_zero
    dt = fg.metadata.get("dt")
    report = QuantReport(populations={}, synapses={}, warnings=list(fg.notes),
                         input_bitplanes=planes, dt=None if dt is None else float(dt),
                         dt_source=fg.metadata.get("dt_detail") or fg.metadata.get("dt_source"))
    if input_bitplanes and not graded_in:
        report.warnings.append("input bit planes asked for, but the input is spikes (binary "
                               "already): nothing to split")
    max_in = {INPUT: fg.input.max_value}  # largest value each source sends (spikes: 1)
    pops: dict[str, LIFPopulation] = {}
    readouts: dict[str, Readout] = {}
    synapses: list[Dense | Conv | SpikeAttention] = []
    scales: dict[str, float] = {}
    for name in fg.order():
        incoming = fg.incoming(name)
        atts = [s for s in incoming if isinstance(s, FSpikeAttention)]
        syns = [s for s in incoming if not isinstance(s, FSpikeAttention)]
        fixed = [s for s in syns if s.source == INPUT and exp_zero_on_input]
        cal = (None if calibration is None or name not in fg.populations else
               _Peaks(calibration.u_peak[name], calibration.v_peak[name], calibration.margin,
                      bool(fixed) and max(syns, key=_max_abs) in fixed))
        k = _target_scale(fg, name, syns, atts, fixed, max_in, cal=cal)
        k_worst = None if cal is None else _target_scale(fg, name, syns, atts, fixed, max_in)
        if k_worst is not None and k_worst > k:
            # calibration never makes a scale coarser than the worst case (a calibrated v
            # cap can be lower: v then saturates as it would without calibration, counted)
            k = k_worst
        scales[name] = k
        worst_a_in = worst_inhibition = 0
        for s in syns:
            q = _quantize_synapse(s, k, max_in, exp_zero=s.source == INPUT and exp_zero_on_input,
                                  planes=planes if s.source == INPUT else 0,
                                  input_size=fg.input.size)
            synapses.extend(q.synapses)
            report.synapses[s.name] = q.report
            report.warnings.extend(q.warnings)
            worst_a_in += q.worst_a_in
            worst_inhibition += q.worst_inhibition
        for a in atts:
            qa = _quantize_attention(a, k)
            synapses.extend(qa.synapses)
            report.synapses[a.name] = qa.report
            report.warnings.extend(qa.warnings)
            worst_a_in += qa.worst_a_in
        if name in fg.readouts:
            readouts[name], report.populations[name] = _quantize_readout(fg.readouts[name], k)
            continue
        pops[name], report.populations[name], warnings = _quantize_population(
            fg.populations[name], k, worst_a_in, worst_inhibition, fg.timesteps,
            calibrated=cal is not None)
        if cal is None:
            k_step = _target_scale(fg, name, syns, atts, fixed, max_in, timesteps=1)
            if k < k_step:  # the accumulation over the sample's steps lowered the scale
                warnings.insert(0, _accumulation_note(report.populations[name], name, k_step))
        else:
            report.populations[name] = replace(
                report.populations[name],
                worst_case_scale=k_worst,
                scale_limit=("worst case (the calibrated limit is lower)" if k == k_worst
                             and k > _target_scale(fg, name, syns, atts, fixed, max_in,
                                                   cal=cal) else
                             _scale_limit(fg.populations[name], syns, atts, fixed, max_in,
                                          fg.timesteps, cal, k)),
                calibration_u_peak=cal.u, calibration_v_peak=cal.v,
                calibration_u_headroom=state_headroom(cal.u, k, fx.UV_MAX),
                calibration_v_headroom=state_headroom(cal.v, k, fx.V_LIMIT))
        report.warnings.extend(warnings)
        max_in[name] = 1
    meta = {**fg.metadata, "quantized": True}
    qg = QGraph(replace(fg.input, bitplanes=planes), pops, readouts, synapses, fg.timesteps,
                meta)
    qg.validate()
    # What one target cannot run, none runs: the Lava target's limits, and the integer NIR file
    # it is shipped to the Lava worker as (a dry run of the writer), are checked here.
    check_lava_limits(qg)
    to_nir(qg)
    if calibration is not None:
        _add_calibration(report, fg, qg, scales, calibration)
    return qg, report


def _add_calibration(report: QuantReport, fg: FGraph, qg: QGraph, scales: dict[str, float],
                     calibration: Calibration) -> None:
    """Fill the calibrated report fields: the batch, and per population/readout its weight
    bits and its layer error on the batch (:func:`convert.calibrate.layer_errors`)."""
    report.calibration = calibration.summary()
    errors = layer_errors(fg, qg, scales, calibration)
    for name, entry in report.populations.items():
        stored = [s.max_abs_weight for s in report.synapses.values()
                  if s.target == name and s.kind != "attention"]  # attentions store none
        bits = int(max(stored)).bit_length() if stored else None
        err = errors[name]
        if isinstance(entry, PopulationReport):
            report.populations[name] = replace(entry, weight_bits=bits,
                                               layer_current_error=err.current,
                                               layer_spike_mismatch=err.spikes)
        else:
            report.populations[name] = replace(entry, weight_bits=bits,
                                               layer_current_error=err.current)


def _target_scale(fg: FGraph, name: str, syns: list[FSynapse], atts: list[FSpikeAttention],
                  fixed: list[FSynapse], max_in: dict[str, int],
                  timesteps: int | None = None, cal: _Peaks | None = None) -> float:
    """The scale ``k`` (integer units per unit of float voltage) of the population or readout
    ``name``: :func:`_scale_for`, or :func:`_attention_scale` when attentions feed it; no
    larger than lets the ``fixed`` synapses (weight exponent 0) fit their biggest weight.
    u and v accumulate over ``timesteps`` steps (default: the graph's); ``cal``: the
    population's calibrated peaks (None: the worst case).

    Raises:
        GraphError: an attention into a readout, or one whose scale no shift reaches.
    """
    pop = fg.populations.get(name)
    if atts and pop is None:
        raise GraphError(f"synapse {atts[0].name!r}: a spike attention into the readout "
                         f"{name!r} is not supported (feed a population)")
    t = fg.timesteps if timesteps is None else timesteps
    k = (_attention_scale(pop, syns, atts, max_in, t, cal) if atts else
         _scale_for(pop, syns, max_in, t, cal))
    if fixed:  # exponent 0 on the input: the biggest input weight must fit at this scale
        k = min(k, min((WEIGHT_LIMIT / m for m in map(_max_abs, fixed) if m > 0), default=k))
    return k


@dataclass(frozen=True)
class _Quantized:
    """What one float synapse became: deployed synapses (several for bit planes), its report
    entry, warnings, and its worst-case integer input to the target in one step."""

    synapses: list[Dense | Conv | SpikeAttention]
    report: SynapseReport | AttentionReport
    warnings: list[str]
    worst_a_in: int
    worst_inhibition: int = 0  # its largest inhibitory integer input in one step (>= 0)


def _weight_exp(s: FSynapse, k: float, max_in: dict[str, int], exp_zero: bool) -> int:
    """The weight exponent in [WEIGHT_EXP_MIN, 0] that lets a shiftable synapse's biggest
    weight use the 8-bit range at scale ``k`` (0 when it cannot or must not shift)."""
    maxw = _max_abs(s)
    if exp_zero or maxw == 0 or not _shiftable(s, max_in):
        return 0
    exp = -int(math.floor(math.log2(WEIGHT_LIMIT / (maxw * k)) + 1e-12))
    return max(fx.WEIGHT_EXP_MIN, min(0, exp))


def _quantize_synapse(s: FSynapse, k: float, max_in: dict[str, int], *, exp_zero: bool,
                      planes: int, input_size: int) -> _Quantized:
    """A Dense or Conv synapse at the target's scale ``k``: integer weights ``w * 2**exp``
    ~ ``weight * k``; ``planes > 0`` deploys it as one synapse per input bit plane."""
    conv = isinstance(s.op, FConv)
    exp = _weight_exp(s, k, max_in, exp_zero)
    w, clipped = _int_weights(s.op.weight * k * 2.0 ** (-exp))
    report = SynapseReport(
        source=s.source, target=s.target, kind="conv" if conv else "dense", delay=s.delay,
        max_pool=bool(conv and s.op.max_pool), weight_exp=exp,
        max_abs_weight=int(np.abs(w).max(initial=0)), weights_clipped=clipped,
        all_zero=not np.any(w), rel_rms_error=_rel_error(w * 2.0**exp, s.op.weight * k),
        bitplanes=planes or None,
    )
    warnings = []
    floors = _floors_to_zero(w, exp, max_in.get(s.source, 1), conv)
    report = replace(report, floors_to_zero=floors)
    if not np.any(w):
        warnings.append(f"synapse {s.name}: every quantized weight is zero: it never changes "
                        f"{s.target}")
    elif floors:
        warnings.append(f"synapse {s.name}: the most it delivers in one step floors to 0 "
                        f"after its weight exponent {exp}: it never changes {s.target}")
    if clipped:
        warnings.append(f"synapse {s.name}: {clipped} weights clipped")
    worst = int(_worst_input(w, exp, max_in.get(s.source, 1), conv))
    inhibition = math.ceil(_worst_sides(w, exp, max_in.get(s.source, 1), conv)[1])
    deployed: list[Dense | Conv | SpikeAttention]
    if planes:
        deployed = list(_bitplane_synapses(s, w, planes, input_size, exp))
    elif conv:
        deployed = [Conv(s.name, s.source, s.target, w, s.op.stride, s.op.padding, s.op.groups,
                         s.op.in_shape, s.op.out_shape, s.delay, s.op.max_pool, weight_exp=exp,
                         lag=s.lag)]
    else:
        deployed = [Dense(s.name, s.source, s.target, w, exp, s.delay, lag=s.lag)]
    return _Quantized(deployed, report, warnings, worst, inhibition)


def _floors_to_zero(w: np.ndarray, weight_exp: int, max_value: int, conv: bool) -> bool:
    """Whether a synapse with integer weights ``w`` (none negative, not all zero) delivers 0
    even when every input is at ``max_value`` at once: its largest per-output sum, shifted by
    ``weight_exp``, floors to 0 (a negative sum never floors to 0)."""
    if not np.any(w) or np.any(w < 0):
        return False
    reach = int(w.sum(axis=(1, 2, 3) if conv else (1,)).max()) * int(max_value)
    return int(fx.floor_shift(reach, int(weight_exp))) == 0


def _quantize_attention(a: FSpikeAttention, k: float) -> _Quantized:
    """The dynamic spike x spike product at the target's scale ``k``: ``k * scale`` as the
    nearest power of two in Loihi's exponent range (exact when :func:`_attention_scale`
    chose ``k``)."""
    want = k * a.scale
    shift = int(np.clip(round(math.log2(want)), fx.WEIGHT_EXP_MIN, fx.WEIGHT_EXP_MAX))
    err = abs(2.0**shift - want) / want
    report = AttentionReport(
        source=a.source, sources=list(a.sources), target=a.target, delay=a.delay,
        weight_exp=shift, rel_rms_error=err, scale=a.scale, shift=shift, heads=a.heads,
        max_count=_attention_worst(a),
    )
    warnings = []
    if err > 1e-12:
        warnings.append(f"synapse {a.name}: attention scale {a.scale:g} x {k:g} = {want:g} "
                        f"rounded to 2**{shift} (relative error {err:.3g})")
    if shift < 0:
        warnings.append(f"synapse {a.name}: attention output floored by a right shift of "
                        f"{-shift}")
    att = SpikeAttention(a.name, tuple(a.sources), a.target, a.heads, shift, a.delay)
    return _Quantized([att], report, warnings, int(fx.floor_shift(_attention_worst(a), shift)))


def _quantize_readout(r: FReadout, k: float) -> tuple[Readout, ReadoutReport]:
    """A readout at scale ``k``: its per-step bias rounded (None when all zero) and its
    membrane decay as a 12-bit ``dv`` (0 for the plain sum)."""
    bias = np.round(r.bias * k).astype(np.int64)
    dv = min(max(fx.decay_from_factor(r.beta), 0), fx.DV_MAX)
    return (Readout(r.name, r.shape, bias if np.any(bias) else None, dv),
            ReadoutReport(scale=k, dv=dv))


def _quantize_population(p: FPopulation, k: float, worst_a_in: int, worst_inhibition: int = 0,
                         timesteps: int = 0, calibrated: bool = False
                         ) -> tuple[LIFPopulation, PopulationReport, list[str]]:
    """A population at scale ``k``: threshold, decays (12 bits) and bias (mantissa and
    exponent), with the headroom of u and v (:class:`PopulationReport`) under its worst-case
    input of one step ``worst_a_in`` (|input|) and ``worst_inhibition`` (inhibitory input),
    accumulated over ``timesteps`` steps (0: unknown). ``calibrated``: ``k`` came from a
    calibration batch (the warnings say so)."""
    vth_f = p.threshold * k
    vth = int(min(max(round(vth_f), 1), fx.VTH_MAX))
    du, dv = _decays(p)
    mant, bexp, bclip = _bias(p.bias * k * (1 << fx.ACT_SHIFT))
    u_steps, v_steps = _steps(p, timesteps)
    worst_u = (1 << fx.ACT_SHIFT) * worst_a_in * u_steps
    headroom = fx.UV_MAX / worst_u if worst_u else float("inf")
    neg_bias = max(-int(fx.effective_bias(mant, bexp).min(initial=0)), 0)
    v_reach = v_steps * ((1 << fx.ACT_SHIFT) * worst_inhibition * u_steps + neg_bias)
    worst_v = None if math.isinf(v_reach) else math.ceil(v_reach)
    v_headroom = (0.0 if worst_v is None else
                  fx.V_LIMIT / worst_v if worst_v else float("inf"))
    report = PopulationReport(
        scale=k, vth=vth, vth_clipped=vth != round(vth_f), du=du, dv=dv, beta=p.beta,
        beta_quantized=fx.factor_from_dv(dv), alpha=p.alpha,
        alpha_quantized=0.0 if du == fx.DU_MAX else fx.factor_from_du(du), bias_exp=bexp,
        biases_clipped=bclip, worst_a_in=worst_a_in, a_in_headroom=headroom,
        u_steps=u_steps, v_steps=v_steps, worst_v=worst_v, v_headroom=v_headroom,
        timesteps=int(timesteps),
    )
    warnings = []
    if vth != round(vth_f):
        warnings.append(f"{p.name}: threshold {vth_f:.1f} clipped to {vth}")
    if bclip:
        warnings.append(f"{p.name}: {bclip} biases clipped")
    if headroom < 1 and calibrated:
        warnings.append(
            f"{p.name}: calibrated scale {k:.4g}: the worst-case synaptic input {worst_a_in} per "
            f"step, accumulated over {u_steps:.3g} step(s) (du={du}), could wrap the 24-bit "
            f"current (worst-case headroom {headroom:.3g}); inputs beyond the calibration batch "
            f"can: runs count each wrap as overflow/u_wrap/{p.name}")
    elif headroom < 1:
        warnings.append(
            f"{p.name}: worst-case synaptic input {worst_a_in} per step, accumulated over "
            f"{u_steps:.3g} step(s) (du={du}), exceeds the 24-bit current ({fx.UV_MAX} after "
            f"the shift by 2**{fx.ACT_SHIFT}); u wraps if every input is at its maximum at once")
    if v_headroom < 1:
        reach = "without bound (dv=0, T unknown)" if worst_v is None else f"to -{worst_v}"
        warnings.append(
            f"{p.name}: with every inhibitory input at its maximum for {v_steps:.3g} step(s) "
            f"(dv={dv}), v can fall {reach}, below its saturation at -{fx.V_LIMIT}; the "
            "scale is kept (lowering it would cost every weight resolution): runs count the "
            f"saturations as overflow/v_saturate/{p.name}")
    return LIFPopulation(p.name, p.shape, du, dv, vth, mant, bexp, p.reset), report, warnings


def _accumulation_note(r: PopulationReport, name: str, k_step: float) -> str:
    """The warning that a population's scale was lowered from ``k_step`` (one step's worst
    input within range) to ``r.scale`` because u accumulates inputs over the sample."""
    return (f"{name}: scale lowered from {k_step:.4g} to {r.scale:.4g} because the current "
            f"holds up to {r.u_steps:.3g} steps of input (du={r.du}, T={r.timesteps}): then "
            "even every input at its maximum, step after step, cannot wrap u at 24 bits "
            "(resolution is lost)")


def _bitplane_synapses(s: FSynapse, w: np.ndarray, planes: int,
                       size: int, exp: int = 0) -> list[Dense | Conv]:
    """B binary projections, one per bit plane of the input, through the same weights; plane
    b has weight exponent ``b + exp`` (``exp`` 0 unless planes are shifted, see
    :func:`quantize`)."""
    out: list[Dense | Conv] = []
    for b in range(planes):
        sl = (b * size, (b + 1) * size)
        name = f"{s.name}_b{b}"
        if isinstance(s.op, FConv):
            if s.op.max_pool is not None:
                raise GraphError(f"synapse {s.name!r}: bit planes cannot feed a max pooling")
            out.append(Conv(name, INPUT, s.target, w, s.op.stride, s.op.padding, s.op.groups,
                            s.op.in_shape, s.op.out_shape, s.delay, None, b + exp, sl,
                            lag=s.lag))
        else:
            out.append(Dense(name, INPUT, s.target, w, b + exp, s.delay, sl, lag=s.lag))
    return out


def _rel_error(q: np.ndarray, ref: np.ndarray) -> float:
    den = float(np.sqrt(np.mean(ref**2))) if ref.size else 0.0
    return float(np.sqrt(np.mean((q - ref) ** 2)) / den) if den > 0 else 0.0


def format_report(report: QuantReport) -> str:
    """The report as text: a table of populations, one of synapses, then the warnings.

    Per population: ``worst a_in`` (one step), ``u steps`` (how many steps' inputs the current
    accumulates), ``headroom`` (u's, with that accumulation) and ``v headroom`` (how far
    sustained inhibition stays from v's saturation); see :class:`PopulationReport`."""
    lines = ["population      vth    du    dv  bias_exp  worst a_in  u steps  headroom  "
             "v headroom"]
    for n, p in report.populations.items():
        if not isinstance(p, PopulationReport):
            lines.append(f"{n:<14} (readout, scale {p.scale:.4g})")
            continue
        lines.append(
            f"{n:<14}{p.vth:>5}{p.du:>6}{p.dv:>6}{p.bias_exp:>10}"
            f"{p.worst_a_in:>12}{p.u_steps:>9.2f}{p.a_in_headroom:>10.2f}{p.v_headroom:>12.2f}"
        )
    lines.append("synapse         kind   exp  max|w|  clipped  rel.err")
    for n, s in report.synapses.items():
        lines.append(
            f"{n:<14}{s.kind:>6}{s.weight_exp:>6}{s.max_abs_weight:>8}"
            f"{s.weights_clipped:>9}{s.rel_rms_error:>9.4f}"
        )
    if report.calibration is not None:
        lines.extend(format_calibration(report))
    for w in report.warnings:
        lines.append(f"warning: {w}")
    if report.dt is not None:
        lines.append(f"dt: {report.dt:g} s ({report.dt_source or 'source unknown'})")
    return "\n".join(lines)


def format_calibration(report: QuantReport) -> list[str]:
    """The calibration table of a calibrated report (no lines otherwise): per population and
    readout its scale against the worst-case one, the bits of its largest |integer weight|,
    the headroom of u and v on the calibration batch, and its layer error there (relative RMS
    error of the input current, fraction of spike entries that differ; each layer fed the
    float graph's spikes)."""
    c = report.calibration
    if c is None:
        return []
    lines = [f"calibration: {c['samples']} samples of {c['source']}, percentile "
             f"{c['percentile']:g} of the per-sample peaks, margin {c['margin']:g}",
             "population        scale  worst-case  w bits  u headroom  v headroom  "
             "current err  spike err  scale set by"]

    def num(x: float | None, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    for n, p in report.populations.items():
        if isinstance(p, PopulationReport):
            lines.append(
                f"{n:<14}{p.scale:>9.4g}{num(p.worst_case_scale, '.4g'):>12}"
                f"{num(p.weight_bits, 'd'):>8}{num(p.calibration_u_headroom, '.2f'):>12}"
                f"{num(p.calibration_v_headroom, '.2f'):>12}"
                f"{num(p.layer_current_error, '.4f'):>13}{num(p.layer_spike_mismatch, '.4f'):>11}"
                f"  {p.scale_limit or '-'}")
        else:
            lines.append(f"{n:<14}{p.scale:>9.4g}{'(readout)':>12}{num(p.weight_bits, 'd'):>8}"
                         f"{'-':>12}{'-':>12}{num(p.layer_current_error, '.4f'):>13}{'-':>11}")
    return lines


def default_output(model: str | Path) -> Path:
    """Where ``python -m convert.quantize model.nir`` writes: ``model.loihi.nir`` beside it."""
    p = Path(model)
    return p.with_name(f"{p.stem}.loihi.nir")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m convert.quantize",
        description="Quantize a float NIR graph to Loihi's fixed-point integers and write the "
        "integer graph as NIR (integer arrays, Loihi parameters in node metadata; see "
        "docs/integer-nir.md). Prints what was clipped and the 24-bit headroom per population.",
    )
    ap.add_argument("model", help="float NIR file (from python -m convert.to_nir, or any NIR)")
    ap.add_argument("-o", "--output", default=None,
                    help="integer NIR file to write (default: the model's name with .loihi.nir, "
                    "beside it)")
    ap.add_argument("--dt", type=float, default=None, help="time step of a foreign NIR graph")
    ap.add_argument("--timesteps", type=int, default=None, help="timesteps, if not recorded")
    ap.add_argument("--reset", default=None, choices=fx.RESET_MODES, help=RESET_HELP)
    ap.add_argument("--input", default=None, metavar="inputs.npy",
                    help="the inputs the graph will run on, [sample, timestep, *input_shape]: "
                    "their timestep axis gives T when the graph records none")
    ap.add_argument("--input-bitplanes", action="store_true",
                    help="deploy a graded (pixel) input as binary bit planes, each projecting "
                    "through the same weights with exponent +b: multiplication-free")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 if quantization gives any warning (a guessed dt, a synapse "
                    "that never changes its target, clipping, ...); the file is still written")
    add_calibration_args(ap)
    ap.add_argument("--cost-samples", type=int, default=BITPLANE_COST_SAMPLES, metavar="N",
                    help="with --input-bitplanes on a graph that records its dataset: the "
                    "accuracy cost of the bit planes is measured on the first N test images "
                    f"(float, graded and bit-plane input; default {BITPLANE_COST_SAMPLES}, 0: "
                    "only the first layer's error)")
    add_plot_flag(ap, "quant_error.png (relative RMS weight error per synapse), bits.png "
                  "(bits of the largest |integer weight| per synapse) and "
                  "headroom.png (24-bit headroom of u and v per population)")
    add_output_flags(ap)
    args = ap.parse_args(argv)
    out = Path(args.output) if args.output else default_output(args.model)
    if out.resolve() == Path(args.model).resolve():
        raise UserError(f"output {out} is the input file; give another name with -o")
    check_writable(out)
    plot_dir = check_plot_dir(args.plot)
    fg = import_nir(args.model, dt=args.dt, timesteps=args.timesteps,
                    input_timesteps=input_timesteps(args.input), reset=args.reset)
    if args.cost_samples < 0:
        raise UserError(f"--cost-samples must be >= 0, got {args.cost_samples}")
    cal = calibration_from_args(fg, args)
    qg, report = quantize(fg, input_bitplanes=args.input_bitplanes, calibration=cal)
    cost = (bitplane_cost(fg, qg, report, cal, args.cost_samples) if qg.input.bitplanes
            else None)
    write_qgraph(out, qg, report.to_dict())
    summary = (f"wrote {out} ({len(qg.populations)} populations, {len(qg.readouts)} readouts, "
               f"{len(qg.synapses)} synapses; T={qg.timesteps}"
               + (f", {qg.input.bitplanes} input bit planes)" if qg.input.bitplanes else ")"))
    plots = write_report_plots(report, plot_dir, Path(args.model).name) if plot_dir else []
    if args.json:
        print_json({"output": str(out), "warnings": report.warnings, "report": report.to_dict(),
                    **({"bitplane_cost": cost} if cost is not None else {}), "plots": plots})
    else:
        print(format_report(report))
        if cost is not None:
            print(format_bitplane_cost(cost, args.model))
        print(summary)
        for path in plots:
            print(f"plot written to {path}")
    return 1 if args.strict and report.warnings else 0


def write_report_plots(report: QuantReport, folder: Path, title: str = "") -> list[str]:
    """The quantization report as pictures in ``folder``: quant_error.png (each synapse's
    relative RMS error of its integer weights against the float ones, %), bits.png (bits of
    each synapse's largest |integer weight|, sign included, of the contract's 9) and headroom.png
    (per population, the 24-bit headroom of u and v, log scale: below 1 the state can wrap
    or saturate). Synapses and populations in graph order. Returns the paths written."""
    from core.plots import bar_plot

    syn = list(report.synapses.items())
    names = [f"{s.source}>{s.target}" for _, s in syn]
    err = bar_plot(folder / "quant_error.png", names,
                   {"relative RMS weight error": [100 * s.rel_rms_error for _, s in syn]},
                   ylabel="error (%)", title=f"{title}: weight quantization error per synapse")
    # two's complement: |w| <= 2**(b-1) - 1 needs b bits; the contract's range
    # [fx.WEIGHT_MIN, fx.WEIGHT_MAX] = [-256, 255] is 9 bits
    bits = [int(s.max_abs_weight).bit_length() + 1 for _, s in syn]
    limit = (fx.WEIGHT_MAX).bit_length() + 1
    b = bar_plot(folder / "bits.png", names, {f"bits used (of {limit})": bits},
                 ylabel="bits of the largest |weight|, sign included",
                 title=f"{title}: weight bits per synapse ({fx.WEIGHT_MIN}..{fx.WEIGHT_MAX} is "
                 f"{limit} bits)")
    pops = [(k, p) for k, p in report.populations.items() if isinstance(p, PopulationReport)]
    h = bar_plot(folder / "headroom.png", [k for k, _ in pops],
                 {"u (current)": [p.a_in_headroom for _, p in pops],
                  "v (voltage)": [p.v_headroom if np.isfinite(p.v_headroom) else None
                                  for _, p in pops]},
                 ylabel="headroom (x, log)", log=True, limit=(1.0, "1: can wrap/saturate"),
                 title=f"{title}: 24-bit headroom per population (worst case)")
    return [str(err), str(b), str(h)]


# ``--calibrate`` without a file: the recorded dataset's training split
CALIBRATE_FROM_DATASET = "dataset"


def add_calibration_args(ap: argparse.ArgumentParser) -> None:
    """``--calibrate [inputs.npy]``, ``--calibration-samples``, ``--calibration-percentile``:
    the options of every command that quantizes a float graph."""
    ap.add_argument("--calibrate", nargs="?", const=CALIBRATE_FROM_DATASET, default=None,
                    metavar="inputs.npy",
                    help="set each population's scale from the states the float graph reaches "
                    "on a calibration batch instead of the worst case (finer weights; inputs "
                    "beyond the batch may overflow, and runs count it). Alone: the first "
                    "--calibration-samples of the training split of the dataset the graph "
                    "records; with a file: its inputs [sample, timestep, *input_shape] "
                    "(float graphs only)")
    ap.add_argument("--calibration-samples", type=int, default=CALIBRATION_SAMPLES, metavar="N",
                    help=f"size of the calibration batch (default {CALIBRATION_SAMPLES})")
    ap.add_argument("--calibration-percentile", type=float, default=DEFAULT_PERCENTILE,
                    metavar="P", help="percentile of the per-sample peaks that sets the scale "
                    "(default 100: the largest; lower ignores rare outliers, which then overflow "
                    "and are counted)")


def calibrate_option(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``convert.load_graph`` that the parsed
    :func:`add_calibration_args` options ask for (none without ``--calibrate``)."""
    if getattr(args, "calibrate", None) is None:
        return {}
    return {"calibrate": True if args.calibrate == CALIBRATE_FROM_DATASET else args.calibrate,
            "calibration_samples": args.calibration_samples,
            "calibration_percentile": args.calibration_percentile}


def calibration_from_args(fg: FGraph, args: argparse.Namespace) -> Calibration | None:
    """The :class:`Calibration` the parsed :func:`add_calibration_args` options ask for, or
    None without ``--calibrate``.

    Raises:
        UserError: see :func:`convert.calibrate.calibrate`.
    """
    if getattr(args, "calibrate", None) is None:
        return None
    source = None if args.calibrate == CALIBRATE_FROM_DATASET else args.calibrate
    return calibrate(fg, source, samples=args.calibration_samples,
                     percentile=args.calibration_percentile, margin=CALIBRATION_MARGIN)


# Test images the bit-plane accuracy cost is measured on by default (convert.quantize
# --input-bitplanes): a few seconds on a CPU for the zoo's models, +-1.5 pp of standard error.
BITPLANE_COST_SAMPLES = 500


def bitplane_cost(fg: FGraph, qg: QGraph, report: QuantReport,
                  calibration: Calibration | None, samples: int = BITPLANE_COST_SAMPLES
                  ) -> dict[str, Any]:
    """What deploying the graded input as bit planes (``qg``, ``report``) costs, against the
    same graph with the graded input (same calibration): per synapse reading the input, its
    weights' relative RMS error at scale and the bits its largest weight uses; with a
    calibration batch, per target of those synapses the layer's error against the float graph
    (relative RMS error of the input current, fraction of spike entries that differ;
    :func:`convert.calibrate.layer_errors`); and, when the graph records its dataset and has
    one readout, ``accuracy``: float, graded and bit-plane accuracy on the first ``samples``
    test images (:func:`_accuracies`; None otherwise)."""
    graded_qg, graded = quantize(fg, calibration=calibration)
    cost: dict[str, Any] = {"synapses": {}, "targets": {},
                            "accuracy": _accuracies(fg, {"graded": graded_qg,
                                                         "bitplanes": qg}, samples)}
    if samples <= 0:
        cost["accuracy_skipped"] = "--cost-samples 0"
    for name, s in report.synapses.items():
        if s.source != INPUT:
            continue
        g = graded.synapses[name]
        cost["synapses"][name] = {
            "bitplanes": {"rel_rms_error": s.rel_rms_error,
                          "weight_bits": int(s.max_abs_weight).bit_length()},
            "graded": {"rel_rms_error": g.rel_rms_error,
                       "weight_bits": int(g.max_abs_weight).bit_length()}}
        if calibration is None:
            continue
        for which, rep in (("bitplanes", report), ("graded", graded)):
            p = rep.populations[s.target]
            cost["targets"].setdefault(s.target, {})[which] = {
                "current_error": p.layer_current_error,
                "spike_mismatch": getattr(p, "layer_spike_mismatch", None)}
    return cost


def _accuracies(fg: FGraph, graphs: dict[str, QGraph], samples: int
                ) -> dict[str, Any] | None:
    """Accuracy on the first ``samples`` images of the test split of the dataset ``fg``
    records (encoded as it records): the float graph's (:func:`convert.float_sim.simulate`)
    and each integer graph's (:func:`convert.calibrate.integer_forward`, equal to every
    target's records). None without a recorded dataset and encoding, with ``samples`` 0, or
    without exactly one readout."""
    meta = fg.metadata
    if (samples <= 0 or not meta.get("dataset") or meta.get("encoding") not in ("direct", "rate")
            or len(fg.readouts) != 1):
        return None
    images, labels = load_dataset(str(meta["dataset"]), "test")
    x = encode_as_recorded(meta, fg.timesteps, images[:samples])
    return {"split": f"{meta['dataset']}/test", **accuracies(fg, graphs, x, labels[: len(x)])}


def accuracies(fg: FGraph, graphs: dict[str, QGraph], x: np.ndarray, labels: np.ndarray
               ) -> dict[str, Any]:
    """``samples`` and the accuracy on inputs ``x`` [N, T, *input_shape] with ``labels`` [N]
    of the float graph (``"float"``, :func:`convert.float_sim.simulate`, the first largest
    score) and of each integer graph by name (:func:`convert.calibrate.integer_forward`, equal
    to every target's records; :func:`core.readout.predictions`).

    Raises:
        UserError: an integer graph without exactly one readout.
    """
    y = np.asarray(labels)
    scores, _ = simulate(fg, x)
    acc: dict[str, Any] = {"samples": len(y), "float": float(np.mean(scores.argmax(1) == y))}
    for name, g in graphs.items():
        _, readouts = integer_forward(g, x)
        acc[name] = float(np.mean(predictions(g, readouts) == y))
    return acc


def bitplane_accuracy(args: argparse.Namespace, deployed: QGraph, x: np.ndarray,
                      labels: np.ndarray) -> dict[str, Any] | None:
    """For a target command run with ``--input-bitplanes`` on a float graph (``args.model``,
    with the command's ``--dt``/``--timesteps``/``--reset``/``--calibrate`` options): the
    accuracy on ``x``/``labels`` of the float graph, of the graph deployed with the graded
    input (same calibration) and of ``deployed`` (:func:`accuracies`). None for an integer
    file (its float graph is not at hand) or a graph without exactly one readout.
    """
    if is_integer_graph(read_nir(args.model)) or len(deployed.readouts) != 1:
        return None
    fg = import_nir(args.model, dt=getattr(args, "dt", None),
                    timesteps=getattr(args, "timesteps", None), reset=getattr(args, "reset", None),
                    input_timesteps=int(np.asarray(x).shape[1]))
    graded, _ = quantize(fg, calibration=calibration_from_args(fg, args))
    return accuracies(fg, {"graded": graded, "bitplanes": deployed}, x, labels)


def format_bitplane_accuracy(acc: dict[str, Any]) -> str:
    """One line: :func:`bitplane_accuracy`'s three accuracies and the sample count."""
    return (f"bit-plane input: accuracy {100 * acc['bitplanes']:.2f}% (graded input "
            f"{100 * acc['graded']:.2f}%, float graph {100 * acc['float']:.2f}%; "
            f"{acc['samples']} samples)")


def format_bitplane_cost(cost: dict[str, Any], model: str | Path) -> str:
    """:func:`bitplane_cost` as text, with the command that measures the accuracy cost."""
    lines = ["bit-plane input cost (against the graded input):"]
    for name, c in cost["synapses"].items():
        b, g = c["bitplanes"], c["graded"]
        lines.append(f"  synapse {name}: weight error {b['rel_rms_error']:.4f} with "
                     f"{b['weight_bits']} bits (graded: {g['rel_rms_error']:.4f} with "
                     f"{g['weight_bits']} bits)")
    for name, c in cost["targets"].items():
        b, g = c["bitplanes"], c["graded"]
        spikes = ("" if b["spike_mismatch"] is None else
                  f", spikes differing {100 * b['spike_mismatch']:.2f}% (graded: "
                  f"{100 * g['spike_mismatch']:.2f}%)")
        lines.append(f"  layer {name} on the calibration batch: current error "
                     f"{b['current_error']:.4f} (graded: {g['current_error']:.4f}){spikes}")
    a = cost.get("accuracy")
    if a is None and cost.get("accuracy_skipped"):
        lines.append(f"  accuracy: not measured ({cost['accuracy_skipped']})")
    elif a is not None:
        lines.append(f"  accuracy on {a['split']} [0:{a['samples']}]: float "
                     f"{100 * a['float']:.2f}%, deployed graded {100 * a['graded']:.2f}%, "
                     f"deployed bit planes {100 * a['bitplanes']:.2f}%")
    else:
        lines.append(f"  accuracy: the graph records no dataset; run python -m targets.verify "
                     f"{model} --targets torch_ref --reference float --input-bitplanes "
                     "--input x.npy --labels y.npy")
    return "\n".join(lines)


def input_timesteps(path: str | Path | None) -> int | None:
    """The T axis of an input file ``[sample, timestep, *input_shape]`` (.npy, read lazily),
    or None without a file.

    Raises:
        UserError: no such file, not a .npy array, or fewer than two axes.
    """
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such input file")
    try:
        shape = np.load(p, mmap_mode="r", allow_pickle=False).shape
    except Exception as e:  # np.load raises several types for a file that is not .npy
        raise UserError(f"{p}: not a .npy array ({type(e).__name__}: {e})") from None
    if len(shape) < 2:
        raise UserError(f"{p}: inputs must be [sample, timestep, *input_shape]; got shape "
                        f"{list(shape)}")
    return int(shape[1])


if __name__ == "__main__":
    sys.exit(run_cli("convert.quantize", main))
