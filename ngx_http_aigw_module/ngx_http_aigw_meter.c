
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
#define NGX_HTTP_AIGW_METER_MAX   ((uint64_t) -1)


static uint64_t ngx_http_aigw_meter_mul(uint64_t a, uint64_t b,
    ngx_uint_t *overflow);
static uint64_t ngx_http_aigw_meter_add(uint64_t a, uint64_t b,
    ngx_uint_t *overflow);


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

        p = ngx_http_aigw_usage_last_value(ctx->tail, end, "\"usage\"", 7);

        if (p && *p == '{') {
            ngx_http_aigw_meter_usage(ctx, p, end, 0);
        }
    }

    return NGX_OK;
}


/*
 * the counts of a whole JSON answer's usage object, as the answer check's
 * scan read them; NULL if it has none
 */

void
ngx_http_aigw_meter_answer(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_usage_t *usage)
{
    if (usage && ngx_http_aigw_endpoint_spends(ctx->endpoint)) {
        ngx_http_aigw_meter_counts(ctx, usage, 0);
    }

    ctx->answer_metered = 1;
}


/*
 * A usage object's counts as the request's: each format names them its
 * own way; delta is Anthropic's message_delta, whose counts may be
 * partial.
 */

void
ngx_http_aigw_meter_usage(ngx_http_aigw_ctx_t *ctx, u_char *p, u_char *last,
    ngx_uint_t delta)
{
    ngx_http_aigw_usage_t  usage;

    if (ngx_http_aigw_usage_read(&usage, p, last) != NGX_OK) {
        return;    /* not whole */
    }

    ngx_http_aigw_meter_counts(ctx, &usage, delta);
}


/* the counts of a usage object, read, as the request's */

void
ngx_http_aigw_meter_counts(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_usage_t *usage, ngx_uint_t delta)
{
    ngx_uint_t  n, *u;

    u = usage->n;

    ctx->usage_source = NGX_HTTP_AIGW_USAGE_PROVIDER;

#define ngx_http_aigw_meter_u(i)                                              \
    (u[i] == NGX_HTTP_AIGW_USAGE_UNSET ? 0 : u[i])

    if (u[NGX_HTTP_AIGW_U_INPUT] != NGX_HTTP_AIGW_USAGE_UNSET
        || u[NGX_HTTP_AIGW_U_OUTPUT] != NGX_HTTP_AIGW_USAGE_UNSET)
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
            ctx->cache_write_tokens = ngx_http_aigw_meter_u(
                                                   NGX_HTTP_AIGW_U_CACHE_NEW);

            /* OpenAI's Responses: input_tokens_details.cached_tokens */
            ctx->cached_tokens = ngx_http_aigw_meter_u(
                                                   NGX_HTTP_AIGW_U_CACHE_READ)
                                 + ngx_http_aigw_meter_u(
                                                   NGX_HTTP_AIGW_U_CACHED);
        }

        if (u[NGX_HTTP_AIGW_U_OUTPUT] != NGX_HTTP_AIGW_USAGE_UNSET) {
            ctx->completion_tokens = u[NGX_HTTP_AIGW_U_OUTPUT];
        }

        if (u[NGX_HTTP_AIGW_U_REASONING] != NGX_HTTP_AIGW_USAGE_UNSET) {
            ctx->reasoning_tokens = u[NGX_HTTP_AIGW_U_REASONING];
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
    ngx_uint_t  overflow;

    if (ctx->metered || ctx->attempts == 0) {
        return;
    }

    ctx->metered = 1;

    /* counting a prompt's tokens uses none, reading an answer kept too */

    if (!ngx_http_aigw_endpoint_spends(ctx->endpoint)) {
        return;
    }

    if (ctx->usage_source != NGX_HTTP_AIGW_USAGE_PROVIDER
        && r->upstream && r->upstream->headers_in.status_n == NGX_HTTP_OK)
    {
        ctx->usage_source = NGX_HTTP_AIGW_USAGE_ESTIMATED;
        ctx->prompt_tokens = ngx_http_aigw_meter_tokens(ctx->scan.string_bytes);
        ctx->completion_tokens =
                             ngx_http_aigw_meter_tokens(ctx->est_completion);
        ctx->cached_tokens = 0;
        ctx->cache_write_tokens = 0;
    }

    overflow = 0;

    /* the last attempt's tokens at its prices, the earlier ones' added */
    ctx->cost = ngx_http_aigw_meter_cost(ctx, &overflow);

    /* a resumed or hedged stream: the earlier attempts' tokens too */
    ctx->prompt_tokens += ctx->carried_prompt;
    ctx->completion_tokens += ctx->carried_completion;

    if (overflow) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: the cost of %ui prompt, %ui cached and %ui "
                      "completion tokens of \"%V\" does not fit in 64 "
                      "bits, counted as %uL micro-dollars",
                      ctx->prompt_tokens, ctx->cached_tokens,
                      ctx->completion_tokens,
                      &ctx->candidates[ctx->last]->name, ctx->cost);
    }
}


/*
 * What tokens cost at model m's prices, in 10^-12 dollars: prices are
 * micro-dollars per million tokens, integers throughout; a sum past
 * 2^64 (counts a provider says near 2^32, large prices) stays at
 * 2^64 - 1 and sets *overflow.
 */

static uint64_t
ngx_http_aigw_meter_price(ngx_http_aigw_model_t *m, ngx_uint_t prompt,
    ngx_uint_t cached, ngx_uint_t cache_write, ngx_uint_t completion,
    ngx_uint_t *overflow)
{
    uint64_t  cost, uncached;

    /* Anthropic's cache reads and writes have prices of their own */

    uncached = prompt > cached ? prompt - cached : 0;
    uncached = uncached > cache_write ? uncached - cache_write : 0;

    cost = ngx_http_aigw_meter_add(
               ngx_http_aigw_meter_mul(uncached, m->input_price, overflow),
               ngx_http_aigw_meter_mul(cached,
                                       m->cached_price ? m->cached_price
                                                       : m->input_price,
                                       overflow),
               overflow);

    cost = ngx_http_aigw_meter_add(cost,
               ngx_http_aigw_meter_mul(cache_write,
                                       m->cache_write_price
                                       ? m->cache_write_price
                                       : m->input_price,
                                       overflow),
               overflow);

    return ngx_http_aigw_meter_add(cost,
               ngx_http_aigw_meter_mul(completion, m->output_price,
                                       overflow),
               overflow);
}


/*
 * An attempt that is not the last (a resumed stream's first, a hedge's
 * loser): its tokens, added to the request's at its end, and their cost
 * at its own model's prices.
 */

void
ngx_http_aigw_meter_carry(ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_model_t *m,
    ngx_uint_t prompt, ngx_uint_t cached, ngx_uint_t completion)
{
    ngx_uint_t  overflow;

    ctx->carried_prompt += prompt;
    ctx->carried_completion += completion;

    overflow = 0;

    ctx->carried_cost = ngx_http_aigw_meter_add(ctx->carried_cost,
                            ngx_http_aigw_meter_price(m, prompt, cached, 0,
                                                      completion, &overflow),
                            &overflow);

    if (overflow) {
        ctx->carried_overflow = 1;
    }
}


/*
 * The cost of the tokens counted so far, in micro-dollars, rounded: the
 * last attempt's at its model's prices, and the earlier attempts'.
 */

uint64_t
ngx_http_aigw_meter_cost(ngx_http_aigw_ctx_t *ctx, ngx_uint_t *overflow)
{
    uint64_t  cost;

    if (ctx->attempts == 0) {
        return 0;
    }

    cost = ngx_http_aigw_meter_price(ctx->candidates[ctx->last],
                                     ctx->prompt_tokens, ctx->cached_tokens,
                                     ctx->cache_write_tokens,
                                     ctx->completion_tokens, overflow);

    cost = ngx_http_aigw_meter_add(cost, ctx->carried_cost, overflow);

    if (ctx->carried_overflow) {
        *overflow = 1;
    }

    return cost / 1000000 + (cost % 1000000 >= 500000);
}


static uint64_t
ngx_http_aigw_meter_mul(uint64_t a, uint64_t b, ngx_uint_t *overflow)
{
    if (b && a > NGX_HTTP_AIGW_METER_MAX / b) {
        *overflow = 1;
        return NGX_HTTP_AIGW_METER_MAX;
    }

    return a * b;
}


static uint64_t
ngx_http_aigw_meter_add(uint64_t a, uint64_t b, ngx_uint_t *overflow)
{
    if (a > NGX_HTTP_AIGW_METER_MAX - b) {
        *overflow = 1;
        return NGX_HTTP_AIGW_METER_MAX;
    }

    return a + b;
}


/*
 * The first four events of a stream, for the estimate: their text read,
 * and the mean of what else they carry (ids, model, ...), which is the
 * same in every event of a stream; ngx_http_aigw_meter_estimate(), inline,
 * counts the others.
 */

void
ngx_http_aigw_meter_estimate_sample(ngx_http_aigw_ctx_t *ctx, u_char *p,
    u_char *last, const char *key, size_t len)
{
    size_t  n, size;

    size = last - p;

    n = ngx_http_aigw_usage_text_bytes(p, last, key, len);
    ctx->est_completion += n;
    ctx->est_overhead += size - n;

    /* from the fourth on, the mean: no division an event */
    if (++ctx->est_samples == 4) {
        ctx->est_overhead /= 4;
    }
}
