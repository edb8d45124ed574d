/* Unit tests for agent/uploader.c against a real spool and a scripted fake
 * controller behind the uploader's transport seam: the exchange (begin,
 * chunks, end, committed), the window, fairness, resume offsets, the
 * reactions to rejections (quotas: quota_full, no_disk, backup_off, on a
 * test clock that jumps), the backup switch, ack timeouts and reconnects. */
#include "check.h"
#include "agent/spool.h"
#include "agent/uploader.h"
#include "common/c2d_fs.h"
#include "common/c2d_hash.h"
#include "common/c2d_time.h"
#include "proto/c2d_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- fake transport: everything published lands in a queue ------------- */

typedef struct {
    int is_chunk;
    c2d_msg m;   /* control message */
    c2d_chunk c; /* chunk header (c.data points into payload) */
    uint8_t *payload;
    size_t len;
} sent_msg;

#define QMAX 4096
static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcv = PTHREAD_COND_INITIALIZER;
static sent_msg *queue[QMAX];
static size_t qhead, qlen;
static int publish_fails;
static uint64_t chunks_published;

static int fake_publish(void *ctx, const void *buf, size_t len)
{
    (void)ctx;
    pthread_mutex_lock(&qmu);
    if (publish_fails || qlen == QMAX) {
        pthread_mutex_unlock(&qmu);
        return -1;
    }
    sent_msg *s = calloc(1, sizeof(*s));
    s->payload = malloc(len ? len : 1);
    memcpy(s->payload, buf, len);
    s->len = len;
    if (c2d_is_chunk(buf, len)) {
        s->is_chunk = 1;
        if (c2d_chunk_decode(s->payload, len, &s->c) != C2D_OK)
            s->is_chunk = -1;
        chunks_published++;
    } else if (c2d_msg_decode(buf, len, &s->m) != C2D_OK) {
        s->is_chunk = -1;
    }
    queue[(qhead + qlen) % QMAX] = s;
    qlen++;
    pthread_cond_signal(&qcv);
    pthread_mutex_unlock(&qmu);
    return 0;
}

static void free_msg(sent_msg *s)
{
    if (s) {
        free(s->payload);
        free(s);
    }
}

/* Next published message, or NULL after timeout_ms. */
static sent_msg *next_msg(int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&qmu);
    while (qlen == 0)
        if (pthread_cond_timedwait(&qcv, &qmu, &ts) == ETIMEDOUT)
            break;
    sent_msg *s = NULL;
    if (qlen > 0) {
        s = queue[qhead];
        qhead = (qhead + 1) % QMAX;
        qlen--;
    }
    pthread_mutex_unlock(&qmu);
    return s;
}

static void drain(void)
{
    sent_msg *s;
    while ((s = next_msg(0)))
        free_msg(s);
}

/* ---- events ---------------------------------------------------------------- */

static pthread_mutex_t emu = PTHREAD_MUTEX_INITIALIZER;
static int events[AGENT_UP_ERROR + 1];
static char last_action[128];

static void on_event(void *ctx, const agent_upload_event *ev)
{
    (void)ctx;
    pthread_mutex_lock(&emu);
    events[ev->type]++;
    snprintf(last_action, sizeof(last_action), "%s", ev->action);
    pthread_mutex_unlock(&emu);
}

static int event_count(agent_upload_event_type t)
{
    pthread_mutex_lock(&emu);
    int n = events[t];
    pthread_mutex_unlock(&emu);
    return n;
}

/* Waits until n events of type t were reported: the uploader removes a
 * segment from the spool before it reports it. */
static int wait_event(agent_upload_event_type t, int n, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
        if (event_count(t) == n)
            return 1;
        usleep(5000);
    }
    fprintf(stderr, "event %d: %d seen, %d expected\n", (int)t, event_count(t), n);
    return 0;
}

/* ---- test clock: the monotonic clock plus jumps the test makes --------- */

static _Atomic int64_t clock_jump;

static int64_t test_clock(void *ctx)
{
    (void)ctx;
    return c2d_mono_us() + atomic_load(&clock_jump);
}

static void jump_s(int64_t s)
{
    atomic_fetch_add(&clock_jump, s * 1000000);
}

/* ---- fixture --------------------------------------------------------------- */

static char root[256];
static int fixture_no;
static agent_spool *spool;
static agent_uploader *up;

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Makes a segment of size bytes (byte i = seed + i) and queues it. */
static agent_segment add_segment(uint16_t ch, int64_t start, size_t size, uint8_t seed)
{
    agent_segment seg = {.channel = ch, .start_us = start, .duration_us = 1000000, .size = size};
    char tmp[1024];
    if (agent_spool_tmp_path(spool, ch, start, tmp, sizeof(tmp)) != 0)
        abort();
    uint8_t *data = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++)
        data[i] = (uint8_t)(seed + i * 7);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || c2d_write_all(fd, data, size) != 0 || fsync(fd) != 0 || close(fd) != 0)
        abort();
    c2d_sha256 h;
    c2d_sha256_init(&h);
    c2d_sha256_update(&h, data, size);
    c2d_sha256_final_hex(&h, seg.sha256);
    free(data);
    int rc = agent_spool_commit(spool, &seg, tmp, NULL, 0);
    if (rc != 0) {
        fprintf(stderr, "agent_spool_commit: %s\n", strerror(-rc));
        abort();
    }
    return seg;
}

static void setup(const uint16_t *chs, size_t n, uint32_t chunk, uint32_t window,
                  int64_t ack_timeout_us)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%d", root, ++fixture_no);
    if (agent_spool_open(dir, 1u << 30, &spool) != 0)
        abort();
    memset(events, 0, sizeof(events));
    chunks_published = 0;
    agent_uploader_cfg cfg = {
        .spool = spool,
        .channels = chs,
        .n_channels = n,
        .chunk_bytes = chunk,
        .window_chunks = window,
        .ack_timeout_us = ack_timeout_us,
        .publish = fake_publish,
        .on_event = on_event,
        .clock_us = test_clock,
    };
    atomic_store(&clock_jump, 0);
    if (agent_uploader_start(&cfg, &up) != 0)
        abort();
}

static void teardown(void)
{
    agent_uploader_stop(up);
    up = NULL;
    agent_spool_free(spool);
    spool = NULL;
    drain();
}

static void ack(uint16_t ch, int64_t start, c2d_ack_status st, uint64_t off, const char *reason)
{
    c2d_msg m;
    memset(&m, 0, sizeof(m));
    m.type = C2D_MSG_ACK;
    m.channel = ch;
    m.start_us = start;
    m.status = st;
    m.offset = off;
    if (reason)
        snprintf(m.reason, sizeof(m.reason), "%s", reason);
    char *json = c2d_msg_encode(&m);
    CHECK(agent_uploader_on_ack(up, json, strlen(json)) == 0);
    free(json);
}

/* Waits for the next message, which must be a control message of type t
 * for (ch, start). Returns it (caller frees) or NULL. */
static sent_msg *expect_control(int line, c2d_msg_type t, uint16_t ch, int64_t start,
                                int timeout_ms)
{
    sent_msg *s = next_msg(timeout_ms);
    if (!s || s->is_chunk != 0 || s->m.type != t || s->m.channel != ch || s->m.start_us != start) {
        fprintf(stderr, "%s:%d: expected %s ch %u start %lld, got %s\n", __FILE__, line,
                t == C2D_MSG_BEGIN ? "begin" : "end", ch, (long long)start,
                !s            ? "nothing"
                : s->is_chunk ? "a chunk"
                              : "another message");
        failures++;
        free_msg(s);
        return NULL;
    }
    return s;
}
#define EXPECT_BEGIN(ch, start, to) free_msg(expect_control(__LINE__, C2D_MSG_BEGIN, ch, start, to))
#define EXPECT_END(ch, start, to) free_msg(expect_control(__LINE__, C2D_MSG_END, ch, start, to))

static sent_msg *expect_chunk(int line, uint16_t ch, int64_t start, uint64_t off)
{
    sent_msg *s = next_msg(2000);
    if (!s || s->is_chunk != 1 || s->c.channel != ch || s->c.start_us != start ||
        s->c.offset != off) {
        fprintf(stderr, "%s:%d: expected chunk ch %u start %lld offset %llu, got %s", __FILE__,
                line, ch, (long long)start, (unsigned long long)off,
                !s                 ? "nothing\n"
                : s->is_chunk == 1 ? ""
                                   : "a control message\n");
        if (s && s->is_chunk == 1)
            fprintf(stderr, "ch %u start %lld offset %llu\n", s->c.channel,
                    (long long)s->c.start_us, (unsigned long long)s->c.offset);
        failures++;
        free_msg(s);
        return NULL;
    }
    return s;
}
#define EXPECT_CHUNK(ch, start, off) free_msg(expect_chunk(__LINE__, ch, start, off))

static int queued(uint16_t ch, int64_t start)
{
    agent_segment s;
    return agent_spool_next(spool, ch, start - 1, &s) == 0 && s.start_us == start;
}

/* Waits until the spool holds n segments (the uploader removes them). */
static int wait_queued(uint64_t n, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 10; i++) {
        agent_spool_stats st;
        agent_spool_get_stats(spool, &st);
        if (st.queued_segments == n)
            return 1;
        usleep(10000);
    }
    return 0;
}

/* ---- a fake controller that stores and verifies ------------------------- */

typedef struct {
    uint16_t ch;
    int64_t start;
    uint64_t size, end;
    char sha[65];
    c2d_sha256 h;
    int open;
} partial;

/* Serves the uploader until the spool is empty: answers begin with offset
 * 0, verifies chunk order, holds chunk acks and releases them one at a time
 * when the uploader goes quiet, checking that no more than window chunks
 * are ever unconfirmed and recording the order of channels. */
static void serve(uint32_t window, int *order, size_t *norder, size_t maxorder)
{
    partial parts[8];
    size_t nparts = 0;
    struct {
        uint16_t ch;
        int64_t start;
        uint64_t off;
    } held[512];
    size_t nheld = 0;
    int64_t deadline = c2d_mono_us() + 20000000;
    while (c2d_mono_us() < deadline) {
        sent_msg *s = next_msg(50);
        if (!s) {
            if (nheld > 0) {
                ack(held[0].ch, held[0].start, C2D_ACK_OFFSET, held[0].off, NULL);
                memmove(held, held + 1, --nheld * sizeof(held[0]));
                continue;
            }
            agent_spool_stats st;
            agent_spool_get_stats(spool, &st);
            if (st.queued_segments == 0)
                break;
            continue;
        }
        CHECK(s->is_chunk >= 0);
        if (s->is_chunk == 1) {
            partial *p = NULL;
            for (size_t i = 0; i < nparts; i++)
                if (parts[i].open && parts[i].ch == s->c.channel && parts[i].start == s->c.start_us)
                    p = &parts[i];
            CHECK(p != NULL);
            CHECK(nheld < window); /* the window: at most this many unconfirmed */
            if (p) {
                CHECK(s->c.offset == p->end);
                c2d_sha256_update(&p->h, s->c.data, s->c.length);
                p->end += s->c.length;
                held[nheld].ch = p->ch;
                held[nheld].start = p->start;
                held[nheld].off = p->end;
                nheld++;
                if (*norder < maxorder)
                    order[(*norder)++] = p->ch;
            }
        } else if (s->m.type == C2D_MSG_BEGIN) {
            CHECK(nparts < 8);
            partial *p = &parts[nparts++];
            memset(p, 0, sizeof(*p));
            p->ch = s->m.channel;
            p->start = s->m.start_us;
            p->size = s->m.size;
            memcpy(p->sha, s->m.sha256, 65);
            c2d_sha256_init(&p->h);
            p->open = 1;
            ack(p->ch, p->start, C2D_ACK_OFFSET, 0, NULL);
        } else if (s->m.type == C2D_MSG_END) {
            /* Chunks before end are confirmed first (in-order topic). */
            while (nheld > 0) {
                ack(held[0].ch, held[0].start, C2D_ACK_OFFSET, held[0].off, NULL);
                memmove(held, held + 1, --nheld * sizeof(held[0]));
            }
            for (size_t i = 0; i < nparts; i++) {
                partial *p = &parts[i];
                if (!p->open || p->ch != s->m.channel || p->start != s->m.start_us)
                    continue;
                char hex[65];
                c2d_sha256_final_hex(&p->h, hex);
                p->open = 0;
                CHECK(p->end == p->size);
                CHECK(strcmp(hex, p->sha) == 0);
                ack(p->ch, p->start, C2D_ACK_COMMITTED, p->end, NULL);
            }
        }
        free_msg(s);
    }
    for (size_t i = 0; i < nparts; i++)
        if (parts[i].open)
            c2d_sha256_discard(&parts[i].h);
}

static void test_full_upload(void)
{
    const uint16_t chs[] = {3, 7};
    setup(chs, 2, 4096, 3, 5000000);
    add_segment(3, 1000, 10 * 4096, 1);
    add_segment(3, 2000, 5000, 2);
    add_segment(7, 1000, 10 * 4096 + 17, 3);
    add_segment(7, 3000, 0, 4); /* empty segment: begin, end */
    agent_uploader_set_connected(up, 1);
    int order[256];
    size_t norder = 0;
    serve(3, order, &norder, 256);
    CHECK(wait_queued(0, 2000));
    CHECK(wait_event(AGENT_UP_COMMITTED, 4, 2000));
    CHECK(event_count(AGENT_UP_REJECTED) == 0);
    /* Both channels upload at the same time: once both have started, the
     * counts never drift apart by more than the window. */
    int c3 = 0, c7 = 0, both = 0, maxdiff = 0;
    for (size_t i = 0; i < norder && i < 20; i++) {
        if (order[i] == 3)
            c3++;
        else
            c7++;
        both |= c3 && c7;
        int d = c3 > c7 ? c3 - c7 : c7 - c3;
        if (both && d > maxdiff)
            maxdiff = d;
    }
    CHECK(both);
    CHECK(maxdiff <= 3);
    agent_uploader_status st;
    agent_lane_status lanes[2];
    CHECK(agent_uploader_get_status(up, &st, lanes, 2) == 2);
    CHECK(st.segments_committed == 4);
    CHECK(lanes[0].channel == 3 && lanes[0].committed == 2);
    teardown();
}

static void test_resume_and_gap(void)
{
    const uint16_t chs[] = {1};
    setup(chs, 1, 4096, 4, 5000000);
    add_segment(1, 500, 5 * 4096, 9);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(1, 500, 2000);
    /* The controller already holds two chunks: resume there. */
    ack(1, 500, C2D_ACK_OFFSET, 8192, NULL);
    EXPECT_CHUNK(1, 500, 8192);
    EXPECT_CHUNK(1, 500, 12288);
    EXPECT_CHUNK(1, 500, 16384);
    EXPECT_END(1, 500, 2000);
    CHECK(event_count(AGENT_UP_RESUMED) == 1);
    /* The first of those chunks was lost: the rest are refused as gaps, all
     * with the same offset. Resume once, ignore the echoes. */
    ack(1, 500, C2D_ACK_REJECTED, 8192, "gap");
    ack(1, 500, C2D_ACK_REJECTED, 8192, "gap");
    EXPECT_CHUNK(1, 500, 8192);
    EXPECT_CHUNK(1, 500, 12288);
    EXPECT_CHUNK(1, 500, 16384);
    EXPECT_END(1, 500, 2000);
    CHECK(next_msg(200) == NULL);
    CHECK(event_count(AGENT_UP_REJECTED) == 2);
    /* size_mismatch at end: resume from the offset given. */
    ack(1, 500, C2D_ACK_REJECTED, 16384, "size_mismatch");
    EXPECT_CHUNK(1, 500, 16384);
    EXPECT_END(1, 500, 2000);
    CHECK(queued(1, 500));
    ack(1, 500, C2D_ACK_COMMITTED, 5 * 4096, NULL);
    CHECK(wait_queued(0, 2000));
    CHECK(wait_event(AGENT_UP_COMMITTED, 1, 2000));
    teardown();
}

static void test_window_held(void)
{
    const uint16_t chs[] = {1, 2};
    setup(chs, 2, 4096, 2, 5000000);
    add_segment(1, 10, 8 * 4096, 1);
    add_segment(2, 10, 8 * 4096, 2);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(1, 10, 2000);
    EXPECT_BEGIN(2, 10, 2000);
    ack(1, 10, C2D_ACK_OFFSET, 0, NULL);
    ack(2, 10, C2D_ACK_OFFSET, 0, NULL);
    /* Two chunks in flight in total, then nothing until an ack. */
    int n = 0;
    sent_msg *s;
    while ((s = next_msg(300))) {
        CHECK(s->is_chunk == 1);
        n++;
        free_msg(s);
    }
    CHECK(n == 2);
    CHECK(chunks_published == 2);
    teardown();
}

static void test_park_and_next(void)
{
    const uint16_t chs[] = {4};
    setup(chs, 1, 4096, 4, 5000000);
    add_segment(4, 100, 1000, 1);
    add_segment(4, 200, 1000, 2);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(4, 100, 2000);
    ack(4, 100, C2D_ACK_REJECTED, 0, "conflict");
    /* Parked: stays in the spool, the channel moves on. */
    EXPECT_BEGIN(4, 200, 2000);
    CHECK(event_count(AGENT_UP_PARKED) == 1);
    CHECK(queued(4, 100));
    ack(4, 200, C2D_ACK_DUPLICATE, 1000, NULL);
    CHECK(wait_queued(1, 2000));
    CHECK(queued(4, 100));
    CHECK(wait_event(AGENT_UP_DUPLICATE, 1, 2000));
    /* The parked one is not tried again in this run. */
    CHECK(next_msg(600) == NULL);
    agent_uploader_status st;
    agent_uploader_get_status(up, &st, NULL, 0);
    CHECK(st.parked == 1 && !st.busy);
    teardown();
}

static void test_hash_mismatch(void)
{
    const uint16_t chs[] = {5};
    setup(chs, 1, 4096, 4, 5000000);
    add_segment(5, 100, 3000, 1);
    add_segment(5, 200, 3000, 2);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(5, 100, 2000);
    ack(5, 100, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(5, 100, 0);
    EXPECT_END(5, 100, 2000);
    EXPECT_BEGIN(5, 200, 2000); /* the next one starts while 100 awaits commit */
    /* Own file intact: start over, at most AGENT_UPLOADER_HASH_RETRIES times
     * (200 is put back each time and taken again once 100's end is out). */
    for (int i = 0; i < AGENT_UPLOADER_HASH_RETRIES; i++) {
        ack(5, 100, C2D_ACK_REJECTED, 0, "hash_mismatch");
        EXPECT_BEGIN(5, 100, 2000);
        ack(5, 100, C2D_ACK_OFFSET, 0, NULL);
        EXPECT_CHUNK(5, 100, 0);
        EXPECT_END(5, 100, 2000);
        EXPECT_BEGIN(5, 200, 2000);
    }
    usleep(100000); /* 200's begin is answered after this */
    ack(5, 100, C2D_ACK_REJECTED, 0, "hash_mismatch");
    EXPECT_BEGIN(5, 200, 2000); /* parked; next segment */
    CHECK(event_count(AGENT_UP_PARKED) == 1);
    CHECK(queued(5, 100));

    /* Own file corrupt: dropped from the spool. */
    char path[1024];
    CHECK(agent_spool_path(spool, 5, 200, path, sizeof(path)) == 0);
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "X", 1, 10) == 1);
    close(fd);
    ack(5, 200, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(5, 200, 0);
    EXPECT_END(5, 200, 2000);
    ack(5, 200, C2D_ACK_REJECTED, 0, "hash_mismatch");
    CHECK(wait_queued(1, 2000));
    CHECK(!queued(5, 200));
    CHECK(event_count(AGENT_UP_DROPPED) == 1);
    teardown();
}

static void test_timeout_reconnect_storage(void)
{
    const uint16_t chs[] = {6};
    setup(chs, 1, 4096, 4, 300000);
    add_segment(6, 100, 10000, 1);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(6, 100, 2000);
    /* No answer: begin again after the ack timeout (300 ms). */
    int64_t t0 = c2d_mono_us();
    EXPECT_BEGIN(6, 100, 2000);
    int64_t dt = c2d_mono_us() - t0;
    CHECK(dt >= 250000 && dt < 1500000);
    CHECK(event_count(AGENT_UP_TIMEOUT) == 1);
    ack(6, 100, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(6, 100, 0);
    EXPECT_CHUNK(6, 100, 4096);
    EXPECT_CHUNK(6, 100, 8192);
    EXPECT_END(6, 100, 2000);

    /* Disconnected: nothing is sent; on reconnect, begin again. */
    agent_uploader_set_connected(up, 0);
    CHECK(next_msg(500) == NULL);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(6, 100, 2000);
    ack(6, 100, C2D_ACK_OFFSET, 10000, NULL); /* everything arrived already */
    EXPECT_END(6, 100, 2000);

    /* storage: back off (1 s), then begin again. */
    ack(6, 100, C2D_ACK_REJECTED, 0, "storage");
    t0 = c2d_mono_us();
    EXPECT_BEGIN(6, 100, 3000);
    dt = c2d_mono_us() - t0;
    CHECK(dt >= 900000);
    /* unknown_segment for an end: begin again at once. */
    ack(6, 100, C2D_ACK_OFFSET, 10000, NULL);
    EXPECT_END(6, 100, 2000);
    ack(6, 100, C2D_ACK_REJECTED, 10000, "unknown_segment");
    EXPECT_BEGIN(6, 100, 2000);
    ack(6, 100, C2D_ACK_COMMITTED, 10000, NULL);
    CHECK(wait_queued(0, 2000));
    /* Stale and invalid acks are harmless. */
    ack(6, 100, C2D_ACK_COMMITTED, 10000, NULL);
    CHECK(agent_uploader_on_ack(up, "nope", 4) == -1);
    usleep(100000);
    agent_uploader_status st;
    agent_uploader_get_status(up, &st, NULL, 0);
    CHECK(st.acks_invalid == 1);
    CHECK(st.acks_stale >= 1);
    teardown();
}

static void test_rate_limit(void)
{
    const uint16_t chs[] = {1};
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%d", root, ++fixture_no);
    if (agent_spool_open(dir, 1u << 30, &spool) != 0)
        abort();
    agent_uploader_cfg cfg = {
        .spool = spool,
        .channels = chs,
        .n_channels = 1,
        .chunk_bytes = 4096,
        .window_chunks = 64,
        .rate_limit_bps = 40000,
        .ack_timeout_us = 5000000,
        .publish = fake_publish,
    };
    CHECK(agent_uploader_start(&cfg, &up) == 0);
    add_segment(1, 1, 40 * 4096, 1);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(1, 1, 2000);
    ack(1, 1, C2D_ACK_OFFSET, 0, NULL);
    int64_t t0 = c2d_mono_us();
    uint64_t bytes = 0;
    while (c2d_mono_us() - t0 < 1000000) {
        sent_msg *s = next_msg(100);
        if (s && s->is_chunk == 1) {
            bytes += s->len;
            ack(1, 1, C2D_ACK_OFFSET, s->c.offset + s->c.length, NULL);
        }
        free_msg(s);
    }
    /* One second at 40 kB/s plus the initial bucket of one frame. */
    CHECK(bytes >= 30000 && bytes <= 40000 + 2 * 4128);
    teardown();
}

static agent_lane_status lane_status(size_t i)
{
    agent_lane_status lanes[4];
    memset(lanes, 0, sizeof(lanes));
    agent_uploader_get_status(up, NULL, lanes, 4);
    return lanes[i];
}

/* The uploader refreshes its status snapshot after it publishes, so a
 * message seen here may precede the snapshot that explains it: poll. */
static int wait_awaiting(size_t i, int64_t start_us, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
        if (lane_status(i).awaiting_start_us == start_us)
            return 1;
        usleep(5000);
    }
    return 0;
}

/* The next segment's begin and chunks flow while the previous one awaits
 * committed; never more than one awaiting per lane; the late commit removes
 * the right file. */
static void test_overlap_commit(void)
{
    const uint16_t chs[] = {2};
    setup(chs, 1, 4096, 4, 5000000);
    add_segment(2, 100, 2 * 4096, 1);
    add_segment(2, 200, 3 * 4096, 2);
    add_segment(2, 300, 4096, 3);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(2, 100, 2000);
    ack(2, 100, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(2, 100, 0);
    EXPECT_CHUNK(2, 100, 4096);
    EXPECT_END(2, 100, 2000);
    /* No commit for 100 yet: 200 starts at once. */
    EXPECT_BEGIN(2, 200, 2000);
    ack(2, 100, C2D_ACK_OFFSET, 4096, NULL); /* late chunk acks of 100: noted */
    ack(2, 100, C2D_ACK_OFFSET, 8192, NULL);
    ack(2, 200, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(2, 200, 0);
    EXPECT_CHUNK(2, 200, 4096);
    EXPECT_CHUNK(2, 200, 8192);
    EXPECT_END(2, 200, 2000);
    /* 200 is all sent but 100 still awaits: 300 must wait (one per lane). */
    CHECK(next_msg(400) == NULL);
    CHECK(wait_awaiting(0, 100, 2000));
    agent_lane_status ls = lane_status(0);
    CHECK(ls.phase == AGENT_LANE_END && ls.start_us == 200);
    CHECK(queued(2, 100) && queued(2, 200) && queued(2, 300));
    ack(2, 100, C2D_ACK_COMMITTED, 8192, NULL);
    /* 100 is removed, 200 now awaits, 300 starts. */
    EXPECT_BEGIN(2, 300, 2000);
    CHECK(!queued(2, 100));
    CHECK(queued(2, 200) && queued(2, 300));
    CHECK(wait_awaiting(0, 200, 2000));
    CHECK(wait_event(AGENT_UP_COMMITTED, 1, 2000));
    ack(2, 300, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(2, 300, 0);
    EXPECT_END(2, 300, 2000);
    ack(2, 300, C2D_ACK_COMMITTED, 4096, NULL); /* out of order: 300 before 200 */
    CHECK(wait_queued(1, 2000));
    CHECK(queued(2, 200) && !queued(2, 300));
    ack(2, 200, C2D_ACK_DUPLICATE, 3 * 4096, NULL);
    CHECK(wait_queued(0, 2000));
    CHECK(wait_event(AGENT_UP_COMMITTED, 2, 2000) && wait_event(AGENT_UP_DUPLICATE, 1, 2000));
    usleep(50000);
    agent_uploader_status st;
    agent_uploader_get_status(up, &st, NULL, 0);
    CHECK(!st.busy && st.segments_committed == 2 && st.segments_duplicate == 1);
    CHECK(next_msg(300) == NULL);
    teardown();
}

/* A rejection of the awaiting segment: it is the active one again (handled
 * as before), the one being sent is put back and resumes later. */
static void test_wait_rejected(void)
{
    const uint16_t chs[] = {3};
    setup(chs, 1, 4096, 2, 5000000);
    add_segment(3, 100, 2 * 4096, 1);
    add_segment(3, 200, 4 * 4096, 2);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(3, 100, 2000);
    ack(3, 100, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(3, 100, 0);
    EXPECT_CHUNK(3, 100, 4096);
    EXPECT_END(3, 100, 2000);
    EXPECT_BEGIN(3, 200, 2000);
    ack(3, 200, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(3, 200, 0);
    EXPECT_CHUNK(3, 200, 4096);
    CHECK(next_msg(200) == NULL); /* window of 2 */
    /* 100's second chunk was lost: its end is refused. */
    ack(3, 100, C2D_ACK_REJECTED, 4096, "size_mismatch");
    EXPECT_CHUNK(3, 100, 4096);
    EXPECT_END(3, 100, 2000);
    EXPECT_BEGIN(3, 200, 2000); /* put back, taken again */
    CHECK(queued(3, 100) && queued(3, 200));
    CHECK(event_count(AGENT_UP_REJECTED) == 1);
    ack(3, 200, C2D_ACK_OFFSET, 8192, NULL); /* the controller kept 200's chunks */
    EXPECT_CHUNK(3, 200, 8192);
    EXPECT_CHUNK(3, 200, 12288);
    EXPECT_END(3, 200, 2000);
    ack(3, 100, C2D_ACK_COMMITTED, 8192, NULL);
    ack(3, 200, C2D_ACK_COMMITTED, 4 * 4096, NULL);
    CHECK(wait_queued(0, 2000));
    CHECK(wait_event(AGENT_UP_COMMITTED, 2, 2000));

    /* A parking rejection of the awaiting one: kept, the other goes on. */
    add_segment(3, 300, 4096, 3);
    add_segment(3, 400, 4096, 4);
    EXPECT_BEGIN(3, 300, 2000);
    ack(3, 300, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(3, 300, 0);
    EXPECT_END(3, 300, 2000);
    EXPECT_BEGIN(3, 400, 2000);
    ack(3, 300, C2D_ACK_REJECTED, 4096, "conflict");
    EXPECT_BEGIN(3, 400, 2000); /* put back and taken again */
    CHECK(event_count(AGENT_UP_PARKED) == 1);
    ack(3, 400, C2D_ACK_DUPLICATE, 4096, NULL);
    CHECK(wait_queued(1, 2000));
    CHECK(queued(3, 300) && !queued(3, 400));
    teardown();
}

/* No commit for the awaiting segment within the ack timeout: begin again
 * for it (the one being sent is put back). */
static void test_wait_timeout(void)
{
    const uint16_t chs[] = {4};
    setup(chs, 1, 4096, 2, 400000);
    add_segment(4, 100, 4096, 1);
    add_segment(4, 200, 64 * 4096, 2);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(4, 100, 2000);
    ack(4, 100, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(4, 100, 0);
    EXPECT_END(4, 100, 2000);
    int64_t t0 = c2d_mono_us();
    EXPECT_BEGIN(4, 200, 2000);
    ack(4, 200, C2D_ACK_OFFSET, 0, NULL);
    /* 200 keeps going (its chunks are acked), 100 hears nothing. */
    int got_begin = 0, chunks = 0;
    while (c2d_mono_us() - t0 < 2000000) {
        sent_msg *s = next_msg(500);
        if (!s)
            break;
        if (s->is_chunk == 1) {
            CHECK(s->c.start_us == 200);
            chunks++;
            usleep(10000); /* 64 chunks take longer than the timeout */
            ack(4, 200, C2D_ACK_OFFSET, s->c.offset + s->c.length, NULL);
        } else if (s->is_chunk == 0 && s->m.type == C2D_MSG_BEGIN && s->m.start_us == 100) {
            got_begin = 1;
            free_msg(s);
            break;
        }
        free_msg(s);
    }
    int64_t dt = c2d_mono_us() - t0;
    CHECK(got_begin);
    CHECK(chunks > 0 && chunks < 64);
    CHECK(dt >= 350000);
    CHECK(event_count(AGENT_UP_TIMEOUT) == 1);
    usleep(100000);                          /* 200's acks in the queue are stale now */
    ack(4, 100, C2D_ACK_OFFSET, 4096, NULL); /* all there: end again */
    EXPECT_END(4, 100, 2000);
    EXPECT_BEGIN(4, 200, 2000);
    CHECK(queued(4, 100));
    ack(4, 100, C2D_ACK_COMMITTED, 4096, NULL);
    ack(4, 200, C2D_ACK_DUPLICATE, 64 * 4096, NULL);
    CHECK(wait_queued(0, 2000));
    CHECK(wait_event(AGENT_UP_COMMITTED, 1, 2000) && wait_event(AGENT_UP_DUPLICATE, 1, 2000));
    teardown();
}

/* Reconnect with one segment awaiting commit and one being sent: both
 * send begin again; the awaiting one gets its size back and sends end. */
static void test_wait_reconnect(void)
{
    const uint16_t chs[] = {5, 6};
    setup(chs, 2, 4096, 1, 5000000);
    add_segment(5, 100, 4096, 1);
    add_segment(5, 200, 3 * 4096, 2);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(5, 100, 2000);
    ack(5, 100, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(5, 100, 0);
    EXPECT_END(5, 100, 2000);
    EXPECT_BEGIN(5, 200, 2000);
    ack(5, 200, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(5, 200, 0);
    CHECK(next_msg(200) == NULL); /* window of 1 */
    agent_uploader_set_connected(up, 0);
    usleep(100000);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(5, 100, 2000);
    EXPECT_BEGIN(5, 200, 2000);
    CHECK(next_msg(200) == NULL);
    ack(5, 100, C2D_ACK_OFFSET, 4096, NULL);
    EXPECT_END(5, 100, 2000);
    ack(5, 200, C2D_ACK_OFFSET, 4096, NULL);
    EXPECT_CHUNK(5, 200, 4096);
    CHECK(wait_awaiting(0, 100, 2000));
    ack(5, 100, C2D_ACK_COMMITTED, 4096, NULL);
    CHECK(wait_queued(1, 2000));
    CHECK(!queued(5, 100) && queued(5, 200));
    ack(5, 200, C2D_ACK_OFFSET, 8192, NULL);
    EXPECT_CHUNK(5, 200, 8192);
    ack(5, 200, C2D_ACK_OFFSET, 3 * 4096, NULL);
    EXPECT_END(5, 200, 2000);
    ack(5, 200, C2D_ACK_COMMITTED, 3 * 4096, NULL);
    CHECK(wait_queued(0, 2000));
    CHECK(wait_event(AGENT_UP_COMMITTED, 2, 2000));
    teardown();
}

/* quota_full / no_disk: the segment stays in the spool, the lane is held
 * (30 s, then 60 s, 120 s ... on the test clock) while other channels go
 * on; a new device config (retry_held) asks again at once. A refusal at
 * end (the authoritative check at commit) holds the awaiting segment. */
static void test_quota_hold(void)
{
    const uint16_t chs[] = {1, 2};
    setup(chs, 2, 4096, 4, INT64_C(3600000000));
    add_segment(1, 100, 4096, 1);
    add_segment(1, 200, 4096, 2);
    add_segment(2, 100, 4096, 3);
    add_segment(2, 200, 4096, 4);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(1, 100, 2000);
    EXPECT_BEGIN(2, 100, 2000);
    ack(1, 100, C2D_ACK_REJECTED, 0, "quota_full");
    /* Channel 2 is not held back by channel 1. */
    ack(2, 100, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(2, 100, 0);
    EXPECT_END(2, 100, 2000);
    EXPECT_BEGIN(2, 200, 2000);
    ack(2, 100, C2D_ACK_COMMITTED, 4096, NULL);
    ack(2, 200, C2D_ACK_DUPLICATE, 4096, NULL);
    CHECK(wait_queued(2, 2000));
    CHECK(queued(1, 100) && queued(1, 200));
    CHECK(next_msg(1200) == NULL); /* no spinning on the held lane */
    agent_lane_status ls = lane_status(0);
    CHECK(strcmp(ls.hold, "quota_full") == 0 && ls.holds == 1 && ls.phase == AGENT_LANE_BACKOFF);
    CHECK(ls.hold_retry_in_us > 25000000 && ls.hold_retry_in_us <= 30000000);
    agent_uploader_status st;
    agent_uploader_get_status(up, &st, NULL, 0);
    CHECK(st.held == 1 && st.busy);
    CHECK(strcmp(lane_status(1).hold, "") == 0);

    /* 30 s: nothing before, begin after. */
    jump_s(27);
    CHECK(next_msg(1500) == NULL);
    jump_s(4);
    EXPECT_BEGIN(1, 100, 2500);
    CHECK(strcmp(lane_status(0).hold, "") == 0);
    /* Still full: 60 s this time. */
    ack(1, 100, C2D_ACK_REJECTED, 0, "quota_full");
    usleep(100000);
    ls = lane_status(0);
    CHECK(ls.holds == 2 && ls.hold_retry_in_us > 55000000 && ls.hold_retry_in_us <= 60000000);
    jump_s(40);
    CHECK(next_msg(1500) == NULL);
    jump_s(21);
    EXPECT_BEGIN(1, 100, 2500);

    /* Accepted at begin, refused at commit: no_disk holds the awaiting
     * segment; the next one (begun meanwhile) is put back. */
    ack(1, 100, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(1, 100, 0);
    EXPECT_END(1, 100, 2000);
    EXPECT_BEGIN(1, 200, 2000);
    ack(1, 100, C2D_ACK_REJECTED, 4096, "no_disk");
    CHECK(next_msg(1200) == NULL);
    ls = lane_status(0);
    CHECK(strcmp(ls.hold, "no_disk") == 0 && ls.start_us == 100 && ls.holds == 3);
    CHECK(ls.hold_retry_in_us > 115000000); /* third hold: 120 s */
    CHECK(queued(1, 100) && queued(1, 200));

    /* A new config (the disk was given room): at once. */
    agent_uploader_retry_held(up);
    EXPECT_BEGIN(1, 100, 2000);
    ack(1, 100, C2D_ACK_OFFSET, 4096, NULL);
    EXPECT_END(1, 100, 2000);
    EXPECT_BEGIN(1, 200, 2000);
    ack(1, 100, C2D_ACK_COMMITTED, 4096, NULL);
    ack(1, 200, C2D_ACK_OFFSET, 0, NULL);
    EXPECT_CHUNK(1, 200, 0);
    EXPECT_END(1, 200, 2000);
    ack(1, 200, C2D_ACK_COMMITTED, 4096, NULL);
    CHECK(wait_queued(0, 2000));
    usleep(50000);
    ls = lane_status(0);
    CHECK(ls.hold[0] == '\0' && ls.committed == 2 && ls.dropped_backup_off == 0);
    CHECK(event_count(AGENT_UP_BACKUP_OFF) == 0 && event_count(AGENT_UP_PARKED) == 0);
    /* retry_held with nothing held changes nothing. */
    agent_uploader_retry_held(up);
    CHECK(next_msg(300) == NULL);
    teardown();
}

/* backup_off from the controller, and the device config's switch: segments
 * are removed from the spool unsent, counted and reported; back on, the
 * next segment uploads. */
static void test_backup_off(void)
{
    const uint16_t chs[] = {3, 4};
    setup(chs, 2, 4096, 4, 5000000);
    add_segment(3, 100, 4096, 1);
    add_segment(3, 200, 4096, 2);
    agent_uploader_set_connected(up, 1);
    EXPECT_BEGIN(3, 100, 2000);
    ack(3, 100, C2D_ACK_REJECTED, 0, "backup_off");
    EXPECT_BEGIN(3, 200, 2000);
    CHECK(!queued(3, 100) && queued(3, 200));
    CHECK(wait_event(AGENT_UP_BACKUP_OFF, 1, 2000));

    /* The config arrives: the segment being begun is the controller's to
     * answer, the next ones are deleted as they come. */
    CHECK(agent_uploader_set_backup(up, 3, 0) == 0);
    CHECK(agent_uploader_set_backup(up, 99, 0) == -ENOENT);
    ack(3, 200, C2D_ACK_REJECTED, 0, "backup_off");
    CHECK(wait_queued(0, 2000));
    add_segment(3, 300, 4096, 3);
    add_segment(3, 400, 4096, 4);
    add_segment(4, 300, 4096, 5); /* the other channel uploads */
    EXPECT_BEGIN(4, 300, 2000);
    ack(4, 300, C2D_ACK_DUPLICATE, 4096, NULL);
    CHECK(wait_queued(0, 2000));
    CHECK(next_msg(400) == NULL);
    usleep(50000);
    agent_lane_status ls = lane_status(0);
    CHECK(ls.backup == 0 && ls.dropped_backup_off == 4);
    CHECK(lane_status(1).backup == 1 && lane_status(1).dropped_backup_off == 0);
    agent_uploader_status st;
    agent_uploader_get_status(up, &st, NULL, 0);
    CHECK(st.dropped_backup_off == 4);
    CHECK(wait_event(AGENT_UP_BACKUP_OFF, 4, 2000) && event_count(AGENT_UP_DROPPED) == 0);

    /* Back on: from the next segment. */
    CHECK(agent_uploader_set_backup(up, 3, 1) == 0);
    usleep(50000);
    add_segment(3, 500, 4096, 6);
    EXPECT_BEGIN(3, 500, 2000);
    /* Held, then the channel is turned off: dropped at once, not after
     * the hold. */
    ack(3, 500, C2D_ACK_REJECTED, 0, "quota_full");
    usleep(100000);
    CHECK(queued(3, 500));
    CHECK(agent_uploader_set_backup(up, 3, 0) == 0);
    CHECK(wait_queued(0, 2000));
    CHECK(wait_event(AGENT_UP_BACKUP_OFF, 5, 2000));
    CHECK(next_msg(300) == NULL);
    teardown();
}

static void test_bad_cfg(void)
{
    agent_uploader_cfg cfg = {0};
    agent_uploader *u = NULL;
    CHECK(agent_uploader_start(&cfg, &u) == -EINVAL);
    agent_uploader_stop(NULL);
}

int main(void)
{
    snprintf(root, sizeof(root), "/tmp/c2d-test-uploader-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_bad_cfg();
    test_full_upload();
    test_resume_and_gap();
    test_window_held();
    test_park_and_next();
    test_hash_mismatch();
    test_timeout_reconnect_storage();
    test_rate_limit();
    test_overlap_commit();
    test_wait_rejected();
    test_wait_timeout();
    test_wait_reconnect();
    test_quota_hold();
    test_backup_off();
    nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
