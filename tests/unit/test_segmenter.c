/* agent/segmenter.c + agent/channel.c end to end: clips made with the
 * ffmpeg CLI go through a channel into a temp spool; the segments are read
 * back with libavformat and compared packet by packet with the source. */
#include "check.h"
#include "agent/channel.h"
#include "agent/segmenter.h"
#include "agent/spool.h"

#include "common/c2d_hash.h"
#include "common/c2d_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libavformat/avformat.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/* ---- packet lists ------------------------------------------------------- */

typedef struct {
    int type; /* 0 video, 1 audio */
    int key;
    int64_t pts, dts; /* 90 kHz */
    int size;
    uint64_t hash; /* FNV-1a of the data */
} pinfo;

typedef struct {
    pinfo *v;
    size_t n, cap;
} plist;

static uint64_t fnv(const uint8_t *p, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Appends the packets of the first video and first audio stream of path. */
static int read_packets(const char *path, plist *out)
{
    AVFormatContext *ic = NULL;
    if (avformat_open_input(&ic, path, NULL, NULL) < 0)
        return -1;
    if (avformat_find_stream_info(ic, NULL) < 0) {
        avformat_close_input(&ic);
        return -1;
    }
    int idx[2] = {-1, -1};
    for (unsigned i = 0; i < ic->nb_streams; i++) {
        enum AVMediaType t = ic->streams[i]->codecpar->codec_type;
        if (t == AVMEDIA_TYPE_VIDEO && idx[0] < 0)
            idx[0] = (int)i;
        else if (t == AVMEDIA_TYPE_AUDIO && idx[1] < 0)
            idx[1] = (int)i;
    }
    AVPacket *pkt = av_packet_alloc();
    while (av_read_frame(ic, pkt) >= 0) {
        int type = pkt->stream_index == idx[0] ? 0 : pkt->stream_index == idx[1] ? 1 : -1;
        if (type >= 0) {
            if (out->n == out->cap) {
                out->cap = out->cap ? out->cap * 2 : 256;
                out->v = realloc(out->v, out->cap * sizeof(*out->v));
            }
            AVRational tb = ic->streams[pkt->stream_index]->time_base;
            pinfo *p = &out->v[out->n++];
            p->type = type;
            p->key = (pkt->flags & AV_PKT_FLAG_KEY) != 0;
            p->pts = av_rescale_q(pkt->pts, tb, (AVRational){1, 90000});
            p->dts = av_rescale_q(pkt->dts, tb, (AVRational){1, 90000});
            p->size = pkt->size;
            p->hash = fnv(pkt->data, pkt->size);
        }
        av_packet_unref(pkt);
    }
    av_packet_free(&pkt);
    avformat_close_input(&ic);
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

/* A clip of seconds s: testsrc + sine, keyframe every second. */
static int make_clip(const char *path, int s, const char *vcodec, const char *acodec,
                     const char *fmt)
{
    return sh("ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc=size=320x240:rate=25 "
              "-f lavfi -i sine=frequency=440:sample_rate=8000 -t %d -c:v %s -preset ultrafast "
              "-g 25 -pix_fmt yuv420p -x265-params log-level=error -c:a %s -f %s '%s'",
              s, vcodec, acodec, fmt, path);
}

static const char *state_name(agent_channel *ch)
{
    agent_channel_status st;
    agent_channel_get_status(ch, &st);
    return agent_channel_state_name(st.state);
}

/* Polls until the channel reaches state or has at least segments. */
static int wait_for(agent_channel *ch, int state, uint64_t segments, int timeout_ms)
{
    int64_t end = c2d_mono_us() + (int64_t)timeout_ms * 1000;
    while (c2d_mono_us() < end) {
        agent_channel_status st;
        agent_channel_get_status(ch, &st);
        if ((state >= 0 && (int)st.state == state) || (segments && st.segments >= segments))
            return 0;
        usleep(20 * 1000);
    }
    return -1;
}

typedef struct {
    agent_segment v[64];
    size_t n;
} seglist;

static void list_segments(agent_spool *sp, uint16_t ch, seglist *out)
{
    out->n = 0;
    int64_t after = INT64_MIN;
    agent_segment s;
    while (out->n < 64 && agent_spool_next(sp, ch, after, &s) == 0) {
        out->v[out->n++] = s;
        after = s.start_us;
    }
}

/* Checks every segment's file (size, hash, readable) and collects their
 * packets in start order. */
static void check_segments(agent_spool *sp, uint16_t ch, const seglist *segs, plist *all)
{
    for (size_t i = 0; i < segs->n; i++) {
        char path[PATH_MAX], hex[65];
        CHECK_EQ(agent_spool_path(sp, ch, segs->v[i].start_us, path, sizeof(path)), 0);
        struct stat st;
        CHECK_EQ(stat(path, &st), 0);
        CHECK_EQ((uint64_t)st.st_size, segs->v[i].size);
        CHECK_EQ(c2d_sha256_file_hex(path, hex), 0);
        CHECK(strcmp(hex, segs->v[i].sha256) == 0);
        size_t before = all->n;
        CHECK_EQ(read_packets(path, all), 0);
        CHECK(all->n > before);
        if (all->n > before) /* every segment opens with a keyframe (or audio) */
            CHECK(all->v[before].type == 1 || all->v[before].key);
        if (i + 1 < segs->n) /* contiguous start times */
            CHECK(llabs(segs->v[i].start_us + segs->v[i].duration_us - segs->v[i + 1].start_us) <=
                  1);
    }
}

/* Per stream: the same packets (exact, or timestamps within tol ticks
 * and data ignored). */
static void compare(const plist *src, const plist *got, int exact_data, int tol)
{
    CHECK_EQ(got->n, src->n);
    size_t n = got->n < src->n ? got->n : src->n;
    /* compare stream by stream: interleaving across streams may differ */
    for (int type = 0; type < 2; type++) {
        size_t i = 0, j = 0, bad = 0;
        for (;;) {
            while (i < src->n && src->v[i].type != type)
                i++;
            while (j < got->n && got->v[j].type != type)
                j++;
            if (i >= src->n || j >= got->n)
                break;
            const pinfo *a = &src->v[i], *b = &got->v[j];
            if (llabs(a->pts - b->pts) > tol || llabs(a->dts - b->dts) > tol ||
                (exact_data && (a->size != b->size || a->hash != b->hash))) {
                if (bad++ < 3)
                    fprintf(stderr, "type %d packet %zu: pts %lld/%lld dts %lld/%lld size %d/%d\n",
                            type, i, (long long)a->pts, (long long)b->pts, (long long)a->dts,
                            (long long)b->dts, a->size, b->size);
            }
            i++;
            j++;
        }
        CHECK_EQ(bad, 0);
    }
    (void)n;
}

static void strictly_increasing(const plist *l)
{
    int64_t last[2] = {INT64_MIN, INT64_MIN};
    size_t bad = 0;
    for (size_t i = 0; i < l->n; i++) {
        const pinfo *p = &l->v[i];
        if (p->dts <= last[p->type] && bad++ < 3)
            fprintf(stderr, "packet %zu type %d: dts %lld after %lld\n", i, p->type,
                    (long long)p->dts, (long long)last[p->type]);
        last[p->type] = p->dts;
    }
    CHECK_EQ(bad, 0);
}

static agent_channel *start(agent_spool *sp, uint16_t id, const char *source, int realtime,
                            int loop)
{
    agent_channel_cfg cfg = {.id = id,
                             .name = "test",
                             .source = source,
                             .realtime = realtime,
                             .loop = loop,
                             .segment_us = 5000000};
    agent_channel *ch = NULL;
    CHECK_EQ(agent_channel_start(&cfg, sp, &ch), 0);
    return ch;
}

static int dir_empty(const char *path)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", path);
    return system(cmd) == 0;
}

/* ---- tests --------------------------------------------------------------- */

static char clip22[512];
static seglist ref; /* segments of the uninterrupted run */

static void test_file(void)
{
    char state[512];
    snprintf(state, sizeof(state), "%s/s1", root);
    agent_spool *sp;
    CHECK_EQ(agent_spool_open(state, 1 << 30, &sp), 0);
    agent_channel *ch = start(sp, 1, clip22, 0, 0);
    CHECK_EQ(wait_for(ch, AGENT_CH_FINISHED, 0, 15000), 0);
    agent_channel_status st;
    agent_channel_get_status(ch, &st);
    CHECK_EQ(st.segments, 5);
    CHECK_EQ(st.retries, 0);
    agent_channel_stop(ch);

    seglist segs;
    list_segments(sp, 1, &segs);
    CHECK_EQ(segs.n, 5);
    for (size_t i = 0; i + 1 < segs.n; i++) /* cut at the first keyframe after 5 s */
        CHECK(segs.v[i].duration_us >= 5000000 && segs.v[i].duration_us <= 5100000);
    if (segs.n == 5)
        CHECK(segs.v[4].duration_us > 1500000 && segs.v[4].duration_us <= 2100000);
    int64_t now = c2d_now_us();
    CHECK(segs.n > 0 && llabs(segs.v[0].start_us - now) < 60 * INT64_C(1000000));

    plist src = {0}, got = {0};
    CHECK_EQ(read_packets(clip22, &src), 0);
    check_segments(sp, 1, &segs, &got);
    compare(&src, &got, 1, 0);
    ref = segs;
    free(src.v);
    free(got.v);

    /* finished: a restart does not read the file again */
    ch = start(sp, 1, clip22, 0, 0);
    CHECK_EQ(wait_for(ch, AGENT_CH_FINISHED, 0, 5000), 0);
    agent_channel_get_status(ch, &st);
    CHECK_EQ(st.segments, 0);
    agent_channel_stop(ch);
    list_segments(sp, 1, &segs);
    CHECK_EQ(segs.n, 5);
    agent_spool_free(sp);
}

static void test_restart(void)
{
    char state[512], tmpdir[600];
    snprintf(state, sizeof(state), "%s/s2", root);
    snprintf(tmpdir, sizeof(tmpdir), "%s/spool/tmp", state);
    agent_spool *sp;
    CHECK_EQ(agent_spool_open(state, 1 << 30, &sp), 0);
    /* realtime: stop 1.5 s into the second segment */
    agent_channel *ch = start(sp, 2, clip22, 1, 0);
    CHECK_EQ(wait_for(ch, -1, 1, 10000), 0);
    usleep(1500 * 1000);
    CHECK(strcmp(state_name(ch), "recording") == 0);
    int64_t t0 = c2d_mono_us();
    agent_channel_stop(ch);
    CHECK(c2d_mono_us() - t0 < 1000000);
    CHECK(dir_empty(tmpdir)); /* the unfinished segment is gone */
    seglist segs;
    list_segments(sp, 2, &segs);
    CHECK_EQ(segs.n, 1);

    /* a power cut: reopen the spool as well */
    agent_spool_free(sp);
    CHECK_EQ(agent_spool_open(state, 1 << 30, &sp), 0);
    ch = start(sp, 2, clip22, 0, 0);
    CHECK_EQ(wait_for(ch, AGENT_CH_FINISHED, 0, 15000), 0);
    agent_channel_stop(ch);
    list_segments(sp, 2, &segs);
    CHECK_EQ(segs.n, 5);

    plist src = {0}, got = {0};
    CHECK_EQ(read_packets(clip22, &src), 0);
    check_segments(sp, 2, &segs, &got);
    compare(&src, &got, 1, 0);
    /* the very same segments as without the interruption */
    for (size_t i = 0; i < segs.n && i < ref.n; i++) {
        CHECK(strcmp(segs.v[i].sha256, ref.v[i].sha256) == 0);
        CHECK_EQ(segs.v[i].start_us - segs.v[0].start_us, ref.v[i].start_us - ref.v[0].start_us);
        CHECK_EQ(segs.v[i].duration_us, ref.v[i].duration_us);
    }
    free(src.v);
    free(got.v);
    agent_spool_free(sp);
}

static void test_directory(const char *clip6)
{
    char state[512], dir[512];
    snprintf(state, sizeof(state), "%s/s3", root);
    snprintf(dir, sizeof(dir), "%s/dir", root);
    CHECK_EQ(sh("mkdir -p '%s' && cp '%s' '%s/b.ts' && cp '%s' '%s/a.ts' && touch '%s/.hidden'",
                dir, clip6, dir, clip6, dir, dir),
             0);
    agent_spool *sp;
    CHECK_EQ(agent_spool_open(state, 1 << 30, &sp), 0);
    agent_channel *ch = start(sp, 3, dir, 0, 0);
    CHECK_EQ(wait_for(ch, AGENT_CH_FINISHED, 0, 15000), 0);
    agent_channel_stop(ch);
    seglist segs;
    list_segments(sp, 3, &segs);
    CHECK_EQ(segs.n, 3); /* 12 s: 5 + 5 + 2 */

    plist src = {0}, got = {0};
    CHECK_EQ(read_packets(clip6, &src), 0);
    size_t n1 = src.n;
    CHECK_EQ(read_packets(clip6, &src), 0);
    check_segments(sp, 3, &segs, &got);
    CHECK_EQ(got.n, src.n);
    strictly_increasing(&got);
    /* the second file: same data, timestamps shifted by one offset */
    if (got.n == src.n && n1 > 0) {
        size_t bad = 0;
        for (int type = 0; type < 2; type++) {
            int64_t off = INT64_MIN;
            for (size_t i = 0, j = 0;; i++, j++) {
                while (i < src.n && src.v[i].type != type)
                    i++;
                while (j < got.n && got.v[j].type != type)
                    j++;
                if (i >= src.n || j >= got.n)
                    break;
                if (i >= n1 && off == INT64_MIN)
                    off = got.v[j].dts - src.v[i].dts;
                int64_t o = i < n1 ? 0 : off;
                if (got.v[j].pts != src.v[i].pts + o || got.v[j].hash != src.v[i].hash)
                    bad++;
            }
            CHECK(off > 0);
        }
        CHECK_EQ(bad, 0);
    }
    free(src.v);
    free(got.v);
    agent_spool_free(sp);
}

static void test_loop(const char *clip6)
{
    char state[512];
    snprintf(state, sizeof(state), "%s/s4", root);
    agent_spool *sp;
    CHECK_EQ(agent_spool_open(state, 1 << 30, &sp), 0);
    agent_channel *ch = start(sp, 4, clip6, 0, 1);
    CHECK_EQ(wait_for(ch, -1, 6, 15000), 0);
    agent_channel_stop(ch);
    seglist segs;
    list_segments(sp, 4, &segs);
    CHECK(segs.n >= 6);
    plist got = {0};
    check_segments(sp, 4, &segs, &got);
    strictly_increasing(&got);
    for (size_t i = 0; i + 1 < segs.n; i++) /* keyframes every second, not aligned at loops */
        CHECK(segs.v[i].duration_us >= 5000000 && segs.v[i].duration_us <= 6100000);
    free(got.v);
    agent_spool_free(sp);
}

/* A source that restarts its clock (two recordings glued together): the
 * segment is cut and the timeline goes on increasing. */
static void test_jump(const char *clip6)
{
    char state[512], jump[512];
    snprintf(state, sizeof(state), "%s/s7", root);
    snprintf(jump, sizeof(jump), "%s/jump.ts", root);
    CHECK_EQ(sh("cat '%s' '%s' > '%s'", clip6, clip6, jump), 0);
    agent_spool *sp;
    CHECK_EQ(agent_spool_open(state, 1 << 30, &sp), 0);
    agent_channel *ch = start(sp, 7, jump, 0, 0);
    CHECK_EQ(wait_for(ch, AGENT_CH_FINISHED, 0, 15000), 0);
    agent_channel_stop(ch);
    seglist segs;
    list_segments(sp, 7, &segs);
    CHECK_EQ(segs.n, 4); /* 5 + 1, cut at the jump, 5 + 1 */
    plist src = {0}, got = {0};
    CHECK_EQ(read_packets(clip6, &src), 0);
    check_segments(sp, 7, &segs, &got);
    strictly_increasing(&got);
    /* at most an audio frame that lands before its predecessor is dropped */
    CHECK(got.n <= 2 * src.n && got.n + 2 >= 2 * src.n);
    free(src.v);
    free(got.v);
    agent_spool_free(sp);
}

/* MP4 sources: length-prefixed H.264/HEVC become Annex-B in the TS. */
static void test_mp4(const char *name, const char *vcodec)
{
    char clip[512], state[512];
    snprintf(clip, sizeof(clip), "%s/%s.mp4", root, name);
    snprintf(state, sizeof(state), "%s/s-%s", root, name);
    if (make_clip(clip, 7, vcodec, "aac", "mp4") != 0) {
        failures++;
        return;
    }
    agent_spool *sp;
    CHECK_EQ(agent_spool_open(state, 1 << 30, &sp), 0);
    agent_channel *ch = start(sp, 5, clip, 0, 0);
    CHECK_EQ(wait_for(ch, AGENT_CH_FINISHED, 0, 15000), 0);
    agent_channel_stop(ch);
    seglist segs;
    list_segments(sp, 5, &segs);
    CHECK_EQ(segs.n, 2);
    plist src = {0}, got = {0};
    CHECK_EQ(read_packets(clip, &src), 0);
    check_segments(sp, 5, &segs, &got);
    compare(&src, &got, 0, 1);
    free(src.v);
    free(got.v);
    agent_spool_free(sp);
}

/* A camera that accepts the connection and never answers, and one that
 * refuses: the channel retries, and stops promptly either way. */
static void test_live_stop(void)
{
    char state[512], url[128];
    snprintf(state, sizeof(state), "%s/s6", root);
    agent_spool *sp;
    CHECK_EQ(agent_spool_open(state, 1 << 30, &sp), 0);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    CHECK_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    CHECK_EQ(listen(fd, 4), 0);
    CHECK_EQ(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    snprintf(url, sizeof(url), "rtsp://127.0.0.1:%u/cam", (unsigned)ntohs(a.sin_port));
    agent_channel *ch = start(sp, 6, url, 0, 0);
    usleep(700 * 1000);
    CHECK(strcmp(state_name(ch), "starting") == 0);
    int64_t t0 = c2d_mono_us();
    agent_channel_stop(ch);
    CHECK(c2d_mono_us() - t0 < 500000);

    close(fd); /* now the port refuses */
    ch = start(sp, 6, url, 0, 0);
    CHECK_EQ(wait_for(ch, AGENT_CH_RETRYING, 0, 5000), 0);
    agent_channel_status st;
    agent_channel_get_status(ch, &st);
    CHECK(st.retries >= 1);
    CHECK(st.error[0] != '\0');
    t0 = c2d_mono_us();
    agent_channel_stop(ch);
    CHECK(c2d_mono_us() - t0 < 500000);
    agent_spool_free(sp);
}

int main(void)
{
    snprintf(root, sizeof(root), "/tmp/c2d-test-seg-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    char clip6[512];
    snprintf(clip22, sizeof(clip22), "%s/clip22.ts", root);
    snprintf(clip6, sizeof(clip6), "%s/clip6.ts", root);
    if (make_clip(clip22, 22, "libx264", "aac", "mpegts") != 0 ||
        make_clip(clip6, 6, "libx264", "aac", "mpegts") != 0) {
        fprintf(stderr, "cannot make test clips with ffmpeg\n");
        return 1;
    }
    test_file();
    test_restart();
    test_directory(clip6);
    test_loop(clip6);
    test_jump(clip6);
    test_mp4("h264", "libx264");
    test_mp4("hevc", "libx265");
    test_live_stop();
    if (failures == 0) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", root);
    }
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
