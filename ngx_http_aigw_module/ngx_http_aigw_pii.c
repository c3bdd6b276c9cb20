
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_pii.h"


/*
 * The PII step of the access phase: the detectors run on the text spans
 * of the scan; a finding is redacted (a placeholder spliced in its
 * place), refused (400) or only counted, by the detector's mode in the
 * location.  Counters by detector and action live in a small zone of
 * their own, kept across reloads; a value is never logged.
 */


#define NGX_HTTP_AIGW_PII_FOUND        64

/* "detector" and "action" labels of a counter line, and its value */
#define NGX_HTTP_AIGW_PII_LINE                                                \
    (sizeof("aigw_pii_findings_total{detector=\"\",action=\"redact\"} \n")   \
     + NGX_HTTP_AIGW_PII_NAME + NGX_ATOMIC_T_LEN)


typedef struct {
    ngx_uint_t                     len;
    u_char                         name[NGX_HTTP_AIGW_PII_NAME + 1];
    ngx_atomic_t                   count[NGX_HTTP_AIGW_PII_ACTIONS];
} ngx_http_aigw_pii_slot_t;


typedef struct {
    ngx_uint_t                     nslots;
    ngx_http_aigw_pii_slot_t       slot[NGX_HTTP_AIGW_PII_MAX];
} ngx_http_aigw_pii_sh_t;


/* http level: the detectors, built-in then custom, and the counters */
typedef struct {
    ngx_array_t                    detectors;  /* ngx_http_aigw_pii_t */
    ngx_uint_t                     nbuiltin;
    ngx_shm_zone_t                *zone;
    ngx_http_aigw_pii_sh_t        *sh;
} ngx_http_aigw_pii_main_t;


/* one aigw_pii directive */
typedef struct {
    ngx_uint_t                     mode;
    ngx_str_t                     *names;      /* NULL: every detector */
    ngx_uint_t                     nnames;
    u_char                        *file;
    ngx_uint_t                     line;
} ngx_http_aigw_pii_rule_t;


/* a level's aigw_pii directives, and after the merge, the modes */
typedef struct {
    ngx_array_t                    rules;      /* ngx_http_aigw_pii_rule_t */
    u_char                        *modes;      /* by detector */
    ngx_uint_t                     on;         /* a detector is not off */
    ngx_uint_t                     restore;    /* aigw_pii restore */
} ngx_http_aigw_pii_conf_t;


/* a value redacted in a request, by its bytes and detector */
typedef struct {
    ngx_str_node_t                 sn;
    ngx_uint_t                     detector;
    ngx_uint_t                     number;
} ngx_http_aigw_pii_value_t;


typedef struct {
    ngx_uint_t                     count[NGX_HTTP_AIGW_PII_MAX];
    ngx_uint_t                     number[NGX_HTTP_AIGW_PII_MAX];
    ngx_rbtree_t                   values;
    ngx_rbtree_node_t              sentinel;
    ngx_str_t                      summary;    /* "email:2,card:1" */

    /* for restore: a detector's values by number - 1 */
    ngx_array_t                   *numbered[NGX_HTTP_AIGW_PII_MAX];
    ngx_uint_t                     restore;
} ngx_http_aigw_pii_ctx_t;


static ngx_http_aigw_pii_main_t *ngx_http_aigw_pii_main(ngx_conf_t *cf);
static ngx_int_t ngx_http_aigw_pii_compile(ngx_conf_t *cf,
    ngx_http_aigw_pii_t *d, ngx_str_t *pattern);
static ngx_int_t ngx_http_aigw_pii_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_aigw_pii_resolve(ngx_conf_t *cf,
    ngx_http_aigw_pii_main_t *pm, ngx_http_aigw_pii_conf_t *pc);
static ngx_int_t ngx_http_aigw_pii_redact(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx, ngx_http_aigw_pii_ctx_t *pctx,
    ngx_http_aigw_pii_t *d, ngx_http_aigw_pii_found_t *f);
static ngx_http_aigw_pii_value_t *ngx_http_aigw_pii_placeholder(
    ngx_http_aigw_pii_main_t *pm, ngx_http_aigw_pii_ctx_t *pctx, u_char *p,
    u_char *last);
static ngx_int_t ngx_http_aigw_pii_names(ngx_http_request_t *r,
    ngx_http_aigw_pii_main_t *pm, ngx_http_aigw_pii_ctx_t *pctx,
    u_char *modes, ngx_uint_t mode, ngx_str_t *out);


/* the detectors of a directive may also be named as these groups */

static const char  *ngx_http_aigw_pii_secrets[] = {
    "private_key", "aws_key", "api_key", "github_token", "jwt", "bearer",
    NULL
};


static ngx_http_aigw_pii_main_t *
ngx_http_aigw_pii_main(ngx_conf_t *cf)
{
    ngx_str_t                     name, pattern;
    ngx_http_aigw_pii_t          *d;
    ngx_http_aigw_pii_main_t     *pm;
    ngx_http_aigw_main_conf_t    *amcf;
    ngx_http_aigw_pii_builtin_t  *b;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigw_module);

    if (amcf->pii) {
        return amcf->pii;
    }

    pm = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_pii_main_t));
    if (pm == NULL) {
        return NULL;
    }

    if (ngx_array_init(&pm->detectors, cf->pool, 16,
                       sizeof(ngx_http_aigw_pii_t))
        != NGX_OK)
    {
        return NULL;
    }

    /* every pattern is compiled (and JIT-compiled) as the conf loads */

    for (b = ngx_http_aigw_pii_builtins; b->name; b++) {
        d = ngx_array_push(&pm->detectors);
        if (d == NULL) {
            return NULL;
        }

        ngx_memzero(d, sizeof(ngx_http_aigw_pii_t));

        d->name.data = (u_char *) b->name;
        d->name.len = ngx_strlen(b->name);
        d->label.data = (u_char *) b->label;
        d->label.len = ngx_strlen(b->label);
        d->anchor = b->anchor;
        d->check = b->check;
        d->digits = b->digits;
        d->capitals = b->capitals;

        if (b->need) {
            d->need.data = (u_char *) b->need;
            d->need.len = ngx_strlen(b->need);
        }

        pattern.data = (u_char *) b->pattern;
        pattern.len = ngx_strlen(b->pattern);

        if (ngx_http_aigw_pii_compile(cf, d, &pattern) != NGX_OK) {
            return NULL;
        }
    }

    pm->nbuiltin = pm->detectors.nelts;

    ngx_str_set(&name, "aigw_pii");

    pm->zone = ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize,
                                     &ngx_http_aigw_module);
    if (pm->zone == NULL) {
        return NULL;
    }

    pm->zone->init = ngx_http_aigw_pii_init_zone;
    pm->zone->data = pm;

    amcf->pii = pm;

    return pm;
}


static ngx_int_t
ngx_http_aigw_pii_compile(ngx_conf_t *cf, ngx_http_aigw_pii_t *d,
    ngx_str_t *pattern)
{
    ngx_regex_compile_t  rc;
    u_char               errstr[NGX_MAX_CONF_ERRSTR];

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern = *pattern;
    rc.pool = cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V", &rc.err);
        return NGX_ERROR;
    }

    d->re = rc.regex;

    return NGX_OK;
}


/*
 * The counters: a slot a detector name, found again by name after a
 * reload, so that they never go back; names past the slots share the
 * last one, "_other".
 */

static ngx_int_t
ngx_http_aigw_pii_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_aigw_pii_main_t  *opm = data;

    ngx_uint_t                 i, k;
    ngx_slab_pool_t           *shpool;
    ngx_http_aigw_pii_t       *d;
    ngx_http_aigw_pii_sh_t    *sh;
    ngx_http_aigw_pii_main_t  *pm;

    pm = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (opm) {
        sh = opm->sh;

    } else if (shm_zone->shm.exists) {
        sh = shpool->data;

    } else {
        sh = ngx_slab_calloc(shpool, sizeof(ngx_http_aigw_pii_sh_t));
        if (sh == NULL) {
            return NGX_ERROR;
        }

        shpool->data = sh;

        k = NGX_HTTP_AIGW_PII_MAX - 1;
        sh->slot[k].len = sizeof("_other") - 1;
        ngx_memcpy(sh->slot[k].name, "_other", sizeof("_other"));
    }

    pm->sh = sh;

    /* the master alone writes names; workers only add to counters */

    d = pm->detectors.elts;

    for (i = 0; i < pm->detectors.nelts; i++) {

        for (k = 0; k < sh->nslots; k++) {
            if (sh->slot[k].len == d[i].name.len
                && ngx_strncmp(sh->slot[k].name, d[i].name.data,
                               d[i].name.len)
                   == 0)
            {
                break;
            }
        }

        if (k == sh->nslots) {
            if (k == NGX_HTTP_AIGW_PII_MAX - 1) {
                d[i].slot = k;
                continue;
            }

            sh->slot[k].len = d[i].name.len;
            ngx_memcpy(sh->slot[k].name, d[i].name.data, d[i].name.len);
            sh->nslots++;
        }

        d[i].slot = k;
    }

    return NGX_OK;
}


/* aigw_pii_pattern NAME REGEX; */

char *
ngx_http_aigw_pii_pattern(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                    *p;
    ngx_str_t                 *value;
    ngx_uint_t                 i;
    ngx_http_aigw_pii_t       *d;
    ngx_http_aigw_pii_main_t  *pm;

    value = cf->args->elts;

    pm = ngx_http_aigw_pii_main(cf);
    if (pm == NULL) {
        return NGX_CONF_ERROR;
    }

    if (value[1].len == 0 || value[1].len > NGX_HTTP_AIGW_PII_NAME) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid PII pattern name \"%V\": 1 to %d "
                           "bytes", &value[1], NGX_HTTP_AIGW_PII_NAME);
        return NGX_CONF_ERROR;
    }

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
              || *p == '_'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid PII pattern name \"%V\": lowercase "
                               "letters, digits and \"_\" only", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    d = pm->detectors.elts;

    for (i = 0; i < pm->detectors.nelts; i++) {
        if (d[i].name.len == value[1].len
            && ngx_strncmp(d[i].name.data, value[1].data, value[1].len) == 0)
        {
            return "is duplicate";
        }
    }

    if ((value[1].len == sizeof("secret") - 1
         && ngx_strncmp(value[1].data, "secret", value[1].len) == 0)
        || (value[1].len == sizeof("off") - 1
            && ngx_strncmp(value[1].data, "off", value[1].len) == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid PII pattern name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (pm->detectors.nelts == NGX_HTTP_AIGW_PII_MAX - 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many PII patterns (at most %d)",
                           NGX_HTTP_AIGW_PII_MAX - 1 - pm->nbuiltin);
        return NGX_CONF_ERROR;
    }

    if (value[2].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty PII pattern \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    d = ngx_array_push(&pm->detectors);
    if (d == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(d, sizeof(ngx_http_aigw_pii_t));

    d->name = value[1];
    d->custom = 1;

    d->label.len = value[1].len;
    d->label.data = ngx_pnalloc(cf->pool, value[1].len);
    if (d->label.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(d->label.data, value[1].data, value[1].len);

    for (p = d->label.data; p < d->label.data + d->label.len; p++) {
        *p = ngx_toupper(*p);
    }

    if (ngx_http_aigw_pii_compile(cf, d, &value[2]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* aigw_pii off | log | redact | block [DETECTOR ...]; aigw_pii restore; */

char *
ngx_http_aigw_pii(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigw_loc_conf_t *alcf = conf;

    ngx_str_t                 *value;
    ngx_uint_t                 mode;
    ngx_http_aigw_pii_conf_t  *pc;
    ngx_http_aigw_pii_rule_t  *rule;

    value = cf->args->elts;
    mode = NGX_HTTP_AIGW_PII_OFF;

    if (ngx_strcmp(value[1].data, "restore") == 0) {
        if (cf->args->nelts > 2) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\": \"restore\" "
                               "takes no detectors", &value[2]);
            return NGX_CONF_ERROR;
        }

    } else if (ngx_strcmp(value[1].data, "off") == 0) {
        mode = NGX_HTTP_AIGW_PII_OFF;

    } else if (ngx_strcmp(value[1].data, "log") == 0) {
        mode = NGX_HTTP_AIGW_PII_LOG;

    } else if (ngx_strcmp(value[1].data, "redact") == 0) {
        mode = NGX_HTTP_AIGW_PII_REDACT;

    } else if (ngx_strcmp(value[1].data, "block") == 0) {
        mode = NGX_HTTP_AIGW_PII_BLOCK;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigw_pii_main(cf) == NULL) {
        return NGX_CONF_ERROR;
    }

    pc = alcf->pii;

    if (pc == NULL) {
        pc = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_pii_conf_t));
        if (pc == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_array_init(&pc->rules, cf->pool, 2,
                           sizeof(ngx_http_aigw_pii_rule_t))
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        alcf->pii = pc;
    }

    if (ngx_strcmp(value[1].data, "restore") == 0) {
        pc->restore = 1;
        return NGX_CONF_OK;
    }

    rule = ngx_array_push(&pc->rules);
    if (rule == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the names are checked at the merge: patterns may come later */

    rule->mode = mode;
    rule->names = NULL;
    rule->nnames = cf->args->nelts - 2;

    if (rule->nnames) {
        /* cf->args is the next directive's too */
        rule->names = ngx_palloc(cf->pool, rule->nnames * sizeof(ngx_str_t));
        if (rule->names == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(rule->names, &value[2], rule->nnames * sizeof(ngx_str_t));
    }
    rule->file = cf->conf_file->file.name.data;
    rule->line = cf->conf_file->line;

    return NGX_CONF_OK;
}


/* a level without aigw_pii has its parent's */

char *
ngx_http_aigw_pii_merge(ngx_conf_t *cf, ngx_http_aigw_loc_conf_t *prev,
    ngx_http_aigw_loc_conf_t *conf)
{
    ngx_http_aigw_pii_conf_t   *pc;
    ngx_http_aigw_main_conf_t  *amcf;

    if (conf->pii == NULL) {
        conf->pii = prev->pii;
    }

    pc = conf->pii;

    if (pc == NULL || pc->modes) {
        return NGX_CONF_OK;
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigw_module);

    if (ngx_http_aigw_pii_resolve(cf, amcf->pii, pc) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* a level's rules in order: each sets the mode of the detectors it names */

static ngx_int_t
ngx_http_aigw_pii_resolve(ngx_conf_t *cf, ngx_http_aigw_pii_main_t *pm,
    ngx_http_aigw_pii_conf_t *pc)
{
    ngx_str_t                 *name;
    ngx_uint_t                 i, j, k, s, found;
    ngx_http_aigw_pii_t       *d;
    ngx_http_aigw_pii_rule_t  *rule;

    pc->modes = ngx_pcalloc(cf->pool, NGX_HTTP_AIGW_PII_MAX);
    if (pc->modes == NULL) {
        return NGX_ERROR;
    }

    d = pm->detectors.elts;
    rule = pc->rules.elts;

    for (i = 0; i < pc->rules.nelts; i++) {

        if (rule[i].names == NULL) {
            ngx_memset(pc->modes, rule[i].mode, pm->detectors.nelts);
            continue;
        }

        for (j = 0; j < rule[i].nnames; j++) {
            name = &rule[i].names[j];
            found = 0;

            for (k = 0; k < pm->detectors.nelts; k++) {
                if (d[k].name.len == name->len
                    && ngx_strncmp(d[k].name.data, name->data, name->len)
                       == 0)
                {
                    pc->modes[k] = (u_char) rule[i].mode;
                    found = 1;
                }

                if (name->len != sizeof("secret") - 1
                    || ngx_strncmp(name->data, "secret", name->len) != 0)
                {
                    continue;
                }

                for (s = 0; ngx_http_aigw_pii_secrets[s]; s++) {
                    if (ngx_strlen(ngx_http_aigw_pii_secrets[s])
                        == d[k].name.len
                        && ngx_strncmp(d[k].name.data,
                                       ngx_http_aigw_pii_secrets[s],
                                       d[k].name.len)
                           == 0)
                    {
                        pc->modes[k] = (u_char) rule[i].mode;
                        found = 1;
                    }
                }
            }

            if (!found) {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "unknown PII detector \"%V\" in %s:%ui",
                              name, rule[i].file, rule[i].line);
                return NGX_ERROR;
            }
        }
    }

    for (k = 0; k < pm->detectors.nelts; k++) {
        if (pc->modes[k] != NGX_HTTP_AIGW_PII_OFF) {
            pc->on = 1;
        }
    }

    return NGX_OK;
}


/* the access step */

ngx_int_t
ngx_http_aigw_pii_handler(ngx_http_request_t *r)
{
    ngx_int_t                   n;
    ngx_str_t                   blocked;
    ngx_uint_t                  i, k, size, block, any;
    ngx_atomic_t               *counter;
    ngx_http_aigw_ctx_t        *ctx;
    ngx_http_aigw_span_t       *t;
    ngx_http_aigw_pii_t        *det;
    ngx_http_aigw_pii_ctx_t    *pctx;
    ngx_http_aigw_pii_conf_t   *pc;
    ngx_http_aigw_pii_main_t   *pm;
    ngx_http_aigw_loc_conf_t   *alcf;
    ngx_http_aigw_pii_found_t  *found;
    ngx_http_aigw_main_conf_t  *amcf;

    static pcre2_match_data    *md;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigw_module);
    pc = alcf->pii;

    if (pc == NULL || !pc->on) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigw_module);

    if (ctx->scan.ntext == 0) {
        return NGX_DECLINED;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    pm = amcf->pii;
    det = pm->detectors.elts;

    if (md == NULL) {
        /* one a process, as nginx's own ngx_regex_exec() has */
        md = pcre2_match_data_create(1, NULL);
        if (md == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    pctx = ngx_pcalloc(r->pool, sizeof(ngx_http_aigw_pii_ctx_t));
    if (pctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_rbtree_init(&pctx->values, &pctx->sentinel,
                    ngx_str_rbtree_insert_value);

    ctx->pii = pctx;
    pctx->restore = pc->restore;

    size = NGX_HTTP_AIGW_PII_FOUND;
    found = ngx_palloc(r->pool, size * sizeof(ngx_http_aigw_pii_found_t));
    if (found == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    block = 0;
    any = 0;

    for (i = 0; i < ctx->scan.ntext && i < ctx->scan.text_size; i++) {
        t = &ctx->scan.text[i];

        for ( ;; ) {
            n = ngx_http_aigw_pii_find(det, pm->detectors.nelts, pc->modes,
                                       md, t->start, t->end, found, size);

            if (n == NGX_ERROR) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "aigw: PII scan failed");
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            if ((ngx_uint_t) n <= size) {
                break;
            }

            size = n;
            found = ngx_palloc(r->pool,
                               size * sizeof(ngx_http_aigw_pii_found_t));
            if (found == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

        for (k = 0; k < (ngx_uint_t) n; k++) {
            pctx->count[found[k].detector]++;
            any = 1;

            switch (pc->modes[found[k].detector]) {

            case NGX_HTTP_AIGW_PII_BLOCK:
                block = 1;
                break;

            case NGX_HTTP_AIGW_PII_REDACT:
                if (!block
                    && ngx_http_aigw_pii_redact(r, ctx, pctx,
                                                &det[found[k].detector],
                                                &found[k])
                       != NGX_OK)
                {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }

                break;
            }
        }
    }

    if (!any) {
        return NGX_OK;
    }

    /* counted by the action each detector's mode takes */

    if (pm->sh) {
        for (k = 0; k < pm->detectors.nelts; k++) {
            if (pctx->count[k]) {
                counter = &pm->sh->slot[det[k].slot]
                              .count[pc->modes[k] - 1];
                (void) ngx_atomic_fetch_add(counter, pctx->count[k]);
            }
        }
    }

    if (ngx_http_aigw_pii_names(r, pm, pctx, pc->modes, 0, &pctx->summary)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aigw: personal data found: %V", &pctx->summary);

    if (!block) {
        return NGX_OK;
    }

    if (ngx_http_aigw_pii_names(r, pm, pctx, pc->modes,
                                NGX_HTTP_AIGW_PII_BLOCK, &blocked)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aigw: request refused: personal data (%V)", &blocked);

    return ngx_http_aigw_error(r, ctx, NGX_HTTP_BAD_REQUEST, "pii_detected",
                               "The request was refused: its text holds "
                               "personal data or secrets (%V).", &blocked);
}


/* a finding replaced by its placeholder, "[EMAIL_1]" */

static ngx_int_t
ngx_http_aigw_pii_redact(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_http_aigw_pii_ctx_t *pctx, ngx_http_aigw_pii_t *d,
    ngx_http_aigw_pii_found_t *f)
{
    uint32_t                    hash;
    ngx_str_t                   value, text;
    ngx_http_aigw_pii_value_t  *v, **vp;

    value.data = f->start;
    value.len = f->end - f->start;

    /* the detector in the hash: equal bytes of two detectors differ */
    hash = ngx_crc32_short(value.data, value.len) + (uint32_t) f->detector;

    v = (ngx_http_aigw_pii_value_t *)
            ngx_str_rbtree_lookup(&pctx->values, &value, hash);

    if (v == NULL) {
        v = ngx_palloc(r->pool, sizeof(ngx_http_aigw_pii_value_t));
        if (v == NULL) {
            return NGX_ERROR;
        }

        v->sn.node.key = hash;
        v->sn.str = value;
        v->detector = f->detector;
        v->number = ++pctx->number[f->detector];

        ngx_rbtree_insert(&pctx->values, &v->sn.node);

        if (pctx->restore) {
            if (pctx->numbered[f->detector] == NULL) {
                pctx->numbered[f->detector] =
                    ngx_array_create(r->pool, 4,
                                     sizeof(ngx_http_aigw_pii_value_t *));
                if (pctx->numbered[f->detector] == NULL) {
                    return NGX_ERROR;
                }
            }

            vp = ngx_array_push(pctx->numbered[f->detector]);
            if (vp == NULL) {
                return NGX_ERROR;
            }

            *vp = v;
        }
    }

    text.data = ngx_pnalloc(r->pool,
                            sizeof("[_]") - 1 + d->label.len + NGX_INT_T_LEN);
    if (text.data == NULL) {
        return NGX_ERROR;
    }

    text.len = ngx_sprintf(text.data, "[%V_%ui]", &d->label, v->number)
               - text.data;

    return ngx_http_aigw_body_splice(r, ctx, f->start, f->end, &text);
}


/*
 * aigw_pii restore: the placeholders of a held JSON answer, b from pos
 * and of Content-Length bytes, put back for the client.  A value is
 * the client's bytes, JSON-escaped as they were in a string of the
 * request, so the answer stays valid JSON: a placeholder is found in a
 * string only, as the answer was checked to be JSON.
 */

ngx_int_t
ngx_http_aigw_pii_restore(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_buf_t *b)
{
    u_char                     *p, *q, *last, *dst;
    size_t                      len;
    ngx_uint_t                  n;
    ngx_http_upstream_t        *u;
    ngx_http_aigw_pii_ctx_t    *pctx;
    ngx_http_aigw_pii_main_t   *pm;
    ngx_http_aigw_pii_value_t  *v;
    ngx_http_aigw_main_conf_t  *amcf;

    pctx = ctx->pii;

    if (pctx == NULL || !pctx->restore
        || pctx->values.root == pctx->values.sentinel)
    {
        return NGX_OK;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    pm = amcf->pii;
    u = r->upstream;

    last = b->pos + u->headers_in.content_length_n;
    len = last - b->pos;
    n = 0;

    for (p = b->pos; (p = memchr(p, '[', last - p)) != NULL; p++) {
        v = ngx_http_aigw_pii_placeholder(pm, pctx, p, last);

        if (v) {
            q = memchr(p, ']', last - p);
            len += v->sn.str.len - (q + 1 - p);
            n++;
        }
    }

    if (n == 0) {
        return NGX_OK;
    }

    dst = ngx_pnalloc(r->pool, len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    b->start = dst;

    for (p = b->pos; p < last; /* void */ ) {
        q = memchr(p, '[', last - p);

        if (q == NULL) {
            dst = ngx_cpymem(dst, p, last - p);
            break;
        }

        dst = ngx_cpymem(dst, p, q - p);
        p = q;

        v = ngx_http_aigw_pii_placeholder(pm, pctx, p, last);

        if (v == NULL) {
            *dst++ = *p++;
            continue;
        }

        dst = ngx_cpymem(dst, v->sn.str.data, v->sn.str.len);
        p = (u_char *) memchr(p, ']', last - p) + 1;
    }

    b->pos = b->start;
    b->last = dst;
    b->end = dst;

    u->headers_in.content_length_n = len;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigw: %ui placeholders restored", n);

    return NGX_OK;
}


/* a stream's placeholders are restored: aigw_pii restore, values known */

ngx_uint_t
ngx_http_aigw_pii_restoring(ngx_http_aigw_ctx_t *ctx)
{
    ngx_http_aigw_pii_ctx_t  *pctx;

    pctx = ctx->pii;

    return pctx && pctx->restore
           && pctx->values.root != pctx->values.sentinel;
}


/* the client's bytes for the placeholder at p ('['), or NULL */

ngx_str_t *
ngx_http_aigw_pii_value(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    u_char *p, u_char *last)
{
    ngx_http_aigw_pii_value_t  *v;
    ngx_http_aigw_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);

    v = ngx_http_aigw_pii_placeholder(amcf->pii, ctx->pii, p, last);

    return v ? &v->sn.str : NULL;
}


/* the value of a placeholder "[LABEL_N]" at p, if it is one */

static ngx_http_aigw_pii_value_t *
ngx_http_aigw_pii_placeholder(ngx_http_aigw_pii_main_t *pm,
    ngx_http_aigw_pii_ctx_t *pctx, u_char *p, u_char *last)
{
    u_char               *q, *us;
    ngx_int_t             number;
    ngx_uint_t            k;
    ngx_http_aigw_pii_t  *d;

    us = NULL;

    if ((size_t) (last - p) > NGX_HTTP_AIGW_PII_NAME + NGX_INT_T_LEN + 3) {
        last = p + NGX_HTTP_AIGW_PII_NAME + NGX_INT_T_LEN + 3;
    }

    for (q = p + 1; q < last; q++) {
        if (*q == ']') {
            break;
        }

        if (*q == '_') {
            us = q;

        } else if (!((*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9'))) {
            return NULL;
        }
    }

    if (q == last || *q != ']' || us == NULL || us == p + 1 || us + 1 == q) {
        return NULL;
    }

    number = ngx_atoi(us + 1, q - us - 1);

    if (number <= 0) {
        return NULL;
    }

    d = pm->detectors.elts;

    for (k = 0; k < pm->detectors.nelts; k++) {
        if (pctx->numbered[k] == NULL
            || (size_t) (us - p - 1) != d[k].label.len
            || ngx_strncmp(p + 1, d[k].label.data, d[k].label.len) != 0)
        {
            continue;
        }

        if ((ngx_uint_t) number > pctx->numbered[k]->nelts) {
            return NULL;
        }

        return ((ngx_http_aigw_pii_value_t **)
                   pctx->numbered[k]->elts)[number - 1];
    }

    return NULL;
}


/* "email:2,card:1": the counts of the detectors in mode (0: any) */

static ngx_int_t
ngx_http_aigw_pii_names(ngx_http_request_t *r, ngx_http_aigw_pii_main_t *pm,
    ngx_http_aigw_pii_ctx_t *pctx, u_char *modes, ngx_uint_t mode,
    ngx_str_t *out)
{
    u_char               *p;
    size_t                len;
    ngx_uint_t            k;
    ngx_http_aigw_pii_t  *d;

    d = pm->detectors.elts;
    len = 0;

    for (k = 0; k < pm->detectors.nelts; k++) {
        if (pctx->count[k] && (mode == 0 || modes[k] == mode)) {
            len += d[k].name.len + 2 + NGX_INT_T_LEN;
        }
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    for (k = 0; k < pm->detectors.nelts; k++) {
        if (!pctx->count[k] || (mode && modes[k] != mode)) {
            continue;
        }

        if (p != out->data) {
            *p++ = (u_char) (mode ? ' ' : ',');
        }

        if (mode) {
            p = ngx_cpymem(p, d[k].name.data, d[k].name.len);

        } else {
            p = ngx_sprintf(p, "%V:%ui", &d[k].name, pctx->count[k]);
        }
    }

    out->len = p - out->data;

    return NGX_OK;
}


/* $aigw_pii */

ngx_int_t
ngx_http_aigw_pii_variable(ngx_http_request_t *r, ngx_http_aigw_ctx_t *ctx,
    ngx_str_t *s)
{
    ngx_http_aigw_pii_ctx_t  *pctx;

    pctx = ctx->pii;

    if (pctx) {
        *s = pctx->summary;
    }

    return NGX_OK;
}


/* the aigw_pii_findings_total family, into the metrics page */

size_t
ngx_http_aigw_pii_metrics_size(ngx_http_aigw_main_conf_t *amcf)
{
    return amcf->pii ? 512 + NGX_HTTP_AIGW_PII_MAX
                             * NGX_HTTP_AIGW_PII_ACTIONS
                             * NGX_HTTP_AIGW_PII_LINE
                     : 0;
}


u_char *
ngx_http_aigw_pii_metrics(ngx_http_aigw_main_conf_t *amcf, u_char *p,
    u_char *last)
{
    ngx_uint_t                 k, a, n;
    ngx_http_aigw_pii_sh_t    *sh;
    ngx_http_aigw_pii_main_t  *pm;

    static const char  *actions[] = { "log", "redact", "block" };

    pm = amcf->pii;

    if (pm == NULL || pm->sh == NULL) {
        return p;
    }

    sh = pm->sh;

    p = ngx_slprintf(p, last,
                     "# HELP aigw_pii_findings_total Personal data and "
                     "secrets found in requests, by detector and the "
                     "action of its mode.\n"
                     "# TYPE aigw_pii_findings_total counter\n");

    n = sh->nslots;

    for (k = 0; k < NGX_HTTP_AIGW_PII_MAX; k++) {

        if (k >= n && k != NGX_HTTP_AIGW_PII_MAX - 1) {
            continue;
        }

        for (a = 0; a < NGX_HTTP_AIGW_PII_ACTIONS; a++) {
            if (k == NGX_HTTP_AIGW_PII_MAX - 1 && sh->slot[k].count[a] == 0) {
                continue;
            }

            p = ngx_slprintf(p, last,
                             "aigw_pii_findings_total{detector=\"%*s\","
                             "action=\"%s\"} %uA\n",
                             sh->slot[k].len, sh->slot[k].name, actions[a],
                             sh->slot[k].count[a]);
        }
    }

    return p;
}
