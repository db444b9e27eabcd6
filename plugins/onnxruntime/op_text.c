/* Tokenize (strings -> ids) and Detokenize (ids -> strings): stateless, they only read the
 * model's vocabulary, so concurrent runs need no lock. */
#include "ort_util.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Tokenize
 *   input  0 text     string [batch]
 *   output 0 ids      int64  [batch, max_len]   (rows padded with pad_id)
 *   output 1 lengths  int64  [batch]
 *   attrs: model_path, add_bos (1), parse_special (1), pad_id (0)
 * ------------------------------------------------------------------------------------------ */

typedef struct tokenize_kernel {
    ort_kernel_head head;
    llm_model *model;
    bool add_bos, parse_special;
    int64_t pad_id;
} tokenize_kernel;

static void tokenize_destroy(void *p) {
    tokenize_kernel *k = p;
    ort_model_release(k->model);
    free(k);
}

static OrtStatus *tokenize_create(const OrtApi *api, const OrtKernelInfo *info, void **out) {
    static const char op[] = "Tokenize";
    tokenize_kernel *k = calloc(1, sizeof *k);
    if (!k) return ort_fail(api, ORT_FAIL, op, "out of memory");
    int64_t add_bos, parse_special;
    OrtStatus *st;
    if ((st = ort_attr_int(api, info, op, "add_bos", 1, 0, 1, &add_bos)) ||
        (st = ort_attr_int(api, info, op, "parse_special", 1, 0, 1, &parse_special)) ||
        (st = ort_attr_int(api, info, op, "pad_id", 0, INT64_MIN, INT64_MAX, &k->pad_id)) ||
        (st = ort_attr_model(api, info, op, true, &k->model))) {
        free(k);
        return st;
    }
    k->add_bos = add_bos != 0;
    k->parse_special = parse_special != 0;
    *out = k;
    return NULL;
}

/* Tokenizes text[0..n) into a malloc'd array; *n_tokens gets its length. */
static OrtStatus *tokenize_one(const OrtApi *api, const tokenize_kernel *k, const char *text,
                               size_t n, llm_token **tokens, int32_t *n_tokens) {
    static const char op[] = "Tokenize";
    *tokens = NULL;
    if (n >= INT32_MAX / 2) return ort_fail(api, ORT_INVALID_ARGUMENT, op, "text too long");
    int32_t cap = (int32_t)n + 8;
    for (int attempt = 0; attempt < 2; attempt++) {
        llm_token *buf = malloc((size_t)cap * sizeof *buf);
        if (!buf) return ort_fail(api, ORT_FAIL, op, "out of memory");
        int32_t got = llm_tokenize(k->model, text, (int32_t)n, buf, cap, k->add_bos,
                                   k->parse_special);
        if (got == LLM_INT32_ERROR) {
            free(buf);
            return ort_fail_llm(api, op, LLM_STATUS_INVALID_ARGUMENT, "cannot tokenize");
        }
        if (got >= 0) {
            *tokens = buf;
            *n_tokens = got;
            return NULL;
        }
        free(buf);
        cap = -got;
    }
    return ort_fail(api, ORT_FAIL, op, "token count unstable");
}

static OrtStatus *tokenize_compute(void *p, OrtKernelContext *ctx) {
    tokenize_kernel *k = p;
    const OrtApi *api = k->head.api;
    const char *op = k->head.op->name;
    ort_tensor text;
    OrtStatus *st = ort_input(api, ctx, op, 0, "text", ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING, 1, 1,
                              false, &text);
    if (st) return st;
    const size_t batch = text.count;
    char *bytes = NULL;
    size_t *offsets = NULL;
    if ((st = ort_input_strings(api, op, &text, &bytes, &offsets))) return st;
    llm_token **rows = calloc(batch ? batch : 1, sizeof *rows);
    int32_t *lens = calloc(batch ? batch : 1, sizeof *lens);
    if (!rows || !lens) st = ort_fail(api, ORT_FAIL, op, "out of memory");
    int64_t width = 0;
    for (size_t b = 0; b < batch && !st; b++) {
        st = tokenize_one(api, k, bytes + offsets[b], offsets[b + 1] - offsets[b], &rows[b],
                          &lens[b]);
        if (!st && lens[b] > width) width = lens[b];
    }
    if (!st) {
        int64_t dims[2] = {(int64_t)batch, width};
        void *ids = NULL, *lengths = NULL;
        st = ort_output(api, ctx, op, 0, dims, 2, &ids);
        if (!st) st = ort_output(api, ctx, op, 1, dims, 1, &lengths);
        for (size_t b = 0; b < batch && !st; b++) {
            if (ids) {
                int64_t *row = (int64_t *)ids + b * (size_t)width;
                for (int64_t j = 0; j < width; j++) row[j] = j < lens[b] ? rows[b][j] : k->pad_id;
            }
            if (lengths) ((int64_t *)lengths)[b] = lens[b];
        }
    }
    for (size_t b = 0; rows && b < batch; b++) free(rows[b]);
    free(rows);
    free(lens);
    free(bytes);
    free(offsets);
    return st;
}

static const ONNXTensorElementDataType TOKENIZE_IN[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING};
static const ONNXTensorElementDataType TOKENIZE_OUT[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
                                                         ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64};

const llm_ort_op llm_ort_op_tokenize = {
    .name = "Tokenize",
    .n_inputs = 1, .n_required_inputs = 1, .input_types = TOKENIZE_IN,
    .n_outputs = 2, .n_required_outputs = 1, .output_types = TOKENIZE_OUT,
    .create = tokenize_create, .compute = tokenize_compute, .destroy = tokenize_destroy,
};

/* ---------------------------------------------------------------------------------------------
 * Detokenize
 *   input  0 ids      int64  [batch, len]
 *   input  1 lengths  int64  [batch]   optional: row b uses ids[b, :lengths[b]]
 *   output 0 text     string [batch]
 *   attrs: model_path, mode ("text" | "pieces"), remove_special (0), unparse_special (0)
 *   "text": the tokenizer's decoder (llm_detokenize, as Model.detokenize);
 *   "pieces": the token pieces concatenated (llm_token_to_piece, the text LLM.generate
 *   streams for generated tokens).
 * ------------------------------------------------------------------------------------------ */

typedef struct detokenize_kernel {
    ort_kernel_head head;
    llm_model *model;
    bool pieces, remove_special, unparse_special;
} detokenize_kernel;

static void detokenize_destroy(void *p) {
    detokenize_kernel *k = p;
    ort_model_release(k->model);
    free(k);
}

static OrtStatus *detokenize_create(const OrtApi *api, const OrtKernelInfo *info, void **out) {
    static const char op[] = "Detokenize";
    detokenize_kernel *k = calloc(1, sizeof *k);
    if (!k) return ort_fail(api, ORT_FAIL, op, "out of memory");
    int64_t remove_special, unparse_special;
    char *mode = NULL;
    OrtStatus *st;
    if ((st = ort_attr_int(api, info, op, "remove_special", 0, 0, 1, &remove_special)) ||
        (st = ort_attr_int(api, info, op, "unparse_special", 0, 0, 1, &unparse_special)) ||
        (st = ort_attr_string(api, info, op, "mode", "text", &mode))) {
        free(k);
        return st;
    }
    if (strcmp(mode, "text") != 0 && strcmp(mode, "pieces") != 0) {
        st = ort_fail(api, ORT_INVALID_ARGUMENT, op,
                      "attribute mode = '%s' is unknown (use 'text' or 'pieces')", mode);
    }
    k->pieces = strcmp(mode, "pieces") == 0;
    free(mode);
    if (!st) st = ort_attr_model(api, info, op, true, &k->model);
    if (st) {
        free(k);
        return st;
    }
    k->remove_special = remove_special != 0;
    k->unparse_special = unparse_special != 0;
    *out = k;
    return NULL;
}

/* Appends the bytes of one call that returns "bytes written or minus the size needed". */
typedef struct text_buf {
    char *data;
    size_t len, cap;
} text_buf;

static bool text_reserve(text_buf *t, size_t extra) {
    if (t->len + extra <= t->cap) return true;
    size_t cap = t->cap ? t->cap : 64;
    while (cap < t->len + extra) cap *= 2;
    char *data = realloc(t->data, cap);
    if (!data) return false;
    t->data = data;
    t->cap = cap;
    return true;
}

static OrtStatus *detokenize_row(const OrtApi *api, const detokenize_kernel *k,
                                 const llm_token *tokens, int32_t n, text_buf *out) {
    static const char op[] = "Detokenize";
    out->len = 0;
    if (k->pieces) {
        for (int32_t i = 0; i < n; i++) {
            int32_t need = 16;
            for (int attempt = 0; attempt < 2; attempt++) {
                if (!text_reserve(out, (size_t)need)) {
                    return ort_fail(api, ORT_FAIL, op, "out of memory");
                }
                int32_t got = llm_token_to_piece(k->model, tokens[i], out->data + out->len,
                                                 (int32_t)(out->cap - out->len),
                                                 k->unparse_special);
                if (got == LLM_INT32_ERROR) {
                    return ort_fail_llm(api, op, LLM_STATUS_INVALID_ARGUMENT, "cannot render a token");
                }
                if (got >= 0) {
                    out->len += (size_t)got;
                    break;
                }
                need = -got;
            }
        }
        return NULL;
    }
    size_t need = 16 + 8 * (size_t)n;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (need > INT32_MAX || !text_reserve(out, need)) {
            return ort_fail(api, ORT_FAIL, op, "out of memory");
        }
        int32_t got = llm_detokenize(k->model, tokens, n, out->data, (int32_t)out->cap,
                                     k->remove_special, k->unparse_special);
        if (got == LLM_INT32_ERROR) {
            return ort_fail_llm(api, op, LLM_STATUS_INVALID_ARGUMENT, "cannot detokenize");
        }
        if (got >= 0) {
            out->len = (size_t)got;
            return NULL;
        }
        need = (size_t)-(int64_t)got;
    }
    return ort_fail(api, ORT_FAIL, op, "text size unstable");
}

static OrtStatus *detokenize_compute(void *p, OrtKernelContext *ctx) {
    detokenize_kernel *k = p;
    const OrtApi *api = k->head.api;
    const char *op = k->head.op->name;
    ort_tensor ids, lengths;
    OrtStatus *st;
    if ((st = ort_input(api, ctx, op, 0, "ids", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, 2, 2, false,
                        &ids)) ||
        (st = ort_input(api, ctx, op, 1, "lengths", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, 0, 8,
                        true, &lengths))) {
        return st;
    }
    const int64_t batch = ids.dims[0], width = ids.dims[1];
    int32_t *lens = malloc((size_t)(batch ? batch : 1) * sizeof *lens);
    llm_token *row = malloc((size_t)(width ? width : 1) * sizeof *row);
    char **texts = calloc((size_t)(batch ? batch : 1), sizeof *texts);
    text_buf buf = {0};
    if (!lens || !row || !texts) st = ort_fail(api, ORT_FAIL, op, "out of memory");
    if (!st) st = ort_lengths(api, op, "lengths", &lengths, batch, width, 0, lens);
    if (!st) st = ort_check_ids(api, op, "ids", ids.data, batch, width, lens);
    for (int64_t b = 0; b < batch && !st; b++) {
        const int64_t *src = (const int64_t *)ids.data + b * width;
        for (int32_t j = 0; j < lens[b]; j++) row[j] = (llm_token)src[j];
        st = detokenize_row(api, k, row, lens[b], &buf);
        if (!st) {
            texts[b] = ort_utf8_clean(buf.data ? buf.data : "", buf.len);
            if (!texts[b]) st = ort_fail(api, ORT_FAIL, op, "out of memory");
        }
    }
    if (!st) {
        int64_t dims[1] = {batch};
        st = ort_output_strings(api, ctx, op, 0, dims, 1, (const char *const *)texts,
                                (size_t)batch);
    }
    for (int64_t b = 0; texts && b < batch; b++) free(texts[b]);
    free(texts);
    free(buf.data);
    free(row);
    free(lens);
    return st;
}

static const ONNXTensorElementDataType DETOKENIZE_IN[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
                                                          ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64};
static const ONNXTensorElementDataType DETOKENIZE_OUT[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING};

const llm_ort_op llm_ort_op_detokenize = {
    .name = "Detokenize",
    .n_inputs = 2, .n_required_inputs = 1, .input_types = DETOKENIZE_IN,
    .n_outputs = 1, .n_required_outputs = 1, .output_types = DETOKENIZE_OUT,
    .create = detokenize_create, .compute = detokenize_compute, .destroy = detokenize_destroy,
};
