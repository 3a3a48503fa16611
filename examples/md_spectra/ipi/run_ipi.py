"""TRPMD of a water molecule with i-PI driving fpscf (shipped model water-b3lyp), in a field if asked,
and its IR spectrum from the bead-averaged dipole (Kubo-transformed correlation, harmonic correction).

Usage:
    python examples/md_spectra/ipi/run_ipi.py [--steps 4000] [--beads 4] [--field 0 0 0] [--out DIR]

Starts ``i-pi input.xml`` (edited: steps, beads, a socket name of this process) in DIR, connects
:class:`fpscf.md_spectra.ipi.FpscfSocketClient` (the model's dipole goes to i-PI as JSON extras and
i-PI writes it per bead), then averages the beads' dipoles and writes the IR spectrum (DIR/spectra).
Needs the ``ipi`` package (``pip install ipi``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase.io import read

from fpscf import FixedPointCalculator
from fpscf.md_spectra.files import write_md_spectra
from fpscf.md_spectra.ipi import FpscfSocketClient, bead_average
from fpscf.md_spectra.readers import TimeSeries
from fpscf.md_spectra.workflow import MDSpectraSettings, compute_md_spectra

HERE = Path(__file__).resolve().parent


def prepare(out: Path, steps: int, beads: int) -> str:
    """Copy the input into ``out`` with the steps, beads and a socket name of this process."""
    out.mkdir(parents=True, exist_ok=True)
    address = f"fpscf-water-{os.getpid()}"
    text = (HERE / "input.xml").read_text()
    text = re.sub(r"<total_steps>.*?</total_steps>", f"<total_steps> {steps} </total_steps>", text)
    text = text.replace('nbeads="4"', f'nbeads="{beads}"').replace("<address> fpscf-water </address>",
                                                                   f"<address> {address} </address>")
    (out / "input.xml").write_text(text)
    (out / "water.xyz").write_text((HERE / "water.xyz").read_text())
    return address


def connect(address: str, server: subprocess.Popen, timeout: float = 120.0) -> FpscfSocketClient:
    """The client, once i-PI's socket accepts connections."""
    start = time.perf_counter()
    while True:
        try:
            return FpscfSocketClient(unixsocket=address, extras=("dipole",))
        except (FileNotFoundError, ConnectionRefusedError):
            if server.poll() is not None or time.perf_counter() - start > timeout:
                raise RuntimeError(f"i-PI did not open its socket (exit code {server.poll()})") from None
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4000, help="steps of 0.25 fs (default 4000)")
    parser.add_argument("--beads", type=int, default=4)
    parser.add_argument("--field", type=float, nargs=3, default=[0.0, 0.0, 0.0], help="V/Å (default 0)")
    parser.add_argument("--out", default=str(HERE / "run"))
    parser.add_argument("--correlation-time", type=float, default=250.0, help="fs (default 250)")
    parser.add_argument("--analyse-only", action="store_true", help="only the spectrum of an existing run in --out")
    args = parser.parse_args()
    if args.analyse_only:
        return analyse(Path(args.out), args.beads, args.field, args.correlation_time)
    torch.set_num_threads(1)
    out = Path(args.out)
    address = prepare(out, args.steps, args.beads)
    with open(out / "ipi.log", "w") as log:
        server = subprocess.Popen(["i-pi", "input.xml"], cwd=out, stdout=log, stderr=subprocess.STDOUT)
    try:
        atoms = read(out / "water.xyz")
        atoms.pbc = False
        atoms.calc = FixedPointCalculator(model="water-b3lyp", electric_field=args.field, scf_tolerance=1e-8)
        start = time.perf_counter()
        connect(address, server).run(atoms)
        print(f"{args.steps} steps x {args.beads} beads in {time.perf_counter() - start:.0f} s")
    finally:
        server.wait(timeout=60)
    analyse(out, args.beads, args.field, args.correlation_time)


def analyse(out: Path, beads: int, field: list[float], correlation_fs: float) -> None:
    """IR spectrum of the bead-averaged dipole of the run in ``out`` (files in ``out/spectra``)."""
    steps, dipole = bead_average(sorted(out.glob("water.dipole_*")))
    kind = f"TRPMD, {beads} beads" if beads > 1 else "classical MD (1 bead)"
    series = TimeSeries(timestep_fs=0.25, dipole=dipole, field=np.array(field),
                        source=f"i-PI {kind}, bead-averaged dipole ({len(steps)} steps)")
    result = compute_md_spectra(series, MDSpectraSettings(temperature=300.0, correlation_fs=correlation_fs,
                                                          n_blocks=1))
    written = write_md_spectra(result, out / "spectra", title=f"H2O {kind} (i-PI + fpscf), 300 K")
    print(f"written: {', '.join(p.name for p in written)}")


if __name__ == "__main__":
    sys.exit(main())
