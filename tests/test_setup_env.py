"""The environments that `.ci/setup-env` builds, and how it finds interpreters.

These check the real thing: the venvs in the repository root (made by `make env` / `make test`)
and the script itself. Each check can fail: a wrong torch, torch in the Lava env, an interpreter
search that stops at a refusing pyenv shim, pytest's "no tests" not failing `make test`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / ".ci" / "setup-env"
MAIN_PY = ROOT / ".venv" / "bin" / "python"
LAVA_PY = ROOT / ".venv-lava" / "bin" / "python"


def run(cmd, env=None, timeout=120):
    return subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def check_report(env=None):
    """Runs `setup-env --check`; returns (exit code, {key: value}, stderr)."""
    res = run(["bash", str(SETUP), "--check"], env=env)
    report = {}
    for line in res.stdout.splitlines():
        key, _, value = line.partition(": ")
        report[key] = value
    return res.returncode, report, res.stderr


def venv_python(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} missing: run `make env`")
    return path


def test_check_finds_both_interpreters_and_fresh_stamps():
    rc, report, err = check_report()
    assert rc == 0, err
    for ver in ("3.11", "3.10"):
        value = report[f"python{ver}"]
        path, _, version = value.partition(" (")
        assert Path(path).is_absolute() and os.access(path, os.X_OK), value
        assert version.startswith(ver + "."), value
    # `make test` runs setup-env first; stale here means pyproject.toml or the script changed
    # since, and `make env` has not been run.
    for venv in (".venv", ".venv-lava"):
        assert report[venv] == "ok", f"{venv} is {report[venv]}: run `make env`"


def _real_python310() -> str:
    rc, report, err = check_report()
    path = report.get("python3.10", "").partition(" (")[0]
    if not path:
        pytest.fail(f"no Python 3.10 found: {err}")
    return path


def test_refusing_shim_is_skipped_for_pyenv_install_folder(tmp_path):
    """A `python3.10` on PATH that refuses to run (as a pyenv shim does) must not stop the search:
    the interpreter under $PYENV_ROOT/versions/3.10.*/bin/python is found instead."""
    real = _real_python310()
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / "python3.10"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.10: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    version_bin = tmp_path / "pyenv" / "versions" / "3.10.99" / "bin"
    version_bin.mkdir(parents=True)
    (version_bin / "python").symlink_to(real)
    env = {
        "PATH": f"{shims}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYENV_ROOT": str(tmp_path / "pyenv"),
    }
    rc, report, err = check_report(env)
    assert report["python3.10"].startswith(str(version_bin / "python") + " (3.10."), (report, err)


@pytest.mark.skipif(
    any(Path(p).exists() for p in ("/usr/bin/python3.10", "/usr/local/bin/python3.10")),
    reason="a system Python 3.10 exists, so it cannot be hidden",
)
def test_missing_python310_is_one_clear_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    rc, report, err = check_report(env)
    assert rc == 1
    assert report["python3.10"] == "not found"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Python 3.10 not found" in lines[0] and "pyenv install 3.10" in lines[0], err


def test_bad_explicit_interpreter_is_refused(tmp_path):
    env = dict(os.environ, NEURODEPLOY_PYTHON310=str(tmp_path / "python3.10"))
    rc, report, err = check_report(env)
    assert rc == 1
    assert "NEURODEPLOY_PYTHON310" in err


MAIN_FACTS = """
import importlib, importlib.metadata as md, json
facts = {"missing": []}
for mod in ("numpy", "nir", "h5py", "tqdm", "sklearn", "matplotlib", "scipy", "pytest", "mnist"):
    try:
        importlib.import_module(mod)
    except ImportError as e:
        facts["missing"].append(f"{mod}: {e}")
import torch
facts["torch"] = torch.__version__
facts["cuda"] = torch.version.cuda
facts["cuda_pkgs"] = sorted(
    d.metadata["Name"] for d in md.distributions()
    if (d.metadata["Name"] or "").lower().startswith(("nvidia-", "triton"))
)
print(json.dumps(facts))
"""


@pytest.fixture(scope="module")
def main_facts():
    res = run([str(venv_python(MAIN_PY)), "-c", MAIN_FACTS])
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])


def test_main_venv_has_cpu_torch_2_13_0_and_no_cuda(main_facts):
    assert main_facts["torch"].startswith("2.13.0"), main_facts
    assert main_facts["cuda"] is None, f"torch built for CUDA {main_facts['cuda']}"
    assert main_facts["cuda_pkgs"] == [], main_facts


def test_main_venv_has_the_tools_and_mnist(main_facts):
    assert main_facts["missing"] == [], main_facts
    assert (ROOT / ".venv" / "bin" / "ruff").exists()


def test_lava_venv_has_lava_and_no_torch():
    py = venv_python(LAVA_PY)
    res = run(
        [
            str(py),
            "-c",
            "import sys, importlib.util, importlib.metadata as md\n"
            "print('%d.%d' % sys.version_info[:2])\n"
            "print(importlib.util.find_spec('torch'))\n"
            "print(md.version('lava-nc'))\n"
            "from lava.proc.dense.process import Dense\n"
            "from lava.magma.core.run_configs import Loihi2SimCfg\n"
            "import nir, h5py, mnist\n",
        ]
    )
    assert res.returncode == 0, res.stderr
    version, torch_spec, lava = res.stdout.split("\n")[:3]
    assert version == "3.10"
    assert torch_spec == "None", f".venv-lava can import torch: {torch_spec}"
    assert lava == "0.10.0"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_pytest_fails_when_pytest_runs_no_tests():
    """pytest's exit code 5 (no tests ran) must make `make test` fail, with a clear message.
    (`make test` is `lint` + `pytest`; `-o env` skips the setup step, checked above.)"""
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)
    env.pop("MAKELEVEL", None)
    res = run(
        [
            "make",
            "--no-print-directory",
            "-o",
            "env",
            "pytest",
            "PYTEST_ARGS=tests/test_setup_env.py -k no_test_has_this_name -p no:cacheprovider",
        ],
        env=env,
        timeout=300,
    )
    assert res.returncode != 0, res.stdout + res.stderr
    assert "pytest ran no tests" in res.stderr, res.stdout + res.stderr
