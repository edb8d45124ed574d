/* The daemon: one libmosquitto client (MQTT v5, TLS with the controller's
 * certificate, persistent session) that feeds every message on
 * c2d/v1/d/+/seg to an ingest and publishes its acks, QoS 1, on
 * c2d/v1/d/{device}/ack. With a directory it also takes the telemetry on
 * c2d/v1/d/+/evt (controller/devmsg.h: events and positions; no ack).
 * Reconnects with exponential backoff.
 *
 * Messages are handled inside ctl_daemon_run, on the caller's thread. With a
 * committer, segment commits run on its worker while messages keep coming;
 * the network loop polls the committer's descriptor next to the broker's
 * socket and publishes each `committed` ack when its commit is done. When
 * ctl_daemon_run returns every commit is finished and answered (stop waits
 * for the queued ones), so no commit is half done.
 *
 * This module is process glue and logs through common/c2d_log.h: one warn
 * line per rejected message (device, reason, detail), one info line per
 * committed segment (device, channel, start, size). evt lines (refused
 * payloads, devices without a recorder) are rate limited: a device must not
 * be able to fill the disk. */
#ifndef CTL_DAEMON_H
#define CTL_DAEMON_H

#include "common/c2d_config.h"
#include "controller/committer.h"
#include "controller/devlimit.h"
#include "controller/directory.h"
#include "controller/ingest.h"

#include <signal.h>
#include <stddef.h>

typedef struct ctl_daemon ctl_daemon;

/* Session expiry asked of the broker: acks and segment messages queued for
 * the controller survive a restart or upgrade of up to a day. */
#define CTL_SESSION_EXPIRY_S 86400

/* Reconnect backoff bounds. */
#define CTL_BACKOFF_MIN_MS 500
#define CTL_BACKOFF_MAX_MS 30000

/* evt messages stored per directory transaction: a burst costs one sync
 * while the write transaction stays short on the network thread. */
#define CTL_DAEMON_EVT_BATCH 64

/* Creates the client (mosquitto_lib_init() must have been called). broker,
 * ing, committer (NULL: commit inside the message handler) and dir (NULL:
 * evt topics are not subscribed, their messages are ignored) are borrowed
 * and must outlive the daemon; with a committer, ing submits its commits
 * to it from now on. evt messages are parsed in the message handler and
 * stored, a batch per network loop round, on the caller's thread. Returns
 * 0, or -1 with err filled. *out is set only on success. */
int ctl_daemon_new(const c2d_broker_cfg *broker, ctl_ingest *ing, ctl_committer *committer,
                   ctl_dir *dir, ctl_daemon **out, char *err, size_t errlen);

/* Connects (retrying with backoff) and serves until *stop becomes nonzero
 * (set it from a SIGTERM/SIGINT handler); then flushes pending acks for a
 * moment and disconnects, keeping the session. Returns 0. */
int ctl_daemon_run(ctl_daemon *d, volatile sig_atomic_t *stop);

/* Virtual disks: runs the janitor (retention sweep every sweep_interval_s,
 * files of removed segments after commits) on ledger with data_dir, and
 * publishes the retained device configs cfgpub marks. Before
 * ctl_daemon_run; all borrowed. */
typedef struct ctl_cfgpub ctl_cfgpub;
void ctl_daemon_set_disks(ctl_daemon *d, ctl_ledger *ledger, const char *data_dir,
                          ctl_cfgpub *cfgpub, int64_t sweep_interval_s);

/* Pairing (docs/pairing.md): subscribes to c2d/v1/pair/+/req and answers
 * with p (borrowed; outlives the daemon). Call before ctl_daemon_run. */
typedef struct ctl_pairing ctl_pairing;
void ctl_daemon_set_pairing(ctl_daemon *d, ctl_pairing *p);

/* Revocation (docs/pairing.md, "Unpairing"): messages of revoked device
 * ids are ignored, and outside open_mode those of ids no recorder holds;
 * r (borrowed; NULL: no ACL configured) keeps the broker's ACL in step
 * with the committed revocations. Before ctl_daemon_run; needs a
 * directory and ctl_revoke_open. */
typedef struct ctl_revoke ctl_revoke;
void ctl_daemon_set_revocation(ctl_daemon *d, ctl_revoke *r, int open_mode);

/* Certificate renewal (docs/pairing.md, "Renewal"): subscribes to
 * c2d/v1/d/+/csr and answers on c2d/v1/d/{device}/cert with r (borrowed;
 * outlives the daemon). Call before ctl_daemon_run. */
typedef struct ctl_renew ctl_renew;
void ctl_daemon_set_renew(ctl_daemon *d, ctl_renew *r);

/* Live device state: subscribes c2d/v1/d/+/state, feeds every message
 * (and last will) to s and runs its offline timer once a second. Before
 * ctl_daemon_run; borrowed. */
typedef struct ctl_devstate ctl_devstate;
void ctl_daemon_set_devstate(ctl_daemon *d, ctl_devstate *s);

/* Per-device rate limit (controller/devlimit.h): every message on a
 * device's topics passes ctl_devlimit_check before anything else is done
 * with it; over the limit it is dropped, counted in the device state
 * (rate_limited alarm) and logged at most every CTL_DEVLIMIT_LOG_US per
 * device. ctl_daemon_new sets the defaults; this replaces them. Before
 * ctl_daemon_run. 0, or what ctl_devlimit_new returns (the old limit
 * stays). */
int ctl_daemon_set_devlimit(ctl_daemon *d, const ctl_devlimit_params *p);

/* NULL is a no-op. */
void ctl_daemon_free(ctl_daemon *d);

#endif
