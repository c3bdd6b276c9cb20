
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * The Responses API keeps state at the provider: a response is read,
 * deleted, cancelled, its input listed, or a conversation continued
 * (previous_response_id), only where it was created.  aigw_responses_zone
 * remembers, for every response that passes, its provider and tenant, in
 * shared memory: all workers see it, a reload keeps it, the least
 * recently used entry makes room.
 */


#define NGX_HTTP_AIGW_RESPONSES_ID_LEN  255


typedef struct {
    ngx_rbtree_t                   rbtree;
    ngx_rbtree_node_t              sentinel;
    ngx_queue_t                    queue;      /* most recent first */
} ngx_http_aigw_responses_sh_t;


typedef struct {
    ngx_http_aigw_responses_sh_t  *sh;
    ngx_slab_pool_t               *shpool;
    time_t                         ttl;
} ngx_http_aigw_responses_zone_t;


/* the id, the provider's name and the tenant follow the node */

typedef struct {
    ngx_str_node_t                 sn;
    ngx_queue_t                    queue;
    time_t                         expire;
    ngx_str_t                      provider;
    ngx_str_t                      tenant;
} ngx_http_aigw_responses_node_t;


static ngx_int_t ngx_http_aigw_responses_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_aigw_responses_node_t *ngx_http_aigw_responses_lookup(
    ngx_http_aigw_responses_zone_t *zone, ngx_str_t *id, uint32_t hash);
static void ngx_http_aigw_responses_evict(ngx_http_aigw_responses_zone_t *zone,
    ngx_uint_t all);
static ngx_int_t ngx_http_aigw_responses_find(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_str_t *id, ngx_str_t *provider);
static ngx_http_aigw_model_t *ngx_http_aigw_responses_model(
    ngx_http_aigw_main_conf_t *amcf, ngx_str_t *provider);
static ngx_int_t ngx_http_aigw_responses_string(ngx_http_aigw_field_t *f,
    ngx_str_t *s);


/* aigw_responses_zone name:size [ttl=time] */

char *
ngx_http_aigw_responses_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_main_conf_t *amcf = conf;

    size_t                           size;
    ngx_str_t                       *value, name, s;
    ngx_uint_t                       i;
    ngx_http_aigw_responses_zone_t  *zone;

    if (amcf->responses_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_aigw_zone_size(cf, &value[1], &name, &size) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_responses_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    /* OpenAI keeps a stored response for 30 days */

    zone->ttl = 30 * 86400;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            zone->ttl = ngx_parse_time(&s, 1);

            if (zone->ttl == (time_t) NGX_ERROR || zone->ttl == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid ttl \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    amcf->responses_zone = ngx_shared_memory_add(cf, &name, size,
                                                 &ngx_http_aigw_module);
    if (amcf->responses_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (amcf->responses_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    amcf->responses_zone->init = ngx_http_aigw_responses_init_zone;
    amcf->responses_zone->data = zone;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigw_responses_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_aigw_responses_zone_t  *ozone = data;

    void                            *sh;
    ngx_int_t                        rc;
    ngx_http_aigw_responses_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        /* a reload: the responses made before are where they were */
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    rc = ngx_http_aigw_zone_shared(shm_zone,
                                   sizeof(ngx_http_aigw_responses_sh_t),
                                   "responses", &sh, &zone->shpool);
    zone->sh = sh;

    if (rc != NGX_OK) {
        return (rc == NGX_DONE) ? NGX_OK : NGX_ERROR;
    }

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_str_rbtree_insert_value);

    ngx_queue_init(&zone->sh->queue);

    return NGX_OK;
}


/*
 * ".../responses/{id}", ".../responses/{id}/cancel" and
 * ".../responses/{id}/input_items": the provider gets the same path,
 * from "/responses/", with the client's query string (input_items'
 * "after", "limit", "order").  NGX_DECLINED if the URI is none of them.
 */

ngx_int_t
ngx_http_aigw_responses_endpoint(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, u_char *last)
{
    u_char                    *p, *id, *end;
    size_t                     len;
    ngx_http_aigw_endpoint_t  *ep;

    p = ngx_strlcasestrn(r->uri.data, last, (u_char *) "/responses/",
                         sizeof("/responses/") - 2);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    id = p + sizeof("/responses/") - 1;

    for (end = id; end < last && *end != '/'; end++) { /* void */ }

    if (end == id || end - id > NGX_HTTP_AIGW_RESPONSES_ID_LEN) {
        return NGX_DECLINED;
    }

    len = last - end;

    if (!(len == 0
          || (len == sizeof("/cancel") - 1
              && ngx_strncmp(end, "/cancel", len) == 0)
          || (len == sizeof("/input_items") - 1
              && ngx_strncmp(end, "/input_items", len) == 0)))
    {
        return NGX_DECLINED;
    }

    ep = ngx_palloc(r->pool, sizeof(ngx_http_aigw_endpoint_t));
    if (ep == NULL) {
        return NGX_ERROR;
    }

    ep->endpoint = NGX_HTTP_AIGW_EP_RESPONSE;
    ep->suffix.len = last - p + (r->args.len ? 1 + r->args.len : 0);

    ep->suffix.data = ngx_pnalloc(r->pool, ep->suffix.len);
    if (ep->suffix.data == NULL) {
        return NGX_ERROR;
    }

    end = ngx_cpymem(ep->suffix.data, p, last - p);

    if (r->args.len) {
        *end++ = '?';
        ngx_memcpy(end, r->args.data, r->args.len);
    }

    ctx->ep = ep;
    ctx->endpoint = NGX_HTTP_AIGW_EP_RESPONSE;
    ctx->response_id.data = id;
    ctx->response_id.len = last - id - len;

    return NGX_OK;
}


/*
 * The body step of a stored response: the methods the API has for it,
 * no body to read (a cancel's is empty, and is discarded).
 */

ngx_int_t
ngx_http_aigw_responses_check(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_int_t    rc;
    ngx_uint_t   allowed;
    u_char      *tail;

    tail = ctx->response_id.data + ctx->response_id.len;

    if (tail == r->uri.data + r->uri.len || *tail != '/') {
        allowed = NGX_HTTP_GET|NGX_HTTP_DELETE;

    } else if (tail[1] == 'c') {
        allowed = NGX_HTTP_POST;

    } else {
        allowed = NGX_HTTP_GET;
    }

    if (!(r->method & allowed)) {
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_NOT_ALLOWED,
                                   "method_not_allowed",
                                   "%V is not allowed on %V.",
                                   &r->method_name, &r->uri);
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    return NGX_DECLINED;
}


/*
 * The route of a stored response: the provider that created it, for the
 * tenant that created it.  Another tenant's response, and one the zone
 * does not know, are not found, in OpenAI's words; without a zone, a
 * location with one OpenAI provider sends it there.
 */

ngx_int_t
ngx_http_aigw_responses_route(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_str_t                   provider;
    ngx_uint_t                  i;
    ngx_http_aigw_model_t      *m, **models;
    ngx_http_aigw_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    rc = ngx_http_aigw_responses_find(r, ctx, &ctx->response_id, &provider);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    m = NULL;

    if (rc == NGX_OK) {
        m = ngx_http_aigw_responses_model(amcf, &provider);

    } else if (amcf->responses_zone == NULL) {

        /* the one provider that may have it */

        models = amcf->models.elts;

        for (i = 0; i < amcf->models.nelts; i++) {
            if (models[i]->provider->format != ctx->format) {
                continue;
            }

            if (m && m->provider != models[i]->provider) {
                m = NULL;
                break;
            }

            m = models[i];
        }
    }

    if (m == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: response \"%V\" is unknown%s",
                      &ctx->response_id,
                      amcf->responses_zone ? ""
                      : " (no aigw_responses_zone, several providers)");

        return ngx_http_aigw_error(r, ctx, NGX_HTTP_NOT_FOUND,
                                   "response_not_found",
                                   "Response with id '%V' not found.",
                                   &ctx->response_id);
    }

    ctx->candidates = ngx_palloc(r->pool, sizeof(ngx_http_aigw_model_t *));
    if (ctx->candidates == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->candidates[0] = m;
    ctx->ncandidates = 1;

    return NGX_OK;
}


/*
 * previous_response_id: the conversation goes on where it is, so the
 * candidates are those of its provider; the others follow them only
 * with aigw_responses_fallback, else none left is a clear 400.
 */

ngx_int_t
ngx_http_aigw_responses_affinity(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_str_t                   id, provider;
    ngx_uint_t                  i, n;
    ngx_http_aigw_model_t     **c;
    ngx_http_aigw_loc_conf_t   *alcf;

    if (ctx->endpoint != NGX_HTTP_AIGW_EP_RESPONSES
        || ngx_http_aigw_responses_string(
               &ctx->scan.field[NGX_HTTP_AIGW_F_PREVIOUS_RESPONSE_ID], &id)
           != NGX_OK)
    {
        return NGX_OK;
    }

    rc = ngx_http_aigw_responses_find(r, ctx, &id, &provider);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return NGX_OK;      /* the provider will say */
    }

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    c = ngx_palloc(r->pool, ctx->ncandidates * sizeof(ngx_http_aigw_model_t *));
    if (c == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = 0;

    for (i = 0; i < ctx->ncandidates; i++) {
        if (ctx->candidates[i]->provider->name.len == provider.len
            && ngx_strncmp(ctx->candidates[i]->provider->name.data,
                           provider.data, provider.len) == 0)
        {
            c[n++] = ctx->candidates[i];
        }
    }

    if (n == 0 && !alcf->responses_fallback) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: response \"%V\" is at provider \"%V\", "
                      "not among the candidates of \"%V\"",
                      &id, &provider, &ctx->model);

        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "previous_response_elsewhere",
                                   "The previous response '%V' is kept "
                                   "by a provider that does not serve "
                                   "`%V`: continue it with a model of "
                                   "that provider.", &id, &ctx->model);
    }

    if (alcf->responses_fallback) {
        for (i = 0; i < ctx->ncandidates; i++) {
            if (ctx->candidates[i]->provider->name.len != provider.len
                || ngx_strncmp(ctx->candidates[i]->provider->name.data,
                               provider.data, provider.len) != 0)
            {
                c[n++] = ctx->candidates[i];
            }
        }
    }

    ctx->candidates = c;
    ctx->ncandidates = n;

    return NGX_OK;
}


/*
 * A response passed: remembered with its provider and tenant.  id is
 * the JSON value of its "id", quotes included.
 */

void
ngx_http_aigw_responses_remember(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_field_t *f)
{
    size_t                           size;
    u_char                          *p;
    uint32_t                         hash;
    ngx_str_t                        id, *provider;
    ngx_http_aigw_main_conf_t       *amcf;
    ngx_http_aigw_responses_node_t  *node;
    ngx_http_aigw_responses_zone_t  *zone;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    if (amcf->responses_zone == NULL
        || ngx_http_aigw_responses_string(f, &id) != NGX_OK)
    {
        return;
    }

    zone = amcf->responses_zone->data;
    provider = &ctx->candidates[ctx->current]->provider->name;
    hash = ngx_crc32_short(id.data, id.len);

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = ngx_http_aigw_responses_lookup(zone, &id, hash);

    if (node) {
        node->expire = ngx_time() + zone->ttl;
        ngx_queue_remove(&node->queue);
        ngx_queue_insert_head(&zone->sh->queue, &node->queue);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return;
    }

    ngx_http_aigw_responses_evict(zone, 0);

    size = sizeof(ngx_http_aigw_responses_node_t) + id.len + provider->len
           + ctx->tenant.len;

    node = ngx_slab_alloc_locked(zone->shpool, size);

    while (node == NULL && !ngx_queue_empty(&zone->sh->queue)) {
        ngx_http_aigw_responses_evict(zone, 1);
        node = ngx_slab_alloc_locked(zone->shpool, size);
    }

    if (node == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: no room for response \"%V\"%s", &id,
                      zone->shpool->log_ctx);
        return;
    }

    p = (u_char *) node + sizeof(ngx_http_aigw_responses_node_t);

    node->sn.str.data = p;
    node->sn.str.len = id.len;
    p = ngx_cpymem(p, id.data, id.len);

    node->provider.data = p;
    node->provider.len = provider->len;
    p = ngx_cpymem(p, provider->data, provider->len);

    node->tenant.data = p;
    node->tenant.len = ctx->tenant.len;
    ngx_memcpy(p, ctx->tenant.data, ctx->tenant.len);

    node->sn.node.key = hash;
    node->expire = ngx_time() + zone->ttl;

    ngx_rbtree_insert(&zone->sh->rbtree, &node->sn.node);
    ngx_queue_insert_head(&zone->sh->queue, &node->queue);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: response \"%V\" is at \"%V\"", &id, provider);
}


/*
 * The provider of a response: NGX_OK with its name in the request's
 * pool, NGX_DECLINED if unknown, expired or another tenant's.
 */

static ngx_int_t
ngx_http_aigw_responses_find(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_str_t *id, ngx_str_t *provider)
{
    ngx_int_t                        rc;
    ngx_http_aigw_main_conf_t       *amcf;
    ngx_http_aigw_responses_node_t  *node;
    ngx_http_aigw_responses_zone_t  *zone;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    if (amcf->responses_zone == NULL) {
        return NGX_DECLINED;
    }

    zone = amcf->responses_zone->data;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = ngx_http_aigw_responses_lookup(zone, id,
                                          ngx_crc32_short(id->data, id->len));

    if (node
        && node->tenant.len == ctx->tenant.len
        && ngx_strncmp(node->tenant.data, ctx->tenant.data,
                       ctx->tenant.len) == 0)
    {
        provider->len = node->provider.len;
        provider->data = ngx_pnalloc(r->pool, provider->len);

        if (provider->data == NULL) {
            rc = NGX_ERROR;

        } else {
            ngx_memcpy(provider->data, node->provider.data, provider->len);
            rc = NGX_OK;
        }

    } else if (node) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: response \"%V\" of another tenant asked for",
                      id);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


static ngx_http_aigw_responses_node_t *
ngx_http_aigw_responses_lookup(ngx_http_aigw_responses_zone_t *zone,
    ngx_str_t *id, uint32_t hash)
{
    ngx_str_node_t                  *sn;
    ngx_http_aigw_responses_node_t  *node;

    sn = ngx_str_rbtree_lookup(&zone->sh->rbtree, id, hash);

    if (sn == NULL) {
        return NULL;
    }

    node = (ngx_http_aigw_responses_node_t *) sn;

    if (node->expire <= ngx_time()) {
        return NULL;
    }

    return node;
}


/* the oldest entries, expired ones, or the oldest one when room is short */

static void
ngx_http_aigw_responses_evict(ngx_http_aigw_responses_zone_t *zone,
    ngx_uint_t all)
{
    ngx_uint_t                       n;
    ngx_queue_t                     *q;
    ngx_http_aigw_responses_node_t  *node;

    for (n = 0; n < 2 && !ngx_queue_empty(&zone->sh->queue); n++) {
        q = ngx_queue_last(&zone->sh->queue);
        node = ngx_queue_data(q, ngx_http_aigw_responses_node_t, queue);

        if (!all && node->expire > ngx_time()) {
            return;
        }

        ngx_queue_remove(q);
        ngx_rbtree_delete(&zone->sh->rbtree, &node->sn.node);
        ngx_slab_free_locked(zone->shpool, node);

        if (all) {
            return;
        }
    }
}


/* a model of the provider, to build the request by; NULL if it is gone */

static ngx_http_aigw_model_t *
ngx_http_aigw_responses_model(ngx_http_aigw_main_conf_t *amcf,
    ngx_str_t *provider)
{
    ngx_uint_t               i;
    ngx_http_aigw_model_t  **m;

    m = amcf->models.elts;

    for (i = 0; i < amcf->models.nelts; i++) {
        if (m[i]->provider->name.len == provider->len
            && ngx_strncmp(m[i]->provider->name.data, provider->data,
                           provider->len) == 0)
        {
            return m[i];
        }
    }

    return NULL;
}


/* an id as a JSON string without escapes, as providers make them */

static ngx_int_t
ngx_http_aigw_responses_string(ngx_http_aigw_field_t *f, ngx_str_t *s)
{
    if (f->key == NULL
        || f->end - f->start < 3
        || f->end - f->start > NGX_HTTP_AIGW_RESPONSES_ID_LEN + 2
        || *f->start != '"'
        || ngx_strlchr(f->start, f->end, '\\'))
    {
        return NGX_DECLINED;
    }

    s->data = f->start + 1;
    s->len = f->end - f->start - 2;

    return NGX_OK;
}
