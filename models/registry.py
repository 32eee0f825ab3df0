"""Model names -> constructors, and per-dataset default configurations."""

from __future__ import annotations

from torch import nn

from models.conv_snn import ConvSNN
from models.fc_snn import FCSNN
from train.data import input_shape, num_classes

MODELS = {"fc_snn": FCSNN, "conv_snn": ConvSNN}


def _check(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")


def build_model(name: str, config: dict) -> nn.Module:
    """Instantiate model ``name`` with ``config`` as constructor keyword arguments."""
    _check(name)
    try:
        return MODELS[name](**dict(config))
    except TypeError as e:
        raise ValueError(f"bad config for model {name!r}: {e}") from e


def default_config(name: str, dataset: str) -> dict:
    """Constructor kwargs for ``name`` sized for ``dataset`` (plain types only)."""
    _check(name)
    h, w = input_shape(dataset)
    n_out = num_classes(dataset)
    if name == "fc_snn":
        return {"n_in": h * w, "n_hidden": 256, "n_out": n_out, "beta": 0.5, "threshold": 1.0}
    return {
        "in_shape": [1, h, w],
        "c1": 8,
        "c2": 16,
        "n_out": n_out,
        "beta": 0.5,
        "threshold": 1.0,
    }
