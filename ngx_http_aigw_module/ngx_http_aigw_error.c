
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


#define NGX_HTTP_AIGW_ERROR_LEN  512


typedef struct {
    ngx_uint_t   status;
    const char  *openai_type;
    const char  *anthropic_type;
    const char  *code;
    const char  *message;
} ngx_http_aigw_error_kind_t;


static ngx_http_aigw_error_kind_t  ngx_http_aigw_error_kinds[] = {
    { NGX_HTTP_BAD_REQUEST, "invalid_request_error", "invalid_request_error",
      "invalid_request", "The request is not valid." },
    { NGX_HTTP_UNAUTHORIZED, "invalid_request_error", "authentication_error",
      "invalid_api_key", "Invalid API key." },
    { NGX_HTTP_FORBIDDEN, "permission_error", "permission_error",
      "forbidden", "The API key may not do this." },
    { NGX_HTTP_NOT_FOUND, "invalid_request_error", "not_found_error",
      "not_found", "Unknown endpoint." },
    { NGX_HTTP_NOT_ALLOWED, "invalid_request_error", "invalid_request_error",
      "method_not_allowed", "The method is not allowed on this endpoint." },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "invalid_request_error",
      "request_too_large", "request_too_large",
      "The request body is larger than the gateway accepts." },
    { NGX_HTTP_TOO_MANY_REQUESTS, "rate_limit_error", "rate_limit_error",
      "rate_limit_exceeded", "Too many requests." },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, "server_error", "api_error",
      "internal_error", "The gateway failed to process the request." },
    { NGX_HTTP_BAD_GATEWAY, "server_error", "api_error",
      "upstream_error", "No provider could answer the request." },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "server_error", "overloaded_error",
      "service_unavailable", "The service is unavailable." },
    { NGX_HTTP_GATEWAY_TIME_OUT, "server_error", "api_error",
      "upstream_timeout", "The provider did not answer in time." },
    { 0, "invalid_request_error", "invalid_request_error",
      "invalid_request", "The request failed." }
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

    len = sizeof("{\"type\":\"error\",\"error\":{\"type\":\"\","
                 "\"message\":\"\",\"param\":null,\"code\":\"\"}}") - 1
          + ngx_strlen(k->openai_type) + ngx_strlen(k->anthropic_type)
          + ngx_strlen(code)
          + msg.len + ngx_escape_json(NULL, msg.data, msg.len);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    if (ctx->client_format == NGX_HTTP_AIGW_ANTHROPIC) {
        p = ngx_sprintf(p, "{\"type\":\"error\",\"error\":{\"type\":\"%s\","
                        "\"message\":\"", k->anthropic_type);
        p = (u_char *) ngx_escape_json(p, msg.data, msg.len);
        p = ngx_cpymem(p, "\"}}", 3);

    } else {
        p = ngx_cpymem(p, "{\"error\":{\"message\":\"",
                       sizeof("{\"error\":{\"message\":\"") - 1);
        p = (u_char *) ngx_escape_json(p, msg.data, msg.len);
        p = ngx_sprintf(p, "\",\"type\":\"%s\",\"param\":null,"
                        "\"code\":\"%s\"}}", k->openai_type, code);
    }

    out->len = p - out->data;

    return NGX_OK;
}
