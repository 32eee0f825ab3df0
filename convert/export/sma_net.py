"""SMA net (models/sma_net.py) -> float NIR: the exact static-attention form of the SMA block.

What the float model computes that no target can run as such (docs/models/sma_net.md):

- the **channel/scale attention** ``a[b, k, c]`` is real-valued and data-dependent (an MLP with
  a ReLU and a softmax over the spike rates of the whole sample); re-weighting binary branch
  spikes by it is a multiply per spike (a MAC);
- the **time attention** ``b[b, t]`` is a softmax over all T steps: step t's weight depends on
  later steps (non-causal), and it multiplies every output value of the step (a MAC);
- AZO acts in training only (nothing to deploy).

Deployed instead (the model's :meth:`~models.sma_net.SMANet.use_static_attention` form, which
the ablation scores in float): ``a`` is replaced by its running mean over the training batches
(``attn_running_mean`` [K, c], kept like BatchNorm's statistics) and ``b`` by its mean over the
steps, which is exactly 1 (``T * softmax``). A fixed per-channel weight on a binary population
folds exactly into the weights of the layer that reads it, so the block becomes K binary
populations ``{prefix}_k{k}``, each projecting through **its own** copy of the next layer's
weights scaled by ``a[k, c]`` along the input channel; the next layer's node sums them. Every
such edge receives binary spikes (multiplication-free), and the exporter names each one in the
graph metadata ``neurodeploy_deploy_changes`` (a JSON list, read by the MFI certificate) and on
stderr. Nothing is dropped silently: a branch is never removed, even where its weight is small.

Node names (= the torch model's spike-record names):

- vgg: ``conv{i}`` [-> ``maxpool{i}``] -> ``s{i}``; per branch ``sma_conv_k{k}`` -> ``sma_k{k}``;
  per branch ``fc_k{k}`` (flatten ``flat_k{k}``) into ``output``;
- msresnet: ``stem`` (conv + BN: currents); per block ``r{i}_in`` = LIF of the sum of the stem
  and of every earlier block's output convs (the membrane shortcut: currents add, the importer
  composes the paths and balances their latencies), branches ``r{i}_conv_k{k}`` ->
  ``r{i}_k{k}``, output convs ``r{i}_out_k{k}`` (BN shift counted once, on the first branch);
  ``out`` = LIF of the total; ``flatten`` -> ``fc`` -> ``output``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from convert.nir_builder import NIRBuilder, bn_affine, builder_for, to_numpy

#: Graph metadata key: JSON list of what the export changed (documented in docs/integer-nir.md).
CHANGES_KEY = "neurodeploy_deploy_changes"


def _static_weights(blk: Any) -> np.ndarray:
    """[K, c]: the deployed per-branch, per-channel weight of a block (1 without attention)."""
    if blk.block == "sma":
        return to_numpy(blk.attn_running_mean)
    return np.ones((len(blk.kernels), to_numpy(blk.attn_running_mean).shape[1]))


def _branches(b: NIRBuilder, src: str, blk: Any, prefix: str) -> list[str]:
    """conv_k + folded BN -> LIF per branch; returns the branch population names."""
    pops = []
    for k, br in zip(blk.kernels, blk.branches, strict=True):
        x = b.conv(src, br.conv, bn=br.bn, name=f"{prefix}_conv_k{k}")
        pops.append(b.lif(x, module=br.lif, name=f"{prefix}_k{k}"))
    return pops


def _note(b: NIRBuilder, blk: Any, pops: list[str], readers: list[str], where: str) -> None:
    """Record (metadata and one stderr line each) what the deployed form changed for an SMA
    block: one entry for the channel/scale attention, one for the time attention. Each entry
    names the branch populations (``sources``) whose outgoing edges it concerns."""
    if blk.block != "sma":
        return
    a = _static_weights(blk)
    ranges = ", ".join(f"{p} {a[j].min():.2f}..{a[j].max():.2f}" for j, p in enumerate(pops))
    new = [{
        "block": where,
        "sources": pops,
        "readers": readers,
        "float": "branch spikes x data-dependent channel/scale attention a[b,k,c] (softmax of "
                 "an MLP of the sample's spike rates): a MAC per spike",
        "deployed": f"static a[k,c] = running mean over the training batches ({ranges}), "
                    "folded into the readers' weights: binary spikes, an AC per spike",
        "reason": "a[b,k,c] needs the whole sample (all T steps) before step 0",
    }, {
        "block": where,
        "sources": pops,
        "readers": readers,
        "float": "x time attention b[b,t] = T softmax over all T steps (non-causal): a MAC",
        "deployed": "1 at every step (the mean of b over the steps is exactly 1)",
        "reason": "step t's weight depends on later steps, and no static per-step weight "
                  "exists on a chip with fixed synaptic weights",
    }]
    b.metadata[CHANGES_KEY] = json.dumps(json.loads(b.metadata.get(CHANGES_KEY, "[]")) + new)
    for c in new:
        print(f"convert: sma_net: {where}: {c['float']} -> deployed as {c['deployed']}",
              file=sys.stderr)


def _export_vgg(b: NIRBuilder, model: Any) -> None:
    x = "input"
    for i, st in enumerate(model.stages):
        x = b.conv(x, st.conv, bn=st.bn, name=f"conv{i}")
        if st.downsample:
            x = b.maxpool(x, 2, name=f"maxpool{i}")
        x = b.lif(x, module=st.lif, name=f"s{i}")
    blk = model.sma
    pops = _branches(b, x, blk, "sma")
    a = _static_weights(blk)
    w = to_numpy(model.fc.weight)  # [n_out, c * h * w], C-order flatten of (c, h, w)
    c, h, wd = b.shape(pops[0])
    fcs = []
    for j, (k, pop) in enumerate(zip(blk.kernels, pops, strict=True)):
        flat = b.flatten(pop, name=f"flat_k{k}")
        scale = np.repeat(a[j], h * wd)  # the input channel's static weight, per column
        fcs.append(b.linear(flat, weight=w * scale[None, :], name=f"fc_k{k}"))
    _note(b, blk, pops, fcs, "sma")
    b.output(fcs)


def _export_msresnet(b: NIRBuilder, model: Any) -> None:
    currents = [b.conv("input", model.stem, bn=model.stem_bn, name="stem")]
    for i, (lif, blk, conv, bn) in enumerate(zip(model.res_lifs, model.res_blocks,
                                                 model.res_convs, model.res_bns, strict=True)):
        s = b.lif(list(currents), module=lif, name=f"r{i}_in")
        pops = _branches(b, s, blk, f"r{i}")
        a = _static_weights(blk)
        sc, sh = bn_affine(bn)
        w = to_numpy(conv.weight) * sc[:, None, None, None]
        outs = []
        for j, (k, pop) in enumerate(zip(blk.kernels, pops, strict=True)):
            wk = w * a[j][None, :, None, None]  # the input channel's static attention
            outs.append(b.conv(pop, weight=wk, bias=sh if j == 0 else np.zeros_like(sh),
                               stride=conv.stride, padding=conv.padding,
                               name=f"r{i}_out_k{k}"))
        _note(b, blk, pops, outs, f"r{i}")
        currents += outs
    out = b.lif(list(currents), module=model.final_lif, name="out")
    b.output(b.linear(b.flatten(out, name="flatten"), model.fc, name="fc"))


def export(model: Any, input_shape: tuple[int, ...]) -> NIRBuilder:
    """The model (eval mode) in its deployed static-attention form; ``input_shape`` (C, H, W).

    Prints one line per changed edge on stderr and records them in the graph metadata
    (:data:`CHANGES_KEY`).

    Raises:
        ExportError: the model was built for another input shape, or is in training mode.
    """
    b = builder_for("sma_net", model, input_shape)
    if model.arch == "vgg":
        _export_vgg(b, model)
    else:
        _export_msresnet(b, model)
    return b
