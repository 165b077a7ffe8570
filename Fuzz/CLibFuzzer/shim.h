#ifndef CLIBFUZZER_SHIM_H
#define CLIBFUZZER_SHIM_H
#include <stddef.h>
#include <stdint.h>
// libFuzzer's driver (compiler-rt, linked by -sanitize=fuzzer): the fuzz targets' main calls it
// with their test function, since SwiftPM gives every executable a main of its own.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*test)(const uint8_t *data, size_t size));
#endif
