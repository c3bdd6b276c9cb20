
/*
 * Copyright (C) aigw authors
 */


/*
 * A tokenizer of nginx's configuration syntax, for the configuration
 * hash's walk of includes (audit_config.c).  Bounded by the text, no
 * allocation, only nginx's macros: t/unit/test_audit_token.c tests it.
 */


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * The next token of nginx's configuration syntax: a word or a quoted
 * string (its quotes gone; \" \' \\ \t \r \n unescaped and another
 * escaped byte kept with its backslash, as nginx does), or one of ; { }
 * (tok pointing into the text, not into buf).  Comments and white space
 * are skipped.  tok->data is NULL at the end.
 */

u_char *
ngx_http_aigw_audit_config_token(u_char *p, u_char *last, ngx_str_t *tok,
    u_char *buf)
{
    u_char  *b, q;

    tok->data = NULL;
    tok->len = 0;

    for ( ;; ) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == '\r'
                            || *p == '\n'))
        {
            p++;
        }

        if (p < last && *p == '#') {
            while (p < last && *p != '\n') {
                p++;
            }

            continue;
        }

        break;
    }

    if (p == last) {
        return p;
    }

    if (*p == ';' || *p == '{' || *p == '}') {
        tok->data = p;
        tok->len = 1;
        return p + 1;
    }

    b = buf;
    q = 0;

    if (*p == '"' || *p == '\'') {
        q = *p++;
    }

    /* a word ends at white space or ; { }, a quoted one at its quote */

    while (p < last) {
        if (q ? *p == q
              : (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'
                 || *p == ';' || *p == '{' || *p == '}'))
        {
            break;
        }

        if (*p == '\\' && p + 1 < last) {
            p++;

            switch (*p) {
            case 't':
                *b++ = '\t';
                break;
            case 'r':
                *b++ = '\r';
                break;
            case 'n':
                *b++ = '\n';
                break;
            case '"':
            case '\'':
            case '\\':
                *b++ = *p;
                break;
            default:
                *b++ = '\\';
                *b++ = *p;
            }

            p++;
            continue;
        }

        *b++ = *p++;
    }

    if (q && p < last) {
        p++;
    }

    tok->data = buf;
    tok->len = b - buf;

    return p;
}
