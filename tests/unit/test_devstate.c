/* Unit tests for controller/devstate.c: the state parser's accept/refuse
 * table, the alarm rules, and the store: last seen, offline by the will and
 * by the timer, alarms raised with a start time that stands while the cause
 * does and cleared when it goes, the published vs applied config version. */
#include "check.h"
#include "controller/devstate.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define NOW INT64_C(1764480000000000)
#define SEC INT64_C(1000000)

static int parse(const char *s, ctl_devstate_msg *m, char *why)
{
    return ctl_devstate_parse(s, strlen(s), m, NULL, why, CTL_DEVSTATE_WHY_MAX);
}

static void test_parse(void)
{
    ctl_devstate_msg m;
    char why[CTL_DEVSTATE_WHY_MAX];
    CHECK(parse("{\"online\":false}", &m, why) == 0 && !m.online && m.nch == 0 &&
          !m.has_cfg_version && m.spool_oldest_age_s == -1 && m.retention_s == -1);
    CHECK(
        parse("{\"online\":true,\"cfg_version\":7,\"disk\":\"ok\",\"uptime_s\":3,"
              "\"recorder_retention_s\":600,\"spool\":{\"oldest_age_s\":12,\"x\":1},"
              "\"channels\":[{\"id\":1,\"state\":\"recording\"},{\"id\":2,\"state\":\"retrying\"}],"
              "\"future_field\":[1,2]}",
              &m, why) == 0);
    CHECK(m.online && m.has_cfg_version && m.cfg_version == 7 && strcmp(m.disk, "ok") == 0 &&
          m.retention_s == 600 && m.spool_oldest_age_s == 12 && m.nch == 2 && m.ch[1].id == 2 &&
          strcmp(m.ch[1].state, "retrying") == 0);
    CHECK(parse("{\"online\":true,\"cfg_version\":null}", &m, why) == 0 && !m.has_cfg_version);

    static const struct {
        const char *in, *why;
    } bad[] = {
        {"", "empty"},
        {"{}", "missing_field: online"},
        {"[]", "bad_json: not an object"},
        {"{\"online\":1}", "bad_field: online"},
        {"{\"online\":true} x", "bad_json: trailing bytes"},
        {"{\"online\":true", "bad_json"},
        {"{\"online\":true,\"cfg_version\":-1}", "bad_field: cfg_version"},
        {"{\"online\":true,\"cfg_version\":1.5}", "bad_field: cfg_version"},
        {"{\"online\":true,\"disk\":3}", "bad_field: disk"},
        {"{\"online\":true,\"uptime_s\":\"1\"}", "bad_field: uptime_s"},
        {"{\"online\":true,\"spool\":[]}", "bad_field: spool"},
        {"{\"online\":true,\"spool\":{\"oldest_age_s\":-3}}", "bad_field: spool.oldest_age_s"},
        {"{\"online\":true,\"channels\":{}}", "bad_field: channels"},
        {"{\"online\":true,\"channels\":[{\"id\":70000,\"state\":\"x\"}]}",
         "bad_field: channels[0].id"},
        {"{\"online\":true,\"channels\":[{\"id\":1}]}", "bad_field: channels[0].state"},
        {"{\"online\":true,\"channels\":[{\"id\":1,\"state\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}]}",
         "bad_field: channels[0].state"},
        {"{\"online\":true,\"recorder_retention_s\":true}", "bad_field: recorder_retention_s"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i].in, &m, why);
        CHECK(rc == -EINVAL);
        if (strcmp(why, bad[i].why) != 0) {
            fprintf(stderr, "case %zu: why \"%s\", want \"%s\"\n", i, why, bad[i].why);
            CHECK(0);
        }
    }
    CHECK(ctl_devstate_parse("{\"online\":\xff}", 14, &m, NULL, why, sizeof(why)) == -EINVAL &&
          strcmp(why, "bad_utf8") == 0);
    CHECK(ctl_devstate_parse("{\"online\":true}\0", 16, &m, NULL, why, sizeof(why)) == -EINVAL);
    static char big[CTL_DEVSTATE_MAX + 2];
    memset(big, ' ', sizeof(big));
    CHECK(ctl_devstate_parse(big, sizeof(big), &m, NULL, why, sizeof(why)) == -EMSGSIZE);

    /* 65 channels: one too many. */
    char many[4096];
    size_t n = (size_t)snprintf(many, sizeof(many), "{\"online\":true,\"channels\":[");
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "%s{\"id\":%d,\"state\":\"recording\"}",
                              i ? "," : "", i);
    snprintf(many + n, sizeof(many) - n, "]}");
    CHECK(parse(many, &m, why) == -EINVAL && strcmp(why, "too_many: channels") == 0);
}

static void test_rules(void)
{
    ctl_devstate_msg m;
    char why[CTL_DEVSTATE_WHY_MAX];
    ctl_alarm a[CTL_DEVSTATE_ALARMS_MAX];
    CHECK(
        parse("{\"online\":true,\"disk\":\"ok\",\"spool\":{\"oldest_age_s\":100},"
              "\"channels\":[{\"id\":1,\"state\":\"recording\"},{\"id\":2,\"state\":\"starting\"},"
              "{\"id\":3,\"state\":\"finished\"}]}",
              &m, why) == 0);
    CHECK(ctl_devstate_rules(&m, 1, 0, a) == 0);   /* no retention known: no spool alarm */
    CHECK(ctl_devstate_rules(&m, 1, 100, a) == 0); /* not older than the retention */
    CHECK(ctl_devstate_rules(&m, 1, 99, a) == 1 && strcmp(a[0].code, "spool_age") == 0 &&
          a[0].channel == -1);
    CHECK(ctl_devstate_rules(&m, 0, 99, a) == 1 && strcmp(a[0].code, "offline") == 0);

    CHECK(
        parse("{\"online\":true,\"disk\":\"failing\",\"recorder_retention_s\":50,"
              "\"spool\":{\"oldest_age_s\":100},"
              "\"channels\":[{\"id\":1,\"state\":\"retrying\"},{\"id\":4,\"state\":\"recording\"},"
              "{\"id\":9,\"state\":\"source_error\"}]}",
              &m, why) == 0);
    /* The recorder's own retention wins over the default. */
    size_t n = ctl_devstate_rules(&m, 1, 1000, a);
    CHECK(n == 4);
    CHECK(strcmp(a[0].code, "disk") == 0 && strcmp(a[0].detail, "disk failing") == 0);
    CHECK(strcmp(a[1].code, "channel") == 0 && a[1].channel == 1);
    CHECK(strcmp(a[2].code, "channel") == 0 && a[2].channel == 9);
    CHECK(strcmp(a[3].code, "spool_age") == 0);
    CHECK(parse("{\"online\":true,\"disk\":\"missing\"}", &m, why) == 0);
    CHECK(ctl_devstate_rules(&m, 1, 0, a) == 1 && strcmp(a[0].detail, "disk missing") == 0);
}

static const cJSON *field(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static int upd(ctl_devstate *s, const char *dev, const char *msg, int64_t now)
{
    char why[CTL_DEVSTATE_WHY_MAX];
    return ctl_devstate_update(s, dev, msg, strlen(msg), now, why, sizeof(why));
}

static void test_store(void)
{
    ctl_devstate *s = NULL;
    CHECK(ctl_devstate_new(0, 0, &s) == -EINVAL);
    CHECK(ctl_devstate_new(10, -1, &s) == -EINVAL);
    CHECK(ctl_devstate_new(10, 0, &s) == 0 && s);
    cJSON *j = NULL;

    /* Unknown device: offline, nothing known. */
    CHECK(ctl_devstate_json(s, "rec-1", &j) == 0);
    CHECK(cJSON_IsFalse(field(j, "online")) && cJSON_IsNull(field(j, "last_seen")) &&
          cJSON_IsNull(field(j, "state")) &&
          cJSON_IsNull(field(field(j, "cfg_version"), "applied")) &&
          cJSON_GetArraySize(field(j, "alarms")) == 0);
    cJSON_Delete(j);

    CHECK(
        upd(s, "rec-1",
            "{\"online\":true,\"cfg_version\":3,\"channels\":[{\"id\":1,\"state\":\"retrying\"}]}",
            NOW) == 0);
    ctl_devstate_set_published(s, "rec-1", 4);
    CHECK(ctl_devstate_json(s, "rec-1", &j) == 0);
    CHECK(cJSON_IsTrue(field(j, "online")));
    CHECK(strcmp(cJSON_GetStringValue(field(j, "last_seen")), "2025-11-30T05:20:00Z") == 0);
    CHECK(field(field(j, "cfg_version"), "applied")->valuedouble == 3);
    CHECK(field(field(j, "cfg_version"), "published")->valuedouble == 4);
    CHECK(cJSON_IsTrue(field(field(j, "state"), "online")));
    const cJSON *al = field(j, "alarms");
    CHECK(cJSON_GetArraySize(al) == 1 &&
          strcmp(cJSON_GetStringValue(field(cJSON_GetArrayItem(al, 0), "code")), "channel") == 0);
    cJSON_Delete(j);

    /* The cause stands: the start time stays; then it goes: cleared. */
    CHECK(
        upd(s, "rec-1",
            "{\"online\":true,\"cfg_version\":4,\"channels\":[{\"id\":1,\"state\":\"retrying\"}]}",
            NOW + 5 * SEC) == 0);
    cJSON *arr = cJSON_CreateArray();
    CHECK(ctl_devstate_alarms_json(s, "rec-1", 42, arr) == 0 && cJSON_GetArraySize(arr) == 1);
    const cJSON *a0 = cJSON_GetArrayItem(arr, 0);
    CHECK(field(a0, "since_us")->valuedouble == (double)NOW);
    CHECK(field(a0, "recorder_id")->valuedouble == 42 && field(a0, "channel")->valuedouble == 1);
    cJSON_Delete(arr);
    CHECK(
        upd(s, "rec-1",
            "{\"online\":true,\"cfg_version\":4,\"channels\":[{\"id\":1,\"state\":\"recording\"}]}",
            NOW + 6 * SEC) == 0);
    arr = cJSON_CreateArray();
    CHECK(ctl_devstate_alarms_json(s, "rec-1", 42, arr) == 0 && cJSON_GetArraySize(arr) == 0);
    cJSON_Delete(arr);

    /* A bad payload changes nothing and is counted. */
    CHECK(upd(s, "rec-1", "{\"online\":\"yes\"}", NOW + 7 * SEC) == -EINVAL);
    CHECK(upd(s, "../x", "{\"online\":true}", NOW + 7 * SEC) == -EINVAL);
    CHECK(ctl_devstate_refused(s) == 1);

    /* The timer: silent for less than offline_after: online; then offline. */
    CHECK(ctl_devstate_tick(s, NOW + 15 * SEC) == 0);
    CHECK(ctl_devstate_tick(s, NOW + 16 * SEC) == 1);
    CHECK(ctl_devstate_tick(s, NOW + 17 * SEC) == 0);
    CHECK(ctl_devstate_json(s, "rec-1", &j) == 0);
    CHECK(cJSON_IsFalse(field(j, "online")));
    al = field(j, "alarms");
    CHECK(cJSON_GetArraySize(al) == 1 &&
          strcmp(cJSON_GetStringValue(field(cJSON_GetArrayItem(al, 0), "code")), "offline") == 0 &&
          field(cJSON_GetArrayItem(al, 0), "since_us")->valuedouble == (double)(NOW + 16 * SEC));
    cJSON_Delete(j);
    /* It speaks again: online, alarm cleared. Then its will: offline. */
    CHECK(upd(s, "rec-1", "{\"online\":true}", NOW + 20 * SEC) == 0);
    CHECK(ctl_devstate_json(s, "rec-1", &j) == 0);
    CHECK(cJSON_IsTrue(field(j, "online")) && cJSON_GetArraySize(field(j, "alarms")) == 0);
    cJSON_Delete(j);
    CHECK(upd(s, "rec-1", "{\"online\":false}", NOW + 21 * SEC) == 0);
    CHECK(ctl_devstate_json(s, "rec-1", &j) == 0);
    CHECK(cJSON_IsFalse(field(j, "online")) && cJSON_GetArraySize(field(j, "alarms")) == 1);
    /* The published version survives messages. */
    CHECK(field(field(j, "cfg_version"), "published")->valuedouble == 4);
    cJSON_Delete(j);

    /* An empty payload (retained state cleared) forgets the device. */
    CHECK(ctl_devstate_update(s, "rec-1", "", 0, NOW, NULL, 0) == 0);
    CHECK(ctl_devstate_json(s, "rec-1", &j) == 0 && cJSON_IsNull(field(j, "state")));
    cJSON_Delete(j);

    /* Many devices stay sorted and found. */
    char dev[32];
    for (int i = 0; i < 300; i++) {
        snprintf(dev, sizeof(dev), "d%03d", (i * 7919) % 300);
        CHECK(upd(s, dev, "{\"online\":true,\"disk\":\"missing\"}", NOW) == 0);
    }
    for (int i = 0; i < 300; i += 37) {
        snprintf(dev, sizeof(dev), "d%03d", i);
        arr = cJSON_CreateArray();
        CHECK(ctl_devstate_alarms_json(s, dev, 1, arr) == 0 && cJSON_GetArraySize(arr) == 1);
        cJSON_Delete(arr);
    }
    ctl_devstate_free(s);
    ctl_devstate_free(NULL);
}

int main(void)
{
    test_parse();
    test_rules();
    test_store();
    if (failures) {
        fprintf(stderr, "test_devstate: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_devstate: ok\n");
    return 0;
}
