"""Float graph -> Loihi integers. The one place where float becomes fixed point (deterministic).

Per target population we pick one scale ``k`` (integer units per unit of float voltage, before
Loihi's 2**6 alignment): as large as possible while the biggest weight fits 8 bits, the
threshold fits 17 bits and no single step's worst-case input can wrap the 24-bit current.
Dense synapses whose weights are small at that scale take a negative weight exponent so that
their weights still use the 8-bit range (Conv cannot: Lava ignores its exponent). Mixed-sign weights
are even, so Lava's truncation of the lowest bit leaves them unchanged (checked, not assumed).
Everything clipped or approximated is counted in the report.

    python -m convert.quantize model.nir -o model.loihi.nir
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from typing import Any

import numpy as np

from convert.float_graph import FConv, FGraph, FPopulation, FSpikeAttention, FSynapse
from core import fixedpoint as fx
from core.cli import check_writable, run_cli
from core.graph import (
    INPUT,
    Conv,
    Dense,
    GraphError,
    LIFPopulation,
    QGraph,
    Readout,
    SpikeAttention,
)
from core.nir_io import write_qgraph

WEIGHT_LIMIT = 254  # largest |weight| we produce: even, so mixed-sign matrices survive Lava
HEADROOM_MARGIN = 0.98  # room for rounding when the worst-case input bounds the scale


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
    return float(np.abs(s.op.weight).max()) if s.op.weight.size else 0.0


def _worst_input(w: np.ndarray, weight_exp: int, max_value: int, conv: bool) -> float:
    """Largest |a_in| one synapse can deliver in one step (every input at its maximum)."""
    axes = (1, 2, 3) if conv else (1,)
    pos = np.clip(w, 0, None).sum(axis=axes) * max_value
    neg = np.clip(w, None, 0).sum(axis=axes) * max_value
    worst = max(float(pos.max(initial=0)), -float(neg.min(initial=0)))
    return worst * 2.0**weight_exp


def _scale_for(pop: FPopulation | None, syns: list[FSynapse], max_in: dict[str, int]) -> float:
    maxw = max((_max_abs(s) for s in syns), default=0.0)
    k_w = WEIGHT_LIMIT / maxw if maxw > 0 else 1.0
    if pop is None:  # readout: no threshold, full weight range
        return k_w
    # The largest scale at which the biggest weight fits 8 bits, the threshold 17 bits, the
    # biases 13+3 bits, and even the worst-case input of one step cannot wrap the 24-bit current.
    worst = sum(_worst_input(s.op.weight, 0, max_in.get(s.source, 1), isinstance(s.op, FConv))
                for s in syns)
    cap = min(_range_caps(pop, worst))
    if k_w <= cap:
        return k_w
    biggest = max(syns, key=_max_abs)
    if not _shiftable(biggest, max_in):
        return cap
    # A power-of-two fraction of k_w: the biggest Dense weight then uses the full 8 bits with
    # a negative weight exponent.
    return k_w / 2 ** math.ceil(math.log2(k_w / cap))


def _range_caps(pop: FPopulation, worst: float) -> list[float]:
    """Scales at which the threshold fits 17 bits, the biases 13+3 bits, and a step's worst-case
    input (``worst`` per unit of scale) cannot wrap the 24-bit current."""
    caps = [fx.VTH_MAX / pop.threshold]
    if worst > 0:
        caps.append(HEADROOM_MARGIN * (fx.A_IN_SAFE - 1) / worst)
    peak_bias = float(np.abs(pop.bias).max(initial=0.0))
    if peak_bias > 0:
        caps.append(fx.BIAS_MANT_MAX * 2**fx.BIAS_EXP_MAX / ((1 << fx.ACT_SHIFT) * peak_bias))
    return caps


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
                     max_in: dict[str, int]) -> float:
    """The scale of a population that spike attentions feed: within every limit of
    :func:`_scale_for` (the worst-case input now includes the attention's largest count), and
    such that the first attention's float scale becomes an exact shift: ``k * scale = 2**s``
    with ``s <= WEIGHT_EXP_MAX`` (the output is then ``(A V) << s``, no rounding at all)."""
    worst = sum(a.scale * _attention_worst(a) for a in atts)
    worst += sum(_worst_input(s.op.weight, 0, max_in.get(s.source, 1), isinstance(s.op, FConv))
                 for s in syns)
    caps = _range_caps(pop, worst)
    if syns:
        caps.append(_scale_for(pop, syns, max_in))
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
             input_exp_zero: bool | None = None) -> tuple[QGraph, dict[str, Any]]:
    """The integer graph every target runs, and a report of what quantization cost.

    ``input_bitplanes``: deploy a graded input as binary bit planes (multiplication-free);
    each plane projects through the same integer weights with weight exponent +b. Exactly
    equivalent to the graded deployment quantized with ``input_exp_zero=True`` (the default
    then): input synapses keep weight exponent 0 so that no plane's sum is floored.
    """
    graded_in = fg.input.kind == "graded"
    if input_exp_zero is None:
        input_exp_zero = input_bitplanes
    planes = int(fg.input.max_value).bit_length() if (input_bitplanes and graded_in) else 0
    report: dict[str, Any] = {"populations": {}, "synapses": {}, "warnings": list(fg.notes),
                              "input_bitplanes": planes}
    max_in = {"input": fg.input.max_value}
    pops: dict[str, LIFPopulation] = {}
    readouts: dict[str, Readout] = {}
    synapses: list[Dense | Conv] = []
    for name in fg.order():
        syns = fg.incoming(name)
        atts = [s for s in syns if isinstance(s, FSpikeAttention)]
        syns = [s for s in syns if not isinstance(s, FSpikeAttention)]
        is_pop = name in fg.populations
        if atts and not is_pop:
            raise GraphError(f"synapse {atts[0].name!r}: a spike attention into the readout "
                             f"{name!r} is not supported (feed a population)")
        if atts:
            k = _attention_scale(fg.populations[name], syns, atts, max_in)
        else:
            k = _scale_for(fg.populations[name] if is_pop else None, syns, max_in)
        fixed = [s for s in syns if s.source == INPUT and graded_in and input_exp_zero]
        if fixed:  # exponent 0 on the input: the biggest input weight must fit at this scale
            k = min(k, min(WEIGHT_LIMIT / m for m in map(_max_abs, fixed) if m > 0))
        worst_a_in = 0
        for s in syns:
            conv = isinstance(s.op, FConv)
            maxw = _max_abs(s)
            exp = 0
            if _shiftable(s, max_in) and maxw > 0 and s not in fixed:
                exp = -int(math.floor(math.log2(WEIGHT_LIMIT / (maxw * k)) + 1e-12))
                exp = max(fx.WEIGHT_EXP_MIN, min(0, exp))
            w, clipped = _int_weights(s.op.weight * k * 2.0 ** (-exp))
            err = _rel_error(w * 2.0**exp, s.op.weight * k)
            report["synapses"][s.name] = {
                "source": s.source, "target": s.target, "kind": "conv" if conv else "dense",
                "delay": s.delay, "max_pool": bool(conv and s.op.max_pool),
                "weight_exp": exp, "max_abs_weight": int(np.abs(w).max(initial=0)),
                "weights_clipped": clipped, "all_zero": not np.any(w), "rel_rms_error": err,
            }
            if not np.any(w):
                report["warnings"].append(f"synapse {s.name}: every quantized weight is zero")
            if clipped:
                report["warnings"].append(f"synapse {s.name}: {clipped} weights clipped")
            worst_a_in += int(_worst_input(w, exp, max_in.get(s.source, 1), conv))
            if planes and s.source == INPUT:
                synapses.extend(_bitplane_synapses(s, w, planes, fg.input.size))
                report["synapses"][s.name]["bitplanes"] = planes
            elif conv:
                synapses.append(Conv(s.name, s.source, s.target, w, s.op.stride, s.op.padding,
                                     s.op.groups, s.op.in_shape, s.op.out_shape, s.delay,
                                     s.op.max_pool, weight_exp=exp))
            else:
                synapses.append(Dense(s.name, s.source, s.target, w, exp, s.delay))
        for a in atts:  # the dynamic spike x spike product: an exact shift at this scale
            want = k * a.scale
            shift = int(np.clip(round(math.log2(want)), fx.WEIGHT_EXP_MIN, fx.WEIGHT_EXP_MAX))
            err = abs(2.0**shift - want) / want
            synapses.append(SpikeAttention(a.name, tuple(a.sources), a.target, a.heads, shift,
                                           a.delay))
            report["synapses"][a.name] = {
                "source": a.source, "sources": list(a.sources), "target": a.target,
                "kind": "attention", "delay": a.delay, "max_pool": False, "weight_exp": shift,
                "max_abs_weight": 0, "weights_clipped": 0, "all_zero": False,
                "rel_rms_error": err, "scale": a.scale, "shift": shift, "heads": a.heads,
                "max_count": _attention_worst(a),
            }
            if err > 1e-12:
                report["warnings"].append(
                    f"synapse {a.name}: attention scale {a.scale:g} x {k:g} = {want:g} rounded "
                    f"to 2**{shift} (relative error {err:.3g})")
            if shift < 0:
                report["warnings"].append(f"synapse {a.name}: attention output floored by "
                                          f"a right shift of {-shift}")
            worst_a_in += int(fx.floor_shift(_attention_worst(a), shift))
        if not is_pop:
            r = fg.readouts[name]
            bias = np.round(r.bias * k).astype(np.int64)
            readouts[name] = Readout(name, r.shape, bias if np.any(bias) else None)
            report["populations"][name] = {"kind": "readout", "scale": k}
            continue
        p = fg.populations[name]
        vth_f = p.threshold * k
        vth = int(min(max(round(vth_f), 1), fx.VTH_MAX))
        dv = min(max(fx.decay_from_factor(p.beta), 0), fx.DV_MAX)
        du = fx.DU_MAX if p.alpha == 0 else min(max(fx.du_from_factor(p.alpha), 0), fx.DU_MAX)
        mant, bexp, bclip = _bias(p.bias * k * (1 << fx.ACT_SHIFT))
        pops[name] = LIFPopulation(name, p.shape, du, dv, vth, mant, bexp)
        headroom = fx.A_IN_SAFE / worst_a_in if worst_a_in else float("inf")
        report["populations"][name] = {
            "kind": "lif", "scale": k, "vth": vth, "vth_clipped": vth != round(vth_f),
            "du": du, "dv": dv, "beta": p.beta, "beta_quantized": fx.factor_from_dv(dv),
            "alpha": p.alpha, "alpha_quantized": 0.0 if du == fx.DU_MAX else fx.factor_from_du(du),
            "bias_exp": bexp, "biases_clipped": bclip,
            "worst_a_in": worst_a_in, "a_in_headroom": headroom,
        }
        if vth != round(vth_f):
            report["warnings"].append(f"{name}: threshold {vth_f:.1f} clipped to {vth}")
        if bclip:
            report["warnings"].append(f"{name}: {bclip} biases clipped")
        if headroom < 1:
            report["warnings"].append(
                f"{name}: worst-case synaptic input {worst_a_in} exceeds the 24-bit current "
                f"({fx.A_IN_SAFE}); u wraps if every input is at its maximum at once"
            )
        max_in[name] = 1
    meta = dict(fg.metadata)
    meta["quantized"] = True
    in_spec = replace(fg.input, bitplanes=planes)
    qg = QGraph(in_spec, pops, readouts, synapses, fg.timesteps, meta)
    qg.validate()
    return qg, report


def _bitplane_synapses(s: FSynapse, w: np.ndarray, planes: int,
                       size: int) -> list[Dense | Conv]:
    """B binary projections, one per bit plane of the input, through the same weights."""
    out: list[Dense | Conv] = []
    for b in range(planes):
        sl = (b * size, (b + 1) * size)
        name = f"{s.name}_b{b}"
        if isinstance(s.op, FConv):
            if s.op.max_pool is not None:
                raise GraphError(f"synapse {s.name!r}: bit planes cannot feed a max pooling")
            out.append(Conv(name, INPUT, s.target, w, s.op.stride, s.op.padding, s.op.groups,
                            s.op.in_shape, s.op.out_shape, s.delay, None, b, sl))
        else:
            out.append(Dense(name, INPUT, s.target, w, b, s.delay, sl))
    return out


def _rel_error(q: np.ndarray, ref: np.ndarray) -> float:
    den = float(np.sqrt(np.mean(ref**2))) if ref.size else 0.0
    return float(np.sqrt(np.mean((q - ref) ** 2)) / den) if den > 0 else 0.0


def format_report(report: dict[str, Any]) -> str:
    lines = ["population      vth    du    dv  bias_exp  worst a_in  headroom"]
    for n, p in report["populations"].items():
        if p["kind"] != "lif":
            lines.append(f"{n:<14} (readout, scale {p['scale']:.4g})")
            continue
        lines.append(
            f"{n:<14}{p['vth']:>5}{p['du']:>6}{p['dv']:>6}{p['bias_exp']:>10}"
            f"{p['worst_a_in']:>12}{p['a_in_headroom']:>10.2f}"
        )
    lines.append("synapse         kind   exp  max|w|  clipped  rel.err")
    for n, s in report["synapses"].items():
        lines.append(
            f"{n:<14}{s['kind']:>6}{s['weight_exp']:>6}{s['max_abs_weight']:>8}"
            f"{s['weights_clipped']:>9}{s['rel_rms_error']:>9.4f}"
        )
    for w in report["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m convert.quantize",
        description="Quantize a float NIR graph to Loihi's fixed-point integers and write the "
        "integer graph as NIR (integer arrays, Loihi parameters in node metadata; see "
        "docs/integer-nir.md). Prints what was clipped and the 24-bit headroom per population.",
    )
    ap.add_argument("model", help="float NIR file (from python -m convert.to_nir, or any NIR)")
    ap.add_argument("-o", "--output", required=True, help="integer NIR file to write")
    ap.add_argument("--dt", type=float, default=None, help="time step of a foreign NIR graph")
    ap.add_argument("--timesteps", type=int, default=None, help="timesteps, if not recorded")
    ap.add_argument("--input-bitplanes", action="store_true",
                    help="deploy a graded (pixel) input as binary bit planes, each projecting "
                    "through the same weights with exponent +b: multiplication-free")
    args = ap.parse_args(argv)
    from convert.nir_import import import_nir

    check_writable(args.output)
    qg, report = quantize(import_nir(args.model, dt=args.dt, timesteps=args.timesteps),
                          input_bitplanes=args.input_bitplanes)
    write_qgraph(args.output, qg, report)
    print(format_report(report))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("convert.quantize", main))
