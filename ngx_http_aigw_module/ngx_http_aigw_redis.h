
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_REDIS_H_INCLUDED_
#define _NGX_HTTP_AIGW_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <hiredis/hiredis.h>


/*
 * Redis for the workers of one nginx, through hiredis's asynchronous API
 * on nginx's own event loop and timers: never a blocking call.  Each
 * worker keeps up to "pool" connections, opened when first needed and
 * again, no more often than once a second, after they fail.  Every
 * command has a deadline (the "timeout" of aigw_redis); scripts are run
 * by EVALSHA, loaded again when Redis answers NOSCRIPT.
 */


typedef struct ngx_http_aigw_redis_s         ngx_http_aigw_redis_t;
typedef struct ngx_http_aigw_redis_script_s  ngx_http_aigw_redis_script_t;


/*
 * Called exactly once for each command accepted by
 * ngx_http_aigw_redis_eval(), from the event loop, never from within
 * that call: reply is the answer (an error reply included), or NULL with
 * rc NGX_ETIMEDOUT (the deadline passed) or NGX_ERROR (no connection, or
 * it failed).  The reply is freed when the handler returns.
 */
typedef void (*ngx_http_aigw_redis_handler_pt)(void *data,
    redisReply *reply, ngx_int_t rc);


/*
 * aigw_redis ADDRESS[:PORT] [password=SECRET|password_env=NAME]
 *            [db=N] [timeout=TIME] [pool=N];
 * in the http block; the address is an IP address (no name is resolved
 * in a worker).
 */
char *ngx_http_aigw_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* a Lua script, known to the configuration; its SHA-1 is computed now */
ngx_http_aigw_redis_script_t *ngx_http_aigw_redis_script(ngx_conf_t *cf,
    ngx_http_aigw_redis_t *rd, ngx_str_t *source);

/*
 * Runs a script with keys and arguments (EVALSHA sha numkeys k... a...).
 * NGX_OK: the handler will be called; NGX_DECLINED: Redis is not
 * reachable now (no connection, and none may be tried yet): the handler
 * will not be called; NGX_ERROR: out of memory.  The arguments are
 * copied.  A command may outlive the request that made it: a request
 * that goes away first calls ngx_http_aigw_redis_cancel().
 */
ngx_int_t ngx_http_aigw_redis_eval(ngx_http_aigw_redis_t *rd,
    ngx_http_aigw_redis_script_t *script, ngx_uint_t nkeys,
    ngx_uint_t argc, ngx_str_t *argv, ngx_http_aigw_redis_handler_pt handler,
    void *data, ngx_log_t *log, void **cmd);

/* the handler of a command will not be called: its request is gone */
void ngx_http_aigw_redis_cancel(void *cmd);


#endif /* _NGX_HTTP_AIGW_REDIS_H_INCLUDED_ */
