// The one-shot jobs of qtrain besides training:
//   qtrain quantize  PTQ from a Hugging Face folder straight to an exported folder (as
//                    llm-compressor's oneshot), the baseline that QAT is compared with;
//   qtrain export    the compressed-tensors export of any training checkpoint.
#pragma once
#include <string>
#include <vector>

#include "config/job_config.h"

namespace qtrain::trainer {

struct QuantizeJob {
  std::string model, calibration, output;
  std::string scheme = "w4a16-g128";
  std::vector<std::string> rules;  // overrides scheme: full quant.rules
  config::PtqSection ptq;  // as quant.method, quant.gptq_* ... of a training job
  config::ObserverKind observer = config::ObserverKind::minmax;
  config::KvCache kv_cache = config::KvCache::none;  // as quant.kv_cache: static K/V scales, calibrated
  int64_t seq_len = 512, calibration_sequences = 64, batch_size = 4;
  std::string device = "auto", dtype = "auto";
  std::string eval_data;  // optional: print the perplexity of the result on this token file
  int64_t eval_seq_len = 512;
  double max_shard_mb = 5120;  // MiB: weight files above this split into shards
};
int run_quantize(const QuantizeJob& job);

struct ExportJob {
  std::string checkpoint, output, tokenizer;
  double max_shard_mb = 5120;  // MiB
};
int run_export(const ExportJob& job);

}  // namespace qtrain::trainer
