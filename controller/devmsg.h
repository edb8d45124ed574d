/* Device telemetry: the JSON messages a recorder publishes on
 * c2d/v1/d/{device}/evt (proto/README.md, "Events and positions"), stored
 * in the directory under the recorder that holds the unique key
 * ("device", "<device id>"), and the position queries of the map.
 *
 * Storage (controller/directory.h):
 *   event     CTL_KIND_EVENT, tenant and parent of the recorder, JSON
 *             {recorder_id, device_event_id, event, at, at_us, channel?,
 *             lat?, lon?, severity, acknowledged: false, note: ""}, audited
 *             as "device:<id>"; unique key ("devevt", "<recorder>:<event id>")
 *             makes a redelivery write nothing.
 *   position  CTL_KIND_LOCATION, tenant and parent of the recorder, JSON
 *             {recorder_id, at, at_us, lat, lon, speed_kmh?, heading?}, not
 *             audited; unique key ("trip", "<recorder %016x>:<at_us %016x>")
 *             is both the idempotency key (one position per recorder and
 *             microsecond) and, read with ctl_dir_ukey_range, the time index
 *             of the trip and live queries. The latest position is the last
 *             key of the recorder, so no separate "live" object is written.
 * Nothing prunes old positions and events yet (a retention horizon is a
 * later change).
 *
 * Parsing is pure (no I/O, no logging); storing and queries return 0 or
 * -errno; the daemon logs. */
#ifndef CTL_DEVMSG_H
#define CTL_DEVMSG_H

#include "controller/directory.h"
#include "controller/ledger.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* Longest evt payload: a message is a few hundred bytes; 4 KiB as the seg
 * topic's control messages (C2D_MSG_MAX). */
#define CTL_DEVMSG_MAX 4096
/* A device's event id: 1..64 of [A-Za-z0-9._-] (fits the unique key). */
#define CTL_DEVMSG_ID_MAX 64
/* An event kind: 1..32 of [a-z0-9_]. */
#define CTL_DEVMSG_EVENT_MAX 32
/* Room for a refusal reason from ctl_devmsg_parse. */
#define CTL_DEVMSG_WHY_MAX 96
/* Earliest accepted time, 2000-01-01T00:00:00Z, and how far ahead of the
 * controller's clock a device's clock may be. */
#define CTL_DEVMSG_AT_MIN INT64_C(946684800000000)
#define CTL_DEVMSG_AT_AHEAD_US INT64_C(86400000000)
/* Channels of an event: 1..256. */
#define CTL_DEVMSG_CHANNEL_MAX 256

typedef enum { CTL_DEVMSG_LOCATION = 1, CTL_DEVMSG_EVENT = 2 } ctl_devmsg_type;

typedef enum {
    CTL_DEVMSG_INFO = 0,
    CTL_DEVMSG_WARNING = 1,
    CTL_DEVMSG_CRITICAL = 2
} ctl_devmsg_severity;

/* One message. has_* say whether an optional field was present; a location
 * always has a position (has_pos 1), an event has one or not. */
typedef struct {
    ctl_devmsg_type type;
    int64_t at_us;
    int has_pos;
    double lat, lon;
    int has_speed, has_heading; /* location only */
    double speed_kmh, heading;
    char id[CTL_DEVMSG_ID_MAX + 1];       /* event only */
    char event[CTL_DEVMSG_EVENT_MAX + 1]; /* event only */
    int channel;                          /* event only; 0: none */
    ctl_devmsg_severity severity;         /* event only */
} ctl_devmsg;

/* Parses and validates one evt payload (len bytes, not NUL-terminated) with
 * now_us as the controller's clock for the range of "at". Returns 0 and
 * fills *out, or -EINVAL (refused: bad UTF-8, escapes, bad JSON, trailing
 * bytes, v != 1, unknown type, missing/unknown/duplicate field, wrong type,
 * out of range), -EMSGSIZE (over CTL_DEVMSG_MAX) or -ENOMEM; then why (if
 * whylen > 0) holds a short printable reason such as "out_of_range: lat"
 * and *out is untouched. */
int ctl_devmsg_parse(const void *payload, size_t len, int64_t now_us, ctl_devmsg *out, char *why,
                     size_t whylen);

/* 0 if m satisfies every rule of the parser (at within
 * [CTL_DEVMSG_AT_MIN, now_us + CTL_DEVMSG_AT_AHEAD_US]), else -EINVAL. */
int ctl_devmsg_valid(const ctl_devmsg *m, int64_t now_us);

/* The JSON text stored for m under recorder_id (see above); heap, the
 * caller frees it. NULL: out of memory or m not valid. */
char *ctl_devmsg_record_json(const ctl_devmsg *m, uint64_t recorder_id);

/* One message of a batch for ctl_devmsg_store_many. */
typedef struct {
    const char *device; /* the device id from the topic */
    const ctl_devmsg *msg;
} ctl_devmsg_item;

/* Stores n messages (1..CTL_DIR_LIST_MAX) in one write transaction, so a
 * burst costs one sync. results[i] receives 0 (stored, or already stored:
 * a redelivery), -ENOENT (no recorder holds ("device", device)) or -EINVAL
 * (bad device id or message). Returns 0 when the transaction committed
 * (whatever the results), else -errno of the directory (-EROFS, -ENOSPC,
 * -EIO, -ENOMEM, ...), which is also written to every results[i]: then
 * nothing of the batch was written. */
/* Recordings an event (with a channel) protects from overwrite: this long
 * before and after it (issue 4; quota.h's bound applies). */
#define CTL_DEVMSG_PROTECT_US (INT64_C(30) * 1000000)

/* l (may be NULL): the ledger whose virtual disks events protect
 * recordings in. */
int ctl_devmsg_store_many(ctl_dir *dir, ctl_ledger *l, const ctl_devmsg_item *items, size_t n,
                          int *results);

/* One message in its own transaction: 0 (stored or redelivery), -ENOENT
 * (no recorder for device), -EINVAL, or the directory's -errno. */
int ctl_devmsg_store(ctl_dir *dir, const char *device, const ctl_devmsg *m);

/* The live map: the latest position (greatest at) of every recorder of
 * tenant that has one, in recorder id order, as a JSON array of
 * {recorder_id, at, at_us, lat, lon, speed_kmh?, heading?}. Positions
 * written while the recorder belonged to another tenant are not shown. On
 * success *out is set (the caller frees it with cJSON_Delete). Errors:
 * -ENOMEM, -EIO and the directory's. */
int ctl_devmsg_live(ctl_dir_txn *t, uint64_t tenant, cJSON **out);

/* A trip: the positions of recorder_id with from_us <= at_us < to_us
 * (to_us <= 0: no upper bound), oldest first, at most limit
 * (1..CTL_DIR_LIST_MAX), as an array of the same objects as
 * ctl_devmsg_live. *next_us receives where the next page starts (pass it as
 * from_us), or 0 when this page is the last. Positions of another tenant
 * are skipped as in ctl_devmsg_live. On success *out is set (cJSON_Delete).
 * Errors: -ENOENT (no such recorder in tenant), -EINVAL (limit), -ENOMEM,
 * -EIO and the directory's. */
int ctl_devmsg_trip(ctl_dir_txn *t, uint64_t tenant, uint64_t recorder_id, int64_t from_us,
                    int64_t to_us, size_t limit, cJSON **out, int64_t *next_us);

#endif
