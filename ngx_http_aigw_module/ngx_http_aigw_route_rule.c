
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * Rules that choose a route's first candidate by the request: the size of
 * the prompt and max_tokens from the body scan, or any variable (a header,
 * the key's team).  The first rule that matches puts its model first; the
 * route's other models stay its fallbacks, in their order.
 */


#define NGX_HTTP_AIGW_RULE_PROMPT_BYTES  0
#define NGX_HTTP_AIGW_RULE_MAX_TOKENS    1
#define NGX_HTTP_AIGW_RULE_VARIABLE      2

#define NGX_HTTP_AIGW_RULE_EQ            0
#define NGX_HTTP_AIGW_RULE_NE            1
#define NGX_HTTP_AIGW_RULE_LT            2
#define NGX_HTTP_AIGW_RULE_LE            3
#define NGX_HTTP_AIGW_RULE_GT            4
#define NGX_HTTP_AIGW_RULE_GE            5


typedef struct {
    ngx_uint_t                     what;    /* NGX_HTTP_AIGW_RULE_ */
    ngx_uint_t                     op;
    off_t                          number;
    ngx_int_t                      index;   /* of the variable */
    ngx_str_t                      value;
    ngx_str_t                      text;    /* as written, for the log */
    ngx_http_aigw_model_t         *use;
} ngx_http_aigw_route_rule_t;


static ngx_int_t ngx_http_aigw_route_rule_parse(ngx_conf_t *cf,
    ngx_http_aigw_route_rule_t *rule, ngx_str_t *cond);
static ngx_uint_t ngx_http_aigw_route_rule_match(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_route_rule_t *rule);
static off_t ngx_http_aigw_route_rule_number(ngx_http_aigw_field_t *f);


/* aigw_route_rule ROUTE CONDITION MODEL; */

char *
ngx_http_aigw_route_rule(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_main_conf_t *amcf = conf;

    ngx_str_t                   *value;
    ngx_uint_t                   i;
    ngx_http_aigw_route_t       *rt;
    ngx_http_aigw_route_rule_t  *rule;

    value = cf->args->elts;

    rt = ngx_http_aigw_route_find(amcf, &value[1]);

    if (rt == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown aigw route \"%V\" (an aigw_route must "
                           "come before its rules)", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (rt->rules == NULL) {
        rt->rules = ngx_array_create(cf->pool, 4,
                                     sizeof(ngx_http_aigw_route_rule_t));
        if (rt->rules == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    rule = ngx_array_push(rt->rules);
    if (rule == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(rule, sizeof(ngx_http_aigw_route_rule_t));

    if (ngx_http_aigw_route_rule_parse(cf, rule, &value[2]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < rt->nmodels; i++) {
        if (rt->models[i]->name.len == value[3].len
            && ngx_strncmp(rt->models[i]->name.data, value[3].data,
                           value[3].len)
               == 0)
        {
            rule->use = rt->models[i];
            break;
        }
    }

    if (rule->use == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not a model of aigw route \"%V\"",
                           &value[3], &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * prompt_bytes>8000, max_tokens>=4000, $http_x_tier=frontier,
 * $aigw_team!=free: a name, an operator, a value
 */

static ngx_int_t
ngx_http_aigw_route_rule_parse(ngx_conf_t *cf,
    ngx_http_aigw_route_rule_t *rule, ngx_str_t *cond)
{
    u_char     *p, *last;
    ngx_str_t   name;

    rule->text = *cond;

    p = cond->data;
    last = p + cond->len;

    while (p < last && *p != '<' && *p != '>' && *p != '=' && *p != '!') {
        p++;
    }

    name.data = cond->data;
    name.len = p - cond->data;

    if (p == last || name.len == 0) {
        goto invalid;
    }

    if (*p == '=') {
        rule->op = NGX_HTTP_AIGW_RULE_EQ;
        p++;

    } else if (*p == '!') {
        if (p + 1 == last || p[1] != '=') {
            goto invalid;
        }

        rule->op = NGX_HTTP_AIGW_RULE_NE;
        p += 2;

    } else {
        rule->op = (*p == '<') ? NGX_HTTP_AIGW_RULE_LT
                               : NGX_HTTP_AIGW_RULE_GT;
        p++;

        if (p < last && *p == '=') {
            rule->op++;
            p++;
        }
    }

    rule->value.data = p;
    rule->value.len = last - p;

    if (name.data[0] == '$') {
        name.data++;
        name.len--;

        if (name.len == 0
            || (rule->op != NGX_HTTP_AIGW_RULE_EQ
                && rule->op != NGX_HTTP_AIGW_RULE_NE))
        {
            goto invalid;
        }

        rule->what = NGX_HTTP_AIGW_RULE_VARIABLE;
        rule->index = ngx_http_get_variable_index(cf, &name);

        if (rule->index == NGX_ERROR) {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (name.len == sizeof("prompt_bytes") - 1
        && ngx_strncmp(name.data, "prompt_bytes", name.len) == 0)
    {
        rule->what = NGX_HTTP_AIGW_RULE_PROMPT_BYTES;

    } else if (name.len == sizeof("max_tokens") - 1
               && ngx_strncmp(name.data, "max_tokens", name.len) == 0)
    {
        rule->what = NGX_HTTP_AIGW_RULE_MAX_TOKENS;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown \"%V\" in rule \"%V\": must be "
                           "\"prompt_bytes\", \"max_tokens\" or a "
                           "$variable", &name, cond);
        return NGX_ERROR;
    }

    rule->number = ngx_atoof(rule->value.data, rule->value.len);

    if (rule->number == NGX_ERROR) {
        goto invalid;
    }

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid rule \"%V\", must be such as "
                       "\"prompt_bytes>8000\" or \"$http_x_tier=big\"",
                       cond);
    return NGX_ERROR;
}


/*
 * In the route step, after the candidates are known: NGX_OK when a rule
 * matched and its model is now first, NGX_DECLINED when none did.
 */

ngx_int_t
ngx_http_aigw_route_rule_apply(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_route_t *rt)
{
    ngx_uint_t                   i, k;
    ngx_http_aigw_route_rule_t  *rule;

    rule = rt->rules->elts;

    for (i = 0; i < rt->rules->nelts; i++) {

        /* a model the client's format leaves out is no choice */

        for (k = 0; k < ctx->ncandidates; k++) {
            if (ctx->candidates[k] == rule[i].use) {
                break;
            }
        }

        if (k == ctx->ncandidates
            || !ngx_http_aigw_route_rule_match(r, ctx, &rule[i]))
        {
            continue;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aigw: route \"%V\" rule \"%V\": \"%V\" first",
                       &rt->name, &rule[i].text, &rule[i].use->name);

        if (k > 0) {
            ngx_memmove(&ctx->candidates[1], &ctx->candidates[0],
                        k * sizeof(ngx_http_aigw_model_t *));
            ctx->candidates[0] = rule[i].use;
        }

        return NGX_OK;
    }

    return NGX_DECLINED;
}


static ngx_uint_t
ngx_http_aigw_route_rule_match(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_route_rule_t *rule)
{
    off_t                       n;
    ngx_uint_t                  eq;
    ngx_http_aigw_field_t      *f;
    ngx_http_variable_value_t  *vv;

    if (rule->what == NGX_HTTP_AIGW_RULE_VARIABLE) {
        vv = ngx_http_get_indexed_variable(r, rule->index);

        if (vv == NULL || vv->not_found) {
            eq = (rule->value.len == 0);

        } else {
            eq = (vv->len == rule->value.len
                  && ngx_strncmp(vv->data, rule->value.data, vv->len) == 0);
        }

        return (rule->op == NGX_HTTP_AIGW_RULE_EQ) ? eq : !eq;
    }

    f = ctx->scan.field;

    if (rule->what == NGX_HTTP_AIGW_RULE_PROMPT_BYTES) {

        /* the prompt's fields as the client sent them, JSON and all */

        n = 0;

        if (f[NGX_HTTP_AIGW_F_MESSAGES].key) {
            n += f[NGX_HTTP_AIGW_F_MESSAGES].end
                 - f[NGX_HTTP_AIGW_F_MESSAGES].start;
        }

        if (f[NGX_HTTP_AIGW_F_INPUT].key) {
            n += f[NGX_HTTP_AIGW_F_INPUT].end - f[NGX_HTTP_AIGW_F_INPUT].start;
        }

        if (f[NGX_HTTP_AIGW_F_PROMPT].key) {
            n += f[NGX_HTTP_AIGW_F_PROMPT].end
                 - f[NGX_HTTP_AIGW_F_PROMPT].start;
        }

        if (f[NGX_HTTP_AIGW_F_SYSTEM].key) {
            n += f[NGX_HTTP_AIGW_F_SYSTEM].end
                 - f[NGX_HTTP_AIGW_F_SYSTEM].start;
        }

    } else {
        n = ngx_http_aigw_route_rule_number(&f[NGX_HTTP_AIGW_F_MAX_TOKENS]);

        if (n == NGX_ERROR) {
            n = ngx_http_aigw_route_rule_number(
                    &f[NGX_HTTP_AIGW_F_MAX_COMPLETION_TOKENS]);
        }

        /* a rule on a field the request lacks does not match */

        if (n == NGX_ERROR) {
            return 0;
        }
    }

    switch (rule->op) {

    case NGX_HTTP_AIGW_RULE_EQ:
        return n == rule->number;

    case NGX_HTTP_AIGW_RULE_NE:
        return n != rule->number;

    case NGX_HTTP_AIGW_RULE_LT:
        return n < rule->number;

    case NGX_HTTP_AIGW_RULE_LE:
        return n <= rule->number;

    case NGX_HTTP_AIGW_RULE_GT:
        return n > rule->number;

    default: /* NGX_HTTP_AIGW_RULE_GE */
        return n >= rule->number;
    }
}


/* a non-negative integer field of the body, NGX_ERROR if absent or not */

static off_t
ngx_http_aigw_route_rule_number(ngx_http_aigw_field_t *f)
{
    if (f->key == NULL || f->start == NULL || f->end <= f->start
        || (size_t) (f->end - f->start) > NGX_OFF_T_LEN)
    {
        return NGX_ERROR;
    }

    return ngx_atoof(f->start, f->end - f->start);
}
