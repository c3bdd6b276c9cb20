
/*
 * Copyright (C) aigw authors
 */


/*
 * libFuzzer harness of the semantic cache's embeddings reader (t/fuzz/
 * run.sh builds and runs it): answers of an embeddings service, cut or
 * wrong anywhere.  No read past the input, no write past the room given;
 * what is read is finite and bounded; a vector read and made of unit
 * length is its own nearest, at 1.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_cache_semantic_vec.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define F_MAX  64


static void
f_assert(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_cache_semantic: %s\n", what);
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    float       *v, score;
    u_char      *p;
    ngx_uint_t   dim, i;

    /* copies of exactly their sizes: a read or write past is a report */

    p = malloc(size + 1);
    v = malloc(F_MAX * sizeof(float));
    f_assert(p != NULL && v != NULL, "out of memory");
    memcpy(p, data, size);

    dim = 0;

    if (ngx_http_aigw_cache_semantic_parse(p, p + size, v, F_MAX, &dim)
        == NGX_OK)
    {
        f_assert(dim >= 1 && dim <= F_MAX, "dimensions out of bounds");

        for (i = 0; i < dim; i++) {
            f_assert(v[i] == v[i] && v[i] <= 1e30f && v[i] >= -1e30f,
                     "a number not finite or too large");
        }

        if (ngx_http_aigw_cache_semantic_normalize(v, dim) == NGX_OK) {
            f_assert(ngx_http_aigw_cache_semantic_best(v, 1, dim, v, &score)
                     == 0, "not its own nearest");
            f_assert(score > 0.999f && score < 1.001f, "not of unit length");
        }
    }

    free(v);
    free(p);

    return 0;
}
