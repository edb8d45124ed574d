/* fsck: the ledger against the store (see fsck.h). The segment records
 * are the truth: every sum is recomputed from them, and a record whose
 * file is missing or wrong goes (its file to quarantine/). */
#include "controller/fsck.h"

#include "common/c2d_fs.h"
#include "common/c2d_hash.h"
#include "common/c2d_lmdb.h"
#include "controller/ledger_int.h"
#include "controller/quota.h"
#include "controller/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Deepest directory level walked under store/ and partial/: the store
 * makes two (device/channel), anything deeper is an orphan anyway. */
#define WALK_DEPTH 8
/* Quarantine names tried for one file (name, name.1, ...). */
#define QUARANTINE_TRIES 1000
#define PATH_LEN 4096

/* What a repair does for a finding (bits). */
enum {
    A_DEL_SEG = 1,      /* delete the segment record (raw key) */
    A_QUARANTINE = 2,   /* move path to quarantine/ */
    A_UNLINK_TRASH = 4, /* delete path's file, then its trash entry */
    A_DROP_TRASH = 8,   /* drop path's trash entry */
    A_DROP_PARTIAL = 16,
    A_SUMS = 32, /* fixed by recomputing the sums */
    A_NONE = 64, /* a finding nothing can repair */
};

typedef struct {
    ctl_fsck_finding pub;
    unsigned act;
    uint8_t key[KEY_MAX]; /* raw key of the record acted on (segment, partial, trash) */
    size_t klen;
    char *path; /* relative to data_dir */
} item;

/* Sums by key (camera, disk + camera, or disk): [0] as recorded now, [1]
 * once the records a repair deletes are gone. */
typedef struct {
    uint8_t key[CTL_QUOTA_DCAM_KEY_MAX];
    size_t klen;
    uint64_t bytes[2], segs[2], prot[2];
    int64_t head[2]; /* disk_cams: the oldest start */
} tally;

typedef struct {
    tally *v;
    size_t n, cap;
} tallies;

typedef struct {
    char *path;
    uint8_t seq[CTL_QUOTA_TRASH_KEY];
} trash_ent;

struct ctl_fsck {
    ctl_ledger *l;
    char *data_dir;
    item *items;
    size_t n, cap;
    tallies dcams, disks;
    char **extra; /* recorded paths that are not the canonical one, sorted */
    size_t nextra, capextra;
    trash_ent *trash; /* entries whose file is not live, by path */
    size_t ntrash, captrash;
    ctl_fsck_stats st;
    int checked;
};

static const char *const kind_names[] = {
    [CTL_FSCK_BAD_RECORD] = "bad_record",
    [CTL_FSCK_MISSING_FILE] = "missing_file",
    [CTL_FSCK_WRONG_SIZE] = "wrong_size",
    [CTL_FSCK_WRONG_HASH] = "wrong_hash",
    [CTL_FSCK_UNKNOWN_DISK] = "unknown_disk",
    [CTL_FSCK_ORPHAN_FILE] = "orphan_file",
    [CTL_FSCK_TRASH_FILE] = "trash_file",
    [CTL_FSCK_TRASH_LIVE] = "trash_live",
    [CTL_FSCK_INTERRUPTED_COMMIT] = "interrupted_commit",
    [CTL_FSCK_USAGE] = "usage",
    [CTL_FSCK_DISK_CAMS] = "disk_cams",
    [CTL_FSCK_DISK_SUMS] = "disk_sums",
    [CTL_FSCK_PARTIAL_NO_FILE] = "partial_no_file",
    [CTL_FSCK_PARTIAL_NO_RECORD] = "partial_no_record",
};

const char *ctl_fsck_kind_name(ctl_fsck_kind kind)
{
    if ((unsigned)kind >= sizeof(kind_names) / sizeof(kind_names[0]) || !kind_names[kind])
        return "unknown";
    return kind_names[kind];
}

static const char R_DEL_SEG[] = "delete the record and fix the sums";
static const char R_DEL_SEG_Q[] = "delete the record, fix the sums, move the file to quarantine/";
static const char R_SUMS[] = "recompute the sums from the segment records";

/* ---- small helpers --------------------------------------------------------- */

static void clear_items(ctl_fsck *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->items[i].path);
    f->n = 0;
    for (size_t i = 0; i < f->nextra; i++)
        free(f->extra[i]);
    f->nextra = 0;
    for (size_t i = 0; i < f->ntrash; i++)
        free(f->trash[i].path);
    f->ntrash = 0;
    f->dcams.n = f->disks.n = 0;
    memset(&f->st, 0, sizeof(f->st));
    f->checked = 0;
}

/* Adds a finding; *out (may be NULL) receives it for the repair data. */
static int add(ctl_fsck *f, ctl_fsck_kind kind, unsigned act, const char *path, item **out,
               const char *repair, const char *what, ...) __attribute__((format(printf, 7, 8)));

static int add(ctl_fsck *f, ctl_fsck_kind kind, unsigned act, const char *path, item **out,
               const char *repair, const char *what, ...)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 16;
        item *p = realloc(f->items, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        f->items = p;
        f->cap = cap;
    }
    item *it = &f->items[f->n];
    memset(it, 0, sizeof(*it));
    if (path && !(it->path = strdup(path)))
        return -ENOMEM;
    it->pub.kind = kind;
    it->pub.info = act == 0;
    it->act = act;
    snprintf(it->pub.repair, sizeof(it->pub.repair), "%s", repair);
    va_list ap;
    va_start(ap, what);
    vsnprintf(it->pub.what, sizeof(it->pub.what), what, ap);
    va_end(ap);
    f->n++;
    if (act)
        f->st.findings++;
    if (out)
        *out = it;
    return 0;
}

static void set_key(item *it, const MDB_val *k)
{
    it->klen = k->mv_size <= sizeof(it->key) ? k->mv_size : 0;
    memcpy(it->key, k->mv_data, it->klen);
}

/* Keys in LMDB's default order. */
static int key_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : an < bn ? -1 : an > bn;
}

/* The tally of key, added (zero) if add and missing; NULL if missing (or
 * out of memory: *err). */
static tally *tally_at(tallies *t, const uint8_t *k, size_t kn, int add_it, int *err)
{
    size_t lo = 0, hi = t->n;
    if (t->n && key_cmp(t->v[t->n - 1].key, t->v[t->n - 1].klen, k, kn) < 0)
        lo = t->n; /* walks come in key order: appends are the common case */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(t->v[mid].key, t->v[mid].klen, k, kn);
        if (c == 0)
            return &t->v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!add_it || kn > sizeof(t->v[0].key))
        return NULL;
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        tally *p = realloc(t->v, cap * sizeof(*p));
        if (!p) {
            *err = -ENOMEM;
            return NULL;
        }
        t->v = p;
        t->cap = cap;
    }
    memmove(&t->v[lo + 1], &t->v[lo], (t->n - lo) * sizeof(*t->v));
    t->n++;
    tally *x = &t->v[lo];
    memset(x, 0, sizeof(*x));
    memcpy(x->key, k, kn);
    x->klen = kn;
    return x;
}

static int path_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int extra_has(const ctl_fsck *f, const char *rel)
{
    return f->nextra && bsearch(&rel, f->extra, f->nextra, sizeof(char *), path_cmp) != NULL;
}

static void canonical(const ctl_seg_key *key, char *buf, size_t len)
{
    ctl_store_rel_path(key, 0, buf, len);
}

static void partial_rel(const ctl_seg_key *key, char *buf, size_t len)
{
    ctl_store_rel_path(key, 1, buf, len);
}

/* A recorded path fsck may touch: relative, under store/, no "..". */
static int safe_rel(const char *p)
{
    return strncmp(p, "store/", 6) == 0 && !strstr(p, "..") && !strstr(p, "//");
}

static int full_path(const ctl_fsck *f, const char *rel, char *buf, size_t len)
{
    return c2d_path_join(buf, len, f->data_dir, rel);
}

/* ---- 1. segment records ---------------------------------------------------- */

typedef struct {
    ctl_fsck *f;
    MDB_txn *txn;
    int hashes;
} ctx;

/* Reads the disk record; 0, -ENOENT, or -EIO when it does not decode
 * (reported by the disks walk). */
static int disk_get(ctx *c, uint64_t disk, ctl_disk_rec *d)
{
    uint8_t k[8];
    put_be(k, disk, 8);
    MDB_val mk = {8, k}, mv;
    int rc = c2d_mdb_errno(mdb_get(c->txn, c->f->l->disks, &mk, &mv));
    return rc ? rc : ctl_quota_fsck_disk_decode(&mv, d);
}

/* The file of a decoded record: 0 if it is as recorded, else the kind. */
static int file_state(ctx *c, const ctl_segment_rec *rec, char *detail, size_t dlen,
                      ctl_fsck_kind *kind)
{
    char path[PATH_LEN];
    int rc = full_path(c->f, rec->path, path, sizeof(path));
    if (rc != 0)
        return rc;
    struct stat sb;
    int err = stat(path, &sb) == 0 ? 0 : errno;
    if (err != 0 && err != ENOENT && err != ENOTDIR)
        return -err;
    if (err != 0 || !S_ISREG(sb.st_mode)) {
        *kind = CTL_FSCK_MISSING_FILE;
        snprintf(detail, dlen, "no file (recorded %" PRIu64 " bytes)", rec->size);
        return 1;
    }
    if ((uint64_t)sb.st_size != rec->size) {
        *kind = CTL_FSCK_WRONG_SIZE;
        snprintf(detail, dlen, "%" PRIu64 " bytes, recorded %" PRIu64, (uint64_t)sb.st_size,
                 rec->size);
        return 1;
    }
    if (c->hashes) {
        char hex[65];
        if ((rc = c2d_sha256_file_hex(path, hex)) != 0)
            return rc;
        if (strcmp(hex, rec->sha256) != 0) {
            *kind = CTL_FSCK_WRONG_HASH;
            snprintf(detail, dlen, "sha256 %.16s..., recorded %.16s...", hex, rec->sha256);
            return 1;
        }
    }
    return 0;
}

static int check_segment(ctx *c, const MDB_val *k, const MDB_val *v)
{
    ctl_fsck *f = c->f;
    ctl_seg_key key;
    ctl_segment_rec rec;
    item *it;
    int rc;
    f->st.segments++;
    if (ctl_ledger_parse_key(k, 1, &key) != 0 || ctl_ledger_decode_segment(v, &rec) != 0 ||
        !safe_rel(rec.path)) {
        if ((rc = add(f, CTL_FSCK_BAD_RECORD, A_DEL_SEG | A_SUMS, NULL, &it, R_DEL_SEG,
                      "segment record %zu-byte key, %zu-byte value does not decode", k->mv_size,
                      v->mv_size)) == 0)
            set_key(it, k);
        return rc;
    }
    char canon[CTL_LEDGER_PATH_MAX + 32];
    canonical(&key, canon, sizeof(canon));
    if (strcmp(canon, rec.path) != 0) {
        if (f->nextra == f->capextra) {
            size_t cap = f->capextra ? 2 * f->capextra : 16;
            char **p = realloc(f->extra, cap * sizeof(*p));
            if (!p)
                return -ENOMEM;
            f->extra = p;
            f->capextra = cap;
        }
        if (!(f->extra[f->nextra] = strdup(rec.path)))
            return -ENOMEM;
        f->nextra++;
    }

    /* Its disk, if it counts on one. */
    ctl_disk_rec d;
    int have_disk = 0, bad = 0;
    if (rec.disk_id) {
        rc = disk_get(c, rec.disk_id, &d);
        if (rc != 0 && rc != -ENOENT && rc != -EIO)
            return rc;
        have_disk = rc == 0;
        if (rc == -ENOENT) {
            if ((rc = add(f, CTL_FSCK_UNKNOWN_DISK, A_DEL_SEG | A_SUMS | A_QUARANTINE, rec.path,
                          &it, R_DEL_SEG_Q,
                          "segment %s/%u/%" PRId64 " counts on disk %" PRIu64
                          ", which does not exist",
                          key.device, key.channel, key.start_us, rec.disk_id)) != 0)
                return rc;
            set_key(it, k);
            bad = 1;
        }
    }
    if (!bad) {
        char detail[160];
        ctl_fsck_kind kind = CTL_FSCK_MISSING_FILE;
        if ((rc = file_state(c, &rec, detail, sizeof(detail), &kind)) < 0)
            return rc;
        if (rc == 1) {
            unsigned act = A_DEL_SEG | A_SUMS | (kind == CTL_FSCK_MISSING_FILE ? 0 : A_QUARANTINE);
            if ((rc = add(f, kind, act, rec.path, &it,
                          kind == CTL_FSCK_MISSING_FILE ? R_DEL_SEG : R_DEL_SEG_Q, "%s: %s",
                          rec.path, detail)) != 0)
                return rc;
            set_key(it, k);
            bad = 1;
        }
    }

    /* The sums: [0] as recorded, [1] without the records a repair deletes.
     * Records come in camera and time order: a camera's first on a disk
     * is its head there. */
    rc = 0;
    if (!have_disk && rec.disk_id != 0)
        return 0;
    uint8_t dck[CTL_QUOTA_DCAM_KEY_MAX], dk[8];
    size_t dckn = ctl_quota_fsck_dcam_key(dck, rec.disk_id, key.device, key.channel);
    tally *dc = tally_at(&f->dcams, dck, dckn, 1, &rc);
    if (!dc)
        return rc ? rc : -EIO;
    for (int i = 0; i < 1 + !bad; i++) {
        if (dc->segs[i]++ == 0)
            dc->head[i] = key.start_us;
        dc->bytes[i] += rec.size;
    }
    if (!have_disk)
        return 0; /* open mode: disk 0's camera usage, no disk record */
    put_be(dk, rec.disk_id, 8);
    tally *dd = tally_at(&f->disks, dk, 8, 1, &rc);
    if (!dd)
        return rc ? rc : -EIO;
    for (int i = 0; i < 1 + !bad; i++) {
        dd->bytes[i] += rec.size;
        dd->segs[i]++;
        if (rec.is_protected)
            dd->prot[i] += rec.size;
    }
    return 0;
}

/* Walks dbi in txn, calling fn for each record. */
static int walk_db(ctx *c, MDB_dbi dbi, int (*fn)(ctx *, const MDB_val *, const MDB_val *))
{
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(c->txn, dbi, &cur));
    if (rc != 0)
        return rc;
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; mrc == MDB_SUCCESS && rc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        rc = fn(c, &k, &v);
    if (rc == 0 && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
    mdb_cursor_close(cur);
    return rc;
}

/* ---- 3. sums ------------------------------------------------------------- */

/* The cameras' usage records (disk_cams: in the disks database, keys
 * longer than a disk's) against the tallies. */
static int check_usage_db(ctx *c, MDB_dbi dbi, tallies *t, ctl_fsck_kind kind)
{
    ctl_fsck *f = c->f;
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(c->txn, dbi, &cur));
    if (rc != 0)
        return rc;
    MDB_val k, v;
    size_t seen = 0;
    /* Both in key order: a merge. */
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (;;) {
        int have = mrc == MDB_SUCCESS;
        if (!have && mrc != MDB_NOTFOUND) {
            rc = c2d_mdb_errno(mrc);
            break;
        }
        if (!have && seen == t->n)
            break;
        if (have && k.mv_size == 8) { /* a disk's own record (check_disk) */
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        int cmp = !have          ? 1
                  : seen == t->n ? -1
                                 : key_cmp(k.mv_data, k.mv_size, t->v[seen].key, t->v[seen].klen);
        ctl_quota_dcam u = {0, 0, 0};
        const tally *x = NULL;
        int dec = 0;
        if (cmp <= 0)
            dec = ctl_quota_fsck_dcam_decode(&v, &u);
        if (cmp >= 0)
            x = &t->v[seen++];
        uint64_t want_b = x ? x->bytes[0] : 0, want_s = x ? x->segs[0] : 0;
        int64_t want_h = x ? x->head[0] : 0;
        if (dec != 0 || u.bytes != want_b || u.segments != want_s || u.head_us != want_h) {
            /* The object: camera, or disk + camera. */
            const uint8_t *kp = cmp <= 0 ? k.mv_data : x->key;
            size_t kn = cmp <= 0 ? k.mv_size : x->klen, off = kind == CTL_FSCK_DISK_CAMS ? 8 : 0;
            MDB_val ck = {kn > off ? kn - off : 0, (void *)(kp + off)};
            ctl_seg_key cam;
            char obj[C2D_DEVICE_ID_MAX + 48];
            if (kn <= off || ctl_ledger_parse_key(&ck, 0, &cam) != 0)
                snprintf(obj, sizeof(obj), "(a %zu-byte key)", kn);
            else if (off)
                snprintf(obj, sizeof(obj), "disk %" PRIu64 " camera %s/%u", get_be(kp, 8),
                         cam.device, cam.channel);
            else
                snprintf(obj, sizeof(obj), "camera %s/%u", cam.device, cam.channel);
            if (dec != 0)
                rc = add(f, kind, A_SUMS, NULL, NULL, R_SUMS, "%s: record does not decode", obj);
            else
                rc = add(f, kind, A_SUMS, NULL, NULL, R_SUMS,
                         "%s: %" PRIu64 " bytes in %" PRIu64 " segments from %" PRId64
                         " recorded, the segments sum to %" PRIu64 " in %" PRIu64 " from %" PRId64,
                         obj, u.bytes, u.segments, u.head_us, want_b, want_s, want_h);
            if (rc != 0)
                break;
        }
        if (cmp <= 0)
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc;
}

static int check_disk(ctx *c, const MDB_val *k, const MDB_val *v)
{
    ctl_fsck *f = c->f;
    ctl_disk_rec d;
    if (k->mv_size != 8)
        return 0; /* a camera's usage: check_usage_db */
    f->st.disks++;
    if (ctl_quota_fsck_disk_decode(v, &d) != 0)
        return add(f, CTL_FSCK_DISK_SUMS, A_NONE, NULL, NULL,
                   "none: the disk record does not decode (set the disk again)",
                   "disk record of %zu-byte key does not decode", k->mv_size);
    int rc = 0;
    const tally *x = tally_at(&f->disks, k->mv_data, 8, 0, &rc);
    uint64_t b = x ? x->bytes[0] : 0, s = x ? x->segs[0] : 0, p = x ? x->prot[0] : 0;
    if (rc != 0 || (d.used == b && d.segments == s && d.protected_bytes == p))
        return rc;
    return add(f, CTL_FSCK_DISK_SUMS, A_SUMS, NULL, NULL, R_SUMS,
               "disk %" PRIu64 ": used %" PRIu64 ", %" PRIu64 " segments, %" PRIu64
               " protected recorded; its segments sum to %" PRIu64 ", %" PRIu64 ", %" PRIu64,
               get_be(k->mv_data, 8), d.used, d.segments, d.protected_bytes, b, s, p);
}

/* ---- 2. files under store/ and partial/ ------------------------------------ */

typedef int (*file_fn)(ctx *c, const char *rel);

static int walk_files(ctx *c, char *rel, size_t len, int depth, file_fn fn)
{
    char path[PATH_LEN];
    int rc = full_path(c->f, rel, path, sizeof(path));
    if (rc != 0)
        return rc;
    DIR *dir = opendir(path);
    if (!dir)
        return errno == ENOENT ? 0 : -errno;
    size_t n = strlen(rel);
    struct dirent *e = NULL;
    while (rc == 0 && (errno = 0, e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n + 1 + strlen(e->d_name) + 1 > len) {
            rc = -ENAMETOOLONG;
            break;
        }
        snprintf(rel + n, len - n, "/%s", e->d_name);
        struct stat sb;
        if (fstatat(dirfd(dir), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
            rc = errno == ENOENT ? 0 : -errno;
        else if (S_ISDIR(sb.st_mode) && depth < WALK_DEPTH)
            rc = walk_files(c, rel, len, depth + 1, fn);
        else if (!S_ISDIR(sb.st_mode))
            rc = fn(c, rel);
        rel[n] = '\0';
    }
    if (rc == 0 && !e && errno != 0)
        rc = -errno;
    closedir(dir);
    return rc;
}

/* Whether key has a record in dbi (and, segments, one naming rel). */
static int has_record(ctx *c, MDB_dbi dbi, const ctl_seg_key *key, const char *rel)
{
    uint8_t k[KEY_MAX];
    MDB_val mk = {ctl_ledger_make_key(k, key->device, key->channel, key->start_us, 1), k}, mv;
    int rc = c2d_mdb_errno(mdb_get(c->txn, dbi, &mk, &mv));
    if (rc != 0)
        return rc == -ENOENT ? 0 : rc;
    if (!rel)
        return 1;
    ctl_segment_rec rec;
    return ctl_ledger_decode_segment(&mv, &rec) == 0 && strcmp(rec.path, rel) == 0;
}

/* A file is recorded if its record names it. */
static int recorded(ctx *c, const char *rel)
{
    ctl_seg_key key;
    if (extra_has(c->f, rel))
        return 1;
    if (ctl_store_parse_rel(rel, 0, &key) != 0)
        return 0;
    return has_record(c, c->f->l->segments, &key, rel);
}

static int trash_cmp(const void *a, const void *b)
{
    return strcmp(((const trash_ent *)a)->path, ((const trash_ent *)b)->path);
}

static const trash_ent *in_trash(const ctl_fsck *f, const char *rel)
{
    trash_ent want = {.path = (char *)rel};
    return f->ntrash ? bsearch(&want, f->trash, f->ntrash, sizeof(*f->trash), trash_cmp) : NULL;
}

static int check_store_file(ctx *c, const char *rel)
{
    ctl_fsck *f = c->f;
    ctl_seg_key key;
    item *it;
    f->st.files++;
    int rc = recorded(c, rel);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    const trash_ent *t = in_trash(f, rel);
    if (t) {
        if ((rc = add(f, CTL_FSCK_TRASH_FILE, A_UNLINK_TRASH, rel, &it,
                      "delete it and its trash entry (the janitor's job)",
                      "%s: a removed segment's file, in the trash", rel)) == 0) {
            memcpy(it->key, t->seq, sizeof(t->seq));
            it->klen = sizeof(t->seq);
        }
        return rc;
    }
    if (ctl_store_parse_rel(rel, 0, &key) == 0 &&
        (rc = has_record(c, f->l->partials, &key, NULL)) != 0) {
        if (rc < 0)
            return rc;
        return add(f, CTL_FSCK_INTERRUPTED_COMMIT, 0, rel, NULL,
                   "none: start-up recovery completes the commit",
                   "%s: stored with a partial record and no segment record", rel);
    }
    return add(f, CTL_FSCK_ORPHAN_FILE, A_QUARANTINE, rel, NULL, "move it to quarantine/",
               "%s: no segment record", rel);
}

/* Trash entries: those whose path is recorded again (the segment was sent
 * again) are the janitor's to drop, keeping the file; the others are
 * indexed by path for the files walk. */
static int check_trash(ctx *c, const MDB_val *k, const MDB_val *v)
{
    ctl_fsck *f = c->f;
    ctl_seg_key key;
    char rel[CTL_LEDGER_PATH_MAX];
    item *it;
    int rc;
    if (k->mv_size != CTL_QUOTA_TRASH_KEY || ctl_quota_fsck_trash_decode(v, &key, rel) != 0) {
        if ((rc = add(f, CTL_FSCK_TRASH_LIVE, A_DROP_TRASH, NULL, &it, "drop the trash entry",
                      "trash entry of %zu-byte key does not decode", k->mv_size)) == 0)
            set_key(it, k);
        return rc;
    }
    if ((rc = recorded(c, rel)) != 0)
        return rc < 0 ? rc
                      : add(f, CTL_FSCK_TRASH_LIVE, 0, rel, NULL,
                            "none: the janitor drops the entry and keeps the file",
                            "trash entry %s names a recorded segment's file (sent again)", rel);
    if (f->ntrash == f->captrash) {
        size_t cap = f->captrash ? 2 * f->captrash : 16;
        trash_ent *p = realloc(f->trash, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        f->trash = p;
        f->captrash = cap;
    }
    trash_ent *t = &f->trash[f->ntrash];
    if (!(t->path = strdup(rel)))
        return -ENOMEM;
    memcpy(t->seq, k->mv_data, sizeof(t->seq));
    f->ntrash++;
    return 0;
}

/* ---- 4. partials ----------------------------------------------------------- */

static int exists(ctx *c, const char *rel)
{
    char path[PATH_LEN];
    struct stat sb;
    if (full_path(c->f, rel, path, sizeof(path)) != 0)
        return 0;
    return lstat(path, &sb) == 0;
}

static int check_partial(ctx *c, const MDB_val *k, const MDB_val *v)
{
    (void)v;
    ctl_fsck *f = c->f;
    ctl_seg_key key;
    item *it;
    char rel[PATH_LEN], srel[PATH_LEN];
    int rc;
    if (ctl_ledger_parse_key(k, 1, &key) != 0) {
        if ((rc = add(f, CTL_FSCK_PARTIAL_NO_FILE, A_DROP_PARTIAL, NULL, &it, "drop the record",
                      "partial record of %zu-byte key does not decode", k->mv_size)) == 0)
            set_key(it, k);
        return rc;
    }
    partial_rel(&key, rel, sizeof(rel));
    if (exists(c, rel))
        return 0;
    /* Already in the store without its segment record: an interrupted
     * commit, reported with the stored file. */
    canonical(&key, srel, sizeof(srel));
    if ((rc = has_record(c, f->l->segments, &key, NULL)) < 0)
        return rc;
    if (rc == 0 && exists(c, srel))
        return 0;
    if ((rc = add(f, CTL_FSCK_PARTIAL_NO_FILE, A_DROP_PARTIAL, NULL, &it,
                  "drop the record (as start-up recovery does)",
                  "partial record %s/%u/%" PRId64 " without %s", key.device, key.channel,
                  key.start_us, rel)) == 0)
        set_key(it, k);
    return rc;
}

static int check_partial_file(ctx *c, const char *rel)
{
    ctl_seg_key key;
    int rc;
    if (ctl_store_parse_rel(rel, 1, &key) == 0 &&
        (rc = has_record(c, c->f->l->partials, &key, NULL)) != 0)
        return rc < 0 ? rc : 0;
    return add(c->f, CTL_FSCK_PARTIAL_NO_RECORD, A_QUARANTINE, rel, NULL, "move it to quarantine/",
               "%s: no partial record", rel);
}

/* ---- the check ------------------------------------------------------------- */

int ctl_fsck_new(ctl_ledger *l, const char *data_dir, ctl_fsck **out)
{
    ctl_fsck *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->l = l;
    if (!(f->data_dir = strdup(data_dir))) {
        free(f);
        return -ENOMEM;
    }
    *out = f;
    return 0;
}

void ctl_fsck_free(ctl_fsck *f)
{
    if (!f)
        return;
    clear_items(f);
    free(f->items);
    free(f->extra);
    free(f->trash);
    free(f->dcams.v);
    free(f->disks.v);
    free(f->data_dir);
    free(f);
}

static int seg_cb(ctx *c, const MDB_val *k, const MDB_val *v)
{
    return check_segment(c, k, v);
}

int ctl_fsck_check(ctl_fsck *f, int hashes)
{
    clear_items(f);
    if (!f->l->have_dbs)
        return -ENOENT;
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(ctl_ledger_env(f->l), NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    ctx c = {f, txn, hashes};
    char rel[PATH_LEN];
    rc = walk_db(&c, f->l->segments, seg_cb);
    if (rc == 0 && f->nextra)
        qsort(f->extra, f->nextra, sizeof(char *), path_cmp);
    if (rc == 0)
        rc = check_usage_db(&c, f->l->disk_cams, &f->dcams, CTL_FSCK_DISK_CAMS);
    if (rc == 0)
        rc = walk_db(&c, f->l->disks, check_disk);
    if (rc == 0)
        rc = walk_db(&c, f->l->trash, check_trash);
    if (rc == 0 && f->ntrash > 1)
        qsort(f->trash, f->ntrash, sizeof(*f->trash), trash_cmp);
    if (rc == 0) {
        snprintf(rel, sizeof(rel), "store");
        rc = walk_files(&c, rel, sizeof(rel), 0, check_store_file);
    }
    if (rc == 0)
        rc = walk_db(&c, f->l->partials, check_partial);
    if (rc == 0) {
        snprintf(rel, sizeof(rel), "partial");
        rc = walk_files(&c, rel, sizeof(rel), 0, check_partial_file);
    }
    mdb_txn_abort(txn);
    if (rc != 0) {
        clear_items(f);
        return rc;
    }
    f->checked = 1;
    return 0;
}

/* ---- the repair ------------------------------------------------------------ */

/* Deletes key from dbi; a record already gone is fine. */
static int del_key(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kn)
{
    MDB_val mk = {kn, (void *)k};
    int rc = c2d_mdb_errno(mdb_del(txn, dbi, &mk, NULL));
    return rc == -ENOENT ? 0 : rc;
}

static int put_dcam(ctl_fsck *f, MDB_txn *txn, const tally *x)
{
    ctl_quota_dcam d = {x->bytes[1], x->segs[1], x->head[1]};
    MDB_val mk = {x->klen, (void *)x->key};
    return ctl_quota_fsck_dcam_put(f->l, txn, &mk, &d);
}

/* Deletes every camera usage record (keys other than a disk's 8 bytes)
 * of the disks database; the disks stay. */
static int drop_dcams(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(txn, dbi, &cur));
    if (rc != 0)
        return rc;
    uint8_t last[512]; /* LMDB's longest key is 511 bytes */
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && mrc == MDB_SUCCESS) {
        if (k.mv_size == 8) {
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        /* Delete by key, then look again from it: no reliance on where a
         * deletion leaves the cursor. */
        size_t n = k.mv_size < sizeof(last) ? k.mv_size : sizeof(last);
        memcpy(last, k.mv_data, n);
        k.mv_size = n;
        k.mv_data = last;
        rc = c2d_mdb_errno(mdb_del(txn, dbi, &k, NULL));
        if (rc == 0)
            mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    if (rc == 0 && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
    mdb_cursor_close(cur);
    return rc;
}

/* Every disk's used, segments and protected bytes from the tallies. */
static int fix_disks(ctl_fsck *f, MDB_txn *txn)
{
    MDB_cursor *cur;
    int rc = c2d_mdb_errno(mdb_cursor_open(txn, f->l->disks, &cur));
    if (rc != 0)
        return rc;
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; rc == 0 && mrc == MDB_SUCCESS; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        ctl_disk_rec d;
        if (k.mv_size != 8 || ctl_quota_fsck_disk_decode(&v, &d) != 0)
            continue; /* reported; nothing to rebuild it from */
        const tally *x = tally_at(&f->disks, k.mv_data, 8, 0, &rc);
        uint64_t b = x ? x->bytes[1] : 0, s = x ? x->segs[1] : 0, p = x ? x->prot[1] : 0;
        if (d.used == b && d.segments == s && d.protected_bytes == p)
            continue;
        d.used = b;
        d.segments = s;
        d.protected_bytes = p;
        /* Same key, same size: the cursor stays valid. */
        rc = ctl_quota_fsck_disk_put(f->l, txn, get_be(k.mv_data, 8), &d);
    }
    if (rc == 0 && mrc != MDB_SUCCESS && mrc != MDB_NOTFOUND)
        rc = c2d_mdb_errno(mrc);
    mdb_cursor_close(cur);
    return rc;
}

/* The ledger's part, in one transaction. */
static int repair_ledger(ctl_fsck *f)
{
    int sums = 0, any = 0;
    for (size_t i = 0; i < f->n; i++) {
        sums |= (f->items[i].act & A_SUMS) != 0;
        any |= (f->items[i].act & (A_SUMS | A_DEL_SEG | A_DROP_TRASH | A_DROP_PARTIAL)) != 0;
    }
    if (!any)
        return 0;
    ctl_ledger *l = f->l;
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(ctl_ledger_env(l), NULL, 0, &txn));
    for (size_t i = 0; rc == 0 && i < f->n; i++) {
        item *it = &f->items[i];
        if (it->act & A_DEL_SEG)
            rc = del_key(txn, l->segments, it->key, it->klen);
        if (rc == 0 && (it->act & A_DROP_PARTIAL))
            rc = del_key(txn, l->partials, it->key, it->klen);
        if (rc == 0 && (it->act & A_DROP_TRASH))
            rc = del_key(txn, l->trash, it->key, it->klen);
    }
    if (rc == 0 && sums) {
        /* Recomputed from the segment records: disk_cams anew (the old
         * per-camera usage database is emptied: it is derived now). */
        rc = c2d_mdb_errno(mdb_drop(txn, l->usage, 0));
        if (rc == 0)
            rc = drop_dcams(txn, l->disk_cams);
        for (size_t i = 0; rc == 0 && i < f->dcams.n; i++)
            if (f->dcams.v[i].segs[1])
                rc = put_dcam(f, txn, &f->dcams.v[i]);
        if (rc == 0)
            rc = fix_disks(f, txn);
    }
    if (rc == 0)
        return c2d_mdb_errno(mdb_txn_commit(txn));
    if (txn)
        mdb_txn_abort(txn);
    return rc;
}

/* Moves data_dir/rel to data_dir/quarantine/rel (rel.1, ... if taken). */
static int quarantine(ctl_fsck *f, const char *rel)
{
    char from[PATH_LEN], to[PATH_LEN], qrel[PATH_LEN];
    int rc = full_path(f, rel, from, sizeof(from));
    if (rc != 0)
        return rc;
    struct stat sb;
    if (lstat(from, &sb) != 0)
        return errno == ENOENT ? 0 : -errno;
    if ((size_t)snprintf(qrel, sizeof(qrel), "quarantine/%s", rel) >= sizeof(qrel) ||
        (rc = full_path(f, qrel, to, sizeof(to))) != 0)
        return -ENAMETOOLONG;
    char *slash = strrchr(to, '/');
    *slash = '\0';
    rc = c2d_mkdirs(to, 0750);
    *slash = '/';
    if (rc != 0)
        return rc;
    size_t n = strlen(to);
    for (int i = 0; i < QUARANTINE_TRIES; i++) {
        if (i && (size_t)snprintf(to + n, sizeof(to) - n, ".%d", i) >= sizeof(to) - n)
            return -ENAMETOOLONG;
        if (lstat(to, &sb) == 0)
            continue;
        if (errno != ENOENT)
            return -errno;
        if (rename(from, to) != 0)
            return -errno;
        /* Durable: the new name first, then the old one gone. */
        if ((rc = c2d_fsync_parent(to)) == 0)
            rc = c2d_fsync_parent(from);
        return rc;
    }
    return -EEXIST;
}

/* Deletes a trash file, then its entry (the janitor's order: a crash
 * between leaves an entry whose file is gone, which it clears). */
static int empty_trash(ctl_fsck *f, const char *rel, const uint8_t *seq, size_t seqlen)
{
    char path[PATH_LEN];
    int rc = full_path(f, rel, path, sizeof(path));
    if (rc != 0)
        return rc;
    if (unlink(path) != 0 && errno != ENOENT)
        return -errno;
    if ((rc = c2d_fsync_parent(path)) != 0 && rc != -ENOENT)
        return rc;
    MDB_txn *txn;
    if ((rc = c2d_mdb_errno(mdb_txn_begin(ctl_ledger_env(f->l), NULL, 0, &txn))) != 0)
        return rc;
    if ((rc = del_key(txn, f->l->trash, seq, seqlen)) != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return c2d_mdb_errno(mdb_txn_commit(txn));
}

int ctl_fsck_repair(ctl_fsck *f)
{
    if (!f->checked)
        return -EINVAL;
    if (ctl_ledger_readonly(f->l))
        return -EROFS;
    f->st.repaired = 0;
    /* The ledger first: a crash before the files move leaves orphans for
     * the next run, never a record without its file. */
    int rc = repair_ledger(f);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < f->n; i++) {
        item *it = &f->items[i];
        if (it->act & (A_SUMS | A_DEL_SEG | A_DROP_TRASH | A_DROP_PARTIAL))
            it->pub.repaired = 1;
    }
    for (size_t i = 0; i < f->n; i++) {
        item *it = &f->items[i];
        if ((it->act & A_QUARANTINE) && it->path) {
            it->pub.repaired = 0;
            if ((rc = quarantine(f, it->path)) != 0)
                return rc;
            it->pub.repaired = 1;
        }
        if (it->act & A_UNLINK_TRASH) {
            if ((rc = empty_trash(f, it->path, it->key, it->klen)) != 0)
                return rc;
            it->pub.repaired = 1;
        }
    }
    for (size_t i = 0; i < f->n; i++)
        f->st.repaired += f->items[i].pub.repaired;
    return 0;
}

size_t ctl_fsck_count(const ctl_fsck *f)
{
    return f->n;
}

const ctl_fsck_finding *ctl_fsck_get(const ctl_fsck *f, size_t i)
{
    return i < f->n ? &f->items[i].pub : NULL;
}

void ctl_fsck_get_stats(const ctl_fsck *f, ctl_fsck_stats *out)
{
    *out = f->st;
}
