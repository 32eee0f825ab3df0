"""The one command-line wrapper every neurodeploy command runs through.

- :func:`run_cli` turns a :class:`~core.errors.NeurodeployError` (bad input: a file, a graph,
  an option) into one line ``prog: message`` on stderr and exit code 2, and Ctrl-C into one
  line and exit code 130; SIGTERM and SIGHUP stop the command the same way (exit 143, 129):
  they raise :class:`Terminated` (a ``KeyboardInterrupt``) so that every ``finally`` runs,
  child processes are stopped and no half-written file stays; anything else is a bug and
  keeps its traceback.
- :func:`add_output_flags` gives every command the same ``--json`` and ``--no-progress`` /
  ``--quiet`` flags; :func:`progress` draws a progress bar only on a terminal (a log file gets
  no redraws).
- :func:`check_writable` refuses an output path before the work starts, not after it.
- :func:`print_json` prints a command's summary as one JSON object (``--json``) inside the
  one envelope every command shares (:func:`json_envelope`, docs/json.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from core.errors import NeurodeployError, UserError

T = TypeVar("T")

EXIT_OK = 0
EXIT_USAGE = 2  # bad input (argparse uses 2 for bad arguments too)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention


# Termination signals turned into an exception by run_cli (SIGINT already raises
# KeyboardInterrupt): the exit code is 128 + the signal's number, the shell's convention.
TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM or SIGHUP while :func:`run_cli` runs a command.

    A ``KeyboardInterrupt`` so that the code that cleans up after Ctrl-C (stopping worker
    processes, removing temporary files, a training run's "interrupted" message) runs for a
    termination too. ``signum``: the signal's number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)


# The termination signal received while run_cli runs a command (None: none yet).
_received: int | None = None

# The command run_cli runs now (its ``prog``): the ``command`` field of the --json envelope.
_command: str | None = None


def _raise_terminated(signum: int, frame: object) -> None:
    global _received
    _received = int(signum)
    raise Terminated(signum)


def _install_termination_handlers() -> dict[int, Any]:
    """Make SIGTERM/SIGHUP raise :class:`Terminated`; returns the handlers to restore.

    Only from the main thread (Python allows no other), and never over a signal the caller
    chose to ignore (``nohup`` ignores SIGHUP on purpose).
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {}
    for sig in TERMINATION_SIGNALS:
        prev = signal.getsignal(sig)
        if prev is signal.SIG_IGN:
            continue
        old[sig] = prev
        signal.signal(sig, _raise_terminated)
    return old


def interrupted_exit_code(exc: BaseException | None = None) -> int:
    """The exit code of an interrupted command: 128 + the signal (130 for Ctrl-C/SIGINT, 143
    for SIGTERM, 129 for SIGHUP); ``exc``: the interrupt caught, if any."""
    if isinstance(exc, Terminated):
        return 128 + exc.signum
    return EXIT_INTERRUPTED


def run_cli(prog: str, main: Callable[[list[str] | None], int],
            argv: list[str] | None = None) -> int:
    """Run ``main(argv)`` and return its exit code; bad input is one line on stderr, code 2.

    ``FileNotFoundError``/``PermissionError``/``IsADirectoryError`` (a path the user gave) are
    reported the same way as a :class:`NeurodeployError`. Ctrl-C (SIGINT), SIGTERM and SIGHUP
    end the command with one line ``prog: interrupted`` / ``prog: terminated (SIGTERM)`` and
    exit code 128 + the signal; a ``main`` that catches the interrupt itself and returns 130
    after a SIGTERM/SIGHUP gets that signal's code instead.
    """
    global _received, _command
    _received = None
    _command = prog
    old = _install_termination_handlers()
    try:
        code = int(main(argv) or 0)
        if code == EXIT_INTERRUPTED and _received is not None:
            code = 128 + _received
        return code
    except (NeurodeployError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        if isinstance(e, Terminated):
            print(f"{prog}: terminated ({signal.Signals(e.signum).name})", file=sys.stderr)
        else:
            print(f"{prog}: interrupted", file=sys.stderr)
        return interrupted_exit_code(e)
    except BrokenPipeError:  # `... | head`: the reader went away; not an error of ours
        sys.stderr.close()
        return EXIT_OK
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def add_output_flags(ap: argparse.ArgumentParser) -> None:
    """The flags every command shares: ``--json`` and ``--no-progress``/``--quiet``/``-q``."""
    ap.add_argument("--json", action="store_true",
                    help="print the summary as one JSON object on stdout (no tables)")
    ap.add_argument("--no-progress", "--quiet", "-q", dest="no_progress", action="store_true",
                    help="no progress bar (one is drawn only when stderr is a terminal)")


def wants_progress(args: argparse.Namespace) -> bool:
    """Whether a command should draw progress bars: ``--no-progress`` not given and stderr is a
    terminal (a bar redrawn into a log file or a pipe is only noise).

    Pass the result as the ``progress=`` option of a target's ``run``: a target that draws with
    :func:`progress`/:func:`progress_bar` checks the terminal again, one that runs in a worker
    process (whose stderr is a pipe back to us) relies on this answer.
    """
    return not getattr(args, "no_progress", False) and _stderr_is_terminal()


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "",
             enabled: bool = True, unit: str = "it") -> Iterator[T]:
    """``items`` with a tqdm bar on stderr when ``enabled`` and stderr is a terminal."""
    if not enabled or not _stderr_is_terminal():
        yield from items
        return
    # tqdm is not one of core's dependencies (numpy, nir, h5py: what the Lava environment is
    # promised): it is imported only when a bar is drawn.
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)


def progress_bar(total: int, *, desc: str = "", enabled: bool = True, unit: str = "it") -> Any:
    """A tqdm bar to ``update(n)`` by hand, or a no-op object off a terminal / when disabled."""
    if enabled and _stderr_is_terminal():
        from tqdm import tqdm  # not a dependency of core (see progress)

        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)
    return _NoBar()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def check_writable(path: str | Path | None, what: str = "output") -> Path | None:
    """Refuse an output path that cannot be written, before any work is done.

    A missing parent folder is created (every command does the same). Returns the path, or
    None when ``path`` is None.

    Raises:
        UserError: the path is a folder, or its folder cannot be created or written.
    """
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} {p} is a folder; give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{what} {p}: cannot create its folder ({e.strerror})") from None
    if not os.access(p.parent, os.W_OK):
        raise UserError(f"{what} {p}: folder {p.parent} is not writable")
    # os.access answers yes for root everywhere, also where writing fails (/proc): try it
    try:
        with tempfile.TemporaryFile(dir=p.parent):
            pass
    except OSError as e:
        raise UserError(f"{what} {p}: cannot write in {p.parent} "
                        f"({(e.strerror or str(e)).lower()})") from None
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError(f"{what} {p}: the file exists and is not writable")
    return p


# The --json envelope's schema id: bump the number when a field of the envelope changes meaning.
JSON_SCHEMA = "neurodeploy/1"
# Envelope keys: a command's own summary never uses them for anything else.
ENVELOPE_KEYS = ("schema", "command", "version", "warnings")


def package_version() -> str:
    """neurodeploy's installed version (pyproject.toml's ``version``), or ``"unknown"`` when run
    from a checkout that was never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neurodeploy")
    except PackageNotFoundError:
        return "unknown"


def json_envelope(obj: Any, command: str | None = None) -> dict[str, Any]:
    """The one JSON layout every command's ``--json`` prints (docs/json.md).

    ``{"schema": "neurodeploy/1", "command": <prog>, "version": <package version>,
    "warnings": [str, ...], <the command's own fields>...}``: the envelope's four keys come
    first and the command's summary fields sit beside them (so a reader written for a command's
    fields keeps working). ``obj``: a dict or a dataclass (serialised by :func:`to_jsonable`);
    anything else (a list, a number) goes under ``"result"``. A ``warnings`` field of ``obj`` is
    the envelope's (made a list of strings; absent: ``[]``). ``command``: defaults to the
    ``prog`` that :func:`run_cli` runs now.

    Raises:
        ValueError: ``obj`` uses ``schema``, ``command`` or ``version`` for something else.
    """
    plain = to_jsonable(obj)
    if not isinstance(plain, dict):
        plain = {"result": plain}
    clash = [k for k in ("schema", "command", "version") if k in plain]
    if clash:
        raise ValueError(f"a command summary may not use the envelope keys {clash}")
    warnings = plain.pop("warnings", None) or []
    if isinstance(warnings, str):
        warnings = [warnings]
    # the module a user runs (``python -m train`` -> ``train``), as in the command's error lines
    name = (command or _command or Path(sys.argv[0]).stem).removeprefix("python -m ")
    return {"schema": JSON_SCHEMA, "command": name,
            "version": package_version(), "warnings": [str(w) for w in warnings], **plain}


def print_json(obj: Any, command: str | None = None) -> None:
    """One JSON object on stdout: ``obj`` (a dict or dataclass; numpy values, paths made
    plain) inside the shared envelope (:func:`json_envelope`).

    Strict JSON: a non-finite float is written as ``null`` (see :func:`to_jsonable`).
    """
    print(json.dumps(json_envelope(obj, command), indent=2, sort_keys=False, allow_nan=False),
          flush=True)


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types for dataclasses, numpy values and paths (recursively).

    NaN and infinities become None: JSON has no literal for them, and Python's ``NaN`` token
    is rejected by strict readers (``jq``, JavaScript).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
