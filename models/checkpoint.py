"""The checkpoint format (``ckpt.pt``): save atomically, load safely (``weights_only=True``).

A checkpoint is a dict of plain Python types and tensors::

    {"format": "neurodeploy.ckpt", "version": 1,
     "model": spec, "config": {...constructor kwargs...}, "state_dict": {...},
     "dataset": name,
     "encoding": {"kind": "direct"|"rate", "timesteps": T, "seed": int, "input_scale": float},
     "timesteps": T,
     "metrics": {"test_accuracy", "val_accuracy", "train_loss", "epochs", "wall_time_s",
                 "history": [...], "train_samples", "val_samples", "test_samples",
                 "complete"},
     "seed": int, "producer": "neurodeploy 0.1.0"}

``spec`` is a registered model name or the import path ``"package.module:ClassName"`` of a
model of your own (``models.registry``); loading such a checkpoint imports that module. An
optional ``"resume"`` entry holds the optimizer state, the epochs done (``"epoch"``), the
run's target (``"total_epochs"``), the training hyperparameters, ``"limit"``/``"eval_limit"`` and
where each hyperparameter came from (``"sources"``) for ``--resume``. ``val_samples`` and
``test_samples`` count the samples the accuracies were measured on (``--eval-limit``);
``complete`` is False until every epoch is trained and the test split evaluated (test accuracy
NaN before).
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch

from core.errors import CheckpointError, ConfigError
from core.files import write_atomic
from models.registry import build_model, resolve

FORMAT = "neurodeploy.ckpt"
VERSION = 1
PRODUCER = "neurodeploy 0.1.0"
REQUIRED_KEYS = ("model", "config", "state_dict", "dataset", "encoding", "timesteps")


def save_checkpoint(path: str | os.PathLike, ckpt: dict) -> None:
    """Write ``ckpt`` to ``path`` atomically (``core.files.write_atomic``: a reader sees the old
    file or the complete new one); a missing folder is created.

    Raises:
        CheckpointError: the file or its folder cannot be written.
    """
    path = Path(path)
    ckpt = dict(ckpt)
    ckpt.setdefault("format", FORMAT)
    ckpt.setdefault("version", VERSION)
    ckpt.setdefault("producer", PRODUCER)
    try:
        write_atomic(path, lambda tmp: torch.save(ckpt, tmp))
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from e


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a checkpoint; raise ``CheckpointError`` for anything unusable."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "GLOBAL" in msg or "Unsupported global" in msg:
            raise CheckpointError(
                f"checkpoint {path} contains objects other than tensors and plain types and was "
                "refused for safety (weights_only loading)."
            ) from e
        raise CheckpointError(
            f"checkpoint {path} was refused by the safe loader (weights_only): it is not a "
            "torch checkpoint of tensors and plain types, or it is corrupt."
        ) from e
    except Exception as e:  # RuntimeError, EOFError, KeyError, IndexError, zipfile.BadZipFile, ...
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({_describe(e)}).") from e
    validate_checkpoint(ckpt, path)
    return ckpt


def validate_checkpoint(ckpt, path: str | os.PathLike = "<checkpoint>") -> None:
    """Raise ``CheckpointError`` unless ``ckpt`` is a dict in our format with a known model."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a neurodeploy checkpoint (no format {FORMAT!r}); "
            "create one with: python -m train ... -o ckpt.pt."
        )
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {ckpt.get('version')!r}, but this neurodeploy "
            f"reads version {VERSION}."
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks required entries: {', '.join(missing)}.")
    try:
        resolve(ckpt["model"])
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path} is for {e}") from e


def model_from_checkpoint(ckpt: dict):
    """Build the model of a (validated) checkpoint and load its weights; returns it in eval mode.

    Raises:
        CheckpointError: the config or the weights do not fit the model.
    """
    try:
        model = build_model(ckpt["model"], ckpt["config"])
        model.load_state_dict(ckpt["state_dict"])
    except (ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(
            f"checkpoint weights do not fit model {ckpt['model']!r}: {_first_line(e)}."
        ) from e
    return model.eval()


def _first_line(e: BaseException, limit: int = 100) -> str:
    """A short, single-line description of an exception for a one-sentence message."""
    text = " ".join(str(e).split())
    text = text.split(". ")[0].rstrip(".")
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text or type(e).__name__


def _describe(e: BaseException) -> str:
    detail = _first_line(e)
    name = type(e).__name__
    return name if detail == name else f"{name}: {detail}"
