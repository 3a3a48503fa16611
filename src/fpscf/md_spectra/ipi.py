"""Path-integral MD with i-PI: fpscf as i-PI's force engine, with the field, sending the dipole.

i-PI (the ``ipi`` package) moves the beads; each force request goes over its socket to a client
that runs the fpscf calculator. :class:`FpscfSocketClient` is ASE's socket client plus the i-PI
"extras" string: a JSON object with the model's dipole (e·Å) and, when asked, α (e·Å²/V) of the
bead, which i-PI writes per bead with ``<trajectory filename="dipole" stride="1"
extra_type="dipole"> extras </trajectory>``. The field is the calculator's (``electric_field=`` or
the atoms' ``info['external_field']``, V/Å), so every bead runs in it; i-PI's own field driving
(Born charges times a field) is not used.

For TRPMD or centroid spectra the bead average of a linear operator (dipole, α) is the estimator of
the Kubo-transformed correlation: :func:`read_ipi_extras` reads the per-bead files and
:func:`bead_average` gives the series for :func:`fpscf.md_spectra.ir.ir_spectrum` (harmonic quantum
correction, the exact one for Kubo correlations). ``examples/md_spectra/ipi`` has an input file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase.calculators.socketio import SocketClient

from fpscf.md_spectra.correlation import SpectrumInputError

#: Calculator properties the client can send to i-PI as extras (name in the JSON = property name).
EXTRAS = ("dipole", "polarizability", "charges")


class FpscfSocketClient(SocketClient):
    """ASE's :class:`~ase.calculators.socketio.SocketClient` that also sends ``extras`` (properties of the
    atoms' calculator, JSON, in fpscf units) with every force. Use as ``FpscfSocketClient(unixsocket=
    "name").run(atoms)`` with ``atoms.calc`` a :class:`~fpscf.calculators.FixedPointCalculator`."""

    def __init__(self, *args: Any, extras: Sequence[str] = ("dipole",), **kwargs: Any) -> None:
        unknown = sorted(set(extras) - set(EXTRAS))
        if unknown:
            raise SpectrumInputError(f"unknown extras {unknown}; choose from {', '.join(EXTRAS)}")
        super().__init__(*args, **kwargs)
        self.extras = tuple(extras)
        self._payload = np.frombuffer(b"{}", dtype=np.byte)
        if self.comm.rank == 0:
            send = self.protocol.sendforce

            def sendforce(energy: float, forces: np.ndarray, virial: np.ndarray, morebytes: Any = None) -> None:
                send(energy, forces, virial, morebytes=self._payload)

            self.protocol.sendforce = sendforce

    def calculate(self, atoms: Any, use_stress: bool) -> tuple[float, np.ndarray, np.ndarray]:
        """Energy, forces and virial as ASE's client, and the extras of the same geometry."""
        energy, forces, virial = super().calculate(atoms, use_stress)
        if self.extras:
            results = atoms.calc.get_properties(list(self.extras), atoms)
            text = json.dumps({name: np.asarray(results[name], float).tolist() for name in self.extras})
            self._payload = np.frombuffer(text.encode(), dtype=np.byte)
        return energy, forces, virial


_HEADER = re.compile(r"#EXTRAS\((?P<kind>[^)]*)\)#\s*Step:\s*(?P<step>\d+)")


def read_ipi_extras(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One bead's extras file of i-PI (``<trajectory ... extra_type="dipole"> extras``): steps (T,) and
    values (T, n), the numbers that follow each ``#EXTRAS(...)# Step: N`` header."""
    path = Path(path)
    if not path.is_file():
        raise SpectrumInputError(f"i-PI extras file {str(path)!r} does not exist")
    steps: list[int] = []
    values: list[list[float]] = []
    for line in path.read_text().splitlines():
        match = _HEADER.search(line)
        if match:
            steps.append(int(match["step"]))
            values.append([])
        elif line.strip() and values:
            values[-1].extend(float(word) for word in line.replace(",", " ").replace("[", " ").replace("]", " ").split())
    if not steps or len({len(v) for v in values}) != 1:
        raise SpectrumInputError(f"{path}: no i-PI extras blocks, or blocks of different sizes")
    return np.array(steps), np.array(values)


def bead_average(paths: Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
    """Steps (T,) and the bead average (T, n) of the extras files of all beads (same steps in each)."""
    if not paths:
        raise SpectrumInputError("no i-PI extras files given (one per bead, e.g. simulation.dipole_0 ...)")
    read = [read_ipi_extras(path) for path in paths]
    steps = read[0][0]
    if any(len(s) != len(steps) or np.any(s != steps) for s, _ in read):
        raise SpectrumInputError("the beads' extras files hold different steps")
    return steps, np.mean([values for _, values in read], axis=0)
