/* MP4 export with libavformat: see export.h. */
#include "controller/export.h"

#include "common/c2d_fs.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/mathematics.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Output streams: a camera has a video and an audio stream, some two
 * videos; more is a file we do not expect (the rest is dropped). */
#define OUT_MAX 8
/* A later segment that starts this much before the previous one ended
 * jumped backwards (a reset clock, a 33-bit wrap): it is shifted. */
#define JUMP_BACK_US 1000000

typedef struct {
    AVFormatContext *oc;
    int nout;
    enum AVMediaType type[OUT_MAX];
    enum AVCodecID codec[OUT_MAX];
    int64_t last_dts[OUT_MAX]; /* output time base; INT64_MIN: none yet */
    int64_t end_us;            /* latest packet end seen, with offsets, µs */
    bool have_end;
    ctl_export_info info;
} export_ctx;

static int av_to_errno(int e)
{
    if (e == AVERROR_INVALIDDATA || e == AVERROR_EOF || e == AVERROR_STREAM_NOT_FOUND ||
        e == AVERROR_DEMUXER_NOT_FOUND || e == AVERROR_PATCHWELCOME)
        return -EBADMSG;
    if (e < 0 && e > -4096)
        return e; /* AVERROR(errno) is -errno */
    return -EIO;
}

static void note_dropped(export_ctx *x, int index, enum AVCodecID id)
{
    ctl_export_info *i = &x->info;
    size_t used = strlen(i->dropped_desc);
    snprintf(i->dropped_desc + used, sizeof(i->dropped_desc) - used, "%s%d:%s", used ? "," : "",
             index, avcodec_get_name(id));
    i->dropped++;
}

/* The output streams from the first segment. */
static int add_streams(export_ctx *x, const AVFormatContext *ic)
{
    for (unsigned i = 0; i < ic->nb_streams; i++) {
        const AVCodecParameters *par = ic->streams[i]->codecpar;
        bool av = par->codec_type == AVMEDIA_TYPE_VIDEO || par->codec_type == AVMEDIA_TYPE_AUDIO;
        if (!av || x->nout == OUT_MAX ||
            avformat_query_codec(x->oc->oformat, par->codec_id, FF_COMPLIANCE_NORMAL) != 1) {
            note_dropped(x, (int)i, par->codec_id);
            continue;
        }
        AVStream *os = avformat_new_stream(x->oc, NULL);
        if (!os)
            return -ENOMEM;
        int rc = avcodec_parameters_copy(os->codecpar, par);
        if (rc < 0)
            return av_to_errno(rc);
        os->codecpar->codec_tag = 0; /* the MP4 muxer picks its own */
        os->time_base = ic->streams[i]->time_base;
        x->type[x->nout] = par->codec_type;
        x->codec[x->nout] = par->codec_id;
        x->last_dts[x->nout] = INT64_MIN;
        x->nout++;
    }
    return x->nout ? 0 : -EBADMSG;
}

/* Maps the input streams of one segment to output streams (-1: drop):
 * in order, by type and codec. */
static void map_streams(const export_ctx *x, const AVFormatContext *ic, int *map)
{
    bool used[OUT_MAX] = {false};
    for (unsigned i = 0; i < ic->nb_streams; i++) {
        const AVCodecParameters *par = ic->streams[i]->codecpar;
        map[i] = -1;
        for (int o = 0; o < x->nout; o++) {
            if (!used[o] && x->type[o] == par->codec_type && x->codec[o] == par->codec_id) {
                map[i] = o;
                used[o] = true;
                break;
            }
        }
    }
}

/* Copies the packets of one opened segment. */
static int copy_file(export_ctx *x, AVFormatContext *ic, int *map, bool first)
{
    AVPacket *pkt = av_packet_alloc();
    if (!pkt)
        return -ENOMEM;
    int64_t offset_us = 0;
    bool offset_set = first;
    int rc = 0;
    for (;;) {
        int r = av_read_frame(ic, pkt);
        if (r == AVERROR_EOF)
            break;
        if (r < 0) {
            rc = av_to_errno(r);
            break;
        }
        int o = (unsigned)pkt->stream_index < ic->nb_streams ? map[pkt->stream_index] : -1;
        if (o < 0) {
            x->info.packets_dropped++;
            av_packet_unref(pkt);
            continue;
        }
        AVRational itb = ic->streams[pkt->stream_index]->time_base;
        if (pkt->dts == AV_NOPTS_VALUE)
            pkt->dts = pkt->pts;
        if (!offset_set && pkt->dts != AV_NOPTS_VALUE) {
            /* The first timestamp of a later segment: shift it only if it
             * goes back in time. */
            int64_t t = av_rescale_q(pkt->dts, itb, AV_TIME_BASE_Q);
            if (x->have_end && t < x->end_us - JUMP_BACK_US)
                offset_us = x->end_us - t;
            offset_set = true;
        }
        if (offset_us) {
            int64_t off = av_rescale_q(offset_us, AV_TIME_BASE_Q, itb);
            if (pkt->dts != AV_NOPTS_VALUE)
                pkt->dts += off;
            if (pkt->pts != AV_NOPTS_VALUE)
                pkt->pts += off;
        }
        if (pkt->dts != AV_NOPTS_VALUE) {
            int64_t end = av_rescale_q(pkt->dts + (pkt->duration > 0 ? pkt->duration : 0), itb,
                                       AV_TIME_BASE_Q);
            if (!x->have_end || end > x->end_us)
                x->end_us = end;
            x->have_end = true;
        }
        AVStream *os = x->oc->streams[o];
        av_packet_rescale_ts(pkt, itb, os->time_base);
        /* MP4 needs strictly increasing DTS per stream. */
        if (pkt->dts == AV_NOPTS_VALUE ||
            (x->last_dts[o] != INT64_MIN && pkt->dts <= x->last_dts[o]))
            pkt->dts = x->last_dts[o] == INT64_MIN ? 0 : x->last_dts[o] + 1;
        if (pkt->pts == AV_NOPTS_VALUE || pkt->pts < pkt->dts)
            pkt->pts = pkt->dts;
        x->last_dts[o] = pkt->dts;
        pkt->stream_index = o;
        pkt->pos = -1;
        if ((r = av_interleaved_write_frame(x->oc, pkt)) < 0) {
            rc = av_to_errno(r);
            break;
        }
        x->info.packets++;
    }
    av_packet_free(&pkt);
    return rc;
}

/* Opens one segment (stream info read for the first, whose parameters
 * make the output's). */
static int open_input(const char *path, bool probe, AVFormatContext **out)
{
    AVFormatContext *ic = NULL;
    int r = avformat_open_input(&ic, path, NULL, NULL);
    if (r < 0)
        return av_to_errno(r);
    if (probe && (r = avformat_find_stream_info(ic, NULL)) < 0) {
        avformat_close_input(&ic);
        return av_to_errno(r);
    }
    *out = ic;
    return 0;
}

int ctl_export_mp4(const char *const *paths, size_t n, const char *out_path, ctl_export_info *info)
{
    if (!paths || n == 0 || !out_path)
        return -EINVAL;
    export_ctx x;
    memset(&x, 0, sizeof(x));
    AVFormatContext *ic = NULL;
    AVDictionary *opts = NULL;
    int *map = NULL;
    bool header = false;
    int r = avformat_alloc_output_context2(&x.oc, NULL, "mp4", out_path);
    int rc = r < 0 ? av_to_errno(r) : 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if ((rc = open_input(paths[i], i == 0, &ic)) != 0)
            break;
        if (i == 0) {
            if ((rc = add_streams(&x, ic)) != 0)
                break;
            if ((r = avio_open(&x.oc->pb, out_path, AVIO_FLAG_WRITE)) < 0) {
                rc = av_to_errno(r);
                break;
            }
            av_dict_set(&opts, "movflags", "+faststart", 0);
            if ((r = avformat_write_header(x.oc, &opts)) < 0) {
                rc = av_to_errno(r);
                break;
            }
            header = true;
        }
        int *m = realloc(map, (ic->nb_streams ? ic->nb_streams : 1) * sizeof(*m));
        if (!m) {
            rc = -ENOMEM;
            break;
        }
        map = m;
        map_streams(&x, ic, map);
        rc = copy_file(&x, ic, map, i == 0);
        avformat_close_input(&ic);
    }
    if (rc == 0 && header && (r = av_write_trailer(x.oc)) < 0)
        rc = av_to_errno(r);
    avformat_close_input(&ic);
    av_dict_free(&opts);
    free(map);
    if (x.oc) {
        if (x.oc->pb)
            avio_closep(&x.oc->pb);
        avformat_free_context(x.oc);
    }
    x.info.streams = (unsigned)x.nout;
    if (rc == 0 && info)
        *info = x.info;
    return rc;
}

int ctl_export_mp4_tmp(const char *tmp_dir, const char *const *paths, size_t n,
                       ctl_export_info *info, int *fd, uint64_t *size)
{
    char path[PATH_MAX];
    int rc = c2d_mkdirs(tmp_dir, 0750);
    if (rc != 0)
        return rc;
    int w = snprintf(path, sizeof(path), "%s/export-XXXXXX.mp4", tmp_dir);
    if (w < 0 || (size_t)w >= sizeof(path))
        return -EINVAL;
    int tfd = mkstemps(path, 4);
    if (tfd < 0)
        return -errno;
    close(tfd); /* libavformat opens it by name (faststart reads it back) */
    rc = ctl_export_mp4(paths, n, path, info);
    int rfd = rc == 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (rc == 0 && rfd < 0)
        rc = -errno;
    unlink(path);
    struct stat st;
    if (rc == 0 && fstat(rfd, &st) != 0)
        rc = -errno;
    if (rc != 0) {
        if (rfd >= 0)
            close(rfd);
        return rc;
    }
    *fd = rfd;
    *size = (uint64_t)st.st_size;
    return 0;
}
