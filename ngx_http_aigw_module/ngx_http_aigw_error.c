
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


#define NGX_HTTP_AIGW_ERROR_LEN  512


/* the code and words of an error the gateway has no words of its own for */

typedef struct {
    ngx_uint_t   status;
    const char  *code;
    const char  *message;
} ngx_http_aigw_error_kind_t;


static ngx_http_aigw_error_kind_t  ngx_http_aigw_error_kinds[] = {
    { NGX_HTTP_BAD_REQUEST, "invalid_request", "The request is not valid." },
    { NGX_HTTP_UNAUTHORIZED, "invalid_api_key", "Invalid API key." },
    { NGX_HTTP_FORBIDDEN, "forbidden", "The API key may not do this." },
    { NGX_HTTP_NOT_FOUND, "not_found", "Unknown endpoint." },
    { NGX_HTTP_NOT_ALLOWED, "method_not_allowed",
      "The method is not allowed on this endpoint." },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "request_too_large",
      "The request body is larger than the gateway accepts." },
    { NGX_HTTP_TOO_MANY_REQUESTS, "rate_limit_exceeded",
      "Too many requests." },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
      "The gateway failed to process the request." },
    { NGX_HTTP_BAD_GATEWAY, "upstream_error",
      "No provider could answer the request." },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "service_unavailable",
      "The service is unavailable." },
    { NGX_HTTP_GATEWAY_TIME_OUT, "upstream_timeout",
      "The provider did not answer in time." },
    { 0, "invalid_request", "The request failed." }
};


static ngx_http_aigw_error_kind_t *
ngx_http_aigw_error_kind(ngx_uint_t status)
{
    ngx_http_aigw_error_kind_t  *k;

    for (k = ngx_http_aigw_error_kinds; k->status; k++) {
        if (k->status == status) {
            return k;
        }
    }

    /* a 5xx without a kind of its own is a server error */

    if (status > NGX_HTTP_INTERNAL_SERVER_ERROR) {
        return ngx_http_aigw_error_kind(NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    return k;
}


ngx_int_t
ngx_http_aigw_error(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    p = ngx_pnalloc(r->pool, NGX_HTTP_AIGW_ERROR_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    va_start(args, fmt);
    ctx->error_message.len = ngx_vslprintf(p, p + NGX_HTTP_AIGW_ERROR_LEN,
                                           fmt, args)
                             - p;
    va_end(args);

    ctx->error_message.data = p;
    ctx->error_code = code;

    return status;
}


/* the JSON error body, in the wire format the client speaks */

ngx_int_t
ngx_http_aigw_error_body(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_uint_t status, ngx_str_t *out)
{
    size_t                       len;
    u_char                      *p;
    ngx_str_t                    msg;
    const char                  *code;
    ngx_http_aigw_error_kind_t  *k;

    k = ngx_http_aigw_error_kind(status);

    if (ctx->error_message.len) {
        msg = ctx->error_message;
        code = ctx->error_code;

    } else {
        msg.data = (u_char *) k->message;
        msg.len = ngx_strlen(k->message);
        code = k->code;
    }

    len = ctx->format->error_len + ngx_strlen(code)
          + msg.len + ngx_escape_json(NULL, msg.data, msg.len);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = ctx->format->error(p, status, code, &msg) - p;

    return NGX_OK;
}


/*
 * The event that ends a stream which failed after its status went out:
 * the error body in the client's format, framed as its SDKs expect a
 * failing stream to end (OpenAI: a "data:" with an "error" object;
 * Anthropic: "event: error"), so that a cut answer is never taken for
 * a complete one.  The caller sends it, as the stream's last bytes.
 */

ngx_buf_t *
ngx_http_aigw_error_event(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_uint_t status)
{
    u_char     *p;
    ngx_str_t   body;
    ngx_buf_t  *b;

    if (ngx_http_aigw_error_body(r, ctx, status, &body) != NGX_OK) {
        return NULL;
    }

    b = ngx_create_temp_buf(r->pool, ctx->format->error_event.len + body.len
                                     + sizeof("\n\n") - 1);
    if (b == NULL) {
        return NULL;
    }

    p = ngx_cpymem(b->last, ctx->format->error_event.data,
                   ctx->format->error_event.len);
    p = ngx_cpymem(p, body.data, body.len);
    *p++ = '\n'; *p++ = '\n';

    b->last = p;

    return b;
}
