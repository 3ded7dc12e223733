// qtrain::Error formats its context into one line that names file, line, key and expectation.
#include <gtest/gtest.h>

#include "common/error.h"

TEST(Error, FormatsAllContext) {
  qtrain::Error e = qtrain::Error("value out of range").file("a.yaml").line(7).key("data.seq_len").expected(">= 2");
  EXPECT_STREQ(e.what(), "a.yaml:7: key 'data.seq_len': value out of range (expected: >= 2)");
}

TEST(Error, PlainMessage) {
  EXPECT_STREQ(qtrain::Error("boom").what(), "boom");
}
