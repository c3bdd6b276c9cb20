
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_cache.h"


/*
 * The semantic index's durable copy, with aigw_cache_redis on: each
 * partition a Redis list "aigw:sem:HEX" (HEX its digest) of the entries'
 * 32-byte keys, each followed by its vector (float32, the host's byte
 * order), the newest last, trimmed to aigw_cache_semantic_partition,
 * expiring with the cache's TTL.  A store appends (sent, not waited for);
 * a lookup that finds its partition empty in the zone loads the list
 * into it while the embeddings are asked for.  The answers themselves
 * are the exact tier's Redis entries.  Errors are logged once in
 * NGX_HTTP_AIGW_SEM_R_QUIET seconds.
 */


#define NGX_HTTP_AIGW_SEM_R_QUIET   10
#define NGX_HTTP_AIGW_SEM_R_PREFIX  "aigw:sem:"


typedef struct {
    ngx_http_aigw_redis_t                   *redis;
    ngx_http_aigw_redis_script_t            *get;
    ngx_http_aigw_redis_script_t            *put;
    time_t                                   log_next;
} ngx_http_aigw_sem_redis_t;


typedef struct {
    ngx_http_aigw_sem_redis_t               *conf;
    ngx_shm_zone_t                          *zone;
    ngx_uint_t                               max;
    ngx_uint_t                               precision;
    ngx_http_aigw_cache_semantic_loaded_pt   handler;
    void                                    *data;
    u_char                                   part[NGX_HTTP_AIGW_CACHE_KEY_LEN];
} ngx_http_aigw_sem_redis_load_t;


static void ngx_http_aigw_sem_redis_got(void *data, redisReply *reply,
    ngx_int_t rc);
static void ngx_http_aigw_sem_redis_stored(void *data, redisReply *reply,
    ngx_int_t rc);
static void ngx_http_aigw_sem_redis_error(ngx_http_aigw_sem_redis_t *srd,
    ngx_log_t *log, const char *what);
static size_t ngx_http_aigw_sem_redis_key(u_char *p, u_char *part);


static ngx_str_t  ngx_http_aigw_sem_redis_get_lua = ngx_string(
    "return redis.call('LRANGE', KEYS[1], 0, -1)\n");

static ngx_str_t  ngx_http_aigw_sem_redis_put_lua = ngx_string(
    "redis.call('RPUSH', KEYS[1], ARGV[1])\n"
    "redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
    "return 1\n");


char *
ngx_http_aigw_cache_semantic_redis_init(ngx_conf_t *cf, void **field,
    struct ngx_http_aigw_redis_s *redis)
{
    ngx_http_aigw_sem_redis_t  *srd;

    if (*field) {
        return NGX_CONF_OK;
    }

    /* aigw_cache_redis has said it when redis is missing */

    srd = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_sem_redis_t));
    if (srd == NULL) {
        return NGX_CONF_ERROR;
    }

    srd->redis = redis;
    srd->get = ngx_http_aigw_redis_script(cf, redis,
                                          &ngx_http_aigw_sem_redis_get_lua);
    srd->put = ngx_http_aigw_redis_script(cf, redis,
                                          &ngx_http_aigw_sem_redis_put_lua);

    if (srd->get == NULL || srd->put == NULL) {
        return NGX_CONF_ERROR;
    }

    *field = srd;

    return NGX_CONF_OK;
}


/* the vector of an answer stored: appended, the oldest out past max */

void
ngx_http_aigw_cache_semantic_redis_put(void *conf, u_char *part, u_char *key,
    float *v, ngx_uint_t dim, ngx_uint_t max, time_t ttl, ngx_log_t *log)
{
    ngx_http_aigw_sem_redis_t *srd = conf;

    u_char     *p;
    void       *cmd;
    ngx_str_t   argv[4];
    u_char      name[sizeof(NGX_HTTP_AIGW_SEM_R_PREFIX)
                     + 2 * NGX_HTTP_AIGW_CACHE_KEY_LEN];
    u_char      n[NGX_INT_T_LEN], ex[NGX_TIME_T_LEN];
    u_char      value[NGX_HTTP_AIGW_CACHE_KEY_LEN
                      + NGX_HTTP_AIGW_SEMANTIC_DIM_MAX * sizeof(float)];

    argv[0].data = name;
    argv[0].len = ngx_http_aigw_sem_redis_key(name, part);

    p = ngx_cpymem(value, key, NGX_HTTP_AIGW_CACHE_KEY_LEN);
    p = ngx_cpymem(p, v, dim * sizeof(float));
    argv[1].data = value;
    argv[1].len = p - value;

    argv[2].data = n;
    argv[2].len = ngx_sprintf(n, "%ui", max) - n;

    argv[3].data = ex;
    argv[3].len = ngx_sprintf(ex, "%T", ttl) - ex;

    if (ngx_http_aigw_redis_eval(srd->redis, srd->put, 1, 4, argv,
                                 ngx_http_aigw_sem_redis_stored, srd, log,
                                 &cmd)
        == NGX_DECLINED)
    {
        ngx_http_aigw_sem_redis_error(srd, log, "not reachable");
    }
}


static void
ngx_http_aigw_sem_redis_stored(void *data, redisReply *reply, ngx_int_t rc)
{
    ngx_http_aigw_sem_redis_t *srd = data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_http_aigw_sem_redis_error(srd, ngx_cycle->log,
                                      reply ? "refused a vector"
                                      : rc == NGX_ETIMEDOUT ? "timed out"
                                      : "failed");
    }
}


/*
 * The list of partition part, into the zone, if the partition is still
 * empty there when it comes.  NGX_OK: handler will be called (and *cmd
 * may be cancelled until then); NGX_DECLINED: Redis cannot be asked now;
 * NGX_ERROR: no memory.
 */

ngx_int_t
ngx_http_aigw_cache_semantic_redis_load(void *conf, ngx_shm_zone_t *zone,
    u_char *part, ngx_uint_t max, ngx_uint_t precision, ngx_pool_t *pool,
    ngx_http_aigw_cache_semantic_loaded_pt handler, void *data,
    ngx_log_t *log, void **cmd)
{
    ngx_http_aigw_sem_redis_t *srd = conf;

    ngx_int_t                        rc;
    ngx_str_t                        arg;
    ngx_http_aigw_sem_redis_load_t  *ld;
    u_char                           name[sizeof(NGX_HTTP_AIGW_SEM_R_PREFIX)
                                          + 2 * NGX_HTTP_AIGW_CACHE_KEY_LEN];

    ld = ngx_palloc(pool, sizeof(ngx_http_aigw_sem_redis_load_t));
    if (ld == NULL) {
        return NGX_ERROR;
    }

    ld->conf = srd;
    ld->zone = zone;
    ld->max = max;
    ld->precision = precision;
    ld->handler = handler;
    ld->data = data;
    ngx_memcpy(ld->part, part, NGX_HTTP_AIGW_CACHE_KEY_LEN);

    arg.data = name;
    arg.len = ngx_http_aigw_sem_redis_key(name, part);

    rc = ngx_http_aigw_redis_eval(srd->redis, srd->get, 1, 1, &arg,
                                  ngx_http_aigw_sem_redis_got, ld, log, cmd);

    if (rc == NGX_DECLINED) {
        ngx_http_aigw_sem_redis_error(srd, log, "not reachable");
    }

    return rc;
}


static void
ngx_http_aigw_sem_redis_got(void *data, redisReply *reply, ngx_int_t rc)
{
    ngx_http_aigw_sem_redis_load_t *ld = data;

    size_t       len;
    ngx_uint_t   i, dim, bad;
    redisReply  *e;
    float        v[NGX_HTTP_AIGW_SEMANTIC_DIM_MAX];

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ngx_http_aigw_sem_redis_error(ld->conf, ngx_cycle->log,
                                      reply ? "gave an invalid list"
                                      : rc == NGX_ETIMEDOUT ? "timed out"
                                      : "failed");
        goto done;
    }

    /* another request of the node may have filled it meanwhile */

    if (reply->elements == 0
        || ngx_http_aigw_cache_zone_vector_count(ld->zone, ld->part))
    {
        goto done;
    }

    bad = 0;

    for (i = 0; i < reply->elements; i++) {
        e = reply->element[i];

        if (e->type != REDIS_REPLY_STRING
            || e->len <= NGX_HTTP_AIGW_CACHE_KEY_LEN)
        {
            bad++;
            continue;
        }

        len = e->len - NGX_HTTP_AIGW_CACHE_KEY_LEN;
        dim = len / sizeof(float);

        if (len % sizeof(float) || dim > NGX_HTTP_AIGW_SEMANTIC_DIM_MAX) {
            bad++;
            continue;
        }

        /* a copy: the reply's bytes are not aligned for floats */

        ngx_memcpy(v, e->str + NGX_HTTP_AIGW_CACHE_KEY_LEN, len);

        if (ngx_http_aigw_cache_semantic_normalize(v, dim) != NGX_OK) {
            bad++;
            continue;
        }

        if (ngx_http_aigw_cache_zone_vector_add(ld->zone, ld->part,
                                                (u_char *) e->str, v, dim,
                                                ld->precision, ld->max,
                                                ngx_cycle->log)
            != NGX_OK)
        {
            break;
        }
    }

    if (bad) {
        ngx_http_aigw_sem_redis_error(ld->conf, ngx_cycle->log,
                                      "gave invalid vectors");
    }

done:

    ld->handler(ld->data);
}


static void
ngx_http_aigw_sem_redis_error(ngx_http_aigw_sem_redis_t *srd, ngx_log_t *log,
    const char *what)
{
    if (ngx_time() < srd->log_next) {
        return;
    }

    srd->log_next = ngx_time() + NGX_HTTP_AIGW_SEM_R_QUIET;

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "aigw: semantic cache: Redis %s, the request goes on "
                  "without it (further errors for %ds not logged)", what,
                  NGX_HTTP_AIGW_SEM_R_QUIET);
}


static size_t
ngx_http_aigw_sem_redis_key(u_char *p, u_char *part)
{
    u_char  *d;

    d = ngx_cpymem(p, NGX_HTTP_AIGW_SEM_R_PREFIX,
                   sizeof(NGX_HTTP_AIGW_SEM_R_PREFIX) - 1);
    d = ngx_hex_dump(d, part, NGX_HTTP_AIGW_CACHE_KEY_LEN);

    return d - p;
}
