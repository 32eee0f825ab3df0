"""The chip against each framework's own simulation, for every committed export in tests/data.

    .venv/bin/python benchmarks/reference_agreement.py [--targets torch_ref] [--json out.json]

For each ``tests/data/<framework>_<net>.nir`` with its ``_inputs.npy`` and ``_reference.npz``
(the framework's simulation recorded at export time), runs ``python -m targets.verify`` in
this process with ``--reference <framework>`` twice: the framework's NIR importer as it is,
and with the options that make it simulate the network as it was trained (snnTorch's default
reset, Sinabs without the importer's membrane floor; the dt of the export). Prints one markdown
row per population: share of equal spike entries, samples with any difference, spike counts
(framework / chip), predictions that agree, and the causes verify attributed. An export our
importer or the framework's refuses gets one row with the one-line reason.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.errors import NeurodeployError  # noqa: E402
from targets import verify  # noqa: E402

DATA = ROOT / "tests" / "data"
# the options under which each framework's importer simulates the network as trained
# (Norse 1.1.0's exporter writes tau = dt / tau_inv: its importer needs dt = 1e-6 for a 1e-3
# export)
AS_TRAINED = {"snntorch": ["reset_mechanism=subtract", "reset_delay=true"],
              "sinabs": ["min_v_mem=none"], "norse": ["dt=1e-6"]}


def run(stem: str, options: list[str], targets: str) -> dict[str, Any]:
    """verify's JSON summary for one export and one option set, or ``{"refused": reason}``."""
    framework = stem.split("_")[0]
    meta = json.loads(str(np.load(DATA / f"{stem}_reference.npz")["meta"]))
    argv = [str(DATA / f"{stem}.nir"), "--input", str(DATA / f"{stem}_inputs.npy"),
            "--dt", str(meta["dt"]), "--targets", targets, "--reference", framework,
            "--json", "--no-progress"]
    for o in options:
        argv += ["--reference-option", o]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            verify.main(argv)
    except NeurodeployError as e:
        return {"refused": str(e)}
    return json.loads(out.getvalue())


def rows(stem: str, label: str, s: dict[str, Any]) -> list[str]:
    """Markdown rows of one run."""
    if "refused" in s:
        return [f"| {stem} | {label} | refused: {s['refused'][:120]} | | | | |"]
    rep = s["reference"]
    pred = rep["predictions"]
    agree = f"{pred['agree']}/{rep['samples']}" if pred else "-"
    out = []
    for k, p in rep["populations"].items():
        causes = "; ".join(f"{c['cause']}: {c['populations'][k]}"
                           for c in rep["causes"]["causes"] if k in c["populations"]) or "-"
        out.append(f"| {stem} | {label} | `{k}` {p['equal_share'] * 100:.2f} % | "
                   f"{p['samples_differing']}/{p['samples']} | "
                   f"{p['spikes_reference']} / {p['spikes_deployed']} | {agree} | {causes} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="torch_ref",
                    help="verify's --targets (the first is the chip compared)")
    ap.add_argument("--json", default=None, metavar="out.json", help="also save every summary")
    args = ap.parse_args(argv)
    stems = sorted(p.name[: -len("_reference.npz")] for p in DATA.glob("*_reference.npz"))
    print("| export | framework run | equal entries | samples differing | spikes fw / chip "
          "| predictions equal | causes (entries) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    saved = {}
    for stem in stems:
        fw = stem.split("_")[0]
        runs = {"importer as is": []}
        if fw in AS_TRAINED:
            runs["as trained: " + " ".join(AS_TRAINED[fw])] = AS_TRAINED[fw]
        for label, opts in runs.items():
            s = run(stem, opts, args.targets)
            saved[f"{stem} / {label}"] = s
            print("\n".join(rows(stem, label, s)))
    if args.json:
        Path(args.json).write_text(json.dumps(saved, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
