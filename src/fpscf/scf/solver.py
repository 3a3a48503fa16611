"""Pieces of the SCF loop shared by every solve: Anderson mixing, results, failure messages.

The loop itself is :meth:`fpscf.scf.engine.SCFEngine.self_consistent_field`, one TorchScript
implementation run by the Python model (training, the ASE calculator) and the deployed model
(LAMMPS). Anderson mixing is split around the one reduction over ranks it needs:
:func:`anderson_products` (this rank's Gram matrix) and :func:`anderson_step` (the update from
the summed products).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List

import torch

from fpscf.errors import FpscfError

#: Status codes of the engine's SCF loop and the reason each names in messages.
CONVERGED, NON_FINITE, DIVERGED, NOT_CONVERGED = 0, 1, 2, 3


class SCFConvergenceError(FpscfError, RuntimeError):
    """The SCF loop did not reach its tolerance; the message carries the residual history."""

    def __init__(self, message: str, residual_history: list[float]) -> None:
        super().__init__(message)
        self.residual_history = residual_history


@dataclass
class SCFResult:
    """Solution (N, K), number of steps, convergence flag and max-abs residual per step."""

    solution: torch.Tensor
    steps: int
    converged: bool
    residual_history: list[float] = field(default_factory=list)


def anderson_products(xs: List[torch.Tensor], rs: List[torch.Tensor]) -> torch.Tensor:
    """This rank's ``[ΔRᵀΔR (m·m), ΔRᵀ r (m)]`` from stored flat iterates xs and residuals rs
    (m = len(xs) − 1 ≥ 1 differences); summed over ranks they give the Anderson least squares."""
    dr = torch.stack([rs[i + 1] - rs[i] for i in range(len(rs) - 1)], dim=1)
    return torch.cat([(dr.T @ dr).reshape(-1), dr.T @ rs[-1]])


def anderson_step(xs: List[torch.Tensor], rs: List[torch.Tensor], beta: float, products: torch.Tensor) -> torch.Tensor:
    """Anderson (type II / Pulay) update of the latest iterate, from the products of
    :func:`anderson_products` summed over ranks; one stored step is plain linear mixing."""
    x, r = xs[-1], rs[-1]
    if len(xs) == 1:
        return x + beta * r
    dx = torch.stack([xs[i + 1] - xs[i] for i in range(len(xs) - 1)], dim=1)
    dr = torch.stack([rs[i + 1] - rs[i] for i in range(len(rs) - 1)], dim=1)
    m = dr.shape[1]
    gram = products[: m * m].reshape(m, m)
    rhs = products[m * m :]
    regulariser = 1e-12 * torch.trace(gram).clamp_min(1e-300) * torch.eye(m, dtype=gram.dtype, device=gram.device)
    gamma = torch.linalg.solve(gram + regulariser, rhs)
    return x + beta * r - (dx + beta * dr) @ gamma


def format_scientific(value: float) -> str:
    """``value`` as ``d.ddde±x`` (TorchScript's format() has no format specs)."""
    if value == 0.0 or not math.isfinite(value):
        return str(value)
    exponent = int(math.floor(math.log10(abs(value))))
    digits = int(round(abs(value) / 10.0**exponent * 1000.0))
    if digits >= 10000:
        digits, exponent = digits // 10, exponent + 1
    fraction = str(1000 + digits % 1000)[1:]  # three digits with leading zeros
    sign = "-" if value < 0 else ""
    return sign + str(digits // 1000) + "." + fraction + "e" + str(exponent)


def format_residual_history(history: List[float]) -> str:
    """The residuals as text, the first four and last seven of a long history."""
    if len(history) <= 12:
        return ", ".join([format_scientific(r) for r in history])
    head = ", ".join([format_scientific(r) for r in history[:4]])
    return head + ", …, " + ", ".join([format_scientific(r) for r in history[-7:]])


def scf_failure_message(status: int, history: List[float], tolerance: float, mixing_parameter: float) -> str:
    """One message for an SCF that stopped with ``status`` (see the status codes), in every path."""
    reasons = ["converged", "produced a non-finite density", "diverged", "did not converge"]
    smaller = mixing_parameter / 2.0
    return (
        "SCF " + reasons[status] + " after " + str(len(history)) + " steps (scf_tolerance "
        + format_scientific(tolerance) + ", mixing_parameter " + str(mixing_parameter)
        + "). Residual history (max |G(p) - p|): [" + format_residual_history(history) + "]. Try: a smaller "
        "mixing_parameter (e.g. " + str(smaller) + "), a larger max_scf_steps (pair_style fpscf: max_scf), or "
        "check the structure (overlapping or far-extrapolated atoms, too long a time step)"
    )
