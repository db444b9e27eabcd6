/* state.h -- byte streams for state save/restore. A writer with a NULL buffer only counts,
 * so the same code computes sizes and writes. A reader never reads past its end: the first
 * overrun marks it failed and every later read fails too. */
#ifndef LLM_STATE_H
#define LLM_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct state_writer {
    uint8_t *buf;     /* NULL: count only */
    size_t cap;
    size_t n;         /* bytes written (or that would have been) */
} state_writer;

static inline void sw_write(state_writer *w, const void *p, size_t n) {
    if (w->buf && w->n + n <= w->cap) memcpy(w->buf + w->n, p, n);
    w->n += n;
}

static inline void sw_u32(state_writer *w, uint32_t v) { sw_write(w, &v, sizeof v); }
static inline void sw_i32(state_writer *w, int32_t v) { sw_write(w, &v, sizeof v); }
static inline void sw_u64(state_writer *w, uint64_t v) { sw_write(w, &v, sizeof v); }

typedef struct state_reader {
    const uint8_t *buf;
    size_t size;
    size_t pos;
    bool failed;
} state_reader;

/* A pointer to the next n bytes, or NULL (and failed) if fewer are left. */
static inline const uint8_t *sr_take(state_reader *r, size_t n) {
    if (r->failed || n > r->size - r->pos) {
        r->failed = true;
        return NULL;
    }
    const uint8_t *p = r->buf + r->pos;
    r->pos += n;
    return p;
}

static inline bool sr_read(state_reader *r, void *out, size_t n) {
    const uint8_t *p = sr_take(r, n);
    if (p) memcpy(out, p, n);
    return p != NULL;
}

static inline uint32_t sr_u32(state_reader *r) { uint32_t v = 0; sr_read(r, &v, sizeof v); return v; }
static inline int32_t sr_i32(state_reader *r) { int32_t v = 0; sr_read(r, &v, sizeof v); return v; }
static inline uint64_t sr_u64(state_reader *r) { uint64_t v = 0; sr_read(r, &v, sizeof v); return v; }

/* A 64-bit hash of a byte string (checksums, fingerprints); h is the running value, start
 * with STATE_HASH_SEED. */
#define STATE_HASH_SEED 0x9e3779b97f4a7c15ull
uint64_t state_hash(uint64_t h, const void *data, size_t n);

#endif
