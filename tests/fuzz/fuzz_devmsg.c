/* ctl_devmsg_parse on arbitrary bytes with a fixed clock. An accepted
 * message satisfies ctl_devmsg_valid, every field is in its range, and its
 * stored JSON text is an object carrying the same time; a refusal leaves
 * the output untouched and gives a printable reason. */
#include "controller/devmsg.h"
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <string.h>

/* 2025-11-30T05:20:00Z */
#define NOW INT64_C(1764480000000000)

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

static int same_number(const cJSON *o, const char *name, int has, double v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    return has ? cJSON_IsNumber(it) && it->valuedouble == v : it == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ctl_devmsg m;
    memset(&m, 0xa5, sizeof(m));
    char why[CTL_DEVMSG_WHY_MAX];
    int rc = ctl_devmsg_parse(data, size, NOW, &m, why, sizeof(why));
    FUZZ_ASSERT(memchr(why, '\0', sizeof(why)) != NULL && printable(why));
    if (rc != 0) {
        FUZZ_ASSERT(rc == -EINVAL || rc == -EMSGSIZE || rc == -ENOMEM);
        FUZZ_ASSERT(rc != -EMSGSIZE || size > CTL_DEVMSG_MAX);
        FUZZ_ASSERT(((const unsigned char *)&m)[0] == 0xa5);
        return 0;
    }
    FUZZ_ASSERT(size > 0 && size <= CTL_DEVMSG_MAX);
    FUZZ_ASSERT(ctl_devmsg_valid(&m, NOW) == 0);
    FUZZ_ASSERT(m.at_us >= CTL_DEVMSG_AT_MIN && m.at_us <= NOW + CTL_DEVMSG_AT_AHEAD_US);
    if (m.type == CTL_DEVMSG_LOCATION) {
        FUZZ_ASSERT(m.has_pos);
        FUZZ_ASSERT(!m.has_speed || (m.speed_kmh >= 0 && m.speed_kmh <= 1000));
        FUZZ_ASSERT(!m.has_heading || (m.heading >= 0 && m.heading <= 360));
    } else {
        FUZZ_ASSERT(m.type == CTL_DEVMSG_EVENT);
        FUZZ_ASSERT(!m.has_speed && !m.has_heading);
        size_t il = strnlen(m.id, sizeof(m.id)), el = strnlen(m.event, sizeof(m.event));
        FUZZ_ASSERT(il >= 1 && il <= CTL_DEVMSG_ID_MAX && el >= 1 && el <= CTL_DEVMSG_EVENT_MAX);
        FUZZ_ASSERT(m.channel >= 0 && m.channel <= CTL_DEVMSG_CHANNEL_MAX);
        FUZZ_ASSERT(m.severity >= CTL_DEVMSG_INFO && m.severity <= CTL_DEVMSG_CRITICAL);
    }
    FUZZ_ASSERT(!m.has_pos || (m.lat >= -90 && m.lat <= 90 && m.lon >= -180 && m.lon <= 180));
    /* A time a day ahead is still valid for a later clock, not an earlier. */
    FUZZ_ASSERT(ctl_devmsg_valid(&m, NOW + 1) == 0);

    char *text = ctl_devmsg_record_json(&m, 1);
    FUZZ_ASSERT(text != NULL);
    cJSON *o = cJSON_Parse(text);
    FUZZ_ASSERT(cJSON_IsObject(o));
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(o, "at_us");
    FUZZ_ASSERT(cJSON_IsNumber(at) && (int64_t)at->valuedouble == m.at_us);
    /* Numbers are stored exactly (a position does not drift by its last
     * bits), and only those given. */
    FUZZ_ASSERT(same_number(o, "lat", m.has_pos, m.lat));
    FUZZ_ASSERT(same_number(o, "lon", m.has_pos, m.lon));
    FUZZ_ASSERT(same_number(o, "speed_kmh", m.has_speed, m.speed_kmh));
    FUZZ_ASSERT(same_number(o, "heading", m.has_heading, m.heading));
    cJSON_Delete(o);
    free(text);
    return 0;
}
