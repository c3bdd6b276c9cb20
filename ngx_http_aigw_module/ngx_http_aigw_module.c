
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_quota.h"
#include "ngx_http_aigw_guard.h"


static ngx_int_t ngx_http_aigw_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_aigw_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_aigw_access_handler(ngx_http_request_t *r);
static void ngx_http_aigw_endpoint(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
static void *ngx_http_aigw_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_aigw_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_aigw_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_aigw_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_aigw_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_uint_t ngx_http_aigw_answer_done(ngx_http_request_t *r);
static u_char *ngx_http_aigw_number(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, uintptr_t data, u_char *p);
static ngx_int_t ngx_http_aigw_meta_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static char *ngx_http_aigw_tenant_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#define NGX_HTTP_AIGW_VAR_PROVIDER        0
#define NGX_HTTP_AIGW_VAR_MODEL           1
#define NGX_HTTP_AIGW_VAR_UPSTREAM_MODEL  2
#define NGX_HTTP_AIGW_VAR_ATTEMPTS        3
#define NGX_HTTP_AIGW_VAR_ROUTE           4
#define NGX_HTTP_AIGW_VAR_STREAM          5
#define NGX_HTTP_AIGW_VAR_KEY_ID          6
#define NGX_HTTP_AIGW_VAR_TENANT          7
#define NGX_HTTP_AIGW_VAR_USER            8
#define NGX_HTTP_AIGW_VAR_TEAM            9
#define NGX_HTTP_AIGW_VAR_PROMPT          10
#define NGX_HTTP_AIGW_VAR_COMPLETION      11
#define NGX_HTTP_AIGW_VAR_TOTAL           12
#define NGX_HTTP_AIGW_VAR_CACHED          13
#define NGX_HTTP_AIGW_VAR_REASONING       14
#define NGX_HTTP_AIGW_VAR_COST            15
#define NGX_HTTP_AIGW_VAR_TTFT            16
#define NGX_HTTP_AIGW_VAR_LATENCY         17
#define NGX_HTTP_AIGW_VAR_USAGE_SOURCE    18
#define NGX_HTTP_AIGW_VAR_QUOTA           19
#define NGX_HTTP_AIGW_VAR_ENDPOINT        20
#define NGX_HTTP_AIGW_VAR_REQUEST_ID      21
#define NGX_HTTP_AIGW_VAR_PROVIDER_ID     22
#define NGX_HTTP_AIGW_VAR_PII             23
#define NGX_HTTP_AIGW_VAR_CACHE_WRITE     24
#define NGX_HTTP_AIGW_VAR_CACHE           25
#define NGX_HTTP_AIGW_VAR_GUARD           26


/*
 * The access phase of a request to aigw_pass, in order.  A step does
 * nothing where it is not configured; a new one goes in its place here.
 */

static ngx_http_handler_pt  ngx_http_aigw_steps[] = {
    ngx_http_aigw_auth_handler,            /* the caller's key */
    ngx_http_aigw_body_handler,            /* the body, read and scanned */
    ngx_http_aigw_route_handler,           /* the model's candidates */
    ngx_http_aigw_guard_handler,           /* the prompt guard */
    ngx_http_aigw_pii_handler,             /* personal data, secrets */
    ngx_http_aigw_moderation_handler,      /* a moderation service */
    ngx_http_aigw_quota_handler,           /* limits, quotas, budgets */
    ngx_http_aigw_cache_handler,           /* a stored answer */
    NULL
};


/* an aigw_usage location knows its caller, and needs nothing else */

static ngx_http_handler_pt  ngx_http_aigw_usage_steps[] = {
    ngx_http_aigw_auth_handler,
    NULL
};


/* the wire formats a client may speak */

ngx_http_aigw_format_t  *ngx_http_aigw_formats[] = {
    &ngx_http_aigw_openai_format,
    &ngx_http_aigw_anthropic_format,
    NULL
};


static ngx_conf_num_bounds_t  ngx_http_aigw_keepalive_bounds = {
    ngx_conf_check_num_bounds, 0, 65535
};


static ngx_conf_num_bounds_t  ngx_http_aigw_semantic_turns_bounds = {
    ngx_conf_check_num_bounds, 1, 1000
};


static ngx_conf_num_bounds_t  ngx_http_aigw_semantic_partition_bounds = {
    ngx_conf_check_num_bounds, 1, 1000000
};


/* the semantic index's vectors: float32, or int8 with a scale */
static ngx_conf_enum_t  ngx_http_aigw_semantic_precisions[] = {
    { ngx_string("float32"), NGX_HTTP_AIGW_SEMANTIC_FLOAT32 },
    { ngx_string("int8"), NGX_HTTP_AIGW_SEMANTIC_INT8 },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_aigw_cache_scopes[] = {
    { ngx_string("tenant"), NGX_HTTP_AIGW_CACHE_TENANT },
    { ngx_string("global"), NGX_HTTP_AIGW_CACHE_GLOBAL },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_aigw_quota_stores[] = {
    { ngx_string("zone"), NGX_HTTP_AIGW_QUOTA_ZONE },
    { ngx_string("redis"), NGX_HTTP_AIGW_QUOTA_REDIS },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_aigw_moderation_fail[] = {
    { ngx_string("open"), 0 },
    { ngx_string("closed"), 1 },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_aigw_quota_redis_down[] = {
    { ngx_string("fail_open"), NGX_HTTP_AIGW_QUOTA_FAIL_OPEN },
    { ngx_string("fail_closed"), NGX_HTTP_AIGW_QUOTA_FAIL_CLOSED },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_aigw_commands[] = {

    { ngx_string("aigw_provider"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_aigw_provider,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_model"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_aigw_model,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_route"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_aigw_route,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* routing rules: a route's first candidate chosen by the request */

    { ngx_string("aigw_route_rule"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE3,
      ngx_http_aigw_route_rule,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_keys"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_aigw_auth_keys,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, auth),
      NULL },

    { ngx_string("aigw_tenant"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, tenant),
      NULL },

    { ngx_string("aigw_tenant_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_aigw_tenant_header,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, tenant_header),
      NULL },

    { ngx_string("aigw_tenant_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, tenant_user),
      NULL },

    { ngx_string("aigw_prices"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_aigw_prices,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* the Responses API's stored responses */

    { ngx_string("aigw_responses_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_aigw_responses_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_responses_fallback"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, responses_fallback),
      NULL },

    /* a client served in another wire format */

    { ngx_string("aigw_translate_max_tokens"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, translate_max_tokens),
      NULL },

    { ngx_string("aigw_translate_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, translate_buffer),
      &ngx_http_aigw_translate_buffer_post },

    { ngx_string("aigw_metrics_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_aigw_metrics_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_aigw_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_report"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_aigw_report,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_keepalive"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aigw_main_conf_t, keepalive),
      &ngx_http_aigw_keepalive_bounds },

    { ngx_string("aigw_keepalive_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aigw_main_conf_t, keepalive_timeout),
      NULL },

    { ngx_string("aigw_keepalive_requests"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aigw_main_conf_t, keepalive_requests),
      NULL },

    { ngx_string("aigw_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_aigw_redis_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_aigw_main_conf_t, redis),
      NULL },

    { ngx_string("aigw_pass"),
      NGX_HTTP_LOC_CONF|NGX_HTTP_LIF_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_aigw_pass,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, upstream.connect_timeout),
      NULL },

    { ngx_string("aigw_send_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, upstream.send_timeout),
      NULL },

    { ngx_string("aigw_read_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, upstream.read_timeout),
      NULL },

    { ngx_string("aigw_next_upstream_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, upstream.next_upstream_timeout),
      NULL },

    { ngx_string("aigw_buffer_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, upstream.buffer_size),
      NULL },

    /* resilience: timeouts, each from its own moment */

    { ngx_string("aigw_first_token_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, first_token_timeout),
      NULL },

    { ngx_string("aigw_stream_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, stream_idle_timeout),
      NULL },

    { ngx_string("aigw_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, timeout),
      NULL },

    { ngx_string("aigw_stream_keepalive"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, stream_keepalive),
      NULL },

    { ngx_string("aigw_stream_resume"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, stream_resume),
      NULL },

    /* hedge: the next candidate when the first token is late */

    { ngx_string("aigw_hedge"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, hedge),
      NULL },

    { ngx_string("aigw_retries"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_aigw_resilience_retries,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* resilience: circuit breakers */

    { ngx_string("aigw_breaker"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_aigw_breaker,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_breaker_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_aigw_breaker_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_quota_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_aigw_quota_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_quota"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, quota),
      NULL },

    { ngx_string("aigw_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_aigw_quota_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_usage"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_aigw_quota_report,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_quota_max_tokens"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, quota_max_tokens),
      NULL },

    { ngx_string("aigw_quota_store"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, quota_store),
      &ngx_http_aigw_quota_stores },

    { ngx_string("aigw_quota_redis_down"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, quota_redis_down),
      &ngx_http_aigw_quota_redis_down },

    /* cache */

    { ngx_string("aigw_cache_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_aigw_cache_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, cache),
      NULL },

    { ngx_string("aigw_cache_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, cache_ttl),
      NULL },

    { ngx_string("aigw_cache_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, cache_max_size),
      NULL },

    { ngx_string("aigw_cache_bypass"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_set_predicate_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, cache_bypass),
      NULL },

    { ngx_string("aigw_cache_exclude"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_str_array_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, cache_exclude),
      NULL },

    { ngx_string("aigw_cache_scope"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, cache_scope),
      &ngx_http_aigw_cache_scopes },

    { ngx_string("aigw_cache_namespace"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, cache_namespace),
      NULL },

    { ngx_string("aigw_cache_template"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE3,
      ngx_http_aigw_cache_template,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_cache_purge"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_aigw_cache_purge,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_cache_lock"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, cache_lock),
      NULL },

    { ngx_string("aigw_cache_lock_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, cache_lock_timeout),
      NULL },

    /* cache: the Redis second tier (cache_redis.c) */

    { ngx_string("aigw_cache_redis"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, cache_redis),
      NULL },

    /* cache: the semantic tier (cache_semantic.c) */

    { ngx_string("aigw_cache_semantic"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_aigw_cache_semantic,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_cache_semantic_threshold"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_aigw_cache_semantic_threshold,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_cache_semantic_turns"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, cache_semantic_turns),
      &ngx_http_aigw_semantic_turns_bounds },

    { ngx_string("aigw_cache_semantic_partition"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, cache_semantic_partition),
      &ngx_http_aigw_semantic_partition_bounds },

    { ngx_string("aigw_cache_semantic_model"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_aigw_cache_semantic_model,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_cache_semantic_precision"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, cache_semantic_precision),
      &ngx_http_aigw_semantic_precisions },

    { ngx_string("aigw_pii"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_aigw_pii,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_pii_pattern"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_aigw_pii_pattern,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* guard: the prompt guard and the output guard */

    { ngx_string("aigw_guard_deny"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_aigw_guard_pattern,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_guard_conf_t, deny),
      NULL },

    { ngx_string("aigw_guard_allow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_aigw_guard_pattern,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_guard_conf_t, allow),
      NULL },

    { ngx_string("aigw_guard_output"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_aigw_guard_pattern,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_guard_conf_t, output),
      NULL },

    { ngx_string("aigw_guard_params"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_aigw_guard_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_guard_conf_t, params),
      NULL },

    { ngx_string("aigw_guard_models"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_aigw_guard_list,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_guard_conf_t, models),
      NULL },

    { ngx_string("aigw_guard_max_prompt"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_aigw_guard_size,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_guard_conf_t, max_prompt),
      NULL },

    { ngx_string("aigw_guard_max_messages"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_aigw_guard_num,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_guard_conf_t, max_messages),
      NULL },

    { ngx_string("aigw_guard_max_tokens"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_aigw_guard_num,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_guard_conf_t, max_tokens),
      NULL },

    { ngx_string("aigw_moderation"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_aigw_guard_moderation,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_moderation_categories"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_aigw_guard_categories,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigw_moderation_fail"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_aigw_guard_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_guard_conf_t, moderation_fail),
      &ngx_http_aigw_moderation_fail },

    { ngx_string("aigw_answer_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, answer_buffer),
      NULL },

    { ngx_string("aigw_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, upstream.ssl_verify),
      NULL },

    { ngx_string("aigw_ssl_verify_depth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, ssl_verify_depth),
      NULL },

    { ngx_string("aigw_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aigw_loc_conf_t, ssl_trusted_certificate),
      NULL },

    /* audit log */

    { ngx_string("aigw_audit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_aigw_audit,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_aigw_module_ctx = {
    ngx_http_aigw_add_variables,           /* preconfiguration */
    ngx_http_aigw_postconfiguration,       /* postconfiguration */

    ngx_http_aigw_create_main_conf,        /* create main configuration */
    ngx_http_aigw_init_main_conf,          /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_aigw_create_loc_conf,         /* create location configuration */
    ngx_http_aigw_merge_loc_conf           /* merge location configuration */
};


ngx_module_t  ngx_http_aigw_module = {
    NGX_MODULE_V1,
    &ngx_http_aigw_module_ctx,             /* module context */
    ngx_http_aigw_commands,                /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_aigw_audit_init_module,       /* init module */
    ngx_http_aigw_audit_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_aigw_audit_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_aigw_vars[] = {

    { ngx_string("aigw_provider"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_PROVIDER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_model"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_MODEL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_upstream_model"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_UPSTREAM_MODEL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_attempts"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_ATTEMPTS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_route"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_ROUTE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_stream"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_STREAM, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_key_id"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_KEY_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_tenant"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_TENANT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_user"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_USER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_team"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_TEAM, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_prompt_tokens"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_PROMPT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_completion_tokens"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_COMPLETION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_total_tokens"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_TOTAL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_cached_tokens"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_CACHED, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_reasoning_tokens"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_REASONING, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_cache_write_tokens"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_CACHE_WRITE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_cost"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_COST, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_ttft"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_TTFT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_latency"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_LATENCY, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_usage_source"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_USAGE_SOURCE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_quota"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_QUOTA, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_endpoint"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_ENDPOINT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_request_id"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_REQUEST_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_provider_request_id"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_PROVIDER_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("aigw_pii"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_PII, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_cache_status"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_CACHE, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("aigw_outcome"), NULL, ngx_http_aigw_resilience_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("aigw_guard"), NULL, ngx_http_aigw_variable,
      NGX_HTTP_AIGW_VAR_GUARD, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigw_meta_"), NULL, ngx_http_aigw_meta_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_aigw_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_aigw_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char                 *p;
    ngx_str_t               s;
    ngx_http_aigw_ctx_t    *ctx;
    ngx_http_aigw_model_t  *m;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    m = ctx->attempts ? ctx->candidates[ctx->last] : NULL;

    ngx_str_null(&s);

    switch (data) {

    case NGX_HTTP_AIGW_VAR_PROVIDER:
        if (m) {
            s = m->provider->name;
        }
        break;

    case NGX_HTTP_AIGW_VAR_MODEL:
        s = m ? m->name : ctx->model;
        break;

    case NGX_HTTP_AIGW_VAR_UPSTREAM_MODEL:
        if (m) {
            s = m->upstream_model;
        }
        break;

    case NGX_HTTP_AIGW_VAR_ROUTE:
        s = ctx->route_name;
        break;

    case NGX_HTTP_AIGW_VAR_STREAM:
        if (ctx->stream) {
            ngx_str_set(&s, "1");
        } else {
            ngx_str_set(&s, "0");
        }
        break;

    case NGX_HTTP_AIGW_VAR_KEY_ID:
        if (ctx->key) {
            s = ctx->key->id;
        }
        break;

    case NGX_HTTP_AIGW_VAR_TENANT:
        s = ctx->tenant;
        break;

    case NGX_HTTP_AIGW_VAR_USER:
        if (ctx->key) {
            s = ctx->key->user;
        }
        break;

    case NGX_HTTP_AIGW_VAR_TEAM:
        if (ctx->key) {
            s = ctx->key->team;
        }
        break;

    case NGX_HTTP_AIGW_VAR_USAGE_SOURCE:
        if (ngx_http_aigw_answer_done(r)) {
            ngx_http_aigw_meter_finish(r, ctx);
        }

        if (ctx->usage_source == NGX_HTTP_AIGW_USAGE_PROVIDER) {
            ngx_str_set(&s, "provider");

        } else if (ctx->usage_source == NGX_HTTP_AIGW_USAGE_ESTIMATED) {
            ngx_str_set(&s, "estimated");
        }

        break;

    case NGX_HTTP_AIGW_VAR_QUOTA:
        if (ngx_http_aigw_quota_variable(r, ctx, &s) == NGX_ERROR) {
            return NGX_ERROR;
        }

        break;

    case NGX_HTTP_AIGW_VAR_ENDPOINT:
        s = *ngx_http_aigw_endpoint_name(ctx->endpoint);
        break;

    case NGX_HTTP_AIGW_VAR_REQUEST_ID:
        s = ctx->request_id;
        break;

    case NGX_HTTP_AIGW_VAR_PROVIDER_ID:
        ngx_http_aigw_trace_provider_id(r, &s);
        break;

    case NGX_HTTP_AIGW_VAR_PII:
        if (ngx_http_aigw_pii_variable(r, ctx, &s) == NGX_ERROR) {
            return NGX_ERROR;
        }

        break;

    case NGX_HTTP_AIGW_VAR_CACHE:
        if (ngx_http_aigw_cache_variable(r, ctx, &s) == NGX_ERROR) {
            return NGX_ERROR;
        }

        break;

    case NGX_HTTP_AIGW_VAR_GUARD:
        (void) ngx_http_aigw_guard_variable(r, ctx, &s);
        break;

    default: /* numbers */
        p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 2);
        if (p == NULL) {
            return NGX_ERROR;
        }

        s.data = p;
        s.len = ngx_http_aigw_number(r, ctx, data, p) - p;
        break;
    }

    if (s.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s.len;
    v->data = s.data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * The numeric variables.  Tokens and cost are settled once upstream is
 * done with the answer; read before (add_header ... always), they are
 * what is known so far, and settle nothing.
 */

static u_char *
ngx_http_aigw_number(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    uintptr_t data, u_char *p)
{
    uint64_t    cost;
    ngx_uint_t  overflow;
    ngx_msec_t  ms;

    if (data >= NGX_HTTP_AIGW_VAR_PROMPT && ngx_http_aigw_answer_done(r)) {
        ngx_http_aigw_meter_finish(r, ctx);
    }

    switch (data) {

    case NGX_HTTP_AIGW_VAR_PROMPT:
        return ngx_sprintf(p, "%ui", ctx->prompt_tokens);

    case NGX_HTTP_AIGW_VAR_COMPLETION:
        return ngx_sprintf(p, "%ui", ctx->completion_tokens);

    case NGX_HTTP_AIGW_VAR_TOTAL:
        return ngx_sprintf(p, "%ui",
                           ctx->prompt_tokens + ctx->completion_tokens);

    case NGX_HTTP_AIGW_VAR_CACHED:
        return ngx_sprintf(p, "%ui", ctx->cached_tokens);

    case NGX_HTTP_AIGW_VAR_REASONING:
        return ngx_sprintf(p, "%ui", ctx->reasoning_tokens);

    case NGX_HTTP_AIGW_VAR_CACHE_WRITE:
        return ngx_sprintf(p, "%ui", ctx->cache_write_tokens);

    case NGX_HTTP_AIGW_VAR_COST:
        overflow = 0;
        cost = ctx->metered ? ctx->cost
                            : ngx_http_aigw_meter_cost(ctx, &overflow);

        return ngx_sprintf(p, "%uL.%06uL", cost / 1000000, cost % 1000000);

    case NGX_HTTP_AIGW_VAR_TTFT:
    case NGX_HTTP_AIGW_VAR_LATENCY:
        ms = (data == NGX_HTTP_AIGW_VAR_LATENCY)
             ? ngx_http_aigw_msec_since(r)
             : (ctx->ttft == NGX_CONF_UNSET_MSEC ? 0 : ctx->ttft);

        return ngx_sprintf(p, "%M.%03M", ms / 1000, ms % 1000);

    default: /* NGX_HTTP_AIGW_VAR_ATTEMPTS */
        return ngx_sprintf(p, "%ui", ctx->attempts);
    }
}


/* upstream has finalized (it clears u->cleanup then), or never began */

static ngx_uint_t
ngx_http_aigw_answer_done(ngx_http_request_t *r)
{
    return r->upstream == NULL || r->upstream->cleanup == NULL;
}


/* $aigw_meta_<name>: a metadata tag of the caller's key */

static ngx_int_t
ngx_http_aigw_meta_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t *name = (ngx_str_t *) data;

    size_t                     len;
    u_char                    *tag;
    ngx_uint_t                 i;
    ngx_http_aigw_ctx_t       *ctx;
    ngx_http_aigw_key_meta_t  *meta;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    v->not_found = 1;

    if (ctx == NULL || ctx->key == NULL) {
        return NGX_OK;
    }

    tag = name->data + sizeof("aigw_meta_") - 1;
    len = name->len - (sizeof("aigw_meta_") - 1);

    meta = ctx->key->meta;

    for (i = 0; i < ctx->key->nmeta; i++) {
        if (meta[i].name.len == len
            && ngx_strncmp(meta[i].name.data, tag, len) == 0)
        {
            v->len = meta[i].value.len;
            v->data = meta[i].value.data;
            v->valid = 1;
            v->no_cacheable = 1;
            v->not_found = 0;
            break;
        }
    }

    return NGX_OK;
}


/* the request's state, with the API it calls known from its URI */

ngx_http_aigw_ctx_t *
ngx_http_aigw_ctx_create(ngx_http_request_t *r)
{
    ngx_http_aigw_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_aigw_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_aigw_module);

    ctx->ttft = NGX_CONF_UNSET_MSEC;

    ngx_http_aigw_endpoint(r, ctx);

    if (ngx_http_aigw_trace_init(r, ctx) != NGX_OK) {
        return NULL;
    }

    return ctx;
}


/* the endpoint's name in $aigw_endpoint, metrics and reports */

ngx_str_t *
ngx_http_aigw_endpoint_name(ngx_uint_t endpoint)
{
    static ngx_str_t  names[] = {
        ngx_null_string,                   /* NGX_HTTP_AIGW_EP_UNKNOWN */
        ngx_string("chat.completions"),
        ngx_string("completions"),
        ngx_string("embeddings"),
        ngx_string("messages"),
        ngx_string("models"),
        ngx_string("models"),              /* a model's own page */
        ngx_string("responses"),
        ngx_string("messages.count_tokens"),
        ngx_string("responses.stored")     /* one by its id */
    };

    return &names[endpoint < sizeof(names) / sizeof(ngx_str_t)
                  ? endpoint : NGX_HTTP_AIGW_EP_UNKNOWN];
}


/* the endpoint by the end of the URI, any prefix before it */

static void
ngx_http_aigw_endpoint(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx)
{
    u_char                    *p, *last;
    ngx_http_aigw_format_t   **f;
    ngx_http_aigw_endpoint_t  *ep;

    last = r->uri.data + r->uri.len;

    while (last > r->uri.data + 1 && last[-1] == '/') {
        last--;
    }

    /* errors of an unknown endpoint are OpenAI's */

    ctx->format = ngx_http_aigw_formats[0];

    for (f = ngx_http_aigw_formats; *f; f++) {
        for (ep = (*f)->endpoints; ep->suffix.len; ep++) {
            if ((size_t) (last - r->uri.data) >= ep->suffix.len
                && ngx_strncmp(last - ep->suffix.len, ep->suffix.data,
                               ep->suffix.len)
                   == 0)
            {
                ctx->ep = ep;
                ctx->endpoint = ep->endpoint;
                ctx->format = *f;
                return;
            }
        }
    }

    /* a stored response of the Responses API, by its id */

    if (ngx_http_aigw_responses_endpoint(r, ctx, last) != NGX_DECLINED) {
        return;
    }

    /* ".../models/{id}", a model's own page */

    p = ngx_strlcasestrn(r->uri.data, last, (u_char *) "/models/",
                         sizeof("/models/") - 2);

    if (p && p + sizeof("/models/") - 1 < last) {
        ctx->endpoint = NGX_HTTP_AIGW_EP_MODEL;
    }
}


/* the access steps, resumed where one waited */

static ngx_int_t
ngx_http_aigw_access_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_http_handler_pt       *steps;
    ngx_http_aigw_ctx_t       *ctx;
    ngx_http_aigw_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    if (!(alcf->pass || alcf->usage) || r != r->main) {
        return NGX_DECLINED;
    }

    steps = alcf->pass ? ngx_http_aigw_steps : ngx_http_aigw_usage_steps;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx == NULL) {
        ctx = ngx_http_aigw_ctx_create(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    for ( /* void */ ; steps[ctx->step]; ctx->step++) {

        rc = steps[ctx->step](r);

        if (rc != NGX_OK && rc != NGX_DECLINED) {
            return rc;
        }
    }

    /* "satisfy any" takes a key that passed for access granted */

    return ctx->key ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_http_aigw_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;
    ngx_http_aigw_main_conf_t  *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigw_module);

    if (amcf->providers.nelts == 0) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_aigw_access_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_aigw_metrics_log_handler;

    /* after aigw's filter: the answer's bytes as the client gets them */

    if (ngx_http_aigw_audit_filter_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_aigw_filter_init(cf);
}


/* aigw_tenant_header NAME; a header name, as nginx would parse it */

static char *
ngx_http_aigw_tenant_header(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char      *p;
    ngx_str_t   *value;
    char        *rv;

    rv = ngx_conf_set_str_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    value = cf->args->elts;

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid header name \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_aigw_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_aigw_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&amcf->providers, cf->pool, 4,
                       sizeof(ngx_http_aigw_provider_t *))
        != NGX_OK
        || ngx_array_init(&amcf->models, cf->pool, 8,
                          sizeof(ngx_http_aigw_model_t *))
           != NGX_OK
        || ngx_array_init(&amcf->routes, cf->pool, 4,
                          sizeof(ngx_http_aigw_route_t *))
           != NGX_OK)
    {
        return NULL;
    }

    amcf->keepalive = NGX_CONF_UNSET_UINT;
    amcf->keepalive_timeout = NGX_CONF_UNSET_MSEC;
    amcf->keepalive_requests = NGX_CONF_UNSET_UINT;

    return amcf;
}


static char *
ngx_http_aigw_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_aigw_main_conf_t *amcf = conf;

    ngx_conf_init_uint_value(amcf->keepalive, 32);
    ngx_conf_init_msec_value(amcf->keepalive_timeout, 60000);
    ngx_conf_init_uint_value(amcf->keepalive_requests, 1000);

    if (ngx_http_aigw_keepalive_init(cf, amcf) != NGX_OK
        || ngx_http_aigw_request_init(cf, amcf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigw_prices_apply(cf, amcf) != NGX_OK
        || ngx_http_aigw_quota_init(cf, amcf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* audit: shipping to Redis, once aigw_redis is known */

    if (amcf->audit
        && ngx_http_aigw_audit_ship_conf(cf, amcf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* metrics are on by default, in a zone of their own */

    if (amcf->metrics == NULL && amcf->providers.nelts) {
        return ngx_http_aigw_metrics_add_zone(cf, amcf, NULL,
                                     &(ngx_str_t) ngx_string("aigw_metrics"),
                                     8 * 1024 * 1024);
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_aigw_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_aigw_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     alcf->route = NULL;
     *     alcf->ssl_trusted_certificate = { 0, NULL };
     *     alcf->upstream.* = 0 / NULL, unless set below
     */

    alcf->pass = NGX_CONF_UNSET;

    alcf->upstream.connect_timeout = NGX_CONF_UNSET_MSEC;
    alcf->upstream.send_timeout = NGX_CONF_UNSET_MSEC;
    alcf->upstream.read_timeout = NGX_CONF_UNSET_MSEC;
    alcf->upstream.next_upstream_timeout = NGX_CONF_UNSET_MSEC;
    alcf->upstream.buffer_size = NGX_CONF_UNSET_SIZE;
    alcf->upstream.ssl_verify = NGX_CONF_UNSET;
    alcf->upstream.hide_headers = NGX_CONF_UNSET_PTR;
    alcf->upstream.pass_headers = NGX_CONF_UNSET_PTR;
    alcf->ssl_verify_depth = NGX_CONF_UNSET_UINT;
    alcf->auth = NGX_CONF_UNSET;
    alcf->tenant = NGX_CONF_UNSET_PTR;
    alcf->tenant_user = NGX_CONF_UNSET;
    alcf->responses_fallback = NGX_CONF_UNSET;
    alcf->translate_max_tokens = NGX_CONF_UNSET_UINT;
    alcf->translate_buffer = NGX_CONF_UNSET_SIZE;
    alcf->answer_buffer = NGX_CONF_UNSET_SIZE;
    alcf->quota = NGX_CONF_UNSET;
    alcf->limits = NGX_CONF_UNSET_PTR;
    alcf->quota_max_tokens = NGX_CONF_UNSET_UINT;
    alcf->quota_store = NGX_CONF_UNSET_UINT;
    alcf->quota_redis_down = NGX_CONF_UNSET_UINT;
    alcf->first_token_timeout = NGX_CONF_UNSET_MSEC;
    alcf->stream_idle_timeout = NGX_CONF_UNSET_MSEC;
    alcf->timeout = NGX_CONF_UNSET_MSEC;
    alcf->retries = NGX_CONF_UNSET_UINT;
    alcf->stream_keepalive = NGX_CONF_UNSET_MSEC;
    alcf->stream_resume = NGX_CONF_UNSET;
    alcf->hedge = NGX_CONF_UNSET_MSEC;

    /* cache */
    alcf->cache = NGX_CONF_UNSET;
    alcf->cache_ttl = NGX_CONF_UNSET;
    alcf->cache_max_size = NGX_CONF_UNSET_SIZE;
    alcf->cache_bypass = NGX_CONF_UNSET_PTR;
    alcf->cache_exclude = NGX_CONF_UNSET_PTR;
    alcf->cache_scope = NGX_CONF_UNSET_UINT;
    alcf->cache_namespace = NGX_CONF_UNSET_PTR;
    alcf->cache_lock = NGX_CONF_UNSET;
    alcf->cache_lock_timeout = NGX_CONF_UNSET_MSEC;
    alcf->cache_templates = NGX_CONF_UNSET_PTR;
    alcf->cache_redis = NGX_CONF_UNSET;
    /* semantic cache */
    alcf->cache_semantic_threshold = NGX_CONF_UNSET_UINT;
    alcf->cache_semantic_turns = NGX_CONF_UNSET;
    alcf->cache_semantic_partition = NGX_CONF_UNSET;
    alcf->cache_semantic_precision = NGX_CONF_UNSET_UINT;

    return alcf;
}


/* provider headers that stay between the provider and the gateway */
static ngx_str_t  ngx_http_aigw_hide_headers[] = {
    ngx_string("Date"),
    ngx_string("Server"),
    ngx_string("X-Pad"),
    ngx_string("X-Accel-Expires"),
    ngx_string("X-Accel-Redirect"),
    ngx_string("X-Accel-Limit-Rate"),
    ngx_string("X-Accel-Buffering"),
    ngx_string("X-Accel-Charset"),
    ngx_string("Set-Cookie"),
    ngx_string("Alt-Svc"),
    ngx_string("CF-Ray"),
    ngx_string("CF-Cache-Status"),
    ngx_string("OpenAI-Organization"),
    ngx_string("OpenAI-Project"),
    ngx_string("Anthropic-Organization-Id"),
    ngx_null_string
};


static char *
ngx_http_aigw_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_aigw_loc_conf_t *prev = parent;
    ngx_http_aigw_loc_conf_t *conf = child;

    ngx_hash_init_t             hash;
    ngx_http_aigw_main_conf_t  *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigw_module);

    ngx_conf_merge_value(conf->pass, prev->pass, 0);

    /* callers are authenticated wherever there are keys to check */
    ngx_conf_merge_value(conf->auth, prev->auth, amcf->keys != NULL);
    ngx_conf_merge_ptr_value(conf->tenant, prev->tenant, NULL);
    ngx_conf_merge_str_value(conf->tenant_header, prev->tenant_header, "");
    ngx_conf_merge_value(conf->tenant_user, prev->tenant_user, 0);
    ngx_conf_merge_value(conf->responses_fallback, prev->responses_fallback,
                         0);
    ngx_conf_merge_uint_value(conf->translate_max_tokens,
                              prev->translate_max_tokens, 4096);
    ngx_conf_merge_size_value(conf->translate_buffer,
                              prev->translate_buffer,
                              NGX_HTTP_AIGW_SSE_METER);
    ngx_conf_merge_size_value(conf->answer_buffer, prev->answer_buffer,
                              1024 * 1024);

    if (conf->auth && amcf->keys == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"aigw_auth\" is on, but no \"aigw_keys\" "
                           "file is loaded");
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_msec_value(conf->upstream.connect_timeout,
                              prev->upstream.connect_timeout, 10000);
    ngx_conf_merge_msec_value(conf->upstream.send_timeout,
                              prev->upstream.send_timeout, 60000);
    ngx_conf_merge_msec_value(conf->upstream.read_timeout,
                              prev->upstream.read_timeout, 300000);
    ngx_conf_merge_msec_value(conf->upstream.next_upstream_timeout,
                              prev->upstream.next_upstream_timeout, 0);
    ngx_conf_merge_size_value(conf->upstream.buffer_size,
                              prev->upstream.buffer_size, 16384);
    ngx_conf_merge_value(conf->upstream.ssl_verify,
                         prev->upstream.ssl_verify, 1);
    ngx_conf_merge_uint_value(conf->ssl_verify_depth,
                              prev->ssl_verify_depth, 5);
    ngx_conf_merge_str_value(conf->ssl_trusted_certificate,
                             prev->ssl_trusted_certificate,
                             "/etc/ssl/certs/ca-certificates.crt");

    /* limits hold wherever there are some; a level's own replace */
    ngx_conf_merge_value(conf->quota, prev->quota, 1);
    ngx_conf_merge_ptr_value(conf->limits, prev->limits, NULL);
    ngx_conf_merge_uint_value(conf->quota_max_tokens,
                              prev->quota_max_tokens, 1024);
    ngx_conf_merge_uint_value(conf->quota_store, prev->quota_store,
                              NGX_HTTP_AIGW_QUOTA_ZONE);
    ngx_conf_merge_uint_value(conf->quota_redis_down, prev->quota_redis_down,
                              NGX_HTTP_AIGW_QUOTA_FAIL_OPEN);

    if (conf->quota_store == NGX_HTTP_AIGW_QUOTA_REDIS
        && ngx_http_aigw_quota_redis_init(cf, amcf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigw_pii_merge(cf, prev, conf) != NGX_CONF_OK
        || ngx_http_aigw_cache_merge(cf, prev, conf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigw_resilience_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigw_guard_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (!conf->pass) {
        return NGX_CONF_OK;
    }

    /*
     * fallback happens on connect errors, timeouts, 5xx and 429; POST
     * requests are retried as the answer has not reached the client yet
     */

    conf->upstream.next_upstream = NGX_HTTP_UPSTREAM_FT_ERROR
                                   |NGX_HTTP_UPSTREAM_FT_TIMEOUT
                                   |NGX_HTTP_UPSTREAM_FT_INVALID_HEADER
                                   |NGX_HTTP_UPSTREAM_FT_HTTP_500
                                   |NGX_HTTP_UPSTREAM_FT_HTTP_502
                                   |NGX_HTTP_UPSTREAM_FT_HTTP_503
                                   |NGX_HTTP_UPSTREAM_FT_HTTP_504
                                   |NGX_HTTP_UPSTREAM_FT_HTTP_429
                                   |NGX_HTTP_UPSTREAM_FT_NON_IDEMPOTENT;

    conf->upstream.buffering = 0;
    conf->upstream.request_buffering = 1;
    conf->upstream.ignore_client_abort = 0;
    conf->upstream.send_lowat = 0;
    conf->upstream.intercept_errors = 0;
    conf->upstream.ssl_server_name = 1;
    conf->upstream.ssl_session_reuse = 0;

    hash.max_size = 512;
    hash.bucket_size = ngx_align(64, ngx_cacheline_size);
    hash.name = "aigw hidden headers hash";

    if (ngx_http_upstream_hide_headers_hash(cf, &conf->upstream,
                                            &prev->upstream,
                                            ngx_http_aigw_hide_headers,
                                            &hash)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigw_provider_ssl(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigw_resilience_init(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* "name:size" of a shared zone, at least eight pages */

ngx_int_t
ngx_http_aigw_zone_size(ngx_conf_t *cf, ngx_str_t *value, ngx_str_t *name,
    size_t *size)
{
    u_char     *p;
    ssize_t     n;
    ngx_str_t   s;

    p = (u_char *) ngx_strlchr(value->data, value->data + value->len, ':');

    if (p == NULL || p == value->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\", must be \"name:size\"",
                           value);
        return NGX_ERROR;
    }

    name->data = value->data;
    name->len = p - value->data;

    s.data = p + 1;
    s.len = value->data + value->len - s.data;

    n = ngx_parse_size(&s);

    if (n == NGX_ERROR || n < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\", at least %uz",
                           value, (size_t) (8 * ngx_pagesize));
        return NGX_ERROR;
    }

    *size = n;

    return NGX_OK;
}


/*
 * The shared part of a zone at its first start: size bytes from its
 * slab pool, and the pool's log context naming the zone; a full zone
 * is no alert, as entries make room.  NGX_DONE if it exists already
 * (the zone is another process's), then *sh is it.
 */

ngx_int_t
ngx_http_aigw_zone_shared(ngx_shm_zone_t *shm_zone, size_t size,
    const char *what, void **sh, ngx_slab_pool_t **shpool)
{
    size_t            len;
    ngx_slab_pool_t  *pool;

    pool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    *shpool = pool;

    if (shm_zone->shm.exists) {
        *sh = pool->data;
        return NGX_DONE;
    }

    *sh = ngx_slab_calloc(pool, size);
    if (*sh == NULL) {
        return NGX_ERROR;
    }

    pool->data = *sh;

    len = sizeof(" in aigw  zone \"\"") + ngx_strlen(what)
          + shm_zone->shm.name.len;

    pool->log_ctx = ngx_slab_alloc(pool, len);
    if (pool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(pool->log_ctx, " in aigw %s zone \"%V\"%Z", what,
                &shm_zone->shm.name);

    pool->log_nomem = 0;

    return NGX_OK;
}


/*
 * A POST of body b to the internal location uri, in a subrequest whose
 * answer is kept in memory and given to ps->handler, as auth_request
 * does: the moderation and the semantic cache's embeddings.  NGX_OK, or
 * NGX_DECLINED when no subrequest could be made, or NGX_ERROR.
 */

ngx_int_t
ngx_http_aigw_subrequest_post(ngx_http_request_t *r, ngx_str_t *uri,
    ngx_buf_t *b, ngx_http_post_subrequest_t *ps)
{
    ngx_chain_t              *cl;
    ngx_http_request_t       *sr;
    ngx_http_request_body_t  *rb;

    if (ngx_http_subrequest(r, uri, NULL, &sr, ps,
                            NGX_HTTP_SUBREQUEST_WAITED
                            |NGX_HTTP_SUBREQUEST_IN_MEMORY)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    /* a POST of its own body, not the client's */

    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    if (rb == NULL) {
        return NGX_ERROR;
    }

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;
    rb->bufs = cl;

    sr->request_body = rb;
    sr->method = NGX_HTTP_POST;
    ngx_str_set(&sr->method_name, "POST");
    sr->headers_in.content_length_n = b->last - b->pos;
    sr->headers_in.chunked = 0;

    return NGX_OK;
}
