
/*
 * Copyright (C) aigw authors
 */


/*
 * Instructions a byte of the body scanner, under callgrind (not a ctest
 * test; see t/unit/README.md):
 *
 *     bench_scan t/data/json/conversation_50k.json 20
 *     bench_scan t/data/json/bench_request.json 2000
 *     bench_scan t/data/json/bench_answer.json 1000
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_scan.c"


#define B_MAX    (1024 * 1024)
#define B_TEXTS  256


int
main(int argc, char **argv)
{
    FILE                  *f;
    size_t                 n;
    ngx_int_t              i, times;
    ngx_http_aigw_span_t   text[B_TEXTS];
    ngx_http_aigw_scan_t   s;
    static u_char          buf[B_MAX];

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

    for (i = 0; i < times; i++) {
        s.text = text;
        s.text_size = B_TEXTS;
        s.keys = NULL;

        if (ngx_http_aigw_scan(&s, buf, buf + n) != NGX_OK) {
            fprintf(stderr, "%s: %s at %lu\n", argv[1], s.reason,
                    (unsigned long) s.error);
            return 1;
        }
    }

    printf("%lu bytes, %ld scans: divide callgrind's count by %lu\n",
           (unsigned long) n, (long) times, (unsigned long) (n * times));

    return 0;
}
