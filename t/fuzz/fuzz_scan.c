
/*
 * Copyright (C) aigw authors
 */


/*
 * libFuzzer harness of the request body scanner (t/fuzz/run.sh builds and
 * runs it).  It must never crash nor read past the body; when the body is
 * JSON, every recorded span lies inside it, in order, and unescaping never
 * writes more than it reads.  And it must give what the reference scanner
 * (scan_ref.c) gives: the same result, error offset and reason, fields,
 * text spans and string_bytes; and the counts of an answer's "usage"
 * object that the usage reader (ngx_http_aigw_usage_read()) reads.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_scan.c"
#include "../../ngx_http_aigw_module/ngx_http_aigw_usage.c"
#include "scan_ref.c"


#define F_TEXTS  8


static void f_shape(ngx_http_aigw_shape_t *a, ngx_http_aigw_shape_t *b,
    const char *what);


static void
f_assert(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_scan: %s\n", what);
        abort();
    }
}


/* the scan's result against the reference's, on the same body */

static void
f_same(ngx_int_t rc, ngx_http_aigw_scan_t *s, u_char *buf, u_char *last)
{
    ngx_int_t              rrc;
    ngx_uint_t             i, n;
    ngx_http_aigw_span_t   spans[F_TEXTS];
    ngx_http_aigw_scan_t   r;

    memset(&r, 0x5a, sizeof(r));
    r.text = spans;
    r.text_size = F_TEXTS;
    r.keys = NULL;

    rrc = ngx_http_aigw_ref_scan(&r, buf, last);

    f_assert(rc == rrc, "not the reference's result");

    f_assert(s->error == r.error
             && (s->reason == r.reason
                 || (s->reason && r.reason
                     && strcmp(s->reason, r.reason) == 0)),
             "not the reference's error");

    if (rc == NGX_ERROR) {
        return;
    }

    f_assert(s->open == r.open && s->close == r.close,
             "not the reference's open or close");

    for (i = 0; i < NGX_HTTP_AIGW_F_N; i++) {
        f_assert(s->field[i].key == r.field[i].key, "not the reference's key");

        if (r.field[i].key) {
            f_assert(s->field[i].start == r.field[i].start
                     && s->field[i].end == r.field[i].end,
                     "not the reference's field");
        }
    }

    f_assert(s->ntext == r.ntext && s->string_bytes == r.string_bytes,
             "not the reference's ntext or string_bytes");

    n = ngx_min(r.ntext, r.text_size);

    for (i = 0; i < n; i++) {
        f_assert(s->text[i].start == spans[i].start
                 && s->text[i].end == spans[i].end,
                 "not the reference's text span");
    }

    if (rc != NGX_OK) {
        return;
    }

    /* the checks: as the body step's old walkers, over all text spans */

    r.keys = NULL;
    r.text = malloc((r.ntext + 1) * sizeof(ngx_http_aigw_span_t));
    f_assert(r.text != NULL, "out of memory");
    r.text_size = r.ntext;

    f_assert(ngx_http_aigw_ref_scan(&r, buf, last) == NGX_OK,
             "the reference's second scan");

    ngx_http_aigw_ref_check(&r);

    f_shape(&s->messages, &r.messages, "messages");
    f_shape(&s->input, &r.input, "input");
    f_shape(&s->prompt, &r.prompt, "prompt");

    f_assert(s->text_error == r.text_error
             && (r.text_error == NGX_HTTP_AIGW_TEXT_OK
                 || (s->text_at == r.text_at
                     && s->text_field == r.text_field)),
             "not the old walkers' text check");

    free(r.text);
}


static void
f_shape(ngx_http_aigw_shape_t *a, ngx_http_aigw_shape_t *b, const char *what)
{
    if (a->error != b->error
        || (b->error != NGX_HTTP_AIGW_SHAPE_OK
            && (a->index != b->index || a->value != b->value)))
    {
        fprintf(stderr, "fuzz_scan: %s: not the old walkers' check "
                "(%lu/%lu)\n", what, (unsigned long) a->error,
                (unsigned long) b->error);
        abort();
    }
}


static size_t
f_unescape(u_char *p, u_char *last)
{
    size_t   n;
    u_char  *dst, *end;

    dst = malloc(last - p + 1);
    f_assert(dst != NULL, "out of memory");

    end = ngx_http_aigw_scan_unescape(dst, p, last);
    f_assert(end >= dst && end - dst <= last - p, "unescape grew");

    /* a string equals its own unescaping */
    f_assert(ngx_http_aigw_scan_equal(p, last, dst, end - dst),
             "a string is not equal to its unescaping");

    n = end - dst;
    free(dst);

    return n;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                 *buf, *last, *prev;
    size_t                  text;
    ngx_int_t               rc;
    ngx_uint_t              i, n;
    ngx_http_aigw_span_t    spans[F_TEXTS];
    ngx_http_aigw_span_t    keys[NGX_HTTP_AIGW_SCAN_KEYS];
    ngx_http_aigw_scan_t    s;
    ngx_http_aigw_usage_t   u;
    ngx_http_aigw_field_t  *f;

    /* an exact-size copy: AddressSanitizer sees any read past the end */
    buf = malloc(size ? size : 1);
    f_assert(buf != NULL, "out of memory");
    memcpy(buf, data, size);
    last = buf + size;

    memset(&s, 0xa5, sizeof(s));
    s.text = spans;
    s.text_size = F_TEXTS;
    s.keys = keys;

    rc = ngx_http_aigw_scan(&s, buf, last);

    /* the top-level keys it kept lie inside the input */

    for (i = 0; rc == NGX_OK && i < s.nkeys; i++) {
        f_assert(s.keys[i].start > buf && s.keys[i].end < last
                 && s.keys[i].start <= s.keys[i].end, "key outside");
    }

    f_assert(rc == NGX_OK || rc == NGX_DECLINED || rc == NGX_ERROR,
             "unknown rc");

    f_same(rc, &s, buf, last);

    /* the usage counts read on the way: as the usage reader's */

    f = &s.field[NGX_HTTP_AIGW_F_USAGE];

    if (rc == NGX_OK && f->key && *f->start == '{') {
        f_assert(ngx_http_aigw_usage_read(&u, f->start, f->end) == NGX_OK,
                 "a valid usage object the usage reader finds cut");

        for (i = 0; i < NGX_HTTP_AIGW_U_N; i++) {
            f_assert(s.usage.n[i] == u.n[i],
                     "usage counts not as the usage reader's");
        }
    }

    if (rc == NGX_ERROR) {
        f_assert(s.reason != NULL && s.error <= size, "error out of range");
        f_unescape(buf, last);
        free(buf);
        return 0;
    }

    f_assert(s.open >= buf && s.open < s.close && s.close < last
             && *s.open == '{' && *s.close == '}', "open or close");

    f_assert(rc == NGX_OK
             || (s.error < size && buf[s.error] == '"'), "duplicate offset");

    for (i = 0; i < NGX_HTTP_AIGW_F_N; i++) {
        f = &s.field[i];

        if (f->key == NULL) {
            continue;
        }

        f_assert(f->key > s.open && f->key < f->start && f->start < f->end
                 && f->end <= s.close && *f->key == '"',
                 "field span out of place");
    }

    n = ngx_min(s.ntext, s.text_size);
    prev = s.open;
    text = 0;

    for (i = 0; i < n; i++) {
        f_assert(spans[i].start > prev && spans[i].start <= spans[i].end
                 && spans[i].end < s.close && spans[i].start[-1] == '"'
                 && *spans[i].end == '"', "text span out of place");

        prev = spans[i].end;

        text += f_unescape(spans[i].start, spans[i].end);
    }

    /* texts are string values, and all of them are counted */
    f_assert(text <= s.string_bytes && s.string_bytes <= size,
             "string_bytes");

    free(buf);

    return 0;
}
