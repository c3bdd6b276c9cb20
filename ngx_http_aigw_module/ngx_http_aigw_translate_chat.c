
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_translate.h"


/*
 * A client speaking OpenAI's chat completions served by an Anthropic
 * provider: the request rebuilt as a Messages request, the answer as a
 * chat completion.  docs/translation.md has every field and what
 * becomes of it.
 *
 * Strings are copied as the client wrote them, escapes and all: a JSON
 * string literal is one in either format.  Only the pieces that change
 * shape (an image's data URL, a tool call's arguments, which OpenAI
 * sends as a string and Anthropic as an object) are unescaped.
 */


static ngx_int_t ngx_http_aigw_translate_chat_param(
    ngx_http_aigw_translate_t *t, ngx_str_t *key, ngx_str_t *value);
static ngx_int_t ngx_http_aigw_translate_chat_messages(
    ngx_http_aigw_translate_t *t, ngx_str_t *messages);
static ngx_int_t ngx_http_aigw_translate_chat_message(
    ngx_http_aigw_translate_t *t, ngx_str_t *message);
static ngx_int_t ngx_http_aigw_translate_chat_content(
    ngx_http_aigw_translate_t *t, ngx_str_t *content);
static ngx_int_t ngx_http_aigw_translate_chat_image(
    ngx_http_aigw_translate_t *t, ngx_str_t *part);
static ngx_int_t ngx_http_aigw_translate_chat_tool_call(
    ngx_http_aigw_translate_t *t, ngx_str_t *call);
static ngx_int_t ngx_http_aigw_translate_chat_texts(
    ngx_http_aigw_translate_t *t, ngx_str_t *content, ngx_array_t *into);
static ngx_int_t ngx_http_aigw_translate_chat_tools(
    ngx_http_aigw_translate_t *t, ngx_str_t *tools);
static ngx_int_t ngx_http_aigw_translate_chat_tool_choice(
    ngx_http_aigw_translate_t *t, ngx_str_t *choice);
static ngx_int_t ngx_http_aigw_translate_chat_blocks(
    ngx_http_aigw_json_out_t *o, ngx_str_t *content, ngx_uint_t *calls);


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


/*
 * The body of an OpenAI chat completion request as a Messages request:
 * its parameters first, then "messages", then "system", made of the
 * system and developer messages.
 */

ngx_int_t
ngx_http_aigw_translate_chat_request(ngx_http_aigw_translate_t *t)
{
    u_char                *p;
    ngx_int_t              rc;
    ngx_str_t              key, value, messages, *s;
    ngx_uint_t             i;
    ngx_http_aigw_json_t   j;

    if (ngx_array_init(&t->system, t->r->pool, 2, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_null(&messages);

    if (ngx_http_aigw_json_open(&j, &t->body) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the parameters first, the messages after them */

    for ( ;; ) {
        rc = ngx_http_aigw_json_next(&j, &key, &value);

        if (rc == NGX_DONE) {
            break;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_http_aigw_json_is(&key, "messages")) {
            messages = value;
            continue;
        }

        rc = ngx_http_aigw_translate_chat_param(t, &key, &value);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    /* Anthropic requires max_tokens, OpenAI does not */

    ngx_http_aigw_json_out_lit(&t->out, ",\"max_tokens\":");

    if (t->max_tokens.len) {
        ngx_http_aigw_json_out_str(&t->out, &t->max_tokens);

    } else {
        p = ngx_http_aigw_json_out_reserve(&t->out, NGX_INT_T_LEN);

        if (p) {
            t->out.pos = ngx_sprintf(p, "%ui", t->max_tokens_default);
        }
    }

    if (t->user.len) {
        ngx_http_aigw_json_out_lit(&t->out, ",\"metadata\":{\"user_id\":");
        ngx_http_aigw_json_out_str(&t->out, &t->user);
        ngx_http_aigw_json_out_lit(&t->out, "}");
    }

    if (t->tool_choice.len || t->serial) {
        ngx_http_aigw_json_out_lit(&t->out, ",\"tool_choice\":");

        if (t->tool_choice.len == 0) {
            ngx_str_set(&t->tool_choice, "{\"type\":\"auto\"}");
        }

        ngx_http_aigw_json_out_str(&t->out, &t->tool_choice);

        if (t->serial && !t->out.failed) {
            /* the closing brace becomes another member */
            t->out.pos--;
            ngx_http_aigw_json_out_lit(&t->out,
                                       ",\"disable_parallel_tool_use\":true}");
        }
    }

    rc = ngx_http_aigw_translate_chat_messages(t, &messages);

    if (rc != NGX_OK) {
        return rc;
    }

    if (t->system.nelts) {
        ngx_http_aigw_json_out_lit(&t->out, ",\"system\":[");

        s = t->system.elts;

        for (i = 0; i < t->system.nelts; i++) {
            if (i) {
                ngx_http_aigw_json_out_lit(&t->out, ",");
            }

            ngx_http_aigw_json_out_lit(&t->out,
                                       "{\"type\":\"text\",\"text\":");
            ngx_http_aigw_json_out_str(&t->out, &s[i]);
            ngx_http_aigw_json_out_lit(&t->out, "}");
        }

        ngx_http_aigw_json_out_lit(&t->out, "]");
    }

    return NGX_OK;
}


/* a top-level field but "messages" */

static ngx_int_t
ngx_http_aigw_translate_chat_param(ngx_http_aigw_translate_t *t,
    ngx_str_t *key, ngx_str_t *value)
{
    ngx_str_t                  type;
    ngx_http_aigw_json_out_t  *o;

    o = &t->out;

    /* what the gateway itself sets, or what changes nothing */

    if (ngx_http_aigw_json_is(key, "model")
        || ngx_http_aigw_json_is(key, "stream_options")
        || ngx_http_aigw_json_is(key, "store")
        || ngx_http_aigw_json_is(key, "metadata")
        || ngx_http_aigw_json_is(key, "service_tier")
        || ngx_http_aigw_json_is(key, "seed")
        || ngx_http_aigw_json_is(key, "prompt_cache_key")
        || ngx_http_aigw_json_is(key, "safety_identifier"))
    {
        return NGX_OK;
    }

    if (value->len == 4 && ngx_strncmp(value->data, "null", 4) == 0) {
        return NGX_OK;
    }

    if (ngx_http_aigw_json_is(key, "max_tokens")
        || ngx_http_aigw_json_is(key, "max_completion_tokens"))
    {
        if (t->max_tokens.len == 0 || key->len > sizeof("max_tokens") - 1) {
            t->max_tokens = *value;
        }

        return NGX_OK;
    }

    if (ngx_http_aigw_json_is(key, "temperature")) {
        if (!ngx_http_aigw_translate_number_is(value, 0, 1)) {
            return ngx_http_aigw_translate_refuse(t, "temperature",
                                                  "Anthropic's is from 0 "
                                                  "to 1");
        }

        ngx_http_aigw_json_out_lit(o, ",\"temperature\":");
        ngx_http_aigw_json_out_str(o, value);
        return NGX_OK;
    }

    if (ngx_http_aigw_json_is(key, "top_p")
        || ngx_http_aigw_json_is(key, "stream"))
    {
        ngx_http_aigw_json_out_lit(o, ",\"");
        ngx_http_aigw_json_out_str(o, key);
        ngx_http_aigw_json_out_lit(o, "\":");
        ngx_http_aigw_json_out_str(o, value);
        return NGX_OK;
    }

    if (ngx_http_aigw_json_is(key, "stop")) {
        ngx_http_aigw_json_out_lit(o, ",\"stop_sequences\":");

        if (value->data[0] == '"') {
            ngx_http_aigw_json_out_lit(o, "[");
            ngx_http_aigw_json_out_str(o, value);
            ngx_http_aigw_json_out_lit(o, "]");

        } else {
            ngx_http_aigw_json_out_str(o, value);
        }

        return NGX_OK;
    }

    if (ngx_http_aigw_json_is(key, "user")) {
        t->user = *value;
        return NGX_OK;
    }

    if (ngx_http_aigw_json_is(key, "tools")) {
        return ngx_http_aigw_translate_chat_tools(t, value);
    }

    if (ngx_http_aigw_json_is(key, "tool_choice")) {
        return ngx_http_aigw_translate_chat_tool_choice(t, value);
    }

    if (ngx_http_aigw_json_is(key, "parallel_tool_calls")) {
        t->serial = (value->data[0] == 'f');
        return NGX_OK;
    }

    /* the defaults of what Anthropic has not */

    if (ngx_http_aigw_json_is(key, "n")) {
        return ngx_http_aigw_translate_number_is(value, 1, 1)
               ? NGX_OK
               : ngx_http_aigw_translate_refuse(t, "n", "Anthropic gives "
                                                "one choice");
    }

    if (ngx_http_aigw_json_is(key, "frequency_penalty")
        || ngx_http_aigw_json_is(key, "presence_penalty"))
    {
        return ngx_http_aigw_translate_number_is(value, 0, 0)
               ? NGX_OK
               : ngx_http_aigw_translate_refuse(t,
                     key->data[0] == 'f' ? "frequency_penalty"
                                         : "presence_penalty",
                     "Anthropic has no penalties");
    }

    if (ngx_http_aigw_json_is(key, "logprobs")) {
        return value->data[0] == 'f'
               ? NGX_OK
               : ngx_http_aigw_translate_refuse(t, "logprobs",
                                                "Anthropic gives none");
    }

    if (ngx_http_aigw_json_is(key, "logit_bias")) {
        return ngx_http_aigw_json_skip(value->data + 1,
                                       value->data + value->len) != NULL
               && ngx_http_aigw_json_ws(value->data + 1,
                                        value->data + value->len)[0] == '}'
               ? NGX_OK
               : ngx_http_aigw_translate_refuse(t, "logit_bias",
                                                "Anthropic has none");
    }

    if (ngx_http_aigw_json_is(key, "response_format")) {
        return ngx_http_aigw_json_member(value, "type", &type) == NGX_OK
               && ngx_http_aigw_json_string_is(&type, "text")
               ? NGX_OK
               : ngx_http_aigw_translate_refuse(t, "response_format",
                                                "only \"text\" has a "
                                                "counterpart");
    }

    /* the field's own name, escaped as the client sent it */

    t->reason = "it has no counterpart";
    t->param = (const char *) ngx_pnalloc(t->r->pool, key->len + 1);
    if (t->param == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn((u_char *) t->param, key->data, key->len + 1);

    return NGX_HTTP_AIGW_TRANSLATE_REFUSED;
}


static ngx_int_t
ngx_http_aigw_translate_chat_messages(ngx_http_aigw_translate_t *t,
    ngx_str_t *messages)
{
    ngx_int_t             rc;
    ngx_str_t             key, message;
    ngx_uint_t            n;
    ngx_http_aigw_json_t  j;

    if (ngx_http_aigw_json_open(&j, messages) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_aigw_json_out_lit(&t->out, ",\"messages\":[");

    for (n = 0; /* void */; n++) {
        rc = ngx_http_aigw_json_next(&j, &key, &message);

        if (rc == NGX_DONE) {
            break;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_aigw_translate_chat_message(t, &message);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    /* no comma after the last: a message writes one before it */

    if (t->out.pos[-1] == ',') {
        t->out.pos--;
    }

    ngx_http_aigw_json_out_lit(&t->out, "]");

    return NGX_OK;
}


/*
 * One message: system and developer ones become "system", a tool's
 * result a user message with a tool_result block, an assistant's tool
 * calls tool_use blocks.
 */

static ngx_int_t
ngx_http_aigw_translate_chat_message(ngx_http_aigw_translate_t *t,
    ngx_str_t *message)
{
    ngx_int_t                  rc;
    ngx_str_t                  key, value, role, content, calls, call_id, part;
    ngx_http_aigw_json_out_t  *o;
    ngx_http_aigw_json_t       j, k;

    o = &t->out;

    ngx_str_null(&role);
    ngx_str_null(&content);
    ngx_str_null(&calls);
    ngx_str_null(&call_id);

    if (ngx_http_aigw_json_open(&j, message) != NGX_OK) {
        return NGX_ERROR;
    }

    while ((rc = ngx_http_aigw_json_next(&j, &key, &value)) == NGX_OK) {

        if (value.len == 4 && ngx_strncmp(value.data, "null", 4) == 0) {
            continue;
        }

        if (ngx_http_aigw_json_is(&key, "role")) {
            role = value;

        } else if (ngx_http_aigw_json_is(&key, "content")) {
            content = value;

        } else if (ngx_http_aigw_json_is(&key, "tool_calls")) {
            calls = value;

        } else if (ngx_http_aigw_json_is(&key, "tool_call_id")) {
            call_id = value;

        } else if (ngx_http_aigw_json_is(&key, "name")
                   || ngx_http_aigw_json_is(&key, "refusal"))
        {
            continue;

        } else {
            return ngx_http_aigw_translate_refuse(t, "messages",
                                                  "a message has a field "
                                                  "with no counterpart "
                                                  "(audio, function_call)");
        }
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (ngx_http_aigw_json_string_is(&role, "system")
        || ngx_http_aigw_json_string_is(&role, "developer"))
    {
        return ngx_http_aigw_translate_chat_texts(t, &content, &t->system);
    }

    if (ngx_http_aigw_json_string_is(&role, "user")) {
        ngx_http_aigw_json_out_lit(o, "{\"role\":\"user\",\"content\":");
        rc = ngx_http_aigw_translate_chat_content(t, &content);

        if (rc != NGX_OK) {
            return rc;
        }

        ngx_http_aigw_json_out_lit(o, "},");
        return NGX_OK;
    }

    if (ngx_http_aigw_json_string_is(&role, "tool")) {
        if (call_id.len == 0 || call_id.data[0] != '"') {
            return ngx_http_aigw_translate_refuse(t, "messages",
                                                  "a tool message has no "
                                                  "tool_call_id");
        }

        ngx_http_aigw_json_out_lit(o, "{\"role\":\"user\",\"content\":"
                                   "[{\"type\":\"tool_result\","
                                   "\"tool_use_id\":");
        ngx_http_aigw_json_out_str(o, &call_id);
        ngx_http_aigw_json_out_lit(o, ",\"content\":");

        if (content.len == 0) {
            ngx_http_aigw_json_out_lit(o, "\"\"");

        } else if (content.data[0] == '"') {
            ngx_http_aigw_json_out_str(o, &content);

        } else {
            rc = ngx_http_aigw_translate_chat_content(t, &content);

            if (rc != NGX_OK) {
                return rc;
            }
        }

        ngx_http_aigw_json_out_lit(o, "}]},");
        return NGX_OK;
    }

    if (!ngx_http_aigw_json_string_is(&role, "assistant")) {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "a role other than system, "
                                              "developer, user, assistant "
                                              "or tool");
    }

    /* an assistant's string content without tool calls stays a string */

    if (calls.len == 0 && content.len && content.data[0] == '"') {
        ngx_http_aigw_json_out_lit(o, "{\"role\":\"assistant\",\"content\":");
        ngx_http_aigw_json_out_str(o, &content);
        ngx_http_aigw_json_out_lit(o, "},");
        return NGX_OK;
    }

    ngx_http_aigw_json_out_lit(o, "{\"role\":\"assistant\",\"content\":[");

    if (content.len && content.data[0] == '"') {
        if (content.len > 2) {
            ngx_http_aigw_json_out_lit(o, "{\"type\":\"text\",\"text\":");
            ngx_http_aigw_json_out_str(o, &content);
            ngx_http_aigw_json_out_lit(o, "},");
        }

    } else if (content.len) {

        /* text parts, and a refusal part, which becomes text */

        if (ngx_http_aigw_json_open(&k, &content) != NGX_OK) {
            return ngx_http_aigw_translate_refuse(t, "messages",
                                                  "an assistant's content "
                                                  "is not text");
        }

        while ((rc = ngx_http_aigw_json_next(&k, &key, &part)) == NGX_OK) {
            rc = ngx_http_aigw_translate_chat_texts(t, &part, NULL);

            if (rc != NGX_OK) {
                return rc;
            }
        }

        if (rc != NGX_DONE) {
            return NGX_ERROR;
        }
    }

    if (calls.len) {
        if (ngx_http_aigw_json_open(&k, &calls) != NGX_OK) {
            return ngx_http_aigw_translate_refuse(t, "messages",
                                                  "tool_calls is not an "
                                                  "array");
        }

        while ((rc = ngx_http_aigw_json_next(&k, &key, &value)) == NGX_OK) {
            rc = ngx_http_aigw_translate_chat_tool_call(t, &value);

            if (rc != NGX_OK) {
                return rc;
            }
        }

        if (rc != NGX_DONE) {
            return NGX_ERROR;
        }
    }

    if (o->pos[-1] == ',') {
        o->pos--;
    }

    ngx_http_aigw_json_out_lit(o, "]},");

    return NGX_OK;
}


/* a user's (or a tool's) content: a string, or text and image parts */

static ngx_int_t
ngx_http_aigw_translate_chat_content(ngx_http_aigw_translate_t *t,
    ngx_str_t *content)
{
    ngx_int_t                  rc;
    ngx_str_t                  key, part, m[2];
    ngx_http_aigw_json_out_t  *o;
    ngx_http_aigw_json_t       j;

    static ngx_str_t  names[] = {
        ngx_string("type"), ngx_string("text")
    };

    o = &t->out;

    if (content->len && content->data[0] == '"') {
        ngx_http_aigw_json_out_str(o, content);
        return NGX_OK;
    }

    if (content->len == 0 || ngx_http_aigw_json_open(&j, content) != NGX_OK
        || j.close != ']')
    {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "a content is neither a "
                                              "string nor an array of "
                                              "parts");
    }

    ngx_http_aigw_json_out_lit(o, "[");

    while ((rc = ngx_http_aigw_json_next(&j, &key, &part)) == NGX_OK) {

        /* type, text */

        rc = ngx_http_aigw_translate_object(t, "messages", "a content part "
                                            "is not an object", &part,
                                            names, m);
        if (rc != NGX_OK) {
            return rc;
        }

        if (ngx_http_aigw_json_string_is(&m[0], "text") && m[1].len) {
            ngx_http_aigw_json_out_lit(o, "{\"type\":\"text\",\"text\":");
            ngx_http_aigw_json_out_str(o, &m[1]);
            ngx_http_aigw_json_out_lit(o, "},");
            continue;
        }

        if (ngx_http_aigw_json_string_is(&m[0], "image_url")) {
            rc = ngx_http_aigw_translate_chat_image(t, &part);

            if (rc != NGX_OK) {
                return rc;
            }

            continue;
        }

        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "a content part other than "
                                              "text or image_url (audio, "
                                              "file)");
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


/*
 * {"type":"image_url","image_url":{"url":...}}: a data URL becomes a
 * base64 source, another URL a url source
 */

static ngx_int_t
ngx_http_aigw_translate_chat_image(ngx_http_aigw_translate_t *t,
    ngx_str_t *part)
{
    u_char                    *p, *comma, *last;
    ngx_int_t                  rc;
    ngx_str_t                  image, url;
    ngx_http_aigw_json_out_t  *o;

    static ngx_str_t  image_url = ngx_string("image_url");
    static ngx_str_t  url_name = ngx_string("url");

    o = &t->out;

    rc = ngx_http_aigw_translate_members(t, "messages", "an image_url "
                                         "part is not an object", part,
                                         &image_url, &image, 1);
    if (rc != NGX_OK) {
        return rc;
    }

    if (image.len && image.data[0] == '{') {
        rc = ngx_http_aigw_translate_members(t, "messages", "an image_url "
                                             "is not an object", &image,
                                             &url_name, &url, 1);
        if (rc != NGX_OK) {
            return rc;
        }

    } else {
        url = image;
    }

    if (url.len < 2 || url.data[0] != '"') {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "an image_url has no url");
    }

    if (ngx_http_aigw_translate_unescape(t->r->pool, &url, &url) != NGX_OK) {
        return NGX_ERROR;
    }

    last = url.data + url.len;

    if (url.len > 5 && ngx_strncmp(url.data, "data:", 5) == 0) {
        comma = ngx_strlchr(url.data, last, ',');
        p = comma ? ngx_strlcasestrn(url.data, comma, (u_char *) ";base64",
                                     sizeof(";base64") - 2)
                  : NULL;

        if (p == NULL || p + sizeof(";base64") - 1 != comma) {
            return ngx_http_aigw_translate_refuse(t, "messages",
                                                  "an image's data URL "
                                                  "is not base64");
        }

        ngx_http_aigw_json_out_lit(o, "{\"type\":\"image\",\"source\":"
                                   "{\"type\":\"base64\",\"media_type\":\"");
        ngx_http_aigw_json_out_escaped(o, url.data + 5, p - url.data - 5);
        ngx_http_aigw_json_out_lit(o, "\",\"data\":\"");
        ngx_http_aigw_json_out_escaped(o, comma + 1, last - comma - 1);
        ngx_http_aigw_json_out_lit(o, "\"}},");

        return NGX_OK;
    }

    ngx_http_aigw_json_out_lit(o, "{\"type\":\"image\",\"source\":{\"type\":"
                               "\"url\",\"url\":\"");
    ngx_http_aigw_json_out_escaped(o, url.data, url.len);
    ngx_http_aigw_json_out_lit(o, "\"}},");

    return NGX_OK;
}


/*
 * {"id","type":"function","function":{"name","arguments"}}: arguments,
 * a string holding a JSON object, becomes tool_use's "input" object
 */

static ngx_int_t
ngx_http_aigw_translate_chat_tool_call(ngx_http_aigw_translate_t *t,
    ngx_str_t *call)
{
    u_char                    *end;
    ngx_int_t                  rc;
    ngx_str_t                  id, name, args, c[2], f[2];
    ngx_http_aigw_json_out_t  *o;

    static ngx_str_t  call_names[] = {
        ngx_string("id"), ngx_string("function")
    };

    static ngx_str_t  function_names[] = {
        ngx_string("name"), ngx_string("arguments")
    };

    o = &t->out;

    rc = ngx_http_aigw_translate_object(t, "messages", "a tool call is not "
                                        "an object", call, call_names, c);
    if (rc != NGX_OK) {
        return rc;
    }

    id = c[0];
    ngx_str_null(&name);
    ngx_str_null(&args);

    if (c[1].len && c[1].data[0] == '{') {
        rc = ngx_http_aigw_translate_object(t, "messages", "a tool call's "
                                            "function is not an object",
                                            &c[1], function_names, f);
        if (rc != NGX_OK) {
            return rc;
        }

        name = f[0];
        args = f[1];
    }

    if (id.len < 2 || id.data[0] != '"' || name.len < 2
        || name.data[0] != '"' || args.len < 2 || args.data[0] != '"')
    {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "a tool call without an id, "
                                              "a function name or "
                                              "arguments");
    }

    if (ngx_http_aigw_translate_unescape(t->r->pool, &args, &args)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    end = ngx_http_aigw_json_skip(args.data, args.data + args.len);

    if (args.len && (end == NULL
                     || ngx_http_aigw_json_ws(end, args.data + args.len)
                        != args.data + args.len
                     || ngx_http_aigw_json_ws(args.data, end)[0] != '{'))
    {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "a tool call's arguments are "
                                              "not a JSON object");
    }

    ngx_http_aigw_json_out_lit(o, "{\"type\":\"tool_use\",\"id\":");
    ngx_http_aigw_json_out_str(o, &id);
    ngx_http_aigw_json_out_lit(o, ",\"name\":");
    ngx_http_aigw_json_out_str(o, &name);
    ngx_http_aigw_json_out_lit(o, ",\"input\":");

    if (args.len) {
        ngx_http_aigw_json_out_str(o, &args);

    } else {
        ngx_http_aigw_json_out_lit(o, "{}");
    }

    ngx_http_aigw_json_out_lit(o, "},");

    return NGX_OK;
}


/*
 * Text content: a string, or text parts (a refusal part counts as text).
 * Into an array of string values, or, without one, written as text
 * blocks.
 */

static ngx_int_t
ngx_http_aigw_translate_chat_texts(ngx_http_aigw_translate_t *t,
    ngx_str_t *content, ngx_array_t *into)
{
    ngx_int_t             rc;
    ngx_str_t             key, part, text, m[3], *s;
    ngx_http_aigw_json_t  j;

    static ngx_str_t  names[] = {
        ngx_string("type"), ngx_string("text"), ngx_string("refusal")
    };

    if (content->len && content->data[0] == '"') {
        text = *content;
        goto one;
    }

    if (content->len && content->data[0] == '{') {

        /* one part, from the array the caller walks */

        part = *content;
        goto part;
    }

    if (content->len == 0 || ngx_http_aigw_json_open(&j, content) != NGX_OK) {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "a system message's content "
                                              "is not text");
    }

    while ((rc = ngx_http_aigw_json_next(&j, &key, &part)) == NGX_OK) {
        rc = ngx_http_aigw_translate_chat_texts(t, &part, into);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    return (rc == NGX_DONE) ? NGX_OK : NGX_ERROR;

part:

    /* type, and text or refusal */

    rc = ngx_http_aigw_translate_object(t, "messages", "a part that is not "
                                        "text where only text can be",
                                        &part, names, m);
    if (rc != NGX_OK) {
        return rc;
    }

    text = m[1].len ? m[1] : m[2];

    if (!(ngx_http_aigw_json_string_is(&m[0], "text")
          || ngx_http_aigw_json_string_is(&m[0], "refusal"))
        || text.len < 2 || text.data[0] != '"')
    {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "a part that is not text "
                                              "where only text can be");
    }

one:

    if (into) {
        s = ngx_array_push(into);
        if (s == NULL) {
            return NGX_ERROR;
        }

        *s = text;
        return NGX_OK;
    }

    ngx_http_aigw_json_out_lit(&t->out, "{\"type\":\"text\",\"text\":");
    ngx_http_aigw_json_out_str(&t->out, &text);
    ngx_http_aigw_json_out_lit(&t->out, "},");

    return NGX_OK;
}


/*
 * [{"type":"function","function":{"name","description","parameters"}}]
 * as [{"name","description","input_schema"}]
 */

static ngx_int_t
ngx_http_aigw_translate_chat_tools(ngx_http_aigw_translate_t *t,
    ngx_str_t *tools)
{
    ngx_int_t                  rc;
    ngx_str_t                  key, tool, m[2], f[3];
    ngx_http_aigw_json_out_t  *o;
    ngx_http_aigw_json_t       j;

    static ngx_str_t  tool_names[] = {
        ngx_string("type"), ngx_string("function")
    };

    static ngx_str_t  function_names[] = {
        ngx_string("name"), ngx_string("description"),
        ngx_string("parameters")
    };

    o = &t->out;

    if (ngx_http_aigw_json_open(&j, tools) != NGX_OK || j.close != ']') {
        return ngx_http_aigw_translate_refuse(t, "tools", "not an array");
    }

    ngx_http_aigw_json_out_lit(o, ",\"tools\":[");

    while ((rc = ngx_http_aigw_json_next(&j, &key, &tool)) == NGX_OK) {

        /* type, function */

        rc = ngx_http_aigw_translate_object(t, "tools", "a tool is not an "
                                            "object", &tool, tool_names, m);
        if (rc != NGX_OK) {
            return rc;
        }

        if (m[0].len && !ngx_http_aigw_json_string_is(&m[0], "function")) {
            return ngx_http_aigw_translate_refuse(t, "tools",
                                                  "a tool that is not a "
                                                  "function");
        }

        /* name, description, parameters */

        rc = ngx_http_aigw_translate_object(t, "tools", "a tool without its "
                                            "function", &m[1],
                                            function_names, f);
        if (rc != NGX_OK) {
            return rc;
        }

        if (f[0].len < 2) {
            return ngx_http_aigw_translate_refuse(t, "tools",
                                                  "a function without a "
                                                  "name");
        }

        ngx_http_aigw_json_out_lit(o, "{\"name\":");
        ngx_http_aigw_json_out_str(o, &f[0]);

        if (f[1].len) {
            ngx_http_aigw_json_out_lit(o, ",\"description\":");
            ngx_http_aigw_json_out_str(o, &f[1]);
        }

        ngx_http_aigw_json_out_lit(o, ",\"input_schema\":");

        if (f[2].len && f[2].data[0] == '{') {
            ngx_http_aigw_json_out_str(o, &f[2]);

        } else {
            ngx_http_aigw_json_out_lit(o, "{\"type\":\"object\"}");
        }

        ngx_http_aigw_json_out_lit(o, "},");
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


/* "none", "auto", "required", or one function by name */

static ngx_int_t
ngx_http_aigw_translate_chat_tool_choice(ngx_http_aigw_translate_t *t,
    ngx_str_t *choice)
{
    ngx_str_t                 function, name;
    ngx_http_aigw_json_out_t  o;

    if (ngx_http_aigw_json_string_is(choice, "none")) {
        ngx_str_set(&t->tool_choice, "{\"type\":\"none\"}");
        return NGX_OK;
    }

    if (ngx_http_aigw_json_string_is(choice, "auto")) {
        ngx_str_set(&t->tool_choice, "{\"type\":\"auto\"}");
        return NGX_OK;
    }

    if (ngx_http_aigw_json_string_is(choice, "required")) {
        ngx_str_set(&t->tool_choice, "{\"type\":\"any\"}");
        return NGX_OK;
    }

    /* {"type":"function","function":{"name":"..."}} */

    if (ngx_http_aigw_json_member(choice, "function", &function)
        != NGX_OK
        || ngx_http_aigw_json_member(&function, "name", &name) != NGX_OK
        || name.data[0] != '"')
    {
        return ngx_http_aigw_translate_refuse(t, "tool_choice",
                                              "not none, auto, required "
                                              "or a function by name");
    }

    o.pool = t->r->pool;
    o.start = NULL;
    o.pos = NULL;
    o.end = NULL;
    o.failed = 0;

    ngx_http_aigw_json_out_lit(&o, "{\"type\":\"tool\",\"name\":");
    ngx_http_aigw_json_out_str(&o, &name);
    ngx_http_aigw_json_out_lit(&o, "}");

    if (o.failed) {
        return NGX_ERROR;
    }

    t->tool_choice.data = o.start;
    t->tool_choice.len = o.pos - o.start;

    return NGX_OK;
}


/* an Anthropic message as an OpenAI chat completion */

ngx_int_t
ngx_http_aigw_translate_chat_answer(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t *b)
{
    u_char                    *p;
    ngx_str_t                  id, content, stop, body, m[3], *f;
    ngx_uint_t                 calls;
    ngx_http_aigw_json_out_t   o;

    static ngx_str_t  names[] = {
        ngx_string("id"), ngx_string("content"), ngx_string("stop_reason")
    };

    body.data = b->pos;
    body.len = r->upstream->headers_in.content_length_n;

    if (ngx_http_aigw_json_members(&body, names, m, 3) != NGX_OK) {
        return NGX_ERROR;
    }

    id = m[0];
    content = m[1];
    stop = m[2];

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

    if (ngx_http_aigw_translate_chat_blocks(&o, &content, &calls) != NGX_OK) {
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
ngx_http_aigw_translate_chat_blocks(ngx_http_aigw_json_out_t *o,
    ngx_str_t *content, ngx_uint_t *calls)
{
    ngx_int_t             rc;
    ngx_str_t             key, block, input, m[5];
    ngx_uint_t            texts;
    ngx_http_aigw_json_t  j;

    /* what a block is read for: its text, then its tool call */

    static ngx_str_t  names[] = {
        ngx_string("type"), ngx_string("text"), ngx_string("id"),
        ngx_string("name"), ngx_string("input")
    };

    *calls = 0;
    texts = 0;

    ngx_http_aigw_json_out_lit(o, "\"content\":");

    if (content->len == 0 || ngx_http_aigw_json_open(&j, content) != NGX_OK) {
        ngx_http_aigw_json_out_lit(o, "null,\"refusal\":null");
        return NGX_OK;
    }

    /* the text first: adjacent string literals joined into one */

    while ((rc = ngx_http_aigw_json_next(&j, &key, &block)) == NGX_OK) {
        /* type, text: the first two names */

        if (ngx_http_aigw_json_members(&block, names, m, 2) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_http_aigw_json_string_is(&m[0], "text")
            && m[1].len >= 2 && m[1].data[0] == '"')
        {
            if (texts++ == 0) {
                ngx_http_aigw_json_out_lit(o, "\"");
            }

            ngx_http_aigw_json_out_add(o, m[1].data + 1, m[1].len - 2);

        } else if (ngx_http_aigw_json_string_is(&m[0], "tool_use")) {
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
        (void) ngx_http_aigw_json_members(&block, names, m, 5);

        if (!ngx_http_aigw_json_string_is(&m[0], "tool_use")
            || m[2].len < 2 || m[3].len < 2)
        {
            continue;
        }

        if (texts++) {
            ngx_http_aigw_json_out_lit(o, ",");
        }

        input = m[4];

        ngx_http_aigw_json_out_lit(o, "{\"id\":");
        ngx_http_aigw_json_out_str(o, &m[2]);
        ngx_http_aigw_json_out_lit(o, ",\"type\":\"function\","
                                   "\"function\":{\"name\":");
        ngx_http_aigw_json_out_str(o, &m[3]);
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
 * An event of an Anthropic stream as the chunks of an OpenAI one, in
 * ts->out (none for an event that has no counterpart: ping, a block's
 * start or stop, thinking):
 *
 *     message_start               a chunk with the role
 *     content_block_start         tool_use: a chunk with the tool call
 *     content_block_delta         text_delta: a chunk with the text;
 *                                 input_json_delta: one with arguments
 *     message_delta               a chunk with the finish reason, and
 *                                 the usage chunk if the client asked
 *     message_stop                [DONE]
 *     error                       the error, as OpenAI's
 */

static void ngx_http_aigw_translate_chat_chunk(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_translate_stream_t *ts, ngx_str_t *delta,
    ngx_str_t *finish);


ngx_int_t
ngx_http_aigw_translate_chat_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_translate_stream_t *ts,
    ngx_http_aigw_sse_event_t *ev)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_str_t                  data, v, block, delta, name, id, m[3], *f;
    ngx_http_aigw_field_t     *inc;
    ngx_http_aigw_json_out_t  *d;

    static ngx_str_t  block_names[] = {
        ngx_string("type"), ngx_string("id"), ngx_string("name")
    };

    static ngx_str_t  delta_names[] = {
        ngx_string("type"), ngx_string("text"), ngx_string("partial_json")
    };

    static ngx_str_t  role = ngx_string("{\"role\":\"assistant\","
                                        "\"content\":\"\"}");
    static ngx_str_t  empty = ngx_string("{}");
    static ngx_str_t  null = ngx_string("null");
    static ngx_str_t  stop = ngx_string("\"stop\"");

    data = ev->data;

    /* a chunk's delta, written where the last one was */

    d = &ts->scratch;
    d->pos = d->start;

#define ngx_http_aigw_event_is(name)                                          \
    (ev->event.len == sizeof(name) - 1                                        \
     && ngx_strncmp(ev->event.data, name, sizeof(name) - 1) == 0)

    if (ngx_http_aigw_event_is("message_start")) {
        if (ngx_http_aigw_json_member(&data, "message", &v) == NGX_OK
            && ngx_http_aigw_json_member(&v, "id", &id) == NGX_OK
            && id.data[0] == '"')
        {
            ts->id.data = ngx_pnalloc(r->pool, id.len);
            if (ts->id.data == NULL) {
                return NGX_ERROR;
            }

            ts->id.len = id.len;
            ngx_memcpy(ts->id.data, id.data, id.len);
        }

        ngx_http_aigw_translate_chat_chunk(ctx, ts, &role, &null);
        return NGX_OK;
    }

    if (ngx_http_aigw_event_is("content_block_start")) {
        if (ngx_http_aigw_json_member(&data, "content_block", &block)
            != NGX_OK)
        {
            return NGX_OK;
        }

        /* type, id, name */

        rc = ngx_http_aigw_json_members(&block, block_names, m, 3);

        if (rc == NGX_HTTP_AIGW_JSON_TWICE) {
            return NGX_DECLINED;
        }

        if (rc != NGX_OK || !ngx_http_aigw_json_string_is(&m[0], "tool_use")
            || m[1].len == 0 || m[2].len == 0)
        {
            return NGX_OK;
        }

        id = m[1];
        name = m[2];

        p = ngx_http_aigw_json_out_reserve(d, NGX_INT_T_LEN + 32);
        if (p) {
            d->pos = ngx_sprintf(p, "{\"tool_calls\":[{\"index\":%ui,\"id\":",
                                ts->tools++);
        }

        ngx_http_aigw_json_out_str(d, &id);
        ngx_http_aigw_json_out_lit(d, ",\"type\":\"function\","
                                   "\"function\":{\"name\":");
        ngx_http_aigw_json_out_str(d, &name);
        ngx_http_aigw_json_out_lit(d, ",\"arguments\":\"\"}}]}");

        goto chunk;
    }

    if (ngx_http_aigw_event_is("content_block_delta")) {
        if (ngx_http_aigw_json_member(&data, "delta", &delta) != NGX_OK) {
            return NGX_OK;
        }

        /* type, text, partial_json */

        rc = ngx_http_aigw_json_members(&delta, delta_names, m, 3);

        if (rc == NGX_HTTP_AIGW_JSON_TWICE) {
            return NGX_DECLINED;
        }

        if (rc != NGX_OK) {
            return NGX_OK;
        }

        if (ngx_http_aigw_json_string_is(&m[0], "text_delta") && m[1].len) {
            ngx_http_aigw_json_out_lit(d, "{\"content\":");
            ngx_http_aigw_json_out_str(d, &m[1]);
            ngx_http_aigw_json_out_lit(d, "}");
            goto chunk;
        }

        if (ngx_http_aigw_json_string_is(&m[0], "input_json_delta")
            && m[2].len && ts->tools)
        {
            v = m[2];

            p = ngx_http_aigw_json_out_reserve(d, NGX_INT_T_LEN + 48);
            if (p) {
                d->pos = ngx_sprintf(p, "{\"tool_calls\":[{\"index\":%ui,"
                                    "\"function\":{\"arguments\":",
                                    ts->tools - 1);
            }

            ngx_http_aigw_json_out_str(d, &v);
            ngx_http_aigw_json_out_lit(d, "}}]}");
            goto chunk;
        }

        return NGX_OK;     /* thinking, signatures */
    }

    if (ngx_http_aigw_event_is("message_delta")) {
        if (ngx_http_aigw_json_member(&data, "delta", &delta) != NGX_OK
            || ngx_http_aigw_json_member(&delta, "stop_reason", &v)
               != NGX_OK)
        {
            return NGX_OK;
        }

        for (f = ngx_http_aigw_translate_finish[0]; f[0].len; f += 2) {
            if (v.len == f[0].len
                && ngx_strncmp(v.data, f[0].data, f[0].len) == 0)
            {
                break;
            }
        }

        ngx_http_aigw_translate_chat_chunk(ctx, ts, &empty,
                                           f[0].len ? &f[1] : &stop);

        /* the usage chunk, where the client asked for it */

        inc = &ctx->scan.field[NGX_HTTP_AIGW_F_INCLUDE_USAGE];

        if (inc->key && inc->end - inc->start == 4
            && ngx_strncmp(inc->start, "true", 4) == 0)
        {
            p = ngx_http_aigw_json_out_reserve(&ts->out,
                                               3 * NGX_INT_T_LEN + 256
                                               + ts->id.len
                                               + ctx->model.len);
            if (p) {
                p = ngx_cpymem(p, "data: {\"id\":", 12);
                p = ngx_cpymem(p, ts->id.data, ts->id.len);
                ts->out.pos = ngx_sprintf(p, ",\"object\":"
                                 "\"chat.completion.chunk\",\"created\":%T,"
                                 "\"model\":\"%V\",\"choices\":[],"
                                 "\"usage\":{\"prompt_tokens\":%ui,"
                                 "\"completion_tokens\":%ui,"
                                 "\"total_tokens\":%ui}}\n\n",
                                 ngx_time(), &ctx->model,
                                 ctx->prompt_tokens, ctx->completion_tokens,
                                 ctx->prompt_tokens + ctx->completion_tokens);
            }
        }

        return NGX_OK;
    }

    if (ngx_http_aigw_event_is("message_stop")) {
        ngx_http_aigw_json_out_lit(&ts->out, "data: [DONE]\n\n");
        ts->done = 1;
        return NGX_OK;
    }

    if (ngx_http_aigw_event_is("error")) {
        if (ngx_http_aigw_json_member(&data, "error", &v) == NGX_OK
            && ngx_http_aigw_json_member(&v, "message", &name) == NGX_OK)
        {
            ngx_http_aigw_json_out_lit(&ts->out, "data: {\"error\":"
                                       "{\"message\":");
            ngx_http_aigw_json_out_str(&ts->out, &name);
            ngx_http_aigw_json_out_lit(&ts->out, ",\"type\":\"server_error\","
                                       "\"param\":null,\"code\":null}}\n\n");
        }

        return NGX_OK;
    }

#undef ngx_http_aigw_event_is

    return NGX_OK;

chunk:

    if (d->failed) {
        return NGX_ERROR;
    }

    v.data = d->start;
    v.len = d->pos - d->start;

    ngx_http_aigw_translate_chat_chunk(ctx, ts, &v, &null);

    return NGX_OK;
}


/*
 * data: {"id",...,"choices":[{"index":0,"delta":...,"finish_reason"}]}:
 * all but the delta and the finish reason is the same in every chunk of
 * a stream, as in OpenAI's, and written once
 */

static void
ngx_http_aigw_translate_chat_chunk(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_translate_stream_t *ts, ngx_str_t *delta,
    ngx_str_t *finish)
{
    u_char                    *p;
    ngx_http_aigw_json_out_t   o;

    static ngx_str_t  empty = ngx_string("\"\"");

    if (ts->prefix.len == 0) {
        ngx_memzero(&o, sizeof(ngx_http_aigw_json_out_t));
        o.pool = ts->out.pool;

        p = ngx_http_aigw_json_out_reserve(&o, NGX_TIME_T_LEN + 128
                                               + ts->id.len
                                               + ctx->model.len);
        if (p == NULL) {
            ts->out.failed = 1;
            return;
        }

        o.pos = ngx_sprintf(p, "data: {\"id\":%V,\"object\":"
                            "\"chat.completion.chunk\",\"created\":%T,"
                            "\"model\":\"", ts->id.len ? &ts->id : &empty,
                            ngx_time());
        ngx_http_aigw_json_out_escaped(&o, ctx->model.data, ctx->model.len);
        ngx_http_aigw_json_out_lit(&o, "\",\"choices\":[{\"index\":0,"
                                   "\"delta\":");

        if (o.failed) {
            ts->out.failed = 1;
            return;
        }

        ts->prefix.data = o.start;
        ts->prefix.len = o.pos - o.start;
    }

    p = ngx_http_aigw_json_out_reserve(&ts->out, ts->prefix.len + delta->len
                                                 + finish->len + 64);
    if (p == NULL) {
        return;
    }

    p = ngx_cpymem(p, ts->prefix.data, ts->prefix.len);
    p = ngx_cpymem(p, delta->data, delta->len);
    p = ngx_cpymem(p, ",\"logprobs\":null,\"finish_reason\":",
                   sizeof(",\"logprobs\":null,\"finish_reason\":") - 1);
    p = ngx_cpymem(p, finish->data, finish->len);
    ts->out.pos = ngx_cpymem(p, "}]}\n\n", sizeof("}]}\n\n") - 1);
}
