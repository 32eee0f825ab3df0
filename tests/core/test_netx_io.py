"""lava-dl netx HDF5 files <-> integer graphs (core/netx_io.py).

The hand-written files follow slayer's own export (lava-dl 0.6.0): ``slayer/block/base.py``
``AbstractInput.export_hdf5`` (l. 140-165: ``type`` as a (1,) S10 dataset, ``shape``),
``AbstractDense.export_hdf5`` (l. 355-392: ``weight`` [out, in], ``delay``, ``neuron/*``),
``AbstractConv.export_hdf5`` (l. 720-787: ``weight`` [out, in, kH, kW], ``stride``,
``padding``, ``dilation``, ``groups``, per-channel ``bias``), ``AbstractFlatten.export_hdf5``
(l. 196-207), and ``slayer/neuron/cuba.py`` ``device_params`` (l. 263-272).
"""

from dataclasses import fields

import h5py
import numpy as np
import pytest

from convert import load_graph
from core.errors import GraphError
from core.graph import Conv, Dense, InputSpec, LIFPopulation, QGraph, Readout
from core.netx_io import read_netx, write_netx
from core.nir_io import write_qgraph
from targets import event_sim, torch_ref


def _type(g, kind):
    g.create_dataset("type", (1,), "S10", [kind.encode("ascii")])


def _cuba(g, i_decay=1024, v_decay=256, vth=24, ntype="CUBA", graded=False):
    # slayer/neuron/cuba.py device_params: these keys, integers (12-bit decays)
    _type(g.create_group("neuron"), ntype)
    for k, v in (("iDecay", i_decay), ("vDecay", v_decay), ("vThMant", vth),
                 ("refDelay", 1), ("gradedSpike", graded)):
        g["neuron"].create_dataset(k, data=v)


def slayer_file(path, rng, *, delay=None, conv_bias=True, extra=None):
    """input (2, 6, 6) -> conv 3x3 (4 ch, stride 1, pad 1) -> flatten -> dense 10."""
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        g = layer.create_group("0")
        _type(g, "input")
        g.create_dataset("shape", data=np.array([2, 6, 6]))
        g = layer.create_group("1")
        _type(g, "conv")
        g.create_dataset("shape", data=np.array([4, 6, 6]))
        g.create_dataset("weight", data=rng.integers(-40, 40, (4, 2, 3, 3)).astype(float))
        g.create_dataset("stride", data=np.array([1, 1]))
        g.create_dataset("padding", data=np.array([1, 1]))
        g.create_dataset("dilation", data=np.array([1, 1]))
        g.create_dataset("groups", data=1)
        if conv_bias:
            g.create_dataset("bias", data=np.array([2.0, -1.0, 0.0, 3.0]))
        _cuba(g)
        g = layer.create_group("2")
        _type(g, "flatten")
        g.create_dataset("shape", data=np.array([144]))
        g = layer.create_group("3")
        _type(g, "dense")
        g.create_dataset("shape", data=np.array([10]))
        g.create_dataset("weight", data=(rng.integers(-60, 60, (10, 144)) * 2).astype(float))
        if delay is not None:
            g.create_dataset("delay", data=np.asarray(delay, dtype=float))
        _cuba(g, i_decay=4096, v_decay=128, vth=40)
        if extra:
            extra(layer)
    return path


def spikes(rng, n=3, t=8, shape=(2, 6, 6)):
    return (rng.random((n, t, *shape)) < 0.3).astype(np.int64)


def test_reads_slayer_layout_as_netx_runs_it(tmp_path):
    rng = np.random.default_rng(1)
    g = read_netx(slayer_file(tmp_path / "net.net", rng, delay=np.full(144, 3)), timesteps=8)
    assert g.input == InputSpec(shape=(2, 6, 6))
    conv, dense = g.synapses
    assert isinstance(conv, Conv) and isinstance(dense, Dense)
    a, b = g.populations.values()
    # netx/hdf5.py get_neuron_params: du = iDecay - 1, dv = vDecay, vth = vThMant, bias_exp 6
    assert (a.du, a.dv, a.vth, a.bias_exp) == (1023, 256, 24, 6)
    assert (b.du, b.dv, b.vth) == (4095, 128, 40)
    assert a.bias_mant.reshape(4, 36)[:, 0].tolist() == [2, -1, 0, 3]
    assert np.all(a.bias_mant.reshape(4, 36) == a.bias_mant.reshape(4, 36)[:, :1])
    assert dense.delay == 3 and dense.weight.shape == (10, 144)
    x = spikes(rng)
    r, e = torch_ref.run(g, x), event_sim.run(g, x)
    assert all(np.asarray(r.spikes[k]).any() for k in r.spikes)
    for k in r.spikes:
        np.testing.assert_array_equal(np.asarray(r.spikes[k]), np.asarray(e.spikes[k]))


def test_load_graph_takes_netx_by_suffix(tmp_path):
    rng = np.random.default_rng(2)
    for suffix in (".net", ".h5", ".hdf5"):
        g, rep = load_graph(slayer_file(tmp_path / f"m{suffix}", rng), timesteps=5)
        assert rep is None and g.timesteps == 5 and len(g.populations) == 2


def _tiny_graph(rng, *, bias_exp=6, readout=False, input_kind="spikes", weight_exp=0):
    pops = {
        "c": LIFPopulation("c", (3, 4, 4), du=511, dv=100, vth=20,
                           bias_mant=np.repeat(rng.integers(-3, 4, 3), 16), bias_exp=bias_exp),
        "h": LIFPopulation("h", (8,), du=4095, dv=0, vth=30,
                           bias_mant=rng.integers(-5, 5, 8), bias_exp=bias_exp),
    }
    syns = [Conv("s0", "input", "c", rng.integers(-50, 50, (3, 1, 3, 3)) * 2, (2, 2), (1, 1), 1,
                 (1, 8, 8), (3, 4, 4), weight_exp=weight_exp),
            Dense("s1", "c", "h", rng.integers(-100, 100, (8, 48)) * 2, delay=1)]
    readouts = {}
    if readout:
        readouts = {"out": Readout("out", (2,))}
        syns.append(Dense("s2", "h", "out", rng.integers(-5, 5, (2, 8))))
    return QGraph(input=InputSpec(shape=(1, 8, 8), kind=input_kind, max_value=1 if
                                  input_kind == "spikes" else 15),
                  populations=pops, readouts=readouts, synapses=syns, timesteps=6)


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and all(
            _same(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_round_trip_is_identical(tmp_path):
    g = _tiny_graph(np.random.default_rng(3))
    g.validate()
    write_netx(g, tmp_path / "g.net")
    h = read_netx(tmp_path / "g.net", timesteps=g.timesteps)
    for name in ("input", "populations", "readouts", "synapses", "timesteps"):
        assert _same(getattr(g, name), getattr(h, name)), name


def test_round_trip_other_bias_exponent_runs_the_same(tmp_path):
    rng = np.random.default_rng(4)
    g = _tiny_graph(rng, bias_exp=7)
    write_netx(g, tmp_path / "g.net")
    h = read_netx(tmp_path / "g.net", timesteps=g.timesteps)
    assert h.populations["c"].bias_exp == 6  # the same bias << exp, as netx writes it
    x = spikes(rng, t=6, shape=(1, 8, 8))
    r1, r2 = torch_ref.run(g, x), torch_ref.run(h, x)
    assert any(np.asarray(r1.spikes[k]).any() for k in r1.spikes)
    for k in r1.spikes:
        np.testing.assert_array_equal(np.asarray(r1.spikes[k]), np.asarray(r2.spikes[k]))


@pytest.mark.parametrize("kw, match", [
    (dict(readout=True), "readout 'out'"),
    (dict(input_kind="graded"), "binary spike inputs"),
    (dict(weight_exp=-1), "weight exponent"),
    (dict(bias_exp=0), "multiple of 2\\*\\*6"),
])
def test_writer_refuses_in_one_line(tmp_path, kw, match):
    g = _tiny_graph(np.random.default_rng(5), **kw)
    with pytest.raises(GraphError, match=match) as e:
        write_netx(g, tmp_path / "g.net")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "g.net").exists()


def _pool(layer):
    g = layer.create_group("4")
    _type(g, "pool")


def _affine(layer):
    # slayer's Affine output block: vThMant = (1 << 18) - 1 (base.py AbstractAffine, l. 393-396)
    del layer["3/neuron/vThMant"]
    layer["3/neuron"].create_dataset("vThMant", data=(1 << 18) - 1)


def _sdnn(layer):
    del layer["3/neuron/type"]
    _type(layer["3/neuron"], "SDNN")


@pytest.mark.parametrize("kw, match", [
    (dict(extra=_pool), "layer/4: pooling layer"),
    (dict(extra=_sdnn), "layer/3: neuron type 'SDNN'"),
    (dict(delay=np.arange(144)), "layer/3: delays differ"),
    (dict(extra=_affine), "layer/3: vThMant 262143 is above"),
])
def test_reader_refuses_in_one_line(tmp_path, kw, match):
    path = slayer_file(tmp_path / "bad.net", np.random.default_rng(6), **kw)
    with pytest.raises(GraphError, match=match) as e:
        read_netx(path)
    assert "\n" not in str(e.value)


def test_to_netx_cli_writes_and_refuses(tmp_path, capsys):
    from convert.to_netx import main
    from core.cli import run_cli

    src = slayer_file(tmp_path / "in.net", np.random.default_rng(7))
    assert run_cli("convert.to_netx", main, [str(src), "-o", str(tmp_path / "out.net"),
                                             "--timesteps", "4"]) == 0
    assert _same(read_netx(src).synapses, read_netx(tmp_path / "out.net").synapses)
    g = _tiny_graph(np.random.default_rng(8), readout=True)
    write_qgraph(tmp_path / "r.nir", g)
    capsys.readouterr()
    assert run_cli("convert.to_netx", main, [str(tmp_path / "r.nir")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "readout 'out'" in err
    assert not (tmp_path / "r.net").exists()
