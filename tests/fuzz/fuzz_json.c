/* libFuzzer target for the JSON parser: parse arbitrary bytes; on success
 * walk the whole tree, look every member up by name, and check that each
 * string survives a round trip through the writer and the parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/st_common.h"

static void walk(const st_json *j, st_strbuf *sb)
{
    switch (j->type) {
    case ST_JSON_STRING: {
        /* writer output is valid JSON that parses back to the same bytes */
        sb->len = 0;
        st_sb_json_str(sb, j->u.str.s, j->u.str.len);
        st_json *back = NULL;
        if (st_json_parse(sb->buf, sb->len, &back) != ST_OK || back->type != ST_JSON_STRING ||
            back->u.str.len != j->u.str.len || memcmp(back->u.str.s, j->u.str.s, j->u.str.len) != 0)
            abort();
        st_json_free(back);
        break;
    }
    case ST_JSON_NUMBER: {
        int64_t v;
        (void)st_json_as_int(j, INT64_MIN, INT64_MAX, &v);
        break;
    }
    case ST_JSON_ARRAY:
        for (size_t i = 0; i < j->u.arr.n; i++)
            walk(&j->u.arr.items[i], sb);
        break;
    case ST_JSON_OBJECT:
        for (size_t i = 0; i < j->u.obj.n; i++) {
            /* lookup by name finds this member or a later duplicate (last wins) */
            if (strlen(j->u.obj.keys[i]) == j->u.obj.key_lens[i] && !st_json_get(j, j->u.obj.keys[i]))
                abort();
            walk(&j->u.obj.vals[i], sb);
        }
        break;
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_json *j = NULL;
    if (st_json_parse((const char *)data, size, &j) != ST_OK)
        return 0;
    st_strbuf sb;
    st_sb_init(&sb);
    walk(j, &sb);
    st_sb_free(&sb);
    st_json_free(j);
    return 0;
}
