
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
 * The count a key names, NGX_ERROR if none: by its length (and first
 * byte), then one compare.  A key with an escape never matches, as
 * before: the names have none.  Inline: the answer's scan
 * (ngx_http_aigw_scan.c, built alone in its tests) asks it too.
 */

static ngx_inline ngx_int_t
ngx_http_aigw_usage_index(u_char *key, size_t len)
{
    /* constant lengths: the compiler compares inline, no memcmp() call */

#define ngx_http_aigw_usage_is(name, i)                                       \
    return (ngx_memcmp(key, name, sizeof(name) - 1) == 0) ? (i) : NGX_ERROR

    switch (len) {

    case 12:
        ngx_http_aigw_usage_is("input_tokens", NGX_HTTP_AIGW_U_INPUT);

    case 13:
        switch (key[0]) {
        case 'o':
            ngx_http_aigw_usage_is("output_tokens", NGX_HTTP_AIGW_U_OUTPUT);
        case 'p':
            ngx_http_aigw_usage_is("prompt_tokens", NGX_HTTP_AIGW_U_PROMPT);
        case 'c':
            ngx_http_aigw_usage_is("cached_tokens", NGX_HTTP_AIGW_U_CACHED);
        default:
            return NGX_ERROR;
        }

    case 16:
        ngx_http_aigw_usage_is("reasoning_tokens",
                               NGX_HTTP_AIGW_U_REASONING);

    case 17:
        ngx_http_aigw_usage_is("completion_tokens",
                               NGX_HTTP_AIGW_U_COMPLETION);

    case 23:
        ngx_http_aigw_usage_is("cache_read_input_tokens",
                               NGX_HTTP_AIGW_U_CACHE_READ);

    case 27:
        ngx_http_aigw_usage_is("cache_creation_input_tokens",
                               NGX_HTTP_AIGW_U_CACHE_NEW);

    default:
        return NGX_ERROR;
    }

#undef ngx_http_aigw_usage_is
}


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
