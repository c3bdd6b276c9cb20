
/*
 * Copyright (C) aigw authors
 */


/*
 * Unit test of the cache key's canonical digest of a body, built
 * standalone against the include directories of a configured nginx tree
 * and linked with libcrypto (see t/unit/README.md):
 *
 *     test_cache_key
 *
 * Pairs of bodies that must have one digest (keys reordered, numbers
 * written otherwise, escapes, a content string and its one text block)
 * and pairs that must not; every body is copied to a buffer of its exact
 * size, and every strict prefix of it must be refused, never read past.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_scan.c"
#include "../../ngx_http_aigw_module/ngx_http_aigw_cache_key.c"
#include "t_unit.h"


#define T_STACK  64


static ngx_str_t  t_exclude[] = {
    ngx_string("user"),
    ngx_string("metadata"),
    ngx_string("stream"),
    ngx_string("stream_options")
};


static EVP_MD_CTX  *t_md_ctx;


static ngx_int_t
t_key(const char *s, size_t n, ngx_uint_t stack, u_char *out)
{
    u_char                     *buf;
    ngx_int_t                   rc;
    ngx_http_aigw_cache_key_t   k;

    memset(&k, 0, sizeof(k));

    buf = t_dup((const u_char *) s, n);

    k.md = EVP_sha256();
    k.md_ctx = t_md_ctx;
    k.scratch = t_alloc(n + 64);
    k.stack = t_alloc(stack * NGX_HTTP_AIGW_CACHE_KEY_LEN);
    k.size = stack;
    k.exclude = t_exclude;
    k.nexclude = 4;

    rc = ngx_http_aigw_cache_key_body(&k, buf, buf + n, out);

    free(k.stack);
    free(k.scratch);
    free(buf);

    return rc;
}


typedef struct {
    const char  *a;
    const char  *b;
} t_pair_t;


static t_pair_t  t_same[] = {
    { "{\"a\":1,\"b\":2}", "{\"b\":2,\"a\":1}" },
    { "{\"a\":1,\"b\":2}", " { \"b\" : 2 ,\n\t\"a\" : 1 } " },
    { "{\"x\":{\"p\":[1,2],\"q\":null}}", "{\"x\":{\"q\":null,\"p\":[1,2]}}" },
    { "{\"t\":1}", "{\"t\":1.0}" },
    { "{\"t\":1}", "{\"t\":10e-1}" },
    { "{\"t\":1}", "{\"t\":0.1E+1}" },
    { "{\"t\":1}", "{\"t\":100e-2}" },
    { "{\"t\":0}", "{\"t\":-0.000}" },
    { "{\"t\":0}", "{\"t\":0e99}" },
    { "{\"t\":-25}", "{\"t\":-2.5e1}" },
    { "{\"t\":123456789012345678901234567890}",
      "{\"t\":1.2345678901234567890123456789e29}" },
    { "{\"t\":1e9999999999}", "{\"t\":1e9999999999}" },
    { "{\"s\":\"A\"}", "{\"s\":\"\\u0041\"}" },
    { "{\"s\":\"\xc3\xa9\"}", "{\"s\":\"\\u00e9\"}" },
    { "{\"\\u0073\":1}", "{\"s\":1}" },
    { "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
      "{\"messages\":[{\"role\":\"user\",\"content\":"
      "[{\"type\":\"text\",\"text\":\"hi\"}]}]}" },
    { "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
      "{\"messages\":[{\"content\":[{\"text\":\"hi\",\"type\":\"text\"}],"
      "\"role\":\"user\"}]}" },
    { "{\"system\":\"be brief\",\"messages\":[]}",
      "{\"system\":[{\"type\":\"text\",\"text\":\"be brief\"}],"
      "\"messages\":[]}" },
    { "{\"model\":\"a\",\"m\":[]}", "{\"model\":\"b\",\"m\":[]}" },
    { "{\"user\":\"alice\",\"m\":[]}", "{\"m\":[],\"user\":\"bob\"}" },
    { "{\"stream\":true,\"stream_options\":{\"include_usage\":true},"
      "\"metadata\":{\"a\":1},\"m\":[]}", "{\"m\":[]}" },
    { "{}", "{ }" },
    { "{\"a\":[]}", "{\"a\":[ ]}" },
    { NULL, NULL }
};


static t_pair_t  t_differ[] = {
    { "{\"a\":1}", "{\"a\":2}" },
    { "{\"a\":1}", "{\"b\":1}" },
    { "{\"a\":1}", "{\"a\":\"1\"}" },
    { "{\"a\":1}", "{\"a\":-1}" },
    { "{\"a\":1}", "{\"a\":1e1}" },
    { "{\"a\":1}", "{\"a\":true}" },
    { "{\"a\":true}", "{\"a\":false}" },
    { "{\"a\":null}", "{\"a\":false}" },
    { "{\"a\":null}", "{}" },
    { "{\"a\":[1,2]}", "{\"a\":[2,1]}" },
    { "{\"a\":[1,2]}", "{\"a\":[[1,2]]}" },
    { "{\"a\":[]}", "{\"a\":{}}" },
    { "{\"a\":\"\"}", "{\"a\":[]}" },
    { "{\"a\":{\"b\":1,\"c\":2}}", "{\"a\":{\"b\":2,\"c\":1}}" },
    { "{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"bc\":\"\"}}" },
    { "{\"a\":\"x\",\"b\":\"y\"}", "{\"a\":\"y\",\"b\":\"x\"}" },
    { "{\"t\":1e9999999999}", "{\"t\":1e9999999998}" },
    { "{\"s\":\"hi\"}", "{\"s\":\"hi \"}" },
    { "{\"s\":\"hi\"}", "{\"s\":\"Hi\"}" },
    /* one text block is a string only as "content" or "system" */
    { "{\"input\":\"hi\"}",
      "{\"input\":[{\"type\":\"text\",\"text\":\"hi\"}]}" },
    /* two blocks, or a block with more, are not a string */
    { "{\"content\":\"hihi\"}",
      "{\"content\":[{\"type\":\"text\",\"text\":\"hi\"},"
      "{\"type\":\"text\",\"text\":\"hi\"}]}" },
    { "{\"content\":\"hi\"}",
      "{\"content\":[{\"type\":\"text\",\"text\":\"hi\","
      "\"cache_control\":{\"type\":\"ephemeral\"}}]}" },
    { "{\"content\":\"hi\"}",
      "{\"content\":[{\"type\":\"image\",\"text\":\"hi\"}]}" },
    { "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
      "{\"role\":\"user\",\"content\":\"b\"}]}",
      "{\"messages\":[{\"role\":\"user\",\"content\":\"b\"},"
      "{\"role\":\"user\",\"content\":\"a\"}]}" },
    { "{\"tools\":[{\"name\":\"a\"}],\"m\":1}",
      "{\"tools\":[{\"name\":\"b\"}],\"m\":1}" },
    { "{\"temperature\":0.5,\"m\":1}", "{\"temperature\":0.6,\"m\":1}" },
    { NULL, NULL }
};


static void
t_pairs(t_pair_t *p, ngx_uint_t same)
{
    ngx_int_t  ra, rb;
    u_char     da[NGX_HTTP_AIGW_CACHE_KEY_LEN], db[NGX_HTTP_AIGW_CACHE_KEY_LEN];

    for ( /* void */ ; p->a; p++) {
        ra = t_key(p->a, strlen(p->a), T_STACK, da);
        rb = t_key(p->b, strlen(p->b), T_STACK, db);

        t_check(ra == NGX_OK && rb == NGX_OK, "keyed: %s | %s", p->a, p->b);

        t_check((memcmp(da, db, sizeof(da)) == 0) == (same != 0),
                "%s: %s | %s", same ? "same" : "differ", p->a, p->b);
    }
}


/* every strict prefix of a body is refused, and read within its bytes */

static void
t_prefixes(t_pair_t *p)
{
    size_t     n, i;
    ngx_int_t  rc;
    u_char     d[NGX_HTTP_AIGW_CACHE_KEY_LEN];

    for ( /* void */ ; p->a; p++) {
        n = strlen(p->b);

        for (i = 0; i < n; i++) {
            rc = t_key(p->b, i, T_STACK, d);

            /* trailing white space cut: what is left may still be whole */
            if (i && p->b[i - 1] == '}') {
                continue;
            }

            t_check(rc == NGX_ERROR, "prefix %zu refused: %s", i, p->b);
        }
    }
}


static void
t_limits(void)
{
    char         buf[1024];
    size_t       n;
    ngx_uint_t   i;
    const char  *s;
    u_char       d[NGX_HTTP_AIGW_CACHE_KEY_LEN];

    /* more object members open at once than the stack holds */
    n = 0;
    n += sprintf(buf + n, "{\"a\":{");
    for (i = 0; i < 100; i++) {
        n += sprintf(buf + n, "%s\"%u\":%u", i ? "," : "", (unsigned) i,
                     (unsigned) i);
    }
    n += sprintf(buf + n, "}}");

    t_check(t_key(buf, n, T_STACK, d) == NGX_DECLINED,
            "a stack too small: declined");
    t_check(t_key(buf, n, 128, d) == NGX_OK, "a stack large enough: ok");

    /* nested too deeply */
    n = 0;
    n += sprintf(buf + n, "{\"a\":");
    for (i = 0; i < 70; i++) {
        buf[n++] = '[';
    }
    for (i = 0; i < 70; i++) {
        buf[n++] = ']';
    }
    buf[n++] = '}';

    t_check(t_key(buf, n, T_STACK, d) == NGX_DECLINED,
            "too deep: declined");

    /* a key twice: which one counts is the provider's to say */
    t_check(t_key("{\"a\":1,\"a\":2}", 13, T_STACK, d) == NGX_DECLINED,
            "a key twice: declined");
    s = "{\"x\":{\"a\":1,\"\\u0061\":1}}";
    t_check(t_key(s, strlen(s), T_STACK, d) == NGX_DECLINED,
            "a key twice, once escaped: declined");

    /* an array of many values holds no stack */
    n = 0;
    n += sprintf(buf + n, "{\"a\":[");
    for (i = 0; i < 100; i++) {
        n += sprintf(buf + n, "%s%u", i ? "," : "", (unsigned) i);
    }
    n += sprintf(buf + n, "]}");

    t_check(t_key(buf, n, T_STACK, d) == NGX_OK, "a long array: ok");

    t_check(t_key("[1]", 3, T_STACK, d) == NGX_ERROR, "not an object");
    t_check(t_key("{\"a\":1} x", 9, T_STACK, d) == NGX_ERROR,
            "data after the object");
    t_check(t_key("{\"a\":-}", 7, T_STACK, d) == NGX_ERROR,
            "a minus alone");
}


/* the readers of stored answers: a member found, values skipped whole */

static void
t_json(void)
{
    u_char      *b, *v;
    size_t       n;
    const char  *s;

    s = "{\"a\":{\"x\":[1,{\"b\":2}],\"s\":\"}\\\"]\"},"
        "\"b\" : \"B\",\"c\":-1.5e3,\"d\":null}";
    n = strlen(s);
    b = t_dup((const u_char *) s, n);

    v = ngx_http_aigw_cache_json_get(b, b + n, "b", 1);
    t_check(v && *v == '"' && v[1] == 'B',
            "a top-level member, not a nested one");

    v = ngx_http_aigw_cache_json_get(b, b + n, "c", 1);
    t_check(v && ngx_http_aigw_cache_json_skip(v, b + n) - v == 6,
            "a number skipped whole");

    v = ngx_http_aigw_cache_json_get(b, b + n, "a", 1);
    t_check(v && *ngx_http_aigw_cache_json_skip(v, b + n) == ',',
            "an object skipped whole, brackets in strings too");

    t_check(ngx_http_aigw_cache_json_get(b, b + n, "e", 1) == NULL,
            "a missing member");

    for (n = 0; n < strlen(s); n++) {
        v = ngx_http_aigw_cache_json_get(b, b + n, "d", 1);
        t_check(v == NULL || v < b + n, "a prefix read within its bytes");
    }

    free(b);
}


int
main(int argc, char **argv)
{
    t_md_ctx = EVP_MD_CTX_new();

    if (t_md_ctx == NULL) {
        return 2;
    }

    t_begin("same digest");
    t_pairs(t_same, 1);
    t_end();

    t_begin("another digest");
    t_pairs(t_differ, 0);
    t_end();

    t_begin("prefixes");
    t_prefixes(t_same);
    t_prefixes(t_differ);
    t_end();

    t_begin("limits");
    t_limits();
    t_end();

    t_begin("stored answers");
    t_json();
    t_end();

    EVP_MD_CTX_free(t_md_ctx);

    printf("%lu passed, %lu failed\n",
           (unsigned long) t_passed, (unsigned long) t_failed);

    return t_failed ? 1 : 0;
}
