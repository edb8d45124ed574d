#include "agent/segmenter.h"

#include "common/c2d_fs.h"
#include "common/c2d_hash.h"
#include "common/c2d_log.h"
#include "common/c2d_time.h"

#include <errno.h>
#include <fcntl.h>
#include <libavformat/avformat.h>
#include <libavutil/log.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEG_FILE_MODE 0640

struct agent_segmenter {
    AVFormatContext *oc;
    AVIOContext *pb;
    int fd;
    int io_err; /* first write error (negative errno), sticky */
    uint64_t size;
    uint64_t packets;
    c2d_sha256 sha;
    int stream_index[2]; /* AGENT_SEG_VIDEO/AUDIO -> muxer stream, -1 if none */
    char *path;
};

/* libav error lines forwarded to the log per minute, at most: a broken
 * camera must not flood the recorder's log (the channel status says what
 * failed anyway). */
#define AVLOG_LINES_PER_MIN 20

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t avlog_lock = PTHREAD_MUTEX_INITIALIZER;

static void avlog_cb(void *avcl, int level, const char *fmt, va_list ap)
{
    if (level > AV_LOG_ERROR)
        return;
    /* Codec contexts only exist while avformat_find_stream_info probes (we
     * never decode): their complaints, such as video decoders refused by
     * the channel's codec_whitelist, are noise. */
    const AVClass *cls = avcl ? *(const AVClass **)avcl : NULL;
    if (cls && strcmp(cls->class_name, "AVCodecContext") == 0)
        return;
    static int64_t window_start;
    static int lines;
    int64_t now = c2d_mono_us();
    pthread_mutex_lock(&avlog_lock);
    if (now - window_start > 60 * INT64_C(1000000)) {
        window_start = now;
        lines = 0;
    }
    int ok = lines++ < AVLOG_LINES_PER_MIN;
    pthread_mutex_unlock(&avlog_lock);
    if (!ok)
        return;
    char line[512];
    int prefix = 1;
    av_log_format_line2(avcl, level, fmt, ap, line, sizeof(line), &prefix);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    c2d_warn("libav: %s", line);
}

static void global_init_once(void)
{
    /* Warnings from the muxer and demuxers would repeat for every segment
     * ("muxed as a private data stream", ...); errors go to our log,
     * bounded (see avlog_cb). */
    av_log_set_level(AV_LOG_ERROR);
    av_log_set_callback(avlog_cb);
}

void agent_segmenter_global_init(void)
{
    pthread_once(&global_once, global_init_once);
}

/* AVIO write callback: file and hash in one pass, no copy. */
static int seg_write_cb(void *opaque, uint8_t *buf, int size)
{
    agent_segmenter *s = opaque;
    if (s->io_err)
        return AVERROR(-s->io_err);
    int rc = c2d_write_all(s->fd, buf, (size_t)size);
    if (rc != 0) {
        s->io_err = rc;
        return AVERROR(-rc);
    }
    c2d_sha256_update(&s->sha, buf, (size_t)size);
    s->size += (uint64_t)size;
    return size;
}

/* Frees everything; deletes the file if del. */
static void seg_free(agent_segmenter *s, int del)
{
    if (!s)
        return;
    if (s->oc)
        avformat_free_context(s->oc);
    if (s->pb) {
        av_freep(&s->pb->buffer);
        avio_context_free(&s->pb);
    }
    if (s->fd >= 0)
        close(s->fd);
    if (del && s->path)
        unlink(s->path);
    c2d_sha256_discard(&s->sha);
    free(s->path);
    free(s);
}

static int add_stream(agent_segmenter *s, int which, const AVCodecParameters *par)
{
    if (!par) {
        s->stream_index[which] = -1;
        return 0;
    }
    AVStream *st = avformat_new_stream(s->oc, NULL);
    if (!st)
        return AVERROR(ENOMEM);
    int rc = avcodec_parameters_copy(st->codecpar, par);
    if (rc < 0)
        return rc;
    st->codecpar->codec_tag = 0; /* the source container's tag means nothing here */
    st->time_base = (AVRational){1, AGENT_SEG_TB_HZ};
    s->stream_index[which] = st->index;
    return 0;
}

int agent_segmenter_open(const agent_seg_layout *layout, const char *tmp_path,
                         agent_segmenter **out)
{
    agent_segmenter_global_init();
    if (!layout->video && !layout->audio)
        return AVERROR(EINVAL);
    agent_segmenter *s = calloc(1, sizeof(*s));
    if (!s)
        return AVERROR(ENOMEM);
    s->fd = -1;
    c2d_sha256_init(&s->sha);
    int rc;
    s->path = strdup(tmp_path);
    if (!s->path) {
        rc = AVERROR(ENOMEM);
        goto fail;
    }
    s->fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, SEG_FILE_MODE);
    if (s->fd < 0) {
        rc = AVERROR(errno);
        goto fail;
    }
    uint8_t *buf = av_malloc(AGENT_SEG_IO_BUF);
    if (!buf) {
        rc = AVERROR(ENOMEM);
        goto fail;
    }
    s->pb = avio_alloc_context(buf, AGENT_SEG_IO_BUF, 1, s, NULL, seg_write_cb, NULL);
    if (!s->pb) {
        av_free(buf);
        rc = AVERROR(ENOMEM);
        goto fail;
    }
    rc = avformat_alloc_output_context2(&s->oc, NULL, "mpegts", NULL);
    if (rc < 0)
        goto fail;
    s->oc->pb = s->pb;
    s->oc->flags |= AVFMT_FLAG_CUSTOM_IO;
    /* Keep the source's timestamps: no negative-ts shifting, and no mux
     * delay (the mpegts muxer adds 2 * max_delay to every PTS/DTS). */
    s->oc->avoid_negative_ts = AVFMT_AVOID_NEG_TS_DISABLED;
    s->oc->max_delay = 0;
    if ((rc = add_stream(s, AGENT_SEG_VIDEO, layout->video)) < 0 ||
        (rc = add_stream(s, AGENT_SEG_AUDIO, layout->audio)) < 0)
        goto fail;
    rc = avformat_write_header(s->oc, NULL);
    if (rc < 0)
        goto fail;
    if (s->io_err) {
        rc = AVERROR(-s->io_err);
        goto fail;
    }
    *out = s;
    return 0;
fail:
    seg_free(s, 1);
    return rc;
}

int agent_segmenter_write(agent_segmenter *s, int stream, AVPacket *pkt)
{
    if (stream < 0 || stream > 1 || s->stream_index[stream] < 0)
        return AVERROR(EINVAL);
    if (pkt->pts == AV_NOPTS_VALUE || pkt->dts == AV_NOPTS_VALUE)
        return AVERROR(EINVAL);
    AVStream *st = s->oc->streams[s->stream_index[stream]];
    pkt->stream_index = st->index;
    AVRational tb = {1, AGENT_SEG_TB_HZ};
    if (av_cmp_q(st->time_base, tb) != 0)
        av_packet_rescale_ts(pkt, tb, st->time_base);
    int rc = av_write_frame(s->oc, pkt);
    if (av_cmp_q(st->time_base, tb) != 0)
        av_packet_rescale_ts(pkt, st->time_base, tb);
    if (rc >= 0 && s->io_err)
        rc = AVERROR(-s->io_err);
    if (rc < 0)
        return rc;
    s->packets++;
    return 0;
}

int agent_segmenter_finish(agent_segmenter *s, agent_seg_result *out)
{
    int rc = av_write_trailer(s->oc);
    if (rc >= 0) {
        avio_flush(s->pb);
        if (s->io_err)
            rc = AVERROR(-s->io_err);
        else if (s->pb->error < 0)
            rc = s->pb->error;
    }
    if (rc >= 0 && fsync(s->fd) != 0)
        rc = AVERROR(errno);
    if (rc >= 0) {
        int fd = s->fd;
        s->fd = -1;
        if (close(fd) != 0)
            rc = AVERROR(errno);
    }
    if (rc < 0) {
        seg_free(s, 1);
        return rc;
    }
    agent_seg_result r = {0};
    r.size = s->size;
    r.packets = s->packets;
    c2d_sha256_final_hex(&s->sha, r.sha256);
    c2d_sha256_init(&s->sha); /* seg_free discards a live context */
    seg_free(s, 0);
    *out = r;
    return 0;
}

void agent_segmenter_abort(agent_segmenter *s)
{
    seg_free(s, 1);
}

int agent_seg_params_equal(const AVCodecParameters *a, const AVCodecParameters *b)
{
    if (!a || !b)
        return a == b;
    if (a->codec_type != b->codec_type || a->codec_id != b->codec_id)
        return 0;
    if (a->extradata_size != b->extradata_size ||
        (a->extradata_size > 0 && memcmp(a->extradata, b->extradata, (size_t)a->extradata_size)))
        return 0;
    if (a->codec_type == AVMEDIA_TYPE_VIDEO)
        return a->width == b->width && a->height == b->height;
    return a->sample_rate == b->sample_rate && a->ch_layout.nb_channels == b->ch_layout.nb_channels;
}
