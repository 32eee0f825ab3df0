"""Shared by the golden-hash tests and tests/data/make_golden.py."""

from __future__ import annotations

import hashlib

import numpy as np

from core.datasets import load_dataset
from core.encoding import encode_as_recorded
from core.graph import QGraph
from targets.base import RunResult

SAMPLES = 16


def golden_inputs(graph: QGraph) -> np.ndarray:
    images, _ = load_dataset("digits", "test")
    return encode_as_recorded(graph.metadata, graph.timesteps, images[:SAMPLES])


def record_hashes(result: RunResult) -> dict[str, str]:
    """sha256 of every record as int64 bytes in C order (spikes as 0/1)."""
    out = {}
    for kind, recs in (("spikes", result.spikes), ("readouts", result.readouts)):
        for name, rec in recs.items():
            arr = np.ascontiguousarray(np.asarray(rec).astype(np.int64))
            out[f"{kind}/{name}"] = hashlib.sha256(arr.tobytes()).hexdigest()
    return out
