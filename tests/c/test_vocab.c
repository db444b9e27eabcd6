/* test_vocab.c -- unit tests of the SentencePiece ("llama") tokenizer on handmade vocabularies:
 * merge order (scores, ties), byte fallback (multi-byte and invalid UTF-8), <unk> runs, the
 * space prefix, special and user-defined tokens, UNUSED resegmentation, token_to_piece and
 * detokenize, buffer contracts, invalid ids, vocab_build / vocab_load validation, and a naive
 * O(n^2) BPE as an oracle on random strings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "libllm.h"
#include "util.h"
#include "vocab.h"

static int n_pass, n_fail;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (cond) {                                                                     \
            n_pass++;                                                                   \
        } else {                                                                        \
            n_fail++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
        }                                                                               \
    } while (0)

#define SP "\xe2\x96\x81" /* U+2581 */

/* ------------------------------------------------------------------------------------------
 * Building test vocabularies
 * ---------------------------------------------------------------------------------------- */

typedef struct piece_def {
    const char *text;
    float score;
    int32_t type;   /* 0: NORMAL */
} piece_def;

/* <unk> <s> </s>, then (with bytes) <0x00>..<0xFF>, then defs. */
static llm_vocab *make_vocab_ex(const piece_def *defs, int n_defs, bool bytes, bool prefix,
                                bool add_eos, int n_extra_unused) {
    int n = 3 + (bytes ? 256 : 0) + n_defs + n_extra_unused;
    const char **pieces = calloc((size_t)n, sizeof *pieces);
    float *scores = calloc((size_t)n, sizeof *scores);
    int32_t *types = calloc((size_t)n, sizeof *types);
    static char byte_names[256][8];
    int k = 0;
    pieces[k] = "<unk>"; types[k++] = VOCAB_TOKEN_UNKNOWN;
    pieces[k] = "<s>"; types[k++] = VOCAB_TOKEN_CONTROL;
    pieces[k] = "</s>"; types[k++] = VOCAB_TOKEN_CONTROL;
    if (bytes) {
        for (int b = 0; b < 256; b++) {
            snprintf(byte_names[b], sizeof byte_names[b], "<0x%02X>", b);
            pieces[k] = byte_names[b];
            types[k++] = VOCAB_TOKEN_BYTE;
        }
    }
    for (int i = 0; i < n_defs; i++) {
        pieces[k] = defs[i].text;
        scores[k] = defs[i].score;
        types[k++] = defs[i].type ? defs[i].type : VOCAB_TOKEN_NORMAL;
    }
    for (int i = 0; i < n_extra_unused; i++) {
        pieces[k] = "\x01\x02\x03\x04";   /* never formed from the test alphabets */
        scores[k] = 100.0f;
        types[k++] = VOCAB_TOKEN_UNUSED;
    }
    vocab_params p;
    vocab_params_default(&p);
    p.n_tokens = n;
    p.pieces = pieces;
    p.scores = scores;
    p.types = types;
    p.unk = 0;
    p.bos = 1;
    p.eos = 2;
    p.add_space_prefix = prefix;
    p.add_eos = add_eos;
    llm_vocab *v = NULL;
    int32_t st = vocab_build(&p, &v);
    if (st != LLM_STATUS_OK) fprintf(stderr, "vocab_build: %s\n", llm_last_error());
    free(pieces);
    free(scores);
    free(types);
    return v;
}

static llm_vocab *make_vocab(const piece_def *defs, int n_defs, bool bytes, bool prefix) {
    return make_vocab_ex(defs, n_defs, bytes, prefix, false, 0);
}

/* The id of a piece (tests only: a linear scan). */
static llm_token id_of(const llm_vocab *v, const char *text) {
    size_t n = strlen(text);
    for (llm_token t = 0; t < vocab_n_tokens(v); t++) {
        const char *s;
        uint32_t len;
        vocab_token_info(v, t, &s, &len, NULL, NULL);
        if (len == n && memcmp(s, text, n) == 0) return t;
    }
    fprintf(stderr, "no piece '%s' in the test vocabulary\n", text);
    return -100;
}

/* Tokenizes text and compares with the pieces listed in want (NULL-terminated). */
static bool expect_pieces(const llm_vocab *v, const char *text, size_t len, bool add_special,
                          bool parse_special, const char *const *want) {
    llm_token got[256];
    int32_t n = vocab_tokenize(v, text, (int32_t)len, got, 256, add_special, parse_special);
    int32_t nw = 0;
    while (want[nw]) nw++;
    bool ok = n == nw;
    for (int32_t i = 0; ok && i < n; i++) ok = got[i] == id_of(v, want[i]);
    if (!ok) {
        fprintf(stderr, "  tokenize('%.*s'): got %d tokens:", (int)len, text, (int)n);
        for (int32_t i = 0; i < n && i < 256; i++) {
            const char *s;
            uint32_t l;
            vocab_token_info(v, got[i], &s, &l, NULL, NULL);
            fprintf(stderr, " [%.*s]", (int)l, s);
        }
        fprintf(stderr, "; want:");
        for (int32_t i = 0; i < nw; i++) fprintf(stderr, " [%s]", want[i]);
        fprintf(stderr, "\n");
    }
    return ok;
}

#define EXPECT(v, text, add, parse, ...)                                                  \
    CHECK(expect_pieces((v), (text), sizeof(text) - 1, (add), (parse),                     \
                        (const char *const[]){__VA_ARGS__, NULL}))
#define EXPECT_NONE(v, text, add, parse)                                                  \
    CHECK(expect_pieces((v), (text), sizeof(text) - 1, (add), (parse),                     \
                        (const char *const[]){NULL}))

static bool detok_is(const llm_vocab *v, const llm_token *t, int n, bool remove, bool unparse,
                     const char *want) {
    char buf[256];
    int32_t r = vocab_detokenize(v, t, n, buf, sizeof buf, remove, unparse);
    bool ok = r >= 0 && (size_t)r == strlen(want) && memcmp(buf, want, (size_t)r) == 0;
    if (!ok) fprintf(stderr, "  detokenize: got %d '%.*s', want '%s'\n", (int)r, r > 0 ? (int)r : 0, buf, want);
    return ok;
}

static bool piece_is(const llm_vocab *v, llm_token t, bool special, const char *want, size_t wn) {
    char buf[64];
    int32_t r = vocab_token_to_piece(v, t, buf, sizeof buf, special);
    return r >= 0 && (size_t)r == wn && memcmp(buf, want, wn) == 0;
}

/* ------------------------------------------------------------------------------------------
 * Tests
 * ---------------------------------------------------------------------------------------- */

static void test_merge_order(void) {
    /* bc beats ab */
    piece_def d1[] = {{"a", -10, 0}, {"b", -10, 0}, {"c", -10, 0}, {"ab", -2, 0}, {"bc", -1, 0}};
    llm_vocab *v = make_vocab(d1, 5, true, false);
    EXPECT(v, "abc", false, false, "a", "bc");
    vocab_free(v);

    /* ab beats bc */
    piece_def d2[] = {{"a", -10, 0}, {"b", -10, 0}, {"c", -10, 0}, {"ab", -1, 0}, {"bc", -2, 0}};
    v = make_vocab(d2, 5, true, false);
    EXPECT(v, "abc", false, false, "ab", "c");
    vocab_free(v);

    /* a tie goes to the leftmost pair */
    piece_def d3[] = {{"a", -10, 0}, {"b", -10, 0}, {"c", -10, 0}, {"ab", -1, 0}, {"bc", -1, 0}};
    v = make_vocab(d3, 5, true, false);
    EXPECT(v, "abc", false, false, "ab", "c");
    EXPECT(v, "cabc", false, false, "c", "ab", "c");
    EXPECT(v, "bcab", false, false, "bc", "ab");
    vocab_free(v);

    /* greedy BPE: the best pair first, even when it blocks a longer piece */
    piece_def d4[] = {{"a", -10, 0}, {"b", -10, 0}, {"c", -10, 0}, {"d", -10, 0},
                      {"ab", -1, 0}, {"cd", -1, 0}, {"abcd", -0.5f, 0}, {"bc", -0.1f, 0}};
    v = make_vocab(d4, 8, true, false);
    EXPECT(v, "abcd", false, false, "a", "bc", "d");
    vocab_free(v);
    v = make_vocab(d4, 6 + 1, true, false); /* without "bc": ab + cd -> abcd */
    EXPECT(v, "abcd", false, false, "abcd");
    EXPECT(v, "abcdabcd", false, false, "abcd", "abcd");
    vocab_free(v);

    /* merged pieces merge again; several levels */
    piece_def d5[] = {{SP, -10, 0}, {"h", -10, 0}, {"e", -10, 0}, {"l", -10, 0}, {"o", -10, 0},
                      {"he", -1, 0}, {"ll", -2, 0}, {"hell", -3, 0}, {"hello", -4, 0},
                      {SP "hello", -5, 0}, {"lo", -6, 0}};
    v = make_vocab(d5, 11, true, true);
    EXPECT(v, "hello", false, false, SP "hello");
    EXPECT(v, "hello hello", false, false, SP "hello", SP "hello");
    EXPECT(v, "hellohello", false, false, SP "hello", "hello");
    EXPECT(v, " hello", false, false, SP, SP "hello");
    EXPECT(v, "lo", false, false, SP, "lo");
    vocab_free(v);
}

static void test_space_prefix(void) {
    piece_def d[] = {{SP, -10, 0}, {"a", -10, 0}, {"b", -10, 0}, {SP "a", -1, 0}, {SP "b", -1, 0},
                     {SP SP, -2, 0}};
    llm_vocab *v = make_vocab(d, 6, true, true);
    EXPECT(v, "a b", false, false, SP "a", SP "b");
    EXPECT(v, "a", false, false, SP "a");
    EXPECT(v, " a", false, false, SP, SP "a");  /* SP "a" outscores SP SP */
    EXPECT(v, "a ", false, false, SP "a", SP);
    EXPECT(v, " ", false, false, SP SP);
    EXPECT_NONE(v, "", false, false);
    EXPECT(v, "", true, false, "<s>");
    EXPECT(v, "b", true, false, "<s>", SP "b");
    CHECK(vocab_add_space_prefix(v));
    vocab_free(v);

    v = make_vocab(d, 6, true, false);
    EXPECT(v, "a b", false, false, "a", SP "b");
    EXPECT(v, " a", false, false, SP "a");
    CHECK(!vocab_add_space_prefix(v));
    vocab_free(v);

    /* add_eos */
    v = make_vocab_ex(d, 6, true, true, true, 0);
    EXPECT(v, "a", true, false, "<s>", SP "a", "</s>");
    EXPECT(v, "a", false, false, SP "a");
    EXPECT(v, "", true, false, "<s>", "</s>");
    vocab_free(v);
}

static void test_byte_fallback(void) {
    piece_def d[] = {{"a", -10, 0}, {"b", -10, 0}, {"\xc3\xbc", -10, 0} /* u-umlaut */};
    llm_vocab *v = make_vocab(d, 3, true, false);
    EXPECT(v, "\xc3\xa9", false, false, "<0xC3>", "<0xA9>");                 /* e-acute */
    EXPECT(v, "\xc3\xbc", false, false, "\xc3\xbc");                         /* a piece */
    EXPECT(v, "a\xe2\x82\xac" "b", false, false, "a", "<0xE2>", "<0x82>", "<0xAC>", "b");
    EXPECT(v, "\xf0\x9f\x98\x80", false, false, "<0xF0>", "<0x9F>", "<0x98>", "<0x80>");
    /* invalid UTF-8: each bad byte is a symbol of its own */
    EXPECT(v, "\xff", false, false, "<0xFF>");
    EXPECT(v, "a\x80" "b", false, false, "a", "<0x80>", "b");
    EXPECT(v, "\xe2\x82", false, false, "<0xE2>", "<0x82>");                 /* truncated */
    EXPECT(v, "\xe2\x82" "a", false, false, "<0xE2>", "<0x82>", "a");
    EXPECT(v, "\xc0\x80", false, false, "<0xC0>", "<0x80>");                 /* overlong */
    EXPECT(v, "\xed\xa0\x80", false, false, "<0xED>", "<0xA0>", "<0x80>");   /* surrogate */
    EXPECT(v, "\xc3" "\xc3\xbc", false, false, "<0xC3>", "\xc3\xbc");
    /* NUL is an ordinary byte */
    EXPECT(v, "a\0b", false, false, "a", "<0x00>", "b");
    vocab_free(v);

    /* without byte tokens a run of unknown symbols is one <unk> */
    v = make_vocab(d, 3, false, false);
    EXPECT(v, "xyz", false, false, "<unk>");
    EXPECT(v, "axxb", false, false, "a", "<unk>", "b");
    EXPECT(v, "xaxbx", false, false, "<unk>", "a", "<unk>", "b", "<unk>");
    EXPECT(v, "\xff\xfe", false, false, "<unk>");
    vocab_free(v);
}

static void test_special_tokens(void) {
    piece_def d[] = {{SP, -10, 0}, {"a", -10, 0}, {"b", -10, 0}, {SP "a", -1, 0},
                     {"<t>", 0, VOCAB_TOKEN_USER_DEFINED}, {"<t>x", 0, VOCAB_TOKEN_USER_DEFINED},
                     {"<|end|>", 0, VOCAB_TOKEN_CONTROL}, {"<", -10, 0}, {"s", -10, 0},
                     {">", -10, 0}, {"/", -10, 0}, {"<s", -3, 0}};
    llm_vocab *v = make_vocab(d, 12, true, true);
    /* control text is plain text unless parse_special */
    EXPECT(v, "<s>", false, false, SP, "<s", ">");
    EXPECT(v, "<s>", false, true, "<s>");
    EXPECT(v, "<s>a</s>", false, true, "<s>", SP "a", "</s>");
    EXPECT(v, "a<s>a", false, true, SP "a", "<s>", SP "a");
    EXPECT(v, "<s><s>", true, true, "<s>", "<s>", "<s>");
    EXPECT(v, "<|end|>b", false, true, "<|end|>", SP, "b");
    EXPECT(v, "<unk>", false, true, "<unk>");
    /* user-defined pieces always match (longest first) and take no prefix after them */
    EXPECT(v, "a<t>b", false, false, SP "a", "<t>", "b");
    EXPECT(v, "<t>", false, false, SP, "<t>");
    EXPECT(v, "<t>xa", false, false, SP, "<t>x", "a");
    EXPECT(v, "<t><t>", false, true, SP, "<t>", "<t>");
    /* user-defined pieces are frozen: "<" next to them never merges */
    EXPECT(v, "<<t>", false, false, SP, "<", "<t>");
    vocab_free(v);
}

static void test_unused(void) {
    /* a merge that produces an UNUSED piece is split back into its two parts */
    piece_def d1[] = {{"a", -10, 0}, {"b", -10, 0}, {"c", -10, 0}, {"ab", -1, 0},
                      {"abc", 0, VOCAB_TOKEN_UNUSED}};
    llm_vocab *v = make_vocab(d1, 5, true, false);
    EXPECT(v, "abc", false, false, "ab", "c");
    vocab_free(v);

    piece_def d2[] = {{"a", -10, 0}, {"b", -10, 0}, {"c", -10, 0},
                      {"ab", -1, VOCAB_TOKEN_UNUSED}, {"abc", 0, 0}};
    v = make_vocab(d2, 5, true, false);
    EXPECT(v, "ab", false, false, "a", "b");
    EXPECT(v, "abc", false, false, "abc");
    EXPECT(v, "abab", false, false, "a", "b", "a", "b");
    vocab_free(v);

    /* nested: abcd (unused) = ab (unused) + cd */
    piece_def d3[] = {{"a", -10, 0}, {"b", -10, 0}, {"c", -10, 0}, {"d", -10, 0},
                      {"ab", -1, VOCAB_TOKEN_UNUSED}, {"cd", -2, 0},
                      {"abcd", 0, VOCAB_TOKEN_UNUSED}};
    v = make_vocab(d3, 7, true, false);
    EXPECT(v, "abcd", false, false, "a", "b", "cd");
    vocab_free(v);
}

static void test_token_to_piece(void) {
    piece_def d[] = {{SP "a" SP "b", -1, 0}, {"<t>", 0, VOCAB_TOKEN_USER_DEFINED},
                     {"x", -10, VOCAB_TOKEN_UNUSED}};
    llm_vocab *v = make_vocab(d, 3, true, true);
    CHECK(piece_is(v, id_of(v, SP "a" SP "b"), false, " a b", 4));
    CHECK(piece_is(v, id_of(v, "<0x41>"), false, "A", 1));
    CHECK(piece_is(v, id_of(v, "<0x00>"), true, "\0", 1));
    CHECK(piece_is(v, id_of(v, "<0xFF>"), false, "\xff", 1));
    CHECK(piece_is(v, 1, false, "", 0));
    CHECK(piece_is(v, 1, true, "<s>", 3));
    CHECK(piece_is(v, 0, false, " \xe2\x81\x87 ", 5));
    CHECK(piece_is(v, 0, true, "<unk>", 5));
    CHECK(piece_is(v, id_of(v, "<t>"), false, "<t>", 3));
    CHECK(piece_is(v, id_of(v, "x"), false, "x", 1));

    /* buffer contracts */
    char buf[8];
    CHECK(vocab_token_to_piece(v, id_of(v, SP "a" SP "b"), buf, 3, false) == -4);
    CHECK(vocab_token_to_piece(v, id_of(v, SP "a" SP "b"), NULL, 0, false) == -4);
    CHECK(vocab_token_to_piece(v, 1, NULL, 0, false) == 0);
    llm_error_clear();
    CHECK(vocab_token_to_piece(v, -1, buf, 8, false) == LLM_INT32_ERROR);
    CHECK(llm_last_error()[0] != '\0');
    CHECK(vocab_token_to_piece(v, vocab_n_tokens(v), buf, 8, false) == LLM_INT32_ERROR);
    CHECK(vocab_token_to_piece(v, 1, buf, -1, false) == LLM_INT32_ERROR);
    vocab_free(v);
}

static void test_detokenize(void) {
    piece_def d[] = {{SP, -10, 0}, {"a", -10, 0}, {SP "a", -1, 0}, {"b" SP "c", -1, 0},
                     {"<t>", 0, VOCAB_TOKEN_USER_DEFINED}};
    llm_vocab *v = make_vocab(d, 5, true, true);
    llm_token sa = id_of(v, SP "a"), s = id_of(v, SP), a = id_of(v, "a");
    llm_token bc = id_of(v, "b" SP "c"), ud = id_of(v, "<t>");
    llm_token c3 = id_of(v, "<0xC3>"), a9 = id_of(v, "<0xA9>"), x41 = id_of(v, "<0x41>");
    llm_token x20 = id_of(v, "<0x20>");

    CHECK(detok_is(v, (llm_token[]){sa, sa}, 2, false, false, "a a"));
    CHECK(detok_is(v, (llm_token[]){a, sa}, 2, false, false, "a a"));
    CHECK(detok_is(v, (llm_token[]){s, sa}, 2, false, false, " a"));       /* prefix dropped once */
    CHECK(detok_is(v, (llm_token[]){s}, 1, false, false, ""));
    CHECK(detok_is(v, (llm_token[]){bc, sa}, 2, false, false, "b c a"));
    CHECK(detok_is(v, (llm_token[]){1, sa, 2}, 3, false, false, "a"));     /* BOS invisible */
    CHECK(detok_is(v, (llm_token[]){1, sa, 2}, 3, false, true, "<s> a</s>"));
    CHECK(detok_is(v, (llm_token[]){1, sa, 2}, 3, true, true, "a"));
    CHECK(detok_is(v, (llm_token[]){1, 1, sa}, 3, true, true, "<s> a"));
    CHECK(detok_is(v, (llm_token[]){0, sa}, 2, false, false, " \xe2\x81\x87  a"));
    CHECK(detok_is(v, (llm_token[]){0, sa}, 2, false, true, "<unk> a"));
    CHECK(detok_is(v, (llm_token[]){ud, sa}, 2, false, false, "<t> a"));
    /* byte tokens: joined, checked as UTF-8 */
    CHECK(detok_is(v, (llm_token[]){c3, a9}, 2, false, false, "\xc3\xa9"));
    CHECK(detok_is(v, (llm_token[]){c3, sa}, 2, false, false, "\xef\xbf\xbd a"));
    CHECK(detok_is(v, (llm_token[]){c3, c3, a9, x41}, 4, false, false, "\xef\xbf\xbd\xc3\xa9" "A"));
    CHECK(detok_is(v, (llm_token[]){x20, sa}, 2, false, false, "  a"));   /* bytes are output */
    CHECK(detok_is(v, (llm_token[]){1, c3, a9}, 3, false, false, "\xc3\xa9"));
    CHECK(detok_is(v, NULL, 0, false, false, ""));
    vocab_free(v);

    /* without the space prefix nothing is stripped */
    v = make_vocab(d, 5, true, false);
    CHECK(detok_is(v, (llm_token[]){sa, sa}, 2, false, false, " a a"));
    vocab_free(v);

    /* buffer contracts and invalid ids */
    v = make_vocab(d, 5, true, true);
    char buf[4];
    llm_token three[] = {sa, sa, sa};     /* "a a a" */
    CHECK(vocab_detokenize(v, three, 3, buf, 4, false, false) == -5);
    CHECK(vocab_detokenize(v, three, 3, NULL, 0, false, false) == -5);
    CHECK(vocab_detokenize(v, three, 1, buf, 1, false, false) == 1 && buf[0] == 'a');
    llm_error_clear();
    CHECK(vocab_detokenize(v, (llm_token[]){sa, 9999}, 2, buf, 4, false, false) == LLM_INT32_ERROR);
    CHECK(llm_last_error()[0] != '\0');
    CHECK(vocab_detokenize(v, (llm_token[]){-1}, 1, buf, 4, false, false) == LLM_INT32_ERROR);
    CHECK(vocab_detokenize(v, NULL, 1, buf, 4, false, false) == LLM_INT32_ERROR);
    vocab_free(v);
}

static void test_tokenize_contracts(void) {
    piece_def d[] = {{SP, -10, 0}, {"a", -10, 0}, {SP "a", -1, 0}};
    llm_vocab *v = make_vocab(d, 3, true, true);
    llm_token t[8];
    CHECK(vocab_tokenize(v, "a a a", 5, t, 8, false, false) == 3);
    CHECK(vocab_tokenize(v, "a a a", 5, t, 2, false, false) == -3);
    CHECK(vocab_tokenize(v, "a a a", 5, NULL, 0, false, false) == -3);
    CHECK(vocab_tokenize(v, "a a a", 5, t, 3, true, false) == -4);
    CHECK(vocab_tokenize(v, "", 0, NULL, 0, false, false) == 0);
    CHECK(vocab_tokenize(v, NULL, 0, t, 8, true, false) == 1 && t[0] == 1);
    CHECK(vocab_tokenize(v, NULL, 3, t, 8, false, false) == LLM_INT32_ERROR);
    CHECK(vocab_tokenize(v, "a", -1, t, 8, false, false) == LLM_INT32_ERROR);
    CHECK(vocab_tokenize(v, "a", 1, NULL, 8, false, false) == LLM_INT32_ERROR);
    CHECK(vocab_tokenize(NULL, "a", 1, t, 8, false, false) == LLM_INT32_ERROR);
    /* a text-only id sequence round-trips */
    char text[] = "a  a\xc3\xa9 a";
    llm_token ids[32];
    int32_t n = vocab_tokenize(v, text, (int32_t)strlen(text), ids, 32, false, false);
    CHECK(n > 0);
    char back[32];
    int32_t m = vocab_detokenize(v, ids, n, back, sizeof back, false, false);
    CHECK(m == (int32_t)strlen(text) && memcmp(back, text, (size_t)m) == 0);

    CHECK(vocab_bos(v) == 1 && vocab_eos(v) == 2 && vocab_unk(v) == 0 && vocab_pad(v) == -1);
    CHECK(vocab_add_bos(v) && !vocab_add_eos(v));
    CHECK(vocab_is_eog(v, 2) && !vocab_is_eog(v, 1) && !vocab_is_eog(v, -1));
    vocab_free(v);
}

static void test_build_errors(void) {
    vocab_params p;
    llm_vocab *v = (llm_vocab *)1;
    vocab_params_default(&p);
    CHECK(vocab_build(&p, &v) == LLM_STATUS_BAD_FORMAT && v == NULL);

    const char *pieces[] = {"<unk>", "a", "<0xZZ>"};
    int32_t types[] = {VOCAB_TOKEN_UNKNOWN, VOCAB_TOKEN_NORMAL, VOCAB_TOKEN_NORMAL};
    p.n_tokens = 3;
    p.pieces = pieces;
    p.types = types;
    CHECK(vocab_build(&p, &v) == LLM_STATUS_OK && v != NULL);
    CHECK(vocab_is_eog(v, 0) == false);
    vocab_free(v);

    p.bos = 3;
    CHECK(vocab_build(&p, &v) == LLM_STATUS_BAD_FORMAT && v == NULL);
    CHECK(strstr(llm_last_error(), "BOS") != NULL);
    p.bos = -1;
    p.eot = 1;
    CHECK(vocab_build(&p, &v) == LLM_STATUS_OK);
    CHECK(vocab_is_eog(v, 1));
    vocab_free(v);

    types[2] = VOCAB_TOKEN_BYTE;
    CHECK(vocab_build(&p, &v) == LLM_STATUS_BAD_FORMAT && v == NULL);
    CHECK(strstr(llm_last_error(), "<0xZZ>") != NULL);
    types[2] = VOCAB_TOKEN_NORMAL;

    pieces[1] = NULL;
    CHECK(vocab_build(&p, &v) == LLM_STATUS_BAD_FORMAT && v == NULL);
    pieces[1] = "a";

    /* pieces with explicit lengths may hold NUL bytes; empty pieces never match */
    const char *pl[] = {"", "a\0", "a\0b", "a", "\0", "b"};
    uint32_t lens[] = {0, 2, 3, 1, 1, 1};
    p.n_tokens = 6;
    p.pieces = pl;
    p.piece_lens = lens;
    p.types = NULL;
    p.eot = -1;
    p.add_space_prefix = false;
    CHECK(vocab_build(&p, &v) == LLM_STATUS_OK);
    llm_token t[4];
    CHECK(vocab_tokenize(v, "a\0b", 3, t, 4, false, false) == 1 && t[0] == 2);
    CHECK(vocab_tokenize(v, "\0", 1, t, 4, false, false) == 1 && t[0] == 4);
    vocab_free(v);
    p.n_tokens = 3;
    p.add_space_prefix = true;

    /* chat end-of-turn pieces count as end of generation */
    const char *pc[] = {"<unk>", "<|im_end|>", "x"};
    p.pieces = pc;
    p.piece_lens = NULL;
    CHECK(vocab_build(&p, &v) == LLM_STATUS_OK);
    CHECK(vocab_is_eog(v, 1) && !vocab_is_eog(v, 2));
    vocab_free(v);
}

/* ------------------------------------------------------------------------------------------
 * A naive BPE as an oracle: rescan every adjacent pair after each merge (O(n^2)).
 * ---------------------------------------------------------------------------------------- */

typedef struct naive_vocab {
    const char **pieces;
    float *scores;
    int n;
} naive_vocab;

static int naive_find(const naive_vocab *nv, const char *s, size_t n) {
    for (int i = 0; i < nv->n; i++) {
        if (strlen(nv->pieces[i]) == n && memcmp(nv->pieces[i], s, n) == 0) return i;
    }
    return -1;
}

/* Symbols of the escaped text: [start, len] pairs; returns the final count. */
static int naive_bpe(const naive_vocab *nv, const char *buf, size_t n, size_t *start, size_t *len) {
    int ns = 0;
    for (size_t i = 0; i < n;) {
        size_t l = 1;
        unsigned char c = (unsigned char)buf[i];
        if (c >= 0xC0 && c < 0xE0) l = 2;
        else if (c >= 0xE0 && c < 0xF0) l = 3;
        else if (c >= 0xF0) l = 4;   /* the test alphabet is valid UTF-8 */
        start[ns] = i;
        len[ns++] = l;
        i += l;
    }
    for (;;) {
        int best = -1;
        float best_score = 0;
        for (int i = 0; i + 1 < ns; i++) {
            int id = naive_find(nv, buf + start[i], len[i] + len[i + 1]);
            if (id >= 0 && (best < 0 || nv->scores[id] > best_score)) {
                best = i;
                best_score = nv->scores[id];
            }
        }
        if (best < 0) break;
        len[best] += len[best + 1];
        memmove(start + best + 1, start + best + 2, (size_t)(ns - best - 2) * sizeof *start);
        memmove(len + best + 1, len + best + 2, (size_t)(ns - best - 2) * sizeof *len);
        ns--;
    }
    return ns;
}

static uint32_t rng_state = 12345;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void test_against_naive(void) {
    static const char *alpha[] = {"a", "b", "c", "d", " ", "\xc3\xa9", "\xe4\xb8\xad"};
    const int n_alpha = 7;
    /* pieces: every unit, then random concatenations of 2..5 units with random scores
     * (many ties: scores are small integers) */
    enum { N_PIECES = 220 };
    static char store[N_PIECES][32];
    piece_def defs[N_PIECES];
    int nd = 0;
    for (int i = 0; i < n_alpha; i++) {
        strcpy(store[nd], alpha[i][0] == ' ' ? SP : alpha[i]);
        defs[nd] = (piece_def){store[nd], -100, 0};
        nd++;
    }
    while (nd < N_PIECES) {
        char tmp[32] = "";
        int k = 2 + (int)(rnd() % 4);
        for (int j = 0; j < k; j++) {
            const char *u = alpha[rnd() % (uint32_t)n_alpha];
            strcat(tmp, u[0] == ' ' ? SP : u);
        }
        bool dup = false;
        for (int j = 0; j < nd; j++) dup = dup || strcmp(store[j], tmp) == 0;
        if (dup) continue;
        strcpy(store[nd], tmp);
        defs[nd] = (piece_def){store[nd], -(float)(rnd() % 8), 0};
        nd++;
    }
    llm_vocab *v = make_vocab(defs, nd, true, true);
    /* the same vocabulary plus one UNUSED piece: the stretch optimisation is off there */
    llm_vocab *v_plain = make_vocab_ex(defs, nd, true, true, false, 1);
    const char *nv_pieces[N_PIECES];
    float nv_scores[N_PIECES];
    for (int i = 0; i < nd; i++) {
        nv_pieces[i] = defs[i].text;
        nv_scores[i] = defs[i].score;
    }
    naive_vocab nv = {nv_pieces, nv_scores, nd};

    int mismatches = 0;
    for (int iter = 0; iter < 1500; iter++) {
        char text[256] = "";
        int k = (int)(rnd() % 40);
        for (int j = 0; j < k; j++) strcat(text, alpha[rnd() % (uint32_t)n_alpha]);
        size_t tn = strlen(text);
        /* the reference: escape, prefix, naive merges, then ids */
        char esc[1024];
        size_t en = 0;
        if (tn > 0) {
            memcpy(esc, SP, 3);
            en = 3;
        }
        for (size_t i = 0; i < tn; i++) {
            if (text[i] == ' ') {
                memcpy(esc + en, SP, 3);
                en += 3;
            } else {
                esc[en++] = text[i];
            }
        }
        size_t st[256], ln[256];
        int ns = naive_bpe(&nv, esc, en, st, ln);
        llm_token want[256];
        int nw = 0;
        for (int i = 0; i < ns; i++) {
            int id = naive_find(&nv, esc + st[i], ln[i]);
            want[nw++] = 3 + 256 + id;  /* every unit is a piece here */
        }
        llm_token got[256], got_plain[256];
        int32_t n = vocab_tokenize(v, text, (int32_t)tn, got, 256, false, false);
        int32_t n2 = vocab_tokenize(v_plain, text, (int32_t)tn, got_plain, 256, false, false);
        bool ok = n == nw && n2 == nw;
        for (int i = 0; ok && i < nw; i++) ok = got[i] == want[i] && got_plain[i] == want[i];
        if (!ok && mismatches++ < 3) {
            fprintf(stderr, "  naive mismatch on '%s': %d / %d tokens vs %d\n", text, (int)n,
                    (int)n2, nw);
        }
        /* decoding gives the text back */
        char back[256];
        int32_t m = vocab_detokenize(v, got, n, back, sizeof back, false, false);
        if (m != (int32_t)tn || memcmp(back, text, tn) != 0) mismatches++;
    }
    CHECK(mismatches == 0);
    vocab_free(v);
    vocab_free(v_plain);
}

static void test_long_text(void) {
    piece_def d[] = {{SP, -10, 0}, {"a", -10, 0}, {"b", -10, 0}, {SP "a", -1, 0}, {"ab", -2, 0},
                     {SP "ab", -3, 0}, {SP SP, -4, 0}, {"bb", -5, 0}};
    llm_vocab *v = make_vocab(d, 8, true, true);
    size_t n = 2u << 20;
    char *text = malloc(n);
    for (size_t i = 0; i < n; i++) text[i] = "ab  b\xc3"[rnd() % 6];
    llm_token *t = malloc(n * sizeof *t + 16);
    clock_t c0 = clock();
    int32_t r = vocab_tokenize(v, text, (int32_t)n, t, (int32_t)n + 4, false, false);
    double dt = (double)(clock() - c0) / CLOCKS_PER_SEC;
    CHECK(r > 0 && r <= (int32_t)n + 1);
    /* the result is a valid segmentation: it decodes back to the text */
    int32_t need = vocab_detokenize(v, t, r, NULL, 0, false, false);
    char *back = malloc((size_t)(need < 0 ? -need : need) + 1);
    int32_t m = vocab_detokenize(v, t, r, back, need < 0 ? -need : need, false, false);
    CHECK(m > 0);
    printf("  long text: %zu bytes -> %d tokens in %.3f s (%.1f MB/s)\n", n, (int)r, dt,
            dt > 0 ? (double)n / dt / 1e6 : 0.0);
    CHECK(dt < 30.0);
    free(back);
    free(t);
    free(text);
    vocab_free(v);
}

/* ------------------------------------------------------------------------------------------
 * vocab_load over GGUF files built in memory
 * ---------------------------------------------------------------------------------------- */

typedef struct gbuf {
    uint8_t *p;
    size_t n, cap;
    uint64_t n_kv;
} gbuf;

static void gb_put(gbuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void gb_u32(gbuf *b, uint32_t v) { uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)}; gb_put(b, x, 4); }
static void gb_u64(gbuf *b, uint64_t v) { gb_u32(b, (uint32_t)v); gb_u32(b, (uint32_t)(v >> 32)); }
static void gb_f32(gbuf *b, float f) { uint32_t u; memcpy(&u, &f, 4); gb_u32(b, u); }
static void gb_str(gbuf *b, const char *s) { gb_u64(b, strlen(s)); gb_put(b, s, strlen(s)); }
static void gb_key(gbuf *b, const char *k, uint32_t type) { gb_str(b, k); gb_u32(b, type); b->n_kv++; }

static void gb_begin(gbuf *b) {
    memset(b, 0, sizeof *b);
    gb_put(b, "GGUF", 4);
    gb_u32(b, 3);
    gb_u64(b, 0);   /* tensors */
    gb_u64(b, 0);   /* kv count, patched by gb_end */
}
static void gb_end(gbuf *b) {
    for (int i = 0; i < 8; i++) b->p[16 + i] = (uint8_t)(b->n_kv >> (8 * i));
}
static void kv_str(gbuf *b, const char *k, const char *v) { gb_key(b, k, GGUF_TYPE_STRING); gb_str(b, v); }
static void kv_u32(gbuf *b, const char *k, uint32_t v) { gb_key(b, k, GGUF_TYPE_UINT32); gb_u32(b, v); }
static void kv_bool(gbuf *b, const char *k, bool v) { uint8_t x = v; gb_key(b, k, GGUF_TYPE_BOOL); gb_put(b, &x, 1); }
static void kv_strs(gbuf *b, const char *k, const char *const *s, int n) {
    gb_key(b, k, GGUF_TYPE_ARRAY);
    gb_u32(b, GGUF_TYPE_STRING);
    gb_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) gb_str(b, s[i]);
}
static void kv_f32s(gbuf *b, const char *k, const float *f, int n) {
    gb_key(b, k, GGUF_TYPE_ARRAY);
    gb_u32(b, GGUF_TYPE_FLOAT32);
    gb_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) gb_f32(b, f[i]);
}
static void kv_i32s(gbuf *b, const char *k, const int32_t *v, int n) {
    gb_key(b, k, GGUF_TYPE_ARRAY);
    gb_u32(b, GGUF_TYPE_INT32);
    gb_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) gb_u32(b, (uint32_t)v[i]);
}

enum { OMIT_SCORES = 1, OMIT_TYPES = 2, OMIT_IDS = 4, SHORT_SCORES = 8, BAD_BOS = 16,
       NO_MODEL = 32, NO_TOKENS = 64, EMPTY_TOKENS = 128, TOKENS_NOT_STR = 256,
       ADD_BOS_FALSE = 512, EOT = 1024, BOS_NONE = 2048 };

static const char *const G_TOKENS[] = {"<unk>", "<s>", "</s>", SP, "a", "b", SP "a", "ab",
                                       "<|eot|>"};
#define G_N 9

/* Builds a GGUF buffer with the tokenizer metadata; flags drop or break parts of it. */
static gbuf make_gguf(const char *model, int flags) {
    gbuf b;
    gb_begin(&b);
    kv_str(&b, "general.architecture", "llama");
    if (!(flags & NO_MODEL)) kv_str(&b, "tokenizer.ggml.model", model);
    if (flags & TOKENS_NOT_STR) {
        float f[G_N] = {0};
        kv_f32s(&b, "tokenizer.ggml.tokens", f, G_N);
    } else if (flags & EMPTY_TOKENS) {
        kv_strs(&b, "tokenizer.ggml.tokens", G_TOKENS, 0);
    } else if (!(flags & NO_TOKENS)) {
        kv_strs(&b, "tokenizer.ggml.tokens", G_TOKENS, G_N);
    }
    float scores[G_N] = {0, 0, 0, -5, -5, -5, -1, -2, 0};
    int32_t types[G_N] = {2, 3, 3, 1, 1, 1, 1, 1, 3};
    if (!(flags & OMIT_SCORES)) kv_f32s(&b, "tokenizer.ggml.scores", scores, (flags & SHORT_SCORES) ? G_N - 1 : G_N);
    if (!(flags & OMIT_TYPES)) kv_i32s(&b, "tokenizer.ggml.token_type", types, G_N);
    if (!(flags & OMIT_IDS)) {
        kv_u32(&b, "tokenizer.ggml.bos_token_id", (flags & BAD_BOS) ? 99 : 1);
        kv_u32(&b, "tokenizer.ggml.eos_token_id", 2);
        kv_u32(&b, "tokenizer.ggml.unknown_token_id", 0);
    }
    if (flags & BOS_NONE) kv_u32(&b, "tokenizer.ggml.bos_token_id", 0xFFFFFFFFu);
    if (flags & EOT) kv_u32(&b, "tokenizer.ggml.eot_token_id", 8);
    kv_bool(&b, "tokenizer.ggml.add_bos_token", !(flags & ADD_BOS_FALSE));
    gb_end(&b);
    return b;
}

static int32_t load_from(const char *model, int flags, llm_vocab **v) {
    gbuf b = make_gguf(model, flags);
    gguf_file *f = NULL;
    int32_t st = gguf_open_buffer(b.p, b.n, &f);
    if (st != LLM_STATUS_OK) {
        fprintf(stderr, "  gguf_open_buffer: %s\n", llm_last_error());
        free(b.p);
        *v = NULL;
        return 1000;
    }
    st = vocab_load(f, v);
    gguf_close(f);
    memset(b.p, 0xAB, b.n);   /* the vocabulary must not point into the file */
    free(b.p);
    return st;
}

static void test_load(void) {
    llm_vocab *v;
    CHECK(load_from("llama", 0, &v) == LLM_STATUS_OK);
    if (v) {
        CHECK(vocab_n_tokens(v) == G_N);
        CHECK(vocab_bos(v) == 1 && vocab_eos(v) == 2 && vocab_unk(v) == 0);
        CHECK(vocab_add_bos(v) && !vocab_add_eos(v) && vocab_add_space_prefix(v));
        EXPECT(v, "ab a", true, false, "<s>", SP "a", "b", SP "a");
        EXPECT(v, "<s>a", false, true, "<s>", SP "a");
        CHECK(vocab_is_eog(v, 2) && !vocab_is_eog(v, 8));
        float score;
        int32_t type;
        CHECK(vocab_token_info(v, 6, NULL, NULL, &score, &type) && score == -1.0f &&
              type == VOCAB_TOKEN_NORMAL);
        vocab_free(v);
    }
    CHECK(load_from("llama", EOT | ADD_BOS_FALSE, &v) == LLM_STATUS_OK);
    if (v) {
        CHECK(vocab_is_eog(v, 8) && !vocab_add_bos(v));
        EXPECT(v, "a", true, false, SP "a");
        vocab_free(v);
    }
    /* optional arrays and ids: defaults (scores 0, NORMAL, bos 1 / eos 2 / unk 0) */
    CHECK(load_from("llama", OMIT_SCORES | OMIT_TYPES | OMIT_IDS, &v) == LLM_STATUS_OK);
    if (v) {
        CHECK(vocab_bos(v) == 1 && vocab_eos(v) == 2 && vocab_unk(v) == 0);
        /* without token types nothing is CONTROL: "<s>" is text, '<' 's' '>' one <unk> run */
        EXPECT(v, "<s>", false, true, SP, "<unk>");
        vocab_free(v);
    }
    CHECK(load_from("llama", OMIT_IDS | BOS_NONE, &v) == LLM_STATUS_OK);
    if (v) {
        CHECK(vocab_bos(v) == -1);
        EXPECT(v, "a", true, false, SP "a");
        vocab_free(v);
    }

    CHECK(load_from("gpt2", 0, &v) == LLM_STATUS_UNSUPPORTED && v == NULL);
    CHECK(strstr(llm_last_error(), "gpt2") != NULL);
    CHECK(load_from("llama", NO_MODEL, &v) == LLM_STATUS_BAD_FORMAT && v == NULL);
    CHECK(load_from("llama", NO_TOKENS, &v) == LLM_STATUS_BAD_FORMAT && v == NULL);
    CHECK(load_from("llama", EMPTY_TOKENS, &v) == LLM_STATUS_BAD_FORMAT && v == NULL);
    CHECK(load_from("llama", EMPTY_TOKENS | OMIT_SCORES | OMIT_TYPES | OMIT_IDS, &v) ==
          LLM_STATUS_BAD_FORMAT);
    CHECK(load_from("llama", TOKENS_NOT_STR, &v) == LLM_STATUS_BAD_FORMAT && v == NULL);
    CHECK(load_from("llama", SHORT_SCORES, &v) == LLM_STATUS_BAD_FORMAT && v == NULL);
    CHECK(strstr(llm_last_error(), "scores") != NULL);
    CHECK(load_from("llama", BAD_BOS, &v) == LLM_STATUS_BAD_FORMAT && v == NULL);
    CHECK(strstr(llm_last_error(), "bos_token_id") != NULL);
}

int main(void) {
    test_merge_order();
    test_space_prefix();
    test_byte_fallback();
    test_special_tokens();
    test_unused();
    test_token_to_piece();
    test_detokenize();
    test_tokenize_contracts();
    test_build_errors();
    test_against_naive();
    test_long_text();
    test_load();
    printf("test_vocab: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
