/* Segment observer: an embedder's view of every segment's life in the
 * agent (the fleet simulator's journal and latency figures, tests).
 *
 *   SPOOLED   committed to the spool (agent/channel.c)
 *   ACKED     the controller acknowledged it durable (committed or
 *             duplicate) and it left the spool (agent/uploader.c)
 *   REJECTED  kept in the spool but not uploaded for now: a rejection that
 *             parks it (bad_channel, conflict, hash_mismatch retries
 *             exhausted...) or holds its lane (quota_full, no_disk), or a
 *             local read error that parks it ("io_error"). A held segment
 *             is reported at every refusal.
 *   DROPPED   deleted unsent: "spool_full" (evicted to make room; never
 *             one the uploader is sending or awaiting an ack for),
 *             "backup_off" (device config or the controller's answer),
 *             "corrupt" (its own file no longer matches).
 *
 * Every event is one segment (segments 1, last_start_us == start_us). A
 * "spool_full" event comes from the thread of the channel whose commit
 * made room, and names the evicted segment's own channel. (The bulk form,
 * channel -1 with a range of starts and a count, is no longer sent: the
 * evicted segments of one commit need not be contiguous.)
 *
 * The observer is called on the channel threads and the uploader thread:
 * it must be quick and thread safe, and must not call back into the
 * agent. */
#ifndef AGENT_OBSERVER_H
#define AGENT_OBSERVER_H

#include <stdint.h>

typedef enum {
    AGENT_SEG_SPOOLED,
    AGENT_SEG_ACKED,
    AGENT_SEG_REJECTED,
    AGENT_SEG_DROPPED,
} agent_seg_event_kind;

typedef struct {
    agent_seg_event_kind kind;
    int64_t channel, start_us, bytes;
    int64_t mono_us;    /* c2d_mono_us() when it happened */
    const char *reason; /* REJECTED/DROPPED: the reason; NULL otherwise */
    /* 1 and start_us; kept for embedders that read bulk events. */
    int64_t segments;
    int64_t last_start_us;
} agent_seg_event;

typedef void (*agent_seg_observer)(void *ud, const agent_seg_event *ev);

/* "spooled", "acked", "rejected", "dropped". */
const char *agent_seg_event_name(agent_seg_event_kind k);

/* Fills and delivers one single-segment event; nothing if fn is NULL. */
void agent_seg_notify(agent_seg_observer fn, void *ud, agent_seg_event_kind kind, int64_t channel,
                      int64_t start_us, int64_t bytes, const char *reason);

#endif
