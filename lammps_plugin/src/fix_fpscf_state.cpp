/* fix FPSCF/STATE: see fix_fpscf_state.h. */

#include "fix_fpscf_state.h"

#include "atom.h"
#include "error.h"
#include "memory.h"
#include "utils.h"

#include <cmath>
#include <limits>

using namespace LAMMPS_NS;

FixFPSCFState::FixFPSCFState(LAMMPS *lmp, int narg, char **arg) : Fix(lmp, narg, arg), nvalues(0), values(nullptr), allocated_atoms(0)
{
  if (narg != 4) error->all(FLERR, "fix FPSCF/STATE: expected 'fix ID group FPSCF/STATE n'");
  nvalues = utils::inumeric(FLERR, arg[3], false, lmp);
  if (nvalues < 1) error->all(FLERR, "fix FPSCF/STATE: n must be at least 1, got {}", arg[3]);
  maxexchange = nvalues;
  grow_arrays(atom->nmax);
  atom->add_callback(Atom::GROW);
}

FixFPSCFState::~FixFPSCFState()
{
  atom->delete_callback(id, Atom::GROW);
  memory->destroy(values);
}

int FixFPSCFState::setmask()
{
  return 0;
}

void FixFPSCFState::grow_arrays(int nmax)
{
  memory->grow(values, nmax, nvalues, "fpscf/state:values");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int i = allocated_atoms; i < nmax; i++)
    for (int k = 0; k < nvalues; k++) values[i][k] = nan;
  if (nmax > allocated_atoms) allocated_atoms = nmax;
}

void FixFPSCFState::copy_arrays(int i, int j, int /*delflag*/)
{
  for (int k = 0; k < nvalues; k++) values[j][k] = values[i][k];
}

int FixFPSCFState::pack_exchange(int i, double *buf)
{
  for (int k = 0; k < nvalues; k++) buf[k] = values[i][k];
  return nvalues;
}

int FixFPSCFState::unpack_exchange(int nlocal, double *buf)
{
  for (int k = 0; k < nvalues; k++) values[nlocal][k] = buf[k];
  return nvalues;
}

double FixFPSCFState::memory_usage()
{
  return (double) atom->nmax * nvalues * sizeof(double);
}
