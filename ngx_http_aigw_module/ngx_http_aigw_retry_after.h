
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_RETRY_AFTER_H_INCLUDED_
#define _NGX_HTTP_AIGW_RETRY_AFTER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * The waits a provider asks for, in milliseconds, read only inside
 * [p, p + len); 0 when the value is not one, or longer than a day.
 */

/* the longest wait taken from a header: a day */
#define NGX_HTTP_AIGW_RETRY_AFTER_MAX  86400000

/* Retry-After: delta-seconds ("7"); an HTTP date is not read (0) */
ngx_msec_t ngx_http_aigw_retry_after(u_char *p, size_t len);

/* x-ratelimit-reset-*: "6m0s", "1.5s", "20ms", "1h", "2" (seconds) */
ngx_msec_t ngx_http_aigw_retry_after_duration(u_char *p, size_t len);


#endif /* _NGX_HTTP_AIGW_RETRY_AFTER_H_INCLUDED_ */
