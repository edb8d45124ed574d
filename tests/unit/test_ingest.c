/* Unit tests for controller/ingest.c (with the real store and a real LMDB
 * ledger in a temporary directory): the upload exchange of proto/README.md,
 * resume after a restart, duplicates and conflicts, every kind of bad input
 * with its rejection reason, the per-device partial limit, the descriptor
 * LRU, start-up recovery, and that nothing is written outside data_dir. */
#include "check.h"
#include "common/c2d_fs.h"
#include "common/c2d_hash.h"
#include "controller/ingest.h"
#include "controller/ledger.h"
#include "controller/store.h"
#include "proto/c2d_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Limits used by the tests: small, so "too large" is cheap to reach. */
#define MAX_SEG (4u << 20)
#define MAX_CH 8
#define START0 INT64_C(1764480000000000)

static char root[256];     /* mkdtemp: holds only data/ */
static char data_dir[300]; /* root/data */

/* ---- fixture --------------------------------------------------------------- */

typedef struct {
    ctl_store *st;
    ctl_ledger *l;
    ctl_ingest *ing;
} fixture;

static void fx_open(fixture *f)
{
    char lp[400];
    snprintf(lp, sizeof(lp), "%s/ledger.lmdb", data_dir);
    ctl_ingest_limits lim = {MAX_SEG, MAX_CH};
    if (ctl_store_fs_new(data_dir, &f->st) != 0 || ctl_ledger_open(lp, 64u << 20, 0, &f->l) != 0 ||
        ctl_ingest_new(f->l, f->st, &lim, &f->ing) != 0) {
        fprintf(stderr, "fixture set-up failed\n");
        exit(1);
    }
    ctl_ledger_set_open_mode(f->l, 1); /* the upload exchange; quotas: test_quota */
}

static void fx_close(fixture *f)
{
    ctl_ingest_free(f->ing);
    ctl_ledger_free(f->l);
    ctl_store_free(f->st);
    memset(f, 0, sizeof(*f));
}

/* What the sink saw for the last message. */
static struct {
    int calls;
    int have_ack;
    c2d_msg ack;
    char device[80];
    char detail[256];
} last;

static void sink(void *ud, const char *device, const c2d_msg *ack, const char *detail)
{
    last.calls++;
    last.have_ack = ack != NULL;
    if (ack)
        last.ack = *ack;
    snprintf(last.device, sizeof(last.device), "%s", device);
    snprintf(last.detail, sizeof(last.detail), "%s", detail);
    /* Every ack must encode, as the daemon will publish it. */
    if (ack) {
        char *json = c2d_msg_encode(ack);
        CHECK(json != NULL);
        free(json);
    }
}

static ctl_ingest_result send(fixture *f, const char *dev, const void *p, size_t len)
{
    memset(&last, 0, sizeof(last));
    ctl_ingest_result r = ctl_ingest_handle(f->ing, dev, p, len, sink, NULL);
    if (r != CTL_INGEST_BAD_DEVICE && last.calls != 1) {
        fprintf(stderr, "sink called %d times\n", last.calls);
        failures++;
    }
    return r;
}

static ctl_ingest_result send_json(fixture *f, const char *dev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static ctl_ingest_result send_json(fixture *f, const char *dev, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return send(f, dev, buf, (size_t)n);
}

static ctl_ingest_result begin(fixture *f, const char *dev, unsigned ch, int64_t start,
                               uint64_t size, const char *sha)
{
    return send_json(f, dev,
                     "{\"v\":1,\"t\":\"begin\",\"ch\":%u,\"start\":%" PRId64
                     ",\"dur\":10000000,\"size\":%" PRIu64 ",\"sha256\":\"%s\"}",
                     ch, start, size, sha);
}

static ctl_ingest_result end(fixture *f, const char *dev, unsigned ch, int64_t start)
{
    return send_json(f, dev, "{\"v\":1,\"t\":\"end\",\"ch\":%u,\"start\":%" PRId64 "}", ch, start);
}

static uint8_t *frame_buf;

static ctl_ingest_result chunk(fixture *f, const char *dev, uint16_t ch, int64_t start,
                               uint64_t off, const uint8_t *data, uint32_t len)
{
    c2d_chunk_header_encode(frame_buf, ch, start, off, data, len);
    memcpy(frame_buf + C2D_CHUNK_HEADER_LEN, data, len);
    return send(f, dev, frame_buf, C2D_CHUNK_HEADER_LEN + len);
}

static int is_ack(c2d_ack_status st, uint64_t offset, const char *reason)
{
    int ok = last.have_ack && last.ack.status == st && last.ack.offset == offset &&
             strcmp(last.ack.reason, reason ? reason : "") == 0;
    if (!ok)
        fprintf(stderr, "  got: %s %s offset %" PRIu64 " reason \"%s\" (%s)\n",
                last.have_ack ? "ack" : "no ack", c2d_ack_status_name(last.ack.status),
                last.ack.offset, last.ack.reason, last.detail);
    return ok;
}

#define CHECK_ACK(st, off, reason) CHECK(is_ack((st), (off), (reason)))
#define CHECK_REJ(reason, off)                                                                     \
    do {                                                                                           \
        CHECK(is_ack(C2D_ACK_REJECTED, (off), (reason)));                                          \
        CHECK(last.detail[0] != '\0');                                                             \
    } while (0)

/* A segment's bytes: deterministic, distinct per seed. */
static uint8_t *make_data(size_t len, unsigned seed, char sha[65])
{
    uint8_t *p = malloc(len ? len : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    c2d_sha256 h;
    c2d_sha256_init(&h);
    c2d_sha256_update(&h, p, len);
    c2d_sha256_final_hex(&h, sha);
    return p;
}

/* Sends data in chunks of step from off, checking each offset ack. */
static void send_all(fixture *f, const char *dev, uint16_t ch, int64_t start, const uint8_t *data,
                     size_t len, size_t off, size_t step)
{
    while (off < len) {
        uint32_t n = (uint32_t)(len - off < step ? len - off : step);
        CHECK(chunk(f, dev, ch, start, off, data + off, n) == CTL_INGEST_ACCEPTED);
        off += n;
        CHECK_ACK(C2D_ACK_OFFSET, off, NULL);
    }
}

static void key(ctl_seg_key *k, const char *dev, uint16_t ch, int64_t start)
{
    if (ctl_seg_key_set(k, dev, ch, start) != 0)
        abort();
}

static int file_equals(const char *path, const uint8_t *data, size_t len)
{
    char *buf;
    size_t n;
    if (c2d_read_file(path, len + 1, &buf, &n) != 0)
        return 0;
    int ok = n == len && memcmp(buf, data, len) == 0;
    free(buf);
    return ok;
}

static int exists(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int exists(const char *fmt, ...)
{
    char p[1024], rel[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof(rel), fmt, ap);
    va_end(ap);
    snprintf(p, sizeof(p), "%s/%s", data_dir, rel);
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_happy_path(void)
{
    fixture f;
    fx_open(&f);
    char sha[65];
    size_t len = 600 * 1024 + 17;
    uint8_t *d = make_data(len, 1, sha);
    CHECK(begin(&f, "rec-1", 2, START0, len, sha) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_OFFSET, 0, NULL);
    CHECK(last.ack.channel == 2 && last.ack.start_us == START0);
    CHECK(strcmp(last.device, "rec-1") == 0);
    CHECK(exists("partial/rec-1/2-%" PRId64 ".part", START0));
    send_all(&f, "rec-1", 2, START0, d, len, 0, 256 * 1024);
    CHECK(end(&f, "rec-1", 2, START0) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_COMMITTED, len, NULL);
    CHECK(ctl_ingest_open_count(f.ing) == 0);

    char p[512];
    snprintf(p, sizeof(p), "%s/store/rec-1/2/%" PRId64 ".ts", data_dir, START0);
    CHECK(file_equals(p, d, len));
    CHECK(!exists("partial/rec-1/2-%" PRId64 ".part", START0));
    ctl_seg_key k;
    key(&k, "rec-1", 2, START0);
    ctl_segment_rec seg;
    CHECK(ctl_ledger_get_segment(f.l, &k, &seg) == 0);
    CHECK(seg.size == len && strcmp(seg.sha256, sha) == 0 && seg.duration_us == 10000000);
    char rel[200];
    snprintf(rel, sizeof(rel), "store/rec-1/2/%" PRId64 ".ts", START0);
    CHECK(strcmp(seg.path, rel) == 0);
    ctl_partial_rec pr;
    CHECK(ctl_ledger_get_partial(f.l, &k, &pr) == -ENOENT);
    ctl_usage_rec u;
    CHECK(ctl_ledger_get_usage(f.l, "rec-1", 2, &u) == 0);
    CHECK(u.bytes == len && u.segments == 1);

    /* A zero-byte chunk at the end is harmless; an empty segment works. */
    char esha[65];
    uint8_t *e = make_data(0, 9, esha);
    CHECK(begin(&f, "rec-1", 2, START0 + 1, 0, esha) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_OFFSET, 0, NULL);
    CHECK(chunk(&f, "rec-1", 2, START0 + 1, 0, e, 0) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_OFFSET, 0, NULL);
    CHECK(end(&f, "rec-1", 2, START0 + 1) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_COMMITTED, 0, NULL);
    CHECK(ctl_ledger_get_usage(f.l, "rec-1", 2, &u) == 0);
    CHECK(u.bytes == len && u.segments == 2);
    free(e);
    free(d);
    fx_close(&f);
}

static void test_duplicate_and_conflict(void)
{
    fixture f;
    fx_open(&f);
    char sha[65], other[65];
    size_t len = 100000;
    uint8_t *d = make_data(len, 2, sha);
    uint8_t *o = make_data(len, 3, other);
    CHECK(begin(&f, "rec-2", 0, START0, len, sha) == CTL_INGEST_ACCEPTED);
    send_all(&f, "rec-2", 0, START0, d, len, 0, 65536);
    CHECK(end(&f, "rec-2", 0, START0) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_COMMITTED, len, NULL);

    /* The same segment again: duplicate, stored and counted once. */
    CHECK(begin(&f, "rec-2", 0, START0, len, sha) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_DUPLICATE, len, NULL);
    CHECK(end(&f, "rec-2", 0, START0) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_DUPLICATE, len, NULL);
    /* A redelivered chunk of the committed segment is ignored. */
    CHECK(chunk(&f, "rec-2", 0, START0, 0, d, 65536) == CTL_INGEST_IGNORED);
    CHECK(!last.have_ack);
    ctl_usage_rec u;
    CHECK(ctl_ledger_get_usage(f.l, "rec-2", 0, &u) == 0);
    CHECK(u.bytes == len && u.segments == 1);
    CHECK(!exists("partial/rec-2/0-%" PRId64 ".part", START0));

    /* Different bytes under the same key: conflict, the stored one stays. */
    CHECK(begin(&f, "rec-2", 0, START0, len, other) == CTL_INGEST_REJECTED);
    CHECK_REJ("conflict", 0);
    CHECK(begin(&f, "rec-2", 0, START0, len + 1, sha) == CTL_INGEST_REJECTED);
    CHECK_REJ("conflict", 0);
    char p[512];
    snprintf(p, sizeof(p), "%s/store/rec-2/0/%" PRId64 ".ts", data_dir, START0);
    CHECK(file_equals(p, d, len));

    /* Another device may use the same channel and start. */
    CHECK(begin(&f, "rec-3", 0, START0, len, other) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_OFFSET, 0, NULL);
    send_all(&f, "rec-3", 0, START0, o, len, 0, 40000);
    CHECK(end(&f, "rec-3", 0, START0) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_COMMITTED, len, NULL);
    CHECK(file_equals(p, d, len));
    free(d);
    free(o);
    fx_close(&f);
}

static void test_resume_after_restart(void)
{
    fixture f;
    fx_open(&f);
    char sha[65];
    size_t len = 700000;
    uint8_t *d = make_data(len, 4, sha);
    CHECK(begin(&f, "rec-4", 1, START0, len, sha) == CTL_INGEST_ACCEPTED);
    send_all(&f, "rec-4", 1, START0, d, len, 0, 100000);
    /* Stop halfway through: 300000 bytes held. */
    fx_close(&f);
    fx_open(&f);
    ctl_recovery rec;
    CHECK(ctl_ingest_recover(f.ing, &rec) == 0);
    CHECK(rec.partials >= 1 && rec.partial_files_deleted == 0);
    CHECK(begin(&f, "rec-4", 1, START0, len, sha) == CTL_INGEST_ACCEPTED);
    /* send_all above sent everything; check the resume on a second one */
    CHECK_ACK(C2D_ACK_OFFSET, len, NULL);
    CHECK(end(&f, "rec-4", 1, START0) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_COMMITTED, len, NULL);

    /* Interrupted in the middle, resumed by begin. */
    CHECK(begin(&f, "rec-4", 1, START0 + 10, len, sha) == CTL_INGEST_ACCEPTED);
    send_all(&f, "rec-4", 1, START0 + 10, d, 300000, 0, 100000);
    fx_close(&f);
    fx_open(&f);
    CHECK(begin(&f, "rec-4", 1, START0 + 10, len, sha) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_OFFSET, 300000, NULL);
    send_all(&f, "rec-4", 1, START0 + 10, d, len, 300000, 100000);
    CHECK(end(&f, "rec-4", 1, START0 + 10) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_COMMITTED, len, NULL);

    /* Interrupted, resumed directly by the next chunk (QoS 1 redelivery to
     * a restarted controller) without a begin. */
    CHECK(begin(&f, "rec-4", 1, START0 + 20, len, sha) == CTL_INGEST_ACCEPTED);
    send_all(&f, "rec-4", 1, START0 + 20, d, 200000, 0, 100000);
    fx_close(&f);
    fx_open(&f);
    send_all(&f, "rec-4", 1, START0 + 20, d, len, 200000, 250000);
    CHECK(end(&f, "rec-4", 1, START0 + 20) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_COMMITTED, len, NULL);

    /* A begin that differs from the upload in progress restarts it. */
    char sha2[65];
    uint8_t *d2 = make_data(len, 5, sha2);
    CHECK(begin(&f, "rec-4", 1, START0 + 30, len, sha) == CTL_INGEST_ACCEPTED);
    send_all(&f, "rec-4", 1, START0 + 30, d, 100000, 0, 100000);
    CHECK(begin(&f, "rec-4", 1, START0 + 30, len, sha2) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_OFFSET, 0, NULL);
    send_all(&f, "rec-4", 1, START0 + 30, d2, len, 0, 300000);
    CHECK(end(&f, "rec-4", 1, START0 + 30) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_COMMITTED, len, NULL);

    ctl_usage_rec u;
    CHECK(ctl_ledger_get_usage(f.l, "rec-4", 1, &u) == 0);
    CHECK(u.bytes == 4 * len && u.segments == 4);
    free(d);
    free(d2);
    fx_close(&f);
}

static void test_offsets(void)
{
    fixture f;
    fx_open(&f);
    char sha[65];
    size_t len = 300000;
    uint8_t *d = make_data(len, 6, sha);
    CHECK(begin(&f, "rec-5", 3, START0, len, sha) == CTL_INGEST_ACCEPTED);
    send_all(&f, "rec-5", 3, START0, d, 100000, 0, 50000);
    /* QoS 1 redelivery of bytes held: ignored, no ack. */
    CHECK(chunk(&f, "rec-5", 3, START0, 50000, d + 50000, 50000) == CTL_INGEST_IGNORED);
    CHECK(!last.have_ack && last.calls == 1);
    CHECK(chunk(&f, "rec-5", 3, START0, 0, d, 10) == CTL_INGEST_IGNORED);
    /* Held range but different bytes: overlap. */
    uint8_t junk[100];
    memset(junk, 0x5a, sizeof(junk));
    CHECK(chunk(&f, "rec-5", 3, START0, 1000, junk, sizeof(junk)) == CTL_INGEST_REJECTED);
    CHECK_REJ("overlap", 100000);
    /* Straddling the end of what is held: overlap. */
    CHECK(chunk(&f, "rec-5", 3, START0, 90000, d + 90000, 20000) == CTL_INGEST_REJECTED);
    CHECK_REJ("overlap", 100000);
    /* Beyond the end: gap. */
    CHECK(chunk(&f, "rec-5", 3, START0, 100001, d + 100001, 10) == CTL_INGEST_REJECTED);
    CHECK_REJ("gap", 100000);
    /* Past the declared size: oversize. */
    CHECK(chunk(&f, "rec-5", 3, START0, 100000, d, (uint32_t)(len - 100000 + 1)) ==
          CTL_INGEST_REJECTED);
    CHECK_REJ("oversize", 100000);
    /* end before all bytes: size_mismatch, at the held offset. */
    CHECK(end(&f, "rec-5", 3, START0) == CTL_INGEST_REJECTED);
    CHECK_REJ("size_mismatch", 100000);
    /* After all that, the upload continues normally. */
    send_all(&f, "rec-5", 3, START0, d, len, 100000, 64000);
    CHECK(chunk(&f, "rec-5", 3, START0, len, d, 1) == CTL_INGEST_REJECTED);
    CHECK_REJ("oversize", len);
    CHECK(end(&f, "rec-5", 3, START0) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_COMMITTED, len, NULL);
    char p[512];
    snprintf(p, sizeof(p), "%s/store/rec-5/3/%" PRId64 ".ts", data_dir, START0);
    CHECK(file_equals(p, d, len));
    free(d);
    fx_close(&f);
}

static void test_hash_mismatch(void)
{
    fixture f;
    fx_open(&f);
    char sha[65], wrong[65];
    size_t len = 150000;
    uint8_t *d = make_data(len, 7, sha);
    uint8_t *w = make_data(len, 8, wrong);
    CHECK(begin(&f, "rec-6", 0, START0, len, wrong) == CTL_INGEST_ACCEPTED);
    send_all(&f, "rec-6", 0, START0, d, len, 0, 100000);
    CHECK(end(&f, "rec-6", 0, START0) == CTL_INGEST_REJECTED);
    CHECK_REJ("hash_mismatch", 0);
    CHECK(strstr(last.detail, "discarded") != NULL);
    CHECK(!exists("partial/rec-6/0-%" PRId64 ".part", START0));
    CHECK(!exists("store/rec-6/0/%" PRId64 ".ts", START0));
    ctl_seg_key k;
    key(&k, "rec-6", 0, START0);
    ctl_partial_rec pr;
    CHECK(ctl_ledger_get_partial(f.l, &k, &pr) == -ENOENT);
    ctl_usage_rec u;
    CHECK(ctl_ledger_get_usage(f.l, "rec-6", 0, &u) == -ENOENT);
    /* The agent starts again from 0 and succeeds. */
    CHECK(chunk(&f, "rec-6", 0, START0, 0, d, 10) == CTL_INGEST_REJECTED);
    CHECK_REJ("unknown_segment", 0);
    CHECK(begin(&f, "rec-6", 0, START0, len, sha) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_OFFSET, 0, NULL);
    send_all(&f, "rec-6", 0, START0, d, len, 0, 100000);
    CHECK(end(&f, "rec-6", 0, START0) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_COMMITTED, len, NULL);
    free(d);
    free(w);
    fx_close(&f);
}

static void test_bad_input(void)
{
    fixture f;
    fx_open(&f);
    char sha[65];
    uint8_t *d = make_data(5000, 10, sha);
    const char *dev = "rec-bad";

    /* Control messages. */
    CHECK(send(&f, dev, "", 0) == CTL_INGEST_REJECTED);
    CHECK_REJ("bad_json", 0);
    CHECK(send(&f, dev, NULL, 0) == CTL_INGEST_REJECTED);
    CHECK_REJ("bad_json", 0);
    CHECK(send_json(&f, dev, "{\"v\":1,\"t\":\"begin\"") == CTL_INGEST_REJECTED);
    CHECK_REJ("bad_json", 0);
    CHECK(send_json(&f, dev, "[1,2,3]") == CTL_INGEST_REJECTED);
    CHECK_REJ("bad_json", 0);
    CHECK(send_json(&f, dev, "{\"v\":2,\"t\":\"begin\",\"ch\":3,\"start\":77}") ==
          CTL_INGEST_REJECTED);
    CHECK_REJ("unsupported_version", 0);
    CHECK(last.ack.channel == 3 && last.ack.start_us == 77); /* addressed best effort */
    CHECK(send_json(&f, dev, "{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":5}") ==
          CTL_INGEST_REJECTED);
    CHECK_REJ("bad_field", 0);
    CHECK(send_json(&f, dev,
                    "{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":5,\"dur\":1,\"size\":1,"
                    "\"sha256\":\"%.63s\"}",
                    sha) == CTL_INGEST_REJECTED);
    CHECK_REJ("bad_field", 0);
    CHECK(send_json(&f, dev,
                    "{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":-5,\"dur\":1,"
                    "\"size\":1,\"sha256\":\"%s\"}",
                    sha) == CTL_INGEST_REJECTED);
    CHECK_REJ("out_of_range", 0);
    CHECK(send_json(&f, dev,
                    "{\"v\":1,\"t\":\"ack\",\"ch\":1,\"start\":5,\"status\":\"offset\","
                    "\"offset\":0}") == CTL_INGEST_REJECTED);
    CHECK_REJ("unknown_type", 0);
    CHECK(send_json(&f, dev, "{\"v\":1,\"t\":\"delete\",\"ch\":1,\"start\":5}") ==
          CTL_INGEST_REJECTED);
    CHECK_REJ("unknown_type", 0);
    char big[C2D_MSG_MAX + 100];
    memset(big, ' ', sizeof(big));
    memcpy(big, "{\"v\":1", 6);
    big[sizeof(big) - 1] = '}';
    CHECK(send(&f, dev, big, sizeof(big)) == CTL_INGEST_REJECTED);
    CHECK_REJ("bad_length", 0);

    /* Limits. */
    CHECK(begin(&f, dev, MAX_CH, START0, 10, sha) == CTL_INGEST_REJECTED);
    CHECK_REJ("bad_channel", 0);
    CHECK(begin(&f, dev, 65535, START0, 10, sha) == CTL_INGEST_REJECTED);
    CHECK_REJ("bad_channel", 0);
    CHECK(begin(&f, dev, 0, START0, MAX_SEG + 1, sha) == CTL_INGEST_REJECTED);
    CHECK_REJ("too_large", 0);
    /* 2^53: refused before anything is allocated or created. */
    CHECK(begin(&f, dev, 0, START0, UINT64_C(9007199254740992), sha) == CTL_INGEST_REJECTED);
    CHECK_REJ("too_large", 0);
    CHECK(!exists("partial/%s", dev));
    CHECK(end(&f, dev, 0, START0) == CTL_INGEST_REJECTED);
    CHECK_REJ("unknown_segment", 0);
    CHECK(end(&f, dev, MAX_CH + 3, START0) == CTL_INGEST_REJECTED);
    CHECK_REJ("bad_channel", 0);

    /* Chunk frames. */
    CHECK(chunk(&f, dev, 0, START0, 0, d, 100) == CTL_INGEST_REJECTED);
    CHECK_REJ("unknown_segment", 0);
    CHECK(chunk(&f, dev, MAX_CH, START0, 0, d, 100) == CTL_INGEST_REJECTED);
    CHECK_REJ("bad_channel", 0);
    CHECK(begin(&f, dev, 0, START0, 5000, sha) == CTL_INGEST_ACCEPTED);
    CHECK(chunk(&f, dev, 0, START0, 0, d, 1000) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_OFFSET, 1000, NULL);
    uint8_t fr[C2D_CHUNK_HEADER_LEN + 2000];
    c2d_chunk_header_encode(fr, 0, START0, 1000, d + 1000, 1000);
    memcpy(fr + C2D_CHUNK_HEADER_LEN, d + 1000, 1000);
    CHECK(send(&f, dev, fr, 10) == CTL_INGEST_REJECTED); /* header cut */
    CHECK_REJ("truncated", 0);
    CHECK(send(&f, dev, fr, C2D_CHUNK_HEADER_LEN + 999) == CTL_INGEST_REJECTED);
    CHECK_REJ("truncated", 1000); /* addressed: the upload's held offset */
    CHECK(send(&f, dev, fr, C2D_CHUNK_HEADER_LEN + 1001) == CTL_INGEST_REJECTED);
    CHECK_REJ("bad_length", 1000);
    fr[C2D_CHUNK_HEADER_LEN + 5] ^= 1;
    CHECK(send(&f, dev, fr, C2D_CHUNK_HEADER_LEN + 1000) == CTL_INGEST_REJECTED);
    CHECK_REJ("bad_crc", 1000);
    fr[C2D_CHUNK_HEADER_LEN + 5] ^= 1;
    fr[4] = 2; /* version */
    CHECK(send(&f, dev, fr, C2D_CHUNK_HEADER_LEN + 1000) == CTL_INGEST_REJECTED);
    CHECK_REJ("unsupported_version", 1000);
    fr[4] = 1;
    /* Declared payload over 1 MiB: refused from the header. */
    uint8_t hdr[C2D_CHUNK_HEADER_LEN];
    memcpy(hdr, fr, sizeof(hdr));
    hdr[24] = 0x00, hdr[25] = 0x10, hdr[26] = 0x00, hdr[27] = 0x01;
    CHECK(send(&f, dev, hdr, sizeof(hdr)) == CTL_INGEST_REJECTED);
    CHECK_REJ("bad_length", 1000);
    /* Negative start in the header. */
    memcpy(hdr, fr, sizeof(hdr));
    hdr[8] = 0x80;
    CHECK(send(&f, dev, hdr, sizeof(hdr)) == CTL_INGEST_REJECTED);
    CHECK(last.have_ack && last.ack.status == C2D_ACK_REJECTED && last.ack.start_us >= 0);
    /* The upload is intact after all of it. */
    CHECK(send(&f, dev, fr, C2D_CHUNK_HEADER_LEN + 1000) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_OFFSET, 2000, NULL);
    send_all(&f, dev, 0, START0, d, 5000, 2000, 1500);
    CHECK(end(&f, dev, 0, START0) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_COMMITTED, 5000, NULL);

    /* Device ids that would leave the store: refused before anything. */
    const char *bad_ids[] = {
        "",     ".",   "..",
        "../x", "a/b", "-rf",
        ".hid", "a b", "x\n",
        "a\\b", "%u",  "0123456789012345678901234567890123456789012345678901234567890123456789"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        CHECK(begin(&f, bad_ids[i], 0, START0, 5000, sha) == CTL_INGEST_BAD_DEVICE);
        CHECK(last.calls == 0);
    }
    CHECK(ctl_ingest_handle(f.ing, NULL, (const uint8_t *)"{}", 2, sink, NULL) ==
          CTL_INGEST_BAD_DEVICE);
    free(d);
    fx_close(&f);
}

static void test_partial_limit(void)
{
    fixture f;
    fx_open(&f);
    char sha[65];
    uint8_t *d = make_data(1000, 11, sha);
    const char *dev = "rec-many";
    for (int i = 0; i < CTL_INGEST_PARTIALS_PER_DEVICE; i++) {
        CHECK(begin(&f, dev, 0, START0 + i, 1000, sha) == CTL_INGEST_ACCEPTED);
        CHECK_ACK(C2D_ACK_OFFSET, 0, NULL);
    }
    CHECK(begin(&f, dev, 0, START0 + 1000, 1000, sha) == CTL_INGEST_REJECTED);
    CHECK_REJ(CTL_REASON_PARTIAL_LIMIT, 0);
    CHECK(strstr(last.detail, "limit") != NULL);
    /* Resuming one in progress is still fine; other devices are unaffected. */
    CHECK(begin(&f, dev, 0, START0 + 3, 1000, sha) == CTL_INGEST_ACCEPTED);
    CHECK(begin(&f, "rec-other", 0, START0, 1000, sha) == CTL_INGEST_ACCEPTED);
    /* Finishing one makes room. */
    send_all(&f, dev, 0, START0 + 3, d, 1000, 0, 1000);
    CHECK(end(&f, dev, 0, START0 + 3) == CTL_INGEST_ACCEPTED);
    CHECK(begin(&f, dev, 0, START0 + 1000, 1000, sha) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_OFFSET, 0, NULL);
    /* At the limit again, a stale upload (began a day ago) gives way. */
    CHECK(begin(&f, dev, 0, START0 + 1001, 1000, sha) == CTL_INGEST_REJECTED);
    ctl_seg_key k;
    key(&k, dev, 0, START0 + 7);
    ctl_partial_rec pr;
    CHECK(ctl_ledger_get_partial(f.l, &k, &pr) == 0);
    pr.created_us -= CTL_INGEST_PARTIAL_STALE_US + 1000000;
    CHECK(ctl_ledger_put_partial(f.l, &k, &pr) == 0);
    CHECK(begin(&f, dev, 0, START0 + 1001, 1000, sha) == CTL_INGEST_ACCEPTED);
    CHECK(ctl_ledger_get_partial(f.l, &k, &pr) == -ENOENT);
    CHECK(!exists("partial/%s/0-%" PRId64 ".part", dev, START0 + 7));
    free(d);
    fx_close(&f);
}

/* More uploads at once than descriptors kept open: all must finish right. */
static void test_many_open(void)
{
    fixture f;
    fx_open(&f);
    enum { DEVS = 30, PER = 6, LEN = 3000 };
    char sha[65];
    uint8_t *d = make_data(LEN, 12, sha);
    char dev[32];
    for (int i = 0; i < DEVS; i++)
        for (int j = 0; j < PER; j++) {
            snprintf(dev, sizeof(dev), "cam-%02d", i);
            CHECK(begin(&f, dev, (uint16_t)j, START0, LEN, sha) == CTL_INGEST_ACCEPTED);
        }
    for (int off = 0; off < LEN; off += 1000)
        for (int i = 0; i < DEVS; i++)
            for (int j = 0; j < PER; j++) {
                snprintf(dev, sizeof(dev), "cam-%02d", i);
                CHECK(chunk(&f, dev, (uint16_t)j, START0, (uint64_t)off, d + off, 1000) ==
                      CTL_INGEST_ACCEPTED);
                CHECK_ACK(C2D_ACK_OFFSET, (uint64_t)off + 1000, NULL);
            }
    for (int i = 0; i < DEVS; i++)
        for (int j = 0; j < PER; j++) {
            snprintf(dev, sizeof(dev), "cam-%02d", i);
            CHECK(end(&f, dev, (uint16_t)j, START0) == CTL_INGEST_ACCEPTED);
            CHECK_ACK(C2D_ACK_COMMITTED, LEN, NULL);
        }
    CHECK(ctl_ingest_open_count(f.ing) == 0);
    free(d);
    fx_close(&f);
}

static void test_recovery(void)
{
    fixture f;
    fx_open(&f);
    char sha[65];
    size_t len = 50000;
    uint8_t *d = make_data(len, 13, sha);
    /* A partial file without a record (crash before the begin record). */
    ctl_seg_key stray;
    key(&stray, "rec-r", 4, START0 + 1);
    int fd;
    CHECK(ctl_store_partial_open(f.st, &stray, 1, 1, &fd, NULL) == 0);
    close(fd);
    /* A stored file without a ledger record (left for fsck). */
    char p[600];
    snprintf(p, sizeof(p), "%s/store/rec-r/4", data_dir);
    CHECK(c2d_mkdirs(p, 0750) == 0);
    snprintf(p, sizeof(p), "%s/store/rec-r/4/%" PRId64 ".ts", data_dir, START0 + 2);
    CHECK(c2d_write_file_atomic(p, "x", 1, 0640) == 0);
    /* A crash after the rename into the store, before the ledger commit. */
    CHECK(begin(&f, "rec-r", 4, START0 + 3, len, sha) == CTL_INGEST_ACCEPTED);
    send_all(&f, "rec-r", 4, START0 + 3, d, len, 0, 20000);
    fx_close(&f);
    char from[600], to[600];
    snprintf(from, sizeof(from), "%s/partial/rec-r/4-%" PRId64 ".part", data_dir, START0 + 3);
    snprintf(to, sizeof(to), "%s/store/rec-r/4/%" PRId64 ".ts", data_dir, START0 + 3);
    CHECK(rename(from, to) == 0);
    /* A begin record whose file never got created. */
    fx_open(&f);
    ctl_seg_key lost;
    key(&lost, "rec-r", 4, START0 + 4);
    ctl_partial_rec pr = {1, 10, "", 1};
    memcpy(pr.sha256, sha, 65);
    CHECK(ctl_ledger_put_partial(f.l, &lost, &pr) == 0);

    ctl_recovery rec;
    CHECK(ctl_ingest_recover(f.ing, &rec) == 0);
    CHECK(rec.partial_files_deleted == 1);
    CHECK(rec.segments_recovered == 1);
    CHECK(rec.partial_records_dropped == 1);
    CHECK(rec.store_orphans == 1);
    CHECK(!exists("partial/rec-r/4-%" PRId64 ".part", START0 + 1));
    CHECK(exists("store/rec-r/4/%" PRId64 ".ts", START0 + 2)); /* left alone */
    ctl_partial_rec out;
    CHECK(ctl_ledger_get_partial(f.l, &lost, &out) == -ENOENT);
    ctl_usage_rec u;
    CHECK(ctl_ledger_get_usage(f.l, "rec-r", 4, &u) == 0);
    CHECK(u.bytes == len && u.segments == 1);
    /* The agent's begin now finds it durable. */
    CHECK(begin(&f, "rec-r", 4, START0 + 3, len, sha) == CTL_INGEST_ACCEPTED);
    CHECK_ACK(C2D_ACK_DUPLICATE, len, NULL);
    /* Recovery again changes nothing. */
    CHECK(ctl_ingest_recover(f.ing, &rec) == 0);
    CHECK(rec.partial_files_deleted == 0 && rec.segments_recovered == 0 &&
          rec.partial_records_dropped == 0 && rec.store_orphans == 1);
    free(d);
    fx_close(&f);
}

/* ---- nothing outside data_dir ----------------------------------------------- */

static int outside;

static int check_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    const char *rel = path + strlen(root);
    if (strcmp(rel, "") == 0 || strcmp(rel, "/data") == 0)
        return 0;
    static const char *const allowed[] = {"/data/store", "/data/partial", "/data/ledger.lmdb"};
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        size_t n = strlen(allowed[i]);
        if (strncmp(rel, allowed[i], n) == 0 && (rel[n] == '\0' || rel[n] == '/'))
            return 0;
    }
    fprintf(stderr, "unexpected file %s\n", path);
    outside++;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const char *base = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/test_ingest.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(data_dir, sizeof(data_dir), "%s/data", root);
    frame_buf = malloc(C2D_CHUNK_HEADER_LEN + C2D_CHUNK_MAX);

    test_happy_path();
    test_duplicate_and_conflict();
    test_resume_after_restart();
    test_offsets();
    test_hash_mismatch();
    test_bad_input();
    test_partial_limit();
    test_many_open();
    test_recovery();

    nftw(root, check_entry, 16, FTW_PHYS);
    CHECK(outside == 0);
    free(frame_buf);
    if (!getenv("KEEP_TMP"))
        nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (failures) {
        fprintf(stderr, "test_ingest: %d failure(s) (data in %s)\n", failures, root);
        return 1;
    }
    printf("test_ingest: ok\n");
    return 0;
}
