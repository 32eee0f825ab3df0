"""netx files on Lava: our Lava target on a file in slayer's layout, and lava-dl's OWN
``netx.hdf5.Network`` on a file we wrote, both spike-equal to torch_ref (docs/netx.md)."""

import numpy as np
import pytest

from core.netx_io import read_netx, write_netx
from targets import loihi, torch_ref
from targets.netx_check import netx_available, run_netx
from tests.core.test_netx_io import _tiny_graph, slayer_file, spikes


def test_slayer_file_on_lava_equals_torch_ref(tmp_path):
    rng = np.random.default_rng(11)
    g = read_netx(slayer_file(tmp_path / "net.net", rng, delay=np.full(144, 2)), timesteps=6)
    x = spikes(rng, n=2, t=6)
    r, lv = torch_ref.run(g, x), loihi.run(g, x)
    assert all(np.asarray(r.spikes[k]).any() for k in r.spikes)
    for k in r.spikes:
        np.testing.assert_array_equal(np.asarray(r.spikes[k]), np.asarray(lv.spikes[k]))


@pytest.mark.skipif(not netx_available(),
                    reason="lava-dl not installed in .venv-lava (.ci/setup-env installs it)")
def test_lava_dl_netx_runs_our_export_spike_equal(tmp_path):
    rng = np.random.default_rng(12)
    g = _tiny_graph(rng)
    write_netx(g, tmp_path / "g.net")
    x = spikes(rng, n=3, t=g.timesteps, shape=(1, 8, 8))
    r = torch_ref.run(g, x)
    got = run_netx(read_netx(tmp_path / "g.net", timesteps=g.timesteps), tmp_path / "g.net", x)
    assert all(np.asarray(r.spikes[k]).any() for k in r.spikes)
    assert got.keys() == r.spikes.keys()
    for k in r.spikes:
        np.testing.assert_array_equal(got[k], np.asarray(r.spikes[k]))


_OPTIMIZE = """
import contextlib, io, importlib.util, json, sys, types
from pathlib import Path
import numpy as np
root = Path(list(importlib.util.find_spec('lava.lib.dl').submodule_search_locations)[0])
pkg = types.ModuleType('lava.lib.dl.netx'); pkg.__path__ = [str(root / 'netx')]
sys.modules[pkg.__name__] = pkg  # netx/utils.py itself needs numpy and h5py only
from lava.lib.dl.netx.utils import optimize_weight_bits
out = []
for w in json.load(sys.stdin):
    with contextlib.redirect_stdout(io.StringIO()):
        _, nb, we, _ = optimize_weight_bits(np.array(w))
    out.append([-we, nb])
print(json.dumps(out))
"""


@pytest.mark.skipif(not netx_available(), reason="lava-dl not installed in .venv-lava")
def test_weight_bits_as_netx_optimize_weight_bits():
    """Our reading of netx's optimize_weight_bits (core.netx_io._netx_weight_bits) against
    lava-dl's own function, on weights of every sign mode and trailing-zero count."""
    import json
    import subprocess

    from core.netx_io import _netx_weight_bits
    from targets.loihi import lava_python

    rng = np.random.default_rng(13)
    cases = [rng.integers(lo, hi, (4, 6)) << int(sh)
             for lo, hi in ((-120, 120), (1, 200), (-250, -1), (-60, 3), (0, 30))
             for sh in range(4)]
    cases = [w for w in cases if w.any() and w.max() <= 254 and w.min() >= -256]
    proc = subprocess.run([str(lava_python()), "-c", _OPTIMIZE], input=json.dumps(
        [w.tolist() for w in cases]), capture_output=True, text=True, check=True)
    theirs = json.loads(proc.stdout)
    assert [list(_netx_weight_bits(w)) for w in cases] == theirs
    assert len(theirs) >= 10  # the ranges above that netx does not clip
