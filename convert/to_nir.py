"""Checkpoint -> standard NIR (nir 1.0.x HDF5) that stock ``nir.read`` loads.

    python -m convert.to_nir ckpt.pt [-o model.nir] [--json]

Graph metadata records what NIR leaves open and importers otherwise guess: ``dt``, the
discretization (forward Euler: ``v[t] = (1 - dt/tau) v[t-1] + (dt r / tau) I[t]``; we set
``r = tau / dt`` so the input gain is 1), reset mode (``zero``), spike comparison (``>``),
timesteps, input encoding and its scale, dataset, producer and version.

The model is exported by its exporter in :mod:`convert.export` (a registered model's, or a
user model's own ``export_nir`` method: docs/custom-models.md). A chip-exact checkpoint
(``python -m train --chip-exact``, :mod:`train.chip_exact`) holds the integer graph it trained:
that file is written unchanged (an integer NIR graph, docs/integer-nir.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import nir

from convert.export import export_model
from convert.nir_builder import DT
from core.cli import add_output_flags, check_writable, print_json, run_cli
from core.datasets import input_shape
from core.errors import CheckpointError
from core.files import write_atomic
from core.nir_ext import read_nir
from core.nir_io import meta_value
from models.checkpoint import load_checkpoint, model_from_checkpoint

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
    chip = chip_exact_graph(ckpt)
    if chip is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "graph.nir"
            path.write_bytes(chip)
            return read_nir(path)
    model = model_from_checkpoint(ckpt)
    ds_shape = tuple(input_shape(ckpt["dataset"]))  # (H, W), or (P, H, W) for event frames
    shape = ds_shape if len(ds_shape) == 3 else (1, *ds_shape)
    return export_model(model, ckpt["model"], shape, graph_metadata(ckpt))


def chip_exact_graph(ckpt: dict[str, Any]) -> bytes | None:
    """The integer NIR file a chip-exact checkpoint holds (``train.chip_exact``: the graph
    that was trained, to be exported unchanged), or None for a float checkpoint.

    Raises:
        CheckpointError: a ``chip_exact`` entry without its graph.
    """
    chip = ckpt.get("chip_exact")
    if not isinstance(chip, dict):
        return None
    data = chip.get("graph")
    if data is None or not hasattr(data, "numpy"):
        raise CheckpointError("chip-exact checkpoint without its integer graph")
    return data.numpy().tobytes()


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
    chip = chip_exact_graph(ckpt)
    if chip is not None:  # the trained integer graph, byte for byte
        write_atomic(out, lambda tmp: Path(tmp).write_bytes(chip))
    else:
        write_atomic(out, lambda tmp: nir.write(tmp, g))
    enc, dataset = (meta_value(g.metadata.get(k, "")) for k in ("encoding", "dataset"))
    if args.json:
        print_json({"output": out, "model": ckpt["model"], "nodes": len(g.nodes),
                    "chip_exact": chip is not None,
                    "edges": len(g.edges), "timesteps": int(ckpt["timesteps"]),
                    "encoding": enc, "dataset": dataset})
    else:
        kind = "; the chip-exact integer graph" if chip is not None else ""
        print(f"wrote {out} ({len(g.nodes)} nodes, {len(g.edges)} edges; model {ckpt['model']}, "
              f"T={ckpt['timesteps']}, {enc} encoding{kind})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("convert.to_nir", main))
