/* Virtual disks in the ledger: see quota.h. */
#include "controller/quota.h"

#include "common/c2d_lmdb.h"
#include "controller/ledger_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define QREC_VERSION 1
#define DISK_LEN (1 + 8 + 8 + 1 + 1 + 8 + 8 + 8)
#define CAM_LEN (1 + 8 + 8 + 1)
/* disk_cams value: bytes, segments, head. */
#define DCAM_LEN (USAGE_LEN + 8)
/* protect key: camera key + from + to + owner. */
#define PROT_KEY_MAX (KEY_MAX + 24)
/* Evictions one admission may plan: far more than a segment ever needs
 * (thousands of small segments for one big one would mean a broken disk). */
#define PLAN_MAX 4096

/* --- Records --- */

static void disk_encode(const ctl_disk_rec *d, uint8_t *v)
{
    v[0] = QREC_VERSION;
    put_be(v + 1, d->cfg.capacity, 8);
    put_be(v + 9, (uint64_t)d->cfg.retention_us, 8);
    v[17] = (uint8_t)d->cfg.policy;
    v[18] = (uint8_t)(d->cfg.active != 0);
    put_be(v + 19, d->used, 8);
    put_be(v + 27, d->segments, 8);
    put_be(v + 35, d->protected_bytes, 8);
}

static int disk_decode(const MDB_val *v, ctl_disk_rec *d)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size != DISK_LEN || p[0] != QREC_VERSION || p[17] > CTL_DISK_STOP)
        return -EIO;
    d->cfg.capacity = get_be(p + 1, 8);
    d->cfg.retention_us = (int64_t)get_be(p + 9, 8);
    d->cfg.policy = (ctl_disk_policy)p[17];
    d->cfg.active = p[18];
    d->used = get_be(p + 19, 8);
    d->segments = get_be(p + 27, 8);
    d->protected_bytes = get_be(p + 35, 8);
    return 0;
}

static int disk_read(ctl_ledger *l, MDB_txn *txn, uint64_t disk, ctl_disk_rec *d)
{
    uint8_t k[8];
    put_be(k, disk, 8);
    MDB_val mk = {8, k}, mv;
    int rc = c2d_mdb_errno(mdb_get(txn, l->disks, &mk, &mv));
    return rc ? rc : disk_decode(&mv, d);
}

static int disk_write(ctl_ledger *l, MDB_txn *txn, uint64_t disk, const ctl_disk_rec *d)
{
    uint8_t k[8], v[DISK_LEN];
    put_be(k, disk, 8);
    disk_encode(d, v);
    MDB_val mk = {8, k}, mv = {DISK_LEN, v};
    int rc = c2d_mdb_errno(mdb_put(txn, l->disks, &mk, &mv, 0));
    return rc == -EEXIST ? -EIO : rc;
}

static int cam_read(ctl_ledger *l, MDB_txn *txn, const uint8_t *ck, size_t ckn, ctl_camera_rec *c)
{
    MDB_val mk = {ckn, (void *)ck}, mv;
    int rc = c2d_mdb_errno(mdb_get(txn, l->cameras, &mk, &mv));
    if (rc != 0)
        return rc;
    const uint8_t *p = mv.mv_data;
    if (mv.mv_size != CAM_LEN || p[0] != QREC_VERSION)
        return -EIO;
    c->disk = get_be(p + 1, 8);
    c->cap = get_be(p + 9, 8);
    c->backup = p[17];
    return 0;
}

/* disk_cams key. */
static size_t dcam_key(uint8_t *buf, uint64_t disk, const char *device, uint16_t ch)
{
    put_be(buf, disk, 8);
    return 8 + ctl_ledger_make_key(buf + 8, device, ch, 0, 0);
}

static int dcam_decode(const MDB_val *v, ctl_quota_dcam *out)
{
    if (v->mv_size != DCAM_LEN)
        return -EIO;
    const uint8_t *p = v->mv_data;
    out->bytes = get_be(p, 8);
    out->segments = get_be(p + 8, 8);
    out->head_us = (int64_t)get_be(p + 16, 8);
    return out->segments ? 0 : -EIO;
}

/* Reads the disk_cams record at k; -ENOENT if the camera has nothing on
 * the disk. */
static int dcam_read(ctl_ledger *l, MDB_txn *txn, const MDB_val *k, ctl_quota_dcam *out)
{
    MDB_val v;
    int rc = c2d_mdb_errno(mdb_get(txn, l->disk_cams, (MDB_val *)k, &v));
    return rc ? rc : dcam_decode(&v, out);
}

/* Writes it, or deletes it once the camera has nothing left there. */
static int dcam_write(ctl_ledger *l, MDB_txn *txn, const MDB_val *k, const ctl_quota_dcam *d)
{
    MDB_val mk = *k;
    if (d->segments == 0) {
        int rc = c2d_mdb_errno(mdb_del(txn, l->disk_cams, &mk, NULL));
        return rc == -ENOENT ? 0 : rc;
    }
    uint8_t v[DCAM_LEN];
    put_be(v, d->bytes, 8);
    put_be(v + 8, d->segments, 8);
    put_be(v + 16, (uint64_t)d->head_us, 8);
    MDB_val mv = {DCAM_LEN, v};
    int rc = c2d_mdb_errno(mdb_put(txn, l->disk_cams, &mk, &mv, 0));
    return rc == -EEXIST ? -EIO : rc;
}

/* --- A camera's segments on one disk ---
 *
 * Segments are keyed by camera and time only; the disk each counts on is
 * in its record. A camera is on one disk at a time, so its segments on a
 * disk are one run in time but for the few around a move; the walks below
 * skip the others. disk_cams' head says where a camera's run on a disk
 * begins, so that eviction and retention start there. */

/* From the position mrc left cur at, steps (MDB_NEXT or MDB_PREV) to the
 * first record of camera ck on disk: 0 with *k, *v set; 1 if there is
 * none; or an error. */
static int scan_on_disk(MDB_cursor *cur, const uint8_t *ck, size_t ckn, uint64_t disk, MDB_val *k,
                        MDB_val *v, int mrc, MDB_cursor_op step)
{
    for (; mrc == MDB_SUCCESS; mrc = mdb_cursor_get(cur, k, v, step)) {
        if (k->mv_size != ckn + 8 || memcmp(k->mv_data, ck, ckn) != 0)
            return 1;
        ctl_seg_peek p;
        int rc = ctl_ledger_peek_segment(v, &p);
        if (rc != 0)
            return rc;
        if (p.disk_id == disk)
            return 0;
    }
    return mrc == MDB_NOTFOUND ? 1 : c2d_mdb_errno(mrc);
}

/* The camera's first segment on disk that starts at or after from. */
static int first_on_disk(MDB_cursor *cur, const uint8_t *ck, size_t ckn, uint64_t disk,
                         int64_t from, MDB_val *k, MDB_val *v)
{
    uint8_t sk[KEY_MAX];
    memcpy(sk, ck, ckn);
    put_be(sk + ckn, (uint64_t)(from < 0 ? 0 : from), 8);
    k->mv_size = ckn + 8;
    k->mv_data = sk;
    int mrc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
    return scan_on_disk(cur, ck, ckn, disk, k, v, mrc, MDB_NEXT);
}

/* The camera's last segment on disk. */
static int last_on_disk(MDB_cursor *cur, const uint8_t *ck, size_t ckn, uint64_t disk, MDB_val *k,
                        MDB_val *v)
{
    uint8_t sk[KEY_MAX];
    memcpy(sk, ck, ckn);
    memset(sk + ckn, 0xff, 8);
    k->mv_size = ckn + 8;
    k->mv_data = sk;
    int mrc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
    mrc = mrc == MDB_SUCCESS    ? mdb_cursor_get(cur, k, v, MDB_PREV)
          : mrc == MDB_NOTFOUND ? mdb_cursor_get(cur, k, v, MDB_LAST)
                                : mrc;
    return scan_on_disk(cur, ck, ckn, disk, k, v, mrc, MDB_PREV);
}

/* Counts a segment of camera ck on disk (sign 1) or uncounts it (-1;
 * its record is gone already), keeping the head. */
static int dcam_add(ctl_ledger *l, MDB_txn *txn, uint64_t disk, const uint8_t *ck, size_t ckn,
                    int64_t start, uint64_t size, int sign)
{
    uint8_t dk[8 + KEY_MAX];
    put_be(dk, disk, 8);
    memcpy(dk + 8, ck, ckn);
    MDB_val mdk = {8 + ckn, dk};
    ctl_quota_dcam d = {0, 0, 0};
    int rc = dcam_read(l, txn, &mdk, &d);
    if (rc != 0 && rc != -ENOENT)
        return rc;
    if (sign > 0) {
        if (rc == -ENOENT || start < d.head_us)
            d.head_us = start;
        d.bytes += size;
        d.segments++;
        return dcam_write(l, txn, &mdk, &d);
    }
    if (rc != 0 || d.bytes < size)
        return -EIO; /* the sums would go negative: the ledger is inconsistent */
    d.bytes -= size;
    d.segments--;
    if (d.segments && start == d.head_us) {
        /* The head went: the next segment of the camera on this disk. */
        MDB_cursor *cur;
        MDB_val k, v;
        if ((rc = c2d_mdb_errno(mdb_cursor_open(txn, l->segments, &cur))) != 0)
            return rc;
        rc = first_on_disk(cur, ck, ckn, disk, start, &k, &v);
        if (rc == 0)
            d.head_us = (int64_t)get_be((const uint8_t *)k.mv_data + ckn, 8);
        mdb_cursor_close(cur);
        if (rc != 0)
            return rc == 1 ? -EIO : rc;
    }
    return dcam_write(l, txn, &mdk, &d);
}

/* A walk over a disk's segments, oldest first: a merge of its cameras'
 * runs (ties in camera key order). */
typedef struct {
    uint8_t ck[KEY_MAX];
    size_t ckn;
    int64_t start; /* of the current segment; INT64_MAX past the last */
    ctl_seg_peek seg;
} walk_cam;

typedef struct {
    MDB_cursor *cur;
    uint64_t disk;
    walk_cam *cams;
    size_t n, cap;
    int64_t from;
} disk_walk;

/* Moves c to its next segment on the disk starting at or after from. */
static int walk_seek(disk_walk *w, walk_cam *c, int64_t from)
{
    MDB_val k, v;
    int rc = first_on_disk(w->cur, c->ck, c->ckn, w->disk, from, &k, &v);
    if (rc == 1) {
        c->start = INT64_MAX;
        return 0;
    }
    if (rc == 0) {
        c->start = (int64_t)get_be((const uint8_t *)k.mv_data + c->ckn, 8);
        rc = ctl_ledger_peek_segment(&v, &c->seg);
    }
    return rc;
}

static int walk_add_cam(void *ud, const MDB_val *k, const MDB_val *v)
{
    disk_walk *w = ud;
    ctl_quota_dcam d;
    if (k->mv_size == 8)
        return 0; /* the disk's own record */
    int rc = dcam_decode(v, &d);
    if (rc != 0 || k->mv_size < 8 || k->mv_size - 8 > KEY_MAX)
        return rc ? rc : -EIO;
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        walk_cam *p = realloc(w->cams, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        w->cams = p;
        w->cap = cap;
    }
    walk_cam *c = &w->cams[w->n++];
    c->ckn = k->mv_size - 8;
    memcpy(c->ck, (const uint8_t *)k->mv_data + 8, c->ckn);
    c->start = d.head_us > w->from ? d.head_us : w->from; /* sought in walk_open */
    return 0;
}

static int prefix_walk(MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix, size_t plen, int reverse,
                       int (*fn)(void *ud, const MDB_val *k, const MDB_val *v), void *ud);

/* Walks dbi from the first key at or after from; fn may stop it (1). */
static int walk_from(MDB_txn *txn, MDB_dbi dbi, const uint8_t *from, size_t flen,
                     int (*fn)(void *ud, const MDB_val *k, const MDB_val *v), void *ud)
{
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(txn, dbi, &cur));
    if (rc != 0)
        return rc;
    MDB_val k = {flen, (void *)from}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (; mrc == MDB_SUCCESS && rc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        rc = fn(ud, &k, &v);
    if (rc == 0 && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
    mdb_cursor_close(cur);
    return rc == 1 ? 0 : rc;
}

static void walk_close(disk_walk *w)
{
    if (w->cur)
        mdb_cursor_close(w->cur);
    free(w->cams);
    memset(w, 0, sizeof(*w));
}

/* A walk of disk's segments that start at or after from; camera
 * non-NULL: that camera's only. */
static int walk_open(ctl_ledger *l, MDB_txn *txn, uint64_t disk, const uint8_t *camera,
                     size_t camlen, int64_t from, disk_walk *w)
{
    memset(w, 0, sizeof(*w));
    w->disk = disk;
    w->from = from;
    uint8_t prefix[8 + KEY_MAX];
    put_be(prefix, disk, 8);
    if (camera)
        memcpy(prefix + 8, camera, camlen);
    int rc = prefix_walk(txn, l->disk_cams, prefix, 8 + (camera ? camlen : 0), 0, walk_add_cam, w);
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_cursor_open(txn, l->segments, &w->cur));
    for (size_t i = 0; rc == 0 && i < w->n; i++)
        rc = walk_seek(w, &w->cams[i], w->cams[i].start);
    if (rc != 0)
        walk_close(w);
    return rc;
}

/* The oldest current segment, or NULL when the walk is done. */
static walk_cam *walk_peek(disk_walk *w)
{
    walk_cam *best = NULL;
    for (size_t i = 0; i < w->n; i++) {
        walk_cam *c = &w->cams[i];
        if (c->start == INT64_MAX)
            continue;
        /* Cameras come in key order: the first of equal starts wins. */
        if (!best || c->start < best->start)
            best = c;
    }
    return best;
}

/* The segment key of c's current segment into buf. */
static size_t walk_key(const walk_cam *c, uint8_t *buf)
{
    memcpy(buf, c->ck, c->ckn);
    put_be(buf + c->ckn, (uint64_t)c->start, 8);
    return c->ckn + 8;
}

static int walk_next(disk_walk *w, walk_cam *c)
{
    return c->start == INT64_MAX - 1 ? (c->start = INT64_MAX, 0) : walk_seek(w, c, c->start + 1);
}

/* --- Protection ranges --- */

/* True if a range of the camera (key ck) overlaps [s, e). */
static int covered(ctl_ledger *l, MDB_txn *txn, const uint8_t *ck, size_t ckn, int64_t s, int64_t e,
                   bool *out)
{
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(txn, l->protect, &cur));
    if (rc != 0)
        return rc;
    *out = false;
    MDB_val k = {ckn, (void *)ck}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (; mrc == MDB_SUCCESS; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != ckn + 24 || memcmp(k.mv_data, ck, ckn) != 0)
            break;
        const uint8_t *p = (const uint8_t *)k.mv_data + ckn;
        int64_t from = (int64_t)get_be(p, 8), to = (int64_t)get_be(p + 8, 8);
        if (from >= e)
            break; /* ranges are in start order */
        if (to > s) {
            *out = true;
            break;
        }
    }
    if (mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
    mdb_cursor_close(cur);
    return rc;
}

/* --- Eviction --- */

typedef struct {
    uint8_t key[KEY_MAX]; /* the segment's */
    size_t klen;
    uint64_t size;
} planned;

typedef struct {
    planned *p;
    size_t n, cap;
    uint64_t bytes;
} plan;

static void plan_free(plan *pl)
{
    free(pl->p);
    memset(pl, 0, sizeof(*pl));
}

static bool plan_has(const plan *pl, const uint8_t *k, size_t kn)
{
    for (size_t i = 0; i < pl->n; i++)
        if (pl->p[i].klen == kn && memcmp(pl->p[i].key, k, kn) == 0)
            return true;
    return false;
}

static int plan_add(plan *pl, const uint8_t *k, size_t kn, uint64_t size)
{
    if (pl->n == PLAN_MAX || kn > KEY_MAX)
        return -EDQUOT;
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? 2 * pl->cap : 16;
        planned *p = realloc(pl->p, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        pl->p = p;
        pl->cap = cap;
    }
    memcpy(pl->p[pl->n].key, k, kn);
    pl->p[pl->n].klen = kn;
    pl->p[pl->n].size = size;
    pl->n++;
    pl->bytes += size;
    return 0;
}

/* Plans the eviction of the disk's oldest unprotected segments that start
 * before `before` (the new segment: never evict newer video for an older
 * one), skipping those planned already, until pl->bytes reaches need,
 * then whole segments up to want. camera non-NULL: that camera's
 * segments only. -EDQUOT if they do not add up. */
static int plan_evictions(ctl_ledger *l, MDB_txn *txn, uint64_t disk, const uint8_t *camera,
                          size_t camlen, int64_t before, uint64_t need, uint64_t want, plan *pl)
{
    disk_walk w;
    int rc = walk_open(l, txn, disk, camera, camlen, 0, &w);
    if (rc != 0)
        return rc;
    walk_cam *c;
    while (rc == 0 && pl->bytes < want && (c = walk_peek(&w)) != NULL && c->start < before) {
        uint8_t k[KEY_MAX];
        size_t kn = walk_key(c, k);
        if (!c->seg.is_protected && !plan_has(pl, k, kn)) {
            /* Beyond what is needed, only whole segments within the headroom. */
            if (pl->bytes >= need && pl->bytes + c->seg.size > want)
                break;
            rc = plan_add(pl, k, kn, c->seg.size);
        }
        if (rc == 0)
            rc = walk_next(&w, c);
    }
    walk_close(&w);
    if (rc == 0 && pl->bytes < need)
        rc = -EDQUOT;
    return rc;
}

/* trash: sequence BE64 -> key length, segment key, path. The janitor
 * deletes each file after the removal committed, unless a live record
 * names it again (the segment was sent again). */
static int trash_put(ctl_ledger *l, MDB_txn *txn, const uint8_t *sk, size_t skn, const char *path)
{
    size_t plen = strlen(path);
    if (plen == 0 || plen >= CTL_LEDGER_PATH_MAX || skn > KEY_MAX)
        return -EIO;
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(txn, l->trash, &cur));
    if (rc != 0)
        return rc;
    MDB_val k, v;
    uint64_t seq = 1;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (mrc == MDB_SUCCESS && k.mv_size == CTL_QUOTA_TRASH_KEY)
        seq = get_be(k.mv_data, 8) + 1;
    else if (mrc != MDB_NOTFOUND && mrc != MDB_SUCCESS)
        rc = c2d_mdb_errno(mrc);
    uint8_t kb[CTL_QUOTA_TRASH_KEY], vb[1 + KEY_MAX + CTL_LEDGER_PATH_MAX];
    put_be(kb, seq, 8);
    vb[0] = (uint8_t)skn;
    memcpy(vb + 1, sk, skn);
    memcpy(vb + 1 + skn, path, plen);
    k.mv_size = sizeof(kb);
    k.mv_data = kb;
    v.mv_size = 1 + skn + plen;
    v.mv_data = vb;
    /* Always the last key: appended without a search or a split. */
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_cursor_put(cur, &k, &v, MDB_APPEND));
    mdb_cursor_close(cur);
    return rc == -EEXIST ? -EIO : rc;
}

/* Removes one segment of disk (its key sk): its record, its sums (the
 * disk's into *d), and its file to the trash. */
static int remove_seg(ctl_ledger *l, MDB_txn *txn, uint64_t disk, const uint8_t *sk, size_t skn,
                      ctl_disk_rec *d)
{
    MDB_val msk = {skn, (void *)sk}, msv;
    ctl_seg_key key;
    ctl_segment_rec rec;
    int rc = ctl_ledger_parse_key(&msk, 1, &key);
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_get(txn, l->segments, &msk, &msv));
    if (rc == 0)
        rc = ctl_ledger_decode_segment(&msv, &rec);
    if (rc == 0 && rec.disk_id != disk)
        rc = -EIO;
    if (rc == 0)
        rc = trash_put(l, txn, sk, skn, rec.path);
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_del(txn, l->segments, &msk, NULL));
    if (rc == 0)
        rc = dcam_add(l, txn, disk, sk, skn - 8, key.start_us, rec.size, -1);
    if (rc != 0)
        return rc == -ENOENT ? -EIO : rc;
    if (d->used < rec.size || d->segments < 1 ||
        (rec.is_protected && d->protected_bytes < rec.size))
        return -EIO;
    d->used -= rec.size;
    d->segments--;
    if (rec.is_protected)
        d->protected_bytes -= rec.size;
    return 0;
}

static int evict_plan(ctl_ledger *l, MDB_txn *txn, uint64_t disk, const plan *pl, ctl_disk_rec *d)
{
    for (size_t i = 0; i < pl->n; i++) {
        int rc = remove_seg(l, txn, disk, pl->p[i].key, pl->p[i].klen, d);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* --- Admission --- */

int ctl_quota_admit(ctl_ledger *l, MDB_txn *txn, const ctl_seg_key *key, ctl_segment_rec *rec)
{
    uint8_t ck[KEY_MAX];
    size_t ckn = ctl_ledger_make_key(ck, key->device, key->channel, 0, 0);
    ctl_camera_rec cam;
    rec->is_protected = 0;
    int rc = cam_read(l, txn, ck, ckn, &cam);
    if (rc == -ENOENT && l->open_mode) {
        /* Counted on disk 0's camera usage: no disk, no rules. */
        rec->disk_id = 0;
        return dcam_add(l, txn, 0, ck, ckn, key->start_us, rec->size, 1);
    }
    if (rc != 0)
        return rc == -ENOENT ? -ENODEV : rc;
    if (!cam.backup)
        return -EACCES;
    ctl_disk_rec d;
    if ((rc = disk_read(l, txn, cam.disk, &d)) != 0)
        return rc == -ENOENT ? -ENODEV : rc;
    if (!d.cfg.active)
        return -ENODEV;
    if (rec->size > d.cfg.capacity || (cam.cap && rec->size > cam.cap))
        return -EDQUOT;
    bool prot;
    if ((rc = covered(l, txn, ck, ckn, key->start_us, key->start_us + rec->duration_us, &prot)) !=
        0)
        return rc;
    /* Protection is bounded: beyond half the disk a segment is stored
     * unprotected. */
    if (prot && d.protected_bytes + rec->size > d.cfg.capacity / 2)
        prot = false;

    /* Plan first, so that a refusal writes nothing. */
    plan pl = {0};
    uint8_t dck[8 + KEY_MAX];
    MDB_val mdck = {dcam_key(dck, cam.disk, key->device, key->channel), dck};
    ctl_quota_dcam cu = {0, 0, 0};
    rc = dcam_read(l, txn, &mdck, &cu);
    if (rc != 0 && rc != -ENOENT)
        goto out;
    rc = 0;
    if (cam.cap && cu.bytes + rec->size > cam.cap) {
        if (d.cfg.policy == CTL_DISK_STOP) {
            rc = -EDQUOT;
            goto out;
        }
        uint64_t need = cu.bytes + rec->size - cam.cap;
        rc = plan_evictions(l, txn, cam.disk, ck, ckn, key->start_us, need, need, &pl);
        if (rc != 0)
            goto out;
    }
    if (d.used - pl.bytes + rec->size > d.cfg.capacity) {
        if (d.cfg.policy == CTL_DISK_STOP) {
            rc = -EDQUOT;
            goto out;
        }
        /* A little more than needed (the oldest still): the next commits
         * then evict nothing, and the pages of a run of deletions are
         * written once (tools/bench ledger). */
        uint64_t need = d.used - pl.bytes + rec->size - d.cfg.capacity;
        rc = plan_evictions(l, txn, cam.disk, NULL, 0, key->start_us, pl.bytes + need,
                            pl.bytes + need + d.cfg.capacity / CTL_QUOTA_HEADROOM_DIV, &pl);
        if (rc != 0)
            goto out;
    }
    if ((rc = evict_plan(l, txn, cam.disk, &pl, &d)) != 0)
        goto out;

    /* Count the segment on its disk (the caller writes its record). */
    if ((rc = dcam_add(l, txn, cam.disk, ck, ckn, key->start_us, rec->size, 1)) != 0)
        goto out;
    d.used += rec->size;
    d.segments++;
    if (prot)
        d.protected_bytes += rec->size;
    if ((rc = disk_write(l, txn, cam.disk, &d)) == 0) {
        rec->disk_id = cam.disk;
        rec->is_protected = prot;
    }
out:
    plan_free(&pl);
    if (rc == -EEXIST)
        rc = -EIO;
    return rc;
}

/* --- Disks and cameras --- */

/* Evicts until the disk (or with camera, that camera in the disk) uses at
 * most limit; what is protected stays. */
static int shrink(ctl_ledger *l, MDB_txn *txn, uint64_t disk, ctl_disk_rec *d,
                  const uint8_t *camera, size_t camlen, uint64_t used, uint64_t limit)
{
    if (used <= limit || d->cfg.policy == CTL_DISK_STOP)
        return 0;
    plan pl = {0};
    int rc =
        plan_evictions(l, txn, disk, camera, camlen, INT64_MAX, used - limit, used - limit, &pl);
    if (rc == -EDQUOT)
        rc = 0; /* everything evictable goes; the rest is protected */
    if (rc == 0)
        rc = evict_plan(l, txn, disk, &pl, d);
    plan_free(&pl);
    return rc;
}

int ctl_quota_disk_set(ctl_ledger *l, MDB_txn *txn, uint64_t disk, const ctl_disk_cfg *cfg)
{
    if (disk == 0 || !cfg || cfg->capacity == 0 || cfg->retention_us < 0 ||
        (cfg->policy != CTL_DISK_OVERWRITE && cfg->policy != CTL_DISK_STOP))
        return -EINVAL;
    ctl_disk_rec d;
    int rc = disk_read(l, txn, disk, &d);
    if (rc == -ENOENT)
        memset(&d, 0, sizeof(d));
    else if (rc != 0)
        return rc;
    d.cfg = *cfg;
    d.cfg.active = cfg->active != 0;
    if ((rc = shrink(l, txn, disk, &d, NULL, 0, d.used, d.cfg.capacity)) != 0)
        return rc;
    return disk_write(l, txn, disk, &d);
}

int ctl_quota_disk_get(ctl_ledger *l, MDB_txn *txn, uint64_t disk, ctl_disk_rec *out)
{
    return disk_read(l, txn, disk, out);
}

/* Walks keys of dbi beginning with prefix; fn may stop the walk (1). */
static int prefix_walk(MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix, size_t plen, int reverse,
                       int (*fn)(void *ud, const MDB_val *k, const MDB_val *v), void *ud)
{
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(txn, dbi, &cur));
    if (rc != 0)
        return rc;
    uint8_t end[8 + KEY_MAX + 1];
    MDB_val k = {plen, (void *)prefix}, v;
    int mrc;
    if (!reverse) {
        /* LMDB refuses an empty key: no prefix starts at the first key. */
        mrc = mdb_cursor_get(cur, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
    } else {
        /* The key after every key with the prefix: prefix + 0xff... */
        memcpy(end, prefix, plen);
        memset(end + plen, 0xff, sizeof(end) - plen);
        k.mv_size = sizeof(end);
        k.mv_data = end;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        mrc = mrc == MDB_SUCCESS ? mdb_cursor_get(cur, &k, &v, MDB_PREV)
                                 : mdb_cursor_get(cur, &k, &v, MDB_LAST);
    }
    for (; mrc == MDB_SUCCESS; mrc = mdb_cursor_get(cur, &k, &v, reverse ? MDB_PREV : MDB_NEXT)) {
        if (plen && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
            break;
        if ((rc = fn(ud, &k, &v)) != 0)
            break;
    }
    if (rc == 0 && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
    mdb_cursor_close(cur);
    return rc == 1 ? 0 : rc;
}

typedef struct {
    ctl_ledger *l;
    MDB_txn *txn;
    uint64_t disk;
    int64_t oldest, newest;
} span_walk;

/* A camera's run on the disk: its head is its oldest; its newest is at
 * the end of its segments (a step back past other disks' few). */
static int cam_newest(ctl_ledger *l, MDB_txn *txn, uint64_t disk, const uint8_t *ck, size_t ckn,
                      int64_t *newest)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = c2d_mdb_errno(mdb_cursor_open(txn, l->segments, &cur));
    if (rc != 0)
        return rc;
    rc = last_on_disk(cur, ck, ckn, disk, &k, &v);
    if (rc == 0)
        *newest = (int64_t)get_be((const uint8_t *)k.mv_data + ckn, 8);
    mdb_cursor_close(cur);
    return rc == 1 ? -EIO : rc; /* a disk_cams record counts at least one */
}

static int span_cb(void *ud, const MDB_val *k, const MDB_val *v)
{
    span_walk *s = ud;
    ctl_quota_dcam d;
    int64_t newest;
    if (k->mv_size == 8)
        return 0; /* the disk's own record */
    int rc = dcam_decode(v, &d);
    if (rc == 0 && k->mv_size > 8)
        rc = cam_newest(s->l, s->txn, s->disk, (const uint8_t *)k->mv_data + 8, k->mv_size - 8,
                        &newest);
    if (rc != 0)
        return rc;
    if (s->oldest == 0 || d.head_us < s->oldest)
        s->oldest = d.head_us;
    if (newest > s->newest)
        s->newest = newest;
    return 0;
}

int ctl_quota_disk_span(ctl_ledger *l, MDB_txn *txn, uint64_t disk, int64_t *oldest,
                        int64_t *newest)
{
    uint8_t prefix[8];
    put_be(prefix, disk, 8);
    span_walk s = {l, txn, disk, 0, 0};
    int rc = prefix_walk(txn, l->disk_cams, prefix, 8, 0, span_cb, &s);
    *oldest = rc == 0 ? s.oldest : 0;
    *newest = rc == 0 ? s.newest : 0;
    return rc;
}

typedef struct {
    uint8_t keys[64][KEY_MAX];
    size_t lens[64];
    size_t n;
} key_batch;

/* Up to 64 of the disk's oldest segments that start before `before` and
 * end at or before `end` (those that do not are skipped). */
static int collect_oldest(ctl_ledger *l, MDB_txn *txn, uint64_t disk, int64_t before, int64_t end,
                          key_batch *b)
{
    disk_walk w;
    b->n = 0;
    int rc = walk_open(l, txn, disk, NULL, 0, 0, &w);
    if (rc != 0)
        return rc;
    walk_cam *c;
    while (rc == 0 && b->n < 64 && (c = walk_peek(&w)) != NULL && c->start < before) {
        if (c->start + c->seg.duration_us <= end) {
            b->lens[b->n] = walk_key(c, b->keys[b->n]);
            b->n++;
        }
        rc = walk_next(&w, c);
    }
    walk_close(&w);
    return rc;
}

typedef struct {
    uint64_t disk;
    key_batch b;
} cam_of_disk;

static int collect_cam(void *ud, const MDB_val *k, const MDB_val *v)
{
    cam_of_disk *c = ud;
    if (v->mv_size != CAM_LEN || k->mv_size > KEY_MAX)
        return -EIO;
    if (get_be((const uint8_t *)v->mv_data + 1, 8) != c->disk)
        return 0;
    memcpy(c->b.keys[c->b.n], k->mv_data, k->mv_size);
    c->b.lens[c->b.n] = k->mv_size;
    return ++c->b.n == 64 ? 1 : 0;
}

int ctl_quota_disk_del(ctl_ledger *l, MDB_txn *txn, uint64_t disk)
{
    ctl_disk_rec d;
    int rc = disk_read(l, txn, disk, &d);
    if (rc != 0)
        return rc;
    for (;;) { /* its segments */
        key_batch b;
        if ((rc = collect_oldest(l, txn, disk, INT64_MAX, INT64_MAX, &b)) != 0)
            return rc;
        if (b.n == 0)
            break;
        for (size_t i = 0; i < b.n; i++)
            if ((rc = remove_seg(l, txn, disk, b.keys[i], b.lens[i], &d)) != 0)
                return rc;
    }
    if (d.used || d.segments || d.protected_bytes)
        return -EIO;
    if ((rc = ctl_quota_disk_uncover(l, txn, disk)) != 0)
        return rc;
    uint8_t k[8];
    put_be(k, disk, 8);
    MDB_val mk = {8, k};
    return c2d_mdb_errno(mdb_del(txn, l->disks, &mk, NULL));
}

int ctl_quota_camera_set(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch,
                         const ctl_camera_rec *rec)
{
    if (!c2d_device_id_valid(device) || !rec || rec->disk == 0)
        return -EINVAL;
    ctl_disk_rec d;
    int rc = disk_read(l, txn, rec->disk, &d);
    if (rc != 0)
        return rc;
    uint8_t ck[KEY_MAX], v[CAM_LEN];
    size_t ckn = ctl_ledger_make_key(ck, device, ch, 0, 0);
    v[0] = QREC_VERSION;
    put_be(v + 1, rec->disk, 8);
    put_be(v + 9, rec->cap, 8);
    v[17] = (uint8_t)(rec->backup != 0);
    MDB_val mk = {ckn, ck}, mv = {CAM_LEN, v};
    if ((rc = c2d_mdb_errno(mdb_put(txn, l->cameras, &mk, &mv, 0))) != 0)
        return rc == -EEXIST ? -EIO : rc;
    if (!rec->cap)
        return 0;
    /* A cap below what the camera uses applies now. */
    uint8_t dck[8 + KEY_MAX];
    size_t dckn = dcam_key(dck, rec->disk, device, ch);
    MDB_val mdck = {dckn, dck}, dv;
    ctl_usage_rec cu = {0, 0};
    rc = c2d_mdb_errno(mdb_get(txn, l->disk_cams, &mdck, &dv));
    if (rc == 0)
        rc = ctl_ledger_decode_usage(&dv, &cu);
    if (rc == -ENOENT)
        return 0;
    if (rc == 0 && (rc = shrink(l, txn, rec->disk, &d, ck, ckn, cu.bytes, rec->cap)) == 0)
        rc = disk_write(l, txn, rec->disk, &d);
    return rc;
}

int ctl_quota_camera_del(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch)
{
    if (!c2d_device_id_valid(device))
        return -EINVAL;
    uint8_t ck[KEY_MAX];
    MDB_val mk = {ctl_ledger_make_key(ck, device, ch, 0, 0), ck};
    return c2d_mdb_errno(mdb_del(txn, l->cameras, &mk, NULL));
}

int ctl_quota_camera_get(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch,
                         ctl_camera_rec *out)
{
    if (!c2d_device_id_valid(device))
        return -EINVAL;
    uint8_t ck[KEY_MAX];
    return cam_read(l, txn, ck, ctl_ledger_make_key(ck, device, ch, 0, 0), out);
}

typedef struct {
    ctl_ledger *l;
    MDB_txn *txn;
    uint64_t disk;
    ctl_disk_camera_cb cb;
    void *ud;
} cams_walk;

static int cams_cb(void *ud, const MDB_val *k, const MDB_val *v)
{
    cams_walk *w = ud;
    ctl_disk_camera c;
    if (k->mv_size == 8)
        return 0; /* the disk's own record */
    memset(&c, 0, sizeof(c));
    MDB_val ck = {k->mv_size - 8, (uint8_t *)k->mv_data + 8};
    ctl_seg_key key;
    ctl_quota_dcam d;
    int rc = k->mv_size > 8 ? ctl_ledger_parse_key(&ck, 0, &key) : -EIO;
    if (rc == 0)
        rc = dcam_decode(v, &d);
    if (rc == 0)
        rc = cam_newest(w->l, w->txn, w->disk, ck.mv_data, ck.mv_size, &c.newest_us);
    if (rc != 0)
        return rc;
    memcpy(c.device, key.device, sizeof(c.device));
    c.channel = key.channel;
    c.bytes = d.bytes;
    c.segments = d.segments;
    c.oldest_us = d.head_us;
    return w->cb(w->ud, &c);
}

int ctl_quota_disk_cameras(ctl_ledger *l, MDB_txn *txn, uint64_t disk, ctl_disk_camera_cb cb,
                           void *ud)
{
    uint8_t prefix[8];
    put_be(prefix, disk, 8);
    cams_walk w = {l, txn, disk, cb, ud};
    return prefix_walk(txn, l->disk_cams, prefix, 8, 0, cams_cb, &w);
}

/* --- Protection --- */

typedef struct {
    ctl_ledger *l;
    MDB_txn *txn;
    uint64_t disk;
    int64_t from, to;
    int set; /* 1: protect, 0: unprotect what nothing else covers */
    const uint8_t *ck;
    size_t ckn;
    uint64_t bytes; /* changed */
    int dry;        /* count only */
} prot_walk;

/* For each segment of the camera on the disk overlapping [from, to), at
 * cur: its protected flag, rewritten in place. */
static int prot_seg(prot_walk *w, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    ctl_seg_key key;
    ctl_segment_rec rec;
    int rc = ctl_ledger_parse_key(k, 1, &key);
    if (rc == 0)
        rc = ctl_ledger_decode_segment(v, &rec);
    if (rc != 0)
        return rc;
    if (key.start_us >= w->to)
        return 1;
    if (key.start_us + rec.duration_us <= w->from || rec.disk_id != w->disk)
        return 0;
    if ((rec.is_protected != 0) == (w->set != 0))
        return 0;
    if (!w->set) {
        bool still;
        if ((rc = covered(w->l, w->txn, w->ck, w->ckn, key.start_us, key.start_us + rec.duration_us,
                          &still)) != 0)
            return rc;
        if (still)
            return 0;
    }
    w->bytes += rec.size;
    if (w->dry)
        return 0;
    rec.is_protected = w->set;
    uint8_t nv[SEG_VAL_MAX];
    MDB_val mk = *k, mv = {ctl_ledger_encode_segment(&key, &rec, nv), nv};
    if (mv.mv_size == 0)
        return -EIO;
    rc = c2d_mdb_errno(mdb_cursor_put(cur, &mk, &mv, MDB_CURRENT));
    return rc == -EEXIST ? -EIO : rc;
}

/* Walks the camera's segments that may overlap [from, to): from the one
 * before from. */
static int walk_range(prot_walk *w, const char *device, uint16_t ch)
{
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(w->txn, w->l->segments, &cur));
    if (rc != 0)
        return rc;
    uint8_t sk[KEY_MAX];
    size_t skn = ctl_ledger_make_key(sk, device, ch, w->from, 1);
    MDB_val k = {skn, sk}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    /* One step back: a segment that starts before from may reach into it.
     * At the first record there is nothing before: start where we were. */
    if (mrc == MDB_SUCCESS)
        mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    else
        mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (mrc == MDB_NOTFOUND || (mrc == MDB_SUCCESS && (k.mv_size != w->ckn + 8 ||
                                                       memcmp(k.mv_data, w->ck, w->ckn) != 0))) {
        k.mv_size = skn;
        k.mv_data = sk;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    /* prot_seg rewrites the record at the cursor (MDB_CURRENT): the
     * cursor stays where it was. */
    for (; mrc == MDB_SUCCESS; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != w->ckn + 8 || memcmp(k.mv_data, w->ck, w->ckn) != 0)
            break;
        if ((rc = prot_seg(w, cur, &k, &v)) != 0)
            break;
    }
    if (rc == 0 && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
    mdb_cursor_close(cur);
    return rc == 1 ? 0 : rc;
}

static size_t prot_key(uint8_t *buf, const uint8_t *ck, size_t ckn, int64_t from, int64_t to,
                       uint64_t owner)
{
    memcpy(buf, ck, ckn);
    put_be(buf + ckn, (uint64_t)from, 8);
    put_be(buf + ckn + 8, (uint64_t)to, 8);
    put_be(buf + ckn + 16, owner, 8);
    return ckn + 24;
}

int ctl_quota_protect(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch, int64_t from_us,
                      int64_t to_us, uint64_t owner, uint64_t *added)
{
    if (!c2d_device_id_valid(device) || from_us < 0 || to_us <= from_us || owner == 0)
        return -EINVAL;
    uint8_t ck[KEY_MAX], pk[PROT_KEY_MAX];
    size_t ckn = ctl_ledger_make_key(ck, device, ch, 0, 0);
    MDB_val mpk = {prot_key(pk, ck, ckn, from_us, to_us, owner), pk}, mpv;
    int rc = c2d_mdb_errno(mdb_get(txn, l->protect, &mpk, &mpv));
    if (rc != -ENOENT)
        return rc == 0 ? -EEXIST : rc;
    ctl_camera_rec cam;
    ctl_disk_rec d;
    uint64_t bytes = 0;
    rc = cam_read(l, txn, ck, ckn, &cam);
    if (rc == 0 && (rc = disk_read(l, txn, cam.disk, &d)) == 0) {
        prot_walk w = {l, txn, cam.disk, from_us, to_us, 1, ck, ckn, 0, 1};
        if ((rc = walk_range(&w, device, ch)) != 0)
            return rc;
        if (d.protected_bytes + w.bytes > d.cfg.capacity / 2)
            return -EDQUOT;
        w.dry = 0;
        w.bytes = 0;
        if ((rc = walk_range(&w, device, ch)) != 0)
            return rc;
        d.protected_bytes += w.bytes;
        bytes = w.bytes;
        if ((rc = disk_write(l, txn, cam.disk, &d)) != 0)
            return rc;
    } else if (rc != -ENOENT) {
        return rc;
    }
    /* Without a disk the range still protects what arrives later. */
    mpv.mv_size = 0;
    mpv.mv_data = (void *)"";
    if ((rc = c2d_mdb_errno(mdb_put(txn, l->protect, &mpk, &mpv, 0))) != 0)
        return rc == -EEXIST ? -EIO : rc;
    if (added)
        *added = bytes;
    return 0;
}

int ctl_quota_unprotect(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch,
                        int64_t from_us, int64_t to_us, uint64_t owner)
{
    if (!c2d_device_id_valid(device))
        return -EINVAL;
    uint8_t ck[KEY_MAX], pk[PROT_KEY_MAX];
    size_t ckn = ctl_ledger_make_key(ck, device, ch, 0, 0);
    MDB_val mpk = {prot_key(pk, ck, ckn, from_us, to_us, owner), pk};
    int rc = c2d_mdb_errno(mdb_del(txn, l->protect, &mpk, NULL));
    if (rc != 0)
        return rc;
    /* Segments of every disk the camera's segments count on: in practice
     * its current one. */
    ctl_camera_rec cam;
    ctl_disk_rec d;
    rc = cam_read(l, txn, ck, ckn, &cam);
    if (rc == -ENOENT)
        return 0;
    if (rc != 0 || (rc = disk_read(l, txn, cam.disk, &d)) != 0)
        return rc == -ENOENT ? 0 : rc;
    prot_walk w = {l, txn, cam.disk, from_us, to_us, 0, ck, ckn, 0, 0};
    if ((rc = walk_range(&w, device, ch)) != 0)
        return rc;
    if (d.protected_bytes < w.bytes)
        return -EIO;
    d.protected_bytes -= w.bytes;
    return disk_write(l, txn, cam.disk, &d);
}

/* --- Retention --- */

typedef struct {
    ctl_ledger *l;
    MDB_txn *txn;
    int64_t now;
    size_t max, removed;
    uint64_t *disks;
    size_t ndisks, cap;
    int err;
} sweep_ctx;

static int sweep_disk_cb(void *ud, const MDB_val *k, const MDB_val *v)
{
    sweep_ctx *s = ud;
    ctl_disk_rec d;
    if (k->mv_size > 8)
        return 0; /* a camera's usage on it */
    if (k->mv_size != 8 || disk_decode(v, &d) != 0)
        return -EIO;
    if (d.cfg.retention_us <= 0 || d.segments == 0)
        return 0;
    if (s->ndisks == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        uint64_t *p = realloc(s->disks, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        s->disks = p;
        s->cap = cap;
    }
    s->disks[s->ndisks++] = get_be(k->mv_data, 8);
    return 0;
}

/* Removes the disk's segments past retention (at most s->max in all). */
static int sweep_disk(sweep_ctx *s, uint64_t disk)
{
    ctl_disk_rec d;
    int rc = disk_read(s->l, s->txn, disk, &d);
    if (rc != 0)
        return rc;
    int64_t cutoff = s->now - d.cfg.retention_us;
    int changed = 0;
    while (s->removed < s->max) {
        key_batch b;
        if ((rc = collect_oldest(s->l, s->txn, disk, cutoff, cutoff, &b)) != 0)
            return rc;
        for (size_t i = 0; i < b.n && s->removed < s->max; i++) {
            if ((rc = remove_seg(s->l, s->txn, disk, b.keys[i], b.lens[i], &d)) != 0)
                return rc;
            s->removed++;
            changed = 1;
        }
        if (b.n < 64)
            break;
    }
    return changed ? disk_write(s->l, s->txn, disk, &d) : 0;
}

int ctl_quota_sweep(ctl_ledger *l, int64_t now_us, size_t max, size_t *removed)
{
    *removed = 0;
    if (l->readonly)
        return -EROFS;
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    sweep_ctx s = {.l = l, .txn = txn, .now = now_us, .max = max};
    /* The disks first, then their segments: no cursor on disks while they
     * are written. */
    rc = prefix_walk(txn, l->disks, NULL, 0, 0, sweep_disk_cb, &s);
    for (size_t i = 0; rc == 0 && i < s.ndisks && s.removed < max; i++)
        rc = sweep_disk(&s, s.disks[i]);
    free(s.disks);
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_txn_commit(txn));
    else
        mdb_txn_abort(txn);
    if (rc == 0)
        *removed = s.removed;
    return rc;
}

int64_t ctl_quota_cutoff(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch,
                         int64_t now_us)
{
    ctl_camera_rec cam;
    ctl_disk_rec d;
    if (ctl_quota_camera_get(l, txn, device, ch, &cam) != 0 ||
        disk_read(l, txn, cam.disk, &d) != 0 || d.cfg.retention_us <= 0)
        return INT64_MIN;
    return now_us - d.cfg.retention_us;
}

/* --- Trash --- */

int ctl_quota_fsck_trash_decode(const MDB_val *v, ctl_seg_key *key, char path[CTL_LEDGER_PATH_MAX])
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < 2 || p[0] > KEY_MAX || v->mv_size <= 1u + p[0] ||
        v->mv_size - 1 - p[0] >= CTL_LEDGER_PATH_MAX)
        return -EIO;
    MDB_val k = {p[0], (void *)(p + 1)};
    int rc = ctl_ledger_parse_key(&k, 1, key);
    if (rc != 0)
        return rc;
    size_t plen = v->mv_size - 1 - p[0];
    memcpy(path, p + 1 + p[0], plen);
    path[plen] = '\0';
    return memchr(path, '\0', plen) ? -EIO : 0;
}

typedef struct {
    uint8_t seq[CTL_QUOTA_TRASH_KEY];
    ctl_seg_key key;
    char path[CTL_LEDGER_PATH_MAX];
    int act; /* 0: unlink, then drop; 1: drop only (live again, or not ours) */
} trash_item;

typedef struct {
    ctl_ledger *l;
    MDB_txn *txn;
    trash_item it[64];
    size_t n;
} trash_batch;

static int collect_trash(void *ud, const MDB_val *k, const MDB_val *v)
{
    trash_batch *b = ud;
    trash_item *t = &b->it[b->n];
    if (k->mv_size != CTL_QUOTA_TRASH_KEY)
        return 0; /* not ours: fsck reports nothing, the janitor leaves it */
    memcpy(t->seq, k->mv_data, CTL_QUOTA_TRASH_KEY);
    t->act = 0;
    if (ctl_quota_fsck_trash_decode(v, &t->key, t->path) != 0) {
        t->act = 1; /* nothing to delete by */
    } else {
        /* Sent again and stored under the same path since: keep the file. */
        uint8_t sk[KEY_MAX];
        MDB_val msk = {ctl_ledger_make_key(sk, t->key.device, t->key.channel, t->key.start_us, 1),
                       sk},
                msv;
        ctl_segment_rec rec;
        int rc = c2d_mdb_errno(mdb_get(b->txn, b->l->segments, &msk, &msv));
        if (rc == 0 && ctl_ledger_decode_segment(&msv, &rec) == 0 && strcmp(rec.path, t->path) == 0)
            t->act = 1;
        else if (rc != 0 && rc != -ENOENT)
            return rc;
    }
    return ++b->n == 64 ? 1 : 0;
}

int ctl_quota_empty_trash(ctl_ledger *l, size_t max, ctl_quota_unlink_fn fn, void *ud, size_t *done)
{
    *done = 0;
    if (l->readonly)
        return -EROFS;
    uint8_t from[CTL_QUOTA_TRASH_KEY] = {0};
    while (*done < max) {
        MDB_txn *txn;
        int rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn));
        if (rc != 0)
            return rc;
        trash_batch *b = calloc(1, sizeof(*b));
        if (!b) {
            mdb_txn_abort(txn);
            return -ENOMEM;
        }
        b->l = l;
        b->txn = txn;
        /* From the first entry not kept in an earlier round. */
        rc = walk_from(txn, l->trash, from, sizeof(from), collect_trash, b);
        mdb_txn_abort(txn);
        size_t n = b->n, ok = 0;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            trash_item *t = &b->it[i];
            int u = t->act ? 0 : fn(ud, &t->key, t->path);
            if (u != 0 && u != -ENOENT)
                t->act = -1; /* kept for the next run */
            else
                ok += t->act == 0;
        }
        MDB_txn *wtxn = NULL;
        if (rc == 0 && n > 0)
            rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, 0, &wtxn));
        for (size_t i = 0; rc == 0 && i < n; i++) {
            if (b->it[i].act < 0)
                continue;
            MDB_val k = {CTL_QUOTA_TRASH_KEY, b->it[i].seq};
            rc = c2d_mdb_errno(mdb_del(wtxn, l->trash, &k, NULL));
            if (rc == -ENOENT)
                rc = 0;
        }
        if (wtxn && rc == 0)
            rc = c2d_mdb_errno(mdb_txn_commit(wtxn));
        else if (wtxn)
            mdb_txn_abort(wtxn);
        if (n > 0)
            memcpy(from, b->it[n - 1].seq, sizeof(from));
        free(b);
        if (rc != 0)
            return rc;
        *done += ok;
        if (n < 64)
            return 0;
        put_be(from, get_be(from, 8) + 1, 8);
    }
    return 0;
}

int ctl_quota_open_dbs(ctl_ledger *l, MDB_txn *txn, unsigned flags)
{
    static const char *const names[] = {"disks", "cameras", "protect", "trash"};
    MDB_dbi *dbis[] = {&l->disks, &l->cameras, &l->protect, &l->trash};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(names) / sizeof(names[0]); i++)
        rc = c2d_mdb_errno(mdb_dbi_open(txn, names[i], flags, dbis[i]));
    /* The cameras' usage records sit next to their disk's record. */
    l->disk_cams = l->disks;
    return rc;
}

int ctl_ledger_precheck(ctl_ledger *l, const ctl_seg_key *key, uint64_t size)
{
    if (!l->have_dbs)
        return l->open_mode ? 0 : -ENODEV;
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    uint8_t ck[KEY_MAX];
    size_t ckn = ctl_ledger_make_key(ck, key->device, key->channel, 0, 0);
    ctl_camera_rec cam;
    ctl_disk_rec d;
    rc = cam_read(l, txn, ck, ckn, &cam);
    if (rc == -ENOENT)
        rc = l->open_mode ? 0 : -ENODEV;
    else if (rc == 0 && !cam.backup)
        rc = -EACCES;
    else if (rc == 0 && (rc = disk_read(l, txn, cam.disk, &d)) == -ENOENT)
        rc = -ENODEV;
    else if (rc == 0 && !d.cfg.active)
        rc = -ENODEV;
    else if (rc == 0 && (size > d.cfg.capacity || (cam.cap && size > cam.cap)))
        rc = -EDQUOT;
    else if (rc == 0 && d.cfg.policy == CTL_DISK_STOP && d.used + size > d.cfg.capacity)
        rc = -EDQUOT;
    mdb_txn_abort(txn);
    return rc;
}

/* --- For fsck (ledger_int.h): the layouts above, nothing more --- */

int ctl_quota_fsck_disk_decode(const MDB_val *v, ctl_disk_rec *out)
{
    return disk_decode(v, out);
}

int ctl_quota_fsck_disk_put(ctl_ledger *l, MDB_txn *txn, uint64_t disk, const ctl_disk_rec *d)
{
    return disk_write(l, txn, disk, d);
}

size_t ctl_quota_fsck_dcam_key(uint8_t buf[CTL_QUOTA_DCAM_KEY_MAX], uint64_t disk,
                               const char *device, uint16_t ch)
{
    return dcam_key(buf, disk, device, ch);
}

int ctl_quota_fsck_dcam_decode(const MDB_val *v, ctl_quota_dcam *out)
{
    return dcam_decode(v, out);
}

int ctl_quota_fsck_dcam_put(ctl_ledger *l, MDB_txn *txn, const MDB_val *key,
                            const ctl_quota_dcam *d)
{
    return dcam_write(l, txn, key, d);
}

int ctl_quota_fsck_covered(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch,
                           int64_t from_us, int64_t to_us, int *out)
{
    uint8_t ck[KEY_MAX];
    bool b = false;
    int rc = covered(l, txn, ck, ctl_ledger_make_key(ck, device, ch, 0, 0), from_us, to_us, &b);
    if (rc == 0)
        *out = b;
    return rc;
}

int ctl_quota_disk_uncover(ctl_ledger *l, MDB_txn *txn, uint64_t disk)
{
    for (;;) {
        cam_of_disk c = {.disk = disk};
        int rc = prefix_walk(txn, l->cameras, NULL, 0, 0, collect_cam, &c);
        if (rc != 0 || c.b.n == 0)
            return rc;
        for (size_t i = 0; i < c.b.n; i++) {
            MDB_val k = {c.b.lens[i], c.b.keys[i]};
            if ((rc = c2d_mdb_errno(mdb_del(txn, l->cameras, &k, NULL))) != 0)
                return rc;
        }
    }
}

typedef struct {
    ctl_quota_camera_cb cb;
    void *ud;
    char last[C2D_DEVICE_ID_MAX + 1];
    int distinct; /* devices only, once each */
} cam_walk;

static int cam_walk_cb(void *ud, const MDB_val *k, const MDB_val *v)
{
    cam_walk *w = ud;
    ctl_seg_key key;
    int rc = ctl_ledger_parse_key(k, 0, &key);
    if (rc != 0 || v->mv_size != CAM_LEN)
        return rc ? rc : -EIO;
    if (w->distinct && strcmp(w->last, key.device) == 0)
        return 0;
    memcpy(w->last, key.device, sizeof(w->last));
    const uint8_t *p = v->mv_data;
    ctl_camera_rec c = {get_be(p + 1, 8), get_be(p + 9, 8), p[17]};
    return w->cb(w->ud, key.device, key.channel, &c);
}

int ctl_quota_cameras(ctl_ledger *l, MDB_txn *txn, const char *device, int distinct,
                      ctl_quota_camera_cb cb, void *ud)
{
    cam_walk w = {.cb = cb, .ud = ud, .distinct = distinct};
    if (!device)
        return prefix_walk(txn, l->cameras, NULL, 0, 0, cam_walk_cb, &w);
    if (!c2d_device_id_valid(device))
        return -EINVAL;
    return prefix_walk(txn, l->cameras, (const uint8_t *)device, strlen(device) + 1, 0, cam_walk_cb,
                       &w);
}
