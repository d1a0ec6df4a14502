/* CRC32C (Castagnoli), the checksum on wire headers: the SSE4.2 crc32
 * instruction where the CPU has it, a table otherwise; both give the same
 * value. */
#ifndef ST_CRC32C_H
#define ST_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend `crc` (0 to start) over n bytes; returns the new CRC. */
uint32_t st_crc32c(uint32_t crc, const void *buf, size_t n);

#endif
