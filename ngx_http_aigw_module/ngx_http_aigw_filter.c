
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


static ngx_int_t ngx_http_aigw_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigw_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_aigw_error_filter(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_aigw_sse_observe(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_aigw_sse_rewrite(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_aigw_sse_pending(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, size_t size);
static ngx_int_t ngx_http_aigw_sse_emit(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t ***ll, u_char *data, size_t len);
static ngx_uint_t ngx_http_aigw_sse_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_sse_event_t *ev);
static void ngx_http_aigw_sse_end(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_aigw_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_aigw_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_aigw_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_header_filter(ngx_http_request_t *r)
{
    ngx_http_aigw_ctx_t       *ctx;
    ngx_http_aigw_loc_conf_t  *alcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx == NULL) {

        /* an error before aigw_pass ran, such as a too large body */

        alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

        if (!alcf->pass || r->err_status < NGX_HTTP_BAD_REQUEST) {
            return ngx_http_next_header_filter(r);
        }

        ctx = ngx_http_aigw_ctx_create(r);
        if (ctx == NULL) {
            return NGX_ERROR;
        }
    }

    /*
     * nginx's own error page for a request of the gateway (a 413 of the
     * body reader, a 502 when no provider answered, ...) becomes an error
     * in the JSON the client's SDK parses
     */

    if (r->err_status >= NGX_HTTP_BAD_REQUEST && !ctx->rewrite_error) {

        if (ngx_http_aigw_error_body(r, ctx, r->err_status, &ctx->error_body)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ctx->rewrite_error = 1;

        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = sizeof("application/json") - 1;
        r->headers_out.content_type_lowcase = NULL;
        r->headers_out.charset.len = 0;
        r->headers_out.content_length_n = ctx->error_body.len;

        if (r->headers_out.content_length) {
            r->headers_out.content_length->hash = 0;
            r->headers_out.content_length = NULL;
        }

        return ngx_http_next_header_filter(r);
    }

    if (!ctx->answered) {
        return ngx_http_next_header_filter(r);
    }

    if (r->headers_out.content_type.len >= sizeof("text/event-stream") - 1
        && ngx_strncasecmp(r->headers_out.content_type.data,
                           (u_char *) "text/event-stream",
                           sizeof("text/event-stream") - 1)
           == 0)
    {
        ctx->sse_buf = ngx_pnalloc(r->pool, NGX_HTTP_AIGW_SSE_METER);
        if (ctx->sse_buf == NULL) {
            return NGX_ERROR;
        }

        ngx_http_aigw_sse_init(&ctx->sse, ctx->sse_buf,
                               NGX_HTTP_AIGW_SSE_METER);

        /* nothing between the provider and the client may hold events */
        r->headers_out.content_length_n = -1;

    } else if (r->headers_out.status == NGX_HTTP_OK) {
        ctx->json_answer = 1;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_aigw_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->rewrite_error && in) {
        return ngx_http_aigw_error_filter(r, ctx, in);
    }

    if (!ctx->answered || ctx->rewrite_error) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->ttft == NGX_CONF_UNSET_MSEC && in) {
        ctx->ttft = ngx_http_aigw_msec_since(r);
    }

    if (ctx->sse_buf) {
        if (ctx->hide_usage || ctx->busy) {
            return ngx_http_aigw_sse_rewrite(r, ctx, in);
        }

        if (in) {
            return ngx_http_aigw_sse_observe(r, ctx, in);
        }

    } else if (in && ctx->json_answer && !ctx->answer_metered
               && ngx_http_aigw_meter_json(r, ctx, in) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_body_filter(r, in);
}


/* nginx's HTML page is dropped; the JSON goes out with the last buffer */

static ngx_int_t
ngx_http_aigw_error_filter(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl, out;

    for (cl = in; cl; cl = cl->next) {

        cl->buf->pos = cl->buf->last;

        if (!cl->buf->last_buf) {
            continue;
        }

        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->memory = 1;
        b->pos = ctx->error_body.data;
        b->last = ctx->error_body.data + ctx->error_body.len;
        b->last_buf = 1;
        b->last_in_chain = 1;

        out.buf = b;
        out.next = NULL;

        return ngx_http_next_body_filter(r, &out);
    }

    return NGX_OK;
}


/*
 * Reads the events of a stream as they pass, never holding them: the
 * parser keeps its own copy of what it needs.
 */

static ngx_int_t
ngx_http_aigw_sse_observe(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t *in)
{
    u_char                     *pos;
    ngx_chain_t                *cl;
    ngx_http_aigw_sse_event_t   ev;

    for (cl = in; cl; cl = cl->next) {

        if (ngx_buf_in_memory(cl->buf)) {
            pos = cl->buf->pos;

            while (ngx_http_aigw_sse_parse(&ctx->sse, &pos, cl->buf->last,
                                           &ev)
                   == NGX_OK)
            {
                ngx_http_aigw_sse_event(r, ctx, &ev);
            }
        }

        if (cl->buf->last_buf) {
            ngx_http_aigw_sse_end(r, ctx);
        }
    }

    return ngx_http_next_body_filter(r, in);
}


/*
 * The same, for a stream with an event the client must not see (the
 * usage chunk the gateway asked for): whole events are passed on as soon
 * as they are complete, copied into the filter's own buffers; only the
 * part of an event still being received waits for its end.
 */

static ngx_int_t
ngx_http_aigw_sse_rewrite(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t *in)
{
    u_char                     *pos, *seg;
    size_t                      n;
    ngx_int_t                   rc;
    ngx_uint_t                  last;
    ngx_chain_t                *cl, *out, **ll;
    ngx_http_aigw_sse_event_t   ev;

    out = NULL;
    ll = &out;
    last = 0;

    for (cl = in; cl; cl = cl->next) {

        if (ngx_buf_in_memory(cl->buf)) {
            pos = cl->buf->pos;
            seg = pos;

            while (ngx_http_aigw_sse_parse(&ctx->sse, &pos, cl->buf->last,
                                           &ev)
                   == NGX_OK)
            {
                if (!ngx_http_aigw_sse_event(r, ctx, &ev)) {
                    if (ngx_http_aigw_sse_emit(r, ctx, &ll, ctx->pending,
                                               ctx->pending_len)
                        != NGX_OK
                        || ngx_http_aigw_sse_emit(r, ctx, &ll, seg,
                                                  pos - seg)
                           != NGX_OK)
                    {
                        return NGX_ERROR;
                    }
                }

                ctx->pending_len = 0;
                seg = pos;
            }

            /* the start of an event: kept until it is whole */

            n = cl->buf->last - seg;

            if (ctx->hide_usage
                && ctx->pending_len + n > NGX_HTTP_AIGW_SSE_BUFFER)
            {
                ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                              "aigw: an event over %uz bytes, the stream "
                              "is passed on as it is",
                              (size_t) NGX_HTTP_AIGW_SSE_BUFFER);
                ctx->hide_usage = 0;
            }

            if (ctx->hide_usage) {
                if (n == 0) {
                    /* the buffer ended with an event */

                } else if (ctx->pending_len + n > ctx->pending_size
                           && ngx_http_aigw_sse_pending(r, ctx,
                                                        ctx->pending_len + n)
                              != NGX_OK)
                {
                    return NGX_ERROR;

                } else {
                    ngx_memcpy(ctx->pending + ctx->pending_len, seg, n);
                    ctx->pending_len += n;
                }

            } else {
                if (ngx_http_aigw_sse_emit(r, ctx, &ll, ctx->pending,
                                           ctx->pending_len)
                    != NGX_OK
                    || ngx_http_aigw_sse_emit(r, ctx, &ll, seg, n) != NGX_OK)
                {
                    return NGX_ERROR;
                }

                ctx->pending_len = 0;
            }

            cl->buf->pos = cl->buf->last;
        }

        if (cl->buf->last_buf) {
            last = 1;
        }
    }

    if (last) {
        if (ctx->hide_usage
            && ngx_http_aigw_sse_emit(r, ctx, &ll, ctx->pending,
                                      ctx->pending_len)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_http_aigw_sse_end(r, ctx);

        cl = ngx_alloc_chain_link(r->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        cl->buf = ngx_calloc_buf(r->pool);
        if (cl->buf == NULL) {
            return NGX_ERROR;
        }

        cl->buf->last_buf = 1;
        cl->buf->tag = (ngx_buf_tag_t) &ngx_http_aigw_module;
        *ll = cl;
        ll = &cl->next;
    }

    *ll = NULL;

    for (cl = out; cl; cl = cl->next) {
        if (cl->next == NULL) {
            cl->buf->flush = 1;
        }
    }

    if (out == NULL && in != NULL && !ctx->busy) {
        return NGX_OK;
    }

    rc = ngx_http_next_body_filter(r, out);

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_aigw_module);

    return rc;
}


/* room for the start of an event: most are small, a few are large */

static ngx_int_t
ngx_http_aigw_sse_pending(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    size_t size)
{
    u_char  *p;
    size_t   n;

    for (n = ngx_max(ctx->pending_size, 2048); n < size; n *= 2) {
        /* void */
    }

    p = ngx_pnalloc(r->pool, n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (ctx->pending_len) {
        ngx_memcpy(p, ctx->pending, ctx->pending_len);
    }

    ctx->pending = p;
    ctx->pending_size = n;

    return NGX_OK;
}


/* a copy of stream bytes into the filter's reusable buffers */

static ngx_int_t
ngx_http_aigw_sse_emit(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t ***ll, u_char *data, size_t len)
{
    size_t        size;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (len == 0) {
        return NGX_OK;
    }

    cl = ngx_chain_get_free_buf(r->pool, &ctx->free);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    b = cl->buf;

    if (b->start == NULL || (size_t) (b->end - b->start) < len) {
        size = ngx_max(len, 4096);

        b->start = ngx_palloc(r->pool, size);
        if (b->start == NULL) {
            return NGX_ERROR;
        }

        b->end = b->start + size;
    }

    b->pos = b->start;
    b->last = ngx_cpymem(b->start, data, len);
    b->temporary = 1;
    b->flush = 0;
    b->last_buf = 0;
    b->tag = (ngx_buf_tag_t) &ngx_http_aigw_module;

    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}


/* what the gateway does with one event; 1 if the client must not get it */

static ngx_uint_t
ngx_http_aigw_sse_event(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_sse_event_t *ev)
{
    ngx_uint_t  rc;

    ctx->sse_events++;

    rc = ctx->format->event(r, ctx, ev);

    if (rc & NGX_HTTP_AIGW_EVENT_LAST) {
        ctx->sse_done = 1;
    }

    return rc & NGX_HTTP_AIGW_EVENT_HIDE;
}


static void
ngx_http_aigw_sse_end(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_http_aigw_sse_event_t  ev;

    if (ngx_http_aigw_sse_finish(&ctx->sse, &ev) == NGX_OK) {
        (void) ngx_http_aigw_sse_event(r, ctx, &ev);
    }

    if (!ctx->sse_done) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: stream from provider \"%V\" ended without "
                      "its final event after %ui event(s)",
                      &ctx->candidates[ctx->last]->provider->name,
                      ctx->sse_events);
    }
}
