/* ctl_devstate_parse on arbitrary bytes, and the store behind it: an
 * accepted message has its fields in range and gives alarms within bounds;
 * a refusal gives a printable reason and stores nothing. */
#include "controller/devstate.h"
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <string.h>

#define NOW INT64_C(1764480000000000)

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ctl_devstate_msg m;
    cJSON *j = NULL;
    char why[CTL_DEVSTATE_WHY_MAX] = "";
    int rc = ctl_devstate_parse(data, size, &m, &j, why, sizeof(why));
    FUZZ_ASSERT(memchr(why, '\0', sizeof(why)) != NULL && printable(why));
    if (rc != 0) {
        FUZZ_ASSERT(rc == -EINVAL || rc == -EMSGSIZE || rc == -ENOMEM);
        FUZZ_ASSERT(j == NULL);
    } else {
        FUZZ_ASSERT(cJSON_IsObject(j));
        FUZZ_ASSERT(m.nch <= CTL_DEVSTATE_CHANNELS_MAX);
        for (size_t i = 0; i < m.nch; i++)
            FUZZ_ASSERT(strnlen(m.ch[i].state, sizeof(m.ch[i].state)) < sizeof(m.ch[i].state));
        ctl_alarm a[CTL_DEVSTATE_ALARMS_MAX];
        FUZZ_ASSERT(ctl_devstate_rules(&m, m.online, 60, a) <= CTL_DEVSTATE_ALARMS_MAX);
        cJSON_Delete(j);
    }

    ctl_devstate *s = NULL;
    FUZZ_ASSERT(ctl_devstate_new(90, 60, &s) == 0);
    int urc = ctl_devstate_update(s, "dev-1", data, size, NOW, why, sizeof(why));
    FUZZ_ASSERT(size == 0 || urc == rc);
    FUZZ_ASSERT(ctl_devstate_refused(s) == (uint64_t)(size != 0 && rc != 0));
    ctl_devstate_tick(s, NOW + INT64_C(91000000));
    cJSON *o = NULL;
    FUZZ_ASSERT(ctl_devstate_json(s, "dev-1", &o) == 0);
    char *text = cJSON_PrintUnformatted(o);
    FUZZ_ASSERT(text != NULL);
    cJSON *back = cJSON_Parse(text);
    FUZZ_ASSERT(cJSON_IsObject(back));
    FUZZ_ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(back, "online")));
    cJSON_Delete(back);
    cJSON_free(text);
    cJSON_Delete(o);
    ctl_devstate_free(s);
    return 0;
}
