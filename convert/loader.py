"""Any NIR file to the integer graph a target runs: the one entry point of the conversion stage."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from convert.nir_import import import_nir
from convert.quantize import QuantReport, quantize
from core.graph import QGraph
from core.nir_ext import read_nir
from core.nir_io import from_nir, is_integer_graph


def load_graph(
    path: str | Path, *, dt: float | None = None, timesteps: int | None = None,
    input_kind: str | None = None, input_bitplanes: bool = False,
) -> tuple[QGraph, QuantReport | None]:
    """Any NIR file -> ``(integer graph, quantization report)``.

    Integer files (written by ``convert.quantize``) are read as they are, with the report they
    embed (None if they embed none); float ones (ours or another framework's) are imported and
    quantized. ``dt`` (s), ``timesteps`` and ``input_kind`` fill in what a foreign file does not
    record; ``input_bitplanes`` deploys a graded input as binary bit planes (float files only).

    Raises:
        GraphError: the file is unreadable, or the graph cannot be imported or quantized.
    """
    g = read_nir(path)
    if is_integer_graph(g):
        qg = from_nir(g)
        if timesteps:
            qg = replace(qg, timesteps=timesteps)
        rep = qg.metadata.get("quantization_report")
        return qg, (QuantReport.from_dict(json.loads(rep)) if isinstance(rep, str) else None)
    return quantize(import_nir(g, dt=dt, timesteps=timesteps, input_kind=input_kind),
                    input_bitplanes=input_bitplanes)
