"""Peak memory of a long run on torch_ref and event_sim: 1,000 vs 10,000 samples, with the
records streamed to disk in pieces (what every target command does now) and held whole (what
they did before: one run over every sample, then one write).

    .venv/bin/python benchmarks/memory.py
    .venv/bin/python benchmarks/memory.py --models fc_snn,conv_snn --samples 1000,10000 \\
        --targets torch_ref,event_sim --json memory.json

Each measurement is one fresh subprocess running the target's command line exactly as a user
does (``python -m targets.event_sim MODEL --input x.npy --labels y.npy --record out.npz
--record-state``) through ``core.cli.run_cli``; its peak resident set size is the kernel's
``ru_maxrss`` of that child (``os.wait4``), so nothing of this process is counted. "pieces" is
the command as shipped (``targets.cli.STREAM_CHUNK_DEFAULT`` samples per piece); "whole" sets
the piece size above the sample count, which is the old behaviour. Inputs: the digits
dataset's train split encoded as the graph records it, tiled to the sample count (the golden
models of tests/data; no download). Prints a markdown table (benchmarks/README.md, section
"Memory").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMMANDS = {"torch_ref": "targets.torch_ref", "event_sim": "targets.event_sim.__main__"}


def _child(argv: list[str]) -> int:
    """In the measured subprocess: set the piece size, run the target's command line."""
    import importlib

    import targets.cli as tcli
    from core.cli import run_cli

    target, piece, *cmd = argv
    tcli.STREAM_CHUNK_DEFAULT = int(piece)
    mod = importlib.import_module(COMMANDS[target])
    return run_cli(target, mod.main, cmd)


def _inputs(model: str, n: int, folder: Path) -> tuple[Path, Path]:
    """The digits train split encoded for ``model``'s golden graph, tiled to ``n`` samples."""
    from convert import load_graph
    from core.datasets import load_dataset
    from core.encoding import encode_as_recorded

    xp, yp = folder / f"{model}-{n}-x.npy", folder / f"{model}-{n}-y.npy"
    if not xp.exists():
        graph, _ = load_graph(str(ROOT / "tests" / "data" / f"{model}_digits.nir"))
        images, labels = load_dataset("digits", "train")
        reps = -(-n // len(images))
        idx = np.tile(np.arange(len(images)), reps)[:n]
        x = encode_as_recorded(graph.metadata, graph.timesteps, images[idx], first_index=0)
        np.save(xp, np.ascontiguousarray(x).astype(np.uint8))
        np.save(yp, labels[idx].astype(np.int64))
    return xp, yp


def _run_measured(cmd: list[str], env: dict) -> tuple[int, float, float, bytes, bytes]:
    """Run ``cmd``; return (exit code, peak RSS MiB, wall s, stdout, stderr)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        # ru_maxrss: KiB on Linux
        return proc.returncode, usage.ru_maxrss / 1024, wall, out.read(), err.read()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="fc_snn,conv_snn",
                    help="golden digits models of tests/data (default fc_snn,conv_snn)")
    ap.add_argument("--targets", default="torch_ref,event_sim")
    ap.add_argument("--samples", default="1000,10000")
    ap.add_argument("--modes", default="pieces,whole",
                    help="pieces: as shipped; whole: every sample in one run (the old way)")
    ap.add_argument("--json", default=None, metavar="out.json")
    args = ap.parse_args()
    from targets.cli import STREAM_CHUNK_DEFAULT

    rows = []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="neurodeploy-mem-") as tmp:
        folder = Path(tmp)
        for model in args.models.split(","):
            for target in args.targets.split(","):
                for n in (int(s) for s in args.samples.split(",")):
                    for mode in args.modes.split(","):
                        piece = STREAM_CHUNK_DEFAULT if mode == "pieces" else n + 1
                        xp, yp = _inputs(model, n, folder)
                        rec = folder / "rec.npz"
                        cmd = [sys.executable, __file__, "--child", target, str(piece),
                               str(ROOT / "tests" / "data" / f"{model}_digits.nir"),
                               "--input", str(xp), "--labels", str(yp), "--record", str(rec),
                               "--record-state", "--json"]
                        rc, peak, wall, out, err = _run_measured(cmd, env)
                        if rc != 0:
                            print(err.decode()[-2000:], file=sys.stderr)
                            return 1
                        summary = json.loads(out)
                        size = rec.stat().st_size / 2**20
                        rec.unlink()
                        rows.append({"model": model, "target": target, "samples": n,
                                     "mode": mode, "piece": min(piece, n),
                                     "peak_rss_mib": round(peak, 1), "wall_s": round(wall, 2),
                                     "record_mib": round(size, 1),
                                     "accuracy": summary["accuracy"]})
                        r = rows[-1]
                        print(f"{model:<10}{target:<11}{n:>7} {mode:<7}"
                              f"{r['peak_rss_mib']:>9.1f} MiB {r['wall_s']:>8.1f} s",
                              file=sys.stderr, flush=True)
    print("| model | target | samples | records | peak RSS (MiB) | wall (s) | record file (MiB) |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        how = (f"streamed, {r['piece']} per piece" if r["mode"] == "pieces"
               else "held whole")
        print(f"| {r['model']} | {r['target']} | {r['samples']} | {how} | "
              f"{r['peak_rss_mib']} | {r['wall_s']} | {r['record_mib']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": platform.platform(), "python": platform.python_version(),
             "cpus": os.cpu_count(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(_child(sys.argv[2:]))
    sys.exit(main())
