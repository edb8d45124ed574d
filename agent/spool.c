/* The agent's spool: segment files plus an LMDB queue (see spool.h).
 *
 * LMDB databases:
 *   queue      key: channel BE16 + (start_us with the sign bit flipped) BE64,
 *              so keys sort by channel then start time, negative starts
 *              included; value: version, duration, size, sha256 hex.
 *   checkpoint key: channel BE16; value: the channel's opaque bytes.
 *   meta       key: counter name; value: BE64. The queue totals (kept in the
 *              same transactions as the queue, recomputed at open) and the
 *              persisted drop counters.
 *
 * LMDB serialises write transactions itself and read transactions may run
 * concurrently (MDB_NOTLS lets any thread use any read transaction). Two
 * locks of our own: the one behind agent_spool_wait, and pin_lock around
 * the pin table. Pins are added inside a write transaction (after checking
 * the record exists) and eviction reads them inside its write transaction,
 * so a segment is either pinned before an eviction looks or was already
 * gone when the pin was asked for; lock order: write transaction, then
 * pin_lock. */
#include "agent/spool.h"
#include "common/c2d_lmdb.h"

#include "common/c2d_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Queue records are ~100 bytes with LMDB's overhead, checkpoints at most
 * AGENT_CHECKPOINT_MAX per channel: 64 MiB holds hundreds of thousands of
 * segments, far more than any spool size in bytes allows. Only address
 * space; pages are touched as used. */
#define SPOOL_MAP_BYTES (64u << 20)

#define SPOOL_DIR_MODE 0750
#define SPOOL_FILE_MODE 0640

#define QKEY_LEN 10
#define REC_VERSION 1
#define REC_LEN (1 + 8 + 8 + 64)

#define META_QUEUED_SEGMENTS "queued_segments"
#define META_QUEUED_BYTES "queued_bytes"
#define META_DROPPED_SEGMENTS "dropped_segments"
#define META_DROPPED_BYTES "dropped_bytes"
#define META_LOST_SEGMENTS "lost_segments"

struct agent_spool {
    MDB_env *env;
    MDB_dbi queue, checkpoint, meta;
    uint64_t max_bytes;
    char root[PATH_MAX]; /* state_dir/spool */
    char tmp[PATH_MAX];  /* state_dir/spool/tmp */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t commits; /* bumped on every commit, under lock */
    uint64_t seen;    /* commits already reported by agent_spool_wait */
    pthread_mutex_t pin_lock;
    struct spool_ref *pins; /* unordered; a few per channel */
    size_t n_pins, cap_pins;
};

/* A queued segment's key fields. */
typedef struct spool_ref {
    uint16_t ch;
    int64_t start_us;
} spool_ref;

/* Evicted segments, for the file deletions and reports after a commit. */
typedef struct {
    agent_segment *v;
    size_t n, cap;
} spool_refs;

/* ---- encoding helpers ---------------------------------------------------- */

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void qkey_encode(uint8_t k[QKEY_LEN], uint16_t ch, int64_t start_us)
{
    k[0] = (uint8_t)(ch >> 8);
    k[1] = (uint8_t)ch;
    put_be64(k + 2, (uint64_t)start_us ^ (UINT64_C(1) << 63));
}

static void qkey_decode(const MDB_val *k, uint16_t *ch, int64_t *start_us)
{
    const uint8_t *p = k->mv_data;
    *ch = (uint16_t)((p[0] << 8) | p[1]);
    *start_us = (int64_t)(get_be64(p + 2) ^ (UINT64_C(1) << 63));
}

static void rec_encode(uint8_t r[REC_LEN], const agent_segment *seg)
{
    r[0] = REC_VERSION;
    put_be64(r + 1, (uint64_t)seg->duration_us);
    put_be64(r + 9, seg->size);
    memcpy(r + 17, seg->sha256, 64);
}

static int rec_decode(const MDB_val *k, const MDB_val *v, agent_segment *out)
{
    const uint8_t *r = v->mv_data;
    if (k->mv_size != QKEY_LEN || v->mv_size != REC_LEN || r[0] != REC_VERSION)
        return -EIO;
    qkey_decode(k, &out->channel, &out->start_us);
    out->duration_us = (int64_t)get_be64(r + 1);
    out->size = get_be64(r + 9);
    memcpy(out->sha256, r + 17, 64);
    out->sha256[64] = '\0';
    return 0;
}

static int refs_push(spool_refs *r, const agent_segment *seg)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        agent_segment *v = realloc(r->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = *seg;
    return 0;
}

/* ---- pins (callers hold pin_lock) ---------------------------------------- */

static ssize_t pin_find(const agent_spool *sp, uint16_t ch, int64_t start_us)
{
    for (size_t i = 0; i < sp->n_pins; i++)
        if (sp->pins[i].ch == ch && sp->pins[i].start_us == start_us)
            return (ssize_t)i;
    return -1;
}

static void pin_drop(agent_spool *sp, uint16_t ch, int64_t start_us)
{
    ssize_t i = pin_find(sp, ch, start_us);
    if (i >= 0)
        sp->pins[i] = sp->pins[--sp->n_pins];
}

/* ---- meta counters ------------------------------------------------------- */

static int meta_get(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *out)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rc != 0)
        return c2d_mdb_errno(rc);
    if (v.mv_size != 8)
        return -EIO;
    *out = get_be64(v.mv_data);
    return 0;
}

static int meta_put(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t val)
{
    uint8_t buf[8];
    put_be64(buf, val);
    MDB_val k = {strlen(name), (void *)name}, v = {sizeof(buf), buf};
    return c2d_mdb_errno(mdb_put(txn, dbi, &k, &v, 0));
}

/* Adds (possibly negative) deltas to a counter. */
static int meta_add(MDB_txn *txn, MDB_dbi dbi, const char *name, int64_t delta)
{
    uint64_t cur;
    int rc = meta_get(txn, dbi, name, &cur);
    if (rc != 0)
        return rc;
    if (delta < 0 && (uint64_t)(-delta) > cur)
        cur = 0; /* never wrap; recomputed at open anyway */
    else
        cur += (uint64_t)delta;
    return meta_put(txn, dbi, name, cur);
}

/* ---- paths --------------------------------------------------------------- */

static int seg_path(const agent_spool *sp, uint16_t ch, int64_t start_us, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%u/%" PRId64 ".ts", sp->root, (unsigned)ch, start_us);
    return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

static int ch_dir(const agent_spool *sp, uint16_t ch, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%u", sp->root, (unsigned)ch);
    return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

/* ---- queue scans --------------------------------------------------------- */

/* Finds the queued segment with the smallest start of all channels (ties:
 * lowest channel). With sp, pinned segments (sp->pin_lock held) and spare
 * (if not NULL) are passed over. The queue is ordered by channel first, so
 * this visits the first eligible record of each channel: one cursor jump
 * per channel plus one step per segment passed over (a few per channel). */
static int find_oldest(MDB_txn *txn, MDB_dbi dbi, const agent_spool *sp, const spool_ref *spare,
                       agent_segment *out)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return c2d_mdb_errno(rc);
    MDB_val k, v;
    int found = 0;
    agent_segment best = {0};
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        agent_segment s;
        int drc = rec_decode(&k, &v, &s);
        if (drc != 0) {
            mdb_cursor_close(cur);
            return drc;
        }
        if (sp && ((spare && spare->ch == s.channel && spare->start_us == s.start_us) ||
                   pin_find(sp, s.channel, s.start_us) >= 0)) {
            rc =
                mdb_cursor_get(cur, &k, &v, MDB_NEXT); /* the channel's next, or the next's first */
            continue;
        }
        if (!found || s.start_us < best.start_us) {
            best = s;
            found = 1;
        }
        if (s.channel == UINT16_MAX)
            break;
        uint8_t next[QKEY_LEN];
        qkey_encode(next, (uint16_t)(s.channel + 1), INT64_MIN);
        k.mv_size = sizeof(next);
        k.mv_data = next;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return c2d_mdb_errno(rc);
    if (!found)
        return -ENOENT;
    *out = best;
    return 0;
}

/* Drops the oldest segments, neither pinned nor spare (the one just
 * committed, if not NULL), while the queue is over max_bytes; if only those
 * are left, the queue stays over. Records are deleted in txn; the segments
 * are listed in dropped for deletion after the commit (a crash in between
 * leaves files without records, which open deletes). */
static int evict(agent_spool *sp, MDB_txn *txn, const spool_ref *spare, spool_refs *dropped,
                 uint64_t *drop_bytes)
{
    uint64_t bytes, segs;
    int rc = meta_get(txn, sp->meta, META_QUEUED_BYTES, &bytes);
    if (rc == 0)
        rc = meta_get(txn, sp->meta, META_QUEUED_SEGMENTS, &segs);
    uint64_t nseg = 0, nbytes = 0;
    pthread_mutex_lock(&sp->pin_lock);
    while (rc == 0 && bytes > sp->max_bytes && segs > 0) {
        agent_segment old;
        rc = find_oldest(txn, sp->queue, sp, spare, &old);
        if (rc == -ENOENT) {
            rc = 0; /* only pinned segments (and spare) left */
            break;
        }
        if (rc != 0)
            break;
        uint8_t kb[QKEY_LEN];
        qkey_encode(kb, old.channel, old.start_us);
        MDB_val k = {sizeof(kb), kb};
        rc = c2d_mdb_errno(mdb_del(txn, sp->queue, &k, NULL));
        if (rc == 0)
            rc = refs_push(dropped, &old);
        bytes = old.size > bytes ? 0 : bytes - old.size;
        segs--;
        nseg++;
        nbytes += old.size;
    }
    pthread_mutex_unlock(&sp->pin_lock);
    if (rc == 0 && nseg > 0) {
        rc = meta_put(txn, sp->meta, META_QUEUED_BYTES, bytes);
        if (rc == 0)
            rc = meta_put(txn, sp->meta, META_QUEUED_SEGMENTS, segs);
        if (rc == 0)
            rc = meta_add(txn, sp->meta, META_DROPPED_SEGMENTS, (int64_t)nseg);
        if (rc == 0)
            rc = meta_add(txn, sp->meta, META_DROPPED_BYTES, (int64_t)nbytes);
    }
    if (rc == 0 && drop_bytes)
        *drop_bytes = nbytes;
    return rc;
}

static void unlink_refs(agent_spool *sp, const spool_refs *r)
{
    for (size_t i = 0; i < r->n; i++) {
        char path[PATH_MAX];
        if (seg_path(sp, r->v[i].channel, r->v[i].start_us, path, sizeof(path)) == 0)
            unlink(path);
    }
}

/* ---- recovery ------------------------------------------------------------ */

static void clean_tmp(agent_spool *sp)
{
    DIR *d = opendir(sp->tmp);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

/* Parses a decimal number that must make up the whole string. */
static int parse_i64(const char *s, const char *end, int64_t *out)
{
    if (s == end)
        return -1;
    char buf[32];
    size_t n = (size_t)(end - s);
    if (n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *e;
    errno = 0;
    long long v = strtoll(buf, &e, 10);
    if (errno != 0 || *e != '\0' || !(buf[0] == '-' || (buf[0] >= '0' && buf[0] <= '9')))
        return -1;
    *out = v;
    return 0;
}

/* Deletes segment files ({ch}/{start}.ts) that have no queue record. */
static int remove_orphans(agent_spool *sp, MDB_txn *txn)
{
    DIR *d = opendir(sp->root);
    if (!d)
        return -errno;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t ch;
        const char *name = e->d_name;
        if (parse_i64(name, name + strlen(name), &ch) != 0 || ch < 0 || ch > UINT16_MAX)
            continue; /* tmp/ and anything that is not a channel directory */
        char dir[PATH_MAX];
        if (ch_dir(sp, (uint16_t)ch, dir, sizeof(dir)) != 0)
            continue;
        DIR *cd = opendir(dir);
        if (!cd)
            continue;
        struct dirent *f;
        while ((f = readdir(cd)) != NULL) {
            size_t n = strlen(f->d_name);
            if (n < 4 || strcmp(f->d_name + n - 3, ".ts") != 0)
                continue;
            int64_t start;
            int keep = 0;
            if (parse_i64(f->d_name, f->d_name + n - 3, &start) == 0) {
                uint8_t kb[QKEY_LEN];
                qkey_encode(kb, (uint16_t)ch, start);
                MDB_val k = {sizeof(kb), kb}, v;
                keep = mdb_get(txn, sp->queue, &k, &v) == 0;
            }
            if (!keep)
                unlinkat(dirfd(cd), f->d_name, 0);
        }
        closedir(cd);
    }
    closedir(d);
    return 0;
}

/* Drops records whose file is missing or has another size, recomputes the
 * queue totals, deletes orphan files, then applies max_bytes. */
static int recover(agent_spool *sp)
{
    clean_tmp(sp);

    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(sp->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    MDB_cursor *cur = NULL;
    rc = c2d_mdb_errno(mdb_cursor_open(txn, sp->queue, &cur));
    uint64_t segs = 0, bytes = 0, lost = 0;
    MDB_val k, v;
    int grc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : MDB_NOTFOUND;
    while (rc == 0 && grc == 0) {
        agent_segment s;
        char path[PATH_MAX];
        struct stat st;
        int bad = rec_decode(&k, &v, &s) != 0 ||
                  seg_path(sp, s.channel, s.start_us, path, sizeof(path)) != 0 ||
                  stat(path, &st) != 0 || (uint64_t)st.st_size != s.size;
        if (bad) {
            rc = c2d_mdb_errno(mdb_cursor_del(cur, 0));
            lost++;
            /* after a delete, MDB_NEXT yields the record that followed */
            grc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_NEXT) : MDB_NOTFOUND;
            continue;
        }
        segs++;
        bytes += s.size;
        grc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur)
        mdb_cursor_close(cur);
    if (rc == 0 && grc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(grc);
    if (rc == 0)
        rc = meta_put(txn, sp->meta, META_QUEUED_SEGMENTS, segs);
    if (rc == 0)
        rc = meta_put(txn, sp->meta, META_QUEUED_BYTES, bytes);
    if (rc == 0 && lost > 0)
        rc = meta_add(txn, sp->meta, META_LOST_SEGMENTS, (int64_t)lost);
    spool_refs dropped = {0};
    if (rc == 0)
        rc = evict(sp, txn, NULL, &dropped, NULL);
    if (rc == 0)
        rc = remove_orphans(sp, txn);
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_txn_commit(txn));
    else
        mdb_txn_abort(txn);
    if (rc == 0)
        unlink_refs(sp, &dropped);
    free(dropped.v);
    return rc;
}

/* ---- public API ---------------------------------------------------------- */

int agent_spool_open(const char *state_dir, uint64_t max_bytes, agent_spool **out)
{
    agent_spool *sp = calloc(1, sizeof(*sp));
    if (!sp)
        return -ENOMEM;
    int rc = 0;
    char dbdir[PATH_MAX];
    sp->max_bytes = max_bytes;
    pthread_mutex_init(&sp->lock, NULL);
    pthread_mutex_init(&sp->pin_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sp->cond, &ca);
    pthread_condattr_destroy(&ca);

    if ((rc = c2d_path_join(sp->root, sizeof(sp->root), state_dir, "spool")) != 0 ||
        (rc = c2d_path_join(sp->tmp, sizeof(sp->tmp), sp->root, "tmp")) != 0 ||
        (rc = c2d_path_join(dbdir, sizeof(dbdir), state_dir, "spool.lmdb")) != 0)
        goto fail;
    if ((rc = c2d_mkdirs(sp->tmp, SPOOL_DIR_MODE)) != 0 ||
        (rc = c2d_mkdirs(dbdir, SPOOL_DIR_MODE)) != 0)
        goto fail;

    if ((rc = c2d_mdb_errno(mdb_env_create(&sp->env))) != 0)
        goto fail;
    if ((rc = c2d_mdb_errno(mdb_env_set_maxdbs(sp->env, 3))) != 0 ||
        (rc = c2d_mdb_errno(mdb_env_set_mapsize(sp->env, SPOOL_MAP_BYTES))) != 0 ||
        (rc = c2d_mdb_errno(mdb_env_open(sp->env, dbdir, MDB_NOTLS, SPOOL_FILE_MODE))) != 0)
        goto fail;
    int dead;
    mdb_reader_check(sp->env, &dead);

    MDB_txn *txn;
    if ((rc = c2d_mdb_errno(mdb_txn_begin(sp->env, NULL, 0, &txn))) != 0)
        goto fail;
    rc = c2d_mdb_errno(mdb_dbi_open(txn, "queue", MDB_CREATE, &sp->queue));
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_dbi_open(txn, "checkpoint", MDB_CREATE, &sp->checkpoint));
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_dbi_open(txn, "meta", MDB_CREATE, &sp->meta));
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_txn_commit(txn));
    else
        mdb_txn_abort(txn);
    if (rc != 0)
        goto fail;

    if ((rc = recover(sp)) != 0)
        goto fail;
    *out = sp;
    return 0;
fail:
    agent_spool_free(sp);
    return rc;
}

void agent_spool_free(agent_spool *sp)
{
    if (!sp)
        return;
    if (sp->env)
        mdb_env_close(sp->env);
    pthread_cond_destroy(&sp->cond);
    pthread_mutex_destroy(&sp->lock);
    pthread_mutex_destroy(&sp->pin_lock);
    free(sp->pins);
    free(sp);
}

int agent_spool_tmp_path(agent_spool *sp, uint16_t ch, int64_t start_us, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%u-%" PRId64 ".ts", sp->tmp, (unsigned)ch, start_us);
    return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

int agent_spool_path(agent_spool *sp, uint16_t ch, int64_t start_us, char *buf, size_t len)
{
    return seg_path(sp, ch, start_us, buf, len);
}

int agent_spool_commit_ex(agent_spool *sp, const agent_segment *seg, const char *tmp_path,
                          const void *checkpoint, size_t cplen, agent_spool_dropped *dropped,
                          agent_spool_evict_fn on_evict, void *ud)
{
    if (cplen > AGENT_CHECKPOINT_MAX || (cplen > 0 && !checkpoint))
        return -EINVAL;
    char sha[65];
    memcpy(sha, seg->sha256, 64);
    sha[64] = '\0';
    if (strlen(sha) != 64)
        return -EINVAL;

    struct stat st;
    if (stat(tmp_path, &st) != 0)
        return -errno;
    if ((uint64_t)st.st_size != seg->size)
        return -EINVAL;

    char dir[PATH_MAX], path[PATH_MAX];
    int rc;
    if ((rc = ch_dir(sp, seg->channel, dir, sizeof(dir))) != 0 ||
        (rc = seg_path(sp, seg->channel, seg->start_us, path, sizeof(path))) != 0)
        return rc;
    if (mkdir(dir, SPOOL_DIR_MODE) == 0) {
        if ((rc = c2d_fsync_dir(sp->root)) != 0)
            return rc;
    } else if (errno != EEXIST) {
        return -errno;
    }
    if (rename(tmp_path, path) != 0)
        return -errno;
    if ((rc = c2d_fsync_dir(dir)) != 0)
        goto undo;

    MDB_txn *txn;
    if ((rc = c2d_mdb_errno(mdb_txn_begin(sp->env, NULL, 0, &txn))) != 0)
        goto undo;
    uint8_t kb[QKEY_LEN], rb[REC_LEN];
    qkey_encode(kb, seg->channel, seg->start_us);
    rec_encode(rb, seg);
    MDB_val k = {sizeof(kb), kb}, v;
    int64_t dsegs = 1, dbytes = (int64_t)seg->size;
    if (mdb_get(txn, sp->queue, &k, &v) == 0) {
        /* Same segment committed again (the file was just replaced). */
        agent_segment old;
        if (rec_decode(&k, &v, &old) == 0)
            dbytes -= (int64_t)old.size;
        dsegs = 0;
    }
    v.mv_size = sizeof(rb);
    v.mv_data = rb;
    rc = c2d_mdb_errno(mdb_put(txn, sp->queue, &k, &v, 0));
    if (rc == 0 && cplen > 0) {
        uint8_t ckb[2] = {(uint8_t)(seg->channel >> 8), (uint8_t)seg->channel};
        MDB_val ck = {sizeof(ckb), ckb}, cv = {cplen, (void *)checkpoint};
        rc = c2d_mdb_errno(mdb_put(txn, sp->checkpoint, &ck, &cv, 0));
    }
    if (rc == 0)
        rc = meta_add(txn, sp->meta, META_QUEUED_SEGMENTS, dsegs);
    if (rc == 0)
        rc = meta_add(txn, sp->meta, META_QUEUED_BYTES, dbytes);
    spool_refs drop = {0};
    uint64_t drop_bytes = 0;
    spool_ref self = {seg->channel, seg->start_us};
    if (rc == 0)
        rc = evict(sp, txn, &self, &drop, &drop_bytes);
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_txn_commit(txn));
    else
        mdb_txn_abort(txn);
    if (rc != 0) {
        free(drop.v);
        goto undo;
    }
    unlink_refs(sp, &drop);
    if (dropped) {
        memset(dropped, 0, sizeof(*dropped));
        dropped->segments = drop.n;
        dropped->bytes = drop_bytes;
        for (size_t i = 0; i < drop.n; i++) {
            if (i == 0 || drop.v[i].start_us < dropped->oldest_start_us)
                dropped->oldest_start_us = drop.v[i].start_us;
            if (i == 0 || drop.v[i].start_us > dropped->newest_start_us)
                dropped->newest_start_us = drop.v[i].start_us;
        }
    }
    if (on_evict)
        for (size_t i = 0; i < drop.n; i++)
            on_evict(ud, &drop.v[i]);
    free(drop.v);

    pthread_mutex_lock(&sp->lock);
    sp->commits++;
    pthread_cond_broadcast(&sp->cond);
    pthread_mutex_unlock(&sp->lock);
    return 0;
undo:
    /* No record: the file must not stay (open would delete it anyway). */
    unlink(path);
    return rc;
}

int agent_spool_commit(agent_spool *sp, const agent_segment *seg, const char *tmp_path,
                       const void *checkpoint, size_t cplen)
{
    return agent_spool_commit_ex(sp, seg, tmp_path, checkpoint, cplen, NULL, NULL, NULL);
}

int agent_spool_get_checkpoint(agent_spool *sp, uint16_t ch, void *buf, size_t *len)
{
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(sp->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    uint8_t ckb[2] = {(uint8_t)(ch >> 8), (uint8_t)ch};
    MDB_val k = {sizeof(ckb), ckb}, v;
    rc = c2d_mdb_errno(mdb_get(txn, sp->checkpoint, &k, &v));
    if (rc == 0) {
        if (v.mv_size > *len) {
            rc = -ENOBUFS;
        } else {
            memcpy(buf, v.mv_data, v.mv_size);
            *len = v.mv_size;
        }
    }
    mdb_txn_abort(txn);
    return rc;
}

int agent_spool_set_checkpoint(agent_spool *sp, uint16_t ch, const void *buf, size_t len)
{
    if (len > AGENT_CHECKPOINT_MAX || (len > 0 && !buf))
        return -EINVAL;
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(sp->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    uint8_t ckb[2] = {(uint8_t)(ch >> 8), (uint8_t)ch};
    MDB_val k = {sizeof(ckb), ckb}, v = {len, (void *)buf};
    rc = c2d_mdb_errno(mdb_put(txn, sp->checkpoint, &k, &v, 0));
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_txn_commit(txn));
    else
        mdb_txn_abort(txn);
    return rc;
}

int agent_spool_next(agent_spool *sp, uint16_t ch, int64_t after_us, agent_segment *out)
{
    if (after_us == INT64_MAX)
        return -ENOENT;
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(sp->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    MDB_cursor *cur;
    rc = c2d_mdb_errno(mdb_cursor_open(txn, sp->queue, &cur));
    if (rc == 0) {
        uint8_t kb[QKEY_LEN];
        qkey_encode(kb, ch, after_us == INT64_MIN ? INT64_MIN : after_us + 1);
        MDB_val k = {sizeof(kb), kb}, v;
        rc = c2d_mdb_errno(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE));
        agent_segment s;
        if (rc == 0)
            rc = rec_decode(&k, &v, &s);
        if (rc == 0 && s.channel != ch)
            rc = -ENOENT;
        if (rc == 0)
            *out = s;
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return rc;
}

/* Moves src to keep_dir/{ch}/{start}.ts (copying across file systems). */
static int keep_file(const char *src, const char *keep_dir, uint16_t ch, int64_t start_us)
{
    char dir[PATH_MAX], dst[PATH_MAX];
    int n = snprintf(dir, sizeof(dir), "%s/%u", keep_dir, (unsigned)ch);
    if (n < 0 || (size_t)n >= sizeof(dir))
        return -ENAMETOOLONG;
    n = snprintf(dst, sizeof(dst), "%s/%" PRId64 ".ts", dir, start_us);
    if (n < 0 || (size_t)n >= sizeof(dst))
        return -ENAMETOOLONG;
    int rc = c2d_mkdirs(dir, SPOOL_DIR_MODE);
    if (rc != 0)
        return rc;
    /* A hard link, not a rename: the spool file must stay until the queue
     * record is gone, or a kill in between would lose the kept copy. */
    rc = link(src, dst);
    if (rc != 0 && errno == EEXIST) {
        /* Left by a kill after the link and before the record went. */
        if (unlink(dst) != 0)
            return -errno;
        rc = link(src, dst);
    }
    if (rc == 0)
        return c2d_fsync_dir(dir);
    if (errno != EXDEV)
        return -errno;
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int outfd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, SPOOL_FILE_MODE);
    if (outfd < 0) {
        rc = -errno;
        close(in);
        return rc;
    }
    char buf[16384];
    for (;;) {
        ssize_t r = read(in, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            break;
        }
        if (r == 0)
            break;
        if ((rc = c2d_write_all(outfd, buf, (size_t)r)) != 0)
            break;
    }
    if (rc == 0 && fsync(outfd) != 0)
        rc = -errno;
    close(outfd);
    close(in);
    if (rc == 0)
        rc = c2d_fsync_dir(dir);
    if (rc == 0)
        unlink(src);
    else
        unlink(dst);
    return rc;
}

int agent_spool_remove(agent_spool *sp, uint16_t ch, int64_t start_us, const char *keep_dir)
{
    char path[PATH_MAX];
    int rc = seg_path(sp, ch, start_us, path, sizeof(path));
    if (rc != 0)
        return rc;
    /* Copy first (testing aid), so the kept file exists before the record
     * goes away. */
    if (keep_dir && keep_dir[0] && access(path, F_OK) == 0 &&
        (rc = keep_file(path, keep_dir, ch, start_us)) != 0)
        return rc;
    MDB_txn *txn;
    if ((rc = c2d_mdb_errno(mdb_txn_begin(sp->env, NULL, 0, &txn))) != 0)
        return rc;
    uint8_t kb[QKEY_LEN];
    qkey_encode(kb, ch, start_us);
    MDB_val k = {sizeof(kb), kb}, v;
    agent_segment s = {0};
    rc = c2d_mdb_errno(mdb_get(txn, sp->queue, &k, &v));
    if (rc == 0)
        rc = rec_decode(&k, &v, &s);
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_del(txn, sp->queue, &k, NULL));
    if (rc == 0)
        rc = meta_add(txn, sp->meta, META_QUEUED_SEGMENTS, -1);
    if (rc == 0)
        rc = meta_add(txn, sp->meta, META_QUEUED_BYTES, -(int64_t)s.size);
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_txn_commit(txn));
    else
        mdb_txn_abort(txn);
    if (rc == 0 || rc == -ENOENT)
        agent_spool_unpin(sp, ch, start_us);
    if (rc != 0)
        return rc;
    /* The record is gone; a file left behind by a failure below is an
     * orphan that the next open deletes. */
    if (unlink(path) != 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int agent_spool_pin(agent_spool *sp, uint16_t ch, int64_t start_us)
{
    /* A write transaction, though nothing is written: it waits for a
     * commit's eviction in progress, so the record checked here cannot be
     * deleted by one that looked at the pins before this one was added. */
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(sp->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    uint8_t kb[QKEY_LEN];
    qkey_encode(kb, ch, start_us);
    MDB_val k = {sizeof(kb), kb}, v;
    rc = c2d_mdb_errno(mdb_get(txn, sp->queue, &k, &v));
    if (rc == 0) {
        pthread_mutex_lock(&sp->pin_lock);
        if (pin_find(sp, ch, start_us) < 0) {
            if (sp->n_pins == sp->cap_pins) {
                size_t cap = sp->cap_pins ? sp->cap_pins * 2 : 8;
                spool_ref *p = realloc(sp->pins, cap * sizeof(*p));
                if (p) {
                    sp->pins = p;
                    sp->cap_pins = cap;
                } else {
                    rc = -ENOMEM;
                }
            }
            if (rc == 0)
                sp->pins[sp->n_pins++] = (spool_ref){ch, start_us};
        }
        pthread_mutex_unlock(&sp->pin_lock);
    }
    mdb_txn_abort(txn);
    return rc;
}

void agent_spool_unpin(agent_spool *sp, uint16_t ch, int64_t start_us)
{
    pthread_mutex_lock(&sp->pin_lock);
    pin_drop(sp, ch, start_us);
    pthread_mutex_unlock(&sp->pin_lock);
}

int agent_spool_pinned(agent_spool *sp, uint16_t ch, int64_t start_us)
{
    pthread_mutex_lock(&sp->pin_lock);
    int pinned = pin_find(sp, ch, start_us) >= 0;
    pthread_mutex_unlock(&sp->pin_lock);
    return pinned;
}

void agent_spool_get_stats(agent_spool *sp, agent_spool_stats *out)
{
    agent_spool_stats st = {0};
    st.max_bytes = sp->max_bytes;
    MDB_txn *txn;
    if (mdb_txn_begin(sp->env, NULL, MDB_RDONLY, &txn) == 0) {
        meta_get(txn, sp->meta, META_QUEUED_SEGMENTS, &st.queued_segments);
        meta_get(txn, sp->meta, META_QUEUED_BYTES, &st.queued_bytes);
        meta_get(txn, sp->meta, META_DROPPED_SEGMENTS, &st.dropped_segments);
        meta_get(txn, sp->meta, META_DROPPED_BYTES, &st.dropped_bytes);
        meta_get(txn, sp->meta, META_LOST_SEGMENTS, &st.lost_segments);
        agent_segment old;
        if (find_oldest(txn, sp->queue, NULL, NULL, &old) == 0)
            st.oldest_start_us = old.start_us;
        mdb_txn_abort(txn);
    }
    *out = st;
}

void agent_spool_wait(agent_spool *sp, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (timeout_ms < 0)
        timeout_ms = 0;
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&sp->lock);
    while (sp->seen == sp->commits) {
        if (pthread_cond_timedwait(&sp->cond, &sp->lock, &ts) == ETIMEDOUT)
            break;
    }
    sp->seen = sp->commits;
    pthread_mutex_unlock(&sp->lock);
}
