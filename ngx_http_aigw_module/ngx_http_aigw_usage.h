
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_USAGE_H_INCLUDED_
#define _NGX_HTTP_AIGW_USAGE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * Readers of the JSON text providers answer with: the token counts of a
 * usage object, and values found by their keys, without a JSON tree.
 * They read only inside [p, last), never allocate and never write.
 */


/* the counts a usage object may hold, OpenAI's and Anthropic's */
#define NGX_HTTP_AIGW_U_INPUT       0
#define NGX_HTTP_AIGW_U_OUTPUT      1
#define NGX_HTTP_AIGW_U_CACHE_READ  2
#define NGX_HTTP_AIGW_U_CACHE_NEW   3
#define NGX_HTTP_AIGW_U_PROMPT      4
#define NGX_HTTP_AIGW_U_COMPLETION  5
#define NGX_HTTP_AIGW_U_CACHED      6
#define NGX_HTTP_AIGW_U_REASONING   7
#define NGX_HTTP_AIGW_U_N           8

#define NGX_HTTP_AIGW_USAGE_UNSET   ((ngx_uint_t) -1)


typedef struct {
    ngx_uint_t      n[NGX_HTTP_AIGW_U_N];   /* or NGX_HTTP_AIGW_USAGE_UNSET */
} ngx_http_aigw_usage_t;


/*
 * The counts of the object that starts at p ('{'), nested ones
 * (OpenAI's *_details) included.  NGX_OK if the object is whole,
 * NGX_DECLINED if it is cut.
 */
ngx_int_t ngx_http_aigw_usage_read(ngx_http_aigw_usage_t *u, u_char *p,
    u_char *last);

/* the value after "key": (key given with its quotes), or NULL */
u_char *ngx_http_aigw_usage_value(u_char *p, u_char *last, const char *key,
    size_t len);

/* the same, the last such key, searched from the end */
u_char *ngx_http_aigw_usage_last_value(u_char *p, u_char *last,
    const char *key, size_t len);

/* bytes of the string values of a key, escapes counted as one */
size_t ngx_http_aigw_usage_text_bytes(u_char *p, u_char *last,
    const char *key, size_t len);


#endif /* _NGX_HTTP_AIGW_USAGE_H_INCLUDED_ */
