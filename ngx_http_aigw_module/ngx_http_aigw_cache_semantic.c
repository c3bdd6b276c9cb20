
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_cache.h"


/*
 * The semantic tier of the cache, after an exact (or template) miss:
 * the last user message's text goes to an OpenAI-compatible
 * /v1/embeddings behind an internal location (aigw_cache_semantic), in
 * a subrequest as auth_request's; its vector is looked for in the
 * zone's index, in the request's partition (a digest of everything but
 * that text: system prompt, earlier turns, tools, parameters, model,
 * scope, namespace), so a hit never crosses any of them.  A vector as
 * near as the threshold or nearer is a hit: its answer, stored under
 * its exact key, is replayed.  A miss keeps the vector and indexes it
 * with the answer stored.  The embeddings failing, late or wrong: the
 * request goes on to the provider, with one error-log line.
 */


typedef struct {
    ngx_uint_t                     done;
    ngx_uint_t                     status;
    ngx_str_t                      body;      /* the embeddings' answer */

    u_char                         part[NGX_HTTP_AIGW_CACHE_KEY_LEN];
    float                         *vec;
    ngx_uint_t                     dim;
    float                          threshold;
    unsigned                       read:1;

    /* the partition read in slices, the worker let go between them */
    ngx_http_aigw_cache_vscan_t    vs;
    ngx_event_t                    slice;
    unsigned                       scanning:1;

    /* the partition loaded from Redis (aigw_cache_redis) */
    ngx_http_request_t            *request;
    void                          *cmd;
    unsigned                       loading:1;
    unsigned                       parked:1;    /* waits for the load */
} ngx_http_aigw_cache_semantic_req_t;


/* cache.c */
ngx_int_t ngx_http_aigw_cache_partition(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, u_char *text, u_char *part);

static ngx_int_t ngx_http_aigw_cache_semantic_text(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_int_t turns, ngx_http_aigw_span_t **text);
static ngx_int_t ngx_http_aigw_cache_semantic_threshold_in(
    ngx_http_request_t *r, ngx_uint_t conf, float *threshold);
static ngx_int_t ngx_http_aigw_cache_semantic_send(ngx_http_request_t *r,
    ngx_http_aigw_cache_semantic_req_t *sr_ctx, ngx_http_aigw_span_t *text);
static ngx_int_t ngx_http_aigw_cache_semantic_done(ngx_http_request_t *r,
    void *data, ngx_int_t rc);
static void ngx_http_aigw_cache_semantic_error(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigw_cache_semantic_load(ngx_http_request_t *r,
    ngx_http_aigw_cache_semantic_req_t *sem);
static void ngx_http_aigw_cache_semantic_loaded(void *data);
static ngx_int_t ngx_http_aigw_cache_semantic_scan_on(ngx_http_request_t *r,
    ngx_http_aigw_cache_semantic_req_t *sem);
static void ngx_http_aigw_cache_semantic_slice(ngx_event_t *ev);
static void ngx_http_aigw_cache_semantic_resume(
    ngx_http_aigw_cache_semantic_req_t *sem);
static void ngx_http_aigw_cache_semantic_cleanup(void *data);


/* aigw_cache_semantic URI|off; */

char *
ngx_http_aigw_cache_semantic(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_loc_conf_t *alcf = conf;

    ngx_str_t  *value;

    if (alcf->cache_semantic.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ngx_str_set(&alcf->cache_semantic, "");
        return NGX_CONF_OK;
    }

    if (value[1].len == 0 || value[1].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\": a location's URI "
                           "or \"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    alcf->cache_semantic = value[1];

    return NGX_CONF_OK;
}


/* aigw_cache_semantic_threshold 0.95; a cosine, above 0 and at most 1 */

char *
ngx_http_aigw_cache_semantic_threshold(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_aigw_loc_conf_t *alcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (alcf->cache_semantic_threshold != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atofp(value[1].data, value[1].len, 4);

    if (n <= 0 || n > 10000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\": a number above 0 "
                           "and at most 1", &value[1]);
        return NGX_CONF_ERROR;
    }

    alcf->cache_semantic_threshold = (ngx_uint_t) n;

    return NGX_CONF_OK;
}


/* aigw_cache_semantic_model NAME; sent as a JSON string as it is */

char *
ngx_http_aigw_cache_semantic_model(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_aigw_loc_conf_t *alcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (alcf->cache_semantic_model.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; i < value[1].len; i++) {
        if (value[1].data[i] < 0x20 || value[1].data[i] == '"'
            || value[1].data[i] == '\\')
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\": a model name "
                               "without quotes, backslashes or controls",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 0) {
        return "has an empty model name";
    }

    alcf->cache_semantic_model = value[1];

    return NGX_CONF_OK;
}


char *
ngx_http_aigw_cache_semantic_merge(ngx_conf_t *cf,
    ngx_http_aigw_loc_conf_t *prev, ngx_http_aigw_loc_conf_t *conf)
{
    ngx_http_aigw_main_conf_t  *amcf;

    ngx_conf_merge_str_value(conf->cache_semantic, prev->cache_semantic, "");
    ngx_conf_merge_uint_value(conf->cache_semantic_threshold,
                              prev->cache_semantic_threshold, 9500);
    ngx_conf_merge_value(conf->cache_semantic_turns,
                         prev->cache_semantic_turns, 1);
    ngx_conf_merge_value(conf->cache_semantic_partition,
                         prev->cache_semantic_partition, 1024);
    ngx_conf_merge_uint_value(conf->cache_semantic_precision,
                              prev->cache_semantic_precision,
                              NGX_HTTP_AIGW_SEMANTIC_FLOAT32);
    ngx_conf_merge_str_value(conf->cache_semantic_model,
                             prev->cache_semantic_model,
                             "text-embedding-3-small");

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigw_module);

    if (conf->cache_redis && conf->cache_semantic.len && amcf->redis
        && ngx_http_aigw_cache_semantic_redis_init(cf,
                                                &amcf->cache_semantic_redis,
                                                amcf->redis)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * After an exact miss: NGX_DONE when the embeddings are asked for (the
 * step waits for them), NGX_DECLINED when the request is not for the
 * semantic tier, a status for a bad X-AIGW-Cache-Threshold.
 */

ngx_int_t
ngx_http_aigw_cache_semantic_ask(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, void **data)
{
    ngx_int_t                            rc;
    ngx_http_aigw_span_t                *text;
    ngx_http_aigw_loc_conf_t            *alcf;
    ngx_http_aigw_cache_semantic_req_t  *sem;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    if (alcf->cache_semantic.len == 0
        || (ctx->endpoint != NGX_HTTP_AIGW_EP_CHAT
            && ctx->endpoint != NGX_HTTP_AIGW_EP_MESSAGES))
    {
        return NGX_DECLINED;
    }

    rc = ngx_http_aigw_cache_semantic_text(r, ctx, alcf->cache_semantic_turns,
                                           &text);
    if (rc != NGX_OK) {
        return rc;
    }

    sem = ngx_pcalloc(r->pool, sizeof(ngx_http_aigw_cache_semantic_req_t));
    if (sem == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_aigw_cache_semantic_threshold_in(r,
                                           alcf->cache_semantic_threshold,
                                           &sem->threshold);
    if (rc != NGX_OK) {
        return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_cache_threshold",
                                   "X-AIGW-Cache-Threshold must be a number "
                                   "from 0 to 1.");
    }

    /* the partition: the body's key with that text left out */

    if (ngx_http_aigw_cache_partition(r, ctx, text->start - 1, sem->part)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    rc = ngx_http_aigw_cache_semantic_send(r, sem, text);

    if (rc != NGX_DONE) {
        return rc;
    }

    *data = sem;

    /* meanwhile, an empty partition is loaded from Redis */

    if (alcf->cache_redis
        && ngx_http_aigw_cache_semantic_load(r, sem) == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    return NGX_DONE;
}


/*
 * The one text of the last message, when it is a user's, and the
 * conversation has at most turns user messages; the roles are read
 * from the "messages" the scan found (they are not in its spans).
 * Prompts with personal data replaced (PII) are not looked up: two
 * people's questions would be one.
 */

static ngx_int_t
ngx_http_aigw_cache_semantic_text(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_int_t turns, ngx_http_aigw_span_t **text)
{
    u_char                  *p, *e, *v, *last, *ms, *me;
    ngx_int_t                n;
    ngx_uint_t               i, user;
    ngx_http_aigw_span_t    *t;
    ngx_http_aigw_field_t   *f;
    ngx_http_aigw_splice_t  *sp;

    f = &ctx->scan.field[NGX_HTTP_AIGW_F_MESSAGES];

    if (f->key == NULL || *f->start != '['
        || ctx->scan.ntext == 0 || ctx->scan.ntext > ctx->scan.text_size)
    {
        return NGX_DECLINED;
    }

    p = f->start + 1;
    last = f->end;
    n = 0;
    user = 0;
    ms = NULL;
    me = NULL;

    for ( ;; ) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                            || *p == '\n' || *p == ','))
        {
            p++;
        }

        if (p >= last || *p == ']') {
            break;
        }

        e = ngx_http_aigw_cache_json_skip(p, last);

        if (e == NULL || e == p) {
            return NGX_DECLINED;
        }

        v = (*p == '{') ? ngx_http_aigw_cache_json_get(p, e, "role", 4)
                        : NULL;

        user = (v && e - v >= 6 && ngx_strncmp(v, "\"user\"", 6) == 0);
        n += user;
        ms = p;
        me = e;
        p = e;
    }

    if (!user || n > turns) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aigw: semantic cache: %i user turns, last %ui: "
                       "not looked up", n, user);
        return NGX_DECLINED;
    }

    /* the last span in the last message, and the only one there */

    t = &ctx->scan.text[ctx->scan.ntext - 1];

    if (t->start < ms || t->end > me
        || (ctx->scan.ntext > 1 && t[-1].start >= ms))
    {
        return NGX_DECLINED;
    }

    if (ctx->splices) {
        sp = ctx->splices->elts;

        for (i = 0; i < ctx->splices->nelts; i++) {
            if (sp[i].start >= t->start && sp[i].end <= t->end) {
                ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                               "aigw: semantic cache: personal data in the "
                               "prompt, not looked up");
                return NGX_DECLINED;
            }
        }
    }

    *text = t;

    return NGX_OK;
}


/*
 * The threshold: the location's, or the request's X-AIGW-Cache-Threshold
 * when that is higher; a lower one does not count.  NGX_ERROR when the
 * header is not a number from 0 to 1.
 */

static ngx_int_t
ngx_http_aigw_cache_semantic_threshold_in(ngx_http_request_t *r,
    ngx_uint_t conf, float *threshold)
{
    ngx_int_t         n;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    static ngx_str_t  name = ngx_string("X-AIGW-Cache-Threshold");

    *threshold = (float) conf / 10000;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len != name.len
            || ngx_strncasecmp(h[i].key.data, name.data, name.len) != 0)
        {
            continue;
        }

        n = ngx_atofp(h[i].value.data, h[i].value.len, 4);

        if (n < 0 || n > 10000) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aigw: invalid X-AIGW-Cache-Threshold \"%V\"",
                          &h[i].value);
            return NGX_ERROR;
        }

        if ((ngx_uint_t) n > conf) {
            conf = n;
            *threshold = (float) n / 10000;
        }
    }

    return NGX_OK;
}


/* {"model":"M","input":"TEXT"}: the text as the client escaped it */

static ngx_int_t
ngx_http_aigw_cache_semantic_send(ngx_http_request_t *r,
    ngx_http_aigw_cache_semantic_req_t *sem, ngx_http_aigw_span_t *text)
{
    u_char                      *p;
    size_t                       len;
    ngx_int_t                    rc;
    ngx_buf_t                   *b;
    ngx_http_post_subrequest_t  *ps;
    ngx_http_aigw_loc_conf_t    *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);

    len = sizeof("{\"model\":\"\",\"input\":\"\"}") - 1
          + alcf->cache_semantic_model.len + (text->end - text->start);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->last, "{\"model\":\"", sizeof("{\"model\":\"") - 1);
    p = ngx_cpymem(p, alcf->cache_semantic_model.data,
                   alcf->cache_semantic_model.len);
    p = ngx_cpymem(p, "\",\"input\":\"", sizeof("\",\"input\":\"") - 1);
    p = ngx_cpymem(p, text->start, text->end - text->start);
    *p++ = '"';
    *p++ = '}';

    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    if (ps == NULL) {
        return NGX_ERROR;
    }

    ps->handler = ngx_http_aigw_cache_semantic_done;
    ps->data = sem;

    rc = ngx_http_aigw_subrequest_post(r, &alcf->cache_semantic, b, ps);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: semantic cache: no subrequest to \"%V\", "
                      "the request goes on", &alcf->cache_semantic);
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: semantic cache: embeddings from \"%V\"",
                   &alcf->cache_semantic);

    return NGX_DONE;
}


/* the subrequest's end: its status and its body, kept in memory */

static ngx_int_t
ngx_http_aigw_cache_semantic_done(ngx_http_request_t *r, void *data,
    ngx_int_t rc)
{
    ngx_http_aigw_cache_semantic_req_t  *sem = data;

    sem->done = 1;
    sem->status = r->headers_out.status;

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_ERROR) {
        sem->status = (rc == NGX_ERROR) ? 0 : (ngx_uint_t) rc;
    }

    if (r->out && r->out->buf) {
        sem->body.data = r->out->buf->pos;
        sem->body.len = r->out->buf->last - r->out->buf->pos;
    }

    return rc;
}


/*
 * The step resumed: NGX_AGAIN while the embeddings are not there (or
 * the partition, or the partition's next slice is to be read);
 * NGX_OK and the key of the nearest stored answer at the threshold or
 * above; NGX_DECLINED for none, or when the embeddings failed.
 */

ngx_int_t
ngx_http_aigw_cache_semantic_find(ngx_http_request_t *r, void *data,
    u_char *key)
{
    ngx_http_aigw_cache_semantic_req_t *sem = data;

    float                      *v;
    ngx_int_t                   rc;
    ngx_uint_t                  dim;
    ngx_http_aigw_loc_conf_t   *alcf;
    ngx_http_aigw_main_conf_t  *amcf;

    if (!sem->done) {
        return NGX_AGAIN;
    }

    if (sem->loading) {
        /* the embeddings are here, the partition not yet: it resumes */

        if (!sem->parked) {
            sem->parked = 1;
            r->main->count++;
        }

        return NGX_AGAIN;
    }

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    if (sem->scanning) {
        if (sem->slice.posted) {
            return NGX_AGAIN;
        }

        goto scan;
    }

    if (sem->read) {
        return NGX_DECLINED;
    }

    sem->read = 1;

    if (sem->status != NGX_HTTP_OK || sem->body.data == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: semantic cache: the embeddings from \"%V\" "
                      "failed (status %ui), the request goes on",
                      &alcf->cache_semantic, sem->status);
        ngx_http_aigw_cache_semantic_error(r);
        return NGX_DECLINED;
    }

    v = ngx_palloc(r->pool, NGX_HTTP_AIGW_SEMANTIC_DIM_MAX * sizeof(float));
    if (v == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_aigw_cache_semantic_parse(sem->body.data,
                                           sem->body.data + sem->body.len,
                                           v, NGX_HTTP_AIGW_SEMANTIC_DIM_MAX,
                                           &dim)
        != NGX_OK
        || ngx_http_aigw_cache_semantic_normalize(v, dim) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: semantic cache: no embedding of at most %d "
                      "numbers, not all zero, in the answer of \"%V\", "
                      "the request goes on",
                      NGX_HTTP_AIGW_SEMANTIC_DIM_MAX, &alcf->cache_semantic);
        ngx_http_aigw_cache_semantic_error(r);
        return NGX_DECLINED;
    }

    sem->vec = v;
    sem->dim = dim;

scan:

    rc = ngx_http_aigw_cache_zone_vector_find(amcf->cache_zone, sem->part,
                                              sem->vec, sem->dim,
                                              alcf->cache_semantic_precision,
                                              sem->threshold,
                                              alcf->cache_redis, &sem->vs,
                                              key);

    if (rc == NGX_AGAIN) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aigw: semantic cache: the scan goes on at vector %ui",
                       sem->vs.from);

        return ngx_http_aigw_cache_semantic_scan_on(r, sem);
    }

    sem->scanning = 0;

    if (rc == NGX_DECLINED) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aigw: semantic cache: nearest %.4f of %ui dims, "
                       "a miss", (double) sem->vs.score, sem->dim);
        return NGX_DECLINED;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: semantic cache: a hit at %.4f%s",
                   (double) sem->vs.score,
                   rc == NGX_DONE ? ", its answer in Redis" : "");

    /* NGX_OK: the answer is in the zone; NGX_DONE: perhaps in Redis */

    return rc;
}


static void
ngx_http_aigw_cache_semantic_error(ngx_http_request_t *r)
{
    ngx_http_aigw_main_conf_t       *amcf;
    ngx_http_aigw_cache_counters_t  *cnt;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    cnt = ngx_http_aigw_cache_zone_counters(amcf->cache_zone);

    (void) ngx_atomic_fetch_add(&cnt->semantic_errors, 1);
}


/* an answer stored under key: its vector goes to the index */

void
ngx_http_aigw_cache_semantic_put(ngx_http_request_t *r, void *data,
    u_char *key)
{
    ngx_http_aigw_cache_semantic_req_t *sem = data;

    ngx_http_aigw_loc_conf_t   *alcf;
    ngx_http_aigw_main_conf_t  *amcf;

    if (sem == NULL || sem->vec == NULL) {
        return;
    }

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    (void) ngx_http_aigw_cache_zone_vector_add(amcf->cache_zone, sem->part,
                                       key, sem->vec, sem->dim,
                                       alcf->cache_semantic_precision,
                                       alcf->cache_semantic_partition,
                                       r->connection->log);

    if (alcf->cache_redis && amcf->cache_semantic_redis) {
        ngx_http_aigw_cache_semantic_redis_put(amcf->cache_semantic_redis,
                                           sem->part, key, sem->vec, sem->dim,
                                           alcf->cache_semantic_partition,
                                           alcf->cache_ttl,
                                           r->connection->log);
    }
}


/*
 * A vector found whose answer was neither in the zone nor in Redis: it
 * is nobody's match any more.
 */

void
ngx_http_aigw_cache_semantic_drop(ngx_http_request_t *r, void *data,
    u_char *key)
{
    ngx_http_aigw_cache_semantic_req_t *sem = data;

    ngx_http_aigw_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    ngx_http_aigw_cache_zone_vector_drop(amcf->cache_zone, sem->part, key);
}


/*
 * The partition loaded from Redis when the zone has none of it (a node
 * started, or the zone evicted it), while the embeddings are asked for.
 * Redis not reachable: the lookup goes on without it.
 */

static ngx_int_t
ngx_http_aigw_cache_semantic_load(ngx_http_request_t *r,
    ngx_http_aigw_cache_semantic_req_t *sem)
{
    ngx_int_t                   rc;
    ngx_pool_cleanup_t         *cln;
    ngx_http_aigw_loc_conf_t   *alcf;
    ngx_http_aigw_main_conf_t  *amcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    if (amcf->cache_semantic_redis == NULL
        || ngx_http_aigw_cache_zone_vector_count(amcf->cache_zone, sem->part))
    {
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    sem->request = r;

    rc = ngx_http_aigw_cache_semantic_redis_load(
             amcf->cache_semantic_redis, amcf->cache_zone, sem->part,
             alcf->cache_semantic_partition,
             alcf->cache_semantic_precision, r->pool,
             ngx_http_aigw_cache_semantic_loaded, sem, r->connection->log,
             &sem->cmd);
    if (rc != NGX_OK) {
        sem->cmd = NULL;
        return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
    }

    /* a request gone first cancels the command */
    cln->handler = ngx_http_aigw_cache_semantic_cleanup;
    cln->data = sem;

    sem->loading = 1;

    return NGX_OK;
}


static void
ngx_http_aigw_cache_semantic_loaded(void *data)
{
    ngx_http_aigw_cache_semantic_req_t *sem = data;

    sem->cmd = NULL;
    sem->loading = 0;

    if (!sem->parked) {
        /* the embeddings' subrequest resumes the request */
        return;
    }

    ngx_http_aigw_cache_semantic_resume(sem);
}


/*
 * A large partition (10,000 vectors of 1,536 numbers is 60 MB, some
 * 9 ms to read) is read in slices: between two, the worker goes round
 * its event loop once (ngx_posted_next_events) and serves the others.
 */

static ngx_int_t
ngx_http_aigw_cache_semantic_scan_on(ngx_http_request_t *r,
    ngx_http_aigw_cache_semantic_req_t *sem)
{
    ngx_pool_cleanup_t  *cln;

    if (!sem->scanning) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_DECLINED;
        }

        /* a request ended meanwhile takes its slice off the queue */
        cln->handler = ngx_http_aigw_cache_semantic_cleanup;
        cln->data = sem;

        sem->scanning = 1;
        sem->request = r;
        sem->slice.handler = ngx_http_aigw_cache_semantic_slice;
        sem->slice.data = sem;
        sem->slice.log = r->connection->log;
    }

    if (!sem->parked) {
        sem->parked = 1;
        r->main->count++;
    }

    ngx_post_event(&sem->slice, &ngx_posted_next_events);

    return NGX_AGAIN;
}


static void
ngx_http_aigw_cache_semantic_slice(ngx_event_t *ev)
{
    ngx_http_aigw_cache_semantic_resume(ev->data);
}


/* the request parked for a load or a slice goes on through its steps */

static void
ngx_http_aigw_cache_semantic_resume(ngx_http_aigw_cache_semantic_req_t *sem)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    sem->parked = 0;

    r = sem->request;
    c = r->connection;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);

    /* the reference the wait took */
    ngx_http_finalize_request(r, NGX_DONE);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_aigw_cache_semantic_cleanup(void *data)
{
    ngx_http_aigw_cache_semantic_req_t *sem = data;

    if (sem->cmd) {
        ngx_http_aigw_redis_cancel(sem->cmd);
        sem->cmd = NULL;
    }

    if (sem->slice.posted) {
        ngx_delete_posted_event(&sem->slice);
    }
}
