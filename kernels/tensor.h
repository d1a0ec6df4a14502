/* Tensor types and the weight-tensor view shared by the file readers and
 * the backends. Weights are never copied: `data` points into an mmapped
 * file. Shapes follow GGUF order: ne[0] is the innermost (contiguous)
 * dimension, so a linear layer W of shape (out, in) has ne[0] = in,
 * ne[1] = out, and each of its ne[1] rows holds ne[0] elements stored in
 * the tensor's type (quantized types: whole blocks of 32). */
#ifndef ST_TENSOR_H
#define ST_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ST_F32 = 0,
    ST_F16,
    ST_BF16,
    ST_Q8_0, /* blocks of 32: f16 scale d, 32 x int8;           x = d*q       */
    ST_Q4_0, /* blocks of 32: f16 scale d, 16 bytes of nibbles; x = d*(q-8)   */
    ST_Q4_1, /* blocks of 32: f16 d, f16 min m, 16 bytes;       x = d*q + m   */
    ST_DTYPE_COUNT
} st_dtype;

#define ST_QK 32 /* elements per quantization block */

/* Block layouts (identical to the GGUF on-disk layouts). Nibble order:
 * byte j holds element j in its low nibble and element j+16 in its high. */
typedef struct {
    uint16_t d;
    int8_t qs[ST_QK];
} st_block_q8_0; /* 34 bytes */
typedef struct {
    uint16_t d;
    uint8_t qs[ST_QK / 2];
} st_block_q4_0; /* 18 bytes */
typedef struct {
    uint16_t d, m;
    uint8_t qs[ST_QK / 2];
} st_block_q4_1; /* 20 bytes */

/* Name ("F32", "Q4_1", ...). */
const char *st_dtype_name(st_dtype t);
/* Elements per block (1 for float types, 32 for Q-types). */
int st_dtype_block_elems(st_dtype t);
/* Bytes per block. */
size_t st_dtype_block_bytes(st_dtype t);
/* Bytes for a row of n elements; 0 if n is not a whole number of blocks. */
size_t st_dtype_row_bytes(st_dtype t, int64_t n);

#define ST_MAX_DIMS 4

typedef struct st_tensor {
    const char *name;         /* owned by the file that produced it */
    st_dtype type;
    int n_dims;               /* 1..4 */
    int64_t ne[ST_MAX_DIMS];  /* ne[0] innermost; unused dims are 1 */
    const void *data;         /* into the mapping, or a device copy */
    size_t nbytes;            /* exact size of data */
    void *device;             /* backend-private copy (e.g. CUDA), or NULL */
} st_tensor;

static inline int64_t st_tensor_nelem(const st_tensor *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

/* Scalar conversions (exact, round-to-nearest-even for the narrowing ones). */
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f);

/* Dequantize n elements (a whole number of blocks for Q-types) of type t
 * into f32. Reference implementation, plain C. */
void st_dequant_row(st_dtype t, const void *src, float *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
