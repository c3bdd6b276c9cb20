
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_aigw_retry_after.h"


/*
 * The values of Retry-After and OpenAI's x-ratelimit-reset-* headers, as
 * the breaker and aigw_retries read them.  Bounded, no allocation, no
 * nginx call: unit-tested and fuzzed on their own (t/unit, t/fuzz).
 */


ngx_msec_t
ngx_http_aigw_retry_after(u_char *p, size_t len)
{
    u_char      *last;
    ngx_msec_t   n;

    last = p + len;

    /* optional white space around the value, as in any header */

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    if (p == last) {
        return 0;
    }

    for (n = 0; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return 0;
        }

        n = n * 10 + (*p - '0');

        if (n > NGX_HTTP_AIGW_RETRY_AFTER_MAX / 1000) {
            return 0;
        }
    }

    return n * 1000;
}


/* "6m0s", "1.5s", "20ms", "2": seconds by default; 0 when not that */

ngx_msec_t
ngx_http_aigw_retry_after_duration(u_char *p, size_t len)
{
    u_char      *last;
    ngx_msec_t   total, n, frac, scale, unit;

    last = p + len;
    total = 0;

    if (p == last) {
        return 0;
    }

    while (p < last) {
        n = 0;
        frac = 0;
        scale = 1;

        if (*p < '0' || *p > '9') {
            return 0;
        }

        while (p < last && *p >= '0' && *p <= '9') {
            n = n * 10 + (*p++ - '0');

            if (n > NGX_HTTP_AIGW_RETRY_AFTER_MAX) {
                return 0;
            }
        }

        if (p < last && *p == '.') {
            for (p++; p < last && *p >= '0' && *p <= '9'; p++) {
                if (scale < 1000) {
                    frac = frac * 10 + (*p - '0');
                    scale *= 10;
                }
            }
        }

        if (p == last) {
            unit = 1000;

        } else if (*p == 'h') {
            unit = 3600000;
            p++;

        } else if (*p == 'm' && p + 1 < last && p[1] == 's') {
            unit = 1;
            p += 2;

        } else if (*p == 'm') {
            unit = 60000;
            p++;

        } else if (*p == 's') {
            unit = 1000;
            p++;

        } else {
            return 0;
        }

        /* compared before it is multiplied: no overflow */

        if (n > (NGX_HTTP_AIGW_RETRY_AFTER_MAX - total) / unit) {
            return 0;
        }

        total += n * unit + frac * unit / scale;

        if (total > NGX_HTTP_AIGW_RETRY_AFTER_MAX) {
            return 0;
        }
    }

    return total;
}
