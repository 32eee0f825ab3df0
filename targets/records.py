"""Run records on disk: spikes, readouts, states and counters of a :class:`RunResult` as .npz.

Layout: ``spikes/<population>`` bool [N, T, size], ``readouts/<readout>`` int64 [N, T, size],
``states/<population>/u`` and ``/v`` int64 [N, T, size] when recorded, ``counters`` (a JSON
string), plus any extra arrays the caller adds (``labels``, ``scores``). numpy only.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from core.files import write_atomic
from targets.base import RunResult


def save_record(path: str | Path, result: RunResult, extra: dict[str, Any] | None = None) -> None:
    arrays: dict[str, np.ndarray] = {}
    for k, v in result.spikes.items():
        arrays[f"spikes/{k}"] = v
    for k, v in result.readouts.items():
        arrays[f"readouts/{k}"] = v
    for k, (u, v) in result.states.items():
        arrays[f"states/{k}/u"] = u
        arrays[f"states/{k}/v"] = v
    arrays["counters"] = np.array(json.dumps(result.counters))
    for k, v in (extra or {}).items():
        arrays[k] = np.asarray(v)

    def write(tmp: str) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        Path(tmp).write_bytes(buf.getvalue())

    write_atomic(path, write)


def load_record(path: str | Path) -> RunResult:
    with np.load(path, allow_pickle=False) as z:
        spikes = {k[7:]: z[k] for k in z.files if k.startswith("spikes/")}
        readouts = {k[9:]: z[k] for k in z.files if k.startswith("readouts/")}
        counters = json.loads(str(z["counters"])) if "counters" in z.files else {}
        states = {}
        for k in z.files:
            if k.startswith("states/") and k.endswith("/u"):
                name = k[7:-2]
                states[name] = (z[k], z[f"states/{name}/v"])
    return RunResult(spikes, readouts, counters, states)
