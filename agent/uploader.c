#include "agent/uploader.h"

#include "agent/upload_sched.h"
#include "common/c2d_hash.h"
#include "common/c2d_time.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An idle lane looks at the spool this often: segments are seconds long,
 * so a quarter second adds little latency and costs one LMDB read. */
#define IDLE_POLL_US 250000
/* After a local error (spool, file) a lane waits this long before trying
 * again, so a persistent fault does not spin. */
#define ERROR_RETRY_US 5000000
/* A failed publish (usually a connection lost a moment ago) is retried
 * after this delay, or on the next connect. */
#define PUBLISH_RETRY_US 1000000
/* Begins re-sent (after timeouts or malformed-message rejections) without
 * any answer before the lane starts backing off. */
#define BEGIN_FAST_TRIES 3
/* Upper bound of every backoff, seconds. */
#define BACKOFF_MAX_S 60
/* The thread wakes at least this often even with nothing to do. */
#define WAIT_MAX_US 1000000
/* Ack queue slots beyond window + lanes: room for stale and duplicate acks
 * after a reconnect. */
#define ACK_QUEUE_SLACK 64
/* The thread's frames are small (a path, the lane table for the scheduler,
 * a SHA-256 context, log formatting); the default 8 MiB is address space
 * that a process with hundreds of agents (the fleet simulator) notices. */
#define UPLOADER_STACK_BYTES (256u << 10)

typedef enum {
    REACT_PARK,    /* keep in the spool, report, move to the next segment */
    REACT_REBEGIN, /* send begin again, continue from its answer */
    REACT_RESUME,  /* continue from the ack's offset */
    REACT_REHASH,  /* check own file, then drop it or start over */
    REACT_LATER,   /* back off, then send begin again */
    REACT_HOLD,    /* keep; hold the lane (long backoff, or a new config) */
    REACT_DROP,    /* policy: remove from the spool unsent, counted */
} reaction;

/* proto/README.md, "Rejection reasons". Unknown reasons back off. */
static const struct {
    const char *reason;
    reaction react;
} reactions[] = {
    {"unsupported_version", REACT_PARK},
    {"bad_channel", REACT_PARK},
    {"too_large", REACT_PARK},
    {"conflict", REACT_PARK},
    {"bad_json", REACT_REBEGIN},
    {"bad_field", REACT_REBEGIN},
    {"out_of_range", REACT_REBEGIN},
    {"unknown_type", REACT_REBEGIN},
    {"bad_length", REACT_REBEGIN},
    {"truncated", REACT_REBEGIN},
    {"bad_magic", REACT_REBEGIN},
    {"unknown_segment", REACT_REBEGIN},
    {"oversize", REACT_REBEGIN},
    {"bad_crc", REACT_RESUME},
    {"gap", REACT_RESUME},
    {"overlap", REACT_RESUME},
    {"size_mismatch", REACT_RESUME},
    {"hash_mismatch", REACT_REHASH},
    {"storage", REACT_LATER},
    {"quota_full", REACT_HOLD},
    {"no_disk", REACT_HOLD},
    {"backup_off", REACT_DROP},
};

/* The per-segment part of a lane, saved while a segment awaits commit. */
typedef struct {
    agent_lane_phase phase; /* BEGIN (re-sent on reconnect) or END */
    agent_segment seg;
    int fd;
    uint64_t sent, confirmed;
    int rewound;
    uint64_t rewound_to;
    int64_t last_ack_us;
    unsigned begin_tries, storage_tries, hash_tries;
    int damaged;
    int pinned; /* seg is pinned in the spool by this lane */
} seg_state;

typedef struct {
    uint16_t ch;
    agent_lane_phase phase;
    agent_segment seg; /* valid unless phase == IDLE */
    int fd;
    uint64_t sent, confirmed;
    int rewound; /* rewound to rewound_to and no progress since */
    uint64_t rewound_to;
    int64_t last_ack_us;  /* last ack, or when the lane started waiting for one */
    int64_t retry_at_us;  /* BACKOFF: when to send begin again */
    int64_t next_poll_us; /* IDLE: when to look at the spool again */
    unsigned begin_tries; /* begins without an answer */
    unsigned storage_tries;
    unsigned hash_tries;
    /* The test hook changed a chunk of this segment's content since the
     * controller last discarded it: its hash_mismatch is expected. */
    int damaged;
    /* seg is pinned in the spool (agent_spool_pin): from before its first
     * begin until the lane lets go of it, so a full spool does not evict
     * what the controller may be storing. The awaiting segment keeps its
     * pin in wait.pinned. */
    int pinned;
    int64_t parked[AGENT_UPLOADER_PARK_MAX];
    size_t n_parked;
    int64_t park_floor; /* every segment up to this start is parked */
    /* The previous segment, all of it sent and end sent (or, after a
     * reconnect, begin re-sent), waiting for committed while the lane sends
     * its next one. At most one per lane; its spool entry stays until
     * committed or duplicate. Anything else that happens to it (rejection,
     * timeout, an offset short of its size) makes it the active segment
     * again and puts the one being sent back (it stays in the spool). */
    int has_wait;
    seg_state wait;
    int backup;          /* the thread's copy of want_backup */
    int held;            /* BACKOFF after quota_full / no_disk (reason in st.hold) */
    unsigned hold_tries; /* holds since the last commit */
    agent_lane_status st;
} lane;

struct agent_uploader {
    agent_uploader_cfg cfg;
    char *keep_dir;
    lane *lanes;
    size_t n;
    uint8_t *buf; /* one frame: header + chunk_bytes */
    agent_bucket bucket;
    unsigned cursor;
    int connected; /* the uploader thread's view */
    uint64_t bytes_sent, bytes_committed, n_committed, n_duplicate, n_rejections, n_stale;
    uint64_t n_backup_off;
    uint64_t rng;         /* test hook's PRNG state */
    uint64_t n_corrupted; /* frames the test hook damaged */

    pthread_t thread;
    pthread_mutex_t mu; /* guards everything below, up to smu */
    pthread_cond_t cv;
    int stop;
    c2d_msg *q;
    size_t qcap, qhead, qlen;
    int conn_flag;
    unsigned conn_gen;
    int *want_backup; /* per lane, set by agent_uploader_set_backup */
    unsigned retry_gen, backup_gen;
    uint64_t acks_dropped, acks_invalid;

    pthread_mutex_t smu; /* guards the snapshot */
    agent_uploader_status snap;
    agent_lane_status *snap_lanes;
};

const char *agent_lane_phase_name(agent_lane_phase p)
{
    switch (p) {
    case AGENT_LANE_IDLE:
        return "idle";
    case AGENT_LANE_BEGIN:
        return "begin";
    case AGENT_LANE_SENDING:
        return "sending";
    case AGENT_LANE_END:
        return "end";
    case AGENT_LANE_BACKOFF:
        return "backoff";
    }
    return "unknown";
}

static int64_t now_us(const agent_uploader *up)
{
    return up->cfg.clock_us ? up->cfg.clock_us(up->cfg.clock_ctx) : c2d_mono_us();
}

static void emit_seg(agent_uploader *up, uint16_t ch, const agent_segment *seg,
                     agent_upload_event_type type, uint64_t offset, const char *reason,
                     const char *action, int err)
{
    if (!up->cfg.on_event)
        return;
    agent_upload_event ev = {
        .type = type,
        .channel = ch,
        .start_us = seg->start_us,
        .size = seg->size,
        .offset = offset,
        .reason = reason ? reason : "",
        .action = action ? action : "",
        .err = err,
    };
    up->cfg.on_event(up->cfg.event_ctx, &ev);
}

static void emit(agent_uploader *up, const lane *l, agent_upload_event_type type, uint64_t offset,
                 const char *reason, const char *action, int err)
{
    emit_seg(up, l->ch, &l->seg, type, offset, reason, action, err);
}

static void observe(agent_uploader *up, uint16_t ch, const agent_segment *seg,
                    agent_seg_event_kind kind, const char *reason)
{
    agent_seg_notify(up->cfg.observer, up->cfg.observer_ud, kind, ch, seg->start_us,
                     (int64_t)seg->size, reason);
}

static void set_reason(lane *l, const char *reason)
{
    size_t n = strlen(reason);
    if (n >= sizeof(l->st.last_reason))
        n = sizeof(l->st.last_reason) - 1;
    memcpy(l->st.last_reason, reason, n);
    l->st.last_reason[n] = '\0';
}

/* The lane no longer waits on quota_full / no_disk for its segment. */
static void unhold(lane *l)
{
    l->held = 0;
    l->st.hold[0] = '\0';
}

/* The lane lets go of a segment it pinned (its active one or the one
 * awaiting commit): evictable again (a no-op if it was removed, which
 * releases the pin itself). */
static void unpin(agent_uploader *up, lane *l, const agent_segment *seg, int *pinned)
{
    if (*pinned)
        agent_spool_unpin(up->cfg.spool, l->ch, seg->start_us);
    *pinned = 0;
}

static void unpin_active(agent_uploader *up, lane *l)
{
    unpin(up, l, &l->seg, &l->pinned);
}

static void go_idle(agent_uploader *up, lane *l, int64_t next_poll_us)
{
    unpin_active(up, l);
    unhold(l);
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    l->phase = AGENT_LANE_IDLE;
    memset(&l->seg, 0, sizeof(l->seg));
    l->sent = l->confirmed = 0;
    l->damaged = 0;
    l->next_poll_us = next_poll_us;
}

static void backoff(lane *l, int64_t delay_us, int64_t now)
{
    l->phase = AGENT_LANE_BACKOFF;
    l->retry_at_us = now + delay_us;
}

static int is_parked(const lane *l, int64_t start)
{
    if (start <= l->park_floor)
        return 1;
    for (size_t i = 0; i < l->n_parked; i++)
        if (l->parked[i] == start)
            return 1;
    return 0;
}

static void park(agent_uploader *up, lane *l, const char *reason, int64_t now)
{
    if (l->n_parked < AGENT_UPLOADER_PARK_MAX) {
        l->parked[l->n_parked++] = l->seg.start_us;
    } else if (l->seg.start_us > l->park_floor) {
        l->park_floor = l->seg.start_us;
    }
    l->st.parked++;
    set_reason(l, reason);
    observe(up, l->ch, &l->seg, AGENT_SEG_REJECTED, reason);
    emit(up, l, AGENT_UP_PARKED, l->confirmed, reason, "kept in the spool, skipped", 0);
    go_idle(up, l, now);
}

static void drop_corrupt(agent_uploader *up, lane *l, const char *why, int64_t now)
{
    int rc = agent_spool_remove(up->cfg.spool, l->ch, l->seg.start_us, NULL);
    if (rc != 0 && rc != -ENOENT) {
        emit(up, l, AGENT_UP_ERROR, 0, "cannot remove corrupt segment", "retry later", rc);
        go_idle(up, l, now + ERROR_RETRY_US);
        return;
    }
    l->st.dropped++;
    observe(up, l->ch, &l->seg, AGENT_SEG_DROPPED, "corrupt");
    emit(up, l, AGENT_UP_DROPPED, 0, why, "removed from the spool", 0);
    go_idle(up, l, now);
}

/* Cloud backup is off for the lane's channel (device config, or the
 * controller said backup_off): the segment will never be accepted. A
 * policy drop, so counted and reported, never silent. */
static void drop_backup_off(agent_uploader *up, lane *l, int64_t now)
{
    int rc = agent_spool_remove(up->cfg.spool, l->ch, l->seg.start_us, NULL);
    if (rc != 0 && rc != -ENOENT) {
        emit(up, l, AGENT_UP_ERROR, 0, "cannot remove segment (backup off)", "retry later", rc);
        go_idle(up, l, now + ERROR_RETRY_US);
        return;
    }
    l->st.dropped_backup_off++;
    up->n_backup_off++;
    observe(up, l->ch, &l->seg, AGENT_SEG_DROPPED, "backup_off");
    emit(up, l, AGENT_UP_BACKUP_OFF, 0, "backup_off", "removed from the spool unsent", 0);
    go_idle(up, l, now);
}

/* quota_full / no_disk: 30 s, 60 s, ... 10 min. */
static int64_t hold_delay_us(unsigned k)
{
    int64_t s = AGENT_UPLOADER_HOLD_MIN_S;
    for (unsigned i = 1; i < k && s < AGENT_UPLOADER_HOLD_MAX_S; i++)
        s *= 2;
    if (s > AGENT_UPLOADER_HOLD_MAX_S)
        s = AGENT_UPLOADER_HOLD_MAX_S;
    return s * 1000000;
}

static int publish(agent_uploader *up, const void *buf, size_t len)
{
    return up->cfg.publish(up->cfg.publish_ctx, buf, len);
}

/* Publishes begin or end for a segment; 0 or -1. */
static int publish_control(agent_uploader *up, uint16_t ch, const agent_segment *seg,
                           c2d_msg_type type)
{
    c2d_msg m;
    memset(&m, 0, sizeof(m));
    m.type = type;
    m.version = C2D_PROTO_VERSION;
    m.channel = ch;
    m.start_us = seg->start_us;
    if (type == C2D_MSG_BEGIN) {
        m.duration_us = seg->duration_us;
        m.size = seg->size;
        memcpy(m.sha256, seg->sha256, sizeof(m.sha256));
    }
    char *json = c2d_msg_encode(&m);
    int rc = json ? publish(up, json, strlen(json)) : -1;
    free(json);
    return rc;
}

/* Sends a control message; on failure the lane backs off briefly. */
static int send_control(agent_uploader *up, lane *l, c2d_msg_type type, int64_t now)
{
    int rc = publish_control(up, l->ch, &l->seg, type);
    if (rc != 0) {
        backoff(l, PUBLISH_RETRY_US, now);
        return -1;
    }
    l->last_ack_us = now;
    return 0;
}

static void do_begin(agent_uploader *up, lane *l, int64_t now)
{
    l->rewound = 0;
    unhold(l);
    if (send_control(up, l, C2D_MSG_BEGIN, now) == 0)
        l->phase = AGENT_LANE_BEGIN;
}

/* The lane's active segment (end sent) becomes the one awaiting commit and
 * the lane is free to take its next segment at once. */
static void to_wait(agent_uploader *up, lane *l, int64_t now)
{
    seg_state *w = &l->wait;
    w->phase = AGENT_LANE_END;
    w->seg = l->seg;
    w->fd = l->fd;
    w->sent = l->sent;
    w->confirmed = l->confirmed;
    w->rewound = l->rewound;
    w->rewound_to = l->rewound_to;
    w->last_ack_us = l->last_ack_us;
    w->begin_tries = l->begin_tries;
    w->storage_tries = l->storage_tries;
    w->hash_tries = l->hash_tries;
    w->damaged = l->damaged;
    w->pinned = l->pinned;
    l->has_wait = 1;
    l->fd = -1;    /* now the awaiting segment's */
    l->pinned = 0; /* likewise */
    go_idle(up, l, now);
}

/* The segment awaiting commit becomes the active one again, in the phase
 * it was in; the segment being sent, if any, is put back: it stays in the
 * spool and is taken again (begin, resume from the offset) later. */
static void restore_wait(agent_uploader *up, lane *l)
{
    seg_state *w = &l->wait;
    if (l->fd >= 0)
        close(l->fd);
    unpin_active(up, l);
    unhold(l);
    l->phase = w->phase;
    l->seg = w->seg;
    l->fd = w->fd;
    l->sent = w->sent;
    l->confirmed = w->confirmed;
    l->rewound = w->rewound;
    l->rewound_to = w->rewound_to;
    l->last_ack_us = w->last_ack_us;
    l->begin_tries = w->begin_tries;
    l->storage_tries = w->storage_tries;
    l->hash_tries = w->hash_tries;
    l->damaged = w->damaged;
    l->pinned = w->pinned;
    l->has_wait = 0;
    memset(w, 0, sizeof(*w));
    w->fd = -1;
}

static void do_end(agent_uploader *up, lane *l, int64_t now)
{
    if (send_control(up, l, C2D_MSG_END, now) == 0) {
        l->phase = AGENT_LANE_END;
        if (!l->has_wait)
            to_wait(up, l, now);
    }
}

/* Sends begin again after something went wrong; backs off once begins have
 * gone unanswered several times in a row. */
static void retry_begin(agent_uploader *up, lane *l, int64_t now)
{
    l->begin_tries++;
    if (l->begin_tries > BEGIN_FAST_TRIES) {
        backoff(l, agent_backoff_us(l->begin_tries - BEGIN_FAST_TRIES, BACKOFF_MAX_S), now);
        return;
    }
    do_begin(up, l, now);
}

static ssize_t pread_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, buf + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* 1 if the lane's file still has the size and SHA-256 it was queued with,
 * 0 if not, -errno if it cannot be read. Uses the send buffer. */
static int file_intact(agent_uploader *up, lane *l)
{
    struct stat st;
    if (fstat(l->fd, &st) != 0)
        return -errno;
    if ((uint64_t)st.st_size != l->seg.size)
        return 0;
    c2d_sha256 h;
    c2d_sha256_init(&h);
    uint64_t off = 0;
    while (off < l->seg.size) {
        uint64_t left = l->seg.size - off;
        size_t want = left < up->cfg.chunk_bytes ? (size_t)left : up->cfg.chunk_bytes;
        ssize_t r = pread_full(l->fd, up->buf, want, off);
        if (r < 0 || (size_t)r != want) {
            c2d_sha256_discard(&h);
            return r < 0 ? (int)r : 0;
        }
        c2d_sha256_update(&h, up->buf, want);
        off += want;
    }
    char hex[65];
    c2d_sha256_final_hex(&h, hex);
    return strcmp(hex, l->seg.sha256) == 0;
}

/* Takes the channel's oldest queued segment that is not parked. */
static void activate(agent_uploader *up, lane *l, int64_t now)
{
    agent_segment seg;
    int64_t after = l->park_floor;
    int rc;
    for (;;) {
        rc = agent_spool_next(up->cfg.spool, l->ch, after, &seg);
        if (rc != 0 ||
            (!is_parked(l, seg.start_us) && !(l->has_wait && seg.start_us == l->wait.seg.start_us)))
            break;
        after = seg.start_us; /* parked, or the one awaiting commit */
    }
    if (rc == -ENOENT) {
        l->next_poll_us = now + IDLE_POLL_US;
        return;
    }
    if (rc != 0) {
        emit(up, l, AGENT_UP_ERROR, 0, "spool read failed", "retry later", rc);
        l->next_poll_us = now + ERROR_RETRY_US;
        return;
    }
    rc = agent_spool_pin(up->cfg.spool, l->ch, seg.start_us);
    if (rc == -ENOENT) {
        /* Evicted since it was read; the next poll sees the new head. */
        l->next_poll_us = now;
        return;
    }
    if (rc != 0) {
        emit_seg(up, l->ch, &seg, AGENT_UP_ERROR, 0, "cannot pin segment", "retry later", rc);
        l->next_poll_us = now + ERROR_RETRY_US;
        return;
    }
    l->seg = seg;
    l->pinned = 1;
    if (!l->backup) {
        drop_backup_off(up, l, now);
        return;
    }
    char path[4096];
    rc = agent_spool_path(up->cfg.spool, l->ch, seg.start_us, path, sizeof(path));
    int fd = rc == 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (rc == 0 && fd < 0)
        rc = -errno;
    if (rc == -ENOENT) {
        /* Evicted between the two reads; the next poll sees the new head. */
        go_idle(up, l, now + IDLE_POLL_US);
        return;
    }
    if (rc != 0) {
        emit(up, l, AGENT_UP_ERROR, 0, "cannot open segment file", "park", rc);
        park(up, l, "io_error", now);
        return;
    }
    l->fd = fd;
    l->sent = l->confirmed = 0;
    l->begin_tries = l->storage_tries = l->hash_tries = 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != seg.size) {
        drop_corrupt(up, l, "file size differs from the queued size", now);
        return;
    }
    do_begin(up, l, now);
}

/* splitmix64: the test hook's choices; quality is ample for that. */
static uint64_t next_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void send_chunk(agent_uploader *up, lane *l, int64_t now)
{
    uint64_t left = l->seg.size - l->sent;
    uint32_t len = left < up->cfg.chunk_bytes ? (uint32_t)left : up->cfg.chunk_bytes;
    uint8_t *payload = up->buf + C2D_CHUNK_HEADER_LEN;
    ssize_t r = pread_full(l->fd, payload, len, l->sent);
    if (r < 0) {
        emit(up, l, AGENT_UP_ERROR, l->sent, "segment read failed", "park", (int)r);
        park(up, l, "io_error", now);
        return;
    }
    if ((size_t)r != len) {
        drop_corrupt(up, l, "file shorter than its queued size", now);
        return;
    }
    c2d_chunk_header_encode(up->buf, l->ch, l->seg.start_us, l->sent, payload, len);
    if (up->cfg.corrupt_permille > 0 && next_rand(&up->rng) % 1000 < up->cfg.corrupt_permille) {
        /* Test hook: the spool file stays intact; only this copy changes. */
        uint64_t x = next_rand(&up->rng);
        payload[x % len] ^= (uint8_t)(1u + (x >> 32) % 255u);
        if (up->cfg.corrupt_content) {
            c2d_chunk_header_encode(up->buf, l->ch, l->seg.start_us, l->sent, payload, len);
            l->damaged = 1;
        }
        up->n_corrupted++;
    }
    if (publish(up, up->buf, C2D_CHUNK_HEADER_LEN + (size_t)len) != 0) {
        backoff(l, PUBLISH_RETRY_US, now);
        return;
    }
    if (l->sent == l->confirmed)
        l->last_ack_us = now; /* the ack timeout runs from the first unconfirmed chunk */
    l->sent += len;
    up->bytes_sent += len;
    if (l->sent == l->seg.size)
        do_end(up, l, now);
}

static void finish(agent_uploader *up, lane *l, int duplicate, int64_t now)
{
    int rc = agent_spool_remove(up->cfg.spool, l->ch, l->seg.start_us, up->keep_dir);
    if (rc != 0 && rc != -ENOENT) {
        emit(up, l, AGENT_UP_ERROR, 0, "cannot remove acknowledged segment", "retry later", rc);
        go_idle(up, l, now + ERROR_RETRY_US);
        return;
    }
    l->st.committed++;
    l->hold_tries = 0;
    up->bytes_committed += l->seg.size;
    if (duplicate)
        up->n_duplicate++;
    else
        up->n_committed++;
    observe(up, l->ch, &l->seg, AGENT_SEG_ACKED, NULL);
    emit(up, l, duplicate ? AGENT_UP_DUPLICATE : AGENT_UP_COMMITTED, l->seg.size, "", "", 0);
    go_idle(up, l, now);
}

/* committed or duplicate for the segment awaiting commit. */
static void finish_wait(agent_uploader *up, lane *l, int duplicate, int64_t now)
{
    seg_state *w = &l->wait;
    int rc = agent_spool_remove(up->cfg.spool, l->ch, w->seg.start_us, up->keep_dir);
    if (rc != 0 && rc != -ENOENT) {
        /* Still queued: the lane takes it again (begin, duplicate) later. */
        emit_seg(up, l->ch, &w->seg, AGENT_UP_ERROR, 0, "cannot remove acknowledged segment",
                 "retry later", rc);
    } else {
        l->st.committed++;
        l->hold_tries = 0;
        up->bytes_committed += w->seg.size;
        if (duplicate)
            up->n_duplicate++;
        else
            up->n_committed++;
        observe(up, l->ch, &w->seg, AGENT_SEG_ACKED, NULL);
        emit_seg(up, l->ch, &w->seg, duplicate ? AGENT_UP_DUPLICATE : AGENT_UP_COMMITTED,
                 w->seg.size, "", "", 0);
    }
    if (w->fd >= 0)
        close(w->fd);
    unpin(up, l, &l->wait.seg,
          &l->wait.pinned); /* removed: released already; queued: taken later */
    memset(w, 0, sizeof(*w));
    w->fd = -1;
    l->has_wait = 0;
    /* The next segment may already be all sent and waiting for its turn. */
    if (l->phase == AGENT_LANE_END)
        to_wait(up, l, now);
}

static int active(const lane *l)
{
    return l->phase != AGENT_LANE_IDLE;
}

static void handle_rejection(agent_uploader *up, lane *l, const c2d_msg *m, int64_t now)
{
    reaction react = REACT_LATER;
    for (size_t i = 0; i < sizeof(reactions) / sizeof(reactions[0]); i++)
        if (strcmp(reactions[i].reason, m->reason) == 0)
            react = reactions[i].react;
    const char *reason = m->reason[0] ? m->reason : "unspecified";
    uint64_t off = m->offset < l->seg.size ? m->offset : l->seg.size;
    l->st.rejections++;
    up->n_rejections++;
    set_reason(l, reason);

    switch (react) {
    case REACT_PARK:
        emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "park", 0);
        park(up, l, reason, now);
        return;
    case REACT_REBEGIN:
        /* While a begin is outstanding these are echoes of chunks sent
         * before it; its answer (or the timeout) decides. */
        if (l->phase == AGENT_LANE_BEGIN || l->phase == AGENT_LANE_BACKOFF) {
            emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "ignored (begin outstanding)", 0);
            return;
        }
        emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "resend begin", 0);
        retry_begin(up, l, now);
        return;
    case REACT_RESUME:
        if (l->phase != AGENT_LANE_SENDING && l->phase != AGENT_LANE_END) {
            emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "ignored (begin outstanding)", 0);
            return;
        }
        /* Every chunk in flight behind a lost one is refused with the same
         * offset: rewind once per offset, not once per refusal. */
        if (l->rewound && off == l->rewound_to) {
            emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "ignored (already resumed)", 0);
            return;
        }
        emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "resume from offset", 0);
        l->rewound = 1;
        l->rewound_to = off;
        l->sent = l->confirmed = off;
        l->phase = AGENT_LANE_SENDING;
        if (l->sent == l->seg.size)
            do_end(up, l, now);
        return;
    case REACT_REHASH: {
        if (l->phase == AGENT_LANE_BACKOFF) {
            emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "ignored (backing off)", 0);
            return;
        }
        int ok = file_intact(up, l);
        if (ok < 0) {
            emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "park (file unreadable)", 0);
            park(up, l, "io_error", now);
        } else if (ok == 0) {
            emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "drop (own file corrupt)", 0);
            drop_corrupt(up, l, "file does not match its SHA-256", now);
        } else if (l->damaged) {
            /* The test hook changed a chunk: expected, not a retry. */
            emit(up, l, AGENT_UP_REJECTED, m->offset, reason,
                 "damaged by the test hook, send again", 0);
            l->damaged = 0;
            l->begin_tries = 0;
            do_begin(up, l, now);
        } else if (++l->hash_tries > AGENT_UPLOADER_HASH_RETRIES) {
            emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "park (retries exhausted)", 0);
            park(up, l, reason, now);
        } else {
            emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "file intact, send again", 0);
            l->begin_tries = 0;
            do_begin(up, l, now);
        }
        return;
    }
    case REACT_LATER:
        if (l->phase == AGENT_LANE_BACKOFF) {
            emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "ignored (backing off)", 0);
            return;
        }
        l->storage_tries++;
        emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "retry after backoff", 0);
        backoff(l, agent_backoff_us(l->storage_tries, BACKOFF_MAX_S), now);
        return;
    case REACT_HOLD: {
        if (l->phase == AGENT_LANE_BACKOFF) {
            emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "ignored (backing off)", 0);
            return;
        }
        /* The same for the channel's next segments: hold the whole lane
         * rather than try them one by one. */
        l->st.holds++;
        int64_t delay = hold_delay_us(++l->hold_tries);
        char action[80];
        snprintf(action, sizeof(action), "kept in the spool, retry in %llds or on a new config",
                 (long long)(delay / 1000000));
        emit(up, l, AGENT_UP_REJECTED, m->offset, reason, action, 0);
        observe(up, l->ch, &l->seg, AGENT_SEG_REJECTED, reason);
        backoff(l, delay, now);
        l->held = 1;
        snprintf(l->st.hold, sizeof(l->st.hold), "%s", reason);
        return;
    }
    case REACT_DROP:
        emit(up, l, AGENT_UP_REJECTED, m->offset, reason, "remove from the spool", 0);
        drop_backup_off(up, l, now);
        return;
    }
}

static lane *find_lane(agent_uploader *up, uint16_t ch)
{
    for (size_t i = 0; i < up->n; i++)
        if (up->lanes[i].ch == ch)
            return &up->lanes[i];
    return NULL;
}

static void handle_ack(agent_uploader *up, const c2d_msg *m, int64_t now);

/* An ack for the segment awaiting commit. committed / duplicate finish it,
 * offsets are noted; after a reconnect's begin an offset of its full size
 * is answered with end again. Anything else (a rejection, an offset short of
 * its size) makes it the active segment again and is handled as such. */
static void handle_wait_ack(agent_uploader *up, lane *l, const c2d_msg *m, int64_t now)
{
    seg_state *w = &l->wait;
    uint64_t off = m->offset < w->seg.size ? m->offset : w->seg.size;
    switch (m->status) {
    case C2D_ACK_COMMITTED:
    case C2D_ACK_DUPLICATE:
        finish_wait(up, l, m->status == C2D_ACK_DUPLICATE, now);
        return;
    case C2D_ACK_OFFSET:
        w->last_ack_us = now;
        if (w->phase == AGENT_LANE_END) {
            if (off > w->confirmed)
                w->confirmed = off;
            return;
        }
        if (off == w->seg.size && publish_control(up, l->ch, &w->seg, C2D_MSG_END) == 0) {
            w->phase = AGENT_LANE_END;
            w->begin_tries = 0;
            w->sent = w->confirmed = off;
            w->rewound = 0;
            return;
        }
        break;
    case C2D_ACK_REJECTED:
        break;
    }
    restore_wait(up, l);
    handle_ack(up, m, now);
}

static void handle_ack(agent_uploader *up, const c2d_msg *m, int64_t now)
{
    lane *l = find_lane(up, m->channel);
    if (l && l->has_wait && l->wait.seg.start_us == m->start_us) {
        handle_wait_ack(up, l, m, now);
        return;
    }
    if (!l || !active(l) || l->seg.start_us != m->start_us) {
        up->n_stale++;
        if (l && m->status == C2D_ACK_REJECTED) {
            lane tmp = *l;
            tmp.seg.start_us = m->start_us;
            tmp.seg.size = 0;
            emit(up, &tmp, AGENT_UP_REJECTED, m->offset, m->reason,
                 "ignored (not the active segment)", 0);
        }
        return;
    }
    l->last_ack_us = now;
    uint64_t off = m->offset < l->seg.size ? m->offset : l->seg.size;
    switch (m->status) {
    case C2D_ACK_OFFSET:
        if (l->phase == AGENT_LANE_BEGIN) {
            l->begin_tries = 0;
            l->sent = l->confirmed = off;
            l->phase = AGENT_LANE_SENDING;
            if (off > 0)
                emit(up, l, AGENT_UP_RESUMED, off, "", "", 0);
            if (l->sent == l->seg.size)
                do_end(up, l, now);
        } else if (l->phase == AGENT_LANE_SENDING) {
            if (off > l->confirmed)
                l->rewound = 0;
            l->confirmed = off;
            if (l->sent < off)
                l->sent = off;
            if (l->sent == l->seg.size)
                do_end(up, l, now);
        } else if (l->phase == AGENT_LANE_END && off > l->confirmed)
            l->confirmed = off; /* acks for the last chunks, after end went out */
        /* BACKOFF: an offset from before; the next begin asks again. */
        break;
    case C2D_ACK_COMMITTED:
    case C2D_ACK_DUPLICATE:
        l->confirmed = l->seg.size;
        finish(up, l, m->status == C2D_ACK_DUPLICATE, now);
        break;
    case C2D_ACK_REJECTED:
        handle_rejection(up, l, m, now);
        break;
    }
}

static void on_connection(agent_uploader *up, int connected, int64_t now)
{
    up->connected = connected;
    if (!connected)
        return;
    /* The controller may have lost what was in flight, or more: ask it. */
    for (size_t i = 0; i < up->n; i++) {
        lane *l = &up->lanes[i];
        if (l->has_wait) {
            seg_state *w = &l->wait;
            if (publish_control(up, l->ch, &w->seg, C2D_MSG_BEGIN) != 0) {
                restore_wait(up, l);
                backoff(l, PUBLISH_RETRY_US, now);
                continue;
            }
            w->phase = AGENT_LANE_BEGIN;
            w->begin_tries = 0;
            w->rewound = 0;
            w->last_ack_us = now;
        }
        if (l->phase == AGENT_LANE_BEGIN || l->phase == AGENT_LANE_SENDING ||
            l->phase == AGENT_LANE_END) {
            l->begin_tries = 0;
            do_begin(up, l, now);
        }
    }
}

static int awaiting(const lane *l)
{
    return l->phase == AGENT_LANE_BEGIN || l->phase == AGENT_LANE_END ||
           (l->phase == AGENT_LANE_SENDING && l->sent > l->confirmed);
}

static void min_wake(int64_t *wake, int64_t t)
{
    if (t < *wake)
        *wake = t;
}

static void work(agent_uploader *up, int64_t now, int64_t *wake)
{
    if (!up->connected)
        return;
    for (size_t i = 0; i < up->n; i++) {
        lane *l = &up->lanes[i];
        if (l->has_wait && now - l->wait.last_ack_us >= up->cfg.ack_timeout_us) {
            /* Handled as before this lane went on: the awaiting segment is
             * the active one again, the one being sent goes back. */
            restore_wait(up, l);
            emit(up, l, AGENT_UP_TIMEOUT, l->confirmed, "no ack", "resend begin", 0);
            retry_begin(up, l, now);
            continue;
        }
        if (l->phase == AGENT_LANE_IDLE && now >= l->next_poll_us)
            activate(up, l, now);
        else if (l->phase == AGENT_LANE_BACKOFF && now >= l->retry_at_us && !l->backup)
            drop_backup_off(up, l, now);
        else if (l->phase == AGENT_LANE_BACKOFF && now >= l->retry_at_us)
            do_begin(up, l, now);
        else if (awaiting(l) && now - l->last_ack_us >= up->cfg.ack_timeout_us) {
            emit(up, l, AGENT_UP_TIMEOUT, l->confirmed, "no ack", "resend begin", 0);
            retry_begin(up, l, now);
        }
    }

    agent_sched_lane sl[AGENT_UPLOADER_LANES_MAX];
    for (;;) {
        for (size_t i = 0; i < up->n; i++) {
            const lane *l = &up->lanes[i];
            sl[i].ready = l->phase == AGENT_LANE_SENDING && l->sent < l->seg.size;
            sl[i].in_flight =
                l->phase == AGENT_LANE_SENDING
                    ? agent_sched_in_flight(l->confirmed, l->sent, up->cfg.chunk_bytes)
                    : 0;
        }
        unsigned saved = up->cursor;
        int idx = agent_sched_pick(&up->cursor, sl, up->n, up->cfg.window_chunks);
        if (idx < 0)
            break;
        lane *l = &up->lanes[idx];
        uint64_t left = l->seg.size - l->sent;
        uint64_t frame =
            C2D_CHUNK_HEADER_LEN + (left < up->cfg.chunk_bytes ? left : up->cfg.chunk_bytes);
        int64_t wait = agent_bucket_wait(&up->bucket, frame, now);
        if (wait > 0) {
            up->cursor = saved; /* the same lane goes first when tokens come */
            min_wake(wake, now + wait);
            break;
        }
        agent_bucket_take(&up->bucket, frame, now);
        send_chunk(up, l, now);
        now = now_us(up);
    }

    for (size_t i = 0; i < up->n; i++) {
        const lane *l = &up->lanes[i];
        if (l->has_wait)
            min_wake(wake, l->wait.last_ack_us + up->cfg.ack_timeout_us);
        if (l->phase == AGENT_LANE_IDLE)
            min_wake(wake, l->next_poll_us);
        else if (l->phase == AGENT_LANE_BACKOFF)
            min_wake(wake, l->retry_at_us);
        else if (awaiting(l))
            min_wake(wake, l->last_ack_us + up->cfg.ack_timeout_us);
    }
}

static void snapshot(agent_uploader *up, int64_t now)
{
    pthread_mutex_lock(&up->smu);
    agent_uploader_status *s = &up->snap;
    s->connected = up->connected;
    s->bytes_sent = up->bytes_sent;
    s->bytes_committed = up->bytes_committed;
    s->segments_committed = up->n_committed;
    s->segments_duplicate = up->n_duplicate;
    s->rejections = up->n_rejections;
    s->acks_stale = up->n_stale;
    s->dropped_backup_off = up->n_backup_off;
    s->corrupted_frames = up->n_corrupted;
    s->held = 0;
    s->parked = 0;
    s->busy = 0;
    for (size_t i = 0; i < up->n; i++) {
        lane *l = &up->lanes[i];
        l->st.channel = l->ch;
        l->st.phase = l->phase;
        l->st.start_us = l->seg.start_us;
        l->st.size = l->seg.size;
        l->st.sent = l->sent;
        l->st.confirmed = l->confirmed;
        l->st.awaiting_start_us = l->has_wait ? l->wait.seg.start_us : 0;
        l->st.backup = l->backup;
        l->st.hold_retry_in_us = 0;
        if (l->held && l->phase == AGENT_LANE_BACKOFF) {
            int64_t left = l->retry_at_us - now;
            l->st.hold_retry_in_us = left > 0 ? left : 0;
            s->held++;
        }
        up->snap_lanes[i] = l->st;
        s->parked += l->st.parked; /* parked segments stay queued until the next start */
        s->busy |= l->phase != AGENT_LANE_IDLE || l->has_wait;
    }
    pthread_mutex_unlock(&up->smu);
}

/* New settings from agent_uploader_set_backup / _retry_held, on the
 * uploader thread. */
static void apply_settings(agent_uploader *up, const int *backup, int retry, int64_t now)
{
    for (size_t i = 0; i < up->n; i++) {
        lane *l = &up->lanes[i];
        int was = l->backup;
        l->backup = backup[i];
        /* A held segment of a channel now off is dropped at once; with a
         * new config every held lane asks again now. */
        if (l->held && l->phase == AGENT_LANE_BACKOFF && (retry || (was && !l->backup))) {
            l->retry_at_us = now;
            l->hold_tries = 0;
        }
    }
}

static void *run(void *arg)
{
    agent_uploader *up = arg;
    unsigned seen_gen = 0, seen_backup = 0, seen_retry = 0;
    int backup[AGENT_UPLOADER_LANES_MAX];
    pthread_mutex_lock(&up->mu);
    while (!up->stop) {
        if (up->qlen > 0) {
            c2d_msg m = up->q[up->qhead];
            up->qhead = (up->qhead + 1) % up->qcap;
            up->qlen--;
            pthread_mutex_unlock(&up->mu);
            handle_ack(up, &m, now_us(up));
            pthread_mutex_lock(&up->mu);
            continue;
        }
        if (up->conn_gen != seen_gen) {
            seen_gen = up->conn_gen;
            int c = up->conn_flag;
            pthread_mutex_unlock(&up->mu);
            on_connection(up, c, now_us(up));
            pthread_mutex_lock(&up->mu);
            continue;
        }
        if (up->backup_gen != seen_backup || up->retry_gen != seen_retry) {
            int retry = up->retry_gen != seen_retry;
            seen_backup = up->backup_gen;
            seen_retry = up->retry_gen;
            for (size_t i = 0; i < up->n; i++)
                backup[i] = up->want_backup[i];
            pthread_mutex_unlock(&up->mu);
            apply_settings(up, backup, retry, now_us(up));
            pthread_mutex_lock(&up->mu);
            continue;
        }
        pthread_mutex_unlock(&up->mu);

        int64_t now = now_us(up);
        int64_t wake = now + WAIT_MAX_US;
        work(up, now, &wake);
        snapshot(up, now_us(up));

        pthread_mutex_lock(&up->mu);
        if (!up->stop && up->qlen == 0 && up->conn_gen == seen_gen &&
            up->backup_gen == seen_backup && up->retry_gen == seen_retry) {
            int64_t delay = wake - now_us(up);
            if (delay > WAIT_MAX_US)
                delay = WAIT_MAX_US; /* a test clock may jump */
            if (delay > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                int64_t ns = (int64_t)ts.tv_nsec + (delay % 1000000) * 1000;
                ts.tv_sec += (time_t)(delay / 1000000 + ns / 1000000000);
                ts.tv_nsec = (long)(ns % 1000000000);
                pthread_cond_timedwait(&up->cv, &up->mu, &ts);
            }
        }
    }
    pthread_mutex_unlock(&up->mu);
    return NULL;
}

static void destroy(agent_uploader *up)
{
    if (up->lanes)
        for (size_t i = 0; i < up->n; i++) {
            lane *l = &up->lanes[i];
            if (l->fd >= 0)
                close(l->fd);
            if (l->has_wait && l->wait.fd >= 0)
                close(l->wait.fd);
            /* The spool outlives the uploader (and a new one may start on
             * it): what this one was sending is evictable again. */
            unpin_active(up, l);
            if (l->has_wait)
                unpin(up, l, &l->wait.seg, &l->wait.pinned);
        }
    free(up->lanes);
    free(up->snap_lanes);
    free(up->q);
    free(up->want_backup);
    free(up->buf);
    free(up->keep_dir);
    free(up);
}

int agent_uploader_start(const agent_uploader_cfg *cfg, agent_uploader **out)
{
    if (!cfg->spool || !cfg->publish || cfg->n_channels == 0 ||
        cfg->n_channels > AGENT_UPLOADER_LANES_MAX || cfg->chunk_bytes == 0 ||
        cfg->chunk_bytes > C2D_CHUNK_MAX || cfg->window_chunks == 0 || cfg->ack_timeout_us <= 0 ||
        cfg->corrupt_permille > 1000)
        return -EINVAL;
    agent_uploader *up = calloc(1, sizeof(*up));
    if (!up)
        return -ENOMEM;
    up->cfg = *cfg;
    up->n = cfg->n_channels;
    up->rng = cfg->corrupt_seed;
    up->qcap = cfg->window_chunks + 4 * cfg->n_channels + ACK_QUEUE_SLACK;
    up->lanes = calloc(up->n, sizeof(*up->lanes));
    up->snap_lanes = calloc(up->n, sizeof(*up->snap_lanes));
    up->q = calloc(up->qcap, sizeof(*up->q));
    up->want_backup = calloc(up->n, sizeof(*up->want_backup));
    up->buf = malloc(C2D_CHUNK_HEADER_LEN + (size_t)cfg->chunk_bytes);
    if (cfg->keep_sent_dir && cfg->keep_sent_dir[0])
        up->keep_dir = strdup(cfg->keep_sent_dir);
    if (!up->lanes || !up->snap_lanes || !up->q || !up->buf || !up->want_backup ||
        (cfg->keep_sent_dir && cfg->keep_sent_dir[0] && !up->keep_dir)) {
        destroy(up);
        return -ENOMEM;
    }
    up->cfg.keep_sent_dir = up->keep_dir;
    up->cfg.channels = NULL; /* not kept: the lanes hold the ids */
    int64_t now = now_us(up);
    for (size_t i = 0; i < up->n; i++) {
        lane *l = &up->lanes[i];
        l->ch = cfg->channels[i];
        l->backup = 1;
        up->want_backup[i] = 1;
        l->fd = -1;
        l->wait.fd = -1;
        l->phase = AGENT_LANE_IDLE;
        l->park_floor = INT64_MIN;
        l->next_poll_us = now;
    }
    agent_bucket_init(&up->bucket, cfg->rate_limit_bps,
                      C2D_CHUNK_HEADER_LEN + (uint64_t)cfg->chunk_bytes, now);
    snapshot(up, now);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&up->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&up->mu, NULL);
    pthread_mutex_init(&up->smu, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, UPLOADER_STACK_BYTES);
    int rc = pthread_create(&up->thread, &attr, run, up);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_cond_destroy(&up->cv);
        pthread_mutex_destroy(&up->mu);
        pthread_mutex_destroy(&up->smu);
        destroy(up);
        return -rc;
    }
    *out = up;
    return 0;
}

void agent_uploader_stop(agent_uploader *up)
{
    if (!up)
        return;
    pthread_mutex_lock(&up->mu);
    up->stop = 1;
    pthread_cond_signal(&up->cv);
    pthread_mutex_unlock(&up->mu);
    pthread_join(up->thread, NULL);
    pthread_cond_destroy(&up->cv);
    pthread_mutex_destroy(&up->mu);
    pthread_mutex_destroy(&up->smu);
    destroy(up);
}

void agent_uploader_set_connected(agent_uploader *up, int connected)
{
    pthread_mutex_lock(&up->mu);
    up->conn_flag = connected ? 1 : 0;
    up->conn_gen++;
    pthread_cond_signal(&up->cv);
    pthread_mutex_unlock(&up->mu);
}

int agent_uploader_on_ack(agent_uploader *up, const void *payload, size_t len)
{
    c2d_msg m;
    c2d_status st = c2d_msg_decode(payload, len, &m);
    int rc = 0;
    pthread_mutex_lock(&up->mu);
    if (st != C2D_OK || m.type != C2D_MSG_ACK) {
        up->acks_invalid++;
        rc = -1;
    } else if (up->qlen == up->qcap) {
        up->acks_dropped++;
        rc = -1;
    } else {
        up->q[(up->qhead + up->qlen) % up->qcap] = m;
        up->qlen++;
        pthread_cond_signal(&up->cv);
    }
    pthread_mutex_unlock(&up->mu);
    return rc;
}

int agent_uploader_set_backup(agent_uploader *up, uint16_t ch, int on)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&up->mu);
    for (size_t i = 0; i < up->n; i++)
        if (up->lanes[i].ch == ch) {
            if (up->want_backup[i] != (on ? 1 : 0)) {
                up->want_backup[i] = on ? 1 : 0;
                up->backup_gen++;
                pthread_cond_signal(&up->cv);
            }
            rc = 0;
        }
    pthread_mutex_unlock(&up->mu);
    return rc;
}

void agent_uploader_retry_held(agent_uploader *up)
{
    pthread_mutex_lock(&up->mu);
    up->retry_gen++;
    pthread_cond_signal(&up->cv);
    pthread_mutex_unlock(&up->mu);
}

size_t agent_uploader_get_status(agent_uploader *up, agent_uploader_status *st,
                                 agent_lane_status *lanes, size_t n)
{
    pthread_mutex_lock(&up->mu);
    uint64_t dropped = up->acks_dropped, invalid = up->acks_invalid;
    pthread_mutex_unlock(&up->mu);
    pthread_mutex_lock(&up->smu);
    if (st) {
        *st = up->snap;
        st->acks_dropped = dropped;
        st->acks_invalid = invalid;
    }
    size_t k = n < up->n ? n : up->n;
    if (lanes)
        memcpy(lanes, up->snap_lanes, k * sizeof(*lanes));
    pthread_mutex_unlock(&up->smu);
    return up->n;
}
