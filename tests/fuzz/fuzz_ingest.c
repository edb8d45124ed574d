/* ctl_ingest_handle, the controller's handler for everything a device sends
 * on its seg topic, driven by sequences of messages against a real LMDB
 * ledger and a real file store in a temporary directory (under /dev/shm when
 * it exists: fsync is cheap on tmpfs, so the product's durable path runs
 * unchanged).
 *
 * Input: a sequence of messages, each
 *     selector u8 | length u16 BE | length bytes of payload
 * (a length past the end of the input takes what is left). The selector's
 * low three bits pick the device id from DEVICES, five valid ids and three
 * that would leave the store ("..", "../cam-1", ""); bit 0x80 rewrites a
 * payload that starts with the chunk magic into a well-formed frame of its
 * own bytes (length and CRC-32 recomputed, channel, start and offset kept),
 * so mutated chunks get past the CRC. Selector 0xff is not a message: it
 * restarts the ingest (free, new, recover) as a controller restart would.
 *
 * The data directory persists across inputs, so uploads span inputs like
 * they span a device's reconnections; it is recreated every RESET_EVERY
 * inputs so the ledger stays small, and removed at exit.
 *
 * Invariants (abort on violation):
 *  - the sink is called exactly once per message from a valid device and
 *    never for an invalid one; every ack encodes and decodes back, addresses
 *    the sending device, is consistent with the result, carries a reason iff
 *    rejected, and never an offset beyond max_segment_bytes;
 *  - a committed ack means the ledger holds the segment with that size and
 *    the store a file of that size, and usage still adds up (below);
 *  - every CHECK_EVERY inputs, at each reset and at exit: usage bytes and
 *    segment count per (device, channel) equal the sum over the committed
 *    segments of that key; every segment record has its stored file of its
 *    size and every stored file its record; partial files and partial
 *    records match one to one; no device has more than
 *    CTL_INGEST_PARTIALS_PER_DEVICE uploads in progress; the temp directory
 *    holds nothing but ledger.lmdb/, store/{valid device}/{ch}/{start}.ts and
 *    partial/{valid device}/{ch}-{start}.part (so nothing was written outside
 *    the data directory or under another name); the process holds no more
 *    descriptors than the ingest's open-file limit allows. */
#include "controller/ingest.h"
#include "controller/ledger.h"
#include "controller/store.h"
#include "fuzz.h"
#include "fuzz_scratch.h"
#include "proto/c2d_proto.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Small limits so "too_large" and "bad_channel" are cheap to reach; chunks
 * in an input are at most 64 KiB anyway (the u16 length). */
#define MAX_SEG (1u << 20)
#define MAX_CH 8

/* Enough for the ledger of RESET_EVERY inputs of at most a few KiB each. */
#define LEDGER_MAP_BYTES (64u << 20)

/* Full consistency checks cost a walk of the ledger and the directory tree:
 * a few hundred records at most between resets, so every 128 inputs costs
 * little. A reset every 5000 inputs bounds the ledger and the disk used. */
#define CHECK_EVERY 128
#define RESET_EVERY 5000

/* Messages handled per input: the u16 framing allows ~1300 in 4 KiB. */
#define MESSAGES_MAX 512

#define SEL_RESTART 0xff
#define SEL_FIX_CHUNK 0x80

/* Descriptors the process may hold beyond the baseline taken after set-up:
 * the ingest's partial files plus a few for libFuzzer's own writes. */
#define FD_SLACK 16

static const char *const DEVICES[8] = {
    "cam-1",
    "cam-2",
    "Rec_9.x",
    "a..b",
    "d123456789012345678901234567890123456789012345678901234567890123", /* 64 */
    "..",
    "../cam-1",
    "",
};
#define N_VALID 5

static const ctl_ingest_limits LIMITS = {MAX_SEG, MAX_CH};

static struct {
    int ready;
    char root[256];     /* mkdtemp: holds only data/ */
    char data_dir[300]; /* root/data */
    ctl_store *st;
    ctl_ledger *l;
    ctl_ingest *ing;
    unsigned long inputs;
    int fd_baseline;
    int trace; /* FUZZ_INGEST_TRACE set: print every outcome (for seeds) */
} fz;

/* ---- helpers ---------------------------------------------------------------- */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the one opendir holds */
}

static int valid_index(const char *device)
{
    for (int i = 0; i < N_VALID; i++)
        if (strcmp(device, DEVICES[i]) == 0)
            return i;
    return -1;
}

/* Strict decimal: digits only, no leading zero, at most max. */
static int is_dec(const char *s, size_t len, unsigned long long max)
{
    if (len == 0 || len > 19 || (len > 1 && s[0] == '0'))
        return 0;
    unsigned long long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= max;
}

/* ---- set-up and tear-down ------------------------------------------------------ */

static void open_all(void)
{
    char lp[400];
    snprintf(lp, sizeof(lp), "%s/ledger.lmdb", fz.data_dir);
    FUZZ_ASSERT(ctl_store_fs_new(fz.data_dir, &fz.st) == 0);
    FUZZ_ASSERT(ctl_ledger_open(lp, LEDGER_MAP_BYTES, 0, &fz.l) == 0);
    FUZZ_ASSERT(ctl_ingest_new(fz.l, fz.st, &LIMITS, &fz.ing) == 0);
    ctl_ledger_set_open_mode(fz.l, 1);
}

static void close_all(void)
{
    ctl_ingest_free(fz.ing);
    ctl_ledger_free(fz.l);
    ctl_store_free(fz.st);
    fz.ing = NULL;
    fz.l = NULL;
    fz.st = NULL;
}

static void full_check(void);

static void at_exit(void)
{
    if (!fz.ready)
        return;
    full_check();
    close_all();
    fuzz_rm_tree(fz.root);
    fz.ready = 0;
}

static void init(void)
{
    signal(SIGPIPE, SIG_IGN);
    fz.trace = getenv("FUZZ_INGEST_TRACE") != NULL;
    fuzz_scratch_dir("c2d-fuzz-ingest", fz.root, sizeof(fz.root));
    snprintf(fz.data_dir, sizeof(fz.data_dir), "%s/data", fz.root);
    open_all();
    fz.fd_baseline = count_fds();
    fz.ready = 1;
    atexit(at_exit);
}

static void reset(void)
{
    full_check();
    close_all();
    fuzz_rm_tree(fz.data_dir);
    open_all();
}

static void restart(void)
{
    ctl_ingest_free(fz.ing);
    fz.ing = NULL;
    FUZZ_ASSERT(ctl_ingest_new(fz.l, fz.st, &LIMITS, &fz.ing) == 0);
    ctl_recovery rec;
    FUZZ_ASSERT(ctl_ingest_recover(fz.ing, &rec) == 0);
    /* Without crashes, disk and ledger agree: recovery has nothing to do. */
    FUZZ_ASSERT(rec.partial_files_deleted == 0);
    FUZZ_ASSERT(rec.partial_records_dropped == 0);
    FUZZ_ASSERT(rec.segments_recovered == 0);
    FUZZ_ASSERT(rec.store_orphans == 0);
    FUZZ_ASSERT(rec.skipped_names == 0);
}

/* ---- consistency of ledger, store and usage -------------------------------------- */

typedef struct {
    char device[C2D_DEVICE_ID_MAX + 1];
    uint16_t channel;
    uint64_t bytes, segments;
    int seen_usage;
} usage_sum;

typedef struct {
    usage_sum *v;
    size_t n, cap;
} usage_tab;

static usage_sum *usage_slot(usage_tab *t, const char *device, uint16_t ch)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].channel == ch && strcmp(t->v[i].device, device) == 0)
            return &t->v[i];
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->v = realloc(t->v, t->cap * sizeof(*t->v));
        FUZZ_ASSERT(t->v != NULL);
    }
    usage_sum *u = &t->v[t->n++];
    memset(u, 0, sizeof(*u));
    snprintf(u->device, sizeof(u->device), "%s", device);
    u->channel = ch;
    return u;
}

static int sum_segment(void *ud, const ctl_seg_key *key, const ctl_segment_rec *rec)
{
    FUZZ_ASSERT(valid_index(key->device) >= 0);
    FUZZ_ASSERT(key->channel < MAX_CH);
    FUZZ_ASSERT(rec->size <= MAX_SEG);
    usage_sum *u = usage_slot(ud, key->device, key->channel);
    u->bytes += rec->size;
    u->segments++;
    /* Its file is in the store, with the recorded size and path. */
    int fd;
    uint64_t size;
    FUZZ_ASSERT(ctl_store_open(fz.st, key, &fd, &size) == 0);
    close(fd);
    FUZZ_ASSERT(size == rec->size);
    char rel[CTL_LEDGER_PATH_MAX];
    snprintf(rel, sizeof(rel), "store/%s/%u/%lld.ts", key->device, (unsigned)key->channel,
             (long long)key->start_us);
    FUZZ_ASSERT(strcmp(rel, rec->path) == 0);
    return 0;
}

static int match_usage(void *ud, const char *device, uint16_t channel, const ctl_usage_rec *rec)
{
    usage_tab *t = ud;
    size_t before = t->n;
    usage_sum *u = usage_slot(t, device, channel);
    FUZZ_ASSERT(t->n == before); /* no usage without a segment */
    FUZZ_ASSERT(!u->seen_usage);
    u->seen_usage = 1;
    if (rec->bytes != u->bytes || rec->segments != u->segments) {
        fprintf(stderr,
                "usage of %s ch %u: %llu bytes in %llu segments, segments add up to %llu in %llu\n",
                device, (unsigned)channel, (unsigned long long)rec->bytes,
                (unsigned long long)rec->segments, (unsigned long long)u->bytes,
                (unsigned long long)u->segments);
        FUZZ_ASSERT(!"usage equals the sum of committed segment sizes");
    }
    return 0;
}

/* Usage per (device, channel) == sum of its committed segments. */
static void check_usage(void)
{
    usage_tab t = {NULL, 0, 0};
    FUZZ_ASSERT(ctl_ledger_foreach_segment(fz.l, sum_segment, &t) == 0);
    FUZZ_ASSERT(ctl_ledger_foreach_usage(fz.l, match_usage, &t) == 0);
    for (size_t i = 0; i < t.n; i++)
        FUZZ_ASSERT(t.v[i].seen_usage);
    free(t.v);
}

static int stored_has_record(void *ud, const ctl_seg_key *key)
{
    (void)ud;
    ctl_segment_rec seg;
    FUZZ_ASSERT(ctl_ledger_get_segment(fz.l, key, &seg) == 0);
    return 0;
}

/* Partial records, collected first: the ledger cannot be read again from
 * inside one of its walks (one read transaction per thread). */
typedef struct {
    unsigned per_device[N_VALID];
    ctl_seg_key *keys;
    size_t n, cap;
} partial_list;

static int collect_partial(void *ud, const ctl_seg_key *key, const ctl_partial_rec *rec)
{
    partial_list *pl = ud;
    int i = valid_index(key->device);
    FUZZ_ASSERT(i >= 0 && key->channel < MAX_CH);
    pl->per_device[i]++;
    /* The file may be shorter than declared (bytes still to come), never
     * longer. */
    int fd;
    uint64_t size;
    FUZZ_ASSERT(ctl_store_partial_open(fz.st, key, 0, 0, &fd, &size) == 0);
    close(fd);
    FUZZ_ASSERT(size <= rec->size && rec->size <= MAX_SEG);
    if (pl->n == pl->cap) {
        pl->cap = pl->cap ? 2 * pl->cap : 64;
        pl->keys = realloc(pl->keys, pl->cap * sizeof(*pl->keys));
        FUZZ_ASSERT(pl->keys != NULL);
    }
    pl->keys[pl->n++] = *key;
    return 0;
}

static void check_partials(void)
{
    partial_list pl;
    memset(&pl, 0, sizeof(pl));
    FUZZ_ASSERT(ctl_ledger_foreach_partial(fz.l, NULL, collect_partial, &pl) == 0);
    for (int i = 0; i < N_VALID; i++)
        FUZZ_ASSERT(pl.per_device[i] <= CTL_INGEST_PARTIALS_PER_DEVICE);
    for (size_t i = 0; i < pl.n; i++) {
        ctl_segment_rec seg;
        const ctl_seg_key *k = &pl.keys[i];
        if (ctl_ledger_get_segment(fz.l, k, &seg) != -ENOENT) {
            fprintf(stderr, "upload in progress for stored segment %s ch %u start %lld\n",
                    k->device, (unsigned)k->channel, (long long)k->start_us);
            FUZZ_ASSERT(!"a stored segment has no upload in progress");
        }
    }
    free(pl.keys);
}

static int partial_file_has_record(void *ud, const ctl_seg_key *key)
{
    (void)ud;
    ctl_partial_rec rec;
    FUZZ_ASSERT(ctl_ledger_get_partial(fz.l, key, &rec) == 0);
    return 0;
}

/* Every path under root is one the store or the ledger makes for a valid
 * device of DEVICES. */
static int tree_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)flag;
    (void)ftw;
    const int dir = S_ISDIR(sb->st_mode), reg = S_ISREG(sb->st_mode);
    const char *rel = path + strlen(fz.root);
    const char *comp[8];
    size_t len[8];
    char dev[C2D_DEVICE_ID_MAX + 1];
    int n = 0;
    for (const char *p = rel; *p;) {
        if (*p == '/') {
            p++;
            continue;
        }
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (n == 8)
            goto bad;
        comp[n] = p;
        len[n++] = l;
        p += l;
    }
#define IS(i, s) (len[i] == strlen(s) && memcmp(comp[i], s, len[i]) == 0)
    if (n == 0)
        return 0;
    if (!IS(0, "data"))
        goto bad;
    if (n == 1)
        goto want_dir;
    if (IS(1, "ledger.lmdb")) {
        if (n == 2)
            goto want_dir;
        if (n == 3 && reg && (IS(2, "data.mdb") || IS(2, "lock.mdb")))
            return 0;
        goto bad;
    }
    const int store = IS(1, "store");
    if (!store && !IS(1, "partial"))
        goto bad;
    if (n == 2)
        goto want_dir;
    if (len[2] > C2D_DEVICE_ID_MAX)
        goto bad;
    memcpy(dev, comp[2], len[2]);
    dev[len[2]] = '\0';
    if (valid_index(dev) < 0)
        goto bad;
    if (n == 3)
        goto want_dir;
    if (store) {
        if (!is_dec(comp[3], len[3], MAX_CH - 1))
            goto bad;
        if (n == 4)
            goto want_dir;
        if (n == 5 && reg && len[4] > 3 && memcmp(comp[4] + len[4] - 3, ".ts", 3) == 0 &&
            is_dec(comp[4], len[4] - 3, INT64_MAX))
            return 0;
        goto bad;
    }
    if (n == 4 && reg && len[3] > 5 && memcmp(comp[3] + len[3] - 5, ".part", 5) == 0) {
        const char *dash = memchr(comp[3], '-', len[3]);
        if (dash && is_dec(comp[3], (size_t)(dash - comp[3]), MAX_CH - 1) &&
            is_dec(dash + 1, (size_t)(comp[3] + len[3] - 5 - (dash + 1)), INT64_MAX))
            return 0;
    }
#undef IS
    goto bad;
want_dir:
    if (dir)
        return 0;
bad:
    fprintf(stderr, "unexpected path %s\n", path);
    return -1;
}

static void full_check(void)
{
    check_usage();
    uint64_t skipped = 1;
    FUZZ_ASSERT(ctl_store_foreach(fz.st, stored_has_record, NULL, &skipped) == 0);
    FUZZ_ASSERT(skipped == 0);
    check_partials();
    skipped = 1;
    FUZZ_ASSERT(ctl_store_foreach_partial(fz.st, partial_file_has_record, NULL, &skipped) == 0);
    FUZZ_ASSERT(skipped == 0);
    FUZZ_ASSERT(nftw(fz.root, tree_entry, 16, FTW_PHYS) == 0);
    FUZZ_ASSERT(ctl_ingest_open_count(fz.ing) <= CTL_INGEST_ENTRIES_MAX);
    int fds = count_fds();
    FUZZ_ASSERT(fds >= 0 && fds <= fz.fd_baseline + CTL_INGEST_OPEN_FILES_MAX + FD_SLACK);
}

/* ---- the sink ---------------------------------------------------------------------- */

typedef struct {
    const char *device;
    int calls;
    int have_ack;
    c2d_msg ack;
} sink_state;

static void sink(void *ud, const char *device, const c2d_msg *ack, const char *detail)
{
    sink_state *s = ud;
    s->calls++;
    FUZZ_ASSERT(device != NULL && strcmp(device, s->device) == 0);
    FUZZ_ASSERT(detail != NULL && strlen(detail) < 1024);
    s->have_ack = ack != NULL;
    if (!ack)
        return;
    s->ack = *ack;
    FUZZ_ASSERT(ack->type == C2D_MSG_ACK && ack->version == C2D_PROTO_VERSION);
    FUZZ_ASSERT(ack->start_us >= 0);
    FUZZ_ASSERT(ack->offset <= MAX_SEG);
    if (ack->status == C2D_ACK_REJECTED)
        FUZZ_ASSERT(ack->reason[0] != '\0' && detail[0] != '\0');
    else
        FUZZ_ASSERT(ack->reason[0] == '\0');
    /* The daemon publishes it: it must encode, and the agent decode it. */
    char *json = c2d_msg_encode(ack);
    FUZZ_ASSERT(json != NULL);
    c2d_msg back;
    FUZZ_ASSERT(c2d_msg_decode(json, strlen(json), &back) == C2D_OK);
    FUZZ_ASSERT(back.type == C2D_MSG_ACK && back.status == ack->status &&
                back.channel == ack->channel && back.start_us == ack->start_us &&
                back.offset == ack->offset && strcmp(back.reason, ack->reason) == 0);
    free(json);
}

/* A committed segment is in the ledger and the store with the acked size. */
static void check_committed(const char *device, const c2d_msg *ack)
{
    ctl_seg_key key;
    FUZZ_ASSERT(ctl_seg_key_set(&key, device, ack->channel, ack->start_us) == 0);
    ctl_segment_rec seg;
    FUZZ_ASSERT(ctl_ledger_get_segment(fz.l, &key, &seg) == 0);
    FUZZ_ASSERT(seg.size == ack->offset);
    int fd;
    uint64_t size;
    FUZZ_ASSERT(ctl_store_open(fz.st, &key, &fd, &size) == 0);
    close(fd);
    FUZZ_ASSERT(size == seg.size);
    ctl_partial_rec pr;
    FUZZ_ASSERT(ctl_ledger_get_partial(fz.l, &key, &pr) == -ENOENT);
}

/* ---- one message --------------------------------------------------------------------- */

/* Selector bit 0x80: a chunk frame of the payload's own bytes. */
static void fix_chunk(uint8_t *p, size_t len)
{
    if (len < C2D_CHUNK_HEADER_LEN || memcmp(p, "C2DK", 4) != 0)
        return;
    uint64_t start = 0, offset = 0;
    for (int i = 0; i < 8; i++) {
        start = (start << 8) | p[8 + i];
        offset = (offset << 8) | p[16 + i];
    }
    uint16_t ch = (uint16_t)((p[6] << 8) | p[7]);
    c2d_chunk_header_encode(p, ch, (int64_t)start, offset, p + C2D_CHUNK_HEADER_LEN,
                            (uint32_t)(len - C2D_CHUNK_HEADER_LEN));
}

/* Returns 1 if a segment was committed. */
static int one_message(uint8_t sel, const uint8_t *payload, size_t len)
{
    if (sel == SEL_RESTART) {
        if (fz.trace)
            fprintf(stderr, "  restart\n");
        restart();
        return 0;
    }
    const char *device = DEVICES[sel & 7];
    /* A buffer of exactly the message's size, so ASan sees over-reads. */
    uint8_t *buf = len ? malloc(len) : NULL;
    FUZZ_ASSERT(len == 0 || buf != NULL);
    if (len)
        memcpy(buf, payload, len);
    if (sel & SEL_FIX_CHUNK)
        fix_chunk(buf, len);

    sink_state s;
    memset(&s, 0, sizeof(s));
    s.device = device;
    ctl_ingest_result r = ctl_ingest_handle(fz.ing, device, buf, len, sink, &s);
    free(buf);

    int valid = c2d_device_id_valid(device);
    FUZZ_ASSERT(valid == ((sel & 7) < N_VALID));
    if (!valid) {
        FUZZ_ASSERT(r == CTL_INGEST_BAD_DEVICE && s.calls == 0);
        return 0;
    }
    FUZZ_ASSERT(s.calls == 1);
    if (fz.trace)
        fprintf(stderr, "  %-8s ch %u start %lld: %s %llu %s\n", device, (unsigned)s.ack.channel,
                (long long)s.ack.start_us, s.have_ack ? c2d_ack_status_name(s.ack.status) : "-",
                (unsigned long long)s.ack.offset, s.ack.reason);
    switch (r) {
    case CTL_INGEST_ACCEPTED:
        FUZZ_ASSERT(s.have_ack && s.ack.status != C2D_ACK_REJECTED);
        break;
    case CTL_INGEST_IGNORED:
        FUZZ_ASSERT(!s.have_ack);
        break;
    case CTL_INGEST_REJECTED:
        FUZZ_ASSERT(s.have_ack && s.ack.status == C2D_ACK_REJECTED);
        break;
    case CTL_INGEST_BAD_DEVICE:
        FUZZ_ASSERT(!"BAD_DEVICE for a valid device id");
        break;
    case CTL_INGEST_PENDING:
        FUZZ_ASSERT(!"PENDING without a committer");
        break;
    }
    if (s.have_ack && s.ack.status == C2D_ACK_COMMITTED) {
        check_committed(device, &s.ack);
        return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz.ready)
        init();
    if (fz.inputs > 0 && fz.inputs % RESET_EVERY == 0)
        reset();
    fz.inputs++;

    int committed = 0;
    size_t pos = 0;
    for (int n = 0; n < MESSAGES_MAX && size - pos >= 3; n++) {
        uint8_t sel = data[pos];
        size_t len = (size_t)data[pos + 1] << 8 | data[pos + 2];
        pos += 3;
        if (len > size - pos)
            len = size - pos;
        committed |= one_message(sel, data + pos, len);
        pos += len;
    }
    if (fz.inputs % CHECK_EVERY == 0)
        full_check();
    else if (committed)
        check_usage();
    return 0;
}
