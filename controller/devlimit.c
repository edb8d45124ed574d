/* Per-device message rate limit (see devlimit.h). */
#include "controller/devlimit.h"

#include "controller/devtable.h"
#include "proto/c2d_proto.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S INT64_C(1000000000)
/* Payload lengths are clamped here before the nanosecond arithmetic (the
 * broker's own limit is 256 MiB); any such message is over every burst. */
#define LEN_CLAMP (INT64_C(1) << 32)

typedef struct {
    char device[C2D_DEVICE_ID_MAX + 1];
    int64_t tat_msgs_ns;  /* GCRA theoretical arrival times: the bucket is */
    int64_t tat_bytes_ns; /* full when they are not after now */
    int64_t last_seen_us;
    int64_t last_sync_us, last_log_us;
    int synced, logged; /* reported at least once */
    uint64_t dropped_msgs, dropped_bytes, unlogged_msgs;
} entry;
_Static_assert(offsetof(entry, device) == 0, "a devtable entry starts with its device id");

struct ctl_devlimit {
    ctl_devlimit_params p;
    int64_t msg_cost_ns;  /* one message */
    int64_t msg_tau_ns;   /* the message burst, in time */
    int64_t bytes_tau_ns; /* the byte burst, in time */
    ctl_devtable t;       /* of entry */
    uint64_t dropped;
};

void ctl_devlimit_params_default(ctl_devlimit_params *p)
{
    p->msgs_per_s = CTL_DEVLIMIT_MSGS_PER_S;
    p->msgs_burst = CTL_DEVLIMIT_MSGS_BURST;
    p->bytes_per_s = CTL_DEVLIMIT_BYTES_PER_S;
    p->bytes_burst = CTL_DEVLIMIT_BYTES_BURST;
    p->capacity = CTL_DEVLIMIT_CAPACITY;
}

static int in_range(uint64_t v)
{
    return v >= 1 && v <= (uint64_t)CTL_DEVLIMIT_PARAM_MAX;
}

int ctl_devlimit_new(const ctl_devlimit_params *p, ctl_devlimit **out)
{
    ctl_devlimit_params d;
    if (!p) {
        ctl_devlimit_params_default(&d);
        p = &d;
    }
    if (!in_range(p->msgs_per_s) || !in_range(p->msgs_burst) || !in_range(p->bytes_per_s) ||
        !in_range(p->bytes_burst) || p->bytes_burst < (uint64_t)CTL_DEVLIMIT_BYTES_BURST_MIN ||
        p->capacity == 0 || p->capacity > CTL_DEVLIMIT_CAPACITY_MAX)
        return -EINVAL;
    ctl_devlimit *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->p = *p;
    /* Each product stays under 1e18: both factors are at most 1e9. */
    l->msg_cost_ns = NS_PER_S / (int64_t)p->msgs_per_s;
    if (l->msg_cost_ns == 0)
        l->msg_cost_ns = 1;
    l->msg_tau_ns = (int64_t)p->msgs_burst * l->msg_cost_ns;
    l->bytes_tau_ns =
        (int64_t)p->bytes_burst * (NS_PER_S / (int64_t)p->bytes_per_s) +
        (int64_t)p->bytes_burst * (NS_PER_S % (int64_t)p->bytes_per_s) / (int64_t)p->bytes_per_s;
    *out = l;
    return 0;
}

void ctl_devlimit_free(ctl_devlimit *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->t.n; i++)
        free(l->t.v[i]);
    ctl_devtable_clear(&l->t);
    free(l);
}

/* Frees the entry to forget in a full table: one whose buckets are full
 * again if any (the least recently seen of those), else the least
 * recently seen. */
static void evict(ctl_devlimit *l, int64_t now_ns)
{
    size_t best = 0;
    int best_full = 0;
    for (size_t i = 0; i < l->t.n; i++) {
        const entry *e = l->t.v[i], *b = l->t.v[best];
        int full = e->tat_msgs_ns <= now_ns && e->tat_bytes_ns <= now_ns;
        if ((full && !best_full) || (full == best_full && e->last_seen_us < b->last_seen_us)) {
            best = i;
            best_full = full;
        }
    }
    free(ctl_devtable_remove(&l->t, best));
}

static entry *get_or_add(ctl_devlimit *l, const char *device, int64_t now_ns, int *err)
{
    int found;
    size_t i = ctl_devtable_find(&l->t, device, &found);
    if (found)
        return l->t.v[i];
    int room = ctl_devtable_reserve(&l->t, l->p.capacity);
    entry *e = NULL;
    if (room == -ENOMEM || !(e = calloc(1, sizeof(*e)))) {
        *err = -ENOMEM;
        return NULL;
    }
    if (room == -ENOSPC) { /* full: forget one */
        evict(l, now_ns);
        i = ctl_devtable_find(&l->t, device, &found);
    }
    strcpy(e->device, device); /* fits: checked by the caller */
    ctl_devtable_insert(&l->t, i, e);
    return e;
}

int ctl_devlimit_check(ctl_devlimit *l, const char *device, size_t len, int64_t now_us,
                       ctl_devlimit_drop *drop)
{
    if (strlen(device) > C2D_DEVICE_ID_MAX)
        return -EINVAL;
    int64_t now_ns = now_us * 1000;
    int err = 0;
    entry *e = get_or_add(l, device, now_ns, &err);
    if (!e)
        return err;
    e->last_seen_us = now_us;
    int64_t n = len > (size_t)LEN_CLAMP ? LEN_CLAMP : (int64_t)len;
    int64_t bytes_cost = n * (NS_PER_S / (int64_t)l->p.bytes_per_s) +
                         n * (NS_PER_S % (int64_t)l->p.bytes_per_s) / (int64_t)l->p.bytes_per_s;
    int64_t tm = e->tat_msgs_ns > now_ns ? e->tat_msgs_ns : now_ns;
    int64_t tb = e->tat_bytes_ns > now_ns ? e->tat_bytes_ns : now_ns;
    if (tm - now_ns + l->msg_cost_ns <= l->msg_tau_ns &&
        tb - now_ns + bytes_cost <= l->bytes_tau_ns) {
        e->tat_msgs_ns = tm + l->msg_cost_ns;
        e->tat_bytes_ns = tb + bytes_cost;
        return 0;
    }
    l->dropped++;
    e->dropped_msgs++;
    e->dropped_bytes += (uint64_t)len;
    e->unlogged_msgs++;
    if (drop) {
        memset(drop, 0, sizeof(*drop));
        drop->dropped_msgs = e->dropped_msgs;
        drop->dropped_bytes = e->dropped_bytes;
        drop->unlogged_msgs = e->unlogged_msgs;
        if (!e->synced || now_us - e->last_sync_us >= CTL_DEVLIMIT_SYNC_US) {
            drop->sync_due = e->synced = 1;
            e->last_sync_us = now_us;
        }
        if (!e->logged || now_us - e->last_log_us >= CTL_DEVLIMIT_LOG_US) {
            drop->log_due = e->logged = 1;
            e->last_log_us = now_us;
            e->unlogged_msgs = 0;
        }
    }
    return -EAGAIN;
}

uint64_t ctl_devlimit_dropped(const ctl_devlimit *l)
{
    return l->dropped;
}

size_t ctl_devlimit_count(const ctl_devlimit *l)
{
    return l->t.n;
}
