/* Unit tests for controller/fsck.c with a real ledger and store in a temp
 * dir: a consistent state (virtual disks, protection, an eviction, open
 * mode) has no findings; then each way of breaking it is reported with its
 * kind, --repair fixes it, and a second check finds nothing with every sum
 * exact. */
#include "check.h"
#include "common/c2d_fs.h"
#include "common/c2d_hash.h"
#include "controller/fsck.h"
#include "controller/ledger.h"
#include "controller/quota.h"

#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S 1000000LL /* one second in µs */

static ctl_ledger *led;
static char data[256];

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

static MDB_dbi dbi(MDB_txn *t, const char *name)
{
    MDB_dbi d = 0;
    CHECK(mdb_dbi_open(t, name, 0, &d) == 0);
    return d;
}

static void rel_path(char *buf, size_t len, const char *rel)
{
    snprintf(buf, len, "%s/%s", data, rel);
}

static void write_file(const char *rel, size_t size, char fill)
{
    char path[512], dir[512];
    rel_path(path, sizeof(path), rel);
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    CHECK(c2d_mkdirs(dir, 0750) == 0);
    char *buf = malloc(size + 1);
    memset(buf, fill, size);
    CHECK(c2d_write_file_atomic(path, buf, size, 0640) == 0);
    free(buf);
}

static int file_exists(const char *rel)
{
    char path[512];
    struct stat sb;
    rel_path(path, sizeof(path), rel);
    return stat(path, &sb) == 0;
}

static void seg_rel(char *buf, size_t len, const char *dev, uint16_t ch, int64_t t_s)
{
    snprintf(buf, len, "store/%s/%u/%" PRId64 ".ts", dev, ch, (int64_t)(t_s * S));
}

/* Stores a segment as the daemon does: its file, then its record. */
static int seg(const char *dev, uint16_t ch, int64_t t_s, uint64_t size)
{
    ctl_seg_key k;
    ctl_segment_rec r;
    char path[512];
    memset(&r, 0, sizeof(r));
    CHECK(ctl_seg_key_set(&k, dev, ch, t_s * S) == 0);
    seg_rel(r.path, sizeof(r.path), dev, ch, t_s);
    write_file(r.path, size, (char)('a' + t_s % 26));
    rel_path(path, sizeof(path), r.path);
    CHECK(c2d_sha256_file_hex(path, r.sha256) == 0);
    r.duration_us = 10 * S;
    r.size = size;
    r.committed_us = 1;
    return ctl_ledger_commit_segment(led, &k, &r);
}

static int stored(const char *dev, uint16_t ch, int64_t t_s)
{
    ctl_seg_key k;
    ctl_segment_rec r;
    ctl_seg_key_set(&k, dev, ch, t_s * S);
    return ctl_ledger_get_segment(led, &k, &r) == 0;
}

typedef struct {
    uint64_t n; /* findings other than info */
    int kinds[32];
    int info;
    ctl_fsck_stats st;
} result;

/* One check; with repair, repairs and checks again (must be clean). */
static result fsck(int hashes, int repair)
{
    result r;
    memset(&r, 0, sizeof(r));
    ctl_fsck *f = NULL;
    CHECK(ctl_fsck_new(led, data, &f) == 0);
    if (!f)
        return r;
    CHECK(ctl_fsck_check(f, hashes) == 0);
    for (size_t i = 0; i < ctl_fsck_count(f); i++) {
        const ctl_fsck_finding *x = ctl_fsck_get(f, i);
        if (getenv("FSCK_VERBOSE"))
            fprintf(stderr, "  %s %s: %s\n", ctl_fsck_kind_name(x->kind), x->what, x->repair);
        if (x->info) {
            r.info++;
            continue;
        }
        r.n++;
        if ((unsigned)x->kind < 32)
            r.kinds[x->kind]++;
    }
    ctl_fsck_get_stats(f, &r.st);
    CHECK(r.st.findings == r.n);
    if (repair) {
        CHECK(ctl_fsck_repair(f) == 0);
        ctl_fsck_stats st;
        ctl_fsck_get_stats(f, &st);
        CHECK(st.repaired == r.n);
        for (size_t i = 0; i < ctl_fsck_count(f); i++)
            CHECK(ctl_fsck_get(f, i)->info || ctl_fsck_get(f, i)->repaired);
        CHECK(ctl_fsck_check(f, hashes) == 0);
        ctl_fsck_get_stats(f, &st);
        if (st.findings)
            for (size_t i = 0; i < ctl_fsck_count(f); i++)
                fprintf(stderr, "after repair: %s %s\n",
                        ctl_fsck_kind_name(ctl_fsck_get(f, i)->kind), ctl_fsck_get(f, i)->what);
        CHECK(st.findings == 0);
    }
    ctl_fsck_free(f);
    return r;
}

/* Exactly one finding, of kind (and maybe others listed as also). */
static void expect(ctl_fsck_kind kind, int n, int hashes)
{
    result r = fsck(hashes, 0);
    if (r.kinds[kind] != n || r.n != (uint64_t)n)
        fprintf(stderr, "expected %d %s, got %" PRIu64 " findings, %d of that kind\n", n,
                ctl_fsck_kind_name(kind), r.n, r.kinds[kind]);
    CHECK(r.kinds[kind] == n && r.n == (uint64_t)n);
    fsck(hashes, 1);
}

static void expect_clean(void)
{
    result r = fsck(1, 0);
    if (r.n)
        setenv("FSCK_VERBOSE", "1", 1), fsck(1, 0), unsetenv("FSCK_VERBOSE");
    CHECK(r.n == 0);
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

static uint64_t usage_bytes(const char *dev, uint16_t ch)
{
    ctl_usage_rec u = {0, 0};
    int rc = ctl_ledger_get_usage(led, dev, ch, &u);
    CHECK(rc == 0 || rc == -ENOENT);
    return u.bytes;
}

/* The janitor's unlink for a trash whose files are all live again. */
static int never_unlink(void *ud, const ctl_seg_key *key, const char *relpath)
{
    (void)ud;
    (void)key;
    fprintf(stderr, "unexpected unlink of %s\n", relpath);
    CHECK(0);
    return -EIO;
}

static void put_raw(const char *db, const void *k, size_t kn, const void *v, size_t vn)
{
    MDB_txn *t = wtxn();
    MDB_val mk = {kn, (void *)k}, mv = {vn, (void *)v};
    CHECK(mdb_put(t, dbi(t, db), &mk, &mv, 0) == 0);
    commit(t);
}

/* Camera key: device\0 ch BE16. */
static size_t cam_key(uint8_t *buf, const char *dev, uint16_t ch)
{
    size_t n = strlen(dev) + 1;
    memcpy(buf, dev, n);
    buf[n] = (uint8_t)(ch >> 8);
    buf[n + 1] = (uint8_t)ch;
    return n + 2;
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

int main(void)
{
    char dir[] = "/tmp/test_fsck.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    snprintf(data, sizeof(data), "%s/data", dir);
    char path[512], rel[256];
    snprintf(path, sizeof(path), "%s/ledger.lmdb", data);
    CHECK(ctl_ledger_open(path, 64 << 20, 0, &led) == 0);

    /* Empty: nothing. */
    expect_clean();

    /* A consistent state: disk 1 (overwrite, 1000 bytes) with two cameras,
     * a protected range, an eviction (its file in the trash, deleted as
     * the janitor would), and a camera without a disk in open mode. */
    ctl_disk_cfg dc = {1000, 0, CTL_DISK_OVERWRITE, 1};
    ctl_camera_rec c1 = {1, 0, 1};
    MDB_txn *t = wtxn();
    CHECK(ctl_quota_disk_set(led, t, 1, &dc) == 0);
    CHECK(ctl_quota_camera_set(led, t, "rec-a", 1, &c1) == 0);
    CHECK(ctl_quota_camera_set(led, t, "rec-a", 2, &c1) == 0);
    CHECK(ctl_quota_protect(led, t, "rec-a", 2, 0, 20 * S, 7, NULL) == 0);
    commit(t);
    CHECK(seg("rec-a", 1, 0, 200) == 0);
    CHECK(seg("rec-a", 2, 5, 200) == 0);
    CHECK(seg("rec-a", 1, 10, 200) == 0);
    CHECK(seg("rec-a", 1, 20, 200) == 0);
    CHECK(seg("rec-a", 2, 30, 200) == 0);
    CHECK(disk_rec(1).protected_bytes == 200);
    CHECK(seg("rec-a", 1, 40, 200) == 0); /* evicts t=0 (t=5 is protected) */
    CHECK(!stored("rec-a", 1, 0) && stored("rec-a", 2, 5));
    ctl_ledger_set_open_mode(led, 1);
    CHECK(seg("rec-z", 0, 0, 123) == 0);
    CHECK(seg("rec-z", 0, 10, 124) == 0);

    /* The evicted file waits in the trash: reported, deleted on repair. */
    seg_rel(rel, sizeof(rel), "rec-a", 1, 0);
    CHECK(file_exists(rel));
    expect(CTL_FSCK_TRASH_FILE, 1, 0);
    CHECK(!file_exists(rel));
    t = wtxn();
    MDB_stat ts;
    CHECK(mdb_stat(t, dbi(t, "trash"), &ts) == 0 && ts.ms_entries == 0);
    mdb_txn_abort(t);
    expect_clean();
    result r = fsck(1, 0);
    CHECK(r.st.segments == 7 && r.st.files == 7 && r.st.disks == 1);

    /* 1. A deleted file: the record goes, the sums follow. */
    seg_rel(rel, sizeof(rel), "rec-a", 1, 10);
    rel_path(path, sizeof(path), rel);
    CHECK(unlink(path) == 0);
    expect(CTL_FSCK_MISSING_FILE, 1, 0);
    CHECK(!stored("rec-a", 1, 10));
    CHECK(disk_rec(1).used == 800 && disk_rec(1).segments == 4);
    CHECK(usage_bytes("rec-a", 1) == 400);

    /* A truncated file: record deleted, file in quarantine/. */
    seg_rel(rel, sizeof(rel), "rec-a", 1, 20);
    rel_path(path, sizeof(path), rel);
    CHECK(truncate(path, 100) == 0);
    expect(CTL_FSCK_WRONG_SIZE, 1, 0);
    CHECK(!stored("rec-a", 1, 20) && !file_exists(rel));
    snprintf(path, sizeof(path), "quarantine/%s", rel);
    CHECK(file_exists(path));
    CHECK(disk_rec(1).used == 600 && usage_bytes("rec-a", 1) == 200);

    /* Same size, other bytes: only --hashes sees it. A protected segment:
     * the protected bytes follow. */
    seg_rel(rel, sizeof(rel), "rec-a", 2, 5);
    write_file(rel, 200, 'X');
    r = fsck(0, 0);
    CHECK(r.n == 0);
    expect(CTL_FSCK_WRONG_HASH, 1, 1);
    CHECK(!stored("rec-a", 2, 5));
    CHECK(disk_rec(1).protected_bytes == 0 && disk_rec(1).used == 400);

    /* Orphans: a well-named file without a record, and a stray name (a
     * second copy goes to quarantine under another name). */
    write_file("store/rec-a/1/999.ts", 10, 'o');
    write_file("store/junk", 10, 'o');
    write_file("quarantine/store/junk", 3, 'q');
    expect(CTL_FSCK_ORPHAN_FILE, 2, 0);
    CHECK(!file_exists("store/junk") && file_exists("quarantine/store/junk.1"));
    CHECK(file_exists("quarantine/store/rec-a/1/999.ts"));

    /* An open-mode camera's usage (disk 0's disk_cams) written wrong. */
    uint8_t k[128], v[24];
    be64(k, 0);
    size_t kn = 8 + cam_key(k + 8, "rec-z", 0);
    be64(v, 5);
    be64(v + 8, 1);
    be64(v + 16, 0);
    put_raw("disks", k, kn, v, 24);
    expect(CTL_FSCK_DISK_CAMS, 1, 0);
    CHECK(usage_bytes("rec-z", 0) == 247);
    /* A usage record of a camera without segments. */
    kn = 8 + cam_key(k + 8, "rec-q", 3);
    put_raw("disks", k, kn, v, 24);
    expect(CTL_FSCK_DISK_CAMS, 1, 0);
    /* One that does not decode (the old 16-byte layout). */
    put_raw("disks", k, kn, v, 16);
    expect(CTL_FSCK_DISK_CAMS, 1, 0);

    /* disk_cams written wrong. */
    be64(k, 1);
    kn = 8 + cam_key(k + 8, "rec-a", 1);
    put_raw("disks", k, kn, v, 24);
    expect(CTL_FSCK_DISK_CAMS, 1, 0);

    /* A wrong head (where eviction starts looking): right sums, wrong
     * oldest start; restored to the oldest segment's. */
    CHECK(seg("rec-a", 2, 50, 100) == 0);
    CHECK(disk_rec(1).protected_bytes == 0);
    be64(k, 1);
    kn = 8 + cam_key(k + 8, "rec-a", 2);
    be64(v, 300);
    be64(v + 8, 2);
    be64(v + 16, 50 * S);
    put_raw("disks", k, kn, v, 24);
    expect(CTL_FSCK_DISK_CAMS, 1, 0);
    t = wtxn();
    int64_t oldest = 0, newest = 0;
    CHECK(ctl_quota_disk_span(led, t, 1, &oldest, &newest) == 0);
    mdb_txn_abort(t);
    CHECK(oldest == 30 * S && newest == 50 * S);
    CHECK(disk_rec(1).used == 500 && disk_rec(1).segments == 3);

    /* A trash entry naming a recorded file (the segment was sent again
     * after its eviction): info; the janitor drops it and keeps the file. */
    seg_rel(rel, sizeof(rel), "rec-a", 2, 50);
    uint8_t tk[8], tv[1 + 128 + 128];
    be64(tk, 999);
    tv[0] = (uint8_t)(cam_key(tv + 1, "rec-a", 2) + 8);
    be64(tv + 1 + tv[0] - 8, 50 * S);
    memcpy(tv + 1 + tv[0], rel, strlen(rel));
    put_raw("trash", tk, 8, tv, 1 + tv[0] + strlen(rel));
    r = fsck(0, 0);
    CHECK(r.n == 0 && r.info == 1);
    size_t gone = 0;
    CHECK(ctl_quota_empty_trash(led, 100, never_unlink, NULL, &gone) == 0 && gone == 0);
    CHECK(file_exists(rel) && stored("rec-a", 2, 50));
    t = wtxn();
    CHECK(mdb_stat(t, dbi(t, "trash"), &ts) == 0 && ts.ms_entries == 0);
    mdb_txn_abort(t);
    /* A trash entry that does not decode: dropped. */
    put_raw("trash", tk, 8, "x", 1);
    expect(CTL_FSCK_TRASH_LIVE, 1, 0);

    /* Partials: a record without its file (dropped), a file without its
     * record (quarantine/), and one upload in progress (fine). */
    ctl_seg_key pk;
    ctl_partial_rec pr;
    memset(&pr, 0, sizeof(pr));
    memset(pr.sha256, 'b', 64);
    pr.size = 10;
    CHECK(ctl_seg_key_set(&pk, "rec-a", 1, 60 * S) == 0);
    CHECK(ctl_ledger_put_partial(led, &pk, &pr) == 0);
    expect(CTL_FSCK_PARTIAL_NO_FILE, 1, 0);
    CHECK(ctl_ledger_get_partial(led, &pk, &pr) == -ENOENT);
    write_file("partial/rec-a/1-70000000.part", 5, 'p');
    expect(CTL_FSCK_PARTIAL_NO_RECORD, 1, 0);
    CHECK(file_exists("quarantine/partial/rec-a/1-70000000.part"));
    CHECK(ctl_ledger_put_partial(led, &pk, &pr) == 0);
    write_file("partial/rec-a/1-60000000.part", 5, 'p');
    expect_clean();

    /* An interrupted commit (file stored, partial record, no segment
     * record): info only, left for start-up recovery. */
    rel_path(path, sizeof(path), "partial/rec-a/1-60000000.part");
    CHECK(unlink(path) == 0);
    write_file("store/rec-a/1/60000000.ts", 10, 'c');
    r = fsck(0, 0);
    CHECK(r.n == 0 && r.info == 1);
    fsck(0, 1);
    CHECK(file_exists("store/rec-a/1/60000000.ts"));
    CHECK(ctl_ledger_del_partial(led, &pk) == 0);
    expect(CTL_FSCK_ORPHAN_FILE, 1, 0);

    /* A disk record's segments count written wrong. */
    be64(k, 1);
    t = wtxn();
    MDB_val mk = {8, k}, mv;
    CHECK(mdb_get(t, dbi(t, "disks"), &mk, &mv) == 0);
    uint8_t disk_raw[64];
    size_t dn = mv.mv_size < sizeof(disk_raw) ? mv.mv_size : sizeof(disk_raw);
    memcpy(disk_raw, mv.mv_data, dn);
    mdb_txn_abort(t);
    disk_raw[dn - 9] ^= 1; /* the low byte of the segments count */
    put_raw("disks", k, 8, disk_raw, dn);
    expect(CTL_FSCK_DISK_SUMS, 1, 0);
    CHECK(disk_rec(1).used == 500 && disk_rec(1).segments == 3);

    /* A segment on a disk that no longer exists: record goes, file to
     * quarantine. */
    ctl_disk_cfg dc2 = {1000, 0, CTL_DISK_OVERWRITE, 1};
    ctl_camera_rec c2 = {2, 0, 1};
    t = wtxn();
    CHECK(ctl_quota_disk_set(led, t, 2, &dc2) == 0);
    CHECK(ctl_quota_camera_set(led, t, "rec-b", 0, &c2) == 0);
    commit(t);
    CHECK(seg("rec-b", 0, 0, 100) == 0);
    expect_clean();
    be64(k, 2);
    t = wtxn();
    mk.mv_size = 8;
    CHECK(mdb_del(t, dbi(t, "disks"), &mk, NULL) == 0);
    commit(t);
    r = fsck(0, 0);
    CHECK(r.kinds[CTL_FSCK_UNKNOWN_DISK] == 1);
    fsck(0, 1);
    CHECK(!stored("rec-b", 0, 0) && file_exists("quarantine/store/rec-b/0/0.ts"));

    /* Everything exact at the end. */
    expect_clean();
    CHECK(usage_bytes("rec-a", 1) == 200 && usage_bytes("rec-a", 2) == 300);
    CHECK(usage_bytes("rec-z", 0) == 247 && usage_bytes("rec-b", 0) == 0);

    ctl_ledger_free(led);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_result();
}
