"""Model names -> constructors, and per-dataset default configurations."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from core.datasets import input_shape, num_classes
from core.errors import ConfigError

if TYPE_CHECKING:  # torch is imported by the model modules only, so listing names stays light
    from torch import nn

# name -> "module:Class"; a model module imports only when that model is used.
_SPECS = {
    "fc_snn": "models.fc_snn:FCSNN",
    "conv_snn": "models.conv_snn:ConvSNN",
    "cml_net": "models.cml_net:CMLNet",
    "ds_resnet": "models.ds_resnet:DSResNet",
    "spiking_mlp": "models.spiking_mlp:SpikingMLP",
    "cml_spikformer": "models.cml_spikformer:CMLSpikformer",
}


class _Registry(Mapping):
    def __getitem__(self, name: str) -> type[nn.Module]:
        module, cls = _SPECS[name].split(":")
        return getattr(importlib.import_module(module), cls)

    def __iter__(self) -> Iterator[str]:
        return iter(_SPECS)

    def __len__(self) -> int:
        return len(_SPECS)


MODELS: Mapping[str, type[nn.Module]] = _Registry()


def _check(name: str) -> None:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")


def build_model(name: str, config: dict) -> nn.Module:
    """Instantiate model ``name`` with ``config`` as constructor keyword arguments."""
    _check(name)
    try:
        return MODELS[name](**dict(config))
    except TypeError as e:
        raise ConfigError(f"bad config for model {name!r}: {e}") from e


def default_config(name: str, dataset: str) -> dict:
    """Constructor kwargs for ``name`` sized for ``dataset`` (plain types only)."""
    _check(name)
    if name not in ("fc_snn", "conv_snn"):
        module = importlib.import_module(_SPECS[name].split(":")[0])
        return module.default_config(dataset)
    h, w = input_shape(dataset)
    n_out = num_classes(dataset)
    if name == "fc_snn":
        # 512 hidden neurons for 28x28 images: with T=4, the CLI defaults (Adam 2e-3, cosine,
        # batch 64) reach >= 97% MNIST test accuracy in 3 epochs (256 reach ~96.6-97.0%).
        # The tiny 8x8 digits set keeps 256.
        n_hidden = 512 if h * w >= 784 else 256
        return {"n_in": h * w, "n_hidden": n_hidden, "n_out": n_out, "beta": 0.5, "threshold": 1.0}
    return {
        "in_shape": [1, h, w],
        "c1": 8,
        "c2": 16,
        "n_out": n_out,
        "beta": 0.5,
        "threshold": 1.0,
    }
