"""Regenerate the golden models and spike hashes in tests/data/ (run from the repo root).

    .venv/bin/python tests/data/make_golden.py [--rehash] [--only=cml_net,ds_resnet]

Only rerun this for a reason you state in the commit message: the hashes pin the arithmetic,
so a changed hash means every target's spikes changed.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import nir

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from convert.to_nir import checkpoint_to_nir  # noqa: E402
from targets import torch_ref  # noqa: E402
from tests.golden import SAMPLES, golden_inputs, record_hashes  # noqa: E402
from train.loop import train_model  # noqa: E402

DATA = Path(__file__).resolve().parent
def _tiny(model: str) -> dict | None:
    """Small versions of the seed architectures, so the regression stays fast on 2 cores."""
    if model == "ds_resnet":
        from models.ds_resnet import tiny_config

        return tiny_config()
    if model == "spiking_mlp":
        from models.spiking_mlp import tiny_config

        return tiny_config()
    if model == "cml_net":
        return {"channels": [4, 8, 8]}
    if model == "slssnn":
        from models.slssnn import tiny_config

        return tiny_config()
    if model == "sma_net":
        from models.sma_net import tiny_config

        return tiny_config()
    return None


MODELS = {
    "fc_snn": dict(epochs=8, lr=5e-3),
    "conv_snn": dict(epochs=8, lr=5e-3),
    "cml_net": dict(epochs=4, lr=5e-3),
    "ds_resnet": dict(epochs=4, lr=5e-3),
    "spiking_mlp": dict(epochs=4, lr=1e-2),
    "slssnn": dict(epochs=4, lr=5e-3),
    "sma_net": dict(epochs=4, lr=5e-3),
}


def main() -> None:
    """``--rehash``: keep the committed models, recompute only the hashes (for a deliberate
    change of quantization or arithmetic, named in the commit message)."""
    from convert import load_graph

    rehash = "--rehash" in sys.argv[1:]
    only = next((a.split("=", 1)[1].split(",") for a in sys.argv[1:]
                 if a.startswith("--only=")), None)
    old = json.loads((DATA / "golden_hashes.json").read_text())
    hashes = dict(old) if only else {}
    for name, kw in MODELS.items():
        if only and name not in only:
            continue
        path = DATA / f"{name}_digits.nir"
        if rehash:
            acc = old[path.name]["float_test_accuracy"]
        else:
            with tempfile.TemporaryDirectory() as tmp:
                ckpt = train_model(name, "digits", kw["epochs"], Path(tmp) / "c.pt",
                                   lr=kw["lr"], batch_size=64, seed=0, progress=False,
                                   config=_tiny(name))
            nir.write(str(path), checkpoint_to_nir(ckpt))
            acc = ckpt["metrics"]["test_accuracy"]
        graph, _ = load_graph(path)
        result = torch_ref.run(graph, golden_inputs(graph))
        hashes[path.name] = {"samples": SAMPLES, "records": record_hashes(result),
                             "float_test_accuracy": acc}
        print(name, hashes[path.name])
    (DATA / "golden_hashes.json").write_text(json.dumps(hashes, indent=2) + "\n")


if __name__ == "__main__":
    main()
