
/*
 * Copyright (C) aigw authors
 */


/*
 * Unit test of the configuration tokenizer of the audit's configuration
 * hash (ngx_http_aigw_audit_token.c): words, quotes and their escapes,
 * comments, ; { }, as nginx reads them; then random texts, each in a
 * buffer of exactly its size (ASan sees a read past it), must end with
 * tokens inside their text.
 *
 *     test_audit_token
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_audit_token.c"
#include "t_unit.h"


#define T_MAX_TOKENS  32


/* the tokens of a text, joined by "|" */

static void
t_tokens(const char *text, char *out, size_t size)
{
    u_char     *p, *last, *buf, *copy;
    size_t      len, n;
    ngx_str_t   tok;
    ngx_uint_t  i;

    len = strlen(text);
    copy = t_alloc(len + 1);
    buf = t_alloc(len + 1);
    memcpy(copy, text, len);

    p = copy;
    last = copy + len;
    out[0] = '\0';
    n = 0;

    for (i = 0; i < T_MAX_TOKENS; i++) {
        p = ngx_http_aigw_audit_config_token(p, last, &tok, buf);

        if (tok.data == NULL) {
            break;
        }

        if (n + tok.len + 2 >= size) {
            break;
        }

        if (n) {
            out[n++] = '|';
        }

        memcpy(out + n, tok.data, tok.len);
        n += tok.len;
        out[n] = '\0';
    }

    free(copy);
    free(buf);
}


static void
t_cases(void)
{
    char  out[512];
    int   i;

    static const char  *cases[][2] = {
        { "include a.conf;", "include|a.conf|;" },
        { "  include\ta.conf ;\n", "include|a.conf|;" },
        { "http{include x;}", "http|{|include|x|;|}" },
        { "# include no.conf;\ninclude yes.conf;", "include|yes.conf|;" },
        { "a b; # c d;\ne;", "a|b|;|e|;" },
        { "include \"a b.conf\";", "include|a b.conf|;" },
        { "include 'it''s';", "include|it|s|;" },
        { "x \"a\\\"b\" 'c\\'d' \"e\\\\f\";", "x|a\"b|c'd|e\\f|;" },
        { "x \"\\t\\n\\r\";", "x|\t\n\r|;" },
        { "x \"\\q\";", "x|\\q|;" },
        { "x \";\" '{';", "x|;|{|;" },
        { "a\\ b;", "a\\ b|;" },
        { "a\\;b;", "a\\;b|;" },
        { "x \"open", "x|open" },
        { "x \"end\\", "x|end\\" },
        { "#only a comment", "" },
        { "", "" },
        { "a#b;", "a#b|;" },
        { "map $x $y { include m.conf; }",
          "map|$x|$y|{|include|m.conf|;|}" },
    };

    t_begin("cases");

    for (i = 0; i < (int) (sizeof(cases) / sizeof(cases[0])); i++) {
        t_tokens(cases[i][0], out, sizeof(out));
        t_check(strcmp(out, cases[i][1]) == 0, "\"%s\": \"%s\", not \"%s\"",
                cases[i][0], out, cases[i][1]);
    }

    t_end();
}


/* random texts of the syntax's characters: bounded, tokens inside */

static void
t_random(void)
{
    u_char      *p, *last, *text, *buf;
    size_t       len;
    ngx_str_t    tok;
    uint64_t     seed;
    ngx_uint_t   i, j, n;

    static const char  alphabet[] = "ab \t\n\r;{}#\"'\\$*";

    t_begin("random");

    seed = 18;

    for (i = 0; i < 20000; i++) {
        len = t_rand(&seed) % 64;
        text = t_alloc(len ? len : 1);
        buf = t_alloc(len + 1);

        for (j = 0; j < len; j++) {
            text[j] = alphabet[t_rand(&seed) % (sizeof(alphabet) - 1)];
        }

        p = text;
        last = text + len;

        for (n = 0; n <= len + 1; n++) {
            p = ngx_http_aigw_audit_config_token(p, last, &tok, buf);

            if (tok.data == NULL) {
                break;
            }

            if (!t_check(p > text && p <= last, "position outside")
                || !t_check(tok.len <= len, "token longer than its text")
                || !t_check((tok.data >= buf && tok.data + tok.len
                                                <= buf + len + 1)
                            || (tok.data >= text
                                && tok.data + tok.len <= last),
                            "token outside"))
            {
                break;
            }
        }

        t_check(n <= len, "more tokens than bytes: %lu in %lu",
                (unsigned long) n, (unsigned long) len);

        free(text);
        free(buf);
    }

    t_end();
}


int
main(int argc, char **argv)
{
    t_cases();
    t_random();

    printf("%lu passed, %lu failed\n",
           (unsigned long) t_passed, (unsigned long) t_failed);

    return t_failed ? 1 : 0;
}
