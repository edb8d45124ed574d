#include "controller/daemon.h"

#include "controller/cfgpub.h"
#include "controller/janitor.h"

#include "common/c2d_log.h"
#include "common/c2d_mqtt.h"
#include "common/c2d_time.h"
#include "controller/config.h"
#include "controller/devmsg.h"
#include "controller/devstate.h"
#include "controller/pairing.h"
#include "controller/revoke.h"
#include "controller/renew.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <mqtt_protocol.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEG_SUBSCRIPTION "c2d/v1/d/+/seg"
#define EVT_SUBSCRIPTION "c2d/v1/d/+/evt"
#define STATE_SUBSCRIPTION "c2d/v1/d/+/state"
/* How often devices are checked for a stopped heartbeat. */
#define STATE_TICK_US 1000000
/* One level only: a client id with '/' never matches (docs/pki.md). */
#define PAIR_SUBSCRIPTION "c2d/v1/pair/+/req"
#define PAIR_TOPIC_PREFIX "c2d/v1/pair/"
#define RENEW_SUBSCRIPTION "c2d/v1/d/+/" CTL_RENEW_CSR_LEVEL

/* How often the committed revocations are compared with the broker's ACL;
 * after a failure (file or signal), how long until the next try. */
#define REVOKE_TICK_US 250000
#define REVOKE_RETRY_US 10000000

/* How long a stopping daemon keeps writing queued acks before it goes. */
#define FLUSH_US 2000000

/* Network loop wake-up: bounds the reaction time to a stop request. */
#define LOOP_TIMEOUT_MS 500

/* MQTT v5 flow control of the one connection that carries the whole
 * fleet (issue 6). The broker writes to us at most CTL_MQTT_RECEIVE_MAX
 * segment messages not yet PUBACKed, and we keep at most CTL_MQTT_SEND_MAX
 * acks not yet PUBACKed by the broker (it also caps this with its own
 * Receive Maximum, max_inflight_messages in c2d-ca's mosquitto.conf).
 * libmosquitto's default of 20 made each ack wait for a PUBACK that the
 * broker queues behind megabytes of chunks it writes to us: 20 acks in
 * flight capped a fleet at about 300 acks (chunks) a second with both
 * processes mostly idle. Not larger: libmosquitto walks its list of
 * messages in flight on every publish and PUBACK (10000 made that walk 56%
 * of our CPU), and the broker keeps a serialised copy of each message in
 * flight to us. */
#define CTL_MQTT_RECEIVE_MAX 1024
#define CTL_MQTT_SEND_MAX 1024

/* Finished commits taken from the committer per call. */
#define DONE_BATCH 32

/* evt log lines: a burst of EVT_LOG_BURST, then one per EVT_LOG_REFILL_US
 * (20 a minute), whatever devices send; the rest are counted. */
#define EVT_LOG_BURST 20
#define EVT_LOG_REFILL_US 3000000

/* Answers "revoked" to renewal requests of revoked ids: a burst of
 * REVOKED_ANSWER_BURST, then one per REVOKED_ANSWER_REFILL_US, across all
 * ids. An agent stops renewing at the first one, so more than that is a
 * client that does not listen; the rest are dropped as before. */
#define REVOKED_ANSWER_BURST 20
#define REVOKED_ANSWER_REFILL_US 3000000

struct ctl_daemon {
    struct mosquitto *mosq;
    const c2d_broker_cfg *broker;
    ctl_ingest *ing;
    ctl_committer *committer; /* NULL: commits run inside the handler */
    int connected;            /* socket up (CONNACK may still be pending) */
    int session_ok;           /* CONNACK success seen since the last connect */
    int backoff_ms;
    int ever_connected;
    ctl_dir *dir; /* NULL: evt ignored */
    char *subs[8];
    int nsubs;
    /* evt messages parsed, not yet stored (flush_evt). */
    ctl_devmsg evt[CTL_DAEMON_EVT_BATCH];
    char evt_device[CTL_DAEMON_EVT_BATCH][C2D_DEVICE_ID_MAX + 1];
    size_t nevt;
    int log_tokens;
    int64_t log_refill_us;
    uint64_t log_suppressed;
    /* Virtual disks (ctl_daemon_set_disks): NULL when not set. */
    ctl_ledger *ledger;
    const char *data_dir;
    ctl_cfgpub *cfgpub;
    int64_t sweep_us, next_sweep_us;
    ctl_devstate *devstate; /* NULL: state topics are not subscribed */
    int64_t next_state_tick_us;
    int commits_since_janitor;
    ctl_pairing *pairing; /* NULL: pairing requests are not served */
    /* Revocation (ctl_daemon_set_revocation): gate 0: every device heard. */
    int gate, open_mode;
    ctl_revoke *revoke; /* NULL: no broker-side cut-off */
    int64_t next_revoke_us;
    uint64_t dropped_revoked, dropped_unknown;
    ctl_devlimit *devlimit; /* per-device rate limit: never NULL */
    ctl_renew *renew;       /* NULL: renewal requests are not served */
    int revoked_tokens;     /* "revoked" answers left in the burst */
    int64_t revoked_refill_us;
};

void ctl_daemon_set_revocation(ctl_daemon *d, ctl_revoke *r, int open_mode)
{
    d->gate = d->dir != NULL;
    d->revoke = r;
    d->open_mode = open_mode;
}

/* Brings the broker's ACL up to the committed revocations: at the first
 * call unconditionally (a crash between a commit and the reload heals),
 * then when their generation moves. */
static void revoke_tick(ctl_daemon *d)
{
    int64_t now = c2d_mono_us();
    if (!d->revoke || now < d->next_revoke_us)
        return;
    char err[256];
    size_t n = 0;
    int force = d->next_revoke_us == 0;
    int rc = ctl_revoke_apply(d->revoke, force, &n, err, sizeof(err));
    d->next_revoke_us = now + REVOKE_TICK_US;
    if (rc == 1)
        c2d_info("revocation: broker ACL holds %zu revoked device id(s)%s", n,
                 force ? " (at start)" : "");
    else if (rc < 0) {
        c2d_err("revocation: %s; retrying in %d s", err, REVOKE_RETRY_US / 1000000);
        d->next_revoke_us = now + REVOKE_RETRY_US;
    }
}

static const char *printable(const char *s, char *buf, size_t len);
static void evt_log(ctl_daemon *d, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Non-zero if a message of device must be ignored: CTL_DEV_REVOKED (its
 * id is revoked), CTL_DEV_UNKNOWN (outside open mode no recorder holds it)
 * or -errno (the ledger failed). Counted, logged rate limited. */
static int device_refused(ctl_daemon *d, const char *device, const char *topic)
{
    if (!d->gate)
        return 0;
    int st = ctl_revoke_status(d->dir, device);
    if (st == CTL_DEV_HELD || (st == CTL_DEV_UNKNOWN && d->open_mode))
        return 0;
    char buf[160];
    if (st == CTL_DEV_REVOKED) {
        d->dropped_revoked++;
        evt_log(d, C2D_LOG_WARN,
                "device %s: ignored message on %s: device id revoked (%" PRIu64 " so far)", device,
                printable(topic, buf, sizeof(buf)), d->dropped_revoked);
    } else if (st == CTL_DEV_UNKNOWN) {
        d->dropped_unknown++;
        evt_log(d, C2D_LOG_WARN,
                "device %s: ignored message on %s: no recorder holds it (%" PRIu64 " so far)",
                device, printable(topic, buf, sizeof(buf)), d->dropped_unknown);
    } else {
        evt_log(d, C2D_LOG_ERROR, "device %s: ignored message on %s: ledger: %s", device,
                printable(topic, buf, sizeof(buf)), strerror(-st));
    }
    return st;
}

int ctl_daemon_set_devlimit(ctl_daemon *d, const ctl_devlimit_params *p)
{
    ctl_devlimit *l;
    int rc = ctl_devlimit_new(p, &l);
    if (rc != 0)
        return rc;
    ctl_devlimit_free(d->devlimit);
    d->devlimit = l;
    return 0;
}

/* Non-zero if device's message goes over its rate limit: dropped before
 * any work, counted in the device state, logged now and then. */
static int over_limit(ctl_daemon *d, const char *device, const struct mosquitto_message *msg)
{
    ctl_devlimit_drop drop;
    size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    if (ctl_devlimit_check(d->devlimit, device, len, c2d_mono_us(), &drop) != -EAGAIN)
        return 0;
    if (drop.sync_due && d->devstate)
        ctl_devstate_set_limited(d->devstate, device, drop.dropped_msgs, drop.dropped_bytes,
                                 c2d_now_us());
    if (drop.log_due)
        evt_log(d, C2D_LOG_WARN,
                "device %s: %" PRIu64 " message(s) dropped over its rate limit (%" PRIu64
                " messages, %" PRIu64 " bytes in all)",
                device, drop.unlogged_msgs, drop.dropped_msgs, drop.dropped_bytes);
    return 1;
}

void ctl_daemon_set_pairing(ctl_daemon *d, ctl_pairing *p)
{
    if (!d->pairing && p)
        d->subs[d->nsubs++] = PAIR_SUBSCRIPTION;
    d->pairing = p;
}

/* Publishes an answer of pairing or renewal (QoS 1, not retained) and
 * frees it; a failed publish is only logged: the device asks again. */
static void publish_answer(ctl_daemon *d, const char *topic, char *resp)
{
    int rc = mosquitto_publish_v5(d->mosq, NULL, topic, (int)strlen(resp), resp, 1, false, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        c2d_warn("publish %s: %s", topic, mosquitto_strerror(rc));
    free(resp);
}

void ctl_daemon_set_renew(ctl_daemon *d, ctl_renew *r)
{
    if (!d->renew && r)
        d->subs[d->nsubs++] = RENEW_SUBSCRIPTION;
    d->renew = r;
}

/* A renewal request on c2d/v1/d/{device}/csr: answered on .../cert. */
static void handle_renew(ctl_daemon *d, const struct mosquitto_message *msg)
{
    char resp_topic[C2D_TOPIC_MAX], buf[160];
    char *resp = NULL;
    ctl_renew_result r;
    c2d_pki_certinfo ci;
    if (ctl_renew_handle(d->renew, msg->topic, msg->payload,
                         msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0, &r, resp_topic, &resp,
                         &ci) != 0)
        return;
    const char *topic = printable(msg->topic, buf, sizeof(buf));
    if (r == CTL_RENEW_OK)
        c2d_info("renewal on %s: certificate serial %s, valid until %lld", topic, ci.serial,
                 (long long)ci.not_after);
    else
        c2d_warn("renewal on %s: %s", topic, ctl_renew_result_name(r));
    if (!resp) {
        c2d_err("renewal on %s: out of memory; no answer", topic);
        return;
    }
    publish_answer(d, resp_topic, resp);
}

/* A renewal request of a revoked id: answered "revoked" (nothing of it
 * read), within the rate limit, so that its agent stops asking. */
static void answer_revoked(ctl_daemon *d, const char *device)
{
    int64_t now = c2d_mono_us();
    if (now - d->revoked_refill_us >= REVOKED_ANSWER_REFILL_US) {
        int64_t add = (now - d->revoked_refill_us) / REVOKED_ANSWER_REFILL_US;
        d->revoked_tokens = add >= REVOKED_ANSWER_BURST - d->revoked_tokens
                                ? REVOKED_ANSWER_BURST
                                : d->revoked_tokens + (int)add;
        d->revoked_refill_us = now;
    }
    if (d->revoked_tokens == 0)
        return;
    d->revoked_tokens--;
    char resp_topic[C2D_TOPIC_MAX];
    char *resp = NULL;
    if (ctl_renew_answer_revoked(device, resp_topic, &resp) != 0)
        return;
    publish_answer(d, resp_topic, resp);
}

static void handle_pair(ctl_daemon *d, const struct mosquitto_message *msg)
{
    char resp_topic[128], device[C2D_PKI_CN_MAX + 1] = "", buf[160];
    char *resp = NULL;
    if (!d->pairing || msg->payloadlen < 0)
        return;
    ctl_pair_result r = ctl_pairing_handle(d->pairing, msg->topic, msg->payload,
                                           (size_t)msg->payloadlen, resp_topic, &resp, device);
    const char *topic = printable(msg->topic, buf, sizeof(buf));
    if (r == CTL_PAIR_OK)
        c2d_info("pairing on %s: paired as device %s", topic, device);
    else
        c2d_warn("pairing on %s: %s", topic, ctl_pair_result_name(r));
    if (!resp)
        return;
    publish_answer(d, resp_topic, resp);
}

void ctl_daemon_set_disks(ctl_daemon *d, ctl_ledger *ledger, const char *data_dir,
                          ctl_cfgpub *cfgpub, int64_t sweep_interval_s)
{
    d->ledger = ledger;
    d->data_dir = data_dir;
    d->cfgpub = cfgpub;
    d->sweep_us = sweep_interval_s * 1000000;
    d->next_sweep_us = c2d_mono_us() + d->sweep_us;
}

void ctl_daemon_set_devstate(ctl_daemon *d, ctl_devstate *s)
{
    if (!d->devstate && s)
        d->subs[d->nsubs++] = STATE_SUBSCRIPTION;
    d->devstate = s;
}

/* Marks devices whose heartbeat stopped offline, once a second. */
static void state_tick(ctl_daemon *d)
{
    int64_t now = c2d_mono_us();
    if (!d->devstate || now < d->next_state_tick_us)
        return;
    d->next_state_tick_us = now + STATE_TICK_US;
    size_t n = ctl_devstate_tick(d->devstate, c2d_now_us());
    if (n)
        c2d_info("%zu device(s) offline: no state message in time", n);
}

static int commit_in_flight(void *ud, const ctl_seg_key *key)
{
    return ctl_ingest_committing(ud, key);
}

/* Retention and the trash: after commits (evictions leave files to
 * delete) and every sweep interval. */
static void janitor(ctl_daemon *d)
{
    if (!d->ledger)
        return;
    int64_t now = c2d_mono_us();
    int sweep = now >= d->next_sweep_us;
    if (!sweep && !d->commits_since_janitor)
        return;
    ctl_janitor_stats st;
    int rc =
        ctl_janitor_run(d->ledger, d->data_dir, sweep, c2d_now_us(), commit_in_flight, d->ing, &st);
    if (rc != 0)
        c2d_err("janitor: %s", strerror(-rc));
    else if (st.expired || st.deleted)
        c2d_info("janitor: %zu segments past retention removed, %zu files deleted", st.expired,
                 st.deleted);
    d->commits_since_janitor = 0;
    if (sweep)
        d->next_sweep_us = now + d->sweep_us;
}

static int publish_cfg(void *ud, const char *device, const char *json)
{
    ctl_daemon *d = ud;
    char topic[C2D_TOPIC_MAX];
    if (c2d_topic_format(topic, sizeof(topic), device, C2D_TOPIC_CFG) != C2D_OK)
        return -EINVAL;
    int rc = mosquitto_publish_v5(d->mosq, NULL, topic, (int)strlen(json), json, 1, true, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        c2d_warn("device %s: publishing its config: %s", device, mosquitto_strerror(rc));
        return -EIO;
    }
    c2d_debug("device %s: config %s", device, json);
    if (d->devstate) {
        cJSON *j = cJSON_Parse(json);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
        if (cJSON_IsNumber(v) && v->valuedouble >= 0)
            ctl_devstate_set_published(d->devstate, device, (uint64_t)v->valuedouble);
        cJSON_Delete(j);
    }
    return 0;
}

/* Copies s for a log line: printable ASCII only, bounded. */
static const char *printable(const char *s, char *buf, size_t len)
{
    size_t i = 0;
    for (; s && s[i] && i + 1 < len; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    buf[i] = '\0';
    return buf;
}

static void sink(void *ud, const char *device, const c2d_msg *ack, const char *detail)
{
    ctl_daemon *d = ud;
    const ctl_ingest_msg_info *msg = ctl_ingest_current(d->ing);
    if (!ack) {
        if (msg->kind == CTL_INGEST_MSG_CHUNK)
            c2d_debug("duplicate chunk device=%s ch=%u start=%" PRId64 " offset=%" PRIu64, device,
                      msg->channel, msg->start_us, msg->offset);
        else
            c2d_debug("device %s: %s", device, detail);
        return;
    }
    switch (ack->status) {
    case C2D_ACK_OFFSET:
        if (msg->kind == CTL_INGEST_MSG_BEGIN && ack->offset > 0)
            c2d_info("resume device=%s ch=%u start=%" PRId64 " offset=%" PRIu64, device,
                     ack->channel, ack->start_us, ack->offset);
        else if (detail[0])
            c2d_debug("device %s ch %u start %" PRId64 ": offset %" PRIu64 ": %s", device,
                      ack->channel, ack->start_us, ack->offset, detail);
        break;
    case C2D_ACK_COMMITTED:
        c2d_info("committed device %s ch %u start %" PRId64 " size %" PRIu64 " (%s)", device,
                 ack->channel, ack->start_us, ack->offset, detail);
        break;
    case C2D_ACK_DUPLICATE:
        c2d_info("duplicate device %s ch %u start %" PRId64 " size %" PRIu64 " (%s)", device,
                 ack->channel, ack->start_us, ack->offset, detail);
        break;
    case C2D_ACK_REJECTED:
        c2d_log(strcmp(ack->reason, "storage") == 0 ? C2D_LOG_ERROR : C2D_LOG_WARN,
                "rejected device %s ch %u start %" PRId64 " reason %s offset %" PRIu64 ": %s",
                device, ack->channel, ack->start_us, ack->reason, ack->offset, detail);
        break;
    }
    char topic[C2D_TOPIC_MAX];
    if (c2d_topic_format(topic, sizeof(topic), device, C2D_TOPIC_ACK) != C2D_OK)
        return;
    char *json = c2d_msg_encode(ack);
    if (!json) {
        c2d_err("device %s: cannot encode ack (out of memory)", device);
        return;
    }
    int rc = mosquitto_publish_v5(d->mosq, NULL, topic, (int)strlen(json), json, 1, false, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        c2d_warn("device %s: publishing ack: %s", device, mosquitto_strerror(rc));
    free(json);
}

static void evt_log(ctl_daemon *d, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A log line caused by a device's evt message, within the rate limit. */
static void evt_log(ctl_daemon *d, int level, const char *fmt, ...)
{
    int64_t now = c2d_mono_us();
    if (now - d->log_refill_us >= EVT_LOG_REFILL_US) {
        int64_t add = (now - d->log_refill_us) / EVT_LOG_REFILL_US;
        d->log_tokens =
            add >= EVT_LOG_BURST - d->log_tokens ? EVT_LOG_BURST : d->log_tokens + (int)add;
        d->log_refill_us = now;
    }
    if (d->log_tokens == 0) {
        d->log_suppressed++;
        return;
    }
    d->log_tokens--;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (d->log_suppressed)
        c2d_log(level, "%s (%" PRIu64 " evt lines left out before this one)", line,
                d->log_suppressed);
    else
        c2d_log(level, "%s", line);
    d->log_suppressed = 0;
}

/* Stores the evt messages parsed since the last call, in one transaction. */
static void flush_evt(ctl_daemon *d)
{
    if (d->nevt == 0)
        return;
    ctl_devmsg_item items[CTL_DAEMON_EVT_BATCH];
    int results[CTL_DAEMON_EVT_BATCH];
    for (size_t i = 0; i < d->nevt; i++) {
        items[i].device = d->evt_device[i];
        items[i].msg = &d->evt[i];
    }
    int rc = ctl_devmsg_store_many(d->dir, d->ledger, items, d->nevt, results);
    if (rc != 0)
        evt_log(d, C2D_LOG_ERROR, "storing %zu evt messages: %s; dropped", d->nevt, strerror(-rc));
    for (size_t i = 0; rc == 0 && i < d->nevt; i++) {
        if (results[i] == -ENOENT)
            evt_log(d, C2D_LOG_WARN, "device %s: evt dropped: no recorder paired with it",
                    items[i].device);
        else if (results[i] != 0)
            evt_log(d, C2D_LOG_WARN, "device %s: evt dropped: %s", items[i].device,
                    strerror(-results[i]));
    }
    d->nevt = 0;
}

static void handle_evt(ctl_daemon *d, const char *device, const struct mosquitto_message *msg)
{
    if (!d->dir) {
        c2d_debug("device %s: ignoring message on %s (no directory)", device, msg->topic);
        return;
    }
    char why[CTL_DEVMSG_WHY_MAX];
    int rc = ctl_devmsg_parse(msg->payload, msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0,
                              c2d_now_us(), &d->evt[d->nevt], why, sizeof(why));
    if (rc != 0) {
        evt_log(d, C2D_LOG_WARN, "device %s: evt refused: %s", device, why);
        return;
    }
    strcpy(d->evt_device[d->nevt], device); /* fits: the topic parser bounds it */
    if (++d->nevt == CTL_DAEMON_EVT_BATCH)
        flush_evt(d);
}

/* A state message (or a last will): kept for the API; a refused one is
 * counted by devstate and logged, rate limited with the evt lines. */
static void handle_state(ctl_daemon *d, const char *device, const struct mosquitto_message *msg)
{
    if (!d->devstate)
        return;
    char why[CTL_DEVSTATE_WHY_MAX] = "";
    int rc = ctl_devstate_update(d->devstate, device, msg->payload,
                                 msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0, c2d_now_us(),
                                 why, sizeof(why));
    if (rc == -ENOSPC)
        evt_log(d, C2D_LOG_WARN, "device %s: state dropped: too many devices", device);
    else if (rc != 0)
        evt_log(d, C2D_LOG_WARN, "device %s: state refused: %s", device,
                rc == -ENOMEM ? "out of memory" : why);
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    ctl_daemon *d = ud;
    char device[C2D_DEVICE_ID_MAX + 1];
    c2d_topic_kind kind;
    if (strncmp(msg->topic, PAIR_TOPIC_PREFIX, strlen(PAIR_TOPIC_PREFIX)) == 0) {
        handle_pair(d, msg);
        return;
    }
    c2d_status st = c2d_topic_parse(msg->topic, device, &kind);
    if (st != C2D_OK) {
        char buf[160];
        c2d_warn("dropped message on topic \"%s\": %s (%s); no ack possible",
                 printable(msg->topic, buf, sizeof(buf)), c2d_reason(st), c2d_strerror(st));
        return;
    }
    if (kind == C2D_TOPIC_CSR && d->renew) {
        if (over_limit(d, device, msg))
            return;
        int refused = device_refused(d, device, msg->topic);
        if (!refused)
            handle_renew(d, msg);
        else if (refused == CTL_DEV_REVOKED)
            answer_revoked(d, device); /* unpaired: tell it, or it asks for ever */
        return;
    }
    if (over_limit(d, device, msg) || device_refused(d, device, msg->topic))
        return;
    if (kind == C2D_TOPIC_STATE) {
        handle_state(d, device, msg);
        return;
    }
    if (kind == C2D_TOPIC_EVT) {
        handle_evt(d, device, msg);
        return;
    }
    if (kind != C2D_TOPIC_SEG) {
        c2d_debug("device %s: ignoring message on %s", device, msg->topic);
        return;
    }
    if (msg->payloadlen < 0)
        return;
    ctl_ingest_handle(d->ing, device, msg->payload, (size_t)msg->payloadlen, sink, d);
}

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags,
                       const mosquitto_property *props)
{
    ctl_daemon *d = ud;
    if (rc != 0) {
        c2d_err("broker %s:%" PRId64 " refused the connection: %s", d->broker->host,
                d->broker->port, mosquitto_reason_string(rc));
        return;
    }
    d->session_ok = 1;
    d->backoff_ms = CTL_BACKOFF_MIN_MS;
    if (d->cfgpub)
        ctl_cfgpub_mark_all(d->cfgpub); /* retained configs may be gone with the broker */
    c2d_info("connected to %s:%" PRId64 " (session %s)", d->broker->host, d->broker->port,
             (flags & 1) ? "resumed" : "new");
    int src = mosquitto_subscribe_multiple(m, NULL, d->nsubs, d->subs, 1, 0, NULL);
    if (src != MOSQ_ERR_SUCCESS)
        c2d_err("subscribe %s%s%s: %s", d->subs[0], d->nsubs > 1 ? ", " : "",
                d->nsubs > 1 ? d->subs[1] : "", mosquitto_strerror(src));
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted,
                         const mosquitto_property *props)
{
    ctl_daemon *d = ud;
    for (int i = 0; i < d->nsubs; i++)
        if (i >= n || granted[i] > 1)
            c2d_err("broker refused the subscription to %s (code %d)", d->subs[i],
                    i < n ? granted[i] : -1);
        else
            c2d_debug("subscribed to %s with QoS %d", d->subs[i], granted[i]);
}

static void on_disconnect(struct mosquitto *m, void *ud, int rc, const mosquitto_property *props)
{
    ctl_daemon *d = ud;
    d->connected = 0;
    if (rc != 0)
        c2d_warn("disconnected from the broker: %s", mosquitto_reason_string(rc));
}

/* Answers the commits the committer finished. */
static void take_commits(ctl_daemon *d)
{
    if (!d->committer)
        return;
    ctl_commit_job jobs[DONE_BATCH];
    size_t n;
    while ((n = ctl_committer_take(d->committer, jobs, DONE_BATCH)) > 0)
        for (size_t i = 0; i < n; i++, d->commits_since_janitor++)
            if (ctl_ingest_commit_done(d->ing, &jobs[i], sink, d) != 0)
                c2d_err("device %s: commit of ch %u start %" PRId64 " unknown to ingest",
                        jobs[i].key.device, jobs[i].key.channel, jobs[i].key.start_us);
}

static int submit_commit(void *ud, const ctl_commit_job *job)
{
    ctl_daemon *d = ud;
    return ctl_committer_submit(d->committer, job);
}

/* One round of the network loop: waits up to timeout_ms for the broker's
 * socket or a finished commit, answers finished commits, then lets
 * libmosquitto read, write and keep alive (mosquitto_loop without waiting).
 * Returns what mosquitto_loop returns. */
static int loop_once(ctl_daemon *d, int timeout_ms)
{
    if (d->committer) {
        struct pollfd p[3];
        nfds_t n = 2;
        p[0].fd = mosquitto_socket(d->mosq);
        p[0].events = POLLIN | (mosquitto_want_write(d->mosq) ? POLLOUT : 0);
        p[1].fd = ctl_committer_fd(d->committer);
        p[1].events = POLLIN;
        if (d->cfgpub && d->session_ok) {
            p[2].fd = ctl_cfgpub_fd(d->cfgpub);
            p[2].events = POLLIN;
            n = 3;
        }
        p[0].revents = p[1].revents = p[2].revents = 0;
        if (poll(p, n, timeout_ms) < 0 && errno != EINTR)
            return MOSQ_ERR_ERRNO;
        if (p[1].revents)
            take_commits(d);
        if (n == 3 && p[2].revents)
            ctl_cfgpub_flush(d->cfgpub, publish_cfg, d);
        janitor(d);
        timeout_ms = 0;
    }
    return mosquitto_loop(d->mosq, timeout_ms, 1);
}

int ctl_daemon_new(const c2d_broker_cfg *broker, ctl_ingest *ing, ctl_committer *committer,
                   ctl_dir *dir, ctl_daemon **out, char *err, size_t errlen)
{
    ctl_daemon *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    d->broker = broker;
    d->ing = ing;
    d->committer = committer;
    d->dir = dir;
    d->subs[d->nsubs++] = SEG_SUBSCRIPTION;
    if (dir)
        d->subs[d->nsubs++] = EVT_SUBSCRIPTION;
    d->log_tokens = EVT_LOG_BURST;
    d->revoked_tokens = REVOKED_ANSWER_BURST;
    d->log_refill_us = c2d_mono_us();
    d->backoff_ms = CTL_BACKOFF_MIN_MS;
    if (ctl_devlimit_new(NULL, &d->devlimit) != 0) {
        snprintf(err, errlen, "out of memory");
        free(d);
        return -1;
    }
    d->mosq = c2d_mqtt_new(broker, CTL_DEFAULT_CLIENT_ID, 0, d, err, errlen);
    if (d->mosq && (mosquitto_int_option(d->mosq, MOSQ_OPT_RECEIVE_MAXIMUM, CTL_MQTT_RECEIVE_MAX) !=
                        MOSQ_ERR_SUCCESS ||
                    mosquitto_int_option(d->mosq, MOSQ_OPT_SEND_MAXIMUM, CTL_MQTT_SEND_MAX) !=
                        MOSQ_ERR_SUCCESS)) {
        snprintf(err, errlen, "setting the MQTT receive/send maximum failed");
        mosquitto_destroy(d->mosq);
        d->mosq = NULL;
    }
    if (!d->mosq) {
        ctl_devlimit_free(d->devlimit);
        free(d);
        return -1;
    }
    mosquitto_connect_v5_callback_set(d->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(d->mosq, on_disconnect);
    mosquitto_message_v5_callback_set(d->mosq, on_message);
    mosquitto_subscribe_v5_callback_set(d->mosq, on_subscribe);
    if (committer)
        ctl_ingest_set_committer(ing, submit_commit, d);
    *out = d;
    return 0;
}

void ctl_daemon_free(ctl_daemon *d)
{
    if (!d)
        return;
    if (d->committer) {
        /* ctl_daemon_run answered every commit; make sure of it. */
        ctl_committer_wait_idle(d->committer);
        take_commits(d);
        ctl_ingest_set_committer(d->ing, NULL, NULL);
    }
    mosquitto_destroy(d->mosq);
    ctl_devlimit_free(d->devlimit);
    free(d);
}

/* Sleeps ms in short steps so a stop request is noticed. */
static void nap(int ms, volatile sig_atomic_t *stop)
{
    while (ms > 0 && !*stop) {
        int step = ms < 100 ? ms : 100;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static int try_connect(ctl_daemon *d)
{
    mosquitto_property *props = NULL;
    int rc = mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                          CTL_SESSION_EXPIRY_S);
    if (rc == MOSQ_ERR_SUCCESS) {
        d->session_ok = 0;
        if (!d->ever_connected)
            rc = mosquitto_connect_bind_v5(d->mosq, d->broker->host, (int)d->broker->port,
                                           (int)d->broker->keepalive_s, NULL, props);
        else
            rc = mosquitto_reconnect(d->mosq);
    }
    mosquitto_property_free_all(&props);
    if (rc == MOSQ_ERR_SUCCESS) {
        d->connected = 1;
        d->ever_connected = 1;
    }
    return rc;
}

int ctl_daemon_run(ctl_daemon *d, volatile sig_atomic_t *stop)
{
    while (!*stop) {
        if (!d->connected) {
            int rc = try_connect(d);
            if (rc != MOSQ_ERR_SUCCESS) {
                c2d_warn("connecting to %s:%" PRId64 ": %s; retrying in %d ms", d->broker->host,
                         d->broker->port,
                         rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc),
                         d->backoff_ms);
                nap(d->backoff_ms, stop);
                d->backoff_ms =
                    d->backoff_ms * 2 > CTL_BACKOFF_MAX_MS ? CTL_BACKOFF_MAX_MS : d->backoff_ms * 2;
                continue;
            }
        }
        int rc = loop_once(d, LOOP_TIMEOUT_MS);
        flush_evt(d);
        state_tick(d);
        revoke_tick(d);
        if (rc == MOSQ_ERR_SUCCESS || (rc == MOSQ_ERR_ERRNO && errno == EINTR))
            continue;
        if (d->connected || rc != MOSQ_ERR_NO_CONN)
            c2d_warn("connection to %s:%" PRId64 " lost: %s; reconnecting in %d ms",
                     d->broker->host, d->broker->port,
                     rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc),
                     d->backoff_ms);
        d->connected = 0;
        nap(d->backoff_ms, stop);
        if (!d->session_ok)
            d->backoff_ms =
                d->backoff_ms * 2 > CTL_BACKOFF_MAX_MS ? CTL_BACKOFF_MAX_MS : d->backoff_ms * 2;
        d->session_ok = 0;
        take_commits(d); /* also while disconnected: free the uploads */
    }
    if (d->committer) {
        /* Finish the queued commits and queue their acks before leaving. */
        ctl_committer_wait_idle(d->committer);
        take_commits(d);
    }
    if (d->connected) {
        /* Write out acks queued by the last messages, then leave politely
         * (the session and its subscription stay with the broker). */
        int64_t until = c2d_mono_us() + FLUSH_US;
        while (mosquitto_want_write(d->mosq) && c2d_mono_us() < until)
            if (mosquitto_loop(d->mosq, 100, 1) != MOSQ_ERR_SUCCESS && errno != EINTR)
                break;
        mosquitto_disconnect_v5(d->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
        mosquitto_loop(d->mosq, 100, 1);
        d->connected = 0;
    }
    flush_evt(d); /* what the last loop rounds parsed */
    return 0;
}
