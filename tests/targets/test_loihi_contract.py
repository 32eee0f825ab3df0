"""core/fixedpoint.py (the contract) pinned against real Lava runs, case by case.

All cases run in ONE Lava-environment process (tests/lava_scripts/contract_cases.py): Lava's
startup and network compilation dominate, so the cases share one network of stock processes
(part 1) plus four networks of the Lava target itself (targets.loihi.simulate, part 2). Each
case below is one comparison of Lava's spikes, u and v (step by step) or Dense outputs /
read-back weights against a pure core.fixedpoint loop; see the script for how each case is
built.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from targets.loihi import REPO_ROOT, lava_python, worker_env

SCRIPT = REPO_ROOT / "tests" / "lava_scripts" / "contract_cases.py"

CASES = [
    "u_wrap_one_step",
    "u_wrap_accumulate_du0_dv0",
    "v_saturation",
    "decay_du0_dv0",
    "decay_du0_dv4095",
    "decay_du4095_dv0",
    "decay_du4095_dv4095",
    "decay_du1_dv2048",
    "decay_du4094_dv1",
    "bias_mant_exp",
    "weight_exp_-8_mixed",
    "weight_exp_-3_mixed",
    "weight_exp_-1_inhibitory",
    "weight_exp_-1_mixed",
    "weight_exp_0_mixed",
    "weight_exp_1_mixed",
    "weight_exp_7_mixed",
    "sign_mode_excitatory",
    "sign_mode_inhibitory",
    "sign_mode_mixed",
    "graded_message_bits_8",
    "graded_data_binary_dense",
    "lifreset_interval5_offset3",
    "lifreset_interval4_offset0",
    "lifreset_interval4_offset6",
    "lifreset_interval3_offset1",
    "conv_layouts_groups_stride_padding",
    "graded_input_two_synapses_pipelined_chunks",
    "bitplane_input_slices_dense_mapped_convs",
    "a_in_beyond_int32_shift",
]

@pytest.fixture(scope="module")
def lava_results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("lava_contract") / "results.json"
    proc = subprocess.run(
        [str(lava_python()), str(SCRIPT), str(out)], env=worker_env(), cwd=str(REPO_ROOT),
        capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0 or not out.exists():
        pytest.fail(f"contract script failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def test_script_ran_every_case(lava_results):
    crashes = {k: v["detail"] for k, v in lava_results.items() if k.startswith("_crash")}
    assert not crashes, crashes
    got = {k for k in lava_results if not k.startswith("_")}
    assert got == set(CASES), sorted(got ^ set(CASES))


@pytest.mark.parametrize("case", CASES)
def test_fixedpoint_matches_lava(lava_results, case):
    res = lava_results.get(case)
    assert res is not None, f"case {case} did not run"
    assert res["ok"], f"{case}: {res['detail']}"


@pytest.mark.parametrize("which", ["mixed", "delay_pool", "bitplane"])
def test_helpers_agree_with_torch_ref(which):
    """The numpy reference the Lava-side script uses (no torch there) is torch_ref's forward."""
    import numpy as np

    from targets import torch_ref
    from tests.lava_scripts.lava_numpy_ref import run_ref
    from tests.lava_scripts.lava_test_graphs import (
        bitplane_graph,
        delay_pool_graph,
        mixed_graph,
        random_inputs,
    )

    g = {"mixed": lambda: mixed_graph(seed=5, timesteps=5),
         "delay_pool": lambda: delay_pool_graph(1, 5),
         "bitplane": lambda: bitplane_graph(1, 4)}[which]()
    x = random_inputs(g, 3, seed=4, rate=0.3)
    spikes, readouts, states = run_ref(g, x)
    ref = torch_ref.run(g, x, record_state=True)
    for p in g.populations:
        assert np.array_equal(spikes[p], ref.spikes[p]), p
        assert np.array_equal(states[p][0], ref.states[p][0]), p
        assert np.array_equal(states[p][1], ref.states[p][1]), p
    for r in g.readouts:
        assert np.array_equal(readouts[r], ref.readouts[r]), r
