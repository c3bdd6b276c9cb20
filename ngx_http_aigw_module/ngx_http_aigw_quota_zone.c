
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_quota.h"


/*
 * The counters of quotas in shared memory, as ngx_http_limit_req_module
 * keeps its own: slab, rbtree, LRU queue, kept across a reload.  One
 * critical section checks every counter of a request and takes from all,
 * or from none.
 *
 * Per minute: a sliding window of 60 one-second slots, exact to the
 * second at its edges.  Per day and budgets: calendar periods in UTC.
 */


#define NGX_HTTP_AIGW_QUOTA_SLOTS   60


/* the counters of one key, tenant, ...: about 1 KB with its name */

typedef struct {
    u_char                          color;
    u_char                          scope;
    u_short                         len;
    ngx_queue_t                     queue;
    ngx_uint_t                      refs;       /* reservations held */
    ngx_uint_t                      inflight;

    time_t                          second;     /* of the newest slot */
    ngx_uint_t                      requests;   /* in the last minute */
    uint64_t                        tokens;

    time_t                          day;        /* days since the epoch */
    ngx_uint_t                      day_requests;
    uint64_t                        day_tokens;

    time_t                          period[NGX_HTTP_AIGW_PERIODS];
    uint64_t                        spend[NGX_HTTP_AIGW_PERIODS];

    uint32_t                        slot_requests[NGX_HTTP_AIGW_QUOTA_SLOTS];
    uint64_t                        slot_tokens[NGX_HTTP_AIGW_QUOTA_SLOTS];

    u_char                          name[1];
} ngx_http_aigw_quota_node_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     queue;      /* least used last */

    /* decisions, for the metrics */
    ngx_uint_t                      admitted;
    ngx_uint_t                      refused[NGX_HTTP_AIGW_SCOPES]
                                           [NGX_HTTP_AIGW_LIMITS];
} ngx_http_aigw_quota_sh_t;


typedef struct {
    ngx_http_aigw_quota_sh_t       *sh;
    ngx_slab_pool_t                *shpool;
} ngx_http_aigw_quota_zone_t;


static ngx_int_t ngx_http_aigw_quota_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_aigw_quota_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_rbtree_node_t *ngx_http_aigw_quota_find(
    ngx_http_aigw_quota_zone_t *zone, ngx_uint_t scope, ngx_str_t *id,
    time_t now);
static ngx_rbtree_node_t *ngx_http_aigw_quota_lookup(
    ngx_http_aigw_quota_zone_t *zone, ngx_uint_t scope, ngx_str_t *id,
    time_t now);
static void ngx_http_aigw_quota_advance(ngx_http_aigw_quota_node_t *qn,
    time_t now);
static ngx_int_t ngx_http_aigw_quota_check(ngx_http_aigw_quota_t *q,
    ngx_http_aigw_quota_hold_t *h, time_t now);
static void ngx_http_aigw_quota_take(ngx_http_aigw_quota_t *q,
    ngx_http_aigw_quota_node_t *qn);
static void ngx_http_aigw_quota_tell(ngx_http_aigw_quota_t *q,
    ngx_http_aigw_quota_hold_t *h, time_t now);
static time_t ngx_http_aigw_quota_newest(ngx_http_aigw_quota_node_t *qn,
    ngx_uint_t tokens, time_t now);
static time_t ngx_http_aigw_quota_minute_reset(
    ngx_http_aigw_quota_node_t *qn, ngx_uint_t tokens, uint64_t need,
    time_t now);


/* aigw_quota_zone NAME:SIZE; */

char *
ngx_http_aigw_quota_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_main_conf_t *amcf = conf;

    size_t      size;
    ngx_str_t  *value, name;

    if (amcf->quota_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_aigw_zone_size(cf, &value[1], &name, &size) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_aigw_quota_add_zone(cf, amcf, &name, size);
}


char *
ngx_http_aigw_quota_add_zone(ngx_conf_t *cf, ngx_http_aigw_main_conf_t *amcf,
    ngx_str_t *name, size_t size)
{
    ngx_http_aigw_quota_zone_t  *zone;

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_quota_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    amcf->quota_zone = ngx_shared_memory_add(cf, name, size,
                                             &ngx_http_aigw_module);
    if (amcf->quota_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (amcf->quota_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", name);
        return NGX_CONF_ERROR;
    }

    amcf->quota_zone->init = ngx_http_aigw_quota_init_zone;
    amcf->quota_zone->data = zone;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigw_quota_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_aigw_quota_zone_t  *ozone = data;

    void                        *sh;
    ngx_int_t                    rc;
    ngx_http_aigw_quota_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        /* a reload: what was used stays used */
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    rc = ngx_http_aigw_zone_shared(shm_zone, sizeof(ngx_http_aigw_quota_sh_t),
                                   "quota", &sh, &zone->shpool);
    zone->sh = sh;

    if (rc != NGX_OK) {
        return (rc == NGX_DONE) ? NGX_OK : NGX_ERROR;
    }

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_http_aigw_quota_rbtree_insert);

    ngx_queue_init(&zone->sh->queue);

    return NGX_OK;
}


static void
ngx_http_aigw_quota_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t           **p;
    ngx_http_aigw_quota_node_t   *qn, *qnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            qn = (ngx_http_aigw_quota_node_t *) &node->color;
            qnt = (ngx_http_aigw_quota_node_t *) &temp->color;

            p = (qn->scope < qnt->scope
                 || (qn->scope == qnt->scope
                     && ngx_memn2cmp(qn->name, qnt->name, qn->len, qnt->len)
                        < 0))
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


/* every counter of a request checked, then taken from all or none */

ngx_int_t
ngx_http_aigw_quota_zone_reserve(ngx_http_aigw_quota_t *q, time_t now)
{
    ngx_int_t                    rc;
    ngx_uint_t                   i;
    ngx_rbtree_node_t           *node;
    ngx_http_aigw_quota_hold_t  *h;
    ngx_http_aigw_quota_zone_t  *zone;

    zone = q->zone;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = 0; i < q->nhold; i++) {
        h = &q->hold[i];

        h->node = ngx_http_aigw_quota_lookup(zone, h->scope, &h->id, now);

        if (h->node == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            return NGX_BUSY;
        }
    }

    rc = NGX_OK;

    for (i = 0; i < q->nhold; i++) {
        if (ngx_http_aigw_quota_check(q, &q->hold[i], now) != NGX_OK) {
            q->refused_scope = q->hold[i].scope;
            q->refused = 1;
            rc = NGX_DECLINED;
            break;
        }
    }

    if (rc == NGX_OK) {
        zone->sh->admitted++;

    } else {
        zone->sh->refused[q->refused_scope][q->refused_limit]++;
    }

    if (rc == NGX_OK) {
        for (i = 0; i < q->nhold; i++) {
            node = q->hold[i].node;
            ngx_http_aigw_quota_take(q, (ngx_http_aigw_quota_node_t *)
                                        &node->color);
        }
    }

    for (i = 0; i < q->nhold; i++) {
        ngx_http_aigw_quota_tell(q, &q->hold[i], now);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


/*
 * The reservation becomes what was used, in the slot, day and periods
 * it was taken from, if they still count
 */

void
ngx_http_aigw_quota_zone_settle(ngx_http_aigw_quota_t *q, int64_t dt,
    int64_t dc, time_t now)
{
    ngx_uint_t                   i, p, slot;
    ngx_http_aigw_quota_zone_t  *zone;
    ngx_http_aigw_quota_node_t  *qn;

    zone = q->zone;
    slot = q->second % NGX_HTTP_AIGW_QUOTA_SLOTS;

#define ngx_http_aigw_quota_add(v, d)                                         \
    (v) = ((d) < 0 && (uint64_t) -(d) > (uint64_t) (v)) ? 0 : (v) + (d)

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = 0; i < q->nhold; i++) {
        qn = (ngx_http_aigw_quota_node_t *)
                 &((ngx_rbtree_node_t *) q->hold[i].node)->color;

        ngx_http_aigw_quota_advance(qn, now);

        if (now - q->second < NGX_HTTP_AIGW_QUOTA_SLOTS) {
            ngx_http_aigw_quota_add(qn->tokens, dt);
            ngx_http_aigw_quota_add(qn->slot_tokens[slot], dt);
        }

        if (qn->day == q->day) {
            ngx_http_aigw_quota_add(qn->day_tokens, dt);
        }

        for (p = 0; p < NGX_HTTP_AIGW_PERIODS; p++) {
            if (qn->period[p] == q->period[p]) {
                ngx_http_aigw_quota_add(qn->spend[p], dc);
            }
        }

        qn->inflight--;
        qn->refs--;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

#undef ngx_http_aigw_quota_add
}


/* the decisions, for aigw_metrics: a refusal once it happened */

u_char *
ngx_http_aigw_quota_zone_metrics(void *data, u_char *p, u_char *last)
{
    ngx_http_aigw_quota_zone_t *zone = data;

    ngx_uint_t  s, l;

    ngx_shmtx_lock(&zone->shpool->mutex);

    p = ngx_slprintf(p, last, "# HELP aigw_quota_decisions_total Requests "
                     "admitted by the limits, and refused by each.\n"
                     "# TYPE aigw_quota_decisions_total counter\n"
                     "aigw_quota_decisions_total{decision=\"admitted\"} "
                     "%ui\n", zone->sh->admitted);

    for (s = 0; s < NGX_HTTP_AIGW_SCOPES; s++) {
        for (l = 0; l < NGX_HTTP_AIGW_LIMITS; l++) {
            if (zone->sh->refused[s][l] == 0) {
                continue;
            }

            p = ngx_slprintf(p, last, "aigw_quota_decisions_total{"
                             "decision=\"refused\",scope=\"%V\","
                             "limit=\"%s\"} %ui\n",
                             &ngx_http_aigw_quota_scopes[s],
                             ngx_http_aigw_quota_limit_names[l],
                             zone->sh->refused[s][l]);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return p;
}


/* a counter as it stands, for aigw_usage */

void
ngx_http_aigw_quota_zone_read(void *data, ngx_uint_t scope, ngx_str_t *id,
    time_t now, ngx_http_aigw_quota_counts_t *counts)
{
    ngx_http_aigw_quota_zone_t *zone = data;

    ngx_uint_t                   p;
    ngx_rbtree_node_t           *node;
    ngx_http_aigw_quota_node_t  *qn;

    ngx_memzero(counts, sizeof(ngx_http_aigw_quota_counts_t));

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = ngx_http_aigw_quota_find(zone, scope, id, now);

    if (node) {
        qn = (ngx_http_aigw_quota_node_t *) &node->color;

        counts->requests_minute = qn->requests;
        counts->tokens_minute = qn->tokens;
        counts->requests_day = qn->day_requests;
        counts->tokens_day = qn->day_tokens;
        counts->inflight = qn->inflight;

        for (p = 0; p < NGX_HTTP_AIGW_PERIODS; p++) {
            counts->spend[p] = qn->spend[p];
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/* a counter by scope and id, moved to the front of the queue */

static ngx_rbtree_node_t *
ngx_http_aigw_quota_find(ngx_http_aigw_quota_zone_t *zone, ngx_uint_t scope,
    ngx_str_t *id, time_t now)
{
    uint32_t                     hash;
    ngx_int_t                    rc;
    ngx_rbtree_node_t           *node, *sentinel;
    ngx_http_aigw_quota_node_t  *qn;

    hash = ngx_crc32_short(id->data, id->len) ^ (uint32_t) scope;

    node = zone->sh->rbtree.root;
    sentinel = zone->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        qn = (ngx_http_aigw_quota_node_t *) &node->color;

        rc = (ngx_int_t) scope - (ngx_int_t) qn->scope;

        if (rc == 0) {
            rc = ngx_memn2cmp(id->data, qn->name, id->len, qn->len);
        }

        if (rc == 0) {
            ngx_queue_remove(&qn->queue);
            ngx_queue_insert_head(&zone->sh->queue, &qn->queue);

            ngx_http_aigw_quota_advance(qn, now);

            return node;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* a counter, made if there is none */

static ngx_rbtree_node_t *
ngx_http_aigw_quota_lookup(ngx_http_aigw_quota_zone_t *zone, ngx_uint_t scope,
    ngx_str_t *id, time_t now)
{
    size_t                       size;
    ngx_queue_t                 *qq;
    ngx_rbtree_node_t           *node;
    ngx_http_aigw_quota_node_t  *qn;

    node = ngx_http_aigw_quota_find(zone, scope, id, now);

    if (node) {
        return node;
    }

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_aigw_quota_node_t, name)
           + id->len;

    node = ngx_slab_alloc_locked(zone->shpool, size);

    /*
     * The zone is full: counters that hold nothing any more go, least
     * used first.  Counters that hold a day's use or a spend stay, or
     * their limits would start again.
     */

    for (qq = ngx_queue_last(&zone->sh->queue);
         node == NULL && qq != ngx_queue_sentinel(&zone->sh->queue);
         /* void */)
    {
        qn = ngx_queue_data(qq, ngx_http_aigw_quota_node_t, queue);
        qq = ngx_queue_prev(qq);

        ngx_http_aigw_quota_advance(qn, now);

        if (qn->refs || qn->requests || qn->day_requests
            || qn->spend[NGX_HTTP_AIGW_PERIOD_TOTAL])
        {
            continue;
        }

        ngx_queue_remove(&qn->queue);

        node = (ngx_rbtree_node_t *)
                   ((u_char *) qn - offsetof(ngx_rbtree_node_t, color));

        ngx_rbtree_delete(&zone->sh->rbtree, node);
        ngx_slab_free_locked(zone->shpool, node);

        node = ngx_slab_alloc_locked(zone->shpool, size);
    }

    if (node == NULL) {
        return NULL;
    }

    qn = (ngx_http_aigw_quota_node_t *) &node->color;

    ngx_memzero(qn, offsetof(ngx_http_aigw_quota_node_t, name));

    node->key = ngx_crc32_short(id->data, id->len) ^ (uint32_t) scope;
    qn->scope = (u_char) scope;
    qn->len = (u_short) id->len;
    ngx_memcpy(qn->name, id->data, id->len);

    qn->second = now;
    ngx_http_aigw_quota_advance(qn, now);

    ngx_rbtree_insert(&zone->sh->rbtree, node);
    ngx_queue_insert_head(&zone->sh->queue, &qn->queue);

    return node;
}


/* the minute's slots moved on to now; new days and periods start at 0 */

static void
ngx_http_aigw_quota_advance(ngx_http_aigw_quota_node_t *qn, time_t now)
{
    ngx_uint_t  i;
    time_t      id;

    if (now - qn->second >= NGX_HTTP_AIGW_QUOTA_SLOTS) {
        ngx_memzero(qn->slot_requests, sizeof(qn->slot_requests));
        ngx_memzero(qn->slot_tokens, sizeof(qn->slot_tokens));
        qn->requests = 0;
        qn->tokens = 0;
        qn->second = now;

    } else {
        while (qn->second < now) {
            i = ++qn->second % NGX_HTTP_AIGW_QUOTA_SLOTS;
            qn->requests -= qn->slot_requests[i];
            qn->tokens -= qn->slot_tokens[i];
            qn->slot_requests[i] = 0;
            qn->slot_tokens[i] = 0;
        }
    }

    /* a week or a month ends only where a day does */

    if (qn->day != now / 86400) {
        qn->day = now / 86400;
        qn->day_requests = 0;
        qn->day_tokens = 0;

        for (i = 0; i < NGX_HTTP_AIGW_PERIODS; i++) {
            id = ngx_http_aigw_quota_period(i, now);

            if (qn->period[i] != id) {
                qn->period[i] = id;
                qn->spend[i] = 0;
            }
        }
    }
}


static ngx_int_t
ngx_http_aigw_quota_check(ngx_http_aigw_quota_t *q,
    ngx_http_aigw_quota_hold_t *h, time_t now)
{
    ngx_http_aigw_limits_t      *l;
    ngx_http_aigw_quota_node_t  *qn;

    qn = (ngx_http_aigw_quota_node_t *)
             &((ngx_rbtree_node_t *) h->node)->color;
    l = &h->limits;

    if (l->concurrency && qn->inflight + 1 > l->concurrency) {
        q->refused_limit = NGX_HTTP_AIGW_LIMIT_CONCURRENCY;
        q->retry = 1;
        return NGX_DECLINED;
    }

    if (l->rpm && qn->requests + 1 > l->rpm) {
        q->refused_limit = NGX_HTTP_AIGW_LIMIT_RPM;
        q->retry = ngx_http_aigw_quota_minute_reset(qn, 0,
                                          qn->requests + 1 - l->rpm, now);
        return NGX_DECLINED;
    }

    if (l->tpm && qn->tokens + q->tokens > l->tpm) {
        q->refused_limit = NGX_HTTP_AIGW_LIMIT_TPM;
        q->retry = (q->tokens > l->tpm)
                   ? 0
                   : ngx_http_aigw_quota_minute_reset(qn, 1,
                                       qn->tokens + q->tokens - l->tpm, now);
        return NGX_DECLINED;
    }

    if (l->rpd && qn->day_requests + 1 > l->rpd) {
        q->refused_limit = NGX_HTTP_AIGW_LIMIT_RPD;
        q->retry = ngx_http_aigw_quota_period_end(NGX_HTTP_AIGW_PERIOD_DAY,
                                                  now);
        return NGX_DECLINED;
    }

    if (l->tpd && qn->day_tokens + q->tokens > l->tpd) {
        q->refused_limit = NGX_HTTP_AIGW_LIMIT_TPD;
        q->retry = (q->tokens > l->tpd)
                   ? 0
                   : ngx_http_aigw_quota_period_end(NGX_HTTP_AIGW_PERIOD_DAY,
                                                    now);
        return NGX_DECLINED;
    }

    if (l->budget && qn->spend[l->period] + q->cost > l->budget) {
        q->refused_limit = NGX_HTTP_AIGW_LIMIT_BUDGET;
        q->retry = ngx_http_aigw_quota_period_end(l->period, now);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_aigw_quota_take(ngx_http_aigw_quota_t *q,
    ngx_http_aigw_quota_node_t *qn)
{
    ngx_uint_t  i, p;

    i = q->second % NGX_HTTP_AIGW_QUOTA_SLOTS;

    qn->slot_requests[i]++;
    qn->slot_tokens[i] += q->tokens;
    qn->requests++;
    qn->tokens += q->tokens;
    qn->day_requests++;
    qn->day_tokens += q->tokens;

    /* the periods are the same in every counter, advanced to now */

    for (p = 0; p < NGX_HTTP_AIGW_PERIODS; p++) {
        qn->spend[p] += q->cost;
        q->period[p] = qn->period[p];
    }

    qn->inflight++;
    qn->refs++;
}


/*
 * The numbers of the x-ratelimit-* headers: of all counters with a
 * minute limit, the one with the least left
 */

static void
ngx_http_aigw_quota_tell(ngx_http_aigw_quota_t *q,
    ngx_http_aigw_quota_hold_t *h, time_t now)
{
    ngx_int_t                    left;
    ngx_http_aigw_quota_node_t  *qn;

    qn = (ngx_http_aigw_quota_node_t *)
             &((ngx_rbtree_node_t *) h->node)->color;

    /*
     * "reset": when the window is empty again, 60 s after its newest
     * request; a refused request was told when it would fit instead
     */

    if (h->limits.rpm) {
        left = (ngx_int_t) h->limits.rpm - (ngx_int_t) qn->requests;
        left = ngx_max(left, 0);

        if (q->limit_requests == -1 || left < q->remaining_requests) {
            q->limit_requests = h->limits.rpm;
            q->remaining_requests = left;
            q->reset_requests = qn->requests
                                ? NGX_HTTP_AIGW_QUOTA_SLOTS
                                  - (now - ngx_http_aigw_quota_newest(qn,
                                                                      0, now))
                                : 0;
        }
    }

    if (h->limits.tpm) {
        left = (ngx_int_t) h->limits.tpm - (ngx_int_t) qn->tokens;
        left = ngx_max(left, 0);

        if (q->limit_tokens == -1 || left < q->remaining_tokens) {
            q->limit_tokens = h->limits.tpm;
            q->remaining_tokens = left;
            q->reset_tokens = qn->tokens
                              ? NGX_HTTP_AIGW_QUOTA_SLOTS
                                - (now - ngx_http_aigw_quota_newest(qn, 1,
                                                                    now))
                              : 0;
        }
    }

    if (q->refused && q->refused_scope == h->scope) {
        if (q->refused_limit == NGX_HTTP_AIGW_LIMIT_RPM) {
            q->reset_requests = q->retry;

        } else if (q->refused_limit == NGX_HTTP_AIGW_LIMIT_TPM && q->retry) {
            q->reset_tokens = q->retry;
        }
    }
}


/* the second of the newest slot that holds something: now, most often */

static time_t
ngx_http_aigw_quota_newest(ngx_http_aigw_quota_node_t *qn,
    ngx_uint_t tokens, time_t now)
{
    time_t      s;
    ngx_uint_t  i;

    for (s = now; s > now - NGX_HTTP_AIGW_QUOTA_SLOTS; s--) {
        i = s % NGX_HTTP_AIGW_QUOTA_SLOTS;

        if (tokens ? qn->slot_tokens[i] != 0 : qn->slot_requests[i] != 0) {
            return s;
        }
    }

    return now;
}


/* seconds until the oldest slots have freed what is needed */

static time_t
ngx_http_aigw_quota_minute_reset(ngx_http_aigw_quota_node_t *qn,
    ngx_uint_t tokens, uint64_t need, time_t now)
{
    time_t      s;
    uint64_t    freed;
    ngx_uint_t  i;

    freed = 0;

    for (s = now - NGX_HTTP_AIGW_QUOTA_SLOTS + 1; s <= now; s++) {
        i = s % NGX_HTTP_AIGW_QUOTA_SLOTS;
        freed += tokens ? qn->slot_tokens[i] : qn->slot_requests[i];

        if (freed >= need) {
            return s + NGX_HTTP_AIGW_QUOTA_SLOTS - now;
        }
    }

    return NGX_HTTP_AIGW_QUOTA_SLOTS;
}


/* the id of a period: a day, a week from Monday, a month, all time */

time_t
ngx_http_aigw_quota_period(ngx_uint_t period, time_t now)
{
    ngx_tm_t  tm;

    switch (period) {

    case NGX_HTTP_AIGW_PERIOD_DAY:
        return now / 86400;

    case NGX_HTTP_AIGW_PERIOD_WEEK:
        return (now / 86400 + 3) / 7;    /* 1970-01-01 was a Thursday */

    case NGX_HTTP_AIGW_PERIOD_MONTH:
        ngx_gmtime(now, &tm);
        return tm.ngx_tm_year * 12 + tm.ngx_tm_mon;

    default:
        return 0;
    }
}


/* seconds until the period ends, 0 for all time */

time_t
ngx_http_aigw_quota_period_end(ngx_uint_t period, time_t now)
{
    time_t      days, y, m, era, yoe, doy, doe;
    ngx_tm_t    tm;

    switch (period) {

    case NGX_HTTP_AIGW_PERIOD_DAY:
        return (now / 86400 + 1) * 86400 - now;

    case NGX_HTTP_AIGW_PERIOD_WEEK:
        return (((now / 86400 + 3) / 7 + 1) * 7 - 3) * 86400 - now;

    case NGX_HTTP_AIGW_PERIOD_MONTH:

        /* the first day of the next month, in days since the epoch */

        ngx_gmtime(now, &tm);

        y = tm.ngx_tm_year;
        m = tm.ngx_tm_mon + 1;    /* ngx_tm_mon is 1-12 */

        if (m > 12) {
            m = 1;
            y++;
        }

        y -= (m <= 2);
        era = y / 400;
        yoe = y - era * 400;
        doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        days = era * 146097 + doe - 719468;

        return days * 86400 - now;

    default:
        return 0;
    }
}
