
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_guard.h"


/*
 * The output guard: aigw_guard_output patterns on the text of answers.
 *
 * A held JSON answer is checked whole: a match replaces it with a 400 in
 * the client's format.
 *
 * A stream is checked event by event, after the gateway's own filter
 * (usage read, the usage chunk withheld).  Its bytes are copied here,
 * and each event's text (given by the format's text callback) is
 * appended to a window of the text before it: the patterns run on the
 * window, so that a match split across events is found when its last
 * byte arrives.  An event goes to the client once the text after it
 * is at least "hold" bytes, the longest match (max=) less one: no match
 * may then still reach into it.  So the client is never more than hold
 * bytes of text behind the provider, and never gets a byte of a match.
 * A match ends the stream with the format's terminal error event.
 */


/* a piece of a placeholder begun in held events: raw offset, length */
typedef struct {
    size_t                         off;
    size_t                         len;
} ngx_http_aigw_guard_piece_t;


/* where a held event ends: in the raw bytes, and in the text */
typedef struct {
    size_t                         raw;
    size_t                         text;
} ngx_http_aigw_guard_mark_t;


typedef struct {
    ngx_http_aigw_sse_parser_t     sse;

    /* the stream's bytes not yet released, parsed up to "parsed" */
    u_char                        *raw;
    size_t                         raw_len;
    size_t                         raw_size;
    size_t                         parsed;

    ngx_http_aigw_guard_mark_t    *marks;
    ngx_uint_t                     nmarks;
    ngx_uint_t                     marks_size;

    /* the text's tail: hold bytes, and the new event's */
    u_char                        *win;
    size_t                         win_len;
    size_t                         win_size;
    size_t                         text;       /* all text so far */

    ngx_chain_t                   *free;
    ngx_chain_t                   *busy;

    /* aigw_pii restore: a placeholder begun and not yet ended */
    u_char                         prefix[NGX_HTTP_AIGW_PII_PLACEHOLDER];
    size_t                         prefix_len;
    ngx_http_aigw_guard_piece_t    pieces[NGX_HTTP_AIGW_PII_PLACEHOLDER];
    ngx_uint_t                     npieces;

    unsigned                       restore:1;
    unsigned                       denied:1;
    unsigned                       ended:1;
} ngx_http_aigw_guard_out_t;


/* a stream's bytes held at most: a larger event is refused unchecked */
#define NGX_HTTP_AIGW_GUARD_RAW   (4 * NGX_HTTP_AIGW_SSE_BUFFER)

/* the stage's own buffers, told apart from the filter's */
#define NGX_HTTP_AIGW_GUARD_TAG                                              \
    ((ngx_buf_tag_t) &ngx_http_aigw_guard_output_filter)


static ngx_int_t ngx_http_aigw_guard_output_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_guard_conf_t *gc,
    ngx_http_aigw_guard_out_t *g, ngx_http_aigw_sse_event_t *ev);
static ngx_int_t ngx_http_aigw_guard_output_restore(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_guard_out_t *g,
    ngx_http_aigw_sse_event_t *ev);
static ngx_int_t ngx_http_aigw_guard_output_placeholders(
    ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_guard_out_t *g, size_t s, size_t e);
static ngx_int_t ngx_http_aigw_guard_output_replace(ngx_http_request_t *r,
    ngx_http_aigw_guard_out_t *g, size_t off, size_t len, ngx_str_t *with,
    size_t *t1, size_t *t2);
static ngx_int_t ngx_http_aigw_guard_output_room(ngx_http_request_t *r,
    ngx_http_aigw_guard_out_t *g, size_t n);
static ngx_int_t ngx_http_aigw_guard_output_append(ngx_http_request_t *r,
    ngx_http_aigw_guard_out_t *g, u_char *p, size_t n);
static ngx_int_t ngx_http_aigw_guard_output_release(ngx_http_request_t *r,
    ngx_http_aigw_guard_out_t *g, size_t upto, ngx_chain_t ***ll);
static ngx_int_t ngx_http_aigw_guard_output_match(
    ngx_http_aigw_guard_conf_t *gc, u_char *p, size_t len,
    ngx_http_aigw_guard_pattern_t **fired);
static ngx_int_t ngx_http_aigw_guard_output_deny(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_guard_pattern_t *fired);


/* 1 if answers of the location are checked by output patterns */

ngx_uint_t
ngx_http_aigw_guard_output_on(ngx_http_request_t *r)
{
    ngx_http_aigw_loc_conf_t    *alcf;
    ngx_http_aigw_guard_conf_t  *gc;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    gc = alcf->guard;

    return gc != NULL && gc->output != NULL;
}


/* a stream starts: what the guard needs, if a pattern is set */

ngx_int_t
ngx_http_aigw_guard_output_init(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    u_char                      *buf;
    ngx_http_aigw_loc_conf_t    *alcf;
    ngx_http_aigw_guard_out_t   *g;
    ngx_http_aigw_guard_conf_t  *gc;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    gc = alcf->guard;

    if (ctx->format->text == NULL
        || ((gc == NULL || gc->output == NULL)
            && !ngx_http_aigw_pii_restoring(ctx)))
    {
        return NGX_OK;
    }

    g = ngx_pcalloc(r->pool, sizeof(ngx_http_aigw_guard_out_t));
    if (g == NULL) {
        return NGX_ERROR;
    }

    buf = ngx_pnalloc(r->pool, NGX_HTTP_AIGW_SSE_BUFFER);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    ngx_http_aigw_sse_init(&g->sse, buf, NGX_HTTP_AIGW_SSE_BUFFER);

    g->raw_size = 16384;
    g->raw = ngx_pnalloc(r->pool, g->raw_size);
    if (g->raw == NULL) {
        return NGX_ERROR;
    }

    g->marks_size = 64;
    g->marks = ngx_palloc(r->pool,
                          g->marks_size * sizeof(ngx_http_aigw_guard_mark_t));
    if (g->marks == NULL) {
        return NGX_ERROR;
    }

    g->restore = ngx_http_aigw_pii_restoring(ctx);
    g->win_size = 2 * (gc ? gc->hold : 0) + 1024;
    g->win = ngx_pnalloc(r->pool, g->win_size);
    if (g->win == NULL) {
        return NGX_ERROR;
    }

    ctx->guard_output = g;

    return NGX_OK;
}


/*
 * The stream, after the gateway's filter: in is copied and marked
 * sent; the events that may go are passed on to next.
 */

ngx_int_t
ngx_http_aigw_guard_output_filter(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *in,
    ngx_http_output_body_filter_pt next)
{
    u_char                      *pos;
    size_t                       upto, total, hold;
    ngx_int_t                    rc;
    ngx_uint_t                   i, last, eof;
    ngx_buf_t                   *b;
    ngx_chain_t                 *cl, *out, **ll;
    ngx_http_aigw_sse_event_t    ev;
    ngx_http_aigw_loc_conf_t    *alcf;
    ngx_http_aigw_guard_out_t   *g;
    ngx_http_aigw_guard_conf_t  *gc;

    g = ctx->guard_output;
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    gc = alcf->guard;
    hold = gc ? gc->hold : 0;

    out = NULL;
    ll = &out;
    last = 0;
    eof = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (b->last_buf) {
            last = 1;
        }

        if (!ngx_buf_in_memory(b) || b->last == b->pos) {
            continue;
        }

        if (g->denied) {
            b->pos = b->last;
            continue;
        }

        if (ngx_http_aigw_guard_output_append(r, g, b->pos,
                                              b->last - b->pos)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        b->pos = b->last;
    }

    while (!g->denied) {
        pos = g->raw + g->parsed;

        rc = ngx_http_aigw_sse_parse(&g->sse, &pos, g->raw + g->raw_len,
                                     &ev);

        if (rc != NGX_OK && last && !eof) {
            /* an event the stream left without its blank line */
            eof = 1;
            rc = ngx_http_aigw_sse_finish(&g->sse, &ev);
        }

        g->parsed = pos - g->raw;

        if (rc != NGX_OK) {
            break;
        }

        if (ngx_http_aigw_guard_output_event(r, ctx, gc, g, &ev) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /*
     * The events no match can reach into any more: the text after them,
     * to the end of the last event checked clean, is hold bytes or more.
     * All of them when the stream ends clean.
     */

    if (!g->ended) {
        total = g->text;

        if (g->denied) {
            total = g->nmarks ? g->marks[g->nmarks - 1].text : 0;
        }

        upto = 0;

        for (i = 0; i < g->nmarks; i++) {
            if ((g->denied || !last)
                && (total - g->marks[i].text < hold
                    || (g->npieces && g->marks[i].raw > g->pieces[0].off)))
            {
                break;
            }

            upto = g->marks[i].raw;
        }

        if (last && !g->denied) {
            upto = g->raw_len;
        }

        if (i) {
            ngx_memmove(g->marks, &g->marks[i],
                        (g->nmarks - i) * sizeof(ngx_http_aigw_guard_mark_t));
            g->nmarks -= i;
        }

        if (upto
            && ngx_http_aigw_guard_output_release(r, g, upto, &ll) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (g->denied && !g->ended) {
        b = ngx_http_aigw_error_event(r, ctx, NGX_HTTP_BAD_REQUEST);
        if (b == NULL) {
            return NGX_ERROR;
        }

        /* the client stops at the error event; nginx ends later */
        b->flush = 1;
        g->ended = 1;
        g->raw_len = 0;
        g->parsed = 0;
        g->nmarks = 0;

        cl = ngx_alloc_chain_link(r->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        cl->buf = b;
        *ll = cl;
        ll = &cl->next;
    }

    if (last) {
        cl = ngx_chain_get_free_buf(r->pool, &g->free);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        b = cl->buf;
        ngx_memzero(b, sizeof(ngx_buf_t));
        b->tag = NGX_HTTP_AIGW_GUARD_TAG;
        b->last_buf = 1;
        b->last_in_chain = 1;

        *ll = cl;
        ll = &cl->next;
    }

    *ll = NULL;

    if (out == NULL && g->busy == NULL) {
        return NGX_OK;
    }

    rc = next(r, out);

    ngx_chain_update_chains(r->pool, &g->free, &g->busy, &out,
                            NGX_HTTP_AIGW_GUARD_TAG);

    return rc;
}


/* an event: its text into the window, the patterns on it, its end noted */

static ngx_int_t
ngx_http_aigw_guard_output_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_guard_conf_t *gc,
    ngx_http_aigw_guard_out_t *g, ngx_http_aigw_sse_event_t *ev)
{
    u_char                         *p, *win;
    size_t                          len, keep, size;
    ngx_int_t                       rc;
    ngx_http_aigw_span_t            span;
    ngx_http_aigw_guard_mark_t     *m;
    ngx_http_aigw_guard_pattern_t  *fired;

    if (ev->truncated) {
        /* text that cannot be read whole is not passed unread */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: an answer event over %uz bytes, too large "
                      "for the output guard",
                      (size_t) NGX_HTTP_AIGW_SSE_BUFFER);
        return ngx_http_aigw_guard_output_deny(r, ctx, NULL);
    }

    p = ev->data.data;

    while (gc && gc->output
           && ctx->format->text(ctx, ev, &p, &span) == NGX_OK)
    {
        len = span.end - span.start;

        /* room for the window's tail and the text, unescaped */

        if (g->win_len + len > g->win_size) {
            size = ngx_max(2 * g->win_size, g->win_len + len);
            win = ngx_pnalloc(r->pool, size);
            if (win == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(win, g->win, g->win_len);
            g->win = win;
            g->win_size = size;
        }

        keep = g->win_len;
        g->win_len = ngx_http_aigw_scan_unescape(g->win + g->win_len,
                                                 span.start, span.end)
                     - g->win;
        g->text += g->win_len - keep;

        rc = ngx_http_aigw_guard_output_match(gc, g->win, g->win_len,
                                              &fired);

        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "aigw: output guard failed to match");
            return ngx_http_aigw_guard_output_deny(r, ctx, NULL);
        }

        if (rc == NGX_OK) {
            return ngx_http_aigw_guard_output_deny(r, ctx, fired);
        }

        /* only the hold bytes before the next text can still match */

        if (g->win_len > gc->hold) {
            ngx_memmove(g->win, g->win + g->win_len - gc->hold, gc->hold);
            g->win_len = gc->hold;
        }
    }

    /* the raw bytes change here: ev points into them no more */

    if (g->restore
        && ngx_http_aigw_guard_output_restore(r, ctx, g, ev) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (g->nmarks == g->marks_size) {
        m = ngx_palloc(r->pool, 2 * g->marks_size
                                * sizeof(ngx_http_aigw_guard_mark_t));
        if (m == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(m, g->marks,
                   g->nmarks * sizeof(ngx_http_aigw_guard_mark_t));
        g->marks = m;
        g->marks_size *= 2;
    }

    m = &g->marks[g->nmarks++];
    m->raw = g->parsed;
    m->text = g->text;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_guard_output_match(ngx_http_aigw_guard_conf_t *gc, u_char *p,
    size_t len, ngx_http_aigw_guard_pattern_t **fired)
{
    ngx_int_t                       rc;
    ngx_str_t                       text;
    ngx_uint_t                      k;
    ngx_http_aigw_guard_pattern_t  *pat;

    text.data = p;
    text.len = len;

    pat = gc->output->elts;

    for (k = 0; k < gc->output->nelts; k++) {
        rc = ngx_regex_exec(pat[k].re, &text, NULL, 0);

        if (rc >= 0) {
            *fired = &pat[k];
            return NGX_OK;
        }

        if (rc != NGX_REGEX_NO_MATCHED) {
            return NGX_ERROR;
        }
    }

    return NGX_DECLINED;
}


/* the answer refused: recorded, counted and logged once */

static ngx_int_t
ngx_http_aigw_guard_output_deny(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_guard_pattern_t *fired)
{
    ngx_http_aigw_guard_out_t  *g;

    g = ctx->guard_output;

    if (g) {
        g->denied = 1;
    }

    if (fired == NULL) {
        (void) ngx_http_aigw_guard_refuse(r, ctx, NGX_HTTP_AIGW_GUARD_OUTPUT,
                                          NULL, "The answer could not be "
                                          "checked by the content policy.");
        return NGX_OK;
    }

    (void) ngx_http_aigw_guard_refuse(r, ctx, NGX_HTTP_AIGW_GUARD_OUTPUT,
                                      &fired->name, "The answer was "
                                      "refused by the content policy "
                                      "(%V).", &fired->name);
    return NGX_OK;
}


/* bytes of the stream kept until their events are parsed and checked */

static ngx_int_t
ngx_http_aigw_guard_output_append(ngx_http_request_t *r,
    ngx_http_aigw_guard_out_t *g, u_char *p, size_t n)
{
    ngx_int_t  rc;

    rc = ngx_http_aigw_guard_output_room(r, g, n);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    ngx_memcpy(g->raw + g->raw_len, p, n);
    g->raw_len += n;

    return NGX_OK;
}


/* room for n more raw bytes; NGX_DECLINED: too much held, refused */

static ngx_int_t
ngx_http_aigw_guard_output_room(ngx_http_request_t *r,
    ngx_http_aigw_guard_out_t *g, size_t n)
{
    u_char  *raw;
    size_t   size;

    if (g->raw_len + n > g->raw_size) {

        if (g->raw_len + n > NGX_HTTP_AIGW_GUARD_RAW) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "aigw: over %uz bytes of an answer held for the "
                          "output guard", (size_t) NGX_HTTP_AIGW_GUARD_RAW);
            (void) ngx_http_aigw_guard_output_deny(r,
                       ngx_http_get_module_ctx(r, ngx_http_aigw_module),
                       NULL);
            return NGX_DECLINED;
        }

        size = ngx_min(ngx_max(2 * g->raw_size, g->raw_len + n),
                       NGX_HTTP_AIGW_GUARD_RAW);

        raw = ngx_pnalloc(r->pool, size);
        if (raw == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(raw, g->raw, g->raw_len);
        g->raw = raw;
        g->raw_size = size;
    }

    return NGX_OK;
}


/* raw bytes [0, upto) to the client, in a buffer of the free list */

static ngx_int_t
ngx_http_aigw_guard_output_release(ngx_http_request_t *r,
    ngx_http_aigw_guard_out_t *g, size_t upto, ngx_chain_t ***ll)
{
    size_t        size;
    ngx_uint_t    i;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = ngx_chain_get_free_buf(r->pool, &g->free);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    b = cl->buf;

    if (b->start == NULL || (size_t) (b->end - b->start) < upto) {
        size = ngx_max(upto, 4096);

        b->start = ngx_pnalloc(r->pool, size);
        if (b->start == NULL) {
            return NGX_ERROR;
        }

        b->end = b->start + size;
    }

    b->pos = b->start;
    b->last = ngx_cpymem(b->start, g->raw, upto);
    b->temporary = 1;
    b->flush = 1;
    b->last_buf = 0;
    b->tag = NGX_HTTP_AIGW_GUARD_TAG;

    **ll = cl;
    *ll = &cl->next;

    /* what is left moves to the front; marks and parsing follow it */

    ngx_memmove(g->raw, g->raw + upto, g->raw_len - upto);
    g->raw_len -= upto;
    g->parsed -= upto;

    for (i = 0; i < g->nmarks; i++) {
        g->marks[i].raw -= upto;
    }

    for (i = 0; i < g->npieces; i++) {
        g->pieces[i].off -= upto;
    }

    return NGX_OK;
}


/*
 * A held JSON answer [b->pos, +Content-Length): the string values of its
 * "content" and "text" keys, each on its own.  A match replaces the
 * answer with the error, a 400 in the client's format.
 */

ngx_int_t
ngx_http_aigw_guard_output_answer(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t *b)
{
    u_char                         *p, *q, *last, *buf;
    size_t                          size;
    ngx_int_t                       rc;
    ngx_str_t                       body;
    ngx_uint_t                      k;
    ngx_http_upstream_t            *u;
    ngx_http_aigw_loc_conf_t       *alcf;
    ngx_http_aigw_guard_conf_t     *gc;
    ngx_http_aigw_guard_pattern_t  *fired;

    static const char  *keys[] = { "\"content\"", "\"text\"" };

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    gc = alcf->guard;

    if (gc == NULL || gc->output == NULL) {
        return NGX_OK;
    }

    u = r->upstream;
    last = b->pos + u->headers_in.content_length_n;
    buf = NULL;
    size = 0;
    fired = NULL;
    rc = NGX_DECLINED;

    for (k = 0; k < 2 && rc == NGX_DECLINED; k++) {

        for (p = b->pos; p < last; p = q) {
            p = ngx_http_aigw_usage_value(p, last, keys[k],
                                          ngx_strlen(keys[k]));

            if (p == NULL || *p != '"') {
                break;
            }

            q = ngx_http_aigw_guard_string_end(p + 1, last);
            if (q == NULL) {
                break;
            }

            if ((size_t) (q - p) > size) {
                size = ngx_max((size_t) (q - p), 4096);
                buf = ngx_pnalloc(r->pool, size);
                if (buf == NULL) {
                    return NGX_ERROR;
                }
            }

            rc = ngx_http_aigw_guard_output_match(gc, buf,
                     ngx_http_aigw_scan_unescape(buf, p + 1, q) - buf,
                     &fired);

            if (rc != NGX_DECLINED) {
                break;
            }
        }
    }

    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    (void) ngx_http_aigw_guard_output_deny(r, ctx, fired);

    if (ngx_http_aigw_error_body(r, ctx, NGX_HTTP_BAD_REQUEST, &body)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the usage was read: the tokens were spent, and are settled */

    b->start = body.data;
    b->pos = body.data;
    b->last = body.data + body.len;
    b->end = b->last;

    u->headers_in.content_length_n = body.len;
    u->headers_in.status_n = NGX_HTTP_BAD_REQUEST;
    ngx_str_set(&u->headers_in.status_line, "400 Bad Request");

    return NGX_OK;
}


/* the closing quote of a JSON string whose content starts at p */

u_char *
ngx_http_aigw_guard_string_end(u_char *p, u_char *last)
{
    for ( /* void */ ; p < last; p++) {
        if (*p == '\\') {
            p++;
            continue;
        }

        if (*p == '"') {
            return p;
        }
    }

    return NULL;
}


/*
 * aigw_pii restore in a stream: the placeholders of an event's text
 * become the client's values.  One split across events ("[EMA", "IL_",
 * "1]") keeps the events of its start from the client until it ends:
 * then the first piece becomes the value, and the others, and the end,
 * go.  The first text of an event only (one choice).
 */

static ngx_int_t
ngx_http_aigw_guard_output_restore(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_guard_out_t *g,
    ngx_http_aigw_sse_event_t *ev)
{
    u_char                *p, *found;
    size_t                 start, data, s;
    ngx_http_aigw_span_t   span;

    if (g->denied) {
        return NGX_OK;
    }

    p = ev->data.data;

    if (ctx->format->text(ctx, ev, &p, &span) != NGX_OK) {
        return NGX_OK;
    }

    /* the data in the raw bytes: there already, or found in its event */

    start = g->nmarks ? g->marks[g->nmarks - 1].raw : 0;

    if (ev->data.data >= g->raw + start
        && ev->data.data + ev->data.len <= g->raw + g->parsed)
    {
        data = ev->data.data - g->raw;

    } else {
        found = memmem(g->raw + start, g->parsed - start, ev->data.data,
                       ev->data.len);
        if (found == NULL) {
            /* data of several lines: left as it is */
            return NGX_OK;
        }

        data = found - g->raw;
    }

    s = data + (span.start - ev->data.data);

    return ngx_http_aigw_guard_output_placeholders(r, ctx, g, s,
                                                   s + (span.end
                                                        - span.start));
}


#define ngx_http_aigw_guard_placeholder_byte(c)                              \
    (((c) >= 'A' && (c) <= 'Z') || ((c) >= '0' && (c) <= '9') || (c) == '_')


static ngx_int_t
ngx_http_aigw_guard_output_placeholders(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_guard_out_t *g, size_t s,
    size_t e)
{
    u_char      c, *q;
    size_t      i, j, k;
    ngx_str_t  *v, empty;

    ngx_str_null(&empty);

    i = s;

    /* a placeholder begun before: this text goes on with it, or not */

    while (g->npieces && i < e) {
        c = g->raw[i];

        if (c == ']') {
            g->prefix[g->prefix_len++] = c;

            v = ngx_http_aigw_pii_value(r, ctx, g->prefix,
                                        g->prefix + g->prefix_len);

            if (v) {
                /* the highest offset first: the lower ones stay valid */

                if (ngx_http_aigw_guard_output_replace(r, g, s, i + 1 - s,
                                                       &empty, &s, &e)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                for (k = g->npieces - 1; k > 0; k--) {
                    if (ngx_http_aigw_guard_output_replace(r, g,
                            g->pieces[k].off, g->pieces[k].len, &empty,
                            &s, &e)
                        != NGX_OK)
                    {
                        return NGX_ERROR;
                    }
                }

                if (ngx_http_aigw_guard_output_replace(r, g,
                        g->pieces[0].off, g->pieces[0].len, v, &s, &e)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                i = s;

            } else {
                i++;
            }

            g->npieces = 0;
            break;
        }

        if (ngx_http_aigw_guard_placeholder_byte(c)
            && g->prefix_len < NGX_HTTP_AIGW_PII_PLACEHOLDER - 1)
        {
            g->prefix[g->prefix_len++] = c;
            i++;
            continue;
        }

        /* not one: the events held for it go as they are */
        g->npieces = 0;
    }

    if (g->npieces) {
        /* all of this text goes on with the placeholder */

        if (e > s) {
            g->pieces[g->npieces].off = s;
            g->pieces[g->npieces].len = e - s;
            g->npieces++;
        }

        return NGX_OK;
    }

    /* the text's own placeholders, and one it ends in */

    while (i < e) {
        q = memchr(g->raw + i, '[', e - i);

        if (q == NULL) {
            break;
        }

        i = q - g->raw;

        for (j = i + 1;
             j < e && j - i < NGX_HTTP_AIGW_PII_PLACEHOLDER - 1
             && ngx_http_aigw_guard_placeholder_byte(g->raw[j]);
             j++)
        { /* void */ }

        if (j == e) {
            g->prefix_len = e - i;
            ngx_memcpy(g->prefix, g->raw + i, g->prefix_len);
            g->pieces[0].off = i;
            g->pieces[0].len = e - i;
            g->npieces = 1;
            break;
        }

        if (g->raw[j] != ']') {
            i = j;
            continue;
        }

        v = ngx_http_aigw_pii_value(r, ctx, g->raw + i, g->raw + j + 1);

        if (v == NULL) {
            i = j + 1;
            continue;
        }

        if (ngx_http_aigw_guard_output_replace(r, g, i, j + 1 - i, v, &e,
                                               NULL)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        i += v->len;
    }

    return NGX_OK;
}


/*
 * Raw bytes [off, off + len) replaced: what follows moves, and so do the
 * offsets after them (the parse, marks, pieces, t1 and t2).
 */

static ngx_int_t
ngx_http_aigw_guard_output_replace(ngx_http_request_t *r,
    ngx_http_aigw_guard_out_t *g, size_t off, size_t len, ngx_str_t *with,
    size_t *t1, size_t *t2)
{
    ngx_int_t   rc;
    ngx_uint_t  i;

    if (with->len > len) {
        rc = ngx_http_aigw_guard_output_room(r, g, with->len - len);

        if (rc == NGX_DECLINED) {
            /* refused: the stream ends here, nothing is replaced */
            return NGX_OK;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    ngx_memmove(g->raw + off + with->len, g->raw + off + len,
                g->raw_len - off - len);
    if (with->len) {
        ngx_memcpy(g->raw + off, with->data, with->len);
    }

    g->raw_len = g->raw_len - len + with->len;

#define ngx_http_aigw_guard_move(o)                                          \
    if ((o) > off) { (o) = (o) - len + with->len; }

    ngx_http_aigw_guard_move(g->parsed);

    for (i = 0; i < g->nmarks; i++) {
        ngx_http_aigw_guard_move(g->marks[i].raw);
    }

    for (i = 0; i < g->npieces; i++) {
        ngx_http_aigw_guard_move(g->pieces[i].off);
    }

    if (t1) {
        ngx_http_aigw_guard_move(*t1);
    }

    if (t2) {
        ngx_http_aigw_guard_move(*t2);
    }

#undef ngx_http_aigw_guard_move

    return NGX_OK;
}
