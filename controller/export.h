/* MP4 export of recordings (issue 4): the MPEG-TS segments of a time range
 * remuxed, in order, into one MP4 file with libavformat. No transcoding:
 * packets are copied as they are (the equivalent of ffmpeg -c copy), with
 * their own timestamps; only a backwards jump between files (a camera
 * whose clock was reset) is shifted, and DTS are kept strictly increasing
 * per stream, as MP4 requires.
 *
 * Streams are those of the first segment that the MP4 muxer accepts
 * (video and audio; FFmpeg 5.1 writes no G.711 into MP4, for instance);
 * the others are dropped and named in ctl_export_info. A later segment's
 * streams are matched to them by type and codec; unmatched ones are
 * dropped too. The moov atom is moved to the front (faststart), so that a
 * player can start before the download ends.
 *
 * Functions return 0 or -errno: -EINVAL (no segments, bad argument),
 * -ENOENT (a segment file is missing), -EBADMSG (a segment libavformat
 * cannot read, or no stream the MP4 muxer takes), -ENOSPC, -ENOMEM, -EIO
 * (any other libavformat failure). libavformat may log through av_log. */
#ifndef CTL_EXPORT_H
#define CTL_EXPORT_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of the description of dropped streams ("1:pcm_mulaw,2:dvb_subtitle"). */
#define CTL_EXPORT_DROPPED_MAX 128

typedef struct {
    unsigned streams;                          /* streams written */
    unsigned dropped;                          /* streams of the first segment left out */
    char dropped_desc[CTL_EXPORT_DROPPED_MAX]; /* "index:codec" of each, comma separated */
    uint64_t packets;                          /* packets written */
    uint64_t packets_dropped;                  /* packets of dropped or unmatched streams */
} ctl_export_info;

/* Writes the MP4 of the n segment files paths (in play order) to out_path
 * (created or truncated; left in place on failure for the caller to
 * remove). info (may be NULL) is filled on success. */
int ctl_export_mp4(const char *const *paths, size_t n, const char *out_path, ctl_export_info *info);

/* As ctl_export_mp4 into a new temporary file under tmp_dir (made if
 * missing), which is unlinked before this returns (a crash may leave one
 * "export-*.mp4" behind, nothing else): 0 with *fd open for reading at
 * offset 0 (the caller closes it) and *size set. */
int ctl_export_mp4_tmp(const char *tmp_dir, const char *const *paths, size_t n,
                       ctl_export_info *info, int *fd, uint64_t *size);

#endif
