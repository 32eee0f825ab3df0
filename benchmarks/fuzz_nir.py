"""Differential fuzzing of foreign NIR graphs (issue 8): generate ``--cases`` graphs with the
hypothesis generator of tests/fuzz/graphs.py, check each (refused in one line, or torch_ref ==
event_sim exactly and, where the quantization report bounds the error, within that bound of an
independent float simulation of the NIR equations), and print the tallies.

    .venv/bin/python benchmarks/fuzz_nir.py --cases 10000 --seed 0 [--json out.json]
        [--save-dir fuzz_failures]

The first failing case (traceback, disagreement, hang) is saved as ``<save-dir>/case.nir`` (the
file exactly as it was loaded, corruption included) with its inputs ``case_x.npy``. Exit 1 when
any case failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz.graphs import Case, Outcome, cases, check_case, reason  # noqa: E402

FAILURES = ("traceback", "disagreement", "hang")


def fuzz(n_cases: int, seed_: int, save_dir: Path, timeout_s: int = 20) -> dict:
    """Run ``n_cases`` generated cases; returns the tallies (see :func:`main`)."""
    tally: collections.Counter = collections.Counter()
    refused: collections.Counter = collections.Counter()
    ran: collections.Counter = collections.Counter()  # node type/feature -> graphs run with it
    failures: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="fuzz_nir_"))
    path = work / "case.nir"

    @seed(seed_)
    @settings(max_examples=n_cases, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(cases())
    def one(case: Case) -> None:
        out: Outcome = check_case(case, path, timeout_s)
        tally["cases"] += 1
        tally[out.kind] += 1
        if out.float_checked:
            tally["float_checked"] += 1
        if out.kind == "run":
            for kind in {type(n).__name__ for n in case.graph.nodes.values()}:
                ran[kind] += 1
            for feature in case.features:
                ran[feature] += 1
            tally["run_silent"] += out.extra["spikes"] == 0
            tally["run_overflow"] += out.extra["overflow"] > 0
            tally["run_warned"] += out.extra["warnings"] > 0
        if case.corrupt:
            tally[f"corrupted:{case.corrupt}"] += 1
        if out.kind == "refused":
            refused[reason(out.detail.replace(str(path), "FILE"))] += 1
        if out.kind in FAILURES:
            failures.append({"kind": out.kind, "detail": out.detail[-4000:]})
            if len(failures) == 1 and path.exists():
                save_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, save_dir / "case.nir")
                np.save(save_dir / "case_x.npy", case.x)

    t0 = time.time()
    one()
    shutil.rmtree(work, ignore_errors=True)
    return {"cases": tally["cases"], "run": tally["run"], "float_checked": tally["float_checked"],
            "run_without_spikes": tally["run_silent"], "run_with_overflow": tally["run_overflow"],
            "run_with_warnings": tally["run_warned"],
            "refused": tally["refused"], "unwritable": tally["unwritable"],
            "disagreements": tally["disagreement"], "tracebacks": tally["traceback"],
            "hangs": tally["hang"],
            "corrupted": {k.split(":", 1)[1]: v for k, v in tally.items()
                          if k.startswith("corrupted:")},
            "run_with": dict(sorted(ran.items())),
            "refused_by_reason": dict(refused.most_common()), "failures": failures[:5],
            "seconds": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    """Command line: print the tallies; exit 1 on any traceback, disagreement or hang."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the tallies here")
    ap.add_argument("--save-dir", type=Path, default=Path("fuzz_failures"))
    ap.add_argument("--timeout", type=int, default=20, help="seconds per case before a hang")
    args = ap.parse_args(argv)
    r = fuzz(args.cases, args.seed, args.save_dir, args.timeout)
    print(f"cases {r['cases']} ({r['seconds']} s): run {r['run']} (float-checked "
          f"{r['float_checked']}), refused {r['refused']}, unwritable by nir {r['unwritable']}, "
          f"disagreements {r['disagreements']}, tracebacks {r['tracebacks']}, hangs {r['hangs']}")
    print(f"of the graphs run: {r['run_with_warnings']} with quantization warnings, "
          f"{r['run_with_overflow']} with overflow counted (equal on both targets), "
          f"{r['run_without_spikes']} without any spike")
    print(f"corrupted files: {r['corrupted']}")
    print(f"graphs run, by node type / feature: {r['run_with']}")
    print("refused by reason:")
    for k, v in r["refused_by_reason"].items():
        print(f"  {v:6d}  {k}")
    for f in r["failures"]:
        print(f"--- {f['kind']}: {f['detail']}")
    if r["failures"]:
        print(f"first failing case saved as {args.save_dir / 'case.nir'} (+ case_x.npy)")
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    return 1 if r["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
