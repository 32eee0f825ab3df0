"""Stopping is clean: real signals sent to real commands (issue 12 item 4).

Each command runs in a subprocess of its own session with a marker in its environment, which
every process it starts inherits (Lava's forked runtime processes and Python's resource
tracker included), so that a scan of /proc finds the whole tree even after processes are
re-parented. After the signal: the command exits with 128 + the signal, prints one line on
stderr, leaves no output file (nor a temporary one beside it), and no marked process survives.

A test suite started in the background by a non-interactive shell inherits SIGINT ignored
(and Python then never raises KeyboardInterrupt): the children get SIGINT's default back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from targets import loihi

ROOT = Path(__file__).resolve().parents[2]
FC = ROOT / "tests" / "data" / "fc_snn_digits.nir"
DS = ROOT / "tests" / "data" / "ds_resnet_digits.nir"
MARK = "NEURODEPLOY_SIGNAL_TEST"

needs_lava = pytest.mark.skipif(
    not (ROOT / ".venv-lava" / "bin" / "python").exists()
    and not os.environ.get(loihi.ENV_VAR), reason="no Lava environment")


def _marked(mark: str) -> list[int]:
    """Every live process whose environment carries ``MARK=mark``."""
    needle = f"{MARK}={mark}".encode()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):
                    out.append(int(d.name))
        except OSError:
            continue
    return out


def _start(args: list[str], mark: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), MARK: mark}
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,  # its own group: a terminal's Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _kill_marked(mark: str) -> None:
    for pid in _marked(mark):  # only what this test started (its marker), never by name
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _check_stopped(proc: subprocess.Popen, mark: str, code: int, out: Path,
                   expect_line: str, prog: str) -> None:
    try:
        _, err = proc.communicate(timeout=30)
        stderr = err.decode()
        assert proc.returncode == code, stderr
        assert stderr.strip().splitlines() == [f"{prog}: {expect_line}"], stderr
        # every process of the tree gone within seconds (the resource tracker last)
        _wait_for(lambda: not _marked(mark), 10, "the command's processes to end")
        assert not out.exists()
        assert not list(out.parent.iterdir()), list(out.parent.iterdir())  # no temporary file
    finally:
        _kill_marked(mark)


def _lava_running(mark: str, proc: subprocess.Popen) -> bool:
    """Lava's runtime is up: the worker has forked its processes (a handful at least)."""
    assert proc.poll() is None, proc.communicate()[1].decode()
    return len(_marked(mark)) >= 8


LAVA_RUN = ["targets/lava_sim.py", str(FC), "--split", "train", "--samples", "1000",
            "--chunk", "50"]


@needs_lava
@pytest.mark.parametrize("sig,code,line", [
    (signal.SIGINT, 130, "interrupted"),  # Ctrl-C: the terminal signals the whole group
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
])
def test_lava_sim_stops_every_lava_process(tmp_path, sig, code, line):
    mark = uuid.uuid4().hex
    out = tmp_path / "rec" / "lava.npz"
    proc = _start([*LAVA_RUN, "--record", str(out)], mark)
    try:
        _wait_for(lambda: _lava_running(mark, proc), 60, "Lava's runtime processes")
        os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
    except BaseException:
        _kill_marked(mark)
        raise
    _check_stopped(proc, mark, code, out, line, "lava_sim")


@needs_lava
def test_lava_worker_ends_its_group_when_the_command_is_killed(tmp_path):
    """SIGKILL leaves the command no chance to clean up: the worker's watchdog sees its stdin
    pipe close and ends every Lava process."""
    mark = uuid.uuid4().hex
    proc = _start(LAVA_RUN, mark)
    try:
        _wait_for(lambda: _lava_running(mark, proc), 60, "Lava's runtime processes")
        proc.kill()
        proc.communicate(timeout=10)
        _wait_for(lambda: not _marked(mark), 15, "the orphaned Lava processes to end")
    finally:
        _kill_marked(mark)


@pytest.mark.parametrize("sig,code,line", [
    (signal.SIGINT, 130, "interrupted"),
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
])
def test_event_sim_stops_in_one_line_without_a_partial_record(tmp_path, sig, code, line):
    mark = uuid.uuid4().hex
    out = tmp_path / "rec" / "event.npz"
    # ds_resnet on 1000 samples of the train split: minutes of work, run in pieces whose
    # records stream into a hidden folder beside the output
    proc = _start(["-m", "targets.event_sim", str(DS), "--split", "train", "--samples",
                   "1000", "--record", str(out)], mark)
    try:
        # the folder appears when the run starts (a signal during Python's start-up, before
        # the command runs, meets the default action: nothing to clean up then)
        _wait_for(lambda: proc.poll() is None and any(out.parent.glob(".*.parts")), 120,
                  "the run to start streaming its records")
        proc.send_signal(sig)
    except BaseException:
        _kill_marked(mark)
        raise
    _check_stopped(proc, mark, code, out, line, "event_sim")


def test_run_cli_turns_sigterm_into_exit_143_and_restores_the_handler(capsys):
    """In-process: SIGTERM raises Terminated (a KeyboardInterrupt) where the command is, the
    command's own Ctrl-C handling runs, and the code is 143 either way."""
    from core.cli import run_cli

    before = signal.getsignal(signal.SIGTERM)

    def uncaught(argv):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler raises here, at once
        return 0

    def caught(argv):  # as python -m train does: its own message, then 130
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
        except KeyboardInterrupt:
            return 130
        return 0

    assert run_cli("prog", uncaught, []) == 143
    assert capsys.readouterr().err == "prog: terminated (SIGTERM)\n"
    assert run_cli("prog", caught, []) == 143
    assert signal.getsignal(signal.SIGTERM) is before
