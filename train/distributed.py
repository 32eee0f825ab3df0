"""Multi-GPU (or multi-process CPU) training with torch DistributedDataParallel under torchrun.

    torchrun --standalone --nproc_per_node=4 -m train --model ds_resnet --dataset mnist \\
        --epochs 40 -o ds_resnet.pt
    torchrun --standalone --nproc_per_node=4 -m train --resume ds_resnet.pt   # after a stop

``python -m train`` needs no flag: started by ``torchrun`` (which sets ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) with more than one process, every
process joins one process group (NCCL on GPUs, one GPU per process by ``LOCAL_RANK``; gloo on
the CPU) and trains the same model wrapped in ``DistributedDataParallel``:

- the data order, learning-rate schedule and encoding seeds are the single-process run's
  (train.loop): every process walks the same seeded batches, and each takes its contiguous
  share of every global batch (:func:`part`), so ``--batch-size`` stays the global batch
  and the number of optimizer steps per epoch is unchanged; DDP averages the gradients;
- training loss and accuracy are summed over the processes (:func:`all_sum`);
- every process validates on the whole split (the numbers are identical on each; only the
  first prints) and only rank 0 writes the checkpoint, after every epoch as always, with the
  plain model's weights (no ``module.`` prefix): the checkpoint is the one a single-process
  run writes, and ``--resume`` continues it with any number of processes, or with one;
- batch normalization layers become ``SyncBatchNorm`` on GPUs (statistics over the global
  batch, as in a single-process run); on the CPU (gloo, the tests) they keep per-process
  statistics.

Stopping: Ctrl-C or SIGTERM reaches every process through torchrun; each stops as a
single-process run does (the last completed epoch is in the checkpoint).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """This process's place in a torchrun job: ``rank`` of ``world_size``, ``local_rank`` on
    its machine, and the torch ``device`` it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True for rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0


def is_main_process() -> bool:
    """True unless this is a torchrun process of rank > 0 (which prints no summary)."""
    return int(os.environ.get("RANK", "0")) == 0


def launched() -> bool:
    """True when this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str | None = None) -> DistContext | None:
    """Join the torchrun job (None when not launched by torchrun with >1 processes).

    ``device``: ``"cuda"``/None picks GPU ``LOCAL_RANK`` when CUDA is available (backend NCCL),
    ``"cpu"`` forces the CPU (backend gloo).

    Raises:
        RuntimeError: the process group cannot be formed (torch's own message).
    """
    if not launched():
        return None
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistContext(rank, world, local, dev)


def sync_batchnorm(model: nn.Module, ctx: DistContext | None) -> nn.Module:
    """On GPUs, ``model`` with its batch norms as SyncBatchNorm (same parameters and state-dict
    keys; call before the optimizer is made, as the layers are replaced); else ``model``."""
    if ctx is None or ctx.device.type != "cuda":
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap(model: nn.Module, ctx: DistContext | None) -> nn.Module:
    """``model`` in DistributedDataParallel for ``ctx`` (``model`` itself without one). The
    wrapper shares ``model``'s parameters: the optimizer and checkpoints keep using
    ``model``."""
    if ctx is None:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if ctx.device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[ctx.local_rank])
    return DistributedDataParallel(model)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel wrapper (else ``model``)."""
    return getattr(model, "module", model)


def part(ctx: DistContext | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """This rank's contiguous share of a global batch of indices (None without ``ctx``).

    Shares differ in size by at most one (equal when the batch size is a multiple of the
    number of processes: then the averaged gradient is the global batch's; give such a
    ``--batch-size``). A last batch smaller than the number of processes is taken whole by
    every process (each computes the same gradient, whose average is that batch's; its loss
    and accuracy then count once per process in the epoch's training statistics): DDP needs
    every process in every step, and an empty batch has no mean loss.
    """
    if ctx is None:
        return None

    def share(idx: np.ndarray) -> np.ndarray:
        n = len(idx)
        if n < ctx.world_size:
            return idx
        lo = ctx.rank * n // ctx.world_size
        hi = (ctx.rank + 1) * n // ctx.world_size
        return idx[lo:hi]

    return share


def all_sum(ctx: DistContext | None, *values: float) -> tuple[float, ...]:
    """``values`` summed over every process of the job (themselves without ``ctx``)."""
    if ctx is None:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return tuple(float(v) for v in t.cpu())


def cleanup(ctx: DistContext | None) -> None:
    """Leave the process group (after training, or when stopping)."""
    if ctx is None:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
