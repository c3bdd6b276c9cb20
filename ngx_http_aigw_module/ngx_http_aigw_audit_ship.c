
/*
 * Copyright (C) aigw authors
 */


/*
 * aigw_audit ... redis=on: the records on disk shipped to Redis Streams,
 * one stream a tenant, through the hiredis adapter (redis.c).  The
 * segments are the spool: a record is read back from its segment once a
 * checkpoint covers it (so it is synced), never taken from the ring, and
 * while Redis is down nothing moves but the cursor's wait.
 *
 * One worker ships at a time (its pid in the zone, as the writer's).  A
 * step: a task in the audit thread pool reads at most
 * NGX_HTTP_AIGW_AUDIT_SHIP_MAX records from where the cursor is, then the
 * event loop hands them to one script (EVALSHA) that adds them, and the
 * checkpoint when the batch reaches it.  The script knows how many
 * records of the origin Redis holds, and skips those it has: a batch sent
 * again after a timeout (Redis did it, the answer was late) adds nothing
 * twice.  When Redis holds fewer than the cursor says (it lost them), the
 * cursor goes back and the spool ships them again.
 *
 * Keys, P = "aigw:audit:" origin ":":
 *   P "tenant:" T   a stream: entries "seq" (the leaf number), "hash"
 *                   (the leaf hash's first 8 bytes, hex, by which verify
 *                   names an edited record, as the index does) and "line"
 *                   (the record byte for byte, without its newline), of
 *                   ID ts-(seq+1), ts the record's, never below the one
 *                   before it
 *   P "tenants"     a set: the tenants with a stream
 *   P "size"        the records shipped, leaves 0 to size - 1
 *   P "checkpoint"  the latest signed checkpoint shipped
 *   P "gaps"        a list "from-to" of leaves never shipped (dropped by
 *                   retention before Redis had them)
 *
 * No MAXLEN: a trimmed stream is a log with records missing, which
 * verify must refuse; Redis is sized for the retention wanted, and
 * trimmed, if at all, by the operator, knowingly.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_audit.h"


#if (NGX_THREADS)

#define NGX_HTTP_AIGW_AUDIT_SHIP_MAX     256      /* records a step */
#define NGX_HTTP_AIGW_AUDIT_SHIP_BUF     (NGX_HTTP_AIGW_AUDIT_SHIP_MAX   \
                                          * NGX_HTTP_AIGW_AUDIT_LINE)
#define NGX_HTTP_AIGW_AUDIT_SHIP_CP      1024     /* a checkpoint's bytes */
#define NGX_HTTP_AIGW_AUDIT_SHIP_ARGS    5        /* before the records */
#define NGX_HTTP_AIGW_AUDIT_SHIP_QUIET   10       /* s between error lines */


typedef struct {
    ngx_http_aigw_audit_conf_t    *acf;
    ngx_http_aigw_redis_t         *redis;
    ngx_http_aigw_redis_script_t  *script;
    ngx_str_t                      prefix;     /* "aigw:audit:ORIGIN:" */

    /* the worker's */
    ngx_thread_pool_t             *pool;
    ngx_thread_task_t             *task;
    u_char                        *buf;        /* the lines read */
    u_char                        *hashes;     /* 16 hex digits each */
    EVP_MD_CTX                    *md;
    ngx_str_t                     *argv;
    ngx_uint_t                     argc;
    uint64_t                       first;      /* the batch's first leaf */
    ngx_uint_t                     nrec;
    ngx_uint_t                     segment;    /* the cursor past it */
    off_t                          offset;
    ngx_uint_t                     gap;        /* records before: gone */
    u_char                         cp[NGX_HTTP_AIGW_AUDIT_SHIP_CP];
    size_t                         cp_len;     /* 0: not in this batch */
    u_char                         first_text[NGX_INT64_LEN];
    ngx_int_t                      rc;
    void                          *cmd;
    time_t                         retry;
    time_t                         log_next;
    unsigned                       posted:1;
    unsigned                       waiting:1;  /* Redis's answer */
} ngx_http_aigw_audit_ship_t;


static void ngx_http_aigw_audit_ship_handler(void *data, ngx_log_t *log);
static void ngx_http_aigw_audit_ship_read_done(ngx_event_t *ev);
static void ngx_http_aigw_audit_ship_reply(void *data, redisReply *reply,
    ngx_int_t rc);
static void ngx_http_aigw_audit_ship_end(ngx_http_aigw_audit_ship_t *sp);
static ngx_int_t ngx_http_aigw_audit_ship_cursor(
    ngx_http_aigw_audit_ship_t *sp, ngx_log_t *log);
static ngx_int_t ngx_http_aigw_audit_ship_locate(
    ngx_http_aigw_audit_ship_t *sp, ngx_log_t *log);
static ngx_int_t ngx_http_aigw_audit_ship_save(ngx_http_aigw_audit_ship_t *sp,
    ngx_log_t *log);
static ssize_t ngx_http_aigw_audit_ship_file(ngx_http_aigw_audit_conf_t *acf,
    u_char *name, u_char *buf, size_t size, off_t offset, ngx_log_t *log);
static ngx_int_t ngx_http_aigw_audit_ship_read(ngx_http_aigw_audit_ship_t *sp,
    uint64_t limit, ngx_log_t *log);
static void ngx_http_aigw_audit_ship_error(ngx_http_aigw_audit_ship_t *sp,
    ngx_uint_t level, const char *fmt, ngx_str_t *what);


/*
 * ARGV: prefix, first leaf, checkpoint ("": none), "1" when the leaves
 * before the first are gone for good, "", then tenant, ts, leaf hash (its
 * first 8 bytes, hex, as in the index) and line of each record.  Returns
 * how many records Redis holds after it.
 */

static ngx_str_t  ngx_http_aigw_audit_ship_lua = ngx_string(
    "local p = ARGV[1]\n"
    "local first = tonumber(ARGV[2])\n"
    "local have = tonumber(redis.call('GET', p .. 'size') or '0')\n"
    "if first > have then\n"
    "  if ARGV[4] ~= '1' then return have end\n"
    "  redis.call('RPUSH', p .. 'gaps',\n"
    "             string.format('%.0f-%.0f', have, first - 1))\n"
    "  have = first\n"
    "end\n"
    "local last = {}\n"
    "local n = first\n"
    "for i = 6, #ARGV, 4 do\n"
    "  if n >= have then\n"
    "    local t = ARGV[i]\n"
    "    local k = p .. 'tenant:' .. t\n"
    "    local ms = tonumber(ARGV[i + 1]) or 0\n"
    "    local prev = last[t]\n"
    "    if prev == nil then\n"
    "      prev = 0\n"
    "      local e = redis.call('XREVRANGE', k, '+', '-', 'COUNT', 1)\n"
    "      if e[1] then\n"
    "        prev = tonumber(string.match(e[1][1], '^%d+')) or 0\n"
    "      else\n"
    "        redis.call('SADD', p .. 'tenants', t)\n"
    "      end\n"
    "    end\n"
    "    if ms < prev then ms = prev end\n"
    "    last[t] = ms\n"
    "    redis.call('XADD', k, string.format('%.0f-%.0f', ms, n + 1),\n"
    "               'seq', string.format('%.0f', n), 'hash', ARGV[i + 2],\n"
    "               'line', ARGV[i + 3])\n"
    "  end\n"
    "  n = n + 1\n"
    "end\n"
    "if n >= have then\n"
    "  redis.call('SET', p .. 'size', string.format('%.0f', n))\n"
    "  if ARGV[3] ~= '' then redis.call('SET', p .. 'checkpoint', ARGV[3])"
    " end\n"
    "  return n\n"
    "end\n"
    "return have\n");


/* redis=on: from the http block's init, when aigw_redis is known */

char *
ngx_http_aigw_audit_ship_init(ngx_conf_t *cf,
    ngx_http_aigw_audit_conf_t *acf, ngx_http_aigw_redis_t *redis)
{
    ngx_http_aigw_audit_ship_t  *sp;

    if (!acf->redis) {
        return NGX_CONF_OK;
    }

    if (redis == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"aigw_audit\" with \"redis=on\" needs "
                           "\"aigw_redis\" in the http block");
        return NGX_CONF_ERROR;
    }

    sp = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_audit_ship_t));
    if (sp == NULL) {
        return NGX_CONF_ERROR;
    }

    sp->acf = acf;
    sp->redis = redis;
    sp->script = ngx_http_aigw_redis_script(cf, redis,
                                            &ngx_http_aigw_audit_ship_lua);
    if (sp->script == NULL) {
        return NGX_CONF_ERROR;
    }

    sp->prefix.len = sizeof("aigw:audit::") - 1 + acf->origin.len;
    sp->prefix.data = ngx_pnalloc(cf->pool, sp->prefix.len);
    if (sp->prefix.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(sp->prefix.data, "aigw:audit:%V:", &acf->origin);

    acf->ship = sp;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_aigw_audit_ship_init_process(ngx_cycle_t *cycle,
    ngx_http_aigw_audit_conf_t *acf)
{
    ngx_http_aigw_audit_ship_t  *sp;

    sp = acf->ship;

    if (sp == NULL) {
        return NGX_OK;
    }

    sp->pool = ngx_thread_pool_get(cycle, &acf->thread_pool);
    sp->task = ngx_thread_task_alloc(cycle->pool, 0);
    sp->buf = ngx_palloc(cycle->pool, NGX_HTTP_AIGW_AUDIT_SHIP_BUF);
    sp->argv = ngx_palloc(cycle->pool,
                          (NGX_HTTP_AIGW_AUDIT_SHIP_ARGS
                           + 4 * NGX_HTTP_AIGW_AUDIT_SHIP_MAX)
                          * sizeof(ngx_str_t));
    sp->hashes = ngx_palloc(cycle->pool, 16 * NGX_HTTP_AIGW_AUDIT_SHIP_MAX);
    sp->md = EVP_MD_CTX_new();

    if (sp->pool == NULL || sp->task == NULL || sp->buf == NULL
        || sp->argv == NULL || sp->hashes == NULL || sp->md == NULL)
    {
        return NGX_ERROR;
    }

    sp->task->handler = ngx_http_aigw_audit_ship_handler;
    sp->task->ctx = sp;
    sp->task->event.handler = ngx_http_aigw_audit_ship_read_done;
    sp->task->event.data = sp;

    return NGX_OK;
}


/* the shipper's role: free, or held by a worker that is gone */

static ngx_int_t
ngx_http_aigw_audit_ship_lock(ngx_http_aigw_audit_ship_sh_t *ss)
{
    ngx_pid_t  pid;

    pid = (ngx_pid_t) ss->pid;

    if (pid == ngx_pid) {
        return NGX_OK;
    }

    if (pid != 0 && (kill(pid, 0) == 0 || ngx_errno != NGX_ESRCH)) {
        return NGX_BUSY;
    }

    if (ngx_atomic_cmp_set(&ss->pid, pid, ngx_pid)) {
        return NGX_OK;
    }

    return NGX_BUSY;
}


/* a step, from the audit timer: records past the cursor, if any */

void
ngx_http_aigw_audit_ship_kick(ngx_http_aigw_audit_conf_t *acf)
{
    ngx_http_aigw_audit_sh_t       *sh;
    ngx_http_aigw_audit_ship_t     *sp;
    ngx_http_aigw_audit_ship_sh_t  *ss;

    sp = acf->ship;
    sh = acf->sh;

    if (sp == NULL || sp->task == NULL || sh == NULL || sp->posted
        || sp->waiting || sp->retry > ngx_time() || ngx_exiting)
    {
        return;
    }

    ss = &sh->ship;

    /* a hint only, read without the lock: the task reads the truth */

    if (!sh->loaded
        || (ss->loaded && !ss->rewind && ss->leaf >= sh->tree.size
            && ss->saved == ss->leaf))
    {
        return;
    }

    if (ngx_http_aigw_audit_ship_lock(ss) != NGX_OK) {
        return;
    }

    if (ngx_thread_task_post(sp->pool, sp->task) != NGX_OK) {
        (void) ngx_atomic_cmp_set(&ss->pid, ngx_pid, 0);
        return;
    }

    sp->posted = 1;
}


/* in the thread pool: the cursor, the "shipped" file, the batch */

static void
ngx_http_aigw_audit_ship_handler(void *data, ngx_log_t *log)
{
    ngx_http_aigw_audit_ship_t *sp = data;

    u_char                         *p, *last;
    ssize_t                         n;
    uint64_t                        size;
    ngx_http_aigw_audit_ship_sh_t  *ss;

    ss = &sp->acf->sh->ship;

    sp->nrec = 0;
    sp->cp_len = 0;
    sp->gap = 0;

    sp->rc = ngx_http_aigw_audit_ship_cursor(sp, log);
    if (sp->rc != NGX_OK) {
        return;
    }

    if (ss->saved != ss->leaf) {
        (void) ngx_http_aigw_audit_ship_save(sp, log);
    }

    /* as far as the checkpoint: what it covers is synced */

    n = ngx_http_aigw_audit_ship_file(sp->acf, (u_char *) "checkpoint",
                                      sp->cp, NGX_HTTP_AIGW_AUDIT_SHIP_CP, 0,
                                      log);
    if (n <= 0 || n == NGX_HTTP_AIGW_AUDIT_SHIP_CP) {
        sp->rc = NGX_DECLINED;
        return;
    }

    p = ngx_strlchr(sp->cp, sp->cp + n, '\n');
    if (p == NULL) {
        sp->rc = NGX_ERROR;
        return;
    }

    last = ngx_strlchr(p + 1, sp->cp + n, '\n');
    if (last == NULL) {
        sp->rc = NGX_ERROR;
        return;
    }

    size = 0;

    for (p++; p < last && *p >= '0' && *p <= '9'; p++) {
        size = size * 10 + (*p - '0');
    }

    if (ss->leaf >= size) {
        sp->rc = NGX_OK;
        return;
    }

    sp->rc = ngx_http_aigw_audit_ship_read(sp, size, log);

    if (sp->rc == NGX_OK && sp->first + sp->nrec == size) {
        sp->cp_len = n;
    }
}


/*
 * The cursor: read from "shipped" by the first step of a zone, found
 * again on disk when Redis asked for records from an earlier leaf.
 */

static ngx_int_t
ngx_http_aigw_audit_ship_cursor(ngx_http_aigw_audit_ship_t *sp,
    ngx_log_t *log)
{
    u_char                          buf[256];
    ssize_t                         n;
    ngx_http_aigw_audit_sh_t       *sh;
    ngx_http_aigw_audit_ship_sh_t  *ss;

    sh = sp->acf->sh;
    ss = &sh->ship;

    if (ss->loaded && !ss->rewind) {
        return NGX_OK;
    }

    if (!ss->loaded) {
        n = ngx_http_aigw_audit_ship_file(sp->acf, (u_char *) "shipped",
                                          buf, sizeof(buf) - 1, 0, log);

        if (n > 0) {
            buf[n] = '\0';

            if (sscanf((char *) buf, "aigw-audit-shipped 1\nleaf %" SCNu64
                       "\nsegment %lu\noffset %" SCNd64 "\n",
                       &ss->leaf, (unsigned long *) &ss->segment,
                       (int64_t *) &ss->offset)
                != 3 || ss->segment == 0)
            {
                ngx_log_error(NGX_LOG_ALERT, log, 0,
                              "aigw: audit \"%Vshipped\" is not valid: "
                              "shipping from the oldest segment kept",
                              &sp->acf->dir);
                ss->leaf = 0;
                ss->rewind = 1;
            }

        } else {
            ss->leaf = 0;
            ss->rewind = 1;
        }

        ss->saved = ss->leaf;
        ss->loaded = 1;
    }

    if (ss->rewind) {
        if (ngx_http_aigw_audit_ship_locate(sp, log) != NGX_OK) {
            return NGX_ERROR;
        }

        ss->rewind = 0;
    }

    return NGX_OK;
}


/*
 * The segment and offset of leaf ss->leaf: the segment whose ".start"
 * is at or before it, then its lines counted.  A leaf in a segment that
 * retention dropped: the oldest one kept, and a gap said.
 */

static ngx_int_t
ngx_http_aigw_audit_ship_locate(ngx_http_aigw_audit_ship_t *sp,
    ngx_log_t *log)
{
    u_char                          name[64], *p, *last;
    off_t                           off;
    ssize_t                         n;
    uint64_t                        start, leaf;
    ngx_uint_t                      seg, found;
    ngx_http_aigw_audit_sh_t       *sh;
    ngx_http_aigw_audit_ship_sh_t  *ss;

    sh = sp->acf->sh;
    ss = &sh->ship;

    found = 0;
    start = 0;

    for (seg = sh->tree.first; seg <= sh->tree.segment; seg++) {
        ngx_sprintf(name, "audit-%06ui.start%Z", seg);

        n = ngx_http_aigw_audit_ship_file(sp->acf, name, sp->buf, 64, 0,
                                          log);
        if (n < 6 || ngx_strncmp(sp->buf, "size ", 5) != 0) {
            return NGX_ERROR;
        }

        leaf = 0;

        for (p = sp->buf + 5; p < sp->buf + n && *p >= '0' && *p <= '9';
             p++)
        {
            leaf = leaf * 10 + (*p - '0');
        }

        if (leaf > ss->leaf) {
            break;
        }

        found = seg;
        start = leaf;
    }

    if (found == 0) {
        /* before the oldest segment kept: those records are gone */

        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "aigw: audit records from leaf %uL were dropped by "
                      "retention before they were shipped", ss->leaf);

        ss->segment = sh->tree.first;
        ss->offset = 0;
        ss->leaf = start;

        ngx_sprintf(name, "audit-%06ui.start%Z", sh->tree.first);

        n = ngx_http_aigw_audit_ship_file(sp->acf, name, sp->buf, 64, 0,
                                          log);
        if (n < 6) {
            return NGX_ERROR;
        }

        leaf = 0;

        for (p = sp->buf + 5; p < sp->buf + n && *p >= '0' && *p <= '9';
             p++)
        {
            leaf = leaf * 10 + (*p - '0');
        }

        ss->leaf = leaf;
        sp->gap = 1;

        return NGX_OK;
    }

    /* the lines before it, counted */

    ngx_sprintf(name, "audit-%06ui.log%Z", found);

    off = 0;
    leaf = start;

    while (leaf < ss->leaf) {
        n = ngx_http_aigw_audit_ship_file(sp->acf, name, sp->buf,
                                          NGX_HTTP_AIGW_AUDIT_SHIP_BUF, off,
                                          log);
        if (n <= 0) {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "aigw: audit leaf %uL is not in the log: "
                          "shipping stopped", ss->leaf);
            return NGX_ERROR;
        }

        p = sp->buf;
        last = p + n;

        while (leaf < ss->leaf) {
            p = ngx_strlchr(p, last, '\n');
            if (p == NULL) {
                break;
            }

            p++;
            leaf++;
        }

        off += (leaf < ss->leaf) ? n : p - sp->buf;
    }

    ss->segment = found;
    ss->offset = off;

    return NGX_OK;
}


/* "shipped": the cursor, replaced whole as "state" is */

static ngx_int_t
ngx_http_aigw_audit_ship_save(ngx_http_aigw_audit_ship_t *sp, ngx_log_t *log)
{
    u_char                          buf[256], *p;
    ngx_http_aigw_audit_ship_sh_t  *ss;

    ss = &sp->acf->sh->ship;

    p = ngx_sprintf(buf, "aigw-audit-shipped 1\nleaf %uL\nsegment %ui\n"
                    "offset %O\n", ss->leaf, ss->segment, ss->offset);

    if (ngx_http_aigw_audit_replace(sp->acf, "shipped", buf, p - buf, log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ss->saved = ss->leaf;

    return NGX_OK;
}


/* a file's bytes at offset, in the folder: -1 when it is not there */

static ssize_t
ngx_http_aigw_audit_ship_file(ngx_http_aigw_audit_conf_t *acf, u_char *name,
    u_char *buf, size_t size, off_t offset, ngx_log_t *log)
{
    u_char    path[NGX_MAX_PATH];
    ssize_t   n;
    ngx_fd_t  fd;

    if (acf->dir.len + ngx_strlen(name) + 1 > NGX_MAX_PATH) {
        return NGX_ERROR;
    }

    ngx_sprintf(path, "%V%s%Z", &acf->dir, name);

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        if (ngx_errno != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                          ngx_open_file_n " \"%s\" failed", path);
        }

        return NGX_ERROR;
    }

    n = pread(fd, buf, size, offset);

    if (n == -1) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "pread(\"%s\") failed", path);
    }

    (void) ngx_close_file(fd);

    return n;
}


/*
 * The batch: whole lines from the cursor, up to leaf "limit" and
 * NGX_HTTP_AIGW_AUDIT_SHIP_MAX records, across a segment's end.  Each
 * record's tenant and ts are taken where the writer's index takes them.
 */

static ngx_int_t
ngx_http_aigw_audit_ship_read(ngx_http_aigw_audit_ship_t *sp, uint64_t limit,
    ngx_log_t *log)
{
    u_char                         *p, *s, *e, *last, name[64];
    u_char                          leaf[32];
    ssize_t                         n;
    ngx_str_t                      *a;
    ngx_uint_t                      seg, tries;
    ngx_http_aigw_audit_sh_t       *sh;
    ngx_http_aigw_audit_ship_sh_t  *ss;

    sh = sp->acf->sh;
    ss = &sh->ship;

    sp->first = ss->leaf;
    sp->segment = ss->segment;
    sp->offset = ss->offset;

    if (limit - ss->leaf > NGX_HTTP_AIGW_AUDIT_SHIP_MAX) {
        limit = ss->leaf + NGX_HTTP_AIGW_AUDIT_SHIP_MAX;
    }

    a = sp->argv + NGX_HTTP_AIGW_AUDIT_SHIP_ARGS;

    /* a segment read to its end: the next one (twice at most) */

    for (tries = 0; tries < 2; tries++) {
        seg = sp->segment;

        ngx_sprintf(name, "audit-%06ui.log%Z", seg);

        n = ngx_http_aigw_audit_ship_file(sp->acf, name, sp->buf,
                                          NGX_HTTP_AIGW_AUDIT_SHIP_BUF,
                                          sp->offset, log);
        if (n < 0) {
            if (seg < sh->tree.first) {
                /* retention was faster than Redis */
                ss->rewind = 1;
                return NGX_DECLINED;
            }

            return NGX_ERROR;
        }

        p = sp->buf;
        last = p + n;

        while (sp->first + sp->nrec < limit) {
            s = p;

            p = ngx_strlchr(s, last, '\n');
            if (p == NULL) {
                p = s;
                break;
            }

            /* tenant and ts: {"v":1,"ts":N,"tenant":"..." */

            e = s + sizeof("{\"v\":1,\"ts\":") - 1;

            a[1].data = e;

            while (e < p && *e >= '0' && *e <= '9') {
                e++;
            }

            a[1].len = e - a[1].data;
            a[0].len = 0;
            a[0].data = e;

            if (p - e > 11 && ngx_strncmp(e, ",\"tenant\":\"", 11) == 0) {
                e += 11;
                a[0].data = e;

                while (e < p && *e != '"') {
                    if (*e == '\\') {
                        e++;
                    }

                    e++;
                }

                a[0].len = ngx_min(e, p) - a[0].data;
            }

            if (ngx_http_aigw_audit_hash(sp->md, sp->acf->sha256, 0x00, s,
                                         p - s, NULL, 0, leaf)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            a[2].data = sp->hashes + 16 * sp->nrec;
            a[2].len = 16;
            ngx_hex_dump(a[2].data, leaf, 8);

            a[3].data = s;
            a[3].len = p - s;

            p++;
            a += 4;
            sp->nrec++;
        }

        sp->offset += p - sp->buf;

        if (sp->first + sp->nrec == limit || p > sp->buf
            || seg >= sh->tree.segment)
        {
            break;
        }

        /* nothing more in this one, and a later one exists */

        sp->segment++;
        sp->offset = 0;
    }

    if (sp->nrec == 0 && sp->first < limit) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "aigw: audit leaf %uL not found in segment %06ui "
                      "at %O: looked for again", sp->first, sp->segment,
                      sp->offset);
        ss->rewind = 1;
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* back on the event loop: the batch to Redis */

static void
ngx_http_aigw_audit_ship_read_done(ngx_event_t *ev)
{
    ngx_http_aigw_audit_ship_t *sp = ev->data;

    ngx_int_t   rc;
    ngx_str_t  *a;

    sp->posted = 0;

    if (sp->rc != NGX_OK || sp->nrec == 0) {
        if (sp->rc == NGX_ERROR) {
            sp->retry = ngx_time() + 1;
        }

        ngx_http_aigw_audit_ship_end(sp);
        return;
    }

    a = sp->argv;

    a[0] = sp->prefix;
    a[1].data = sp->first_text;
    a[1].len = ngx_sprintf(sp->first_text, "%uL", sp->first)
               - sp->first_text;
    a[2].data = sp->cp;
    a[2].len = sp->cp_len;
    a[3].data = (u_char *) (sp->gap ? "1" : "0");
    a[3].len = 1;
    a[4].data = (u_char *) "";
    a[4].len = 0;

    rc = ngx_http_aigw_redis_eval(sp->redis, sp->script, 0,
                                  NGX_HTTP_AIGW_AUDIT_SHIP_ARGS
                                  + 4 * sp->nrec,
                                  sp->argv, ngx_http_aigw_audit_ship_reply,
                                  sp, ngx_cycle->log, &sp->cmd);

    if (rc != NGX_OK) {
        /* Redis is down: the segments keep the records meanwhile */
        sp->retry = ngx_time() + 1;
        ngx_http_aigw_audit_ship_end(sp);
        return;
    }

    sp->waiting = 1;
}


static void
ngx_http_aigw_audit_ship_reply(void *data, redisReply *reply, ngx_int_t rc)
{
    ngx_http_aigw_audit_ship_t *sp = data;

    uint64_t                        have, end;
    ngx_str_t                       s;
    ngx_http_aigw_audit_ship_sh_t  *ss;

    sp->waiting = 0;
    ss = &sp->acf->sh->ship;
    end = sp->first + sp->nrec;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER
        || reply->integer < 0)
    {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            s.data = (u_char *) reply->str;
            s.len = reply->len;

        } else {
            ngx_str_set(&s, "no answer");
        }

        ngx_http_aigw_audit_ship_error(sp, NGX_LOG_ERR,
                                       "aigw: audit records not shipped "
                                       "to Redis (%V): kept on disk", &s);
        sp->retry = ngx_time() + 1;
        ngx_http_aigw_audit_ship_end(sp);
        return;
    }

    have = (uint64_t) reply->integer;

    if (have == end) {
        ss->leaf = end;
        ss->segment = sp->segment;
        ss->offset = sp->offset;

    } else {
        /* Redis holds another count: ship from there */

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "aigw: Redis holds %uL audit records, shipping "
                      "from leaf %uL was asked: shipping from %uL",
                      have, sp->first, have);

        ss->leaf = have;
        ss->rewind = 1;
    }

    ngx_http_aigw_audit_ship_end(sp);

    /* a full batch: more is waiting, the next step at once */

    if (sp->nrec == NGX_HTTP_AIGW_AUDIT_SHIP_MAX && have == end) {
        ngx_http_aigw_audit_ship_kick(sp->acf);
    }
}


static void
ngx_http_aigw_audit_ship_end(ngx_http_aigw_audit_ship_t *sp)
{
    (void) ngx_atomic_cmp_set(&sp->acf->sh->ship.pid, ngx_pid, 0);
}


static void
ngx_http_aigw_audit_ship_error(ngx_http_aigw_audit_ship_t *sp,
    ngx_uint_t level, const char *fmt, ngx_str_t *what)
{
    if (sp->log_next > ngx_time()) {
        return;
    }

    sp->log_next = ngx_time() + NGX_HTTP_AIGW_AUDIT_SHIP_QUIET;

    ngx_log_error(level, ngx_cycle->log, 0, fmt, what);
}


/* a worker exits: the role goes, the cursor is written down */

void
ngx_http_aigw_audit_ship_exit(ngx_cycle_t *cycle,
    ngx_http_aigw_audit_conf_t *acf)
{
    ngx_http_aigw_audit_ship_t     *sp;
    ngx_http_aigw_audit_ship_sh_t  *ss;

    sp = acf->ship;

    if (sp == NULL || sp->task == NULL || acf->sh == NULL) {
        return;
    }

    ss = &acf->sh->ship;

    if (sp->waiting) {
        ngx_http_aigw_redis_cancel(sp->cmd);
        sp->waiting = 0;
    }

    if (ngx_http_aigw_audit_ship_lock(ss) == NGX_OK) {
        if (ss->loaded && ss->saved != ss->leaf) {
            (void) ngx_http_aigw_audit_ship_save(sp, cycle->log);
        }

        ngx_http_aigw_audit_ship_end(sp);
    }
}


#else


char *
ngx_http_aigw_audit_ship_init(ngx_conf_t *cf,
    ngx_http_aigw_audit_conf_t *acf, ngx_http_aigw_redis_t *redis)
{
    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_aigw_audit_ship_init_process(ngx_cycle_t *cycle,
    ngx_http_aigw_audit_conf_t *acf)
{
    return NGX_OK;
}


void
ngx_http_aigw_audit_ship_kick(ngx_http_aigw_audit_conf_t *acf)
{
}


void
ngx_http_aigw_audit_ship_exit(ngx_cycle_t *cycle,
    ngx_http_aigw_audit_conf_t *acf)
{
}


#endif
