"""Every command's ``--json`` prints the one envelope of docs/json.md (core.cli.json_envelope):
``schema``, ``command``, ``version``, ``warnings`` first, the command's own fields beside them.

Each command runs in this process on a tiny graph (the fc_snn digits golden, a few samples);
the trained checkpoint is made once, by ``python -m train`` itself (one epoch, 200 samples).
Lava runs in its own environment and takes ~20 s to start: its case is marked slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import ENVELOPE_KEYS, JSON_SCHEMA, json_envelope, package_version, run_cli

GOLDEN = "tests/data/fc_snn_digits.nir"


def _envelope(out: str, command: str) -> dict:
    """The one JSON object on stdout, checked against the envelope; returns it."""
    doc = json.loads(out)
    assert list(doc)[:4] == list(ENVELOPE_KEYS)
    assert doc["schema"] == JSON_SCHEMA == "neurodeploy/1"
    assert doc["command"] == command.removeprefix("python -m ")
    assert doc["version"] == package_version() and doc["version"] != ""
    assert isinstance(doc["warnings"], list) and all(isinstance(w, str) for w in doc["warnings"])
    assert len(doc) > 4  # the command's own fields are there too
    return doc


def _run(capsys, prog: str, main, argv: list[str]) -> dict:
    code = run_cli(prog, main, [str(a) for a in argv])
    cap = capsys.readouterr()
    assert code in (0, 1), cap.err  # 1: a MAC edge (mfi) or --strict; never bad input
    return _envelope(cap.out, prog)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A one-epoch fc_snn checkpoint on digits, its float NIR and its integer NIR."""
    from convert.quantize import main as quantize_main
    from convert.to_nir import main as to_nir_main
    from train.__main__ import main as train_main

    d = tmp_path_factory.mktemp("json")
    ckpt, fnir, qnir = d / "c.pt", d / "m.nir", d / "m.loihi.nir"
    assert train_main(["--model", "fc_snn", "--dataset", "digits", "--epochs", "1",
                       "--limit", "200", "--threads", "1", "-o", str(ckpt),
                       "--no-progress"]) == 0
    assert to_nir_main([str(ckpt), "-o", str(fnir)]) == 0
    assert quantize_main([str(fnir), "-o", str(qnir)]) == 0
    return {"ckpt": ckpt, "float": fnir, "int": qnir, "dir": d}


def test_envelope_layout() -> None:
    from dataclasses import dataclass

    @dataclass
    class Rep:
        cores: int
        warnings: list

    e = json_envelope(Rep(3, ["w1"]), command="x")
    assert e == {"schema": JSON_SCHEMA, "command": "x", "version": package_version(),
                 "warnings": ["w1"], "cores": 3}
    assert json_envelope([1, 2], command="x")["result"] == [1, 2]  # not a dict: under result
    assert json_envelope({"a": float("nan")}, command="x")["a"] is None  # strict JSON
    with pytest.raises(ValueError, match="envelope keys"):
        json_envelope({"version": 1}, command="x")


def test_train_json(capsys, tmp_path) -> None:
    from train.__main__ import main

    doc = _run(capsys, "python -m train", main,
               ["--model", "fc_snn", "--dataset", "digits", "--epochs", "1", "--limit", "100",
                "--threads", "1", "-o", tmp_path / "c.pt", "--json", "--no-progress"])
    assert doc["model"] == "fc_snn" and doc["checkpoint"] == str(tmp_path / "c.pt")


def test_convert_commands_json(capsys, trained) -> None:
    from convert.quantize import main as quantize_main
    from convert.to_nir import main as to_nir_main
    from convert.to_onnx import main as to_onnx_main

    d = trained["dir"]
    doc = _run(capsys, "convert.to_nir", to_nir_main,
               [trained["ckpt"], "-o", d / "again.nir", "--json"])
    assert doc["model"] == "fc_snn"
    doc = _run(capsys, "convert.quantize", quantize_main,
               [trained["float"], "-o", d / "again.loihi.nir", "--json"])
    assert "lif1" in doc["report"]["populations"]
    doc = _run(capsys, "convert.to_onnx", to_onnx_main,
               [trained["int"], "-o", d / "m.onnx", "--json"])
    assert Path(d / "m.onnx").is_file()


@pytest.mark.parametrize("prog, module", [
    ("torch_ref", "targets.torch_ref"),
    ("event_sim", "targets.event_sim.__main__"),
    ("onnx_rt", "targets.onnx_rt"),
])
def test_target_json(capsys, prog, module) -> None:
    import importlib

    main = importlib.import_module(module).main
    doc = _run(capsys, prog, main, [GOLDEN, "--samples", "3", "--json"])
    assert doc["samples"] == 3 and "lif1" in doc["populations"] and doc["plots"] == []


@pytest.mark.slow
def test_lava_sim_json(capsys) -> None:
    from targets.lava_sim import PROG, main

    doc = _run(capsys, PROG, main, [GOLDEN, "--samples", "2", "--json"])
    assert doc["samples"] == 2


def test_verify_mfi_report_json(capsys, tmp_path) -> None:
    from targets.mfi import main as mfi_main
    from targets.report.__main__ import main as report_main
    from targets.verify import main as verify_main

    doc = _run(capsys, "targets.verify", verify_main,
               [GOLDEN, "--targets", "torch_ref,event_sim", "--samples", "3", "--json"])
    assert "chip_report" in doc
    doc = _run(capsys, "targets.mfi", mfi_main, [GOLDEN, "--samples", "3", "--json"])
    assert doc["edges"]
    doc = _run(capsys, "targets.report", report_main,
               [GOLDEN, "--static-only", "--json"])
    assert doc["report"]["resources"]["cores"] >= 1


def test_finetune_json(capsys, tmp_path) -> None:
    import numpy as np

    from convert.finetune import PROG, main
    from core.datasets import load_dataset
    from core.encoding import encode

    images, labels = load_dataset("digits", "train")
    x = encode(images[:16], "direct", 4, seed=0, first_index=0)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels[:16])
    doc = _run(capsys, PROG, main, [GOLDEN, "--input", tmp_path / "x.npy", "--labels",
                                    tmp_path / "y.npy", "--epochs", "1", "-o",
                                    tmp_path / "ft.loihi.nir", "--json"])
    assert doc["output"] == str(tmp_path / "ft.loihi.nir")
