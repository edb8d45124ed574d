/* Segment commits: making a finished upload durable (proto/README.md,
 * step 3) off the network thread.
 *
 * A commit is: fsync the partial file, rename it into the store, fsync the
 * store directory (ctl_store_put), then record the segment in the ledger
 * (its partial record goes in the same transaction). If the ledger commit
 * fails the file is moved back to the partial area (ctl_store_unput). The
 * order is what makes a kill -9 at any moment safe: before the ledger
 * transaction the partial record still exists, and ctl_ingest_recover
 * completes the commit of a file it finds in the store.
 *
 * ctl_commit_execute runs a batch on the caller's thread: every file first,
 * then one ledger transaction for all of them (group commit: one LMDB sync
 * per batch). ingest uses it directly when it has no committer (tests,
 * fuzzing).
 *
 * ctl_committer is a worker thread with a bounded queue in front of
 * ctl_commit_execute: the network thread submits, the worker commits
 * whatever has queued up as one batch, and finished jobs come back through
 * ctl_committer_take on the network thread, which ctl_committer_fd wakes
 * (an eventfd, readable while finished jobs wait). */
#ifndef CTL_COMMITTER_H
#define CTL_COMMITTER_H

#include "controller/ledger.h"
#include "controller/store.h"

#include <stddef.h>
#include <stdint.h>

/* Jobs queued or being committed at most. The agent uploads one segment per
 * channel at a time, so a device has at most max_channels segments to
 * commit; beyond this the network thread commits synchronously (back
 * pressure), so the bound only costs speed. */
#define CTL_COMMITTER_QUEUE_MAX 256

/* Jobs one ledger transaction takes at most (bounds the batch arrays). */
#define CTL_COMMITTER_BATCH_MAX 64

typedef struct {
    ctl_seg_key key;
    int fd;              /* the partial file, open; borrowed: the worker fsyncs it,
                            the submitter keeps it open until the job is back */
    ctl_segment_rec rec; /* all but path, which the commit fills in */
    /* Results: */
    int rc;          /* 0: durable and recorded; else -errno */
    int unput_error; /* rc != 0 and the file could not be moved back to the
                        partial area: it is in the store without a record
                        (start-up recovery records it) */
} ctl_commit_job;

/* Commits n jobs (see above), setting each job's rc, unput_error and, on
 * success, rec.path. Thread safe for distinct keys. */
void ctl_commit_execute(ctl_store *st, ctl_ledger *l, ctl_commit_job *jobs, size_t n);

typedef struct ctl_committer ctl_committer;

/* Starts the worker over st and l (borrowed: they must outlive the
 * committer). 0 or -errno; *out is set only on success. */
int ctl_committer_new(ctl_store *st, ctl_ledger *l, ctl_committer **out);

/* Finishes every submitted job, joins the worker and frees; finished jobs
 * not taken are lost (their files stay open: take them first). NULL is a
 * no-op. */
void ctl_committer_free(ctl_committer *c);

/* Queues a copy of job. 0, or -EAGAIN when CTL_COMMITTER_QUEUE_MAX jobs are
 * queued or not yet taken (commit it yourself then). */
int ctl_committer_submit(ctl_committer *c, const ctl_commit_job *job);

/* A descriptor that polls readable while finished jobs wait. */
int ctl_committer_fd(const ctl_committer *c);

/* Moves up to max finished jobs, in completion order, to out; returns how
 * many. Clears the readiness of ctl_committer_fd when none are left. */
size_t ctl_committer_take(ctl_committer *c, ctl_commit_job *out, size_t max);

/* Jobs submitted and not yet taken. */
size_t ctl_committer_pending(ctl_committer *c);

/* Waits until every submitted job is finished (ready to take). */
void ctl_committer_wait_idle(ctl_committer *c);

#endif
