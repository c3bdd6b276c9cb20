
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * OpenAI's wire format, and that of every OpenAI-compatible server:
 * chat completions, text completions and embeddings; a bearer
 * credential; usage in the last chunk of a stream when asked for.
 */


static ngx_int_t ngx_http_aigw_openai_headers(ngx_http_request_t *r,
    ngx_str_t *out);
static ngx_int_t ngx_http_aigw_openai_edit(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static ngx_int_t ngx_http_aigw_openai_ask_usage(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static ngx_uint_t ngx_http_aigw_openai_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_sse_event_t *ev);
static u_char *ngx_http_aigw_openai_error(u_char *p, ngx_uint_t status,
    const char *code, ngx_str_t *msg);
static ngx_int_t ngx_http_aigw_openai_text(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_sse_event_t *ev, u_char **pos, ngx_http_aigw_span_t *text);


static ngx_http_aigw_endpoint_t  ngx_http_aigw_openai_endpoints[] = {
    { ngx_string("/chat/completions"), NGX_HTTP_AIGW_EP_CHAT },
    { ngx_string("/completions"), NGX_HTTP_AIGW_EP_COMPLETIONS },
    { ngx_string("/embeddings"), NGX_HTTP_AIGW_EP_EMBEDDINGS },
    { ngx_string("/models"), NGX_HTTP_AIGW_EP_MODELS },
    { ngx_null_string, NGX_HTTP_AIGW_EP_UNKNOWN }
};


ngx_http_aigw_format_t  ngx_http_aigw_openai_format = {
    ngx_string("openai"),
    ngx_http_aigw_openai_endpoints,
    ngx_string("Authorization: Bearer "),
    ngx_http_aigw_openai_headers,
    ngx_http_aigw_openai_edit,
    ngx_http_aigw_openai_event,
    ngx_http_aigw_openai_error,
    sizeof("{\"error\":{\"message\":\"\",\"type\":\"invalid_request_error\","
           "\"param\":null,\"code\":\"\"}}") - 1,
    ngx_string("data: "),
    ngx_http_aigw_openai_text
};


static ngx_int_t
ngx_http_aigw_openai_headers(ngx_http_request_t *r, ngx_str_t *out)
{
    ngx_str_null(out);

    return NGX_OK;
}


/*
 * aigw_tenant_user: the caller as "user"; and a stream asks for usage,
 * which OpenAI reports only when asked.
 */

static ngx_int_t
ngx_http_aigw_openai_edit(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_str_t                  user;
    ngx_http_aigw_loc_conf_t  *alcf;

    static ngx_str_t  key = ngx_string("user");

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    if (alcf->tenant_user && ctx->tenant.len) {
        if (ngx_http_aigw_body_caller(r, ctx, &user) != NGX_OK
            || ngx_http_aigw_body_set_field(r, ctx, NGX_HTTP_AIGW_F_N,
                                            NGX_HTTP_AIGW_F_USER, &key, &user)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_aigw_openai_ask_usage(r, ctx);
}


/*
 * stream_options.include_usage: true.  When the client did not ask for
 * it, the extra chunk is kept from the client.
 */

static ngx_int_t
ngx_http_aigw_openai_ask_usage(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    ngx_http_aigw_field_t  *f;

    static ngx_str_t  opts = ngx_string("{\"include_usage\":true}");
    static ngx_str_t  name = ngx_string("stream_options");
    static ngx_str_t  key = ngx_string("include_usage");
    static ngx_str_t  yes = ngx_string("true");

    if (!ctx->stream
        || (ctx->endpoint != NGX_HTTP_AIGW_EP_CHAT
            && ctx->endpoint != NGX_HTTP_AIGW_EP_COMPLETIONS))
    {
        return NGX_OK;
    }

    f = &ctx->scan.field[NGX_HTTP_AIGW_F_INCLUDE_USAGE];

    if (f->key && f->end - f->start == 4
        && ngx_strncmp(f->start, "true", 4) == 0)
    {
        return NGX_OK;
    }

    ctx->hide_usage = 1;

    f = &ctx->scan.field[NGX_HTTP_AIGW_F_STREAM_OPTIONS];

    if (f->key == NULL || *f->start != '{') {
        return ngx_http_aigw_body_set_field(r, ctx, NGX_HTTP_AIGW_F_N,
                                            NGX_HTTP_AIGW_F_STREAM_OPTIONS,
                                            &name, &opts);
    }

    return ngx_http_aigw_body_set_field(r, ctx,
                                        NGX_HTTP_AIGW_F_STREAM_OPTIONS,
                                        NGX_HTTP_AIGW_F_INCLUDE_USAGE,
                                        &key, &yes);
}


/*
 * An event of a stream: "usage" closes each chunk, null but in the last
 * one (or absent when not asked for); "[DONE]" ends the stream.
 */

static ngx_uint_t
ngx_http_aigw_openai_event(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_sse_event_t *ev)
{
    u_char  *p, *last, *v, *c;

    if (ev->done) {
        return NGX_HTTP_AIGW_EVENT_LAST;
    }

    if (ev->data.len == 0 || ev->truncated) {
        return 0;
    }

    p = ev->data.data;
    last = p + ev->data.len;

    /* most chunks end so, when usage was asked for: nothing to search */

    if (last - p > 13 && ngx_memcmp(last - 13, "\"usage\":null}", 13) == 0) {
        v = NULL;

    } else {
        v = ngx_http_aigw_usage_last_value(p, last, "\"usage\"", 7);
    }

    if (v == NULL || *v != '{') {
        if (ctx->endpoint == NGX_HTTP_AIGW_EP_CHAT) {
            ngx_http_aigw_meter_estimate(ctx, p, last, "\"content\"", 9);

        } else {
            ngx_http_aigw_meter_estimate(ctx, p, last, "\"text\"", 6);
        }

        return 0;
    }

    ngx_http_aigw_meter_usage(ctx, v, last, 0);

    if (!ctx->hide_usage) {
        return 0;
    }

    /* the extra chunk: "choices":[] */

    c = ngx_http_aigw_usage_value(p, v, "\"choices\"", 9);

    if (c && v - c >= 2 && c[0] == '[' && c[1] == ']') {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aigw: usage chunk kept from the client");
        return NGX_HTTP_AIGW_EVENT_HIDE;
    }

    return 0;
}


/* {"error":{"message","type","param","code"}}, as the SDKs parse it */

static u_char *
ngx_http_aigw_openai_error(u_char *p, ngx_uint_t status, const char *code,
    ngx_str_t *msg)
{
    const char  *type;

    switch (status) {

    case NGX_HTTP_FORBIDDEN:
        type = "permission_error";
        break;

    case NGX_HTTP_TOO_MANY_REQUESTS:
        type = "rate_limit_error";
        break;

    default:
        type = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR)
               ? "server_error" : "invalid_request_error";
    }

    p = ngx_cpymem(p, "{\"error\":{\"message\":\"",
                   sizeof("{\"error\":{\"message\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, msg->data, msg->len);

    return ngx_sprintf(p, "\",\"type\":\"%s\",\"param\":null,"
                       "\"code\":\"%s\"}}", type, code);
}


/* a chunk's text: "content" of chat deltas, "text" of completions */

static ngx_int_t
ngx_http_aigw_openai_text(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_sse_event_t *ev, u_char **pos, ngx_http_aigw_span_t *text)
{
    u_char      *p, *last, *q;
    size_t       len;
    const char  *key;

    if (ctx->endpoint == NGX_HTTP_AIGW_EP_CHAT) {
        key = "\"content\"";
        len = sizeof("\"content\"") - 1;

    } else {
        key = "\"text\"";
        len = sizeof("\"text\"") - 1;
    }

    last = ev->data.data + ev->data.len;

    for (p = *pos; p < last; p++) {
        p = ngx_http_aigw_usage_value(p, last, key, len);

        if (p == NULL) {
            break;
        }

        if (*p != '"') {
            continue;     /* "content":null */
        }

        q = ngx_http_aigw_guard_string_end(p + 1, last);
        if (q == NULL) {
            break;
        }

        text->start = p + 1;
        text->end = q;
        *pos = q + 1;

        return NGX_OK;
    }

    *pos = last;

    return NGX_DECLINED;
}
