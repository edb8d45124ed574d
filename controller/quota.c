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
#define DSEG_VAL (8 + 1)
/* disk_segs key: disk + start + camera key. */
#define DSEG_KEY_MAX (8 + 8 + KEY_MAX)
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

/* disk_segs key of a segment. */
static size_t dseg_key(uint8_t *buf, uint64_t disk, const ctl_seg_key *key)
{
    put_be(buf, disk, 8);
    put_be(buf + 8, (uint64_t)key->start_us, 8);
    return 16 + ctl_ledger_make_key(buf + 16, key->device, key->channel, 0, 0);
}

/* The segment key of a disk_segs key. */
static int dseg_parse(const MDB_val *k, uint64_t *disk, ctl_seg_key *key)
{
    if (k->mv_size < 16 + 4)
        return -EIO;
    const uint8_t *p = k->mv_data;
    MDB_val ck = {k->mv_size - 16, (void *)(p + 16)};
    int rc = ctl_ledger_parse_key(&ck, 0, key);
    if (rc != 0)
        return rc;
    *disk = get_be(p, 8);
    key->start_us = (int64_t)get_be(p + 8, 8);
    return ctl_seg_key_valid(key) ? 0 : -EIO;
}

/* disk_cams key. */
static size_t dcam_key(uint8_t *buf, uint64_t disk, const char *device, uint16_t ch)
{
    put_be(buf, disk, 8);
    return 8 + ctl_ledger_make_key(buf + 8, device, ch, 0, 0);
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
    uint8_t key[DSEG_KEY_MAX];
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

static bool plan_has(const plan *pl, const MDB_val *k)
{
    for (size_t i = 0; i < pl->n; i++)
        if (pl->p[i].klen == k->mv_size && memcmp(pl->p[i].key, k->mv_data, k->mv_size) == 0)
            return true;
    return false;
}

static int plan_add(plan *pl, const MDB_val *k, uint64_t size)
{
    if (pl->n == PLAN_MAX || k->mv_size > DSEG_KEY_MAX)
        return -EDQUOT;
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? 2 * pl->cap : 16;
        planned *p = realloc(pl->p, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        pl->p = p;
        pl->cap = cap;
    }
    memcpy(pl->p[pl->n].key, k->mv_data, k->mv_size);
    pl->p[pl->n].klen = k->mv_size;
    pl->p[pl->n].size = size;
    pl->n++;
    pl->bytes += size;
    return 0;
}

/* Plans the eviction of the disk's oldest unprotected segments that start
 * before `before` (the new segment: never evict newer video for an older
 * one), skipping those planned already, until pl->bytes reaches need.
 * camera non-NULL: that camera's segments only. -EDQUOT if they do not
 * add up. */
static int plan_evictions(ctl_ledger *l, MDB_txn *txn, uint64_t disk, const uint8_t *camera,
                          size_t camlen, int64_t before, uint64_t need, uint64_t want, plan *pl)
{
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(txn, l->disk_segs, &cur));
    if (rc != 0)
        return rc;
    uint8_t prefix[8];
    put_be(prefix, disk, 8);
    MDB_val k = {8, prefix}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (; mrc == MDB_SUCCESS && pl->bytes < want; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        if (k.mv_size < 16 || memcmp(p, prefix, 8) != 0)
            break;
        if ((int64_t)get_be(p + 8, 8) >= before)
            break;
        if (v.mv_size != DSEG_VAL) {
            rc = -EIO;
            break;
        }
        const uint8_t *val = v.mv_data;
        if (val[8] || (camera && (k.mv_size != 16 + camlen || memcmp(p + 16, camera, camlen))))
            continue; /* protected, or another camera */
        if (plan_has(pl, &k))
            continue;
        uint64_t size = get_be(val, 8);
        /* Beyond what is needed, only whole segments within the headroom. */
        if (pl->bytes >= need && pl->bytes + size > want)
            break;
        if ((rc = plan_add(pl, &k, size)) != 0)
            break;
    }
    if (rc == 0 && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
    mdb_cursor_close(cur);
    if (rc == 0 && pl->bytes < need)
        rc = -EDQUOT;
    return rc;
}

static int trash_put(ctl_ledger *l, MDB_txn *txn, const char *path)
{
    MDB_val k = {strlen(path), (void *)path}, v = {0, (void *)""};
    if (k.mv_size == 0)
        return 0;
    int rc = c2d_mdb_errno(mdb_put(txn, l->trash, &k, &v, 0));
    return rc == -EEXIST ? -EIO : rc;
}

/* Removes one segment given its disk_segs key: records, sums (the disk's
 * into *d), and its file to the trash. */
static int remove_seg(ctl_ledger *l, MDB_txn *txn, const MDB_val *dk, ctl_disk_rec *d)
{
    uint64_t disk;
    ctl_seg_key key;
    int rc = dseg_parse(dk, &disk, &key);
    if (rc != 0)
        return rc;
    MDB_val dv;
    if ((rc = c2d_mdb_errno(mdb_get(txn, l->disk_segs, (MDB_val *)dk, &dv))) != 0)
        return rc == -ENOENT ? -EIO : rc;
    if (dv.mv_size != DSEG_VAL)
        return -EIO;
    bool prot = ((const uint8_t *)dv.mv_data)[8] != 0;
    uint8_t sk[KEY_MAX], dck[8 + KEY_MAX];
    size_t skn = ctl_ledger_make_key(sk, key.device, key.channel, key.start_us, 1);
    size_t dckn = dcam_key(dck, disk, key.device, key.channel);
    MDB_val msk = {skn, sk}, msv;
    ctl_segment_rec rec;
    if ((rc = c2d_mdb_errno(mdb_get(txn, l->segments, &msk, &msv))) != 0 ||
        (rc = ctl_ledger_decode_segment(&msv, &rec)) != 0)
        return rc == -ENOENT ? -EIO : rc;
    MDB_val mdck = {dckn, dck};
    MDB_val copy = *dk; /* dk may point into the page mdb_del frees */
    uint8_t kb[DSEG_KEY_MAX];
    memcpy(kb, dk->mv_data, dk->mv_size);
    copy.mv_data = kb;
    if ((rc = trash_put(l, txn, rec.path)) != 0 ||
        (rc = c2d_mdb_errno(mdb_del(txn, l->segments, &msk, NULL))) != 0 ||
        (rc = c2d_mdb_errno(mdb_del(txn, l->disk_segs, &copy, NULL))) != 0 ||
        (rc = ctl_ledger_usage_add(txn, l->disk_cams, &mdck, rec.size, -1)) != 0)
        return rc == -ENOENT ? -EIO : rc;
    if (d->used < rec.size || d->segments < 1 || (prot && d->protected_bytes < rec.size))
        return -EIO;
    d->used -= rec.size;
    d->segments--;
    if (prot)
        d->protected_bytes -= rec.size;
    return 0;
}

static int evict_plan(ctl_ledger *l, MDB_txn *txn, const plan *pl, ctl_disk_rec *d)
{
    for (size_t i = 0; i < pl->n; i++) {
        MDB_val k = {pl->p[i].klen, (void *)pl->p[i].key};
        int rc = remove_seg(l, txn, &k, d);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* --- Admission --- */

int ctl_quota_admit(ctl_ledger *l, MDB_txn *txn, const ctl_seg_key *key, const ctl_segment_rec *rec,
                    uint64_t *disk_out)
{
    uint8_t ck[KEY_MAX];
    size_t ckn = ctl_ledger_make_key(ck, key->device, key->channel, 0, 0);
    ctl_camera_rec cam;
    int rc = cam_read(l, txn, ck, ckn, &cam);
    if (rc == -ENOENT && l->open_mode) {
        /* Counted on disk 0's camera usage: no disk, no rules. */
        uint8_t zk[8 + KEY_MAX];
        MDB_val mzk = {dcam_key(zk, 0, key->device, key->channel), zk};
        *disk_out = 0;
        return ctl_ledger_usage_add(txn, l->disk_cams, &mzk, rec->size, 1);
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
    size_t dckn = dcam_key(dck, cam.disk, key->device, key->channel);
    MDB_val mdck = {dckn, dck}, mv;
    ctl_usage_rec cu = {0, 0};
    rc = c2d_mdb_errno(mdb_get(txn, l->disk_cams, &mdck, &mv));
    if (rc == 0)
        rc = ctl_ledger_decode_usage(&mv, &cu);
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
    if ((rc = evict_plan(l, txn, &pl, &d)) != 0)
        goto out;

    /* Record the segment in its disk. */
    uint8_t dk[DSEG_KEY_MAX], dv[DSEG_VAL];
    size_t dkn = dseg_key(dk, cam.disk, key);
    put_be(dv, rec->size, 8);
    dv[8] = prot;
    MDB_val mdk = {dkn, dk}, mdv = {DSEG_VAL, dv};
    if ((rc = c2d_mdb_errno(mdb_put(txn, l->disk_segs, &mdk, &mdv, 0))) != 0 ||
        (rc = ctl_ledger_usage_add(txn, l->disk_cams, &mdck, rec->size, 1)) != 0)
        goto out;
    d.used += rec->size;
    d.segments++;
    if (prot)
        d.protected_bytes += rec->size;
    if ((rc = disk_write(l, txn, cam.disk, &d)) == 0)
        *disk_out = cam.disk;
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
        rc = evict_plan(l, txn, &pl, d);
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
    uint8_t end[DSEG_KEY_MAX + 1];
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

static int take_start(void *ud, const MDB_val *k, const MDB_val *v)
{
    (void)v;
    *(int64_t *)ud = (int64_t)get_be((const uint8_t *)k->mv_data + 8, 8);
    return 1;
}

int ctl_quota_disk_span(ctl_ledger *l, MDB_txn *txn, uint64_t disk, int64_t *oldest,
                        int64_t *newest)
{
    uint8_t prefix[8];
    put_be(prefix, disk, 8);
    *oldest = *newest = 0;
    int rc = prefix_walk(txn, l->disk_segs, prefix, 8, 0, take_start, oldest);
    if (rc == 0)
        rc = prefix_walk(txn, l->disk_segs, prefix, 8, 1, take_start, newest);
    return rc;
}

typedef struct {
    uint8_t keys[64][DSEG_KEY_MAX];
    size_t lens[64];
    size_t n;
} key_batch;

static int collect_key(void *ud, const MDB_val *k, const MDB_val *v)
{
    (void)v;
    key_batch *b = ud;
    if (k->mv_size > DSEG_KEY_MAX)
        return -EIO;
    memcpy(b->keys[b->n], k->mv_data, k->mv_size);
    b->lens[b->n] = k->mv_size;
    return ++b->n == 64 ? 1 : 0;
}

typedef struct {
    uint64_t disk;
    key_batch b;
} cam_of_disk;

static int collect_cam(void *ud, const MDB_val *k, const MDB_val *v)
{
    cam_of_disk *c = ud;
    if (v->mv_size != CAM_LEN || k->mv_size > DSEG_KEY_MAX)
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
    uint8_t prefix[8];
    put_be(prefix, disk, 8);
    for (;;) { /* its segments */
        key_batch b = {.n = 0};
        if ((rc = prefix_walk(txn, l->disk_segs, prefix, 8, 0, collect_key, &b)) != 0)
            return rc;
        if (b.n == 0)
            break;
        for (size_t i = 0; i < b.n; i++) {
            MDB_val k = {b.lens[i], b.keys[i]};
            if ((rc = remove_seg(l, txn, &k, &d)) != 0)
                return rc;
        }
    }
    if (d.used || d.segments || d.protected_bytes)
        return -EIO;
    for (;;) { /* the cameras it covers */
        cam_of_disk c = {.disk = disk};
        if ((rc = prefix_walk(txn, l->cameras, NULL, 0, 0, collect_cam, &c)) != 0)
            return rc;
        if (c.b.n == 0)
            break;
        for (size_t i = 0; i < c.b.n; i++) {
            MDB_val k = {c.b.lens[i], c.b.keys[i]};
            if ((rc = c2d_mdb_errno(mdb_del(txn, l->cameras, &k, NULL))) != 0)
                return rc;
        }
    }
    MDB_val mk = {8, prefix};
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
    memset(&c, 0, sizeof(c));
    MDB_val ck = {k->mv_size - 8, (uint8_t *)k->mv_data + 8};
    ctl_seg_key key;
    ctl_usage_rec u;
    int rc = ctl_ledger_parse_key(&ck, 0, &key);
    if (rc == 0)
        rc = ctl_ledger_decode_usage(v, &u);
    if (rc != 0)
        return rc;
    memcpy(c.device, key.device, sizeof(c.device));
    c.channel = key.channel;
    c.bytes = u.bytes;
    c.segments = u.segments;
    /* Oldest and newest on this disk: the disk's segments are by time, so
     * scan from each end for this camera (cheap when cameras interleave). */
    uint8_t prefix[8];
    put_be(prefix, w->disk, 8);
    MDB_cursor *cur;
    if ((rc = c2d_mdb_errno(mdb_cursor_open(w->txn, w->l->disk_segs, &cur))) != 0)
        return rc;
    for (int dir = 0; dir < 2 && rc == 0; dir++) {
        uint8_t end[8 + 8 + KEY_MAX + 1];
        MDB_val sk = {8, prefix}, sv;
        int mrc;
        if (dir == 0) {
            mrc = mdb_cursor_get(cur, &sk, &sv, MDB_SET_RANGE);
        } else {
            memcpy(end, prefix, 8);
            memset(end + 8, 0xff, sizeof(end) - 8);
            sk.mv_size = sizeof(end);
            sk.mv_data = end;
            mrc = mdb_cursor_get(cur, &sk, &sv, MDB_SET_RANGE);
            mrc = mrc == MDB_SUCCESS ? mdb_cursor_get(cur, &sk, &sv, MDB_PREV)
                                     : mdb_cursor_get(cur, &sk, &sv, MDB_LAST);
        }
        int64_t at = 0;
        for (; mrc == MDB_SUCCESS; mrc = mdb_cursor_get(cur, &sk, &sv, dir ? MDB_PREV : MDB_NEXT)) {
            const uint8_t *p = sk.mv_data;
            if (sk.mv_size < 16 || memcmp(p, prefix, 8) != 0)
                break;
            if (sk.mv_size == 16 + ck.mv_size && memcmp(p + 16, ck.mv_data, ck.mv_size) == 0) {
                at = (int64_t)get_be(p + 8, 8);
                break;
            }
        }
        if (mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
            rc = c2d_mdb_errno(mrc);
        if (dir == 0)
            c.oldest_us = at;
        else
            c.newest_us = at;
    }
    mdb_cursor_close(cur);
    return rc ? rc : w->cb(w->ud, &c);
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

/* For each segment of the camera on the disk overlapping [from, to). */
static int prot_seg(void *ud, const MDB_val *k, const MDB_val *v)
{
    prot_walk *w = ud;
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
    uint8_t dk[DSEG_KEY_MAX];
    MDB_val mdk = {dseg_key(dk, w->disk, &key), dk}, mdv;
    if ((rc = c2d_mdb_errno(mdb_get(w->txn, w->l->disk_segs, &mdk, &mdv))) != 0)
        return rc == -ENOENT ? -EIO : rc;
    if (mdv.mv_size != DSEG_VAL)
        return -EIO;
    uint8_t val[DSEG_VAL];
    memcpy(val, mdv.mv_data, DSEG_VAL);
    if ((val[8] != 0) == (w->set != 0))
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
    val[8] = (uint8_t)w->set;
    mdv.mv_size = DSEG_VAL;
    mdv.mv_data = val;
    rc = c2d_mdb_errno(mdb_put(w->txn, w->l->disk_segs, &mdk, &mdv, 0));
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
    /* prot_seg writes disk_segs, never segments: the cursor stays valid. */
    for (; mrc == MDB_SUCCESS; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != w->ckn + 8 || memcmp(k.mv_data, w->ck, w->ckn) != 0)
            break;
        if ((rc = prot_seg(w, &k, &v)) != 0)
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
    uint8_t prefix[8];
    put_be(prefix, disk, 8);
    int changed = 0, more = 1;
    while (more && s->removed < s->max) {
        key_batch b = {.n = 0};
        if ((rc = prefix_walk(s->txn, s->l->disk_segs, prefix, 8, 0, collect_key, &b)) != 0)
            return rc;
        size_t gone = 0;
        more = b.n == 64;
        for (size_t i = 0; i < b.n && s->removed < s->max; i++) {
            uint64_t dk;
            ctl_seg_key key;
            MDB_val k = {b.lens[i], b.keys[i]};
            if ((rc = dseg_parse(&k, &dk, &key)) != 0)
                return rc;
            if (key.start_us >= cutoff) {
                more = 0; /* by time: the rest is younger */
                break;
            }
            uint8_t sk[KEY_MAX];
            MDB_val msk = {ctl_ledger_make_key(sk, key.device, key.channel, key.start_us, 1), sk},
                    msv;
            ctl_segment_rec rec;
            if ((rc = c2d_mdb_errno(mdb_get(s->txn, s->l->segments, &msk, &msv))) != 0 ||
                (rc = ctl_ledger_decode_segment(&msv, &rec)) != 0)
                return rc == -ENOENT ? -EIO : rc;
            if (key.start_us + rec.duration_us > cutoff)
                continue; /* not all of it has passed */
            if ((rc = remove_seg(s->l, s->txn, &k, &d)) != 0)
                return rc;
            s->removed++;
            gone++;
            changed = 1;
        }
        if (gone == 0)
            break; /* only segments that have not wholly passed are left in the batch */
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

typedef struct {
    char paths[64][CTL_LEDGER_PATH_MAX];
    size_t n;
} path_batch;

static int collect_path(void *ud, const MDB_val *k, const MDB_val *v)
{
    (void)v;
    path_batch *b = ud;
    if (k->mv_size >= CTL_LEDGER_PATH_MAX)
        return 0; /* not ours: left for fsck */
    memcpy(b->paths[b->n], k->mv_data, k->mv_size);
    b->paths[b->n][k->mv_size] = '\0';
    return ++b->n == 64 ? 1 : 0;
}

int ctl_quota_empty_trash(ctl_ledger *l, size_t max, ctl_quota_unlink_fn fn, void *ud, size_t *done)
{
    *done = 0;
    if (l->readonly)
        return -EROFS;
    while (*done < max) {
        path_batch b = {.n = 0};
        MDB_txn *txn;
        int rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn));
        if (rc != 0)
            return rc;
        rc = prefix_walk(txn, l->trash, NULL, 0, 0, collect_path, &b);
        mdb_txn_abort(txn);
        if (rc != 0 || b.n == 0)
            return rc;
        size_t ok = 0;
        for (size_t i = 0; i < b.n; i++) {
            int u = fn(ud, b.paths[i]);
            if (u != 0 && u != -ENOENT)
                b.paths[i][0] = '\0'; /* keep it for the next round */
            else
                ok++;
        }
        if ((rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, 0, &txn))) != 0)
            return rc;
        for (size_t i = 0; rc == 0 && i < b.n; i++) {
            if (!b.paths[i][0])
                continue;
            MDB_val k = {strlen(b.paths[i]), b.paths[i]};
            rc = c2d_mdb_errno(mdb_del(txn, l->trash, &k, NULL));
            if (rc == -ENOENT)
                rc = 0;
        }
        if (rc == 0)
            rc = c2d_mdb_errno(mdb_txn_commit(txn));
        else
            mdb_txn_abort(txn);
        if (rc != 0)
            return rc;
        *done += ok;
        if (ok == 0 || b.n < 64)
            return 0;
    }
    return 0;
}

int ctl_quota_in_trash(ctl_ledger *l, MDB_txn *txn, const char *relpath)
{
    MDB_val k = {strlen(relpath), (void *)relpath}, v;
    return mdb_get(txn, l->trash, &k, &v) == MDB_SUCCESS;
}

int ctl_quota_open_dbs(ctl_ledger *l, MDB_txn *txn, unsigned flags)
{
    static const char *const names[] = {"disks",     "cameras", "disk_segs",
                                        "disk_cams", "protect", "trash"};
    MDB_dbi *dbis[] = {&l->disks,     &l->cameras, &l->disk_segs,
                       &l->disk_cams, &l->protect, &l->trash};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(names) / sizeof(names[0]); i++)
        rc = c2d_mdb_errno(mdb_dbi_open(txn, names[i], flags, dbis[i]));
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

size_t ctl_quota_fsck_dseg_key(uint8_t buf[CTL_QUOTA_DSEG_KEY_MAX], uint64_t disk,
                               const ctl_seg_key *key)
{
    return dseg_key(buf, disk, key);
}

int ctl_quota_fsck_dseg_parse(const MDB_val *k, uint64_t *disk, ctl_seg_key *key)
{
    return dseg_parse(k, disk, key);
}

int ctl_quota_fsck_dseg_decode(const MDB_val *v, uint64_t *size, int *prot)
{
    if (v->mv_size != DSEG_VAL)
        return -EIO;
    *size = get_be(v->mv_data, 8);
    *prot = ((const uint8_t *)v->mv_data)[8] != 0;
    return 0;
}

int ctl_quota_fsck_dseg_put(ctl_ledger *l, MDB_txn *txn, uint64_t disk, const ctl_seg_key *key,
                            uint64_t size, int prot)
{
    uint8_t dk[DSEG_KEY_MAX], dv[DSEG_VAL];
    put_be(dv, size, 8);
    dv[8] = prot != 0;
    MDB_val mk = {dseg_key(dk, disk, key), dk}, mv = {DSEG_VAL, dv};
    int rc = c2d_mdb_errno(mdb_put(txn, l->disk_segs, &mk, &mv, 0));
    return rc == -EEXIST ? -EIO : rc;
}

size_t ctl_quota_fsck_dcam_key(uint8_t buf[CTL_QUOTA_DCAM_KEY_MAX], uint64_t disk,
                               const char *device, uint16_t ch)
{
    return dcam_key(buf, disk, device, ch);
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
