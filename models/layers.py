"""What every spiking model shares: the time fold, the input check, and the model protocol.

**Tensors are time-major**: ``[T, B, ...]`` (T timesteps, B samples). Per-frame modules
(convolutions, pooling, BatchNorm) see T folded into the batch by :func:`seq_to_ann`
(SpikingJelly's ``seq_to_ann_forward``); LIF layers (``models.neuron.LIF``) run over T.

**The model protocol** (what ``python -m train``, ``train.checkpoint`` and ``convert`` rely on).
A model is a ``torch.nn.Module`` class, usually a subclass of :class:`SpikingModel`, with

- ``default_config(input_shape, num_classes) -> dict`` (classmethod): constructor keyword
  arguments, plain Python types only (they are stored in the checkpoint), for samples of
  ``input_shape`` (``(H, W)`` or ``(C, H, W)``, as ``core.datasets.input_shape`` gives) and
  ``num_classes`` classes;
- ``TRAINING``: a :class:`~models.defaults.TrainingDefaults` (learning rate, batch size,
  schedule, epochs, timesteps, encoding) used for every training flag not given explicitly
  (optional: :class:`SpikingModel` supplies the generic defaults);
- ``in_shape``: the per-sample input shape its forward pass computes on (``(C, H, W)``, or
  ``(N,)`` for a fully connected input);
- ``forward(x) -> logits [B, n_out]`` for ``x [T, B, *in_shape]`` and also for dataset images
  ``x [T, B, H, W]`` (train feeds those; :func:`time_major_input` adapts them);
- ``forward_with_spikes(x) -> (logits, {population name: spikes [T, B, ...]})`` and
  ``lif_names``: the names of its LIF populations in execution order (the spike records'
  keys; the exporter names the NIR populations the same way).

A subclass of :class:`SpikingModel` writes only ``__init__``, ``default_config``,
``compute_logits`` and ``lif_names`` (plus ``TRAINING`` when its measured hyperparameters differ
from the generic ones). Register a model by name in ``models/registry.py``, or pass it to
``python -m train --model my_pkg.my_module:MyNet`` by import path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import nn

from core.errors import ConfigError
from models.defaults import TrainingDefaults

__all__ = [
    "SpikingModel",
    "TrainingDefaults",
    "image_shape",
    "seq_to_ann",
    "time_major_input",
]


def seq_to_ann(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply a per-frame ``module`` to a time-major tensor by folding time into the batch.

    ``x [T, B, *in] -> [T * B, *in] -> module -> [T * B, *out] -> [T, B, *out]``: every
    timestep of every sample is one batch entry of ``module`` (a conv, pool or BatchNorm, or
    any callable on a batch). Samples and timesteps are never mixed, except by a module that
    pools statistics over its batch (BatchNorm in training mode: over T and B together).

    Raises:
        ConfigError: ``x`` has fewer than 2 dimensions (no time and batch axes).
    """
    if x.dim() < 2:
        raise ConfigError(f"expected a time-major tensor [T, B, ...], got shape {tuple(x.shape)}")
    t, b = x.shape[:2]
    y = module(x.reshape(t * b, *x.shape[2:]))
    return y.reshape(t, b, *y.shape[1:])


def time_major_input(x: torch.Tensor, in_shape: Sequence[int], model: str) -> torch.Tensor:
    """Check a model's input and bring it to ``[T, B, *in_shape]``.

    Accepted besides ``[T, B, *in_shape]`` itself: for a 3-D ``in_shape`` ``(1, H, W)``, images
    without the channel axis ``[T, B, H, W]`` (a channel axis is inserted); for a 1-D
    ``in_shape`` ``(N,)``, any ``[T, B, ...]`` whose trailing axes flatten to ``N`` (C-order
    flatten, as ``Tensor.flatten``). Nothing is copied when ``x`` already has the shape.

    Raises:
        ConfigError: any other shape; the message names ``model`` and the expected shape.
    """
    shape = tuple(int(d) for d in in_shape)
    if len(shape) == 1 and x.dim() > 3:
        x = x.flatten(2)
    elif len(shape) == 3 and shape[0] == 1 and x.dim() == 4:
        x = x.unsqueeze(2)
    if x.dim() != 2 + len(shape) or tuple(x.shape[2:]) != shape:
        raise ConfigError(
            f"{model} expects input [T, B, {', '.join(map(str, shape))}], "
            f"got shape {tuple(x.shape)}"
        )
    return x


def image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """A dataset's sample shape ``(H, W)`` or ``(C, H, W)`` as ``(C, H, W)`` (C = 1 for H, W).

    Raises:
        ConfigError: ``input_shape`` has neither 2 nor 3 positive entries.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"expected an image shape (H, W) or (C, H, W), got {tuple(input_shape)}")
    return shape


class SpikingModel(nn.Module):
    """Base class of the spiking models: input check, spike records, defaults (see the module
    docstring for the protocol).

    ``forward(x, return_spikes=False)`` checks ``x`` (:func:`time_major_input` against
    ``in_shape``) and calls :meth:`compute_logits`; subclasses implement that, set ``in_shape``
    in ``__init__`` and define ``lif_names`` and ``default_config``.
    """

    #: Training hyperparameters used when a flag is not given (subclasses override).
    TRAINING: ClassVar[TrainingDefaults] = TrainingDefaults()
    #: Per-sample input shape of the forward pass, set by the subclass's ``__init__``.
    in_shape: tuple[int, ...]

    @classmethod
    def default_config(cls, input_shape: Sequence[int], num_classes: int) -> dict:
        """Constructor kwargs (plain types) for samples of ``input_shape`` and ``num_classes``.

        Raises:
            NotImplementedError: the subclass does not define it.
        """
        raise NotImplementedError(f"{cls.__name__} does not define default_config")

    @property
    def lif_names(self) -> tuple[str, ...]:
        """Names of the spike records of :meth:`forward_with_spikes`, in execution order."""
        raise NotImplementedError(f"{type(self).__name__} does not define lif_names")

    def compute_logits(
        self, x: torch.Tensor, rec: dict[str, torch.Tensor] | None
    ) -> torch.Tensor:
        """Logits ``[B, n_out]`` for checked input ``x [T, B, *in_shape]``; when ``rec`` is a
        dict, also store every population's spikes ``[T, B, ...]`` in it under the names of
        :attr:`lif_names`, in that order."""
        raise NotImplementedError(f"{type(self).__name__} does not define compute_logits")

    def forward(self, x: torch.Tensor, return_spikes: bool = False):
        """Logits ``[B, n_out]`` of ``x [T, B, *in_shape]`` (or ``[T, B, H, W]`` images, see
        :func:`time_major_input`); with ``return_spikes`` also ``{name: spikes [T, B, ...]}``.

        Raises:
            ConfigError: ``x`` has a shape the model cannot take.
        """
        x = time_major_input(x, self.in_shape, type(self).__name__)
        rec: dict[str, torch.Tensor] | None = {} if return_spikes else None
        logits = self.compute_logits(x, rec)
        if return_spikes:
            return logits, rec
        return logits

    def forward_with_spikes(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(logits [B, n_out], {population name: spikes [T, B, ...]})``."""
        return self.forward(x, return_spikes=True)
