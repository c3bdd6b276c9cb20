
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


static ngx_int_t ngx_http_aigw_handler(ngx_http_request_t *r);
static void ngx_http_aigw_upstream_start(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigw_upstream_create_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigw_upstream_build(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static ngx_int_t ngx_http_aigw_upstream_reinit_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigw_upstream_process_status_line(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_aigw_upstream_process_header(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigw_upstream_input_filter_init(void *data);
static ngx_int_t ngx_http_aigw_upstream_copy_filter(void *data,
    ssize_t bytes);
static ngx_int_t ngx_http_aigw_upstream_chunked_filter(void *data,
    ssize_t bytes);
static void ngx_http_aigw_upstream_abort_request(ngx_http_request_t *r);
static void ngx_http_aigw_upstream_finalize_request(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_aigw_upstream_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_aigw_upstream_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_aigw_upstream_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static ngx_uint_t ngx_http_aigw_upstream_stale(ngx_http_request_t *r,
    ngx_peer_connection_t *pc);
static ngx_uint_t ngx_http_aigw_upstream_context(ngx_http_request_t *r);


/*
 * A kept-alive connection that fails within this long of its reuse, with
 * nothing read, was closed by the provider while idle: the request never
 * reached it.  Past this, the provider had it.
 */
#define NGX_HTTP_AIGW_STALE_MSEC  500


/* aigw_pass [ROUTE]; */

char *
ngx_http_aigw_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_loc_conf_t *alcf = conf;

    ngx_str_t                         *value;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_aigw_main_conf_t         *amcf;
    ngx_http_upstream_srv_conf_t      *uscf;
    ngx_http_compile_complex_value_t   ccv;

    if (alcf->pass != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    alcf->pass = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_aigw_handler;

    if (clcf->name.len && clcf->name.data[clcf->name.len - 1] == '/') {
        clcf->auto_redirect = 1;
    }

    uscf = ngx_pcalloc(cf->pool, sizeof(ngx_http_upstream_srv_conf_t));
    if (uscf == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&uscf->host, "aigw");
    uscf->peer.init = ngx_http_aigw_upstream_init_peer;
    uscf->file_name = cf->conf_file->file.name.data;
    uscf->line = cf->conf_file->line;

    alcf->upstream.upstream = uscf;

    if (cf->args->nelts == 1) {
        return NGX_CONF_OK;
    }

    value = cf->args->elts;

    alcf->route = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (alcf->route == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = alcf->route;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (alcf->route->lengths) {
        return NGX_CONF_OK;
    }

    /* a fixed name must be known now: routes and models come first */

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigw_module);

    if (ngx_http_aigw_route_find(amcf, &value[1]) == NULL
        && ngx_http_aigw_route_find_model(amcf, &value[1]) == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown aigw route or model \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The content phase: the access steps have read the body and picked the
 * candidates; what is left is to talk to them.
 */

static ngx_int_t
ngx_http_aigw_handler(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx == NULL) {

        /* a subrequest, which the access phase leaves alone */

        ctx = ngx_http_aigw_ctx_create(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_aigw_error(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                   "internal_error",
                                   "aigw_pass does not serve subrequests.");
    }

    if (ctx->endpoint == NGX_HTTP_AIGW_EP_MODELS
        || ctx->endpoint == NGX_HTTP_AIGW_EP_MODEL)
    {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_http_aigw_error(r, ctx, NGX_HTTP_NOT_ALLOWED,
                                       "method_not_allowed",
                                       "Only GET lists the models.");
        }

        rc = ngx_http_discard_request_body(r);

        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_aigw_route_models_send(r, ctx);
    }

    /* a stored response is asked for without a body to edit */

    if (ctx->body.len && ctx->format->edit(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a cache hit: the stored answer, no provider */

    rc = ngx_http_aigw_cache_send(r, ctx);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    /*
     * the body in another format for candidates that speak one: from the
     * body as every step left it, placeholders and edits spliced in
     */

    rc = ngx_http_aigw_translate_prepare(r, ctx);

    if (rc != NGX_OK) {
        return (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR : rc;
    }
    /* in flight from here: a worker that dies leaves it "incomplete" */

    ngx_http_aigw_audit_flight_begin(r, ctx);

    /* the body is read already: this starts upstream at once */

    rc = ngx_http_read_client_request_body(r, ngx_http_aigw_upstream_start);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_aigw_upstream_start(ngx_http_request_t *r)
{
    ngx_http_upstream_t       *u;
    ngx_http_aigw_ctx_t       *ctx;
    ngx_http_aigw_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ngx_http_upstream_create(r) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    u = r->upstream;

    ngx_str_set(&u->schema, "aigw://");
    u->output.tag = (ngx_buf_tag_t) &ngx_http_aigw_module;
    u->conf = &alcf->upstream;

    u->create_request = ngx_http_aigw_upstream_create_request;
    u->reinit_request = ngx_http_aigw_upstream_reinit_request;
    u->process_header = ngx_http_aigw_upstream_process_status_line;
    u->abort_request = ngx_http_aigw_upstream_abort_request;
    u->finalize_request = ngx_http_aigw_upstream_finalize_request;

    u->input_filter_init = ngx_http_aigw_upstream_input_filter_init;
    u->input_filter = ngx_http_aigw_upstream_copy_filter;
    u->input_filter_ctx = r;

    /* answers pass on as they come: SSE must not wait in a buffer */
    u->buffering = 0;

    r->state = 0;

    if (ngx_http_aigw_resilience_start(r, ctx) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_upstream_init(r);
}


static ngx_int_t
ngx_http_aigw_upstream_create_request(ngx_http_request_t *r)
{
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    return ngx_http_aigw_upstream_build(r, ctx);
}


/* the request for the current candidate, in its provider's format */

static ngx_int_t
ngx_http_aigw_upstream_build(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_int_t               rc;
    ngx_http_aigw_model_t  *m;

    m = ctx->candidates[ctx->current];

    /* a resumed stream's text, as its model takes it */
    ngx_http_aigw_resilience_prefill(ctx, m);

    rc = ngx_http_aigw_request_build(r, ctx, m);

    if (rc != NGX_OK) {
        return rc;
    }

    ctx->built = ctx->current;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_upstream_reinit_request(ngx_http_request_t *r)
{
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx == NULL) {
        return NGX_OK;
    }

    ngx_memzero(&ctx->status, sizeof(ngx_http_status_t));
    ngx_memzero(&ctx->chunked, sizeof(ngx_http_chunked_t));
    ctx->answered = 0;
    ctx->answer = NULL;
    ctx->answer_held = 0;

    r->upstream->process_header = ngx_http_aigw_upstream_process_status_line;
    r->upstream->input_filter = ngx_http_aigw_upstream_copy_filter;
    r->state = 0;

    /* a resumed stream's buffer may still be on its way to the client */
    return ngx_http_aigw_resilience_reinit(r, ctx);
}


static ngx_int_t
ngx_http_aigw_upstream_process_status_line(ngx_http_request_t *r)
{
    size_t                len;
    ngx_int_t             rc;
    ngx_http_upstream_t  *u;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    u = r->upstream;

    /* nginx's header reader, which a resumed stream runs again */

    if (ctx->header_handler == NULL) {
        ctx->header_handler = u->read_event_handler;
    }

    rc = ngx_http_parse_status_line(r, &u->buffer, &ctx->status);

    if (rc == NGX_AGAIN) {
        return rc;
    }

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: provider \"%V\" sent no valid HTTP status line",
                      &ctx->candidates[ctx->current]->provider->name);
        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    if (u->state && u->state->status == 0) {
        u->state->status = ctx->status.code;
    }

    u->headers_in.status_n = ctx->status.code;

    len = ctx->status.end - ctx->status.start;

    u->headers_in.status_line.data = ngx_pnalloc(r->pool, len);
    if (u->headers_in.status_line.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(u->headers_in.status_line.data, ctx->status.start, len);
    u->headers_in.status_line.len = len;

    if (ctx->status.http_version < NGX_HTTP_VERSION_11) {
        u->headers_in.connection_close = 1;
    }

    u->process_header = ngx_http_aigw_upstream_process_header;

    return ngx_http_aigw_upstream_process_header(r);
}


static ngx_int_t
ngx_http_aigw_upstream_process_header(ngx_http_request_t *r)
{
    size_t                          len;
    ngx_int_t                       rc;
    ngx_table_elt_t                *h;
    ngx_http_upstream_t            *u;
    ngx_http_aigw_ctx_t            *ctx;
    ngx_http_upstream_header_t     *hh;
    ngx_http_upstream_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_http_upstream_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    u = r->upstream;

    for ( ;; ) {

        rc = ngx_http_parse_header_line(r, &u->buffer, 1);

        if (rc == NGX_OK) {

            h = ngx_list_push(&u->headers_in.headers);
            if (h == NULL) {
                return NGX_ERROR;
            }

            h->hash = r->header_hash;
            h->key.len = r->header_name_end - r->header_name_start;
            h->value.len = r->header_end - r->header_start;

            /* key, value and the lowercased key in one allocation */

            len = h->key.len + 1 + h->value.len + 1 + h->key.len;

            h->key.data = ngx_pnalloc(r->pool, len);
            if (h->key.data == NULL) {
                h->hash = 0;
                return NGX_ERROR;
            }

            h->value.data = h->key.data + h->key.len + 1;
            h->lowcase_key = h->value.data + h->value.len + 1;

            ngx_memcpy(h->key.data, r->header_name_start, h->key.len);
            h->key.data[h->key.len] = '\0';
            ngx_memcpy(h->value.data, r->header_start, h->value.len);
            h->value.data[h->value.len] = '\0';

            if (h->key.len == r->lowcase_index) {
                ngx_memcpy(h->lowcase_key, r->lowcase_header, h->key.len);

            } else {
                ngx_strlow(h->lowcase_key, h->key.data, h->key.len);
            }

            hh = ngx_hash_find(&umcf->headers_in_hash, h->hash,
                               h->lowcase_key, h->key.len);

            if (hh && hh->handler(r, h, hh->offset) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        if (rc == NGX_HTTP_PARSE_HEADER_DONE) {

            /*
             * upstream moves on from a status only while it has tries
             * left: one more, for a status the last candidate retries
             */

            if (u->peer.tries == 1
                && (u->headers_in.status_n >= NGX_HTTP_INTERNAL_SERVER_ERROR
                    || u->headers_in.status_n == NGX_HTTP_TOO_MANY_REQUESTS)
                && ngx_http_aigw_resilience_retry(r, ctx, NULL, 1) == NGX_OK)
            {
                u->peer.tries++;
                ctx->retry_granted = 1;
            }

            /*
             * a status upstream moves on from: a hedge under way goes on
             * in its place, after aigw_next_upstream_timeout too, as in
             * free_peer (upstream tests the timeout before that)
             */

            if (ctx->hedge
                && (u->headers_in.status_n >= NGX_HTTP_INTERNAL_SERVER_ERROR
                    || u->headers_in.status_n == NGX_HTTP_TOO_MANY_REQUESTS))
            {
                ngx_http_aigw_hedge_keep(r, ctx);
            }

            /*
             * nginx's next_upstream knows 500, 502, 503, 504 and 429; any
             * other 5xx moves on too while a candidate is left
             */

            if (u->headers_in.status_n >= NGX_HTTP_INTERNAL_SERVER_ERROR
                && u->headers_in.status_n != NGX_HTTP_INTERNAL_SERVER_ERROR
                && u->headers_in.status_n != NGX_HTTP_BAD_GATEWAY
                && u->headers_in.status_n != NGX_HTTP_SERVICE_UNAVAILABLE
                && u->headers_in.status_n != NGX_HTTP_GATEWAY_TIME_OUT
                && u->peer.tries > 1)
            {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "aigw: provider \"%V\" answered %ui",
                              &ctx->candidates[ctx->current]->provider->name,
                              u->headers_in.status_n);

                return NGX_HTTP_UPSTREAM_INVALID_HEADER;
            }

            /*
             * a prompt too long for the model: on=context_length_exceeded
             * sends it to the next, larger model, never the same again
             */

            if (ctx->on_context
                && u->headers_in.status_n == NGX_HTTP_BAD_REQUEST
                && ctx->current + 1 < ctx->ncandidates
                && ngx_http_aigw_upstream_context(r))
            {
                ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                              "aigw: the prompt is too long for \"%V\", "
                              "sent to \"%V\"",
                              &ctx->candidates[ctx->current]->name,
                              &ctx->candidates[ctx->current + 1]->name);

                ctx->context_moved = 1;

                return NGX_HTTP_UPSTREAM_INVALID_HEADER;
            }

            /* the header filter knows then the headers are a provider's */
            ctx->answered = 1;

            if (u->headers_in.chunked) {
                u->headers_in.content_length_n = -1;
            }

            if (u->headers_in.status_n == NGX_HTTP_NO_CONTENT
                || u->headers_in.status_n == NGX_HTTP_NOT_MODIFIED
                || (!u->headers_in.chunked
                    && u->headers_in.content_length_n == 0))
            {
                u->keepalive = !u->headers_in.connection_close;
            }

            /* after keep-alives, only a stream can follow */
            rc = ngx_http_aigw_resilience_committed(r, ctx);

            if (rc != NGX_OK) {
                return rc;
            }

            /* a 200 goes on once its body is whole and is JSON */
            rc = ngx_http_aigw_answer_hold(r, ctx);

            if (rc != NGX_OK || ctx->answer_held) {
                return rc;
            }

            /* a stream, once its first event is there */
            return ngx_http_aigw_resilience_hold(r, ctx);
        }

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        /* rc == NGX_HTTP_PARSE_INVALID_HEADER */

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: provider sent an invalid header: "
                      "\"%*s\\x%02xd...\"",
                      r->header_end - r->header_name_start,
                      r->header_name_start, *r->header_end);

        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }
}


static ngx_int_t
ngx_http_aigw_upstream_input_filter_init(void *data)
{
    ngx_http_request_t  *r = data;

    ngx_http_upstream_t  *u;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    u = r->upstream;

    if (u->headers_in.status_n == NGX_HTTP_NO_CONTENT
        || u->headers_in.status_n == NGX_HTTP_NOT_MODIFIED)
    {
        u->length = 0;
        u->keepalive = !u->headers_in.connection_close;

    } else if (u->headers_in.chunked) {
        u->input_filter = ngx_http_aigw_upstream_chunked_filter;
        u->length = 1;

    } else if (u->headers_in.content_length_n == 0) {
        u->length = 0;
        u->keepalive = !u->headers_in.connection_close;

    } else {
        /* Content-Length, or until the provider closes (-1) */
        u->length = u->headers_in.content_length_n;
    }

    ngx_http_aigw_resilience_body(r, ctx);

    /* the start of an answer too large to be held */
    return ngx_http_aigw_answer_release(r, ctx);
}


static ngx_int_t
ngx_http_aigw_upstream_copy_filter(void *data, ssize_t bytes)
{
    ngx_http_request_t  *r = data;

    ngx_buf_t            *b;
    ngx_chain_t          *cl, **ll;
    ngx_http_upstream_t  *u;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    u = r->upstream;

    /* aigw_stream_keepalive counts gaps from here */
    ctx->last_read = ngx_current_msec;

    if (u->length == 0) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: provider sent more data than its "
                      "Content-Length");
        u->keepalive = 0;
        return NGX_OK;
    }

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

    b->pos = u->buffer.last;
    u->buffer.last += bytes;
    b->last = u->buffer.last;

    if (u->length == -1) {
        return NGX_OK;
    }

    if (bytes > u->length) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: provider sent more data than its "
                      "Content-Length");
        b->last = b->pos + u->length;
        u->length = 0;
        u->keepalive = 0;
        return NGX_OK;
    }

    u->length -= bytes;

    if (u->length == 0) {
        u->keepalive = !u->headers_in.connection_close;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_upstream_chunked_filter(void *data, ssize_t bytes)
{
    ngx_http_request_t  *r = data;

    size_t                size;
    ngx_int_t             rc;
    ngx_buf_t            *b, *buf;
    ngx_chain_t          *cl, **ll;
    ngx_http_upstream_t  *u;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    u = r->upstream;
    buf = &u->buffer;

    ctx->last_read = ngx_current_msec;

    buf->pos = buf->last;
    buf->last += bytes;

    for (ll = &u->out_bufs; *ll; ll = &(*ll)->next) { /* void */ }

    for ( ;; ) {

#if (nginx_version >= 1027002)
        /* nginx 1.27.2 added keep_trailers; trailers are skipped here */
        rc = ngx_http_parse_chunked(r, buf, &ctx->chunked, 0);
#else
        rc = ngx_http_parse_chunked(r, buf, &ctx->chunked);
#endif

        if (rc == NGX_OK) {

            /* the data of a chunk, whole or the part read so far */

            cl = ngx_chain_get_free_buf(r->pool, &u->free_bufs);
            if (cl == NULL) {
                return NGX_ERROR;
            }

            *ll = cl;
            ll = &cl->next;

            b = cl->buf;
            b->flush = 1;
            b->memory = 1;
            b->tag = u->output.tag;
            b->pos = buf->pos;

            size = buf->last - buf->pos;

            if ((off_t) size > ctx->chunked.size) {
                size = (size_t) ctx->chunked.size;
            }

            buf->pos += size;
            b->last = buf->pos;
            ctx->chunked.size -= size;

            continue;
        }

        if (rc == NGX_DONE) {
            u->keepalive = !u->headers_in.connection_close;
            u->length = 0;

            if (buf->pos != buf->last) {
                ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                              "aigw: provider sent data after the final "
                              "chunk");
                u->keepalive = 0;
            }

            return NGX_OK;
        }

        if (rc == NGX_AGAIN) {
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: provider \"%V\" sent an invalid chunked body",
                      &ctx->candidates[ctx->current]->provider->name);

        return NGX_ERROR;
    }
}


static void
ngx_http_aigw_upstream_abort_request(ngx_http_request_t *r)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: abort request");
}


/* words for the client when no provider gave an answer to pass on */

static void
ngx_http_aigw_upstream_finalize_request(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_str_t            *name;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx == NULL) {
        return;
    }

    /* what the answer used is known now: the quota need not wait */

    ngx_http_aigw_quota_settle(r);

    /* the deadline; a stream that failed ends with an error event */

    ngx_http_aigw_resilience_finalize(r, ctx, rc);

    if (r->upstream->header_sent) {
        return;
    }

    /* nobody to tell: nginx has logged the client's leaving at info */

    if (ctx->error_message.len || rc == NGX_HTTP_CLIENT_CLOSED_REQUEST
        || r->connection->error)
    {
        return;
    }

    name = ctx->route_name.len ? &ctx->route_name : &ctx->model;

    if (rc == NGX_HTTP_GATEWAY_TIME_OUT && ctx->deadline_passed) {
        (void) ngx_http_aigw_error(r, ctx, rc, "upstream_timeout",
                                   "The providers of `%V` did not answer "
                                   "within the gateway's deadline (%ui "
                                   "attempt(s)).", name, ctx->attempts);

    } else if (rc == NGX_HTTP_GATEWAY_TIME_OUT) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: \"%V\" failed after %ui attempt(s): timeout",
                      name, ctx->attempts);

        (void) ngx_http_aigw_error(r, ctx, rc, "upstream_timeout",
                                   "The providers of `%V` did not answer "
                                   "in time (%ui attempt(s)).",
                                   name, ctx->attempts);

    } else if (rc >= NGX_HTTP_SPECIAL_RESPONSE && ctx->attempts == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: every provider of \"%V\" is out of rotation",
                      name);

        (void) ngx_http_aigw_error(r, ctx, rc, "upstream_unavailable",
                                   "Every provider of `%V` is out of "
                                   "rotation for now.", name);

    } else if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: \"%V\" failed after %ui attempt(s)",
                      name, ctx->attempts);

        (void) ngx_http_aigw_error(r, ctx, rc, "upstream_error",
                                   "No provider of `%V` could answer "
                                   "(%ui attempt(s)).",
                                   name, ctx->attempts);
    }
}


static ngx_int_t
ngx_http_aigw_upstream_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    r->upstream->peer.get = ngx_http_aigw_upstream_get_peer;
    r->upstream->peer.free = ngx_http_aigw_upstream_free_peer;
    r->upstream->peer.data = r;
    r->upstream->peer.tries = ctx->ncandidates;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_upstream_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_request_t  *r = data;

    ngx_int_t                   rc;
    ngx_http_upstream_t        *u;
    ngx_http_aigw_ctx_t        *ctx;
    ngx_http_aigw_model_t      *m;
    ngx_http_aigw_main_conf_t  *amcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    u = r->upstream;

    /* a hedge's connection, its request sent already (aigw_hedge) */

    rc = ngx_http_aigw_hedge_peer(r, ctx, pc);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    /*
     * upstream gives back the try of a cached connection that failed, as
     * it was likely closed by the provider while idle: the same candidate
     * again, on a new connection
     */

    if (ctx->current > 0
        && pc->tries > ctx->ncandidates - ctx->current)
    {
        ctx->current--;
        ctx->fresh_connection = 1;

    } else {
        ctx->attempts++;
    }

    /* providers out of rotation are skipped, as tried */

    while (!ctx->fresh_connection
           && ctx->current < ctx->ncandidates
           && ngx_http_aigw_breaker_allow(r,
                  ctx->candidates[ctx->current]->provider)
              != NGX_OK)
    {
        ctx->current++;

        if (pc->tries > 1) {
            pc->tries--;
        }
    }

    if (ctx->current >= ctx->ncandidates) {
        /* nothing was sent: not an attempt */
        ctx->attempts--;
        return NGX_BUSY;
    }

    m = ctx->candidates[ctx->current];
    ctx->last = ctx->current;

    if (ctx->built != ctx->current) {
        if (ngx_http_aigw_upstream_build(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /* the configuration's address, or one the resolver found */

    if (ngx_http_aigw_resolve_peer(r, m->provider, pc) != NGX_OK) {
        return NGX_ERROR;
    }

#if (NGX_HTTP_SSL)
    u->ssl = m->provider->ssl;
    u->ssl_name = m->provider->sni;
#endif

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "aigw: attempt %ui: \"%V\" on provider \"%V\"",
                   ctx->attempts, &m->upstream_model, &m->provider->name);

    /* a retry after a backoff: its request waits for the timer */
    ngx_http_aigw_resilience_wait(r, ctx);

    if (ctx->fresh_connection) {
        ctx->fresh_connection = 0;
        pc->cached = 0;
        return NGX_OK;
    }

    rc = ngx_http_aigw_keepalive_get(amcf, pc, m->provider);

    return rc;
}


static void
ngx_http_aigw_upstream_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_request_t  *r = data;

    ngx_uint_t                  status;
    ngx_http_aigw_ctx_t        *ctx;
    ngx_http_aigw_model_t      *m;
    ngx_http_aigw_main_conf_t  *amcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx->current >= ctx->ncandidates) {
        return;
    }

    m = ctx->candidates[ctx->current];

    /* the connection's own recv again, before it is closed or cached */
    ngx_http_aigw_resilience_unwrap(ctx, pc->connection);
    ngx_http_aigw_hedge_unwrap(ctx, pc->connection);

    if (pc->tries) {
        pc->tries--;
    }

    if (state & NGX_PEER_FAILED) {

        ngx_http_aigw_answer_failed(r, ctx);

        if (pc->cached && !ngx_http_aigw_upstream_stale(r, pc)) {

            /*
             * the provider had the request: it is not sent to it again,
             * as upstream would do after an error on a cached connection
             */

            pc->cached = 0;
        }

        if (pc->cached) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aigw: a kept-alive connection to provider \"%V\" "
                          "failed as the request was sent, which goes "
                          "again on a new one", &m->provider->name);

        } else if (ctx->context_moved) {

            /* not the provider's failure, and not to be retried */

            ctx->context_moved = 0;
            ctx->retried = 0;

        } else {
            ngx_http_aigw_breaker_record(r, m->provider, 1);

            /* a hedge under way goes on in its place: no new attempt */
            ngx_http_aigw_hedge_keep(r, ctx);

            if (!ngx_http_aigw_hedge_next(ctx)
                && ngx_http_aigw_resilience_retry(r, ctx, pc, 0) == NGX_OK)
            {

                /* the same candidate again: upstream grants the try */

                if (!ctx->retry_granted) {
                    pc->tries++;
                }

                ctx->retry_granted = 0;
                return;
            }

            if (ctx->retry_granted) {
                pc->tries--;
                ctx->retry_granted = 0;
            }

            ctx->retried = 0;

            if (ctx->current + 1 < ctx->ncandidates) {
                ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                              "aigw: provider \"%V\" failed for \"%V\", "
                              "falling back to \"%V\" of provider \"%V\"",
                              &m->provider->name, &m->name,
                              &ctx->candidates[ctx->current + 1]->name,
                              &ctx->candidates[ctx->current + 1]
                                  ->provider->name);
            }
        }

        ctx->current++;
        return;
    }

    /* the end: an error status passed on, or a broken stream, failed too */

    status = r->upstream->headers_in.status_n;

    ngx_http_aigw_breaker_record(r, m->provider,
                                 status >= NGX_HTTP_INTERNAL_SERVER_ERROR
                                 || status == NGX_HTTP_TOO_MANY_REQUESTS
                                 || ctx->outcome == NGX_HTTP_AIGW_OUTCOME_CUT
                                 || ctx->outcome
                                    == NGX_HTTP_AIGW_OUTCOME_STALLED);

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    ngx_http_aigw_keepalive_put(amcf, pc, m->provider, r->upstream);
}


/*
 * Whether a failure on a reused connection happened as the request was
 * sent: an error, not a timeout, at once, before any answer.  Only then
 * is the request sent again to the same candidate on a new connection.
 */

static ngx_uint_t
ngx_http_aigw_upstream_stale(ngx_http_request_t *r, ngx_peer_connection_t *pc)
{
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (pc->connection && pc->connection->read->timedout) {
        return 0;
    }

    if (u->headers_in.status_n) {
        return 0;
    }

    return ngx_current_msec - u->start_time < NGX_HTTP_AIGW_STALE_MSEC;
}


/*
 * A 400 saying the prompt is longer than the model's context: OpenAI's
 * code "context_length_exceeded", Anthropic's "prompt is too long".
 * The error body is small and comes with the headers: it is looked for
 * in what was read, a bounded search.
 */

static ngx_uint_t
ngx_http_aigw_upstream_context(ngx_http_request_t *r)
{
    size_t                len;
    ngx_buf_t            *b;
    ngx_http_upstream_t  *u;

    u = r->upstream;
    b = &u->buffer;

    len = ngx_min((size_t) (b->last - b->pos), 4096);

    return ngx_strlcasestrn(b->pos, b->pos + len,
                            (u_char *) "context_length_exceeded",
                            sizeof("context_length_exceeded") - 2)
           != NULL
           || ngx_strlcasestrn(b->pos, b->pos + len,
                               (u_char *) "prompt is too long",
                               sizeof("prompt is too long") - 2)
              != NULL;
}
