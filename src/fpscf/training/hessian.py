"""Hessian rows as a training target: a ``hessian`` label and a loss on a few rows sampled per
structure and step, an unbiased estimate of the loss on every row.

A structure b of N_b atoms has n_b = 3N_b Hessian rows ``H[(i,α), :] = ∂²E/∂R_{iα}∂R`` (eV/Å²).
The full loss of a batch is the weighted mean over the rows of the labelled structures of the mean
squared error of a row,

    L = (1/R) Σ_b Σ_r w_b q_{b,r},    q_{b,r} = mean over the 3N_b entries of (H_{b,r} − H^ref_{b,r})²,

with R = Σ_b n_b. Each step draws k_b = min(k, n_b) rows of each labelled structure uniformly
without replacement (``hessian_rows_per_structure`` = k) and computes only those:

    L̂ = (1/R) Σ_b (n_b / k_b) Σ_{r ∈ S_b} w_b q_{b,r}.

A row is drawn with probability k_b/n_b, so E[L̂] = L and E[∇L̂] = ∇L (Horvitz–Thompson); k_b = n_b
gives L exactly. Each drawn row is one Hessian-vector product: the backward pass of the forces
(−∂E/∂R, kept differentiable by the training forward pass, through whichever SCF mode the stage
uses) along a unit vector. Structures of a batch do not couple, so slot s of every structure comes
from one backward pass: k passes per batch, whatever its size.
"""

from __future__ import annotations

from typing import Any

import torch

from fpscf.data.graph import AtomicGraph, pair_offsets
from fpscf.training.losses import LossTerm

#: Rows drawn per structure and step unless the config says otherwise.
DEFAULT_ROWS_PER_STRUCTURE = 2


def sample_rows(graph: AtomicGraph, per_structure: int, generator: torch.Generator) -> torch.Tensor:
    """(k, B) int64: for slot s and structure b the local row 3i + α drawn (−1: none), uniformly
    without replacement among the 3N_b rows of each structure with a ``hessian`` label."""
    mask = graph.label_masks.get("hessian")
    counts = (3 * graph.num_atoms_per_graph).tolist()
    k = min(per_structure, max(counts))
    rows = torch.full((k, graph.num_graphs), -1, dtype=torch.int64)
    for b, n in enumerate(counts):
        if mask is None or not bool(mask[b]):
            continue
        take = min(k, n)
        rows[:take, b] = torch.randperm(n, generator=generator)[:take]
    return rows.to(graph.positions.device)


def hessian_rows(out: dict[str, Any], graph: AtomicGraph, rows: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """(k, N, 3) eV/Å²: slot s holds, over the atoms of each structure b, row ``rows[s, b]`` of its
    Hessian (zero for −1). ``out`` is a forward pass with differentiable forces (create_graph)."""
    forces = out["forces"]
    positions = out["differentiable_inputs"]["positions"]
    starts = graph.ptr[:-1]
    slots = []
    for s in range(rows.shape[0]):
        chosen = rows[s] >= 0
        direction = torch.zeros_like(forces)
        direction[starts[chosen] + rows[s][chosen] // 3, rows[s][chosen] % 3] = 1.0
        (gradient,) = torch.autograd.grad(forces, positions, direction, create_graph=create_graph, retain_graph=True)
        slots.append(-gradient)  # ∂F/∂R = −H
    return torch.stack(slots)


def hessian_term(out: dict[str, Any], graph: AtomicGraph) -> LossTerm | None:
    """The sampled loss L̂ (module docstring) from ``out["hessian_sample"]`` (k, B) and
    ``out["hessian_rows"]`` (k, N, 3); errors are the entries of the drawn rows, ``count`` is R."""
    mask = graph.label_masks.get("hessian")
    if mask is None or not bool(mask.any()) or "hessian_rows" not in out:
        return None
    rows, predicted = out["hessian_sample"], out["hessian_rows"]
    reference = graph.labels["hessian"].to(predicted.dtype)
    weight = graph.weights.get("hessian")
    offsets, ptr = pair_offsets(graph), graph.ptr.tolist()
    total, errors, count = predicted.new_zeros(()), [], 0
    for b in mask.nonzero().reshape(-1).tolist():
        atoms = ptr[b + 1] - ptr[b]
        drawn = [(s, int(r)) for s, r in enumerate(rows[:, b].tolist()) if r >= 0]
        count += 3 * atoms
        w = 1.0 if weight is None else weight[b].to(predicted.dtype)
        for s, r in drawn:
            i, alpha = divmod(r, 3)
            block = reference[offsets[b] + i * atoms : offsets[b] + (i + 1) * atoms, alpha, :]  # (N_b, 3)
            error = predicted[s, ptr[b] : ptr[b + 1]] - block
            total = total + w * (3 * atoms / len(drawn)) * (error * error).mean()
            errors.append(error.reshape(-1))
    return LossTerm(total / count, torch.cat(errors).detach(), count=count)


def add_hessian_rows(out: dict[str, Any], graph: AtomicGraph, per_structure: int, generator: torch.Generator,
                     create_graph: bool) -> None:
    """Draw rows and compute them into ``out`` (``hessian_sample``, ``hessian_rows``) for the loss."""
    rows = sample_rows(graph, per_structure, generator)
    out["hessian_sample"] = rows
    out["hessian_rows"] = hessian_rows(out, graph, rows, create_graph)


__all__ = ["DEFAULT_ROWS_PER_STRUCTURE", "add_hessian_rows", "hessian_rows", "hessian_term", "sample_rows"]
