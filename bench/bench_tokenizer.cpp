// Tokenizer throughput: encodes a text file in newline-aligned chunks (as the corpus tool
// feeds documents) and prints one JSON line per pass with MB/s, for a cold pass (empty word
// cache) and warm passes, on one thread unless --threads says otherwise.
//   bench_tokenizer TOKENIZER TEXT_FILE [--passes N] [--threads T] [--chunk BYTES]
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "data/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string_view> newline_chunks(const std::string& text, size_t chunk_bytes) {
  std::vector<std::string_view> chunks;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = std::min(text.size(), begin + chunk_bytes);
    const size_t newline = text.find('\n', end);
    end = newline == std::string::npos ? text.size() : newline + 1;
    chunks.emplace_back(text.data() + begin, end - begin);
    begin = end;
  }
  return chunks;
}

// Encodes every chunk once with `threads` threads; returns the seconds taken, and sets the
// process CPU seconds (which a busy machine does not inflate) and the token count.
double encode_all(const qtrain::data::Tokenizer& tokenizer, const std::vector<std::string_view>& chunks, int threads,
                  double* cpu_seconds, size_t* tokens) {
  std::vector<size_t> counts(static_cast<size_t>(threads), 0);
  const std::clock_t cpu_start = std::clock();
  const auto start = Clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < chunks.size(); i += static_cast<size_t>(threads))
        counts[static_cast<size_t>(t)] += tokenizer.encode(chunks[i]).size();
    });
  for (auto& w : workers) w.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  *cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  *tokens = 0;
  for (size_t c : counts) *tokens += c;
  return seconds;
}

int run(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER TEXT_FILE [--passes N] [--threads T] [--chunk BYTES]\n", argv[0]);
    return qtrain::kExitBadInput;
  }
  int passes = 3, threads = 1;
  size_t chunk_bytes = 16 << 10;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--passes") passes = std::atoi(argv[i + 1]);
    else if (flag == "--threads") threads = std::atoi(argv[i + 1]);
    else if (flag == "--chunk") chunk_bytes = static_cast<size_t>(std::atoll(argv[i + 1]));
    else throw qtrain::Error("unknown option " + flag).expected("--passes, --threads or --chunk");
  }
  std::ifstream in(argv[2], std::ios::binary);
  if (!in) throw qtrain::Error("cannot open text file").file(argv[2]);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();

  auto start = Clock::now();
  const auto tokenizer = qtrain::data::load_tokenizer(argv[1]);
  const double load_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const auto chunks = newline_chunks(text, chunk_bytes);
  const double megabytes = static_cast<double>(text.size()) / 1e6;
  std::printf(
      "{\"bench\": \"tokenizer\", \"event\": \"load\", \"vocab_size\": %lld, \"fingerprint\": \"%s\", "
      "\"load_s\": %.3f, \"text_mb\": %.3f, \"chunks\": %zu, \"threads\": %d}\n",
      static_cast<long long>(tokenizer->vocab_size()), tokenizer->fingerprint().c_str(), load_seconds, megabytes,
      chunks.size(), threads);
  for (int pass = 0; pass < passes; ++pass) {
    size_t tokens = 0;
    double cpu_seconds = 0;
    const double seconds = encode_all(*tokenizer, chunks, threads, &cpu_seconds, &tokens);
    std::printf(
        "{\"bench\": \"tokenizer\", \"event\": \"pass\", \"pass\": %d, \"cache\": \"%s\", \"threads\": %d, "
        "\"seconds\": %.3f, \"cpu_seconds\": %.3f, \"mb_per_s\": %.2f, \"mb_per_cpu_s\": %.2f, \"tokens\": %zu, "
        "\"bytes_per_token\": %.3f}\n",
        pass + 1, pass == 0 ? "cold" : "warm", threads, seconds, cpu_seconds, megabytes / seconds,
        megabytes / cpu_seconds, tokens, static_cast<double>(text.size()) / static_cast<double>(tokens));
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const qtrain::Error& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return qtrain::kExitBadInput;
  }
}
