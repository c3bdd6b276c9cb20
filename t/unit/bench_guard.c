
/*
 * Copyright (C) aigw authors
 */


/*
 * Instructions a byte of the prompt guard's patterns, on the text spans
 * of a body as the scan finds them, as ngx_http_aigw_guard_text() runs
 * them: each span unescaped when it holds a backslash, then every deny
 * pattern, caseless, JIT-compiled as with "pcre_jit on" (not a ctest
 * test; see t/unit/README.md):
 *
 *     bench_guard t/data/json/prompt_2k.json 2000
 *     bench_guard t/data/json/prompt_50k.json 100
 *
 * It prints the bytes of text a run, and the wall time of one, measured
 * natively (run it outside valgrind for the time).
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_scan.c"

#define PCRE2_CODE_UNIT_WIDTH  8
#include <pcre2.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#define B_MAX    (1024 * 1024)
#define B_TEXTS  1024


/* the deny list of examples/guard.conf, and two more of its kind */
static const char  *b_patterns[] = {
    "ignore (all |any )?(previous|prior) instructions",
    "\\bDAN mode\\b|developer mode enabled",
    "system prompt:?\\s*(reveal|print|show)",
    "\\bjailbreak\\b",
    "pretend (you are|to be) (an? )?unfiltered",
    NULL
};


int
main(int argc, char **argv)
{
    FILE                  *f;
    int                    err;
    u_char                *text, *p;
    size_t                 n, bytes, len;
    double                 ns;
    PCRE2_SIZE             off;
    ngx_uint_t             i, k, j, np, times, matches;
    pcre2_code            *re[8];
    pcre2_match_data      *md;
    struct timespec        t0, t1;
    ngx_http_aigw_span_t   spans[B_TEXTS];
    ngx_http_aigw_scan_t   s;
    static u_char          buf[B_MAX], unesc[B_MAX];

    if (argc != 3) {
        fprintf(stderr, "usage: %s <body> <times>\n", argv[0]);
        return 2;
    }

    f = fopen(argv[1], "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", argv[1]);
        return 2;
    }

    n = fread(buf, 1, B_MAX, f);
    fclose(f);

    times = atoi(argv[2]);

    memset(&s, 0, sizeof(s));
    s.text = spans;
    s.text_size = B_TEXTS;

    if (ngx_http_aigw_scan(&s, buf, buf + n) != NGX_OK
        || s.ntext > B_TEXTS)
    {
        fprintf(stderr, "%s: not a body this bench reads\n", argv[1]);
        return 1;
    }

    for (np = 0; b_patterns[np]; np++) {
        re[np] = pcre2_compile((PCRE2_SPTR) b_patterns[np],
                               PCRE2_ZERO_TERMINATED, PCRE2_CASELESS, &err,
                               &off, NULL);
        if (re[np] == NULL || pcre2_jit_compile(re[np], PCRE2_JIT_COMPLETE))
        {
            fprintf(stderr, "pattern %lu\n", (unsigned long) np);
            return 1;
        }
    }

    md = pcre2_match_data_create(1, NULL);

    bytes = 0;

    for (k = 0; k < s.ntext; k++) {
        bytes += spans[k].end - spans[k].start;
    }

    matches = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (i = 0; i < times; i++) {
        for (k = 0; k < s.ntext; k++) {
            text = spans[k].start;
            len = spans[k].end - spans[k].start;

            if (memchr(text, '\\', len)) {
                p = ngx_http_aigw_scan_unescape(unesc, text, spans[k].end);
                text = unesc;
                len = p - unesc;
            }

            for (j = 0; j < np; j++) {
                if (pcre2_match(re[j], text, len, 0, 0, md, NULL) >= 0) {
                    matches++;
                }
            }
        }
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);

    ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);

    printf("%lu bytes of text in %lu spans, %lu patterns, %lu matches a "
           "run, %.1f us a run; %lu runs: divide callgrind's count by %lu\n",
           (unsigned long) bytes, (unsigned long) s.ntext,
           (unsigned long) np, (unsigned long) (times ? matches / times : 0),
           times ? ns / times / 1000 : 0.0, (unsigned long) times,
           (unsigned long) (bytes * times));

    return 0;
}
