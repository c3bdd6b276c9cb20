
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_http_aigw_scan.h"

#if (defined __SSE2__)
#include <emmintrin.h>
#endif


/*
 * Only macros and inline code from the nginx headers are used here, never
 * nginx's object code, so that t/unit/test_scan.c and the fuzz harness can
 * build this file alone.
 */


#define NGX_HTTP_AIGW_SCAN_NONE      0xff
#define NGX_HTTP_AIGW_SCAN_FAILED    ((size_t) -1)

/* what a value is to the gateway, decided by where it stands */
#define NGX_HTTP_AIGW_V_TEXT         0x01  /* a string here is text */
#define NGX_HTTP_AIGW_V_TEXT_ARRAY   0x02  /* an array's strings are text */
#define NGX_HTTP_AIGW_V_TREE         0x04  /* in messages, input... */
#define NGX_HTTP_AIGW_V_NO_COUNT     0x08  /* "model": no string_bytes */
#define NGX_HTTP_AIGW_V_OPTIONS      0x10  /* stream_options */
#define NGX_HTTP_AIGW_V_METADATA     0x20  /* metadata */
#define NGX_HTTP_AIGW_V_OBJECT       0x40  /* a level: object, not array */
#define NGX_HTTP_AIGW_V_TOP          0x80  /* a level: the top-level object */

/*
 * The checks of "messages", "input" and "prompt": the top-level value,
 * then its array; an element of it (the level's bit << 3), a message
 * object, a token array and a role.
 */
#define NGX_HTTP_AIGW_V_MESSAGES     0x0100  /* "messages" */
#define NGX_HTTP_AIGW_V_INPUT        0x0200  /* "input", "prompt" */
#define NGX_HTTP_AIGW_V_TOKENS       0x0400  /* an array in "input" */
#define NGX_HTTP_AIGW_V_MESSAGE      0x0800  /* an element of "messages" */
#define NGX_HTTP_AIGW_V_ITEM         0x1000  /* an element of "input" */
#define NGX_HTTP_AIGW_V_TOKEN        0x2000  /* a token array's element */
#define NGX_HTTP_AIGW_V_ROLE         0x4000  /* a message's "role" */
#define NGX_HTTP_AIGW_V_IN_MESSAGE   0x8000  /* a level: a message */

/* an answer's "usage", and a value there that may be a count */
#define NGX_HTTP_AIGW_V_USAGE        0x10000
#define NGX_HTTP_AIGW_V_COUNT        0x20000

#define NGX_HTTP_AIGW_V_ELEMENTS                                             \
    (NGX_HTTP_AIGW_V_MESSAGES|NGX_HTTP_AIGW_V_INPUT|NGX_HTTP_AIGW_V_TOKENS)

#define NGX_HTTP_AIGW_V_CHECK                                                \
    (NGX_HTTP_AIGW_V_MESSAGE|NGX_HTTP_AIGW_V_ITEM|NGX_HTTP_AIGW_V_TOKEN      \
     |NGX_HTTP_AIGW_V_ROLE)

#define NGX_HTTP_AIGW_V_INHERIT                                              \
    (NGX_HTTP_AIGW_V_TREE|NGX_HTTP_AIGW_V_NO_COUNT|NGX_HTTP_AIGW_V_USAGE)

/*
 * The plain run of a string is scanned 16 bytes at a time: with SSE2
 * intrinsics on x86-64, else with the vector extensions of gcc and clang
 * (NEON on arm64), the last bytes of a body in the 16 that end it.  The
 * byte loop is the portable fallback, and takes bodies of less than 16
 * bytes.
 */
#if (defined __SSE2__)
#define NGX_HTTP_AIGW_SCAN_SSE2      1

#elif (NGX_HAVE_LITTLE_ENDIAN && defined __GNUC__)
#define NGX_HTTP_AIGW_SCAN_VECTOR    1
typedef u_char  ngx_http_aigw_scan_vec_t __attribute__((vector_size(16)));
typedef char    ngx_http_aigw_scan_mask_t __attribute__((vector_size(16)));

#define ngx_http_aigw_scan_stops(v)                                          \
    (((v) == '"') | ((v) == '\\') | ((v) < 0x20))

/* in text, a byte past ASCII stops too, to be checked as UTF-8 */
#define ngx_http_aigw_scan_text_stops(v)                                     \
    (((v) == '"') | ((v) == '\\') | ((v) < 0x20) | ((v) >= 0x80))
#endif

#if (NGX_HTTP_AIGW_SCAN_SSE2 || NGX_HTTP_AIGW_SCAN_VECTOR)
#define ngx_http_aigw_scan_ctz(m)    ((ngx_uint_t) (u_int) __builtin_ctz(m))
#endif


/* whitespace may stand before any token, and is rare in bodies */
#define ngx_http_aigw_scan_skip(p, last)                                     \
    while (p < last && *p <= ' '                                             \
           && (*p == ' ' || *p == '\t' || *p == LF || *p == CR))             \
    {                                                                        \
        p++;                                                                 \
    }

/* an unescaped key's bytes against a name, inlined by the compiler */
#define ngx_http_aigw_scan_name(p, name)                                     \
    (ngx_memcmp(p, name, sizeof(name) - 1) == 0)


typedef struct {
    u_char                     *quote;
    u_char                     *end;
    size_t                      len;      /* unescaped */
    ngx_uint_t                  escaped;
} ngx_http_aigw_scan_key_t;


/*
 * the top-level keys, kept for the duplicate check; and the count a key
 * in "usage" names, kept here, in memory, not in a register of the loop
 */
typedef struct {
    ngx_http_aigw_scan_key_t    keys[NGX_HTTP_AIGW_SCAN_KEYS];
    ngx_uint_t                  nkeys;
    uint64_t                    lens;     /* a bit per length and last */
                                          /* byte, modulo 64 */
    ngx_uint_t                  escaped;  /* a key with an escape seen */
    u_char                     *dup;      /* the first key seen twice */
    ngx_int_t                   count;    /* the usage count a key names */
} ngx_http_aigw_scan_top_t;


/* a string's end, returned in two registers */
typedef struct {
    u_char                     *end;      /* the closing quote, or where */
                                          /* the error is */
    size_t                      saved;    /* how much shorter unescaped, */
                                          /* or NGX_HTTP_AIGW_SCAN_FAILED */
} ngx_http_aigw_scan_str_t;


typedef struct {
    u_char                     *p;
    u_char                     *last;
    u_char                      buf[4];
    ngx_uint_t                  n;
    ngx_uint_t                  i;
} ngx_http_aigw_scan_iter_t;


static ngx_inline ngx_http_aigw_scan_str_t ngx_http_aigw_scan_quote(
    ngx_http_aigw_scan_t *s, u_char *p, u_char *last, u_char *vend,
    ngx_uint_t text);
static ngx_inline u_char *ngx_http_aigw_scan_stop(ngx_http_aigw_scan_t *s,
    u_char *p, u_char *last, u_char *vend, ngx_uint_t text);
#if (NGX_HTTP_AIGW_SCAN_SSE2 || NGX_HTTP_AIGW_SCAN_VECTOR)
static ngx_inline ngx_uint_t ngx_http_aigw_scan_mask(u_char *p,
    ngx_uint_t text);
#endif
static ngx_http_aigw_scan_str_t ngx_http_aigw_scan_escapes(
    ngx_http_aigw_scan_t *s, u_char *p, u_char *last, u_char *vend,
    ngx_uint_t text);
static u_char *ngx_http_aigw_scan_utf8(u_char *p, u_char *last);
static void ngx_http_aigw_scan_wrong(ngx_http_aigw_shape_t *shape,
    ngx_uint_t error, ngx_uint_t index, u_char *value);
static ngx_uint_t ngx_http_aigw_scan_in(ngx_http_aigw_scan_t *s, u_char *p);
static ngx_inline u_char *ngx_http_aigw_scan_number(u_char *p,
    u_char *last);
static void ngx_http_aigw_scan_count(ngx_http_aigw_scan_t *s, ngx_int_t i,
    u_char *p, u_char *last);
static ngx_uint_t ngx_http_aigw_scan_top(ngx_http_aigw_scan_t *s,
    ngx_http_aigw_scan_top_t *top, u_char *quote, u_char *end, size_t saved);
static ngx_uint_t ngx_http_aigw_scan_field(u_char *p, u_char *last,
    size_t len, ngx_uint_t escaped);
static ngx_uint_t ngx_http_aigw_scan_is(u_char *p, u_char *last, size_t len,
    ngx_str_t *name);
static ngx_inline ngx_uint_t ngx_http_aigw_scan_text_key(u_char *p,
    u_char *last, size_t saved);
static ngx_uint_t ngx_http_aigw_scan_dup(ngx_http_aigw_scan_key_t *keys,
    ngx_uint_t n);
static ngx_uint_t ngx_http_aigw_scan_same(ngx_http_aigw_scan_key_t *a,
    ngx_http_aigw_scan_key_t *b);
static ngx_int_t ngx_http_aigw_scan_hex4(u_char *p);
static ngx_uint_t ngx_http_aigw_scan_pair(u_char *p, u_char *last,
    ngx_uint_t cp);
static u_char *ngx_http_aigw_scan_char(u_char *p, u_char *last,
    u_char *buf, ngx_uint_t *n);
static ngx_int_t ngx_http_aigw_scan_byte(ngx_http_aigw_scan_iter_t *it);


/* in the order of the NGX_HTTP_AIGW_F_ numbers */
static ngx_str_t  ngx_http_aigw_scan_fields[] = {
    ngx_string("model"),
    ngx_string("stream"),
    ngx_string("stream_options"),
    ngx_string("user"),
    ngx_string("metadata"),
    ngx_string("max_tokens"),
    ngx_string("max_completion_tokens"),
    ngx_string("tools"),
    ngx_string("messages"),
    ngx_string("input"),
    ngx_string("system"),
    ngx_string("prompt"),
    ngx_string("usage"),
    ngx_string("id"),
    ngx_string("previous_response_id"),
    ngx_string("instructions")
};

/* what a top-level field's value is, by field */
static uint32_t  ngx_http_aigw_scan_vflags[] = {
    NGX_HTTP_AIGW_V_NO_COUNT,                               /* model */
    0,
    NGX_HTTP_AIGW_V_OPTIONS,                                /* stream_options */
    0,
    NGX_HTTP_AIGW_V_METADATA,                               /* metadata */
    0,
    0,
    0,
    NGX_HTTP_AIGW_V_TEXT|NGX_HTTP_AIGW_V_TEXT_ARRAY
    |NGX_HTTP_AIGW_V_TREE|NGX_HTTP_AIGW_V_MESSAGES,         /* messages */
    NGX_HTTP_AIGW_V_TEXT|NGX_HTTP_AIGW_V_TEXT_ARRAY
    |NGX_HTTP_AIGW_V_TREE|NGX_HTTP_AIGW_V_INPUT,            /* input */
    NGX_HTTP_AIGW_V_TEXT|NGX_HTTP_AIGW_V_TEXT_ARRAY
    |NGX_HTTP_AIGW_V_TREE,                                  /* system */
    NGX_HTTP_AIGW_V_TEXT|NGX_HTTP_AIGW_V_TEXT_ARRAY
    |NGX_HTTP_AIGW_V_TREE|NGX_HTTP_AIGW_V_INPUT,            /* prompt */
    NGX_HTTP_AIGW_V_USAGE,                                  /* usage */
    0,
    0,
    NGX_HTTP_AIGW_V_TEXT|NGX_HTTP_AIGW_V_TEXT_ARRAY
    |NGX_HTTP_AIGW_V_TREE                                   /* instructions */
};

static ngx_str_t  ngx_http_aigw_scan_include_usage =
    ngx_string("include_usage");
static ngx_str_t  ngx_http_aigw_scan_user_id = ngx_string("user_id");
static ngx_str_t  ngx_http_aigw_scan_content = ngx_string("content");
static ngx_str_t  ngx_http_aigw_scan_text = ngx_string("text");
static ngx_str_t  ngx_http_aigw_scan_role = ngx_string("role");


/*
 * One pass, token by token: each place in the grammar goes straight to
 * what may follow it, and tests for that byte first, so that most tokens
 * cost a compare or two besides their own bytes; whitespace is skipped
 * only when the byte is not the one expected.  Strings are first scanned
 * to their first quote, backslash or control byte; only a string that
 * stops at a backslash or a control byte takes the slow path.
 *
 * On the way, what the body step checks: the elements of "messages",
 * "input" and "prompt", looked at where a value starts when the value's
 * flags say so (NGX_HTTP_AIGW_V_CHECK), a message's role when its object
 * closes; and text strings are scanned to a byte past ASCII too, which
 * the slow path checks as UTF-8, as it checks escapes for \u0000.  In an
 * answer's top-level "usage" object (NGX_HTTP_AIGW_V_USAGE), a key that
 * names a count marks its value (NGX_HTTP_AIGW_V_COUNT), which is read
 * into s->usage where it is a number.
 */

ngx_int_t
ngx_http_aigw_scan(ngx_http_aigw_scan_t *s, u_char *p, u_char *last)
{
    u_char                     *body, *q, *vend, *role;
    size_t                      len;
    ngx_uint_t                  depth, vflags, vfield, lflags, index;
    ngx_http_aigw_scan_str_t    str;
    ngx_http_aigw_scan_top_t    top;
    ngx_http_aigw_shape_t      *shape;
    uint32_t                    flags[NGX_HTTP_AIGW_SCAN_DEPTH];
    u_char                      fields[NGX_HTTP_AIGW_SCAN_DEPTH];

    ngx_memzero(s->field, sizeof(s->field));
    s->open = NULL;
    s->close = NULL;
    s->error = 0;
    s->reason = NULL;

    ngx_memzero(&s->messages, sizeof(ngx_http_aigw_shape_t));
    ngx_memzero(&s->input, sizeof(ngx_http_aigw_shape_t));
    ngx_memzero(&s->prompt, sizeof(ngx_http_aigw_shape_t));
    s->text_error = NGX_HTTP_AIGW_TEXT_OK;
    s->text_field = NGX_HTTP_AIGW_F_MESSAGES;
    s->text_at = NULL;

    body = p;
    vend = (last - p >= 16) ? last - 15 : p;
    s->ntext = 0;
    s->nkeys = 0;
    s->string_bytes = 0;

    ngx_http_aigw_scan_skip(p, last);

    if (p == last || *p != '{') {
        s->reason = "not a JSON object";
        goto failed;
    }

    s->open = p;

    depth = 0;
    vflags = 0;
    vfield = NGX_HTTP_AIGW_SCAN_NONE;
    lflags = 0;
    top.nkeys = 0;
    top.lens = 0;
    top.escaped = 0;
    top.dup = NULL;

    shape = &s->messages;
    index = 0;
    role = NULL;
    top.count = NGX_ERROR;

    /* the top-level object is a value */

value:

    if (p == last) {
        goto end;
    }

    if (vfield != NGX_HTTP_AIGW_SCAN_NONE) {
        s->field[vfield].start = p;
    }

    if (vflags & NGX_HTTP_AIGW_V_CHECK) {

        /* an element of "messages", "input" or "prompt", or a role */

        if (*p == ' ' || *p == '\t' || *p == LF || *p == CR) {
            p++;
            goto value;
        }

        if (vflags & NGX_HTTP_AIGW_V_MESSAGE) {
            if (*p == '{') {
                vflags |= NGX_HTTP_AIGW_V_IN_MESSAGE;
                role = NULL;

            } else {
                ngx_http_aigw_scan_wrong(shape, NGX_HTTP_AIGW_SHAPE_TYPE,
                                         index, p);
            }

            index++;
            shape->count = index;

        } else if (vflags & NGX_HTTP_AIGW_V_ITEM) {
            if (*p == '[') {
                vflags |= NGX_HTTP_AIGW_V_TOKENS;

            } else if (*p != '"' && *p != '-' && (u_char) (*p - '0') >= 10) {
                ngx_http_aigw_scan_wrong(shape, NGX_HTTP_AIGW_SHAPE_TYPE,
                                         index, p);
            }

            index++;
            shape->count = index;

        } else if (vflags & NGX_HTTP_AIGW_V_TOKEN) {
            if (*p != '-' && (u_char) (*p - '0') >= 10) {
                ngx_http_aigw_scan_wrong(shape, NGX_HTTP_AIGW_SHAPE_TYPE,
                                         index - 1, p);
            }

        } else {
            role = p;
        }

        vflags &= ~NGX_HTTP_AIGW_V_CHECK;
    }

    /* strings first: most values are */

    if (*p == '"') {
        q = ++p;

        if (vflags & NGX_HTTP_AIGW_V_TEXT) {
            str = ngx_http_aigw_scan_quote(s, p, last, vend, 1);

        } else {
            str = ngx_http_aigw_scan_quote(s, p, last, vend, 0);
        }

        p = str.end;

        if (str.saved == NGX_HTTP_AIGW_SCAN_FAILED) {
            goto failed;
        }

        len = (p - q) - str.saved;

        if (vflags & NGX_HTTP_AIGW_V_TEXT) {
            if (s->ntext < s->text_size) {
                s->text[s->ntext].start = q;
                s->text[s->ntext].end = p;
            }

            s->ntext++;
        }

        if (!(vflags & NGX_HTTP_AIGW_V_NO_COUNT)) {
            s->string_bytes += len;
        }

        p++;
        goto scalar;
    }

    switch (*p) {

    case '{':
    case '[':
        if (depth == NGX_HTTP_AIGW_SCAN_DEPTH) {
            s->reason = "nested too deeply";
            goto failed;
        }

        fields[depth] = (u_char) vfield;

        if (*p++ == '{') {
            lflags = (vflags & ~(NGX_HTTP_AIGW_V_TEXT
                                 |NGX_HTTP_AIGW_V_TEXT_ARRAY
                                 |NGX_HTTP_AIGW_V_MESSAGES
                                 |NGX_HTTP_AIGW_V_INPUT))
                     | NGX_HTTP_AIGW_V_OBJECT;

            if (depth == 0) {
                lflags |= NGX_HTTP_AIGW_V_TOP;
            }

            flags[depth++] = (uint32_t) lflags;

            ngx_http_aigw_scan_skip(p, last);

            if (p < last && *p == '}') {
                goto close;
            }

            goto key;
        }

        lflags = vflags & ~(NGX_HTTP_AIGW_V_TEXT|NGX_HTTP_AIGW_V_OPTIONS
                            |NGX_HTTP_AIGW_V_METADATA);
        flags[depth++] = (uint32_t) lflags;

        if (vflags & (NGX_HTTP_AIGW_V_MESSAGES|NGX_HTTP_AIGW_V_INPUT)) {
            shape = (vfield == NGX_HTTP_AIGW_F_MESSAGES) ? &s->messages
                    : (vfield == NGX_HTTP_AIGW_F_INPUT) ? &s->input
                    : &s->prompt;
            index = 0;
        }

        ngx_http_aigw_scan_skip(p, last);

        if (p < last && *p == ']') {
            goto close;
        }

        goto element;

    case 't':
        if (last - p < 4 || !ngx_http_aigw_scan_name(p, "true")) {
            s->reason = "invalid literal";
            goto failed;
        }

        p += 4;
        break;

    case 'f':
        if (last - p < 5 || !ngx_http_aigw_scan_name(p, "false")) {
            s->reason = "invalid literal";
            goto failed;
        }

        p += 5;
        break;

    case 'n':
        if (last - p < 4 || !ngx_http_aigw_scan_name(p, "null")) {
            s->reason = "invalid literal";
            goto failed;
        }

        p += 4;
        break;

    case ' ': case '\t': case LF: case CR:
        p++;
        goto value;

    default:
        q = ngx_http_aigw_scan_number(p, last);

        if (q == NULL) {
            s->reason = "invalid value";
            goto failed;
        }

        if (vflags & NGX_HTTP_AIGW_V_COUNT) {
            ngx_http_aigw_scan_count(s, top.count, p, q);
        }

        p = q;
        break;
    }

scalar:

    /* a scalar value ends here */

    if (vfield != NGX_HTTP_AIGW_SCAN_NONE) {
        s->field[vfield].end = p;
    }

next:

    if (p < last && *p == ',') {
        goto comma;
    }

    ngx_http_aigw_scan_skip(p, last);

    if (p == last) {
        goto end;
    }

    if (*p == ((lflags & NGX_HTTP_AIGW_V_OBJECT) ? '}' : ']')) {
        goto close;
    }

    if (*p != ',') {
        s->reason = "expected a comma or a closing bracket";
        goto failed;
    }

comma:

    p++;

    if (lflags & NGX_HTTP_AIGW_V_OBJECT) {
        goto key;
    }

element:

    vflags = lflags & NGX_HTTP_AIGW_V_INHERIT;

    if (lflags & NGX_HTTP_AIGW_V_TEXT_ARRAY) {
        vflags |= NGX_HTTP_AIGW_V_TEXT;
    }

    /* the elements of "messages", "input" and of its token arrays */
    vflags |= (lflags & NGX_HTTP_AIGW_V_ELEMENTS) << 3;

    vfield = NGX_HTTP_AIGW_SCAN_NONE;
    goto value;

close:

    depth--;

    if (fields[depth] != NGX_HTTP_AIGW_SCAN_NONE) {
        s->field[fields[depth]].end = p + 1;
    }

    if (flags[depth] & NGX_HTTP_AIGW_V_IN_MESSAGE) {
        if (role == NULL) {
            ngx_http_aigw_scan_wrong(shape, NGX_HTTP_AIGW_SHAPE_NO_ROLE,
                                     index - 1, NULL);

        } else if (*role != '"') {
            ngx_http_aigw_scan_wrong(shape, NGX_HTTP_AIGW_SHAPE_ROLE_TYPE,
                                     index - 1, role);
        }
    }

    if (depth == 0) {
        goto done;
    }

    lflags = flags[depth - 1];
    p++;
    goto next;

key:

    if (lflags & (NGX_HTTP_AIGW_V_TOP|NGX_HTTP_AIGW_V_OPTIONS
                  |NGX_HTTP_AIGW_V_METADATA|NGX_HTTP_AIGW_V_NO_COUNT
                  |NGX_HTTP_AIGW_V_IN_MESSAGE))
    {
        goto any_key;
    }

    /*
     * The members of any object but the top-level one, stream_options,
     * metadata, a message and what "model" holds: keys matter only in a
     * text tree,
     * and string, number and literal values are taken here; anything
     * else, and whatever is not as expected, where any value is.
     */

member:

    if (p == last || *p != '"') {
        goto any_key;
    }

    q = p++;
    str = ngx_http_aigw_scan_quote(s, p, last, vend, 0);
    p = str.end;

    if (str.saved == NGX_HTTP_AIGW_SCAN_FAILED) {
        goto failed;
    }

    vflags = lflags & NGX_HTTP_AIGW_V_INHERIT;
    vfield = NGX_HTTP_AIGW_SCAN_NONE;

    if ((lflags & NGX_HTTP_AIGW_V_TREE)
        && ngx_http_aigw_scan_text_key(q + 1, p, str.saved))
    {
        vflags |= NGX_HTTP_AIGW_V_TEXT|NGX_HTTP_AIGW_V_TEXT_ARRAY;
        goto colon;
    }

    /*
     * A key inside an answer's "usage": if it names a count, its value is
     * read where it is a number, here or where any value is.  The usage
     * is read in the pass that checks the answer, not again after it.
     */

    if (lflags & NGX_HTTP_AIGW_V_USAGE) {
        top.count = ngx_http_aigw_usage_index(q + 1, p - q - 1);

        if (top.count != NGX_ERROR) {
            vflags |= NGX_HTTP_AIGW_V_COUNT;
        }
    }

    if (last - p < 3 || p[1] != ':') {
        goto colon;
    }

    p += 2;

    if (*p == '"') {
        q = ++p;
        str = ngx_http_aigw_scan_quote(s, p, last, vend, 0);
        p = str.end;

        if (str.saved == NGX_HTTP_AIGW_SCAN_FAILED) {
            goto failed;
        }

        s->string_bytes += (p - q) - str.saved;
        p++;

    } else if ((u_char) (*p - '0') < 10 || *p == '-') {
        q = ngx_http_aigw_scan_number(p, last);

        if (q == NULL) {
            s->reason = "invalid value";
            goto failed;
        }

        if (vflags & NGX_HTTP_AIGW_V_COUNT) {
            ngx_http_aigw_scan_count(s, top.count, p, q);
        }

        p = q;

    } else if (last - p >= 4
               && (ngx_http_aigw_scan_name(p, "null")
                   || ngx_http_aigw_scan_name(p, "true")))
    {
        p += 4;

    } else {
        goto value;
    }

    if (p == last || *p != ',') {
        goto next;
    }

    p++;
    goto member;

any_key:

    if (p == last || *p != '"') {
        ngx_http_aigw_scan_skip(p, last);

        if (p == last) {
            goto end;
        }

        if (*p != '"') {
            s->reason = "expected a key";
            goto failed;
        }
    }

    if (lflags & NGX_HTTP_AIGW_V_TOP) {
        goto top;
    }

    q = p++;
    str = ngx_http_aigw_scan_quote(s, p, last, vend, 0);
    p = str.end;

    if (str.saved == NGX_HTTP_AIGW_SCAN_FAILED) {
        goto failed;
    }

    len = (p - q - 1) - str.saved;

    /* where the value stands decides what it is */

    vflags = lflags & NGX_HTTP_AIGW_V_INHERIT;
    vfield = NGX_HTTP_AIGW_SCAN_NONE;

    if (lflags & NGX_HTTP_AIGW_V_USAGE) {
        goto count;
    }

    if (!(lflags & (NGX_HTTP_AIGW_V_TREE|NGX_HTTP_AIGW_V_OPTIONS
                    |NGX_HTTP_AIGW_V_METADATA)))
    {
        goto colon;
    }

    if (lflags & NGX_HTTP_AIGW_V_TREE) {
        if (ngx_http_aigw_scan_text_key(q + 1, p, str.saved)) {
            vflags |= NGX_HTTP_AIGW_V_TEXT|NGX_HTTP_AIGW_V_TEXT_ARRAY;

        } else if ((lflags & NGX_HTTP_AIGW_V_IN_MESSAGE)
                   && ngx_http_aigw_scan_is(q + 1, p, len,
                                            &ngx_http_aigw_scan_role))
        {
            vflags |= NGX_HTTP_AIGW_V_ROLE;
        }

    } else if ((lflags & NGX_HTTP_AIGW_V_OPTIONS)
               && ngx_http_aigw_scan_is(q + 1, p, len,
                                        &ngx_http_aigw_scan_include_usage))
    {
        vfield = NGX_HTTP_AIGW_F_INCLUDE_USAGE;
        s->field[vfield].key = q;

    } else if ((lflags & NGX_HTTP_AIGW_V_METADATA)
               && ngx_http_aigw_scan_is(q + 1, p, len,
                                        &ngx_http_aigw_scan_user_id))
    {
        vfield = NGX_HTTP_AIGW_F_USER_ID;
        s->field[vfield].key = q;
    }

    goto colon;

top:

    if (top.nkeys == NGX_HTTP_AIGW_SCAN_KEYS) {
        s->reason = "too many top-level keys";
        goto failed;
    }

    q = p++;
    str = ngx_http_aigw_scan_quote(s, p, last, vend, 0);
    p = str.end;

    if (str.saved == NGX_HTTP_AIGW_SCAN_FAILED) {
        goto failed;
    }

    vfield = ngx_http_aigw_scan_top(s, &top, q, p, str.saved);
    vflags = (vfield == NGX_HTTP_AIGW_SCAN_NONE)
             ? 0 : ngx_http_aigw_scan_vflags[vfield];

    goto colon;

count:

    /* a key in an answer's "usage" with a blank before it, as above */

    top.count = ngx_http_aigw_usage_index(q + 1, p - q - 1);

    if (top.count != NGX_ERROR) {
        vflags |= NGX_HTTP_AIGW_V_COUNT;
    }

colon:

    p++;

    if (p < last && *p == ':') {
        p++;
        goto value;
    }

    ngx_http_aigw_scan_skip(p, last);

    if (p == last) {
        goto end;
    }

    if (*p != ':') {
        s->reason = "expected a colon";
        goto failed;
    }

    p++;
    goto value;

done:

    s->close = p++;

    ngx_http_aigw_scan_skip(p, last);

    if (p != last) {
        s->reason = "data after the object";
        goto failed;
    }

    if (s->text_error) {
        s->text_field = ngx_http_aigw_scan_in(s, s->text_at);
    }

    if (top.dup) {
        s->error = top.dup - body;
        s->reason = "duplicate key";
        return NGX_DECLINED;
    }

    return NGX_OK;

end:

    s->reason = "unexpected end of body";

failed:

    s->error = p - body;

    return NGX_ERROR;
}


/*
 * The closing quote of a string whose content starts at p, and how much
 * shorter the content is unescaped.  Most strings end without an escape
 * and away from the body's last 16 bytes; the rest is
 * ngx_http_aigw_scan_escapes()'s, and in text (a constant, text is 1), a
 * byte past ASCII is too.
 * On an error: s->reason, saved is NGX_HTTP_AIGW_SCAN_FAILED and end is
 * the error's place.
 */

static ngx_inline ngx_http_aigw_scan_str_t
ngx_http_aigw_scan_quote(ngx_http_aigw_scan_t *s, u_char *p, u_char *last,
    u_char *vend, ngx_uint_t text)
{
#if (NGX_HTTP_AIGW_SCAN_SSE2 || NGX_HTTP_AIGW_SCAN_VECTOR)
    ngx_uint_t                m;
    ngx_http_aigw_scan_str_t  str;

    while (p < vend) {
        m = ngx_http_aigw_scan_mask(p, text);

        if (m) {
            p += ngx_http_aigw_scan_ctz(m);

            if (*p == '"') {
                str.end = p;
                str.saved = 0;
                return str;
            }

            break;
        }

        p += 16;
    }
#endif

    return ngx_http_aigw_scan_escapes(s, p, last, vend, text);
}


/*
 * The first quote, backslash or control byte from p on, or last, and in
 * text the first byte past ASCII too.  Blocks
 * of 16 bytes are read at p while p < vend (last - 15, or the body's start
 * when it is shorter than 16 bytes); the bytes after them, from the 16
 * that end the body, when these lie after the top-level '{'.
 */

static ngx_inline u_char *
ngx_http_aigw_scan_stop(ngx_http_aigw_scan_t *s, u_char *p, u_char *last,
    u_char *vend, ngx_uint_t text)
{
#if (NGX_HTTP_AIGW_SCAN_SSE2 || NGX_HTTP_AIGW_SCAN_VECTOR)
    ngx_uint_t  m;

    while (p < vend) {
        m = ngx_http_aigw_scan_mask(p, text);

        if (m) {
            return p + ngx_http_aigw_scan_ctz(m);
        }

        p += 16;
    }

    if (p < last && last - s->open >= 16) {
        m = ngx_http_aigw_scan_mask(last - 16, text) >> (16 - (last - p));

        return m ? p + ngx_http_aigw_scan_ctz(m) : last;
    }
#endif

    while (p < last && *p != '"' && *p != '\\' && *p >= 0x20
           && (!text || *p < 0x80))
    {
        p++;
    }

    return p;
}


#if (NGX_HTTP_AIGW_SCAN_SSE2)

/*
 * A bit per quote, backslash or control byte of the 16 at p; in text, per
 * byte past ASCII too: signed, these are below 0x20 with the controls.
 */

static ngx_inline ngx_uint_t
ngx_http_aigw_scan_mask(u_char *p, ngx_uint_t text)
{
    __m128i  v, q;

    v = _mm_loadu_si128((const __m128i *) p);

    q = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                     _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));

    if (text) {
        return (ngx_uint_t) _mm_movemask_epi8(
                   _mm_or_si128(q, _mm_cmplt_epi8(v, _mm_set1_epi8(0x20))));
    }

    return (ngx_uint_t) _mm_movemask_epi8(
               _mm_or_si128(q, _mm_cmpeq_epi8(
                                   _mm_min_epu8(v, _mm_set1_epi8(0x1f)), v)));
}

#elif (NGX_HTTP_AIGW_SCAN_VECTOR)

/* the same with the vector extensions: bytes 0xff, then a bit each */

static ngx_inline ngx_uint_t
ngx_http_aigw_scan_mask(u_char *p, ngx_uint_t text)
{
    uint64_t                    m[2];
    ngx_http_aigw_scan_vec_t    v;
    ngx_http_aigw_scan_mask_t   mask;

    ngx_memcpy(&v, p, 16);

    if (text) {
        mask = ngx_http_aigw_scan_text_stops(v);

    } else {
        mask = ngx_http_aigw_scan_stops(v);
    }

    ngx_memcpy(m, &mask, 16);

    /* byte i keeps bit i % 8; the sum of the bytes lands in the top one */

    m[0] &= 0x8040201008040201ULL;
    m[1] &= 0x8040201008040201ULL;

    return (ngx_uint_t) ((m[0] * 0x0101010101010101ULL) >> 56)
           | (ngx_uint_t) ((m[1] * 0x0101010101010101ULL) >> 56) << 8;
}

#endif


/*
 * The rest of a string from p on, as ngx_http_aigw_scan_quote() returns
 * it: long strings, strings near the body's end, escapes and errors; and
 * in text, UTF-8 and \u0000 checked, the first failure recorded.
 */

static ngx_http_aigw_scan_str_t
ngx_http_aigw_scan_escapes(ngx_http_aigw_scan_t *s, u_char *p, u_char *last,
    u_char *vend, ngx_uint_t text)
{
    u_char                   *q;
    size_t                    n;
    ngx_int_t                 cp;
    ngx_http_aigw_scan_str_t  str;

    n = 0;

    p = ngx_http_aigw_scan_stop(s, p, last, vend, text);

    for ( ;; ) {

        if (p == last) {
            s->reason = "unexpected end of body";
            goto failed;
        }

        if (*p == '"') {
            break;
        }

        if (*p >= 0x80) {

            /* in text only: a run of UTF-8 sequences */

            do {
                q = ngx_http_aigw_scan_utf8(p, last);

                if (q == NULL) {
                    if (s->text_error == NGX_HTTP_AIGW_TEXT_OK) {
                        s->text_error = NGX_HTTP_AIGW_TEXT_UTF8;
                        s->text_at = p;
                    }

                    q = p + 1;
                }

                p = q;

            } while (p < last && *p >= 0x80);

            goto plain;
        }

        if (*p != '\\') {
            s->reason = "control character in a string";
            goto failed;
        }

        if (last - p < 2) {
            p = last;
            s->reason = "unexpected end of body";
            goto failed;
        }

        switch (p[1]) {

        case '"': case '\\': case '/':
        case 'b': case 'f': case 'n': case 'r': case 't':
            n++;
            p += 2;
            goto plain;

        case 'u':
            break;

        default:
            s->reason = "invalid escape";
            goto failed;
        }

        if (last - p < 6) {
            p = last;
            s->reason = "unexpected end of body";
            goto failed;
        }

        cp = ngx_http_aigw_scan_hex4(p + 2);

        if (cp < 0) {
            s->reason = "invalid \\u escape";
            goto failed;
        }

        if (cp == 0 && text && s->text_error == NGX_HTTP_AIGW_TEXT_OK) {
            s->text_error = NGX_HTTP_AIGW_TEXT_NUL;
            s->text_at = p;
        }

        /* 6 bytes become 1 to 3; a surrogate pair, 12 become 4 */

        if (ngx_http_aigw_scan_pair(p, last, cp)) {
            n += 8;
            p += 12;
            goto plain;
        }

        n += (cp < 0x80) ? 5 : (cp < 0x800) ? 4 : 3;
        p += 6;

    plain:

        p = ngx_http_aigw_scan_stop(s, p, last, vend, text);
    }

    str.end = p;
    str.saved = n;

    return str;

failed:

    str.end = p;
    str.saved = NGX_HTTP_AIGW_SCAN_FAILED;

    return str;
}


/*
 * One UTF-8 sequence at p, by RFC 3629: no overlong forms, no surrogates,
 * nothing past U+10FFFF.  Returns its end, or NULL.
 */

static u_char *
ngx_http_aigw_scan_utf8(u_char *p, u_char *last)
{
    u_char      c;
    uint32_t    cp, min;
    ngx_uint_t  n;

    c = *p++;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 1;
        cp = c & 0x1f;
        min = 0x80;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2;
        cp = c & 0x0f;
        min = 0x800;

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3;
        cp = c & 0x07;
        min = 0x10000;

    } else {
        return NULL;
    }

    if ((size_t) (last - p) < n) {
        return NULL;
    }

    while (n--) {
        if ((*p & 0xc0) != 0x80) {
            return NULL;
        }

        cp = (cp << 6) | (*p++ & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return NULL;
    }

    return p;
}


/* the first thing wrong in an array of "messages", "input" or "prompt" */

static void
ngx_http_aigw_scan_wrong(ngx_http_aigw_shape_t *shape, ngx_uint_t error,
    ngx_uint_t index, u_char *value)
{
    if (shape->error == NGX_HTTP_AIGW_SHAPE_OK) {
        shape->error = error;
        shape->index = index;
        shape->value = value;
    }
}


/* the text field that p is in: "messages" if none else */

static ngx_uint_t
ngx_http_aigw_scan_in(ngx_http_aigw_scan_t *s, u_char *p)
{
    ngx_uint_t              i;
    ngx_http_aigw_field_t  *f;

    static ngx_uint_t  fields[] = {
        NGX_HTTP_AIGW_F_MESSAGES, NGX_HTTP_AIGW_F_INPUT,
        NGX_HTTP_AIGW_F_PROMPT, NGX_HTTP_AIGW_F_SYSTEM
    };

    for (i = 0; i < 4; i++) {
        f = &s->field[fields[i]];

        if (f->key && p >= f->start && p < f->end) {
            return fields[i];
        }
    }

    return NGX_HTTP_AIGW_F_MESSAGES;
}


/*
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?  Returns its end, NULL if
 * p does not start one.
 */

static ngx_inline u_char *
ngx_http_aigw_scan_number(u_char *p, u_char *last)
{
    if (*p == '-') {
        if (++p == last) {
            return NULL;
        }
    }

    if (*p == '0') {
        p++;

    } else if ((u_char) (*p - '1') < 9) {
        do {
            p++;
        } while (p < last && (u_char) (*p - '0') < 10);

    } else {
        return NULL;
    }

    if (p < last && *p == '.') {
        if (++p == last || (u_char) (*p - '0') >= 10) {
            return NULL;
        }

        do {
            p++;
        } while (p < last && (u_char) (*p - '0') < 10);
    }

    if (p < last && (*p | 0x20) == 'e') {
        if (++p < last && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == last || (u_char) (*p - '0') >= 10) {
            return NULL;
        }

        do {
            p++;
        } while (p < last && (u_char) (*p - '0') < 10);
    }

    return p;
}


/*
 * A count of an answer's usage: a number [p, last), read as
 * ngx_http_aigw_usage_read() reads it: the digits before any fraction
 * or exponent, up to the first past NGX_MAX_UINT32_VALUE; a negative one
 * is no count.
 */

static void
ngx_http_aigw_scan_count(ngx_http_aigw_scan_t *s, ngx_int_t i, u_char *p,
    u_char *last)
{
    ngx_uint_t  n;

    if (*p == '-') {
        return;
    }

    for (n = 0; p < last && (u_char) (*p - '0') < 10
                && n < NGX_MAX_UINT32_VALUE; p++)
    {
        n = n * 10 + (*p - '0');
    }

    s->usage.n[i] = n;
}


/*
 * A top-level key, [quote, end] with its quotes: kept, checked against
 * those before it, and its field, if any, recorded and returned.
 */

static ngx_uint_t
ngx_http_aigw_scan_top(ngx_http_aigw_scan_t *s, ngx_http_aigw_scan_top_t *top,
    u_char *quote, u_char *end, size_t saved)
{
    size_t                     len;
    uint64_t                   bit;
    ngx_uint_t                 f, i;
    ngx_http_aigw_scan_key_t  *k;

    len = (end - quote - 1) - saved;

    k = &top->keys[top->nkeys++];
    k->quote = quote;
    k->end = end;
    k->len = len;
    k->escaped = (saved != 0);

    if (s->keys) {
        s->keys[s->nkeys].start = quote + 1;
        s->keys[s->nkeys].end = end;
    }

    s->nkeys++;

    /*
     * Keys are compared only when their bit was seen: of the length and
     * the last byte, so that "model" and "usage" do not meet; once a key
     * with an escape is seen, whose bytes are not its name's, always
     */

    bit = (uint64_t) 1 << ((len + ((size_t) end[-1] << 3)) & 63);

    if (saved) {
        top->escaped = 1;
    }

    if (((top->lens & bit) || top->escaped) && top->dup == NULL
        && ngx_http_aigw_scan_dup(top->keys, top->nkeys))
    {
        top->dup = quote;
    }

    top->lens |= bit;

    f = ngx_http_aigw_scan_field(quote + 1, end, len, saved != 0);

    if (f != NGX_HTTP_AIGW_SCAN_NONE) {
        s->field[f].key = quote;

        if (f == NGX_HTTP_AIGW_F_USAGE) {
            for (i = 0; i < NGX_HTTP_AIGW_U_N; i++) {
                s->usage.n[i] = NGX_HTTP_AIGW_USAGE_UNSET;
            }
        }
    }

    return f;
}


/*
 * The top-level field a key [p, last) names: by its length and a byte,
 * then one compare, which the compiler inlines.
 */

static ngx_uint_t
ngx_http_aigw_scan_field(u_char *p, u_char *last, size_t len,
    ngx_uint_t escaped)
{
    ngx_uint_t  f;

    if (escaped) {
        for (f = 0;
             f < sizeof(ngx_http_aigw_scan_fields) / sizeof(ngx_str_t);
             f++)
        {
            if (ngx_http_aigw_scan_is(p, last, len,
                                      &ngx_http_aigw_scan_fields[f]))
            {
                return f;
            }
        }

        return NGX_HTTP_AIGW_SCAN_NONE;
    }

    switch (len) {

    case 2:
        if (p[0] == 'i' && p[1] == 'd') {
            return NGX_HTTP_AIGW_F_ID;
        }

        break;

    case 4:
        if (ngx_http_aigw_scan_name(p, "user")) {
            return NGX_HTTP_AIGW_F_USER;
        }

        break;

    case 5:
        switch (p[0]) {

        case 'm':
            if (ngx_http_aigw_scan_name(p, "model")) {
                return NGX_HTTP_AIGW_F_MODEL;
            }

            break;

        case 'i':
            if (ngx_http_aigw_scan_name(p, "input")) {
                return NGX_HTTP_AIGW_F_INPUT;
            }

            break;

        case 't':
            if (ngx_http_aigw_scan_name(p, "tools")) {
                return NGX_HTTP_AIGW_F_TOOLS;
            }

            break;

        case 'u':
            if (ngx_http_aigw_scan_name(p, "usage")) {
                return NGX_HTTP_AIGW_F_USAGE;
            }

            break;
        }

        break;

    case 6:
        switch (p[1]) {

        case 't':
            if (ngx_http_aigw_scan_name(p, "stream")) {
                return NGX_HTTP_AIGW_F_STREAM;
            }

            break;

        case 'y':
            if (ngx_http_aigw_scan_name(p, "system")) {
                return NGX_HTTP_AIGW_F_SYSTEM;
            }

            break;

        case 'r':
            if (ngx_http_aigw_scan_name(p, "prompt")) {
                return NGX_HTTP_AIGW_F_PROMPT;
            }

            break;
        }

        break;

    case 8:
        if (ngx_http_aigw_scan_name(p, "messages")) {
            return NGX_HTTP_AIGW_F_MESSAGES;
        }

        if (ngx_http_aigw_scan_name(p, "metadata")) {
            return NGX_HTTP_AIGW_F_METADATA;
        }

        break;

    case 10:
        if (ngx_http_aigw_scan_name(p, "max_tokens")) {
            return NGX_HTTP_AIGW_F_MAX_TOKENS;
        }

        break;

    case 14:
        if (ngx_http_aigw_scan_name(p, "stream_options")) {
            return NGX_HTTP_AIGW_F_STREAM_OPTIONS;
        }

        break;

    case 12:
        if (ngx_http_aigw_scan_name(p, "instructions")) {
            return NGX_HTTP_AIGW_F_INSTRUCTIONS;
        }

        break;

    case 20:
        if (ngx_http_aigw_scan_name(p, "previous_response_id")) {
            return NGX_HTTP_AIGW_F_PREVIOUS_RESPONSE_ID;
        }

        break;

    case 21:
        if (ngx_http_aigw_scan_name(p, "max_completion_tokens")) {
            return NGX_HTTP_AIGW_F_MAX_COMPLETION_TOKENS;
        }

        break;
    }

    return NGX_HTTP_AIGW_SCAN_NONE;
}


/*
 * 1 if a key [p, last), saved bytes shorter unescaped, is "content" or
 * "text"
 */

static ngx_inline ngx_uint_t
ngx_http_aigw_scan_text_key(u_char *p, u_char *last, size_t saved)
{
    size_t  len;

    len = (last - p) - saved;

    if (saved) {
        return ngx_http_aigw_scan_is(p, last, len, &ngx_http_aigw_scan_content)
               || ngx_http_aigw_scan_is(p, last, len, &ngx_http_aigw_scan_text);
    }

    return (len == 7 && ngx_http_aigw_scan_name(p, "content"))
           || (len == 4 && ngx_http_aigw_scan_name(p, "text"));
}


/* 1 if a key [p, last) of unescaped length len is name */

static ngx_uint_t
ngx_http_aigw_scan_is(u_char *p, u_char *last, size_t len, ngx_str_t *name)
{
    if (len != name->len) {
        return 0;
    }

    if ((size_t) (last - p) == len) {
        return ngx_memcmp(p, name->data, len) == 0;
    }

    return ngx_http_aigw_scan_equal(p, last, name->data, len);
}


/*
 * 1 if the last of n top-level keys repeats one before it.  Called only
 * when one before it has the same length modulo 64, which sorts out
 * nearly all keys at once.
 */

static ngx_uint_t
ngx_http_aigw_scan_dup(ngx_http_aigw_scan_key_t *keys, ngx_uint_t n)
{
    ngx_uint_t                 i;
    ngx_http_aigw_scan_key_t  *k;

    k = &keys[n - 1];

    for (i = 0; i < n - 1; i++) {
        if (keys[i].len == k->len && ngx_http_aigw_scan_same(&keys[i], k)) {
            return 1;
        }
    }

    return 0;
}


static ngx_uint_t
ngx_http_aigw_scan_same(ngx_http_aigw_scan_key_t *a,
    ngx_http_aigw_scan_key_t *b)
{
    size_t                     i;
    ngx_int_t                  c;
    ngx_http_aigw_scan_iter_t  ia, ib;

    if (!a->escaped && !b->escaped) {
        for (i = 1; i <= a->len; i++) {
            if (a->quote[i] != b->quote[i]) {
                return 0;
            }
        }

        return 1;
    }

    ngx_memzero(&ia, sizeof(ngx_http_aigw_scan_iter_t));
    ngx_memzero(&ib, sizeof(ngx_http_aigw_scan_iter_t));

    ia.p = a->quote + 1;
    ia.last = a->end;
    ib.p = b->quote + 1;
    ib.last = b->end;

    do {
        c = ngx_http_aigw_scan_byte(&ia);

        if (c != ngx_http_aigw_scan_byte(&ib)) {
            return 0;
        }

    } while (c != -1);

    return 1;
}


u_char *
ngx_http_aigw_scan_unescape(u_char *dst, u_char *p, u_char *last)
{
    ngx_uint_t  n;

    while (p < last) {
        if (*p != '\\') {
            *dst++ = *p++;
            continue;
        }

        p = ngx_http_aigw_scan_char(p, last, dst, &n);
        dst += n;
    }

    return dst;
}


ngx_uint_t
ngx_http_aigw_scan_equal(u_char *p, u_char *last, u_char *name, size_t len)
{
    size_t                     i;
    ngx_http_aigw_scan_iter_t  it;

    if (memchr(p, '\\', last - p) == NULL) {
        return (size_t) (last - p) == len && ngx_memcmp(p, name, len) == 0;
    }

    ngx_memzero(&it, sizeof(ngx_http_aigw_scan_iter_t));

    it.p = p;
    it.last = last;

    for (i = 0; i < len; i++) {
        if (ngx_http_aigw_scan_byte(&it) != name[i]) {
            return 0;
        }
    }

    return ngx_http_aigw_scan_byte(&it) == -1;
}


static ngx_int_t
ngx_http_aigw_scan_hex4(u_char *p)
{
    u_char      c;
    ngx_int_t   cp;
    ngx_uint_t  i;

    cp = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            cp = cp * 16 + (c - '0');
            continue;
        }

        c |= 0x20;

        if (c >= 'a' && c <= 'f') {
            cp = cp * 16 + (c - 'a' + 10);
            continue;
        }

        return -1;
    }

    return cp;
}


/* 1 if the \u escape at p, of code cp, begins a surrogate pair */

static ngx_uint_t
ngx_http_aigw_scan_pair(u_char *p, u_char *last, ngx_uint_t cp)
{
    ngx_int_t  lo;

    if (cp < 0xd800 || cp > 0xdbff || last - p < 12
        || p[6] != '\\' || p[7] != 'u')
    {
        return 0;
    }

    lo = ngx_http_aigw_scan_hex4(p + 8);

    return lo >= 0xdc00 && lo <= 0xdfff;
}


/*
 * One character at p (p < last), unescaped into buf (1 to 4 bytes, *n);
 * returns where the next one starts.  The scan has validated what it
 * hands out; anything else is taken byte by byte, so that the result is
 * never longer than the input.
 */

static u_char *
ngx_http_aigw_scan_char(u_char *p, u_char *last, u_char *buf, ngx_uint_t *n)
{
    ngx_int_t  cp, lo;

    *n = 1;

    if (*p != '\\' || last - p < 2) {
        buf[0] = *p;
        return p + 1;
    }

    switch (p[1]) {

    case '"':
    case '\\':
    case '/':
        buf[0] = p[1];
        return p + 2;

    case 'b':
        buf[0] = '\b';
        return p + 2;

    case 'f':
        buf[0] = '\f';
        return p + 2;

    case 'n':
        buf[0] = LF;
        return p + 2;

    case 'r':
        buf[0] = CR;
        return p + 2;

    case 't':
        buf[0] = '\t';
        return p + 2;

    case 'u':
        if (last - p >= 6) {
            cp = ngx_http_aigw_scan_hex4(p + 2);

            if (cp >= 0) {
                break;
            }
        }

        /* fall through */

    default:
        buf[0] = '\\';
        return p + 1;
    }

    if (ngx_http_aigw_scan_pair(p, last, cp)) {
        lo = ngx_http_aigw_scan_hex4(p + 8);
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);

        buf[0] = (u_char) (0xf0 | (cp >> 18));
        buf[1] = (u_char) (0x80 | ((cp >> 12) & 0x3f));
        buf[2] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
        buf[3] = (u_char) (0x80 | (cp & 0x3f));
        *n = 4;

        return p + 12;
    }

    if (cp >= 0xd800 && cp <= 0xdfff) {
        cp = 0xfffd;
    }

    if (cp < 0x80) {
        buf[0] = (u_char) cp;

    } else if (cp < 0x800) {
        buf[0] = (u_char) (0xc0 | (cp >> 6));
        buf[1] = (u_char) (0x80 | (cp & 0x3f));
        *n = 2;

    } else {
        buf[0] = (u_char) (0xe0 | (cp >> 12));
        buf[1] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
        buf[2] = (u_char) (0x80 | (cp & 0x3f));
        *n = 3;
    }

    return p + 6;
}


/* the next unescaped byte of a string, -1 at its end */

static ngx_int_t
ngx_http_aigw_scan_byte(ngx_http_aigw_scan_iter_t *it)
{
    if (it->i == it->n) {
        if (it->p == it->last) {
            return -1;
        }

        it->p = ngx_http_aigw_scan_char(it->p, it->last, it->buf, &it->n);
        it->i = 0;
    }

    return it->buf[it->i++];
}
