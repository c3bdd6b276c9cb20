
/*
 * Copyright (C) aigw authors
 */


/*
 * libFuzzer harness of the JSON cursor (t/fuzz/run.sh builds and runs
 * it): any bytes, walked as if they were a document.  No read past the
 * input; every key and value lies inside it; a value the cursor gives
 * is one json_skip() finds whole, and a walk ends; json_members() on
 * every object finds what a walk finds (f_members()).
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_json.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static u_char  *f_start;
static u_char  *f_last;


static void
f_assert(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_json: %s\n", what);
        abort();
    }
}


/*
 * json_members() on an object: the fixed names and its own first keys.
 * Every value found is inside the object and whole; nothing is left
 * unless NGX_OK; where it is NGX_OK, json_member() finds each fixed name
 * at the same place.
 */

static void
f_members(ngx_str_t *v, ngx_str_t *keys, ngx_uint_t nkeys)
{
    ngx_int_t   rc;
    ngx_str_t   names[12], values[12], one;
    ngx_uint_t  i, k, n;

    static ngx_str_t  fixed[] = {
        ngx_string("type"), ngx_string("text"), ngx_string("id"),
        ngx_string("content")
    };
    static const char  *fixed_c[] = { "type", "text", "id", "content" };

    for (n = 0; n < 4; n++) {
        names[n] = fixed[n];
    }

    for (i = 0; i < nkeys; i++) {
        names[n++] = keys[i];
    }

    rc = ngx_http_aigw_json_members(v, names, values, n);

    f_assert(rc == NGX_OK || rc == NGX_DECLINED || rc == NGX_ERROR
             || rc == NGX_HTTP_AIGW_JSON_TWICE, "members: another rc");

    for (i = 0; i < n; i++) {
        if (rc != NGX_OK) {
            f_assert(values[i].data == NULL, "members: a value is left");
            continue;
        }

        if (values[i].data == NULL) {

            if (i < 4) {
                continue;
            }

            /* one of its own keys: absent only if the table has it before */

            for (k = 0; k < i; k++) {
                if (names[k].len == names[i].len
                    && memcmp(names[k].data, names[i].data, names[i].len)
                       == 0)
                {
                    break;
                }
            }

            f_assert(k < i, "members: one of its own keys not found");
            continue;
        }

        f_assert(values[i].data > v->data
                 && values[i].data + values[i].len < v->data + v->len,
                 "members: a value outside the object");
        f_assert(ngx_http_aigw_json_skip(values[i].data, v->data + v->len)
                 == values[i].data + values[i].len,
                 "members: a value not whole");
    }

    if (rc != NGX_OK) {
        return;
    }

    for (i = 0; i < 4; i++) {
        if (ngx_http_aigw_json_member(v, fixed_c[i], &one) == NGX_OK) {
            f_assert(one.data == values[i].data && one.len == values[i].len,
                     "member and members disagree");

        } else {
            f_assert(values[i].data == NULL, "member finds none");
        }
    }
}


static void
f_walk(ngx_str_t *v, ngx_uint_t depth)
{
    ngx_int_t             rc;
    ngx_str_t             key, value, keys[8];
    ngx_uint_t            nkeys;
    ngx_http_aigw_json_t  j;

    f_assert(v->data >= f_start && v->data + v->len <= f_last,
             "value outside the input");

    if (depth > 100 || ngx_http_aigw_json_open(&j, v) != NGX_OK) {
        return;
    }

    nkeys = 0;

    while ((rc = ngx_http_aigw_json_next(&j, &key, &value)) == NGX_OK) {
        f_assert(key.data == NULL
                 || (key.data > f_start && key.data + key.len < f_last),
                 "key outside the input");
        f_assert(ngx_http_aigw_json_skip(value.data, v->data + v->len)
                 == value.data + value.len, "a value skips elsewhere");

        /* names are ASCII with no escape: keys that are so */

        if (key.data && nkeys < 8 && key.len
            && memchr(key.data, '\\', key.len) == NULL)
        {
            keys[nkeys++] = key;
        }

        f_walk(&value, depth + 1);
    }

    f_assert(rc == NGX_DONE || rc == NGX_ERROR, "a walk ends so");

    if (j.close == '}') {
        f_members(v, keys, nkeys);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char     *p, *end;
    ngx_str_t   v, m;

    /* a copy of exactly the input's size: a read past it is a report */

    p = malloc(size + 1);
    f_assert(p != NULL, "out of memory");
    memcpy(p, data, size);

    f_start = p;
    f_last = p + size;

    v.data = ngx_http_aigw_json_ws(p, p + size);
    end = ngx_http_aigw_json_skip(v.data, p + size);

    f_assert(end == NULL || (end > v.data && end <= p + size),
             "skip outside the input");

    v.len = p + size - v.data;

    if (end) {
        v.len = end - v.data;
    }

    f_walk(&v, 0);

    (void) ngx_http_aigw_json_member(&v, "type", &m);

    free(p);

    return 0;
}
