"""Command line: ``fpscf demo | train | data | spectra | version``."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _demo(args: argparse.Namespace) -> int:
    """Build a small random model and evaluate a water molecule and a periodic water box."""
    import torch
    from ase.build import molecule

    import fpscf
    from fpscf import FixedPointCalculator

    torch.set_default_dtype(torch.float64)
    model = fpscf.build_model(
        ["H", "O"],
        r_max=4.0,
        num_channels=16,
        max_L=1,
        atomic_multipoles_max_l=1,
        field_feature_widths=[1.0, 2.0],
        seed=args.seed,
    )
    print(f"fpscf {fpscf.__version__}: random model with {sum(p.numel() for p in model.parameters())} parameters")
    print("(weights are random: numbers show the machinery, not chemistry; issue E ships a trained model)\n")
    field = np.array([0.0, 0.0, args.field])

    water = molecule("H2O")
    water.calc = FixedPointCalculator(model=model, electric_field=field, verbose=args.verbose)
    start = time.perf_counter()
    energy = water.get_potential_energy()
    print(f"water molecule, field {field.tolist()} V/Å ({time.perf_counter() - start:.2f} s)")
    print(f"  energy  {energy:.6f} eV    SCF steps {water.calc.results['scf_steps']}")
    print(f"  charges {np.array2string(water.get_charges(), precision=4)} e")
    print(f"  dipole  {np.array2string(water.get_dipole_moment(), precision=4)} e·Å (−∂E/∂ε)")
    print(f"  forces  (eV/Å)\n{np.array2string(water.get_forces(), precision=4)}\n")

    box = _water_box(args.box_molecules, seed=args.seed)
    box.calc = FixedPointCalculator(model=model, electric_field=field, verbose=args.verbose)
    start = time.perf_counter()
    energy = box.get_potential_energy()
    stress = box.get_stress()
    print(f"periodic water box, {len(box)} atoms, cell {np.diag(box.cell.array).round(2).tolist()} Å "
          f"({time.perf_counter() - start:.2f} s)")
    print(f"  energy  {energy:.6f} eV    SCF steps {box.calc.results['scf_steps']}")
    print(f"  total charge {box.get_charges().sum():+.2e} e    max |F| {np.abs(box.get_forces()).max():.4f} eV/Å")
    print(f"  stress  {np.array2string(stress, precision=5)} eV/Å³")
    return 0


def _water_box(n_molecules: int, seed: int) -> "object":
    """Water molecules on a cubic grid at about liquid density, randomly oriented (seeded)."""
    from ase import Atoms
    from ase.build import molecule
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    per_side = int(np.ceil(n_molecules ** (1 / 3)))
    spacing = 3.1
    atoms = Atoms(cell=np.eye(3) * per_side * spacing, pbc=True)
    for index in range(n_molecules):
        grid = np.array(np.unravel_index(index, (per_side,) * 3)) * spacing + spacing / 2
        mol = molecule("H2O")
        mol.positions = Rotation.random(random_state=rng).apply(mol.positions - mol.get_center_of_mass()) + grid
        atoms += mol
    return atoms


def _train(args: argparse.Namespace, overrides: list[str]) -> int:
    """Run ``fpscf train``; configuration and data problems are one clear line, not a traceback."""
    from fpscf.training.config import ConfigError
    from fpscf.training.statistics import StatisticsError
    from fpscf.training.trainer import TrainingError, train

    try:
        result = train(args.config, overrides, resume=args.resume)
    except (ConfigError, TrainingError, StatisticsError, FileNotFoundError) as error:
        print(f"fpscf train: error: {error}", file=sys.stderr)
        return 2
    print(f"best model: {result.best_model}\nfinal model: {result.final_model}")
    return 0


def _data(args: argparse.Namespace) -> int:
    """Run ``fpscf data water``: sample water structures and label them (resumable, see runner)."""
    import dataclasses

    from fpscf.datagen.runner import DataGenerationError, require_labeller, water_dataset

    try:
        require_labeller("xtb")  # the structures are sampled with GFN2-xTB
        require_labeller(args.method)
        settings = None
        if args.method == "dft":
            from fpscf.datagen.pyscf_labels import DFTSettings

            chosen = {"basis": args.basis, "xc": args.xc}
            settings = dataclasses.replace(DFTSettings(), **{k: v for k, v in chosen.items() if v})
        elif args.basis or args.xc:
            raise ValueError("--basis and --xc are for --method dft.")
        path = water_dataset(
            args.out, args.n, args.seed, method=args.method, workers=args.workers,
            response_fraction=args.response_fraction, max_response_atoms=args.max_response_atoms, settings=settings,
        )
    except (ImportError, ValueError, DataGenerationError) as error:
        print(f"fpscf data: error: {error}", file=sys.stderr)
        return 2
    print(f"data set: {path}")
    return 0


def _spectra(args: argparse.Namespace) -> int:
    """Run ``fpscf spectra``: normal modes (molecule) or Γ phonons with LO–TO (crystal), IR and Raman."""
    from pathlib import Path

    if args.model is None:
        print("fpscf spectra: error: --model is required (no default model ships yet, issue E): "
              "give a model file written by model.save or fpscf train, e.g. --model best.fpscf", file=sys.stderr)
        return 2
    try:
        import ase.io

        from fpscf import FixedPointCalculator
        from fpscf.calculators.spectra import SpectraError, compute_spectra, write_spectra

        if not Path(args.structure).is_file():
            raise FileNotFoundError(f"structure file {args.structure!r} does not exist")
        try:
            atoms = ase.io.read(args.structure)
        except Exception as error:  # ASE raises many types for unreadable files
            raise ValueError(f"cannot read {args.structure!r} with ASE: {error}") from None
        if args.width <= 0:
            raise ValueError(f"--width must be positive (cm^-1), got {args.width}")
        calculator = FixedPointCalculator(model=args.model, scf_tolerance=args.scf_tolerance,
                                          acoustic_sum_rule=not args.no_asr)
        options: dict = {"progress": lambda line: print(line, flush=True)}
        if args.field is not None:
            options["field"] = args.field
        periodic = bool(atoms.pbc.all())
        if periodic:
            options.update(supercell=args.supercell or (1, 1, 1), q_direction=args.q_direction, bands=args.bands)
        elif args.supercell or args.q_direction or args.bands:
            raise ValueError("--supercell, --q-direction and --bands are for crystals (a fully periodic structure)")
        kind = "crystal" if periodic else "molecule" if not atoms.pbc.any() else "partly periodic structure"
        print(f"{atoms.get_chemical_formula()}: {len(atoms)} atoms, {kind}; model {args.model}", flush=True)
        spectra = compute_spectra(atoms, calculator, **options)
        written = write_spectra(spectra, args.out, width=args.width, model=str(args.model))
    except (FileNotFoundError, ValueError, SpectraError) as error:
        print(f"fpscf spectra: error: {error}", file=sys.stderr)
        return 2
    modes, intensities = spectra.modes, spectra.intensities
    print(f"\nfield {spectra.field.tolist()} V/Å, acoustic sum rule {'on' if spectra.acoustic_sum_rule else 'off'}, "
          f"point group {spectra.point_group}, max |F| {spectra.max_force:.2e} eV/Å")
    print(f"{'mode':>4} {'cm-1':>11} {'IR e2/amu':>11} {'km/mol':>10} {'Raman A4/amu':>13} {'depol':>6}  sym")
    for k in range(len(modes.frequencies)):
        if spectra.kind == "molecule" and modes.rigid[k]:
            continue
        print(f"{k + 1:>4} {modes.frequencies[k]:>11.2f} {intensities.ir_intensity[k]:>11.4e} "
              f"{intensities.ir_intensity_km_per_mol[k]:>10.3f} {intensities.raman_activity[k]:>13.4e} "
              f"{intensities.depolarization_ratio[k]:>6.3f}  {modes.symmetry[k]}{'  (acoustic)' if spectra.kind == 'crystal' and modes.rigid[k] else ''}")
    print(f"\nwritten to {args.out}: {', '.join(path.name for path in written)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fpscf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="evaluate a water molecule and a periodic water box with a small model")
    demo.add_argument("--field", type=float, default=0.05, help="applied field along z, V/Å (default 0.05)")
    demo.add_argument("--box-molecules", type=int, default=8, help="water molecules in the periodic box")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--verbose", action="store_true", help="print the SCF residual at every step")
    demo.set_defaults(func=_demo)
    training = sub.add_parser(
        "train",
        help="train a model: fpscf train --config config.yaml [--<option>=value ...] [--resume]",
        description="Options after the config (--r_max=4.0, --seed=1, --model.num_channels=8) override the file.",
    )
    training.add_argument("--config", required=True, help="training config (YAML)")
    training.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoint.pt")
    training.set_defaults(func=_train)
    data = sub.add_parser("data", help="generate reference data: fpscf data water --out DIR --n N")
    data_sets = data.add_subparsers(dest="data_set", required=True)
    water = data_sets.add_parser(
        "water", help="water monomers, clusters, OH- and H3O+ (xTB MD sampling, DFT or xTB labels)",
        description="Resumable: run the same command again to finish an interrupted run.",
    )
    water.add_argument("--out", required=True, help="output directory (data.xyz, parts/, manifest.json)")
    water.add_argument("--n", type=int, required=True, help="number of structures")
    water.add_argument("--seed", type=int, default=0)
    water.add_argument("--method", choices=["dft", "xtb"], default="dft", help="labels (default dft)")
    water.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    water.add_argument("--response-fraction", type=float, default=0.2,
                       help="fraction with polarizability and Born charges (dft; default 0.2)")
    water.add_argument("--max-response-atoms", type=int, default=10,
                       help="only structures with at most this many atoms get response labels (default 10)")
    water.add_argument("--basis", help="DFT basis (default: DFTSettings)")
    water.add_argument("--xc", help="DFT functional (default: DFTSettings)")
    water.set_defaults(func=_data)
    spectra = sub.add_parser(
        "spectra", help="IR/Raman spectra: fpscf spectra STRUCTURE --model M --out DIR",
        description="Molecules (non-periodic): normal modes from the exact Hessian. Crystals (periodic): phonopy "
                    "phonons at Γ with the non-analytical (LO–TO) correction. IR intensities from Born charges, "
                    "Raman activities from Raman tensors; files in --out (modes.csv, spectrum.csv/.png, summary.json, "
                    "phonopy.yaml and BORN for crystals).",
    )
    spectra.add_argument("structure", help="structure file ASE reads (periodic: crystal workflow)")
    spectra.add_argument("--model", help="model file (required until a default model ships)")
    spectra.add_argument("--out", required=True, help="output directory")
    spectra.add_argument("--supercell", type=int, nargs=3, metavar=("A", "B", "C"),
                         help="crystal supercell for the force constants (default 1 1 1)")
    spectra.add_argument("--field", type=float, nargs=3, metavar=("EX", "EY", "EZ"),
                         help="applied electric field, V/Å (default: the structure's external_field or zero)")
    spectra.add_argument("--width", type=float, default=10.0, help="Lorentzian FWHM, cm^-1 (default 10)")
    spectra.add_argument("--bands", action="store_true", help="crystal: also the phonon band structure (bands.png)")
    spectra.add_argument("--q-direction", type=float, nargs=3, metavar=("QX", "QY", "QZ"),
                         help="crystal: q -> 0 direction for LO–TO splitting at Γ, reduced reciprocal coordinates "
                              "(phonopy's convention; default: none, the analytic TO modes)")
    spectra.add_argument("--no-asr", action="store_true",
                         help="do not enforce the acoustic sum rules (Born charges, Raman tensors, force constants)")
    spectra.add_argument("--scf-tolerance", type=float, default=1e-8, help="SCF tolerance (default 1e-8)")
    spectra.set_defaults(func=_spectra)
    version = sub.add_parser("version", help="print the fpscf version")
    version.set_defaults(func=lambda a: print(__import__("fpscf").__version__) or 0)
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":
        return _train(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
