
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_quota.h"


/*
 * aigw_usage: what a key, tenant, user, team, model or the gateway has
 * used of its limits, and what is left, as JSON.  A key reads its own;
 * an admin key anyone's.
 */


#define NGX_HTTP_AIGW_REPORT_LEN  2048


static ngx_int_t ngx_http_aigw_quota_report_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigw_quota_report_who(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_uint_t *scope, ngx_str_t *id);
static u_char *ngx_http_aigw_quota_report_number(u_char *p, const char *name,
    uint64_t limit, uint64_t used, ngx_uint_t remaining);
static u_char *ngx_http_aigw_quota_report_usd(u_char *p, const char *name,
    uint64_t v);


/* aigw_usage; */

char *
ngx_http_aigw_quota_report(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_loc_conf_t *alcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (alcf->usage) {
        return "is duplicate";
    }

    alcf->usage = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_aigw_quota_report_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigw_quota_report_handler(ngx_http_request_t *r)
{
    u_char                        *p;
    ngx_int_t                      rc;
    ngx_str_t                      id;
    ngx_buf_t                     *b;
    ngx_uint_t                     scope, i;
    ngx_chain_t                    out;
    ngx_http_aigw_ctx_t           *ctx;
    ngx_http_aigw_key_t           *key;
    ngx_http_aigw_limits_t         lim;
    ngx_http_aigw_loc_conf_t      *alcf;
    ngx_http_aigw_main_conf_t     *amcf;
    ngx_http_aigw_quota_counts_t   c;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx == NULL) {
        ctx = ngx_http_aigw_ctx_create(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_NOT_ALLOWED,
                                   "method_not_allowed",
                                   "Use GET to read usage.");
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    if (amcf->quota_zone == NULL) {
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_NOT_FOUND, "not_found",
                                   "No limits are configured.");
    }

    /* the counters are read from the zone: where Redis keeps them, the
     * zone's would be wrong, and an error says so instead */

    if (alcf->quota_store == NGX_HTTP_AIGW_QUOTA_REDIS) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: aigw_usage does not read the Redis store");
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_NOT_IMPLEMENTED,
                                   "not_implemented",
                                   "Usage is kept in Redis here, which "
                                   "aigw_usage does not read yet.");
    }

    scope = NGX_HTTP_AIGW_SCOPE_KEY;

    rc = ngx_http_aigw_quota_report_who(r, ctx, &scope, &id);

    if (rc != NGX_OK) {
        return rc;
    }

    /* a key's own limits, when the key is known */

    key = NULL;

    if (scope == NGX_HTTP_AIGW_SCOPE_KEY && amcf->keys) {
        for (i = 0; i < amcf->keys->nkeys; i++) {
            if (amcf->keys->keys[i].id.len == id.len
                && ngx_strncmp(amcf->keys->keys[i].id.data, id.data, id.len)
                   == 0)
            {
                key = &amcf->keys->keys[i];
                break;
            }
        }
    }

    ngx_http_aigw_quota_limits(alcf, scope, key, &lim);
    ngx_http_aigw_quota_zone_read(amcf->quota_zone->data, scope, &id,
                                  ngx_time(), &c);

    b = ngx_create_temp_buf(r->pool, NGX_HTTP_AIGW_REPORT_LEN
                                     + 6 * id.len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(b->last, "{\"object\":\"aigw.usage\",\"scope\":\"%V\","
                    "\"id\":\"", &ngx_http_aigw_quota_scopes[scope]);
    p = (u_char *) ngx_escape_json(p, id.data, id.len);

    p = ngx_sprintf(p, "\",\"used\":{\"requests_minute\":%ui,"
                    "\"tokens_minute\":%uL,\"requests_day\":%ui,"
                    "\"tokens_day\":%uL,\"in_flight\":%ui,\"spend_usd\":{",
                    c.requests_minute, c.tokens_minute, c.requests_day,
                    c.tokens_day, c.inflight);

    for (i = 0; i < NGX_HTTP_AIGW_PERIODS; i++) {
        p = ngx_http_aigw_quota_report_usd(p, ngx_http_aigw_quota_periods[i],
                                           c.spend[i]);
    }

    p[-1] = '}';

    p = ngx_cpymem(p, "},\"limits\":{", sizeof("},\"limits\":{") - 1);

    p = ngx_http_aigw_quota_report_number(p, "rpm", lim.rpm, 0, 0);
    p = ngx_http_aigw_quota_report_number(p, "rpd", lim.rpd, 0, 0);
    p = ngx_http_aigw_quota_report_number(p, "tpm", lim.tpm, 0, 0);
    p = ngx_http_aigw_quota_report_number(p, "tpd", lim.tpd, 0, 0);
    p = ngx_http_aigw_quota_report_number(p, "concurrency", lim.concurrency,
                                          0, 0);

    if (lim.budget) {
        p = ngx_http_aigw_quota_report_usd(p, "budget_usd", lim.budget);
        p = ngx_sprintf(p, "\"budget_period\":\"%s\"}",
                        ngx_http_aigw_quota_periods[lim.period]);

    } else {
        p = ngx_cpymem(p, "\"budget_usd\":null,\"budget_period\":null}",
                       sizeof("\"budget_usd\":null,\"budget_period\":null}")
                       - 1);
    }

    p = ngx_cpymem(p, ",\"remaining\":{", sizeof(",\"remaining\":{") - 1);

    p = ngx_http_aigw_quota_report_number(p, "requests_minute", lim.rpm,
                                          c.requests_minute, 1);
    p = ngx_http_aigw_quota_report_number(p, "requests_day", lim.rpd,
                                          c.requests_day, 1);
    p = ngx_http_aigw_quota_report_number(p, "tokens_minute", lim.tpm,
                                          c.tokens_minute, 1);
    p = ngx_http_aigw_quota_report_number(p, "tokens_day", lim.tpd,
                                          c.tokens_day, 1);
    p = ngx_http_aigw_quota_report_number(p, "in_flight", lim.concurrency,
                                          c.inflight, 1);

    if (lim.budget) {
        p = ngx_http_aigw_quota_report_usd(p, "budget_usd",
                                           lim.budget > c.spend[lim.period]
                                           ? lim.budget - c.spend[lim.period]
                                           : 0);
    } else {
        p = ngx_cpymem(p, "\"budget_usd\":null,",
                       sizeof("\"budget_usd\":null,") - 1);
    }

    p[-1] = '}';
    *p++ = '}';
    *p++ = LF;

    b->last = p;
    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = sizeof("application/json") - 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * Whose usage: "?key=ID", "?tenant=NAME", ..., "?global"; the caller's
 * key by default.  Anyone's for an admin key, or where the location does
 * not authenticate (the operator protects it, as the metrics).
 */

static ngx_int_t
ngx_http_aigw_quota_report_who(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_uint_t *scope, ngx_str_t *id)
{
    u_char                    *dst, *src;
    ngx_str_t                  arg;
    ngx_uint_t                 s;
    ngx_http_aigw_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    for (s = 0; s < NGX_HTTP_AIGW_SCOPES; s++) {
        if (ngx_http_arg(r, ngx_http_aigw_quota_scopes[s].data,
                         ngx_http_aigw_quota_scopes[s].len, &arg)
            == NGX_OK)
        {
            break;
        }
    }

    if (s == NGX_HTTP_AIGW_SCOPE_GLOBAL) {
        ngx_str_set(id, "*");

    } else if (s < NGX_HTTP_AIGW_SCOPES) {
        dst = ngx_pnalloc(r->pool, arg.len);
        if (dst == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        id->data = dst;
        src = arg.data;
        ngx_unescape_uri(&dst, &src, arg.len, NGX_UNESCAPE_URI);
        id->len = dst - id->data;

    } else if (ctx->key) {
        s = NGX_HTTP_AIGW_SCOPE_KEY;
        *id = ctx->key->id;

    } else {
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request",
                                   "Name whose usage: ?key=, ?tenant=, "
                                   "?user=, ?team=, ?model= or ?global.");
    }

    *scope = s;

    if (!alcf->auth || ctx->key == NULL || ctx->key->admin) {
        return NGX_OK;
    }

    if (s == NGX_HTTP_AIGW_SCOPE_KEY
        && id->len == ctx->key->id.len
        && ngx_strncmp(id->data, ctx->key->id.data, id->len) == 0)
    {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aigw: API key \"%V\" may not read the usage of %V \"%V\"",
                  &ctx->key->id, &ngx_http_aigw_quota_scopes[s], id);

    return ngx_http_aigw_error(r, ctx, NGX_HTTP_FORBIDDEN, "forbidden",
                               "This API key may read its own usage only.");
}


/* "name":N, or null where there is no limit; "remaining" never below 0 */

static u_char *
ngx_http_aigw_quota_report_number(u_char *p, const char *name,
    uint64_t limit, uint64_t used, ngx_uint_t remaining)
{
    if (limit == 0) {
        return ngx_sprintf(p, "\"%s\":null,", name);
    }

    if (remaining) {
        limit = limit > used ? limit - used : 0;
    }

    return ngx_sprintf(p, "\"%s\":%uL,", name, limit);
}


/* "name":"1.234567", dollars of micro-dollars */

static u_char *
ngx_http_aigw_quota_report_usd(u_char *p, const char *name, uint64_t v)
{
    return ngx_sprintf(p, "\"%s\":\"%uL.%06uL\",", name, v / 1000000,
                       v % 1000000);
}
