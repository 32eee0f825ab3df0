"""CML (max pool of currents, before the LIF) vs the original order (max pool of spikes, after
the LIF): test accuracy of ``models.cml_net.CMLNet`` with identical everything else.

For each dataset and seed both orders start from the *same* initial weights (the two orders
have the same parameters, created in the same order after ``torch.manual_seed(seed)``), see the
same mini-batches in the same order and use the training recipe of ``train.loop.train_model``
(Adam, lr 1e-3, cosine schedule to 0, batch 128, direct encoding, T = 4). Validation is skipped
(nothing is selected on it); the test split (or its first ``--test-limit`` images) is scored
as ``train.loop.evaluate`` does.

    python benchmarks/cml_vs_original.py --dataset mnist --epochs 1
    python benchmarks/cml_vs_original.py --dataset mnist,fashion-mnist --limit 10000 \
        --test-limit 2000 --seeds 0,1 --out cml_vs_original.md

Prints a table (and writes it as markdown with ``--out``, plus JSON next to it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.datasets import DatasetError, input_shape, load_dataset, num_classes  # noqa: E402
from core.encoding import encode  # noqa: E402
from models.cml_net import CMLNet  # noqa: E402
from train.loop import encode_indices, lr_at, model_input  # noqa: E402

ORDERS = ("cml", "original")


@torch.no_grad()
def accuracy(model, images, labels, timesteps: int, batch_size: int = 500) -> float:
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


def train_one(dataset: str, order: str, seed: int, epochs: int, limit: int | None,
              test_limit: int | None, batch_size: int, lr: float, timesteps: int,
              device: str = "cpu") -> dict:
    t0 = time.perf_counter()
    train_x, train_y = load_dataset(dataset, "train")
    test_x, test_y = load_dataset(dataset, "test")
    if limit:
        train_x, train_y = train_x[:limit], train_y[:limit]
    if test_limit:
        test_x, test_y = test_x[:test_limit], test_y[:test_limit]
    cfg = {**CMLNet.default_config(input_shape(dataset), num_classes(dataset)), "order": order}
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    model = CMLNet(**cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(train_y)
    steps_per_epoch = math.ceil(n / batch_size)
    total = max(epochs * steps_per_epoch, 1)
    history = []
    model.train()
    for epoch in range(epochs):
        order_idx = np.random.default_rng([seed, epoch]).permutation(n)
        enc_seed = 1_000_003 * (seed + 1) + epoch  # as train.loop (unused by direct encoding)
        loss_sum, seen = 0.0, 0
        for step, start in enumerate(range(0, n, batch_size), start=epoch * steps_per_epoch):
            for g in opt.param_groups:
                g["lr"] = lr_at(lr, "cosine", step, total)
            idx = order_idx[start : start + batch_size]
            x = model_input(encode_indices(train_x, idx, "direct", timesteps,
                                                      enc_seed), "direct").to(device)
            y = torch.from_numpy(np.asarray(train_y[idx])).to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
        history.append(loss_sum / max(seen, 1))
    t_train = time.perf_counter() - t0
    acc = accuracy(model, test_x, test_y, timesteps)
    return {
        "dataset": dataset, "order": order, "seed": seed, "epochs": epochs,
        "train_samples": n, "test_samples": len(test_y), "test_accuracy": acc,
        "train_loss": history[-1] if history else float("nan"),
        "train_time_s": t_train, "wall_time_s": time.perf_counter() - t0,
        "device": str(device),
    }


def table(rows: list[dict]) -> str:
    head = ("| dataset | order | seed | epochs | train / test samples | final train loss "
            "| test accuracy | wall time |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['order']} | {r['seed']} | {r['epochs']} | "
            f"{r['train_samples']} / {r['test_samples']} | {r['train_loss']:.4f} | "
            f"{100 * r['test_accuracy']:.2f} % | {r['wall_time_s']:.0f} s |"
        )
    summary = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        accs = {o: [r["test_accuracy"] for r in rows if r["dataset"] == ds and r["order"] == o]
                for o in ORDERS}
        if all(accs.values()):
            m = {o: 100 * float(np.mean(a)) for o, a in accs.items()}
            diffs = [100 * (c - o) for c, o in zip(accs["cml"], accs["original"], strict=True)]
            summary.append(
                f"{ds}: cml {m['cml']:.2f} %, original {m['original']:.2f} % "
                f"(mean over {len(accs['cml'])} seed(s)); cml - original per seed: "
                + ", ".join(f"{d:+.2f}" for d in diffs) + " points"
            )
    return "\n".join(lines + [""] + summary)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist",
                    help="comma-separated: mnist, fashion-mnist, digits")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--limit", type=int, default=None, help="first N training images only")
    ap.add_argument("--test-limit", type=int, default=None, help="first N test images only")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    ap.add_argument("--out", default=None, help="write the table (markdown) and .json here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        for ds in args.dataset.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                for order in ORDERS:
                    r = train_one(ds, order, seed, args.epochs, args.limit, args.test_limit,
                                  args.batch_size, args.lr, args.timesteps, args.device)
                    rows.append(r)
                    print(f"{ds} {order} seed {seed}: test acc {100 * r['test_accuracy']:.2f} % "
                          f"({r['wall_time_s']:.0f} s)", file=sys.stderr, flush=True)
    except DatasetError as e:
        print(f"cml_vs_original: {e}", file=sys.stderr)
        return 2
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    hw = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    text = table(rows) + f"\n\ntotal wall time {total:.0f} s, CPU time {cpu:.0f} s; {hw}\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.write_text(text)
        meta = {"rows": rows, "hardware": hw, "total_wall_time_s": total,
                "total_cpu_time_s": cpu}
        out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
