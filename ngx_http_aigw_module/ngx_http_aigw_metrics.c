
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * Counters by tenant, model, provider and status, in a shared zone that
 * all workers write and that outlives "nginx -s reload".  A series is an
 * rbtree node found under the zone's mutex; its counters are then added
 * to atomically.  Nodes are never freed: past max_series, or when the
 * zone is full, requests are counted in one overflow series.
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
#define NGX_HTTP_AIGW_ERR_KINDS         10

#define NGX_HTTP_AIGW_LAT_BUCKETS       12
#define NGX_HTTP_AIGW_TTFT_BUCKETS      10


typedef struct {
    ngx_rbtree_node_t               node;

    ngx_atomic_t                    requests;
    ngx_atomic_t                    prompt_tokens;
    ngx_atomic_t                    completion_tokens;
    ngx_atomic_t                    cached_tokens;
    ngx_atomic_t                    reasoning_tokens;
    ngx_atomic_t                    cost;          /* micro-dollars */
    ngx_atomic_t                    fallbacks;
    ngx_atomic_t                    estimated;
    ngx_atomic_t                    errors[NGX_HTTP_AIGW_ERR_KINDS];

    ngx_atomic_t                    latency[NGX_HTTP_AIGW_LAT_BUCKETS];
    ngx_atomic_t                    latency_sum;   /* milliseconds */
    ngx_atomic_t                    ttft[NGX_HTTP_AIGW_TTFT_BUCKETS];
    ngx_atomic_t                    ttft_sum;

    ngx_uint_t                      status;
    u_char                          len[3];        /* tenant, model, prov */
    u_char                          data[1];
} ngx_http_aigw_series_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_uint_t                      nseries;
    ngx_atomic_t                    overflowed;
    ngx_http_aigw_series_t         *overflow;
} ngx_http_aigw_metrics_sh_t;


typedef struct {
    ngx_http_aigw_metrics_sh_t     *sh;
    ngx_slab_pool_t                *shpool;
    ngx_uint_t                      max_series;
} ngx_http_aigw_metrics_t;


static ngx_int_t ngx_http_aigw_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_aigw_metrics_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_aigw_series_t *ngx_http_aigw_metrics_series(
    ngx_http_aigw_metrics_t *mt, ngx_str_t *labels, ngx_uint_t status,
    ngx_log_t *log);
static ngx_uint_t ngx_http_aigw_metrics_error_kind(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_uint_t status);
static ngx_int_t ngx_http_aigw_metrics_handler(ngx_http_request_t *r);
static u_char *ngx_http_aigw_metrics_labels(u_char *p,
    ngx_http_aigw_series_t *s);


static ngx_uint_t  ngx_http_aigw_lat_bounds[NGX_HTTP_AIGW_LAT_BUCKETS - 1] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000
};

static ngx_uint_t  ngx_http_aigw_ttft_bounds[NGX_HTTP_AIGW_TTFT_BUCKETS - 1] = {
    25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};

static const char  *ngx_http_aigw_err_names[NGX_HTTP_AIGW_ERR_KINDS] = {
    "", "auth", "invalid_request", "rate_limited", "upstream_error",
    "upstream_timeout", "provider_4xx", "provider_5xx", "stream_cut",
    "internal"
};


/* aigw_metrics_zone name:size [max_series=N]; */

char *
ngx_http_aigw_metrics_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_main_conf_t *amcf = conf;

    u_char                   *p;
    ssize_t                   size;
    ngx_str_t                *value, name, s;
    ngx_int_t                 n;
    ngx_uint_t                i;
    ngx_http_aigw_metrics_t  *mt;

    if (amcf->metrics) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\", must be \"name:size\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\", at least %uz",
                           &value[1], 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    mt = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_metrics_t));
    if (mt == NULL) {
        return NGX_CONF_ERROR;
    }

    mt->max_series = 10000;

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

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return ngx_http_aigw_metrics_add_zone(cf, amcf, mt, &name, size);
}


char *
ngx_http_aigw_metrics_add_zone(ngx_conf_t *cf,
    ngx_http_aigw_main_conf_t *amcf, void *data, ngx_str_t *name,
    size_t size)
{
    ngx_http_aigw_metrics_t  *mt = data;

    if (mt == NULL) {
        mt = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_metrics_t));
        if (mt == NULL) {
            return NGX_CONF_ERROR;
        }

        mt->max_series = 10000;
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

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigw_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_aigw_metrics_t  *omt = data;

    size_t                    len;
    ngx_http_aigw_metrics_t  *mt;

    mt = shm_zone->data;

    if (omt) {
        /* a reload: the counters go on */
        mt->sh = omt->sh;
        mt->shpool = omt->shpool;
        return NGX_OK;
    }

    mt->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        mt->sh = mt->shpool->data;
        return NGX_OK;
    }

    mt->sh = ngx_slab_calloc(mt->shpool, sizeof(ngx_http_aigw_metrics_sh_t));
    if (mt->sh == NULL) {
        return NGX_ERROR;
    }

    mt->shpool->data = mt->sh;

    ngx_rbtree_init(&mt->sh->rbtree, &mt->sh->sentinel,
                    ngx_http_aigw_metrics_insert);

    mt->sh->overflow = ngx_slab_calloc(mt->shpool,
                                       sizeof(ngx_http_aigw_series_t)
                                       + sizeof("_overflow") * 3);
    if (mt->sh->overflow == NULL) {
        return NGX_ERROR;
    }

    mt->sh->overflow->len[0] = sizeof("_overflow") - 1;
    mt->sh->overflow->len[1] = sizeof("_overflow") - 1;
    mt->sh->overflow->len[2] = sizeof("_overflow") - 1;
    ngx_memcpy(mt->sh->overflow->data, "_overflow_overflow_overflow",
               3 * (sizeof("_overflow") - 1));

    len = sizeof(" in aigw metrics zone \"\"") + shm_zone->shm.name.len;

    mt->shpool->log_ctx = ngx_slab_alloc(mt->shpool, len);
    if (mt->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(mt->shpool->log_ctx, " in aigw metrics zone \"%V\"%Z",
                &shm_zone->shm.name);

    mt->shpool->log_nomem = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_metrics_cmp(ngx_http_aigw_series_t *a,
    ngx_http_aigw_series_t *b)
{
    size_t  la, lb;

    if (a->status != b->status) {
        return a->status < b->status ? -1 : 1;
    }

    la = a->len[0] + a->len[1] + a->len[2];
    lb = b->len[0] + b->len[1] + b->len[2];

    if (ngx_memcmp(a->len, b->len, 3) != 0) {
        return ngx_memcmp(a->len, b->len, 3);
    }

    return ngx_memcmp(a->data, b->data, ngx_min(la, lb));
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
    u_char                   key[sizeof(ngx_http_aigw_series_t) + 3 * 255];
    uint32_t                 hash;
    ngx_int_t                rc;
    ngx_uint_t               i;
    ngx_rbtree_node_t       *node, *sentinel;
    ngx_http_aigw_series_t  *s, *probe;

    probe = (ngx_http_aigw_series_t *) key;
    probe->status = status;

    len = 0;

    for (i = 0; i < 3; i++) {
        probe->len[i] = (u_char) ngx_min(labels[i].len, 255);

        if (probe->len[i]) {
            ngx_memcpy(probe->data + len, labels[i].data, probe->len[i]);
        }

        len += probe->len[i];
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
    ngx_memcpy(s->len, probe->len, 3);
    ngx_memcpy(s->data, probe->data, len);

    ngx_rbtree_insert(&mt->sh->rbtree, &s->node);
    mt->sh->nseries++;

    ngx_shmtx_unlock(&mt->shpool->mutex);

    return s;
}


/* the log phase: what the request used, cost and took */

ngx_int_t
ngx_http_aigw_metrics_log_handler(ngx_http_request_t *r)
{
    ngx_str_t                   labels[3];
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

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    mt = amcf->metrics;

    if (mt == NULL || mt->sh == NULL
        || ctx->endpoint == NGX_HTTP_AIGW_EP_MODELS
        || ctx->endpoint == NGX_HTTP_AIGW_EP_MODEL)
    {
        return NGX_OK;
    }

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (r->connection->error && status < NGX_HTTP_BAD_REQUEST) {
        status = 499;
    }

    m = ctx->attempts ? ctx->candidates[ctx->last] : NULL;

    labels[0] = ctx->tenant;
    labels[1] = m ? m->name : ctx->model;
    ngx_str_null(&labels[2]);

    if (m) {
        labels[2] = m->provider->name;
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
        return (ctx->sse_buf && !ctx->sse_done)
               ? NGX_HTTP_AIGW_ERR_STREAM_CUT : NGX_HTTP_AIGW_ERR_NONE;
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


#define ngx_http_aigw_metrics_label_max  (3 * 2 * 255 + 64)


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
ngx_http_aigw_metrics_labels(u_char *p, ngx_http_aigw_series_t *s)
{
    u_char  *d;

    d = s->data;

    p = ngx_cpymem(p, "tenant=\"", sizeof("tenant=\"") - 1);
    p = ngx_http_aigw_metrics_escape(p, d, s->len[0]);
    d += s->len[0];

    p = ngx_cpymem(p, "\",model=\"", sizeof("\",model=\"") - 1);
    p = ngx_http_aigw_metrics_escape(p, d, s->len[1]);
    d += s->len[1];

    p = ngx_cpymem(p, "\",provider=\"", sizeof("\",provider=\"") - 1);
    p = ngx_http_aigw_metrics_escape(p, d, s->len[2]);

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
      "input, reasoning (part of output)." },
    { "aigw_cost_dollars_total", "counter",
      "Cost in US dollars, from the prices of aigw_model." },
    { "aigw_errors_total", "counter",
      "Failed requests by kind." },
    { "aigw_fallbacks_total", "counter",
      "Candidates of a route that failed before one answered." },
    { "aigw_usage_estimated_total", "counter",
      "Requests whose tokens were estimated, the provider reporting none." },
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
ngx_http_aigw_metrics_family(u_char *p, ngx_uint_t f,
    ngx_http_aigw_series_t *s)
{
    u_char       labels[ngx_http_aigw_metrics_label_max];
    u_char      *l;
    uint64_t     acc;
    ngx_uint_t   i;

    static const char  *types[] = { "input", "output", "cached",
                                    "reasoning" };

    l = ngx_http_aigw_metrics_labels(labels, s);

#define lbl  (size_t) (l - labels), labels

    switch (f) {

    case 0:
        return ngx_sprintf(p, "aigw_requests_total{%*s} %uA\n", lbl,
                           s->requests);

    case 1:
        for (i = 0; i < 4; i++) {
            acc = i == 0 ? s->prompt_tokens
                  : i == 1 ? s->completion_tokens
                  : i == 2 ? s->cached_tokens : s->reasoning_tokens;

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
#define NGX_HTTP_AIGW_METRICS_LINES  48


static ngx_int_t
ngx_http_aigw_metrics_handler(ngx_http_request_t *r)
{
    size_t                      size;
    u_char                     *p;
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_uint_t                  f;
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

    /* room for the quotas' 37 lines too */
    size = 4096 + NGX_HTTP_AIGW_METRICS_LINES * (192 + 3 * 2 * 9)
           + 37 * 128 + ngx_http_aigw_pii_metrics_size(amcf);

    if (root != sentinel) {
        for (node = ngx_rbtree_min(root, sentinel);
             node;
             node = ngx_rbtree_next(&mt->sh->rbtree, node))
        {
            s = (ngx_http_aigw_series_t *) node;
            size += NGX_HTTP_AIGW_METRICS_LINES
                    * (192 + 2 * (s->len[0] + s->len[1] + s->len[2]));
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
                p = ngx_http_aigw_metrics_family(p, f,
                                        (ngx_http_aigw_series_t *) node);
            }
        }

        if (mt->sh->overflow->requests) {
            p = ngx_http_aigw_metrics_family(p, f, mt->sh->overflow);
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
