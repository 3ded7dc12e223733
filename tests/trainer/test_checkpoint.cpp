// Checkpoint folders: what is saved restores exactly, rotation keeps the last K, "latest"
// follows, and a damaged file is refused by its manifest checksum.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include "common/error.h"
#include "model/hf_checkpoint.h"
#include "tests/test_util.h"
#include "trainer/checkpoint.h"

namespace qtrain::trainer {
namespace {

namespace fs = std::filesystem;

constexpr const char* kShard = "shard-00000-of-00001.safetensors";  // the one rank's part

model::ModelConfig config() { return model::ModelConfig::from_file(testing::fixture("qwen2_bias/config.json").string()); }

CheckpointContents contents(const torch::Tensor& w) {
  return {config(), {{"state", {{"step", 1}}}},
          {{"model", whole({{"w", w}})}, {"optimizer", whole({{"exp_avg.w", w * 2}})}}};
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
    std::fstream f(fs::path(path) / kShard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  try {
    LoadedCheckpoint::open(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(std::string(kShard) + ": checksum"), std::string::npos) << e.what();
  }
  // Checked on read: the shard's checksum when a restore first reads from it.
  const auto lazy = LoadedCheckpoint::open(path, LoadedCheckpoint::Verify::on_read);
  auto w = torch::zeros({64});
  EXPECT_THROW(lazy.restore("model", {{"w", w}}), Error);
  fs::resize_file(fs::path(path) / kShard, 10);
  EXPECT_THROW(LoadedCheckpoint::open(path, LoadedCheckpoint::Verify::on_read), Error);
}

// A forged or damaged manifest cannot point the reader outside the checkpoint folder: shard
// names with a path, "..", or not strings are refused naming the manifest and the key.
TEST(Checkpoint, ShardNamesOutsideTheFolderAreRefused) {
  const auto dir = testing::scratch_dir();
  CheckpointManager manager(dir.string(), 3);
  const auto path = manager.save(1, contents(torch::ones({64})));
  const auto manifest_path = fs::path(path) / "manifest.json";
  const auto original = nlohmann::json::parse(testing::read_text(manifest_path));
  ASSERT_TRUE(original.contains("shards"));
  for (const auto& bad : {nlohmann::json("../../outside.safetensors"), nlohmann::json(".."), nlohmann::json(7),
                          nlohmann::json("/etc/passwd")}) {
    auto forged = original;
    forged["shards"][0] = bad;
    std::ofstream(manifest_path) << forged.dump(2);
    try {
      LoadedCheckpoint::open(path);
      ADD_FAILURE() << "accepted shard " << bad.dump();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("manifest.json: key 'shards': a shard is not a file name"), std::string::npos)
          << e.what();
    }
  }
}

// A tensor saved in pieces (as ZeRO ranks own them) restores into any other cut of it, from
// whichever pieces hold its elements; a cut the pieces do not cover is refused.
TEST(Checkpoint, PiecesRestoreIntoAnyOtherCut) {
  const auto dir = testing::scratch_dir();
  CheckpointManager manager(dir.string(), 2);
  const auto w = torch::arange(12, torch::kFloat32).view({3, 4});
  const auto flat = w.view({-1});
  const std::vector<int64_t> shape = {3, 4};
  const auto path = manager.save(
      1, {config(), {{"state", {{"step", 1}}}},
          {{"model", {{"w", shape, 0, flat.narrow(0, 0, 5)}, {"w", shape, 5, flat.narrow(0, 5, 7)}}},
           {"optimizer", {{"exp_avg.w", shape, 0, flat.narrow(0, 0, 5)}}}}});
  const auto loaded = LoadedCheckpoint::open(path);
  auto part = torch::zeros({6});
  loaded.restore_slices("model", {{"w", shape, 3, part}}, 1);  // across the two pieces
  EXPECT_TRUE(part.equal(flat.narrow(0, 3, 6)));
  auto full = torch::zeros({3, 4});
  loaded.restore("model", {{"w", full}});
  EXPECT_TRUE(full.equal(w));
  EXPECT_TRUE(loaded.tensors("model").at(0).second.equal(w));
  auto beyond = torch::zeros({4});
  EXPECT_THROW(loaded.restore_slices("optimizer", {{"exp_avg.w", shape, 3, beyond}}, 1), Error);  // 5..6 missing
  auto other_shape = torch::zeros({2});
  EXPECT_THROW(loaded.restore_slices("model", {{"w", {4, 3}, 0, other_shape}}, 1), Error);
}

TEST(Checkpoint, PruningMasksTravel) {
  const auto dir = testing::scratch_dir();
  CheckpointManager manager(dir.string(), 2);
  auto c = contents(torch::ones({4}));
  c.sections["prune"] = whole({{"layers.0.mlp_channels", torch::tensor({true, false, true})}});
  const auto path = manager.save(1, c);
  auto mask = torch::ones({3}, torch::kBool);
  LoadedCheckpoint::open(path).restore("prune", {{"layers.0.mlp_channels", mask}});
  EXPECT_TRUE(mask.equal(torch::tensor({true, false, true})));
  EXPECT_THROW(LoadedCheckpoint::open(path).restore("prune", {}), Error);  // a job without pruning
  EXPECT_NO_THROW(LoadedCheckpoint::open(manager.save(2, contents(torch::ones({4})))).restore("prune", {}));
}

// A checkpoint of the first layout (one file of whole tensors per section, no shards) loads;
// one from before pruning existed has no prune.safetensors, so only a job without pruning
// resumes from it.
TEST(Checkpoint, TheFirstLayoutStillLoads) {
  const auto dir = testing::scratch_dir() / "step_00000004";
  fs::create_directories(dir);
  const auto w = torch::arange(6, torch::kFloat32).view({2, 3});
  model::save_safetensors((dir / "model.safetensors").string(), {{"w", w}});
  model::save_safetensors((dir / "optimizer.safetensors").string(), {{"exp_avg.w", w * 2}, {"exp_avg_sq.w", w * 3}});
  for (const auto* empty : {"extras.safetensors", "quant.safetensors"}) model::save_safetensors((dir / empty).string(), {});
  std::ofstream(dir / "config.json") << config().to_json().dump();
  std::ofstream(dir / "trainer_state.json") << R"({"state": {"step": 4}})";
  nlohmann::json manifest = {{"step", 4}, {"format", "qtrain-checkpoint-1"}, {"files", nlohmann::json::object()}};
  for (const auto* f : {"config.json", "model.safetensors", "optimizer.safetensors", "extras.safetensors",
                        "quant.safetensors", "trainer_state.json"})
    manifest["files"][f] = {{"bytes", fs::file_size(dir / f)}, {"xxh3_64", file_checksum((dir / f).string())}};
  std::ofstream(dir / "manifest.json") << manifest.dump(2);
  const auto loaded = LoadedCheckpoint::open(dir.string());
  auto restored = torch::zeros({2, 3});
  loaded.restore("model", {{"w", restored}});
  EXPECT_TRUE(restored.equal(w));
  auto half = torch::zeros({3});
  loaded.restore_slices("optimizer", {{"exp_avg_sq.w", {2, 3}, 3, half}, {"exp_avg.w", {2, 3}, 0, torch::zeros({6})}}, 2);
  EXPECT_TRUE(half.equal(torch::tensor({9.0f, 12.0f, 15.0f})));
  EXPECT_EQ(loaded.trainer_state()["state"]["step"], 4);
  EXPECT_NO_THROW(loaded.restore("prune", {}));
  auto mask = torch::ones({3}, torch::kBool);
  EXPECT_THROW(loaded.restore("prune", {{"layers.0.mlp_channels", mask}}), Error);  // a pruning job needs them
  manifest["format"] = "qtrain-checkpoint-9";
  std::ofstream(dir / "manifest.json") << manifest.dump(2);
  EXPECT_THROW(LoadedCheckpoint::open(dir.string()), Error);
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
  fs::resize_file(ck / "step_00000003" / kShard, fs::file_size(ck / "step_00000003" / kShard) / 2);
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

// checkpoints/latest deleted (issue 25): resume still finds the newest checkpoint that
// verifies; and a run that resumed from an earlier step (the later ones did not verify, or
// resume named it) rotates away only steps up to the one it writes, never the later ones
// that nothing superseded (keep_last 1 deleted every valid checkpoint but the new one).
TEST(Checkpoint, AMissingPointerFindsTheNewestAndRotationKeepsLaterSteps) {
  const auto dir = testing::scratch_dir();
  const auto ck = dir / "checkpoints";
  {
    CheckpointManager manager(dir.string(), 3);
    for (int64_t step : {2, 4, 6}) manager.save(step, contents(torch::full({4}, static_cast<double>(step))));
  }
  fs::remove(ck / "latest");
  CheckpointManager manager(dir.string(), 1);
  EXPECT_TRUE(manager.any());
  EXPECT_EQ(manager.latest(), (ck / "step_00000006").string());
  // Resumed from step 2: its step 3 is written; 2 goes (superseded under keep_last 1), 4 and 6 stay.
  manager.save(3, contents(torch::full({4}, 3.0)));
  EXPECT_FALSE(fs::exists(ck / "step_00000002"));
  for (const char* kept : {"step_00000003", "step_00000004", "step_00000006"}) {
    EXPECT_TRUE(fs::exists(ck / kept)) << kept;
    EXPECT_NO_THROW(LoadedCheckpoint::open((ck / kept).string(), LoadedCheckpoint::Verify::everything)) << kept;
  }
  EXPECT_EQ(manager.latest(), (ck / "step_00000003").string());  // the pointer: this run's newest
  // Continuing past them supersedes them: at step 6 (replacing the old 6), 3 and 4 go.
  manager.save(6, contents(torch::full({4}, 60.0)));
  EXPECT_FALSE(fs::exists(ck / "step_00000003"));
  EXPECT_FALSE(fs::exists(ck / "step_00000004"));
  auto w = torch::zeros({4});
  LoadedCheckpoint::open(*manager.latest()).restore("model", {{"w", w}});
  EXPECT_TRUE(w.equal(torch::full({4}, 60.0)));
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
