"""core.cli: progress only on a terminal, output paths checked up front, strict JSON."""

from __future__ import annotations

import argparse
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core.cli import check_writable, print_json, progress, progress_bar, to_jsonable, wants_progress
from core.errors import UserError


class _Stream(io.StringIO):
    """A stderr stand-in that says whether it is a terminal."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_progress_draws_only_on_a_terminal(monkeypatch, tty):
    err = _Stream(tty)
    monkeypatch.setattr("sys.stderr", err)
    assert list(progress(range(5), total=5, desc="work")) == [0, 1, 2, 3, 4]
    bar = progress_bar(3, desc="steps")
    bar.update(3)
    bar.close()
    if tty:
        assert "work" in err.getvalue() and "steps" in err.getvalue()
    else:
        assert err.getvalue() == ""


def test_progress_can_be_turned_off_on_a_terminal(monkeypatch):
    err = _Stream(True)
    monkeypatch.setattr("sys.stderr", err)
    assert list(progress(range(3), enabled=False)) == [0, 1, 2]
    progress_bar(3, enabled=False).update(3)
    assert err.getvalue() == ""


@pytest.mark.parametrize(("tty", "no_progress", "want"),
                         [(True, False, True), (True, True, False), (False, False, False)])
def test_wants_progress(monkeypatch, tty, no_progress, want):
    monkeypatch.setattr("sys.stderr", _Stream(tty))
    assert wants_progress(argparse.Namespace(no_progress=no_progress)) is want


def test_check_writable_creates_a_missing_folder(tmp_path):
    p = check_writable(tmp_path / "new" / "deeper" / "out.npz", "--record")
    assert p == tmp_path / "new" / "deeper" / "out.npz"
    assert p.parent.is_dir() and not p.exists()
    assert check_writable(None) is None


def test_check_writable_refuses_bad_paths(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match=r"--record .*file.txt.*cannot create its folder"):
        check_writable(tmp_path / "file.txt" / "out.npz", "--record")
    with pytest.raises(UserError, match="is a folder"):
        check_writable(tmp_path, "--record")


@dataclass
class _Row:
    name: str
    value: float


def test_json_is_strict_and_plain(capsys):
    obj = {"a": np.int64(3), "b": np.array([1.5, np.nan]), "c": _Row("x", math.inf),
           "d": Path("p/q"), "e": (np.float32(0.5), None)}
    assert to_jsonable(obj) == {"a": 3, "b": [1.5, None], "c": {"name": "x", "value": None},
                                "d": "p/q", "e": [0.5, None]}
    print_json(obj)
    assert json.loads(capsys.readouterr().out)["b"] == [1.5, None]
