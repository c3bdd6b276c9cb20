
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_cache.h"


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
static ngx_int_t ngx_http_aigw_anthropic_convert(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_str_t *in, ngx_str_t *out);
static ngx_int_t ngx_http_aigw_anthropic_to_stream(ngx_http_request_t *r,
    ngx_str_t *in, ngx_str_t *out);
static ngx_int_t ngx_http_aigw_anthropic_to_json(ngx_http_request_t *r,
    ngx_str_t *in, ngx_str_t *out);
static u_char *ngx_http_aigw_anthropic_span(u_char *obj, u_char *last,
    const char *key, size_t len, ngx_str_t *v);
static u_char *ngx_http_aigw_anthropic_error(u_char *p, ngx_uint_t status,
    const char *code, ngx_str_t *msg);
static ngx_int_t ngx_http_aigw_anthropic_text(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_sse_event_t *ev, u_char **pos, ngx_http_aigw_span_t *text);
static ngx_uint_t ngx_http_aigw_anthropic_content(
    ngx_http_aigw_sse_event_t *ev);


static ngx_http_aigw_endpoint_t  ngx_http_aigw_anthropic_endpoints[] = {
    { ngx_string("/messages"), NGX_HTTP_AIGW_EP_MESSAGES },
    { ngx_string("/messages/count_tokens"), NGX_HTTP_AIGW_EP_COUNT_TOKENS },
    { ngx_null_string, NGX_HTTP_AIGW_EP_UNKNOWN }
};


ngx_http_aigw_format_t  ngx_http_aigw_anthropic_format = {
    ngx_string("anthropic"),
    ngx_http_aigw_anthropic_endpoints,
    ngx_string("x-api-key: "),
    ngx_http_aigw_anthropic_headers,
    ngx_http_aigw_anthropic_edit,
    ngx_http_aigw_anthropic_event,
    ngx_http_aigw_anthropic_convert,
    ngx_http_aigw_anthropic_error,
    sizeof("{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
           "\"message\":\"\"}}") - 1,
    ngx_string("event: error\ndata: "),
    ngx_http_aigw_anthropic_text,
    ngx_http_aigw_anthropic_content
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


/*
 * A stored message in the other mode: the events of a stream of one text
 * block (message_start with the usage, the block, message_delta with the
 * stop reason and output count, message_stop); or, from a stored stream,
 * one message with the text of every text_delta.  Text only: tool use
 * and thinking blocks are declined (a miss).
 */

static ngx_int_t
ngx_http_aigw_anthropic_convert(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_str_t *in, ngx_str_t *out)
{
    if (ctx->endpoint != NGX_HTTP_AIGW_EP_MESSAGES) {
        return NGX_DECLINED;
    }

    return ctx->stream ? ngx_http_aigw_anthropic_to_stream(r, in, out)
                       : ngx_http_aigw_anthropic_to_json(r, in, out);
}


/* the value of a member as a span of the text, or NULL */

static u_char *
ngx_http_aigw_anthropic_span(u_char *obj, u_char *last, const char *key,
    size_t len, ngx_str_t *v)
{
    u_char  *p, *e;

    ngx_str_null(v);

    p = ngx_http_aigw_cache_json_get(obj, last, key, len);

    if (p == NULL) {
        return NULL;
    }

    e = ngx_http_aigw_cache_json_skip(p, last);

    if (e == NULL) {
        return NULL;
    }

    v->data = p;
    v->len = e - p;

    return p;
}


static ngx_int_t
ngx_http_aigw_anthropic_to_stream(ngx_http_request_t *r, ngx_str_t *in,
    ngx_str_t *out)
{
    u_char     *p, *last, *block, *e;
    size_t      len;
    ngx_str_t   id, model, content, text, type, stop, seq, usage, output;

    p = in->data;
    last = p + in->len;

    if (ngx_http_aigw_anthropic_span(p, last, "content", 7, &content)
        == NULL
        || content.data[0] != '[')
    {
        return NGX_DECLINED;
    }

    block = content.data + 1;
    e = ngx_http_aigw_cache_json_skip(block, last);

    if (e == NULL || *block != '{' || *e != ']') {
        return NGX_DECLINED;  /* not one block */
    }

    if (ngx_http_aigw_anthropic_span(block, e, "type", 4, &type) == NULL
        || type.len != 6 || ngx_strncmp(type.data, "\"text\"", 6) != 0
        || ngx_http_aigw_anthropic_span(block, e, "text", 4, &text) == NULL
        || text.data[0] != '"')
    {
        return NGX_DECLINED;
    }

    if (ngx_http_aigw_anthropic_span(p, last, "id", 2, &id) == NULL
        || ngx_http_aigw_anthropic_span(p, last, "model", 5, &model) == NULL
        || ngx_http_aigw_anthropic_span(p, last, "stop_reason", 11, &stop)
           == NULL
        || ngx_http_aigw_anthropic_span(p, last, "usage", 5, &usage) == NULL
        || usage.data[0] != '{'
        || ngx_http_aigw_anthropic_span(usage.data, usage.data + usage.len,
                                        "output_tokens", 13, &output)
           == NULL)
    {
        return NGX_DECLINED;
    }

    if (ngx_http_aigw_anthropic_span(p, last, "stop_sequence", 13, &seq)
        == NULL)
    {
        ngx_str_set(&seq, "null");
    }

    len = 1024 + id.len + model.len + usage.len + text.len + stop.len
          + seq.len + output.len;

    out->data = ngx_pnalloc(r->pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(out->data,
            "event: message_start\n"
            "data: {\"type\":\"message_start\",\"message\":{\"id\":%V,"
            "\"type\":\"message\",\"role\":\"assistant\",\"model\":%V,"
            "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
            "\"usage\":%V}}\n\n"
            "event: content_block_start\n"
            "data: {\"type\":\"content_block_start\",\"index\":0,"
            "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
            "event: content_block_delta\n"
            "data: {\"type\":\"content_block_delta\",\"index\":0,"
            "\"delta\":{\"type\":\"text_delta\",\"text\":%V}}\n\n"
            "event: content_block_stop\n"
            "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
            "event: message_delta\n"
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":%V,"
            "\"stop_sequence\":%V},\"usage\":{\"output_tokens\":%V}}\n\n"
            "event: message_stop\n"
            "data: {\"type\":\"message_stop\"}\n\n",
            &id, &model, &usage, &text, &stop, &seq, &output);

    out->len = p - out->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_anthropic_to_json(ngx_http_request_t *r, ngx_str_t *in,
    ngx_str_t *out)
{
    u_char                     *p, *last, *d, *e, *text, *buf, *msg;
    ngx_str_t                   id, model, stop, seq, input, output, v, t;
    ngx_uint_t                  done;
    ngx_http_aigw_sse_event_t   ev;
    ngx_http_aigw_sse_parser_t  sse;

    buf = ngx_pnalloc(r->pool, NGX_HTTP_AIGW_SSE_METER);
    text = ngx_pnalloc(r->pool, in->len);

    if (buf == NULL || text == NULL) {
        return NGX_ERROR;
    }

    ngx_str_null(&id);
    ngx_str_null(&model);
    ngx_str_null(&input);
    ngx_str_null(&output);
    ngx_str_set(&stop, "null");
    ngx_str_set(&seq, "null");

    d = text;
    done = 0;

    ngx_http_aigw_sse_init(&sse, buf, NGX_HTTP_AIGW_SSE_METER);

    p = in->data;
    last = p + in->len;

    while (ngx_http_aigw_sse_parse(&sse, &p, last, &ev) == NGX_OK) {

        if (ev.event.len == sizeof("message_stop") - 1
            && ngx_strncmp(ev.event.data, "message_stop", ev.event.len) == 0)
        {
            done = 1;
            break;
        }

        if (ev.truncated || ev.data.len == 0) {
            return NGX_DECLINED;
        }

        e = ev.data.data + ev.data.len;

        if (ngx_http_aigw_anthropic_span(ev.data.data, e, "type", 4, &t)
            == NULL)
        {
            return NGX_DECLINED;
        }

#define ngx_http_aigw_anthropic_is(t, s)                                      \
    ((t).len == sizeof("\"" s "\"") - 1                                       \
     && ngx_strncmp((t).data, "\"" s "\"", (t).len) == 0)

#define ngx_http_aigw_anthropic_keep(to, from)                                \
    (to).data = ngx_pstrdup(r->pool, &(from));                                \
    (to).len = (from).len;                                                    \
    if ((to).data == NULL) {                                                  \
        return NGX_ERROR;                                                     \
    }

        if (ngx_http_aigw_anthropic_is(t, "message_start")) {
            msg = ngx_http_aigw_cache_json_get(ev.data.data, e, "message", 7);

            if (msg == NULL
                || ngx_http_aigw_anthropic_span(msg, e, "id", 2, &v) == NULL)
            {
                return NGX_DECLINED;
            }

            ngx_http_aigw_anthropic_keep(id, v);

            if (ngx_http_aigw_anthropic_span(msg, e, "model", 5, &v)
                == NULL)
            {
                return NGX_DECLINED;
            }

            ngx_http_aigw_anthropic_keep(model, v);

            if (ngx_http_aigw_anthropic_span(msg, e, "usage", 5, &v)
                && v.data[0] == '{'
                && ngx_http_aigw_anthropic_span(v.data, v.data + v.len,
                                                "input_tokens", 12, &v))
            {
                ngx_http_aigw_anthropic_keep(input, v);
            }

        } else if (ngx_http_aigw_anthropic_is(t, "content_block_start")) {

            if (ngx_http_aigw_anthropic_span(ev.data.data, e, "index", 5, &v)
                == NULL
                || v.len != 1 || v.data[0] != '0')
            {
                return NGX_DECLINED;  /* a second block */
            }

            msg = ngx_http_aigw_cache_json_get(ev.data.data, e,
                                               "content_block", 13);

            if (msg == NULL
                || ngx_http_aigw_anthropic_span(msg, e, "type", 4, &v)
                   == NULL
                || !ngx_http_aigw_anthropic_is(v, "text"))
            {
                return NGX_DECLINED;  /* tool use, thinking */
            }

        } else if (ngx_http_aigw_anthropic_is(t, "content_block_delta")) {
            msg = ngx_http_aigw_cache_json_get(ev.data.data, e, "delta", 5);

            if (msg == NULL
                || ngx_http_aigw_anthropic_span(msg, e, "type", 4, &v)
                   == NULL
                || !ngx_http_aigw_anthropic_is(v, "text_delta")
                || ngx_http_aigw_anthropic_span(msg, e, "text", 4, &v)
                   == NULL
                || v.data[0] != '"')
            {
                return NGX_DECLINED;
            }

            d = ngx_cpymem(d, v.data + 1, v.len - 2);

        } else if (ngx_http_aigw_anthropic_is(t, "message_delta")) {
            msg = ngx_http_aigw_cache_json_get(ev.data.data, e, "delta", 5);

            if (msg && ngx_http_aigw_anthropic_span(msg, e, "stop_reason",
                                                    11, &v))
            {
                ngx_http_aigw_anthropic_keep(stop, v);
            }

            if (msg && ngx_http_aigw_anthropic_span(msg, e, "stop_sequence",
                                                    13, &v))
            {
                ngx_http_aigw_anthropic_keep(seq, v);
            }

            msg = ngx_http_aigw_cache_json_get(ev.data.data, e, "usage", 5);

            if (msg && ngx_http_aigw_anthropic_span(msg, e, "output_tokens",
                                                    13, &v))
            {
                ngx_http_aigw_anthropic_keep(output, v);
            }

        } else if (ngx_http_aigw_anthropic_is(t, "error")) {
            return NGX_DECLINED;
        }

#undef ngx_http_aigw_anthropic_is
#undef ngx_http_aigw_anthropic_keep
    }

    if (!done || id.len == 0 || input.len == 0 || output.len == 0) {
        return NGX_DECLINED;
    }

    v.data = text;
    v.len = d - text;

    out->data = ngx_pnalloc(r->pool, 256 + id.len + model.len + v.len
                                     + stop.len + seq.len + input.len
                                     + output.len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(out->data, "{\"id\":%V,\"type\":\"message\","
                    "\"role\":\"assistant\",\"model\":%V,\"content\":"
                    "[{\"type\":\"text\",\"text\":\"%V\"}],"
                    "\"stop_reason\":%V,\"stop_sequence\":%V,"
                    "\"usage\":{\"input_tokens\":%V,\"output_tokens\":%V}}",
                    &id, &model, &v, &stop, &seq, &input, &output);

    out->len = p - out->data;

    return NGX_OK;
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


/*
 * Whether an event carries content: a content_block_delta (text, thinking,
 * a tool's input), a tool_use block's start (its name); or ends the
 * answer (message_delta with the stop reason, message_stop, an error).
 * message_start, an empty text block's start and ping carry none.
 */

static ngx_uint_t
ngx_http_aigw_anthropic_content(ngx_http_aigw_sse_event_t *ev)
{
    ngx_str_t   *name;
    ngx_uint_t   i;

    static ngx_str_t  names[] = {
        ngx_string("content_block_delta"),
        ngx_string("message_delta"),
        ngx_string("message_stop"),
        ngx_string("error")
    };

    if (ev->truncated) {
        return 1;
    }

    name = &ev->event;

    for (i = 0; i < sizeof(names) / sizeof(ngx_str_t); i++) {
        if (name->len == names[i].len
            && ngx_strncmp(name->data, names[i].data, name->len) == 0)
        {
            return 1;
        }
    }

    if (name->len == sizeof("content_block_start") - 1
        && ngx_strncmp(name->data, "content_block_start", name->len) == 0)
    {
        return ngx_http_aigw_usage_value(ev->data.data,
                                         ev->data.data + ev->data.len,
                                         "\"text\"", 6)
               == NULL;
    }

    return 0;
}
