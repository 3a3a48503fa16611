/* fpscf:: communication operators over MPI: see fpscf_ops.h. */

#include "fpscf_ops.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>
#include <torch/script.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace {

MPI_Comm current_comm = MPI_COMM_NULL;
fpscf::GhostExchanger *current_exchanger = nullptr;

bool distributed(int *rank, int *size)
{
  *rank = 0;
  *size = 1;
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (current_comm == MPI_COMM_NULL || !initialized || finalized) return false;
  MPI_Comm_rank(current_comm, rank);
  MPI_Comm_size(current_comm, size);
  return *size > 1;
}

// Element-wise reduction of x over the ranks, computed in float64 on the CPU.
torch::Tensor reduce(const torch::Tensor &x, MPI_Op op)
{
  int rank, size;
  torch::Tensor buffer = x.detach().to(torch::kCPU, torch::kFloat64).contiguous().clone();
  if (distributed(&rank, &size) && buffer.numel() > 0)
    MPI_Allreduce(MPI_IN_PLACE, buffer.data_ptr<double>(), (int) buffer.numel(), MPI_DOUBLE, op, current_comm);
  return buffer.to(x.device(), x.scalar_type());
}

struct AllreduceSum : public torch::autograd::Function<AllreduceSum> {
  static torch::Tensor forward(torch::autograd::AutogradContext *, const torch::Tensor &x)
  {
    return reduce(x, MPI_SUM);
  }
  // E = Σ_ranks E_r and every E_r depends on the sum: the cotangent of each share is the sum of
  // the ranks' cotangents, i.e. the same all-reduce.
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *,
                                                 torch::autograd::variable_list grads)
  {
    return {AllreduceSum::apply(grads[0])};
  }
};

torch::Tensor allreduce_sum(const torch::Tensor &x)
{
  return AllreduceSum::apply(x);
}

torch::Tensor allreduce_max(const torch::Tensor &x)
{
  return reduce(x, MPI_MAX);
}

torch::Tensor world_info(const torch::Tensor &like)
{
  int rank, size;
  distributed(&rank, &size);
  return torch::tensor({(int64_t) rank, (int64_t) size}, torch::TensorOptions().dtype(torch::kInt64).device(like.device()));
}

// x [n_all, F] with ghost rows taken from their owners. Through the pair style (LAMMPS forward /
// reverse communication) during a force evaluation, else by the owners index (one process).
struct GhostExchange : public torch::autograd::Function<GhostExchange> {
  static torch::Tensor forward(torch::autograd::AutogradContext *ctx, const torch::Tensor &x,
                               const torch::Tensor &owners)
  {
    ctx->saved_data["through_comm"] = current_exchanger != nullptr;
    if (!current_exchanger) {
      ctx->save_for_backward({owners});
      ctx->saved_data["rows"] = x.size(0);
      return x.index_select(0, owners);
    }
    torch::Tensor rows = x.detach().to(torch::kCPU, torch::kFloat64).contiguous().clone();
    current_exchanger->forward(rows.data_ptr<double>(), (int) rows.size(1));
    return rows.to(x.device(), x.scalar_type());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads)
  {
    const torch::Tensor &grad = grads[0];
    if (!ctx->saved_data["through_comm"].toBool()) {
      const torch::Tensor owners = ctx->get_saved_variables()[0];
      torch::Tensor result = torch::zeros({ctx->saved_data["rows"].toInt(), grad.size(1)}, grad.options());
      return {result.index_add(0, owners, grad), torch::Tensor()};
    }
    if (!current_exchanger)
      throw std::runtime_error("fpscf::ghost_exchange: backward pass outside the force evaluation that made it");
    torch::Tensor rows = grad.detach().to(torch::kCPU, torch::kFloat64).contiguous().clone();
    current_exchanger->reverse(rows.data_ptr<double>(), (int) rows.size(1));
    const int64_t owned = current_exchanger->owned_atoms();
    rows.narrow(0, owned, rows.size(0) - owned).zero_();
    return {rows.to(grad.device(), grad.scalar_type()), torch::Tensor()};
  }
};

torch::Tensor ghost_exchange(const torch::Tensor &x, const torch::Tensor &owners)
{
  return GhostExchange::apply(x, owners);
}

bool defined(const char *name)
{
  return c10::Dispatcher::singleton().findSchema({std::string("fpscf::") + name, ""}).has_value();
}

}    // namespace

namespace fpscf {

void register_operators()
{
  static std::unique_ptr<torch::Library> library;
  if (library) return;
  library = std::make_unique<torch::Library>(torch::Library::FRAGMENT, "fpscf", std::nullopt, __FILE__, __LINE__);
  const auto key = c10::DispatchKey::CompositeImplicitAutograd;
  if (!defined("allreduce_sum")) library->def("allreduce_sum(Tensor x) -> Tensor");
  if (!defined("allreduce_max")) library->def("allreduce_max(Tensor x) -> Tensor");
  if (!defined("world_info")) library->def("world_info(Tensor like) -> Tensor");
  if (!defined("ghost_exchange")) library->def("ghost_exchange(Tensor x, Tensor owners) -> Tensor");
  library->impl("allreduce_sum", torch::dispatch(key, TORCH_FN(allreduce_sum)));
  library->impl("allreduce_max", torch::dispatch(key, TORCH_FN(allreduce_max)));
  library->impl("world_info", torch::dispatch(key, TORCH_FN(world_info)));
  library->impl("ghost_exchange", torch::dispatch(key, TORCH_FN(ghost_exchange)));
}

void set_communicator(MPI_Comm comm)
{
  current_comm = comm;
}

void set_ghost_exchanger(GhostExchanger *exchanger)
{
  current_exchanger = exchanger;
}

}    // namespace fpscf
