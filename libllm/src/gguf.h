/* gguf.h -- a validating reader of GGUF v2/v3 files over mmap (or over a caller's buffer).
 *
 * Everything the file claims is checked before it is used: magic, version, counts, string
 * lengths, value types, array sizes, tensor dims and types, offsets and sizes inside the file,
 * integer overflow. After gguf_open succeeds, every pointer below stays inside the mapping. */
#ifndef LLM_GGUF_H
#define LLM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gguf_value_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

#define GGUF_MAX_DIMS 4

/* A string inside the file: not NUL-terminated. */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    const char *key;          /* NUL-terminated copy owned by the gguf_file */
    uint32_t type;            /* gguf_value_type */
    uint32_t arr_type;        /* element type when type == GGUF_TYPE_ARRAY (never ARRAY) */
    uint64_t arr_n;           /* element count when type == GGUF_TYPE_ARRAY */
    const uint8_t *data;      /* the raw value in the file; for arrays the first element
                                 (string arrays: the first length prefix). May be unaligned. */
} gguf_kv;

typedef struct gguf_tensor {
    const char *name;         /* NUL-terminated copy owned by the gguf_file */
    uint32_t type;            /* GGML type id (quant.h); checked to be a known id */
    uint32_t n_dims;          /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS];/* dims, ne[0] innermost; unused dims are 1 */
    uint64_t offset;          /* from the start of the data section */
    uint64_t n_bytes;         /* computed from type and dims; inside the file */
    const void *data;         /* start of the tensor's bytes in the mapping (aligned) */
} gguf_tensor;

typedef struct gguf_file {
    uint32_t version;
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    uint64_t alignment;       /* general.alignment or 32 */
    uint64_t data_offset;     /* start of the data section in the file */
    const uint8_t *base;      /* the whole file */
    uint64_t size;
    /* private: mapping / ownership bookkeeping */
    void *owned_;             /* malloc'd file bytes when not mmapped */
    void *map_;               /* mmapped region or NULL */
    size_t map_size_;
    char *names_;             /* storage of the NUL-terminated key and tensor names */
} gguf_file;

/* Opens and validates a file. use_mmap false reads it into memory instead. Returns an
 * llm_status; on failure *out is NULL and llm_last_error() names the problem and its offset. */
int32_t gguf_open(const char *path, bool use_mmap, gguf_file **out);

/* Same over a caller's buffer (not copied: it must outlive the gguf_file). For fuzzing. */
int32_t gguf_open_buffer(const void *data, size_t size, gguf_file **out);

void gguf_close(gguf_file *file);   /* NULL is fine */

/* Lookups: index or -1. */
int64_t gguf_find_key(const gguf_file *file, const char *key);
int64_t gguf_find_tensor(const gguf_file *file, const char *name);
const gguf_tensor *gguf_get_tensor(const gguf_file *file, const char *name); /* NULL if none */

/* Typed getters: false when the key is missing or its value does not fit the request.
 * Integers accept any integer type whose value fits; floats accept FLOAT32/FLOAT64. */
bool gguf_get_u32(const gguf_file *file, const char *key, uint32_t *out);
bool gguf_get_i32(const gguf_file *file, const char *key, int32_t *out);
bool gguf_get_u64(const gguf_file *file, const char *key, uint64_t *out);
bool gguf_get_f32(const gguf_file *file, const char *key, float *out);
bool gguf_get_bool(const gguf_file *file, const char *key, bool *out);
bool gguf_get_str(const gguf_file *file, const char *key, gguf_str *out);

/* An array value: its element type and count, false if the key is missing or not an array. */
bool gguf_get_arr(const gguf_file *file, const char *key, uint32_t *arr_type, uint64_t *n);

/* Reads element i of a numeric array into a double / int64 (any numeric element type). */
bool gguf_arr_num(const gguf_kv *kv, uint64_t i, double *out);
bool gguf_arr_int(const gguf_kv *kv, uint64_t i, int64_t *out);

/* Fills out[0..n) with the strings of a string array (n must equal the array's count).
 * Linear in the array's byte size. */
bool gguf_arr_strs(const gguf_kv *kv, gguf_str *out, uint64_t n);

/* The value of kv rendered as text (numbers, bools, strings; arrays as "[N items]"), written
 * like snprintf: returns the full length (may exceed size). */
int gguf_kv_to_text(const gguf_kv *kv, char *buf, size_t size);

/* True when the file's bytes are mapped (use_mmap), false when read into memory. */
static inline bool gguf_is_mapped(const gguf_file *file) { return file->map_ != NULL; }

/* Byte size of one value of a scalar gguf type (0 for STRING/ARRAY/unknown). */
size_t gguf_type_size(uint32_t type);

#endif
