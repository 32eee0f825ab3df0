"""Torch modules: the LIF neuron, the shared layers and model protocol, the seed architectures
(no deployment code).

Names are imported lazily, so ``import models.registry`` (model names) does not import torch.
The model protocol (what a model of your own provides) is in ``models/layers.py``.
"""

import importlib

_EXPORTS = {
    "LIF": "models.neuron",
    "validate_beta": "models.neuron",
    "SpikingModel": "models.layers",
    "seq_to_ann": "models.layers",
    "time_major_input": "models.layers",
    "TrainingDefaults": "models.defaults",
    "FCSNN": "models.fc_snn",
    "ConvSNN": "models.conv_snn",
    "MODELS": "models.registry",
    "resolve": "models.registry",
    "build_model": "models.registry",
    "default_config": "models.registry",
    "training_defaults": "models.registry",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
