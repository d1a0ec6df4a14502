/* Prompt sources of the serving benchmark (see serve_prompts.h). */
#define _GNU_SOURCE
#include "bench/serve_prompts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/st_common.h"

/* Frequent English words; " word" is a single token in common vocabularies. */
static const char *const words[] = {
    "the",    "of",     "and",    "to",     "in",     "is",     "was",    "for",    "that",   "on",     "with",
    "as",     "by",     "at",     "from",   "his",    "it",     "an",     "were",   "are",    "which",  "this",
    "be",     "or",     "has",    "had",    "first",  "one",    "their",  "its",    "new",    "after",  "but",
    "who",    "not",    "they",   "have",   "her",    "she",    "two",    "been",   "other",  "when",   "there",
    "all",    "during", "into",   "school", "time",   "may",    "years",  "more",   "most",   "only",   "over",
    "city",   "some",   "world",  "would",  "where",  "later",  "up",     "such",   "used",   "many",   "can",
    "state",  "about",  "national", "out",  "known",  "university", "united", "then", "made",   "also",   "between",
    "while",  "year",   "three",  "him",    "team",   "under",  "house",  "before", "high",   "river",  "war",
    "called", "part",   "since",  "group",  "long",   "music",  "early",  "people", "well",   "water",  "back",
    "around", "film",   "game",   "family", "life",   "name",   "will",   "could",  "these",  "north",  "south",
    "west",   "east",   "small",  "large",  "public", "area",   "work",   "day",    "light",  "road",   "book",
    "home",   "church", "second", "power",  "line",   "town",   "head",   "story",  "land",   "field",  "county",
    "party",  "side",   "black",  "white",  "great",  "old",    "young",  "night",  "sea",    "port",   "army",
    "king",   "court",  "college", "garden", "money", "paper",  "table",  "window", "green",  "red",    "blue",
    "open",   "free",   "full",   "last",   "best",   "own",    "same",   "good",   "deep",   "main",   "local",
    "real",   "short",  "hand",   "eye",    "face",   "door",   "fire",   "air",    "car",    "train",  "ship",
    "bird",   "tree",   "stone",  "gold",   "iron",   "wood",   "glass",  "salt",   "bread",  "milk",   "tea",
    "horse",  "dog",    "fish",   "cat",    "song",   "word",   "voice",  "mind",   "heart",  "body",   "child",
    "friend", "market", "price",  "trade",  "law",    "rule",   "plan",   "test",   "data",   "model",  "system",
};

void st_prompts_random(int n, int n_words, uint64_t seed, st_prompt_set *out)
{
    const int nw = (int)ST_ARRAY_LEN(words);
    out->n = n;
    out->text = st_xcalloc((size_t)n, sizeof(char *));
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < n; i++) {
        st_strbuf sb;
        st_sb_init(&sb);
        for (int w = 0; w < n_words; w++) {
            x ^= x >> 12, x ^= x << 25, x ^= x >> 27; /* xorshift64* */
            int k = (int)(((x * 0x2545F4914F6CDD1Dull) >> 33) % (uint64_t)nw);
            if (w == 0) /* distinct first words: no shared prefix among the first nw prompts */
                k = (i + (int)(seed % (uint64_t)nw)) % nw;
            if (w)
                st_sb_puts(&sb, " ");
            st_sb_puts(&sb, words[k]);
        }
        out->text[i] = sb.buf ? sb.buf : st_xstrdup("");
    }
}

int st_prompts_load(const char *path, st_prompt_set *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return st_err(ST_EIO, "cannot open %s", path);
    out->n = 0;
    out->text = NULL;
    int cap = 0, lineno = 0, rc = ST_OK;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            len--;
        if (!len)
            continue;
        st_json *j = NULL;
        if (st_json_parse(line, (size_t)len, &j) || j->type != ST_JSON_STRING || !j->u.str.len ||
            strlen(j->u.str.s) != j->u.str.len) {
            if (j)
                st_json_free(j);
            rc = st_err(ST_EINVAL, "%s:%d: expected one non-empty JSON string per line", path, lineno);
            break;
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            out->text = st_xrealloc(out->text, sizeof(char *) * (size_t)cap);
        }
        out->text[out->n++] = st_xstrdup(j->u.str.s);
        st_json_free(j);
    }
    free(line);
    fclose(f);
    if (!rc && !out->n)
        rc = st_err(ST_EINVAL, "%s holds no prompts", path);
    if (rc)
        st_prompts_free(out);
    return rc;
}

void st_prompts_free(st_prompt_set *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->text[i]);
    free(p->text);
    p->text = NULL;
    p->n = 0;
}
