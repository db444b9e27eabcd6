/* fuzz_gguf.c -- libFuzzer target for the GGUF reader.
 *
 * Opens the input with gguf_open_buffer. A rejected input must leave no file and a message; an
 * accepted one must keep every promise of gguf.h, which is checked by walking all of it: every
 * key and tensor is looked up, every getter called, every string and every tensor's first and
 * last byte read (ASan flags any pointer outside the input), and every value rendered as text.
 * Build and run: tests/fuzz/run_fuzz.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "libllm.h"

static volatile uint8_t g_sink;

#define REQUIRE(cond)                                                              \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "fuzz_gguf: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                               \
        }                                                                          \
    } while (0)

static void touch(const void *p, uint64_t n) {
    if (n == 0) return;
    const uint8_t *b = p;
    g_sink ^= b[0];
    g_sink ^= b[n - 1];
}

static void touch_all(const void *p, uint64_t n) {
    const uint8_t *b = p;
    for (uint64_t i = 0; i < n; i++) g_sink ^= b[i];
}

static bool inside(const gguf_file *f, const void *p, uint64_t n) {
    const uint8_t *b = p;
    return b >= f->base && (uint64_t)(b - f->base) <= f->size &&
           n <= f->size - (uint64_t)(b - f->base);
}

static void check_text(const gguf_kv *kv) {
    char small[8];
    int full = gguf_kv_to_text(kv, NULL, 0);
    int n = gguf_kv_to_text(kv, small, sizeof small);
    REQUIRE(n == full);
    if (n < 0) return;
    /* NUL-terminated right after what fit (a string value may itself contain NUL bytes) */
    REQUIRE(small[(size_t)n < sizeof small ? (size_t)n : sizeof small - 1] == '\0');
    if ((size_t)n < 4096) {
        char big[4096];
        REQUIRE(gguf_kv_to_text(kv, big, sizeof big) == n);
    }
}

static void check_array(const gguf_file *f, const gguf_kv *kv) {
    uint32_t type;
    uint64_t n;
    REQUIRE(gguf_get_arr(f, kv->key, &type, &n));
    REQUIRE(type == kv->arr_type && n == kv->arr_n && type != GGUF_TYPE_ARRAY);
    double d;
    int64_t i;
    if (type == GGUF_TYPE_STRING) {
        REQUIRE(!gguf_arr_num(kv, 0, &d));
        REQUIRE(n <= f->size / 8);  /* each string takes at least its length prefix */
        gguf_str *strs = malloc((n ? n : 1) * sizeof *strs);
        REQUIRE(strs != NULL);
        REQUIRE(!gguf_arr_strs(kv, strs, n + 1));
        REQUIRE(gguf_arr_strs(kv, strs, n));
        for (uint64_t k = 0; k < n; k++) {
            REQUIRE(inside(f, strs[k].ptr, strs[k].len));
            touch(strs[k].ptr, strs[k].len);
        }
        free(strs);
        return;
    }
    size_t esize = gguf_type_size(type);
    REQUIRE(esize > 0 && inside(f, kv->data, n * esize));
    REQUIRE(!gguf_arr_strs(kv, NULL, n));
    bool numeric = type != GGUF_TYPE_BOOL;
    REQUIRE(!gguf_arr_num(kv, n, &d) && !gguf_arr_int(kv, n, &i));
    for (uint64_t k = 0; k < n && k < 64; k++) {
        REQUIRE(gguf_arr_num(kv, k, &d) == numeric);
        (void)gguf_arr_int(kv, k, &i);
    }
    if (n > 0) {
        REQUIRE(gguf_arr_num(kv, n - 1, &d) == numeric);
        (void)gguf_arr_int(kv, n - 1, &i);
    }
    if (type == GGUF_TYPE_BOOL) {
        for (uint64_t k = 0; k < n; k++) REQUIRE(kv->data[k] <= 1);
    }
}

static void check_kv(const gguf_file *f, uint64_t idx) {
    const gguf_kv *kv = &f->kv[idx];
    size_t key_len = strlen(kv->key);
    REQUIRE(key_len > 0);
    REQUIRE(gguf_find_key(f, kv->key) == (int64_t)idx);  /* keys are unique */
    REQUIRE(kv->type < GGUF_TYPE_COUNT);

    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f32;
    bool b;
    gguf_str s;
    bool has_u64 = gguf_get_u64(f, kv->key, &u64);
    if (gguf_get_u32(f, kv->key, &u32)) REQUIRE(has_u64 && u64 == u32);
    if (gguf_get_i32(f, kv->key, &i32) && i32 >= 0) REQUIRE(has_u64 && u64 == (uint64_t)i32);
    REQUIRE(gguf_get_f32(f, kv->key, &f32) ==
            (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64));
    REQUIRE(gguf_get_bool(f, kv->key, &b) == (kv->type == GGUF_TYPE_BOOL));
    if (kv->type == GGUF_TYPE_BOOL) REQUIRE(kv->data[0] <= 1);
    REQUIRE(gguf_get_str(f, kv->key, &s) == (kv->type == GGUF_TYPE_STRING));
    if (kv->type == GGUF_TYPE_STRING) {
        REQUIRE(inside(f, s.ptr, s.len));
        touch(s.ptr, s.len);
    } else if (kv->type != GGUF_TYPE_ARRAY) {
        REQUIRE(inside(f, kv->data, gguf_type_size(kv->type)));
        touch_all(kv->data, gguf_type_size(kv->type));
    }
    if (kv->type == GGUF_TYPE_ARRAY) {
        check_array(f, kv);
    } else {
        REQUIRE(!gguf_get_arr(f, kv->key, NULL, NULL));
    }
    check_text(kv);
}

static void check_tensor(const gguf_file *f, uint64_t idx) {
    const gguf_tensor *t = &f->tensors[idx];
    REQUIRE(strlen(t->name) > 0);
    REQUIRE(gguf_find_tensor(f, t->name) == (int64_t)idx);  /* names are unique */
    REQUIRE(gguf_get_tensor(f, t->name) == t);
    REQUIRE(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS);
    for (int d = 0; d < GGUF_MAX_DIMS; d++) REQUIRE(t->ne[d] >= 1);
    REQUIRE(t->offset % f->alignment == 0);
    REQUIRE(t->n_bytes > 0);
    REQUIRE((const uint8_t *)t->data == f->base + f->data_offset + t->offset);
    REQUIRE(inside(f, t->data, t->n_bytes));
    touch(t->data, t->n_bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = (gguf_file *)&g_sink;
    int32_t status = gguf_open_buffer(data, size, &f);
    if (status != LLM_STATUS_OK) {
        REQUIRE(status < 0 && f == NULL);
        REQUIRE(llm_last_error()[0] != '\0');
        return 0;
    }
    REQUIRE(f != NULL && f->base == data && f->size == size);
    REQUIRE(f->version == 2 || f->version == 3);
    REQUIRE(f->alignment > 0 && (f->alignment & (f->alignment - 1)) == 0);
    REQUIRE(f->data_offset <= f->size);
    for (uint64_t i = 0; i < f->n_kv; i++) check_kv(f, i);
    for (uint64_t i = 0; i < f->n_tensors; i++) check_tensor(f, i);
    /* A lookup that misses (or, if the fuzzer planted the name, hits it exactly). */
    int64_t k = gguf_find_key(f, "general.architecture");
    REQUIRE(k < 0 || strcmp(f->kv[k].key, "general.architecture") == 0);
    const gguf_tensor *t = gguf_get_tensor(f, "output.weight");
    REQUIRE(t == NULL || strcmp(t->name, "output.weight") == 0);
    gguf_close(f);
    return 0;
}
