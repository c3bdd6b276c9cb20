
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * A provider's 200 that is not a stream is held until it is whole and
 * checked before the client gets its headers: a truncated body, an HTML
 * page or anything that is not a JSON object is then a failed attempt,
 * which nginx's next_upstream moves on from like an invalid header.
 *
 * The check runs inside process_header: once the headers are parsed
 * (and copied into the pool), the body is moved out of u->buffer into a
 * buffer of its own, de-chunked, so upstream never sees "too big
 * header".  When it is whole and good, u->buffer points at it and the
 * headers say it has that Content-Length: upstream's send_response
 * passes it to the input filter as the first and only read.
 */


/* JSON nested deeper than this is not an answer */


static ngx_int_t ngx_http_aigw_answer_process(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigw_answer_length(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static ngx_int_t ngx_http_aigw_answer_chunked(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static ngx_int_t ngx_http_aigw_answer_grow(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, size_t size);
static ngx_int_t ngx_http_aigw_answer_unheld(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, const char *why);
static ngx_int_t ngx_http_aigw_answer_check(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, u_char *p, u_char *last);
static ngx_int_t ngx_http_aigw_answer_done(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t *b);
#if (nginx_version >= 1023000)
static ngx_table_elt_t *ngx_http_aigw_answer_encoding(
    ngx_http_upstream_t *u);
#endif


/*
 * Called by process_header when the headers are done: NGX_OK passes the
 * answer on as it comes, NGX_AGAIN holds it (process_header is then
 * ngx_http_aigw_answer_process), NGX_HTTP_UPSTREAM_INVALID_HEADER fails
 * the attempt.
 */

ngx_int_t
ngx_http_aigw_answer_hold(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    off_t                      len;
    size_t                     size;
    ngx_str_t                 *type;
    ngx_table_elt_t           *enc;
    ngx_http_upstream_t       *u;
    ngx_http_aigw_loc_conf_t  *alcf;

    u = r->upstream;
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    len = u->headers_in.content_length_n;

    /*
     * a translated error is rewritten too, in the client's format, when
     * it is the answer: not when nginx moves on to the next candidate
     */

    if (u->headers_in.status_n != NGX_HTTP_OK
        && (!ctx->translated
            || (u->peer.tries > 1
                && (u->headers_in.status_n == NGX_HTTP_TOO_MANY_REQUESTS
                    || u->headers_in.status_n
                       >= NGX_HTTP_INTERNAL_SERVER_ERROR))))
    {
        return NGX_OK;
    }

    if (alcf->answer_buffer == 0 || len > (off_t) alcf->answer_buffer) {
        return ngx_http_aigw_answer_unheld(r, ctx, "larger than "
                                           "aigw_answer_buffer");
    }

    /* an answer that ends when the provider closes cannot be held here */

    if (len == -1 && !u->headers_in.chunked) {
        return ngx_http_aigw_answer_unheld(r, ctx, "of no known length");
    }

    if (u->headers_in.content_type) {
        type = &u->headers_in.content_type->value;

        if (type->len >= sizeof("text/event-stream") - 1
            && ngx_strncasecmp(type->data, (u_char *) "text/event-stream",
                               sizeof("text/event-stream") - 1)
               == 0)
        {
            return NGX_OK;
        }
    }

    /* a compressed body is not read by the gateway; it passes unchecked */

#if (nginx_version >= 1023000)
    /* nginx 1.23.0 no longer sets u->headers_in.content_encoding */
    enc = ngx_http_aigw_answer_encoding(u);
#else
    enc = u->headers_in.content_encoding;
#endif

    if (enc
        && !(enc->value.len == 8
             && ngx_strncasecmp(enc->value.data, (u_char *) "identity", 8)
                == 0))
    {
        return ngx_http_aigw_answer_unheld(r, ctx, "compressed");
    }

    if (!u->headers_in.chunked) {

        /* most answers are whole in the first read: checked where they are */

        if (u->buffer.last - u->buffer.pos >= len) {
            if (ngx_http_aigw_answer_check(r, ctx, u->buffer.pos,
                                           u->buffer.pos + len)
                != NGX_OK)
            {
                return NGX_HTTP_UPSTREAM_INVALID_HEADER;
            }

            return ngx_http_aigw_answer_done(r, ctx, &u->buffer);
        }

        size = (size_t) len;

    } else {
        size = ngx_min(u->conf->buffer_size, alcf->answer_buffer);
    }

    ctx->answer = ngx_create_temp_buf(r->pool, size);
    if (ctx->answer == NULL) {
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: answer held, Content-Length %O", len);

    ctx->answer_held = 1;
    u->process_header = ngx_http_aigw_answer_process;

    return ngx_http_aigw_answer_process(r);
}


/*
 * An answer the gateway cannot hold whole passes as it comes, unchecked;
 * but not one that must be rewritten (translated) or checked by the
 * output guard, which a part of it cannot be: that attempt fails, as
 * an answer that is not JSON does, rather than reach the client in the
 * provider's format or unguarded.
 */

static ngx_int_t
ngx_http_aigw_answer_unheld(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    const char *why)
{
    if (r->upstream->headers_in.status_n != NGX_HTTP_OK
        || (!ctx->translated && !ngx_http_aigw_guard_output_on(r)))
    {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "aigw: the answer of provider \"%V\" is %s, and must be "
                  "%s whole", &ctx->candidates[ctx->current]->provider->name,
                  why, ctx->translated ? "translated" : "guarded");

    (void) ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_GATEWAY,
                               "answer_unreadable",
                               "The answer of `%V` is %s: the gateway must "
                               "read it whole to %s it.", &ctx->model, why,
                               ctx->translated ? "translate" : "check");

    return NGX_HTTP_UPSTREAM_INVALID_HEADER;
}


/* process_header while the body of a held answer arrives */

static ngx_int_t
ngx_http_aigw_answer_process(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_buf_t            *b;
    ngx_http_upstream_t  *u;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    u = r->upstream;
    b = ctx->answer;

    if (u->headers_in.chunked) {
        rc = ngx_http_aigw_answer_chunked(r, ctx);

    } else {
        rc = ngx_http_aigw_answer_length(r, ctx);
    }

    if (rc == NGX_AGAIN) {

        /* all read is in ctx->answer: the buffer takes the next read */

        u->buffer.pos = u->buffer.start;
        u->buffer.last = u->buffer.start;

        /* the provider may be silent that long between reads, as later */

        ngx_add_timer(u->peer.connection->read, u->conf->read_timeout);

        return NGX_AGAIN;
    }

    ctx->answer_held = 0;

    if (rc == NGX_DONE) {

        /*
         * larger than aigw_answer_buffer: what was read goes first, from
         * input_filter_init, then the rest as it comes, unchecked
         */

        rc = ngx_http_aigw_answer_unheld(r, ctx, "larger than "
                                         "aigw_answer_buffer");

        if (rc == NGX_OK) {
            ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                          "aigw: the answer of provider \"%V\" is larger "
                          "than aigw_answer_buffer, passed on unchecked",
                          &ctx->candidates[ctx->current]->provider->name);
        }

        return rc;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    ctx->answer = NULL;

    rc = ngx_http_aigw_answer_check(r, ctx, b->pos, b->last);

    if (rc != NGX_OK) {
        return rc;
    }

    u->buffer.start = b->start;
    u->buffer.pos = b->pos;
    u->buffer.last = b->last;
    u->buffer.end = b->last;

    return ngx_http_aigw_answer_done(r, ctx, &u->buffer);
}


/*
 * A whole, checked answer as the client gets it: a translated answer
 * rewritten in the client's format, the output guard's patterns (a
 * match makes it the client's 400), aigw_pii restore's values put back
 * for placeholders; then it may be cached
 */

static ngx_int_t
ngx_http_aigw_answer_done(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_buf_t *b)
{
    if (ngx_http_aigw_translate_answer(r, ctx, b) != NGX_OK
        || ngx_http_aigw_guard_output_answer(r, ctx, b) != NGX_OK
        || ngx_http_aigw_pii_restore(r, ctx, b) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->cache && r->upstream->headers_in.status_n == NGX_HTTP_OK) {
        ngx_http_aigw_cache_answer(r, ctx, b);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_answer_length(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    size_t                n;
    ngx_buf_t            *b, *in;
    ngx_http_upstream_t  *u;

    u = r->upstream;
    in = &u->buffer;
    b = ctx->answer;

    n = ngx_min((size_t) (in->last - in->pos), (size_t) (b->end - b->last));

    b->last = ngx_cpymem(b->last, in->pos, n);
    in->pos += n;

    if (b->last < b->end) {
        return NGX_AGAIN;
    }

    if (in->pos != in->last) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: provider sent more data than its "
                      "Content-Length");

        /* not kept alive */
        u->headers_in.connection_close = 1;
    }

    return NGX_OK;
}


/*
 * De-chunks into ctx->answer.  NGX_OK: the last chunk was seen, and the
 * answer is now a plain Content-Length one; NGX_DONE: it outgrew
 * aigw_answer_buffer, u->buffer.pos is at chunk data not yet taken, and
 * ctx->chunked where the chunked input filter goes on from.
 */

static ngx_int_t
ngx_http_aigw_answer_chunked(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    size_t                size;
    ngx_int_t             rc;
    ngx_buf_t            *b, *in;
    ngx_http_upstream_t  *u;

    u = r->upstream;
    in = &u->buffer;

    for ( ;; ) {

#if (nginx_version >= 1027002)
        /* nginx 1.27.2 added keep_trailers; trailers are skipped here */
        rc = ngx_http_parse_chunked(r, in, &ctx->chunked, 0);
#else
        rc = ngx_http_parse_chunked(r, in, &ctx->chunked);
#endif

        if (rc == NGX_OK) {

            /* the data of a chunk, whole or the part read so far */

            size = in->last - in->pos;

            if ((off_t) size > ctx->chunked.size) {
                size = (size_t) ctx->chunked.size;
            }

            b = ctx->answer;

            if (size > (size_t) (b->end - b->last)) {
                rc = ngx_http_aigw_answer_grow(r, ctx, size);

                if (rc != NGX_OK) {
                    return rc;
                }

                b = ctx->answer;
            }

            b->last = ngx_cpymem(b->last, in->pos, size);
            in->pos += size;
            ctx->chunked.size -= size;

            continue;
        }

        if (rc == NGX_DONE) {

            if (in->pos != in->last) {
                ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                              "aigw: provider sent data after the final "
                              "chunk");
                u->headers_in.connection_close = 1;
            }

            u->headers_in.chunked = 0;
            u->headers_in.content_length_n = ctx->answer->last
                                             - ctx->answer->pos;
            return NGX_OK;
        }

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: provider \"%V\" sent an invalid chunked body",
                      &ctx->candidates[ctx->current]->provider->name);

        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }
}


/* room for size more bytes; NGX_DONE past aigw_answer_buffer */

static ngx_int_t
ngx_http_aigw_answer_grow(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    size_t size)
{
    size_t                     len, n;
    ngx_buf_t                 *b;
    ngx_http_aigw_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    len = ctx->answer->last - ctx->answer->pos;

    if (len + size > alcf->answer_buffer) {
        return NGX_DONE;
    }

    n = ngx_min(ngx_max(2 * (size_t) (ctx->answer->end - ctx->answer->start),
                        len + size),
                alcf->answer_buffer);

    b = ngx_create_temp_buf(r->pool, n);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->pos, ctx->answer->pos, len);

    ngx_pfree(r->pool, ctx->answer->start);
    ctx->answer = b;

    return NGX_OK;
}


/*
 * Whether the body is one JSON object, by the scan that reads requests
 * (its limits of nesting and top-level keys are a request's: an answer
 * past them is passed unchecked).  Returns what is wrong, or NULL; the
 * scan is left in s.
 */

static const char *
ngx_http_aigw_answer_json(ngx_http_aigw_scan_t *s, u_char *p, u_char *last)
{
    u_char  *q;

    s->text = NULL;
    s->text_size = 0;
    s->keys = NULL;

    if (ngx_http_aigw_scan(s, p, last) != NGX_ERROR) {
        return NULL;
    }

    for (q = p; q < last && (*q == ' ' || *q == '\t' || *q == CR || *q == LF);
         q++)
    {
        /* void */
    }

    if (q == last) {
        return "an empty body";
    }

    if (*q != '{') {
        return "a body that is not a JSON object";
    }

    if (ngx_strcmp(s->reason, "unexpected end of body") == 0) {
        return "a JSON object cut short";
    }

    if (ngx_strcmp(s->reason, "data after the object") == 0) {
        return "bytes after its JSON object";
    }

    if (ngx_strcmp(s->reason, "nested too deeply") == 0
        || ngx_strcmp(s->reason, "too many top-level keys") == 0)
    {
        return NULL;
    }

    return "a body that is not valid JSON";
}


static ngx_int_t
ngx_http_aigw_answer_check(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    u_char *p, u_char *last)
{
    ngx_str_t               type;
    const char             *err;
    ngx_http_upstream_t    *u;
    ngx_http_aigw_scan_t    s;
    ngx_http_aigw_field_t  *f;

    /* a translated provider's error: rewritten whatever it holds */

    if (r->upstream->headers_in.status_n != NGX_HTTP_OK) {
        return NGX_OK;
    }

    err = ngx_http_aigw_answer_json(&s, p, last);

    if (err == NULL) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aigw: answer checked, %uz bytes",
                       (size_t) (last - p));

        /*
         * whole and in memory: its usage is read here, not kept for; an
         * answer past the scan's limits is read as it passes
         */

        if (s.reason == NULL) {
            f = &s.field[NGX_HTTP_AIGW_F_USAGE];

            ngx_http_aigw_meter_answer(ctx, (f->key && *f->start == '{')
                                            ? &s.usage : NULL);

            if (ctx->endpoint == NGX_HTTP_AIGW_EP_RESPONSES) {
                ngx_http_aigw_responses_remember(r, ctx,
                                             &s.field[NGX_HTTP_AIGW_F_ID]);
            }
        }

        return NGX_OK;
    }

    u = r->upstream;

    if (u->headers_in.content_type) {
        type = u->headers_in.content_type->value;

    } else {
        ngx_str_set(&type, "no Content-Type");
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "aigw: provider \"%V\" answered 200 with %s "
                  "(%uz bytes, %V)",
                  &ctx->candidates[ctx->current]->provider->name, err,
                  (size_t) (last - p), &type);

    return NGX_HTTP_UPSTREAM_INVALID_HEADER;
}


/*
 * From input_filter_init: the start of an answer that outgrew
 * aigw_answer_buffer goes out before what the input filter adds.
 */

ngx_int_t
ngx_http_aigw_answer_release(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_buf_t            *b;
    ngx_chain_t          *cl, **ll;
    ngx_http_upstream_t  *u;

    if (ctx->answer == NULL) {
        return NGX_OK;
    }

    if (ctx->answer->pos == ctx->answer->last) {
        ctx->answer = NULL;
        return NGX_OK;
    }

    u = r->upstream;

    for (ll = &u->out_bufs; *ll; ll = &(*ll)->next) { /* void */ }

    cl = ngx_chain_get_free_buf(r->pool, &u->free_bufs);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    *ll = cl;

    b = cl->buf;
    b->flush = 1;
    b->memory = 1;
    b->tag = u->output.tag;
    b->pos = ctx->answer->pos;
    b->last = ctx->answer->last;

    ctx->answer = NULL;

    return NGX_OK;
}


/* from peer.free on a failed attempt: a held answer that never ended */

void
ngx_http_aigw_answer_failed(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_buf_t  *b;

    if (!ctx->answer_held) {
        return;
    }

    ctx->answer_held = 0;
    b = ctx->answer;

    if (r->upstream->headers_in.chunked) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: the answer of provider \"%V\" is incomplete: "
                      "%uz bytes and no last chunk",
                      &ctx->candidates[ctx->current]->provider->name,
                      (size_t) (b->last - b->pos));
        return;
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "aigw: the answer of provider \"%V\" is incomplete: "
                  "%uz of %O bytes",
                  &ctx->candidates[ctx->current]->provider->name,
                  (size_t) (b->last - b->pos),
                  r->upstream->headers_in.content_length_n);
}


#if (nginx_version >= 1023000)

/* the provider's first Content-Encoding, as u->headers_in had it before */

static ngx_table_elt_t *
ngx_http_aigw_answer_encoding(ngx_http_upstream_t *u)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &u->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash != 0
                && h[i].key.len == sizeof("Content-Encoding") - 1
                && ngx_strncasecmp(h[i].key.data,
                                   (u_char *) "Content-Encoding",
                                   sizeof("Content-Encoding") - 1)
                   == 0)
            {
                return &h[i];
            }
        }
    }

    return NULL;
}

#endif
