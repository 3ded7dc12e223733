// Building a training session from the config.
#include "trainer/session.h"

#include <ATen/CPUGeneratorImpl.h>

#include <map>

#include "common/device.h"
#include "common/dist.h"
#include "common/error.h"
#include "quant/quantized_model.h"
#include "trainer/models.h"
#include "trainer/quantization.h"

namespace qtrain::trainer {

namespace {

model::NamedTensors named(torch::nn::Module& module, const std::string& prefix = "") {
  model::NamedTensors out;
  for (auto& item : module.named_parameters()) out.emplace_back(prefix + item.key(), item.value());
  return out;
}

void init_projections(torch::nn::Module& projections, double std, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto generator = at::detail::createCPUGenerator(seed);
  for (auto& p : projections.parameters()) p.copy_(at::normal(0.0, std, p.sizes(), generator));
}

distill::DistillOptions distill_options(const config::DistillSection& d) {
  distill::DistillOptions o;
  o.alpha = d.alpha;
  o.beta = d.beta;
  o.temperature = d.temperature;
  o.gamma = d.gamma;
  o.hidden_loss = d.hidden_loss;
  o.student_layers = d.student_layers;
  o.teacher_layers = d.teacher_layers;
  o.loss_chunk_tokens = d.loss_chunk_tokens;
  o.router_aux_loss = d.router_aux_loss;
  return o;
}

// ZeRO-3 start-up: each value of a skeleton's parameters goes into this rank's segments as it
// is made. A fake-quantized layer takes its initial (min-max) weight parameters from the
// full fp32 weight as it passes, as it would have from the loaded weight; a learned scale
// goes into the flat parameters too. Then the source is dropped, and with it the mapping of
// its checkpoint, whose pages read so far count in this process's resident memory.
void stream_values(ModelSkeleton& source, model::CausalLMImpl& model, FlatParameters& flat) {
  const auto quantized = quant::fake_quant_layers(model);
  std::map<const void*, std::string> flat_name;
  for (const auto& e : flat.entries()) flat_name[e.param.unsafeGetTensorImpl()] = e.name;
  torch::NoGradGuard no_grad;
  source.for_each_value([&](const std::string& name, const torch::Tensor& value) {
    flat.fill(name, value);
    const auto dot = name.rfind('.');
    if (dot == std::string::npos || name.compare(dot, std::string::npos, ".weight") != 0) return;
    const auto it = quantized.find(name.substr(0, dot));
    if (it == quantized.end() || !it->second->scheme().weights) return;
    auto& layer = *it->second;
    const auto qp = layer.initial_weight_qparams(value.to(flat.device(), torch::kFloat32));
    auto& weights = layer.weights();
    weights.scale.copy_(qp.scale);
    weights.zero_point.copy_(qp.zero_point);
    if (weights.global_scale.defined()) weights.global_scale.copy_(qp.global_scale);
    const auto learned = flat_name.find(weights.scale.unsafeGetTensorImpl());
    if (learned != flat_name.end()) flat.fill(learned->second, weights.scale);
  });
  source.for_each_value = nullptr;
}

}  // namespace

Shards::Scopes Shards::roots() {
  Scopes out;
  if (student) out.push_back(student->gather_root());
  if (teacher) out.push_back(teacher->gather_root());
  return out;
}

Shards::Scopes Shards::whole_models() {
  Scopes out;
  if (student) out.push_back(student->gather_all(/*write_back=*/false));
  if (teacher) out.push_back(teacher->gather_all(/*write_back=*/false));
  return out;
}

Session::Session(const config::JobConfig& job_config)
    : job(job_config),
      device(resolve_device(config::name_of(job.model.device))),
      compute_dtype(resolve_dtype(config::name_of(job.model.dtype), device)),
      schedule(lr_schedule(job.training)) {
  const int stage = zero_stage();
  if (job.parallel.offload_optimizer && stage < 3)
    throw Error("parallel.offload_optimizer moves each rank's shard of the weights, gradients and moments to host memory")
        .key("parallel.offload_optimizer")
        .expected("false, or parallel.zero_stage 3");
  if (stage >= 3 && !device.is_cuda() && compute_dtype != torch::kFloat32)
    throw Error("ZeRO-3 on the CPU gathers in model.dtype, which MPI's collectives here take only as fp32")
        .key("model.dtype")
        .expected("fp32 (or auto) with parallel.zero_stage 3 on the CPU");

  // Models and the objective. At ZeRO-3 they are skeletons, their values streamed into the
  // shards below, so that no rank ever holds a whole model (unless the teacher is replicated).
  const auto seed = static_cast<uint64_t>(job.run.seed);
  ModelSkeleton teacher_source, student_source;
  if (stage >= 3 && job.parallel.shard_teacher) {
    teacher_source = teacher_skeleton(job.model, device, compute_dtype);
    teacher = teacher_source.model;
  } else {
    teacher = load_teacher(job.model, device, compute_dtype);
  }
  if (stage >= 3) {
    student_source = student_skeleton(job.model, teacher ? &teacher->config() : nullptr, compute_dtype, device, seed);
    student = student_source.model;
  } else {
    student = build_student(job.model, teacher, device, seed);
  }
  quantized = attach_quantization(job.quant, *student);
  // The skeleton's learned NVFP4 scales would start under each layer's own global scale: the
  // fused layers' shared one needs their weights together, which streaming never has.
  if (stage >= 3 && job.quant.learnable_scales)
    for (const auto& [name, layer] : quant::fake_quant_layers(*student))
      if (layer->scheme().weights && layer->scheme().weights->has_global_scale())
        throw Error("learned NVFP4 scales are not implemented at ZeRO-3 ('" + name + "')")
            .key("quant.learnable_scales")
            .expected("false with nvfp4 schemes at parallel.zero_stage 3, or zero_stage 0-2");
  pruning = StudentPruning::attach(job.prune, job.quant, calibration_data(job.data), student, compute_dtype);  // after quantization: checks its groups
  const auto student_width = student->config().hidden_size;
  projections = distill::HiddenProjections(distill_options(job.distill), student_width,
                                           teacher ? teacher->config().hidden_size : student_width);
  init_projections(*projections, job.model.init_std, seed + 1);
  projections->to(device, torch::kFloat32);
  extras = named(*projections, "distill.");
  loss = std::make_unique<distill::DistillLoss>(distill_options(job.distill), student, teacher, projections,
                                                compute_dtype);

  // Parameters, communication, optimizer.
  auto trainable = named(*student);
  trainable.insert(trainable.end(), extras.begin(), extras.end());
  collective = make_collective(device);
  // ZeRO: the flat buffers' buckets split into one segment per rank; each rank's optimizer
  // owns its segments (and from stage 2 its gradients, at stage 3 its weights too).
  FlatOptions flat_options;
  flat_options.bucket_bytes = job.parallel.bucket_mb << 20;
  flat_options.shards = stage >= 1 ? dist::world_size() : 1;
  flat_options.rank = stage >= 1 ? dist::rank() : 0;
  flat_options.zero_stage = stage;
  flat_options.unit_of = sharding_unit;
  flat_options.offload = job.parallel.offload_optimizer;
  flat = std::make_unique<FlatParameters>(trainable, flat_options);
  // Every replica starts from rank 0's weights, as DDP does. At stage 3 every rank made the
  // same values (read from the same files, or generated from the same seed).
  if (stage < 3) collective->broadcast(flat->values(), 0);
  if (stage >= 3) {
    stream_values(student_source, *student, *flat);
    shards.student = std::make_unique<ShardedModel>(*student, *flat, *collective, compute_dtype,
                                                    job.training.activation_checkpointing);
    if (teacher && job.parallel.shard_teacher) {
      auto teacher_options = flat_options;
      teacher_options.with_grads = false;
      teacher_options.offload = false;  // its shard stays on the device: gathered twice a step
      shards.teacher_flat = std::make_unique<FlatParameters>(named(*teacher), teacher_options);
      stream_values(teacher_source, *teacher, *shards.teacher_flat);
      shards.teacher = std::make_unique<ShardedModel>(*teacher, *shards.teacher_flat, *collective,
                                                      shards.teacher_flat->values().scalar_type(), false);
    }
  } else if (job.training.activation_checkpointing) {
    enable_activation_checkpointing(*student);
  }
  grad_sync = std::make_unique<GradSync>(*flat, *collective);
  AdamWOptions adamw;
  adamw.beta1 = job.training.beta1;
  adamw.beta2 = job.training.beta2;
  adamw.eps = job.training.eps;
  adamw.weight_decay = job.training.weight_decay;
  optimizer = std::make_unique<AdamW>(*flat, adamw, flat->shards() > 1 ? dist::rank() : 0);
}

TensorSlices owned_slices(FlatParameters& flat, const model::NamedTensors& targets, bool replicated) {
  TensorSlices out;
  for (const auto& [name, tensor] : targets) {
    const auto piece = flat.owned_piece(name);
    if (!piece) {
      if (replicated) out.push_back({name, tensor.sizes().vec(), 0, tensor});
    } else if (piece->length > 0) {
      out.push_back({name, tensor.sizes().vec(), piece->param_begin, flat.values_at(piece->flat_begin, piece->length)});
    }
  }
  return out;
}

}  // namespace qtrain::trainer
