"""The checkpoint format, kept importable here for users: it lives in :mod:`models.checkpoint`
(below ``convert``, which exports checkpoints, and ``train``, which writes them)."""

from models.checkpoint import (  # noqa: F401 (re-exported)
    FORMAT,
    PRODUCER,
    REQUIRED_KEYS,
    VERSION,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    validate_checkpoint,
)

__all__ = ["FORMAT", "PRODUCER", "REQUIRED_KEYS", "VERSION", "CheckpointError",
           "load_checkpoint", "model_from_checkpoint", "save_checkpoint", "validate_checkpoint"]
