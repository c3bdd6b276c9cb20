
/*
 * Copyright (C) aigw authors
 */


/*
 * Unit test of the semantic cache's vectors (cache_semantic_vec.c),
 * built standalone against the include directories of a configured
 * nginx tree (see t/unit/README.md):
 *
 *     test_cache_semantic
 *
 * The embeddings' reader on answers as providers write them, on every
 * strict prefix of each (never whole), and on wrong ones; the unit length;
 * the nearest vector of a partition against a plain double-precision
 * loop; the scan split as the zone splits it, at every point.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_cache_semantic_vec.c"
#include "t_unit.h"


#define T_MAX  16


/* Newton's, as the module's: no libm */

static double
sqrt_approx(double s)
{
    double      r;
    ngx_uint_t  i;

    r = s > 1 ? s : 1;

    for (i = 0; i < 100; i++) {
        r = (r + s / r) / 2;
    }

    return r;
}


typedef struct {
    const char  *text;
    ngx_int_t    rc;
    ngx_uint_t   dim;
    float        v[4];
} t_parse_case_t;


static t_parse_case_t  t_parse_cases[] = {

    { "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,"
      "\"embedding\":[0.5,-0.25,1e-3,2E+1]}],\"model\":\"m\"}",
      NGX_OK, 4, { 0.5f, -0.25f, 0.001f, 20.0f } },

    { "{\"data\":[{\"embedding\" : [ 0 , -0.0 ,\n 12.5e-1 ]}]}",
      NGX_OK, 3, { 0.0f, 0.0f, 1.25f } },

    { "{\"data\":[{\"embedding\":[1]}]}", NGX_OK, 1, { 1.0f } },

    { "{\"data\":[{\"embedding\":[0.000000000000000000001234]}]}",
      NGX_OK, 1, { 1.234e-21f } },

    { "{\"data\":[{\"embedding\":[123456789012345678901234]}]}",
      NGX_OK, 1, { 1.2345679e23f } },

    /* the value "embedding" and an escaped key are not the key */
    { "{\"object\":\"embedding\",\"x\":\"\\\"embedding\\\":[9]\","
      "\"embedding\":[2]}", NGX_OK, 1, { 2.0f } },

    { "{\"data\":[{\"embedding\":[]}]}", NGX_ERROR, 0, { 0 } },
    { "{\"data\":[{\"embedding\":\"AAAAAA==\"}]}", NGX_ERROR, 0, { 0 } },
    { "{\"data\":[{\"embedding\":[1,]}]}", NGX_ERROR, 0, { 0 } },
    { "{\"data\":[{\"embedding\":[1 2]}]}", NGX_ERROR, 0, { 0 } },
    { "{\"data\":[{\"embedding\":[.5]}]}", NGX_ERROR, 0, { 0 } },
    { "{\"data\":[{\"embedding\":[1.]}]}", NGX_ERROR, 0, { 0 } },
    { "{\"data\":[{\"embedding\":[1e]}]}", NGX_ERROR, 0, { 0 } },
    { "{\"data\":[{\"embedding\":[1e999]}]}", NGX_ERROR, 0, { 0 } },
    { "{\"data\":[{\"embedding\":[-1e31]}]}", NGX_ERROR, 0, { 0 } },
    { "{\"data\":[{\"embedding\":[null]}]}", NGX_ERROR, 0, { 0 } },
    { "{\"data\":[{\"embedding\":[\"1\"]}]}", NGX_ERROR, 0, { 0 } },
    { "{\"error\":{\"message\":\"no\"}}", NGX_ERROR, 0, { 0 } },
    { "", NGX_ERROR, 0, { 0 } },
};


static void
t_parse(void)
{
    float            v[T_MAX];
    size_t           len, cut;
    const char      *k, *e;
    u_char          *s;
    ngx_int_t        rc;
    ngx_uint_t       i, j, dim, same;
    t_parse_case_t  *c;

    for (i = 0; i < sizeof(t_parse_cases) / sizeof(t_parse_case_t); i++) {
        c = &t_parse_cases[i];
        len = strlen(c->text);
        s = t_dup((const u_char *) c->text, len);

        dim = 0;
        rc = ngx_http_aigw_cache_semantic_parse(s, s + len, v, T_MAX, &dim);

        (void) t_check(rc == c->rc, "rc %d, not %d: %s", (int) rc,
                       (int) c->rc, c->text);

        if (rc == NGX_OK && c->rc == NGX_OK) {
            same = (dim == c->dim);

            for (j = 0; same && j < dim; j++) {
                same = (v[j] == c->v[j]
                        || (v[j] - c->v[j]) / c->v[j] < 1e-6f);
            }

            (void) t_check(same, "values: %s", c->text);
        }

        /*
         * every prefix that cuts the array (the last "embedding" of
         * the cases) is refused, read inside its bytes only
         */

        for (k = c->text, e = NULL; (k = strstr(k, "\"embedding\"")); k++) {
            e = k;
        }

        e = e ? strchr(e, ']') : NULL;

        for (cut = 0; c->rc == NGX_OK && e && cut < len; cut++) {
            free(s);
            s = t_dup((const u_char *) c->text, cut);
            rc = ngx_http_aigw_cache_semantic_parse(s, s + cut, v, T_MAX,
                                                    &dim);
            (void) t_check(rc == (cut > (size_t) (e - c->text)
                                  ? NGX_OK : NGX_ERROR),
                           "prefix %lu: %s", (unsigned long) cut, c->text);
        }

        free(s);
    }

    /* more numbers than room: refused, nothing written past it */

    s = (u_char *) "{\"embedding\":[1,2,3,4,5]}";
    len = strlen((char *) s);
    rc = ngx_http_aigw_cache_semantic_parse(s, s + len, v, 4, &dim);
    (void) t_check(rc == NGX_ERROR, "five numbers in room for four");

    rc = ngx_http_aigw_cache_semantic_parse(s, s + len, v, 5, &dim);
    (void) t_check(rc == NGX_OK && dim == 5, "five numbers in room for five");
}


static void
t_normalize(void)
{
    float       v[T_MAX];
    double      s;
    ngx_uint_t  i;

    v[0] = 3;
    v[1] = 4;
    (void) t_check(ngx_http_aigw_cache_semantic_normalize(v, 2) == NGX_OK
                   && v[0] == 0.6f && v[1] == 0.8f, "3,4 is 0.6,0.8");

    for (i = 0; i < T_MAX; i++) {
        v[i] = 1e-7f * (float) (i + 1);
    }

    (void) t_check(ngx_http_aigw_cache_semantic_normalize(v, T_MAX) == NGX_OK,
                   "small numbers");

    for (s = 0, i = 0; i < T_MAX; i++) {
        s += (double) v[i] * v[i];
    }

    (void) t_check(s > 0.99999 && s < 1.00001, "unit length: %f", s);

    v[0] = 0;
    v[1] = 0;
    (void) t_check(ngx_http_aigw_cache_semantic_normalize(v, 2) == NGX_ERROR,
                   "a zero vector is refused");
}


/* the nearest of n random unit vectors, against doubles, every dim */

static void
t_best(void)
{
    float       *vecs, *q, score;
    double       d, best;
    uint64_t     seed;
    ngx_int_t    b, want;
    ngx_uint_t   n, dim, i, j;

    seed = 17;

    for (dim = 1; dim <= 40; dim++) {
        n = 1 + t_rand(&seed) % 50;
        vecs = t_alloc(n * dim * sizeof(float));
        q = t_alloc(dim * sizeof(float));

        for (i = 0; i < n * dim; i++) {
            vecs[i] = (float) ((int) (t_rand(&seed) % 2001) - 1000) / 1000;
        }

        for (i = 0; i < n; i++) {
            vecs[i * dim] += 0.01f;
            (void) ngx_http_aigw_cache_semantic_normalize(vecs + i * dim,
                                                          dim);
        }

        for (j = 0; j < dim; j++) {
            q[j] = (float) ((int) (t_rand(&seed) % 2001) - 1000) / 1000;
        }

        q[0] += 0.01f;
        (void) ngx_http_aigw_cache_semantic_normalize(q, dim);

        want = -1;
        best = -3;

        for (i = 0; i < n; i++) {
            for (d = 0, j = 0; j < dim; j++) {
                d += (double) vecs[i * dim + j] * q[j];
            }

            if (d > best + 1e-6) {
                best = d;
                want = (ngx_int_t) i;
            }
        }

        b = ngx_http_aigw_cache_semantic_best(vecs, n, dim, q, &score);

        (void) t_check(b == want && score - best < 1e-5
                       && best - score < 1e-5,
                       "dim %lu, n %lu: %ld (%f), not %ld (%f)",
                       (unsigned long) dim, (unsigned long) n, (long) b,
                       (double) score, (long) want, best);

        /* the query itself is found at 1 */

        ngx_memcpy(vecs + (n - 1) * dim, q, dim * sizeof(float));
        b = ngx_http_aigw_cache_semantic_best(vecs, n, dim, q, &score);
        (void) t_check(score > 0.9999f, "itself at 1, dim %lu",
                       (unsigned long) dim);

        free(vecs);
        free(q);
    }

    (void) t_check(ngx_http_aigw_cache_semantic_best(NULL, 0, 4, NULL, &score)
                   == -1, "an empty partition");
}


/*
 * The scan as the zone does it, a block at a time with its lock let go
 * between blocks: slots of a key (8 floats here, garbage the scan must
 * not read) then the vector; at every split in two and in parts of
 * every size, the same slot and the same score, bit for bit, as one
 * scan; ties (a vector twice) keep the first.
 */

static void
t_split(void)
{
    float       *slots, *q, score, whole;
    uint64_t     seed;
    ngx_int_t    b, want;
    ngx_uint_t   n, dim, stride, i, j, cut, size, from, ok;

    seed = 29;

    for (dim = 2; dim <= 34; dim += 4) {
        n = 2 + t_rand(&seed) % 40;
        stride = dim + 8;
        slots = t_alloc(n * stride * sizeof(float));
        q = t_alloc(dim * sizeof(float));

        for (i = 0; i < n; i++) {
            for (j = 0; j < 8; j++) {
                slots[i * stride + j] = 1e30f;
            }

            for (j = 0; j < dim; j++) {
                slots[i * stride + 8 + j] =
                    (float) ((int) (t_rand(&seed) % 2001) - 1000) / 1000;
            }

            slots[i * stride + 8] += 0.01f;
            (void) ngx_http_aigw_cache_semantic_normalize(
                                           slots + i * stride + 8, dim);
        }

        for (j = 0; j < dim; j++) {
            q[j] = slots[(n / 2) * stride + 8 + j];
        }

        /* the best twice: the first is the one */

        ngx_memcpy(slots + (n - 1) * stride + 8, q, dim * sizeof(float));

        want = -1;
        whole = -2;
        ngx_http_aigw_cache_semantic_scan(slots + 8, n, stride, dim, q, 0,
                                          &want, &whole);

        (void) t_check(want == (ngx_int_t) (n / 2), "dim %lu: the first of "
                       "a tie, %ld", (unsigned long) dim, (long) want);

        for (ok = 1, cut = 0; cut <= n; cut++) {
            b = -1;
            score = -2;
            ngx_http_aigw_cache_semantic_scan(slots + 8, cut, stride, dim, q,
                                              0, &b, &score);
            ngx_http_aigw_cache_semantic_scan(slots + cut * stride + 8,
                                              n - cut, stride, dim, q,
                                              (ngx_int_t) cut, &b, &score);
            ok = ok && b == want && score == whole;
        }

        (void) t_check(ok, "dim %lu, n %lu: every split in two",
                       (unsigned long) dim, (unsigned long) n);

        for (ok = 1, size = 1; size <= n; size++) {
            b = -1;
            score = -2;

            for (from = 0; from < n; from += size) {
                ngx_http_aigw_cache_semantic_scan(slots + from * stride + 8,
                                                  ngx_min(size, n - from),
                                                  stride, dim, q,
                                                  (ngx_int_t) from, &b,
                                                  &score);
            }

            ok = ok && b == want && score == whole;
        }

        (void) t_check(ok, "dim %lu, n %lu: parts of every size",
                       (unsigned long) dim, (unsigned long) n);

        /* the slot read again alone scores what the scan found */

        b = -1;
        score = -2;
        ngx_http_aigw_cache_semantic_scan(slots + want * stride + 8, 1,
                                          stride, dim, q, 0, &b, &score);
        (void) t_check(b == 0 && score == whole, "read again, dim %lu",
                       (unsigned long) dim);

        free(slots);
        free(q);
    }
}


/*
 * int8 with a scale: the score of a vector near a query (cosines of
 * 0.90 to 0.99 built on purpose) against float32's, at 256 and 1536
 * dimensions; the largest difference is printed and bounded; the scan
 * of int8 slots split in two finds what one scan finds.
 */

static void
t_int8(void)
{
    u_char      *slots;
    float       *v, *q, *u, f, g, err, max, scale;
    double       d, cs;
    size_t       stride;
    uint64_t     seed;
    ngx_int_t    b, want;
    ngx_uint_t   dims[2] = { 256, 1536 }, di, dim, i, j, n, cut, ok;

    seed = 41;
    n = 200;

    for (di = 0; di < 2; di++) {
        dim = dims[di];
        stride = sizeof(float) + ngx_align(dim, 4);
        slots = t_alloc(n * stride);
        v = t_alloc(dim * sizeof(float));
        u = t_alloc(dim * sizeof(float));
        q = t_alloc(dim * sizeof(float));
        max = 0;

        for (j = 0; j < dim; j++) {
            q[j] = (float) ((int) (t_rand(&seed) % 2001) - 1000) / 1000;
        }

        q[0] += 0.01f;
        (void) ngx_http_aigw_cache_semantic_normalize(q, dim);

        for (i = 0; i < n; i++) {

            /* v = cs q + sqrt(1 - cs^2) u, u random, made orthogonal */

            cs = 0.90 + 0.09 * (double) (t_rand(&seed) % 1000) / 1000;

            for (j = 0; j < dim; j++) {
                u[j] = (float) ((int) (t_rand(&seed) % 2001) - 1000) / 1000;
            }

            for (d = 0, j = 0; j < dim; j++) {
                d += (double) u[j] * q[j];
            }

            for (j = 0; j < dim; j++) {
                u[j] -= (float) (d * q[j]);
            }

            (void) ngx_http_aigw_cache_semantic_normalize(u, dim);

            for (j = 0; j < dim; j++) {
                v[j] = (float) (cs * q[j] + sqrt_approx(1 - cs * cs) * u[j]);
            }

            (void) ngx_http_aigw_cache_semantic_normalize(v, dim);

            f = -2;
            b = -1;
            ngx_http_aigw_cache_semantic_scan(v, 1, dim, dim, q, 0, &b, &f);

            ngx_http_aigw_cache_semantic_quantize(v, dim, &scale,
                                  (int8_t *) (slots + i * stride
                                              + sizeof(float)));
            ngx_memcpy(slots + i * stride, &scale, sizeof(float));

            g = -2;
            b = -1;
            ngx_http_aigw_cache_semantic_scan8(slots + i * stride, 1, stride,
                                               dim, q, 0, &b, &g);

            err = f > g ? f - g : g - f;

            if (err > max) {
                max = err;
            }
        }

        printf("# int8, %lu dims: largest score error %.6f "
               "(cosines 0.90-0.99)\n", (unsigned long) dim, (double) max);

        (void) t_check(max < 0.002f, "int8, %lu dims: error %f",
                       (unsigned long) dim, (double) max);

        want = -1;
        f = -2;
        ngx_http_aigw_cache_semantic_scan8(slots, n, stride, dim, q, 0,
                                           &want, &f);

        for (ok = 1, cut = 0; cut <= n; cut++) {
            b = -1;
            g = -2;
            ngx_http_aigw_cache_semantic_scan8(slots, cut, stride, dim, q, 0,
                                               &b, &g);
            ngx_http_aigw_cache_semantic_scan8(slots + cut * stride, n - cut,
                                               stride, dim, q,
                                               (ngx_int_t) cut, &b, &g);
            ok = ok && b == want && g == f;
        }

        (void) t_check(ok, "int8, %lu dims: every split in two",
                       (unsigned long) dim);

        free(slots);
        free(v);
        free(u);
        free(q);
    }

    /* a zero vector scores 0 */

    v = t_alloc(8 * sizeof(float));
    slots = t_alloc(sizeof(float) + 8);
    ngx_memzero(v, 8 * sizeof(float));
    ngx_http_aigw_cache_semantic_quantize(v, 8, &scale,
                                          (int8_t *) (slots + sizeof(float)));
    ngx_memcpy(slots, &scale, sizeof(float));
    f = -2;
    b = -1;
    v[0] = 1;
    ngx_http_aigw_cache_semantic_scan8(slots, 1, sizeof(float) + 8, 8, v, 0,
                                       &b, &f);
    (void) t_check(b == 0 && f == 0, "int8: a zero vector scores 0");
    free(v);
    free(slots);
}


int
main(int argc, char **argv)
{
    t_begin("embeddings read, every prefix");
    t_parse();
    t_end();

    t_begin("unit length");
    t_normalize();
    t_end();

    t_begin("the nearest vector");
    t_best();
    t_end();

    t_begin("the scan split");
    t_split();
    t_end();

    t_begin("int8 with a scale");
    t_int8();
    t_end();

    printf("%lu passed, %lu failed\n",
           (unsigned long) t_passed, (unsigned long) t_failed);

    return t_failed ? 1 : 0;
}
