
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_json.h"


/*
 * The answer of a translated request, whole and checked (answer.c), in
 * the client's format: an Anthropic message as an OpenAI chat
 * completion, and a provider's error as the client's error, its status
 * kept.  The usage is the meter's, read from the provider's answer
 * before this.
 */


static ngx_int_t ngx_http_aigw_translate_blocks(ngx_http_aigw_json_out_t *o,
    ngx_str_t *content, ngx_uint_t *calls);
static void ngx_http_aigw_translate_replace(ngx_http_request_t *r,
    ngx_buf_t *b, u_char *start, u_char *last);


/* stop_reason as finish_reason */

static ngx_str_t  ngx_http_aigw_translate_finish[][2] = {
    { ngx_string("\"end_turn\""), ngx_string("\"stop\"") },
    { ngx_string("\"stop_sequence\""), ngx_string("\"stop\"") },
    { ngx_string("\"max_tokens\""), ngx_string("\"length\"") },
    { ngx_string("\"tool_use\""), ngx_string("\"tool_calls\"") },
    { ngx_string("\"refusal\""), ngx_string("\"content_filter\"") },
    { ngx_string("\"pause_turn\""), ngx_string("\"stop\"") },
    { ngx_null_string, ngx_null_string }
};


ngx_int_t
ngx_http_aigw_translate_answer(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t *b)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_str_t                  key, value, id, content, stop, body, *f;
    ngx_uint_t                 calls;
    ngx_http_aigw_json_t       j;
    ngx_http_aigw_json_out_t   o;

    if (!ctx->translated) {
        return NGX_OK;
    }

    if (r->upstream->headers_in.status_n != NGX_HTTP_OK) {
        return ngx_http_aigw_translate_error(r, ctx, b);
    }

    body.data = b->pos;
    body.len = r->upstream->headers_in.content_length_n;

    ngx_str_null(&id);
    ngx_str_null(&content);
    ngx_str_null(&stop);

    if (ngx_http_aigw_json_open(&j, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    while ((rc = ngx_http_aigw_json_next(&j, &key, &value)) == NGX_OK) {
        if (ngx_http_aigw_json_is(&key, "id")) {
            id = value;

        } else if (ngx_http_aigw_json_is(&key, "content")) {
            content = value;

        } else if (ngx_http_aigw_json_is(&key, "stop_reason")) {
            stop = value;
        }
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    ngx_memzero(&o, sizeof(ngx_http_aigw_json_out_t));
    o.pool = r->pool;

    (void) ngx_http_aigw_json_out_reserve(&o, body.len + 512);

    ngx_http_aigw_json_out_lit(&o, "{\"id\":");

    if (id.len && id.data[0] == '"') {
        ngx_http_aigw_json_out_str(&o, &id);

    } else {
        ngx_http_aigw_json_out_lit(&o, "\"\"");
    }

    p = ngx_http_aigw_json_out_reserve(&o, NGX_TIME_T_LEN + 64);
    if (p) {
        o.pos = ngx_sprintf(p, ",\"object\":\"chat.completion\","
                            "\"created\":%T,\"model\":\"", ngx_time());
    }

    ngx_http_aigw_json_out_escaped(&o, ctx->model.data, ctx->model.len);
    ngx_http_aigw_json_out_lit(&o, "\",\"choices\":[{\"index\":0,"
                               "\"message\":{\"role\":\"assistant\",");

    if (ngx_http_aigw_translate_blocks(&o, &content, &calls) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_aigw_json_out_lit(&o, "},\"logprobs\":null,\"finish_reason\":");

    for (f = ngx_http_aigw_translate_finish[0]; f[0].len; f += 2) {
        if (stop.len == f[0].len
            && ngx_strncmp(stop.data, f[0].data, f[0].len) == 0)
        {
            break;
        }
    }

    if (f[0].len) {
        ngx_http_aigw_json_out_str(&o, &f[1]);

    } else {
        ngx_http_aigw_json_out_lit(&o, "\"stop\"");
    }

    p = ngx_http_aigw_json_out_reserve(&o, 5 * NGX_INT_T_LEN + 128);
    if (p) {
        o.pos = ngx_sprintf(p, "}],\"usage\":{\"prompt_tokens\":%ui,"
                            "\"completion_tokens\":%ui,"
                            "\"total_tokens\":%ui,"
                            "\"prompt_tokens_details\":{"
                            "\"cached_tokens\":%ui}}}",
                            ctx->prompt_tokens, ctx->completion_tokens,
                            ctx->prompt_tokens + ctx->completion_tokens,
                            ctx->cached_tokens);
    }

    if (o.failed) {
        return NGX_ERROR;
    }

    ngx_http_aigw_translate_replace(r, b, o.start, o.pos);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: a message as a chat completion, %ui tool call(s)",
                   calls);

    return NGX_OK;
}


/*
 * The content blocks: their text joined as "content" (null if none),
 * tool_use blocks as "tool_calls" with their input as a string;
 * thinking blocks have no place in a chat completion.
 */

static ngx_int_t
ngx_http_aigw_translate_blocks(ngx_http_aigw_json_out_t *o,
    ngx_str_t *content, ngx_uint_t *calls)
{
    ngx_int_t              rc;
    ngx_str_t              key, block, value, type, text, id, name, input;
    ngx_uint_t             texts;
    ngx_http_aigw_json_t   j, k;

    *calls = 0;
    texts = 0;

    ngx_http_aigw_json_out_lit(o, "\"content\":");

    if (content->len == 0 || ngx_http_aigw_json_open(&j, content) != NGX_OK) {
        ngx_http_aigw_json_out_lit(o, "null,\"refusal\":null");
        return NGX_OK;
    }

    /* the text first: adjacent string literals joined into one */

    while ((rc = ngx_http_aigw_json_next(&j, &key, &block)) == NGX_OK) {
        if (ngx_http_aigw_json_open(&k, &block) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_str_null(&type);
        ngx_str_null(&text);

        while ((rc = ngx_http_aigw_json_next(&k, &key, &value)) == NGX_OK) {
            if (ngx_http_aigw_json_is(&key, "type")) {
                type = value;

            } else if (ngx_http_aigw_json_is(&key, "text")) {
                text = value;
            }
        }

        if (rc != NGX_DONE) {
            return NGX_ERROR;
        }

        if (ngx_http_aigw_json_string_is(&type, "text")
            && text.len >= 2 && text.data[0] == '"')
        {
            if (texts++ == 0) {
                ngx_http_aigw_json_out_lit(o, "\"");
            }

            ngx_http_aigw_json_out_add(o, text.data + 1, text.len - 2);

        } else if (ngx_http_aigw_json_string_is(&type, "tool_use")) {
            (*calls)++;
        }
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (texts) {
        ngx_http_aigw_json_out_lit(o, "\",\"refusal\":null");

    } else {
        ngx_http_aigw_json_out_lit(o, "null,\"refusal\":null");
    }

    if (*calls == 0) {
        return NGX_OK;
    }

    ngx_http_aigw_json_out_lit(o, ",\"tool_calls\":[");

    (void) ngx_http_aigw_json_open(&j, content);

    texts = 0;

    while ((rc = ngx_http_aigw_json_next(&j, &key, &block)) == NGX_OK) {
        (void) ngx_http_aigw_json_open(&k, &block);

        ngx_str_null(&type);
        ngx_str_null(&id);
        ngx_str_null(&name);
        ngx_str_null(&input);

        while ((rc = ngx_http_aigw_json_next(&k, &key, &value)) == NGX_OK) {
            if (ngx_http_aigw_json_is(&key, "type")) {
                type = value;

            } else if (ngx_http_aigw_json_is(&key, "id")) {
                id = value;

            } else if (ngx_http_aigw_json_is(&key, "name")) {
                name = value;

            } else if (ngx_http_aigw_json_is(&key, "input")) {
                input = value;
            }
        }

        if (!ngx_http_aigw_json_string_is(&type, "tool_use")
            || id.len < 2 || name.len < 2)
        {
            continue;
        }

        if (texts++) {
            ngx_http_aigw_json_out_lit(o, ",");
        }

        ngx_http_aigw_json_out_lit(o, "{\"id\":");
        ngx_http_aigw_json_out_str(o, &id);
        ngx_http_aigw_json_out_lit(o, ",\"type\":\"function\","
                                   "\"function\":{\"name\":");
        ngx_http_aigw_json_out_str(o, &name);
        ngx_http_aigw_json_out_lit(o, ",\"arguments\":\"");
        if (input.len == 0) {
            ngx_str_set(&input, "{}");
        }

        ngx_http_aigw_json_out_escaped(o, input.data, input.len);
        ngx_http_aigw_json_out_lit(o, "\"}}");
    }

    ngx_http_aigw_json_out_lit(o, "]");

    return NGX_OK;
}


/*
 * A provider's error in the client's words: the message and the type
 * of the provider's error object, or, for a body that has none, the
 * status; the status itself goes on.
 */

ngx_int_t
ngx_http_aigw_translate_error(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_buf_t *b)
{
    u_char                *p, *code;
    size_t                 len;
    ngx_str_t              body, error, message, type, msg;
    ngx_uint_t             status;

    status = r->upstream->headers_in.status_n;

    body.data = b->pos;
    body.len = r->upstream->headers_in.content_length_n;

    ngx_str_null(&message);
    ngx_str_null(&type);

    /* {"type":"error","error":{"type","message"}} or {"error":{...}} */

    if (ngx_http_aigw_json_member(&body, "error", &error) == NGX_OK) {
        (void) ngx_http_aigw_json_member(&error, "message", &message);
        (void) ngx_http_aigw_json_member(&error, "type", &type);
    }

    if (message.len >= 2 && message.data[0] == '"') {
        msg.data = ngx_pnalloc(r->pool, message.len);
        if (msg.data == NULL) {
            return NGX_ERROR;
        }

        msg.len = ngx_http_aigw_scan_unescape(msg.data, message.data + 1,
                                              message.data + message.len - 1)
                  - msg.data;

    } else {
        msg.data = ngx_pnalloc(r->pool, sizeof("The provider answered .")
                                        + NGX_INT_T_LEN);
        if (msg.data == NULL) {
            return NGX_ERROR;
        }

        msg.len = ngx_sprintf(msg.data, "The provider answered %ui.", status)
                  - msg.data;
    }

    /* the provider's type, without its quotes, as the code */

    if (type.len >= 2 && type.data[0] == '"'
        && ngx_strlchr(type.data + 1, type.data + type.len, '\\') == NULL)
    {
        type.data++;
        type.len -= 2;

    } else {
        ngx_str_set(&type, "upstream_error");
    }

    /* the code is a C string to the format's writer */

    code = ngx_pnalloc(r->pool, type.len + 1);
    if (code == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn(code, type.data, type.len + 1);

    len = ctx->format->error_len + type.len + msg.len
          + ngx_escape_json(NULL, msg.data, msg.len);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    len = ctx->format->error(p, status, (char *) code, &msg) - p;

    ngx_http_aigw_translate_replace(r, b, p, p + len);

    return NGX_OK;
}


/* the held answer's body becomes [start, last) */

static void
ngx_http_aigw_translate_replace(ngx_http_request_t *r, ngx_buf_t *b,
    u_char *start, u_char *last)
{
    b->start = start;
    b->pos = start;
    b->last = last;
    b->end = last;

    r->upstream->headers_in.content_length_n = last - start;
}
