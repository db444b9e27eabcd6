/* vocab.c -- the SentencePiece BPE ("llama") tokenizer.
 *
 * Encoding gives what SentencePiece's BPE model gives with an identity normalizer
 * (sp.encode(text)):
 *   - each text run becomes "normalized" text: ' ' is written U+2581 ("\xe2\x96\x81"), and a
 *     U+2581 goes in front of a non-empty run when add_space_prefix is set;
 *   - the normalized text is cut into symbols: a USER_DEFINED piece that starts here (longest
 *     wins) is one frozen symbol, otherwise one UTF-8 character (a byte that does not start a
 *     valid character is a symbol of its own);
 *   - adjacent symbols whose concatenation is a NORMAL / USER_DEFINED / UNUSED piece merge, the
 *     highest score first, the leftmost on ties, until no pair is left (a heap of candidate
 *     pairs; entries made stale by an earlier merge are skipped when popped). The work is cut
 *     into stretches at joins no merge can cross, which keeps the heaps small (same result);
 *   - a merged UNUSED piece is split back into the two parts it was last proposed from;
 *   - each final symbol is its piece id; else, when the vocabulary has byte tokens, one <0xNN>
 *     token per byte; else <unk>, one for a whole run of such symbols.
 * With parse_special, CONTROL and UNKNOWN pieces written literally in the text ("<s>") become
 * their ids and cut the text into runs; as in llama.cpp each run that starts the text or follows
 * such a token gets the space prefix. USER_DEFINED pieces are matched whatever parse_special
 * says, inside a run (as SentencePiece does): no prefix after them.
 *
 * Decoding gives what SentencePiece's DecodeIds gives (sp.decode(ids)): pieces with U+2581 read
 * as spaces, the space prefix of the first text piece dropped when nothing came before it, byte
 * tokens joined and checked as UTF-8 (a byte outside a valid character becomes U+FFFD), CONTROL
 * tokens invisible, <unk> shown as " \xe2\x81\x87 ". unparse_special shows CONTROL and UNKNOWN
 * tokens as their text. token_to_piece renders one token the same way, never dropping a
 * space. */
#include "vocab.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

#define SPACE_SYM "\xe2\x96\x81"   /* U+2581, the escaped space */
#define SPACE_SYM_LEN 3
#define UNK_SURFACE " \xe2\x81\x87 " /* what SentencePiece prints for <unk> */
#define UNK_SURFACE_LEN 5
#define REPLACEMENT_CHAR "\xef\xbf\xbd"
#define MAX_EOG 16

typedef struct trie_node {
    int32_t child;      /* first child, -1 if none */
    int32_t sibling;    /* next child of the same parent, -1 if none */
    int32_t ud_id;      /* USER_DEFINED token ending here, -1 if none */
    int32_t sp_id;      /* CONTROL / UNKNOWN token ending here, -1 if none */
    uint8_t byte;
} trie_node;

struct llm_vocab {
    int32_t n_tokens;
    char *blob;          /* every piece, back to back */
    uint32_t *off;       /* [n_tokens] start of each piece in blob */
    uint32_t *len;       /* [n_tokens] byte length of each piece */
    float *scores;       /* [n_tokens] */
    uint8_t *types;      /* [n_tokens] enum vocab_token_type (unknown values stored as NORMAL) */

    int32_t *table;      /* open addressing piece -> id, -1 empty */
    uint32_t table_mask;
    uint32_t max_len;    /* longest piece */

    /* Pairs of adjacent characters that occur inside some mergeable piece (open addressing,
     * key + 1, 0 empty). No merge can join two symbols whose characters at the join are not
     * such a pair, so the text is merged in independent stretches cut there. NULL when the
     * vocabulary has UNUSED pieces (their resegmentation depends on the global merge order). */
    uint64_t *bigrams;
    uint32_t bigram_mask;

    int32_t byte_id[256];/* <0xNN> token of each byte, -1 if none */
    bool byte_fallback;  /* the vocabulary has byte tokens */
    int32_t n_unused;    /* UNUSED tokens */

    llm_token bos, eos, unk, pad, eot, eom;
    llm_token eog[MAX_EOG];
    int32_t n_eog;
    bool add_bos, add_eos, add_space_prefix;

    /* Literal matching of USER_DEFINED (always) and CONTROL/UNKNOWN (parse_special) pieces. */
    trie_node *trie;
    int32_t n_trie;
    int32_t root[256];   /* node of each first byte, -1 if none */
    bool first_ud[256];  /* some USER_DEFINED piece starts with this byte */
    bool first_sp[256];  /* some CONTROL / UNKNOWN piece starts with this byte */
};

/* ------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------- */

static uint32_t fnv1a(const char *s, uint32_t n) {
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

static inline const char *piece_of(const llm_vocab *v, int32_t id) { return v->blob + v->off[id]; }

/* Id of the piece s[0..n), or -1. */
static int32_t lookup(const llm_vocab *v, const char *s, uint32_t n) {
    if (n == 0 || n > v->max_len) return -1;
    uint32_t h = fnv1a(s, n) & v->table_mask;
    for (;;) {
        int32_t id = v->table[h];
        if (id < 0) return -1;
        if (v->len[id] == n && memcmp(piece_of(v, id), s, n) == 0) return id;
        h = (h + 1) & v->table_mask;
    }
}

static bool is_trail(uint8_t c) { return (c & 0xC0) == 0x80; }

/* Length of the valid UTF-8 character at s (n > 0 bytes available), or 0 when the first byte
 * does not start one: overlong forms, surrogates and values above U+10FFFF are invalid. */
static uint32_t utf8_valid_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) {
        if (n < 2 || !is_trail(s[1])) return 0;
        uint32_t cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
        return cp >= 0x80 ? 2 : 0;
    }
    if ((c & 0xF0) == 0xE0) {
        if (n < 3 || !is_trail(s[1]) || !is_trail(s[2])) return 0;
        uint32_t cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) ? 3 : 0;
    }
    if ((c & 0xF8) == 0xF0) {
        if (n < 4 || !is_trail(s[1]) || !is_trail(s[2]) || !is_trail(s[3])) return 0;
        uint32_t cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
                      ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return (cp >= 0x10000 && cp <= 0x10FFFF) ? 4 : 0;
    }
    return 0;
}

static int hex_val(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xNN>" piece, or -1. */
static int parse_byte_piece(const char *s, uint32_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int hi = hex_val(s[3]), lo = hex_val(s[4]);
    if (hi < 0 || lo < 0) return -1;
    return hi * 16 + lo;
}

/* Types a merge may produce (SentencePiece's "pieces_" map). */
static bool is_mergeable(uint8_t type) {
    return type != VOCAB_TOKEN_UNKNOWN && type != VOCAB_TOKEN_CONTROL && type != VOCAB_TOKEN_BYTE;
}

/* Length of the symbol (one character, or one stray byte) that starts at s. */
static uint32_t unit_len(const uint8_t *s, size_t n) {
    uint32_t len = utf8_valid_len(s, n);
    return len ? len : 1;
}

/* A unique number for the unit s[0..len): its bytes, big-endian. Valid characters of different
 * lengths and stray bytes (0x80..0xFF) never collide. */
static uint32_t unit_code(const uint8_t *s, uint32_t len) {
    uint32_t c = 0;
    for (uint32_t i = 0; i < len; i++) c = (c << 8) | s[i];
    return c;
}

static uint32_t bigram_slot(uint64_t key, uint32_t mask) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (uint32_t)key & mask;
}

static bool bigram_has(const llm_vocab *v, uint32_t a, uint32_t b) {
    uint64_t key = (((uint64_t)a << 32) | b) + 1;
    for (uint32_t h = bigram_slot(key, v->bigram_mask);; h = (h + 1) & v->bigram_mask) {
        if (v->bigrams[h] == key) return true;
        if (v->bigrams[h] == 0) return false;
    }
}

static void bigram_add(llm_vocab *v, uint32_t a, uint32_t b) {
    uint64_t key = (((uint64_t)a << 32) | b) + 1;
    uint32_t h = bigram_slot(key, v->bigram_mask);
    while (v->bigrams[h] != 0 && v->bigrams[h] != key) h = (h + 1) & v->bigram_mask;
    v->bigrams[h] = key;
}

/* Fills the bigram set from the mergeable pieces. */
static int32_t build_bigrams(llm_vocab *v) {
    uint64_t count = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        if (is_mergeable(v->types[i]) && v->len[i] > 1) count += v->len[i] - 1;
    }
    uint64_t cap = 16;
    while (cap < count * 2) cap <<= 1;
    if (cap > ((uint64_t)1 << 31)) return LLM_STATUS_OUT_OF_MEMORY;
    v->bigrams = llm_calloc((size_t)cap, sizeof *v->bigrams);
    if (!v->bigrams) return LLM_STATUS_OUT_OF_MEMORY;
    v->bigram_mask = (uint32_t)(cap - 1);
    for (int32_t i = 0; i < v->n_tokens; i++) {
        if (!is_mergeable(v->types[i])) continue;
        const uint8_t *s = (const uint8_t *)piece_of(v, i);
        uint32_t n = v->len[i];
        uint32_t pos = 0, prev = 0;
        bool have_prev = false;
        while (pos < n) {
            uint32_t len = unit_len(s + pos, n - pos);
            uint32_t code = unit_code(s + pos, len);
            if (have_prev) bigram_add(v, prev, code);
            prev = code;
            have_prev = true;
            pos += len;
        }
    }
    return LLM_STATUS_OK;
}

/* ------------------------------------------------------------------------------------------
 * Literal-piece trie
 * ---------------------------------------------------------------------------------------- */

static int32_t trie_child(const llm_vocab *v, int32_t node, uint8_t b) {
    for (int32_t c = v->trie[node].child; c >= 0; c = v->trie[c].sibling) {
        if (v->trie[c].byte == b) return c;
    }
    return -1;
}

/* Adds s[0..n) (n > 0); the nodes array has room for every byte of every literal piece. */
static void trie_insert(llm_vocab *v, const char *s, uint32_t n, int32_t id, bool user_defined) {
    uint8_t b0 = (uint8_t)s[0];
    int32_t node = v->root[b0];
    if (node < 0) {
        node = v->n_trie++;
        v->trie[node] = (trie_node){-1, -1, -1, -1, b0};
        v->root[b0] = node;
    }
    for (uint32_t i = 1; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t next = trie_child(v, node, b);
        if (next < 0) {
            next = v->n_trie++;
            v->trie[next] = (trie_node){-1, v->trie[node].child, -1, -1, b};
            v->trie[node].child = next;
        }
        node = next;
    }
    if (user_defined) {
        v->trie[node].ud_id = id;
        v->first_ud[b0] = true;
    } else {
        v->trie[node].sp_id = id;
        v->first_sp[b0] = true;
    }
}

/* Longest literal piece of the wanted kind starting at s[0..n): its length (0 if none). */
static uint32_t trie_match(const llm_vocab *v, const char *s, size_t n, bool user_defined,
                           int32_t *id_out) {
    int32_t node = v->root[(uint8_t)s[0]];
    uint32_t best = 0;
    for (size_t i = 1; node >= 0; i++) {
        int32_t id = user_defined ? v->trie[node].ud_id : v->trie[node].sp_id;
        if (id >= 0) {
            best = (uint32_t)i;
            *id_out = id;
        }
        if (i >= n) break;
        node = trie_child(v, node, (uint8_t)s[i]);
    }
    return best;
}

/* ------------------------------------------------------------------------------------------
 * Building
 * ---------------------------------------------------------------------------------------- */

void vocab_params_default(vocab_params *p) {
    memset(p, 0, sizeof *p);
    p->bos = p->eos = p->unk = p->pad = p->eot = p->eom = -1;
    p->add_bos = true;
    p->add_eos = false;
    p->add_space_prefix = true;
}

void vocab_free(llm_vocab *v) {
    if (!v) return;
    llm_free(v->blob);
    llm_free(v->off);
    llm_free(v->len);
    llm_free(v->scores);
    llm_free(v->types);
    llm_free(v->table);
    llm_free(v->bigrams);
    llm_free(v->trie);
    llm_free(v);
}

static void add_eog(llm_vocab *v, llm_token t) {
    if (t < 0 || t >= v->n_tokens) return;
    for (int32_t i = 0; i < v->n_eog; i++) {
        if (v->eog[i] == t) return;
    }
    if (v->n_eog < MAX_EOG) v->eog[v->n_eog++] = t;
}

/* Pieces that end a turn in common chat vocabularies (llama.cpp treats them the same way). */
static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "<|end_of_text|>", "<end_of_utterance>",
};

static int32_t check_id(const char *what, llm_token id, int32_t n) {
    if (id < -1 || id >= n) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "%s token id %d is out of range (vocabulary of %d)",
                         what, (int)id, (int)n);
    }
    return LLM_STATUS_OK;
}

int32_t vocab_build(const vocab_params *p, llm_vocab **out) {
    if (!out) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "vocab_build: out is NULL");
    *out = NULL;
    if (!p) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "vocab_build: params is NULL");
    if (p->n_tokens <= 0) return llm_error(LLM_STATUS_BAD_FORMAT, "the vocabulary is empty");
    if (p->n_tokens > (INT32_MAX >> 2)) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the vocabulary has too many tokens (%d)",
                         (int)p->n_tokens);
    }
    if (!p->pieces) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "vocab_build: no pieces");
    const int32_t n = p->n_tokens;
    int32_t st;
    if ((st = check_id("BOS", p->bos, n)) || (st = check_id("EOS", p->eos, n)) ||
        (st = check_id("unknown", p->unk, n)) || (st = check_id("padding", p->pad, n)) ||
        (st = check_id("EOT", p->eot, n)) || (st = check_id("EOM", p->eom, n))) {
        return st;
    }

    llm_vocab *v = llm_calloc(1, sizeof *v);
    if (!v) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory building the vocabulary");
    v->n_tokens = n;
    v->off = llm_malloc((size_t)n * sizeof *v->off);
    v->len = llm_malloc((size_t)n * sizeof *v->len);
    v->scores = llm_malloc((size_t)n * sizeof *v->scores);
    v->types = llm_malloc((size_t)n);
    if (!v->off || !v->len || !v->scores || !v->types) goto oom;

    /* Sizes first, then one copy of every piece. */
    uint64_t total = 0;
    uint64_t literal_bytes = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *s = p->pieces[i];
        if (!s && !(p->piece_lens && p->piece_lens[i] == 0)) {
            vocab_free(v);
            return llm_error(LLM_STATUS_BAD_FORMAT, "token %d has no text", (int)i);
        }
        uint64_t len = p->piece_lens ? p->piece_lens[i] : strlen(s);
        if (len > UINT32_MAX - 1) {
            vocab_free(v);
            return llm_error(LLM_STATUS_BAD_FORMAT, "token %d is too long", (int)i);
        }
        v->len[i] = (uint32_t)len;
        v->off[i] = (uint32_t)total;
        total += len;
        if (total > UINT32_MAX - 1) {
            vocab_free(v);
            return llm_error(LLM_STATUS_BAD_FORMAT, "the vocabulary text is too large");
        }
        int32_t t = p->types ? p->types[i] : VOCAB_TOKEN_NORMAL;
        if (t <= VOCAB_TOKEN_UNDEFINED || t > VOCAB_TOKEN_BYTE) t = VOCAB_TOKEN_NORMAL;
        v->types[i] = (uint8_t)t;
        v->scores[i] = p->scores ? p->scores[i] : 0.0f;
        if (len > v->max_len) v->max_len = (uint32_t)len;
        if (t == VOCAB_TOKEN_USER_DEFINED || t == VOCAB_TOKEN_CONTROL || t == VOCAB_TOKEN_UNKNOWN) {
            literal_bytes += len;
        }
        if (t == VOCAB_TOKEN_UNUSED) v->n_unused++;
    }
    v->blob = llm_malloc((size_t)total + 1);
    if (!v->blob) goto oom;
    for (int32_t i = 0; i < n; i++) {
        if (v->len[i]) memcpy(v->blob + v->off[i], p->pieces[i], v->len[i]);
    }
    v->blob[total] = '\0';

    /* Byte tokens. */
    for (int b = 0; b < 256; b++) v->byte_id[b] = -1;
    for (int32_t i = 0; i < n; i++) {
        if (v->types[i] != VOCAB_TOKEN_BYTE) continue;
        int b = parse_byte_piece(piece_of(v, i), v->len[i]);
        if (b < 0) {
            int32_t st2 = llm_error(LLM_STATUS_BAD_FORMAT,
                                    "token %d has type BYTE but its text '%.*s' is not <0xNN>",
                                    (int)i, (int)LLM_MIN(v->len[i], 32u), piece_of(v, i));
            vocab_free(v);
            return st2;
        }
        if (v->byte_id[b] < 0) v->byte_id[b] = i;
        v->byte_fallback = true;
    }

    /* Hash table, at most half full. A repeated piece maps to its last id (as llama.cpp). */
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2u) cap <<= 1;
    v->table = llm_malloc((size_t)cap * sizeof *v->table);
    if (!v->table) goto oom;
    for (uint32_t i = 0; i < cap; i++) v->table[i] = -1;
    v->table_mask = cap - 1;
    for (int32_t i = 0; i < n; i++) {
        if (v->len[i] == 0) continue;
        const char *s = piece_of(v, i);
        uint32_t h = fnv1a(s, v->len[i]) & v->table_mask;
        while (v->table[h] >= 0) {
            int32_t o = v->table[h];
            if (v->len[o] == v->len[i] && memcmp(piece_of(v, o), s, v->len[i]) == 0) break;
            h = (h + 1) & v->table_mask;
        }
        v->table[h] = i;
    }

    if (v->n_unused == 0 && build_bigrams(v) != LLM_STATUS_OK) goto oom;

    /* Trie of the literal pieces. */
    for (int b = 0; b < 256; b++) v->root[b] = -1;
    v->trie = llm_malloc((size_t)(literal_bytes + 1) * sizeof *v->trie);
    if (!v->trie) goto oom;
    for (int32_t i = 0; i < n; i++) {
        uint8_t t = v->types[i];
        if (v->len[i] == 0) continue;
        if (t == VOCAB_TOKEN_USER_DEFINED) trie_insert(v, piece_of(v, i), v->len[i], i, true);
        if (t == VOCAB_TOKEN_CONTROL || t == VOCAB_TOKEN_UNKNOWN) {
            trie_insert(v, piece_of(v, i), v->len[i], i, false);
        }
    }

    v->bos = p->bos;
    v->eos = p->eos;
    v->unk = p->unk;
    v->pad = p->pad;
    v->eot = p->eot;
    v->eom = p->eom;
    v->add_bos = p->add_bos;
    v->add_eos = p->add_eos;
    v->add_space_prefix = p->add_space_prefix;

    add_eog(v, v->eos);
    add_eog(v, v->eot);
    add_eog(v, v->eom);
    for (size_t k = 0; k < sizeof EOG_TEXTS / sizeof EOG_TEXTS[0]; k++) {
        add_eog(v, lookup(v, EOG_TEXTS[k], (uint32_t)strlen(EOG_TEXTS[k])));
    }

    *out = v;
    return LLM_STATUS_OK;

oom:
    vocab_free(v);
    return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory building the vocabulary");
}

/* ------------------------------------------------------------------------------------------
 * Loading from GGUF
 * ---------------------------------------------------------------------------------------- */

static const gguf_kv *find_kv(const gguf_file *f, const char *key) {
    int64_t i = gguf_find_key(f, key);
    return i < 0 ? NULL : &f->kv[i];
}

/* A token id key: missing -> dflt (or -1 when dflt is not a valid id); negative or 0xFFFFFFFF
 * -> none; otherwise it must name a token. */
static int32_t read_id(const gguf_file *f, const char *key, llm_token dflt, int32_t n,
                       llm_token *id) {
    if (gguf_find_key(f, key) < 0) {
        *id = (dflt >= 0 && dflt < n) ? dflt : -1;
        return LLM_STATUS_OK;
    }
    int32_t i32;
    uint64_t u64;
    if (gguf_get_i32(f, key, &i32)) {
        if (i32 < 0) {
            *id = -1;
            return LLM_STATUS_OK;
        }
        if (i32 >= n) {
            return llm_error(LLM_STATUS_BAD_FORMAT, "%s = %d is out of range (vocabulary of %d)",
                             key, (int)i32, (int)n);
        }
        *id = i32;
        return LLM_STATUS_OK;
    }
    if (gguf_get_u64(f, key, &u64)) {
        if (u64 == UINT32_MAX || u64 == UINT64_MAX) {
            *id = -1;
            return LLM_STATUS_OK;
        }
        return llm_error(LLM_STATUS_BAD_FORMAT, "%s = %llu is out of range (vocabulary of %d)",
                         key, (unsigned long long)u64, (int)n);
    }
    return llm_error(LLM_STATUS_BAD_FORMAT, "%s is not an integer", key);
}

static int32_t read_flag(const gguf_file *f, const char *key, bool dflt, bool *out) {
    if (gguf_find_key(f, key) < 0) {
        *out = dflt;
        return LLM_STATUS_OK;
    }
    if (!gguf_get_bool(f, key, out)) return llm_error(LLM_STATUS_BAD_FORMAT, "%s is not a bool", key);
    return LLM_STATUS_OK;
}

static bool is_numeric_type(uint32_t t) {
    return t != GGUF_TYPE_STRING && t != GGUF_TYPE_ARRAY && t != GGUF_TYPE_BOOL && t < GGUF_TYPE_COUNT;
}

int32_t vocab_load(const gguf_file *f, llm_vocab **out) {
    if (!out) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "vocab_load: out is NULL");
    *out = NULL;
    if (!f) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "vocab_load: file is NULL");

    gguf_str model;
    if (gguf_find_key(f, "tokenizer.ggml.model") < 0) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the file has no tokenizer (tokenizer.ggml.model)");
    }
    if (!gguf_get_str(f, "tokenizer.ggml.model", &model)) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "tokenizer.ggml.model is not a string");
    }
    if (model.len != 5 || memcmp(model.ptr, "llama", 5) != 0) {
        int shown = (int)LLM_MIN(model.len, (uint64_t)64);
        return llm_error(LLM_STATUS_UNSUPPORTED, "tokenizer model '%.*s' is not supported yet",
                         shown, model.ptr);
    }

    const gguf_kv *tok_kv = find_kv(f, "tokenizer.ggml.tokens");
    if (!tok_kv) return llm_error(LLM_STATUS_BAD_FORMAT, "tokenizer.ggml.tokens is missing");
    if (tok_kv->type != GGUF_TYPE_ARRAY || tok_kv->arr_type != GGUF_TYPE_STRING) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "tokenizer.ggml.tokens is not an array of strings");
    }
    if (tok_kv->arr_n == 0) return llm_error(LLM_STATUS_BAD_FORMAT, "tokenizer.ggml.tokens is empty");
    if (tok_kv->arr_n > (uint64_t)(INT32_MAX >> 2)) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "tokenizer.ggml.tokens has too many entries (%llu)",
                         (unsigned long long)tok_kv->arr_n);
    }
    const int32_t n = (int32_t)tok_kv->arr_n;

    const gguf_kv *score_kv = find_kv(f, "tokenizer.ggml.scores");
    if (score_kv && (score_kv->type != GGUF_TYPE_ARRAY || !is_numeric_type(score_kv->arr_type))) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "tokenizer.ggml.scores is not a numeric array");
    }
    if (score_kv && score_kv->arr_n != (uint64_t)n) {
        return llm_error(LLM_STATUS_BAD_FORMAT,
                         "tokenizer.ggml.scores has %llu entries but there are %d tokens",
                         (unsigned long long)score_kv->arr_n, (int)n);
    }
    const gguf_kv *type_kv = find_kv(f, "tokenizer.ggml.token_type");
    if (type_kv && (type_kv->type != GGUF_TYPE_ARRAY || !is_numeric_type(type_kv->arr_type) ||
                    type_kv->arr_type == GGUF_TYPE_FLOAT32 ||
                    type_kv->arr_type == GGUF_TYPE_FLOAT64)) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "tokenizer.ggml.token_type is not an integer array");
    }
    if (type_kv && type_kv->arr_n != (uint64_t)n) {
        return llm_error(LLM_STATUS_BAD_FORMAT,
                         "tokenizer.ggml.token_type has %llu entries but there are %d tokens",
                         (unsigned long long)type_kv->arr_n, (int)n);
    }

    vocab_params p;
    vocab_params_default(&p);
    p.n_tokens = n;
    int32_t st;
    if ((st = read_id(f, "tokenizer.ggml.bos_token_id", 1, n, &p.bos)) ||
        (st = read_id(f, "tokenizer.ggml.eos_token_id", 2, n, &p.eos)) ||
        (st = read_id(f, "tokenizer.ggml.unknown_token_id", 0, n, &p.unk)) ||
        (st = read_id(f, "tokenizer.ggml.padding_token_id", -1, n, &p.pad)) ||
        (st = read_id(f, "tokenizer.ggml.eot_token_id", -1, n, &p.eot)) ||
        (st = read_id(f, "tokenizer.ggml.eom_token_id", -1, n, &p.eom)) ||
        (st = read_flag(f, "tokenizer.ggml.add_bos_token", true, &p.add_bos)) ||
        (st = read_flag(f, "tokenizer.ggml.add_eos_token", false, &p.add_eos)) ||
        (st = read_flag(f, "tokenizer.ggml.add_space_prefix", true, &p.add_space_prefix))) {
        return st;
    }

    gguf_str *strs = llm_malloc((size_t)n * sizeof *strs);
    const char **pieces = llm_malloc((size_t)n * sizeof *pieces);
    uint32_t *lens = llm_malloc((size_t)n * sizeof *lens);
    float *scores = score_kv ? llm_malloc((size_t)n * sizeof *scores) : NULL;
    int32_t *types = type_kv ? llm_malloc((size_t)n * sizeof *types) : NULL;
    if (!strs || !pieces || !lens || (score_kv && !scores) || (type_kv && !types)) {
        st = llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory reading the vocabulary");
        goto done;
    }
    if (!gguf_arr_strs(tok_kv, strs, (uint64_t)n)) {
        st = llm_error(LLM_STATUS_BAD_FORMAT, "tokenizer.ggml.tokens cannot be read");
        goto done;
    }
    for (int32_t i = 0; i < n; i++) {
        if (strs[i].len > UINT32_MAX - 1) {
            st = llm_error(LLM_STATUS_BAD_FORMAT, "token %d is too long", (int)i);
            goto done;
        }
        pieces[i] = strs[i].ptr;
        lens[i] = (uint32_t)strs[i].len;
    }
    for (int32_t i = 0; score_kv && i < n; i++) {
        double d;
        if (!gguf_arr_num(score_kv, (uint64_t)i, &d)) {
            st = llm_error(LLM_STATUS_BAD_FORMAT, "tokenizer.ggml.scores[%d] cannot be read", (int)i);
            goto done;
        }
        scores[i] = (float)d;
    }
    for (int32_t i = 0; type_kv && i < n; i++) {
        int64_t t;
        if (!gguf_arr_int(type_kv, (uint64_t)i, &t) || t < INT32_MIN || t > INT32_MAX) {
            st = llm_error(LLM_STATUS_BAD_FORMAT, "tokenizer.ggml.token_type[%d] is invalid", (int)i);
            goto done;
        }
        types[i] = (int32_t)t;
    }
    p.pieces = pieces;
    p.piece_lens = lens;
    p.scores = scores;
    p.types = types;
    st = vocab_build(&p, out);

done:
    llm_free(strs);
    llm_free(pieces);
    llm_free(lens);
    llm_free(scores);
    llm_free(types);
    return st;
}

/* ------------------------------------------------------------------------------------------
 * Accessors
 * ---------------------------------------------------------------------------------------- */

int32_t vocab_n_tokens(const llm_vocab *v) { return v ? v->n_tokens : 0; }
llm_token vocab_bos(const llm_vocab *v) { return v ? v->bos : -1; }
llm_token vocab_eos(const llm_vocab *v) { return v ? v->eos : -1; }
llm_token vocab_unk(const llm_vocab *v) { return v ? v->unk : -1; }
llm_token vocab_pad(const llm_vocab *v) { return v ? v->pad : -1; }
bool vocab_add_bos(const llm_vocab *v) { return v && v->add_bos; }
bool vocab_add_eos(const llm_vocab *v) { return v && v->add_eos; }
bool vocab_add_space_prefix(const llm_vocab *v) { return v && v->add_space_prefix; }

bool vocab_is_eog(const llm_vocab *v, llm_token t) {
    if (!v || t < 0) return false;
    for (int32_t i = 0; i < v->n_eog; i++) {
        if (v->eog[i] == t) return true;
    }
    return false;
}

bool vocab_token_info(const llm_vocab *v, llm_token t, const char **text, uint32_t *len,
                      float *score, int32_t *type) {
    if (!v || t < 0 || t >= v->n_tokens) return false;
    if (text) *text = piece_of(v, t);
    if (len) *len = v->len[t];
    if (score) *score = v->scores[t];
    if (type) *type = v->types[t];
    return true;
}

/* ------------------------------------------------------------------------------------------
 * Tokenizing
 * ---------------------------------------------------------------------------------------- */

typedef struct symbol {
    int32_t prev, next;   /* neighbours in the list of live symbols, -1 at the ends */
    uint32_t start, len;  /* bytes of the normalized text; len 0 once merged into its left */
    bool frozen;          /* a USER_DEFINED piece: never merged */
} symbol;

typedef struct pair {
    float score;
    int32_t left, right;
    uint32_t size;        /* bytes of the two symbols when proposed (detects stale entries) */
} pair;

typedef struct rev_entry { /* how an UNUSED piece was last proposed: left and right parts */
    int32_t id;
    uint32_t ls, ll, rs, rl;
} rev_entry;

typedef struct tok_state {
    const llm_vocab *v;
    char *buf;            /* normalized text of the current run */
    symbol *sym;
    pair *heap;
    size_t heap_n, heap_cap;
    rev_entry *rev;       /* open addressing by id, allocated when an UNUSED piece shows up */
    uint32_t rev_mask;
    llm_token *out;
    int64_t out_cap;
    int64_t n_out;
    bool prev_unk;        /* the last symbol of this run gave <unk> (runs of them give one) */
} tok_state;

static void push_token(tok_state *s, llm_token t) {
    if (s->n_out < s->out_cap) s->out[s->n_out] = t;
    s->n_out++;
}

/* a comes out of the heap before b */
static inline bool pair_first(const pair *a, const pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int32_t heap_push(tok_state *s, pair p) {
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
        pair *h = llm_realloc(s->heap, cap * sizeof *h);
        if (!h) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory tokenizing");
        s->heap = h;
        s->heap_cap = cap;
    }
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_first(&p, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = p;
    return LLM_STATUS_OK;
}

static pair heap_pop(tok_state *s) {
    pair top = s->heap[0];
    pair last = s->heap[--s->heap_n];
    size_t n = s->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_first(&s->heap[c + 1], &s->heap[c])) c++;
        if (!pair_first(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

static rev_entry *rev_find(tok_state *s, int32_t id, bool insert) {
    uint32_t h = ((uint32_t)id * 2654435761u) & s->rev_mask;
    for (;;) {
        rev_entry *e = &s->rev[h];
        if (e->id == id) return e;
        if (e->id < 0) return insert ? e : NULL;
        h = (h + 1) & s->rev_mask;
    }
}

static int32_t rev_record(tok_state *s, int32_t id, const symbol *l, const symbol *r) {
    if (!s->rev) {
        uint32_t cap = 16;
        while (cap < (uint32_t)s->v->n_unused * 2u) cap <<= 1;
        s->rev = llm_malloc((size_t)cap * sizeof *s->rev);
        if (!s->rev) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory tokenizing");
        for (uint32_t i = 0; i < cap; i++) s->rev[i].id = -1;
        s->rev_mask = cap - 1;
    }
    rev_entry *e = rev_find(s, id, true);
    *e = (rev_entry){id, l->start, l->len, r->start, r->len};
    return LLM_STATUS_OK;
}

/* Proposes merging symbols l and r when their concatenation is a piece. */
static int32_t try_pair(tok_state *s, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return LLM_STATUS_OK;
    const symbol *a = &s->sym[l], *b = &s->sym[r];
    if (a->frozen || b->frozen) return LLM_STATUS_OK;
    uint32_t size = a->len + b->len;
    int32_t id = lookup(s->v, s->buf + a->start, size);
    if (id < 0 || !is_mergeable(s->v->types[id])) return LLM_STATUS_OK;
    int32_t st = heap_push(s, (pair){s->v->scores[id], l, r, size});
    if (st) return st;
    if (s->v->types[id] == VOCAB_TOKEN_UNUSED) return rev_record(s, id, a, b);
    return LLM_STATUS_OK;
}

/* Output of one final symbol buf[start..start+len). */
static void emit_symbol(tok_state *s, uint32_t start, uint32_t len) {
    const llm_vocab *v = s->v;
    int32_t id = lookup(v, s->buf + start, len);
    if (id >= 0 && v->types[id] == VOCAB_TOKEN_UNUSED && s->rev) {
        const rev_entry *e = rev_find(s, id, false);
        if (e) {
            rev_entry split = *e;
            emit_symbol(s, split.ls, split.ll);
            emit_symbol(s, split.rs, split.rl);
            return;
        }
    }
    if (id >= 0 && v->types[id] != VOCAB_TOKEN_UNKNOWN) {
        push_token(s, id);
        s->prev_unk = false;
        return;
    }
    /* Not a piece (or a piece of type UNKNOWN): bytes, or one <unk> for a run. */
    if (v->byte_fallback) {
        for (uint32_t i = 0; i < len; i++) {
            int32_t b = v->byte_id[(uint8_t)s->buf[start + i]];
            if (b < 0) b = v->unk;
            if (b >= 0) push_token(s, b);
        }
        s->prev_unk = true;
        return;
    }
    if (!s->prev_unk && v->unk >= 0) push_token(s, v->unk);
    s->prev_unk = true;
}

/* Tokenizes one run of plain text (no special tokens inside). */
static int32_t tokenize_run(tok_state *s, const char *text, size_t n, bool prefix) {
    const llm_vocab *v = s->v;
    if (n == 0) return LLM_STATUS_OK;

    /* Normalize: optional leading U+2581, spaces escaped. buf has room for 3 * n + 3. */
    size_t m = 0;
    if (prefix) {
        memcpy(s->buf, SPACE_SYM, SPACE_SYM_LEN);
        m = SPACE_SYM_LEN;
    }
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') {
            memcpy(s->buf + m, SPACE_SYM, SPACE_SYM_LEN);
            m += SPACE_SYM_LEN;
        } else {
            s->buf[m++] = text[i];
        }
    }

    /* Symbols. */
    int32_t n_sym = 0;
    for (size_t i = 0; i < m;) {
        uint32_t len = 0;
        bool frozen = false;
        if (v->first_ud[(uint8_t)s->buf[i]]) {
            int32_t id;
            len = trie_match(v, s->buf + i, m - i, true, &id);
            frozen = len > 0;
        }
        if (len == 0) len = unit_len((const uint8_t *)s->buf + i, m - i);
        s->sym[n_sym] = (symbol){n_sym - 1, -1, (uint32_t)i, len, frozen};
        if (n_sym > 0) s->sym[n_sym - 1].next = n_sym;
        n_sym++;
        i += len;
    }

    /* Merges, stretch by stretch (see llm_vocab.bigrams): a stretch ends where the characters
     * on both sides of a join never meet inside a piece, or next to a frozen symbol. Pairs that
     * reach across a stretch end are still proposed, and never found in the vocabulary. */
    int32_t st;
    if (s->rev) {
        for (uint32_t i = 0; i <= s->rev_mask; i++) s->rev[i].id = -1;
    }
    uint32_t prev_code = 0;
    for (int32_t a = 0; a < n_sym;) {
        int32_t b = a + 1;
        if (!v->bigrams) {
            b = n_sym;
        } else {
            prev_code = unit_code((const uint8_t *)s->buf + s->sym[a].start, s->sym[a].len);
            for (; b < n_sym; b++) {
                const symbol *x = &s->sym[b - 1], *y = &s->sym[b];
                if (x->frozen || y->frozen) break;
                uint32_t code = unit_code((const uint8_t *)s->buf + y->start, y->len);
                if (!bigram_has(v, prev_code, code)) break;
                prev_code = code;
            }
        }
        s->heap_n = 0;
        for (int32_t i = a + 1; i < b; i++) {
            if ((st = try_pair(s, i - 1, i))) return st;
        }
        while (s->heap_n > 0) {
            pair p = heap_pop(s);
            symbol *l = &s->sym[p.left], *r = &s->sym[p.right];
            if (l->len == 0 || r->len == 0 || l->len + r->len != p.size) continue;
            l->len += r->len;
            r->len = 0;
            l->next = r->next;
            if (r->next >= 0) s->sym[r->next].prev = p.left;
            if ((st = try_pair(s, l->prev, p.left))) return st;
            if ((st = try_pair(s, p.left, l->next))) return st;
        }
        a = b;
    }

    /* Output. */
    s->prev_unk = false;
    for (int32_t i = 0; i >= 0; i = s->sym[i].next) emit_symbol(s, s->sym[i].start, s->sym[i].len);
    return LLM_STATUS_OK;
}

int32_t vocab_tokenize(const llm_vocab *v, const char *text, int32_t text_len, llm_token *tokens,
                       int32_t n_tokens_max, bool add_special, bool parse_special) {
    if (!v) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "tokenize: no vocabulary");
        return LLM_INT32_ERROR;
    }
    if (text_len < 0 || (!text && text_len > 0)) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "tokenize: invalid text (length %d)", (int)text_len);
        return LLM_INT32_ERROR;
    }
    if (n_tokens_max < 0 || (!tokens && n_tokens_max > 0)) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "tokenize: invalid token buffer (size %d)",
                  (int)n_tokens_max);
        return LLM_INT32_ERROR;
    }
    const size_t n = (size_t)text_len;
    if ((uint64_t)n * 3 + 3 > UINT32_MAX) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "tokenize: text of %d bytes is too long",
                  (int)text_len);
        return LLM_INT32_ERROR;
    }

    tok_state s;
    memset(&s, 0, sizeof s);
    s.v = v;
    s.out = tokens;
    s.out_cap = n_tokens_max;
    int32_t st = LLM_STATUS_OK;
    if (n > 0) {
        s.buf = llm_malloc(n * 3 + 3);
        s.sym = llm_malloc((n + 1) * sizeof *s.sym);
        if (!s.buf || !s.sym) {
            st = llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory tokenizing %d bytes",
                           (int)text_len);
            goto done;
        }
    }

    if (add_special && v->add_bos && v->bos >= 0) push_token(&s, v->bos);

    /* Runs of plain text between special tokens; each run that starts the text or follows a
     * special token gets the space prefix. */
    bool after_special = true;
    size_t run = 0;
    if (parse_special) {
        for (size_t i = 0; i < n;) {
            int32_t id = -1;
            uint32_t len = v->first_sp[(uint8_t)text[i]] ? trie_match(v, text + i, n - i, false, &id)
                                                         : 0;
            if (len == 0) {
                i++;
                continue;
            }
            if (i > run) {
                if ((st = tokenize_run(&s, text + run, i - run, v->add_space_prefix && after_special))) {
                    goto done;
                }
                after_special = false;
            }
            push_token(&s, id);
            after_special = true;
            i += len;
            run = i;
        }
    }
    if (n > run) {
        st = tokenize_run(&s, text + run, n - run, v->add_space_prefix && after_special);
        if (st) goto done;
    }

    if (add_special && v->add_eos && v->eos >= 0) push_token(&s, v->eos);

done:
    llm_free(s.buf);
    llm_free(s.sym);
    llm_free(s.heap);
    llm_free(s.rev);
    if (st) return LLM_INT32_ERROR;
    if (s.n_out > INT32_MAX) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "tokenize: too many tokens");
        return LLM_INT32_ERROR;
    }
    return s.n_out <= n_tokens_max ? (int32_t)s.n_out : -(int32_t)s.n_out;
}

/* ------------------------------------------------------------------------------------------
 * Pieces and detokenizing
 * ---------------------------------------------------------------------------------------- */

typedef struct text_out {
    char *buf;
    int64_t cap;
    int64_t n;   /* bytes produced so far (written while they fit) */
} text_out;

static void put(text_out *o, const char *s, size_t len) {
    if (o->n + (int64_t)len <= o->cap && len > 0) memcpy(o->buf + o->n, s, len);
    o->n += (int64_t)len;
}

/* s[0..n) with every U+2581 written as a space. */
static void put_unescaped(text_out *o, const char *s, size_t n) {
    size_t i = 0, from = 0;
    while (i + SPACE_SYM_LEN <= n) {
        if (memcmp(s + i, SPACE_SYM, SPACE_SYM_LEN) == 0) {
            put(o, s + from, i - from);
            put(o, " ", 1);
            i += SPACE_SYM_LEN;
            from = i;
        } else {
            i++;
        }
    }
    put(o, s + from, n - from);
}

/* The text of one token; strip_space drops a leading U+2581 of a text piece (and says whether
 * it did). */
static void put_piece(const llm_vocab *v, text_out *o, llm_token t, bool special, bool strip_space,
                      bool *stripped) {
    const char *s = piece_of(v, t);
    size_t n = v->len[t];
    if (stripped) *stripped = false;
    switch (v->types[t]) {
    case VOCAB_TOKEN_CONTROL:
        if (special) put(o, s, n);
        return;
    case VOCAB_TOKEN_UNKNOWN:
        if (special) {
            put(o, s, n);
        } else {
            put(o, UNK_SURFACE, UNK_SURFACE_LEN);
        }
        return;
    case VOCAB_TOKEN_BYTE: {
        char b = (char)parse_byte_piece(s, (uint32_t)n);
        put(o, &b, 1);
        return;
    }
    default:
        if (strip_space && n >= SPACE_SYM_LEN && memcmp(s, SPACE_SYM, SPACE_SYM_LEN) == 0) {
            s += SPACE_SYM_LEN;
            n -= SPACE_SYM_LEN;
            if (stripped) *stripped = true;
        }
        put_unescaped(o, s, n);
        return;
    }
}

int32_t vocab_token_to_piece(const llm_vocab *v, llm_token t, char *buf, int32_t buf_size,
                             bool special) {
    if (!v || t < 0 || t >= v->n_tokens) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "token_to_piece: invalid token %d", (int)t);
        return LLM_INT32_ERROR;
    }
    if (buf_size < 0 || (!buf && buf_size > 0)) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "token_to_piece: invalid buffer (size %d)",
                  (int)buf_size);
        return LLM_INT32_ERROR;
    }
    text_out o = {buf, buf_size, 0};
    put_piece(v, &o, t, special, false, NULL);
    if (o.n > INT32_MAX) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "token_to_piece: piece too long");
        return LLM_INT32_ERROR;
    }
    return o.n <= buf_size ? (int32_t)o.n : -(int32_t)o.n;
}

static uint8_t byte_of(const llm_vocab *v, llm_token t) {
    return (uint8_t)parse_byte_piece(piece_of(v, t), v->len[t]);
}

/* Writes the bytes of the byte tokens t[0..n) as text: valid UTF-8 characters as they are,
 * every other byte as U+FFFD (as SentencePiece's decoder does). */
static void put_bytes(const llm_vocab *v, text_out *o, const llm_token *t, int32_t n) {
    int32_t i = 0;
    while (i < n) {
        uint8_t c[4];
        int32_t k = 0;
        for (; k < 4 && i + k < n; k++) c[k] = byte_of(v, t[i + k]);
        uint32_t len = utf8_valid_len(c, (size_t)k);
        if (len == 0) {
            put(o, REPLACEMENT_CHAR, 3);
            i++;
        } else {
            put(o, (const char *)c, len);
            i += (int32_t)len;
        }
    }
}

int32_t vocab_detokenize(const llm_vocab *v, const llm_token *tokens, int32_t n_tokens, char *buf,
                         int32_t buf_size, bool remove_special, bool unparse_special) {
    if (!v) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "detokenize: no vocabulary");
        return LLM_INT32_ERROR;
    }
    if (n_tokens < 0 || (!tokens && n_tokens > 0)) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "detokenize: invalid tokens (count %d)",
                  (int)n_tokens);
        return LLM_INT32_ERROR;
    }
    if (buf_size < 0 || (!buf && buf_size > 0)) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "detokenize: invalid buffer (size %d)",
                  (int)buf_size);
        return LLM_INT32_ERROR;
    }
    for (int32_t i = 0; i < n_tokens; i++) {
        if (tokens[i] < 0 || tokens[i] >= v->n_tokens) {
            llm_error(LLM_STATUS_INVALID_ARGUMENT, "detokenize: invalid token %d at position %d",
                      (int)tokens[i], (int)i);
            return LLM_INT32_ERROR;
        }
    }
    if (remove_special && n_tokens > 0 && v->bos >= 0 && tokens[0] == v->bos) {
        tokens++;
        n_tokens--;
    }
    if (remove_special && n_tokens > 0 && v->eos >= 0 && tokens[n_tokens - 1] == v->eos) {
        n_tokens--;
    }

    text_out o = {buf, buf_size, 0};
    /* The space prefix is dropped from the first text piece that comes before any output. */
    bool expect_prefix = v->add_space_prefix;
    int32_t i = 0;
    while (i < n_tokens) {
        llm_token t = tokens[i];
        if (v->types[t] == VOCAB_TOKEN_BYTE) {
            int32_t j = i;
            while (j < n_tokens && v->types[tokens[j]] == VOCAB_TOKEN_BYTE) j++;
            put_bytes(v, &o, tokens + i, j - i);
            i = j;
            continue;
        }
        if (o.n > 0) expect_prefix = false;
        bool stripped = false;
        put_piece(v, &o, t, unparse_special, expect_prefix, &stripped);
        if (stripped) expect_prefix = false;
        i++;
    }
    if (o.n > INT32_MAX) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "detokenize: text too long");
        return LLM_INT32_ERROR;
    }
    return o.n <= buf_size ? (int32_t)o.n : -(int32_t)o.n;
}
