"""Our Lava processes: their interfaces (ports and parameters) only.

Their behaviour is in :mod:`targets.loihi.models`, as Lava splits its own processes
(lava/proc/lif/process.py vs models.py). Lava's compiler finds a process's models by importing
every module in the process's folder (``ProcGroupDiGraphs._find_proc_models``): that is why
nothing in targets/loihi/ may need torch, and why these modules import with absolute names.

Lava environment only (imports lava).
"""

from __future__ import annotations

from typing import Any

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.proc.lif.process import AbstractLIF


class CurrentRelay(AbstractProcess):
    """Between a Lava ``Conv`` (or a dense-mapped conv) and its target: max-pools the synaptic
    currents over non-overlapping (x, y) windows and/or holds them back ``delay`` steps.

    Stock Lava has no pooling of currents and no delayed Conv. This is plumbing: it adds,
    multiplies and rounds nothing (a max and a FIFO), and it receives and sends within one
    step, so it adds no latency of its own.

    Args:
        in_shape: the conv's output (W, H, C) (Lava layout).
        out_shape: the target's port shape; (W // kw, H // kh, C) when pooling.
        pool: (kh, kw) as in the graph, or None.
        delay: steps to hold back (0: none).
    """

    def __init__(self, *, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                 pool: tuple[int, int] | None, delay: int) -> None:
        super().__init__(in_shape=in_shape, out_shape=out_shape, pool=pool, delay=delay)
        self.a_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)


class SpikeGate(AbstractProcess):
    """Between a population and its recurrent synapse: passes the population's spikes on,
    except those that would reach the next sample (``core.graph.recurrent_carries``), which
    it replaces by no spikes.

    Stock Lava cannot drop them: ``LIFReset`` resets u and v *after* receiving the step's
    input and then integrates it, so a recurrent spike from the last step of sample s would
    enter the first step of sample s + 1, where the trained model has no recurrent input.
    This is plumbing: it computes nothing and receives and sends within one step (no latency
    of its own); the recurrent synapse itself is a stock ``Dense``/``DelayDense``/``Conv``.

    Args:
        shape: the population's Lava port shape.
        latency: the population's latency (core.graph.QGraph.latency).
        timesteps: T, the steps per sample.
        delay: the recurrent synapse's delay.
    """

    def __init__(self, *, shape: tuple[int, ...], latency: int, timesteps: int,
                 delay: int) -> None:
        super().__init__(shape=shape, latency=latency, timesteps=timesteps, delay=delay)
        self.s_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)


class SpikeAttentionProcess(AbstractProcess):
    """Spikformer's spike attention ``Q Kᵀ V`` (:class:`core.graph.SpikeAttention`) as one
    fixed-point process: the product of three populations' spikes, scaled by a shift.

    Like a Dense synapse it sends at every step what it computed the step before (plus its
    balancing ``delay``), so it costs ``1 + delay`` steps of latency like any synapse.

    Args:
        q_shape, k_shape, v_shape: the Lava port shapes of the three source populations.
        out_shape: the target's Lava port shape.
        dim: the embedding size (channels of the target, our first axis).
        heads: attention heads (``dim`` is split evenly among them).
        shift: right shift applied to the attention output (``fixedpoint.spike_attention``).
        delay: extra steps of latency (latency balancing).
        perms: four index maps from :func:`targets.loihi.layout.lava_to_ours`, for q, k, v and
            the target, between each node's Lava layout and our flat order.
    """

    def __init__(self, *, q_shape: tuple[int, ...], k_shape: tuple[int, ...],
                 v_shape: tuple[int, ...], out_shape: tuple[int, ...], dim: int, heads: int,
                 shift: int, delay: int, perms: list) -> None:
        super().__init__(q_shape=q_shape, k_shape=k_shape, v_shape=v_shape,
                         out_shape=out_shape, dim=dim, heads=heads, shift=shift, delay=delay,
                         perms=perms)
        self.q_in = InPort(shape=q_shape)
        self.k_in = InPort(shape=k_shape)
        self.v_in = InPort(shape=v_shape)
        self.a_out = OutPort(shape=out_shape)


class ResetModeLIF(AbstractLIF):
    """A Loihi LIF population with a reset mode other than Lava's reset to zero
    (:data:`core.fixedpoint.RESET_MODES`): the interface of Lava's ``LIFReset`` (the same
    Vars u, v, du, dv, bias_mant, bias_exp, vth, the same periodic reset of u and v) plus the
    mode, a process parameter.

    Lava's stock LIF only resets v to zero at the spike (``PyLifModelBitAcc.reset_voltage``:
    ``v[spikes] = 0``; Loihi 2's fixed LIF neuron, lava-nc 0.10). Subtracting the threshold,
    subtracting it one step late (snnTorch), and graded spikes that carry a count (Sinabs'
    multi-spike; Loihi 2 spikes may carry a graded payload, 24 bits in Lava's message ports)
    need a neuron program of our own on Loihi 2 (microcode for its programmable neuron
    cores); :class:`targets.loihi.models.PyResetModeLIFModel` is that program as a
    fixed-point CPU model, its u and v arithmetic Lava's own.

    Args:
        shape: the population's Lava shape.
        du, dv, vth, bias_mant, bias_exp: as Lava's ``LIF``.
        reset_interval, reset_offset: as Lava's ``LIFReset`` (u and v are cleared at the steps
            ``time_step % reset_interval == reset_offset``).
        reset: the reset mode, one of ``core.fixedpoint.RESET_MODES``.
    """

    def __init__(self, *, shape: tuple[int, ...], du: int, dv: int, vth: int,
                 bias_mant: Any, bias_exp: Any, reset_interval: int, reset_offset: int,
                 reset: str) -> None:
        super().__init__(shape=shape, u=0, v=0, du=du, dv=dv, bias_mant=bias_mant,
                         bias_exp=bias_exp, name=None, log_config=None)
        self.vth = Var(shape=(1,), init=vth)
        self.proc_params["reset_interval"] = int(reset_interval)
        self.proc_params["reset_offset"] = int(reset_offset)
        self.proc_params["reset_mode"] = str(reset)
