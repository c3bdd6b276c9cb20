
/*
 * Copyright (C) aigw authors
 */


/*
 * Requests in flight, for the audit log: a request that goes to a
 * provider takes an entry in its worker's table in the audit zone (its
 * id, tenant, model and start), and gives it back when its pool goes.
 * A worker that dies (kill -9, a crash) leaves its entries: the first
 * worker to see that its pid is gone writes an "incomplete" record for
 * each, and frees the table.  Requests that never reach the provider end
 * at once and are left out.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_audit.h"


static void ngx_http_aigw_audit_flight_end(void *data);
static ngx_int_t ngx_http_aigw_audit_flight_reap(
    ngx_http_aigw_audit_conf_t *acf, ngx_http_aigw_audit_table_t *t,
    ngx_pid_t pid, ngx_log_t *log);


/* the tables, after the ring, if the zone has room for them */

ngx_int_t
ngx_http_aigw_audit_flight_init_zone(ngx_slab_pool_t *shpool,
    ngx_http_aigw_audit_sh_t *sh)
{
    shpool->log_nomem = 0;

    sh->tables = ngx_slab_calloc(shpool, NGX_HTTP_AIGW_AUDIT_TABLES
                                 * sizeof(ngx_http_aigw_audit_table_t));

    shpool->log_nomem = 1;

    return sh->tables ? NGX_OK : NGX_DECLINED;
}


/*
 * A worker starts: the tables of dead workers reaped, one claimed for
 * its own requests.
 */

void
ngx_http_aigw_audit_flight_start(ngx_http_aigw_audit_conf_t *acf,
    ngx_log_t *log)
{
    ngx_uint_t                    i;
    ngx_http_aigw_audit_table_t  *t;

    acf->table = NULL;

    if (acf->sh->tables == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "aigw: the audit zone has no room for the requests "
                      "in flight: a worker's crash leaves no record of "
                      "them");
        return;
    }

    ngx_http_aigw_audit_flight_check(acf, log);

    for (i = 0; i < NGX_HTTP_AIGW_AUDIT_TABLES; i++) {
        t = &acf->sh->tables[i];

        if (t->pid == 0 && ngx_atomic_cmp_set(&t->pid, 0, ngx_pid)) {
            acf->table = t;
            acf->next_entry = 0;
            return;
        }
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "aigw: no free audit table of requests in flight");
}


/*
 * A worker that exits: after a graceful exit its requests have ended;
 * after "nginx -s stop" those cut are recorded as incomplete.  The table
 * is free.
 */

void
ngx_http_aigw_audit_flight_exit(ngx_http_aigw_audit_conf_t *acf,
    ngx_log_t *log)
{
    if (acf->table) {
        (void) ngx_http_aigw_audit_flight_reap(acf, acf->table, ngx_pid,
                                               log);
        (void) ngx_atomic_cmp_set(&acf->table->pid, ngx_pid, 0);
        acf->table = NULL;
    }
}


/* from the timer: tables whose worker is gone */

void
ngx_http_aigw_audit_flight_check(ngx_http_aigw_audit_conf_t *acf,
    ngx_log_t *log)
{
    ngx_pid_t                     pid;
    ngx_uint_t                    i;
    ngx_http_aigw_audit_table_t  *t;

    if (acf->sh->tables == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_AIGW_AUDIT_TABLES; i++) {
        t = &acf->sh->tables[i];
        pid = (ngx_pid_t) t->pid;

        if (pid == 0 || pid == ngx_pid
            || kill(pid, 0) == 0 || ngx_errno != NGX_ESRCH)
        {
            continue;
        }

        /* taken by this worker while it writes the records, then freed */

        if (ngx_atomic_cmp_set(&t->pid, pid, ngx_pid)) {
            (void) ngx_http_aigw_audit_flight_reap(acf, t, pid, log);
            t->pid = 0;
        }
    }
}


static ngx_int_t
ngx_http_aigw_audit_flight_reap(ngx_http_aigw_audit_conf_t *acf,
    ngx_http_aigw_audit_table_t *t, ngx_pid_t pid, ngx_log_t *log)
{
    u_char                        line[NGX_HTTP_AIGW_AUDIT_LINE];
    u_char                        leaf[32], *p;
    ngx_tm_t                      tm;
    ngx_str_t                     s;
    ngx_uint_t                    i, n, level;
    ngx_http_aigw_audit_flight_t *f;

    n = 0;

    for (i = 0; i < NGX_HTTP_AIGW_AUDIT_INFLIGHT; i++) {
        f = &t->req[i];

        if (!f->used) {
            continue;
        }

        ngx_gmtime(f->start / 1000, &tm);

        p = ngx_sprintf(line, "{\"v\":1,\"ts\":%uL", f->start);

        s.data = f->tenant;
        s.len = f->tenant_len;
        p = ngx_http_aigw_audit_string(p, line + sizeof(line), "tenant", &s);

        p = ngx_sprintf(p, ",\"time\":\"%4d-%02d-%02dT%02d:%02d:%02d.%03uLZ\"",
                        tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                        tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                        f->start % 1000);

        s.data = f->id;
        s.len = f->id_len;
        p = ngx_http_aigw_audit_string(p, line + sizeof(line), "id", &s);
        p = ngx_http_aigw_audit_string(p, line + sizeof(line), "node",
                                       &acf->node);

        s.data = f->model;
        s.len = f->model_len;
        p = ngx_http_aigw_audit_string(p, line + sizeof(line), "model", &s);

        p = ngx_sprintf(p, ",\"outcome\":\"incomplete\",\"status\":null,"
                        "\"worker\":%P,\"config\":\"%V\"}",
                        pid, &acf->config_hash);

        f->used = 0;

        if (ngx_http_aigw_audit_hash(acf->md, acf->sha256, 0x00, line,
                                     p - line, NULL, 0, leaf)
            != NGX_OK)
        {
            continue;
        }

        *p++ = '\n';

        ngx_http_aigw_audit_add(acf, line, p - line, leaf, log);
        n++;
    }

    if (n) {
        level = (pid == ngx_pid) ? NGX_LOG_NOTICE : NGX_LOG_ALERT;

        ngx_log_error(level, log, 0,
                      "aigw: worker %P is gone: %ui requests in flight "
                      "recorded as incomplete", pid, n);
    }

    return NGX_OK;
}


/* content phase: the request is in flight until its pool goes */

void
ngx_http_aigw_audit_flight_begin(ngx_http_request_t *r,
    ngx_http_aigw_ctx_t *ctx)
{
    ngx_uint_t                    i, k;
    ngx_pool_cleanup_t           *cln;
    ngx_http_aigw_audit_table_t  *t;
    ngx_http_aigw_main_conf_t    *amcf;
    ngx_http_aigw_audit_conf_t   *acf;
    ngx_http_aigw_audit_flight_t *f;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_aigw_module);
    acf = amcf->audit;

    if (acf == NULL || acf->table == NULL || r != r->main) {
        return;
    }

    t = acf->table;

    for (i = 0; i < NGX_HTTP_AIGW_AUDIT_INFLIGHT; i++) {
        k = (acf->next_entry + i) % NGX_HTTP_AIGW_AUDIT_INFLIGHT;

        if (!t->req[k].used) {
            break;
        }
    }

    if (i == NGX_HTTP_AIGW_AUDIT_INFLIGHT) {
        return;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return;
    }

    acf->next_entry = k + 1;
    f = &t->req[k];

    f->start = (uint64_t) r->start_sec * 1000 + r->start_msec;

    f->id_len = ngx_min(ctx->request_id.len, sizeof(f->id));
    ngx_memcpy(f->id, ctx->request_id.data, f->id_len);
    f->tenant_len = ngx_min(ctx->tenant.len, sizeof(f->tenant));
    ngx_memcpy(f->tenant, ctx->tenant.data, f->tenant_len);
    f->model_len = ngx_min(ctx->model.len, sizeof(f->model));
    ngx_memcpy(f->model, ctx->model.data, f->model_len);

    ngx_memory_barrier();

    f->used = 1;

    ctx->audit = f;

    cln->handler = ngx_http_aigw_audit_flight_end;
    cln->data = ctx;
}


/* the log phase: the record is in the ring, the request no more in flight */

void
ngx_http_aigw_audit_flight_done(ngx_http_aigw_ctx_t *ctx)
{
    ngx_http_aigw_audit_flight_t  *f;

    f = ctx->audit;

    if (f) {
        f->used = 0;
        ctx->audit = NULL;
    }
}


/* the request's pool goes: without a log phase (a redirect) too */

static void
ngx_http_aigw_audit_flight_end(void *data)
{
    ngx_http_aigw_audit_flight_done(data);
}
