
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


static ngx_int_t ngx_http_aigw_provider_parse_url(ngx_conf_t *cf,
    ngx_http_aigw_provider_t *p, ngx_str_t *url);
static ngx_int_t ngx_http_aigw_provider_read_key(ngx_conf_t *cf,
    ngx_str_t *param, ngx_str_t *key);
static ngx_int_t ngx_http_aigw_provider_set_auth(ngx_conf_t *cf,
    ngx_http_aigw_provider_t *p, ngx_str_t *key);


/*
 * aigw_provider NAME URL [format=openai|anthropic]
 *               [key_env=VAR | key_file=PATH];
 */

char *
ngx_http_aigw_provider(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_main_conf_t *amcf = conf;

    ngx_str_t                  *value, key, s;
    ngx_uint_t                  i, has_key;
    ngx_http_aigw_format_t    **f;
    ngx_http_aigw_provider_t   *p, **pp;

    value = cf->args->elts;

    pp = amcf->providers.elts;

    for (i = 0; i < amcf->providers.nelts; i++) {
        if (pp[i]->name.len == value[1].len
            && ngx_strncmp(pp[i]->name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "aigw provider \"%V\" is duplicate, "
                               "first defined in %s:%ui",
                               &value[1], pp[i]->file, pp[i]->line);
            return NGX_CONF_ERROR;
        }
    }

    p = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_provider_t));
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    p->name = value[1];
    p->url = value[2];
    p->format = &ngx_http_aigw_openai_format;
    p->file = cf->conf_file->file.name.data;
    p->line = cf->conf_file->line;

    if (ngx_http_aigw_provider_parse_url(cf, p, &value[2]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&key);
    has_key = 0;

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "format=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            for (f = ngx_http_aigw_formats; *f; f++) {
                if (s.len == (*f)->name.len
                    && ngx_strncmp(s.data, (*f)->name.data, s.len) == 0)
                {
                    p->format = *f;
                    break;
                }
            }

            if (*f == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid format \"%V\" of aigw provider "
                                   "\"%V\", must be \"openai\" or "
                                   "\"anthropic\"", &s, &p->name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "key_env=", 8) == 0
            || ngx_strncmp(value[i].data, "key_file=", 9) == 0)
        {
            if (has_key) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "aigw provider \"%V\" has more than one "
                                   "key", &p->name);
                return NGX_CONF_ERROR;
            }

            if (ngx_http_aigw_provider_read_key(cf, &value[i], &key)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            has_key = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigw_provider_set_auth(cf, p, &key) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    pp = ngx_array_push(&amcf->providers);
    if (pp == NULL) {
        return NGX_CONF_ERROR;
    }

    *pp = p;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigw_provider_parse_url(ngx_conf_t *cf, ngx_http_aigw_provider_t *p,
    ngx_str_t *url)
{
    size_t     add;
    ngx_url_t  u;

    if (ngx_strncasecmp(url->data, (u_char *) "http://", 7) == 0) {
        add = 7;

    } else if (ngx_strncasecmp(url->data, (u_char *) "https://", 8) == 0) {
        add = 8;
        p->ssl = 1;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid URL \"%V\" of aigw provider \"%V\": "
                           "must start with \"http://\" or \"https://\"",
                           url, &p->name);
        return NGX_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.len = url->len - add;
    u.url.data = url->data + add;
    u.default_port = p->ssl ? 443 : 80;
    u.uri_part = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in URL \"%V\" of aigw provider \"%V\"",
                               u.err, url, &p->name);
        }

        return NGX_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no address for URL \"%V\" of aigw provider "
                           "\"%V\"", url, &p->name);
        return NGX_ERROR;
    }

    p->addrs = u.addrs;
    p->naddrs = u.naddrs;
    p->sni = u.host;

    ngx_http_aigw_resolve_init(cf, p, u.port);

    /* the Host header carries the port only when it is not the default */

    if (u.no_port || u.port == u.default_port) {
        p->host = u.host;

    } else {
        p->host.data = ngx_pnalloc(cf->pool, u.host.len + 1 + NGX_INT_T_LEN);
        if (p->host.data == NULL) {
            return NGX_ERROR;
        }

        p->host.len = ngx_sprintf(p->host.data, "%V:%d", &u.host, u.port)
                      - p->host.data;
    }

    p->base_path = u.uri;

    while (p->base_path.len && p->base_path.data[p->base_path.len - 1] == '/')
    {
        p->base_path.len--;
    }

    if (ngx_strlchr(u.uri.data, u.uri.data + u.uri.len, '?')
        || ngx_strlchr(u.uri.data, u.uri.data + u.uri.len, ' '))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "URL \"%V\" of aigw provider \"%V\" must not "
                           "carry arguments", url, &p->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_provider_read_key(ngx_conf_t *cf, ngx_str_t *param,
    ngx_str_t *key)
{
    u_char           *env, *p;
    ssize_t           n;
    ngx_str_t         name;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (param->data[4] == 'e') {
        name.data = param->data + 8;
        name.len = param->len - 8;

        if (name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "empty variable name in \"%V\"", param);
            return NGX_ERROR;
        }

        env = (u_char *) getenv((char *) name.data);

        if (env == NULL || *env == '\0') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "environment variable \"%V\" is not set",
                               &name);
            return NGX_ERROR;
        }

        key->len = ngx_strlen(env);
        key->data = ngx_pstrdup(cf->pool, &(ngx_str_t) { key->len, env });
        if (key->data == NULL) {
            return NGX_ERROR;
        }

        goto check;
    }

    name.data = param->data + 9;
    name.len = param->len - 9;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = name;
    file.log = cf->log;

    file.fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &name);
        return NGX_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 65536)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%V\" is unreadable or too large",
                           &name);
        (void) ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    key->data = ngx_pnalloc(cf->pool, (size_t) ngx_file_size(&fi) + 1);
    if (key->data == NULL) {
        (void) ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    n = ngx_read_file(&file, key->data, (size_t) ngx_file_size(&fi), 0);

    (void) ngx_close_file(file.fd);

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    key->len = n;

    /* a trailing newline is what editors leave, not part of the key */

    while (key->len
           && (key->data[key->len - 1] == '\n'
               || key->data[key->len - 1] == '\r'
               || key->data[key->len - 1] == ' '))
    {
        key->len--;
    }

    if (key->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%V\" is empty", &name);
        return NGX_ERROR;
    }

check:

    for (p = key->data; p < key->data + key->len; p++) {
        if (*p < 0x21 || *p == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "the key from \"%V\" has a control character "
                               "or a space", param);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_provider_set_auth(ngx_conf_t *cf, ngx_http_aigw_provider_t *p,
    ngx_str_t *key)
{
    u_char  *d;

    if (key->len == 0) {
        /* a local OpenAI-compatible server that takes no credentials */
        ngx_str_null(&p->auth_headers);
        return NGX_OK;
    }

    d = ngx_pnalloc(cf->pool, p->format->credential.len + key->len
                              + sizeof(CRLF) - 1);
    if (d == NULL) {
        return NGX_ERROR;
    }

    p->auth_headers.data = d;

    d = ngx_sprintf(d, "%V%V" CRLF, &p->format->credential, key);

    p->auth_headers.len = d - p->auth_headers.data;

    return NGX_OK;
}


/* the TLS client context of a location that passes to providers */

ngx_int_t
ngx_http_aigw_provider_ssl(ngx_conf_t *cf, ngx_http_aigw_loc_conf_t *alcf)
{
    ngx_uint_t                   i, need;
    ngx_pool_cleanup_t          *cln;
    ngx_http_aigw_provider_t   **pp;
    ngx_http_aigw_main_conf_t   *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigw_module);

    need = 0;
    pp = amcf->providers.elts;

    for (i = 0; i < amcf->providers.nelts; i++) {
        if (pp[i]->ssl) {
            need = 1;
            break;
        }
    }

    if (!need) {
        return NGX_OK;
    }

    alcf->upstream.ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (alcf->upstream.ssl == NULL) {
        return NGX_ERROR;
    }

    alcf->upstream.ssl->log = cf->log;

    if (ngx_ssl_create(alcf->upstream.ssl,
                       NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(alcf->upstream.ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = alcf->upstream.ssl;

    if (ngx_ssl_ciphers(cf, alcf->upstream.ssl,
                        &(ngx_str_t) ngx_string("DEFAULT"), 0)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!alcf->upstream.ssl_verify) {
        return NGX_OK;
    }

    if (ngx_ssl_trusted_certificate(cf, alcf->upstream.ssl,
                                    &alcf->ssl_trusted_certificate,
                                    alcf->ssl_verify_depth)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}
