
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_PII_H_INCLUDED_
#define _NGX_HTTP_AIGW_PII_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#if !(NGX_PCRE2)
#error ngx_http_aigw_pii needs nginx built with PCRE2
#endif

#define PCRE2_CODE_UNIT_WIDTH  8
#include <pcre2.h>


/*
 * The PII detectors and the matcher of the text spans of a body.  The
 * matcher (ngx_http_aigw_pii_scan.c) uses nothing of nginx but macros,
 * so that its unit test and its bench link only PCRE2; the access step,
 * directives and counters are in ngx_http_aigw_pii.c.
 */


/* a detector's mode in a location, and its metric action (mode - 1) */
#define NGX_HTTP_AIGW_PII_OFF          0
#define NGX_HTTP_AIGW_PII_LOG          1
#define NGX_HTTP_AIGW_PII_REDACT       2
#define NGX_HTTP_AIGW_PII_BLOCK        3
#define NGX_HTTP_AIGW_PII_ACTIONS      3

/* built-in detectors and custom patterns together */
#define NGX_HTTP_AIGW_PII_MAX          64
#define NGX_HTTP_AIGW_PII_NAME         31


typedef ngx_uint_t (*ngx_http_aigw_pii_check_pt)(u_char *p, u_char *last);


typedef struct {
    const char                    *name;     /* "email", in directives */
    const char                    *label;    /* "EMAIL", in placeholders */
    const char                    *pattern;  /* PCRE2 */
    u_char                         anchor;   /* see ngx_http_aigw_pii_t */
    const char                    *need;
    ngx_uint_t                     digits;   /* see ngx_http_aigw_pii_t */
    ngx_uint_t                     capitals;
    ngx_http_aigw_pii_check_pt     check;
} ngx_http_aigw_pii_builtin_t;


typedef struct {
    ngx_str_t                      name;
    ngx_str_t                      label;
    pcre2_code                    *re;

    /*
     * An anchored detector (the pattern starts with \G) is tried only
     * where its anchor byte is, found with memchr(), from the start of
     * the run of "back" bytes before it: an email from its local part
     * before "@", an IPv6 address from its first group before ":".
     */
    u_char                         anchor;

    /* what every match starts with: searched from its first one */
    ngx_str_t                      need;

    /*
     * A number's detector (digits > 0) runs only on the runs of digits
     * and " .-()+" of a text that hold at least that many digits, or,
     * with capitals, from that many capital letters just before a run
     * (an IBAN's country): one pass finds them for all such detectors.
     */
    ngx_uint_t                     digits;
    ngx_uint_t                     capitals;

    ngx_http_aigw_pii_check_pt     check;
    ngx_uint_t                     custom;    /* 1: may match any byte */
    ngx_uint_t                     slot;      /* its counters */
} ngx_http_aigw_pii_t;


typedef struct {
    u_char                        *start;
    u_char                        *end;
    ngx_uint_t                     detector;
} ngx_http_aigw_pii_found_t;


/* the built-in detectors, ending with a NULL name */
extern ngx_http_aigw_pii_builtin_t  ngx_http_aigw_pii_builtins[];

ngx_uint_t ngx_http_aigw_pii_luhn(u_char *p, u_char *last);
ngx_uint_t ngx_http_aigw_pii_mod97(u_char *p, u_char *last);

/*
 * Finds in [start, end), the JSON-escaped text of a string, what the
 * detectors whose modes[] are not OFF match: appended to found (room
 * for size), in text order, none overlapping another, none starting or
 * ending within an escape or a UTF-8 sequence.  Returns how many were
 * kept, or NGX_ERROR (a PCRE2 error other than no match, such as its
 * match limit: the caller must not let the text go unchecked).  When
 * found has no room for every match, the number returned is above
 * size: the caller calls again with that much room.
 */
ngx_int_t ngx_http_aigw_pii_find(ngx_http_aigw_pii_t *det, ngx_uint_t n,
    u_char *modes, pcre2_match_data *md, u_char *start, u_char *end,
    ngx_http_aigw_pii_found_t *found, ngx_uint_t size);


#endif /* _NGX_HTTP_AIGW_PII_H_INCLUDED_ */
