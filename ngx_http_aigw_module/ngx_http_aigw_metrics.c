
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * Counters by tenant, model, provider, endpoint, the extra labels of
 * "labels=" and status, in a shared zone that all workers write and that
 * outlives "nginx -s reload".  A series is an rbtree node found under the
 * zone's mutex; its counters are then added to atomically.  Nodes are
 * never freed: past max_series, or when the zone is full, requests are
 * counted in one overflow series.
 */


#define NGX_HTTP_AIGW_ERR_NONE          0
#define NGX_HTTP_AIGW_ERR_AUTH          1
#define NGX_HTTP_AIGW_ERR_INVALID       2
#define NGX_HTTP_AIGW_ERR_RATE          3
#define NGX_HTTP_AIGW_ERR_UPSTREAM      4
#define NGX_HTTP_AIGW_ERR_TIMEOUT       5
#define NGX_HTTP_AIGW_ERR_PROVIDER_4XX  6
#define NGX_HTTP_AIGW_ERR_PROVIDER_5XX  7
#define NGX_HTTP_AIGW_ERR_STREAM_CUT    8
#define NGX_HTTP_AIGW_ERR_INTERNAL      9
#define NGX_HTTP_AIGW_ERR_STREAM_STALL  10
#define NGX_HTTP_AIGW_ERR_KINDS         11

#define NGX_HTTP_AIGW_LAT_BUCKETS       12
#define NGX_HTTP_AIGW_TTFT_BUCKETS      10

/* tenant, model, provider, endpoint, then up to 4 of "labels=" */
#define NGX_HTTP_AIGW_LABELS            8
#define NGX_HTTP_AIGW_LABELS_FIXED      4
#define NGX_HTTP_AIGW_LABEL_MAX         255

#define NGX_HTTP_AIGW_LABEL_USER        1
#define NGX_HTTP_AIGW_LABEL_TEAM        2
#define NGX_HTTP_AIGW_LABEL_META        3


typedef struct {
    ngx_rbtree_node_t               node;

    ngx_atomic_t                    requests;
    ngx_atomic_t                    prompt_tokens;
    ngx_atomic_t                    completion_tokens;
    ngx_atomic_t                    cached_tokens;
    ngx_atomic_t                    cache_write_tokens;
    ngx_atomic_t                    reasoning_tokens;
    ngx_atomic_t                    cost;          /* micro-dollars */
    ngx_atomic_t                    fallbacks;
    ngx_atomic_t                    estimated;
    ngx_atomic_t                    resumes;       /* aigw_stream_resume */
    ngx_atomic_t                    hedges;        /* aigw_hedge, won */
    ngx_atomic_t                    errors[NGX_HTTP_AIGW_ERR_KINDS];

    ngx_atomic_t                    latency[NGX_HTTP_AIGW_LAT_BUCKETS];
    ngx_atomic_t                    latency_sum;   /* milliseconds */
    ngx_atomic_t                    ttft[NGX_HTTP_AIGW_TTFT_BUCKETS];
    ngx_atomic_t                    ttft_sum;

    ngx_uint_t                      status;
    u_char                          len[NGX_HTTP_AIGW_LABELS];
    u_char                          data[1];
} ngx_http_aigw_series_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_uint_t                      nseries;
    ngx_atomic_t                    overflowed;
    ngx_http_aigw_series_t         *overflow;
} ngx_http_aigw_metrics_sh_t;


/* an extra label: the key's user or team, or one of its metadata tags */

typedef struct {
    ngx_str_t                       name;          /* as Prometheus shows */
    ngx_uint_t                      type;          /* _LABEL_USER, ... */
} ngx_http_aigw_label_t;


typedef struct {
    ngx_http_aigw_metrics_sh_t     *sh;
    ngx_slab_pool_t                *shpool;
    ngx_uint_t                      max_series;

    ngx_http_aigw_label_t           extra[NGX_HTTP_AIGW_LABELS
                                          - NGX_HTTP_AIGW_LABELS_FIXED];
    ngx_uint_t                      nlabels;       /* fixed ones included */
    ngx_str_t                       spec;          /* "user,team", or "" */
    size_t                          names_len;     /* ',name=""' of extras */
} ngx_http_aigw_metrics_t;


/* a series' counters summed by a report's labels */

typedef struct {
    ngx_str_t                       key;           /* length-prefixed */
    ngx_http_aigw_series_t         *series;
} ngx_http_aigw_report_item_t;


/* the series the worker counted into last (metrics_series) */
static ngx_http_aigw_series_t      *ngx_http_aigw_metrics_last;
static ngx_http_aigw_metrics_sh_t  *ngx_http_aigw_metrics_last_sh;


static ngx_int_t ngx_http_aigw_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_aigw_metrics_forget(void *data);
static void ngx_http_aigw_metrics_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_aigw_series_t *ngx_http_aigw_metrics_series(
    ngx_http_aigw_metrics_t *mt, ngx_str_t *labels, ngx_uint_t status,
    ngx_log_t *log);
static ngx_uint_t ngx_http_aigw_metrics_error_kind(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_uint_t status);
static ngx_int_t ngx_http_aigw_metrics_handler(ngx_http_request_t *r);
static u_char *ngx_http_aigw_metrics_labels(u_char *p,
    ngx_http_aigw_metrics_t *mt, ngx_http_aigw_series_t *s);
static char *ngx_http_aigw_metrics_extra_labels(ngx_conf_t *cf,
    ngx_http_aigw_metrics_t *mt, ngx_str_t *value);
static ngx_int_t ngx_http_aigw_report_handler(ngx_http_request_t *r);
static void ngx_http_aigw_metrics_extra_value(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_label_t *l, ngx_str_t *value);


static ngx_uint_t  ngx_http_aigw_lat_bounds[NGX_HTTP_AIGW_LAT_BUCKETS - 1] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000
};

static ngx_uint_t  ngx_http_aigw_ttft_bounds[NGX_HTTP_AIGW_TTFT_BUCKETS - 1] = {
    25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};

static ngx_str_t  ngx_http_aigw_fixed_labels[NGX_HTTP_AIGW_LABELS_FIXED] = {
    ngx_string("tenant"),
    ngx_string("model"),
    ngx_string("provider"),
    ngx_string("endpoint")
};

static const char  *ngx_http_aigw_err_names[NGX_HTTP_AIGW_ERR_KINDS] = {
    "", "auth", "invalid_request", "rate_limited", "upstream_error",
    "upstream_timeout", "provider_4xx", "provider_5xx", "stream_cut",
    "internal", "stream_stalled"
};


/* aigw_metrics_zone name:size [max_series=N] [labels=user,team,meta:x]; */

char *
ngx_http_aigw_metrics_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_main_conf_t *amcf = conf;

    size_t                    size;
    ngx_str_t                *value, name;
    ngx_int_t                 n;
    ngx_uint_t                i;
    ngx_http_aigw_metrics_t  *mt;

    if (amcf->metrics) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_aigw_zone_size(cf, &value[1], &name, &size) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    mt = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_metrics_t));
    if (mt == NULL) {
        return NGX_CONF_ERROR;
    }

    mt->max_series = 10000;
    mt->nlabels = NGX_HTTP_AIGW_LABELS_FIXED;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "max_series=", 11) == 0) {
            n = ngx_atoi(value[i].data + 11, value[i].len - 11);

            if (n == NGX_ERROR || n == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            mt->max_series = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "labels=", 7) == 0) {
            if (ngx_http_aigw_metrics_extra_labels(cf, mt, &value[i])
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return ngx_http_aigw_metrics_add_zone(cf, amcf, mt, &name, size);
}


/*
 * labels=user,team,meta:cost_center: the key's user, team or a metadata
 * tag as labels of every series, named "user", "team", "cost_center"
 */

static char *
ngx_http_aigw_metrics_extra_labels(ngx_conf_t *cf,
    ngx_http_aigw_metrics_t *mt, ngx_str_t *value)
{
    u_char                 *p, *last, *start;
    ngx_str_t               name;
    ngx_uint_t              i, n, type;
    ngx_http_aigw_label_t  *l;

    static ngx_str_t  reserved[] = {
        ngx_string("tenant"), ngx_string("model"), ngx_string("provider"),
        ngx_string("endpoint"), ngx_string("status"), ngx_string("type"),
        ngx_string("kind"), ngx_string("le"), ngx_null_string
    };

    if (mt->spec.data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "parameter \"labels=\" is duplicate");
        return NGX_CONF_ERROR;
    }

    mt->spec.data = value->data + 7;
    mt->spec.len = value->len - 7;

    p = mt->spec.data;
    last = p + mt->spec.len;

    for ( ;; ) {
        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        name.data = start;
        name.len = p - start;

        if (name.len == 4 && ngx_strncmp(name.data, "user", 4) == 0) {
            type = NGX_HTTP_AIGW_LABEL_USER;

        } else if (name.len == 4 && ngx_strncmp(name.data, "team", 4) == 0) {
            type = NGX_HTTP_AIGW_LABEL_TEAM;

        } else if (name.len > 5 && ngx_strncmp(name.data, "meta:", 5) == 0) {
            type = NGX_HTTP_AIGW_LABEL_META;
            name.data += 5;
            name.len -= 5;

        } else {
            goto invalid;
        }

        /* a Prometheus label name, not one the gateway uses itself */

        for (i = 0; i < name.len; i++) {
            if (!((name.data[i] >= 'a' && name.data[i] <= 'z')
                  || (name.data[i] >= 'A' && name.data[i] <= 'Z')
                  || name.data[i] == '_'
                  || (i && name.data[i] >= '0' && name.data[i] <= '9')))
            {
                goto invalid;
            }
        }

        if (name.len > 2 && name.data[0] == '_' && name.data[1] == '_') {
            goto invalid;
        }

        for (i = 0; reserved[i].len; i++) {
            if (reserved[i].len == name.len
                && ngx_strncmp(reserved[i].data, name.data, name.len) == 0)
            {
                goto invalid;
            }
        }

        n = mt->nlabels - NGX_HTTP_AIGW_LABELS_FIXED;

        for (i = 0; i < n; i++) {
            if (mt->extra[i].name.len == name.len
                && ngx_strncmp(mt->extra[i].name.data, name.data, name.len)
                   == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "label \"%V\" is duplicate", &name);
                return NGX_CONF_ERROR;
            }
        }

        if (mt->nlabels == NGX_HTTP_AIGW_LABELS) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "at most %ui labels in \"%V\"",
                               (ngx_uint_t) (NGX_HTTP_AIGW_LABELS
                                             - NGX_HTTP_AIGW_LABELS_FIXED),
                               value);
            return NGX_CONF_ERROR;
        }

        l = &mt->extra[n];
        l->name = name;
        l->type = type;

        mt->nlabels++;
        mt->names_len += sizeof(",=\"\"") - 1 + name.len;

        if (p++ == last) {
            break;
        }
    }

    if (mt->nlabels > NGX_HTTP_AIGW_LABELS_FIXED) {
        return NGX_CONF_OK;
    }

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", value);
    return NGX_CONF_ERROR;
}


char *
ngx_http_aigw_metrics_add_zone(ngx_conf_t *cf,
    ngx_http_aigw_main_conf_t *amcf, void *data, ngx_str_t *name,
    size_t size)
{
    ngx_http_aigw_metrics_t  *mt = data;

    ngx_pool_cleanup_t  *cln;

    if (mt == NULL) {
        mt = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_metrics_t));
        if (mt == NULL) {
            return NGX_CONF_ERROR;
        }

        mt->max_series = 10000;
        mt->nlabels = NGX_HTTP_AIGW_LABELS_FIXED;
    }

    amcf->metrics_zone = ngx_shared_memory_add(cf, name, size,
                                               &ngx_http_aigw_module);
    if (amcf->metrics_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (amcf->metrics_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", name);
        return NGX_CONF_ERROR;
    }

    amcf->metrics_zone->init = ngx_http_aigw_metrics_init_zone;
    amcf->metrics_zone->data = mt;
    amcf->metrics = mt;

    /* the zone may go with the cycle: its last series is forgotten */

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_aigw_metrics_forget;

    return NGX_CONF_OK;
}


static void
ngx_http_aigw_metrics_forget(void *data)
{
    ngx_http_aigw_metrics_last = NULL;
    ngx_http_aigw_metrics_last_sh = NULL;
}


static ngx_int_t
ngx_http_aigw_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_aigw_metrics_t  *omt = data;

    void                     *sh;
    ngx_int_t                 rc;
    ngx_uint_t                i;
    ngx_http_aigw_metrics_t  *mt;

    mt = shm_zone->data;

    if (omt) {
        /* a reload: the counters go on, if they mean the same */

        if (omt->spec.len != mt->spec.len
            || (mt->spec.len
                && ngx_strncmp(omt->spec.data, mt->spec.data, mt->spec.len)
                   != 0))
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "aigw_metrics_zone \"%V\" has labels \"%V\" "
                          "while previously it had \"%V\"; use another "
                          "zone name, or restart",
                          &shm_zone->shm.name, &mt->spec, &omt->spec);
            return NGX_ERROR;
        }

        mt->sh = omt->sh;
        mt->shpool = omt->shpool;
        return NGX_OK;
    }

    rc = ngx_http_aigw_zone_shared(shm_zone,
                                   sizeof(ngx_http_aigw_metrics_sh_t),
                                   "metrics", &sh, &mt->shpool);
    mt->sh = sh;

    if (rc != NGX_OK) {
        return (rc == NGX_DONE) ? NGX_OK : NGX_ERROR;
    }

    ngx_rbtree_init(&mt->sh->rbtree, &mt->sh->sentinel,
                    ngx_http_aigw_metrics_insert);

    mt->sh->overflow = ngx_slab_calloc(mt->shpool,
                                       sizeof(ngx_http_aigw_series_t)
                                       + sizeof("_overflow")
                                         * NGX_HTTP_AIGW_LABELS);
    if (mt->sh->overflow == NULL) {
        return NGX_ERROR;
    }

    /* every label "_overflow", the extra ones too */

    for (i = 0; i < NGX_HTTP_AIGW_LABELS; i++) {
        mt->sh->overflow->len[i] = sizeof("_overflow") - 1;
        ngx_memcpy(mt->sh->overflow->data + i * (sizeof("_overflow") - 1),
                   "_overflow", sizeof("_overflow") - 1);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_metrics_cmp(ngx_http_aigw_series_t *a,
    ngx_http_aigw_series_t *b)
{
    size_t      len;
    ngx_int_t   rc;
    ngx_uint_t  i;

    if (a->status != b->status) {
        return a->status < b->status ? -1 : 1;
    }

    rc = ngx_memcmp(a->len, b->len, NGX_HTTP_AIGW_LABELS);

    if (rc != 0) {
        return rc;
    }

    /* the same lengths: the same total */

    len = 0;

    for (i = 0; i < NGX_HTTP_AIGW_LABELS; i++) {
        len += a->len[i];
    }

    return ngx_memcmp(a->data, b->data, len);
}


static void
ngx_http_aigw_metrics_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t       **p;
    ngx_http_aigw_series_t   *s, *t;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            s = (ngx_http_aigw_series_t *) node;
            t = (ngx_http_aigw_series_t *) temp;

            p = (ngx_http_aigw_metrics_cmp(s, t) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_http_aigw_series_t *
ngx_http_aigw_metrics_series(ngx_http_aigw_metrics_t *mt, ngx_str_t *labels,
    ngx_uint_t status, ngx_log_t *log)
{
    size_t                   len;
    u_char                   key[sizeof(ngx_http_aigw_series_t)
                                 + NGX_HTTP_AIGW_LABELS
                                   * NGX_HTTP_AIGW_LABEL_MAX];
    uint32_t                 hash;
    ngx_int_t                rc;
    ngx_uint_t               i;
    ngx_rbtree_node_t       *node, *sentinel;
    ngx_http_aigw_series_t  *s, *probe;

    probe = (ngx_http_aigw_series_t *) key;
    probe->status = status;

    len = 0;

    for (i = 0; i < NGX_HTTP_AIGW_LABELS; i++) {
        probe->len[i] = (u_char) ngx_min(labels[i].len,
                                         NGX_HTTP_AIGW_LABEL_MAX);

        if (probe->len[i]) {
            ngx_memcpy(probe->data + len, labels[i].data, probe->len[i]);
        }

        len += probe->len[i];
    }

    /*
     * the series of the worker's last request: a worker's requests mostly
     * count into a few; a series, once in the tree, never changes nor
     * goes, so it is read without the lock
     */

    s = ngx_http_aigw_metrics_last;

    if (s && ngx_http_aigw_metrics_last_sh == mt->sh
        && s->status == status
        && ngx_memcmp(s->len, probe->len, NGX_HTTP_AIGW_LABELS) == 0
        && ngx_memcmp(s->data, probe->data, len) == 0)
    {
        return s;
    }

    hash = ngx_crc32_short(probe->data, len) ^ (uint32_t) status;

    ngx_shmtx_lock(&mt->shpool->mutex);

    node = mt->sh->rbtree.root;
    sentinel = mt->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        s = (ngx_http_aigw_series_t *) node;
        rc = ngx_http_aigw_metrics_cmp(probe, s);

        if (rc == 0) {
            ngx_shmtx_unlock(&mt->shpool->mutex);
            ngx_http_aigw_metrics_last = s;
            ngx_http_aigw_metrics_last_sh = mt->sh;
            return s;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    s = NULL;

    if (mt->sh->nseries < mt->max_series) {
        s = ngx_slab_calloc_locked(mt->shpool,
                                   sizeof(ngx_http_aigw_series_t) + len);
    }

    if (s == NULL) {
        ngx_shmtx_unlock(&mt->shpool->mutex);

        if (ngx_atomic_fetch_add(&mt->sh->overflowed, 1) == 0) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "aigw: metrics series are capped at %ui or the "
                          "zone is full; new series count as \"_overflow\"",
                          mt->max_series);
        }

        return mt->sh->overflow;
    }

    s->node.key = hash;
    s->status = status;
    ngx_memcpy(s->len, probe->len, NGX_HTTP_AIGW_LABELS);
    ngx_memcpy(s->data, probe->data, len);

    ngx_rbtree_insert(&mt->sh->rbtree, &s->node);
    mt->sh->nseries++;

    ngx_shmtx_unlock(&mt->shpool->mutex);

    ngx_http_aigw_metrics_last = s;
    ngx_http_aigw_metrics_last_sh = mt->sh;

    return s;
}


/* an extra label's value for the request: "" without a key */

static void
ngx_http_aigw_metrics_extra_value(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_label_t *l, ngx_str_t *value)
{
    ngx_uint_t                 i;
    ngx_http_aigw_key_meta_t  *meta;

    if (ctx->key == NULL) {
        return;
    }

    switch (l->type) {

    case NGX_HTTP_AIGW_LABEL_USER:
        *value = ctx->key->user;
        return;

    case NGX_HTTP_AIGW_LABEL_TEAM:
        *value = ctx->key->team;
        return;

    default: /* NGX_HTTP_AIGW_LABEL_META */
        meta = ctx->key->meta;

        for (i = 0; i < ctx->key->nmeta; i++) {
            if (meta[i].name.len == l->name.len
                && ngx_strncasecmp(meta[i].name.data, l->name.data,
                               l->name.len)
                   == 0)
            {
                *value = meta[i].value;
                return;
            }
        }
    }
}


/* the log phase: what the request used, cost and took */

ngx_int_t
ngx_http_aigw_metrics_log_handler(ngx_http_request_t *r)
{
    ngx_str_t                   labels[NGX_HTTP_AIGW_LABELS];
    ngx_uint_t                  i, status, kind;
    ngx_msec_t                  latency;
    ngx_http_aigw_ctx_t        *ctx;
    ngx_http_aigw_model_t      *m;
    ngx_http_aigw_series_t     *s;
    ngx_http_aigw_metrics_t    *mt;
    ngx_http_aigw_main_conf_t  *amcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx == NULL || r != r->main) {
        return NGX_OK;
    }

    ngx_http_aigw_meter_finish(r, ctx);

    /* a cache lock left by a request that stored nothing */
    ngx_http_aigw_cache_log(r, ctx);
    ngx_http_aigw_audit_log(r, ctx);

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    mt = amcf->metrics;

    if (mt == NULL || mt->sh == NULL) {
        return NGX_OK;
    }

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (r->connection->error && status < NGX_HTTP_BAD_REQUEST) {
        status = 499;
    }

    m = ctx->attempts ? ctx->candidates[ctx->last] : NULL;

    ngx_memzero(labels, sizeof(labels));

    labels[0] = ctx->tenant;
    labels[1] = m ? m->name : ctx->model;

    if (m) {
        labels[2] = m->provider->name;
    }

    labels[3] = *ngx_http_aigw_endpoint_name(ctx->endpoint);

    for (i = NGX_HTTP_AIGW_LABELS_FIXED; i < mt->nlabels; i++) {
        ngx_http_aigw_metrics_extra_value(ctx,
                               &mt->extra[i - NGX_HTTP_AIGW_LABELS_FIXED],
                               &labels[i]);
    }

    s = ngx_http_aigw_metrics_series(mt, labels, status, r->connection->log);

    (void) ngx_atomic_fetch_add(&s->requests, 1);

    if (ctx->prompt_tokens) {
        (void) ngx_atomic_fetch_add(&s->prompt_tokens, ctx->prompt_tokens);
    }

    if (ctx->completion_tokens) {
        (void) ngx_atomic_fetch_add(&s->completion_tokens,
                                    ctx->completion_tokens);
    }

    if (ctx->cached_tokens) {
        (void) ngx_atomic_fetch_add(&s->cached_tokens, ctx->cached_tokens);
    }

    if (ctx->cache_write_tokens) {
        (void) ngx_atomic_fetch_add(&s->cache_write_tokens,
                                    ctx->cache_write_tokens);
    }

    if (ctx->reasoning_tokens) {
        (void) ngx_atomic_fetch_add(&s->reasoning_tokens,
                                    ctx->reasoning_tokens);
    }

    if (ctx->cost) {
        (void) ngx_atomic_fetch_add(&s->cost, ctx->cost);
    }

    if (ctx->attempts > 1) {
        (void) ngx_atomic_fetch_add(&s->fallbacks, ctx->attempts - 1);
    }

    if (ctx->usage_source == NGX_HTTP_AIGW_USAGE_ESTIMATED) {
        (void) ngx_atomic_fetch_add(&s->estimated, 1);
    }

    if (ctx->resumed) {
        (void) ngx_atomic_fetch_add(&s->resumes, 1);
    }

    if (ctx->hedged) {
        (void) ngx_atomic_fetch_add(&s->hedges, 1);
    }

    kind = ngx_http_aigw_metrics_error_kind(r, ctx, status);

    if (kind) {
        (void) ngx_atomic_fetch_add(&s->errors[kind], 1);
    }

    latency = ngx_http_aigw_msec_since(r);

    for (i = 0; i < NGX_HTTP_AIGW_LAT_BUCKETS - 1; i++) {
        if (latency <= ngx_http_aigw_lat_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&s->latency[i], 1);
    (void) ngx_atomic_fetch_add(&s->latency_sum, latency);

    if (ctx->ttft != NGX_CONF_UNSET_MSEC) {
        for (i = 0; i < NGX_HTTP_AIGW_TTFT_BUCKETS - 1; i++) {
            if (ctx->ttft <= ngx_http_aigw_ttft_bounds[i]) {
                break;
            }
        }

        (void) ngx_atomic_fetch_add(&s->ttft[i], 1);
        (void) ngx_atomic_fetch_add(&s->ttft_sum, ctx->ttft);
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_aigw_metrics_error_kind(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_uint_t status)
{
    if (status < NGX_HTTP_BAD_REQUEST) {

        /* resilience.c says how an answer that started ended */

        switch (ngx_http_aigw_resilience_outcome(r, ctx)) {

        case NGX_HTTP_AIGW_OUTCOME_CUT:
            return NGX_HTTP_AIGW_ERR_STREAM_CUT;

        case NGX_HTTP_AIGW_OUTCOME_STALLED:
        case NGX_HTTP_AIGW_OUTCOME_TIMEOUT:
            return NGX_HTTP_AIGW_ERR_STREAM_STALL;

        case NGX_HTTP_AIGW_OUTCOME_ERROR:
            /* after keep-alives: no provider could begin the stream */
            return NGX_HTTP_AIGW_ERR_UPSTREAM;

        default:
            return NGX_HTTP_AIGW_ERR_NONE;
        }
    }

    if (status == 499) {
        return NGX_HTTP_AIGW_ERR_NONE;
    }

    if (ctx->answered && !r->err_status) {
        return status >= 500 ? NGX_HTTP_AIGW_ERR_PROVIDER_5XX
                             : NGX_HTTP_AIGW_ERR_PROVIDER_4XX;
    }

    switch (status) {

    case NGX_HTTP_UNAUTHORIZED:
    case NGX_HTTP_FORBIDDEN:
        return NGX_HTTP_AIGW_ERR_AUTH;

    case NGX_HTTP_TOO_MANY_REQUESTS:
        return NGX_HTTP_AIGW_ERR_RATE;

    case NGX_HTTP_BAD_GATEWAY:
        return NGX_HTTP_AIGW_ERR_UPSTREAM;

    case NGX_HTTP_GATEWAY_TIME_OUT:
        return NGX_HTTP_AIGW_ERR_TIMEOUT;

    default:
        return status >= 500 ? NGX_HTTP_AIGW_ERR_INTERNAL
                             : NGX_HTTP_AIGW_ERR_INVALID;
    }
}


/* aigw_metrics; */

char *
ngx_http_aigw_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_aigw_metrics_handler;

    return NGX_CONF_OK;
}


#define ngx_http_aigw_metrics_label_max                                      \
    (NGX_HTTP_AIGW_LABELS * (2 * NGX_HTTP_AIGW_LABEL_MAX + 64) + 64)


/* Prometheus label values escape \, " and newline */

static u_char *
ngx_http_aigw_metrics_escape(u_char *p, u_char *s, size_t len)
{
    while (len--) {
        if (*s == '\\' || *s == '"') {
            *p++ = '\\';
            *p++ = *s++;

        } else if (*s == '\n') {
            *p++ = '\\';
            *p++ = 'n';
            s++;

        } else {
            *p++ = *s++;
        }
    }

    return p;
}


static u_char *
ngx_http_aigw_metrics_labels(u_char *p, ngx_http_aigw_metrics_t *mt,
    ngx_http_aigw_series_t *s)
{
    u_char      *d;
    ngx_str_t   *name;
    ngx_uint_t   i;

    d = s->data;

    for (i = 0; i < mt->nlabels; i++) {
        name = (i < NGX_HTTP_AIGW_LABELS_FIXED)
               ? &ngx_http_aigw_fixed_labels[i]
               : &mt->extra[i - NGX_HTTP_AIGW_LABELS_FIXED].name;

        p = ngx_sprintf(p, "%s%V=\"", i ? "\"," : "", name);
        p = ngx_http_aigw_metrics_escape(p, d, s->len[i]);
        d += s->len[i];
    }

    return ngx_sprintf(p, "\",status=\"%ui\"", s->status);
}


typedef struct {
    const char  *name;
    const char  *type;
    const char  *help;
} ngx_http_aigw_family_t;


static ngx_http_aigw_family_t  ngx_http_aigw_families[] = {
    { "aigw_requests_total", "counter",
      "Requests through the gateway." },
    { "aigw_tokens_total", "counter",
      "Tokens by type: input (prompt, cached included), output, cached "
      "input, reasoning (part of output), cache_write (input written to "
      "a prompt cache)." },
    { "aigw_cost_dollars_total", "counter",
      "Cost in US dollars, from the prices of aigw_model." },
    { "aigw_errors_total", "counter",
      "Failed requests by kind." },
    { "aigw_fallbacks_total", "counter",
      "Candidates of a route that failed before one answered." },
    { "aigw_usage_estimated_total", "counter",
      "Requests whose tokens were estimated, the provider reporting none." },
    { "aigw_stream_resumes_total", "counter",
      "Streams cut or stalled that went on with the next model." },
    { "aigw_stream_hedges_total", "counter",
      "Streams the hedge of aigw_hedge served, its first token first." },
    { "aigw_request_duration_seconds", "histogram",
      "Time from the request's first byte to its last answer byte." },
    { "aigw_ttft_seconds", "histogram",
      "Time to the first byte of the answer (the first token of a "
      "stream)." },
    { NULL, NULL, NULL }
};


/* a histogram of milliseconds, in seconds; nothing if it is empty */

static u_char *
ngx_http_aigw_metrics_histogram(u_char *p, const char *name, u_char *labels,
    size_t len, ngx_atomic_t *buckets, ngx_uint_t *bounds, ngx_uint_t n,
    ngx_atomic_uint_t sum)
{
    uint64_t    acc;
    ngx_uint_t  i;

    acc = 0;

    for (i = 0; i < n; i++) {
        acc += buckets[i];
    }

    if (acc == 0) {
        return p;
    }

    acc = 0;

    for (i = 0; i < n - 1; i++) {
        acc += buckets[i];
        p = ngx_sprintf(p, "%s_bucket{%*s,le=\"%ui.%03ui\"} %uL\n", name,
                        len, labels, bounds[i] / 1000, bounds[i] % 1000, acc);
    }

    acc += buckets[i];

    return ngx_sprintf(p, "%s_bucket{%*s,le=\"+Inf\"} %uL\n"
                       "%s_sum{%*s} %uA.%03uA\n"
                       "%s_count{%*s} %uL\n",
                       name, len, labels, acc,
                       name, len, labels, sum / 1000, sum % 1000,
                       name, len, labels, acc);
}


static u_char *
ngx_http_aigw_metrics_family(u_char *p, ngx_http_aigw_metrics_t *mt,
    ngx_uint_t f, ngx_http_aigw_series_t *s)
{
    u_char       labels[ngx_http_aigw_metrics_label_max];
    u_char      *l;
    uint64_t     acc;
    ngx_uint_t   i;

    static const char  *types[] = { "input", "output", "cached",
                                    "reasoning", "cache_write" };

    l = ngx_http_aigw_metrics_labels(labels, mt, s);

#define lbl  (size_t) (l - labels), labels

    switch (f) {

    case 0:
        return ngx_sprintf(p, "aigw_requests_total{%*s} %uA\n", lbl,
                           s->requests);

    case 1:
        for (i = 0; i < 5; i++) {
            acc = i == 0 ? s->prompt_tokens
                  : i == 1 ? s->completion_tokens
                  : i == 2 ? s->cached_tokens
                  : i == 3 ? s->reasoning_tokens : s->cache_write_tokens;

            if (acc || i < 2) {
                p = ngx_sprintf(p, "aigw_tokens_total{%*s,type=\"%s\"} %uL\n",
                                lbl, types[i], acc);
            }
        }

        return p;

    case 2:
        return ngx_sprintf(p, "aigw_cost_dollars_total{%*s} %uA.%06uA\n",
                           lbl, s->cost / 1000000, s->cost % 1000000);

    case 3:
        for (i = 1; i < NGX_HTTP_AIGW_ERR_KINDS; i++) {
            if (s->errors[i]) {
                p = ngx_sprintf(p, "aigw_errors_total{%*s,kind=\"%s\"} %uA\n",
                                lbl, ngx_http_aigw_err_names[i],
                                s->errors[i]);
            }
        }

        return p;

    case 4:
        return s->fallbacks
               ? ngx_sprintf(p, "aigw_fallbacks_total{%*s} %uA\n", lbl,
                             s->fallbacks)
               : p;

    case 5:
        return s->estimated
               ? ngx_sprintf(p, "aigw_usage_estimated_total{%*s} %uA\n",
                             lbl, s->estimated)
               : p;

    case 6:
        return s->resumes
               ? ngx_sprintf(p, "aigw_stream_resumes_total{%*s} %uA\n",
                             lbl, s->resumes)
               : p;

    case 7:
        return s->hedges
               ? ngx_sprintf(p, "aigw_stream_hedges_total{%*s} %uA\n",
                             lbl, s->hedges)
               : p;

    case 8:
        return ngx_http_aigw_metrics_histogram(p,
                                           "aigw_request_duration_seconds",
                                           labels, l - labels, s->latency,
                                           ngx_http_aigw_lat_bounds,
                                           NGX_HTTP_AIGW_LAT_BUCKETS,
                                           s->latency_sum);

    default:
        return ngx_http_aigw_metrics_histogram(p, "aigw_ttft_seconds",
                                               labels, l - labels, s->ttft,
                                               ngx_http_aigw_ttft_bounds,
                                               NGX_HTTP_AIGW_TTFT_BUCKETS,
                                               s->ttft_sum);
    }

#undef lbl
}


/* at most this many lines a series, each its labels and 192 bytes */
#define NGX_HTTP_AIGW_METRICS_LINES  56


static ngx_int_t
ngx_http_aigw_metrics_handler(ngx_http_request_t *r)
{
    size_t                      size, line, len;
    u_char                     *p;
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_uint_t                  f, i;
    ngx_chain_t                 out;
    ngx_rbtree_node_t          *node, *root, *sentinel;
    ngx_http_aigw_series_t     *s;
    ngx_http_aigw_metrics_t    *mt;
    ngx_http_aigw_main_conf_t  *amcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    mt = amcf->metrics;

    if (mt == NULL || mt->sh == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    ngx_shmtx_lock(&mt->shpool->mutex);

    root = mt->sh->rbtree.root;
    sentinel = mt->sh->rbtree.sentinel;

    /* a line's room besides label values: ',endpoint=""', the extras */
    line = 192 + sizeof(",endpoint=\"\"") - 1 + mt->names_len;

    /* room for the overflow series and the quotas' 37 lines too */
    size = 4096 + NGX_HTTP_AIGW_METRICS_LINES
                  * (line + NGX_HTTP_AIGW_LABELS * 2 * 9)
           + 37 * 128 + ngx_http_aigw_pii_metrics_size(amcf)
           + ngx_http_aigw_cache_metrics_size(amcf)
           + ngx_http_aigw_breaker_metrics_size(amcf)
           + ngx_http_aigw_guard_metrics_size(amcf);

    if (root != sentinel) {
        for (node = ngx_rbtree_min(root, sentinel);
             node;
             node = ngx_rbtree_next(&mt->sh->rbtree, node))
        {
            s = (ngx_http_aigw_series_t *) node;

            len = 0;

            for (i = 0; i < NGX_HTTP_AIGW_LABELS; i++) {
                len += s->len[i];
            }

            size += NGX_HTTP_AIGW_METRICS_LINES * (line + 2 * len);
        }
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        ngx_shmtx_unlock(&mt->shpool->mutex);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;

    for (f = 0; ngx_http_aigw_families[f].name; f++) {
        p = ngx_sprintf(p, "# HELP %s %s\n# TYPE %s %s\n",
                        ngx_http_aigw_families[f].name,
                        ngx_http_aigw_families[f].help,
                        ngx_http_aigw_families[f].name,
                        ngx_http_aigw_families[f].type);

        if (root != sentinel) {
            for (node = ngx_rbtree_min(root, sentinel);
                 node;
                 node = ngx_rbtree_next(&mt->sh->rbtree, node))
            {
                p = ngx_http_aigw_metrics_family(p, mt, f,
                                        (ngx_http_aigw_series_t *) node);
            }
        }

        if (mt->sh->overflow->requests) {
            p = ngx_http_aigw_metrics_family(p, mt, f, mt->sh->overflow);
        }
    }

    p = ngx_sprintf(p, "# HELP aigw_metrics_series Series in the metrics "
                    "zone.\n# TYPE aigw_metrics_series gauge\n"
                    "aigw_metrics_series %ui\n"
                    "# HELP aigw_metrics_series_max The cap on series "
                    "(max_series).\n# TYPE aigw_metrics_series_max gauge\n"
                    "aigw_metrics_series_max %ui\n",
                    mt->sh->nseries, mt->max_series);

    ngx_shmtx_unlock(&mt->shpool->mutex);

    /* the quotas' decisions, kept in their own zone */

    if (amcf->quota_zone) {
        p = ngx_http_aigw_quota_zone_metrics(amcf->quota_zone->data, p,
                                             b->end);
    }

    p = ngx_http_aigw_pii_metrics(amcf, p, b->end);
    p = ngx_http_aigw_cache_metrics(amcf, p, b->end);
    p = ngx_http_aigw_breaker_metrics(amcf, p, b->end);
    p = ngx_http_aigw_guard_metrics(amcf, p, b->end);

    b->last = p;
    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* aigw_report; */

char *
ngx_http_aigw_report(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_aigw_report_handler;

    return NGX_CONF_OK;
}


#define NGX_HTTP_AIGW_REPORT_STATUS  NGX_HTTP_AIGW_LABELS


static int ngx_libc_cdecl
ngx_http_aigw_report_cmp(const void *one, const void *two)
{
    const ngx_http_aigw_report_item_t  *a = one;
    const ngx_http_aigw_report_item_t  *b = two;

    ngx_int_t  rc;

    rc = ngx_memcmp(a->key.data, b->key.data,
                    ngx_min(a->key.len, b->key.len));

    if (rc != 0) {
        return (int) rc;
    }

    return (a->key.len > b->key.len) - (a->key.len < b->key.len);
}


static ngx_int_t
ngx_http_aigw_report_send(ngx_http_request_t *r, ngx_uint_t status,
    u_char *p, u_char *last)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = p;
    b->last = last;
    b->memory = 1;
    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = last - p;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* a group's sums as JSON, after its labels */

static u_char *
ngx_http_aigw_report_sums(u_char *p, uint64_t *sum)
{
    return ngx_sprintf(p, "\"requests\":%uL,\"tokens\":{\"input\":%uL,"
                       "\"output\":%uL,\"cached\":%uL,\"reasoning\":%uL},"
                       "\"errors\":%uL,\"cost\":%uL.%06uL}",
                       sum[0], sum[1], sum[2], sum[3], sum[4], sum[6],
                       sum[5] / 1000000, sum[5] % 1000000);
}


static void
ngx_http_aigw_report_add(uint64_t *sum, ngx_http_aigw_series_t *s)
{
    ngx_uint_t  i;

    sum[0] += s->requests;
    sum[1] += s->prompt_tokens;
    sum[2] += s->completion_tokens;
    sum[3] += s->cached_tokens;
    sum[4] += s->reasoning_tokens;
    sum[5] += s->cost;

    for (i = 1; i < NGX_HTTP_AIGW_ERR_KINDS; i++) {
        sum[6] += s->errors[i];
    }
}


/*
 * GET ...?by=tenant,model: the zone's counters summed by the labels
 * asked for, as JSON; every label of the series may be asked for
 */

static ngx_int_t
ngx_http_aigw_report_handler(ngx_http_request_t *r)
{
    size_t                        size, klen;
    u_char                       *p, *q, *last, *d, *k;
    uint64_t                      sum[7], total[7];
    ngx_int_t                     rc;
    ngx_str_t                     by, name, *names[NGX_HTTP_AIGW_LABELS + 1];
    ngx_uint_t                    i, j, n, nby, nitems, off;
    ngx_uint_t                    idx[NGX_HTTP_AIGW_LABELS + 1];
    u_char                        status[NGX_INT_T_LEN];
    ngx_rbtree_node_t            *node, *root, *sentinel;
    ngx_http_aigw_series_t       *s;
    ngx_http_aigw_metrics_t      *mt;
    ngx_http_aigw_main_conf_t    *amcf;
    ngx_http_aigw_report_item_t  *items, *it;

    static ngx_str_t  status_name = ngx_string("status");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    mt = amcf->metrics;

    if (mt == NULL || mt->sh == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    /* the labels to group by, each once */

    nby = 0;
    ngx_str_null(&by);
    ngx_str_null(&name);

    if (ngx_http_arg(r, (u_char *) "by", 2, &by) == NGX_OK && by.len) {

        p = ngx_pnalloc(r->pool, by.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        q = p;
        ngx_unescape_uri(&q, &by.data, by.len, NGX_UNESCAPE_URI);
        last = q;

        for ( ;; ) {
            name.data = p;

            while (p < last && *p != ',') {
                p++;
            }

            name.len = p - name.data;

            if (nby == NGX_HTTP_AIGW_LABELS + 1) {
                goto invalid;
            }

            for (i = 0; i < mt->nlabels; i++) {
                names[nby] = (i < NGX_HTTP_AIGW_LABELS_FIXED)
                             ? &ngx_http_aigw_fixed_labels[i]
                             : &mt->extra[i - NGX_HTTP_AIGW_LABELS_FIXED].name;

                if (names[nby]->len == name.len
                    && ngx_strncmp(names[nby]->data, name.data, name.len)
                       == 0)
                {
                    break;
                }
            }

            if (i == mt->nlabels) {
                if (name.len != status_name.len
                    || ngx_strncmp(name.data, "status", name.len) != 0)
                {
                    goto invalid;
                }

                i = NGX_HTTP_AIGW_REPORT_STATUS;
                names[nby] = &status_name;
            }

            for (j = 0; j < nby; j++) {
                if (idx[j] == i) {
                    goto invalid;
                }
            }

            idx[nby++] = i;

            if (p++ == last) {
                break;
            }
        }
    }

    /* every series, with its key: the values of the labels asked for */

    ngx_shmtx_lock(&mt->shpool->mutex);

    items = ngx_palloc(r->pool, (mt->sh->nseries + 1)
                                * sizeof(ngx_http_aigw_report_item_t));
    if (items == NULL) {
        ngx_shmtx_unlock(&mt->shpool->mutex);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    nitems = 0;

    root = mt->sh->rbtree.root;
    sentinel = mt->sh->rbtree.sentinel;

    if (root != sentinel) {
        for (node = ngx_rbtree_min(root, sentinel);
             node && nitems < mt->sh->nseries;
             node = ngx_rbtree_next(&mt->sh->rbtree, node))
        {
            items[nitems++].series = (ngx_http_aigw_series_t *) node;
        }
    }

    if (mt->sh->overflow->requests) {
        items[nitems++].series = mt->sh->overflow;
    }

    ngx_shmtx_unlock(&mt->shpool->mutex);

    /* a series' labels never change: read without the lock */

    klen = 0;

    for (it = items; it < items + nitems; it++) {
        s = it->series;

        k = ngx_pnalloc(r->pool, nby * (1 + NGX_HTTP_AIGW_LABEL_MAX) + 1);
        if (k == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        it->key.data = k;

        for (j = 0; j < nby; j++) {

            if (idx[j] == NGX_HTTP_AIGW_REPORT_STATUS) {
                n = ngx_sprintf(status, "%ui", s->status) - status;
                d = status;

            } else {
                for (off = 0, i = 0; i < idx[j]; i++) {
                    off += s->len[i];
                }

                n = s->len[idx[j]];
                d = s->data + off;
            }

            *k++ = (u_char) n;
            k = ngx_cpymem(k, d, n);
        }

        it->key.len = k - it->key.data;
        klen += it->key.len;
    }

    if (nitems > 1) {
        ngx_qsort(items, nitems, sizeof(ngx_http_aigw_report_item_t),
                  ngx_http_aigw_report_cmp);
    }

    /* a group at most a series: its labels escaped, its sums */

    size = 512 + nby * 32;

    for (j = 0; j < nby; j++) {
        size += names[j]->len;
    }

    size += nitems * (320 + (size - 512)) + 6 * klen;

    p = ngx_pnalloc(r->pool, size);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q = ngx_cpymem(p, "{\"by\":[", sizeof("{\"by\":[") - 1);

    for (j = 0; j < nby; j++) {
        q = ngx_sprintf(q, "%s\"%V\"", j ? "," : "", names[j]);
    }

    q = ngx_cpymem(q, "],\"groups\":[", sizeof("],\"groups\":[") - 1);

    ngx_memzero(total, sizeof(total));

    for (i = 0; i < nitems; /* void */ ) {

        ngx_memzero(sum, sizeof(sum));

        for (j = i; j < nitems; j++) {
            if (items[j].key.len != items[i].key.len
                || ngx_memcmp(items[j].key.data, items[i].key.data,
                              items[i].key.len)
                   != 0)
            {
                break;
            }

            ngx_http_aigw_report_add(sum, items[j].series);
        }

        for (n = 0; n < 7; n++) {
            total[n] += sum[n];
        }

        q = ngx_cpymem(q, i ? ",{\"labels\":{" : "{\"labels\":{",
                       i ? sizeof(",{\"labels\":{") - 1
                         : sizeof("{\"labels\":{") - 1);

        k = items[i].key.data;

        for (n = 0; n < nby; n++) {
            q = ngx_sprintf(q, "%s\"%V\":\"", n ? "," : "", names[n]);
            q = (u_char *) ngx_escape_json(q, k + 1, *k);
            *q++ = '"';
            k += 1 + *k;
        }

        q = ngx_cpymem(q, "},", 2);
        q = ngx_http_aigw_report_sums(q, sum);

        i = j;
    }

    q = ngx_cpymem(q, "],\"total\":{", sizeof("],\"total\":{") - 1);
    q = ngx_http_aigw_report_sums(q, total);
    *q++ = '}';
    *q++ = LF;

    return ngx_http_aigw_report_send(r, NGX_HTTP_OK, p, q);

invalid:

    p = ngx_pnalloc(r->pool, 256 + 6 * by.len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q = ngx_sprintf(p, "{\"error\":{\"message\":\"Cannot group by \\\"");
    q = (u_char *) ngx_escape_json(q, name.data, name.len);
    q = ngx_sprintf(q, "\\\": a label is named once, and is one of "
                    "the series' labels.\",\"type\":"
                    "\"invalid_request_error\",\"code\":\"invalid_value\"}}\n");

    return ngx_http_aigw_report_send(r, NGX_HTTP_BAD_REQUEST, p, q);
}
