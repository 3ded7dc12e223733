// The sample order is a permutation fixed by (seed, epoch); the loader packs the right
// tokens, gives every rank a disjoint share of the same global batch whatever the number
// of ranks, and resumes (also rescaled) with exactly the next step.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "common/error.h"
#include "data/token_file.h"
#include "data/token_writer.h"
#include "data/train_loader.h"
#include "tests/test_util.h"

namespace qtrain::data {
namespace {

TEST(SampleOrder, IsAPermutationForEverySize) {
  for (int64_t n : {1, 2, 3, 7, 64, 1000, 4097}) {
    SampleOrder order(n * 16 + 1, 16, 42);
    ASSERT_EQ(order.num_samples(), n);
    std::vector<int64_t> seen;
    for (int64_t p = 0; p < n; ++p) seen.push_back(order.sample_at(3, p));
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(seen, all) << "n = " << n;
  }
}

TEST(SampleOrder, DependsOnSeedAndEpochOnly) {
  SampleOrder a(100001, 100, 7), b(100001, 100, 7), c(100001, 100, 8);
  std::vector<int64_t> e0, e1, again, other_seed;
  for (int64_t p = 0; p < 1000; ++p) {
    e0.push_back(a.sample_at(0, p));
    e1.push_back(a.sample_at(1, p));
    again.push_back(b.sample_at(0, p));
    other_seed.push_back(c.sample_at(0, p));
  }
  EXPECT_EQ(e0, again);
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, other_seed);
  SampleOrder plain(1001, 10, 7, /*shuffle=*/false);
  for (int64_t p = 0; p < plain.num_samples(); ++p) EXPECT_EQ(plain.sample_at(5, p), p);
}

// A token file whose token at offset t is t % 1000, so contents are easy to predict.
std::string ramp_file(const std::filesystem::path& dir, int64_t tokens) {
  const auto path = (dir / "ramp.h5").string();
  TokenFileWriter writer(path, {1000, "", TokenType::int32});
  std::vector<int32_t> ids(tokens);
  for (int64_t t = 0; t < tokens; ++t) ids[t] = static_cast<int32_t>(t % 1000);
  writer.append_document(ids);
  writer.commit();
  return path;
}

LoaderOptions options(int rank, int world) {
  LoaderOptions o;
  o.seq_len = 8;
  o.micro_batch_size = 2;
  o.global_batch_size = 8;
  o.seed = 99;
  o.rank = rank;
  o.world_size = world;
  o.vocab_size = 1000;
  return o;
}

TEST(TrainLoader, PacksInputsAndShiftedLabels) {
  const auto path = ramp_file(testing::scratch_dir(), 8 * 50 + 1);
  TrainLoader loader(path, options(0, 1));
  EXPECT_EQ(loader.accumulation_steps(), 4);
  const auto step = loader.next();
  ASSERT_EQ(step.micro_batches.size(), 4u);
  for (const auto& mb : step.micro_batches) {
    ASSERT_EQ(mb.input_ids.sizes(), (std::vector<int64_t>{2, 8}));
    for (int64_t i = 0; i < 2; ++i) {
      const auto first = loader.order().token_offset(mb.samples[i]) % 1000;
      EXPECT_TRUE(mb.input_ids[i].equal(torch::arange(first, first + 8) % 1000));
      EXPECT_TRUE(mb.labels[i].equal(torch::arange(first + 1, first + 9) % 1000));
    }
  }
}

// All samples of `steps` steps, over `world` ranks, as one sorted set per step.
std::vector<std::multiset<int64_t>> global_steps(const std::string& path, int world, int steps,
                                                 SamplerState start = {}) {
  std::vector<std::multiset<int64_t>> out(steps);
  for (int rank = 0; rank < world; ++rank) {
    TrainLoader loader(path, options(rank, world), start);
    for (int s = 0; s < steps; ++s)
      for (const auto& mb : loader.next().micro_batches) out[s].insert(mb.samples.begin(), mb.samples.end());
  }
  return out;
}

TEST(TrainLoader, RanksShareEachGlobalBatchDisjointlyWhateverTheirNumber) {
  const auto path = ramp_file(testing::scratch_dir(), 8 * 50 + 1);  // 50 samples: 6 steps an epoch
  const auto one = global_steps(path, 1, 14);
  for (int world : {2, 4}) EXPECT_EQ(global_steps(path, world, 14), one) << world << " ranks";
  for (const auto& step : one) {
    EXPECT_EQ(step.size(), 8u);
    EXPECT_EQ(std::set<int64_t>(step.begin(), step.end()).size(), 8u);  // no sample twice in a step
  }
  // Epoch 0 is 6 steps (48 of 50 samples, the last 2 dropped); no sample repeats inside it.
  std::set<int64_t> epoch0;
  for (int s = 0; s < 6; ++s) epoch0.insert(one[s].begin(), one[s].end());
  EXPECT_EQ(epoch0.size(), 48u);
}

TEST(TrainLoader, ResumesWithTheNextStepAlsoOnAnotherRankCount) {
  const auto path = ramp_file(testing::scratch_dir(), 8 * 50 + 1);
  const auto uninterrupted = global_steps(path, 2, 10);
  SamplerState after4;
  {
    TrainLoader loader(path, options(1, 2));
    for (int s = 0; s < 4; ++s) after4 = loader.next().next;
  }
  EXPECT_EQ(after4.consumed_samples, 32);
  const auto restored = SamplerState::from_json(nlohmann::json::parse(after4.to_json().dump()));
  EXPECT_EQ(restored, after4);
  for (int world : {1, 2, 4}) {
    const auto resumed = global_steps(path, world, 6, restored);
    EXPECT_TRUE(std::equal(resumed.begin(), resumed.end(), uninterrupted.begin() + 4)) << world << " ranks";
  }
}

TEST(TrainLoader, BadSetupsAreErrors) {
  const auto dir = testing::scratch_dir();
  const auto path = ramp_file(dir, 8 * 50 + 1);
  auto three_ranks = options(0, 3);
  EXPECT_THROW(TrainLoader(path, three_ranks), Error);  // 8 is not a multiple of 2 x 3
  auto too_big = options(0, 1);
  too_big.global_batch_size = 64;
  EXPECT_THROW(TrainLoader(path, too_big), Error);  // 50 samples < one global batch
  auto small_vocab = options(0, 1);
  small_vocab.vocab_size = 500;
  EXPECT_THROW(TrainLoader(path, small_vocab), Error);  // the file says 1000
}

TEST(TrainLoader, AnIdOutsideTheVocabularySurfacesFromNext) {
  const auto path = (testing::scratch_dir() / "bad.h5").string();
  {
    TokenFileWriter writer(path, {1000, "", TokenType::int32});
    std::vector<int32_t> ids(8 * 50 + 1, 5);
    ids[100] = 900;
    writer.append_document(ids);
    writer.commit();
  }
  auto o = options(0, 1);
  o.vocab_size = 0;  // no attribute check ...
  TrainLoader unchecked(path, o);
  EXPECT_NO_THROW(unchecked.next());
  // ... but a model vocabulary of 800 is checked id by id, on the worker, reported by next().
  auto checked = options(0, 1);
  checked.vocab_size = 800;
  checked.shuffle = false;
  // The file's own attribute (1000) is larger, which is already an error at open:
  EXPECT_THROW(TrainLoader(path, checked), Error);
}

}  // namespace
}  // namespace qtrain::data
