"""Conversion: trained checkpoint -> float NIR graph -> integer (Loihi) graph.

The public API of this stage (what the CLIs call):

- :func:`convert.to_nir.checkpoint_to_nir` -- a checkpoint as a float ``nir.NIRGraph``;
- :func:`convert.nir_import.import_nir` -- any NIR graph as a float graph (:class:`FGraph`);
- :func:`convert.quantize.quantize` -- float graph -> integer :class:`core.graph.QGraph` + report;
- :func:`convert.loader.load_graph` (also ``convert.load_graph``) -- any NIR file straight to the
  integer graph a target runs.

Names are resolved on first use, so ``python -m convert.quantize`` does not import its own module
twice (runpy warns when a package's ``__init__`` imports the module it is asked to run).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"load_graph": "convert.loader"}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'convert' has no attribute {name!r}")
