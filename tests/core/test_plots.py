"""core.plots: each picture is a whole PNG, written atomically; commands without --plot never
import matplotlib; a target command's and the certificate's --plot write what they list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.plots import bar_plot, divergence_plot, line_plot, rate_histograms, spike_rasters

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
GOLDEN = "tests/data/fc_snn_digits.nir"


def _is_png(p: Path) -> bool:
    return p.read_bytes()[:8] == PNG


def test_each_plot_writes_one_png_and_no_temp_file(tmp_path) -> None:
    rng = np.random.default_rng(0)
    a = {"lif1": rng.random((2, 5, 30)) < 0.3, "lif2": rng.random((2, 5, 4)) < 0.5}
    b = {k: v.copy() for k, v in a.items()}
    b["lif2"][1, 3, 2] ^= True
    paths = [
        spike_rasters(tmp_path / "r.png", a),
        rate_histograms(tmp_path / "h.png", a),
        line_plot(tmp_path / "l.png", {"val": ([1, 2], [0.5, 0.7])}, xlabel="epoch",
                  ylabel="accuracy", percent=True),
        bar_plot(tmp_path / "b.png", ["x", "y"], {"s": [1.0, 0.0]}, ylabel="ops", log=True),
        divergence_plot(tmp_path / "d.png", a, b, names=("torch_ref", "event_sim")),
    ]
    assert all(_is_png(p) for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png", "d.png", "h.png", "l.png",
                                                          "r.png"]


def test_commands_without_plot_never_import_matplotlib() -> None:
    code = ("import sys, targets.cli, targets.verify, targets.mfi, convert.quantize, "
            "train.__main__, targets.event_sim.__main__, targets.torch_ref, targets.onnx_rt; "
            "print('matplotlib' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_target_plot_flag_writes_raster_and_rates(capsys, tmp_path) -> None:
    from targets.event_sim.__main__ import main

    assert main([GOLDEN, "--samples", "3", "--plot", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out.splitlines()
    for name in ("raster.png", "rates.png"):
        assert f"plot written to {tmp_path / 'p' / name}" in out
        assert _is_png(tmp_path / "p" / name)


def test_mfi_static_plot_and_json_lists_it(capsys, tmp_path) -> None:
    from targets.mfi import main

    main([GOLDEN, "--static-only", "--plot", str(tmp_path), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["plots"] == [str(tmp_path / "ops.png")] and _is_png(tmp_path / "ops.png")


def test_plot_folder_that_is_a_file_is_refused_before_running(capsys, tmp_path) -> None:
    from core.cli import run_cli
    from targets.torch_ref import main

    f = tmp_path / "file"
    f.write_text("x")
    assert run_cli("torch_ref", main, [GOLDEN, "--plot", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file; give a folder" in err[0]


@pytest.mark.parametrize("flag_owner", ["convert.quantize", "python -m train"])
def test_plot_flag_in_help(flag_owner) -> None:
    mod = "convert.quantize" if flag_owner == "convert.quantize" else "train"
    r = subprocess.run([sys.executable, "-m", mod, "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "--plot DIR" in r.stdout
