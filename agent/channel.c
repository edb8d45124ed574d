/* One camera channel: source (libavformat) -> segmenter -> spool.
 *
 * Timeline. Every packet gets an output timestamp in 90 kHz:
 *   out = rescale(source ts, stream time base -> 1/90000) + offset
 * where offset is 0 for the first file of a source (a TS source is copied
 * bit for bit) and, for each later file of a directory or each loop of a
 * file, the value that makes its first packets follow the end of what came
 * before (so timestamps keep increasing). A backward DTS jump of more than
 * TS_JUMP_90K (the source restarted) cuts the segment and re-bases the same
 * way. A segment's start time in the wall clock is
 *   origin_us + (first out pts of the segment - base_90k) in microseconds
 * where origin_us is the wall clock when the first segment was opened and
 * base_90k that segment's first pts; for file sources both are kept in the
 * checkpoint so the same video always gets the same start times.
 *
 * Checkpoint (file and directory sources, stored with every committed
 * segment): the file, how many packets of it were consumed (the packet that
 * opens the next segment is not), that file's offset, and the timeline state
 * needed to continue (see ckpt_encode for the byte layout). A restart opens
 * the file, reads and throws away that many packets (demux only) and goes on
 * as if it had never stopped. Live sources keep no position. */
#include "agent/channel.h"

#include "agent/segmenter.h"
#include "common/c2d_hash.h"
#include "common/c2d_log.h"
#include "common/c2d_time.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/mathematics.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The thread only demuxes and muxes (plus avformat_find_stream_info, which
 * may decode a frame with libavcodec); 512 KiB leaves room for that. It is
 * address space: only the pages used count in RSS. */
#define CH_STACK_BYTES (512u << 10)

#define BACKOFF_MIN_US INT64_C(1000000)
#define BACKOFF_MAX_US INT64_C(60000000)

/* Live sources: socket I/O timeout handed to libavformat, plus our own
 * deadlines on opening and on each read for protocols that ignore it. */
#define LIVE_SOCKET_TIMEOUT_US "5000000"
#define LIVE_OPEN_TIMEOUT_US INT64_C(20000000)
#define LIVE_READ_TIMEOUT_US INT64_C(10000000)

/* avformat_find_stream_info buffers what it probes, and with no video
 * decoder (see open_input) it reads to one of these limits: small, so 16
 * channels stay within the agent's memory budget. 1 s shows every stream of
 * a camera; 512 KiB is 1 s of a 4 Mbit/s stream. */
#define PROBE_BYTES (512 << 10)
#define ANALYZE_US AV_TIME_BASE
/* Decoders avformat_find_stream_info may open: audio only (see open_input). */
#define PROBE_DECODERS "aac,aac_fixed,aac_latm,pcm_mulaw,pcm_alaw,mp2,mp3,ac3,opus"

/* The MPEG-TS demuxer collects each PES packet in a buffer of its
 * max_packet_size (200 KiB by default; video PES packets carry no length,
 * so every one gets the maximum) and keeps two per stream in a pool, filled
 * up to the largest frame seen: ~400 KiB per channel of a 1080p camera.
 * Smaller pieces are joined into the same frames again by the parser
 * libavformat puts behind every audio and video stream of a TS (H.264,
 * H.265, AAC, ...), so the packets we get, and the segments, stay the same
 * (open_input checks that each stream has one). 32 KiB: 64 KB per channel
 * instead of 400; measured, the extra pieces cost no CPU, and 16-64 KiB
 * differ by less than the run-to-run noise. */
#define TS_MAX_PACKET_BYTES "32768"

/* Output time base and the size of a backward DTS jump that means the
 * source restarted its clock (jitter is milliseconds, restarts are big). */
#define TB_HZ AGENT_SEG_TB_HZ
#define TS_JUMP_90K (2 * TB_HZ)

/* Packets read ahead at the start of a new file to find each stream's first
 * timestamp (bounded: a few frames of video and audio). */
#define READAHEAD_MAX 64

/* Realtime pacing: when more than this late, restart the pacing clock
 * instead of rushing to catch up. */
#define PACE_RESYNC_US INT64_C(1000000)

#define DEFAULT_SEGMENT_US INT64_C(10000000)

#define CKPT_MAGIC "C2CK"
#define CKPT_VERSION 1
#define CKPT_HEADER 136
#define CKPT_NAME_MAX 255

enum { RUN_OK = 0, RUN_STOP = 1, RUN_FINISHED = 2, RUN_ERROR = -1 };

/* Position and timeline state; what a checkpoint holds. */
typedef struct {
    int finished;
    int have_origin;
    int offset_known; /* offset_90k is set for file */
    int64_t origin_us;
    int64_t base_90k;
    int64_t offset_90k;
    uint64_t consumed;            /* packets of file consumed */
    int64_t end_90k;              /* max out dts + duration consumed, INT64_MIN if none */
    int64_t last_start_us;        /* start of the last committed segment, INT64_MIN if none */
    int64_t last_dts[2];          /* per output stream, INT64_MIN if none */
    char file[CKPT_NAME_MAX + 1]; /* directory entry being read ("" for a file source) */
} ch_pos;

struct agent_channel {
    uint16_t id;
    char *name;
    char *source;
    int realtime;
    int loop;
    int64_t segment_us;
    double speed; /* realtime pacing factor, > 0 */
    agent_seg_observer observer;
    void *observer_ud;
    agent_spool *spool;
    int live;
    const char *path; /* source as a file system path (without "file:") */
    char source_sha[65];

    pthread_t thread;
    pthread_mutex_t lock; /* status, and the stop sleep */
    pthread_cond_t cond;
    atomic_int stop;
    int64_t deadline_us; /* live read deadline; channel thread only */

    agent_channel_status status;
    ch_pos cp;               /* as of the last commit */
    int64_t live_last_start; /* live: start of the last committed segment */
    char err[160];           /* error of the current run */
};

typedef struct {
    agent_channel *ch;
    ch_pos w; /* working position */
    AVFormatContext *ic;
    int in_idx[2]; /* input stream of AGENT_SEG_VIDEO/AUDIO, -1 if none */
    AVPacket *pkt;
    AVPacket *ra[READAHEAD_MAX];
    int ra_head, ra_n, ra_eof;

    agent_segmenter *seg;
    AVCodecParameters *seg_par[2];
    int seg_video_started;
    int64_t seg_start_90k, seg_end_90k, seg_start_us;
    char seg_tmp[PATH_MAX];
    int force_cut;

    int pace_set;
    int64_t pace_mono0, pace_ts0;
    uint64_t bad_ts, no_key, jumps; /* reported at the next commit */
    uint64_t committed;
    uint64_t packets; /* processed since the last loop wrap */
    int recording;
} ch_run;

/* ---- small helpers ------------------------------------------------------- */

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static int is_stopping(agent_channel *ch)
{
    return atomic_load(&ch->stop) != 0;
}

static int run_fail(ch_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int run_fail(ch_run *r, const char *fmt, ...)
{
    if (is_stopping(r->ch))
        return RUN_STOP;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->ch->err, sizeof(r->ch->err), fmt, ap);
    va_end(ap);
    return RUN_ERROR;
}

static int run_fail_av(ch_run *r, const char *what, int averr)
{
    char msg[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(averr, msg, sizeof(msg));
    return run_fail(r, "%s: %s", what, msg);
}

static void set_state(agent_channel *ch, agent_channel_state st, const char *err)
{
    pthread_mutex_lock(&ch->lock);
    agent_channel_state old = ch->status.state;
    ch->status.state = st;
    if (err)
        snprintf(ch->status.error, sizeof(ch->status.error), "%s", err);
    else if (st == AGENT_CH_RECORDING)
        ch->status.error[0] = '\0';
    pthread_mutex_unlock(&ch->lock);
    if (old == st)
        return;
    if (st == AGENT_CH_RECORDING)
        c2d_info("channel %u (%s): recording", (unsigned)ch->id, ch->name);
    else if (st == AGENT_CH_FINISHED)
        c2d_info("channel %u (%s): source finished", (unsigned)ch->id, ch->name);
}

/* Sleeps up to us microseconds; returns 1 if the channel is stopping. */
static int sleep_or_stop(agent_channel *ch, int64_t us)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (us % 1000000) * 1000;
    ts.tv_sec += (time_t)(us / 1000000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&ch->lock);
    while (!is_stopping(ch)) {
        if (pthread_cond_timedwait(&ch->cond, &ch->lock, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&ch->lock);
    return is_stopping(ch);
}

/* libavformat calls this while blocked in I/O: stop promptly, and give up
 * on a live source that went silent. */
static int interrupt_cb(void *opaque)
{
    agent_channel *ch = opaque;
    if (is_stopping(ch))
        return 1;
    return ch->deadline_us != 0 && c2d_mono_us() > ch->deadline_us;
}

static int64_t to_us(int64_t ticks)
{
    return av_rescale(ticks, 1000000, TB_HZ);
}

/* Gives the heap's free pages back to the system. The channels' large
 * buffers (probed packets, the decoder context avformat_find_stream_info
 * opens and closes, frames, segment buffers) come and go in the heap
 * (MALLOC_MMAP_THRESHOLD in main.c), interleaved with live allocations, so
 * glibc's own trimming, which only shrinks the top of the heap, keeps most of
 * them resident. Called after each probe and each segment (seconds apart);
 * a no-op without glibc. */
static void release_free_memory(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* ---- checkpoint ---------------------------------------------------------- */

static void pos_init(ch_pos *p)
{
    memset(p, 0, sizeof(*p));
    p->end_90k = INT64_MIN;
    p->last_start_us = INT64_MIN;
    p->last_dts[0] = p->last_dts[1] = INT64_MIN;
}

/* Layout (big-endian), version 1:
 *   0   4  "C2CK"            5  1  flags: 1 finished, 2 have_origin, 4 offset_known
 *   4   1  version           6  2  length n of the file name
 *   8  64  SHA-256 hex of the source string (a changed source starts over)
 *  72   8  origin_us        80  8  base_90k        88  8  offset_90k
 *  96   8  consumed        104  8  end_90k        112  8  last_start_us
 * 120   8  last_dts video  128  8  last_dts audio  136  n  file name */
static size_t ckpt_encode(const ch_pos *p, const char *source_sha, uint8_t *buf)
{
    size_t n = strlen(p->file);
    memcpy(buf, CKPT_MAGIC, 4);
    buf[4] = CKPT_VERSION;
    buf[5] =
        (uint8_t)((p->finished ? 1 : 0) | (p->have_origin ? 2 : 0) | (p->offset_known ? 4 : 0));
    buf[6] = (uint8_t)(n >> 8);
    buf[7] = (uint8_t)n;
    memcpy(buf + 8, source_sha, 64);
    put_be64(buf + 72, (uint64_t)p->origin_us);
    put_be64(buf + 80, (uint64_t)p->base_90k);
    put_be64(buf + 88, (uint64_t)p->offset_90k);
    put_be64(buf + 96, p->consumed);
    put_be64(buf + 104, (uint64_t)p->end_90k);
    put_be64(buf + 112, (uint64_t)p->last_start_us);
    put_be64(buf + 120, (uint64_t)p->last_dts[0]);
    put_be64(buf + 128, (uint64_t)p->last_dts[1]);
    memcpy(buf + CKPT_HEADER, p->file, n);
    return CKPT_HEADER + n;
}

/* 0, -EINVAL if malformed, -ESTALE if it belongs to another source. */
static int ckpt_decode(const uint8_t *buf, size_t len, const char *source_sha, ch_pos *out)
{
    if (len < CKPT_HEADER || memcmp(buf, CKPT_MAGIC, 4) != 0 || buf[4] != CKPT_VERSION)
        return -EINVAL;
    size_t n = ((size_t)buf[6] << 8) | buf[7];
    if (n > CKPT_NAME_MAX || len != CKPT_HEADER + n || memchr(buf + CKPT_HEADER, '\0', n) ||
        memchr(buf + CKPT_HEADER, '/', n))
        return -EINVAL;
    if (memcmp(buf + 8, source_sha, 64) != 0)
        return -ESTALE;
    ch_pos p;
    pos_init(&p);
    p.finished = (buf[5] & 1) != 0;
    p.have_origin = (buf[5] & 2) != 0;
    p.offset_known = (buf[5] & 4) != 0;
    p.origin_us = (int64_t)get_be64(buf + 72);
    p.base_90k = (int64_t)get_be64(buf + 80);
    p.offset_90k = (int64_t)get_be64(buf + 88);
    p.consumed = get_be64(buf + 96);
    p.end_90k = (int64_t)get_be64(buf + 104);
    p.last_start_us = (int64_t)get_be64(buf + 112);
    p.last_dts[0] = (int64_t)get_be64(buf + 120);
    p.last_dts[1] = (int64_t)get_be64(buf + 128);
    memcpy(p.file, buf + CKPT_HEADER, n);
    p.file[n] = '\0';
    *out = p;
    return 0;
}

static void load_checkpoint(agent_channel *ch)
{
    pos_init(&ch->cp);
    if (ch->live)
        return;
    uint8_t buf[AGENT_CHECKPOINT_MAX];
    size_t len = sizeof(buf);
    int rc = agent_spool_get_checkpoint(ch->spool, ch->id, buf, &len);
    if (rc == -ENOENT)
        return;
    if (rc == 0)
        rc = ckpt_decode(buf, len, ch->source_sha, &ch->cp);
    if (rc == -ESTALE)
        c2d_info("channel %u (%s): source changed, reading it from the start", (unsigned)ch->id,
                 ch->name);
    else if (rc != 0)
        c2d_warn("channel %u (%s): unreadable checkpoint (%s), reading the source from the start",
                 (unsigned)ch->id, ch->name, strerror(-rc));
    if (rc != 0)
        pos_init(&ch->cp);
}

/* ---- directory sources --------------------------------------------------- */

/* The smallest visible regular file name in dir greater than after (the
 * smallest of all if after is NULL). 0, -ENOENT if none, or -errno. */
static int dir_next(const char *dir, const char *after, char out[CKPT_NAME_MAX + 1])
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        if (nm[0] == '.' || strlen(nm) > CKPT_NAME_MAX)
            continue;
        if (after && strcmp(nm, after) <= 0)
            continue;
        if (found && strcmp(nm, out) >= 0)
            continue;
        if (e->d_type != DT_REG) {
            struct stat st;
            if (e->d_type != DT_UNKNOWN && e->d_type != DT_LNK)
                continue;
            if (fstatat(dirfd(d), nm, &st, 0) != 0 || !S_ISREG(st.st_mode))
                continue;
        }
        strcpy(out, nm);
        found = 1;
    }
    closedir(d);
    return found ? 0 : -ENOENT;
}

static int is_regular(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat st;
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
    return n > 0 && (size_t)n < sizeof(path) && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- input --------------------------------------------------------------- */

static void ra_clear(ch_run *r)
{
    while (r->ra_n > 0) {
        av_packet_free(&r->ra[r->ra_head]);
        r->ra_head = (r->ra_head + 1) % READAHEAD_MAX;
        r->ra_n--;
    }
    r->ra_head = 0;
    r->ra_eof = 0;
}

static void close_input(ch_run *r)
{
    ra_clear(r);
    avformat_close_input(&r->ic);
    r->in_idx[0] = r->in_idx[1] = -1;
}

/* Whether libavformat passes every kept stream through a parser (see
 * TS_MAX_PACKET_BYTES): the MPEG-TS demuxer asks for full parsing of all its
 * streams, which happens when libavcodec has a parser for the codec.
 * Without one a split PES packet would come out as several packets. */
static int kept_streams_parsed(const ch_run *r)
{
    for (int i = 0; i < 2; i++) {
        if (r->in_idx[i] < 0)
            continue;
        AVCodecParserContext *pc = av_parser_init(r->ic->streams[r->in_idx[i]]->codecpar->codec_id);
        if (!pc)
            return 0;
        av_parser_close(pc);
    }
    return 1;
}

/* Opens url and probes it; small_pes: TS_MAX_PACKET_BYTES for MPEG-TS. */
static int open_input_once(ch_run *r, const char *url, int small_pes)
{
    agent_channel *ch = r->ch;
    AVFormatContext *ic = avformat_alloc_context();
    if (!ic)
        return run_fail(r, "out of memory");
    ic->interrupt_callback.callback = interrupt_cb;
    ic->interrupt_callback.opaque = ch;
    ic->probesize = PROBE_BYTES;
    ic->max_analyze_duration = ANALYZE_US;
    /* Remux only: keep avformat_find_stream_info from opening video
     * decoders and decoding a frame (a 1080p frame pool is ~10 MB per
     * channel); the muxer needs no pixel format or size. Audio decoders are
     * small and give AAC's sample rate, which its parser leaves unset. */
    ic->codec_whitelist = av_strdup(PROBE_DECODERS);
    if (!ic->codec_whitelist) {
        avformat_free_context(ic);
        return run_fail(r, "out of memory");
    }
    AVDictionary *opts = NULL;
    if (small_pes) /* an option of the MPEG-TS demuxer, ignored by others */
        av_dict_set(&opts, "max_packet_size", TS_MAX_PACKET_BYTES, 0);
    if (ch->live) {
        if (strncmp(url, "rtsp://", 7) == 0 || strncmp(url, "rtsps://", 8) == 0)
            av_dict_set(&opts, "rtsp_transport", "tcp", 0);
        av_dict_set(&opts, "timeout", LIVE_SOCKET_TIMEOUT_US, 0);
        ch->deadline_us = c2d_mono_us() + LIVE_OPEN_TIMEOUT_US;
    }
    int rc = avformat_open_input(&ic, url, NULL, &opts); /* frees ic on failure */
    av_dict_free(&opts);
    if (rc < 0) {
        ch->deadline_us = 0;
        return run_fail_av(r, "open", rc);
    }
    r->ic = ic;
    rc = avformat_find_stream_info(ic, NULL);
    ch->deadline_us = 0;
    if (rc < 0)
        return run_fail_av(r, "probe", rc);
    r->in_idx[0] = r->in_idx[1] = -1;
    for (unsigned i = 0; i < ic->nb_streams; i++) {
        AVStream *st = ic->streams[i];
        enum AVMediaType t = st->codecpar->codec_type;
        if (t == AVMEDIA_TYPE_VIDEO && r->in_idx[AGENT_SEG_VIDEO] < 0 &&
            !(st->disposition & AV_DISPOSITION_ATTACHED_PIC))
            r->in_idx[AGENT_SEG_VIDEO] = (int)i;
        else if (t == AVMEDIA_TYPE_AUDIO && r->in_idx[AGENT_SEG_AUDIO] < 0 &&
                 st->codecpar->sample_rate > 0) /* else the muxer refuses it */
            r->in_idx[AGENT_SEG_AUDIO] = (int)i;
        else
            st->discard = AVDISCARD_ALL; /* not demuxed further, never counted */
    }
    if (r->in_idx[0] < 0 && r->in_idx[1] < 0)
        return run_fail(r, "no video or audio stream");
    return RUN_OK;
}

static int open_input(ch_run *r, const char *url)
{
    int rc = open_input_once(r, url, 1);
    if (rc == RUN_OK && strcmp(r->ic->iformat->name, "mpegts") == 0 && !kept_streams_parsed(r)) {
        /* A codec without a parser: packets must stay whole PES packets. */
        close_input(r);
        rc = open_input_once(r, url, 0);
    }
    release_free_memory();
    return rc;
}

/* av_read_frame with the live deadline. 0, AVERROR_EOF or an error. */
static int read_frame(ch_run *r, AVPacket *pkt)
{
    for (;;) {
        if (r->ch->live)
            r->ch->deadline_us = c2d_mono_us() + LIVE_READ_TIMEOUT_US;
        int rc = av_read_frame(r->ic, pkt);
        r->ch->deadline_us = 0;
        if (rc != AVERROR(EAGAIN))
            return rc;
        if (sleep_or_stop(r->ch, 10000))
            return AVERROR_EXIT;
    }
}

/* The next packet into r->pkt: from the read-ahead queue, then the input. */
static int next_packet(ch_run *r)
{
    if (r->ra_n > 0) {
        AVPacket *p = r->ra[r->ra_head];
        av_packet_move_ref(r->pkt, p);
        av_packet_free(&r->ra[r->ra_head]);
        r->ra_head = (r->ra_head + 1) % READAHEAD_MAX;
        r->ra_n--;
        return 0;
    }
    if (r->ra_eof)
        return AVERROR_EOF;
    return read_frame(r, r->pkt);
}

static int out_stream(const ch_run *r, int stream_index)
{
    if (stream_index == r->in_idx[AGENT_SEG_VIDEO])
        return AGENT_SEG_VIDEO;
    if (stream_index == r->in_idx[AGENT_SEG_AUDIO])
        return AGENT_SEG_AUDIO;
    return -1;
}

/* For a file entered fresh (not resumed): reads ahead until every stream
 * showed its first timestamp and picks the offset that puts the file right
 * after what was consumed before, every stream strictly increasing. */
static int find_offset(ch_run *r)
{
    ch_pos *w = &r->w;
    w->offset_known = 1;
    w->offset_90k = 0;
    if (w->end_90k == INT64_MIN)
        return RUN_OK; /* the very first file: keep the source's timestamps */
    int64_t first[2] = {AV_NOPTS_VALUE, AV_NOPTS_VALUE};
    int need = (r->in_idx[0] >= 0) + (r->in_idx[1] >= 0);
    while (need > 0 && r->ra_n < READAHEAD_MAX) {
        AVPacket *p = av_packet_alloc();
        if (!p)
            return run_fail(r, "out of memory");
        int rc = read_frame(r, p);
        if (rc == AVERROR_EOF) {
            av_packet_free(&p);
            r->ra_eof = 1;
            break;
        }
        if (rc < 0) {
            av_packet_free(&p);
            return run_fail_av(r, "read", rc);
        }
        int idx = out_stream(r, p->stream_index);
        int64_t ts = p->dts != AV_NOPTS_VALUE ? p->dts : p->pts;
        if (idx >= 0 && first[idx] == AV_NOPTS_VALUE && ts != AV_NOPTS_VALUE) {
            first[idx] = av_rescale_q(ts, r->ic->streams[p->stream_index]->time_base,
                                      (AVRational){1, TB_HZ});
            need--;
        }
        r->ra[(r->ra_head + r->ra_n) % READAHEAD_MAX] = p;
        r->ra_n++;
    }
    int have = 0;
    int64_t off = 0;
    for (int i = 0; i < 2; i++) {
        if (first[i] == AV_NOPTS_VALUE)
            continue;
        int64_t o = w->end_90k - first[i];
        if (!have || o > off)
            off = o; /* the earliest stream starts at end_90k ... */
        have = 1;
    }
    for (int i = 0; i < 2; i++) {
        if (first[i] != AV_NOPTS_VALUE && w->last_dts[i] != INT64_MIN &&
            w->last_dts[i] + 1 - first[i] > off)
            off = w->last_dts[i] + 1 - first[i]; /* ... and none goes backwards */
    }
    w->offset_90k = off;
    return RUN_OK;
}

/* ---- segments ------------------------------------------------------------ */

static int layout_matches(const ch_run *r)
{
    for (int i = 0; i < 2; i++) {
        const AVCodecParameters *in =
            r->in_idx[i] >= 0 ? r->ic->streams[r->in_idx[i]]->codecpar : NULL;
        if (!agent_seg_params_equal(in, r->seg_par[i]))
            return 0;
    }
    return 1;
}

static void free_seg_pars(ch_run *r)
{
    avcodec_parameters_free(&r->seg_par[0]);
    avcodec_parameters_free(&r->seg_par[1]);
}

static int open_segment(ch_run *r, int64_t pts)
{
    agent_channel *ch = r->ch;
    ch_pos *w = &r->w;
    if (!w->have_origin) {
        w->origin_us = c2d_now_us();
        w->base_90k = pts;
        w->have_origin = 1;
    }
    int64_t start = w->origin_us + to_us(pts - w->base_90k);
    if (w->last_start_us != INT64_MIN && start <= w->last_start_us)
        start = w->last_start_us + 1; /* (channel, start) stays unique and ordered */
    int rc = agent_spool_tmp_path(ch->spool, ch->id, start, r->seg_tmp, sizeof(r->seg_tmp));
    if (rc != 0)
        return run_fail(r, "temp path: %s", strerror(-rc));
    free_seg_pars(r);
    for (int i = 0; i < 2; i++) {
        if (r->in_idx[i] < 0)
            continue;
        r->seg_par[i] = avcodec_parameters_alloc();
        if (!r->seg_par[i] ||
            avcodec_parameters_copy(r->seg_par[i], r->ic->streams[r->in_idx[i]]->codecpar) < 0)
            return run_fail(r, "out of memory");
    }
    agent_seg_layout lay = {r->seg_par[AGENT_SEG_VIDEO], r->seg_par[AGENT_SEG_AUDIO]};
    rc = agent_segmenter_open(&lay, r->seg_tmp, &r->seg);
    if (rc < 0)
        return run_fail_av(r, "segment", rc);
    r->seg_start_90k = pts;
    r->seg_end_90k = pts;
    r->seg_start_us = start;
    r->seg_video_started = 0;
    return RUN_OK;
}

/* One segment the spool evicted (of any channel) to make room for this
 * channel's new one: logged and reported one by one, so what the agent says
 * it dropped is exact (pinned segments in between were not dropped). */
static void on_evict(void *ud, const agent_segment *seg)
{
    agent_channel *ch = ud;
    c2d_info("segment evicted ch=%u start=%lld size=%llu: spool full, dropped unsent",
             (unsigned)seg->channel, (long long)seg->start_us, (unsigned long long)seg->size);
    agent_seg_notify(ch->observer, ch->observer_ud, AGENT_SEG_DROPPED, seg->channel, seg->start_us,
                     (int64_t)seg->size, "spool_full");
}

/* Finishes the open segment, ending at end_90k, and commits it with the
 * working position as checkpoint. */
static int close_segment(ch_run *r, int64_t end_90k)
{
    agent_channel *ch = r->ch;
    agent_segmenter *s = r->seg;
    r->seg = NULL;
    agent_seg_result res;
    int rc = agent_segmenter_finish(s, &res);
    if (rc < 0)
        return run_fail_av(r, "segment", rc);
    agent_segment seg = {0};
    seg.channel = ch->id;
    seg.start_us = r->seg_start_us;
    seg.duration_us = end_90k > r->seg_start_90k ? to_us(end_90k - r->seg_start_90k) : 0;
    seg.size = res.size;
    memcpy(seg.sha256, res.sha256, sizeof(seg.sha256));

    ch_pos w = r->w;
    w.last_start_us = seg.start_us;
    uint8_t cp[AGENT_CHECKPOINT_MAX];
    size_t cplen = ch->live ? 0 : ckpt_encode(&w, ch->source_sha, cp);
    agent_spool_dropped dropped;
    rc = agent_spool_commit_ex(ch->spool, &seg, r->seg_tmp, cplen ? cp : NULL, cplen, &dropped,
                               on_evict, ch);
    if (rc != 0) {
        unlink(r->seg_tmp);
        return run_fail(r, "spool: %s", strerror(-rc));
    }
    agent_seg_notify(ch->observer, ch->observer_ud, AGENT_SEG_SPOOLED, ch->id, seg.start_us,
                     (int64_t)seg.size, NULL);
    r->w.last_start_us = seg.start_us;
    if (ch->live)
        ch->live_last_start = seg.start_us;
    else
        ch->cp = w;
    r->committed++;

    pthread_mutex_lock(&ch->lock);
    ch->status.segments++;
    ch->status.last_segment_us = seg.start_us;
    pthread_mutex_unlock(&ch->lock);

    if (dropped.segments > 0)
        c2d_warn("spool full after channel %u's segment: dropped %llu unsent segments (%llu "
                 "bytes, starts %lld..%lld)",
                 (unsigned)ch->id, (unsigned long long)dropped.segments,
                 (unsigned long long)dropped.bytes, (long long)dropped.oldest_start_us,
                 (long long)dropped.newest_start_us);
    if (r->bad_ts || r->no_key || r->jumps)
        c2d_warn("channel %u (%s): dropped %llu packets with broken timestamps and %llu before "
                 "a keyframe; %llu timestamp jumps",
                 (unsigned)ch->id, ch->name, (unsigned long long)r->bad_ts,
                 (unsigned long long)r->no_key, (unsigned long long)r->jumps);
    r->bad_ts = r->no_key = r->jumps = 0;
    release_free_memory();
    return RUN_OK;
}

/* Paces a file source like a camera: waits until the packet's time. */
static int pace(ch_run *r, int64_t dts)
{
    int64_t now = c2d_mono_us();
    if (!r->pace_set || dts < r->pace_ts0) {
        r->pace_set = 1;
        r->pace_mono0 = now;
        r->pace_ts0 = dts;
        return RUN_OK;
    }
    int64_t target = r->pace_mono0 + (int64_t)((double)to_us(dts - r->pace_ts0) / r->ch->speed);
    if (target > now)
        return sleep_or_stop(r->ch, target - now) ? RUN_STOP : RUN_OK;
    if (now - target > PACE_RESYNC_US) {
        r->pace_mono0 = now;
        r->pace_ts0 = dts;
    }
    return RUN_OK;
}

/* Takes one packet of the current input through timestamp checks, the cut
 * decision and the muxer. */
static int process(ch_run *r, AVPacket *pkt)
{
    agent_channel *ch = r->ch;
    ch_pos *w = &r->w;
    int idx = out_stream(r, pkt->stream_index);
    if (idx < 0) {
        w->consumed++;
        return RUN_OK;
    }
    if (pkt->pts == AV_NOPTS_VALUE && pkt->dts == AV_NOPTS_VALUE) {
        r->bad_ts++;
        w->consumed++;
        return RUN_OK;
    }
    AVRational tb = r->ic->streams[pkt->stream_index]->time_base, otb = {1, TB_HZ};
    int64_t dts = pkt->dts != AV_NOPTS_VALUE ? pkt->dts : pkt->pts;
    int64_t pts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
    dts = av_rescale_q(dts, tb, otb) + w->offset_90k;
    pts = av_rescale_q(pts, tb, otb) + w->offset_90k;
    int64_t dur = pkt->duration > 0 ? av_rescale_q(pkt->duration, tb, otb) : 0;
    if (pts < dts)
        pts = dts;
    int64_t last = w->last_dts[idx];
    if (last != INT64_MIN && dts <= last) {
        if (last - dts <= TS_JUMP_90K) {
            r->bad_ts++; /* small step back: the muxer cannot take it */
            w->consumed++;
            return RUN_OK;
        }
        /* the source restarted its clock: continue the timeline */
        int64_t delta = (w->end_90k > last ? w->end_90k : last + 1) - dts;
        w->offset_90k += delta;
        dts += delta;
        pts += delta;
        r->jumps++;
        if (r->seg)
            r->force_cut = 1;
    }
    int is_key = idx == AGENT_SEG_VIDEO && (pkt->flags & AV_PKT_FLAG_KEY);

    if (ch->realtime && !ch->live) {
        int rc = pace(r, dts);
        if (rc != RUN_OK)
            return rc;
    }

    if (r->seg) {
        int cut = r->force_cut;
        if (!cut && pts - r->seg_start_90k >= av_rescale(ch->segment_us, TB_HZ, 1000000)) {
            if (r->seg_par[AGENT_SEG_VIDEO])
                cut = is_key && r->seg_video_started;
            else
                cut = idx == AGENT_SEG_AUDIO;
        }
        if (cut) {
            int rc = close_segment(r, r->force_cut ? r->seg_end_90k : pts);
            r->force_cut = 0;
            if (rc != RUN_OK)
                return rc;
        }
    }
    if (!r->seg) {
        if (idx == AGENT_SEG_VIDEO && !is_key) {
            r->no_key++;
            w->consumed++;
            return RUN_OK;
        }
        int rc = open_segment(r, pts);
        if (rc != RUN_OK)
            return rc;
    }
    if (!r->seg_par[idx] || (idx == AGENT_SEG_VIDEO && !r->seg_video_started && !is_key)) {
        r->no_key += idx == AGENT_SEG_VIDEO;
        w->consumed++;
        return RUN_OK;
    }
    if (idx == AGENT_SEG_VIDEO)
        r->seg_video_started = 1;

    pkt->pts = pts;
    pkt->dts = dts;
    pkt->duration = dur;
    int rc = agent_segmenter_write(r->seg, idx, pkt);
    if (rc < 0)
        return run_fail_av(r, "mux", rc);
    if (pts + dur > r->seg_end_90k)
        r->seg_end_90k = pts + dur;
    if (w->end_90k == INT64_MIN || dts + dur > w->end_90k)
        w->end_90k = dts + dur;
    w->last_dts[idx] = dts;
    w->consumed++;
    r->packets++;
    if (!r->recording) {
        r->recording = 1;
        set_state(ch, AGENT_CH_RECORDING, NULL);
    }
    return RUN_OK;
}

/* Reads the open input to its end. RUN_OK at the end of the input. */
static int pump(ch_run *r)
{
    for (;;) {
        int rc = next_packet(r);
        if (rc == AVERROR_EOF)
            return RUN_OK;
        if (rc < 0)
            return run_fail_av(r, "read", rc);
        rc = process(r, r->pkt);
        av_packet_unref(r->pkt);
        if (rc != RUN_OK)
            return rc;
    }
}

/* End of a file source without loop: the last segment carries the
 * "finished" checkpoint, so a restart does not read the source again. */
static int finish_source(ch_run *r)
{
    agent_channel *ch = r->ch;
    r->w.finished = 1;
    if (r->seg) {
        int rc = close_segment(r, r->seg_end_90k);
        return rc == RUN_OK ? RUN_FINISHED : rc;
    }
    uint8_t cp[AGENT_CHECKPOINT_MAX];
    size_t cplen = ckpt_encode(&r->w, ch->source_sha, cp);
    int rc = agent_spool_set_checkpoint(ch->spool, ch->id, cp, cplen);
    if (rc != 0)
        return run_fail(r, "spool: %s", strerror(-rc));
    ch->cp = r->w;
    return RUN_FINISHED;
}

static int run_file_source(ch_run *r)
{
    agent_channel *ch = r->ch;
    ch_pos *w = &r->w;
    *w = ch->cp;
    if (w->finished)
        return RUN_FINISHED;
    struct stat st;
    if (stat(ch->path, &st) != 0)
        return run_fail(r, "%s: %s", ch->path, strerror(errno));
    int is_dir = S_ISDIR(st.st_mode);
    if (is_dir && !(w->file[0] && is_regular(ch->path, w->file))) {
        /* start, or the checkpoint's file is gone: take the next one */
        char name[CKPT_NAME_MAX + 1];
        int rc = dir_next(ch->path, w->file[0] ? w->file : NULL, name);
        if (rc == -ENOENT && w->file[0] && ch->loop)
            rc = dir_next(ch->path, NULL, name);
        if (rc == -ENOENT && w->file[0])
            return finish_source(r);
        if (rc == -ENOENT)
            return run_fail(r, "%s: no files", ch->path);
        if (rc != 0)
            return run_fail(r, "%s: %s", ch->path, strerror(-rc));
        strcpy(w->file, name);
        w->consumed = 0;
        w->offset_known = 0;
    } else if (!is_dir) {
        w->file[0] = '\0';
    }

    for (;;) {
        char path[PATH_MAX];
        int n = is_dir ? snprintf(path, sizeof(path), "%s/%s", ch->path, w->file)
                       : snprintf(path, sizeof(path), "%s", ch->source);
        if (n < 0 || (size_t)n >= sizeof(path))
            return run_fail(r, "path too long");
        int rc = open_input(r, path);
        if (rc != RUN_OK)
            return rc;
        if (r->seg && !layout_matches(r))
            r->force_cut = 1; /* new codec parameters need a new muxer */
        int short_file = 0;
        for (uint64_t i = 0; i < w->consumed; i++) {
            rc = read_frame(r, r->pkt);
            if (rc == AVERROR_EOF) {
                short_file = 1; /* changed since the checkpoint: go on with the next */
                break;
            }
            if (rc < 0)
                return run_fail_av(r, "read", rc);
            av_packet_unref(r->pkt);
        }
        if (!short_file) {
            if (!w->offset_known && (rc = find_offset(r)) != RUN_OK)
                return rc;
            if ((rc = pump(r)) != RUN_OK)
                return rc;
        }
        close_input(r);

        char name[CKPT_NAME_MAX + 1];
        int wrapped = 0;
        if (is_dir) {
            rc = dir_next(ch->path, w->file, name);
            if (rc == -ENOENT && ch->loop) {
                rc = dir_next(ch->path, NULL, name);
                wrapped = 1;
            }
            if (rc == -ENOENT)
                return finish_source(r);
            if (rc != 0)
                return run_fail(r, "%s: %s", ch->path, strerror(-rc));
            strcpy(w->file, name);
        } else {
            if (!ch->loop)
                return finish_source(r);
            wrapped = 1;
        }
        if (wrapped) {
            if (r->packets == 0)
                return run_fail(r, "%s: no packets to loop over", ch->path);
            r->packets = 0;
        }
        w->consumed = 0;
        w->offset_known = 0;
    }
}

static int run_live_source(ch_run *r)
{
    agent_channel *ch = r->ch;
    pos_init(&r->w);
    r->w.offset_known = 1;
    r->w.last_start_us = ch->live_last_start;
    int rc = open_input(r, ch->source);
    if (rc != RUN_OK)
        return rc;
    rc = pump(r);
    if (rc != RUN_OK)
        return rc;
    return run_fail(r, "stream ended");
}

static void run_cleanup(ch_run *r)
{
    agent_segmenter_abort(r->seg); /* unfinished: the checkpoint brings it back */
    r->seg = NULL;
    free_seg_pars(r);
    close_input(r);
    av_packet_free(&r->pkt);
}

static void *channel_main(void *arg)
{
    agent_channel *ch = arg;
    load_checkpoint(ch);
    int64_t backoff = BACKOFF_MIN_US;
    while (!is_stopping(ch)) {
        ch_run r;
        memset(&r, 0, sizeof(r));
        r.ch = ch;
        r.in_idx[0] = r.in_idx[1] = -1;
        ch->err[0] = '\0';
        int rc;
        r.pkt = av_packet_alloc();
        if (!r.pkt)
            rc = run_fail(&r, "out of memory");
        else
            rc = ch->live ? run_live_source(&r) : run_file_source(&r);
        run_cleanup(&r);
        if (rc == RUN_STOP || is_stopping(ch))
            break;
        if (rc == RUN_FINISHED) {
            set_state(ch, AGENT_CH_FINISHED, NULL);
            break;
        }
        if (r.committed > 0)
            backoff = BACKOFF_MIN_US; /* it worked for a while: retry soon */
        pthread_mutex_lock(&ch->lock);
        ch->status.retries++;
        pthread_mutex_unlock(&ch->lock);
        set_state(ch, AGENT_CH_RETRYING, ch->err);
        c2d_warn("channel %u (%s): %s; retrying in %lld s", (unsigned)ch->id, ch->name, ch->err,
                 (long long)(backoff / 1000000));
        if (sleep_or_stop(ch, backoff))
            break;
        backoff = backoff * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US : backoff * 2;
        set_state(ch, AGENT_CH_STARTING, NULL);
    }
    return NULL;
}

/* ---- public API ---------------------------------------------------------- */

static void channel_free(agent_channel *ch)
{
    pthread_cond_destroy(&ch->cond);
    pthread_mutex_destroy(&ch->lock);
    free(ch->name);
    free(ch->source);
    free(ch);
}

int agent_channel_start(const agent_channel_cfg *cfg, agent_spool *spool, agent_channel **out)
{
    if (!cfg->source || !cfg->source[0])
        return -EINVAL;
    agent_segmenter_global_init();
    agent_channel *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return -ENOMEM;
    ch->id = cfg->id;
    ch->name = strdup(cfg->name ? cfg->name : "");
    ch->source = strdup(cfg->source);
    ch->realtime = cfg->realtime;
    ch->loop = cfg->loop;
    ch->segment_us = cfg->segment_us > 0 ? cfg->segment_us : DEFAULT_SEGMENT_US;
    ch->speed = cfg->speed > 0 ? cfg->speed : 1.0;
    ch->observer = cfg->observer;
    ch->observer_ud = cfg->observer_ud;
    ch->spool = spool;
    ch->live_last_start = INT64_MIN;
    ch->status.state = AGENT_CH_STARTING;
    atomic_init(&ch->stop, 0);
    pthread_mutex_init(&ch->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ch->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (!ch->name || !ch->source) {
        channel_free(ch);
        return -ENOMEM;
    }
    /* A URL with a scheme other than file: is live; anything else is a
     * path (a file or a directory). */
    ch->path = ch->source;
    if (strncmp(ch->source, "file:", 5) == 0)
        ch->path = ch->source + 5;
    else if (strstr(ch->source, "://"))
        ch->live = 1;
    c2d_sha256 h;
    c2d_sha256_init(&h);
    c2d_sha256_update(&h, ch->source, strlen(ch->source));
    c2d_sha256_final_hex(&h, ch->source_sha);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, CH_STACK_BYTES);
    int rc = pthread_create(&ch->thread, &attr, channel_main, ch);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        channel_free(ch);
        return -rc;
    }
    *out = ch;
    return 0;
}

void agent_channel_stop(agent_channel *ch)
{
    if (!ch)
        return;
    pthread_mutex_lock(&ch->lock);
    atomic_store(&ch->stop, 1);
    pthread_cond_broadcast(&ch->cond);
    pthread_mutex_unlock(&ch->lock);
    pthread_join(ch->thread, NULL);
    channel_free(ch);
}

void agent_channel_get_status(agent_channel *ch, agent_channel_status *out)
{
    pthread_mutex_lock(&ch->lock);
    *out = ch->status;
    pthread_mutex_unlock(&ch->lock);
}

const char *agent_channel_state_name(agent_channel_state s)
{
    switch (s) {
    case AGENT_CH_STARTING:
        return "starting";
    case AGENT_CH_RECORDING:
        return "recording";
    case AGENT_CH_RETRYING:
        return "retrying";
    case AGENT_CH_FINISHED:
        return "finished";
    }
    return "unknown";
}
