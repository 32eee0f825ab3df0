"""Small random integer graphs (numpy only: importable in both environments)."""

from __future__ import annotations

import numpy as np

from targets.graph import INPUT, Conv, Dense, InputSpec, LIFPopulation, QGraph, Readout
from targets.ops import conv2d_out_hw


def even_weights(rng, shape, lo=-40, hi=40):
    """Mixed-sign weights that Lava's 8-bit truncation leaves unchanged (even values)."""
    return (rng.integers(lo // 2, hi // 2 + 1, size=shape) * 2).astype(np.int64)


def pop(rng, name, shape, vth=(20, 60), bias=8):
    size = int(np.prod(shape))
    return LIFPopulation(
        name, tuple(shape), du=int(rng.integers(0, 4096)), dv=int(rng.integers(0, 4096)),
        vth=int(rng.integers(*vth)), bias_mant=rng.integers(-bias, bias + 1, size=size),
        bias_exp=int(rng.integers(0, 4)),
    )


def mixed_graph(seed: int = 0, timesteps: int = 5, nir_safe: bool = False) -> QGraph:
    """Graded input -> Dense -> A (flat) and -> Conv(stride 2, pad 1) -> C (C,H,W);
    A and C both -> B (two synapses into one population); B -> readout R1 (weight_exp 2);
    C -> Conv(kernel 2x3, padding (0,1), groups 2) -> D -> readout R2 (weight_exp -2).

    ``nir_safe``: kernel 2x2 and groups 1 for the second conv, because nir 1.0.x's Conv2d
    type inference assumes square kernels and ignores groups (integer NIR write fails)."""
    groups, k2 = (1, (2, 2)) if nir_safe else (2, (2, 3))
    rng = np.random.default_rng(seed)
    cin, h, w = 2, 7, 6
    inp = InputSpec((cin, h, w), kind="graded", max_value=15)
    n_in = cin * h * w
    ho, wo = conv2d_out_hw((h, w), (3, 3), (2, 2), (1, 1))
    c_shape = (4, ho, wo)
    ho2, wo2 = conv2d_out_hw((ho, wo), k2, (1, 1), (0, 1))
    d_shape = (4, ho2, wo2)
    pops = {
        "A": pop(rng, "A", (12,), vth=(2500, 4500)),
        "C": pop(rng, "C", c_shape, vth=(100, 300)),
        "B": pop(rng, "B", (9,), vth=(150, 300)),
        "D": pop(rng, "D", d_shape),
    }
    n_c = int(np.prod(c_shape))
    syn = [
        Dense("in_A", INPUT, "A", even_weights(rng, (12, n_in), -20, 30), weight_exp=1),
        Conv("in_C", INPUT, "C", rng.integers(-30, 40, size=(4, 2, 3, 3)), (2, 2), (1, 1), 1,
             (cin, h, w), c_shape),
        Dense("A_B", "A", "B", even_weights(rng, (9, 12), -60, 80), weight_exp=0),
        Dense("C_B", "C", "B", even_weights(rng, (9, n_c), -40, 60), weight_exp=-1),
        Conv("C_D", "C", "D", rng.integers(-40, 60, size=(4, 4 // groups, *k2)), (1, 1), (0, 1),
             groups,
             c_shape, d_shape),
        Dense("B_R1", "B", "R1", even_weights(rng, (3, 9), -100, 100), weight_exp=2),
        Dense("D_R2", "D", "R2", even_weights(rng, (5, int(np.prod(d_shape))), -50, 50),
              weight_exp=-2),
    ]
    readouts = {"R1": Readout("R1", (3,), bias=rng.integers(-5, 5, size=3)),
                "R2": Readout("R2", (5,))}
    g = QGraph(inp, pops, readouts, syn, timesteps)
    g.validate()
    return g


def dense_graph(n_in=784, n_hidden=256, n_out=10, timesteps=4, seed=0) -> QGraph:
    """A 784-256-10 spiking MLP with binary input (the throughput benchmark)."""
    rng = np.random.default_rng(seed)
    pops = {"h": LIFPopulation("h", (n_hidden,), 400, 300, 80,
                               np.zeros(n_hidden, np.int64), 0)}
    syn = [Dense("fc1", INPUT, "h", even_weights(rng, (n_hidden, n_in), -40, 40)),
           Dense("fc2", "h", "out", even_weights(rng, (n_out, n_hidden), -60, 60))]
    g = QGraph(InputSpec((n_in,)), pops, {"out": Readout("out", (n_out,))}, syn, timesteps)
    g.validate()
    return g


def random_inputs(graph: QGraph, n: int, seed: int = 0, rate: float = 0.4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, graph.timesteps, *graph.input.shape)
    if graph.input.max_value > 1:
        x = rng.integers(0, graph.input.max_value + 1, size=shape)
        return x * (rng.random(shape) < rate)
    return (rng.random(shape) < rate).astype(np.int64)


def mlp_graph(sizes=(20, 16, 12, 5), timesteps: int = 6, seed: int = 0) -> QGraph:
    """Binary input -> Dense hidden layers (biases, mixed even weights) -> readout with a
    weight exponent and a bias."""
    rng = np.random.default_rng(seed)
    pops, syn = {}, []
    src = INPUT
    for i, n in enumerate(sizes[1:-1]):
        name = f"h{i}"
        pops[name] = pop(rng, name, (n,), vth=(60, 140), bias=20)
        syn.append(Dense(f"fc{i}", src, name, even_weights(rng, (n, sizes[i]), -40, 60),
                         weight_exp=int(rng.integers(-1, 2))))
        src = name
    syn.append(Dense("fc_out", src, "out", even_weights(rng, (sizes[-1], sizes[-2]), -80, 80),
                     weight_exp=2))
    readouts = {"out": Readout("out", (sizes[-1],), bias=rng.integers(-9, 10, sizes[-1]))}
    g = QGraph(InputSpec((sizes[0],)), pops, readouts, syn, timesteps)
    g.validate()
    return g
