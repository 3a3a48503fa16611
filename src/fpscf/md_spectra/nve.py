"""NVE MD with ASE's velocity Verlet that records what spectra need: the dipole every step and
frames (positions, velocities) every ``frame_every`` steps, with the calculator's field left on.

For production runs use LAMMPS (docs/md_spectra.md gives the recipe); this driver serves the
harmonic checks, the example and small molecules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from ase import Atoms, units

from fpscf.md_spectra.correlation import SpectrumInputError


@dataclass(frozen=True)
class NVERun:
    """What :func:`run_nve` recorded: dipole (T+1, 3) e·Å at every step (the first before any step),
    frames every ``frame_every`` steps (copies with positions, velocities and the field in info),
    total and kinetic energy (T+1,) eV, timestep_fs, seconds of wall time."""

    dipole: np.ndarray
    frames: list[Atoms]
    total_energy: np.ndarray
    kinetic_energy: np.ndarray
    timestep_fs: float
    frame_every: int
    seconds: float


def run_nve(
    atoms: Atoms,
    calculator: Any,
    timestep_fs: float,
    steps: int,
    frame_every: int = 1,
    progress: Callable[[str], None] | None = None,
) -> NVERun:
    """Run ``steps`` velocity-Verlet steps of ``timestep_fs`` from the atoms' positions and velocities
    (set them first, e.g. :func:`fpscf.md_spectra.sampling.harmonic_initial_conditions`)."""
    from ase.md.verlet import VelocityVerlet

    if steps < 1 or frame_every < 1 or not timestep_fs > 0:
        raise SpectrumInputError(f"steps and frame_every must be >= 1 and the time step positive; got "
                                 f"{steps}, {frame_every}, {timestep_fs} fs")
    system = atoms.copy()
    system.calc = calculator
    dipoles, frames, total, kinetic = [], [], [], []
    start = time.perf_counter()

    def record() -> None:
        dipoles.append(np.array(calculator.results["dipole"], float))
        kinetic.append(system.get_kinetic_energy())
        total.append(system.get_potential_energy() + kinetic[-1])
        step = len(dipoles) - 1
        if step % frame_every == 0:
            frame = system.copy()
            frame.calc = None
            frames.append(frame)
        if progress and step and step % max(1, steps // 10) == 0:
            rate = (time.perf_counter() - start) / step
            progress(f"  MD step {step}/{steps} ({rate:.3f} s/step, {rate * (steps - step):.0f} s left), "
                     f"E_total {total[-1]:.5f} eV")

    dynamics = VelocityVerlet(system, timestep=timestep_fs * units.fs)
    dynamics.attach(record, interval=1)  # ASE calls it before the first step too
    dynamics.run(steps)
    return NVERun(np.array(dipoles), frames, np.array(total), np.array(kinetic), float(timestep_fs), frame_every,
                  time.perf_counter() - start)
