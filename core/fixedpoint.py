"""The one source of truth for Loihi fixed-point arithmetic (see docs/contract.md).

Every function is written once over the array namespace: it works on numpy arrays (event_sim,
the Lava-side code) and on torch tensors (torch_ref, chip-exact training) alike, because it only
uses operators and a handful of functions that both libraries spell the same way. This module
must never import torch at module level: the Lava environment has no torch.

All state is int64 so that no intermediate product can overflow before the explicit 24-bit
wrap/saturation that Lava's bit-accurate models apply.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

import numpy as np

DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT  # 4096
ACT_SHIFT = 6  # synaptic input is MSB-aligned by 2**6 before it is added to u
VTH_SHIFT = 6  # so is the threshold
UV_BITS = 24
UV_MAX = 1 << (UV_BITS - 1)  # 2**23
V_LIMIT = UV_MAX - 1  # v saturates at +-(2**23 - 1)

# Bit widths of the neuron parameters (Lava declares them but does not enforce them).
DU_MAX = DV_MAX = (1 << 12) - 1
VTH_MAX = (1 << 17) - 1
BIAS_MANT_MIN, BIAS_MANT_MAX = -(1 << 12), (1 << 12) - 1
BIAS_EXP_MIN, BIAS_EXP_MAX = 0, 7
# Dense weights: 8-bit magnitude plus sign; mixed-sign matrices lose their lowest bit in Lava
# unless they are even, so our quantizer only produces even values in this range.
WEIGHT_MIN, WEIGHT_MAX = -256, 255
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7
# A synaptic input larger than this overflows u on its own (a_in << 6 must fit in 24 bits).
A_IN_SAFE = 1 << (UV_BITS - 1 - ACT_SHIFT)


def _xp(x: Any):
    """The array library of ``x``: numpy, or torch for a torch tensor.

    Never imports torch (the Lava environment has none): a tensor exists only where torch is
    already imported, so its module is taken from ``sys.modules``.
    """
    if type(x).__module__.startswith("torch"):
        return sys.modules["torch"]
    return np


def trunc_shift(x, shift: int):
    """``sign(x) * (|x| >> shift)``: a right shift that rounds toward zero, as Loihi's decays do."""
    xp = _xp(x)
    return xp.sign(x) * (xp.abs(x) >> shift)


def floor_shift(x, exp: int):
    """``x << exp`` for exp >= 0, else ``x >> -exp`` (arithmetic shift: floors, toward -inf)."""
    return x << exp if exp >= 0 else x >> (-exp)


def decay_u(u, du: int):
    """Current decay. Note the +1 (Loihi's ds_offset): du=0 still decays, du=4095 clears u."""
    return trunc_shift(u * (DECAY_UNITY - (du + 1)), DECAY_SHIFT)


def decay_v(v, dv: int):
    """Voltage decay. No offset here: dv=0 means no leak."""
    return trunc_shift(v * (DECAY_UNITY - dv), DECAY_SHIFT)


def wrap_u(x):
    """Lava's asymmetric 24-bit wrap of the current: one correction, not a full modulo."""
    xp = _xp(x)
    x = xp.where(x > UV_MAX, x - 2 * UV_MAX, x)
    return xp.where(x <= -UV_MAX, x + 2 * UV_MAX, x)


def saturate_v(x):
    xp = _xp(x)
    return xp.clip(x, -V_LIMIT, V_LIMIT)


def effective_bias(bias_mant, bias_exp: int):
    """``bias_mant << bias_exp``; the bias is added to v directly, it is NOT scaled by 2**6."""
    return floor_shift(bias_mant, int(bias_exp))


# The overflow events of one neuron update (:class:`Overflow`), in the order of the rules.
OVERFLOW_KINDS = ("a_in_wrap", "u_wrap", "v_wrap", "v_saturate")


class Overflow(NamedTuple):
    """Where one step of :func:`lif_step_overflow` left the arithmetic of unbounded integers:
    boolean arrays of the neurons' shape, one per case the neuron model implements.

    - ``a_in_wrap``: ``a_in << 6``, or its sum with the decayed current, wrapped at 32 bits
      (Lava computes both in int32; rule N2 of docs/integer-nir.md);
    - ``u_wrap``: the current left 24 bits and took the one correction of rule N3;
    - ``v_wrap``: ``v' + u + bias`` wrapped at 32 bits (rule N5; only after u left 24 bits);
    - ``v_saturate``: v was clipped at its lower limit ``-(2**23 - 1)`` (rule N5). Clipping at
      the upper limit is not an overflow: ``2**23 - 1 > vth << 6`` for every valid ``vth``,
      so such a neuron spikes and resets to 0 exactly as it would without the clip.
    """

    a_in_wrap: Any
    u_wrap: Any
    v_wrap: Any
    v_saturate: Any


# How a population's neurons fire and reset (``LIFPopulation.reset``; docs/contract.md, "Reset
# modes"). "zero" is the stock Loihi/Lava LIF; the others need a neuron program of our own.
RESET_MODES = ("zero", "subtract", "subtract_late", "multi", "multi_floor")
# What each mode computes, in one line (for refusals, reports and --help).
RESET_DESCRIPTIONS = {
    "zero": "one spike on v > vth, v <- 0 at the spike (Loihi's LIF, Lava's PyLifModelBitAcc)",
    "subtract": "one spike on v > vth, v <- v - vth at the spike (snnTorch reset_delay=False)",
    "subtract_late": "one spike on v > vth, vth subtracted at the next step after the decay "
                     "(snnTorch's default reset_delay=True)",
    "multi": "floor(v / vth) spikes in one step (a graded payload), v <- v - count * vth "
             "(Sinabs' IAF/LIF: MultiSpike, MembraneSubtract)",
    "multi_floor": "as multi, then v floored at -vth (sinabs.from_nir: min_v_mem = -threshold)",
}


def graded_spikes(reset: str) -> bool:
    """Whether a population of reset mode ``reset`` emits spike counts (a graded payload,
    int64) rather than binary spikes (bool)."""
    return reset in ("multi", "multi_floor")


def lif_step_overflow(u, v, a_in, du: int, dv: int, vth: int, bias, reset: str = "zero"):
    """One timestep of Lava's PyLifModelBitAcc (``reset = "zero"``), or of the same neuron
    with another reset mode (:data:`RESET_MODES`), and where it overflowed.

    Returns ``(u, v, spikes, overflow)``: ``u``, ``v`` (after this step's reset) of the
    neurons' shape, ``spikes`` boolean (int64 spike counts for the graded modes,
    :func:`graded_spikes`), ``overflow`` an :class:`Overflow` of boolean arrays. ``a_in`` is
    the integer synaptic input of this step (an array of u's shape, or the int 0), ``bias``
    the effective bias (see :func:`effective_bias`). The arithmetic is rules N1-N6 of
    docs/integer-nir.md; the flags only observe it. With ``vth6 = vth << 6``:

    - ``zero``: spike where ``v > vth6``, ``v <- 0`` there (N6);
    - ``subtract``: spike where ``v > vth6``, ``v <- v - vth6`` there;
    - ``subtract_late``: v is not reset at the spike; the next step subtracts ``vth6`` after
      the decay, ``v <- decay(v) + u + bias - vth6 * (v_prev > vth6)``: snnTorch 1.0's
      ``Leaky`` with ``reset_delay=True`` (``mem = beta * mem + input - reset * threshold``
      where ``reset = H(mem_prev - threshold)`` is the previous step's spike). The previous
      spike is ``v > vth6`` of the un-reset v, so the state is still (u, v) only;
    - ``multi``: ``count = v // vth6`` where ``v > 0`` (so ``count >= 1`` iff ``v >= vth6``,
      Sinabs' ``MultiSpike``: ``(v > 0) * trunc(v / threshold)``), ``v <- v - count * vth6``;
    - ``multi_floor``: as ``multi``, then ``v <- max(v, -vth6)`` (Sinabs' ``min_v_mem``).

    The reset acts after the 32-bit wrap and the saturation of N5 (as N6 does), so the
    overflow flags mean the same in every mode.

    Raises:
        ValueError: an unknown ``reset``, or a graded mode with ``vth = 0`` (infinitely many
            spikes; ``core.graph`` refuses such a population).
    """
    if reset not in RESET_MODES:
        raise ValueError(f"reset mode {reset!r} is not one of {RESET_MODES}")
    xp = _xp(u)
    vth6 = vth << VTH_SHIFT
    # Lava shifts and adds in int32: beyond |a_in| >= 2**25 that wraps at 32 bits before the
    # 24-bit correction (the quantizer sizes u so that it stays within 24 bits; this keeps
    # us exact regardless, and the flags say when it happened).
    shifted = a_in << ACT_SHIFT
    shifted32 = wrap_signed(shifted, 32)
    total = decay_u(u, du) + shifted32
    total32 = wrap_signed(total, 32)
    u = wrap_u(total32)
    v_sum = decay_v(v, dv) + u + bias
    if reset == "subtract_late":  # last step's spike, on the v that was not reset
        v_sum = v_sum - xp.where(v > vth6, vth6, 0)
    v_sum32 = wrap_signed(v_sum, 32)
    v = saturate_v(v_sum32)
    overflow = Overflow(a_in_wrap=(total32 != total) | (shifted32 != shifted),
                        u_wrap=u != total32, v_wrap=v_sum32 != v_sum,
                        v_saturate=v_sum32 < -V_LIMIT)
    if graded_spikes(reset):
        if vth6 <= 0:
            raise ValueError("a graded reset mode needs vth > 0")
        spikes = xp.where(v > 0, v, 0) // vth6
        v = v - spikes * vth6
        if reset == "multi_floor":
            v = xp.where(v < -vth6, -vth6, v)
        return u, v, spikes, overflow
    spikes = v > vth6
    if reset == "zero":
        v = xp.where(spikes, xp.zeros_like(v), v)
    elif reset == "subtract":
        v = xp.where(spikes, v - vth6, v)
    return u, v, spikes, overflow


def lif_step(u, v, a_in, du: int, dv: int, vth: int, bias, reset: str = "zero"):
    """One timestep of Lava's PyLifModelBitAcc (or of reset mode ``reset``). Returns
    ``(u, v, spikes)``.

    ``a_in`` is the integer synaptic input of this step, ``bias`` the effective bias
    (see :func:`effective_bias`). ``spikes`` is a boolean array (spike counts, int64, for
    the graded modes); ``v`` is already reset. The same arithmetic as
    :func:`lif_step_overflow`, without the overflow flags.
    """
    u, v, spikes, _ = lif_step_overflow(u, v, a_in, du, dv, vth, bias, reset)
    return u, v, spikes


def readout_membrane(currents, bias, dv: int):
    """A readout's membrane from its recorded currents: int64 [N, T, size] -> [N, T, size].

    ``v[t] = decay_v(v[t-1], dv) + ((currents[t] + bias) << ACT_SHIFT)``, ``v[-1] = 0``: the
    voltage arithmetic of a population without threshold, saturation or reset, computed
    off-chip (int64) from the currents every target records identically. ``dv = 0`` is the
    plain running sum of the currents (an ``Output``); ``bias`` (flat [size] or None) is the
    readout's per-step bias.
    """
    xp = _xp(currents)
    a = currents if bias is None else currents + bias
    a = a << ACT_SHIFT
    v = a[:, 0] * 0
    out = []
    for t in range(a.shape[1]):
        v = decay_v(v, int(dv)) + a[:, t]
        out.append(v)
    return xp.stack(out, 1) if out else a


def dense_output(acc, weight_exp: int):
    """What a Dense synapse emits for accumulated input ``acc``: the exponent shifts the sum."""
    return floor_shift(acc, int(weight_exp))


def wrap_signed(x, bits: int):
    """Two's-complement wrap to ``bits`` (Lava's Conv output clamp is this modulo).

    ``(x + 2**(bits-1)) mod 2**bits - 2**(bits-1)``, the modulo taken as a bit mask: for a
    power-of-two base ``y & (base - 1)`` is the non-negative residue ``y % base`` of every
    integer y (two's complement), the same integers, about 10x faster on int64 arrays than
    numpy's ``%`` (it is called three times per neuron update; issue 12).
    """
    half = 1 << (bits - 1)
    return ((x + half) & (2 * half - 1)) - half


def conv_output(acc, weight_exp: int = 0):
    """What a Conv synapse emits: its sum wrapped to 24 bits (Lava's Conv has no exponent;
    a nonzero one only occurs on bit-plane input layers, which run as dense maps)."""
    return floor_shift(wrap_signed(acc, UV_BITS), int(weight_exp))


def lava_dense_weights(weights: np.ndarray, num_weight_bits: int = 8) -> np.ndarray:
    """What Lava's PyDenseModelBitAcc makes of an integer weight matrix at its first step.

    Clip to 8 bits by sign mode, then drop ``8 - num_weight_bits + mixed`` low bits. Our
    quantizer checks that its output is a fixed point of this function.
    """
    w = np.asarray(weights).astype(np.int64)
    if w.size == 0:
        return w
    if w.min() >= 0:
        mode = "excitatory"
    elif w.max() <= 0:
        mode = "inhibitory"
    else:
        mode = "mixed"
    mixed = 1 if mode == "mixed" else 0
    if mode == "inhibitory":
        w = -w
    w = np.clip(w, -(1 << 8) * mixed, (1 << 8) - 1)
    t = 8 - num_weight_bits + mixed
    w = (w >> t) << t
    return -w if mode == "inhibitory" else w


def decay_from_factor(factor: float) -> int:
    """The 12-bit dv for a per-step voltage retention factor ``factor`` (v <- factor * v)."""
    return int(round((1.0 - float(factor)) * DECAY_UNITY))


def du_from_factor(factor: float) -> int:
    """The 12-bit du for a per-step current retention factor (u <- factor * u + input)."""
    return int(round((1.0 - float(factor)) * DECAY_UNITY)) - 1


def factor_from_dv(dv: int) -> float:
    return 1.0 - dv / DECAY_UNITY


def factor_from_du(du: int) -> float:
    return 1.0 - (du + 1) / DECAY_UNITY


def max_pool2d(x, kernel: tuple[int, int]):
    """Max over non-overlapping windows of integer currents x [B, C, H, W] (stride = kernel;
    trailing rows/columns that do not fill a window are dropped, as in PyTorch).

    A comparison per input, no multiplication: the CML ``Conv -> BN -> MaxPool -> LIF`` block.
    """
    kh, kw = kernel
    b, c, h, w = x.shape
    ho, wo = h // kh, w // kw
    x = x[:, :, : ho * kh, : wo * kw].reshape(b, c, ho, kh, wo, kw)
    if _xp(x) is np:
        return x.max(axis=(3, 5))
    return x.amax(dim=(3, 5))


def _attention_heads(x, heads: int):
    """[..., dim, tokens] -> [..., heads, dim // heads, tokens] (channel c is in head c // dh)."""
    *lead, dim, n = x.shape
    if heads < 1 or dim % heads:
        raise ValueError(f"spike attention: {dim} features do not split into {heads} heads")
    return x.reshape(*lead, heads, dim // heads, n)


def attention_counts(q, k, heads: int):
    """Per-head coincidence counts ``A[..., h, n, m] = sum_i q[h, i, n] k[h, i, m]``.

    ``q``, ``k``: binary spikes [..., dim, tokens] (channel-major, a (C, H, W) map flattened
    over H, W). For binary inputs every product is an AND, and A is a popcount per token pair.
    """
    qh, kh = _attention_heads(q, heads), _attention_heads(k, heads)
    return qh.swapaxes(-1, -2) @ kh


def spike_attention(q, k, v, heads: int, shift: int = 0):
    """Spikformer's ``(Q Kᵀ) V`` of three binary spike maps, per head, in integers.

    ``q``, ``k``, ``v``: [..., dim, tokens] 0/1 (integer dtype; float works too, for the float
    simulation, with ``shift = 0``). Per head h (channels ``h*dh .. h*dh + dh - 1``):

        A[n, m]      = sum_i q[h, i, n] k[h, i, m]     coincidence count: AND + popcount
        out[h, j, n] = sum_m A[n, m] v[h, j, m]        A's column m accumulated where v fires

    then ``floor_shift(out, shift)`` (the float scale ``2**shift``; a right shift floors).
    Returns [..., dim, tokens of q] (k and v may be restricted to the same subset of tokens:
    the event-driven simulator drops silent ones). Only ANDs, counts and additions of the
    counts (dynamic integer weights selected by binary spikes): no multiplication on the chip.
    """
    a = attention_counts(q, k, heads)
    vh = _attention_heads(v, heads)
    out = (vh @ a.swapaxes(-1, -2)).reshape(q.shape)
    return floor_shift(out, int(shift)) if shift else out


def spike_attention_ops(q, k, v, heads: int):
    """(ANDs, additions) that event-driven hardware performs for one :func:`spike_attention`,
    summed over the leading axes: ANDs = coincidences where q and k fire on the same feature,
    counted only for the tokens m where v (of that head) fires -- the only counts ``A[n, m]``
    that are ever used; additions = nonzero counts ``A[n, m]`` accumulated for every spike
    ``v[j, m]``."""
    qh, kh, vh = (_attention_heads(x, heads) for x in (q, k, v))
    used = (vh != 0).sum(-2, keepdims=True) > 0  # [..., h, 1, m]: v fires at token m
    ands = (qh.sum(-1) * (kh * used).sum(-1)).sum()
    nz = (attention_counts(q, k, heads) != 0).sum(-2)  # [..., h, m]: nonzero A[:, m]
    adds = (nz * vh.sum(-2)).sum()
    return int(ands), int(adds)
