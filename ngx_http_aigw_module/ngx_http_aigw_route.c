
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/* candidates ordered by latency: the first ones of a longer route */
#define NGX_HTTP_AIGW_BALANCE_MAX  16


static ngx_int_t ngx_http_aigw_route_parse_price(ngx_str_t *s,
    ngx_uint_t *price);
static ngx_http_aigw_provider_t *ngx_http_aigw_route_find_provider(
    ngx_http_aigw_main_conf_t *amcf, ngx_str_t *name);
static void ngx_http_aigw_route_balance(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_route_t *rt);
static ngx_int_t ngx_http_aigw_route_resolve(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);


/*
 * aigw_model PUBLIC PROVIDER:UPSTREAM_MODEL [input=$] [output=$]
 *            [cached_input=$];    prices in dollars per million tokens
 */

char *
ngx_http_aigw_model(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_main_conf_t *amcf = conf;

    u_char                  *colon;
    ngx_str_t               *value, name, s;
    ngx_uint_t               i, *price;
    ngx_http_aigw_model_t   *m, **mp;

    value = cf->args->elts;

    if (ngx_http_aigw_route_find_model(amcf, &value[1]) != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigw model \"%V\" is duplicate", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigw_route_find(amcf, &value[1]) != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigw model \"%V\" has the name of a route",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    m = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_model_t));
    if (m == NULL) {
        return NGX_CONF_ERROR;
    }

    m->name = value[1];

    colon = ngx_strlchr(value[2].data, value[2].data + value[2].len, ':');

    if (colon == NULL || colon == value[2].data
        || colon == value[2].data + value[2].len - 1)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid upstream model \"%V\", must be "
                           "\"provider:model\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    name.data = value[2].data;
    name.len = colon - value[2].data;

    m->provider = ngx_http_aigw_route_find_provider(amcf, &name);

    if (m->provider == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown aigw provider \"%V\" in model \"%V\" "
                           "(an aigw_provider must come before the models "
                           "that use it)", &name, &value[1]);
        return NGX_CONF_ERROR;
    }

    m->upstream_model.data = colon + 1;
    m->upstream_model.len = value[2].data + value[2].len - colon - 1;

    for (i = 3; i < cf->args->nelts; i++) {

        /* resilience: a resumed stream's text goes as a prefill */

        if (value[i].len == sizeof("prefill") - 1
            && ngx_strncmp(value[i].data, "prefill", value[i].len) == 0)
        {
            m->prefill = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "input=", 6) == 0) {
            price = &m->input_price;
            s.data = value[i].data + 6;

        } else if (ngx_strncmp(value[i].data, "output=", 7) == 0) {
            price = &m->output_price;
            s.data = value[i].data + 7;

        } else if (ngx_strncmp(value[i].data, "cached_input=", 13) == 0) {
            price = &m->cached_price;
            s.data = value[i].data + 13;

        } else if (ngx_strncmp(value[i].data, "cache_write=", 12) == 0) {
            price = &m->cache_write_price;
            s.data = value[i].data + 12;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        s.len = value[i].data + value[i].len - s.data;

        if (ngx_http_aigw_route_parse_price(&s, price) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid price \"%V\", must be dollars per "
                               "million tokens such as \"2.50\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    mp = ngx_array_push(&amcf->models);
    if (mp == NULL) {
        return NGX_CONF_ERROR;
    }

    *mp = m;

    return NGX_CONF_OK;
}


/* "2.50" -> 2500000 micro-dollars, without floating point */

static ngx_int_t
ngx_http_aigw_route_parse_price(ngx_str_t *s, ngx_uint_t *price)
{
    u_char      *p, *last;
    ngx_uint_t   v, frac, digits;

    p = s->data;
    last = p + s->len;

    if (p < last && *p == '$') {
        p++;
    }

    if (p == last) {
        return NGX_ERROR;
    }

    v = 0;

    for ( /* void */ ; p < last && *p != '.'; p++) {
        if (*p < '0' || *p > '9' || v > 1000000) {
            return NGX_ERROR;
        }

        v = v * 10 + (*p - '0');
    }

    frac = 0;
    digits = 0;

    if (p < last) {
        p++;

        for ( /* void */ ; p < last; p++) {
            if (*p < '0' || *p > '9' || ++digits > 6) {
                return NGX_ERROR;
            }

            frac = frac * 10 + (*p - '0');
        }
    }

    while (digits++ < 6) {
        frac *= 10;
    }

    *price = v * 1000000 + frac;

    return NGX_OK;
}


/* aigw_route NAME MODEL [MODEL ...]; an ordered fallback chain */

char *
ngx_http_aigw_route(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_main_conf_t *amcf = conf;

    ngx_int_t                w;
    ngx_str_t               *value;
    ngx_uint_t               i, n;
    ngx_http_aigw_route_t   *rt, **rtp;
    ngx_http_aigw_model_t   *m;

    value = cf->args->elts;

    if (ngx_http_aigw_route_find(amcf, &value[1]) != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigw route \"%V\" is duplicate", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigw_route_find_model(amcf, &value[1]) != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigw route \"%V\" has the name of a model",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    rt = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_route_t));
    if (rt == NULL) {
        return NGX_CONF_ERROR;
    }

    rt->name = value[1];
    rt->models = ngx_palloc(cf->pool,
                            cf->args->nelts * sizeof(ngx_http_aigw_model_t *));
    if (rt->models == NULL) {
        return NGX_CONF_ERROR;
    }

    rt->weights = ngx_palloc(cf->pool, cf->args->nelts * sizeof(ngx_uint_t));
    if (rt->weights == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 2, n = 0; i < cf->args->nelts; i++) {

        /* balance=order|weight|latency; weight=N of the model before */

        if (ngx_strncmp(value[i].data, "balance=", 8) == 0) {
            if (ngx_strcmp(value[i].data + 8, "order") == 0) {
                rt->balance = NGX_HTTP_AIGW_BALANCE_ORDER;

            } else if (ngx_strcmp(value[i].data + 8, "weight") == 0) {
                rt->balance = NGX_HTTP_AIGW_BALANCE_WEIGHT;

            } else if (ngx_strcmp(value[i].data + 8, "latency") == 0) {
                rt->balance = NGX_HTTP_AIGW_BALANCE_LATENCY;

                if (amcf->breaker == NULL) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "\"%V\" needs the shared zone of "
                                       "\"aigw_breaker\", defined before "
                                       "the route", &value[i]);
                    return NGX_CONF_ERROR;
                }

            } else {
                goto invalid;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "on=context_length_exceeded") == 0) {
            rt->context = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "weight=", 7) == 0) {
            w = ngx_atoi(value[i].data + 7, value[i].len - 7);

            if (n == 0 || w < 1 || w > 1000) {
                goto invalid;
            }

            rt->weights[n - 1] = w;
            continue;
        }

        m = ngx_http_aigw_route_find_model(amcf, &value[i]);

        if (m == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown aigw model \"%V\" in route \"%V\" "
                               "(an aigw_model must come before the routes "
                               "that use it)", &value[i], &value[1]);
            return NGX_CONF_ERROR;
        }

        rt->models[n] = m;
        rt->weights[n] = 1;
        n++;
    }

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigw route \"%V\" has no model", &value[1]);
        return NGX_CONF_ERROR;
    }

    rt->nmodels = n;

    for (i = 0; i < n; i++) {
        rt->total_weight += rt->weights[i];
    }

    rtp = ngx_array_push(&amcf->routes);
    if (rtp == NULL) {
        return NGX_CONF_ERROR;
    }

    *rtp = rt;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


ngx_http_aigw_route_t *
ngx_http_aigw_route_find(ngx_http_aigw_main_conf_t *amcf, ngx_str_t *name)
{
    ngx_uint_t               i;
    ngx_http_aigw_route_t  **rt;

    rt = amcf->routes.elts;

    for (i = 0; i < amcf->routes.nelts; i++) {
        if (rt[i]->name.len == name->len
            && ngx_strncmp(rt[i]->name.data, name->data, name->len) == 0)
        {
            return rt[i];
        }
    }

    return NULL;
}


ngx_http_aigw_model_t *
ngx_http_aigw_route_find_model(ngx_http_aigw_main_conf_t *amcf,
    ngx_str_t *name)
{
    ngx_uint_t               i;
    ngx_http_aigw_model_t  **m;

    m = amcf->models.elts;

    for (i = 0; i < amcf->models.nelts; i++) {
        if (m[i]->name.len == name->len
            && ngx_strncmp(m[i]->name.data, name->data, name->len) == 0)
        {
            return m[i];
        }
    }

    return NULL;
}


static ngx_http_aigw_provider_t *
ngx_http_aigw_route_find_provider(ngx_http_aigw_main_conf_t *amcf,
    ngx_str_t *name)
{
    ngx_uint_t                  i;
    ngx_http_aigw_provider_t  **p;

    p = amcf->providers.elts;

    for (i = 0; i < amcf->providers.nelts; i++) {
        if (p[i]->name.len == name->len
            && ngx_strncmp(p[i]->name.data, name->data, name->len) == 0)
        {
            return p[i];
        }
    }

    return NULL;
}


/*
 * Access step 3: the route's candidates, and the key's model list, which
 * names routes and models as the client sees them.
 */

ngx_int_t
ngx_http_aigw_route_handler(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx->endpoint == NGX_HTTP_AIGW_EP_RESPONSE) {
        return ngx_http_aigw_responses_route(r, ctx);
    }

    if (ctx->model.len == 0) {
        return NGX_DECLINED;   /* the model list */
    }

    rc = ngx_http_aigw_route_resolve(r, ctx);

    if (rc == NGX_OK) {
        rc = ngx_http_aigw_responses_affinity(r, ctx);
    }


    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->key == NULL
        || ngx_http_aigw_keys_model_allowed(ctx->key, &ctx->route_name))
    {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aigw: API key \"%V\" may not use \"%V\"",
                  &ctx->key->id, &ctx->route_name);

    return ngx_http_aigw_error(r, ctx, NGX_HTTP_FORBIDDEN,
                               "model_not_allowed",
                               "This API key may not use the model `%V`.",
                               &ctx->route_name);
}


/*
 * The order in which a request tries a route's candidates (the rest stay
 * its fallbacks): by weight, the first picked at random in proportion to
 * the weights; by latency, the lowest recent time to first byte (an EWMA
 * the workers share) first, those not measured yet before all.
 */

static void
ngx_http_aigw_route_balance(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_route_t *rt)
{
    ngx_uint_t              i, j, k, pick, total;
    ngx_msec_t              lat[NGX_HTTP_AIGW_BALANCE_MAX], key;
    ngx_http_aigw_model_t  *m;

    if (rt->balance == NGX_HTTP_AIGW_BALANCE_WEIGHT) {

        /* the weights of the candidates left (the format may drop some) */

        total = 0;

        for (i = 0, k = 0; i < rt->nmodels && k < ctx->ncandidates; i++) {
            if (rt->models[i] == ctx->candidates[k]) {
                total += rt->weights[i];
                k++;
            }
        }

        pick = (ngx_uint_t) ngx_random() % total;

        for (i = 0, k = 0; i < rt->nmodels && k < ctx->ncandidates; i++) {
            if (rt->models[i] != ctx->candidates[k]) {
                continue;
            }

            if (pick < rt->weights[i]) {
                break;
            }

            pick -= rt->weights[i];
            k++;
        }

        if (k > 0 && k < ctx->ncandidates) {
            m = ctx->candidates[k];
            ngx_memmove(&ctx->candidates[1], &ctx->candidates[0],
                        k * sizeof(ngx_http_aigw_model_t *));
            ctx->candidates[0] = m;
        }

        return;
    }

    /* latency: a stable insertion sort of a few candidates */

    k = ngx_min(ctx->ncandidates, NGX_HTTP_AIGW_BALANCE_MAX);

    for (i = 0; i < k; i++) {
        lat[i] = ngx_http_aigw_breaker_ewma(r, ctx->candidates[i]->provider);
    }

    for (i = 1; i < k; i++) {
        m = ctx->candidates[i];
        key = lat[i];

        for (j = i; j > 0 && lat[j - 1] > key; j--) {
            lat[j] = lat[j - 1];
            ctx->candidates[j] = ctx->candidates[j - 1];
        }

        lat[j] = key;
        ctx->candidates[j] = m;
    }
}


/*
 * Picks the candidates of a request: the route named by aigw_pass, else
 * the route or model the client asked for.  Candidates whose provider
 * does not speak the client's format are left out.  Returns NGX_OK, or
 * an HTTP status with the error recorded.
 */

static ngx_int_t
ngx_http_aigw_route_resolve(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_str_t                   name;
    ngx_uint_t                  i, n;
    ngx_http_aigw_model_t      *m, **models;
    ngx_http_aigw_route_t      *rt;
    ngx_http_aigw_loc_conf_t   *alcf;
    ngx_http_aigw_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    if (alcf->route) {
        if (ngx_http_complex_value(r, alcf->route, &name) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else {
        name = ctx->model;
    }

    rt = ngx_http_aigw_route_find(amcf, &name);

    if (rt) {
        ctx->route_name = rt->name;
        ctx->on_context = rt->context;
        models = rt->models;
        n = rt->nmodels;

    } else {
        m = ngx_http_aigw_route_find_model(amcf, &name);

        if (m == NULL) {
            if (alcf->route) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "aigw_pass names \"%V\", which is neither a "
                              "route nor a model", &name);
                return ngx_http_aigw_error(r, ctx,
                                           NGX_HTTP_INTERNAL_SERVER_ERROR,
                                           "route_not_found",
                                           "The gateway has no route "
                                           "\"%V\"", &name);
            }

            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aigw: unknown model \"%V\"", &name);

            return ngx_http_aigw_error(r, ctx, NGX_HTTP_NOT_FOUND,
                                       "model_not_found",
                                       "The model `%V` does not exist or "
                                       "you do not have access to it.",
                                       &name);
        }

        ctx->route_name = m->name;
        models = ngx_palloc(r->pool, sizeof(ngx_http_aigw_model_t *));
        if (models == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        models[0] = m;
        n = 1;
    }

    ctx->candidates = ngx_palloc(r->pool, n * sizeof(ngx_http_aigw_model_t *));
    if (ctx->candidates == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->ncandidates = 0;

    for (i = 0; i < n; i++) {
        m = models[i];

        /*
         * another format only where the request is translated: embeddings
         * and text completions exist only in OpenAI's API
         */

        if (!ngx_http_aigw_translate_possible(ctx, m)) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "aigw: skip \"%V\" of provider \"%V\": other "
                           "wire format", &m->name, &m->provider->name);
            continue;
        }

        ctx->candidates[ctx->ncandidates++] = m;
    }

    /* a rule that matches chooses the first; else the balance does */

    if (rt && rt->rules && ctx->ncandidates > 1
        && ngx_http_aigw_route_rule_apply(r, ctx, rt) == NGX_OK)
    {
        /* void */

    } else if (rt && rt->balance != NGX_HTTP_AIGW_BALANCE_ORDER
               && ctx->ncandidates > 1)
    {
        ngx_http_aigw_route_balance(r, ctx, rt);
    }

    if (ctx->ncandidates == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: no provider of \"%V\" serves \"%V\"",
                      &name, &r->uri);

        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "model_not_supported",
                                   "The model `%V` is not available on this "
                                   "endpoint.", &name);
    }

    return NGX_OK;
}


/* one entry of GET /v1/models, with a trailing comma */

static u_char *
ngx_http_aigw_route_model_json(u_char *p, ngx_str_t *id, ngx_str_t *owner)
{
    p = ngx_cpymem(p, "{\"id\":\"", sizeof("{\"id\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, id->data, id->len);
    p = ngx_cpymem(p, "\",\"object\":\"model\",\"created\":0,"
                   "\"owned_by\":\"",
                   sizeof("\",\"object\":\"model\",\"created\":0,"
                          "\"owned_by\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, owner->data, owner->len);

    return ngx_cpymem(p, "\"},", sizeof("\"},") - 1);
}


static size_t
ngx_http_aigw_route_model_len(ngx_str_t *id, ngx_str_t *owner)
{
    return sizeof("{\"id\":\"\",\"object\":\"model\",\"created\":0,"
                  "\"owned_by\":\"\"},") - 1
           + id->len + ngx_escape_json(NULL, id->data, id->len)
           + owner->len + ngx_escape_json(NULL, owner->data, owner->len);
}


/*
 * GET /v1/models: the public models and routes, as OpenAI lists them;
 * GET /v1/models/{id}: one of them
 */

ngx_int_t
ngx_http_aigw_route_models_send(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    size_t                      len;
    u_char                     *p;
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_str_t                   id, aigw;
    ngx_uint_t                  i;
    ngx_chain_t                 out;
    ngx_http_aigw_model_t     **m, *one;
    ngx_http_aigw_route_t     **rt;
    ngx_http_aigw_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    m = amcf->models.elts;
    rt = amcf->routes.elts;

    ngx_str_set(&aigw, "aigw");
    ngx_str_null(&id);
    one = NULL;

    if (ctx->endpoint == NGX_HTTP_AIGW_EP_MODEL) {
        p = ngx_strlcasestrn(r->uri.data, r->uri.data + r->uri.len,
                             (u_char *) "/models/", sizeof("/models/") - 2);

        id.data = p + sizeof("/models/") - 1;
        id.len = r->uri.data + r->uri.len - id.data;

        while (id.len && id.data[id.len - 1] == '/') {
            id.len--;
        }

        one = ngx_http_aigw_route_find_model(amcf, &id);

        if (one == NULL && ngx_http_aigw_route_find(amcf, &id) == NULL) {
            return ngx_http_aigw_error(r, ctx, NGX_HTTP_NOT_FOUND,
                                       "model_not_found",
                                       "The model `%V` does not exist or "
                                       "you do not have access to it.", &id);
        }

        len = ngx_http_aigw_route_model_len(&id, one ? &one->provider->name
                                                     : &aigw);

    } else {
        len = sizeof("{\"object\":\"list\",\"data\":[]}") - 1;

        for (i = 0; i < amcf->models.nelts; i++) {
            len += ngx_http_aigw_route_model_len(&m[i]->name,
                                                 &m[i]->provider->name);
        }

        for (i = 0; i < amcf->routes.nelts; i++) {
            len += ngx_http_aigw_route_model_len(&rt[i]->name, &aigw);
        }
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;

    if (ctx->endpoint == NGX_HTTP_AIGW_EP_MODEL) {
        p = ngx_http_aigw_route_model_json(p, &id,
                                           one ? &one->provider->name
                                               : &aigw);
        p--;

    } else {
        p = ngx_cpymem(p, "{\"object\":\"list\",\"data\":[",
                       sizeof("{\"object\":\"list\",\"data\":[") - 1);

        for (i = 0; i < amcf->models.nelts; i++) {
            p = ngx_http_aigw_route_model_json(p, &m[i]->name,
                                               &m[i]->provider->name);
        }

        for (i = 0; i < amcf->routes.nelts; i++) {
            p = ngx_http_aigw_route_model_json(p, &rt[i]->name, &aigw);
        }

        if (p[-1] == ',') {
            p--;
        }

        p = ngx_cpymem(p, "]}", 2);
    }

    b->last = p;
    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = sizeof("application/json") - 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
