"""Gas-phase spectra of one molecule from NVE MD beside its harmonic spectrum, with one model.

The molecule is relaxed, its normal modes and harmonic IR/Raman intensities computed
(:func:`fpscf.calculators.spectra.molecule_spectra`), and ``trajectories`` NVE runs started from
thermal normal-mode samples (:mod:`.sampling`) give the dipole every step and α every
``polarizability_every`` steps; the runs are the blocks of the error bars. At low temperature with
``equipartition`` and no rotation this is the harmonic check (band areas = harmonic intensities,
peaks at the harmonic frequencies); at room temperature with rotation it is the gas-phase spectrum
(rotational envelope, anharmonic shifts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from ase import Atoms, units

from fpscf.md_spectra.evaluate import evaluate_frames
from fpscf.md_spectra.harmonic import HarmonicReference, from_spectra
from fpscf.md_spectra.nve import NVERun, run_nve
from fpscf.md_spectra.readers import TimeSeries
from fpscf.md_spectra.sampling import harmonic_initial_conditions
from fpscf.md_spectra.workflow import MDSpectra, MDSpectraSettings, compute_md_spectra


@dataclass(frozen=True)
class MoleculeMDResult:
    """The MD spectra, the harmonic reference, the relaxed molecule, the harmonic
    :class:`~fpscf.calculators.spectra.Spectra` and the NVE runs (one per trajectory)."""

    spectra: MDSpectra
    harmonic: HarmonicReference
    relaxed: Atoms
    harmonic_spectra: Any
    runs: list[NVERun]


def molecule_md_spectra(
    atoms: Atoms,
    calculator: Any,
    temperature: float,
    steps: int,
    timestep_fs: float = 0.5,
    polarizability_every: int = 4,
    trajectories: int = 1,
    equipartition: bool = True,
    rotation: bool = False,
    seed: int = 0,
    settings: MDSpectraSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> MoleculeMDResult:
    """Relax, harmonic spectra, ``trajectories`` NVE runs of ``steps`` × ``timestep_fs`` at
    ``temperature`` K (α every ``polarizability_every`` steps, 0: no Raman), and the MD spectra
    (``settings``: default one block per trajectory, correlation up to half a run)."""
    from fpscf.calculators.spectra import molecule_spectra, relax_molecule

    say = progress or (lambda line: None)
    relaxed = relax_molecule(atoms, calculator, fmax=1e-5)
    harmonic_spectra = molecule_spectra(relaxed, calculator, symmetry_labels=False)
    rng = np.random.default_rng(seed)
    runs, dipoles, alphas = [], [], []
    for number in range(trajectories):
        displacements, velocities = harmonic_initial_conditions(harmonic_spectra.modes, temperature, rng,
                                                                equipartition=equipartition, rotation=rotation)
        start = relaxed.copy()
        start.positions += displacements
        start.set_velocities(velocities / units.fs)
        say(f"trajectory {number + 1}/{trajectories}: {steps} NVE steps of {timestep_fs} fs at {temperature} K")
        run = run_nve(start, calculator, timestep_fs, steps, frame_every=max(polarizability_every, 1), progress=say)
        runs.append(run)
        dipoles.append(run.dipole)
        if polarizability_every:
            alphas.append(evaluate_frames(run.frames, calculator, ["polarizability"], progress=say)
                          .values["polarizability"])
    series = TimeSeries(timestep_fs=timestep_fs, dipole=dipoles if trajectories > 1 else dipoles[0],
                        polarizability=(alphas if trajectories > 1 else alphas[0]) if alphas else None,
                        polarizability_stride=max(polarizability_every, 1),
                        field=np.asarray(harmonic_spectra.field, float),
                        source=f"{trajectories} NVE run(s) of {relaxed.get_chemical_formula()}, {steps} steps "
                               f"of {timestep_fs} fs")
    settings = settings or MDSpectraSettings(temperature=temperature, n_blocks=trajectories,
                                             correlation_fs=0.5 * steps * timestep_fs)
    return MoleculeMDResult(compute_md_spectra(series, settings), from_spectra(harmonic_spectra), relaxed,
                            harmonic_spectra, runs)
