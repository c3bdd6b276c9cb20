
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_guard.h"


/*
 * The moderation hook, a step of the access phase after PII (the
 * moderation service gets the redacted text) and before quota: the
 * prompt's texts go as {"input":[...]} (OpenAI's /v1/moderations shape)
 * to an internal location, in a subrequest, as auth_request does; the
 * location's proxy_pass and proxy_*_timeout say where and how long.
 * A flagged answer refuses the request (400); a failed one (an error
 * status, a timeout, no "results") passes or refuses by
 * aigw_moderation_fail.
 */


typedef struct {
    ngx_uint_t                     done;
    ngx_uint_t                     status;
    ngx_str_t                      body;
} ngx_http_aigw_moderation_ctx_t;


static ngx_int_t ngx_http_aigw_moderation_send(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_guard_conf_t *gc);
static ngx_int_t ngx_http_aigw_moderation_input(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t **out);
static ngx_int_t ngx_http_aigw_moderation_done(ngx_http_request_t *r,
    void *data, ngx_int_t rc);
static ngx_int_t ngx_http_aigw_moderation_verdict(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_guard_conf_t *gc,
    ngx_http_aigw_moderation_ctx_t *mctx);
static ngx_uint_t ngx_http_aigw_moderation_true(u_char *p, u_char *last,
    ngx_str_t *key);


ngx_int_t
ngx_http_aigw_moderation_handler(ngx_http_request_t *r)
{
    ngx_http_aigw_ctx_t             *ctx;
    ngx_http_aigw_loc_conf_t        *alcf;
    ngx_http_aigw_guard_conf_t      *gc;
    ngx_http_aigw_moderation_ctx_t  *mctx;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    gc = alcf->guard;

    if (gc == NULL || gc->moderation.len == 0) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);
    mctx = ctx->moderation;

    if (mctx == NULL) {
        if (ctx->scan.ntext == 0) {
            return NGX_DECLINED;
        }

        return ngx_http_aigw_moderation_send(r, ctx, gc);
    }

    if (!mctx->done) {
        return NGX_DONE;
    }

    return ngx_http_aigw_moderation_verdict(r, ctx, gc, mctx);
}


static ngx_int_t
ngx_http_aigw_moderation_send(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_guard_conf_t *gc)
{
    ngx_buf_t                       *b;
    ngx_http_post_subrequest_t      *ps;
    ngx_http_aigw_moderation_ctx_t  *mctx;

    mctx = ngx_pcalloc(r->pool, sizeof(ngx_http_aigw_moderation_ctx_t));
    if (mctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_aigw_moderation_input(r, ctx, &b) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ps->handler = ngx_http_aigw_moderation_done;
    ps->data = mctx;

    if (ngx_http_aigw_subrequest_post(r, &gc->moderation, b, ps) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->moderation = mctx;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: moderation subrequest to \"%V\"", &gc->moderation);

    return NGX_DONE;
}


/* {"input":["text",...]}: the texts as the provider gets them */

static ngx_int_t
ngx_http_aigw_moderation_input(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t **out)
{
    u_char                  *p, *s;
    size_t                   len;
    ngx_uint_t               i, k, n;
    ngx_buf_t               *b;
    ngx_http_aigw_span_t    *t;
    ngx_http_aigw_splice_t  *sp;

    sp = ctx->splices ? ctx->splices->elts : NULL;
    n = ctx->splices ? ctx->splices->nelts : 0;

    len = sizeof("{\"input\":[]}") - 1;

    for (i = 0; i < ctx->scan.ntext && i < ctx->scan.text_size; i++) {
        len += ctx->scan.text[i].end - ctx->scan.text[i].start + 3;
    }

    for (k = 0; k < n; k++) {
        len += sp[k].text.len;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->last, "{\"input\":[", sizeof("{\"input\":[") - 1);

    for (i = 0; i < ctx->scan.ntext && i < ctx->scan.text_size; i++) {
        t = &ctx->scan.text[i];

        if (i) {
            *p++ = ',';
        }

        *p++ = '"';

        /* the splices (PII placeholders) inside the text, in order */

        s = t->start;

        for (k = 0; k < n; k++) {
            if (sp[k].start < s || sp[k].end > t->end) {
                continue;
            }

            p = ngx_cpymem(p, s, sp[k].start - s);
            p = ngx_cpymem(p, sp[k].text.data, sp[k].text.len);
            s = sp[k].end;
        }

        p = ngx_cpymem(p, s, t->end - s);

        *p++ = '"';
    }

    *p++ = ']';
    *p++ = '}';

    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    *out = b;

    return NGX_OK;
}


/* the subrequest's end: its status and its body, kept in memory */

static ngx_int_t
ngx_http_aigw_moderation_done(ngx_http_request_t *r, void *data,
    ngx_int_t rc)
{
    ngx_http_aigw_moderation_ctx_t  *mctx = data;

    mctx->done = 1;
    mctx->status = r->headers_out.status;

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_ERROR) {
        mctx->status = (rc == NGX_ERROR) ? 0 : (ngx_uint_t) rc;
    }

    if (r->out && r->out->buf) {
        mctx->body.data = r->out->buf->pos;
        mctx->body.len = r->out->buf->last - r->out->buf->pos;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: moderation done: %ui, %uz bytes", mctx->status,
                   mctx->body.len);

    return rc;
}


static ngx_int_t
ngx_http_aigw_moderation_verdict(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_guard_conf_t *gc,
    ngx_http_aigw_moderation_ctx_t *mctx)
{
    u_char                     *p, *last;
    ngx_str_t                  *cat, flagged;
    ngx_uint_t                  i;
    ngx_http_aigw_guard_sh_t   *sh;
    ngx_http_aigw_main_conf_t  *amcf;

    static ngx_str_t  key = ngx_string("\"flagged\"");

    p = mctx->body.data;
    last = p + mctx->body.len;

    if (mctx->status != NGX_HTTP_OK || p == NULL
        || ngx_http_aigw_usage_value(p, last, "\"results\"", 9) == NULL)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "aigw: moderation failed (status %ui), the request "
                      "is %s", mctx->status,
                      gc->moderation_fail ? "refused" : "passed");

        if (!gc->moderation_fail) {
            return NGX_OK;
        }

        amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

        if (amcf->guard && amcf->guard->data) {
            sh = amcf->guard->data;
            (void) ngx_atomic_fetch_add(
                       &sh->count[NGX_HTTP_AIGW_GUARD_MODERATION], 1);
        }

        ngx_str_set(&ctx->guard, "moderation:unavailable");

        return ngx_http_aigw_error(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "moderation_unavailable",
                                   "The moderation service could not check "
                                   "the request.");
    }

    if (gc->categories == NULL) {
        if (!ngx_http_aigw_moderation_true(p, last, &key)) {
            return NGX_OK;
        }

        return ngx_http_aigw_guard_refuse(r, ctx,
                                          NGX_HTTP_AIGW_GUARD_MODERATION,
                                          NULL, "The request was refused "
                                          "by the moderation policy.");
    }

    cat = gc->categories->elts;

    for (i = 0; i < gc->categories->nelts; i++) {
        if (ngx_http_aigw_moderation_true(p, last, &cat[i])) {
            flagged.data = cat[i].data + 1;
            flagged.len = cat[i].len - 2;

            return ngx_http_aigw_guard_refuse(r, ctx,
                                              NGX_HTTP_AIGW_GUARD_MODERATION,
                                              &flagged, "The request was "
                                              "refused by the moderation "
                                              "policy (%V).", &flagged);
        }
    }

    return NGX_OK;
}


/* a key (with its quotes) whose value is true, in any result */

static ngx_uint_t
ngx_http_aigw_moderation_true(u_char *p, u_char *last, ngx_str_t *key)
{
    for ( ;; ) {
        p = ngx_http_aigw_usage_value(p, last, (const char *) key->data,
                                      key->len);

        if (p == NULL) {
            return 0;
        }

        if (last - p >= 4 && ngx_strncmp(p, "true", 4) == 0) {
            return 1;
        }
    }
}
