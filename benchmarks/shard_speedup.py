"""Speed-up of sharded evaluation (``--workers N``, targets/shard.py) over one process.

    .venv/bin/python benchmarks/shard_speedup.py                          # Lava, fc_snn golden
    .venv/bin/python benchmarks/shard_speedup.py --target event_sim \\
        --model tests/data/ds_resnet_digits.nir --samples 300 --workers 1,2,4 --json shard.json

Runs the target's command line (``targets/lava_sim.py`` or ``python -m targets.<target>``)
once per ``--workers`` setting on the same samples, each in a fresh subprocess, and reports
its wall time (everything a user waits for: start-up, the local dask cluster, the run, the
merge), samples/s and the speed-up over the first setting; it checks that every setting gives
the same accuracy, spike counts and synaptic events (the merged run is the single run).
Workers are processes: the speed-up is bounded by the free cores (the table's header prints
them with the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cmd(target: str) -> list[str]:
    if target == "lava":
        return [sys.executable, str(ROOT / "targets" / "lava_sim.py")]
    return [sys.executable, "-m", f"targets.{target}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="lava", choices=("lava", "event_sim", "torch_ref"))
    ap.add_argument("--model", default=str(ROOT / "tests" / "data" / "fc_snn_digits.nir"))
    ap.add_argument("--samples", type=int, default=297)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--json", default=None, metavar="out.json")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    rows = []
    for w in (int(s) for s in args.workers.split(",")):
        cmd = [*_cmd(args.target), args.model, "--samples", str(args.samples), "--json",
               "--no-progress", *(["--workers", str(w)] if w > 1 else [])]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            print(p.stderr[-2000:], file=sys.stderr)
            return 1
        s = json.loads(p.stdout)
        rows.append({"workers": w, "wall_s": wall, "samples": s["samples"],
                     "accuracy": s["accuracy"], "synaptic_events": s.get("synaptic_events"),
                     "spikes": {k: v["spikes"] for k, v in s["populations"].items()}})
    same = all((r["accuracy"], r["spikes"], r["synaptic_events"]) ==
               (rows[0]["accuracy"], rows[0]["spikes"], rows[0]["synaptic_events"])
               for r in rows)
    print(f"{args.target} on {Path(args.model).name}, {rows[0]['samples']} samples; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print("| workers | wall (s) | samples/s | speed-up |")
    print("| ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['workers']} | {r['wall_s']:.1f} | {r['samples'] / r['wall_s']:.2f} | "
              f"{rows[0]['wall_s'] / r['wall_s']:.2f} |")
    print("same records (accuracy, spikes, events):", "yes" if same else "NO")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "same": same}, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
