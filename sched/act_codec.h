/* Hidden states on the wire between pipeline stages: f32 rows of a batch
 * (n_tokens x hidden, as the engine produces them) converted to and from the
 * activation dtype a pipeline was set up with (enum st_act_dtype,
 * engine/stage.h). Payload layouts, little-endian, starting 64-byte aligned
 * in a wire message:
 *
 *   ST_ACT_F32   n_tokens x hidden f32                      4 bytes / value
 *   ST_ACT_BF16  n_tokens x hidden bf16 (round to nearest even, as
 *                st_act_f32_to_bf16)                        2 bytes / value
 *   ST_ACT_I8    n_tokens f32 scales, then n_tokens x hidden int8:
 *                row r's value j is q[r][j] * scale[r]      1 byte / value
 *                                                           + 4 bytes / row
 *
 * int8 (symmetric, per token row, round to nearest): scale = max|x| / 127
 * (the next float up when that division underflows or lands so low that a
 * code would exceed 127; the next float down when 127 * scale would
 * overflow), q = round(x / scale) in [-127, 127]. Every decoded value is
 * within scale / 2 of the original, up to one f32 rounding of q * scale. A
 * row of zeros has scale 0. Rows holding NaN or +-inf are refused, not
 * clamped: such a row means the model already diverged, and a silent 0 or
 * +-max would turn that into plausible-looking but wrong tokens.
 *
 * A receiver validates an int8 payload before it trusts it: its length must
 * be exactly st_act_bytes, every scale finite, >= 0 and small enough that
 * 127 * scale is finite, so decoded values are always finite. */
#ifndef ST_ACT_CODEC_H
#define ST_ACT_CODEC_H

#include <stddef.h>

#include "../engine/stage.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 for F32, BF16, I8; 0 otherwise. */
int st_act_dtype_known(int dtype);
/* "f32", "bf16", "int8", or "?" */
const char *st_act_dtype_name(int dtype);

/* Payload bytes for n_tokens rows of `hidden` values; 0 for an unknown
 * dtype or a negative count. */
size_t st_act_bytes(int dtype, int n_tokens, int hidden);

/* src (n_tokens, hidden) f32 -> dst (st_act_bytes(dtype, ...) bytes).
 * Returns ST_OK; ST_EINVAL for an unknown dtype or bad shape, or (int8) a
 * row holding NaN or +-inf (the message names the row; dst is then partly
 * written). */
int st_act_encode(void *dst, const float *src, int n_tokens, int hidden, int dtype);

/* Check a received payload of len bytes: ST_OK, or ST_EPROTO naming the
 * problem (length != st_act_bytes; int8: a scale that is NaN, infinite,
 * negative, or so large that 127 * scale overflows f32). f32 and bf16
 * need no more than the length: any bits are values (NaN included, as
 * before this codec). */
int st_act_check(const void *src, size_t len, int n_tokens, int hidden, int dtype);

/* src (len bytes, checked as st_act_check) -> dst (n_tokens, hidden) f32.
 * Returns ST_OK or st_act_check's error (dst untouched then). */
int st_act_decode(float *dst, const void *src, size_t len, int n_tokens, int hidden, int dtype);

#ifdef __cplusplus
}
#endif
#endif
