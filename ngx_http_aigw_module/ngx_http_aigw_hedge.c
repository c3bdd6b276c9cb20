
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_sse.h"


/*
 * aigw_hedge time: a stream whose first token is later than time, and
 * of which nothing went to the client, gets a second request, to the
 * next candidate, without the first one ending.  nginx's upstream has
 * one peer connection a request, so the hedge's connection is driven
 * here until it wins: connected, its request written, its answer read
 * into a buffer of its own until the format's content callback sees the
 * first token.  Whichever attempt has its first token first serves:
 *
 * - the first: the hedge's connection is closed (hedge_lost);
 * - the hedge: the first attempt ends as timed out, as a rescue does,
 *   and upstream's next get_peer gets the hedge's connection (NGX_DONE,
 *   as a kept-alive one): its send_chain swallows the request upstream
 *   writes again, its recv gives back the bytes read already first.
 *
 * Plain HTTP providers of the client's own format only: a hedge is not
 * started to a TLS provider or one whose request is translated.
 */


#define NGX_HTTP_AIGW_HEDGE_WAIT     0    /* the timer runs */
#define NGX_HTTP_AIGW_HEDGE_RUNNING  1
#define NGX_HTTP_AIGW_HEDGE_WON      2    /* its first token came first */
#define NGX_HTTP_AIGW_HEDGE_FAILED   3
#define NGX_HTTP_AIGW_HEDGE_DONE     4    /* closed, or handed over */

#define NGX_HTTP_AIGW_HEDGE_EVENT    4096


typedef struct {
    ngx_http_request_t           *request;
    ngx_event_t                   timer;
    ngx_peer_connection_t         peer;
    ngx_chain_t                  *out;       /* the request, not yet sent */
    ngx_buf_t                     buf;       /* the answer so far */
    u_char                       *body;      /* where its body starts */
    u_char                       *replay;    /* handed over: not yet read */
    u_char                       *event;     /* the SSE parser's buffer */
    ngx_uint_t                    candidate;
    ngx_uint_t                    state;
    ngx_uint_t                    status;
    ngx_recv_pt                   recv;
    ngx_send_chain_pt             send_chain;
    ngx_msec_t                    start_time; /* upstream's, while kept */
    unsigned                      sent:1;
    unsigned                      chunked:1;
    unsigned                      kept:1;
} ngx_http_aigw_hedge_t;


static void ngx_http_aigw_hedge_start(ngx_event_t *ev);
static void ngx_http_aigw_hedge_write(ngx_event_t *wev);
static void ngx_http_aigw_hedge_read(ngx_event_t *rev);
static ngx_int_t ngx_http_aigw_hedge_header(ngx_http_aigw_hedge_t *h);
static ngx_int_t ngx_http_aigw_hedge_first(ngx_http_aigw_hedge_t *h);
static void ngx_http_aigw_hedge_win(ngx_http_aigw_hedge_t *h);
static void ngx_http_aigw_hedge_fail(ngx_http_aigw_hedge_t *h,
    const char *why);
static void ngx_http_aigw_hedge_close(ngx_http_aigw_hedge_t *h);
static void ngx_http_aigw_hedge_release(ngx_http_aigw_hedge_t *h);
static void ngx_http_aigw_hedge_cleanup(void *data);
static ssize_t ngx_http_aigw_hedge_recv(ngx_connection_t *c, u_char *buf,
    size_t size);
static ngx_chain_t *ngx_http_aigw_hedge_send_chain(ngx_connection_t *c,
    ngx_chain_t *in, off_t limit);


ngx_int_t
ngx_http_aigw_hedge_init(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_msec_t time)
{
    ngx_pool_cleanup_t     *cln;
    ngx_http_aigw_hedge_t  *h;

    if (ctx->ncandidates < 2) {
        return NGX_OK;
    }

    h = ngx_pcalloc(r->pool, sizeof(ngx_http_aigw_hedge_t));
    if (h == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_aigw_hedge_cleanup;
    cln->data = h;

    /* the first attempt's events held until its first token too */
    ctx->first_wait = 1;

    h->request = r;
    h->timer.handler = ngx_http_aigw_hedge_start;
    h->timer.data = h;
    h->timer.log = r->connection->log;

    ctx->hedge = h;

    ngx_add_timer(&h->timer, time);

    return NGX_OK;
}


/* the time passed: the next candidate, if the race may be run */

static void
ngx_http_aigw_hedge_start(ngx_event_t *ev)
{
    ngx_http_aigw_hedge_t  *h = ev->data;

    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_uint_t                  translated, built;
    ngx_chain_t                *cl, *request, **ll;
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_upstream_t        *u;
    ngx_http_aigw_ctx_t        *ctx;
    ngx_http_aigw_model_t      *m;
    ngx_http_aigw_loc_conf_t   *alcf;

    r = h->request;
    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    h->state = NGX_HTTP_AIGW_HEDGE_DONE;

    if (u == NULL || u->peer.connection == NULL || !u->request_body_sent
        || u->header_sent || ctx->resuming || r->connection->error
        || ctx->current + 1 >= ctx->ncandidates || u->peer.tries < 2)
    {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aigw: no hedge: the race cannot be run");
        return;
    }

    h->candidate = ctx->current + 1;
    m = ctx->candidates[h->candidate];

    if (m->provider->ssl || m->provider->format != ctx->format) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: no hedge to \"%V\": provider \"%V\" is not "
                      "plain HTTP of the client's format",
                      &m->name, &m->provider->name);
        return;
    }

    if (ngx_http_aigw_breaker_allow(r, m->provider) != NGX_OK) {
        return;
    }

    /* its request, built aside: the first attempt's state as it was */

    request = u->request_bufs;
    translated = ctx->translated;
    built = ctx->built;

    rc = ngx_http_aigw_request_build(r, ctx, m);

    cl = u->request_bufs;
    u->request_bufs = request;
    ctx->translated = translated;
    ctx->built = built;

    if (rc != NGX_OK) {
        goto failed;
    }

    /* buffers of its own: upstream rewinds its request's */

    ll = &h->out;

    for ( /* void */ ; cl; cl = cl->next) {

        if (cl->buf->in_file) {
            goto failed;
        }

        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            goto failed;
        }

        *b = *cl->buf;

        *ll = ngx_alloc_chain_link(r->pool);
        if (*ll == NULL) {
            goto failed;
        }

        (*ll)->buf = b;
        ll = &(*ll)->next;
    }

    *ll = NULL;

    h->buf.start = ngx_palloc(r->pool, u->conf->buffer_size);
    h->event = ngx_pnalloc(r->pool, NGX_HTTP_AIGW_HEDGE_EVENT);

    if (h->buf.start == NULL || h->event == NULL) {
        goto failed;
    }

    h->buf.pos = h->buf.start;
    h->buf.last = h->buf.start;
    h->buf.end = h->buf.start + u->conf->buffer_size;

    if (ngx_http_aigw_resolve_peer(r, m->provider, &h->peer) != NGX_OK) {
        goto failed;
    }

    h->peer.get = ngx_event_get_peer;
    h->peer.log = r->connection->log;
    h->peer.log_error = NGX_ERROR_ERR;
    h->peer.tries = 1;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "aigw: no first token from provider \"%V\" after %M ms, "
                  "hedged on \"%V\" of provider \"%V\"",
                  &ctx->candidates[ctx->current]->provider->name,
                  ngx_http_aigw_msec_since(r), &m->name, &m->provider->name);

    h->state = NGX_HTTP_AIGW_HEDGE_RUNNING;

    rc = ngx_event_connect_peer(&h->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        h->peer.connection = NULL;
        ngx_http_aigw_hedge_fail(h, "could not connect");
        return;
    }

    c = h->peer.connection;

    c->data = h;
    c->read->handler = ngx_http_aigw_hedge_read;
    c->write->handler = ngx_http_aigw_hedge_write;

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, alcf->upstream.connect_timeout);
        return;
    }

    ngx_http_aigw_hedge_write(c->write);

    return;

failed:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "aigw: the hedge's request could not be built");
}


static void
ngx_http_aigw_hedge_write(ngx_event_t *wev)
{
    ngx_connection_t  *c = wev->data;

    ngx_chain_t            *cl;
    ngx_http_request_t     *r;
    ngx_http_aigw_ctx_t    *ctx;
    ngx_http_aigw_hedge_t  *h;

    h = c->data;
    r = h->request;

    if (wev->timedout) {
        ngx_http_aigw_hedge_fail(h, "timed out connecting");
        return;
    }

    if (h->sent) {
        (void) ngx_handle_write_event(wev, 0);
        return;
    }

    cl = c->send_chain(c, h->out, 0);

    if (cl == NGX_CHAIN_ERROR) {
        ngx_http_aigw_hedge_fail(h, "could not send the request");
        return;
    }

    h->out = cl;

    if (cl) {
        if (!wev->timer_set) {
            ngx_add_timer(wev, r->upstream->conf->send_timeout);
        }

        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_aigw_hedge_fail(h, "could not send the request");
        }

        return;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    /* the provider has the request: an attempt */

    h->sent = 1;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    ctx->attempts++;

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_aigw_hedge_fail(h, "could not send the request");
        return;
    }

    if (c->read->ready) {
        ngx_http_aigw_hedge_read(c->read);
    }
}


static void
ngx_http_aigw_hedge_read(ngx_event_t *rev)
{
    ngx_connection_t  *c = rev->data;

    ssize_t                 n;
    ngx_int_t               rc;
    ngx_http_aigw_hedge_t  *h;

    h = c->data;

    if (h->state != NGX_HTTP_AIGW_HEDGE_RUNNING || !h->sent) {
        (void) ngx_handle_read_event(rev, 0);
        return;
    }

    for ( ;; ) {

        if (h->buf.last == h->buf.end) {
            ngx_http_aigw_hedge_fail(h, "no first token within the buffer");
            return;
        }

        n = c->recv(c, h->buf.last, h->buf.end - h->buf.last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_aigw_hedge_fail(h, "read failed");
            }

            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_http_aigw_hedge_fail(h, "the connection ended before the "
                                     "first token");
            return;
        }

        h->buf.last += n;

        if (h->body == NULL) {

            rc = ngx_http_aigw_hedge_header(h);

            if (rc == NGX_AGAIN) {
                continue;
            }

            if (rc != NGX_OK) {
                ngx_http_aigw_hedge_fail(h, "answered with an error");
                return;
            }
        }

        if (ngx_http_aigw_hedge_first(h) == NGX_OK) {
            /* the request may be over after this: nothing more here */
            ngx_http_aigw_hedge_win(h);
            return;
        }
    }
}


/*
 * The answer's status line and headers, once all are read: nginx's own
 * parsers, on the request's parse state, which is kept as it was (the
 * first attempt may be reading its headers too).
 */

static ngx_int_t
ngx_http_aigw_hedge_header(ngx_http_aigw_hedge_t *h)
{
    u_char              *p, *end;
    ngx_int_t            rc;
    ngx_buf_t            b;
    ngx_uint_t           state, lowcase_index, invalid_header;
    ngx_uint_t           header_hash;
    ngx_http_status_t    status;
    ngx_http_request_t  *r;
    u_char              *name_start, *name_end, *start, *hend;
    u_char               lowcase[NGX_HTTP_LC_HEADER_LEN];

    r = h->request;

    /* the end of the headers, a bounded search of the buffer */

    end = NULL;

    for (p = h->buf.pos; p + 3 < h->buf.last; p++) {
        if (p[0] == CR && p[1] == LF && p[2] == CR && p[3] == LF) {
            end = p + 4;
            break;
        }
    }

    if (end == NULL) {
        return NGX_AGAIN;
    }

    state = r->state;
    name_start = r->header_name_start;
    name_end = r->header_name_end;
    start = r->header_start;
    hend = r->header_end;
    header_hash = r->header_hash;
    lowcase_index = r->lowcase_index;
    invalid_header = r->invalid_header;
    ngx_memcpy(lowcase, r->lowcase_header, NGX_HTTP_LC_HEADER_LEN);

    b = h->buf;
    b.last = end;

    r->state = 0;
    ngx_memzero(&status, sizeof(ngx_http_status_t));

    rc = ngx_http_parse_status_line(r, &b, &status);

    if (rc == NGX_OK) {
        h->status = status.code;

        for ( ;; ) {
            rc = ngx_http_parse_header_line(r, &b, 1);

            if (rc != NGX_OK) {
                break;
            }

            if ((size_t) (r->header_name_end - r->header_name_start)
                    == sizeof("transfer-encoding") - 1
                && ngx_strncasecmp(r->header_name_start,
                                   (u_char *) "transfer-encoding",
                                   sizeof("transfer-encoding") - 1) == 0
                && ngx_strlcasestrn(r->header_start, r->header_end,
                                    (u_char *) "chunked",
                                    sizeof("chunked") - 2) != NULL)
            {
                h->chunked = 1;
            }
        }
    }

    r->state = state;
    r->header_name_start = name_start;
    r->header_name_end = name_end;
    r->header_start = start;
    r->header_end = hend;
    r->header_hash = header_hash;
    r->lowcase_index = lowcase_index;
    r->invalid_header = invalid_header;
    ngx_memcpy(r->lowcase_header, lowcase, NGX_HTTP_LC_HEADER_LEN);

    if (rc != NGX_HTTP_PARSE_HEADER_DONE || h->status != NGX_HTTP_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: the hedge's provider answered %ui",
                      h->status);
        return NGX_ERROR;
    }

    h->body = end;

    return NGX_OK;
}


/* whether the body read so far has an event with content */

static ngx_int_t
ngx_http_aigw_hedge_first(ngx_http_aigw_hedge_t *h)
{
    u_char                      *pos, *last;
    size_t                       n;
    ngx_int_t                    rc;
    ngx_buf_t                    b;
    ngx_http_chunked_t           chunked;
    ngx_http_request_t          *r;
    ngx_http_aigw_ctx_t         *ctx;
    ngx_http_aigw_format_t      *format;
    ngx_http_aigw_sse_event_t    ev;
    ngx_http_aigw_sse_parser_t   sse;

    r = h->request;
    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    format = ctx->candidates[h->candidate]->provider->format;

    ngx_http_aigw_sse_init(&sse, h->event, NGX_HTTP_AIGW_HEDGE_EVENT);

    ngx_memzero(&b, sizeof(ngx_buf_t));
    b.pos = h->body;
    b.last = h->buf.last;

    ngx_memzero(&chunked, sizeof(ngx_http_chunked_t));

    for ( ;; ) {

        if (h->chunked) {

#if (nginx_version >= 1027002)
            rc = ngx_http_parse_chunked(r, &b, &chunked, 0);
#else
            rc = ngx_http_parse_chunked(r, &b, &chunked);
#endif

            if (rc == NGX_AGAIN) {
                return NGX_AGAIN;
            }

            if (rc != NGX_OK) {
                /* the end, or broken: upstream reads it and fails */
                return NGX_OK;
            }

            n = ngx_min((size_t) (b.last - b.pos), (size_t) chunked.size);

        } else {
            n = b.last - b.pos;
        }

        pos = b.pos;
        last = b.pos + n;

        while (ngx_http_aigw_sse_parse(&sse, &pos, last, &ev) == NGX_OK) {
            if (format->content(&ev)) {
                return NGX_OK;
            }
        }

        if (!h->chunked) {
            return NGX_AGAIN;
        }

        b.pos = last;
        chunked.size -= n;
    }
}


/*
 * The hedge's first token came first: the first attempt ends as timed
 * out, and upstream's next attempt is the hedge (hedge_peer).  The
 * request may be finalized in there: h is not touched after.
 */

static void
ngx_http_aigw_hedge_win(ngx_http_aigw_hedge_t *h)
{
    ngx_uint_t             prompt;
    ngx_connection_t      *pc;
    ngx_http_request_t    *r;
    ngx_http_upstream_t   *u;
    ngx_http_aigw_ctx_t   *ctx;

    r = h->request;
    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    h->state = NGX_HTTP_AIGW_HEDGE_WON;
    ctx->hedged = 1;

    /* the first attempt's prompt, as its provider may bill it */

    prompt = ngx_http_aigw_meter_tokens(ctx->scan.string_bytes);
    ngx_http_aigw_meter_carry(ctx, ctx->candidates[ctx->current], prompt, 0,
                              0);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "aigw: the hedge on \"%V\" had its first token first, "
                  "after %M ms; \"%V\" of provider \"%V\" left, %ui prompt "
                  "token(s) estimated for it",
                  &ctx->candidates[h->candidate]->name,
                  ngx_http_aigw_msec_since(r),
                  &ctx->candidates[ctx->current]->name,
                  &ctx->candidates[ctx->current]->provider->name, prompt);

    ngx_http_aigw_hedge_keep(r, ctx);

    pc = u->peer.connection;

    if (pc == NULL || u->header_sent) {
        /* between two attempts: the next one is the hedge */
        return;
    }

    if (pc->read->timer_set) {
        ngx_del_timer(pc->read);
    }

    pc->read->timedout = 1;
    pc->read->handler(pc->read);
}


static void
ngx_http_aigw_hedge_fail(ngx_http_aigw_hedge_t *h, const char *why)
{
    ngx_http_request_t     *r;
    ngx_http_aigw_ctx_t    *ctx;
    ngx_http_aigw_model_t  *m;

    r = h->request;
    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    m = ctx->candidates[h->candidate];

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "aigw: the hedge on \"%V\" of provider \"%V\" failed: %s",
                  &m->name, &m->provider->name, why);

    ngx_http_aigw_breaker_record(r, m->provider, 1);

    ngx_http_aigw_hedge_close(h);

    h->state = NGX_HTTP_AIGW_HEDGE_FAILED;
}


static void
ngx_http_aigw_hedge_close(ngx_http_aigw_hedge_t *h)
{
    ngx_http_aigw_hedge_release(h);

    if (h->timer.timer_set) {
        ngx_del_timer(&h->timer);
    }

    if (h->peer.connection) {
        ngx_close_connection(h->peer.connection);
        h->peer.connection = NULL;
    }

    h->state = NGX_HTTP_AIGW_HEDGE_DONE;
}


/*
 * The first attempt's first token came first, or the request ends: a
 * hedge still racing is closed, and metered as its provider may bill it.
 */

void
ngx_http_aigw_hedge_lost(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_uint_t              prompt;
    ngx_http_aigw_hedge_t  *h;
    ngx_http_aigw_model_t  *m;

    h = ctx->hedge;

    if (h == NULL) {
        return;
    }

    if (h->state == NGX_HTTP_AIGW_HEDGE_WAIT
        || h->state == NGX_HTTP_AIGW_HEDGE_FAILED)
    {
        ngx_http_aigw_hedge_close(h);
        return;
    }

    if (h->state == NGX_HTTP_AIGW_HEDGE_DONE) {
        return;
    }

    m = ctx->candidates[h->candidate];
    prompt = 0;

    if (h->sent) {
        prompt = ngx_http_aigw_meter_tokens(ctx->scan.string_bytes);
        ngx_http_aigw_meter_carry(ctx, m, prompt, 0, 0);
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "aigw: the hedge on \"%V\" of provider \"%V\" closed "
                  "after %M ms, %ui prompt token(s) estimated for it",
                  &m->name, &m->provider->name,
                  ngx_http_aigw_msec_since(r), prompt);

    /* slower, not failed */
    ngx_http_aigw_breaker_record(r, m->provider, 0);

    ngx_http_aigw_hedge_close(h);
}


/*
 * upstream's get_peer: the hedge's candidate is next (the first attempt
 * lost the race, or failed while the hedge ran).  NGX_DONE with its
 * connection, or NGX_DECLINED: a new one.
 */

ngx_int_t
ngx_http_aigw_hedge_peer(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_peer_connection_t *pc)
{
    ngx_connection_t       *c;
    ngx_http_aigw_hedge_t  *h;

    h = ctx->hedge;

    /* not started yet: it will race whichever attempt runs then */

    if (h == NULL || h->state == NGX_HTTP_AIGW_HEDGE_DONE
        || h->state == NGX_HTTP_AIGW_HEDGE_WAIT)
    {
        return NGX_DECLINED;
    }

    if (ctx->current != h->candidate) {
        ngx_http_aigw_hedge_lost(r, ctx);
        return NGX_DECLINED;
    }

    if (h->state == NGX_HTTP_AIGW_HEDGE_FAILED) {

        /* it had the request and failed: not asked again */

        h->state = NGX_HTTP_AIGW_HEDGE_DONE;
        ctx->current++;

        if (ctx->current >= ctx->ncandidates) {
            return NGX_BUSY;
        }

        if (pc->tries) {
            pc->tries--;
        }

        return NGX_DECLINED;
    }

    if (!h->sent) {
        /* still connecting: upstream connects again */
        ngx_http_aigw_hedge_close(h);
        return NGX_DECLINED;
    }

    if (ctx->built != ctx->current) {
        if (ngx_http_aigw_request_build(r, ctx, ctx->candidates[ctx->current])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ctx->built = ctx->current;
    }

    if (h->state == NGX_HTTP_AIGW_HEDGE_RUNNING) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: the hedge on \"%V\" goes on in its place",
                      &ctx->candidates[h->candidate]->name);
    }

    ctx->last = ctx->current;

    c = h->peer.connection;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    pc->connection = c;
    pc->sockaddr = h->peer.sockaddr;
    pc->socklen = h->peer.socklen;
    pc->name = h->peer.name;
    pc->cached = 0;

    h->peer.connection = NULL;
    h->state = NGX_HTTP_AIGW_HEDGE_DONE;

    ngx_http_aigw_hedge_release(h);

    /* what upstream sends is sent already, what it reads read already */

    h->replay = h->buf.pos;
    h->recv = c->recv;
    h->send_chain = c->send_chain;
    c->recv = ngx_http_aigw_hedge_recv;
    c->send_chain = ngx_http_aigw_hedge_send_chain;

    if (h->replay < h->buf.last) {
        c->read->ready = 1;
    }

#if (NGX_HTTP_SSL)
    r->upstream->ssl = 0;
#endif

    return NGX_DONE;
}


/* a hedge runs or won: it is the next attempt, a failure not retried */

ngx_uint_t
ngx_http_aigw_hedge_next(ngx_http_aigw_ctx_t *ctx)
{
    ngx_http_aigw_hedge_t  *h;

    h = ctx->hedge;

    return h && (h->state == NGX_HTTP_AIGW_HEDGE_RUNNING
                 || h->state == NGX_HTTP_AIGW_HEDGE_WON);
}


/*
 * The first attempt ends and the hedge, its request out already, goes
 * on in its place (it won, or the first failed while it ran).  That is
 * no new attempt: aigw_next_upstream_timeout, which upstream measures
 * from peer.start_time when it is about to move on, is not applied to
 * it.  The start time is moved to now until the hand-over, then put
 * back, so that later attempts (a resume) keep the request's deadline.
 */

void
ngx_http_aigw_hedge_keep(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_http_upstream_t    *u;
    ngx_http_aigw_hedge_t  *h;

    h = ctx->hedge;
    u = r->upstream;

    if (h == NULL || u == NULL || h->kept || !h->sent
        || (h->state != NGX_HTTP_AIGW_HEDGE_RUNNING
            && h->state != NGX_HTTP_AIGW_HEDGE_WON))
    {
        return;
    }

    h->start_time = u->peer.start_time;
    h->kept = 1;

    u->peer.start_time = ngx_current_msec;
}


static void
ngx_http_aigw_hedge_release(ngx_http_aigw_hedge_t *h)
{
    ngx_http_upstream_t  *u;

    if (!h->kept) {
        return;
    }

    h->kept = 0;

    u = h->request->upstream;

    if (u) {
        u->peer.start_time = h->start_time;
    }
}


void
ngx_http_aigw_hedge_unwrap(ngx_http_aigw_ctx_t *ctx, ngx_connection_t *c)
{
    ngx_http_aigw_hedge_t  *h;

    h = ctx->hedge;

    if (h == NULL || c == NULL) {
        return;
    }

    if (c->recv == ngx_http_aigw_hedge_recv) {
        c->recv = h->recv;
    }

    if (c->send_chain == ngx_http_aigw_hedge_send_chain) {
        c->send_chain = h->send_chain;
    }
}


/* the hedge's answer read already, then the connection's own recv */

static ssize_t
ngx_http_aigw_hedge_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    ngx_http_request_t  *r = c->data;

    size_t                  n;
    ngx_http_aigw_ctx_t    *ctx;
    ngx_http_aigw_hedge_t  *h;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    h = ctx->hedge;

    /* upstream reads once its request is written: sends are its own */

    if (c->send_chain == ngx_http_aigw_hedge_send_chain) {
        c->send_chain = h->send_chain;
    }

    n = h->buf.last - h->replay;

    if (n == 0) {
        if (c->recv == ngx_http_aigw_hedge_recv) {
            c->recv = h->recv;
        }

        return h->recv(c, buf, size);
    }

    n = ngx_min(n, size);

    ngx_memcpy(buf, h->replay, n);
    h->replay += n;

    if (h->replay == h->buf.last && c->recv == ngx_http_aigw_hedge_recv) {
        c->recv = h->recv;
    }

    return n;
}


/* the request upstream writes again: the provider has it already */

static ngx_chain_t *
ngx_http_aigw_hedge_send_chain(ngx_connection_t *c, ngx_chain_t *in,
    off_t limit)
{
    off_t         size;
    ngx_chain_t  *cl;

    size = 0;

    for (cl = in; cl; cl = cl->next) {
        if (!ngx_buf_special(cl->buf)) {
            size += ngx_buf_size(cl->buf);
        }
    }

    return ngx_chain_update_sent(in, size);
}


static void
ngx_http_aigw_hedge_cleanup(void *data)
{
    ngx_http_aigw_hedge_t  *h = data;

    if (h->timer.timer_set) {
        ngx_del_timer(&h->timer);
    }

    if (h->peer.connection) {
        ngx_close_connection(h->peer.connection);
        h->peer.connection = NULL;
    }
}
