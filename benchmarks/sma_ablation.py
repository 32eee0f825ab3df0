"""SMA / AZO ablation of ``models.sma_net.SMANet``: float, exact deployed form and Lava accuracy.

Variants (everything else identical; docs/models/sma_net.md):

- ``sma+azo``: the SMA block with attention zone-out (fraction 0.25) in training;
- ``sma``: the SMA block, no AZO;
- ``multiscale``: the same four branches summed with equal weights (SMA's attention off);
- ``conv``: one conv3x3-BN-LIF branch of the same width (no multiscale, no attention).

For each dataset and seed every variant starts from ``torch.manual_seed(seed)`` (``sma+azo``
and ``sma`` have identical parameters, hence identical initial weights), sees the same
mini-batches in the same order (``np.random.default_rng([seed, epoch])``, as
benchmarks/cml_vs_original.py) with Adam, a cosine schedule, direct encoding, T = 4.
Validation is skipped (nothing is selected on it). Scored on the test split (its first
``--test-limit`` images):

- ``float``: the trained float model (data-dependent attention);
- ``float static``: the float model in its deployed form (``use_static_attention``: running-mean
  channel/scale weights, time weight 1) -- equal to ``float`` for ``multiscale`` and ``conv``;
- ``deployed``: the exported, quantized integer graph (``convert.load_graph``) on torch_ref;
- ``lava``: the same graph on the Lava target for the first ``--lava-samples`` test images
  (``--lava-runs``: which runs, default the first seed's ``sma+azo`` per dataset), with every
  spike and readout record compared against torch_ref's on the same samples (mismatches).

    python benchmarks/sma_ablation.py --dataset digits --epochs 4 --seeds 0,1,2
    python benchmarks/sma_ablation.py --dataset mnist --limit 2000 --test-limit 500 --epochs 1
    python benchmarks/sma_ablation.py --dataset mnist --config published --device cuda \\
        --epochs 10 --lava-samples 0     # GPU: the published-size VGG (models/sma_net.py)

Prints a markdown table and a summary (mean +- standard error over seeds); ``--out`` writes
both, plus JSON next to it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nir
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert import load_graph  # noqa: E402
from convert.export import export_model  # noqa: E402
from convert.to_nir import graph_metadata  # noqa: E402
from core.datasets import DatasetError, input_shape, load_dataset, num_classes  # noqa: E402
from core.encoding import encode, encode_as_recorded, input_scale  # noqa: E402
from models.sma_net import PUBLISHED_CONFIG, SMANet  # noqa: E402
from targets import torch_ref  # noqa: E402
from targets.cli import readout_scores  # noqa: E402
from train.loop import encode_indices, lr_at, model_input  # noqa: E402

VARIANTS: dict[str, dict] = {
    "sma+azo": {"block": "sma", "azo": 0.25},
    "sma": {"block": "sma", "azo": 0.0},
    "multiscale": {"block": "multiscale", "azo": 0.0},
    "conv": {"block": "conv", "azo": 0.0},
}


@torch.no_grad()
def float_accuracy(model: SMANet, images: np.ndarray, labels: np.ndarray, timesteps: int,
                   batch_size: int = 250) -> float:
    """Test accuracy of the float model as it is (train mode restored afterwards)."""
    device = next(model.parameters()).device
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        stop = min(start + batch_size, len(labels))
        enc = encode(images[start:stop], "direct", timesteps, 0, first_index=start)
        logits = model(model_input(enc, "direct").to(device))
        correct += int((logits.argmax(1).cpu().numpy() == labels[start:stop]).sum())
    model.train()
    return correct / len(labels)


def deploy(model: SMANet, dataset: str, timesteps: int, path: Path, test_acc: float):
    """Export (static attention folded), write the float NIR to ``path``, quantize it."""
    model.eval()
    ckpt_like = {"model": "sma_net", "timesteps": timesteps, "dataset": dataset,
                 "encoding": {"kind": "direct", "input_scale": input_scale("direct"),
                              "seed": 0},
                 "metrics": {"test_accuracy": test_acc}}
    g = export_model(model.cpu(), "sma_net", (1, *input_shape(dataset)),
                     graph_metadata(ckpt_like))
    nir.write(str(path), g)
    graph, _ = load_graph(path)
    return graph


def same_records(a, b) -> int:
    """Number of spike/readout records that differ between two RunResults."""
    bad = sum(not np.array_equal(a.spikes[k], b.spikes[k]) for k in a.spikes)
    return bad + sum(not np.array_equal(a.readouts[k], b.readouts[k]) for k in a.readouts)


def run_one(dataset: str, variant: str, seed: int, args: argparse.Namespace,
            with_lava: bool) -> dict:
    t0 = time.perf_counter()
    train_x, train_y = load_dataset(dataset, "train")
    test_x, test_y = load_dataset(dataset, "test")
    if args.limit:
        train_x, train_y = train_x[: args.limit], train_y[: args.limit]
    if args.test_limit:
        test_x, test_y = test_x[: args.test_limit], test_y[: args.test_limit]
    base = (dict(PUBLISHED_CONFIG, in_shape=[1, *input_shape(dataset)],
                 n_out=num_classes(dataset)) if args.config == "published"
            else SMANet.default_config(input_shape(dataset), num_classes(dataset)))
    cfg = {**base, **VARIANTS[variant]}
    torch.manual_seed(seed)
    model = SMANet(**cfg).to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n, t = len(train_y), args.timesteps
    steps_per_epoch = math.ceil(n / args.batch_size)
    total = max(args.epochs * steps_per_epoch, 1)
    model.train()
    loss = torch.tensor(float("nan"))
    for epoch in range(args.epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        for step, start in enumerate(range(0, n, args.batch_size),
                                     start=epoch * steps_per_epoch):
            for g in opt.param_groups:
                g["lr"] = lr_at(args.lr, "cosine", step, total)
            idx = order[start : start + args.batch_size]
            x = model_input(encode_indices(train_x, idx, "direct", t, 0), "direct")
            y = torch.from_numpy(np.asarray(train_y[idx])).to(args.device)
            loss = F.cross_entropy(model(x.to(args.device)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    t_train = time.perf_counter() - t0
    acc = float_accuracy(model, test_x, test_y, t)
    acc_static = float_accuracy(model.use_static_attention(True), test_x, test_y, t)
    model.use_static_attention(False)
    with tempfile.TemporaryDirectory() as tmp:
        graph = deploy(model, dataset, t, Path(tmp) / "m.nir", acc)
    x = encode_as_recorded(graph.metadata, graph.timesteps, test_x)
    ref = torch_ref.run(graph, x, device=args.device)  # the integer model, batched
    dep = float(np.mean(np.argmax(readout_scores(graph, ref.readouts), 1) == test_y))
    row = {"dataset": dataset, "variant": variant, "seed": seed, "epochs": args.epochs,
           "train_samples": n, "test_samples": len(test_y), "train_loss": float(loss.item()),
           "float": acc, "float_static": acc_static, "deployed": dep,
           "lava": None, "lava_samples": 0, "lava_mismatched_records": None,
           "train_time_s": t_train}
    if with_lava and args.lava_samples:
        from targets import loihi

        m = min(args.lava_samples, len(test_y))
        lv = loihi.run(graph, x[:m])
        tr = torch_ref.run(graph, x[:m])
        row["lava"] = float(np.mean(np.argmax(readout_scores(graph, lv.readouts), 1)
                                    == test_y[:m]))
        row["lava_samples"] = m
        row["lava_mismatched_records"] = same_records(lv, tr)
    row["wall_time_s"] = time.perf_counter() - t0
    return row


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def _mean_se(vals: list[float]) -> str:
    a = 100 * np.asarray(vals, dtype=float)
    se = a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else float("nan")
    return f"{a.mean():.2f} ± {se:.2f}" if len(a) > 1 else f"{a.mean():.2f}"


def table(rows: list[dict]) -> str:
    """Per-run rows, then per dataset and variant mean ± standard error over seeds."""
    lines = ["| dataset | variant | seed | train / test | float | float static | deployed "
             "| Lava (samples, mismatched records) | wall |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lava = ("-" if r["lava"] is None else
                f"{_pct(r['lava'])} ({r['lava_samples']}, {r['lava_mismatched_records']})")
        lines.append(f"| {r['dataset']} | {r['variant']} | {r['seed']} | {r['train_samples']} / "
                     f"{r['test_samples']} | {_pct(r['float'])} | {_pct(r['float_static'])} | "
                     f"{_pct(r['deployed'])} | {lava} | {r['wall_time_s']:.0f} s |")
    lines += ["", "| dataset | variant | seeds | float | float static | deployed |",
              "|---|---|---|---|---|---|"]
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        for v in VARIANTS:
            rs = [r for r in rows if r["dataset"] == ds and r["variant"] == v]
            if rs:
                lines.append(f"| {ds} | {v} | {len(rs)} | "
                             + " | ".join(_mean_se([r[k] for r in rs])
                                          for k in ("float", "float_static", "deployed"))
                             + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="digits", help="comma-separated: digits, mnist, ...")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated subset of {', '.join(VARIANTS)}")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--limit", type=int, default=None, help="first N training images only")
    ap.add_argument("--test-limit", type=int, default=None, help="first N test images only")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-3, help="(SMANet.TRAINING's)")
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--config", choices=("small", "published"), default="small",
                    help="small: SMANet.default_config; published: PUBLISHED_CONFIG (GPU)")
    ap.add_argument("--lava-samples", type=int, default=100,
                    help="test samples run on Lava (0: none)")
    ap.add_argument("--lava-runs", default="first",
                    help="'first' (first seed's first variant per dataset) or 'all'")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda")
    ap.add_argument("--out", default=None, help="write the table (markdown) and .json here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"sma_ablation: unknown variant(s) {unknown}; valid: {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        for ds in args.dataset.split(","):
            for seed in seeds:
                for v in variants:
                    lava = args.lava_runs == "all" or (seed == seeds[0] and v == variants[0])
                    r = run_one(ds, v, seed, args, lava)
                    rows.append(r)
                    print(f"{ds} {v} seed {seed}: float {_pct(r['float'])}, static "
                          f"{_pct(r['float_static'])}, deployed {_pct(r['deployed'])}, lava "
                          f"{_pct(r['lava'])} ({r['lava_mismatched_records']} mismatched) "
                          f"({r['wall_time_s']:.0f} s)", file=sys.stderr, flush=True)
    except DatasetError as e:
        print(f"sma_ablation: {e}", file=sys.stderr)
        return 2
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    hw = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    text = table(rows) + f"\n\ntotal wall time {total:.0f} s, CPU time {cpu:.0f} s; {hw}\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(
            {"args": vars(args), "rows": rows, "hardware": hw, "total_wall_time_s": total,
             "total_cpu_time_s": cpu}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
