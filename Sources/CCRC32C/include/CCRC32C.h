#ifndef CCRC32C_H
#define CCRC32C_H
#include <stddef.h>
#include <stdint.h>

/// CRC32-C (Castagnoli), as 0-db and iSCSI use it. `crc` is the value of the previous chunk (0 to
/// start); the result is the finished CRC of everything so far, so calls chain.
/// Uses the SSE4.2 crc32 instruction when the CPU has it, slicing-by-8 tables otherwise.
uint32_t ccrc32c_extend(uint32_t crc, const void *data, size_t length);

/// 1 when the hardware path is in use (for INFO and benchmarks).
int ccrc32c_hardware(void);
#endif
