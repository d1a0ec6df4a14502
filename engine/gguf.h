/* GGUF v3 reader (v2 accepted): the file is mmapped read-only and every
 * count, length, offset, size and alignment is validated at open, so that
 * nothing after st_gguf_open() can read outside the mapping. Tensors of a
 * type other than F32/F16/BF16/Q8_0/Q4_0/Q4_1 make open fail with a message
 * naming the type (unless ST_GGUF_ALLOW_UNKNOWN_TYPES is passed, used by
 * `strait inspect`). A vocabulary-only file (n_tensors = 0) is valid. */
#ifndef ST_GGUF_H
#define ST_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "../kernels/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ST_GGUF_UINT8 = 0,
    ST_GGUF_INT8 = 1,
    ST_GGUF_UINT16 = 2,
    ST_GGUF_INT16 = 3,
    ST_GGUF_UINT32 = 4,
    ST_GGUF_INT32 = 5,
    ST_GGUF_FLOAT32 = 6,
    ST_GGUF_BOOL = 7,
    ST_GGUF_STRING = 8,
    ST_GGUF_ARRAY = 9,
    ST_GGUF_UINT64 = 10,
    ST_GGUF_INT64 = 11,
    ST_GGUF_FLOAT64 = 12,
} st_gguf_type;

typedef struct st_gguf st_gguf;

enum { ST_GGUF_ALLOW_UNKNOWN_TYPES = 1 };

/* Open and validate. Returns ST_OK, or ST_EIO/ST_EINVAL/ST_ENOTSUP/ST_ERANGE
 * with a message naming the file and what is wrong (e.g. "tensor
 * blk.3.ffn_up.weight: data [off, off+size) past end of file (size N)"). */
int st_gguf_open(const char *path, int flags, st_gguf **out);
/* Same, over a caller-owned memory buffer (used by the fuzz target). */
int st_gguf_open_mem(const void *buf, size_t len, int flags, st_gguf **out);
void st_gguf_close(st_gguf *g);

uint32_t st_gguf_version(const st_gguf *g);

/* ---- metadata ---------------------------------------------------------------- */
size_t st_gguf_n_kv(const st_gguf *g);
const char *st_gguf_kv_key(const st_gguf *g, size_t i);
st_gguf_type st_gguf_kv_type(const st_gguf *g, size_t i);
/* Index of key, or -1. */
int64_t st_gguf_find_key(const st_gguf *g, const char *key);

/* Typed getters: ST_OK, ST_ENOENT when absent, ST_EINVAL on a type that
 * cannot convert (any integer type converts to another if the value fits;
 * float32/float64 convert to each other). */
int st_gguf_get_u32(const st_gguf *g, const char *key, uint32_t *out);
int st_gguf_get_i64(const st_gguf *g, const char *key, int64_t *out);
int st_gguf_get_f32(const st_gguf *g, const char *key, float *out);
int st_gguf_get_bool(const st_gguf *g, const char *key, int *out);
/* String value (not NUL-terminated in the file: use len). */
int st_gguf_get_str(const st_gguf *g, const char *key, const char **s, size_t *len);

/* Arrays: element type and count. */
int st_gguf_get_arr(const st_gguf *g, const char *key, st_gguf_type *elem_type, size_t *n);
/* Pointer to the raw little-endian elements of a numeric array (not for
 * string arrays). The data may be unaligned: copy with memcpy. */
int st_gguf_get_arr_data(const st_gguf *g, const char *key, const void **data);
/* i-th element of a string array. */
int st_gguf_get_arr_str(const st_gguf *g, const char *key, size_t i, const char **s, size_t *len);

/* ---- tensors ------------------------------------------------------------------ */
size_t st_gguf_n_tensors(const st_gguf *g);
const st_tensor *st_gguf_tensor(const st_gguf *g, size_t i);
/* Tensor by name, or NULL. */
const st_tensor *st_gguf_find_tensor(const st_gguf *g, const char *name);
/* For inspect: the GGUF type id of tensor i (meaningful when its type is
 * unknown to Strait: with ST_GGUF_ALLOW_UNKNOWN_TYPES such tensors have
 * type ST_DTYPE_COUNT, their nbytes and bounds still checked) and the name
 * of any GGUF type id ("Q4_K", ...; "unknown" for ids ggml never used). */
uint32_t st_gguf_tensor_raw_type(const st_gguf *g, size_t i);
const char *st_gguf_type_name(uint32_t ggml_type);

/* Total bytes of the mapping. */
size_t st_gguf_file_size(const st_gguf *g);

#ifdef __cplusplus
}
#endif
#endif
