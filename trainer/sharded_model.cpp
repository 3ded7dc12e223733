// Gather buffers per bucket, units, and the layer runner's autograd node.
#include "trainer/sharded_model.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <optional>

#include "common/compat.h"
#include "common/error.h"

namespace qtrain::trainer {

int sharding_unit(const std::string& name) {
  static_assert(kRootUnit == -1, "the root unit is what decoder_layer_of calls outside the layers");
  return model::decoder_layer_of(name);
}

namespace {

// The backward of one decoder layer run by the layer runner: gathers its weights again when
// sharded, runs its forward again when checkpointed, then the layer's own backward into the
// parameters' .grad (where GradSync's hooks take over) and the input's gradient.
struct LayerBackward : torch::autograd::Node {
  ShardedModel* sharded = nullptr;  // null: not sharded (checkpointing only)
  int layer = 0;
  bool recompute = false;
  bool input_requires_grad = false;
  model::LayerForward forward;        // recompute only
  std::vector<torch::Tensor> params;  // the layer's trainable parameters
  torch::Tensor input;                // recompute: the layer's input; else the leaf its graph starts from
  torch::Tensor output;               // not recompute: the output of the layer's graph
  std::optional<torch::ScalarType> autocast;
  torch::Device device{torch::kCPU};

  std::string name() const override { return "qtrain::LayerBackward"; }
  void release_variables() override {
    input = torch::Tensor();
    output = torch::Tensor();
  }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    QT_REQUIRE(input.defined(), "a decoder layer's backward ran twice (retain_graph is not supported with "
                                "parallel.zero_stage 3 or training.activation_checkpointing)");
    if (sharded) {
      sharded->acquire(layer);
      if (layer > 0) sharded->prefetch(layer - 1);
    }
    torch::Tensor leaf = input, out = output;
    if (recompute) {
      torch::AutoGradMode grad_mode(true);
      std::optional<compat::AutocastGuard> mixed;
      if (autocast) mixed.emplace(device, *autocast);
      leaf = input.detach().requires_grad_(input_requires_grad);
      out = forward(leaf);
    }
    if (grads[0].defined()) {
      auto inputs = params;
      if (leaf.requires_grad()) inputs.push_back(leaf);
      torch::autograd::backward({out}, {grads[0]}, /*retain_graph=*/false, /*create_graph=*/false, inputs);
    }
    if (sharded) sharded->release(layer);
    auto grad_input = leaf.requires_grad() ? leaf.grad() : torch::Tensor();
    release_variables();
    forward = nullptr;
    return {grad_input};
  }
};

std::vector<torch::Tensor> trainable(torch::nn::Module& layer) {
  std::vector<torch::Tensor> out;
  for (const auto& p : layer.parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

// One decoder layer's forward, gathered around it when sharded; with gradients, its graph
// hangs under a LayerBackward node.
torch::Tensor run_layer(ShardedModel* sharded, bool checkpoint, int layer, const torch::Tensor& h,
                        const model::LayerForward& forward, std::vector<torch::Tensor> params) {
  const bool with_grad =
      torch::GradMode::is_enabled() && (h.requires_grad() || !params.empty());
  if (sharded) {
    sharded->acquire(layer);
    if (layer + 1 < sharded->layers()) sharded->prefetch(layer + 1);
  }
  if (!with_grad) {
    auto out = forward(h);
    if (sharded) sharded->release(layer);
    return out;
  }
  auto node = std::make_shared<LayerBackward>();
  node->sharded = sharded;
  node->layer = layer;
  node->recompute = checkpoint;
  node->input_requires_grad = h.requires_grad();
  node->params = std::move(params);
  node->device = h.device();
  if (h.is_cuda()) node->autocast = compat::cuda_autocast_dtype();
  torch::Tensor out;
  if (checkpoint) {
    torch::NoGradGuard no_grad;
    out = forward(h);
    node->input = h.detach();
    node->forward = forward;
  } else {
    auto leaf = h.detach().requires_grad_(h.requires_grad());
    auto inner = forward(leaf);
    node->input = leaf;
    node->output = inner;
    out = inner.variable_data();  // the same memory, outside the layer's graph
  }
  if (sharded) sharded->release(layer);
  node->set_next_edges(torch::autograd::collect_next_edges(h));
  torch::autograd::set_history(out, node);
  return out;
}

}  // namespace

ShardedModel::ShardedModel(model::CausalLMImpl& model, FlatParameters& flat, Collective& collective,
                           torch::ScalarType gather_dtype, bool activation_checkpointing)
    : model_(model), flat_(flat), collective_(collective) {
  QT_REQUIRE(flat.owns_values_only(), "a sharded model needs stage-3 flat parameters");
  QT_REQUIRE(flat.shards() == collective.world_size(), "flat parameters sharded other than over the ranks");
  layer_units_.resize(model.config().num_hidden_layers);
  torch::NoGradGuard no_grad;
  for (size_t b = 0; b < flat.buckets().size(); ++b) {
    const auto& bucket = flat.buckets()[b];
    QT_REQUIRE(bucket.unit == kRootUnit || (bucket.unit >= 0 && bucket.unit < layers()),
               "a bucket of an unknown unit");
    unit(bucket.unit).buckets.push_back(b);
    auto buffer = torch::empty({bucket.segment()}, flat.values().options().device(flat.device()).dtype(gather_dtype));
    for (size_t i : bucket.entries) {
      const auto& e = flat.entries()[i];
      auto param = e.param;  // the module's parameter object: its storage becomes the buffer's
      param.set_data(buffer.narrow(0, e.offset - bucket.begin, e.numel).view(param.sizes()));
    }
    compat::release_storage(buffer);
    buffers_.push_back(buffer);
  }
  auto* self = this;
  model_.set_layer_runner([self, activation_checkpointing, &model](int64_t layer, const torch::Tensor& h,
                                                                  const model::LayerForward& forward) {
    auto& module = *model.model->layers[layer];
    return run_layer(self, activation_checkpointing, static_cast<int>(layer), h, forward, trainable(module));
  });
}

ShardedModel::~ShardedModel() { model_.set_layer_runner(nullptr); }

void ShardedModel::launch(Unit& u) {
  torch::NoGradGuard no_grad;
  for (size_t b : u.buckets) {
    auto& buffer = buffers_[b];
    const auto nbytes = static_cast<size_t>(buffer.numel()) * buffer.element_size();
    auto* pool = buffer.is_cuda() ? nullptr : &free_blocks_[nbytes];
    if (pool && !pool->empty()) {
      compat::put_storage(buffer, std::move(pool->back()), nbytes);
      pool->pop_back();
    } else {
      compat::allocate_storage(buffer, nbytes);
    }
    const auto segment = flat_.owned_segment(b);
    buffer.narrow(0, segment.begin - flat_.buckets()[b].begin, segment.size())
        .copy_(flat_.values_at(segment.begin, segment.size()));
    collective_.all_gather(buffer);
  }
  u.in_flight = true;
}

void ShardedModel::acquire(int unit_index) {
  auto& u = unit(unit_index);
  if (u.holders++ > 0) return;
  if (!u.in_flight) launch(u);
  collective_.wait();
  u.in_flight = false;
}

void ShardedModel::prefetch(int unit_index) {
  auto& u = unit(unit_index);
  if (u.holders == 0 && !u.in_flight) launch(u);
}

void ShardedModel::release(int unit_index) {
  auto& u = unit(unit_index);
  QT_REQUIRE(u.holders > 0, "a unit released more often than gathered");
  if (--u.holders > 0) return;  // held means waited for: no collective still writes into it
  for (size_t b : u.buckets) {
    auto& buffer = buffers_[b];
    auto* pool = buffer.is_cuda() ? nullptr : &free_blocks_[static_cast<size_t>(buffer.numel()) * buffer.element_size()];
    if (!pool || pool->size() >= kPooledPerSize)
      compat::release_storage(buffer);  // back to the (caching) allocator
    else
      pool->push_back(compat::take_storage(buffer));
  }
}

void ShardedModel::write_back(const Unit& u) {
  torch::NoGradGuard no_grad;
  for (size_t b : u.buckets) {
    const auto segment = flat_.owned_segment(b);
    flat_.values_at(segment.begin, segment.size())
        .copy_(buffers_[b].narrow(0, segment.begin - flat_.buckets()[b].begin, segment.size()));
  }
}

ShardedModel::Scope ShardedModel::gather_all(bool write_back) {
  std::vector<int> units{kRootUnit};
  for (int i = 0; i < layers(); ++i) units.push_back(i);
  return Scope(this, std::move(units), write_back);
}

ShardedModel::Scope::Scope(ShardedModel* owner, std::vector<int> units, bool write_back)
    : owner_(owner), units_(std::move(units)), write_back_(write_back) {
  for (int u : units_) owner_->acquire(u);
}

ShardedModel::Scope::Scope(Scope&& other) noexcept
    : owner_(other.owner_), units_(std::move(other.units_)), write_back_(other.write_back_) {
  other.owner_ = nullptr;
}

ShardedModel::Scope::~Scope() {
  if (!owner_) return;
  if (write_back_)
    for (int u : units_) owner_->write_back(owner_->unit(u));
  for (auto it = units_.rbegin(); it != units_.rend(); ++it) owner_->release(*it);
}

void enable_activation_checkpointing(model::CausalLMImpl& model) {
  model.set_layer_runner([&model](int64_t layer, const torch::Tensor& h, const model::LayerForward& forward) {
    auto& module = *model.model->layers[layer];
    return run_layer(nullptr, true, static_cast<int>(layer), h, forward, trainable(module));
  });
}

}  // namespace qtrain::trainer
