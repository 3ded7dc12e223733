// ZeRO-3 (Rajbhandari et al. 2020; PyTorch FSDP, Zhao et al. 2023) for one model: its
// parameters live only as this rank's segments of a stage-3 FlatParameters, and each unit
// (a decoder layer; "the root": embeddings, final norm, lm_head and anything else) is
// all-gathered into a full buffer just before it is needed and freed after it:
//   - forward of decoder layer i: gather i (prefetched while layer i-1 ran), start the gather
//     of i+1, run the layer, free i. With gradients, the layer's autograd graph is kept, its
//     saved weights pointing into the freed buffer (FSDP's storage trick: the storage is
//     released and re-allocated in place, compat::release_storage);
//   - backward of layer i: gather i again (i-1 prefetched), run the layer's backward, free i;
//     the gradients land in the parameters' .grad, which GradSync reduce-scatters bucket by
//     bucket into the owned gradient segments;
//   - the root stays gathered for a whole step (Scope), as FSDP keeps its root unit.
// With activation checkpointing (torchtitan's per-layer AC) a layer's forward keeps nothing
// but its input, and its backward runs the forward again first; this also works unsharded.
// The parameters are re-bound once to views of the gather buffers, so module code, fake
// quantization and the losses see ordinary full tensors while a unit is gathered.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <vector>

#include "model/causal_lm.h"
#include "trainer/collective.h"
#include "trainer/flat_parameters.h"

namespace qtrain::trainer {

// The unit of a parameter name for FlatOptions::unit_of: the decoder layer's index for
// "model.layers.<i>.", kRootUnit for everything else.
constexpr int kRootUnit = -1;
int sharding_unit(const std::string& parameter_name);

class ShardedModel {
 public:
  // `flat` (stage 3, units from sharding_unit) holds `model`'s parameters, and possibly
  // others of the root unit (the distillation projections). Units are gathered in
  // `gather_dtype` (the compute dtype, FSDP's param_dtype: bf16 on GPU, so that the weights
  // that backward keeps are the gathered ones, not autocast's copies; fp32 on CPU), and the
  // parameters take that dtype. The model gets a layer runner, with activation checkpointing
  // or without. Build it before the GradSync that hooks the parameters.
  ShardedModel(model::CausalLMImpl& model, FlatParameters& flat, Collective& collective,
               torch::ScalarType gather_dtype, bool activation_checkpointing);
  ~ShardedModel();
  ShardedModel(const ShardedModel&) = delete;
  ShardedModel& operator=(const ShardedModel&) = delete;

  // Units gathered while a Scope lives: the root (a training step, an evaluation; PTQ, with
  // write_back), one unit (PTQ's layer), or everything (checkpoints, the pruned export,
  // pruning). With write_back, the owned segments take the gathered values when it ends
  // (code that changed weights in place), rounded through the gather dtype.
  class Scope {
   public:
    Scope(ShardedModel* owner, std::vector<int> units, bool write_back);
    ~Scope();
    Scope(Scope&& other) noexcept;
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    ShardedModel* owner_;
    std::vector<int> units_;
    bool write_back_;
  };
  Scope gather_root(bool write_back = false) { return Scope(this, {kRootUnit}, write_back); }
  Scope gather_unit(int unit, bool write_back) { return Scope(this, {unit}, write_back); }
  Scope gather_all(bool write_back);

  // Layer runner parts, public for the autograd node in sharded_model.cpp.
  void acquire(int unit);
  void release(int unit);
  void prefetch(int unit);
  int layers() const { return static_cast<int>(layer_units_.size()); }

 private:
  struct Unit {
    std::vector<size_t> buckets;
    int holders = 0;
    bool in_flight = false;  // gather launched, not yet waited for
  };
  Unit& unit(int u) { return u == kRootUnit ? root_ : layer_units_.at(u); }
  void launch(Unit& u);
  void write_back(const Unit& u);

  model::CausalLMImpl& model_;
  FlatParameters& flat_;
  Collective& collective_;
  std::vector<torch::Tensor> buffers_;  // per bucket: the gathered bucket, storage released when not held
  // Host blocks of released buffers, by size, for the next gathers: the CPU allocator
  // (glibc) would otherwise serve these blocks of a few MB from a heap that fragments and
  // does not shrink (26% more resident memory at the peak, measured). CUDA's caching
  // allocator does this itself. At most kPooledPerSize blocks of a size are kept (a step
  // holds at most three units at once), so that a scope that gathered everything (PTQ,
  // pruning, export) does not leave a whole model in the pool.
  static constexpr size_t kPooledPerSize = 3;
  std::map<size_t, std::vector<at::DataPtr>> free_blocks_;
  Unit root_;
  std::vector<Unit> layer_units_;
};

// Activation checkpointing of every decoder layer of an unsharded model (the runner that
// ShardedModel also applies, without gathering).
void enable_activation_checkpointing(model::CausalLMImpl& model);

}  // namespace qtrain::trainer
