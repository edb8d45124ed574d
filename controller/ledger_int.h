/* The ledger's internals, shared by ledger.c and quota.c (the virtual
 * disks live in the same LMDB environment and transactions). Not for other
 * modules. */
#ifndef CTL_LEDGER_INT_H
#define CTL_LEDGER_INT_H

#include "controller/ledger.h"

#include <lmdb.h>
#include <stdint.h>

/* Record layouts (big-endian), version byte first so they can evolve. */
#define REC_VERSION 1
#define SHA_RAW 32
#define SEG_FIXED (1 + 8 + 8 + SHA_RAW + 8 + 2) /* + path */
/* Version 2 of a segment record: the disk it counts on, before the path;
 * version 3 (written now): then a flags byte (bit 0: protected). */
#define SEG_VERSION_DISK 2
#define SEG_FIXED_DISK (SEG_FIXED + 8)
#define SEG_VERSION_FLAGS 3
#define SEG_FIXED_FLAGS (SEG_FIXED_DISK + 1)
#define SEG_VAL_MAX (SEG_FIXED_FLAGS + CTL_LEDGER_PATH_MAX)
#define PART_LEN (1 + 8 + 8 + SHA_RAW + 8)
#define USAGE_LEN 16
/* Keys: device\0 + ch BE16 (+ start BE64). */
#define KEY_MAX (C2D_DEVICE_ID_MAX + 1 + 2 + 8)

struct ctl_ledger {
    MDB_env *env;
    int readonly;
    int have_dbs; /* 0 for a read-only ledger whose databases do not exist yet */
    MDB_dbi segments, usage, partials;
    /* quota.c: virtual disks, the cameras they cover, the per-disk camera
     * usage (disk_cams: the same database as disks, keys longer than a
     * disk's), protected ranges, and files to delete once their removal is
     * committed. */
    MDB_dbi disks, cameras, disk_cams, protect, trash;
    int open_mode; /* accept segments of cameras without a disk (lab) */
};

/* Builds a segment key (with_start) or a camera key (device, ch). */
size_t ctl_ledger_make_key(uint8_t buf[KEY_MAX], const char *device, uint16_t ch, int64_t start,
                           int with_start);
/* Decodes a key back; -EIO if it is not one of ours. */
int ctl_ledger_parse_key(const MDB_val *k, int with_start, ctl_seg_key *out);
int ctl_ledger_decode_segment(const MDB_val *v, ctl_segment_rec *out);
/* Encodes a segment record into v (SEG_VAL_MAX bytes); its length, or 0 if
 * key or rec is invalid. */
size_t ctl_ledger_encode_segment(const ctl_seg_key *key, const ctl_segment_rec *rec, uint8_t *v);

/* The fields of a segment record that eviction needs, without decoding
 * the rest (hash, path). */
typedef struct {
    int64_t duration_us;
    uint64_t size, disk_id;
    int is_protected;
} ctl_seg_peek;
int ctl_ledger_peek_segment(const MDB_val *v, ctl_seg_peek *out);
/* A usage record (bytes, segments); disk_cams records carry more after. */
int ctl_ledger_decode_usage(const MDB_val *v, ctl_usage_rec *out);

/* quota.c, called by the ledger inside its commit transaction: decides
 * whether the segment may be stored, evicting what its disk's policy says
 * (their files go to the trash), and counts it on its disk. 0 with
 * rec->disk_id (0: no disk, open mode) and rec->is_protected set; -ENODEV
 * (no active disk), -EACCES (cloud backup off), -EDQUOT (full: policy
 * stop, or nothing evictable); other errors abort the transaction. */
int ctl_quota_admit(ctl_ledger *l, MDB_txn *txn, const ctl_seg_key *key, ctl_segment_rec *rec);
/* Opens quota.c's databases in txn (flags MDB_CREATE or 0). */
int ctl_quota_open_dbs(ctl_ledger *l, MDB_txn *txn, unsigned flags);

static inline void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static inline uint64_t get_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* quota.c's record layouts for fsck.c (which checks and rewrites them):
 * thin wrappers, so that the layouts stay in quota.c. */
#include "controller/quota.h"
#define CTL_QUOTA_DCAM_KEY_MAX (8 + KEY_MAX)
#define CTL_QUOTA_TRASH_KEY 8
int ctl_quota_fsck_disk_decode(const MDB_val *v, ctl_disk_rec *out);
int ctl_quota_fsck_disk_put(ctl_ledger *l, MDB_txn *txn, uint64_t disk, const ctl_disk_rec *d);
size_t ctl_quota_fsck_dcam_key(uint8_t buf[CTL_QUOTA_DCAM_KEY_MAX], uint64_t disk,
                               const char *device, uint16_t ch);
/* A disk_cams record: bytes, segments, and the start of the camera's
 * oldest segment on the disk (where eviction and retention look first). */
typedef struct {
    uint64_t bytes, segments;
    int64_t head_us;
} ctl_quota_dcam;
int ctl_quota_fsck_dcam_decode(const MDB_val *v, ctl_quota_dcam *out);
int ctl_quota_fsck_dcam_put(ctl_ledger *l, MDB_txn *txn, const MDB_val *key,
                            const ctl_quota_dcam *d);
/* A trash entry's segment key and path (-EIO if it does not decode). */
int ctl_quota_fsck_trash_decode(const MDB_val *v, ctl_seg_key *key, char path[CTL_LEDGER_PATH_MAX]);
/* Whether a protected range of the camera overlaps [from_us, to_us). */
int ctl_quota_fsck_covered(ctl_ledger *l, MDB_txn *txn, const char *device, uint16_t ch,
                           int64_t from_us, int64_t to_us, int *out);

#endif
