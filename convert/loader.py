"""Any NIR file to the integer graph a target runs: the one entry point of the conversion stage."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from convert.calibrate import CALIBRATION_SAMPLES, DEFAULT_PERCENTILE
from convert.calibrate import calibrate as run_calibration
from convert.nir_import import import_nir, timesteps_for
from convert.quantize import QuantReport, quantize
from core.errors import UserError
from core.graph import QGraph, check_lava_limits
from core.netx_io import is_netx_file, read_netx
from core.nir_ext import read_nir
from core.nir_io import from_nir, is_integer_graph


def load_graph(
    path: str | Path, *, dt: float | None = None, timesteps: int | None = None,
    input_kind: str | None = None, input_bitplanes: bool = False,
    input_timesteps: int | None = None, reset: str | None = None,
    calibrate: str | Path | bool | None = None,
    calibration_samples: int = CALIBRATION_SAMPLES,
    calibration_percentile: float = DEFAULT_PERCENTILE,
) -> tuple[QGraph, QuantReport | None]:
    """Any NIR file -> ``(integer graph, quantization report)``.

    Integer files (written by ``convert.quantize``) are read as they are, with the report they
    embed (None if they embed none); float ones (ours or another framework's) are imported and
    quantized. ``dt`` (s), ``timesteps`` and ``input_kind`` fill in what a foreign file does not
    record; ``input_bitplanes`` deploys a graded input as binary bit planes (float files only);
    ``input_timesteps``: the T of the inputs the graph will run on, used when the graph
    records none (``convert.nir_import.timesteps_for``); ``reset``: every population's reset
    mode for a float file that records none (``convert.nir_import.resolve_reset``; an
    integer file must already have it); ``calibrate`` (float files only): calibrate the
    scales (:mod:`convert.calibrate`) on the first ``calibration_samples`` of an input file
    (a path) or, with ``True``, of the training split of the dataset the graph records
    (None/False: the worst-case scales, as always). Either way the graph is checked
    against the Lava target's limits: what one target cannot run, none runs.

    Raises:
        GraphError: the file is unreadable, or the graph cannot be imported or quantized, or
            the Lava target cannot run it (:func:`core.graph.check_lava_limits`).
        UserError: an option that cannot apply to an integer file (``input_bitplanes``
            without bit planes in it, a ``dt`` other than the one it was quantized at), or
            timesteps that disagree with ``input_timesteps``, or calibration asked for an
            integer file or with a batch that does not fit the graph.
    """
    if is_netx_file(path):  # a lava-dl netx network: integer already (core/netx_io.py)
        qg = read_netx(path)
        _refuse_float_options(path, qg, dt, input_bitplanes)
        if calibrate not in (None, False):
            raise UserError(f"calibration applies when a float graph is quantized, but {path} "
                            "is a netx network, integer already")
        _refuse_other_reset(path, qg, reset)
        t = timesteps_for(None, timesteps, input_timesteps)
        if t:
            qg = replace(qg, timesteps=t)
        check_lava_limits(qg)
        return qg, None
    g = read_nir(path)
    if is_integer_graph(g):
        qg = from_nir(g)
        _refuse_float_options(path, qg, dt, input_bitplanes)
        if calibrate not in (None, False):
            raise UserError(
                f"calibration applies when a float graph is quantized, but {path} is already "
                "an integer graph; run the command on the float graph, or quantize it again "
                "with `python -m convert.quantize FLOAT.nir --calibrate`")
        _refuse_other_reset(path, qg, reset)
        t = timesteps_for(qg.timesteps, timesteps, input_timesteps)
        if t and t != qg.timesteps:
            qg = replace(qg, timesteps=t)
        check_lava_limits(qg)
        rep = qg.metadata.get("quantization_report")
        return qg, (QuantReport.from_dict(json.loads(rep)) if isinstance(rep, str) else None)
    fg = import_nir(g, dt=dt, timesteps=timesteps, input_kind=input_kind,
                    input_timesteps=input_timesteps, reset=reset)
    cal = None
    if calibrate not in (None, False):
        cal = run_calibration(fg, None if calibrate is True else calibrate,
                              samples=calibration_samples, percentile=calibration_percentile)
    return quantize(fg, input_bitplanes=input_bitplanes, calibration=cal)


def _refuse_float_options(path: str | Path, qg: QGraph, dt: float | None,
                          input_bitplanes: bool) -> None:
    """Options that act when a float graph is quantized cannot change an integer one: say
    what to run instead rather than ignore them.

    Raises:
        UserError: ``input_bitplanes`` for a graph quantized without bit planes, or a ``dt``
            other than the one it records.
    """
    if input_bitplanes and not qg.input.bitplanes:
        raise UserError(
            f"--input-bitplanes applies when a float graph is quantized, but {path} is "
            "already an integer graph quantized without bit planes; run the command on the "
            "float graph with --input-bitplanes, or quantize it again with `python -m "
            "convert.quantize FLOAT.nir --input-bitplanes` and run that file")
    recorded = qg.metadata.get("dt")
    if dt is not None and (recorded is None or abs(float(recorded) - dt) > 1e-9 * dt):
        raise UserError(
            f"--dt applies when a float graph is imported, but {path} is already an integer "
            f"graph (quantized at dt={recorded if recorded is not None else 'unknown'}); run "
            "the command on the float graph with --dt, or quantize it again with `python -m "
            "convert.quantize FLOAT.nir --dt ...`")


def _refuse_other_reset(path: str | Path, qg: QGraph, reset: str | None) -> None:
    """``--reset`` acts when a float graph is imported; on an integer graph it may only
    repeat what every population records.

    Raises:
        UserError: a population whose recorded reset mode differs from ``reset``.
    """
    if reset is None:
        return
    for p in qg.populations.values():
        if p.reset != reset:
            raise UserError(
                f"--reset applies when a float graph is imported, but {path} is already an "
                f"integer graph whose population {p.name!r} resets {p.reset!r}; run the "
                f"command on the float graph with --reset {reset}")
