
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_aigw_scan.h"
#include "ngx_http_aigw_cache.h"


#define NGX_HTTP_AIGW_KEY_DLEN  NGX_HTTP_AIGW_CACHE_KEY_LEN


/* what a value's walk says of it besides its digest */
typedef struct {
    u_char                      text[NGX_HTTP_AIGW_KEY_DLEN];
    unsigned                    string:1;
    unsigned                    is_text:1;   /* the string "text" */
    unsigned                    has_text:1;  /* one text block */
} ngx_http_aigw_key_info_t;


static ngx_int_t ngx_http_aigw_cache_key_value(ngx_http_aigw_cache_key_t *k,
    u_char **pp, u_char *last, ngx_uint_t depth, u_char *out,
    ngx_http_aigw_key_info_t *info);
static ngx_int_t ngx_http_aigw_cache_key_object(ngx_http_aigw_cache_key_t *k,
    u_char **pp, u_char *last, ngx_uint_t depth, u_char *out,
    ngx_http_aigw_key_info_t *info);
static ngx_int_t ngx_http_aigw_cache_key_array(ngx_http_aigw_cache_key_t *k,
    u_char **pp, u_char *last, ngx_uint_t depth, u_char *out,
    ngx_http_aigw_key_info_t *info);
static u_char *ngx_http_aigw_cache_key_string(u_char *p, u_char *last);
static ngx_int_t ngx_http_aigw_cache_key_number(ngx_http_aigw_cache_key_t *k,
    u_char **pp, u_char *last, u_char *out);
static int ngx_libc_cdecl ngx_http_aigw_cache_key_cmp(const void *a,
    const void *b);


#define ngx_http_aigw_key_ws(p, last)                                        \
    while (p < last                                                          \
           && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))         \
    {                                                                        \
        p++;                                                                 \
    }


ngx_int_t
ngx_http_aigw_cache_key_body(ngx_http_aigw_cache_key_t *k, u_char *p,
    u_char *last, u_char *out)
{
    ngx_int_t                 rc;
    ngx_http_aigw_key_info_t  info;

    k->n = 0;

    ngx_http_aigw_key_ws(p, last);

    if (p == last || *p != '{') {
        return NGX_ERROR;
    }

    rc = ngx_http_aigw_cache_key_object(k, &p, last, 0, out, &info);

    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_aigw_key_ws(p, last);

    return p == last ? NGX_OK : NGX_ERROR;
}


/* SHA-256 of a tag byte and len bytes */

ngx_int_t
ngx_http_aigw_cache_key_digest(ngx_http_aigw_cache_key_t *k, u_char tag,
    u_char *p, size_t len, u_char *out)
{
    unsigned int  n;

    if (EVP_DigestInit_ex(k->md_ctx, k->md, NULL) != 1
        || EVP_DigestUpdate(k->md_ctx, &tag, 1) != 1
        || (len && EVP_DigestUpdate(k->md_ctx, p, len) != 1)
        || EVP_DigestFinal_ex(k->md_ctx, out, &n) != 1)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_cache_key_value(ngx_http_aigw_cache_key_t *k, u_char **pp,
    u_char *last, ngx_uint_t depth, u_char *out,
    ngx_http_aigw_key_info_t *info)
{
    u_char  *p, *e, *d;

    p = *pp;

    info->string = 0;
    info->is_text = 0;
    info->has_text = 0;

    if (p == last) {
        return NGX_ERROR;
    }

    switch (*p) {

    case '{':
        return ngx_http_aigw_cache_key_object(k, pp, last, depth + 1, out,
                                              info);

    case '[':
        return ngx_http_aigw_cache_key_array(k, pp, last, depth + 1, out,
                                             info);

    case '"':
        e = ngx_http_aigw_cache_key_string(p, last);
        if (e == NULL) {
            return NGX_ERROR;
        }

        *pp = e;
        info->string = 1;

        if (p == k->subst) {
            /* a template's text: its name, version and variables */
            ngx_memcpy(out, k->subst_digest, NGX_HTTP_AIGW_KEY_DLEN);
            return NGX_OK;
        }

        d = ngx_http_aigw_scan_unescape(k->scratch, p + 1, e - 1);

        info->is_text = (d - k->scratch == 4
                         && ngx_strncmp(k->scratch, "text", 4) == 0);

        return ngx_http_aigw_cache_key_digest(k, 's', k->scratch,
                                              d - k->scratch, out);

    case 't':
    case 'f':
    case 'n':
        e = p + (*p == 'f' ? 5 : 4);
        if (e > last) {
            return NGX_ERROR;
        }

        *pp = e;

        return ngx_http_aigw_cache_key_digest(k, *p, NULL, 0, out);

    default:
        return ngx_http_aigw_cache_key_number(k, pp, last, out);
    }
}


static ngx_int_t
ngx_http_aigw_cache_key_object(ngx_http_aigw_cache_key_t *k, u_char **pp,
    u_char *last, ngx_uint_t depth, u_char *out,
    ngx_http_aigw_key_info_t *info)
{
    u_char                    *p, *e, *d, *top;
    size_t                     len;
    ngx_int_t                  rc;
    ngx_uint_t                 base, i, npairs, skip, content, type, text;
    ngx_http_aigw_key_info_t   vi;
    u_char                     pair[2 * NGX_HTTP_AIGW_KEY_DLEN];
    u_char                     tdigest[NGX_HTTP_AIGW_KEY_DLEN];

    if (depth > NGX_HTTP_AIGW_CACHE_DEPTH) {
        return NGX_DECLINED;
    }

    p = *pp + 1;
    base = k->n;
    npairs = 0;
    type = 0;
    text = 0;

    ngx_http_aigw_key_ws(p, last);

    if (p < last && *p == '}') {
        p++;
        goto done;
    }

    for ( ;; ) {

        if (p == last || *p != '"') {
            return NGX_ERROR;
        }

        e = ngx_http_aigw_cache_key_string(p, last);
        if (e == NULL) {
            return NGX_ERROR;
        }

        d = ngx_http_aigw_scan_unescape(k->scratch, p + 1, e - 1);
        len = d - k->scratch;

        skip = 0;

        if (depth == 0) {
            if (len == 5 && ngx_strncmp(k->scratch, "model", 5) == 0) {
                skip = 1;
            }

            for (i = 0; i < k->nexclude; i++) {
                if (k->exclude[i].len == len
                    && ngx_strncmp(k->scratch, k->exclude[i].data, len) == 0)
                {
                    skip = 1;
                }
            }
        }

        content = (len == 7 && ngx_strncmp(k->scratch, "content", 7) == 0)
                  || (len == 6 && ngx_strncmp(k->scratch, "system", 6) == 0);

        vi.is_text = (len == 4 && ngx_strncmp(k->scratch, "type", 4) == 0);
        vi.has_text = (len == 4 && ngx_strncmp(k->scratch, "text", 4) == 0);

        if (ngx_http_aigw_cache_key_digest(k, 'k', k->scratch, len, pair)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        type = vi.is_text;  /* this key is "type" */
        i = vi.has_text;    /* this key is "text" */

        p = e;
        ngx_http_aigw_key_ws(p, last);

        if (p == last || *p != ':') {
            return NGX_ERROR;
        }

        p++;
        ngx_http_aigw_key_ws(p, last);

        rc = ngx_http_aigw_cache_key_value(k, &p, last, depth, pair
                                           + NGX_HTTP_AIGW_KEY_DLEN, &vi);
        if (rc != NGX_OK) {
            return rc;
        }

        npairs++;

        /* a text block: {"type":"text","text":"..."} and nothing else */

        if (type && vi.string && vi.is_text) {
            text |= 1;
        }

        if (i && vi.string) {
            text |= 2;
            ngx_memcpy(tdigest, pair + NGX_HTTP_AIGW_KEY_DLEN,
                       NGX_HTTP_AIGW_KEY_DLEN);
        }

        if (content && vi.has_text) {
            ngx_memcpy(pair + NGX_HTTP_AIGW_KEY_DLEN, vi.text,
                       NGX_HTTP_AIGW_KEY_DLEN);
        }

        if (!skip) {
            if (k->n == k->size) {
                return NGX_DECLINED;
            }

            top = k->stack + k->n * NGX_HTTP_AIGW_KEY_DLEN;

            if (ngx_http_aigw_cache_key_digest(k, 'p', pair, sizeof(pair),
                                               top)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            k->n++;
        }

        ngx_http_aigw_key_ws(p, last);

        if (p < last && *p == ',') {
            p++;
            ngx_http_aigw_key_ws(p, last);
            continue;
        }

        if (p < last && *p == '}') {
            p++;
            break;
        }

        return NGX_ERROR;
    }

done:

    if (k->n - base > 1) {
        ngx_qsort(k->stack + base * NGX_HTTP_AIGW_KEY_DLEN, k->n - base,
                  NGX_HTTP_AIGW_KEY_DLEN, ngx_http_aigw_cache_key_cmp);
    }

    rc = ngx_http_aigw_cache_key_digest(k, 'o',
                                   k->stack + base * NGX_HTTP_AIGW_KEY_DLEN,
                                   (k->n - base) * NGX_HTTP_AIGW_KEY_DLEN,
                                   out);

    info->string = 0;
    info->is_text = 0;
    info->has_text = (npairs == 2 && text == 3);

    if (info->has_text) {
        ngx_memcpy(info->text, tdigest, NGX_HTTP_AIGW_KEY_DLEN);
    }

    k->n = base;
    *pp = p;

    return rc;
}


static ngx_int_t
ngx_http_aigw_cache_key_array(ngx_http_aigw_cache_key_t *k, u_char **pp,
    u_char *last, ngx_uint_t depth, u_char *out,
    ngx_http_aigw_key_info_t *info)
{
    u_char                    *p, *top;
    ngx_int_t                  rc;
    ngx_uint_t                 base, count, one;
    ngx_http_aigw_key_info_t   vi;

    if (depth > NGX_HTTP_AIGW_CACHE_DEPTH) {
        return NGX_DECLINED;
    }

    p = *pp + 1;
    base = k->n;
    count = 0;
    one = 0;

    ngx_http_aigw_key_ws(p, last);

    if (p < last && *p == ']') {
        p++;
        goto done;
    }

    for ( ;; ) {

        if (k->n == k->size) {
            return NGX_DECLINED;
        }

        top = k->stack + k->n * NGX_HTTP_AIGW_KEY_DLEN;

        rc = ngx_http_aigw_cache_key_value(k, &p, last, depth, top, &vi);
        if (rc != NGX_OK) {
            return rc;
        }

        k->n++;
        count++;

        if (count == 1 && vi.has_text) {
            one = 1;
            ngx_memcpy(info->text, vi.text, NGX_HTTP_AIGW_KEY_DLEN);
        }

        ngx_http_aigw_key_ws(p, last);

        if (p < last && *p == ',') {
            p++;
            ngx_http_aigw_key_ws(p, last);
            continue;
        }

        if (p < last && *p == ']') {
            p++;
            break;
        }

        return NGX_ERROR;
    }

done:

    rc = ngx_http_aigw_cache_key_digest(k, 'a',
                                   k->stack + base * NGX_HTTP_AIGW_KEY_DLEN,
                                   (k->n - base) * NGX_HTTP_AIGW_KEY_DLEN,
                                   out);

    info->string = 0;
    info->is_text = 0;
    info->has_text = (count == 1 && one);

    k->n = base;
    *pp = p;

    return rc;
}


/* past the closing quote of the string at p, or NULL */

static u_char *
ngx_http_aigw_cache_key_string(u_char *p, u_char *last)
{
    for (p++; p < last; p++) {

        if (*p == '\\') {
            p++;
            continue;
        }

        if (*p == '"') {
            return p + 1;
        }
    }

    return NULL;
}


/*
 * A number as sign, significant digits and exponent: "-0.0100" and
 * "-1e-2" are both "-1e-2", every zero is "0".  Exponents past nine
 * digits are hashed as written.
 */

static ngx_int_t
ngx_http_aigw_cache_key_number(ngx_http_aigw_cache_key_t *k, u_char **pp,
    u_char *last, u_char *out)
{
    u_char     *p, *start, *d, *first, *end, tmp;
    int64_t     exp, e;
    ngx_uint_t  neg, eneg, edigits;

    p = *pp;
    start = p;
    d = k->scratch + 1;
    exp = 0;
    neg = 0;

    if (p < last && *p == '-') {
        neg = 1;
        p++;
    }

    if (p == last || *p < '0' || *p > '9') {
        return NGX_ERROR;
    }

    while (p < last && *p >= '0' && *p <= '9') {
        *d++ = *p++;
    }

    if (p < last && *p == '.') {
        p++;

        while (p < last && *p >= '0' && *p <= '9') {
            *d++ = *p++;
            exp--;
        }
    }

    if (p < last && (*p == 'e' || *p == 'E')) {
        p++;
        eneg = 0;

        if (p < last && (*p == '+' || *p == '-')) {
            eneg = (*p == '-');
            p++;
        }

        e = 0;
        edigits = 0;

        while (p < last && *p >= '0' && *p <= '9') {
            if (e || *p != '0') {
                edigits++;
            }

            if (edigits > 9) {
                *pp = p;

                while (*pp < last && **pp >= '0' && **pp <= '9') {
                    (*pp)++;
                }

                return ngx_http_aigw_cache_key_digest(k, 'N', start,
                                                      *pp - start, out);
            }

            e = e * 10 + (*p++ - '0');
        }

        exp += eneg ? -e : e;
    }

    *pp = p;

    /* significant digits: no leading zeros, trailing ones to exp */

    first = k->scratch + 1;

    while (first < d && *first == '0') {
        first++;
    }

    if (first == d) {
        return ngx_http_aigw_cache_key_digest(k, 'n', (u_char *) "0", 1,
                                              out);
    }

    end = d;

    while (end[-1] == '0') {
        end--;
        exp++;
    }

    if (neg) {
        *--first = '-';
    }

    /* "e" and the exponent; no ngx_sprintf(): the unit test has no core */

    *end++ = 'e';

    if (exp < 0) {
        *end++ = '-';
        exp = -exp;
    }

    d = end;

    do {
        *end++ = (u_char) ('0' + exp % 10);
        exp /= 10;
    } while (exp);

    for (e = 0; d + e < end - 1 - e; e++) {
        tmp = d[e];
        d[e] = end[-1 - e];
        end[-1 - e] = tmp;
    }

    return ngx_http_aigw_cache_key_digest(k, 'n', first, end - first, out);
}


static int ngx_libc_cdecl
ngx_http_aigw_cache_key_cmp(const void *a, const void *b)
{
    return ngx_memcmp(a, b, NGX_HTTP_AIGW_KEY_DLEN);
}


/*
 * Readers of a JSON answer the gateway stored, for its replay in the
 * other mode: past a value, and a member of an object.  The text was
 * checked when it was stored; they read only inside [p, last).
 */

u_char *
ngx_http_aigw_cache_json_skip(u_char *p, u_char *last)
{
    ngx_uint_t  depth;

    if (p >= last) {
        return NULL;
    }

    if (*p == '"') {
        return ngx_http_aigw_cache_key_string(p, last);
    }

    if (*p != '{' && *p != '[') {
        while (p < last && *p != ',' && *p != '}' && *p != ']'
               && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
        {
            p++;
        }

        return p;
    }

    depth = 0;

    while (p < last) {

        switch (*p) {

        case '"':
            p = ngx_http_aigw_cache_key_string(p, last);
            if (p == NULL) {
                return NULL;
            }

            continue;

        case '{':
        case '[':
            depth++;
            break;

        case '}':
        case ']':
            if (--depth == 0) {
                return p + 1;
            }

            break;
        }

        p++;
    }

    return NULL;
}


/* the first byte of the value of "key" in the object at p, or NULL */

u_char *
ngx_http_aigw_cache_json_get(u_char *p, u_char *last, const char *key,
    size_t len)
{
    u_char  *k, *e;

    if (p >= last || *p != '{') {
        return NULL;
    }

    p++;

    for ( ;; ) {
        ngx_http_aigw_key_ws(p, last);

        if (p >= last || *p != '"') {
            return NULL;
        }

        k = p + 1;
        e = ngx_http_aigw_cache_key_string(p, last);
        if (e == NULL) {
            return NULL;
        }

        p = e;
        ngx_http_aigw_key_ws(p, last);

        if (p >= last || *p != ':') {
            return NULL;
        }

        p++;
        ngx_http_aigw_key_ws(p, last);

        if ((size_t) (e - 1 - k) == len && ngx_strncmp(k, key, len) == 0) {
            return p < last ? p : NULL;
        }

        p = ngx_http_aigw_cache_json_skip(p, last);
        if (p == NULL) {
            return NULL;
        }

        ngx_http_aigw_key_ws(p, last);

        if (p >= last || *p != ',') {
            return NULL;
        }

        p++;
    }
}
