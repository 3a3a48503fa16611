/* fix FPSCF/STATE: per-atom values that migrate with the atoms (created by pair_style fpscf).

   fix ID group FPSCF/STATE n

   Holds n doubles per atom (pair style fpscf stores each atom's converged density and the Fermi
   level there, to warm-start the next SCF). Values move with atoms between ranks and through
   sorting; a new atom starts with NaN (no previous value).
*/
#ifndef LMP_FIX_FPSCF_STATE_H
#define LMP_FIX_FPSCF_STATE_H

#include "fix.h"

namespace LAMMPS_NS {

class FixFPSCFState : public Fix {
 public:
  FixFPSCFState(class LAMMPS *, int, char **);
  ~FixFPSCFState() override;

  int setmask() override;
  void grow_arrays(int) override;
  void copy_arrays(int, int, int) override;
  int pack_exchange(int, double *) override;
  int unpack_exchange(int, double *) override;
  double memory_usage() override;

  int nvalues;       // values per atom
  double **values;   // [atom->nmax][nvalues]

 private:
  int allocated_atoms;   // rows of values set so far (new rows start as NaN)
};

}    // namespace LAMMPS_NS

#endif
