/* tools/bench ledger (issue 4): commit-with-quota-check throughput of the
 * controller's ledger on full virtual disks, against plain LMDB puts.
 *
 * In a fresh temporary directory: D virtual disks (policy overwrite), C
 * cameras on each ("dev-NNNNN", channels 1..C), N segments of SEG_BYTES in
 * all. The fill runs time-major in chunks of FILL_STEPS segments per camera
 * (every disk grows together, each camera appends at its end as in
 * production) through ctl_ledger_commit_segments with large transactions.
 * At two checkpoints, N/10 and N segments, every disk's capacity is exactly
 * what it holds, so that every measured commit evicts the disk's oldest
 * segment, and the same run measures:
 *   - K commits of segments of random cameras in transactions of --batch
 *     (64, the committer's CTL_COMMITTER_BATCH_MAX): commits_per_s;
 *   - the baseline: a plain LMDB environment with the same settings
 *     (default durable sync, same map size), one database filled with the
 *     same number of records of the same key and value sizes, and the same
 *     K puts in transactions of the same size. Ledger and baseline take
 *     turns in --rounds rounds; rates and ratio are medians of the rounds;
 *   - L single-segment transactions on each: p50/p99_commit_us (latency).
 * After each checkpoint the disks must still be full with the same counts
 * and the trash must hold one file per measured commit: every commit
 * evicted exactly one segment.
 *
 * stdout gets one JSON line; progress goes to stderr. Exit status 1 on any
 * error, 2 on bad arguments or not enough disk space. */
#include "controller/ledger.h"
#include "controller/quota.h"
#include "common/c2d_fs.h"
#include "common/c2d_lmdb.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <lmdb.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* 10 s of an 8 Mbit/s camera: the size and duration of every segment. All
 * the same, so that each commit on a full disk evicts exactly one. */
#define SEG_BYTES 10000000ULL
#define SEG_US 10000000LL
/* 2023-11-14, so that the paths look like the store's. */
#define T0_US 1700000000000000LL
/* Segments per camera in one fill round: large enough that a fill
 * transaction dirties few pages per segment, small enough that all disks
 * grow together. */
#define FILL_STEPS 16
/* Estimated bytes per segment for the disk-space check: the ledger's
 * records and indexes in B-tree pages about 60% full (330 B measured at
 * 10M, 420 B at 100k) plus the baseline's (190 B), with a margin for freed
 * pages. */
#define EST_BYTES_PER_SEG 1000ULL
/* Map size per segment: several times the ledger's measured bytes per
 * segment (16 GB at 10M); the map costs address space, not disk. */
#define MAP_BYTES_PER_SEG 1600ULL
#define MAP_MIN (1ULL << 30)
/* Bound of --rounds. */
#define ROUNDS_MAX 64

typedef struct {
    uint64_t segments;
    unsigned disks, cams_per_disk, batch, fill_txn, rounds;
    uint64_t commits, lat_commits;
    const char *dir;
    int keep;
    uint64_t seed;
} opts;

typedef struct {
    double rate; /* segments per second in batches */
    double p99_batch_us;
    double p50_us, p99_us; /* single-segment transactions */
    double cpu_share;      /* user+sys CPU / wall of the batch phase */
    double wbytes;         /* bytes written per segment in batches */
} measure;

typedef struct {
    uint64_t segments;
    measure led, plain;
    double ratio;             /* median of the rounds' ratios */
    measure ns_led, ns_plain; /* without sync (diagnostic) */
} checkpoint;

/* Bytes this process has passed to write system calls (/proc/self/io
 * wchar: LMDB's dirty pages and meta pages; 0 if unavailable). */
static uint64_t written(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    unsigned long long v = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "wchar: %llu", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

/* The order in which cameras send their measured segments (next_cam). */
typedef struct {
    uint32_t *perm;
    size_t n, pos;
    uint64_t seed;
} cam_seq;

typedef struct {
    opts o;
    unsigned ncams;
    char tmp[4096], led_dir[4200], plain_dir[4200];
    ctl_ledger *led;
    MDB_env *penv;
    MDB_dbi pdbi;
    uint32_t *led_next, *plain_next; /* next step of each camera */
    cam_seq led_seq, plain_seq;
    ctl_seg_key *keys;
    ctl_segment_rec *recs;
    int *rcs;
    double *times, *times2; /* ledger's, baseline's */
    uint64_t measured;      /* ledger commits measured so far: trash entries */
    uint8_t plain_val[512];
    size_t plain_vlen;
} bench;

/* SIGINT/SIGTERM: stop at the next transaction and remove the temporary
 * directory (gigabytes) before exiting. */
static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench-ledger: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* xorshift64* */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* The order in which cameras send their measured segments: rounds in which
 * every camera sends one, each round in a new random order. Cameras record
 * concurrently, so a disk's oldest segment is always older than the new
 * one (the quota evicts only older video); the ledger and the baseline see
 * the same sequence. */
static unsigned next_cam(cam_seq *q)
{
    if (q->pos == q->n) {
        for (size_t i = q->n - 1; i > 0; i--) {
            size_t j = (size_t)(rnd(&q->seed) % (i + 1));
            uint32_t t = q->perm[i];
            q->perm[i] = q->perm[j];
            q->perm[j] = t;
        }
        q->pos = 0;
    }
    return q->perm[q->pos++];
}

static int cam_seq_init(cam_seq *q, size_t n, uint64_t seed)
{
    if (!(q->perm = calloc(n, sizeof(*q->perm))))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        q->perm[i] = (uint32_t)i;
    q->n = n;
    q->pos = n;
    q->seed = seed;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The p-th quantile (0..1) of n values; sorts v. */
static double quantile(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    size_t i = (size_t)ceil(p * (double)n);
    return v[i ? i - 1 : 0];
}

static void cam_name(const bench *b, unsigned cam, char *dev, size_t len, uint16_t *ch)
{
    snprintf(dev, len, "dev-%05u", cam / b->o.cams_per_disk);
    *ch = (uint16_t)(cam % b->o.cams_per_disk + 1);
}

/* Segment number step of camera cam, as the store would record it. */
static void make_seg(const bench *b, unsigned cam, uint32_t step, ctl_seg_key *key,
                     ctl_segment_rec *rec)
{
    char dev[C2D_DEVICE_ID_MAX + 1];
    uint16_t ch;
    cam_name(b, cam, dev, sizeof(dev), &ch);
    int64_t start = T0_US + (int64_t)step * SEG_US;
    ctl_seg_key_set(key, dev, ch, start);
    memset(rec, 0, sizeof(*rec));
    rec->duration_us = SEG_US;
    rec->size = SEG_BYTES;
    snprintf(rec->sha256, sizeof(rec->sha256), "%032" PRIx64 "%032" PRIx64, (uint64_t)cam,
             (uint64_t)step);
    rec->committed_us = start + SEG_US;
    snprintf(rec->path, sizeof(rec->path), "store/%s/%u/%" PRId64 ".ts", dev, ch, start);
}

/* The segments key (ledger.h): device\0 + ch BE16 + start BE64. */
static size_t plain_key(const bench *b, unsigned cam, uint32_t step, uint8_t *k)
{
    char dev[C2D_DEVICE_ID_MAX + 1];
    uint16_t ch;
    cam_name(b, cam, dev, sizeof(dev), &ch);
    size_t n = strlen(dev) + 1;
    memcpy(k, dev, n);
    k[n] = (uint8_t)(ch >> 8);
    k[n + 1] = (uint8_t)ch;
    uint64_t s = (uint64_t)(T0_US + (int64_t)step * SEG_US);
    for (int i = 0; i < 8; i++)
        k[n + 2 + i] = (uint8_t)(s >> (56 - 8 * i));
    return n + 10;
}

static int led_commit(bench *b, size_t n)
{
    if (stopping)
        return -EINTR;
    int rc = ctl_ledger_commit_segments(b->led, b->keys, b->recs, n, b->rcs);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = b->rcs[i];
    if (rc != 0)
        say("ledger commit of %zu segments: %s", n, strerror(-rc));
    return rc;
}

static int plain_put(bench *b, MDB_txn *txn, unsigned cam)
{
    uint8_t k[C2D_DEVICE_ID_MAX + 16];
    MDB_val mk = {plain_key(b, cam, b->plain_next[cam]++, k), k};
    MDB_val mv = {b->plain_vlen, b->plain_val};
    return c2d_mdb_errno(mdb_put(txn, b->pdbi, &mk, &mv, MDB_NOOVERWRITE));
}

/* Adds `steps` segments to every camera, FILL_STEPS per camera at a time,
 * in transactions of fill_txn segments; the ledger (plain 0) or the
 * baseline (plain 1). */
static int fill(bench *b, int plain, uint32_t steps)
{
    size_t n = 0;
    MDB_txn *txn = NULL;
    int rc = 0;
    for (uint32_t s0 = 0; rc == 0 && s0 < steps; s0 += FILL_STEPS) {
        uint32_t m = steps - s0 < FILL_STEPS ? steps - s0 : FILL_STEPS;
        for (unsigned cam = 0; rc == 0 && cam < b->ncams; cam++) {
            for (uint32_t i = 0; rc == 0 && i < m; i++) {
                if (!plain) {
                    make_seg(b, cam, b->led_next[cam]++, &b->keys[n], &b->recs[n]);
                    if (++n == b->o.fill_txn) {
                        rc = led_commit(b, n);
                        n = 0;
                    }
                    continue;
                }
                if (stopping)
                    rc = -EINTR;
                else if (!txn && (rc = c2d_mdb_errno(mdb_txn_begin(b->penv, NULL, 0, &txn))) != 0)
                    break;
                if (rc != 0)
                    break;
                if ((rc = plain_put(b, txn, cam)) == 0 && ++n == b->o.fill_txn) {
                    rc = c2d_mdb_errno(mdb_txn_commit(txn));
                    txn = NULL;
                    n = 0;
                }
            }
        }
    }
    if (rc == 0 && n > 0 && !plain)
        rc = led_commit(b, n);
    if (txn && rc == 0)
        rc = c2d_mdb_errno(mdb_txn_commit(txn));
    else if (txn)
        mdb_txn_abort(txn);
    return rc;
}

/* Sets every disk's capacity to what its segments fill exactly. */
static int set_capacity(bench *b, uint64_t per_disk_segs, int create)
{
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(ctl_ledger_env(b->led), NULL, 0, &txn));
    if (rc != 0)
        return rc;
    ctl_disk_cfg cfg = {per_disk_segs * SEG_BYTES, 0, CTL_DISK_OVERWRITE, 1};
    for (unsigned d = 0; rc == 0 && d < b->o.disks; d++) {
        rc = ctl_quota_disk_set(b->led, txn, d + 1, &cfg);
        for (unsigned c = 0; rc == 0 && create && c < b->o.cams_per_disk; c++) {
            char dev[C2D_DEVICE_ID_MAX + 1];
            uint16_t ch;
            cam_name(b, d * b->o.cams_per_disk + c, dev, sizeof(dev), &ch);
            ctl_camera_rec cam = {d + 1, 0, 1};
            rc = ctl_quota_camera_set(b->led, txn, dev, ch, &cam);
        }
    }
    if (rc == 0)
        return c2d_mdb_errno(mdb_txn_commit(txn));
    mdb_txn_abort(txn);
    return rc;
}

/* Entries of a named database of env. */
static int db_entries(MDB_env *env, const char *name, uint64_t *out)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_stat st;
    int rc = c2d_mdb_errno(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    if ((rc = c2d_mdb_errno(mdb_dbi_open(txn, name, 0, &dbi))) == 0 &&
        (rc = c2d_mdb_errno(mdb_stat(txn, dbi, &st))) == 0)
        *out = st.ms_entries;
    mdb_txn_abort(txn);
    return rc;
}

/* Every disk full (up to the headroom overwrite keeps: quota.h), the
 * segments database holding every disk's segments, and one trash entry per
 * segment evicted: the measured commits plus what the headroom took.
 * -EPROTO if not. */
static int verify(bench *b, uint64_t per_disk)
{
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_txn_begin(ctl_ledger_env(b->led), NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    uint64_t held = 0;
    for (unsigned d = 0; rc == 0 && d < b->o.disks; d++) {
        ctl_disk_rec r;
        if ((rc = ctl_quota_disk_get(b->led, txn, d + 1, &r)) != 0)
            break;
        uint64_t slack = r.cfg.capacity / CTL_QUOTA_HEADROOM_DIV + r.cfg.capacity / per_disk;
        if (r.segments > per_disk || r.used > r.cfg.capacity || r.cfg.capacity - r.used > slack) {
            say("disk %u holds %" PRIu64 " segments, %" PRIu64 " of %" PRIu64
                " bytes; expected at most %" PRIu64 " segments, full within %" PRIu64 " bytes",
                d + 1, r.segments, r.used, r.cfg.capacity, per_disk, slack);
            rc = -EPROTO;
        }
        held += r.segments;
    }
    mdb_txn_abort(txn);
    uint64_t segs = 0, trash = 0;
    if (rc == 0 && (rc = db_entries(ctl_ledger_env(b->led), "segments", &segs)) == 0 &&
        (rc = db_entries(ctl_ledger_env(b->led), "trash", &trash)) == 0 &&
        (segs != held || trash != b->measured + (per_disk * b->o.disks - held))) {
        say("ledger holds %" PRIu64 " segments and %" PRIu64 " trash entries; expected %" PRIu64
            " and %" PRIu64,
            segs, trash, held, b->measured + (per_disk * b->o.disks - held));
        rc = -EPROTO;
    }
    return rc;
}

/* What one side did in some batches. */
typedef struct {
    double wall, cpu;
    uint64_t n, wbytes;
} span;

/* k segments of random cameras in transactions of batch, on the ledger
 * (plain 0) or the baseline; each transaction's time goes to times[*nt]. */
static int run_batches(bench *b, int plain, uint64_t k, double *times, size_t *nt, span *sp)
{
    cam_seq *q = plain ? &b->plain_seq : &b->led_seq;
    uint64_t w0 = written();
    double cpu0 = cpu_s(), t0 = now_s();
    int rc = 0;
    for (uint64_t done = 0; rc == 0 && done < k;) {
        size_t n = k - done < b->o.batch ? (size_t)(k - done) : b->o.batch;
        MDB_txn *txn = NULL;
        double t = now_s();
        if (!plain) {
            for (size_t i = 0; i < n; i++) {
                unsigned cam = next_cam(q);
                make_seg(b, cam, b->led_next[cam]++, &b->keys[i], &b->recs[i]);
            }
            t = now_s(); /* building the records is the caller's work */
            rc = led_commit(b, n);
        } else if (stopping) {
            rc = -EINTR;
        } else if ((rc = c2d_mdb_errno(mdb_txn_begin(b->penv, NULL, 0, &txn))) == 0) {
            for (size_t i = 0; rc == 0 && i < n; i++)
                rc = plain_put(b, txn, next_cam(q));
            rc = rc == 0 ? c2d_mdb_errno(mdb_txn_commit(txn)) : (mdb_txn_abort(txn), rc);
        }
        times[(*nt)++] = (now_s() - t) * 1e6;
        done += n;
    }
    if (rc != 0)
        return rc;
    sp->wall += now_s() - t0;
    sp->cpu += cpu_s() - cpu0;
    sp->n += k;
    sp->wbytes += written() - w0;
    if (!plain)
        b->measured += k;
    return 0;
}

/* l single-segment transactions; their times go to times. */
static int run_singles(bench *b, int plain, uint64_t l, double *times)
{
    cam_seq *q = plain ? &b->plain_seq : &b->led_seq;
    int rc = 0;
    for (uint64_t i = 0; rc == 0 && i < l; i++) {
        unsigned cam = next_cam(q);
        MDB_txn *txn;
        double t = now_s();
        if (!plain) {
            make_seg(b, cam, b->led_next[cam]++, &b->keys[0], &b->recs[0]);
            t = now_s();
            rc = led_commit(b, 1);
        } else if (stopping) {
            rc = -EINTR;
        } else if ((rc = c2d_mdb_errno(mdb_txn_begin(b->penv, NULL, 0, &txn))) == 0) {
            rc = plain_put(b, txn, cam);
            rc = rc == 0 ? c2d_mdb_errno(mdb_txn_commit(txn)) : (mdb_txn_abort(txn), rc);
        }
        times[i] = (now_s() - t) * 1e6;
    }
    if (rc == 0 && !plain)
        b->measured += l;
    return rc;
}

static double median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void summarize(measure *m, const span *sp, double rate, double *times, size_t nt)
{
    m->rate = rate;
    m->cpu_share = sp->wall > 0 ? sp->cpu / sp->wall : 0;
    m->wbytes = sp->n ? (double)sp->wbytes / (double)sp->n : 0;
    m->p99_batch_us = quantile(times, nt, 0.99);
}

static void span_add(span *to, const span *from)
{
    to->wall += from->wall;
    to->cpu += from->cpu;
    to->n += from->n;
    to->wbytes += from->wbytes;
}

/* The measurements of a checkpoint: --rounds rounds in which the ledger
 * commits K/rounds segments and then the baseline puts as many (the
 * machine is shared: a slow spell then hits both sides, not one); rates
 * and the ratio are medians over the rounds (the ratio of each round's
 * pair). Then L single-segment transactions on each side. */
static int measure_pair(bench *b, checkpoint *cp)
{
    double lr[ROUNDS_MAX], pr[ROUNDS_MAX], ra[ROUNDS_MAX];
    span sl = {0}, sp = {0};
    size_t nl = 0, np = 0;
    unsigned rounds = b->o.rounds;
    int rc = 0;
    for (unsigned r = 0; rc == 0 && r < rounds; r++) {
        uint64_t k = b->o.commits / rounds + (r == rounds - 1 ? b->o.commits % rounds : 0);
        span l1 = {0}, p1 = {0};
        if ((rc = run_batches(b, 0, k, b->times, &nl, &l1)) != 0 ||
            (rc = run_batches(b, 1, k, b->times2, &np, &p1)) != 0)
            break;
        lr[r] = (double)k / l1.wall;
        pr[r] = (double)k / p1.wall;
        ra[r] = lr[r] / pr[r];
        say("  round %u: ledger %.0f/s, baseline %.0f/s, ratio %.3f", r + 1, lr[r], pr[r], ra[r]);
        span_add(&sl, &l1);
        span_add(&sp, &p1);
    }
    if (rc != 0)
        return rc;
    summarize(&cp->led, &sl, median(lr, rounds), b->times, nl);
    summarize(&cp->plain, &sp, median(pr, rounds), b->times2, np);
    cp->ratio = median(ra, rounds);
    measure *ms[2] = {&cp->led, &cp->plain};
    for (int i = 0; rc == 0 && i < 2; i++) {
        measure *m = ms[i];
        if ((rc = run_singles(b, i, b->o.lat_commits, b->times)) != 0)
            break;
        m->p50_us = quantile(b->times, b->o.lat_commits, 0.50);
        m->p99_us = quantile(b->times, b->o.lat_commits, 0.99);
        say("%s: %" PRIu64 " in batches of %u: %.0f/s (median of rounds; %.1f us each, %.0f bytes "
            "written each; p99 batch %.0f us; CPU %.0f%% of wall); single: p50 %.0f us, p99 %.0f "
            "us",
            i ? "baseline puts" : "ledger commits", b->o.commits, b->o.batch, m->rate,
            1e6 / m->rate, m->wbytes, m->p99_batch_us, 100 * m->cpu_share, m->p50_us, m->p99_us);
    }
    return rc;
}

/* Diagnostic: batches again with MDB_NOSYNC on both environments, so
 * that the difference from the durable numbers is the cost of the syncs
 * (the pages are still written, to the page cache). */
static int measure_nosync(bench *b, measure *led, measure *plain)
{
    MDB_env *envs[2] = {ctl_ledger_env(b->led), b->penv};
    measure *ms[2] = {led, plain};
    int rc = 0;
    for (int i = 0; rc == 0 && i < 2; i++) {
        span sp = {0};
        size_t nt = 0;
        if ((rc = c2d_mdb_errno(mdb_env_set_flags(envs[i], MDB_NOSYNC, 1))) != 0)
            break;
        rc = run_batches(b, i, b->o.commits, i ? b->times2 : b->times, &nt, &sp);
        mdb_env_set_flags(envs[i], MDB_NOSYNC, 0);
        if (rc == 0)
            rc = c2d_mdb_errno(mdb_env_sync(envs[i], 1));
        if (rc != 0)
            break;
        summarize(ms[i], &sp, (double)sp.n / sp.wall, i ? b->times2 : b->times, nt);
        say("%s without sync: %.0f/s (%.1f us each; CPU %.0f%% of wall)",
            i ? "baseline puts" : "ledger commits", ms[i]->rate, 1e6 / ms[i]->rate,
            100 * ms[i]->cpu_share);
    }
    return rc;
}

static int run_checkpoint(bench *b, uint64_t per_disk, checkpoint *cp)
{
    int rc = verify(b, per_disk);
    if (rc == 0)
        rc = measure_pair(b, cp);
    if (rc == 0)
        rc = measure_nosync(b, &cp->ns_led, &cp->ns_plain);
    if (rc == 0)
        rc = verify(b, per_disk); /* every commit evicted exactly one */
    cp->segments = per_disk * b->o.disks;
    return rc;
}

/* Bytes of the ledger's data file in use (up to its last page), and a
 * breakdown by database on stderr. */
static int ledger_bytes(bench *b, uint64_t *out)
{
    MDB_env *env = ctl_ledger_env(b->led);
    MDB_envinfo info;
    MDB_stat st;
    int rc = c2d_mdb_errno(mdb_env_info(env, &info));
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_env_stat(env, &st));
    if (rc != 0)
        return rc;
    *out = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    static const char *const names[] = {"segments", "partials", "disks",
                                        "cameras",  "protect",  "trash"};
    MDB_txn *txn;
    if ((rc = c2d_mdb_errno(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))) != 0)
        return rc;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        MDB_dbi dbi;
        MDB_stat s;
        if (mdb_dbi_open(txn, names[i], 0, &dbi) != 0 || mdb_stat(txn, dbi, &s) != 0)
            continue;
        uint64_t pages = s.ms_branch_pages + s.ms_leaf_pages + s.ms_overflow_pages;
        say("  %-9s %10zu entries, %9" PRIu64 " pages (%" PRIu64 " MiB, depth %u)", names[i],
            s.ms_entries, pages, pages * st.ms_psize >> 20, s.ms_depth);
    }
    mdb_txn_abort(txn);
    return 0;
}

static int open_plain(bench *b, uint64_t map)
{
    MDB_txn *txn;
    int rc = c2d_mdb_errno(mdb_env_create(&b->penv));
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_env_set_maxdbs(b->penv, CTL_LEDGER_MAX_DBS));
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_env_set_mapsize(b->penv, (size_t)map));
    if (rc == 0)
        rc = c2d_mkdirs(b->plain_dir, 0750);
    if (rc == 0)
        rc = c2d_mdb_errno(mdb_env_open(b->penv, b->plain_dir, 0, 0640));
    if (rc == 0 && (rc = c2d_mdb_errno(mdb_txn_begin(b->penv, NULL, 0, &txn))) == 0) {
        rc = c2d_mdb_errno(mdb_dbi_open(txn, "plain", MDB_CREATE, &b->pdbi));
        rc = rc == 0 ? c2d_mdb_errno(mdb_txn_commit(txn)) : (mdb_txn_abort(txn), rc);
    }
    return rc;
}

/* The baseline's value: a copy of a stored segment record, same size. */
static int plain_template(bench *b)
{
    MDB_env *env = ctl_ledger_env(b->led);
    MDB_txn *txn;
    MDB_dbi dbi;
    uint8_t k[C2D_DEVICE_ID_MAX + 16];
    MDB_val mk = {plain_key(b, 0, 0, k), k}, mv;
    int rc = c2d_mdb_errno(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    if ((rc = c2d_mdb_errno(mdb_dbi_open(txn, "segments", 0, &dbi))) == 0 &&
        (rc = c2d_mdb_errno(mdb_get(txn, dbi, &mk, &mv))) == 0) {
        if (mv.mv_size > sizeof(b->plain_val)) {
            rc = -EIO;
        } else {
            memcpy(b->plain_val, mv.mv_data, mv.mv_size);
            b->plain_vlen = mv.mv_size;
        }
    }
    mdb_txn_abort(txn);
    return rc;
}

static void remove_env(const char *dir)
{
    char p[4300];
    snprintf(p, sizeof(p), "%s/data.mdb", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/lock.mdb", dir);
    unlink(p);
    rmdir(dir);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: c2d-bench-ledger [--segments N] [--disks D] [--cameras-per-disk C]\n"
               "         [--commits K] [--latency-commits L] [--batch B] [--fill-txn F]\n"
               "         [--rounds R] [--dir DIR] [--seed S] [--keep]\n"
               "defaults: 10000000 segments, 10000 disks, 4 cameras per disk, 64000 commits\n"
               "in batches of 64 over 16 rounds, 2000 single commits, fill transactions of\n"
               "10000 segments, DIR $TMPDIR or /tmp. One JSON line on stdout.\n");
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o)
{
    static const struct option lo[] = {
        {"segments", required_argument, NULL, 'n'},
        {"disks", required_argument, NULL, 'd'},
        {"cameras-per-disk", required_argument, NULL, 'c'},
        {"commits", required_argument, NULL, 'k'},
        {"latency-commits", required_argument, NULL, 'l'},
        {"batch", required_argument, NULL, 'b'},
        {"fill-txn", required_argument, NULL, 'f'},
        {"dir", required_argument, NULL, 'D'},
        {"seed", required_argument, NULL, 's'},
        {"rounds", required_argument, NULL, 'r'},
        {"keep", no_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *t = getenv("TMPDIR");
    *o = (opts){.segments = 10000000,
                .disks = 10000,
                .cams_per_disk = 4,
                .batch = 64,
                .fill_txn = 10000,
                .commits = 64000,
                .lat_commits = 2000,
                .rounds = 16,
                .dir = t && *t ? t : "/tmp",
                .seed = 0x9e3779b97f4a7c15ULL};
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'n':
            bad = parse_u64(optarg, 1, UINT32_MAX * 16ULL, &o->segments);
            break;
        case 'd':
            bad = parse_u64(optarg, 1, 99999, &v); /* dev-NNNNN */
            o->disks = (unsigned)v;
            break;
        case 'c':
            bad = parse_u64(optarg, 1, 64, &v);
            o->cams_per_disk = (unsigned)v;
            break;
        case 'k':
            bad = parse_u64(optarg, 1, UINT32_MAX, &o->commits);
            break;
        case 'l':
            bad = parse_u64(optarg, 1, UINT32_MAX, &o->lat_commits);
            break;
        case 'b':
            bad = parse_u64(optarg, 1, 100000, &v);
            o->batch = (unsigned)v;
            break;
        case 'f':
            bad = parse_u64(optarg, 1, 100000, &v);
            o->fill_txn = (unsigned)v;
            break;
        case 'D':
            o->dir = optarg;
            break;
        case 's':
            bad = parse_u64(optarg, 1, UINT64_MAX, &o->seed);
            break;
        case 'r':
            bad = parse_u64(optarg, 1, ROUNDS_MAX, &v);
            o->rounds = (unsigned)v;
            break;
        case 'K':
            o->keep = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            bad = 1;
        }
        if (bad) {
            if (c != '?')
                fprintf(stderr, "c2d-bench-ledger: bad value: %s\n", optarg);
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* One "key": number member of the JSON line. */
static void jnum(int *first, const char *key, double v, int prec)
{
    printf("%s\"%s\": %.*f", *first ? "{" : ", ", key, prec, v);
    *first = 0;
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

int main(int argc, char **argv)
{
    bench b;
    memset(&b, 0, sizeof(b));
    if (parse_args(argc, argv, &b.o) != 0)
        return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    opts *o = &b.o;
    b.ncams = o->disks * o->cams_per_disk;
    uint64_t spc = o->segments / b.ncams; /* segments per camera when full */
    if (spc < 10) {
        fprintf(stderr, "c2d-bench-ledger: --segments must be at least 10 per camera "
                        "(disks x cameras-per-disk x 10)\n");
        return 2;
    }
    uint32_t spc1 = (uint32_t)(spc / 10), spc2 = (uint32_t)spc;
    uint64_t n = spc * b.ncams;
    uint64_t map = n * MAP_BYTES_PER_SEG > MAP_MIN ? n * MAP_BYTES_PER_SEG : MAP_MIN;

    struct statvfs vfs;
    if (statvfs(o->dir, &vfs) != 0) {
        fprintf(stderr, "c2d-bench-ledger: %s: %s\n", o->dir, strerror(errno));
        return 2;
    }
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize, need = n * EST_BYTES_PER_SEG;
    if (avail < need) {
        fprintf(stderr,
                "c2d-bench-ledger: %s has %" PRIu64 " MiB free; %" PRIu64
                " segments need about %" PRIu64 " MiB (ledger and baseline): use --dir "
                "elsewhere or fewer --segments\n",
                o->dir, avail >> 20, n, need >> 20);
        return 2;
    }
    snprintf(b.tmp, sizeof(b.tmp), "%s/c2d-bench-ledger-XXXXXX", o->dir);
    if (!mkdtemp(b.tmp)) {
        fprintf(stderr, "c2d-bench-ledger: mkdtemp in %s: %s\n", o->dir, strerror(errno));
        return 1;
    }
    snprintf(b.led_dir, sizeof(b.led_dir), "%s/ledger", b.tmp);
    snprintf(b.plain_dir, sizeof(b.plain_dir), "%s/plain", b.tmp);
    say("%" PRIu64 " segments over %u disks x %u cameras (%u per camera; checkpoint at %u), map "
        "%" PRIu64 " MiB, in %s",
        n, o->disks, o->cams_per_disk, spc2, spc1, map >> 20, b.tmp);

    size_t cap = o->fill_txn > o->batch ? o->fill_txn : o->batch;
    uint64_t nt = o->commits / o->batch + o->rounds + 1;
    nt = nt > o->lat_commits ? nt : o->lat_commits;
    b.led_next = calloc(b.ncams, sizeof(*b.led_next));
    b.plain_next = calloc(b.ncams, sizeof(*b.plain_next));
    b.keys = calloc(cap, sizeof(*b.keys));
    b.recs = calloc(cap, sizeof(*b.recs));
    b.rcs = calloc(cap, sizeof(*b.rcs));
    b.times = calloc(nt, sizeof(*b.times));
    b.times2 = calloc(nt, sizeof(*b.times2));
    checkpoint cp1, cp2;
    uint64_t bytes = 0;
    double t0 = now_s(), t, fill_s = 0;
    int rc = 0;
    if (!b.led_next || !b.plain_next || !b.keys || !b.recs || !b.rcs || !b.times || !b.times2)
        rc = -ENOMEM;
    if (rc == 0)
        rc = cam_seq_init(&b.led_seq, b.ncams, o->seed);
    if (rc == 0)
        rc = cam_seq_init(&b.plain_seq, b.ncams, o->seed);
    if (rc == 0)
        rc = ctl_ledger_open(b.led_dir, map, 0, &b.led);
    if (rc == 0)
        rc = open_plain(&b, map);
    /* Checkpoint 1: a tenth, every disk full. */
    if (rc == 0)
        rc = set_capacity(&b, (uint64_t)spc1 * o->cams_per_disk, 1);
    t = now_s();
    if (rc == 0)
        rc = fill(&b, 0, spc1);
    fill_s += now_s() - t;
    if (rc == 0)
        say("ledger filled to %" PRIu64 " segments in %.1f s", (uint64_t)spc1 * b.ncams,
            now_s() - t);
    if (rc == 0)
        rc = plain_template(&b);
    t = now_s();
    if (rc == 0)
        rc = fill(&b, 1, spc1);
    if (rc == 0)
        say("baseline filled in %.1f s", now_s() - t);
    if (rc == 0)
        rc = run_checkpoint(&b, (uint64_t)spc1 * o->cams_per_disk, &cp1);
    /* Checkpoint 2: all of it. */
    if (rc == 0)
        rc = set_capacity(&b, spc * o->cams_per_disk, 0);
    t = now_s();
    if (rc == 0)
        rc = fill(&b, 0, spc2 - spc1);
    fill_s += now_s() - t;
    if (rc == 0)
        say("ledger filled to %" PRIu64 " segments in %.1f s", n, now_s() - t);
    if (rc == 0)
        rc = ledger_bytes(&b, &bytes);
    t = now_s();
    if (rc == 0)
        rc = fill(&b, 1, spc2 - spc1);
    if (rc == 0)
        say("baseline filled in %.1f s", now_s() - t);
    if (rc == 0)
        rc = run_checkpoint(&b, spc * o->cams_per_disk, &cp2);

    if (rc == 0) {
        int first = 1;
        jnum(&first, "commits_per_s", cp2.led.rate, 1);
        jnum(&first, "baseline_puts_per_s", cp2.plain.rate, 1);
        jnum(&first, "ratio", cp2.ratio, 3);
        jnum(&first, "p99_commit_us", cp2.led.p99_us, 0);
        jnum(&first, "ledger_bytes_per_segment", (double)bytes / (double)n, 1);
        jnum(&first, "p50_commit_us", cp2.led.p50_us, 0);
        jnum(&first, "baseline_p99_put_us", cp2.plain.p99_us, 0);
        jnum(&first, "p99_batch_us", cp2.led.p99_batch_us, 0);
        jnum(&first, "segments_at_tenth", (double)cp1.segments, 0);
        jnum(&first, "commits_per_s_at_tenth", cp1.led.rate, 1);
        jnum(&first, "baseline_puts_per_s_at_tenth", cp1.plain.rate, 1);
        jnum(&first, "ratio_at_tenth", cp1.ratio, 3);
        jnum(&first, "p99_commit_us_at_tenth", cp1.led.p99_us, 0);
        jnum(&first, "flat_ratio", ratio(cp2.led.rate, cp1.led.rate), 3);
        jnum(&first, "write_bytes_per_commit", cp2.led.wbytes, 0);
        jnum(&first, "write_bytes_per_commit_at_tenth", cp1.led.wbytes, 0);
        jnum(&first, "baseline_write_bytes_per_put", cp2.plain.wbytes, 0);
        jnum(&first, "commits_per_s_nosync", cp2.ns_led.rate, 1);
        jnum(&first, "commits_per_s_nosync_at_tenth", cp1.ns_led.rate, 1);
        jnum(&first, "baseline_puts_per_s_nosync", cp2.ns_plain.rate, 1);
        jnum(&first, "segments", (double)n, 0);
        jnum(&first, "disks", o->disks, 0);
        jnum(&first, "cameras", b.ncams, 0);
        jnum(&first, "batch", o->batch, 0);
        jnum(&first, "commits", (double)o->commits, 0);
        jnum(&first, "rounds", o->rounds, 0);
        jnum(&first, "latency_commits", (double)o->lat_commits, 0);
        jnum(&first, "fill_s", fill_s, 1);
        jnum(&first, "total_s", now_s() - t0, 1);
        printf(", \"notes\": \"commits_per_s: transactions of %u segments, each evicting one "
               "(median of %u rounds paired with the baseline); p50/p99_commit_us: "
               "single-segment transactions; flat_ratio: commits_per_s / "
               "commits_per_s_at_tenth; *_nosync: MDB_NOSYNC, for diagnosis\"}\n",
               o->batch, o->rounds);
        fflush(stdout);
    } else {
        say("failed: %s", strerror(-rc));
    }
    ctl_ledger_free(b.led);
    if (b.penv)
        mdb_env_close(b.penv);
    if (o->keep) {
        say("kept %s", b.tmp);
    } else {
        remove_env(b.led_dir);
        remove_env(b.plain_dir);
        rmdir(b.tmp);
    }
    free(b.led_next);
    free(b.plain_next);
    free(b.keys);
    free(b.recs);
    free(b.rcs);
    free(b.times);
    free(b.times2);
    free(b.led_seq.perm);
    free(b.plain_seq.perm);
    return rc == 0 ? 0 : 1;
}
