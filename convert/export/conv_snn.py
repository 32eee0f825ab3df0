"""NIR export of ``models.conv_snn.ConvSNN`` (registry name ``conv_snn``)::

    input (C, H, W) -> conv1 -> lif1 -> pool1 (AvgPool2d) -> conv2 -> lif2 -> pool2 (AvgPool2d)
    -> flatten -> fc (Linear, no bias) -> output

Node names are the model's attribute names.
"""

from __future__ import annotations

from typing import Any

from convert.nir_builder import NIRBuilder
from core.errors import ExportError


def _avgpool(b: NIRBuilder, src: str, module: Any, name: str) -> str:
    # An average of spikes is a weighted sum (NIR's AvgPool2d); a max of spikes is not a
    # synaptic map, so a max-pooling variant of this model has no standard export.
    if type(module).__name__ != "AvgPool2d":
        raise ExportError(f"{name}: cannot export {type(module).__name__} (conv_snn pools "
                          "spikes by averaging; max pooling of spikes has no NIR primitive)")
    return b.avgpool(src, module.kernel_size, module.stride or module.kernel_size,
                     module.padding, name=name)


def export(model: Any, input_shape: tuple[int, ...]) -> NIRBuilder:
    """The model as a builder; ``input_shape`` is (C, H, W).

    Raises:
        ExportError: a pooling layer is not average pooling, or a layer does not fit the
            shapes (e.g. ``input_shape`` differs from the model's).
    """
    b = NIRBuilder(tuple(int(d) for d in input_shape))
    x = b.lif(b.conv("input", model.conv1, name="conv1"), module=model.lif1, name="lif1")
    x = _avgpool(b, x, model.pool1, "pool1")
    x = b.lif(b.conv(x, model.conv2, name="conv2"), module=model.lif2, name="lif2")
    x = _avgpool(b, x, model.pool2, "pool2")
    b.output(b.linear(b.flatten(x, name="flatten"), model.fc, name="fc"))
    return b
