/* fpscf:: communication operators over MPI: see fpscf_ops.h. */

#include "fpscf_ops.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>
#include <torch/script.h>

#include <memory>
#include <string>

namespace {

MPI_Comm current_comm = MPI_COMM_NULL;

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
  library->impl("allreduce_sum", torch::dispatch(key, TORCH_FN(allreduce_sum)));
  library->impl("allreduce_max", torch::dispatch(key, TORCH_FN(allreduce_max)));
  library->impl("world_info", torch::dispatch(key, TORCH_FN(world_info)));
}

void set_communicator(MPI_Comm comm)
{
  current_comm = comm;
}

}    // namespace fpscf
