/* The directory: the objects of the people API (issue 3) in the ledger's
 * LMDB environment, so that one transaction can cover people objects and
 * segments (issue 4: a segment commit checks its virtual disk).
 *
 * Every object is a record of a kind with a 64-bit id, the tenant (space) it
 * belongs to, an optional parent (a site's recorders have the site as
 * parent), created/updated times and a JSON object as text. Databases, all
 * written in the transaction of the change they belong to:
 *   dir_objects    kind u8 + id BE64 -> version, tenant, parent, created,
 *                  updated, unique keys, JSON text + NUL
 *   dir_by_tenant  tenant BE64 + kind + id BE64 -> ""   (list a space's objects)
 *   dir_by_parent  parent BE64 + kind + id BE64 -> ""   (list/count children;
 *                  parent 0 means none and is not indexed)
 *   dir_unique     namespace \0 value -> kind + id BE64 ("email", "token", ...)
 *   dir_audit      at_us BE64 + seq BE64 -> kind + id BE64 + JSON text + NUL
 *   dir_audit_obj  kind + id BE64 + at_us BE64 + seq BE64 -> ""
 *   dir_audit_tenant tenant BE64 + at_us BE64 + seq BE64 -> ""  (a space's log)
 *   dir_meta       "next_id", "audit_seq" -> BE64 counters
 * Ids come from one counter for all kinds, allocated inside the write
 * transaction, so an aborted transaction leaves no trace and ids are never
 * reused.
 *
 * Durability: the ledger's default durable sync; every change is one
 * transaction, so a kill -9 leaves either all of it or none of it.
 *
 * Threads: the databases are opened once by ctl_dir_open, which must run
 * before other threads use the ledger (LMDB's rule for mdb_dbi_open). After
 * that any thread may begin transactions, at most one at a time per thread,
 * and a thread holding a write transaction must not call ctl_ledger_* writes
 * (LMDB has one writer: it would wait for itself).
 *
 * Functions return 0 or -errno: -ENOENT (no such object, or one of another
 * tenant through ctl_dir_get_in_tenant), -EEXIST (a unique key is held by
 * another object), -EFBIG (JSON text over CTL_DIR_JSON_MAX), -EINVAL (bad
 * kind, id, JSON that is not an object, bad unique key, bad argument),
 * -EROFS (write on a read transaction or a read-only ledger), -ENOSPC (map
 * full: raise ledger_map_bytes), -ENOMEM, -EIO (any other LMDB failure or a
 * record that does not decode). After an error other than -ENOENT, -EEXIST,
 * -EFBIG or -EINVAL a write transaction must be aborted; after those four
 * nothing was changed and it may go on. */
#ifndef CTL_DIRECTORY_H
#define CTL_DIRECTORY_H

#include "controller/ledger.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef struct MDB_txn MDB_txn; /* as in lmdb.h */

typedef struct ctl_dir ctl_dir;
typedef struct ctl_dir_txn ctl_dir_txn;

/* Longest JSON text of one object: the largest object of the API (a role
 * with every permission, a polygon geofence) is a few KiB; 64 KiB bounds what
 * a client can make us store and copy per request. */
#define CTL_DIR_JSON_MAX (64 * 1024)
/* Unique keys: namespace up to 32 bytes, value up to 320 bytes (an email is
 * at most 254, a SHA-256 hex 64), so that a key fits LMDB's 511 bytes. */
#define CTL_DIR_UKEY_NS_MAX 32
#define CTL_DIR_UKEY_VALUE_MAX 320
/* Unique keys per object (email; token; room for one or two more). */
#define CTL_DIR_UKEYS_MAX 4
/* Most objects or audit entries one list call returns: one API page. */
#define CTL_DIR_LIST_MAX 1000

/* Object kinds. The numbers are stored: never renumber, only append. */
typedef enum {
    CTL_KIND_TENANT = 1, /* the distributor and the installers' spaces */
    CTL_KIND_CLIENT = 2,
    CTL_KIND_SITE = 3,
    CTL_KIND_RECORDER = 4, /* recorders and dashcams */
    CTL_KIND_CHANNEL = 5,
    CTL_KIND_USER = 6,
    CTL_KIND_ROLE = 7,
    CTL_KIND_SESSION = 8,
    CTL_KIND_GROUP = 9,
    CTL_KIND_BOOKMARK = 10,
    CTL_KIND_GEOFENCE = 11,
    CTL_KIND_EVENT = 12,
    CTL_KIND_DRIVER = 13,
    CTL_KIND_SETTINGS = 14,
    CTL_KIND_LINK = 15,     /* one-time set-password link */
    CTL_KIND_LOCATION = 16, /* a dashcam's position report (map) */
    CTL_KIND_PLAYBACK = 17, /* a short-lived recordings playback token */
    CTL_KIND_VDISK = 18,    /* a virtual-disk subscription */
    CTL_KIND_AISUB = 19,    /* an AI subscription */
    CTL_KIND_MAX = CTL_KIND_AISUB
} ctl_dir_kind;

/* "tenant", "client", ...; NULL for a kind that is not one. */
const char *ctl_dir_kind_name(int kind);
/* The kind of a name, or 0. */
int ctl_dir_kind_from_name(const char *name);

/* One object. json is a NUL-terminated JSON object text. From ctl_dir_get*
 * it is a heap copy the caller owns (ctl_dir_obj_clear frees it); in list
 * callbacks it points into the database and is valid during the call only. */
typedef struct {
    int kind;
    uint64_t id;
    uint64_t tenant;
    uint64_t parent; /* 0: none */
    int64_t created_us;
    int64_t updated_us;
    char *json;
} ctl_dir_obj;

/* Frees obj->json and zeroes obj. NULL is a no-op. */
void ctl_dir_obj_clear(ctl_dir_obj *obj);

/* A unique key: value is compared byte for byte, so the caller normalizes it
 * (lowercases an email). ns is 1..CTL_DIR_UKEY_NS_MAX bytes without NUL,
 * value 1..CTL_DIR_UKEY_VALUE_MAX bytes without NUL. */
typedef struct {
    const char *ns;
    const char *value;
} ctl_dir_ukey;

/* Opens (read-write ledger: creates) the directory's databases in the
 * ledger's environment. A read-only ledger whose directory databases do not
 * exist yet gives -ENOENT. l must outlive the directory. *out is set only on
 * success. */
int ctl_dir_open(ctl_ledger *l, ctl_dir **out);

/* Frees the handle (the databases stay open in the environment until
 * ctl_ledger_free). NULL is a no-op. */
void ctl_dir_free(ctl_dir *d);

/* Clock for created/updated and audit times: CLOCK_REALTIME in µs unless
 * set (tests). now NULL restores the default. */
void ctl_dir_set_clock(ctl_dir *d, int64_t (*now)(void *ud), void *ud);

/* Begins a transaction: write 0 for a read transaction (a snapshot), 1 for
 * the write transaction (waits for other writers, including the ledger's
 * committer). The transaction's time is read from the clock here and used
 * for every change and audit entry in it. *out is set only on success; it
 * must end with ctl_dir_commit or ctl_dir_abort. */
int ctl_dir_begin(ctl_dir *d, int write, ctl_dir_txn **out);

/* Commits (durably, for a write transaction) and frees t, also on failure
 * (then nothing of it was written). */
int ctl_dir_commit(ctl_dir_txn *t);

/* Abandons every change of t and frees it. NULL is a no-op. */
void ctl_dir_abort(ctl_dir_txn *t);

/* The LMDB transaction under t, for other stores of the same environment
 * (the ledger's quota check). Valid until t ends; do not commit or abort it
 * directly. */
MDB_txn *ctl_dir_txn_mdb(ctl_dir_txn *t);

/* The time of the transaction (see ctl_dir_begin). */
int64_t ctl_dir_txn_now(const ctl_dir_txn *t);

/* Reads an object. On success *out is filled (free with ctl_dir_obj_clear). */
int ctl_dir_get(ctl_dir_txn *t, int kind, uint64_t id, ctl_dir_obj *out);

/* As ctl_dir_get, but an object of another tenant gives -ENOENT exactly as a
 * missing one: the API's answer for any object outside the caller's space. */
int ctl_dir_get_in_tenant(ctl_dir_txn *t, uint64_t tenant, int kind, uint64_t id, ctl_dir_obj *out);

/* Creates or replaces an object and its index entries.
 *
 * obj->id 0 creates: a new id is allocated and written to obj->id, and
 * obj->created_us/updated_us are set to the transaction's time. A nonzero
 * id replaces that object (-ENOENT if it does not exist): kind must match,
 * tenant and parent may change (the indexes follow), created_us is kept and
 * updated_us set. obj->json must be a JSON object of at most
 * CTL_DIR_JSON_MAX bytes (-EFBIG if longer; -EINVAL if not an object).
 *
 * keys (n of them, at most CTL_DIR_UKEYS_MAX) are the object's unique keys:
 * they replace its previous ones, which are released (n 0 with keys non-NULL
 * releases them all; keys NULL on an update keeps them as they are). A key
 * held by another object gives -EEXIST and changes nothing.
 *
 * actor non-NULL writes an audit entry {actor, at, kind, id, action
 * ("create" or "update"), before (null on create), after} in the same
 * transaction; NULL writes none (bookkeeping such as sessions). Fields whose
 * name begins with '_' (e.g. "_pwhash") are stored but left out of audit
 * entries. On failure obj is unchanged. */
int ctl_dir_put(ctl_dir_txn *t, const char *actor, ctl_dir_obj *obj, const ctl_dir_ukey *keys,
                size_t n);

/* Deletes an object with its index entries and unique keys; -ENOENT if
 * there is none. actor as for ctl_dir_put (action "delete", after null).
 * Children are not touched: the caller checks ctl_dir_count_children first. */
int ctl_dir_del(ctl_dir_txn *t, const char *actor, int kind, uint64_t id);

/* Writes an audit entry that records no change: an access such as a
 * recording viewed, downloaded or exported (action "view", "download",
 * "export"). The entry is {actor, at, tenant, kind, id, action, before:
 * null, after: detail} (detail NULL: null), indexed like a change's (by
 * time, object and tenant). actor and action are required (-EINVAL). */
int ctl_dir_audit_note(ctl_dir_txn *t, const char *actor, uint64_t tenant, int kind, uint64_t id,
                       const char *action, const cJSON *detail);

/* The object holding a unique key: *kind and *id set on success, -ENOENT if
 * none. */
int ctl_dir_lookup(ctl_dir_txn *t, const char *ns, const char *value, int *kind, uint64_t *id);

/* Walks the unique keys of namespace ns whose value v is in [from, to) in
 * byte order (memcmp, then the shorter first; to NULL: no upper bound), in
 * ascending order, or descending if reverse is nonzero; at most limit
 * (1..CTL_DIR_LIST_MAX). This makes a namespace of fixed-width values an
 * ordered index (a dashcam's positions by time: controller/devmsg.c). cb
 * gets each value (NUL-terminated, valid during the call) and its holder; it
 * must not write through t; a nonzero return stops the walk and is
 * returned. *n (may be NULL) receives how many were passed to cb. */
typedef int (*ctl_dir_ukey_cb)(void *ud, const char *value, int kind, uint64_t id);
int ctl_dir_ukey_range(ctl_dir_txn *t, const char *ns, const char *from, const char *to,
                       int reverse, size_t limit, ctl_dir_ukey_cb cb, void *ud, size_t *n);

/* Lists objects in id order, from the first id after after_id (0: from the
 * start), at most limit of them (1..CTL_DIR_LIST_MAX). cb gets each object
 * (json valid during the call; the callback must not write through t); a
 * nonzero return stops the walk and is returned. *n (may be NULL) receives
 * how many were passed to cb. The next page starts after the last id seen. */
typedef int (*ctl_dir_obj_cb)(void *ud, const ctl_dir_obj *obj);

/* A tenant's objects of one kind. */
int ctl_dir_list_tenant(ctl_dir_txn *t, uint64_t tenant, int kind, uint64_t after_id, size_t limit,
                        ctl_dir_obj_cb cb, void *ud, size_t *n);
/* The children of one kind of parent (nonzero). */
int ctl_dir_list_children(ctl_dir_txn *t, uint64_t parent, int kind, uint64_t after_id,
                          size_t limit, ctl_dir_obj_cb cb, void *ud, size_t *n);
/* How many children of one kind parent has (a site's recorders). */
int ctl_dir_count_children(ctl_dir_txn *t, uint64_t parent, int kind, uint64_t *count);

/* One audit entry: json is {actor, at, tenant, kind, id, action, before,
 * after} (tenant: the space the object belongs to),
 * valid during the callback. (at_us, seq) orders and identifies it. */
typedef struct {
    int64_t at_us;
    uint64_t seq;
    int kind;
    uint64_t id;
    const char *json;
} ctl_dir_audit_entry;

typedef int (*ctl_dir_audit_cb)(void *ud, const ctl_dir_audit_entry *e);

/* Which audit entries to list, in (at_us, seq) order: kind 0 any (then id
 * must be 0), else that kind, and id nonzero that object only; at_us in
 * [from_us, to_us) (to_us 0: no upper bound); and after a page's last entry
 * (after_at_us, after_seq) when after_seq is nonzero; tenant nonzero: only
 * changes of that space's objects. */
typedef struct {
    uint64_t tenant;
    int kind;
    uint64_t id;
    int64_t from_us;
    int64_t to_us;
    int64_t after_at_us;
    uint64_t after_seq;
} ctl_dir_audit_filter;

/* Lists at most limit (1..CTL_DIR_LIST_MAX) audit entries matching f; cb and
 * n as for the object lists. */
int ctl_dir_audit_list(ctl_dir_txn *t, const ctl_dir_audit_filter *f, size_t limit,
                       ctl_dir_audit_cb cb, void *ud, size_t *n);

#endif
