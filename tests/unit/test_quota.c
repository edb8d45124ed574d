/* Unit tests for controller/quota.c with a real LMDB ledger in a temp dir:
 * overwrite evicts exactly the oldest unprotected segments, stop refuses
 * and accepts again when capacity is raised, backup off and no disk are
 * refused, camera caps, protection and its bound, retention, shrinking,
 * deleting a disk, and the sums (disk = its cameras = its segments) after
 * every step. */
#include "check.h"
#include "controller/ledger.h"
#include "controller/quota.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S 1000000LL /* one second in µs */

static ctl_ledger *led;

static MDB_txn *wtxn(void)
{
    MDB_txn *t = NULL;
    CHECK(mdb_txn_begin(ctl_ledger_env(led), NULL, 0, &t) == 0);
    return t;
}

static void commit(MDB_txn *t)
{
    CHECK(mdb_txn_commit(t) == 0);
}

static void disk(uint64_t id, uint64_t cap, int64_t ret_s, ctl_disk_policy pol)
{
    ctl_disk_cfg c = {cap, ret_s * S, pol, 1};
    MDB_txn *t = wtxn();
    CHECK(ctl_quota_disk_set(led, t, id, &c) == 0);
    commit(t);
}

static void camera(const char *dev, uint16_t ch, uint64_t d, uint64_t cap, int backup)
{
    ctl_camera_rec c = {d, cap, backup};
    MDB_txn *t = wtxn();
    CHECK(ctl_quota_camera_set(led, t, dev, ch, &c) == 0);
    commit(t);
}

/* Commits a segment of size bytes, 10 s long, starting at t_s seconds. */
static int seg(const char *dev, uint16_t ch, int64_t t_s, uint64_t size)
{
    ctl_seg_key k;
    ctl_segment_rec r;
    memset(&r, 0, sizeof(r));
    CHECK(ctl_seg_key_set(&k, dev, ch, t_s * S) == 0);
    r.duration_us = 10 * S;
    r.size = size;
    memset(r.sha256, 'a', 64);
    r.committed_us = 1;
    snprintf(r.path, sizeof(r.path), "store/%s/%u/%lld.ts", dev, ch, (long long)(t_s * S));
    return ctl_ledger_commit_segment(led, &k, &r);
}

static int stored(const char *dev, uint16_t ch, int64_t t_s)
{
    ctl_seg_key k;
    ctl_segment_rec r;
    ctl_seg_key_set(&k, dev, ch, t_s * S);
    return ctl_ledger_get_segment(led, &k, &r) == 0;
}

static ctl_disk_rec disk_rec(uint64_t id)
{
    ctl_disk_rec d;
    memset(&d, 0, sizeof(d));
    MDB_txn *t = wtxn();
    CHECK(ctl_quota_disk_get(led, t, id, &d) == 0);
    mdb_txn_abort(t);
    return d;
}

typedef struct {
    uint64_t bytes, segs;
} sums;

static int sum_cam(void *ud, const ctl_disk_camera *c)
{
    sums *s = ud;
    s->bytes += c->bytes;
    s->segs += c->segments;
    return 0;
}

typedef struct {
    uint64_t disk, bytes, segs;
} seg_sum;

static int sum_seg(void *ud, const ctl_seg_key *k, const ctl_segment_rec *r)
{
    (void)k;
    seg_sum *s = ud;
    if (r->disk_id == s->disk) {
        s->bytes += r->size;
        s->segs++;
    }
    return 0;
}

/* disk used = sum of its cameras = sum of its segment records. */
static void check_sums(uint64_t id)
{
    ctl_disk_rec d = disk_rec(id);
    sums c = {0, 0};
    MDB_txn *t = wtxn();
    CHECK(ctl_quota_disk_cameras(led, t, id, sum_cam, &c) == 0);
    mdb_txn_abort(t);
    seg_sum s = {id, 0, 0};
    CHECK(ctl_ledger_foreach_segment(led, sum_seg, &s) == 0);
    if (d.used != c.bytes || c.bytes != s.bytes || d.segments != c.segs || c.segs != s.segs)
        fprintf(stderr, "disk %llu: used %llu/%llu cameras %llu/%llu segments %llu/%llu\n",
                (unsigned long long)id, (unsigned long long)d.used, (unsigned long long)d.segments,
                (unsigned long long)c.bytes, (unsigned long long)c.segs,
                (unsigned long long)s.bytes, (unsigned long long)s.segs);
    CHECK(d.used == c.bytes && c.bytes == s.bytes);
    CHECK(d.segments == c.segs && c.segs == s.segs);
    CHECK(d.used <= d.cfg.capacity || d.cfg.policy == CTL_DISK_STOP || d.protected_bytes > 0);
}

static int count_trash(void *ud, const ctl_seg_key *key, const char *p)
{
    (void)key;
    (void)p;
    ++*(int *)ud;
    return 0;
}

static int trash(void)
{
    int n = 0;
    size_t done = 0;
    CHECK(ctl_quota_empty_trash(led, 1000, count_trash, &n, &done) == 0);
    CHECK((size_t)n == done);
    return n;
}

static void protect(const char *dev, uint16_t ch, int64_t from_s, int64_t to_s, uint64_t owner,
                    int want)
{
    MDB_txn *t = wtxn();
    int rc = ctl_quota_protect(led, t, dev, ch, from_s * S, to_s * S, owner, NULL);
    if (rc != want)
        fprintf(stderr, "protect %lld..%lld: %d, want %d\n", (long long)from_s, (long long)to_s, rc,
                want);
    CHECK(rc == want);
    if (rc == 0)
        commit(t);
    else
        mdb_txn_abort(t);
}

int main(void)
{
    char dir[] = "/tmp/test_quota.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof(path), "%s/ledger", dir);
    CHECK(ctl_ledger_open(path, 64 << 20, 0, &led) == 0);

    /* No disk: refused, unless open mode. */
    CHECK(seg("rec-a", 1, 0, 100) == -ENODEV);
    ctl_ledger_set_open_mode(led, 1);
    CHECK(seg("rec-z", 1, 0, 100) == 0);
    ctl_ledger_set_open_mode(led, 0);

    /* Overwrite: capacity 1000, segments of 300 bytes. */
    disk(1, 1000, 0, CTL_DISK_OVERWRITE);
    camera("rec-a", 1, 1, 0, 1);
    camera("rec-a", 2, 1, 0, 1);
    ctl_seg_key pk;
    ctl_seg_key_set(&pk, "rec-a", 1, 0);
    CHECK(ctl_ledger_precheck(led, &pk, 300) == 0);
    CHECK(seg("rec-a", 1, 0, 300) == 0);
    CHECK(seg("rec-a", 2, 5, 300) == 0);
    CHECK(seg("rec-a", 1, 10, 300) == 0);
    CHECK(seg("rec-a", 1, 10, 300) == -EEXIST);
    check_sums(1);
    CHECK(disk_rec(1).used == 900);
    /* The fourth evicts exactly the oldest (t=0), on whichever camera. */
    CHECK(seg("rec-a", 2, 15, 300) == 0);
    CHECK(!stored("rec-a", 1, 0) && stored("rec-a", 2, 5) && stored("rec-a", 1, 10));
    CHECK(disk_rec(1).used == 900 && disk_rec(1).segments == 3);
    CHECK(trash() == 1);
    check_sums(1);
    /* A segment bigger than the disk never fits; an older one than all the
     * disk holds does not evict newer video. */
    CHECK(seg("rec-a", 1, 20, 1001) == -EDQUOT);
    CHECK(seg("rec-a", 1, 1, 300) == -EDQUOT);
    check_sums(1);

    /* Backup off. */
    camera("rec-a", 2, 1, 0, 0);
    CHECK(seg("rec-a", 2, 30, 10) == -EACCES);
    ctl_seg_key_set(&pk, "rec-a", 2, 30 * S);
    CHECK(ctl_ledger_precheck(led, &pk, 10) == -EACCES);
    camera("rec-a", 2, 1, 0, 1);

    /* Protection: the oldest (t=5 on ch 2) is protected, so t=10 goes. */
    protect("rec-a", 2, 5, 6, 100, 0);
    CHECK(disk_rec(1).protected_bytes == 300);
    CHECK(seg("rec-a", 1, 40, 300) == 0);
    CHECK(stored("rec-a", 2, 5) && !stored("rec-a", 1, 10));
    check_sums(1);
    /* Bound: half the capacity (500) at most. */
    protect("rec-a", 2, 15, 16, 101, -EDQUOT);
    CHECK(disk_rec(1).protected_bytes == 300);
    protect("rec-a", 2, 5, 6, 100, -EEXIST);
    /* Unprotect: t=5 is evictable again. */
    {
        MDB_txn *t = wtxn();
        CHECK(ctl_quota_unprotect(led, t, "rec-a", 2, 5 * S, 6 * S, 100) == 0);
        commit(t);
    }
    CHECK(disk_rec(1).protected_bytes == 0);
    CHECK(seg("rec-a", 1, 50, 300) == 0);
    CHECK(!stored("rec-a", 2, 5));
    check_sums(1);
    trash();

    /* Stop: refused when full, accepted once the capacity is raised. */
    disk(2, 600, 0, CTL_DISK_STOP);
    camera("rec-b", 1, 2, 0, 1);
    CHECK(seg("rec-b", 1, 0, 300) == 0);
    CHECK(seg("rec-b", 1, 10, 300) == 0);
    ctl_seg_key_set(&pk, "rec-b", 1, 20 * S);
    CHECK(ctl_ledger_precheck(led, &pk, 300) == -EDQUOT);
    CHECK(seg("rec-b", 1, 20, 300) == -EDQUOT);
    CHECK(stored("rec-b", 1, 0) && !stored("rec-b", 1, 20));
    disk(2, 900, 0, CTL_DISK_STOP);
    CHECK(seg("rec-b", 1, 20, 300) == 0);
    check_sums(2);
    /* Shrinking a stop disk evicts nothing; it stays full. */
    disk(2, 300, 0, CTL_DISK_STOP);
    CHECK(disk_rec(2).used == 900);
    CHECK(seg("rec-b", 1, 30, 10) == -EDQUOT);
    /* An inactive disk refuses. */
    {
        ctl_disk_cfg c = {900, 0, CTL_DISK_STOP, 0};
        MDB_txn *t = wtxn();
        CHECK(ctl_quota_disk_set(led, t, 2, &c) == 0);
        commit(t);
    }
    CHECK(seg("rec-b", 1, 30, 10) == -ENODEV);

    /* Camera cap: camera 3 may use 400 of disk 3's 10000. */
    disk(3, 10000, 0, CTL_DISK_OVERWRITE);
    camera("rec-c", 1, 3, 400, 1);
    camera("rec-c", 2, 3, 0, 1);
    CHECK(seg("rec-c", 2, 0, 200) == 0);
    CHECK(seg("rec-c", 1, 1, 200) == 0);
    CHECK(seg("rec-c", 1, 11, 200) == 0);
    CHECK(seg("rec-c", 1, 21, 200) == 0); /* evicts camera 1's oldest, not camera 2's */
    CHECK(stored("rec-c", 2, 0) && !stored("rec-c", 1, 1) && stored("rec-c", 1, 11));
    check_sums(3);
    /* Lowering the cap evicts at once. */
    camera("rec-c", 1, 3, 200, 1);
    CHECK(!stored("rec-c", 1, 11) && stored("rec-c", 1, 21));
    check_sums(3);

    /* Shrinking an overwrite disk evicts the oldest. */
    disk(3, 200, 0, CTL_DISK_OVERWRITE);
    CHECK(disk_rec(3).used <= 200);
    CHECK(!stored("rec-c", 2, 0) && stored("rec-c", 1, 21));
    check_sums(3);

    /* Retention: 100 s. A segment is removed once all of it is older. */
    disk(4, 100000, 100, CTL_DISK_OVERWRITE);
    camera("rec-d", 1, 4, 0, 1);
    for (int i = 0; i < 10; i++)
        CHECK(seg("rec-d", 1, i * 10, 50) == 0);
    size_t removed = 0;
    CHECK(ctl_quota_sweep(led, 150 * S, 1000, &removed) == 0);
    CHECK(removed == 5); /* t=0..40 end by 50 = now - retention; t=50 ends at 60 */
    CHECK(!stored("rec-d", 1, 40) && stored("rec-d", 1, 50));
    MDB_txn *t = wtxn();
    CHECK(ctl_quota_cutoff(led, t, "rec-d", 1, 150 * S) == 50 * S);
    CHECK(ctl_quota_cutoff(led, t, "rec-a", 1, 150 * S) == INT64_MIN);
    int64_t oldest, newest;
    CHECK(ctl_quota_disk_span(led, t, 4, &oldest, &newest) == 0);
    CHECK(oldest == 50 * S && newest == 90 * S);
    mdb_txn_abort(t);
    CHECK(ctl_quota_sweep(led, 155 * S, 2, &removed) == 0 && removed == 0);
    CHECK(ctl_quota_sweep(led, 160 * S, 2, &removed) == 0 && removed == 1); /* t=50 ends 60 */
    check_sums(4);

    /* Deleting a disk removes its segments and cameras. */
    t = wtxn();
    CHECK(ctl_quota_disk_del(led, t, 4) == 0);
    commit(t);
    CHECK(!stored("rec-d", 1, 90));
    CHECK(seg("rec-d", 1, 200, 10) == -ENODEV);
    t = wtxn();
    ctl_camera_rec cam;
    CHECK(ctl_quota_camera_get(led, t, "rec-d", 1, &cam) == -ENOENT);
    ctl_disk_rec dr;
    CHECK(ctl_quota_disk_get(led, t, 4, &dr) == -ENOENT);
    mdb_txn_abort(t);
    CHECK(trash() > 0);

    ctl_ledger_free(led);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_result();
}
