
/*
 * Copyright (C) aigw authors
 */


/*
 * libFuzzer harness of the incremental SSE parser (t/fuzz/run.sh builds
 * and runs it).  The input is parsed in one piece, then in two, split at a
 * point taken from its first bytes, each piece in a buffer of its exact
 * size; both must give the same events.  The data storage size comes from
 * the first byte too, small enough at times to truncate.  On half the
 * splits each piece is first offered to ngx_http_aigw_sse_one(), as the
 * filter does: a piece it takes must give the parser's event, and one it
 * declines must leave the parser as it was.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_sse.c"


typedef struct {
    u_char                     *p;
    size_t                      len;
    size_t                      size;
} f_out_t;


static void
f_assert(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_sse: %s\n", what);
        abort();
    }
}


static void
f_put(f_out_t *o, const void *s, size_t n)
{
    while (o->len + n > o->size) {
        o->size = o->size ? o->size * 2 : 1024;
        o->p = realloc(o->p, o->size);
        f_assert(o->p != NULL, "out of memory");
    }

    memcpy(o->p + o->len, s, n);
    o->len += n;
}


/* one event as length-prefixed fields, so that two runs compare as bytes */

static void
f_event(f_out_t *o, ngx_http_aigw_sse_event_t *ev, u_char finish)
{
    u_char  flags;

    flags = (u_char) (ev->done | ev->truncated << 1 | finish << 2);

    f_put(o, &ev->event.len, sizeof(size_t));
    f_put(o, ev->event.data, ev->event.len);
    f_put(o, &ev->data.len, sizeof(size_t));
    f_put(o, ev->data.data, ev->data.len);
    f_put(o, &flags, 1);
}


static void
f_parse(const uint8_t *data, size_t size, size_t at, size_t storage,
    ngx_uint_t one, f_out_t *o)
{
    u_char                      *buf, *piece, *pos, *last;
    size_t                       off, len;
    ngx_int_t                    rc;
    ngx_http_aigw_sse_event_t    ev;
    ngx_http_aigw_sse_parser_t   p, before;

    buf = malloc(storage);
    f_assert(buf != NULL, "out of memory");

    ngx_http_aigw_sse_init(&p, buf, storage);

    /* the line-end scans, vector and memchr(), each on half the splits */
    if (at & 1) {
        p.avx2 = 0;
    }

    for (off = 0; off < size || off == 0; off += len) {
        len = (off < at) ? at - off : size - off;

        piece = malloc(len ? len : 1);
        f_assert(piece != NULL, "out of memory");
        memcpy(piece, data + off, len);

        pos = piece;
        last = piece + len;

        if (one) {
            before = p;

            if (ngx_http_aigw_sse_one(&p, pos, last, &ev) == NGX_OK) {
                f_assert(ev.data.data >= pos
                         && ev.data.data + ev.data.len <= last
                         && ev.data.len <= storage,
                         "sse_one: event outside the piece");
                f_event(o, &ev, 0);
                pos = last;
            }

            f_assert(memcmp(&before, &p, sizeof(p)) == 0,
                     "sse_one changed the parser");
        }

        for ( ;; ) {
            rc = ngx_http_aigw_sse_parse(&p, &pos, last, &ev);

            if (rc == NGX_AGAIN) {
                f_assert(pos == last, "NGX_AGAIN before the end");
                break;
            }

            f_assert(rc == NGX_OK && pos <= last, "bad rc or *pos");
            f_assert(ev.data.len <= storage
                     && ev.event.len <= NGX_HTTP_AIGW_SSE_EVENT_LEN,
                     "event larger than its storage");

            f_event(o, &ev, 0);
        }

        free(piece);

        if (len == 0) {
            break;
        }
    }

    while (ngx_http_aigw_sse_finish(&p, &ev) == NGX_OK) {
        f_event(o, &ev, 1);
    }

    free(buf);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t   at, storage;
    f_out_t  whole, split;

    if (size < 2) {
        return 0;
    }

    at = ((size_t) data[0] << 8 | data[1]) % (size + 1);
    storage = (data[0] & 1) ? 1 + data[1] % 64 : 65536;

    ngx_memzero(&whole, sizeof(f_out_t));
    ngx_memzero(&split, sizeof(f_out_t));

    f_parse(data, size, size, storage, 0, &whole);
    f_parse(data, size, at, storage, data[1] & 2, &split);

    f_assert(whole.len == split.len
             && (whole.len == 0 || memcmp(whole.p, split.p, whole.len) == 0),
             "a split changed the events");

    free(whole.p);
    free(split.p);

    return 0;
}
