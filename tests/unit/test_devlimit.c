/* Unit tests for controller/devlimit.c: parameter bounds, the burst then
 * the sustained rate on messages and on bytes, a flooder does not touch
 * another device's buckets, drops cost nothing, the report cadence (sync
 * and log), bounded memory with eviction of idle ids first, long ids;
 * and the device state's rate_limited alarm and counters it feeds. */
#include "check.h"
#include "controller/devlimit.h"
#include "controller/devstate.h"
#include "proto/c2d_proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define SEC INT64_C(1000000)
#define T0 (INT64_C(1000) * SEC)

static ctl_devlimit *make(uint64_t mps, uint64_t mb, uint64_t bps, uint64_t bb, size_t cap)
{
    ctl_devlimit_params p = {mps, mb, bps, bb, cap};
    ctl_devlimit *l = NULL;
    CHECK(ctl_devlimit_new(&p, &l) == 0 && l);
    return l;
}

static void test_params(void)
{
    ctl_devlimit *l = NULL;
    CHECK(ctl_devlimit_new(NULL, &l) == 0 && l);
    ctl_devlimit_free(l);
    ctl_devlimit_free(NULL);
    ctl_devlimit_params d;
    ctl_devlimit_params_default(&d);
    CHECK(d.msgs_per_s == CTL_DEVLIMIT_MSGS_PER_S && d.capacity == CTL_DEVLIMIT_CAPACITY);
    ctl_devlimit_params bad[] = {
        {0, 10, 1 << 22, 1 << 22, 10},
        {10, 0, 1 << 22, 1 << 22, 10},
        {10, 10, 0, 1 << 22, 10},
        {10, 10, 1 << 22, (2 << 20) - 1, 10},
        {10, 10, 1 << 22, 1 << 22, 0},
        {10, 10, 1 << 22, 1 << 22, CTL_DEVLIMIT_CAPACITY_MAX + 1},
        {CTL_DEVLIMIT_PARAM_MAX + 1, 10, 1 << 22, 1 << 22, 10},
        {10, 10, 1 << 22, CTL_DEVLIMIT_PARAM_MAX + 1, 10},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        l = (ctl_devlimit *)&d; /* must stay untouched */
        CHECK(ctl_devlimit_new(&bad[i], &l) == -EINVAL && l == (ctl_devlimit *)&d);
    }
    /* the extremes are accepted and do not overflow */
    ctl_devlimit_params big = {CTL_DEVLIMIT_PARAM_MAX, CTL_DEVLIMIT_PARAM_MAX, 1,
                               CTL_DEVLIMIT_PARAM_MAX, 1};
    CHECK(ctl_devlimit_new(&big, &l) == 0);
    CHECK(ctl_devlimit_check(l, "a", 10, T0, NULL) == 0);
    ctl_devlimit_free(l);
}

/* Messages: a burst, then exactly the rate. */
static void test_msgs(void)
{
    ctl_devlimit *l = make(100, 50, 1 << 29, 1 << 29, 16);
    int passed = 0;
    for (int i = 0; i < 80; i++)
        passed += ctl_devlimit_check(l, "rec-a", 10, T0, NULL) == 0;
    CHECK(passed == 50);
    CHECK(ctl_devlimit_dropped(l) == 30);
    /* one second later: 100 more (the bucket refills at the rate, capped
     * at the burst: 50) */
    passed = 0;
    for (int i = 0; i < 200; i++)
        passed += ctl_devlimit_check(l, "rec-a", 10, T0 + SEC, NULL) == 0;
    CHECK(passed == 50);
    /* a steady 1000 messages/s for 10 s: about 100/s get through */
    passed = 0;
    for (int64_t t = 0; t < 10 * SEC; t += 1000)
        passed += ctl_devlimit_check(l, "rec-a", 10, T0 + 2 * SEC + t, NULL) == 0;
    CHECK(passed >= 1000 && passed <= 1051);
    /* at the rate: nothing dropped */
    uint64_t before = ctl_devlimit_dropped(l);
    for (int64_t t = 0; t < 10 * SEC; t += SEC / 100)
        CHECK(ctl_devlimit_check(l, "rec-b", 10, T0 + t, NULL) == 0);
    CHECK(ctl_devlimit_dropped(l) == before);
    ctl_devlimit_free(l);
}

/* Bytes: a 4 MiB burst at 1 MiB/s. */
static void test_bytes(void)
{
    ctl_devlimit *l = make(1000000, 1000000, 1 << 20, 4 << 20, 16);
    int passed = 0;
    for (int i = 0; i < 8; i++)
        passed += ctl_devlimit_check(l, "rec-a", 1 << 20, T0, NULL) == 0;
    CHECK(passed == 4);
    /* small messages still pass while big ones do not fit */
    CHECK(ctl_devlimit_check(l, "rec-a", 1 << 20, T0 + SEC / 2, NULL) == -EAGAIN);
    CHECK(ctl_devlimit_check(l, "rec-a", 1000, T0 + SEC / 2, NULL) == 0);
    CHECK(ctl_devlimit_check(l, "rec-a", 1 << 20, T0 + SEC + SEC / 10, NULL) == 0);
    /* a message over the burst never passes, whatever the wait */
    CHECK(ctl_devlimit_check(l, "rec-c", (4 << 20) + 1, T0 + 100 * SEC, NULL) == -EAGAIN);
    CHECK(ctl_devlimit_check(l, "rec-c", (size_t)1 << 40, T0 + 100 * SEC, NULL) == -EAGAIN);
    CHECK(ctl_devlimit_check(l, "rec-c", 4 << 20, T0 + 100 * SEC, NULL) == 0);
    ctl_devlimit_free(l);
}

/* One device floods; another at its normal rate loses nothing. */
static void test_isolation(void)
{
    ctl_devlimit *l = make(100, 100, 1 << 29, 1 << 29, 16);
    int64_t t = T0;
    uint64_t good_drops = 0;
    for (int i = 0; i < 100000; i++, t += 10) { /* 100k messages/s */
        ctl_devlimit_check(l, "flooder", 100, t, NULL);
        if (i % 2000 == 0) /* 50/s */
            good_drops += ctl_devlimit_check(l, "good", 65536, t, NULL) != 0;
    }
    CHECK(good_drops == 0);
    CHECK(ctl_devlimit_dropped(l) >= 100000 - 100 - 100 - 1);
    ctl_devlimit_free(l);
}

static void test_reports(void)
{
    ctl_devlimit *l = make(10, 10, 1 << 29, 1 << 29, 16);
    ctl_devlimit_drop d;
    for (int i = 0; i < 10; i++)
        CHECK(ctl_devlimit_check(l, "f", 7, T0, &d) == 0);
    memset(&d, 0xff, sizeof(d));
    CHECK(ctl_devlimit_check(l, "f", 7, T0, &d) == -EAGAIN);
    CHECK(d.dropped_msgs == 1 && d.dropped_bytes == 7 && d.unlogged_msgs == 1 && d.sync_due &&
          d.log_due);
    CHECK(ctl_devlimit_check(l, "f", 7, T0 + 1000, &d) == -EAGAIN);
    CHECK(d.dropped_msgs == 2 && d.dropped_bytes == 14 && !d.sync_due && !d.log_due);
    CHECK(ctl_devlimit_check(l, "f", 7, T0 + 2000, NULL) == -EAGAIN); /* NULL: fine */
    /* after a second the counters sync again; the log waits 10 s */
    int syncs = 0, logs = 0;
    uint64_t unlogged = 0;
    for (int64_t t = T0 + 3000; t < T0 + 25 * SEC; t += 1000) {
        if (ctl_devlimit_check(l, "f", 7, t, &d) != -EAGAIN)
            continue;
        syncs += d.sync_due;
        if (d.log_due) {
            logs++;
            unlogged = d.unlogged_msgs;
        }
    }
    CHECK(syncs >= 23 && syncs <= 25);
    CHECK(logs == 2);
    CHECK(unlogged > 9000); /* the drops of the 10 s since the last line */
    ctl_devlimit_free(l);
}

static void test_capacity(void)
{
    ctl_devlimit *l = make(10, 2, 1 << 29, 1 << 29, 4);
    char id[16];
    for (int i = 0; i < 4; i++) {
        snprintf(id, sizeof(id), "d%d", i);
        CHECK(ctl_devlimit_check(l, id, 1, T0 + i, NULL) == 0);
    }
    /* d1..d3 drain their buckets; d0 is idle and full again later */
    for (int i = 1; i < 4; i++) {
        snprintf(id, sizeof(id), "d%d", i);
        ctl_devlimit_check(l, id, 1, T0 + 10 * SEC, NULL);
        ctl_devlimit_check(l, id, 1, T0 + 10 * SEC, NULL);
        CHECK(ctl_devlimit_check(l, id, 1, T0 + 10 * SEC, NULL) == -EAGAIN);
    }
    CHECK(ctl_devlimit_count(l) == 4);
    /* a new id takes d0's place (idle), not a limited one's */
    CHECK(ctl_devlimit_check(l, "new", 1, T0 + 10 * SEC, NULL) == 0);
    CHECK(ctl_devlimit_count(l) == 4);
    CHECK(ctl_devlimit_check(l, "d3", 1, T0 + 10 * SEC, NULL) == -EAGAIN);
    /* every bucket drained: the least recently seen goes */
    ctl_devlimit_check(l, "new", 1, T0 + 10 * SEC, NULL);
    ctl_devlimit_check(l, "new", 1, T0 + 10 * SEC, NULL);
    ctl_devlimit_check(l, "d1", 1, T0 + 10 * SEC + 1, NULL);
    ctl_devlimit_check(l, "d2", 1, T0 + 10 * SEC + 1, NULL);
    ctl_devlimit_check(l, "d3", 1, T0 + 10 * SEC + 2, NULL);
    CHECK(ctl_devlimit_check(l, "other", 1, T0 + 10 * SEC + 3, NULL) == 0);
    CHECK(ctl_devlimit_count(l) == 4);
    /* "new" was seen longest ago: forgotten, so it starts with a full burst */
    CHECK(ctl_devlimit_check(l, "new", 1, T0 + 10 * SEC + 4, NULL) == 0);
    /* many ids: the table stays at its capacity */
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "x%d", i);
        CHECK(ctl_devlimit_check(l, id, 1, T0 + 20 * SEC + i, NULL) == 0);
    }
    CHECK(ctl_devlimit_count(l) == 4);
    ctl_devlimit_free(l);
}

static void test_long_id(void)
{
    ctl_devlimit *l = make(10, 10, 1 << 29, 1 << 29, 4);
    char id[C2D_DEVICE_ID_MAX + 2];
    memset(id, 'a', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    CHECK(ctl_devlimit_check(l, id, 1, T0, NULL) == -EINVAL);
    id[C2D_DEVICE_ID_MAX] = '\0';
    CHECK(ctl_devlimit_check(l, id, 1, T0, NULL) == 0);
    CHECK(ctl_devlimit_count(l) == 1);
    ctl_devlimit_free(l);
}

/* What the daemon does with a drop: controller/devstate.c's rate_limited
 * alarm and counters. */
static void test_devstate_alarm(void)
{
    ctl_devstate *s = NULL;
    CHECK(ctl_devstate_new(90, 0, &s) == 0);
    const int64_t now = INT64_C(1764480000000000);
    ctl_devstate_set_limited(s, "rec-f", 5, 500, now);
    ctl_devstate_set_limited(s, "../x", 5, 500, now); /* not a device id: ignored */
    cJSON *arr = cJSON_CreateArray(), *j = NULL;
    CHECK(ctl_devstate_alarms_json(s, "rec-f", 7, arr) == 0 && cJSON_GetArraySize(arr) == 1);
    const cJSON *a = cJSON_GetArrayItem(arr, 0);
    CHECK(a && strcmp(cJSON_GetObjectItem(a, "code")->valuestring, "rate_limited") == 0);
    cJSON_Delete(arr);
    /* a state message keeps it (online: no other alarm) */
    const char *msg = "{\"online\":true}";
    CHECK(ctl_devstate_update(s, "rec-f", msg, strlen(msg), now + SEC, NULL, 0) == 0);
    ctl_devstate_set_limited(s, "rec-f", 9, 900, now + 2 * SEC);
    CHECK(ctl_devstate_json(s, "rec-f", &j) == 0);
    const cJSON *l = cJSON_GetObjectItem(j, "rate_limited");
    CHECK(l && cJSON_GetObjectItem(l, "dropped_messages")->valuedouble == 9 &&
          cJSON_GetObjectItem(l, "dropped_bytes")->valuedouble == 900 &&
          cJSON_IsString(cJSON_GetObjectItem(l, "last")));
    const cJSON *al = cJSON_GetObjectItem(j, "alarms");
    CHECK(cJSON_GetArraySize(al) == 1 &&
          cJSON_GetObjectItem(cJSON_GetArrayItem(al, 0), "since_us")->valuedouble == (double)now);
    cJSON_Delete(j);
    /* 60 s after the last drop the alarm goes; the counters stay */
    ctl_devstate_tick(s, now + 2 * SEC + CTL_DEVSTATE_LIMITED_ALARM_S * SEC - 1);
    arr = cJSON_CreateArray();
    CHECK(ctl_devstate_alarms_json(s, "rec-f", 7, arr) == 0 && cJSON_GetArraySize(arr) == 1);
    cJSON_Delete(arr);
    ctl_devstate_tick(s, now + 2 * SEC + CTL_DEVSTATE_LIMITED_ALARM_S * SEC + 10);
    CHECK(ctl_devstate_json(s, "rec-f", &j) == 0);
    al = cJSON_GetObjectItem(j, "alarms");
    CHECK(cJSON_GetArraySize(al) == 0); /* online, not limited any more */
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "rate_limited"), "dropped_messages")
              ->valuedouble == 9);
    cJSON_Delete(j);
    /* a device never limited: rate_limited is null */
    CHECK(ctl_devstate_json(s, "rec-g", &j) == 0 &&
          cJSON_IsNull(cJSON_GetObjectItem(j, "rate_limited")));
    cJSON_Delete(j);
    ctl_devstate_free(s);
}

int main(void)
{
    test_devstate_alarm();
    test_params();
    test_msgs();
    test_bytes();
    test_isolation();
    test_reports();
    test_capacity();
    test_long_id();
    return check_result();
}
