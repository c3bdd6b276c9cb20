
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_KEYS_H_INCLUDED_
#define _NGX_HTTP_AIGW_KEYS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_AIGW_KEY_HASH_LEN  32


typedef struct {
    ngx_str_t                  name;
    ngx_str_t                  value;
} ngx_http_aigw_key_meta_t;


/* budget periods, calendar ones in UTC */
#define NGX_HTTP_AIGW_PERIOD_DAY    0
#define NGX_HTTP_AIGW_PERIOD_WEEK   1
#define NGX_HTTP_AIGW_PERIOD_MONTH  2
#define NGX_HTTP_AIGW_PERIOD_TOTAL  3
#define NGX_HTTP_AIGW_PERIODS       4


/* what a key, a tenant, ... may use; 0 means no limit */

typedef struct {
    ngx_uint_t                 rpm;        /* requests a minute */
    ngx_uint_t                 rpd;        /* requests a day */
    ngx_uint_t                 tpm;        /* tokens a minute */
    ngx_uint_t                 tpd;        /* tokens a day */
    ngx_uint_t                 concurrency;
    uint64_t                   budget;     /* micro-dollars a period */
    ngx_uint_t                 period;     /* NGX_HTTP_AIGW_PERIOD_* */
} ngx_http_aigw_limits_t;


/* one virtual key; the secret itself is never kept, only its SHA-256 */

typedef struct {
    u_char                     hash[NGX_HTTP_AIGW_KEY_HASH_LEN];

    ngx_str_t                  id;
    ngx_str_t                  tenant;
    ngx_str_t                  user;
    ngx_str_t                  team;

    ngx_str_t                 *models;     /* globs, NUL-terminated */
    ngx_uint_t                 nmodels;    /* 0: every model */

    ngx_http_aigw_key_meta_t  *meta;
    ngx_uint_t                 nmeta;

    time_t                     expires_at; /* 0: never */
    unsigned                   disabled:1;
    unsigned                   admin:1;    /* may read anyone's usage */

    ngx_http_aigw_limits_t     limits;
} ngx_http_aigw_key_t;


/* open addressing on the first bytes of the hash: already uniform */

typedef struct {
    ngx_str_t                  file;
    ngx_http_aigw_key_t       *keys;
    ngx_uint_t                 nkeys;
    ngx_http_aigw_key_t      **slots;
    ngx_uint_t                 mask;
} ngx_http_aigw_keys_t;


static ngx_inline ngx_uint_t
ngx_http_aigw_keys_slot(u_char *hash)
{
    ngx_uint_t  v;

    ngx_memcpy(&v, hash, sizeof(ngx_uint_t));

    return v;
}


ngx_http_aigw_keys_t *ngx_http_aigw_keys_load(ngx_conf_t *cf,
    ngx_str_t *file);
ngx_http_aigw_key_t *ngx_http_aigw_keys_find(ngx_http_aigw_keys_t *keys,
    u_char *hash);
ngx_int_t ngx_http_aigw_keys_period(ngx_str_t *name, ngx_uint_t *period);
ngx_int_t ngx_http_aigw_keys_model_allowed(ngx_http_aigw_key_t *key,
    ngx_str_t *model);


#endif /* _NGX_HTTP_AIGW_KEYS_H_INCLUDED_ */
