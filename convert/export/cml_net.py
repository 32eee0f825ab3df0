"""NIR export of ``models.cml_net.CMLNet`` (registry name ``cml_net``).

Per stage ``i`` (BN folded into the conv, exact in float)::

    cml, downsampling:       conv{i} -> maxpool{i} (neurodeploy.MaxPool2d, currents) -> lif{i}
    original, downsampling:  conv{i} -> lif{i} -> orpool{i} -> or{i}
    no downsampling:         conv{i} -> lif{i}

then ``gap`` (AvgPool2d over the whole map) or nothing, ``flatten``, ``fc`` (no bias), ``output``.

Max pooling of *spikes* (original order) has no NIR primitive, but the max of binary spikes is
an OR, and an OR is a neuron: ``orpool{i}`` is a 2x2 stride-2 convolution that counts the spikes
in each window of each channel (weights 1, no mixing of channels; a count of 0..4) into a LIF
population ``or{i}`` with threshold 0.5. Its voltage is 0 after every step: it spikes and
resets when the count is >= 1, and otherwise receives exactly 0 (no bias). So ``or{i}`` spikes
iff any input of its window spiked at that step, for any beta: exact, standard NIR,
multiplication-free, at the cost of one extra population and one step of deployed latency per
downsampling stage. The CML order needs the ``neurodeploy.MaxPool2d`` extension node instead
(stock ``nir.read`` refuses such a file).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convert.nir_builder import NIRBuilder, builder_for

OR_THRESHOLD = 0.5


def _window_count_kernel(c: int) -> np.ndarray:
    """[c, c, 2, 2]: channel c's 2x2 window summed into channel c, nothing across channels.

    (A depthwise conv with groups=c would be smaller, but NIR 1.0's type inference reads the
    input channels off the weight and ignores groups; the zero weights carry no events.)
    """
    w = np.zeros((c, c, 2, 2))
    w[np.arange(c), np.arange(c)] = 1.0
    return w


def export(model: Any, input_shape: tuple[int, ...]) -> NIRBuilder:
    """The model (eval mode) as a builder; ``input_shape`` is (C, H, W).

    Raises:
        ExportError: the model was built for another input shape, or is in training mode.
    """
    b = builder_for("cml_net", model, input_shape)
    x = "input"
    for i, st in enumerate(model.stages):
        x = b.conv(x, st.conv, bn=st.bn, name=f"conv{i}")
        if st.downsample and st.order == "cml":
            x = b.maxpool(x, 2, name=f"maxpool{i}")
        x = b.lif(x, module=st.lif, name=f"lif{i}")
        if st.downsample and st.order == "original":
            x = b.conv(x, weight=_window_count_kernel(b.shape(x)[0]), stride=2, padding=0,
                       name=f"orpool{i}")
            x = b.lif(x, beta=st.lif.beta, threshold=OR_THRESHOLD, name=f"or{i}")
    if model.readout == "gap":
        _, h, w = b.shape(x)
        x = b.avgpool(x, (h, w), name="gap")
    x = b.flatten(x, name="flatten")
    x = b.linear(x, model.fc, name="fc")
    b.output(x)
    return b
