
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_aigw_pii.h"


/*
 * The detectors run on the text of a string as the client wrote it,
 * JSON escapes included, and in bytes: every built-in pattern matches
 * ASCII only, so a match never takes part of a multibyte character.
 * A match must neither start nor end within an escape ("\n", "\u00e9"):
 * a placeholder there would leave a broken escape.  Before a match, an
 * escape such as "\n" ends a word as a space would; the lookbehind
 * NGX_HTTP_AIGW_PII_AFTER(class) says "not after a byte of class, or
 * after \n, \r, \t, \b, \f".
 */


#define NGX_HTTP_AIGW_PII_AFTER(cls)                                          \
    "(?:(?<=\\\\[nrtbf])|(?<![" cls "]))"

/* a byte of a number's run: digits and what separates their groups */
#define ngx_http_aigw_pii_number(c)                                           \
    (((c) >= '0' && (c) <= '9') || (c) == ' ' || (c) == '.' || (c) == '-'    \
     || (c) == '(' || (c) == ')' || (c) == '+')

/* an email's local part before "@", an IPv6 address before ":" */
#define NGX_HTTP_AIGW_PII_BACK         64


/* the matches of a text so far */
typedef struct {
    pcre2_match_data           *md;
    u_char                     *start;
    ngx_http_aigw_pii_found_t  *found;
    ngx_uint_t                  size;
    ngx_uint_t                 *nf;
} ngx_http_aigw_pii_run_t;


static ngx_uint_t ngx_http_aigw_pii_phone(u_char *p, u_char *last);
static ngx_uint_t ngx_http_aigw_pii_card(u_char *p, u_char *last);
static ngx_uint_t ngx_http_aigw_pii_back(u_char anchor, u_char c);
static ngx_uint_t ngx_http_aigw_pii_before(ngx_http_aigw_pii_t *d,
    u_char *start, u_char *p);
static u_char *ngx_http_aigw_pii_escape(u_char *start, u_char *p);
static ngx_int_t ngx_http_aigw_pii_numbers(ngx_http_aigw_pii_run_t *run,
    ngx_http_aigw_pii_t *det, ngx_uint_t n, u_char *modes, u_char *end);
static ngx_int_t ngx_http_aigw_pii_run(ngx_http_aigw_pii_run_t *run,
    ngx_http_aigw_pii_t *dt, ngx_uint_t d, size_t off, size_t limit);
static int ngx_libc_cdecl ngx_http_aigw_pii_cmp(const void *one,
    const void *two);


ngx_http_aigw_pii_builtin_t  ngx_http_aigw_pii_builtins[] = {

    /* secrets first: of two matches that start together, the first kept */

    { "private_key", "PRIVATE_KEY",
      "(?s)-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
      "(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*)",
      0, "-----BEGIN ", 0, 0, NULL },

    { "aws_key", "AWS_KEY",
      NGX_HTTP_AIGW_PII_AFTER("0-9A-Za-z")
      "(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![0-9A-Za-z])",
      0, NULL, 0, 0, NULL },

    { "api_key", "API_KEY",
      NGX_HTTP_AIGW_PII_AFTER("0-9A-Za-z_-")
      "sk-(?:ant-[a-z]+[0-9]{2}-|proj-|svcacct-|admin-)?"
      "[A-Za-z0-9_-]{20,}",
      0, NULL, 0, 0, NULL },

    { "github_token", "GITHUB_TOKEN",
      NGX_HTTP_AIGW_PII_AFTER("0-9A-Za-z_")
      "(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,244})"
      "(?![A-Za-z0-9_])",
      0, NULL, 0, 0, NULL },

    { "jwt", "JWT",
      NGX_HTTP_AIGW_PII_AFTER("0-9A-Za-z_-")
      "eyJ[A-Za-z0-9_-]{4,}\\.eyJ[A-Za-z0-9_-]{4,}\\.[A-Za-z0-9_-]*",
      0, NULL, 0, 0, NULL },

    { "bearer", "BEARER",
      NGX_HTTP_AIGW_PII_AFTER("0-9A-Za-z")
      "(?i:bearer) +(?:[A-Za-z0-9._~+-]|\\\\/){16,}=*",
      0, NULL, 0, 0, NULL },

    { "email", "EMAIL",
      "\\G[A-Za-z0-9._%+-]{1,64}@"
      "(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,24}"
      "(?![A-Za-z0-9_-]|\\.[A-Za-z0-9])",
      '@', NULL, 0, 0, NULL },

    { "card", "CARD",
      NGX_HTTP_AIGW_PII_AFTER("0-9A-Za-z.-")
      "[0-9](?:[ -]?[0-9]){12,18}(?![0-9]|[ -][0-9])",
      0, NULL, 13, 0, ngx_http_aigw_pii_card },

    { "iban", "IBAN",
      NGX_HTTP_AIGW_PII_AFTER("0-9A-Za-z")
      "[A-Z]{2}[0-9]{2}(?: ?[0-9A-Z]){11,30}(?![0-9A-Za-z])",
      0, NULL, 2, 2, ngx_http_aigw_pii_mod97 },

    { "ssn", "SSN",
      NGX_HTTP_AIGW_PII_AFTER("0-9A-Za-z-")
      "(?!000|666|9[0-9]{2})[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}"
      "(?![0-9A-Za-z]|-[0-9])",
      0, NULL, 9, 0, NULL },

    { "phone", "PHONE",
      NGX_HTTP_AIGW_PII_AFTER("0-9A-Za-z+")
      "(?:\\+[1-9][0-9]{0,2}(?>[ .-]?(?:\\([0-9]{1,4}\\)|[0-9]{1,4})){2,6}"
      "|\\([0-9]{3}\\)[ .-]?[0-9]{3}[ .-][0-9]{4}"
      "|[0-9]{3}[.-][0-9]{3}[.-][0-9]{4})"
      "(?![0-9]|[.-][0-9])",
      0, NULL, 8, 0, ngx_http_aigw_pii_phone },

    { "ipv4", "IPV4",
      NGX_HTTP_AIGW_PII_AFTER("0-9A-Za-z.")
      "(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}"
      "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
      "(?![0-9]|\\.[0-9])",
      0, NULL, 4, 0, NULL },

    { "ipv6", "IPV6",
      "\\G(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}"
      "|(?:[0-9A-Fa-f]{1,4}:){1,7}:"
      "|(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}"
      "|(?:[0-9A-Fa-f]{1,4}:){1,5}(?::[0-9A-Fa-f]{1,4}){1,2}"
      "|(?:[0-9A-Fa-f]{1,4}:){1,4}(?::[0-9A-Fa-f]{1,4}){1,3}"
      "|(?:[0-9A-Fa-f]{1,4}:){1,3}(?::[0-9A-Fa-f]{1,4}){1,4}"
      "|(?:[0-9A-Fa-f]{1,4}:){1,2}(?::[0-9A-Fa-f]{1,4}){1,5}"
      "|[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){1,6}"
      "|::(?:[0-9A-Fa-f]{1,4}:){0,5}[0-9A-Fa-f]{1,4})"
      "(?![0-9A-Za-z_:]|\\.[0-9])",
      ':', NULL, 0, 0, NULL },

    { NULL, NULL, NULL, 0, NULL, 0, 0, NULL }
};


/* the Luhn check of a card number: its digits, separators skipped */

ngx_uint_t
ngx_http_aigw_pii_luhn(u_char *p, u_char *last)
{
    ngx_uint_t  d, n, sum;

    n = 0;
    sum = 0;

    while (last > p) {
        last--;

        if (*last < '0' || *last > '9') {
            continue;
        }

        d = *last - '0';

        if (n++ & 1) {
            d *= 2;
            sum += (d > 9) ? d - 9 : d;

        } else {
            sum += d;
        }
    }

    return n > 1 && sum % 10 == 0;
}


/*
 * The ISO 13616 check of an IBAN, spaces skipped: the country and check
 * digits moved to the end, letters as 10 to 35, the number mod 97 is 1
 */

ngx_uint_t
ngx_http_aigw_pii_mod97(u_char *p, u_char *last)
{
    u_char      c;
    size_t      n;
    ngx_uint_t  i, rem;
    u_char      buf[34];

    for (n = 0; p < last; p++) {
        c = *p;

        if (c == ' ') {
            continue;
        }

        if (n == sizeof(buf)
            || !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')))
        {
            return 0;
        }

        buf[n++] = c;
    }

    if (n < 15
        || buf[0] < 'A' || buf[0] > 'Z' || buf[1] < 'A' || buf[1] > 'Z'
        || buf[2] < '0' || buf[2] > '9' || buf[3] < '0' || buf[3] > '9')
    {
        return 0;
    }

    rem = 0;

    for (i = 0; i < n; i++) {
        c = buf[(i + 4) % n];

        if (c <= '9') {
            rem = (rem * 10 + (c - '0')) % 97;

        } else {
            rem = (rem * 100 + (c - 'A' + 10)) % 97;
        }
    }

    return rem == 1;
}


/* a card: 13 to 19 digits, not all the same, that pass Luhn's check */

static ngx_uint_t
ngx_http_aigw_pii_card(u_char *p, u_char *last)
{
    u_char      *q, first;
    ngx_uint_t   n, same;

    n = 0;
    same = 1;
    first = *p;

    for (q = p; q < last; q++) {
        if (*q >= '0' && *q <= '9') {
            n++;
            same &= (*q == first);
        }
    }

    return n >= 13 && n <= 19 && !same && ngx_http_aigw_pii_luhn(p, last);
}


/* a phone number has 8 to 15 digits (E.164), the country code included */

static ngx_uint_t
ngx_http_aigw_pii_phone(u_char *p, u_char *last)
{
    ngx_uint_t  n;

    for (n = 0; p < last; p++) {
        n += (*p >= '0' && *p <= '9');
    }

    return n >= 8 && n <= 15;
}


/* the bytes an anchored detector's match may start with, before it */

static ngx_uint_t
ngx_http_aigw_pii_back(u_char anchor, u_char c)
{
    if (anchor == ':') {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
               || (c >= 'A' && c <= 'F') || c == ':';
    }

    /* the local part of an email */

    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
           || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' || c == '%'
           || c == '+' || c == '-';
}


/*
 * What may be before an anchored match at p: not a word going on, nor,
 * for an email, a URL ("https://user@host", ".../path/x@y.com"), but
 * "mailto:" is an email
 */

static ngx_uint_t
ngx_http_aigw_pii_before(ngx_http_aigw_pii_t *d, u_char *start, u_char *p)
{
    u_char      c;
    ngx_uint_t  i;

    if (p == start) {
        return 1;
    }

    c = p[-1];

    if (ngx_http_aigw_pii_escape(start, p - 1) != p - 1
        && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
            || (c >= 'A' && c <= 'Z')))
    {
        /* the last byte of an escape such as "\n" or "\u00e9"; */
        /* but the "/" of "\/" is a slash */
        return 1;
    }

    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
        || (c >= 'A' && c <= 'Z') || c == '_' || c == '.'
        || ngx_http_aigw_pii_back(d->anchor, c))
    {
        return 0;
    }

    if (d->anchor == '@' && (c == '/' || c == ':' || c == '@')) {
        /* ngx_strncasecmp() is nginx's code: the unit test links none */

        if (c != ':' || p - start < 7) {
            return 0;
        }

        for (i = 0; i < 6; i++) {
            if ((p[i - 7] | 0x20) != "mailto"[i]) {
                return 0;
            }
        }
    }

    return 1;
}


/*
 * If p is within an escape of the JSON string that starts at start (past
 * its backslash), the end of that escape; else p
 */

static u_char *
ngx_http_aigw_pii_escape(u_char *start, u_char *p)
{
    u_char      *q, *e;
    ngx_uint_t   n;

    for (q = p - 1; q >= start && q >= p - 5; q--) {

        if (*q != '\\') {
            continue;
        }

        /* q starts an escape unless it is the second of "\\" */

        for (n = 0; q - n > start && q[-(ngx_int_t) n - 1] == '\\'; n++) {
            /* void */
        }

        if (n & 1) {
            return p;
        }

        /* a string never ends with a backslash: q[1] is in it */
        e = q + ((q[1] == 'u') ? 6 : 2);

        return (e > p) ? e : p;
    }

    return p;
}


static int ngx_libc_cdecl
ngx_http_aigw_pii_cmp(const void *one, const void *two)
{
    const ngx_http_aigw_pii_found_t  *a = one;
    const ngx_http_aigw_pii_found_t  *b = two;

    if (a->start != b->start) {
        return (a->start < b->start) ? -1 : 1;
    }

    if (a->end != b->end) {
        return (a->end > b->end) ? -1 : 1;
    }

    return (a->detector < b->detector) ? -1 : (a->detector > b->detector);
}


ngx_int_t
ngx_http_aigw_pii_find(ngx_http_aigw_pii_t *det, ngx_uint_t n, u_char *modes,
    pcre2_match_data *md, u_char *start, u_char *end,
    ngx_http_aigw_pii_found_t *found, ngx_uint_t size)
{
    size_t                  len, off;
    ngx_uint_t              d, nf, i, k, numbers;
    ngx_http_aigw_pii_t    *dt;
    ngx_http_aigw_pii_run_t  run;

    len = end - start;
    nf = 0;
    numbers = 0;

    run.md = md;
    run.start = start;
    run.found = found;
    run.size = size;
    run.nf = &nf;

    for (d = 0; d < n; d++) {

        if (modes[d] == NGX_HTTP_AIGW_PII_OFF) {
            continue;
        }

        dt = &det[d];

        if (dt->digits) {
            numbers = 1;
            continue;
        }

        off = 0;

        if (dt->need.len) {
            u_char  *p;

            p = memmem(start, len, dt->need.data, dt->need.len);
            if (p == NULL) {
                continue;
            }

            off = p - start;
        }

        if (ngx_http_aigw_pii_run(&run, dt, d, off, len) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (numbers
        && ngx_http_aigw_pii_numbers(&run, det, n, modes, end) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (nf > size) {
        return nf;
    }

    /* in text order; of overlapping matches, the first and longest kept */

    ngx_qsort(found, nf, sizeof(ngx_http_aigw_pii_found_t),
              ngx_http_aigw_pii_cmp);

    for (i = 0, k = 0; i < nf; i++) {
        if (k && found[i].start < found[k - 1].end) {
            continue;
        }

        found[k++] = found[i];
    }

    return k;
}


/*
 * The detectors of numbers, on the runs of digits and " .-()+" of the
 * text, each searched no further than its run and the byte after it
 * (what the patterns' lookaheads read): prose numbers ("2024", "3.1")
 * cost one pass for all of them, and no search.
 */

static ngx_int_t
ngx_http_aigw_pii_numbers(ngx_http_aigw_pii_run_t *run,
    ngx_http_aigw_pii_t *det, ngx_uint_t n, u_char *modes, u_char *end)
{
    u_char     *p, *rs, *re, *start;
    size_t      len, limit;
    uint64_t    w;
    ngx_uint_t  d, digits;

    start = run->start;
    len = end - start;

    for (p = start; p < end; /* void */ ) {

        if (*p < '0' || *p > '9') {
            p++;

            /*
             * eight bytes at a time where none is a digit: XORed with
             * "0"s, a digit is a byte below 10 ("hasless" of Bit
             * Twiddling Hacks: it may say yes for none, never no for one)
             */

            while (end - p >= 8) {
                ngx_memcpy(&w, p, 8);
                w ^= 0x3030303030303030ULL;

                if ((w - 0x0a0a0a0a0a0a0a0aULL) & ~w & 0x8080808080808080ULL) {
                    break;
                }

                p += 8;
            }

            continue;
        }

        /* the run about the digit: its lead ("+", "(") within 4 bytes */

        for (rs = p;
             rs > start && p - rs < 4 && ngx_http_aigw_pii_number(rs[-1]);
             rs--)
        {
            /* void */
        }

        digits = 0;

        for (re = p; re < end && ngx_http_aigw_pii_number(*re); re++) {
            digits += (*re >= '0' && *re <= '9');
        }

        limit = ngx_min((size_t) (re - start) + 1, len);

        for (d = 0; d < n; d++) {

            if (modes[d] == NGX_HTTP_AIGW_PII_OFF || det[d].digits == 0) {
                continue;
            }

            if (det[d].capitals) {
                /* an IBAN's country, just before the run's first digit */

                if (p - start < (ngx_int_t) det[d].capitals
                    || p[-1] < 'A' || p[-1] > 'Z'
                    || p[-2] < 'A' || p[-2] > 'Z')
                {
                    continue;
                }

                /* an IBAN is at most 34 characters and 33 spaces */

                if (ngx_http_aigw_pii_run(run, &det[d], d,
                                          p - det[d].capitals - start,
                                          ngx_min((size_t) (p - start) + 72,
                                                  len))
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                continue;
            }

            if (digits < det[d].digits) {
                continue;
            }

            if (ngx_http_aigw_pii_run(run, &det[d], d, rs - start, limit)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        p = re;
    }

    return NGX_OK;
}


/* one detector's matches from off, in the text's first limit bytes */

static ngx_int_t
ngx_http_aigw_pii_run(ngx_http_aigw_pii_run_t *run, ngx_http_aigw_pii_t *dt,
    ngx_uint_t d, size_t off, size_t limit)
{
    int          rc;
    u_char      *s, *e, *p, *b, *start, *end;
    PCRE2_SIZE  *ov;

    start = run->start;
    end = start + limit;
    p = start + off;
    ov = pcre2_get_ovector_pointer(run->md);

    for ( ;; ) {

        if (dt->anchor) {
            /* from the run of bytes before the next anchor byte */

            p = memchr(p, dt->anchor, end - p);
            if (p == NULL) {
                return NGX_OK;
            }

            for (b = p;
                 b > start && p - b < NGX_HTTP_AIGW_PII_BACK
                 && ngx_http_aigw_pii_back(dt->anchor, b[-1]);
                 b--)
            {
                /* void */
            }

            /* the letter of an escape, as the "n" of "\n", is not */

            b = ngx_http_aigw_pii_escape(start, b);

            p++;

            if (b >= p || !ngx_http_aigw_pii_before(dt, start, b)) {
                continue;
            }

            off = b - start;
        }

        rc = pcre2_match(dt->re, start, limit, off, 0, run->md, NULL);

        if (rc == PCRE2_ERROR_NOMATCH) {
            if (dt->anchor) {
                continue;
            }

            return NGX_OK;
        }

        if (rc < 0) {
            return NGX_ERROR;
        }

        s = start + ov[0];
        e = start + ov[1];

        if (e == s) {
            /* a custom pattern that matches nothing */
            if (dt->anchor || ov[1] >= limit) {
                return NGX_OK;
            }

            off = ov[1] + 1;
            continue;
        }

        if (dt->custom) {
            /* whole UTF-8 characters, whole escapes */

            while (s > start && (*s & 0xc0) == 0x80) {
                s--;
            }

            while (e < end && (*e & 0xc0) == 0x80) {
                e++;
            }

            e = ngx_http_aigw_pii_escape(start, e);
        }

        p = ngx_http_aigw_pii_escape(start, s);

        if (p != s) {
            /* within an escape: on after it (an anchored one is not) */
            off = p - start;

            if (off >= limit) {
                return NGX_OK;
            }

            continue;
        }

        if (!dt->anchor) {
            off = e - start;
        }

        p = e;

        if (dt->check == NULL || dt->check(s, e)) {

            if (*run->nf < run->size) {
                run->found[*run->nf].start = s;
                run->found[*run->nf].end = e;
                run->found[*run->nf].detector = d;
            }

            (*run->nf)++;
        }

        /* a run that fails its check is not searched again */

        if (off >= limit) {
            return NGX_OK;
        }
    }
}
