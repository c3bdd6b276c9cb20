
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_quota.h"


/*
 * Access step 4: rate limits, token quotas and spend budgets.  A request
 * reserves what it may use (one request, the tokens of its prompt and
 * answer, their price) in one critical section over every counter that
 * applies, so that concurrent requests never pass a limit together; its
 * end settles the reservation to what was metered.  The counters are
 * kept by quota_zone.c, or by quota_redis.c in Redis for many nodes.
 */


static ngx_uint_t ngx_http_aigw_quota_holds(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_quota_t *q);
static void ngx_http_aigw_quota_estimate(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_quota_t *q);
static void ngx_http_aigw_quota_reply(ngx_http_aigw_quota_t *q);
static ngx_int_t ngx_http_aigw_quota_decide(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_quota_t *q);
static void ngx_http_aigw_quota_cleanup(void *data);
static ngx_int_t ngx_http_aigw_quota_refuse(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_quota_t *q);
static u_char *ngx_http_aigw_quota_rfc3339(u_char *buf, time_t t);
static ngx_int_t ngx_http_aigw_quota_number(ngx_http_request_t *r,
    ngx_str_t *name, u_char **pp, ngx_uint_t v, ngx_uint_t seconds);
static char *ngx_http_aigw_quota_parse(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_aigw_limits_t *limits);


ngx_str_t  ngx_http_aigw_quota_scopes[] = {
    ngx_string("key"),
    ngx_string("tenant"),
    ngx_string("user"),
    ngx_string("team"),
    ngx_string("model"),
    ngx_string("global")
};


const char  *ngx_http_aigw_quota_limit_names[] = {
    "rpm", "rpd", "tpm", "tpd", "concurrency", "budget"
};


static const char  *ngx_http_aigw_quota_limit_words[] = {
    "requests per minute",
    "requests per day",
    "tokens per minute",
    "tokens per day",
    "requests in flight",
    "spend budget"
};


const char  *ngx_http_aigw_quota_periods[] = {
    "day", "week", "month", "total"
};


/* aigw_limit SCOPE rpm=N rpd=N tpm=N tpd=N concurrency=N budget=USD/PERIOD; */

char *
ngx_http_aigw_quota_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_loc_conf_t *alcf = conf;

    char                       *rv;
    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_aigw_limit_t      *l;
    ngx_http_aigw_main_conf_t  *amcf;

    value = cf->args->elts;

    if (alcf->limits == NGX_CONF_UNSET_PTR) {
        alcf->limits = ngx_array_create(cf->pool, 2,
                                        sizeof(ngx_http_aigw_limit_t));
        if (alcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    l = ngx_array_push(alcf->limits);
    if (l == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(l, sizeof(ngx_http_aigw_limit_t));

    for (i = 0; i < NGX_HTTP_AIGW_SCOPES; i++) {
        if (value[1].len == ngx_http_aigw_quota_scopes[i].len
            && ngx_strncmp(value[1].data, ngx_http_aigw_quota_scopes[i].data,
                           value[1].len)
               == 0)
        {
            break;
        }
    }

    if (i == NGX_HTTP_AIGW_SCOPES) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid scope \"%V\", must be \"key\", "
                           "\"tenant\", \"user\", \"team\", \"model\" or "
                           "\"global\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    l->scope = i;

    for (i = 2; i < cf->args->nelts; i++) {
        rv = ngx_http_aigw_quota_parse(cf, &value[i], &l->limits);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigw_module);
    amcf->quota_used = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_aigw_quota_parse(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_aigw_limits_t *limits)
{
    u_char      *p, *slash;
    ngx_int_t    n;
    ngx_str_t    s, period;
    ngx_uint_t  *field;

    p = (u_char *) ngx_strlchr(value->data, value->data + value->len, '=');

    if (p == NULL) {
        goto invalid;
    }

    s.data = p + 1;
    s.len = value->data + value->len - s.data;

#define ngx_http_aigw_quota_is(name)                                          \
    ((size_t) (p - value->data) == sizeof(name) - 1                           \
     && ngx_strncmp(value->data, name, sizeof(name) - 1) == 0)

    if (ngx_http_aigw_quota_is("budget")) {

        /* budget=USD/PERIOD, dollars with up to six decimals */

        slash = (u_char *) ngx_strlchr(s.data, s.data + s.len, '/');

        if (slash) {
            period.data = slash + 1;
            period.len = s.data + s.len - period.data;
            s.len = slash - s.data;

            if (ngx_http_aigw_keys_period(&period, &limits->period)
                != NGX_OK)
            {
                goto invalid;
            }

        } else {
            limits->period = NGX_HTTP_AIGW_PERIOD_MONTH;
        }

        n = ngx_atofp(s.data, s.len, 6);

        if (n == NGX_ERROR || n == 0) {
            goto invalid;
        }

        limits->budget = (uint64_t) n;

        return NGX_CONF_OK;
    }

    if (ngx_http_aigw_quota_is("rpm")) {
        field = &limits->rpm;

    } else if (ngx_http_aigw_quota_is("rpd")) {
        field = &limits->rpd;

    } else if (ngx_http_aigw_quota_is("tpm")) {
        field = &limits->tpm;

    } else if (ngx_http_aigw_quota_is("tpd")) {
        field = &limits->tpd;

    } else if (ngx_http_aigw_quota_is("concurrency")) {
        field = &limits->concurrency;

    } else {
        goto invalid;
    }

#undef ngx_http_aigw_quota_is

    n = ngx_atoi(s.data, s.len);

    if (n == NGX_ERROR || n == 0) {
        goto invalid;
    }

    *field = (ngx_uint_t) n;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", value);

    return NGX_CONF_ERROR;
}


/* aigw_quota on|off: a zone made for the limits when none was named */

char *
ngx_http_aigw_quota_init(ngx_conf_t *cf, ngx_http_aigw_main_conf_t *amcf)
{
    ngx_uint_t            i;
    ngx_http_aigw_key_t  *k;

    if (amcf->keys) {
        k = amcf->keys->keys;

        for (i = 0; i < amcf->keys->nkeys; i++) {
            if (k[i].limits.rpm || k[i].limits.rpd || k[i].limits.tpm
                || k[i].limits.tpd || k[i].limits.concurrency
                || k[i].limits.budget)
            {
                amcf->quota_used = 1;
                break;
            }
        }
    }

    if (amcf->quota_used && amcf->quota_zone == NULL) {
        return ngx_http_aigw_quota_add_zone(cf, amcf,
                                    &(ngx_str_t) ngx_string("aigw_quota"),
                                    10 * 1024 * 1024);
    }

    return NGX_CONF_OK;
}


/*
 * The step: reserve, or refuse before any provider is called.  With the
 * counters in Redis it is run twice: the first time sends the script and
 * waits (NGX_DONE), the second decides on its answer.
 */

ngx_int_t
ngx_http_aigw_quota_handler(ngx_http_request_t *r)
{
    time_t                       now;
    ngx_int_t                    rc;
    ngx_pool_cleanup_t          *cln;
    ngx_http_aigw_ctx_t         *ctx;
    ngx_http_aigw_quota_t       *q;
    ngx_http_aigw_loc_conf_t    *alcf;
    ngx_http_aigw_main_conf_t   *amcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (!alcf->quota || amcf->quota_zone == NULL || ctx->model.len == 0) {
        return NGX_DECLINED;
    }

    q = ctx->quota;

    if (q) {
        /* Redis answered, or could not */
        return q->waiting ? NGX_DONE : ngx_http_aigw_quota_decide(r, ctx, q);
    }

    q = ngx_pcalloc(r->pool, sizeof(ngx_http_aigw_quota_t));
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_aigw_quota_holds(r, ctx, q) == 0) {
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->limit_requests = -1;
    q->limit_tokens = -1;

    ngx_http_aigw_quota_estimate(r, ctx, q);

    ctx->quota = q;

    cln->handler = ngx_http_aigw_quota_cleanup;
    cln->data = r;

    if (alcf->quota_store == NGX_HTTP_AIGW_QUOTA_REDIS) {
        q->zone = amcf->quota_redis;
        q->redis = 1;
        q->done = ngx_http_aigw_quota_reply;
        q->data = r;

        rc = ngx_http_aigw_quota_redis_reserve(q, r->pool,
                                               r->connection->log);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_DECLINED) {
            q->rc = NGX_ERROR;
            return ngx_http_aigw_quota_decide(r, ctx, q);
        }

        q->waiting = 1;
        r->main->count++;

        return NGX_DONE;
    }

    q->zone = amcf->quota_zone->data;

    now = ngx_time();

    q->second = now;
    q->day = now / 86400;

    q->rc = ngx_http_aigw_quota_zone_reserve(q, now);

    return ngx_http_aigw_quota_decide(r, ctx, q);
}


/* Redis's answer: the phases go on where the step waited */

static void
ngx_http_aigw_quota_reply(ngx_http_aigw_quota_t *q)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = q->data;
    c = r->connection;

    q->waiting = 0;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "aigw: quota from Redis: %i", q->rc);

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);

    /* the reference the wait took */
    ngx_http_finalize_request(r, NGX_DONE);

    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_aigw_quota_decide(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_quota_t *q)
{
    u_char                     *p;
    ngx_str_t                   name;
    ngx_http_aigw_loc_conf_t   *alcf;

    if (q->rc == NGX_OK) {
        q->admitted = 1;
        q->held = 1;
        return NGX_OK;
    }

    if (q->rc == NGX_DECLINED) {
        q->refused = 1;
        return ngx_http_aigw_quota_refuse(r, ctx, q);
    }

    if (!q->redis) {
        /* NGX_BUSY: never a request refused for the gateway's memory */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: the quota zone is full, request not limited");
        return NGX_DECLINED;
    }

    /* Redis is down, hung, or failed: the policy of the location */

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    if (alcf->quota_redis_down == NGX_HTTP_AIGW_QUOTA_FAIL_CLOSED) {
        p = (u_char *) "1";
        ngx_str_set(&name, "Retry-After");

        if (ngx_http_aigw_filter_add_header(r, &name, p, 1) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_aigw_error(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "quota_unavailable",
                                   "Quotas cannot be checked now. "
                                   "Try again in 1s.");
    }

    /* admitted unchecked; what it uses is counted when it ends */

    q->admitted = 1;
    q->uncounted = 1;

    return NGX_OK;
}


/*
 * The limits of a scope in a location: a key's own, then what aigw_limit
 * sets for the scope where the key sets nothing
 */

void
ngx_http_aigw_quota_limits(ngx_http_aigw_loc_conf_t *alcf, ngx_uint_t scope,
    ngx_http_aigw_key_t *key, ngx_http_aigw_limits_t *lim)
{
    ngx_uint_t               i;
    ngx_http_aigw_limit_t   *l;
    ngx_http_aigw_limits_t  *d;

    ngx_memzero(lim, sizeof(ngx_http_aigw_limits_t));

    if (scope == NGX_HTTP_AIGW_SCOPE_KEY && key) {
        *lim = key->limits;
    }

    if (alcf->limits == NULL) {
        return;
    }

    l = alcf->limits->elts;

    for (i = 0; i < alcf->limits->nelts; i++) {
        if (l[i].scope != scope) {
            continue;
        }

        d = &l[i].limits;

        if (lim->rpm == 0) { lim->rpm = d->rpm; }
        if (lim->rpd == 0) { lim->rpd = d->rpd; }
        if (lim->tpm == 0) { lim->tpm = d->tpm; }
        if (lim->tpd == 0) { lim->tpd = d->tpd; }
        if (lim->concurrency == 0) { lim->concurrency = d->concurrency; }

        if (lim->budget == 0) {
            lim->budget = d->budget;
            lim->period = d->period;
        }
    }
}


/* the counters that apply, each with its limits */

static ngx_uint_t
ngx_http_aigw_quota_holds(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_quota_t *q)
{
    ngx_str_t                    id;
    ngx_uint_t                   s;
    ngx_http_aigw_limits_t       lim;
    ngx_http_aigw_loc_conf_t    *alcf;
    ngx_http_aigw_quota_hold_t  *h;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    for (s = 0; s < NGX_HTTP_AIGW_SCOPES; s++) {

        ngx_http_aigw_quota_limits(alcf, s, ctx->key, &lim);

        if (!(lim.rpm || lim.rpd || lim.tpm || lim.tpd || lim.concurrency
              || lim.budget))
        {
            continue;
        }

        switch (s) {

        case NGX_HTTP_AIGW_SCOPE_KEY:
            if (ctx->key) {
                id = ctx->key->id;
            }
            break;

        case NGX_HTTP_AIGW_SCOPE_TENANT:
            id = ctx->tenant;
            break;

        case NGX_HTTP_AIGW_SCOPE_USER:
            if (ctx->key) {
                id = ctx->key->user;
            }
            break;

        case NGX_HTTP_AIGW_SCOPE_TEAM:
            if (ctx->key) {
                id = ctx->key->team;
            }
            break;

        case NGX_HTTP_AIGW_SCOPE_MODEL:
            id = ctx->route_name;
            break;

        default: /* global */
            ngx_str_set(&id, "*");
        }

        /* a request without a user has no user's limit */

        if (id.len == 0 || id.len > 65535) {
            continue;
        }

        h = &q->hold[q->nhold++];
        h->scope = s;
        h->id = id;
        h->limits = lim;
    }

    return q->nhold;
}


/*
 * What the request may use: its prompt, estimated from the scan as the
 * meter estimates it, and all of the answer it allows; priced at the
 * dearest of its candidates.
 */

static void
ngx_http_aigw_quota_estimate(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_quota_t *q)
{
    u_char                    *p;
    uint64_t                   in, out, price_in, price_out;
    ngx_uint_t                 i, n;
    ngx_http_aigw_field_t     *f;
    ngx_http_aigw_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    in = ngx_http_aigw_meter_tokens(ctx->scan.string_bytes);
    out = alcf->quota_max_tokens;

    if (ctx->endpoint == NGX_HTTP_AIGW_EP_EMBEDDINGS) {
        out = 0;

    } else if (!ngx_http_aigw_endpoint_spends(ctx->endpoint)) {
        in = 0;
        out = 0;
    }

    for (i = NGX_HTTP_AIGW_F_MAX_TOKENS;
         i <= NGX_HTTP_AIGW_F_MAX_COMPLETION_TOKENS;
         i++)
    {
        f = &ctx->scan.field[i];

        if (f->key == NULL) {
            continue;
        }

        n = 0;

        for (p = f->start; p < f->end && *p >= '0' && *p <= '9'; p++) {
            if (n < 100000000) {
                n = n * 10 + (*p - '0');
            }
        }

        if (p == f->end && p > f->start) {
            out = n;
        }
    }

    price_in = 0;
    price_out = 0;

    for (i = 0; i < ctx->ncandidates; i++) {
        price_in = ngx_max(price_in, ctx->candidates[i]->input_price);
        price_out = ngx_max(price_out, ctx->candidates[i]->output_price);
    }

    q->tokens = in + out;
    q->cost = (in * price_in + out * price_out + 999999) / 1000000;
}


/*
 * The request's end, however it ended: the reservation becomes what the
 * meter says was used.  Upstream's end settles at once, before the client
 * has the last byte; the pool's cleanup settles what ended otherwise.
 */

static void
ngx_http_aigw_quota_cleanup(void *data)
{
    ngx_http_request_t *r = data;

    ngx_http_aigw_ctx_t    *ctx;
    ngx_http_aigw_quota_t  *q;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    q = ctx->quota;

    if (q->cmd) {
        /* gone while Redis was asked: the answer finds no one */
        ngx_http_aigw_quota_redis_cancel(q);
    }

    ngx_http_aigw_quota_settle(r);
}


void
ngx_http_aigw_quota_settle(ngx_http_request_t *r)
{
    int64_t                 dt, dc;
    uint64_t                used;
    ngx_http_aigw_ctx_t    *ctx;
    ngx_http_aigw_quota_t  *q;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    q = ctx ? ctx->quota : NULL;

    if (q == NULL || !(q->held || q->uncounted)) {
        return;
    }

    ngx_http_aigw_meter_finish(r, ctx);

    used = (uint64_t) ctx->prompt_tokens + ctx->completion_tokens;

    if (q->uncounted) {
        /* admitted while Redis was down: all it used, when it is back */
        ngx_http_aigw_quota_redis_settle(q, (int64_t) used,
                                         (int64_t) ctx->cost,
                                         r->connection->log);
        q->uncounted = 0;
        return;
    }

    q->held = 0;

    dt = (int64_t) used - (int64_t) q->tokens;
    dc = (int64_t) ctx->cost - (int64_t) q->cost;

    if (q->redis) {
        ngx_http_aigw_quota_redis_settle(q, dt, dc, r->connection->log);

    } else {
        ngx_http_aigw_quota_zone_settle(q, dt, dc, ngx_time());
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: quota settled: %uL tokens for %uL reserved, "
                   "%L micro-dollars, %ui counters",
                   used, q->tokens, dc, q->nhold);
}


/* 429, in the client's format; the headers go with it */

static ngx_int_t
ngx_http_aigw_quota_refuse(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_quota_t *q)
{
    u_char                      buf[NGX_INT64_LEN + 4], *p;
    ngx_str_t                   name, retry;
    ngx_http_aigw_limits_t     *l;
    ngx_http_aigw_quota_hold_t *h;

    ngx_str_null(&retry);

    for (h = q->hold; h->scope != q->refused_scope; h++) { /* void */ }

    l = &h->limits;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "aigw: %s of %V \"%V\" reached, request refused",
                  ngx_http_aigw_quota_limit_names[q->refused_limit],
                  &ngx_http_aigw_quota_scopes[h->scope], &h->id);

    if (q->retry) {
        p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_str_set(&name, "Retry-After");

        if (ngx_http_aigw_filter_add_header(r, &name, p,
                                           ngx_sprintf(p, "%T", q->retry) - p)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        retry.len = ngx_sprintf(buf, " Try again in %Ts.", q->retry) - buf;
        retry.data = buf;
    }

    if (q->refused_limit == NGX_HTTP_AIGW_LIMIT_BUDGET) {
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                                   "insufficient_quota",
                                   "You exceeded the %s spend budget of "
                                   "%V `%V` ($%uL.%06uL).%V",
                                   ngx_http_aigw_quota_periods[l->period],
                                   &ngx_http_aigw_quota_scopes[h->scope],
                                   &h->id, l->budget / 1000000,
                                   l->budget % 1000000, &retry);
    }

    if (q->retry == 0
        && (q->refused_limit == NGX_HTTP_AIGW_LIMIT_TPM
            || q->refused_limit == NGX_HTTP_AIGW_LIMIT_TPD))
    {
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                                   "rate_limit_exceeded",
                                   "Request too large for %V `%V`: it may "
                                   "use %uL tokens, the limit of %s is "
                                   "%ui.",
                                   &ngx_http_aigw_quota_scopes[h->scope],
                                   &h->id, q->tokens,
                                   ngx_http_aigw_quota_limit_words[
                                                        q->refused_limit],
                                   q->refused_limit
                                   == NGX_HTTP_AIGW_LIMIT_TPM
                                   ? l->tpm : l->tpd);
    }

    return ngx_http_aigw_error(r, ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                               "rate_limit_exceeded",
                               "Rate limit reached for %V `%V` on %s.%V",
                               &ngx_http_aigw_quota_scopes[h->scope],
                               &h->id,
                               ngx_http_aigw_quota_limit_words[
                                                        q->refused_limit],
                               &retry);
}


/*
 * The header filter's part: OpenAI's x-ratelimit-* headers, or
 * Anthropic's, for the limits of the gateway, in place of the
 * provider's own
 */

ngx_int_t
ngx_http_aigw_quota_headers(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    u_char                 *p, *v;
    ngx_str_t              *n;
    ngx_uint_t              i, anthropic;
    ngx_list_part_t        *part;
    ngx_table_elt_t        *h;
    ngx_http_aigw_quota_t  *q;

    static ngx_str_t  names[] = {
        ngx_string("x-ratelimit-limit-requests"),
        ngx_string("x-ratelimit-remaining-requests"),
        ngx_string("x-ratelimit-reset-requests"),
        ngx_string("x-ratelimit-limit-tokens"),
        ngx_string("x-ratelimit-remaining-tokens"),
        ngx_string("x-ratelimit-reset-tokens"),
        ngx_string("anthropic-ratelimit-requests-limit"),
        ngx_string("anthropic-ratelimit-requests-remaining"),
        ngx_string("anthropic-ratelimit-requests-reset"),
        ngx_string("anthropic-ratelimit-tokens-limit"),
        ngx_string("anthropic-ratelimit-tokens-remaining")
    };

    q = ctx->quota;

    if (q == NULL || (q->limit_requests == -1 && q->limit_tokens == -1)) {
        return NGX_OK;
    }

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if ((h[i].key.len > sizeof("x-ratelimit-") - 1
             && ngx_strncasecmp(h[i].key.data, (u_char *) "x-ratelimit-",
                                sizeof("x-ratelimit-") - 1)
                == 0)
            || (h[i].key.len > sizeof("anthropic-ratelimit-") - 1
                && ngx_strncasecmp(h[i].key.data,
                                   (u_char *) "anthropic-ratelimit-",
                                   sizeof("anthropic-ratelimit-") - 1)
                   == 0))
        {
            h[i].hash = 0;
        }
    }

    anthropic = (ctx->format == &ngx_http_aigw_anthropic_format);

    /* the values in one piece of memory, numbers written by hand */

    p = ngx_pnalloc(r->pool, 6 * (NGX_INT64_LEN + 1)
                             + sizeof("2026-01-01T00:00:00Z"));
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (q->limit_requests != -1) {
        n = anthropic ? &names[6] : &names[0];

        if (ngx_http_aigw_quota_number(r, &n[0], &p, q->limit_requests, 0)
            != NGX_OK
            || ngx_http_aigw_quota_number(r, &n[1], &p,
                                          q->remaining_requests, 0)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (anthropic) {
            v = p;
            p = ngx_http_aigw_quota_rfc3339(p, q->second + q->reset_requests);

            if (ngx_http_aigw_filter_add_header(r, &n[2], v, p - v)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_http_aigw_quota_number(r, &n[2], &p,
                                              q->reset_requests, 1)
                   != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (q->limit_tokens != -1) {
        n = anthropic ? &names[9] : &names[3];

        if (ngx_http_aigw_quota_number(r, &n[0], &p, q->limit_tokens, 0)
            != NGX_OK
            || ngx_http_aigw_quota_number(r, &n[1], &p,
                                          q->remaining_tokens, 0)
               != NGX_OK
            || (!anthropic
                && ngx_http_aigw_quota_number(r, &n[2], &p,
                                              q->reset_tokens, 1)
                   != NGX_OK))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* a header whose value is a number, "s" after it for seconds */

static ngx_int_t
ngx_http_aigw_quota_number(ngx_http_request_t *r, ngx_str_t *name,
    u_char **pp, ngx_uint_t v, ngx_uint_t seconds)
{
    u_char  *p, *start, digits[NGX_INT64_LEN];
    size_t   n;

    n = 0;

    do {
        digits[n++] = (u_char) ('0' + v % 10);
        v /= 10;
    } while (v);

    start = *pp;

    for (p = start; n; p++) {
        *p = digits[--n];
    }

    if (seconds) {
        *p++ = 's';
    }

    *pp = p;

    return ngx_http_aigw_filter_add_header(r, name, start, p - start);
}


/* "2026-01-01T00:00:00Z", as Anthropic's reset headers say a time */

static u_char *
ngx_http_aigw_quota_rfc3339(u_char *buf, time_t t)
{
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    return ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
}


/* $aigw_quota: "admitted", "refused:SCOPE:LIMIT", or not found */

ngx_int_t
ngx_http_aigw_quota_variable(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_str_t *s)
{
    u_char                 *p;
    ngx_http_aigw_quota_t  *q;

    q = ctx->quota;

    if (q == NULL) {
        return NGX_DECLINED;
    }

    if (q->admitted) {
        ngx_str_set(s, "admitted");
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, sizeof("refused::concurrency") + 8);
    if (p == NULL) {
        return NGX_ERROR;
    }

    s->data = p;
    s->len = ngx_sprintf(p, "refused:%V:%s",
                         &ngx_http_aigw_quota_scopes[q->refused_scope],
                         ngx_http_aigw_quota_limit_names[q->refused_limit])
             - p;

    return NGX_OK;
}
