
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
    { "{\"a\":\"x\\\\\",\"b\":\"\\\\\\\"\"}",
      "a=\"x\\\\\";b=\"\\\\\\\"\";", NGX_DONE },
    { "{1:2}", "", NGX_ERROR },
    { "{\"a\":1", "a=1;", NGX_ERROR },
    { "[\"a", "", NGX_ERROR },
    { "{\"a\":@}", "", NGX_ERROR },

    /* escapes where a string's end is looked for */
    { "[\"0123456789abcde\\\"x\",\"0123456789abcd\\\\\"]",
      "=\"0123456789abcde\\\"x\";=\"0123456789abcd\\\\\";", NGX_DONE },
    { "[\"0123456789abcdefghijklmno\\\\\\\"\"]",
      "=\"0123456789abcdefghijklmno\\\\\\\"\";", NGX_DONE },
    { "[\"0123456789abcdef\\", "", NGX_ERROR },
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


/*
 * json_members(): known answers.  names: "a,b,c"; want: "a=1;b=;c=x;" as
 * the values come (empty: not found); rc: of the call.
 */

typedef struct {
    const char  *text;
    const char  *names;
    const char  *want;
    ngx_int_t    rc;
} t_members_t;


static t_members_t  t_members_cases[] = {
    { "{\"type\":\"text\",\"text\":\"hi\"}", "type,text",
      "type=\"text\";text=\"hi\";", NGX_OK },
    { "{\"text\":\"hi\",\"type\":\"text\"}", "type,text",
      "type=\"text\";text=\"hi\";", NGX_OK },
    { "{\"a\":1}", "type,text", "type=;text=;", NGX_OK },
    { "{}", "a", "a=;", NGX_OK },
    { " { \"a\" : [1, {\"b\":2}] , \"b\" : {} } ", "b,a",
      "b={};a=[1, {\"b\":2}];", NGX_OK },

    /* nested keys are not the object's */
    { "{\"x\":{\"a\":1},\"y\":[{\"a\":2}]}", "a", "a=;", NGX_OK },

    /* a prefix, or a longer name, is not the name */
    { "{\"typ\":1,\"types\":2,\"Type\":3}", "type", "type=;", NGX_OK },

    /* escaped keys, compared as they unescape */
    { "{\"typ\\u0065\":1}", "type", "type=1;", NGX_OK },
    { "{\"\\u0074\\u0059pe\":1,\"\\u0074ype\":2}", "type", "type=2;",
      NGX_OK },
    { "{\"\\u0074\\u0079\\u0070\\u0065\":1}", "type", "type=1;", NGX_OK },
    { "{\"\\u0054ype\":1,\"typ\\u00e9\":2,\"ty\\npe\":3,\"t\\/pe\":4}",
      "type", "type=;", NGX_OK },
    /* a bad escape is the scan's to refuse: it is no name here */
    { "{\"typ\\u006\":1}", "type", "type=;", NGX_OK },
    { "{\"typ\\u00zz\":1,\"type\\u0\":2}", "type", "type=;", NGX_OK },
    { "{\"a\\\"\":1,\"a\":2}", "a", "a=2;", NGX_OK },
    { "{\"tool_use_\\u0069d\":\"x\"}", "tool_use_id", "tool_use_id=\"x\";",
      NGX_OK },

    /* a name twice: refused, nothing half found */
    { "{\"type\":\"a\",\"text\":1,\"type\":\"b\"}", "type,text",
      "type=;text=;", NGX_HTTP_AIGW_JSON_TWICE },
    { "{\"type\":\"a\",\"typ\\u0065\":\"b\"}", "type",
      "type=;", NGX_HTTP_AIGW_JSON_TWICE },
    { "{\"x\":1,\"x\":2,\"type\":3}", "type", "type=3;", NGX_OK },

    /* not an object, or bad */
    { "[1,2]", "a", "a=;", NGX_DECLINED },
    { "\"a\"", "a", "a=;", NGX_DECLINED },
    { "{\"a\":1,}", "a", "a=;", NGX_ERROR },
    { "{\"a\":1", "a", "a=;", NGX_ERROR },
    { "{\"a\" 1}", "a", "a=;", NGX_ERROR },
    { NULL, NULL, NULL, 0 }
};


static void
t_members_known(void)
{
    u_char       *p;
    size_t        len;
    ngx_int_t     rc;
    ngx_str_t     v, names[8], values[8];
    ngx_uint_t    i, n;
    t_members_t  *c;
    char          got[512], *g, buf[256], *name, *last;

    t_begin("members: known answers");

    for (c = t_members_cases; c->text; c++) {
        len = strlen(c->text);
        p = t_dup((u_char *) c->text, len);

        v.data = ngx_http_aigw_json_ws(p, p + len);
        v.len = p + len - v.data;

        while (v.len && v.data[v.len - 1] == ' ') {
            v.len--;
        }

        snprintf(buf, sizeof(buf), "%s", c->names);

        n = 0;

        for (name = strtok_r(buf, ",", &last); name && n < 8;
             name = strtok_r(NULL, ",", &last))
        {
            names[n].data = (u_char *) name;
            names[n].len = strlen(name);
            n++;
        }

        /* what a value held before the call does not survive it */

        for (i = 0; i < n; i++) {
            ngx_str_set(&values[i], "stale");
        }

        rc = ngx_http_aigw_json_members(&v, names, values, n);

        g = got;
        *g = '\0';

        for (i = 0; i < n; i++) {
            t_check(values[i].data == NULL
                    || (values[i].data >= p
                        && values[i].data + values[i].len <= p + len),
                    "%s: %s outside the text", c->text, names[i].data);

            g += snprintf(g, got + sizeof(got) - g, "%s=%.*s;",
                          (char *) names[i].data, (int) values[i].len,
                          values[i].data ? (char *) values[i].data : "");
        }

        t_check(rc == c->rc, "%s: rc %ld, not %ld", c->text, (long) rc,
                (long) c->rc);
        t_check(strcmp(got, c->want) == 0, "%s: %s, not %s", c->text, got,
                c->want);

        free(p);
    }

    t_end();
}


/*
 * The reference: the first value of each name by a walk of json_next()
 * and ngx_http_aigw_scan_equal()'s rule done the slow way (the key
 * unescaped by hand for \u escapes of ASCII), and TWICE on a second.
 */

static ngx_int_t
t_members_ref(ngx_str_t *object, ngx_str_t *names, ngx_str_t *values,
    ngx_uint_t n)
{
    u_char                c, k[256], *q, *e;
    size_t                kl;
    ngx_int_t             rc;
    unsigned int          u;
    ngx_str_t             key, value;
    ngx_uint_t            i;
    ngx_http_aigw_json_t  j;

    for (i = 0; i < n; i++) {
        ngx_str_null(&values[i]);
    }

    if (ngx_http_aigw_json_open(&j, object) != NGX_OK || j.close != '}') {
        return NGX_DECLINED;
    }

    while ((rc = ngx_http_aigw_json_next(&j, &key, &value)) == NGX_OK) {

        kl = 0;
        e = key.data + key.len;

        for (q = key.data; q < e && kl < sizeof(k); kl++) {
            if (*q != '\\') {
                k[kl] = *q++;
                continue;
            }

            if (e - q >= 6 && q[1] == 'u') {
                if (sscanf((char *) q + 2, "%4x", &u) == 1 && u < 0x80) {
                    k[kl] = (u_char) u;

                } else {
                    k[kl] = 0x80;   /* matches no name */
                }

                q += 6;
                continue;
            }

            c = (q + 1 < e) ? q[1] : 0;
            k[kl] = (c == '"' || c == '\\' || c == '/') ? c : 0x80;
            q += 2;
        }

        for (i = 0; i < n; i++) {
            if (names[i].len == kl && memcmp(names[i].data, k, kl) == 0) {
                if (values[i].data) {
                    for (i = 0; i < n; i++) {
                        ngx_str_null(&values[i]);
                    }

                    return NGX_HTTP_AIGW_JSON_TWICE;
                }

                values[i] = value;
            }
        }
    }

    if (rc != NGX_DONE) {
        for (i = 0; i < n; i++) {
            ngx_str_null(&values[i]);
        }

        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Every object of a document: its own keys (those that need no escape)
 * and a name it does not have asked for, against the reference; then the
 * object cut at every byte (every 61st past 1 KB), each cut in a buffer
 * of its size, never found whole.
 */

static ngx_uint_t  t_members_objects;


static void
t_members_walk(ngx_str_t *v, const char *file)
{
    u_char                *q;
    size_t                 len;
    ngx_int_t              rc, ref;
    ngx_str_t              key, value, names[9], got[9], want[9], w;
    ngx_uint_t             i, n;
    ngx_http_aigw_json_t   j;

    static ngx_str_t  absent = ngx_string("no_such_member");

    if (ngx_http_aigw_json_open(&j, v) != NGX_OK) {
        return;
    }

    n = 0;

    while (ngx_http_aigw_json_next(&j, &key, &value) == NGX_OK) {
        if (j.close == '}' && n < 8
            && memchr(key.data, '\\', key.len) == NULL)
        {
            names[n++] = key;
        }

        t_members_walk(&value, file);
    }

    if (j.close != '}') {
        return;
    }

    t_members_objects++;

    names[n++] = absent;

    rc = ngx_http_aigw_json_members(v, names, got, n);
    ref = t_members_ref(v, names, want, n);

    t_check(rc == ref, "%s: an object: rc %ld, the reference %ld", file,
            (long) rc, (long) ref);

    for (i = 0; i < n; i++) {
        t_check(got[i].data == want[i].data && got[i].len == want[i].len,
                "%s: %.*s: another value", file, (int) names[i].len,
                names[i].data);
    }

    /* cut: an error, every value empty, nothing read past the cut */

    for (len = 0; len < v->len; len += (len < 1024) ? 1 : 61) {
        q = t_dup(v->data, len);
        w.data = q;
        w.len = len;

        rc = ngx_http_aigw_json_members(&w, names, got, n);

        t_check(rc == NGX_ERROR || rc == NGX_DECLINED
                || rc == NGX_HTTP_AIGW_JSON_TWICE,
                "%s: an object cut at %lu is whole", file,
                (unsigned long) len);

        for (i = 0; i < n; i++) {
            t_check(got[i].data == NULL, "%s: cut at %lu, a value is left",
                    file, (unsigned long) len);
        }

        free(q);
    }
}


static void
t_members_fixtures(const char *dir)
{
    DIR            *d;
    size_t          size;
    u_char         *p, *end;
    ngx_str_t       v;
    struct dirent  *e;

    t_begin("members: every object of the fixtures, whole and cut");

    d = opendir(dir);
    t_check(d != NULL, "open %s", dir);

    if (d == NULL) {
        t_end();
        return;
    }

    t_members_objects = 0;

    while ((e = readdir(d)) != NULL) {
        if (strstr(e->d_name, ".json") == NULL) {
            continue;
        }

        p = t_read(dir, e->d_name, &size);
        if (p == NULL) {
            continue;
        }

        v.data = ngx_http_aigw_json_ws(p, p + size);
        end = ngx_http_aigw_json_skip(v.data, p + size);

        if (end) {
            v.len = end - v.data;
            t_members_walk(&v, e->d_name);
        }

        free(p);
    }

    closedir(d);

    t_check(t_members_objects > 0, "objects in %s", dir);

    printf("# %lu objects\n", (unsigned long) t_members_objects);

    t_end();
}


int
main(int argc, char **argv)
{
    t_known();
    t_member();
    t_members_known();
    t_fixtures(argc > 1 ? argv[1] : "t/data/json");
    t_members_fixtures(argc > 1 ? argv[1] : "t/data/json");

    printf("%lu passed, %lu failed\n",
           (unsigned long) t_passed, (unsigned long) t_failed);

    return t_failed ? 1 : 0;
}
