"""Vibrational spectra from molecular dynamics: IR from the dipole, Raman from the polarizability,
the static permittivity and ε(ω) of periodic cells, at the temperature of the MD (docs/md_spectra.md).

Modules, one job each: :mod:`.correlation` (correlation functions, windows, transforms, blocks),
:mod:`.quantum` (quantum correction, Bose and Raman prefactors), :mod:`.ir`, :mod:`.raman`,
:mod:`.dielectric`, :mod:`.readers` (ASE trajectories and extxyz, LAMMPS dipole files),
:mod:`.evaluate` (the model's dipole, α, Z* along a saved trajectory), :mod:`.harmonic` (the harmonic
reference and band-by-band comparison), :mod:`.sampling` and :mod:`.nve` (initial conditions and an
ASE NVE driver for harmonic checks), :mod:`.workflow`, :mod:`.files` and :mod:`.plotting`.
"""

from fpscf.md_spectra.correlation import SpectrumInputError
from fpscf.md_spectra.dielectric import dielectric_function, harmonic_dielectric_function, static_permittivity
from fpscf.md_spectra.ir import IRSpectrum, dipole_rate_from_born_charges, ir_spectrum
from fpscf.md_spectra.raman import RamanSpectrum, raman_spectrum
from fpscf.md_spectra.readers import TimeSeries, read_ase, read_lammps_dipole, read_series
from fpscf.md_spectra.workflow import MDSpectra, MDSpectraSettings, compute_md_spectra

__all__ = [
    "IRSpectrum", "MDSpectra", "MDSpectraSettings", "RamanSpectrum", "SpectrumInputError", "TimeSeries",
    "compute_md_spectra", "dielectric_function", "dipole_rate_from_born_charges", "harmonic_dielectric_function",
    "ir_spectrum", "raman_spectrum", "read_ase", "read_lammps_dipole", "read_series", "static_permittivity",
]
