
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * A per-worker cache of idle connections to providers.  The gateway picks
 * its peers itself (a route's candidates), so it keeps connections the
 * way ngx_http_upstream_keepalive_module does for an upstream block:
 * cached on peer.free, found again on peer.get, keyed by provider.
 */


typedef struct {
    ngx_queue_t                   queue;
    ngx_connection_t             *connection;
    ngx_http_aigw_provider_t     *provider;
    ngx_http_aigw_main_conf_t    *amcf;

    /* the peer's address: a resolved provider may have several */
    ngx_sockaddr_t                sockaddr;
    socklen_t                     socklen;
} ngx_http_aigw_keepalive_item_t;


static void ngx_http_aigw_keepalive_close_handler(ngx_event_t *ev);
static void ngx_http_aigw_keepalive_dummy_handler(ngx_event_t *ev);
static void ngx_http_aigw_keepalive_close(ngx_connection_t *c);


ngx_int_t
ngx_http_aigw_keepalive_init(ngx_conf_t *cf, ngx_http_aigw_main_conf_t *amcf)
{
    ngx_uint_t                       i;
    ngx_http_aigw_keepalive_item_t  *items;

    ngx_queue_init(&amcf->ka_cache);
    ngx_queue_init(&amcf->ka_free);

    if (amcf->keepalive == 0) {
        return NGX_OK;
    }

    items = ngx_pcalloc(cf->pool,
                        sizeof(ngx_http_aigw_keepalive_item_t)
                        * amcf->keepalive);
    if (items == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < amcf->keepalive; i++) {
        items[i].amcf = amcf;
        ngx_queue_insert_head(&amcf->ka_free, &items[i].queue);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_aigw_keepalive_get(ngx_http_aigw_main_conf_t *amcf,
    ngx_peer_connection_t *pc, ngx_http_aigw_provider_t *provider)
{
    ngx_queue_t                     *q;
    ngx_connection_t                *c;
    ngx_http_aigw_keepalive_item_t  *item;

    for (q = ngx_queue_head(&amcf->ka_cache);
         q != ngx_queue_sentinel(&amcf->ka_cache);
         q = ngx_queue_next(q))
    {
        item = ngx_queue_data(q, ngx_http_aigw_keepalive_item_t, queue);

        if (item->provider != provider) {
            continue;
        }

        /*
         * only to the address picked: one no longer in a resolved set
         * gets no more requests, and idles out
         */

        if (ngx_cmp_sockaddr((struct sockaddr *) &item->sockaddr,
                             item->socklen, pc->sockaddr, pc->socklen, 1)
            != NGX_OK)
        {
            continue;
        }

        ngx_queue_remove(q);
        ngx_queue_insert_head(&amcf->ka_free, q);

        c = item->connection;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "aigw: reuse keepalive connection %p", c);

        c->idle = 0;
        c->sent = 0;
        c->data = NULL;
        c->log = pc->log;
        c->read->log = pc->log;
        c->write->log = pc->log;
        c->pool->log = pc->log;

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        pc->connection = c;
        pc->cached = 1;

        return NGX_DONE;
    }

    pc->cached = 0;

    return NGX_OK;
}


void
ngx_http_aigw_keepalive_put(ngx_http_aigw_main_conf_t *amcf,
    ngx_peer_connection_t *pc, ngx_http_aigw_provider_t *provider,
    ngx_http_upstream_t *u)
{
    ngx_queue_t                     *q;
    ngx_connection_t                *c;
    ngx_http_aigw_keepalive_item_t  *item;

    c = pc->connection;

    if (amcf->keepalive == 0
        || c == NULL
        || !u->keepalive
        || !u->request_body_sent
        || c->read->eof
        || c->read->error
        || c->read->timedout
        || c->write->error
        || c->write->timedout
        || c->requests >= amcf->keepalive_requests
        || ngx_terminate
        || ngx_exiting)
    {
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        return;
    }

    if (ngx_queue_empty(&amcf->ka_free)) {

        /* the least recently used connection makes room */

        q = ngx_queue_last(&amcf->ka_cache);
        ngx_queue_remove(q);

        item = ngx_queue_data(q, ngx_http_aigw_keepalive_item_t, queue);
        ngx_http_aigw_keepalive_close(item->connection);

    } else {
        q = ngx_queue_head(&amcf->ka_free);
        ngx_queue_remove(q);

        item = ngx_queue_data(q, ngx_http_aigw_keepalive_item_t, queue);
    }

    ngx_queue_insert_head(&amcf->ka_cache, q);

    item->connection = c;
    item->provider = provider;

    item->socklen = ngx_min(pc->socklen, (socklen_t) sizeof(ngx_sockaddr_t));
    ngx_memcpy(&item->sockaddr, pc->sockaddr, item->socklen);

    pc->connection = NULL;

    c->read->delayed = 0;
    ngx_add_timer(c->read, amcf->keepalive_timeout);

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->write->handler = ngx_http_aigw_keepalive_dummy_handler;
    c->read->handler = ngx_http_aigw_keepalive_close_handler;

    c->data = item;
    c->idle = 1;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->pool->log = ngx_cycle->log;

    if (c->read->ready) {
        ngx_http_aigw_keepalive_close_handler(c->read);
    }
}


static void
ngx_http_aigw_keepalive_dummy_handler(ngx_event_t *ev)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "aigw: keepalive dummy handler");
}


/* an idle connection that becomes readable was closed or broken */

static void
ngx_http_aigw_keepalive_close_handler(ngx_event_t *ev)
{
    int                              n;
    char                             buf[1];
    ngx_connection_t                *c;
    ngx_http_aigw_keepalive_item_t  *item;

    c = ev->data;

    if (c->close || c->read->timedout) {
        goto close;
    }

    n = recv(c->fd, buf, 1, MSG_PEEK);

    if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
        ev->ready = 0;

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            goto close;
        }

        return;
    }

close:

    item = c->data;

    ngx_http_aigw_keepalive_close(c);

    ngx_queue_remove(&item->queue);
    ngx_queue_insert_head(&item->amcf->ka_free, &item->queue);
}


static void
ngx_http_aigw_keepalive_close(ngx_connection_t *c)
{
#if (NGX_HTTP_SSL)

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;

        if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
            c->ssl->handler = ngx_http_aigw_keepalive_close;
            return;
        }
    }

#endif

    ngx_destroy_pool(c->pool);
    ngx_close_connection(c);
}
