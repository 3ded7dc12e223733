// TensorBoard event files: CRC-32C against its published check value, TFRecord framing
// read back and verified, and the Event encoding byte for byte for a known scalar.
#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_util.h"
#include "trainer/tensorboard_writer.h"

namespace qtrain::trainer {
namespace {

uint32_t unmask(uint32_t masked) {
  const uint32_t rotated = masked - 0xa282ead8u;
  return (rotated << 15) | (rotated >> 17);
}

TEST(TensorBoard, Crc32cMatchesTheCheckValue) {
  // CRC-32C ("123456789") = 0xE3069283 (RFC 3720, B.4 and the CRC catalogue).
  EXPECT_EQ(unmask(masked_crc32c("123456789", 9)), 0xE3069283u);
}

TEST(TensorBoard, ScalarEventEncoding) {
  // Event{wall_time=1.5, step=3, summary{value{tag="a", simple_value=2.0}}}
  const std::string got = encode_scalar_event(1.5, 3, "a", 2.0f);
  const std::string expected("\x09\x00\x00\x00\x00\x00\x00\xf8\x3f"  // 1: fixed64 1.5
                             "\x10\x03"                              // 2: varint 3
                             "\x2a\x0a"                              // 5: 10 bytes of Summary
                             "\x0a\x08"                              //   1: 8 bytes of Value
                             "\x0a\x01\x61"                          //     1: "a"
                             "\x15\x00\x00\x00\x40",                 //     2: fixed32 2.0f
                             23);
  EXPECT_EQ(got, expected);
}

TEST(TensorBoard, RecordsReadBackWithValidChecksums) {
  const auto dir = testing::scratch_dir();
  std::string path;
  {
    TensorBoardWriter writer(dir.string());
    writer.add_scalar("train/loss", 2.5, 1);
    writer.add_scalar("train/loss", 2.25, 2);
    path = writer.path();
  }
  EXPECT_NE(path.find("events.out.tfevents."), std::string::npos);
  std::ifstream in(path, std::ios::binary);
  int records = 0;
  uint64_t length;
  while (in.read(reinterpret_cast<char*>(&length), 8)) {
    uint32_t length_crc, data_crc;
    in.read(reinterpret_cast<char*>(&length_crc), 4);
    std::string data(length, '\0');
    in.read(data.data(), static_cast<std::streamsize>(length));
    in.read(reinterpret_cast<char*>(&data_crc), 4);
    EXPECT_EQ(length_crc, masked_crc32c(&length, 8));
    EXPECT_EQ(data_crc, masked_crc32c(data.data(), data.size()));
    if (records == 0) EXPECT_NE(data.find("brain.Event:2"), std::string::npos);
    else EXPECT_NE(data.find("train/loss"), std::string::npos);
    ++records;
  }
  EXPECT_EQ(records, 3);
}

}  // namespace
}  // namespace qtrain::trainer
