
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


/*
 * 1 if a key with a backslash, as json_next() gives it (escaped), is the
 * name as it unescapes.  The names are ASCII that needs no escape, so
 * only a \u escape of an ASCII code point can stand for one of their
 * bytes; any other escape cannot.
 */

static ngx_uint_t
ngx_http_aigw_json_key_is(ngx_str_t *key, ngx_str_t *name)
{
    u_char      *p, *last, *n, *nlast;
    ngx_uint_t   i, c, d;

    p = key->data;
    last = p + key->len;
    n = name->data;
    nlast = n + name->len;

    while (p < last) {

        if (n == nlast) {
            return 0;
        }

        if (*p != '\\') {
            if (*p++ != *n++) {
                return 0;
            }

            continue;
        }

        if (last - p < 6 || p[1] != 'u') {
            return 0;
        }

        c = 0;

        for (i = 2; i < 6; i++) {
            d = p[i];

            if (d >= '0' && d <= '9') {
                d -= '0';

            } else {
                d |= 0x20;

                if (d < 'a' || d > 'f') {
                    return 0;
                }

                d -= 'a' - 10;
            }

            c = c * 16 + d;
        }

        if (c != *n++) {
            return 0;
        }

        p += 6;
    }

    return n == nlast;
}


ngx_int_t
ngx_http_aigw_json_members(ngx_str_t *object, ngx_str_t *names,
    ngx_str_t *values, ngx_uint_t n)
{
    ngx_int_t             rc;
    ngx_str_t             key, value;
    size_t                k;
    ngx_uint_t            i, escaped;
    ngx_http_aigw_json_t  j;

    /* opened first: the object may be one of the values */

    rc = ngx_http_aigw_json_open(&j, object);

    for (i = 0; i < n; i++) {
        values[i].data = NULL;
        values[i].len = 0;
    }

    if (rc != NGX_OK || j.close != '}') {
        return NGX_DECLINED;
    }

    while ((rc = ngx_http_aigw_json_next(&j, &key, &value)) == NGX_OK) {

        escaped = 2;    /* not looked at yet */

        for (i = 0; i < n; i++) {

            /*
             * as it is (an escape would make the key longer), byte by
             * byte: a name is a few bytes, shorter than a call
             */

            if (key.len == names[i].len) {
                for (k = 0; k < key.len; k++) {
                    if (key.data[k] != names[i].data[k]) {
                        break;
                    }
                }

                if (k == key.len) {
                    break;
                }

                continue;
            }

            /* only \u escapes can stand for a name's bytes: 6 for 1 */

            if (key.len < names[i].len + 5
                || (key.len - names[i].len) % 5 != 0)
            {
                continue;
            }

            if (escaped == 2) {
                escaped = (memchr(key.data, '\\', key.len) != NULL);
            }

            if (escaped && ngx_http_aigw_json_key_is(&key, &names[i])) {
                break;
            }
        }

        if (i == n) {
            continue;
        }

        if (values[i].data) {
            rc = NGX_HTTP_AIGW_JSON_TWICE;
            break;
        }

        values[i] = value;
    }

    if (rc == NGX_DONE) {
        return NGX_OK;
    }

    /* nothing half found */

    for (i = 0; i < n; i++) {
        values[i].data = NULL;
        values[i].len = 0;
    }

    return (rc == NGX_HTTP_AIGW_JSON_TWICE) ? rc : NGX_ERROR;
}


ngx_int_t
ngx_http_aigw_json_member(ngx_str_t *object, const char *name,
    ngx_str_t *value)
{
    ngx_str_t  n;

    n.data = (u_char *) name;
    n.len = ngx_strlen(name);

    return (ngx_http_aigw_json_members(object, &n, value, 1) == NGX_OK
            && value->data)
           ? NGX_OK : NGX_DECLINED;
}
