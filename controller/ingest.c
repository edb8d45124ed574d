#include "controller/ingest.h"

#include "common/c2d_time.h"
#include "controller/committer.h"
#include "controller/digest.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* Hash buckets for the uploads in memory: a power of two, a few entries per
 * bucket at CTL_INGEST_ENTRIES_MAX. */
#define BUCKETS 1024

/* Buffer for re-hashing a partial file and comparing redelivered bytes:
 * fixed, independent of any size a device declares. */
#define SCRATCH_LEN (64 * 1024)

#define DETAIL_MAX 256

typedef struct entry {
    ctl_seg_key key;
    ctl_partial_rec begin;  /* what the device declared */
    uint64_t held;          /* bytes [0, held) are in the partial file */
    ctl_sha256 *hash;       /* over [0, held) */
    int fd;                 /* -1 while closed by the descriptor LRU */
    int committing;         /* handed to the committer: never evicted, closed
                               or written until ctl_ingest_commit_done */
    unsigned deferred_ends; /* ends received while committing, answered then */
    struct entry *hnext;
    struct entry *prev, *next; /* LRU, head = most recently used */
} entry;

struct ctl_ingest {
    ctl_ledger *ledger;
    ctl_store *store;
    ctl_ingest_limits lim;
    entry *buckets[BUCKETS];
    entry *head, *tail;
    size_t n_entries;
    size_t n_fds;
    ctl_commit_submit_fn submit; /* NULL: commit synchronously */
    void *submit_ud;
    ctl_ingest_msg_info cur; /* the message being answered */
    char detail[DETAIL_MAX];
    uint8_t scratch[SCRATCH_LEN];
};

/* ---- uploads in memory ---------------------------------------------------- */

static size_t key_hash(const ctl_seg_key *k)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = k->device; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ k->channel) * 1099511628211ull;
    h = (h ^ (uint64_t)k->start_us) * 1099511628211ull;
    return (size_t)(h ^ (h >> 32)) & (BUCKETS - 1);
}

static int key_eq(const ctl_seg_key *a, const ctl_seg_key *b)
{
    return a->channel == b->channel && a->start_us == b->start_us &&
           strcmp(a->device, b->device) == 0;
}

static entry *find(ctl_ingest *ing, const ctl_seg_key *key)
{
    for (entry *e = ing->buckets[key_hash(key)]; e; e = e->hnext)
        if (key_eq(&e->key, key))
            return e;
    return NULL;
}

static void lru_unlink(ctl_ingest *ing, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        ing->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        ing->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(ctl_ingest *ing, entry *e)
{
    e->prev = NULL;
    e->next = ing->head;
    if (ing->head)
        ing->head->prev = e;
    ing->head = e;
    if (!ing->tail)
        ing->tail = e;
}

static void touch(ctl_ingest *ing, entry *e)
{
    if (ing->head != e) {
        lru_unlink(ing, e);
        lru_push(ing, e);
    }
}

static void close_fd(ctl_ingest *ing, entry *e)
{
    if (e->fd >= 0) {
        close(e->fd);
        e->fd = -1;
        ing->n_fds--;
    }
}

/* Forgets an upload in memory (its file and record stay). */
static void drop(ctl_ingest *ing, entry *e)
{
    entry **pp = &ing->buckets[key_hash(&e->key)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(ing, e);
    close_fd(ing, e);
    ctl_sha256_free(e->hash);
    ing->n_entries--;
    free(e);
}

/* Adds an upload whose partial file is open as fd and holds [0, held),
 * hashed into hash (taken over on success). Evicts the least recently used
 * upload when at the limit. */
static entry *add(ctl_ingest *ing, const ctl_seg_key *key, const ctl_partial_rec *begin, int fd,
                  uint64_t held, ctl_sha256 *hash)
{
    entry *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    for (entry *v = ing->tail; ing->n_entries >= CTL_INGEST_ENTRIES_MAX && v;) {
        entry *prev = v->prev;
        if (!v->committing)
            drop(ing, v);
        v = prev;
    }
    e->key = *key;
    e->begin = *begin;
    e->held = held;
    e->hash = hash;
    e->fd = fd;
    size_t b = key_hash(key);
    e->hnext = ing->buckets[b];
    ing->buckets[b] = e;
    lru_push(ing, e);
    ing->n_entries++;
    ing->n_fds++;
    return e;
}

/* Makes room for one more open descriptor. */
static void reserve_fd(ctl_ingest *ing)
{
    for (entry *e = ing->tail; e && ing->n_fds >= CTL_INGEST_OPEN_FILES_MAX; e = e->prev)
        if (!e->committing)
            close_fd(ing, e);
}

/* Makes sure e's partial file is open. 0 or -errno. */
static int ensure_fd(ctl_ingest *ing, entry *e)
{
    if (e->fd >= 0)
        return 0;
    reserve_fd(ing);
    uint64_t size;
    int fd, rc = ctl_store_partial_open(ing->store, &e->key, 0, 0, &fd, &size);
    if (rc != 0)
        return rc;
    if (size < e->held || (size > e->held && ftruncate(fd, (off_t)e->held) != 0)) {
        close(fd);
        return -EIO; /* changed behind our back */
    }
    e->fd = fd;
    ing->n_fds++;
    return 0;
}

/* Hashes [0, len) of fd into h. */
static int hash_fd(ctl_ingest *ing, int fd, uint64_t len, ctl_sha256 *h)
{
    uint64_t off = 0;
    while (off < len) {
        size_t want = len - off < SCRATCH_LEN ? (size_t)(len - off) : SCRATCH_LEN;
        ssize_t r = pread(fd, ing->scratch, want, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -EIO;
        ctl_sha256_update(h, ing->scratch, (size_t)r);
        off += (uint64_t)r;
    }
    return 0;
}

/* Compares data with [off, off+len) of fd: 1 equal, 0 different, -errno. */
static int same_bytes(ctl_ingest *ing, int fd, uint64_t off, const uint8_t *data, size_t len)
{
    while (len > 0) {
        size_t want = len < SCRATCH_LEN ? len : SCRATCH_LEN;
        ssize_t r = pread(fd, ing->scratch, want, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : 0;
        if (memcmp(ing->scratch, data, (size_t)r) != 0)
            return 0;
        off += (uint64_t)r;
        data += r;
        len -= (size_t)r;
    }
    return 1;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t w = pwrite(fd, p, len, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        p += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Loads an upload from its partial record after a restart or an eviction:
 * opens (or re-creates) the partial file and re-hashes what it holds. */
static int load(ctl_ingest *ing, const ctl_seg_key *key, const ctl_partial_rec *rec, entry **out)
{
    reserve_fd(ing);
    int fd;
    uint64_t size;
    int rc = ctl_store_partial_open(ing->store, key, 1, 0, &fd, &size);
    if (rc != 0)
        return rc;
    if (size > rec->size) {
        if (ftruncate(fd, (off_t)rec->size) != 0) {
            rc = -errno;
            close(fd);
            return rc;
        }
        size = rec->size;
    }
    ctl_sha256 *h = NULL;
    if ((rc = ctl_sha256_new(&h)) != 0 || (rc = hash_fd(ing, fd, size, h)) != 0) {
        ctl_sha256_free(h);
        close(fd);
        return rc;
    }
    entry *e = add(ing, key, rec, fd, size, h);
    if (!e) {
        ctl_sha256_free(h);
        close(fd);
        return -ENOMEM;
    }
    *out = e;
    return 0;
}

/* The upload for key: in memory, or loaded from its partial record.
 * -ENOENT if there is no upload in progress. */
static int lookup(ctl_ingest *ing, const ctl_seg_key *key, entry **out)
{
    entry *e = find(ing, key);
    if (e) {
        touch(ing, e);
        *out = e;
        return 0;
    }
    ctl_partial_rec rec;
    int rc = ctl_ledger_get_partial(ing->ledger, key, &rec);
    if (rc != 0)
        return rc;
    return load(ing, key, &rec, out);
}

/* Deletes an upload everywhere: memory, partial file, partial record.
 * -EBUSY (nothing done) while it is being committed. */
static int discard(ctl_ingest *ing, const ctl_seg_key *key)
{
    entry *e = find(ing, key);
    if (e && e->committing)
        return -EBUSY;
    if (e)
        drop(ing, e);
    int rc = ctl_store_partial_remove(ing->store, key);
    int rc2 = ctl_ledger_del_partial(ing->ledger, key);
    if (rc == -ENOENT)
        rc = 0;
    if (rc2 == -ENOENT)
        rc2 = 0;
    return rc ? rc : rc2;
}

/* The ack reason of a commit or precheck error: the virtual disk's
 * refusals (proto/README.md), else "storage". */
static const char *disk_reason(int rc)
{
    switch (rc) {
    case -EDQUOT:
        return "quota_full";
    case -ENODEV:
        return "no_disk";
    case -EACCES:
        return "backup_off";
    default:
        return "storage";
    }
}

/* ---- answers -------------------------------------------------------------- */

typedef struct {
    ctl_ingest *ing;
    const char *device;
    ctl_ack_sink sink;
    void *ud;
} reply_ctx;

static void detail(ctl_ingest *ing, const char *f, ...) __attribute__((format(printf, 2, 3)));
static void detail(ctl_ingest *ing, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(ing->detail, sizeof(ing->detail), f, ap);
    va_end(ap);
}

static ctl_ingest_result ack(reply_ctx *r, uint16_t ch, int64_t start, c2d_ack_status status,
                             uint64_t offset, const char *reason)
{
    c2d_msg m;
    memset(&m, 0, sizeof(m));
    m.type = C2D_MSG_ACK;
    m.version = C2D_PROTO_VERSION;
    m.channel = ch;
    m.start_us = start;
    m.status = status;
    m.offset = offset;
    if (reason)
        snprintf(m.reason, sizeof(m.reason), "%s", reason);
    r->sink(r->ud, r->device, &m, r->ing->detail);
    return status == C2D_ACK_REJECTED ? CTL_INGEST_REJECTED : CTL_INGEST_ACCEPTED;
}

static ctl_ingest_result reject(reply_ctx *r, uint16_t ch, int64_t start, uint64_t offset,
                                const char *reason)
{
    return ack(r, ch, start, C2D_ACK_REJECTED, offset, reason);
}

static ctl_ingest_result ignore(reply_ctx *r)
{
    r->sink(r->ud, r->device, NULL, r->ing->detail);
    return CTL_INGEST_IGNORED;
}

/* Where a rejected upload stands: its held bytes if it is in memory. */
static uint64_t held_of(ctl_ingest *ing, const char *device, uint16_t ch, int64_t start)
{
    ctl_seg_key key;
    if (ctl_seg_key_set(&key, device, ch, start) != 0)
        return 0;
    entry *e = find(ing, &key);
    return e ? e->held : 0;
}

/* ---- begin ---------------------------------------------------------------- */

static int same_begin(const ctl_partial_rec *a, const c2d_msg *m)
{
    return a->size == m->size && a->duration_us == m->duration_us &&
           strcmp(a->sha256, m->sha256) == 0;
}

typedef struct {
    uint64_t count;
    ctl_seg_key oldest;
    int64_t oldest_us;
} partial_scan;

static int scan_partial(void *ud, const ctl_seg_key *key, const ctl_partial_rec *rec)
{
    partial_scan *s = ud;
    if (s->count++ == 0 || rec->created_us < s->oldest_us) {
        s->oldest = *key;
        s->oldest_us = rec->created_us;
    }
    return 0;
}

/* Room for one more upload of key->device: 0, or -EDQUOT at the limit. */
static int make_room(ctl_ingest *ing, const ctl_seg_key *key)
{
    partial_scan s;
    memset(&s, 0, sizeof(s));
    int rc = ctl_ledger_foreach_partial(ing->ledger, key->device, scan_partial, &s);
    if (rc != 0)
        return rc;
    if (s.count < CTL_INGEST_PARTIALS_PER_DEVICE)
        return 0;
    if (s.count > CTL_INGEST_PARTIALS_PER_DEVICE ||
        s.oldest_us > c2d_now_us() - CTL_INGEST_PARTIAL_STALE_US)
        return -EDQUOT;
    rc = discard(ing, &s.oldest);
    return rc == -EBUSY ? -EDQUOT : rc;
}

/* Starts key's upload from scratch: record, empty file, fresh hash. */
static int start_upload(ctl_ingest *ing, const ctl_seg_key *key, const c2d_msg *m, entry **out)
{
    ctl_partial_rec rec;
    memset(&rec, 0, sizeof(rec));
    rec.duration_us = m->duration_us;
    rec.size = m->size;
    memcpy(rec.sha256, m->sha256, sizeof(rec.sha256));
    rec.created_us = c2d_now_us();
    entry *old = find(ing, key);
    if (old)
        drop(ing, old);
    int rc = ctl_ledger_put_partial(ing->ledger, key, &rec);
    if (rc != 0)
        return rc;
    reserve_fd(ing);
    int fd;
    if ((rc = ctl_store_partial_open(ing->store, key, 1, 1, &fd, NULL)) != 0) {
        ctl_ledger_del_partial(ing->ledger, key);
        return rc;
    }
    ctl_sha256 *h = NULL;
    entry *e = NULL;
    if (ctl_sha256_new(&h) != 0 || !(e = add(ing, key, &rec, fd, 0, h))) {
        ctl_sha256_free(h);
        close(fd);
        return -ENOMEM;
    }
    *out = e;
    return 0;
}

static ctl_ingest_result on_begin(reply_ctx *r, const c2d_msg *m)
{
    ctl_ingest *ing = r->ing;
    const uint16_t ch = m->channel;
    const int64_t start = m->start_us;
    if (ch >= ing->lim.max_channels) {
        detail(ing, "begin for channel %u, controller accepts 0..%" PRIu32, ch,
               ing->lim.max_channels - 1);
        return reject(r, ch, start, 0, "bad_channel");
    }
    if (m->size > ing->lim.max_segment_bytes) {
        detail(ing, "begin declares %" PRIu64 " bytes, max_segment_bytes is %" PRIu64, m->size,
               ing->lim.max_segment_bytes);
        return reject(r, ch, start, 0, "too_large");
    }
    ctl_seg_key key;
    if (ctl_seg_key_set(&key, r->device, ch, start) != 0) {
        detail(ing, "begin with start %" PRId64, start);
        return reject(r, ch, start, 0, "out_of_range");
    }

    ctl_segment_rec seg;
    int rc = ctl_ledger_get_segment(ing->ledger, &key, &seg);
    if (rc == 0) {
        if (seg.size == m->size && strcmp(seg.sha256, m->sha256) == 0) {
            discard(ing, &key); /* a stray partial of a stored segment */
            detail(ing, "already stored as %s", seg.path);
            return ack(r, ch, start, C2D_ACK_DUPLICATE, seg.size, NULL);
        }
        detail(ing,
               "stored segment has size %" PRIu64 " sha256 %.12s..., begin declares %" PRIu64
               " sha256 %.12s...",
               seg.size, seg.sha256, m->size, m->sha256);
        return reject(r, ch, start, 0, "conflict");
    }
    if (rc != -ENOENT)
        goto storage;

    /* The virtual disk would refuse it: say so before the upload. */
    if ((rc = ctl_ledger_precheck(ing->ledger, &key, m->size)) != 0) {
        if (rc != -EDQUOT && rc != -ENODEV && rc != -EACCES)
            goto storage;
        detail(ing, "refused by its virtual disk: %s", disk_reason(rc));
        return reject(r, ch, start, held_of(ing, r->device, ch, start), disk_reason(rc));
    }

    entry *e = find(ing, &key);
    if (e && e->committing) {
        touch(ing, e);
        if (!same_begin(&e->begin, m)) {
            detail(ing, "begin differs from the upload being committed");
            return reject(r, ch, start, 0, "storage");
        }
        /* Everything is here: the agent sends end, answered once the
         * commit is done. */
        detail(ing, "all %" PRIu64 " bytes held, commit in progress", e->held);
        return ack(r, ch, start, C2D_ACK_OFFSET, e->held, NULL);
    }
    if (e && same_begin(&e->begin, m)) {
        touch(ing, e);
        detail(ing, "resuming at %" PRIu64 " of %" PRIu64, e->held, e->begin.size);
        return ack(r, ch, start, C2D_ACK_OFFSET, e->held, NULL);
    }
    if (!e) {
        ctl_partial_rec pr;
        rc = ctl_ledger_get_partial(ing->ledger, &key, &pr);
        if (rc == 0 && same_begin(&pr, m)) {
            /* After a restart or an eviction: hash what the file holds. */
            if ((rc = load(ing, &key, &pr, &e)) != 0)
                goto storage;
            detail(ing, "resuming at %" PRIu64 " of %" PRIu64 " (reloaded)", e->held,
                   e->begin.size);
            return ack(r, ch, start, C2D_ACK_OFFSET, e->held, NULL);
        }
        if (rc == -ENOENT && (rc = make_room(ing, &key)) != 0) {
            if (rc != -EDQUOT)
                goto storage;
            detail(ing, "device has %d uploads in progress (limit)",
                   CTL_INGEST_PARTIALS_PER_DEVICE);
            return reject(r, ch, start, 0, CTL_REASON_PARTIAL_LIMIT);
        }
        if (rc != 0)
            goto storage;
    }
    /* New upload, or a begin that differs from the one in progress (the
     * agent cut the segment again): start from scratch. */
    if ((rc = start_upload(ing, &key, m, &e)) != 0)
        goto storage;
    detail(ing, "new upload of %" PRIu64 " bytes", m->size);
    return ack(r, ch, start, C2D_ACK_OFFSET, 0, NULL);
storage:
    detail(ing, "begin: %s", strerror(-rc));
    return reject(r, ch, start, held_of(ing, r->device, ch, start), "storage");
}

/* ---- chunk ---------------------------------------------------------------- */

static ctl_ingest_result on_chunk(reply_ctx *r, const uint8_t *buf, size_t len)
{
    ctl_ingest *ing = r->ing;
    c2d_chunk c;
    memset(&c, 0, sizeof(c));
    c2d_status st = c2d_chunk_decode(buf, len, &c);
    if (st != C2D_OK) {
        detail(ing, "chunk of %zu bytes: %s", len, c2d_strerror(st));
        /* A start the decoder refused as out of range cannot go into an
         * ack the agent could decode: answer with 0. */
        int64_t start = c.start_us < 0 || c.start_us > C2D_INT_MAX ? 0 : c.start_us;
        return reject(r, c.channel, start, held_of(ing, r->device, c.channel, start),
                      c2d_reason(st));
    }
    const uint16_t ch = c.channel;
    const int64_t start = c.start_us;
    if (ch >= ing->lim.max_channels) {
        detail(ing, "chunk for channel %u, controller accepts 0..%" PRIu32, ch,
               ing->lim.max_channels - 1);
        return reject(r, ch, start, 0, "bad_channel");
    }
    ing->cur.channel = ch;
    ing->cur.start_us = start;
    ing->cur.offset = c.offset;
    ing->cur.length = c.length;
    ctl_seg_key key;
    ctl_seg_key_set(&key, r->device, ch, start); /* decode checked start >= 0 */
    entry *e;
    int rc = lookup(ing, &key, &e);
    if (rc == -ENOENT) {
        ctl_segment_rec seg;
        if (ctl_ledger_get_segment(ing->ledger, &key, &seg) == 0 &&
            c.offset + c.length <= seg.size) {
            detail(ing,
                   "chunk at %" PRIu64 " for committed segment ch %u start %" PRId64
                   " ignored (redelivery)",
                   c.offset, ch, start);
            return ignore(r);
        }
        detail(ing, "chunk at %" PRIu64 " without a begin", c.offset);
        return reject(r, ch, start, 0, "unknown_segment");
    }
    if (rc != 0) {
        detail(ing, "chunk: loading upload: %s", strerror(-rc));
        return reject(r, ch, start, 0, "storage");
    }
    const uint64_t end = c.offset + c.length; /* decode checked: no overflow */
    if (end > e->begin.size) {
        detail(ing, "chunk [%" PRIu64 ", %" PRIu64 ") past the declared size %" PRIu64, c.offset,
               end, e->begin.size);
        return reject(r, ch, start, e->held, "oversize");
    }
    if (c.offset > e->held) {
        detail(ing, "chunk at %" PRIu64 " but %" PRIu64 " bytes held", c.offset, e->held);
        return reject(r, ch, start, e->held, "gap");
    }
    if ((rc = ensure_fd(ing, e)) != 0) {
        /* Forget it: the next begin reloads from what the file holds. */
        drop(ing, e);
        detail(ing, "chunk: reopening partial file: %s", strerror(-rc));
        return reject(r, ch, start, 0, "storage");
    }
    if (c.offset < e->held) {
        if (end <= e->held) {
            rc = same_bytes(ing, e->fd, c.offset, c.data, c.length);
            if (rc < 0)
                goto storage;
            if (rc == 1) {
                detail(ing, "chunk [%" PRIu64 ", %" PRIu64 ") already held (redelivery)", c.offset,
                       end);
                return ignore(r);
            }
        }
        detail(ing, "chunk [%" PRIu64 ", %" PRIu64 ") overlaps the %" PRIu64 " bytes held",
               c.offset, end, e->held);
        return reject(r, ch, start, e->held, "overlap");
    }
    if ((rc = pwrite_all(e->fd, c.data, c.length, e->held)) != 0) {
        /* Leave the file as it was so the upload can resume from held. */
        if (ftruncate(e->fd, (off_t)e->held) != 0)
            close_fd(ing, e); /* reopened (and checked) on the next chunk */
        goto storage;
    }
#ifdef SYNC_FILE_RANGE_WRITE
    /* Start writing the chunk to disk now (a hint, it does not wait), so
     * the fsync of the commit has little left to do. */
    (void)sync_file_range(e->fd, (off_t)e->held, (off_t)c.length, SYNC_FILE_RANGE_WRITE);
#endif
    ctl_sha256_update(e->hash, c.data, c.length);
    e->held = end;
    ing->detail[0] = '\0';
    return ack(r, ch, start, C2D_ACK_OFFSET, e->held, NULL);
storage:
    detail(ing, "chunk at %" PRIu64 ": %s", c.offset, strerror(-rc));
    return reject(r, ch, start, e->held, "storage");
}

/* ---- end ------------------------------------------------------------------- */

/* Answers the end(s) of e, whose commit has run as job: n acks, committed or
 * rejected. */
static ctl_ingest_result finish_commit(reply_ctx *r, entry *e, const ctl_commit_job *job,
                                       unsigned n)
{
    ctl_ingest *ing = r->ing;
    const uint16_t ch = job->key.channel;
    const int64_t start = job->key.start_us;
    c2d_ack_status status = C2D_ACK_COMMITTED;
    uint64_t offset = e->held;
    const char *reason = NULL;
    if (job->rc == 0) {
        detail(ing, "stored as %s", job->rec.path);
        drop(ing, e);
    } else {
        detail(ing, "commit: %s%s", strerror(-job->rc),
               job->unput_error ? "; segment left in the store without a record" : "");
        status = C2D_ACK_REJECTED;
        reason = disk_reason(job->rc);
        if (job->unput_error) {
            drop(ing, e);
            offset = 0;
        }
    }
    ctl_ingest_result res = CTL_INGEST_ACCEPTED;
    for (unsigned i = 0; i < n; i++)
        res = ack(r, ch, start, status, offset, reason);
    return res;
}

static ctl_ingest_result on_end(reply_ctx *r, const c2d_msg *m)
{
    ctl_ingest *ing = r->ing;
    const uint16_t ch = m->channel;
    const int64_t start = m->start_us;
    if (ch >= ing->lim.max_channels) {
        detail(ing, "end for channel %u, controller accepts 0..%" PRIu32, ch,
               ing->lim.max_channels - 1);
        return reject(r, ch, start, 0, "bad_channel");
    }
    ctl_seg_key key;
    if (ctl_seg_key_set(&key, r->device, ch, start) != 0) {
        detail(ing, "end with start %" PRId64, start);
        return reject(r, ch, start, 0, "out_of_range");
    }
    ctl_segment_rec seg;
    entry *e;
    int rc = lookup(ing, &key, &e);
    if (rc == -ENOENT) {
        if (ctl_ledger_get_segment(ing->ledger, &key, &seg) == 0) {
            detail(ing, "end for a segment already stored as %s", seg.path);
            return ack(r, ch, start, C2D_ACK_DUPLICATE, seg.size, NULL);
        }
        detail(ing, "end without a begin");
        return reject(r, ch, start, 0, "unknown_segment");
    }
    if (rc != 0) {
        detail(ing, "end: loading upload: %s", strerror(-rc));
        return reject(r, ch, start, 0, "storage");
    }
    if (e->committing) {
        if (e->deferred_ends < CTL_INGEST_DEFERRED_ENDS_MAX)
            e->deferred_ends++;
        detail(ing, "end while the commit is in progress: answered when it is done");
        return CTL_INGEST_PENDING;
    }
    if (e->held != e->begin.size) {
        detail(ing, "end with %" PRIu64 " of %" PRIu64 " bytes", e->held, e->begin.size);
        return reject(r, ch, start, e->held, "size_mismatch");
    }
    /* Finish a copy: the upload keeps its state if the commit fails. */
    char hex[65];
    if ((rc = ctl_sha256_peek_hex(e->hash, hex)) != 0)
        goto storage;
    if (strcmp(hex, e->begin.sha256) != 0) {
        detail(ing, "received bytes hash to %.16s..., begin declared %.16s...; upload discarded",
               hex, e->begin.sha256);
        discard(ing, &key);
        return reject(r, ch, start, 0, "hash_mismatch");
    }
    /* A segment can only have been stored by this upload; check anyway,
     * the store must never replace a committed file. */
    rc = ctl_ledger_get_segment(ing->ledger, &key, &seg);
    if (rc == 0) {
        int same = strcmp(seg.sha256, hex) == 0 && seg.size == e->held;
        discard(ing, &key);
        detail(ing, "end for a segment already stored as %s", seg.path);
        return same ? ack(r, ch, start, C2D_ACK_DUPLICATE, seg.size, NULL)
                    : reject(r, ch, start, 0, "conflict");
    }
    if (rc != -ENOENT)
        goto storage;
    if ((rc = ensure_fd(ing, e)) != 0) {
        drop(ing, e);
        detail(ing, "end: reopening partial file: %s", strerror(-rc));
        return reject(r, ch, start, 0, "storage");
    }

    ctl_commit_job job;
    memset(&job, 0, sizeof(job));
    job.key = key;
    job.fd = e->fd;
    job.rec.duration_us = e->begin.duration_us;
    job.rec.size = e->held;
    memcpy(job.rec.sha256, hex, sizeof(job.rec.sha256));
    job.rec.committed_us = c2d_now_us();
    if (ing->submit && ing->submit(ing->submit_ud, &job) == 0) {
        e->committing = 1;
        e->deferred_ends = 0;
        detail(ing, "commit queued");
        return CTL_INGEST_PENDING;
    }
    ctl_commit_execute(ing->store, ing->ledger, &job, 1);
    return finish_commit(r, e, &job, 1);
storage:
    detail(ing, "end: %s", strerror(-rc));
    return reject(r, ch, start, e->held, "storage");
}

/* ---- dispatch ---------------------------------------------------------------- */

/* Best effort: the ch and start of a control message that did not decode,
 * so its rejection can be matched by the agent. */
static void peek_address(const uint8_t *buf, size_t len, uint16_t *ch, int64_t *start)
{
    *ch = 0;
    *start = 0;
    if (len > C2D_MSG_MAX)
        return;
    cJSON *root = cJSON_ParseWithLength((const char *)buf, len);
    if (!root)
        return;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "ch");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "start");
    if (cJSON_IsNumber(c) && c->valuedouble >= 0 && c->valuedouble <= 65535)
        *ch = (uint16_t)c->valuedouble;
    if (cJSON_IsNumber(s) && s->valuedouble >= 0 && s->valuedouble <= 9007199254740992.0)
        *start = (int64_t)s->valuedouble;
    cJSON_Delete(root);
}

ctl_ingest_result ctl_ingest_handle(ctl_ingest *ing, const char *device, const uint8_t *payload,
                                    size_t len, ctl_ack_sink sink, void *ud)
{
    if (!device || !c2d_device_id_valid(device))
        return CTL_INGEST_BAD_DEVICE;
    reply_ctx r = {ing, device, sink, ud};
    ing->detail[0] = '\0';
    memset(&ing->cur, 0, sizeof(ing->cur));
    if (len > 0 && !payload)
        len = 0;
    if (c2d_is_chunk(payload, len)) {
        ing->cur.kind = CTL_INGEST_MSG_CHUNK;
        return on_chunk(&r, payload, len);
    }

    c2d_msg m;
    memset(&m, 0, sizeof(m));
    c2d_status st = c2d_msg_decode((const char *)payload, len, &m);
    if (st != C2D_OK) {
        uint16_t ch;
        int64_t start;
        peek_address(payload, len, &ch, &start);
        if (st == C2D_ERR_VERSION)
            detail(ing, "control message with protocol version %d", m.version);
        else
            detail(ing, "control message of %zu bytes: %s", len, c2d_strerror(st));
        return reject(&r, ch, start, 0, c2d_reason(st));
    }
    switch (m.type) {
    case C2D_MSG_BEGIN:
        ing->cur.kind = CTL_INGEST_MSG_BEGIN;
        ing->cur.channel = m.channel;
        ing->cur.start_us = m.start_us;
        return on_begin(&r, &m);
    case C2D_MSG_END:
        ing->cur.kind = CTL_INGEST_MSG_END;
        ing->cur.channel = m.channel;
        ing->cur.start_us = m.start_us;
        return on_end(&r, &m);
    case C2D_MSG_ACK:
        break;
    }
    detail(ing, "control message of type \"%s\" on the seg topic", "ack");
    return reject(&r, m.channel, m.start_us, 0, "unknown_type");
}

/* ---- life cycle ---------------------------------------------------------------- */

int ctl_ingest_new(ctl_ledger *ledger, ctl_store *store, const ctl_ingest_limits *lim,
                   ctl_ingest **out)
{
    if (!ledger || !store || !lim || lim->max_segment_bytes == 0 || lim->max_channels == 0 ||
        lim->max_channels > 65536)
        return -EINVAL;
    ctl_ingest *ing = calloc(1, sizeof(*ing));
    if (!ing)
        return -ENOMEM;
    ing->ledger = ledger;
    ing->store = store;
    ing->lim = *lim;
    *out = ing;
    return 0;
}

void ctl_ingest_free(ctl_ingest *ing)
{
    if (!ing)
        return;
    while (ing->head)
        drop(ing, ing->head);
    free(ing);
}

size_t ctl_ingest_open_count(const ctl_ingest *ing)
{
    return ing->n_entries;
}

const ctl_ingest_msg_info *ctl_ingest_current(const ctl_ingest *ing)
{
    return &ing->cur;
}

void ctl_ingest_set_committer(ctl_ingest *ing, ctl_commit_submit_fn submit, void *ud)
{
    ing->submit = submit;
    ing->submit_ud = ud;
}

int ctl_ingest_committing(ctl_ingest *ing, const ctl_seg_key *key)
{
    const entry *e = ing ? find(ing, key) : NULL;
    return e && e->committing;
}

int ctl_ingest_commit_done(ctl_ingest *ing, const ctl_commit_job *job, ctl_ack_sink sink, void *ud)
{
    entry *e = find(ing, &job->key);
    if (!e || !e->committing || e->fd != job->fd)
        return -ENOENT;
    reply_ctx r = {ing, job->key.device, sink, ud};
    ing->detail[0] = '\0';
    memset(&ing->cur, 0, sizeof(ing->cur));
    ing->cur.kind = CTL_INGEST_MSG_END;
    ing->cur.channel = job->key.channel;
    ing->cur.start_us = job->key.start_us;
    e->committing = 0;
    unsigned n = 1 + e->deferred_ends;
    e->deferred_ends = 0;
    finish_commit(&r, e, job, n);
    return 0;
}

/* ---- recovery ------------------------------------------------------------------ */

typedef struct {
    ctl_ingest *ing;
    ctl_recovery *rec;
    ctl_seg_key *keys; /* partial records, collected outside the read txn */
    ctl_partial_rec *recs;
    size_t n, cap;
} recover_ctx;

static int rec_partial_file(void *ud, const ctl_seg_key *key)
{
    recover_ctx *x = ud;
    ctl_partial_rec pr;
    int rc = ctl_ledger_get_partial(x->ing->ledger, key, &pr);
    if (rc == -ENOENT) {
        rc = ctl_store_partial_remove(x->ing->store, key);
        x->rec->partial_files_deleted += rc == 0;
        return rc == -ENOENT ? 0 : rc;
    }
    return rc;
}

static int rec_collect(void *ud, const ctl_seg_key *key, const ctl_partial_rec *rec)
{
    recover_ctx *x = ud;
    if (x->n == x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 64;
        ctl_seg_key *k = realloc(x->keys, cap * sizeof(*k));
        if (!k)
            return -ENOMEM;
        x->keys = k;
        ctl_partial_rec *r = realloc(x->recs, cap * sizeof(*r));
        if (!r)
            return -ENOMEM;
        x->recs = r;
        x->cap = cap;
    }
    x->keys[x->n] = *key;
    x->recs[x->n] = *rec;
    x->n++;
    return 0;
}

/* A partial record whose file is gone: either the crash came between the
 * rename into the store and the ledger commit (finish the commit if the
 * stored file is the declared one), or the file never got created. */
static int rec_fix_record(ctl_ingest *ing, const ctl_seg_key *key, const ctl_partial_rec *pr,
                          ctl_recovery *rec)
{
    int fd;
    uint64_t size;
    int rc = ctl_store_partial_open(ing->store, key, 0, 0, &fd, &size);
    if (rc == 0) {
        close(fd);
        rec->partials++;
        return 0;
    }
    if (rc != -ENOENT)
        return rc;
    ctl_segment_rec seg;
    if (ctl_ledger_get_segment(ing->ledger, key, &seg) != 0 &&
        ctl_store_open(ing->store, key, &fd, &size) == 0) {
        ctl_sha256 *h = NULL;
        char hex[65];
        rc = size != pr->size ? -EIO : ctl_sha256_new(&h);
        if (rc == 0)
            rc = hash_fd(ing, fd, size, h);
        if (rc == 0)
            rc = ctl_sha256_peek_hex(h, hex);
        ctl_sha256_free(h);
        close(fd);
        if (rc == 0) {
            if (strcmp(hex, pr->sha256) == 0) {
                memset(&seg, 0, sizeof(seg));
                seg.duration_us = pr->duration_us;
                seg.size = size;
                memcpy(seg.sha256, hex, sizeof(hex));
                seg.committed_us = c2d_now_us();
                snprintf(seg.path, sizeof(seg.path), "store/%s/%u/%" PRId64 ".ts", key->device,
                         key->channel, key->start_us);
                if ((rc = ctl_ledger_commit_segment(ing->ledger, key, &seg)) != 0)
                    return rc;
                rec->segments_recovered++;
                return 0;
            }
        }
    }
    rc = ctl_ledger_del_partial(ing->ledger, key);
    rec->partial_records_dropped += rc == 0;
    return rc == -ENOENT ? 0 : rc;
}

static int rec_store_file(void *ud, const ctl_seg_key *key)
{
    recover_ctx *x = ud;
    ctl_segment_rec seg;
    int rc = ctl_ledger_get_segment(x->ing->ledger, key, &seg);
    if (rc == -ENOENT) {
        x->rec->store_orphans++;
        return 0;
    }
    return rc;
}

int ctl_ingest_recover(ctl_ingest *ing, ctl_recovery *out)
{
    ctl_recovery rec;
    memset(&rec, 0, sizeof(rec));
    recover_ctx x = {ing, &rec, NULL, NULL, 0, 0};
    uint64_t skipped = 0, skipped2 = 0;
    int rc = ctl_store_foreach_partial(ing->store, rec_partial_file, &x, &skipped);
    if (rc == 0)
        rc = ctl_ledger_foreach_partial(ing->ledger, NULL, rec_collect, &x);
    for (size_t i = 0; rc == 0 && i < x.n; i++)
        rc = rec_fix_record(ing, &x.keys[i], &x.recs[i], &rec);
    if (rc == 0)
        rc = ctl_store_foreach(ing->store, rec_store_file, &x, &skipped2);
    free(x.keys);
    free(x.recs);
    if (rc != 0)
        return rc;
    rec.skipped_names = skipped + skipped2;
    *out = rec;
    return 0;
}
