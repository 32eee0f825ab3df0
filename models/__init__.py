"""Torch modules: the LIF neuron and the seed architectures (no deployment code).

Names are imported lazily, so ``import models.registry`` (model names, default configs) does not
import torch.
"""

import importlib

_EXPORTS = {
    "LIF": "models.neuron",
    "validate_beta": "models.neuron",
    "FCSNN": "models.fc_snn",
    "ConvSNN": "models.conv_snn",
    "MODELS": "models.registry",
    "build_model": "models.registry",
    "default_config": "models.registry",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
