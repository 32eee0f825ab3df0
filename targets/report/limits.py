"""The published numbers the chip report uses: Loihi 2 per-core limits, per-operation energies
and times, and the 45 nm arithmetic energies of the MAC-based estimate.

Every constant says where it comes from; docs/loihi2.md lists them with their sources and says
which are assumptions (a number Intel has not published for Loihi 2). They are plain dataclass
fields, so a study can swap in other numbers (``dataclasses.replace``) without editing code.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CoreLimits", "ChipConstants", "MacConstants", "LOIHI2", "LOIHI1_COSTS", "HOROWITZ_45NM",
           "WEIGHT_WIDTHS", "SYNAPSE_BLOCK", "SYNAPSE_BLOCK_HEADER_BITS", "SYNAPSE_WORD_BITS",
           "SPARSE_INDEX_BITS_MIN", "SPARSE_INDEX_BITS_MAX"]


@dataclass(frozen=True)
class CoreLimits:
    """What one neuro-core and one chip hold (counts; memory in bits).

    Sources (docs/loihi2.md, "Limits"): ``cores_per_chip``, ``neurons_per_chip``,
    ``synapses_per_chip`` and ``core_memory_bits`` (192 KB) are in Intel's Loihi 2 brief
    ("Taking Neuromorphic Computing to the Next Level with Loihi 2", 2021);
    ``neurons_per_core`` = 1M neurons / 128 cores = 8,192 (the brief's maximum per core).
    Not published for Loihi 2, assumed equal to Loihi 1's (Davies et al. 2018; the same
    numbers are NengoLoihi's ``MAX_IN_AXONS``/``MAX_OUT_AXONS``): ``fan_in_axons`` and
    ``fan_out_axons`` (4,096 each). Our assumption: ``neuron_state_bits`` = 64 per CUBA LIF
    neuron (u and v, 24 bits each, in 32-bit words), the rest of the core's memory holds
    synapses (8,192 neurons x 64 bits = 64 KB, leaving 128 KB: Loihi 1's synaptic memory).
    """

    name: str = "Loihi 2"
    cores_per_chip: int = 128
    neurons_per_chip: int = 1_048_576
    synapses_per_chip: int = 120_000_000
    neurons_per_core: int = 8192
    fan_in_axons: int = 4096
    fan_out_axons: int = 4096
    core_memory_bits: int = 192 * 1024 * 8
    neuron_state_bits: int = 64


@dataclass(frozen=True)
class ChipConstants:
    """Per-operation energy (pJ) and time (ns) of a neuromorphic chip.

    Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", IEEE
    Micro 38(1), 2018 (Loihi 1, 14 nm), as transcribed by SANA-FE's Loihi architecture file
    (SLAM-Lab/SANA-FE, ``loihi.yaml``: "All numbers were taken from ... Davies et al."):
    synaptic spike op 23.6 pJ / 3.5 ns; neuron update 81 pJ / 8.4 ns when active, 6.1 ns
    when inactive; spike within a tile 1.7 pJ; a mesh hop 3.0 pJ east-west and 4.0 pJ
    north-south (we charge their mean, 3.5 pJ); global barrier 299 ns per time step. The
    inactive update energy: 52 pJ as the issue quotes Davies et al.'s table (SANA-FE's file
    gives 47.5 pJ; we take the larger). Intel has published no per-operation energies for
    Loihi 2: these are the only published ones, used as an upper bound (Loihi 2 is one
    process generation newer; its brief claims "up to 10x faster" spike processing, which we
    do NOT apply). docs/loihi2.md.
    """

    name: str = "Loihi (Davies et al. 2018)"
    synop_pj: float = 23.6
    neuron_update_active_pj: float = 81.0
    neuron_update_inactive_pj: float = 52.0
    spike_within_tile_pj: float = 1.7
    hop_pj: float = 3.5
    synop_ns: float = 3.5
    neuron_update_active_ns: float = 8.4
    neuron_update_inactive_ns: float = 6.1
    barrier_ns: float = 299.0
    mesh_columns: int = 8  # Loihi 2's 128 cores as an 8 x 16 mesh (Loihi 2 brief)


@dataclass(frozen=True)
class MacConstants:
    """Arithmetic energies of a conventional processor, per operation (pJ).

    Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm,
    0.9 V: 32-bit float multiply 3.7 pJ + 32-bit float add 0.9 pJ = 4.6 pJ per MAC, 0.9 pJ per
    accumulate (the constants the seed papers use). Arithmetic only: memory access, which
    dominates on a real GPU/CPU, is left out, as those papers do.
    """

    name: str = "45 nm arithmetic (Horowitz 2014)"
    mac_pj: float = 4.6
    ac_pj: float = 0.9


LOIHI2 = CoreLimits()
LOIHI1_COSTS = ChipConstants()
HOROWITZ_45NM = MacConstants()

# Synapse memory format, Loihi 1 as NengoLoihi encodes it (nengo_loihi/block.py, SynapseConfig:
# the format Intel's NxSDK uses): an axon's synapse list is stored in blocks of up to 64
# synapses, each block with a 10-bit header (4 + 6 bits), rounded up to 64-bit words; a
# synapse takes its weight bits, plus index bits when the list is sparse (6 to 12 bits).
# Weight widths the format offers: 1, 2, 3, 4, 5, 6, 8 bits (sign included for mixed signs);
# we add 9 for Loihi's full signed 8-bit range [-256, 255]. Loihi 2's format is unpublished:
# assumed the same (docs/loihi2.md).
WEIGHT_WIDTHS = (1, 2, 3, 4, 5, 6, 8, 9)
SYNAPSE_BLOCK = 64
SYNAPSE_BLOCK_HEADER_BITS = 10
SYNAPSE_WORD_BITS = 64
SPARSE_INDEX_BITS_MIN = 6
SPARSE_INDEX_BITS_MAX = 12
