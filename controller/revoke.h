/* Revoked device ids and the broker-side cut-off (docs/pairing.md,
 * "Unpairing").
 *
 * Unpairing or deleting a recorder revokes its device id for good: the id
 * goes into the database "revoked" of the ledger's LMDB environment, in the
 * transaction of the change, with a generation counter that every
 * revocation bumps:
 *   revoked   device id -> recorder id BE64 + at_us BE64
 *             "#gen"    -> BE64 (no device id holds '#')
 *
 * The daemon thread watches the generation (ctl_revoke_apply) and rewrites
 * the device listener's ACL file: everything up to CTL_REVOKE_ACL_MARK is
 * kept as written (c2d-ca's lines, an operator's edits), after it comes
 *   user <id>
 *   topic deny c2d/v1/#
 * per revoked id; then the broker gets SIGHUP. mosquitto 2.0.11 applies a
 * reloaded ACL to connected clients too, on publish and on delivery
 * (measured in docs/pairing.md). A crash between the commit and the reload
 * heals at the next start: the daemon applies once unconditionally.
 *
 * The database is opened once by ctl_revoke_open, before other threads use
 * the ledger (LMDB's mdb_dbi_open rule); its handle is process-wide because
 * the API reaches it only through its transactions. */
#ifndef CTL_REVOKE_H
#define CTL_REVOKE_H

#include "controller/directory.h"

#include <stddef.h>
#include <stdint.h>

/* The line after which the ACL file belongs to the controller. */
#define CTL_REVOKE_ACL_MARK                                                                        \
    "# --- revoked devices: written by c2d-controller, do not edit below ---"
/* Largest ACL file read back (c2d-ca's is under 1 KiB; 100000 revoked ids
 * take ~6 MB). */
#define CTL_REVOKE_ACL_MAX (16 * 1024 * 1024)

/* Opens (creating) the database in dir's environment. Call once, before
 * other threads use the ledger. 0 or -errno. */
int ctl_revoke_open(ctl_dir *dir);

/* Marks device revoked by recorder rid in the write transaction t (an
 * unpairing or a deletion) and bumps the generation. Revoking a revoked id
 * again changes nothing. 0, -EINVAL (not a device id), -ENXIO (not opened),
 * -EROFS, -ENOSPC, -EIO. */
int ctl_revoke_mark(ctl_dir_txn *t, const char *device, uint64_t rid);

/* 1 if device is revoked, 0 if not, -errno. */
int ctl_revoke_is(ctl_dir_txn *t, const char *device);

/* A recorder's earlier device ids (docs/pairing.md, "Unpairing"): calls
 * cb(ud, device, at_us) for each id revoked from recorder rid, in device
 * id order, inside t. cb returning nonzero stops the walk and is
 * returned. A scan of the database, not an index: revocations are rare
 * (an installer's unpairing or deletion), so the set stays small, and a
 * scan needs no second record to keep in step nor a migration of the ids
 * revoked before it. 0, -ENXIO (not opened), -EIO. */
typedef int (*ctl_revoke_id_cb)(void *ud, const char *device, int64_t at_us);
int ctl_revoke_ids_of(ctl_dir_txn *t, uint64_t rid, ctl_revoke_id_cb cb, void *ud);

/* What the daemon does with a device's message. */
typedef enum {
    CTL_DEV_HELD = 0, /* a recorder holds the id: handled */
    CTL_DEV_UNKNOWN,  /* no recorder holds it, never revoked */
    CTL_DEV_REVOKED,  /* revoked: always ignored */
} ctl_dev_status;

/* The status of device in its own read transaction; -errno on failure. */
int ctl_revoke_status(ctl_dir *dir, const char *device);

/* The broker-side cut-off. */
typedef struct ctl_revoke ctl_revoke;

/* acl_file: the device listener's acl_file; pid_file NULL or "": the
 * broker is not signalled. Strings are copied. 0 or -ENOMEM. */
int ctl_revoke_new(ctl_dir *dir, const char *acl_file, const char *pid_file, ctl_revoke **out);
void ctl_revoke_free(ctl_revoke *r);

/* If the committed generation differs from the last applied one (or
 * force), rewrites the ACL file atomically (only if its text changes) and
 * signals the broker. Returns 1 (applied; *count revoked ids), 0 (nothing
 * to do), or -errno with err set. Call from one thread. */
int ctl_revoke_apply(ctl_revoke *r, int force, size_t *count, char *err, size_t errlen);

/* Builds the ACL text: base up to (not including) the marker line, then
 * the marker and a deny block for each of the n ids. *out is malloc'd.
 * 0, -ENOMEM, -EFBIG. Pure: for tests. */
int ctl_revoke_acl_text(const char *base, size_t len, const char *const *ids, size_t n, char **out,
                        size_t *outlen);

#endif
