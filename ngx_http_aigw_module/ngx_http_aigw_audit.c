
/*
 * Copyright (C) aigw authors
 */


/*
 * aigw_audit: one JSON line a request, built in the log phase and put in
 * a ring in shared memory; audit_writer.c writes, syncs and signs the
 * lines off the event loop.  A worker's part is a sequence number, the
 * line built in its slot, the leaf hash, and a flag.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_audit.h"


/* bytes kept free at a line's end for the fields past the strings */
#define NGX_HTTP_AIGW_AUDIT_TAIL       768


static ngx_int_t ngx_http_aigw_audit_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static char *ngx_http_aigw_audit_hmac_key(ngx_conf_t *cf,
    ngx_http_aigw_audit_conf_t *acf, ngx_str_t *file);
static char *ngx_http_aigw_audit_sign_key(ngx_conf_t *cf,
    ngx_http_aigw_audit_conf_t *acf, ngx_str_t *file);
static void ngx_http_aigw_audit_cleanup(void *data);
static u_char *ngx_http_aigw_audit_hmac(ngx_http_aigw_audit_conf_t *acf,
    u_char *p, ngx_str_t *body, EVP_MD_CTX *inner);
static const char *ngx_http_aigw_audit_outcome(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_uint_t status);
static void ngx_http_aigw_audit_timer(ngx_event_t *ev);
static ngx_int_t ngx_http_aigw_audit_put(ngx_http_aigw_audit_conf_t *acf,
    u_char *line, size_t len, u_char *leaf);
static void ngx_http_aigw_audit_hold(ngx_http_aigw_audit_conf_t *acf,
    u_char *line, size_t len, u_char *leaf, ngx_log_t *log);


static ngx_int_t ngx_http_aigw_audit_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_aigw_audit_answer_cleanup(void *data);


static ngx_http_output_body_filter_pt  ngx_http_aigw_audit_next_body_filter;


static ngx_str_t  ngx_http_aigw_usage_names[] = {
    ngx_string("none"),
    ngx_string("provider"),
    ngx_string("estimated")
};


/*
 * aigw_audit DIR [zone=SIZE] [sign_key=FILE] [hmac_key=FILE] [origin=TEXT]
 *                [node=NAME] [segment=SIZE] [keep=N] [flush=TIME]
 *                [thread_pool=NAME] [redis=on|off];
 */

char *
ngx_http_aigw_audit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
#if (NGX_THREADS)
    ngx_http_aigw_main_conf_t *amcf = conf;

    size_t                       size;
    ssize_t                      n;
    ngx_str_t                   *value, name, sign, hmac;
    ngx_int_t                    keep;
    ngx_uint_t                   i;
    ngx_msec_t                   flush;
    ngx_file_info_t              fi;
    ngx_pool_cleanup_t          *cln;
    ngx_http_aigw_audit_conf_t  *acf;

    if (amcf->audit) {
        return "is duplicate";
    }

    acf = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_audit_conf_t));
    if (acf == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    size = 16 * 1024 * 1024;
    acf->segment_size = 64 * 1024 * 1024;
    acf->flush = 50;
    ngx_str_set(&acf->thread_pool, "default");
    ngx_str_set(&acf->origin, "aigw/audit");
    acf->node = cf->cycle->hostname;
    ngx_str_null(&sign);
    ngx_str_null(&hmac);

    /* the folder, with a trailing slash, relative to the prefix */

    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_file_info(name.data, &fi) == NGX_FILE_ERROR || !ngx_is_dir(&fi))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "audit folder \"%V\" is not a folder", &name);
        return NGX_CONF_ERROR;
    }

    acf->dir.len = name.len + 1;
    acf->dir.data = ngx_pnalloc(cf->pool, name.len + 2);
    if (acf->dir.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(acf->dir.data, "%V/%Z", &name);

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            name.data = value[i].data + 5;
            name.len = value[i].len - 5;
            n = ngx_parse_size(&name);

            if (n == NGX_ERROR || n < 64 * 1024) {
                goto invalid;
            }

            size = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "segment=", 8) == 0) {
            name.data = value[i].data + 8;
            name.len = value[i].len - 8;
            acf->segment_size = ngx_parse_offset(&name);

            if (acf->segment_size == NGX_ERROR
                || acf->segment_size < NGX_HTTP_AIGW_AUDIT_LINE)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "keep=", 5) == 0) {
            keep = ngx_atoi(value[i].data + 5, value[i].len - 5);
            if (keep == NGX_ERROR || keep < 2) {
                goto invalid;
            }

            acf->keep = keep;
            continue;
        }

        if (ngx_strncmp(value[i].data, "flush=", 6) == 0) {
            name.data = value[i].data + 6;
            name.len = value[i].len - 6;
            flush = ngx_parse_time(&name, 0);

            if (flush == (ngx_msec_t) NGX_ERROR || flush == 0) {
                goto invalid;
            }

            acf->flush = flush;
            continue;
        }

        if (ngx_strncmp(value[i].data, "sign_key=", 9) == 0
            && value[i].len > 9)
        {
            sign.data = value[i].data + 9;
            sign.len = value[i].len - 9;
            continue;
        }

        if (ngx_strncmp(value[i].data, "hmac_key=", 9) == 0
            && value[i].len > 9)
        {
            hmac.data = value[i].data + 9;
            hmac.len = value[i].len - 9;
            continue;
        }

        if (ngx_strncmp(value[i].data, "origin=", 7) == 0
            && value[i].len > 7)
        {
            acf->origin.data = value[i].data + 7;
            acf->origin.len = value[i].len - 7;

            if (acf->origin.len > NGX_HTTP_AIGW_AUDIT_FIELD) {
                goto invalid;
            }

            /* a checkpoint's first line and a note's key name */
            if (ngx_strlchr(acf->origin.data,
                            acf->origin.data + acf->origin.len, ' ')
                || ngx_strlchr(acf->origin.data,
                               acf->origin.data + acf->origin.len, '+'))
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "node=", 5) == 0 && value[i].len > 5) {
            acf->node.data = value[i].data + 5;
            acf->node.len = value[i].len - 5;
            continue;
        }

        if (ngx_strncmp(value[i].data, "thread_pool=", 12) == 0
            && value[i].len > 12)
        {
            acf->thread_pool.data = value[i].data + 12;
            acf->thread_pool.len = value[i].len - 12;
            continue;
        }

        if (ngx_strcmp(value[i].data, "redis=on") == 0) {
            acf->redis = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "redis=off") == 0) {
            acf->redis = 0;
            continue;
        }

        goto invalid;
    }

    if (ngx_thread_pool_add(cf, &acf->thread_pool) == NULL) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_aigw_audit_cleanup;
    cln->data = acf;

    /* fetched once: EVP_sha256() is looked up again at every use */

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    acf->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
#else
    acf->sha256 = (EVP_MD *) EVP_sha256();
#endif

    acf->md = EVP_MD_CTX_new();

    if (acf->sha256 == NULL || acf->md == NULL) {
        ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0, "SHA-256 not available");
        return NGX_CONF_ERROR;
    }

    if (sign.len && ngx_http_aigw_audit_sign_key(cf, acf, &sign)
                    != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (hmac.len && ngx_http_aigw_audit_hmac_key(cf, acf, &hmac)
                    != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigw_audit_config_hash(cf, acf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    acf->zone = ngx_shared_memory_add(cf, &(ngx_str_t)
                                      ngx_string("aigw_audit"), size,
                                      &ngx_http_aigw_module);
    if (acf->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    acf->zone->init = ngx_http_aigw_audit_init_zone;
    acf->zone->data = acf;

    amcf->audit = acf;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"aigw_audit\" requires nginx built --with-threads");
    return NGX_CONF_ERROR;

#endif
}


static void
ngx_http_aigw_audit_cleanup(void *data)
{
    ngx_http_aigw_audit_conf_t  *acf = data;

    EVP_MD_CTX_free(acf->md);
    EVP_MD_CTX_free(acf->hmac_inner);
    EVP_MD_CTX_free(acf->hmac_outer);
    EVP_PKEY_free(acf->sign_key);

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    EVP_MD_free(acf->sha256);
#endif
}


/* a file's bytes, whole, into the configuration's pool */

ngx_int_t
ngx_http_aigw_audit_read(ngx_conf_t *cf, ngx_str_t *name, ngx_str_t *out,
    size_t max)
{
    ssize_t          n;
    ngx_file_t       file;
    ngx_file_info_t  fi;

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = *name;
    file.log = cf->log;

    file.fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", name);
        return NGX_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || (size_t) ngx_file_size(&fi) > max)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not a file of at most %uz bytes",
                           name, max);
        ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    out->len = ngx_file_size(&fi);
    out->data = ngx_pnalloc(cf->pool, out->len + 1);
    if (out->data == NULL) {
        ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    n = ngx_read_file(&file, out->data, out->len, 0);

    ngx_close_file(file.fd);

    if (n != (ssize_t) out->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "cannot read \"%V\"", name);
        return NGX_ERROR;
    }

    out->data[out->len] = '\0';

    return NGX_OK;
}


/*
 * HMAC-SHA256 (RFC 2104) by two digests whose first block, the key with
 * its pads, is hashed once here: a request copies them and hashes its
 * body.  The key file's bytes are the key, less a final newline.
 */

static char *
ngx_http_aigw_audit_hmac_key(ngx_conf_t *cf, ngx_http_aigw_audit_conf_t *acf,
    ngx_str_t *file)
{
    u_char      key[64];
    ngx_str_t   name, k;
    ngx_uint_t  i;

    name = *file;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK
        || ngx_http_aigw_audit_read(cf, &name, &k, 4096) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    while (k.len && (k.data[k.len - 1] == '\n' || k.data[k.len - 1] == '\r'))
    {
        k.len--;
    }

    if (k.len < 16) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "hmac key \"%V\" is shorter than 16 bytes", &name);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(key, sizeof(key));

    if (k.len > 64) {
        if (ngx_http_aigw_audit_hash(acf->md, acf->sha256, -1, NULL, 0,
                                     k.data, k.len, key)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

    } else {
        ngx_memcpy(key, k.data, k.len);
    }

    ngx_explicit_memzero(k.data, k.len);

    for (i = 0; i < 64; i++) {
        acf->hmac_pad[0][i] = key[i] ^ 0x36;
        acf->hmac_pad[1][i] = key[i] ^ 0x5c;
    }

    ngx_explicit_memzero(key, sizeof(key));

    acf->hmac_inner = EVP_MD_CTX_new();
    acf->hmac_outer = EVP_MD_CTX_new();

    if (acf->hmac_inner == NULL || acf->hmac_outer == NULL
        || !EVP_DigestInit_ex(acf->hmac_inner, acf->sha256, NULL)
        || !EVP_DigestUpdate(acf->hmac_inner, acf->hmac_pad[0], 64)
        || !EVP_DigestInit_ex(acf->hmac_outer, acf->sha256, NULL)
        || !EVP_DigestUpdate(acf->hmac_outer, acf->hmac_pad[1], 64))
    {
        ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0, "hmac key setup failed");
        return NGX_CONF_ERROR;
    }

    ngx_explicit_memzero(acf->hmac_pad, sizeof(acf->hmac_pad));

    acf->hmac = 1;

    return NGX_CONF_OK;
}


/*
 * The Ed25519 key of checkpoints.  Its C2SP signed-note key hash is the
 * first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key), the name
 * being the origin.
 */

static char *
ngx_http_aigw_audit_sign_key(ngx_conf_t *cf, ngx_http_aigw_audit_conf_t *acf,
    ngx_str_t *file)
{
    u_char      pub[32], buf[NGX_HTTP_AIGW_AUDIT_FIELD + 34], hash[32], *p;
    size_t      len;
    BIO        *bio;
    ngx_str_t   name;

    name = *file;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    bio = BIO_new_file((char *) name.data, "r");
    if (bio == NULL) {
        ERR_clear_error();
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open signing key \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    acf->sign_key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);

    if (acf->sign_key == NULL
        || EVP_PKEY_id(acf->sign_key) != EVP_PKEY_ED25519)
    {
        ERR_clear_error();
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not an Ed25519 private key in PEM",
                           &name);
        return NGX_CONF_ERROR;
    }

    len = sizeof(pub);

    if (!EVP_PKEY_get_raw_public_key(acf->sign_key, pub, &len)
        || len != 32 || acf->origin.len > NGX_HTTP_AIGW_AUDIT_FIELD)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot use signing key \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    p = ngx_cpymem(buf, acf->origin.data, acf->origin.len);
    *p++ = '\n';
    *p++ = 0x01;
    p = ngx_cpymem(p, pub, 32);

    if (ngx_http_aigw_audit_hash(acf->md, acf->sha256, -1, NULL, 0, buf,
                                 p - buf, hash)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(acf->key_id, hash, 4);

    return NGX_CONF_OK;
}


/* SHA-256 of a prefix byte (-1: none) and two pieces (NULL: none) */

ngx_int_t
ngx_http_aigw_audit_hash(EVP_MD_CTX *md, const EVP_MD *type,
    ngx_int_t prefix, u_char *a, size_t alen, u_char *b, size_t blen,
    u_char *out)
{
    u_char  c;

    c = (u_char) prefix;

    if (!EVP_DigestInit_ex(md, type, NULL)
        || (prefix >= 0 && !EVP_DigestUpdate(md, &c, 1))
        || (a && !EVP_DigestUpdate(md, a, alen))
        || (b && !EVP_DigestUpdate(md, b, blen))
        || !EVP_DigestFinal_ex(md, out, NULL))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_audit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_aigw_audit_conf_t  *oacf = data;

    size_t                       n;
    ngx_slab_pool_t             *shpool;
    ngx_http_aigw_audit_sh_t    *sh;
    ngx_http_aigw_audit_conf_t  *acf;

    acf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    acf->shpool = shpool;

    /* a reload keeps the ring: what was admitted is written still */

    if (oacf) {
        acf->sh = oacf->sh;
        return NGX_OK;
    }

    if (shm_zone->shm.exists) {
        acf->sh = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_aigw_audit_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    /* the requests in flight first, when they take a quarter at most */

    if (shm_zone->shm.size >= 4 * NGX_HTTP_AIGW_AUDIT_TABLES
                                * sizeof(ngx_http_aigw_audit_table_t))
    {
        (void) ngx_http_aigw_audit_flight_init_zone(shpool, sh);
    }

    /* as many slots as fit */

    n = shm_zone->shm.size / sizeof(ngx_http_aigw_audit_slot_t);

    shpool->log_nomem = 0;

    while (n >= 16) {
        sh->slots = ngx_slab_calloc(shpool,
                                 n * sizeof(ngx_http_aigw_audit_slot_t));
        if (sh->slots) {
            break;
        }

        n -= n / 32 + 1;
    }

    shpool->log_nomem = 1;

    if (sh->slots == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "aigw_audit zone is too small");
        return NGX_ERROR;
    }

    sh->nslots = n;
    shpool->data = sh;
    acf->sh = sh;

    shpool->log_ctx = (u_char *) " in aigw_audit zone";

    return NGX_OK;
}


/*
 * The master, as root, gives the folder to the workers' user, as nginx
 * does with its temporary folders: the workers write the log.
 */

ngx_int_t
ngx_http_aigw_audit_init_module(ngx_cycle_t *cycle)
{
    ngx_core_conf_t             *ccf;
    ngx_http_aigw_main_conf_t   *amcf;
    ngx_http_aigw_audit_conf_t  *acf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_aigw_module);

    if (amcf == NULL || amcf->audit == NULL || geteuid() != 0) {
        return NGX_OK;
    }

    acf = amcf->audit;
    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (ccf->user == (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        return NGX_OK;
    }

    acf->dir.data[acf->dir.len - 1] = '\0';

    if (chown((char *) acf->dir.data, ccf->user, -1) == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "chown(\"%s\") failed", acf->dir.data);
        acf->dir.data[acf->dir.len - 1] = '/';
        return NGX_ERROR;
    }

    acf->dir.data[acf->dir.len - 1] = '/';

    return NGX_OK;
}


/* a worker starts: its writer's task and the timer that posts it */

ngx_int_t
ngx_http_aigw_audit_init_process(ngx_cycle_t *cycle)
{
    ngx_http_aigw_main_conf_t   *amcf;
    ngx_http_aigw_audit_conf_t  *acf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_aigw_module);

    if (amcf == NULL || amcf->audit == NULL) {
        return NGX_OK;
    }

    acf = amcf->audit;

    ngx_queue_init(&acf->overflow);

    if (ngx_http_aigw_audit_writer_init(cycle, acf) != NGX_OK
        || ngx_http_aigw_audit_ship_init_process(cycle, acf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_aigw_audit_flight_start(acf, cycle->log);

    acf->timer.handler = ngx_http_aigw_audit_timer;
    acf->timer.data = acf;
    acf->timer.log = cycle->log;
    acf->timer.cancelable = 1;

    ngx_add_timer(&acf->timer, acf->flush);

    return NGX_OK;
}


void
ngx_http_aigw_audit_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_aigw_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_aigw_module);

    if (amcf && amcf->audit) {
        ngx_http_aigw_audit_flight_exit(amcf->audit, cycle->log);
        ngx_http_aigw_audit_writer_exit(cycle, amcf->audit);
        ngx_http_aigw_audit_ship_exit(cycle, amcf->audit);
    }
}


static void
ngx_http_aigw_audit_timer(ngx_event_t *ev)
{
    ngx_http_aigw_audit_conf_t  *acf = ev->data;

    /* workers gone with requests in flight: once a second */

    if (acf->flight_checked != ngx_time()) {
        acf->flight_checked = ngx_time();
        ngx_http_aigw_audit_flight_check(acf, ev->log);
    }

    ngx_http_aigw_audit_release(acf);
    ngx_http_aigw_audit_writer_kick(acf);
    ngx_http_aigw_audit_ship_kick(acf);

    if (!ngx_exiting) {
        ngx_add_timer(ev, acf->flush);
    }
}


/* the log phase: the request's record into the ring */

void
ngx_http_aigw_audit_log(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    u_char                       line[NGX_HTTP_AIGW_AUDIT_LINE];
    u_char                       leaf[32], *p, *last;
    ngx_tm_t                     tm;
    ngx_str_t                    s, pii;
    ngx_msec_t                   ms;
    ngx_time_t                  *tp;
    ngx_uint_t                   status;
    ngx_http_aigw_model_t       *m;
    ngx_http_aigw_main_conf_t   *amcf;
    ngx_http_aigw_audit_conf_t  *acf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    acf = amcf->audit;

    if (acf == NULL || acf->sh == NULL) {
        return;
    }

    p = line;
    last = line + NGX_HTTP_AIGW_AUDIT_LINE - NGX_HTTP_AIGW_AUDIT_TAIL;

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (r->connection->error && status < NGX_HTTP_BAD_REQUEST) {
        status = 499;
    }

    m = ctx->attempts ? ctx->candidates[ctx->last] : NULL;

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);

    /* "ts" and "tenant" first: the writer's index reads them there */

    p = ngx_sprintf(p, "{\"v\":1,\"ts\":%T%03M", tp->sec, tp->msec);
    p = ngx_http_aigw_audit_string(p, last, "tenant", &ctx->tenant);

    p = ngx_sprintf(p, ",\"time\":\"%4d-%02d-%02dT%02d:%02d:%02d.%03MZ\"",
                    tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                    tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec, tp->msec);

    p = ngx_http_aigw_audit_string(p, last, "id", &ctx->request_id);
    p = ngx_http_aigw_audit_string(p, last, "node", &acf->node);

    ngx_str_null(&s);

    if (ctx->key) {
        s = ctx->key->id;
    }

    p = ngx_http_aigw_audit_string(p, last, "key", &s);

    ngx_str_null(&s);

    if (ctx->key) {
        s = ctx->key->user;
    }

    p = ngx_http_aigw_audit_string(p, last, "user", &s);
    p = ngx_http_aigw_audit_string(p, last, "client",
                                   &r->connection->addr_text);
    p = ngx_http_aigw_audit_string(p, last, "endpoint",
                                   ngx_http_aigw_endpoint_name(ctx->endpoint));
    p = ngx_http_aigw_audit_string(p, last, "route", &ctx->route_name);
    p = ngx_http_aigw_audit_string(p, last, "model", &ctx->model);

    ngx_str_null(&s);

    if (m) {
        p = ngx_http_aigw_audit_string(p, last, "served", &m->upstream_model);
        p = ngx_http_aigw_audit_string(p, last, "provider",
                                       &m->provider->name);

    } else {
        p = ngx_http_aigw_audit_string(p, last, "served", &s);
        p = ngx_http_aigw_audit_string(p, last, "provider", &s);
    }

    /* PII findings: names and counts, never values */

    ngx_str_null(&pii);

    if (ctx->pii) {
        (void) ngx_http_aigw_pii_variable(r, ctx, &pii);
    }

    p = ngx_http_aigw_audit_string(p, last, "pii", &pii);

    /* the guard's finding: the rule that refused, never the text */

    ngx_str_null(&s);
    (void) ngx_http_aigw_guard_variable(r, ctx, &s);
    p = ngx_http_aigw_audit_string(p, last, "guard", &s);

    last += NGX_HTTP_AIGW_AUDIT_TAIL;

    p = ngx_sprintf(p, ",\"outcome\":\"%s\",\"status\":%ui",
                    ngx_http_aigw_audit_outcome(r, ctx, status), status);

    if (ctx->error_code) {
        p = ngx_sprintf(p, ",\"error\":\"%s\"", ctx->error_code);
    }

    p = ngx_sprintf(p, ",\"attempts\":%ui,\"stream\":%s",
                    ctx->attempts, ctx->stream ? "true" : "false");

    p = ngx_sprintf(p, ",\"tokens\":{\"prompt\":%ui,\"completion\":%ui,"
                    "\"cached\":%ui,\"reasoning\":%ui}",
                    ctx->prompt_tokens, ctx->completion_tokens,
                    ctx->cached_tokens, ctx->reasoning_tokens);

    p = ngx_sprintf(p, ",\"usage\":\"%V\",\"cost_micro_usd\":%uL",
                    &ngx_http_aigw_usage_names[ctx->usage_source < 3
                                               ? ctx->usage_source : 0],
                    ctx->cost);

    ms = ngx_http_aigw_msec_since(r);
    p = ngx_sprintf(p, ",\"latency_ms\":%M", ms);

    if (ctx->ttft != NGX_CONF_UNSET_MSEC) {
        p = ngx_sprintf(p, ",\"ttft_ms\":%M", ctx->ttft);

    } else {
        p = ngx_cpymem(p, ",\"ttft_ms\":null",
                       sizeof(",\"ttft_ms\":null") - 1);
    }

    ngx_str_null(&s);
    (void) ngx_http_aigw_cache_variable(r, ctx, &s);

    if (s.len) {
        p = ngx_sprintf(p, ",\"cache\":\"%V\"", &s);

    } else {
        p = ngx_cpymem(p, ",\"cache\":null", sizeof(",\"cache\":null") - 1);
    }

    if (ctx->translated) {
        p = ngx_cpymem(p, ",\"translated\":true",
                       sizeof(",\"translated\":true") - 1);
    }

    p = ngx_sprintf(p, ",\"config\":\"%V\"", &acf->config_hash);

    if (acf->hmac && ctx->body.len) {
        p = ngx_cpymem(p, ",\"body_hmac\":\"",
                       sizeof(",\"body_hmac\":\"") - 1);
        p = ngx_http_aigw_audit_hmac(acf, p, &ctx->body, NULL);
        *p++ = '"';
    }

    /* the answer's HMAC, the body as it went to the client */

    if (ctx->audit_answer && !ctx->audit_answer_off) {
        p = ngx_cpymem(p, ",\"answer_hmac\":\"",
                       sizeof(",\"answer_hmac\":\"") - 1);
        p = ngx_http_aigw_audit_hmac(acf, p, NULL, ctx->audit_answer);
        *p++ = '"';
    }

    *p++ = '}';

    if (ngx_http_aigw_audit_hash(acf->md, acf->sha256, 0x00, NULL, 0,
                                 line, p - line, leaf)
        != NGX_OK)
    {
        /* a line without its leaf would be a hole in the tree */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "aigw: audit leaf hash failed, record of \"%V\" lost",
                      &ctx->request_id);
        return;
    }

    *p++ = '\n';

    ngx_http_aigw_audit_add(acf, line, p - line, leaf, r->connection->log);

    ngx_http_aigw_audit_flight_done(ctx);
}


/* a record into the ring, or held while the ring is full */

void
ngx_http_aigw_audit_add(ngx_http_aigw_audit_conf_t *acf, u_char *line,
    size_t len, u_char *leaf, ngx_log_t *log)
{
    if (ngx_queue_empty(&acf->overflow)
        && ngx_http_aigw_audit_put(acf, line, len, leaf) == NGX_OK)
    {
        return;
    }

    ngx_http_aigw_audit_hold(acf, line, len, leaf, log);
}


/* a sequence number, if its slot is free; the line, its leaf, the mark */

static ngx_int_t
ngx_http_aigw_audit_put(ngx_http_aigw_audit_conf_t *acf, u_char *line,
    size_t len, u_char *leaf)
{
    uint64_t                     head;
    ngx_http_aigw_audit_sh_t    *sh;
    ngx_http_aigw_audit_slot_t  *slot;

    sh = acf->sh;

    for ( ;; ) {
        head = sh->head;

        if (head - sh->tail >= sh->nslots) {
            ngx_http_aigw_audit_writer_kick(acf);
            return NGX_BUSY;
        }

        if (ngx_atomic_cmp_set(&sh->head, head, head + 1)) {
            break;
        }
    }

    slot = &sh->slots[head % sh->nslots];

    ngx_memcpy(slot->leaf, leaf, 32);
    ngx_memcpy(slot->line, line, len);
    slot->len = len;

    ngx_memory_barrier();

    slot->seq = head + 1;

    if (head - sh->tail > sh->nslots / 2) {
        ngx_http_aigw_audit_writer_kick(acf);
    }

    return NGX_OK;
}


/*
 * The ring is full (a burst faster than the disk): the record waits in
 * the worker's memory, up to NGX_HTTP_AIGW_AUDIT_HELD records, and the
 * timer moves it to the ring; past that it is lost, and said so (at most
 * once a second).
 */

static void
ngx_http_aigw_audit_hold(ngx_http_aigw_audit_conf_t *acf, u_char *line,
    size_t len, u_char *leaf, ngx_log_t *log)
{
    ngx_http_aigw_audit_held_t  *h;

    if (acf->held < NGX_HTTP_AIGW_AUDIT_HELD) {
        h = ngx_alloc(sizeof(ngx_http_aigw_audit_held_t) + len, log);

        if (h) {
            ngx_memcpy(h->leaf, leaf, 32);
            h->len = len;
            ngx_memcpy(h->line, line, len);
            ngx_queue_insert_tail(&acf->overflow, &h->queue);
            acf->held++;
            return;
        }
    }

    (void) ngx_atomic_fetch_add(&acf->sh->dropped, 1);

    if (acf->dropped_logged != ngx_time()) {
        acf->dropped_logged = ngx_time();
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "aigw: audit ring full and %ui records held: "
                      "records lost (%uA so far)",
                      acf->held, acf->sh->dropped);
    }
}


/* the records held, into the ring as it has room */

void
ngx_http_aigw_audit_release(ngx_http_aigw_audit_conf_t *acf)
{
    ngx_queue_t                 *q;
    ngx_http_aigw_audit_held_t  *h;

    while (!ngx_queue_empty(&acf->overflow)) {
        q = ngx_queue_head(&acf->overflow);
        h = ngx_queue_data(q, ngx_http_aigw_audit_held_t, queue);

        if (ngx_http_aigw_audit_put(acf, h->line, h->len, h->leaf)
            != NGX_OK)
        {
            return;
        }

        ngx_queue_remove(q);
        ngx_free(h);
        acf->held--;
    }
}


/* ,"name":"value", escaped for JSON, cut at a character's start */

u_char *
ngx_http_aigw_audit_string(u_char *p, u_char *last, const char *name,
    ngx_str_t *s)
{
    u_char  *v, *end, c;

    static u_char  hex[] = "0123456789abcdef";

    p = ngx_sprintf(p, ",\"%s\":\"", name);

    v = s->data;
    end = v + ngx_min(s->len, NGX_HTTP_AIGW_AUDIT_FIELD);

    if (end < v + s->len) {
        while (end > v && (*end & 0xc0) == 0x80) {
            end--;
        }
    }

    for ( /* void */ ; v < end && p + 6 < last; v++) {
        c = *v;

        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = c;

        } else if (c < 0x20 || c == 0x7f) {
            *p++ = '\\';
            *p++ = 'u';
            *p++ = '0';
            *p++ = '0';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];

        } else {
            *p++ = c;
        }
    }

    *p++ = '"';

    return p;
}


/*
 * HMAC-SHA256 of a body whole, or (body NULL) of what an inner digest
 * begun from hmac_inner has taken so far
 */

static u_char *
ngx_http_aigw_audit_hmac(ngx_http_aigw_audit_conf_t *acf, u_char *p,
    ngx_str_t *body, EVP_MD_CTX *md)
{
    u_char  inner[32], mac[32];

    if (body) {
        if (!EVP_MD_CTX_copy_ex(acf->md, acf->hmac_inner)
            || !EVP_DigestUpdate(acf->md, body->data, body->len)
            || !EVP_DigestFinal_ex(acf->md, inner, NULL))
        {
            return p;
        }

    } else if (!EVP_DigestFinal_ex(md, inner, NULL)) {
        return p;
    }

    if (!EVP_MD_CTX_copy_ex(acf->md, acf->hmac_outer)
        || !EVP_DigestUpdate(acf->md, inner, 32)
        || !EVP_DigestFinal_ex(acf->md, mac, NULL))
    {
        return p;
    }

    return ngx_hex_dump(p, mac, 32);
}


static const char *
ngx_http_aigw_audit_outcome(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_uint_t status)
{
    if (status == 499) {
        return "client_gone";
    }

    if (status < NGX_HTTP_BAD_REQUEST) {

        /* a stream that failed after its status: how, as $aigw_outcome */

        switch (ctx->outcome) {

        case NGX_HTTP_AIGW_OUTCOME_CUT:
            return "cut";

        case NGX_HTTP_AIGW_OUTCOME_STALLED:
            return "stalled";

        case NGX_HTTP_AIGW_OUTCOME_TIMEOUT:
            return "timeout";

        case NGX_HTTP_AIGW_OUTCOME_RESUMED:
            return "resumed";

        case NGX_HTTP_AIGW_OUTCOME_HEDGED:
            return "hedged";

        /* the status went out with a keep-alive, then no provider served */

        case NGX_HTTP_AIGW_OUTCOME_ERROR:
            return "provider_error";
        }

        if (ctx->sse_buf && !ctx->sse_done) {
            return "incomplete";
        }

        return "answered";
    }

    if (ctx->guard.len
        || (ctx->error_code
            && ngx_strcmp(ctx->error_code, "pii_detected") == 0))
    {
        return "blocked";
    }

    switch (status) {

    case NGX_HTTP_UNAUTHORIZED:
    case NGX_HTTP_FORBIDDEN:
        return "denied";

    case NGX_HTTP_TOO_MANY_REQUESTS:
        return "rate_limited";

    case NGX_HTTP_GATEWAY_TIME_OUT:
        return "timeout";

    case NGX_HTTP_BAD_GATEWAY:
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        return "provider_error";
    }

    if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        return ctx->attempts ? "provider_error" : "error";
    }

    return "refused";
}


/* redis=on: from the http block's init, when aigw_redis is known */

char *
ngx_http_aigw_audit_ship_conf(ngx_conf_t *cf,
    ngx_http_aigw_main_conf_t *amcf)
{
    return ngx_http_aigw_audit_ship_init(cf, amcf->audit, amcf->redis);
}


/*
 * hmac_key=: the answer's HMAC, taken as its bytes pass.  The filter
 * sits after aigw's own (registered before it), so that it sees the body
 * as the client gets it, a stream's events as rewritten or translated,
 * and before gzip and chunked.  Without hmac_key= it is not there.
 */

ngx_int_t
ngx_http_aigw_audit_filter_init(ngx_conf_t *cf)
{
    ngx_http_aigw_main_conf_t   *amcf;
    ngx_http_aigw_audit_conf_t  *acf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigw_module);
    acf = amcf->audit;

    if (acf == NULL || !acf->hmac) {
        return NGX_OK;
    }

    ngx_http_aigw_audit_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_aigw_audit_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_audit_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t                       size;
    EVP_MD_CTX                  *md;
    ngx_chain_t                 *cl;
    ngx_pool_cleanup_t          *cln;
    ngx_http_aigw_ctx_t         *ctx;
    ngx_http_aigw_main_conf_t   *amcf;
    ngx_http_aigw_audit_conf_t  *acf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx == NULL || r != r->main || in == NULL || ctx->audit_answer_off) {
        return ngx_http_aigw_audit_next_body_filter(r, in);
    }

    md = ctx->audit_answer;

    if (md == NULL) {
        amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
        acf = amcf->audit;

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        md = EVP_MD_CTX_new();

        if (md == NULL || !EVP_MD_CTX_copy_ex(md, acf->hmac_inner)) {
            EVP_MD_CTX_free(md);
            ctx->audit_answer_off = 1;
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "aigw: audit answer HMAC not available");
            return ngx_http_aigw_audit_next_body_filter(r, in);
        }

        cln->handler = ngx_http_aigw_audit_answer_cleanup;
        cln->data = md;
        ctx->audit_answer = md;
    }

    for (cl = in; cl; cl = cl->next) {
        size = ngx_buf_size(cl->buf);

        if (size == 0) {
            continue;
        }

        /* a body from a file is not read here: no HMAC, said so */

        if (!ngx_buf_in_memory(cl->buf)
            || !EVP_DigestUpdate(md, cl->buf->pos, size))
        {
            ctx->audit_answer_off = 1;
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "aigw: audit answer HMAC not taken: the answer "
                          "is not in memory");
            break;
        }
    }

    return ngx_http_aigw_audit_next_body_filter(r, in);
}


static void
ngx_http_aigw_audit_answer_cleanup(void *data)
{
    EVP_MD_CTX_free(data);
}
