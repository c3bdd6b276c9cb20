
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
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *in) NGX_HTTP_AIGW_OUT_OF_LINE;
static ngx_int_t ngx_http_aigw_sse_pass(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_aigw_sse_rewrite(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_aigw_sse_start(ngx_http_request_t *r,
    ngx_chain_t *in, ngx_chain_t *cl, ngx_chain_t **out, ngx_chain_t ***ll);
static ngx_int_t ngx_http_aigw_sse_link(ngx_http_request_t *r,
    ngx_chain_t ***ll, ngx_buf_t *b);
static ngx_buf_t *ngx_http_aigw_sse_shadow(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t ***ll, u_char *pos, u_char *last);
static ngx_int_t ngx_http_aigw_sse_held(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t ***ll);
static ngx_int_t ngx_http_aigw_sse_hold(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, u_char *data, size_t len);
static void ngx_http_aigw_sse_update(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *out);
static ngx_inline ngx_uint_t ngx_http_aigw_sse_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_sse_event_t *ev);
static void ngx_http_aigw_sse_end(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static ngx_int_t ngx_http_aigw_sse_translate(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *in) NGX_HTTP_AIGW_OUT_OF_LINE;
static ngx_int_t ngx_http_aigw_sse_translated(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_sse_event_t *ev,
    ngx_chain_t ***ll);
static ngx_int_t ngx_http_aigw_sse_next(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/*
 * The tag of the filter's own buffers: not the module's, which the
 * upstream side puts on the provider's buffers.
 */
#define NGX_HTTP_AIGW_SSE_TAG  ((ngx_buf_tag_t) &ngx_http_next_body_filter)


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
    size_t                     size;
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

    if (ngx_http_aigw_trace_header(r, ctx) != NGX_OK) {
        return NGX_ERROR;
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

        if (ngx_http_aigw_quota_headers(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

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

    if (ngx_http_aigw_quota_headers(r, ctx) != NGX_OK
        || ngx_http_aigw_cache_headers(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (r->headers_out.content_type.len >= sizeof("text/event-stream") - 1
        && ngx_strncasecmp(r->headers_out.content_type.data,
                           (u_char *) "text/event-stream",
                           sizeof("text/event-stream") - 1)
           == 0)
    {
        /* a translated stream's events are kept whole up to a bound */

        alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
        size = ctx->translated ? alcf->translate_buffer
                               : NGX_HTTP_AIGW_SSE_METER;

        ctx->sse_buf = ngx_pnalloc(r->pool, size);
        if (ctx->sse_buf == NULL) {
            return NGX_ERROR;
        }

        ngx_http_aigw_sse_init(&ctx->sse, ctx->sse_buf, size);

        if (ngx_http_aigw_guard_output_init(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        /* nothing between the provider and the client may hold events */
        r->headers_out.content_length_n = -1;

    } else if (r->headers_out.status == NGX_HTTP_OK) {
        ctx->json_answer = 1;
    }

    if (ctx->committed) {
        /* sent already, with a keep-alive (resilience.c) */
        r->header_sent = 1;
        return NGX_OK;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_aigw_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t             rc;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->rewrite_error && in) {
        return ngx_http_aigw_error_filter(r, ctx, in);
    }

    if (ctx->stream_failed || ctx->keepalive_out) {
        /* the error event that ends a failed stream, a keep-alive */
        return ngx_http_next_body_filter(r, in);
    }

    if (!ctx->answered || ctx->rewrite_error) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->ttft == NGX_CONF_UNSET_MSEC && in) {
        ctx->ttft = ngx_http_aigw_msec_since(r);
    }

    if (ctx->sse_buf) {
        if (ctx->translated) {
            return ngx_http_aigw_sse_translate(r, ctx, in);
        }

        if (ctx->cache == NULL) {
            return ngx_http_aigw_sse_pass(r, ctx, in);
        }

        /* a stream the cache keeps: its bytes, then its end */

        if (ngx_http_aigw_cache_collect(r, ctx, in) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_aigw_sse_pass(r, ctx, in);

        ngx_http_aigw_cache_stream_end(r, ctx);

        return rc;

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
 * The way most reads of a stream come: one buffer of one whole event,
 * nothing held from earlier reads, nothing of the filter's waiting to be
 * sent.  The buffer goes on as it is, or is withheld; anything else is
 * for ngx_http_aigw_sse_rewrite().
 */

static ngx_int_t
ngx_http_aigw_sse_pass(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_buf_t  *b;

    if (in == NULL || in->next || ctx->pending_len || ctx->busy) {
        return ngx_http_aigw_sse_rewrite(r, ctx, in);
    }

    b = in->buf;

    /* the event in the ctx, not on the stack: the calls below are jumps */

    if (!ngx_buf_in_memory(b) || b->last_buf
        || ngx_http_aigw_sse_one(&ctx->sse, b->pos, b->last, &ctx->sse_ev)
           != NGX_OK)
    {
        return ngx_http_aigw_sse_rewrite(r, ctx, in);
    }

    if (ngx_http_aigw_sse_event(r, ctx, &ctx->sse_ev) && ctx->hide_usage) {
        /* withheld: nothing goes out, as sse_rewrite() would do it */
        b->pos = b->last;
        return NGX_OK;
    }

    return ngx_http_aigw_sse_next(r, ctx, in);
}


/*
 * Reads the events of a stream as they pass, and keeps from the client
 * the events it must not see (the usage chunk the gateway asked for,
 * while ctx->hide_usage).  The provider's buffers go out as they are; a
 * buffer with an event to withhold, or ending in the start of an event,
 * goes out as shadow buffers pointing into it around what is kept back,
 * as the sub filter does.  The original buffer is marked sent
 * (pos = last) only when its last shadow has been sent: until then the
 * upstream module sees it busy and does not reuse its memory.  Only the
 * start of an event split across reads is copied: it is held until the
 * event is whole, when it is known whether the client gets it.
 */

static ngx_int_t
ngx_http_aigw_sse_rewrite(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t *in)
{
    u_char                     *pos, *seg, *evt;
    size_t                      n;
    ngx_int_t                   rc;
    ngx_buf_t                  *b, *shadow;
    ngx_chain_t                *cl, *out, **ll;
    ngx_http_aigw_sse_event_t   ev;

    /*
     * out stays NULL and ll NULL while every buffer so far passes as it
     * is: then "in" itself goes on, without a link allocated
     */

    out = NULL;
    ll = NULL;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        /*
         * a read of one whole event, nothing held, the way most come:
         * it goes out as it is, or not at all
         */

        if (ngx_buf_in_memory(b) && ctx->pending_len == 0 && !b->last_buf
            && ngx_http_aigw_sse_one(&ctx->sse, b->pos, b->last, &ev)
               == NGX_OK)
        {
            if (!ngx_http_aigw_sse_event(r, ctx, &ev) || !ctx->hide_usage) {
                if (ll && ngx_http_aigw_sse_link(r, &ll, b) != NGX_OK) {
                    return NGX_ERROR;
                }

                continue;
            }

            if (ngx_http_aigw_sse_start(r, in, cl, &out, &ll) != NGX_OK) {
                return NGX_ERROR;
            }

            b->pos = b->last;
            continue;
        }

        if (!ctx->hide_usage || !ngx_buf_in_memory(b)) {

            if (ngx_buf_in_memory(b)) {
                pos = b->pos;

                while (ngx_http_aigw_sse_parse(&ctx->sse, &pos, b->last,
                                               &ev)
                       == NGX_OK)
                {
                    (void) ngx_http_aigw_sse_event(r, ctx, &ev);
                }
            }

            if (ctx->pending_len && b->last_buf) {
                /* the stream ends inside an event: it goes out as it is */
                if (ngx_http_aigw_sse_start(r, in, cl, &out, &ll)
                    != NGX_OK
                    || ngx_http_aigw_sse_held(r, ctx, &ll) != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            if (b->last_buf) {
                ngx_http_aigw_sse_end(r, ctx);
            }

            if (ll && ngx_http_aigw_sse_link(r, &ll, b) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        pos = b->pos;
        seg = pos;      /* the first byte not yet sent nor withheld */
        evt = pos;      /* where the event being parsed starts */
        shadow = NULL;

        while (ngx_http_aigw_sse_parse(&ctx->sse, &pos, b->last, &ev)
               == NGX_OK)
        {
            if (ngx_http_aigw_sse_event(r, ctx, &ev)) {

                /* withheld, with its start held from earlier reads */

                if (ngx_http_aigw_sse_start(r, in, cl, &out, &ll)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                ctx->pending_len = 0;

                if (evt != seg) {
                    shadow = ngx_http_aigw_sse_shadow(r, ctx, &ll, seg,
                                                      evt);
                    if (shadow == NULL) {
                        return NGX_ERROR;
                    }
                }

                seg = pos;

            } else if (ctx->pending_len) {

                /* the client gets the event: its start goes first */

                if (ngx_http_aigw_sse_start(r, in, cl, &out, &ll)
                    != NGX_OK
                    || ngx_http_aigw_sse_held(r, ctx, &ll) != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            evt = pos;
        }

        /* the start of an event: held until it is whole */

        n = b->last - evt;

        if (ctx->pending_len + n > NGX_HTTP_AIGW_SSE_BUFFER)
        {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "aigw: an event over %uz bytes, the stream "
                          "is passed on as it is",
                          (size_t) NGX_HTTP_AIGW_SSE_BUFFER);
            ctx->hide_usage = 0;
        }

        if (n == 0 || b->last_buf || !ctx->hide_usage) {

            if (ctx->pending_len
                && (ngx_http_aigw_sse_start(r, in, cl, &out, &ll)
                    != NGX_OK
                    || ngx_http_aigw_sse_held(r, ctx, &ll) != NGX_OK))
            {
                return NGX_ERROR;
            }

            evt = b->last;

        } else if (ngx_http_aigw_sse_hold(r, ctx, evt, n) != NGX_OK) {
            return NGX_ERROR;
        }

        if (b->last_buf) {
            ngx_http_aigw_sse_end(r, ctx);
        }

        if (ll == NULL && seg == b->pos && evt == b->last) {
            /* all of it goes out, and nothing before it changed */
            continue;
        }

        if (ngx_http_aigw_sse_start(r, in, cl, &out, &ll) != NGX_OK) {
            return NGX_ERROR;
        }

        if (seg == b->pos && evt == b->last) {
            if (ngx_http_aigw_sse_link(r, &ll, b) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        if (seg != evt) {
            shadow = ngx_http_aigw_sse_shadow(r, ctx, &ll, seg, evt);
            if (shadow == NULL) {
                return NGX_ERROR;
            }
        }

        if (shadow) {
            /* the original is marked sent with its last shadow */
            shadow->shadow = b;
            shadow->last_shadow = 1;
            shadow->flush = b->flush;

        } else {
            /* nothing of it goes out, or a copy of it */
            b->pos = b->last;
        }

        if (b->last_buf) {
            if (ngx_http_aigw_sse_link(r, &ll, NULL) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    if (ll == NULL) {
        out = in;

    } else {
        *ll = NULL;

        if (out == NULL && ctx->busy == NULL) {
            /* all held or withheld, and nothing waits to be sent */
            return NGX_OK;
        }
    }

    rc = ngx_http_aigw_sse_next(r, ctx, out);

    if (ll || ctx->busy) {
        ngx_http_aigw_sse_update(r, ctx, (ll == NULL) ? NULL : out);
    }

    return rc;
}


/*
 * The first change to "in": the buffers before cl, passed as they are,
 * are linked into the filter's own chain.
 */

static ngx_int_t
ngx_http_aigw_sse_start(ngx_http_request_t *r, ngx_chain_t *in,
    ngx_chain_t *cl, ngx_chain_t **out, ngx_chain_t ***ll)
{
    ngx_chain_t  *c;

    if (*ll) {
        return NGX_OK;
    }

    *ll = out;

    for (c = in; c != cl; c = c->next) {
        if (ngx_http_aigw_sse_link(r, ll, c->buf) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* a provider's buffer, passed as it is; NULL: the last buffer, empty */

static ngx_int_t
ngx_http_aigw_sse_link(ngx_http_request_t *r, ngx_chain_t ***ll,
    ngx_buf_t *b)
{
    ngx_chain_t  *cl;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    if (b == NULL) {
        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->last_buf = 1;
    }

    cl->buf = b;

    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}


/* bytes [pos, last) of a provider's buffer, without a copy */

static ngx_buf_t *
ngx_http_aigw_sse_shadow(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t ***ll, u_char *pos, u_char *last)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = ngx_chain_get_free_buf(r->pool, &ctx->free);
    if (cl == NULL) {
        return NULL;
    }

    b = cl->buf;

    ngx_memzero(b, sizeof(ngx_buf_t));

    b->pos = pos;
    b->last = last;
    b->memory = 1;
    b->tag = NGX_HTTP_AIGW_SSE_TAG;

    **ll = cl;
    *ll = &cl->next;

    return b;
}


/* the start of an event held from earlier reads goes out */

static ngx_int_t
ngx_http_aigw_sse_held(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t ***ll)
{
    ngx_buf_t  *b;

    b = ngx_http_aigw_sse_shadow(r, ctx, ll, ctx->pending,
                                 ctx->pending + ctx->pending_len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    /* the pending memory is busy until this buffer is sent */
    b->start = ctx->pending;
    b->end = ctx->pending + ctx->pending_size;
    b->flush = 1;

    ctx->pending_len = 0;

    return NGX_OK;
}


/* a copy of the start of an event, held until the event is whole */

static ngx_int_t
ngx_http_aigw_sse_hold(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    u_char *data, size_t len)
{
    u_char       *p;
    size_t        size, n;
    ngx_chain_t  *cl;

    size = ctx->pending_len + len;

    if (ctx->pending_len == 0) {

        /* the memory of a start sent earlier may still be on its way */

        for (cl = ctx->busy; cl; cl = cl->next) {
            if (cl->buf->start == ctx->pending && ctx->pending) {
                ctx->pending = NULL;
                ctx->pending_size = 0;
                break;
            }
        }
    }

    if (size > ctx->pending_size) {

        /* room for the start of an event: most are small, a few large */

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
    }

    ngx_memcpy(ctx->pending + ctx->pending_len, data, len);
    ctx->pending_len = size;

    return NGX_OK;
}


/*
 * The filter's buffers sent (or passed on) are freed for reuse; a shadow
 * that was the last one into a provider's buffer marks that buffer sent,
 * so that the upstream module may reuse its memory.
 */

static void
ngx_http_aigw_sse_update(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t *out)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl, **ll;

    if (out) {
        for (ll = &ctx->busy; *ll; ll = &(*ll)->next) { /* void */ }
        *ll = out;
    }

    while (ctx->busy) {
        cl = ctx->busy;
        b = cl->buf;

        if (ngx_buf_size(b) != 0) {
            break;
        }

        ctx->busy = cl->next;

        if (b->tag != NGX_HTTP_AIGW_SSE_TAG) {
            /* a provider's buffer, or the last one: only the link is ours */
            ngx_free_chain(r->pool, cl);
            continue;
        }

        if (b->last_shadow) {
            b->shadow->pos = b->shadow->last;
        }

        cl->next = ctx->free;
        ctx->free = cl;
    }
}


/* what the gateway does with one event; 1 if the client must not get it */

static ngx_inline ngx_uint_t
ngx_http_aigw_sse_event(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_sse_event_t *ev)
{
    ngx_uint_t               rc;
    ngx_http_aigw_format_t  *format;

    ctx->sse_events++;

    /* read in the format it comes in: the provider's */

    format = ctx->translated ? ctx->candidates[ctx->current]->provider->format
                             : ctx->format;

    rc = format->event(r, ctx, ev);

    if (rc & NGX_HTTP_AIGW_EVENT_LAST) {
        ctx->sse_done = 1;
    }

    if (ctx->resume_on) {
        /* the text so far, for a resume (resilience.c) */
        ngx_http_aigw_resilience_event(r, ctx, ev);
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


/* a response header whose name and value live as long as the request */

ngx_int_t
ngx_http_aigw_filter_add_header(ngx_http_request_t *r, ngx_str_t *name,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->value.data = value;
    h->value.len = len;
    h->key = *name;
    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/*
 * A translated stream: each of the provider's events is read in its
 * format (metered) and replaced by the client's events, in buffers of
 * their own; the provider's buffers are consumed as they are read.
 */

static ngx_int_t
ngx_http_aigw_sse_translate(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t *in)
{
    u_char                     *pos;
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_uint_t                  last, flush;
    ngx_chain_t                *cl, *out, **ll;
    ngx_http_aigw_sse_event_t   ev;

    out = NULL;
    ll = &out;
    last = 0;
    flush = 0;

    for (cl = in; cl; cl = cl->next) {

        if (ngx_buf_in_memory(cl->buf)) {
            pos = cl->buf->pos;

            /* a read of one whole event: no parser loop */

            if (ngx_http_aigw_sse_one(&ctx->sse, pos, cl->buf->last, &ev)
                == NGX_OK)
            {
                if (ngx_http_aigw_sse_translated(r, ctx, &ev, &ll)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                pos = cl->buf->last;
            }

            while (ngx_http_aigw_sse_parse(&ctx->sse, &pos, cl->buf->last,
                                           &ev)
                   == NGX_OK)
            {
                if (ngx_http_aigw_sse_translated(r, ctx, &ev, &ll)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            cl->buf->pos = cl->buf->last;
        }

        if (cl->buf->flush) {
            flush = 1;
        }

        if (cl->buf->last_buf) {
            last = 1;

            if (ngx_http_aigw_sse_finish(&ctx->sse, &ev) == NGX_OK
                && ngx_http_aigw_sse_translated(r, ctx, &ev, &ll) != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    if (last || flush) {
        /* translate.c's buffers: used again once sent */
        cl = ngx_http_aigw_translate_buf(r, ctx);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        b = cl->buf;

        b->last_buf = last;
        b->last_in_chain = last;
        b->flush = 1;
        b->sync = 1;

        *ll = cl;
    }

    rc = ngx_http_aigw_sse_next(r, ctx, out);

    ngx_http_aigw_translate_sent(r, ctx, out);

    return rc;
}


/* one event of a translated stream, the client's events linked at *ll */

static ngx_int_t
ngx_http_aigw_sse_translated(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_sse_event_t *ev, ngx_chain_t ***ll)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    (void) ngx_http_aigw_sse_event(r, ctx, ev);

    rc = ngx_http_aigw_translate_event(r, ctx, ev, &cl);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {

        /* not to be translated: the stream ends, and says why */

        (void) ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_GATEWAY,
                                   "stream_untranslatable",
                                   "An event of the provider's stream could "
                                   "not be translated.");

        b = ngx_http_aigw_error_event(r, ctx, NGX_HTTP_BAD_GATEWAY);
        if (b == NULL) {
            return NGX_ERROR;
        }

        cl = ngx_alloc_chain_link(r->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        cl->buf = b;
        cl->next = NULL;

    } else if (cl == NULL) {
        return NGX_OK;
    }

    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}


/* the output guard, where set, checks what the client would get */

static ngx_int_t
ngx_http_aigw_sse_next(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t *in)
{
    if (ctx->guard_output) {
        return ngx_http_aigw_guard_output_filter(r, ctx, in,
                                                 ngx_http_next_body_filter);
    }

    return ngx_http_next_body_filter(r, in);
}
