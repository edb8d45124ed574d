/* Unit tests for a recorder's recordings across re-pairings
 * (docs/pairing.md, "Unpairing"): ctl_revoke_ids_of (the ids revoked from a
 * recorder, with a real directory), ctl_rec_merge (order, ties, the page
 * bound) and ctl_rec_query_devices (a real ledger: merged pages, gaps over
 * the merge, each device's own retention cutoff). */
#include "check.h"
#include "ledger_fixture.h"
#include "controller/directory.h"
#include "controller/ledger.h"
#include "controller/recordings.h"
#include "controller/revoke.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S 1000000                    /* one second in µs */
#define T0 (INT64_C(1764489600) * S) /* 2025-11-30T08:00:00Z */

static char dir[LEDGER_FIXTURE_DIR_MAX];
static ctl_ledger *led;
static ctl_dir *d;
static int64_t fake_now = 1000;

static int64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

static void commit(const char *dev, uint16_t ch, int64_t start, int64_t dur)
{
    ledger_fixture_commit(led, dev, ch, start, dur);
}

/* ---- ctl_revoke_ids_of ------------------------------------------------- */

typedef struct {
    char ids[8][C2D_DEVICE_ID_MAX + 1];
    int64_t at[8];
    size_t n;
    size_t stop_after; /* 0: never */
} ids_seen;

static int seen_cb(void *ud, const char *device, int64_t at_us)
{
    ids_seen *s = ud;
    if (s->n < 8) {
        snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", device);
        s->at[s->n] = at_us;
    }
    s->n++;
    return s->stop_after && s->n == s->stop_after ? 7 : 0;
}

static void mark(const char *dev, uint64_t rid)
{
    ctl_dir_txn *t = NULL;
    CHECK(ctl_dir_begin(d, 1, &t) == 0);
    if (!t)
        abort();
    CHECK(ctl_revoke_mark(t, dev, rid) == 0);
    CHECK(ctl_dir_commit(t) == 0);
}

static ids_seen ids_of(uint64_t rid, size_t stop_after, int *rc)
{
    ids_seen s = {.stop_after = stop_after};
    ctl_dir_txn *t = NULL;
    CHECK(ctl_dir_begin(d, 0, &t) == 0);
    if (!t)
        abort();
    *rc = ctl_revoke_ids_of(t, rid, seen_cb, &s);
    ctl_dir_abort(t);
    return s;
}

static void test_ids_of(void)
{
    int rc;
    ctl_dir_txn *t = NULL;
    /* Before ctl_revoke_open: not opened. */
    CHECK(ctl_dir_begin(d, 0, &t) == 0);
    ids_seen s0 = {0};
    CHECK(ctl_revoke_ids_of(t, 1, seen_cb, &s0) == -ENXIO);
    ctl_dir_abort(t);

    CHECK(ctl_revoke_open(d) == 0);
    ids_seen s = ids_of(7, 0, &rc);
    CHECK(rc == 0 && s.n == 0);
    fake_now = 5000;
    mark("rec-b", 7);
    fake_now = 6000;
    mark("rec-a", 7);
    mark("rec-c", 8); /* another recorder */
    mark("rec-a", 9); /* revoked already: still recorder 7's */
    s = ids_of(7, 0, &rc);
    CHECK(rc == 0 && s.n == 2);
    CHECK(strcmp(s.ids[0], "rec-a") == 0 && s.at[0] == 6000); /* id order */
    CHECK(strcmp(s.ids[1], "rec-b") == 0 && s.at[1] == 5000);
    s = ids_of(8, 0, &rc);
    CHECK(rc == 0 && s.n == 1 && strcmp(s.ids[0], "rec-c") == 0);
    s = ids_of(9, 0, &rc);
    CHECK(rc == 0 && s.n == 0);
    /* The callback stops the walk with its value. */
    s = ids_of(7, 1, &rc);
    CHECK(rc == 7 && s.n == 1);
}

/* ---- ctl_rec_merge ----------------------------------------------------- */

static ctl_rec_list list_of(const int64_t *starts, size_t n, bool more)
{
    ctl_rec_list l = {.n = n, .more = more};
    l.v = calloc(n ? n : 1, sizeof(*l.v));
    if (!l.v)
        abort();
    for (size_t i = 0; i < n; i++) {
        l.v[i].start_us = starts[i];
        l.v[i].duration_us = 1;
    }
    return l;
}

static void test_merge(void)
{
    int64_t a[] = {10, 30, 50}, b[] = {20, 30, 40}, c[] = {5};
    ctl_rec_list in[3] = {list_of(a, 3, false), list_of(b, 3, false), list_of(c, 1, false)}, out;
    CHECK(ctl_rec_merge(in, 3, 100, &out) == 0);
    int64_t want[] = {5, 10, 20, 30, 40, 50};
    unsigned dev[] = {2, 0, 1, 0, 1, 0}; /* 30 twice: list 0's */
    CHECK(out.n == 6 && !out.more);
    for (size_t i = 0; i < out.n && i < 6; i++)
        CHECK(out.v[i].start_us == want[i] && out.v[i].dev == dev[i]);
    CHECK(in[0].v == NULL && in[1].n == 0); /* the inputs are cleared */
    ctl_rec_list_clear(&out);

    /* The page bound: the first max, more set. */
    in[0] = list_of(a, 3, false);
    in[1] = list_of(b, 3, false);
    CHECK(ctl_rec_merge(in, 2, 3, &out) == 0);
    CHECK(out.n == 3 && out.more && out.v[2].start_us == 30 && out.v[2].dev == 0);
    ctl_rec_list_clear(&out);
    /* A list that had more passes it on, even when nothing is left out. */
    in[0] = list_of(a, 1, true);
    in[1] = list_of(b, 0, false);
    CHECK(ctl_rec_merge(in, 2, 3, &out) == 0);
    CHECK(out.n == 1 && out.more);
    ctl_rec_list_clear(&out);
    /* Nothing at all. */
    in[0] = list_of(a, 0, false);
    CHECK(ctl_rec_merge(in, 1, 3, &out) == 0);
    CHECK(out.n == 0 && !out.more);
    ctl_rec_list_clear(&out);
}

/* ---- ctl_rec_query_devices --------------------------------------------- */

static int64_t cutoff_old;

static int64_t cutoff(void *ud, const char *device, uint16_t ch)
{
    (void)ud, (void)ch;
    return strcmp(device, "rec-old") == 0 ? cutoff_old : 0;
}

static void test_query_devices(void)
{
    /* The first run under rec-old, the second (after a re-pair) under
     * rec-new, 60 s later; another channel and device left out. */
    for (int i = 0; i < 3; i++)
        commit("rec-old", 1, T0 + i * 10 * S, 10 * S);
    for (int i = 0; i < 3; i++)
        commit("rec-new", 1, T0 + 90 * S + i * 10 * S, 10 * S);
    commit("rec-old", 2, T0 + 5 * S, 10 * S);
    commit("rec-other", 1, T0 + 40 * S, 10 * S);
    const char *devs[] = {"rec-new", "rec-old"};
    ctl_rec_range r = {.channel = 1, .from_us = T0 - 10 * S, .to_us = T0 + 200 * S, .max = 100};
    ctl_rec_list l;
    CHECK(ctl_rec_query_devices(led, NULL, &r, devs, 2, &l) == 0);
    CHECK(l.n == 6 && !l.more);
    for (size_t i = 0; i < l.n && i < 6; i++) {
        CHECK(l.v[i].start_us == T0 + (int64_t)(i < 3 ? i * 10 : 90 + (i - 3) * 10) * S);
        CHECK(l.v[i].dev == (i < 3 ? 1u : 0u));
        CHECK(strstr(l.v[i].path, i < 3 ? "rec-old" : "rec-new"));
    }
    /* Gaps over the merge: before, between the runs, after. */
    ctl_rec_gap g[4];
    CHECK(ctl_rec_gaps(l.v, l.n, r.from_us, r.to_us, CTL_REC_GAP_US, g, 4) == 3);
    CHECK(g[1].from_us == T0 + 30 * S && g[1].to_us == T0 + 90 * S);
    ctl_rec_list_clear(&l);

    /* Pages across the devices. */
    r.max = 2;
    CHECK(ctl_rec_query_devices(led, NULL, &r, devs, 2, &l) == 0);
    CHECK(l.n == 2 && l.more && l.v[1].start_us == T0 + 10 * S);
    r.after_us = l.v[1].start_us;
    ctl_rec_list_clear(&l);
    CHECK(ctl_rec_query_devices(led, NULL, &r, devs, 2, &l) == 0);
    CHECK(l.n == 2 && l.more && l.v[0].start_us == T0 + 20 * S && l.v[1].start_us == T0 + 90 * S &&
          l.v[1].dev == 0);
    r.after_us = l.v[1].start_us;
    ctl_rec_list_clear(&l);
    CHECK(ctl_rec_query_devices(led, NULL, &r, devs, 2, &l) == 0);
    CHECK(l.n == 2 && !l.more && l.v[1].start_us == T0 + 110 * S);
    ctl_rec_list_clear(&l);

    /* Each device's own cutoff: rec-old's keeps its last segment only. */
    cutoff_old = T0 + 15 * S;
    r.after_us = 0;
    r.max = 100;
    r.cutoff = cutoff;
    CHECK(ctl_rec_query_devices(led, NULL, &r, devs, 2, &l) == 0);
    CHECK(l.n == 4 && l.v[0].start_us == T0 + 20 * S && l.v[0].dev == 1);
    ctl_rec_list_clear(&l);

    /* Bad arguments. */
    CHECK(ctl_rec_query_devices(led, NULL, &r, devs, 0, &l) == -EINVAL && l.n == 0);
    CHECK(ctl_rec_query_devices(led, NULL, &r, devs, CTL_REC_DEVICES_MAX + 1, &l) == -EINVAL);
    r.max = 0;
    CHECK(ctl_rec_query_devices(led, NULL, &r, devs, 2, &l) == -EINVAL);
}

int main(void)
{
    if (ledger_fixture_open("test_rec_devices", dir, &led) != 0)
        return 1;
    CHECK(ctl_dir_open(led, &d) == 0);
    if (!d)
        return 1;
    ctl_dir_set_clock(d, fake_clock, NULL);
    test_ids_of();
    test_merge();
    test_query_devices();
    ctl_dir_free(d);
    ledger_fixture_close(dir, led);
    return check_result();
}
