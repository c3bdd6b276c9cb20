
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_CACHE_H_INCLUDED_
#define _NGX_HTTP_AIGW_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>


#define NGX_HTTP_AIGW_CACHE_KEY_LEN    32      /* SHA-256 */
#define NGX_HTTP_AIGW_CACHE_DEPTH      64
#define NGX_HTTP_AIGW_CACHE_NS         256     /* namespaces purged */


#define NGX_HTTP_AIGW_CACHE_BUF        256     /* bytes fed at once */


/*
 * The canonical key of a request body (cache_key.c): a bounded walk over
 * JSON the scan has validated, without a tree, that feeds one SHA-256 a
 * canonical byte form of the body: strings unescaped, numbers normalized
 * (1, 1.0, 10e-1 are one number), object members sorted by key, so that
 * the order of keys does not count, every value length-prefixed or
 * delimited, so that the form reads one way only.  A "content" or
 * "system" that is one text block ([{"type":"text","text":"x"}]) is the
 * string "x".  Top-level keys in exclude are left out.
 *
 * The caller gives a scratch buffer of at least the body's length (the
 * unescaped strings go as far into it as they are into the body) and a
 * stack of size * 32 bytes for the members of the objects open at once.
 * A body with more members open than the stack holds, nested deeper than
 * NGX_HTTP_AIGW_CACHE_DEPTH, or with a key twice in one object is
 * NGX_DECLINED (not cached); invalid JSON is NGX_ERROR.
 */

typedef struct {
    EVP_MD_CTX                 *md_ctx;
    const EVP_MD               *md;

    u_char                     *scratch;
    u_char                     *stack;     /* size * 32 bytes */
    ngx_uint_t                  size;
    ngx_uint_t                  n;

    ngx_str_t                  *exclude;   /* top-level keys */
    ngx_uint_t                  nexclude;

    /* a string (its opening quote) keyed as the digest subst_digest */
    u_char                     *subst;
    u_char                      subst_digest[NGX_HTTP_AIGW_CACHE_KEY_LEN];

    u_char                     *start;     /* the body */
    size_t                      blen;
    ngx_uint_t                  failed;
    u_char                      buf[NGX_HTTP_AIGW_CACHE_BUF];
} ngx_http_aigw_cache_key_t;


/* the body's digest: its own SHA-256 */
ngx_int_t ngx_http_aigw_cache_key_body(ngx_http_aigw_cache_key_t *k,
    u_char *p, u_char *last, u_char *out);
/* the body's canonical form fed to k->md_ctx, initialized by the caller */
ngx_int_t ngx_http_aigw_cache_key_walk(ngx_http_aigw_cache_key_t *k,
    u_char *p, u_char *last);
ngx_int_t ngx_http_aigw_cache_key_digest(ngx_http_aigw_cache_key_t *k,
    u_char tag, u_char *p, size_t len, u_char *out);

/* readers of stored JSON answers (cache_key.c), for the formats' replay */
u_char *ngx_http_aigw_cache_json_skip(u_char *p, u_char *last);
u_char *ngx_http_aigw_cache_json_get(u_char *p, u_char *last,
    const char *key, size_t len);


/* what the zone (cache_zone.c) knows of an entry */

#define NGX_HTTP_AIGW_CACHE_NONE       0
#define NGX_HTTP_AIGW_CACHE_FOUND      1
#define NGX_HTTP_AIGW_CACHE_EXPIRED    2
#define NGX_HTTP_AIGW_CACHE_PENDING    3   /* another request fills it */

typedef struct {
    ngx_str_t                   data;       /* a copy, in the pool */
    time_t                      created;
    ngx_uint_t                  stream;     /* SSE, else JSON */
    ngx_uint_t                  locked;     /* this request fills it */
} ngx_http_aigw_cache_entry_t;


typedef struct {
    ngx_atomic_t                hits;
    ngx_atomic_t                misses;
    ngx_atomic_t                bypasses;
    ngx_atomic_t                stores;
    ngx_atomic_t                evictions;
    ngx_atomic_t                avoided_tokens;
    ngx_atomic_t                avoided_cost;   /* micro-dollars */
    /* the semantic tier */
    ngx_atomic_t                semantic_hits;
    ngx_atomic_t                semantic_misses;
    ngx_atomic_t                semantic_errors;
    ngx_atomic_t                semantic_vectors;
} ngx_http_aigw_cache_counters_t;


char *ngx_http_aigw_cache_zone_add(ngx_conf_t *cf, ngx_shm_zone_t **zone,
    ngx_str_t *value);
ngx_int_t ngx_http_aigw_cache_zone_get(ngx_shm_zone_t *zone, u_char *key,
    time_t max_age, time_t lock, ngx_pool_t *pool,
    ngx_http_aigw_cache_entry_t *e);
void ngx_http_aigw_cache_zone_unlock(ngx_shm_zone_t *zone, u_char *key);
ngx_int_t ngx_http_aigw_cache_zone_put(ngx_shm_zone_t *zone, u_char *key,
    u_char *data, size_t len, ngx_uint_t stream, time_t ttl, ngx_log_t *log);
uint64_t ngx_http_aigw_cache_zone_generation(ngx_shm_zone_t *zone,
    u_char *name, ngx_uint_t bump);
ngx_http_aigw_cache_counters_t *ngx_http_aigw_cache_zone_counters(
    ngx_shm_zone_t *zone);


struct ngx_http_aigw_redis_s;


/*
 * A lookup's place in a partition it reads in slices (vector_find), kept
 * across the worker's turns of its event loop; zeroed before the first.
 */
typedef struct {
    ngx_uint_t                      id;       /* the partition's */
    ngx_uint_t                      from;     /* the next slot to read */
    ngx_uint_t                      tries;
    ngx_int_t                       best;     /* the nearest slot so far */
    float                           score;
} ngx_http_aigw_cache_vscan_t;


/*
 * The semantic tier's index in the zone (cache_zone.c): per partition
 * (a digest of all but the last user message), the vectors of stored
 * answers with their entries' keys, the oldest out past max.
 */
ngx_int_t ngx_http_aigw_cache_zone_vector_add(ngx_shm_zone_t *zone,
    u_char *part, u_char *key, float *v, ngx_uint_t dim,
    ngx_uint_t precision, ngx_uint_t max, ngx_log_t *log);
ngx_int_t ngx_http_aigw_cache_zone_vector_find(ngx_shm_zone_t *zone,
    u_char *part, float *v, ngx_uint_t dim, ngx_uint_t precision,
    float threshold, ngx_uint_t absent, ngx_http_aigw_cache_vscan_t *vs,
    u_char *key);
ngx_uint_t ngx_http_aigw_cache_zone_vector_count(ngx_shm_zone_t *zone,
    u_char *part);
void ngx_http_aigw_cache_zone_vector_drop(ngx_shm_zone_t *zone, u_char *part,
    u_char *key);

/*
 * The index's durable copy (cache_semantic_redis.c): a Redis list
 * "aigw:sem:HEX" a partition, of entries' keys and vectors; loaded into
 * an empty partition of the zone, then handler(data) is called.
 */
typedef void (*ngx_http_aigw_cache_semantic_loaded_pt)(void *data);

char *ngx_http_aigw_cache_semantic_redis_init(ngx_conf_t *cf, void **field,
    struct ngx_http_aigw_redis_s *redis);
void ngx_http_aigw_cache_semantic_redis_put(void *conf, u_char *part,
    u_char *key, float *v, ngx_uint_t dim, ngx_uint_t max, time_t ttl,
    ngx_log_t *log);
ngx_int_t ngx_http_aigw_cache_semantic_redis_load(void *conf,
    ngx_shm_zone_t *zone, u_char *part, ngx_uint_t max,
    ngx_uint_t precision, ngx_pool_t *pool,
    ngx_http_aigw_cache_semantic_loaded_pt handler, void *data,
    ngx_log_t *log, void **cmd);


/* cache_semantic_vec.c: the vectors, without nginx's runtime */
#define NGX_HTTP_AIGW_SEMANTIC_DIM_MAX  4096

ngx_int_t ngx_http_aigw_cache_semantic_parse(u_char *p, u_char *last,
    float *v, ngx_uint_t max, ngx_uint_t *dim);
ngx_int_t ngx_http_aigw_cache_semantic_normalize(float *v, ngx_uint_t dim);
void ngx_http_aigw_cache_semantic_scan(const float *vecs, ngx_uint_t n,
    ngx_uint_t stride, ngx_uint_t dim, const float *q, ngx_int_t base,
    ngx_int_t *best, float *score);
void ngx_http_aigw_cache_semantic_quantize(const float *v, ngx_uint_t dim,
    float *scale, int8_t *c);
void ngx_http_aigw_cache_semantic_scan8(const u_char *slots, ngx_uint_t n,
    size_t stride, ngx_uint_t dim, const float *q, ngx_int_t base,
    ngx_int_t *best, float *score);
ngx_int_t ngx_http_aigw_cache_semantic_best(const float *vecs, ngx_uint_t n,
    ngx_uint_t dim, const float *q, float *score);


/*
 * The second tier (cache_redis.c): an entry's answer, its mode, when it
 * was stored and its TTL left; value NULL for a miss or an error.
 */
typedef void (*ngx_http_aigw_cache_redis_get_pt)(void *data,
    ngx_str_t *value, ngx_uint_t stream, time_t created, time_t ttl);

char *ngx_http_aigw_cache_redis_init(ngx_conf_t *cf, void **field,
    struct ngx_http_aigw_redis_s *redis);
ngx_int_t ngx_http_aigw_cache_redis_get(void *conf, u_char *key,
    ngx_pool_t *pool, ngx_http_aigw_cache_redis_get_pt handler, void *data,
    ngx_log_t *log, void **cmd);
void ngx_http_aigw_cache_redis_put(void *conf, u_char *key, u_char *data,
    size_t len, ngx_uint_t stream, time_t ttl, ngx_log_t *log);


#endif /* _NGX_HTTP_AIGW_CACHE_H_INCLUDED_ */
