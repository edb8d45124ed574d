#include "proto/c2d_proto.h"

#include <stdio.h>
#include <string.h>

static const struct {
    c2d_topic_kind kind;
    const char *name;
} topic_kinds[] = {
    {C2D_TOPIC_SEG, "seg"},     {C2D_TOPIC_ACK, "ack"}, {C2D_TOPIC_CFG, "cfg"},
    {C2D_TOPIC_STATE, "state"}, {C2D_TOPIC_EVT, "evt"},
};

#define TOPIC_PREFIX "c2d/v1/d/"

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

c2d_status c2d_topic_parse(const char *topic, char device[C2D_DEVICE_ID_MAX + 1],
                           c2d_topic_kind *kind)
{
    size_t plen = strlen(TOPIC_PREFIX);
    if (!topic || strncmp(topic, TOPIC_PREFIX, plen) != 0)
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
    const char *rest = slash + 1;
    for (size_t i = 0; i < sizeof(topic_kinds) / sizeof(topic_kinds[0]); i++) {
        if (strcmp(rest, topic_kinds[i].name) == 0) {
            memcpy(device, tmp, idlen + 1);
            *kind = topic_kinds[i].kind;
            return C2D_OK;
        }
    }
    return C2D_ERR_TOPIC;
}

c2d_status c2d_topic_format(char *buf, size_t len, const char *device, c2d_topic_kind kind)
{
    if (!c2d_device_id_valid(device))
        return C2D_ERR_NAME;
    const char *name = NULL;
    for (size_t i = 0; i < sizeof(topic_kinds) / sizeof(topic_kinds[0]); i++)
        if (topic_kinds[i].kind == kind)
            name = topic_kinds[i].name;
    if (!name)
        return C2D_ERR_TOPIC;
    int n = snprintf(buf, len, TOPIC_PREFIX "%s/%s", device, name);
    if (n < 0 || (size_t)n >= len)
        return C2D_ERR_BUFFER;
    return C2D_OK;
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
