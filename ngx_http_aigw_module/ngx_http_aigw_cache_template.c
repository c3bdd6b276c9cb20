
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_cache.h"


/*
 * The template cache: aigw_cache_template NAME VERSION REGEX.  When the
 * last text of a request (its last message, as the scan found it)
 * matches a template, that text's part of the key is the template's
 * name and version and its named captures, each with white space
 * collapsed and ASCII letters in lower case: prompts that differ only
 * there share an entry.  Everything else in the body keys as before.
 */


typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   version;
    ngx_regex_t                *regex;
    ngx_uint_t                  captures;
    ngx_uint_t                  named;
    ngx_uint_t                  name_size;
    u_char                     *names;
} ngx_http_aigw_cache_template_t;


/* aigw_cache_template NAME VERSION REGEX; */

char *
ngx_http_aigw_cache_template(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_loc_conf_t *alcf = conf;

    ngx_str_t                       *value;
    ngx_uint_t                       i;
    ngx_regex_compile_t              rc;
    ngx_http_aigw_cache_template_t  *t;
    u_char                           errstr[NGX_MAX_CONF_ERRSTR];

    value = cf->args->elts;

    if (alcf->cache_templates == NGX_CONF_UNSET_PTR) {
        alcf->cache_templates = ngx_array_create(cf->pool, 2,
                                    sizeof(ngx_http_aigw_cache_template_t));
        if (alcf->cache_templates == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    t = alcf->cache_templates->elts;

    for (i = 0; i < alcf->cache_templates->nelts; i++) {
        if (t[i].name.len == value[1].len
            && ngx_strncmp(t[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "template \"%V\" is duplicate", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern = value[3];
    rc.pool = cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V", &rc.err);
        return NGX_CONF_ERROR;
    }

    if (rc.named_captures == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "template \"%V\" has no named captures: "
                           "\"(?<name>...)\" marks its variables",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    t = ngx_array_push(alcf->cache_templates);
    if (t == NULL) {
        return NGX_CONF_ERROR;
    }

    t->name = value[1];
    t->version = value[2];
    t->regex = rc.regex;
    t->captures = rc.captures;
    t->named = rc.named_captures;
    t->name_size = rc.name_size;
    t->names = rc.names;

    return NGX_CONF_OK;
}


/*
 * The first template the request's last text matches: k->subst is set
 * to that text's opening quote and k->subst_digest to the template's
 * part of the key.  NGX_DECLINED when none matches.
 */

ngx_int_t
ngx_http_aigw_cache_template_match(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_array_t *templates,
    ngx_http_aigw_cache_key_t *k)
{
    int                             *caps;
    u_char                          *p, *d, *v, *ve, *key, c;
    size_t                           len;
    ngx_int_t                        rc;
    ngx_str_t                        text;
    ngx_uint_t                       i, j, n, space;
    ngx_http_aigw_span_t            *span;
    ngx_http_aigw_cache_template_t  *t;

    if (ctx->scan.ntext == 0 || ctx->scan.ntext > ctx->scan.text_size) {
        return NGX_DECLINED;
    }

    span = &ctx->scan.text[ctx->scan.ntext - 1];

    text.data = ngx_pnalloc(r->pool, span->end - span->start + 1);
    if (text.data == NULL) {
        return NGX_ERROR;
    }

    text.len = ngx_http_aigw_scan_unescape(text.data, span->start, span->end)
               - text.data;

    t = templates->elts;

    for (i = 0; i < templates->nelts; i++) {

        n = (t[i].captures + 1) * 3;

        caps = ngx_palloc(r->pool, n * sizeof(int));
        if (caps == NULL) {
            return NGX_ERROR;
        }

        rc = ngx_regex_exec(t[i].regex, &text, caps, n);

        if (rc == NGX_REGEX_NO_MATCHED) {
            continue;
        }

        if (rc < 0) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "aigw: template \"%V\": " ngx_regex_exec_n
                          " failed: %i", &t[i].name, rc);
            return NGX_DECLINED;
        }

        /* "NAME VERSION", then "name=value" of each named capture */

        len = t[i].name.len + t[i].version.len + 2 + text.len
              + t[i].named * (t[i].name_size + 2);

        key = ngx_pnalloc(r->pool, len);
        if (key == NULL) {
            return NGX_ERROR;
        }

        d = ngx_sprintf(key, "%V%Z%V%Z", &t[i].name, &t[i].version);

        p = t[i].names;

        for (j = 0; j < t[i].named; j++, p += t[i].name_size) {
            n = 2 * ((p[0] << 8) + p[1]);

            d = ngx_cpystrn(d, &p[2], t[i].name_size - 2);
            *d++ = '=';

            if (caps[n] < 0) {
                *d++ = '\0';
                continue;
            }

            v = text.data + caps[n];
            ve = text.data + caps[n + 1];
            space = 0;

            for ( /* void */ ; v < ve; v++) {
                c = *v;

                if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                    space = 1;
                    continue;
                }

                if (space && d[-1] != '=') {
                    *d++ = ' ';
                }

                space = 0;
                *d++ = ngx_tolower(c);
            }

            *d++ = '\0';
        }

        k->subst = span->start - 1;

        if (ngx_http_aigw_cache_key_digest(k, 'T', key, d - key,
                                           k->subst_digest)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aigw: cache template \"%V\" matched", &t[i].name);

        return NGX_OK;
    }

    return NGX_DECLINED;
}
