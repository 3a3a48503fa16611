"""The one SCF solver of fpscf: find ``p* = G(p*)`` by linear or Anderson mixing.

Used by training (unrolled or converged), the ASE calculator and the export alike. The solve
runs without autograd; derivatives through the solution come from :mod:`fpscf.scf.implicit`.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from fpscf.errors import FpscfError
from fpscf.scf.settings import SCFSettings


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


def format_residual_history(history: list[float]) -> str:
    shown = [f"{r:.3e}" for r in history]
    return ", ".join(shown if len(shown) <= 12 else shown[:4] + ["…"] + shown[-7:])


def _failure(reason: str, history: list[float], settings: SCFSettings) -> str:
    return (
        f"SCF {reason} after {len(history)} steps (tolerance {settings.tolerance:.1e}, mixing "
        f"'{settings.mixing}', mixing_parameter {settings.mixing_parameter}). Residual history "
        f"(max |G(p) − p|): [{format_residual_history(history)}]. Try: a smaller mixing_parameter "
        f"(e.g. {settings.mixing_parameter / 2:g}), mixing='anderson', a larger max_scf_steps, or check "
        "the structure (overlapping or far-extrapolated atoms); pass on_failure='warn' to continue anyway."
    )


def solve_fixed_point(
    update: Callable[[torch.Tensor], torch.Tensor],
    initial: torch.Tensor,
    settings: SCFSettings,
    extra_residual: Callable[[torch.Tensor], float] | None = None,
) -> SCFResult:
    """Iterate ``p ← mix(p, G(p))`` from ``initial`` until ``max|G(p) − p| < tolerance``.

    update: G, maps (N, K) → (N, K); extra_residual: optional further convergence measure of
    the current iterate that must also be below ``settings.charge_tolerance`` (e.g. |Σq − Q|).
    """
    history: list[float] = []
    x = initial.detach().clone()
    xs: list[torch.Tensor] = []
    rs: list[torch.Tensor] = []
    best = math.inf
    with torch.no_grad():
        for step in range(1, settings.max_steps + 1):
            gx = update(x)
            residual = gx - x
            norm = float(residual.abs().max()) if residual.numel() else 0.0
            history.append(norm)
            if settings.verbose:
                print(f"  scf step {step:4d}  max|G(p) - p| = {norm:.3e}", file=sys.stderr)
            if not math.isfinite(norm):
                return _finish(x, step, False, history, settings, "produced a non-finite density")
            extra_ok = extra_residual is None or extra_residual(gx) < settings.charge_tolerance
            if norm < settings.tolerance and extra_ok:
                return SCFResult(gx, step, True, history)
            best = min(best, norm)
            if norm > settings.divergence_factor * max(best, settings.tolerance):
                return _finish(x, step, False, history, settings, "diverged")
            if settings.mixing == "linear":
                x = x + settings.mixing_parameter * residual
                continue
            xs.append(x.reshape(-1).clone())
            rs.append(residual.reshape(-1).clone())
            if len(xs) > settings.history + 1:
                xs.pop(0)
                rs.pop(0)
            x = _anderson_step(xs, rs, settings.mixing_parameter).reshape(x.shape)
    return _finish(x, settings.max_steps, False, history, settings, "did not converge")


def _anderson_step(xs: list[torch.Tensor], rs: list[torch.Tensor], beta: float) -> torch.Tensor:
    """Anderson (type II / Pulay) update from stored iterates xs and residuals rs (flattened)."""
    x, r = xs[-1], rs[-1]
    if len(xs) == 1:
        return x + beta * r
    dx = torch.stack([xs[i + 1] - xs[i] for i in range(len(xs) - 1)], dim=1)
    dr = torch.stack([rs[i + 1] - rs[i] for i in range(len(rs) - 1)], dim=1)
    gram = dr.T @ dr
    regulariser = 1e-12 * torch.trace(gram).clamp_min(1e-300) * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    gamma = torch.linalg.solve(gram + regulariser, dr.T @ r)
    return x + beta * r - (dx + beta * dr) @ gamma


def _finish(
    x: torch.Tensor, steps: int, converged: bool, history: list[float], settings: SCFSettings, reason: str
) -> SCFResult:
    message = _failure(reason, history, settings)
    if settings.on_failure == "raise":
        raise SCFConvergenceError(message, history)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return SCFResult(x, steps, converged, history)
