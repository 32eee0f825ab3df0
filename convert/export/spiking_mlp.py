"""Spiking MLP (models/spiking_mlp.py) -> float NIR, multiplication-free except the first conv.

Mapping (see docs/models/spiking_mlp.md); population names are those of the torch model's
``return_spikes``, and every flattened layout is the torch tensor's C-order layout:

- stage 0 embedding: ``Conv2d`` (k = s = patch) on the pixels with its BN folded (``bn=``),
  feeding ``s0_embed`` ([C, H, W]): the only non-MFI edge;
- spiking patch encoding (stage i > 0): every conv3x3 reads a flattened population, so it is
  written as its exact dense matrix (BN folded per output channel). ``LIF_a`` / ``LIF_b`` get
  their branch currents; the concatenated current ``cat(n1, n2, n3)`` is never materialised:
  it is the list of three linear nodes (one per source population, weights stacked into the
  output slots, ``n1``'s rows appearing in slots 1 and 3), summed by every LIF that receives
  the stage embedding;
- token mixing over H (W): ``linear`` with the Kronecker-expanded weight
  ``I_C (x) M (x) I_W`` (``I_C (x) I_H (x) M``) and its per-row BN as per-neuron ``affine=``;
- fuse ``conv1x1(cat(x, x_h, x_w))``: three linear nodes (split weights ``F_x, F_h, F_w``,
  each ``F (x) I_HW``), the per-channel BN folded into each, its shift counted once;
- FFN: ``fc1``/``fc2`` per token (``I_HW``-expanded, token-major hidden layout) with the
  per-token BN folded per neuron (weights expanded rather than breaking MFI);
- current-domain residual: ``_tok`` and ``_ch`` take the list [embedding currents, fuse
  currents (, FFN output)]; the importer composes each path into one synapse and adds the
  balancing delays where the paths' depths differ;
- readout: spatial mean + bias-free head as one dense map ``W (x) 1/HW`` from the last block.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convert.nir_builder import NIRBuilder, bn_affine, builder_for, to_numpy
from core.ops import conv2d


def _conv_dense(cb: Any, in_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray,
                                                                  tuple[int, ...]]:
    """ConvBN (no conv bias) as an exact dense map on the flattened input, BN folded:
    (weight [n_out, n_in], bias [n_out], out_shape)."""
    conv = cb.conv
    w = to_numpy(conv.weight)
    sc, sh = bn_affine(cb.bn)
    n = int(np.prod(in_shape))
    eye = np.eye(n).reshape(n, *in_shape)
    y = conv2d(eye, w * sc[:, None, None, None], tuple(conv.stride), tuple(conv.padding),
               int(conv.groups))
    out_shape = tuple(int(d) for d in y.shape[1:])
    hw = out_shape[1] * out_shape[2]
    return y.reshape(n, -1).T, np.repeat(sh, hw), out_shape


def _patch_cell(b: NIRBuilder, x: str, in_shape: tuple[int, int, int], pc: Any,
                prefix: str) -> list[str]:
    """Spiking patch encoding from population ``x`` (flattened ``in_shape``); returns the
    stage current as a list of linear nodes."""
    (d1, c1, out), (d2, c2, _), (d3, c3, _) = (_conv_dense(br, in_shape) for br in pc.branch)
    d12, c12, _ = _conv_dense(pc.mix12, out)
    d23, c23, _ = _conv_dense(pc.mix23, out)
    n1 = b.linear(x, weight=d1, bias=c1, name=f"{prefix}_pc_n1")
    sa = b.lif(n1, module=pc.lif_a, name=f"{prefix}_pc_a")
    n2 = b.linear(x, weight=d2, bias=c2, name=f"{prefix}_pc_n2")
    m12 = b.linear(sa, weight=d12, bias=c12, name=f"{prefix}_pc_m12")
    sb = b.lif([n2, m12], module=pc.lif_b, name=f"{prefix}_pc_b")
    z, zb = np.zeros_like(d12), np.zeros_like(c12)
    return [
        b.linear(x, weight=np.concatenate([d1, d2, d3 + d1]),
                 bias=np.concatenate([c1, c2, c3 + c1]), name=f"{prefix}_pc_x"),
        b.linear(sa, weight=np.concatenate([z, d12, z]), bias=np.concatenate([zb, c12, zb]),
                 name=f"{prefix}_pc_a_out"),
        b.linear(sb, weight=np.concatenate([z, z, d23]), bias=np.concatenate([zb, zb, c23]),
                 name=f"{prefix}_pc_b_out"),
    ]


def _token_mix(b: NIRBuilder, x: str, tm: Any, grid: tuple[int, int, int], name: str) -> str:
    """Linear map over H (axis 3) or W (axis 4) on the flattened (C, H, W) tensor."""
    c, hh, ww = grid
    m = to_numpy(tm.proj.weight)[:, :, 0, 0]
    bias = to_numpy(tm.proj.bias)
    sc, sh = bn_affine(tm.bn)
    ic = np.eye(c)
    if tm.axis == 3:  # out (c, g, w) <- in (c, h, w): M[g, h]
        w = np.einsum("gh,cd,vw->cgvdhw", m, ic, np.eye(ww))
        per = (slice(None), None)  # values indexed by g: broadcast [H, 1] over (C, H, W)
    else:  # out (c, h, v) <- in (c, h, w): M[v, w]
        w = np.einsum("vw,cd,gh->cgvdhw", m, ic, np.eye(hh))
        per = (None, slice(None))
    n = c * hh * ww

    def full(v: np.ndarray) -> np.ndarray:
        return np.broadcast_to(v[per], (hh, ww))[None].repeat(c, 0).reshape(-1)

    return b.linear(x, weight=w.reshape(n, n), bias=full(bias), affine=(full(sc), full(sh)),
                    name=name)


def _block(b: NIRBuilder, x: str, h: list[str], blk: Any, grid: tuple[int, int, int],
           prefix: str) -> str:
    c, hh, ww = grid
    hw = hh * ww
    if len(b.shape(x)) != 1:  # NIR's Affine takes a flat input
        x = b.flatten(x, name=f"{prefix}_in_flat")
    xh = b.lif(_token_mix(b, x, blk.mix_h, grid, f"{prefix}_mix_h"), module=blk.lif_h,
               name=f"{prefix}_h")
    xw = b.lif(_token_mix(b, x, blk.mix_w, grid, f"{prefix}_mix_w"), module=blk.lif_w,
               name=f"{prefix}_w")
    f = to_numpy(blk.fuse.weight)[:, :, 0, 0]
    sc, sh = bn_affine(blk.fuse_bn)
    fuse = []
    for k, (src, tag) in enumerate(((x, "x"), (xh, "h"), (xw, "w"))):
        part = np.kron(f[:, k * c:(k + 1) * c], np.eye(hw))
        shift = np.repeat(sh, hw) if k == 0 else np.zeros(c * hw)  # the BN shift once
        fuse.append(b.linear(src, weight=part, affine=(np.repeat(sc, hw), shift),
                             name=f"{prefix}_fuse_{tag}"))
    x1 = b.lif([*h, *fuse], module=blk.lif_tok, name=f"{prefix}_tok")
    # FFN per token; hidden neurons in token-major order (p, j) as the torch model computes it
    r = blk.fc1.out_features
    w1 = np.einsum("jc,pq->pjcq", to_numpy(blk.fc1.weight), np.eye(hw)).reshape(hw * r, c * hw)
    sc1, sh1 = bn_affine(blk.bn1)
    a1 = b.linear(x1, weight=w1, bias=np.tile(to_numpy(blk.fc1.bias), hw),
                  affine=(np.repeat(sc1, r), np.repeat(sh1, r)), name=f"{prefix}_fc1")
    hid = b.lif(a1, module=blk.lif_ffn, name=f"{prefix}_ffn")
    w2 = np.einsum("cj,pq->cpqj", to_numpy(blk.fc2.weight), np.eye(hw)).reshape(c * hw, hw * r)
    sc2, sh2 = bn_affine(blk.bn2)
    a2 = b.linear(hid, weight=w2, bias=np.repeat(to_numpy(blk.fc2.bias), hw),
                  affine=(np.tile(sc2, c), np.tile(sh2, c)), name=f"{prefix}_fc2")
    return b.lif([*h, *fuse, a2], module=blk.lif_ch, name=f"{prefix}_ch")


def export(model: Any, input_shape: tuple[int, ...]) -> NIRBuilder:
    """The model (eval mode) as a builder; ``input_shape`` is (C, H, W)."""
    b = builder_for("SpikingMLP", model, input_shape)
    x = "input"
    for i, (embed, lif, blocks) in enumerate(
            zip(model.embeds, model.embed_lifs, model.stages, strict=True)):
        grid = model.grids[i]
        if i == 0:
            conv = b.conv(x, embed.conv, bn=embed.bn, name="s0_embed_conv")
            x = b.lif(conv, module=lif, name="s0_embed")
            h = [b.flatten(conv, name="s0_embed_flat")]
        else:
            h = _patch_cell(b, x, model.grids[i - 1], embed, f"s{i}")
            x = b.lif(h, module=lif, name=f"s{i}_embed")
        for j, blk in enumerate(blocks):
            x = _block(b, x, h, blk, grid, f"s{i}b{j}")
    c, hh, ww = model.grids[-1]
    head = np.kron(to_numpy(model.head.weight), np.ones((1, hh * ww))) / (hh * ww)
    b.output(b.linear(x, weight=head, name="head"))
    return b
