
/*
 * Copyright (C) aigw authors
 */


/*
 * The body scanner as it was before it was made fast on small bodies
 * (commit e3ed09f), renamed ngx_http_aigw_ref_scan*: the reference that
 * t/fuzz/fuzz_scan.c and t/unit/test_scan.c hold the scanner to (the same
 * result, error offset and reason, fields, text spans and string_bytes).
 * Include it after ngx_http_aigw_scan.c.  Not to be edited but to be
 * replaced, whole, when the scanner's results change on purpose.  At its
 * end, the body step's walkers that the scan's checks replaced, kept as
 * their reference (ngx_http_aigw_ref_check()).
 */


static ngx_int_t ngx_http_aigw_ref_scan(ngx_http_aigw_scan_t *s, u_char *p,
    u_char *last);
static ngx_uint_t ngx_http_aigw_ref_scan_equal(u_char *p, u_char *last,
    u_char *name, size_t len);


#define NGX_HTTP_AIGW_REF_SCAN_NONE      0xff

/* what a value is to the gateway, decided by where it stands */
#define NGX_HTTP_AIGW_REF_V_TEXT         0x01  /* a string here is text */
#define NGX_HTTP_AIGW_REF_V_TEXT_ARRAY   0x02  /* an array's strings are text */
#define NGX_HTTP_AIGW_REF_V_TREE         0x04  /* in messages, input... */
#define NGX_HTTP_AIGW_REF_V_NO_COUNT     0x08  /* "model": no string_bytes */
#define NGX_HTTP_AIGW_REF_V_OPTIONS      0x10  /* stream_options */
#define NGX_HTTP_AIGW_REF_V_METADATA     0x20  /* metadata */
#define NGX_HTTP_AIGW_REF_V_OBJECT       0x40  /* a level: object, not array */

#define NGX_HTTP_AIGW_REF_V_INHERIT                                          \
    (NGX_HTTP_AIGW_REF_V_TREE|NGX_HTTP_AIGW_REF_V_NO_COUNT)

/*
 * With gcc and clang, the plain run in a string is scanned 16 bytes at a
 * time with their vector extensions (SSE2 on x86-64, NEON on arm64): no
 * intrinsics, and the byte loop after it is the portable fallback.
 */
#if (NGX_HAVE_LITTLE_ENDIAN && defined __GNUC__)
#define NGX_HTTP_AIGW_REF_SCAN_VECTOR    1
typedef u_char  ngx_http_aigw_ref_scan_vec_t __attribute__((vector_size(16)));
typedef char    ngx_http_aigw_ref_scan_mask_t __attribute__((vector_size(16)));

#define ngx_http_aigw_ref_scan_stops(v)                                      \
    (((v) == '"') | ((v) == '\\') | ((v) < 0x20))
#endif


typedef struct {
    u_char                     *quote;
    u_char                     *start;
    u_char                     *end;
    size_t                      len;      /* unescaped */
    ngx_uint_t                  escaped;
} ngx_http_aigw_ref_scan_key_t;


typedef struct {
    u_char                     *p;
    u_char                     *last;
    u_char                      buf[4];
    ngx_uint_t                  n;
    ngx_uint_t                  i;
} ngx_http_aigw_ref_scan_iter_t;


static ngx_int_t ngx_http_aigw_ref_scan_string(ngx_http_aigw_scan_t *s,
    u_char **pp, u_char *last, size_t *len, ngx_uint_t *escaped);
static u_char *ngx_http_aigw_ref_scan_number(u_char *p, u_char *last);
static ngx_uint_t ngx_http_aigw_ref_scan_field(ngx_http_aigw_ref_scan_key_t *k);
static ngx_uint_t ngx_http_aigw_ref_scan_is(ngx_http_aigw_ref_scan_key_t *k,
    ngx_str_t *name);
static ngx_uint_t ngx_http_aigw_ref_scan_same(ngx_http_aigw_ref_scan_key_t *a,
    ngx_http_aigw_ref_scan_key_t *b);
static ngx_int_t ngx_http_aigw_ref_scan_hex4(u_char *p);
static ngx_uint_t ngx_http_aigw_ref_scan_pair(u_char *p, u_char *last,
    ngx_uint_t cp);
static u_char *ngx_http_aigw_ref_scan_char(u_char *p, u_char *last,
    u_char *buf, ngx_uint_t *n);
static ngx_int_t ngx_http_aigw_ref_scan_byte(ngx_http_aigw_ref_scan_iter_t *it);


/* in the order of the NGX_HTTP_AIGW_F_ numbers */
static ngx_str_t  ngx_http_aigw_ref_scan_fields[] = {
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

static ngx_str_t  ngx_http_aigw_ref_scan_include_usage =
    ngx_string("include_usage");
static ngx_str_t  ngx_http_aigw_ref_scan_user_id = ngx_string("user_id");
static ngx_str_t  ngx_http_aigw_ref_scan_content = ngx_string("content");
static ngx_str_t  ngx_http_aigw_ref_scan_text = ngx_string("text");


static ngx_int_t
ngx_http_aigw_ref_scan(ngx_http_aigw_scan_t *s, u_char *p, u_char *last)
{
    u_char                     *body, *q;
    size_t                      len;
    ngx_uint_t                  depth, vflags, vfield, lflags, f, nkeys,
                                escaped, i, j;
    ngx_http_aigw_ref_scan_key_t   *k, key;
    ngx_http_aigw_ref_scan_key_t    keys[NGX_HTTP_AIGW_SCAN_KEYS];
    u_char                      flags[NGX_HTTP_AIGW_SCAN_DEPTH];
    u_char                      fields[NGX_HTTP_AIGW_SCAN_DEPTH];
    enum {
        sw_value = 0,
        sw_value_or_close,
        sw_key,
        sw_key_or_close,
        sw_colon,
        sw_next
    } state;

    ngx_memzero(s->field, sizeof(s->field));
    s->open = NULL;
    s->close = NULL;
    s->ntext = 0;
    s->string_bytes = 0;
    s->error = 0;
    s->reason = NULL;

    body = p;

    while (p < last && (*p == ' ' || *p == '\t' || *p == LF || *p == CR)) {
        p++;
    }

    if (p == last || *p != '{') {
        s->reason = "not a JSON object";
        goto failed;
    }

    s->open = p;

    state = sw_value;
    depth = 0;
    vflags = 0;
    vfield = NGX_HTTP_AIGW_REF_SCAN_NONE;
    lflags = 0;
    nkeys = 0;

    for ( ;; ) {

        /* whitespace may stand before any token, and is rare in bodies */

        while (p < last && *p <= ' ') {
            if (*p != ' ' && *p != '\t' && *p != LF && *p != CR) {
                break;
            }

            p++;
        }

        if (p == last) {
            s->reason = "unexpected end of body";
            goto failed;
        }

        switch (state) {

        case sw_key_or_close:
            if (*p == '}') {
                goto close;
            }

            /* fall through */

        case sw_key:
            if (*p != '"') {
                s->reason = "expected a key";
                goto failed;
            }

            if (depth == 1) {
                if (nkeys == NGX_HTTP_AIGW_SCAN_KEYS) {
                    s->reason = "too many top-level keys";
                    goto failed;
                }

                /* top-level keys are kept for the duplicate check */
                k = &keys[nkeys++];

            } else {
                k = &key;
            }

            k->quote = p;
            k->start = ++p;

            if (ngx_http_aigw_ref_scan_string(s, &p, last, &k->len, &k->escaped)
                != NGX_OK)
            {
                goto failed;
            }

            k->end = p++;

            /* where the value stands decides what it is */

            vflags = lflags & NGX_HTTP_AIGW_REF_V_INHERIT;
            vfield = NGX_HTTP_AIGW_REF_SCAN_NONE;

            if (depth == 1) {
                f = ngx_http_aigw_ref_scan_field(k);

                switch (f) {

                case NGX_HTTP_AIGW_REF_SCAN_NONE:
                    break;

                case NGX_HTTP_AIGW_F_MESSAGES:
                case NGX_HTTP_AIGW_F_INPUT:
                case NGX_HTTP_AIGW_F_SYSTEM:
                case NGX_HTTP_AIGW_F_PROMPT:
                case NGX_HTTP_AIGW_F_INSTRUCTIONS:
                    vflags |= NGX_HTTP_AIGW_REF_V_TEXT
                              | NGX_HTTP_AIGW_REF_V_TEXT_ARRAY
                              | NGX_HTTP_AIGW_REF_V_TREE;
                    break;

                case NGX_HTTP_AIGW_F_MODEL:
                    vflags |= NGX_HTTP_AIGW_REF_V_NO_COUNT;
                    break;

                case NGX_HTTP_AIGW_F_STREAM_OPTIONS:
                    vflags |= NGX_HTTP_AIGW_REF_V_OPTIONS;
                    break;

                case NGX_HTTP_AIGW_F_METADATA:
                    vflags |= NGX_HTTP_AIGW_REF_V_METADATA;
                    break;
                }

                if (f != NGX_HTTP_AIGW_REF_SCAN_NONE) {
                    s->field[f].key = k->quote;
                    vfield = f;
                }

            } else if (lflags & NGX_HTTP_AIGW_REF_V_TREE) {
                if (ngx_http_aigw_ref_scan_is(k,
                                              &ngx_http_aigw_ref_scan_content)
                    || ngx_http_aigw_ref_scan_is(k,
                                                 &ngx_http_aigw_ref_scan_text))
                {
                    vflags |= NGX_HTTP_AIGW_REF_V_TEXT
                              | NGX_HTTP_AIGW_REF_V_TEXT_ARRAY;
                }

            } else if ((lflags & NGX_HTTP_AIGW_REF_V_OPTIONS)
                       && ngx_http_aigw_ref_scan_is(k,
                                        &ngx_http_aigw_ref_scan_include_usage))
            {
                vfield = NGX_HTTP_AIGW_F_INCLUDE_USAGE;
                s->field[vfield].key = k->quote;

            } else if ((lflags & NGX_HTTP_AIGW_REF_V_METADATA)
                       && ngx_http_aigw_ref_scan_is(k,
                                              &ngx_http_aigw_ref_scan_user_id))
            {
                vfield = NGX_HTTP_AIGW_F_USER_ID;
                s->field[vfield].key = k->quote;
            }

            state = sw_colon;
            continue;

        case sw_colon:
            if (*p != ':') {
                s->reason = "expected a colon";
                goto failed;
            }

            p++;
            state = sw_value;
            continue;

        case sw_next:
            if (*p == ',') {
                p++;

                if (lflags & NGX_HTTP_AIGW_REF_V_OBJECT) {
                    state = sw_key;
                    continue;
                }

                state = sw_value;
                goto element;
            }

            if (*p == ((lflags & NGX_HTTP_AIGW_REF_V_OBJECT) ? '}' : ']')) {
                goto close;
            }

            s->reason = "expected a comma or a closing bracket";
            goto failed;

        case sw_value_or_close:
            if (*p == ']') {
                goto close;
            }

            /* fall through */

        case sw_value:
            break;
        }

        /* a value: p is at its first byte */

        if (vfield != NGX_HTTP_AIGW_REF_SCAN_NONE) {
            s->field[vfield].start = p;
        }

        switch (*p) {

        case '{':
        case '[':
            if (depth == NGX_HTTP_AIGW_SCAN_DEPTH) {
                s->reason = "nested too deeply";
                goto failed;
            }

            if (*p == '{') {
                lflags = (vflags & ~NGX_HTTP_AIGW_REF_V_TEXT_ARRAY)
                         | NGX_HTTP_AIGW_REF_V_OBJECT;
                state = sw_key_or_close;

            } else {
                lflags = vflags & ~(NGX_HTTP_AIGW_REF_V_OPTIONS
                                    |NGX_HTTP_AIGW_REF_V_METADATA);
                state = sw_value_or_close;
            }

            lflags &= ~NGX_HTTP_AIGW_REF_V_TEXT;
            flags[depth] = (u_char) lflags;
            fields[depth] = (u_char) vfield;
            depth++;
            p++;

            if (state == sw_value_or_close) {
                goto element;
            }

            continue;

        case '"':
            q = ++p;

            if (ngx_http_aigw_ref_scan_string(s, &p, last, &len, &escaped)
                != NGX_OK)
            {
                goto failed;
            }

            if (vflags & NGX_HTTP_AIGW_REF_V_TEXT) {
                if (s->ntext < s->text_size) {
                    s->text[s->ntext].start = q;
                    s->text[s->ntext].end = p;
                }

                s->ntext++;
            }

            if (!(vflags & NGX_HTTP_AIGW_REF_V_NO_COUNT)) {
                s->string_bytes += len;
            }

            p++;
            break;

        case 't':
            if (last - p < 4 || ngx_strncmp(p, "true", 4) != 0) {
                s->reason = "invalid literal";
                goto failed;
            }

            p += 4;
            break;

        case 'f':
            if (last - p < 5 || ngx_strncmp(p, "false", 5) != 0) {
                s->reason = "invalid literal";
                goto failed;
            }

            p += 5;
            break;

        case 'n':
            if (last - p < 4 || ngx_strncmp(p, "null", 4) != 0) {
                s->reason = "invalid literal";
                goto failed;
            }

            p += 4;
            break;

        default:
            q = ngx_http_aigw_ref_scan_number(p, last);

            if (q == NULL) {
                s->reason = "invalid value";
                goto failed;
            }

            p = q;
            break;
        }

        /* a scalar value ends here */

        if (vfield != NGX_HTTP_AIGW_REF_SCAN_NONE) {
            s->field[vfield].end = p;
        }

        state = sw_next;
        continue;

    close:

        depth--;

        if (fields[depth] != NGX_HTTP_AIGW_REF_SCAN_NONE) {
            s->field[fields[depth]].end = p + 1;
        }

        if (depth == 0) {
            break;
        }

        lflags = flags[depth - 1];
        p++;
        state = sw_next;
        continue;

    element:

        vflags = lflags & NGX_HTTP_AIGW_REF_V_INHERIT;

        if (lflags & NGX_HTTP_AIGW_REF_V_TEXT_ARRAY) {
            vflags |= NGX_HTTP_AIGW_REF_V_TEXT;
        }

        vfield = NGX_HTTP_AIGW_REF_SCAN_NONE;
    }

    s->close = p++;

    while (p < last && (*p == ' ' || *p == '\t' || *p == LF || *p == CR)) {
        p++;
    }

    if (p != last) {
        s->reason = "data after the object";
        goto failed;
    }

    /*
     * Duplicate keys: every pair, once the body is known to be JSON.  The
     * unescaped lengths sort out nearly all pairs at once.
     */

    for (j = 1; j < nkeys; j++) {
        for (i = 0; i < j; i++) {
            if (keys[i].len == keys[j].len
                && ngx_http_aigw_ref_scan_same(&keys[i], &keys[j]))
            {
                s->error = keys[j].quote - body;
                s->reason = "duplicate key";
                return NGX_DECLINED;
            }
        }
    }

    return NGX_OK;

failed:

    s->error = p - body;

    return NGX_ERROR;
}


/*
 * A string's content, *pp just past the opening quote; on NGX_OK *pp is at
 * the closing quote and *len is the unescaped UTF-8 length.
 */

static ngx_int_t
ngx_http_aigw_ref_scan_string(ngx_http_aigw_scan_t *s, u_char **pp,
    u_char *last, size_t *len, ngx_uint_t *escaped)
{
    u_char                     *p, *start;
    size_t                      saved;
    ngx_int_t                   cp;
#if (NGX_HTTP_AIGW_REF_SCAN_VECTOR)
    size_t                      n;
    uint64_t                    m[2];
    ngx_http_aigw_ref_scan_vec_t    v;
    ngx_http_aigw_ref_scan_mask_t   mask;
#endif

    p = *pp;
    start = p;
    saved = 0;

    for ( ;; ) {

#if (NGX_HTTP_AIGW_REF_SCAN_VECTOR)

        /*
         * Sixteen bytes at a time while none is a quote, a backslash or a
         * control byte; then the first such byte is the lowest bit set.
         */

        for (n = (last - p) / 16; n; n--) {
            ngx_memcpy(&v, p, 16);

            mask = ngx_http_aigw_ref_scan_stops(v);

            ngx_memcpy(m, &mask, 16);

            if (m[0] | m[1]) {
                p += m[0] ? (size_t) __builtin_ctzll(m[0]) / 8
                          : 8 + (size_t) __builtin_ctzll(m[1]) / 8;
                goto stop;
            }

            p += 16;
        }

#endif

        while (p < last && *p != '"' && *p != '\\' && *p >= 0x20) {
            p++;
        }

        if (p == last) {
            s->reason = "unexpected end of body";
            goto failed;
        }

#if (NGX_HTTP_AIGW_REF_SCAN_VECTOR)
    stop:
#endif

        if (*p == '"') {
            break;
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
            saved++;
            p += 2;
            continue;

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

        cp = ngx_http_aigw_ref_scan_hex4(p + 2);

        if (cp < 0) {
            s->reason = "invalid \\u escape";
            goto failed;
        }

        /* 6 bytes become 1 to 3; a surrogate pair, 12 become 4 */

        if (ngx_http_aigw_ref_scan_pair(p, last, cp)) {
            saved += 8;
            p += 12;
            continue;
        }

        saved += (cp < 0x80) ? 5 : (cp < 0x800) ? 4 : 3;
        p += 6;
    }

    *escaped = (saved != 0);
    *len = (p - start) - saved;
    *pp = p;

    return NGX_OK;

failed:

    *pp = p;

    return NGX_ERROR;
}


/*
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?  Returns its end, NULL if
 * p does not start one.
 */

static u_char *
ngx_http_aigw_ref_scan_number(u_char *p, u_char *last)
{
    if (*p == '-') {
        if (++p == last) {
            return NULL;
        }
    }

    if (*p == '0') {
        p++;

    } else if (*p >= '1' && *p <= '9') {
        do {
            p++;
        } while (p < last && *p >= '0' && *p <= '9');

    } else {
        return NULL;
    }

    if (p < last && *p == '.') {
        if (++p == last || *p < '0' || *p > '9') {
            return NULL;
        }

        do {
            p++;
        } while (p < last && *p >= '0' && *p <= '9');
    }

    if (p < last && (*p == 'e' || *p == 'E')) {
        if (++p < last && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == last || *p < '0' || *p > '9') {
            return NULL;
        }

        do {
            p++;
        } while (p < last && *p >= '0' && *p <= '9');
    }

    return p;
}


static ngx_uint_t
ngx_http_aigw_ref_scan_field(ngx_http_aigw_ref_scan_key_t *k)
{
    ngx_uint_t  f;

    for (f = 0; f < sizeof(ngx_http_aigw_ref_scan_fields) / sizeof(ngx_str_t);
         f++)
    {
        if (ngx_http_aigw_ref_scan_is(k, &ngx_http_aigw_ref_scan_fields[f])) {
            return f;
        }
    }

    return NGX_HTTP_AIGW_REF_SCAN_NONE;
}


static ngx_uint_t
ngx_http_aigw_ref_scan_is(ngx_http_aigw_ref_scan_key_t *k, ngx_str_t *name)
{
    if (k->len != name->len) {
        return 0;
    }

    if (!k->escaped) {
        return ngx_memcmp(k->start, name->data, name->len) == 0;
    }

    return ngx_http_aigw_ref_scan_equal(k->start, k->end, name->data,
                                        name->len);
}


static ngx_uint_t
ngx_http_aigw_ref_scan_same(ngx_http_aigw_ref_scan_key_t *a,
    ngx_http_aigw_ref_scan_key_t *b)
{
    ngx_int_t                  c;
    ngx_http_aigw_ref_scan_iter_t  ia, ib;

    if (!a->escaped && !b->escaped) {
        return ngx_memcmp(a->start, b->start, a->len) == 0;
    }

    ngx_memzero(&ia, sizeof(ngx_http_aigw_ref_scan_iter_t));
    ngx_memzero(&ib, sizeof(ngx_http_aigw_ref_scan_iter_t));

    ia.p = a->start;
    ia.last = a->end;
    ib.p = b->start;
    ib.last = b->end;

    do {
        c = ngx_http_aigw_ref_scan_byte(&ia);

        if (c != ngx_http_aigw_ref_scan_byte(&ib)) {
            return 0;
        }

    } while (c != -1);

    return 1;
}


static ngx_uint_t
ngx_http_aigw_ref_scan_equal(u_char *p, u_char *last, u_char *name, size_t len)
{
    size_t                     i;
    ngx_http_aigw_ref_scan_iter_t  it;

    if (memchr(p, '\\', last - p) == NULL) {
        return (size_t) (last - p) == len && ngx_memcmp(p, name, len) == 0;
    }

    ngx_memzero(&it, sizeof(ngx_http_aigw_ref_scan_iter_t));

    it.p = p;
    it.last = last;

    for (i = 0; i < len; i++) {
        if (ngx_http_aigw_ref_scan_byte(&it) != name[i]) {
            return 0;
        }
    }

    return ngx_http_aigw_ref_scan_byte(&it) == -1;
}


static ngx_int_t
ngx_http_aigw_ref_scan_hex4(u_char *p)
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
ngx_http_aigw_ref_scan_pair(u_char *p, u_char *last, ngx_uint_t cp)
{
    ngx_int_t  lo;

    if (cp < 0xd800 || cp > 0xdbff || last - p < 12
        || p[6] != '\\' || p[7] != 'u')
    {
        return 0;
    }

    lo = ngx_http_aigw_ref_scan_hex4(p + 8);

    return lo >= 0xdc00 && lo <= 0xdfff;
}


/*
 * One character at p (p < last), unescaped into buf (1 to 4 bytes, *n);
 * returns where the next one starts.  The scan has validated what it
 * hands out; anything else is taken byte by byte, so that the result is
 * never longer than the input.
 */

static u_char *
ngx_http_aigw_ref_scan_char(u_char *p, u_char *last, u_char *buf, ngx_uint_t *n)
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
            cp = ngx_http_aigw_ref_scan_hex4(p + 2);

            if (cp >= 0) {
                break;
            }
        }

        /* fall through */

    default:
        buf[0] = '\\';
        return p + 1;
    }

    if (ngx_http_aigw_ref_scan_pair(p, last, cp)) {
        lo = ngx_http_aigw_ref_scan_hex4(p + 8);
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
ngx_http_aigw_ref_scan_byte(ngx_http_aigw_ref_scan_iter_t *it)
{
    if (it->i == it->n) {
        if (it->p == it->last) {
            return -1;
        }

        it->p = ngx_http_aigw_ref_scan_char(it->p, it->last, it->buf, &it->n);
        it->i = 0;
    }

    return it->buf[it->i++];
}


/*
 * The body step's input checks as they were before the scan made them
 * (commit e4dce8b, ngx_http_aigw_body.c): a walker over the spans of a
 * scan that returned NGX_OK, the reference for the scan's messages,
 * input, prompt and text_* members.  text must hold all ntext spans.
 */


static void ngx_http_aigw_ref_check_shape(ngx_http_aigw_field_t *f,
    ngx_http_aigw_shape_t *shape, ngx_uint_t messages);
static void ngx_http_aigw_ref_check_text(ngx_http_aigw_scan_t *s);
static void ngx_http_aigw_ref_wrong(ngx_http_aigw_shape_t *shape,
    ngx_uint_t error, ngx_uint_t index, u_char *value);
static u_char *ngx_http_aigw_ref_next(u_char *p, u_char *last);
static u_char *ngx_http_aigw_ref_skip(u_char *p, u_char *last);
static u_char *ngx_http_aigw_ref_utf8(u_char *p, u_char *last);


static void
ngx_http_aigw_ref_check(ngx_http_aigw_scan_t *s)
{
    ngx_http_aigw_ref_check_shape(&s->field[NGX_HTTP_AIGW_F_MESSAGES],
                                  &s->messages, 1);
    ngx_http_aigw_ref_check_shape(&s->field[NGX_HTTP_AIGW_F_INPUT],
                                  &s->input, 0);
    ngx_http_aigw_ref_check_shape(&s->field[NGX_HTTP_AIGW_F_PROMPT],
                                  &s->prompt, 0);
    ngx_http_aigw_ref_check_text(s);
}


static void
ngx_http_aigw_ref_check_shape(ngx_http_aigw_field_t *f,
    ngx_http_aigw_shape_t *shape, ngx_uint_t messages)
{
    u_char      *p, *last, *q, *end, *key, *role;
    ngx_uint_t   i;

    ngx_memzero(shape, sizeof(ngx_http_aigw_shape_t));

    if (f->key == NULL || *f->start != '[') {
        return;
    }

    p = f->start + 1;
    last = f->end - 1;

    for (i = 0; /* void */ ; i++) {
        p = ngx_http_aigw_ref_next(p, last);

        if (p == last) {
            return;
        }

        end = ngx_http_aigw_ref_skip(p, last);

        if (!messages) {
            if (*p == '[') {
                for (q = ngx_http_aigw_ref_next(p + 1, end - 1);
                     q < end - 1;
                     q = ngx_http_aigw_ref_next(q, end - 1))
                {
                    if (*q != '-' && (*q < '0' || *q > '9')) {
                        ngx_http_aigw_ref_wrong(shape,
                                                NGX_HTTP_AIGW_SHAPE_TYPE,
                                                i, q);
                        return;
                    }

                    q = ngx_http_aigw_ref_skip(q, end - 1);
                }

            } else if (*p != '"' && *p != '-' && (*p < '0' || *p > '9')) {
                ngx_http_aigw_ref_wrong(shape, NGX_HTTP_AIGW_SHAPE_TYPE, i, p);
                return;
            }

            p = end;
            continue;
        }

        if (*p != '{') {
            ngx_http_aigw_ref_wrong(shape, NGX_HTTP_AIGW_SHAPE_TYPE, i, p);
            return;
        }

        role = NULL;

        for (q = p + 1; /* void */ ; /* void */ ) {
            q = ngx_http_aigw_ref_next(q, end - 1);

            if (q >= end - 1) {
                break;
            }

            key = q;
            q = ngx_http_aigw_ref_skip(q, end - 1);

            if (ngx_http_aigw_ref_scan_equal(key + 1, q - 1,
                                             (u_char *) "role", 4))
            {
                role = ngx_http_aigw_ref_next(q, end - 1);
            }

            q = ngx_http_aigw_ref_next(q, end - 1);
            q = ngx_http_aigw_ref_skip(q, end - 1);
        }

        if (role == NULL) {
            ngx_http_aigw_ref_wrong(shape, NGX_HTTP_AIGW_SHAPE_NO_ROLE, i,
                                    NULL);
            return;
        }

        if (*role != '"') {
            ngx_http_aigw_ref_wrong(shape, NGX_HTTP_AIGW_SHAPE_ROLE_TYPE, i,
                                    role);
            return;
        }

        p = end;
    }
}


static void
ngx_http_aigw_ref_check_text(ngx_http_aigw_scan_t *s)
{
    u_char                 *p, *last;
    ngx_uint_t              i, k;
    ngx_http_aigw_span_t   *t;
    ngx_http_aigw_field_t  *f;

    static ngx_uint_t  fields[] = {
        NGX_HTTP_AIGW_F_MESSAGES, NGX_HTTP_AIGW_F_INPUT,
        NGX_HTTP_AIGW_F_PROMPT, NGX_HTTP_AIGW_F_SYSTEM
    };

    s->text_error = NGX_HTTP_AIGW_TEXT_OK;
    s->text_field = NGX_HTTP_AIGW_F_MESSAGES;
    s->text_at = NULL;

    for (i = 0; i < s->ntext; i++) {
        t = &s->text[i];

        for (p = t->start, last = t->end; p < last; /* void */ ) {

            if (*p == '\\') {
                if (last - p >= 6 && ngx_strncmp(p + 1, "u0000", 5) == 0) {
                    s->text_error = NGX_HTTP_AIGW_TEXT_NUL;
                    break;
                }

                p += 2;
                continue;
            }

            if (*p < 0x80) {
                p++;
                continue;
            }

            if (ngx_http_aigw_ref_utf8(p, last) == NULL) {
                s->text_error = NGX_HTTP_AIGW_TEXT_UTF8;
                break;
            }

            p = ngx_http_aigw_ref_utf8(p, last);
        }

        if (s->text_error == NGX_HTTP_AIGW_TEXT_OK) {
            continue;
        }

        s->text_at = p;

        for (k = 0; k < 4; k++) {
            f = &s->field[fields[k]];

            if (f->key && t->start >= f->start && t->end <= f->end) {
                s->text_field = fields[k];
                break;
            }
        }

        return;
    }
}


static void
ngx_http_aigw_ref_wrong(ngx_http_aigw_shape_t *shape, ngx_uint_t error,
    ngx_uint_t index, u_char *value)
{
    shape->error = error;
    shape->index = index;
    shape->value = value;
}


static u_char *
ngx_http_aigw_ref_next(u_char *p, u_char *last)
{
    while (p < last && (*p == ' ' || *p == '\t' || *p == CR || *p == LF
                        || *p == ',' || *p == ':'))
    {
        p++;
    }

    return p;
}


static u_char *
ngx_http_aigw_ref_skip(u_char *p, u_char *last)
{
    ngx_uint_t  depth;

    depth = 0;

    while (p < last) {

        switch (*p) {

        case '"':
            for (p++; p < last && *p != '"'; p++) {
                if (*p == '\\') {
                    p++;
                }
            }

            p++;
            break;

        case '{':
        case '[':
            depth++;
            p++;
            continue;

        case '}':
        case ']':
            depth--;
            p++;
            break;

        case ' ': case '\t': case CR: case LF: case ',': case ':':
            p++;
            continue;

        default:
            while (p < last && *p != ',' && *p != '}' && *p != ']'
                   && *p != ' ' && *p != '\t' && *p != CR && *p != LF)
            {
                p++;
            }
        }

        if (depth == 0) {
            break;
        }
    }

    return p < last ? p : last;
}


static u_char *
ngx_http_aigw_ref_utf8(u_char *p, u_char *last)
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
