/* fsck: checks the ledger against the store (issue 4), and repairs.
 *
 * Checks, each finding with a kind, the object and what a repair does:
 *  1. every segment record: its file exists with the recorded size (and
 *     SHA-256 when asked); else the record goes and the file, if any, goes
 *     to data_dir/quarantine/;
 *  2. every file under store/: recorded, or in the trash (deleted on
 *     repair, as the janitor would), or an interrupted commit (a partial
 *     record and no segment record: start-up recovery completes it; info
 *     only); else an orphan, moved to quarantine/;
 *  3. the sums: disk_cams (bytes, segments and head of each camera on each
 *     disk; disk 0: open mode), each disk's used, segments and protected
 *     bytes; a repair recomputes them from the segment records (the
 *     truth);
 *  4. partial records without a partial file (dropped, as recovery does)
 *     and partial files without a record (moved to quarantine/).
 * Nothing is ever deleted but trash files; what is broken is kept in
 * quarantine/ under its relative path.
 *
 * Run it while the daemon is stopped (c2d-controller fsck takes
 * data_dir/controller.lock, as the daemon does): the checks read the
 * ledger and the files in separate steps.
 *
 * Functions return 0 or -errno (-ENOMEM, -EIO for an LMDB failure, -EROFS
 * for a repair on a read-only ledger). Not thread safe. */
#ifndef CTL_FSCK_H
#define CTL_FSCK_H

#include "controller/ledger.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ctl_fsck ctl_fsck;

typedef enum {
    CTL_FSCK_BAD_RECORD,         /* a segment record that does not decode */
    CTL_FSCK_MISSING_FILE,       /* a segment record without its file */
    CTL_FSCK_WRONG_SIZE,         /* file size is not the recorded one */
    CTL_FSCK_WRONG_HASH,         /* file SHA-256 is not the recorded one */
    CTL_FSCK_UNKNOWN_DISK,       /* a segment counts on a disk that does not exist */
    CTL_FSCK_ORPHAN_FILE,        /* a file under store/ nobody records */
    CTL_FSCK_TRASH_FILE,         /* a removed segment's file waiting for the janitor */
    CTL_FSCK_TRASH_LIVE,         /* info: a trash entry naming a recorded segment's file;
                                    a finding: one that does not decode */
    CTL_FSCK_INTERRUPTED_COMMIT, /* info: recovery at start-up completes it */
    CTL_FSCK_USAGE,              /* unused: per-camera usage is disk_cams' (ledger.h) */
    CTL_FSCK_DISK_CAMS,          /* a disk_cams record is not the sum of its segments */
    CTL_FSCK_DISK_SUMS,          /* a disk's used, segments or protected bytes */
    CTL_FSCK_PARTIAL_NO_FILE,    /* a partial record without its partial file */
    CTL_FSCK_PARTIAL_NO_RECORD,  /* a partial file without its record */
} ctl_fsck_kind;

/* The kind's name in reports and JSON ("missing_file", ...). */
const char *ctl_fsck_kind_name(ctl_fsck_kind kind);

#define CTL_FSCK_TEXT_MAX 256

typedef struct {
    ctl_fsck_kind kind;
    int info;                       /* nothing to repair; does not count as a finding */
    int repaired;                   /* set by ctl_fsck_repair once done */
    char what[CTL_FSCK_TEXT_MAX];   /* the object: path, camera or disk, and the numbers */
    char repair[CTL_FSCK_TEXT_MAX]; /* what a repair does */
} ctl_fsck_finding;

typedef struct {
    uint64_t segments; /* segment records checked */
    uint64_t files;    /* files under store/ checked */
    uint64_t disks;    /* virtual disks checked */
    uint64_t findings; /* findings other than info */
    uint64_t repaired; /* of them, repaired by the last ctl_fsck_repair */
} ctl_fsck_stats;

/* A checker of the ledger l (borrowed; writable for ctl_fsck_repair) and
 * the files under data_dir (copied). *out is set only on success. */
int ctl_fsck_new(ctl_ledger *l, const char *data_dir, ctl_fsck **out);

/* Frees. NULL is a no-op. */
void ctl_fsck_free(ctl_fsck *f);

/* Checks everything (replacing the findings of an earlier check); hashes:
 * also the SHA-256 of every stored file (reads them all). Findings are
 * listed, not returned as errors: 0 unless the check itself failed. */
int ctl_fsck_check(ctl_fsck *f, int hashes);

/* Repairs the findings of the last check: first the ledger, in one write
 * transaction (bad records deleted, partial records dropped, every sum
 * recomputed), then the files (to quarantine/, trash deleted). Marks each
 * finding repaired. A repair interrupted by a crash leaves a state the
 * next check finds and repairs. */
int ctl_fsck_repair(ctl_fsck *f);

size_t ctl_fsck_count(const ctl_fsck *f);
/* Finding i (< ctl_fsck_count), valid until the next check or free. */
const ctl_fsck_finding *ctl_fsck_get(const ctl_fsck *f, size_t i);
void ctl_fsck_get_stats(const ctl_fsck *f, ctl_fsck_stats *out);

#endif
