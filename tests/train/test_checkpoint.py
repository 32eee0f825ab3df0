"""Checkpoint format: atomic save, safe load, and one clear refusal per kind of bad file."""

import os
import pickle

import pytest
import torch

from models.registry import build_model, default_config
from train.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)


def _ckpt():
    torch.manual_seed(0)
    cfg = default_config("conv_snn", (8, 8), 10)
    m = build_model("conv_snn", cfg)
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": "conv_snn",
        "config": cfg,
        "state_dict": m.state_dict(),
        "dataset": "digits",
        "encoding": {"kind": "rate", "timesteps": 4, "seed": 3, "input_scale": 1.0},
        "timesteps": 4,
        "metrics": {
            "test_accuracy": 0.5,
            "val_accuracy": 0.4,
            "train_loss": 1.0,
            "epochs": 1,
            "wall_time_s": 0.1,
            "history": [{"epoch": 1, "val_accuracy": 0.4}],
        },
        "seed": 3,
        "producer": "neurodeploy 0.1.0",
    }, m


def _one_sentence(e):
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 300
    return msg


def test_roundtrip_and_model_rebuild(tmp_path):
    ck, m = _ckpt()
    p = tmp_path / "c.pt"
    save_checkpoint(p, ck)
    got = load_checkpoint(p)
    assert got["config"] == ck["config"] and got["encoding"] == ck["encoding"]
    assert got["metrics"]["history"] == ck["metrics"]["history"]
    for k, v in ck["state_dict"].items():
        assert torch.equal(got["state_dict"][k], v)
    m2 = model_from_checkpoint(got)
    x = torch.rand(4, 2, 1, 8, 8) * 3
    assert torch.equal(m2(x), m.eval()(x))
    # atomic write leaves no temp files behind, and overwriting works
    save_checkpoint(p, ck)
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]


def test_save_creates_missing_folder_and_refuses_unwritable(tmp_path):
    ck, _ = _ckpt()
    p = tmp_path / "no" / "such" / "c.pt"
    save_checkpoint(p, ck)  # as every command: a missing output folder is created
    assert load_checkpoint(p)["config"] == ck["config"]
    assert os.listdir(p.parent) == ["c.pt"]
    with pytest.raises(CheckpointError, match="cannot write checkpoint") as e:
        save_checkpoint(p / "c.pt", ck)  # its folder would be a file
    _one_sentence(e)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist") as e:
        load_checkpoint(tmp_path / "nope.pt")
    _one_sentence(e)


@pytest.mark.parametrize("cut", [0, 10, 0.5, -30])
def test_truncated_or_corrupt(tmp_path, cut):
    ck, _ = _ckpt()
    p = tmp_path / "c.pt"
    save_checkpoint(p, ck)
    data = p.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else cut % len(data)
    p.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="corrupt|truncated") as e:
        load_checkpoint(p)
    _one_sentence(e)


class Payload:
    """An arbitrary object: loading it must never execute its __reduce__."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_foreign_pickle_with_arbitrary_object_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ck, _ = _ckpt()
    p = tmp_path / "evil.pt"
    torch.save({**ck, "extra": Payload()}, p)
    with pytest.raises(CheckpointError, match="refused") as e:
        load_checkpoint(p)
    _one_sentence(e)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"x": Payload()}))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(raw)
    assert not (tmp_path / "PWNED").exists()


def test_wrong_format_version_and_model(tmp_path):
    ck, m = _ckpt()
    p = tmp_path / "c.pt"
    torch.save(m.state_dict(), p)  # a bare state dict: not our format
    with pytest.raises(CheckpointError, match="not a neurodeploy checkpoint") as e:
        load_checkpoint(p)
    _one_sentence(e)
    torch.save([1, 2, 3], p)
    with pytest.raises(CheckpointError, match="not a neurodeploy checkpoint"):
        load_checkpoint(p)
    torch.save({**ck, "version": 99}, p)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(p)
    torch.save({**ck, "model": "resnet99"}, p)
    with pytest.raises(CheckpointError, match="unknown model 'resnet99'") as e:
        load_checkpoint(p)
    _one_sentence(e)
    torch.save({**ck, "model": "no_such_pkg_xyz.net:Net"}, p)  # a user model not installed
    with pytest.raises(CheckpointError, match="cannot import module 'no_such_pkg_xyz.net'") as e:
        load_checkpoint(p)
    _one_sentence(e)
    bad = dict(ck)
    del bad["state_dict"]
    torch.save(bad, p)
    with pytest.raises(CheckpointError, match="lacks required entries: state_dict"):
        load_checkpoint(p)


def test_mismatched_weights(tmp_path):
    ck, _ = _ckpt()
    ck["config"] = {**ck["config"], "c1": 4}
    with pytest.raises(CheckpointError, match="do not fit"):
        model_from_checkpoint(ck)
