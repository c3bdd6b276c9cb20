
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_GUARD_H_INCLUDED_
#define _NGX_HTTP_AIGW_GUARD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* the rules that refuse: ngx_http_aigw_guard_reasons[] by number */
#define NGX_HTTP_AIGW_GUARD_MODEL          0
#define NGX_HTTP_AIGW_GUARD_PARAM          1
#define NGX_HTTP_AIGW_GUARD_MAX_TOKENS     2
#define NGX_HTTP_AIGW_GUARD_MAX_MESSAGES   3
#define NGX_HTTP_AIGW_GUARD_MAX_PROMPT     4
#define NGX_HTTP_AIGW_GUARD_DENY           5
#define NGX_HTTP_AIGW_GUARD_ALLOW          6
#define NGX_HTTP_AIGW_GUARD_OUTPUT         7
#define NGX_HTTP_AIGW_GUARD_MODERATION     8
#define NGX_HTTP_AIGW_GUARD_REASONS        9

#define NGX_HTTP_AIGW_GUARD_NAME           31

/* an output pattern's longest match, unless max= says; and its bound */
#define NGX_HTTP_AIGW_GUARD_MAX_MATCH      256
#define NGX_HTTP_AIGW_GUARD_MAX_HOLD       4096


typedef struct {
    ngx_str_t                      name;
    ngx_regex_t                   *re;
    size_t                         max;        /* longest match, bytes */
} ngx_http_aigw_guard_pattern_t;


/* a location's guard; unset members come from the level above */
typedef struct {
    ngx_array_t                   *deny;       /* _guard_pattern_t */
    ngx_array_t                   *allow;
    ngx_array_t                   *output;
    ngx_array_t                   *params;     /* ngx_str_t */
    ngx_array_t                   *models;     /* ngx_str_t, "name*" */
    size_t                         max_prompt;
    ngx_uint_t                     max_messages;
    ngx_uint_t                     max_tokens;
    ngx_str_t                      moderation;  /* a URI; "" for off */
    ngx_array_t                   *categories;  /* "\"name\"" */
    ngx_uint_t                     moderation_fail;  /* 1: closed */

    ngx_uint_t                     request;    /* a request rule is set */
    size_t                         hold;       /* of a stream's text */
} ngx_http_aigw_guard_conf_t;


typedef struct {
    ngx_atomic_t                   count[NGX_HTTP_AIGW_GUARD_REASONS];
} ngx_http_aigw_guard_sh_t;


extern ngx_str_t  ngx_http_aigw_guard_reasons[];


#endif /* _NGX_HTTP_AIGW_GUARD_H_INCLUDED_ */
