/* pair_style fpscf: see pair_fpscf.h and lammps_plugin/README.md (the model contract). */

#include "pair_fpscf.h"

#include "fix_fpscf_state.h"
#include "fpscf_ops.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "input.h"
#include "memory.h"
#include "modify.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"
#include "variable.h"

#include <ATen/Parallel.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

using namespace LAMMPS_NS;

namespace {

// Order of the extra values in pvector, reported by `compute pair fpscf` (summed over ranks).
// SCF_STEPS is stored divided by the number of ranks, so the sum over ranks is the count.
enum { DIPOLE_X = 0, DIPOLE_Y, DIPOLE_Z, TOTAL_CHARGE, SCF_STEPS, NUM_EXTRA };

// ID of the fix holding the per-atom SCF state.
const char *const STATE_FIX_ID = "FPSCF_STATE";

// The model's optional "domain" output: this rank's smallest ratio distance / shortest training
// distance of the pair, that distance (Å) and the pair's species; its largest ratio |q| / largest
// training |q| of the species, that charge (e) and its species (see DeployedModel._domain_values).
enum { DOMAIN_DISTANCE_RATIO = 0, DOMAIN_DISTANCE, DOMAIN_SPECIES_A, DOMAIN_SPECIES_B, DOMAIN_CHARGE_RATIO,
       DOMAIN_CHARGE, DOMAIN_CHARGE_SPECIES, DOMAIN_SIZE };

// Without a max_energy_per_atom attribute: |binding energy| per atom (eV) beyond which a result is an error.
const double DEFAULT_MAX_ENERGY_PER_ATOM = 1.0e4;

// A value and the rank holding it, for MPI_MINLOC / MPI_MAXLOC (MPI_DOUBLE_INT).
struct RankValue {
  double value;
  int rank;
};

// The useful part of a libtorch exception message: without the C++ backtrace libtorch appends,
// and for an error raised inside the TorchScript model only its final "RuntimeError: ..." line(s).
std::string torch_message(const std::exception &e)
{
  std::string message = e.what();
  const auto backtrace = message.find("\nException raised from");
  if (backtrace != std::string::npos) message = message.substr(0, backtrace);
  const std::string marker = "RuntimeError: ";
  const auto raised = message.rfind(marker);
  if (raised != std::string::npos && message.find("TorchScript") != std::string::npos)
    message = message.substr(raised + marker.size());
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return message;
}

// Output tensor `name` of the model, checked for presence and shape, as contiguous float64 on CPU.
torch::Tensor model_output(const c10::Dict<c10::IValue, c10::IValue> &outputs, const std::string &name,
                           const std::vector<int64_t> &shape, Error *error)
{
  auto found = outputs.find(name);
  if (found == outputs.end())
    error->one(FLERR, "pair_style fpscf: the model did not return the output '{}'", name);
  if (!found->value().isTensor())
    error->one(FLERR, "pair_style fpscf: the model output '{}' is not a tensor", name);
  torch::Tensor tensor = found->value().toTensor();
  if (tensor.sizes() != c10::IntArrayRef(shape)) {
    std::string expected;
    for (auto n : shape) expected += (expected.empty() ? "" : ", ") + std::to_string(n);
    error->one(FLERR, "pair_style fpscf: the model output '{}' has shape {}, expected [{}]", name,
               c10::str(tensor.sizes()), expected);
  }
  return tensor.detach().to(torch::kCPU, torch::kFloat64).contiguous();
}

}    // namespace

/* ---------------------------------------------------------------------- */

PairFPSCF::PairFPSCF(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;             // the model returns the virial itself
  centroidstressflag = CENTROID_NOTAVAIL;  // set in load_model() if the model provides it

  nextra = NUM_EXTRA;
  memory->create(pvector, nextra, "pair:pvector");
  for (int k = 0; k < nextra; k++) pvector[k] = 0.0;

  for (int k = 0; k < 3; k++) field[k] = dipole[k] = 0.0;
  scf_tolerance = exported_scf_tolerance = 1.0e-6;
  max_scf_steps = exported_max_scf_steps = 200;
  total_charge = exported_total_charge = 0.0;
  scf_tolerance_set = max_scf_steps_set = total_charge_set = false;
  state_size = 0;
  state_fix = nullptr;
  scf_steps = 0;
  r_max = 0.0;
  periodic_only = false;
  num_interactions = 1;
  ghost_exchange = false;
  exchange_width = 0;
  exchange_data = nullptr;
  exchange_row = 0;
  has_centroid_virial = false;
  charges = nullptr;
  max_charges = 0;
  has_training_domain = false;
  domain_distance_tolerance = domain_charge_tolerance = 0.0;
  domain_field_limit = training_max_field = std::numeric_limits<double>::infinity();
  max_energy_per_atom = DEFAULT_MAX_ENERGY_PER_ATOM;
  warned_distance = warned_charge = warned_field = false;
}

PairFPSCF::~PairFPSCF()
{
  if (copymode) return;
  memory->destroy(pvector);
  memory->destroy(charges);
  if (modify && modify->nfix && modify->get_fix_by_id(STATE_FIX_ID)) modify->delete_fix(STATE_FIX_ID);
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

void PairFPSCF::allocate()
{
  allocated = 1;
  const int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(cutghost, n, n, "pair:cutghost");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) setflag[i][j] = 0;
}

/* ----------------------------------------------------------------------
   pair_style fpscf [efield Ex Ey Ez] [scf_tol tol] [max_scf n]
------------------------------------------------------------------------- */

void PairFPSCF::settings(int narg, char **arg)
{
  for (auto &component : field_spec) component = FieldComponent();
  scf_tolerance_set = max_scf_steps_set = total_charge_set = false;

  int iarg = 0;
  while (iarg < narg) {
    const std::string keyword = arg[iarg];
    if (keyword == "efield") {
      if (iarg + 4 > narg)
        error->all(FLERR, "pair_style fpscf: 'efield' needs three values Ex Ey Ez (V/Å, numbers or v_name)");
      for (int k = 0; k < 3; k++) {
        const std::string word = arg[iarg + 1 + k];
        if (utils::strmatch(word, "^v_")) field_spec[k].variable = word.substr(2);
        else field_spec[k].value = utils::numeric(FLERR, word, false, lmp);
      }
      iarg += 4;
    } else if (keyword == "scf_tol") {
      if (iarg + 2 > narg) error->all(FLERR, "pair_style fpscf: 'scf_tol' needs a value");
      scf_tolerance = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (scf_tolerance <= 0.0)
        error->all(FLERR, "pair_style fpscf: scf_tol must be positive, got {}", arg[iarg + 1]);
      scf_tolerance_set = true;
      iarg += 2;
    } else if (keyword == "max_scf") {
      if (iarg + 2 > narg) error->all(FLERR, "pair_style fpscf: 'max_scf' needs a value");
      max_scf_steps = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (max_scf_steps < 1)
        error->all(FLERR, "pair_style fpscf: max_scf must be at least 1, got {}", arg[iarg + 1]);
      max_scf_steps_set = true;
      iarg += 2;
    } else if (keyword == "charge") {
      if (iarg + 2 > narg) error->all(FLERR, "pair_style fpscf: 'charge' needs a value (total charge, e)");
      total_charge = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      total_charge_set = true;
      iarg += 2;
    } else {
      error->all(FLERR, "pair_style fpscf: unknown keyword '{}' (expected efield, scf_tol, max_scf or charge)",
                 keyword);
    }
  }
  if (model) pass_settings();    // pair_style repeated after pair_coeff: pass the new settings on
}

// Give the model attributes scf_tolerance, max_scf_steps and total_charge the values of the keywords
// scf_tol, max_scf and charge the user wrote, and the exported values (read at load) otherwise.
void PairFPSCF::pass_settings()
{
  if (!scf_tolerance_set) scf_tolerance = exported_scf_tolerance;
  if (!max_scf_steps_set) max_scf_steps = exported_max_scf_steps;
  if (!total_charge_set) total_charge = exported_total_charge;
  if (model->hasattr("scf_tolerance")) model->setattr("scf_tolerance", scf_tolerance);
  if (model->hasattr("max_scf_steps")) model->setattr("max_scf_steps", (int64_t) max_scf_steps);
  if (model->hasattr("total_charge")) model->setattr("total_charge", total_charge);
  else if (total_charge_set)
    error->all(FLERR, "pair_style fpscf: 'charge' given but model '{}' has no total_charge attribute", model_path);
}

/* ----------------------------------------------------------------------
   pair_coeff * * model.pt Sym1 Sym2 ... (one element symbol per LAMMPS type)
------------------------------------------------------------------------- */

void PairFPSCF::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff fpscf: expected '* * model.pt' and {} element symbols (one per atom "
               "type), got {} arguments", ntypes, narg);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff fpscf: the first two arguments must be '* *'");

  load_model(arg[2]);

  type_to_species.assign(ntypes + 1, -1);
  for (int itype = 1; itype <= ntypes; itype++) {
    const std::string symbol = arg[2 + itype];
    for (std::size_t s = 0; s < model_species.size(); s++)
      if (model_species[s] == symbol) type_to_species[itype] = (long) s;
    if (type_to_species[itype] < 0) {
      std::string known;
      for (const auto &name : model_species) known += " " + name;
      error->all(FLERR, "pair_coeff fpscf: element '{}' of atom type {} is not in model {} (its species:{})",
                 symbol, itype, model_path, known);
    }
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

void PairFPSCF::load_model(const std::string &path)
{
  if (!std::ifstream(path).good())
    error->all(FLERR, "pair_coeff fpscf: cannot open model file '{}' (missing or unreadable)", path);

  model_path = path;
  // TorchScript's profiling optimisations (autodiff subgraphs) make the SCF and adjoint passes
  // slower, and shapes change every step: run the graphs as written.
  torch::jit::setGraphExecutorOptimize(false);
  try {
    model = std::make_unique<torch::jit::Module>(torch::jit::load(path, torch::kCPU));
    model->eval();
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_coeff fpscf: cannot load '{}' as a TorchScript module: {}", path,
               torch_message(e));
  }

  for (const char *name : {"r_max", "species_symbols", "periodic_only"})
    if (!model->hasattr(name))
      error->all(FLERR, "pair_coeff fpscf: model '{}' lacks the attribute '{}' (see the contract in "
                 "lammps_plugin/README.md)", path, name);
  try {
    r_max = model->attr("r_max").toDouble();
    periodic_only = model->attr("periodic_only").toBool();
    model_species.clear();
    for (const auto &item : model->attr("species_symbols").toListRef())
      model_species.push_back(item.toStringRef());
    num_interactions = model->hasattr("num_interactions") ? (int) model->attr("num_interactions").toInt() : 1;
    has_centroid_virial = model->hasattr("has_centroid_virial") && model->attr("has_centroid_virial").toBool();
    state_size = model->hasattr("state_size") ? (int) model->attr("state_size").toInt() : 0;
    ghost_exchange = model->hasattr("ghost_exchange") && model->attr("ghost_exchange").toBool();
    exchange_width = ghost_exchange ? (int) model->attr("exchange_width").toInt() : 0;
    // the exported SCF settings: what pair_style keywords the user omits fall back to
    if (model->hasattr("scf_tolerance")) exported_scf_tolerance = model->attr("scf_tolerance").toDouble();
    if (model->hasattr("max_scf_steps")) exported_max_scf_steps = (int) model->attr("max_scf_steps").toInt();
    if (model->hasattr("total_charge")) exported_total_charge = model->attr("total_charge").toDouble();
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_coeff fpscf: model '{}' has an attribute of the wrong type: {}", path,
               torch_message(e));
  }
  if (!(r_max > 0.0)) error->all(FLERR, "pair_coeff fpscf: model '{}' has r_max = {}, must be > 0", path, r_max);
  if (num_interactions < 1)
    error->all(FLERR, "pair_coeff fpscf: model '{}' has num_interactions = {}, must be >= 1", path,
               num_interactions);
  if (state_size < 0)
    error->all(FLERR, "pair_coeff fpscf: model '{}' has state_size = {}, must be >= 0", path, state_size);
  pass_settings();
  load_training_domain();

  if (ghost_exchange && exchange_width < 1)
    error->all(FLERR, "pair_coeff fpscf: model '{}' exchanges ghost features but has exchange_width = {}", path,
               exchange_width);
  // messages to ghosts: either exchanged from their owners, or ghosts get neighbor lists of their own
  ghostneigh = (num_interactions > 1 && !ghost_exchange) ? 1 : 0;
  comm_forward = comm_reverse = exchange_width;
  centroidstressflag = has_centroid_virial ? CENTROID_AVAIL : CENTROID_NOTAVAIL;

  if (comm->me == 0) {
    std::string species;
    for (const auto &name : model_species) species += " " + name;
    utils::logmesg(lmp, "pair fpscf: model {} (r_max {} Å, species{}, {} interaction(s){}), {} torch thread(s) per rank\n",
                   path, r_max, species, num_interactions, periodic_only ? ", periodic only" : "",
                   at::get_num_threads());
  }
}

// The training domain (optional): tolerances, limits and per-species tables the warnings name.
void PairFPSCF::load_training_domain()
{
  warned_distance = warned_charge = warned_field = false;
  has_training_domain = model->hasattr("has_training_domain") && model->attr("has_training_domain").toBool();
  max_energy_per_atom = model->hasattr("max_energy_per_atom") ? model->attr("max_energy_per_atom").toDouble()
                                                              : DEFAULT_MAX_ENERGY_PER_ATOM;
  if (!has_training_domain) return;
  const std::size_t nspecies = model_species.size();
  try {
    domain_distance_tolerance = model->attr("domain_distance_tolerance").toDouble();
    domain_charge_tolerance = model->attr("domain_charge_tolerance").toDouble();
    domain_field_limit = model->attr("domain_field_limit").toDouble();
    training_max_field = model->attr("training_max_field").toDouble();
    const torch::Tensor minima = model->attr("training_min_distances").toTensor().to(torch::kFloat64).contiguous();
    const torch::Tensor charges_max = model->attr("training_max_charges").toTensor().to(torch::kFloat64).contiguous();
    if ((std::size_t) minima.numel() != nspecies * nspecies || (std::size_t) charges_max.numel() != nspecies)
      error->all(FLERR, "pair_coeff fpscf: model '{}' has training-domain tables of {} and {} values, expected {} "
                 "and {} (one per species pair and species)", model_path, minima.numel(), charges_max.numel(),
                 nspecies * nspecies, nspecies);
    training_min_distances.assign(minima.data_ptr<double>(), minima.data_ptr<double>() + minima.numel());
    training_max_charges.assign(charges_max.data_ptr<double>(), charges_max.data_ptr<double>() + charges_max.numel());
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_coeff fpscf: model '{}' has a training domain with a missing or mistyped attribute: {}",
               model_path, torch_message(e));
  }
  if (comm->me == 0)
    utils::logmesg(lmp, "pair fpscf: the model records its training domain; leaving it (pairs closer than {} x the "
                   "shortest in training, fields above {:.4g} V/Å, charges above {} x the largest) gives a warning "
                   "once per run\n", domain_distance_tolerance, domain_field_limit, domain_charge_tolerance);
}

// Warnings (once per run, rank 0) for a structure outside the training domain; all ranks take
// part in the reductions while a warning is still due, so they agree on what was warned.
void PairFPSCF::check_domain(const double *values)
{
  const int nspecies = (int) model_species.size();
  const std::string advice = "results there are extrapolation: check the structure and the timestep, or add such "
                             "structures to the training data (this warning is shown once per run)";
  if (!warned_distance) {
    RankValue mine{values[DOMAIN_DISTANCE_RATIO], comm->me}, best{0.0, 0};
    MPI_Allreduce(&mine, &best, 1, MPI_DOUBLE_INT, MPI_MINLOC, world);
    if (best.value < domain_distance_tolerance) {
      double pair[3] = {values[DOMAIN_DISTANCE], values[DOMAIN_SPECIES_A], values[DOMAIN_SPECIES_B]};
      MPI_Bcast(pair, 3, MPI_DOUBLE, best.rank, world);
      warned_distance = true;
      const int a = (int) pair[1], b = (int) pair[2];
      if (comm->me == 0 && a >= 0 && b >= 0 && a < nspecies && b < nspecies) {
        const double minimum = training_min_distances[a * nspecies + b];
        const std::string training = std::isfinite(minimum)
            ? fmt::format("below the shortest in training ({:.2f} Å; warned below {} x)", minimum, domain_distance_tolerance)
            : std::string("a pair never seen in training");
        error->warning(FLERR, "pair_style fpscf: step {}: the structure leaves the model's training domain: {}-{} "
                       "distance {:.2f} Å is {}; {}", update->ntimestep, model_species[a], model_species[b], pair[0],
                       training, advice);
      }
    }
  }
  if (!warned_charge) {
    RankValue mine{values[DOMAIN_CHARGE_RATIO], comm->me}, worst{0.0, 0};
    MPI_Allreduce(&mine, &worst, 1, MPI_DOUBLE_INT, MPI_MAXLOC, world);
    if (worst.value > domain_charge_tolerance) {
      double charge[2] = {values[DOMAIN_CHARGE], values[DOMAIN_CHARGE_SPECIES]};
      MPI_Bcast(charge, 2, MPI_DOUBLE, worst.rank, world);
      warned_charge = true;
      const int s = (int) charge[1];
      if (comm->me == 0 && s >= 0 && s < nspecies)
        error->warning(FLERR, "pair_style fpscf: step {}: the structure leaves the model's training domain: charge "
                       "{:+.2f} e on {} exceeds the largest |q| of {} in training ({:.2f} e; warned above {} x): the "
                       "density is running away (a close contact or a strong field?); {}", update->ntimestep, charge[0],
                       model_species[s], model_species[s], training_max_charges[s], domain_charge_tolerance, advice);
    }
  }
  if (!warned_field) {
    const double strength = std::sqrt(field[0] * field[0] + field[1] * field[1] + field[2] * field[2]);
    if (strength > domain_field_limit) {
      warned_field = true;
      if (comm->me == 0)
        error->warning(FLERR, "pair_style fpscf: step {}: the field {:.3g} V/Å leaves the model's training domain "
                       "(largest field in training {:.3g} V/Å; warned above {:.3g} V/Å); use a weaker field or train "
                       "on structures in fields this strong; {}", update->ntimestep, strength, training_max_field,
                       domain_field_limit, advice);
    }
  }
}

// Stop on every rank, naming the problem, when the model returned a non-finite energy or force,
// or an energy per atom above the isolated-atom references beyond max_energy_per_atom.
void PairFPSCF::check_finite(const double *energies, const double *forces, int nlocal, int nall,
                             double binding_energy, double shortest, const int *shortest_types)
{
  double local[3] = {0.0, 0.0, binding_energy};    // non-finite energies, non-finite forces, binding energy
  for (int i = 0; i < nlocal; i++)
    if (!std::isfinite(energies[i])) local[0] += 1.0;
  for (int k = 0; k < 3 * nall; k++)
    if (!std::isfinite(forces[k])) local[1] += 1.0;
  double total[3];
  MPI_Allreduce(local, total, 3, MPI_DOUBLE, MPI_SUM, world);
  const double per_atom = atom->natoms > 0 ? total[2] / (double) atom->natoms : 0.0;
  std::string problem;
  if (total[0] > 0.0) problem = "a non-finite energy";
  else if (total[1] > 0.0) problem = "non-finite forces";
  else if (std::fabs(per_atom) > max_energy_per_atom)
    problem = fmt::format("an energy of {:.3g} eV per atom above the isolated-atom references (sane: within {:g} "
                          "eV/atom)", per_atom, max_energy_per_atom);
  if (problem.empty()) return;

  RankValue mine{shortest, comm->me}, best{0.0, 0};
  MPI_Allreduce(&mine, &best, 1, MPI_DOUBLE_INT, MPI_MINLOC, world);
  int types[2] = {shortest_types[0], shortest_types[1]};
  MPI_Bcast(types, 2, MPI_INT, best.rank, world);
  std::string where = fmt::format("no two atoms closer than r_max = {} Å", r_max);
  if (std::isfinite(best.value) && types[0] > 0 && types[1] > 0)
    where = fmt::format("shortest interatomic distance {:.3f} Å, {}-{}", best.value,
                        model_species[type_to_species[types[0]]], model_species[type_to_species[types[1]]]);
  error->all(FLERR, "pair_style fpscf: the model returned {} at step {} ({}; field {} {} {} V/Å): likely atoms too "
             "close, a field too large, or a structure outside the model's training domain; check the structure "
             "and the timestep", problem, update->ntimestep, where, field[0], field[1], field[2]);
}

/* ---------------------------------------------------------------------- */

void PairFPSCF::init_style()
{
  if (!model) error->all(FLERR, "pair_style fpscf: no model loaded; use pair_coeff * * model.pt ...");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style fpscf needs 'units metal' (Å, eV, e; fields in V/Å), not '{}'",
               update->unit_style);
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style fpscf needs 'newton on' (the model returns forces on ghost atoms)");
  if (domain->dimension != 3) error->all(FLERR, "pair_style fpscf needs a 3d simulation");
  if (periodic_only && !(domain->xperiodic && domain->yperiodic && domain->zperiodic))
    error->all(FLERR, "pair_style fpscf: model '{}' is for periodic systems only (periodic_only = True) but "
               "the box is not periodic in all directions; use 'boundary p p p'", model_path);

  for (int k = 0; k < 3; k++) {
    auto &component = field_spec[k];
    if (component.variable.empty()) continue;
    component.index = input->variable->find(component.variable.c_str());
    if (component.index < 0)
      error->all(FLERR, "pair_style fpscf: efield variable '{}' does not exist", component.variable);
    if (!input->variable->equalstyle(component.index))
      error->all(FLERR, "pair_style fpscf: efield variable '{}' must be equal-style", component.variable);
  }
  ensure_state_fix();

  // Inside pair_style hybrid (or hybrid/overlay) the hybrid sized LAMMPS' communication buffers from
  // the sub-styles' widths when pair_style was read, before pair_coeff loaded this model and set
  // ours: raise the hybrid's widths to ours (Comm::init reads them after this).
  if (force->pair && force->pair != this) {
    force->pair->comm_forward = std::max(force->pair->comm_forward, comm_forward);
    force->pair->comm_reverse = std::max(force->pair->comm_reverse, comm_reverse);
  }

  if (num_interactions > 1 && !ghost_exchange) {
    // Message passing over num_interactions layers: owned atoms see ghosts up to
    // num_interactions * r_max away, and ghosts need neighbor lists of their own.
    neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
    const double needed = num_interactions * r_max + neighbor->skin;
    if (comm->cutghostuser < needed) {
      comm->cutghostuser = needed;
      if (comm->me == 0)
        utils::logmesg(lmp, "pair fpscf: communication cutoff set to {} Å ({} interactions x r_max + skin)\n",
                       needed, num_interactions);
    }
  } else {
    neighbor->add_request(this, NeighConst::REQ_FULL);
  }
}

// The per-atom SCF state lives in fix FPSCF/STATE so that it migrates with the atoms.
void PairFPSCF::ensure_state_fix()
{
  Fix *existing = modify->get_fix_by_id(STATE_FIX_ID);
  if (existing && (strcmp(existing->style, "FPSCF/STATE") != 0 ||
                   static_cast<FixFPSCFState *>(existing)->nvalues != state_size)) {
    modify->delete_fix(STATE_FIX_ID);
    existing = nullptr;
  }
  if (state_size == 0) {
    state_fix = nullptr;
    return;
  }
  if (!existing) existing = modify->add_fix(fmt::format("{} all FPSCF/STATE {}", STATE_FIX_ID, state_size));
  state_fix = static_cast<FixFPSCFState *>(existing);
}

double PairFPSCF::init_one(int i, int j)
{
  cutghost[i][j] = cutghost[j][i] = r_max;
  return r_max;
}

void PairFPSCF::evaluate_field()
{
  for (int k = 0; k < 3; k++) {
    const auto &component = field_spec[k];
    field[k] = component.variable.empty() ? component.value : input->variable->compute_equal(component.index);
  }
}

/* ---------------------------------------------------------------------- */

void PairFPSCF::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  fpscf::set_communicator(world);

  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  double **x = atom->x;
  double **f = atom->f;
  const int *type = atom->type;

  // inputs: positions and species of owned + ghost atoms, edges within r_max
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor positions = torch::empty({nall, 3}, f64);
  torch::Tensor species = torch::empty({nall}, i64);
  {
    double *pos = positions.data_ptr<double>();
    int64_t *spec = species.data_ptr<int64_t>();
    for (int i = 0; i < nall; i++) {
      for (int k = 0; k < 3; k++) pos[3 * i + k] = x[i][k];
      spec[i] = type_to_species[type[i]];
    }
  }

  // Receivers: owned atoms, and with several interactions the ghosts whose features owned atoms
  // read: depth d(i) = fewest r_max hops from an owned atom; atoms with d < num_interactions
  // receive messages (outer ghosts only send).
  const double cutoff_sq = r_max * r_max;
  const int nlisted = list->inum + (ghostneigh ? list->gnum : 0);
  const int layers = ghost_exchange ? 1 : num_interactions;
  std::vector<int> depth(nall, layers);
  for (int ii = 0; ii < list->inum; ii++) depth[list->ilist[ii]] = 0;
  for (int level = 0; level + 1 < layers; level++)
    for (int ii = 0; ii < nlisted; ii++) {
      const int i = list->ilist[ii];
      if (depth[i] != level) continue;
      const int *neighbors = list->firstneigh[i];
      for (int jj = 0; jj < list->numneigh[i]; jj++) {
        const int j = neighbors[jj] & NEIGHMASK;
        const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
        if (dx * dx + dy * dy + dz * dz < cutoff_sq && depth[j] > level + 1) depth[j] = level + 1;
      }
    }

  std::vector<int64_t> receivers, senders;
  double shortest_sq = std::numeric_limits<double>::infinity();    // of owned atoms, for error messages
  int shortest_types[2] = {0, 0};
  for (int ii = 0; ii < nlisted; ii++) {
    const int i = list->ilist[ii];
    if (depth[i] >= layers) continue;
    const int *neighbors = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; jj++) {
      const int j = neighbors[jj] & NEIGHMASK;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      const double rsq = dx * dx + dy * dy + dz * dz;
      if (rsq < cutoff_sq) {
        receivers.push_back(i);
        senders.push_back(j);
        if (i < nlocal && rsq < shortest_sq) {
          shortest_sq = rsq;
          shortest_types[0] = type[i];
          shortest_types[1] = type[j];
        }
      }
    }
  }
  const int64_t nedges = (int64_t) receivers.size();
  torch::Tensor edge_index = torch::empty({2, nedges}, i64);
  std::copy(receivers.begin(), receivers.end(), edge_index.data_ptr<int64_t>());
  std::copy(senders.begin(), senders.end(), edge_index.data_ptr<int64_t>() + nedges);

  // cell rows a, b, c of the (restricted triclinic) box; h = (xprd, yprd, zprd, yz, xz, xy)
  const double *h = domain->h;
  torch::Tensor cell = torch::tensor({h[0], 0.0, 0.0, h[5], h[1], 0.0, h[4], h[3], h[2]}, f64).view({3, 3});
  torch::Tensor pbc = torch::empty({3}, torch::TensorOptions().dtype(torch::kBool));
  pbc.data_ptr<bool>()[0] = domain->xperiodic != 0;
  pbc.data_ptr<bool>()[1] = domain->yperiodic != 0;
  pbc.data_ptr<bool>()[2] = domain->zperiodic != 0;
  evaluate_field();
  torch::Tensor field_tensor = torch::tensor({field[0], field[1], field[2]}, f64);

  // unwrapped minus wrapped positions of owned atoms (image flags), for the applied-field energy
  torch::Tensor image_shifts = torch::empty({nlocal, 3}, f64);
  {
    double *shift = image_shifts.data_ptr<double>();
    double unwrapped[3];
    for (int i = 0; i < nlocal; i++) {
      domain->unmap(x[i], atom->image[i], unwrapped);
      for (int k = 0; k < 3; k++) shift[3 * i + k] = unwrapped[k] - x[i][k];
    }
  }
  // the previous step's per-atom state (NaN rows for atoms without one)
  torch::Tensor state = torch::empty({nlocal, state_size}, f64);
  if (state_size > 0) {
    if (!state_fix) error->one(FLERR, "pair_style fpscf: internal error: the per-atom state fix is missing");
    double *values = state.data_ptr<double>();
    for (int i = 0; i < nlocal; i++)
      for (int k = 0; k < state_size; k++) values[state_size * i + k] = state_fix->values[i][k];
  }

  // owners of ghost rows are found by communication (fpscf::ghost_exchange); -1 marks a ghost here
  torch::Tensor ghost_owners = torch::full({nall}, -1, i64);
  {
    int64_t *owner = ghost_owners.data_ptr<int64_t>();
    for (int i = 0; i < nlocal; i++) owner[i] = i;
  }

  std::vector<torch::jit::IValue> inputs{positions, species, (int64_t) nlocal, edge_index, cell, pbc,
                                         field_tensor, image_shifts, state, ghost_owners};
  torch::jit::IValue result;
  {
    torch::AutoGradMode enable_grad(true);    // models take forces by autograd
    fpscf::set_ghost_exchanger(this);
    try {
      result = model->forward(inputs);
    } catch (const std::exception &e) {
      fpscf::set_ghost_exchanger(nullptr);
      error->one(FLERR, "pair_style fpscf: model forward failed: {}", torch_message(e));
    }
    fpscf::set_ghost_exchanger(nullptr);
  }
  if (!result.isGenericDict())
    error->one(FLERR, "pair_style fpscf: the model must return Dict[str, Tensor], got {}", result.tagKind());
  const auto outputs = result.toGenericDict();

  const torch::Tensor atomic_energies = model_output(outputs, "atomic_energies", {nlocal}, error);
  const torch::Tensor forces = model_output(outputs, "forces", {nall, 3}, error);
  const torch::Tensor atom_charges = model_output(outputs, "charges", {nlocal}, error);

  // training domain (warnings once per run), then a stop for non-finite or absurd results
  if (has_training_domain && outputs.contains("domain"))
    check_domain(model_output(outputs, "domain", {DOMAIN_SIZE}, error).data_ptr<double>());
  const double binding_energy =
      outputs.contains("binding_energy") ? model_output(outputs, "binding_energy", {1}, error).item<double>() : 0.0;
  check_finite(atomic_energies.data_ptr<double>(), forces.data_ptr<double>(), nlocal, nall, binding_energy,
               std::sqrt(shortest_sq), shortest_types);

  // forces on owned and ghost atoms; LAMMPS reverse-communicates the ghost part (newton on)
  const double *force_data = forces.data_ptr<double>();
  for (int i = 0; i < nall; i++)
    for (int k = 0; k < 3; k++) f[i][k] += force_data[3 * i + k];

  const double *energy_data = atomic_energies.data_ptr<double>();
  if (eflag_global)
    for (int i = 0; i < nlocal; i++) eng_vdwl += energy_data[i];
  if (eflag_atom)
    for (int i = 0; i < nlocal; i++) eatom[i] += energy_data[i];

  if (vflag_global || vflag_atom) {
    const torch::Tensor atom_virial = model_output(outputs, "virial", {nall, 6}, error);
    const double *v = atom_virial.data_ptr<double>();
    for (int i = 0; i < nall; i++)
      for (int k = 0; k < 6; k++) {
        if (vflag_global) virial[k] += v[6 * i + k];
        if (vflag_atom) vatom[i][k] += v[6 * i + k];
      }
  }
  if (cvflag_atom) {
    const torch::Tensor centroid = model_output(outputs, "centroid_virial", {nall, 9}, error);
    const double *cv = centroid.data_ptr<double>();
    for (int i = 0; i < nall; i++)
      for (int k = 0; k < 9; k++) cvatom[i][k] += cv[9 * i + k];
  }

  // charges of owned atoms: atom->q (if the atom style has one), extract_peratom("charges")
  if (atom->nmax > max_charges) {
    max_charges = atom->nmax;
    memory->destroy(charges);
    memory->create(charges, max_charges, "pair:charges");
  }
  const double *q = atom_charges.data_ptr<double>();
  double rank_charge = 0.0;
  for (int i = 0; i < nlocal; i++) {
    charges[i] = q[i];
    rank_charge += q[i];
    if (atom->q_flag) atom->q[i] = q[i];
  }

  // this rank's share of the dipole: the model's "dipole" output, else sum of q_i * unwrapped x_i
  if (outputs.contains("dipole")) {
    const torch::Tensor d = model_output(outputs, "dipole", {3}, error);
    for (int k = 0; k < 3; k++) dipole[k] = d.data_ptr<double>()[k];
  } else {
    dipole[0] = dipole[1] = dipole[2] = 0.0;
    double unwrapped[3];
    for (int i = 0; i < nlocal; i++) {
      domain->unmap(x[i], atom->image[i], unwrapped);
      for (int k = 0; k < 3; k++) dipole[k] += q[i] * unwrapped[k];
    }
  }
  pvector[DIPOLE_X] = dipole[0];
  pvector[DIPOLE_Y] = dipole[1];
  pvector[DIPOLE_Z] = dipole[2];
  pvector[TOTAL_CHARGE] = rank_charge;

  if (state_size > 0) {
    const torch::Tensor new_state = model_output(outputs, "state", {nlocal, state_size}, error);
    const double *values = new_state.data_ptr<double>();
    for (int i = 0; i < nlocal; i++)
      for (int k = 0; k < state_size; k++) state_fix->values[i][k] = values[state_size * i + k];
  }
  scf_steps = 0;
  if (outputs.contains("scf_steps")) scf_steps = (int) model_output(outputs, "scf_steps", {1}, error).item<double>();
  pvector[SCF_STEPS] = (double) scf_steps / comm->nprocs;
}

/* ----------------------------------------------------------------------
   extract("field"|"dipole"|"r_max"): per-rank values for other styles and the library interface
------------------------------------------------------------------------- */

void *PairFPSCF::extract(const char *name, int &dim)
{
  if (strcmp(name, "field") == 0) {
    dim = 1;
    return (void *) field;
  }
  if (strcmp(name, "dipole") == 0) {
    dim = 1;
    return (void *) dipole;
  }
  if (strcmp(name, "r_max") == 0) {
    dim = 0;
    return (void *) &r_max;
  }
  return nullptr;
}

/* per-atom charges (e) of owned atoms, e.g. `fix ID all pair 1 fpscf charges 0` */

void *PairFPSCF::extract_peratom(const char *name, int &ncol)
{
  if (strcmp(name, "charges") == 0) {
    ncol = 0;
    return (void *) charges;
  }
  return nullptr;
}

/* ----------------------------------------------------------------------
   fpscf::ghost_exchange through LAMMPS' pair communication
------------------------------------------------------------------------- */

int PairFPSCF::owned_atoms() const
{
  return atom->nlocal;
}

void PairFPSCF::forward(double *data, int width)
{
  if (width > exchange_width)
    error->one(FLERR, "pair_style fpscf: the model exchanges rows of {} values, more than its exchange_width {}",
               width, exchange_width);
  exchange_data = data;
  exchange_row = width;
  comm->forward_comm(this, width);
  exchange_data = nullptr;
}

void PairFPSCF::reverse(double *data, int width)
{
  if (width > exchange_width)
    error->one(FLERR, "pair_style fpscf: the model exchanges rows of {} values, more than its exchange_width {}",
               width, exchange_width);
  exchange_data = data;
  exchange_row = width;
  comm->reverse_comm(this, width);
  exchange_data = nullptr;
}

int PairFPSCF::pack_forward_comm(int n, int *list, double *buf, int /*pbc_flag*/, int * /*pbc*/)
{
  int m = 0;
  for (int i = 0; i < n; i++) {
    const double *row = exchange_data + (std::size_t) list[i] * exchange_row;
    for (int k = 0; k < exchange_row; k++) buf[m++] = row[k];
  }
  return m;
}

void PairFPSCF::unpack_forward_comm(int n, int first, double *buf)
{
  int m = 0;
  for (int i = first; i < first + n; i++) {
    double *row = exchange_data + (std::size_t) i * exchange_row;
    for (int k = 0; k < exchange_row; k++) row[k] = buf[m++];
  }
}

int PairFPSCF::pack_reverse_comm(int n, int first, double *buf)
{
  int m = 0;
  for (int i = first; i < first + n; i++) {
    const double *row = exchange_data + (std::size_t) i * exchange_row;
    for (int k = 0; k < exchange_row; k++) buf[m++] = row[k];
  }
  return m;
}

void PairFPSCF::unpack_reverse_comm(int n, int *list, double *buf)
{
  int m = 0;
  for (int i = 0; i < n; i++) {
    double *row = exchange_data + (std::size_t) list[i] * exchange_row;
    for (int k = 0; k < exchange_row; k++) row[k] += buf[m++];
  }
}
