/* test_gguf.c -- the GGUF reader: a valid v3 and v2 file built in memory, every getter, files
 * on disk (mmap and read), and hostile variants that must fail cleanly with a message. */
#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200809L
#  undef _POSIX_C_SOURCE
#  define _POSIX_C_SOURCE 200809L
#endif

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "libllm.h"
#include "quant.h"

static int g_passed, g_failed;

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (cond) {                                                               \
            g_passed++;                                                           \
        } else {                                                                  \
            g_failed++;                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                         \
    } while (0)

/* ---------------------------------------------------------------------------------------------
 * A little-endian byte buffer
 * ------------------------------------------------------------------------------------------ */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_le(buf *b, uint64_t v, int bytes) {
    uint8_t tmp[8];
    for (int i = 0; i < bytes; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    put(b, tmp, (size_t)bytes);
}

static void put_u8(buf *b, uint8_t v) { put_le(b, v, 1); }
static void put_u16(buf *b, uint16_t v) { put_le(b, v, 2); }
static void put_u32(buf *b, uint32_t v) { put_le(b, v, 4); }
static void put_u64(buf *b, uint64_t v) { put_le(b, v, 8); }

static void put_f32(buf *b, float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    put_u32(b, bits);
}

static void put_f64(buf *b, double d) {
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    put_u64(b, bits);
}

static void put_str(buf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void patch_u32(uint8_t *p, size_t at, uint32_t v) {
    for (int i = 0; i < 4; i++) p[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

static void patch_u64(uint8_t *p, size_t at, uint64_t v) {
    for (int i = 0; i < 8; i++) p[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

/* ---------------------------------------------------------------------------------------------
 * The test file
 * ------------------------------------------------------------------------------------------ */

typedef struct options {
    uint32_t version;
    uint32_t alignment;   /* 0: no general.alignment key (default 32) */
    bool dup_key;         /* a second "general.name" */
    bool dup_tensor;      /* a second "norm.weight" */
    bool empty_key;       /* an extra entry with an empty key */
    bool no_tensors;
} options;

/* Where the interesting fields of the built file are, for the hostile variants. */
typedef struct layout {
    size_t n_tensors_at, n_kv_at;
    size_t key0_len_at;         /* length of the first key */
    size_t name_key_at;         /* first byte of the key "general.name" */
    size_t str_len_at;          /* length of the value of general.name */
    size_t u8_type_at;          /* value type of the uint8 entry */
    size_t bool_value_at;       /* value byte of test.bool_true */
    size_t arr_type_at;         /* element type of the int32 array */
    size_t arr_n_at;            /* count of the int32 array */
    size_t str_arr_n_at;        /* count of the string array */
    size_t str_arr_len1_at;     /* length of the second string of the string array */
    size_t alignment_value_at;  /* value of general.alignment (when present) */
    size_t alignment_type_at;
    size_t tensor_name_len_at[4];
    size_t n_dims_at[4];
    size_t dim_at[4][4];
    size_t type_at[4];
    size_t offset_at[4];
    uint64_t offset[4];
    size_t n_bytes[4];
    size_t data_offset;
    size_t infos_end;           /* end of the tensor infos (before padding) */
} layout;

#define N_TENSORS 4

static const char *const k_tensor_names[N_TENSORS] = {"tok_embd.weight", "norm.weight",
                                                      "blk.0.q8.weight", "blk.0.q4.weight"};
static const uint32_t k_tensor_types[N_TENSORS] = {TYPE_F32, TYPE_F16, TYPE_Q8_0, TYPE_Q4_0};
static const uint32_t k_tensor_ndims[N_TENSORS] = {2, 1, 2, 4};
static const int64_t k_tensor_ne[N_TENSORS][4] = {
    {4, 3, 1, 1}, {8, 1, 1, 1}, {64, 2, 1, 1}, {32, 1, 1, 2}};
static const size_t k_tensor_bytes[N_TENSORS] = {4 * 3 * 4, 8 * 2, 2 * 34 * 2, 2 * 18};

static const char *const k_strs[] = {"<s>", "</s>", "", "hello world", "\xe2\x96\x81the"};
#define N_STRS (sizeof k_strs / sizeof k_strs[0])

static uint8_t data_byte(int tensor, size_t j) { return (uint8_t)(tensor * 31 + (int)j * 7 + 1); }

static void kv_header(buf *b, const char *key, uint32_t type) {
    put_str(b, key);
    put_u32(b, type);
}

/* Builds the file; returns its bytes (malloc'd, *size set) and fills *L. */
static uint8_t *build(const options *o, layout *L, size_t *size) {
    buf b = {0};
    memset(L, 0, sizeof *L);
    uint32_t n_tensors = o->no_tensors ? 0 : N_TENSORS + (o->dup_tensor ? 1 : 0);
    uint64_t n_kv = 0;

    put(&b, "GGUF", 4);
    put_u32(&b, o->version);
    L->n_tensors_at = b.n;
    put_u64(&b, n_tensors);
    L->n_kv_at = b.n;
    put_u64(&b, 0);  /* patched below */

    L->key0_len_at = b.n;
    kv_header(&b, "general.architecture", GGUF_TYPE_STRING);
    put_str(&b, "llama");
    n_kv++;
    L->name_key_at = b.n + 8;
    kv_header(&b, "general.name", GGUF_TYPE_STRING);
    L->str_len_at = b.n;
    put_str(&b, "tiny test model");
    n_kv++;
    if (o->alignment) {
        L->alignment_type_at = b.n + 8 + strlen("general.alignment");
        kv_header(&b, "general.alignment", GGUF_TYPE_UINT32);
        L->alignment_value_at = b.n;
        put_u32(&b, o->alignment);
        n_kv++;
    }
    L->u8_type_at = b.n + 8 + strlen("test.u8");
    kv_header(&b, "test.u8", GGUF_TYPE_UINT8);
    put_u8(&b, 200);
    kv_header(&b, "test.i8", GGUF_TYPE_INT8);
    put_u8(&b, (uint8_t)-5);
    kv_header(&b, "test.u16", GGUF_TYPE_UINT16);
    put_u16(&b, 60000);
    kv_header(&b, "test.i16", GGUF_TYPE_INT16);
    put_u16(&b, (uint16_t)-30000);
    kv_header(&b, "test.u32", GGUF_TYPE_UINT32);
    put_u32(&b, 4000000000u);
    kv_header(&b, "test.i32", GGUF_TYPE_INT32);
    put_u32(&b, (uint32_t)-2000000000);
    kv_header(&b, "test.f32", GGUF_TYPE_FLOAT32);
    put_f32(&b, 1e-5f);
    kv_header(&b, "test.bool_true", GGUF_TYPE_BOOL);
    L->bool_value_at = b.n;
    put_u8(&b, 1);
    kv_header(&b, "test.bool_false", GGUF_TYPE_BOOL);
    put_u8(&b, 0);
    kv_header(&b, "test.u64", GGUF_TYPE_UINT64);
    put_u64(&b, ((uint64_t)1 << 40) + 3);
    kv_header(&b, "test.i64", GGUF_TYPE_INT64);
    put_u64(&b, (uint64_t)-((int64_t)1 << 40));
    kv_header(&b, "test.f64", GGUF_TYPE_FLOAT64);
    put_f64(&b, 3.14159);
    kv_header(&b, "test.small_i32", GGUF_TYPE_INT32);
    put_u32(&b, 7);
    n_kv += 13;

    kv_header(&b, "test.arr_i32", GGUF_TYPE_ARRAY);
    L->arr_type_at = b.n;
    put_u32(&b, GGUF_TYPE_INT32);
    L->arr_n_at = b.n;
    put_u64(&b, 3);
    put_u32(&b, 1);
    put_u32(&b, (uint32_t)-2);
    put_u32(&b, 3);
    kv_header(&b, "test.arr_f32", GGUF_TYPE_ARRAY);
    put_u32(&b, GGUF_TYPE_FLOAT32);
    put_u64(&b, 2);
    put_f32(&b, 0.5f);
    put_f32(&b, -1.25f);
    kv_header(&b, "test.arr_u64", GGUF_TYPE_ARRAY);
    put_u32(&b, GGUF_TYPE_UINT64);
    put_u64(&b, 2);
    put_u64(&b, 5);
    put_u64(&b, UINT64_MAX);
    kv_header(&b, "test.arr_bool", GGUF_TYPE_ARRAY);
    put_u32(&b, GGUF_TYPE_BOOL);
    put_u64(&b, 3);
    put_u8(&b, 1);
    put_u8(&b, 0);
    put_u8(&b, 1);
    kv_header(&b, "tokenizer.ggml.tokens", GGUF_TYPE_ARRAY);
    put_u32(&b, GGUF_TYPE_STRING);
    L->str_arr_n_at = b.n;
    put_u64(&b, N_STRS);
    for (size_t i = 0; i < N_STRS; i++) {
        if (i == 1) L->str_arr_len1_at = b.n;
        put_str(&b, k_strs[i]);
    }
    kv_header(&b, "test.arr_empty", GGUF_TYPE_ARRAY);
    put_u32(&b, GGUF_TYPE_STRING);
    put_u64(&b, 0);
    n_kv += 6;

    if (o->dup_key) {
        kv_header(&b, "general.name", GGUF_TYPE_STRING);
        put_str(&b, "again");
        n_kv++;
    }
    if (o->empty_key) {
        kv_header(&b, "", GGUF_TYPE_UINT8);
        put_u8(&b, 0);
        n_kv++;
    }
    patch_u64(b.p, L->n_kv_at, n_kv);

    uint64_t align = o->alignment ? o->alignment : 32;
    uint64_t next = 0;
    for (uint32_t t = 0; t < n_tensors; t++) {
        int k = t < N_TENSORS ? (int)t : 1;  /* the duplicate repeats tensor 1 */
        L->tensor_name_len_at[k] = b.n;
        put_str(&b, k_tensor_names[k]);
        L->n_dims_at[k] = b.n;
        put_u32(&b, k_tensor_ndims[k]);
        for (uint32_t d = 0; d < k_tensor_ndims[k]; d++) {
            L->dim_at[k][d] = b.n;
            put_u64(&b, (uint64_t)k_tensor_ne[k][d]);
        }
        L->type_at[k] = b.n;
        put_u32(&b, k_tensor_types[k]);
        L->offset_at[k] = b.n;
        L->offset[k] = next;
        L->n_bytes[k] = k_tensor_bytes[k];
        put_u64(&b, next);
        next += (k_tensor_bytes[k] + align - 1) / align * align;
    }
    L->infos_end = b.n;
    if (n_tensors) {
        while (b.n % align) put_u8(&b, 0);
    }
    L->data_offset = b.n;
    /* Data: every tensor at its offset, the file ending right after the last one. */
    for (int k = 0; k < (int)n_tensors && k < N_TENSORS; k++) {
        while (b.n < L->data_offset + L->offset[k]) put_u8(&b, 0xee);
        for (size_t j = 0; j < k_tensor_bytes[k]; j++) put_u8(&b, data_byte(k, j));
    }
    if (o->dup_tensor) {
        while (b.n < L->data_offset + next) put_u8(&b, 0);
    }
    *size = b.n;
    return b.p;
}

/* A copy in a buffer of exactly n bytes, so ASan catches any read past the end. */
static uint8_t *copy_exact(const uint8_t *src, size_t n) {
    uint8_t *p = malloc(n ? n : 1);
    if (!p) exit(2);
    if (n) memcpy(p, src, n);
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * The valid file
 * ------------------------------------------------------------------------------------------ */

static bool str_is(gguf_str s, const char *want) {
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static void check_text(const gguf_file *f, const char *key, const char *want) {
    int64_t i = gguf_find_key(f, key);
    CHECK(i >= 0);
    if (i < 0) return;
    char text[64];
    int n = gguf_kv_to_text(&f->kv[i], text, sizeof text);
    CHECK(n == (int)strlen(want));
    CHECK(strcmp(text, want) == 0);
    if (strcmp(text, want) != 0) fprintf(stderr, "  %s: got '%s', want '%s'\n", key, text, want);
}

static void check_scalars(const gguf_file *f) {
    gguf_str s;
    CHECK(gguf_get_str(f, "general.architecture", &s) && str_is(s, "llama"));
    CHECK(gguf_get_str(f, "general.name", &s) && str_is(s, "tiny test model"));
    CHECK(!gguf_get_str(f, "test.u8", &s));
    CHECK(!gguf_get_str(f, "missing.key", &s));

    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f32;
    bool b;
    CHECK(gguf_get_u32(f, "test.u8", &u32) && u32 == 200);
    CHECK(gguf_get_i32(f, "test.u8", &i32) && i32 == 200);
    CHECK(!gguf_get_u32(f, "test.i8", &u32));
    CHECK(gguf_get_i32(f, "test.i8", &i32) && i32 == -5);
    CHECK(gguf_get_u32(f, "test.u16", &u32) && u32 == 60000);
    CHECK(gguf_get_i32(f, "test.i16", &i32) && i32 == -30000);
    CHECK(!gguf_get_u64(f, "test.i16", &u64));
    CHECK(gguf_get_u32(f, "test.u32", &u32) && u32 == 4000000000u);
    CHECK(!gguf_get_i32(f, "test.u32", &i32));
    CHECK(gguf_get_u64(f, "test.u32", &u64) && u64 == 4000000000u);
    CHECK(gguf_get_i32(f, "test.i32", &i32) && i32 == -2000000000);
    CHECK(!gguf_get_u32(f, "test.i32", &u32));
    CHECK(gguf_get_u64(f, "test.u64", &u64) && u64 == ((uint64_t)1 << 40) + 3);
    CHECK(!gguf_get_u32(f, "test.u64", &u32));
    CHECK(!gguf_get_i32(f, "test.u64", &i32));
    CHECK(!gguf_get_u64(f, "test.i64", &u64));
    CHECK(!gguf_get_i32(f, "test.i64", &i32));
    CHECK(gguf_get_u32(f, "test.small_i32", &u32) && u32 == 7);
    CHECK(gguf_get_u64(f, "test.small_i32", &u64) && u64 == 7);
    CHECK(!gguf_get_u32(f, "test.f32", &u32));
    CHECK(!gguf_get_u32(f, "test.bool_true", &u32));
    CHECK(!gguf_get_u32(f, "general.name", &u32));
    CHECK(!gguf_get_u32(f, "missing.key", &u32));

    CHECK(gguf_get_f32(f, "test.f32", &f32) && f32 == 1e-5f);
    CHECK(gguf_get_f32(f, "test.f64", &f32) && f32 == (float)3.14159);
    CHECK(!gguf_get_f32(f, "test.u8", &f32));
    CHECK(gguf_get_bool(f, "test.bool_true", &b) && b);
    CHECK(gguf_get_bool(f, "test.bool_false", &b) && !b);
    CHECK(!gguf_get_bool(f, "test.u8", &b));

    check_text(f, "general.name", "tiny test model");
    check_text(f, "test.u8", "200");
    check_text(f, "test.i8", "-5");
    check_text(f, "test.u16", "60000");
    check_text(f, "test.i16", "-30000");
    check_text(f, "test.u32", "4000000000");
    check_text(f, "test.i32", "-2000000000");
    check_text(f, "test.f32", "1e-05");
    check_text(f, "test.bool_true", "true");
    check_text(f, "test.bool_false", "false");
    check_text(f, "test.u64", "1099511627779");
    check_text(f, "test.i64", "-1099511627776");
    check_text(f, "test.f64", "3.14159");
    check_text(f, "tokenizer.ggml.tokens", "[5 items]");
    check_text(f, "test.arr_empty", "[0 items]");

    /* snprintf semantics: truncated, NUL-terminated, full length returned. */
    const gguf_kv *name = &f->kv[gguf_find_key(f, "general.name")];
    char small[5];
    memset(small, 'x', sizeof small);
    CHECK(gguf_kv_to_text(name, small, sizeof small) == 15);
    CHECK(strcmp(small, "tiny") == 0);
    CHECK(gguf_kv_to_text(name, NULL, 0) == 15);
    const gguf_kv *u16 = &f->kv[gguf_find_key(f, "test.u16")];
    CHECK(gguf_kv_to_text(u16, small, 3) == 5 && strcmp(small, "60") == 0);
    CHECK(gguf_kv_to_text(u16, small, 1) == 5 && small[0] == '\0');
}

static void check_arrays(const gguf_file *f) {
    uint32_t type;
    uint64_t n;
    double d;
    int64_t i;
    CHECK(gguf_get_arr(f, "test.arr_i32", &type, &n) && type == GGUF_TYPE_INT32 && n == 3);
    CHECK(!gguf_get_arr(f, "test.i32", &type, &n));
    CHECK(!gguf_get_arr(f, "missing.key", &type, &n));

    const gguf_kv *ai = &f->kv[gguf_find_key(f, "test.arr_i32")];
    CHECK(gguf_arr_int(ai, 0, &i) && i == 1);
    CHECK(gguf_arr_int(ai, 1, &i) && i == -2);
    CHECK(gguf_arr_num(ai, 2, &d) && d == 3.0);
    CHECK(!gguf_arr_int(ai, 3, &i));
    CHECK(!gguf_arr_num(ai, 3, &d));

    const gguf_kv *af = &f->kv[gguf_find_key(f, "test.arr_f32")];
    CHECK(gguf_arr_num(af, 0, &d) && d == 0.5);
    CHECK(gguf_arr_num(af, 1, &d) && d == -1.25);
    CHECK(!gguf_arr_int(af, 0, &i));  /* 0.5 is not an integer */

    const gguf_kv *au = &f->kv[gguf_find_key(f, "test.arr_u64")];
    CHECK(gguf_arr_int(au, 0, &i) && i == 5);
    CHECK(!gguf_arr_int(au, 1, &i));  /* UINT64_MAX does not fit */
    CHECK(gguf_arr_num(au, 1, &d) && d == 18446744073709551615.0);

    const gguf_kv *ab = &f->kv[gguf_find_key(f, "test.arr_bool")];
    CHECK(ab->type == GGUF_TYPE_ARRAY && ab->arr_type == GGUF_TYPE_BOOL && ab->arr_n == 3);
    CHECK(ab->data[0] == 1 && ab->data[1] == 0 && ab->data[2] == 1);

    const gguf_kv *as = &f->kv[gguf_find_key(f, "tokenizer.ggml.tokens")];
    gguf_str strs[N_STRS];
    CHECK(!gguf_arr_num(as, 0, &d));
    CHECK(!gguf_arr_strs(as, strs, N_STRS - 1));
    CHECK(!gguf_arr_strs(ai, strs, 3));
    CHECK(gguf_arr_strs(as, strs, N_STRS));
    for (size_t k = 0; k < N_STRS; k++) CHECK(str_is(strs[k], k_strs[k]));

    const gguf_kv *ae = &f->kv[gguf_find_key(f, "test.arr_empty")];
    CHECK(ae->arr_n == 0 && gguf_arr_strs(ae, NULL, 0));
}

static void check_tensors(const gguf_file *f, const layout *L, uint64_t alignment) {
    CHECK(f->n_tensors == N_TENSORS);
    CHECK(f->alignment == alignment);
    CHECK(f->data_offset == L->data_offset);
    CHECK(f->data_offset % alignment == 0);
    for (int k = 0; k < N_TENSORS; k++) {
        const gguf_tensor *t = gguf_get_tensor(f, k_tensor_names[k]);
        CHECK(t != NULL);
        if (!t) continue;
        CHECK(gguf_find_tensor(f, k_tensor_names[k]) == k);
        CHECK(t == &f->tensors[k]);
        CHECK(strcmp(t->name, k_tensor_names[k]) == 0);
        CHECK(t->type == k_tensor_types[k]);
        CHECK(t->n_dims == k_tensor_ndims[k]);
        for (int d = 0; d < 4; d++) CHECK(t->ne[d] == k_tensor_ne[k][d]);
        CHECK(t->offset == L->offset[k]);
        CHECK(t->offset % alignment == 0);
        CHECK(t->n_bytes == k_tensor_bytes[k]);
        CHECK((const uint8_t *)t->data == f->base + f->data_offset + t->offset);
        bool same = true;
        for (size_t j = 0; j < t->n_bytes; j++) {
            if (((const uint8_t *)t->data)[j] != data_byte(k, j)) same = false;
        }
        CHECK(same);
    }
    CHECK(gguf_find_tensor(f, "missing.weight") == -1);
    CHECK(gguf_get_tensor(f, "missing.weight") == NULL);
    CHECK(gguf_get_tensor(f, "norm") == NULL);
}

static void test_valid(uint32_t version, uint32_t alignment) {
    options o = {.version = version, .alignment = alignment};
    layout L;
    size_t size;
    uint8_t *bytes = build(&o, &L, &size);
    uint8_t *exact = copy_exact(bytes, size);
    gguf_file *f = NULL;
    int32_t st = gguf_open_buffer(exact, size, &f);
    CHECK(st == LLM_STATUS_OK);
    if (st != LLM_STATUS_OK) fprintf(stderr, "  v%u: %s\n", version, llm_last_error());
    if (f) {
        CHECK(f->version == version);
        CHECK(f->base == exact && f->size == size);
        CHECK(f->n_kv == (alignment ? 22u : 21u));
        CHECK(gguf_find_key(f, "general.architecture") == 0);
        CHECK(gguf_find_key(f, "general") == -1);
        CHECK(gguf_find_key(f, "missing.key") == -1);
        for (uint64_t i = 0; i < f->n_kv; i++) CHECK(gguf_find_key(f, f->kv[i].key) == (int64_t)i);
        check_scalars(f);
        check_arrays(f);
        check_tensors(f, &L, alignment ? alignment : 32);
    }
    gguf_close(f);
    free(exact);
    free(bytes);
}

static void test_minimal(void) {
    /* No metadata, no tensors: just the header. */
    buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 0);
    gguf_file *f = NULL;
    CHECK(gguf_open_buffer(b.p, b.n, &f) == LLM_STATUS_OK);
    if (f) {
        CHECK(f->n_kv == 0 && f->n_tensors == 0 && f->alignment == 32);
        CHECK(f->data_offset <= f->size);
        CHECK(gguf_find_key(f, "x") == -1 && gguf_get_tensor(f, "x") == NULL);
    }
    gguf_close(f);
    free(b.p);

    /* Metadata only, the file ending right after it (no padding). */
    options o = {.version = 3, .alignment = 64, .no_tensors = true};
    layout L;
    size_t size;
    uint8_t *bytes = build(&o, &L, &size);
    f = NULL;
    CHECK(gguf_open_buffer(bytes, size, &f) == LLM_STATUS_OK);
    if (f) CHECK(f->n_tensors == 0 && f->data_offset <= f->size);
    gguf_close(f);
    free(bytes);

    gguf_close(NULL);
    CHECK(gguf_type_size(GGUF_TYPE_UINT8) == 1 && gguf_type_size(GGUF_TYPE_INT16) == 2 &&
          gguf_type_size(GGUF_TYPE_FLOAT32) == 4 && gguf_type_size(GGUF_TYPE_BOOL) == 1 &&
          gguf_type_size(GGUF_TYPE_FLOAT64) == 8 && gguf_type_size(GGUF_TYPE_STRING) == 0 &&
          gguf_type_size(GGUF_TYPE_ARRAY) == 0 && gguf_type_size(99) == 0);
}

/* ---------------------------------------------------------------------------------------------
 * Hostile variants
 * ------------------------------------------------------------------------------------------ */

/* Opens a copy of bytes[0..n) and expects status (or any error when status is 0), no file,
 * and a message containing want (when not NULL). */
static void expect_fail_at(const uint8_t *bytes, size_t n, int32_t status, const char *want,
                           const char *what, int line) {
    uint8_t *exact = copy_exact(bytes, n);
    gguf_file *f = (gguf_file *)1;
    int32_t st = gguf_open_buffer(exact, n, &f);
    const char *msg = llm_last_error();
    bool ok = (status ? st == status : st < 0) && f == NULL && msg[0] != '\0' &&
              (!want || strstr(msg, want) != NULL);
    if (ok) {
        g_passed++;
        if (getenv("TEST_GGUF_VERBOSE")) printf("%-32s -> %s\n", what, msg);
    } else {
        g_failed++;
        fprintf(stderr, "%s:%d: %s: status %d, message '%s' (want status %d, '%s')\n",
                __FILE__, line, what, st, msg, status, want ? want : "");
    }
    if (st == LLM_STATUS_OK) gguf_close(f);
    free(exact);
}

#define EXPECT_FAIL(bytes, n, status, want, what) \
    expect_fail_at(bytes, n, status, want, what, __LINE__)

typedef struct variant {
    uint8_t *p;
    size_t n;
    layout L;
} variant;

static variant make(const options *o) {
    variant v;
    v.p = build(o, &v.L, &v.n);
    return v;
}

static variant make_v3(void) {
    options o = {.version = 3, .alignment = 64};
    return make(&o);
}

static void test_truncation(void) {
    variant v = make_v3();
    int failures_before = g_failed;
    for (size_t n = 0; n < v.n; n++) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu bytes", n);
        EXPECT_FAIL(v.p, n, 0, NULL, what);
        if (g_failed - failures_before > 5) break;  /* one bug, not a thousand lines */
    }
    /* The metadata region gives a "truncated" message; the data region names the tensor. */
    EXPECT_FAIL(v.p, v.L.tensor_name_len_at[2] + 3, LLM_STATUS_BAD_FORMAT, "truncated",
                "in a length");
    EXPECT_FAIL(v.p, 27, LLM_STATUS_BAD_FORMAT, "metadata count", "in the first key");
    EXPECT_FAIL(v.p, v.L.infos_end - 1, LLM_STATUS_BAD_FORMAT, "truncated", "in an offset");
    EXPECT_FAIL(v.p, v.n - 1, LLM_STATUS_BAD_FORMAT, "blk.0.q4.weight", "in the data");
    EXPECT_FAIL(v.p, 2, LLM_STATUS_BAD_FORMAT, "magic", "in the magic");
    free(v.p);

    /* A v2 file too, over the header and metadata. */
    options o2 = {.version = 2};
    variant w = make(&o2);
    for (size_t n = 0; n < w.n; n += 7) EXPECT_FAIL(w.p, n, 0, NULL, "v2 truncated");
    free(w.p);
}

static void set_u32(variant *v, size_t at, uint32_t value) { patch_u32(v->p, at, value); }
static void set_u64(variant *v, size_t at, uint64_t value) { patch_u64(v->p, at, value); }

/* One hostile variant: a u32 or u64 field of the valid file replaced by value. */
static void bad_u32(size_t (*field)(const layout *), uint32_t value, int32_t status,
                    const char *want, const char *what) {
    variant v = make_v3();
    set_u32(&v, field(&v.L), value);
    EXPECT_FAIL(v.p, v.n, status, want, what);
    free(v.p);
}

static void bad_u64(size_t (*field)(const layout *), uint64_t value, int32_t status,
                    const char *want, const char *what) {
    variant v = make_v3();
    set_u64(&v, field(&v.L), value);
    EXPECT_FAIL(v.p, v.n, status, want, what);
    free(v.p);
}

static size_t f_version(const layout *L) { (void)L; return 4; }
static size_t f_n_tensors(const layout *L) { return L->n_tensors_at; }
static size_t f_n_kv(const layout *L) { return L->n_kv_at; }
static size_t f_key0_len(const layout *L) { return L->key0_len_at; }
static size_t f_str_len(const layout *L) { return L->str_len_at; }
static size_t f_u8_type(const layout *L) { return L->u8_type_at; }
static size_t f_arr_type(const layout *L) { return L->arr_type_at; }
static size_t f_arr_n(const layout *L) { return L->arr_n_at; }
static size_t f_str_arr_n(const layout *L) { return L->str_arr_n_at; }
static size_t f_str_arr_len1(const layout *L) { return L->str_arr_len1_at; }
static size_t f_alignment(const layout *L) { return L->alignment_value_at; }
static size_t f_alignment_type(const layout *L) { return L->alignment_type_at; }
static size_t f_name_len0(const layout *L) { return L->tensor_name_len_at[0]; }
static size_t f_n_dims0(const layout *L) { return L->n_dims_at[0]; }
static size_t f_n_dims1(const layout *L) { return L->n_dims_at[1]; }
static size_t f_dim00(const layout *L) { return L->dim_at[0][0]; }
static size_t f_dim01(const layout *L) { return L->dim_at[0][1]; }
static size_t f_dim20(const layout *L) { return L->dim_at[2][0]; }
static size_t f_type0(const layout *L) { return L->type_at[0]; }
static size_t f_offset1(const layout *L) { return L->offset_at[1]; }
static size_t f_offset3(const layout *L) { return L->offset_at[3]; }

static void test_header(void) {
    variant v = make_v3();
    v.p[0] = 'X';
    EXPECT_FAIL(v.p, v.n, LLM_STATUS_BAD_FORMAT, "magic", "wrong magic");
    free(v.p);

    bad_u32(f_version, 1, LLM_STATUS_UNSUPPORTED, "version 1", "version 1");
    bad_u32(f_version, 4, LLM_STATUS_UNSUPPORTED, "version 4", "version 4");
    bad_u32(f_version, 0, LLM_STATUS_UNSUPPORTED, "version 0", "version 0");
    bad_u32(f_version, 0x03000000, LLM_STATUS_UNSUPPORTED, "big-endian", "byte-swapped v3");
    bad_u32(f_version, 0x02000000, LLM_STATUS_UNSUPPORTED, "big-endian", "byte-swapped v2");

    const uint64_t huge[] = {(uint64_t)1 << 63, (uint64_t)1 << 32, UINT64_MAX, 1000};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        bad_u64(f_n_tensors, huge[i], LLM_STATUS_BAD_FORMAT, NULL, "huge n_tensors");
        bad_u64(f_n_kv, huge[i], LLM_STATUS_BAD_FORMAT, NULL, "huge n_kv");
    }
    bad_u64(f_n_kv, (uint64_t)1 << 63, LLM_STATUS_BAD_FORMAT, "metadata count", "n_kv message");
    bad_u64(f_n_tensors, (uint64_t)1 << 32, LLM_STATUS_BAD_FORMAT, "tensor count",
            "n_tensors message");
}

static void test_metadata(void) {
    const uint64_t huge[] = {(uint64_t)1 << 63, (uint64_t)1 << 32, UINT64_MAX,
                             (uint64_t)1 << 62, (uint64_t)1 << 61};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        bad_u64(f_key0_len, huge[i], LLM_STATUS_BAD_FORMAT, "length", "huge key length");
        bad_u64(f_str_len, huge[i], LLM_STATUS_BAD_FORMAT, "length", "huge string length");
        bad_u64(f_arr_n, huge[i], LLM_STATUS_BAD_FORMAT, "cannot fit", "huge array count");
        bad_u64(f_str_arr_n, huge[i], LLM_STATUS_BAD_FORMAT, "cannot fit",
                "huge string array count");
        bad_u64(f_str_arr_len1, huge[i], LLM_STATUS_BAD_FORMAT, "length",
                "huge length in a string array");
        bad_u64(f_name_len0, huge[i], LLM_STATUS_BAD_FORMAT, "length", "huge tensor name");
    }
    bad_u32(f_u8_type, GGUF_TYPE_COUNT, LLM_STATUS_BAD_FORMAT, "invalid value type",
            "value type 13");
    bad_u32(f_u8_type, UINT32_MAX, LLM_STATUS_BAD_FORMAT, "invalid value type",
            "value type 2^32-1");
    bad_u32(f_arr_type, GGUF_TYPE_COUNT, LLM_STATUS_BAD_FORMAT, "invalid array element type",
            "element type 13");
    bad_u32(f_arr_type, 1000, LLM_STATUS_BAD_FORMAT, "invalid array element type",
            "element type 1000");
    bad_u32(f_arr_type, GGUF_TYPE_ARRAY, LLM_STATUS_UNSUPPORTED, "nested array", "nested array");

    variant v = make_v3();
    v.p[v.L.bool_value_at] = 2;
    EXPECT_FAIL(v.p, v.n, LLM_STATUS_BAD_FORMAT, "bool", "bool value 2");
    v.p[v.L.bool_value_at] = 1;
    v.p[v.L.name_key_at + 3] = '\0';
    EXPECT_FAIL(v.p, v.n, LLM_STATUS_BAD_FORMAT, "NUL", "NUL inside a key");
    free(v.p);

    options o = {.version = 3, .alignment = 64, .dup_key = true};
    v = make(&o);
    EXPECT_FAIL(v.p, v.n, LLM_STATUS_BAD_FORMAT, "duplicate key 'general.name'", "duplicate key");
    free(v.p);
    options o2 = {.version = 3, .alignment = 64, .empty_key = true};
    v = make(&o2);
    EXPECT_FAIL(v.p, v.n, LLM_STATUS_BAD_FORMAT, "empty key", "empty key");
    free(v.p);

    bad_u32(f_alignment, 0, LLM_STATUS_BAD_FORMAT, "general.alignment", "alignment 0");
    bad_u32(f_alignment, 3, LLM_STATUS_BAD_FORMAT, "power of two", "alignment 3");
    bad_u32(f_alignment, 96, LLM_STATUS_BAD_FORMAT, "power of two", "alignment 96");
    bad_u32(f_alignment_type, GGUF_TYPE_INT32, LLM_STATUS_BAD_FORMAT, "uint32",
            "alignment of type int32");
}

static void test_tensor_infos(void) {
    bad_u32(f_n_dims0, 0, LLM_STATUS_BAD_FORMAT, "n_dims 0", "n_dims 0");
    bad_u32(f_n_dims0, 5, LLM_STATUS_BAD_FORMAT, "n_dims 5", "n_dims 5");
    bad_u32(f_n_dims1, UINT32_MAX, LLM_STATUS_BAD_FORMAT, "n_dims", "n_dims 2^32-1");
    bad_u64(f_dim00, 0, LLM_STATUS_BAD_FORMAT, "dimension 0", "dim 0");
    bad_u64(f_dim01, (uint64_t)-1, LLM_STATUS_BAD_FORMAT, "is -1", "dim -1");
    bad_u64(f_dim01, (uint64_t)1 << 63, LLM_STATUS_BAD_FORMAT, "must be positive", "dim 2^63");

    /* 2^40 x 2^40 elements overflow int64. */
    variant v = make_v3();
    patch_u64(v.p, v.L.dim_at[0][0], (uint64_t)1 << 40);
    patch_u64(v.p, v.L.dim_at[0][1], (uint64_t)1 << 40);
    EXPECT_FAIL(v.p, v.n, LLM_STATUS_BAD_FORMAT, "overflows int64", "element count overflow");
    free(v.p);
    /* 2^62 f32 elements fit int64 but their bytes do not fit uint64. */
    v = make_v3();
    patch_u64(v.p, v.L.dim_at[0][0], (uint64_t)1 << 62);
    patch_u64(v.p, v.L.dim_at[0][1], 1);
    EXPECT_FAIL(v.p, v.n, LLM_STATUS_BAD_FORMAT, "byte size", "byte size overflow");
    free(v.p);
    /* Large but representable: the data is simply not in the file. */
    bad_u64(f_dim00, (uint64_t)1 << 40, LLM_STATUS_BAD_FORMAT, "past the end", "huge tensor");

    bad_u32(f_type0, 200, LLM_STATUS_BAD_FORMAT, "unknown tensor type id 200", "type 200");
    bad_u32(f_type0, 4, LLM_STATUS_BAD_FORMAT, "unknown tensor type id 4", "type 4 (removed)");
    bad_u32(f_type0, UINT32_MAX, LLM_STATUS_BAD_FORMAT, "unknown tensor type", "type 2^32-1");
    bad_u64(f_dim20, 48, LLM_STATUS_BAD_FORMAT, "block size", "q8_0 ne[0] = 48");
    bad_u32(f_type0, TYPE_Q8_0, LLM_STATUS_BAD_FORMAT, "block size", "q8_0 with ne[0] = 4");
}

static void test_tensor_data(void) {
    variant v = make_v3();
    patch_u64(v.p, v.L.offset_at[1], v.L.offset[1] + 1);
    EXPECT_FAIL(v.p, v.n, LLM_STATUS_BAD_FORMAT, "not a multiple of the alignment",
                "misaligned offset");
    free(v.p);
    v = make_v3();
    patch_u64(v.p, v.L.offset_at[1], v.L.offset[1] + 32);  /* aligned to 32, not to 64 */
    EXPECT_FAIL(v.p, v.n, LLM_STATUS_BAD_FORMAT, "alignment 64", "offset aligned to 32 only");
    free(v.p);

    bad_u64(f_offset3, 64 * 100, LLM_STATUS_BAD_FORMAT, "past the end", "data beyond the end");
    bad_u64(f_offset3, (uint64_t)1 << 63, LLM_STATUS_BAD_FORMAT, "past the end",
            "offset 2^63");
    bad_u64(f_offset3, UINT64_MAX - 63, LLM_STATUS_BAD_FORMAT, "past the end",
            "offset near 2^64");
    bad_u64(f_offset1, (uint64_t)-64 & ~(uint64_t)63, LLM_STATUS_BAD_FORMAT, "past the end",
            "offset wraps");

    options o = {.version = 3, .alignment = 64, .dup_tensor = true};
    v = make(&o);
    EXPECT_FAIL(v.p, v.n, LLM_STATUS_BAD_FORMAT, "duplicate tensor name 'norm.weight'",
                "duplicate tensor");
    free(v.p);
}

/* ---------------------------------------------------------------------------------------------
 * Files on disk
 * ------------------------------------------------------------------------------------------ */

static void test_files(void) {
    options o = {.version = 3, .alignment = 64};
    layout L;
    size_t size;
    uint8_t *bytes = build(&o, &L, &size);

    char path[] = "/tmp/test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) {
        free(bytes);
        return;
    }
    CHECK(write(fd, bytes, size) == (ssize_t)size);
    close(fd);

    for (int mode = 0; mode < 2; mode++) {
        gguf_file *f = NULL;
        int32_t st = gguf_open(path, mode == 0, &f);
        CHECK(st == LLM_STATUS_OK);
        if (st != LLM_STATUS_OK) fprintf(stderr, "  %s\n", llm_last_error());
        if (!f) continue;
        CHECK(f->size == size && memcmp(f->base, bytes, size) == 0);
        check_scalars(f);
        check_arrays(f);
        check_tensors(f, &L, 64);
        /* Both the mapping and the read buffer keep the file's alignment in memory. */
        for (uint64_t t = 0; t < f->n_tensors; t++) {
            CHECK((uintptr_t)f->tensors[t].data % 32 == 0);
        }
        gguf_close(f);
    }

    /* A truncated file on disk fails like a truncated buffer. */
    CHECK(truncate(path, (off_t)(size - 1)) == 0);
    gguf_file *f = (gguf_file *)1;
    CHECK(gguf_open(path, true, &f) == LLM_STATUS_BAD_FORMAT && f == NULL);
    CHECK(truncate(path, 0) == 0);
    f = (gguf_file *)1;
    CHECK(gguf_open(path, true, &f) == LLM_STATUS_BAD_FORMAT && f == NULL);
    CHECK(strstr(llm_last_error(), "empty") != NULL);
    f = (gguf_file *)1;
    CHECK(gguf_open(path, false, &f) == LLM_STATUS_BAD_FORMAT && f == NULL);
    unlink(path);

    f = (gguf_file *)1;
    CHECK(gguf_open(path, true, &f) == LLM_STATUS_IO && f == NULL);
    CHECK(strstr(llm_last_error(), path) != NULL);
    f = (gguf_file *)1;
    CHECK(gguf_open("/nonexistent/dir/model.gguf", false, &f) == LLM_STATUS_IO && f == NULL);
    CHECK(strstr(llm_last_error(), "cannot open") != NULL);

    char dir[] = "/tmp/test_gguf_dir_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    for (int mode = 0; mode < 2; mode++) {
        f = (gguf_file *)1;
        CHECK(gguf_open(dir, mode == 0, &f) == LLM_STATUS_IO && f == NULL);
        CHECK(strstr(llm_last_error(), "directory") != NULL);
    }
    rmdir(dir);

    f = (gguf_file *)1;
    CHECK(gguf_open(NULL, true, &f) == LLM_STATUS_INVALID_ARGUMENT && f == NULL);
    CHECK(gguf_open_buffer(NULL, 10, &f) == LLM_STATUS_INVALID_ARGUMENT && f == NULL);
    CHECK(gguf_open_buffer(bytes, 0, &f) == LLM_STATUS_BAD_FORMAT && f == NULL);
    free(bytes);
}

int main(void) {
    test_valid(3, 64);
    test_valid(2, 0);
    test_valid(3, 0);
    test_valid(3, 128);
    test_minimal();
    test_truncation();
    test_header();
    test_metadata();
    test_tensor_infos();
    test_tensor_data();
    test_files();
    printf("test_gguf: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
