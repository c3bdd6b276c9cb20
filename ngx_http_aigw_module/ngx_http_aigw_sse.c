
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_http_aigw_sse.h"


/*
 * Only macros and inline code from the nginx headers are used here, never
 * nginx's object code, so that t/unit/test_sse.c can build this file alone.
 */


/*
 * x86-64 with GCC or clang: a line's end (LF or CR, whichever comes
 * first) found in one pass of 32-byte compares, where two memchr() calls
 * would read the line twice; chosen at run time, by the CPU.
 */

#if (defined __x86_64__ && defined __GNUC__                                  \
     && !defined NGX_HTTP_AIGW_SSE_NO_AVX2)
#define NGX_HTTP_AIGW_SSE_AVX2  1
#include <immintrin.h>
#endif


#define NGX_HTTP_AIGW_SSE_IGNORE  0
#define NGX_HTTP_AIGW_SSE_DATA    1
#define NGX_HTTP_AIGW_SSE_EVENT   2


static ngx_inline u_char *ngx_http_aigw_sse_eol(ngx_http_aigw_sse_parser_t *p,
    u_char *s, u_char *last);
#if (NGX_HTTP_AIGW_SSE_AVX2)
static u_char *ngx_http_aigw_sse_eol_avx2(u_char *s, u_char *last);
static ngx_int_t ngx_http_aigw_sse_clean_avx2(u_char *s, u_char *last);
#endif
static ngx_int_t ngx_http_aigw_sse_clean_scan(ngx_http_aigw_sse_parser_t *p,
    u_char *s, u_char *last) NGX_HTTP_AIGW_OUT_OF_LINE;
static void ngx_http_aigw_sse_field(ngx_http_aigw_sse_parser_t *p);
static void ngx_http_aigw_sse_value(ngx_http_aigw_sse_parser_t *p, u_char *s,
    size_t n);
static void ngx_http_aigw_sse_data(ngx_http_aigw_sse_parser_t *p, u_char *s,
    size_t n);
static void ngx_http_aigw_sse_done_match(ngx_http_aigw_sse_parser_t *p,
    u_char *s, size_t n);
static void ngx_http_aigw_sse_keep(ngx_http_aigw_sse_parser_t *p);
static ngx_int_t ngx_http_aigw_sse_dispatch(ngx_http_aigw_sse_parser_t *p,
    ngx_http_aigw_sse_event_t *ev);


static u_char  ngx_http_aigw_sse_done[] = "[DONE]";
static u_char  ngx_http_aigw_sse_eof[] = "\n\n";


void
ngx_http_aigw_sse_init(ngx_http_aigw_sse_parser_t *p, u_char *buf,
    size_t size)
{
    ngx_memzero(p, sizeof(ngx_http_aigw_sse_parser_t));

    p->data = buf;
    p->size = size;
    p->maybe_done = 1;

#if (NGX_HTTP_AIGW_SSE_AVX2)
    __builtin_cpu_init();
    p->avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
#endif
}


/*
 * Nothing of a buffer is left pending in the parser when a call returns
 * (a data line left in place, p->direct, is kept or dispatched first):
 * a call with *pos == last changes nothing, which the inline
 * ngx_http_aigw_sse_parse() relies on.
 */

ngx_int_t
ngx_http_aigw_sse_parse_bytes(ngx_http_aigw_sse_parser_t *p, u_char **pos,
    u_char *last, ngx_http_aigw_sse_event_t *ev)
{
    u_char      ch, *s, *e;
    ngx_uint_t  first;
    enum {
        sw_start = 0,
        sw_bom1,
        sw_bom2,
        sw_line,
        sw_cr,
        sw_field,
        sw_space,
        sw_value
    } state;

    state = p->state;
    s = *pos;

    /*
     * The event of nearly every stream, one data line and the blank line
     * whole in the buffer, at an event's start: dispatched here as the
     * loop below would, in fewer steps.  If it is not (the event goes on
     * in the next buffer, ...), the loop reads the line again.
     */

    if (state == sw_line && !p->has_data && p->event_len == 0
        && last - s > 5 && ngx_memcmp(s, "data:", 5) == 0)
    {
        s += 5;

        if (*s == ' ') {
            s++;
        }

        e = ngx_http_aigw_sse_eol(p, s, last);

        if (last - e >= 2 && e[0] == LF && e[1] == LF
            && (size_t) (e - s) <= p->size)
        {
            ev->event.data = p->event;
            ev->event.len = 0;
            ev->data.data = s;
            ev->data.len = e - s;
            ev->done = (e - s == sizeof(ngx_http_aigw_sse_done) - 1
                        && ngx_memcmp(s, ngx_http_aigw_sse_done,
                                      sizeof(ngx_http_aigw_sse_done) - 1)
                           == 0);
            ev->truncated = 0;

            *pos = e + 2;
            return NGX_OK;
        }

        s = *pos;
    }

    for ( /* void */ ; s < last; s++) {
        ch = *s;

        switch (state) {

        /* a UTF-8 byte order mark is skipped once, at the stream start */
        case sw_start:
            if (ch == 0xef) {
                state = sw_bom1;
                break;
            }

            state = sw_line;
            goto line;

        case sw_bom1:
        case sw_bom2:
            if (ch == ((state == sw_bom1) ? 0xbb : 0xbf)) {
                state = (state == sw_bom1) ? sw_bom2 : sw_line;
                break;
            }

            /* not a BOM after all: the bytes seen begin an unknown field */
            p->name_len = sizeof(p->name) + 1;
            state = sw_field;

            /* fall through */

        case sw_field:
            switch (ch) {

            case ':':
                ngx_http_aigw_sse_field(p);
                state = sw_space;
                break;

            case CR:
            case LF:
                /* a field with no colon has an empty value */
                ngx_http_aigw_sse_field(p);
                state = (ch == CR) ? sw_cr : sw_line;
                break;

            default:
                /* a name longer than "event" only needs to be known as such */
                if (p->name_len < sizeof(p->name)) {
                    p->name[p->name_len] = ch;
                }

                if (p->name_len <= sizeof(p->name)) {
                    p->name_len++;
                }

                break;
            }

            break;

        /* an LF right after a CR belongs to the same line end */
        case sw_cr:
            state = sw_line;

            if (ch == LF) {
                break;
            }

            /* lines end in lone CRs here: ngx_http_aigw_sse_eol() */
            p->lone_cr = 1;

            /* fall through */

        case sw_line:
        line:

            /*
             * "data:" whole in the buffer, the line of nearly every event:
             * no byte-at-a-time field name, the value found with memchr()
             * and copied in one go
             */

            if (ch == 'd' && last - s > 5
                && ngx_memcmp(s + 1, "ata:", 4) == 0)
            {
                first = !p->has_data;

                /* as ngx_http_aigw_sse_field() does for "data" */
                if (p->has_data) {
                    ngx_http_aigw_sse_data(p, (u_char *) "\n", 1);
                }

                p->has_data = 1;
                p->field = NGX_HTTP_AIGW_SSE_DATA;

                s += 5;

                if (*s == ' ') {
                    s++;
                }

                e = ngx_http_aigw_sse_eol(p, s, last);

                /*
                 * the event's first data line, whole here: left where it
                 * is, copied only if the event goes on past this buffer
                 */

                if (first && e != last && (size_t) (e - s) <= p->size) {
                    ngx_http_aigw_sse_done_match(p, s, e - s);
                    p->direct = s;
                    p->direct_len = e - s;

                } else {
                    ngx_http_aigw_sse_data(p, s, e - s);
                }

                if (e == last) {
                    state = sw_value;
                    goto again;
                }

                s = e;
                state = (*e == CR) ? sw_cr : sw_line;
                break;
            }

            switch (ch) {

            case CR:
            case LF:
                state = (ch == CR) ? sw_cr : sw_line;

                /* a blank line dispatches the event, if it has data */
                if (ngx_http_aigw_sse_dispatch(p, ev) == NGX_OK) {

                    /*
                     * the LF of a CRLF at hand goes with the event, so
                     * that a filter cutting the stream at *pos cuts
                     * between two events
                     */
                    if (ch == CR && s + 1 < last && s[1] == LF) {
                        state = sw_line;
                        s++;
                    }

                    p->state = state;
                    *pos = s + 1;
                    return NGX_OK;
                }

                break;

            case ':':
                /* a comment, skipped like the value of an unknown field */
                p->field = NGX_HTTP_AIGW_SSE_IGNORE;
                state = sw_value;
                break;

            default:
                p->name[0] = ch;
                p->name_len = 1;
                state = sw_field;
                break;
            }

            break;

        /* one space after the colon is not part of the value */
        case sw_space:
            state = sw_value;

            if (ch == ' ') {
                break;
            }

            /* fall through */

        case sw_value:
            e = ngx_http_aigw_sse_eol(p, s, last);

            ngx_http_aigw_sse_value(p, s, e - s);

            if (e == last) {
                /* the line goes on in the next buffer */
                goto again;
            }

            s = e;
            state = (*e == CR) ? sw_cr : sw_line;
            break;
        }
    }

again:

    /* the buffer goes away: a data line left in it is kept now */

    if (p->direct) {
        ngx_http_aigw_sse_keep(p);
    }

    p->state = state;
    *pos = last;

    return NGX_AGAIN;
}


/*
 * "event:[ ]NAME\n", then the data line: the name whole in the buffer,
 * no longer than the parser keeps (a longer one is truncated there)
 */

ngx_int_t
ngx_http_aigw_sse_one_event(ngx_http_aigw_sse_parser_t *p, u_char *pos,
    u_char *last, ngx_http_aigw_sse_event_t *ev)
{
    u_char  *s, *n;

    if (last - pos < 6 + 7 || ngx_memcmp(pos, "event:", 6) != 0) {
        return NGX_DECLINED;
    }

    s = pos + 6;

    if (*s == ' ') {
        s++;
    }

    for (n = s; n < last && *n != LF && *n != CR; n++) {
        if (n - s == NGX_HTTP_AIGW_SSE_EVENT_LEN) {
            return NGX_DECLINED;
        }
    }

    if (n == last || *n != LF) {
        return NGX_DECLINED;
    }

    ev->event.data = s;
    ev->event.len = n - s;

    return ngx_http_aigw_sse_one_data(p, n + 1, last, ev);
}


ngx_int_t
ngx_http_aigw_sse_clean(ngx_http_aigw_sse_parser_t *p, u_char *s,
    u_char *last)
{
#if (NGX_HTTP_AIGW_SSE_AVX2)

    if (p->avx2) {
        return ngx_http_aigw_sse_clean_avx2(s, last);
    }

#endif

    return ngx_http_aigw_sse_clean_scan(p, s, last);
}


/* out of line: the AVX2 path above is then a jump, with no stack frame */

static ngx_int_t
ngx_http_aigw_sse_clean_scan(ngx_http_aigw_sse_parser_t *p, u_char *s,
    u_char *last)
{
    return (ngx_http_aigw_sse_eol(p, s, last) == last) ? NGX_OK
                                                        : NGX_DECLINED;
}


ngx_int_t
ngx_http_aigw_sse_finish(ngx_http_aigw_sse_parser_t *p,
    ngx_http_aigw_sse_event_t *ev)
{
    u_char  *pos;

    /*
     * The end of the stream ends the line in progress and then the event,
     * as "\n\n" would: after a CR the first LF only completes a CRLF, and
     * the second one is the blank line.  Once the event is out, a second
     * call finds nothing pending.
     */

    pos = ngx_http_aigw_sse_eof;

    if (ngx_http_aigw_sse_parse(p, &pos, pos + 2, ev) == NGX_OK) {
        return NGX_OK;
    }

    return NGX_DONE;
}


/*
 * Whether the bytes so far end at the start of a line (the parser's
 * sw_start, 0, or sw_line, 3) with no field of an event seen since the
 * last blank line: what follows then starts an event of its own.
 */

ngx_uint_t
ngx_http_aigw_sse_between(ngx_http_aigw_sse_parser_t *p)
{
    return (p->state == 0 || p->state == 3)
           && !p->has_data && p->event_len == 0;
}


static ngx_inline u_char *
ngx_http_aigw_sse_eol(ngx_http_aigw_sse_parser_t *p, u_char *s, u_char *last)
{
    u_char  *lf, *cr;

    /*
     * With AVX2, one pass finds the first LF or CR, whatever the line
     * ends.  Else: lines end in LF or CRLF in practice, and memchr() is
     * the fastest scan at hand: the LF first, then a CR before it.  Where
     * lines end in lone CRs, the LF scan would run past every line end to
     * the next LF or to the end of the buffer, on every line; such a
     * stream gets the plain byte loop, which is linear whatever the line
     * ends.
     */

#if (NGX_HTTP_AIGW_SSE_AVX2)

    if (p->avx2) {
        return ngx_http_aigw_sse_eol_avx2(s, last);
    }

#endif

    if (p->lone_cr) {
        while (s < last && *s != CR && *s != LF) {
            s++;
        }

        return s;
    }

    lf = memchr(s, LF, last - s);

    if (lf == NULL) {
        lf = last;
    }

    cr = memchr(s, CR, lf - s);

    return (cr != NULL) ? cr : lf;
}


#if (NGX_HTTP_AIGW_SSE_AVX2)

/*
 * The first LF or CR of [s, last), or last: 64 bytes a step, then 32,
 * the last step ending at last; less than 32 bytes, byte by byte.  Every
 * load is inside [s, last).  A byte is LF or CR when it equals the entry
 * of a 16-byte table its low 4 bits pick (LF at 0x0a, CR at 0x0d, 0x80
 * elsewhere, which no byte without its high bit equals, and a byte with
 * it picks 0): one shuffle and one compare for two characters.
 */

__attribute__((target("avx2")))
static u_char *
ngx_http_aigw_sse_eol_avx2(u_char *s, u_char *last)
{
    u_char    *start;
    uint32_t   m;
    __m256i    t, a, b;

    start = s;

    t = _mm256_setr_epi8(-128, -128, -128, -128, -128, -128, -128, -128,
                         -128, -128, LF, -128, -128, CR, -128, -128,
                         -128, -128, -128, -128, -128, -128, -128, -128,
                         -128, -128, LF, -128, -128, CR, -128, -128);

    while (last - s >= 64) {
        a = _mm256_loadu_si256((const __m256i_u *) s);
        b = _mm256_loadu_si256((const __m256i_u *) (s + 32));

        a = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(t, a), a);
        b = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(t, b), b);

        m = (uint32_t) _mm256_movemask_epi8(_mm256_or_si256(a, b));

        if (m) {
            m = (uint32_t) _mm256_movemask_epi8(a);

            if (m) {
                return s + __builtin_ctz(m);
            }

            m = (uint32_t) _mm256_movemask_epi8(b);

            return s + 32 + __builtin_ctz(m);
        }

        s += 64;
    }

    if (last - start < 32) {
        while (s < last && *s != LF && *s != CR) {
            s++;
        }

        return s;
    }

    while (s < last) {

        /*
         * the last 32 bytes once s is within them: those before s are of
         * the line, known to be neither LF nor CR
         */

        if (last - s < 32) {
            s = last - 32;
        }

        a = _mm256_loadu_si256((const __m256i_u *) s);
        a = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(t, a), a);

        m = (uint32_t) _mm256_movemask_epi8(a);

        if (m) {
            return s + __builtin_ctz(m);
        }

        s += 32;
    }

    return last;
}


/*
 * NGX_OK if [s, last) holds no LF and no CR, else NGX_DECLINED: the
 * same compares as above, 128 bytes a step, the four results or'ed and
 * looked at once a step (where is not needed); the 32-byte steps of the
 * rest or'ed and looked at once at the end.  The last 32 bytes are read
 * from last - 32, again over bytes read before if need be.
 */

__attribute__((target("avx2")))
static ngx_int_t
ngx_http_aigw_sse_clean_avx2(u_char *s, u_char *last)
{
    __m256i  t, a, b, c, d, acc;

    if (last - s < 32) {
        while (s < last) {
            if (*s == LF || *s == CR) {
                return NGX_DECLINED;
            }

            s++;
        }

        return NGX_OK;
    }

    t = _mm256_setr_epi8(-128, -128, -128, -128, -128, -128, -128, -128,
                         -128, -128, LF, -128, -128, CR, -128, -128,
                         -128, -128, -128, -128, -128, -128, -128, -128,
                         -128, -128, LF, -128, -128, CR, -128, -128);

    acc = _mm256_setzero_si256();

    while (last - s > 128) {
        a = _mm256_loadu_si256((const __m256i_u *) s);
        b = _mm256_loadu_si256((const __m256i_u *) (s + 32));
        c = _mm256_loadu_si256((const __m256i_u *) (s + 64));
        d = _mm256_loadu_si256((const __m256i_u *) (s + 96));

        a = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(t, a), a);
        b = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(t, b), b);
        c = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(t, c), c);
        d = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(t, d), d);

        a = _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d));

        /* several events in a read: the first line's end is found soon */

        if (!_mm256_testz_si256(a, a)) {
            return NGX_DECLINED;
        }

        s += 128;
    }

    while (last - s > 32) {
        a = _mm256_loadu_si256((const __m256i_u *) s);
        a = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(t, a), a);
        acc = _mm256_or_si256(acc, a);

        s += 32;
    }

    a = _mm256_loadu_si256((const __m256i_u *) (last - 32));
    a = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(t, a), a);
    acc = _mm256_or_si256(acc, a);

    return (_mm256_movemask_epi8(acc) == 0) ? NGX_OK : NGX_DECLINED;
}

#endif


static void
ngx_http_aigw_sse_field(ngx_http_aigw_sse_parser_t *p)
{
    if (p->name_len == 4 && ngx_strncmp(p->name, "data", 4) == 0) {

        /* the data lines of one event are joined by LF */
        if (p->has_data) {
            ngx_http_aigw_sse_data(p, (u_char *) "\n", 1);
        }

        p->has_data = 1;
        p->field = NGX_HTTP_AIGW_SSE_DATA;
        return;
    }

    if (p->name_len == 5 && ngx_strncmp(p->name, "event", 5) == 0) {

        /* the last "event:" line of an event wins */
        p->event_len = 0;
        p->event_truncated = 0;
        p->field = NGX_HTTP_AIGW_SSE_EVENT;
        return;
    }

    /* "id", "retry" and unknown fields do not matter to metering */
    p->field = NGX_HTTP_AIGW_SSE_IGNORE;
}


static void
ngx_http_aigw_sse_value(ngx_http_aigw_sse_parser_t *p, u_char *s, size_t n)
{
    size_t  room;

    switch (p->field) {

    case NGX_HTTP_AIGW_SSE_DATA:
        ngx_http_aigw_sse_data(p, s, n);
        break;

    case NGX_HTTP_AIGW_SSE_EVENT:
        room = NGX_HTTP_AIGW_SSE_EVENT_LEN - p->event_len;

        if (n > room) {
            n = room;
            p->event_truncated = 1;
        }

        ngx_memcpy(p->event + p->event_len, s, n);
        p->event_len += n;
        break;

    default: /* NGX_HTTP_AIGW_SSE_IGNORE */
        break;
    }
}


static void
ngx_http_aigw_sse_data(ngx_http_aigw_sse_parser_t *p, u_char *s, size_t n)
{
    size_t  room;

    if (p->direct) {
        ngx_http_aigw_sse_keep(p);
    }

    ngx_http_aigw_sse_done_match(p, s, n);

    room = p->size - p->len;

    if (n > room) {
        n = room;
        p->data_truncated = 1;
    }

    if (n) {
        ngx_memcpy(p->data + p->len, s, n);
        p->len += n;
    }
}


/* "[DONE]" is matched on the data as sent, whatever the storage size */

static void
ngx_http_aigw_sse_done_match(ngx_http_aigw_sse_parser_t *p, u_char *s,
    size_t n)
{
    if (p->maybe_done) {
        if (n > sizeof(ngx_http_aigw_sse_done) - 1 - p->done_len
            || ngx_memcmp(s, ngx_http_aigw_sse_done + p->done_len, n) != 0)
        {
            p->maybe_done = 0;

        } else {
            p->done_len += n;
        }
    }
}


/* the data line left in the caller's buffer, into the storage it fits */

static void
ngx_http_aigw_sse_keep(ngx_http_aigw_sse_parser_t *p)
{
    if (p->direct_len) {
        ngx_memcpy(p->data, p->direct, p->direct_len);
    }

    p->len = p->direct_len;
    p->direct = NULL;
}


static ngx_int_t
ngx_http_aigw_sse_dispatch(ngx_http_aigw_sse_parser_t *p,
    ngx_http_aigw_sse_event_t *ev)
{
    ngx_int_t  rc;

    /* an event without a single data line is not dispatched (spec) */

    if (p->has_data) {
        ev->event.data = p->event;
        ev->event.len = p->event_len;
        if (p->direct) {
            ev->data.data = p->direct;
            ev->data.len = p->direct_len;

        } else {
            ev->data.data = p->data;
            ev->data.len = p->len;
        }
        ev->done = (p->maybe_done
                    && p->done_len == sizeof(ngx_http_aigw_sse_done) - 1);
        ev->truncated = (p->data_truncated || p->event_truncated);

        rc = NGX_OK;

    } else {
        rc = NGX_DECLINED;
    }

    /* the bytes stay in place for *ev until the next call */

    p->len = 0;
    p->direct = NULL;
    p->event_len = 0;
    p->done_len = 0;
    p->has_data = 0;
    p->maybe_done = 1;
    p->data_truncated = 0;
    p->event_truncated = 0;

    return rc;
}
