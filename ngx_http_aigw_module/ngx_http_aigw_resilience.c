
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/* the largest event read whole while the first token is waited for */
#define NGX_HTTP_AIGW_FIRST_EVENT  4096

/* the longest text of a stream kept for a resume, JSON-escaped */
#define NGX_HTTP_AIGW_RESUME_TEXT  32768


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
static ngx_int_t ngx_http_aigw_resilience_first(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static void ngx_http_aigw_resilience_deadline(ngx_event_t *ev);
static void ngx_http_aigw_resilience_cleanup(void *data);
static void ngx_http_aigw_resilience_fail(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_int_t rc);
static ngx_http_upstream_conf_t *ngx_http_aigw_resilience_conf(
    ngx_conf_t *cf, ngx_http_upstream_conf_t *conf, ngx_msec_t timeout);
static ngx_int_t ngx_http_aigw_resilience_output(void *data, ngx_chain_t *in);
static void ngx_http_aigw_resilience_retry_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_aigw_resilience_release(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static void ngx_http_aigw_resilience_keepalive(ngx_event_t *ev);
static ngx_int_t ngx_http_aigw_resilience_commit(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static ngx_uint_t ngx_http_aigw_resilience_sse(ngx_http_request_t *r);
static void ngx_http_aigw_resilience_posted_cleanup(void *data);
static void ngx_http_aigw_resilience_read(ngx_http_request_t *r,
    ngx_http_upstream_t *u);
static ssize_t ngx_http_aigw_resilience_recv(ngx_connection_t *c, u_char *buf,
    size_t size);
static void ngx_http_aigw_resilience_resume_handler(ngx_event_t *ev);
static ngx_uint_t ngx_http_aigw_resilience_resumable(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static void ngx_http_aigw_resilience_resume(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_uint_t outcome);
static ngx_int_t ngx_http_aigw_resilience_messages(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);


static ngx_conf_bitmask_t  ngx_http_aigw_retry_on[] = {
    { ngx_string("connect"), NGX_HTTP_AIGW_RETRY_CONNECT },
    { ngx_string("timeout"), NGX_HTTP_AIGW_RETRY_TIMEOUT },
    { ngx_string("5xx"), NGX_HTTP_AIGW_RETRY_5XX },
    { ngx_string("429"), NGX_HTTP_AIGW_RETRY_429 },
    { ngx_string("invalid"), NGX_HTTP_AIGW_RETRY_INVALID },
    { ngx_null_string, 0 }
};


static ngx_str_t  ngx_http_aigw_outcomes[] = {
    ngx_null_string,
    ngx_string("complete"),
    ngx_string("cut"),
    ngx_string("stalled"),
    ngx_string("timeout"),
    ngx_string("client_gone"),
    ngx_string("error"),
    ngx_string("resumed"),
    ngx_string("hedged")
};


/* what a model without a prefill is asked after the text so far */
static ngx_str_t  ngx_http_aigw_resume_ask = ngx_string(
    "Continue exactly where your last message stops, without repeating "
    "any of it.");


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
    ngx_conf_merge_msec_value(conf->stream_keepalive,
                              prev->stream_keepalive, 0);
    ngx_conf_merge_value(conf->stream_resume, prev->stream_resume, 0);
    ngx_conf_merge_msec_value(conf->hedge, prev->hedge, 0);

    /* aigw_retries sets its parameters together: inherited together */

    if (conf->retries == NGX_CONF_UNSET_UINT) {
        if (prev->retries == NGX_CONF_UNSET_UINT) {
            conf->retries = 0;

        } else {
            conf->retries = prev->retries;
            conf->retry_on = prev->retry_on;
            conf->retry_backoff = prev->retry_backoff;
            conf->retry_after_max = prev->retry_after_max;
        }
    }

    return NGX_CONF_OK;
}


/*
 * aigw_retries number [on=connect,timeout,5xx,429,invalid]
 *              [backoff=time] [retry_after_max=time];
 */

char *
ngx_http_aigw_resilience_retries(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_aigw_loc_conf_t *alcf = conf;

    u_char              *p, *last, *comma;
    ngx_int_t            n;
    ngx_str_t           *value, s;
    ngx_uint_t           i, j;
    ngx_msec_t           ms;
    ngx_conf_bitmask_t  *b;

    if (alcf->retries != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atoi(value[1].data, value[1].len);
    if (n == NGX_ERROR || n > 10) {
        i = 1;
        goto invalid;
    }

    alcf->retries = n;
    alcf->retry_on = NGX_HTTP_AIGW_RETRY_CONNECT|NGX_HTTP_AIGW_RETRY_TIMEOUT
                     |NGX_HTTP_AIGW_RETRY_5XX|NGX_HTTP_AIGW_RETRY_429;
    alcf->retry_backoff = 200;
    alcf->retry_after_max = 5000;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "on=", 3) == 0) {
            alcf->retry_on = 0;
            p = value[i].data + 3;
            last = value[i].data + value[i].len;

            while (p < last) {
                comma = ngx_strlchr(p, last, ',');
                if (comma == NULL) {
                    comma = last;
                }

                for (j = 0, b = ngx_http_aigw_retry_on; b[j].name.len; j++) {
                    if (b[j].name.len == (size_t) (comma - p)
                        && ngx_strncmp(b[j].name.data, p, comma - p) == 0)
                    {
                        break;
                    }
                }

                if (b[j].name.len == 0) {
                    goto invalid;
                }

                alcf->retry_on |= b[j].mask;
                p = comma + 1;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "backoff=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;
            ms = ngx_parse_time(&s, 0);

            if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
                goto invalid;
            }

            alcf->retry_backoff = ms;
            continue;
        }

        if (ngx_strncmp(value[i].data, "retry_after_max=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;
            ms = ngx_parse_time(&s, 0);

            if (ms == (ngx_msec_t) NGX_ERROR) {
                goto invalid;
            }

            alcf->retry_after_max = ms;
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
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

    if (alcf->retries) {

        /* a retry's request waits for its backoff in this filter */

        r->upstream->output.output_filter = ngx_http_aigw_resilience_output;
        r->upstream->output.filter_ctx = r;

        ctx->retry_ev = ngx_pcalloc(r->pool, sizeof(ngx_event_t));
        if (ctx->retry_ev == NULL) {
            return NGX_ERROR;
        }

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        ctx->retry_ev->handler = ngx_http_aigw_resilience_retry_handler;
        ctx->retry_ev->data = r;
        ctx->retry_ev->log = r->connection->log;

        cln->handler = ngx_http_aigw_resilience_cleanup;
        cln->data = ctx->retry_ev;
    }

    if (ctx->stream && alcf->stream_keepalive) {

        /* comments to the client while it waits: a timer of its own */

        ctx->keepalive = ngx_pcalloc(r->pool, sizeof(ngx_event_t));
        if (ctx->keepalive == NULL) {
            return NGX_ERROR;
        }

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        ctx->keepalive->handler = ngx_http_aigw_resilience_keepalive;
        ctx->keepalive->data = r;
        ctx->keepalive->log = r->connection->log;

        cln->handler = ngx_http_aigw_resilience_cleanup;
        cln->data = ctx->keepalive;

        ctx->last_read = ngx_current_msec;
        ngx_add_timer(ctx->keepalive, alcf->stream_keepalive);
    }

    if (ctx->stream && alcf->stream_resume) {

        /* a cut is seen in a read, and resumed from a posted event */

        ctx->resume_ev = ngx_pcalloc(r->pool, sizeof(ngx_event_t));
        if (ctx->resume_ev == NULL) {
            return NGX_ERROR;
        }

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        ctx->resume_ev->handler = ngx_http_aigw_resilience_resume_handler;
        ctx->resume_ev->data = r;
        ctx->resume_ev->log = r->connection->log;

        cln->handler = ngx_http_aigw_resilience_posted_cleanup;
        cln->data = ctx->resume_ev;

        ctx->resume_on = 1;
    }

    /* aigw_hedge: the next candidate, should the first token be late */

    if (ctx->stream && alcf->hedge
        && ngx_http_aigw_hedge_init(r, ctx, alcf->hedge) != NGX_OK)
    {
        return NGX_ERROR;
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


static void
ngx_http_aigw_resilience_posted_cleanup(void *data)
{
    ngx_event_t  *ev = data;

    if (ev->posted) {
        ngx_delete_posted_event(ev);
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
 * A failed attempt: is the same candidate tried again?  NGX_OK, with
 * ctx->retry_delay the wait before it (a short Retry-After, or the
 * backoff doubled each retry with jitter), or NGX_DECLINED: the route
 * moves on.  "dry": only whether it would be, for an answer's status
 * (process_header), nothing changed.
 */

ngx_int_t
ngx_http_aigw_resilience_retry(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_peer_connection_t *pc, ngx_uint_t dry)
{
    ngx_uint_t                 kind, status;
    ngx_msec_t                 wait, d;
    const char                *what;
    ngx_http_upstream_t       *u;
    ngx_http_aigw_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    u = r->upstream;

    if (ctx->retried >= alcf->retries || ctx->deadline_passed) {
        return NGX_DECLINED;
    }

    status = u->headers_in.status_n;

    if (pc && pc->connection
        && (pc->connection->read->timedout
            || pc->connection->write->timedout))
    {
        kind = NGX_HTTP_AIGW_RETRY_TIMEOUT;
        what = "timeout";

    } else if (status == NGX_HTTP_TOO_MANY_REQUESTS) {
        kind = NGX_HTTP_AIGW_RETRY_429;
        what = "429";

    } else if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        kind = NGX_HTTP_AIGW_RETRY_5XX;
        what = "5xx";

    } else if (status) {
        kind = NGX_HTTP_AIGW_RETRY_INVALID;
        what = "invalid answer";

    } else {
        kind = NGX_HTTP_AIGW_RETRY_CONNECT;
        what = "connection";
    }

    if (!(alcf->retry_on & kind)) {
        return NGX_DECLINED;
    }

    /* a wait the provider asked for; a longer one: the route moves on */

    wait = ngx_http_aigw_breaker_retry_after(r);

    if (wait > alcf->retry_after_max) {
        return NGX_DECLINED;
    }

    if (wait == 0) {
        d = alcf->retry_backoff << ngx_min(ctx->retried, 10);
        wait = d / 2 + (ngx_msec_t) ngx_random() % (d / 2 + 1);
    }

    if (alcf->timeout && ngx_http_aigw_msec_since(r) + wait >= alcf->timeout)
    {
        return NGX_DECLINED;
    }

    if (dry) {
        return NGX_OK;
    }

    ctx->retried++;
    ctx->retry_delay = wait;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "aigw: provider \"%V\" failed for \"%V\" (%s), retry "
                  "%ui of %ui in %M ms",
                  &ctx->candidates[ctx->current]->provider->name,
                  &ctx->candidates[ctx->current]->name, what,
                  ctx->retried, alcf->retries, wait);

    return NGX_OK;
}


/* the retry's connection is made; its request waits for the timer */

void
ngx_http_aigw_resilience_wait(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    if (ctx->retry_delay == 0 || ctx->retry_ev == NULL) {
        return;
    }

    ctx->retry_wait = 1;
    ngx_add_timer(ctx->retry_ev, ctx->retry_delay);
    ctx->retry_delay = 0;
}


/*
 * upstream's output filter: the request to a provider, held while a
 * retry waits (the links are kept; upstream keeps the buffers busy),
 * then written by nginx's chain writer.
 */

static ngx_int_t
ngx_http_aigw_resilience_output(void *data, ngx_chain_t *in)
{
    ngx_http_request_t  *r = data;

    ngx_chain_t          *held;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx->retry_wait) {
        if (in && ngx_chain_add_copy(r->pool, &ctx->retry_held, in)
                  != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_AGAIN;
    }

    if (ctx->retry_held) {
        held = ctx->retry_held;
        ctx->retry_held = NULL;

        if (in && ngx_chain_add_copy(r->pool, &held, in) != NGX_OK) {
            return NGX_ERROR;
        }

        in = held;
    }

    return ngx_chain_writer(&r->upstream->writer, in);
}


static void
ngx_http_aigw_resilience_retry_handler(ngx_event_t *ev)
{
    ngx_http_request_t  *r = ev->data;

    ngx_connection_t     *c;
    ngx_http_upstream_t  *u;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    u = r->upstream;

    ctx->retry_wait = 0;

    if (u == NULL || u->peer.connection == NULL || !u->request_sent) {
        /* still connecting: the request goes when it is connected */
        return;
    }

    c = u->peer.connection;

    /* as if the connection were writable again: upstream sends */
    c->write->handler(c->write);
}


/* a provider's answer is a 200 event stream */

static ngx_uint_t
ngx_http_aigw_resilience_sse(ngx_http_request_t *r)
{
    ngx_str_t            *type;
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (u->headers_in.status_n != NGX_HTTP_OK
        || u->headers_in.content_type == NULL)
    {
        return 0;
    }

    type = &u->headers_in.content_type->value;

    return type->len >= sizeof("text/event-stream") - 1
           && ngx_strncasecmp(type->data, (u_char *) "text/event-stream",
                              sizeof("text/event-stream") - 1)
              == 0;
}


/*
 * The headers of a stream are done: the client gets them with the first
 * event, so that a provider that is late with it can still be left.
 */

ngx_int_t
ngx_http_aigw_resilience_hold(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    if (!(ctx->first_wait || ctx->resuming)
        || !ngx_http_aigw_resilience_sse(r))
    {
        return ngx_http_aigw_resilience_release(r, ctx);
    }

    r->upstream->process_header = ngx_http_aigw_resilience_process;

    return ngx_http_aigw_resilience_process(r);
}


static ngx_int_t
ngx_http_aigw_resilience_process(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_http_upstream_t  *u;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    u = r->upstream;

    /* u->buffer.pos is where the body starts; reads go on at last */

    if (u->buffer.last == u->buffer.pos) {
        return NGX_AGAIN;
    }

    rc = ngx_http_aigw_resilience_first(r, ctx);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_AGAIN) {

        if (u->buffer.last < u->buffer.end) {
            /* held: the first token may still be late */
            return NGX_AGAIN;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: %uz bytes of events without content from "
                      "provider \"%V\" fill the buffer, passed on",
                      (size_t) (u->buffer.last - u->buffer.pos),
                      &ctx->candidates[ctx->current]->provider->name);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: first content event after %M ms",
                   ngx_http_aigw_msec_since(r));

    /* a hedge racing this attempt lost */
    ngx_http_aigw_hedge_lost(r, ctx);

    if (ctx->resuming) {
        ctx->resuming = 0;
        ctx->resumed = 1;

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: stream resumed on \"%V\" of provider \"%V\" "
                      "after %ui event(s) of \"%V\", its %ui prompt and "
                      "%ui completion token(s) counted",
                      &ctx->candidates[ctx->current]->name,
                      &ctx->candidates[ctx->current]->provider->name,
                      ctx->resume_events,
                      &ctx->candidates[ctx->resume_from]->name,
                      ctx->resume_prompt, ctx->resume_completion);
    }

    return ngx_http_aigw_resilience_release(r, ctx);
}


/*
 * The answer goes to the client.  When a keep-alive sent the status and
 * headers already, upstream sends them again: the header filter takes
 * them (ctx->committed) and marks them sent, nothing goes out twice.
 */

static ngx_int_t
ngx_http_aigw_resilience_release(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    if (ctx->committed) {
        r->header_sent = 0;
    }

    return NGX_OK;
}


/*
 * The provider's headers, when a keep-alive committed a 200 stream: only
 * a 200 event stream can follow; anything else is a failed attempt (the
 * next candidate, or the stream's error event).
 */

ngx_int_t
ngx_http_aigw_resilience_committed(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    if (!ctx->committed || ngx_http_aigw_resilience_sse(r)) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "aigw: provider \"%V\" answered %ui, not a stream, to a "
                  "stream the client has begun",
                  &ctx->candidates[ctx->current]->provider->name,
                  r->upstream->headers_in.status_n);

    return NGX_HTTP_UPSTREAM_INVALID_HEADER;
}


/*
 * aigw_stream_keepalive: an SSE comment to a streaming client while it
 * waits for the first token, and after gaps in the stream, so that its
 * read timeout does not fire.  The first one sends the status and the
 * headers: from then on a failure is the stream's error event.  In a
 * stream, comments go only between two events of the provider.
 */

static void
ngx_http_aigw_resilience_keepalive(ngx_event_t *ev)
{
    ngx_http_request_t  *r = ev->data;

    ngx_int_t                  rc;
    ngx_msec_t                 interval, idle;
    ngx_buf_t                 *b;
    ngx_chain_t               *cl;
    ngx_http_upstream_t       *u;
    ngx_http_aigw_ctx_t       *ctx;
    ngx_http_aigw_loc_conf_t  *alcf;

    static u_char  comment[] = ": keep-alive\n\n";

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    u = r->upstream;
    interval = alcf->stream_keepalive;

    if (u == NULL || r->connection->error || ctx->stream_failed
        || ctx->sse_done)
    {
        return;
    }

    if (u->header_sent) {

        /* the stream runs: a comment only after a gap, between events */

        idle = ngx_current_msec - ctx->last_read;

        if (idle < interval) {
            ngx_add_timer(ev, interval - idle);
            return;
        }

        if (ctx->sse_buf == NULL || ctx->guard_output
            || !ngx_http_aigw_sse_between(&ctx->sse))
        {
            ngx_add_timer(ev, interval);
            return;
        }

    } else if (!ctx->committed
               && ngx_http_aigw_resilience_commit(r, ctx) != NGX_OK)
    {
        return;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return;
    }

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return;
    }

    b->memory = 1;
    b->flush = 1;
    b->pos = comment;
    b->last = comment + sizeof(comment) - 1;

    cl->buf = b;
    cl->next = NULL;

    /* the body filter passes it as it is */
    ctx->keepalive_out = 1;
    rc = ngx_http_output_filter(r, cl);
    ctx->keepalive_out = 0;

    if (rc == NGX_ERROR) {
        return;
    }

    ctx->keepalives++;

    ngx_add_timer(ev, interval);
}


/* the first keep-alive: a 200 event stream, committed */

static ngx_int_t
ngx_http_aigw_resilience_commit(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    ngx_int_t  rc;

    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = sizeof("text/event-stream") - 1;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = -1;

    /*
     * no provider's headers yet (ctx->answered: the header filter adds
     * them to those): the gateway's own, known already
     */

    if (!ctx->answered
        && (ngx_http_aigw_quota_headers(r, ctx) != NGX_OK
            || ngx_http_aigw_cache_headers(r, ctx) != NGX_OK))
    {
        return NGX_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    ctx->committed = 1;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aigw: no first token after %M ms, the stream's status "
                  "sent with a keep-alive", ngx_http_aigw_msec_since(r));

    return NGX_OK;
}


/*
 * Whether the body read so far holds an event with content: NGX_OK, or
 * NGX_AGAIN while it holds only events without (OpenAI's role chunk,
 * Anthropic's message_start and ping), which stay in u->buffer and go
 * out with the first one with content.  The provider's format says what
 * content is.  The body is parsed from its start at each read: it is
 * small, and bounded by the buffer.  A resumed stream's events before
 * the content are dropped: u->buffer.pos (and the chunked state) moved
 * to where the event with content starts.
 */

static ngx_int_t
ngx_http_aigw_resilience_first(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    u_char                      *pos, *last, *start, *data;
    size_t                       n;
    ngx_int_t                    rc;
    ngx_buf_t                    b;
    ngx_uint_t                   chunked_body;
    ngx_http_chunked_t           chunked, at;
    ngx_http_upstream_t         *u;
    ngx_http_aigw_format_t      *format;
    ngx_http_aigw_sse_event_t    ev;
    ngx_http_aigw_sse_parser_t   sse;

    u = r->upstream;
    format = ctx->candidates[ctx->current]->provider->format;

    if (ctx->first_buf == NULL) {
        ctx->first_buf = ngx_pnalloc(r->pool, NGX_HTTP_AIGW_FIRST_EVENT);
        if (ctx->first_buf == NULL) {
            return NGX_ERROR;
        }
    }

    /* an event larger than this is truncated: taken as content */
    ngx_http_aigw_sse_init(&sse, ctx->first_buf, NGX_HTTP_AIGW_FIRST_EVENT);

    /* the chunks' data, the framing skipped, on copies of the state */

    b = u->buffer;
    chunked_body = u->headers_in.chunked;
    ngx_memzero(&chunked, sizeof(ngx_http_chunked_t));

    start = b.pos;      /* where the events not yet read start */
    at = chunked;

    for ( ;; ) {

        if (chunked_body) {

#if (nginx_version >= 1027002)
            rc = ngx_http_parse_chunked(r, &b, &chunked, 0);
#else
            rc = ngx_http_parse_chunked(r, &b, &chunked);
#endif

            if (rc != NGX_OK) {
                /* the end of the body, or a broken one: nothing to wait for */
                return (rc == NGX_AGAIN) ? NGX_AGAIN : NGX_OK;
            }

            n = ngx_min((size_t) (b.last - b.pos), (size_t) chunked.size);

        } else {
            n = b.last - b.pos;
        }

        data = b.pos;
        pos = b.pos;
        last = b.pos + n;

        while (ngx_http_aigw_sse_parse(&sse, &pos, last, &ev) == NGX_OK) {

            if (format->content(&ev)) {

                if (ctx->resuming) {
                    u->buffer.pos = start;
                    ctx->chunked = at;
                }

                return NGX_OK;
            }

            /* the next event starts here */

            start = pos;
            at = chunked;
            at.size -= pos - data;
        }

        if (!chunked_body) {
            return NGX_AGAIN;
        }

        b.pos = last;
        chunked.size -= n;
    }
}


/* the body starts: from now on the stream's idle timeout */

void
ngx_http_aigw_resilience_body(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_connection_t          *c;
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

    if (ctx->resume_on && !ctx->resume_off) {

        /* a cut or a stall is seen before upstream sees it: a resume */

        c = r->upstream->peer.connection;

        ctx->stream_handler = r->upstream->read_event_handler;
        r->upstream->read_event_handler = ngx_http_aigw_resilience_read;

        ctx->recv = c->recv;
        c->recv = ngx_http_aigw_resilience_recv;
    }
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

    /* a hedge still racing ends with the request */
    ngx_http_aigw_hedge_lost(r, ctx);

    if (ctx->retry_ev && ctx->retry_ev->timer_set) {
        ngx_del_timer(ctx->retry_ev);
    }

    if (ctx->keepalive && ctx->keepalive->timer_set) {
        ngx_del_timer(ctx->keepalive);
    }

    if (!r->upstream->header_sent) {

        if (!ctx->committed) {
            return;
        }

        /* the status went out with a keep-alive: a stream that failed */
        r->upstream->header_sent = 1;
        ctx->first_failed = 1;
    }

    if (rc == NGX_HTTP_CLIENT_CLOSED_REQUEST
        || rc == NGX_HTTP_REQUEST_TIME_OUT
        || r->connection->error)
    {
        ctx->outcome = NGX_HTTP_AIGW_OUTCOME_CLIENT_GONE;
        return;
    }

    if (ctx->sse_buf ? ctx->sse_done : rc == NGX_OK) {
        ctx->outcome = ctx->resumed ? NGX_HTTP_AIGW_OUTCOME_RESUMED
                       : ctx->hedged ? NGX_HTTP_AIGW_OUTCOME_HEDGED
                       : NGX_HTTP_AIGW_OUTCOME_COMPLETE;
        return;
    }

    if (ctx->resuming) {
        /* the resume failed: the stream ends as it would have without */
        ctx->outcome = ctx->resume_outcome;
        ngx_http_aigw_resilience_fail(r, ctx, rc);
        return;
    }

    if (ctx->deadline_passed) {
        ctx->outcome = NGX_HTTP_AIGW_OUTCOME_TIMEOUT;

    } else if (ctx->first_failed) {
        /* keep-alives only: no provider began the answer */
        ctx->outcome = (rc == NGX_HTTP_GATEWAY_TIME_OUT)
                       ? NGX_HTTP_AIGW_OUTCOME_TIMEOUT
                       : NGX_HTTP_AIGW_OUTCOME_ERROR;

    } else if (rc == NGX_HTTP_GATEWAY_TIME_OUT) {
        ctx->outcome = NGX_HTTP_AIGW_OUTCOME_STALLED;

    } else {
        ctx->outcome = NGX_HTTP_AIGW_OUTCOME_CUT;
    }

    if (ctx->sse_buf || ctx->first_failed) {
        ngx_http_aigw_resilience_fail(r, ctx, rc);
    }
}


static void
ngx_http_aigw_resilience_fail(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_int_t rc)
{
    ngx_buf_t                 *b;
    ngx_str_t                 *name, *route;
    ngx_uint_t                 status;
    ngx_chain_t                out[2], *cl;
    ngx_http_aigw_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    name = &ctx->candidates[ctx->resuming ? ctx->resume_from : ctx->last]
               ->provider->name;

    switch (ctx->first_failed && !ctx->deadline_passed ? 0 : ctx->outcome) {

    case 0:
        /* after keep-alives, no provider began the answer */

        route = ctx->route_name.len ? &ctx->route_name : &ctx->model;

        if (ctx->outcome == NGX_HTTP_AIGW_OUTCOME_TIMEOUT) {
            status = NGX_HTTP_GATEWAY_TIME_OUT;
            (void) ngx_http_aigw_error(r, ctx, status, "upstream_timeout",
                                       "The providers of `%V` did not "
                                       "answer in time (%ui attempt(s)).",
                                       route, ctx->attempts);

        } else {
            status = NGX_HTTP_BAD_GATEWAY;
            (void) ngx_http_aigw_error(r, ctx, status, "upstream_error",
                                       "No provider of `%V` could answer "
                                       "(%ui attempt(s)).",
                                       route, ctx->attempts);
        }

        break;

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

    if (ctx->first_failed) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: no provider began the stream after %ui "
                      "keep-alive(s), which ends with an error event",
                      ctx->keepalives);

    } else {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: stream from provider \"%V\" was %V after "
                      "%ui event(s), ended with an error event",
                      name, &ngx_http_aigw_outcomes[ctx->outcome],
                      ctx->sse_events);
    }

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


/*
 * aigw_stream_resume: a stream cut, or stalled past its idle timeout,
 * after the client got part of the answer, goes on with the next
 * candidate in the same client stream.
 *
 * nginx's upstream ends the request at any failure after the headers
 * went out, so the failure is caught before it sees it: a stall in the
 * read handler (wrapped, its timer fired), a cut in the connection's
 * recv (wrapped: the end is reported as NGX_AGAIN, and a posted event
 * resumes).  The resume then runs nginx's header reader again, with the
 * read timed out (a stall) or at the end (a cut), whose failure is
 * upstream's next_upstream: the next candidate is connected to, with the
 * text the client got in its request.  Its headers are taken by the
 * header filter (ctx->committed), its events before the first with
 * content dropped (resilience_first), and the client's stream goes on.
 */


/* each event the client got: its text kept, JSON-escaped, bounded */

void
ngx_http_aigw_resilience_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_sse_event_t *ev)
{
    u_char                 *p, *pos, *last;
    size_t                  len, size;
    ngx_http_aigw_span_t    text;
    ngx_http_aigw_format_t *format;

    if (ctx->resume_off) {
        return;
    }

    format = ctx->candidates[ctx->current]->provider->format;

    /* a tool call in flight cannot be continued; nor a text not read */

    if (ctx->translated || ev->truncated
        || (ev->data.len
            && ngx_strlcasestrn(ev->data.data, ev->data.data + ev->data.len,
                                (u_char *) "\"tool_",
                                sizeof("\"tool_") - 2)
               != NULL))
    {
        ctx->resume_off = 1;
        return;
    }

    pos = ev->data.data;
    last = ev->data.data + ev->data.len;

    /* choices after the first (n > 1): one text cannot continue them */

    p = ngx_strlcasestrn(pos, last, (u_char *) "\"choices\":[{\"index\":",
                         sizeof("\"choices\":[{\"index\":") - 2);

    if (p && p + sizeof("\"choices\":[{\"index\":") - 1 < last
        && p[sizeof("\"choices\":[{\"index\":") - 1] != '0')
    {
        ctx->resume_off = 1;
        return;
    }

    while (pos < last && format->text(ctx, ev, &pos, &text) == NGX_OK) {

        len = text.end - text.start;

        if (len == 0) {
            continue;
        }

        if (ctx->resume_len + len > NGX_HTTP_AIGW_RESUME_TEXT) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "aigw: the stream is too long to be resumed");
            ctx->resume_off = 1;
            return;
        }

        if (ctx->resume_len + len > ctx->resume_size) {

            /* grown by doubling, up to the bound: few copies */

            for (size = ngx_max(ctx->resume_size, 1024);
                 size < ctx->resume_len + len;
                 size *= 2)
            {
                /* void */
            }

            p = ngx_pnalloc(r->pool, size);
            if (p == NULL) {
                ctx->resume_off = 1;
                return;
            }

            if (ctx->resume_len) {
                ngx_memcpy(p, ctx->resume_text, ctx->resume_len);
            }

            ctx->resume_text = p;
            ctx->resume_size = size;
        }

        ngx_memcpy(ctx->resume_text + ctx->resume_len, text.start, len);
        ctx->resume_len += len;
    }
}


/*
 * upstream's reinit before a resume's connection: u->buffer may still be
 * in the client's output (a slow client) while upstream rewinds it; the
 * resume gets a buffer of its own.
 */

ngx_int_t
ngx_http_aigw_resilience_reinit(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    u_char               *p;
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (!u->header_sent || u->busy_bufs == NULL) {
        return NGX_OK;
    }

    p = ngx_palloc(r->pool, u->conf->buffer_size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    u->buffer.start = p;
    u->buffer.pos = p;
    u->buffer.last = p;
    u->buffer.end = p + u->conf->buffer_size;

    return NGX_OK;
}


/* the provider's connection as it was, before it is closed or cached */

void
ngx_http_aigw_resilience_unwrap(ngx_http_aigw_ctx_t *ctx, ngx_connection_t *c)
{
    if (c && c->recv == ngx_http_aigw_resilience_recv) {
        c->recv = ctx->recv;
    }
}


/* upstream's read handler of a stream: a stall is resumed */

static void
ngx_http_aigw_resilience_read(ngx_http_request_t *r, ngx_http_upstream_t *u)
{
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (u->peer.connection && u->peer.connection->read->timedout
        && ngx_http_aigw_resilience_resumable(r, ctx))
    {
        ngx_http_aigw_resilience_resume(r, ctx,
                                        NGX_HTTP_AIGW_OUTCOME_STALLED);
        return;
    }

    ctx->stream_handler(r, u);
}


/* the provider's recv: the end of a stream not done is resumed */

static ssize_t
ngx_http_aigw_resilience_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    ngx_http_request_t  *r = c->data;

    ssize_t               n;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx->resume_cut) {
        /* the end again, now for the header reader, which moves on */
        c->read->ready = 0;
        c->read->eof = 1;
        return 0;
    }

    n = ctx->recv(c, buf, size);

    if ((n == 0 || n == NGX_ERROR)
        && ngx_http_aigw_resilience_resumable(r, ctx))
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "aigw: the provider's stream ended before its end, "
                      "resumed");

        c->read->ready = 0;
        c->read->eof = 0;
        c->read->error = 0;

        ctx->resume_cut = 1;
        ngx_post_event(ctx->resume_ev, &ngx_posted_events);

        return NGX_AGAIN;
    }

    return n;
}


static void
ngx_http_aigw_resilience_resume_handler(ngx_event_t *ev)
{
    ngx_http_request_t  *r = ev->data;

    ngx_connection_t     *c;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (r->upstream == NULL || r->upstream->peer.connection == NULL
        || !ctx->resume_cut)
    {
        return;
    }

    c = r->connection;

    ngx_http_aigw_resilience_resume(r, ctx, NGX_HTTP_AIGW_OUTCOME_CUT);

    ngx_http_run_posted_requests(c);
}


/*
 * A stream may be resumed when the client got part of it, events whole,
 * text only, not translated nor checked by the output guard, with a
 * candidate of the client's format left, before the deadline.
 */

static ngx_uint_t
ngx_http_aigw_resilience_resumable(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    ngx_http_upstream_t    *u;
    ngx_http_aigw_field_t  *f;

    u = r->upstream;
    f = &ctx->scan.field[NGX_HTTP_AIGW_F_MESSAGES];

    if (ctx->resume_off || ctx->resume_cut || ctx->sse_done
        || ctx->deadline_passed || ctx->resume_len == 0
        || ctx->sse_buf == NULL || ctx->guard_output || ctx->translated
        || r->connection->error
        || !ngx_http_aigw_sse_between(&ctx->sse) || ctx->pending_len
        || u == NULL || !u->header_sent || u->peer.tries < 2
        || ctx->current + 1 >= ctx->ncandidates
        || ctx->candidates[ctx->current + 1]->provider->format
           != ctx->format
        || f->key == NULL || f->end - f->start < 3 || f->end[-1] != ']')
    {
        return 0;
    }

    return 1;
}


static void
ngx_http_aigw_resilience_resume(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_uint_t outcome)
{
    ngx_uint_t                 prompt, completion, cached;
    ngx_http_upstream_t       *u;
    ngx_http_upstream_conf_t  *conf;
    ngx_http_aigw_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    u = r->upstream;

    ctx->resume_off = 1;

    conf = ngx_palloc(r->pool, sizeof(ngx_http_upstream_conf_t));

    if (conf == NULL || ngx_http_aigw_resilience_messages(r, ctx) != NGX_OK) {

        /* not resumed: the failure goes its way */

        if (outcome == NGX_HTTP_AIGW_OUTCOME_STALLED) {
            ctx->stream_handler(r, u);

        } else {
            ngx_http_aigw_resilience_unwrap(ctx, u->peer.connection);
            u->peer.connection->read->eof = 1;
            ctx->stream_handler(r, u);
        }

        return;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "aigw: stream from provider \"%V\" was %V after %ui "
                  "event(s), resumed on the next model",
                  &ctx->candidates[ctx->current]->provider->name,
                  &ngx_http_aigw_outcomes[outcome], ctx->sse_events);

    ctx->resume_outcome = outcome;
    ctx->resume_events = ctx->sse_events;
    ctx->resume_from = ctx->current;
    ctx->resuming = 1;

    /* the status went out: the next provider's headers are not sent */
    ctx->committed = 1;

    /* the first attempt's usage: the provider's where it said, else */
    /* estimated; the next attempt's is its own */

    prompt = ngx_http_aigw_meter_tokens(ctx->scan.string_bytes);
    completion = ngx_http_aigw_meter_tokens(ctx->est_completion);
    cached = 0;

    if (ctx->usage_source == NGX_HTTP_AIGW_USAGE_PROVIDER) {
        prompt = ctx->prompt_tokens;
        cached = ctx->cached_tokens;
        completion = ngx_max(completion, ctx->completion_tokens);
    }

    ctx->resume_prompt = prompt;
    ctx->resume_completion = completion;

    /* counted, and priced as the cut model's, whoever ends the answer */
    ngx_http_aigw_meter_carry(ctx, ctx->candidates[ctx->current], prompt,
                              cached, completion);

    ctx->prompt_tokens = 0;
    ctx->completion_tokens = 0;
    ctx->cached_tokens = 0;
    ctx->cache_write_tokens = 0;
    ctx->reasoning_tokens = 0;
    ctx->usage_source = NGX_HTTP_AIGW_USAGE_NONE;
    ctx->est_completion = 0;

    /* the request is built again, with the text */
    ctx->built = NGX_CONF_UNSET_UINT;

    /*
     * upstream writes no request once the client has the headers, unless
     * told to (grpc's preserve_output): a copy of the conf for this one
     */

    *conf = alcf->first_token_conf ? *alcf->first_token_conf : *u->conf;
    conf->preserve_output = 1;
    u->conf = conf;

    if (u->peer.connection->read->timer_set) {
        ngx_del_timer(u->peer.connection->read);
    }

    /*
     * nginx's header reader fails, at the end (the recv says so) or on
     * the timed-out read: upstream moves on to the next candidate
     */

    u->read_event_handler = ctx->header_handler;
    ctx->header_handler(r, u);
}


/*
 * The text the client got, at the end of "messages": as an assistant
 * message, which a model with a prefill continues; for one without, and
 * a user message asking to continue.  Spliced into the client's body,
 * for every candidate after this one; the one built picks its text.
 */

static ngx_int_t
ngx_http_aigw_resilience_messages(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    u_char                 *p, *at;
    size_t                  len, n;
    ngx_http_aigw_field_t  *f;

    static u_char  open[] = ",{\"role\":\"assistant\",\"content\":\"";
    static u_char  ask[] = "\"},{\"role\":\"user\",\"content\":\"";

    f = &ctx->scan.field[NGX_HTTP_AIGW_F_MESSAGES];
    at = f->end - 1;

    /* a prefill may not end in white space (Anthropic refuses it) */

    n = ctx->resume_len;

    while (n && (ctx->resume_text[n - 1] == ' '
                 || ctx->resume_text[n - 1] == '\t'))
    {
        n--;
    }

    len = sizeof(open) - 1 + n + sizeof("\"}") - 1
          + sizeof(open) - 1 + ctx->resume_len + sizeof(ask) - 1
          + ngx_http_aigw_resume_ask.len + sizeof("\"}") - 1;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->resume_prefill.data = p;
    p = ngx_cpymem(p, open, sizeof(open) - 1);
    p = ngx_cpymem(p, ctx->resume_text, n);
    p = ngx_cpymem(p, "\"}", 2);
    ctx->resume_prefill.len = p - ctx->resume_prefill.data;

    ctx->resume_ask.data = p;
    p = ngx_cpymem(p, open, sizeof(open) - 1);
    p = ngx_cpymem(p, ctx->resume_text, ctx->resume_len);
    p = ngx_cpymem(p, ask, sizeof(ask) - 1);
    p = ngx_cpymem(p, ngx_http_aigw_resume_ask.data,
                   ngx_http_aigw_resume_ask.len);
    p = ngx_cpymem(p, "\"}", 2);
    ctx->resume_ask.len = p - ctx->resume_ask.data;

    return ngx_http_aigw_body_splice(r, ctx, at, at, &ctx->resume_ask);
}


/* the candidate built: the text as a prefill where its model takes one */

void
ngx_http_aigw_resilience_prefill(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_model_t *m)
{
    ngx_uint_t               i;
    ngx_http_aigw_splice_t  *sp;

    if (ctx->resume_prefill.data == NULL) {
        return;
    }

    sp = ctx->splices->elts;

    for (i = 0; i < ctx->splices->nelts; i++) {
        if (sp[i].text.data == ctx->resume_prefill.data
            || sp[i].text.data == ctx->resume_ask.data)
        {
            sp[i].text = m->prefill ? ctx->resume_prefill : ctx->resume_ask;
            return;
        }
    }
}
