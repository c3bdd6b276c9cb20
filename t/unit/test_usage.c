
/*
 * Copyright (C) aigw authors
 */


/*
 * Unit test of the usage readers, built standalone against the include
 * directories of a configured nginx tree (see t/unit/README.md):
 *
 *     test_usage
 *
 * Every input is copied into a buffer of exactly its size, so that a read
 * past the end is an AddressSanitizer report, and every strict prefix of
 * a usage object must read as cut, never as whole.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_usage.c"
#include "t_unit.h"


#define T_UNSET  NGX_HTTP_AIGW_USAGE_UNSET


/* a check named by what it checks and the input it read */

static void
t_is(int ok, const char *what, const char *input)
{
    (void) t_check(ok, "%s: %s", what, input);
}


/* the input in a heap buffer of exactly its length */

static u_char *
t_exact(const char *s, size_t len)
{
    return t_dup((const u_char *) s, len);
}


typedef struct {
    const char  *text;
    ngx_int_t    rc;
    ngx_uint_t   n[NGX_HTTP_AIGW_U_N];
} t_usage_case_t;


static t_usage_case_t  t_usage_cases[] = {

    { "{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19,"
      "\"prompt_tokens_details\":{\"cached_tokens\":4,\"audio_tokens\":0},"
      "\"completion_tokens_details\":{\"reasoning_tokens\":3}}",
      NGX_OK,
      { T_UNSET, T_UNSET, T_UNSET, T_UNSET, 12, 7, 4, 3 } },

    { "{\"input_tokens\":25,\"cache_creation_input_tokens\":100,"
      "\"cache_read_input_tokens\":50,\"output_tokens\":1}",
      NGX_OK,
      { 25, 1, 50, 100, T_UNSET, T_UNSET, T_UNSET, T_UNSET } },

    { "{ \"prompt_tokens\" :\t5 ,\n\"completion_tokens\": 0 }",
      NGX_OK,
      { T_UNSET, T_UNSET, T_UNSET, T_UNSET, 5, 0, T_UNSET, T_UNSET } },

    /* a key's text inside a string value is not a key */
    { "{\"note\":\"\\\"prompt_tokens\\\":99\",\"prompt_tokens\":3}",
      NGX_OK,
      { T_UNSET, T_UNSET, T_UNSET, T_UNSET, 3, T_UNSET, T_UNSET, T_UNSET } },

    /* escapes: a string ending in a backslash, a key escaped */
    { "{\"a\\\\\":\"b\\\"\",\"cached_tokens\":2,"
      "\"prompt\\u005ftokens\":8,\"output_tokens\":\"x\\\\\"}",
      NGX_OK,
      { T_UNSET, T_UNSET, T_UNSET, T_UNSET, T_UNSET, T_UNSET, 2, T_UNSET } },

    /* keys of a known length and first byte that are not counts */
    { "{\"total_tokens\":1,\"audio_tokens\":2,\"otput_tokens\":3,"
      "\"cacheX_tokens\":4,\"input_tokenz\":5,\"completion_tokenS\":6,"
      "\"reasoning_tokens\"\n:\n9}",
      NGX_OK,
      { T_UNSET, T_UNSET, T_UNSET, T_UNSET, T_UNSET, T_UNSET, T_UNSET, 9 } },

    /* counts that are not numbers are not counts */
    { "{\"prompt_tokens\":null,\"completion_tokens\":\"7\"}",
      NGX_OK,
      { T_UNSET, T_UNSET, T_UNSET, T_UNSET, T_UNSET, T_UNSET, T_UNSET,
        T_UNSET } },

    /* a count too large stops growing past 2^32 - 1 */
    { "{\"prompt_tokens\":99999999999999999999999}",
      NGX_OK,
      { T_UNSET, T_UNSET, T_UNSET, T_UNSET, 9999999999, T_UNSET, T_UNSET,
        T_UNSET } },

    /* text after the object is not read */
    { "{\"output_tokens\":2}{\"output_tokens\":9}",
      NGX_OK,
      { T_UNSET, 2, T_UNSET, T_UNSET, T_UNSET, T_UNSET, T_UNSET, T_UNSET } },

    { "{\"output_tokens\":2", NGX_DECLINED, { 0 } },
    { "}", NGX_DECLINED, { 0 } },
    { "", NGX_DECLINED, { 0 } },
    { "{\"a\":\"\\", NGX_DECLINED, { 0 } },

    { NULL, 0, { 0 } }
};


/* past the first object's closing brace (the cases have none in strings) */

static size_t
t_object_end(const char *s)
{
    size_t  i, depth;

    depth = 0;

    for (i = 0; s[i]; i++) {
        if (s[i] == '{') {
            depth++;

        } else if (s[i] == '}' && --depth == 0) {
            return i + 1;
        }
    }

    return i + 1;
}


static void
t_usage(void)
{
    u_char                 *p;
    size_t                  len, cut, end;
    ngx_int_t               rc;
    ngx_uint_t              i;
    t_usage_case_t         *c;
    ngx_http_aigw_usage_t   u;

    for (c = t_usage_cases; c->text; c++) {
        len = strlen(c->text);
        p = t_exact(c->text, len);

        rc = ngx_http_aigw_usage_read(&u, p, p + len);
        t_is(rc == c->rc, "usage_read rc", c->text);

        if (rc == NGX_OK && c->rc == NGX_OK) {
            for (i = 0; i < NGX_HTTP_AIGW_U_N; i++) {
                t_is(u.n[i] == c->n[i], "usage_read count", c->text);
            }
        }

        free(p);

        if (c->rc != NGX_OK) {
            continue;
        }

        /* every cut before the object's end reads as cut */

        end = t_object_end(c->text);

        for (cut = 0; cut < len; cut++) {
            p = t_exact(c->text, cut);

            rc = ngx_http_aigw_usage_read(&u, p, p + cut);

            t_is((rc == NGX_OK) == (cut >= end),
                    "a prefix read as whole, or more as cut", c->text);

            free(p);
        }
    }
}


static void
t_values(void)
{
    u_char       *p, *v;
    size_t        len;
    const char   *s;

    s = "{\"a\":\"\\\"usage\\\":{\",\"usage\" : {\"x\":1},\"b\":2}";
    len = strlen(s);
    p = t_exact(s, len);

    v = ngx_http_aigw_usage_value(p, p + len, "\"usage\"", 7);
    t_is(v != NULL && *v == '{', "value past an escaped lookalike", s);

    v = ngx_http_aigw_usage_last_value(p, p + len, "\"usage\"", 7);
    t_is(v != NULL && *v == '{', "last value", s);

    v = ngx_http_aigw_usage_value(p, p + len, "\"b\"", 3);
    t_is(v != NULL && *v == '2', "value of the last key", s);

    v = ngx_http_aigw_usage_value(p, p + len, "\"nope\"", 6);
    t_is(v == NULL, "no such key", s);

    free(p);

    /* a key at the very end, with nothing after it */

    s = "{\"x\":1,\"usage\"";
    len = strlen(s);
    p = t_exact(s, len);

    t_is(ngx_http_aigw_usage_value(p, p + len, "\"usage\"", 7) == NULL,
            "a key without a value", s);
    t_is(ngx_http_aigw_usage_last_value(p, p + len, "\"usage\"", 7)
            == NULL, "a key without a value, from the end", s);
    t_is(ngx_http_aigw_usage_last_value(p, p + 3, "\"usage\"", 7)
            == NULL, "text shorter than the key", s);

    free(p);
}


static void
t_text_bytes(void)
{
    u_char      *p;
    size_t       len, n;
    const char  *s;

    s = "{\"delta\":{\"content\":\"Hello\"},\"x\":{\"content\":\"a\\nb\"}}";
    len = strlen(s);
    p = t_exact(s, len);
    n = ngx_http_aigw_usage_text_bytes(p, p + len, "\"content\"", 9);
    t_is(n == 8, "text bytes, an escape counted once", s);
    free(p);

    /*
     * the kept text of an answer may end inside a value, just after a
     * backslash: nothing is read past the end (it once was)
     */

    s = "{\"content\":\"abc\\";
    len = strlen(s);
    p = t_exact(s, len);
    n = ngx_http_aigw_usage_text_bytes(p, p + len, "\"content\"", 9);
    t_is(n == 3, "text bytes of a value cut after a backslash", s);
    free(p);

    s = "{\"content\":\"abc";
    len = strlen(s);
    p = t_exact(s, len);
    n = ngx_http_aigw_usage_text_bytes(p, p + len, "\"content\"", 9);
    t_is(n == 3, "text bytes of a value cut", s);
    free(p);

    s = "{\"content\":null,\"content\":\"xy\"}";
    len = strlen(s);
    p = t_exact(s, len);
    n = ngx_http_aigw_usage_text_bytes(p, p + len, "\"content\"", 9);
    t_is(n == 2, "text bytes, a null value skipped", s);
    free(p);
}


int
main(int argc, char **argv)
{
    t_begin("usage objects, every prefix");
    t_usage();
    t_end();

    t_begin("values by key");
    t_values();
    t_end();

    t_begin("bytes of text");
    t_text_bytes();
    t_end();

    printf("%lu passed, %lu failed\n",
           (unsigned long) t_passed, (unsigned long) t_failed);

    return t_failed ? 1 : 0;
}
