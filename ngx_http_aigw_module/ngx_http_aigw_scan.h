
/*
 * Copyright (C) aigw authors
 */


#ifndef _NGX_HTTP_AIGW_SCAN_H_INCLUDED_
#define _NGX_HTTP_AIGW_SCAN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_aigw_usage.h"


/*
 * The one scan of a request body (RFC 8259 JSON, whole in memory), and
 * of a provider's JSON answer before the client gets it.  It
 * validates the body and records, as spans of the client's bytes, what
 * the gateway reads: the top-level fields below and the text of every
 * message.  It never allocates and never writes to the body; nesting is
 * bounded by NGX_HTTP_AIGW_SCAN_DEPTH, top-level keys by
 * NGX_HTTP_AIGW_SCAN_KEYS.
 */


#define NGX_HTTP_AIGW_SCAN_DEPTH       64
#define NGX_HTTP_AIGW_SCAN_KEYS        128


/* top-level fields, by their exact (unescaped) names */
#define NGX_HTTP_AIGW_F_MODEL                  0
#define NGX_HTTP_AIGW_F_STREAM                 1
#define NGX_HTTP_AIGW_F_STREAM_OPTIONS         2
#define NGX_HTTP_AIGW_F_USER                   3
#define NGX_HTTP_AIGW_F_METADATA               4
#define NGX_HTTP_AIGW_F_MAX_TOKENS             5
#define NGX_HTTP_AIGW_F_MAX_COMPLETION_TOKENS  6
#define NGX_HTTP_AIGW_F_TOOLS                  7
#define NGX_HTTP_AIGW_F_MESSAGES               8
#define NGX_HTTP_AIGW_F_INPUT                  9
#define NGX_HTTP_AIGW_F_SYSTEM                 10
#define NGX_HTTP_AIGW_F_PROMPT                 11
#define NGX_HTTP_AIGW_F_USAGE                  12  /* of an answer */
#define NGX_HTTP_AIGW_F_ID                     13  /* of an answer */
#define NGX_HTTP_AIGW_F_PREVIOUS_RESPONSE_ID   14
#define NGX_HTTP_AIGW_F_INSTRUCTIONS           15  /* the Responses API's */
/* second level, where the gateway edits: the last such key */
#define NGX_HTTP_AIGW_F_INCLUDE_USAGE          16  /* stream_options. */
#define NGX_HTTP_AIGW_F_USER_ID                17  /* metadata. */
#define NGX_HTTP_AIGW_F_N                      18


typedef struct {
    u_char                     *key;    /* the key's opening quote, */
                                        /* NULL if absent */
    u_char                     *start;  /* the value's first byte */
    u_char                     *end;    /* past the value's last byte */
} ngx_http_aigw_field_t;


/* a string's content between its quotes, still JSON-escaped */
typedef struct {
    u_char                     *start;
    u_char                     *end;
} ngx_http_aigw_span_t;


/* what is wrong with "messages", "input" or "prompt", if anything */
#define NGX_HTTP_AIGW_SHAPE_OK         0
#define NGX_HTTP_AIGW_SHAPE_TYPE       1  /* an element of a wrong type */
#define NGX_HTTP_AIGW_SHAPE_NO_ROLE    2  /* a message without "role" */
#define NGX_HTTP_AIGW_SHAPE_ROLE_TYPE  3  /* a "role" not a string */

/* what is wrong with the text, if anything */
#define NGX_HTTP_AIGW_TEXT_OK          0
#define NGX_HTTP_AIGW_TEXT_NUL         1  /* a \u0000 escape */
#define NGX_HTTP_AIGW_TEXT_UTF8        2  /* invalid UTF-8 (RFC 3629) */


/*
 * The first element that is not as it should be in a top-level array:
 * of "messages", an object with a "role" key (the last one counts)
 * whose value is a string; of "input" or "prompt", a string, a number
 * (a token) or an array of numbers.
 */
typedef struct {
    ngx_uint_t                  error;  /* NGX_HTTP_AIGW_SHAPE_ */
    ngx_uint_t                  index;  /* the element's, from 0 */
    ngx_uint_t                  count;  /* elements of the array */
    u_char                     *value;  /* the first byte of the value */
                                        /* of a wrong type: the element, */
                                        /* a token, or the role; NULL */
                                        /* if the role is missing */
} ngx_http_aigw_shape_t;


typedef struct {
    ngx_http_aigw_field_t       field[NGX_HTTP_AIGW_F_N];

    u_char                     *open;   /* the top-level '{' */
    u_char                     *close;  /* the top-level '}' */

    /*
     * Text content, in body order: string values of "messages",
     * "input", "prompt" and "system" (a string, or strings of an
     * array), and within them, at any depth, the string values of
     * "content" and "text" keys of objects and the strings of their
     * arrays.  The caller gives the array; ntext counts every span,
     * also those past text_size, which are not stored.
     */
    ngx_http_aigw_span_t       *text;
    ngx_uint_t                  text_size;
    ngx_uint_t                  ntext;

    /*
     * Every top-level key, in body order, as the content between its
     * quotes (still JSON-escaped): at most NGX_HTTP_AIGW_SCAN_KEYS, as
     * more is an error.  The caller gives an array of that many, or
     * NULL (the keys are counted, not kept): an array in the request's
     * context would be zeroed with it on every request.
     */
    ngx_http_aigw_span_t       *keys;
    ngx_uint_t                  nkeys;

    /* unescaped UTF-8 bytes of all string values but "model"'s */
    size_t                      string_bytes;

    /*
     * The counts of the top-level "usage" object of an answer, read as
     * the scan passes them, as ngx_http_aigw_usage_read() reads them
     * (keys at any depth, non-negative integers): valid when
     * field[NGX_HTTP_AIGW_F_USAGE] is set and its value is an object.
     */
    ngx_http_aigw_usage_t       usage;

    /*
     * Checks of what the gateway reads, made on the way, valid after
     * NGX_OK.  The shapes are checked only when the field's value is an
     * array.  text_error is the first \u0000 escape or invalid UTF-8
     * sequence in text content (all of it, stored or not), in body
     * order; text_at is where it starts, and text_field the top-level
     * field it is in (NGX_HTTP_AIGW_F_MESSAGES, _INPUT, _PROMPT or
     * _SYSTEM).  Other strings' bytes are not checked.
     */
    ngx_http_aigw_shape_t       messages;
    ngx_http_aigw_shape_t       input;
    ngx_http_aigw_shape_t       prompt;

    ngx_uint_t                  text_error;  /* NGX_HTTP_AIGW_TEXT_ */
    ngx_uint_t                  text_field;
    u_char                     *text_at;

    /* after an error: where (offset in the body) and why */
    size_t                      error;
    const char                 *reason;
} ngx_http_aigw_scan_t;


/*
 * NGX_OK: a valid JSON object; NGX_DECLINED: valid JSON whose top-level
 * object has a key twice (s->error is the offset of the second);
 * NGX_ERROR: anything else (not JSON, not an object, too deep, too many
 * top-level keys), with s->error and s->reason set.
 *
 * The caller sets text and text_size (may be NULL and 0); every other
 * member is set by the scan.
 */
ngx_int_t ngx_http_aigw_scan(ngx_http_aigw_scan_t *s, u_char *p,
    u_char *last);

/*
 * Unescapes the content of a JSON string [p, last), as found by the scan,
 * into dst, which has room for last - p bytes.  Returns the end of what
 * was written.  \u escapes become UTF-8; a lone surrogate becomes
 * U+FFFD.
 */
u_char *ngx_http_aigw_scan_unescape(u_char *dst, u_char *p, u_char *last);

/* 1 if the content of a JSON string [p, last) unescapes to name */
ngx_uint_t ngx_http_aigw_scan_equal(u_char *p, u_char *last, u_char *name,
    size_t len);


#endif /* _NGX_HTTP_AIGW_SCAN_H_INCLUDED_ */
