/* Per-device message rate limit: two token buckets per device id, one on
 * messages and one on bytes, checked first thing in the daemon's MQTT
 * message path, before any parsing, hashing or LMDB work. A device that
 * sends faster than its buckets refill has the excess dropped and counted;
 * other devices are not affected (docs/security.md, proto/README.md "Rate
 * limit").
 *
 * The buckets are GCRA (virtual scheduling) in nanoseconds: a message of n
 * bytes passes when neither bucket would go past its burst, and then costs
 * 1/msgs_per_s seconds of the message bucket and n/bytes_per_s of the byte
 * bucket. A dropped message costs nothing, so a flooder gets through at
 * exactly the configured rate.
 *
 * Memory is bounded: at most capacity device ids, in a sorted array (one
 * binary search per message). A new id in a full table takes the place of
 * an id whose buckets are full again (forgetting it loses nothing), else of
 * the least recently seen one (which then starts again with a full burst).
 * Device ids are certificate CNs, so an attacker cannot mint new ones.
 *
 * Pure logic: time comes in as now_us (use c2d_mono_us()). Not thread
 * safe: the daemon's network thread is its only user. */
#ifndef CTL_DEVLIMIT_H
#define CTL_DEVLIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ctl_devlimit ctl_devlimit;

typedef struct {
    uint64_t msgs_per_s;  /* sustained messages a second */
    uint64_t msgs_burst;  /* messages that may come at once */
    uint64_t bytes_per_s; /* sustained payload bytes a second */
    uint64_t bytes_burst; /* payload bytes that may come at once */
    size_t capacity;      /* device ids remembered */
} ctl_devlimit_params;

/* Defaults: a backstop against floods, never a shaper of a compliant
 * recorder. A recorder catching up on a backlog after an outage sends as
 * fast as its link and the controller's acks allow (on a LAN or loopback,
 * well over 100 MB/s), and every message dropped here costs that channel
 * an ack timeout (10 s) before it resumes: a limit under the link's speed
 * turned a 124 MB/s catch-up into 8 MB/s (tools/bench upload; test_40's
 * catch-up test). So the byte rate is above any one recorder's uplink
 * (256 MiB/s, over 2 Gbit/s) and the message rate carries it in 64 KiB
 * chunks (4000 a second); bursts are three seconds' worth. Real-time
 * recording is far below: 8 channels at 8 Mbit/s in 256 KiB chunks is
 * 8 MB/s and about 30 frames a second. Lower them per installation to
 * share a small controller more strictly (docs/components.md). */
#define CTL_DEVLIMIT_MSGS_PER_S 4000
#define CTL_DEVLIMIT_MSGS_BURST 12000
#define CTL_DEVLIMIT_BYTES_PER_S (INT64_C(256) << 20)
#define CTL_DEVLIMIT_BYTES_BURST (INT64_C(768) << 20)
/* As many devices as controller/devstate.h tracks. */
#define CTL_DEVLIMIT_CAPACITY 20000
/* Bounds on the parameters: the byte burst must take the largest message
 * the broker hands on (a 1 MiB chunk and its 32-byte header, with room);
 * rates and bursts up to 1e9 keep the nanosecond arithmetic in 64 bits. */
#define CTL_DEVLIMIT_BYTES_BURST_MIN (INT64_C(2) << 20)
#define CTL_DEVLIMIT_PARAM_MAX INT64_C(1000000000)
#define CTL_DEVLIMIT_CAPACITY_MAX 1000000

/* How often, at most, a limited device is reported: its counters synced
 * to the device state, and a log line. */
#define CTL_DEVLIMIT_SYNC_US INT64_C(1000000)
#define CTL_DEVLIMIT_LOG_US INT64_C(10000000)

/* Fills p with the defaults above. */
void ctl_devlimit_params_default(ctl_devlimit_params *p);

/* Creates a limiter. p NULL means the defaults. -EINVAL if a rate or burst
 * is 0 or over CTL_DEVLIMIT_PARAM_MAX, bytes_burst is under
 * CTL_DEVLIMIT_BYTES_BURST_MIN, or capacity is 0 or over
 * CTL_DEVLIMIT_CAPACITY_MAX; -ENOMEM. *out is set only on success. */
int ctl_devlimit_new(const ctl_devlimit_params *p, ctl_devlimit **out);

/* NULL is a no-op. */
void ctl_devlimit_free(ctl_devlimit *l);

/* What a drop tells the caller. */
typedef struct {
    uint64_t dropped_msgs;  /* this device's drops since it entered the table */
    uint64_t dropped_bytes; /* their payload bytes */
    uint64_t unlogged_msgs; /* drops since the last log_due, this one included */
    int sync_due;           /* the first drop, then at most every CTL_DEVLIMIT_SYNC_US */
    int log_due;            /* the first drop, then at most every CTL_DEVLIMIT_LOG_US */
} ctl_devlimit_drop;

/* One message of len payload bytes from device (a valid device id, at
 * most C2D_DEVICE_ID_MAX characters) at now_us: 0 if it may be handled,
 * -EAGAIN if it must be dropped (then *drop, if not NULL, is filled),
 * -EINVAL for a longer id, -ENOMEM for a new device without memory. Only
 * -EAGAIN drops: the limiter must not turn a memory shortage into lost
 * video. */
int ctl_devlimit_check(ctl_devlimit *l, const char *device, size_t len, int64_t now_us,
                       ctl_devlimit_drop *drop);

/* Messages dropped in all, since creation (for tests and metrics). */
uint64_t ctl_devlimit_dropped(const ctl_devlimit *l);

/* Device ids remembered. */
size_t ctl_devlimit_count(const ctl_devlimit *l);

#endif
