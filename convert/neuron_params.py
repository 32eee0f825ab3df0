"""NIR's continuous-time neuron parameters as the per-step factors of one Loihi population.

NIR describes a neuron in continuous time; we run it in steps of ``dt`` (s) under forward
Euler, the discretization our exporter records (``discretization = forward_euler``):

- ``LIF``:     ``tau dv/dt = (v_leak - v) + r I``
               -> ``v[t] = (1 - dt/tau) v[t-1] + (dt r / tau) I[t] + (dt / tau) v_leak``;
- ``CubaLIF``: ``tau_syn dI/dt = -I + w_in x``, ``tau_mem dv/dt = (v_leak - v) + r I``
               -> ``u[t] = (1 - dt/tau_syn) u[t-1] + (dt/tau_syn) w_in x[t]`` and ``v`` as
               above with ``u`` for ``I`` (the two gains multiply into one input gain);
- ``IF``:      ``dv/dt = r I`` -> ``v[t] = v[t-1] + dt r I[t]``.

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

NEURONS = ("LIF", "CubaLIF", "IF")


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
    """The per-neuron parameter arrays of a ``LIF``, ``CubaLIF`` or ``IF`` node (each of size
    1 or the population's size), for shape checks."""
    k = kind(node)
    if k == "LIF":
        return [node.tau, node.r, node.v_leak, node.v_threshold]
    if k == "CubaLIF":
        return [node.tau_syn, node.tau_mem, node.r, node.v_leak, node.v_threshold, node.w_in]
    return [node.r, node.v_threshold]


def step_params(name: str, node: Any, size: int, dt: float) -> StepParams:
    """The per-step parameters of the NIR neuron node ``name`` (``LIF``, ``CubaLIF`` or
    ``IF``) of ``size`` neurons at time step ``dt`` (s), by forward Euler (module docstring).

    Raises:
        GraphError: a nonzero ``v_reset`` (Loihi resets to 0), a time constant that differs
            between neurons (one decay per population), or a decay factor outside [0, 1]
            (``dt`` too large for ``tau``: usually the exporter's ``dt`` was not passed).
    """
    k = kind(node)

    def arr(v: Any) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1), (size,)).copy()

    def one(v: np.ndarray, what: str) -> float:
        if not np.allclose(v, v[0]):
            raise GraphError(
                f"node {name!r} ({k}): {what} differs between neurons; Loihi has one "
                "decay per population"
            )
        return float(v[0])

    v_reset = getattr(node, "v_reset", None)
    if v_reset is not None and np.any(np.asarray(v_reset) != 0):
        raise GraphError(f"node {name!r} ({k}): v_reset != 0; Loihi's LIF resets to 0")
    if k == "LIF":
        tau = arr(node.tau)
        beta = one(1.0 - dt / tau, "tau")
        gain = dt * arr(node.r) / tau
        leak = dt / tau * arr(node.v_leak)
        alpha = 0.0
    elif k == "CubaLIF":
        tau_s, tau_m = arr(node.tau_syn), arr(node.tau_mem)
        alpha = one(1.0 - dt / tau_s, "tau_syn")
        beta = one(1.0 - dt / tau_m, "tau_mem")
        gain = (dt / tau_s) * arr(node.w_in) * dt * arr(node.r) / tau_m
        leak = dt / tau_m * arr(node.v_leak)
    elif k == "IF":
        beta, alpha = 1.0, 0.0
        gain = dt * arr(node.r)
        leak = np.zeros(size)
    else:
        raise GraphError(f"node {name!r}: a NIR {k} is not a neuron ({', '.join(NEURONS)})")
    for what, f in (("voltage decay", beta), ("current decay", alpha)):
        if not 0.0 <= f <= 1.0:
            raise GraphError(
                f"node {name!r} ({k}): {what} factor {f:.4g} is outside [0, 1] with dt={dt}; "
                "pass the exporter's dt (--dt)"
            )
    return StepParams(k, beta, alpha, gain, leak, arr(node.v_threshold))


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
