
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


static ngx_int_t ngx_http_aigw_request_client_headers(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static ngx_uint_t ngx_http_aigw_request_dropped(
    ngx_http_aigw_main_conf_t *amcf, ngx_table_elt_t *h);
static ngx_uint_t ngx_http_aigw_request_skip(ngx_table_elt_t *h,
    ngx_str_t *connection, ngx_str_t *tenant_header);
static u_char *ngx_http_aigw_request_decimal(u_char *p, size_t n);


/*
 * Client headers that never reach a provider: hop-by-hop ones, the
 * client's own credentials, what the gateway sets itself, and
 * Accept-Encoding, as the gateway reads the answers it passes on.
 */

static ngx_str_t  ngx_http_aigw_request_drop[] = {
    ngx_string("host"),
    ngx_string("connection"),
    ngx_string("keep-alive"),
    ngx_string("proxy-connection"),
    ngx_string("proxy-authorization"),
    ngx_string("te"),
    ngx_string("trailer"),
    ngx_string("transfer-encoding"),
    ngx_string("upgrade"),
    ngx_string("expect"),
    ngx_string("content-length"),
    ngx_string("content-type"),
    ngx_string("accept-encoding"),
    ngx_string("authorization"),
    ngx_string("x-api-key"),
    ngx_string("api-key"),
    ngx_string("cookie"),
    ngx_string("openai-organization"),
    ngx_string("openai-project"),
    ngx_string("anthropic-version"),
    ngx_string("x-request-id"),
    ngx_null_string
};


/*
 * The names above in a hash, looked up with the hash nginx computed; and
 * before it, a bit for each name's length under its first letter: most
 * headers that pass (X-Stainless-*, User-Agent, Accept) differ from
 * every name there, and cost no lookup.
 */

#define ngx_http_aigw_request_may_drop(amcf, name, len)                      \
    ((amcf)->drop_lens[(name)[0] & 0x1f] & ((uint32_t) 1 << ((len) & 0x1f)))

ngx_int_t
ngx_http_aigw_request_init(ngx_conf_t *cf, ngx_http_aigw_main_conf_t *amcf)
{
    ngx_str_t        *d;
    ngx_array_t       keys;
    ngx_hash_key_t   *hk;
    ngx_hash_init_t   hash;

    if (ngx_array_init(&keys, cf->temp_pool, 32, sizeof(ngx_hash_key_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (d = ngx_http_aigw_request_drop; d->len; d++) {
        hk = ngx_array_push(&keys);
        if (hk == NULL) {
            return NGX_ERROR;
        }

        hk->key = *d;
        hk->key_hash = ngx_hash_key_lc(d->data, d->len);
        hk->value = (void *) 1;

        amcf->drop_lens[d->data[0] & 0x1f] |= (uint32_t) 1 << (d->len & 0x1f);
    }

    hash.hash = &amcf->drop_headers;
    hash.key = ngx_hash_key_lc;
    hash.max_size = 512;
    hash.bucket_size = ngx_align(64, ngx_cacheline_size);
    hash.name = "aigw dropped headers hash";
    hash.pool = cf->pool;
    hash.temp_pool = NULL;

    return ngx_hash_init(&hash, keys.elts, keys.nelts);
}


/*
 * Builds u->request_bufs for one candidate: request line, Host, the
 * provider's credentials, the format's headers, the client's headers
 * that may pass, and the body with the upstream model name.
 */

ngx_int_t
ngx_http_aigw_request_build(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_model_t *model)
{
    size_t                      len, body_len;
    u_char                     *p;
    ngx_buf_t                  *b;
    ngx_str_t                   extra, *path;
    ngx_chain_t                *cl, *body;
    ngx_http_aigw_provider_t   *provider;
    ngx_http_aigw_loc_conf_t   *alcf;

    provider = model->provider;
    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    /* the provider serves the endpoint the client called, or its own */
    path = ngx_http_aigw_translate_path(ctx, model);
    ctx->translated = (provider->format != ctx->format);

    /* a stored response is read, deleted or cancelled without a body */

    body = NULL;
    body_len = 0;

    if (provider->format->headers(r, &extra) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->translated) {
        if (ngx_http_aigw_translate_body(r, ctx, model, &body, &body_len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (ctx->body.len
               && ngx_http_aigw_body_output(r, ctx, &model->upstream_model,
                                            &body, &body_len)
                  != NGX_OK)
    {
        return NGX_ERROR;
    }

    len = r->method_name.len + sizeof("  HTTP/1.1" CRLF) - 1
          + provider->base_path.len + path->len
          + sizeof("Host: " CRLF) - 1 + provider->host.len
          + provider->auth_headers.len
          + extra.len
          + alcf->tenant_header.len + sizeof(": " CRLF) - 1 + ctx->tenant.len
          + sizeof("Content-Type: application/json" CRLF) - 1
          + sizeof("Content-Length: " CRLF) - 1 + NGX_SIZE_T_LEN
          + sizeof("X-Request-Id: " CRLF) - 1 + ctx->request_id.len
          + sizeof(CRLF) - 1;

    if (ctx->client_headers.data == NULL
        && ngx_http_aigw_request_client_headers(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    len += ctx->client_headers.len;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->last, r->method_name.data, r->method_name.len);
    *p++ = ' ';
    if (provider->base_path.len) {
        p = ngx_cpymem(p, provider->base_path.data, provider->base_path.len);
    }
    p = ngx_cpymem(p, path->data, path->len);
    p = ngx_cpymem(p, " HTTP/1.1" CRLF "Host: ",
                   sizeof(" HTTP/1.1" CRLF "Host: ") - 1);
    p = ngx_cpymem(p, provider->host.data, provider->host.len);
    *p++ = CR; *p++ = LF;

    /* either may be empty, and memcpy() of NULL is undefined */

    if (provider->auth_headers.len) {
        p = ngx_cpymem(p, provider->auth_headers.data,
                       provider->auth_headers.len);
    }

    if (extra.len) {
        p = ngx_cpymem(p, extra.data, extra.len);
    }

    /* copies, not ngx_sprintf(): its format walk costs more (hot path) */

    if (alcf->tenant_header.len && ctx->tenant.len) {
        p = ngx_cpymem(p, alcf->tenant_header.data, alcf->tenant_header.len);
        *p++ = ':'; *p++ = ' ';
        p = ngx_cpymem(p, ctx->tenant.data, ctx->tenant.len);
        *p++ = CR; *p++ = LF;
    }

    if (r->method == NGX_HTTP_POST) {
        p = ngx_cpymem(p, "Content-Type: application/json" CRLF
                       "Content-Length: ",
                       sizeof("Content-Type: application/json" CRLF
                              "Content-Length: ") - 1);
        p = ngx_http_aigw_request_decimal(p, body_len);
        *p++ = CR; *p++ = LF;
    }

    /* the request's id, the client's own when it was sane (trace.c) */

    if (ctx->request_id.len) {
        p = ngx_cpymem(p, "X-Request-Id: ", sizeof("X-Request-Id: ") - 1);
        p = ngx_cpymem(p, ctx->request_id.data, ctx->request_id.len);
        *p++ = CR; *p++ = LF;
    }

    p = ngx_cpymem(p, ctx->client_headers.data, ctx->client_headers.len);

    *p++ = CR; *p++ = LF;

    b->last = p;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = body;

    r->upstream->request_bufs = cl;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: request to \"%V\" for \"%V\", body %uz",
                   &provider->name, &model->upstream_model, body_len);

    return NGX_OK;
}


/* n in decimal: ngx_sprintf()'s "%uz" walks its format first (~200) */

static u_char *
ngx_http_aigw_request_decimal(u_char *p, size_t n)
{
    u_char   digits[NGX_SIZE_T_LEN], *d;

    d = digits + NGX_SIZE_T_LEN;

    do {
        *--d = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    return ngx_cpymem(p, d, digits + NGX_SIZE_T_LEN - d);
}


/*
 * The client's headers that pass, as header lines: the same for every
 * candidate, so made once a request
 */

static ngx_int_t
ngx_http_aigw_request_client_headers(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    size_t                      len;
    u_char                     *p;
    ngx_str_t                   connection;
    ngx_uint_t                  i, n, k;
    ngx_list_part_t            *part;
    ngx_table_elt_t            *h, **pass;
    ngx_http_aigw_loc_conf_t   *alcf;
    ngx_http_aigw_main_conf_t  *amcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    n = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    pass = ngx_palloc(r->pool, (n + 1) * sizeof(ngx_table_elt_t *));
    if (pass == NULL) {
        return NGX_ERROR;
    }

    /*
     * One walk: the headers that are not dropped by name, and the last
     * "Connection" (1.22 keeps no pointer to it in r->headers_in), whose
     * names are then dropped too
     */

    ngx_str_null(&connection);
    n = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (!ngx_http_aigw_request_dropped(amcf, &h[i])) {
                pass[n++] = &h[i];
                continue;
            }

            if (h[i].key.len == sizeof("connection") - 1
                && ngx_strncmp(h[i].lowcase_key, "connection",
                               sizeof("connection") - 1) == 0)
            {
                connection = h[i].value;
            }
        }
    }

    len = 0;
    k = 0;

    for (i = 0; i < n; i++) {
        if (ngx_http_aigw_request_skip(pass[i], &connection,
                                       &alcf->tenant_header))
        {
            continue;
        }

        pass[k++] = pass[i];
        len += pass[i]->key.len + sizeof(": " CRLF) - 1 + pass[i]->value.len;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->client_headers.data = p;
    ctx->client_headers.len = len;

    for (i = 0; i < k; i++) {
        p = ngx_cpymem(p, pass[i]->key.data, pass[i]->key.len);
        *p++ = ':'; *p++ = ' ';
        p = ngx_cpymem(p, pass[i]->value.data, pass[i]->value.len);
        *p++ = CR; *p++ = LF;
    }

    return NGX_OK;
}


/*
 * A client header by its lowercase name: the last of that name, and how
 * many there are
 */

ngx_table_elt_t *
ngx_http_aigw_request_header(ngx_http_request_t *r, const char *name,
    size_t len, ngx_uint_t *count)
{
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *found;

    found = NULL;
    n = 0;

    /* the length, then the first byte: most headers cost two compares */

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len == len
                && h[i].lowcase_key[0] == (u_char) name[0]
                && ngx_strncmp(h[i].lowcase_key, name, len) == 0)
            {
                found = &h[i];
                n++;
            }
        }
    }

    if (count) {
        *count = n;
    }

    return found;
}


/* a header of the list of dropped names */

static ngx_uint_t
ngx_http_aigw_request_dropped(ngx_http_aigw_main_conf_t *amcf,
    ngx_table_elt_t *h)
{
    return h->key.len
           && ngx_http_aigw_request_may_drop(amcf, h->lowcase_key,
                                             h->key.len)
           && ngx_hash_find(&amcf->drop_headers, h->hash, h->lowcase_key,
                            h->key.len);
}


/* a header the tenant header or the client's Connection drops */

static ngx_uint_t
ngx_http_aigw_request_skip(ngx_table_elt_t *h, ngx_str_t *connection,
    ngx_str_t *tenant_header)
{
    u_char  *p, *last, *start;

    /* the gateway alone says who the tenant is */

    if (tenant_header->len == h->key.len
        && ngx_strncasecmp(h->key.data, tenant_header->data, h->key.len) == 0)
    {
        return 1;
    }

    /* headers the client named in "Connection" are hop-by-hop too */

    if (connection->len == 0) {
        return 0;    /* and NULL + 0 is undefined */
    }

    p = connection->data;
    last = p + connection->len;

    while (p < last) {
        while (p < last && (*p == ' ' || *p == ',' || *p == '\t')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if ((size_t) (p - start) == h->key.len
            && ngx_strncasecmp(start, h->key.data, h->key.len) == 0)
        {
            return 1;
        }
    }

    return 0;
}
