
/*
 * Copyright (C) aigw authors
 */


/*
 * Unit test of the JSON cursor (ngx_http_aigw_json.c), built standalone
 * against the include directories of a configured nginx tree (see
 * t/unit/README.md):
 *
 *     test_json [fixture folder]
 *
 * Every input is in a buffer of exactly its size, so that a read past the
 * end is an AddressSanitizer report.  Each fixture is walked whole (every
 * value of every object and array), its spans checked against cJSON's
 * count of values and against the text; and every strict prefix of it
 * must stop the cursor with an error, never with a whole document.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_json.c"
#include "t_unit.h"

#include <dirent.h>
#include <cjson/cJSON.h>


/* the values of a document, counted by walking it with the cursor */

static ngx_int_t
t_walk(ngx_str_t *v, u_char *start, u_char *last, ngx_uint_t *n)
{
    ngx_int_t             rc;
    ngx_str_t             key, value;
    ngx_http_aigw_json_t  j;

    (*n)++;

    if (v->data < start || v->data + v->len > last) {
        return NGX_ABORT;
    }

    if (ngx_http_aigw_json_open(&j, v) != NGX_OK) {
        /* a lone bracket is a container cut short, not a scalar */
        return (v->len && (v->data[0] == '{' || v->data[0] == '['))
               ? NGX_ERROR : NGX_OK;
    }

    while ((rc = ngx_http_aigw_json_next(&j, &key, &value)) == NGX_OK) {
        if (key.data
            && (key.data < start || key.data + key.len > last
                || key.data[-1] != '"' || key.data[key.len] != '"'))
        {
            return NGX_ABORT;
        }

        rc = t_walk(&value, start, last, n);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    return rc == NGX_DONE ? NGX_OK : rc;
}


static ngx_uint_t
t_count(cJSON *item)
{
    ngx_uint_t  n;
    cJSON      *c;

    n = 1;

    for (c = item->child; c; c = c->next) {
        n += t_count(c);
    }

    return n;
}


static void
t_fixtures(const char *dir)
{
    DIR            *d;
    FILE           *f;
    long            size;
    size_t          len, vend;
    u_char         *p, *q, *end;
    cJSON          *tree;
    ngx_int_t       rc;
    ngx_str_t       v, w;
    ngx_uint_t      n, cut, files;
    struct dirent  *e;
    char            path[1024], *text;

    t_begin("fixtures: whole, and every prefix cut");

    d = opendir(dir);
    t_check(d != NULL, "open %s", dir);

    if (d == NULL) {
        t_end();
        return;
    }

    files = 0;

    while ((e = readdir(d)) != NULL) {
        if (strstr(e->d_name, ".json") == NULL) {
            continue;
        }

        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);

        f = fopen(path, "rb");
        if (f == NULL) {
            continue;
        }

        fseek(f, 0, SEEK_END);
        size = ftell(f);
        fseek(f, 0, SEEK_SET);

        text = t_alloc(size + 1);
        t_check(fread(text, 1, size, f) == (size_t) size, "read %s", path);
        fclose(f);
        text[size] = '\0';

        tree = cJSON_Parse(text);

        if (tree == NULL) {
            /* the fixtures of bad JSON are the scan's, not ours */
            free(text);
            continue;
        }

        files++;

        p = t_dup((u_char *) text, size);

        v.data = ngx_http_aigw_json_ws(p, p + size);
        end = ngx_http_aigw_json_skip(v.data, p + size);

        t_check(end != NULL
                && ngx_http_aigw_json_ws(end, p + size) == p + size,
                "%s: skip finds the end", e->d_name);

        v.len = end ? (size_t) (end - v.data) : 0;

        n = 0;
        rc = t_walk(&v, p, p + size, &n);

        if (end == NULL) {
            free(p);
            cJSON_Delete(tree);
            free(text);
            continue;
        }

        t_check(rc == NGX_OK, "%s: walked, rc %ld", e->d_name, (long) rc);
        t_check(n == t_count(tree), "%s: %lu values, cJSON has %lu",
                e->d_name, (unsigned long) n,
                (unsigned long) t_count(tree));

        /* every strict prefix: never whole, never past its end */

        vend = (size_t) (end - p);
        cut = 0;

        for (len = 0; len < (size_t) size; len += (len < 4096) ? 1 : 61) {
            q = t_dup((u_char *) text, len);

            w.data = ngx_http_aigw_json_ws(q, q + len);
            w.len = q + len - w.data;

            end = ngx_http_aigw_json_skip(w.data, q + len);

            if (len < vend) {
                cut++;
                t_check(end == NULL, "%s: a prefix of %lu bytes is whole",
                        e->d_name, (unsigned long) len);

            } else {
                t_check(end == q + vend, "%s: a prefix of %lu bytes ends "
                        "elsewhere", e->d_name, (unsigned long) len);
            }

            /* walking a cut one stops with an error, inside it */

            if (len < vend && w.len) {
                n = 0;
                rc = t_walk(&w, q, q + len, &n);

                t_check(rc != NGX_ABORT, "%s: a prefix of %lu bytes walked "
                        "outside", e->d_name, (unsigned long) len);
                t_check(rc != NGX_OK, "%s: a prefix of %lu bytes walked "
                        "whole", e->d_name, (unsigned long) len);
            }

            free(q);
        }

        t_check(cut > 0, "%s: prefixes are cut", e->d_name);

        free(p);
        cJSON_Delete(tree);
        free(text);
    }

    closedir(d);

    t_check(files > 0, "fixtures in %s", dir);

    t_end();
}


typedef struct {
    const char  *text;
    const char  *members;    /* key=value;... as the cursor gives them */
    ngx_int_t    rc;         /* of the last next() */
} t_case_t;


static t_case_t  t_cases[] = {
    { "{}", "", NGX_DONE },
    { "[]", "", NGX_DONE },
    { " { \"a\" : 1 , \"b\":[1,2] ,\"c\":{\"d\":\"}\"}} ",
      "a=1;b=[1,2];c={\"d\":\"}\"};", NGX_DONE },
    { "[1,\"x\",true,false,null,-1.5e+3,{},[]]",
      "=1;=\"x\";=true;=false;=null;=-1.5e+3;={};=[];", NGX_DONE },
    { "{\"k\\\"ey\":\"v\\\\\",\"e\":\"\\u00e9\"}",
      "k\\\"ey=\"v\\\\\";e=\"\\u00e9\";", NGX_DONE },

    /* bad: an error, after what was good */
    { "{\"a\":1,}", "a=1;", NGX_ERROR },
    { "{\"a\" 1}", "", NGX_ERROR },
    { "{\"a\":1 \"b\":2}", "a=1;", NGX_ERROR },
    { "{\"a\":}", "", NGX_ERROR },
    { "[1,,2]", "=1;", NGX_ERROR },
    { "{\"a\":[1,2}", "", NGX_ERROR },
    /* a control byte in a string is the scan's to refuse, not ours */
    { "{\"a\":\"x\ny\"}", "a=\"x\ny\";", NGX_DONE },
    { "{\"a\":\"x\\\\\",\"b\":\"\\\\\\\"\"}", "a=\"x\\\\\";b=\"\\\\\\\"\";", NGX_DONE },
    { "{1:2}", "", NGX_ERROR },
    { "{\"a\":1", "a=1;", NGX_ERROR },
    { "[\"a", "", NGX_ERROR },
    { "{\"a\":@}", "", NGX_ERROR },
    { NULL, NULL, 0 }
};


static void
t_known(void)
{
    u_char                *p;
    size_t                 len;
    ngx_int_t              rc;
    ngx_str_t              v, key, value;
    t_case_t              *c;
    ngx_http_aigw_json_t   j;
    char                   got[512], *g;

    t_begin("known answers");

    for (c = t_cases; c->text; c++) {
        len = strlen(c->text);
        p = t_dup((u_char *) c->text, len);

        v.data = ngx_http_aigw_json_ws(p, p + len);
        v.len = p + len - v.data;

        while (v.len && (v.data[v.len - 1] == ' ')) {
            v.len--;
        }

        t_check(ngx_http_aigw_json_open(&j, &v) == NGX_OK, "open %s",
                c->text);

        g = got;
        *g = '\0';

        while ((rc = ngx_http_aigw_json_next(&j, &key, &value)) == NGX_OK) {
            g += snprintf(g, got + sizeof(got) - g, "%.*s=%.*s;",
                          (int) key.len, key.data ? (char *) key.data : "",
                          (int) value.len, (char *) value.data);
        }

        t_check(rc == c->rc, "%s: rc %ld, not %ld", c->text, (long) rc,
                (long) c->rc);
        t_check(strcmp(got, c->members) == 0, "%s: %s, not %s", c->text,
                got, c->members);

        free(p);
    }

    /* not a container */

    v.data = (u_char *) "\"x\"";
    v.len = 3;
    t_check(ngx_http_aigw_json_open(&j, &v) == NGX_DECLINED, "a string");

    t_end();
}


static void
t_member(void)
{
    u_char     *p;
    ngx_str_t   obj, v;
    const char *text = "{\"type\":\"function\",\"function\":{\"name\":\"f\"},"
                       "\"x\":[{\"name\":\"no\"}]}";

    t_begin("member");

    p = t_dup((u_char *) text, strlen(text));
    obj.data = p;
    obj.len = strlen(text);

    t_check(ngx_http_aigw_json_member(&obj, "function", &v) == NGX_OK
            && v.len == 12 && ngx_strncmp(v.data, "{\"name\":\"f\"}", 12) == 0,
            "function");
    t_check(ngx_http_aigw_json_member(&v, "name", &v) == NGX_OK
            && v.len == 3, "function.name");
    t_check(ngx_http_aigw_json_member(&obj, "name", &v) == NGX_DECLINED,
            "name is not a member of the top");
    t_check(ngx_http_aigw_json_member(&obj, "typ", &v) == NGX_DECLINED,
            "a prefix of a name is not it");

    free(p);

    t_end();
}


int
main(int argc, char **argv)
{
    t_known();
    t_member();
    t_fixtures(argc > 1 ? argv[1] : "t/data/json");

    printf("%lu passed, %lu failed\n",
           (unsigned long) t_passed, (unsigned long) t_failed);

    return t_failed ? 1 : 0;
}
