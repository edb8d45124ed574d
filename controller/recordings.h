/* Recordings of one camera (issue 4, "getting the video back"): the
 * segments of a (device, channel) in a time range from the ledger, the
 * gaps between them, and the HLS playlist that plays them.
 *
 * Every read of segments for serving goes through ctl_rec_query, which
 * drops what the retention cutoff says may no longer be served (one place
 * to enforce it).
 *
 * Functions return 0 or -errno: -EINVAL (bad device, range or argument),
 * -ENOMEM, or the ledger's errors (-EIO). No logging. */
#ifndef CTL_RECORDINGS_H
#define CTL_RECORDINGS_H

#include "controller/ledger.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default gap tolerance: a segment that starts more than 1 s after the
 * previous one ended leaves a gap (segments of one recording follow each
 * other within a frame or two). */
#define CTL_REC_GAP_US 1000000

/* The oldest start time that may still be served for (device, ch), in µs
 * since the epoch (segments that start before it are never served); 0 or
 * INT64_MIN: no cutoff. Called once per query, on an HTTP thread. */
typedef int64_t (*ctl_rec_cutoff_fn)(void *ud, const char *device, uint16_t ch);

/* One segment as served. */
typedef struct {
    int64_t start_us;
    int64_t duration_us;
    uint64_t size;
    char sha256[65];
    char path[CTL_LEDGER_PATH_MAX]; /* relative to data_dir */
    unsigned dev;                   /* ctl_rec_query_devices: index of its device */
} ctl_rec_seg;

/* A query's result: segments in start order. */
typedef struct {
    ctl_rec_seg *v;
    size_t n;
    bool more; /* the walk stopped at max: segments remain after v[n-1] */
} ctl_rec_list;

/* What to read. */
typedef struct {
    const char *device;
    uint16_t channel;
    int64_t from_us, to_us; /* overlap with [from, to); to 0: no end */
    int64_t after_us;       /* > 0: only segments that start after it (next page) */
    size_t max;             /* most segments returned (1..) */
    ctl_rec_cutoff_fn cutoff;
    void *cutoff_ud;
} ctl_rec_range;

/* Reads the servable segments of r from l, inside txn (a transaction of
 * the ledger's environment) or, txn NULL, a read transaction of its own.
 * out is set on success (free with ctl_rec_list_clear) and cleared on
 * failure. */
int ctl_rec_query(ctl_ledger *l, MDB_txn *txn, const ctl_rec_range *r, ctl_rec_list *out);

/* Most device ids one camera's recordings span: its recorder's current
 * one and earlier ones (revoked by unpairings, docs/pairing.md). */
#define CTL_REC_DEVICES_MAX 16

/* As ctl_rec_query for one camera whose segments are stored under several
 * device ids (devices[0..n), r->device ignored): each device's servable
 * segments (its own retention cutoff) merged in start order, as one walk
 * would give them: at most r->max, more set when segments remain. A start
 * time held by two devices is served once, from the device listed first
 * (the current id). Each segment's dev is its index in devices. -EINVAL
 * also for n 0 or over CTL_REC_DEVICES_MAX. */
int ctl_rec_query_devices(ctl_ledger *l, MDB_txn *txn, const ctl_rec_range *r,
                          const char *const *devices, size_t n, ctl_rec_list *out);

/* Merges the n lists in[] (each in start order, at most max segments)
 * into out, in start order, keeping the first max; on equal start times
 * only the segment of the lowest list index is kept; out->more is set if
 * any list had more or segments were left out; each segment's dev is set
 * to its list's index. The lists are cleared. 0, -EINVAL (n over
 * CTL_REC_DEVICES_MAX) or -ENOMEM (out cleared). Pure: for tests. */
int ctl_rec_merge(ctl_rec_list *in, size_t n, size_t max, ctl_rec_list *out);

/* Frees out's segments and zeroes it. NULL is a no-op. */
void ctl_rec_list_clear(ctl_rec_list *out);

/* A stretch without recording. */
typedef struct {
    int64_t from_us, to_us;
} ctl_rec_gap;

/* The gaps of segs (n, in start order) within [from_us, to_us): before
 * the first segment (when from_us is nonzero), between two segments when
 * the next starts more than tolerance_us after the previous ends, and
 * after the last (when to_us is nonzero); edges shorter than tolerance_us
 * are no gap. Without segments the whole range is one gap. Writes at most
 * max gaps and returns how many there are (may exceed max). */
size_t ctl_rec_gaps(const ctl_rec_seg *segs, size_t n, int64_t from_us, int64_t to_us,
                    int64_t tolerance_us, ctl_rec_gap *gaps, size_t max);

/* True if segment i (> 0) starts more than tolerance_us after segment
 * i - 1 ends: a player must be told of the discontinuity. */
bool ctl_rec_after_gap(const ctl_rec_seg *segs, size_t i, int64_t tolerance_us);

/* Longest playlist ctl_rec_playlist makes: bounds the memory of one. */
#define CTL_REC_PLAYLIST_MAX (4 * 1024 * 1024)

/* An HLS VOD playlist (RFC 8216, version 3) of segs: #EXTM3U,
 * #EXT-X-VERSION:3, #EXT-X-PLAYLIST-TYPE:VOD, #EXT-X-TARGETDURATION (the
 * longest segment, rounded up, at least 1), #EXT-X-MEDIA-SEQUENCE:0, then
 * per segment #EXTINF:<seconds>, and the URI uri_prefix + start_us +
 * uri_suffix, with #EXT-X-DISCONTINUITY before a segment after a gap
 * (tolerance_us), and #EXT-X-ENDLIST. *out (NUL-terminated, free()) and
 * *len are set on success; -EINVAL (prefix/suffix with CR/LF), -EFBIG
 * (over CTL_REC_PLAYLIST_MAX), -ENOMEM. */
int ctl_rec_playlist(const ctl_rec_seg *segs, size_t n, int64_t tolerance_us,
                     const char *uri_prefix, const char *uri_suffix, char **out, size_t *len);

#endif
