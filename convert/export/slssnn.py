"""NIR export of ``models.slssnn.SLSSNN`` (registry name ``slssnn``).

Per block ``i`` with taps ``d = 0 .. taps-1`` (BN folded into every tap, exact in float)::

    src -> conv{i}_0 ---------------------------.
    src -> delay{i}_1 (Delay 1 step) -> conv{i}_1 +-> stcb{i}   (IF for "stcb", LIF for "conv")
    src -> delay{i}_2 (Delay 2 steps) -> conv{i}_2 '

then ``flatten``, ``fc`` (no bias), ``output``. BN's scale multiplies each tap's kernel; its
shift is the bias of tap 0 only, so that it enters the population once per step from the first
step, as in the model (a bias behind a Delay would be held back). The importer turns each
Delay into the model delay (``lag``) of its Conv synapse: standard NIR, existing integer-graph
kinds (Conv synapses, LIF populations with ``dv = 0``), no extension node.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convert.nir_builder import NIRBuilder, bn_affine, builder_for, to_numpy


def export(model: Any, input_shape: tuple[int, ...]) -> NIRBuilder:
    """The model (eval mode) as a builder; ``input_shape`` is (C, H, W).

    Raises:
        ExportError: the model was built for another input shape, or is in training mode.
    """
    b = builder_for("slssnn", model, input_shape)
    x = "input"
    for i, blk in enumerate(model.blocks):
        scale, shift = bn_affine(blk.bn)
        currents = []
        for d, conv in enumerate(blk.convs):
            w = to_numpy(conv.weight) * scale[:, None, None, None]
            bias = shift if d == 0 else np.zeros_like(shift)
            src = x if d == 0 else b.delay(x, d, name=f"delay{i}_{d}")
            currents.append(b.conv(src, weight=w, bias=bias, stride=conv.stride,
                                   padding=conv.padding, name=f"conv{i}_{d}"))
        if blk.lif is None:
            x = b.integrate_fire(currents, blk.threshold, name=f"stcb{i}")
        else:
            x = b.lif(currents, module=blk.lif, name=f"stcb{i}")
    x = b.flatten(x, name="flatten")
    x = b.linear(x, model.fc, name="fc")
    b.output(x)
    return b
