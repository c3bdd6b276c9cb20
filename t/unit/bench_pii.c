
/*
 * Copyright (C) aigw authors
 */


/*
 * Instructions a byte of the PII step's matcher, every detector on, on
 * the text spans of a body as the scan finds them (not a ctest test; see
 * t/unit/README.md):
 *
 *     bench_pii t/data/json/prompt_2k.json 2000
 *     bench_pii t/data/json/conversation_50k.json 100
 *     bench_pii t/data/json/conversation_50k.json 100 email
 *
 * A third argument runs that detector alone.
 * It prints the bytes of text a run, and the wall time of one, measured
 * natively (run it outside valgrind for the time).
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_scan.c"
#include "../../ngx_http_aigw_module/ngx_http_aigw_pii_scan.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pii_builtins.h"


#define B_MAX    (1024 * 1024)
#define B_TEXTS  1024
#define B_FOUND  4096


int
main(int argc, char **argv)
{
    FILE                       *f;
    size_t                      n, text;
    double                      ns;
    ngx_int_t                   rc;
    ngx_uint_t                  i, k, nd, times, findings;
    pcre2_match_data           *md;
    struct timespec             t0, t1;
    ngx_http_aigw_span_t        spans[B_TEXTS];
    ngx_http_aigw_scan_t        s;
    ngx_http_aigw_pii_t         det[T_PII_MAX];
    u_char                      modes[T_PII_MAX];
    static u_char               buf[B_MAX];
    static ngx_http_aigw_pii_found_t  found[B_FOUND];

    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s <body> <times> [detector]\n", argv[0]);
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

    nd = t_pii_compile(det);
    memset(modes, NGX_HTTP_AIGW_PII_REDACT, sizeof(modes));

    for (k = 0; argc == 4 && k < nd; k++) {
        if (strcmp((char *) det[k].name.data, argv[3]) != 0) {
            modes[k] = NGX_HTTP_AIGW_PII_OFF;
        }
    }

    md = pcre2_match_data_create(1, NULL);

    text = 0;

    for (k = 0; k < s.ntext; k++) {
        text += spans[k].end - spans[k].start;
    }

    findings = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (i = 0; i < times; i++) {
        for (k = 0; k < s.ntext; k++) {
            rc = ngx_http_aigw_pii_find(det, nd, modes, md, spans[k].start,
                                        spans[k].end, found, B_FOUND);
            if (rc < 0 || rc > B_FOUND) {
                fprintf(stderr, "find: %ld\n", (long) rc);
                return 1;
            }

            findings += rc;
        }
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);

    ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);

    printf("%lu bytes of text in %lu spans, %lu findings a run, %.1f us "
           "a run; %lu runs: divide callgrind's count by %lu\n",
           (unsigned long) text, (unsigned long) s.ntext,
           (unsigned long) (times ? findings / times : 0),
           times ? ns / times / 1000 : 0.0, (unsigned long) times,
           (unsigned long) (text * times));

    return 0;
}
