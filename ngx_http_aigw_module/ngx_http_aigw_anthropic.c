
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * Anthropic's Messages API: "x-api-key" and an "anthropic-version"
 * header; the caller in "metadata.user_id"; usage in the message_start
 * and message_delta events of a stream.
 */


#define NGX_HTTP_AIGW_ANTHROPIC_VERSION  "2023-06-01"


static ngx_int_t ngx_http_aigw_anthropic_headers(ngx_http_request_t *r,
    ngx_str_t *out);
static ngx_int_t ngx_http_aigw_anthropic_edit(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static ngx_uint_t ngx_http_aigw_anthropic_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_sse_event_t *ev);
static u_char *ngx_http_aigw_anthropic_error(u_char *p, ngx_uint_t status,
    const char *code, ngx_str_t *msg);
static ngx_int_t ngx_http_aigw_anthropic_text(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_sse_event_t *ev, u_char **pos, ngx_http_aigw_span_t *text);


static ngx_http_aigw_endpoint_t  ngx_http_aigw_anthropic_endpoints[] = {
    { ngx_string("/messages"), NGX_HTTP_AIGW_EP_MESSAGES },
    { ngx_null_string, NGX_HTTP_AIGW_EP_UNKNOWN }
};


ngx_http_aigw_format_t  ngx_http_aigw_anthropic_format = {
    ngx_string("anthropic"),
    ngx_http_aigw_anthropic_endpoints,
    ngx_string("x-api-key: "),
    ngx_http_aigw_anthropic_headers,
    ngx_http_aigw_anthropic_edit,
    ngx_http_aigw_anthropic_event,
    ngx_http_aigw_anthropic_error,
    sizeof("{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
           "\"message\":\"\"}}") - 1,
    ngx_string("event: error\ndata: "),
    ngx_http_aigw_anthropic_text
};


/* the client's own "anthropic-version", as the SDKs pin what they parse */

static ngx_int_t
ngx_http_aigw_anthropic_headers(ngx_http_request_t *r, ngx_str_t *out)
{
    u_char           *p;
    ngx_str_t         version;
    ngx_table_elt_t  *h;

    ngx_str_set(&version, NGX_HTTP_AIGW_ANTHROPIC_VERSION);

    h = ngx_http_aigw_request_header(r, "anthropic-version",
                                     sizeof("anthropic-version") - 1, NULL);
    if (h && h->value.len) {
        version = h->value;
    }

    p = ngx_pnalloc(r->pool, sizeof("anthropic-version: " CRLF) - 1
                             + version.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = ngx_sprintf(p, "anthropic-version: %V" CRLF, &version) - p;

    return NGX_OK;
}


/* aigw_tenant_user: the caller as "metadata.user_id" */

static ngx_int_t
ngx_http_aigw_anthropic_edit(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    u_char                    *p;
    ngx_str_t                  user, value;
    ngx_http_aigw_field_t     *f;
    ngx_http_aigw_loc_conf_t  *alcf;

    static ngx_str_t  metadata = ngx_string("metadata");
    static ngx_str_t  user_id = ngx_string("user_id");

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    if (!alcf->tenant_user || ctx->tenant.len == 0) {
        return NGX_OK;
    }

    if (ngx_http_aigw_body_caller(r, ctx, &user) != NGX_OK) {
        return NGX_ERROR;
    }

    f = &ctx->scan.field[NGX_HTTP_AIGW_F_METADATA];

    if (f->key && *f->start == '{') {
        return ngx_http_aigw_body_set_field(r, ctx, NGX_HTTP_AIGW_F_METADATA,
                                            NGX_HTTP_AIGW_F_USER_ID,
                                            &user_id, &user);
    }

    /* no object to add to: one with the user alone */

    value.len = sizeof("{\"user_id\":}") - 1 + user.len;
    value.data = ngx_pnalloc(r->pool, value.len);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(value.data, "{\"user_id\":", sizeof("{\"user_id\":") - 1);
    p = ngx_cpymem(p, user.data, user.len);
    *p = '}';

    return ngx_http_aigw_body_set_field(r, ctx, NGX_HTTP_AIGW_F_N,
                                        NGX_HTTP_AIGW_F_METADATA,
                                        &metadata, &value);
}


/* the event's name says where usage is */

static ngx_uint_t
ngx_http_aigw_anthropic_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_sse_event_t *ev)
{
    u_char     *p, *last, *v;
    ngx_str_t  *name;

    name = &ev->event;

    if (name->len == sizeof("message_stop") - 1
        && ngx_strncmp(name->data, "message_stop", name->len) == 0)
    {
        return NGX_HTTP_AIGW_EVENT_LAST;
    }

    if (ev->data.len == 0 || ev->truncated) {
        return 0;
    }

    p = ev->data.data;
    last = p + ev->data.len;

    if (name->len == sizeof("content_block_delta") - 1
        && ngx_strncmp(name->data, "content_block_delta", name->len) == 0)
    {
        ngx_http_aigw_meter_estimate(ctx, p, last, "\"text\"", 6);
        return 0;
    }

    if (name->len != sizeof("message_start") - 1
        || (ngx_strncmp(name->data, "message_start", name->len) != 0
            && ngx_strncmp(name->data, "message_delta", name->len) != 0))
    {
        return 0;
    }

    v = ngx_http_aigw_usage_last_value(p, last, "\"usage\"", 7);

    if (v && *v == '{') {
        /* message_start holds the whole usage, message_delta the
         * output so far */
        ngx_http_aigw_meter_usage(ctx, v, last, name->data[8] == 'd');
    }

    return 0;
}


/* {"type":"error","error":{"type","message"}} */

static u_char *
ngx_http_aigw_anthropic_error(u_char *p, ngx_uint_t status, const char *code,
    ngx_str_t *msg)
{
    const char  *type;

    switch (status) {

    case NGX_HTTP_UNAUTHORIZED:
        type = "authentication_error";
        break;

    case NGX_HTTP_FORBIDDEN:
        type = "permission_error";
        break;

    case NGX_HTTP_NOT_FOUND:
        type = "not_found_error";
        break;

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        type = "request_too_large";
        break;

    case NGX_HTTP_TOO_MANY_REQUESTS:
        type = "rate_limit_error";
        break;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        type = "overloaded_error";
        break;

    default:
        type = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR)
               ? "api_error" : "invalid_request_error";
    }

    p = ngx_sprintf(p, "{\"type\":\"error\",\"error\":{\"type\":\"%s\","
                    "\"message\":\"", type);
    p = (u_char *) ngx_escape_json(p, msg->data, msg->len);

    return ngx_cpymem(p, "\"}}", 3);
}


/* the text of a "content_block_delta": its delta's "text" */

static ngx_int_t
ngx_http_aigw_anthropic_text(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_sse_event_t *ev, u_char **pos, ngx_http_aigw_span_t *text)
{
    u_char  *p, *q, *last;

    last = ev->data.data + ev->data.len;

    if (ev->event.len != sizeof("content_block_delta") - 1
        || ngx_strncmp(ev->event.data, "content_block_delta",
                       ev->event.len) != 0)
    {
        *pos = last;
        return NGX_DECLINED;
    }

    p = ngx_http_aigw_usage_value(*pos, last, "\"text\"", 6);

    if (p == NULL || *p != '"') {
        *pos = last;
        return NGX_DECLINED;
    }

    q = ngx_http_aigw_guard_string_end(p + 1, last);
    if (q == NULL) {
        *pos = last;
        return NGX_DECLINED;
    }

    text->start = p + 1;
    text->end = q;
    *pos = q + 1;

    return NGX_OK;
}
