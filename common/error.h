// The one error type for bad input: it says what failed, where (file, key, line,
// rank) and what was expected. The CLI maps it to exit status 2 and one line.
#pragma once
#include <stdexcept>
#include <string>

namespace qtrain {

class Error : public std::runtime_error {
 public:
  explicit Error(std::string what) : std::runtime_error(what), what_(std::move(what)) { rebuild(); }

  // Chainable context: throw Error("bad value").file(path).key("model.dtype").expected("bf16|fp32");
  Error& file(std::string f) { file_ = std::move(f); rebuild(); return *this; }
  Error& key(std::string k) { key_ = std::move(k); rebuild(); return *this; }
  Error& line(int l) { line_ = l; rebuild(); return *this; }
  Error& rank(int r) { rank_ = r; rebuild(); return *this; }
  Error& expected(std::string e) { expected_ = std::move(e); rebuild(); return *this; }

  const char* what() const noexcept override { return message_.c_str(); }
  const std::string& file_name() const { return file_; }
  const std::string& key_name() const { return key_; }
  int line_number() const { return line_; }
  const std::string& expected_value() const { return expected_; }
  const std::string& reason() const { return what_; }

 private:
  void rebuild();
  std::string what_, file_, key_, expected_, message_;
  int line_ = -1;
  int rank_ = -1;
};

// Exit status for bad input (as documented in docs/cli.md).
constexpr int kExitBadInput = 2;

}  // namespace qtrain

// Checks a condition on input data; throws qtrain::Error with the message on failure.
#define QT_REQUIRE(cond, msg)                         \
  do {                                                \
    if (!(cond)) throw ::qtrain::Error(msg);          \
  } while (0)
