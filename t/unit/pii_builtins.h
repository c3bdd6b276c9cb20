
/*
 * Copyright (C) aigw authors
 */


/*
 * The built-in detectors compiled with PCRE2 itself (JIT where it can), as
 * ngx_regex_compile() and "pcre_jit on" do in nginx: for test_pii and
 * bench_pii, which #include ngx_http_aigw_pii_scan.c first.
 */


#define T_PII_MAX  NGX_HTTP_AIGW_PII_MAX


static ngx_uint_t
t_pii_compile(ngx_http_aigw_pii_t *det)
{
    int                           err;
    PCRE2_SIZE                    off;
    ngx_uint_t                    n;
    ngx_http_aigw_pii_builtin_t  *b;

    for (n = 0, b = ngx_http_aigw_pii_builtins; b->name; b++, n++) {
        memset(&det[n], 0, sizeof(ngx_http_aigw_pii_t));

        det[n].name.data = (u_char *) b->name;
        det[n].name.len = strlen(b->name);
        det[n].anchor = b->anchor;
        det[n].check = b->check;
        det[n].digits = b->digits;
        det[n].capitals = b->capitals;

        if (b->need) {
            det[n].need.data = (u_char *) b->need;
            det[n].need.len = strlen(b->need);
        }
        det[n].re = pcre2_compile((PCRE2_SPTR) b->pattern,
                                  PCRE2_ZERO_TERMINATED, 0, &err, &off,
                                  NULL);
        if (det[n].re == NULL) {
            fprintf(stderr, "%s: pattern error %d at %lu\n", b->name, err,
                    (unsigned long) off);
            exit(2);
        }

        (void) pcre2_jit_compile(det[n].re, PCRE2_JIT_COMPLETE);
    }

    return n;
}
