/* ctl_devmsg_parse on arbitrary bytes with a fixed clock, and every
 * accepted message stored as c2d-controller stores it (daemon.c flush_evt:
 * ctl_devmsg_store_many with the ledger) in a real LMDB ledger and
 * directory in a temporary directory (under /dev/shm when it exists).
 *
 * Input: one evt payload, as a device publishes it.
 *
 * Set-up, once: a tenant with a recorder paired as device PAIRED (a virtual
 * disk covers its channels 1 and 2, so events with a channel protect
 * recordings through the quota), in a directory that is made again every
 * RESET_EVERY inputs (what is stored then stays bounded) and removed at
 * exit.
 *
 * Invariants (abort on violation):
 *  - an accepted message satisfies ctl_devmsg_valid, every field is in its
 *    range, and its stored JSON text is an object carrying the same time and
 *    exactly the numbers given; a refusal leaves the output untouched and
 *    gives a printable reason;
 *  - the message stored in a batch with the same message from an unpaired
 *    device and from an invalid device id: the transaction commits, the
 *    paired one is stored (0: stored or a redelivery), the others get
 *    -ENOENT and -EINVAL;
 *  - the directory still answers: ctl_devmsg_live for the tenant gives 0 and
 *    one position at most; a position is found by ctl_devmsg_trip at its
 *    time. */
#include "controller/devmsg.h"
#include "controller/directory.h"
#include "controller/ledger.h"
#include "controller/quota.h"
#include "fuzz.h"
#include "fuzz_scratch.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* The recorder's device id, one never paired, one that is not a device id. */
#define PAIRED "cam-1"
#define UNPAIRED "cam-2"
#define INVALID "../cam-1"

/* At most one message is stored per input, a record and its audit entry of
 * a few hundred bytes: 5000 inputs stay far below the map. */
#define RESET_EVERY 5000
#define LEDGER_MAP_BYTES (64u << 20)
#define DISK_ID 1
#define DISK_BYTES (1u << 30)

static struct {
    int ready;
    char root[256];
    ctl_ledger *l;
    ctl_dir *dir;
    uint64_t tenant, recorder;
    unsigned long inputs;
} w;

static uint64_t put(ctl_dir_txn *t, int kind, uint64_t tenant, const char *json, const char *device)
{
    ctl_dir_obj o = {.kind = kind, .tenant = tenant, .json = (char *)json};
    ctl_dir_ukey k = {"device", device};
    FUZZ_ASSERT(ctl_dir_put(t, "fuzz", &o, device ? &k : NULL, device ? 1 : 0) == 0);
    return o.id;
}

/* A new ledger under root with the tenant, its recorder and its disk. */
static void make_world(void)
{
    char lp[320];
    snprintf(lp, sizeof(lp), "%s/ledger.lmdb", w.root);
    FUZZ_ASSERT(ctl_ledger_open(lp, LEDGER_MAP_BYTES, 0, &w.l) == 0);
    FUZZ_ASSERT(ctl_dir_open(w.l, &w.dir) == 0);
    ctl_dir_txn *t = NULL;
    FUZZ_ASSERT(ctl_dir_begin(w.dir, 1, &t) == 0);
    w.tenant = put(t, CTL_KIND_TENANT, 0, "{\"name\":\"fuzz\"}", NULL);
    w.recorder = put(t, CTL_KIND_RECORDER, w.tenant, "{\"name\":\"cam\"}", PAIRED);
    const ctl_disk_cfg disk = {DISK_BYTES, 0, CTL_DISK_OVERWRITE, 1};
    FUZZ_ASSERT(ctl_quota_disk_set(w.l, ctl_dir_txn_mdb(t), DISK_ID, &disk) == 0);
    const ctl_camera_rec cam = {DISK_ID, 0, 1};
    for (uint16_t ch = 1; ch <= 2; ch++)
        FUZZ_ASSERT(ctl_quota_camera_set(w.l, ctl_dir_txn_mdb(t), PAIRED, ch, &cam) == 0);
    FUZZ_ASSERT(ctl_dir_commit(t) == 0);
}

static void free_world(void)
{
    ctl_dir_free(w.dir);
    ctl_ledger_free(w.l);
    w.dir = NULL;
    w.l = NULL;
    char lp[320];
    snprintf(lp, sizeof(lp), "%s/ledger.lmdb", w.root);
    fuzz_rm_tree(lp);
}

static void at_exit(void)
{
    if (!w.ready)
        return;
    free_world();
    fuzz_rm_tree(w.root);
    w.ready = 0;
}

static void init(void)
{
    fuzz_scratch_dir("c2d-fuzz-devmsg", w.root, sizeof(w.root));
    make_world();
    w.ready = 1;
    atexit(at_exit);
}

/* Stores m as the daemon does, in a batch with the same message from a
 * device without a recorder and from an invalid id, and checks the
 * directory still answers. */
static void store(const ctl_devmsg *m)
{
    const ctl_devmsg_item items[3] = {{PAIRED, m}, {UNPAIRED, m}, {INVALID, m}};
    int results[3] = {1, 1, 1};
    FUZZ_ASSERT(ctl_devmsg_store_many(w.dir, w.l, items, 3, results) == 0);
    FUZZ_ASSERT(results[0] == 0 && results[1] == -ENOENT && results[2] == -EINVAL);

    ctl_dir_txn *t = NULL;
    FUZZ_ASSERT(ctl_dir_begin(w.dir, 0, &t) == 0);
    cJSON *live = NULL;
    FUZZ_ASSERT(ctl_devmsg_live(t, w.tenant, &live) == 0);
    FUZZ_ASSERT(cJSON_IsArray(live) && cJSON_GetArraySize(live) <= 1);
    cJSON_Delete(live);
    if (m->type == CTL_DEVMSG_LOCATION) {
        /* The position of that microsecond: this one or an earlier input's
         * (a redelivery keeps the first). */
        cJSON *trip = NULL;
        int64_t next = -1;
        FUZZ_ASSERT(
            ctl_devmsg_trip(t, w.tenant, w.recorder, m->at_us, m->at_us + 1, 1, &trip, &next) == 0);
        FUZZ_ASSERT(cJSON_GetArraySize(trip) == 1 && next == 0);
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(trip, 0), "at_us");
        FUZZ_ASSERT(cJSON_IsNumber(at) && (int64_t)at->valuedouble == m->at_us);
        cJSON_Delete(trip);
    }
    ctl_dir_abort(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!w.ready)
        init();
    if (w.inputs > 0 && w.inputs % RESET_EVERY == 0) {
        free_world();
        make_world();
    }
    w.inputs++;

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

    store(&m);
    return 0;
}
