// Thin RAII and error checking around the HDF5 C API, shared by the token-file reader and
// writer: every fallible call goes through H5_CHECK, which names the call, file and line.
#pragma once
#include <hdf5.h>

#include <mutex>
#include <string>

#include "common/error.h"

namespace qtrain::data {

// Debian's HDF5 is built without thread safety: every use of the library takes this lock
// (the training reader's prefetch thread and the main thread's evaluation both read).
std::recursive_mutex& hdf5_mutex();
// For a child forked while this thread held hdf5_mutex (TokenFile::open's isolated check): a
// held glibc mutex names its owner by kernel thread id, which the child's thread does not
// have, so the child's first lock would wait for ever. The child makes its copy new.
void reinitialize_hdf5_mutex_in_child();

// HDF5 prints its own error stack to stderr by default; we report through qtrain::Error.
void silence_hdf5_errors();

// The innermost message of HDF5's current error stack ("" if none).
std::string hdf5_error_message();

// Owns one hid_t and closes it with the matching H5?close.
class H5Handle {
 public:
  H5Handle() = default;
  explicit H5Handle(hid_t id) : id_(id) {}
  ~H5Handle() { reset(); }
  H5Handle(H5Handle&& o) noexcept : id_(o.id_) { o.id_ = H5I_INVALID_HID; }
  H5Handle& operator=(H5Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
};

}  // namespace qtrain::data

// For calls returning herr_t/hid_t: a negative result throws qtrain::Error naming `path`.
#define H5_CHECK(call, path)                                                                       \
  ([&]() {                                                                                         \
    auto h5_result_ = (call);                                                                      \
    if (h5_result_ < 0)                                                                            \
      throw ::qtrain::Error(std::string("HDF5 call failed: ") + #call + ": " +                     \
                            ::qtrain::data::hdf5_error_message() + " (" + __FILE__ + ":" +         \
                            std::to_string(__LINE__) + ")")                                        \
          .file(path);                                                                             \
    return h5_result_;                                                                             \
  }())
