"""Run records on disk: spikes, readouts, states and counters of a :class:`RunResult` as .npz.

One target's run (``--record`` of ``targets.torch_ref``, ``targets.event_sim``, the Lava
command and ``targets.mfi``; :func:`save_record` / :func:`load_record`)::

    spikes/<population>      bool  [N, T, size]   N samples, T timesteps, size neurons
    readouts/<readout>       int64 [N, T, size]   per step, readout bias not included
    states/<population>/u    int64 [N, T, size]   only with --record-state
    states/<population>/v    int64 [N, T, size]   only with --record-state
    counters                 str   ()             a JSON object (synaptic_events, ac, mac, ...)
    labels                   int64 [N]            when labels were given or come from a dataset
    scores                   int64 [N, classes]   class scores (readout summed over T plus
                                                  T x bias), when the graph has one readout

Several targets' runs of the same inputs (``targets.verify --record``; :func:`save_records` /
:func:`load_records`): every key above except ``labels`` under a ``<target>/`` prefix (e.g.
``event_sim/spikes/h1``, ``torch_ref/scores``), plus

    targets                  str   [K]            the target names in run order (the first is
                                                  the reference every other was compared with)
    labels                   int64 [N]            once, as above

Records are aligned to the trained model's time axis on every target (see targets/base.py), so
equal runs give equal arrays. numpy only: the Lava environment reads and writes these files.

A long run's records are streamed (:class:`RecordWriter`): each chunk of samples is appended
to one uncompressed ``.npy`` file per key in a hidden folder beside the output, and at the end
those files are deflated one by one into the ``.npz`` (the same file :func:`save_record`
writes), so that memory holds one chunk, never the whole run. An interrupted run leaves
neither the output nor the folder.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError
from core.files import write_atomic
from targets.base import RunResult

TARGETS_KEY = "targets"


def record_arrays(result: RunResult, prefix: str = "") -> dict[str, np.ndarray]:
    """The arrays of one run under the key layout of the module docstring, each key prefixed
    by ``prefix`` (``""`` or ``"<target>/"``)."""
    arrays: dict[str, np.ndarray] = {}
    for k, v in result.spikes.items():
        arrays[f"{prefix}spikes/{k}"] = np.asarray(v)
    for k, v in result.readouts.items():
        arrays[f"{prefix}readouts/{k}"] = np.asarray(v)
    for k, (u, v) in result.states.items():
        arrays[f"{prefix}states/{k}/u"] = np.asarray(u)
        arrays[f"{prefix}states/{k}/v"] = np.asarray(v)
    arrays[f"{prefix}counters"] = np.array(json.dumps(result.counters))
    return arrays


def save_record(path: str | Path, result: RunResult, extra: dict[str, Any] | None = None) -> None:
    """Write one target's run to ``path`` (.npz, atomically), plus the arrays in ``extra``
    (``labels``, ``scores``) under their own names."""
    arrays = record_arrays(result)
    for k, v in (extra or {}).items():
        arrays[k] = np.asarray(v)
    _write_npz(path, arrays)


def save_records(path: str | Path, results: dict[str, RunResult],
                 extra: dict[str, Any] | None = None) -> None:
    """Write several targets' runs of the same inputs to one .npz file (atomically).

    ``results``: target name -> its run, in run order. ``extra``: arrays under their own names;
    a key ``<target>/...`` (e.g. ``"event_sim/scores"``) belongs to that target.

    Raises:
        UserError: a target name is empty or contains "/" (it would break the key layout).
    """
    arrays: dict[str, np.ndarray] = {TARGETS_KEY: np.array(list(results), dtype=str)}
    for name, result in results.items():
        if not name or "/" in name:
            raise UserError(f"target name {name!r} cannot name a record group")
        arrays.update(record_arrays(result, f"{name}/"))
    for k, v in (extra or {}).items():
        arrays[k] = np.asarray(v)
    _write_npz(path, arrays)


def _write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: str) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        Path(tmp).write_bytes(buf.getvalue())

    write_atomic(path, write)


def _result_from(z: Any, prefix: str = "") -> RunResult:
    keys = [k[len(prefix):] for k in z.files if k.startswith(prefix)]
    spikes = {k[7:]: z[prefix + k] for k in keys if k.startswith("spikes/")}
    readouts = {k[9:]: z[prefix + k] for k in keys if k.startswith("readouts/")}
    counters = json.loads(str(z[prefix + "counters"])) if "counters" in keys else {}
    states = {}
    for k in keys:
        if k.startswith("states/") and k.endswith("/u"):
            name = k[7:-2]
            states[name] = (z[prefix + k], z[f"{prefix}states/{name}/v"])
    return RunResult(spikes, readouts, counters, states)


def load_record(path: str | Path, target: str | None = None) -> RunResult:
    """Read one run back: a file of :func:`save_record`, or with ``target`` that target's run
    from a file of :func:`save_records`.

    Raises:
        UserError: ``target`` is not in the file, or the file holds several targets' runs and
            ``target`` is None.
    """
    with np.load(path, allow_pickle=False) as z:
        if TARGETS_KEY in z.files:
            names = [str(t) for t in z[TARGETS_KEY]]
            if target not in names:
                raise UserError(f"{path} holds the runs of {', '.join(names)}: name one")
            return _result_from(z, f"{target}/")
        if target is not None:
            raise UserError(f"{path} holds one run, not per-target runs")
        return _result_from(z)


def load_records(path: str | Path) -> dict[str, RunResult]:
    """Every target's run from a file of :func:`save_records` (target name -> run, in run
    order).

    Raises:
        UserError: the file holds one run (written by :func:`save_record`; read it with
            :func:`load_record`).
    """
    with np.load(path, allow_pickle=False) as z:
        if TARGETS_KEY not in z.files:
            raise UserError(f"{path} holds one run, not per-target runs: use load_record")
        return {str(t): _result_from(z, f"{t}/") for t in z[TARGETS_KEY]}


class RecordWriter:
    """Streams a run's records to an ``.npz`` chunk by chunk (layout: the module docstring).

    ``n_samples``: the run's total; every per-sample array (``spikes/...``, ``readouts/...``,
    ``states/...``, ``labels``, ``scores``) must reach exactly that many rows. Use as a context
    manager: on an exception (Ctrl-C included) the temporary folder is removed and ``path`` is
    left as it was; :meth:`close` writes ``path`` atomically.

        with RecordWriter("out.npz", n) as w:
            for chunk in chunks:
                w.append(record_arrays(run(chunk)) | {"labels": y[chunk]})
            w.close({"counters": np.array(json.dumps(counters))})
    """

    def __init__(self, path: str | Path, n_samples: int) -> None:
        self.path = Path(path)
        self.n = int(n_samples)
        # made on entering the context (or at the first append), not here: an interrupt
        # between construction and the `with` would leave it behind
        self._dir: Path | None = None
        self._files: dict[str, Any] = {}  # key -> open .npy file
        self._rows: dict[str, int] = {}

    def _folder(self) -> Path:
        if self._dir is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".parts",
                                              dir=self.path.parent))
        return self._dir

    def append(self, arrays: dict[str, np.ndarray]) -> None:
        """Append one chunk: every array [k, ...] holds the chunk's k samples (consecutive
        after the previous chunk's). The first chunk fixes each key's dtype and row shape."""
        for key, a in arrays.items():
            a = np.ascontiguousarray(a)
            f = self._files.get(key)
            if f is None:
                f = self._files[key] = open(self._folder() / f"{len(self._files)}.npy", "wb")
                self._rows[key] = 0
                header = np.lib.format.header_data_from_array_1_0(a)
                header["shape"] = (self.n, *a.shape[1:])
                np.lib.format.write_array_header_1_0(f, header)
            if self._rows[key] + len(a) > self.n:
                raise ValueError(f"{key}: more than {self.n} samples appended")
            f.write(a.tobytes())
            self._rows[key] += len(a)

    def close(self, extra: dict[str, Any] | None = None) -> None:
        """Finish the file: every streamed key complete, plus the arrays of ``extra`` (small
        ones: ``counters``, ``targets``) under their own names; written atomically.

        Raises:
            ValueError: a streamed key got fewer rows than ``n_samples``.
        """
        for f in self._files.values():
            f.close()
        short = {k: r for k, r in self._rows.items() if r != self.n}
        if short:
            self.abort()
            raise ValueError(f"records incomplete: {short} of {self.n} samples")
        names = {k: self._folder() / f"{i}.npy" for i, k in enumerate(self._files)}

        def write(tmp: str) -> None:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED,
                                 allowZip64=True) as zf:
                for key, part in names.items():
                    zf.write(part, arcname=f"{key}.npy")  # copied in blocks, never whole
                for key, value in (extra or {}).items():
                    buf = io.BytesIO()
                    np.lib.format.write_array(buf, np.asarray(value), allow_pickle=False)
                    zf.writestr(f"{key}.npy", buf.getvalue())

        try:
            write_atomic(self.path, write)
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop everything streamed so far (the output file is not touched)."""
        for f in self._files.values():
            f.close()
        self._files.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RecordWriter:
        self._folder()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.abort()
