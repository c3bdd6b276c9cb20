
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * Access step 2: the body, read once and scanned once.  What a provider
 * gets is the client's bytes, but for the spans a step replaced.
 */


/* text spans most requests fit in without a second scan */
#define NGX_HTTP_AIGW_BODY_TEXT  64


static void ngx_http_aigw_body_post(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigw_body_scan(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static ngx_int_t ngx_http_aigw_body_check(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static ngx_int_t ngx_http_aigw_body_messages(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static ngx_int_t ngx_http_aigw_body_input(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, const char *name, ngx_http_aigw_field_t *f,
    ngx_http_aigw_shape_t *shape);
static ngx_int_t ngx_http_aigw_body_text(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static ngx_int_t ngx_http_aigw_body_refuse(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, const char *code, const char *fmt, ...);
static const char *ngx_http_aigw_body_type(u_char c);
static ngx_int_t ngx_http_aigw_body_collect(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_aigw_body_json_string(ngx_pool_t *pool,
    ngx_str_t *s, ngx_str_t *out);
static ngx_int_t ngx_http_aigw_body_link(ngx_http_request_t *r,
    ngx_chain_t ***ll, u_char *start, u_char *end);


ngx_int_t
ngx_http_aigw_body_handler(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    /* the model list is answered in the content phase, without a body */

    if (ctx->endpoint == NGX_HTTP_AIGW_EP_MODELS
        || ctx->endpoint == NGX_HTTP_AIGW_EP_MODEL)
    {
        return NGX_DECLINED;
    }

    if (ctx->endpoint == NGX_HTTP_AIGW_EP_RESPONSE) {
        return ngx_http_aigw_responses_check(r, ctx);
    }

    if (ctx->endpoint == NGX_HTTP_AIGW_EP_UNKNOWN) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: unknown endpoint \"%V\"", &r->uri);
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_NOT_FOUND,
                                   "unknown_url",
                                   "Unknown request URL: %V %V.",
                                   &r->method_name, &r->uri);
    }

    if (r->method != NGX_HTTP_POST) {
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_NOT_ALLOWED,
                                   "method_not_allowed",
                                   "Use POST for %V.", &r->uri);
    }

    if (!ctx->body_read) {
        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r, ngx_http_aigw_body_post);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        /* the reference the body read took */
        ngx_http_finalize_request(r, NGX_DONE);

        if (!ctx->body_read) {
            ctx->body_wait = 1;
            return NGX_DONE;
        }
    }

    return ngx_http_aigw_body_scan(r, ctx);
}


/* the body is read: the phases go on where they waited, if they did */

static void
ngx_http_aigw_body_post(ngx_http_request_t *r)
{
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    ctx->body_read = 1;

    if (ctx->body_wait) {
        ctx->body_wait = 0;

        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
    }
}


/*
 * The one scan: a JSON object, whose "model" and "stream" the gateway
 * needs now.  Returns NGX_OK, or an HTTP status with the error recorded.
 */

static ngx_int_t
ngx_http_aigw_body_scan(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    u_char                 *p;
    size_t                  n;
    ngx_int_t               rc;
    ngx_str_t               body;
    ngx_http_aigw_scan_t   *s;
    ngx_http_aigw_span_t    text[NGX_HTTP_AIGW_BODY_TEXT];
    ngx_http_aigw_field_t  *f;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: request without a body");
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request",
                                   "The request has no body; a JSON object "
                                   "is expected.");
    }

    if (ngx_http_aigw_body_collect(r, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->body = body;
    s = &ctx->scan;

    s->text = text;
    s->text_size = NGX_HTTP_AIGW_BODY_TEXT;

    /*
     * the top-level keys, for the guard's list of parameters: only where
     * there is one (2 KB a request, most of a pool block)
     */

    s->keys = NULL;

    if (ngx_http_aigw_guard_params_on(r)) {
        s->keys = ngx_palloc(r->pool, NGX_HTTP_AIGW_SCAN_KEYS
                                      * sizeof(ngx_http_aigw_span_t));
        if (s->keys == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rc = ngx_http_aigw_scan(s, body.data, body.data + body.len);

    if (rc == NGX_OK && s->ntext > s->text_size) {

        /* a long conversation: room for all its texts, and again */

        s->text = ngx_palloc(r->pool, s->ntext * sizeof(ngx_http_aigw_span_t));
        if (s->text == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        s->text_size = s->ntext;

        rc = ngx_http_aigw_scan(s, body.data, body.data + body.len);

    } else if (rc == NGX_OK) {
        s->text = ngx_palloc(r->pool,
                             s->ntext * sizeof(ngx_http_aigw_span_t) + 1);
        if (s->text == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(s->text, text, s->ntext * sizeof(ngx_http_aigw_span_t));
        s->text_size = s->ntext;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: request body has a top-level key twice, "
                      "at byte %uz", s->error);
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "duplicate_key",
                                   "The request body has a top-level key "
                                   "more than once.");
    }

    if (rc != NGX_OK) {
        for (p = body.data; p < body.data + body.len; p++) {
            if (*p != ' ' && *p != '\t' && *p != CR && *p != LF) {
                break;
            }
        }

        /* another JSON value than an object is told apart */

        n = body.data + body.len - p;

        if (s->reason && ngx_strcmp(s->reason, "nested too deeply") == 0) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aigw: request body is nested too deeply, "
                          "at byte %uz", s->error);
            return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_json",
                                       "The request body is nested too "
                                       "deeply (more than %d levels).",
                                       NGX_HTTP_AIGW_SCAN_DEPTH);
        }

        if (n == 0 || !(*p == '[' || *p == '"' || *p == '-'
              || (*p >= '0' && *p <= '9')
              || (n >= 4 && ngx_strncmp(p, "true", 4) == 0)
              || (n >= 5 && ngx_strncmp(p, "false", 5) == 0)
              || (n >= 4 && ngx_strncmp(p, "null", 4) == 0)))
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aigw: request body is not valid JSON: %s "
                          "at byte %uz", s->reason, s->error);
            return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_json",
                                       "The request body is not valid "
                                       "JSON.");
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: request body is not a JSON object");
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request",
                                   "The request body must be a JSON "
                                   "object.");
    }

    f = &s->field[NGX_HTTP_AIGW_F_MODEL];

    if (f->key == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: request without \"model\"");
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "missing_model",
                                   "you must provide a model parameter");
    }

    if (*f->start != '"' || f->end - f->start == 2) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: \"model\" is not a non-empty string");
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_type",
                                   "\"model\" must be a non-empty string.");
    }

    /* the name as the client meant it, escapes undone where there are */

    ctx->model.data = f->start + 1;
    ctx->model.len = f->end - f->start - 2;

    if (ngx_strlchr(ctx->model.data, ctx->model.data + ctx->model.len, '\\'))
    {
        p = ngx_pnalloc(r->pool, ctx->model.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->model.len = ngx_http_aigw_scan_unescape(p, ctx->model.data,
                                                     ctx->model.data
                                                     + ctx->model.len)
                         - p;
        ctx->model.data = p;
    }

    f = &s->field[NGX_HTTP_AIGW_F_STREAM];

    if (f->key) {
        if (*f->start == 't') {
            ctx->stream = 1;

        } else if (*f->start != 'f' && *f->start != 'n') {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aigw: \"stream\" is not a boolean");
            return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_type",
                                       "\"stream\" must be a boolean.");
        }
    }

    if (ctx->stream && ctx->endpoint == NGX_HTTP_AIGW_EP_EMBEDDINGS) {
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request",
                                   "Embeddings cannot be streamed.");
    }

    return ngx_http_aigw_body_check(r, ctx);
}


/*
 * What the gateway refuses itself, before any provider is called: the
 * fields it and the providers read, of the wrong type or missing, and
 * text a policy step would read that is not text (a NUL, invalid
 * UTF-8).  Returns NGX_OK, or 400 with the error recorded and logged.
 */

static ngx_int_t
ngx_http_aigw_body_check(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    u_char                 *p;
    ngx_int_t               rc;
    ngx_uint_t              i;
    ngx_http_aigw_field_t  *f;

    static ngx_uint_t  counts[] = {
        NGX_HTTP_AIGW_F_MAX_TOKENS, NGX_HTTP_AIGW_F_MAX_COMPLETION_TOKENS
    };

    static const char  *names[] = {
        "max_tokens", "max_completion_tokens"
    };

    for (i = 0; i < 2; i++) {
        f = &ctx->scan.field[counts[i]];

        if (f->key == NULL || *f->start == 'n') {
            continue;
        }

        /* a number of digits only, no sign, fraction or exponent */

        for (p = f->start; p < f->end; p++) {
            if (*p < '0' || *p > '9') {
                break;
            }
        }

        if (p == f->start || p != f->end) {
            return ngx_http_aigw_body_refuse(r, ctx, "invalid_type",
                                             "Invalid type for '%s': "
                                             "expected a non-negative "
                                             "integer.", names[i]);
        }
    }

    switch (ctx->endpoint) {

    case NGX_HTTP_AIGW_EP_CHAT:
    case NGX_HTTP_AIGW_EP_MESSAGES:
    case NGX_HTTP_AIGW_EP_COUNT_TOKENS:
        rc = ngx_http_aigw_body_messages(r, ctx);
        break;

    case NGX_HTTP_AIGW_EP_EMBEDDINGS:
        rc = ngx_http_aigw_body_input(r, ctx, "input",
                                      &ctx->scan.field[NGX_HTTP_AIGW_F_INPUT],
                                      &ctx->scan.input);
        break;

    case NGX_HTTP_AIGW_EP_COMPLETIONS:
        rc = ngx_http_aigw_body_input(r, ctx, "prompt",
                                      &ctx->scan.field[NGX_HTTP_AIGW_F_PROMPT],
                                      &ctx->scan.prompt);
        break;

    default:
        rc = NGX_OK;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_aigw_body_text(r, ctx);
}


/*
 * "messages": an array of objects, each with a string "role"; the scan
 * has looked at its elements (ctx->scan.messages)
 */

static ngx_int_t
ngx_http_aigw_body_messages(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    const char             *type;
    ngx_http_aigw_field_t  *f;
    ngx_http_aigw_shape_t  *shape;

    f = &ctx->scan.field[NGX_HTTP_AIGW_F_MESSAGES];
    shape = &ctx->scan.messages;

    if (f->key == NULL) {
        return ngx_http_aigw_body_refuse(r, ctx, "missing_required_parameter",
                                         "Missing required parameter: "
                                         "'messages'.");
    }

    if (*f->start != '[') {
        return ngx_http_aigw_body_refuse(r, ctx, "invalid_type",
                                         "Invalid type for 'messages': "
                                         "expected an array of objects, "
                                         "but got %s instead.",
                                         ngx_http_aigw_body_type(*f->start));
    }

    type = shape->value ? ngx_http_aigw_body_type(*shape->value) : NULL;

    switch (shape->error) {

    case NGX_HTTP_AIGW_SHAPE_TYPE:
        return ngx_http_aigw_body_refuse(r, ctx, "invalid_type",
                                         "Invalid type for "
                                         "'messages[%ui]': expected an "
                                         "object, but got %s instead.",
                                         shape->index, type);

    case NGX_HTTP_AIGW_SHAPE_NO_ROLE:
        return ngx_http_aigw_body_refuse(r, ctx,
                                         "missing_required_parameter",
                                         "Missing required parameter: "
                                         "'messages[%ui].role'.",
                                         shape->index);

    case NGX_HTTP_AIGW_SHAPE_ROLE_TYPE:
        return ngx_http_aigw_body_refuse(r, ctx, "invalid_type",
                                         "Invalid type for "
                                         "'messages[%ui].role': expected "
                                         "a string, but got %s instead.",
                                         shape->index, type);

    default:
        return NGX_OK;
    }
}


/*
 * "input" of embeddings, "prompt" of completions: a string, or an array
 * of strings, of token numbers, or of arrays of token numbers; the scan
 * has looked at the array's elements (shape)
 */

static ngx_int_t
ngx_http_aigw_body_input(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    const char *name, ngx_http_aigw_field_t *f, ngx_http_aigw_shape_t *shape)
{
    if (f->key == NULL) {
        return ngx_http_aigw_body_refuse(r, ctx, "missing_required_parameter",
                                         "Missing required parameter: "
                                         "'%s'.", name);
    }

    if (*f->start == '"'
        || (*f->start == '[' && shape->error == NGX_HTTP_AIGW_SHAPE_OK))
    {
        return NGX_OK;
    }

    return ngx_http_aigw_body_refuse(r, ctx, "invalid_type",
                                     "Invalid type for '%s': expected a "
                                     "string, an array of strings, an "
                                     "array of tokens or an array of token "
                                     "arrays.", name);
}


/*
 * The text spans a policy step reads: no NUL, raw or escaped (C string
 * functions, PCRE patterns and logs would see less than the provider),
 * and valid UTF-8 (PCRE2 in UTF mode refuses anything else).  The scan
 * has checked them (ctx->scan.text_error); a raw NUL is not JSON.
 */

static ngx_int_t
ngx_http_aigw_body_text(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    const char  *name;

    if (ctx->scan.text_error == NGX_HTTP_AIGW_TEXT_OK) {
        return NGX_OK;
    }

    switch (ctx->scan.text_field) {
    case NGX_HTTP_AIGW_F_INPUT:
        name = "input";
        break;
    case NGX_HTTP_AIGW_F_PROMPT:
        name = "prompt";
        break;
    case NGX_HTTP_AIGW_F_SYSTEM:
        name = "system";
        break;
    default:
        name = "messages";
    }

    return ngx_http_aigw_body_refuse(r, ctx, "invalid_value",
                                     "Invalid value for '%s': its text "
                                     "has %s.", name,
                                     (ctx->scan.text_error
                                      == NGX_HTTP_AIGW_TEXT_NUL)
                                     ? "a NUL character" : "invalid UTF-8");
}


static ngx_int_t
ngx_http_aigw_body_refuse(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    const char *code, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;
    u_char    msg[NGX_MAX_ERROR_STR];

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + sizeof(msg), fmt, args);
    va_end(args);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aigw: request refused: %*s", (size_t) (p - msg), msg);

    return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST, code, "%*s",
                               (size_t) (p - msg), msg);
}


static const char *
ngx_http_aigw_body_type(u_char c)
{
    switch (c) {
    case '"':
        return "a string";
    case '{':
        return "an object";
    case '[':
        return "an array";
    case 't':
    case 'f':
        return "a boolean";
    case 'n':
        return "null";
    default:
        return "a number";
    }
}


/* the body in one piece of memory, reading a temporary file if needed */

static ngx_int_t
ngx_http_aigw_body_collect(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? (size_t) (b->file_last - b->file_pos)
                          : (size_t) (b->last - b->pos);
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {

            /* a chunked body may end in an empty buffer, pos NULL */

            if (b->last != b->pos) {
                p = ngx_cpymem(p, b->pos, b->last - b->pos);
            }

            continue;
        }

        /* a body past client_body_buffer_size, already on local disk */

        n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos),
                          b->file_pos);

        if (n != b->file_last - b->file_pos) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "aigw: could not read the request body file");
            return NGX_ERROR;
        }

        p += n;
    }

    body->len = p - body->data;

    return NGX_OK;
}


/* client bytes [start, end) replaced by text; kept in body order */

ngx_int_t
ngx_http_aigw_body_splice(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    u_char *start, u_char *end, ngx_str_t *text)
{
    ngx_uint_t               i;
    ngx_http_aigw_splice_t  *sp;

    if (ctx->splices == NULL) {
        ctx->splices = ngx_array_create(r->pool, 4,
                                        sizeof(ngx_http_aigw_splice_t));
        if (ctx->splices == NULL) {
            return NGX_ERROR;
        }
    }

    if (ngx_array_push(ctx->splices) == NULL) {
        return NGX_ERROR;
    }

    sp = ctx->splices->elts;

    for (i = ctx->splices->nelts - 1; i > 0 && sp[i - 1].start > start; i--) {
        sp[i] = sp[i - 1];
    }

    sp[i].start = start;
    sp[i].end = end;
    sp[i].text = *text;

    return NGX_OK;
}


/*
 * A field set to a JSON value: the value replaced where the key is, else
 * "key":value added at the end of its object, the parent field's or,
 * with NGX_HTTP_AIGW_F_N, the body's
 */

ngx_int_t
ngx_http_aigw_body_set_field(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_uint_t parent, ngx_uint_t field, ngx_str_t *key, ngx_str_t *value)
{
    u_char                 *p, *open, *close;
    ngx_str_t               text;
    ngx_http_aigw_field_t  *f;

    f = &ctx->scan.field[field];

    if (f->key) {
        return ngx_http_aigw_body_splice(r, ctx, f->start, f->end, value);
    }

    if (parent == NGX_HTTP_AIGW_F_N) {
        open = ctx->scan.open;
        close = ctx->scan.close;

    } else {
        open = ctx->scan.field[parent].start;
        close = ctx->scan.field[parent].end - 1;
    }

    for (p = open + 1; p < close; p++) {
        if (*p != ' ' && *p != '\t' && *p != CR && *p != LF) {
            break;
        }
    }

    text.len = (p < close) + key->len + sizeof("\"\":") - 1 + value->len;
    text.data = ngx_pnalloc(r->pool, text.len);
    if (text.data == NULL) {
        return NGX_ERROR;
    }

    /* an object with members gets a comma first */

    p = (p < close) ? ngx_cpymem(text.data, ",", 1) : text.data;

    *p++ = '"';
    p = ngx_cpymem(p, key->data, key->len);
    *p++ = '"';
    *p++ = ':';
    ngx_memcpy(p, value->data, value->len);

    return ngx_http_aigw_body_splice(r, ctx, close, close, &text);
}


/* the caller, "tenant" or "tenant/user", as a JSON string */

ngx_int_t
ngx_http_aigw_body_caller(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_str_t *json)
{
    ngx_str_t  user;

    user = ctx->tenant;

    if (ctx->key && ctx->key->user.len) {
        user.len = ctx->tenant.len + 1 + ctx->key->user.len;
        user.data = ngx_pnalloc(r->pool, user.len);
        if (user.data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(user.data, "%V/%V", &ctx->tenant, &ctx->key->user);
    }

    return ngx_http_aigw_body_json_string(r->pool, &user, json);
}


static ngx_int_t
ngx_http_aigw_body_json_string(ngx_pool_t *pool, ngx_str_t *s,
    ngx_str_t *out)
{
    u_char  *p;

    out->len = s->len + ngx_escape_json(NULL, s->data, s->len) + 2;

    p = ngx_pnalloc(pool, out->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    *p++ = '"';
    p = (u_char *) ngx_escape_json(p, s->data, s->len);
    *p = '"';

    return NGX_OK;
}


/*
 * The body for a provider, as a chain: the client's bytes in place, the
 * splices between them, and "model" as the provider calls it.  Nothing
 * is copied but the splices' own text.
 */

ngx_int_t
ngx_http_aigw_body_output(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_str_t *model, ngx_chain_t **out, size_t *len)
{
    u_char                  *pos;
    ngx_str_t                name;
    ngx_uint_t               i, n;
    ngx_chain_t             *cl, **ll;
    ngx_http_aigw_field_t   *f;
    ngx_http_aigw_splice_t  *sp, msp;

    f = &ctx->scan.field[NGX_HTTP_AIGW_F_MODEL];

    ngx_memzero(&msp, sizeof(ngx_http_aigw_splice_t));

    if (model->len != ctx->model.len
        || ngx_strncmp(model->data, ctx->model.data, model->len) != 0)
    {
        if (ngx_http_aigw_body_json_string(r->pool, model, &name) != NGX_OK) {
            return NGX_ERROR;
        }

        msp.start = f->start;
        msp.end = f->end;
        msp.text = name;
    }

    sp = ctx->splices ? ctx->splices->elts : NULL;
    n = ctx->splices ? ctx->splices->nelts : 0;

    ll = out;
    pos = ctx->body.data;
    *len = 0;

    for (i = 0; i <= n; i++) {

        /* the model's splice, in its place among the others */

        if (msp.start && (i == n || sp[i].start > msp.start)) {
            if (ngx_http_aigw_body_link(r, &ll, pos, msp.start) != NGX_OK
                || ngx_http_aigw_body_link(r, &ll, msp.text.data,
                                           msp.text.data + msp.text.len)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            *len += (msp.start - pos) + msp.text.len;
            pos = msp.end;
            msp.start = NULL;
        }

        if (i == n) {
            break;
        }

        if (ngx_http_aigw_body_link(r, &ll, pos, sp[i].start) != NGX_OK
            || ngx_http_aigw_body_link(r, &ll, sp[i].text.data,
                                       sp[i].text.data + sp[i].text.len)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        *len += (sp[i].start - pos) + sp[i].text.len;
        pos = sp[i].end;
    }

    if (ngx_http_aigw_body_link(r, &ll, pos, ctx->body.data + ctx->body.len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    *len += ctx->body.data + ctx->body.len - pos;
    *ll = NULL;

    /* a TLS connection buffers writes until it sees a flush */

    for (cl = *out; cl->next; cl = cl->next) { /* void */ }

    cl->buf->flush = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_body_link(ngx_http_request_t *r, ngx_chain_t ***ll,
    u_char *start, u_char *end)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (start == end) {
        return NGX_OK;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    /* start is where upstream rewinds to on a retry */

    b->memory = 1;
    b->start = start;
    b->pos = start;
    b->last = end;
    b->end = end;

    cl->buf = b;

    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}
