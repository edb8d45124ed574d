/* Ingest: the controller's side of the upload exchange (proto/README.md),
 * free of MQTT so it can be unit tested and fuzzed. Input: the device id
 * (from the topic, never from the payload) and the bytes of one message on
 * c2d/v1/d/{device}/seg. Output: at most one ack per message, handed to a
 * callback, which the daemon publishes on c2d/v1/d/{device}/ack.
 *
 * Uploads are reassembled in partial files (ctl_store partial area) with a
 * partial record in the ledger, so they survive a restart. At `end` the
 * size and SHA-256 are checked, the file is fsync'd and moved into the
 * store, its directory fsync'd, and the segment record and usage are
 * committed in one LMDB transaction; only then is `committed` answered.
 * That commit (controller/committer.h) runs on the caller's thread, or, once
 * ctl_ingest_set_committer is called, is handed to a committer and
 * answered later through ctl_ingest_commit_done, so that ingest goes on
 * while the disk syncs. While a segment is being committed, a repeated
 * begin is answered `offset` = size, a repeated end is answered with the
 * commit's outcome, and redelivered chunks are ignored: no second record.
 *
 * Bounds (nothing is ever allocated in proportion to a size a device
 * declares): per message at most C2D_CHUNK_MAX bytes are handled, in the
 * caller's buffer; at most CTL_INGEST_ENTRIES_MAX uploads keep hashing state
 * in memory and at most CTL_INGEST_OPEN_FILES_MAX of them an open file
 * (least recently used first to go: an evicted upload is reloaded from its
 * partial file on its next message); a device has at most
 * CTL_INGEST_PARTIALS_PER_DEVICE uploads in progress.
 *
 * Not thread safe: one thread drives an ingest (a committer works on the
 * files and records it hands over, never on the ingest). */
#ifndef CTL_INGEST_H
#define CTL_INGEST_H

#include "controller/committer.h"
#include "controller/ledger.h"
#include "controller/store.h"
#include "proto/c2d_proto.h"

#include <stddef.h>
#include <stdint.h>

/* Uploads in progress per device. An agent uploads one segment per channel
 * at a time; 64 leaves room for leftovers of abandoned uploads while keeping
 * one device from filling the disk with partial files. */
#define CTL_INGEST_PARTIALS_PER_DEVICE 64

/* When a device is at its partial limit, its oldest partial upload is
 * discarded to make room if it began longer ago than this (an agent
 * abandons a segment when its spool overflows and never finishes it). */
#define CTL_INGEST_PARTIAL_STALE_US (INT64_C(24) * 3600 * 1000000)

/* Uploads with hashing state in memory (~250 bytes each): a restart or an
 * eviction costs one re-read of the partial file, so keep plenty. */
#define CTL_INGEST_ENTRIES_MAX 4096

/* Partial files kept open: well under the usual 1024 descriptor limit. */
#define CTL_INGEST_OPEN_FILES_MAX 128

/* Repeated ends of a segment being committed that are each answered when
 * the commit is done; more are answered once together. Agents repeat an
 * end only after a timeout or a reconnect. */
#define CTL_INGEST_DEFERRED_ENDS_MAX 4

/* Reason sent when a device is at CTL_INGEST_PARTIALS_PER_DEVICE: the
 * protocol's reason for "the controller cannot take it now, retry later". */
#define CTL_REASON_PARTIAL_LIMIT "storage"

typedef struct ctl_ingest ctl_ingest;

typedef struct {
    uint64_t max_segment_bytes; /* a begin declaring more is refused (too_large) */
    uint32_t max_channels;      /* channels >= this are refused (bad_channel) */
} ctl_ingest_limits;

/* Creates an ingest over an open, writable ledger and store (borrowed: they
 * must outlive the ingest). Returns 0 or -errno (-EINVAL for zero limits,
 * -ENOMEM). *out is set only on success. */
int ctl_ingest_new(ctl_ledger *ledger, ctl_store *store, const ctl_ingest_limits *lim,
                   ctl_ingest **out);

/* Closes the partial files and frees. Uploads in progress stay on disk.
 * NULL is a no-op. */
void ctl_ingest_free(ctl_ingest *ing);

typedef struct {
    uint64_t partials;                /* uploads in progress, resumable */
    uint64_t partial_files_deleted;   /* partial files without a record */
    uint64_t partial_records_dropped; /* records whose file is gone */
    uint64_t segments_recovered;      /* moved into the store but not committed
                                         before a crash; committed now */
    uint64_t store_orphans;           /* stored files without a ledger record:
                                         left alone for a later fsck */
    uint64_t skipped_names;           /* files with names the store never makes */
} ctl_recovery;

/* Brings disk and ledger into agreement after a start: deletes partial files
 * that have no partial record, drops partial records whose file is gone
 * (unless the file already reached the store with the right hash: then its
 * commit is completed), and counts stored files without a ledger record.
 * Call once after ctl_ingest_new, before handling messages. 0 or -errno. */
int ctl_ingest_recover(ctl_ingest *ing, ctl_recovery *out);

/* Receives the outcome of one message.
 *  device: the device the message came from (valid id).
 *  ack:    the ack to publish on c2d/v1/d/{device}/ack, or NULL when nothing
 *          is to be sent (a QoS 1 redelivery of bytes already held).
 *  detail: one human-readable line explaining the outcome, for the log
 *          (never NULL; may be empty for a plain offset ack).
 * The pointers are valid only during the call. */
typedef void (*ctl_ack_sink)(void *ud, const char *device, const c2d_msg *ack, const char *detail);

typedef enum {
    CTL_INGEST_ACCEPTED = 0, /* answered offset, committed or duplicate */
    CTL_INGEST_IGNORED,      /* redelivery: sink called with ack NULL */
    CTL_INGEST_REJECTED,     /* answered rejected (reason in the ack) */
    CTL_INGEST_BAD_DEVICE,   /* device id invalid: sink not called */
    CTL_INGEST_PENDING,      /* end handed to the committer (or one is already
                                there): answered by ctl_ingest_commit_done;
                                sink not called. Only with a committer. */
} ctl_ingest_result;

/* Handles one message received on c2d/v1/d/{device}/seg. This is also the
 * fuzzing entry point: any payload bytes (len may be 0, payload may be NULL
 * then) are safe; a hostile device can only affect its own uploads, and
 * nothing is written outside the store's data_dir.
 *
 *  device:  the id taken from the topic; re-validated here.
 *  payload: the message (a C2DK chunk frame or a JSON control message);
 *           it is not kept after the call.
 *  sink:    called exactly once unless the result is CTL_INGEST_BAD_DEVICE
 *           or CTL_INGEST_PENDING.
 *
 * Storage failures (disk full, LMDB errors) are answered `rejected` with
 * reason `storage` and reported as CTL_INGEST_REJECTED; the ingest remains
 * usable. */
ctl_ingest_result ctl_ingest_handle(ctl_ingest *ing, const char *device, const uint8_t *payload,
                                    size_t len, ctl_ack_sink sink, void *ud);

/* Uploads currently holding state in memory (for tests and status). */
size_t ctl_ingest_open_count(const ctl_ingest *ing);

typedef enum {
    CTL_INGEST_MSG_OTHER = 0, /* undecodable, or an ack on the seg topic */
    CTL_INGEST_MSG_BEGIN,
    CTL_INGEST_MSG_CHUNK,
    CTL_INGEST_MSG_END,
} ctl_ingest_msg_kind;

/* What the message being answered was, for the sink's log line. */
typedef struct {
    ctl_ingest_msg_kind kind;
    uint16_t channel; /* 0 if it did not decode */
    int64_t start_us;
    uint64_t offset; /* chunk: the payload's offset and length */
    uint32_t length;
} ctl_ingest_msg_info;

/* The message being answered; meaningful inside a sink call (for the acks
 * of ctl_ingest_commit_done: the end). */
const ctl_ingest_msg_info *ctl_ingest_current(const ctl_ingest *ing);

/* Hands a commit over: returns 0 if job (copied) will be committed and come
 * back through ctl_ingest_commit_done, nonzero to have ingest commit it on
 * the spot (queue full). job->fd stays open, and the upload is neither
 * written nor discarded, until it comes back. */
typedef int (*ctl_commit_submit_fn)(void *ud, const ctl_commit_job *job);

/* Makes commits asynchronous (submit non-NULL) or synchronous again (NULL,
 * the default; only while nothing is being committed). */
void ctl_ingest_set_committer(ctl_ingest *ing, ctl_commit_submit_fn submit, void *ud);

/* A job submitted through the committer is done: answers its end (and any
 * repeated end received meanwhile) through sink: `committed`, or
 * `rejected` `storage` with the upload kept for a retry. Returns 0, or
 * -ENOENT if job is not one this ingest handed over (sink not called).
 * Every submitted job must come back before ctl_ingest_free. */
int ctl_ingest_commit_done(ctl_ingest *ing, const ctl_commit_job *job, ctl_ack_sink sink, void *ud);

/* 1 while a commit of key is with the committer: its file is in the store
 * already, and the janitor must not delete that path for an evicted copy
 * (janitor.h). */
int ctl_ingest_committing(ctl_ingest *ing, const ctl_seg_key *key);

#endif
