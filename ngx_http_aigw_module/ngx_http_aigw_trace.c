
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * A request's id, end to end: the client's X-Request-Id when it is a sane
 * token, else one made here.  It goes to the provider (request.c),
 * back to the client on every answer, into $aigw_request_id, and at the
 * end of every error log line of the request: the request's log handler,
 * which ngx_http_log_error() calls for the lines of its connection's log,
 * is wrapped to append it.  That handler is a field of the request, so
 * nothing of it outlives the request: once the request is freed, nginx
 * no longer calls it.
 */


/* a client's id: at most this long, of [A-Za-z0-9._:-] */
#define NGX_HTTP_AIGW_REQUEST_ID_MAX  128


static u_char *ngx_http_aigw_trace_log_handler(ngx_http_request_t *r,
    ngx_http_request_t *sr, u_char *buf, size_t len);
static ngx_uint_t ngx_http_aigw_trace_sane(ngx_str_t *id);
static void ngx_http_aigw_trace_hex(u_char *p, uint64_t v, ngx_uint_t n);
static void ngx_http_aigw_trace_next(u_char *p, u_char *last);


/*
 * nginx's own handler, the same for every request: kept as filters keep
 * the next filter of their chain
 */
static ngx_http_log_handler_pt  ngx_http_aigw_trace_next_log_handler;

ngx_int_t
ngx_http_aigw_trace_init(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    u_char                     *p, *id;
    time_t                      now;
    ngx_uint_t                  count;
    ngx_table_elt_t            *h;
    ngx_http_aigw_main_conf_t  *amcf;

    h = ngx_http_aigw_request_header(r, "x-request-id",
                                     sizeof("x-request-id") - 1, &count);

    if (h && count == 1 && ngx_http_aigw_trace_sane(&h->value)) {
        ctx->request_id = h->value;

    } else {

        /*
         * 32 hex digits: the time, the worker, and a sequence of the
         * worker's from a random start: unique, and cheap to make, where
         * $request_id asks OpenSSL for 16 random bytes (some 7,000
         * instructions a request).  The worker's last id is kept: its
         * time is written once a second, its worker once, and the
         * sequence is counted on in place, in hex.
         */

        amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
        id = amcf->request_id;
        now = ngx_time();

        if (amcf->request_id_time != now) {

            if (amcf->request_id_time == 0) {
                ngx_http_aigw_trace_hex(id + 8, (uint32_t) ngx_pid, 8);
                ngx_http_aigw_trace_hex(id + 16,
                                        ((uint64_t) ngx_random() << 32)
                                        ^ (uint64_t) ngx_random(), 16);
            }

            ngx_http_aigw_trace_hex(id, (uint32_t) now, 8);
            amcf->request_id_time = now;
        }

        ngx_http_aigw_trace_next(id + 16, id + 32);

        p = ngx_pnalloc(r->pool, 32);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, id, 32);

        ctx->request_id.data = p;
        ctx->request_id.len = 32;
    }

    if (r->log_handler != ngx_http_aigw_trace_log_handler) {
        ngx_http_aigw_trace_next_log_handler = r->log_handler;
        r->log_handler = ngx_http_aigw_trace_log_handler;
    }

    if (h && ctx->request_id.data != h->value.data) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: the client's X-Request-Id is not a sane "
                      "token (at most %d bytes of [A-Za-z0-9._:-], once), "
                      "replaced", NGX_HTTP_AIGW_REQUEST_ID_MAX);
    }

    return NGX_OK;
}


/* the n low nibbles of v (n even) as lowercase hex, the highest first */

static void
ngx_http_aigw_trace_hex(u_char *p, uint64_t v, ngx_uint_t n)
{
    static u_char  hex[] = "0123456789abcdef";

    while (n) {
        p[--n] = hex[v & 0xf];
        p[--n] = hex[(v >> 4) & 0xf];
        v >>= 8;
    }
}


/* the lowercase hex number [p, last) plus one, wrapping at its width */

static void
ngx_http_aigw_trace_next(u_char *p, u_char *last)
{
    while (last > p) {
        last--;

        if (*last == 'f') {
            *last = '0';
            continue;
        }

        *last = (*last == '9') ? 'a' : *last + 1;
        return;
    }
}


static ngx_uint_t
ngx_http_aigw_trace_sane(ngx_str_t *id)
{
    u_char  *p, *last;

    if (id->len == 0 || id->len > NGX_HTTP_AIGW_REQUEST_ID_MAX) {
        return 0;
    }

    last = id->data + id->len;

    for (p = id->data; p < last; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9')
              || *p == '-' || *p == '_' || *p == '.' || *p == ':'))
        {
            return 0;
        }
    }

    return 1;
}


static u_char *
ngx_http_aigw_trace_log_handler(ngx_http_request_t *r,
    ngx_http_request_t *sr, u_char *buf, size_t len)
{
    u_char               *p;
    ngx_http_aigw_ctx_t  *ctx;

    p = ngx_http_aigw_trace_next_log_handler(r, sr, buf, len);

    /* an internal redirect cleared the context: no id until the next */

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx == NULL || ctx->request_id.len == 0) {
        return p;
    }

    len -= p - buf;

    return ngx_snprintf(p, len, ", request_id: \"%V\"", &ctx->request_id);
}


/*
 * X-Request-Id on every answer, errors included; a provider's own
 * "x-request-id" is its id, not the request's: it is kept from the
 * client, and is in $aigw_provider_request_id
 */

ngx_int_t
ngx_http_aigw_trace_header(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    static ngx_str_t  name = ngx_string("X-Request-Id");

    if (ctx->request_id.len == 0 || ctx->request_id_sent) {
        return NGX_OK;
    }

    ctx->request_id_sent = 1;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash && h[i].key.len == sizeof("X-Request-Id") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-Request-Id",
                               sizeof("X-Request-Id") - 1)
               == 0)
        {
            h[i].hash = 0;
        }
    }

    return ngx_http_aigw_filter_add_header(r, &name, ctx->request_id.data,
                                           ctx->request_id.len);
}


/* the id the provider gave its answer: OpenAI's, or Anthropic's */

void
ngx_http_aigw_trace_provider_id(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_uint_t            i;
    ngx_list_part_t      *part;
    ngx_table_elt_t      *h;
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (u == NULL) {
        return;
    }

    part = &u->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if ((h[i].key.len == sizeof("x-request-id") - 1
             && ngx_strncasecmp(h[i].key.data, (u_char *) "x-request-id",
                                sizeof("x-request-id") - 1)
                == 0)
            || (h[i].key.len == sizeof("request-id") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "request-id",
                                   sizeof("request-id") - 1)
                   == 0))
        {
            *id = h[i].value;
            return;
        }
    }
}
