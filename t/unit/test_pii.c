
/*
 * Copyright (C) aigw authors
 */


/*
 * Unit test of the PII matcher, built standalone against the include
 * directories of a configured nginx tree and linked with PCRE2 (see
 * t/unit/README.md):
 *
 *     test_pii
 *
 * The Luhn and mod-97 checks on known numbers; the detectors on texts
 * as JSON-escaped in a body, each in a buffer of its exact size; and
 * random escaped texts, where no match may start or end within an
 * escape or a UTF-8 character; and texts made to make a pattern
 * backtrack, which must take linear time.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_pii_scan.c"
#include "t_unit.h"
#include "pii_builtins.h"

#include <time.h>


#define T_FOUND  256


typedef struct {
    const char                 *text;
    const char                 *want;      /* "name:match|..." */
} t_find_t;


static t_find_t  t_finds[] = {
    { "mail bob@example.com.", "email:bob@example.com" },
    { "x\\nbob@example.com", "email:bob@example.com" },
    { "\\u00e9al@example.com", "email:al@example.com" },
    { "\\\\nbob@example.com", "email:nbob@example.com" },
    { "https:\\/\\/bob@example.com", "" },
    { "http://x.org/a/bob@example.com", "" },
    { "4111 1111 1111 1111", "card:4111 1111 1111 1111" },
    { "4111 1111 1111 1112", "" },
    { "\\u00314111111111111111", "" },
    { "4111111111111111\\n", "card:4111111111111111" },
    { "DE89370400440532013000", "iban:DE89370400440532013000" },
    { "DE89370400440532013001", "" },
    { "10.0.0.1 1.2.3.4.5", "ipv4:10.0.0.1" },
    { "\\t10.0.0.1", "ipv4:10.0.0.1" },
    { "::1 fe80::1%", "ipv6:::1|ipv6:fe80::1" },
    { "+1 415 555 0100", "phone:+1 415 555 0100" },
    { "123-45-6789", "ssn:123-45-6789" },
    { "Bearer abc\\/def0123456789xyz end",
      "bearer:Bearer abc\\/def0123456789xyz" },
    { "AKIAIOSFODNN7EXAMPLE", "aws_key:AKIAIOSFODNN7EXAMPLE" },
    { "", "" },
    { NULL, NULL }
};


static void
t_luhn_mod97(void)
{
    ngx_uint_t   i;

    static const char  *cards[] = {
        "4111111111111111", "5500 0000 0000 0004", "378282246310005",
        "6011-1111-1111-1117", "79927398713", NULL
    };

    static const char  *not_cards[] = {
        "4111111111111112", "1234567890123456", "79927398710", "1", NULL
    };

    static const char  *ibans[] = {
        "DE89370400440532013000", "GB82 WEST 1234 5698 7654 32",
        "FR1420041010050500013M02606", "NL91ABNA0417164300",
        "MT84MALT011000012345MTLCAST001S", NULL
    };

    static const char  *not_ibans[] = {
        "DE88370400440532013000", "GB82 WEST 1234 5698 7654 33",
        "DE8937040044", "XX00000000000000000", "de89370400440532013000",
        "DE89370400440532013000123456789012345", NULL
    };

    t_begin("luhn");

    for (i = 0; cards[i]; i++) {
        t_check(ngx_http_aigw_pii_luhn((u_char *) cards[i],
                                       (u_char *) cards[i] + strlen(cards[i])),
                "%s passes", cards[i]);
    }

    for (i = 0; not_cards[i]; i++) {
        t_check(!ngx_http_aigw_pii_luhn((u_char *) not_cards[i],
                                        (u_char *) not_cards[i]
                                        + strlen(not_cards[i])),
                "%s fails", not_cards[i]);
    }

    t_end();

    t_begin("mod97");

    for (i = 0; ibans[i]; i++) {
        t_check(ngx_http_aigw_pii_mod97((u_char *) ibans[i],
                                        (u_char *) ibans[i]
                                        + strlen(ibans[i])),
                "%s passes", ibans[i]);
    }

    for (i = 0; not_ibans[i]; i++) {
        t_check(!ngx_http_aigw_pii_mod97((u_char *) not_ibans[i],
                                         (u_char *) not_ibans[i]
                                         + strlen(not_ibans[i])),
                "%s fails", not_ibans[i]);
    }

    t_end();
}


static void
t_find(ngx_http_aigw_pii_t *det, ngx_uint_t n, u_char *modes,
    pcre2_match_data *md)
{
    char                       got[1024], *p;
    u_char                    *buf;
    size_t                     len;
    ngx_int_t                  rc, k;
    t_find_t                  *t;
    ngx_http_aigw_pii_found_t  found[T_FOUND];

    t_begin("find");

    for (t = t_finds; t->text; t++) {
        len = strlen(t->text);
        buf = t_dup((u_char *) t->text, len);

        rc = ngx_http_aigw_pii_find(det, n, modes, md, buf, buf + len,
                                    found, T_FOUND);

        p = got;
        *p = '\0';

        for (k = 0; k < rc; k++) {
            p += sprintf(p, "%s%s:%.*s", k ? "|" : "",
                         (char *) det[found[k].detector].name.data,
                         (int) (found[k].end - found[k].start),
                         (char *) found[k].start);
        }

        t_check(rc >= 0 && strcmp(got, t->want) == 0,
                "\"%s\": got \"%s\", want \"%s\"", t->text, got, t->want);

        free(buf);
    }

    t_end();
}


/* random escaped text: matches start and end between whole characters */

static void
t_random(ngx_http_aigw_pii_t *det, ngx_uint_t n, u_char *modes,
    pcre2_match_data *md)
{
    u_char                    *buf, *p, *q, *mark;
    size_t                     len;
    uint64_t                   seed;
    ngx_int_t                  rc, k;
    ngx_uint_t                 i, j, r, total;
    ngx_http_aigw_pii_found_t  found[T_FOUND];

    static const char  *atoms[] = {
        "a", "Z", "0", "1", "4", "9", ".", "-", " ", ":", "@", "+", "(",
        ")", "/", "_", "x.io", "example.com", "\\n", "\\t", "\\\"", "\\\\",
        "\\/", "\\u00e9", "\\u0031", "\xc3\xa9", "\xe2\x82\xac",
        "\xf0\x9f\x98\x80", "4111", "AKIA", "sk-", "eyJ", "fe80", "DE89",
        "Bearer ", "123-45-", NULL
    };

    t_begin("random");

    seed = 16;
    total = 0;

    buf = t_alloc(4096);
    mark = t_alloc(4096);

    for (i = 0; i < 20000; i++) {
        p = buf;
        q = mark;

        for (j = 0, r = t_rand(&seed) % 64; j < r; j++) {
            const char *a = atoms[t_rand(&seed) % 36];

            len = strlen(a);
            memcpy(p, a, len);

            /* 1 where a match may start or end: at an atom's start */
            memset(q, 0, len);
            *q = 1;

            if (a[0] != '\\' && len > 1 && (u_char) a[0] < 0x80) {
                memset(q, 1, len);
            }

            p += len;
            q += len;
        }

        *q = 1;
        len = p - buf;

        p = t_dup(buf, len);

        rc = ngx_http_aigw_pii_find(det, n, modes, md, p, p + len, found,
                                    T_FOUND);

        t_check(rc >= 0, "find failed");

        for (k = 0; k < rc; k++) {
            total++;
            t_check(mark[found[k].start - p] && mark[found[k].end - p]
                    && found[k].start < found[k].end
                    && (k == 0 || found[k].start >= found[k - 1].end),
                    "\"%.*s\": [%d, %d) splits a character or escape",
                    (int) len, p, (int) (found[k].start - p),
                    (int) (found[k].end - p));
        }

        free(p);
    }

    free(buf);
    free(mark);

    t_check(total > 1000, "random texts: %lu matches", (unsigned long) total);

    t_end();
}


/* 256 KB of what makes a backtracking pattern slow, in under a second */

static void
t_slow(ngx_http_aigw_pii_t *det, ngx_uint_t n, u_char *modes,
    pcre2_match_data *md)
{
    u_char                     *buf;
    size_t                      len, k;
    double                      ms;
    ngx_int_t                   rc;
    ngx_uint_t                  i;
    struct timespec             t0, t1;
    ngx_http_aigw_pii_found_t  *found;

    static const char  *units[] = {
        "+123456789012345678901234567890 ", "+1 2 3 4 5 6 7 8 9 0 ",
        "4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 ", "a@", "a.a.a.a.a.a@",
        "x@a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a1 ", "1:1:1:1:1:1:1:1:1:",
        "::::", "AB12 C D E F G H I J K L M N O P Q R S T U V W X ",
        "-----BEGIN A A A A A A A ", "-----BEGIN RSA PRIVATE KEY-----",
        "eyJaaaa.eyJaaaa.", "Bearer Bearer ", "sk-", "1.1.1.1.1.1.1.",
        "123-45-123-45-", NULL
    };

    t_begin("slow");

    len = 256 * 1024;
    buf = t_alloc(len);
    found = t_alloc(T_FOUND * sizeof(ngx_http_aigw_pii_found_t));

    for (i = 0; units[i]; i++) {
        for (k = 0; k < len; k++) {
            buf[k] = units[i][k % strlen(units[i])];
        }

        clock_gettime(CLOCK_MONOTONIC, &t0);

        rc = ngx_http_aigw_pii_find(det, n, modes, md, buf, buf + len, found,
                                    T_FOUND);

        clock_gettime(CLOCK_MONOTONIC, &t1);

        ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;

        t_check(rc >= 0 && ms < 1000, "\"%s\" x 256 KB: %ld, %.0f ms",
                units[i], (long) rc, ms);
    }

    free(buf);
    free(found);

    t_end();
}


int
main(void)
{
    u_char               modes[T_PII_MAX];
    ngx_uint_t           n;
    pcre2_match_data    *md;
    ngx_http_aigw_pii_t  det[T_PII_MAX];

    n = t_pii_compile(det);
    memset(modes, NGX_HTTP_AIGW_PII_REDACT, sizeof(modes));

    md = pcre2_match_data_create(1, NULL);

    t_luhn_mod97();
    t_find(det, n, modes, md);
    t_random(det, n, modes, md);
    t_slow(det, n, modes, md);

    pcre2_match_data_free(md);

    for (n = n; n > 0; n--) {
        pcre2_code_free(det[n - 1].re);
    }

    printf("%s - %lu checks, %lu failed\n", t_failed ? "FAIL" : "PASS",
           (unsigned long) (t_passed + t_failed), (unsigned long) t_failed);

    return t_failed ? 1 : 0;
}
