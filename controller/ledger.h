/* The ledger: LMDB records of what the controller stores.
 *
 * Databases in data_dir/ledger.lmdb/:
 *   segments  key device\0 + ch BE16 + start BE64
 *             -> {duration, size, sha256, committed time, disk, path}
 *   partials  key as segments -> the begin record of an upload in progress
 *   usage     unused since issue 4 (emptied by fsck --repair): a camera's
 *             usage is the sum of its disk_cams records (quota.h), disk 0
 *             for segments stored in open mode
 * and the virtual disks' databases (quota.h).
 *
 * Every write is one LMDB transaction with the default durable sync: a
 * segment record, its usage and the removal of its partial record commit
 * together or not at all. Several processes may open the ledger at once
 * (the daemon writes; "usage" and "segments" read).
 *
 * Functions return 0 or -errno: -ENOENT (no such record, or a read-only
 * ledger that does not exist yet), -EEXIST (segment already recorded),
 * -ENOSPC (map full: raise ledger_map_bytes), -EROFS (write on a read-only
 * handle), -EINVAL (invalid key), -EIO (any other LMDB failure, including a
 * record that does not decode). Not thread safe: one thread per handle. */
#ifndef CTL_LEDGER_H
#define CTL_LEDGER_H

#include "controller/segkey.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ctl_ledger ctl_ledger;
typedef struct MDB_env MDB_env; /* as in lmdb.h */
typedef struct MDB_txn MDB_txn; /* as in lmdb.h */

/* Named databases the environment can hold: the ledger's three plus room for
 * the other stores that share its environment and transactions
 * (controller/directory.c opens seven). LMDB searches them linearly, so the
 * number stays small. */
#define CTL_LEDGER_MAX_DBS 32

/* Longest relative path recorded for a segment
 * ("store/" + 64-char device + "/65535/" + 19 digits + ".ts" fits). */
#define CTL_LEDGER_PATH_MAX 128

typedef struct {
    int64_t duration_us;
    uint64_t size;
    char sha256[65]; /* lowercase hex */
    int64_t committed_us;
    uint64_t disk_id;               /* the virtual disk it counts on; 0: none */
    int is_protected;               /* a bookmark or event keeps it from eviction */
    char path[CTL_LEDGER_PATH_MAX]; /* relative to data_dir */
} ctl_segment_rec;

typedef struct {
    int64_t duration_us;
    uint64_t size;
    char sha256[65];
    int64_t created_us; /* when the upload began */
} ctl_partial_rec;

typedef struct {
    uint64_t bytes;
    uint64_t segments;
} ctl_usage_rec;

/* Opens the ledger in directory dir with a map of map_bytes. Read-write
 * creates dir and the databases; readonly opens an existing ledger for
 * reading only (-ENOENT if there is none). *out is set only on success. */
int ctl_ledger_open(const char *dir, uint64_t map_bytes, int readonly, ctl_ledger **out);

/* Closes the ledger. NULL is a no-op. */
void ctl_ledger_free(ctl_ledger *l);

/* The LMDB environment of the ledger, for stores that keep their databases
 * beside the segments so that one transaction covers both
 * (controller/directory.h). Owned by l: valid until ctl_ledger_free. */
MDB_env *ctl_ledger_env(ctl_ledger *l);

/* Open mode (a lab or a demo without subscriptions): segments of cameras
 * that no virtual disk covers are stored and counted on no disk instead of
 * refused with -ENODEV. Off by default. */
void ctl_ledger_set_open_mode(ctl_ledger *l, int on);

/* 1 if l was opened read-only. */
int ctl_ledger_readonly(const ctl_ledger *l);

int ctl_ledger_get_segment(ctl_ledger *l, const ctl_seg_key *key, ctl_segment_rec *out);

/* In one transaction: records the segment (-EEXIST if key is recorded
 * already; nothing changes then), adds its size and one segment to the
 * usage of (device, channel) on its disk and deletes key's partial record. */
int ctl_ledger_commit_segment(ctl_ledger *l, const ctl_seg_key *key, const ctl_segment_rec *rec);

/* Group commit: ctl_ledger_commit_segment for n segments in one durable
 * transaction (one sync instead of n). rcs[i] receives each segment's
 * result: 0 (recorded), -EINVAL (invalid key or record), -EEXIST
 * (already recorded; skipped), or the refusal of its virtual disk
 * (quota.h): -ENODEV (no active disk), -EACCES (cloud backup off), -EDQUOT
 * (full, policy stop, or nothing evictable); and when the transaction as a whole fails
 * every other segment gets its error (nothing of it was written). Returns 0,
 * or the error of the transaction. */
int ctl_ledger_commit_segments(ctl_ledger *l, const ctl_seg_key *keys, const ctl_segment_rec *recs,
                               size_t n, int *rcs);

/* Whether a segment of size bytes of key's camera would be refused by its
 * virtual disk now (quota.h), without writing: 0; -ENODEV (no active disk),
 * -EACCES (cloud backup off), -EDQUOT (larger than the disk or the
 * camera's cap, or the disk is full and its policy is stop). The commit
 * decides again; this spares the uplink a segment that cannot be stored. */
int ctl_ledger_precheck(ctl_ledger *l, const ctl_seg_key *key, uint64_t size);

int ctl_ledger_get_partial(ctl_ledger *l, const ctl_seg_key *key, ctl_partial_rec *out);
/* Creates or replaces key's partial record. */
int ctl_ledger_put_partial(ctl_ledger *l, const ctl_seg_key *key, const ctl_partial_rec *rec);
/* Deletes key's partial record; -ENOENT if there was none. */
int ctl_ledger_del_partial(ctl_ledger *l, const ctl_seg_key *key);

/* A camera's usage over every disk it counted on (and disk 0): -ENOENT if
 * it has none. Sums all disk_cams records: for reports and tests. */
int ctl_ledger_get_usage(ctl_ledger *l, const char *device, uint16_t channel, ctl_usage_rec *out);

/* Walks, in key order, inside one read transaction. A nonzero return from
 * the callback stops the walk and is returned. The callback must not write
 * to the ledger. */
typedef int (*ctl_ledger_segment_cb)(void *ud, const ctl_seg_key *key, const ctl_segment_rec *rec);
typedef int (*ctl_ledger_partial_cb)(void *ud, const ctl_seg_key *key, const ctl_partial_rec *rec);
typedef int (*ctl_ledger_usage_cb)(void *ud, const char *device, uint16_t channel,
                                   const ctl_usage_rec *rec);

int ctl_ledger_foreach_segment(ctl_ledger *l, ctl_ledger_segment_cb cb, void *ud);
/* device NULL walks every partial record, else only that device's. */
int ctl_ledger_foreach_partial(ctl_ledger *l, const char *device, ctl_ledger_partial_cb cb,
                               void *ud);
int ctl_ledger_foreach_usage(ctl_ledger *l, ctl_ledger_usage_cb cb, void *ud);

/* Walks the segments of (device, channel) that overlap [from_us, to_us)
 * (to_us 0: no end) in start order: a segment that starts before from_us
 * but runs past it comes first. Inside txn (a transaction of the ledger's
 * environment, e.g. ctl_dir_txn_mdb) or, txn NULL, a read transaction of
 * its own. cb as for ctl_ledger_foreach_segment. -EINVAL for a bad device
 * or range. */
int ctl_ledger_foreach_segment_range(ctl_ledger *l, MDB_txn *txn, const char *device,
                                     uint16_t channel, int64_t from_us, int64_t to_us,
                                     ctl_ledger_segment_cb cb, void *ud);

#endif
