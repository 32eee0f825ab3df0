"""The trained torch model itself: a neurodeploy checkpoint's ``forward_with_spikes``.

A float NIR file of ours does not name the checkpoint it was exported from, so the run takes
it (``checkpoint``: the path ``python -m train`` wrote). The model sees the inputs as it saw
them in training (``train.loop.model_input``: integers times the encoding's scale, time-major)
and reports every LIF population's spikes under its ``lif_names`` name, which is also its NIR
node name. torch is imported here only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import UserError
from targets.reference._common import load, output_node

NAME = "checkpoint"
OPTIONS: dict[str, tuple[tuple[Any, ...], str]] = {}


def simulate(graph: Any, inputs: np.ndarray, dt: float | None = None, *,
             membranes: dict[str, np.ndarray] | None = None, notes: list[str] | None = None,
             thresholds: dict[str, np.ndarray] | None = None,
             input_scale: float = 1.0, checkpoint: str | None = None) -> dict[str, np.ndarray]:
    """Spikes ``[N, T, size]`` (int64) of every LIF population of the checkpoint's model on
    ``inputs`` ``[N, T, *input_shape]`` (integers as encoded), and its logits as
    ``[N, 1, classes]`` under the graph's Output node name. ``dt`` and ``input_scale`` are not
    used (the checkpoint records its encoding); no membranes are recorded.

    Raises:
        UserError: no ``checkpoint`` given, or it is for another model than the graph.
        CheckpointError: the checkpoint cannot be read or its weights do not fit.
    """
    import torch

    from train.checkpoint import load_checkpoint, model_from_checkpoint
    from train.loop import model_input

    if not checkpoint:
        raise UserError("--reference checkpoint needs --checkpoint ckpt.pt (the file "
                        "python -m train wrote; a NIR file does not name it)")
    g = load(graph)
    ckpt = load_checkpoint(checkpoint)
    model_name = str((g.metadata or {}).get("model", ckpt["model"]))
    if model_name != ckpt["model"]:
        raise UserError(f"{checkpoint} is a {ckpt['model']!r} checkpoint, the graph was "
                        f"exported from {model_name!r}")
    model = model_from_checkpoint(ckpt)
    kind = str(ckpt.get("encoding", {}).get("kind", "direct"))
    with torch.no_grad():
        logits, rec = model.forward_with_spikes(model_input(inputs, kind))
    n, t = inputs.shape[:2]
    res = {k: np.round(s.double().numpy()).astype(np.int64).reshape(t, n, -1).transpose(1, 0, 2)
           for k, s in rec.items()}
    res[output_node(g)] = logits.double().numpy()[:, None, :]
    return res
