
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_cache.h"


/*
 * The exact cache's shared zone, as limit_req's: a red-black tree of
 * entries by key, a queue from the most to the least recently used, the
 * slab allocator; adopted on reload.  An entry is its key, its times and
 * the answer's bytes; the least recently used go when room is needed.
 */


typedef struct {
    ngx_rbtree_node_t               node;   /* key: the key's first bytes */
    ngx_queue_t                     queue;
    u_char                          key[NGX_HTTP_AIGW_CACHE_KEY_LEN];
    time_t                          created;
    time_t                          expires;
    ngx_uint_t                      stream;
    ngx_uint_t                      pending;  /* a lock, no answer yet */
    size_t                          len;
    u_char                          data[1];
} ngx_http_aigw_cache_node_t;


/*
 * A partition of the semantic index: its first members as an entry's,
 * so that one tree function serves both.  The vectors of the answers
 * stored in it, in a ring of cap slots; n used, next the slot the next
 * one takes (the oldest, once it is full).  A slot is an entry's key
 * then its vector: dim floats, or (precision int8) a float scale and
 * dim codes, to a multiple of 4 bytes.  The slots are in blocks of per slots
 * (some 64K bytes): the first grows by a copy up to per, then a block
 * is added at a time, so that growth never copies more than a block.
 * A slot whose vector is all zeros is free: its answer was not found
 * again.  id tells the partition from one made again under its digest
 * while a scan let the lock go.
 */
typedef struct {
    ngx_rbtree_node_t               node;
    ngx_queue_t                     queue;
    u_char                          part[NGX_HTTP_AIGW_CACHE_KEY_LEN];
    ngx_uint_t                      dim;
    ngx_uint_t                      precision;
    ngx_uint_t                      n;
    ngx_uint_t                      cap;
    ngx_uint_t                      next;
    ngx_uint_t                      per;
    ngx_uint_t                      nblocks;  /* room in blocks */
    u_char                        **blocks;
    ngx_uint_t                      id;
} ngx_http_aigw_cache_part_t;


/*
 * The floats a scan reads in one hold of the zone's lock: 16,384 floats
 * (64K bytes) take some 5-15 us here (memory-bound); every vector at
 * least, so a dimension of 4096 holds it some 4 us a vector.
 */
#define NGX_HTTP_AIGW_CACHE_VECTOR_BLOCK  16384

#define ngx_http_aigw_cache_slot_size(dim, precision)                         \
    (NGX_HTTP_AIGW_CACHE_KEY_LEN                                              \
     + ((precision) == NGX_HTTP_AIGW_SEMANTIC_INT8                            \
        ? sizeof(float) + ngx_align(dim, 4) : (dim) * sizeof(float)))


/* a namespace's generation: bumped by a purge, part of every key */
typedef struct {
    u_char                          name[NGX_HTTP_AIGW_CACHE_KEY_LEN];
    uint64_t                        generation;
} ngx_http_aigw_cache_ns_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     queue;
    ngx_http_aigw_cache_counters_t  counters;
    /* the semantic index: partitions by digest, least recently used */
    ngx_rbtree_t                    parts;
    ngx_rbtree_node_t               parts_sentinel;
    ngx_queue_t                     parts_queue;
    ngx_uint_t                      part_id;
    ngx_atomic_t                    waiting;  /* for the lock */
    ngx_uint_t                      nns;
    ngx_http_aigw_cache_ns_t        ns[NGX_HTTP_AIGW_CACHE_NS];
} ngx_http_aigw_cache_sh_t;


typedef struct {
    ngx_http_aigw_cache_sh_t       *sh;
    ngx_slab_pool_t                *shpool;
} ngx_http_aigw_cache_zone_t;


static ngx_int_t ngx_http_aigw_cache_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_aigw_cache_zone_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_aigw_cache_node_t *ngx_http_aigw_cache_zone_find(
    ngx_rbtree_t *tree, u_char *key);
static void ngx_http_aigw_cache_zone_part_delete(
    ngx_http_aigw_cache_zone_t *zone, ngx_http_aigw_cache_part_t *pt);
static void *ngx_http_aigw_cache_zone_vector_alloc(
    ngx_http_aigw_cache_zone_t *zone, size_t size,
    ngx_http_aigw_cache_part_t *keep, ngx_uint_t *evicted);
static void ngx_http_aigw_cache_zone_delete(ngx_http_aigw_cache_zone_t *zone,
    ngx_http_aigw_cache_node_t *cn);
static void ngx_http_aigw_cache_zone_lock(ngx_http_aigw_cache_zone_t *zone);
static void ngx_http_aigw_cache_zone_scan(u_char *p, ngx_uint_t n,
    size_t stride, ngx_uint_t dim, ngx_uint_t precision, float *v,
    ngx_int_t base, ngx_int_t *best, float *score);


/* NAME:SIZE */

char *
ngx_http_aigw_cache_zone_add(ngx_conf_t *cf, ngx_shm_zone_t **shm_zone,
    ngx_str_t *value)
{
    u_char                      *p;
    ssize_t                      size;
    ngx_str_t                    name, s;
    ngx_http_aigw_cache_zone_t  *zone;

    if (*shm_zone) {
        return "is duplicate";
    }

    p = (u_char *) ngx_strlchr(value->data, value->data + value->len, ':');

    if (p == NULL || p == value->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\", must be \"name:size\"",
                           value);
        return NGX_CONF_ERROR;
    }

    name.data = value->data;
    name.len = p - value->data;

    s.data = p + 1;
    s.len = value->data + value->len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\", at least %uz",
                           value, (size_t) (8 * ngx_pagesize));
        return NGX_CONF_ERROR;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_cache_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    *shm_zone = ngx_shared_memory_add(cf, &name, size,
                                      &ngx_http_aigw_module);
    if (*shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if ((*shm_zone)->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    (*shm_zone)->init = ngx_http_aigw_cache_zone_init;
    (*shm_zone)->data = zone;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigw_cache_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_aigw_cache_zone_t  *ozone = data;

    void                        *sh;
    ngx_int_t                    rc;
    ngx_http_aigw_cache_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        /* a reload: what is cached stays */
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    rc = ngx_http_aigw_zone_shared(shm_zone, sizeof(ngx_http_aigw_cache_sh_t),
                                   "cache", &sh, &zone->shpool);
    zone->sh = sh;

    if (rc != NGX_OK) {
        return (rc == NGX_DONE) ? NGX_OK : NGX_ERROR;
    }

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_http_aigw_cache_zone_insert);

    ngx_queue_init(&zone->sh->queue);

    ngx_rbtree_init(&zone->sh->parts, &zone->sh->parts_sentinel,
                    ngx_http_aigw_cache_zone_insert);

    ngx_queue_init(&zone->sh->parts_queue);

    return NGX_OK;
}


static void
ngx_http_aigw_cache_zone_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t           **p;
    ngx_http_aigw_cache_node_t   *cn, *cnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            cn = (ngx_http_aigw_cache_node_t *) node;
            cnt = (ngx_http_aigw_cache_node_t *) temp;

            p = (ngx_memcmp(cn->key, cnt->key, NGX_HTTP_AIGW_CACHE_KEY_LEN)
                 < 0) ? &temp->left : &temp->right;
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


static ngx_http_aigw_cache_node_t *
ngx_http_aigw_cache_zone_find(ngx_rbtree_t *tree, u_char *key)
{
    ngx_int_t                    rc;
    ngx_rbtree_key_t             hash;
    ngx_rbtree_node_t           *node, *sentinel;
    ngx_http_aigw_cache_node_t  *cn;

    ngx_memcpy(&hash, key, sizeof(ngx_rbtree_key_t));

    node = tree->root;
    sentinel = tree->sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        cn = (ngx_http_aigw_cache_node_t *) node;

        rc = ngx_memcmp(key, cn->key, NGX_HTTP_AIGW_CACHE_KEY_LEN);

        if (rc == 0) {
            return cn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * The zone's lock, its waiters counted: a scan of the semantic index,
 * which lets it go between blocks, waits for a waiter to take it
 * (part_again); one spinning or asleep in ngx_shmtx_lock() would miss
 * the moment it is free.
 */

static void
ngx_http_aigw_cache_zone_lock(ngx_http_aigw_cache_zone_t *zone)
{
    if (ngx_shmtx_trylock(&zone->shpool->mutex)) {
        return;
    }

    (void) ngx_atomic_fetch_add(&zone->sh->waiting, 1);
    ngx_shmtx_lock(&zone->shpool->mutex);
    (void) ngx_atomic_fetch_add(&zone->sh->waiting, -1);
}


static void
ngx_http_aigw_cache_zone_delete(ngx_http_aigw_cache_zone_t *zone,
    ngx_http_aigw_cache_node_t *cn)
{
    ngx_queue_remove(&cn->queue);
    ngx_rbtree_delete(&zone->sh->rbtree, &cn->node);
    ngx_slab_free_locked(zone->shpool, cn);
}


/*
 * An entry younger than max_age (and its TTL), copied into the pool:
 * NGX_HTTP_AIGW_CACHE_FOUND; one past either, EXPIRED (one past its TTL
 * is deleted); one another request is filling, PENDING; NONE.  With a
 * lock time, NONE and EXPIRED leave a lock for that long (e->locked):
 * identical requests that come meanwhile find it PENDING.  NGX_ERROR if
 * the copy cannot be allocated.
 */

ngx_int_t
ngx_http_aigw_cache_zone_get(ngx_shm_zone_t *shm_zone, u_char *key,
    time_t max_age, time_t lock, ngx_pool_t *pool,
    ngx_http_aigw_cache_entry_t *e)
{
    time_t                       now;
    ngx_int_t                    rc;
    ngx_http_aigw_cache_zone_t  *zone;
    ngx_http_aigw_cache_node_t  *cn;

    zone = shm_zone->data;
    now = ngx_time();
    e->locked = 0;

    ngx_http_aigw_cache_zone_lock(zone);

    cn = ngx_http_aigw_cache_zone_find(&zone->sh->rbtree, key);

    if (cn == NULL) {
        rc = NGX_HTTP_AIGW_CACHE_NONE;
        goto lock;
    }

    if (cn->expires <= now) {
        rc = cn->pending ? NGX_HTTP_AIGW_CACHE_NONE
                         : NGX_HTTP_AIGW_CACHE_EXPIRED;
        ngx_http_aigw_cache_zone_delete(zone, cn);
        goto lock;
    }

    if (cn->pending) {
        rc = NGX_HTTP_AIGW_CACHE_PENDING;
        goto done;
    }

    if (max_age >= 0 && now - cn->created > max_age) {
        rc = NGX_HTTP_AIGW_CACHE_EXPIRED;
        goto done;
    }

    e->data.data = ngx_pnalloc(pool, cn->len);
    if (e->data.data == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(e->data.data, cn->data, cn->len);
    e->data.len = cn->len;
    e->created = cn->created;
    e->stream = cn->stream;

    ngx_queue_remove(&cn->queue);
    ngx_queue_insert_head(&zone->sh->queue, &cn->queue);

    rc = NGX_HTTP_AIGW_CACHE_FOUND;
    goto done;

lock:

    if (lock == 0) {
        goto done;
    }

    /* no room for a lock is no lock: the request goes on alone */

    cn = ngx_slab_alloc_locked(zone->shpool,
                               offsetof(ngx_http_aigw_cache_node_t, data));
    if (cn == NULL) {
        goto done;
    }

    ngx_memcpy(&cn->node.key, key, sizeof(ngx_rbtree_key_t));
    ngx_memcpy(cn->key, key, NGX_HTTP_AIGW_CACHE_KEY_LEN);
    cn->created = now;
    cn->expires = now + lock;
    cn->stream = 0;
    cn->pending = 1;
    cn->len = 0;

    ngx_rbtree_insert(&zone->sh->rbtree, &cn->node);
    ngx_queue_insert_head(&zone->sh->queue, &cn->queue);

    e->locked = 1;

done:

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


/* the lock of a request that stored nothing */

void
ngx_http_aigw_cache_zone_unlock(ngx_shm_zone_t *shm_zone, u_char *key)
{
    ngx_http_aigw_cache_zone_t  *zone;
    ngx_http_aigw_cache_node_t  *cn;

    zone = shm_zone->data;

    ngx_http_aigw_cache_zone_lock(zone);

    cn = ngx_http_aigw_cache_zone_find(&zone->sh->rbtree, key);

    if (cn && cn->pending) {
        ngx_http_aigw_cache_zone_delete(zone, cn);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/*
 * Stores an answer, replacing the entry of the same key; the least
 * recently used entries make room.  NGX_DECLINED when it does not fit
 * even in an empty zone.
 */

ngx_int_t
ngx_http_aigw_cache_zone_put(ngx_shm_zone_t *shm_zone, u_char *key,
    u_char *data, size_t len, ngx_uint_t stream, time_t ttl, ngx_log_t *log)
{
    size_t                       size;
    ngx_uint_t                   evicted;
    ngx_queue_t                 *q;
    ngx_http_aigw_cache_zone_t  *zone;
    ngx_http_aigw_cache_node_t  *cn;

    zone = shm_zone->data;
    size = offsetof(ngx_http_aigw_cache_node_t, data) + len;
    evicted = 0;

    ngx_http_aigw_cache_zone_lock(zone);

    cn = ngx_http_aigw_cache_zone_find(&zone->sh->rbtree, key);

    if (cn) {
        ngx_http_aigw_cache_zone_delete(zone, cn);
    }

    for ( ;; ) {
        cn = ngx_slab_alloc_locked(zone->shpool, size);

        if (cn) {
            break;
        }

        if (ngx_queue_empty(&zone->sh->queue)
            && !ngx_queue_empty(&zone->sh->parts_queue))
        {
            /* only the semantic index is left: its oldest partition */
            q = ngx_queue_last(&zone->sh->parts_queue);
            ngx_http_aigw_cache_zone_part_delete(zone,
                        ngx_queue_data(q, ngx_http_aigw_cache_part_t, queue));
            evicted++;
            continue;
        }

        if (ngx_queue_empty(&zone->sh->queue)) {
            ngx_shmtx_unlock(&zone->shpool->mutex);

            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "aigw: an answer of %uz bytes does not fit in "
                          "the cache zone \"%V\", not stored",
                          len, &shm_zone->shm.name);
            return NGX_DECLINED;
        }

        q = ngx_queue_last(&zone->sh->queue);

        ngx_http_aigw_cache_zone_delete(zone,
                        ngx_queue_data(q, ngx_http_aigw_cache_node_t, queue));
        evicted++;
    }

    ngx_memcpy(&cn->node.key, key, sizeof(ngx_rbtree_key_t));
    ngx_memcpy(cn->key, key, NGX_HTTP_AIGW_CACHE_KEY_LEN);
    cn->created = ngx_time();
    cn->expires = cn->created + ttl;
    cn->stream = stream;
    cn->pending = 0;
    cn->len = len;
    ngx_memcpy(cn->data, data, len);

    ngx_rbtree_insert(&zone->sh->rbtree, &cn->node);
    ngx_queue_insert_head(&zone->sh->queue, &cn->queue);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    (void) ngx_atomic_fetch_add(&zone->sh->counters.stores, 1);

    if (evicted) {
        (void) ngx_atomic_fetch_add(&zone->sh->counters.evictions, evicted);
    }

    return NGX_OK;
}


/*
 * The generation of a namespace (by the digest of its name): 0 until it
 * is purged.  With bump, the next one, returned; NGX_ERROR (as
 * (uint64_t) -1) when the table of purged namespaces is full.
 */

uint64_t
ngx_http_aigw_cache_zone_generation(ngx_shm_zone_t *shm_zone, u_char *name,
    ngx_uint_t bump)
{
    uint64_t                     g;
    ngx_uint_t                   i;
    ngx_http_aigw_cache_zone_t  *zone;

    zone = shm_zone->data;

    ngx_http_aigw_cache_zone_lock(zone);

    for (i = 0; i < zone->sh->nns; i++) {
        if (ngx_memcmp(zone->sh->ns[i].name, name,
                       NGX_HTTP_AIGW_CACHE_KEY_LEN)
            == 0)
        {
            break;
        }
    }

    if (i == zone->sh->nns) {

        if (!bump) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            return 0;
        }

        if (i == NGX_HTTP_AIGW_CACHE_NS) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            return (uint64_t) -1;
        }

        ngx_memcpy(zone->sh->ns[i].name, name, NGX_HTTP_AIGW_CACHE_KEY_LEN);
        zone->sh->ns[i].generation = 0;
        zone->sh->nns++;
    }

    if (bump) {
        zone->sh->ns[i].generation++;
    }

    g = zone->sh->ns[i].generation;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return g;
}


ngx_http_aigw_cache_counters_t *
ngx_http_aigw_cache_zone_counters(ngx_shm_zone_t *shm_zone)
{
    ngx_http_aigw_cache_zone_t  *zone;

    zone = shm_zone->data;

    return zone->sh ? &zone->sh->counters : NULL;
}


static void
ngx_http_aigw_cache_zone_part_delete(ngx_http_aigw_cache_zone_t *zone,
    ngx_http_aigw_cache_part_t *pt)
{
    ngx_uint_t  b, nb;

    ngx_queue_remove(&pt->queue);
    ngx_rbtree_delete(&zone->sh->parts, &pt->node);

    nb = (pt->cap + pt->per - 1) / pt->per;

    for (b = 0; b < nb; b++) {
        ngx_slab_free_locked(zone->shpool, pt->blocks[b]);
    }

    if (pt->blocks) {
        ngx_slab_free_locked(zone->shpool, pt->blocks);
    }

    ngx_slab_free_locked(zone->shpool, pt);
}


static ngx_inline u_char *
ngx_http_aigw_cache_zone_slot(ngx_http_aigw_cache_part_t *pt, ngx_uint_t i)
{
    return pt->blocks[i / pt->per]
           + (i % pt->per) * ngx_http_aigw_cache_slot_size(pt->dim,
                                                           pt->precision);
}


/*
 * Room for the index: the least recently used partitions but keep go
 * first, then the least recently used answers.  NULL when nothing is
 * left to free.
 */

static void *
ngx_http_aigw_cache_zone_vector_alloc(ngx_http_aigw_cache_zone_t *zone,
    size_t size, ngx_http_aigw_cache_part_t *keep, ngx_uint_t *evicted)
{
    void                        *p;
    ngx_queue_t                 *q;
    ngx_http_aigw_cache_part_t  *pt;

    for ( ;; ) {
        p = ngx_slab_alloc_locked(zone->shpool, size);

        if (p) {
            return p;
        }

        q = ngx_queue_last(&zone->sh->parts_queue);
        pt = ngx_queue_data(q, ngx_http_aigw_cache_part_t, queue);

        if (q != ngx_queue_sentinel(&zone->sh->parts_queue) && pt != keep) {
            ngx_http_aigw_cache_zone_part_delete(zone, pt);
            (*evicted)++;
            continue;
        }

        if (ngx_queue_empty(&zone->sh->queue)) {
            return NULL;
        }

        q = ngx_queue_last(&zone->sh->queue);

        ngx_http_aigw_cache_zone_delete(zone,
                        ngx_queue_data(q, ngx_http_aigw_cache_node_t, queue));
        (*evicted)++;
    }
}


/*
 * More slots for a full partition, up to max: the first block twice as
 * large (a copy of at most a block), or one block more (a copy of the
 * blocks' pointers at most).  NGX_DECLINED when there is no room.
 */

static ngx_int_t
ngx_http_aigw_cache_zone_part_grow(ngx_http_aigw_cache_zone_t *zone,
    ngx_http_aigw_cache_part_t *pt, ngx_uint_t max, ngx_uint_t *evicted)
{
    u_char      *p, **blocks;
    size_t       size;
    ngx_uint_t   cap, nb;

    size = ngx_http_aigw_cache_slot_size(pt->dim, pt->precision);

    if (pt->nblocks == 0) {
        pt->blocks = ngx_http_aigw_cache_zone_vector_alloc(zone,
                                          8 * sizeof(u_char *), pt, evicted);
        if (pt->blocks == NULL) {
            return NGX_DECLINED;
        }

        pt->nblocks = 8;
    }

    if (pt->cap < pt->per) {
        cap = ngx_min(ngx_min(ngx_max(pt->cap * 2, 8), pt->per), max);

        p = ngx_http_aigw_cache_zone_vector_alloc(zone, cap * size, pt,
                                                  evicted);
        if (p == NULL) {
            return NGX_DECLINED;
        }

        if (pt->cap) {
            ngx_memcpy(p, pt->blocks[0], pt->n * size);
            ngx_slab_free_locked(zone->shpool, pt->blocks[0]);
        }

        pt->blocks[0] = p;
        pt->cap = cap;

        return NGX_OK;
    }

    if (pt->cap % pt->per) {
        /* a larger max than before: the last block has room */
        pt->cap = ngx_min(pt->cap - pt->cap % pt->per + pt->per, max);
        return NGX_OK;
    }

    nb = pt->cap / pt->per;

    if (nb == pt->nblocks) {
        blocks = ngx_http_aigw_cache_zone_vector_alloc(zone,
                                          2 * nb * sizeof(u_char *), pt,
                                          evicted);
        if (blocks == NULL) {
            return NGX_DECLINED;
        }

        ngx_memcpy(blocks, pt->blocks, nb * sizeof(u_char *));
        ngx_slab_free_locked(zone->shpool, pt->blocks);

        pt->blocks = blocks;
        pt->nblocks = 2 * nb;
    }

    p = ngx_http_aigw_cache_zone_vector_alloc(zone, pt->per * size, pt,
                                              evicted);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    pt->blocks[nb] = p;
    pt->cap = ngx_min(pt->cap + pt->per, max);

    return NGX_OK;
}


/*
 * Lets the zone's lock go between two blocks of a walk over a partition,
 * and takes it again: the others' lookups and stores wait for a block,
 * never for the walk.  The partition is found again by its digest, and
 * is the walk's if its id is: NULL when it went meanwhile.
 *
 * Why blocks under the lock, not a partition pinned and read without it:
 * every read is under the lock, so a slot is never read half written,
 * growth and eviction free what they like, and nothing but the lock is
 * shared; what a block costs is a lock taken again, some 50 ns a 10 us.
 * What changed meanwhile: blocks already read may hold new vectors (a
 * lookup that started before them misses them) and the slot found best
 * may have been taken by another; the caller reads it again.
 */

static ngx_http_aigw_cache_part_t *
ngx_http_aigw_cache_zone_part_again(ngx_http_aigw_cache_zone_t *zone,
    u_char *part, ngx_uint_t id)
{
    ngx_shmtx_t                 *mtx;
    ngx_http_aigw_cache_part_t  *pt;
#if (NGX_HAVE_ATOMIC_OPS)
    ngx_uint_t                   i;
#endif

    mtx = &zone->shpool->mutex;

    ngx_shmtx_unlock(mtx);

#if (NGX_HAVE_ATOMIC_OPS)

    /*
     * one waits: it takes the lock before the next block, unless it is
     * not let run for a while (a scan waits some 100 us at most)
     */

    for (i = 0; i < 96 && zone->sh->waiting && *mtx->lock == 0; i++) {
        if (i < 64) {
            ngx_cpu_pause();

        } else {
            ngx_sched_yield();
        }
    }

#endif

    ngx_http_aigw_cache_zone_lock(zone);

    pt = (ngx_http_aigw_cache_part_t *)
             ngx_http_aigw_cache_zone_find(&zone->sh->parts, part);

    return (pt && pt->id == id) ? pt : NULL;
}


/*
 * The vector v (of unit length) of the answer stored under key, into
 * the partition part: a new partition, or more slots, as needed, up to
 * max vectors; past that the oldest goes.  A partition of another
 * dimension (the embedding model changed) or precision starts again.
 */

ngx_int_t
ngx_http_aigw_cache_zone_vector_add(ngx_shm_zone_t *shm_zone, u_char *part,
    u_char *key, float *v, ngx_uint_t dim, ngx_uint_t precision,
    ngx_uint_t max, ngx_log_t *log)
{
    u_char                      *p;
    float                        scale;
    ngx_uint_t                   evicted;
    ngx_http_aigw_cache_zone_t  *zone;
    ngx_http_aigw_cache_part_t  *pt;

    zone = shm_zone->data;
    evicted = 0;

    ngx_http_aigw_cache_zone_lock(zone);

    pt = (ngx_http_aigw_cache_part_t *)
             ngx_http_aigw_cache_zone_find(&zone->sh->parts, part);

    if (pt && (pt->dim != dim || pt->precision != precision)) {
        ngx_http_aigw_cache_zone_part_delete(zone, pt);
        pt = NULL;
    }

    if (pt == NULL) {
        pt = ngx_http_aigw_cache_zone_vector_alloc(zone,
                                        sizeof(ngx_http_aigw_cache_part_t),
                                        NULL, &evicted);
        if (pt == NULL) {
            goto failed;
        }

        ngx_memzero(pt, sizeof(ngx_http_aigw_cache_part_t));
        ngx_memcpy(&pt->node.key, part, sizeof(ngx_rbtree_key_t));
        ngx_memcpy(pt->part, part, NGX_HTTP_AIGW_CACHE_KEY_LEN);
        pt->dim = dim;
        pt->precision = precision;
        pt->per = ngx_max(NGX_HTTP_AIGW_CACHE_VECTOR_BLOCK / dim, 1);
        pt->id = ++zone->sh->part_id;

        ngx_rbtree_insert(&zone->sh->parts, &pt->node);
        ngx_queue_insert_head(&zone->sh->parts_queue, &pt->queue);

    } else {
        ngx_queue_remove(&pt->queue);
        ngx_queue_insert_head(&zone->sh->parts_queue, &pt->queue);
    }

    if (pt->n == pt->cap && pt->cap < max) {

        if (ngx_http_aigw_cache_zone_part_grow(zone, pt, max, &evicted)
            == NGX_OK)
        {
            /* new slots are free: they come first */
            pt->next = pt->n;

        } else if (pt->cap == 0) {
            ngx_http_aigw_cache_zone_part_delete(zone, pt);
            goto failed;
        }

        /* else no room to grow: the oldest goes */
    }

    if (pt->next >= pt->cap) {
        pt->next = 0;
    }

    p = ngx_http_aigw_cache_zone_slot(pt, pt->next);

    ngx_memcpy(p, key, NGX_HTTP_AIGW_CACHE_KEY_LEN);
    p += NGX_HTTP_AIGW_CACHE_KEY_LEN;

    if (precision == NGX_HTTP_AIGW_SEMANTIC_INT8) {
        ngx_http_aigw_cache_semantic_quantize(v, dim, &scale,
                                              (int8_t *) (p + sizeof(float)));
        ngx_memcpy(p, &scale, sizeof(float));

    } else {
        ngx_memcpy(p, v, dim * sizeof(float));
    }

    pt->next++;

    if (pt->n < pt->cap) {
        pt->n++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    (void) ngx_atomic_fetch_add(&zone->sh->counters.semantic_vectors, 1);

    if (evicted) {
        (void) ngx_atomic_fetch_add(&zone->sh->counters.evictions, evicted);
    }

    return NGX_OK;

failed:

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "aigw: a vector of %ui dimensions does not fit in the "
                  "cache zone \"%V\", not indexed", dim, &shm_zone->shm.name);

    return NGX_DECLINED;
}


/* n slots from the slot at p, of either precision */

static void
ngx_http_aigw_cache_zone_scan(u_char *p, ngx_uint_t n, size_t stride,
    ngx_uint_t dim, ngx_uint_t precision, float *v, ngx_int_t base,
    ngx_int_t *best, float *score)
{
    p += NGX_HTTP_AIGW_CACHE_KEY_LEN;

    if (precision == NGX_HTTP_AIGW_SEMANTIC_INT8) {
        ngx_http_aigw_cache_semantic_scan8(p, n, stride, dim, v, base, best,
                                           score);
        return;
    }

    ngx_http_aigw_cache_semantic_scan((float *) p, n, stride / sizeof(float),
                                      dim, v, base, best, score);
}


/*
 * The key of the answer whose vector in partition part is nearest to v,
 * at threshold or above: NGX_OK.  The partition is read a block at a
 * time, the lock let go between blocks (part_again), and some
 * NGX_HTTP_AIGW_CACHE_SCAN_BLOCKS blocks a call: then NGX_AGAIN, the
 * place kept in vs, and the caller lets its worker serve others before
 * it calls again.  The partition gone meanwhile (or made again) is a
 * miss, and the slot found best read again under the lock: another
 * vector in it since is a new try.  A vector whose answer is gone
 * (evicted, expired) is freed and the next best looked for, a few
 * times; with absent, one whose answer is not in the zone is NGX_DONE,
 * its key given.
 */

#define NGX_HTTP_AIGW_CACHE_VECTOR_TRIES  4
#define NGX_HTTP_AIGW_CACHE_SCAN_BLOCKS   8

ngx_int_t
ngx_http_aigw_cache_zone_vector_find(ngx_shm_zone_t *shm_zone, u_char *part,
    float *v, ngx_uint_t dim, ngx_uint_t precision, float threshold,
    ngx_uint_t absent, ngx_http_aigw_cache_vscan_t *vs, u_char *key)
{
    u_char                      *k;
    float                        again;
    ngx_int_t                    j, rc;
    size_t                       stride;
    ngx_uint_t                   blocks;
    ngx_http_aigw_cache_zone_t  *zone;
    ngx_http_aigw_cache_part_t  *pt;
    ngx_http_aigw_cache_node_t  *cn;

    zone = shm_zone->data;
    rc = NGX_DECLINED;
    stride = ngx_http_aigw_cache_slot_size(dim, precision);
    blocks = 0;

    ngx_http_aigw_cache_zone_lock(zone);

    pt = (ngx_http_aigw_cache_part_t *)
             ngx_http_aigw_cache_zone_find(&zone->sh->parts, part);

    if (pt == NULL || pt->dim != dim || pt->precision != precision
        || (vs->id && pt->id != vs->id))
    {
        vs->score = -2;
        goto done;
    }

    if (vs->id == 0) {
        ngx_queue_remove(&pt->queue);
        ngx_queue_insert_head(&zone->sh->parts_queue, &pt->queue);

        vs->id = pt->id;
        vs->best = -1;
        vs->score = -2;
    }

    for ( /* void */ ; vs->tries < NGX_HTTP_AIGW_CACHE_VECTOR_TRIES;
         vs->tries++)
    {
        for ( /* void */ ; vs->from < pt->n; vs->from += pt->per) {

            if (blocks == NGX_HTTP_AIGW_CACHE_SCAN_BLOCKS) {
                rc = NGX_AGAIN;
                goto done;
            }

            if (blocks++) {
                pt = ngx_http_aigw_cache_zone_part_again(zone, part, vs->id);

                if (pt == NULL) {
                    vs->score = -2;
                    goto done;
                }
            }

            ngx_http_aigw_cache_zone_scan(pt->blocks[vs->from / pt->per],
                                          ngx_min(pt->per, pt->n - vs->from),
                                          stride, dim, precision, v,
                                          (ngx_int_t) vs->from, &vs->best,
                                          &vs->score);
        }

        if (vs->best < 0 || vs->score < threshold) {
            break;
        }

        k = ngx_http_aigw_cache_zone_slot(pt, vs->best);

        /* the next try, if any, reads the partition from its start */

        vs->from = 0;
        vs->best = -1;

        /* the slot's vector still, not another's stored since its block */

        j = -1;
        again = -2;

        ngx_http_aigw_cache_zone_scan(k, 1, stride, dim, precision, v, 0, &j,
                                      &again);

        if (again != vs->score) {
            vs->score = -2;
            continue;
        }

        cn = ngx_http_aigw_cache_zone_find(&zone->sh->rbtree, k);

        if (cn && !cn->pending && cn->expires > ngx_time()) {
            ngx_memcpy(key, k, NGX_HTTP_AIGW_CACHE_KEY_LEN);
            rc = NGX_OK;
            break;
        }

        if (absent && cn == NULL) {
            /* its answer may be elsewhere (Redis): the caller looks */
            ngx_memcpy(key, k, NGX_HTTP_AIGW_CACHE_KEY_LEN);
            rc = NGX_DONE;
            break;
        }

        /* its answer is gone: a zero vector is nobody's match */
        ngx_memzero(k + NGX_HTTP_AIGW_CACHE_KEY_LEN,
                    stride - NGX_HTTP_AIGW_CACHE_KEY_LEN);

        vs->score = -2;
    }

done:

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


/* the vectors partition part holds: 0 for none (or no partition) */

ngx_uint_t
ngx_http_aigw_cache_zone_vector_count(ngx_shm_zone_t *shm_zone, u_char *part)
{
    ngx_uint_t                   n;
    ngx_http_aigw_cache_zone_t  *zone;
    ngx_http_aigw_cache_part_t  *pt;

    zone = shm_zone->data;

    ngx_http_aigw_cache_zone_lock(zone);

    pt = (ngx_http_aigw_cache_part_t *)
             ngx_http_aigw_cache_zone_find(&zone->sh->parts, part);

    n = pt ? pt->n : 0;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return n;
}


/*
 * The vectors of key in partition part are nobody's match any more: a
 * block at a time, as a lookup reads them.
 */

void
ngx_http_aigw_cache_zone_vector_drop(ngx_shm_zone_t *shm_zone, u_char *part,
    u_char *key)
{
    u_char                      *p;
    ngx_uint_t                   i, id;
    ngx_http_aigw_cache_zone_t  *zone;
    ngx_http_aigw_cache_part_t  *pt;

    zone = shm_zone->data;

    ngx_http_aigw_cache_zone_lock(zone);

    pt = (ngx_http_aigw_cache_part_t *)
             ngx_http_aigw_cache_zone_find(&zone->sh->parts, part);

    id = pt ? pt->id : 0;

    for (i = 0; pt && i < pt->n; i++) {

        if (i && i % pt->per == 0) {
            pt = ngx_http_aigw_cache_zone_part_again(zone, part, id);

            if (pt == NULL) {
                break;
            }
        }

        p = ngx_http_aigw_cache_zone_slot(pt, i);

        if (ngx_memcmp(p, key, NGX_HTTP_AIGW_CACHE_KEY_LEN) == 0) {
            ngx_memzero(p + NGX_HTTP_AIGW_CACHE_KEY_LEN,
                        ngx_http_aigw_cache_slot_size(pt->dim, pt->precision)
                        - NGX_HTTP_AIGW_CACHE_KEY_LEN);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}
