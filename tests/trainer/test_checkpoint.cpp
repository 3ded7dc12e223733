// Checkpoint folders: what is saved restores exactly, rotation keeps the last K, "latest"
// follows, and a damaged file is refused by its manifest checksum.
#include <gtest/gtest.h>

#include <fstream>

#include "common/error.h"
#include "model/hf_checkpoint.h"
#include "tests/test_util.h"
#include "trainer/checkpoint.h"

namespace qtrain::trainer {
namespace {

namespace fs = std::filesystem;

CheckpointContents contents(const torch::Tensor& w) {
  auto config = model::ModelConfig::from_file(testing::fixture("qwen2_bias/config.json").string());
  return {config, {{"w", w}}, {{"exp_avg.w", w * 2}}, {}, {}, {{"state", {{"step", 1}}}}};
}

TEST(Checkpoint, SaveRestoreRotateAndLatest) {
  const auto dir = testing::scratch_dir();
  CheckpointManager manager(dir.string(), 2);
  EXPECT_FALSE(manager.latest().has_value());
  for (int step : {2, 4, 6}) manager.save(step, contents(torch::full({3}, static_cast<float>(step))));
  EXPECT_EQ(manager.latest(), (dir / "checkpoints/step_00000006").string());
  EXPECT_FALSE(fs::exists(dir / "checkpoints/step_00000002"));
  EXPECT_TRUE(fs::exists(dir / "checkpoints/step_00000004"));
  const auto loaded = LoadedCheckpoint::open(*manager.latest());
  auto w = torch::zeros({3}), m = torch::zeros({3});
  loaded.restore("model", {{"w", w}});
  loaded.restore("optimizer", {{"exp_avg.w", m}});
  EXPECT_TRUE(w.equal(torch::full({3}, 6.0f)));
  EXPECT_TRUE(m.equal(torch::full({3}, 12.0f)));
  EXPECT_EQ(loaded.trainer_state()["state"]["step"], 1);
  // The folder is an HF config folder too.
  EXPECT_EQ(model::ModelConfig::from_file((dir / "checkpoints/step_00000006/config.json").string()).model_type, "qwen2");
}

TEST(Checkpoint, DamageIsCaughtByTheManifest) {
  const auto dir = testing::scratch_dir();
  CheckpointManager manager(dir.string(), 3);
  const auto path = manager.save(1, contents(torch::ones({64})));
  {  // flip one byte inside the tensor data
    std::fstream f(fs::path(path) / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  try {
    LoadedCheckpoint::open(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors: checksum"), std::string::npos) << e.what();
  }
  fs::resize_file(fs::path(path) / "optimizer.safetensors", 10);
  EXPECT_THROW(LoadedCheckpoint::open(path), Error);
}

TEST(Checkpoint, PruningMasksTravelAndOlderCheckpointsWithoutThemLoad) {
  const auto dir = testing::scratch_dir();
  CheckpointManager manager(dir.string(), 2);
  auto c = contents(torch::ones({4}));
  c.prune = {{"layers.0.mlp_channels", torch::tensor({true, false, true})}};
  const auto path = manager.save(1, c);
  auto mask = torch::ones({3}, torch::kBool);
  LoadedCheckpoint::open(path).restore("prune", {{"layers.0.mlp_channels", mask}});
  EXPECT_TRUE(mask.equal(torch::tensor({true, false, true})));
  EXPECT_THROW(LoadedCheckpoint::open(path).restore("prune", {}), Error);  // a job without pruning
  // A checkpoint from before pruning: no prune.safetensors, not in the manifest.
  const auto old = manager.save(2, contents(torch::ones({4})));
  fs::remove(fs::path(old) / "prune.safetensors");
  auto manifest = nlohmann::json::parse(testing::read_text(fs::path(old) / "manifest.json"));
  manifest["files"].erase("prune.safetensors");
  std::ofstream(fs::path(old) / "manifest.json") << manifest.dump(2);
  const auto loaded = LoadedCheckpoint::open(old);
  EXPECT_NO_THROW(loaded.restore("prune", {}));
  EXPECT_THROW(loaded.restore("prune", {{"layers.0.mlp_channels", mask}}), Error);  // a pruning job needs them
}

TEST(Checkpoint, RestoreRefusesAnotherModel) {
  const auto dir = testing::scratch_dir();
  CheckpointManager manager(dir.string(), 1);
  const auto path = manager.save(1, contents(torch::ones({4})));
  const auto loaded = LoadedCheckpoint::open(path);
  auto wrong_shape = torch::zeros({5});
  EXPECT_THROW(loaded.restore("model", {{"w", wrong_shape}}), Error);
  auto other = torch::zeros({4});
  EXPECT_THROW(loaded.restore("model", {{"v", other}}), Error);
}

TEST(Checkpoint, LeftoversOfACrashedWriterAreCleanedAndIgnored) {
  const auto dir = testing::scratch_dir();
  fs::create_directories(dir / "checkpoints/step_00000009.tmp.12345");
  CheckpointManager manager(dir.string(), 2);
  manager.save(3, contents(torch::ones({2})));
  EXPECT_FALSE(fs::exists(dir / "checkpoints/step_00000009.tmp.12345"));
  EXPECT_EQ(manager.latest(), (dir / "checkpoints/step_00000003").string());
}

// "auto" resume falls back to the newest checkpoint that verifies: the latest pointer naming
// a folder that is gone (a crash between moving the old folder of a step aside and renaming
// the new one into place), a truncated tensor file, a missing manifest. With none valid, it
// refuses naming the key instead of starting over.
TEST(Checkpoint, LatestFallsBackToTheNewestValidCheckpoint) {
  const auto dir = testing::scratch_dir();
  CheckpointManager manager(dir.string(), 4);
  for (int64_t step : {1, 2, 3}) manager.save(step, contents(torch::full({4}, static_cast<double>(step))));
  const auto ck = dir / "checkpoints";
  EXPECT_EQ(manager.latest(), (ck / "step_00000003").string());
  // The newest tensor file truncated: step 2.
  fs::resize_file(ck / "step_00000003/model.safetensors", fs::file_size(ck / "step_00000003/model.safetensors") / 2);
  EXPECT_EQ(manager.latest(), (ck / "step_00000002").string());
  // Its manifest gone too, and the pointer naming a folder that does not exist: still step 2.
  fs::remove(ck / "step_00000002/manifest.json");
  EXPECT_EQ(manager.latest(), (ck / "step_00000001").string());
  std::ofstream(ck / "latest") << "step_00000009\n";
  EXPECT_EQ(manager.latest(), (ck / "step_00000001").string());
  auto w = torch::zeros({4});
  LoadedCheckpoint::open(*manager.latest()).restore("model", {{"w", w}});
  EXPECT_TRUE(w.equal(torch::full({4}, 1.0)));
  // None valid: an error naming checkpoint.resume, not a fresh start.
  fs::remove(ck / "step_00000001/trainer_state.json");
  try {
    manager.latest();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("checkpoint.resume"), std::string::npos) << e.what();
  }
}

// Saving a step that already has a folder (a run resumed from before it) replaces it only
// once the new one is complete; the set-aside copy is gone afterwards.
TEST(Checkpoint, ResavingAStepReplacesItsFolder) {
  const auto dir = testing::scratch_dir();
  CheckpointManager manager(dir.string(), 2);
  manager.save(5, contents(torch::full({4}, 1.0)));
  const auto path = manager.save(5, contents(torch::full({4}, 2.0)));
  auto w = torch::zeros({4});
  LoadedCheckpoint::open(path).restore("model", {{"w", w}});
  EXPECT_TRUE(w.equal(torch::full({4}, 2.0)));
  for (const auto& entry : fs::directory_iterator(dir / "checkpoints"))
    EXPECT_EQ(entry.path().filename().string().find(".old."), std::string::npos) << entry.path();
}

}  // namespace
}  // namespace qtrain::trainer
