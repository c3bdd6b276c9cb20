
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_JSON_H_INCLUDED_
#define _NGX_HTTP_AIGW_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * A cursor over JSON text, for the code that rebuilds a body in another
 * shape (translate.c): an object's members and an array's elements, as
 * spans of the text, nothing copied.  It reads only inside [p, last) and
 * allocates nothing; text that is not JSON stops it with NGX_ERROR, but
 * it validates no more than it must to find where a value ends: what it
 * reads has passed the scan, or is a provider's answer the scan checked.
 */


typedef struct {
    u_char                     *p;
    u_char                     *last;
    u_char                      close;     /* '}' or ']' */
    unsigned                    started:1;
} ngx_http_aigw_json_t;


/* past blanks */
u_char *ngx_http_aigw_json_ws(u_char *p, u_char *last);

/* the end of the value that starts at p, or NULL if it is cut or bad */
u_char *ngx_http_aigw_json_skip(u_char *p, u_char *last);

/*
 * Opens the object or array that is the value v: NGX_OK, NGX_DECLINED if
 * v is another kind of value.
 */
ngx_int_t ngx_http_aigw_json_open(ngx_http_aigw_json_t *j, ngx_str_t *v);

/*
 * The next member of an object (key: the text between its quotes, still
 * escaped) or element of an array (key empty), its value as a span:
 * NGX_OK, NGX_DONE after the last, NGX_ERROR if the text is bad.
 */
ngx_int_t ngx_http_aigw_json_next(ngx_http_aigw_json_t *j, ngx_str_t *key,
    ngx_str_t *value);

/*
 * A JSON text being written, growing in a pool: a write that finds no
 * memory sets failed, and the later ones do nothing.
 */

typedef struct {
    u_char                     *start;
    u_char                     *pos;
    u_char                     *end;
    ngx_pool_t                 *pool;
    ngx_uint_t                  failed;
} ngx_http_aigw_json_out_t;


/* room for n more bytes at o->pos, or NULL */
u_char *ngx_http_aigw_json_out_reserve(ngx_http_aigw_json_out_t *o,
    size_t n);
void ngx_http_aigw_json_out_add(ngx_http_aigw_json_out_t *o, u_char *data,
    size_t len);
/* bytes as the content of a JSON string, escaped */
void ngx_http_aigw_json_out_escaped(ngx_http_aigw_json_out_t *o,
    u_char *data, size_t len);

#define ngx_http_aigw_json_out_str(o, s)                                      \
    ngx_http_aigw_json_out_add(o, (s)->data, (s)->len)
#define ngx_http_aigw_json_out_lit(o, s)                                      \
    ngx_http_aigw_json_out_add(o, (u_char *) s, sizeof(s) - 1)


/* a name json_members() found twice in one object */
#define NGX_HTTP_AIGW_JSON_TWICE  NGX_ABORT

/*
 * The values of the members names[0..n-1] of an object, in one walk:
 * values[i] is the value of names[i], or empty (data NULL) if the object
 * has none.  A key is compared as it unescapes, as the scan compares the
 * top-level keys, so the names must be ASCII that needs no escape.
 * NGX_OK; NGX_DECLINED if the value is not an object; NGX_ERROR if the
 * text is bad; NGX_HTTP_AIGW_JSON_TWICE if a name comes twice (the scan
 * refuses that at the top level: a provider would read the last, the
 * gateway the first).  Unless NGX_OK, every value is left empty.
 */
ngx_int_t ngx_http_aigw_json_members(ngx_str_t *object, ngx_str_t *names,
    ngx_str_t *values, ngx_uint_t n);

/* the number of names of a static table */
#define ngx_http_aigw_json_nelts(names)                                       \
    (sizeof(names) / sizeof(ngx_str_t))

/*
 * The value of one member by its name: NGX_OK, or NGX_DECLINED (value
 * empty) if there is none, it comes twice, or the text is not an object.
 */
ngx_int_t ngx_http_aigw_json_member(ngx_str_t *object, const char *name,
    ngx_str_t *value);

/* 1 if a key, as json_next gives it, is the name */
#define ngx_http_aigw_json_is(key, name)                                      \
    ((key)->len == sizeof(name) - 1                                           \
     && ngx_memcmp((key)->data, name, sizeof(name) - 1) == 0)

/* 1 if a value is the string literal "s" (quotes not given) */
#define ngx_http_aigw_json_string_is(v, s)                                    \
    ((v)->len == sizeof(s) + 1 && (v)->data[0] == '"'                         \
     && ngx_memcmp((v)->data + 1, s, sizeof(s) - 1) == 0)


#endif /* _NGX_HTTP_AIGW_JSON_H_INCLUDED_ */
