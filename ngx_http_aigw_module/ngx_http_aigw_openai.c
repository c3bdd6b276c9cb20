
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_cache.h"


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
static ngx_uint_t ngx_http_aigw_openai_usage_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, u_char *p, u_char *last)
    NGX_HTTP_AIGW_OUT_OF_LINE;
static ngx_uint_t ngx_http_aigw_openai_response_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_sse_event_t *ev)
    NGX_HTTP_AIGW_OUT_OF_LINE;
static ngx_int_t ngx_http_aigw_openai_convert(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_str_t *in, ngx_str_t *out);
static ngx_int_t ngx_http_aigw_openai_to_stream(ngx_http_request_t *r,
    ngx_str_t *in, ngx_str_t *out);
static ngx_int_t ngx_http_aigw_openai_to_json(ngx_http_request_t *r,
    ngx_str_t *in, ngx_str_t *out);
static u_char *ngx_http_aigw_openai_span(u_char *obj, u_char *last,
    const char *key, size_t len, ngx_str_t *v);
static u_char *ngx_http_aigw_openai_error(u_char *p, ngx_uint_t status,
    const char *code, ngx_str_t *msg);
static ngx_int_t ngx_http_aigw_openai_text(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_sse_event_t *ev, u_char **pos, ngx_http_aigw_span_t *text);
static ngx_uint_t ngx_http_aigw_openai_content(ngx_http_aigw_sse_event_t *ev);
static ngx_uint_t ngx_http_aigw_openai_filled(u_char *p, u_char *last,
    const char *key, size_t len);


static ngx_http_aigw_endpoint_t  ngx_http_aigw_openai_endpoints[] = {
    { ngx_string("/chat/completions"), NGX_HTTP_AIGW_EP_CHAT },
    { ngx_string("/completions"), NGX_HTTP_AIGW_EP_COMPLETIONS },
    { ngx_string("/embeddings"), NGX_HTTP_AIGW_EP_EMBEDDINGS },
    { ngx_string("/responses"), NGX_HTTP_AIGW_EP_RESPONSES },
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
    ngx_http_aigw_openai_convert,
    ngx_http_aigw_openai_error,
    sizeof("{\"error\":{\"message\":\"\",\"type\":\"invalid_request_error\","
           "\"param\":null,\"code\":\"\"}}") - 1,
    ngx_string("data: "),
    ngx_http_aigw_openai_text,
    ngx_http_aigw_openai_content
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
 * one (or absent when not asked for); "[DONE]" ends the stream.  Nearly
 * every event is a chunk ending in "usage":null, counted for the
 * estimate and done with here, in a few compares.
 */

static ngx_uint_t
ngx_http_aigw_openai_event(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_sse_event_t *ev)
{
    u_char  *p, *last;

    if (ctx->endpoint == NGX_HTTP_AIGW_EP_RESPONSES) {
        return ngx_http_aigw_openai_response_event(r, ctx, ev);
    }

    if (ev->done) {
        return NGX_HTTP_AIGW_EVENT_LAST;
    }

    if (ev->data.len == 0 || ev->truncated) {
        return 0;
    }

    p = ev->data.data;
    last = p + ev->data.len;

    if (last - p <= 13 || ngx_memcmp(last - 13, "\"usage\":null}", 13) != 0) {
        return ngx_http_aigw_openai_usage_event(r, ctx, p, last);
    }

    if (ctx->endpoint == NGX_HTTP_AIGW_EP_CHAT) {
        ngx_http_aigw_meter_estimate(ctx, p, last, "\"content\"", 9);

    } else {
        ngx_http_aigw_meter_estimate(ctx, p, last, "\"text\"", 6);
    }

    return 0;
}


/* a chunk that may carry usage: the last one, or any when not asked for */

static ngx_uint_t
ngx_http_aigw_openai_usage_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, u_char *p, u_char *last)
{
    u_char  *v, *c;

    v = ngx_http_aigw_usage_last_value(p, last, "\"usage\"", 7);

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


/*
 * An event of a Responses stream, named by its type: text comes in
 * "response.output_text.delta", usage in the event that ends the stream
 * ("response.completed", ".incomplete" or ".failed", the whole response
 * in each); no "[DONE]" follows.
 */

static ngx_uint_t
ngx_http_aigw_openai_response_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_sse_event_t *ev)
{
    u_char                 *p, *last, *v;
    ngx_str_t              *name;
    ngx_uint_t              i;
    ngx_http_aigw_field_t   id;

    static ngx_str_t  created = ngx_string("response.created");
    static ngx_str_t  delta = ngx_string("response.output_text.delta");
    static ngx_str_t  ends[] = {
        ngx_string("response.completed"),
        ngx_string("response.incomplete"),
        ngx_string("response.failed")
    };

    name = &ev->event;
    p = ev->data.data;
    last = p + ev->data.len;

    if (name->len == delta.len
        && ngx_strncmp(name->data, delta.data, delta.len) == 0)
    {
        if (!ev->truncated) {
            ngx_http_aigw_meter_estimate(ctx, p, last, "\"delta\"", 7);
        }

        return 0;
    }

    /* the response's id comes first in it: where it is, is remembered */

    if (name->len == created.len
        && ngx_strncmp(name->data, created.data, created.len) == 0)
    {
        v = ev->truncated ? NULL
                          : ngx_http_aigw_usage_value(p, last, "\"id\"", 4);

        if (v && *v == '"') {
            id.key = v;
            id.start = v;
            id.end = ngx_strlchr(v + 1, last, '"');

            if (id.end) {
                id.end++;
                ngx_http_aigw_responses_remember(r, ctx, &id);
            }
        }

        return 0;
    }

    for (i = 0; i < sizeof(ends) / sizeof(ngx_str_t); i++) {
        if (name->len == ends[i].len
            && ngx_strncmp(name->data, ends[i].data, ends[i].len) == 0)
        {
            break;
        }
    }

    if (i == sizeof(ends) / sizeof(ngx_str_t)) {
        return 0;
    }

    /* the response's usage closes it, after its output */

    v = ev->truncated ? NULL
                      : ngx_http_aigw_usage_last_value(p, last, "\"usage\"", 7);

    if (v && *v == '{') {
        ngx_http_aigw_meter_usage(ctx, v, last, 0);

    } else {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: no usage in the \"%V\" event%s", name,
                      ev->truncated ? " (too large to read)" : "");
    }

    return NGX_HTTP_AIGW_EVENT_LAST;
}


/*
 * A stored chat completion in the other mode: a stream of one content
 * chunk, a finish chunk, the usage chunk and [DONE]; or, from a stored
 * stream, one chat.completion with the content of every delta.  One
 * choice of text only: tool calls and n > 1 are declined (a miss).
 */

static ngx_int_t
ngx_http_aigw_openai_convert(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_str_t *in, ngx_str_t *out)
{
    if (ctx->endpoint != NGX_HTTP_AIGW_EP_CHAT) {
        return NGX_DECLINED;
    }

    return ctx->stream ? ngx_http_aigw_openai_to_stream(r, in, out)
                       : ngx_http_aigw_openai_to_json(r, in, out);
}


/* the value of a member as a span of the text, or NULL */

static u_char *
ngx_http_aigw_openai_span(u_char *obj, u_char *last, const char *key,
    size_t len, ngx_str_t *v)
{
    u_char  *p, *e;

    p = ngx_http_aigw_cache_json_get(obj, last, key, len);

    if (p == NULL) {
        ngx_str_null(v);
        return NULL;
    }

    e = ngx_http_aigw_cache_json_skip(p, last);

    if (e == NULL) {
        ngx_str_null(v);
        return NULL;
    }

    v->data = p;
    v->len = e - p;

    return p;
}


static ngx_int_t
ngx_http_aigw_openai_to_stream(ngx_http_request_t *r, ngx_str_t *in,
    ngx_str_t *out)
{
    u_char     *p, *last, *choice, *msg, *e;
    size_t      len;
    ngx_str_t   id, created, model, content, finish, usage, tools;

    p = in->data;
    last = p + in->len;

    if (ngx_http_aigw_openai_span(p, last, "choices", 7, &tools) == NULL
        || tools.data[0] != '[')
    {
        return NGX_DECLINED;
    }

    choice = tools.data + 1;

    while (choice < last && (*choice == ' ' || *choice == '\n')) {
        choice++;
    }

    e = ngx_http_aigw_cache_json_skip(choice, last);

    if (e == NULL || *choice != '{' || *e != ']') {
        return NGX_DECLINED;  /* not one choice */
    }

    msg = ngx_http_aigw_cache_json_get(choice, e, "message", 7);

    if (msg == NULL
        || ngx_http_aigw_openai_span(msg, e, "content", 7, &content) == NULL
        || content.data[0] != '"')
    {
        return NGX_DECLINED;
    }

    if (ngx_http_aigw_openai_span(msg, e, "tool_calls", 10, &tools)
        && tools.data[0] != 'n')
    {
        return NGX_DECLINED;
    }

    if (ngx_http_aigw_openai_span(choice, e, "finish_reason", 13, &finish)
        == NULL
        || ngx_http_aigw_openai_span(p, last, "id", 2, &id) == NULL
        || ngx_http_aigw_openai_span(p, last, "created", 7, &created)
           == NULL
        || ngx_http_aigw_openai_span(p, last, "model", 5, &model) == NULL)
    {
        return NGX_DECLINED;
    }

    (void) ngx_http_aigw_openai_span(p, last, "usage", 5, &usage);

#define NGX_HTTP_AIGW_CHUNK                                                   \
    "data: {\"id\":%V,\"object\":\"chat.completion.chunk\",\"created\":%V,"   \
    "\"model\":%V,"

    len = 4 * (sizeof(NGX_HTTP_AIGW_CHUNK) + id.len + created.len
               + model.len + 128)
          + content.len + finish.len + usage.len;

    out->data = ngx_pnalloc(r->pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(out->data, NGX_HTTP_AIGW_CHUNK
                    "\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                    "\"assistant\",\"content\":%V},\"logprobs\":null,"
                    "\"finish_reason\":null}]}\n\n",
                    &id, &created, &model, &content);

    p = ngx_sprintf(p, NGX_HTTP_AIGW_CHUNK
                    "\"choices\":[{\"index\":0,\"delta\":{},"
                    "\"logprobs\":null,\"finish_reason\":%V}]}\n\n",
                    &id, &created, &model, &finish);

    if (usage.len && usage.data[0] == '{') {
        p = ngx_sprintf(p, NGX_HTTP_AIGW_CHUNK
                        "\"choices\":[],\"usage\":%V}\n\n",
                        &id, &created, &model, &usage);
    }

#undef NGX_HTTP_AIGW_CHUNK

    p = ngx_cpymem(p, "data: [DONE]\n\n", sizeof("data: [DONE]\n\n") - 1);

    out->len = p - out->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_openai_to_json(ngx_http_request_t *r, ngx_str_t *in,
    ngx_str_t *out)
{
    u_char                     *p, *last, *d, *e, *choice, *delta, *buf;
    u_char                     *text;
    ngx_str_t                   id, created, model, finish, usage, v;
    ngx_http_aigw_sse_event_t   ev;
    ngx_http_aigw_sse_parser_t  sse;

    buf = ngx_pnalloc(r->pool, NGX_HTTP_AIGW_SSE_METER);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    /* the text is never longer than the stream */

    text = ngx_pnalloc(r->pool, in->len);
    if (text == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&ev, sizeof(ngx_http_aigw_sse_event_t));

    ngx_str_null(&id);
    ngx_str_null(&created);
    ngx_str_null(&model);
    ngx_str_set(&finish, "null");
    ngx_str_set(&usage, "null");

    d = text;

    ngx_http_aigw_sse_init(&sse, buf, NGX_HTTP_AIGW_SSE_METER);

    p = in->data;
    last = p + in->len;

    while (ngx_http_aigw_sse_parse(&sse, &p, last, &ev) == NGX_OK) {

        if (ev.done) {
            break;
        }

        if (ev.truncated || ev.data.len == 0) {
            return NGX_DECLINED;
        }

        /* the parser's buffer is reused: what is kept is in the input */

        e = ev.data.data + ev.data.len;

        if (id.len == 0) {
            if (ngx_http_aigw_openai_span(ev.data.data, e, "id", 2, &v)) {
                id.data = ngx_pstrdup(r->pool, &v);
                id.len = v.len;
            }

            if (ngx_http_aigw_openai_span(ev.data.data, e, "created", 7, &v))
            {
                created.data = ngx_pstrdup(r->pool, &v);
                created.len = v.len;
            }

            if (ngx_http_aigw_openai_span(ev.data.data, e, "model", 5, &v)) {
                model.data = ngx_pstrdup(r->pool, &v);
                model.len = v.len;
            }

            if (id.data == NULL || created.data == NULL
                || model.data == NULL)
            {
                return NGX_DECLINED;
            }
        }

        if (ngx_http_aigw_openai_span(ev.data.data, e, "usage", 5, &v)
            && v.data[0] == '{')
        {
            usage.data = ngx_pstrdup(r->pool, &v);
            usage.len = v.len;

            if (usage.data == NULL) {
                return NGX_ERROR;
            }
        }

        if (ngx_http_aigw_openai_span(ev.data.data, e, "choices", 7, &v)
            == NULL || v.data[0] != '[')
        {
            return NGX_DECLINED;
        }

        choice = v.data + 1;

        if (*choice == ']') {
            continue;   /* the usage chunk */
        }

        e = ngx_http_aigw_cache_json_skip(choice, v.data + v.len);

        if (e == NULL || *choice != '{' || *e != ']') {
            return NGX_DECLINED;
        }

        delta = ngx_http_aigw_cache_json_get(choice, e, "delta", 5);

        if (delta == NULL) {
            return NGX_DECLINED;
        }

        if (ngx_http_aigw_openai_span(delta, e, "tool_calls", 10, &v)
            && v.data[0] != 'n')
        {
            return NGX_DECLINED;
        }

        if (ngx_http_aigw_openai_span(delta, e, "content", 7, &v)
            && v.data[0] == '"')
        {
            d = ngx_cpymem(d, v.data + 1, v.len - 2);
        }

        if (ngx_http_aigw_openai_span(choice, e, "finish_reason", 13, &v)
            && v.data[0] != 'n')
        {
            finish.data = ngx_pstrdup(r->pool, &v);
            finish.len = v.len;

            if (finish.data == NULL) {
                return NGX_ERROR;
            }
        }
    }

    if (!ev.done || id.len == 0) {
        return NGX_DECLINED;
    }

    v.data = text;
    v.len = d - text;

    buf = ngx_pnalloc(r->pool, v.len + id.len + created.len + model.len
                               + finish.len + usage.len + 256);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(buf, "{\"id\":%V,\"object\":\"chat.completion\","
                    "\"created\":%V,\"model\":%V,\"choices\":[{\"index\":0,"
                    "\"message\":{\"role\":\"assistant\",\"content\":\"%V\","
                    "\"refusal\":null},\"logprobs\":null,"
                    "\"finish_reason\":%V}],\"usage\":%V}",
                    &id, &created, &model, &v, &finish, &usage);

    out->data = buf;
    out->len = p - buf;

    return NGX_OK;
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


/*
 * Whether an event carries content: a chat delta with text, reasoning, a
 * refusal or a tool call, a completion's text, a Responses "*.delta";
 * or ends the answer (a finish reason, [DONE], an error, the Responses
 * end).  The role chunk that comes first carries none.
 */

static ngx_uint_t
ngx_http_aigw_openai_content(ngx_http_aigw_sse_event_t *ev)
{
    u_char      *p, *last;
    ngx_str_t   *name;
    ngx_uint_t   i;

    static ngx_str_t  delta = ngx_string(".delta");
    static ngx_str_t  ends[] = {
        ngx_string("response.completed"),
        ngx_string("response.incomplete"),
        ngx_string("response.failed")
    };
    static ngx_str_t  keys[] = {
        ngx_string("\"content\""),
        ngx_string("\"reasoning_content\""),
        ngx_string("\"reasoning\""),
        ngx_string("\"refusal\""),
        ngx_string("\"tool_calls\""),
        ngx_string("\"text\""),
        ngx_string("\"finish_reason\""),
        ngx_string("\"error\"")
    };

    if (ev->done || ev->truncated) {
        return 1;
    }

    name = &ev->event;

    if (name->len > sizeof("response.") - 1
        && ngx_strncmp(name->data, "response.", sizeof("response.") - 1)
           == 0)
    {
        if (name->len > delta.len
            && ngx_strncmp(name->data + name->len - delta.len, delta.data,
                           delta.len)
               == 0)
        {
            return 1;
        }

        for (i = 0; i < sizeof(ends) / sizeof(ngx_str_t); i++) {
            if (name->len == ends[i].len
                && ngx_strncmp(name->data, ends[i].data, name->len) == 0)
            {
                return 1;
            }
        }

        return 0;
    }

    if (name->len == sizeof("error") - 1
        && ngx_strncmp(name->data, "error", name->len) == 0)
    {
        return 1;
    }

    p = ev->data.data;
    last = p + ev->data.len;

    for (i = 0; i < sizeof(keys) / sizeof(ngx_str_t); i++) {
        if (ngx_http_aigw_openai_filled(p, last, (char *) keys[i].data,
                                        keys[i].len))
        {
            return 1;
        }
    }

    return 0;
}


/* a key whose value is neither null nor empty ("", [], {}) */

static ngx_uint_t
ngx_http_aigw_openai_filled(u_char *p, u_char *last, const char *key,
    size_t len)
{
    while (p < last) {
        p = ngx_http_aigw_usage_value(p, last, key, len);

        if (p == NULL || p + 1 >= last) {
            return 0;
        }

        if ((p[0] == '"' && p[1] != '"')
            || (p[0] == '[' && p[1] != ']')
            || (p[0] == '{' && p[1] != '}'))
        {
            return 1;
        }

        p++;
    }

    return 0;
}
