#include "proto/c2d_proto.h"

#include <stdio.h>
#include <string.h>

/* The last level of a topic. A level whose exchange ends in a certificate
 * for the id refuses reserved ids: a service identity (the controller may
 * write anywhere under c2d/v1/) must never be issued one. */
typedef struct {
    int kind;
    const char *name;
    int certifies;
} topic_level;

static const topic_level device_levels[] = {
    {C2D_TOPIC_SEG, "seg", 0},     {C2D_TOPIC_ACK, "ack", 0}, {C2D_TOPIC_CFG, "cfg", 0},
    {C2D_TOPIC_STATE, "state", 0}, {C2D_TOPIC_EVT, "evt", 0}, {C2D_TOPIC_CSR, "csr", 1},
    {C2D_TOPIC_CERT, "cert", 1},
};

static const topic_level pair_levels[] = {
    {C2D_PAIR_REQ, "req", 1},
    {C2D_PAIR_RESP, "resp", 1},
};

#define NLEVELS(a) (sizeof(a) / sizeof((a)[0]))

#define DEVICE_PREFIX "c2d/v1/d/"
#define PAIR_PREFIX "c2d/v1/pair/"

static int id_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

int c2d_device_id_valid(const char *id)
{
    if (!id || !id[0] || id[0] == '.' || id[0] == '-')
        return 0;
    size_t n = 0;
    for (; id[n]; n++) {
        if (n >= C2D_DEVICE_ID_MAX || !id_char_ok(id[n]))
            return 0;
    }
    return 1;
}

int c2d_id_reserved(const char *id)
{
    const char *p = C2D_RESERVED_ID_PREFIX;
    if (!id)
        return 0;
    for (; *p; p++, id++) {
        char c = *id >= 'A' && *id <= 'Z' ? (char)(*id - 'A' + 'a') : *id;
        if (c != *p)
            return 0;
    }
    return 1;
}

static const topic_level *level_by_name(const topic_level *levels, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, levels[i].name) == 0)
            return &levels[i];
    return NULL;
}

static const topic_level *level_by_kind(const topic_level *levels, size_t n, int kind)
{
    for (size_t i = 0; i < n; i++)
        if (levels[i].kind == kind)
            return &levels[i];
    return NULL;
}

/* prefix {id} "/" level, nothing more: the id holds no '/' (not in the
 * alphabet) and the level must match a name whole, so extra levels and
 * wildcards are refused. */
static c2d_status parse(const char *topic, const char *prefix, const topic_level *levels,
                        size_t nlevels, char id_out[C2D_DEVICE_ID_MAX + 1], int *kind)
{
    size_t plen = strlen(prefix);
    if (!topic || strncmp(topic, prefix, plen) != 0)
        return C2D_ERR_TOPIC;
    const char *id = topic + plen;
    const char *slash = strchr(id, '/');
    if (!slash)
        return C2D_ERR_TOPIC;
    size_t idlen = (size_t)(slash - id);
    if (idlen == 0 || idlen > C2D_DEVICE_ID_MAX)
        return idlen == 0 ? C2D_ERR_TOPIC : C2D_ERR_NAME;
    char tmp[C2D_DEVICE_ID_MAX + 1];
    memcpy(tmp, id, idlen);
    tmp[idlen] = '\0';
    if (!c2d_device_id_valid(tmp))
        return C2D_ERR_NAME;
    const topic_level *l = level_by_name(levels, nlevels, slash + 1);
    if (!l)
        return C2D_ERR_TOPIC;
    if (l->certifies && c2d_id_reserved(tmp))
        return C2D_ERR_NAME;
    memcpy(id_out, tmp, idlen + 1);
    *kind = l->kind;
    return C2D_OK;
}

static c2d_status format(char *buf, size_t len, const char *prefix, const topic_level *levels,
                         size_t nlevels, const char *id, int kind)
{
    if (!c2d_device_id_valid(id))
        return C2D_ERR_NAME;
    const topic_level *l = level_by_kind(levels, nlevels, kind);
    if (!l)
        return C2D_ERR_TOPIC;
    if (l->certifies && c2d_id_reserved(id))
        return C2D_ERR_NAME;
    int n = snprintf(buf, len, "%s%s/%s", prefix, id, l->name);
    if (n < 0 || (size_t)n >= len)
        return C2D_ERR_BUFFER;
    return C2D_OK;
}

c2d_status c2d_topic_parse(const char *topic, char device[C2D_DEVICE_ID_MAX + 1],
                           c2d_topic_kind *kind)
{
    int k;
    c2d_status st = parse(topic, DEVICE_PREFIX, device_levels, NLEVELS(device_levels), device, &k);
    if (st == C2D_OK)
        *kind = (c2d_topic_kind)k;
    return st;
}

c2d_status c2d_topic_format(char *buf, size_t len, const char *device, c2d_topic_kind kind)
{
    return format(buf, len, DEVICE_PREFIX, device_levels, NLEVELS(device_levels), device,
                  (int)kind);
}

c2d_status c2d_pair_topic_parse(const char *topic, char serial[C2D_DEVICE_ID_MAX + 1],
                                c2d_pair_kind *kind)
{
    int k;
    c2d_status st = parse(topic, PAIR_PREFIX, pair_levels, NLEVELS(pair_levels), serial, &k);
    if (st == C2D_OK)
        *kind = (c2d_pair_kind)k;
    return st;
}

c2d_status c2d_pair_topic_format(char *buf, size_t len, const char *serial, c2d_pair_kind kind)
{
    return format(buf, len, PAIR_PREFIX, pair_levels, NLEVELS(pair_levels), serial, (int)kind);
}

const char *c2d_strerror(c2d_status st)
{
    switch (st) {
    case C2D_OK:
        return "success";
    case C2D_ERR_TRUNCATED:
        return "message shorter than its header or declared length";
    case C2D_ERR_MAGIC:
        return "not a chunk frame (bad magic)";
    case C2D_ERR_VERSION:
        return "unsupported protocol version";
    case C2D_ERR_CRC:
        return "chunk payload does not match its CRC-32";
    case C2D_ERR_LENGTH:
        return "declared length too large or inconsistent";
    case C2D_ERR_JSON:
        return "malformed JSON or not a JSON object";
    case C2D_ERR_FIELD:
        return "required field missing or of the wrong type";
    case C2D_ERR_RANGE:
        return "number out of range";
    case C2D_ERR_TOPIC:
        return "topic outside the c2d/v1 device namespace";
    case C2D_ERR_NAME:
        return "id outside the allowed alphabet or length";
    case C2D_ERR_TYPE:
        return "unknown message type";
    case C2D_ERR_NOMEM:
        return "out of memory";
    case C2D_ERR_BUFFER:
        return "output buffer too small";
    }
    return "unknown error";
}

const char *c2d_reason(c2d_status st)
{
    switch (st) {
    case C2D_OK:
        return "ok";
    case C2D_ERR_TRUNCATED:
        return "truncated";
    case C2D_ERR_MAGIC:
        return "bad_magic";
    case C2D_ERR_VERSION:
        return "unsupported_version";
    case C2D_ERR_CRC:
        return "bad_crc";
    case C2D_ERR_LENGTH:
        return "bad_length";
    case C2D_ERR_JSON:
        return "bad_json";
    case C2D_ERR_FIELD:
        return "bad_field";
    case C2D_ERR_RANGE:
        return "out_of_range";
    case C2D_ERR_TOPIC:
        return "bad_topic";
    case C2D_ERR_NAME:
        return "bad_name";
    case C2D_ERR_TYPE:
        return "unknown_type";
    case C2D_ERR_NOMEM:
        return "no_memory";
    case C2D_ERR_BUFFER:
        return "buffer";
    }
    return "unknown";
}
