
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_guard.h"


/*
 * The prompt guard, a step of the access phase before PII and quota (a
 * request refused takes no quota): the allowed models and top-level
 * parameters, caps on max_tokens, on messages and on the prompt's size,
 * then deny and allow patterns on the text spans of the scan.  Each
 * refusal is a 400 in the client's format, one log line, one counter,
 * and $aigw_guard names the rule, never the text.
 */


static ngx_http_aigw_guard_conf_t *ngx_http_aigw_guard_conf(ngx_conf_t *cf,
    ngx_http_aigw_loc_conf_t *alcf);
static ngx_int_t ngx_http_aigw_guard_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_aigw_guard_models(ngx_http_aigw_guard_conf_t *gc,
    ngx_str_t *model);
static ngx_int_t ngx_http_aigw_guard_params(ngx_http_aigw_guard_conf_t *gc,
    ngx_http_aigw_scan_t *s, ngx_http_aigw_span_t **bad);
static ngx_int_t ngx_http_aigw_guard_tokens(ngx_http_aigw_guard_conf_t *gc,
    ngx_http_aigw_scan_t *s);
static ngx_int_t ngx_http_aigw_guard_text(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_guard_conf_t *gc,
    ngx_http_aigw_guard_pattern_t **fired);


/* the rules that refuse, as $aigw_guard and the metric's label say them */

ngx_str_t  ngx_http_aigw_guard_reasons[] = {
    ngx_string("model"),
    ngx_string("param"),
    ngx_string("max_tokens"),
    ngx_string("max_messages"),
    ngx_string("max_prompt"),
    ngx_string("deny"),
    ngx_string("allow"),
    ngx_string("output"),
    ngx_string("moderation"),
    ngx_null_string
};


static ngx_http_aigw_guard_conf_t *
ngx_http_aigw_guard_conf(ngx_conf_t *cf, ngx_http_aigw_loc_conf_t *alcf)
{
    ngx_str_t                    name;
    ngx_http_aigw_guard_conf_t  *gc;
    ngx_http_aigw_main_conf_t   *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigw_module);

    if (amcf->guard == NULL) {
        ngx_str_set(&name, "aigw_guard");

        amcf->guard = ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize,
                                            &ngx_http_aigw_module);
        if (amcf->guard == NULL) {
            return NULL;
        }

        amcf->guard->init = ngx_http_aigw_guard_init_zone;
    }

    if (alcf->guard) {
        return alcf->guard;
    }

    gc = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_guard_conf_t));
    if (gc == NULL) {
        return NULL;
    }

    gc->deny = NGX_CONF_UNSET_PTR;
    gc->allow = NGX_CONF_UNSET_PTR;
    gc->output = NGX_CONF_UNSET_PTR;
    gc->params = NGX_CONF_UNSET_PTR;
    gc->models = NGX_CONF_UNSET_PTR;
    gc->max_prompt = NGX_CONF_UNSET_SIZE;
    gc->max_messages = NGX_CONF_UNSET_UINT;
    gc->max_tokens = NGX_CONF_UNSET_UINT;
    gc->categories = NGX_CONF_UNSET_PTR;
    gc->moderation_fail = NGX_CONF_UNSET_UINT;

    alcf->guard = gc;

    return gc;
}


/* the counters by reason, kept across reloads */

static ngx_int_t
ngx_http_aigw_guard_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t           *shpool;
    ngx_http_aigw_guard_sh_t  *sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data) {
        shm_zone->data = data;
        return NGX_OK;
    }

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_aigw_guard_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = sh;
    shm_zone->data = sh;

    return NGX_OK;
}


/* aigw_guard_deny | aigw_guard_allow | aigw_guard_output NAME REGEX ...; */

char *
ngx_http_aigw_guard_pattern(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_loc_conf_t *alcf = conf;

    u_char                         *p;
    ngx_str_t                      *value;
    ngx_int_t                       n;
    ngx_uint_t                      i;
    ngx_array_t                   **a;
    ngx_regex_compile_t             rc;
    ngx_http_aigw_guard_conf_t     *gc;
    ngx_http_aigw_guard_pattern_t  *pat;
    u_char                          errstr[NGX_MAX_CONF_ERRSTR];

    value = cf->args->elts;

    gc = ngx_http_aigw_guard_conf(cf, alcf);
    if (gc == NULL) {
        return NGX_CONF_ERROR;
    }

    if (value[1].len == 0 || value[1].len > NGX_HTTP_AIGW_GUARD_NAME) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid guard pattern name \"%V\": 1 to %d "
                           "bytes", &value[1], NGX_HTTP_AIGW_GUARD_NAME);
        return NGX_CONF_ERROR;
    }

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
              || *p == '_' || *p == '-'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid guard pattern name \"%V\": "
                               "lowercase letters, digits, \"_\" and \"-\" "
                               "only", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (value[2].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty guard pattern \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    a = (ngx_array_t **) ((char *) gc + cmd->offset);

    if (*a == NGX_CONF_UNSET_PTR) {
        *a = ngx_array_create(cf->pool, 4,
                              sizeof(ngx_http_aigw_guard_pattern_t));
        if (*a == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    pat = (*a)->elts;

    for (i = 0; i < (*a)->nelts; i++) {
        if (pat[i].name.len == value[1].len
            && ngx_strncmp(pat[i].name.data, value[1].data, value[1].len)
               == 0)
        {
            return "is duplicate";
        }
    }

    pat = ngx_array_push(*a);
    if (pat == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(pat, sizeof(ngx_http_aigw_guard_pattern_t));
    pat->name = value[1];
    pat->max = NGX_HTTP_AIGW_GUARD_MAX_MATCH;

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "caseless") == 0) {
            rc.options |= NGX_REGEX_CASELESS;
            continue;
        }

        if (cmd->offset == offsetof(ngx_http_aigw_guard_conf_t, output)
            && ngx_strncmp(value[i].data, "max=", 4) == 0)
        {
            n = ngx_atoi(value[i].data + 4, value[i].len - 4);

            if (n <= 0 || n > NGX_HTTP_AIGW_GUARD_MAX_HOLD) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\": 1 to %d "
                                   "bytes", &value[i],
                                   NGX_HTTP_AIGW_GUARD_MAX_HOLD);
                return NGX_CONF_ERROR;
            }

            pat->max = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    /* compiled, and JIT-compiled with "pcre_jit on", as the conf loads */

    rc.pattern = value[2];
    rc.pool = cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V", &rc.err);
        return NGX_CONF_ERROR;
    }

    pat->re = rc.regex;

    return NGX_CONF_OK;
}


/* aigw_guard_params NAME ...; aigw_guard_models NAME ...; */

char *
ngx_http_aigw_guard_list(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_loc_conf_t *alcf = conf;

    ngx_str_t                   *value, *s;
    ngx_uint_t                   i;
    ngx_array_t                **a;
    ngx_http_aigw_guard_conf_t  *gc;

    value = cf->args->elts;

    gc = ngx_http_aigw_guard_conf(cf, alcf);
    if (gc == NULL) {
        return NGX_CONF_ERROR;
    }

    a = (ngx_array_t **) ((char *) gc + cmd->offset);

    if (*a != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    *a = ngx_array_create(cf->pool, cf->args->nelts - 1, sizeof(ngx_str_t));
    if (*a == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        if (value[i].len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"\"");
            return NGX_CONF_ERROR;
        }

        s = ngx_array_push(*a);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        *s = value[i];
    }

    return NGX_CONF_OK;
}


/* aigw_guard_max_prompt SIZE;  nginx's own slot, on guard.c's struct */

char *
ngx_http_aigw_guard_size(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_guard_conf_t  *gc;

    gc = ngx_http_aigw_guard_conf(cf, conf);
    if (gc == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_conf_set_size_slot(cf, cmd, gc);
}


/* aigw_guard_max_messages N; aigw_guard_max_tokens N; */

char *
ngx_http_aigw_guard_num(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_guard_conf_t  *gc;

    gc = ngx_http_aigw_guard_conf(cf, conf);
    if (gc == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_conf_set_num_slot(cf, cmd, gc);
}


/* aigw_moderation_fail open | closed; */

char *
ngx_http_aigw_guard_enum(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_guard_conf_t  *gc;

    gc = ngx_http_aigw_guard_conf(cf, conf);
    if (gc == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_conf_set_enum_slot(cf, cmd, gc);
}


/* aigw_moderation URI | off; */

char *
ngx_http_aigw_guard_moderation(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t                   *value;
    ngx_http_aigw_guard_conf_t  *gc;

    gc = ngx_http_aigw_guard_conf(cf, conf);
    if (gc == NULL) {
        return NGX_CONF_ERROR;
    }

    if (gc->moderation.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        gc->moderation.data = (u_char *) "";
        gc->moderation.len = 0;
        return NGX_CONF_OK;
    }

    if (value[1].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\": a location's URI, "
                           "or \"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    gc->moderation = value[1];

    return NGX_CONF_OK;
}


/* aigw_moderation_categories NAME ...; kept with their quotes */

char *
ngx_http_aigw_guard_categories(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t                   *value, *s;
    ngx_uint_t                   i;
    ngx_http_aigw_guard_conf_t  *gc;

    gc = ngx_http_aigw_guard_conf(cf, conf);
    if (gc == NULL) {
        return NGX_CONF_ERROR;
    }

    if (gc->categories != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    gc->categories = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                      sizeof(ngx_str_t));
    if (gc->categories == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        if (value[i].len == 0 || ngx_strlchr(value[i].data,
                                             value[i].data + value[i].len,
                                             '"'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        s = ngx_array_push(gc->categories);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        s->len = value[i].len + 2;
        s->data = ngx_pnalloc(cf->pool, s->len);
        if (s->data == NULL) {
            return NGX_CONF_ERROR;
        }

        s->data[0] = '"';
        ngx_memcpy(s->data + 1, value[i].data, value[i].len);
        s->data[s->len - 1] = '"';
    }

    return NGX_CONF_OK;
}


/* a level without guard directives has its parent's; set ones win */

char *
ngx_http_aigw_guard_merge(ngx_conf_t *cf, ngx_http_aigw_loc_conf_t *prev,
    ngx_http_aigw_loc_conf_t *conf)
{
    ngx_uint_t                      i;
    ngx_http_aigw_guard_conf_t     *gc, *pc;
    ngx_http_aigw_guard_pattern_t  *pat;

    if (conf->guard == NULL) {
        conf->guard = prev->guard;
        return NGX_CONF_OK;
    }

    gc = conf->guard;
    pc = prev->guard;

    if (pc) {
        ngx_conf_merge_ptr_value(gc->deny, pc->deny, NULL);
        ngx_conf_merge_ptr_value(gc->allow, pc->allow, NULL);
        ngx_conf_merge_ptr_value(gc->output, pc->output, NULL);
        ngx_conf_merge_ptr_value(gc->params, pc->params, NULL);
        ngx_conf_merge_ptr_value(gc->models, pc->models, NULL);
        ngx_conf_merge_size_value(gc->max_prompt, pc->max_prompt, 0);
        ngx_conf_merge_uint_value(gc->max_messages, pc->max_messages, 0);
        ngx_conf_merge_uint_value(gc->max_tokens, pc->max_tokens, 0);
        ngx_conf_merge_ptr_value(gc->categories, pc->categories, NULL);
        ngx_conf_merge_uint_value(gc->moderation_fail, pc->moderation_fail,
                                  1);

        if (gc->moderation.data == NULL) {
            gc->moderation = pc->moderation;
        }

    } else {
        ngx_conf_merge_ptr_value(gc->deny, NULL, NULL);
        ngx_conf_merge_ptr_value(gc->allow, NULL, NULL);
        ngx_conf_merge_ptr_value(gc->output, NULL, NULL);
        ngx_conf_merge_ptr_value(gc->params, NULL, NULL);
        ngx_conf_merge_ptr_value(gc->models, NULL, NULL);
        ngx_conf_merge_size_value(gc->max_prompt, NGX_CONF_UNSET_SIZE, 0);
        ngx_conf_merge_uint_value(gc->max_messages, NGX_CONF_UNSET_UINT, 0);
        ngx_conf_merge_uint_value(gc->max_tokens, NGX_CONF_UNSET_UINT, 0);
        ngx_conf_merge_ptr_value(gc->categories, NULL, NULL);
        ngx_conf_merge_uint_value(gc->moderation_fail, NGX_CONF_UNSET_UINT,
                                  1);
    }

    gc->request = (gc->deny || gc->allow || gc->params || gc->models
                   || gc->max_prompt || gc->max_messages || gc->max_tokens);

    /* what a stream holds back: the longest output match, less a byte */

    gc->hold = 0;

    if (gc->output) {
        pat = gc->output->elts;

        for (i = 0; i < gc->output->nelts; i++) {
            gc->hold = ngx_max(gc->hold, pat[i].max - 1);
        }
    }

    return NGX_CONF_OK;
}


/* the access step */

ngx_int_t
ngx_http_aigw_guard_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_uint_t                      i, n;
    size_t                          bytes;
    ngx_http_aigw_ctx_t            *ctx;
    ngx_http_aigw_span_t           *bad;
    ngx_http_aigw_loc_conf_t       *alcf;
    ngx_http_aigw_guard_conf_t     *gc;
    ngx_http_aigw_guard_pattern_t  *fired;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    gc = alcf->guard;

    if (gc == NULL || !gc->request) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    /* the cheap rules first: they read fields the scan found */

    if (gc->models && ngx_http_aigw_guard_models(gc, &ctx->model) != NGX_OK) {
        return ngx_http_aigw_guard_refuse(r, ctx, NGX_HTTP_AIGW_GUARD_MODEL,
                                          NULL, "The model is not allowed "
                                          "here.");
    }

    if (gc->params
        && ngx_http_aigw_guard_params(gc, &ctx->scan, &bad) != NGX_OK)
    {
        n = ngx_min((size_t) (bad->end - bad->start), 64);

        return ngx_http_aigw_guard_refuse(r, ctx, NGX_HTTP_AIGW_GUARD_PARAM,
                                          NULL, "The parameter '%*s' is "
                                          "not allowed here.", n,
                                          bad->start);
    }

    if (gc->max_tokens && ngx_http_aigw_guard_tokens(gc, &ctx->scan) != NGX_OK)
    {
        return ngx_http_aigw_guard_refuse(r, ctx,
                                          NGX_HTTP_AIGW_GUARD_MAX_TOKENS,
                                          NULL, "max_tokens is above the "
                                          "limit of %ui.", gc->max_tokens);
    }

    if (gc->max_messages && ctx->scan.messages.count > gc->max_messages) {
        return ngx_http_aigw_guard_refuse(r, ctx,
                                          NGX_HTTP_AIGW_GUARD_MAX_MESSAGES,
                                          NULL, "The request has more than "
                                          "%ui messages.", gc->max_messages);
    }

    if (gc->max_prompt) {
        bytes = 0;

        for (i = 0; i < ctx->scan.ntext && i < ctx->scan.text_size; i++) {
            bytes += ctx->scan.text[i].end - ctx->scan.text[i].start;
        }

        if (bytes > gc->max_prompt) {
            return ngx_http_aigw_guard_refuse(r, ctx,
                                              NGX_HTTP_AIGW_GUARD_MAX_PROMPT,
                                              NULL, "The prompt is larger "
                                              "than %uz bytes.",
                                              gc->max_prompt);
        }
    }

    if (gc->deny == NULL && gc->allow == NULL) {
        return NGX_OK;
    }

    rc = ngx_http_aigw_guard_text(r, ctx, gc, &fired);

    switch (rc) {

    case NGX_OK:
        return NGX_OK;

    case NGX_HTTP_AIGW_GUARD_DENY:
        return ngx_http_aigw_guard_refuse(r, ctx, NGX_HTTP_AIGW_GUARD_DENY,
                                          &fired->name, "The request was "
                                          "refused by the content policy "
                                          "(%V).", &fired->name);

    case NGX_HTTP_AIGW_GUARD_ALLOW:
        return ngx_http_aigw_guard_refuse(r, ctx, NGX_HTTP_AIGW_GUARD_ALLOW,
                                          NULL, "The request was refused "
                                          "by the content policy: it "
                                          "matches none of the allowed "
                                          "topics.");

    default:
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigw: prompt guard failed to match");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


/* the model as the client asked; "gpt-4o*" takes a prefix */

static ngx_int_t
ngx_http_aigw_guard_models(ngx_http_aigw_guard_conf_t *gc, ngx_str_t *model)
{
    size_t      len;
    ngx_str_t  *m;
    ngx_uint_t  i;

    m = gc->models->elts;

    for (i = 0; i < gc->models->nelts; i++) {
        len = m[i].len;

        if (m[i].data[len - 1] == '*') {
            if (model->len >= len - 1
                && ngx_strncmp(model->data, m[i].data, len - 1) == 0)
            {
                return NGX_OK;
            }

            continue;
        }

        if (model->len == len
            && ngx_strncmp(model->data, m[i].data, len) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* a list of parameters: the body step keeps the top-level keys for it */

ngx_uint_t
ngx_http_aigw_guard_params_on(ngx_http_request_t *r)
{
    ngx_http_aigw_loc_conf_t    *alcf;
    ngx_http_aigw_guard_conf_t  *gc;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    gc = alcf->guard;

    return gc != NULL && gc->request && gc->params != NULL;
}


/* every top-level key is one of the list; *bad is the first that is not */

static ngx_int_t
ngx_http_aigw_guard_params(ngx_http_aigw_guard_conf_t *gc,
    ngx_http_aigw_scan_t *s, ngx_http_aigw_span_t **bad)
{
    ngx_str_t   *name;
    ngx_uint_t   i, k;

    name = gc->params->elts;

    for (k = 0; k < s->nkeys; k++) {

        for (i = 0; i < gc->params->nelts; i++) {
            if (ngx_http_aigw_scan_equal(s->keys[k].start, s->keys[k].end,
                                         name[i].data, name[i].len))
            {
                break;
            }
        }

        if (i == gc->params->nelts) {
            *bad = &s->keys[k];
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* "max_tokens" and "max_completion_tokens": absent or null pass */

static ngx_int_t
ngx_http_aigw_guard_tokens(ngx_http_aigw_guard_conf_t *gc,
    ngx_http_aigw_scan_t *s)
{
    ngx_int_t               n;
    ngx_uint_t              i;
    ngx_http_aigw_field_t  *f;

    static ngx_uint_t  fields[] = {
        NGX_HTTP_AIGW_F_MAX_TOKENS,
        NGX_HTTP_AIGW_F_MAX_COMPLETION_TOKENS
    };

    for (i = 0; i < 2; i++) {
        f = &s->field[fields[i]];

        if (f->key == NULL
            || (f->end - f->start == 4
                && ngx_strncmp(f->start, "null", 4) == 0))
        {
            continue;
        }

        /* not a whole number, or one too large to read, is above */

        n = ngx_atoi(f->start, f->end - f->start);

        if (n == NGX_ERROR || (ngx_uint_t) n > gc->max_tokens) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/*
 * The deny patterns on every text span, then the allow patterns, of
 * which one must match some text.  A span with escapes is matched
 * unescaped, so that "\u0069gnore" is "ignore" to a pattern.
 */

static ngx_int_t
ngx_http_aigw_guard_text(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_guard_conf_t *gc, ngx_http_aigw_guard_pattern_t **fired)
{
    u_char                         *buf;
    size_t                          size, len;
    ngx_int_t                       rc;
    ngx_str_t                       text;
    ngx_uint_t                      i, k, allowed;
    ngx_http_aigw_span_t           *t;
    ngx_http_aigw_guard_pattern_t  *pat;

    buf = NULL;
    size = 0;
    allowed = (gc->allow == NULL);

    for (i = 0; i < ctx->scan.ntext && i < ctx->scan.text_size; i++) {
        t = &ctx->scan.text[i];
        len = t->end - t->start;

        text.data = t->start;
        text.len = len;

        if (ngx_strlchr(t->start, t->end, '\\')) {
            if (len > size) {
                size = ngx_max(len, 4096);
                buf = ngx_pnalloc(r->pool, size);
                if (buf == NULL) {
                    return NGX_ERROR;
                }
            }

            text.data = buf;
            text.len = ngx_http_aigw_scan_unescape(buf, t->start, t->end)
                       - buf;
        }

        if (gc->deny) {
            pat = gc->deny->elts;

            for (k = 0; k < gc->deny->nelts; k++) {
                rc = ngx_regex_exec(pat[k].re, &text, NULL, 0);

                if (rc >= 0) {
                    *fired = &pat[k];
                    return NGX_HTTP_AIGW_GUARD_DENY;
                }

                if (rc != NGX_REGEX_NO_MATCHED) {
                    return NGX_ERROR;
                }
            }
        }

        if (allowed) {
            continue;
        }

        pat = gc->allow->elts;

        for (k = 0; k < gc->allow->nelts; k++) {
            rc = ngx_regex_exec(pat[k].re, &text, NULL, 0);

            if (rc >= 0) {
                allowed = 1;
                break;
            }

            if (rc != NGX_REGEX_NO_MATCHED) {
                return NGX_ERROR;
            }
        }
    }

    return allowed ? NGX_OK : NGX_HTTP_AIGW_GUARD_ALLOW;
}


/*
 * A refusal: counted, logged once, named in $aigw_guard ("deny:NAME"),
 * and a 400 in the client's format.
 */

ngx_int_t
ngx_http_aigw_guard_refuse(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_uint_t reason, ngx_str_t *name, const char *fmt, ...)
{
    u_char                     *p;
    va_list                     args;
    ngx_str_t                  *rs;
    ngx_http_aigw_guard_sh_t   *sh;
    ngx_http_aigw_main_conf_t  *amcf;
    u_char                      msg[NGX_MAX_ERROR_STR];

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    if (amcf->guard && amcf->guard->data) {
        sh = amcf->guard->data;
        (void) ngx_atomic_fetch_add(&sh->count[reason], 1);
    }

    rs = &ngx_http_aigw_guard_reasons[reason];

    p = ngx_pnalloc(r->pool, rs->len + 1 + (name ? name->len : 0));
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->guard.data = p;
    p = ngx_cpymem(p, rs->data, rs->len);

    if (name) {
        *p++ = ':';
        p = ngx_cpymem(p, name->data, name->len);
    }

    ctx->guard.len = p - ctx->guard.data;

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + sizeof(msg), fmt, args);
    va_end(args);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aigw: refused by the guard: %V", &ctx->guard);

    return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST, "guard_refused",
                               "%*s", (size_t) (p - msg), msg);
}


/* $aigw_guard */

ngx_int_t
ngx_http_aigw_guard_variable(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_str_t *s)
{
    *s = ctx->guard;

    return NGX_OK;
}


/* the aigw_guard_refusals_total family, into the metrics page */

size_t
ngx_http_aigw_guard_metrics_size(ngx_http_aigw_main_conf_t *amcf)
{
    return amcf->guard ? 256 + NGX_HTTP_AIGW_GUARD_REASONS
                               * (64 + NGX_ATOMIC_T_LEN)
                       : 0;
}


u_char *
ngx_http_aigw_guard_metrics(ngx_http_aigw_main_conf_t *amcf, u_char *p,
    u_char *last)
{
    ngx_uint_t                 k;
    ngx_http_aigw_guard_sh_t  *sh;

    if (amcf->guard == NULL || amcf->guard->data == NULL) {
        return p;
    }

    sh = amcf->guard->data;

    p = ngx_slprintf(p, last,
                     "# HELP aigw_guard_refusals_total Requests and answers "
                     "the guard refused, by rule.\n"
                     "# TYPE aigw_guard_refusals_total counter\n");

    for (k = 0; k < NGX_HTTP_AIGW_GUARD_REASONS; k++) {
        p = ngx_slprintf(p, last,
                         "aigw_guard_refusals_total{rule=\"%V\"} %uA\n",
                         &ngx_http_aigw_guard_reasons[k], sh->count[k]);
    }

    return p;
}
