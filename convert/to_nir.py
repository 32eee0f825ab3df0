"""Checkpoint -> standard NIR (nir 1.0.x HDF5) that stock ``nir.read`` loads.

    python -m convert.to_nir ckpt.pt [-o model.nir] [--json]

Graph metadata records what NIR leaves open and importers otherwise guess: ``dt``, the
discretization (forward Euler: ``v[t] = (1 - dt/tau) v[t-1] + (dt r / tau) I[t]``; we set
``r = tau / dt`` so the input gain is 1), reset mode (``zero``), spike comparison (``>``),
timesteps, input encoding and its scale, dataset, producer and version.

The model is exported by its exporter in :mod:`convert.export` (a registered model's, or a
user model's own ``export_nir`` method: docs/custom-models.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import nir

from convert.export import export_model
from convert.nir_builder import DT
from core.cli import add_output_flags, check_writable, print_json, run_cli
from core.datasets import input_shape
from core.files import write_atomic
from train.checkpoint import load_checkpoint, model_from_checkpoint

PRODUCER = "neurodeploy"
VERSION = "0.1.0"

__all__ = ["checkpoint_to_nir", "export_model", "graph_metadata", "main"]


def graph_metadata(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The float graph's metadata for checkpoint ``ckpt``: the export step ``dt`` (s), the
    neuron conventions, timesteps, the input encoding and its scale, dataset, producer, the
    float model's test accuracy (NaN when the checkpoint has none)."""
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


def checkpoint_to_nir(ckpt: dict[str, Any]) -> nir.NIRGraph:
    """A checkpoint (``train.checkpoint.load_checkpoint``, or ``train_model``'s result) as a
    float ``nir.NIRGraph``; the input is the dataset's image, shape ``(1, H, W)``.

    Raises:
        CheckpointError: the weights do not fit the model's configuration.
        ExportError: the model has no exporter, or a layer has no NIR form.
    """
    model = model_from_checkpoint(ckpt)
    shape = (1, *input_shape(ckpt["dataset"]))
    return export_model(model, ckpt["model"], shape, graph_metadata(ckpt))


def main(argv: list[str] | None = None) -> int:
    """``python -m convert.to_nir``; returns the exit code."""
    ap = argparse.ArgumentParser(
        prog="python -m convert.to_nir",
        description="Export a neurodeploy checkpoint (python -m train ... -o ckpt.pt) to a "
        "standard NIR file. The file records dt, discretization, reset mode, spike comparison, "
        "timesteps and input encoding in its metadata, so every target runs it without guessing.",
    )
    ap.add_argument("checkpoint", help="checkpoint written by python -m train")
    ap.add_argument("-o", "--output", default=None,
                    help="NIR file to write (default: the checkpoint's name with .nir)")
    add_output_flags(ap)
    args = ap.parse_args(argv)
    out = check_writable(args.output or Path(args.checkpoint).with_suffix(".nir"))
    ckpt = load_checkpoint(args.checkpoint)
    g = checkpoint_to_nir(ckpt)
    write_atomic(out, lambda tmp: nir.write(tmp, g))
    if args.json:
        print_json({"output": out, "model": ckpt["model"], "nodes": len(g.nodes),
                    "edges": len(g.edges), "timesteps": int(ckpt["timesteps"]),
                    "encoding": g.metadata["encoding"], "dataset": g.metadata["dataset"]})
    else:
        print(f"wrote {out} ({len(g.nodes)} nodes, {len(g.edges)} edges; model {ckpt['model']}, "
              f"T={ckpt['timesteps']}, {g.metadata['encoding']} encoding)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("convert.to_nir", main))
