"""DS-ResNet (models/ds_resnet.py) -> float NIR, multiplication-free except the first conv.

Mapping (see docs/models/ds_resnet.md):

- every conv-tdBN-MLF unit is **one** Conv2d node (tdBN folded into weights and bias) feeding
  **K LIF populations** (``b.lif`` called K times on the same conv node, beta 0.25, each with its
  own threshold): ``{unit}_l0 .. {unit}_l{K-1}``, the names the torch model's
  ``return_spikes`` uses;
- a spike count (MLF output, or the sum a DS block passes on) is never materialised: it is the
  **list** of the binary populations it sums, and the next conv takes that list as its source,
  which the importer turns into one binary synapse per population, all with the same weights
  (MFI: every synaptic event is one accumulate);
- an identity shortcut is the block input's list joining the block output's list; those
  populations reach the next layer through fewer synaptic layers than the main path, and the
  importer's latency balancing delays them (``synapse.delay``) so the deployed net computes the
  trained one;
- the readout is global average pooling + the bias-free Linear over every final population;
- the stem conv receives the graded pixel input: the only non-MFI edge.
"""

from __future__ import annotations

from typing import Any

from convert.nir_builder import NIRBuilder, builder_for


def _unit(b: NIRBuilder, src: str | list[str], name: str, unit: Any) -> list[str]:
    """conv + folded tdBN -> K LIF populations (one per MLF level) on the same conv node."""
    x = b.conv(src, unit.conv, affine=unit.bn.fold(), name=f"{name}_conv")
    mlf = unit.mlf
    return [b.lif(x, mlf.beta, th, name=f"{name}_l{k}") for k, th in enumerate(mlf.thresholds)]


def export(model: Any, input_shape: tuple[int, ...]) -> NIRBuilder:
    """The model (eval mode) as a builder; ``input_shape`` is (C, H, W)."""
    b = builder_for("DSResNet", model, input_shape)
    h: list[str] = _unit(b, "input", "stem", model.stem)
    for prefix, blk in model.blocks():
        s1 = _unit(b, h, f"{prefix}unit1", blk.unit1)
        s2 = _unit(b, s1, f"{prefix}unit2", blk.unit2)
        sc = h if blk.shortcut is None else _unit(b, h, f"{prefix}shortcut", blk.shortcut)
        h = s2 + sc  # the block output: the sum of all these binary populations
    _, hh, ww = b.shape(h)
    pooled = b.avgpool(h, (hh, ww), name="gap")
    b.output(b.linear(b.flatten(pooled, name="flatten"), model.fc, name="fc"))
    return b
