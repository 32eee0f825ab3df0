"""The training hyperparameters a model ships with (torch-free, so listing models stays light).

Every model class carries one :class:`TrainingDefaults` as its ``TRAINING`` attribute: what
``python -m train --model NAME`` uses when a flag is not given. An explicit flag (or keyword of
``train.loop.train_model``) overrides the matching field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from core.encoding import ENCODINGS
from core.errors import ConfigError

SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainingDefaults:
    """Hyperparameters of one training run (Adam, cross-entropy on the time-averaged logits).

    Attributes:
        lr: Adam's learning rate (the peak of the cosine schedule).
        batch_size: training mini-batch size (samples).
        schedule: ``"cosine"`` (from ``lr`` down to 0 over all epochs) or ``"constant"``.
        epochs: passes over the training split.
        timesteps: simulation steps T per sample.
        encoding: input coding, a name of ``core.encoding.ENCODINGS`` (``"direct"``, ``"rate"``).

    The field defaults are the CLI's historical defaults, measured on fc_snn (MNIST, 97.67 % test
    after 3 epochs: docs/model-zoo.md).

    Raises:
        ConfigError: a field out of range (checked at construction).
    """

    lr: float = 2e-3
    batch_size: int = 64
    schedule: str = "cosine"
    epochs: int = 3
    timesteps: int = 4
    encoding: str = "direct"

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, int | float) and self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be a positive number, got {self.lr!r}")
        for name, low in (("batch_size", 1), ("epochs", 0), ("timesteps", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}"
            )
        if self.encoding not in ENCODINGS:
            raise ConfigError(
                f"unknown encoding {self.encoding!r}; valid encodings: {', '.join(ENCODINGS)}"
            )

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for logs and JSON)."""
        return asdict(self)
