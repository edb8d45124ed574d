/* The uploader: a thread that takes queued segments from the spool and
 * sends them to the controller as begin / chunk frames / end (see
 * proto/README.md), resumes from the controller's confirmed offset, and
 * removes a segment from the spool only once the controller acknowledged
 * it durable (committed or duplicate).
 *
 * Transport seam: the uploader does not know MQTT. It publishes through a
 * callback (the agent wires it to mosquitto_publish on the seg topic, QoS
 * 1) and is fed from the outside: agent_uploader_on_ack() for every
 * message on the ack topic and agent_uploader_set_connected() on connect /
 * disconnect. Both only queue and wake the uploader thread (a bounded queue
 * under a mutex + condition variable); all the work happens on the
 * uploader thread, never on the caller's (mosquitto's network) thread.
 *
 * Scheduling: one active segment per channel (its oldest queued one), the
 * channels share a global window of window_chunks unconfirmed chunks
 * round-robin a chunk at a time (agent/upload_sched.h), under a token bucket of
 * rate_limit_bps. Once a segment's end is sent the lane takes its next
 * segment while the previous one awaits committed (the controller's fsync):
 * at most one segment per lane awaits commit; a rejection or ack timeout
 * for it makes it the active segment again and puts the one being sent back
 * in the queue (it resumes later from the controller's offset). Acks are
 * matched by (channel, start) to the awaiting or the active segment. On a
 * reconnect both send begin again. Memory: one send buffer of 32 + chunk_bytes bytes, filled
 * with pread from the segment file; nothing else grows with segment size.
 *
 * Quotas (controller's virtual disks): quota_full and no_disk keep the
 * segment and hold the lane: it sends begin again after
 * AGENT_UPLOADER_HOLD_MIN_S, doubling to AGENT_UPLOADER_HOLD_MAX_S, or at
 * once on agent_uploader_retry_held() (a new device config); the other lanes
 * go on. backup_off removes the segment from the spool, counted and
 * reported. A channel whose cloud backup is off (agent_uploader_set_backup)
 * sends nothing: its lane deletes each segment it would have taken.
 *
 * Events (committed, rejected, parked, ...) are reported through a
 * callback on the uploader thread so that the program can log them; this
 * code does not log. */
#ifndef AGENT_UPLOADER_H
#define AGENT_UPLOADER_H

#include "agent/observer.h"
#include "agent/spool.h"
#include "proto/c2d_proto.h"

#include <stddef.h>
#include <stdint.h>

typedef struct agent_uploader agent_uploader;

/* Publishes one message (JSON control message or chunk frame) on the
 * segment topic with QoS 1. Returns 0 if it was handed to the transport,
 * -1 if not (not connected, out of memory, ...). The buffer is only valid
 * during the call. */
typedef int (*agent_publish_fn)(void *ctx, const void *buf, size_t len);

typedef enum {
    AGENT_UP_COMMITTED,  /* controller committed the segment; removed from the spool */
    AGENT_UP_DUPLICATE,  /* controller already had it; removed from the spool */
    AGENT_UP_REJECTED,   /* a rejected ack: reason and the reaction in action */
    AGENT_UP_PARKED,     /* given up for this run: kept in the spool, reported */
    AGENT_UP_DROPPED,    /* own file is corrupt: removed from the spool unsent */
    AGENT_UP_TIMEOUT,    /* no ack within ack_timeout: begin re-sent */
    AGENT_UP_RESUMED,    /* the controller answered begin with a nonzero offset */
    AGENT_UP_BACKUP_OFF, /* cloud backup off for the channel: removed from the spool unsent */
    AGENT_UP_ERROR,      /* local error (file, spool, transport); err is -errno */
} agent_upload_event_type;

typedef struct {
    agent_upload_event_type type;
    uint16_t channel;
    int64_t start_us;
    uint64_t size;
    uint64_t offset;    /* controller's offset in the ack, if any */
    const char *reason; /* rejection reason or what failed; "" if none */
    const char *action; /* what the uploader does about it; "" if nothing */
    int err;            /* -errno for AGENT_UP_ERROR, else 0 */
} agent_upload_event;

typedef void (*agent_upload_event_fn)(void *ctx, const agent_upload_event *ev);

typedef struct {
    agent_spool *spool;
    const uint16_t *channels;  /* channel ids, one lane each */
    size_t n_channels;         /* 1..AGENT_UPLOADER_LANES_MAX */
    const char *keep_sent_dir; /* NULL: delete acknowledged segments */
    uint32_t chunk_bytes;      /* 1..C2D_CHUNK_MAX */
    uint32_t window_chunks;    /* >= 1 */
    uint64_t rate_limit_bps;   /* 0 = unlimited; counts chunk frame bytes */
    int64_t ack_timeout_us;    /* re-send begin when an awaited ack is this late */
    agent_publish_fn publish;
    void *publish_ctx;
    agent_upload_event_fn on_event; /* may be NULL */
    void *event_ctx;
    /* Monotonic clock in microseconds for every timer (backoffs, ack
     * timeouts, polls, the rate cap); NULL: c2d_mono_us. Tests move it
     * forward; the thread looks at it at least every second. */
    int64_t (*clock_us)(void *ctx);
    void *clock_ctx;
    /* Segment observer (agent/observer.h): ACKED, REJECTED (parked or
     * held), DROPPED (backup_off, corrupt). May be NULL. */
    agent_seg_observer observer;
    void *observer_ud;
    /* Test hook (agent_config's test_corrupt_*): this many per mille of
     * chunk frames are damaged in the send buffer, chosen by a PRNG seeded
     * with corrupt_seed: after the CRC (the controller answers bad_crc), or
     * with content 1 the payload and a fresh CRC (only the segment's
     * SHA-256 tells: hash_mismatch). A hash_mismatch for a segment the hook
     * damaged does not count towards AGENT_UPLOADER_HASH_RETRIES. */
    uint32_t corrupt_permille; /* 0 (off) .. 1000 */
    int corrupt_content;
    uint64_t corrupt_seed;
} agent_uploader_cfg;

/* Lanes one uploader drives; equals the agent's channel limit. */
#define AGENT_UPLOADER_LANES_MAX 64

/* Segments a lane remembers as parked (skipped until the next start).
 * Beyond that it skips everything up to the newest parked one. */
#define AGENT_UPLOADER_PARK_MAX 16

/* Retries of hash_mismatch per segment before it is parked (proto/README.md). */
#define AGENT_UPLOADER_HASH_RETRIES 3

/* A lane held by quota_full or no_disk retries after 30 s, doubling up to
 * 10 min (proto/README.md): a full disk is freed by a person or by the
 * controller's retention, in minutes, and a begin costs the controller one
 * lookup. A new device config retries at once. */
#define AGENT_UPLOADER_HOLD_MIN_S 30
#define AGENT_UPLOADER_HOLD_MAX_S 600

typedef enum {
    AGENT_LANE_IDLE,    /* no segment to send */
    AGENT_LANE_BEGIN,   /* begin sent, waiting for the controller's offset */
    AGENT_LANE_SENDING, /* sending chunks */
    AGENT_LANE_END,     /* end sent, waiting for committed */
    AGENT_LANE_BACKOFF, /* waiting before trying the segment again */
} agent_lane_phase;

typedef struct {
    uint16_t channel;
    agent_lane_phase phase;
    int64_t start_us; /* active segment, 0 if idle */
    uint64_t size;
    uint64_t sent;             /* bytes sent */
    uint64_t confirmed;        /* bytes the controller confirmed */
    int64_t awaiting_start_us; /* previous segment awaiting committed, 0 if none */
    uint64_t committed;        /* segments committed or duplicate since start */
    uint64_t rejections;
    uint64_t parked;                  /* segments parked since start (still in the spool) */
    uint64_t dropped;                 /* corrupt segments removed unsent */
    char last_reason[C2D_REASON_MAX]; /* last rejection or park reason */
    int backup;                       /* 1: uploads; 0: cloud backup off, segments deleted */
    uint64_t dropped_backup_off;      /* segments deleted because backup is off */
    char hold[C2D_REASON_MAX];        /* "quota_full" or "no_disk" while held, else "" */
    int64_t hold_retry_in_us;         /* held: time left until begin is sent again */
    uint64_t holds;                   /* quota_full and no_disk answers since start */
} agent_lane_status;

typedef struct {
    int connected;
    uint64_t bytes_sent;      /* chunk payload bytes published (incl. resends) */
    uint64_t bytes_committed; /* sizes of committed and duplicate segments */
    uint64_t segments_committed;
    uint64_t segments_duplicate;
    uint64_t rejections;
    uint64_t parked;             /* currently parked segments, all lanes */
    uint64_t acks_dropped;       /* acks lost because the queue was full */
    uint64_t acks_invalid;       /* undecodable messages on the ack topic */
    uint64_t acks_stale;         /* acks for no active segment (ignored) */
    uint64_t dropped_backup_off; /* all lanes */
    uint64_t held;               /* lanes held by quota_full or no_disk now */
    uint64_t corrupted_frames;   /* chunk frames damaged by the test hook */
    int busy;                    /* some lane has an active segment */
} agent_uploader_status;

/* Validates cfg, allocates, starts the thread. It sends nothing until
 * agent_uploader_set_connected(up, 1). Returns 0, -EINVAL, -ENOMEM or the
 * pthread error as -errno. */
int agent_uploader_start(const agent_uploader_cfg *cfg, agent_uploader **out);

/* Stops and joins the thread, closes files, frees. Segments in progress
 * stay in the spool and resume next time. NULL is a no-op. */
void agent_uploader_stop(agent_uploader *up);

/* Any thread: the transport (re)connected (1) or lost its connection (0).
 * On every connect the uploader re-sends begin for its active segments. */
void agent_uploader_set_connected(agent_uploader *up, int connected);

/* Any thread: a message arrived on the ack topic. Decodes it and queues it
 * for the uploader thread. Returns 0, or -1 if it was not a valid ack or
 * the queue was full (counted; the ack timeout recovers from a lost ack). */
int agent_uploader_on_ack(agent_uploader *up, const void *payload, size_t len);

/* Any thread: whether channel ch's segments go to the controller (on = 1,
 * the default) or are deleted from the spool unsent (0: the device config
 * turned its cloud backup off). Takes effect from the lane's next segment;
 * one being sent goes on and the controller's answer decides. A held lane
 * of a channel turned off drops its segment at once. Returns 0, or -ENOENT
 * if no lane has channel ch. */
int agent_uploader_set_backup(agent_uploader *up, uint16_t ch, int on);

/* Any thread: lanes held by quota_full or no_disk send begin again now
 * (a new device config: the disk may have room) and their backoff restarts
 * from AGENT_UPLOADER_HOLD_MIN_S. */
void agent_uploader_retry_held(agent_uploader *up);

/* Any thread: a snapshot. lanes (may be NULL) receives up to n lanes in
 * channel order; returns the number of lanes. */
size_t agent_uploader_get_status(agent_uploader *up, agent_uploader_status *st,
                                 agent_lane_status *lanes, size_t n);

const char *agent_lane_phase_name(agent_lane_phase p);

#endif
