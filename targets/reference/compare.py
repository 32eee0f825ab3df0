"""How far the deployed chip agrees with a reference simulation, and why it does not.

Pure numpy over spike records ``[N, T, size]`` (int64 counts; the chip's are 0/1):

- :func:`agreement`: one population's share of equal entries, samples with any difference,
  the first differing (sample, step, neuron), spike counts, agreement per step;
- :func:`predictions`: each side's predicted class per sample, accuracies with labels, the
  samples whose prediction differs;
- :func:`attribute`: a table of difference causes with counts. A cause is listed only where
  the check that attributes it was run: an entry that is equal in our float simulation
  (``convert.float_sim``) but differs on the chip is quantization (saturation when the chip's
  v had reached the 24-bit limit in that sample); where our float model differs from the
  reference, and under an alternative neuron rule (:mod:`targets.reference.rules`) reproduces
  the whole reference (:data:`RULE_MIN_AGREEMENT` of all entries), the entries it reproduces
  are that rule's; anything else is "not attributed".
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTIZATION = "quantization (rounded weights, decays, threshold)"
SATURATION = "v saturated at the 24-bit limit"
NOT_ATTRIBUTED = "not attributed"
# a quantization entry that no rounding of the parameters reproduces on our float model: the
# integer arithmetic itself (decays and shifts truncate u and v)
INTEGER_ARITHMETIC = "integer arithmetic (truncated u, v)"
# A rule is a cause only if our float model under it reproduces the reference (nearly) whole:
# a rule that matches part of it is a coincidence, not an explanation (the framework then
# differs from our model in something no check covers). 0.1 % leaves room for float32 noise.
RULE_MIN_AGREEMENT = 0.999
CHECKS = {
    QUANTIZATION: "equal in our float simulation of the graph, different on the chip",
    SATURATION: "as quantization, and the chip's v of that neuron hit +-(2**23 - 1) at or "
                "before that step",
    NOT_ATTRIBUTED: "our float model differs from the reference here, and no rule tried makes "
                    f"it reproduce the reference ({RULE_MIN_AGREEMENT:.1%} of entries)",
}


def agreement(ref: np.ndarray, dep: np.ndarray) -> dict[str, Any]:
    """Compare one population's spike records ``ref`` and ``dep`` (``[N, T, size]``, counts).

    Returns (JSON-ready): ``neurons``, ``entries``, ``equal_entries``, ``equal_share`` (0..1),
    ``samples``, ``samples_differing``, ``spikes_reference``, ``spikes_deployed``,
    ``first_difference`` (``{sample, step, neuron, reference, deployed}`` in (sample, step,
    neuron) order, or None) and ``agreement_per_step`` (equal share at each step, over samples
    and neurons).

    Raises:
        ValueError: the two records differ in shape.
    """
    ref, dep = np.asarray(ref, np.int64), np.asarray(dep, np.int64)
    if ref.shape != dep.shape:
        raise ValueError(f"record shapes differ: {ref.shape} vs {dep.shape}")
    n, t = ref.shape[:2]
    diff = ref != dep
    first = None
    if diff.any():
        s, step, i = (int(v) for v in np.argwhere(diff)[0])  # argwhere is in C order
        first = {"sample": s, "step": step, "neuron": i, "reference": int(ref[s, step, i]),
                 "deployed": int(dep[s, step, i])}
    per_step = (1.0 - diff.mean(axis=(0, 2))) if diff.size else np.ones(t)
    return {
        "neurons": int(ref.shape[2]) if ref.ndim == 3 else 0,
        "entries": int(diff.size),
        "equal_entries": int(diff.size - diff.sum()),
        "equal_share": float(1.0 - diff.mean()) if diff.size else 1.0,
        "samples": int(n),
        "samples_differing": int(diff.reshape(n, -1).any(axis=1).sum()),
        "spikes_reference": int(ref.sum()),
        "spikes_deployed": int(dep.sum()),
        "first_difference": first,
        "agreement_per_step": [float(a) for a in per_step],
    }


def predictions(ref_scores: np.ndarray | None, dep_scores: np.ndarray | None,
                labels: np.ndarray | None) -> dict[str, Any] | None:
    """Predicted classes ``argmax`` of each side's scores ``[N, classes]`` (ties: the lowest
    class, on both sides alike), the samples whose prediction differs and, with ``labels``
    ``[N]``, both accuracies (fractions). None when either side has no scores."""
    if ref_scores is None or dep_scores is None:
        return None
    if ref_scores.shape != dep_scores.shape:
        return None
    pr = np.argmax(ref_scores, axis=1)
    pd = np.argmax(dep_scores, axis=1)
    out: dict[str, Any] = {
        "classes": int(ref_scores.shape[1]),
        "agree": int((pr == pd).sum()),
        "flipped": [int(i) for i in np.flatnonzero(pr != pd)],
        "accuracy_reference": None, "accuracy_deployed": None,
    }
    if labels is not None:
        y = np.asarray(labels)[: len(pr)]
        out["accuracy_reference"] = float(np.mean(pr == y))
        out["accuracy_deployed"] = float(np.mean(pd == y))
    return out


def saturated_so_far(v: np.ndarray, limit: int) -> np.ndarray:
    """bool ``[N, T, size]``: v ``[N, T, size]`` (integers) reached ``+-limit`` at or before
    each step, per sample and neuron."""
    return np.maximum.accumulate(np.abs(np.asarray(v, np.int64)) >= limit, axis=1)


def attribute(refs: dict[str, np.ndarray], deps: dict[str, np.ndarray],
              floats: dict[str, np.ndarray], alternatives: dict[str, dict[str, np.ndarray]],
              saturated: dict[str, np.ndarray] | None = None,
              ours: str = "ours (as deployed): reset to zero at the spike, v > threshold",
              roundings: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """The causes of the differences between reference and chip, with the checks behind them.

    ``refs``, ``deps``, ``floats``: per compared population ``[N, T, size]`` spike counts of the
    reference, the chip and our float simulation (``convert.float_sim``); ``alternatives``:
    rule label -> the same populations simulated by our float model under that rule;
    ``saturated``: per population, bool ``[N, T, size]`` from :func:`saturated_so_far` on the
    chip's v (None: not checked, no saturation row); ``ours``: the label of our float model
    as deployed (its reset mode) in ``rules``; ``roundings``: label -> the populations
    simulated by our float model with one kind of rounding put back
    (``rules.rounded_graphs``, in its order, the last one all of them together): each
    quantization entry goes to the first whose value there is the chip's, else to
    :data:`INTEGER_ARITHMETIC`; the split is the quantization row's ``detail`` (per
    population: ``detail_populations``).

    Returns ``{"causes": [{cause, entries, check}], "rules": [{rule, equal_share,
    populations: {name: equal_share}}], "best_rule": label or None}``: the differing entries of
    every population split by cause (rows with zero entries left out), and how well our float
    model agrees with the reference under each rule (``rules``: ours first). The alternative
    rule with the highest agreement, if higher than ours and at least
    :data:`RULE_MIN_AGREEMENT`, is the one differences are attributed to (an entry it
    reproduces); one rule for the whole graph, since a framework uses one.
    """
    names = [k for k in refs if k in deps and k in floats]
    total = sum(refs[k].size for k in names)

    def share(sims: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
        per = {k: float(np.mean(sims[k] == refs[k])) if refs[k].size else 1.0 for k in names}
        equal = sum(int((sims[k] == refs[k]).sum()) for k in names)
        return (equal / total if total else 1.0), per

    ours_label = ours
    ours, ours_per = share(floats)
    rules = [{"rule": ours_label, "equal_share": ours, "populations": ours_per}]
    best, best_share = None, ours
    for label, sims in alternatives.items():
        overall, per = share(sims)
        rules.append({"rule": label, "equal_share": overall, "populations": per})
        if overall > best_share + 1e-12 and overall >= RULE_MIN_AGREEMENT:
            best, best_share = label, overall
    counts = {QUANTIZATION: 0, SATURATION: 0, NOT_ATTRIBUTED: 0}
    if best is not None:
        counts = {QUANTIZATION: 0, SATURATION: 0, best: 0, NOT_ATTRIBUTED: 0}
    per_pop: dict[str, dict[str, int]] = {}
    detail: dict[str, int] = {}
    detail_pop: dict[str, dict[str, int]] = {}
    for k in names:
        r, d, f = refs[k], deps[k], floats[k]
        diff = r != d
        quant = diff & (f == r)
        sem = diff & (f != r)
        sat = quant & saturated[k] if saturated is not None and k in saturated else None
        if roundings is not None:
            left = quant if sat is None else quant & ~sat
            for label, sims in roundings.items():
                if k not in sims:
                    continue
                hit = left & (sims[k] == d)
                detail_pop.setdefault(k, {})[label] = int(hit.sum())
                left = left & ~hit
            detail_pop.setdefault(k, {})[INTEGER_ARITHMETIC] = int(left.sum())
            for label, n in detail_pop[k].items():
                detail[label] = detail.get(label, 0) + n
        row = {QUANTIZATION: int(quant.sum()) - (0 if sat is None else int(sat.sum())),
               SATURATION: 0 if sat is None else int(sat.sum())}
        if best is not None:
            fixed = sem & (alternatives[best][k] == r)
            row[best] = int(fixed.sum())
            row[NOT_ATTRIBUTED] = int(sem.sum()) - row[best]
        else:
            row[NOT_ATTRIBUTED] = int(sem.sum())
        per_pop[k] = row
        for c, v in row.items():
            counts[c] += v
    checks = dict(CHECKS)
    if best is not None:
        checks[best] = ("our float model differs from the reference here and reproduces it "
                        "under this rule")
    causes = [{"cause": c, "entries": v, "check": checks[c],
               "populations": {k: per_pop[k][c] for k in names if per_pop[k][c]}}
              for c, v in counts.items() if v]
    for c in causes:
        if c["cause"] == QUANTIZATION and roundings is not None:
            c["detail"] = {label: n for label, n in detail.items() if n}
            c["detail_populations"] = {k: {label: n for label, n in d.items() if n}
                                       for k, d in detail_pop.items() if any(d.values())}
    return {"causes": causes, "rules": rules, "best_rule": best}
