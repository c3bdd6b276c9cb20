
/*
 * Copyright (C) aigw authors
 */


/*
 * libFuzzer harness of the Retry-After and x-ratelimit-reset-* readers
 * (t/fuzz/run.sh builds and runs it): header values as a provider may
 * send them.  No read past the value, never more than a day, whole
 * seconds from Retry-After, and a duration that reads as whole reads the
 * same as any of its splits at a unit added up.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_retry_after.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static void
f_assert(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_retry_after: %s\n", what);
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *p;
    size_t       i;
    ngx_msec_t   a, b, head, tail;

    /* a copy of exactly the input's size: a read past it is a report */

    p = malloc(size ? size : 1);
    f_assert(p != NULL, "out of memory");
    memcpy(p, data, size);

    a = ngx_http_aigw_retry_after(p, size);
    f_assert(a <= NGX_HTTP_AIGW_RETRY_AFTER_MAX, "Retry-After over a day");
    f_assert(a % 1000 == 0, "Retry-After not in whole seconds");

    b = ngx_http_aigw_retry_after_duration(p, size);
    f_assert(b <= NGX_HTTP_AIGW_RETRY_AFTER_MAX, "duration over a day");

    /* "1m30s" is "1m" and "30s": the parts add up to the whole */

    if (b) {
        for (i = 1; i < size; i++) {
            if (p[i - 1] != 'h' && p[i - 1] != 's'
                && !(p[i - 1] == 'm' && p[i] != 's'))
            {
                continue;
            }

            head = ngx_http_aigw_retry_after_duration(p, i);
            tail = ngx_http_aigw_retry_after_duration(p + i, size - i);

            f_assert(head + tail == b, "the parts do not add up");
        }
    }

    free(p);

    return 0;
}
