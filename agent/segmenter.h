/* One MPEG-TS segment being written: the libavformat mpegts muxer (remux
 * only) writing through a custom AVIOContext straight into a temp file
 * while hashing, so the file is never read back.
 *
 * Timestamps are written as given (no shift to zero, no mux delay): the
 * caller passes packets in the 90 kHz output time base, and demuxing the
 * segment gives those timestamps back. H.264/HEVC packets in MP4 form
 * (length-prefixed, avcC/hvcC extradata) are converted to Annex-B by the
 * muxer's automatic bitstream filter; Annex-B packets pass through as is.
 *
 * Lifecycle: agent_segmenter_open, any number of agent_segmenter_write,
 * then exactly one of agent_segmenter_finish (keeps the fsync'd file) or
 * agent_segmenter_abort (deletes it); both free the segmenter.
 * Not thread safe: one segmenter belongs to one thread. */
#ifndef AGENT_SEGMENTER_H
#define AGENT_SEGMENTER_H

#include <libavcodec/packet.h>
#include <libavcodec/codec_par.h>
#include <stdint.h>

/* Time base of the timestamps given to agent_segmenter_write: MPEG-TS's own
 * 90 kHz, so TS sources are copied without any rounding. */
#define AGENT_SEG_TB_HZ 90000

/* AVIO buffer between the muxer and the file: small, one per channel. */
#define AGENT_SEG_IO_BUF 32768

enum { AGENT_SEG_VIDEO = 0, AGENT_SEG_AUDIO = 1 };

/* The streams of a segment: codec parameters copied from the source. Either
 * may be NULL, not both. */
typedef struct {
    const AVCodecParameters *video;
    const AVCodecParameters *audio;
} agent_seg_layout;

typedef struct {
    uint64_t size;   /* bytes written to the file */
    char sha256[65]; /* lowercase hex of those bytes */
    uint64_t packets;
} agent_seg_result;

typedef struct agent_segmenter agent_segmenter;

/* Sets libav's log level to errors only (once per process); called by
 * agent_segmenter_open and the channels. */
void agent_segmenter_global_init(void);

/* Creates tmp_path (mode 0640, truncated), sets up the muxer for layout and
 * writes the TS header. Returns 0 or a negative AVERROR / -errno code
 * (describe it with av_strerror); on error nothing is left on disk. */
int agent_segmenter_open(const agent_seg_layout *layout, const char *tmp_path,
                         agent_segmenter **out);

/* Writes one packet to stream AGENT_SEG_VIDEO or AGENT_SEG_AUDIO (which
 * must exist in the layout). pkt's pts/dts/duration are in 1/AGENT_SEG_TB_HZ
 * and must be set, with dts strictly increasing per stream and pts >= dts.
 * The packet is not consumed (the caller unrefs it). 0 or negative error;
 * after an error the segment must be aborted. */
int agent_segmenter_write(agent_segmenter *s, int stream, AVPacket *pkt);

/* Writes the trailer, fsyncs and closes the file, fills *out and frees s.
 * On error the file is deleted (and s freed as well). */
int agent_segmenter_finish(agent_segmenter *s, agent_seg_result *out);

/* Closes and deletes the file, frees s. NULL is a no-op. */
void agent_segmenter_abort(agent_segmenter *s);

/* 1 if a and b can share one segment's muxer: same codecs and the same
 * parameters the muxer writes (extradata, sample rate...). */
int agent_seg_params_equal(const AVCodecParameters *a, const AVCodecParameters *b);

#endif
