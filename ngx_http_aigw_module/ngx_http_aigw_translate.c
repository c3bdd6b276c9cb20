
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_json.h"


/*
 * A client speaking OpenAI's chat completions served by an Anthropic
 * provider: the request rebuilt as a Messages request, the answer and
 * the provider's errors rebuilt as OpenAI's.  What has no counterpart
 * and would change the answer is a 400 naming it, never dropped
 * silently; docs/translation.md has every field and what becomes of it.
 *
 * Strings are copied as the client wrote them, escapes and all: a JSON
 * string literal is one in either format.  Only the pieces that change
 * shape (an image's data URL, a tool call's arguments, which OpenAI
 * sends as a string and Anthropic as an object) are unescaped.
 */


#define NGX_HTTP_AIGW_TRANSLATE_REFUSED  NGX_DECLINED


typedef struct {
    ngx_http_request_t            *r;
    ngx_http_aigw_ctx_t           *ctx;
    ngx_http_aigw_json_out_t            out;

    /* what the client asked that Anthropic puts elsewhere */
    ngx_array_t                    system;     /* ngx_str_t, text values */
    ngx_str_t                      max_tokens;
    ngx_str_t                      tool_choice;
    ngx_str_t                      user;
    ngx_uint_t                     serial;     /* tool calls disallowed */

    /* why it was refused: a field, and what of it */
    const char                    *param;
    const char                    *reason;
} ngx_http_aigw_translate_t;


static ngx_int_t ngx_http_aigw_translate_messages(
    ngx_http_aigw_translate_t *t, ngx_str_t *messages);
static ngx_int_t ngx_http_aigw_translate_message(
    ngx_http_aigw_translate_t *t, ngx_str_t *message);
static ngx_int_t ngx_http_aigw_translate_user_content(
    ngx_http_aigw_translate_t *t, ngx_str_t *content);
static ngx_int_t ngx_http_aigw_translate_image(ngx_http_aigw_translate_t *t,
    ngx_str_t *part);
static ngx_int_t ngx_http_aigw_translate_tool_call(
    ngx_http_aigw_translate_t *t, ngx_str_t *call);
static ngx_int_t ngx_http_aigw_translate_texts(ngx_http_aigw_translate_t *t,
    ngx_str_t *content, ngx_array_t *into);
static ngx_int_t ngx_http_aigw_translate_tools(ngx_http_aigw_translate_t *t,
    ngx_str_t *tools);
static ngx_int_t ngx_http_aigw_translate_tool_choice(
    ngx_http_aigw_translate_t *t, ngx_str_t *choice);
static ngx_int_t ngx_http_aigw_translate_request(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_model_t *model);
static ngx_int_t ngx_http_aigw_translate_param(ngx_http_aigw_translate_t *t,
    ngx_str_t *key, ngx_str_t *value);
static ngx_int_t ngx_http_aigw_translate_refuse(ngx_http_aigw_translate_t *t,
    const char *param, const char *reason);
static ngx_int_t ngx_http_aigw_translate_unescape(ngx_pool_t *pool,
    ngx_str_t *v, ngx_str_t *out);
static ngx_uint_t ngx_http_aigw_translate_number_is(ngx_str_t *v,
    double low, double high);


/*
 * Which candidates a request may have: the same format, or one it is
 * translated to.  Streams are not translated yet.
 */

ngx_uint_t
ngx_http_aigw_translate_possible(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_model_t *m)
{
    if (m->provider->format == ctx->format) {
        return 1;
    }

    return ctx->endpoint == NGX_HTTP_AIGW_EP_CHAT
           && m->provider->format == &ngx_http_aigw_anthropic_format
           && !ctx->stream;
}


/* the provider's path for what the client called */

ngx_str_t *
ngx_http_aigw_translate_path(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_model_t *m)
{
    static ngx_str_t  messages = ngx_string("/messages");

    if (m->provider->format == ctx->format) {
        return &ctx->ep->suffix;
    }

    return &messages;
}


/*
 * Where a request has candidates whose providers speak another format,
 * its body is translated once, in the access phase, so that a refusal
 * is the client's 400 before any provider is called: the candidates it
 * cannot go to are left out, and with none left the 400 is the answer.
 */

ngx_int_t
ngx_http_aigw_translate_prepare(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    ngx_int_t               rc;
    ngx_uint_t              i, n;
    ngx_http_aigw_model_t  *m;

    for (i = 0; i < ctx->ncandidates; i++) {
        if (ctx->candidates[i]->provider->format != ctx->format) {
            break;
        }
    }

    if (i == ctx->ncandidates) {
        return NGX_OK;
    }

    m = ctx->candidates[i];

    rc = ngx_http_aigw_translate_request(r, ctx, m);

    if (rc == NGX_OK || rc == NGX_ERROR) {
        return rc;
    }

    /* refused: the candidates of the client's own format may serve it */

    for (i = 0, n = 0; i < ctx->ncandidates; i++) {
        if (ctx->candidates[i]->provider->format == ctx->format) {
            ctx->candidates[n++] = ctx->candidates[i];
        }
    }

    if (n == 0) {
        return rc;
    }

    ctx->ncandidates = n;
    ctx->error_message.len = 0;
    ctx->error_code = NULL;

    return NGX_OK;
}


/*
 * The body of an OpenAI chat completion request as a Messages request,
 * but for its first member, "model", which request.c writes for each
 * candidate: ctx->translation.  NGX_OK, an HTTP status with the error
 * recorded, or NGX_ERROR.
 */

static ngx_int_t
ngx_http_aigw_translate_request(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_model_t *model)
{
    u_char                     *p;
    ngx_int_t                   rc;
    ngx_str_t                   key, value, messages, *s;
    ngx_uint_t                  i;
    ngx_http_aigw_json_t        j;
    ngx_http_aigw_loc_conf_t   *alcf;
    ngx_http_aigw_translate_t   t;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    ngx_memzero(&t, sizeof(ngx_http_aigw_translate_t));

    t.r = r;
    t.ctx = ctx;
    t.out.pool = r->pool;

    if (ngx_array_init(&t.system, r->pool, 2, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    t.out.start = ngx_pnalloc(r->pool, ctx->body.len + 512);
    if (t.out.start == NULL) {
        return NGX_ERROR;
    }

    t.out.pos = t.out.start;
    t.out.end = t.out.start + ctx->body.len + 512;

    ngx_str_null(&messages);

    if (ngx_http_aigw_json_open(&j, &ctx->body) != NGX_OK) {
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

        rc = ngx_http_aigw_translate_param(&t, &key, &value);

        if (rc != NGX_OK) {
            goto refused;
        }
    }

    /* Anthropic requires max_tokens, OpenAI does not */

    ngx_http_aigw_json_out_lit(&t.out, ",\"max_tokens\":");

    if (t.max_tokens.len) {
        ngx_http_aigw_json_out_str(&t.out, &t.max_tokens);

    } else {
        p = ngx_http_aigw_json_out_reserve(&t.out, NGX_INT_T_LEN);

        if (p) {
            t.out.pos = ngx_sprintf(p, "%ui", alcf->translate_max_tokens);
        }
    }

    if (t.user.len) {
        ngx_http_aigw_json_out_lit(&t.out, ",\"metadata\":{\"user_id\":");
        ngx_http_aigw_json_out_str(&t.out, &t.user);
        ngx_http_aigw_json_out_lit(&t.out, "}");
    }

    if (t.tool_choice.len || t.serial) {
        ngx_http_aigw_json_out_lit(&t.out, ",\"tool_choice\":");

        if (t.tool_choice.len == 0) {
            ngx_str_set(&t.tool_choice, "{\"type\":\"auto\"}");
        }

        ngx_http_aigw_json_out_str(&t.out, &t.tool_choice);

        if (t.serial && !t.out.failed) {
            /* the closing brace becomes another member */
            t.out.pos--;
            ngx_http_aigw_json_out_lit(&t.out,
                                       ",\"disable_parallel_tool_use\":true}");
        }
    }

    rc = ngx_http_aigw_translate_messages(&t, &messages);

    if (rc != NGX_OK) {
        goto refused;
    }

    if (t.system.nelts) {
        ngx_http_aigw_json_out_lit(&t.out, ",\"system\":[");

        s = t.system.elts;

        for (i = 0; i < t.system.nelts; i++) {
            if (i) {
                ngx_http_aigw_json_out_lit(&t.out, ",");
            }

            ngx_http_aigw_json_out_lit(&t.out, "{\"type\":\"text\",\"text\":");
            ngx_http_aigw_json_out_str(&t.out, &s[i]);
            ngx_http_aigw_json_out_lit(&t.out, "}");
        }

        ngx_http_aigw_json_out_lit(&t.out, "]");
    }

    ngx_http_aigw_json_out_lit(&t.out, "}");

    if (t.out.failed) {
        return NGX_ERROR;
    }

    ctx->translation.data = t.out.start;
    ctx->translation.len = t.out.pos - t.out.start;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: chat completion as a Messages request for \"%V\", "
                   "%uz bytes", &model->provider->name, ctx->translation.len);

    return NGX_OK;

refused:

    if (rc == NGX_ERROR || t.out.failed) {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aigw: \"%s\" of a chat completion cannot go to "
                  "provider \"%V\": %s", t.param, &model->provider->name,
                  t.reason);

    return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                               "unsupported_parameter",
                               "'%s' cannot be translated for `%V`, served "
                               "by an Anthropic provider: %s.",
                               t.param, &ctx->model, t.reason);
}


/*
 * The body a translated candidate gets: {"model":"upstream model" and
 * the translation, which begins with a comma
 */

ngx_int_t
ngx_http_aigw_translate_body(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_model_t *model, ngx_chain_t **out, size_t *len)
{
    u_char       *p;
    size_t        n;
    ngx_buf_t    *b, *t;
    ngx_chain_t  *cl, *tl;

    n = sizeof("{\"model\":\"\"") - 1 + model->upstream_model.len
        + ngx_escape_json(NULL, model->upstream_model.data,
                          model->upstream_model.len);

    b = ngx_create_temp_buf(r->pool, n);
    t = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    tl = ngx_alloc_chain_link(r->pool);

    if (b == NULL || t == NULL || cl == NULL || tl == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->last, "{\"model\":\"", sizeof("{\"model\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, model->upstream_model.data,
                                   model->upstream_model.len);
    *p++ = '"';
    b->last = p;

    t->pos = ctx->translation.data;
    t->last = ctx->translation.data + ctx->translation.len;
    t->memory = 1;
    t->last_buf = 1;
    t->flush = 1;

    cl->buf = b;
    cl->next = tl;
    tl->buf = t;
    tl->next = NULL;

    *out = cl;
    *len = (b->last - b->pos) + ctx->translation.len;

    return NGX_OK;
}


/* a top-level field but "messages" */

static ngx_int_t
ngx_http_aigw_translate_param(ngx_http_aigw_translate_t *t, ngx_str_t *key,
    ngx_str_t *value)
{
    ngx_str_t             type;
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
        return ngx_http_aigw_translate_tools(t, value);
    }

    if (ngx_http_aigw_json_is(key, "tool_choice")) {
        return ngx_http_aigw_translate_tool_choice(t, value);
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
ngx_http_aigw_translate_messages(ngx_http_aigw_translate_t *t,
    ngx_str_t *messages)
{
    ngx_int_t              rc;
    ngx_str_t              key, message;
    ngx_uint_t             n;
    ngx_http_aigw_json_t   j;

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

        rc = ngx_http_aigw_translate_message(t, &message);

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
ngx_http_aigw_translate_message(ngx_http_aigw_translate_t *t,
    ngx_str_t *message)
{
    ngx_int_t              rc;
    ngx_str_t              key, value, role, content, calls, call_id, part;
    ngx_http_aigw_json_out_t   *o;
    ngx_http_aigw_json_t   j, k;

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
        return ngx_http_aigw_translate_texts(t, &content, &t->system);
    }

    if (ngx_http_aigw_json_string_is(&role, "user")) {
        ngx_http_aigw_json_out_lit(o, "{\"role\":\"user\",\"content\":");
        rc = ngx_http_aigw_translate_user_content(t, &content);

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
            rc = ngx_http_aigw_translate_user_content(t, &content);

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
            rc = ngx_http_aigw_translate_texts(t, &part, NULL);

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
            rc = ngx_http_aigw_translate_tool_call(t, &value);

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
ngx_http_aigw_translate_user_content(ngx_http_aigw_translate_t *t,
    ngx_str_t *content)
{
    ngx_int_t              rc;
    ngx_str_t              key, part, value, type, text;
    ngx_http_aigw_json_out_t   *o;
    ngx_http_aigw_json_t   j, k;

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

        if (ngx_http_aigw_json_open(&k, &part) != NGX_OK) {
            return ngx_http_aigw_translate_refuse(t, "messages",
                                                  "a content part is not "
                                                  "an object");
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

        if (ngx_http_aigw_json_string_is(&type, "text") && text.len) {
            ngx_http_aigw_json_out_lit(o, "{\"type\":\"text\",\"text\":");
            ngx_http_aigw_json_out_str(o, &text);
            ngx_http_aigw_json_out_lit(o, "},");
            continue;
        }

        if (ngx_http_aigw_json_string_is(&type, "image_url")) {
            rc = ngx_http_aigw_translate_image(t, &part);

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
ngx_http_aigw_translate_image(ngx_http_aigw_translate_t *t, ngx_str_t *part)
{
    u_char                *p, *comma, *last;
    ngx_int_t              rc;
    ngx_str_t              key, value, image, url;
    ngx_http_aigw_json_out_t   *o;
    ngx_http_aigw_json_t   j;

    o = &t->out;

    ngx_str_null(&image);
    ngx_str_null(&url);

    if (ngx_http_aigw_json_open(&j, part) != NGX_OK) {
        return NGX_ERROR;
    }

    while ((rc = ngx_http_aigw_json_next(&j, &key, &value)) == NGX_OK) {
        if (ngx_http_aigw_json_is(&key, "image_url")) {
            image = value;
        }
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (image.len && image.data[0] == '{') {
        (void) ngx_http_aigw_json_open(&j, &image);

        while ((rc = ngx_http_aigw_json_next(&j, &key, &value)) == NGX_OK) {
            if (ngx_http_aigw_json_is(&key, "url")) {
                url = value;
            }
        }

        if (rc != NGX_DONE) {
            return NGX_ERROR;
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
ngx_http_aigw_translate_tool_call(ngx_http_aigw_translate_t *t,
    ngx_str_t *call)
{
    u_char                *end;
    ngx_int_t              rc;
    ngx_str_t              key, value, id, function, name, args;
    ngx_http_aigw_json_out_t   *o;
    ngx_http_aigw_json_t   j;

    o = &t->out;

    ngx_str_null(&id);
    ngx_str_null(&function);
    ngx_str_null(&name);
    ngx_str_null(&args);

    if (ngx_http_aigw_json_open(&j, call) != NGX_OK) {
        return ngx_http_aigw_translate_refuse(t, "messages",
                                              "a tool call is not an "
                                              "object");
    }

    while ((rc = ngx_http_aigw_json_next(&j, &key, &value)) == NGX_OK) {
        if (ngx_http_aigw_json_is(&key, "id")) {
            id = value;

        } else if (ngx_http_aigw_json_is(&key, "function")) {
            function = value;
        }
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (function.len && ngx_http_aigw_json_open(&j, &function) == NGX_OK) {
        while ((rc = ngx_http_aigw_json_next(&j, &key, &value)) == NGX_OK) {
            if (ngx_http_aigw_json_is(&key, "name")) {
                name = value;

            } else if (ngx_http_aigw_json_is(&key, "arguments")) {
                args = value;
            }
        }

        if (rc != NGX_DONE) {
            return NGX_ERROR;
        }
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
ngx_http_aigw_translate_texts(ngx_http_aigw_translate_t *t,
    ngx_str_t *content, ngx_array_t *into)
{
    ngx_int_t              rc;
    ngx_str_t              key, part, value, type, text, *s;
    ngx_http_aigw_json_t   j, k;

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
        rc = ngx_http_aigw_translate_texts(t, &part, into);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    return (rc == NGX_DONE) ? NGX_OK : NGX_ERROR;

part:

    if (ngx_http_aigw_json_open(&k, &part) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_null(&type);
    ngx_str_null(&text);

    while ((rc = ngx_http_aigw_json_next(&k, &key, &value)) == NGX_OK) {
        if (ngx_http_aigw_json_is(&key, "type")) {
            type = value;

        } else if (ngx_http_aigw_json_is(&key, "text")
                   || ngx_http_aigw_json_is(&key, "refusal"))
        {
            text = value;
        }
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (!(ngx_http_aigw_json_string_is(&type, "text")
          || ngx_http_aigw_json_string_is(&type, "refusal"))
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
ngx_http_aigw_translate_tools(ngx_http_aigw_translate_t *t, ngx_str_t *tools)
{
    ngx_int_t              rc;
    ngx_str_t              key, tool, value, function, name, description,
                           parameters;
    ngx_http_aigw_json_out_t   *o;
    ngx_http_aigw_json_t   j, k;

    o = &t->out;

    if (ngx_http_aigw_json_open(&j, tools) != NGX_OK || j.close != ']') {
        return ngx_http_aigw_translate_refuse(t, "tools", "not an array");
    }

    ngx_http_aigw_json_out_lit(o, ",\"tools\":[");

    while ((rc = ngx_http_aigw_json_next(&j, &key, &tool)) == NGX_OK) {

        ngx_str_null(&function);
        ngx_str_null(&name);
        ngx_str_null(&description);
        ngx_str_null(&parameters);

        if (ngx_http_aigw_json_open(&k, &tool) != NGX_OK) {
            return ngx_http_aigw_translate_refuse(t, "tools",
                                                  "a tool is not an object");
        }

        while ((rc = ngx_http_aigw_json_next(&k, &key, &value)) == NGX_OK) {
            if (ngx_http_aigw_json_is(&key, "function")) {
                function = value;

            } else if (ngx_http_aigw_json_is(&key, "type")
                       && !ngx_http_aigw_json_string_is(&value, "function"))
            {
                return ngx_http_aigw_translate_refuse(t, "tools",
                                                      "a tool that is not a "
                                                      "function");
            }
        }

        if (rc != NGX_DONE
            || ngx_http_aigw_json_open(&k, &function) != NGX_OK)
        {
            return ngx_http_aigw_translate_refuse(t, "tools",
                                                  "a tool without its "
                                                  "function");
        }

        while ((rc = ngx_http_aigw_json_next(&k, &key, &value)) == NGX_OK) {
            if (ngx_http_aigw_json_is(&key, "name")) {
                name = value;

            } else if (ngx_http_aigw_json_is(&key, "description")) {
                description = value;

            } else if (ngx_http_aigw_json_is(&key, "parameters")) {
                parameters = value;
            }
        }

        if (rc != NGX_DONE || name.len < 2) {
            return ngx_http_aigw_translate_refuse(t, "tools",
                                                  "a function without a "
                                                  "name");
        }

        ngx_http_aigw_json_out_lit(o, "{\"name\":");
        ngx_http_aigw_json_out_str(o, &name);

        if (description.len) {
            ngx_http_aigw_json_out_lit(o, ",\"description\":");
            ngx_http_aigw_json_out_str(o, &description);
        }

        ngx_http_aigw_json_out_lit(o, ",\"input_schema\":");

        if (parameters.len && parameters.data[0] == '{') {
            ngx_http_aigw_json_out_str(o, &parameters);

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
ngx_http_aigw_translate_tool_choice(ngx_http_aigw_translate_t *t,
    ngx_str_t *choice)
{
    ngx_str_t             function, name;
    ngx_http_aigw_json_out_t   o;

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


static ngx_int_t
ngx_http_aigw_translate_refuse(ngx_http_aigw_translate_t *t,
    const char *param, const char *reason)
{
    t->param = param;
    t->reason = reason;

    return NGX_HTTP_AIGW_TRANSLATE_REFUSED;
}


/* a string value's content, unescaped, in the pool */

static ngx_int_t
ngx_http_aigw_translate_unescape(ngx_pool_t *pool, ngx_str_t *v,
    ngx_str_t *out)
{
    u_char  *dst;

    dst = ngx_pnalloc(pool, v->len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_http_aigw_scan_unescape(dst, v->data + 1,
                                           v->data + v->len - 1)
               - dst;
    out->data = dst;

    return NGX_OK;
}


/* 1 if a value is a number in [low, high] */

static ngx_uint_t
ngx_http_aigw_translate_number_is(ngx_str_t *v, double low, double high)
{
    u_char   buf[32];
    char    *end;
    double   d;

    if (v->len == 0 || v->len >= sizeof(buf)
        || !((v->data[0] >= '0' && v->data[0] <= '9') || v->data[0] == '-'))
    {
        return 0;
    }

    ngx_cpystrn(buf, v->data, v->len + 1);

    d = strtod((char *) buf, &end);

    return end == (char *) buf + v->len && d >= low && d <= high;
}
