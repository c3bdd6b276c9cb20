
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_translate.h"


/*
 * A client speaking Anthropic's Messages API served by an OpenAI-format
 * provider: the request rebuilt as a chat completion request, the
 * answer as a message.  docs/translation.md has every field and what
 * becomes of it.  As in translate_chat.c, string literals are copied as
 * the client wrote them; an image's base64 source and a tool call's
 * input change shape, and are rewritten.
 */


static ngx_int_t ngx_http_aigw_translate_messages_param(
    ngx_http_aigw_translate_t *t, ngx_str_t *key, ngx_str_t *value);
static ngx_int_t ngx_http_aigw_translate_messages_system(
    ngx_http_aigw_translate_t *t, ngx_str_t *system);
static ngx_int_t ngx_http_aigw_translate_messages_message(
    ngx_http_aigw_translate_t *t, ngx_str_t *message);
static ngx_int_t ngx_http_aigw_translate_messages_user(
    ngx_http_aigw_translate_t *t, ngx_str_t *content);
static ngx_int_t ngx_http_aigw_translate_messages_assistant(
    ngx_http_aigw_translate_t *t, ngx_str_t *content);
static ngx_int_t ngx_http_aigw_translate_messages_result(
    ngx_http_aigw_translate_t *t, ngx_str_t *result);
static ngx_int_t ngx_http_aigw_translate_messages_part(
    ngx_http_aigw_translate_t *t, ngx_str_t *type, ngx_str_t *text,
    ngx_str_t *block);
static ngx_int_t ngx_http_aigw_translate_messages_image(
    ngx_http_aigw_translate_t *t, ngx_str_t *block);
static ngx_int_t ngx_http_aigw_translate_messages_tools(
    ngx_http_aigw_translate_t *t, ngx_str_t *tools);
static ngx_int_t ngx_http_aigw_translate_messages_tool_choice(
    ngx_http_aigw_translate_t *t, ngx_str_t *choice);
static ngx_int_t ngx_http_aigw_translate_messages_input(
    ngx_http_aigw_json_out_t *o, ngx_pool_t *pool, ngx_str_t *arguments);


/* a tool call of an answer or a chunk, and its function */

static ngx_str_t  ngx_http_aigw_translate_call_names[] = {
    ngx_string("id"), ngx_string("function")
};

static ngx_str_t  ngx_http_aigw_translate_function_names[] = {
    ngx_string("name"), ngx_string("arguments")
};

/* finish_reason as stop_reason */

static ngx_str_t  ngx_http_aigw_translate_stop[][2] = {
    { ngx_string("\"stop\""), ngx_string("\"end_turn\"") },
    { ngx_string("\"length\""), ngx_string("\"max_tokens\"") },
    { ngx_string("\"tool_calls\""), ngx_string("\"tool_use\"") },
    { ngx_string("\"function_call\""), ngx_string("\"tool_use\"") },
    { ngx_string("\"content_filter\""), ngx_string("\"refusal\"") },
    { ngx_null_string, ngx_null_string }
};


/*
 * The body of a Messages request as a chat completion request: its
 * parameters first, then "messages", the system prompt the first.
 */

ngx_int_t
ngx_http_aigw_translate_messages_request(ngx_http_aigw_translate_t *t)
{
    ngx_int_t             rc;
    ngx_str_t             key, value, messages, system, message;
    ngx_http_aigw_json_t  j, k;

    ngx_str_null(&messages);
    ngx_str_null(&system);

    if (ngx_http_aigw_json_open(&j, &t->body) != NGX_OK) {
        return NGX_ERROR;
    }

    while ((rc = ngx_http_aigw_json_next(&j, &key, &value)) == NGX_OK) {

        if (ngx_http_aigw_json_is(&key, "messages")) {
            messages = value;
            continue;
        }

        if (ngx_http_aigw_json_is(&key, "system")) {
            system = value;
            continue;
        }

        rc = ngx_http_aigw_translate_messages_param(t, &key, &value);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (t->tool_choice.len) {
        ngx_http_aigw_json_out_lit(&t->out, ",\"tool_choice\":");
        ngx_http_aigw_json_out_str(&t->out, &t->tool_choice);
    }

    if (t->serial) {
        ngx_http_aigw_json_out_lit(&t->out, ",\"parallel_tool_calls\":false");
    }

    ngx_http_aigw_json_out_lit(&t->out, ",\"messages\":[");

    if (system.len) {
        rc = ngx_http_aigw_translate_messages_system(t, &system);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (ngx_http_aigw_json_open(&k, &messages) != NGX_OK) {
        return NGX_ERROR;
    }

    while ((rc = ngx_http_aigw_json_next(&k, &key, &message)) == NGX_OK) {
        rc = ngx_http_aigw_translate_messages_message(t, &message);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (t->out.pos[-1] == ',') {
        t->out.pos--;
    }

    ngx_http_aigw_json_out_lit(&t->out, "]");

    return NGX_OK;
}


/* a top-level field but "messages" and "system" */

static ngx_int_t
ngx_http_aigw_translate_messages_param(ngx_http_aigw_translate_t *t,
    ngx_str_t *key, ngx_str_t *value)
{
    ngx_str_t                  v;
    ngx_http_aigw_json_out_t  *o;

    o = &t->out;

    if (ngx_http_aigw_json_is(key, "model")
        || ngx_http_aigw_json_is(key, "service_tier")
        || (value->len == 4 && ngx_strncmp(value->data, "null", 4) == 0))
    {
        return NGX_OK;
    }

    if (ngx_http_aigw_json_is(key, "max_tokens")
        || ngx_http_aigw_json_is(key, "temperature")
        || ngx_http_aigw_json_is(key, "top_p")
        || ngx_http_aigw_json_is(key, "stream"))
    {
        ngx_http_aigw_json_out_lit(o, ",\"");
        ngx_http_aigw_json_out_str(o, key);
        ngx_http_aigw_json_out_lit(o, "\":");
        ngx_http_aigw_json_out_str(o, value);

        /* a stream's usage comes only when asked for */

        if (ngx_http_aigw_json_is(key, "stream") && value->data[0] == 't') {
            ngx_http_aigw_json_out_lit(o, ",\"stream_options\":"
                                       "{\"include_usage\":true}");
        }

        return NGX_OK;
    }

    if (ngx_http_aigw_json_is(key, "stop_sequences")) {
        ngx_http_aigw_json_out_lit(o, ",\"stop\":");
        ngx_http_aigw_json_out_str(o, value);
        return NGX_OK;
    }

    if (ngx_http_aigw_json_is(key, "metadata")) {

        /* metadata.user_id is the end user; the rest changes nothing */

        if (ngx_http_aigw_json_member(value, "user_id", &v) == NGX_OK
            && v.data[0] == '"')
        {
            ngx_http_aigw_json_out_lit(o, ",\"user\":");
            ngx_http_aigw_json_out_str(o, &v);
        }

        return NGX_OK;
    }

    if (ngx_http_aigw_json_is(key, "tools")) {
        return ngx_http_aigw_translate_messages_tools(t, value);
    }

    if (ngx_http_aigw_json_is(key, "tool_choice")) {
        return ngx_http_aigw_translate_messages_tool_choice(t, value);
    }

    if (ngx_http_aigw_json_is(key, "thinking")) {
        return ngx_http_aigw_json_member(value, "type", &v) == NGX_OK
               && ngx_http_aigw_json_string_is(&v, "disabled")
               ? NGX_OK
               : ngx_http_aigw_translate_refuse(t, "thinking",
                                                "a thinking budget has no "
                                                "counterpart");
    }

    if (ngx_http_aigw_json_is(key, "top_k")) {
        return ngx_http_aigw_translate_refuse(t, "top_k",
                                              "OpenAI has no top_k");
    }

    t->reason = "it has no counterpart";
    t->param = (const char *) ngx_pnalloc(t->r->pool, key->len + 1);
    if (t->param == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn((u_char *) t->param, key->data, key->len + 1);

    return NGX_HTTP_AIGW_TRANSLATE_REFUSED;
}


/* the system prompt, a string or text blocks, as one system message */

static ngx_int_t
ngx_http_aigw_translate_messages_system(ngx_http_aigw_translate_t *t,
    ngx_str_t *system)
{
    ngx_int_t                  rc;
    ngx_uint_t                 n;
    ngx_str_t                  key, block, m[2];
    ngx_http_aigw_json_t       j;
    ngx_http_aigw_json_out_t  *o;

    static ngx_str_t  names[] = {
        ngx_string("type"), ngx_string("text")
    };

    o = &t->out;

    ngx_http_aigw_json_out_lit(o, "{\"role\":\"system\",\"content\":");

    if (system->data[0] == '"') {
        ngx_http_aigw_json_out_str(o, system);
        ngx_http_aigw_json_out_lit(o, "},");
        return NGX_OK;
    }

    if (ngx_http_aigw_json_open(&j, system) != NGX_OK || j.close != ']') {
        return ngx_http_aigw_translate_refuse(t, "system",
                                              "neither a string nor text "
                                              "blocks");
    }

    /* text blocks joined by a newline: one string, as every server takes */

    ngx_http_aigw_json_out_lit(o, "\"");

    for (n = 0; (rc = ngx_http_aigw_json_next(&j, &key, &block)) == NGX_OK;
         n++)
    {
        rc = ngx_http_aigw_translate_object(t, "system", "a block that is "
                                            "not text", &block, names, m);
        if (rc != NGX_OK) {
            return rc;
        }

        if (!ngx_http_aigw_json_string_is(&m[0], "text")
            || m[1].len < 2 || m[1].data[0] != '"')
        {
            return ngx_http_aigw_translate_refuse(t, "system",
                                                  "a block that is not "
                                                  "text");
        }

        if (n) {
            ngx_http_aigw_json_out_lit(o, "\\n");
        }

        ngx_http_aigw_json_out_add(o, m[1].data + 1, m[1].len - 2);
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    ngx_http_aigw_json_out_lit(o, "\"},");

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_translate_messages_message(ngx_http_aigw_translate_t *t,
    ngx_str_t *message)
{
    ngx_int_t  rc;
    ngx_str_t  m[2];

    static ngx_str_t  names[] = {
        ngx_string("role"), ngx_string("content")
    };

    rc = ngx_http_aigw_translate_object(t, "messages", "a message is not "
                                        "an object", message, names, m);
    if (rc != NGX_OK) {
        return rc;
    }

    if (m[0].len == 0 || m[1].len == 0) {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "a message without a role "
                                              "or a content");
    }

    if (ngx_http_aigw_json_string_is(&m[0], "user")) {
        return ngx_http_aigw_translate_messages_user(t, &m[1]);
    }

    if (ngx_http_aigw_json_string_is(&m[0], "assistant")) {
        return ngx_http_aigw_translate_messages_assistant(t, &m[1]);
    }

    return ngx_http_aigw_translate_refuse(t, "messages",
                                          "a role other than user or "
                                          "assistant");
}


/*
 * A user's content: its tool results first, each a tool message, as
 * OpenAI wants them right after the assistant's calls; then the rest
 * as one user message.
 */

static ngx_int_t
ngx_http_aigw_translate_messages_user(ngx_http_aigw_translate_t *t,
    ngx_str_t *content)
{
    ngx_int_t                  rc;
    ngx_uint_t                 parts;
    ngx_str_t                  key, block, m[4];
    ngx_http_aigw_json_t       j;
    ngx_http_aigw_json_out_t  *o;

    /* a tool result's, or a text block's */

    static ngx_str_t  names[] = {
        ngx_string("type"), ngx_string("tool_use_id"), ngx_string("content"),
        ngx_string("text")
    };

    o = &t->out;

    if (content->data[0] == '"') {
        ngx_http_aigw_json_out_lit(o, "{\"role\":\"user\",\"content\":");
        ngx_http_aigw_json_out_str(o, content);
        ngx_http_aigw_json_out_lit(o, "},");
        return NGX_OK;
    }

    if (ngx_http_aigw_json_open(&j, content) != NGX_OK || j.close != ']') {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "a content is neither a "
                                              "string nor blocks");
    }

    parts = 0;

    while ((rc = ngx_http_aigw_json_next(&j, &key, &block)) == NGX_OK) {
        rc = ngx_http_aigw_translate_object(t, "messages", "a block without "
                                            "a type", &block, names, m);
        if (rc != NGX_OK) {
            return rc;
        }

        if (m[0].len == 0) {
            return ngx_http_aigw_translate_refuse(t, "messages",
                                                  "a block without a type");
        }

        if (!ngx_http_aigw_json_string_is(&m[0], "tool_result")) {
            parts++;
            continue;
        }

        if (m[1].len == 0 || m[1].data[0] != '"') {
            return ngx_http_aigw_translate_refuse(t, "messages",
                                                  "a tool_result without "
                                                  "its tool_use_id");
        }

        ngx_http_aigw_json_out_lit(o, "{\"role\":\"tool\",\"tool_call_id\":");
        ngx_http_aigw_json_out_str(o, &m[1]);
        ngx_http_aigw_json_out_lit(o, ",\"content\":");

        if (m[2].len == 0) {
            ngx_http_aigw_json_out_lit(o, "\"\"");

        } else if (m[2].data[0] == '"') {
            ngx_http_aigw_json_out_str(o, &m[2]);

        } else {
            rc = ngx_http_aigw_translate_messages_result(t, &m[2]);

            if (rc != NGX_OK) {
                return rc;
            }
        }

        ngx_http_aigw_json_out_lit(o, "},");
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (parts == 0) {
        return NGX_OK;
    }

    ngx_http_aigw_json_out_lit(o, "{\"role\":\"user\",\"content\":[");

    (void) ngx_http_aigw_json_open(&j, content);

    while ((rc = ngx_http_aigw_json_next(&j, &key, &block)) == NGX_OK) {
        (void) ngx_http_aigw_json_members(&block, names, m, 4);

        if (ngx_http_aigw_json_string_is(&m[0], "tool_result")) {
            continue;
        }

        rc = ngx_http_aigw_translate_messages_part(t, &m[0], &m[3], &block);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (o->pos[-1] == ',') {
        o->pos--;
    }

    ngx_http_aigw_json_out_lit(o, "]},");

    return NGX_OK;
}


/* a tool result's blocks: text parts, as a tool message can have them */

static ngx_int_t
ngx_http_aigw_translate_messages_result(ngx_http_aigw_translate_t *t,
    ngx_str_t *result)
{
    ngx_int_t             rc;
    ngx_str_t             key, block, m[2];
    ngx_http_aigw_json_t  j;

    static ngx_str_t  names[] = {
        ngx_string("type"), ngx_string("text")
    };

    if (ngx_http_aigw_json_open(&j, result) != NGX_OK || j.close != ']') {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "a tool_result's content is "
                                              "neither a string nor "
                                              "blocks");
    }

    ngx_http_aigw_json_out_lit(&t->out, "[");

    while ((rc = ngx_http_aigw_json_next(&j, &key, &block)) == NGX_OK) {
        rc = ngx_http_aigw_translate_object(t, "messages", "a tool_result "
                                            "with a block other than text",
                                            &block, names, m);
        if (rc != NGX_OK) {
            return rc;
        }

        if (!ngx_http_aigw_json_string_is(&m[0], "text")) {
            return ngx_http_aigw_translate_refuse(t, "messages",
                                                  "a tool_result with a "
                                                  "block other than text");
        }

        rc = ngx_http_aigw_translate_messages_part(t, &m[0], &m[1], &block);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (t->out.pos[-1] == ',') {
        t->out.pos--;
    }

    ngx_http_aigw_json_out_lit(&t->out, "]");

    return NGX_OK;
}


/* a text or image block as a content part, with a comma after it */

static ngx_int_t
ngx_http_aigw_translate_messages_part(ngx_http_aigw_translate_t *t,
    ngx_str_t *type, ngx_str_t *text, ngx_str_t *block)
{
    if (ngx_http_aigw_json_string_is(type, "text")) {
        if (text->len == 0 || text->data[0] != '"') {
            return ngx_http_aigw_translate_refuse(t, "messages",
                                                  "a text block without "
                                                  "its text");
        }

        ngx_http_aigw_json_out_lit(&t->out, "{\"type\":\"text\",\"text\":");
        ngx_http_aigw_json_out_str(&t->out, text);
        ngx_http_aigw_json_out_lit(&t->out, "},");

        return NGX_OK;
    }

    if (ngx_http_aigw_json_string_is(type, "image")) {
        return ngx_http_aigw_translate_messages_image(t, block);
    }

    return ngx_http_aigw_translate_refuse(t, "messages",
                                          "a block other than text, image, "
                                          "tool_use or tool_result "
                                          "(document, search_result)");
}


/* a base64 source as a data URL, a url source as it is */

static ngx_int_t
ngx_http_aigw_translate_messages_image(ngx_http_aigw_translate_t *t,
    ngx_str_t *block)
{
    ngx_int_t                  rc;
    ngx_str_t                  source, media, data, m[4];
    ngx_http_aigw_json_out_t  *o;

    static ngx_str_t  source_name = ngx_string("source");

    static ngx_str_t  names[] = {
        ngx_string("type"), ngx_string("url"), ngx_string("media_type"),
        ngx_string("data")
    };

    o = &t->out;

    rc = ngx_http_aigw_translate_members(t, "messages", "an image without "
                                         "a source", block, &source_name,
                                         &source, 1);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_aigw_translate_object(t, "messages", "an image without a "
                                        "source", &source, names, m);
    if (rc != NGX_OK) {
        return rc;
    }

    if (m[0].len == 0) {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "an image without a source");
    }

    if (ngx_http_aigw_json_string_is(&m[0], "url")
        && m[1].len && m[1].data[0] == '"')
    {
        ngx_http_aigw_json_out_lit(o, "{\"type\":\"image_url\","
                                   "\"image_url\":{\"url\":");
        ngx_http_aigw_json_out_str(o, &m[1]);
        ngx_http_aigw_json_out_lit(o, "}},");
        return NGX_OK;
    }

    media = m[2];
    data = m[3];

    if (!ngx_http_aigw_json_string_is(&m[0], "base64")
        || media.len == 0 || data.len == 0
        || media.data[0] != '"' || data.data[0] != '"')
    {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "an image source other than "
                                              "base64 or url");
    }

    /* "data:" media ";base64," data, each still a string's content */

    ngx_http_aigw_json_out_lit(o, "{\"type\":\"image_url\","
                               "\"image_url\":{\"url\":\"data:");
    ngx_http_aigw_json_out_add(o, media.data + 1, media.len - 2);
    ngx_http_aigw_json_out_lit(o, ";base64,");
    ngx_http_aigw_json_out_add(o, data.data + 1, data.len - 2);
    ngx_http_aigw_json_out_lit(o, "\"}},");

    return NGX_OK;
}


/*
 * An assistant's content: text blocks joined as "content", tool_use
 * blocks as "tool_calls" with their input as a string; thinking blocks
 * are Anthropic's own, and stay out.
 */

static ngx_int_t
ngx_http_aigw_translate_messages_assistant(ngx_http_aigw_translate_t *t,
    ngx_str_t *content)
{
    ngx_int_t                  rc;
    ngx_uint_t                 texts, calls;
    ngx_str_t                  key, block, input, m[5];
    ngx_http_aigw_json_t       j;
    ngx_http_aigw_json_out_t  *o;

    /* a text block's, then a tool_use block's */

    static ngx_str_t  names[] = {
        ngx_string("type"), ngx_string("text"), ngx_string("id"),
        ngx_string("name"), ngx_string("input")
    };

    o = &t->out;

    ngx_http_aigw_json_out_lit(o, "{\"role\":\"assistant\",\"content\":");

    if (content->data[0] == '"') {
        ngx_http_aigw_json_out_str(o, content);
        ngx_http_aigw_json_out_lit(o, "},");
        return NGX_OK;
    }

    if (ngx_http_aigw_json_open(&j, content) != NGX_OK || j.close != ']') {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "a content is neither a "
                                              "string nor blocks");
    }

    texts = 0;
    calls = 0;

    while ((rc = ngx_http_aigw_json_next(&j, &key, &block)) == NGX_OK) {
        /* type, text: the first two names */

        rc = ngx_http_aigw_translate_members(t, "messages", "a block without "
                                             "a type", &block, names, m, 2);
        if (rc != NGX_OK) {
            return rc;
        }

        if (m[0].len == 0) {
            return ngx_http_aigw_translate_refuse(t, "messages",
                                                  "a block without a type");
        }

        if (ngx_http_aigw_json_string_is(&m[0], "text")
            && m[1].len && m[1].data[0] == '"')
        {
            if (texts++ == 0) {
                ngx_http_aigw_json_out_lit(o, "\"");
            }

            ngx_http_aigw_json_out_add(o, m[1].data + 1, m[1].len - 2);

        } else if (ngx_http_aigw_json_string_is(&m[0], "tool_use")) {
            calls++;

        } else if (!ngx_http_aigw_json_string_is(&m[0], "thinking")
                   && !ngx_http_aigw_json_string_is(&m[0],
                                                    "redacted_thinking"))
        {
            return ngx_http_aigw_translate_refuse(t, "messages",
                                                  "an assistant's block "
                                                  "other than text, "
                                                  "tool_use or thinking");
        }
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (texts) {
        ngx_http_aigw_json_out_lit(o, "\"");

    } else {
        ngx_http_aigw_json_out_lit(o, "null");
    }

    if (calls) {
        ngx_http_aigw_json_out_lit(o, ",\"tool_calls\":[");

        (void) ngx_http_aigw_json_open(&j, content);

        while ((rc = ngx_http_aigw_json_next(&j, &key, &block)) == NGX_OK) {
            (void) ngx_http_aigw_json_members(&block, names, m, 5);

            if (!ngx_http_aigw_json_string_is(&m[0], "tool_use")) {
                continue;
            }

            if (m[2].len == 0 || m[3].len == 0
                || m[2].data[0] != '"' || m[3].data[0] != '"')
            {
                return ngx_http_aigw_translate_refuse(t, "messages",
                                                      "a tool_use without "
                                                      "an id or a name");
            }

            input = m[4];

            if (input.len == 0) {
                ngx_str_set(&input, "{}");
            }

            ngx_http_aigw_json_out_lit(o, "{\"id\":");
            ngx_http_aigw_json_out_str(o, &m[2]);
            ngx_http_aigw_json_out_lit(o, ",\"type\":\"function\","
                                       "\"function\":{\"name\":");
            ngx_http_aigw_json_out_str(o, &m[3]);
            ngx_http_aigw_json_out_lit(o, ",\"arguments\":\"");
            ngx_http_aigw_json_out_escaped(o, input.data, input.len);
            ngx_http_aigw_json_out_lit(o, "\"}},");
        }

        if (o->pos[-1] == ',') {
            o->pos--;
        }

        ngx_http_aigw_json_out_lit(o, "]");
    }

    ngx_http_aigw_json_out_lit(o, "},");

    return NGX_OK;
}


/*
 * [{"name","description","input_schema"}] as
 * [{"type":"function","function":{"name","description","parameters"}}];
 * Anthropic's own tools (web search, code execution, ...) have none
 */

static ngx_int_t
ngx_http_aigw_translate_messages_tools(ngx_http_aigw_translate_t *t,
    ngx_str_t *tools)
{
    ngx_int_t                  rc;
    ngx_str_t                  key, tool, m[4];
    ngx_http_aigw_json_t       j;
    ngx_http_aigw_json_out_t  *o;

    static ngx_str_t  names[] = {
        ngx_string("type"), ngx_string("name"), ngx_string("description"),
        ngx_string("input_schema")
    };

    o = &t->out;

    if (ngx_http_aigw_json_open(&j, tools) != NGX_OK || j.close != ']') {
        return ngx_http_aigw_translate_refuse(t, "tools", "not an array");
    }

    ngx_http_aigw_json_out_lit(o, ",\"tools\":[");

    while ((rc = ngx_http_aigw_json_next(&j, &key, &tool)) == NGX_OK) {

        /* type, name, description, input_schema */

        rc = ngx_http_aigw_translate_object(t, "tools", "a tool without a "
                                            "name", &tool, names, m);
        if (rc != NGX_OK) {
            return rc;
        }

        if (m[0].len && !ngx_http_aigw_json_string_is(&m[0], "custom")) {
            return ngx_http_aigw_translate_refuse(t, "tools",
                                                  "a server tool of "
                                                  "Anthropic's");
        }

        if (m[1].len == 0 || m[1].data[0] != '"') {
            return ngx_http_aigw_translate_refuse(t, "tools",
                                                  "a tool without a name");
        }

        ngx_http_aigw_json_out_lit(o, "{\"type\":\"function\","
                                   "\"function\":{\"name\":");
        ngx_http_aigw_json_out_str(o, &m[1]);

        if (m[2].len) {
            ngx_http_aigw_json_out_lit(o, ",\"description\":");
            ngx_http_aigw_json_out_str(o, &m[2]);
        }

        if (m[3].len) {
            ngx_http_aigw_json_out_lit(o, ",\"parameters\":");
            ngx_http_aigw_json_out_str(o, &m[3]);
        }

        ngx_http_aigw_json_out_lit(o, "}},");
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (o->pos[-1] == ',') {
        o->pos--;
    }

    ngx_http_aigw_json_out_lit(o, "]");

    return NGX_OK;
}


/* {"type":"auto"|"any"|"none"|"tool","name"?,"disable_parallel_tool_use"?} */

static ngx_int_t
ngx_http_aigw_translate_messages_tool_choice(ngx_http_aigw_translate_t *t,
    ngx_str_t *choice)
{
    ngx_int_t                 rc;
    ngx_str_t                 type, name, m[3];
    ngx_http_aigw_json_out_t  o;

    static ngx_str_t  names[] = {
        ngx_string("type"), ngx_string("name"),
        ngx_string("disable_parallel_tool_use")
    };

    rc = ngx_http_aigw_translate_object(t, "tool_choice", "without a type",
                                        choice, names, m);
    if (rc != NGX_OK) {
        return rc;
    }

    type = m[0];
    name = m[1];

    if (m[2].len && m[2].data[0] == 't') {
        t->serial = 1;
    }

    if (type.len == 0) {
        return ngx_http_aigw_translate_refuse(t, "tool_choice",
                                              "without a type");
    }

    if (ngx_http_aigw_json_string_is(&type, "auto")) {
        ngx_str_set(&t->tool_choice, "\"auto\"");
        return NGX_OK;
    }

    if (ngx_http_aigw_json_string_is(&type, "any")) {
        ngx_str_set(&t->tool_choice, "\"required\"");
        return NGX_OK;
    }

    if (ngx_http_aigw_json_string_is(&type, "none")) {
        ngx_str_set(&t->tool_choice, "\"none\"");
        return NGX_OK;
    }

    if (!ngx_http_aigw_json_string_is(&type, "tool")
        || name.len == 0 || name.data[0] != '"')
    {
        return ngx_http_aigw_translate_refuse(t, "tool_choice",
                                              "not auto, any, none or a "
                                              "tool by name");
    }

    ngx_memzero(&o, sizeof(ngx_http_aigw_json_out_t));
    o.pool = t->r->pool;

    ngx_http_aigw_json_out_lit(&o, "{\"type\":\"function\",\"function\":"
                               "{\"name\":");
    ngx_http_aigw_json_out_str(&o, &name);
    ngx_http_aigw_json_out_lit(&o, "}}");

    if (o.failed) {
        return NGX_ERROR;
    }

    t->tool_choice.data = o.start;
    t->tool_choice.len = o.pos - o.start;

    return NGX_OK;
}


/* an OpenAI chat completion as an Anthropic message */

ngx_int_t
ngx_http_aigw_translate_messages_answer(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t *b)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_uint_t                 blocks;
    ngx_str_t                  body, key, id, choice, content, refusal,
                               calls, finish, call, args, top[2], c[2],
                               msg[3], fn[2], *f;
    ngx_http_aigw_json_t       j;
    ngx_http_aigw_json_out_t   o;

    static ngx_str_t  top_names[] = {
        ngx_string("id"), ngx_string("choices")
    };

    static ngx_str_t  choice_names[] = {
        ngx_string("finish_reason"), ngx_string("message")
    };

    static ngx_str_t  message_names[] = {
        ngx_string("content"), ngx_string("refusal"),
        ngx_string("tool_calls")
    };

    body.data = b->pos;
    body.len = r->upstream->headers_in.content_length_n;

    ngx_str_null(&content);
    ngx_str_null(&refusal);
    ngx_str_null(&calls);
    ngx_str_null(&finish);

    /* a key twice: the client would not read what the provider meant */

    if (ngx_http_aigw_json_members(&body, top_names, top, 2)
        == NGX_HTTP_AIGW_JSON_TWICE)
    {
        return NGX_ERROR;
    }

    id = top[0];

    /* the first choice: Anthropic has one answer */

    if (ngx_http_aigw_json_open(&j, &top[1]) == NGX_OK
        && ngx_http_aigw_json_next(&j, &key, &choice) == NGX_OK)
    {
        rc = ngx_http_aigw_json_members(&choice, choice_names, c, 2);

        if (rc == NGX_OK) {
            finish = c[0];
            rc = ngx_http_aigw_json_members(&c[1], message_names, msg, 3);
        }

        if (rc == NGX_HTTP_AIGW_JSON_TWICE) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK) {
            content = msg[0];
            refusal = msg[1];
            calls = msg[2];
        }
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

    ngx_http_aigw_json_out_lit(&o, ",\"type\":\"message\","
                               "\"role\":\"assistant\",\"model\":\"");
    ngx_http_aigw_json_out_escaped(&o, ctx->model.data, ctx->model.len);
    ngx_http_aigw_json_out_lit(&o, "\",\"content\":[");

    blocks = 0;

    if (content.len > 2 && content.data[0] == '"') {
        ngx_http_aigw_json_out_lit(&o, "{\"type\":\"text\",\"text\":");
        ngx_http_aigw_json_out_str(&o, &content);
        ngx_http_aigw_json_out_lit(&o, "}");
        blocks++;
    }

    if (refusal.len > 2 && refusal.data[0] == '"') {
        if (blocks) {
            ngx_http_aigw_json_out_lit(&o, ",");
        }
        ngx_http_aigw_json_out_lit(&o, "{\"type\":\"text\",\"text\":");
        ngx_http_aigw_json_out_str(&o, &refusal);
        ngx_http_aigw_json_out_lit(&o, "}");
        blocks++;
        ngx_str_set(&finish, "\"content_filter\"");
    }

    if (calls.len && ngx_http_aigw_json_open(&j, &calls) == NGX_OK) {
        while ((rc = ngx_http_aigw_json_next(&j, &key, &call)) == NGX_OK) {

            /* id, function: name, arguments */

            if (ngx_http_aigw_json_members(&call,
                                           ngx_http_aigw_translate_call_names,
                                           c, 2)
                != NGX_OK
                || ngx_http_aigw_json_members(&c[1],
                                       ngx_http_aigw_translate_function_names,
                                       fn, 2)
                   != NGX_OK
                || c[0].len == 0 || fn[0].len == 0)
            {
                continue;
            }

            args = fn[1];

            if (blocks) {
            ngx_http_aigw_json_out_lit(&o, ",");
        }
            ngx_http_aigw_json_out_lit(&o, "{\"type\":\"tool_use\",\"id\":");
            ngx_http_aigw_json_out_str(&o, &c[0]);
            ngx_http_aigw_json_out_lit(&o, ",\"name\":");
            ngx_http_aigw_json_out_str(&o, &fn[0]);
            ngx_http_aigw_json_out_lit(&o, ",\"input\":");

            if (ngx_http_aigw_translate_messages_input(&o, r->pool, &args)
                != NGX_OK)
            {
                ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                              "aigw: the arguments of a tool call of "
                              "provider \"%V\" are not a JSON object, "
                              "passed on as {}",
                              &ctx->candidates[ctx->current]->provider->name);

                ngx_http_aigw_json_out_lit(&o, "{}");
            }

            ngx_http_aigw_json_out_lit(&o, "}");
            blocks++;
        }
    }

    ngx_http_aigw_json_out_lit(&o, "],\"stop_reason\":");

    for (f = ngx_http_aigw_translate_stop[0]; f[0].len; f += 2) {
        if (finish.len == f[0].len
            && ngx_strncmp(finish.data, f[0].data, f[0].len) == 0)
        {
            break;
        }
    }

    if (f[0].len) {
        ngx_http_aigw_json_out_str(&o, &f[1]);

    } else {
        ngx_http_aigw_json_out_lit(&o, "\"end_turn\"");
    }

    p = ngx_http_aigw_json_out_reserve(&o, 3 * NGX_INT_T_LEN + 160);
    if (p) {
        o.pos = ngx_sprintf(p, ",\"stop_sequence\":null,\"usage\":{"
                            "\"input_tokens\":%ui,"
                            "\"cache_creation_input_tokens\":0,"
                            "\"cache_read_input_tokens\":%ui,"
                            "\"output_tokens\":%ui}}",
                            ctx->prompt_tokens - ngx_min(ctx->cached_tokens,
                                                         ctx->prompt_tokens),
                            ctx->cached_tokens, ctx->completion_tokens);
    }

    if (o.failed) {
        return NGX_ERROR;
    }

    ngx_http_aigw_translate_replace(r, b, o.start, o.pos);

    return NGX_OK;
}


/* a tool call's arguments, a string, as the object it holds */

static ngx_int_t
ngx_http_aigw_translate_messages_input(ngx_http_aigw_json_out_t *o,
    ngx_pool_t *pool, ngx_str_t *arguments)
{
    u_char     *p, *end, *last;
    ngx_str_t   raw;

    if (arguments->len < 2 || arguments->data[0] != '"') {
        return NGX_DECLINED;
    }

    if (arguments->len == 2) {
        ngx_http_aigw_json_out_lit(o, "{}");
        return NGX_OK;
    }

    if (ngx_http_aigw_translate_unescape(pool, arguments, &raw) != NGX_OK) {
        return NGX_ERROR;
    }

    last = raw.data + raw.len;

    p = ngx_http_aigw_json_ws(raw.data, last);
    end = ngx_http_aigw_json_skip(p, last);

    if (end == NULL || *p != '{' || ngx_http_aigw_json_ws(end, last) != last) {
        return NGX_DECLINED;
    }

    ngx_http_aigw_json_out_add(o, p, end - p);

    return NGX_OK;
}


/*
 * A chunk of an OpenAI stream as the events of an Anthropic one, in
 * ts->out:
 *
 *     the first chunk             message_start
 *     delta.content               a text block started if none is open,
 *                                 then content_block_delta (text_delta)
 *     delta.tool_calls            with an id: the open block stopped, a
 *                                 tool_use block started; arguments:
 *                                 content_block_delta (input_json_delta)
 *     finish_reason               the open block stopped
 *     [DONE]                      message_delta (stop reason, usage),
 *                                 message_stop
 *
 * The usage chunk (choices [], asked for by the translated request) is
 * read by the meter; it has no event of its own.
 */

static void ngx_http_aigw_translate_messages_stop_block(
    ngx_http_aigw_translate_stream_t *ts);


ngx_int_t
ngx_http_aigw_translate_messages_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_translate_stream_t *ts,
    ngx_http_aigw_sse_event_t *ev)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_str_t                  data, key, name, choice, content, calls, call,
                               id, args, finish, top[3], c[2], d[2], fn[2],
                               *f;
    ngx_http_aigw_json_t       j, k;
    ngx_http_aigw_json_out_t  *o;

    static ngx_str_t  top_names[] = {
        ngx_string("error"), ngx_string("id"), ngx_string("choices")
    };

    static ngx_str_t  choice_names[] = {
        ngx_string("delta"), ngx_string("finish_reason")
    };

    static ngx_str_t  delta_names[] = {
        ngx_string("content"), ngx_string("tool_calls")
    };

    o = &ts->out;

    if (ev->done) {
        if (ts->open) {
            ngx_http_aigw_translate_messages_stop_block(ts);
        }

        if (ts->stop.len == 0) {
            ngx_str_set(&ts->stop, "\"end_turn\"");
        }

        p = ngx_http_aigw_json_out_reserve(o, 2 * NGX_INT_T_LEN + 256
                                              + ts->stop.len);
        if (p) {
            o->pos = ngx_sprintf(p, "event: message_delta\ndata: {\"type\":"
                                 "\"message_delta\",\"delta\":{"
                                 "\"stop_reason\":%V,\"stop_sequence\":null},"
                                 "\"usage\":{\"input_tokens\":%ui,"
                                 "\"output_tokens\":%ui}}\n\n"
                                 "event: message_stop\ndata: {\"type\":"
                                 "\"message_stop\"}\n\n",
                                 &ts->stop,
                                 ctx->prompt_tokens
                                 - ngx_min(ctx->cached_tokens,
                                           ctx->prompt_tokens),
                                 ctx->completion_tokens);
        }

        ts->done = 1;

        return NGX_OK;
    }

    data = ev->data;

    if (data.len == 0 || data.data[0] != '{') {
        return NGX_OK;
    }

    /* error, id, choices; a key twice cannot be translated */

    rc = ngx_http_aigw_json_members(&data, top_names, top, 3);

    if (rc == NGX_HTTP_AIGW_JSON_TWICE) {
        return NGX_DECLINED;
    }

    /* an error event of the provider's */

    if (top[0].len) {
        if (ngx_http_aigw_json_member(&top[0], "message", &name) == NGX_OK
            && name.data[0] == '"')
        {
            ngx_http_aigw_json_out_lit(o, "event: error\ndata: {\"type\":"
                                       "\"error\",\"error\":{\"type\":"
                                       "\"api_error\",\"message\":");
            ngx_http_aigw_json_out_str(o, &name);
            ngx_http_aigw_json_out_lit(o, "}}\n\n");
        }

        return NGX_OK;
    }

    if (!ts->started) {
        ts->started = 1;

        id = top[1];

        if (id.len == 0 || id.data[0] != '"') {
            ngx_str_set(&id, "\"\"");
        }

        ngx_http_aigw_json_out_lit(o, "event: message_start\ndata: "
                                   "{\"type\":\"message_start\",\"message\":"
                                   "{\"id\":");
        ngx_http_aigw_json_out_str(o, &id);
        ngx_http_aigw_json_out_lit(o, ",\"type\":\"message\","
                                   "\"role\":\"assistant\",\"model\":\"");
        ngx_http_aigw_json_out_escaped(o, ctx->model.data, ctx->model.len);
        ngx_http_aigw_json_out_lit(o, "\",\"content\":[],"
                                   "\"stop_reason\":null,"
                                   "\"stop_sequence\":null,\"usage\":"
                                   "{\"input_tokens\":0,"
                                   "\"output_tokens\":0}}}\n\n");
    }

    if (ngx_http_aigw_json_open(&j, &top[2]) != NGX_OK
        || ngx_http_aigw_json_next(&j, &key, &choice) != NGX_OK)
    {
        return NGX_OK;      /* the usage chunk */
    }

    /* delta, finish_reason; delta's content, tool_calls */

    rc = ngx_http_aigw_json_members(&choice, choice_names, c, 2);

    if (rc == NGX_OK && c[0].len) {
        rc = ngx_http_aigw_json_members(&c[0], delta_names, d, 2);

    } else {
        ngx_str_null(&d[0]);
        ngx_str_null(&d[1]);
    }

    if (rc == NGX_HTTP_AIGW_JSON_TWICE) {
        return NGX_DECLINED;
    }

    content = d[0];
    calls = d[1];
    finish = c[1];

    if (content.len > 2 && content.data[0] == '"') {
        if (!ts->open) {
            p = ngx_http_aigw_json_out_reserve(o, NGX_INT_T_LEN + 160);
            if (p) {
                o->pos = ngx_sprintf(p, "event: content_block_start\n"
                                     "data: {\"type\":"
                                     "\"content_block_start\","
                                     "\"index\":%ui,\"content_block\":"
                                     "{\"type\":\"text\",\"text\":\"\"}}"
                                     "\n\n", ts->blocks);
            }

            ts->open = 1;
        }

        p = ngx_http_aigw_json_out_reserve(o, NGX_INT_T_LEN + 128);
        if (p) {
            o->pos = ngx_sprintf(p, "event: content_block_delta\n"
                                 "data: {\"type\":\"content_block_delta\","
                                 "\"index\":%ui,\"delta\":{\"type\":"
                                 "\"text_delta\",\"text\":", ts->blocks);
        }

        ngx_http_aigw_json_out_str(o, &content);
        ngx_http_aigw_json_out_lit(o, "}}\n\n");
    }

    if (ngx_http_aigw_json_open(&k, &calls) == NGX_OK) {
        while ((rc = ngx_http_aigw_json_next(&k, &key, &call)) == NGX_OK)
        {
            /* id, function: name, arguments */

            rc = ngx_http_aigw_json_members(&call,
                                        ngx_http_aigw_translate_call_names,
                                        c, 2);
            if (rc == NGX_OK) {
                rc = ngx_http_aigw_json_members(&c[1],
                                   ngx_http_aigw_translate_function_names,
                                   fn, 2);
            }

            if (rc == NGX_HTTP_AIGW_JSON_TWICE) {
                return NGX_DECLINED;
            }

            if (rc != NGX_OK) {
                continue;
            }

            id = c[0];
            name = fn[0];
            args = fn[1];

            /* an id begins a call: a tool_use block of its own */

            if (id.len && id.data[0] == '"' && name.len) {
                if (ts->open) {
                    ngx_http_aigw_translate_messages_stop_block(ts);
                }

                p = ngx_http_aigw_json_out_reserve(o, NGX_INT_T_LEN
                                                      + 160);
                if (p) {
                    o->pos = ngx_sprintf(p, "event: content_block_start\n"
                                         "data: {\"type\":"
                                         "\"content_block_start\","
                                         "\"index\":%ui,"
                                         "\"content_block\":{\"type\":"
                                         "\"tool_use\",\"id\":",
                                         ts->blocks);
                }

                ngx_http_aigw_json_out_str(o, &id);
                ngx_http_aigw_json_out_lit(o, ",\"name\":");
                ngx_http_aigw_json_out_str(o, &name);
                ngx_http_aigw_json_out_lit(o, ",\"input\":{}}}\n\n");

                ts->open = 1;
                ts->tools++;
            }

            if (ts->tools && args.len > 2 && args.data[0] == '"') {
                p = ngx_http_aigw_json_out_reserve(o, NGX_INT_T_LEN
                                                      + 160);
                if (p) {
                    o->pos = ngx_sprintf(p, "event: content_block_delta"
                                         "\ndata: {\"type\":"
                                         "\"content_block_delta\","
                                         "\"index\":%ui,\"delta\":{"
                                         "\"type\":\"input_json_delta\","
                                         "\"partial_json\":",
                                         ts->blocks);
                }

                ngx_http_aigw_json_out_str(o, &args);
                ngx_http_aigw_json_out_lit(o, "}}\n\n");
            }
        }
    }

    if (finish.len && finish.data[0] == '"') {
        if (ts->open) {
            ngx_http_aigw_translate_messages_stop_block(ts);
        }

        for (f = ngx_http_aigw_translate_stop[0]; f[0].len; f += 2) {
            if (finish.len == f[0].len
                && ngx_strncmp(finish.data, f[0].data, f[0].len) == 0)
            {
                ts->stop = f[1];
                break;
            }
        }
    }

    return NGX_OK;
}


static void
ngx_http_aigw_translate_messages_stop_block(
    ngx_http_aigw_translate_stream_t *ts)
{
    u_char  *p;

    p = ngx_http_aigw_json_out_reserve(&ts->out, NGX_INT_T_LEN + 96);
    if (p) {
        ts->out.pos = ngx_sprintf(p, "event: content_block_stop\ndata: "
                                  "{\"type\":\"content_block_stop\","
                                  "\"index\":%ui}\n\n", ts->blocks);
    }

    ts->blocks++;
    ts->open = 0;
}
