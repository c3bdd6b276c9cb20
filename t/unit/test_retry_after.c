
/*
 * Copyright (C) aigw authors
 */


/*
 * Unit test of the Retry-After and x-ratelimit-reset-* readers, built
 * standalone against a configured nginx tree (see t/unit/README.md):
 *
 *     test_retry_after
 *
 * Every value is copied into a buffer of exactly its size, so that a
 * read past its end is an AddressSanitizer report; every strict prefix
 * of a value is read too, and must not read more than it was given.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_retry_after.c"
#include "t_unit.h"


typedef struct {
    const char  *text;
    ngx_msec_t   ms;
} t_wait_case_t;


static t_wait_case_t  t_retry_after_cases[] = {
    { "0", 0 },
    { "1", 1000 },
    { "7", 7000 },
    { "  7 ", 7000 },
    { "120", 120000 },
    { "86400", 86400000 },
    { "86401", 0 },                    /* longer than a day */
    { "99999999999999999999999", 0 },  /* no overflow */
    { "", 0 },
    { " ", 0 },
    { "-1", 0 },
    { "1.5", 0 },                      /* delta-seconds are whole */
    { "7s", 0 },
    { "Wed, 21 Oct 2015 07:28:00 GMT", 0 },  /* a date: not read */
    { "1 2", 0 },
    { NULL, 0 }
};


static t_wait_case_t  t_duration_cases[] = {
    { "1s", 1000 },
    { "20ms", 20 },
    { "6m0s", 360000 },
    { "1m30s", 90000 },
    { "1.5s", 1500 },
    { "0.25s", 250 },
    { "1.23456s", 1234 },              /* to the millisecond */
    { "2", 2000 },                     /* seconds by default */
    { "1h", 3600000 },
    { "24h", 86400000 },
    { "24h1ms", 0 },                   /* longer than a day */
    { "25h", 0 },
    { "999999999999999999999h", 0 },   /* no overflow */
    { "86400000ms", 86400000 },
    { "0s", 0 },
    { "", 0 },
    { "s", 0 },
    { "ms", 0 },
    { "1x", 0 },
    { "-1s", 0 },
    { "1s ", 0 },
    { "1.s", 1000 },
    { ".5s", 0 },
    { "1m", 60000 },
    { "3m2", 182000 },                 /* a last number without unit */
    { NULL, 0 }
};


/* the value in a heap buffer of exactly its length */

static ngx_msec_t
t_read_value(ngx_msec_t (*read)(u_char *p, size_t len), const char *s,
    size_t len)
{
    u_char      *p;
    ngx_msec_t   ms;

    p = t_dup((const u_char *) s, len);
    ms = read(p, len);
    free(p);

    return ms;
}


static void
t_waits(ngx_msec_t (*read)(u_char *p, size_t len), t_wait_case_t *c)
{
    size_t      len, i;
    ngx_msec_t  ms;

    for ( /* void */ ; c->text; c++) {
        len = strlen(c->text);

        ms = t_read_value(read, c->text, len);

        (void) t_check(ms == c->ms, "\"%s\": %lu ms, expected %lu",
                       c->text, (unsigned long) ms, (unsigned long) c->ms);

        /* every prefix: bounded, and never more than a day */

        for (i = 0; i < len; i++) {
            ms = t_read_value(read, c->text, i);

            (void) t_check(ms <= NGX_HTTP_AIGW_RETRY_AFTER_MAX,
                           "prefix %lu of \"%s\": %lu ms",
                           (unsigned long) i, c->text, (unsigned long) ms);
        }
    }
}


/* random bytes of the values' alphabet: bounded, no report */

static void
t_random(void)
{
    u_char      buf[24];
    size_t      len, i;
    uint64_t    seed;
    ngx_uint_t  n;
    ngx_msec_t  a, b;

    static const char  alphabet[] = "0123456789.hms -";

    seed = 14;

    for (n = 0; n < 20000; n++) {
        len = t_rand(&seed) % sizeof(buf);

        for (i = 0; i < len; i++) {
            buf[i] = alphabet[t_rand(&seed) % (sizeof(alphabet) - 1)];
        }

        a = t_read_value(ngx_http_aigw_retry_after, (char *) buf, len);
        b = t_read_value(ngx_http_aigw_retry_after_duration, (char *) buf,
                         len);

        if (!t_check(a <= NGX_HTTP_AIGW_RETRY_AFTER_MAX
                     && b <= NGX_HTTP_AIGW_RETRY_AFTER_MAX
                     && a % 1000 == 0,
                     "random value %.*s: %lu, %lu ms", (int) len, buf,
                     (unsigned long) a, (unsigned long) b))
        {
            break;
        }
    }
}


int
main(int argc, char **argv)
{
    t_begin("Retry-After");
    t_waits(ngx_http_aigw_retry_after, t_retry_after_cases);
    t_end();

    t_begin("x-ratelimit-reset durations");
    t_waits(ngx_http_aigw_retry_after_duration, t_duration_cases);
    t_end();

    t_begin("random values");
    t_random();
    t_end();

    printf("%lu passed, %lu failed\n",
           (unsigned long) t_passed, (unsigned long) t_failed);

    return t_failed ? 1 : 0;
}
