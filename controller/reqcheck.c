#include "controller/reqcheck.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Largest id: JSON numbers are doubles, exact up to 2^53. */
#define ID_MAX 9007199254740992.0
/* Longest element of a CTL_F_STRINGS array. */
#define STRINGS_ELEM_MAX 64
/* Longest field name quoted in a message. */
#define QUOTE_MAX 64

static void safe(const char *in, char *out, size_t len)
{
    size_t i = 0;
    for (; in && in[i] && i + 1 < len && i < QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '?' : (char)c;
    }
    out[i] = '\0';
}

static int refuse(ctl_check_err *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(ctl_check_err *err, const char *code, const char *fmt, ...)
{
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return 1;
}

int ctl_check_text(const char *s, int allow_ws)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        if (c < 0x80) {
            if ((c < 0x20 && !(allow_ws && (c == '\t' || c == '\n' || c == '\r'))) || c == 0x7f)
                return 0;
            p++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf)
            n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, cp = c & 0x07;
        else
            return 0;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        /* Overlong forms, surrogates, beyond U+10FFFF; C1 controls. */
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
            return 0;
        p += n + 1;
    }
    return 1;
}

static bool is_int(double d)
{
    return isfinite(d) && d == floor(d);
}

static int check_string(const cJSON *v, const ctl_field *f, const char *path, size_t maxb, bool ws,
                        ctl_check_err *err)
{
    if (!cJSON_IsString(v) || !v->valuestring)
        return refuse(err, "invalid_field", "field \"%s\" must be a string", path);
    size_t len = strlen(v->valuestring);
    if (len > maxb)
        return refuse(err, "invalid_field", "field \"%s\" is longer than %zu bytes", path, maxb);
    if (f && len < (size_t)f->min)
        return f->min <= 1 ? refuse(err, "invalid_field", "field \"%s\" is empty", path)
                           : refuse(err, "invalid_field", "field \"%s\" is too short", path);
    if (!ctl_check_text(v->valuestring, ws))
        return refuse(err, "invalid_field",
                      "field \"%s\" holds control characters or invalid UTF-8", path);
    if (f && f->choices) {
        for (const char *const *c = f->choices; *c; c++)
            if (strcmp(*c, v->valuestring) == 0)
                return 0;
        char list[96] = "";
        for (const char *const *c = f->choices; *c; c++) {
            size_t used = strlen(list);
            snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "", *c);
        }
        return refuse(err, "invalid_field", "field \"%s\" must be one of: %s", path, list);
    }
    return 0;
}

int ctl_check_value(const cJSON *v, const ctl_field *f, const char *path_in, ctl_check_err *err)
{
    char path[QUOTE_MAX + 1];
    safe(path_in, path, sizeof(path));
    if (f->nullable && cJSON_IsNull(v))
        return 0;
    switch (f->type) {
    case CTL_F_STRING:
    case CTL_F_TEXT:
        return check_string(v, f, path, (size_t)f->max, f->type == CTL_F_TEXT, err);
    case CTL_F_BOOL:
        if (!cJSON_IsBool(v))
            return refuse(err, "invalid_field", "field \"%s\" must be true or false", path);
        return 0;
    case CTL_F_INT:
    case CTL_F_NUMBER:
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return refuse(err, "invalid_field", "field \"%s\" must be a number", path);
        if (f->type == CTL_F_INT && !is_int(v->valuedouble))
            return refuse(err, "invalid_field", "field \"%s\" must be an integer", path);
        if ((f->min != 0 || f->max != 0) && (v->valuedouble < f->min || v->valuedouble > f->max))
            return refuse(err, "invalid_field", "field \"%s\" must be between %g and %g", path,
                          f->min, f->max);
        return 0;
    case CTL_F_ID:
        if (!cJSON_IsNumber(v) || !is_int(v->valuedouble) || v->valuedouble < 1 ||
            v->valuedouble > ID_MAX)
            return refuse(err, "invalid_field", "field \"%s\" must be an id", path);
        return 0;
    case CTL_F_OBJECT:
        if (!cJSON_IsObject(v))
            return refuse(err, "invalid_field", "field \"%s\" must be an object", path);
        return 0;
    case CTL_F_ARRAY:
    case CTL_F_STRINGS:
    case CTL_F_IDS: {
        if (!cJSON_IsArray(v))
            return refuse(err, "invalid_field", "field \"%s\" must be an array", path);
        int n = cJSON_GetArraySize(v);
        if (n < (int)f->min || n > (int)f->max)
            return refuse(err, "invalid_field", "field \"%s\" must have %d to %d elements", path,
                          (int)f->min, (int)f->max);
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            char ep[QUOTE_MAX + 16];
            snprintf(ep, sizeof(ep), "%s[%d]", path, i);
            if (f->type == CTL_F_STRINGS) {
                ctl_field sf = {.min = 1};
                if (check_string(e, &sf, ep, STRINGS_ELEM_MAX, false, err))
                    return 1;
            } else if (f->type == CTL_F_IDS) {
                ctl_field idf = {.type = CTL_F_ID};
                if (ctl_check_value(e, &idf, ep, err))
                    return 1;
                for (const cJSON *p = v->child; p != e; p = p->next)
                    if (p->valuedouble == e->valuedouble)
                        return refuse(err, "invalid_field", "field \"%s\" repeats an id", ep);
            }
        }
        return 0;
    }
    }
    return refuse(err, "invalid_field", "field \"%s\" has an unknown type", path);
}

static int check_body(const cJSON *body, const ctl_field *f, size_t n, bool partial,
                      ctl_check_err *err)
{
    char name[QUOTE_MAX + 1];
    if (body && !cJSON_IsObject(body))
        return refuse(err, "invalid_field", "the body must be a JSON object");
    if (body) {
        for (const cJSON *it = body->child; it; it = it->next) {
            size_t i = 0;
            while (i < n && (!it->string || strcmp(f[i].name, it->string) != 0))
                i++;
            if (i == n) {
                safe(it->string, name, sizeof(name));
                return refuse(err, "unknown_field", "unknown field \"%s\"", name);
            }
            /* cJSON keeps duplicate keys; the second would be ignored. */
            for (const cJSON *p = body->child; p != it; p = p->next)
                if (p->string && strcmp(p->string, it->string) == 0) {
                    safe(it->string, name, sizeof(name));
                    return refuse(err, "invalid_field", "field \"%s\" is given twice", name);
                }
        }
    }
    for (size_t i = 0; i < n; i++) {
        const cJSON *v = body ? cJSON_GetObjectItemCaseSensitive(body, f[i].name) : NULL;
        if (!v) {
            if (f[i].required && !partial)
                return refuse(err, "missing_field", "field \"%s\" is required", f[i].name);
            continue;
        }
        if (ctl_check_value(v, &f[i], f[i].name, err))
            return 1;
    }
    return 0;
}

int ctl_check_body(const cJSON *body, const ctl_field *f, size_t n, ctl_check_err *err)
{
    return check_body(body, f, n, false, err);
}

int ctl_check_body_partial(const cJSON *body, const ctl_field *f, size_t n, ctl_check_err *err)
{
    return check_body(body, f, n, true, err);
}
