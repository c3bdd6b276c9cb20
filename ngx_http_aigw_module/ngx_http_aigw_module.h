
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_MODULE_H_INCLUDED_
#define _NGX_HTTP_AIGW_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_sse.h"
#include "ngx_http_aigw_keys.h"
#include "ngx_http_aigw_scan.h"
#include "ngx_http_aigw_usage.h"
#include "ngx_http_aigw_redis.h"

/* client endpoints, recognized by the end of the URI */
#define NGX_HTTP_AIGW_EP_UNKNOWN       0
#define NGX_HTTP_AIGW_EP_CHAT          1
#define NGX_HTTP_AIGW_EP_COMPLETIONS   2
#define NGX_HTTP_AIGW_EP_EMBEDDINGS    3
#define NGX_HTTP_AIGW_EP_MESSAGES      4
#define NGX_HTTP_AIGW_EP_MODELS        5
#define NGX_HTTP_AIGW_EP_MODEL         6
#define NGX_HTTP_AIGW_EP_RESPONSES     7
#define NGX_HTTP_AIGW_EP_COUNT_TOKENS  8
#define NGX_HTTP_AIGW_EP_RESPONSE      9   /* a stored one, by its id */

/* what an endpoint uses: counting tokens, reading a stored response, none */
#define ngx_http_aigw_endpoint_spends(ep)                                     \
    ((ep) != NGX_HTTP_AIGW_EP_COUNT_TOKENS && (ep) != NGX_HTTP_AIGW_EP_RESPONSE)

/* the largest event kept whole: the data metering reads, and an event
 * waiting for its end where one must be kept from the client */
#define NGX_HTTP_AIGW_SSE_METER        16384
#define NGX_HTTP_AIGW_SSE_BUFFER       65536

/* what a format's event reader says of an event */
#define NGX_HTTP_AIGW_EVENT_HIDE       1   /* the client must not get it */
#define NGX_HTTP_AIGW_EVENT_LAST       2   /* the stream's final event */

/* the failures aigw_retries retries on */
#define NGX_HTTP_AIGW_RETRY_CONNECT    0x01
#define NGX_HTTP_AIGW_RETRY_TIMEOUT    0x02
#define NGX_HTTP_AIGW_RETRY_5XX        0x04
#define NGX_HTTP_AIGW_RETRY_429        0x08
#define NGX_HTTP_AIGW_RETRY_INVALID    0x10

/* how a request ended: $aigw_outcome */
#define NGX_HTTP_AIGW_OUTCOME_COMPLETE     1
#define NGX_HTTP_AIGW_OUTCOME_CUT          2
#define NGX_HTTP_AIGW_OUTCOME_STALLED      3
#define NGX_HTTP_AIGW_OUTCOME_TIMEOUT      4
#define NGX_HTTP_AIGW_OUTCOME_CLIENT_GONE  5
#define NGX_HTTP_AIGW_OUTCOME_ERROR        6
#define NGX_HTTP_AIGW_OUTCOME_RESUMED      7
#define NGX_HTTP_AIGW_OUTCOME_HEDGED       8

/* where token counts come from */
#define NGX_HTTP_AIGW_USAGE_NONE       0
#define NGX_HTTP_AIGW_USAGE_PROVIDER   1
#define NGX_HTTP_AIGW_USAGE_ESTIMATED  2


typedef struct ngx_http_aigw_ctx_s  ngx_http_aigw_ctx_t;


typedef struct {
    ngx_str_t                      suffix;     /* of a client's URI */
    ngx_uint_t                     endpoint;   /* NGX_HTTP_AIGW_EP_* */
} ngx_http_aigw_endpoint_t;


/*
 * A wire format: its endpoints, and everything the gateway does that
 * differs between formats, one callback each.  A provider speaks one,
 * a client's endpoint belongs to one.
 */

typedef struct {
    ngx_str_t                      name;
    ngx_http_aigw_endpoint_t      *endpoints;  /* ends with a null suffix */

    /* the provider's credential header, before the key */
    ngx_str_t                      credential;

    /* header lines of this format to a provider, after the credential */
    ngx_int_t                    (*headers)(ngx_http_request_t *r,
                                            ngx_str_t *out);

    /* the client's body: the edits this format makes to it */
    ngx_int_t                    (*edit)(ngx_http_request_t *r,
                                         ngx_http_aigw_ctx_t *ctx);

    /* one event of a stream: usage read; NGX_HTTP_AIGW_EVENT_* flags */
    ngx_uint_t                   (*event)(ngx_http_request_t *r,
                                          ngx_http_aigw_ctx_t *ctx,
                                          ngx_http_aigw_sse_event_t *ev);

    /*
     * a stored answer replayed in the other mode (cache.c): a stream
     * made from a JSON answer when ctx->stream, else a JSON answer from
     * a stream; NGX_DECLINED when it cannot be (tool calls, choices)
     */
    ngx_int_t                    (*convert)(ngx_http_request_t *r,
                                            ngx_http_aigw_ctx_t *ctx,
                                            ngx_str_t *in, ngx_str_t *out);

    /* an error body: *out has room for error_len + escaped message */
    u_char                      *(*error)(u_char *p, ngx_uint_t status,
                                          const char *code, ngx_str_t *msg);
    size_t                         error_len;

    /* the error body framed as the event that ends a stream failing */
    ngx_str_t                      error_event;   /* before the body */

    /* the guard: the next text of an event from *pos on, JSON-escaped */
    ngx_int_t                    (*text)(ngx_http_aigw_ctx_t *ctx,
                                         ngx_http_aigw_sse_event_t *ev,
                                         u_char **pos,
                                         ngx_http_aigw_span_t *text);

    /*
     * resilience: 1 when an event of a provider's stream carries content
     * (text, a tool call) or ends the stream; the events before it are
     * held while the first token is waited for
     */
    ngx_uint_t                   (*content)(ngx_http_aigw_sse_event_t *ev);
} ngx_http_aigw_format_t;


/* client bytes [start, end) replaced by text in what a provider gets */
typedef struct {
    u_char                        *start;
    u_char                        *end;
    ngx_str_t                      text;
} ngx_http_aigw_splice_t;


typedef struct {
    ngx_str_t                      name;
    ngx_str_t                      url;
    ngx_http_aigw_format_t        *format;

    ngx_addr_t                    *addrs;
    ngx_uint_t                     naddrs;
    ngx_str_t                      host;       /* "Host:" value */
    ngx_str_t                      sni;        /* host name alone */
    ngx_str_t                      base_path;  /* "/v1", no trailing "/" */
    unsigned                       ssl:1;

    /* credential header lines, ready to copy: "Authorization: ..." CRLF */
    ngx_str_t                      auth_headers;

    u_char                        *file;       /* where it was defined */
    ngx_uint_t                     line;

    /* resolver re-resolution: this worker's addresses, resolve.c's */
    in_port_t                      port;
    ngx_addr_t                    *resolved;   /* ngx_alloc()ed */
    ngx_uint_t                     nresolved;
    ngx_uint_t                     next;       /* round robin */
    time_t                         valid;      /* resolve again from then */
    unsigned                       resolvable:1;  /* a name */
    unsigned                       resolving:1;
    unsigned                       resolve_failed:1;  /* logged */
} ngx_http_aigw_provider_t;


typedef struct {
    ngx_str_t                      name;       /* public model name */
    ngx_http_aigw_provider_t      *provider;
    ngx_str_t                      upstream_model;

    /* prices in micro-dollars per million tokens */
    ngx_uint_t                     input_price;
    ngx_uint_t                     output_price;
    ngx_uint_t                     cached_price;
    ngx_uint_t                     cache_write_price;

    /* resilience: takes an assistant prefill (aigw_stream_resume) */
    unsigned                       prefill:1;
} ngx_http_aigw_model_t;


/* how a route orders its candidates */
#define NGX_HTTP_AIGW_BALANCE_ORDER    0
#define NGX_HTTP_AIGW_BALANCE_WEIGHT   1
#define NGX_HTTP_AIGW_BALANCE_LATENCY  2


typedef struct {
    ngx_str_t                      name;
    ngx_http_aigw_model_t        **models;
    ngx_uint_t                     nmodels;

    /* resilience: load balancing */
    ngx_uint_t                     balance;    /* NGX_HTTP_AIGW_BALANCE_* */
    ngx_uint_t                    *weights;
    ngx_uint_t                     total_weight;
    ngx_uint_t                     context;    /* on=context_length_... */

    /* routing rules: route_rule.c's, NULL without aigw_route_rule */
    ngx_array_t                   *rules;
} ngx_http_aigw_route_t;


typedef struct {
    ngx_array_t                    providers;  /* ngx_http_aigw_provider_t * */
    ngx_array_t                    models;     /* ngx_http_aigw_model_t * */
    ngx_array_t                    routes;     /* ngx_http_aigw_route_t * */

    ngx_http_aigw_keys_t          *keys;
    EVP_MD                        *sha256;
    EVP_MD_CTX                    *sha256_ctx;

    ngx_str_t                      prices;     /* a price file */

    ngx_shm_zone_t                *metrics_zone;
    ngx_shm_zone_t                *quota_zone;
    ngx_shm_zone_t                *responses_zone;
    ngx_uint_t                     quota_used;  /* a limit is set */
    void                          *quota_redis; /* quota_redis.c's */
    void                          *metrics;

    ngx_hash_t                     drop_headers; /* kept from providers */
    /* request.c: a bit per length of those names, by first letter */
    uint32_t                       drop_lens[32];

    ngx_uint_t                     keepalive;
    ngx_msec_t                     keepalive_timeout;
    ngx_uint_t                     keepalive_requests;
    ngx_queue_t                    ka_cache;
    ngx_queue_t                    ka_free;

    ngx_http_aigw_redis_t         *redis;      /* aigw_redis */

    /* trace.c: the worker's last request id, and the second it is of */
    u_char                         request_id[32];
    time_t                         request_id_time;
    void                          *pii;        /* pii.c's detectors */

    /* cache (cache.c) */
    ngx_shm_zone_t                *cache_zone;
    void                          *cache_redis; /* cache_redis.c's */
    /* semantic cache: the index's Redis copy, cache_semantic_redis.c's */
    void                          *cache_semantic_redis;
    /* audit log */
    void                          *audit;      /* aigw_audit, audit.c's */
    /* resilience: the providers' circuit breakers, breaker.c's */
    void                          *breaker;
    /* guard: the counters of its refusals */
    ngx_shm_zone_t                *guard;
} ngx_http_aigw_main_conf_t;


typedef struct {
    ngx_http_upstream_conf_t       upstream;

    ngx_flag_t                     pass;
    ngx_http_complex_value_t      *route;      /* aigw_pass argument */

    ngx_str_t                      ssl_trusted_certificate;
    ngx_uint_t                     ssl_verify_depth;

    ngx_flag_t                     auth;
    ngx_http_complex_value_t      *tenant;     /* with aigw_auth off */
    ngx_str_t                      tenant_header;
    ngx_flag_t                     tenant_user;

    size_t                         answer_buffer;

    ngx_flag_t                     quota;
    ngx_array_t                   *limits;     /* aigw_limit */
    ngx_flag_t                     usage;      /* aigw_usage */
    ngx_uint_t                     quota_max_tokens;
    ngx_uint_t                     quota_store;
    ngx_uint_t                     quota_redis_down;

    void                          *pii;        /* aigw_pii, pii.c's */

    ngx_flag_t                     responses_fallback;
    ngx_uint_t                     translate_max_tokens;

    /* translation: the largest event of a translated stream */
    size_t                         translate_buffer;

    /* cache (cache.c) */
    ngx_flag_t                     cache;
    time_t                         cache_ttl;
    size_t                         cache_max_size;
    ngx_array_t                   *cache_bypass;
    ngx_array_t                   *cache_exclude;    /* ngx_str_t */
    ngx_uint_t                     cache_scope;
    ngx_http_complex_value_t      *cache_namespace;
    ngx_flag_t                     cache_lock;
    ngx_msec_t                     cache_lock_timeout;
    ngx_array_t                   *cache_templates;
    ngx_flag_t                     cache_redis;
    /* semantic cache (cache_semantic.c) */
    ngx_str_t                      cache_semantic;   /* a location's URI */
    ngx_uint_t                     cache_semantic_threshold; /* x 10^4 */
    ngx_int_t                      cache_semantic_turns;
    ngx_int_t                      cache_semantic_partition;
    ngx_str_t                      cache_semantic_model;
    ngx_uint_t                     cache_semantic_precision;
    /* resilience: timeouts, and the upstream confs that apply them */
    ngx_msec_t                     first_token_timeout;
    ngx_msec_t                     stream_idle_timeout;
    ngx_msec_t                     timeout;    /* the request's deadline */
    ngx_http_upstream_conf_t      *first_token_conf;
    ngx_http_upstream_conf_t      *stream_conf;
    ngx_uint_t                     retries;    /* of the same candidate */
    ngx_uint_t                     retry_on;   /* NGX_HTTP_AIGW_RETRY_* */
    ngx_msec_t                     retry_backoff;
    ngx_msec_t                     retry_after_max;
    ngx_msec_t                     stream_keepalive; /* its interval */
    ngx_flag_t                     stream_resume;
    /* hedge: the next candidate after this much waiting (aigw_hedge) */
    ngx_msec_t                     hedge;
    /* guard: aigw_guard_*, guard.c's */
    void                          *guard;
} ngx_http_aigw_loc_conf_t;


struct ngx_http_aigw_ctx_s {
    ngx_uint_t                     step;       /* of the access phase */
    ngx_uint_t                     endpoint;
    ngx_http_aigw_endpoint_t      *ep;
    ngx_http_aigw_format_t        *format;     /* the client's */

    ngx_http_aigw_key_t           *key;        /* the caller's key */
    ngx_str_t                      tenant;

    ngx_str_t                      body;       /* as the client sent it */
    ngx_http_aigw_scan_t           scan;       /* what the body holds */
    ngx_array_t                   *splices;    /* by start, in body order */
    ngx_str_t                      client_headers; /* to providers */
    ngx_str_t                      model;      /* as the client asked */
    ngx_str_t                      route_name;
    ngx_str_t                      response_id; /* of a stored response */
    ngx_str_t                      translation; /* the body in another */
                                                /* format, but its model */
    void                          *translate_stream; /* translate.c's */

    void                          *quota;      /* quota.c's */
    void                          *pii;        /* pii.c's */
    void                          *cache;      /* cache.c's */

    /* guard: the rule that refused ($aigw_guard); the answer's check */
    ngx_str_t                      guard;
    void                          *guard_output;  /* guard_output.c's */
    void                          *moderation;    /* moderation.c's */

    ngx_http_aigw_model_t        **candidates;
    ngx_uint_t                     ncandidates;
    ngx_uint_t                     current;    /* candidate being tried */
    ngx_uint_t                     built;      /* candidate of request_bufs */
    ngx_uint_t                     last;       /* candidate tried last */
    ngx_uint_t                     attempts;

    ngx_http_status_t              status;
    ngx_http_chunked_t             chunked;
    ngx_buf_t                     *answer;     /* a 200 held to be checked */

    ngx_http_aigw_sse_parser_t     sse;
    u_char                        *sse_buf;
    ngx_uint_t                     sse_events;

    /* stream hot path (filter.c): the event at hand, off the stack */
    ngx_http_aigw_sse_event_t      sse_ev;

    const char                    *error_code;
    ngx_str_t                      error_message;
    ngx_str_t                      error_body; /* replaces nginx's page */

    ngx_str_t                      request_id; /* trace.c's */

    /* audit log */
    void                          *audit;      /* in flight, audit_flight.c */

    /* audit log: the answer's HMAC as it passes (audit.c), hmac_key= */
    void                          *audit_answer; /* EVP_MD_CTX */
    unsigned                       audit_answer_off:1; /* not whole */

    /* metering */
    ngx_uint_t                     prompt_tokens;
    ngx_uint_t                     completion_tokens;
    ngx_uint_t                     cached_tokens;
    ngx_uint_t                     cache_write_tokens;
    ngx_uint_t                     reasoning_tokens;
    ngx_uint_t                     usage_source;
    size_t                         est_completion; /* bytes of text */
    size_t                         est_overhead;   /* bytes besides */
    ngx_uint_t                     est_samples;
    uint64_t                       cost;       /* micro-dollars */
    ngx_msec_t                     ttft;

    u_char                        *tail;       /* of a JSON answer */
    size_t                         tail_len;

    u_char                        *pending;    /* an event not yet whole */
    size_t                         pending_len;
    size_t                         pending_size;
    ngx_chain_t                   *free;
    ngx_chain_t                   *busy;

    unsigned                       stream:1;
    unsigned                       answered:1; /* provider headers passed */
    unsigned                       rewrite_error:1;
    unsigned                       fresh_connection:1;
    unsigned                       sse_done:1;
    unsigned                       hide_usage:1;
    unsigned                       json_answer:1;
    unsigned                       metered:1;
    unsigned                       body_read:1;
    unsigned                       body_wait:1;
    unsigned                       answer_held:1;
    unsigned                       answer_metered:1;
    unsigned                       request_id_sent:1;
    unsigned                       translated:1; /* the current attempt */

    /* resilience: how it ended; the deadline's timer; retries */
    ngx_uint_t                     outcome;    /* NGX_HTTP_AIGW_OUTCOME_* */
    ngx_event_t                   *deadline;
    ngx_event_t                   *retry_ev;
    ngx_chain_t                   *retry_held; /* the request, waiting */
    ngx_msec_t                     retry_delay;
    ngx_uint_t                     retried;    /* of the current one */
    unsigned                       retry_wait:1;
    unsigned                       retry_granted:1;
    unsigned                       on_context:1; /* the route's */
    unsigned                       context_moved:1;
    unsigned                       first_wait:1;
    unsigned                       deadline_passed:1;
    unsigned                       stream_failed:1;

    /* resilience: the first token, keep-alives while waiting for it */
    u_char                        *first_buf;  /* an event, parsed */
    ngx_event_t                   *keepalive;  /* its timer */
    ngx_msec_t                     last_read;  /* of the provider */
    ngx_uint_t                     keepalives; /* sent */
    unsigned                       committed:1; /* headers by a keep-alive */
    unsigned                       keepalive_out:1; /* being sent */
    unsigned                       first_failed:1; /* after keep-alives */

    /* resilience: a stream resumed on the next candidate */
    ngx_http_upstream_handler_pt   header_handler; /* nginx's */
    ngx_http_upstream_handler_pt   stream_handler; /* nginx's */
    ngx_recv_pt                    recv;       /* the provider's */
    ngx_event_t                   *resume_ev;
    u_char                        *resume_text; /* sent, JSON-escaped */
    size_t                         resume_len;
    size_t                         resume_size;
    ngx_str_t                      resume_prefill; /* its splice's text */
    ngx_str_t                      resume_ask;     /* or this */
    ngx_uint_t                     resume_outcome; /* the first failure */
    ngx_uint_t                     resume_events;
    ngx_uint_t                     resume_from; /* the cut candidate */
    ngx_uint_t                     resume_prompt;  /* the first's usage, */
    ngx_uint_t                     resume_completion; /* for the log */
    unsigned                       resume_on:1;  /* may be resumed */
    unsigned                       resume_off:1; /* no longer */
    unsigned                       resuming:1;   /* no content yet */
    unsigned                       resumed:1;
    unsigned                       resume_cut:1; /* recv said the end */

    /* hedge: a second candidate racing the first (hedge.c's) */
    void                          *hedge;
    unsigned                       hedged:1;     /* the hedge won */

    /* attempts before the last (resumed, a hedge's loser): their tokens, */
    /* and their cost at their own models' prices, in 10^-12 dollars */
    ngx_uint_t                     carried_prompt;
    ngx_uint_t                     carried_completion;
    uint64_t                       carried_cost;
    unsigned                       carried_overflow:1;
};


/* module.c */
ngx_http_aigw_ctx_t *ngx_http_aigw_ctx_create(ngx_http_request_t *r);
ngx_str_t *ngx_http_aigw_endpoint_name(ngx_uint_t endpoint);
ngx_int_t ngx_http_aigw_subrequest_post(ngx_http_request_t *r, ngx_str_t *uri,
    ngx_buf_t *b, ngx_http_post_subrequest_t *ps);
ngx_int_t ngx_http_aigw_zone_size(ngx_conf_t *cf, ngx_str_t *value,
    ngx_str_t *name, size_t *size);
ngx_int_t ngx_http_aigw_zone_shared(ngx_shm_zone_t *shm_zone, size_t size,
    const char *what, void **sh, ngx_slab_pool_t **shpool);

/*
 * The access phase: one step a file, run in order by module.c.  A step
 * returns NGX_OK or NGX_DECLINED to go on, NGX_DONE while it waits (it
 * runs again when the phases resume), or an HTTP status.
 */

/* auth.c: step 1, the caller's key */
char *ngx_http_aigw_auth_keys(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_aigw_auth_handler(ngx_http_request_t *r);
char *ngx_http_aigw_auth_sha256(ngx_conf_t *cf,
    ngx_http_aigw_main_conf_t *amcf);

/* body.c: step 2, the body read and scanned once; its splices */
ngx_int_t ngx_http_aigw_body_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_aigw_body_splice(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, u_char *start, u_char *end, ngx_str_t *text);
ngx_int_t ngx_http_aigw_body_caller(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_str_t *json);
ngx_int_t ngx_http_aigw_body_set_field(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_uint_t parent, ngx_uint_t field,
    ngx_str_t *key, ngx_str_t *value);
ngx_int_t ngx_http_aigw_body_output(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_str_t *model, ngx_chain_t **out,
    size_t *len);

/* route.c: step 3, the model's candidates */
char *ngx_http_aigw_model(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_aigw_route(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_http_aigw_route_t *ngx_http_aigw_route_find(
    ngx_http_aigw_main_conf_t *amcf, ngx_str_t *name);
ngx_http_aigw_model_t *ngx_http_aigw_route_find_model(
    ngx_http_aigw_main_conf_t *amcf, ngx_str_t *name);
ngx_int_t ngx_http_aigw_route_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_aigw_route_models_send(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);

/* quota.c: step 4, limits, quotas and budgets */
char *ngx_http_aigw_quota_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_quota_add_zone(ngx_conf_t *cf,
    ngx_http_aigw_main_conf_t *amcf, ngx_str_t *name, size_t size);
char *ngx_http_aigw_quota_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_quota_init(ngx_conf_t *cf,
    ngx_http_aigw_main_conf_t *amcf);
ngx_int_t ngx_http_aigw_quota_handler(ngx_http_request_t *r);
void ngx_http_aigw_quota_limits(ngx_http_aigw_loc_conf_t *alcf,
    ngx_uint_t scope, ngx_http_aigw_key_t *key, ngx_http_aigw_limits_t *lim);
char *ngx_http_aigw_quota_report(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_quota_redis_init(ngx_conf_t *cf,
    ngx_http_aigw_main_conf_t *amcf);
void ngx_http_aigw_quota_settle(ngx_http_request_t *r);
u_char *ngx_http_aigw_quota_zone_metrics(void *zone, u_char *p,
    u_char *last);
ngx_int_t ngx_http_aigw_quota_headers(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
ngx_int_t ngx_http_aigw_quota_variable(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_str_t *s);

/* pii.c: the PII step, before quota: a refused request takes none */

/* the longest placeholder, "[" name "_" number "]" */
#define NGX_HTTP_AIGW_PII_PLACEHOLDER  (31 + NGX_INT_T_LEN + 3)

char *ngx_http_aigw_pii(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_aigw_pii_pattern(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_pii_merge(ngx_conf_t *cf, ngx_http_aigw_loc_conf_t *prev,
    ngx_http_aigw_loc_conf_t *conf);
ngx_int_t ngx_http_aigw_pii_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_aigw_pii_restore(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t *b);
ngx_int_t ngx_http_aigw_pii_variable(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_str_t *s);
ngx_uint_t ngx_http_aigw_pii_restoring(ngx_http_aigw_ctx_t *ctx);
ngx_str_t *ngx_http_aigw_pii_value(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, u_char *p, u_char *last);
size_t ngx_http_aigw_pii_metrics_size(ngx_http_aigw_main_conf_t *amcf);
u_char *ngx_http_aigw_pii_metrics(ngx_http_aigw_main_conf_t *amcf,
    u_char *p, u_char *last);

/* cache.c: the last step, the exact cache */
#define NGX_HTTP_AIGW_CACHE_TENANT     0
#define NGX_HTTP_AIGW_CACHE_GLOBAL     1

/* aigw_cache_semantic_precision: how the index keeps a vector */
#define NGX_HTTP_AIGW_SEMANTIC_FLOAT32  0
#define NGX_HTTP_AIGW_SEMANTIC_INT8     1

char *ngx_http_aigw_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_cache_purge(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_cache_template(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
/* cache_semantic.c: the semantic tier's directives */
char *ngx_http_aigw_cache_semantic(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_cache_semantic_threshold(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_aigw_cache_semantic_model(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_cache_merge(ngx_conf_t *cf,
    ngx_http_aigw_loc_conf_t *prev, ngx_http_aigw_loc_conf_t *conf);
ngx_int_t ngx_http_aigw_cache_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_aigw_cache_send(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
ngx_int_t ngx_http_aigw_cache_headers(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
ngx_int_t ngx_http_aigw_cache_collect(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *in);
void ngx_http_aigw_cache_stream_end(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
void ngx_http_aigw_cache_answer(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t *b);
void ngx_http_aigw_cache_log(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx);
ngx_int_t ngx_http_aigw_cache_variable(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_str_t *s);
size_t ngx_http_aigw_cache_metrics_size(ngx_http_aigw_main_conf_t *amcf);
u_char *ngx_http_aigw_cache_metrics(ngx_http_aigw_main_conf_t *amcf,
    u_char *p, u_char *last);
/* guard.c: the prompt guard, a step before PII; guard_output.c: answers */
char *ngx_http_aigw_guard_pattern(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_guard_list(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_guard_size(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_guard_num(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_guard_enum(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_guard_moderation(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_guard_categories(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_aigw_moderation_handler(ngx_http_request_t *r);
char *ngx_http_aigw_guard_merge(ngx_conf_t *cf,
    ngx_http_aigw_loc_conf_t *prev, ngx_http_aigw_loc_conf_t *conf);
ngx_int_t ngx_http_aigw_guard_handler(ngx_http_request_t *r);
ngx_uint_t ngx_http_aigw_guard_params_on(ngx_http_request_t *r);
ngx_int_t ngx_http_aigw_guard_refuse(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_uint_t reason, ngx_str_t *name,
    const char *fmt, ...);
ngx_int_t ngx_http_aigw_guard_variable(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_str_t *s);
size_t ngx_http_aigw_guard_metrics_size(ngx_http_aigw_main_conf_t *amcf);
u_char *ngx_http_aigw_guard_metrics(ngx_http_aigw_main_conf_t *amcf,
    u_char *p, u_char *last);
ngx_uint_t ngx_http_aigw_guard_output_on(ngx_http_request_t *r);
ngx_int_t ngx_http_aigw_guard_output_init(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
ngx_int_t ngx_http_aigw_guard_output_filter(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *in,
    ngx_http_output_body_filter_pt next);
ngx_int_t ngx_http_aigw_guard_output_answer(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t *b);
u_char *ngx_http_aigw_guard_string_end(u_char *p, u_char *last);

/* provider.c */
char *ngx_http_aigw_provider(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_aigw_provider_ssl(ngx_conf_t *cf,
    ngx_http_aigw_loc_conf_t *alcf);

/* openai.c, anthropic.c: the wire formats */
extern ngx_http_aigw_format_t  ngx_http_aigw_openai_format;
extern ngx_http_aigw_format_t  ngx_http_aigw_anthropic_format;
extern ngx_http_aigw_format_t  *ngx_http_aigw_formats[];

/* error.c: an error is recorded in ctx and its status returned; the
 * filter turns nginx's error page into JSON in the client's format */
ngx_int_t ngx_http_aigw_error(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *fmt, ...);
ngx_buf_t *ngx_http_aigw_error_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_uint_t status);
ngx_int_t ngx_http_aigw_error_body(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_uint_t status, ngx_str_t *out);

/* upstream.c: aigw_pass, the content phase */
char *ngx_http_aigw_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* request.c: the HTTP request to a provider */
ngx_int_t ngx_http_aigw_request_init(ngx_conf_t *cf,
    ngx_http_aigw_main_conf_t *amcf);
ngx_table_elt_t *ngx_http_aigw_request_header(ngx_http_request_t *r,
    const char *name, size_t len, ngx_uint_t *count);
ngx_int_t ngx_http_aigw_request_build(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_model_t *model);

/* answer.c: a 200 held until whole and checked */
ngx_int_t ngx_http_aigw_answer_hold(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
ngx_int_t ngx_http_aigw_answer_release(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
void ngx_http_aigw_answer_failed(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);

/* hedge.c: aigw_hedge, the next candidate racing a late first token */
ngx_int_t ngx_http_aigw_hedge_init(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_msec_t time);
void ngx_http_aigw_hedge_lost(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx);
ngx_int_t ngx_http_aigw_hedge_peer(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_peer_connection_t *pc);
ngx_uint_t ngx_http_aigw_hedge_next(ngx_http_aigw_ctx_t *ctx);
void ngx_http_aigw_hedge_keep(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx);
void ngx_http_aigw_hedge_unwrap(ngx_http_aigw_ctx_t *ctx, ngx_connection_t *c);

/* resilience.c: timeouts, rescue, honest stream failures */
char *ngx_http_aigw_resilience_merge(ngx_conf_t *cf,
    ngx_http_aigw_loc_conf_t *prev, ngx_http_aigw_loc_conf_t *conf);
char *ngx_http_aigw_resilience_init(ngx_conf_t *cf,
    ngx_http_aigw_loc_conf_t *conf);
ngx_int_t ngx_http_aigw_resilience_start(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
ngx_int_t ngx_http_aigw_resilience_hold(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
void ngx_http_aigw_resilience_body(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
void ngx_http_aigw_resilience_finalize(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_int_t rc);
ngx_int_t ngx_http_aigw_resilience_committed(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
void ngx_http_aigw_resilience_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_sse_event_t *ev);
ngx_int_t ngx_http_aigw_resilience_reinit(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
void ngx_http_aigw_resilience_unwrap(ngx_http_aigw_ctx_t *ctx,
    ngx_connection_t *c);
void ngx_http_aigw_resilience_prefill(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_model_t *m);
char *ngx_http_aigw_resilience_retries(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_aigw_resilience_retry(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_peer_connection_t *pc, ngx_uint_t dry);
void ngx_http_aigw_resilience_wait(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
ngx_int_t ngx_http_aigw_resilience_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
ngx_uint_t ngx_http_aigw_resilience_outcome(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);

/* breaker.c: providers out of rotation, shared by the workers */
char *ngx_http_aigw_breaker(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_aigw_breaker_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_aigw_breaker_allow(ngx_http_request_t *r,
    ngx_http_aigw_provider_t *provider);
void ngx_http_aigw_breaker_record(ngx_http_request_t *r,
    ngx_http_aigw_provider_t *provider, ngx_uint_t failed);
ngx_msec_t ngx_http_aigw_breaker_retry_after(ngx_http_request_t *r);
void ngx_http_aigw_breaker_latency(ngx_http_request_t *r,
    ngx_http_aigw_provider_t *provider, ngx_msec_t ms);
ngx_msec_t ngx_http_aigw_breaker_ewma(ngx_http_request_t *r,
    ngx_http_aigw_provider_t *provider);
size_t ngx_http_aigw_breaker_metrics_size(ngx_http_aigw_main_conf_t *amcf);
u_char *ngx_http_aigw_breaker_metrics(ngx_http_aigw_main_conf_t *amcf,
    u_char *p, u_char *last);

/* route_rule.c: a route's first candidate chosen by the request */
char *ngx_http_aigw_route_rule(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_aigw_route_rule_apply(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_route_t *rt);

/* resolve.c: provider host names followed with nginx's resolver */
#define NGX_HTTP_AIGW_RESOLVE_MAX  16
void ngx_http_aigw_resolve_init(ngx_conf_t *cf, ngx_http_aigw_provider_t *p,
    in_port_t port);
ngx_int_t ngx_http_aigw_resolve_peer(ngx_http_request_t *r,
    ngx_http_aigw_provider_t *p, ngx_peer_connection_t *pc);

/* keepalive.c */
ngx_int_t ngx_http_aigw_keepalive_init(ngx_conf_t *cf,
    ngx_http_aigw_main_conf_t *amcf);
ngx_int_t ngx_http_aigw_keepalive_get(ngx_http_aigw_main_conf_t *amcf,
    ngx_peer_connection_t *pc, ngx_http_aigw_provider_t *provider);
void ngx_http_aigw_keepalive_put(ngx_http_aigw_main_conf_t *amcf,
    ngx_peer_connection_t *pc, ngx_http_aigw_provider_t *provider,
    ngx_http_upstream_t *u);

/* translate*.c: a client served in another format (translate.h) */
ngx_uint_t ngx_http_aigw_translate_possible(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_model_t *m);
ngx_str_t *ngx_http_aigw_translate_path(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_model_t *m);
ngx_int_t ngx_http_aigw_translate_prepare(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
ngx_int_t ngx_http_aigw_translate_body(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_model_t *model,
    ngx_chain_t **out, size_t *len);
ngx_int_t ngx_http_aigw_translate_answer(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_buf_t *b);
ngx_int_t ngx_http_aigw_translate_event(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_sse_event_t *ev,
    ngx_chain_t **out);
ngx_chain_t *ngx_http_aigw_translate_buf(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
extern ngx_conf_post_t  ngx_http_aigw_translate_buffer_post;
void ngx_http_aigw_translate_sent(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *out);

/* responses.c: where a stored response of the Responses API is */
char *ngx_http_aigw_responses_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_aigw_responses_endpoint(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, u_char *last);
ngx_int_t ngx_http_aigw_responses_check(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
ngx_int_t ngx_http_aigw_responses_route(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
ngx_int_t ngx_http_aigw_responses_affinity(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
void ngx_http_aigw_responses_remember(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_field_t *id);

/* prices.c */
char *ngx_http_aigw_prices(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_aigw_prices_apply(ngx_conf_t *cf,
    ngx_http_aigw_main_conf_t *amcf);

/* metrics.c */
char *ngx_http_aigw_metrics_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_aigw_metrics_add_zone(ngx_conf_t *cf,
    ngx_http_aigw_main_conf_t *amcf, void *mt, ngx_str_t *name,
    size_t size);
char *ngx_http_aigw_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_aigw_metrics_log_handler(ngx_http_request_t *r);
char *ngx_http_aigw_report(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* trace.c: the request id, end to end; the provider's */
ngx_int_t ngx_http_aigw_trace_init(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
ngx_int_t ngx_http_aigw_trace_header(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
void ngx_http_aigw_trace_provider_id(ngx_http_request_t *r, ngx_str_t *id);

/* meter.c: usage read from answers and events, estimates, cost */

/* tokens of text a provider did not count: about four bytes a token */
#define ngx_http_aigw_meter_tokens(bytes)  (((bytes) + 3) / 4)

ngx_int_t ngx_http_aigw_meter_json(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_chain_t *in);
void ngx_http_aigw_meter_answer(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_usage_t *usage);
void ngx_http_aigw_meter_usage(ngx_http_aigw_ctx_t *ctx, u_char *p,
    u_char *last, ngx_uint_t delta);
void ngx_http_aigw_meter_counts(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_usage_t *usage, ngx_uint_t delta);
void ngx_http_aigw_meter_estimate_sample(ngx_http_aigw_ctx_t *ctx,
    u_char *p, u_char *last, const char *key, size_t len);
void ngx_http_aigw_meter_finish(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);
void ngx_http_aigw_meter_carry(ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_model_t *m, ngx_uint_t prompt, ngx_uint_t cached,
    ngx_uint_t completion);
uint64_t ngx_http_aigw_meter_cost(ngx_http_aigw_ctx_t *ctx,
    ngx_uint_t *overflow);

/* audit.c: one tamper-evident record a request, from the log phase */
char *ngx_http_aigw_audit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_aigw_audit_init_module(ngx_cycle_t *cycle);
ngx_int_t ngx_http_aigw_audit_init_process(ngx_cycle_t *cycle);
void ngx_http_aigw_audit_exit_process(ngx_cycle_t *cycle);
char *ngx_http_aigw_audit_ship_conf(ngx_conf_t *cf,
    ngx_http_aigw_main_conf_t *amcf);
ngx_int_t ngx_http_aigw_audit_filter_init(ngx_conf_t *cf);
void ngx_http_aigw_audit_log(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx);
void ngx_http_aigw_audit_flight_begin(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx);

/* filter.c */
ngx_int_t ngx_http_aigw_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_http_aigw_filter_add_header(ngx_http_request_t *r,
    ngx_str_t *name, u_char *value, size_t len);


static ngx_inline ngx_msec_t
ngx_http_aigw_msec_since(ngx_http_request_t *r)
{
    ngx_time_t  *tp;
    ngx_msec_int_t  ms;

    tp = ngx_timeofday();

    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));

    return ms > 0 ? (ngx_msec_t) ms : 0;
}


extern ngx_module_t  ngx_http_aigw_module;



/*
 * meter.c: the text of a stream's event, for an estimate should the
 * provider not report usage.  The first four events are read for it
 * (meter.c); the others are counted by their size less what those
 * carried besides text, here, without a call: one an event.
 */

static ngx_inline void
ngx_http_aigw_meter_estimate(ngx_http_aigw_ctx_t *ctx, u_char *p,
    u_char *last, const char *key, size_t len)
{
    size_t  size;

    if (ctx->est_samples < 4) {
        ngx_http_aigw_meter_estimate_sample(ctx, p, last, key, len);
        return;
    }

    size = last - p;

    if (size > ctx->est_overhead) {
        ctx->est_completion += size - ctx->est_overhead;
    }
}

#endif /* _NGX_HTTP_AIGW_MODULE_H_INCLUDED_ */
