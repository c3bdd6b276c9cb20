
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_aigw_cache.h"


/*
 * The semantic tier's vectors, without nginx's runtime (the unit test
 * and the bench compile this file alone): the embedding of an
 * OpenAI-compatible answer read into floats, made of unit length, and
 * the best of a partition's vectors by dot product, which for unit
 * vectors is the cosine.
 */


/* past this many significant digits a number's digits do not count */
#define NGX_HTTP_AIGW_SEMANTIC_DIGITS   18


static u_char *ngx_http_aigw_cache_semantic_number(u_char *p, u_char *last,
    double *out);


/*
 * The first "embedding": [numbers] of an answer ({"data":[{"embedding":
 * [...]}]}), into v, at most max numbers.  NGX_ERROR when there is none,
 * it holds anything but numbers, or more than max of them.
 */

ngx_int_t
ngx_http_aigw_cache_semantic_parse(u_char *p, u_char *last, float *v,
    ngx_uint_t max, ngx_uint_t *dim)
{
    u_char      *q, *start;
    double       d;
    ngx_uint_t   n;

    start = p;

    for ( ;; ) {
        q = memchr(p, '"', last - p);

        if (q == NULL || last - q < 11) {
            return NGX_ERROR;
        }

        p = q + 1;

        /* a key, not the value "object":"embedding" nor an escaped one */

        if (ngx_strncmp(q, "\"embedding\"", 11) != 0
            || (q > start && q[-1] == '\\'))
        {
            continue;
        }

        p = q + 11;

        while (p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                            || *p == '\n'))
        {
            p++;
        }

        if (p == last || *p != ':') {
            continue;
        }

        p++;

        while (p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                            || *p == '\n'))
        {
            p++;
        }

        if (p == last || *p != '[') {
            return NGX_ERROR;
        }

        p++;
        break;
    }

    for (n = 0; /* void */ ; n++) {

        while (p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                            || *p == '\n'))
        {
            p++;
        }

        if (n == 0 && p < last && *p == ']') {
            return NGX_ERROR;
        }

        if (n == max) {
            return NGX_ERROR;
        }

        p = ngx_http_aigw_cache_semantic_number(p, last, &d);

        /* a float holds it: no embedding has such numbers anyway */

        if (p == NULL || d > 1e30 || d < -1e30) {
            return NGX_ERROR;
        }

        v[n] = (float) d;

        while (p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                            || *p == '\n'))
        {
            p++;
        }

        if (p == last) {
            return NGX_ERROR;
        }

        if (*p == ',') {
            p++;
            continue;
        }

        if (*p == ']') {
            *dim = n + 1;
            return NGX_OK;
        }

        return NGX_ERROR;
    }
}


/*
 * A JSON number: past it, or NULL.  Precision past 18 digits is of no
 * use to a cosine; exponents are bounded, what is past them is 0 or an
 * error.
 */

static u_char *
ngx_http_aigw_cache_semantic_number(u_char *p, u_char *last, double *out)
{
    double      m;
    ngx_int_t   e, x, digits, neg, eneg;

    neg = 0;
    m = 0;
    e = 0;
    digits = 0;

    if (p < last && *p == '-') {
        neg = 1;
        p++;
    }

    if (p == last || *p < '0' || *p > '9') {
        return NULL;
    }

    if (*p == '0') {
        p++;

    } else {
        while (p < last && *p >= '0' && *p <= '9') {
            if (digits < NGX_HTTP_AIGW_SEMANTIC_DIGITS) {
                m = m * 10 + (*p - '0');
                digits++;

            } else {
                e++;
            }

            p++;
        }
    }

    if (p < last && *p == '.') {
        p++;

        if (p == last || *p < '0' || *p > '9') {
            return NULL;
        }

        while (p < last && *p >= '0' && *p <= '9') {
            if (digits < NGX_HTTP_AIGW_SEMANTIC_DIGITS) {
                m = m * 10 + (*p - '0');
                e--;

                if (m != 0) {
                    digits++;
                }
            }

            p++;
        }
    }

    if (p < last && (*p == 'e' || *p == 'E')) {
        p++;
        eneg = 0;

        if (p < last && (*p == '+' || *p == '-')) {
            eneg = (*p == '-');
            p++;
        }

        if (p == last || *p < '0' || *p > '9') {
            return NULL;
        }

        x = 0;

        while (p < last && *p >= '0' && *p <= '9') {
            if (x < 100000) {
                x = x * 10 + (*p - '0');
            }

            p++;
        }

        e += eneg ? -x : x;
    }

    if (m != 0) {
        if (e > 64) {
            return NULL;
        }

        for ( /* void */ ; e > 0; e--) {
            m *= 10;
        }

        for ( /* void */ ; e < 0 && m != 0; e++) {
            m /= 10;
        }
    }

    *out = neg ? -m : m;

    return p;
}


/* of unit length; NGX_ERROR for a zero vector */

ngx_int_t
ngx_http_aigw_cache_semantic_normalize(float *v, ngx_uint_t dim)
{
    double      s, r;
    ngx_uint_t  i;

    s = 0;

    for (i = 0; i < dim; i++) {
        s += (double) v[i] * v[i];
    }

    if (!(s > 1e-30 && s < 1e30)) {
        return NGX_ERROR;
    }

    /* Newton's square root: no libm for a module */

    r = s > 1 ? s : 1;

    for (i = 0; i < 200; i++) {
        r = (r + s / r) / 2;
    }

    for (i = 0; i < dim; i++) {
        v[i] = (float) (v[i] / r);
    }

    return NGX_OK;
}


/*
 * The nearest to q of n vectors of dim floats, stride floats apart
 * (the zone keeps a key before each), against the best found so far:
 * *best (-1 for none) and its dot product *score (-2 for none), the
 * index given as base + i.  A scan split into parts, in order, finds
 * what one scan finds: a tie keeps the first.  Eight sums at once, so
 * that the compiler may use vector registers.
 */

void
ngx_http_aigw_cache_semantic_scan(const float *vecs, ngx_uint_t n,
    ngx_uint_t stride, ngx_uint_t dim, const float *q, ngx_int_t base,
    ngx_int_t *best, float *score)
{
    float        s[8], dot;
    ngx_uint_t   i, j, k;
    const float *v;

    for (i = 0; i < n; i++) {
        v = vecs + i * stride;

        for (k = 0; k < 8; k++) {
            s[k] = 0;
        }

        for (j = 0; j + 8 <= dim; j += 8) {
            for (k = 0; k < 8; k++) {
                s[k] += v[j + k] * q[j + k];
            }
        }

        dot = 0;

        for ( /* void */ ; j < dim; j++) {
            dot += v[j] * q[j];
        }

        dot += (s[0] + s[1]) + (s[2] + s[3]) + (s[4] + s[5]) + (s[6] + s[7]);

        if (dot > *score) {
            *score = dot;
            *best = base + (ngx_int_t) i;
        }
    }
}


/*
 * The index of the vector of vecs (n of dim floats each, one after the
 * other) nearest to q, and its dot product in *score; -1 when n is 0.
 */

ngx_int_t
ngx_http_aigw_cache_semantic_best(const float *vecs, ngx_uint_t n,
    ngx_uint_t dim, const float *q, float *score)
{
    ngx_int_t  b;

    b = -1;
    *score = -2;

    ngx_http_aigw_cache_semantic_scan(vecs, n, dim, dim, q, 0, &b, score);

    return b;
}


/*
 * int8 with a scale a vector (aigw_cache_semantic_precision int8): c[j]
 * the nearest of -127..127 to v[j] / scale, scale = max |v[j]| / 127; a
 * quarter of float32's bytes.  A zero vector is scale 0.
 */

void
ngx_http_aigw_cache_semantic_quantize(const float *v, ngx_uint_t dim,
    float *scale, int8_t *c)
{
    float       m, a, x;
    ngx_uint_t  j;

    m = 0;

    for (j = 0; j < dim; j++) {
        a = v[j] < 0 ? -v[j] : v[j];

        if (a > m) {
            m = a;
        }
    }

    *scale = m / 127;

    for (j = 0; j < dim; j++) {
        x = (m > 0) ? v[j] * 127 / m : 0;
        c[j] = (int8_t) (x < 0 ? x - 0.5f : x + 0.5f);
    }
}


/*
 * The scan of int8 slots, as ngx_http_aigw_cache_semantic_scan() of
 * float ones: each slot's scale (a float) then its dim codes, the slots
 * stride bytes apart.
 */

void
ngx_http_aigw_cache_semantic_scan8(const u_char *slots, ngx_uint_t n,
    size_t stride, ngx_uint_t dim, const float *q, ngx_int_t base,
    ngx_int_t *best, float *score)
{
    float          s[8], dot, scale;
    ngx_uint_t     i, j, k;
    const int8_t  *c;

    for (i = 0; i < n; i++) {
        ngx_memcpy(&scale, slots + i * stride, sizeof(float));
        c = (const int8_t *) (slots + i * stride + sizeof(float));

        for (k = 0; k < 8; k++) {
            s[k] = 0;
        }

        for (j = 0; j + 8 <= dim; j += 8) {
            for (k = 0; k < 8; k++) {
                s[k] += (float) c[j + k] * q[j + k];
            }
        }

        dot = 0;

        for ( /* void */ ; j < dim; j++) {
            dot += (float) c[j] * q[j];
        }

        dot += (s[0] + s[1]) + (s[2] + s[3]) + (s[4] + s[5]) + (s[6] + s[7]);
        dot *= scale;

        if (dot > *score) {
            *score = dot;
            *best = base + (ngx_int_t) i;
        }
    }
}
