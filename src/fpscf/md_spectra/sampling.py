"""Initial conditions for spectra from NVE MD: thermal samples in the normal modes of a minimum.

A single molecule in NVE is not ergodic: each mode keeps the energy it starts with, so band areas
follow the initial energies, not k_B T. ``equipartition=True`` gives every vibration exactly
k_B T (random phase), which makes the time average of ``Q̇_k²`` equal k_B T in each mode: the
harmonic check of MD spectra. ``equipartition=False`` draws positions and velocities from the
harmonic canonical distribution (average over several trajectories to sample it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fpscf.md_spectra.correlation import SpectrumInputError, angular_frequency
from fpscf.units import BOLTZMANN, EV_PER_AMU_A2_PER_FS2


def harmonic_initial_conditions(
    modes: Any,
    temperature: float,
    rng: np.random.Generator,
    equipartition: bool = False,
    rotation: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Displacements (N, 3) Å and velocities (N, 3) Å/fs from ``modes``
    (:class:`fpscf.calculators.spectra.NormalModes`) at ``temperature`` K.

    Vibrations (not rigid, ν̃ > 0): mass-weighted amplitude and rate with energy k_B T each
    (``equipartition``) or drawn from the canonical distribution. ``rotation``: rigid-body
    velocities drawn at the temperature too, then the centre-of-mass velocity removed (the
    molecule rotates but does not drift); otherwise the molecule starts without rotation.
    """
    if not temperature > 0:
        raise SpectrumInputError(f"the temperature must be positive (K), got {temperature}")
    thermal = BOLTZMANN * temperature / EV_PER_AMU_A2_PER_FS2  # k_B T in amu Å²/fs²
    vibrations = np.nonzero((~modes.rigid) & (modes.frequencies > 0))[0]
    omega = angular_frequency(modes.frequencies[vibrations])  # rad/fs
    if equipartition:
        phase = rng.uniform(0.0, 2.0 * np.pi, len(vibrations))
        amplitude = np.sqrt(2.0 * thermal) / omega * np.cos(phase)  # Å √amu
        rate = -np.sqrt(2.0 * thermal) * np.sin(phase)  # Å √amu / fs
    else:
        amplitude = rng.normal(0.0, np.sqrt(thermal) / omega)
        rate = rng.normal(0.0, np.sqrt(thermal), len(vibrations))
    u = modes.displacements  # (M, N, 3) Å/√amu
    displacements = np.einsum("k,kIa->Ia", amplitude, u[vibrations])
    velocities = np.einsum("k,kIa->Ia", rate, u[vibrations])
    if rotation:
        rigid = np.nonzero(modes.rigid)[0]
        velocities = velocities + np.einsum("k,kIa->Ia", rng.normal(0.0, np.sqrt(thermal), len(rigid)), u[rigid])
        masses = modes.masses
        velocities = velocities - (masses @ velocities) / masses.sum()
    return displacements, velocities
