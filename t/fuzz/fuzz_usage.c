
/*
 * Copyright (C) aigw authors
 */


/*
 * libFuzzer harness of the usage readers (t/fuzz/run.sh builds and runs
 * it): answers and events as providers send them, cut anywhere.  No read
 * past the input; a value found lies inside it; a usage object read as
 * whole reads the same with any text after it.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_usage.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static void
f_assert(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_usage: %s\n", what);
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                 *p, *last, *v, *q;
    ngx_uint_t              i;
    ngx_http_aigw_usage_t   u, w;

    /* a copy of exactly the input's size: a read past it is a report */

    p = malloc(size + 1);
    f_assert(p != NULL, "out of memory");
    memcpy(p, data, size);
    last = p + size;

    v = ngx_http_aigw_usage_last_value(p, last, "\"usage\"", 7);
    f_assert(v == NULL || (v >= p && v < last), "last value outside");

    if (v && *v == '{'
        && ngx_http_aigw_usage_read(&u, v, last) == NGX_OK)
    {
        /* the same object with more text after it reads the same */

        q = malloc(size + 2);
        f_assert(q != NULL, "out of memory");
        memcpy(q, p, size);
        q[size] = '}';

        f_assert(ngx_http_aigw_usage_read(&w, q + (v - p), q + size + 1)
                 == NGX_OK, "whole, then not");

        for (i = 0; i < NGX_HTTP_AIGW_U_N; i++) {
            f_assert(u.n[i] == w.n[i], "counts moved with the text after");
        }

        free(q);
    }

    v = ngx_http_aigw_usage_value(p, last, "\"choices\"", 9);
    f_assert(v == NULL || (v >= p && v < last), "value outside");

    f_assert(ngx_http_aigw_usage_text_bytes(p, last, "\"content\"", 9)
             <= size, "more text than input");

    free(p);

    return 0;
}
