
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_aigw_json.h"


/*
 * JSON written for what the gateway rebuilds (translate.c): a buffer of
 * the request's pool that grows as it is written.
 */


/* room for n more bytes in a growing buffer of the request's pool */

u_char *
ngx_http_aigw_json_out_reserve(ngx_http_aigw_json_out_t *o, size_t n)
{
    size_t   size;
    u_char  *p;

    if (o->failed) {
        return NULL;
    }

    if ((size_t) (o->end - o->pos) < n) {
        size = ngx_max(2 * (size_t) (o->end - o->start),
                       (size_t) (o->pos - o->start) + n);
        size = ngx_max(size, 256);

        p = ngx_pnalloc(o->pool, size);
        if (p == NULL) {
            o->failed = 1;
            return NULL;
        }

        if (o->pos != o->start) {
            ngx_memcpy(p, o->start, o->pos - o->start);
        }

        o->pos = p + (o->pos - o->start);
        o->start = p;
        o->end = p + size;
    }

    return o->pos;
}


void
ngx_http_aigw_json_out_add(ngx_http_aigw_json_out_t *o, u_char *data,
    size_t len)
{
    u_char  *p;

    p = ngx_http_aigw_json_out_reserve(o, len);

    if (p && len) {
        o->pos = ngx_cpymem(p, data, len);
    }
}


/* bytes as the content of a JSON string */

void
ngx_http_aigw_json_out_escaped(ngx_http_aigw_json_out_t *o, u_char *data,
    size_t len)
{
    u_char  *p;

    p = ngx_http_aigw_json_out_reserve(o,
                                       len + ngx_escape_json(NULL, data, len));

    if (p) {
        o->pos = (u_char *) ngx_escape_json(p, data, len);
    }
}
