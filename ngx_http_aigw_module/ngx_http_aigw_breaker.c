
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_retry_after.h"


/*
 * A circuit breaker a provider, shared by all workers: after "failures"
 * failed attempts within "window", the provider is skipped for
 * "cooldown" (open), then one request tries it (half-open): its success
 * closes the breaker, its failure opens it again.  A 429 or 503 that asks
 * to wait longer than retry_after_max (Retry-After, x-ratelimit-reset-*)
 * opens it for that long.
 *
 * The providers are known when the zone is made: the zone holds one slot
 * each, in the order of aigw_provider, found by the provider's position;
 * a reload keeps the state of the providers that keep their name.  Times
 * are ngx_current_msec, a monotonic clock all workers share.
 */


#define NGX_HTTP_AIGW_BREAKER_CLOSED     0
#define NGX_HTTP_AIGW_BREAKER_OPEN       1
#define NGX_HTTP_AIGW_BREAKER_HALF_OPEN  2

#define NGX_HTTP_AIGW_BREAKER_NAME       64


typedef struct {
    ngx_uint_t                     state;
    ngx_uint_t                     failures;   /* in the window */
    ngx_msec_t                     window_start;
    ngx_msec_t                     until;      /* open until */
    ngx_msec_t                     probe;      /* half-open request sent */
    ngx_uint_t                     opened;     /* times, for metrics */
    ngx_uint_t                     skipped;    /* requests, for metrics */
    ngx_msec_t                     ewma;       /* time to first byte */
    size_t                         name_len;
    u_char                         name[NGX_HTTP_AIGW_BREAKER_NAME];
} ngx_http_aigw_breaker_node_t;


typedef struct {
    ngx_uint_t                     n;
    ngx_http_aigw_breaker_node_t   nodes[1];
} ngx_http_aigw_breaker_sh_t;


typedef struct {
    ngx_http_aigw_breaker_sh_t    *sh;
    ngx_slab_pool_t               *shpool;
    ngx_http_aigw_main_conf_t     *amcf;

    ngx_uint_t                     failures;
    ngx_msec_t                     window;
    ngx_msec_t                     cooldown;
    ngx_msec_t                     retry_after_max;
} ngx_http_aigw_breaker_t;


static ngx_int_t ngx_http_aigw_breaker_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_aigw_breaker_slots(ngx_http_aigw_breaker_t *bk,
    ngx_http_aigw_breaker_sh_t *sh, ngx_http_aigw_breaker_sh_t *osh);
static ngx_http_aigw_breaker_node_t *ngx_http_aigw_breaker_node(
    ngx_http_aigw_breaker_t *bk, ngx_http_aigw_provider_t *provider);
static void ngx_http_aigw_breaker_open(ngx_http_aigw_breaker_node_t *node,
    ngx_msec_t until);
static ngx_int_t ngx_http_aigw_breaker_status_handler(ngx_http_request_t *r);


static ngx_str_t  ngx_http_aigw_breaker_states[] = {
    ngx_string("closed"),
    ngx_string("open"),
    ngx_string("half_open")
};


/*
 * aigw_breaker zone=name:size [failures=N] [window=T] [cooldown=T]
 *              [retry_after_max=T];
 */

char *
ngx_http_aigw_breaker(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_main_conf_t *amcf = conf;

    size_t                    size;
    ngx_int_t                 n;
    ngx_str_t                *value, name, s;
    ngx_uint_t                i;
    ngx_msec_t                ms, *slot;
    ngx_shm_zone_t           *zone;
    ngx_http_aigw_breaker_t  *bk;

    if (amcf->breaker) {
        return "is duplicate";
    }

    bk = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_breaker_t));
    if (bk == NULL) {
        return NGX_CONF_ERROR;
    }

    bk->amcf = amcf;
    bk->failures = 5;
    bk->window = 30000;
    bk->cooldown = 30000;
    bk->retry_after_max = 5000;

    value = cf->args->elts;
    size = 0;
    ngx_str_null(&name);

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            if (ngx_http_aigw_zone_size(cf, &s, &name, &size) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "failures=", 9) == 0) {
            n = ngx_atoi(value[i].data + 9, value[i].len - 9);
            if (n < 1) {
                goto invalid;
            }

            bk->failures = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "window=", 7) == 0) {
            slot = &bk->window;
            s.data = value[i].data + 7;

        } else if (ngx_strncmp(value[i].data, "cooldown=", 9) == 0) {
            slot = &bk->cooldown;
            s.data = value[i].data + 9;

        } else if (ngx_strncmp(value[i].data, "retry_after_max=", 16) == 0) {
            slot = &bk->retry_after_max;
            s.data = value[i].data + 16;

        } else {
            goto invalid;
        }

        s.len = value[i].data + value[i].len - s.data;
        ms = ngx_parse_time(&s, 0);

        if (ms == (ngx_msec_t) NGX_ERROR) {
            goto invalid;
        }

        *slot = ms;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone=name:size\"",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_aigw_module);
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    zone->init = ngx_http_aigw_breaker_init_zone;
    zone->data = bk;

    amcf->breaker = bk;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


/* one slot a provider; a reload keeps the state of those it keeps */

static ngx_int_t
ngx_http_aigw_breaker_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_aigw_breaker_t  *obk = data;

    void                          *p;
    size_t                         len, size;
    ngx_int_t                      rc;
    ngx_uint_t                     i;
    ngx_http_aigw_breaker_t       *bk;
    ngx_http_aigw_provider_t     **pp;
    ngx_http_aigw_breaker_sh_t    *sh, *osh;

    bk = shm_zone->data;

    pp = bk->amcf->providers.elts;
    size = sizeof(ngx_http_aigw_breaker_sh_t)
           + bk->amcf->providers.nelts * sizeof(ngx_http_aigw_breaker_node_t);

    if (obk) {
        bk->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
        osh = obk->sh;

    } else {
        rc = ngx_http_aigw_zone_shared(shm_zone, size, "breaker", &p,
                                       &bk->shpool);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK) {
            /* the first start: every breaker closed */
            bk->sh = p;
            ngx_http_aigw_breaker_slots(bk, bk->sh, NULL);
            return NGX_OK;
        }

        /* NGX_DONE: the zone exists, another process's */
        osh = p;
    }

    /* the same providers: the same slots */

    if (osh->n == bk->amcf->providers.nelts) {
        for (i = 0; i < osh->n; i++) {
            len = ngx_min(pp[i]->name.len, NGX_HTTP_AIGW_BREAKER_NAME);

            if (osh->nodes[i].name_len != len
                || ngx_strncmp(osh->nodes[i].name, pp[i]->name.data, len)
                   != 0)
            {
                break;
            }
        }

        if (i == osh->n) {
            bk->sh = osh;
            return NGX_OK;
        }
    }

    /*
     * other providers: new slots, the state of those kept copied; the old
     * slots stay, as the old workers use them until they exit
     */

    sh = ngx_slab_calloc(bk->shpool, size);
    if (sh == NULL) {
        return NGX_ERROR;
    }

    ngx_http_aigw_breaker_slots(bk, sh, osh);

    bk->sh = sh;
    bk->shpool->data = sh;

    return NGX_OK;
}


/* a slot a provider, named, with the state of its old slot if any */

static void
ngx_http_aigw_breaker_slots(ngx_http_aigw_breaker_t *bk,
    ngx_http_aigw_breaker_sh_t *sh, ngx_http_aigw_breaker_sh_t *osh)
{
    size_t                         len;
    ngx_uint_t                     i, j;
    ngx_http_aigw_provider_t     **pp;
    ngx_http_aigw_breaker_node_t  *node;

    pp = bk->amcf->providers.elts;

    sh->n = bk->amcf->providers.nelts;

    for (i = 0; i < sh->n; i++) {
        node = &sh->nodes[i];
        len = ngx_min(pp[i]->name.len, NGX_HTTP_AIGW_BREAKER_NAME);
        node->name_len = len;
        ngx_memcpy(node->name, pp[i]->name.data, len);

        for (j = 0; osh && j < osh->n; j++) {
            if (osh->nodes[j].name_len == len
                && ngx_strncmp(osh->nodes[j].name, node->name, len) == 0)
            {
                *node = osh->nodes[j];
                break;
            }
        }
    }
}


static ngx_http_aigw_breaker_node_t *
ngx_http_aigw_breaker_node(ngx_http_aigw_breaker_t *bk,
    ngx_http_aigw_provider_t *provider)
{
    ngx_uint_t                  i;
    ngx_http_aigw_provider_t  **pp;

    pp = bk->amcf->providers.elts;

    for (i = 0; i < bk->amcf->providers.nelts && i < bk->sh->n; i++) {
        if (pp[i] == provider) {
            return &bk->sh->nodes[i];
        }
    }

    return NULL;
}


/*
 * May the provider be tried?  NGX_OK, or NGX_DECLINED while its breaker
 * is open (or half-open with its one request out).
 */

ngx_int_t
ngx_http_aigw_breaker_allow(ngx_http_request_t *r,
    ngx_http_aigw_provider_t *provider)
{
    ngx_int_t                      rc;
    ngx_msec_t                     now;
    ngx_http_aigw_breaker_t       *bk;
    ngx_http_aigw_main_conf_t     *amcf;
    ngx_http_aigw_breaker_node_t  *node;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    bk = amcf->breaker;

    if (bk == NULL) {
        return NGX_OK;
    }

    node = ngx_http_aigw_breaker_node(bk, provider);
    if (node == NULL) {
        return NGX_OK;
    }

    now = ngx_current_msec;
    rc = NGX_OK;

    ngx_shmtx_lock(&bk->shpool->mutex);

    switch (node->state) {

    case NGX_HTTP_AIGW_BREAKER_OPEN:

        if ((ngx_msec_int_t) (now - node->until) < 0) {
            rc = NGX_DECLINED;
            break;
        }

        /* the cool-down is over: this request tries the provider */

        node->state = NGX_HTTP_AIGW_BREAKER_HALF_OPEN;
        node->probe = now;
        break;

    case NGX_HTTP_AIGW_BREAKER_HALF_OPEN:

        /* one request at a time, unless the one sent is long lost */

        if ((ngx_msec_int_t) (now - node->probe) < (ngx_msec_int_t)
                                                    bk->cooldown)
        {
            rc = NGX_DECLINED;
            break;
        }

        node->probe = now;
        break;

    default:
        break;
    }

    if (rc == NGX_DECLINED) {
        node->skipped++;
    }

    ngx_shmtx_unlock(&bk->shpool->mutex);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: provider \"%V\" skipped, its breaker is %V",
                      &provider->name,
                      &ngx_http_aigw_breaker_states[node->state]);
    }

    return rc;
}


/* how an attempt went: failed or not */

void
ngx_http_aigw_breaker_record(ngx_http_request_t *r,
    ngx_http_aigw_provider_t *provider, ngx_uint_t failed)
{
    ngx_msec_t                     now, wait;
    ngx_uint_t                     state, opened;
    ngx_http_aigw_breaker_t       *bk;
    ngx_http_aigw_main_conf_t     *amcf;
    ngx_http_aigw_breaker_node_t  *node;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    bk = amcf->breaker;

    if (bk == NULL) {
        return;
    }

    node = ngx_http_aigw_breaker_node(bk, provider);
    if (node == NULL) {
        return;
    }

    /* a wait the provider asked for, read before the lock */
    wait = failed ? ngx_http_aigw_breaker_retry_after(r) : 0;

    now = ngx_current_msec;
    opened = 0;

    ngx_shmtx_lock(&bk->shpool->mutex);

    state = node->state;

    if (!failed) {
        if (state == NGX_HTTP_AIGW_BREAKER_HALF_OPEN) {
            node->state = NGX_HTTP_AIGW_BREAKER_CLOSED;
            node->failures = 0;
        }

        ngx_shmtx_unlock(&bk->shpool->mutex);

        if (state == NGX_HTTP_AIGW_BREAKER_HALF_OPEN) {
            ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                          "aigw: provider \"%V\" answered, its breaker is "
                          "closed", &provider->name);
        }

        return;
    }

    if (wait > bk->retry_after_max) {
        ngx_http_aigw_breaker_open(node, now + wait);
        opened = wait;

    } else if (state == NGX_HTTP_AIGW_BREAKER_HALF_OPEN) {
        ngx_http_aigw_breaker_open(node, now + bk->cooldown);
        opened = bk->cooldown;

    } else if (state == NGX_HTTP_AIGW_BREAKER_CLOSED) {

        if (node->failures == 0
            || now - node->window_start > bk->window)
        {
            node->window_start = now;
            node->failures = 0;
        }

        if (++node->failures >= bk->failures) {
            ngx_http_aigw_breaker_open(node, now + bk->cooldown);
            opened = bk->cooldown;
        }
    }

    ngx_shmtx_unlock(&bk->shpool->mutex);

    if (opened) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: provider \"%V\" is out of rotation for %M ms "
                      "(breaker open%s)", &provider->name, opened,
                      wait > bk->retry_after_max ? ", as it asked" : "");
    }
}


/*
 * The time an attempt took to its first byte (a stream's first event):
 * an exponentially weighted moving average, 1/8 the new sample, shared.
 */

void
ngx_http_aigw_breaker_latency(ngx_http_request_t *r,
    ngx_http_aigw_provider_t *provider, ngx_msec_t ms)
{
    ngx_http_aigw_breaker_t       *bk;
    ngx_http_aigw_main_conf_t     *amcf;
    ngx_http_aigw_breaker_node_t  *node;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    bk = amcf->breaker;

    if (bk == NULL) {
        return;
    }

    node = ngx_http_aigw_breaker_node(bk, provider);
    if (node == NULL) {
        return;
    }

    /* 0 is "not measured yet": a sample is at least 1 ms */
    ms = ngx_max(ms, 1);

    ngx_shmtx_lock(&bk->shpool->mutex);

    node->ewma = node->ewma ? (node->ewma * 7 + ms) / 8 : ms;

    ngx_shmtx_unlock(&bk->shpool->mutex);
}


ngx_msec_t
ngx_http_aigw_breaker_ewma(ngx_http_request_t *r,
    ngx_http_aigw_provider_t *provider)
{
    ngx_http_aigw_breaker_t       *bk;
    ngx_http_aigw_main_conf_t     *amcf;
    ngx_http_aigw_breaker_node_t  *node;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    bk = amcf->breaker;

    if (bk == NULL) {
        return 0;
    }

    node = ngx_http_aigw_breaker_node(bk, provider);

    /* one word, read without the lock: a torn read cannot happen */
    return node ? node->ewma : 0;
}


static void
ngx_http_aigw_breaker_open(ngx_http_aigw_breaker_node_t *node,
    ngx_msec_t until)
{
    node->state = NGX_HTTP_AIGW_BREAKER_OPEN;
    node->until = until;
    node->failures = 0;
    node->opened++;
}


/*
 * The wait a 429 or 503 asks for: Retry-After in seconds, or OpenAI's
 * x-ratelimit-reset-requests / -tokens ("1s", "6m0s", "20ms"), the
 * longest; 0 when none.
 */

ngx_msec_t
ngx_http_aigw_breaker_retry_after(ngx_http_request_t *r)
{
    ngx_uint_t            i;
    ngx_msec_t            wait, ms;
    ngx_list_part_t      *part;
    ngx_table_elt_t      *h;
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (u == NULL
        || (u->headers_in.status_n != NGX_HTTP_TOO_MANY_REQUESTS
            && u->headers_in.status_n != NGX_HTTP_SERVICE_UNAVAILABLE))
    {
        return 0;
    }

    wait = 0;
    part = &u->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0) {
            continue;
        }

        if (h[i].key.len == sizeof("retry-after") - 1
            && ngx_strncasecmp(h[i].lowcase_key, (u_char *) "retry-after",
                               h[i].key.len)
               == 0)
        {
            ms = ngx_http_aigw_retry_after(h[i].value.data, h[i].value.len);

        } else if (h[i].key.len > sizeof("x-ratelimit-reset-") - 1
                   && ngx_strncmp(h[i].lowcase_key, "x-ratelimit-reset-",
                                  sizeof("x-ratelimit-reset-") - 1)
                      == 0)
        {
            ms = ngx_http_aigw_retry_after_duration(h[i].value.data,
                                                    h[i].value.len);

        } else {
            continue;
        }

        wait = ngx_max(wait, ms);
    }

    return wait;
}


/* Prometheus lines: the state and the times opened, a provider */

size_t
ngx_http_aigw_breaker_metrics_size(ngx_http_aigw_main_conf_t *amcf)
{
    ngx_http_aigw_breaker_t  *bk = amcf->breaker;

    if (bk == NULL) {
        return 0;
    }

    return 512 + bk->amcf->providers.nelts
                 * 3 * (2 * NGX_HTTP_AIGW_BREAKER_NAME + 96);
}


u_char *
ngx_http_aigw_breaker_metrics(ngx_http_aigw_main_conf_t *amcf, u_char *p,
    u_char *last)
{
    ngx_uint_t                     i;
    ngx_http_aigw_breaker_t       *bk = amcf->breaker;
    ngx_http_aigw_breaker_node_t  *node;

    if (bk == NULL || bk->sh == NULL) {
        return p;
    }

    p = ngx_slprintf(p, last,
                     "# HELP aigw_breaker_state Circuit breaker of a "
                     "provider: 0 closed, 1 open, 2 half-open.\n"
                     "# TYPE aigw_breaker_state gauge\n");

    ngx_shmtx_lock(&bk->shpool->mutex);

    for (i = 0; i < bk->sh->n; i++) {
        node = &bk->sh->nodes[i];
        p = ngx_slprintf(p, last,
                         "aigw_breaker_state{provider=\"%*s\"} %ui\n",
                         node->name_len, node->name, node->state);
    }

    p = ngx_slprintf(p, last,
                     "# HELP aigw_breaker_opened_total Times a provider's "
                     "breaker opened.\n"
                     "# TYPE aigw_breaker_opened_total counter\n");

    for (i = 0; i < bk->sh->n; i++) {
        node = &bk->sh->nodes[i];
        p = ngx_slprintf(p, last,
                         "aigw_breaker_opened_total{provider=\"%*s\"} %ui\n",
                         node->name_len, node->name, node->opened);
    }

    p = ngx_slprintf(p, last,
                     "# HELP aigw_breaker_skipped_total Requests that "
                     "skipped a provider out of rotation.\n"
                     "# TYPE aigw_breaker_skipped_total counter\n");

    for (i = 0; i < bk->sh->n; i++) {
        node = &bk->sh->nodes[i];
        p = ngx_slprintf(p, last,
                         "aigw_breaker_skipped_total{provider=\"%*s\"} %ui\n",
                         node->name_len, node->name, node->skipped);
    }

    ngx_shmtx_unlock(&bk->shpool->mutex);

    return p;
}


/* aigw_breaker_status; */

char *
ngx_http_aigw_breaker_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_aigw_breaker_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigw_breaker_status_handler(ngx_http_request_t *r)
{
    u_char                        *p;
    size_t                         size;
    ngx_int_t                      rc;
    ngx_buf_t                     *b;
    ngx_uint_t                     i;
    ngx_msec_t                     now, left;
    ngx_chain_t                    out;
    ngx_http_aigw_breaker_t       *bk;
    ngx_http_aigw_main_conf_t     *amcf;
    ngx_http_aigw_breaker_node_t  *node;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    bk = amcf->breaker;

    if (bk == NULL || bk->sh == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    size = sizeof("{\"providers\":[]}\n")
           + bk->sh->n * (2 * NGX_HTTP_AIGW_BREAKER_NAME + 192);

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    now = ngx_current_msec;
    p = ngx_cpymem(b->last, "{\"providers\":[", sizeof("{\"providers\":[") - 1);

    ngx_shmtx_lock(&bk->shpool->mutex);

    for (i = 0; i < bk->sh->n; i++) {
        node = &bk->sh->nodes[i];

        left = 0;

        if (node->state == NGX_HTTP_AIGW_BREAKER_OPEN
            && (ngx_msec_int_t) (node->until - now) > 0)
        {
            left = node->until - now;
        }

        /* provider names are nginx configuration words: no JSON escapes */

        p = ngx_slprintf(p, b->end,
                         "%s{\"name\":\"%*s\",\"state\":\"%V\","
                         "\"failures\":%ui,\"retry_in_ms\":%M,"
                         "\"opened\":%ui,\"skipped\":%ui,"
                         "\"latency_ms\":%M}",
                         i ? "," : "", node->name_len, node->name,
                         &ngx_http_aigw_breaker_states[node->state],
                         node->failures, left, node->opened, node->skipped,
                         node->ewma);
    }

    ngx_shmtx_unlock(&bk->shpool->mutex);

    p = ngx_slprintf(p, b->end, "]}\n");

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
