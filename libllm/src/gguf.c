/* gguf.c -- the GGUF v2/v3 reader.
 *
 * The file is parsed in sections (header, metadata, alignment, tensor infos, data layout,
 * names) through a bounded cursor whose reads fail on overrun, so nothing the file claims is
 * trusted before it has been checked against the bytes that are actually there. Every error
 * names what was wrong and the byte offset where it was found. */
#ifndef _POSIX_C_SOURCE
#  define _POSIX_C_SOURCE 200809L  /* mmap, O_CLOEXEC; the build defines it too */
#endif

#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"
#include "util.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAGIC "GGUF"

/* The fewest bytes one entry can take, used to reject counts the file cannot hold before
 * anything is allocated for them. */
#define KV_MIN_BYTES 13      /* key length (8) + value type (4) + a one-byte value */
#define TENSOR_MIN_BYTES 32  /* name length (8) + n_dims (4) + one dim (8) + type (4) +
                                offset (8) */

#define TRY(expr)                          \
    do {                                   \
        int32_t try_status_ = (expr);      \
        if (try_status_ != LLM_STATUS_OK)  \
            return try_status_;            \
    } while (0)

/* ---------------------------------------------------------------------------------------------
 * Little-endian loads (the values in the file may be unaligned)
 * ------------------------------------------------------------------------------------------ */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

static float lef32(const uint8_t *p) {
    uint32_t bits = le32(p);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static double lef64(const uint8_t *p) {
    uint64_t bits = le64(p);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* ---------------------------------------------------------------------------------------------
 * Bounded reader
 * ------------------------------------------------------------------------------------------ */

typedef struct reader {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
    char where[112];  /* what is being read, for messages: "metadata entry 3 (key 'x')" */
} reader;

static uint64_t rd_left(const reader *r) { return r->size - r->pos; }

static int32_t rd_need(const reader *r, uint64_t n, const char *what) {
    if (rd_left(r) >= n) return LLM_STATUS_OK;
    return llm_error(LLM_STATUS_BAD_FORMAT,
                     "gguf: truncated file: %s of %s at offset %" PRIu64 " needs %" PRIu64
                     " bytes but only %" PRIu64 " remain",
                     what, r->where, r->pos, n, rd_left(r));
}

static int32_t rd_u32(reader *r, uint32_t *out, const char *what) {
    TRY(rd_need(r, 4, what));
    *out = le32(r->base + r->pos);
    r->pos += 4;
    return LLM_STATUS_OK;
}

static int32_t rd_u64(reader *r, uint64_t *out, const char *what) {
    TRY(rd_need(r, 8, what));
    *out = le64(r->base + r->pos);
    r->pos += 8;
    return LLM_STATUS_OK;
}

/* A gguf string: u64 length, then that many bytes, which must all be in the file. */
static int32_t rd_str(reader *r, gguf_str *out, const char *what) {
    uint64_t len;
    uint64_t at = r->pos;
    TRY(rd_u64(r, &len, what));
    if (len > rd_left(r)) {
        return llm_error(LLM_STATUS_BAD_FORMAT,
                         "gguf: %s of %s at offset %" PRIu64 " has length %" PRIu64
                         " but only %" PRIu64 " bytes remain in the file",
                         what, r->where, at, len, rd_left(r));
    }
    out->ptr = (const char *)(r->base + r->pos);
    out->len = len;
    r->pos += len;
    return LLM_STATUS_OK;
}

/* A key or tensor name: a string that is non-empty and has no NUL byte inside. */
static int32_t rd_name(reader *r, gguf_str *out, const char *what) {
    uint64_t at = r->pos;
    TRY(rd_str(r, out, what));
    if (out->len == 0) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "gguf: empty %s of %s at offset %" PRIu64, what,
                         r->where, at);
    }
    if (memchr(out->ptr, '\0', out->len)) {
        return llm_error(LLM_STATUS_BAD_FORMAT,
                         "gguf: %s of %s at offset %" PRIu64 " contains a NUL byte", what,
                         r->where, at);
    }
    return LLM_STATUS_OK;
}

/* Appends " (what 'name')" to the reader's description, the name cut short if long. */
static void rd_describe_name(reader *r, const char *what, gguf_str name) {
    size_t used = strlen(r->where);
    int shown = name.len > 48 ? 48 : (int)name.len;
    snprintf(r->where + used, sizeof r->where - used, " (%s '%.*s%s')", what, shown, name.ptr,
             name.len > 48 ? "..." : "");
}

/* ---------------------------------------------------------------------------------------------
 * Value types
 * ------------------------------------------------------------------------------------------ */

size_t gguf_type_size(uint32_t type) {
    switch (type) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

static const char *type_name(uint32_t type) {
    static const char *const names[GGUF_TYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64",
    };
    return type < GGUF_TYPE_COUNT ? names[type] : "invalid";
}

/* An integer value as sign and magnitude, so every integer type compares exactly. */
static bool load_int(uint32_t type, const uint8_t *p, bool *neg, uint64_t *mag) {
    int64_t s;
    switch (type) {
    case GGUF_TYPE_UINT8: *neg = false; *mag = p[0]; return true;
    case GGUF_TYPE_UINT16: *neg = false; *mag = le16(p); return true;
    case GGUF_TYPE_UINT32: *neg = false; *mag = le32(p); return true;
    case GGUF_TYPE_UINT64: *neg = false; *mag = le64(p); return true;
    case GGUF_TYPE_INT8: s = (int8_t)p[0]; break;
    case GGUF_TYPE_INT16: s = (int16_t)le16(p); break;
    case GGUF_TYPE_INT32: s = (int32_t)le32(p); break;
    case GGUF_TYPE_INT64: s = (int64_t)le64(p); break;
    default: return false;
    }
    *neg = s < 0;
    *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return true;
}

static bool load_float(uint32_t type, const uint8_t *p, double *out) {
    if (type == GGUF_TYPE_FLOAT32) {
        *out = lef32(p);
        return true;
    }
    if (type == GGUF_TYPE_FLOAT64) {
        *out = lef64(p);
        return true;
    }
    return false;
}

/* Skips n values of a non-array type, checking they fit and that bools are 0 or 1. */
static int32_t skip_values(reader *r, uint32_t type, uint64_t n) {
    uint64_t at = r->pos;
    if (type == GGUF_TYPE_STRING) {
        if (n > rd_left(r) / 8) {
            return llm_error(LLM_STATUS_BAD_FORMAT,
                             "gguf: %" PRIu64 " strings of %s at offset %" PRIu64
                             " cannot fit in the %" PRIu64 " remaining bytes",
                             n, r->where, at, rd_left(r));
        }
        for (uint64_t i = 0; i < n; i++) {
            gguf_str s;
            TRY(rd_str(r, &s, "string value"));
        }
        return LLM_STATUS_OK;
    }
    uint64_t esize = gguf_type_size(type);
    if (n > rd_left(r) / esize) {
        return llm_error(LLM_STATUS_BAD_FORMAT,
                         "gguf: %" PRIu64 " %s values of %s at offset %" PRIu64
                         " cannot fit in the %" PRIu64 " remaining bytes",
                         n, type_name(type), r->where, at, rd_left(r));
    }
    if (type == GGUF_TYPE_BOOL) {
        for (uint64_t i = 0; i < n; i++) {
            uint8_t b = r->base[r->pos + i];
            if (b > 1) {
                return llm_error(LLM_STATUS_BAD_FORMAT,
                                 "gguf: bool value %u of %s at offset %" PRIu64
                                 " is neither 0 nor 1",
                                 b, r->where, r->pos + i);
            }
        }
    }
    r->pos += n * esize;
    return LLM_STATUS_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Sections
 * ------------------------------------------------------------------------------------------ */

static int32_t parse_header(reader *r, gguf_file *f) {
    snprintf(r->where, sizeof r->where, "the header");
    TRY(rd_need(r, 4, "magic"));
    const uint8_t *m = r->base;
    if (memcmp(m, GGUF_MAGIC, 4) != 0) {
        return llm_error(LLM_STATUS_BAD_FORMAT,
                         "gguf: not a GGUF file: magic at offset 0 is %02x %02x %02x %02x, "
                         "expected \"GGUF\"",
                         m[0], m[1], m[2], m[3]);
    }
    r->pos = 4;
    TRY(rd_u32(r, &f->version, "version"));
    uint32_t v = f->version;
    if (v == 1) {
        return llm_error(LLM_STATUS_UNSUPPORTED,
                         "gguf: version 1 files (at offset 4) are not supported; libllm reads "
                         "GGUF v2 and v3, re-convert the model");
    }
    if (v != 0 && (v & 0xffff) == 0) {
        return llm_error(LLM_STATUS_UNSUPPORTED,
                         "gguf: version field 0x%08" PRIx32 " at offset 4 looks byte-swapped: "
                         "big-endian GGUF files are not supported",
                         v);
    }
    if (v != 2 && v != 3) {
        return llm_error(LLM_STATUS_UNSUPPORTED,
                         "gguf: unsupported version %" PRIu32 " at offset 4 (libllm reads "
                         "GGUF v2 and v3)",
                         v);
    }
    TRY(rd_u64(r, &f->n_tensors, "tensor count"));
    TRY(rd_u64(r, &f->n_kv, "metadata count"));
    if (f->n_kv > rd_left(r) / KV_MIN_BYTES) {
        return llm_error(LLM_STATUS_BAD_FORMAT,
                         "gguf: metadata count %" PRIu64 " at offset 16 is more than the %" PRIu64
                         " remaining bytes can hold",
                         f->n_kv, rd_left(r));
    }
    if (f->n_tensors > rd_left(r) / TENSOR_MIN_BYTES) {
        return llm_error(LLM_STATUS_BAD_FORMAT,
                         "gguf: tensor count %" PRIu64 " at offset 8 is more than the %" PRIu64
                         " remaining bytes can hold",
                         f->n_tensors, rd_left(r));
    }
    return LLM_STATUS_OK;
}

/* Allocates n zeroed elements; counts were bounded by the file size before this. */
static int32_t alloc_array(void **out, uint64_t n, size_t elem, const char *what) {
    uint64_t bytes;
    if (llm_mul_overflow(n, elem, &bytes) || bytes > SIZE_MAX) {
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "gguf: %" PRIu64 " %s do not fit in memory",
                         n, what);
    }
    *out = llm_calloc((size_t)n, elem);
    if (!*out) {
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "gguf: cannot allocate %" PRIu64 " %s", n,
                         what);
    }
    return LLM_STATUS_OK;
}

/* Metadata: key, value type, value. Keys go to names[i]; kv[i].key is set later. */
static int32_t parse_kv(reader *r, gguf_file *f, gguf_str *names) {
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        snprintf(r->where, sizeof r->where, "metadata entry %" PRIu64, i);
        TRY(rd_name(r, &names[i], "key"));
        rd_describe_name(r, "key", names[i]);

        uint64_t at = r->pos;
        TRY(rd_u32(r, &kv->type, "value type"));
        if (kv->type >= GGUF_TYPE_COUNT) {
            return llm_error(LLM_STATUS_BAD_FORMAT,
                             "gguf: invalid value type %" PRIu32 " of %s at offset %" PRIu64,
                             kv->type, r->where, at);
        }
        if (kv->type != GGUF_TYPE_ARRAY) {
            kv->data = r->base + r->pos;
            if (kv->type != GGUF_TYPE_STRING) TRY(rd_need(r, gguf_type_size(kv->type), "value"));
            TRY(skip_values(r, kv->type, 1));
            continue;
        }
        at = r->pos;
        TRY(rd_u32(r, &kv->arr_type, "array element type"));
        if (kv->arr_type == GGUF_TYPE_ARRAY) {
            return llm_error(LLM_STATUS_UNSUPPORTED,
                             "gguf: nested array in %s at offset %" PRIu64
                             " (arrays of arrays are not supported)",
                             r->where, at);
        }
        if (kv->arr_type >= GGUF_TYPE_COUNT) {
            return llm_error(LLM_STATUS_BAD_FORMAT,
                             "gguf: invalid array element type %" PRIu32 " of %s at offset %" PRIu64,
                             kv->arr_type, r->where, at);
        }
        TRY(rd_u64(r, &kv->arr_n, "array length"));
        kv->data = r->base + r->pos;
        TRY(skip_values(r, kv->arr_type, kv->arr_n));
    }
    return LLM_STATUS_OK;
}

/* general.alignment: a u32 power of two, 32 when absent. */
static int32_t read_alignment(const gguf_file *f, const gguf_str *names, uint64_t *out) {
    static const char key[] = "general.alignment";
    *out = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        if (names[i].len != sizeof key - 1 || memcmp(names[i].ptr, key, sizeof key - 1) != 0)
            continue;
        const gguf_kv *kv = &f->kv[i];
        uint64_t at = (uint64_t)(kv->data - f->base);
        if (kv->type != GGUF_TYPE_UINT32) {
            return llm_error(LLM_STATUS_BAD_FORMAT,
                             "gguf: %s at offset %" PRIu64 " has type %s, expected uint32", key,
                             at, type_name(kv->type));
        }
        uint32_t a = le32(kv->data);
        if (a == 0 || (a & (a - 1)) != 0) {
            return llm_error(LLM_STATUS_BAD_FORMAT,
                             "gguf: %s at offset %" PRIu64 " is %" PRIu32
                             ", expected a power of two",
                             key, at, a);
        }
        *out = a;
        return LLM_STATUS_OK;
    }
    return LLM_STATUS_OK;
}

static int32_t parse_tensor_info(reader *r, const gguf_file *f, gguf_tensor *t, gguf_str *name) {
    TRY(rd_name(r, name, "name"));
    rd_describe_name(r, "name", *name);

    uint64_t at = r->pos;
    TRY(rd_u32(r, &t->n_dims, "n_dims"));
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS) {
        return llm_error(LLM_STATUS_BAD_FORMAT,
                         "gguf: n_dims %" PRIu32 " of %s at offset %" PRIu64 " is not in 1..%d",
                         t->n_dims, r->where, at, GGUF_MAX_DIMS);
    }
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims) continue;
        uint64_t dim;
        at = r->pos;
        TRY(rd_u64(r, &dim, "dimension"));
        if (dim == 0 || dim > INT64_MAX) {
            return llm_error(LLM_STATUS_BAD_FORMAT,
                             "gguf: dimension %" PRIu32 " of %s at offset %" PRIu64 " is %" PRId64
                             ", must be positive",
                             d, r->where, at, (int64_t)dim);
        }
        if (llm_mul_overflow(n_elems, dim, &n_elems) || n_elems > INT64_MAX) {
            return llm_error(LLM_STATUS_BAD_FORMAT,
                             "gguf: element count of %s overflows int64 at dimension %" PRIu32
                             " (offset %" PRIu64 ")",
                             r->where, d, at);
        }
        t->ne[d] = (int64_t)dim;
    }

    at = r->pos;
    TRY(rd_u32(r, &t->type, "tensor type"));
    const type_traits *tt = type_traits_get(t->type);
    if (!tt) {
        return llm_error(LLM_STATUS_BAD_FORMAT,
                         "gguf: unknown tensor type id %" PRIu32 " of %s at offset %" PRIu64,
                         t->type, r->where, at);
    }
    if (t->ne[0] % tt->block != 0) {
        return llm_error(LLM_STATUS_BAD_FORMAT,
                         "gguf: ne[0] = %" PRId64 " of %s is not a multiple of the block size %"
                         PRId64 " of type %s",
                         t->ne[0], r->where, tt->block, tt->name);
    }
    /* n_rows cannot overflow: the element count was checked above */
    uint64_t row_bytes;
    uint64_t n_rows = (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
    if (!type_row_bytes(t->type, t->ne[0], &row_bytes) ||
        llm_mul_overflow(row_bytes, n_rows, &t->n_bytes)) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "gguf: byte size of %s (type %s) overflows",
                         r->where, tt->name);
    }

    at = r->pos;
    TRY(rd_u64(r, &t->offset, "data offset"));
    if (t->offset % f->alignment != 0) {
        return llm_error(LLM_STATUS_BAD_FORMAT,
                         "gguf: data offset %" PRIu64 " of %s at offset %" PRIu64
                         " is not a multiple of the alignment %" PRIu64,
                         t->offset, r->where, at, f->alignment);
    }
    return LLM_STATUS_OK;
}

static int32_t parse_tensor_infos(reader *r, gguf_file *f, gguf_str *names) {
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        snprintf(r->where, sizeof r->where, "tensor info %" PRIu64, i);
        TRY(parse_tensor_info(r, f, &f->tensors[i], &names[i]));
    }
    return LLM_STATUS_OK;
}

/* The data section starts at the next multiple of the alignment; every tensor must lie in it. */
static int32_t layout_data(const reader *r, gguf_file *f, const gguf_str *names) {
    uint64_t pad = (f->alignment - r->pos % f->alignment) % f->alignment;
    uint64_t data_offset = r->pos + pad;
    uint64_t avail = data_offset <= f->size ? f->size - data_offset : 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset > avail || t->n_bytes > avail - t->offset) {
            return llm_error(LLM_STATUS_BAD_FORMAT,
                             "gguf: data of tensor %" PRIu64 " ('%.*s'): %" PRIu64
                             " bytes at offset %" PRIu64 " of the data section (which starts at"
                             " file offset %" PRIu64 ") extend past the end of the file (%"
                             PRIu64 " bytes)",
                             i, names[i].len > 64 ? 64 : (int)names[i].len, names[i].ptr,
                             t->n_bytes, t->offset, data_offset, f->size);
        }
        t->data = f->base + data_offset + t->offset;
    }
    /* Without tensors the file may end before the padding; keep the offset inside it. */
    f->data_offset = data_offset <= f->size ? data_offset : f->size;
    return LLM_STATUS_OK;
}

static uint64_t hash_str(gguf_str s) {
    uint64_t h = 1469598103934665603ull;  /* FNV-1a */
    for (uint64_t i = 0; i < s.len; i++) {
        h ^= (uint8_t)s.ptr[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool str_eq(gguf_str a, gguf_str b) {
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

/* Rejects two equal names among names[0..n) with an open-addressing set: linear time even
 * for the largest counts a file can claim. */
static int32_t check_unique(const uint8_t *base, const gguf_str *names, uint64_t n,
                            const char *what) {
    if (n < 2) return LLM_STATUS_OK;
    uint64_t cap = 1;
    while (cap < 2 * n) cap <<= 1;
    uint64_t *slots;
    TRY(alloc_array((void **)&slots, cap, sizeof *slots, "hash slots"));
    int32_t status = LLM_STATUS_OK;
    for (uint64_t i = 0; i < n && status == LLM_STATUS_OK; i++) {
        uint64_t h = hash_str(names[i]) & (cap - 1);
        for (; slots[h] != 0; h = (h + 1) & (cap - 1)) {
            uint64_t j = slots[h] - 1;
            if (str_eq(names[i], names[j])) {
                int shown = names[i].len > 64 ? 64 : (int)names[i].len;
                status = llm_error(LLM_STATUS_BAD_FORMAT,
                                   "gguf: duplicate %s '%.*s' (entries %" PRIu64 " and %" PRIu64
                                   ", the second at offset %" PRIu64 ")",
                                   what, shown, names[i].ptr, j, i,
                                   /* the length prefix sits just before the bytes */
                                   (uint64_t)((const uint8_t *)names[i].ptr - base) - 8);
                break;
            }
        }
        slots[h] = i + 1;
    }
    llm_free(slots);
    return status;
}

/* Copies every key and tensor name, NUL-terminated, into one allocation. */
static int32_t copy_names(gguf_file *f, const gguf_str *names) {
    uint64_t n = f->n_kv + f->n_tensors;
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += names[i].len + 1;  /* <= file size + n */
    if (total > SIZE_MAX) {
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "gguf: names need %" PRIu64 " bytes", total);
    }
    f->names_ = llm_malloc((size_t)total);
    if (!f->names_) {
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "gguf: cannot allocate %" PRIu64
                         " bytes of names", total);
    }
    char *p = f->names_;
    for (uint64_t i = 0; i < n; i++) {
        memcpy(p, names[i].ptr, names[i].len);
        p[names[i].len] = '\0';
        if (i < f->n_kv) {
            f->kv[i].key = p;
        } else {
            f->tensors[i - f->n_kv].name = p;
        }
        p += names[i].len + 1;
    }
    return LLM_STATUS_OK;
}

/* Parses and validates f->base[0..f->size). names holds the key and tensor names as they
 * appear in the file until they are copied. */
static int32_t parse(gguf_file *f) {
    reader r = {.base = f->base, .size = f->size, .pos = 0};
    TRY(parse_header(&r, f));

    gguf_str *names = NULL;
    int32_t status = alloc_array((void **)&f->kv, f->n_kv, sizeof *f->kv, "metadata entries");
    if (!status)
        status = alloc_array((void **)&f->tensors, f->n_tensors, sizeof *f->tensors,
                             "tensor infos");
    if (!status)
        status = alloc_array((void **)&names, f->n_kv + f->n_tensors, sizeof *names, "names");
    if (!status) status = parse_kv(&r, f, names);
    if (!status) status = read_alignment(f, names, &f->alignment);
    if (!status) status = parse_tensor_infos(&r, f, names + f->n_kv);
    if (!status) status = layout_data(&r, f, names + f->n_kv);
    if (!status) status = check_unique(f->base, names, f->n_kv, "key");
    if (!status) status = check_unique(f->base, names + f->n_kv, f->n_tensors, "tensor name");
    if (!status) status = copy_names(f, names);
    llm_free(names);
    return status;
}

/* ---------------------------------------------------------------------------------------------
 * Opening and closing
 * ------------------------------------------------------------------------------------------ */

static int32_t read_all(int fd, const char *path, uint8_t *dst, uint64_t size) {
    uint64_t done = 0;
    while (done < size) {
        size_t chunk = (size_t)LLM_MIN(size - done, (uint64_t)1 << 30);
        ssize_t n = read(fd, dst + done, chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            return llm_error(LLM_STATUS_IO, "gguf: cannot read '%s' at offset %" PRIu64 ": %s",
                             path, done, strerror(errno));
        }
        if (n == 0) {
            return llm_error(LLM_STATUS_IO,
                             "gguf: '%s' ended at offset %" PRIu64 " while reading %" PRIu64
                             " bytes (was it truncated?)",
                             path, done, size);
        }
        done += (uint64_t)n;
    }
    return LLM_STATUS_OK;
}

/* Maps or reads the open file fd into f->base / f->size. */
static int32_t load_fd(int fd, const char *path, bool use_mmap, gguf_file *f) {
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return llm_error(LLM_STATUS_IO, "gguf: cannot stat '%s': %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        return llm_error(LLM_STATUS_IO, "gguf: '%s' is a directory, not a GGUF file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        return llm_error(LLM_STATUS_IO, "gguf: '%s' is not a regular file", path);
    }
    if (st.st_size == 0) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "gguf: '%s' is empty", path);
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size > SIZE_MAX) {
        return llm_error(LLM_STATUS_IO, "gguf: '%s' (%" PRIu64 " bytes) is too large to load",
                         path, size);
    }
    if (use_mmap) {
        void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            return llm_error(LLM_STATUS_IO, "gguf: cannot map '%s' (%" PRIu64 " bytes): %s",
                             path, size, strerror(errno));
        }
        f->map_ = map;
        f->map_size_ = (size_t)size;
        f->base = map;
    } else {
        /* 64-byte aligned so tensor data keeps the file's alignment in memory too. */
        f->owned_ = llm_aligned_alloc((size_t)size);
        if (!f->owned_) {
            return llm_error(LLM_STATUS_OUT_OF_MEMORY,
                             "gguf: cannot allocate %" PRIu64 " bytes to read '%s'", size, path);
        }
        f->base = f->owned_;
        TRY(read_all(fd, path, f->owned_, size));
    }
    f->size = size;
    return LLM_STATUS_OK;
}

int32_t gguf_open(const char *path, bool use_mmap, gguf_file **out) {
    if (!out) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "gguf_open: out is NULL");
    *out = NULL;
    if (!path) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "gguf_open: path is NULL");

    gguf_file *f = llm_calloc(1, sizeof *f);
    if (!f) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "gguf: cannot allocate the file");

    int32_t status;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        status = llm_error(LLM_STATUS_IO, "gguf: cannot open '%s': %s", path, strerror(errno));
    } else {
        status = load_fd(fd, path, use_mmap, f);
        close(fd);
    }
    if (status == LLM_STATUS_OK) status = parse(f);
    if (status != LLM_STATUS_OK) {
        gguf_close(f);
        return status;
    }
    *out = f;
    return LLM_STATUS_OK;
}

int32_t gguf_open_buffer(const void *data, size_t size, gguf_file **out) {
    if (!out) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "gguf_open_buffer: out is NULL");
    *out = NULL;
    if (!data && size != 0) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "gguf_open_buffer: data is NULL");
    }
    if (size == 0) return llm_error(LLM_STATUS_BAD_FORMAT, "gguf: the buffer is empty");

    gguf_file *f = llm_calloc(1, sizeof *f);
    if (!f) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "gguf: cannot allocate the file");
    f->base = data;
    f->size = size;
    int32_t status = parse(f);
    if (status != LLM_STATUS_OK) {
        gguf_close(f);
        return status;
    }
    *out = f;
    return LLM_STATUS_OK;
}

void gguf_close(gguf_file *file) {
    if (!file) return;
    llm_free(file->kv);
    llm_free(file->tensors);
    llm_free(file->names_);
    llm_aligned_free(file->owned_);
    if (file->map_) munmap(file->map_, file->map_size_);
    llm_free(file);
}

/* ---------------------------------------------------------------------------------------------
 * Lookups and getters
 * ------------------------------------------------------------------------------------------ */

int64_t gguf_find_key(const gguf_file *file, const char *key) {
    if (!file || !key) return -1;
    for (uint64_t i = 0; i < file->n_kv; i++) {
        if (strcmp(file->kv[i].key, key) == 0) return (int64_t)i;
    }
    return -1;
}

int64_t gguf_find_tensor(const gguf_file *file, const char *name) {
    if (!file || !name) return -1;
    for (uint64_t i = 0; i < file->n_tensors; i++) {
        if (strcmp(file->tensors[i].name, name) == 0) return (int64_t)i;
    }
    return -1;
}

const gguf_tensor *gguf_get_tensor(const gguf_file *file, const char *name) {
    int64_t i = gguf_find_tensor(file, name);
    return i < 0 ? NULL : &file->tensors[i];
}

static const gguf_kv *find_kv(const gguf_file *file, const char *key) {
    int64_t i = gguf_find_key(file, key);
    return i < 0 ? NULL : &file->kv[i];
}

/* A scalar integer value of any integer type, as sign and magnitude. */
static bool get_int(const gguf_file *file, const char *key, bool *neg, uint64_t *mag) {
    const gguf_kv *kv = find_kv(file, key);
    return kv && load_int(kv->type, kv->data, neg, mag);
}

bool gguf_get_u32(const gguf_file *file, const char *key, uint32_t *out) {
    bool neg;
    uint64_t mag;
    if (!get_int(file, key, &neg, &mag) || neg || mag > UINT32_MAX) return false;
    if (out) *out = (uint32_t)mag;
    return true;
}

bool gguf_get_i32(const gguf_file *file, const char *key, int32_t *out) {
    bool neg;
    uint64_t mag;
    if (!get_int(file, key, &neg, &mag)) return false;
    if (neg ? mag > (uint64_t)INT32_MAX + 1 : mag > INT32_MAX) return false;
    if (out) *out = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
    return true;
}

bool gguf_get_u64(const gguf_file *file, const char *key, uint64_t *out) {
    bool neg;
    uint64_t mag;
    if (!get_int(file, key, &neg, &mag) || neg) return false;
    if (out) *out = mag;
    return true;
}

bool gguf_get_f32(const gguf_file *file, const char *key, float *out) {
    const gguf_kv *kv = find_kv(file, key);
    double d;
    if (!kv || !load_float(kv->type, kv->data, &d)) return false;
    if (out) *out = (float)d;
    return true;
}

bool gguf_get_bool(const gguf_file *file, const char *key, bool *out) {
    const gguf_kv *kv = find_kv(file, key);
    if (!kv || kv->type != GGUF_TYPE_BOOL) return false;
    if (out) *out = kv->data[0] != 0;
    return true;
}

bool gguf_get_str(const gguf_file *file, const char *key, gguf_str *out) {
    const gguf_kv *kv = find_kv(file, key);
    if (!kv || kv->type != GGUF_TYPE_STRING) return false;
    if (out) {
        out->len = le64(kv->data);
        out->ptr = (const char *)kv->data + 8;
    }
    return true;
}

bool gguf_get_arr(const gguf_file *file, const char *key, uint32_t *arr_type, uint64_t *n) {
    const gguf_kv *kv = find_kv(file, key);
    if (!kv || kv->type != GGUF_TYPE_ARRAY) return false;
    if (arr_type) *arr_type = kv->arr_type;
    if (n) *n = kv->arr_n;
    return true;
}

/* Element i of a numeric (integer or float) array, or NULL. */
static const uint8_t *num_elem(const gguf_kv *kv, uint64_t i) {
    if (!kv || kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n) return NULL;
    if (kv->arr_type == GGUF_TYPE_BOOL || kv->arr_type == GGUF_TYPE_STRING) return NULL;
    size_t esize = gguf_type_size(kv->arr_type);
    return esize ? kv->data + i * esize : NULL;
}

bool gguf_arr_num(const gguf_kv *kv, uint64_t i, double *out) {
    const uint8_t *p = num_elem(kv, i);
    if (!p) return false;
    bool neg;
    uint64_t mag;
    double d;
    if (load_int(kv->arr_type, p, &neg, &mag)) {
        d = neg ? -(double)mag : (double)mag;
    } else if (!load_float(kv->arr_type, p, &d)) {
        return false;
    }
    if (out) *out = d;
    return true;
}

bool gguf_arr_int(const gguf_kv *kv, uint64_t i, int64_t *out) {
    const uint8_t *p = num_elem(kv, i);
    if (!p) return false;
    bool neg;
    uint64_t mag;
    int64_t v;
    double d;
    if (load_int(kv->arr_type, p, &neg, &mag)) {
        if (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > INT64_MAX) return false;
        v = neg ? (int64_t)(0 - mag) : (int64_t)mag;  /* two's complement wrap is intended */
    } else if (load_float(kv->arr_type, p, &d)) {
        /* A float element counts when it holds an integer in range. */
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return false;
        v = (int64_t)d;
        if ((double)v != d) return false;
    } else {
        return false;
    }
    if (out) *out = v;
    return true;
}

/* The strings were bounds-checked when the file was opened (gguf_kv values only come from a
 * validated file); the walk here checks the count and that no length wraps a pointer. */
bool gguf_arr_strs(const gguf_kv *kv, gguf_str *out, uint64_t n) {
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING) return false;
    if (n != kv->arr_n || (n != 0 && !out)) return false;
    const uint8_t *p = kv->data;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = le64(p);
        if (len > (uint64_t)(UINTPTR_MAX - (uintptr_t)(p + 8))) return false;
        out[i].ptr = (const char *)p + 8;
        out[i].len = len;
        p += 8 + len;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Text
 * ------------------------------------------------------------------------------------------ */

/* Copies len bytes like snprintf does: truncated and NUL-terminated when size allows;
 * returns len (or -1 if it does not fit an int). */
static int emit(char *buf, size_t size, const char *src, uint64_t len) {
    if (size > 0) {
        size_t n = len < size - 1 ? (size_t)len : size - 1;
        memcpy(buf, src, n);
        buf[n] = '\0';
    }
    return len > INT_MAX ? -1 : (int)len;
}

/* The shortest %g text that reads back as the same value. */
static void format_float(char *tmp, size_t size, double d, bool single) {
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(tmp, size, "%.*g", prec, d);
        if (single ? strtof(tmp, NULL) == (float)d : strtod(tmp, NULL) == d) return;
    }
    /* NaN never compares equal: the last attempt is kept */
}

int gguf_kv_to_text(const gguf_kv *kv, char *buf, size_t size) {
    char tmp[64];
    bool neg;
    uint64_t mag;
    double d;
    if (!kv) return -1;
    if (size > 0 && !buf) return -1;
    switch (kv->type) {
    case GGUF_TYPE_STRING:
        return emit(buf, size, (const char *)kv->data + 8, le64(kv->data));
    case GGUF_TYPE_BOOL:
        snprintf(tmp, sizeof tmp, "%s", kv->data[0] ? "true" : "false");
        break;
    case GGUF_TYPE_ARRAY:
        snprintf(tmp, sizeof tmp, "[%" PRIu64 " items]", kv->arr_n);
        break;
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64:
        load_float(kv->type, kv->data, &d);
        format_float(tmp, sizeof tmp, d, kv->type == GGUF_TYPE_FLOAT32);
        break;
    default:
        if (!load_int(kv->type, kv->data, &neg, &mag)) return -1;
        snprintf(tmp, sizeof tmp, "%s%" PRIu64, neg ? "-" : "", mag);
        break;
    }
    return emit(buf, size, tmp, strlen(tmp));
}
