
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_cache.h"


/*
 * The exact cache: the last access step looks the request's key up in
 * the shared zone; a hit is answered by the content handler without a
 * provider, through the filters as a provider's answer would go (usage
 * read, the usage chunk kept from a client that did not ask for it).
 * A whole, checked 200 is stored: a JSON answer from answer.c, a stream
 * collected as it passes and stored after its last event.
 */


#define NGX_HTTP_AIGW_CACHE_S_NONE      0
#define NGX_HTTP_AIGW_CACHE_S_MISS      1
#define NGX_HTTP_AIGW_CACHE_S_HIT       2
#define NGX_HTTP_AIGW_CACHE_S_BYPASS    3
#define NGX_HTTP_AIGW_CACHE_S_EXPIRED   4
#define NGX_HTTP_AIGW_CACHE_S_TEMPLATE  5   /* a hit by a template */
#define NGX_HTTP_AIGW_CACHE_S_SEMANTIC  6   /* a hit by a near vector */

/* the format of the key: a change makes every old entry a miss */
#define NGX_HTTP_AIGW_CACHE_VERSION     "aigw-cache-2"

/* the format of a semantic partition's digest */
#define NGX_HTTP_AIGW_CACHE_PART_VERSION  "aigw-semantic-1"

/* object members the key's walk may hold open at once */
#define NGX_HTTP_AIGW_CACHE_STACK       65536

/* namespace names up to this long have their digest kept */
#define NGX_HTTP_AIGW_CACHE_NS_MEMO     64

/* how often a request waiting for an identical one looks again (ms) */
#define NGX_HTTP_AIGW_CACHE_POLL        20


typedef struct {
    ngx_uint_t                    status;
    time_t                        max_age;    /* Cache-Control's, or -1 */
    ngx_event_t                   wait;       /* for a locked entry */
    ngx_msec_t                    waited;
    u_char                        key[NGX_HTTP_AIGW_CACHE_KEY_LEN];
    ngx_http_aigw_cache_entry_t   entry;      /* of a hit */

    u_char                       *buf;        /* a stream collected */
    size_t                        len;
    size_t                        size;

    unsigned                      store:1;
    unsigned                      template:1; /* keyed by a template */
    unsigned                      locked:1;   /* holds the entry's lock */
    unsigned                      waiting:1;
    unsigned                      overflow:1;

    /* the Redis second tier (cache_redis.c) */
    ngx_http_request_t           *request;
    void                         *cmd;        /* a GET in flight */
    ngx_int_t                     zone_rc;    /* the zone's answer */
    unsigned                      asked:1;    /* Redis was asked */
    unsigned                      redis_hit:1;

    /* the semantic tier (cache_semantic.c) */
    void                         *semantic;   /* its request */
    unsigned                      semantic_tried:1;
    unsigned                      semantic_over:1;
    unsigned                      semantic_hit:1;
    unsigned                      semantic_fetch:1;  /* from Redis */
    u_char                        semantic_key[NGX_HTTP_AIGW_CACHE_KEY_LEN];
} ngx_http_aigw_cache_req_t;


static ngx_int_t ngx_http_aigw_cache_key(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_loc_conf_t *alcf, u_char *key,
    ngx_uint_t *template, u_char *subst);

/* cache_semantic.c */
char *ngx_http_aigw_cache_semantic_merge(ngx_conf_t *cf,
    ngx_http_aigw_loc_conf_t *prev, ngx_http_aigw_loc_conf_t *conf);
ngx_int_t ngx_http_aigw_cache_semantic_ask(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, void **data);
ngx_int_t ngx_http_aigw_cache_semantic_find(ngx_http_request_t *r,
    void *data, u_char *key);
void ngx_http_aigw_cache_semantic_put(ngx_http_request_t *r, void *data,
    u_char *key);
void ngx_http_aigw_cache_semantic_drop(ngx_http_request_t *r, void *data,
    u_char *key);
static ngx_int_t ngx_http_aigw_cache_semantic_result(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_cache_req_t *cr);
static ngx_int_t ngx_http_aigw_cache_semantic_hit(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_cache_req_t *cr);
static ngx_int_t ngx_http_aigw_cache_semantic_fetch(ngx_http_request_t *r,
    ngx_http_aigw_cache_req_t *cr, u_char *key);
static void ngx_http_aigw_cache_semantic_fetched(void *data,
    ngx_str_t *value, ngx_uint_t stream, time_t created, time_t ttl);

/* cache_template.c */
ngx_int_t ngx_http_aigw_cache_template_match(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_array_t *templates,
    ngx_http_aigw_cache_key_t *k);
static ngx_int_t ngx_http_aigw_cache_lookup(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_cache_req_t *cr);
static ngx_int_t ngx_http_aigw_cache_result(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_cache_req_t *cr, ngx_int_t rc);
static ngx_int_t ngx_http_aigw_cache_redis_ask(ngx_http_request_t *r,
    ngx_http_aigw_cache_req_t *cr);
static ngx_int_t ngx_http_aigw_cache_redis_wait(ngx_http_request_t *r,
    ngx_http_aigw_cache_req_t *cr, u_char *key,
    ngx_http_aigw_cache_redis_get_pt handler);
static void ngx_http_aigw_cache_redis_answer(void *data, ngx_str_t *value,
    ngx_uint_t stream, time_t created, time_t ttl);
static void ngx_http_aigw_cache_resume(ngx_http_request_t *r);
static void ngx_http_aigw_cache_wake(ngx_event_t *ev);
static ngx_int_t ngx_http_aigw_cache_purge_handler(ngx_http_request_t *r);
static void ngx_http_aigw_cache_cleanup(void *data);
static void ngx_http_aigw_cache_control(ngx_http_request_t *r,
    ngx_uint_t *no_cache, ngx_uint_t *no_store, time_t *max_age);
static void ngx_http_aigw_cache_put(ngx_http_request_t *r,
    ngx_http_aigw_cache_req_t *cr, u_char *data, size_t len,
    ngx_uint_t stream);
static void ngx_http_aigw_cache_avoided(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);


static ngx_str_t  ngx_http_aigw_cache_statuses[] = {
    ngx_null_string,
    ngx_string("MISS"),
    ngx_string("HIT"),
    ngx_string("BYPASS"),
    ngx_string("EXPIRED"),
    ngx_string("TEMPLATE_HIT"),
    ngx_string("SEMANTIC_HIT")
};


/* a hit by a near vector or a template says so */
#define ngx_http_aigw_cache_shown(cr)                                         \
    (((cr)->status == NGX_HTTP_AIGW_CACHE_S_HIT && (cr)->semantic_hit)        \
     ? NGX_HTTP_AIGW_CACHE_S_SEMANTIC                                         \
     : ((cr)->status == NGX_HTTP_AIGW_CACHE_S_HIT && (cr)->template)          \
     ? NGX_HTTP_AIGW_CACHE_S_TEMPLATE : (cr)->status)


/* fields that do not change the answer, unless aigw_cache_exclude says */
/* the last namespace keyed and its digest, in this worker */
static size_t  ngx_http_aigw_cache_ns_len = (size_t) -1;
static u_char  ngx_http_aigw_cache_ns_name[NGX_HTTP_AIGW_CACHE_NS_MEMO];
static u_char  ngx_http_aigw_cache_ns_digest[NGX_HTTP_AIGW_CACHE_KEY_LEN];


static ngx_str_t  ngx_http_aigw_cache_exclude[] = {
    ngx_string("user"),
    ngx_string("metadata"),
    ngx_string("stream"),
    ngx_string("stream_options")
};


/* aigw_cache_zone NAME:SIZE; */

char *
ngx_http_aigw_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_main_conf_t *amcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (ngx_http_aigw_auth_sha256(cf, amcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_aigw_cache_zone_add(cf, &amcf->cache_zone, &value[1]);
}


/*
 * aigw_cache_purge: a location where a POST (or DELETE) with
 * ?namespace=NAME purges that namespace (no argument: the empty, default
 * one): its generation, part of every key, goes up by one, and its old
 * entries are never found again; they age out of the zone.
 */

char *
ngx_http_aigw_cache_purge(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate";
    }

    clcf->handler = ngx_http_aigw_cache_purge_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigw_cache_purge_handler(ngx_http_request_t *r)
{
    u_char                     *p, *d;
    size_t                      len;
    uint64_t                    g;
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_str_t                   arg, ns;
    ngx_chain_t                 out;
    ngx_http_aigw_cache_key_t   k;
    ngx_http_aigw_main_conf_t  *amcf;
    u_char                      nsd[NGX_HTTP_AIGW_CACHE_KEY_LEN];

    if (!(r->method & (NGX_HTTP_POST|NGX_HTTP_DELETE))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    if (amcf->cache_zone == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: aigw_cache_purge without an aigw_cache_zone");
        return NGX_HTTP_NOT_FOUND;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    ngx_str_null(&ns);

    if (ngx_http_arg(r, (u_char *) "namespace", 9, &arg) == NGX_OK) {
        ns.data = ngx_pnalloc(r->pool, arg.len);
        if (ns.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = arg.data;
        d = ns.data;
        ngx_unescape_uri(&d, &p, arg.len, NGX_UNESCAPE_URI);
        ns.len = d - ns.data;
    }

    ngx_memzero(&k, sizeof(ngx_http_aigw_cache_key_t));
    k.md = amcf->sha256;
    k.md_ctx = amcf->sha256_ctx;

    if (ngx_http_aigw_cache_key_digest(&k, 'g', ns.data, ns.len, nsd)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    g = ngx_http_aigw_cache_zone_generation(amcf->cache_zone, nsd, 1);

    if (g == (uint64_t) -1) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: cache namespace \"%V\" not purged: %d "
                      "namespaces were purged already", &ns,
                      NGX_HTTP_AIGW_CACHE_NS);
        return NGX_HTTP_INSUFFICIENT_STORAGE;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "aigw: cache namespace \"%V\" purged, generation %uL",
                  &ns, g);

    len = sizeof("{\"namespace\":\"\",\"generation\":}") - 1
          + ns.len + ngx_escape_json(NULL, ns.data, ns.len) + NGX_INT64_LEN;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(b->last, "{\"namespace\":\"",
                   sizeof("{\"namespace\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, ns.data, ns.len);
    b->last = ngx_sprintf(p, "\",\"generation\":%uL}", g);
    b->last_buf = 1;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
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


char *
ngx_http_aigw_cache_merge(ngx_conf_t *cf, ngx_http_aigw_loc_conf_t *prev,
    ngx_http_aigw_loc_conf_t *conf)
{
    ngx_http_aigw_main_conf_t  *amcf;

    ngx_conf_merge_value(conf->cache, prev->cache, 0);
    ngx_conf_merge_sec_value(conf->cache_ttl, prev->cache_ttl, 300);
    ngx_conf_merge_size_value(conf->cache_max_size, prev->cache_max_size,
                              256 * 1024);
    ngx_conf_merge_ptr_value(conf->cache_bypass, prev->cache_bypass, NULL);
    ngx_conf_merge_ptr_value(conf->cache_exclude, prev->cache_exclude, NULL);
    ngx_conf_merge_uint_value(conf->cache_scope, prev->cache_scope,
                              NGX_HTTP_AIGW_CACHE_TENANT);
    ngx_conf_merge_ptr_value(conf->cache_namespace, prev->cache_namespace,
                             NULL);
    ngx_conf_merge_ptr_value(conf->cache_templates, prev->cache_templates,
                             NULL);
    ngx_conf_merge_value(conf->cache_lock, prev->cache_lock, 1);
    ngx_conf_merge_msec_value(conf->cache_lock_timeout,
                              prev->cache_lock_timeout, 5000);
    ngx_conf_merge_value(conf->cache_redis, prev->cache_redis, 0);

    if (ngx_http_aigw_cache_semantic_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigw_module);

    if (conf->cache_redis
        && ngx_http_aigw_cache_redis_init(cf, &amcf->cache_redis,
                                          amcf->redis)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->cache && amcf->cache_zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"aigw_cache\" is on, but no \"aigw_cache_zone\" "
                           "is defined");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the access step, after quota: a hit is answered, a miss may be stored */

ngx_int_t
ngx_http_aigw_cache_handler(ngx_http_request_t *r)
{
    time_t                      max_age;
    ngx_int_t                   rc;
    ngx_uint_t                  no_cache, no_store, template;
    ngx_http_aigw_ctx_t        *ctx;
    ngx_http_aigw_cache_req_t  *cr;
    ngx_http_aigw_loc_conf_t   *alcf;
    ngx_http_aigw_main_conf_t  *amcf;
    ngx_http_aigw_cache_counters_t  *cnt;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    if (!alcf->cache || amcf->cache_zone == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    cr = ctx->cache;

    if (cr) {
        if (cr->waiting) {
            return NGX_DONE;
        }

        if (cr->semantic_fetch) {
            /* resumed: Redis answered for a semantic hit's answer */
            cr->semantic_fetch = 0;

            if (cr->semantic_hit) {
                return ngx_http_aigw_cache_semantic_hit(r, ctx, cr);
            }

            /* nowhere: that vector is nobody's match any more */
            ngx_http_aigw_cache_semantic_drop(r, cr->semantic,
                                              cr->semantic_key);

            cnt = ngx_http_aigw_cache_zone_counters(amcf->cache_zone);
            (void) ngx_atomic_fetch_add(&cnt->semantic_misses, 1);

            return ngx_http_aigw_cache_result(r, ctx, cr, cr->zone_rc);
        }

        if (cr->semantic && !cr->semantic_over) {
            /* resumed: the embeddings came, or failed */
            return ngx_http_aigw_cache_semantic_result(r, ctx, cr);
        }

        if (cr->asked) {
            /* resumed: Redis answered, or did not in time */
            return ngx_http_aigw_cache_result(r, ctx, cr,
                                              cr->redis_hit
                                              ? NGX_HTTP_AIGW_CACHE_FOUND
                                              : cr->zone_rc);
        }

        /* resumed: the wait for an identical request is over */
        return ngx_http_aigw_cache_lookup(r, ctx, cr);
    }

    if (ctx->endpoint != NGX_HTTP_AIGW_EP_CHAT
        && ctx->endpoint != NGX_HTTP_AIGW_EP_COMPLETIONS
        && ctx->endpoint != NGX_HTTP_AIGW_EP_EMBEDDINGS
        && ctx->endpoint != NGX_HTTP_AIGW_EP_MESSAGES)
    {
        return NGX_DECLINED;
    }

    if (ctx->body.len == 0 || ctx->ncandidates == 0) {
        return NGX_DECLINED;
    }

    cr = ngx_pcalloc(r->pool, sizeof(ngx_http_aigw_cache_req_t));
    if (cr == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->cache = cr;
    cnt = ngx_http_aigw_cache_zone_counters(amcf->cache_zone);

    cr->status = NGX_HTTP_AIGW_CACHE_S_BYPASS;

    if (alcf->cache_bypass
        && ngx_http_test_predicates(r, alcf->cache_bypass) == NGX_DECLINED)
    {
        (void) ngx_atomic_fetch_add(&cnt->bypasses, 1);
        return NGX_DECLINED;
    }

    ngx_http_aigw_cache_control(r, &no_cache, &no_store, &max_age);

    rc = ngx_http_aigw_cache_key(r, ctx, alcf, cr->key, &template, NULL);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: request body too large or deep for a cache "
                      "key, not cached");
        (void) ngx_atomic_fetch_add(&cnt->bypasses, 1);
        return NGX_DECLINED;
    }

    cr->store = !no_store;
    cr->template = template;

    if (no_cache) {
        (void) ngx_atomic_fetch_add(&cnt->bypasses, 1);
        return NGX_DECLINED;
    }

    cr->max_age = max_age;

    return ngx_http_aigw_cache_lookup(r, ctx, cr);
}


/*
 * The zone's answer: a hit; a miss, which leaves a lock when it may
 * store; or a lock of an identical request in flight, whose answer is
 * waited for (polled on a timer) for at most aigw_cache_lock_timeout.
 */

static ngx_int_t
ngx_http_aigw_cache_lookup(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_cache_req_t *cr)
{
    time_t                      lock;
    ngx_int_t                   rc;
    ngx_pool_cleanup_t         *cln;
    ngx_http_aigw_loc_conf_t   *alcf;
    ngx_http_aigw_main_conf_t  *amcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    lock = 0;

    if (alcf->cache_lock && cr->store
        && cr->waited < alcf->cache_lock_timeout)
    {
        /* a lock outlives the wait: the waiters give up first */
        lock = (time_t) (alcf->cache_lock_timeout / 1000) + 2;
    }

    rc = ngx_http_aigw_cache_zone_get(amcf->cache_zone, cr->key,
                                      cr->max_age, lock, r->pool,
                                      &cr->entry);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_HTTP_AIGW_CACHE_PENDING) {

        if (cr->waited < alcf->cache_lock_timeout && alcf->cache_lock) {

            if (cr->wait.handler == NULL) {
                cln = ngx_pool_cleanup_add(r->pool, 0);
                if (cln == NULL) {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }

                cln->handler = ngx_http_aigw_cache_cleanup;
                cln->data = cr;

                cr->wait.handler = ngx_http_aigw_cache_wake;
                cr->wait.data = r;
                cr->wait.log = r->connection->log;
                cr->wait.cancelable = 1;
            }

            ngx_add_timer(&cr->wait, NGX_HTTP_AIGW_CACHE_POLL);

            cr->waited += NGX_HTTP_AIGW_CACHE_POLL;
            cr->waiting = 1;
            r->main->count++;

            return NGX_DONE;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: an identical request still runs after "
                      "aigw_cache_lock_timeout, going on alone");

        rc = NGX_HTTP_AIGW_CACHE_NONE;
    }

    cr->locked = cr->entry.locked;

    if (rc != NGX_HTTP_AIGW_CACHE_FOUND && alcf->cache_redis && !cr->asked) {
        cr->zone_rc = rc;

        rc = ngx_http_aigw_cache_redis_ask(r, cr);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_OK) {
            return NGX_DONE;
        }

        rc = cr->zone_rc;
    }

    return ngx_http_aigw_cache_result(r, ctx, cr, rc);
}


/* a hit is replayed (in the client's mode), a miss goes on */

static ngx_int_t
ngx_http_aigw_cache_result(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_cache_req_t *cr, ngx_int_t rc)
{
    ngx_int_t                        src;
    ngx_str_t                        other;
    ngx_http_aigw_loc_conf_t        *alcf;
    ngx_http_aigw_main_conf_t       *amcf;
    ngx_http_aigw_cache_counters_t  *cnt;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    cnt = ngx_http_aigw_cache_zone_counters(amcf->cache_zone);

    if (rc == NGX_HTTP_AIGW_CACHE_FOUND
        && cr->entry.stream != (ngx_uint_t) ctx->stream)
    {
        /* stored in the other mode: the format makes one of the other */

        rc = ctx->format->convert
             ? ctx->format->convert(r, ctx, &cr->entry.data, &other)
             : NGX_DECLINED;

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_OK) {
            cr->entry.data = other;
            cr->entry.stream = ctx->stream;
            rc = NGX_HTTP_AIGW_CACHE_FOUND;

        } else {
            rc = NGX_HTTP_AIGW_CACHE_NONE;
            cr->semantic_hit = 0;
        }
    }

    if (rc != NGX_HTTP_AIGW_CACHE_FOUND && alcf->cache_semantic.len
        && !cr->semantic_tried)
    {
        /* the semantic tier: the step waits for the embeddings */

        cr->semantic_tried = 1;

        src = ngx_http_aigw_cache_semantic_ask(r, ctx, &cr->semantic);

        if (src == NGX_DONE) {
            cr->zone_rc = rc;
            return NGX_DONE;
        }

        if (src == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (src >= NGX_HTTP_SPECIAL_RESPONSE) {
            return src;
        }
    }

    if (rc == NGX_HTTP_AIGW_CACHE_FOUND) {
        cr->status = NGX_HTTP_AIGW_CACHE_S_HIT;
        cr->store = 0;

        (void) ngx_atomic_fetch_add(&cnt->hits, 1);

        /* no provider: the tokens reserved are given back now */
        ngx_http_aigw_quota_settle(r);

        return NGX_DECLINED;
    }

    cr->status = (rc == NGX_HTTP_AIGW_CACHE_EXPIRED)
                 ? NGX_HTTP_AIGW_CACHE_S_EXPIRED : NGX_HTTP_AIGW_CACHE_S_MISS;

    (void) ngx_atomic_fetch_add(&cnt->misses, 1);

    return NGX_DECLINED;
}


/*
 * The semantic tier's answer: the nearest stored answer, as near as
 * the threshold, is a hit replayed as the exact tier's are; else the
 * miss stands, and the vector is indexed with the answer stored.
 */

static ngx_int_t
ngx_http_aigw_cache_semantic_result(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_cache_req_t *cr)
{
    ngx_int_t                        rc;
    ngx_http_aigw_loc_conf_t        *alcf;
    ngx_http_aigw_main_conf_t       *amcf;
    ngx_http_aigw_cache_counters_t  *cnt;
    u_char                           key[NGX_HTTP_AIGW_CACHE_KEY_LEN];

    rc = ngx_http_aigw_cache_semantic_find(r, cr->semantic, key);

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    cr->semantic_over = 1;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    cnt = ngx_http_aigw_cache_zone_counters(amcf->cache_zone);

    if (rc == NGX_DONE) {
        /* a vector from Redis whose answer the zone has not: Redis's */

        if (alcf->cache_redis) {
            rc = ngx_http_aigw_cache_semantic_fetch(r, cr, key);

            if (rc == NGX_ERROR) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            if (rc == NGX_OK) {
                return NGX_DONE;
            }
        }

        rc = NGX_DECLINED;
    }

    if (rc == NGX_OK) {
        rc = ngx_http_aigw_cache_zone_get(amcf->cache_zone, key, cr->max_age,
                                          0, r->pool, &cr->entry);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_HTTP_AIGW_CACHE_FOUND) {
            cr->semantic_hit = 1;
            return ngx_http_aigw_cache_semantic_hit(r, ctx, cr);
        }
    }

    (void) ngx_atomic_fetch_add(&cnt->semantic_misses, 1);

    return ngx_http_aigw_cache_result(r, ctx, cr, cr->zone_rc);
}


/* a semantic hit's entry, in cr->entry, replayed as the exact tier's */

static ngx_int_t
ngx_http_aigw_cache_semantic_hit(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_cache_req_t *cr)
{
    ngx_int_t                        rc;
    ngx_http_aigw_main_conf_t       *amcf;
    ngx_http_aigw_cache_counters_t  *cnt;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    cnt = ngx_http_aigw_cache_zone_counters(amcf->cache_zone);

    rc = ngx_http_aigw_cache_result(r, ctx, cr, NGX_HTTP_AIGW_CACHE_FOUND);

    if (cr->semantic_hit) {
        (void) ngx_atomic_fetch_add(&cnt->semantic_hits, 1);

        /* nothing is stored under the request's own key */
        if (cr->locked) {
            ngx_http_aigw_cache_zone_unlock(amcf->cache_zone, cr->key);
            cr->locked = 0;
        }

    } else {
        /* in the other mode, and not convertible: a miss */
        (void) ngx_atomic_fetch_add(&cnt->semantic_misses, 1);
    }

    return rc;
}


/*
 * The answer of a semantic hit from Redis: the step waits for it as for
 * the exact tier's (aigw_redis's timeout at most).  NGX_DECLINED: Redis
 * cannot be asked now.
 */

static ngx_int_t
ngx_http_aigw_cache_semantic_fetch(ngx_http_request_t *r,
    ngx_http_aigw_cache_req_t *cr, u_char *key)
{
    ngx_int_t  rc;

    ngx_memcpy(cr->semantic_key, key, NGX_HTTP_AIGW_CACHE_KEY_LEN);

    rc = ngx_http_aigw_cache_redis_wait(r, cr, cr->semantic_key,
                                        ngx_http_aigw_cache_semantic_fetched);
    if (rc == NGX_OK) {
        cr->semantic_fetch = 1;
    }

    return rc;
}


static void
ngx_http_aigw_cache_semantic_fetched(void *data, ngx_str_t *value,
    ngx_uint_t stream, time_t created, time_t ttl)
{
    ngx_http_aigw_cache_req_t *cr = data;

    ngx_http_request_t         *r;
    ngx_http_aigw_main_conf_t  *amcf;

    r = cr->request;
    cr->cmd = NULL;
    cr->waiting = 0;

    if (value
        && (cr->max_age < 0 || ngx_time() - created <= cr->max_age))
    {
        cr->entry.data.data = ngx_pnalloc(r->pool, value->len);

        if (cr->entry.data.data) {
            ngx_memcpy(cr->entry.data.data, value->data, value->len);
            cr->entry.data.len = value->len;
            cr->entry.stream = stream;
            cr->entry.created = ngx_min(created, ngx_time());
            cr->semantic_hit = 1;

            amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

            (void) ngx_http_aigw_cache_zone_put(amcf->cache_zone,
                                                cr->semantic_key,
                                                value->data, value->len,
                                                stream, ttl,
                                                r->connection->log);
        }
    }

    ngx_http_aigw_cache_resume(r);
}


/*
 * A zone miss asks Redis: the step waits (NGX_DONE) for the answer or
 * for aigw_redis's timeout, whichever comes first.  NGX_DECLINED: Redis
 * cannot be asked now, the miss stands.
 */

static ngx_int_t
ngx_http_aigw_cache_redis_ask(ngx_http_request_t *r,
    ngx_http_aigw_cache_req_t *cr)
{
    cr->asked = 1;

    return ngx_http_aigw_cache_redis_wait(r, cr, cr->key,
                                          ngx_http_aigw_cache_redis_answer);
}


/*
 * Asks Redis for the entry of key; the request waits for the handler,
 * called once with the answer or at aigw_redis's timeout.  NGX_DECLINED:
 * Redis cannot be asked now.
 */

static ngx_int_t
ngx_http_aigw_cache_redis_wait(ngx_http_request_t *r,
    ngx_http_aigw_cache_req_t *cr, u_char *key,
    ngx_http_aigw_cache_redis_get_pt handler)
{
    ngx_int_t                   rc;
    ngx_pool_cleanup_t         *cln;
    ngx_http_aigw_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cr->request = r;

    rc = ngx_http_aigw_cache_redis_get(amcf->cache_redis, key, r->pool,
                                       handler, cr, r->connection->log,
                                       &cr->cmd);
    if (rc != NGX_OK) {
        cr->cmd = NULL;
        return rc;
    }

    /* a request gone first cancels the command (cache_cleanup) */
    cln->handler = ngx_http_aigw_cache_cleanup;
    cln->data = cr;

    cr->waiting = 1;
    r->main->count++;

    return NGX_OK;
}


/* Redis's answer: a hit fills the zone, then the phases go on */

static void
ngx_http_aigw_cache_redis_answer(void *data, ngx_str_t *value,
    ngx_uint_t stream, time_t created, time_t ttl)
{
    ngx_http_aigw_cache_req_t *cr = data;

    time_t                      age;
    ngx_http_request_t         *r;
    ngx_http_aigw_main_conf_t  *amcf;

    r = cr->request;
    cr->cmd = NULL;
    cr->waiting = 0;

    if (value) {
        age = ngx_time() - created;

        if (cr->max_age >= 0 && age > cr->max_age) {
            /* too old for this client: the miss stands, its answer stores */
            cr->zone_rc = NGX_HTTP_AIGW_CACHE_EXPIRED;

        } else {
            cr->entry.data.data = ngx_pnalloc(r->pool, value->len);

            if (cr->entry.data.data) {
                ngx_memcpy(cr->entry.data.data, value->data, value->len);
                cr->entry.data.len = value->len;
                cr->entry.stream = stream;
                cr->entry.created = ngx_min(created, ngx_time());
                cr->redis_hit = 1;

                amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

                if (ngx_http_aigw_cache_zone_put(amcf->cache_zone, cr->key,
                                                 value->data, value->len,
                                                 stream, ttl,
                                                 r->connection->log)
                    == NGX_OK)
                {
                    cr->locked = 0;
                }
            }
        }
    }

    ngx_http_aigw_cache_resume(r);
}


static void
ngx_http_aigw_cache_resume(ngx_http_request_t *r)
{
    ngx_connection_t  *c;

    c = r->connection;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);

    /* the reference the wait took */
    ngx_http_finalize_request(r, NGX_DONE);

    ngx_http_run_posted_requests(c);
}


/* the poll's timer: the phases go on where the step waited */

static void
ngx_http_aigw_cache_wake(ngx_event_t *ev)
{
    ngx_http_request_t         *r;
    ngx_http_aigw_ctx_t        *ctx;
    ngx_http_aigw_cache_req_t  *cr;

    r = ev->data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    cr = ctx->cache;

    cr->waiting = 0;

    ngx_http_aigw_cache_resume(r);
}


static void
ngx_http_aigw_cache_cleanup(void *data)
{
    ngx_http_aigw_cache_req_t  *cr = data;

    if (cr->wait.timer_set) {
        ngx_del_timer(&cr->wait);
    }

    if (cr->cmd) {
        ngx_http_aigw_redis_cancel(cr->cmd);
        cr->cmd = NULL;
    }
}


/*
 * SHA-256 over the key's version, the client's format and endpoint, the
 * model asked for (a route's name, or the model's after aliasing), the
 * scope, the namespace and its generation, and the body's canonical form.
 */

/*
 * The semantic tier's partition: the key with the string whose opening
 * quote is text (the last user message's) left out, under a version of
 * its own, so that it is never an exact key.
 */

ngx_int_t
ngx_http_aigw_cache_partition(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    u_char *text, u_char *part)
{
    ngx_int_t                  rc;
    ngx_uint_t                 template;
    ngx_http_aigw_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    rc = ngx_http_aigw_cache_key(r, ctx, alcf, part, &template, text);

    return (rc == NGX_OK) ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_http_aigw_cache_key(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_loc_conf_t *alcf, u_char *key, ngx_uint_t *template,
    u_char *subst)
{
    size_t                      n;
    u_char                     *p;
    ngx_int_t                   rc;
    ngx_str_t                   ns, *model, *scope, *ep;
    unsigned int                len;
    ngx_http_aigw_cache_key_t   k;
    uint64_t                    generation;
    ngx_http_aigw_main_conf_t  *amcf;
    static ngx_str_t  global = ngx_string("*");

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    ngx_memzero(&k, sizeof(ngx_http_aigw_cache_key_t));

    k.md = amcf->sha256;
    k.md_ctx = amcf->sha256_ctx;

    if (alcf->cache_exclude) {
        k.exclude = alcf->cache_exclude->elts;
        k.nexclude = alcf->cache_exclude->nelts;

    } else {
        k.exclude = ngx_http_aigw_cache_exclude;
        k.nexclude = sizeof(ngx_http_aigw_cache_exclude)
                     / sizeof(ngx_str_t);
    }

    model = ctx->route_name.len ? &ctx->route_name
                                : &ctx->candidates[0]->name;
    scope = (alcf->cache_scope == NGX_HTTP_AIGW_CACHE_TENANT)
            ? &ctx->tenant : &global;
    ep = ngx_http_aigw_endpoint_name(ctx->endpoint);

    /* the body's strings, then the key's parts with their lengths */

    ngx_str_null(&ns);

    if (alcf->cache_namespace
        && ngx_http_complex_value(r, alcf->cache_namespace, &ns) != NGX_OK)
    {
        return NGX_ERROR;
    }

    k.scratch = ngx_pnalloc(r->pool, ngx_max(ctx->body.len,
                                 sizeof(NGX_HTTP_AIGW_CACHE_PART_VERSION)
                                 + ctx->format->name.len + ep->len
                                 + model->len + scope->len + ns.len
                                 + 6 * NGX_INT64_LEN + 16));
    if (k.scratch == NULL) {
        return NGX_ERROR;
    }

    /* a member takes 4 bytes at least ("":0): room for all open at once */

    n = ngx_min(ctx->body.len / 4 + 8, NGX_HTTP_AIGW_CACHE_STACK);

    k.stack = ngx_palloc(r->pool, n * NGX_HTTP_AIGW_CACHE_KEY_LEN);
    if (k.stack == NULL) {
        return NGX_ERROR;
    }

    k.size = n;

    *template = 0;

    if (subst) {
        /* a partition: the text is one fixed digest, all zeros */
        k.subst = subst;

    } else if (alcf->cache_templates) {
        rc = ngx_http_aigw_cache_template_match(r, ctx, alcf->cache_templates,
                                                &k);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        *template = (rc == NGX_OK);
    }

    /*
     * The namespace's generation: a purge makes its old keys unreachable.
     * The digest of the last namespace is kept: it is most often the one.
     */

    if (ns.len > NGX_HTTP_AIGW_CACHE_NS_MEMO
        || ns.len != ngx_http_aigw_cache_ns_len
        || (ns.len
            && ngx_memcmp(ns.data, ngx_http_aigw_cache_ns_name, ns.len) != 0))
    {
        if (ngx_http_aigw_cache_key_digest(&k, 'g', ns.data, ns.len,
                                           ngx_http_aigw_cache_ns_digest)
            != NGX_OK)
        {
            ngx_http_aigw_cache_ns_len = (size_t) -1;
            return NGX_ERROR;
        }

        if (ns.len <= NGX_HTTP_AIGW_CACHE_NS_MEMO) {
            if (ns.len) {
                ngx_memcpy(ngx_http_aigw_cache_ns_name, ns.data, ns.len);
            }

            ngx_http_aigw_cache_ns_len = ns.len;

        } else {
            ngx_http_aigw_cache_ns_len = (size_t) -1;
        }
    }

    generation = ngx_http_aigw_cache_zone_generation(amcf->cache_zone,
                                                 ngx_http_aigw_cache_ns_digest,
                                                 0);

    /*
     * One SHA-256: each part with its length, so that no two tuples give
     * the same bytes, then the body's canonical form.
     */

    p = ngx_sprintf(k.scratch, "%s %uz:%V %uz:%V %uz:%V %uz:%V %uz:%V g%uL ",
                    subst ? NGX_HTTP_AIGW_CACHE_PART_VERSION
                          : NGX_HTTP_AIGW_CACHE_VERSION,
                    ctx->format->name.len, &ctx->format->name, ep->len, ep,
                    model->len, model, scope->len, scope, ns.len, &ns,
                    generation);

    if (EVP_DigestInit_ex(k.md_ctx, k.md, NULL) != 1
        || EVP_DigestUpdate(k.md_ctx, k.scratch, p - k.scratch) != 1)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_aigw_cache_key_walk(&k, ctx->body.data,
                                      ctx->body.data + ctx->body.len);

    ngx_pfree(r->pool, k.stack);

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: the cache key of a scanned body failed");
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    if (EVP_DigestFinal_ex(k.md_ctx, key, &len) != 1) {
        return NGX_ERROR;
    }

    ngx_pfree(r->pool, k.scratch);

    return NGX_OK;
}


/* the client's Cache-Control: no-cache, no-store, max-age=N */

static void
ngx_http_aigw_cache_control(ngx_http_request_t *r, ngx_uint_t *no_cache,
    ngx_uint_t *no_store, time_t *max_age)
{
    u_char           *p, *last;
    ngx_int_t         n;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    *no_cache = 0;
    *no_store = 0;
    *max_age = -1;

    part = &r->headers_in.headers.part;
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

        if (h[i].key.len != sizeof("Cache-Control") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Cache-Control",
                               sizeof("Cache-Control") - 1)
               != 0)
        {
            continue;
        }

        last = h[i].value.data + h[i].value.len;

        if (ngx_strlcasestrn(h[i].value.data, last, (u_char *) "no-cache",
                             sizeof("no-cache") - 2))
        {
            *no_cache = 1;
        }

        if (ngx_strlcasestrn(h[i].value.data, last, (u_char *) "no-store",
                             sizeof("no-store") - 2))
        {
            *no_store = 1;
        }

        p = ngx_strlcasestrn(h[i].value.data, last, (u_char *) "max-age=",
                             sizeof("max-age=") - 2);

        if (p) {
            p += sizeof("max-age=") - 1;

            for (n = 0; p < last && *p >= '0' && *p <= '9'; p++) {
                if (n < 100000000) {
                    n = n * 10 + (*p - '0');
                }
            }

            *max_age = (time_t) n;
        }
    }
}


/* the content phase, before any provider: a hit answered from the zone */

ngx_int_t
ngx_http_aigw_cache_send(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_chain_t                 out;
    ngx_http_aigw_cache_req_t  *cr;

    cr = ctx->cache;

    if (cr == NULL || cr->status != NGX_HTTP_AIGW_CACHE_S_HIT) {
        return NGX_DECLINED;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->memory = 1;
    b->pos = cr->entry.data.data;
    b->last = b->pos + cr->entry.data.len;
    b->last_buf = 1;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;

    if (cr->entry.stream) {
        ngx_str_set(&r->headers_out.content_type, "text/event-stream");
        r->headers_out.content_length_n = -1;

    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_length_n = cr->entry.data.len;
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;

    /* the filters read it as a provider's answer: usage, hidden events */
    ctx->answered = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    /* all of it passes the gateway's filter now, which reads its usage */

    rc = ngx_http_output_filter(r, &out);

    ngx_http_aigw_cache_avoided(r, ctx);

    return rc;
}


/*
 * A hit's usage, read by the filters as the replay passed them, is what
 * it avoided: it costs nothing and uses no tokens.
 */

static void
ngx_http_aigw_cache_avoided(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    uint64_t                         cost;
    ngx_http_aigw_model_t           *m;
    ngx_http_aigw_main_conf_t       *amcf;
    ngx_http_aigw_cache_counters_t  *cnt;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    cnt = ngx_http_aigw_cache_zone_counters(amcf->cache_zone);
    m = ctx->candidates[0];

    cost = ((uint64_t) ctx->prompt_tokens * m->input_price
            + (uint64_t) ctx->completion_tokens * m->output_price
            + 500000) / 1000000;

    (void) ngx_atomic_fetch_add(&cnt->avoided_tokens,
                                ctx->prompt_tokens + ctx->completion_tokens);
    (void) ngx_atomic_fetch_add(&cnt->avoided_cost, cost);

    ctx->prompt_tokens = 0;
    ctx->completion_tokens = 0;
    ctx->cached_tokens = 0;
    ctx->reasoning_tokens = 0;
    ctx->cost = 0;
}


/* from the header filter: X-AIGW-Cache, and Age of a hit */

ngx_int_t
ngx_http_aigw_cache_headers(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    u_char                     *p;
    time_t                      age;
    ngx_str_t                  *s;
    ngx_http_aigw_cache_req_t  *cr;

    static ngx_str_t  name = ngx_string("X-AIGW-Cache");
    static ngx_str_t  age_name = ngx_string("Age");

    cr = ctx->cache;

    if (cr == NULL || cr->status == NGX_HTTP_AIGW_CACHE_S_NONE) {
        return NGX_OK;
    }

    s = &ngx_http_aigw_cache_statuses[ngx_http_aigw_cache_shown(cr)];

    if (ngx_http_aigw_filter_add_header(r, &name, s->data, s->len) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (cr->status != NGX_HTTP_AIGW_CACHE_S_HIT) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    age = ngx_time() - cr->entry.created;

    if (age < 0) {
        age = 0;
    }

    return ngx_http_aigw_filter_add_header(r, &age_name, p,
                                           ngx_sprintf(p, "%T", age) - p);
}


/*
 * From the body filter: the bytes of a stream that may be stored, as
 * they pass, up to aigw_cache_max_size.
 */

ngx_int_t
ngx_http_aigw_cache_collect(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t *in)
{
    u_char                     *p;
    size_t                      n, size;
    ngx_chain_t                *cl;
    ngx_http_aigw_cache_req_t  *cr;
    ngx_http_aigw_loc_conf_t   *alcf;

    cr = ctx->cache;

    if (cr == NULL || !cr->store || cr->overflow || ctx->sse_buf == NULL
        || r->headers_out.status != NGX_HTTP_OK)
    {
        return NGX_OK;
    }

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    for (cl = in; cl; cl = cl->next) {

        if (!ngx_buf_in_memory(cl->buf)) {
            continue;
        }

        n = cl->buf->last - cl->buf->pos;

        if (n == 0) {
            continue;
        }

        if (cr->len + n > alcf->cache_max_size) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aigw: stream larger than aigw_cache_max_size, "
                          "not cached");
            cr->overflow = 1;
            return NGX_OK;
        }

        if (cr->len + n > cr->size) {
            size = ngx_max(cr->size * 2, 16384);
            size = ngx_max(size, cr->len + n);
            size = ngx_min(size, alcf->cache_max_size);

            p = ngx_pnalloc(r->pool, size);
            if (p == NULL) {
                return NGX_ERROR;
            }

            if (cr->len) {
                ngx_memcpy(p, cr->buf, cr->len);
            }

            cr->buf = p;
            cr->size = size;
        }

        ngx_memcpy(cr->buf + cr->len, cl->buf->pos, n);
        cr->len += n;
    }

    return NGX_OK;
}


/* from answer.c: a JSON 200, whole and checked, as the client gets it */

void
ngx_http_aigw_cache_answer(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_buf_t *b)
{
    ngx_http_aigw_cache_req_t  *cr;
    ngx_http_aigw_loc_conf_t   *alcf;

    cr = ctx->cache;

    if (cr == NULL || !cr->store || ctx->stream) {
        return;
    }

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    if ((size_t) (b->last - b->pos) > alcf->cache_max_size) {
        return;
    }

    cr->store = 0;

    ngx_http_aigw_cache_put(r, cr, b->pos, b->last - b->pos, 0);
}


static void
ngx_http_aigw_cache_put(ngx_http_request_t *r, ngx_http_aigw_cache_req_t *cr,
    u_char *data, size_t len, ngx_uint_t stream)
{
    ngx_http_aigw_loc_conf_t   *alcf;
    ngx_http_aigw_main_conf_t  *amcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    if (ngx_http_aigw_cache_zone_put(amcf->cache_zone, cr->key, data, len,
                                     stream, alcf->cache_ttl,
                                     r->connection->log)
        == NGX_OK)
    {
        cr->locked = 0;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aigw: answer of %uz bytes cached", len);
    }

    if (alcf->cache_redis) {
        ngx_http_aigw_cache_redis_put(amcf->cache_redis, cr->key, data, len,
                                      stream, alcf->cache_ttl,
                                      r->connection->log);
    }

    if (cr->semantic) {
        ngx_http_aigw_cache_semantic_put(r, cr->semantic, cr->key);
    }
}


/*
 * From the body filter, after the gateway read a stream's buffers: the
 * stream is stored once its last event passed, unless it carried an
 * error event.
 */

void
ngx_http_aigw_cache_stream_end(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    ngx_http_aigw_cache_req_t  *cr;

    cr = ctx->cache;

    if (cr == NULL || !cr->store || cr->overflow || cr->buf == NULL
        || !ctx->sse_done || r->upstream == NULL)
    {
        return;
    }

    cr->store = 0;

    if (ngx_strlcasestrn(cr->buf, cr->buf + cr->len,
                         (u_char *) "data: {\"error\"",
                         sizeof("data: {\"error\"") - 2)
        || ngx_strlcasestrn(cr->buf, cr->buf + cr->len,
                            (u_char *) "event: error",
                            sizeof("event: error") - 2))
    {
        return;
    }

    ngx_http_aigw_cache_put(r, cr, cr->buf, cr->len, 1);
}


/* the log phase: the lock of a request that stored nothing goes */

void
ngx_http_aigw_cache_log(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    ngx_http_aigw_cache_req_t  *cr;
    ngx_http_aigw_main_conf_t  *amcf;

    cr = ctx->cache;

    if (cr == NULL || !cr->locked) {
        return;
    }

    /* nothing stored: who waits for it goes on */

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    ngx_http_aigw_cache_zone_unlock(amcf->cache_zone, cr->key);
    cr->locked = 0;
}


ngx_int_t
ngx_http_aigw_cache_variable(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_str_t *s)
{
    ngx_http_aigw_cache_req_t  *cr;

    cr = ctx->cache;

    if (cr) {
        *s = ngx_http_aigw_cache_statuses[ngx_http_aigw_cache_shown(cr)];
    }

    return NGX_OK;
}


/* Prometheus lines of the zone's counters */

size_t
ngx_http_aigw_cache_metrics_size(ngx_http_aigw_main_conf_t *amcf)
{
    return amcf->cache_zone ? 11 * (64 + NGX_ATOMIC_T_LEN) + 512 : 0;
}


u_char *
ngx_http_aigw_cache_metrics(ngx_http_aigw_main_conf_t *amcf, u_char *p,
    u_char *last)
{
    ngx_http_aigw_cache_counters_t  *c;

    if (amcf->cache_zone == NULL
        || (size_t) (last - p) < ngx_http_aigw_cache_metrics_size(amcf))
    {
        return p;
    }

    c = ngx_http_aigw_cache_zone_counters(amcf->cache_zone);

    if (c == NULL) {
        return p;
    }

    return ngx_sprintf(p,
                 "# TYPE aigw_cache_lookups_total counter\n"
                 "aigw_cache_lookups_total{result=\"hit\"} %uA\n"
                 "aigw_cache_lookups_total{result=\"miss\"} %uA\n"
                 "aigw_cache_lookups_total{result=\"bypass\"} %uA\n"
                 "# TYPE aigw_cache_stores_total counter\n"
                 "aigw_cache_stores_total %uA\n"
                 "# TYPE aigw_cache_evictions_total counter\n"
                 "aigw_cache_evictions_total %uA\n"
                 "# TYPE aigw_cache_avoided_tokens_total counter\n"
                 "aigw_cache_avoided_tokens_total %uA\n"
                 "# TYPE aigw_cache_avoided_cost_microdollars_total counter\n"
                 "aigw_cache_avoided_cost_microdollars_total %uA\n"
                 "# TYPE aigw_cache_semantic_lookups_total counter\n"
                 "aigw_cache_semantic_lookups_total{result=\"hit\"} %uA\n"
                 "aigw_cache_semantic_lookups_total{result=\"miss\"} %uA\n"
                 "aigw_cache_semantic_lookups_total{result=\"error\"} %uA\n"
                 "# TYPE aigw_cache_semantic_vectors_total counter\n"
                 "aigw_cache_semantic_vectors_total %uA\n",
                 c->hits, c->misses, c->bypasses, c->stores, c->evictions,
                 c->avoided_tokens, c->avoided_cost, c->semantic_hits,
                 c->semantic_misses, c->semantic_errors,
                 c->semantic_vectors);
}
