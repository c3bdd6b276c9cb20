
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_QUOTA_H_INCLUDED_
#define _NGX_HTTP_AIGW_QUOTA_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_aigw_keys.h"


/*
 * What the quota step (quota.c) and the stores of its counters
 * (quota_zone.c: shared memory; quota_redis.c: Redis, for many nodes)
 * share: a request's reservation.
 */


#define NGX_HTTP_AIGW_SCOPE_KEY          0
#define NGX_HTTP_AIGW_SCOPE_TENANT       1
#define NGX_HTTP_AIGW_SCOPE_USER         2
#define NGX_HTTP_AIGW_SCOPE_TEAM         3
#define NGX_HTTP_AIGW_SCOPE_MODEL        4
#define NGX_HTTP_AIGW_SCOPE_GLOBAL       5
#define NGX_HTTP_AIGW_SCOPES             6

/* what refused a request */
#define NGX_HTTP_AIGW_LIMIT_RPM          0
#define NGX_HTTP_AIGW_LIMIT_RPD          1
#define NGX_HTTP_AIGW_LIMIT_TPM          2
#define NGX_HTTP_AIGW_LIMIT_TPD          3
#define NGX_HTTP_AIGW_LIMIT_CONCURRENCY  4
#define NGX_HTTP_AIGW_LIMIT_BUDGET       5
#define NGX_HTTP_AIGW_LIMITS             6

/* aigw_quota_store, aigw_quota_redis_down */
#define NGX_HTTP_AIGW_QUOTA_ZONE         0
#define NGX_HTTP_AIGW_QUOTA_REDIS        1
#define NGX_HTTP_AIGW_QUOTA_FAIL_OPEN    0
#define NGX_HTTP_AIGW_QUOTA_FAIL_CLOSED  1


/* aigw_limit SCOPE ...; */

typedef struct {
    ngx_uint_t                      scope;
    ngx_http_aigw_limits_t          limits;
} ngx_http_aigw_limit_t;


/* one counter a request holds, with the limits it was checked against */

typedef struct {
    void                           *node;       /* the store's */
    ngx_uint_t                      scope;
    ngx_str_t                       id;
    ngx_http_aigw_limits_t          limits;
} ngx_http_aigw_quota_hold_t;


typedef struct ngx_http_aigw_quota_s  ngx_http_aigw_quota_t;

/* Redis answered, or could not: q->rc says which */
typedef void (*ngx_http_aigw_quota_done_pt)(ngx_http_aigw_quota_t *q);


struct ngx_http_aigw_quota_s {
    void                           *zone;       /* the store's */
    ngx_http_aigw_quota_hold_t      hold[NGX_HTTP_AIGW_SCOPES];
    ngx_uint_t                      nhold;

    /* the reservation: when, and how much */
    time_t                          second;
    time_t                          day;
    time_t                          period[NGX_HTTP_AIGW_PERIODS];
    uint64_t                        tokens;
    uint64_t                        cost;

    /* what the client is told */
    ngx_int_t                       limit_requests;   /* -1: none */
    ngx_int_t                       remaining_requests;
    time_t                          reset_requests;
    ngx_int_t                       limit_tokens;
    ngx_int_t                       remaining_tokens;
    time_t                          reset_tokens;
    time_t                          retry;

    ngx_uint_t                      refused_scope;
    ngx_uint_t                      refused_limit;

    /* Redis: the command waited for, and what came of it */
    void                           *cmd;
    ngx_http_aigw_quota_done_pt     done;
    void                           *data;
    ngx_int_t                       rc;

    unsigned                        admitted:1;
    unsigned                        refused:1;
    unsigned                        held:1;
    unsigned                        redis:1;
    unsigned                        waiting:1;
    unsigned                        uncounted:1; /* Redis was down */
};


/* what a counter holds now, for a report */

typedef struct {
    ngx_uint_t                      requests_minute;
    uint64_t                        tokens_minute;
    ngx_uint_t                      requests_day;
    uint64_t                        tokens_day;
    ngx_uint_t                      inflight;
    uint64_t                        spend[NGX_HTTP_AIGW_PERIODS];
} ngx_http_aigw_quota_counts_t;


extern ngx_str_t    ngx_http_aigw_quota_scopes[];
extern const char  *ngx_http_aigw_quota_limit_names[];
extern const char  *ngx_http_aigw_quota_periods[];


/*
 * The shared zone: NGX_OK, every counter taken; NGX_DECLINED, refused
 * (q->refused_*, q->retry), nothing taken; NGX_BUSY, no room for a new
 * counter.  Either way the q->limit_* and remaining_* numbers are set.
 */
ngx_int_t ngx_http_aigw_quota_zone_reserve(ngx_http_aigw_quota_t *q,
    time_t now);
void ngx_http_aigw_quota_zone_settle(ngx_http_aigw_quota_t *q,
    int64_t tokens, int64_t cost, time_t now);

/* a counter's numbers now, all 0 if the zone has none */
void ngx_http_aigw_quota_zone_read(void *zone, ngx_uint_t scope,
    ngx_str_t *id, time_t now, ngx_http_aigw_quota_counts_t *counts);

/*
 * Redis: NGX_AGAIN, the script is sent and q->done(q) will be called
 * with q->rc as above, or NGX_ERROR (Redis failed) or NGX_ETIMEDOUT;
 * NGX_DECLINED, Redis cannot be reached now; NGX_ERROR, no memory.
 * Cancel a command still waited for (q->cmd) when the request goes.
 */
ngx_int_t ngx_http_aigw_quota_redis_reserve(ngx_http_aigw_quota_t *q,
    ngx_pool_t *pool, ngx_log_t *log);
void ngx_http_aigw_quota_redis_cancel(ngx_http_aigw_quota_t *q);

/*
 * Fire and forget; kept in the worker's queue and sent again later when
 * Redis cannot be reached.  Without a reservation (q->uncounted) the
 * request, its tokens and cost are added as they were used.
 */
void ngx_http_aigw_quota_redis_settle(ngx_http_aigw_quota_t *q,
    int64_t tokens, int64_t cost, ngx_log_t *log);

/* the id of a calendar period (UTC) and the seconds until it ends */
time_t ngx_http_aigw_quota_period(ngx_uint_t period, time_t now);
time_t ngx_http_aigw_quota_period_end(ngx_uint_t period, time_t now);


#endif /* _NGX_HTTP_AIGW_QUOTA_H_INCLUDED_ */
