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
  void load_training_domain();
  void evaluate_field();
  // stop (error->all) when the model's energy or forces are not finite, or the energy is absurd
  void check_finite(const double *energies, const double *forces, int nlocal, int nall, double binding_energy,
                    double shortest, const int *shortest_types);
  // warn once per run (rank 0, after MPI reductions) when the structure leaves the training domain
  void check_domain(const double *values);

  std::array<FieldComponent, 3> field_spec;
  double field[3];              // field of the current step, V/Å
  // SCF settings: a keyword the user writes overrides the model's attribute of the same name (the
  // value `fpscf export` stored); an omitted keyword leaves the exported value in place
  double scf_tolerance;         // scf_tol keyword -> model attribute scf_tolerance
  int max_scf_steps;            // max_scf keyword -> model attribute max_scf_steps
  double total_charge;          // charge keyword (e) -> model attribute total_charge
  bool scf_tolerance_set;       // the keyword was given in the latest pair_style command
  bool max_scf_steps_set;
  bool total_charge_set;        // (a model without total_charge then is an error)
  // the exported values, read when the model is loaded (restored when a repeated pair_style omits them)
  double exported_scf_tolerance;
  int exported_max_scf_steps;
  double exported_total_charge;

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

  // training domain of the model (optional attributes; see lammps_plugin/README.md)
  bool has_training_domain;           // the model returns "domain" and has the attributes below
  double domain_distance_tolerance;   // warn below this fraction of a pair's shortest training distance
  double domain_charge_tolerance;     // warn above this multiple of a species' largest training |q|
  double domain_field_limit;          // V/Å, warn for a stronger field
  double training_max_field;          // V/Å, largest field of the training structures
  double max_energy_per_atom;         // eV, bound on |binding energy| per atom (error beyond)
  std::vector<double> training_min_distances;    // [S*S] Å, shortest training distance per species pair
  std::vector<double> training_max_charges;      // [S] e, largest training |q| per species
  bool warned_distance, warned_charge, warned_field;    // each warning once per run
};

}    // namespace LAMMPS_NS

#endif
