
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * Resilience: each timeout measured from its own moment, and a stream
 * that fails after its status went out ends honestly.
 *
 * The timeouts ride on nginx's own upstream read timer, so that a late
 * provider is handled by upstream's next_upstream like any other timeout:
 * a stream's request runs with a copy of the location's upstream conf
 * whose read_timeout is aigw_first_token_timeout, and the client gets the
 * headers only once the first event is there (a timeout until then is a
 * failed attempt, and the next candidate is tried: a rescue); from the
 * first event on, the copy whose read_timeout is aigw_stream_idle_timeout.
 * The deadline (aigw_timeout) is a timer of the request, which ends the
 * attempt under way as a timeout with no candidate left to try.
 */


static ngx_int_t ngx_http_aigw_resilience_process(ngx_http_request_t *r);
static void ngx_http_aigw_resilience_deadline(ngx_event_t *ev);
static void ngx_http_aigw_resilience_cleanup(void *data);
static void ngx_http_aigw_resilience_fail(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_int_t rc);
static ngx_http_upstream_conf_t *ngx_http_aigw_resilience_conf(
    ngx_conf_t *cf, ngx_http_upstream_conf_t *conf, ngx_msec_t timeout);


static ngx_str_t  ngx_http_aigw_outcomes[] = {
    ngx_null_string,
    ngx_string("complete"),
    ngx_string("cut"),
    ngx_string("stalled"),
    ngx_string("timeout"),
    ngx_string("client_gone"),
    ngx_string("error")
};


/* the timeouts of a level, inherited as nginx's own */

char *
ngx_http_aigw_resilience_merge(ngx_conf_t *cf,
    ngx_http_aigw_loc_conf_t *prev, ngx_http_aigw_loc_conf_t *conf)
{
    ngx_conf_merge_msec_value(conf->first_token_timeout,
                              prev->first_token_timeout, 0);
    ngx_conf_merge_msec_value(conf->stream_idle_timeout,
                              prev->stream_idle_timeout, 0);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 0);

    return NGX_CONF_OK;
}


/* where aigw_pass is: the upstream confs of a stream, once merged */

char *
ngx_http_aigw_resilience_init(ngx_conf_t *cf, ngx_http_aigw_loc_conf_t *conf)
{
    if (conf->first_token_timeout) {
        conf->first_token_conf = ngx_http_aigw_resilience_conf(cf,
                                     &conf->upstream,
                                     conf->first_token_timeout);
        if (conf->first_token_conf == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->stream_idle_timeout) {
        conf->stream_conf = ngx_http_aigw_resilience_conf(cf,
                                &conf->upstream, conf->stream_idle_timeout);
        if (conf->stream_conf == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static ngx_http_upstream_conf_t *
ngx_http_aigw_resilience_conf(ngx_conf_t *cf, ngx_http_upstream_conf_t *conf,
    ngx_msec_t timeout)
{
    ngx_http_upstream_conf_t  *c;

    c = ngx_palloc(cf->pool, sizeof(ngx_http_upstream_conf_t));
    if (c == NULL) {
        return NULL;
    }

    *c = *conf;
    c->read_timeout = timeout;

    return c;
}


/* the request starts upstream: its confs and its deadline */

ngx_int_t
ngx_http_aigw_resilience_start(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    ngx_msec_t                 spent;
    ngx_event_t               *ev;
    ngx_pool_cleanup_t        *cln;
    ngx_http_aigw_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    if (ctx->stream && alcf->first_token_conf) {
        r->upstream->conf = alcf->first_token_conf;
        ctx->first_wait = 1;
    }

    if (alcf->timeout == 0) {
        return NGX_OK;
    }

    ev = ngx_pcalloc(r->pool, sizeof(ngx_event_t));
    if (ev == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    ev->handler = ngx_http_aigw_resilience_deadline;
    ev->data = r;
    ev->log = r->connection->log;

    cln->handler = ngx_http_aigw_resilience_cleanup;
    cln->data = ev;

    ctx->deadline = ev;

    /* from the request's start: the access steps took some of it */

    spent = ngx_http_aigw_msec_since(r);

    ngx_add_timer(ev, spent < alcf->timeout ? alcf->timeout - spent : 1);

    return NGX_OK;
}


static void
ngx_http_aigw_resilience_cleanup(void *data)
{
    ngx_event_t  *ev = data;

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }
}


/*
 * The deadline passed: the attempt under way ends as a timeout, as if
 * its read timer had fired, with no try left after it.
 */

static void
ngx_http_aigw_resilience_deadline(ngx_event_t *ev)
{
    ngx_http_request_t  *r = ev->data;

    ngx_connection_t          *pc;
    ngx_http_upstream_t       *u;
    ngx_http_aigw_ctx_t       *ctx;
    ngx_http_aigw_loc_conf_t  *alcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    u = r->upstream;

    if (u == NULL || u->peer.connection == NULL) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "aigw: \"%V\" ran out of its %M ms deadline after "
                  "%ui attempt(s)",
                  ctx->route_name.len ? &ctx->route_name : &ctx->model,
                  alcf->timeout, ctx->attempts);

    ctx->deadline_passed = 1;

    /* upstream's free takes this one: none is left for next_upstream */
    u->peer.tries = 1;

    pc = u->peer.connection;

    if (pc->read->timer_set) {
        ngx_del_timer(pc->read);
    }

    pc->read->timedout = 1;
    pc->read->handler(pc->read);
}


/*
 * The headers of a stream are done: the client gets them with the first
 * event, so that a provider that is late with it can still be left.
 */

ngx_int_t
ngx_http_aigw_resilience_hold(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_str_t            *type;
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (!ctx->first_wait
        || u->headers_in.status_n != NGX_HTTP_OK
        || u->headers_in.content_type == NULL)
    {
        return NGX_OK;
    }

    type = &u->headers_in.content_type->value;

    if (type->len < sizeof("text/event-stream") - 1
        || ngx_strncasecmp(type->data, (u_char *) "text/event-stream",
                           sizeof("text/event-stream") - 1)
           != 0)
    {
        return NGX_OK;
    }

    u->process_header = ngx_http_aigw_resilience_process;

    return ngx_http_aigw_resilience_process(r);
}


static ngx_int_t
ngx_http_aigw_resilience_process(ngx_http_request_t *r)
{
    ngx_http_upstream_t  *u;

    u = r->upstream;

    /* u->buffer.pos is where the body starts; reads go on at last */

    if (u->buffer.last == u->buffer.pos) {
        return NGX_AGAIN;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: first event after %M ms",
                   ngx_http_aigw_msec_since(r));

    return NGX_OK;
}


/* the body starts: from now on the stream's idle timeout */

void
ngx_http_aigw_resilience_body(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_http_aigw_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    /* the provider's time to its first byte, for balance=latency */

    ngx_http_aigw_breaker_latency(r, ctx->candidates[ctx->current]->provider,
                                  ngx_current_msec - r->upstream->start_time);

    if (!ctx->stream) {
        return;
    }

    r->upstream->conf = alcf->stream_conf ? alcf->stream_conf
                                          : &alcf->upstream;
}


/*
 * The end of the upstream part: how it ended, and a stream that did not
 * end well ends with the client's format's error event.
 */

void
ngx_http_aigw_resilience_finalize(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_int_t rc)
{
    if (ctx->deadline && ctx->deadline->timer_set) {
        ngx_del_timer(ctx->deadline);
    }

    if (!r->upstream->header_sent) {
        return;
    }

    if (rc == NGX_HTTP_CLIENT_CLOSED_REQUEST
        || rc == NGX_HTTP_REQUEST_TIME_OUT
        || r->connection->error)
    {
        ctx->outcome = NGX_HTTP_AIGW_OUTCOME_CLIENT_GONE;
        return;
    }

    if (ctx->sse_buf ? ctx->sse_done : rc == NGX_OK) {
        ctx->outcome = NGX_HTTP_AIGW_OUTCOME_COMPLETE;
        return;
    }

    if (ctx->deadline_passed) {
        ctx->outcome = NGX_HTTP_AIGW_OUTCOME_TIMEOUT;

    } else if (rc == NGX_HTTP_GATEWAY_TIME_OUT) {
        ctx->outcome = NGX_HTTP_AIGW_OUTCOME_STALLED;

    } else {
        ctx->outcome = NGX_HTTP_AIGW_OUTCOME_CUT;
    }

    if (ctx->sse_buf) {
        ngx_http_aigw_resilience_fail(r, ctx, rc);
    }
}


static void
ngx_http_aigw_resilience_fail(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_int_t rc)
{
    ngx_buf_t                 *b;
    ngx_str_t                 *name;
    ngx_uint_t                 status;
    ngx_chain_t                out[2], *cl;
    ngx_http_aigw_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    name = &ctx->candidates[ctx->last]->provider->name;

    switch (ctx->outcome) {

    case NGX_HTTP_AIGW_OUTCOME_TIMEOUT:
        status = NGX_HTTP_GATEWAY_TIME_OUT;
        (void) ngx_http_aigw_error(r, ctx, status, "upstream_timeout",
                                   "The answer ran out of the gateway's "
                                   "%M ms deadline after %ui event(s); "
                                   "it is incomplete.",
                                   alcf->timeout, ctx->sse_events);
        break;

    case NGX_HTTP_AIGW_OUTCOME_STALLED:
        status = NGX_HTTP_GATEWAY_TIME_OUT;
        (void) ngx_http_aigw_error(r, ctx, status, "stream_stalled",
                                   "The provider stopped sending the "
                                   "answer after %ui event(s); it is "
                                   "incomplete.", ctx->sse_events);
        break;

    default: /* NGX_HTTP_AIGW_OUTCOME_CUT */
        status = NGX_HTTP_BAD_GATEWAY;
        (void) ngx_http_aigw_error(r, ctx, status, "stream_cut",
                                   "The provider's stream was cut after "
                                   "%ui event(s); the answer is "
                                   "incomplete.", ctx->sse_events);
        break;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "aigw: stream from provider \"%V\" was %V after "
                  "%ui event(s), ended with an error event",
                  name, &ngx_http_aigw_outcomes[ctx->outcome],
                  ctx->sse_events);

    b = ngx_http_aigw_error_event(r, ctx, status);
    if (b == NULL) {
        return;
    }

    b->flush = 1;

    /*
     * upstream sends the last buffer itself after a clean end (rc 0);
     * after a failure it only flushes and closes: the event ends the
     * response then, so that the client gets it whole
     */

    b->last_buf = (rc != NGX_OK);

    out[1].buf = b;
    out[1].next = NULL;
    cl = &out[1];

    /* bytes of an event cut short are ended before it, as a blank line */

    if (!ngx_http_aigw_sse_between(&ctx->sse)) {
        out[0].buf = ngx_calloc_buf(r->pool);
        if (out[0].buf == NULL) {
            return;
        }

        out[0].buf->memory = 1;
        out[0].buf->pos = (u_char *) "\n\n";
        out[0].buf->last = out[0].buf->pos + 2;
        out[0].next = &out[1];
        cl = &out[0];
    }

    /* the body filter lets these bytes through as they are */
    ctx->stream_failed = 1;

    (void) ngx_http_output_filter(r, cl);
}


/* $aigw_outcome */

ngx_int_t
ngx_http_aigw_resilience_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_uint_t            o;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx == NULL || ctx->endpoint == NGX_HTTP_AIGW_EP_UNKNOWN) {
        v->not_found = 1;
        return NGX_OK;
    }

    o = ngx_http_aigw_resilience_outcome(r, ctx);

    v->data = ngx_http_aigw_outcomes[o].data;
    v->len = ngx_http_aigw_outcomes[o].len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


ngx_uint_t
ngx_http_aigw_resilience_outcome(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    ngx_uint_t  status;

    if (ctx->outcome) {
        return ctx->outcome;
    }

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (status == NGX_HTTP_CLIENT_CLOSED_REQUEST || r->connection->error) {
        return NGX_HTTP_AIGW_OUTCOME_CLIENT_GONE;
    }

    if (ctx->deadline_passed
        || (status == NGX_HTTP_GATEWAY_TIME_OUT && !ctx->answered))
    {
        return NGX_HTTP_AIGW_OUTCOME_TIMEOUT;
    }

    if (status >= NGX_HTTP_BAD_REQUEST) {
        return NGX_HTTP_AIGW_OUTCOME_ERROR;
    }

    return NGX_HTTP_AIGW_OUTCOME_COMPLETE;
}
