"""Data-parallel training over ``torch.distributed`` ranks: process group, data shards and the
reductions that keep every rank taking the same optimizer step.

Launch with ``torchrun --nproc_per_node N -m fpscf.train --config config.yaml`` (or ``fpscf train
--distributed`` under torchrun): each rank reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the
environment torchrun sets, and joins a gloo group on CPUs or an NCCL group on GPUs (each rank on
``cuda:LOCAL_RANK``).

How one optimizer step stays the step a single process would take on the same global batch:

- Every rank builds the same global batches (same seed, same shuffling); rank r trains on the
  structures ``chunk[r::world_size]`` of each (:func:`local_share`), so ``batch_size`` is the
  global batch size whatever the number of ranks. A rank whose share is empty still takes part in
  every reduction.
- Losses are means over the labelled rows of the *global* batch: after the forward pass one
  all-reduce sums the row counts of every loss (and an SCF-failure flag), and each rank scales its
  local mean by local/global rows (:func:`global_row_counts`). The sum over ranks of the local
  losses is then the single-process loss, and the sum of their gradients its gradient.
- Gradients are summed by one explicit all-reduce after ``backward`` (:func:`sum_gradients`), not
  by DistributedDataParallel's hooks: the SCF's implicit backward (adjoint solves inside custom
  autograd functions) and the double backward of forces run as in one process, and the reduction
  sees only the finished ``.grad``. Clipping and the optimizer then act on identical gradients, so
  the parameters stay identical on every rank without broadcasts.
- A batch whose SCF fails on any rank is skipped on all (the flag rides on the row-count
  all-reduce), and every decision that ends a stage or the run is taken from reduced numbers, so
  no rank can wait in a collective that another has left.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
import torch.distributed as dist

from fpscf.errors import FpscfError

#: Environment variables torchrun sets.
_ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: How long a collective waits for a rank that does not arrive before the run fails.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


class DistributedSetupError(FpscfError, RuntimeError):
    """Distributed training was asked for but cannot start (not under torchrun, no GPU per rank, ...)."""


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the training processes.

    Attributes:
        rank: this process, 0 .. world_size - 1 (rank 0 writes every file).
        world_size: number of processes (1: no process group, no reductions).
        device: the torch device this rank trains on.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def writes(self) -> bool:
        """Whether this rank writes outputs (models, checkpoints, metrics, plots, progress)."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether the environment holds a torchrun launch (``WORLD_SIZE`` and ``RANK`` set)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def start(device: str, required: bool = False) -> Ranks:
    """Join the process group torchrun describes, or run alone.

    Args:
        device: the config's device (``cpu``, ``cuda``, ``cuda:0``); with several ranks a CUDA
            device becomes ``cuda:LOCAL_RANK`` and the backend NCCL, otherwise gloo.
        required: ``fpscf train --distributed``: not being under torchrun is an error.
    """
    if not launched_by_torchrun():
        if required:
            raise DistributedSetupError(
                "--distributed: no torchrun environment (RANK, WORLD_SIZE); launch with "
                "torchrun --nproc_per_node N -m fpscf.train --config CONFIG"
            )
        return Ranks(device=torch.device(device))
    missing = [name for name in _ENVIRONMENT if name not in os.environ]
    if missing:
        raise DistributedSetupError(f"distributed training: environment variables {missing} are not set; launch with torchrun")
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if world_size == 1 and not required:
        return Ranks(device=torch.device(device))
    where = torch.device(device)
    if where.type == "cuda":
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise DistributedSetupError(
                f"device {device!r}: rank {rank} needs cuda:{local_rank} but {torch.cuda.device_count()} GPUs are "
                "visible; start at most one process per GPU (--nproc_per_node), or train on device: cpu"
            )
        where = torch.device("cuda", local_rank)
        torch.cuda.set_device(where)
    if not dist.is_initialized():
        backend = "nccl" if where.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT, **({"device_id": where} if where.type == "cuda" else {}))
    return Ranks(rank=rank, world_size=world_size, device=where)


def stop(ranks: Ranks) -> None:
    """Leave the process group (after the last collective)."""
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def local_share(chunk: Sequence[int], ranks: Ranks) -> list[int]:
    """This rank's structures of one global batch: every ``world_size``-th, from its rank."""
    return list(chunk[ranks.rank :: ranks.world_size])


def all_reduce_sum(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Sum of ``values`` over ranks (a new tensor; the input alone without a process group)."""
    if not ranks.distributed:
        return values
    total = values.detach().to(ranks.device, copy=True)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def global_row_counts(names: Sequence[str], rows: dict[str, int], failed: bool, ranks: Ranks) -> tuple[bool, dict[str, int]]:
    """One all-reduce: whether the SCF failed on any rank, and each loss's labelled rows over all ranks.

    Args:
        names: every loss that may appear, in the same order on all ranks.
        rows: this rank's labelled rows per loss (absent: 0).
        failed: whether this rank's forward pass failed.
    """
    local = torch.tensor([float(failed)] + [float(rows.get(name, 0)) for name in names], dtype=torch.float64)
    total = all_reduce_sum(local, ranks).cpu()
    return bool(total[0] > 0), {name: int(round(float(count))) for name, count in zip(names, total[1:])}


def sum_gradients(parameters: Iterable[torch.nn.Parameter], extra: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Sum every parameter's ``.grad`` over ranks, in place, in one all-reduce; returns ``extra``
    (a 1-D tensor of numbers to sum alongside, e.g. the batch loss) summed.

    A gradient that is None on every rank stays None (the optimizer skips that parameter, as one
    process would); one that is None on some ranks counts as zero there.
    """
    params = [p for p in parameters if p.requires_grad]
    pieces = [extra.detach().reshape(-1).to(device=ranks.device, dtype=torch.float64)]
    pieces.append(torch.tensor([float(p.grad is not None) for p in params], dtype=torch.float64, device=ranks.device))
    for p in params:
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        pieces.append(grad.detach().reshape(-1).to(torch.float64))
    flat = all_reduce_sum(torch.cat(pieces), ranks)
    extra_sum, offset = flat[: extra.numel()], extra.numel()
    present, offset = flat[offset : offset + len(params)], offset + len(params)
    for index, p in enumerate(params):
        size = p.numel()
        if float(present[index]) > 0:
            p.grad = flat[offset : offset + size].reshape(p.shape).to(p.dtype)
        offset += size
    return extra_sum


def broadcast_parameters(model: torch.nn.Module, ranks: Ranks) -> None:
    """Every rank takes rank 0's parameters and buffers (they are built from the same seed or read
    from the same checkpoint; this makes sure)."""
    if not ranks.distributed:
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


def gather_objects(value: Any, ranks: Ranks) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order."""
    if not ranks.distributed:
        return [value]
    gathered: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(ranks: Ranks) -> None:
    """Wait until every rank gets here (e.g. rank 0 finished writing a checkpoint)."""
    if ranks.distributed:
        dist.barrier()


__all__ = [
    "COLLECTIVE_TIMEOUT", "DistributedSetupError", "Ranks", "all_reduce_sum", "barrier", "broadcast_parameters",
    "gather_objects",
    "global_row_counts", "launched_by_torchrun", "local_share", "start", "stop", "sum_gradients",
]
