/* agent/spool.c: queue order, eviction, pins, persistence, crash recovery,
 * checkpoints, wait. */
#include "check.h"
#include "agent/spool.h"

#include "common/c2d_fs.h"
#include "common/c2d_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a,    \
                    a_, #b, b_);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static char root[256];

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* What on_evict was told, in order. */
typedef struct {
    agent_segment v[16];
    size_t n;
} evicted;

static void on_evict(void *ud, const agent_segment *seg)
{
    evicted *e = ud;
    if (e->n < sizeof(e->v) / sizeof(e->v[0]))
        e->v[e->n] = *seg;
    e->n++;
}

/* Writes a temp segment of size bytes (content derived from start) and
 * commits it; returns the commit's result. ev (if not NULL) is reset and
 * collects the evicted segments. */
static int put_ev(agent_spool *sp, uint16_t ch, int64_t start, size_t size, const char *cp,
                  agent_spool_dropped *dropped, evicted *ev)
{
    char tmp[PATH_MAX];
    int rc = agent_spool_tmp_path(sp, ch, start, tmp, sizeof(tmp));
    if (rc != 0)
        return rc;
    char *buf = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++)
        buf[i] = (char)(start + (int64_t)i);
    rc = c2d_write_file_atomic(tmp, buf, size, 0640);
    free(buf);
    if (rc != 0)
        return rc;
    agent_segment seg = {.channel = ch, .start_us = start, .duration_us = 5000000, .size = size};
    if ((rc = c2d_sha256_file_hex(tmp, seg.sha256)) != 0)
        return rc;
    if (ev)
        ev->n = 0;
    return agent_spool_commit_ex(sp, &seg, tmp, cp, cp ? strlen(cp) : 0, dropped,
                                 ev ? on_evict : NULL, ev);
}

static int put(agent_spool *sp, uint16_t ch, int64_t start, size_t size, const char *cp,
               agent_spool_dropped *dropped)
{
    return put_ev(sp, ch, start, size, cp, dropped, NULL);
}

static int queued(agent_spool *sp, uint16_t ch, int64_t start)
{
    agent_segment s;
    return agent_spool_next(sp, ch, start - 1, &s) == 0 && s.start_us == start;
}

static void test_order(void)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/order", root);
    agent_spool *sp;
    CHECK_EQ(agent_spool_open(dir, 1 << 20, &sp), 0);

    CHECK_EQ(put(sp, 1, 300, 10, NULL, NULL), 0);
    CHECK_EQ(put(sp, 1, 100, 11, NULL, NULL), 0);
    CHECK_EQ(put(sp, 1, 200, 12, NULL, NULL), 0);
    CHECK_EQ(put(sp, 0, 150, 13, NULL, NULL), 0);
    CHECK_EQ(put(sp, 2, -5, 14, NULL, NULL), 0);
    CHECK_EQ(put(sp, 2, 7, 15, NULL, NULL), 0);
    CHECK_EQ(put(sp, 65535, 1, 16, NULL, NULL), 0);

    agent_segment s;
    CHECK_EQ(agent_spool_next(sp, 1, INT64_MIN, &s), 0);
    CHECK_EQ(s.channel, 1);
    CHECK_EQ(s.start_us, 100);
    CHECK_EQ(s.size, 11);
    CHECK_EQ(s.duration_us, 5000000);
    CHECK_EQ(strlen(s.sha256), 64);
    CHECK_EQ(agent_spool_next(sp, 1, 100, &s), 0);
    CHECK_EQ(s.start_us, 200);
    CHECK_EQ(agent_spool_next(sp, 1, 200, &s), 0);
    CHECK_EQ(s.start_us, 300);
    CHECK_EQ(agent_spool_next(sp, 1, 300, &s), -ENOENT);
    CHECK_EQ(agent_spool_next(sp, 2, INT64_MIN, &s), 0);
    CHECK_EQ(s.start_us, -5); /* negative starts sort first */
    CHECK_EQ(agent_spool_next(sp, 2, -5, &s), 0);
    CHECK_EQ(s.start_us, 7);
    CHECK_EQ(agent_spool_next(sp, 65535, INT64_MIN, &s), 0);
    CHECK_EQ(agent_spool_next(sp, 3, INT64_MIN, &s), -ENOENT);

    /* the file matches its record */
    char path[PATH_MAX], hex[65];
    CHECK_EQ(agent_spool_path(sp, 1, 200, path, sizeof(path)), 0);
    CHECK(strstr(path, "/spool/1/200.ts") != NULL);
    CHECK_EQ(c2d_sha256_file_hex(path, hex), 0);
    CHECK_EQ(agent_spool_next(sp, 1, 100, &s), 0);
    CHECK(strcmp(hex, s.sha256) == 0);
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_mode & 0777, 0640);

    agent_spool_stats stats;
    agent_spool_get_stats(sp, &stats);
    CHECK_EQ(stats.queued_segments, 7);
    CHECK_EQ(stats.queued_bytes, 10 + 11 + 12 + 13 + 14 + 15 + 16);
    CHECK_EQ(stats.oldest_start_us, -5);
    CHECK_EQ(stats.dropped_segments, 0);
    CHECK_EQ(stats.max_bytes, 1 << 20);

    /* remove: deleted, then -ENOENT; keep_dir moves */
    CHECK_EQ(agent_spool_remove(sp, 1, 200, NULL), 0);
    CHECK(!exists(path));
    CHECK_EQ(agent_spool_remove(sp, 1, 200, NULL), -ENOENT);
    CHECK_EQ(agent_spool_next(sp, 1, 100, &s), 0);
    CHECK_EQ(s.start_us, 300);
    char keep[PATH_MAX], kept[PATH_MAX];
    snprintf(keep, sizeof(keep), "%s/kept", dir);
    snprintf(kept, sizeof(kept), "%s/kept/2/-5.ts", dir);
    CHECK_EQ(agent_spool_remove(sp, 2, -5, keep), 0);
    CHECK(exists(kept));
    agent_spool_get_stats(sp, &stats);
    CHECK_EQ(stats.queued_segments, 5);
    CHECK_EQ(stats.queued_bytes, 10 + 11 + 13 + 15 + 16);
    CHECK_EQ(stats.oldest_start_us, 1);

    /* commit refuses a size that is not the file's */
    char tmp[PATH_MAX];
    CHECK_EQ(agent_spool_tmp_path(sp, 4, 9, tmp, sizeof(tmp)), 0);
    CHECK_EQ(c2d_write_file_atomic(tmp, "abc", 3, 0640), 0);
    agent_segment bad = {.channel = 4, .start_us = 9, .size = 4};
    memset(bad.sha256, 'a', 64);
    CHECK_EQ(agent_spool_commit(sp, &bad, tmp, NULL, 0), -EINVAL);
    agent_spool_free(sp);
    agent_spool_free(NULL);
}

static void test_evict(void)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/evict", root);
    agent_spool *sp;
    CHECK_EQ(agent_spool_open(dir, 10000, &sp), 0);
    agent_spool_dropped d;
    CHECK_EQ(put(sp, 0, 10, 3000, NULL, &d), 0);
    CHECK_EQ(d.segments, 0);
    CHECK_EQ(put(sp, 1, 5, 3000, NULL, &d), 0);
    CHECK_EQ(put(sp, 0, 20, 3000, NULL, &d), 0);
    CHECK_EQ(d.segments, 0);
    /* 12000 > 10000: the global oldest (channel 1, start 5) goes */
    CHECK_EQ(put(sp, 1, 30, 3000, NULL, &d), 0);
    CHECK_EQ(d.segments, 1);
    CHECK_EQ(d.bytes, 3000);
    CHECK_EQ(d.oldest_start_us, 5);
    agent_segment s;
    CHECK_EQ(agent_spool_next(sp, 1, INT64_MIN, &s), 0);
    CHECK_EQ(s.start_us, 30);
    char path[PATH_MAX];
    agent_spool_path(sp, 1, 5, path, sizeof(path));
    CHECK(!exists(path));
    /* a big one pushes out two more (channel 0's 10 and 20) */
    CHECK_EQ(put(sp, 2, 40, 5000, NULL, &d), 0);
    CHECK_EQ(d.segments, 2);
    CHECK_EQ(d.bytes, 6000);
    CHECK_EQ(d.oldest_start_us, 10);
    CHECK_EQ(d.newest_start_us, 20);
    agent_spool_stats st;
    agent_spool_get_stats(sp, &st);
    CHECK_EQ(st.queued_segments, 2);
    CHECK_EQ(st.queued_bytes, 8000);
    CHECK_EQ(st.dropped_segments, 3);
    CHECK_EQ(st.dropped_bytes, 9000);
    CHECK_EQ(st.oldest_start_us, 30);
    /* the uploader's remove of an evicted segment says so */
    CHECK_EQ(agent_spool_remove(sp, 0, 10, NULL), -ENOENT);
    agent_spool_free(sp);

    /* counters persist; a smaller max_bytes evicts at open */
    CHECK_EQ(agent_spool_open(dir, 6000, &sp), 0);
    agent_spool_get_stats(sp, &st);
    CHECK_EQ(st.dropped_segments, 4);
    CHECK_EQ(st.dropped_bytes, 12000);
    CHECK_EQ(st.queued_segments, 1);
    CHECK_EQ(st.queued_bytes, 5000);
    CHECK_EQ(st.oldest_start_us, 40);
    agent_spool_free(sp);
}

/* The uploader pins the segments it is sending or awaiting an ack for:
 * eviction passes over them (and over the segment just committed). */
static void test_pin(void)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/pin", root);
    agent_spool *sp;
    CHECK_EQ(agent_spool_open(dir, 10000, &sp), 0);
    agent_spool_dropped d;
    evicted ev;
    CHECK_EQ(agent_spool_pin(sp, 0, 10), -ENOENT); /* only queued segments */
    CHECK_EQ(put(sp, 0, 10, 3000, NULL, NULL), 0);
    CHECK_EQ(put(sp, 1, 5, 3000, NULL, NULL), 0);
    CHECK_EQ(put(sp, 0, 20, 3000, NULL, NULL), 0);

    /* the pinned global oldest (ch 1 start 5) stays; the next oldest goes */
    CHECK_EQ(agent_spool_pin(sp, 1, 5), 0);
    CHECK_EQ(agent_spool_pin(sp, 1, 5), 0); /* again: a no-op */
    CHECK_EQ(agent_spool_pinned(sp, 1, 5), 1);
    CHECK_EQ(put_ev(sp, 1, 30, 3000, NULL, &d, &ev), 0);
    CHECK_EQ(d.segments, 1);
    CHECK_EQ(d.bytes, 3000);
    CHECK_EQ(d.oldest_start_us, 10);
    CHECK_EQ(d.newest_start_us, 10);
    CHECK_EQ(ev.n, 1);
    CHECK_EQ(ev.v[0].channel, 0);
    CHECK_EQ(ev.v[0].start_us, 10);
    CHECK_EQ(ev.v[0].size, 3000);
    CHECK_EQ(strlen(ev.v[0].sha256), 64);
    CHECK(queued(sp, 1, 5));
    CHECK(!queued(sp, 0, 10));
    CHECK_EQ(agent_spool_pin(sp, 0, 10), -ENOENT); /* evicted: cannot be pinned */

    /* everything pinned: nothing goes, the spool stays over max_bytes */
    CHECK_EQ(agent_spool_pin(sp, 0, 20), 0);
    CHECK_EQ(agent_spool_pin(sp, 1, 30), 0);
    CHECK_EQ(put_ev(sp, 2, 40, 3000, NULL, &d, &ev), 0);
    CHECK_EQ(d.segments, 0);
    CHECK_EQ(ev.n, 0);
    agent_spool_stats st;
    agent_spool_get_stats(sp, &st);
    CHECK_EQ(st.queued_segments, 4);
    CHECK_EQ(st.queued_bytes, 12000);
    CHECK_EQ(st.dropped_segments, 1);
    CHECK_EQ(st.oldest_start_us, 5); /* pinned ones are still queued */

    /* unpinned, the oldest goes at the next commit (ch 1's 30, before ch
     * 2's 40 which is no longer the newest) */
    agent_spool_unpin(sp, 1, 30);
    agent_spool_unpin(sp, 1, 30); /* not pinned: ignored */
    CHECK_EQ(agent_spool_pinned(sp, 1, 30), 0);
    CHECK_EQ(put_ev(sp, 2, 50, 2000, NULL, &d, &ev), 0);
    CHECK_EQ(d.segments, 2);
    CHECK_EQ(ev.n, 2);
    CHECK_EQ(ev.v[0].channel, 1);
    CHECK_EQ(ev.v[0].start_us, 30);
    CHECK_EQ(ev.v[1].channel, 2);
    CHECK_EQ(ev.v[1].start_us, 40);
    agent_spool_get_stats(sp, &st);
    CHECK_EQ(st.queued_bytes, 8000);
    CHECK_EQ(st.dropped_segments, 3);

    /* remove releases the pin; a segment queued again later is not pinned */
    CHECK_EQ(agent_spool_remove(sp, 0, 20, NULL), 0);
    CHECK_EQ(agent_spool_pinned(sp, 0, 20), 0);
    CHECK_EQ(put(sp, 0, 20, 3000, NULL, NULL), 0);
    CHECK_EQ(agent_spool_pinned(sp, 0, 20), 0);
    CHECK_EQ(put_ev(sp, 0, 60, 3000, NULL, &d, &ev), 0);
    CHECK_EQ(ev.n, 1);
    CHECK_EQ(ev.v[0].start_us, 20);
    CHECK(queued(sp, 1, 5));
    agent_spool_free(sp);

    /* pins pass over records within a channel and across channels: ch 0's
     * pinned 100 leads to its 300, ch 1's only record is pinned so the
     * walk goes on to ch 2's 250 */
    snprintf(dir, sizeof(dir), "%s/pin2", root);
    CHECK_EQ(agent_spool_open(dir, 4000, &sp), 0);
    CHECK_EQ(put(sp, 0, 100, 1000, NULL, NULL), 0);
    CHECK_EQ(put(sp, 0, 300, 1000, NULL, NULL), 0);
    CHECK_EQ(put(sp, 1, 200, 1000, NULL, NULL), 0);
    CHECK_EQ(put(sp, 2, 250, 1000, NULL, NULL), 0);
    CHECK_EQ(agent_spool_pin(sp, 0, 100), 0);
    CHECK_EQ(agent_spool_pin(sp, 1, 200), 0);
    CHECK_EQ(put_ev(sp, 3, 400, 1500, NULL, &d, &ev), 0);
    CHECK_EQ(ev.n, 2);
    CHECK(ev.v[0].channel == 2 && ev.v[0].start_us == 250);
    CHECK(ev.v[1].channel == 0 && ev.v[1].start_us == 300);
    CHECK_EQ(d.oldest_start_us, 250);
    CHECK_EQ(d.newest_start_us, 300);
    agent_spool_free(sp);

    /* pins live in memory: after a restart a smaller spool evicts them */
    CHECK_EQ(agent_spool_open(dir, 2000, &sp), 0);
    CHECK_EQ(agent_spool_pinned(sp, 0, 100), 0);
    agent_spool_get_stats(sp, &st);
    CHECK_EQ(st.queued_bytes, 1500);
    CHECK(queued(sp, 3, 400));
    CHECK(!queued(sp, 0, 100) && !queued(sp, 1, 200));
    agent_spool_free(sp);
}

static void test_recovery(void)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/recover", root);
    agent_spool *sp;
    CHECK_EQ(agent_spool_open(dir, 1 << 20, &sp), 0);
    CHECK_EQ(put(sp, 3, 100, 50, NULL, NULL), 0);
    CHECK_EQ(put(sp, 3, 200, 60, NULL, NULL), 0);
    CHECK_EQ(put(sp, 3, 300, 70, NULL, NULL), 0);
    CHECK_EQ(put(sp, 4, 100, 80, NULL, NULL), 0);
    char p100[PATH_MAX], p200[PATH_MAX], p300[PATH_MAX], tmp[PATH_MAX], orphan[PATH_MAX];
    agent_spool_path(sp, 3, 100, p100, sizeof(p100));
    agent_spool_path(sp, 3, 200, p200, sizeof(p200));
    agent_spool_path(sp, 3, 300, p300, sizeof(p300));
    /* crash states: a temp file being written, a renamed file whose record
     * never committed, a record whose file is gone, a damaged file */
    agent_spool_tmp_path(sp, 3, 400, tmp, sizeof(tmp));
    CHECK_EQ(c2d_write_file_atomic(tmp, "partial", 7, 0640), 0);
    agent_spool_path(sp, 3, 500, orphan, sizeof(orphan));
    CHECK_EQ(c2d_write_file_atomic(orphan, "orphan", 6, 0640), 0);
    agent_spool_free(sp);
    CHECK_EQ(unlink(p200), 0);
    CHECK_EQ(truncate(p300, 10), 0);

    CHECK_EQ(agent_spool_open(dir, 1 << 20, &sp), 0);
    CHECK(!exists(tmp));
    CHECK(!exists(orphan));
    CHECK(exists(p100));
    CHECK(!exists(p300));
    agent_segment s;
    CHECK_EQ(agent_spool_next(sp, 3, INT64_MIN, &s), 0);
    CHECK_EQ(s.start_us, 100);
    CHECK_EQ(agent_spool_next(sp, 3, 100, &s), -ENOENT);
    agent_spool_stats st;
    agent_spool_get_stats(sp, &st);
    CHECK_EQ(st.queued_segments, 2);
    CHECK_EQ(st.queued_bytes, 50 + 80);
    CHECK_EQ(st.lost_segments, 2);
    CHECK_EQ(st.dropped_segments, 0);
    agent_spool_free(sp);
}

static void test_checkpoint(void)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/ckpt", root);
    agent_spool *sp;
    CHECK_EQ(agent_spool_open(dir, 1 << 20, &sp), 0);
    char buf[AGENT_CHECKPOINT_MAX];
    size_t len = sizeof(buf);
    CHECK_EQ(agent_spool_get_checkpoint(sp, 7, buf, &len), -ENOENT);
    CHECK_EQ(agent_spool_set_checkpoint(sp, 7, "hello", 5), 0);
    len = sizeof(buf);
    CHECK_EQ(agent_spool_get_checkpoint(sp, 7, buf, &len), 0);
    CHECK_EQ(len, 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    len = 3;
    CHECK_EQ(agent_spool_get_checkpoint(sp, 7, buf, &len), -ENOBUFS);
    char big[AGENT_CHECKPOINT_MAX + 1];
    memset(big, 'x', sizeof(big));
    CHECK_EQ(agent_spool_set_checkpoint(sp, 7, big, sizeof(big)), -EINVAL);

    /* stored with the segment; NULL leaves it as it is */
    CHECK_EQ(put(sp, 7, 1, 10, "file-a:42", NULL), 0);
    len = sizeof(buf);
    CHECK_EQ(agent_spool_get_checkpoint(sp, 7, buf, &len), 0);
    CHECK_EQ(len, 9);
    CHECK(memcmp(buf, "file-a:42", 9) == 0);
    CHECK_EQ(put(sp, 7, 2, 10, NULL, NULL), 0);
    len = sizeof(buf);
    CHECK_EQ(agent_spool_get_checkpoint(sp, 7, buf, &len), 0);
    CHECK(len == 9 && memcmp(buf, "file-a:42", 9) == 0);
    /* other channels are separate */
    len = sizeof(buf);
    CHECK_EQ(agent_spool_get_checkpoint(sp, 8, buf, &len), -ENOENT);
    agent_spool_free(sp);

    CHECK_EQ(agent_spool_open(dir, 1 << 20, &sp), 0);
    len = sizeof(buf);
    CHECK_EQ(agent_spool_get_checkpoint(sp, 7, buf, &len), 0);
    CHECK(len == 9 && memcmp(buf, "file-a:42", 9) == 0);
    agent_spool_free(sp);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *committer(void *arg)
{
    usleep(100 * 1000);
    put(arg, 9, 1, 10, NULL, NULL);
    return NULL;
}

static void test_wait(void)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/wait", root);
    agent_spool *sp;
    CHECK_EQ(agent_spool_open(dir, 1 << 20, &sp), 0);
    int64_t t0 = mono_ms();
    agent_spool_wait(sp, 150);
    CHECK(mono_ms() - t0 >= 140);
    pthread_t th;
    pthread_create(&th, NULL, committer, sp);
    t0 = mono_ms();
    agent_spool_wait(sp, 5000);
    CHECK(mono_ms() - t0 < 3000);
    pthread_join(th, NULL);
    /* a commit that happened between two waits is not missed */
    CHECK_EQ(put(sp, 9, 2, 10, NULL, NULL), 0);
    t0 = mono_ms();
    agent_spool_wait(sp, 5000);
    CHECK(mono_ms() - t0 < 1000);
    agent_spool_free(sp);
}

int main(void)
{
    snprintf(root, sizeof(root), "/tmp/c2d-test-spool-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_order();
    test_evict();
    test_pin();
    test_recovery();
    test_checkpoint();
    test_wait();
    if (failures == 0) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", root);
    }
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
