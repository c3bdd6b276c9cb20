
/*
 * Copyright (C) aigw authors
 */


/*
 * Unit test of the incremental SSE parser, built standalone against the
 * include directories of a configured nginx tree (see t/unit/README.md):
 *
 *     test_sse t/data/sse
 *
 * Every stream is parsed whole, split in two at every offset, byte by byte
 * and in random pieces; each way must give the same events.  A second,
 * deliberately naive parser written straight from the spec's wording serves
 * as the oracle for the whole-stream result.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_sse.c"
#include "t_unit.h"

#include <dirent.h>
#include <time.h>


#define T_DATA_SIZE     65536
#define T_EVENT_LEN     NGX_HTTP_AIGW_SSE_EVENT_LEN


typedef struct {
    u_char                     *event;
    size_t                      event_len;
    u_char                     *data;
    size_t                      data_len;
    unsigned                    done:1;
    unsigned                    truncated:1;
    unsigned                    finish:1;   /* handed out by finish() */
} t_event_t;


typedef struct {
    t_event_t                  *events;
    ngx_uint_t                  n;
    ngx_uint_t                  cap;
    const char                 *error;      /* the API contract broken */
} t_result_t;


typedef enum {
    t_whole = 0,
    t_split,
    t_bytes,
    t_random
} t_mode_e;


typedef struct {
    t_mode_e                    mode;
    size_t                      at;         /* t_split: the offset */
    size_t                      max;        /* t_random: largest piece */
    uint64_t                    seed;       /* t_random */
} t_split_t;


typedef struct {
    const char                 *file;
    size_t                      size;       /* data storage, 0: 64 KB */
    ngx_uint_t                  nevents;
    const char                 *names;      /* "-" is no name; or NULL */
    const char                 *first;      /* prefix of the first data */
    const char                 *last;       /* the last data, exactly */
    ngx_uint_t                  ndone;
    ngx_uint_t                  nfinish;
    ngx_uint_t                  ntruncated;
    const char                 *datas[8];   /* all data, exactly, or {0} */
} t_expect_t;


/* every fixture below must exist; the rest are still checked generically */

static t_expect_t  t_expects[] = {

    { "openai_chat.sse", 0, 11, NULL,
      "{\"id\":\"chatcmpl-AqT3kfZ2cW7mXgL0pN9vR4sYh1uE\",\"object\":"
      "\"chat.completion.chunk\"",
      "[DONE]", 1, 0, 0, { NULL } },

    { "openai_chat_cr.sse", 0, 11, NULL,
      "{\"id\":\"chatcmpl-AqT3kfZ2cW7mXgL0pN9vR4sYh1uE\"",
      "[DONE]", 1, 0, 0, { NULL } },

    { "openai_missing_final_blank.sse", 0, 11, NULL,
      "{\"id\":\"chatcmpl-AqT5bQx8LmN2oP4rS6tU8vW0yZ1a\"",
      "[DONE]", 1, 1, 0, { NULL } },

    { "openai_keepalive.sse", 0, 10, NULL,
      "{\"id\":\"gen-1737023700-Xk3pQ9rT2vB7nM5wL8yZ\"",
      "[DONE]", 1, 0, 0, { NULL } },

    { "openai_long_line.sse", 4096, 7, NULL,
      "{\"id\":\"chatcmpl-AqT7lOnGlInE0000000000000000\"",
      "[DONE]", 1, 0, 1, { NULL } },

    { "anthropic_messages.sse", 0, 11,
      "message_start content_block_start ping content_block_delta"
      " content_block_delta content_block_delta content_block_delta"
      " content_block_delta content_block_stop message_delta message_stop",
      "{\"type\":\"message_start\",\"message\":{\"id\":"
      "\"msg_01XFDUDYJgAACzvnptvVoYEL\"",
      "{\"type\":\"message_stop\"}", 0, 0, 0, { NULL } },

    { "anthropic_messages_crlf.sse", 0, 11,
      "message_start content_block_start ping content_block_delta"
      " content_block_delta content_block_delta content_block_delta"
      " content_block_delta content_block_stop message_delta message_stop",
      "{\"type\":\"message_start\"",
      "{\"type\":\"message_stop\"}", 0, 0, 0, { NULL } },

    { "anthropic_no_final_eol.sse", 0, 9,
      "message_start content_block_start ping content_block_delta"
      " content_block_delta content_block_delta content_block_stop"
      " message_delta message_stop",
      "{\"type\":\"message_start\"",
      "{\"type\":\"message_stop\"}", 0, 1, 0, { NULL } },

    { "anthropic_tool_use.sse", 0, 18,
      "message_start content_block_start ping content_block_delta"
      " content_block_delta content_block_delta content_block_delta"
      " content_block_delta content_block_stop content_block_start"
      " content_block_delta content_block_delta content_block_delta"
      " content_block_delta content_block_delta content_block_stop"
      " message_delta message_stop",
      "{\"type\":\"message_start\"",
      "{\"type\":\"message_stop\"}", 0, 0, 0, { NULL } },

    { "anthropic_error.sse", 0, 5,
      "message_start content_block_start ping content_block_delta error",
      "{\"type\":\"message_start\"",
      "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
      "\"message\":\"Overloaded\"}}", 0, 0, 0, { NULL } },

    { "multiline_data.sse", 0, 5, "- - multi - -", "{\n", "[DONE]",
      1, 0, 0,
      { "{\n  \"type\": \"note\",\n  \"text\": \"line one\"\n}",
        "first line, no space\n\n third line, second space kept",
        "a: value with: colons\n",
        "",
        "[DONE]",
        NULL } },

    { "retry_id.sse", 0, 4, "message - - end", "{\"seq\":1}", "[DONE]",
      1, 0, 0,
      { "{\"seq\":1}", "{\"seq\":2}", "{\"seq\":3}", "[DONE]", NULL } },

    { "mixed_eol.sse", 0, 5, "- - - mix -", "lf", "[DONE]", 1, 0, 0,
      { "lf", "crlf", "cr", "one\ntwo\nthree", "[DONE]", NULL } },

    { "bom.sse", 0, 3, "- - -",
      "{\"id\":\"chatcmpl-AqT3kfZ2cW7mXgL0pN9vR4sYh1uE\"",
      "[DONE]", 1, 0, 0, { NULL } },

    { NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0, { NULL } }
};


/* line-ending variants must give exactly their original's events */

static const char  *t_pairs[][2] = {
    { "anthropic_messages.sse", "anthropic_messages_crlf.sse" },
    { "openai_chat.sse", "openai_chat_cr.sse" },
    { NULL, NULL }
};


static void
t_add(t_result_t *r, const u_char *event, size_t event_len,
    const u_char *data, size_t data_len, unsigned done, unsigned truncated,
    unsigned finish)
{
    t_event_t  *e;

    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->events = realloc(r->events, r->cap * sizeof(t_event_t));
        if (r->events == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
    }

    e = &r->events[r->n++];
    e->event = t_dup(event, event_len);
    e->event_len = event_len;
    e->data = t_dup(data, data_len);
    e->data_len = data_len;
    e->done = done;
    e->truncated = truncated;
    e->finish = finish;
}


static void
t_free(t_result_t *r)
{
    ngx_uint_t  i;

    for (i = 0; i < r->n; i++) {
        free(r->events[i].event);
        free(r->events[i].data);
    }

    free(r->events);
    ngx_memzero(r, sizeof(t_result_t));
}


static size_t
t_piece(t_split_t *sp, size_t off, size_t left)
{
    size_t  n;

    switch (sp->mode) {

    case t_split:
        return (off < sp->at) ? sp->at - off : left;

    case t_bytes:
        return ngx_min(left, 1);

    case t_random:
        n = 1 + t_rand(&sp->seed) % sp->max;
        return ngx_min(left, n);

    default: /* t_whole */
        return left;
    }
}


/*
 * The line-end scan: the one-pass vector scan where the CPU has it, and
 * the memchr() pair; each run of the cases and streams goes through both.
 */

static ngx_uint_t  t_scalar;

/* pieces first offered to ngx_http_aigw_sse_one(), as the filter does */
static ngx_uint_t  t_one;

static void
t_scan_mode(ngx_http_aigw_sse_parser_t *p)
{
    if (t_scalar) {
        p->avx2 = 0;
    }
}


/*
 * Feeds the stream to the parser in the pieces the split asks for, each in
 * a buffer of its own exact size so that AddressSanitizer sees any read past
 * "last"; the data storage is exact too.
 */

static void
t_parse(const u_char *stream, size_t n, size_t size, t_split_t *sp,
    t_result_t *r)
{
    u_char                      *buf, *piece, *pos, *prev, *last;
    size_t                       off, len;
    ngx_int_t                    rc;
    ngx_http_aigw_sse_event_t    ev;
    ngx_http_aigw_sse_parser_t   p, before;

    buf = size ? t_alloc(size) : NULL;

    ngx_http_aigw_sse_init(&p, buf, size);
    t_scan_mode(&p);

    off = 0;

    do {
        len = t_piece(sp, off, n - off);
        piece = t_dup(stream + off, len);
        last = piece + len;
        pos = piece;

        if (t_one) {
            memcpy(&before, &p, sizeof(p));
            memset(&ev, 0xa5, sizeof(ev));

            rc = ngx_http_aigw_sse_one(&p, pos, last, &ev);

            if (memcmp(&before, &p, sizeof(p)) != 0) {
                r->error = "sse_one changed the parser";
            }

            if (rc == NGX_OK) {
                if (ev.data.len > size
                    || (ev.data.len
                        && (ev.data.data < pos
                            || ev.data.data + ev.data.len > last)))
                {
                    r->error = "sse_one: event outside the piece";
                }

                t_add(r, ev.event.data, ev.event.len, ev.data.data,
                      ev.data.len, ev.done, ev.truncated, 0);

                pos = last;

            } else if (rc != NGX_DECLINED) {
                r->error = "sse_one returned neither NGX_OK nor NGX_DECLINED";
            }
        }

        for ( ;; ) {
            prev = pos;
            memset(&ev, 0xa5, sizeof(ev));

            rc = ngx_http_aigw_sse_parse(&p, &pos, last, &ev);

            if (rc == NGX_AGAIN) {
                if (pos != last) {
                    r->error = "NGX_AGAIN without consuming all bytes";
                }

                break;
            }

            if (rc != NGX_OK) {
                r->error = "parse returned neither NGX_OK nor NGX_AGAIN";
                break;
            }

            if (pos <= prev || pos > last) {
                r->error = "NGX_OK with *pos not advanced within the buffer";
                break;
            }

            /* the storage, or the piece at hand: never an earlier one */

            if (ev.data.len > size || ev.event.len > T_EVENT_LEN
                || (ev.data.len && ev.data.data != buf
                    && (ev.data.data < prev
                        || ev.data.data + ev.data.len > last)))
            {
                r->error = "event points outside the parser's storage";
                break;
            }

            t_add(r, ev.event.data, ev.event.len, ev.data.data, ev.data.len,
                  ev.done, ev.truncated, 0);
        }

        free(piece);
        off += len;

    } while (off < n);

    memset(&ev, 0xa5, sizeof(ev));

    rc = ngx_http_aigw_sse_finish(&p, &ev);

    if (rc == NGX_OK) {
        t_add(r, ev.event.data, ev.event.len, ev.data.data, ev.data.len,
              ev.done, ev.truncated, 1);

        rc = ngx_http_aigw_sse_finish(&p, &ev);
    }

    if (rc != NGX_DONE) {
        r->error = "finish did not end with NGX_DONE";
    }

    free(buf);
}


/*
 * The oracle: the spec's "interpret an event stream" steps taken literally,
 * on the whole stream at once, with an unbounded data buffer that is cut to
 * the parser's storage size only when the event is handed out.
 */

static void
t_model_dispatch(t_result_t *r, u_char *data, size_t *len, u_char *event,
    size_t *event_len, size_t size, unsigned finish)
{
    size_t    n, en;
    unsigned  done, truncated;

    if (*len == 0) {
        *event_len = 0;
        return;
    }

    /* the spec appends LF after each data line and drops the last one */
    n = *len - 1;
    en = *event_len;

    done = (n == 6 && memcmp(data, "[DONE]", 6) == 0);
    truncated = (n > size || en > T_EVENT_LEN);

    t_add(r, event, ngx_min(en, T_EVENT_LEN), data, ngx_min(n, size), done,
          truncated, finish);

    *len = 0;
    *event_len = 0;
}


static void
t_model(const u_char *s, size_t n, size_t size, t_result_t *r)
{
    u_char        *data, *event;
    size_t         i, a, b, len, event_len, vlen;
    const u_char  *colon, *v;

    data = t_alloc(2 * n + 1);
    event = t_alloc(n);
    len = 0;
    event_len = 0;

    i = 0;

    if (n >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf) {
        i = 3;
    }

    while (i < n) {
        a = i;

        while (i < n && s[i] != '\r' && s[i] != '\n') {
            i++;
        }

        b = i;

        if (i < n) {
            i += (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') ? 2 : 1;

        } else if (a == b) {
            break;
        }

        if (a == b) {
            t_model_dispatch(r, data, &len, event, &event_len, size, 0);
            continue;
        }

        if (s[a] == ':') {
            continue;
        }

        colon = memchr(s + a, ':', b - a);

        if (colon) {
            v = colon + 1;
            vlen = s + b - v;

            if (vlen && *v == ' ') {
                v++;
                vlen--;
            }

        } else {
            colon = s + b;
            v = s + b;
            vlen = 0;
        }

        if (colon - (s + a) == 4 && memcmp(s + a, "data", 4) == 0) {
            memcpy(data + len, v, vlen);
            len += vlen;
            data[len++] = '\n';

        } else if (colon - (s + a) == 5 && memcmp(s + a, "event", 5) == 0) {
            memcpy(event, v, vlen);
            event_len = vlen;
        }
    }

    /* aigw, unlike a browser, hands out the event the stream left open */
    t_model_dispatch(r, data, &len, event, &event_len, size, 1);

    free(data);
    free(event);
}


static void
t_escape(FILE *f, const u_char *s, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (s[i] == '\n') {
            fputs("\\n", f);

        } else if (s[i] == '\r') {
            fputs("\\r", f);

        } else if (s[i] == '\\' || s[i] == '|' || s[i] == ';') {
            fprintf(f, "\\%c", s[i]);

        } else if (s[i] < 0x20 || s[i] >= 0x7f) {
            fprintf(f, "\\x%02x", s[i]);

        } else {
            fputc(s[i], f);
        }
    }
}


/* "event|data|flags;" for every event: one string to compare and to show */

static char *
t_serialize(t_result_t *r)
{
    char        *out;
    size_t       size;
    FILE        *f;
    ngx_uint_t   i;
    t_event_t   *e;

    f = open_memstream(&out, &size);
    if (f == NULL) {
        fprintf(stderr, "open_memstream failed\n");
        exit(2);
    }

    if (r->error) {
        fprintf(f, "ERROR: %s;", r->error);
    }

    for (i = 0; i < r->n; i++) {
        e = &r->events[i];

        t_escape(f, e->event, e->event_len);
        fputc('|', f);
        t_escape(f, e->data, e->data_len);
        fprintf(f, "|%s%s%s;", e->done ? "D" : "", e->truncated ? "T" : "",
                e->finish ? "F" : "");
    }

    fclose(f);

    return out;
}


static int
t_equal(t_result_t *a, t_result_t *b)
{
    t_event_t   *x, *y;
    ngx_uint_t   i;

    if (a->n != b->n || (a->error == NULL) != (b->error == NULL)
        || (a->error && strcmp(a->error, b->error) != 0))
    {
        return 0;
    }

    for (i = 0; i < a->n; i++) {
        x = &a->events[i];
        y = &b->events[i];

        if (x->event_len != y->event_len
            || x->data_len != y->data_len
            || x->done != y->done
            || x->truncated != y->truncated
            || x->finish != y->finish
            || memcmp(x->event, y->event, x->event_len) != 0
            || memcmp(x->data, y->data, x->data_len) != 0)
        {
            return 0;
        }
    }

    return 1;
}


static int
t_same(t_result_t *a, t_result_t *b, const char *what)
{
    char  *sa, *sb;

    if (t_check(t_equal(a, b), "%s", what)) {
        return 1;
    }

    if (t_failed <= T_MAX_FAILURES) {
        sa = t_serialize(a);
        sb = t_serialize(b);

        printf("#     got  %.600s\n#     want %.600s\n", sa, sb);

        free(sa);
        free(sb);
    }

    return 0;
}


/*
 * Parses the stream every way there is and compares each to "want"; when
 * "all" is not set, two-piece splits are tried at 512 offsets spread over
 * the stream instead of at all of them.
 */

static void
t_every_way(const char *name, const u_char *s, size_t n, size_t size,
    t_result_t *want, ngx_uint_t rounds, ngx_uint_t all)
{
    char         what[256];
    size_t       at, step;
    ngx_uint_t   i;
    t_split_t    sp;
    t_result_t   r;

    ngx_memzero(&sp, sizeof(t_split_t));
    ngx_memzero(&r, sizeof(t_result_t));

    sp.mode = t_whole;
    t_parse(s, n, size, &sp, &r);
    snprintf(what, sizeof(what), "%s, size %lu, whole", name,
             (unsigned long) size);
    t_same(&r, want, what);
    t_free(&r);

    step = (all || n < 512) ? 1 : n / 512;

    for (at = 0; at <= n; at += step) {
        sp.mode = t_split;
        sp.at = at;
        t_parse(s, n, size, &sp, &r);
        snprintf(what, sizeof(what), "%s, size %lu, split at %lu", name,
                 (unsigned long) size, (unsigned long) at);
        t_same(&r, want, what);
        t_free(&r);
    }

    sp.mode = t_bytes;
    t_parse(s, n, size, &sp, &r);
    snprintf(what, sizeof(what), "%s, size %lu, byte by byte", name,
             (unsigned long) size);
    t_same(&r, want, what);
    t_free(&r);

    for (i = 0; i < rounds; i++) {
        sp.mode = t_random;
        sp.seed = 0x5eed0000 + i;
        sp.max = (i % 4 == 0) ? 3 : (i % 4 == 1) ? 17 : (i % 4 == 2) ? 256
                                                                  : 8192;
        t_parse(s, n, size, &sp, &r);
        snprintf(what, sizeof(what), "%s, size %lu, random pieces of 1..%lu"
                 " (round %lu)", name, (unsigned long) size,
                 (unsigned long) sp.max, (unsigned long) i);
        t_same(&r, want, what);
        t_free(&r);
    }
}


static int
t_cmp_names(const void *a, const void *b)
{
    return strcmp(*(char * const *) a, *(char * const *) b);
}


static void
t_expect(t_expect_t *x, t_result_t *r)
{
    char         name[T_EVENT_LEN + 1];
    const char  *w, *end;
    size_t       len;
    t_event_t   *e;
    ngx_uint_t   i, ndone, nfinish, ntruncated;

    if (!t_check(r->error == NULL && r->n == x->nevents,
                 "%s: %lu events, want %lu%s%s", x->file,
                 (unsigned long) r->n, (unsigned long) x->nevents,
                 r->error ? ": " : "", r->error ? r->error : ""))
    {
        return;
    }

    ndone = 0;
    nfinish = 0;
    ntruncated = 0;

    for (i = 0; i < r->n; i++) {
        ndone += r->events[i].done;
        nfinish += r->events[i].finish;
        ntruncated += r->events[i].truncated;
    }

    t_check(ndone == x->ndone, "%s: %lu [DONE] events, want %lu", x->file,
            (unsigned long) ndone, (unsigned long) x->ndone);
    t_check(nfinish == x->nfinish, "%s: %lu events from finish, want %lu",
            x->file, (unsigned long) nfinish, (unsigned long) x->nfinish);
    t_check(ntruncated == x->ntruncated, "%s: %lu truncated, want %lu",
            x->file, (unsigned long) ntruncated,
            (unsigned long) x->ntruncated);

    if (x->ndone) {
        t_check(r->events[r->n - 1].done, "%s: last event not [DONE]",
                x->file);
    }

    e = &r->events[0];
    len = strlen(x->first);
    t_check(e->data_len >= len && memcmp(e->data, x->first, len) == 0,
            "%s: first data \"%.*s\"", x->file, (int) ngx_min(e->data_len, 80),
            e->data);

    e = &r->events[r->n - 1];
    t_check(e->data_len == strlen(x->last)
            && memcmp(e->data, x->last, e->data_len) == 0,
            "%s: last data \"%.*s\", want \"%s\"", x->file,
            (int) ngx_min(e->data_len, 80), e->data, x->last);

    if (x->names) {
        w = x->names;

        for (i = 0; i < r->n; i++) {
            end = strchr(w, ' ');
            len = end ? (size_t) (end - w) : strlen(w);

            if (len == 1 && *w == '-') {
                len = 0;
            }

            e = &r->events[i];
            ngx_memcpy(name, e->event, e->event_len);
            name[e->event_len] = '\0';

            t_check(e->event_len == len && memcmp(e->event, w, len) == 0,
                    "%s: event %lu is \"%s\", want \"%.*s\"", x->file,
                    (unsigned long) i, name, (int) len, w);

            if (end == NULL) {
                t_check(i == r->n - 1, "%s: too few names", x->file);
                break;
            }

            w = end + 1;
        }
    }

    for (i = 0; i < r->n && x->datas[i]; i++) {
        e = &r->events[i];

        t_check(e->data_len == strlen(x->datas[i])
                && memcmp(e->data, x->datas[i], e->data_len) == 0,
                "%s: data %lu \"%.*s\", want \"%s\"", x->file,
                (unsigned long) i, (int) e->data_len, e->data, x->datas[i]);
    }
}


static void
t_fixtures(const char *dir)
{
    char          *files[256], group[300];
    u_char        *s, *s2;
    size_t         n, n2, sizes[2];
    DIR           *d;
    t_split_t      whole = { t_whole, 0, 0, 0 };
    t_expect_t    *x;
    t_result_t     want, model, other;
    ngx_uint_t     nfiles, i, k, found;
    struct dirent *de;

    d = opendir(dir);
    if (d == NULL) {
        printf("Bail out! cannot open fixture directory \"%s\"\n", dir);
        exit(2);
    }

    nfiles = 0;

    while ((de = readdir(d)) != NULL && nfiles < 256) {
        n = strlen(de->d_name);

        if (n > 4 && strcmp(de->d_name + n - 4, ".sse") == 0) {
            files[nfiles++] = strdup(de->d_name);
        }
    }

    closedir(d);

    qsort(files, nfiles, sizeof(char *), t_cmp_names);

    t_begin("fixtures present");

    for (x = t_expects; x->file; x++) {
        found = 0;

        for (i = 0; i < nfiles; i++) {
            if (strcmp(files[i], x->file) == 0) {
                found = 1;
            }
        }

        t_check(found, "fixture %s/%s is missing", dir, x->file);
    }

    t_end();

    for (i = 0; i < nfiles; i++) {
        s = t_read(dir, files[i], &n);

        for (x = t_expects; x->file; x++) {
            if (strcmp(x->file, files[i]) == 0) {
                break;
            }
        }

        /* the storage a filter would give, and a small one that cuts */
        sizes[0] = x->size ? x->size : T_DATA_SIZE;
        sizes[1] = 100;

        snprintf(group, sizeof(group), "%s (%lu bytes)", files[i],
                 (unsigned long) n);
        t_begin(group);

        if (!t_check(s != NULL, "cannot read %s/%s", dir, files[i])) {
            t_end();
            continue;
        }

        for (k = 0; k < 2; k++) {
            ngx_memzero(&want, sizeof(t_result_t));
            ngx_memzero(&model, sizeof(t_result_t));

            t_parse(s, n, sizes[k], &whole, &want);
            t_model(s, n, sizes[k], &model);

            t_same(&want, &model, "whole stream against the spec model");

            if (k == 0 && x->file) {
                t_expect(x, &want);
            }

            t_every_way(files[i], s, n, sizes[k], &want, 16, 1);

            t_free(&want);
            t_free(&model);
        }

        t_end();
        free(s);
    }

    for (i = 0; t_pairs[i][0]; i++) {
        snprintf(group, sizeof(group), "%s same events as %s", t_pairs[i][1],
                 t_pairs[i][0]);
        t_begin(group);

        s = t_read(dir, t_pairs[i][0], &n);
        s2 = t_read(dir, t_pairs[i][1], &n2);

        if (t_check(s && s2, "cannot read the pair")) {
            ngx_memzero(&want, sizeof(t_result_t));
            ngx_memzero(&other, sizeof(t_result_t));

            t_parse(s, n, T_DATA_SIZE, &whole, &want);
            t_parse(s2, n2, T_DATA_SIZE, &whole, &other);
            t_same(&other, &want, "line ending variant");

            t_free(&want);
            t_free(&other);
        }

        free(s);
        free(s2);
        t_end();
    }

    for (i = 0; i < nfiles; i++) {
        free(files[i]);
    }
}


/*
 * Every byte but LF and CR is a byte of a line: lines of each one, of
 * lengths that take every path of the line-end scan (bytes, 32, 64 at a
 * time, the last 32 overlapping)
 */

static void
t_bytes_in_line(void)
{
    u_char       s[256];
    size_t       n, len;
    ngx_uint_t   c, k;
    t_result_t   r;
    t_split_t    whole = { t_whole, 0, 0, 0 };

    static size_t  lens[] = { 1, 25, 26, 57, 58, 100, 121, 122, 200 };

    t_begin("every other byte in a line, every length of the scan");

    for (c = 0; c < 256; c++) {
        if (c == LF || c == CR) {
            continue;
        }

        for (k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
            len = lens[k];

            ngx_memcpy(s, "data:", 5);
            ngx_memset(s + 5, c, len);
            ngx_memcpy(s + 5 + len, "\n\n", 2);
            n = 5 + len + 2;

            /* a space right after the colon is not data */
            if (c == ' ') {
                len--;
            }

            ngx_memzero(&r, sizeof(t_result_t));
            t_parse(s, n, T_DATA_SIZE, &whole, &r);

            t_check(r.error == NULL && r.n == 1
                    && r.events[0].data_len == len
                    && ngx_memcmp(r.events[0].data, s + n - 2 - len, len)
                       == 0,
                    "a line of %lu bytes 0x%02x", (unsigned long) len,
                    (unsigned) c);

            t_free(&r);
        }
    }

    t_end();
}


/*
 * A hand-written case: "expect" is the serialized result, see t_serialize();
 * the stream is checked against the model too, then parsed every way.
 */

static void
t_case(const char *stream, size_t n, size_t size, const char *expect)
{
    char        *got;
    t_split_t    whole = { t_whole, 0, 0, 0 };
    t_result_t   r, model;

    ngx_memzero(&r, sizeof(t_result_t));
    ngx_memzero(&model, sizeof(t_result_t));

    t_parse((u_char *) stream, n, size, &whole, &r);
    got = t_serialize(&r);

    t_check(strcmp(got, expect) == 0, "stream \"%.200s\" size %lu:\n"
            "#     got  %s\n#     want %s", stream, (unsigned long) size,
            got, expect);

    t_model((u_char *) stream, n, size, &model);
    t_same(&r, &model, "hand case against the spec model");

    t_every_way("hand case", (u_char *) stream, n, size, &r, 64, 1);

    free(got);
    t_free(&r);
    t_free(&model);
}


#define t_case_str(s, size, expect)  t_case(s, sizeof(s) - 1, size, expect)


static void
t_cases(void)
{
    t_begin("blank lines dispatch, events without data do not");
    t_case_str("", T_DATA_SIZE, "");
    t_case_str("\n\n\r\n\r\r", T_DATA_SIZE, "");
    t_case_str("data: a\n\n", T_DATA_SIZE, "|a|;");
    t_case_str("data: a\n\n\n\ndata: b\n\n", T_DATA_SIZE, "|a|;|b|;");
    t_case_str("event: ping\n\ndata: x\n\n", T_DATA_SIZE, "|x|;");
    t_case_str("event: a\nevent: b\ndata: x\n\n", T_DATA_SIZE, "b|x|;");
    t_case_str("event: a\nevent\ndata: x\n\n", T_DATA_SIZE, "|x|;");
    t_case_str("id: 1\nretry: 5\n\n", T_DATA_SIZE, "");
    t_case_str("data\n\n", T_DATA_SIZE, "||;");
    t_case_str("data:\n\n", T_DATA_SIZE, "||;");
    t_case_str("data\ndata\n\n", T_DATA_SIZE, "|\\n|;");
    t_case_str("data: x\nevent: late\n\n", T_DATA_SIZE, "late|x|;");
    t_end();

    t_begin("fields: colon, one space, no colon, unknown, case");
    t_case_str("data:x\n\n", T_DATA_SIZE, "|x|;");
    t_case_str("data:  x\n\n", T_DATA_SIZE, "| x|;");
    t_case_str("data:\tx\n\n", T_DATA_SIZE, "|\\x09x|;");
    t_case_str("data: a:b: c\n\n", T_DATA_SIZE, "|a:b: c|;");
    t_case_str("data: x \n\n", T_DATA_SIZE, "|x |;");
    t_case_str("Data: x\nDATA: y\n\n", T_DATA_SIZE, "");
    t_case_str("dat: x\ndataa: y\nd: z\n\n", T_DATA_SIZE, "");
    t_case_str("datadata: x\nevents: y\n\n", T_DATA_SIZE, "");
    t_case_str(" data: x\n\n", T_DATA_SIZE, "");
    t_case_str("data : x\n\n", T_DATA_SIZE, "");
    t_case_str("event:x\ndata:y\n\n", T_DATA_SIZE, "x|y|;");
    t_case_str("event:  x\ndata: y\n\n", T_DATA_SIZE, " x|y|;");
    t_case_str("verylongfieldname: x\ndata: y\n\n", T_DATA_SIZE, "|y|;");
    t_case_str("data: a\0b\n\n", T_DATA_SIZE, "|a\\x00b|;");
    t_case_str("data: \xc3\xa9t\xc3\xa9\n\n", T_DATA_SIZE,
               "|\\xc3\\xa9t\\xc3\\xa9|;");
    t_end();

    t_begin("data lines whole in the buffer (the memchr path)");
    t_case_str("data: a\ndata:b\ndata\ndata: c\n\n", T_DATA_SIZE,
               "|a\\nb\\n\\nc|;");
    t_case_str("data: x\rmore\n\n", T_DATA_SIZE, "|x|;");
    t_case_str("data:data: x\n\n", T_DATA_SIZE, "|data: x|;");
    t_case_str("data: \n\ndata:\r\n\r\n", T_DATA_SIZE, "||;||;");
    t_case_str("data: x", T_DATA_SIZE, "|x|F;");
    t_case_str("data:", T_DATA_SIZE, "||F;");
    t_case_str("data: [DONE]\ndata: [DONE]\n\n", T_DATA_SIZE,
               "|[DONE]\\n[DONE]|;");
    t_case_str("\xef\xbb\xbf" "data: x\n\n", T_DATA_SIZE, "|x|;");
    t_case_str("data: 0123456789abcdef\n\n", 8, "|01234567|T;");
    t_case_str("data: 0123\ndata: 4567\n\n", 8, "|0123\\n456|T;");
    t_end();

    t_begin("comments");
    t_case_str(": keep-alive\n\n", T_DATA_SIZE, "");
    t_case_str(":\n:\r\n:\r", T_DATA_SIZE, "");
    t_case_str("data: a\n: note\ndata: b\n\n", T_DATA_SIZE, "|a\\nb|;");
    t_case_str(": data: x\n\n", T_DATA_SIZE, "");
    t_case_str(": a very long comment that goes on and on and on and on\n"
               "data: x\n\n", T_DATA_SIZE, "|x|;");
    t_end();

    t_begin("line ends: LF, CRLF, lone CR and their mixes");
    t_case_str("data: a\r\n\r\n", T_DATA_SIZE, "|a|;");
    t_case_str("data: a\r\r", T_DATA_SIZE, "|a|;");
    t_case_str("data: a\rdata: b\r\ndata: c\n\r\n", T_DATA_SIZE,
               "|a\\nb\\nc|;");
    t_case_str("data: a\r\n\n", T_DATA_SIZE, "|a|;");
    t_case_str("data: a\n\r", T_DATA_SIZE, "|a|;");
    t_case_str("data: a\r\r\n", T_DATA_SIZE, "|a|;");
    t_case_str("data: a\n\r\ndata: b\r\r", T_DATA_SIZE, "|a|;|b|;");
    t_case_str("data: a\r\n\r\r\n", T_DATA_SIZE, "|a|;");
    t_case_str("data\r\r", T_DATA_SIZE, "||;");
    t_case_str("data:\r\n\r\n", T_DATA_SIZE, "||;");
    t_case_str("data: \r\r", T_DATA_SIZE, "||;");
    t_case_str("event: e\rdata: x\r\r", T_DATA_SIZE, "e|x|;");
    t_case_str(":c\r\ndata: x\r\n\r\n", T_DATA_SIZE, "|x|;");
    t_case_str("\r\n\r\ndata: x\n\n", T_DATA_SIZE, "|x|;");

    /*
     * the buffer's first CR is looked for once and remembered across
     * events: CRs after several LF lines, one ending the buffer, a lone
     * CR inside what an LF scan alone would take for one line
     */
    t_case_str("data: a\n\ndata: b\n\ndata: c\rdata: d\r\n\r\n",
               T_DATA_SIZE, "|a|;|b|;|c\\nd|;");
    t_case_str("data: a\n\ndata: b\n\ndata: c\r\r", T_DATA_SIZE,
               "|a|;|b|;|c|;");
    t_case_str("data: x\n\ndata: y\rz\n\n", T_DATA_SIZE, "|x|;|y|;");
    t_case_str("data: x\n\ndata: y\r\rdata: z\n\n", T_DATA_SIZE,
               "|x|;|y|;|z|;");
    t_case_str("data: x\n\n\rdata: y\n\n", T_DATA_SIZE, "|x|;|y|;");
    t_case_str("data: x\n\ndata: y\n\n\r", T_DATA_SIZE, "|x|;|y|;");
    t_case_str("data: x\r\n\r\ndata: y\n\ndata: z\r\r", T_DATA_SIZE,
               "|x|;|y|;|z|;");
    t_case_str("event: e\ndata: x\n\nevent: f\rdata: y\n\n", T_DATA_SIZE,
               "e|x|;f|y|;");
    t_end();

    t_bytes_in_line();

    t_begin("[DONE]");
    t_case_str("data: [DONE]\n\n", T_DATA_SIZE, "|[DONE]|D;");
    t_case_str("data:[DONE]\n\n", T_DATA_SIZE, "|[DONE]|D;");
    t_case_str("data:  [DONE]\n\n", T_DATA_SIZE, "| [DONE]|;");
    t_case_str("data: [DONE] \n\n", T_DATA_SIZE, "|[DONE] |;");
    t_case_str("data: [DONE]x\n\n", T_DATA_SIZE, "|[DONE]x|;");
    t_case_str("data: [DONE\n\n", T_DATA_SIZE, "|[DONE|;");
    t_case_str("data: [done]\n\n", T_DATA_SIZE, "|[done]|;");
    t_case_str("data: [DO\ndata: NE]\n\n", T_DATA_SIZE, "|[DO\\nNE]|;");
    t_case_str("data: [DONE]\ndata: [DONE]\n\n", T_DATA_SIZE,
               "|[DONE]\\n[DONE]|;");
    t_case_str("data\ndata: [DONE]\n\n", T_DATA_SIZE, "|\\n[DONE]|;");
    t_case_str("event: end\ndata: [DONE]\n\n", T_DATA_SIZE,
               "end|[DONE]|D;");
    t_case_str("data: x\n\ndata: [DONE]\n\ndata: y\n\n", T_DATA_SIZE,
               "|x|;|[DONE]|D;|y|;");
    t_case_str("data: [DONE]\r\n\r\n", T_DATA_SIZE, "|[DONE]|D;");
    t_case_str("data: [DONE]", T_DATA_SIZE, "|[DONE]|DF;");
    t_end();

    t_begin("truncation: data past the storage, long event names");
    t_case_str("data: abcdef\n\n", 4, "|abcd|T;");
    t_case_str("data: abcd\n\n", 4, "|abcd|;");
    t_case_str("data: ab\ndata: c\n\n", 4, "|ab\\nc|;");
    t_case_str("data: ab\ndata: cd\n\n", 4, "|ab\\nc|T;");
    t_case_str("data: abcd\ndata\n\n", 4, "|abcd|T;");
    t_case_str("data: abcdef\n\ndata: xy\n\n", 4, "|abcd|T;|xy|;");
    t_case_str("data: abc\n\n", 0, "||T;");
    t_case_str("data\n\n", 0, "||;");
    t_case_str("data: [DONE]\n\n", 6, "|[DONE]|D;");
    t_case_str("data: [DONE]\n\n", 3, "|[DO|DT;");
    t_case_str("data: [DONE]\n\n", 0, "||DT;");
    t_case_str("event: 0123456789012345678901234567890123456789"
               "012345678901234567890123\ndata: x\n\n", T_DATA_SIZE,
               "0123456789012345678901234567890123456789"
               "012345678901234567890123|x|;");
    t_case_str("event: 0123456789012345678901234567890123456789"
               "0123456789012345678901234\ndata: x\n\n", T_DATA_SIZE,
               "0123456789012345678901234567890123456789"
               "012345678901234567890123|x|T;");
    t_case_str("event: 0123456789012345678901234567890123456789"
               "0123456789012345678901234\nevent: short\ndata: x\n\n",
               T_DATA_SIZE, "short|x|;");
    t_case_str("event: 0123456789012345678901234567890123456789"
               "0123456789012345678901234\n\ndata: x\n\n", T_DATA_SIZE,
               "|x|;");
    t_end();

    t_begin("byte order mark");
    t_case_str("\xef\xbb\xbf" "data: x\n\n", T_DATA_SIZE, "|x|;");
    t_case_str("\xef\xbb\xbf" "\n" "data: x\n\n", T_DATA_SIZE, "|x|;");
    t_case_str("\xef\xbb\xbf" ": c\n" "data: x\n\n", T_DATA_SIZE, "|x|;");
    t_case_str("\xef\xbb\xbf", T_DATA_SIZE, "");
    t_case_str("\xef\xbb\xbf" "data", T_DATA_SIZE, "||F;");
    /* only one BOM is skipped; a second one starts an unknown field */
    t_case_str("\xef\xbb\xbf\xef\xbb\xbf" "data: x\n\n", T_DATA_SIZE, "");
    /* a BOM that is not one at all, or not at the start */
    t_case_str("\xef\xbb" "data: x\n\ndata: y\n\n", T_DATA_SIZE, "|y|;");
    t_case_str("\xef" "data: x\n\ndata: y\n\n", T_DATA_SIZE, "|y|;");
    t_case_str("\xef\n" "data: y\n\n", T_DATA_SIZE, "|y|;");
    t_case_str("\xef\xbb\r" "data: y\r\r", T_DATA_SIZE, "|y|;");
    t_case_str("\xef\xbb:\n" "data: y\n\n", T_DATA_SIZE, "|y|;");
    t_case_str("\xef\xbb", T_DATA_SIZE, "");
    t_case_str("data: x\n\n\xef\xbb\xbf" "data: y\n\n", T_DATA_SIZE,
               "|x|;");
    t_end();

    t_begin("end of stream: finish()");
    t_case_str("data: x\n", T_DATA_SIZE, "|x|F;");
    t_case_str("data: x", T_DATA_SIZE, "|x|F;");
    t_case_str("data: x\r", T_DATA_SIZE, "|x|F;");
    t_case_str("data: x\r\n", T_DATA_SIZE, "|x|F;");
    t_case_str("data: x\n\n", T_DATA_SIZE, "|x|;");
    t_case_str("data: x\r\r", T_DATA_SIZE, "|x|;");
    t_case_str("data: x\r\n\r", T_DATA_SIZE, "|x|;");
    t_case_str("data", T_DATA_SIZE, "||F;");
    t_case_str("data:", T_DATA_SIZE, "||F;");
    t_case_str("dat", T_DATA_SIZE, "");
    t_case_str("data: x\nevent: e", T_DATA_SIZE, "e|x|F;");
    t_case_str("data: x\nevent: e\n", T_DATA_SIZE, "e|x|F;");
    t_case_str("data: x\n: trailing comment", T_DATA_SIZE, "|x|F;");
    t_case_str("event: e\n", T_DATA_SIZE, "");
    t_case_str("data: x\n\nevent: e", T_DATA_SIZE, "|x|;");
    t_case_str("data: [DONE]\n", T_DATA_SIZE, "|[DONE]|DF;");
    t_end();
}


/* the API contract on one buffer, step by step */

static void t_one_named(ngx_http_aigw_sse_parser_t *p, const char *what,
    u_char *s, size_t n, ngx_int_t want, const char *event, const char *data);


/*
 * ngx_http_aigw_sse_one(): a whole one-line event at an event's start, or
 * nothing; an LF or CR anywhere in the line, at every offset of lines
 * around the scan's 32- and 64-byte steps, declines it.
 */

static void
t_one_expect(ngx_http_aigw_sse_parser_t *p, const char *what, u_char *s,
    size_t n, ngx_int_t want, const char *data)
{
    t_one_named(p, what, s, n, want, "", data);
}


static void
t_one_named(ngx_http_aigw_sse_parser_t *p, const char *what, u_char *s,
    size_t n, ngx_int_t want, const char *event, const char *data)
{
    u_char                      *piece;
    ngx_int_t                    rc;
    ngx_http_aigw_sse_event_t    ev;
    ngx_http_aigw_sse_parser_t   before;

    piece = t_dup(s, n);
    memcpy(&before, p, sizeof(before));
    memset(&ev, 0xa5, sizeof(ev));

    rc = ngx_http_aigw_sse_one(p, piece, piece + n, &ev);

    if (rc != want || memcmp(&before, p, sizeof(before)) != 0
        || (rc == NGX_OK
            && (ev.data.len != strlen(data)
                || memcmp(ev.data.data, data, ev.data.len) != 0
                || ev.event.len != strlen(event)
                || memcmp(ev.event.data, event, ev.event.len) != 0
                || ev.truncated
                || ev.done != (strcmp(data, "[DONE]") == 0))))
    {
        printf("not ok - sse_one: %s\n", what);
        t_failed++;

    } else {
        t_passed++;
    }

    free(piece);
}


static void
t_one_cases(void)
{
    char                         want[310];
    u_char                      *sbuf, line[400];
    size_t                       len, at, n;
    ngx_uint_t                   i;
    ngx_http_aigw_sse_parser_t   p;

    static struct {
        const char  *what;
        const char  *s;
        ngx_int_t    rc;
        const char  *data;
    } cases[] = {
        { "one line", "data: {\"a\":1}\n\n", NGX_OK, "{\"a\":1}" },
        { "no space", "data:x\n\n", NGX_OK, "x" },
        { "two spaces", "data:  x\n\n", NGX_OK, " x" },
        { "empty", "data:\n\n", NGX_OK, "" },
        { "a space only", "data: \n\n", NGX_OK, "" },
        { "done", "data: [DONE]\n\n", NGX_OK, "[DONE]" },
        { "done cut", "data: [DONE\n\n", NGX_OK, "[DONE" },
        { "crlf", "data: x\r\n\r\n", NGX_DECLINED, NULL },
        { "cr in line", "data: x\ry\n\n", NGX_DECLINED, NULL },
        { "two lines", "data: x\ndata: y\n\n", NGX_DECLINED, NULL },
        { "two events", "data: x\n\ndata: y\n\n", NGX_DECLINED, NULL },
        { "no blank line", "data: x\n", NGX_DECLINED, NULL },
        { "three LFs", "data: x\n\n\n", NGX_DECLINED, NULL },
        { "comment", ": hi\n\n", NGX_DECLINED, NULL },
        { "other field", "datum: x\n\n", NGX_DECLINED, NULL },
        { "short", "data\n\n", NGX_DECLINED, NULL },
        { "a blank line", "\n\n", NGX_DECLINED, NULL },
    };

    static struct {
        const char  *what;
        const char  *s;
        ngx_int_t    rc;
        const char  *event;
        const char  *data;
    } named[] = {
        { "named", "event: ping\ndata: {}\n\n", NGX_OK, "ping", "{}" },
        { "named, no spaces", "event:e\ndata:x\n\n", NGX_OK, "e", "x" },
        { "an empty name", "event:\ndata: x\n\n", NGX_OK, "", "x" },
        { "a name of a space", "event:  \ndata: x\n\n", NGX_OK, " ", "x" },
        { "named, empty data", "event: e\ndata:\n\n", NGX_OK, "e", "" },
        { "named crlf", "event: e\r\ndata: x\r\n\r\n", NGX_DECLINED,
          NULL, NULL },
        { "cr in the name", "event: e\rf\ndata: x\n\n", NGX_DECLINED,
          NULL, NULL },
        { "named, no data", "event: e\n\n", NGX_DECLINED, NULL, NULL },
        { "named, no data line", "event: e\nid: 1\n\n", NGX_DECLINED,
          NULL, NULL },
        { "two names", "event: e\nevent: f\ndata: x\n\n", NGX_DECLINED,
          NULL, NULL },
        { "named, two data lines", "event: e\ndata: x\ndata: y\n\n",
          NGX_DECLINED, NULL, NULL },
        { "data before the name", "data: x\nevent: e\n\n", NGX_DECLINED,
          NULL, NULL },
        { "another e field", "eventful: e\ndata: x\n\n", NGX_DECLINED,
          NULL, NULL },
        { "named, short", "event: e\ndata\n\n", NGX_DECLINED, NULL,
          NULL },
    };

    sbuf = t_alloc(512);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ngx_http_aigw_sse_init(&p, sbuf, 512);
        t_scan_mode(&p);
        p.state = 3;    /* between events, past the stream's start */

        t_one_expect(&p, cases[i].what, (u_char *) cases[i].s,
                     strlen(cases[i].s), cases[i].rc, cases[i].data);
    }

    /* with an "event:" line first, as Anthropic's */

    for (i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        ngx_http_aigw_sse_init(&p, sbuf, 512);
        t_scan_mode(&p);
        p.state = 3;

        t_one_named(&p, named[i].what, (u_char *) named[i].s,
                    strlen(named[i].s), named[i].rc, named[i].event,
                    named[i].data);
    }

    /* a name as long as the parser keeps, and one byte longer */

    memcpy(line, "event: ", 7);
    memset(line + 7, 'n', NGX_HTTP_AIGW_SSE_EVENT_LEN + 1);
    memcpy(line + 7 + NGX_HTTP_AIGW_SSE_EVENT_LEN, "\ndata: x\n\n", 10);
    memset(want, 'n', NGX_HTTP_AIGW_SSE_EVENT_LEN);
    want[NGX_HTTP_AIGW_SSE_EVENT_LEN] = '\0';

    t_one_named(&p, "a name of the parser's room", line,
                7 + NGX_HTTP_AIGW_SSE_EVENT_LEN + 10, NGX_OK, want, "x");

    memcpy(line + 7 + NGX_HTTP_AIGW_SSE_EVENT_LEN + 1, "\ndata: x\n\n", 10);

    t_one_named(&p, "a name over the parser's room", line,
                7 + NGX_HTTP_AIGW_SSE_EVENT_LEN + 11, NGX_DECLINED, NULL,
                NULL);

    /* at the stream's start (a BOM may come) the parser reads it */

    ngx_http_aigw_sse_init(&p, sbuf, 512);
    t_scan_mode(&p);
    t_one_expect(&p, "stream start", (u_char *) "data: x\n\n", 9,
                 NGX_DECLINED, NULL);

    /* within an event: declined */

    p.state = 3;
    p.has_data = 1;
    t_one_expect(&p, "within an event", (u_char *) "data: x\n\n", 9,
                 NGX_DECLINED, NULL);

    p.has_data = 0;
    p.event_len = 1;
    t_one_expect(&p, "after an event name", (u_char *) "data: x\n\n", 9,
                 NGX_DECLINED, NULL);

    /* larger than the storage: the parser truncates it */

    ngx_http_aigw_sse_init(&p, sbuf, 4);
    t_scan_mode(&p);
    p.state = 3;
    t_one_expect(&p, "over the storage", (u_char *) "data: 12345\n\n", 13,
                 NGX_DECLINED, NULL);
    t_one_expect(&p, "the storage's size", (u_char *) "data: 1234\n\n", 12,
                 NGX_OK, "1234");

    /* every length to 300, an LF or a CR at every place of the line */

    for (len = 0; len <= 300; len++) {
        memcpy(line, "data: ", 6);
        memset(line + 6, 'x', len);
        n = 6 + len;
        line[n] = LF;
        line[n + 1] = LF;

        memset(want, 'x', len);
        want[len] = '\0';

        ngx_http_aigw_sse_init(&p, sbuf, 512);
        t_scan_mode(&p);
        p.state = 3;

        t_one_expect(&p, "a clean line", line, n + 2, NGX_OK, want);

        for (at = 6; at < n; at++) {
            line[at] = (at & 1) ? LF : CR;
            t_one_expect(&p, "an LF or CR in the line", line, n + 2,
                         NGX_DECLINED, NULL);
            line[at] = 'x';
        }
    }

    free(sbuf);
}


static void
t_contract(void)
{
    u_char                      buf[64], *pos, *last;
    ngx_int_t                   rc;
    ngx_http_aigw_sse_event_t   ev;
    ngx_http_aigw_sse_parser_t  p;
    static u_char               s[] = "data: a\n\ndata: b\r\n\r\ndata: c\r\r"
                                      "data: d";

    t_begin("API contract: *pos, return codes, storage");

    ngx_http_aigw_sse_init(&p, buf, sizeof(buf));

    pos = s;
    last = s + sizeof(s) - 1;

    rc = ngx_http_aigw_sse_parse(&p, &pos, pos, &ev);
    t_check(rc == NGX_AGAIN && pos == s, "empty buffer: rc %ld",
            (long) rc);

    rc = ngx_http_aigw_sse_parse(&p, &pos, last, &ev);
    t_check(rc == NGX_OK && pos == s + 9, "1st event: rc %ld, pos %ld",
            (long) rc, (long) (pos - s));
    /* a data line whole in the buffer is handed out where it is */
    t_check(ev.data.len == 1 && ev.data.data == s + 6 && *ev.data.data == 'a'
            && ev.event.len == 0 && !ev.done && !ev.truncated,
            "1st event: fields");

    /* the LF of a CRLF blank line goes with the event */
    rc = ngx_http_aigw_sse_parse(&p, &pos, last, &ev);
    t_check(rc == NGX_OK && pos == s + 20, "2nd event: rc %ld, pos %ld",
            (long) rc, (long) (pos - s));
    t_check(ev.data.len == 1 && ev.data.data[0] == 'b', "2nd event: data");

    rc = ngx_http_aigw_sse_parse(&p, &pos, last, &ev);
    t_check(rc == NGX_OK && pos == s + 29, "3rd event: rc %ld, pos %ld",
            (long) rc, (long) (pos - s));
    t_check(ev.data.len == 1 && ev.data.data[0] == 'c', "3rd event: data");

    rc = ngx_http_aigw_sse_parse(&p, &pos, last, &ev);
    t_check(rc == NGX_AGAIN && pos == last, "tail: rc %ld", (long) rc);

    rc = ngx_http_aigw_sse_finish(&p, &ev);
    t_check(rc == NGX_OK && ev.data.len == 1 && ev.data.data[0] == 'd',
            "finish: rc %ld", (long) rc);

    rc = ngx_http_aigw_sse_finish(&p, &ev);
    t_check(rc == NGX_DONE, "finish again: rc %ld", (long) rc);

    /* a CR that ends the buffer leaves its LF to the next call */
    ngx_http_aigw_sse_init(&p, buf, sizeof(buf));
    pos = (u_char *) "data: e\r\n\r\n";
    last = pos + 10;
    rc = ngx_http_aigw_sse_parse(&p, &pos, last, &ev);
    t_check(rc == NGX_OK && pos == last && ev.data.data[0] == 'e',
            "CR at the end of the buffer: rc %ld", (long) rc);
    last++;
    rc = ngx_http_aigw_sse_parse(&p, &pos, last, &ev);
    t_check(rc == NGX_AGAIN && pos == last, "its LF: rc %ld", (long) rc);
    rc = ngx_http_aigw_sse_finish(&p, &ev);
    t_check(rc == NGX_DONE, "nothing after it: rc %ld", (long) rc);

    /* a fresh parser on an empty stream has nothing to finish */
    ngx_http_aigw_sse_init(&p, NULL, 0);
    rc = ngx_http_aigw_sse_finish(&p, &ev);
    t_check(rc == NGX_DONE, "finish of nothing: rc %ld", (long) rc);

    /* the event name lives in the parser, untouched until the next call */
    ngx_http_aigw_sse_init(&p, buf, sizeof(buf));
    pos = (u_char *) "event: message_delta\ndata: {}\n\n";
    last = pos + 31;
    rc = ngx_http_aigw_sse_parse(&p, &pos, last, &ev);
    t_check(rc == NGX_OK && ev.event.len == 13
            && ngx_strncmp(ev.event.data, "message_delta", 13) == 0
            && ev.data.len == 2 && pos == last, "event name");

    t_end();
}


/* random streams from SSE-ish tokens, checked against the model */

static void
t_fuzz(void)
{
    u_char       s[1024];
    const char  *tok;
    size_t       n, len, sizes[] = { 0, 1, 5, 6, 7, 16, T_DATA_SIZE };
    uint64_t     seed;
    ngx_uint_t   i, k, ntokens;
    t_result_t   r, model;
    t_split_t    whole = { t_whole, 0, 0, 0 };
    static const char  *tokens[] = {
        "data", "data:", "data: ", "event", "event:", "event: ", "id: 7",
        "retry: 10", ":", " ", "\r", "\n", "\r\n", "\n\n", "\r\r",
        "[DONE]", "[DO", "NE]", "x", "hello", "\xef\xbb\xbf", "\xef",
        ": keep-alive", "dat", "a", "e", "ping", "data: [DONE]\n\n",
        "event: content_block_delta\n",
        ("eventeventeventeventeventeventevent"
         "eventeventeventeventeventeventevent"),
        ("event: 0123456789012345678901234567890123456789"
         "0123456789012345678901234567890123456789\n")
    };

    t_begin("random token streams against the spec model");

    ntokens = sizeof(tokens) / sizeof(tokens[0]);
    seed = 0xa16e5eed;

    for (i = 0; i < 3000; i++) {
        n = 0;

        for (k = t_rand(&seed) % 40; k; k--) {
            tok = tokens[t_rand(&seed) % ntokens];

            len = strlen(tok);

            if (n + len > sizeof(s)) {
                break;
            }

            ngx_memcpy(s + n, tok, len);
            n += len;
        }

        ngx_memzero(&r, sizeof(t_result_t));
        ngx_memzero(&model, sizeof(t_result_t));

        k = sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];

        t_parse(s, n, k, &whole, &r);
        t_model(s, n, k, &model);

        if (t_same(&r, &model, "random stream against the model")) {
            t_every_way("random stream", s, n, k, &r, 4, 1);
        }

        t_free(&r);
        t_free(&model);
    }

    t_end();
}


static double
t_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


/*
 * Large streams in nginx-sized buffers.  Nothing is timed against a limit,
 * but a scan that went quadratic (a lone-CR stream rescanned for LF on
 * every line) would not finish here.
 */

static void
t_big_one(const char *what, u_char *s, size_t n, size_t piece,
    ngx_uint_t want_events, ngx_uint_t want_done)
{
    u_char                      *buf, *pos, *last;
    size_t                       off;
    double                       t;
    ngx_int_t                    rc;
    ngx_uint_t                   events, done;
    ngx_http_aigw_sse_event_t    ev;
    ngx_http_aigw_sse_parser_t   p;

    buf = t_alloc(T_DATA_SIZE);
    ngx_http_aigw_sse_init(&p, buf, T_DATA_SIZE);
    t_scan_mode(&p);

    events = 0;
    done = 0;
    t = t_now();

    for (off = 0; off < n; off += piece) {
        pos = s + off;
        last = s + ngx_min(n, off + piece);

        while ((rc = ngx_http_aigw_sse_parse(&p, &pos, last, &ev)) == NGX_OK)
        {
            events++;
            done += ev.done;
        }
    }

    while (ngx_http_aigw_sse_finish(&p, &ev) == NGX_OK) {
        events++;
        done += ev.done;
    }

    t = t_now() - t;

    t_check(events == want_events && done == want_done,
            "%s: %lu events, %lu [DONE], want %lu and %lu", what,
            (unsigned long) events, (unsigned long) done,
            (unsigned long) want_events, (unsigned long) want_done);

    printf("#   %s: %lu MB in %lu KB pieces, %lu events, %.0f MB/s\n", what,
           (unsigned long) (n >> 20), (unsigned long) (piece >> 10),
           (unsigned long) events, t > 0 ? (n / 1048576.0) / t : 0.0);

    free(buf);
}


static void
t_big(const char *dir)
{
    u_char      *s, *f, *w;
    size_t       n, fn, i, reps;

    t_begin("large streams, linear time");

    n = 32 * 1024 * 1024;
    s = t_alloc(n);

    f = t_read(dir, "openai_chat.sse", &fn);

    if (t_check(f != NULL, "cannot read openai_chat.sse")) {
        reps = n / fn;

        for (i = 0, w = s; i < reps; i++) {
            w = ngx_cpymem(w, f, fn);
        }

        t_big_one("OpenAI stream", s, reps * fn, 16384, reps * 11, reps);
        free(f);
    }

    /* lone CRs only, and no LF anywhere: the worst case for the scan */
    for (i = 0, w = s; i + 10 <= n; i += 10) {
        w = ngx_cpymem(w, "data: xy\r\r", 10);
    }

    t_big_one("lone CR lines, one buffer", s, w - s, w - s, n / 10, 0);

    /* data lines of 1 MB, cut to the storage */
    for (i = 0, w = s; i + 1048576 <= n; i += 1048576) {
        w = ngx_cpymem(w, "data: ", 6);
        ngx_memset(w, 'z', 1048576 - 8);
        w += 1048576 - 8;
        *w++ = '\n';
        *w++ = '\n';
    }

    t_big_one("1 MB data lines", s, w - s, 65536, n / 1048576, 0);

    free(s);
    t_end();
}


int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <fixture directory>\n", argv[0]);
        return 2;
    }

    setvbuf(stdout, NULL, _IOLBF, 0);

    t_contract();

    for (t_scalar = 0; t_scalar < 2; t_scalar++) {
        for (t_one = 0; t_one < 2; t_one++) {
            printf("# line ends found by %s%s\n",
                   t_scalar ? "memchr()" : "the parser's default scan",
                   t_one ? ", whole events by sse_one()" : "");

            t_one_cases();
            t_cases();
            t_fixtures(argv[1]);
            t_fuzz();
            t_big(argv[1]);
        }
    }

    printf("%lu passed, %lu failed\n", (unsigned long) t_passed,
           (unsigned long) t_failed);

    return t_failed ? 1 : 0;
}
