/* The agent's spool: finished segment files plus an LMDB queue, bounded in
 * bytes, safe against power cuts.
 *
 * Layout under state_dir: spool/tmp/ (segments being written),
 * spool/{ch}/{start}.ts (queued segments), spool.lmdb/ (queue records and
 * per-channel source checkpoints).
 *
 * Durability order on commit: the caller has written and fsync'd the temp
 * file; commit renames it into spool/{ch}/, fsyncs that directory, then
 * commits the queue record and the channel checkpoint in one LMDB
 * transaction. At open, temp files and segment files without a record are
 * deleted and records without a file are dropped, so the spool is always
 * consistent; a power cut loses at most the segment being written, and the
 * checkpoint lets the channel write it again.
 *
 * Eviction: when a commit leaves the spool over max_bytes, the oldest
 * queued segments of any channel are dropped unsent, except the segments
 * the uploader has pinned (the ones it is uploading or awaiting the
 * controller's commit ack for: dropping those would count as lost what the
 * controller may already store, and abandon a partial upload there) and
 * the segment just committed (the newest recording). So the spool may stay
 * over max_bytes by the pinned segments (at most two per channel: the
 * uploader's active and awaiting segments) plus the newest one, until
 * they are acknowledged or unpinned.
 *
 * Thread safety: every function may be called from any thread. */
#ifndef AGENT_SPOOL_H
#define AGENT_SPOOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct agent_spool agent_spool;

typedef struct {
    uint16_t channel;
    int64_t start_us;
    int64_t duration_us;
    uint64_t size;
    char sha256[65];
} agent_segment;

typedef struct {
    uint64_t queued_segments;
    uint64_t queued_bytes;
    int64_t oldest_start_us;   /* 0 when empty */
    uint64_t dropped_segments; /* evicted unsent because the spool was full */
    uint64_t dropped_bytes;
    uint64_t max_bytes;
    /* records dropped at open because their file was missing or had another
     * size (damaged by a crash or by hand); persisted like dropped_* */
    uint64_t lost_segments;
} agent_spool_stats;

/* What one commit evicted to stay under max_bytes (all zero if nothing). */
typedef struct {
    uint64_t segments;
    uint64_t bytes;
    /* Range of the evicted segments' starts, of any channel. Not every
     * segment in between was evicted (other channels', pinned ones): the
     * on_evict callback of agent_spool_commit_ex names each one. */
    int64_t oldest_start_us;
    int64_t newest_start_us;
} agent_spool_dropped;

/* Called once per segment a commit evicted, oldest first, after the commit
 * and on the committing thread (no spool lock held: it may call the spool).
 * seg->sha256 is the evicted record's. */
typedef void (*agent_spool_evict_fn)(void *ud, const agent_segment *seg);

/* Largest checkpoint blob a channel may store. */
#define AGENT_CHECKPOINT_MAX 1024

/* Opens (creating if needed) the spool under state_dir and recovers it.
 * Returns 0 or -errno / -EIO (LMDB error). */
int agent_spool_open(const char *state_dir, uint64_t max_bytes, agent_spool **out);
void agent_spool_free(agent_spool *sp); /* NULL is a no-op */

/* Path of the temp file for a new segment of channel ch starting at
 * start_us (spool/tmp/{ch}-{start}.ts). */
int agent_spool_tmp_path(agent_spool *sp, uint16_t ch, int64_t start_us, char *buf, size_t len);

/* Queues a finished, fsync'd temp file as seg, and stores the channel's
 * checkpoint (opaque bytes, may be NULL/0 to leave it unchanged) in the
 * same transaction. If the spool then exceeds max_bytes, the oldest queued
 * segments (of any channel) that are neither pinned nor seg itself are
 * dropped and counted. Returns 0 or -errno. */
int agent_spool_commit(agent_spool *sp, const agent_segment *seg, const char *tmp_path,
                       const void *checkpoint, size_t cplen);

/* Same, and reports what was evicted: the totals in *dropped (if not
 * NULL) and each segment to on_evict (if not NULL), so the caller can log
 * it. Errors: -EINVAL (size differs from the temp file's, bad sha256 or
 * checkpoint too long), -ENOSPC (LMDB map full), -errno of the rename or
 * fsync. On error the temp file may be gone; the segment is not queued and
 * on_evict is not called. */
int agent_spool_commit_ex(agent_spool *sp, const agent_segment *seg, const char *tmp_path,
                          const void *checkpoint, size_t cplen, agent_spool_dropped *dropped,
                          agent_spool_evict_fn on_evict, void *ud);

/* Reads channel ch's checkpoint. 0, -ENOENT if none, -ENOBUFS if *len is too
 * small. On success *len is the checkpoint's length. */
int agent_spool_get_checkpoint(agent_spool *sp, uint16_t ch, void *buf, size_t *len);

/* Stores a checkpoint alone (e.g. "source finished"). */
int agent_spool_set_checkpoint(agent_spool *sp, uint16_t ch, const void *buf, size_t len);

/* The oldest queued segment of channel ch with start_us > after_us (pass
 * INT64_MIN for the oldest). 0, or -ENOENT if none. */
int agent_spool_next(agent_spool *sp, uint16_t ch, int64_t after_us, agent_segment *out);

/* Path of a queued segment's file. */
int agent_spool_path(agent_spool *sp, uint16_t ch, int64_t start_us, char *buf, size_t len);

/* Pins a queued segment: eviction skips it until it is unpinned or removed.
 * The uploader pins each segment before it sends its begin, so a segment
 * it is uploading or awaiting an ack for is never dropped as unsent. Pins
 * live in memory only (a restart re-pins as uploads resume); pinning a
 * pinned segment again is a no-op (one unpin releases it). 0, -ENOENT if
 * the segment is not queued (e.g. evicted since the caller read it), or
 * -ENOMEM / -EIO (LMDB error). */
int agent_spool_pin(agent_spool *sp, uint16_t ch, int64_t start_us);

/* Releases a pin; a segment that is not pinned is ignored. */
void agent_spool_unpin(agent_spool *sp, uint16_t ch, int64_t start_us);

/* 1 if the segment is pinned, else 0 (tests, status). */
int agent_spool_pinned(agent_spool *sp, uint16_t ch, int64_t start_us);

/* Removes a segment after the controller acknowledged it durable, and
 * releases its pin. If keep_dir is not NULL the file is moved to
 * keep_dir/{ch}/{start}.ts instead of deleted. 0, or -ENOENT if it was not
 * queued (already dropped; the pin is released too). On other errors the
 * segment stays queued and pinned. */
int agent_spool_remove(agent_spool *sp, uint16_t ch, int64_t start_us, const char *keep_dir);

void agent_spool_get_stats(agent_spool *sp, agent_spool_stats *out);

/* Blocks until a segment is committed or timeout_ms passes. */
void agent_spool_wait(agent_spool *sp, int timeout_ms);

#endif
