/* The fpscf:: communication operators that a deployed fpscf model calls (see
   src/fpscf/export/comm.py for their single-process Python versions):

   fpscf::allreduce_sum(Tensor x) -> Tensor   sum over ranks; its derivative is the sum over ranks
   fpscf::allreduce_max(Tensor x) -> Tensor   maximum over ranks (no derivative)
   fpscf::world_info(Tensor like) -> Tensor   [rank, size], int64
   fpscf::ghost_exchange(Tensor x, Tensor owners) -> Tensor
                                              ghost rows of x [n_all, F] replaced by their owners'
                                              rows (forward comm); derivative: reverse comm

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

// Forward and reverse communication of per-atom rows (the pair style during a force evaluation).
class GhostExchanger {
 public:
  virtual int owned_atoms() const = 0;
  // data: [n_all][width] row-major; ghost rows := their owners' rows
  virtual void forward(double *data, int width) = 0;
  // data: [n_all][width]; ghost rows are added to their owners' rows (ghost rows are left as they are)
  virtual void reverse(double *data, int width) = 0;

 protected:
  ~GhostExchanger() = default;    // not deleted through this interface
};

// The exchanger used by fpscf::ghost_exchange (nullptr: use the owners index instead).
void set_ghost_exchanger(GhostExchanger *exchanger);

}    // namespace fpscf

#endif
