
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_aigw_usage.h"


static u_char *ngx_http_aigw_usage_after_key(u_char *p, u_char *last);


/* the bytes that begin or end something in a usage object */
static u_char  ngx_http_aigw_usage_special[256] = {
    ['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1
};

/* JSON's blanks */
static u_char  ngx_http_aigw_usage_blank[256] = {
    [' '] = 1, ['\t'] = 1, ['\r'] = 1, ['\n'] = 1
};

/*
 * One pass over the object's text: a cJSON tree with its allocations
 * and strtod() costs more than the rest of a request.  A string is a
 * key when a colon follows; its count when a number follows that.
 */

ngx_int_t
ngx_http_aigw_usage_read(ngx_http_aigw_usage_t *u, u_char *p, u_char *last)
{
    u_char      *key, *end;
    ngx_int_t    i;
    ngx_uint_t   n, depth;

    for (n = 0; n < NGX_HTTP_AIGW_U_N; n++) {
        u->n[n] = NGX_HTTP_AIGW_USAGE_UNSET;
    }

    depth = 0;

    for ( /* void */ ; p < last; p++) {

        /* numbers, commas, blanks: nothing to look at */

        while (!ngx_http_aigw_usage_special[*p]) {
            if (++p == last) {
                return NGX_DECLINED;
            }
        }

        if (*p == '{' || *p == '[') {
            depth++;
            continue;
        }

        if (*p == '}' || *p == ']') {
            if (depth == 0) {
                return NGX_DECLINED;
            }

            if (--depth == 0) {
                return NGX_OK;
            }

            continue;
        }

        if (*p != '"') {
            continue;
        }

        key = ++p;

        /*
         * most strings have no escape: their end is the next quote, if
         * no backslash is before it (one there may escape it)
         */

        end = memchr(p, '"', last - p);

        if (end && (end == p || end[-1] != '\\')) {
            p = end;

        } else {
            for ( ;; ) {
                while (p < last && *p != '"' && *p != '\\') {
                    p++;
                }

                if (p >= last || *p == '"' || ++p == last) {
                    break;
                }

                p++;    /* the escaped byte */
            }
        }

        if (p >= last) {
            return NGX_DECLINED;
        }

        end = p++;

        /* blanks around the colon are rare: looked for only then */

        if (p < last && *p != ':') {
            while (p < last && ngx_http_aigw_usage_blank[*p]) {
                p++;
            }
        }

        if (p == last || *p != ':') {
            p = end;    /* a string value, read on after its quote */
            continue;
        }

        p++;

        if (p < last && (u_char) (*p - '0') > 9) {
            while (p < last && ngx_http_aigw_usage_blank[*p]) {
                p++;
            }
        }

        if (p == last || *p < '0' || *p > '9') {
            p--;
            continue;
        }

        for (n = 0; p < last && *p >= '0' && *p <= '9'
                    && n < NGX_MAX_UINT32_VALUE; p++)
        {
            n = n * 10 + (*p - '0');
        }

        p--;

        i = ngx_http_aigw_usage_index(key, end - key);

        if (i != NGX_ERROR) {
            u->n[i] = n;
        }
    }

    return NGX_DECLINED;
}


/*
 * JSON keys are case-sensitive, and a quote inside a string is escaped,
 * so the quoted name with its colon is found only where it is a key
 */

u_char *
ngx_http_aigw_usage_value(u_char *p, u_char *last, const char *key,
    size_t len)
{
    u_char  *v;

    while (p < last) {
        p = memmem(p, last - p, key, len);

        if (p == NULL) {
            return NULL;
        }

        p += len;

        v = ngx_http_aigw_usage_after_key(p, last);

        if (v) {
            return v;
        }
    }

    return NULL;
}


/* from the end, where "usage" is in an answer and in a chunk */

u_char *
ngx_http_aigw_usage_last_value(u_char *p, u_char *last, const char *key,
    size_t len)
{
    u_char  *q, *v;

    if ((size_t) (last - p) < len) {
        return NULL;
    }

    for (q = last - len; q >= p; q--) {
        if (*q == '"' && ngx_memcmp(q, key, len) == 0) {
            v = ngx_http_aigw_usage_after_key(q + len, last);

            if (v) {
                return v;
            }
        }
    }

    return NULL;
}


size_t
ngx_http_aigw_usage_text_bytes(u_char *p, u_char *last, const char *key,
    size_t len)
{
    size_t  n;

    n = 0;

    for ( ;; ) {
        p = ngx_http_aigw_usage_value(p, last, key, len);

        if (p == NULL) {
            return n;
        }

        if (*p != '"') {
            continue;
        }

        for (p++; p < last && *p != '"'; p++) {
            if (*p == '\\' && ++p == last) {
                return n;
            }

            n++;
        }

        if (p == last) {
            return n;
        }
    }
}


/* the value after a key's closing quote, or NULL if no colon follows */

static u_char *
ngx_http_aigw_usage_after_key(u_char *p, u_char *last)
{
    for ( /* void */ ; p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                                    || *p == '\n'); p++)
    {
        /* void */
    }

    if (p == last || *p != ':') {
        return NULL;
    }

    for (p++; p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                           || *p == '\n'); p++)
    {
        /* void */
    }

    return p < last ? p : NULL;
}
