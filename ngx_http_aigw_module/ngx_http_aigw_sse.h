
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_SSE_H_INCLUDED_
#define _NGX_HTTP_AIGW_SSE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * Incremental Server-Sent Events parser (WHATWG HTML, "Server-sent events",
 * "Interpreting an event stream").  It only observes the stream: it never
 * allocates, never fails and never changes a byte; buffers may be split
 * anywhere.  Lines end in LF, CRLF or a lone CR; one UTF-8 BOM is skipped
 * at the stream start.  Bytes are not otherwise UTF-8 decoded: an invalid
 * sequence simply passes through inside a value.
 *
 * Deliberate differences from the spec, both for metering:
 *  - data that does not fit the caller's buffer is dropped and the event is
 *    flagged "truncated", instead of being kept whole;
 *  - ngx_http_aigw_sse_finish() hands out an event the stream left without
 *    its final blank line, where a browser would discard it.
 */


/*
 * For a function of the rare events next to a stream's per-event code:
 * kept out of line, it leaves the hot caller without the stack frame
 * (saved registers, stack protector) it would need
 */

#if (defined __GNUC__)
#define NGX_HTTP_AIGW_OUT_OF_LINE  __attribute__((noinline))
#else
#define NGX_HTTP_AIGW_OUT_OF_LINE
#endif


/* "content_block_delta" is the longest name a provider sends today */
#define NGX_HTTP_AIGW_SSE_EVENT_LEN  64


typedef struct {
    ngx_str_t             event;        /* value of "event:", empty if none */
    ngx_str_t             data;         /* data lines joined by "\n" */
    unsigned              done:1;       /* data is exactly "[DONE]" */
                                        /* (as sent, even if cut here) */
    unsigned              truncated:1;  /* data or event name was cut */
} ngx_http_aigw_sse_event_t;


typedef struct {
    ngx_uint_t            state;

    /* the event being collected: data in the caller's storage */
    u_char               *data;
    size_t                size;
    size_t                len;

    /* or its one data line, where it is in the buffer being parsed */
    u_char               *direct;
    size_t                direct_len;

    u_char                event[NGX_HTTP_AIGW_SSE_EVENT_LEN];
    size_t                event_len;

    /* the current line's field name, kept only as long as "event" */
    u_char                name[5];
    ngx_uint_t            name_len;
    ngx_uint_t            field;

    /* bytes of "[DONE]" the data has matched so far */
    ngx_uint_t            done_len;

    unsigned              has_data:1;
    unsigned              maybe_done:1;
    unsigned              data_truncated:1;
    unsigned              event_truncated:1;
    unsigned              lone_cr:1;
    unsigned              avx2:1;       /* the CPU has it: one-pass scan */
} ngx_http_aigw_sse_parser_t;


void ngx_http_aigw_sse_init(ngx_http_aigw_sse_parser_t *p, u_char *buf,
    size_t size);

/*
 * NGX_OK: one event complete, *ev filled (pointing into the parser's
 * storage or, for an event whose one data line is whole in [*pos, last),
 * into that buffer; valid until the next call), *pos advanced past the
 * bytes used;
 * NGX_AGAIN: all of [*pos, last) consumed, no event complete yet.
 *
 * After NGX_OK, *pos is just past the blank line that ended the event,
 * its CRLF included, unless the CR is the last byte of the buffer: that
 * LF is then the first byte used by the next call.
 */
ngx_int_t ngx_http_aigw_sse_parse_bytes(ngx_http_aigw_sse_parser_t *p,
    u_char **pos, u_char *last, ngx_http_aigw_sse_event_t *ev);

/*
 * A buffer used up is the end of nearly every event's loop of calls: it
 * costs no call (nothing is pending across calls, see the parser)
 */

static ngx_inline ngx_int_t
ngx_http_aigw_sse_parse(ngx_http_aigw_sse_parser_t *p, u_char **pos,
    u_char *last, ngx_http_aigw_sse_event_t *ev)
{
    if (*pos == last) {
        return NGX_AGAIN;
    }

    return ngx_http_aigw_sse_parse_bytes(p, pos, last, ev);
}

/* NGX_OK if [s, last) holds no LF and no CR, else NGX_DECLINED */
ngx_int_t ngx_http_aigw_sse_clean(ngx_http_aigw_sse_parser_t *p, u_char *s,
    u_char *last);

/* the read that is one whole event, after its "event:" line (sse.c) */
ngx_int_t ngx_http_aigw_sse_one_event(ngx_http_aigw_sse_parser_t *p,
    u_char *pos, u_char *last, ngx_http_aigw_sse_event_t *ev);


/* the data line and the blank line of ngx_http_aigw_sse_one() */

static ngx_inline ngx_int_t
ngx_http_aigw_sse_one_data(ngx_http_aigw_sse_parser_t *p, u_char *pos,
    u_char *last, ngx_http_aigw_sse_event_t *ev)
{
    u_char  *s, *e;

    if (last - pos < 7 || ngx_memcmp(pos, "data:", 5) != 0) {
        return NGX_DECLINED;
    }

    s = pos + 5;
    e = last - 2;

    if (s < e && *s == ' ') {
        s++;
    }

    if ((size_t) (e - s) > p->size) {
        return NGX_DECLINED;
    }

    /* filled before it is known to be one: the scan is then a tail call */

    ev->data.data = s;
    ev->data.len = e - s;
    ev->done = (e - s == 6 && ngx_memcmp(s, "[DONE]", 6) == 0);
    ev->truncated = 0;

    /* the line ends at e, the blank line after it, if no LF or CR before */

    return ngx_http_aigw_sse_clean(p, s, e);
}


/*
 * The event of nearly every read of a paced stream: [pos, last) is one
 * whole event of one data line, "data:[ ]X\n\n", or of an "event:" line
 * and one data line, as Anthropic sends them, and the parser is between
 * events (its sw_line, 3, nothing of an event seen).  NGX_OK: *ev filled
 * as ngx_http_aigw_sse_parse() would (the event's name may point into
 * the buffer, as its data does), the parser left as it would leave it;
 * NGX_DECLINED: anything else, the parser unchanged (not *ev), the bytes
 * are for ngx_http_aigw_sse_parse().  Inline: a few compares, then the
 * line's scan.
 */

static ngx_inline ngx_int_t
ngx_http_aigw_sse_one(ngx_http_aigw_sse_parser_t *p, u_char *pos,
    u_char *last, ngx_http_aigw_sse_event_t *ev)
{
    if (p->state != 3 || p->has_data || p->event_len
        || last - pos < 7 || last[-1] != LF || last[-2] != LF)
    {
        return NGX_DECLINED;
    }

    if (*pos == 'e') {
        return ngx_http_aigw_sse_one_event(p, pos, last, ev);
    }

    ev->event.data = p->event;
    ev->event.len = 0;

    return ngx_http_aigw_sse_one_data(p, pos, last, ev);
}


/*
 * End of stream: returns NGX_OK with a pending event if the stream ended
 * without the final blank line (so the caller can still meter it), else
 * NGX_DONE.
 */
ngx_int_t ngx_http_aigw_sse_finish(ngx_http_aigw_sse_parser_t *p,
    ngx_http_aigw_sse_event_t *ev);


/* 1 when the stream so far ends where an event may start */
ngx_uint_t ngx_http_aigw_sse_between(ngx_http_aigw_sse_parser_t *p);


#endif /* _NGX_HTTP_AIGW_SSE_H_INCLUDED_ */
