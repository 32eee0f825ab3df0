"""SLSSNN ablation: spatio-temporal conversion blocks (``block="stcb"``: integrate-and-fire with
the spike-train level gradient) vs a plain conv + LIF block (``block="conv"``: LIF beta 0.5, the
arctan surrogate through time) at equal size, trained, deployed and run on Lava.

For each dataset and seed the variants start from the *same* initial weights (identical
parameters, created in the same order after ``torch.manual_seed(seed)``: the LIF has none),
see the same mini-batches in the same order, and follow ``train.loop.train_model``'s recipe
(Adam, cosine schedule to 0, the model's ``TRAINING`` lr and batch size, direct encoding,
T = 4). Then each model is exported (``convert.to_nir.checkpoint_to_nir``), quantized with
bit-plane inputs (``convert.load_graph(..., input_bitplanes=True)``, the multiplication-free
deployment) and scored on the same test samples by ``torch_ref`` (deployed accuracy); the first
``--lava-samples`` of them also run on Lava, whose every record is compared with torch_ref's
(mismatching samples counted), and ``python -m convert.mfi --input-bitplanes`` gives the
certificate. ``--variants`` may add ``conv1`` (the conv + LIF block with a single, spatial tap:
the smallest plain block).

    python benchmarks/slssnn_ablation.py --dataset digits --epochs 20 --seeds 0,1,2
    python benchmarks/slssnn_ablation.py --dataset mnist --limit 5000 --test-limit 1000 \
        --epochs 2 --seeds 0,1 --lava-samples 100 --out slssnn_ablation.md
    python benchmarks/slssnn_ablation.py --dataset fashion-mnist --epochs 10 --device cuda \
        --published   # the paper-scale VGG config on a GPU (Lava and MFI stay on the CPU)

Prints a table (markdown with ``--out``, plus JSON next to it); means with standard errors
over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nir
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from convert import load_graph  # noqa: E402
from convert.to_nir import checkpoint_to_nir  # noqa: E402
from core.datasets import input_shape, load_dataset, num_classes  # noqa: E402
from core.encoding import encode, input_scale  # noqa: E402
from models.slssnn import PUBLISHED_CONFIG, SLSSNN  # noqa: E402
from targets import torch_ref  # noqa: E402
from targets.base import readout_scores  # noqa: E402
from train.loop import encode_indices, lr_at, model_input  # noqa: E402

VARIANTS = {"stcb": {"block": "stcb"}, "conv": {"block": "conv"},
            "conv1": {"block": "conv", "taps": 1}}
T = SLSSNN.TRAINING.timesteps


@torch.no_grad()
def float_accuracy(model, images, labels, batch_size: int = 250) -> float:
    device = next(model.parameters()).device
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        stop = min(start + batch_size, len(labels))
        enc = encode(images[start:stop], "direct", T)
        logits = model(model_input(enc, "direct").to(device))
        correct += int((logits.argmax(1).cpu().numpy() == labels[start:stop]).sum())
    return correct / len(labels)


def train(dataset: str, variant: str, seed: int, epochs: int, train_x, train_y, lr: float,
          batch_size: int, published: bool, device: str) -> SLSSNN:
    base = (dict(PUBLISHED_CONFIG, in_shape=[1, *input_shape(dataset)],
                 n_out=num_classes(dataset)) if published
            else SLSSNN.default_config(input_shape(dataset), num_classes(dataset)))
    cfg = {**base, **VARIANTS[variant]}
    torch.manual_seed(seed)
    model = SLSSNN(**cfg).to(device)
    model.config = cfg
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(train_y)
    steps = math.ceil(n / batch_size)
    total = max(epochs * steps, 1)
    model.train()
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        for step, start in enumerate(range(0, n, batch_size), start=epoch * steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(lr, "cosine", step, total)
            idx = order[start:start + batch_size]
            x = model_input(encode_indices(train_x, idx, "direct", T, 0), "direct").to(device)
            y = torch.from_numpy(np.asarray(train_y[idx])).to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval().cpu()


def deploy(model: SLSSNN, dataset: str, test_x, test_y, lava_samples: int, tmp: Path,
           bitplanes: bool = True) -> dict:
    ckpt = {"model": "slssnn", "config": model.config, "state_dict": model.state_dict(),
            "dataset": dataset, "timesteps": T, "metrics": {},
            "encoding": {"kind": "direct", "timesteps": T, "seed": 0,
                         "input_scale": input_scale("direct")}}
    path = tmp / "model.nir"
    nir.write(str(path), checkpoint_to_nir(ckpt))
    qg, _ = load_graph(path, input_bitplanes=bitplanes)
    x = encode(test_x, "direct", T)
    ref = torch_ref.run(qg, x)
    pred = readout_scores(qg, ref.readouts).argmax(1)
    out = {"deployed_accuracy": float((pred == test_y).mean())}
    if lava_samples:
        from targets import loihi

        n = min(lava_samples, len(test_y))
        lava = loihi.run(qg, x[:n])
        bad = np.zeros(n, dtype=bool)
        for kind in ("spikes", "readouts"):
            a, b = getattr(ref, kind), getattr(lava, kind)
            for k in a:
                diff = np.asarray(a[k][:n]) != np.asarray(b[k])
                bad |= diff.reshape(n, -1).any(axis=1)
        lava_pred = readout_scores(qg, lava.readouts).argmax(1)
        out.update(lava_samples=n, lava_mismatching_samples=int(bad.sum()),
                   lava_accuracy=float((lava_pred == test_y[:n]).mean()))
    mfi = subprocess.run([sys.executable, "-m", "convert.mfi", str(path), "--input-bitplanes",
                          "--samples", "100", "--json", "--no-progress"], cwd=ROOT,
                         capture_output=True, text=True)
    if mfi.stdout.strip():
        cert = json.loads(mfi.stdout)
        out.update(mfi=bool(cert["multiplication_free"]), mac_edges=len(cert["mac_edges"]),
                   acs_measured=float(cert["measured_per_sample"].get("ac", float("nan"))),
                   acs_static=float(cert["static_per_sample"].get("ac", float("nan"))))
    else:
        out.update(mfi=None, mfi_error=mfi.stderr.strip().splitlines()[-1:])
    return out


def mean_se(values: list[float]) -> str:
    v = 100 * np.asarray(values, dtype=float)
    if len(v) < 2:
        return f"{v.mean():.2f}"
    return f"{v.mean():.2f} ± {v.std(ddof=1) / math.sqrt(len(v)):.2f}"


def table(rows: list[dict]) -> str:
    lines = ["| dataset | variant | params | seeds | float acc. (%) | deployed acc. (%) "
             "| Lava acc. (%) | Lava mismatching samples | MFI (bit planes) | ACs / sample |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        for var in dict.fromkeys(r["variant"] for r in rows if r["dataset"] == ds):
            rs = [r for r in rows if r["dataset"] == ds and r["variant"] == var]
            lava = [r for r in rs if "lava_accuracy" in r]
            lava_acc = mean_se([r["lava_accuracy"] for r in lava]) if lava else "-"
            mism = (f"{sum(r['lava_mismatching_samples'] for r in lava)} of "
                    f"{sum(r['lava_samples'] for r in lava)}") if lava else "not run"
            mfi = {r.get("mfi") for r in rs}
            mfi_s = "yes" if mfi == {True} else ("no" if False in mfi else "?")
            acs = np.mean([r.get("acs_measured", float("nan")) for r in rs])
            lines.append(
                f"| {ds} ({rs[0]['train_samples']} / {rs[0]['test_samples']}) | {var} | "
                f"{rs[0]['params']:,} | {len(rs)} | {mean_se([r['float_accuracy'] for r in rs])} | "
                f"{mean_se([r['deployed_accuracy'] for r in rs])} | {lava_acc} | {mism} | "
                f"{mfi_s} | {acs:,.0f} |")
    paired = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        by = {(r["variant"], r["seed"]): r["float_accuracy"] for r in rows if r["dataset"] == ds}
        seeds = sorted({s for v, s in by if v == "stcb" and ("conv", s) in by})
        if seeds:
            d = [by[("stcb", s)] - by[("conv", s)] for s in seeds]
            paired.append(f"{ds}: stcb - conv (float, paired by seed) = {mean_se(d)} points "
                          f"over {len(seeds)} seed(s)")
    return "\n".join(lines + [""] + paired)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="digits", help="comma-separated: digits, mnist, "
                    "fashion-mnist")
    ap.add_argument("--variants", default="stcb,conv",
                    help=f"comma-separated: {', '.join(VARIANTS)}")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--limit", type=int, default=None, help="first N training images only")
    ap.add_argument("--test-limit", type=int, default=None, help="first N test images only")
    ap.add_argument("--lr", type=float, default=SLSSNN.TRAINING.lr)
    ap.add_argument("--batch-size", type=int, default=SLSSNN.TRAINING.batch_size)
    ap.add_argument("--lava-samples", type=int, default=100,
                    help="test samples also run on Lava (0: none)")
    ap.add_argument("--lava-seeds", default=None,
                    help="comma-separated seeds whose models run on Lava (default: all)")
    ap.add_argument("--published", action="store_true", help="the paper-scale config (GPU)")
    ap.add_argument("--graded-input", action="store_true",
                    help="deploy the pixels as one graded input (the first conv multiplies) "
                    "instead of bit planes for torch_ref and Lava: Lava runs an input conv as a "
                    "dense map, which for 8 bit planes of 28x28 is too large; the MFI column "
                    "stays the bit-plane certificate")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda")
    ap.add_argument("--out", default=None, help="write the table (markdown) and .json here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    lava_seeds = seeds if args.lava_seeds is None else [int(s) for s in
                                                        args.lava_seeds.split(",")]
    rows = []
    t0 = time.perf_counter()
    for ds in args.dataset.split(","):
        train_x, train_y = load_dataset(ds, "train")
        test_x, test_y = load_dataset(ds, "test")
        if args.limit:
            train_x, train_y = train_x[:args.limit], train_y[:args.limit]
        if args.test_limit:
            test_x, test_y = test_x[:args.test_limit], test_y[:args.test_limit]
        for seed in seeds:
            for var in args.variants.split(","):
                t1 = time.perf_counter()
                model = train(ds, var, seed, args.epochs, train_x, train_y, args.lr,
                              args.batch_size, args.published, args.device)
                row = {"dataset": ds, "variant": var, "seed": seed, "epochs": args.epochs,
                       "train_samples": len(train_y), "test_samples": len(test_y),
                       "params": sum(p.numel() for p in model.parameters()),
                       "float_accuracy": float_accuracy(model, test_x, test_y)}
                with tempfile.TemporaryDirectory() as tmp:
                    row.update(deploy(model, ds, test_x, test_y,
                                      args.lava_samples if seed in lava_seeds else 0, Path(tmp),
                                      bitplanes=not args.graded_input))
                row["input"] = "graded" if args.graded_input else "bit planes"
                row["wall_s"] = time.perf_counter() - t1
                rows.append(row)
                print(json.dumps(row), flush=True)
    text = table(rows)
    text += f"\n\nwall time {time.perf_counter() - t0:.0f} s; torch {torch.__version__}"
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
