"""NeuroBench's own metrics on the float model, beside our counts on the deployed one.

Papers report NeuroBench's footprint, connection sparsity, activation sparsity and synaptic
operations (dense, effective MACs and ACs); to be comparable with their tables these are
computed by the ``neurobench`` package itself (v2.x: ``neurobench.benchmarks.Benchmark`` with
its ``Footprint``, ``ConnectionSparsity``, ``ActivationSparsity`` and ``SynapticOperations``
metrics), not re-implemented.

The float model is what the float NIR graph means (:class:`convert.float_graph.FGraph`, the
exported checkpoint or another framework's graph). NeuroBench needs a torch module whose
connection layers are ``nn.Linear``/``nn.Conv2d`` and whose activations are modules, so
:class:`FloatReplay` holds every synapse of the graph as such a layer with the float weights,
and one activation module per population; its forward pass runs the float simulation
(:func:`convert.float_sim.simulate`, the reference that checks export and import) and feeds
each layer the activity its source really had, so NeuroBench's hooks see the true inputs of
every layer at every step. Max pooling of currents and spike attention are not connection
layers in NeuroBench's sense (they are listed in ``not_counted``); an integer NIR file has no
float model (only our counts are reported then).

torch and neurobench are imported when :func:`float_metrics` runs (the report's other parts
need neither).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convert.float_graph import FConv, FDense, FGraph, FSpikeAttention
from core.graph import INPUT

__all__ = ["NeuroBenchMetrics", "float_metrics", "checkpoint_metrics", "deployed_metrics"]


@dataclass
class NeuroBenchMetrics:
    """NeuroBench's metric names and values, per sample (operations over all T steps)."""

    model: str  # "float (neurobench)" or "deployed (ours)"
    footprint_bytes: int | None
    connection_sparsity: float | None
    activation_sparsity: float | None
    dense_synops: float | None  # NeuroBench "Dense": every weight x every input, all steps
    effective_macs: float | None
    effective_acs: float | None
    samples: int
    source: str  # how they were computed
    not_counted: list[str] = field(default_factory=list)


def _replay_class() -> Any:
    import torch
    from torch import nn

    class Spikes(nn.Module):
        """A population's activation: returns the spikes the float simulation produced."""

        def forward(self, s: torch.Tensor) -> torch.Tensor:
            return s

    class FloatReplay(nn.Module):
        """The float graph as torch layers (see the module docstring); forward(x [B, T, ...])
        -> scores [B, classes]."""

        def __init__(self, fg: FGraph) -> None:
            super().__init__()
            self.fg = fg
            self.layers = nn.ModuleDict()
            self.acts = nn.ModuleDict({_key(p): Spikes() for p in fg.populations})
            self.synapses = []
            for s in fg.synapses:
                if isinstance(s, FSpikeAttention):
                    continue
                op = s.op
                if isinstance(op, FDense):
                    layer: nn.Module = nn.Linear(op.weight.shape[1], op.weight.shape[0],
                                                 bias=False)
                elif isinstance(op, FConv):
                    c_out, c_in_g, kh, kw = op.weight.shape
                    layer = nn.Conv2d(c_in_g * op.groups, c_out, (kh, kw), stride=op.stride,
                                      padding=op.padding, groups=op.groups, bias=False)
                else:
                    continue
                with torch.no_grad():
                    layer.weight.copy_(torch.as_tensor(np.asarray(op.weight),
                                                       dtype=torch.float32))
                self.layers[_key(s.name)] = layer
                self.synapses.append(s)
            for p in fg.populations.values():  # biases and thresholds are model state too
                self.register_buffer(f"bias_{_key(p.name)}",
                                     torch.as_tensor(p.bias, dtype=torch.float32))
            for r in fg.readouts.values():
                self.register_buffer(f"bias_{_key(r.name)}",
                                     torch.as_tensor(r.bias, dtype=torch.float32))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            from convert.float_sim import simulate

            xs = x.detach().cpu().numpy()
            scores, spikes = simulate(self.fg, xs)
            b, t = xs.shape[:2]
            acts = {INPUT: torch.as_tensor(xs.reshape(b * t, -1), dtype=torch.float32)}
            for p, s in spikes.items():
                acts[p] = self.acts[_key(p)](torch.as_tensor(
                    np.asarray(s, dtype=np.float32).reshape(b * t, -1)))
            with torch.no_grad():
                for s in self.synapses:
                    src = acts[s.source]
                    if isinstance(s.op, FConv):
                        src = src.reshape(b * t, *s.op.in_shape)
                    self.layers[_key(s.name)](src)
            return torch.as_tensor(np.asarray(scores, dtype=np.float32))

    return Spikes, FloatReplay


def _key(name: str) -> str:
    return name.replace(".", "_")


def _neurobench() -> Any:
    """The neurobench names used here (imported on first use).

    Raises:
        EnvironmentMissingError: torch or neurobench cannot be imported.
    """
    from core.errors import EnvironmentMissingError

    try:
        import neurobench.benchmarks as nb_bench
        import neurobench.metrics.static as nb_static
        import neurobench.metrics.workload as nb_workload
        import neurobench.models as nb_models
    except ImportError as e:
        raise EnvironmentMissingError(
            f"NeuroBench metrics need torch and neurobench ({e}); install the interop extra"
        ) from None
    return nb_bench, nb_static, nb_workload, nb_models


def _run_benchmark(model: Any, inputs: np.ndarray, batch_size: int) -> dict[str, Any]:
    """NeuroBench's four metrics for ``model`` (a ``neurobench.models.TorchModel`` whose net
    takes ``[B, T, ...]``) on ``inputs``; labels are not needed (no accuracy metric)."""
    import torch

    nb_bench, nb_static, nb_workload, _ = _neurobench()
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    y = torch.zeros(len(x), dtype=torch.int64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=batch_size, shuffle=False)
    bench = nb_bench.Benchmark(
        model, loader, [], [],
        [[nb_static.Footprint, nb_static.ConnectionSparsity],
         [nb_workload.ActivationSparsity, nb_workload.SynapticOperations]])
    return bench.run(quiet=True)


def checkpoint_metrics(checkpoint: str, inputs: np.ndarray, batch_size: int = 50
                       ) -> NeuroBenchMetrics:
    """NeuroBench's metrics on the trained torch model of ``checkpoint`` (``python -m train``'s
    file) for ``inputs`` [N, T, *input_shape] (integers as encoded; the model sees them as in
    training, ``train.loop.model_input``). Its LIF layers (``models.neuron.LIF``) are the
    activation modules; its ``nn.Linear``/``nn.Conv2d`` the connection layers (BatchNorm is
    not folded here: NeuroBench counts the convolutions as trained).

    Raises:
        CheckpointError: the checkpoint cannot be read.
        EnvironmentMissingError: torch or neurobench cannot be imported.
    """
    import torch
    from torch import nn

    from models.neuron import LIF
    from train.checkpoint import load_checkpoint, model_from_checkpoint
    from train.loop import model_input

    _, _, _, nb_models = _neurobench()
    ckpt = load_checkpoint(checkpoint)
    net = model_from_checkpoint(ckpt).eval()
    kind = str(ckpt.get("encoding", {}).get("kind", "direct"))

    class BatchFirst(nn.Module):
        """The checkpoint's model on batch-first encoded integers (NeuroBench's layout)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return self.net(model_input(x.cpu().numpy(), kind))

    model = nb_models.TorchModel(BatchFirst())
    model.add_activation_module(LIF)
    res = _run_benchmark(model, inputs, batch_size)
    ops = res["SynapticOperations"]
    lifs = sum(isinstance(m, LIF) for m in net.modules())
    others = [type(m).__name__ for m in net.modules()
              if type(m).__name__ in ("MLF",)]  # multi-level firing units return tuples
    return NeuroBenchMetrics(
        model="checkpoint (neurobench)", footprint_bytes=int(res["Footprint"]),
        connection_sparsity=float(res["ConnectionSparsity"]),
        activation_sparsity=float(res["ActivationSparsity"]),
        dense_synops=float(ops["Dense"]), effective_macs=float(ops["Effective_MACs"]),
        effective_acs=float(ops["Effective_ACs"]), samples=len(inputs),
        source=f"neurobench.benchmarks.Benchmark on the torch model of {checkpoint} "
        f"({lifs} LIF layers as activations)",
        not_counted=[f"{len(others)} {others[0]} unit(s): their spikes are not NeuroBench "
                     "activations here (they return a tuple)"] if others else [])


def float_metrics(fg: FGraph, inputs: np.ndarray, batch_size: int = 50) -> NeuroBenchMetrics:
    """Run NeuroBench's metrics on the float graph ``fg`` for ``inputs`` [N, T, *input_shape]
    (integers as the graph's encoding gives them; the float simulation reads them as they are).

    Returns per-sample values as NeuroBench computes them (its ``Dense``, ``Effective_MACs``
    and ``Effective_ACs`` are per sample over all T steps; sparsities are fractions 0..1,
    footprint in bytes of float32 weights and biases).

    Raises:
        EnvironmentMissingError: torch or neurobench cannot be imported.
    """
    _, _, _, nb_models = _neurobench()
    spikes_cls, replay_cls = _replay_class()
    model = nb_models.TorchModel(replay_cls(fg))
    model.add_activation_module(spikes_cls)
    res = _run_benchmark(model, inputs, batch_size)
    ops = res["SynapticOperations"]
    not_counted = [f"{s.name}: spike attention (no connection layer in NeuroBench)"
                   for s in fg.synapses if isinstance(s, FSpikeAttention)]
    not_counted += [f"{s.name}: max pooling of currents after the conv (not a synaptic op)"
                    for s in fg.synapses if isinstance(getattr(s, "op", None), FConv)
                    and s.op.max_pool is not None]
    return NeuroBenchMetrics(
        model="float (neurobench)", footprint_bytes=int(res["Footprint"]),
        connection_sparsity=float(res["ConnectionSparsity"]),
        activation_sparsity=float(res["ActivationSparsity"]),
        dense_synops=float(ops["Dense"]), effective_macs=float(ops["Effective_MACs"]),
        effective_acs=float(ops["Effective_ACs"]), samples=len(inputs),
        source="neurobench.benchmarks.Benchmark on the float NIR graph (float_sim replay)",
        not_counted=not_counted)


def deployed_metrics(graph: Any, counters: dict[str, Any], n_samples: int,
                     dense_per_sample: float) -> NeuroBenchMetrics:
    """The same metrics, by NeuroBench's definitions, for the deployed integer graph from our
    own measured run (``counters`` of event_sim; ACs and MACs split as the MFI certificate
    splits them). Footprint: weights at the width the resource map stores them (bits / 8)
    plus 13-bit bias mantissas rounded up to 2 bytes; ``dense_per_sample``: dense MACs over T
    steps (:func:`targets.report.energy.dense_macs_per_step`, bit planes counted once)."""
    from core.graph import Conv, Dense
    from targets.mfi import certificate
    from targets.report.resources import weight_bits

    syn = [s for s in graph.synapses if isinstance(s, Dense | Conv)]
    weights = sum(int(np.asarray(s.weight).size) for s in syn)
    zeros = sum(int((np.asarray(s.weight) == 0).sum()) for s in syn)
    bits = sum(int(np.asarray(s.weight).size) * weight_bits(s.weight) for s in syn)
    bias = sum(p.size for p in graph.populations.values())
    spikes = sum(int(v) for k, v in counters.items() if k.startswith("spikes/"))
    entries = sum(p.size for p in graph.populations.values()) * graph.timesteps * n_samples
    edges = certificate(graph, counters)
    return NeuroBenchMetrics(
        model="deployed (ours)", footprint_bytes=-(-bits // 8) + 2 * bias,
        connection_sparsity=zeros / weights if weights else 0.0,
        activation_sparsity=1.0 - spikes / entries if entries else 0.0,
        dense_synops=dense_per_sample,
        effective_macs=sum(e.measured_ops or 0 for e in edges if e.is_mac) / n_samples,
        effective_acs=sum(e.measured_ops or 0 for e in edges if not e.is_mac) / n_samples,
        samples=n_samples,
        source="event_sim counters on the integer graph, NeuroBench's definitions",
        not_counted=[f"{p.name}: graded (reset {p.reset!r}): its spike counts, not its nonzero "
                     "entries, enter the activation sparsity" for p in
                     graph.populations.values() if getattr(p, "graded", False)])
