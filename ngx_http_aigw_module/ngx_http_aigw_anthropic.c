
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


#define NGX_HTTP_AIGW_ANTHROPIC_VERSION  "2023-06-01"


/*
 * Anthropic's Messages API: "x-api-key" (set with the provider) and an
 * "anthropic-version" header, the client's own when it sent one, as the
 * SDKs pin the version they parse.
 */

ngx_int_t
ngx_http_aigw_anthropic_create_request(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_model_t *model)
{
    u_char           *p;
    ngx_str_t         extra, version;
    ngx_table_elt_t  *h;

    ngx_str_set(&version, NGX_HTTP_AIGW_ANTHROPIC_VERSION);

    h = ngx_http_aigw_request_header(r, "anthropic-version",
                                     sizeof("anthropic-version") - 1, NULL);
    if (h && h->value.len) {
        version = h->value;
    }

    p = ngx_pnalloc(r->pool, sizeof("anthropic-version: " CRLF) - 1
                             + version.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    extra.data = p;
    extra.len = ngx_sprintf(p, "anthropic-version: %V" CRLF, &version) - p;

    return ngx_http_aigw_request_build(r, ctx, model,
                                   ngx_http_aigw_body_endpoint_path(
                                                             ctx->endpoint),
                                   &extra);
}
