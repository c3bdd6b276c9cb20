
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * Token metering: the usage a provider reports, read from its answer as
 * the answer passes, never holding a byte back; an estimate where the
 * provider reports none.
 */


#define NGX_HTTP_AIGW_METER_TAIL  16384
#define NGX_HTTP_AIGW_METER_NONE  ((ngx_uint_t) -1)


static u_char *ngx_http_aigw_meter_after_key(u_char *p, u_char *last);
static size_t ngx_http_aigw_meter_text_bytes(u_char *p, u_char *last,
    const char *key, size_t key_len);


/* a JSON answer: its tail is kept, "usage" is near its end */

ngx_int_t
ngx_http_aigw_meter_json(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_chain_t *in)
{
    size_t        n, keep;
    u_char       *p, *end;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (ctx->tail == NULL) {
        ctx->tail = ngx_pnalloc(r->pool, NGX_HTTP_AIGW_METER_TAIL);
        if (ctx->tail == NULL) {
            return NGX_ERROR;
        }
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            n = b->last - b->pos;
            p = b->pos;

            if (n >= NGX_HTTP_AIGW_METER_TAIL) {
                p = b->last - NGX_HTTP_AIGW_METER_TAIL;
                n = NGX_HTTP_AIGW_METER_TAIL;
                ctx->tail_len = 0;

            } else if (ctx->tail_len + n > NGX_HTTP_AIGW_METER_TAIL) {
                keep = NGX_HTTP_AIGW_METER_TAIL - n;
                ngx_memmove(ctx->tail, ctx->tail + ctx->tail_len - keep,
                            keep);
                ctx->tail_len = keep;
            }

            ngx_memcpy(ctx->tail + ctx->tail_len, p, n);
            ctx->tail_len += n;
        }

        if (!b->last_buf) {
            continue;
        }

        /* the last "usage" object of the answer, nearest its end */

        end = ctx->tail + ctx->tail_len;

        p = ngx_http_aigw_meter_last_value(ctx->tail, end, "\"usage\"", 7);

        if (p && *p == '{') {
            ngx_http_aigw_meter_usage(ctx, p, end, 0);
        }
    }

    return NGX_OK;
}


/*
 * The counts of a usage object, read from its text in one pass: a cJSON
 * tree with its allocations and strtod() costs more than the rest of a
 * request.  Nested counts (OpenAI's *_details) are found the same way.
 */

typedef struct {
    ngx_str_t    name;
    ngx_uint_t   index;
} ngx_http_aigw_meter_key_t;


#define NGX_HTTP_AIGW_U_INPUT       0
#define NGX_HTTP_AIGW_U_OUTPUT      1
#define NGX_HTTP_AIGW_U_CACHE_READ  2
#define NGX_HTTP_AIGW_U_CACHE_NEW   3
#define NGX_HTTP_AIGW_U_PROMPT      4
#define NGX_HTTP_AIGW_U_COMPLETION  5
#define NGX_HTTP_AIGW_U_CACHED      6
#define NGX_HTTP_AIGW_U_REASONING   7
#define NGX_HTTP_AIGW_U_N           8


static ngx_http_aigw_meter_key_t  ngx_http_aigw_meter_keys[] = {
    { ngx_string("input_tokens"), NGX_HTTP_AIGW_U_INPUT },
    { ngx_string("output_tokens"), NGX_HTTP_AIGW_U_OUTPUT },
    { ngx_string("cache_read_input_tokens"), NGX_HTTP_AIGW_U_CACHE_READ },
    { ngx_string("cache_creation_input_tokens"), NGX_HTTP_AIGW_U_CACHE_NEW },
    { ngx_string("prompt_tokens"), NGX_HTTP_AIGW_U_PROMPT },
    { ngx_string("completion_tokens"), NGX_HTTP_AIGW_U_COMPLETION },
    { ngx_string("cached_tokens"), NGX_HTTP_AIGW_U_CACHED },
    { ngx_string("reasoning_tokens"), NGX_HTTP_AIGW_U_REASONING },
    { ngx_null_string, 0 }
};


void
ngx_http_aigw_meter_usage(ngx_http_aigw_ctx_t *ctx, u_char *p, u_char *last,
    ngx_uint_t delta)
{
    u_char                     *key, *end;
    ngx_uint_t                  n, u[NGX_HTTP_AIGW_U_N], depth;
    ngx_http_aigw_meter_key_t  *k;

    for (n = 0; n < NGX_HTTP_AIGW_U_N; n++) {
        u[n] = NGX_HTTP_AIGW_METER_NONE;
    }

    depth = 0;

    for ( /* void */ ; p < last; p++) {

        if (*p == '{' || *p == '[') {
            depth++;
            continue;
        }

        if (*p == '}' || *p == ']') {
            if (--depth == 0) {
                break;
            }

            continue;
        }

        if (*p != '"') {
            continue;
        }

        /* a string: a key if a colon and a number follow */

        key = ++p;

        while (p < last && *p != '"') {
            if (*p == '\\') {
                p++;
            }

            p++;
        }

        if (p >= last) {
            return;
        }

        end = p;

        for (p++; p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                               || *p == '\n'); p++)
        {
            /* void */
        }

        if (p == last || *p != ':') {
            p = end;
            continue;
        }

        for (p++; p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                               || *p == '\n'); p++)
        {
            /* void */
        }

        if (p == last || *p < '0' || *p > '9') {
            p--;
            continue;
        }

        for (n = 0; p < last && *p >= '0' && *p <= '9'
                    && n < NGX_MAX_UINT32_VALUE; p++)
        {
            n = n * 10 + (*p - '0');
        }

        p--;

        for (k = ngx_http_aigw_meter_keys; k->name.len; k++) {
            if ((size_t) (end - key) == k->name.len
                && ngx_memcmp(key, k->name.data, k->name.len) == 0)
            {
                u[k->index] = n;
                break;
            }
        }
    }

    if (depth != 0) {
        return;    /* not whole */
    }

    ctx->usage_source = NGX_HTTP_AIGW_USAGE_PROVIDER;

#define ngx_http_aigw_meter_u(i)                                              \
    (u[i] == NGX_HTTP_AIGW_METER_NONE ? 0 : u[i])

    if (u[NGX_HTTP_AIGW_U_INPUT] != NGX_HTTP_AIGW_METER_NONE
        || u[NGX_HTTP_AIGW_U_OUTPUT] != NGX_HTTP_AIGW_METER_NONE)
    {
        /*
         * Anthropic: input_tokens leaves out what was read from or
         * written to the prompt cache; message_delta repeats the output
         * count so far, and from 2025 the input counts too
         */

        n = ngx_http_aigw_meter_u(NGX_HTTP_AIGW_U_INPUT)
            + ngx_http_aigw_meter_u(NGX_HTTP_AIGW_U_CACHE_READ)
            + ngx_http_aigw_meter_u(NGX_HTTP_AIGW_U_CACHE_NEW);

        if (!delta || n) {
            ctx->prompt_tokens = n;
            ctx->cached_tokens = ngx_http_aigw_meter_u(
                                                  NGX_HTTP_AIGW_U_CACHE_READ);
        }

        if (u[NGX_HTTP_AIGW_U_OUTPUT] != NGX_HTTP_AIGW_METER_NONE) {
            ctx->completion_tokens = u[NGX_HTTP_AIGW_U_OUTPUT];
        }

        return;
    }

    ctx->prompt_tokens = ngx_http_aigw_meter_u(NGX_HTTP_AIGW_U_PROMPT);
    ctx->completion_tokens = ngx_http_aigw_meter_u(NGX_HTTP_AIGW_U_COMPLETION);
    ctx->cached_tokens = ngx_http_aigw_meter_u(NGX_HTTP_AIGW_U_CACHED);
    ctx->reasoning_tokens = ngx_http_aigw_meter_u(NGX_HTTP_AIGW_U_REASONING);

#undef ngx_http_aigw_meter_u
}


/*
 * At the end of a request: an estimate where the provider said nothing
 * (about four bytes of text a token), and the cost in micro-dollars.
 */

void
ngx_http_aigw_meter_finish(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    uint64_t                cost;
    ngx_uint_t              uncached;
    ngx_http_aigw_model_t  *m;

    if (ctx->metered || ctx->attempts == 0) {
        return;
    }

    ctx->metered = 1;

    if (ctx->usage_source != NGX_HTTP_AIGW_USAGE_PROVIDER
        && r->upstream && r->upstream->headers_in.status_n == NGX_HTTP_OK)
    {
        ctx->usage_source = NGX_HTTP_AIGW_USAGE_ESTIMATED;
        ctx->prompt_tokens = (ctx->scan.string_bytes + 3) / 4;
        ctx->completion_tokens = (ctx->est_completion + 3) / 4;
        ctx->cached_tokens = 0;
    }

    m = ctx->candidates[ctx->last];

    uncached = ctx->prompt_tokens > ctx->cached_tokens
               ? ctx->prompt_tokens - ctx->cached_tokens : 0;

    /* prices are micro-dollars per million tokens: integers throughout */

    cost = (uint64_t) uncached * m->input_price
           + (uint64_t) ctx->cached_tokens
             * (m->cached_price ? m->cached_price : m->input_price)
           + (uint64_t) ctx->completion_tokens * m->output_price;

    ctx->cost = (cost + 500000) / 1000000;
}


/*
 * The text of a stream, for an estimate should the provider not report
 * usage: the first four events are read for it, the others counted by their
 * size less what the first carried besides text (ids, model, ...), which
 * is the same in every event of a stream.
 */

void
ngx_http_aigw_meter_estimate(ngx_http_aigw_ctx_t *ctx, u_char *p,
    u_char *last, const char *key, size_t len)
{
    size_t  n, size;

    size = last - p;

    if (ctx->est_samples < 4) {
        n = ngx_http_aigw_meter_text_bytes(p, last, key, len);
        ctx->est_completion += n;
        ctx->est_overhead += size - n;
        ctx->est_samples++;
        return;
    }

    n = ctx->est_overhead / ctx->est_samples;
    ctx->est_completion += size > n ? size - n : 0;
}


/* bytes of the string values of a key in a small JSON text, unparsed */

static size_t
ngx_http_aigw_meter_text_bytes(u_char *p, u_char *last, const char *key,
    size_t key_len)
{
    size_t  n;

    n = 0;

    for ( ;; ) {
        p = ngx_http_aigw_meter_value(p, last, key, key_len);

        if (p == NULL) {
            return n;
        }

        if (*p != '"') {
            continue;
        }

        for (p++; p < last && *p != '"'; p++) {
            if (*p == '\\' && ++p == last) {
                break;
            }

            n++;
        }

        if (p >= last) {
            return n;
        }
    }
}


/*
 * The value of a key in JSON text: after "key" and ':'.  JSON keys are
 * case-sensitive, and a quote inside a string is escaped, so the quoted
 * name with its colon is found only where it is a key.
 */

u_char *
ngx_http_aigw_meter_value(u_char *p, u_char *last, const char *key,
    size_t len)
{
    u_char  *v;

    for ( ;; ) {
        p = memmem(p, last - p, key, len);

        if (p == NULL) {
            return NULL;
        }

        p += len;

        v = ngx_http_aigw_meter_after_key(p, last);

        if (v) {
            return v;
        }
    }
}


/* the value after a key's closing quote, or NULL if no colon follows */

static u_char *
ngx_http_aigw_meter_after_key(u_char *p, u_char *last)
{
    for ( /* void */ ; p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                                    || *p == '\n'); p++)
    {
        /* void */
    }

    if (p == last || *p != ':') {
        return NULL;
    }

    for (p++; p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                           || *p == '\n'); p++)
    {
        /* void */
    }

    return p < last ? p : NULL;
}


/*
 * The value of the last such key: searched from the end, where "usage"
 * is in an answer and in a chunk
 */

u_char *
ngx_http_aigw_meter_last_value(u_char *p, u_char *last, const char *key,
    size_t len)
{
    u_char  *q, *v;

    if ((size_t) (last - p) < len) {
        return NULL;
    }

    for (q = last - len; q >= p; q--) {
        if (*q == '"' && ngx_memcmp(q, key, len) == 0) {
            v = ngx_http_aigw_meter_after_key(q + len, last);

            if (v) {
                return v;
            }
        }
    }

    return NULL;
}
