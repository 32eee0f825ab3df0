"""Trained torch model -> float NIR graph: one exporter per model, in one registry.

An exporter is a function ``export(model, input_shape) -> NIRBuilder``: it walks the trained
model (in eval mode) and adds its layers to a :class:`~convert.nir_builder.NIRBuilder` whose
``"input"`` node has the shape the model reads per time step. ``input_shape`` is the dataset's
image shape ``(C, H, W)``; an exporter may flatten it (``fc_snn`` does).

- Registered models: :data:`EXPORTERS` maps the registry name (``models.registry``) to its
  exporter, one module per model in this package.
- Your own model (``python -m train --model my_pkg.mod:MyNet``): give its class a method
  ``export_nir(self, b)`` that adds the layers from ``"input"`` to the builder ``b`` and ends
  with ``b.output(...)``; the builder's input has the model's ``in_shape``. See
  docs/custom-models.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import nir

from convert.export import (
    cml_net,
    cml_spikformer,
    conv_snn,
    ds_resnet,
    fc_snn,
    slssnn,
    sma_net,
    spiking_mlp,
)
from convert.nir_builder import NIRBuilder
from core.errors import ExportError

Exporter = Callable[[Any, tuple[int, ...]], NIRBuilder]

# model name (models.registry) -> exporter
EXPORTERS: dict[str, Exporter] = {
    "fc_snn": fc_snn.export,
    "conv_snn": conv_snn.export,
    "cml_net": cml_net.export,
    "ds_resnet": ds_resnet.export,
    "spiking_mlp": spiking_mlp.export,
    "cml_spikformer": cml_spikformer.export,
    "sma_net": sma_net.export,
    "slssnn": slssnn.export,
}

# The method a user's model class defines to be exportable (docs/custom-models.md).
USER_METHOD = "export_nir"

__all__ = ["EXPORTERS", "USER_METHOD", "Exporter", "NIRBuilder", "export_model", "find_exporter"]


def _export_user_model(model: Any, input_shape: tuple[int, ...]) -> NIRBuilder:
    """A user's model through its ``export_nir(b)`` method; the builder's input is the model's
    ``in_shape`` (the per-sample shape its forward pass computes on, models/layers.py), which
    must hold as many values as ``input_shape``."""
    shape = tuple(int(d) for d in getattr(model, "in_shape", input_shape))
    if math.prod(shape) != math.prod(int(d) for d in input_shape):
        raise ExportError(f"{type(model).__name__}: in_shape {shape} does not fit the input "
                          f"{tuple(input_shape)}")
    b = NIRBuilder(shape)
    getattr(model, USER_METHOD)(b)
    if not any(isinstance(n, nir.Output) for n in b.nodes.values()):
        raise ExportError(f"{type(model).__name__}.{USER_METHOD} added no output: end it with "
                          "b.output(<last node>)")
    return b


def find_exporter(spec: str, model: Any) -> Exporter:
    """The exporter of model ``spec`` (a registry name or ``module:Class``): the registered one,
    else the model's own ``export_nir`` method.

    Raises:
        ExportError: neither exists.
    """
    if spec in EXPORTERS:
        return EXPORTERS[spec]
    if callable(getattr(model, USER_METHOD, None)):
        return _export_user_model
    raise ExportError(f"no NIR export for model {spec!r}: give {type(model).__name__} a method "
                      f"{USER_METHOD}(self, b) that builds it (see docs/custom-models.md)")


def export_model(model: Any, spec: str, input_shape: tuple[int, ...],
                 metadata: dict[str, Any]) -> nir.NIRGraph:
    """A trained model (torch, eval mode) as a float ``nir.NIRGraph`` with ``metadata``.

    ``spec`` names the model (registry name or ``module:Class``); ``input_shape`` is the image
    shape ``(C, H, W)`` the model reads per time step.

    Raises:
        ExportError: the model has no exporter, or a layer cannot be expressed in NIR.
    """
    return find_exporter(spec, model)(model, tuple(input_shape)).graph(metadata)
