"""NIR export of ``models.fc_snn.FCSNN`` (registry name ``fc_snn``)::

    input (H*W,) -> fc1 (Affine) -> lif1 (LIF) -> fc2 (Linear, no bias) -> output

The model reads the image flattened (``[T, B, H*W]``), so the graph's input is flat too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convert.nir_builder import NIRBuilder


def export(model: Any, input_shape: tuple[int, ...]) -> NIRBuilder:
    """The model as a builder; ``input_shape`` is the image's (C, H, W) (or already flat).

    Raises:
        ExportError: ``fc1`` does not take ``prod(input_shape)`` inputs.
    """
    b = NIRBuilder((int(np.prod(input_shape)),))
    x = b.linear("input", model.fc1, name="fc1")
    x = b.lif(x, module=model.lif1, name="lif1")
    b.output(b.linear(x, model.fc2, name="fc2"))
    return b
