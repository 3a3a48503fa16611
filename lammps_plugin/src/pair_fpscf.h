/* pair_style fpscf: an fpscf model exported to TorchScript, evaluated through libtorch.

   pair_style fpscf [efield Ex Ey Ez] [scf_tol tol] [max_scf n] [charge Q]
   pair_coeff * * model.pt Sym1 Sym2 ...

   Units metal (Å, eV, e); the field is in V/Å and each component is a number or an
   equal-style variable v_name evaluated at every force evaluation.  The model contract
   (inputs, outputs, attributes) is written down in lammps_plugin/README.md.
*/
#ifndef LMP_PAIR_FPSCF_H
#define LMP_PAIR_FPSCF_H

#include "pair.h"

#include "fpscf_ops.h"

#include <array>
#include <memory>
#include <string>
#include <vector>

namespace torch {
namespace jit {
struct Module;
}
}    // namespace torch

namespace LAMMPS_NS {

class PairFPSCF : public Pair, public fpscf::GhostExchanger {
 public:
  PairFPSCF(class LAMMPS *);
  ~PairFPSCF() override;

  void compute(int eflag, int vflag) override;
  void settings(int narg, char **arg) override;
  void coeff(int narg, char **arg) override;
  void init_style() override;
  double init_one(int itype, int jtype) override;
  void *extract(const char *name, int &dim) override;
  void *extract_peratom(const char *name, int &ncol) override;

  // fpscf::ghost_exchange: node features of ghosts from their owners (and back in the backward pass)
  int pack_forward_comm(int n, int *list, double *buf, int pbc_flag, int *pbc) override;
  void unpack_forward_comm(int n, int first, double *buf) override;
  int pack_reverse_comm(int n, int first, double *buf) override;
  void unpack_reverse_comm(int n, int *list, double *buf) override;
  int owned_atoms() const override;
  void forward(double *data, int width) override;
  void reverse(double *data, int width) override;

 private:
  // One Cartesian component of the applied field: a constant or an equal-style variable.
  struct FieldComponent {
    double value = 0.0;      // V/Å, used when variable is empty
    std::string variable;    // name of an equal-style variable (without v_), or empty
    int index = -1;          // index of the variable, resolved in init_style()
  };

  void allocate();
  void load_model(const std::string &path);
  void evaluate_field();

  std::array<FieldComponent, 3> field_spec;
  double field[3];              // field of the current step, V/Å
  double scf_tolerance;         // passed to the model attribute scf_tolerance, if it has one
  int max_scf_steps;            // passed to the model attribute max_scf_steps, if it has one
  double total_charge;          // e, passed to the model attribute total_charge, if it has one
  bool total_charge_set;        // `charge` given (a model without total_charge then is an error)

  std::string model_path;
  std::unique_ptr<torch::jit::Module> model;
  double r_max;                 // Å, model cutoff
  bool periodic_only;           // model needs a box periodic in x, y and z
  int num_interactions;         // >1: the model also needs edges of ghost receivers
  bool ghost_exchange;          // the model takes ghost features from owners (fpscf::ghost_exchange)
  int exchange_width;           // widest row it exchanges (comm buffer size per atom)
  double *exchange_data;        // rows being communicated, [n_all][exchange_row]
  int exchange_row;
  bool has_centroid_virial;     // model returns "centroid_virial" [n_all, 9]
  int state_size;               // per-atom values the model keeps between steps (0: none)
  class FixFPSCFState *state_fix;   // holds them, migrating with the atoms
  void pass_settings();
  void ensure_state_fix();
  std::vector<std::string> model_species;
  std::vector<long> type_to_species;    // LAMMPS type (1..ntypes) -> model species index

  double *charges;              // e, owned atoms, for `fix pair` and extract_peratom
  int max_charges;
  double dipole[3];             // e·Å, this rank's share of the total dipole
  int scf_steps;                // SCF iterations of the last force evaluation (0 if not reported)
};

}    // namespace LAMMPS_NS

#endif
