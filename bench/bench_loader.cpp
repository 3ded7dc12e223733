// Training-reader throughput: drives data::TrainLoader (data/train_loader.h) as fast as it
// goes, as one rank of a job on `--ranks` ranks would (it reads only its share of each global
// batch), and prints one JSON line with this rank's tokens/s. `--make` first writes a
// synthetic token file of random ids, for files larger than the demo corpus.
//   bench_loader TOKENS.h5 [--seq-len 2048] [--micro-batch 8] [--global-batch 64] [--ranks 1]
//                [--rank 0] [--steps 50] [--cold] [--make TOKENS --vocab V]
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "data/token_file.h"
#include "data/token_writer.h"
#include "data/train_loader.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string path;
  int64_t seq_len = 2048, micro_batch = 8, global_batch = 64, steps = 50, make_tokens = 0, vocab = 128256;
  int ranks = 1, rank = 0;
  bool cold = false;
};

Options parse(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-')
    throw qtrain::Error("usage: bench_loader TOKENS.h5 [--seq-len N] [--micro-batch M] [--global-batch G] "
                        "[--ranks W] [--rank R] [--steps S] [--cold] [--make TOKENS --vocab V]");
  Options o;
  o.path = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--cold") {
      o.cold = true;
      continue;
    }
    if (i + 1 >= argc) throw qtrain::Error("option needs a value").key(flag);
    const long long value = std::atoll(argv[++i]);
    if (flag == "--seq-len") o.seq_len = value;
    else if (flag == "--micro-batch") o.micro_batch = value;
    else if (flag == "--global-batch") o.global_batch = value;
    else if (flag == "--ranks") o.ranks = static_cast<int>(value);
    else if (flag == "--rank") o.rank = static_cast<int>(value);
    else if (flag == "--steps") o.steps = value;
    else if (flag == "--make") o.make_tokens = value;
    else if (flag == "--vocab") o.vocab = value;
    else throw qtrain::Error("unknown option").key(flag);
  }
  return o;
}

// Random ids in documents of 100 to 4,000 tokens: uint16 up to 65,536 ids, int32 above (as qdata).
void make_synthetic(const Options& o) {
  const auto type = o.vocab <= 65536 ? qtrain::data::TokenType::uint16 : qtrain::data::TokenType::int32;
  qtrain::data::TokenFileWriter writer(o.path, {o.vocab, "", type});
  std::mt19937_64 rng(1234);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(o.vocab - 1));
  std::uniform_int_distribution<int64_t> length(100, 4000);
  std::vector<int32_t> document;
  while (writer.tokens() < o.make_tokens) {
    document.resize(static_cast<size_t>(std::min(length(rng), o.make_tokens - writer.tokens())));
    for (auto& t : document) t = id(rng);
    writer.append_document(document);
  }
  writer.commit();
}

// Drops the file's pages from the page cache (clean pages only; no root needed), so that the
// run reads from the disk.
void drop_page_cache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw qtrain::Error("cannot open").file(path);
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (o.make_tokens > 0) make_synthetic(o);
  if (o.cold) drop_page_cache(o.path);
  const auto file = qtrain::data::TokenFile::open(o.path);

  qtrain::data::LoaderOptions lo;
  lo.seq_len = o.seq_len;
  lo.micro_batch_size = o.micro_batch;
  lo.global_batch_size = o.global_batch;
  lo.rank = o.rank;
  lo.world_size = o.ranks;
  lo.vocab_size = file.vocab_size().value_or(0);  // ids are range-checked, as in training
  const auto start = Clock::now();
  const std::clock_t cpu_start = std::clock();
  qtrain::data::TrainLoader loader(o.path, lo);
  int64_t tokens = 0;
  for (int64_t step = 0; step < o.steps; ++step)
    for (const auto& micro : loader.next().micro_batches) tokens += micro.input_ids.numel();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  std::printf(
      "{\"bench\": \"loader\", \"file\": \"%s\", \"file_tokens\": %lld, \"stored_type\": \"%s\", \"cold\": %s, "
      "\"seq_len\": %lld, \"micro_batch_size\": %lld, \"global_batch_size\": %lld, \"ranks\": %d, \"rank\": %d, "
      "\"steps\": %lld, \"tokens\": %lld, \"seconds\": %.4f, \"cpu_seconds\": %.4f, \"tokens_per_second\": %.0f, "
      "\"wait_seconds\": %.4f}\n",
      o.path.c_str(), static_cast<long long>(file.size()), file.stored_type().c_str(), o.cold ? "true" : "false",
      static_cast<long long>(o.seq_len), static_cast<long long>(o.micro_batch), static_cast<long long>(o.global_batch),
      o.ranks, o.rank, static_cast<long long>(o.steps), static_cast<long long>(tokens), seconds, cpu_seconds,
      static_cast<double>(tokens) / seconds, loader.wait_seconds());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const qtrain::Error& e) {
    std::fprintf(stderr, "bench_loader: %s\n", e.what());
    return qtrain::kExitBadInput;
  }
}
