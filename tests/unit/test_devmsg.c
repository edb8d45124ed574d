/* Unit tests for controller/devmsg.c: the evt parser's accept/refuse table,
 * and storing events and positions with a real LMDB in a temp dir (recorder
 * found through its ("device", id) key, idempotent redelivery, batches),
 * the live and trip queries with pagination and tenant isolation. */
#include "check.h"
#include "controller/devmsg.h"
#include "controller/directory.h"
#include "controller/ledger.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 2025-11-30T05:20:00Z */
#define NOW INT64_C(1764480000000000)
#define DAY INT64_C(86400000000)

static int parse(const char *s, ctl_devmsg *m, char *why)
{
    return ctl_devmsg_parse(s, strlen(s), NOW, m, why, CTL_DEVMSG_WHY_MAX);
}

static void test_parse_accept(void)
{
    ctl_devmsg m;
    char why[CTL_DEVMSG_WHY_MAX];
    CHECK(parse("{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":48.85,"
                "\"lon\":2.35}",
                &m, why) == 0);
    CHECK(m.type == CTL_DEVMSG_LOCATION && m.at_us == NOW && m.has_pos && m.lat == 48.85 &&
          m.lon == 2.35 && !m.has_speed && !m.has_heading);
    CHECK(strcmp(why, "ok") == 0);
    CHECK(parse(" {\"lon\":-180,\"lat\":-90,\"at\":946684800000000,\"type\":\"location\","
                "\"v\":1,\"speed_kmh\":1000,\"heading\":360} \n",
                &m, why) == 0);
    CHECK(m.lat == -90 && m.lon == -180 && m.has_speed && m.speed_kmh == 1000 && m.has_heading &&
          m.heading == 360 && m.at_us == CTL_DEVMSG_AT_MIN);
    /* at up to a day ahead of the controller's clock. */
    char buf[256];
    snprintf(buf, sizeof(buf),
             "{\"v\":1,\"type\":\"location\",\"at\":%" PRId64 ",\"lat\":0,\"lon\":0}", NOW + DAY);
    CHECK(parse(buf, &m, why) == 0);

    CHECK(parse("{\"v\":1,\"type\":\"event\",\"id\":\"e-1.A_z\",\"at\":1764480000000001,"
                "\"event\":\"harsh_brake\"}",
                &m, why) == 0);
    CHECK(m.type == CTL_DEVMSG_EVENT && strcmp(m.id, "e-1.A_z") == 0 &&
          strcmp(m.event, "harsh_brake") == 0 && m.channel == 0 && !m.has_pos &&
          m.severity == CTL_DEVMSG_INFO);
    CHECK(parse("{\"v\":1,\"type\":\"event\",\"id\":\"x\",\"at\":1764480000000001,"
                "\"event\":\"motion\",\"channel\":256,\"lat\":1.5,\"lon\":-2.25,"
                "\"severity\":\"critical\"}",
                &m, why) == 0);
    CHECK(m.channel == 256 && m.has_pos && m.lat == 1.5 && m.lon == -2.25 &&
          m.severity == CTL_DEVMSG_CRITICAL);
    CHECK(ctl_devmsg_valid(&m, NOW) == 0);
    /* 64-char id, 32-char kind: the limits. */
    CHECK(parse("{\"v\":1,\"type\":\"event\",\"at\":1764480000000001,\"id\":"
                "\"0123456789012345678901234567890123456789012345678901234567890123\","
                "\"event\":\"abcdefghijklmnopqrstuvwxyz012345\",\"severity\":\"warning\"}",
                &m, why) == 0);
    CHECK(strlen(m.id) == 64 && strlen(m.event) == 32 && m.severity == CTL_DEVMSG_WARNING);
}

static void test_parse_refuse(void)
{
    static const struct {
        const char *json;
        const char *why; /* prefix of the reason */
    } cases[] = {
        {"", "bad_json"},
        {"[]", "bad_json"},
        {"{", "bad_json"},
        {"null", "bad_json"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":1,\"lon\":2}x",
         "bad_json"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":1,\"lon\":2}{}",
         "bad_json"},
        {"{\"v\":2,\"type\":\"location\",\"at\":1764480000000000,\"lat\":1,\"lon\":2}",
         "unsupported_version"},
        {"{\"v\":\"1\",\"type\":\"location\",\"at\":1764480000000000,\"lat\":1,\"lon\":2}",
         "bad_field: v"},
        {"{\"type\":\"location\",\"at\":1764480000000000,\"lat\":1,\"lon\":2}", "missing_field: v"},
        {"{\"v\":1,\"type\":\"gps\",\"at\":1764480000000000,\"lat\":1,\"lon\":2}", "unknown_type"},
        {"{\"v\":1,\"type\":7,\"at\":1764480000000000,\"lat\":1,\"lon\":2}", "bad_field: type"},
        {"{\"v\":1,\"at\":1764480000000000,\"lat\":1,\"lon\":2}", "missing_field: type"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":1,\"lon\":2,\"x\":0}",
         "unknown_field: x"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":1,\"lon\":2,\"id\":\"a\"}",
         "unknown_field: id"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"a\",\"event\":\"b\",\"at\":1764480000000000,"
         "\"speed_kmh\":3}",
         "unknown_field: speed_kmh"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":1,\"lat\":1,\"lon\":2}",
         "duplicate_field: lat"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":1}", "missing_field: lon"},
        {"{\"v\":1,\"type\":\"location\",\"lat\":1,\"lon\":2}", "missing_field: at"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":90.0001,\"lon\":2}",
         "out_of_range: lat"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":1,\"lon\":-180.5}",
         "out_of_range: lon"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":1e999,\"lon\":2}",
         "out_of_range: lat"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":\"1\",\"lon\":2}",
         "bad_field: lat"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":1,\"lon\":2,"
         "\"speed_kmh\":-1}",
         "out_of_range: speed_kmh"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":1,\"lon\":2,"
         "\"heading\":360.5}",
         "out_of_range: heading"},
        {"{\"v\":1,\"type\":\"location\",\"at\":946684799999999,\"lat\":1,\"lon\":2}",
         "out_of_range: at"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764566400000001,\"lat\":1,\"lon\":2}",
         "out_of_range: at"},
        {"{\"v\":1,\"type\":\"location\",\"at\":1764480000000000.5,\"lat\":1,\"lon\":2}",
         "out_of_range: at"},
        {"{\"v\":1,\"type\":\"location\",\"at\":\"2025-11-30T05:20:00Z\",\"lat\":1,\"lon\":2}",
         "bad_field: at"},
        {"{\"v\":1,\"type\":\"event\",\"event\":\"b\",\"at\":1764480000000000}",
         "missing_field: id"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"a\",\"at\":1764480000000000}",
         "missing_field: event"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"\",\"event\":\"b\",\"at\":1764480000000000}",
         "bad_field: id"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"a/b\",\"event\":\"b\",\"at\":1764480000000000}",
         "bad_field: id"},
        {"{\"v\":1,\"type\":\"event\",\"id\":"
         "\"01234567890123456789012345678901234567890123456789012345678901234\","
         "\"event\":\"b\",\"at\":1764480000000000}",
         "bad_field: id"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"a\",\"event\":\"Motion\",\"at\":1764480000000000}",
         "bad_field: event"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"a\",\"event\":\"abcdefghijklmnopqrstuvwxyz0123456\","
         "\"at\":1764480000000000}",
         "bad_field: event"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"a\",\"event\":\"b\",\"at\":1764480000000000,"
         "\"channel\":0}",
         "out_of_range: channel"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"a\",\"event\":\"b\",\"at\":1764480000000000,"
         "\"channel\":257}",
         "out_of_range: channel"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"a\",\"event\":\"b\",\"at\":1764480000000000,"
         "\"channel\":1.5}",
         "out_of_range: channel"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"a\",\"event\":\"b\",\"at\":1764480000000000,"
         "\"lat\":1}",
         "missing_field: lon"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"a\",\"event\":\"b\",\"at\":1764480000000000,"
         "\"lon\":1}",
         "missing_field: lat"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"a\",\"event\":\"b\",\"at\":1764480000000000,"
         "\"severity\":\"fatal\"}",
         "bad_field: severity"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"a\",\"event\":\"b\",\"at\":1764480000000000,"
         "\"severity\":null}",
         "bad_field: severity"},
        /* \u0000 would cut the id short: escapes are refused. */
        {"{\"v\":1,\"type\":\"event\",\"id\":\"a\\u0000b\",\"event\":\"b\",\"at\":"
         "1764480000000000}",
         "bad_json: escape"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"caf\xc3\xa9\",\"event\":\"b\",\"at\":"
         "1764480000000000}",
         "bad_field: id"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"\xff\",\"event\":\"b\",\"at\":1764480000000000}",
         "bad_utf8"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"\xc0\xaf\",\"event\":\"b\",\"at\":1764480000000000}",
         "bad_utf8"},
        {"{\"v\":1,\"type\":\"event\",\"id\":\"\xed\xa0\x80\",\"event\":\"b\",\"at\":"
         "1764480000000000}",
         "bad_utf8"},
        {"{\"\xe2\x82\xac\":1}", "unknown_field: ???"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ctl_devmsg m;
        memset(&m, 0x5a, sizeof(m));
        char why[CTL_DEVMSG_WHY_MAX];
        int rc = parse(cases[i].json, &m, why);
        if (rc != -EINVAL || strncmp(why, cases[i].why, strlen(cases[i].why)) != 0) {
            fprintf(stderr, "case %zu: rc %d why \"%s\", want \"%s\"\n", i, rc, why, cases[i].why);
            failures++;
        }
        CHECK(((unsigned char *)&m)[0] == 0x5a); /* untouched */
    }
    /* A NUL inside the payload, and the size limit. */
    ctl_devmsg m;
    char why[CTL_DEVMSG_WHY_MAX];
    static const char nul[] = "{\"v\":1}\0";
    CHECK(ctl_devmsg_parse(nul, sizeof(nul) - 1, NOW, &m, why, sizeof(why)) == -EINVAL);
    char *big = malloc(CTL_DEVMSG_MAX + 2);
    if (!big)
        abort();
    int off =
        snprintf(big, CTL_DEVMSG_MAX + 2,
                 "{\"v\":1,\"type\":\"location\",\"at\":1764480000000000,\"lat\":1,\"lon\":2}");
    memset(big + off, ' ', CTL_DEVMSG_MAX + 2 - (size_t)off);
    CHECK(ctl_devmsg_parse(big, CTL_DEVMSG_MAX, NOW, &m, why, sizeof(why)) == 0);
    CHECK(ctl_devmsg_parse(big, CTL_DEVMSG_MAX + 1, NOW, &m, why, sizeof(why)) == -EMSGSIZE);
    CHECK(strncmp(why, "too_large", 9) == 0);
    free(big);
    /* why may be NULL. */
    CHECK(ctl_devmsg_parse("{}", 2, NOW, &m, NULL, 0) == -EINVAL);
}

/* ---- storage and queries ------------------------------------------------ */

static char dir[256];
static char path[512];
static ctl_ledger *led;
static ctl_dir *d;

static ctl_dir_txn *begin(int write)
{
    ctl_dir_txn *t = NULL;
    CHECK(ctl_dir_begin(d, write, &t) == 0);
    if (!t)
        abort();
    return t;
}

static uint64_t create(int kind, uint64_t tenant, uint64_t parent, const char *json,
                       const char *device)
{
    ctl_dir_txn *t = begin(1);
    ctl_dir_obj o = {.kind = kind, .tenant = tenant, .parent = parent, .json = (char *)json};
    ctl_dir_ukey k = {"device", device};
    CHECK(ctl_dir_put(t, "test", &o, device ? &k : NULL, device ? 1 : 0) == 0);
    CHECK(ctl_dir_commit(t) == 0);
    return o.id;
}

static ctl_devmsg loc(int64_t at, double lat, double lon)
{
    ctl_devmsg m;
    memset(&m, 0, sizeof(m));
    m.type = CTL_DEVMSG_LOCATION;
    m.at_us = at;
    m.has_pos = 1;
    m.lat = lat;
    m.lon = lon;
    return m;
}

static ctl_devmsg evt(const char *id, int64_t at, const char *kind)
{
    ctl_devmsg m;
    memset(&m, 0, sizeof(m));
    m.type = CTL_DEVMSG_EVENT;
    m.at_us = at;
    snprintf(m.id, sizeof(m.id), "%s", id);
    snprintf(m.event, sizeof(m.event), "%s", kind);
    return m;
}

static int count_children(uint64_t parent, int kind)
{
    ctl_dir_txn *t = begin(0);
    uint64_t c = 0;
    CHECK(ctl_dir_count_children(t, parent, kind, &c) == 0);
    ctl_dir_abort(t);
    return (int)c;
}

static int64_t jint(const cJSON *o, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(it) ? (int64_t)it->valuedouble : -1;
}

static int ev_cb(void *ud, const ctl_dir_obj *o)
{
    cJSON **out = ud;
    *out = cJSON_Parse(o->json);
    return 0;
}

static int audit_cb(void *ud, const ctl_dir_audit_entry *e)
{
    char **out = ud;
    free(*out);
    *out = strdup(e->json);
    return 0;
}

static void test_store(void)
{
    uint64_t ta = create(CTL_KIND_TENANT, 0, 0, "{\"name\":\"A\"}", NULL);
    uint64_t tb = create(CTL_KIND_TENANT, 0, 0, "{\"name\":\"B\"}", NULL);
    uint64_t r1 = create(CTL_KIND_RECORDER, ta, 0, "{\"name\":\"cam1\"}", "dev-1");
    uint64_t r2 = create(CTL_KIND_RECORDER, ta, 0, "{\"name\":\"cam2\"}", "dev-2");
    uint64_t r3 = create(CTL_KIND_RECORDER, ta, 0, "{\"name\":\"no gps\"}", "dev-3");
    uint64_t rb = create(CTL_KIND_RECORDER, tb, 0, "{\"name\":\"b\"}", "dev-b");
    (void)r3;

    /* An event, twice (QoS 1 redelivery): one object, one audit entry. */
    ctl_devmsg e = evt("e1", NOW, "harsh_brake");
    e.channel = 2;
    e.severity = CTL_DEVMSG_WARNING;
    e.has_pos = 1;
    e.lat = 10.5;
    e.lon = 20.25;
    CHECK(ctl_devmsg_store(d, "dev-1", &e) == 0);
    CHECK(ctl_devmsg_store(d, "dev-1", &e) == 0);
    CHECK(count_children(r1, CTL_KIND_EVENT) == 1);
    /* The same event id from another recorder is another event. */
    CHECK(ctl_devmsg_store(d, "dev-2", &e) == 0);
    CHECK(count_children(r2, CTL_KIND_EVENT) == 1);
    /* Unknown device, bad device id, invalid message. */
    CHECK(ctl_devmsg_store(d, "dev-unknown", &e) == -ENOENT);
    CHECK(ctl_devmsg_store(d, "../x", &e) == -EINVAL);
    ctl_devmsg bad = e;
    bad.lat = 91;
    CHECK(ctl_devmsg_store(d, "dev-1", &bad) == -EINVAL);

    ctl_dir_txn *t = begin(0);
    cJSON *j = NULL;
    size_t n = 0;
    CHECK(ctl_dir_list_children(t, r1, CTL_KIND_EVENT, 0, 10, ev_cb, &j, &n) == 0 && n == 1);
    CHECK(j != NULL);
    if (j) {
        CHECK(jint(j, "recorder_id") == (int64_t)r1);
        CHECK(jint(j, "at_us") == NOW);
        CHECK(jint(j, "channel") == 2);
        CHECK(strcmp(cJSON_GetObjectItem(j, "at")->valuestring, "2025-11-30T05:20:00Z") == 0);
        CHECK(strcmp(cJSON_GetObjectItem(j, "event")->valuestring, "harsh_brake") == 0);
        CHECK(strcmp(cJSON_GetObjectItem(j, "device_event_id")->valuestring, "e1") == 0);
        CHECK(strcmp(cJSON_GetObjectItem(j, "severity")->valuestring, "warning") == 0);
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "acknowledged")));
        CHECK(strcmp(cJSON_GetObjectItem(j, "note")->valuestring, "") == 0);
        CHECK(cJSON_GetObjectItem(j, "lat")->valuedouble == 10.5);
    }
    cJSON_Delete(j);
    /* Audited as the device, in the recorder's tenant. */
    ctl_dir_obj o;
    uint64_t eid = 0;
    int kind;
    CHECK(ctl_dir_lookup(t, "devevt", "0", &kind, &eid) == -ENOENT);
    char key[64];
    snprintf(key, sizeof(key), "%" PRIu64 ":e1", r1);
    CHECK(ctl_dir_lookup(t, "devevt", key, &kind, &eid) == 0 && kind == CTL_KIND_EVENT);
    CHECK(ctl_dir_get_in_tenant(t, ta, CTL_KIND_EVENT, eid, &o) == 0);
    ctl_dir_obj_clear(&o);
    CHECK(ctl_dir_get_in_tenant(t, tb, CTL_KIND_EVENT, eid, &o) == -ENOENT);
    ctl_dir_audit_filter f = {.kind = CTL_KIND_EVENT, .id = eid};
    char *audit = NULL;
    CHECK(ctl_dir_audit_list(t, &f, 10, audit_cb, &audit, &n) == 0 && n == 1);
    CHECK(audit && strstr(audit, "\"actor\":\"device:dev-1\"") != NULL);
    free(audit);
    ctl_dir_abort(t);

    /* Positions of dev-1, out of order and in a batch; one redelivered. */
    ctl_devmsg p[5] = {loc(NOW + 3000000, 1, 1), loc(NOW + 1000000, 1, 2), loc(NOW + 2000000, 1, 3),
                       loc(NOW + 4000000, 1, 4), loc(NOW + 1000000, 9, 9)};
    p[3].has_speed = 1;
    p[3].speed_kmh = 88.5;
    p[3].has_heading = 1;
    p[3].heading = 270;
    ctl_devmsg_item items[7];
    for (int i = 0; i < 5; i++)
        items[i] = (ctl_devmsg_item){"dev-1", &p[i]};
    ctl_devmsg pb = loc(NOW, 5, 5), pu = loc(NOW, 6, 6);
    items[5] = (ctl_devmsg_item){"dev-b", &pb};
    items[6] = (ctl_devmsg_item){"nobody", &pu};
    int results[7];
    CHECK(ctl_devmsg_store_many(d, NULL, items, 7, results) == 0);
    for (int i = 0; i < 6; i++)
        CHECK(results[i] == 0);
    CHECK(results[6] == -ENOENT);
    CHECK(count_children(r1, CTL_KIND_LOCATION) == 4); /* p[4] repeats p[1]'s time */
    ctl_devmsg p2 = loc(NOW + 500000, -33.9, 151.2);
    CHECK(ctl_devmsg_store(d, "dev-2", &p2) == 0);

    /* Live: tenant A sees r1 (latest = p[3]) and r2; not r3 (no position)
     * nor B's. */
    t = begin(0);
    cJSON *live = NULL;
    CHECK(ctl_devmsg_live(t, ta, &live) == 0);
    CHECK(cJSON_GetArraySize(live) == 2);
    const cJSON *l0 = cJSON_GetArrayItem(live, 0), *l1 = cJSON_GetArrayItem(live, 1);
    CHECK(jint(l0, "recorder_id") == (int64_t)r1 && jint(l0, "at_us") == NOW + 4000000);
    CHECK(cJSON_GetObjectItem(l0, "speed_kmh") &&
          cJSON_GetObjectItem(l0, "speed_kmh")->valuedouble == 88.5);
    CHECK(cJSON_GetObjectItem(l0, "lon")->valuedouble == 4);
    CHECK(jint(l1, "recorder_id") == (int64_t)r2 && jint(l1, "at_us") == NOW + 500000);
    CHECK(cJSON_GetObjectItem(l1, "speed_kmh") == NULL);
    cJSON_Delete(live);
    CHECK(ctl_devmsg_live(t, tb, &live) == 0 && cJSON_GetArraySize(live) == 1);
    CHECK(jint(cJSON_GetArrayItem(live, 0), "recorder_id") == (int64_t)rb);
    cJSON_Delete(live);
    CHECK(ctl_devmsg_live(t, 999999, &live) == 0 && cJSON_GetArraySize(live) == 0);
    cJSON_Delete(live);

    /* Trip: oldest first, in pages of 2, within [from, to). */
    cJSON *trip = NULL;
    int64_t next = -1;
    CHECK(ctl_devmsg_trip(t, ta, r1, 0, 0, 2, &trip, &next) == 0);
    CHECK(cJSON_GetArraySize(trip) == 2 && next == NOW + 2000000 + 1);
    CHECK(jint(cJSON_GetArrayItem(trip, 0), "at_us") == NOW + 1000000);
    CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(trip, 0), "lon")->valuedouble == 2);
    CHECK(jint(cJSON_GetArrayItem(trip, 1), "at_us") == NOW + 2000000);
    cJSON_Delete(trip);
    CHECK(ctl_devmsg_trip(t, ta, r1, next, 0, 2, &trip, &next) == 0);
    CHECK(cJSON_GetArraySize(trip) == 2 && next == NOW + 4000000 + 1);
    CHECK(jint(cJSON_GetArrayItem(trip, 1), "at_us") == NOW + 4000000);
    cJSON_Delete(trip);
    CHECK(ctl_devmsg_trip(t, ta, r1, next, 0, 2, &trip, &next) == 0);
    CHECK(cJSON_GetArraySize(trip) == 0 && next == 0);
    cJSON_Delete(trip);
    CHECK(ctl_devmsg_trip(t, ta, r1, NOW + 2000000, NOW + 4000000, 10, &trip, &next) == 0);
    CHECK(cJSON_GetArraySize(trip) == 2 && next == 0);
    CHECK(jint(cJSON_GetArrayItem(trip, 0), "at_us") == NOW + 2000000);
    CHECK(jint(cJSON_GetArrayItem(trip, 1), "at_us") == NOW + 3000000);
    cJSON_Delete(trip);
    /* A page that ends at to: no next page. */
    CHECK(ctl_devmsg_trip(t, ta, r1, NOW, NOW + 2000001, 2, &trip, &next) == 0);
    CHECK(cJSON_GetArraySize(trip) == 2 && next == 0);
    cJSON_Delete(trip);
    CHECK(ctl_devmsg_trip(t, ta, r1, NOW + 5, NOW + 5, 10, &trip, &next) == 0);
    CHECK(cJSON_GetArraySize(trip) == 0 && next == 0);
    cJSON_Delete(trip);
    /* r2's positions only; another tenant's recorder is -ENOENT. */
    CHECK(ctl_devmsg_trip(t, ta, r2, 0, 0, 1000, &trip, &next) == 0);
    CHECK(cJSON_GetArraySize(trip) == 1 && next == 0);
    cJSON_Delete(trip);
    trip = NULL;
    CHECK(ctl_devmsg_trip(t, tb, r1, 0, 0, 10, &trip, &next) == -ENOENT && trip == NULL);
    CHECK(ctl_devmsg_trip(t, ta, rb, 0, 0, 10, &trip, &next) == -ENOENT);
    CHECK(ctl_devmsg_trip(t, ta, 0, 0, 0, 10, &trip, &next) == -ENOENT);
    CHECK(ctl_devmsg_trip(t, ta, r1, 0, 0, 0, &trip, &next) == -EINVAL);
    CHECK(ctl_devmsg_trip(t, ta, r1, 0, 0, CTL_DIR_LIST_MAX + 1, &trip, &next) == -EINVAL);
    ctl_dir_abort(t);

    /* A recorder moved to tenant B: its old positions stay A's; new ones
     * are B's, and A no longer lists it. */
    t = begin(1);
    CHECK(ctl_dir_get(t, CTL_KIND_RECORDER, r2, &o) == 0);
    o.tenant = tb;
    CHECK(ctl_dir_put(t, "test", &o, NULL, 0) == 0);
    ctl_dir_obj_clear(&o);
    CHECK(ctl_dir_commit(t) == 0);
    t = begin(0);
    CHECK(ctl_devmsg_live(t, tb, &live) == 0 && cJSON_GetArraySize(live) == 1); /* rb only */
    cJSON_Delete(live);
    CHECK(ctl_devmsg_trip(t, tb, r2, 0, 0, 10, &trip, &next) == 0 && cJSON_GetArraySize(trip) == 0);
    cJSON_Delete(trip);
    ctl_dir_abort(t);
    ctl_devmsg p3 = loc(NOW + 600000, 1, 1);
    CHECK(ctl_devmsg_store(d, "dev-2", &p3) == 0);
    t = begin(0);
    CHECK(ctl_devmsg_live(t, tb, &live) == 0 && cJSON_GetArraySize(live) == 2);
    cJSON_Delete(live);
    CHECK(ctl_devmsg_live(t, ta, &live) == 0 && cJSON_GetArraySize(live) == 1);
    cJSON_Delete(live);
    ctl_dir_abort(t);

    /* Bad arguments. */
    int r;
    CHECK(ctl_devmsg_store_many(d, NULL, items, 0, &r) == -EINVAL);
    CHECK(ctl_devmsg_store_many(NULL, NULL, items, 1, &r) == -EINVAL);
}

static void test_record_json(void)
{
    ctl_devmsg m = loc(NOW, 0.1, -0.2);
    m.has_heading = 1;
    m.heading = 0;
    char *s = ctl_devmsg_record_json(&m, 42);
    CHECK(s != NULL);
    if (s)
        CHECK(strcmp(s, "{\"recorder_id\":42,\"at\":\"2025-11-30T05:20:00Z\","
                        "\"at_us\":1764480000000000,\"lat\":0.1,\"lon\":-0.2,\"heading\":0}") == 0);
    free(s);
    /* 17 significant digits survive (cJSON's own printing would not). */
    m.lat = 1.17644800000000005;
    s = ctl_devmsg_record_json(&m, 42);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    CHECK(j && cJSON_GetObjectItem(j, "lat")->valuedouble == m.lat);
    cJSON_Delete(j);
    free(s);
    m.lat = NAN;
    CHECK(ctl_devmsg_record_json(&m, 42) == NULL);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int main(void)
{
    test_parse_accept();
    test_parse_refuse();
    test_record_json();

    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/test_devmsg.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/ledger.lmdb", dir);
    CHECK(ctl_ledger_open(path, 16 << 20, 0, &led) == 0);
    if (!led)
        abort();
    CHECK(ctl_dir_open(led, &d) == 0);
    if (!d)
        abort();
    test_store();
    ctl_dir_free(d);
    ctl_ledger_free(led);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (failures) {
        fprintf(stderr, "test_devmsg: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_devmsg: ok\n");
    return 0;
}
