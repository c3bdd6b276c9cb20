
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_TRANSLATE_H_INCLUDED_
#define _NGX_HTTP_AIGW_TRANSLATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_json.h"


/* a request that cannot be translated: t->param and t->reason say why */
#define NGX_HTTP_AIGW_TRANSLATE_REFUSED  NGX_DECLINED


/*
 * A request being translated: the body the provider gets is written in
 * out, but for its first member, "model", which request.c writes for
 * each candidate.
 */

typedef struct {
    ngx_http_request_t            *r;
    ngx_http_aigw_ctx_t           *ctx;
    ngx_http_aigw_json_out_t       out;
    ngx_str_t                      body;       /* what is translated */
    ngx_uint_t                     max_tokens_default;

    /* what the client asked that the provider puts elsewhere */
    ngx_array_t                    system;     /* ngx_str_t, text values */
    ngx_str_t                      max_tokens;
    ngx_str_t                      tool_choice;
    ngx_str_t                      user;
    ngx_uint_t                     serial;     /* parallel tool calls off */

    /* why it was refused: a field, and what of it */
    const char                    *param;
    const char                    *reason;
} ngx_http_aigw_translate_t;


/* the state of a translated stream, from one event to the next */

typedef struct {
    ngx_str_t                      id;         /* of the answer */
    ngx_str_t                      prefix;     /* of every chunk */
    ngx_str_t                      stop;       /* as the client says it */
    ngx_uint_t                     tools;      /* tool calls so far */
    ngx_uint_t                     blocks;     /* content blocks so far */
    ngx_http_aigw_json_out_t       out;        /* the client's events */

    /*
     * What events are written in, used again, so that a long stream does
     * not grow the request's pool: a piece of an event (scratch); the
     * buffer of the events of one pass of the filter (cur), and those
     * passed on (busy until sent, then free)
     */
    ngx_http_aigw_json_out_t       scratch;
    ngx_chain_t                   *cur;
    ngx_chain_t                   *free;
    ngx_chain_t                   *busy;
    ngx_uint_t                     events;

    unsigned                       started:1;
    unsigned                       open:1;     /* a content block is */
    unsigned                       done:1;
} ngx_http_aigw_translate_stream_t;


/* a table of names, read of an object of the request (translate_members) */
#define ngx_http_aigw_translate_object(t, param, what, object, names, v)      \
    ngx_http_aigw_translate_members(t, param, what, object, names, v,         \
                                    ngx_http_aigw_json_nelts(names))


/* translate_chat.c: an OpenAI chat completions client, Anthropic served */
ngx_int_t ngx_http_aigw_translate_chat_request(ngx_http_aigw_translate_t *t);
ngx_int_t ngx_http_aigw_translate_chat_answer(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t *b);
ngx_int_t ngx_http_aigw_translate_chat_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_translate_stream_t *ts,
    ngx_http_aigw_sse_event_t *ev);

/* translate_messages.c: an Anthropic messages client, OpenAI served */
ngx_int_t ngx_http_aigw_translate_messages_request(
    ngx_http_aigw_translate_t *t);
ngx_int_t ngx_http_aigw_translate_messages_answer(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t *b);
ngx_int_t ngx_http_aigw_translate_messages_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_translate_stream_t *ts,
    ngx_http_aigw_sse_event_t *ev);

/* translate.c: what both share */
ngx_int_t ngx_http_aigw_translate_refuse(ngx_http_aigw_translate_t *t,
    const char *param, const char *reason);
ngx_int_t ngx_http_aigw_translate_members(ngx_http_aigw_translate_t *t,
    const char *param, const char *what, ngx_str_t *object,
    ngx_str_t *names, ngx_str_t *values, ngx_uint_t n);
ngx_int_t ngx_http_aigw_translate_unescape(ngx_pool_t *pool, ngx_str_t *v,
    ngx_str_t *out);
ngx_uint_t ngx_http_aigw_translate_number_is(ngx_str_t *v, double low,
    double high);
void ngx_http_aigw_translate_replace(ngx_http_request_t *r, ngx_buf_t *b,
    u_char *start, u_char *last);


#endif /* _NGX_HTTP_AIGW_TRANSLATE_H_INCLUDED_ */
