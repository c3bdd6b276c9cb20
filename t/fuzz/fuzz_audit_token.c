
/*
 * Copyright (C) aigw authors
 */


/*
 * libFuzzer harness of the configuration tokenizer of the audit's
 * configuration hash (ngx_http_aigw_audit_token.c; t/fuzz/run.sh builds
 * and runs it): any text, in a buffer of exactly its size, and a token
 * buffer of exactly its size (an unescaped token is never longer than
 * its text).  No read or write past either; each token moves on through
 * the text; ; { } point into the text, the others into the buffer; the
 * end is the text's end.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_audit_token.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static void
f_assert(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_audit_token: %s\n", what);
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *text, *buf, *p, *next, *last;
    size_t       n;
    ngx_str_t    tok;

    text = malloc(size ? size : 1);
    buf = malloc(size ? size : 1);
    f_assert(text != NULL && buf != NULL, "out of memory");
    memcpy(text, data, size);

    p = text;
    last = text + size;

    for (n = 0; ; n++) {
        f_assert(n <= size, "more tokens than bytes");

        next = ngx_http_aigw_audit_config_token(p, last, &tok, buf);

        f_assert(next >= p && next <= last, "the end outside the text");

        if (tok.data == NULL) {
            f_assert(next == last, "no token before the end");
            break;
        }

        f_assert(next > p, "a token that does not move on");

        if (tok.data >= text && tok.data < last) {
            f_assert(tok.len == 1
                     && (*tok.data == ';' || *tok.data == '{'
                         || *tok.data == '}'),
                     "a token in the text that is not ; { }");

        } else {
            f_assert(tok.data == buf, "a token outside text and buffer");
            f_assert(tok.len <= (size_t) (next - p),
                     "a token longer than its text");
        }

        p = next;
    }

    free(buf);
    free(text);

    return 0;
}
