
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_translate.h"


/*
 * Translation between wire formats: which candidates a request may have,
 * its body translated once in the access phase, the answer dispatched
 * to the pair of formats' file (translate_chat.c, translate_messages.c),
 * a provider's error in the client's words.  docs/translation.md has
 * every field and what becomes of it.
 */


static ngx_int_t ngx_http_aigw_translate_request(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_model_t *m);
static ngx_int_t ngx_http_aigw_translate_source(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_str_t *body);
static ngx_int_t ngx_http_aigw_translate_error(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t *b);
static ngx_http_aigw_translate_stream_t *ngx_http_aigw_translate_stream(
    ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx);
static void ngx_http_aigw_translate_pool(ngx_http_request_t *r,
    ngx_http_aigw_translate_stream_t *ts);


static char *ngx_http_aigw_translate_buffer_check(ngx_conf_t *cf,
    void *post, void *data);


ngx_conf_post_t  ngx_http_aigw_translate_buffer_post = {
    ngx_http_aigw_translate_buffer_check
};


/* the tag of a translated stream's buffers */
#define NGX_HTTP_AIGW_TRANSLATE_TAG                                           \
    ((ngx_buf_tag_t) &ngx_http_aigw_translate_event)


/*
 * Which candidates a request may have: the same format, or one it is
 * translated to, streams included.
 */

ngx_uint_t
ngx_http_aigw_translate_possible(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_model_t *m)
{
    if (m->provider->format == ctx->format) {
        return 1;
    }

    return (ctx->endpoint == NGX_HTTP_AIGW_EP_CHAT
            && m->provider->format == &ngx_http_aigw_anthropic_format)
           || (ctx->endpoint == NGX_HTTP_AIGW_EP_MESSAGES
               && m->provider->format == &ngx_http_aigw_openai_format);
}


/* the provider's path for what the client called */

ngx_str_t *
ngx_http_aigw_translate_path(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_model_t *m)
{
    static  ngx_str_t  messages = ngx_string("/messages");
    static  ngx_str_t  chat = ngx_string("/chat/completions");

    if (m->provider->format == ctx->format) {
        return &ctx->ep->suffix;
    }

    return (ctx->endpoint == NGX_HTTP_AIGW_EP_CHAT) ? &messages : &chat;
}


/*
 * Where a request has candidates whose providers speak another format,
 * its body is translated once, when the content phase starts, after
 * every step that edits the body (PII's placeholders, the format's
 * edits), and before any provider is called, so that a refusal is the
 * client's 400: the candidates it cannot go to are left out, and with
 * none left the 400 is the answer.
 */

ngx_int_t
ngx_http_aigw_translate_prepare(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    ngx_int_t               rc;
    ngx_uint_t              i, n;
    ngx_http_aigw_model_t  *m;

    for (i = 0; i < ctx->ncandidates; i++) {
        if (ctx->candidates[i]->provider->format != ctx->format) {
            break;
        }
    }

    if (i == ctx->ncandidates) {
        return NGX_OK;
    }

    m = ctx->candidates[i];

    rc = ngx_http_aigw_translate_request(r, ctx, m);

    if (rc == NGX_OK || rc == NGX_ERROR) {
        return rc;
    }

    /* refused: the candidates of the client's own format may serve it */

    for (i = 0, n = 0; i < ctx->ncandidates; i++) {
        if (ctx->candidates[i]->provider->format == ctx->format) {
            ctx->candidates[n++] = ctx->candidates[i];
        }
    }

    if (n == 0) {
        return rc;
    }

    ctx->ncandidates = n;
    ctx->error_message.len = 0;
    ctx->error_code = NULL;

    return NGX_OK;
}


/*
 * The body of a request as the candidate m's format has it, but for its
 * first member, "model", which request.c writes for each candidate:
 * ctx->translation.  NGX_OK, an HTTP status with the error recorded, or
 * NGX_ERROR.
 */

static ngx_int_t
ngx_http_aigw_translate_request(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_model_t *m)
{
    ngx_int_t                   rc;
    ngx_http_aigw_loc_conf_t   *alcf;
    ngx_http_aigw_translate_t   t;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    ngx_memzero(&t, sizeof(ngx_http_aigw_translate_t));

    t.r = r;
    t.ctx = ctx;
    t.out.pool = r->pool;
    t.max_tokens_default = alcf->translate_max_tokens;

    if (ngx_http_aigw_translate_source(r, ctx, &t.body) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_aigw_json_out_reserve(&t.out, ctx->body.len + 512) == NULL) {
        return NGX_ERROR;
    }

    if (ctx->format == &ngx_http_aigw_openai_format) {
        rc = ngx_http_aigw_translate_chat_request(&t);

    } else {
        rc = ngx_http_aigw_translate_messages_request(&t);
    }

    if (rc == NGX_ERROR || t.out.failed) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        ngx_http_aigw_json_out_lit(&t.out, "}");

        if (t.out.failed) {
            return NGX_ERROR;
        }

        ctx->translation.data = t.out.start;
        ctx->translation.len = t.out.pos - t.out.start;

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aigw: %V request translated for \"%V\", %uz bytes",
                       &ctx->format->name, &m->provider->name,
                       ctx->translation.len);

        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aigw: \"%s\" of a %V request cannot go to provider "
                  "\"%V\": %s", t.param, &ctx->format->name,
                  &m->provider->name, t.reason);

    return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                               "unsupported_parameter",
                               "'%s' cannot be translated for `%V`, served "
                               "in the %V format: %s.",
                               t.param, &ctx->model,
                               &m->provider->format->name, t.reason);
}


/*
 * What is translated: the client's body with the splices of the steps
 * (PII's placeholders: the provider never sees the values, whatever its
 * format), in one piece; the client's bytes as they are when none.
 */

static ngx_int_t
ngx_http_aigw_translate_source(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ngx_chain_t  *cl, *out;

    if (ctx->splices == NULL || ctx->splices->nelts == 0) {
        *body = ctx->body;
        return NGX_OK;
    }

    if (ngx_http_aigw_body_output(r, ctx, &ctx->model, &out, &len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;
    body->len = len;

    for (cl = out; cl; cl = cl->next) {
        if (cl->buf->last > cl->buf->pos) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    return NGX_OK;
}


/*
 * The body a translated candidate gets: {"model":"upstream model" and
 * the translation, which begins with a comma
 */

ngx_int_t
ngx_http_aigw_translate_body(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_model_t *model, ngx_chain_t **out, size_t *len)
{
    u_char       *p;
    size_t        n;
    ngx_buf_t    *b, *t;
    ngx_chain_t  *cl, *tl;

    n = sizeof("{\"model\":\"\"") - 1 + model->upstream_model.len
        + ngx_escape_json(NULL, model->upstream_model.data,
                          model->upstream_model.len);

    b = ngx_create_temp_buf(r->pool, n);
    t = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    tl = ngx_alloc_chain_link(r->pool);

    if (b == NULL || t == NULL || cl == NULL || tl == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->last, "{\"model\":\"", sizeof("{\"model\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, model->upstream_model.data,
                                   model->upstream_model.len);
    *p++ = '"';
    b->last = p;

    /* upstream puts pos back at start to send it to the next candidate */

    t->start = ctx->translation.data;
    t->pos = t->start;
    t->last = ctx->translation.data + ctx->translation.len;
    t->end = t->last;
    t->memory = 1;
    t->last_buf = 1;
    t->flush = 1;

    cl->buf = b;
    cl->next = tl;
    tl->buf = t;
    tl->next = NULL;

    *out = cl;
    *len = (b->last - b->pos) + ctx->translation.len;

    return NGX_OK;
}


/*
 * The state of a translated stream, in the request's pool from its
 * first buffer on
 */

static ngx_http_aigw_translate_stream_t *
ngx_http_aigw_translate_stream(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    ngx_http_aigw_translate_stream_t  *ts;

    ts = ctx->translate_stream;

    if (ts == NULL) {
        ts = ngx_pcalloc(r->pool, sizeof(ngx_http_aigw_translate_stream_t));
        if (ts == NULL) {
            return NULL;
        }

        ts->out.pool = r->pool;
        ts->scratch.pool = r->pool;
        ctx->translate_stream = ts;
    }

    return ts;
}


/*
 * A buffer of the stream's, empty, its memory (if any) kept: one sent
 * before, or a new one.  The filter takes its flush buffers here too.
 */

ngx_chain_t *
ngx_http_aigw_translate_buf(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    u_char                            *start, *end;
    ngx_buf_t                         *b;
    ngx_chain_t                       *cl;
    ngx_http_aigw_translate_stream_t  *ts;

    ts = ngx_http_aigw_translate_stream(r, ctx);
    if (ts == NULL) {
        return NULL;
    }

    cl = ngx_chain_get_free_buf(r->pool, &ts->free);
    if (cl == NULL) {
        return NULL;
    }

    b = cl->buf;

    start = b->start;
    end = b->end;

    ngx_memzero(b, sizeof(ngx_buf_t));

    b->start = start;
    b->pos = start;
    b->last = start;
    b->end = end;
    b->tag = NGX_HTTP_AIGW_TRANSLATE_TAG;

    return cl;
}


/* after the filter passed them on: the buffers sent are free again */

void
ngx_http_aigw_translate_sent(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t *out)
{
    ngx_http_aigw_translate_stream_t  *ts;

    ts = ctx->translate_stream;

    if (ts) {
        ts->cur = NULL;
        ngx_chain_update_chains(r->pool, &ts->free, &ts->busy, &out,
                                NGX_HTTP_AIGW_TRANSLATE_TAG);
    }
}


/*
 * An event of a translated stream: the provider's, as the client's
 * events, added to the buffer of this pass of the filter; *out is that
 * buffer when the event begins it, else NULL.  NGX_DECLINED: the event
 * cannot be translated, the stream ends.
 */

ngx_int_t
ngx_http_aigw_translate_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_sse_event_t *ev,
    ngx_chain_t **out)
{
    ngx_int_t                          rc;
    ngx_buf_t                         *b;
    ngx_chain_t                       *cl;
    ngx_http_aigw_translate_stream_t  *ts;

    *out = NULL;

    ts = ngx_http_aigw_translate_stream(r, ctx);
    if (ts == NULL) {
        return NGX_ERROR;
    }

    if (ts->done) {
        return NGX_OK;
    }

    if (ev->truncated) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: an event of provider \"%V\" is larger than "
                      "aigw_translate_buffer, it cannot be translated",
                      &ctx->candidates[ctx->current]->provider->name);
        ts->done = 1;
        return NGX_DECLINED;
    }

    /*
     * the client's events after those of the events before in this pass,
     * or in a buffer sent before if any
     */

    cl = ts->cur;

    if (cl == NULL) {
        cl = ngx_http_aigw_translate_buf(r, ctx);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        ts->out.start = cl->buf->start;
        ts->out.pos = cl->buf->start;
        ts->out.end = cl->buf->end;
    }

    b = cl->buf;

    ts->events++;

    if (ctx->format == &ngx_http_aigw_openai_format) {
        rc = ngx_http_aigw_translate_chat_event(r, ctx, ts, ev);

    } else {
        rc = ngx_http_aigw_translate_messages_event(r, ctx, ts, ev);
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: an event of provider \"%V\" has a key twice, "
                      "it cannot be translated",
                      &ctx->candidates[ctx->current]->provider->name);
        ts->done = 1;
        return NGX_DECLINED;
    }

    if (rc != NGX_OK || ts->out.failed) {
        return NGX_ERROR;
    }

    /* the memory, grown or not, stays the buffer's */

    b->start = ts->out.start;
    b->end = ts->out.end;

    if (ts->done) {
        ngx_http_aigw_translate_pool(r, ts);
    }

    if (ts->out.pos == ts->out.start) {
        /* nothing yet: the buffer goes back */
        cl->next = ts->free;
        ts->free = cl;
        return NGX_OK;
    }

    b->pos = ts->out.start;
    b->last = ts->out.pos;
    b->temporary = 1;

    if (ts->cur == NULL) {
        ts->cur = cl;
        *out = cl;
    }

    return NGX_OK;
}


/*
 * aigw_translate_buffer: the parser's storage of a translated stream,
 * allocated whole when its header comes (filter.c); from the 16 KB every
 * stream has to 16 MB
 */

static char *
ngx_http_aigw_translate_buffer_check(ngx_conf_t *cf, void *post, void *data)
{
    size_t  *sp = data;

    if (*sp < NGX_HTTP_AIGW_SSE_METER || *sp > 16 * 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigw_translate_buffer must be from %uz to %uz",
                           (size_t) NGX_HTTP_AIGW_SSE_METER,
                           (size_t) 16 * 1024 * 1024);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* what the stream took of the request's pool, for the debug log */

static void
ngx_http_aigw_translate_pool(ngx_http_request_t *r,
    ngx_http_aigw_translate_stream_t *ts)
{
#if (NGX_DEBUG)
    size_t             used;
    ngx_uint_t         blocks, large;
    ngx_pool_t        *p;
    ngx_pool_large_t  *l;

    used = 0;
    blocks = 0;
    large = 0;

    for (p = r->pool; p; p = p->d.next) {
        used += p->d.last - (u_char *) p;
        blocks++;
    }

    for (l = r->pool->large; l; l = l->next) {
        large++;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: translated stream of %ui events: the request's "
                   "pool has %uz bytes in %ui blocks, %ui large",
                   ts->events, used, blocks, large);
#endif
}


/*
 * The answer of a translated request, whole and checked (answer.c), in
 * the client's format: a 200 as the client's answer, with the usage the
 * meter read from the provider's; an error as the client's error, its
 * status kept.
 */

ngx_int_t
ngx_http_aigw_translate_answer(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t *b)
{
    if (!ctx->translated) {
        return NGX_OK;
    }

    if (r->upstream->headers_in.status_n != NGX_HTTP_OK) {
        return ngx_http_aigw_translate_error(r, ctx, b);
    }

    if (ctx->format == &ngx_http_aigw_openai_format) {
        return ngx_http_aigw_translate_chat_answer(r, ctx, b);
    }

    return ngx_http_aigw_translate_messages_answer(r, ctx, b);
}


/*
 * A provider's error in the client's words: the message and the type
 * of the provider's error object, or, for a body that has none, the
 * status; the status itself goes on.
 */

static ngx_int_t
ngx_http_aigw_translate_error(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_buf_t *b)
{
    u_char      *p, *code;
    size_t       len;
    ngx_str_t    body, error, message, type, msg, m[2];
    ngx_uint_t   status;

    static ngx_str_t  names[] = {
        ngx_string("message"), ngx_string("type")
    };

    status = r->upstream->headers_in.status_n;

    body.data = b->pos;
    body.len = r->upstream->headers_in.content_length_n;

    ngx_str_null(&message);
    ngx_str_null(&type);

    /* {"type":"error","error":{"type","message"}} or {"error":{...}} */

    if (ngx_http_aigw_json_member(&body, "error", &error) == NGX_OK
        && ngx_http_aigw_json_members(&error, names, m, 2) == NGX_OK)
    {
        message = m[0];
        type = m[1];
    }

    if (message.len >= 2 && message.data[0] == '"') {
        msg.data = ngx_pnalloc(r->pool, message.len);
        if (msg.data == NULL) {
            return NGX_ERROR;
        }

        msg.len = ngx_http_aigw_scan_unescape(msg.data, message.data + 1,
                                              message.data + message.len - 1)
                  - msg.data;

    } else {
        msg.data = ngx_pnalloc(r->pool, sizeof("The provider answered .")
                                        + NGX_INT_T_LEN);
        if (msg.data == NULL) {
            return NGX_ERROR;
        }

        msg.len = ngx_sprintf(msg.data, "The provider answered %ui.", status)
                  - msg.data;
    }

    /* the provider's type, without its quotes, as the code */

    if (type.len >= 2 && type.data[0] == '"'
        && ngx_strlchr(type.data + 1, type.data + type.len, '\\') == NULL)
    {
        type.data++;
        type.len -= 2;

    } else {
        ngx_str_set(&type, "upstream_error");
    }

    /* the code is a C string to the format's writer */

    code = ngx_pnalloc(r->pool, type.len + 1);
    if (code == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn(code, type.data, type.len + 1);

    len = ctx->format->error_len + type.len + msg.len
          + ngx_escape_json(NULL, msg.data, msg.len);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    len = ctx->format->error(p, status, (char *) code, &msg) - p;

    ngx_http_aigw_translate_replace(r, b, p, p + len);

    return NGX_OK;
}


ngx_int_t
ngx_http_aigw_translate_refuse(ngx_http_aigw_translate_t *t,
    const char *param, const char *reason)
{
    t->param = param;
    t->reason = reason;

    return NGX_HTTP_AIGW_TRANSLATE_REFUSED;
}


/*
 * The members of an object of the request (names, in one walk): NGX_OK,
 * NGX_ERROR, or the request refused for param: what, if the value is not
 * an object; a key twice, as the scan refuses one at the top level, as
 * the provider would read the last of them and the gateway the first.
 */

ngx_int_t
ngx_http_aigw_translate_members(ngx_http_aigw_translate_t *t,
    const char *param, const char *what, ngx_str_t *object,
    ngx_str_t *names, ngx_str_t *values, ngx_uint_t n)
{
    ngx_int_t  rc;

    rc = ngx_http_aigw_json_members(object, names, values, n);

    switch (rc) {

    case NGX_OK:
    case NGX_ERROR:
        return rc;

    case NGX_DECLINED:
        return ngx_http_aigw_translate_refuse(t, param, what);

    default: /* NGX_HTTP_AIGW_JSON_TWICE */
        return ngx_http_aigw_translate_refuse(t, param,
                                              "an object of it has a key "
                                              "twice");
    }
}


/* a string value's content, unescaped, in the pool */

ngx_int_t
ngx_http_aigw_translate_unescape(ngx_pool_t *pool, ngx_str_t *v,
    ngx_str_t *out)
{
    u_char  *dst;

    dst = ngx_pnalloc(pool, v->len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_http_aigw_scan_unescape(dst, v->data + 1,
                                           v->data + v->len - 1)
               - dst;
    out->data = dst;

    return NGX_OK;
}


/* 1 if a value is a number in [low, high] */

ngx_uint_t
ngx_http_aigw_translate_number_is(ngx_str_t *v, double low, double high)
{
    u_char   buf[32];
    char    *end;
    double   d;

    if (v->len == 0 || v->len >= sizeof(buf)
        || !((v->data[0] >= '0' && v->data[0] <= '9') || v->data[0] == '-'))
    {
        return 0;
    }

    ngx_cpystrn(buf, v->data, v->len + 1);

    d = strtod((char *) buf, &end);

    return end == (char *) buf + v->len && d >= low && d <= high;
}


/* the held answer's body becomes [start, last) */

void
ngx_http_aigw_translate_replace(ngx_http_request_t *r, ngx_buf_t *b,
    u_char *start, u_char *last)
{
    b->start = start;
    b->pos = start;
    b->last = last;
    b->end = last;

    r->upstream->headers_in.content_length_n = last - start;
}
