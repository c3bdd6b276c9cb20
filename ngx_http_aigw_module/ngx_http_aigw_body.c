
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


static ngx_int_t ngx_http_aigw_body_collect(ngx_http_request_t *r,
    ngx_str_t *body);
static void ngx_http_aigw_body_cleanup(void *data);


typedef struct {
    ngx_str_t    suffix;
    ngx_uint_t   endpoint;
} ngx_http_aigw_endpoint_t;


static ngx_http_aigw_endpoint_t  ngx_http_aigw_endpoints[] = {
    { ngx_string("/chat/completions"), NGX_HTTP_AIGW_EP_CHAT },
    { ngx_string("/completions"), NGX_HTTP_AIGW_EP_COMPLETIONS },
    { ngx_string("/embeddings"), NGX_HTTP_AIGW_EP_EMBEDDINGS },
    { ngx_string("/messages"), NGX_HTTP_AIGW_EP_MESSAGES },
    { ngx_string("/models"), NGX_HTTP_AIGW_EP_MODELS },
    { ngx_null_string, NGX_HTTP_AIGW_EP_UNKNOWN }
};


/* the API a request calls, by the end of its URI: any prefix works */

ngx_uint_t
ngx_http_aigw_body_endpoint(ngx_http_request_t *r)
{
    u_char                    *p;
    size_t                     len;
    ngx_http_aigw_endpoint_t  *ep;

    len = r->uri.len;

    while (len > 1 && r->uri.data[len - 1] == '/') {
        len--;
    }

    for (ep = ngx_http_aigw_endpoints; ep->suffix.len; ep++) {
        if (len >= ep->suffix.len
            && ngx_strncmp(r->uri.data + len - ep->suffix.len,
                           ep->suffix.data, ep->suffix.len)
               == 0)
        {
            return ep->endpoint;
        }
    }

    /* ".../models/{id}", a model's own page */

    p = ngx_strlcasestrn(r->uri.data, r->uri.data + len,
                         (u_char *) "/models/", sizeof("/models/") - 2);

    if (p && p + sizeof("/models/") - 1 < r->uri.data + len) {
        return NGX_HTTP_AIGW_EP_MODEL;
    }

    return NGX_HTTP_AIGW_EP_UNKNOWN;
}


/* the path of an endpoint below a provider's base URL */

ngx_str_t *
ngx_http_aigw_body_endpoint_path(ngx_uint_t endpoint)
{
    ngx_http_aigw_endpoint_t  *ep;

    for (ep = ngx_http_aigw_endpoints; ep->suffix.len; ep++) {
        if (ep->endpoint == endpoint) {
            return &ep->suffix;
        }
    }

    return &ngx_http_aigw_endpoints[0].suffix;
}


/*
 * Parses the client's JSON body once read.  Returns NGX_OK, or an HTTP
 * status with the error recorded in ctx.
 */

ngx_int_t
ngx_http_aigw_body_parse(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    cJSON               *model, *stream;
    ngx_str_t            body;
    ngx_pool_cleanup_t  *cln;

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

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->body = body;
    ctx->json = cJSON_ParseWithLength((char *) body.data, body.len);

    if (ctx->json == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: request body is not valid JSON");
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_json",
                                   "The request body is not valid JSON.");
    }

    cln->handler = ngx_http_aigw_body_cleanup;
    cln->data = ctx->json;

    if (!cJSON_IsObject(ctx->json)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: request body is not a JSON object");
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request",
                                   "The request body must be a JSON "
                                   "object.");
    }

    model = cJSON_GetObjectItemCaseSensitive(ctx->json, "model");

    if (model == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: request without \"model\"");
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "missing_model",
                                   "you must provide a model parameter");
    }

    if (!cJSON_IsString(model) || model->valuestring[0] == '\0') {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: \"model\" is not a non-empty string");
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_type",
                                   "\"model\" must be a non-empty string.");
    }

    ctx->model.data = (u_char *) model->valuestring;
    ctx->model.len = ngx_strlen(model->valuestring);

    stream = cJSON_GetObjectItemCaseSensitive(ctx->json, "stream");

    if (stream && !cJSON_IsBool(stream) && !cJSON_IsNull(stream)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigw: \"stream\" is not a boolean");
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_type",
                                   "\"stream\" must be a boolean.");
    }

    ctx->stream = cJSON_IsTrue(stream) ? 1 : 0;

    if (ctx->stream && ctx->endpoint == NGX_HTTP_AIGW_EP_EMBEDDINGS) {
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request",
                                   "Embeddings cannot be streamed.");
    }

    return NGX_OK;
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
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
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


static void
ngx_http_aigw_body_cleanup(void *data)
{
    cJSON_Delete(data);
}


/*
 * The client's body with "model" set to the upstream model, serialized
 * into the request pool.  The tree is restored so the next candidate
 * starts from what the client sent.
 */

ngx_int_t
ngx_http_aigw_body_set_model(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_str_t *model, ngx_str_t *out)
{
    char    *s, *saved;
    cJSON   *item;
    size_t   len;

    /* nothing to change: the client's own bytes go */

    if (!ctx->json_changed
        && model->len == ctx->model.len
        && ngx_strncmp(model->data, ctx->model.data, model->len) == 0)
    {
        *out = ctx->body;
        return NGX_OK;
    }

    item = cJSON_GetObjectItemCaseSensitive(ctx->json, "model");
    if (item == NULL) {
        return NGX_ERROR;
    }

    saved = item->valuestring;

    item->valuestring = ngx_pnalloc(r->pool, model->len + 1);
    if (item->valuestring == NULL) {
        item->valuestring = saved;
        return NGX_ERROR;
    }

    ngx_memcpy(item->valuestring, model->data, model->len);
    item->valuestring[model->len] = '\0';

    /* most often the body fits a buffer a little larger than it was */

    len = ctx->body.len + model->len + 256;

    out->data = ngx_pnalloc(r->pool, len);
    if (out->data == NULL) {
        item->valuestring = saved;
        return NGX_ERROR;
    }

    if (cJSON_PrintPreallocated(ctx->json, (char *) out->data, len, 0)) {
        item->valuestring = saved;
        out->len = ngx_strlen(out->data);
        return NGX_OK;
    }

    s = cJSON_PrintUnformatted(ctx->json);

    item->valuestring = saved;

    if (s == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(s);

    out->data = ngx_pnalloc(r->pool, len);
    if (out->data == NULL) {
        cJSON_free(s);
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, s, len);
    out->len = len;

    cJSON_free(s);

    return NGX_OK;
}


/*
 * aigw_tenant_user: the caller's tenant (and user) as OpenAI's "user"
 * field, or Anthropic's "metadata.user_id", replacing what the client
 * put there.
 */

ngx_int_t
ngx_http_aigw_body_set_user(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    u_char  *p;
    cJSON   *obj, *item;
    size_t   len;

    len = ctx->tenant.len + 1 + (ctx->key ? ctx->key->user.len : 0) + 1;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (ctx->key && ctx->key->user.len) {
        ngx_sprintf(p, "%V/%V%Z", &ctx->tenant, &ctx->key->user);

    } else {
        ngx_sprintf(p, "%V%Z", &ctx->tenant);
    }

    obj = ctx->json;

    if (ctx->client_format == NGX_HTTP_AIGW_ANTHROPIC) {
        obj = cJSON_GetObjectItemCaseSensitive(ctx->json, "metadata");

        if (!cJSON_IsObject(obj)) {
            cJSON_DeleteItemFromObjectCaseSensitive(ctx->json, "metadata");

            obj = cJSON_AddObjectToObject(ctx->json, "metadata");
            if (obj == NULL) {
                return NGX_ERROR;
            }
        }
    }

    item = cJSON_CreateString((char *) p);
    if (item == NULL) {
        return NGX_ERROR;
    }

    ctx->json_changed = 1;

    if (cJSON_HasObjectItem(obj, ctx->client_format == NGX_HTTP_AIGW_ANTHROPIC
                                 ? "user_id" : "user"))
    {
        cJSON_ReplaceItemInObjectCaseSensitive(obj,
                               ctx->client_format == NGX_HTTP_AIGW_ANTHROPIC
                               ? "user_id" : "user", item);

    } else {
        cJSON_AddItemToObject(obj,
                              ctx->client_format == NGX_HTTP_AIGW_ANTHROPIC
                              ? "user_id" : "user", item);
    }

    return NGX_OK;
}
