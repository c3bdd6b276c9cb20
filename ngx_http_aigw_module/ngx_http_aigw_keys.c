
/*
 * Copyright (C) aigw authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <fnmatch.h>
#include <cjson/cJSON.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_keys.h"


#define NGX_HTTP_AIGW_KEYS_MAX_FILE  (512 * 1024 * 1024)


static ngx_int_t ngx_http_aigw_keys_read_file(ngx_conf_t *cf,
    ngx_str_t *file, ngx_str_t *text);
static char *ngx_http_aigw_keys_entry(ngx_conf_t *cf, cJSON *item,
    ngx_http_aigw_key_t *key);
static char *ngx_http_aigw_keys_string(ngx_conf_t *cf, cJSON *obj,
    const char *name, ngx_uint_t required, ngx_str_t *out);
static ngx_uint_t ngx_http_aigw_keys_control(u_char *p);
static char *ngx_http_aigw_keys_number(cJSON *obj, const char *name,
    ngx_uint_t *out);
static char *ngx_http_aigw_keys_time(cJSON *obj, const char *name,
    time_t *out);
static ngx_int_t ngx_http_aigw_keys_hex(ngx_str_t *hex, u_char *out);
static void ngx_http_aigw_keys_cleanup(void *data);


/* the "limits" of a key, with the names of aigw_limit */

static struct {
    const char  *name;
    size_t       offset;
} ngx_http_aigw_keys_limits[] = {
    { "rpm", offsetof(ngx_http_aigw_limits_t, rpm) },
    { "rpd", offsetof(ngx_http_aigw_limits_t, rpd) },
    { "tpm", offsetof(ngx_http_aigw_limits_t, tpm) },
    { "tpd", offsetof(ngx_http_aigw_limits_t, tpd) },
    { "tokens_per_day", offsetof(ngx_http_aigw_limits_t, tpd) },
    { "concurrency", offsetof(ngx_http_aigw_limits_t, concurrency) },
    { NULL, 0 }
};


/*
 * Loads a key file when the configuration is read: a JSON array of key
 * entries, or an object with one under "keys".  An error names the entry
 * and the field; the configuration is then refused and a running nginx
 * keeps the keys it has.
 */

ngx_http_aigw_keys_t *
ngx_http_aigw_keys_load(ngx_conf_t *cf, ngx_str_t *file)
{
    char                  *err;
    cJSON                 *root, *list, *item, *id;
    ngx_str_t              text;
    ngx_uint_t             i, n, size, slot;
    ngx_pool_cleanup_t    *cln;
    ngx_http_aigw_key_t   *key;
    ngx_http_aigw_keys_t  *keys;

    if (ngx_conf_full_name(cf->cycle, file, 1) != NGX_OK) {
        return NULL;
    }

    if (ngx_http_aigw_keys_read_file(cf, file, &text) != NGX_OK) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(cf->temp_pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    root = cJSON_ParseWithLength((char *) text.data, text.len);

    if (root == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%V\" is not valid JSON near byte %uz",
                           file,
                           (size_t) (cJSON_GetErrorPtr()
                                     ? (u_char *) cJSON_GetErrorPtr()
                                       - text.data
                                     : 0));
        return NULL;
    }

    cln->handler = ngx_http_aigw_keys_cleanup;
    cln->data = root;

    list = cJSON_IsArray(root) ? root
                               : cJSON_GetObjectItemCaseSensitive(root, "keys");

    if (!cJSON_IsArray(list)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%V\" must hold an array of keys, or "
                           "an object with one in \"keys\"", file);
        return NULL;
    }

    n = cJSON_GetArraySize(list);

    keys = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigw_keys_t));
    if (keys == NULL) {
        return NULL;
    }

    keys->file = *file;
    keys->nkeys = n;

    keys->keys = ngx_pcalloc(cf->pool, (n ? n : 1)
                                       * sizeof(ngx_http_aigw_key_t));
    if (keys->keys == NULL) {
        return NULL;
    }

    /* at most half full, so that a miss ends after a probe or two */

    for (size = 16; size < 2 * n; size <<= 1) { /* void */ }

    keys->slots = ngx_pcalloc(cf->pool, size * sizeof(ngx_http_aigw_key_t *));
    if (keys->slots == NULL) {
        return NULL;
    }

    keys->mask = size - 1;

    i = 0;

    cJSON_ArrayForEach(item, list) {
        key = &keys->keys[i++];

        err = ngx_http_aigw_keys_entry(cf, item, key);

        if (err == NGX_CONF_OK
            && ngx_http_aigw_keys_find(keys, key->hash) != NULL)
        {
            err = "\"hash\" is the hash of another key";
        }

        if (err != NGX_CONF_OK) {
            id = cJSON_IsObject(item)
                 ? cJSON_GetObjectItemCaseSensitive(item, "id") : NULL;

            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "key file \"%V\", entry %ui (id \"%s\"): %s",
                               file, i,
                               cJSON_IsString(id) ? id->valuestring : "",
                               err);
            return NULL;
        }

        slot = ngx_http_aigw_keys_slot(key->hash) & keys->mask;

        while (keys->slots[slot]) {
            slot = (slot + 1) & keys->mask;
        }

        keys->slots[slot] = key;
    }

    return keys;
}


ngx_http_aigw_key_t *
ngx_http_aigw_keys_find(ngx_http_aigw_keys_t *keys, u_char *hash)
{
    ngx_uint_t            slot;
    ngx_http_aigw_key_t  *key;

    slot = ngx_http_aigw_keys_slot(hash) & keys->mask;

    for ( ;; ) {
        key = keys->slots[slot];

        if (key == NULL) {
            return NULL;
        }

        if (ngx_memcmp(key->hash, hash, NGX_HTTP_AIGW_KEY_HASH_LEN) == 0) {
            return key;
        }

        slot = (slot + 1) & keys->mask;
    }
}


ngx_int_t
ngx_http_aigw_keys_model_allowed(ngx_http_aigw_key_t *key, ngx_str_t *model)
{
    u_char      name[256];
    ngx_uint_t  i;

    if (key->nmodels == 0) {
        return 1;
    }

    if (model->len >= sizeof(name)) {
        return 0;
    }

    ngx_memcpy(name, model->data, model->len);
    name[model->len] = '\0';

    for (i = 0; i < key->nmodels; i++) {
        if (fnmatch((char *) key->models[i].data, (char *) name, 0) == 0) {
            return 1;
        }
    }

    return 0;
}


static char *
ngx_http_aigw_keys_entry(ngx_conf_t *cf, cJSON *item,
    ngx_http_aigw_key_t *key)
{
    char        *rv;
    cJSON       *v, *m, *limits;
    ngx_str_t    hash, s, period;
    ngx_uint_t   n;

    if (!cJSON_IsObject(item)) {
        return "an entry must be an object";
    }

    rv = ngx_http_aigw_keys_string(cf, item, "id", 1, &key->id);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    rv = ngx_http_aigw_keys_string(cf, item, "hash", 1, &hash);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (ngx_http_aigw_keys_hex(&hash, key->hash) != NGX_OK) {
        return "field \"hash\" must be 64 hexadecimal digits "
               "(the SHA-256 of the secret)";
    }

    rv = ngx_http_aigw_keys_string(cf, item, "tenant", 1, &key->tenant);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    rv = ngx_http_aigw_keys_string(cf, item, "user", 0, &key->user);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    rv = ngx_http_aigw_keys_string(cf, item, "team", 0, &key->team);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "disabled");

    if (v && !cJSON_IsBool(v)) {
        return "field \"disabled\" must be true or false";
    }

    key->disabled = cJSON_IsTrue(v) ? 1 : 0;

    rv = ngx_http_aigw_keys_time(item, "expires_at", &key->expires_at);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "models");

    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsArray(v)) {
            return "field \"models\" must be an array of names or globs";
        }

        key->nmodels = cJSON_GetArraySize(v);
        key->models = ngx_palloc(cf->pool, key->nmodels * sizeof(ngx_str_t)
                                           + 1);
        if (key->models == NULL) {
            return NGX_CONF_ERROR;
        }

        n = 0;

        cJSON_ArrayForEach(m, v) {
            if (!cJSON_IsString(m) || m->valuestring[0] == '\0') {
                return "field \"models\" must hold non-empty strings";
            }

            s.data = (u_char *) m->valuestring;
            s.len = ngx_strlen(m->valuestring) + 1;

            key->models[n].data = ngx_pstrdup(cf->pool, &s);
            if (key->models[n].data == NULL) {
                return NGX_CONF_ERROR;
            }

            key->models[n++].len = s.len - 1;
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "metadata");

    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsObject(v)) {
            return "field \"metadata\" must be an object of strings";
        }

        key->nmeta = cJSON_GetArraySize(v);
        key->meta = ngx_palloc(cf->pool, key->nmeta
                                         * sizeof(ngx_http_aigw_key_meta_t)
                                         + 1);
        if (key->meta == NULL) {
            return NGX_CONF_ERROR;
        }

        n = 0;

        cJSON_ArrayForEach(m, v) {
            if (!cJSON_IsString(m)) {
                return "field \"metadata\" must hold strings only";
            }

            s.data = (u_char *) m->string;
            s.len = ngx_strlen(m->string);

            /* names and values go into variables, headers and logs */

            if (ngx_http_aigw_keys_control((u_char *) m->string)
                || ngx_http_aigw_keys_control((u_char *) m->valuestring))
            {
                return "field \"metadata\" has a control character";
            }

            /* $aigw_meta_<name> is looked up by lowercase name */

            key->meta[n].name.data = ngx_pnalloc(cf->pool, s.len);
            if (key->meta[n].name.data == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_strlow(key->meta[n].name.data, s.data, s.len);
            key->meta[n].name.len = s.len;

            s.data = (u_char *) m->valuestring;
            s.len = ngx_strlen(m->valuestring);

            key->meta[n].value.data = ngx_pstrdup(cf->pool, &s);
            if (key->meta[n].value.data == NULL && s.len) {
                return NGX_CONF_ERROR;
            }

            key->meta[n++].value.len = s.len;
        }
    }

    limits = cJSON_GetObjectItemCaseSensitive(item, "limits");

    if (limits && !cJSON_IsNull(limits)) {
        if (!cJSON_IsObject(limits)) {
            return "field \"limits\" must be an object";
        }

        for (n = 0; ngx_http_aigw_keys_limits[n].name; n++) {
            rv = ngx_http_aigw_keys_number(limits,
                                           ngx_http_aigw_keys_limits[n].name,
                                           (ngx_uint_t *)
                                           ((char *) &key->limits
                                            + ngx_http_aigw_keys_limits[n]
                                              .offset));
            if (rv != NGX_CONF_OK) {
                return rv;
            }
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "budget");

    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsObject(v)) {
            return "field \"budget\" must be an object";
        }

        m = cJSON_GetObjectItemCaseSensitive(v, "usd");

        if (m) {
            if (!cJSON_IsNumber(m) || m->valuedouble < 0
                || m->valuedouble > 1e9)
            {
                return "field \"budget.usd\" must be a number of dollars";
            }

            /* rounded to the micro-dollar once, here */
            key->limits.budget = (uint64_t) (m->valuedouble * 1000000 + 0.5);
        }

        rv = ngx_http_aigw_keys_string(cf, v, "period", 0, &period);
        if (rv != NGX_CONF_OK) {
            return "field \"budget.period\" must be a string";
        }

        key->limits.period = NGX_HTTP_AIGW_PERIOD_MONTH;

        if (period.len
            && ngx_http_aigw_keys_period(&period, &key->limits.period)
               != NGX_OK)
        {
            return "field \"budget.period\" must be \"day\", \"week\", "
                   "\"month\" or \"total\"";
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(item, "admin");

    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v)) {
            return "field \"admin\" must be true or false";
        }

        key->admin = cJSON_IsTrue(v);
    }

    return NGX_CONF_OK;
}


/* "day", "week", "month", "total" */

ngx_int_t
ngx_http_aigw_keys_period(ngx_str_t *name, ngx_uint_t *period)
{
    ngx_uint_t  i;

    static ngx_str_t  names[] = {
        ngx_string("day"), ngx_string("week"), ngx_string("month"),
        ngx_string("total")
    };

    for (i = 0; i < NGX_HTTP_AIGW_PERIODS; i++) {
        if (name->len == names[i].len
            && ngx_strncmp(name->data, names[i].data, name->len) == 0)
        {
            *period = i;
            return NGX_OK;
        }
    }

    return NGX_ERROR;
}


static char *
ngx_http_aigw_keys_string(ngx_conf_t *cf, cJSON *obj, const char *name,
    ngx_uint_t required, ngx_str_t *out)
{
    cJSON      *v;
    ngx_str_t   s;

    static char  buf[128];

    v = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (v == NULL || cJSON_IsNull(v)) {
        if (required) {
            ngx_snprintf((u_char *) buf, sizeof(buf),
                         "field \"%s\" is missing%Z", name);
            return buf;
        }

        ngx_str_null(out);
        return NGX_CONF_OK;
    }

    if (!cJSON_IsString(v) || (required && v->valuestring[0] == '\0')) {
        ngx_snprintf((u_char *) buf, sizeof(buf),
                     "field \"%s\" must be a non-empty string%Z", name);
        return buf;
    }

    s.data = (u_char *) v->valuestring;
    s.len = ngx_strlen(v->valuestring);

    /* these values go into headers and logs */

    if (ngx_http_aigw_keys_control(s.data)) {
        ngx_snprintf((u_char *) buf, sizeof(buf),
                     "field \"%s\" has a control character%Z", name);
        return buf;
    }

    out->len = s.len;
    out->data = s.len ? ngx_pstrdup(cf->pool, &s) : NULL;

    if (s.len && out->data == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* 1 if a C string has a control character (cJSON's hold no NUL) */

static ngx_uint_t
ngx_http_aigw_keys_control(u_char *p)
{
    for ( /* void */ ; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return 1;
        }
    }

    return 0;
}


static char *
ngx_http_aigw_keys_number(cJSON *obj, const char *name, ngx_uint_t *out)
{
    cJSON  *v;

    static char  buf[128];

    v = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (v == NULL || cJSON_IsNull(v)) {
        return NGX_CONF_OK;    /* as it was: one limit has two names */
    }

    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e15
        || v->valuedouble != (double) (int64_t) v->valuedouble)
    {
        ngx_snprintf((u_char *) buf, sizeof(buf),
                     "field \"limits.%s\" must be a whole number%Z", name);
        return buf;
    }

    *out = (ngx_uint_t) v->valuedouble;

    return NGX_CONF_OK;
}


/* "expires_at": seconds since the epoch, or "YYYY-MM-DDTHH:MM:SSZ" */

static char *
ngx_http_aigw_keys_time(cJSON *obj, const char *name, time_t *out)
{
    u_char      *p;
    cJSON       *v;
    ngx_uint_t   year, mon, mday, hour, min, sec, era, yoe, doy, doe;

    v = cJSON_GetObjectItemCaseSensitive(obj, name);

    *out = 0;

    if (v == NULL || cJSON_IsNull(v)) {
        return NGX_CONF_OK;
    }

    /*
     * 0 means "never": a time that rounds down to the epoch itself (0.5,
     * "1970-01-01T00:00:00Z") is one second later, long past all the same
     */

    if (cJSON_IsNumber(v) && v->valuedouble > 0 && v->valuedouble < 1e11) {
        *out = ngx_max((time_t) v->valuedouble, 1);
        return NGX_CONF_OK;
    }

    if (!cJSON_IsString(v)) {
        goto invalid;
    }

    p = (u_char *) v->valuestring;

    if (ngx_strlen(p) != sizeof("2026-01-31T00:00:00Z") - 1
        || p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':'
        || p[16] != ':' || p[19] != 'Z')
    {
        goto invalid;
    }

    year = ngx_atoi(p, 4);
    mon = ngx_atoi(p + 5, 2);
    mday = ngx_atoi(p + 8, 2);
    hour = ngx_atoi(p + 11, 2);
    min = ngx_atoi(p + 14, 2);
    sec = ngx_atoi(p + 17, 2);

    if (year == (ngx_uint_t) NGX_ERROR || year < 1970
        || mon == (ngx_uint_t) NGX_ERROR || mon < 1 || mon > 12
        || mday == (ngx_uint_t) NGX_ERROR || mday < 1 || mday > 31
        || hour > 23 || min > 59 || sec > 60)
    {
        goto invalid;
    }

    /* days from the civil date (a proleptic Gregorian calendar) */

    if (mon <= 2) {
        year--;
    }

    era = year / 400;
    yoe = year - era * 400;
    doy = (153 * (mon > 2 ? mon - 3 : mon + 9) + 2) / 5 + mday - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    *out = (time_t) (era * 146097 + doe - 719468) * 86400
           + hour * 3600 + min * 60 + sec;

    if (*out == 0) {
        *out = 1;
    }

    return NGX_CONF_OK;

invalid:

    return "field \"expires_at\" must be seconds since the epoch or "
           "\"YYYY-MM-DDTHH:MM:SSZ\"";
}


static ngx_int_t
ngx_http_aigw_keys_hex(ngx_str_t *hex, u_char *out)
{
    u_char      c, *p;
    ngx_int_t   n;
    ngx_uint_t  i;

    if (hex->len != 2 * NGX_HTTP_AIGW_KEY_HASH_LEN) {
        return NGX_ERROR;
    }

    p = hex->data;

    for (i = 0; i < NGX_HTTP_AIGW_KEY_HASH_LEN; i++) {
        n = 0;

        for (c = 0; c < 2; c++) {
            n <<= 4;

            if (*p >= '0' && *p <= '9') {
                n |= *p - '0';

            } else if ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'f') {
                n |= (*p | 0x20) - 'a' + 10;

            } else {
                return NGX_ERROR;
            }

            p++;
        }

        out[i] = (u_char) n;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_keys_read_file(ngx_conf_t *cf, ngx_str_t *file,
    ngx_str_t *text)
{
    ssize_t          n;
    ngx_file_t       f;
    ngx_file_info_t  fi;

    ngx_memzero(&f, sizeof(ngx_file_t));

    f.name = *file;
    f.log = cf->log;

    f.fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (f.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " key file \"%V\" failed", file);
        return NGX_ERROR;
    }

    if (ngx_fd_info(f.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%V\" failed", file);
        goto failed;
    }

    if (ngx_file_size(&fi) > NGX_HTTP_AIGW_KEYS_MAX_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%V\" is too large", file);
        goto failed;
    }

    text->len = (size_t) ngx_file_size(&fi);
    text->data = ngx_pnalloc(cf->temp_pool, text->len + 1);

    if (text->data == NULL) {
        goto failed;
    }

    n = ngx_read_file(&f, text->data, text->len, 0);

    if (n == NGX_ERROR || (size_t) n != text->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%V\" could not be read whole", file);
        goto failed;
    }

    (void) ngx_close_file(f.fd);

    return NGX_OK;

failed:

    (void) ngx_close_file(f.fd);

    return NGX_ERROR;
}


static void
ngx_http_aigw_keys_cleanup(void *data)
{
    cJSON_Delete(data);
}
