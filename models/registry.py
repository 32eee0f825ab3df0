"""Model specs -> model classes: the registered names, and your own models by import path.

A **model spec** is a registered name (``"fc_snn"``, ``"cml_net"``, ... : :data:`MODELS`) or an
import path ``"package.module:ClassName"`` of your own model. Checkpoints store the spec under
``"model"``, so :func:`build_model` rebuilds the model from a checkpoint alone (for an import
path, that module must be importable again where the checkpoint is loaded).

The class must follow the model protocol of ``models/layers.py`` (subclass
:class:`models.layers.SpikingModel`, or provide the same members): a ``torch.nn.Module`` with a
classmethod ``default_config(input_shape, num_classes) -> dict``, ``forward_with_spikes``,
``lif_names``, ``in_shape`` and optionally ``TRAINING`` (a
:class:`~models.defaults.TrainingDefaults`). Example::

    # my_pkg/my_module.py
    from models.layers import SpikingModel, TrainingDefaults

    class MyNet(SpikingModel):
        TRAINING = TrainingDefaults(lr=5e-3, epochs=2)
        ...

    python -m train --model my_pkg.my_module:MyNet --dataset digits -o my.pt

Listing the registered names does not import torch (the model modules import only when a
model is resolved).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError
from models.defaults import TrainingDefaults

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
    "sma_net": "models.sma_net:SMANet",
    "slssnn": "models.slssnn:SLSSNN",
}

#: What ``resolve`` requires of a class besides being a ``torch.nn.Module``.
PROTOCOL = ("default_config", "forward_with_spikes", "lif_names")


class _Registry(Mapping):
    def __getitem__(self, name: str) -> type[nn.Module]:
        return _import(_SPECS[name])

    def __iter__(self) -> Iterator[str]:
        return iter(_SPECS)

    def __len__(self) -> int:
        return len(_SPECS)


#: Registered name -> model class (imported on access).
MODELS: Mapping[str, type[nn.Module]] = _Registry()


def is_import_path(spec: str) -> bool:
    """Whether ``spec`` is a ``module:Class`` import path (rather than a registered name)."""
    return ":" in spec


def check_spec(spec: str) -> str:
    """``spec`` unchanged if it is a registered name or has the form of an import path
    (without importing anything).

    Raises:
        ConfigError: an unknown name; the message lists the registered ones.
    """
    if not isinstance(spec, str) or not (spec in _SPECS or _valid_path(spec)):
        raise ConfigError(
            f"unknown model {spec!r}; valid models: {', '.join(_SPECS)}, "
            "or an import path package.module:ClassName"
        )
    return spec


def _valid_path(spec: str) -> bool:
    module, _, attr = spec.partition(":")
    return bool(module and attr) and all(p.isidentifier() for p in (*module.split("."),
                                                                     *attr.split(".")))


def _import(path: str) -> type:
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def resolve(spec: str) -> type[nn.Module]:
    """The model class of ``spec`` (a registered name or ``"package.module:ClassName"``).

    Raises:
        ConfigError: an unknown name, a module that cannot be imported, a missing class, or a
            class that is not a ``torch.nn.Module`` following the protocol (:data:`PROTOCOL`).
    """
    check_spec(spec)
    path = _SPECS.get(spec, spec)
    try:
        cls = _import(path)
    except ImportError as e:
        raise ConfigError(f"model {spec!r}: cannot import module {path.split(':')[0]!r} "
                          f"({e})") from e
    except AttributeError:
        raise ConfigError(f"model {spec!r}: module {path.split(':')[0]!r} has no "
                          f"{path.split(':')[1]!r}") from None
    from torch import nn  # torch only once a model is actually needed (see the module doc)

    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"model {spec!r} is not a torch.nn.Module class")
    missing = [m for m in PROTOCOL if not hasattr(cls, m)]
    if missing:
        raise ConfigError(
            f"model {spec!r} lacks {', '.join(missing)} (subclass models.layers.SpikingModel; "
            "see docs/custom-models.md)"
        )
    return cls


def spec_of(model: nn.Module | type) -> str:
    """The spec that :func:`resolve` maps back to the class of ``model`` (its registered name,
    else ``"module:QualifiedName"``)."""
    cls = model if isinstance(model, type) else type(model)
    path = f"{cls.__module__}:{cls.__qualname__}"
    for name, registered in _SPECS.items():
        if registered == path:
            return name
    return path


def build_model(spec: str, config: Mapping[str, Any]) -> nn.Module:
    """Instantiate the model of ``spec`` with ``config`` as constructor keyword arguments.

    Raises:
        ConfigError: an unusable spec (see :func:`resolve`), or a config the constructor
            refuses (unknown or missing arguments, invalid values).
    """
    cls = resolve(spec)
    check_config(cls, config, spec)
    try:
        return cls(**dict(config))
    except TypeError as e:
        raise ConfigError(f"bad config for model {spec!r}: {e}") from e


def check_config(cls: type, config: Mapping[str, Any], spec: str | None = None) -> None:
    """Refuse a ``config`` whose keys the constructor of ``cls`` does not take (without
    building the model, so it is cheap to call before loading data).

    Raises:
        ConfigError: an unknown or missing constructor argument.
    """
    try:
        inspect.signature(cls).bind(**dict(config))
    except TypeError as e:
        raise ConfigError(f"bad config for model {spec or spec_of(cls)!r}: {e}") from e


def default_config(spec: str, input_shape: Sequence[int], num_classes: int) -> dict:
    """Constructor kwargs (plain types) of ``spec`` for samples of ``input_shape`` (``(H, W)``
    or ``(C, H, W)``) and ``num_classes`` classes: the class's own ``default_config``.

    Raises:
        ConfigError: an unusable spec (see :func:`resolve`).
    """
    return dict(resolve(spec).default_config(tuple(input_shape), int(num_classes)))


def published_config(spec: str, input_shape: Sequence[int], num_classes: int) -> dict:
    """The published-size constructor kwargs of ``spec`` (its module's ``PUBLISHED_CONFIG``,
    the configuration of the paper it comes from, sized for a GPU), with ``in_shape`` and
    ``n_out`` taken from :func:`default_config` for ``input_shape``/``num_classes`` so that it
    fits the dataset at hand.

    Raises:
        ConfigError: an unusable spec, or a model whose module defines no ``PUBLISHED_CONFIG``.
    """
    cls = resolve(spec)
    published = getattr(sys.modules.get(cls.__module__), "PUBLISHED_CONFIG", None)
    if not isinstance(published, dict):
        have = sorted(n for n, path in _SPECS.items() if isinstance(getattr(
            importlib.import_module(path.split(":")[0]), "PUBLISHED_CONFIG", None), dict))
        raise ConfigError(f"model {spec!r} has no published config (PUBLISHED_CONFIG in its "
                          f"module); models that have one: {', '.join(have)}")
    fitted = default_config(spec, input_shape, num_classes)
    return {**published, **{k: fitted[k] for k in ("in_shape", "n_out") if k in fitted}}


def training_defaults(spec: str) -> TrainingDefaults:
    """The training hyperparameters ``spec`` ships with (``TRAINING``, or the generic ones).

    Raises:
        ConfigError: an unusable spec, or a ``TRAINING`` that is not a TrainingDefaults.
    """
    training = getattr(resolve(spec), "TRAINING", TrainingDefaults())
    if not isinstance(training, TrainingDefaults):
        raise ConfigError(f"model {spec!r}: TRAINING must be a models.defaults.TrainingDefaults")
    return training
