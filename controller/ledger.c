#include "controller/ledger.h"
#include "common/c2d_lmdb.h"

#include "common/c2d_fs.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/ledger_int.h"

static int hex_to_raw(const char *hex, uint8_t raw[SHA_RAW])
{
    for (int i = 0; i < SHA_RAW; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = hex[2 * i + j];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0)
                return -EINVAL;
            v = v * 16 + d;
        }
        raw[i] = (uint8_t)v;
    }
    return hex[2 * SHA_RAW] == '\0' ? 0 : -EINVAL;
}

static void raw_to_hex(const uint8_t raw[SHA_RAW], char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < SHA_RAW; i++) {
        hex[2 * i] = digits[raw[i] >> 4];
        hex[2 * i + 1] = digits[raw[i] & 15];
    }
    hex[64] = '\0';
}

/* Builds the key; with_start 0 gives the usage key (device, ch). */
size_t ctl_ledger_make_key(uint8_t buf[KEY_MAX], const char *device, uint16_t ch, int64_t start,
                           int with_start)
{
    size_t n = strlen(device);
    memcpy(buf, device, n + 1);
    put_be(buf + n + 1, ch, 2);
    if (!with_start)
        return n + 3;
    put_be(buf + n + 3, (uint64_t)start, 8);
    return n + 11;
}

/* Decodes a key back; -EIO if it is not one of ours. */
int ctl_ledger_parse_key(const MDB_val *k, int with_start, ctl_seg_key *out)
{
    const uint8_t *p = k->mv_data;
    const uint8_t *nul = memchr(p, '\0', k->mv_size);
    if (!nul)
        return -EIO;
    size_t n = (size_t)(nul - p);
    if (k->mv_size != n + (with_start ? 11 : 3) || n > C2D_DEVICE_ID_MAX)
        return -EIO;
    ctl_seg_key key;
    memset(&key, 0, sizeof(key));
    memcpy(key.device, p, n);
    key.channel = (uint16_t)get_be(p + n + 1, 2);
    key.start_us = with_start ? (int64_t)get_be(p + n + 3, 8) : 0;
    if (!ctl_seg_key_valid(&key))
        return -EIO;
    *out = key;
    return 0;
}

/* The fixed part's length by the record's version (1: no disk, 2: the
 * disk before the path, 3: then the flags); 0 if it is not a record. */
static size_t seg_fixed(const MDB_val *v)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < 1)
        return 0;
    size_t fixed = p[0] == REC_VERSION         ? SEG_FIXED
                   : p[0] == SEG_VERSION_DISK  ? SEG_FIXED_DISK
                   : p[0] == SEG_VERSION_FLAGS ? SEG_FIXED_FLAGS
                                               : 0;
    return v->mv_size >= fixed ? fixed : 0;
}

int ctl_ledger_peek_segment(const MDB_val *v, ctl_seg_peek *out)
{
    const uint8_t *p = v->mv_data;
    size_t fixed = seg_fixed(v);
    if (!fixed || v->mv_size != fixed + get_be(p + fixed - 2, 2))
        return -EIO;
    out->duration_us = (int64_t)get_be(p + 1, 8);
    out->size = get_be(p + 9, 8);
    out->disk_id = fixed >= SEG_FIXED_DISK ? get_be(p + 57, 8) : 0;
    out->is_protected = fixed == SEG_FIXED_FLAGS ? p[65] & 1 : 0;
    return 0;
}

int ctl_ledger_decode_segment(const MDB_val *v, ctl_segment_rec *out)
{
    const uint8_t *p = v->mv_data;
    size_t fixed = seg_fixed(v);
    if (!fixed)
        return -EIO;
    size_t plen = (size_t)get_be(p + fixed - 2, 2);
    if (v->mv_size != fixed + plen || plen >= CTL_LEDGER_PATH_MAX)
        return -EIO;
    ctl_segment_rec r;
    memset(&r, 0, sizeof(r));
    r.duration_us = (int64_t)get_be(p + 1, 8);
    r.size = get_be(p + 9, 8);
    raw_to_hex(p + 17, r.sha256);
    r.committed_us = (int64_t)get_be(p + 49, 8);
    if (fixed >= SEG_FIXED_DISK)
        r.disk_id = get_be(p + 57, 8);
    if (fixed == SEG_FIXED_FLAGS)
        r.is_protected = p[65] & 1;
    memcpy(r.path, p + fixed, plen);
    *out = r;
    return 0;
}

static int decode_partial(const MDB_val *v, ctl_partial_rec *out)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size != PART_LEN || p[0] != REC_VERSION)
        return -EIO;
    ctl_partial_rec r;
    memset(&r, 0, sizeof(r));
    r.duration_us = (int64_t)get_be(p + 1, 8);
    r.size = get_be(p + 9, 8);
    raw_to_hex(p + 17, r.sha256);
    r.created_us = (int64_t)get_be(p + 49, 8);
    *out = r;
    return 0;
}

int ctl_ledger_decode_usage(const MDB_val *v, ctl_usage_rec *out)
{
    if (v->mv_size != USAGE_LEN && v->mv_size != USAGE_LEN + 8)
        return -EIO;
    out->bytes = get_be(v->mv_data, 8);
    out->segments = get_be((const uint8_t *)v->mv_data + 8, 8);
    return 0;
}

int ctl_ledger_open(const char *dir, uint64_t map_bytes, int readonly, ctl_ledger **out)
{
    ctl_ledger *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->readonly = readonly;
    MDB_txn *txn = NULL;
    int rc;
    if (!readonly && (rc = c2d_mkdirs(dir, 0750)) != 0)
        goto fail;
    if ((rc = c2d_mdb_errno(mdb_env_create(&l->env))) != 0)
        goto fail;
    if ((rc = c2d_mdb_errno(mdb_env_set_maxdbs(l->env, CTL_LEDGER_MAX_DBS))) != 0 ||
        (rc = c2d_mdb_errno(mdb_env_set_mapsize(l->env, (size_t)map_bytes))) != 0)
        goto fail;
    if ((rc = c2d_mdb_errno(mdb_env_open(l->env, dir, readonly ? MDB_RDONLY : 0, 0640))) != 0)
        goto fail;
    if (!readonly) {
        int dead = 0;
        mdb_reader_check(l->env, &dead); /* slots of crashed readers */
    }
    unsigned flags = readonly ? 0 : MDB_CREATE;
    if ((rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, readonly ? MDB_RDONLY : 0, &txn))) != 0)
        goto fail;
    rc = c2d_mdb_errno(mdb_dbi_open(txn, "segments", flags, &l->segments));
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_dbi_open(txn, "usage", flags, &l->usage));
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_dbi_open(txn, "partials", flags, &l->partials));
    if (rc == 0)
        rc = ctl_quota_open_dbs(l, txn, flags);
    if (rc == 0) {
        l->have_dbs = 1;
    } else if (!(readonly && rc == -ENOENT)) {
        goto fail;
    }
    rc = c2d_mdb_errno(mdb_txn_commit(txn)); /* commit keeps the handles open */
    txn = NULL;
    if (rc != 0)
        goto fail;
    *out = l;
    return 0;
fail:
    if (txn)
        mdb_txn_abort(txn);
    ctl_ledger_free(l);
    return rc;
}

void ctl_ledger_free(ctl_ledger *l)
{
    if (!l)
        return;
    if (l->env)
        mdb_env_close(l->env);
    free(l);
}

MDB_env *ctl_ledger_env(ctl_ledger *l)
{
    return l->env;
}

void ctl_ledger_set_open_mode(ctl_ledger *l, int on)
{
    l->open_mode = on;
}

int ctl_ledger_readonly(const ctl_ledger *l)
{
    return l->readonly;
}

/* Reads one value of dbi into a caller decode. */
static int get_one(ctl_ledger *l, MDB_dbi dbi, const uint8_t *k, size_t klen,
                   int (*decode)(const MDB_val *, void *), void *out)
{
    if (!l->have_dbs)
        return -ENOENT;
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    MDB_val key = {klen, (void *)k}, val;
    rc = c2d_mdb_errno(mdb_get(txn, dbi, &key, &val));
    if (rc == 0)
        rc = decode(&val, out);
    mdb_txn_abort(txn);
    return rc;
}

static int dec_seg(const MDB_val *v, void *out)
{
    return ctl_ledger_decode_segment(v, out);
}

static int dec_part(const MDB_val *v, void *out)
{
    return decode_partial(v, out);
}

int ctl_ledger_get_segment(ctl_ledger *l, const ctl_seg_key *key, ctl_segment_rec *out)
{
    if (!ctl_seg_key_valid(key))
        return -EINVAL;
    uint8_t k[KEY_MAX];
    size_t n = ctl_ledger_make_key(k, key->device, key->channel, key->start_us, 1);
    return get_one(l, l->segments, k, n, dec_seg, out);
}

int ctl_ledger_get_partial(ctl_ledger *l, const ctl_seg_key *key, ctl_partial_rec *out)
{
    if (!ctl_seg_key_valid(key))
        return -EINVAL;
    uint8_t k[KEY_MAX];
    size_t n = ctl_ledger_make_key(k, key->device, key->channel, key->start_us, 1);
    return get_one(l, l->partials, k, n, dec_part, out);
}

/* Per-camera usage is the sum of the camera's disk_cams records over the
 * disks it counted on (disk 0: open mode); see quota.h. */
typedef struct {
    ctl_seg_key cam;
    ctl_usage_rec u;
} cam_usage;

typedef struct {
    cam_usage *v;
    size_t n, cap;
} usage_map;

static int cam_cmp(const void *a, const void *b)
{
    const ctl_seg_key *x = &((const cam_usage *)a)->cam, *y = &((const cam_usage *)b)->cam;
    int c = strcmp(x->device, y->device);
    return c ? c : (int)x->channel - (int)y->channel;
}

/* All disk_cams records summed per camera, sorted by camera. */
static int usage_collect(ctl_ledger *l, MDB_txn *txn, usage_map *m)
{
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(txn, l->disk_cams, &cur));
    if (rc != 0)
        return rc;
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; mrc == MDB_SUCCESS; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size == 8)
            continue; /* a disk's own record (quota.h) */
        MDB_val ck = {k.mv_size - 8, (uint8_t *)k.mv_data + 8};
        cam_usage cu;
        if (k.mv_size < 8 || (rc = ctl_ledger_parse_key(&ck, 0, &cu.cam)) != 0 ||
            (rc = ctl_ledger_decode_usage(&v, &cu.u)) != 0)
            break;
        if (m->n == m->cap) {
            size_t cap = m->cap ? 2 * m->cap : 64;
            cam_usage *p = realloc(m->v, cap * sizeof(*p));
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            m->v = p;
            m->cap = cap;
        }
        m->v[m->n++] = cu;
    }
    if (rc == 0 && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
    mdb_cursor_close(cur);
    if (rc != 0)
        return rc == -ENOENT ? -EIO : rc;
    if (m->n > 1)
        qsort(m->v, m->n, sizeof(*m->v), cam_cmp);
    size_t w = 0; /* merge a camera's disks */
    for (size_t i = 0; i < m->n; i++) {
        if (w && cam_cmp(&m->v[w - 1], &m->v[i]) == 0) {
            m->v[w - 1].u.bytes += m->v[i].u.bytes;
            m->v[w - 1].u.segments += m->v[i].u.segments;
        } else {
            m->v[w++] = m->v[i];
        }
    }
    m->n = w;
    return 0;
}

/* Runs fn over the per-camera usage in a read transaction. */
static int with_usage(ctl_ledger *l, int (*fn)(void *ud, const usage_map *m), void *ud)
{
    if (!l->have_dbs)
        return fn(ud, &(usage_map){0});
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    usage_map m = {0};
    rc = usage_collect(l, txn, &m);
    mdb_txn_abort(txn);
    if (rc == 0)
        rc = fn(ud, &m);
    free(m.v);
    return rc;
}

typedef struct {
    ctl_seg_key want;
    ctl_usage_rec *out;
} usage_find;

static int find_usage(void *ud, const usage_map *m)
{
    usage_find *f = ud;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i].cam.device, f->want.device) == 0 &&
            m->v[i].cam.channel == f->want.channel) {
            *f->out = m->v[i].u;
            return 0;
        }
    return -ENOENT;
}

int ctl_ledger_get_usage(ctl_ledger *l, const char *device, uint16_t channel, ctl_usage_rec *out)
{
    if (!c2d_device_id_valid(device))
        return -EINVAL;
    usage_find f = {.out = out};
    snprintf(f.want.device, sizeof(f.want.device), "%s", device);
    f.want.channel = channel;
    return with_usage(l, find_usage, &f);
}

size_t ctl_ledger_encode_segment(const ctl_seg_key *key, const ctl_segment_rec *rec, uint8_t *v)
{
    size_t plen = strlen(rec->path);
    if (!ctl_seg_key_valid(key) || plen >= CTL_LEDGER_PATH_MAX || hex_to_raw(rec->sha256, v + 17))
        return 0;
    v[0] = SEG_VERSION_FLAGS;
    put_be(v + 1, (uint64_t)rec->duration_us, 8);
    put_be(v + 9, rec->size, 8);
    put_be(v + 49, (uint64_t)rec->committed_us, 8);
    put_be(v + 57, rec->disk_id, 8);
    v[65] = rec->is_protected != 0;
    put_be(v + 66, plen, 2);
    memcpy(v + SEG_FIXED_FLAGS, rec->path, plen);
    return SEG_FIXED_FLAGS + plen;
}

/* One segment inside txn: 0; -EEXIST, -ENODEV, -EACCES or -EDQUOT (refused,
 * nothing written); or a fatal error after which txn must be aborted. */
static int commit_one(ctl_ledger *l, MDB_txn *txn, const ctl_seg_key *key, ctl_segment_rec *rec)
{
    uint8_t k[KEY_MAX], v[SEG_VAL_MAX];
    size_t kn = ctl_ledger_make_key(k, key->device, key->channel, key->start_us, 1);
    MDB_val mk = {kn, k}, mv;
    int rc = c2d_mdb_errno(mdb_get(txn, l->segments, &mk, &mv));
    if (rc != -ENOENT)
        return rc == 0 ? -EEXIST : rc;
    /* The disk's rules, evictions included, in this transaction. */
    if ((rc = ctl_quota_admit(l, txn, key, rec)) != 0)
        return rc;
    size_t vlen = ctl_ledger_encode_segment(key, rec, v);
    mv.mv_size = vlen;
    mv.mv_data = v;
    if ((rc = c2d_mdb_errno(mdb_put(txn, l->segments, &mk, &mv, MDB_NOOVERWRITE))) != 0)
        return rc == -EEXIST ? -EIO : rc;
    /* Per-camera usage is disk_cams' (quota.c). The same segment evicted
     * and sent again may find its path in the trash still: the janitor
     * sees the live record and keeps the file. */
    rc = c2d_mdb_errno(mdb_del(txn, l->partials, &mk, NULL));
    if (rc != 0 && rc != -ENOENT)
        return rc == -EEXIST ? -EIO : rc;
    return 0;
}

/* Refusals of one segment that leave the transaction usable. */
static int refusal(int rc)
{
    return rc == -EEXIST || rc == -ENODEV || rc == -EACCES || rc == -EDQUOT;
}

int ctl_ledger_commit_segments(ctl_ledger *l, const ctl_seg_key *keys, const ctl_segment_rec *recs,
                               size_t n, int *rcs)
{
    if (l->readonly) {
        for (size_t i = 0; i < n; i++)
            rcs[i] = -EROFS;
        return -EROFS;
    }
    uint8_t v[SEG_VAL_MAX];
    size_t todo = 0;
    for (size_t i = 0; i < n; i++) {
        rcs[i] = ctl_ledger_encode_segment(&keys[i], &recs[i], v) ? 0 : -EINVAL;
        todo += rcs[i] == 0;
    }
    if (todo == 0)
        return 0;
    MDB_txn *txn = NULL;
    int rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, 0, &txn));
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (rcs[i] != 0)
            continue;
        ctl_segment_rec rec = recs[i];
        int r = commit_one(l, txn, &keys[i], &rec);
        if (refusal(r))
            rcs[i] = r;
        else
            rc = r;
    }
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_txn_commit(txn));
    else if (txn)
        mdb_txn_abort(txn);
    if (rc != 0)
        for (size_t i = 0; i < n; i++)
            if (rcs[i] == 0)
                rcs[i] = rc;
    return rc;
}

int ctl_ledger_commit_segment(ctl_ledger *l, const ctl_seg_key *key, const ctl_segment_rec *rec)
{
    int rc;
    ctl_ledger_commit_segments(l, key, rec, 1, &rc);
    return rc;
}

int ctl_ledger_put_partial(ctl_ledger *l, const ctl_seg_key *key, const ctl_partial_rec *rec)
{
    if (l->readonly)
        return -EROFS;
    uint8_t v[PART_LEN];
    if (!ctl_seg_key_valid(key) || hex_to_raw(rec->sha256, v + 17))
        return -EINVAL;
    v[0] = REC_VERSION;
    put_be(v + 1, (uint64_t)rec->duration_us, 8);
    put_be(v + 9, rec->size, 8);
    put_be(v + 49, (uint64_t)rec->created_us, 8);
    uint8_t k[KEY_MAX];
    size_t kn = ctl_ledger_make_key(k, key->device, key->channel, key->start_us, 1);
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    MDB_val mk = {kn, k}, mv = {PART_LEN, v};
    if ((rc = c2d_mdb_errno(mdb_put(txn, l->partials, &mk, &mv, 0))) != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return c2d_mdb_errno(mdb_txn_commit(txn));
}

int ctl_ledger_del_partial(ctl_ledger *l, const ctl_seg_key *key)
{
    if (l->readonly)
        return -EROFS;
    if (!ctl_seg_key_valid(key))
        return -EINVAL;
    uint8_t k[KEY_MAX];
    size_t kn = ctl_ledger_make_key(k, key->device, key->channel, key->start_us, 1);
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    MDB_val mk = {kn, k};
    if ((rc = c2d_mdb_errno(mdb_del(txn, l->partials, &mk, NULL))) != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return c2d_mdb_errno(mdb_txn_commit(txn));
}

/* Walks dbi from prefix (all if plen 0) while keys start with it. */
typedef int (*walk_fn)(void *ud, const MDB_val *k, const MDB_val *v);

static int walk(ctl_ledger *l, MDB_dbi dbi, const uint8_t *prefix, size_t plen, walk_fn fn,
                void *ud)
{
    if (!l->have_dbs)
        return 0;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    if ((rc = c2d_mdb_errno(mdb_cursor_open(txn, dbi, &cur))) != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    MDB_val k = {plen, (void *)prefix}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
    while (mrc == MDB_SUCCESS) {
        if (plen && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
            break;
        if ((rc = fn(ud, &k, &v)) != 0)
            break;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc == 0 && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

typedef struct {
    ctl_ledger_segment_cb seg;
    ctl_ledger_partial_cb part;
    ctl_ledger_usage_cb usage;
    void *ud;
} walk_ctx;

static int walk_seg(void *ud, const MDB_val *k, const MDB_val *v)
{
    walk_ctx *w = ud;
    ctl_seg_key key;
    ctl_segment_rec rec;
    int rc = ctl_ledger_parse_key(k, 1, &key);
    if (rc == 0)
        rc = ctl_ledger_decode_segment(v, &rec);
    return rc != 0 ? rc : w->seg(w->ud, &key, &rec);
}

static int walk_part(void *ud, const MDB_val *k, const MDB_val *v)
{
    walk_ctx *w = ud;
    ctl_seg_key key;
    ctl_partial_rec rec;
    int rc = ctl_ledger_parse_key(k, 1, &key);
    if (rc == 0)
        rc = decode_partial(v, &rec);
    return rc != 0 ? rc : w->part(w->ud, &key, &rec);
}

int ctl_ledger_foreach_segment(ctl_ledger *l, ctl_ledger_segment_cb cb, void *ud)
{
    walk_ctx w = {.seg = cb, .ud = ud};
    return walk(l, l->segments, NULL, 0, walk_seg, &w);
}

int ctl_ledger_foreach_partial(ctl_ledger *l, const char *device, ctl_ledger_partial_cb cb,
                               void *ud)
{
    walk_ctx w = {.part = cb, .ud = ud};
    if (!device)
        return walk(l, l->partials, NULL, 0, walk_part, &w);
    if (!c2d_device_id_valid(device))
        return -EINVAL;
    size_t n = strlen(device);
    return walk(l, l->partials, (const uint8_t *)device, n + 1, walk_part, &w);
}

typedef struct {
    ctl_ledger_usage_cb cb;
    void *ud;
} usage_each;

static int each_usage(void *ud, const usage_map *m)
{
    usage_each *e = ud;
    for (size_t i = 0; i < m->n; i++) {
        int rc = e->cb(e->ud, m->v[i].cam.device, m->v[i].cam.channel, &m->v[i].u);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int ctl_ledger_foreach_usage(ctl_ledger *l, ctl_ledger_usage_cb cb, void *ud)
{
    usage_each e = {cb, ud};
    return with_usage(l, each_usage, &e);
}

/* Ranged walk (recordings, controller/recordings.c). */
int ctl_ledger_foreach_segment_range(ctl_ledger *l, MDB_txn *txn, const char *device,
                                     uint16_t channel, int64_t from_us, int64_t to_us,
                                     ctl_ledger_segment_cb cb, void *ud)
{
    if (!c2d_device_id_valid(device) || from_us < 0 || (to_us && to_us <= from_us))
        return -EINVAL;
    if (!l->have_dbs)
        return 0;
    MDB_txn *own = NULL;
    MDB_cursor *cur = NULL;
    int rc = 0;
    if (!txn && (rc = c2d_mdb_errno(mdb_txn_begin(l->env, NULL, MDB_RDONLY, &own))) != 0)
        return rc;
    if ((rc = c2d_mdb_errno(mdb_cursor_open(txn ? txn : own, l->segments, &cur))) != 0)
        goto out;
    uint8_t k[KEY_MAX], prefix[KEY_MAX];
    size_t plen = ctl_ledger_make_key(prefix, device, channel, 0, 0);
    size_t kn = ctl_ledger_make_key(k, device, channel, from_us, 1);
    MDB_val mk = {kn, k}, mv;
    /* One step back from the first start >= from: that segment may still
     * be running at from. */
    int mrc = mdb_cursor_get(cur, &mk, &mv, MDB_SET_RANGE);
    mrc = mdb_cursor_get(cur, &mk, &mv, mrc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV);
    if (mrc == MDB_NOTFOUND)
        mrc = mdb_cursor_get(cur, &mk, &mv, MDB_FIRST);
    for (; mrc == MDB_SUCCESS; mrc = mdb_cursor_get(cur, &mk, &mv, MDB_NEXT)) {
        if (mk.mv_size < plen || memcmp(mk.mv_data, prefix, plen) != 0) {
            size_t m = mk.mv_size < plen ? mk.mv_size : plen;
            int c = memcmp(mk.mv_data, prefix, m);
            if (c < 0 || (c == 0 && mk.mv_size < plen))
                continue; /* the step back landed before the camera */
            break;
        }
        ctl_seg_key key;
        ctl_segment_rec rec;
        if ((rc = ctl_ledger_parse_key(&mk, 1, &key)) != 0 ||
            (rc = ctl_ledger_decode_segment(&mv, &rec)) != 0)
            break;
        if (to_us && key.start_us >= to_us)
            break;
        if (key.start_us + rec.duration_us <= from_us && key.start_us < from_us)
            continue;
        if ((rc = cb(ud, &key, &rec)) != 0)
            break;
    }
    if (rc == 0 && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
out:
    if (cur)
        mdb_cursor_close(cur);
    if (own)
        mdb_txn_abort(own);
    return rc;
}
