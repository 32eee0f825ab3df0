"""Small random integer graphs (numpy only: importable in both environments)."""

from __future__ import annotations

import numpy as np

from core.graph import INPUT, Conv, Dense, InputSpec, LIFPopulation, QGraph, Readout
from core.ops import conv2d_out_hw


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


def delay_pool_graph(seed: int = 0, timesteps: int = 4) -> QGraph:
    """Latency balancing and max pooling of currents: Conv -> max pool (2x2, and 2x1 with a
    dropped trailing row/column), a delayed Conv, DelayDense skip paths (delays 1 and 2) that
    meet undelayed paths at a population and at a readout."""
    rng = np.random.default_rng(seed)
    cin, h, w = 2, 8, 7
    inp = InputSpec((cin, h, w))
    syn: list = []

    def conv(name, src, tgt, in_shape, c_out, k, stride, pad, pool=None, delay=0):
        ho, wo = conv2d_out_hw(in_shape[1:], k, stride, pad)
        out = (c_out, ho, wo) if pool is None else (c_out, ho // pool[0], wo // pool[1])
        weight = rng.integers(-25, 40, size=(c_out, in_shape[0], *k))
        syn.append(Conv(name, src, tgt, weight, stride, pad, 1, in_shape, out, delay=delay,
                        max_pool=pool))
        return out

    p1 = conv("in_P1", INPUT, "P1", (cin, h, w), 4, (3, 3), (1, 1), (1, 1), pool=(2, 2))
    p2 = conv("in_P2", INPUT, "P2", (cin, h, w), 3, (2, 2), (1, 1), (0, 0))
    q = conv("P2_Q", "P2", "Q", p2, 4, (3, 3), (2, 2), (1, 1), pool=(2, 1))
    q2 = conv("in_Q", INPUT, "Q", (cin, h, w), 4, (4, 4), (2, 2), (1, 1), pool=(2, 1), delay=1)
    assert q == q2, (q, q2)
    pops = {"P1": pop(rng, "P1", p1, vth=(60, 140)), "P2": pop(rng, "P2", p2, vth=(40, 90)),
            "Q": pop(rng, "Q", q, vth=(100, 250)), "H": pop(rng, "H", (10,), vth=(250, 450))}
    n_in, n_p1, n_q = cin * h * w, int(np.prod(p1)), int(np.prod(q))
    syn += [
        Dense("in_H", INPUT, "H", even_weights(rng, (10, n_in), -10, 14), delay=2),
        Dense("P1_H", "P1", "H", even_weights(rng, (10, n_p1), -20, 30), delay=1),
        Dense("H_R", "H", "R", even_weights(rng, (4, 10), -60, 60), weight_exp=1),
        Dense("Q_R", "Q", "R", even_weights(rng, (4, n_q), -30, 30), delay=1),
    ]
    g = QGraph(inp, pops, {"R": Readout("R", (4,))}, syn, timesteps)
    g.validate()
    return g


def bitplane_graph(seed: int = 0, timesteps: int = 4, bitplanes: int = 3) -> QGraph:
    """Graded input deployed as binary bit planes: per plane b, a Dense and a Conv (run as a
    dense map by Lava) read input[b*size:(b+1)*size] with weight exponent +b; a max-pooled
    plane conv, and a population fed through a slice of another population."""
    rng = np.random.default_rng(seed)
    cin, h, w = 2, 6, 5
    size = cin * h * w
    inp = InputSpec((cin, h, w), kind="graded", max_value=2**bitplanes - 1,
                    bitplanes=bitplanes)
    wa = even_weights(rng, (8, size), -12, 16)
    wc = rng.integers(-20, 30, size=(3, cin, 3, 3))
    wp = rng.integers(-20, 30, size=(2, cin, 2, 2))
    ho, wo = conv2d_out_hw((h, w), (3, 3), (1, 1), (1, 1))
    c_shape = (3, ho, wo)
    pho, pwo = conv2d_out_hw((h, w), (2, 2), (1, 1), (0, 0))
    p_shape = (2, pho // 2, pwo // 2)
    syn: list = []
    for b in range(bitplanes):
        sl = (b * size, (b + 1) * size)
        syn.append(Dense(f"in{b}_A", INPUT, "A", wa, weight_exp=b, source_slice=sl))
        syn.append(Conv(f"in{b}_C", INPUT, "C", wc, (1, 1), (1, 1), 1, (cin, h, w), c_shape,
                        weight_exp=b, source_slice=sl))
        syn.append(Conv(f"in{b}_P", INPUT, "P", wp, (1, 1), (0, 0), 1, (cin, h, w), p_shape,
                        weight_exp=b, source_slice=sl, max_pool=(2, 2)))
    n_c = int(np.prod(c_shape))
    pops = {"A": pop(rng, "A", (8,), vth=(500, 900)), "C": pop(rng, "C", c_shape, vth=(80, 200)),
            "P": pop(rng, "P", p_shape, vth=(250, 450)), "B": pop(rng, "B", (5,), vth=(60, 120))}
    syn += [
        Dense("C_B", "C", "B", even_weights(rng, (5, n_c // 2), -20, 30),
              source_slice=(n_c // 2, n_c)),
        Dense("A_B", "A", "B", even_weights(rng, (5, 8), -20, 30)),
        Dense("B_R", "B", "R", even_weights(rng, (3, 5), -40, 40)),
        Dense("P_R", "P", "R", even_weights(rng, (3, int(np.prod(p_shape))), -20, 20),
              delay=1),
    ]
    g = QGraph(inp, pops, {"R": Readout("R", (3,))}, syn, timesteps)
    g.validate()
    return g
