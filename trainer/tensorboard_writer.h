// Writes scalar summaries as a TensorBoard event file ("events.out.tfevents.<time>.<host>"):
// TFRecord framing (u64 length, masked CRC-32C of the length, the record, masked CRC-32C of
// the record) around serialized tensorflow.Event protobufs, encoded by hand for the three
// messages involved (Event, Summary, Summary.Value) so that no TensorFlow is needed.
// Field numbers from tensorflow/core/util/event.proto and summary.proto.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "common/append_file.h"

namespace qtrain::trainer {

class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::string& dir);  // creates dir and a new event file
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // Records are buffered; flush() appends them whole (common/append_file.h) or throws an
  // Error naming the file (a full disk), leaving no half record.
  void add_scalar(const std::string& tag, double value, int64_t step);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::unique_ptr<AppendFile> file_;
  std::string pending_;
};

// The framing pieces, exposed for tests.
uint32_t masked_crc32c(const void* data, size_t size);
std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value);

}  // namespace qtrain::trainer
