"""Communication operators of the deployed model, in one process.

The deployed model (:mod:`fpscf.export.deployed`) sums over MPI ranks with three TorchScript
operators. ``pair_style fpscf`` registers MPI versions of them when LAMMPS loads the plugin; this
module registers the single-process versions (a run on one rank is the whole system), so one
scripted module runs unchanged in Python, in tests and in LAMMPS on any number of ranks.

* ``fpscf::allreduce_sum(Tensor x) -> Tensor``: the element-wise sum of ``x`` over ranks; its
  derivative is again the sum over ranks (each rank's energy depends on every rank's share).
* ``fpscf::allreduce_max(Tensor x) -> Tensor``: the element-wise maximum (no derivative; for
  convergence tests that every rank must agree on).
* ``fpscf::world_info(Tensor like) -> Tensor``: ``[rank, size]`` as int64 (``like`` only fixes the
  device).
* ``fpscf::ghost_exchange(Tensor x, Tensor owners) -> Tensor``: ``x`` (n_all, F) with every ghost
  row replaced by its owner's row (LAMMPS forward communication); its derivative adds each
  ghost's cotangent to its owner (reverse communication). In one process ``owners`` (n_all,) int64
  gives each row's owner (itself for owned atoms) and the result is ``x[owners]``.

If the plugin registered the operators first (LAMMPS and fpscf in one Python process), they are
left alone: MPI on one rank is the identity too.
"""

from __future__ import annotations

import torch

OPERATORS = ("allreduce_sum", "allreduce_max", "world_info", "ghost_exchange")
_library: torch.library.Library | None = None


def _registered(name: str) -> bool:
    try:
        getattr(torch.ops.fpscf, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def register_single_process_operators() -> None:
    """Define the ``fpscf::`` communication operators for one process (idempotent)."""
    global _library
    missing = [name for name in OPERATORS if not _registered(name)]
    if not missing:
        return
    library = torch.library.Library("fpscf", "FRAGMENT")
    kernels = {
        "allreduce_sum": ("allreduce_sum(Tensor x) -> Tensor", lambda x: x.clone()),
        "allreduce_max": ("allreduce_max(Tensor x) -> Tensor", lambda x: x.detach().clone()),
        "world_info": (
            "world_info(Tensor like) -> Tensor",
            lambda like: torch.tensor([0, 1], dtype=torch.long, device=like.device),
        ),
        "ghost_exchange": ("ghost_exchange(Tensor x, Tensor owners) -> Tensor", lambda x, owners: x[owners]),
    }
    for name in missing:
        schema, kernel = kernels[name]
        library.define(schema)
        library.impl(name, kernel, "CompositeImplicitAutograd")
    _library = library


register_single_process_operators()
