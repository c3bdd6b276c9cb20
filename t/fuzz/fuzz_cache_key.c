
/*
 * Copyright (C) aigw authors
 */


/*
 * libFuzzer harness of the cache key's canonical digest (t/fuzz/run.sh
 * builds and runs it, linked with libcrypto).  It must never crash nor
 * read past the body; on a body the scan takes (the only bodies the
 * gateway keys) it must give a digest or decline, never fail; the
 * digest is the same twice, and the same with white space around.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_scan.c"
#include "../../ngx_http_aigw_module/ngx_http_aigw_cache_key.c"


#define F_STACK  256


static EVP_MD_CTX  *f_md_ctx;


static void
f_assert(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_cache_key: %s\n", what);
        abort();
    }
}


static ngx_int_t
f_key(u_char *buf, size_t size, u_char *out)
{
    u_char                     *scratch, *stack;
    ngx_int_t                   rc;
    ngx_http_aigw_cache_key_t   k;

    static ngx_str_t  exclude[] = {
        ngx_string("user"),
        ngx_string("stream")
    };

    scratch = malloc(size + 64);
    stack = malloc(F_STACK * NGX_HTTP_AIGW_CACHE_KEY_LEN);
    f_assert(scratch != NULL && stack != NULL, "out of memory");

    memset(&k, 0, sizeof(k));
    k.md = EVP_sha256();
    k.md_ctx = f_md_ctx;
    k.scratch = scratch;
    k.stack = stack;
    k.size = F_STACK;
    k.exclude = exclude;
    k.nexclude = 2;

    rc = ngx_http_aigw_cache_key_body(&k, buf, buf + size, out);

    free(stack);
    free(scratch);

    return rc;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                *buf, *wide;
    ngx_int_t              rc, src;
    ngx_http_aigw_scan_t   s;
    u_char                 d1[NGX_HTTP_AIGW_CACHE_KEY_LEN];
    u_char                 d2[NGX_HTTP_AIGW_CACHE_KEY_LEN];

    if (f_md_ctx == NULL) {
        f_md_ctx = EVP_MD_CTX_new();
        f_assert(f_md_ctx != NULL, "no digest context");
    }

    /* an exact-size copy: AddressSanitizer sees any read past the end */
    buf = malloc(size ? size : 1);
    f_assert(buf != NULL, "out of memory");
    memcpy(buf, data, size);

    rc = f_key(buf, size, d1);

    f_assert(rc == NGX_OK || rc == NGX_DECLINED || rc == NGX_ERROR,
             "unknown rc");

    memset(&s, 0, sizeof(s));
    src = ngx_http_aigw_scan(&s, buf, buf + size);

    if (src == NGX_OK) {
        f_assert(rc != NGX_ERROR, "a scanned body failed");
    }

    if (rc != NGX_OK) {
        free(buf);
        return 0;
    }

    f_assert(f_key(buf, size, d2) == NGX_OK
             && memcmp(d1, d2, sizeof(d1)) == 0, "not the same twice");

    wide = malloc(size + 2);
    f_assert(wide != NULL, "out of memory");
    wide[0] = ' ';
    memcpy(wide + 1, buf, size);
    wide[size + 1] = '\n';

    f_assert(f_key(wide, size + 2, d2) == NGX_OK
             && memcmp(d1, d2, sizeof(d1)) == 0,
             "white space around changes the digest");

    free(wide);
    free(buf);

    return 0;
}
