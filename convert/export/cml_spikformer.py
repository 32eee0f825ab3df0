"""NIR export of ``models.cml_spikformer.CMLSpikformer`` (registry name ``cml_spikformer``).
Population names are the model's ``lif_names``.

Tokenizer stage ``i`` (BN folded into the conv, exact in float)::

    tok{i}_conv [-> tok{i}_maxpool (neurodeploy.MaxPool2d, of currents: CML)] -> tok{i}

Encoder block ``i`` (``stream`` = the list of spike populations whose sum is the residual
stream: a linear node with a list of sources is their sum, so the importer turns it into one
binary synapse per summand through the same weights, and balances their latencies)::

    b{i}_{q,k,v}_conv (1x1, BN folded) on the stream -> b{i}_q, b{i}_k, b{i}_v
    b{i}_attention (neurodeploy.SpikeAttention: scale * (Q Kᵀ) V per head) -> b{i}_attn
    b{i}_proj_conv -> b{i}_proj;                         stream += [b{i}_proj]
    b{i}_fc1_conv on the stream -> b{i}_fc1 -> b{i}_fc2_conv -> b{i}_fc2;  stream += [b{i}_fc2]

Head: ``gap`` (AvgPool2d over all tokens) of the stream, ``flatten``, ``head`` (Linear, no
bias), ``output``. The file has extension nodes, so stock ``nir.read`` refuses it;
``core.nir_ext.read_nir`` reads it.
"""

from __future__ import annotations

from typing import Any

from convert.nir_builder import NIRBuilder, builder_for


def _stage(b: NIRBuilder, src: str | list[str], st: Any, name: str) -> str:
    """ConvBNLIF ``st`` as conv (+ maxpool of currents) -> LIF population ``name``."""
    x = b.conv(src, st.conv, bn=st.bn, name=f"{name}_conv")
    if st.downsample:
        x = b.maxpool(x, 2, name=f"{name}_maxpool")
    return b.lif(x, module=st.lif, name=name)


def export(model: Any, input_shape: tuple[int, ...]) -> NIRBuilder:
    """The model (eval mode) as a builder; ``input_shape`` is (C, H, W).

    Raises:
        ExportError: the model was built for another input shape, or is in training mode.
    """
    b = builder_for("cml_spikformer", model, input_shape)
    x = "input"
    for i, st in enumerate(model.tokenizer):
        x = _stage(b, x, st, f"tok{i}")
    stream = [x]
    for i, blk in enumerate(model.blocks):
        p = f"b{i}"
        q, k, v = (_stage(b, stream, getattr(blk, r), f"{p}_{r}") for r in "qkv")
        a = b.spike_attention(q, k, v, blk.heads, blk.attn_scale, name=f"{p}_attention")
        s = b.lif(a, module=blk.attn_lif, name=f"{p}_attn")
        stream = [*stream, _stage(b, s, blk.proj, f"{p}_proj")]
        h = _stage(b, stream, blk.fc1, f"{p}_fc1")
        stream = [*stream, _stage(b, h, blk.fc2, f"{p}_fc2")]
    _, hh, ww = b.shape(stream)
    g = b.avgpool(stream, (hh, ww), name="gap")
    b.output(b.linear(b.flatten(g, name="flatten"), model.head, name="head"))
    return b
