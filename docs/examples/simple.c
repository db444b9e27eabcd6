/* simple.c -- load a GGUF model, decode a prompt and generate greedily, using only libllm.h.
 *
 *   simple MODEL.gguf "PROMPT" [N_PREDICT]
 *
 * Prints the generated text to stdout. Exit status 0 on success. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libllm.h"

static int fail(const char *what, int32_t status) {
    fprintf(stderr, "simple: %s: %s (%s)\n", what, llm_last_error(), llm_status_str(status));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT [N_PREDICT]\n", argv[0]);
        return 2;
    }
    int n_predict = argc > 3 ? atoi(argv[3]) : 32;

    llm_model *model = NULL;
    int32_t st = llm_model_load(argv[1], NULL, &model);
    if (st != LLM_STATUS_OK) return fail("loading the model", st);

    llm_context_params cparams;
    llm_context_default_params(&cparams);
    cparams.n_ctx = 512;
    llm_context *ctx = NULL;
    st = llm_context_create(model, &cparams, &ctx);
    if (st != LLM_STATUS_OK) {
        llm_model_free(model);
        return fail("creating the context", st);
    }

    /* tokenize: ask for the size first, then fill */
    const char *prompt = argv[2];
    int32_t n_prompt = -llm_tokenize(model, prompt, (int32_t)strlen(prompt), NULL, 0, true, false);
    llm_token *tokens = malloc(sizeof(llm_token) * (size_t)(n_prompt + n_predict));
    llm_tokenize(model, prompt, (int32_t)strlen(prompt), tokens, n_prompt, true, false);

    llm_sampler *sampler = NULL;
    llm_sampler_chain_create(&sampler);
    llm_sampler_add_greedy(sampler);

    llm_batch *batch = llm_batch_init(n_prompt > 1 ? n_prompt : 1, 1);
    int rc = 0;
    int32_t n_past = 0;
    for (int i = 0; i < n_prompt; i++) {
        batch->token[i] = tokens[i];
        batch->pos[i] = i;
        batch->n_seq_id[i] = 1;
        batch->seq_id[i][0] = 0;
        batch->logits[i] = i == n_prompt - 1;
    }
    batch->n_tokens = n_prompt;
    for (int i = 0; i < n_predict; i++) {
        st = llm_decode(ctx, batch);
        if (st != LLM_STATUS_OK) {
            rc = fail("decoding", st);
            break;
        }
        n_past += batch->n_tokens;
        llm_token next;
        st = llm_sampler_sample(sampler, ctx, -1, &next);
        if (st != LLM_STATUS_OK) {
            rc = fail("sampling", st);
            break;
        }
        if (llm_token_is_eog(model, next)) break;
        char piece[256];
        int32_t n = llm_token_to_piece(model, next, piece, sizeof piece, false);
        if (n > 0) fwrite(piece, 1, (size_t)n, stdout);
        batch->token[0] = next;
        batch->pos[0] = n_past;
        batch->logits[0] = 1;
        batch->n_tokens = 1;
    }
    fputc('\n', stdout);

    llm_batch_free(batch);
    llm_sampler_free(sampler);
    free(tokens);
    llm_context_free(ctx);
    llm_model_free(model);
    return rc;
}
