
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * Provider host names re-resolved with nginx's resolver.  Each worker
 * keeps the addresses of each provider it has resolved; a request never
 * waits for DNS: it takes the addresses at hand (those of the
 * configuration until the first answer) and, when they are past their
 * TTL, starts a resolution whose answer the next requests use.  A
 * resolution that fails keeps the last good addresses.
 */


/* seconds before a failed resolution is tried again */
#define NGX_HTTP_AIGW_RESOLVE_RETRY  1


static void ngx_http_aigw_resolve_start(ngx_http_request_t *r,
    ngx_http_aigw_provider_t *p);
static void ngx_http_aigw_resolve_handler(ngx_resolver_ctx_t *rctx);
static ngx_int_t ngx_http_aigw_resolve_set(ngx_http_aigw_provider_t *p,
    ngx_resolver_ctx_t *rctx);


/* at configuration: whether the host is a name that a resolver may track */

void
ngx_http_aigw_resolve_init(ngx_conf_t *cf, ngx_http_aigw_provider_t *p,
    in_port_t port)
{
    ngx_addr_t  addr;

    p->port = port;

    /* "[::1]": an IPv6 literal keeps its brackets in the URL's host */

    p->resolvable = p->sni.len && p->sni.data[0] != '['
                    && ngx_parse_addr(cf->pool, &addr, p->sni.data,
                                      p->sni.len)
                       != NGX_OK;
}


/*
 * The address of the next attempt on provider p: round robin over the
 * resolved addresses; the configuration's first without a resolver.
 */

ngx_int_t
ngx_http_aigw_resolve_peer(ngx_http_request_t *r,
    ngx_http_aigw_provider_t *p, ngx_peer_connection_t *pc)
{
    ngx_addr_t                *addr;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (!p->resolvable
        || clcf->resolver == NULL
        || clcf->resolver->connections.nelts == 0)
    {
        addr = &p->addrs[0];

        pc->sockaddr = addr->sockaddr;
        pc->socklen = addr->socklen;
        pc->name = &addr->name;

        return NGX_OK;
    }

    if (!p->resolving && ngx_time() >= p->valid) {
        ngx_http_aigw_resolve_start(r, p);
    }

    if (p->nresolved == 0) {
        addr = &p->addrs[0];

    } else {
        addr = &p->resolved[p->next++ % p->nresolved];
    }

    /*
     * the set may be replaced while the request runs: its copy of the
     * address lives as long as it does ($upstream_addr is read at the end)
     */

    pc->sockaddr = ngx_palloc(r->pool, addr->socklen);
    if (pc->sockaddr == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(pc->sockaddr, addr->sockaddr, addr->socklen);
    pc->socklen = addr->socklen;

    pc->name = ngx_palloc(r->pool, sizeof(ngx_str_t));
    if (pc->name == NULL) {
        return NGX_ERROR;
    }

    pc->name->len = addr->name.len;
    pc->name->data = ngx_pstrdup(r->pool, &addr->name);
    if (pc->name->data == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_aigw_resolve_start(ngx_http_request_t *r,
    ngx_http_aigw_provider_t *p)
{
    ngx_resolver_ctx_t        *rctx;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    rctx = ngx_resolve_start(clcf->resolver, NULL);

    if (rctx == NULL || rctx == NGX_NO_RESOLVER) {
        p->valid = ngx_time() + NGX_HTTP_AIGW_RESOLVE_RETRY;
        return;
    }

    rctx->name = p->sni;
    rctx->handler = ngx_http_aigw_resolve_handler;
    rctx->data = p;
    rctx->timeout = clcf->resolver_timeout;

    /* a worker that shuts down does not wait for an answer */
    rctx->cancelable = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: resolving \"%V\"", &p->sni);

    p->resolving = 1;

    /* the handler may run at once, from the resolver's cache */

    if (ngx_resolve_name(rctx) != NGX_OK) {
        /* the context is freed by the resolver */
        p->resolving = 0;
        p->valid = ngx_time() + NGX_HTTP_AIGW_RESOLVE_RETRY;
    }
}


static void
ngx_http_aigw_resolve_handler(ngx_resolver_ctx_t *rctx)
{
    ngx_http_aigw_provider_t  *p = rctx->data;

    p->resolving = 0;

    if (rctx->state == NGX_OK && rctx->naddrs
        && ngx_http_aigw_resolve_set(p, rctx) == NGX_OK)
    {
        if (p->resolve_failed) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "aigw: \"%V\" of provider \"%V\" resolves again",
                          &p->sni, &p->name);
            p->resolve_failed = 0;
        }

        /* the record's TTL, or the resolver's "valid=" */

        p->valid = ngx_max(rctx->valid, ngx_time() + 1);

        ngx_resolve_name_done(rctx);
        return;
    }

    /* once a failure, not at every retry */

    if (!p->resolve_failed) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "aigw: \"%V\" of provider \"%V\" could not be "
                      "resolved (%i: %s), its last %ui address(es) kept",
                      &p->sni, &p->name, rctx->state,
                      ngx_resolver_strerror(rctx->state),
                      p->nresolved ? p->nresolved : 1);
        p->resolve_failed = 1;
    }

    p->valid = ngx_time() + NGX_HTTP_AIGW_RESOLVE_RETRY;

    ngx_resolve_name_done(rctx);
}


/*
 * The new set replaces the old at once: requests under way hold copies.
 * One allocation of the worker's heap, the addresses then their names.
 */

static ngx_int_t
ngx_http_aigw_resolve_set(ngx_http_aigw_provider_t *p,
    ngx_resolver_ctx_t *rctx)
{
    u_char          *d;
    size_t           len;
    ngx_uint_t       i, n;
    ngx_addr_t      *addrs;
    ngx_sockaddr_t  *sa;

    n = ngx_min(rctx->naddrs, NGX_HTTP_AIGW_RESOLVE_MAX);

    len = n * (sizeof(ngx_addr_t) + sizeof(ngx_sockaddr_t)
               + NGX_SOCKADDR_STRLEN);

    addrs = ngx_alloc(len, ngx_cycle->log);
    if (addrs == NULL) {
        return NGX_ERROR;
    }

    sa = (ngx_sockaddr_t *) (addrs + n);
    d = (u_char *) (sa + n);

    for (i = 0; i < n; i++) {
        ngx_memcpy(&sa[i], rctx->addrs[i].sockaddr, rctx->addrs[i].socklen);
        ngx_inet_set_port(&sa[i].sockaddr, p->port);

        addrs[i].sockaddr = &sa[i].sockaddr;
        addrs[i].socklen = rctx->addrs[i].socklen;
        addrs[i].name.data = d;
        addrs[i].name.len = ngx_sock_ntop(&sa[i].sockaddr,
                                          rctx->addrs[i].socklen, d,
                                          NGX_SOCKADDR_STRLEN, 1);
        d += NGX_SOCKADDR_STRLEN;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "aigw: \"%V\" resolved to %ui address(es), first %V",
                   &p->sni, n, &addrs[0].name);

    if (p->resolved) {
        ngx_free(p->resolved);
    }

    p->resolved = addrs;
    p->nresolved = n;

    return NGX_OK;
}
