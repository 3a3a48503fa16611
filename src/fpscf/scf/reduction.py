"""Reductions over the ranks that share one structure: injected into the SCF engine.

The SCF engine (:mod:`fpscf.scf.engine`) and the Krylov solver (:mod:`fpscf.scf.krylov`) compute
every global quantity (total charges, dot products, the largest residual, the structure factor or
the particle-mesh grid) as a sum or maximum over this process's atoms followed by one call of the
injected reduction:

* :class:`LocalReduction`: one process holds every atom (the ASE calculator, training): the local
  sum already is the total, so ``sum_ranks`` returns its argument;
* :class:`RankReduction`: ``pair_style fpscf`` on several MPI ranks: the ``fpscf::allreduce_*``
  operators the LAMMPS plugin registers (:mod:`fpscf.export.comm` registers one-process versions
  of them for Python). The derivative of the all-reduced sum is again a sum over ranks.

Both are TorchScript modules with the same methods, so the one engine compiles against either.
"""

from __future__ import annotations

import torch


class LocalReduction(torch.nn.Module):
    """One process holds the whole structure: every reduction is the identity."""

    def sum_ranks(self, value: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks of ``value`` (any shape): itself."""
        return value

    def max_ranks(self, value: torch.Tensor) -> torch.Tensor:
        """Element-wise maximum over ranks (no derivative): itself."""
        return value.detach()

    def world(self, like: torch.Tensor) -> torch.Tensor:
        """``[rank, size]`` (int64 on ``like``'s device): ``[0, 1]``."""
        return torch.tensor([0, 1], dtype=torch.long, device=like.device)

    def owns_globals(self, like: torch.Tensor) -> float:
        """1.0 on the rank that holds the per-structure unknowns (the Fermi levels) in vectors of the
        adjoint solve, 0.0 elsewhere; one process holds them."""
        return 1.0


class RankReduction(torch.nn.Module):
    """Sums and maxima over MPI ranks through the ``fpscf::`` operators (one all-reduce each)."""

    def __init__(self) -> None:
        super().__init__()
        from fpscf.export import comm  # noqa: F401  (registers the one-process operators)

    def sum_ranks(self, value: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks; its derivative is the sum of the ranks' cotangents."""
        return torch.ops.fpscf.allreduce_sum(value)

    def max_ranks(self, value: torch.Tensor) -> torch.Tensor:
        """Element-wise maximum over ranks (no derivative)."""
        return torch.ops.fpscf.allreduce_max(value.detach())

    def world(self, like: torch.Tensor) -> torch.Tensor:
        """``[rank, size]`` as int64."""
        return torch.ops.fpscf.world_info(like)

    def owns_globals(self, like: torch.Tensor) -> float:
        """1.0 on rank 0 (which holds the Fermi levels in adjoint vectors), 0.0 on the others."""
        return 1.0 if int(self.world(like)[0]) == 0 else 0.0
