
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
 * The cache's second tier, shared by nodes: Redis through the hiredis
 * adapter (redis.c), asynchronous, every command bounded by aigw_redis's
 * timeout.  An entry is a string "aigw:cache:HEX", HEX the cache key, of
 * a header "aigw1 S CREATED\n" (S: 1 a stream, 0 JSON) and the answer,
 * set with EX the TTL.  Two scripts: one reads an entry and its TTL left,
 * one sets it (the header and the answer are joined by Redis, not
 * copied here).  Errors are logged once in NGX_HTTP_AIGW_CACHE_R_QUIET
 * seconds: a request never fails because of the cache.
 */


#define NGX_HTTP_AIGW_CACHE_R_QUIET   10       /* s between error lines */
#define NGX_HTTP_AIGW_CACHE_R_PREFIX  "aigw:cache:"


typedef struct {
    ngx_http_aigw_redis_t         *redis;
    ngx_http_aigw_redis_script_t  *get;
    ngx_http_aigw_redis_script_t  *set;
    time_t                         log_next;   /* the worker's own */
} ngx_http_aigw_cache_redis_t;


typedef struct {
    ngx_http_aigw_cache_redis_t       *conf;
    ngx_http_aigw_cache_redis_get_pt   handler;
    void                              *data;
} ngx_http_aigw_cache_redis_ask_t;


static void ngx_http_aigw_cache_redis_got(void *data, redisReply *reply,
    ngx_int_t rc);
static void ngx_http_aigw_cache_redis_stored(void *data, redisReply *reply,
    ngx_int_t rc);
static void ngx_http_aigw_cache_redis_error(ngx_http_aigw_cache_redis_t *cr,
    ngx_log_t *log, const char *what, redisReply *reply);
static size_t ngx_http_aigw_cache_redis_key(u_char *p, u_char *key);


static ngx_str_t  ngx_http_aigw_cache_redis_get_lua = ngx_string(
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return false end\n"
    "return {v, redis.call('TTL', KEYS[1])}\n");

static ngx_str_t  ngx_http_aigw_cache_redis_set_lua = ngx_string(
    "redis.call('SET', KEYS[1], ARGV[1] .. ARGV[2], 'EX', ARGV[3])\n"
    "return 1\n");


char *
ngx_http_aigw_cache_redis_init(ngx_conf_t *cf, void **field,
    struct ngx_http_aigw_redis_s *redis)
{
    ngx_http_aigw_cache_redis_t  *crd;

    if (*field) {
        return NGX_CONF_OK;
    }

    if (redis == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"aigw_cache_redis\" needs \"aigw_redis\" in "
                           "the http block");
        return NGX_CONF_ERROR;
    }

    crd = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_cache_redis_t));
    if (crd == NULL) {
        return NGX_CONF_ERROR;
    }

    crd->redis = redis;
    crd->get = ngx_http_aigw_redis_script(cf, redis,
                                          &ngx_http_aigw_cache_redis_get_lua);
    crd->set = ngx_http_aigw_redis_script(cf, redis,
                                          &ngx_http_aigw_cache_redis_set_lua);

    if (crd->get == NULL || crd->set == NULL) {
        return NGX_CONF_ERROR;
    }

    *field = crd;

    return NGX_CONF_OK;
}


/*
 * Asks Redis for the entry of key.  NGX_OK: handler will be called (and
 * *cmd may be cancelled until then); NGX_DECLINED: Redis cannot be asked
 * now, a miss; NGX_ERROR: no memory.
 */

ngx_int_t
ngx_http_aigw_cache_redis_get(void *conf, u_char *key, ngx_pool_t *pool,
    ngx_http_aigw_cache_redis_get_pt handler, void *data, ngx_log_t *log,
    void **cmd)
{
    ngx_http_aigw_cache_redis_t *crd = conf;

    ngx_int_t                         rc;
    ngx_str_t                         arg;
    ngx_http_aigw_cache_redis_ask_t  *ask;
    u_char                            name[sizeof(NGX_HTTP_AIGW_CACHE_R_PREFIX)
                                           + 2 * NGX_HTTP_AIGW_CACHE_KEY_LEN];

    ask = ngx_palloc(pool, sizeof(ngx_http_aigw_cache_redis_ask_t));
    if (ask == NULL) {
        return NGX_ERROR;
    }

    ask->conf = crd;
    ask->handler = handler;
    ask->data = data;

    arg.data = name;
    arg.len = ngx_http_aigw_cache_redis_key(name, key);

    rc = ngx_http_aigw_redis_eval(crd->redis, crd->get, 1, 1, &arg,
                                  ngx_http_aigw_cache_redis_got, ask, log,
                                  cmd);

    if (rc == NGX_DECLINED) {
        ngx_http_aigw_cache_redis_error(crd, log, "not reachable", NULL);
    }

    return rc;
}


static void
ngx_http_aigw_cache_redis_got(void *data, redisReply *reply, ngx_int_t rc)
{
    ngx_http_aigw_cache_redis_ask_t *ask = data;

    u_char       *p, *last, *nl;
    time_t        created, ttl;
    ngx_str_t     value;
    ngx_uint_t    stream;
    redisReply   *v, *t;

    if (reply == NULL) {
        ngx_http_aigw_cache_redis_error(ask->conf,
                                        ngx_cycle->log,
                                        rc == NGX_ETIMEDOUT
                                        ? "timed out" : "failed", NULL);
        ask->handler(ask->data, NULL, 0, 0, 0);
        return;
    }

    if (reply->type == REDIS_REPLY_NIL) {
        ask->handler(ask->data, NULL, 0, 0, 0);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        goto invalid;
    }

    v = reply->element[0];
    t = reply->element[1];

    if (v->type != REDIS_REPLY_STRING || t->type != REDIS_REPLY_INTEGER) {
        goto invalid;
    }

    /* "aigw1 S CREATED\n" and the answer */

    p = (u_char *) v->str;
    last = p + v->len;

    nl = ngx_strlchr(p, last, '\n');

    if (nl == NULL || nl - p < 9 || ngx_strncmp(p, "aigw1 ", 6) != 0
        || (p[6] != '0' && p[6] != '1') || p[7] != ' ')
    {
        goto invalid;
    }

    stream = (p[6] == '1');
    created = ngx_atotm(p + 8, nl - p - 8);

    if (created == NGX_ERROR || nl + 1 == last) {
        goto invalid;
    }

    /* -1: no expiry (set by hand), kept for a TTL's worth no longer */
    ttl = (t->integer > 0) ? (time_t) t->integer : 1;

    value.data = nl + 1;
    value.len = last - value.data;

    ask->handler(ask->data, &value, stream, created, ttl);
    return;

invalid:

    ngx_http_aigw_cache_redis_error(ask->conf,
                                    ngx_cycle->log, "gave an invalid entry",
                                    reply);

    ask->handler(ask->data, NULL, 0, 0, 0);
}


/* an answer stored: sent, never waited for */

void
ngx_http_aigw_cache_redis_put(void *conf, u_char *key, u_char *data,
    size_t len, ngx_uint_t stream, time_t ttl, ngx_log_t *log)
{
    ngx_http_aigw_cache_redis_t *crd = conf;

    u_char     *p;
    void       *cmd;
    ngx_str_t   argv[4];
    u_char      name[sizeof(NGX_HTTP_AIGW_CACHE_R_PREFIX)
                     + 2 * NGX_HTTP_AIGW_CACHE_KEY_LEN];
    u_char      head[sizeof("aigw1 1 \n") + NGX_TIME_T_LEN];
    u_char      ex[NGX_TIME_T_LEN];

    argv[0].data = name;
    argv[0].len = ngx_http_aigw_cache_redis_key(name, key);

    argv[1].data = head;
    p = ngx_sprintf(head, "aigw1 %d %T\n", stream ? 1 : 0, ngx_time());
    argv[1].len = p - head;

    argv[2].data = data;
    argv[2].len = len;

    argv[3].data = ex;
    p = ngx_sprintf(ex, "%T", ttl);
    argv[3].len = p - ex;

    if (ngx_http_aigw_redis_eval(crd->redis, crd->set, 1, 4, argv,
                                 ngx_http_aigw_cache_redis_stored, crd, log,
                                 &cmd)
        == NGX_DECLINED)
    {
        ngx_http_aigw_cache_redis_error(crd, log, "not reachable", NULL);
    }
}


static void
ngx_http_aigw_cache_redis_stored(void *data, redisReply *reply, ngx_int_t rc)
{
    ngx_http_aigw_cache_redis_t *crd = data;

    if (reply == NULL) {
        ngx_http_aigw_cache_redis_error(crd, ngx_cycle->log,
                                        rc == NGX_ETIMEDOUT
                                        ? "timed out" : "failed", NULL);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_aigw_cache_redis_error(crd, ngx_cycle->log, "refused a store",
                                        reply);
    }
}


static void
ngx_http_aigw_cache_redis_error(ngx_http_aigw_cache_redis_t *crd,
    ngx_log_t *log, const char *what, redisReply *reply)
{
    ngx_str_t  why;

    if (crd == NULL || ngx_time() < crd->log_next) {
        return;
    }

    crd->log_next = ngx_time() + NGX_HTTP_AIGW_CACHE_R_QUIET;

    ngx_str_null(&why);

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        why.data = (u_char *) reply->str;
        why.len = reply->len;
    }

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "aigw cache: Redis %s%s%V, the request goes on without "
                  "it (further errors for %ds not logged)", what,
                  why.len ? ": " : "", &why, NGX_HTTP_AIGW_CACHE_R_QUIET);
}


static size_t
ngx_http_aigw_cache_redis_key(u_char *p, u_char *key)
{
    u_char  *d;

    d = ngx_cpymem(p, NGX_HTTP_AIGW_CACHE_R_PREFIX,
                   sizeof(NGX_HTTP_AIGW_CACHE_R_PREFIX) - 1);
    d = ngx_hex_dump(d, key, NGX_HTTP_AIGW_CACHE_KEY_LEN);

    return d - p;
}
