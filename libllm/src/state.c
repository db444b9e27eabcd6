/* state.c -- saving and restoring a context's state (whole, or one sequence) to bytes and
 * files.
 *
 * Format (little-endian, as the host writes it):
 *   "LLMSTATE"  u32 version  u32 kind (1 context, 2 sequence)  u64 model fingerprint
 *   u64 payload bytes  u64 payload hash  | payload
 * payload = the memory's state, then for a context: u32 n_batch_last, u32 n_outputs,
 *   i32 output_row[n_batch_last], f32 logits[n_outputs][n_vocab].
 * Loading checks everything (header, hash, fingerprint, the memory's dry run, the outputs)
 * before it changes anything. */
#include "state.h"

#include <errno.h>
#include <stdio.h>

#include "context.h"

#define STATE_MAGIC "LLMSTATE"
#define STATE_VERSION 1u
#define STATE_HEADER_BYTES 40u

enum { KIND_CONTEXT = 1, KIND_SEQUENCE = 2 };

uint64_t state_hash(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    const uint64_t mul = 0xff51afd7ed558ccdull;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * mul;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t tail = (uint64_t)n << 56;
    for (size_t i = 0; i < n; i++) tail |= (uint64_t)p[i] << (8 * i);
    h = (h ^ tail) * mul;
    return h ^ (h >> 31);
}

/* The seq_ entry points take a real sequence id; inside, seq < 0 means the whole context. */
static int32_t negative_seq(llm_seq_id seq) {
    llm_error_clear();
    return llm_error(LLM_STATUS_INVALID_ARGUMENT, "sequence id %d is negative", seq);
}

/* ---- writing ---- */

static void write_payload(const llm_context *ctx, state_writer *w, llm_seq_id seq) {
    ctx->memory->ops->state_write(ctx->memory, w, seq);
    if (seq >= 0) return;
    uint32_t n_vocab = ctx->model->hp.n_vocab;
    sw_u32(w, (uint32_t)ctx->n_batch_last);
    sw_u32(w, (uint32_t)ctx->n_outputs);
    sw_write(w, ctx->output_row, sizeof(int32_t) * (size_t)ctx->n_batch_last);
    sw_write(w, ctx->logits, sizeof(float) * (size_t)ctx->n_outputs * n_vocab);
}

static size_t state_bytes(const llm_context *ctx, llm_seq_id seq) {
    state_writer w = {0};
    write_payload(ctx, &w, seq);
    return STATE_HEADER_BYTES + w.n;
}

static int32_t save(const llm_context *ctx, llm_seq_id seq, uint8_t *dst, size_t size,
                    size_t *written) {
    llm_error_clear();
    if (written) *written = 0;
    if (!ctx || !dst) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "NULL argument");
    if (seq >= 0 && (uint32_t)seq >= ctx->params.n_seq_max) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "sequence id %d is outside [0, %u)", seq,
                         ctx->params.n_seq_max);
    }
    size_t need = state_bytes(ctx, seq);
    if (size < need) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "the buffer holds %zu bytes, the state "
                         "needs %zu", size, need);
    }
    state_writer w = {dst + STATE_HEADER_BYTES, size - STATE_HEADER_BYTES, 0};
    write_payload(ctx, &w, seq);
    state_writer h = {dst, STATE_HEADER_BYTES, 0};
    sw_write(&h, STATE_MAGIC, 8);
    sw_u32(&h, STATE_VERSION);
    sw_u32(&h, seq < 0 ? KIND_CONTEXT : KIND_SEQUENCE);
    sw_u64(&h, ctx->model->fingerprint);
    sw_u64(&h, w.n);
    sw_u64(&h, state_hash(STATE_HASH_SEED, w.buf, w.n));
    if (written) *written = need;
    return LLM_STATUS_OK;
}

/* ---- reading ---- */

/* Checks the header and the hash; on success r reads the payload. */
static int32_t open_payload(const llm_context *ctx, const uint8_t *src, size_t size, int kind,
                            state_reader *r) {
    if (!src || size < STATE_HEADER_BYTES) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the state is truncated (%zu bytes)", size);
    }
    state_reader h = {src, STATE_HEADER_BYTES, 0, false};
    const uint8_t *magic = sr_take(&h, 8);
    uint32_t version = sr_u32(&h), got_kind = sr_u32(&h);
    uint64_t fingerprint = sr_u64(&h), n = sr_u64(&h), hash = sr_u64(&h);
    if (memcmp(magic, STATE_MAGIC, 8) != 0) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "not a libllm state (bad magic)");
    }
    if (version != STATE_VERSION) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "state format version %u, this libllm reads %u",
                         version, STATE_VERSION);
    }
    if (got_kind != (uint32_t)kind) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "this is a %s state, expected a %s state",
                         got_kind == KIND_SEQUENCE ? "sequence" : "context",
                         kind == KIND_SEQUENCE ? "sequence" : "context");
    }
    if (fingerprint != ctx->model->fingerprint) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the state was saved from another model");
    }
    if (n != size - STATE_HEADER_BYTES) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the state has %zu payload bytes, its header "
                         "says %llu", size - STATE_HEADER_BYTES, (unsigned long long)n);
    }
    if (state_hash(STATE_HASH_SEED, src + STATE_HEADER_BYTES, (size_t)n) != hash) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the state is corrupted (checksum mismatch)");
    }
    *r = (state_reader){src + STATE_HEADER_BYTES, (size_t)n, 0, false};
    return LLM_STATUS_OK;
}

/* Validates the outputs section (apply false) or installs it (apply true). */
static int32_t read_outputs(llm_context *ctx, state_reader *r, bool apply) {
    uint32_t n_batch = sr_u32(r), n_outputs = sr_u32(r);
    if (r->failed || n_batch > ctx->params.n_batch || n_outputs > n_batch) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the state's outputs do not fit this context "
                         "(batch %u, outputs %u, n_batch %u)", n_batch, n_outputs,
                         ctx->params.n_batch);
    }
    const uint8_t *rows = sr_take(r, sizeof(int32_t) * n_batch);
    const uint8_t *logits = sr_take(r, sizeof(float) * (size_t)n_outputs * ctx->model->hp.n_vocab);
    if (!rows || !logits || r->pos != r->size) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the state's outputs section is malformed");
    }
    int32_t expect = 0;
    for (uint32_t i = 0; i < n_batch; i++) {
        int32_t row;
        memcpy(&row, rows + 4 * i, 4);
        if (row != -1 && row != expect) {
            return llm_error(LLM_STATUS_BAD_FORMAT, "the state's output map is invalid");
        }
        expect += row >= 0;
    }
    if ((uint32_t)expect != n_outputs) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the state's output map is invalid");
    }
    if (!apply) return context_reserve_outputs(ctx, (int32_t)n_outputs);
    memcpy(ctx->output_row, rows, sizeof(int32_t) * n_batch);
    memcpy(ctx->logits, logits, sizeof(float) * (size_t)n_outputs * ctx->model->hp.n_vocab);
    ctx->n_batch_last = (int32_t)n_batch;
    ctx->n_outputs = (int32_t)n_outputs;
    return LLM_STATUS_OK;
}

static int32_t load(llm_context *ctx, llm_seq_id seq, const uint8_t *src, size_t size) {
    llm_error_clear();
    if (!ctx) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "ctx must not be NULL");
    if (seq >= 0 && (uint32_t)seq >= ctx->params.n_seq_max) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "sequence id %d is outside [0, %u)", seq,
                         ctx->params.n_seq_max);
    }
    state_reader r;
    int32_t st = open_payload(ctx, src, size, seq < 0 ? KIND_CONTEXT : KIND_SEQUENCE, &r);
    if (st != LLM_STATUS_OK) return st;
    /* dry run over everything first */
    state_reader check = r;
    if ((st = ctx->memory->ops->state_read(ctx->memory, &check, seq, false)) != LLM_STATUS_OK) {
        return st;
    }
    if (seq < 0) {
        if ((st = read_outputs(ctx, &check, false)) != LLM_STATUS_OK) return st;
    } else if (check.pos != check.size) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the sequence state has trailing bytes");
    }
    /* then apply: the checks above guarantee these succeed, allocation aside */
    if ((st = ctx->memory->ops->state_read(ctx->memory, &r, seq, true)) != LLM_STATUS_OK) {
        return st;
    }
    return seq < 0 ? read_outputs(ctx, &r, true) : LLM_STATUS_OK;
}

LLM_API size_t llm_state_size(const llm_context *ctx) { return ctx ? state_bytes(ctx, -1) : 0; }

LLM_API int32_t llm_state_save(const llm_context *ctx, uint8_t *dst, size_t size,
                               size_t *written) {
    return save(ctx, -1, dst, size, written);
}

LLM_API int32_t llm_state_load(llm_context *ctx, const uint8_t *src, size_t size) {
    return load(ctx, -1, src, size);
}

LLM_API size_t llm_state_seq_size(const llm_context *ctx, llm_seq_id seq) {
    if (!ctx || seq < 0 || (uint32_t)seq >= ctx->params.n_seq_max) return 0;
    return state_bytes(ctx, seq);
}

LLM_API int32_t llm_state_seq_save(const llm_context *ctx, llm_seq_id seq, uint8_t *dst,
                                   size_t size, size_t *written) {
    return seq < 0 ? negative_seq(seq) : save(ctx, seq, dst, size, written);
}

LLM_API int32_t llm_state_seq_load(llm_context *ctx, llm_seq_id seq, const uint8_t *src,
                                   size_t size) {
    return seq < 0 ? negative_seq(seq) : load(ctx, seq, src, size);
}

/* ---- files ---- */

static int32_t save_file(const llm_context *ctx, llm_seq_id seq, const char *path) {
    llm_error_clear();
    if (!ctx || !path) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "NULL argument");
    if (seq >= 0 && (uint32_t)seq >= ctx->params.n_seq_max) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "sequence id %d is outside [0, %u)", seq,
                         ctx->params.n_seq_max);
    }
    size_t n = state_bytes(ctx, seq);
    uint8_t *buf = llm_malloc(n);
    if (!buf) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory (%zu bytes)", n);
    int32_t st = save(ctx, seq, buf, n, &n);
    if (st == LLM_STATUS_OK) {
        size_t len = strlen(path);
        char *tmp = llm_malloc(len + 5);
        if (!tmp) {
            llm_free(buf);
            return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory");
        }
        memcpy(tmp, path, len);
        memcpy(tmp + len, ".tmp", 5);
        FILE *f = fopen(tmp, "wb");
        bool ok = f && fwrite(buf, 1, n, f) == n;
        ok = f && fclose(f) == 0 && ok;
        if (!ok || rename(tmp, path) != 0) {
            st = llm_error(LLM_STATUS_IO, "cannot write '%s': %s", path, strerror(errno));
            remove(tmp);
        }
        llm_free(tmp);
    }
    llm_free(buf);
    return st;
}

static int32_t load_file(llm_context *ctx, llm_seq_id seq, const char *path) {
    llm_error_clear();
    if (!ctx || !path) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return llm_error(LLM_STATUS_IO, "cannot open '%s': %s", path, strerror(errno));
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return llm_error(LLM_STATUS_IO, "cannot read '%s'", path);
    }
    uint8_t *buf = llm_malloc((size_t)n);
    if (!buf) {
        fclose(f);
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory (%ld bytes)", n);
    }
    bool ok = fread(buf, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    int32_t st = ok ? load(ctx, seq, buf, (size_t)n)
                    : llm_error(LLM_STATUS_IO, "cannot read '%s'", path);
    llm_free(buf);
    return st;
}

LLM_API int32_t llm_state_save_file(const llm_context *ctx, const char *path) {
    return save_file(ctx, -1, path);
}
LLM_API int32_t llm_state_load_file(llm_context *ctx, const char *path) {
    return load_file(ctx, -1, path);
}
LLM_API int32_t llm_state_seq_save_file(const llm_context *ctx, llm_seq_id seq, const char *path) {
    return seq < 0 ? negative_seq(seq) : save_file(ctx, seq, path);
}
LLM_API int32_t llm_state_seq_load_file(llm_context *ctx, llm_seq_id seq, const char *path) {
    return seq < 0 ? negative_seq(seq) : load_file(ctx, seq, path);
}
