"""The PNG of MD spectra: IR and Raman panels (with block error bands and the harmonic reference
broadened to the MD resolution, same units and areas), and ε(ω) for periodic cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fpscf.calculators.spectra import lorentzian_spectrum
from fpscf.md_spectra.harmonic import HarmonicReference, resolution
from fpscf.md_spectra.workflow import MDSpectra
from fpscf.units import IR_INTENSITY_KM_PER_MOL


def _blocks(count: int) -> str:
    return "no error bars (1 block)" if count == 1 else f"error bands: standard error over {count} blocks"


def _band(axis, grid: np.ndarray, values: np.ndarray, error: np.ndarray | None, label: str, color: str) -> None:
    axis.plot(grid, values, color=color, lw=1.2, label=label)
    if error is not None:
        axis.fill_between(grid, values - error, values + error, color=color, alpha=0.25, lw=0)


def _plot_dielectric(axis, result: MDSpectra, lowest: float = 10.0) -> None:
    """ε′ and ε″ on a logarithmic wavenumber axis from ``lowest`` cm⁻¹ (below, 1/ω amplifies noise);
    ε₀ of the fluctuations as a marker at the left edge when known."""
    eps = result.dielectric
    shown = eps.wavenumbers >= lowest
    axis.plot(eps.wavenumbers[shown], eps.epsilon.real[shown], color="C0", label="ε′")
    axis.plot(eps.wavenumbers[shown], eps.epsilon.imag[shown], color="C1", label="ε″")
    axis.axhline(eps.epsilon_infinity, color="0.6", lw=0.6, ls=":", label=f"ε∞ = {eps.epsilon_infinity:.2f}")
    if result.static is not None:
        axis.plot([lowest], [result.static.isotropic], "k<", ms=6, label=f"ε₀ (fluctuations) = {result.static.isotropic:.1f}")
    axis.set_xscale("log")
    axis.set_xlim(lowest, result.settings.max_wavenumber)
    axis.set_ylabel("ε(ω)")
    axis.legend(fontsize=7, loc="upper right")


def plot_md_spectra(result: MDSpectra, path: str | Path, harmonic: HarmonicReference | None = None,
                    title: str = "") -> None:
    """Write the figure to ``path`` atomically (one panel per spectrum present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fpscf.training.reporting import atomic_savefig

    panels = [name for name, value in (("ir", result.ir), ("raman", result.raman), ("dielectric", result.dielectric))
              if value is not None]
    figure, axes = plt.subplots(len(panels), 1, figsize=(7.5, 2.9 * len(panels)), squeeze=False)
    width = resolution(result.ir.correlation_fs if result.ir else result.raman.correlation_fs)
    for axis, name in zip(axes[:, 0], panels):
        if name == "ir":
            ir = result.ir
            error = None if ir.intensity_error is None else ir.intensity_error * IR_INTENSITY_KM_PER_MOL
            _band(axis, ir.wavenumbers, ir.km_per_mol, error, f"MD, {result.temperature:.0f} K", "C0")
            if harmonic is not None:
                curve = lorentzian_spectrum(harmonic.frequencies, harmonic.ir_intensity * IR_INTENSITY_KM_PER_MOL,
                                            ir.wavenumbers, width)
                axis.plot(ir.wavenumbers, curve, color="C3", lw=0.9, ls="--", label="harmonic (same areas)")
            axis.set_ylabel("IR (km/mol per cm⁻¹)")
        elif name == "raman":
            raman = result.raman
            error = None
            if raman.isotropic_error is not None:
                error = 45.0 * np.hypot(raman.isotropic_error, (7.0 / 3.0) * raman.vh_error)
            _band(axis, raman.wavenumbers, raman.activity, error, "MD activity 45(VV+VH)", "C0")
            axis.plot(raman.wavenumbers, 45.0 * raman.vh, color="C2", lw=0.8, label="MD 45·VH (depolarised)")
            if harmonic is not None:
                curve = lorentzian_spectrum(harmonic.frequencies, harmonic.raman_activity, raman.wavenumbers, width)
                axis.plot(raman.wavenumbers, curve, color="C3", lw=0.9, ls="--", label="harmonic (same areas)")
            axis.set_ylabel("Raman (Å⁴/amu per cm⁻¹)")
        else:
            _plot_dielectric(axis, result)
            continue
        axis.set_xlim(0, result.settings.max_wavenumber)
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("wavenumber (cm⁻¹)")
    settings = result.settings
    axes[0, 0].set_title(
        (title + "\n" if title else "") + f"{settings.quantum} quantum correction, {settings.window} window, "
        f"t_max {(result.ir or result.raman).correlation_fs:.0f} fs (resolution ≈ {width:.0f} cm⁻¹), "
        f"{_blocks((result.ir or result.raman).n_blocks)}", fontsize=8)
    figure.tight_layout()
    atomic_savefig(figure, path, dpi=120)
    plt.close(figure)
