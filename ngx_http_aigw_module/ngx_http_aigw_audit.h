
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_AUDIT_H_INCLUDED_
#define _NGX_HTTP_AIGW_AUDIT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/evp.h>


/* a record's line, newline included, fits in a slot of the ring */
#define NGX_HTTP_AIGW_AUDIT_LINE       2048
#define NGX_HTTP_AIGW_AUDIT_SLOT       (NGX_HTTP_AIGW_AUDIT_LINE + 64)

/* a field copied from the request: longer values are cut */
#define NGX_HTTP_AIGW_AUDIT_FIELD      256

/* the Merkle tree's right edge: one hash per bit of its size */
#define NGX_HTTP_AIGW_AUDIT_DEPTH      64

/* records a worker holds while the ring is full */
#define NGX_HTTP_AIGW_AUDIT_HELD       65536

/* a slot reserved and not filled for this long: its worker died */
#define NGX_HTTP_AIGW_AUDIT_STALL      5


/*
 * A slot of the ring.  "seq" is the record's sequence number plus one
 * once the line and its leaf hash are there: the writer takes a slot
 * only when it holds exactly the number it waits for.
 */

typedef struct {
    ngx_atomic_t                   seq;
    uint32_t                       len;
    uint32_t                       pad;
    u_char                         leaf[32];   /* SHA-256(0x00 || line) */
    u_char                         line[NGX_HTTP_AIGW_AUDIT_LINE];
} ngx_http_aigw_audit_slot_t;


/* a record waiting in a worker's memory for room in the ring */

typedef struct {
    ngx_queue_t                    queue;
    size_t                         len;
    u_char                         leaf[32];
    u_char                         line[1];
} ngx_http_aigw_audit_held_t;


/* a request in flight (audit_flight.c), in its worker's table */

#define NGX_HTTP_AIGW_AUDIT_TABLES     16
#define NGX_HTTP_AIGW_AUDIT_INFLIGHT   256

typedef struct {
    ngx_atomic_t                   used;
    uint64_t                       start;      /* ms since 1970 */
    u_char                         id_len;
    u_char                         tenant_len;
    u_char                         model_len;
    u_char                         id[128];
    u_char                         tenant[64];
    u_char                         model[64];
} ngx_http_aigw_audit_flight_t;


typedef struct {
    ngx_atomic_t                   pid;        /* its worker; 0: free */
    ngx_http_aigw_audit_flight_t   req[NGX_HTTP_AIGW_AUDIT_INFLIGHT];
} ngx_http_aigw_audit_table_t;


/* what the writer keeps between batches, and on disk in "state" */

typedef struct {
    uint64_t                       size;       /* leaves in the tree */
    ngx_uint_t                     segment;    /* the one written to */
    ngx_uint_t                     first;      /* the oldest one kept */
    off_t                          offset;     /* its bytes on disk */
    off_t                          idx_offset; /* its index's */
    ngx_uint_t                     nstack;
    u_char                         stack[NGX_HTTP_AIGW_AUDIT_DEPTH][32];
} ngx_http_aigw_audit_tree_t;


/* shipping to Redis (audit_ship.c): where it is, shared by workers */

typedef struct {
    ngx_atomic_t                   pid;        /* the shipper; 0: none */
    ngx_uint_t                     loaded;     /* read from "shipped" */
    ngx_uint_t                     rewind;     /* find "leaf" on disk */
    ngx_uint_t                     segment;    /* the next line's */
    off_t                          offset;
    uint64_t                       leaf;       /* the next to ship */
    uint64_t                       saved;      /* in "shipped" */
} ngx_http_aigw_audit_ship_sh_t;


typedef struct {
    ngx_atomic_t                   head;       /* the next seq to take */
    ngx_atomic_t                   tail;       /* the first not on disk */
    ngx_atomic_t                   writer;     /* its pid; 0: none */
    ngx_atomic_t                   dropped;    /* refused: ring full */
    ngx_atomic_t                   written;    /* records on disk */

    ngx_uint_t                     nslots;
    ngx_uint_t                     loaded;     /* tree read from disk */

    uint64_t                       stall_seq;  /* a slot not filled */
    time_t                         stall_time;

    ngx_http_aigw_audit_tree_t     tree;
    ngx_http_aigw_audit_ship_sh_t  ship;

    ngx_http_aigw_audit_slot_t    *slots;
    ngx_http_aigw_audit_table_t   *tables;     /* NULL: no room */
} ngx_http_aigw_audit_sh_t;


typedef struct {
    ngx_str_t                      dir;        /* with a trailing "/" */
    ngx_str_t                      node;
    ngx_str_t                      origin;     /* of checkpoints */
    ngx_str_t                      config_hash;
    ngx_str_t                      thread_pool;

    ngx_shm_zone_t                *zone;
    ngx_http_aigw_audit_sh_t      *sh;
    ngx_slab_pool_t               *shpool;

    off_t                          segment_size;
    ngx_uint_t                     keep;       /* segments; 0: all */
    ngx_msec_t                     flush;

    EVP_MD                        *sha256;
    EVP_MD_CTX                    *md;         /* the worker's */
    EVP_MD_CTX                    *hmac_inner; /* key ^ ipad digested */
    EVP_MD_CTX                    *hmac_outer; /* key ^ opad digested */
    u_char                         hmac_pad[2][64];
    ngx_uint_t                     hmac;

    EVP_PKEY                      *sign_key;   /* Ed25519 */
    u_char                         key_id[4];  /* signed-note key hash */

    void                          *thread;     /* writer.c's */
    ngx_event_t                    timer;

    ngx_queue_t                    overflow;   /* the worker's held */
    ngx_uint_t                     held;
    time_t                         dropped_logged;

    ngx_http_aigw_audit_table_t   *table;      /* the worker's, in flight */
    ngx_uint_t                     next_entry;
    time_t                         flight_checked;

    /* shipping to Redis Streams (audit_ship.c) */
    ngx_flag_t                     redis;      /* redis=on */
    void                          *ship;       /* audit_ship.c's */
} ngx_http_aigw_audit_conf_t;


void ngx_http_aigw_audit_release(ngx_http_aigw_audit_conf_t *acf);
void ngx_http_aigw_audit_add(ngx_http_aigw_audit_conf_t *acf, u_char *line,
    size_t len, u_char *leaf, ngx_log_t *log);
ngx_int_t ngx_http_aigw_audit_read(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *out, size_t max);
u_char *ngx_http_aigw_audit_string(u_char *p, u_char *last,
    const char *name, ngx_str_t *s);

/* audit_config.c: the hash of every configuration file nginx reads */
char *ngx_http_aigw_audit_config_hash(ngx_conf_t *cf,
    ngx_http_aigw_audit_conf_t *acf);

/* audit_token.c: the next token of nginx's configuration syntax */
u_char *ngx_http_aigw_audit_config_token(u_char *p, u_char *last,
    ngx_str_t *tok, u_char *buf);

/* audit_flight.c: requests in flight, incomplete if their worker dies */
ngx_int_t ngx_http_aigw_audit_flight_init_zone(ngx_slab_pool_t *shpool,
    ngx_http_aigw_audit_sh_t *sh);
void ngx_http_aigw_audit_flight_start(ngx_http_aigw_audit_conf_t *acf,
    ngx_log_t *log);
void ngx_http_aigw_audit_flight_check(ngx_http_aigw_audit_conf_t *acf,
    ngx_log_t *log);
void ngx_http_aigw_audit_flight_exit(ngx_http_aigw_audit_conf_t *acf,
    ngx_log_t *log);
void ngx_http_aigw_audit_flight_done(ngx_http_aigw_ctx_t *ctx);

/* audit_writer.c: batches written, synced and signed off the loop */
ngx_int_t ngx_http_aigw_audit_writer_init(ngx_cycle_t *cycle,
    ngx_http_aigw_audit_conf_t *acf);
void ngx_http_aigw_audit_writer_kick(ngx_http_aigw_audit_conf_t *acf);
void ngx_http_aigw_audit_writer_exit(ngx_cycle_t *cycle,
    ngx_http_aigw_audit_conf_t *acf);
ngx_int_t ngx_http_aigw_audit_replace(ngx_http_aigw_audit_conf_t *acf,
    const char *name, u_char *data, size_t len, ngx_log_t *log);
ngx_int_t ngx_http_aigw_audit_hash(EVP_MD_CTX *md, const EVP_MD *type,
    ngx_int_t prefix, u_char *a, size_t alen, u_char *b, size_t blen,
    u_char *out);

/* audit_ship.c: records on disk shipped to Redis Streams, a tenant each */
char *ngx_http_aigw_audit_ship_init(ngx_conf_t *cf,
    ngx_http_aigw_audit_conf_t *acf, ngx_http_aigw_redis_t *redis);
ngx_int_t ngx_http_aigw_audit_ship_init_process(ngx_cycle_t *cycle,
    ngx_http_aigw_audit_conf_t *acf);
void ngx_http_aigw_audit_ship_kick(ngx_http_aigw_audit_conf_t *acf);
void ngx_http_aigw_audit_ship_exit(ngx_cycle_t *cycle,
    ngx_http_aigw_audit_conf_t *acf);


#endif /* _NGX_HTTP_AIGW_AUDIT_H_INCLUDED_ */
