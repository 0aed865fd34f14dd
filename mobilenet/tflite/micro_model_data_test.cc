// The model array of tflite_micro_model's cc_library, linked as a TFLM
// project links it: 16-byte aligned (TFLM reads the flatbuffer in place) and
// byte for byte the .tflite the same genrule wrote (path in argv[1]).
// Built twice: for mobilenet_v2_micro and, with PATCHED defined, for
// mobilenet_v2_micro_patched (the same model run patch by patch).
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

#ifdef PATCHED
#include "mobilenet/tflite/mobilenet_v2_micro_patched_model_data.h"
#define MODEL_DATA g_mobilenet_v2_micro_patched_model_data
#define MODEL_DATA_SIZE g_mobilenet_v2_micro_patched_model_data_size
#else
#include "mobilenet/tflite/mobilenet_v2_micro_model_data.h"
#define MODEL_DATA g_mobilenet_v2_micro_model_data
#define MODEL_DATA_SIZE g_mobilenet_v2_micro_model_data_size
#endif

namespace {

int Fail(const char* what) {
  std::fprintf(stderr, "FAIL: %s\n", what);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s MODEL.tflite\n", argv[0]);
    return 2;
  }
  std::ifstream file(argv[1], std::ios::binary);
  if (!file) {
    std::fprintf(stderr, "FAIL: cannot open %s\n", argv[1]);
    return 1;
  }
  const std::vector<unsigned char> want((std::istreambuf_iterator<char>(file)),
                                        std::istreambuf_iterator<char>());
  const unsigned char* data = MODEL_DATA;
  const unsigned int size = MODEL_DATA_SIZE;

  // The declaration a TFLM project sees promises 16 bytes, and the linked
  // array keeps the promise.
  static_assert(__alignof__(MODEL_DATA) >= 16,
                "the header must declare the array alignas(16)");
  if (reinterpret_cast<std::uintptr_t>(data) % 16 != 0) {
    return Fail("array is not 16-byte aligned");
  }
  if (size != want.size()) {
    std::fprintf(stderr, "FAIL: array has %u bytes, %s has %zu\n", size,
                 argv[1], want.size());
    return 1;
  }
  for (unsigned int i = 0; i < size; ++i) {
    if (data[i] != want[i]) {
      std::fprintf(stderr, "FAIL: byte %u is 0x%02x, the .tflite has 0x%02x\n",
                   i, data[i], want[i]);
      return 1;
    }
  }
  std::printf("ok: %u bytes, 16-byte aligned, equal to %s\n", size, argv[1]);
  return 0;
}
