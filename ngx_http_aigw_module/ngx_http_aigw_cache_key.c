/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_aigw_scan.h"
#include "ngx_http_aigw_cache.h"


/*
 * The canonical form fed to the one SHA-256, each value prefix-free so
 * that a sequence of them reads one way only:
 *
 *     string   's' length (7 bits a byte, low first) unescaped bytes
 *     template 'D' the template's 32-byte digest
 *     number   'n' [-] significant digits 'e' [-] exponent ';'
 *              ('N' the number as written ';' past nine exponent digits)
 *     literal  't', 'f', 'z' (null)
 *     array    '[' values ']'
 *     object   '{' (key as a string, value) sorted by key '}'
 */


/* a member of an open object: its key unescaped, its value's bytes */
typedef struct {
    u_char                     *key;
    size_t                      len;
    u_char                     *value;
    u_char                     *end;
} ngx_http_aigw_key_member_t;


static ngx_int_t ngx_http_aigw_cache_key_value(ngx_http_aigw_cache_key_t *k,
    u_char **pp, u_char *last, ngx_uint_t depth, ngx_uint_t content);
static ngx_int_t ngx_http_aigw_cache_key_object(ngx_http_aigw_cache_key_t *k,
    u_char **pp, u_char *last, ngx_uint_t depth);
static ngx_int_t ngx_http_aigw_cache_key_array(ngx_http_aigw_cache_key_t *k,
    u_char **pp, u_char *last, ngx_uint_t depth);
static u_char *ngx_http_aigw_cache_key_text_block(u_char *p, u_char *last,
    ngx_uint_t depth, u_char **end);
static u_char *ngx_http_aigw_cache_key_string(u_char *p, u_char *last);
static u_char *ngx_http_aigw_cache_key_unescape(ngx_http_aigw_cache_key_t *k,
    u_char *p, u_char *e, size_t *len);
static ngx_int_t ngx_http_aigw_cache_key_number(ngx_http_aigw_cache_key_t *k,
    u_char **pp, u_char *last);
static void ngx_http_aigw_cache_key_feed(ngx_http_aigw_cache_key_t *k,
    u_char *p, size_t len);
static void ngx_http_aigw_cache_key_feed_string(ngx_http_aigw_cache_key_t *k,
    u_char *p, size_t len);
static int ngx_libc_cdecl ngx_http_aigw_cache_key_cmp(const void *a,
    const void *b);


static ngx_inline void
ngx_http_aigw_key_byte(ngx_http_aigw_cache_key_t *k, u_char c)
{
    if (k->blen == NGX_HTTP_AIGW_CACHE_BUF) {
        ngx_http_aigw_cache_key_feed(k, NULL, 0);
    }

    k->buf[k->blen++] = c;
}


#define ngx_http_aigw_key_ws(p, last)                                        \
    while (p < last                                                          \
           && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))         \
    {                                                                        \
        p++;                                                                 \
    }

/* where a string's unescaped bytes go: as far into scratch as in the body */
#define ngx_http_aigw_key_mirror(k, p)  ((k)->scratch + ((p) - (k)->start))


ngx_int_t
ngx_http_aigw_cache_key_body(ngx_http_aigw_cache_key_t *k, u_char *p,
    u_char *last, u_char *out)
{
    ngx_int_t     rc;
    unsigned int  n;

    if (EVP_DigestInit_ex(k->md_ctx, k->md, NULL) != 1) {
        return NGX_ERROR;
    }

    rc = ngx_http_aigw_cache_key_walk(k, p, last);

    if (rc != NGX_OK) {
        return rc;
    }

    if (EVP_DigestFinal_ex(k->md_ctx, out, &n) != 1) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_aigw_cache_key_walk(ngx_http_aigw_cache_key_t *k, u_char *p,
    u_char *last)
{
    ngx_int_t  rc;

    k->n = 0;
    k->blen = 0;
    k->failed = 0;
    k->start = p;

    ngx_http_aigw_key_ws(p, last);

    if (p == last || *p != '{') {
        return NGX_ERROR;
    }

    rc = ngx_http_aigw_cache_key_object(k, &p, last, 0);

    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_aigw_key_ws(p, last);

    if (p != last) {
        return NGX_ERROR;
    }

    ngx_http_aigw_cache_key_feed(k, NULL, 0);

    return k->failed ? NGX_ERROR : NGX_OK;
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


/*
 * Bytes to the digest through k->buf: the walk's many small pieces cost
 * a memcpy each, not an EVP call.  NULL flushes.
 */

static void
ngx_http_aigw_cache_key_feed(ngx_http_aigw_cache_key_t *k, u_char *p,
    size_t len)
{
    if (k->blen + len > NGX_HTTP_AIGW_CACHE_BUF || p == NULL) {

        if (k->blen && EVP_DigestUpdate(k->md_ctx, k->buf, k->blen) != 1) {
            k->failed = 1;
        }

        k->blen = 0;

        if (len > NGX_HTTP_AIGW_CACHE_BUF / 2) {
            if (EVP_DigestUpdate(k->md_ctx, p, len) != 1) {
                k->failed = 1;
            }

            return;
        }
    }

    if (len) {
        ngx_memcpy(k->buf + k->blen, p, len);
        k->blen += len;
    }
}


static void
ngx_http_aigw_cache_key_feed_string(ngx_http_aigw_cache_key_t *k, u_char *p,
    size_t len)
{
    u_char   head[2 + sizeof(size_t) * 8 / 7], *h;
    size_t   n;

    h = head;
    *h++ = 's';
    n = len;

    do {
        *h = (u_char) (n & 0x7f);
        n >>= 7;

        if (n) {
            *h |= 0x80;
        }

        h++;
    } while (n);

    ngx_http_aigw_cache_key_feed(k, head, h - head);
    ngx_http_aigw_cache_key_feed(k, p, len);
}


static ngx_int_t
ngx_http_aigw_cache_key_value(ngx_http_aigw_cache_key_t *k, u_char **pp,
    u_char *last, ngx_uint_t depth, ngx_uint_t content)
{
    u_char  *p, *e, *d, *q;
    size_t   len;

    p = *pp;

    if (p == last) {
        return NGX_ERROR;
    }

    switch (*p) {

    case '{':
    case '[':
        if (content) {
            /* a "content" of one text block is keyed as its text */
            q = ngx_http_aigw_cache_key_text_block(p, last, depth, &e);

            if (q) {
                *pp = e;
                return ngx_http_aigw_cache_key_value(k, &q, e, depth, 0);
            }
        }

        if (*p == '{') {
            return ngx_http_aigw_cache_key_object(k, pp, last, depth + 1);
        }

        return ngx_http_aigw_cache_key_array(k, pp, last, depth + 1);

    case '"':
        e = ngx_http_aigw_cache_key_string(p, last);
        if (e == NULL) {
            return NGX_ERROR;
        }

        *pp = e;

        if (p == k->subst) {
            /* a template's text: its name, version and variables */
            ngx_http_aigw_key_byte(k, 'D');
            ngx_http_aigw_cache_key_feed(k, k->subst_digest,
                                         NGX_HTTP_AIGW_CACHE_KEY_LEN);
            return NGX_OK;
        }

        q = ngx_http_aigw_cache_key_unescape(k, p + 1, e - 1, &len);
        ngx_http_aigw_cache_key_feed_string(k, q, len);

        return NGX_OK;

    case 't':
        q = (u_char *) "true";
        d = (u_char *) "t";
        break;

    case 'f':
        q = (u_char *) "false";
        d = (u_char *) "f";
        break;

    case 'n':
        q = (u_char *) "null";
        d = (u_char *) "z";
        break;

    default:
        return ngx_http_aigw_cache_key_number(k, pp, last);
    }

    e = p + ngx_strlen(q);

    if (e > last || ngx_strncmp(p, q, e - p) != 0) {
        return NGX_ERROR;
    }

    *pp = e;
    ngx_http_aigw_key_byte(k, *d);

    return NGX_OK;
}


/*
 * An object in two passes: its members are listed on the stack (a value
 * is skipped, its bytes kept), sorted by key, then each is walked in
 * that order.  The same key twice is declined: providers read one of
 * the two, and which one is theirs to say.
 */

static ngx_int_t
ngx_http_aigw_cache_key_object(ngx_http_aigw_cache_key_t *k, u_char **pp,
    u_char *last, ngx_uint_t depth)
{
    u_char                      *p, *e, *d, *v;
    size_t                       len;
    ngx_int_t                    rc;
    ngx_uint_t                   base, cap, i, j, skip, content;
    ngx_http_aigw_key_member_t  *m, tmp;

    if (depth > NGX_HTTP_AIGW_CACHE_DEPTH) {
        return NGX_DECLINED;
    }

    p = *pp + 1;
    base = k->n;
    m = (ngx_http_aigw_key_member_t *) k->stack;
    cap = k->size * NGX_HTTP_AIGW_CACHE_KEY_LEN
          / sizeof(ngx_http_aigw_key_member_t);

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

        d = ngx_http_aigw_cache_key_unescape(k, p + 1, e - 1, &len);

        skip = 0;

        if (depth == 0) {
            if (len == 5 && ngx_strncmp(d, "model", 5) == 0) {
                skip = 1;
            }

            for (i = 0; i < k->nexclude; i++) {
                if (k->exclude[i].len == len
                    && ngx_strncmp(d, k->exclude[i].data, len) == 0)
                {
                    skip = 1;
                }
            }
        }

        p = e;
        ngx_http_aigw_key_ws(p, last);

        if (p == last || *p != ':') {
            return NGX_ERROR;
        }

        p++;
        ngx_http_aigw_key_ws(p, last);

        v = p;
        p = ngx_http_aigw_cache_json_skip(p, last);

        if (p == NULL || p == v) {
            return NGX_ERROR;
        }

        if (!skip) {
            if (k->n == cap) {
                return NGX_DECLINED;
            }

            m[k->n].key = d;
            m[k->n].len = len;
            m[k->n].value = v;
            m[k->n].end = p;
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

    /* sorted by key: a few members by insertion, many by qsort */

    if (k->n - base > 8) {
        ngx_qsort(&m[base], k->n - base, sizeof(ngx_http_aigw_key_member_t),
                  ngx_http_aigw_cache_key_cmp);

    } else {
        for (i = base + 1; i < k->n; i++) {
            tmp = m[i];

            for (j = i; j > base
                        && ngx_http_aigw_cache_key_cmp(&m[j - 1], &tmp) > 0;
                 j--)
            {
                m[j] = m[j - 1];
            }

            m[j] = tmp;
        }
    }

    for (i = base + 1; i < k->n; i++) {
        if (ngx_http_aigw_cache_key_cmp(&m[i - 1], &m[i]) == 0) {
            return NGX_DECLINED;
        }
    }

done:

    ngx_http_aigw_key_byte(k, '{');

    for (i = base; i < k->n; i++) {
        d = m[i].key;
        len = m[i].len;

        ngx_http_aigw_cache_key_feed_string(k, d, len);

        content = (len == 7 && ngx_strncmp(d, "content", 7) == 0)
                  || (len == 6 && ngx_strncmp(d, "system", 6) == 0);

        v = m[i].value;

        rc = ngx_http_aigw_cache_key_value(k, &v, m[i].end, depth, content);
        if (rc != NGX_OK) {
            return rc;
        }

        if (v != m[i].end) {
            return NGX_ERROR;
        }
    }

    ngx_http_aigw_key_byte(k, '}');

    k->n = base;
    *pp = p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_cache_key_array(ngx_http_aigw_cache_key_t *k, u_char **pp,
    u_char *last, ngx_uint_t depth)
{
    u_char     *p;
    ngx_int_t   rc;

    if (depth > NGX_HTTP_AIGW_CACHE_DEPTH) {
        return NGX_DECLINED;
    }

    p = *pp + 1;

    ngx_http_aigw_key_byte(k, '[');
    ngx_http_aigw_key_ws(p, last);

    if (p < last && *p == ']') {
        p++;
        goto done;
    }

    for ( ;; ) {

        rc = ngx_http_aigw_cache_key_value(k, &p, last, depth, 0);
        if (rc != NGX_OK) {
            return rc;
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

    ngx_http_aigw_key_byte(k, ']');
    *pp = p;

    return NGX_OK;
}


/*
 * One text block: {"type":"text","text":"..."} and nothing else, or an
 * array of one such value.  Its text's opening quote, and in *end the
 * byte past the value; NULL if it is anything else.
 */

static u_char *
ngx_http_aigw_cache_key_text_block(u_char *p, u_char *last, ngx_uint_t depth,
    u_char **end)
{
    u_char      *e, *ks, *v, *text;
    ngx_uint_t   n, type;

    if (depth > NGX_HTTP_AIGW_CACHE_DEPTH) {
        return NULL;
    }

    if (*p == '[') {
        p++;
        ngx_http_aigw_key_ws(p, last);

        if (p == last || (*p != '[' && *p != '{')) {
            return NULL;
        }

        text = ngx_http_aigw_cache_key_text_block(p, last, depth + 1, &p);
        if (text == NULL) {
            return NULL;
        }

        ngx_http_aigw_key_ws(p, last);

        if (p == last || *p != ']') {
            return NULL;
        }

        *end = p + 1;
        return text;
    }

    p++;
    n = 0;
    type = 0;
    text = NULL;

    for ( ;; ) {
        ngx_http_aigw_key_ws(p, last);

        if (p == last || *p != '"') {
            return NULL;
        }

        ks = p + 1;
        e = ngx_http_aigw_cache_key_string(p, last);
        if (e == NULL) {
            return NULL;
        }

        p = e;
        ngx_http_aigw_key_ws(p, last);

        if (p == last || *p != ':') {
            return NULL;
        }

        p++;
        ngx_http_aigw_key_ws(p, last);

        if (p == last || *p != '"') {
            return NULL;
        }

        v = p;
        p = ngx_http_aigw_cache_key_string(p, last);
        if (p == NULL) {
            return NULL;
        }

        if (ngx_http_aigw_scan_equal(ks, e - 1, (u_char *) "type", 4)) {
            if (type
                || !ngx_http_aigw_scan_equal(v + 1, p - 1,
                                             (u_char *) "text", 4))
            {
                return NULL;
            }

            type = 1;

        } else if (ngx_http_aigw_scan_equal(ks, e - 1, (u_char *) "text", 4)) {
            if (text) {
                return NULL;
            }

            text = v;

        } else {
            return NULL;
        }

        n++;
        ngx_http_aigw_key_ws(p, last);

        if (p < last && *p == ',' && n < 2) {
            p++;
            continue;
        }

        if (p < last && *p == '}' && n == 2) {
            *end = p + 1;
            return text;
        }

        return NULL;
    }
}


/* past the closing quote of the string at p, or NULL */

static u_char *
ngx_http_aigw_cache_key_string(u_char *p, u_char *last)
{
    u_char  *start, *q, *b;

    start = ++p;

    for ( ;; ) {
        q = memchr(p, '"', last - p);

        if (q == NULL) {
            return NULL;
        }

        /* escaped if an odd run of backslashes is before it */

        for (b = q; b > start && b[-1] == '\\'; b--) {
            /* void */
        }

        if ((q - b) % 2 == 0) {
            return q + 1;
        }

        p = q + 1;
    }
}


/* the unescaped bytes of the string content [p, e): in place if it can */

static u_char *
ngx_http_aigw_cache_key_unescape(ngx_http_aigw_cache_key_t *k, u_char *p,
    u_char *e, size_t *len)
{
    u_char  *d;

    if (memchr(p, '\\', e - p) == NULL) {
        *len = e - p;
        return p;
    }

    d = ngx_http_aigw_key_mirror(k, p);
    *len = ngx_http_aigw_scan_unescape(d, p, e) - d;

    return d;
}


/*
 * A number as sign, significant digits and exponent: "-0.0100" and
 * "-1e-2" are both "-1e-2", every zero is "0".  Exponents past nine
 * digits are taken as written.
 */

#define ngx_http_aigw_key_digit(i)                                           \
    ((i) < ilen ? ip[i] : fp[(i) - ilen])

static ngx_int_t
ngx_http_aigw_cache_key_number(ngx_http_aigw_cache_key_t *k, u_char **pp,
    u_char *last)
{
    u_char      *p, *start, *ip, *fp, *d;
    size_t       ilen, flen, f, l, i;
    int64_t      exp, e;
    ngx_uint_t   neg, eneg, edigits;
    u_char       num[NGX_INT64_LEN + 4];

    p = *pp;
    start = p;
    exp = 0;
    neg = 0;

    if (p < last && *p == '-') {
        neg = 1;
        p++;
    }

    if (p == last || *p < '0' || *p > '9') {
        return NGX_ERROR;
    }

    ip = p;

    while (p < last && *p >= '0' && *p <= '9') {
        p++;
    }

    ilen = p - ip;
    fp = p;
    flen = 0;

    if (p < last && *p == '.') {
        p++;
        fp = p;

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }

        flen = p - fp;
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
                while (p < last && *p >= '0' && *p <= '9') {
                    p++;
                }

                *pp = p;

                ngx_http_aigw_key_byte(k, 'N');
                ngx_http_aigw_cache_key_feed(k, start, p - start);
                ngx_http_aigw_key_byte(k, ';');

                return NGX_OK;
            }

            e = e * 10 + (*p++ - '0');
        }

        exp = eneg ? -e : e;
    }

    *pp = p;

    /* significant digits: no leading zeros, trailing ones to exp */

    exp -= flen;

    for (f = 0; f < ilen + flen && ngx_http_aigw_key_digit(f) == '0'; f++) {
        /* void */
    }

    if (f == ilen + flen) {
        ngx_http_aigw_cache_key_feed(k, (u_char *) "n0;", 3);
        return NGX_OK;
    }

    for (l = ilen + flen - 1; ngx_http_aigw_key_digit(l) == '0'; l--) {
        exp++;
    }

    ngx_http_aigw_key_byte(k, 'n');

    if (neg) {
        ngx_http_aigw_key_byte(k, '-');
    }

    if (f < ilen) {
        ngx_http_aigw_cache_key_feed(k, ip + f, ngx_min(l + 1, ilen) - f);
    }

    if (l >= ilen) {
        i = f > ilen ? f - ilen : 0;
        ngx_http_aigw_cache_key_feed(k, fp + i, l + 1 - ilen - i);
    }

    /* "e", the exponent, ";"; no ngx_sprintf(): the unit test has no core */

    d = num + sizeof(num);
    *--d = ';';
    eneg = (exp < 0);

    if (eneg) {
        exp = -exp;
    }

    do {
        *--d = (u_char) ('0' + exp % 10);
        exp /= 10;
    } while (exp);

    if (eneg) {
        *--d = '-';
    }

    *--d = 'e';

    ngx_http_aigw_cache_key_feed(k, d, num + sizeof(num) - d);

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_aigw_cache_key_cmp(const void *one, const void *two)
{
    int                          rc;
    ngx_http_aigw_key_member_t  *a, *b;

    a = (ngx_http_aigw_key_member_t *) one;
    b = (ngx_http_aigw_key_member_t *) two;

    rc = ngx_memcmp(a->key, b->key, ngx_min(a->len, b->len));

    if (rc != 0) {
        return rc;
    }

    return (a->len > b->len) - (a->len < b->len);
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
