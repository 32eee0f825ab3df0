"""The chip against each framework's own simulation, for every committed export in tests/data,
BEFORE (every population deployed with reset to zero, Loihi's stock LIF) and AFTER (deployed
with the reset mode of the framework's neuron, ``--reset``).

    .venv/bin/python benchmarks/reference_agreement.py [--targets torch_ref] [--json out.json]

For each ``tests/data/<framework>_<net>.nir`` with its ``_inputs.npy`` and ``_reference.npz``
(the framework's simulation recorded at export time), runs ``python -m targets.verify`` in
this process with ``--reference <framework>`` and the options that make the framework's NIR
importer simulate the network as it was trained (snnTorch's default reset, Sinabs without the
importer's membrane floor; the dt of the export) or as its importer builds it, once with
``--reset zero`` and once with the matching ``--reset`` (:data:`RUNS`). Prints one markdown
row per population: share of equal spike entries and samples with any difference, before ->
after, spike counts (framework / chip before / chip after), predictions (argmax of the output
summed over time) that agree with the framework's (the exports have no labels: seeded random
networks), and the causes verify attributed after. An export our importer or the
framework's refuses gets one row with the one-line reason. The table in docs/foreign-nir.md
("Reset modes: before and after") is this script's output.
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
# per framework: (label, reference options, the --reset that matches them). The options make
# each framework's importer simulate the network as it was trained (snnTorch's importer builds
# reset_mechanism="zero", reset_delay=False; sinabs.from_nir floors v at -threshold; Norse
# 1.1.0's exporter writes tau = dt / tau_inv: its importer needs dt = 1e-6 for a 1e-3 export).
RUNS: dict[str, list[tuple[str, list[str], str]]] = {
    "snntorch": [("as trained: reset_mechanism=subtract reset_delay=true",
                  ["reset_mechanism=subtract", "reset_delay=true"], "subtract_late")],
    "sinabs": [("as trained: min_v_mem=none", ["min_v_mem=none"], "multi"),
               ("sinabs.from_nir as is", [], "multi_floor")],
    "rockpool": [("as trained", [], "multi")],
    "spikingjelly": [("as trained", [], "zero")],
    "norse": [("as trained: dt=1e-6", ["dt=1e-6"], "zero")],
}


def run(stem: str, options: list[str], targets: str, reset: str) -> dict[str, Any]:
    """verify's JSON summary for one export, one option set and one ``--reset``, or
    ``{"refused": reason}``."""
    framework = stem.split("_")[0]
    meta = json.loads(str(np.load(DATA / f"{stem}_reference.npz")["meta"]))
    argv = [str(DATA / f"{stem}.nir"), "--input", str(DATA / f"{stem}_inputs.npy"),
            "--dt", str(meta["dt"]), "--targets", targets, "--reference", framework,
            "--reset", reset, "--json", "--no-progress"]
    for o in options:
        argv += ["--reference-option", o]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            verify.main(argv)
    except NeurodeployError as e:
        return {"refused": str(e)}
    return json.loads(out.getvalue())


def _share(p: dict[str, Any]) -> str:
    return f"{p['equal_share'] * 100:.2f} % ({p['samples_differing']}/{p['samples']})"


def _agree(s: dict[str, Any]) -> str:
    pred = s["reference"]["predictions"]
    return f"{pred['agree']}/{s['reference']['samples']}" if pred else "-"


def _cause(c: dict[str, Any], pop: str) -> str:
    """One cause's entries in population ``pop``; quantization with its split by rounding
    (verify's ``detail_populations``: checked on our float model, one rounding at a time)."""
    text = f"{c['cause'].split(' (')[0]}: {c['populations'][pop]}"
    split = (c.get("detail_populations") or {}).get(pop)
    if split:
        text += " (" + ", ".join(f"{label.split(' (')[0]} {n}" for label, n in
                                 split.items()) + ")"
    return text


def rows(stem: str, label: str, reset: str, before: dict[str, Any],
         after: dict[str, Any]) -> list[str]:
    """Markdown rows of one export and framework run, before and after."""
    if "refused" in before or "refused" in after:
        why = (before.get("refused") or after.get("refused"))[:120]
        return [f"| {stem} | {label} | `{reset}` | refused: {why} | | | | |"]
    out = []
    b_pops, a_pops = before["reference"]["populations"], after["reference"]["populations"]
    causes = after["reference"]["causes"]["causes"] if after["reference"]["causes"] else []
    for k, a in a_pops.items():
        b = b_pops[k]
        why = "; ".join(_cause(c, k) for c in causes if k in c["populations"]) or \
            "none: every spike equal"
        out.append(f"| {stem} | {label} | `{reset}` | `{k}` | {_share(b)} | {_share(a)} | "
                   f"{a['spikes_reference']} / {b['spikes_deployed']} / "
                   f"{a['spikes_deployed']} | {_agree(before)} -> {_agree(after)} | {why} |")
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the before/after table (and save every summary with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="torch_ref",
                    help="verify's --targets (the first is the chip compared)")
    ap.add_argument("--json", default=None, metavar="out.json", help="also save every summary")
    args = ap.parse_args(argv)
    stems = sorted(p.name[: -len("_reference.npz")] for p in DATA.glob("*_reference.npz"))
    print("| export | framework run | `--reset` after | population | before (reset zero): "
          "equal entries (samples differing) | after | spikes fw / chip before / after "
          "| predictions equal before -> after | causes after (entries) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    saved = {}
    for stem in stems:
        fw = stem.split("_")[0]
        for label, opts, reset in RUNS.get(fw, [("importer as is", [], "zero")]):
            before = run(stem, opts, args.targets, "zero")
            after = before if reset == "zero" else run(stem, opts, args.targets, reset)
            saved[f"{stem} / {label} / before"] = before
            saved[f"{stem} / {label} / after ({reset})"] = after
            print("\n".join(rows(stem, label, reset, before, after)), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(saved, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
