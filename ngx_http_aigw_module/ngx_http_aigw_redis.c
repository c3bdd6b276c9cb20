
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <openssl/evp.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_redis.h"


/*
 * How the adapter behaves (docs/architecture.md, "Redis"):
 *
 * - hiredis's hooks map onto one ngx_connection_t a redisAsyncContext;
 *   its events are registered level-triggered (NGX_LEVEL_EVENT), as
 *   hiredis expects of ae and libevent: it reads at most 16 KB a call,
 *   and an edge-triggered read event would leave the rest of a large or
 *   pipelined reply in the socket with no event to come for it;
 * - a worker keeps up to "pool" connections, used round-robin and opened
 *   when first needed; AUTH and SELECT go first on each new one;
 * - every command has a timer; when it fires the connection is closed:
 *   Redis answers in order, so whatever waits behind a late reply is
 *   late too, and a hung Redis must not collect a queue.  A connection
 *   closed so, or lost, is tried again a second later at the earliest;
 * - a connection takes at most NGX_HTTP_AIGW_REDIS_PENDING commands;
 *   when all are full, a command is declined, as when none is up.
 */


#define NGX_HTTP_AIGW_REDIS_PORT       6379
#define NGX_HTTP_AIGW_REDIS_TIMEOUT    100      /* ms, a command */
#define NGX_HTTP_AIGW_REDIS_POOL       4
#define NGX_HTTP_AIGW_REDIS_MAX_POOL   64
#define NGX_HTTP_AIGW_REDIS_PENDING    1024     /* commands a connection */
#define NGX_HTTP_AIGW_REDIS_RETRY      1000     /* ms between connects */
#define NGX_HTTP_AIGW_REDIS_LOG_QUIET  10       /* s between error lines */


typedef struct ngx_http_aigw_redis_conn_s  ngx_http_aigw_redis_conn_t;


/* a place for one connection of a worker */
typedef struct {
    ngx_http_aigw_redis_conn_t    *conn;       /* NULL: none now */
    ngx_msec_t                     next_try;   /* after a failure */
    unsigned                       failed:1;
} ngx_http_aigw_redis_slot_t;


struct ngx_http_aigw_redis_s {
    u_char                         ip[NGX_INET_ADDRSTRLEN + 1];
    ngx_str_t                      addr;       /* "ip:port", for logs */
    in_port_t                      port;
    ngx_str_t                      password;
    ngx_int_t                      db;
    ngx_msec_t                     timeout;
    ngx_uint_t                     pool;

    /* the worker's own, each worker its copy */
    ngx_http_aigw_redis_slot_t    *slots;
    ngx_uint_t                     next;       /* round-robin */
    time_t                         log_next;   /* errors quiet until */
    unsigned                       exiting:1;  /* handlers not called */
};


struct ngx_http_aigw_redis_script_s {
    ngx_str_t                      source;
    u_char                         sha[40];
};


struct ngx_http_aigw_redis_conn_s {
    redisAsyncContext             *ac;
    ngx_connection_t              *c;
    ngx_http_aigw_redis_t         *rd;
    ngx_http_aigw_redis_slot_t    *slot;       /* NULL once closed */
    ngx_uint_t                     pending;    /* commands */
};


typedef struct {
    ngx_event_t                    timer;
    ngx_http_aigw_redis_conn_t    *conn;
    ngx_http_aigw_redis_script_t  *script;
    ngx_http_aigw_redis_handler_pt handler;    /* NULL: canceled */
    void                          *data;
    char                          *command;    /* formatted, to resend */
    int                            len;
    unsigned                       retried:1;
} ngx_http_aigw_redis_cmd_t;


static ngx_int_t ngx_http_aigw_redis_parse_addr(ngx_conf_t *cf,
    ngx_http_aigw_redis_t *rd, ngx_str_t *value);
static ngx_int_t ngx_http_aigw_redis_sha1(ngx_str_t *source, u_char *hex);
static ngx_http_aigw_redis_conn_t *ngx_http_aigw_redis_get(
    ngx_http_aigw_redis_t *rd, ngx_log_t *log);
static ngx_http_aigw_redis_conn_t *ngx_http_aigw_redis_connect(
    ngx_http_aigw_redis_t *rd, ngx_http_aigw_redis_slot_t *slot);
static void ngx_http_aigw_redis_close(ngx_http_aigw_redis_conn_t *conn,
    const char *why);
static void ngx_http_aigw_redis_detach(ngx_http_aigw_redis_conn_t *conn,
    const char *why);
static void ngx_http_aigw_redis_error(ngx_http_aigw_redis_t *rd,
    ngx_uint_t level, const char *what, const char *why);
static void ngx_http_aigw_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_aigw_redis_setup_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_aigw_redis_timeout(ngx_event_t *ev);
static void ngx_http_aigw_redis_free_cmd(ngx_http_aigw_redis_cmd_t *cmd);
static void ngx_http_aigw_redis_read_handler(ngx_event_t *ev);
static void ngx_http_aigw_redis_write_handler(ngx_event_t *ev);
static void ngx_http_aigw_redis_add_read(void *data);
static void ngx_http_aigw_redis_del_read(void *data);
static void ngx_http_aigw_redis_add_write(void *data);
static void ngx_http_aigw_redis_del_write(void *data);
static void ngx_http_aigw_redis_cleanup(void *data);
static void ngx_http_aigw_redis_exit(void *data);


/*
 * aigw_redis ADDRESS[:PORT] [password=SECRET|password_env=NAME]
 *            [db=N] [timeout=TIME] [pool=N];
 */

char *
ngx_http_aigw_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    u_char                  *env;
    ngx_int_t                n;
    ngx_str_t               *value, s;
    ngx_uint_t               i;
    ngx_pool_cleanup_t      *cln;
    ngx_http_aigw_redis_t   *rd, **field;

    field = (ngx_http_aigw_redis_t **) (p + cmd->offset);

    if (*field != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rd = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_redis_t));
    if (rd == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigw_redis_parse_addr(cf, rd, &value[1]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    rd->db = NGX_CONF_UNSET;
    rd->timeout = NGX_CONF_UNSET_MSEC;
    rd->pool = NGX_CONF_UNSET_UINT;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "password=", 9) == 0
            || ngx_strncmp(value[i].data, "password_env=", 13) == 0)
        {
            /* the secret itself never goes into a message */

            if (rd->password.data) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "password of aigw_redis is duplicate");
                return NGX_CONF_ERROR;
            }

            if (value[i].data[8] == '=') {
                s.data = value[i].data + 9;
                s.len = value[i].len - 9;

            } else {
                if (value[i].len == 13) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "empty variable name in "
                                       "\"password_env=\"");
                    return NGX_CONF_ERROR;
                }

                env = (u_char *) getenv((char *) value[i].data + 13);

                if (env == NULL || *env == '\0') {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "environment variable \"%s\" "
                                       "is not set", value[i].data + 13);
                    return NGX_CONF_ERROR;
                }

                s.data = env;
                s.len = ngx_strlen(env);
            }

            if (s.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty password in aigw_redis");
                return NGX_CONF_ERROR;
            }

            rd->password.len = s.len;
            rd->password.data = ngx_pstrdup(cf->pool, &s);
            if (rd->password.data == NULL) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            if (rd->db != NGX_CONF_UNSET) {
                goto duplicate;
            }

            rd->db = ngx_atoi(value[i].data + 3, value[i].len - 3);

            if (rd->db == NGX_ERROR) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            if (rd->timeout != NGX_CONF_UNSET_MSEC) {
                goto duplicate;
            }

            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            rd->timeout = ngx_parse_time(&s, 0);

            if (rd->timeout == (ngx_msec_t) NGX_ERROR || rd->timeout == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "pool=", 5) == 0) {
            if (rd->pool != NGX_CONF_UNSET_UINT) {
                goto duplicate;
            }

            n = ngx_atoi(value[i].data + 5, value[i].len - 5);

            if (n == NGX_ERROR || n == 0 || n > NGX_HTTP_AIGW_REDIS_MAX_POOL)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\", "
                                   "pool must be 1..%d",
                                   &value[i], NGX_HTTP_AIGW_REDIS_MAX_POOL);
                return NGX_CONF_ERROR;
            }

            rd->pool = n;
            continue;
        }

        goto invalid;
    }

    ngx_conf_init_value(rd->db, 0);
    ngx_conf_init_msec_value(rd->timeout, NGX_HTTP_AIGW_REDIS_TIMEOUT);
    ngx_conf_init_uint_value(rd->pool, NGX_HTTP_AIGW_REDIS_POOL);

    rd->slots = ngx_pcalloc(cf->pool,
                            rd->pool * sizeof(ngx_http_aigw_redis_slot_t));
    if (rd->slots == NULL) {
        return NGX_CONF_ERROR;
    }

    /*
     * The cycle's pool goes when a worker exits (and, with no connection
     * ever opened there, when the master drops an old cycle).
     */

    cln = ngx_pool_cleanup_add(cf->cycle->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_aigw_redis_exit;
    cln->data = rd;

    *field = rd;

    return NGX_CONF_OK;

duplicate:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "parameter \"%V\" is duplicate", &value[i]);
    return NGX_CONF_ERROR;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_aigw_redis_parse_addr(ngx_conf_t *cf, ngx_http_aigw_redis_t *rd,
    ngx_str_t *value)
{
    u_char     *p, *last;
    ngx_int_t   port;
    ngx_str_t   host;

    /*
     * hiredis 0.14 connects through getaddrinfo(), which for anything but
     * an IPv4 literal (an IPv6 one included: it asks for AF_INET first)
     * may read files or ask DNS, blocking a worker: IPv4 only.
     */

    if (value->len && value->data[0] == '[') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigw_redis \"%V\": IPv6 addresses are not "
                           "supported, use an IPv4 address", value);
        return NGX_ERROR;
    }

    last = value->data + value->len;
    p = ngx_strlchr(value->data, last, ':');

    host.data = value->data;
    host.len = (p ? p : last) - value->data;
    port = NGX_HTTP_AIGW_REDIS_PORT;

    if (p) {
        port = ngx_atoi(p + 1, last - p - 1);

        if (port < 1 || port > 65535) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid port in aigw_redis \"%V\"", value);
            return NGX_ERROR;
        }
    }

    if (host.len == 0 || host.len > NGX_INET_ADDRSTRLEN
        || ngx_inet_addr(host.data, host.len) == INADDR_NONE)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigw_redis needs an IPv4 address, not \"%V\": "
                           "a worker resolves no names", &host);
        return NGX_ERROR;
    }

    ngx_memcpy(rd->ip, host.data, host.len);
    rd->ip[host.len] = '\0';
    rd->port = (in_port_t) port;

    rd->addr.data = ngx_pnalloc(cf->pool, host.len + sizeof(":65535") - 1);
    if (rd->addr.data == NULL) {
        return NGX_ERROR;
    }

    rd->addr.len = ngx_sprintf(rd->addr.data, "%s:%i", rd->ip, port)
                   - rd->addr.data;

    return NGX_OK;
}


ngx_http_aigw_redis_script_t *
ngx_http_aigw_redis_script(ngx_conf_t *cf, ngx_http_aigw_redis_t *rd,
    ngx_str_t *source)
{
    ngx_http_aigw_redis_script_t  *script;

    script = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_redis_script_t));
    if (script == NULL) {
        return NULL;
    }

    script->source.len = source->len;
    script->source.data = ngx_pstrdup(cf->pool, source);
    if (script->source.data == NULL) {
        return NULL;
    }

    if (ngx_http_aigw_redis_sha1(source, script->sha) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "SHA-1 of a Redis script failed");
        return NULL;
    }

    return script;
}


static ngx_int_t
ngx_http_aigw_redis_sha1(ngx_str_t *source, u_char *hex)
{
    u_char         md[EVP_MAX_MD_SIZE];
    ngx_int_t      rc;
    unsigned int   len;
    EVP_MD_CTX    *ctx;

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1
        && EVP_DigestUpdate(ctx, source->data, source->len) == 1
        && EVP_DigestFinal_ex(ctx, md, &len) == 1
        && len == 20)
    {
        ngx_hex_dump(hex, md, 20);
        rc = NGX_OK;
    }

    EVP_MD_CTX_free(ctx);

    return rc;
}


ngx_int_t
ngx_http_aigw_redis_eval(ngx_http_aigw_redis_t *rd,
    ngx_http_aigw_redis_script_t *script, ngx_uint_t nkeys,
    ngx_uint_t argc, ngx_str_t *argv, ngx_http_aigw_redis_handler_pt handler,
    void *data, ngx_log_t *log, void **cmdp)
{
    int                          n;
    u_char                       numkeys[NGX_INT_T_LEN];
    size_t                      *lens;
    ngx_uint_t                   i;
    const char                 **args;
    ngx_http_aigw_redis_cmd_t   *cmd;
    ngx_http_aigw_redis_conn_t  *conn;

    if (rd->exiting) {
        return NGX_DECLINED;
    }

    /* the command's own memory: it may outlive the request */

    cmd = ngx_calloc(sizeof(ngx_http_aigw_redis_cmd_t)
                     + (argc + 3) * (sizeof(char *) + sizeof(size_t)), log);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    args = (const char **) (cmd + 1);
    lens = (size_t *) (args + argc + 3);

    args[0] = "EVALSHA";
    lens[0] = sizeof("EVALSHA") - 1;
    args[1] = (const char *) script->sha;
    lens[1] = 40;
    args[2] = (const char *) numkeys;
    lens[2] = ngx_sprintf(numkeys, "%ui", nkeys) - numkeys;

    for (i = 0; i < argc; i++) {
        args[i + 3] = (const char *) argv[i].data;
        lens[i + 3] = argv[i].len;
    }

    n = redisFormatCommandArgv(&cmd->command, (int) argc + 3, args, lens);

    if (n < 0) {
        ngx_free(cmd);
        return NGX_ERROR;
    }

    cmd->len = n;
    cmd->script = script;
    cmd->handler = handler;
    cmd->data = data;

    conn = ngx_http_aigw_redis_get(rd, log);

    if (conn == NULL) {
        ngx_http_aigw_redis_free_cmd(cmd);
        return NGX_DECLINED;
    }

    if (redisAsyncFormattedCommand(conn->ac, ngx_http_aigw_redis_reply, cmd,
                                   cmd->command, cmd->len)
        != REDIS_OK)
    {
        /* the context is going away: as if there were no connection */
        ngx_http_aigw_redis_free_cmd(cmd);
        return NGX_DECLINED;
    }

    cmd->conn = conn;
    conn->pending++;
    conn->c->idle = 0;

    cmd->timer.handler = ngx_http_aigw_redis_timeout;
    cmd->timer.data = cmd;
    cmd->timer.log = ngx_cycle->log;

    ngx_add_timer(&cmd->timer, rd->timeout);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "aigw redis: EVALSHA %*s, command %p",
                   (size_t) 8, script->sha, cmd);

    *cmdp = cmd;

    return NGX_OK;
}


void
ngx_http_aigw_redis_cancel(void *data)
{
    ngx_http_aigw_redis_cmd_t  *cmd = data;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "aigw redis: command %p canceled", cmd);

    /* freed when its reply, its timeout or its connection's end comes */
    cmd->handler = NULL;
    cmd->data = NULL;
}


/* a connection for one more command, round-robin; NULL: none usable */

static ngx_http_aigw_redis_conn_t *
ngx_http_aigw_redis_get(ngx_http_aigw_redis_t *rd, ngx_log_t *log)
{
    ngx_uint_t                   i, k;
    ngx_http_aigw_redis_slot_t  *slot;
    ngx_http_aigw_redis_conn_t  *conn;

    for (i = 0; i < rd->pool; i++) {

        k = rd->next++ % rd->pool;
        slot = &rd->slots[k];

        conn = slot->conn;

        if (conn) {
            if (conn->pending < NGX_HTTP_AIGW_REDIS_PENDING) {
                return conn;
            }

            continue;
        }

        if (slot->failed
            && (ngx_msec_int_t) (slot->next_try - ngx_current_msec) > 0)
        {
            continue;
        }

        conn = ngx_http_aigw_redis_connect(rd, slot);

        if (conn) {
            return conn;
        }
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, log, 0,
                   "aigw redis: no connection usable");

    return NULL;
}


static ngx_http_aigw_redis_conn_t *
ngx_http_aigw_redis_connect(ngx_http_aigw_redis_t *rd,
    ngx_http_aigw_redis_slot_t *slot)
{
    ngx_event_t                 *rev, *wev;
    ngx_connection_t            *c;
    redisAsyncContext           *ac;
    ngx_http_aigw_redis_conn_t  *conn;

    slot->failed = 1;
    slot->next_try = ngx_current_msec + NGX_HTTP_AIGW_REDIS_RETRY;

    /* an IP literal: no name lookup, a non-blocking connect() */

    ac = redisAsyncConnect((char *) rd->ip, rd->port);

    if (ac == NULL) {
        ngx_http_aigw_redis_error(rd, NGX_LOG_ALERT, "connect",
                                  "out of memory");
        return NULL;
    }

    if (ac->err) {
        ngx_http_aigw_redis_error(rd, NGX_LOG_ERR, "connect", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }

    conn = ngx_calloc(sizeof(ngx_http_aigw_redis_conn_t), ngx_cycle->log);
    if (conn == NULL) {
        redisAsyncFree(ac);
        return NULL;
    }

    c = ngx_get_connection(ac->c.fd, ngx_cycle->log);

    if (c == NULL) {
        ngx_http_aigw_redis_error(rd, NGX_LOG_ERR, "connect",
                                  "no free worker_connections");
        ngx_free(conn);
        redisAsyncFree(ac);
        return NULL;
    }

    c->data = conn;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    rev = c->read;
    wev = c->write;

    rev->handler = ngx_http_aigw_redis_read_handler;
    wev->handler = ngx_http_aigw_redis_write_handler;
    rev->log = c->log;
    wev->log = c->log;

    conn->ac = ac;
    conn->c = c;
    conn->rd = rd;
    conn->slot = slot;

    ac->data = conn;
    ac->ev.data = conn;
    ac->ev.addRead = ngx_http_aigw_redis_add_read;
    ac->ev.delRead = ngx_http_aigw_redis_del_read;
    ac->ev.addWrite = ngx_http_aigw_redis_add_write;
    ac->ev.delWrite = ngx_http_aigw_redis_del_write;
    ac->ev.cleanup = ngx_http_aigw_redis_cleanup;

    slot->conn = conn;
    slot->failed = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "aigw redis: connecting to %V, fd:%d",
                   &rd->addr, c->fd);

    /*
     * Pipelined ahead of the first command; a failure of either closes
     * the connection, and what waits behind them fails with it.
     */

    if (rd->password.len
        && redisAsyncCommand(ac, ngx_http_aigw_redis_setup_reply, "AUTH",
                             "AUTH %b", rd->password.data,
                             rd->password.len)
           != REDIS_OK)
    {
        goto failed;
    }

    if (rd->db
        && redisAsyncCommand(ac, ngx_http_aigw_redis_setup_reply, "SELECT",
                             "SELECT %d", (int) rd->db)
           != REDIS_OK)
    {
        goto failed;
    }

    return conn;

failed:

    ngx_http_aigw_redis_close(conn, "setup failed");
    return NULL;
}


/* closes a connection now: what waits on it gets NGX_ERROR */

static void
ngx_http_aigw_redis_close(ngx_http_aigw_redis_conn_t *conn, const char *why)
{
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "aigw redis: close %p: %s", conn, why);

    ngx_http_aigw_redis_detach(conn, why);

    /* within a hiredis callback, hiredis frees it when the callback ends */
    redisAsyncFree(conn->ac);
}


/* no more commands for a connection; why != NULL: it failed */

static void
ngx_http_aigw_redis_detach(ngx_http_aigw_redis_conn_t *conn, const char *why)
{
    ngx_http_aigw_redis_slot_t  *slot;

    slot = conn->slot;

    if (slot == NULL) {
        return;
    }

    conn->slot = NULL;
    slot->conn = NULL;

    if (why) {
        slot->failed = 1;
        slot->next_try = ngx_current_msec + NGX_HTTP_AIGW_REDIS_RETRY;

        ngx_http_aigw_redis_error(conn->rd, NGX_LOG_ERR, "connection", why);
    }
}


/* connection errors: at most one line each 10 seconds a worker */

static void
ngx_http_aigw_redis_error(ngx_http_aigw_redis_t *rd, ngx_uint_t level,
    const char *what, const char *why)
{
    if (rd->exiting || ngx_time() < rd->log_next) {
        return;
    }

    rd->log_next = ngx_time() + NGX_HTTP_AIGW_REDIS_LOG_QUIET;

    ngx_log_error(level, ngx_cycle->log, 0,
                  "aigw redis %V: %s: %s (further errors for %ds not logged)",
                  &rd->addr, what, why, NGX_HTTP_AIGW_REDIS_LOG_QUIET);
}


static void
ngx_http_aigw_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply                  *reply = r;
    ngx_http_aigw_redis_cmd_t   *cmd = privdata;

    void                            *data;
    ngx_http_aigw_redis_conn_t      *conn;
    ngx_http_aigw_redis_handler_pt   handler;

    conn = ac->data;

    if (reply
        && reply->type == REDIS_REPLY_ERROR
        && reply->len >= 8
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0
        && !cmd->retried
        && conn->slot)
    {
        /*
         * Redis lost the script (restarted, SCRIPT FLUSH, a failover):
         * load it and run the command once more, pipelined on the same
         * connection, within the same deadline.  Also for a canceled
         * command: it may change what Redis counts.
         */

        cmd->retried = 1;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "aigw redis: NOSCRIPT, loading %*s",
                       (size_t) 40, cmd->script->sha);

        if (redisAsyncCommand(ac, ngx_http_aigw_redis_setup_reply,
                              "SCRIPT LOAD", "SCRIPT LOAD %b",
                              cmd->script->source.data,
                              cmd->script->source.len)
            == REDIS_OK
            && redisAsyncFormattedCommand(ac, ngx_http_aigw_redis_reply, cmd,
                                          cmd->command, cmd->len)
               == REDIS_OK)
        {
            return;
        }
    }

    conn->pending--;

    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    handler = cmd->handler;
    data = cmd->data;

    ngx_http_aigw_redis_free_cmd(cmd);

    if (reply == NULL) {
        /* the connection is going away, lost or closed */
        ngx_http_aigw_redis_detach(conn, ac->errstr ? ac->errstr : "lost");

    } else if (conn->pending == 0) {
        conn->c->idle = 1;
    }

    if (handler && !conn->rd->exiting) {
        handler(data, reply, reply ? NGX_OK : NGX_ERROR);
    }

    if (ngx_exiting && conn->pending == 0 && conn->slot) {
        /* a worker shutting down keeps no idle connection */
        ngx_http_aigw_redis_close(conn, NULL);
    }
}


/* AUTH, SELECT and SCRIPT LOAD: only their errors matter */

static void
ngx_http_aigw_redis_setup_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply  *reply = r;

    u_char                       err[256], *p;
    ngx_http_aigw_redis_conn_t  *conn;

    if (reply == NULL || reply->type != REDIS_REPLY_ERROR) {
        return;
    }

    conn = ac->data;

    p = ngx_snprintf(err, sizeof(err) - 1, "%s: %*s", (char *) privdata,
                     (size_t) reply->len, reply->str);
    *p = '\0';

    if (conn->slot == NULL) {
        return;
    }

    if (ngx_strcmp(privdata, "SCRIPT LOAD") == 0) {
        /* the command behind it gets its NOSCRIPT: nothing to close */
        ngx_http_aigw_redis_error(conn->rd, NGX_LOG_ERR, "script",
                                  (char *) err);
        return;
    }

    /* whatever follows fails with the connection */
    ngx_http_aigw_redis_close(conn, (char *) err);
}


static void
ngx_http_aigw_redis_timeout(ngx_event_t *ev)
{
    void                            *data;
    ngx_http_aigw_redis_cmd_t       *cmd;
    ngx_http_aigw_redis_handler_pt   handler;

    cmd = ev->data;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "aigw redis: command %p timed out", cmd);

    handler = cmd->handler;
    data = cmd->data;

    cmd->handler = NULL;

    /*
     * Redis answers in order: all behind a late reply is late too.  The
     * connection goes, the late reply with it; the command is freed by
     * its callback, called now with no reply.
     */

    ngx_http_aigw_redis_close(cmd->conn, "command timed out");

    if (handler) {
        handler(data, NULL, NGX_ETIMEDOUT);
    }
}


static void
ngx_http_aigw_redis_free_cmd(ngx_http_aigw_redis_cmd_t *cmd)
{
    redisFreeCommand(cmd->command);
    ngx_free(cmd);
}


static void
ngx_http_aigw_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_aigw_redis_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (c->close) {
        /* idle at a worker's shutdown, or worker_shutdown_timeout */
        ngx_http_aigw_redis_close(conn, NULL);
        return;
    }

    /* may free conn */
    redisAsyncHandleRead(conn->ac);
}


static void
ngx_http_aigw_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_aigw_redis_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    redisAsyncHandleWrite(conn->ac);
}


/*
 * hiredis's hooks.  Level-triggered: hiredis reads at most 16 KB a call
 * and asks for write events only while it has something to send.
 */

static void
ngx_http_aigw_redis_add_read(void *data)
{
    ngx_http_aigw_redis_conn_t  *conn = data;

    if (!conn->c->read->active) {
        (void) ngx_add_event(conn->c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_aigw_redis_del_read(void *data)
{
    ngx_http_aigw_redis_conn_t  *conn = data;

    if (conn->c->read->active) {
        (void) ngx_del_event(conn->c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_aigw_redis_add_write(void *data)
{
    ngx_http_aigw_redis_conn_t  *conn = data;

    if (!conn->c->write->active) {
        (void) ngx_add_event(conn->c->write, NGX_WRITE_EVENT,
                             NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_aigw_redis_del_write(void *data)
{
    ngx_http_aigw_redis_conn_t  *conn = data;

    if (conn->c->write->active) {
        (void) ngx_del_event(conn->c->write, NGX_WRITE_EVENT,
                             NGX_LEVEL_EVENT);
    }
}


/* the context is being freed; hiredis closes the socket right after */

static void
ngx_http_aigw_redis_cleanup(void *data)
{
    ngx_http_aigw_redis_conn_t  *conn = data;

    ngx_connection_t  *c;

    if (conn->slot) {
        /* lost: hiredis gave up on it */
        ngx_http_aigw_redis_detach(conn, conn->ac->errstr
                                         ? conn->ac->errstr : "lost");
    }

    c = conn->c;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (ngx_del_conn) {
        ngx_del_conn(c, NGX_CLOSE_EVENT);

    } else {
        if (c->read->active || c->read->disabled) {
            ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->write->active || c->write->disabled) {
            ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
        }
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->read->closed = 1;
    c->write->closed = 1;

    ngx_free_connection(c);

    c->fd = (ngx_socket_t) -1;

    conn->ac->ev.addRead = NULL;
    conn->ac->ev.delRead = NULL;
    conn->ac->ev.addWrite = NULL;
    conn->ac->ev.delWrite = NULL;
    conn->ac->ev.data = NULL;

    ngx_free(conn);
}


/* a worker's exit: connections closed, commands freed, nobody called */

static void
ngx_http_aigw_redis_exit(void *data)
{
    ngx_http_aigw_redis_t  *rd = data;

    ngx_uint_t  i;

    rd->exiting = 1;

    for (i = 0; i < rd->pool; i++) {
        if (rd->slots[i].conn) {
            ngx_http_aigw_redis_close(rd->slots[i].conn, NULL);
        }
    }
}
