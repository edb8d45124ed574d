#include "proto/devcfg.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A field of an object: its name and whether it must be present. Adding a
 * setting is a row here, a member in devcfg.h and a case in the decoder. */
typedef struct {
    const char *name;
    int required;
} field;

enum { TOP_V, TOP_VERSION, TOP_CHANNELS, TOP_COUNT };
static const field top_fields[TOP_COUNT] = {
    [TOP_V] = {"v", 1},
    [TOP_VERSION] = {"version", 1},
    [TOP_CHANNELS] = {"channels", 1},
};

enum { CH_CH, CH_BACKUP, CH_COUNT };
static const field ch_fields[CH_COUNT] = {
    [CH_CH] = {"ch", 1},
    [CH_BACKUP] = {"backup", 1},
};

/* The largest table above. */
#define FIELDS_MAX TOP_COUNT

static void say(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || whylen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* A key as it may appear in a logged reason: printable ASCII, truncated. */
static void printable(const char *s, char *out, size_t outlen)
{
    size_t i = 0;
    for (; s[i] && i + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c >= 0x20 && c < 0x7f && c != '"' ? (char)c : '?';
    }
    out[i] = '\0';
}

/* Sorts the members of obj into items[] by the table; refuses unknown,
 * duplicate and missing ones. where prefixes the field in the reason. */
static c2d_status take_fields(const cJSON *obj, const field *fields, int n, const cJSON **items,
                              const char *where, char *why, size_t whylen)
{
    for (int f = 0; f < n; f++)
        items[f] = NULL;
    for (const cJSON *it = obj->child; it; it = it->next) {
        int f = 0;
        while (f < n && strcmp(fields[f].name, it->string) != 0)
            f++;
        if (f == n) {
            char name[24];
            printable(it->string, name, sizeof(name));
            say(why, whylen, "unknown_field: %s%s", where, name);
            return C2D_ERR_FIELD;
        }
        if (items[f]) {
            say(why, whylen, "duplicate_field: %s%s", where, fields[f].name);
            return C2D_ERR_FIELD;
        }
        items[f] = it;
    }
    for (int f = 0; f < n; f++)
        if (fields[f].required && !items[f]) {
            say(why, whylen, "missing_field: %s%s", where, fields[f].name);
            return C2D_ERR_FIELD;
        }
    return C2D_OK;
}

/* An integral number in [0, max]. */
static c2d_status get_uint(const cJSON *it, double max, uint64_t *out, const char *where,
                           const char *name, char *why, size_t whylen)
{
    if (!cJSON_IsNumber(it)) {
        say(why, whylen, "bad_field: %s%s", where, name);
        return C2D_ERR_FIELD;
    }
    double d = it->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < 0 || d > max) {
        say(why, whylen, "out_of_range: %s%s", where, name);
        return C2D_ERR_RANGE;
    }
    *out = (uint64_t)d;
    return C2D_OK;
}

static c2d_status decode_channel(const cJSON *obj, size_t idx, c2d_devcfg_channel *out, char *why,
                                 size_t whylen)
{
    char where[32];
    snprintf(where, sizeof(where), "channels[%zu].", idx);
    if (!cJSON_IsObject(obj)) {
        say(why, whylen, "bad_field: channels[%zu]", idx);
        return C2D_ERR_FIELD;
    }
    const cJSON *items[CH_COUNT];
    c2d_status st = take_fields(obj, ch_fields, CH_COUNT, items, where, why, whylen);
    if (st != C2D_OK)
        return st;
    uint64_t v;
    if ((st = get_uint(items[CH_CH], 65535, &v, where, "ch", why, whylen)) != C2D_OK)
        return st;
    out->ch = (uint16_t)v;
    if (!cJSON_IsBool(items[CH_BACKUP])) {
        say(why, whylen, "bad_field: %sbackup", where);
        return C2D_ERR_FIELD;
    }
    out->backup = cJSON_IsTrue(items[CH_BACKUP]) ? 1 : 0;
    return C2D_OK;
}

static c2d_status decode_root(const cJSON *root, c2d_devcfg *cfg, char *why, size_t whylen)
{
    const cJSON *items[FIELDS_MAX];
    /* "v" first: another version may have other fields. */
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "v");
    uint64_t n;
    if (v) {
        c2d_status st = get_uint(v, 65535, &n, "", "v", why, whylen);
        if (st != C2D_OK)
            return st;
        if (n != C2D_PROTO_VERSION) {
            say(why, whylen, "unsupported_version: %" PRIu64, n);
            return C2D_ERR_VERSION;
        }
    }
    c2d_status st = take_fields(root, top_fields, TOP_COUNT, items, "", why, whylen);
    if (st != C2D_OK)
        return st;
    if ((st = get_uint(items[TOP_VERSION], (double)C2D_INT_MAX, &cfg->version, "", "version", why,
                       whylen)) != C2D_OK)
        return st;
    const cJSON *chs = items[TOP_CHANNELS];
    if (!cJSON_IsArray(chs)) {
        say(why, whylen, "bad_field: channels");
        return C2D_ERR_FIELD;
    }
    size_t i = 0;
    for (const cJSON *c = chs->child; c; c = c->next, i++) {
        if (i == C2D_DEVCFG_CHANNELS_MAX) {
            say(why, whylen, "out_of_range: channels (more than %d)", C2D_DEVCFG_CHANNELS_MAX);
            return C2D_ERR_RANGE;
        }
        if ((st = decode_channel(c, i, &cfg->channels[i], why, whylen)) != C2D_OK)
            return st;
        for (size_t j = 0; j < i; j++)
            if (cfg->channels[j].ch == cfg->channels[i].ch) {
                say(why, whylen, "duplicate_channel: %u", (unsigned)cfg->channels[i].ch);
                return C2D_ERR_FIELD;
            }
    }
    cfg->n_channels = i;
    return C2D_OK;
}

c2d_status c2d_devcfg_decode(const void *json, size_t len, c2d_devcfg *out, char *why,
                             size_t whylen)
{
    if (len > C2D_DEVCFG_MAX) {
        say(why, whylen, "too_large: %zu bytes", len);
        return C2D_ERR_LENGTH;
    }
    if (!json || len == 0) {
        say(why, whylen, "bad_json: empty");
        return C2D_ERR_JSON;
    }
    if (!c2d_utf8_valid(json, len)) {
        say(why, whylen, "bad_utf8");
        return C2D_ERR_JSON;
    }
    /* No valid field needs an escape; refusing them keeps cJSON's \u0000
     * (which cuts a string short) out. */
    if (memchr(json, '\\', len)) {
        say(why, whylen, "bad_json: escape in a string");
        return C2D_ERR_JSON;
    }
    /* A terminated copy: cJSON reads one byte past an unterminated buffer,
     * and require_null_terminated refuses trailing bytes. */
    char *text = malloc(len + 1);
    if (!text) {
        say(why, whylen, "out of memory");
        return C2D_ERR_NOMEM;
    }
    memcpy(text, json, len);
    text[len] = '\0';
    cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, NULL, 1);
    free(text);
    if (!root) {
        say(why, whylen, "bad_json");
        return C2D_ERR_JSON;
    }
    c2d_devcfg *cfg = calloc(1, sizeof(*cfg));
    c2d_status st = C2D_ERR_NOMEM;
    if (!cfg)
        say(why, whylen, "out of memory");
    else if (!cJSON_IsObject(root)) {
        say(why, whylen, "bad_json: not an object");
        st = C2D_ERR_JSON;
    } else {
        st = decode_root(root, cfg, why, whylen);
    }
    cJSON_Delete(root);
    if (st == C2D_OK) {
        say(why, whylen, "ok");
        *out = *cfg;
    }
    free(cfg);
    return st;
}

const c2d_devcfg_channel *c2d_devcfg_find(const c2d_devcfg *cfg, uint16_t ch)
{
    for (size_t i = 0; i < cfg->n_channels && i < C2D_DEVCFG_CHANNELS_MAX; i++)
        if (cfg->channels[i].ch == ch)
            return &cfg->channels[i];
    return NULL;
}

/* Integers go out as digits: cJSON would print 1.76448e+15. */
static int add_uint(cJSON *o, const char *key, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return cJSON_AddRawToObject(o, key, buf) != NULL;
}

char *c2d_devcfg_encode(const c2d_devcfg *cfg)
{
    if (cfg->version > (uint64_t)C2D_INT_MAX || cfg->n_channels > C2D_DEVCFG_CHANNELS_MAX)
        return NULL;
    for (size_t i = 0; i < cfg->n_channels; i++) {
        if (cfg->channels[i].backup != 0 && cfg->channels[i].backup != 1)
            return NULL;
        for (size_t j = 0; j < i; j++)
            if (cfg->channels[j].ch == cfg->channels[i].ch)
                return NULL;
    }
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    int ok = add_uint(root, "v", C2D_PROTO_VERSION) && add_uint(root, "version", cfg->version);
    cJSON *chs = ok ? cJSON_AddArrayToObject(root, "channels") : NULL;
    ok = chs != NULL;
    for (size_t i = 0; ok && i < cfg->n_channels; i++) {
        cJSON *c = cJSON_CreateObject();
        if (!c || !cJSON_AddItemToArray(chs, c)) {
            cJSON_Delete(c);
            ok = 0;
            break;
        }
        ok = add_uint(c, "ch", cfg->channels[i].ch) &&
             cJSON_AddBoolToObject(c, "backup", cfg->channels[i].backup) != NULL;
    }
    char *out = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return out;
}
