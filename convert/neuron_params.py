"""NIR's continuous-time neuron parameters as the per-step factors of one Loihi population.

NIR describes a neuron in continuous time; we run it in steps of ``dt`` (s) under forward
Euler, the discretization our exporter records (``discretization = forward_euler``):

- ``LIF``:     ``tau dv/dt = (v_leak - v) + r I``
               -> ``v[t] = (1 - dt/tau) v[t-1] + (dt r / tau) I[t] + (dt / tau) v_leak``;
- ``CubaLIF``: ``tau_syn dI/dt = -I + w_in x``, ``tau_mem dv/dt = (v_leak - v) + r I``
               -> ``u[t] = (1 - dt/tau_syn) u[t-1] + (dt/tau_syn) w_in x[t]`` and ``v`` as
               above with ``u`` for ``I`` (the two gains multiply into one input gain);
- ``IF``:      ``dv/dt = r I`` -> ``v[t] = v[t-1] + dt r I[t]``;
- ``Threshold``: ``z = H(I - threshold)``, no state -> a population with ``beta = 0``;
- ``LI`` and ``I`` (NIR's integrator): ``LIF`` and ``IF`` without a threshold. They do not
  spike: the importer maps them as readouts whose value is the membrane (``FReadout.beta``).

``tau = r = inf`` (snnTorch's export of ``beta = 1``: ``tau = dt / (1 - beta)``, ``r = tau /
dt``) is an integrator with gain 1 per step; any other NaN, infinite or non-positive time
constant is refused, naming the node and the field.

So a population is ``(beta, alpha)`` (voltage and current decay per step, one per population
because Loihi has one ``dv``/``du`` per process), a per-neuron input gain that the importer
folds into the incoming weights, a per-neuron leak bias and a per-neuron threshold. The
reverse direction (per-step ``beta`` -> ``nir.LIF``, ``tau = dt / (1 - beta)``, ``r = tau /
dt``) is :func:`core.nir_io.lif_node`: importing its output gives ``beta`` back and gain 1.

Loihi also has one threshold per population: :func:`normalise_threshold` rescales each
neuron's inputs and bias by ``th0 / vth_i`` (exact: the spike condition ``v > vth_i`` and the
reset to zero are unchanged by a positive factor). numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import GraphError

NEURONS = ("LIF", "CubaLIF", "IF", "Threshold")  # spiking: each becomes a population
INTEGRATORS = ("LI", "I")  # non-spiking: only as a readout (directly into an Output)
DEFAULT_DT = 1e-4  # snnTorch's export convention, assumed when nothing else says (a warning)


@dataclass(frozen=True)
class StepParams:
    """One population's neuron parameters per step of ``dt``.

    ``u <- alpha u + gain * I``; ``v <- beta v + u + leak``; spike when ``v > threshold``.
    ``kind`` is the NIR node type they came from; ``beta`` and ``alpha`` are in [0, 1];
    ``gain``, ``leak`` and ``threshold`` are flat float64 arrays of one value per neuron
    (``leak`` in voltage per step).
    """

    kind: str
    beta: float
    alpha: float
    gain: np.ndarray
    leak: np.ndarray
    threshold: np.ndarray


@dataclass(frozen=True)
class Normalised:
    """A population with one threshold (Loihi's single ``vth``).

    ``input_scale`` [size]: the factor on each neuron's incoming weights (input gain times
    ``threshold / vth_i``); ``bias`` [size]: the per-step bias into v in the same units;
    ``note``: an approximation that had to be made (else None).
    """

    threshold: float
    input_scale: np.ndarray
    bias: np.ndarray
    note: str | None = None


def kind(node: Any) -> str:
    """The NIR type name of a node (``"LIF"``, ``"Affine"``, ...)."""
    return type(node).__name__


def parameter_arrays(node: Any) -> list[Any]:
    """The per-neuron parameter arrays of a neuron node (:data:`NEURONS`, :data:`INTEGRATORS`;
    each of size 1 or the population's size), for shape checks."""
    return [getattr(node, f) for f in _FIELDS[kind(node)]]


# The fields of each neuron type, in the order messages name them.
_FIELDS: dict[str, tuple[str, ...]] = {
    "LIF": ("tau", "r", "v_leak", "v_threshold"),
    "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in"),
    "IF": ("r", "v_threshold"),
    "Threshold": ("threshold",),
    "LI": ("tau", "r", "v_leak"),
    "I": ("r",),
}


def _field(name: str, node: Any, field: str, size: int, *, inf_ok: bool = False
           ) -> np.ndarray:
    """One parameter of a neuron node as a flat float64 array of ``size`` values.

    Raises:
        GraphError: a value that is NaN, or infinite where ``inf_ok`` is False (the message
            names the node and the field).
    """
    k = kind(node)
    try:
        v = np.asarray(getattr(node, field), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise GraphError(f"node {name!r} ({k}): {field} is not numeric") from None
    if v.size not in (1, size):
        raise GraphError(f"node {name!r} ({k}): {field} has {v.size} values for {size} neurons")
    bad = np.isnan(v) | (np.isinf(v) & (not inf_ok))
    if bad.any():
        raise GraphError(f"node {name!r} ({k}): {field} = {v[bad][0]} is not a finite number")
    return np.broadcast_to(v, (size,)).copy()


def _time_constant(name: str, node: Any, tau_field: str, gain_field: str, size: int,
                   dt: float) -> tuple[np.ndarray, np.ndarray]:
    """(retention ``1 - dt/tau``, input gain ``dt * gain / tau``) per neuron of the forward-Euler
    step of ``tau dx/dt = -x + gain * input``.

    ``tau = gain = inf`` is snnTorch's export of a decay factor 1 (``tau = dt / (1 - beta)``,
    ``gain = tau / dt``): an integrator with gain 1 per step.

    Raises:
        GraphError: a time constant that is not positive, or only one of the two infinite
            (the neuron would ignore its input, or take an infinite one).
    """
    k = kind(node)
    tau = _field(name, node, tau_field, size, inf_ok=True)
    gain = _field(name, node, gain_field, size, inf_ok=True)
    if np.any(tau <= 0):
        raise GraphError(f"node {name!r} ({k}): {tau_field} = {tau[tau <= 0][0]:g} s; a time "
                         "constant must be positive")
    inf_t, inf_g = np.isinf(tau), np.isinf(gain)
    if np.any(inf_t != inf_g):
        what, other = ((tau_field, gain_field) if np.any(inf_t & ~inf_g)
                       else (gain_field, tau_field))
        raise GraphError(
            f"node {name!r} ({k}): {what} is infinite but {other} is not; only both "
            "infinite (snnTorch's export of a decay factor 1: an "
            "integrator) can be mapped")
    finite = ~inf_t
    keep = np.ones(size)
    g = np.ones(size)
    keep[finite] = 1.0 - dt / tau[finite]
    g[finite] = dt * gain[finite] / tau[finite]
    return keep, g


def decays(name: str, node: Any, size: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron ``(beta, alpha)``: the voltage and current retention per step of ``dt`` (s)
    of the neuron node ``name`` (flat float64 arrays of ``size``), not yet range-checked."""
    k = kind(node)
    if k in ("LIF", "LI"):
        beta, _ = _time_constant(name, node, "tau", "r", size, dt)
        return beta, np.zeros(size)
    if k == "CubaLIF":
        alpha, _ = _time_constant(name, node, "tau_syn", "w_in", size, dt)
        beta, _ = _time_constant(name, node, "tau_mem", "r", size, dt)
        return beta, alpha
    if k in ("IF", "I"):
        return np.ones(size), np.zeros(size)
    if k == "Threshold":
        return np.zeros(size), np.zeros(size)
    raise GraphError(f"node {name!r}: a NIR {k} is not a neuron ({', '.join(NEURONS)})")


def decay_groups(name: str, node: Any, size: int, dt: float) -> list[np.ndarray]:
    """The neurons of node ``name`` grouped by their decays: index arrays (into the flat
    population, in order of first appearance), one per distinct ``(beta, alpha)``. Loihi has
    one ``dv``/``du`` per population, so each group becomes a population of its own."""
    beta, alpha = decays(name, node, size, dt)
    keys = np.round(np.stack([beta, alpha], 1), 9)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    return [np.flatnonzero(inverse == g) for g in np.argsort(first)]


def step_params(name: str, node: Any, size: int, dt: float,
                index: np.ndarray | None = None) -> StepParams:
    """The per-step parameters of the NIR neuron node ``name`` (:data:`NEURONS` or
    :data:`INTEGRATORS`) of ``size`` neurons at time step ``dt`` (s), by forward Euler (module
    docstring); ``index``: only these neurons (one group of :func:`decay_groups`).

    ``threshold`` of a non-spiking integrator (``LI``, ``I``) is infinite.

    Raises:
        GraphError: a nonzero ``v_reset`` (Loihi resets to 0), a parameter that is NaN,
            infinite or out of range (named), a time constant that differs between the
            neurons (one decay per population: split them with :func:`decay_groups`), or a
            decay factor outside [0, 1] (``dt`` too large for ``tau``: usually the exporter's
            ``dt`` was not passed).
    """
    k = kind(node)
    if k not in _FIELDS:
        raise GraphError(f"node {name!r}: a NIR {k} is not a neuron ({', '.join(NEURONS)})")
    idx = np.arange(size) if index is None else np.asarray(index)

    def one(v: np.ndarray, what: str) -> float:
        if not np.allclose(v, v[0]):
            raise GraphError(
                f"node {name!r} ({k}): {what} differs between neurons; Loihi has one "
                "decay per population"
            )
        return float(v[0])

    v_reset = getattr(node, "v_reset", None)
    if v_reset is not None and np.any(_field(name, node, "v_reset", size) != 0):
        raise GraphError(f"node {name!r} ({k}): v_reset != 0; Loihi's LIF resets to 0")
    betas, alphas = decays(name, node, size, dt)
    beta = one(betas[idx], "tau_mem" if k == "CubaLIF" else "tau")
    alpha = one(alphas[idx], "tau_syn")
    zero = np.zeros(size)
    if k in ("LIF", "LI"):
        _, gain = _time_constant(name, node, "tau", "r", size, dt)
        leak = (1.0 - betas) * _field(name, node, "v_leak", size)
    elif k == "CubaLIF":
        _, g_syn = _time_constant(name, node, "tau_syn", "w_in", size, dt)
        _, g_mem = _time_constant(name, node, "tau_mem", "r", size, dt)
        gain = g_syn * g_mem
        leak = (1.0 - betas) * _field(name, node, "v_leak", size)
    elif k in ("IF", "I"):
        gain, leak = dt * _field(name, node, "r", size), zero
    else:  # Threshold: no state, v is this step's input
        gain, leak = np.ones(size), zero
    for what, f in (("voltage decay", beta), ("current decay", alpha)):
        if not 0.0 <= f <= 1.0:
            raise GraphError(_decay_refusal(name, node, what, f, dt, idx))
    if k in ("LI", "I"):
        threshold = np.full(size, np.inf)
    else:
        threshold = _field(name, node, "threshold" if k == "Threshold" else "v_threshold", size)
    return StepParams(k, beta, alpha, gain[idx], leak[idx], threshold[idx])


def _decay_refusal(name: str, node: Any, what: str, f: float, dt: float,
                   idx: np.ndarray) -> str:
    """The one-line refusal of a decay factor outside [0, 1]: the time constant is shorter
    than ``dt``. Names the exporters known to write such files and what to pass for them."""
    k = kind(node)
    field = {"LIF": "tau", "LI": "tau"}.get(k, "tau_syn" if what == "current decay"
                                           else "tau_mem")
    tau = float(np.asarray(getattr(node, field), dtype=np.float64).reshape(-1)[0])
    msg = (f"node {name!r} ({k}): {what} factor {f:.4g} is outside [0, 1] with dt={dt:g} s: "
           f"{field} = {tau:.3g} s is shorter than the step. Pass the exporter's dt (--dt)")
    if k in ("LIF", "LI"):
        return msg + ("; a file from Norse <= 1.1 (which writes tau = dt / tau_mem_inv) runs "
                      "as Norse does with --dt set to the square of Norse's dt (1e-06 for its "
                      "default 1e-3)")
    if k == "CubaLIF":
        return msg + ("; a CubaLIF from Norse <= 1.1 (tau = dt / tau_inv, input added to the "
                      "current unscaled) does not follow NIR's CubaLIF and cannot be imported "
                      "faithfully: re-export it with a fixed exporter")
    return msg


def normalise_threshold(name: str, p: StepParams, bias: np.ndarray) -> Normalised:
    """One threshold for the population ``name``: the largest ``vth_i``, each neuron's inputs
    and bias scaled by ``th0 / vth_i`` (and its input gain folded in).

    ``bias`` [size] is the constant input current the linear nodes carry into the population
    (before the input gain). With a current decay (CubaLIF, ``alpha > 0``), NIR adds that bias
    to the current but Loihi adds it to v: it is mapped to its steady-state value
    ``bias / (1 - alpha)`` and a note says so.

    Raises:
        GraphError: a threshold that is not positive.
    """
    vth = p.threshold
    if np.any(vth <= 0):
        raise GraphError(f"node {name!r} ({p.kind}): threshold must be positive")
    th0 = float(vth.max())
    per = p.gain * th0 / vth
    out = bias * per + p.leak * th0 / vth
    note = None
    if p.alpha > 0 and np.any(out != 0):
        note = (f"{name}: bias enters the synaptic current in NIR (CubaLIF) but v on "
                "Loihi; mapped to its steady-state value")
        out = out / (1.0 - p.alpha) if p.alpha < 1 else out
    return Normalised(th0, per, out, note)


@dataclass(frozen=True)
class TimeStep:
    """The step ``dt`` (s) an import uses and where it came from.

    ``source``: ``"given"`` (``--dt``), ``"recorded"`` (the graph's ``dt`` metadata),
    ``"inferred"`` (an exporter's convention that pins it, ``how`` says which) or
    ``"guessed"`` (:data:`DEFAULT_DT`; ``warning`` then says so). ``how``: one phrase for
    people.
    """

    dt: float
    source: str
    how: str
    warning: str | None = None

    def describe(self) -> str:
        """``"1e-04 s (inferred: ...)"``: the value and its provenance, for summaries."""
        return f"{self.dt:g} s ({self.how})"


def _depends_on_dt(node: Any) -> bool:
    """Whether a node's per-step dynamics change with dt: an ``IF``/``I`` (gain ``dt r``), or
    a ``LIF``/``LI``/``CubaLIF`` with a finite time constant (``tau = r = inf``, snnTorch's
    ``beta = 1``, is an integrator at any dt)."""
    k = kind(node)
    if k in ("IF", "I"):
        return True
    fields = {"LIF": ("tau",), "LI": ("tau",), "CubaLIF": ("tau_syn", "tau_mem")}.get(k, ())
    try:
        return any(np.any(np.isfinite(np.asarray(getattr(node, f), dtype=np.float64)))
                   for f in fields)
    except (TypeError, ValueError):
        return True


_RTOL = 1e-3  # relative spread within which pinned values count as one dt


def _uniform(x: np.ndarray) -> float | None:
    """The one value of the finite positive ``x`` (within :data:`_RTOL`), else None."""
    if x.size == 0 or not np.all(np.isfinite(x)) or np.any(x <= 0):
        return None
    lo, hi = float(x.min()), float(x.max())
    return float(np.median(x)) if hi - lo <= _RTOL * hi else None


def _pinned_dt(node: Any) -> tuple[float, str] | None:
    """The dt one neuron node's parameters pin by an exporter's convention, and the rule:

    - ``LIF``/``LI`` with ``r > 1`` and ``CubaLIF`` with ``r > 1`` and ``w_in > 1``:
      snnTorch writes ``tau = dt / (1 - beta)`` and ``r = tau / dt`` (``w_in = tau_syn /
      dt``), so ``dt = tau / r``. (``r = 1`` pins nothing: Norse, SpikingJelly and snnTorch's
      ``beta = 0`` write it with different meanings.)
    - ``IF``/``I``: ``r = 1 / dt``, one unit of input per step: Sinabs writes ``r = 1`` (its
      step is ``v += I``), SpikingJelly ``r = 1 / dt``.
    """
    k = kind(node)

    def arr(field: str) -> np.ndarray:
        return np.asarray(getattr(node, field), dtype=np.float64).reshape(-1)

    try:
        if k in ("LIF", "LI"):
            tau, r = arr("tau"), arr("r")
            if np.all(np.isfinite(r)) and np.all(r > 1):
                dt = _uniform(tau / r)
                return None if dt is None else (dt, "r = tau/dt (snnTorch's export)")
        elif k == "CubaLIF":
            r, w_in = arr("r"), arr("w_in")
            if np.all(np.isfinite(r)) and np.all(r > 1) and np.all(np.isfinite(w_in)) \
                    and np.all(w_in > 1):
                both = np.concatenate([np.broadcast_to(arr("tau_mem") / r, (max(r.size, 1),)),
                                       arr("tau_syn") / w_in])
                dt = _uniform(both)
                return None if dt is None else (dt, "r = tau_mem/dt, w_in = tau_syn/dt "
                                                    "(snnTorch's export)")
        elif k in ("IF", "I"):
            dt = _uniform(1.0 / arr("r"))
            return None if dt is None else (dt, "r = 1/dt, one unit of input per step "
                                                "(Sinabs, SpikingJelly)")
    except (TypeError, ValueError, ZeroDivisionError, AttributeError):
        return None
    return None


def resolve_dt(nodes: dict[str, Any], metadata: dict[str, Any], dt: float | None) -> TimeStep:
    """The step (s) to import a graph with: ``dt`` if given, else the graph's recorded ``dt``
    metadata, else the value the neuron nodes' parameters pin by an exporter's convention
    (:func:`_pinned_dt`, when every node that pins one pins the same), else
    :data:`DEFAULT_DT` with a warning (only when some node's dynamics depend on dt).

    Raises:
        GraphError: a given or recorded dt that is not a positive finite number.
    """
    def checked(value: Any, what: str) -> float:
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise GraphError(f"{what} dt {value!r} is not a number") from None
        if not np.isfinite(f) or f <= 0:
            raise GraphError(f"{what} dt {value!r} must be a positive number of seconds")
        return f

    if dt is not None:
        return TimeStep(checked(dt, "given"), "given", "given with --dt")
    if metadata.get("dt") is not None:
        return TimeStep(checked(metadata["dt"], "the graph's recorded"), "recorded",
                        "recorded in the graph")
    pins = {n: p for n, node in nodes.items() if (p := _pinned_dt(node)) is not None}
    if pins:
        value = _uniform(np.array([p[0] for p in pins.values()]))
        if value is not None:
            rules = sorted({p[1] for p in pins.values()})
            names = ", ".join(repr(n) for n in sorted(pins))
            return TimeStep(value, "inferred",
                            f"inferred from the file: {'; '.join(rules)} in {names}")
    if not any(_depends_on_dt(n) for n in nodes.values()):
        return TimeStep(DEFAULT_DT, "default", "default; no neuron of this graph depends on it")
    if pins:
        why = "its neuron parameters pin different steps (" + ", ".join(
            f"{n!r}: {p[0]:g} s" for n, p in sorted(pins.items())) + ")"
    else:
        why = "its neuron parameters do not pin it"
    return TimeStep(
        DEFAULT_DT, "guessed", "guessed: snnTorch's default",
        f"dt is not recorded in the graph and {why}: assuming {DEFAULT_DT:g} s (snnTorch's "
        "default); pass --dt with the step the exporter used")


RESET_HELP = (
    "how every population fires and resets, when the file does not record it (NIR has no "
    "reset field; default: the graph's 'reset' metadata, else 'zero', Loihi's own LIF). "
    "zero: v <- 0 at the spike (snnTorch reset_mechanism='zero', Norse, SpikingJelly's "
    "default); subtract: v <- v - threshold at the spike (snnTorch reset_delay=False, "
    "SpikingJelly v_reset=None); subtract_late: the threshold is subtracted one step later "
    "(snnTorch's default Leaky/Synaptic: reset_mechanism='subtract', reset_delay=True); "
    "multi: floor(v / threshold) spikes per step, subtracted (Sinabs' IAF/LIF default); "
    "multi_floor: multi with v floored at -threshold (sinabs.from_nir). Every mode but zero "
    "runs a neuron program of our own on Loihi 2 (docs/foreign-nir.md, 'Reset')")
