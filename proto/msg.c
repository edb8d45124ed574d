#include "proto/c2d_proto.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Largest integer a JSON number (IEEE double) carries exactly. */
#define JSON_INT_MAX ((double)C2D_INT_MAX)

static const char *const type_names[] = {
    [C2D_MSG_BEGIN] = "begin",
    [C2D_MSG_END] = "end",
    [C2D_MSG_ACK] = "ack",
};

static const char *const ack_names[] = {
    [C2D_ACK_OFFSET] = "offset",
    [C2D_ACK_COMMITTED] = "committed",
    [C2D_ACK_DUPLICATE] = "duplicate",
    [C2D_ACK_REJECTED] = "rejected",
};

const char *c2d_ack_status_name(c2d_ack_status s)
{
    if ((unsigned)s < sizeof(ack_names) / sizeof(ack_names[0]))
        return ack_names[s];
    return "unknown";
}

/* Reads a required integral number in [min, max]. */
static c2d_status get_int(const cJSON *obj, const char *key, double min, double max, int64_t *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(it))
        return C2D_ERR_FIELD;
    double d = it->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < min || d > max)
        return C2D_ERR_RANGE;
    *out = (int64_t)d;
    return C2D_OK;
}

static int is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return s[n] == '\0';
}

/* A reason is short and printable ASCII: receivers log it. */
static int reason_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n + 1 >= C2D_REASON_MAX || c < 0x20 || c > 0x7e)
            return 0;
    }
    return 1;
}

static int lookup(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

static c2d_status decode_object(const cJSON *root, c2d_msg *m)
{
    int64_t v;
    c2d_status st = get_int(root, "v", 0, 65535, &v);
    if (st != C2D_OK)
        return st;
    m->version = (int)v;
    if (v != C2D_PROTO_VERSION)
        return C2D_ERR_VERSION;

    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "t");
    if (!cJSON_IsString(t))
        return C2D_ERR_FIELD;
    int type = lookup(type_names, sizeof(type_names) / sizeof(type_names[0]), t->valuestring);
    if (type < 0)
        return C2D_ERR_TYPE;
    m->type = (c2d_msg_type)type;

    if ((st = get_int(root, "ch", 0, 65535, &v)) != C2D_OK)
        return st;
    m->channel = (uint16_t)v;
    if ((st = get_int(root, "start", 0, JSON_INT_MAX, &m->start_us)) != C2D_OK)
        return st;

    if (m->type == C2D_MSG_BEGIN) {
        if ((st = get_int(root, "dur", 0, JSON_INT_MAX, &m->duration_us)) != C2D_OK)
            return st;
        if ((st = get_int(root, "size", 0, JSON_INT_MAX, &v)) != C2D_OK)
            return st;
        m->size = (uint64_t)v;
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "sha256");
        if (!cJSON_IsString(h) || strlen(h->valuestring) != 64 || !is_lower_hex(h->valuestring, 64))
            return C2D_ERR_FIELD;
        memcpy(m->sha256, h->valuestring, 65);
    } else if (m->type == C2D_MSG_ACK) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "status");
        if (!cJSON_IsString(s))
            return C2D_ERR_FIELD;
        int status = lookup(ack_names, sizeof(ack_names) / sizeof(ack_names[0]), s->valuestring);
        if (status < 0)
            return C2D_ERR_FIELD;
        m->status = (c2d_ack_status)status;
        if ((st = get_int(root, "offset", 0, JSON_INT_MAX, &v)) != C2D_OK)
            return st;
        m->offset = (uint64_t)v;
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "reason");
        if (r) {
            if (!cJSON_IsString(r) || !reason_ok(r->valuestring))
                return C2D_ERR_FIELD;
            strcpy(m->reason, r->valuestring);
        }
    }
    return C2D_OK;
}

c2d_status c2d_msg_decode(const char *json, size_t len, c2d_msg *out)
{
    if (!json || len == 0 || len > C2D_MSG_MAX)
        return len > C2D_MSG_MAX ? C2D_ERR_LENGTH : C2D_ERR_JSON;
    /* cJSON reads one byte past a buffer that is not NUL terminated, and
     * with a length it accepts trailing bytes after the value. Parse a
     * terminated copy and require that nothing but whitespace follows. */
    char text[C2D_MSG_MAX + 1];
    if (memchr(json, '\0', len))
        return C2D_ERR_JSON;
    memcpy(text, json, len);
    text[len] = '\0';
    cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, NULL, 1);
    if (!root)
        return C2D_ERR_JSON;
    c2d_msg m;
    memset(&m, 0, sizeof(m));
    c2d_status st = cJSON_IsObject(root) ? decode_object(root, &m) : C2D_ERR_JSON;
    cJSON_Delete(root);
    if (st == C2D_OK || st == C2D_ERR_VERSION)
        *out = m;
    return st;
}

/* cJSON prints numbers with "%1.15g" and accepts the result if it is
 * within an epsilon of the value: 1764480000000000 goes out as 1.76448e+15
 * and values above 2^52 can lose their last digit. Integers go out exactly,
 * as digits (proto/README.md). */
static int add_i64(cJSON *obj, const char *key, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return cJSON_AddRawToObject(obj, key, buf) != NULL;
}

static int add_u64(cJSON *obj, const char *key, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return cJSON_AddRawToObject(obj, key, buf) != NULL;
}

char *c2d_msg_encode(const c2d_msg *m)
{
    if ((unsigned)m->type >= sizeof(type_names) / sizeof(type_names[0]))
        return NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    int ok = add_i64(root, "v", C2D_PROTO_VERSION) &&
             cJSON_AddStringToObject(root, "t", type_names[m->type]) &&
             add_i64(root, "ch", m->channel) && add_i64(root, "start", m->start_us);
    if (ok && m->type == C2D_MSG_BEGIN)
        ok = add_i64(root, "dur", m->duration_us) && add_u64(root, "size", m->size) &&
             cJSON_AddStringToObject(root, "sha256", m->sha256);
    if (ok && m->type == C2D_MSG_ACK) {
        ok = cJSON_AddStringToObject(root, "status", c2d_ack_status_name(m->status)) &&
             add_u64(root, "offset", m->offset);
        if (ok && m->reason[0])
            ok = cJSON_AddStringToObject(root, "reason", m->reason) != NULL;
    }
    char *out = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return out;
}
