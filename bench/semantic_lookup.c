
/*
 * Copyright (C) aigw authors
 */


/*
 * The semantic cache's lookup, alone: the scan of one partition of the
 * zone's index (n vectors of dim floats, one after the other, as
 * cache_zone.c keeps them) for the vector nearest to a query, with the
 * module's own function and the module's flags (-O2, no -march).  Built
 * and run by bench/semantic.sh:
 *
 *     semantic_lookup N DIM [ROUNDS]
 *
 * prints "N DIM microseconds-per-lookup int8-microseconds" (the same
 * vectors as int8 slots with a scale, aigw_cache_semantic_precision
 * int8).
 */


#include "../ngx_http_aigw_module/ngx_http_aigw_cache_semantic_vec.c"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>


static double
now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}


int
main(int argc, char **argv)
{
    float       *vecs, *q, score, sink, scale;
    double       t0, t1, best, best8;
    u_char      *slots;
    size_t       stride;
    uint64_t     seed;
    ngx_int_t    b;
    ngx_uint_t   n, dim, rounds, i, r;

    if (argc < 3) {
        fprintf(stderr, "usage: semantic_lookup N DIM [ROUNDS]\n");
        return 2;
    }

    n = strtoul(argv[1], NULL, 10);
    dim = strtoul(argv[2], NULL, 10);
    rounds = argc > 3 ? strtoul(argv[3], NULL, 10) : 50;

    if (n == 0 || dim == 0 || dim > NGX_HTTP_AIGW_SEMANTIC_DIM_MAX
        || rounds == 0)
    {
        fprintf(stderr, "semantic_lookup: bad arguments\n");
        return 2;
    }

    vecs = malloc(n * dim * sizeof(float));
    q = malloc(dim * sizeof(float));

    if (vecs == NULL || q == NULL) {
        fprintf(stderr, "semantic_lookup: no memory\n");
        return 1;
    }

    seed = 88172645463325252ULL;

    for (i = 0; i < n * dim; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        vecs[i] = (float) ((int64_t) (seed % 2001) - 1000) / 1000;
    }

    for (i = 0; i < n; i++) {
        vecs[i * dim] += 0.001f;
        (void) ngx_http_aigw_cache_semantic_normalize(vecs + i * dim, dim);
    }

    for (i = 0; i < dim; i++) {
        q[i] = vecs[(n / 2) * dim + i];
    }

    sink = 0;

    /* one round to warm the caches, then the best of the rounds */

    (void) ngx_http_aigw_cache_semantic_best(vecs, n, dim, q, &score);

    best = 1e30;

    for (r = 0; r < rounds; r++) {
        t0 = now_us();
        b = ngx_http_aigw_cache_semantic_best(vecs, n, dim, q, &score);
        t1 = now_us();

        sink += score + (float) b;

        if (t1 - t0 < best) {
            best = t1 - t0;
        }
    }

    stride = sizeof(float) + ngx_align(dim, 4);
    slots = malloc(n * stride);

    if (slots == NULL) {
        fprintf(stderr, "semantic_lookup: no memory\n");
        return 1;
    }

    for (i = 0; i < n; i++) {
        ngx_http_aigw_cache_semantic_quantize(vecs + i * dim, dim, &scale,
                                   (int8_t *) (slots + i * stride
                                               + sizeof(float)));
        memcpy(slots + i * stride, &scale, sizeof(float));
    }

    best8 = 1e30;

    for (r = 0; r <= rounds; r++) {
        b = -1;
        score = -2;
        t0 = now_us();
        ngx_http_aigw_cache_semantic_scan8(slots, n, stride, dim, q, 0, &b,
                                           &score);
        t1 = now_us();

        sink += score + (float) b;

        /* the first round warms the caches */

        if (r && t1 - t0 < best8) {
            best8 = t1 - t0;
        }
    }

    printf("%lu %lu %.1f %.1f\n", (unsigned long) n, (unsigned long) dim,
           best, best8);

    free(slots);
    free(vecs);
    free(q);

    return sink == 0 ? 1 : 0;
}
