"""Chip-exact training across the model zoo: the columns of docs/model-zoo.md "Chip-exact
training" (issue 10 items 2-3, issue 12 item 2).

Per registry model (one process, seed 0): train the float model; deploy it (convert.to_nir ->
convert.quantize, the graded input, and with ``--bitplanes`` also the bit-plane input) and score
the deployed graph on the test split with torch_ref ("deployed before"); fine-tune the integer
graph chip-exact (``train.chip_exact``, from the float checkpoint) and score it again: the
accuracy training reports, and torch_ref's on the same samples (they must be equal); then run the
first ``--lava-samples`` test samples of the chip-exact graph on Lava: its accuracy, torch_ref's
on the same samples, and the number of differing spike/readout entries (must be 0). The cost of
the chip-exact pass is the mean chip-exact epoch time over the mean float epoch time, both with
their validation pass, measured in this process (a ratio, never an absolute time).

CPU, small (what docs/model-zoo.md shows; minutes per model on 2 cores)::

    python benchmarks/chip_exact_zoo.py --out runs/chip_zoo

GPU, published size (MNIST, full training split, full test split; Lava columns from this run
are filled where .venv-lava exists, else run --lava-only afterwards on a machine with Lava)::

    python benchmarks/chip_exact_zoo.py --device cuda --full --out runs/chip_zoo_full
    python benchmarks/chip_exact_zoo.py --lava-only runs/chip_zoo_full --lava-samples 100

Writes ``results.json``, one chip-exact checkpoint and integer NIR file per row, and prints the
Markdown table (``--markdown FILE`` writes it too).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ["fc_snn", "conv_snn", "cml_net", "ds_resnet", "spiking_mlp", "cml_spikformer"]


def _settings(args: argparse.Namespace) -> dict:
    if args.full:
        return {"dataset": args.dataset or "mnist", "limit": args.limit, "eval_limit": None,
                "epochs": args.epochs or 3, "chip_epochs": args.chip_epochs or 1,
                "batch": args.batch_size}
    return {"dataset": args.dataset or "digits", "limit": args.limit or 600,
            "eval_limit": None, "epochs": args.epochs or 3, "chip_epochs": args.chip_epochs or 1,
            "batch": args.batch_size}


def _score(graph, dataset: str, device: str, n: int | None = None):
    """torch_ref on the test split (first n samples): (accuracy, result, inputs, labels)."""
    from core.datasets import load_dataset
    from core.encoding import encode_as_recorded
    from targets import torch_ref
    from targets.cli import accuracy

    images, labels = load_dataset(dataset, "test")
    if n is not None:
        images, labels = images[:n], labels[:n]
    x = encode_as_recorded(graph.metadata, graph.timesteps, images)
    r = torch_ref.run(graph, x, device=device)
    return accuracy(graph, r, labels.astype(np.int64)), r, x, labels.astype(np.int64)


def _mean_epoch(history: list[dict], chip: bool) -> float:
    times = [h["epoch_time_s"] for h in history if bool(h.get("chip_exact")) == chip]
    return float(np.mean(times)) if times else float("nan")


def run_model(model: str, bitplanes: bool, s: dict, out: Path, device: str, log) -> dict:
    """One row: float, deployed before, chip-exact (training and torch_ref), cost ratio."""
    from convert import load_graph
    from models.checkpoint import save_checkpoint
    from train.chip_exact import integer_graph_of, train_chip_exact
    from train.loop import train_model

    tag = f"{model}_{s['dataset']}" + ("_bitplanes" if bitplanes else "")
    float_path = out / f"{model}_{s['dataset']}_float.pt"
    if float_path.exists():
        from models.checkpoint import load_checkpoint

        flt = load_checkpoint(float_path)
    else:
        flt = train_model(model, s["dataset"], s["epochs"], float_path, seed=0, limit=s["limit"],
                          eval_limit=s["eval_limit"], batch_size=s["batch"], progress=False,
                          device=device, log=lambda m: log(f"[{tag} float] {m}"))
    qg, _ = integer_graph_of(flt, bitplanes)
    before, _, _, _ = _score(qg, s["dataset"], device)
    ck_path = out / f"{tag}_chip.pt"
    t0 = time.perf_counter()
    chip = train_chip_exact(epochs=s["chip_epochs"], out_path=ck_path, resume=float_path,
                            input_bitplanes=bitplanes, limit=s["limit"],
                            batch_size=s["batch"], progress=False, device=device,
                            log=lambda m: log(f"[{tag} chip] {m}"), notice=log)
    chip_wall = time.perf_counter() - t0
    nir_path = out / f"{tag}_chip.nir"
    nir_path.write_bytes(chip["chip_exact"]["graph"].numpy().tobytes())
    graph, _ = load_graph(nir_path)
    t1 = time.perf_counter()
    ref_acc, _, _, _ = _score(graph, s["dataset"], device)
    ref_wall = time.perf_counter() - t1  # the whole test split through torch_ref (issue 12)
    save_checkpoint(ck_path, {k: v for k, v in chip.items() if k != "resume"})
    fe = _mean_epoch(flt["metrics"]["history"], False)
    ce = _mean_epoch(chip["metrics"]["history"], True)
    return {"model": model, "tag": tag, "bitplanes": bitplanes, "dataset": s["dataset"],
            "float_epochs": s["epochs"], "chip_epochs": s["chip_epochs"], "limit": s["limit"],
            "float": flt["metrics"]["test_accuracy"], "deployed_before": before,
            "chip_exact_training": chip["metrics"]["test_accuracy"],
            "chip_exact_torch_ref": ref_acc, "test_samples": chip["metrics"]["test_samples"],
            "float_epoch_s": fe, "chip_epoch_s": ce, "cost_ratio": ce / fe,
            "chip_wall_s": chip_wall, "torch_ref_test_s": ref_wall,
            "overflow": chip["chip_exact"]["overflow"],
            "nir": nir_path.name}


def run_lava(row: dict, out: Path, n: int, device: str) -> None:
    """Lava on the first n test samples of the row's chip-exact graph, beside torch_ref."""
    from convert import load_graph
    from targets import loihi
    from targets.cli import accuracy

    graph, _ = load_graph(out / row["nir"])
    ref_acc, ref, x, labels = _score(graph, row["dataset"], device, n)
    t0 = time.perf_counter()
    lava = loihi.run(graph, x)
    diff = sum(int(np.count_nonzero(np.asarray(ref.spikes[k]) != lava.spikes[k]))
               for k in ref.spikes)
    diff += sum(int(np.count_nonzero(np.asarray(ref.readouts[k]) != lava.readouts[k]))
                for k in ref.readouts)
    row.update({"lava": accuracy(graph, lava, labels), "lava_torch_ref": ref_acc,
                "lava_samples": len(labels), "lava_mismatches": diff,
                "lava_wall_s": time.perf_counter() - t0})


def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def markdown(rows: list[dict], meta: dict) -> str:
    """The table of docs/model-zoo.md's chip-exact section."""
    lines = [
        "| model | input | float | deployed before | chip-exact (training) | chip-exact "
        "(torch_ref) | Lava (samples) | Lava - torch_ref, same samples | spike mismatches "
        "| chip-exact epoch / float epoch | torch_ref, whole test split |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lava = (f"{_pct(r.get('lava'))} ({r['lava_samples']})" if "lava" in r else "-")
        delta = (f"{100 * (r['lava'] - r['lava_torch_ref']):.2f} pp" if "lava" in r else "-")
        lines.append(
            f"| {r['model']} | {'bit planes' if r['bitplanes'] else 'graded'} | "
            f"{_pct(r['float'])} | {_pct(r['deployed_before'])} | "
            f"{_pct(r['chip_exact_training'])} | {_pct(r['chip_exact_torch_ref'])} | {lava} | "
            f"{delta} | {r.get('lava_mismatches', '-')} | {r['cost_ratio']:.1f}x | "
            + (f"{r['torch_ref_test_s']:.1f} s |" if "torch_ref_test_s" in r else "- |"))
    lines.append("")
    lines.append(f"Settings: {meta['settings']}; device {meta['device']}; "
                 f"{meta['platform']}; test accuracies on {rows[0]['test_samples'] if rows else 0} "
                 "test samples (all of the split).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: all)")
    ap.add_argument("--out", default="runs/chip_zoo", help="folder for checkpoints and results")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (training and torch_ref)")
    ap.add_argument("--full", action="store_true",
                    help="MNIST, the whole training split (the GPU run); default: digits, "
                    "the first 600 training images")
    ap.add_argument("--dataset", default=None, help="override the dataset (digits, mnist, ...)")
    ap.add_argument("--limit", type=int, default=None, help="training samples (default: 600 "
                    "on digits, all with --full)")
    ap.add_argument("--epochs", type=int, default=None, help="float epochs (default 3)")
    ap.add_argument("--chip-epochs", type=int, default=None, help="chip-exact epochs (default 1)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the model's own")
    ap.add_argument("--bitplanes", action="store_true", help="also the bit-plane input rows")
    ap.add_argument("--lava-samples", type=int, default=100,
                    help="test samples run on Lava per row (0: no Lava) (default 100)")
    ap.add_argument("--lava-only", default=None, metavar="DIR",
                    help="fill the Lava columns of DIR/results.json (a run made elsewhere)")
    ap.add_argument("--markdown", default=None, help="also write the table to this file")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="start no further row after this many seconds (rows done so far are "
                    "in results.json after each row; for a device with a time budget)")
    args = ap.parse_args(argv)

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    if args.lava_only:
        out = Path(args.lava_only)
        data = json.loads((out / "results.json").read_text())
        for row in data["rows"]:
            run_lava(row, out, args.lava_samples, "cpu")
            log(f"{row['tag']}: Lava {row['lava']:.4f} on {row['lava_samples']}, torch_ref "
                f"{row['lava_torch_ref']:.4f}, {row['lava_mismatches']} mismatches")
    else:
        import torch

        s = _settings(args)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        data = {"rows": [], "meta": {
            "settings": (f"{s['dataset']}, {s['limit'] or 'all'} training samples, float "
                         f"{s['epochs']} epochs, chip-exact {s['chip_epochs']} epoch(s) from "
                         "the float checkpoint, seed 0"),
            "device": args.device, "torch_threads": torch.get_num_threads(),
            "platform": f"{platform.machine()}, {torch.get_num_threads()} torch threads"}}
        t_start = time.perf_counter()
        for model in args.models.split(","):
            for bp in ((False, True) if args.bitplanes else (False,)):
                if args.budget_s is not None and time.perf_counter() - t_start > args.budget_s:
                    log(f"--budget-s {args.budget_s:g} spent: {model} (bit planes {bp}) and "
                        "the rest not run")
                    break
                row = run_model(model, bp, s, out, args.device, log)
                if args.lava_samples:
                    try:
                        run_lava(row, out, args.lava_samples, args.device)
                    except Exception as e:  # no Lava environment here: say so in the row
                        row["lava_error"] = f"{type(e).__name__}: {e}"
                        log(f"{row['tag']}: Lava not run ({row['lava_error']})")
                data["rows"].append(row)
                log(json.dumps({k: v for k, v in row.items() if k != "overflow"}))
                (out / "results.json").write_text(json.dumps(data, indent=1))
    (out / "results.json").write_text(json.dumps(data, indent=1))
    table = markdown(data["rows"], data["meta"])
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
