"""Process models: how our processes (targets.loihi.process) and our recordings behave.

- :class:`PyCurrentRelayModel`, :class:`PySpikeGateModel` and :class:`PySpikeAttentionModel`
  implement our processes (``fixed_pt``, CPU). Lava's compiler finds them by scanning this
  folder (see targets/loihi/process.py), so they are plain module-level classes.
- :class:`FileSinkModel` and :class:`StateLIFResetModel` are stock bit-accurate models that
  also write their records (and the neurons' overflow counts) to ``.npy`` files;
  :func:`recording_models` maps Lava's stock processes to them (a run configuration's
  exception map, one entry per process class). Lava 0.10 reads a Var back to the host one
  element per message (``Var.get`` of a [256, 400] sink buffer takes seconds), hence the
  files. Every value is still computed by
  the stock code (``super().run_spk()``); the subclasses only copy it out (and classify
  each LIF update's overflow with ``core.fixedpoint``, from the state and input Lava used).

Lava environment only (imports lava). Absolute imports only: Lava's scan executes each module
of this folder a second time as a top-level module.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.io.sink import PyReceiveModelFixed
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.lif.models import PyLifResetModelBitAcc
from lava.proc.lif.process import LIFReset

from core import fixedpoint as fx
from core.files import write_atomic
from core.graph import recurrent_carries
from targets.loihi.layout import lava_max_pool, spikes_to_ours
from targets.loihi.process import CurrentRelay, ResetModeLIF, SpikeAttentionProcess, SpikeGate

RUN_TAG = "fixed_pt"  # Lava's bit-accurate models carry this tag (Loihi2SimCfg select_tag)


@implements(proc=CurrentRelay, protocol=LoihiProtocol)
@requires(CPU)
@tag(RUN_TAG)
class PyCurrentRelayModel(PyLoihiProcessModel):
    """Receive the conv currents, max-pool them (Lava layout), hold them back ``delay``
    steps (a FIFO primed with zeros), send them on, all within one step."""

    # 24 bits: the width of Loihi's synaptic currents (fixedpoint.UV_BITS)
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._pool = proc_params["pool"]
        self._delay = int(proc_params["delay"])
        self._fifo = deque(np.zeros(proc_params["out_shape"], dtype=np.int32)
                           for _ in range(self._delay))

    def run_spk(self) -> None:
        x = self.a_in.recv()
        if self._pool is not None:
            x = lava_max_pool(x, self._pool)
        if self._delay:
            self._fifo.append(x)
            x = self._fifo.popleft()
        self.a_out.send(x)


@implements(proc=SpikeGate, protocol=LoihiProtocol)
@requires(CPU)
@tag(RUN_TAG)
class PySpikeGateModel(PyLoihiProcessModel):
    """Receive the population's spikes of this step and send them on unchanged, or send no
    spikes where the recurrent synapse must not carry them (``core.graph.recurrent_carries``
    at global step ``time_step - 1``: Lava counts steps from 1)."""

    # the same port type as LIFReset's bit-accurate s_out
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._latency = int(proc_params["latency"])
        self._timesteps = int(proc_params["timesteps"])
        self._delay = int(proc_params["delay"])

    def run_spk(self) -> None:
        s = self.s_in.recv()
        if not recurrent_carries(self.time_step - 1, self._latency, self._timesteps,
                                 self._delay):
            s = np.zeros_like(s)
        self.s_out.send(s)


@implements(proc=SpikeAttentionProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag(RUN_TAG)
class PySpikeAttentionModel(PyLoihiProcessModel):
    """Send what was computed ``1 + delay`` steps ago, then receive q, k, v, convert them to
    our (C, tokens) order and compute ``fixedpoint.spike_attention`` (ANDs, counts, sums of
    counts, a shift: the arithmetic every target shares)."""

    q_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    k_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    v_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._dim = int(proc_params["dim"])
        self._heads = int(proc_params["heads"])
        self._shift = int(proc_params["shift"])
        self._perms = proc_params["perms"]  # q, k, v, target: Lava layout -> our order
        self._out_shape = tuple(proc_params["out_shape"])
        self._fifo = deque(np.zeros(self._out_shape, dtype=np.int32)
                           for _ in range(1 + int(proc_params["delay"])))

    def run_spk(self) -> None:
        self.a_out.send(self._fifo.popleft())
        q, k, v = (spikes_to_ours(port.recv(), perm).reshape(self._dim, -1)
                   for port, perm in zip((self.q_in, self.k_in, self.v_in), self._perms[:3],
                                         strict=True))
        out = fx.spike_attention(q, k, v, self._heads, self._shift).reshape(-1)
        self._fifo.append(out[self._perms[3]].reshape(self._out_shape).astype(np.int32))


class FileSinkModel(PyReceiveModelFixed):
    """Lava's fixed-point sink ``RingBuffer`` model that also saves its buffer
    [*shape, steps] (int32) to ``proc_params["record_path"]`` at the last step."""

    def run_spk(self) -> None:
        super().run_spk()
        if self.time_step == self.data.shape[-1]:
            save_npy(self.proc_params["record_path"], self.data.astype(np.int32))


class StateLIFResetModel(PyLifResetModelBitAcc):
    """Lava's bit-accurate ``LIFReset`` model that also observes every step:

    - its overflow events (:class:`core.fixedpoint.Overflow`), counted per step over all
      neurons and saved, [len(OVERFLOW_KINDS), steps] int64, to ``proc_params
      ["overflow_path"]`` at step ``proc_params["record_steps"]``. Lava's own
      ``subthr_dynamics`` computes u and v; this model only keeps the state and input it
      started from and classifies that step with ``fixedpoint.lif_step_overflow`` (the
      arithmetic pinned against this very model, tests/targets/test_loihi_contract.py);
    - with ``proc_params["record_state"]``, u and v after every step (v after its spike
      reset), saved as [2, steps, *shape] int32 to ``proc_params["record_path"]``.
    """

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        # a LIFReset that our Network did not set up for recording records nothing
        self._steps = int(proc_params.get("record_steps", 0))
        self._record_state = bool(proc_params.get("record_state", False))
        shape = (2, self._steps, *proc_params["shape"]) if self._record_state else (2, 0)
        self._uv = np.zeros(shape, dtype=np.int32)
        self._overflow = np.zeros((len(fx.OVERFLOW_KINDS), self._steps), dtype=np.int64)

    def subthr_dynamics(self, activation_in: np.ndarray) -> None:
        u0, v0 = np.array(self.u, dtype=np.int64), np.array(self.v, dtype=np.int64)
        a = np.array(activation_in, dtype=np.int64)
        super().subthr_dynamics(activation_in)  # Lava's arithmetic, unchanged
        if self.time_step > self._steps:
            return
        bias = np.asarray(self.effective_bias).astype(np.int64)
        *_, ov = fx.lif_step_overflow(u0, v0, a, int(self.du), int(self.dv), int(self.vth),
                                      bias)
        self._overflow[:, self.time_step - 1] = [int(flags.sum()) for flags in ov]

    def run_spk(self) -> None:
        super().run_spk()
        if self.time_step > self._steps:
            return
        if self._record_state:
            self._uv[0, self.time_step - 1] = self.u
            self._uv[1, self.time_step - 1] = self.v
        if self.time_step == self._steps:
            save_npy(self.proc_params["overflow_path"], self._overflow)
            if self._record_state:
                save_npy(self.proc_params["record_path"], self._uv)


@implements(proc=ResetModeLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag(RUN_TAG)
class PyResetModeLIFModel(StateLIFResetModel):
    """The neuron program of :class:`targets.loihi.process.ResetModeLIF`: Lava's bit-accurate
    ``LIFReset`` step (its receive, periodic reset, ``subthr_dynamics`` for u and v, and the
    recording and overflow counts of :class:`StateLIFResetModel`) with the reset mode's
    spike and reset in place of Lava's ``v > vth << 6`` and ``v <- 0``
    (``core.fixedpoint.lif_step_overflow`` states the same rules; the tests pin both):

    - ``subtract_late``: the previous step's spike (the un-reset ``v > vth << 6`` at the
      start of the step) lowers this step's bias by ``vth << 6``, so the subtraction enters
      Lava's own sum ``decay(v) + u + bias`` before its clip;
    - ``subtract``: ``v[spikes] -= vth << 6``;
    - ``multi``/``multi_floor``: the spike is the count ``v // (vth << 6)`` where ``v > 0``,
      sent as a graded payload; ``v -= count * (vth << 6)``; ``multi_floor`` then floors v
      at ``-(vth << 6)``.
    """

    # the decorators refuse a class that already implements another process: the stock
    # model's (LIFReset) is inherited, so it is cleared here for this class only
    implements_process = None
    implements_protocol = None
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self._mode = str(proc_params["reset_mode"])

    def _vth6(self) -> int:
        return int(self.vth) << fx.VTH_SHIFT

    def scale_bias(self) -> None:
        super().scale_bias()
        if self._mode == "subtract_late":  # v was not reset: v > vth6 is last step's spike
            vth6 = self._vth6()
            self.effective_bias = self.effective_bias - np.where(self.v > vth6, vth6, 0)

    def spiking_activation(self) -> np.ndarray:
        vth6 = self._vth6()
        if fx.graded_spikes(self._mode):
            return (np.where(self.v > 0, self.v, 0) // vth6).astype(np.int32)
        return self.v > vth6

    def reset_voltage(self, spike_vector: np.ndarray) -> None:
        vth6 = self._vth6()
        if self._mode == "zero":
            self.v[spike_vector] = 0
        elif self._mode == "subtract":
            self.v[spike_vector] -= vth6
        elif fx.graded_spikes(self._mode):
            self.v[:] = self.v - spike_vector * vth6
            if self._mode == "multi_floor":
                self.v[:] = np.maximum(self.v, -vth6)


def recording_models(record_state: bool) -> dict[type, type]:
    """The run configuration's ``exception_proc_model_map``: stock process class -> our
    recording model (sinks, and ``LIFReset`` for its overflow counts and, when
    ``record_state``, its u and v: the process's ``record_state`` parameter says which)."""
    return {Sink: FileSinkModel, LIFReset: StateLIFResetModel}


def save_npy(path: str, arr: np.ndarray) -> None:
    """Write ``arr`` to ``path`` (.npy) atomically: the host reads it after the run."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a name
            np.save(f, arr)

    write_atomic(path, write)
