"""Checkpoint -> standard NIR (nir 1.0.x HDF5) that stock ``nir.read`` loads.

    python -m convert.to_nir ckpt.pt -o model.nir

Graph metadata records what NIR leaves open and importers otherwise guess: ``dt``, the
discretization (forward Euler: ``v[t] = (1 - dt/tau) v[t-1] + (dt r / tau) I[t]``; we set
``r = tau / dt`` so the input gain is 1), reset mode (``zero``), spike comparison (``>``),
timesteps, input encoding and its scale, dataset, producer and version.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from core.cli import check_writable, run_cli
from core.errors import ExportError
from core.files import write_atomic

DT = 1e-3
PRODUCER = "neurodeploy"
VERSION = "0.1.0"

# The layers of each model in execution order; "flatten" is a reshape.
LAYOUTS: dict[str, list[str]] = {
    "fc_snn": ["fc1", "lif1", "fc2"],
    "conv_snn": ["conv1", "lif1", "pool1", "conv2", "lif2", "pool2", "flatten", "fc"],
}




def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _lif_node(mod: Any, shape: tuple[int, ...]):
    import nir

    beta = float(mod.beta)
    if not 0 < beta < 1:
        raise ExportError(f"LIF beta={beta} has no finite time constant")
    tau = DT / (1.0 - beta)
    return nir.LIF(
        tau=np.full(shape, tau), r=np.full(shape, tau / DT), v_leak=np.zeros(shape),
        v_threshold=np.full(shape, float(mod.threshold)), v_reset=np.zeros(shape),
    )


def export_model(model: Any, name: str, input_shape: tuple[int, ...], metadata: dict[str, Any]):
    """A trained model (torch) as a float NIRGraph."""
    import nir
    from torch import nn

    from models.neuron import LIF

    if name not in LAYOUTS:
        return _export_with_builder(model, name, input_shape, metadata)
    nodes: dict[str, Any] = {"input": nir.Input({"input": np.array(input_shape)})}
    edges: list[tuple[str, str]] = []
    prev, shape = "input", tuple(input_shape)
    for layer in LAYOUTS[name]:
        if layer == "flatten":
            node = nir.Flatten({"input": np.array(shape)}, start_dim=0, end_dim=-1)
            shape = (int(np.prod(shape)),)
        else:
            mod = getattr(model, layer)
            if isinstance(mod, nn.Linear):
                w = _np(mod.weight)
                node = nir.Affine(w, _np(mod.bias)) if mod.bias is not None else nir.Linear(w)
                shape = (w.shape[0],)
            elif isinstance(mod, nn.Conv2d):
                w = _np(mod.weight)
                bias = _np(mod.bias) if mod.bias is not None else np.zeros(w.shape[0])
                node = nir.Conv2d(input_shape=shape[1:], weight=w, stride=mod.stride,
                                  padding=mod.padding, dilation=mod.dilation, groups=mod.groups,
                                  bias=bias)
                h = (shape[1] + 2 * mod.padding[0] - mod.kernel_size[0]) // mod.stride[0] + 1
                wd = (shape[2] + 2 * mod.padding[1] - mod.kernel_size[1]) // mod.stride[1] + 1
                shape = (w.shape[0], h, wd)
            elif isinstance(mod, nn.AvgPool2d | nn.MaxPool2d):
                if isinstance(mod, nn.MaxPool2d):
                    raise ExportError(f"{layer}: max pooling of spikes has no NIR primitive")
                k = _pair(mod.kernel_size)
                s = _pair(mod.stride or mod.kernel_size)
                p = _pair(mod.padding)
                node = nir.AvgPool2d(np.array(k), np.array(s), np.array(p))
                shape = (shape[0], (shape[1] + 2 * p[0] - k[0]) // s[0] + 1,
                         (shape[2] + 2 * p[1] - k[1]) // s[1] + 1)
            elif isinstance(mod, LIF):
                node = _lif_node(mod, shape)
            else:
                raise ExportError(f"{layer}: cannot export {type(mod).__name__}")
        nodes[layer] = node
        edges.append((prev, layer))
        prev = layer
    nodes["output"] = nir.Output({"output": np.array(shape)})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def _export_with_builder(model: Any, name: str, input_shape: tuple[int, ...],
                         metadata: dict[str, Any]):
    """Models with branches export through ``convert/export_<name>.py``: ``export(model,
    input_shape) -> NIRBuilder``."""
    import importlib

    try:
        mod = importlib.import_module(f"convert.export_{name}")
    except ModuleNotFoundError:
        raise ExportError(f"no NIR export for model {name!r}") from None
    return mod.export(model, tuple(input_shape)).graph(metadata)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def graph_metadata(ckpt: dict[str, Any]) -> dict[str, Any]:
    enc = ckpt.get("encoding", {})
    kind = str(enc.get("kind", "direct"))
    metrics = ckpt.get("metrics", {}) or {}
    return {
        "producer": PRODUCER, "producer_version": VERSION, "model": str(ckpt["model"]),
        "dt": DT, "discretization": "forward_euler", "reset": "zero",
        "spike_comparison": ">", "timesteps": int(ckpt["timesteps"]),
        "encoding": kind, "input_scale": float(enc.get("input_scale", 1.0)),
        "input_max": 255 if kind == "direct" else 1, "encoding_seed": int(enc.get("seed", 0)),
        "dataset": str(ckpt.get("dataset", "")), "readout": "sum_over_time",
        "test_accuracy_float": float(metrics.get("test_accuracy", float("nan"))),
    }


def checkpoint_to_nir(ckpt: dict[str, Any]):
    from core.datasets import input_shape
    from models.registry import build_model

    model = build_model(ckpt["model"], ckpt["config"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ExportError(f"checkpoint weights do not fit model {ckpt['model']!r}: {e}") from None
    model.eval()
    shape = tuple(input_shape(ckpt["dataset"]))
    shape = (int(np.prod(shape)),) if ckpt["model"] == "fc_snn" else (1, *shape)
    return export_model(model, ckpt["model"], shape, graph_metadata(ckpt))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m convert.to_nir",
        description="Export a neurodeploy checkpoint (python -m train ... -o ckpt.pt) to a "
        "standard NIR file. The file records dt, discretization, reset mode, spike comparison, "
        "timesteps and input encoding in its metadata, so every target runs it without guessing.",
    )
    ap.add_argument("checkpoint", help="checkpoint written by python -m train")
    ap.add_argument("-o", "--output", default=None,
                    help="NIR file to write (default: the checkpoint's name with .nir)")
    args = ap.parse_args(argv)
    import nir

    from train.checkpoint import load_checkpoint

    out = check_writable(args.output or Path(args.checkpoint).with_suffix(".nir"))
    ckpt = load_checkpoint(args.checkpoint)
    g = checkpoint_to_nir(ckpt)
    write_atomic(out, lambda tmp: nir.write(tmp, g))
    print(f"wrote {out} ({len(g.nodes)} nodes, {len(g.edges)} edges; model {ckpt['model']}, "
          f"T={ckpt['timesteps']}, {g.metadata['encoding']} encoding)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("convert.to_nir", main))
