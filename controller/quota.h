/* Virtual disks in the ledger (issue 4): what a recorder's cameras may
 * store, enforced in the transaction that records each segment.
 *
 * A disk has a capacity, a retention, a policy when full (overwrite: the
 * oldest unprotected segments make room, like a recorder's own disk; stop:
 * new segments are refused with quota_full) and an active flag. A camera
 * (device, channel) is covered by at most one disk, with cloud backup on or
 * off and an optional cap of its own inside the disk. Bookmarks and events
 * protect the segments of a camera's time range from eviction (not from
 * retention); protected bytes of a disk are bounded by half its capacity.
 *
 * Databases in the ledger's environment (ledger_int.h):
 *   disks      disk BE64 -> capacity, retention, policy, active, used,
 *              segments, protected bytes
 *   cameras    device\0 ch BE16 -> disk, cap, backup
 *   disks      disk BE64 + device\0 ch BE16 -> bytes, segments, head (the
 *              start of the camera's oldest segment on the disk): the
 *              camera's usage on the disk ("disk_cams"), in the same
 *              database right after its disk's record, so that a commit
 *              finds both in one page
 *   protect    device\0 ch BE16 + from BE64 + to BE64 + owner BE64 -> ""
 *   trash      sequence BE64 -> segment key, relative path (files whose
 *              records are gone: the janitor deletes them after the
 *              commit, so a kill -9 leaves at worst a file to delete, never
 *              a record without its file)
 * A segment's record (ledger.c) says which disk it counts on and whether
 * it is protected. There is no index of a disk's segments by time: a
 * commit then writes one B-tree fewer (tools/bench ledger). The disk's
 * oldest segments are found by merging its cameras' runs, each from its
 * head; a camera is on one disk at a time, so a run is its segments but
 * for the few around a move, which the walk skips.
 * Invariants (c2d-controller fsck checks them): a disk's used and segments
 * are the sums of its disk_cams, which are the sums of the segment records
 * that count on it, and each head is the oldest of them; protected bytes
 * are the sum of those flagged protected.
 *
 * Functions taking txn work inside the caller's write (or read, for the
 * getters) transaction on ctl_ledger_env(l); they return 0 or -errno and
 * after an error other than -ENOENT, -EDQUOT or -EINVAL the caller aborts.
 * Others begin their own transactions. */
#ifndef CTL_QUOTA_H
#define CTL_QUOTA_H

#include "controller/ledger.h"

#include <stdint.h>

typedef struct MDB_txn MDB_txn; /* as in lmdb.h */

/* Policy overwrite frees 1/CTL_QUOTA_HEADROOM_DIV of the capacity beyond
 * what a new segment needs (oldest first): a full disk then evicts in small
 * runs instead of at every commit. */
#define CTL_QUOTA_HEADROOM_DIV 128

typedef enum {
    CTL_DISK_OVERWRITE = 0,
    CTL_DISK_STOP = 1,
} ctl_disk_policy;

typedef struct {
    uint64_t capacity;    /* bytes, > 0 */
    int64_t retention_us; /* segments older than this are removed; 0: kept */
    ctl_disk_policy policy;
    int active; /* 0: every segment is refused (no_disk) */
} ctl_disk_cfg;

typedef struct {
    ctl_disk_cfg cfg;
    uint64_t used;     /* bytes stored */
    uint64_t segments; /* segments stored */
    uint64_t protected_bytes;
} ctl_disk_rec;

typedef struct {
    uint64_t disk;
    uint64_t cap; /* bytes this camera may use in the disk; 0: no cap */
    int backup;   /* 0: cloud backup off, segments refused (backup_off) */
} ctl_camera_rec;

/* Creates or changes disk (id > 0). A capacity below what is used evicts
 * the oldest unprotected segments (overwrite) or leaves the disk full
 * (stop). */
int ctl_quota_disk_set(ctl_ledger *l, MDB_txn *txn, uint64_t disk, const ctl_disk_cfg *cfg);
/* Deletes disk with every segment it holds (their files go to the trash)
 * and every camera it covers. -ENOENT if there is none. */
int ctl_quota_disk_del(ctl_ledger *l, MDB_txn *txn, uint64_t disk);
int ctl_quota_disk_get(ctl_ledger *l, MDB_txn *txn, uint64_t disk, ctl_disk_rec *out);
/* The start of the oldest and newest segment of disk (0 when empty). */
int ctl_quota_disk_span(ctl_ledger *l, MDB_txn *txn, uint64_t disk, int64_t *oldest,
                        int64_t *newest);

/* Covers a camera by a disk (rec->disk must exist), or changes its cap or
 * backup flag. A cap below what the camera uses evicts as the disk's
 * policy says. */
int ctl_quota_camera_set(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch,
                         const ctl_camera_rec *rec);
/* Uncovers every camera disk covers (their segments stay). */
int ctl_quota_disk_uncover(ctl_ledger *l, MDB_txn *txn, uint64_t disk);
/* Uncovers a camera (its stored segments stay on their disk); -ENOENT if
 * it was not covered. */
int ctl_quota_camera_del(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch);
int ctl_quota_camera_get(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch,
                         ctl_camera_rec *out);

/* Walks the covered cameras: of one device (device non-NULL), or of all
 * devices (NULL; distinct 1: the first camera of each device only). cb
 * returning nonzero stops the walk (1 is not an error). */
typedef int (*ctl_quota_camera_cb)(void *ud, const char *device, uint16_t ch,
                                   const ctl_camera_rec *rec);
int ctl_quota_cameras(ctl_ledger *l, MDB_txn *txn, const char *device, int distinct,
                      ctl_quota_camera_cb cb, void *ud);

/* One camera's usage on a disk, with the start of its oldest and newest
 * segment there. */
typedef struct {
    char device[C2D_DEVICE_ID_MAX + 1];
    uint16_t channel;
    uint64_t bytes, segments;
    int64_t oldest_us, newest_us; /* 0 when empty */
} ctl_disk_camera;

typedef int (*ctl_disk_camera_cb)(void *ud, const ctl_disk_camera *c);
/* Calls cb for each camera with segments on disk, in key order. */
int ctl_quota_disk_cameras(ctl_ledger *l, MDB_txn *txn, uint64_t disk, ctl_disk_camera_cb cb,
                           void *ud);

/* Protects the camera's segments in [from_us, to_us) for owner (a bookmark
 * or event id) and segments that arrive later in that range. -EDQUOT (and
 * nothing changes) if the camera's disk would then hold more protected
 * bytes than half its capacity; -EEXIST if owner protects that range
 * already. *added (may be NULL) receives the bytes newly protected. */
int ctl_quota_protect(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch, int64_t from_us,
                      int64_t to_us, uint64_t owner, uint64_t *added);
/* Removes owner's protection of that range; segments no other range
 * covers become evictable. -ENOENT if there was none. */
int ctl_quota_unprotect(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch,
                        int64_t from_us, int64_t to_us, uint64_t owner);

/* Removes, in its own transaction, at most max segments that have passed
 * their disk's retention at now_us (a segment passes when it ends at or
 * before now - retention); their files go to the trash. *removed
 * receives how many. Call again while it removes max. */
int ctl_quota_sweep(ctl_ledger *l, int64_t now_us, size_t max, size_t *removed);

/* The oldest time a segment of (device, ch) may start and still be served
 * at now_us: segments that end before it have passed retention. INT64_MIN
 * when the camera's disk keeps everything (or it has no disk). */
int64_t ctl_quota_cutoff(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch,
                         int64_t now_us);

/* The janitor: for at most max trash entries, deletes the removed
 * segment's file (data_dir relative path) through unlink_fn, then the
 * entries (its own transactions). An entry whose path a live record names
 * again (the segment was sent again and stored) is dropped without
 * deleting. unlink_fn returns 0 (or -ENOENT: gone already) to drop the
 * entry, anything else to keep it for a later run (-EBUSY: the segment's
 * commit is in flight). *done receives how many files were deleted. */
typedef int (*ctl_quota_unlink_fn)(void *ud, const ctl_seg_key *key, const char *relpath);
int ctl_quota_empty_trash(ctl_ledger *l, size_t max, ctl_quota_unlink_fn fn, void *ud,
                          size_t *done);

#endif
