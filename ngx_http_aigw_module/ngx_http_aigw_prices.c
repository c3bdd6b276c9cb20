
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>

#include "ngx_http_aigw_module.h"


/*
 * aigw_prices FILE: a price list in the JSON format LiteLLM publishes
 * (model_prices_and_context_window.json), read once when the
 * configuration loads.  Each model without prices of its own takes those
 * of its upstream model name, looked up as "provider/model" and then as
 * "model".  Dollars per token become micro-dollars per million tokens,
 * rounded once here; nothing later is floating point.
 */


static ngx_int_t ngx_http_aigw_prices_set(cJSON *entry,
    ngx_http_aigw_model_t *m);
static ngx_int_t ngx_http_aigw_prices_value(cJSON *entry, const char *name,
    ngx_uint_t *price);


char *
ngx_http_aigw_prices(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_main_conf_t *amcf = conf;

    ngx_str_t  *value;

    if (amcf->prices.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    amcf->prices = value[1];

    if (ngx_conf_full_name(cf->cycle, &amcf->prices, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_aigw_prices_apply(ngx_conf_t *cf, ngx_http_aigw_main_conf_t *amcf)
{
    u_char                  *buf, name[1024];
    cJSON                   *root, *entry;
    ssize_t                  n;
    ngx_int_t                rc;
    ngx_uint_t               i;
    ngx_file_t               file;
    ngx_file_info_t          fi;
    ngx_http_aigw_model_t  **m;

    if (amcf->prices.data == NULL) {
        return NGX_OK;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = amcf->prices;
    file.log = cf->log;

    file.fd = ngx_open_file(amcf->prices.data, NGX_FILE_RDONLY,
                            NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, ngx_errno,
                      ngx_open_file_n " price file \"%V\" failed",
                      &amcf->prices);
        return NGX_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 64 * 1024 * 1024)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "price file \"%V\" is unreadable or too large",
                      &amcf->prices);
        (void) ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    buf = ngx_pnalloc(cf->temp_pool, (size_t) ngx_file_size(&fi) + 1);
    if (buf == NULL) {
        (void) ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    n = ngx_read_file(&file, buf, (size_t) ngx_file_size(&fi), 0);

    (void) ngx_close_file(file.fd);

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    root = cJSON_ParseWithLength((char *) buf, n);

    if (!cJSON_IsObject(root)) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "price file \"%V\" is not a JSON object",
                      &amcf->prices);
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    rc = NGX_OK;
    m = amcf->models.elts;

    for (i = 0; i < amcf->models.nelts; i++) {

        if (m[i]->input_price || m[i]->output_price || m[i]->cached_price
            || m[i]->cache_write_price)
        {
            continue;
        }

        /* "openai/gpt-4o" first, then "gpt-4o" */

        ngx_snprintf(name, sizeof(name) - 1, "%V/%V%Z",
                     &m[i]->provider->name, &m[i]->upstream_model);
        name[sizeof(name) - 1] = '\0';

        entry = cJSON_GetObjectItemCaseSensitive(root, (char *) name);

        if (entry == NULL) {
            ngx_snprintf(name, sizeof(name) - 1, "%V%Z",
                         &m[i]->upstream_model);
            entry = cJSON_GetObjectItemCaseSensitive(root, (char *) name);
        }

        if (entry == NULL) {
            continue;
        }

        if (ngx_http_aigw_prices_set(entry, m[i]) != NGX_OK) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "price file \"%V\": the prices of \"%V\" are "
                          "not numbers of dollars per token",
                          &amcf->prices, &m[i]->upstream_model);
            rc = NGX_ERROR;
            break;
        }
    }

    cJSON_Delete(root);

    return rc;
}


static ngx_int_t
ngx_http_aigw_prices_set(cJSON *entry, ngx_http_aigw_model_t *m)
{
    if (!cJSON_IsObject(entry)) {
        return NGX_ERROR;
    }

    if (ngx_http_aigw_prices_value(entry, "input_cost_per_token",
                                   &m->input_price)
        != NGX_OK
        || ngx_http_aigw_prices_value(entry, "output_cost_per_token",
                                      &m->output_price)
           != NGX_OK
        || ngx_http_aigw_prices_value(entry, "cache_read_input_token_cost",
                                      &m->cached_price)
           != NGX_OK
        || ngx_http_aigw_prices_value(entry,
                                      "cache_creation_input_token_cost",
                                      &m->cache_write_price)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_prices_value(cJSON *entry, const char *name, ngx_uint_t *price)
{
    cJSON  *v;

    v = cJSON_GetObjectItemCaseSensitive(entry, name);

    if (v == NULL || cJSON_IsNull(v)) {
        return NGX_OK;
    }

    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1) {
        return NGX_ERROR;
    }

    /* dollars per token -> micro-dollars per million tokens */
    *price = (ngx_uint_t) (v->valuedouble * 1e12 + 0.5);

    return NGX_OK;
}
