
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_keys.h"


/*
 * A worker's cache of the keys it authenticated lately, so that a
 * known key costs a SipHash, not a SHA-256.  A slot holds a 128-bit
 * SipHash-2-4 tag of the secret, keyed with random bytes drawn in this
 * worker, and the key's entry: never the secret.  Only keys found are
 * cached (unknown ones cannot evict them); whether a key is disabled
 * or expired is checked on every request, hit or not.  The entries
 * belong to one key table: a reload starts new workers, the table's
 * pool cleanup empties the cache, and so does a table other than the
 * one the slots were filled from.
 */

#define NGX_HTTP_AIGW_AUTH_SLOTS  64    /* a power of two */


typedef struct {
    uint64_t                     tag[2];
    ngx_http_aigw_key_t         *key;   /* NULL: empty */
} ngx_http_aigw_auth_slot_t;


typedef struct {
    ngx_http_aigw_keys_t        *keys;  /* of the entries, NULL: unseeded */
    uint64_t                     k0;
    uint64_t                     k1;
    ngx_http_aigw_auth_slot_t    slot[NGX_HTTP_AIGW_AUTH_SLOTS];
} ngx_http_aigw_auth_cache_t;


#define NGX_HTTP_AIGW_AUTH_UNKNOWN  ((ngx_http_aigw_key_t *) -1)


static ngx_int_t ngx_http_aigw_auth_credential(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_str_t *secret);
static ngx_http_aigw_key_t *ngx_http_aigw_auth_lookup(ngx_http_request_t *r,
    ngx_http_aigw_main_conf_t *amcf, ngx_str_t *secret);
static void ngx_http_aigw_auth_forget(void *data);
static void ngx_http_aigw_auth_siphash(uint64_t k0, uint64_t k1, u_char *p,
    size_t len, uint64_t *out);
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
static void ngx_http_aigw_auth_cleanup(void *data);
static void ngx_http_aigw_auth_ctx_cleanup(void *data);
#endif


static ngx_http_aigw_auth_cache_t  ngx_http_aigw_auth_cache;


/* aigw_keys PATH; */

char *
ngx_http_aigw_auth_keys(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_main_conf_t *amcf = conf;

    ngx_str_t           *value, file;
    ngx_pool_cleanup_t  *cln;

    if (amcf->keys) {
        return "is duplicate";
    }

    value = cf->args->elts;
    file = value[1];

    amcf->keys = ngx_http_aigw_keys_load(cf, &file);

    if (amcf->keys == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the worker's cache points into this table: emptied when it goes */

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_aigw_auth_forget;
    cln->data = amcf->keys;

    return ngx_http_aigw_auth_sha256(cf, amcf);
}


/* SHA-256 for the keys and the cache, set up once */

char *
ngx_http_aigw_auth_sha256(ngx_conf_t *cf, ngx_http_aigw_main_conf_t *amcf)
{
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    ngx_pool_cleanup_t  *cln;
#endif

    if (amcf->sha256_ctx) {
        return NGX_CONF_OK;
    }

    /*
     * fetched once: EVP_sha256() would make OpenSSL 3 look the
     * algorithm up again on every request
     */

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)

    amcf->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);

    if (amcf->sha256 == NULL) {
        ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0, "EVP_MD_fetch(SHA256) failed");
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        EVP_MD_free(amcf->sha256);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_aigw_auth_cleanup;
    cln->data = amcf->sha256;

#else

    amcf->sha256 = (EVP_MD *) EVP_sha256();

#endif

    /*
     * one digest context, reused by every request of a worker (each
     * worker has its copy): EVP_Digest() allocates and frees one a call
     */

    amcf->sha256_ctx = EVP_MD_CTX_new();
    if (amcf->sha256_ctx == NULL) {
        ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0, "EVP_MD_CTX_new() failed");
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        EVP_MD_CTX_free(amcf->sha256_ctx);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_aigw_auth_ctx_cleanup;
    cln->data = amcf->sha256_ctx;

    return NGX_CONF_OK;
}


#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)

static void
ngx_http_aigw_auth_cleanup(void *data)
{
    EVP_MD_free(data);
}

#endif


/*
 * Access step 1: who calls.  The key's SHA-256 is looked up in the
 * table built when the configuration was read; the secret itself is
 * neither kept nor logged.
 */

ngx_int_t
ngx_http_aigw_auth_handler(ngx_http_request_t *r)
{
    u_char                      c;
    size_t                      i;
    ngx_int_t                   rc;
    ngx_str_t                   secret;
    ngx_http_aigw_ctx_t        *ctx;
    ngx_http_aigw_key_t        *key;
    ngx_http_aigw_loc_conf_t   *alcf;
    ngx_http_aigw_main_conf_t  *amcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (!alcf->auth) {

        /* trusted callers: the tenant is what the operator says */

        if (alcf->tenant
            && ngx_http_complex_value(r, alcf->tenant, &ctx->tenant)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /*
         * It may come from the client, through a variable, and goes
         * into a header line to the provider and into logs
         */

        for (i = 0; i < ctx->tenant.len; i++) {
            c = ctx->tenant.data[i];

            if (c < 0x20 || c == 0x7f) {
                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "aigw: the tenant has a control character "
                              "at byte %uz", i);
                ngx_str_null(&ctx->tenant);
                return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                           "invalid_tenant",
                                           "The tenant of the request is "
                                           "not a valid header value.");
            }
        }

        return NGX_DECLINED;
    }

    ngx_str_null(&secret);

    rc = ngx_http_aigw_auth_credential(r, ctx, &secret);

    if (rc != NGX_OK) {
        return rc;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    key = ngx_http_aigw_auth_lookup(r, amcf, &secret);

    if (key == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (key == NGX_HTTP_AIGW_AUTH_UNKNOWN) {
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_UNAUTHORIZED,
                                   "invalid_api_key",
                                   "Incorrect API key provided.");
    }

    if (key->disabled) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: API key \"%V\" is disabled", &key->id);

        return ngx_http_aigw_error(r, ctx, NGX_HTTP_FORBIDDEN,
                                   "key_disabled",
                                   "This API key has been disabled.");
    }

    if (key->expires_at && ngx_time() >= key->expires_at) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: API key \"%V\" has expired", &key->id);

        return ngx_http_aigw_error(r, ctx, NGX_HTTP_FORBIDDEN,
                                   "key_expired",
                                   "This API key has expired.");
    }

    ctx->key = key;
    ctx->tenant = key->tenant;

    return NGX_OK;
}


static void
ngx_http_aigw_auth_forget(void *data)
{
    if (ngx_http_aigw_auth_cache.keys == data) {
        ngx_explicit_memzero(&ngx_http_aigw_auth_cache,
                             sizeof(ngx_http_aigw_auth_cache_t));
    }
}


/*
 * The key of a secret: from the worker's cache, else by its SHA-256 in
 * the key table (then cached).  NGX_HTTP_AIGW_AUTH_UNKNOWN if there is
 * none, NULL on an error.
 */

static ngx_http_aigw_key_t *
ngx_http_aigw_auth_lookup(ngx_http_request_t *r,
    ngx_http_aigw_main_conf_t *amcf, ngx_str_t *secret)
{
    u_char                       hash[EVP_MAX_MD_SIZE];
    uint64_t                     tag[2], k[2];
    unsigned int                 len;
    ngx_http_aigw_key_t         *key;
    ngx_http_aigw_auth_slot_t   *slot;
    ngx_http_aigw_auth_cache_t  *cache;

    cache = &ngx_http_aigw_auth_cache;
    slot = NULL;

    if (cache->keys != amcf->keys) {

        /* the first request of this worker, or of another key table */

        if (RAND_bytes((u_char *) k, sizeof(k)) == 1) {
            ngx_memzero(cache->slot, sizeof(cache->slot));
            cache->k0 = k[0];
            cache->k1 = k[1];
            cache->keys = amcf->keys;
            ngx_explicit_memzero(k, sizeof(k));

        } else {
            ngx_ssl_error(NGX_LOG_WARN, r->connection->log, 0,
                          "aigw: RAND_bytes() failed, keys not cached");
        }
    }

    if (cache->keys == amcf->keys) {
        ngx_http_aigw_auth_siphash(cache->k0, cache->k1, secret->data,
                                   secret->len, tag);

        slot = &cache->slot[tag[0] & (NGX_HTTP_AIGW_AUTH_SLOTS - 1)];

        /* in constant time: how much of a tag matches says nothing */

        if (slot->key
            && CRYPTO_memcmp(slot->tag, tag, sizeof(tag)) == 0)
        {
            return slot->key;
        }
    }

    if (EVP_DigestInit_ex(amcf->sha256_ctx, amcf->sha256, NULL) != 1
        || EVP_DigestUpdate(amcf->sha256_ctx, secret->data, secret->len)
           != 1
        || EVP_DigestFinal_ex(amcf->sha256_ctx, hash, &len) != 1)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "aigw: SHA-256 failed");
        return NULL;
    }

    key = ngx_http_aigw_keys_find(amcf->keys, hash);

    if (key == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: unknown API key (sha256 %*xs...)", 4, hash);
        return NGX_HTTP_AIGW_AUTH_UNKNOWN;
    }

    if (slot) {
        slot->tag[0] = tag[0];
        slot->tag[1] = tag[1];
        slot->key = key;
    }

    return key;
}


/*
 * SipHash-2-4 with its 128-bit output (Aumasson, Bernstein: "SipHash: a
 * fast short-input PRF").  Words are read in the machine's byte order:
 * the tags never leave the worker.
 */

#define ngx_http_aigw_auth_rotl(x, b)                                         \
    (uint64_t) (((x) << (b)) | ((x) >> (64 - (b))))

#define ngx_http_aigw_auth_sipround()                                         \
    v0 += v1; v1 = ngx_http_aigw_auth_rotl(v1, 13); v1 ^= v0;                 \
    v0 = ngx_http_aigw_auth_rotl(v0, 32);                                     \
    v2 += v3; v3 = ngx_http_aigw_auth_rotl(v3, 16); v3 ^= v2;                 \
    v0 += v3; v3 = ngx_http_aigw_auth_rotl(v3, 21); v3 ^= v0;                 \
    v2 += v1; v1 = ngx_http_aigw_auth_rotl(v1, 17); v1 ^= v2;                 \
    v2 = ngx_http_aigw_auth_rotl(v2, 32)

static void
ngx_http_aigw_auth_siphash(uint64_t k0, uint64_t k1, u_char *p, size_t len,
    uint64_t *out)
{
    u_char     *last;
    size_t      n;
    uint64_t    v0, v1, v2, v3, m;
    ngx_uint_t  i;

    v0 = k0 ^ 0x736f6d6570736575ULL;
    v1 = k1 ^ 0x646f72616e646f6dULL ^ 0xee;
    v2 = k0 ^ 0x6c7967656e657261ULL;
    v3 = k1 ^ 0x7465646279746573ULL;

    last = p + (len & ~((size_t) 7));

    for ( /* void */ ; p < last; p += 8) {
        ngx_memcpy(&m, p, 8);

        v3 ^= m;
        ngx_http_aigw_auth_sipround();
        ngx_http_aigw_auth_sipround();
        v0 ^= m;
    }

    /* the last bytes, and the length's low byte at the top */

    m = (uint64_t) len << 56;

    for (n = len & 7, i = 0; i < n; i++) {
        m |= (uint64_t) p[i] << (8 * i);
    }

    v3 ^= m;
    ngx_http_aigw_auth_sipround();
    ngx_http_aigw_auth_sipround();
    v0 ^= m;

    /* the secret's last bytes are not left on the stack */
    ngx_explicit_memzero(&m, sizeof(m));

    v2 ^= 0xee;

    for (i = 0; i < 4; i++) {
        ngx_http_aigw_auth_sipround();
    }

    out[0] = v0 ^ v1 ^ v2 ^ v3;

    v1 ^= 0xdd;

    for (i = 0; i < 4; i++) {
        ngx_http_aigw_auth_sipround();
    }

    out[1] = v0 ^ v1 ^ v2 ^ v3;
}


/*
 * The secret from "Authorization: Bearer ..." (OpenAI's SDK, and
 * Anthropic's with an auth token) or "x-api-key: ..." (Anthropic's).
 */

static ngx_int_t
ngx_http_aigw_auth_credential(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_str_t *secret)
{
    u_char           *p, *last;
    ngx_str_t         bearer, api_key;
    ngx_uint_t        n;
    ngx_table_elt_t  *h;

    ngx_str_null(&bearer);
    ngx_str_null(&api_key);

    if (r->headers_in.authorization) {
        p = r->headers_in.authorization->value.data;
        last = p + r->headers_in.authorization->value.len;

        if (last - p < 7 || ngx_strncasecmp(p, (u_char *) "Bearer ", 7) != 0)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aigw: \"Authorization\" is not a bearer token");

            return ngx_http_aigw_error(r, ctx, NGX_HTTP_UNAUTHORIZED,
                                       "invalid_api_key",
                                       "The Authorization header must be "
                                       "\"Bearer <API key>\".");
        }

        for (p += 7; p < last && *p == ' '; p++) { /* void */ }
        while (last > p && last[-1] == ' ') { last--; }

        bearer.data = p;
        bearer.len = last - p;
    }

    h = ngx_http_aigw_request_header(r, "x-api-key", sizeof("x-api-key") - 1,
                                     &n);
    if (h) {
        api_key = h->value;
    }

    if (n > 1
        || (bearer.len && api_key.len
            && (bearer.len != api_key.len
                || ngx_strncmp(bearer.data, api_key.data, bearer.len) != 0)))
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: the request carries more than one API key");

        return ngx_http_aigw_error(r, ctx, NGX_HTTP_UNAUTHORIZED,
                                   "invalid_api_key",
                                   "The request carries more than one API "
                                   "key.");
    }

    *secret = bearer.len ? bearer : api_key;

    if (secret->len == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: no API key");

        return ngx_http_aigw_error(r, ctx, NGX_HTTP_UNAUTHORIZED,
                                   "missing_api_key",
                                   "You didn't provide an API key. Send it "
                                   "as \"Authorization: Bearer <key>\" or "
                                   "\"x-api-key: <key>\".");
    }

    return NGX_OK;
}


static void
ngx_http_aigw_auth_ctx_cleanup(void *data)
{
    EVP_MD_CTX_free(data);
}
