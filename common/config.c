#include "common/c2d_config.h"
#include "common/c2d_fs.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Configuration files are small; a larger one is a mistake. */
#define CONFIG_FILE_MAX (1u << 20)

/* 2^63: the first double that does not fit an int64_t. */
#define INT64_LIMIT 9223372036854775808.0

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

cJSON *c2d_cfg_parse_file(const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc = c2d_read_file(path, CONFIG_FILE_MAX, &text, &len);
    if (rc != 0) {
        fail(err, errlen, "%s: cannot read: %s", path, strerror(-rc));
        return NULL;
    }
    /* c2d_read_file NUL terminates: parsing len + 1 bytes with
     * require_null_terminated refuses anything after the top-level value
     * (cJSON would otherwise ignore trailing garbage). */
    const char *end = NULL;
    cJSON *root = NULL;
    if (memchr(text, '\0', len)) {
        fail(err, errlen, "%s: contains a NUL byte", path);
        free(text);
        return NULL;
    }
    root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        int line = 1;
        for (size_t i = 0; i < at && i < len; i++)
            line += text[i] == '\n';
        fail(err, errlen, "%s: invalid JSON near line %d", path, line);
    } else if (!cJSON_IsObject(root)) {
        fail(err, errlen, "%s: top level must be a JSON object", path);
        cJSON_Delete(root);
        root = NULL;
    }
    free(text);
    return root;
}

int c2d_cfg_apply(const cJSON *obj, const char *where, const c2d_cfg_field *fields, size_t n,
                  void *base, char *err, size_t errlen)
{
    if (!cJSON_IsObject(obj))
        return fail(err, errlen, "%s: must be a JSON object", where);
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        size_t i = 0;
        while (i < n && strcmp(fields[i].key, it->string) != 0)
            i++;
        if (i == n)
            return fail(err, errlen, "%s: unknown key \"%s\"", where, it->string);
    }
    for (size_t i = 0; i < n; i++) {
        const c2d_cfg_field *f = &fields[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, f->key);
        char *slot = (char *)base + f->offset;
        if (f->type == C2D_CFG_SKIP)
            continue;
        if (!v && f->required)
            return fail(err, errlen, "%s: missing required key \"%s\"", where, f->key);
        switch (f->type) {
        case C2D_CFG_STRING: {
            const char *s = f->def_str;
            if (v) {
                if (!cJSON_IsString(v))
                    return fail(err, errlen, "%s: key \"%s\" must be a string", where, f->key);
                s = v->valuestring;
            }
            char *copy = s ? strdup(s) : NULL;
            if (s && !copy)
                return fail(err, errlen, "%s: out of memory", where);
            *(char **)slot = copy;
            break;
        }
        case C2D_CFG_INT: {
            int64_t val = f->def_int;
            if (v) {
                if (!cJSON_IsNumber(v))
                    return fail(err, errlen, "%s: key \"%s\" must be an integer", where, f->key);
                /* Converting a double outside int64_t is undefined: bound it
                 * first (NaN and infinities fail this test too). */
                double d = v->valuedouble;
                if (!(d >= -INT64_LIMIT && d < INT64_LIMIT))
                    return fail(err, errlen, "%s: key \"%s\" is %g, allowed range is %lld..%lld",
                                where, f->key, d, (long long)f->min, (long long)f->max);
                val = (int64_t)d;
                if ((double)val != d)
                    return fail(err, errlen, "%s: key \"%s\" must be an integer", where, f->key);
                if (val < f->min || val > f->max)
                    return fail(err, errlen, "%s: key \"%s\" is %lld, allowed range is %lld..%lld",
                                where, f->key, (long long)val, (long long)f->min,
                                (long long)f->max);
            }
            *(int64_t *)slot = val;
            break;
        }
        case C2D_CFG_BOOL: {
            int val = (int)f->def_int;
            if (v) {
                if (!cJSON_IsBool(v))
                    return fail(err, errlen, "%s: key \"%s\" must be true or false", where, f->key);
                val = cJSON_IsTrue(v);
            }
            *(int *)slot = val;
            break;
        }
        case C2D_CFG_SKIP:
            break;
        }
    }
    return 0;
}

void c2d_cfg_free_strings(const c2d_cfg_field *fields, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++) {
        if (fields[i].type != C2D_CFG_STRING)
            continue;
        char **slot = (char **)((char *)base + fields[i].offset);
        free(*slot);
        *slot = NULL;
    }
}

#define BF(key, type, field, req, min, max, di, ds)                                                \
    {                                                                                              \
        key, type, offsetof(c2d_broker_cfg, field), req, min, max, di, ds                          \
    }
static const c2d_cfg_field broker_fields[] = {
    BF("host", C2D_CFG_STRING, host, 0, 0, 0, 0, "127.0.0.1"),
    BF("port", C2D_CFG_INT, port, 0, 1, 65535, 8883, NULL),
    BF("ca_file", C2D_CFG_STRING, ca_file, 1, 0, 0, 0, NULL),
    BF("cert_file", C2D_CFG_STRING, cert_file, 1, 0, 0, 0, NULL),
    BF("key_file", C2D_CFG_STRING, key_file, 1, 0, 0, 0, NULL),
    BF("keepalive_s", C2D_CFG_INT, keepalive_s, 0, 5, 3600, 30, NULL),
    BF("client_id", C2D_CFG_STRING, client_id, 0, 0, 0, 0, NULL),
};
#define N_BROKER (sizeof(broker_fields) / sizeof(broker_fields[0]))

int c2d_broker_cfg_load(const cJSON *obj, const char *where, c2d_broker_cfg *out, char *err,
                        size_t errlen)
{
    c2d_broker_cfg b;
    memset(&b, 0, sizeof(b));
    if (!obj)
        return fail(err, errlen, "%s: missing required key \"broker\"", where);
    char w[200];
    snprintf(w, sizeof(w), "%s: broker", where);
    if (c2d_cfg_apply(obj, w, broker_fields, N_BROKER, &b, err, errlen) != 0)
        goto fail;
    const char *const nonempty[] = {"host", "ca_file", "cert_file", "key_file"};
    const char *const values[] = {b.host, b.ca_file, b.cert_file, b.key_file};
    for (size_t i = 0; i < sizeof(nonempty) / sizeof(nonempty[0]); i++) {
        if (!values[i] || !values[i][0]) {
            fail(err, errlen, "%s: key \"%s\" must not be empty", w, nonempty[i]);
            goto fail;
        }
    }
    *out = b;
    return 0;
fail:
    c2d_cfg_free_strings(broker_fields, N_BROKER, &b);
    return -1;
}

int c2d_broker_cfg_resolve(c2d_broker_cfg *b, const char *base, const char *where, char *err,
                           size_t errlen)
{
    char w[PATH_MAX + 16];
    snprintf(w, sizeof(w), "%s: broker", where);
    if (c2d_cfg_resolve_path(&b->ca_file, base, w, "ca_file", err, errlen) != 0 ||
        c2d_cfg_resolve_path(&b->cert_file, base, w, "cert_file", err, errlen) != 0 ||
        c2d_cfg_resolve_path(&b->key_file, base, w, "key_file", err, errlen) != 0)
        return -1;
    return 0;
}

int c2d_cfg_base_dir(const char *config_path, char *base, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", config_path) >= (int)sizeof(buf))
        return fail(err, errlen, "%s: path too long", config_path);
    if (!realpath(dirname(buf), base))
        return fail(err, errlen, "%s: cannot resolve its directory: %s", config_path,
                    strerror(errno));
    return 0;
}

int c2d_cfg_resolve_path(char **p, const char *base, const char *where, const char *key, char *err,
                         size_t errlen)
{
    if (!*p || (*p)[0] == '/' || (*p)[0] == '\0')
        return 0;
    char buf[PATH_MAX];
    int n = snprintf(buf, sizeof(buf), "%s/%s", base, *p);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return fail(err, errlen, "%s: key \"%s\": path too long", where, key);
    char *joined = strdup(buf);
    if (!joined)
        return fail(err, errlen, "%s: out of memory", where);
    free(*p);
    *p = joined;
    return 0;
}

void c2d_broker_cfg_free(c2d_broker_cfg *b)
{
    if (b)
        c2d_cfg_free_strings(broker_fields, N_BROKER, b);
}
