"""Train every model of the zoo on MNIST and Fashion-MNIST and record the results.

    python benchmarks/train_zoo.py --epochs 3 --out runs/zoo [--jobs 4] [--device cuda]

Each job is ``train.loop.train_model`` with the model's default configuration and seed 0, run in
its own process. Writes one checkpoint per job (optimizer state dropped: they are for export and
evaluation) and ``zoo.json`` with accuracy, epochs, wall time and hardware. docs/model-zoo.md is
written from that file by ``benchmarks/zoo_report.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

JOBS = [
    ("fc_snn", {}),
    ("conv_snn", {}),
    ("cml_net", {"order": "cml"}),
    ("cml_net", {"order": "original"}),
    ("ds_resnet", {}),
    ("spiking_mlp", {}),
]


def _job(model: str, extra: dict, dataset: str, epochs: int, out: str, device: str | None,
         threads: int) -> dict:
    import torch

    from train.checkpoint import save_checkpoint
    from train.loop import train_model

    torch.set_num_threads(threads)
    tag = "_".join([model, *(str(v) for v in extra.values()), dataset])
    t0 = time.perf_counter()
    ckpt = train_model(model, dataset, epochs, None, seed=0, config=extra or None,
                       progress=False, device=device, log=lambda s: print(f"[{tag}] {s}"))
    ckpt.pop("resume", None)
    path = Path(out) / f"{tag}.pt"
    save_checkpoint(path, ckpt)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    hw = torch.cuda.get_device_name(0) if dev.startswith("cuda") else platform.processor()
    return {"tag": tag, "model": model, "config_override": extra, "dataset": dataset,
            "epochs": epochs, "test_accuracy": ckpt["metrics"]["test_accuracy"],
            "val_accuracy": ckpt["metrics"]["val_accuracy"],
            "wall_time_s": time.perf_counter() - t0, "device": dev, "hardware": hw,
            "checkpoint": path.name, "threads": threads}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--datasets", default="mnist,fashion-mnist")
    ap.add_argument("--models", default=None, help="comma-separated subset of the zoo")
    ap.add_argument("--out", default="runs/zoo")
    ap.add_argument("--jobs", type=int, default=1, help="parallel training processes")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.models.split(",")) if args.models else None
    jobs = [(m, e, d) for d in args.datasets.split(",") for m, e in JOBS
            if wanted is None or m in wanted]
    threads = max(1, (os.cpu_count() or 2) // max(args.jobs, 1))
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futs = {pool.submit(_job, m, e, d, args.epochs, str(out), args.device, threads): (m, d)
                for m, e, d in jobs}
        for f in as_completed(futs):
            try:
                r = f.result()
            except Exception as e:  # one failed job must not lose the others
                m, d = futs[f]
                r = {"tag": f"{m}_{d}", "error": f"{type(e).__name__}: {e}"}
            print(json.dumps(r), flush=True)
            results.append(r)
            (out / "zoo.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
