
/*
 * Copyright (C) aigw authors
 */


/*
 * libFuzzer harness of the JSON cursor (t/fuzz/run.sh builds and runs
 * it): any bytes, walked as if they were a document.  No read past the
 * input; every key and value lies inside it; a value the cursor gives
 * is one json_skip() finds whole, and a walk ends.
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


static void
f_walk(ngx_str_t *v, ngx_uint_t depth)
{
    ngx_int_t             rc;
    ngx_str_t             key, value;
    ngx_http_aigw_json_t  j;

    f_assert(v->data >= f_start && v->data + v->len <= f_last,
             "value outside the input");

    if (depth > 100 || ngx_http_aigw_json_open(&j, v) != NGX_OK) {
        return;
    }

    while ((rc = ngx_http_aigw_json_next(&j, &key, &value)) == NGX_OK) {
        f_assert(key.data == NULL
                 || (key.data > f_start && key.data + key.len < f_last),
                 "key outside the input");
        f_assert(ngx_http_aigw_json_skip(value.data, v->data + v->len)
                 == value.data + value.len, "a value skips elsewhere");

        f_walk(&value, depth + 1);
    }

    f_assert(rc == NGX_DONE || rc == NGX_ERROR, "a walk ends so");
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
