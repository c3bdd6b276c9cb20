
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_quota.h"


/*
 * The counters of quotas in Redis, for many nginx nodes: the same
 * windows and periods as the shared zone (quota_zone.c), kept by two Lua
 * scripts that Redis runs alone, one at a time.  One EVALSHA reserves a
 * request on every counter that applies, or on none; another settles it.
 * The clock is Redis's own (TIME), so that every node agrees on the
 * seconds of the minute and on when a day or a month ends.
 *
 * A counter is a hash, "aigw:q:SCOPE:ID":
 *
 *   s         the newest second of the minute's window
 *   rq, tk    requests and tokens in the window
 *   rN, tN    those of second N (mod 60), only while not 0
 *   d         the day (since the epoch); dr, dt its requests and tokens
 *   pN, bN    period N (day, week, month, total): its id and spend
 *   f         requests in flight
 *   bp        the period of the budget that applies to it (-1: none)
 *
 * It expires when nothing it holds counts any more: a minute after its
 * last request, at the end of the day that counted requests, or at the
 * end of its budget's period if it spent any (a budget of all time:
 * never); an hour at least while requests are in flight.
 *
 * Settles that cannot be sent (Redis down) wait in a bounded queue of
 * the worker's, sent again each second once Redis takes commands.
 */


#define NGX_HTTP_AIGW_QUOTA_QUEUE      10000    /* settles a worker keeps */
#define NGX_HTTP_AIGW_QUOTA_RETRY      1000     /* ms, the queue's timer */
#define NGX_HTTP_AIGW_QUOTA_LOG_QUIET  10       /* s between error lines */
#define NGX_HTTP_AIGW_QUOTA_ARGS       7        /* numbers a hold */


typedef struct {
    ngx_http_aigw_redis_t         *redis;
    ngx_http_aigw_redis_script_t  *reserve;
    ngx_http_aigw_redis_script_t  *settle;

    /* the worker's own, each worker its copy */
    ngx_queue_t                    queue;      /* settles to send again */
    ngx_uint_t                     queued;
    ngx_event_t                    timer;
    time_t                         log_next;
    unsigned                       overflow:1; /* logged */
} ngx_http_aigw_quota_redis_t;


/* a settle, in memory of its own: it outlives its request */

typedef struct {
    ngx_queue_t                    queue;
    ngx_http_aigw_quota_redis_t   *qr;
    ngx_uint_t                     nkeys;
    ngx_uint_t                     argc;
    ngx_str_t                     *argv;
} ngx_http_aigw_quota_pending_t;


static void ngx_http_aigw_quota_redis_reply(void *data, redisReply *reply,
    ngx_int_t rc);
static ngx_int_t ngx_http_aigw_quota_redis_send(
    ngx_http_aigw_quota_pending_t *p, ngx_log_t *log);
static void ngx_http_aigw_quota_redis_sent(void *data, redisReply *reply,
    ngx_int_t rc);
static void ngx_http_aigw_quota_redis_keep(ngx_http_aigw_quota_pending_t *p);
static void ngx_http_aigw_quota_redis_replay(ngx_event_t *ev);
static void ngx_http_aigw_quota_redis_error(ngx_http_aigw_quota_redis_t *qr,
    ngx_log_t *log, const char *what, ngx_str_t *why);
static size_t ngx_http_aigw_quota_redis_key(u_char *buf,
    ngx_http_aigw_quota_hold_t *h);


static const char  *ngx_http_aigw_quota_redis_scopes[] = {
    "key", "tenant", "user", "team", "model", "global"
};


/*
 * What both scripts share: the calendar of quota_zone.c (UTC days, ISO
 * weeks from Monday, months) and a counter's load, advance and store.
 */

#define NGX_HTTP_AIGW_QUOTA_LUA_COMMON                                        \
"if redis.replicate_commands then redis.replicate_commands() end\n"            \
"local floor = math.floor\n"                                                  \
"local now = tonumber(redis.call('TIME')[1])\n"                               \
"local function civil(d)\n"                                                   \
"  d = d + 719468\n"                                                          \
"  local era = floor(d / 146097)\n"                                           \
"  local doe = d - era * 146097\n"                                            \
"  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524)\n"         \
"                     - floor(doe / 146096)) / 365)\n"                        \
"  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))\n"       \
"  local mp = floor((5 * doy + 2) / 153)\n"                                   \
"  local m = mp < 10 and mp + 3 or mp - 9\n"                                  \
"  local y = yoe + era * 400\n"                                               \
"  if m <= 2 then y = y + 1 end\n"                                            \
"  return y, m\n"                                                             \
"end\n"                                                                       \
"local function days(y, m)\n"                                                 \
"  if m <= 2 then y = y - 1 end\n"                                            \
"  local era = floor(y / 400)\n"                                              \
"  local yoe = y - era * 400\n"                                               \
"  local doy = floor((153 * (m > 2 and m - 3 or m + 9) + 2) / 5)\n"           \
"  return era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100)\n"     \
"         + doy - 719468\n"                                                   \
"end\n"                                                                       \
"local function period(p, s)\n"                                               \
"  local d = floor(s / 86400)\n"                                              \
"  if p == 0 then return d end\n"                                             \
"  if p == 1 then return floor((d + 3) / 7) end\n"                            \
"  if p == 2 then local y, m = civil(d) return y * 12 + m end\n"              \
"  return 0\n"                                                                \
"end\n"                                                                       \
"local function period_end(p, s)\n"                                           \
"  local d = floor(s / 86400)\n"                                              \
"  if p == 0 then return (d + 1) * 86400 - s end\n"                           \
"  if p == 1 then return ((floor((d + 3) / 7) + 1) * 7 - 3) * 86400 - s end\n"\
"  if p == 2 then\n"                                                          \
"    local y, m = civil(d)\n"                                                 \
"    if m == 12 then y = y + 1 m = 1 else m = m + 1 end\n"                    \
"    return days(y, m) * 86400 - s\n"                                         \
"  end\n"                                                                     \
"  return 0\n"                                                                \
"end\n"                                                                       \
"local function load(key)\n"                                                  \
"  local h = redis.call('HGETALL', key)\n"                                    \
"  local c = {}\n"                                                            \
"  for i = 1, #h, 2 do c[h[i]] = tonumber(h[i + 1]) end\n"                    \
"  for _, f in ipairs({'s', 'rq', 'tk', 'd', 'dr', 'dt', 'f'}) do\n"          \
"    c[f] = c[f] or 0\n"                                                      \
"  end\n"                                                                     \
"  c.bp = c.bp or -1\n"                                                       \
"  for i = 0, 59 do\n"                                                        \
"    c['r' .. i] = c['r' .. i] or 0\n"                                        \
"    c['t' .. i] = c['t' .. i] or 0\n"                                        \
"  end\n"                                                                     \
"  for p = 0, 3 do\n"                                                         \
"    c['p' .. p] = c['p' .. p] or -1\n"                                       \
"    c['b' .. p] = c['b' .. p] or 0\n"                                        \
"  end\n"                                                                     \
"  if now - c.s >= 60 then\n"                                                 \
"    for i = 0, 59 do c['r' .. i] = 0 c['t' .. i] = 0 end\n"                  \
"    c.rq = 0 c.tk = 0\n"                                                     \
"  else\n"                                                                    \
"    for s = c.s + 1, now do\n"                                               \
"      local i = s % 60\n"                                                    \
"      c.rq = c.rq - c['r' .. i] c.tk = c.tk - c['t' .. i]\n"                 \
"      c['r' .. i] = 0 c['t' .. i] = 0\n"                                     \
"    end\n"                                                                   \
"  end\n"                                                                     \
"  c.s = now\n"                                                               \
"  if c.d ~= floor(now / 86400) then\n"                                       \
"    c.d = floor(now / 86400) c.dr = 0 c.dt = 0\n"                            \
"  end\n"                                                                     \
"  for p = 0, 3 do\n"                                                         \
"    local id = period(p, now)\n"                                             \
"    if c['p' .. p] ~= id then c['p' .. p] = id c['b' .. p] = 0 end\n"        \
"  end\n"                                                                     \
"  return c\n"                                                                \
"end\n"                                                                       \
"local function store(key, c)\n"                                              \
"  local set, del = {}, {}\n"                                                 \
"  for f, v in pairs(c) do\n"                                                 \
"    if v == 0 and string.match(f, '^[rt]%d') then\n"                         \
"      del[#del + 1] = f\n"                                                   \
"    else\n"                                                                  \
"      set[#set + 1] = f set[#set + 1] = v\n"                                 \
"    end\n"                                                                   \
"  end\n"                                                                     \
"  if #del > 0 then redis.call('HDEL', key, unpack(del)) end\n"               \
"  redis.call('HSET', key, unpack(set))\n"                                    \
"  local ttl, bp = 61, c.bp\n"                                                \
"  if c.dr > 0 or c.dt > 0 then ttl = math.max(ttl, period_end(0, now)) end\n"\
"  if bp >= 0 and c['b' .. bp] > 0 then\n"                                    \
"    if bp == 3 then redis.call('PERSIST', key) return end\n"                 \
"    ttl = math.max(ttl, period_end(bp, now))\n"                              \
"  end\n"                                                                     \
"  if c.f > 0 then ttl = math.max(ttl, 3600) end\n"                           \
"  redis.call('EXPIRE', key, ttl)\n"                                          \
"end\n"                                                                       \
"local function reset(c, w, need)\n"                                          \
"  local freed = 0\n"                                                         \
"  for s = now - 59, now do\n"                                                \
"    freed = freed + c[w .. (s % 60)]\n"                                      \
"    if freed >= need then return s + 60 - now end\n"                         \
"  end\n"                                                                     \
"  return 60\n"                                                               \
"end\n"


/*
 * KEYS: a counter a hold.  ARGV: tokens, cost (micro-dollars), and for
 * each hold "concurrency rpm tpm rpd tpd budget period" (0: none).
 * Returns admitted (1 or 0), Redis's second, the refused hold
 * (from 0, or -1), the limit, Retry-After, and the x-ratelimit-*
 * numbers: limit, remaining and reset of requests, then of tokens (-1:
 * no such limit).
 */

static ngx_str_t  ngx_http_aigw_quota_redis_reserve_lua = ngx_string(
NGX_HTTP_AIGW_QUOTA_LUA_COMMON
"local tokens, cost = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
"local cs, lim = {}, {}\n"
"local function check(c, l)\n"
"  if l[1] > 0 and c.f + 1 > l[1] then return 4, 1 end\n"
"  if l[2] > 0 and c.rq + 1 > l[2] then\n"
"    return 0, reset(c, 'r', c.rq + 1 - l[2])\n"
"  end\n"
"  if l[3] > 0 and c.tk + tokens > l[3] then\n"
"    if tokens > l[3] then return 2, 0 end\n"
"    return 2, reset(c, 't', c.tk + tokens - l[3])\n"
"  end\n"
"  if l[4] > 0 and c.dr + 1 > l[4] then return 1, period_end(0, now) end\n"
"  if l[5] > 0 and c.dt + tokens > l[5] then\n"
"    if tokens > l[5] then return 3, 0 end\n"
"    return 3, period_end(0, now)\n"
"  end\n"
"  if l[6] > 0 and c['b' .. l[7]] + cost > l[6] then\n"
"    return 5, period_end(l[7], now)\n"
"  end\n"
"  return -1, 0\n"
"end\n"
"local refused, limit, retry = -1, -1, 0\n"
"for k = 1, #KEYS do\n"
"  cs[k] = load(KEYS[k])\n"
"  lim[k] = {}\n"
"  for n in string.gmatch(ARGV[2 + k], '%d+') do\n"
"    lim[k][#lim[k] + 1] = tonumber(n)\n"
"  end\n"
"  if refused == -1 then\n"
"    limit, retry = check(cs[k], lim[k])\n"
"    if limit ~= -1 then refused = k - 1 end\n"
"  end\n"
"end\n"
"if refused == -1 then\n"
"  local i = now % 60\n"
"  for k = 1, #KEYS do\n"
"    local c = cs[k]\n"
"    c['r' .. i] = c['r' .. i] + 1 c['t' .. i] = c['t' .. i] + tokens\n"
"    c.rq = c.rq + 1 c.tk = c.tk + tokens\n"
"    c.dr = c.dr + 1 c.dt = c.dt + tokens\n"
"    for p = 0, 3 do c['b' .. p] = c['b' .. p] + cost end\n"
"    c.f = c.f + 1\n"
"    if lim[k][6] > 0 then c.bp = lim[k][7] end\n"
"    store(KEYS[k], c)\n"
"  end\n"
"end\n"
"local lr, rr, sr, lt, rt, st = -1, 0, 0, -1, 0, 0\n"
"for k = 1, #KEYS do\n"
"  local c, l = cs[k], lim[k]\n"
"  if l[2] > 0 then\n"
"    local left = math.max(l[2] - c.rq, 0)\n"
"    if lr == -1 or left < rr then\n"
"      lr, rr = l[2], left\n"
"      sr = c.rq > 0 and reset(c, 'r', 1) or 0\n"
"    end\n"
"  end\n"
"  if l[3] > 0 then\n"
"    local left = math.max(l[3] - c.tk, 0)\n"
"    if lt == -1 or left < rt then\n"
"      lt, rt = l[3], left\n"
"      st = c.tk > 0 and reset(c, 't', c.tk) or 0\n"
"    end\n"
"  end\n"
"end\n"
"return {refused == -1 and 1 or 0, now, refused, limit, retry,\n"
"        lr, rr, sr, lt, rt, st}\n"
);


/*
 * KEYS: the counters of a reservation.  ARGV: "second tokens cost
 * requests release": its second, the tokens and cost to add (less than
 * 0: given back), the requests to add (a request admitted while Redis
 * was down), and 1 if it is released from the requests in flight.
 * Applied to the slot, day and periods of that second, if they still
 * count.
 */

static ngx_str_t  ngx_http_aigw_quota_redis_settle_lua = ngx_string(
NGX_HTTP_AIGW_QUOTA_LUA_COMMON
"local a = {}\n"
"for n in string.gmatch(ARGV[1], '%-?%d+') do a[#a + 1] = tonumber(n) end\n"
"local second, dt, dc, dr, release = math.min(a[1], now), a[2], a[3],\n"
"                                    a[4], a[5]\n"
"local function add(v, d) return math.max(v + d, 0) end\n"
"for k = 1, #KEYS do\n"
"  local c = load(KEYS[k])\n"
"  if now - second < 60 then\n"
"    local i = second % 60\n"
"    c.tk = add(c.tk, dt) c['t' .. i] = add(c['t' .. i], dt)\n"
"    c.rq = c.rq + dr c['r' .. i] = c['r' .. i] + dr\n"
"  end\n"
"  if c.d == floor(second / 86400) then\n"
"    c.dt = add(c.dt, dt) c.dr = c.dr + dr\n"
"  end\n"
"  for p = 0, 3 do\n"
"    if c['p' .. p] == period(p, second) then\n"
"      c['b' .. p] = add(c['b' .. p], dc)\n"
"    end\n"
"  end\n"
"  if release == 1 then c.f = math.max(c.f - 1, 0) end\n"
"  store(KEYS[k], c)\n"
"end\n"
"return 1\n"
);


/* aigw_quota_store redis: the scripts, known to the configuration */

char *
ngx_http_aigw_quota_redis_init(ngx_conf_t *cf,
    ngx_http_aigw_main_conf_t *amcf)
{
    ngx_http_aigw_quota_redis_t  *qr;

    if (amcf->quota_redis) {
        return NGX_CONF_OK;
    }

    if (amcf->redis == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"aigw_quota_store redis\" needs \"aigw_redis\" "
                           "in the http block");
        return NGX_CONF_ERROR;
    }

    qr = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_quota_redis_t));
    if (qr == NULL) {
        return NGX_CONF_ERROR;
    }

    qr->redis = amcf->redis;

    qr->reserve = ngx_http_aigw_redis_script(cf, amcf->redis,
                                     &ngx_http_aigw_quota_redis_reserve_lua);
    qr->settle = ngx_http_aigw_redis_script(cf, amcf->redis,
                                      &ngx_http_aigw_quota_redis_settle_lua);

    if (qr->reserve == NULL || qr->settle == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_queue_init(&qr->queue);

    qr->timer.handler = ngx_http_aigw_quota_redis_replay;
    qr->timer.data = qr;
    qr->timer.cancelable = 1;

    amcf->quota_redis = qr;

    return NGX_CONF_OK;
}


/* one EVALSHA: every hold checked and taken, or none */

ngx_int_t
ngx_http_aigw_quota_redis_reserve(ngx_http_aigw_quota_t *q, ngx_pool_t *pool,
    ngx_log_t *log)
{
    u_char                       *p;
    size_t                        len;
    ngx_int_t                     rc;
    ngx_str_t                    *argv, *a;
    ngx_uint_t                    i, argc;
    ngx_http_aigw_limits_t       *l;
    ngx_http_aigw_quota_hold_t   *h;
    ngx_http_aigw_quota_redis_t  *qr;

    qr = q->zone;

    argc = q->nhold + 2 + q->nhold;

    len = 2 * NGX_INT64_LEN
          + q->nhold * NGX_HTTP_AIGW_QUOTA_ARGS * (NGX_INT64_LEN + 1);

    for (i = 0; i < q->nhold; i++) {
        len += sizeof("aigw:q:tenant:") - 1 + q->hold[i].id.len;
    }

    argv = ngx_palloc(pool, argc * sizeof(ngx_str_t) + len);
    if (argv == NULL) {
        return NGX_ERROR;
    }

    p = (u_char *) (argv + argc);
    a = argv;

    for (i = 0; i < q->nhold; i++) {
        a->data = p;
        a->len = ngx_http_aigw_quota_redis_key(p, &q->hold[i]);
        p += a->len;
        a++;
    }

#define ngx_http_aigw_quota_arg(v)                                            \
    a->data = p;                                                              \
    p = ngx_sprintf(p, "%uL", (uint64_t) (v));                                \
    a->len = p - a->data;                                                     \
    a++

    ngx_http_aigw_quota_arg(q->tokens);
    ngx_http_aigw_quota_arg(q->cost);

#undef ngx_http_aigw_quota_arg

    /* a hold's limits in one argument: hiredis formats each one slowly */

    for (i = 0; i < q->nhold; i++) {
        h = &q->hold[i];
        l = &h->limits;

        a->data = p;
        p = ngx_sprintf(p, "%ui %ui %ui %ui %ui %uL %ui",
                        l->concurrency, l->rpm, l->tpm, l->rpd, l->tpd,
                        (uint64_t) l->budget, l->period);
        a->len = p - a->data;
        a++;
    }

    rc = ngx_http_aigw_redis_eval(qr->redis, qr->reserve, q->nhold, argc,
                                  argv, ngx_http_aigw_quota_redis_reply, q,
                                  log, &q->cmd);

    if (rc == NGX_DECLINED) {
        ngx_http_aigw_quota_redis_error(qr, log, "not reachable", NULL);
    }

    return (rc == NGX_OK) ? NGX_AGAIN : rc;
}


void
ngx_http_aigw_quota_redis_cancel(ngx_http_aigw_quota_t *q)
{
    if (q->cmd) {
        ngx_http_aigw_redis_cancel(q->cmd);
        q->cmd = NULL;
    }
}


static void
ngx_http_aigw_quota_redis_reply(void *data, redisReply *reply, ngx_int_t rc)
{
    ngx_http_aigw_quota_t *q = data;

    long long                     v[11];
    ngx_str_t                     why;
    ngx_uint_t                    i;
    ngx_http_aigw_quota_redis_t  *qr;

    /* the command is gone with this call */
    q->cmd = NULL;

    qr = q->zone;

    if (reply == NULL) {
        q->rc = rc;
        ngx_http_aigw_quota_redis_error(qr, ngx_cycle->log,
                                        rc == NGX_ETIMEDOUT
                                        ? "timed out" : "failed", NULL);
        q->done(q);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 11) {
        goto invalid;
    }

    for (i = 0; i < 11; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER) {
            goto invalid;
        }

        v[i] = reply->element[i]->integer;
    }

    if (v[1] <= 0 || v[2] < -1 || v[2] >= (long long) q->nhold
        || v[3] < -1 || v[3] > NGX_HTTP_AIGW_LIMIT_BUDGET)
    {
        goto invalid;
    }

    /* what was reserved was reserved at Redis's second */

    q->second = (time_t) v[1];
    q->day = q->second / 86400;

    for (i = 0; i < NGX_HTTP_AIGW_PERIODS; i++) {
        q->period[i] = ngx_http_aigw_quota_period(i, q->second);
    }

    if (v[0] == 1) {
        q->rc = NGX_OK;

    } else {
        q->rc = NGX_DECLINED;
        q->refused_scope = q->hold[v[2]].scope;
        q->refused_limit = (ngx_uint_t) v[3];
        q->retry = (time_t) v[4];
    }

    q->limit_requests = (ngx_int_t) v[5];
    q->remaining_requests = (ngx_int_t) v[6];
    q->reset_requests = (time_t) v[7];
    q->limit_tokens = (ngx_int_t) v[8];
    q->remaining_tokens = (ngx_int_t) v[9];
    q->reset_tokens = (time_t) v[10];

    q->done(q);
    return;

invalid:

    if (reply->type == REDIS_REPLY_ERROR) {
        why.data = (u_char *) reply->str;
        why.len = reply->len;

    } else {
        ngx_str_set(&why, "unexpected reply");
    }

    ngx_http_aigw_quota_redis_error(qr, ngx_cycle->log, "script failed",
                                    &why);

    q->rc = NGX_ERROR;
    q->done(q);
}


/* a settle, sent now or kept for later */

void
ngx_http_aigw_quota_redis_settle(ngx_http_aigw_quota_t *q, int64_t dt,
    int64_t dc, ngx_log_t *log)
{
    u_char                         *p;
    size_t                          len;
    time_t                          second;
    ngx_str_t                      *a;
    ngx_uint_t                      i, argc;
    ngx_http_aigw_quota_redis_t    *qr;
    ngx_http_aigw_quota_pending_t  *pd;

    qr = q->zone;

    argc = q->nhold + 1;
    len = 5 * (NGX_INT64_LEN + 1);

    for (i = 0; i < q->nhold; i++) {
        len += sizeof("aigw:q:tenant:") - 1 + q->hold[i].id.len;
    }

    pd = ngx_alloc(sizeof(ngx_http_aigw_quota_pending_t)
                   + argc * sizeof(ngx_str_t) + len, log);
    if (pd == NULL) {
        return;
    }

    pd->qr = qr;
    pd->nkeys = q->nhold;
    pd->argc = argc;
    pd->argv = (ngx_str_t *) (pd + 1);

    p = (u_char *) (pd->argv + argc);
    a = pd->argv;

    for (i = 0; i < q->nhold; i++) {
        a->data = p;
        a->len = ngx_http_aigw_quota_redis_key(p, &q->hold[i]);
        p += a->len;
        a++;
    }

    /* without a reservation: the request and all it used, when it was */
    second = q->uncounted ? ngx_time() : q->second;

    a->data = p;
    p = ngx_sprintf(p, "%T %L %L %s", second, dt, dc,
                    q->uncounted ? "1 0" : "0 1");
    a->len = p - a->data;

    if (ngx_http_aigw_quota_redis_send(pd, log) == NGX_DECLINED) {
        ngx_http_aigw_quota_redis_keep(pd);
    }
}


/*
 * NGX_OK: sent, its reply frees it; NGX_DECLINED: not sent, to keep;
 * NGX_ERROR: freed
 */

static ngx_int_t
ngx_http_aigw_quota_redis_send(ngx_http_aigw_quota_pending_t *pd,
    ngx_log_t *log)
{
    void       *cmd;
    ngx_int_t   rc;

    rc = ngx_http_aigw_redis_eval(pd->qr->redis, pd->qr->settle, pd->nkeys,
                                  pd->argc, pd->argv,
                                  ngx_http_aigw_quota_redis_sent, pd, log,
                                  &cmd);

    if (rc == NGX_ERROR) {
        ngx_free(pd);
    }

    return rc;
}


static void
ngx_http_aigw_quota_redis_sent(void *data, redisReply *reply, ngx_int_t rc)
{
    ngx_http_aigw_quota_pending_t *pd = data;

    ngx_str_t                     why;
    ngx_http_aigw_quota_redis_t  *qr;

    qr = pd->qr;

    if (reply == NULL && rc == NGX_ERROR) {

        /* no connection, or lost: kept, to be sent again */

        ngx_http_aigw_quota_redis_error(qr, ngx_cycle->log,
                                        "settle failed, kept", NULL);
        ngx_http_aigw_quota_redis_keep(pd);
        return;
    }

    if (reply == NULL) {

        /* it may have been applied: not sent twice */

        ngx_http_aigw_quota_redis_error(qr, ngx_cycle->log,
                                        "settle timed out, lost", NULL);

    } else if (reply->type == REDIS_REPLY_ERROR) {
        why.data = (u_char *) reply->str;
        why.len = reply->len;
        ngx_http_aigw_quota_redis_error(qr, ngx_cycle->log,
                                        "settle failed", &why);
    }

    ngx_free(pd);
}


/* into the worker's queue, its oldest dropped when it is full */

static void
ngx_http_aigw_quota_redis_keep(ngx_http_aigw_quota_pending_t *pd)
{
    ngx_queue_t                    *qq;
    ngx_http_aigw_quota_redis_t    *qr;
    ngx_http_aigw_quota_pending_t  *old;

    qr = pd->qr;

    if (ngx_exiting || ngx_terminate) {
        ngx_free(pd);
        return;
    }

    if (qr->queued == NGX_HTTP_AIGW_QUOTA_QUEUE) {

        if (!qr->overflow) {
            qr->overflow = 1;
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "aigw quota: %ui settles wait for Redis, the "
                          "oldest are dropped", qr->queued);
        }

        qq = ngx_queue_head(&qr->queue);
        ngx_queue_remove(qq);
        old = ngx_queue_data(qq, ngx_http_aigw_quota_pending_t, queue);
        ngx_free(old);
        qr->queued--;
    }

    ngx_queue_insert_tail(&qr->queue, &pd->queue);
    qr->queued++;

    if (!qr->timer.timer_set) {
        qr->timer.log = ngx_cycle->log;
        ngx_add_timer(&qr->timer, NGX_HTTP_AIGW_QUOTA_RETRY);
    }
}


/* the queue's timer: what waited is sent while Redis takes it */

static void
ngx_http_aigw_quota_redis_replay(ngx_event_t *ev)
{
    ngx_int_t                       rc;
    ngx_uint_t                      sent;
    ngx_queue_t                    *qq;
    ngx_http_aigw_quota_redis_t    *qr;
    ngx_http_aigw_quota_pending_t  *pd;

    qr = ev->data;

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    sent = 0;

    while (!ngx_queue_empty(&qr->queue)) {

        qq = ngx_queue_head(&qr->queue);
        pd = ngx_queue_data(qq, ngx_http_aigw_quota_pending_t, queue);

        ngx_queue_remove(qq);
        qr->queued--;

        rc = ngx_http_aigw_quota_redis_send(pd, ev->log);

        if (rc == NGX_DECLINED) {
            ngx_queue_insert_head(&qr->queue, qq);
            qr->queued++;
            break;
        }

        /* sent, or freed */

        sent++;
    }

    if (sent) {
        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "aigw quota: %ui settles sent to Redis again, "
                      "%ui wait", sent, qr->queued);
    }

    if (ngx_queue_empty(&qr->queue)) {
        qr->overflow = 0;
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_AIGW_QUOTA_RETRY);
}


/* failures of quotas in Redis: at most a line each 10 s a worker */

static void
ngx_http_aigw_quota_redis_error(ngx_http_aigw_quota_redis_t *qr,
    ngx_log_t *log, const char *what, ngx_str_t *why)
{
    if (ngx_time() < qr->log_next) {
        return;
    }

    qr->log_next = ngx_time() + NGX_HTTP_AIGW_QUOTA_LOG_QUIET;

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "aigw quota: Redis %s%s%V (further errors for %ds not "
                  "logged)", what, why ? ": " : "",
                  why ? why : &(ngx_str_t) ngx_null_string,
                  NGX_HTTP_AIGW_QUOTA_LOG_QUIET);
}


/* "aigw:q:SCOPE:ID" */

static size_t
ngx_http_aigw_quota_redis_key(u_char *buf, ngx_http_aigw_quota_hold_t *h)
{
    return ngx_sprintf(buf, "aigw:q:%s:%V",
                       ngx_http_aigw_quota_redis_scopes[h->scope], &h->id)
           - buf;
}
