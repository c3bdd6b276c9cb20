
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_aigw_json.h"


/* deeper than the scan lets a body be is not looked into */
#define NGX_HTTP_AIGW_JSON_DEPTH  64


static u_char *ngx_http_aigw_json_string_end(u_char *p, u_char *last);


u_char *
ngx_http_aigw_json_ws(u_char *p, u_char *last)
{
    while (p < last
           && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    {
        p++;
    }

    return p;
}


/*
 * Past the closing quote of the string whose opening quote is at p: the
 * next quote after an even number of backslashes, found by memchr(), as
 * strings are most of what a body or an event holds
 */

static u_char *
ngx_http_aigw_json_string_end(u_char *p, u_char *last)
{
    u_char  *q, *b;

    for (p++; p < last; p = q + 1) {
        q = memchr(p, '"', last - p);

        if (q == NULL) {
            return NULL;
        }

        for (b = q; b > p && b[-1] == '\\'; b--) { /* void */ }

        if (((q - b) & 1) == 0) {
            return q + 1;
        }
    }

    return NULL;
}


u_char *
ngx_http_aigw_json_skip(u_char *p, u_char *last)
{
    u_char      stack[NGX_HTTP_AIGW_JSON_DEPTH];
    ngx_uint_t  depth;

    depth = 0;

    p = ngx_http_aigw_json_ws(p, last);

    while (p < last) {

        switch (*p) {

        case '"':
            p = ngx_http_aigw_json_string_end(p, last);
            if (p == NULL) {
                return NULL;
            }

            break;

        case '{':
        case '[':
            if (depth == NGX_HTTP_AIGW_JSON_DEPTH) {
                return NULL;
            }

            stack[depth++] = (*p == '{') ? '}' : ']';
            p++;
            break;

        case '}':
        case ']':
            if (depth == 0 || stack[depth - 1] != *p) {
                return NULL;
            }

            depth--;
            p++;
            break;

        case ',':
        case ':':
            if (depth == 0) {
                return NULL;
            }

            p++;
            break;

        case ' ': case '\t': case '\r': case '\n':
            p++;
            continue;

        default:

            /* a number or a literal: up to what ends it */

            if (!((*p >= '0' && *p <= '9') || *p == '-'
                  || *p == 't' || *p == 'f' || *p == 'n'))
            {
                return NULL;
            }

            while (p < last
                   && ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
                       || *p == '-' || *p == '+' || *p == '.' || *p == 'E'))
            {
                p++;
            }
        }

        if (depth == 0) {
            return p;
        }
    }

    return NULL;
}


ngx_int_t
ngx_http_aigw_json_open(ngx_http_aigw_json_t *j, ngx_str_t *v)
{
    if (v->len < 2 || (v->data[0] != '{' && v->data[0] != '[')) {
        return NGX_DECLINED;
    }

    j->p = v->data + 1;
    j->last = v->data + v->len;
    j->close = (v->data[0] == '{') ? '}' : ']';
    j->started = 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_aigw_json_next(ngx_http_aigw_json_t *j, ngx_str_t *key,
    ngx_str_t *value)
{
    u_char  *p, *end;

    p = ngx_http_aigw_json_ws(j->p, j->last);

    if (p == j->last) {
        return NGX_ERROR;
    }

    if (*p == j->close) {
        j->p = p + 1;
        return NGX_DONE;
    }

    if (j->started) {
        if (*p != ',') {
            return NGX_ERROR;
        }

        p = ngx_http_aigw_json_ws(p + 1, j->last);
    }

    j->started = 1;

    key->data = NULL;
    key->len = 0;

    if (j->close == '}') {
        if (p == j->last || *p != '"') {
            return NGX_ERROR;
        }

        end = ngx_http_aigw_json_string_end(p, j->last);
        if (end == NULL) {
            return NGX_ERROR;
        }

        key->data = p + 1;
        key->len = end - p - 2;

        p = ngx_http_aigw_json_ws(end, j->last);

        if (p == j->last || *p != ':') {
            return NGX_ERROR;
        }

        p = ngx_http_aigw_json_ws(p + 1, j->last);
    }

    end = ngx_http_aigw_json_skip(p, j->last);

    if (end == NULL || p == end) {
        return NGX_ERROR;
    }

    value->data = p;
    value->len = end - p;

    j->p = end;

    return NGX_OK;
}


/* the value of an object's member: NGX_OK, NGX_DECLINED if none */

ngx_int_t
ngx_http_aigw_json_member(ngx_str_t *object, const char *name,
    ngx_str_t *value)
{
    size_t                len;
    ngx_int_t             rc;
    ngx_str_t             key;
    ngx_http_aigw_json_t  j;

    if (ngx_http_aigw_json_open(&j, object) != NGX_OK || j.close != '}') {
        return NGX_DECLINED;
    }

    len = ngx_strlen(name);

    while ((rc = ngx_http_aigw_json_next(&j, &key, value)) == NGX_OK) {
        if (key.len == len && ngx_memcmp(key.data, name, len) == 0) {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}
