
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"


/*
 * OpenAI's wire format, and that of every OpenAI-compatible server:
 * the endpoint's path below the base URL, a bearer credential.
 */

ngx_int_t
ngx_http_aigw_openai_create_request(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_model_t *model)
{
    ngx_str_t  extra;

    ngx_str_null(&extra);

    return ngx_http_aigw_request_build(r, ctx, model,
                                   ngx_http_aigw_body_endpoint_path(
                                                             ctx->endpoint),
                                   &extra);
}
