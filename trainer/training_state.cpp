// (De)serialization of the training counters and RNG state.
#include "trainer/training_state.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cstdio>

#include "common/error.h"

namespace qtrain::trainer {

nlohmann::json TrainingState::to_json() const {
  return {{"step", step},           {"optimizer_steps", optimizer_steps}, {"skipped_steps", skipped_steps},
          {"tokens_seen", tokens_seen}, {"sampler", sampler.to_json()},   {"cpu_rng_state", cpu_rng_state()}};
}

TrainingState TrainingState::from_json(const nlohmann::json& j) {
  try {
    TrainingState s;
    s.step = j.at("step").get<int64_t>();
    s.optimizer_steps = j.at("optimizer_steps").get<int64_t>();
    s.skipped_steps = j.at("skipped_steps").get<int64_t>();
    s.tokens_seen = j.at("tokens_seen").get<int64_t>();
    s.sampler = data::SamplerState::from_json(j.at("sampler"));
    if (j.contains("cpu_rng_state")) set_cpu_rng_state(j["cpu_rng_state"].get<std::string>());
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("malformed trainer state: ") + e.what()).key("trainer_state.json");
  }
}

std::string cpu_rng_state() {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  auto state = generator.get_state();
  std::string hex;
  char byte[3];
  for (int64_t i = 0; i < state.numel(); ++i) {
    std::snprintf(byte, sizeof(byte), "%02x", state.data_ptr<uint8_t>()[i]);
    hex += byte;
  }
  return hex;
}

void set_cpu_rng_state(const std::string& hex) {
  auto state = torch::empty({static_cast<int64_t>(hex.size() / 2)}, torch::kUInt8);
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    state.data_ptr<uint8_t>()[i / 2] = static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16));
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

}  // namespace qtrain::trainer
