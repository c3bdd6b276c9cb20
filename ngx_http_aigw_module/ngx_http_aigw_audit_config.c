
/*
 * Copyright (C) aigw authors
 */


/*
 * A record's "config": what served it, the SHA-256 of every configuration
 * file nginx reads, in the order it reads them, cut to 16 bytes.
 *
 * nginx keeps the files it read only for "nginx -T" (cycle->config_dump
 * is filled when ngx_dump_config is set, or in a debug build), and a
 * module is not told when ngx_conf_parse() opens one.  So the files are
 * walked again here, as nginx walks them: the main file, and depth first
 * each "include" statement's file or mask (relative to the configuration
 * prefix, a mask's files in glob order), found by a tokenizer that knows
 * nginx's quoting, escapes and comments.  What is hashed, file after file:
 * its full name, 0x00, its length in decimal, 0x00, its bytes.  Not
 * hashed: "-g" directives, and files that directives read themselves
 * (keys, certificates: they are not the configuration's text).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_audit.h"


#define NGX_HTTP_AIGW_AUDIT_CONF_DEPTH   16       /* includes in includes */
#define NGX_HTTP_AIGW_AUDIT_CONF_FILES   4096
#define NGX_HTTP_AIGW_AUDIT_CONF_SIZE    (64 * 1024 * 1024)


typedef struct {
    ngx_conf_t                    *cf;
    EVP_MD_CTX                    *md;
    ngx_uint_t                     files;
} ngx_http_aigw_audit_walk_t;


static ngx_int_t ngx_http_aigw_audit_config_file(
    ngx_http_aigw_audit_walk_t *w, ngx_str_t *name, ngx_uint_t depth);
static ngx_int_t ngx_http_aigw_audit_config_include(
    ngx_http_aigw_audit_walk_t *w, ngx_str_t *arg, ngx_uint_t depth);


char *
ngx_http_aigw_audit_config_hash(ngx_conf_t *cf,
    ngx_http_aigw_audit_conf_t *acf)
{
    u_char                      hash[32];
    ngx_int_t                   rc;
    ngx_http_aigw_audit_walk_t  w;

    w.cf = cf;
    w.files = 0;
    w.md = EVP_MD_CTX_new();

    if (w.md == NULL || !EVP_DigestInit_ex(w.md, acf->sha256, NULL)) {
        EVP_MD_CTX_free(w.md);
        return NGX_CONF_ERROR;
    }

    rc = ngx_http_aigw_audit_config_file(&w, &cf->cycle->conf_file, 0);

    if (rc != NGX_OK || !EVP_DigestFinal_ex(w.md, hash, NULL)) {
        EVP_MD_CTX_free(w.md);
        return NGX_CONF_ERROR;
    }

    EVP_MD_CTX_free(w.md);

    acf->config_hash.len = 32;
    acf->config_hash.data = ngx_pnalloc(cf->pool, 32);
    if (acf->config_hash.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_hex_dump(acf->config_hash.data, hash, 16);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                   "aigw audit: config hash %V of %ui files",
                   &acf->config_hash, w.files);

    return NGX_CONF_OK;
}


/* a file hashed, then the includes in it, in their order */

static ngx_int_t
ngx_http_aigw_audit_config_file(ngx_http_aigw_audit_walk_t *w,
    ngx_str_t *name, ngx_uint_t depth)
{
    u_char       len[NGX_SIZE_T_LEN], *p, *last, *buf, *l;
    ngx_str_t    text, tok, arg;
    ngx_uint_t   ntok, include;

    if (depth > NGX_HTTP_AIGW_AUDIT_CONF_DEPTH
        || ++w->files > NGX_HTTP_AIGW_AUDIT_CONF_FILES)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, w->cf, 0,
                           "configuration hash: more than %d levels of "
                           "\"include\" or %d files at \"%V\"",
                           NGX_HTTP_AIGW_AUDIT_CONF_DEPTH,
                           NGX_HTTP_AIGW_AUDIT_CONF_FILES, name);
        return NGX_ERROR;
    }

    if (ngx_http_aigw_audit_read(w->cf, name, &text,
                                 NGX_HTTP_AIGW_AUDIT_CONF_SIZE)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    l = ngx_sprintf(len, "%uz", text.len);

    if (!EVP_DigestUpdate(w->md, name->data, name->len)
        || !EVP_DigestUpdate(w->md, "", 1)
        || !EVP_DigestUpdate(w->md, len, l - len)
        || !EVP_DigestUpdate(w->md, "", 1)
        || !EVP_DigestUpdate(w->md, text.data, text.len))
    {
        return NGX_ERROR;
    }

    /* a token is never longer than the text it comes from */

    buf = ngx_pnalloc(w->cf->temp_pool, text.len + 1);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = text.data;
    last = text.data + text.len;
    ntok = 0;
    include = 0;
    ngx_str_null(&arg);

    while (p < last) {
        p = ngx_http_aigw_audit_config_token(p, last, &tok, buf);

        if (tok.data == NULL) {
            break;
        }

        if (tok.len == 1 && tok.data != buf
            && (tok.data[0] == ';' || tok.data[0] == '{'
                || tok.data[0] == '}'))
        {
            if (include && ntok == 2 && tok.data[0] == ';'
                && ngx_http_aigw_audit_config_include(w, &arg, depth)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            ntok = 0;
            include = 0;
            continue;
        }

        ntok++;

        if (ntok == 1) {
            include = (tok.len == 7
                       && ngx_strncmp(tok.data, "include", 7) == 0);
            continue;
        }

        if (ntok == 2 && include) {
            arg.len = tok.len;
            arg.data = ngx_pnalloc(w->cf->temp_pool, tok.len + 1);
            if (arg.data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(arg.data, tok.data, tok.len);
            arg.data[arg.len] = '\0';
        }
    }

    return NGX_OK;
}


/* an include's file, or each file of its mask, as ngx_conf_include() */

static ngx_int_t
ngx_http_aigw_audit_config_include(ngx_http_aigw_audit_walk_t *w,
    ngx_str_t *arg, ngx_uint_t depth)
{
    ngx_int_t   rc;
    ngx_str_t   file, name;
    ngx_glob_t  gl;

    file = *arg;

    if (ngx_conf_full_name(w->cf->cycle, &file, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    if (strpbrk((char *) file.data, "*?[") == NULL) {
        return ngx_http_aigw_audit_config_file(w, &file, depth + 1);
    }

    ngx_memzero(&gl, sizeof(ngx_glob_t));

    gl.pattern = file.data;
    gl.log = w->cf->log;
    gl.test = 1;

    if (ngx_open_glob(&gl) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, w->cf, ngx_errno,
                           ngx_open_glob_n " \"%s\" failed", file.data);
        return NGX_ERROR;
    }

    rc = NGX_OK;

    for ( ;; ) {
        if (ngx_read_glob(&gl, &name) != NGX_OK) {
            break;
        }

        /* the glob's name, valid until the next read: a C string copy */

        file.len = name.len;
        file.data = ngx_pnalloc(w->cf->temp_pool, name.len + 1);
        if (file.data == NULL) {
            rc = NGX_ERROR;
            break;
        }

        ngx_memcpy(file.data, name.data, name.len);
        file.data[name.len] = '\0';

        rc = ngx_http_aigw_audit_config_file(w, &file, depth + 1);
        if (rc != NGX_OK) {
            break;
        }
    }

    ngx_close_glob(&gl);

    return rc;
}
