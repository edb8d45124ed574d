#include "agent/agent.h"

#include "agent/channel.h"
#include "agent/renew.h"
#include "agent/spool.h"
#include "agent/upload_sched.h"
#include "agent/uploader.h"
#include "common/c2d_fs.h"
#include "common/c2d_log.h"
#include "common/c2d_mqtt.h"
#include "common/c2d_time.h"
#include "proto/c2d_proto.h"
#include "proto/devcfg.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <mqtt_protocol.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* agent_run's polling period: bounds the reaction to a stop request and
 * the delay of a state message after a change. */
#define TICK_MS 200
/* State messages caused by changes are at least this far apart, so a
 * flapping source cannot flood the broker. */
#define STATE_MIN_GAP_US 1000000
/* A second agent (or `status`) may hold the lock for a moment. */
#define LOCK_WAIT_MS 5000
/* On stop, how long to wait for the broker to confirm the offline state. */
#define OFFLINE_WAIT_MS 2000
/* Reconnect backoff: 1 s doubling to 30 s (mosquitto_reconnect_delay_set). */
#define RECONNECT_MIN_S 1
#define RECONNECT_MAX_S 30
/* --exit-when-done with parked segments: the situation must hold this long
 * (several uploader polls) before the agent gives up on them. */
#define PARKED_SETTLE_US 2000000
/* Queued segments counted per channel for status; a spool is bounded in
 * bytes, this bounds the walk should it hold very many tiny segments. */
#define QUEUE_WALK_MAX 100000

#define LOCK_NAME "agent.lock"
#define STATUS_NAME "status.json"
#define DISK_PROBE_NAME ".disk-probe"
/* The device config last applied (merged over every cfg received), so a
 * restart without network uploads as before. */
#define DEVCFG_NAME "devcfg.json"
#define OFFLINE_PAYLOAD "{\"online\":false}"

/* glibc gives every thread that allocates its own malloc arena (up to 8 per
 * core), each holding ~1.5 MiB of its own free memory: with 16 channel
 * threads that is most of the agent's private memory. Two arenas measured
 * 8 MiB less RSS with 16 channels; the threads allocate rarely enough that
 * sharing costs nothing. */
#define MALLOC_ARENAS 2
/* Above the largest frame (1 MiB chunk + header); trim only large slack. */
#define MALLOC_MMAP_THRESHOLD (2 * 1024 * 1024)
#define MALLOC_TRIM_THRESHOLD (8 * 1024 * 1024)

struct agent {
    const agent_config *cfg;
    int lock_fd;
    agent_spool *spool;
    struct mosquitto *mosq;
    int loop_started;
    agent_channel **channels;
    uint16_t *ids;
    size_t n_channels;

    pthread_mutex_t up_mu; /* guards up against the network thread */
    agent_uploader *up;

    char seg_topic[C2D_TOPIC_MAX];
    char ack_topic[C2D_TOPIC_MAX];
    char cfg_topic[C2D_TOPIC_MAX];
    char state_topic[C2D_TOPIC_MAX];
    char csr_topic[C2D_TOPIC_MAX + 8]; /* renewal (agent/renew.h) */
    char cert_topic[C2D_TOPIC_MAX + 8];
    char status_path[PATH_MAX];
    char devcfg_path[PATH_MAX];

    /* Device config (cfg topic), written by the network thread (and by
     * agent_start before it runs), read by agent_run's state message. */
    pthread_mutex_t cfg_mu;
    int have_cfg;
    uint64_t cfg_version;
    int *backup;        /* per channel, 1 = upload (default) */
    char *devcfg_saved; /* what devcfg.json holds, to skip rewriting it */

    atomic_int connected;
    atomic_int state_due;
    atomic_int stopping;
    atomic_int offline_mid;
    atomic_int offline_acked;
    atomic_int net_died;      /* libmosquitto's network thread has exited */
    atomic_int net_connected; /* a connect since the last network restart */
    int net_restarts;
    int64_t net_restart_at_us;

    int64_t started_us;
    int64_t last_state_us;
    uint64_t last_sig;
    uint64_t rate_bytes;
    int64_t rate_at_us;
    double rate_bps;
    int64_t parked_since_us;
    agent_seg_observer observer;
    void *observer_ud;
    atomic_uint_fast64_t connects, disconnects;
    const char *disk;   /* "ok", "missing" or "failing": probed per state message */
    agent_renew *renew; /* NULL: no renewal (not a paired configuration) */
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- state directory lock ------------------------------------------------ */

/* Opens and locks state_dir/agent.lock. Returns the fd, -EWOULDBLOCK if an
 * agent holds it (after waiting up to wait_ms), or -errno. */
static int lock_state_dir(const char *state_dir, int wait_ms)
{
    char path[PATH_MAX];
    int rc = c2d_mkdirs(state_dir, 0750);
    if (rc == 0)
        rc = c2d_path_join(path, sizeof(path), state_dir, LOCK_NAME);
    if (rc != 0)
        return rc;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    for (int waited = 0;; waited += 100) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return fd;
        if (errno != EWOULDBLOCK || waited >= wait_ms) {
            rc = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
            close(fd);
            return rc;
        }
        sleep_ms(100);
    }
}

/* ---- JSON building blocks ------------------------------------------------ */

static void add_num(cJSON *o, const char *k, double v)
{
    cJSON_AddNumberToObject(o, k, v);
}

static cJSON *spool_json(const agent_spool_stats *s)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    add_num(o, "queued_segments", (double)s->queued_segments);
    add_num(o, "queued_bytes", (double)s->queued_bytes);
    /* The controller's view (issue 5): how much waits and since when. */
    add_num(o, "segments", (double)s->queued_segments);
    add_num(o, "bytes", (double)s->queued_bytes);
    int64_t now = c2d_now_us();
    add_num(o, "oldest_age_s",
            s->oldest_start_us > 0 && now > s->oldest_start_us
                ? (double)((now - s->oldest_start_us) / 1000000)
                : 0);
    add_num(o, "oldest_start_us", (double)s->oldest_start_us);
    add_num(o, "dropped_segments", (double)s->dropped_segments);
    add_num(o, "dropped_bytes", (double)s->dropped_bytes);
    add_num(o, "max_bytes", (double)s->max_bytes);
    add_num(o, "lost_segments", (double)s->lost_segments);
    return o;
}

/* Adds "checkpoint" (text, {"hex": ...} if not printable, or null) and
 * "queue" (segments, bytes, oldest/newest start) for channel ch. */
static void add_channel_spool(cJSON *o, agent_spool *sp, uint16_t ch)
{
    unsigned char cp[AGENT_CHECKPOINT_MAX + 1];
    size_t len = AGENT_CHECKPOINT_MAX;
    int rc = agent_spool_get_checkpoint(sp, ch, cp, &len);
    if (rc != 0) {
        cJSON_AddNullToObject(o, "checkpoint");
    } else {
        int text = 1;
        for (size_t i = 0; i < len; i++)
            if (cp[i] < 0x20 || cp[i] > 0x7e)
                text = 0;
        if (text) {
            cp[len] = '\0';
            cJSON_AddStringToObject(o, "checkpoint", (const char *)cp);
        } else {
            char hex[2 * AGENT_CHECKPOINT_MAX + 1];
            for (size_t i = 0; i < len; i++)
                snprintf(hex + 2 * i, 3, "%02x", cp[i]);
            hex[2 * len] = '\0';
            cJSON *h = cJSON_AddObjectToObject(o, "checkpoint");
            if (h)
                cJSON_AddStringToObject(h, "hex", hex);
        }
    }
    agent_segment seg;
    int64_t after = INT64_MIN, oldest = 0, newest = 0;
    uint64_t n = 0, bytes = 0;
    while (n < QUEUE_WALK_MAX && agent_spool_next(sp, ch, after, &seg) == 0) {
        if (n == 0)
            oldest = seg.start_us;
        newest = seg.start_us;
        bytes += seg.size;
        after = seg.start_us;
        n++;
    }
    cJSON *q = cJSON_AddObjectToObject(o, "queue");
    if (q) {
        add_num(q, "segments", (double)n);
        add_num(q, "bytes", (double)bytes);
        add_num(q, "oldest_start_us", (double)oldest);
        add_num(q, "newest_start_us", (double)newest);
    }
}

/* ---- state message --------------------------------------------------------- */

typedef struct {
    agent_channel_status ch[AGENT_CHANNELS_MAX];
    agent_lane_status lane[AGENT_CHANNELS_MAX];
    agent_uploader_status up;
    agent_spool_stats spool;
    int have_cfg;
    uint64_t cfg_version;
} snapshot;

static void take_snapshot(agent *a, snapshot *s)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < a->n_channels; i++)
        if (a->channels && a->channels[i])
            agent_channel_get_status(a->channels[i], &s->ch[i]);
    if (a->up)
        agent_uploader_get_status(a->up, &s->up, s->lane, a->n_channels);
    agent_spool_get_stats(a->spool, &s->spool);
    pthread_mutex_lock(&a->cfg_mu);
    s->have_cfg = a->have_cfg;
    s->cfg_version = a->cfg_version;
    pthread_mutex_unlock(&a->cfg_mu);
}

/* What "changed" means for the state message: channel states and errors,
 * parked or dropped segments, the connection. Counters that move all the
 * time (bytes, segments) go out with the periodic message. */
static uint64_t signature(const agent *a, const snapshot *s)
{
    uint64_t h = 1469598103934665603ULL;
#define MIX(v) (h = (h ^ (uint64_t)(v)) * 1099511628211ULL)
    MIX(atomic_load(&a->connected));
    for (size_t i = 0; i < a->n_channels; i++) {
        MIX(s->ch[i].state);
        MIX(s->ch[i].retries);
        for (const char *p = s->ch[i].error; *p; p++)
            MIX((unsigned char)*p);
        MIX(s->lane[i].parked);
        MIX(s->lane[i].dropped);
        MIX(s->lane[i].dropped_backup_off);
        MIX(s->lane[i].backup);
        for (const char *p = s->lane[i].hold; *p; p++)
            MIX((unsigned char)*p);
    }
    MIX(s->have_cfg);
    MIX(s->cfg_version);
#undef MIX
    return h;
}

static cJSON *build_state(agent *a, const snapshot *s, int detailed)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    if (detailed)
        cJSON_AddTrueToObject(root, "running");
    cJSON_AddTrueToObject(root, "online");
    cJSON_AddStringToObject(root, "device", a->cfg->device_id);
    add_num(root, "time_us", (double)c2d_now_us());
    add_num(root, "uptime_s", (double)((c2d_mono_us() - a->started_us) / 1000000));
    if (a->cfg->model)
        cJSON_AddStringToObject(root, "model", a->cfg->model);
    cJSON_AddStringToObject(root, "disk", a->disk ? a->disk : "ok");
    add_num(root, "upload_bps", a->rate_bps);
    if (a->cfg->recorder_retention_s > 0)
        add_num(root, "recorder_retention_s", (double)a->cfg->recorder_retention_s);
    cJSON_AddBoolToObject(root, "connected", atomic_load(&a->connected));
    if (s->have_cfg)
        add_num(root, "cfg_version", (double)s->cfg_version);
    else
        cJSON_AddNullToObject(root, "cfg_version");
    cJSON *sp = spool_json(&s->spool);
    if (sp)
        cJSON_AddItemToObject(root, "spool", sp);

    cJSON *up = cJSON_AddObjectToObject(root, "upload");
    if (up) {
        add_num(up, "rate_bps", a->rate_bps);
        add_num(up, "rate_limit_bps", (double)a->cfg->rate_limit_bps);
        add_num(up, "bytes_sent", (double)s->up.bytes_sent);
        add_num(up, "bytes_committed", (double)s->up.bytes_committed);
        add_num(up, "segments_committed", (double)s->up.segments_committed);
        add_num(up, "segments_duplicate", (double)s->up.segments_duplicate);
        add_num(up, "rejections", (double)s->up.rejections);
        add_num(up, "parked", (double)s->up.parked);
        add_num(up, "held", (double)s->up.held);
        add_num(up, "dropped_backup_off", (double)s->up.dropped_backup_off);
        add_num(up, "acks_dropped", (double)s->up.acks_dropped);
        add_num(up, "acks_invalid", (double)s->up.acks_invalid);
        if (a->cfg->test_corrupt_permille > 0)
            add_num(up, "corrupted_frames", (double)s->up.corrupted_frames);
    }

    cJSON *chs = cJSON_AddArrayToObject(root, "channels");
    for (size_t i = 0; chs && i < a->n_channels; i++) {
        const agent_channel_conf *cc = &a->cfg->channels[i];
        const agent_channel_status *cs = &s->ch[i];
        const agent_lane_status *ls = &s->lane[i];
        cJSON *c = cJSON_CreateObject();
        if (!c)
            break;
        cJSON_AddItemToArray(chs, c);
        add_num(c, "id", (double)cc->id);
        cJSON_AddStringToObject(c, "name", cc->name);
        cJSON_AddStringToObject(c, "state", agent_channel_state_name(cs->state));
        cJSON_AddStringToObject(c, "error", cs->error);
        add_num(c, "segments", (double)cs->segments);
        add_num(c, "retries", (double)cs->retries);
        add_num(c, "last_segment_us", (double)cs->last_segment_us);
        if (cs->last_segment_us > 0)
            add_num(c, "last_segment_age_s",
                    (double)((c2d_now_us() - cs->last_segment_us) / 1000000));
        else
            cJSON_AddNullToObject(c, "last_segment_age_s");
        cJSON_AddBoolToObject(c, "backup", ls->backup);
        cJSON *u = cJSON_AddObjectToObject(c, "upload");
        if (u) {
            /* One word for dashboards: why this channel is not uploading. */
            const char *ust = !ls->backup ? "backup_off" : ls->hold[0] ? ls->hold : "ok";
            cJSON_AddStringToObject(u, "state", ust);
            cJSON_AddStringToObject(u, "phase", agent_lane_phase_name(ls->phase));
            add_num(u, "start_us", (double)ls->start_us);
            add_num(u, "size", (double)ls->size);
            add_num(u, "sent", (double)ls->sent);
            add_num(u, "confirmed", (double)ls->confirmed);
            add_num(u, "committed", (double)ls->committed);
            add_num(u, "rejections", (double)ls->rejections);
            add_num(u, "parked", (double)ls->parked);
            add_num(u, "dropped", (double)ls->dropped);
            add_num(u, "dropped_backup_off", (double)ls->dropped_backup_off);
            add_num(u, "holds", (double)ls->holds);
            add_num(u, "retry_in_s", (double)((ls->hold_retry_in_us + 999999) / 1000000));
            cJSON_AddStringToObject(u, "last_reason", ls->last_reason);
        }
        if (detailed)
            add_channel_spool(c, a->spool, (uint16_t)cc->id);
    }
    return root;
}

/* Writes the status snapshot for `c2d-agent status`. Not fsync'd: it is
 * rewritten every few seconds and worthless after a power cut. */
static void write_status_file(agent *a, const char *text)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", a->status_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    int rc = c2d_write_all(fd, text, strlen(text));
    if (close(fd) != 0)
        rc = -1;
    if (rc != 0 || rename(tmp, a->status_path) != 0)
        unlink(tmp);
}

/* The spool's file system: "missing" (the directory is gone: unmounted,
 * card out), "failing" (a small write fails: read-only remount, I/O error,
 * full), else "ok". Cheap enough for every state message. */
static const char *probe_disk(const char *state_dir)
{
    char path[PATH_MAX];
    struct stat st;
    if (stat(state_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return "missing";
    if (c2d_path_join(path, sizeof(path), state_dir, DISK_PROBE_NAME) != 0)
        return "ok";
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == ENOENT ? "missing" : "failing";
    int rc = c2d_write_all(fd, "c2d\n", 4);
    if (close(fd) != 0)
        rc = -1;
    unlink(path);
    return rc == 0 ? "ok" : "failing";
}

static void publish_state(agent *a, const snapshot *s, int64_t now)
{
    int64_t dt = now - a->rate_at_us;
    if (dt > 0) {
        a->rate_bps = (double)(s->up.bytes_sent - a->rate_bytes) * 1e6 / (double)dt;
        a->rate_bps = (double)(int64_t)a->rate_bps;
    }
    a->rate_bytes = s->up.bytes_sent;
    a->rate_at_us = now;
    a->disk = probe_disk(a->cfg->state_dir);

    cJSON *st = build_state(a, s, 0);
    char *text = st ? cJSON_PrintUnformatted(st) : NULL;
    cJSON_Delete(st);
    if (text && atomic_load(&a->connected)) {
        int rc = mosquitto_publish_v5(a->mosq, NULL, a->state_topic, (int)strlen(text), text, 1,
                                      true, NULL);
        if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN)
            c2d_warn("cannot publish state: %s", mosquitto_strerror(rc));
    }
    free(text);

    cJSON *full = build_state(a, s, 1);
    text = full ? cJSON_Print(full) : NULL;
    cJSON_Delete(full);
    if (text)
        write_status_file(a, text);
    free(text);
    a->last_state_us = now;
}

/* ---- uploader callbacks (uploader thread) ------------------------------ */

static int publish_seg(void *ctx, const void *buf, size_t len)
{
    agent *a = ctx;
    int rc = mosquitto_publish_v5(a->mosq, NULL, a->seg_topic, (int)len, buf, 1, false, NULL);
    if (rc == MOSQ_ERR_SUCCESS)
        return 0;
    if (rc != MOSQ_ERR_NO_CONN)
        c2d_warn("publish on %s failed: %s", a->seg_topic, mosquitto_strerror(rc));
    return -1;
}

static void on_upload_event(void *ctx, const agent_upload_event *ev)
{
    agent *a = ctx;
    unsigned ch = ev->channel;
    long long start = (long long)ev->start_us;
    unsigned long long size = (unsigned long long)ev->size;
    unsigned long long off = (unsigned long long)ev->offset;
    switch (ev->type) {
    case AGENT_UP_COMMITTED:
        c2d_info("segment committed ch=%u start=%lld size=%llu", ch, start, size);
        break;
    case AGENT_UP_DUPLICATE:
        c2d_info("segment committed ch=%u start=%lld size=%llu (duplicate: already stored)", ch,
                 start, size);
        break;
    case AGENT_UP_REJECTED:
        c2d_warn("segment rejected ch=%u start=%lld reason=%s offset=%llu: %s", ch, start,
                 ev->reason, off, ev->action);
        break;
    case AGENT_UP_PARKED:
        c2d_warn("segment parked ch=%u start=%lld size=%llu reason=%s: kept in the spool, not "
                 "retried until restart",
                 ch, start, size, ev->reason);
        atomic_store(&a->state_due, 1);
        break;
    case AGENT_UP_DROPPED:
        c2d_err("segment dropped ch=%u start=%lld size=%llu: %s", ch, start, size, ev->reason);
        atomic_store(&a->state_due, 1);
        break;
    case AGENT_UP_TIMEOUT:
        c2d_warn("no ack for ch=%u start=%lld within %llds (confirmed %llu): resending begin", ch,
                 start, (long long)a->cfg->ack_timeout_s, off);
        break;
    case AGENT_UP_RESUMED:
        c2d_info("segment resumed ch=%u start=%lld at offset %llu of %llu", ch, start, off, size);
        break;
    case AGENT_UP_BACKUP_OFF:
        c2d_info("segment deleted ch=%u start=%lld size=%llu: cloud backup is off for the "
                 "channel (%s)",
                 ch, start, size, ev->reason);
        atomic_store(&a->state_due, 1);
        break;
    case AGENT_UP_ERROR:
        c2d_err("%s ch=%u start=%lld: %s (%s)", ev->reason, ch, start, strerror(-ev->err),
                ev->action);
        break;
    }
}

/* ---- device config (cfg topic) ---------------------------------------- */

/* Applies a decoded device config: listed channels take its settings, the
 * others keep theirs; the result (every channel of this agent, at dc's
 * version) is saved to devcfg.json unless it came from there. A new version
 * makes lanes held by quota_full / no_disk ask again at once: the
 * controller republishes cfg when a disk changes. Network thread, or
 * agent_start before it runs. */
static void apply_devcfg(agent *a, const c2d_devcfg *dc, int from_disk)
{
    c2d_devcfg merged;
    memset(&merged, 0, sizeof(merged));
    int backup[AGENT_CHANNELS_MAX];
    char off[256] = "";
    size_t offlen = 0;

    pthread_mutex_lock(&a->cfg_mu);
    int new_version = !a->have_cfg || a->cfg_version != dc->version;
    if (a->have_cfg && dc->version < a->cfg_version)
        c2d_warn("device config version %llu is older than the applied %llu; applying it (the "
                 "controller's retained config is the reference)",
                 (unsigned long long)dc->version, (unsigned long long)a->cfg_version);
    for (size_t i = 0; i < a->n_channels; i++) {
        const c2d_devcfg_channel *e = c2d_devcfg_find(dc, a->ids[i]);
        if (e)
            a->backup[i] = e->backup;
        backup[i] = a->backup[i];
        merged.channels[i].ch = a->ids[i];
        merged.channels[i].backup = a->backup[i];
        if (!a->backup[i] && offlen < sizeof(off))
            offlen += (size_t)snprintf(off + offlen, sizeof(off) - offlen, "%s%u",
                                       offlen ? "," : "", (unsigned)a->ids[i]);
    }
    merged.n_channels = a->n_channels;
    merged.version = dc->version;
    a->have_cfg = 1;
    a->cfg_version = dc->version;
    char *text = from_disk ? NULL : c2d_devcfg_encode(&merged);
    if (text && (!a->devcfg_saved || strcmp(text, a->devcfg_saved) != 0)) {
        int rc = c2d_write_file_atomic(a->devcfg_path, text, strlen(text), 0644);
        if (rc != 0) {
            c2d_warn("cannot save the device config to %s: %s", a->devcfg_path, strerror(-rc));
            free(text);
        } else {
            free(a->devcfg_saved);
            a->devcfg_saved = text;
        }
    } else {
        free(text);
    }
    pthread_mutex_unlock(&a->cfg_mu);

    pthread_mutex_lock(&a->up_mu);
    if (a->up) {
        for (size_t i = 0; i < a->n_channels; i++)
            agent_uploader_set_backup(a->up, a->ids[i], backup[i]);
        if (new_version)
            agent_uploader_retry_held(a->up);
    }
    pthread_mutex_unlock(&a->up_mu);
    if (new_version)
        c2d_info("device config version %llu applied%s: cloud backup off for channel(s) %s",
                 (unsigned long long)dc->version, from_disk ? " (saved copy)" : "",
                 off[0] ? off : "none");
    atomic_store(&a->state_due, 1);
}

static void on_devcfg(agent *a, const void *payload, size_t len)
{
    if (len == 0)
        return; /* the retained config was cleared: keep the one applied */
    c2d_devcfg *dc = malloc(sizeof(*dc));
    char why[C2D_DEVCFG_WHY_MAX];
    c2d_status st = dc ? c2d_devcfg_decode(payload, len, dc, why, sizeof(why)) : C2D_ERR_NOMEM;
    if (st != C2D_OK)
        c2d_warn("device config on %s ignored (%s); keeping the one applied", a->cfg_topic,
                 dc ? why : "out of memory");
    else
        apply_devcfg(a, dc, 0);
    free(dc);
}

/* Applies devcfg.json if there is one (a bad one is ignored with a
 * warning: the controller's retained config replaces it on connect). */
static void load_devcfg(agent *a)
{
    char *text = NULL;
    size_t len = 0;
    int rc = c2d_read_file(a->devcfg_path, C2D_DEVCFG_MAX, &text, &len);
    if (rc == -ENOENT)
        return;
    c2d_devcfg *dc = malloc(sizeof(*dc));
    char why[C2D_DEVCFG_WHY_MAX] = "out of memory";
    if (rc != 0)
        c2d_warn("cannot read %s: %s; no device config until the controller's arrives",
                 a->devcfg_path, strerror(-rc));
    else if (!dc || c2d_devcfg_decode(text, len, dc, why, sizeof(why)) != C2D_OK)
        c2d_warn("%s ignored (%s); no device config until the controller's arrives", a->devcfg_path,
                 why);
    else {
        pthread_mutex_lock(&a->cfg_mu);
        free(a->devcfg_saved);
        a->devcfg_saved = text;
        text = NULL;
        pthread_mutex_unlock(&a->cfg_mu);
        apply_devcfg(a, dc, 1);
    }
    free(dc);
    free(text);
}

/* ---- mosquitto callbacks (network thread) ------------------------------ */

/* libmosquitto 2.0.11's mosquitto_loop_forever (the thread of
 * mosquitto_loop_start) returns for good on "fatal" errors, and with
 * OpenSSL 3 a broker that dies without closing TLS ("unexpected eof") is
 * one: the agent would never reconnect. The network thread marks itself
 * with a thread-specific value whose destructor runs when it exits; agent_run
 * then joins it and starts a new one, which reconnects. */
static pthread_key_t net_key;
static pthread_once_t net_key_once = PTHREAD_ONCE_INIT;

static void net_thread_exit(void *p)
{
    agent *a = p;
    atomic_store(&a->net_died, 1);
}

static void net_key_create(void)
{
    pthread_key_create(&net_key, net_thread_exit);
}

/* Called from the callbacks that only the network thread runs in threaded
 * mode (connect, disconnect, message, publish acknowledged). */
static void mark_net_thread(agent *a)
{
    if (pthread_getspecific(net_key) != a)
        pthread_setspecific(net_key, a);
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    agent *a = obj;
    mark_net_thread(a);
    if (rc != 0) {
        c2d_warn("broker %s:%lld refused the connection: %s", a->cfg->broker.host,
                 (long long)a->cfg->broker.port, mosquitto_reason_string(rc));
        return;
    }
    c2d_info("connected to broker %s:%lld", a->cfg->broker.host, (long long)a->cfg->broker.port);
    int src = mosquitto_subscribe_v5(m, NULL, a->ack_topic, 1, 0, NULL);
    if (src != MOSQ_ERR_SUCCESS)
        c2d_err("cannot subscribe to %s: %s", a->ack_topic, mosquitto_strerror(src));
    src = mosquitto_subscribe_v5(m, NULL, a->cfg_topic, 1, 0, NULL);
    if (src != MOSQ_ERR_SUCCESS)
        c2d_err("cannot subscribe to %s: %s", a->cfg_topic, mosquitto_strerror(src));
    if (a->renew &&
        (src = mosquitto_subscribe_v5(m, NULL, a->cert_topic, 1, 0, NULL)) != MOSQ_ERR_SUCCESS)
        c2d_err("cannot subscribe to %s: %s", a->cert_topic, mosquitto_strerror(src));
    atomic_store(&a->connected, 1);
    atomic_fetch_add(&a->connects, 1);
    atomic_store(&a->net_connected, 1);
    atomic_store(&a->state_due, 1);
    pthread_mutex_lock(&a->up_mu);
    if (a->up)
        agent_uploader_set_connected(a->up, 1);
    pthread_mutex_unlock(&a->up_mu);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
    agent *a = obj;
    mark_net_thread(a);
    if (atomic_exchange(&a->connected, 0) && !atomic_load(&a->stopping))
        atomic_fetch_add(&a->disconnects, 1);
    pthread_mutex_lock(&a->up_mu);
    if (a->up)
        agent_uploader_set_connected(a->up, 0);
    pthread_mutex_unlock(&a->up_mu);
    if (!atomic_load(&a->stopping))
        c2d_warn("disconnected from broker (%s); reconnecting", mosquitto_strerror(rc));
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    agent *a = obj;
    mark_net_thread(a);
    if (!msg->topic || msg->payloadlen < 0)
        return;
    if (strcmp(msg->topic, a->cfg_topic) == 0) {
        on_devcfg(a, msg->payload, (size_t)msg->payloadlen);
        return;
    }
    if (a->renew && strcmp(msg->topic, a->cert_topic) == 0) {
        agent_renew_deliver(a->renew, msg->payload, (size_t)msg->payloadlen);
        return;
    }
    if (strcmp(msg->topic, a->ack_topic) != 0)
        return;
    pthread_mutex_lock(&a->up_mu);
    int rc = a->up ? agent_uploader_on_ack(a->up, msg->payload, (size_t)msg->payloadlen) : 0;
    pthread_mutex_unlock(&a->up_mu);
    if (rc != 0)
        c2d_debug("ack ignored (invalid, or queue full): %.*s",
                  msg->payloadlen > 200 ? 200 : msg->payloadlen, (const char *)msg->payload);
}

static void on_mqtt_log(struct mosquitto *m, void *obj, int level, const char *text)
{
    if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING))
        c2d_warn("mqtt: %s", text);
    else
        c2d_debug("mqtt: %s", text);
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int rc,
                       const mosquitto_property *props)
{
    agent *a = obj;
    mark_net_thread(a);
    if (mid == atomic_load(&a->offline_mid))
        atomic_store(&a->offline_acked, 1);
}

/* ---- life cycle ------------------------------------------------------------ */

int agent_new(const agent_config *cfg, agent **out, char *err, size_t errlen)
{
    agent *a = calloc(1, sizeof(*a));
    if (!a)
        return fail(err, errlen, "out of memory");
    a->cfg = cfg;
    a->lock_fd = -1;
    a->n_channels = cfg->n_channels;
    atomic_init(&a->connected, 0);
    atomic_init(&a->state_due, 1);
    atomic_init(&a->stopping, 0);
    atomic_init(&a->offline_mid, -1);
    atomic_init(&a->offline_acked, 0);
    atomic_init(&a->net_died, 0);
    atomic_init(&a->net_connected, 0);
    atomic_init(&a->connects, 0);
    atomic_init(&a->disconnects, 0);
    pthread_once(&net_key_once, net_key_create);
    pthread_mutex_init(&a->up_mu, NULL);
    pthread_mutex_init(&a->cfg_mu, NULL);

    if (c2d_topic_format(a->seg_topic, sizeof(a->seg_topic), cfg->device_id, C2D_TOPIC_SEG) ||
        c2d_topic_format(a->ack_topic, sizeof(a->ack_topic), cfg->device_id, C2D_TOPIC_ACK) ||
        c2d_topic_format(a->cfg_topic, sizeof(a->cfg_topic), cfg->device_id, C2D_TOPIC_CFG) ||
        c2d_topic_format(a->state_topic, sizeof(a->state_topic), cfg->device_id, C2D_TOPIC_STATE) ||
        c2d_topic_format(a->csr_topic, sizeof(a->csr_topic), cfg->device_id, C2D_TOPIC_CSR) ||
        c2d_topic_format(a->cert_topic, sizeof(a->cert_topic), cfg->device_id, C2D_TOPIC_CERT)) {
        /* csr/cert also refuse the reserved "c2d-" prefix (no certificate
         * is ever issued for it). */
        fail(err, errlen, "device id \"%s\" does not form a valid topic", cfg->device_id);
        goto fail;
    }
    if (c2d_path_join(a->status_path, sizeof(a->status_path), cfg->state_dir, STATUS_NAME) ||
        c2d_path_join(a->devcfg_path, sizeof(a->devcfg_path), cfg->state_dir, DEVCFG_NAME)) {
        fail(err, errlen, "state_dir \"%s\": path too long", cfg->state_dir);
        goto fail;
    }
    a->lock_fd = lock_state_dir(cfg->state_dir, LOCK_WAIT_MS);
    if (a->lock_fd < 0) {
        if (a->lock_fd == -EWOULDBLOCK)
            fail(err, errlen, "state_dir %s is in use by another c2d-agent", cfg->state_dir);
        else
            fail(err, errlen, "state_dir %s: cannot lock: %s", cfg->state_dir,
                 strerror(-a->lock_fd));
        goto fail;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(a->lock_fd, 0) == 0)
        (void)!pwrite(a->lock_fd, pid, (size_t)n, 0);

    int rc = agent_spool_open(cfg->state_dir, (uint64_t)cfg->spool_max_bytes, &a->spool);
    if (rc != 0) {
        fail(err, errlen, "cannot open the spool in %s: %s", cfg->state_dir, strerror(-rc));
        goto fail;
    }

    if (cfg->serial && !cfg->unpaired) {
        /* A paired configuration: the identity is ours to renew. */
        agent_renew_cfg rc_ = {.state_dir = cfg->state_dir,
                               .device_id = cfg->device_id,
                               .renew_before_s = cfg->renew_before_s};
        if ((rc = agent_renew_new(&rc_, &a->renew)) != 0)
            c2d_warn("certificate renewal off: the identity's certificate in %s: %s",
                     cfg->state_dir, strerror(-rc));
        else
            c2d_info("certificate valid until %lld, renewal due at %lld",
                     (long long)agent_renew_not_after(a->renew),
                     (long long)agent_renew_due(a->renew));
    }
    a->mosq = c2d_mqtt_new(&cfg->broker, cfg->device_id, 0, a, err, errlen);
    if (!a->mosq)
        goto fail;
    rc = mosquitto_will_set_v5(a->mosq, a->state_topic, (int)strlen(OFFLINE_PAYLOAD),
                               OFFLINE_PAYLOAD, 1, true, NULL);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_reconnect_delay_set(a->mosq, RECONNECT_MIN_S, RECONNECT_MAX_S, true);
    if (rc != MOSQ_ERR_SUCCESS) {
        fail(err, errlen, "MQTT set-up: %s", mosquitto_strerror(rc));
        goto fail;
    }
    mosquitto_connect_v5_callback_set(a->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(a->mosq, on_disconnect);
    mosquitto_message_v5_callback_set(a->mosq, on_message);
    mosquitto_publish_v5_callback_set(a->mosq, on_publish);
    mosquitto_log_callback_set(a->mosq, on_mqtt_log);

    a->channels = calloc(cfg->n_channels, sizeof(*a->channels));
    a->ids = calloc(cfg->n_channels, sizeof(*a->ids));
    a->backup = calloc(cfg->n_channels, sizeof(*a->backup));
    if (!a->channels || !a->ids || !a->backup) {
        fail(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_channels; i++) {
        a->ids[i] = (uint16_t)cfg->channels[i].id;
        a->backup[i] = 1;
    }
    *out = a;
    return 0;
fail:
    agent_free(a);
    return -1;
}

/* The test hook's PRNG seed: differs per device and per run. */
static uint64_t corrupt_seed(const char *device_id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = device_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h ^ (uint64_t)c2d_now_us();
}

void agent_set_seg_observer(agent *a, agent_seg_observer fn, void *ud)
{
    a->observer = fn;
    a->observer_ud = ud;
}

void agent_get_counters(agent *a, agent_counters *out)
{
    memset(out, 0, sizeof(*out));
    out->connected = atomic_load(&a->connected);
    out->connects = atomic_load(&a->connects);
    out->disconnects = atomic_load(&a->disconnects);
    pthread_mutex_lock(&a->up_mu);
    if (a->up) {
        agent_uploader_status st;
        agent_uploader_get_status(a->up, &st, NULL, 0);
        out->corrupted_frames = st.corrupted_frames;
    }
    pthread_mutex_unlock(&a->up_mu);
}

void agent_tune_malloc(void)
{
    mallopt(M_ARENA_MAX, MALLOC_ARENAS);
    /* libmosquitto copies every published chunk (up to 1 MiB): keep those
     * copies on the heap rather than an mmap/munmap and page faults each. */
    mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD);
}

const char *agent_seg_event_name(agent_seg_event_kind k)
{
    switch (k) {
    case AGENT_SEG_SPOOLED:
        return "spooled";
    case AGENT_SEG_ACKED:
        return "acked";
    case AGENT_SEG_REJECTED:
        return "rejected";
    case AGENT_SEG_DROPPED:
        return "dropped";
    }
    return "unknown";
}

void agent_seg_notify(agent_seg_observer fn, void *ud, agent_seg_event_kind kind, int64_t channel,
                      int64_t start_us, int64_t bytes, const char *reason)
{
    if (!fn)
        return;
    agent_seg_event ev = {
        .kind = kind,
        .channel = channel,
        .start_us = start_us,
        .bytes = bytes,
        .mono_us = c2d_mono_us(),
        .reason = reason,
        .segments = 1,
        .last_start_us = start_us,
    };
    fn(ud, &ev);
}

int agent_start(agent *a, char *err, size_t errlen)
{
    const agent_config *cfg = a->cfg;
    a->started_us = c2d_mono_us();
    a->rate_at_us = a->started_us;

    agent_uploader_cfg ucfg = {
        .spool = a->spool,
        .channels = a->ids,
        .n_channels = a->n_channels,
        .keep_sent_dir = cfg->keep_sent_dir,
        .chunk_bytes = (uint32_t)cfg->chunk_bytes,
        .window_chunks = (uint32_t)cfg->window_chunks,
        .rate_limit_bps = (uint64_t)cfg->rate_limit_bps,
        .ack_timeout_us = cfg->ack_timeout_s * 1000000,
        .publish = publish_seg,
        .publish_ctx = a,
        .on_event = on_upload_event,
        .event_ctx = a,
        .observer = a->observer,
        .observer_ud = a->observer_ud,
        .corrupt_permille = (uint32_t)cfg->test_corrupt_permille,
        .corrupt_content = cfg->test_corrupt_content,
        .corrupt_seed = corrupt_seed(cfg->device_id),
    };
    agent_uploader *up = NULL;
    int rc = agent_uploader_start(&ucfg, &up);
    if (rc != 0)
        return fail(err, errlen, "cannot start the uploader: %s", strerror(-rc));
    pthread_mutex_lock(&a->up_mu);
    a->up = up;
    pthread_mutex_unlock(&a->up_mu);
    /* Before any thread could upload: the last config applies offline. */
    load_devcfg(a);

    for (size_t i = 0; i < a->n_channels; i++) {
        const agent_channel_conf *cc = &cfg->channels[i];
        agent_channel_cfg chc = {
            .id = (uint16_t)cc->id,
            .name = cc->name,
            .source = cc->source,
            .realtime = cc->realtime,
            .loop = cc->loop,
            .segment_us = cfg->segment_seconds * 1000000,
            .speed = cfg->realtime_speed,
            .observer = a->observer,
            .observer_ud = a->observer_ud,
        };
        rc = agent_channel_start(&chc, a->spool, &a->channels[i]);
        if (rc != 0)
            return fail(err, errlen, "cannot start channel %u: %s", chc.id, strerror(-rc));
    }

    rc = mosquitto_connect_async(a->mosq, cfg->broker.host, (int)cfg->broker.port,
                                 (int)cfg->broker.keepalive_s);
    if (rc != MOSQ_ERR_SUCCESS)
        c2d_warn("broker %s:%lld not reachable yet (%s); retrying in the background",
                 cfg->broker.host, (long long)cfg->broker.port,
                 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    rc = mosquitto_loop_start(a->mosq);
    if (rc != MOSQ_ERR_SUCCESS)
        return fail(err, errlen, "cannot start the MQTT thread: %s", mosquitto_strerror(rc));
    a->loop_started = 1;
    c2d_info("started: device %s, %zu channel(s), state_dir %s", cfg->device_id, a->n_channels,
             cfg->state_dir);
    return 0;
}

/* Restarts libmosquitto's network thread if it gave up (see net_key). */
static void watch_network(agent *a, int64_t now)
{
    if (atomic_exchange(&a->net_connected, 0))
        a->net_restarts = 0;
    if (a->loop_started && atomic_load(&a->net_died)) {
        c2d_warn("MQTT network thread ended; restarting it");
        mosquitto_loop_stop(a->mosq, false); /* joins the finished thread */
        a->loop_started = 0;
        a->net_restarts++;
        a->net_restart_at_us = now + agent_backoff_us((unsigned)a->net_restarts, RECONNECT_MAX_S);
    }
    if (!a->loop_started && a->net_restart_at_us && now >= a->net_restart_at_us) {
        atomic_store(&a->net_died, 0);
        int rc = mosquitto_loop_start(a->mosq);
        if (rc == MOSQ_ERR_SUCCESS) {
            a->loop_started = 1;
            a->net_restart_at_us = 0;
        } else {
            c2d_err("cannot restart the MQTT thread: %s", mosquitto_strerror(rc));
            a->net_restart_at_us = now + RECONNECT_MAX_S * 1000000LL;
        }
    }
}

/* Drops the broker connection and opens a new one at once, so that
 * libmosquitto loads the identity's files again (it reads the certificate
 * and key at every connect). Same thread as watch_network. */
static void reconnect_now(agent *a, int64_t now)
{
    if (a->loop_started) {
        mosquitto_disconnect_v5(a->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
        mosquitto_loop_stop(a->mosq, false);
        a->loop_started = 0;
    }
    atomic_store(&a->net_died, 0);
    int rc = mosquitto_reconnect_async(a->mosq);
    if (rc != MOSQ_ERR_SUCCESS)
        c2d_warn("reconnecting with the new certificate: %s; retrying in the background",
                 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    if ((rc = mosquitto_loop_start(a->mosq)) == MOSQ_ERR_SUCCESS) {
        a->loop_started = 1;
        a->net_restart_at_us = 0;
    } else {
        c2d_err("cannot restart the MQTT thread: %s", mosquitto_strerror(rc));
        a->net_restart_at_us = now + RECONNECT_MAX_S * 1000000LL;
    }
}

/* Certificate renewal: sends a due request, takes an answer. */
static void renew_tick(agent *a, int64_t now)
{
    if (!a->renew)
        return;
    char *req = NULL, msg[512];
    agent_renew_action act = agent_renew_step(a->renew, c2d_now_us() / 1000000,
                                              atomic_load(&a->connected), &req, msg, sizeof(msg));
    switch (act) {
    case AGENT_RENEW_IDLE:
        return;
    case AGENT_RENEW_SEND: {
        int rc = mosquitto_publish_v5(a->mosq, NULL, a->csr_topic, (int)strlen(req), req, 1, false,
                                      NULL);
        free(req);
        if (rc != MOSQ_ERR_SUCCESS)
            c2d_warn("publish on %s: %s", a->csr_topic, mosquitto_strerror(rc));
        c2d_info("%s", msg);
        return;
    }
    case AGENT_RENEW_RENEWED:
        c2d_info("%s; reconnecting with it", msg);
        reconnect_now(a, now);
        return;
    case AGENT_RENEW_REFUSED:
    case AGENT_RENEW_FAILED:
        c2d_warn("%s", msg);
        return;
    }
}

/* Every channel has read its source to the end. */
static int all_finished(const agent *a, const snapshot *s)
{
    for (size_t i = 0; i < a->n_channels; i++)
        if (s->ch[i].state != AGENT_CH_FINISHED)
            return 0;
    return 1;
}

int agent_run(agent *a, int exit_when_done, volatile sig_atomic_t *stop)
{
    snapshot *s = malloc(sizeof(*s));
    if (!s) {
        c2d_err("out of memory");
        return AGENT_EXIT_ERROR;
    }
    int code = AGENT_EXIT_OK;
    a->parked_since_us = 0;
    while (!*stop) {
        int64_t now = c2d_mono_us();
        take_snapshot(a, s);
        uint64_t sig = signature(a, s);
        int due = atomic_exchange(&a->state_due, 0) ||
                  now - a->last_state_us >= a->cfg->state_interval_s * 1000000 ||
                  (sig != a->last_sig && now - a->last_state_us >= STATE_MIN_GAP_US);
        if (due) {
            publish_state(a, s, now);
            a->last_sig = sig;
        }

        watch_network(a, now);
        renew_tick(a, now);

        if (exit_when_done && all_finished(a, s)) {
            if (s->spool.queued_segments == 0) {
                c2d_info("all sources finished and every segment acknowledged: done");
                break;
            }
            /* Only parked segments left: they will not go up in this run. */
            if (!s->up.busy && s->up.parked > 0 && s->spool.queued_segments <= s->up.parked) {
                if (a->parked_since_us == 0)
                    a->parked_since_us = now;
                if (now - a->parked_since_us >= PARKED_SETTLE_US) {
                    c2d_err("all sources finished but %llu segment(s) are parked (see warnings); "
                            "they stay in the spool",
                            (unsigned long long)s->spool.queued_segments);
                    code = AGENT_EXIT_ERROR;
                    break;
                }
            } else {
                a->parked_since_us = 0;
            }
        }
        sleep_ms(TICK_MS);
    }
    free(s);
    return code;
}

void agent_free(agent *a)
{
    if (!a)
        return;
    atomic_store(&a->stopping, 1);
    c2d_debug("stopping channels");
    if (a->channels) {
        for (size_t i = 0; i < a->n_channels; i++)
            agent_channel_stop(a->channels[i]);
        free(a->channels);
        a->channels = NULL;
    }
    c2d_debug("stopping the uploader");
    pthread_mutex_lock(&a->up_mu);
    agent_uploader *up = a->up;
    a->up = NULL;
    pthread_mutex_unlock(&a->up_mu);
    agent_uploader_stop(up);

    c2d_debug("disconnecting");
    if (a->loop_started) {
        if (atomic_load(&a->connected)) {
            int mid = -1;
            /* A clean disconnect suppresses the last will: say it ourselves. */
            int rc =
                mosquitto_publish_v5(a->mosq, &mid, a->state_topic, (int)strlen(OFFLINE_PAYLOAD),
                                     OFFLINE_PAYLOAD, 1, true, NULL);
            if (rc == MOSQ_ERR_SUCCESS) {
                atomic_store(&a->offline_mid, mid);
                for (int w = 0; w < OFFLINE_WAIT_MS && !atomic_load(&a->offline_acked) &&
                                atomic_load(&a->connected);
                     w += 20)
                    sleep_ms(20);
            }
        }
        int was_connected = atomic_load(&a->connected);
        mosquitto_disconnect_v5(a->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
        /* Not connected, the thread may sleep out a reconnect delay of up
         * to RECONNECT_MAX_S before it sees the request: cancel it. */
        mosquitto_loop_stop(a->mosq, !was_connected);
    }
    c2d_debug("closing the spool");
    if (a->mosq)
        mosquitto_destroy(a->mosq);
    agent_renew_free(a->renew);
    agent_spool_free(a->spool);
    if (a->status_path[0] && a->lock_fd >= 0)
        unlink(a->status_path);
    if (a->lock_fd >= 0)
        close(a->lock_fd);
    pthread_mutex_destroy(&a->up_mu);
    pthread_mutex_destroy(&a->cfg_mu);
    free(a->devcfg_saved);
    free(a->backup);
    free(a->ids);
    free(a);
}

/* ---- status command ------------------------------------------------------ */

/* "cfg_version" of the saved device config (null if none or unreadable),
 * and each listed channel's "backup" in "saved_backup": {"ch": bool}. */
static void add_saved_devcfg(cJSON *root, const char *state_dir)
{
    char path[PATH_MAX], *text = NULL;
    size_t len = 0;
    c2d_devcfg *dc = malloc(sizeof(*dc));
    if (dc && c2d_path_join(path, sizeof(path), state_dir, DEVCFG_NAME) == 0 &&
        c2d_read_file(path, C2D_DEVCFG_MAX, &text, &len) == 0 &&
        c2d_devcfg_decode(text, len, dc, NULL, 0) == C2D_OK) {
        add_num(root, "cfg_version", (double)dc->version);
        cJSON *b = cJSON_AddObjectToObject(root, "saved_backup");
        for (size_t i = 0; b && i < dc->n_channels; i++) {
            char key[8];
            snprintf(key, sizeof(key), "%u", (unsigned)dc->channels[i].ch);
            cJSON_AddBoolToObject(b, key, dc->channels[i].backup);
        }
    } else {
        cJSON_AddNullToObject(root, "cfg_version");
    }
    free(text);
    free(dc);
}

int agent_status_json(const agent_config *cfg, char **out, char *err, size_t errlen)
{
    int fd = lock_state_dir(cfg->state_dir, 0);
    if (fd == -EWOULDBLOCK) {
        char path[PATH_MAX], *text = NULL;
        if (c2d_path_join(path, sizeof(path), cfg->state_dir, STATUS_NAME) != 0)
            return fail(err, errlen, "state_dir %s: path too long", cfg->state_dir);
        int rc = c2d_read_file(path, 1u << 20, &text, NULL);
        if (rc != 0)
            return fail(err, errlen, "an agent is running on %s but %s is not readable: %s",
                        cfg->state_dir, path, strerror(-rc));
        *out = text;
        return 0;
    }
    if (fd < 0)
        return fail(err, errlen, "state_dir %s: %s", cfg->state_dir, strerror(-fd));

    agent_spool *sp = NULL;
    int rc = agent_spool_open(cfg->state_dir, (uint64_t)cfg->spool_max_bytes, &sp);
    if (rc != 0) {
        close(fd);
        return fail(err, errlen, "cannot open the spool in %s: %s", cfg->state_dir, strerror(-rc));
    }
    agent_spool_stats st;
    agent_spool_get_stats(sp, &st);
    cJSON *root = cJSON_CreateObject();
    cJSON *chs = NULL;
    if (root) {
        cJSON_AddFalseToObject(root, "running");
        cJSON_AddStringToObject(root, "device", cfg->device_id);
        add_saved_devcfg(root, cfg->state_dir);
        cJSON *s = spool_json(&st);
        if (s)
            cJSON_AddItemToObject(root, "spool", s);
        chs = cJSON_AddArrayToObject(root, "channels");
    }
    for (size_t i = 0; chs && i < cfg->n_channels; i++) {
        cJSON *c = cJSON_CreateObject();
        if (!c)
            break;
        cJSON_AddItemToArray(chs, c);
        add_num(c, "id", (double)cfg->channels[i].id);
        cJSON_AddStringToObject(c, "name", cfg->channels[i].name);
        add_channel_spool(c, sp, (uint16_t)cfg->channels[i].id);
    }
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    agent_spool_free(sp);
    close(fd);
    if (!text)
        return fail(err, errlen, "out of memory");
    *out = text;
    return 0;
}
