/* The fpscf:: communication operators that a deployed fpscf model calls (see
   src/fpscf/export/comm.py for their single-process Python versions):

   fpscf::allreduce_sum(Tensor x) -> Tensor   sum over ranks; its derivative is the sum over ranks
   fpscf::allreduce_max(Tensor x) -> Tensor   maximum over ranks (no derivative)
   fpscf::world_info(Tensor like) -> Tensor   [rank, size], int64

   They act on the communicator set by fpscf_set_communicator (LAMMPS' world); without one they
   act on one process (identity, [0, 1]).
*/
#ifndef FPSCF_OPS_H
#define FPSCF_OPS_H

#include <mpi.h>

namespace fpscf {

// Define the operators with the torch dispatcher (once per process). If they are already defined
// (fpscf's Python package in the same process), the MPI kernels replace the Python ones.
void register_operators();

// Communicator of the running force evaluation (LAMMPS' world).
void set_communicator(MPI_Comm comm);

}    // namespace fpscf

#endif
