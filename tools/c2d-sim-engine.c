/* c2d-sim-engine: the fleet simulator's engine (tools/c2d-sim drives it;
 * docs/components.md). Runs many agents, the agent's own code (agent_core),
 * in one process or a few:
 *
 *   c2d-sim-engine run --fleet DIR [--procs K] [--seconds S] [--progress-s P]
 *                      [--journal-dir J] [--corrupt crc:N|content:N]
 *                      [--speed X] [-v]
 *
 * Every DIR/<name>/agent.json (in name order) is a normal agent
 * configuration, paired ("serial": the identity is in its state_dir) or
 * with its own device_id and certificate; an unpaired one is refused. Each
 * agent runs as under `c2d-agent run --exit-when-done`: the engine ends
 * when every agent is done (sources finished, spool empty), at --seconds,
 * or on SIGINT/SIGTERM, and prints ONE JSON line on stdout:
 *
 *   {"devices","channels","seconds","segments_made","segments_acked",
 *    "segments_rejected","segments_dropped","bytes_acked","ingest_MBps",
 *    "ack_latency_ms":{"p50","p99","max","n"},"errors":{kind: count},
 *    "engine_cpu_s","engine_peak_rss_kib","procs", ...}
 *
 * segments_made: segments spooled during this run; segments_acked: acks
 * during this run (including segments spooled before it,
 * "segments_acked_earlier"); segments_rejected: distinct segments parked or
 * held; segments_dropped: deleted unsent (spool full, backup off, corrupt);
 * segments_unacked: made in this run and not acked at the end. seconds:
 * from the start of the agents to the end; ingest_MBps: bytes acked / 1e6
 * / seconds from the start to the last ack. Ack latency: ACKED - SPOOLED
 * of the same segment (agent/observer.h), so only segments made in this
 * run. errors: "rejected_<reason>" and "dropped_<reason>" (segments),
 * "connection_lost" (agents' broker connections lost), "agent_failed"
 * (an agent could not start, or ended with parked segments).
 * engine_peak_rss_kib: the sum of every process's peak.
 *
 * Exit status: 0 when every segment made was acked and no agent failed; 1
 * otherwise; 2 for a bad command line or configuration.
 *
 * Processes: libmosquitto 2.0's network loop is select(2)-based and refuses
 * a socket numbered FD_SETSIZE (1024) or above, so one process can hold
 * only as many agents as keep every descriptor below that: about 8 + 4 per
 * channel each (lock, LMDB, MQTT socket and socket pair, journal; per
 * channel its source, the segment being written and two being uploaded).
 * --procs is raised to what the fleet needs (said on stderr). With K > 1
 * the parent forks K children before any thread exists, each runs a
 * contiguous slice of the fleet and sends its counters (a JSON line, with
 * the latency histogram's buckets) through a pipe every second and at the
 * end; the parent prints the progress and the merged summary.
 *
 * --journal-dir J: J/<device_id>.jsonl gets one line per segment event,
 *   {"ev":"spooled|acked|rejected|dropped","ch":..,"start":..,"bytes":..,
 *    "t_us":<wall clock us>,"reason":..|null}
 * (a "spool_full" drop is one line per evicted segment, like every other
 * event), each line one write(2) on an O_APPEND descriptor: a kill -9
 * loses at most that line.
 *
 * --speed X paces realtime sources X times faster; --corrupt sets every
 * agent's chunk corruption test hook (agent_config's test_corrupt_*).
 * --stagger-s S spreads the agents' starts evenly over S seconds; by
 * default a fleet with realtime channels spreads them over its longest
 * segment_seconds (divided by --speed), so that the fleet's segments are
 * not all cut, and uploaded, at the same instant as they would be by
 * cameras started together from one recording. */
#include "agent/agent.h"
#include "agent/config.h"
#include "common/c2d_fs.h"
#include "common/c2d_log.h"
#include "common/c2d_time.h"
#include "proto/c2d_proto.h"
#include "tools/sim_hist.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mosquitto.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

/* Threads libmosquitto and the engine create without attributes (the MQTT
 * network thread, one agent_run thread per agent): TLS and logging need
 * little; glibc's default would be 8 MiB of address space each. The agent
 * sizes its channel and uploader threads itself. */
#define THREAD_STACK_BYTES (512u << 10)
/* Descriptors one process may use for agents (see the header comment):
 * FD_SETSIZE less room for stdio, the pipes and libraries' own. */
#define FD_BUDGET 960
#define FDS_PER_AGENT 8
#define FDS_PER_CHANNEL 4
#define PROCS_MAX 256
#define TICK_MS 200
/* A child sends its counters this often; the parent prints every P s. */
#define CHILD_REPORT_US 1000000
#define PROGRESS_DEFAULT_S 5
/* Error kinds kept; reasons are a closed set (proto/README.md). */
#define ERR_KINDS_MAX 64
#define ERR_NAME_MAX (C2D_REASON_MAX + 16) /* "rejected_" + reason */
/* One journal line: a reason is at most C2D_REASON_MAX characters. */
#define JOURNAL_LINE_MAX 512
/* A child's report line (the histogram's non-empty buckets at most). */
#define REPORT_LINE_MAX (1 << 20)

typedef struct {
    char name[ERR_NAME_MAX];
    uint64_t n;
} err_count;

/* Everything the summary and the progress line are made of; a child sends
 * its own, the parent adds them up. */
typedef struct {
    uint64_t devices, channels, connected, done, failed;
    uint64_t made, acked, acked_earlier, rejected, dropped, unacked, bytes_acked;
    uint64_t corrupted, disconnects;
    int64_t last_ack_mono; /* c2d_mono_us of the last ack, 0 if none */
    sim_hist lat;          /* microseconds */
    err_count err[ERR_KINDS_MAX];
    size_t n_err;
    double cpu_s;
    int64_t peak_rss_kib;
    uint64_t threads;
} totals;

typedef struct {
    const char *fleet;
    int procs;
    double seconds; /* 0: no limit */
    double progress_s;
    const char *journal_dir;
    const char *corrupt;
    double speed;
    double stagger_s; /* < 0: automatic */
    int verbose;
} options;

/* One segment of a device, from SPOOLED (or the first event about it). */
typedef struct {
    int64_t start;
    int64_t spooled_mono; /* 0: spooled before this run */
    int32_t ch;
    uint8_t used, acked, rejected, dropped;
} seg_ent;

typedef struct {
    seg_ent *v;
    size_t cap, n;
} seg_map;

typedef struct {
    char name[NAME_MAX + 1]; /* directory under --fleet */
    char path[PATH_MAX];     /* its agent.json */
    agent_config cfg;
    int loaded;
    agent *a;
    pthread_t th;
    int th_started;
    int run_code;
    int journal_fd;
    int64_t start_at_us; /* c2d_mono_us when its agent starts */
    pthread_mutex_t mu;  /* a's lifetime against agent_get_counters */
    int freed;
    agent_counters last;
    seg_map map; /* under ev_mu */
    atomic_int done;
} sim_dev;

static volatile sig_atomic_t stop_flag;

/* Counters fed by the observer (agent threads), under ev_mu. */
static pthread_mutex_t ev_mu = PTHREAD_MUTEX_INITIALIZER;
static totals ev;

/* ---- small helpers ------------------------------------------------------- */

static double cpu_seconds(int who)
{
    struct rusage ru;
    if (getrusage(who, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int64_t peak_rss_kib(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (int64_t)ru.ru_maxrss : 0;
}

/* Threads of this process now (/proc/self/status), 0 if unknown. */
static uint64_t thread_count(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return 0;
    char line[256];
    unsigned long long n = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "Threads: %llu", &n) == 1)
            break;
    fclose(f);
    return n;
}

static void err_add(totals *t, const char *name, uint64_t n)
{
    for (size_t i = 0; i < t->n_err; i++)
        if (strcmp(t->err[i].name, name) == 0) {
            t->err[i].n += n;
            return;
        }
    if (t->n_err == ERR_KINDS_MAX)
        name = "other";
    if (t->n_err == ERR_KINDS_MAX) {
        for (size_t i = 0; i < t->n_err; i++)
            if (strcmp(t->err[i].name, name) == 0) {
                t->err[i].n += n;
                return;
            }
        t->n_err--; /* the last kind makes room for "other" */
    }
    snprintf(t->err[t->n_err].name, ERR_NAME_MAX, "%s", name);
    t->err[t->n_err].n = n;
    t->n_err++;
}

static uint64_t err_total(const totals *t)
{
    uint64_t n = 0;
    for (size_t i = 0; i < t->n_err; i++)
        n += t->err[i].n;
    return n;
}

/* Reasons come from the controller: keep the journal and the JSON keys to
 * the characters a reason may have. */
static void safe_reason(char *out, size_t len, const char *r)
{
    size_t i = 0;
    for (; r && r[i] && i + 1 < len; i++) {
        char c = r[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || c == '.';
        out[i] = ok ? c : '?';
    }
    out[i] = '\0';
}

/* ---- per-device segment map (open addressing on (channel, start)) ------- */

static size_t seg_hash(int32_t ch, int64_t start, size_t cap)
{
    uint64_t h = (uint64_t)start * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uint32_t)ch;
    h ^= h >> 29;
    return (size_t)(h & (cap - 1));
}

/* The entry of (ch, start), created if need be; NULL if out of memory. */
static seg_ent *seg_get(seg_map *m, int32_t ch, int64_t start, int create)
{
    if (create && (m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        seg_ent *v = calloc(cap, sizeof(*v));
        if (!v)
            return NULL;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->v[i].used)
                continue;
            size_t j = seg_hash(m->v[i].ch, m->v[i].start, cap);
            while (v[j].used)
                j = (j + 1) & (cap - 1);
            v[j] = m->v[i];
        }
        free(m->v);
        m->v = v;
        m->cap = cap;
    }
    if (m->cap == 0)
        return NULL;
    size_t j = seg_hash(ch, start, m->cap);
    while (m->v[j].used) {
        if (m->v[j].ch == ch && m->v[j].start == start)
            return &m->v[j];
        j = (j + 1) & (m->cap - 1);
    }
    if (!create)
        return NULL;
    m->v[j].used = 1;
    m->v[j].ch = ch;
    m->v[j].start = start;
    m->n++;
    return &m->v[j];
}

/* ---- the observer (channel and uploader threads) ------------------------- */

static void journal_write(sim_dev *d, const agent_seg_event *e)
{
    char line[JOURNAL_LINE_MAX], reason[C2D_REASON_MAX + 2] = "";
    int n;
    if (e->reason) {
        char r[C2D_REASON_MAX];
        safe_reason(r, sizeof(r), e->reason);
        snprintf(reason, sizeof(reason), "\"%s\"", r);
    }
    n = snprintf(line, sizeof(line),
                 "{\"ev\":\"%s\",\"ch\":%lld,\"start\":%lld,\"bytes\":%lld,\"t_us\":%lld,"
                 "\"reason\":%s",
                 agent_seg_event_name(e->kind), (long long)e->channel, (long long)e->start_us,
                 (long long)e->bytes, (long long)c2d_now_us(), e->reason ? reason : "null");
    if (n > 0 && (size_t)n + 2 < sizeof(line)) {
        line[n++] = '}';
        line[n++] = '\n';
        /* One write: a crash loses at most this line. */
        (void)!write(d->journal_fd, line, (size_t)n);
    }
}

static void observe(void *ud, const agent_seg_event *e)
{
    sim_dev *d = ud;
    if (d->journal_fd >= 0)
        journal_write(d, e);
    char kind[ERR_NAME_MAX], r[C2D_REASON_MAX];
    safe_reason(r, sizeof(r), e->reason ? e->reason : "unspecified");
    int single = e->channel >= 0 && e->segments == 1;

    pthread_mutex_lock(&ev_mu);
    seg_ent *s = single ? seg_get(&d->map, (int32_t)e->channel, e->start_us, 1) : NULL;
    switch (e->kind) {
    case AGENT_SEG_SPOOLED:
        ev.made++;
        if (s)
            s->spooled_mono = e->mono_us;
        break;
    case AGENT_SEG_ACKED:
        ev.acked++;
        ev.bytes_acked += (uint64_t)e->bytes;
        if (e->mono_us > ev.last_ack_mono)
            ev.last_ack_mono = e->mono_us;
        if (s && !s->acked) {
            s->acked = 1;
            if (s->spooled_mono)
                sim_hist_add(&ev.lat, e->mono_us - s->spooled_mono);
            else
                ev.acked_earlier++;
        }
        break;
    case AGENT_SEG_REJECTED:
        snprintf(kind, sizeof(kind), "rejected_%s", r);
        err_add(&ev, kind, 1);
        if (s && !s->rejected) {
            s->rejected = 1;
            ev.rejected++;
        }
        break;
    case AGENT_SEG_DROPPED:
        snprintf(kind, sizeof(kind), "dropped_%s", r);
        err_add(&ev, kind, (uint64_t)e->segments);
        ev.dropped += (uint64_t)e->segments;
        if (s)
            s->dropped = 1;
        break;
    }
    pthread_mutex_unlock(&ev_mu);
}

/* ---- loading the fleet ---------------------------------------------------- */

static int cmp_dev(const void *a, const void *b)
{
    return strcmp(((const sim_dev *)a)->name, ((const sim_dev *)b)->name);
}

/* Finds DIR/<name>/agent.json, sorted by name. */
static int scan_fleet(const char *dir, sim_dev **out, size_t *n_out)
{
    DIR *dp = opendir(dir);
    if (!dp) {
        c2d_err("--fleet %s: %s", dir, strerror(errno));
        return -1;
    }
    sim_dev *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(dp))) {
        if (de->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof(path), "%s/%s/agent.json", dir, de->d_name) >=
                (int)sizeof(path) ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            sim_dev *nv = realloc(v, cap * sizeof(*v));
            if (!nv) {
                c2d_err("out of memory");
                rc = -1;
                break;
            }
            v = nv;
        }
        memset(&v[n], 0, sizeof(v[n]));
        snprintf(v[n].name, sizeof(v[n].name), "%s", de->d_name);
        snprintf(v[n].path, sizeof(v[n].path), "%s", path);
        v[n].journal_fd = -1;
        n++;
    }
    closedir(dp);
    if (rc != 0) {
        free(v);
        return -1;
    }
    if (v)
        qsort(v, n, sizeof(*v), cmp_dev);
    *out = v;
    *n_out = n;
    return 0;
}

/* Loads every configuration and applies the embedder's settings. An
 * unpaired or invalid one stops everything before any agent starts. */
static int load_fleet(sim_dev *devs, size_t n, const options *o)
{
    for (size_t i = 0; i < n; i++) {
        sim_dev *d = &devs[i];
        char err[C2D_ERRMSG_MAX + 256];
        if (agent_config_load(d->path, &d->cfg, err, sizeof(err)) != 0) {
            c2d_err("%s", err);
            return -1;
        }
        d->loaded = 1;
        if (d->cfg.unpaired) {
            c2d_err("%s: serial %s is not paired: run c2d-agent pair -c %s --code CODE first",
                    d->path, d->cfg.serial, d->path);
            return -1;
        }
        if (o->corrupt && agent_config_set_test_corrupt(&d->cfg, o->corrupt) != 0) {
            c2d_err("--corrupt %s: expected crc:N or content:N, N per mille (0..1000)", o->corrupt);
            return -1;
        }
        d->cfg.realtime_speed = o->speed;
        for (size_t j = 0; j < i; j++)
            if (strcmp(devs[j].cfg.device_id, d->cfg.device_id) == 0) {
                c2d_err("%s and %s are the same device %s", devs[j].path, d->path,
                        d->cfg.device_id);
                return -1;
            }
    }
    return 0;
}

/* ---- running a slice of the fleet (one process) -------------------------- */

static void *dev_main(void *arg)
{
    sim_dev *d = arg;
    d->run_code = agent_run(d->a, 1, &stop_flag);
    pthread_mutex_lock(&d->mu);
    agent_get_counters(d->a, &d->last);
    d->freed = 1;
    pthread_mutex_unlock(&d->mu);
    agent_free(d->a); /* publishes the offline state and disconnects */
    d->a = NULL;
    atomic_store(&d->done, 1);
    return NULL;
}

/* The slice's totals now: event counters plus the agents' own. */
static void slice_totals(sim_dev *devs, size_t n, totals *t, int final)
{
    pthread_mutex_lock(&ev_mu);
    *t = ev;
    if (final)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < devs[i].map.cap; j++) {
                const seg_ent *s = &devs[i].map.v[j];
                if (s->used && s->spooled_mono && !s->acked && !s->dropped)
                    t->unacked++;
            }
    pthread_mutex_unlock(&ev_mu);
    t->devices = n;
    for (size_t i = 0; i < n; i++) {
        sim_dev *d = &devs[i];
        t->channels += d->cfg.n_channels;
        agent_counters c;
        memset(&c, 0, sizeof(c));
        pthread_mutex_lock(&d->mu);
        if (d->freed || !d->a)
            c = d->last;
        else if (d->th_started)
            agent_get_counters(d->a, &c);
        pthread_mutex_unlock(&d->mu);
        t->connected += c.connected ? 1 : 0;
        t->corrupted += c.corrupted_frames;
        t->disconnects += c.disconnects;
        if (atomic_load(&d->done))
            t->done++;
        if (d->run_code != 0)
            t->failed++;
    }
    if (t->disconnects)
        err_add(t, "connection_lost", t->disconnects);
    if (t->failed)
        err_add(t, "agent_failed", t->failed);
    t->cpu_s = cpu_seconds(RUSAGE_SELF);
    t->peak_rss_kib = peak_rss_kib();
    /* The most seen at any report (at the end they are gone). */
    static uint64_t max_threads;
    uint64_t now_threads = thread_count();
    if (now_threads > max_threads)
        max_threads = now_threads;
    t->threads = max_threads;
}

/* ---- totals as JSON (child reports, the summary) -------------------------- */

static char *totals_report(const totals *t)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
#define N(k, v) cJSON_AddNumberToObject(o, k, (double)(v))
    N("devices", t->devices);
    N("channels", t->channels);
    N("connected", t->connected);
    N("done", t->done);
    N("failed", t->failed);
    N("made", t->made);
    N("acked", t->acked);
    N("acked_earlier", t->acked_earlier);
    N("rejected", t->rejected);
    N("dropped", t->dropped);
    N("unacked", t->unacked);
    N("bytes_acked", t->bytes_acked);
    N("corrupted", t->corrupted);
    N("disconnects", t->disconnects);
    N("last_ack_mono", t->last_ack_mono);
    N("cpu_s", t->cpu_s);
    N("peak_rss_kib", t->peak_rss_kib);
    N("threads", t->threads);
    N("lat_n", t->lat.n);
    N("lat_min", t->lat.min);
    N("lat_max", t->lat.max);
    N("lat_sum", t->lat.sum);
#undef N
    cJSON *b = cJSON_AddArrayToObject(o, "lat_b");
    for (int i = 0; b && i < SIM_HIST_BUCKETS; i++)
        if (t->lat.b[i]) {
            cJSON *pair = cJSON_CreateArray();
            if (!pair)
                break;
            cJSON_AddItemToArray(pair, cJSON_CreateNumber(i));
            cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)t->lat.b[i]));
            cJSON_AddItemToArray(b, pair);
        }
    cJSON *e = cJSON_AddObjectToObject(o, "errors");
    for (size_t i = 0; e && i < t->n_err; i++)
        cJSON_AddNumberToObject(e, t->err[i].name, (double)t->err[i].n);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static int totals_parse(const char *text, totals *t)
{
    cJSON *o = cJSON_Parse(text);
    if (!o)
        return -1;
    memset(t, 0, sizeof(*t));
#define U(f, k) t->f = (uint64_t)jnum(o, k)
    U(devices, "devices");
    U(channels, "channels");
    U(connected, "connected");
    U(done, "done");
    U(failed, "failed");
    U(made, "made");
    U(acked, "acked");
    U(acked_earlier, "acked_earlier");
    U(rejected, "rejected");
    U(dropped, "dropped");
    U(unacked, "unacked");
    U(bytes_acked, "bytes_acked");
    U(corrupted, "corrupted");
    U(disconnects, "disconnects");
    U(threads, "threads");
    U(lat.n, "lat_n");
#undef U
    t->last_ack_mono = (int64_t)jnum(o, "last_ack_mono");
    t->cpu_s = jnum(o, "cpu_s");
    t->peak_rss_kib = (int64_t)jnum(o, "peak_rss_kib");
    t->lat.min = (int64_t)jnum(o, "lat_min");
    t->lat.max = (int64_t)jnum(o, "lat_max");
    t->lat.sum = jnum(o, "lat_sum");
    const cJSON *pair;
    cJSON_ArrayForEach(pair, cJSON_GetObjectItemCaseSensitive(o, "lat_b"))
    {
        const cJSON *a = cJSON_GetArrayItem(pair, 0), *c = cJSON_GetArrayItem(pair, 1);
        if (!cJSON_IsNumber(a) || !cJSON_IsNumber(c))
            continue;
        int i = (int)a->valuedouble;
        if (i >= 0 && i < SIM_HIST_BUCKETS)
            t->lat.b[i] += (uint64_t)c->valuedouble;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "errors"))
    {
        if (cJSON_IsNumber(e) && e->string)
            err_add(t, e->string, (uint64_t)e->valuedouble);
    }
    cJSON_Delete(o);
    return 0;
}

/* into += from (every field adds up but the last ack's time). */
static void totals_merge(totals *into, const totals *from)
{
    into->devices += from->devices;
    into->channels += from->channels;
    into->connected += from->connected;
    into->done += from->done;
    into->failed += from->failed;
    into->made += from->made;
    into->acked += from->acked;
    into->acked_earlier += from->acked_earlier;
    into->rejected += from->rejected;
    into->dropped += from->dropped;
    into->unacked += from->unacked;
    into->bytes_acked += from->bytes_acked;
    into->corrupted += from->corrupted;
    into->disconnects += from->disconnects;
    if (from->last_ack_mono > into->last_ack_mono)
        into->last_ack_mono = from->last_ack_mono;
    sim_hist_merge(&into->lat, &from->lat);
    for (size_t i = 0; i < from->n_err; i++)
        err_add(into, from->err[i].name, from->err[i].n);
    into->cpu_s += from->cpu_s;
    into->peak_rss_kib += from->peak_rss_kib;
    into->threads += from->threads;
}

static double ms(int64_t us)
{
    return (double)(us / 100) / 10.0; /* 0.1 ms */
}

static void print_progress(const totals *t, int64_t start_us, int64_t now, uint64_t *prev_bytes,
                           int64_t *prev_us)
{
    double dt = (double)(now - *prev_us) / 1e6;
    double mbps = dt > 0 ? (double)(t->bytes_acked - *prev_bytes) / 1e6 / dt : 0;
    *prev_bytes = t->bytes_acked;
    *prev_us = now;
    fprintf(stderr,
            "c2d-sim-engine: %.0fs agents %llu/%llu connected (%llu done), segments spooled "
            "%llu acked %llu, %.2f MB/s acked, ack p99 %.0f ms, errors %llu\n",
            (double)(now - start_us) / 1e6, (unsigned long long)t->connected,
            (unsigned long long)t->devices, (unsigned long long)t->done,
            (unsigned long long)t->made, (unsigned long long)t->acked, mbps,
            ms(sim_hist_percentile(&t->lat, 0.99)), (unsigned long long)err_total(t));
}

static double round2(double v)
{
    return (double)(int64_t)(v * 100 + 0.5) / 100;
}

/* The ONE line on stdout. */
static int print_summary(const totals *t, int64_t start_us, int64_t end_us, int procs)
{
    double seconds = (double)(end_us - start_us) / 1e6;
    double ingest_s = t->last_ack_mono > start_us ? (double)(t->last_ack_mono - start_us) / 1e6 : 0;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return -1;
#define N(k, v) cJSON_AddNumberToObject(o, k, (double)(v))
    N("devices", t->devices);
    N("channels", t->channels);
    N("seconds", round2(seconds));
    N("segments_made", t->made);
    N("segments_acked", t->acked);
    N("segments_rejected", t->rejected);
    N("segments_dropped", t->dropped);
    N("bytes_acked", t->bytes_acked);
    N("ingest_MBps", ingest_s > 0 ? round2((double)t->bytes_acked / 1e6 / ingest_s * 10) / 10 : 0);
    cJSON *l = cJSON_AddObjectToObject(o, "ack_latency_ms");
    if (l) {
        cJSON_AddNumberToObject(l, "p50", ms(sim_hist_percentile(&t->lat, 0.50)));
        cJSON_AddNumberToObject(l, "p99", ms(sim_hist_percentile(&t->lat, 0.99)));
        cJSON_AddNumberToObject(l, "max", ms(t->lat.max));
        cJSON_AddNumberToObject(l, "n", (double)t->lat.n);
    }
    cJSON *e = cJSON_AddObjectToObject(o, "errors");
    for (size_t i = 0; e && i < t->n_err; i++)
        cJSON_AddNumberToObject(e, t->err[i].name, (double)t->err[i].n);
    N("engine_cpu_s", round2(t->cpu_s));
    N("engine_peak_rss_kib", t->peak_rss_kib);
    N("procs", procs);
    /* Beyond the fixed interface: what the counts above leave out. */
    N("segments_unacked", t->unacked);
    N("segments_acked_earlier", t->acked_earlier);
    N("corrupted_frames", t->corrupted);
    N("agents_done", t->done);
    N("engine_threads_peak", t->threads);
    N("engine_rss_per_agent_kib", t->devices ? t->peak_rss_kib / (int64_t)t->devices : 0);
#undef N
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        return -1;
    printf("%s\n", s);
    free(s);
    return fflush(stdout) == 0 ? 0 : -1;
}

/* Sends a report line to the parent; one write per line. */
static void report(int fd, char tag, const totals *t)
{
    char *s = totals_report(t);
    if (!s)
        return;
    size_t len = strlen(s);
    char *line = malloc(len + 3);
    if (line) {
        line[0] = tag;
        memcpy(line + 1, s, len);
        line[len + 1] = '\n';
        line[len + 2] = '\0';
        c2d_write_all(fd, line, len + 2);
        free(line);
    }
    free(s);
}

static void set_default_stack(void)
{
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return;
    if (pthread_attr_setstacksize(&attr, THREAD_STACK_BYTES) == 0)
        pthread_setattr_default_np(&attr);
    pthread_attr_destroy(&attr);
}

/* Waits up to ms for SIGINT/SIGTERM (blocked in every thread); 1 if one
 * came. */
static int wait_signal(int ms_)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    struct timespec ts = {ms_ / 1000, (long)(ms_ % 1000) * 1000000L};
    return sigtimedwait(&set, NULL, &ts) > 0;
}

/* Opens the device's journal, makes and starts its agent and the thread
 * that runs it. 0 or -1 (logged). */
static int start_dev(sim_dev *d, const options *o)
{
    char err[C2D_ERRMSG_MAX + 256];
    if (o->journal_dir) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/%s.jsonl", o->journal_dir, d->cfg.device_id) >=
                (int)sizeof(path) ||
            (d->journal_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
            c2d_err("journal for %s in %s: %s", d->cfg.device_id, o->journal_dir, strerror(errno));
            return -1;
        }
    }
    if (agent_new(&d->cfg, &d->a, err, sizeof(err)) != 0) {
        c2d_err("%s: %s", d->path, err);
        return -1;
    }
    agent_set_seg_observer(d->a, observe, d);
    if (agent_start(d->a, err, sizeof(err)) != 0) {
        c2d_err("%s: %s", d->path, err);
        return -1;
    }
    if (pthread_create(&d->th, NULL, dev_main, d) != 0) {
        c2d_err("%s: cannot start a thread", d->path);
        return -1;
    }
    d->th_started = 1;
    return 0;
}

/* Runs devs[0..n) in this process. report_fd >= 0: a child, which reports
 * to the parent instead of printing. Fills *out with the final totals.
 * Returns the exit status. */
static int run_slice(sim_dev *devs, size_t n, const options *o, int64_t start_us, int report_fd,
                     totals *out)
{
    int code = EXIT_OK;
    set_default_stack();
    if (mosquitto_lib_init() != MOSQ_ERR_SUCCESS) {
        c2d_err("cannot initialise libmosquitto");
        return EXIT_FAIL;
    }
    for (size_t i = 0; i < n; i++)
        pthread_mutex_init(&devs[i].mu, NULL);
    int64_t deadline = o->seconds > 0 ? start_us + (int64_t)(o->seconds * 1e6) : 0;
    int64_t period = report_fd >= 0 ? CHILD_REPORT_US : (int64_t)(o->progress_s * 1e6);
    int64_t next_report = c2d_mono_us() + period, prev_us = start_us;
    uint64_t prev_bytes = 0;
    totals *t = malloc(sizeof(*t));
    if (!t) {
        c2d_err("out of memory");
        stop_flag = 1;
        code = EXIT_FAIL;
    }
    size_t started = 0;
    while (!stop_flag) {
        /* Staggered starts (see stagger_us): every agent whose time came. */
        while (started < n && c2d_mono_us() >= devs[started].start_at_us) {
            if (start_dev(&devs[started], o) != 0) {
                code = EXIT_FAIL;
                stop_flag = 1;
                break;
            }
            started++;
        }
        if (stop_flag)
            break;
        int wait_ms = TICK_MS;
        if (started < n) {
            int64_t to_next = (devs[started].start_at_us - c2d_mono_us()) / 1000;
            if (to_next < wait_ms)
                wait_ms = to_next > 0 ? (int)to_next : 0;
        }
        if (wait_signal(wait_ms)) {
            c2d_warn("stop requested; stopping the agents");
            stop_flag = 1;
            break;
        }
        int64_t now = c2d_mono_us();
        if (deadline && now >= deadline) {
            c2d_info("--seconds reached; stopping the agents");
            stop_flag = 1;
            break;
        }
        size_t done = 0;
        for (size_t i = 0; i < started; i++)
            done += atomic_load(&devs[i].done) ? 1 : 0;
        if (done == n)
            break;
        if (period > 0 && now >= next_report) {
            slice_totals(devs, n, t, 0);
            if (report_fd >= 0)
                report(report_fd, 'P', t);
            else
                print_progress(t, start_us, now, &prev_bytes, &prev_us);
            next_report = now + period;
        }
    }
    for (size_t i = 0; i < n; i++) {
        sim_dev *d = &devs[i];
        if (d->th_started)
            pthread_join(d->th, NULL);
        else if (d->a) {
            agent_free(d->a);
            d->a = NULL;
            d->freed = 1;
            d->run_code = AGENT_EXIT_ERROR;
        }
    }
    if (t) {
        slice_totals(devs, n, t, 1);
        if (report_fd >= 0)
            report(report_fd, 'S', t);
        else if (period > 0) /* the last word, however short the run */
            print_progress(t, start_us, c2d_mono_us(), &prev_bytes, &prev_us);
        *out = *t;
        free(t);
    }
    for (size_t i = 0; i < n; i++) {
        if (devs[i].journal_fd >= 0)
            close(devs[i].journal_fd);
        devs[i].journal_fd = -1;
        free(devs[i].map.v);
        devs[i].map.v = NULL;
        pthread_mutex_destroy(&devs[i].mu);
    }
    mosquitto_lib_cleanup();
    if (code == EXIT_OK && (out->unacked || out->failed || out->dropped))
        code = EXIT_FAIL;
    return code;
}

/* ---- several processes ----------------------------------------------------- */

typedef struct {
    pid_t pid;
    int fd; /* read end of its pipe, -1 at EOF */
    char *buf;
    size_t len;
    totals last, final;
    int have_last, have_final;
} child;

/* Takes complete lines out of c->buf. */
static void child_lines(child *c)
{
    char *start = c->buf, *nl;
    while ((nl = memchr(start, '\n', c->len - (size_t)(start - c->buf)))) {
        *nl = '\0';
        totals t;
        if ((start[0] == 'P' || start[0] == 'S') && totals_parse(start + 1, &t) == 0) {
            if (start[0] == 'S') {
                c->final = t;
                c->have_final = 1;
            }
            c->last = t;
            c->have_last = 1;
        }
        start = nl + 1;
    }
    size_t left = c->len - (size_t)(start - c->buf);
    memmove(c->buf, start, left);
    c->len = left;
}

static int run_children(sim_dev *devs, size_t n, int procs, const options *o, int64_t start_us)
{
    child *ch = calloc((size_t)procs, sizeof(*ch));
    totals *sum = malloc(sizeof(*sum));
    if (!ch || !sum) {
        c2d_err("out of memory");
        free(ch);
        free(sum);
        return EXIT_FAIL;
    }
    int code = EXIT_OK, started = 0;
    fflush(NULL);
    for (int k = 0; k < procs; k++) {
        size_t lo = n * (size_t)k / (size_t)procs, hi = n * (size_t)(k + 1) / (size_t)procs;
        int p[2];
        ch[k].fd = -1;
        if (pipe2(p, O_CLOEXEC) != 0) {
            c2d_err("pipe: %s", strerror(errno));
            code = EXIT_FAIL;
            break;
        }
        pid_t pid = fork();
        if (pid < 0) {
            c2d_err("fork: %s", strerror(errno));
            close(p[0]);
            close(p[1]);
            code = EXIT_FAIL;
            break;
        }
        if (pid == 0) {
            static char name[64];
            snprintf(name, sizeof(name), "c2d-sim-engine[%d]", k + 1);
            c2d_log_set_name(name);
            close(p[0]);
            for (int j = 0; j < k; j++)
                close(ch[j].fd);
            totals *t = calloc(1, sizeof(*t));
            int rc = t ? run_slice(devs + lo, hi - lo, o, start_us, p[1], t) : EXIT_FAIL;
            _exit(rc);
        }
        close(p[1]);
        ch[k].pid = pid;
        ch[k].fd = p[0];
        ch[k].buf = malloc(REPORT_LINE_MAX);
        if (!ch[k].buf) {
            c2d_err("out of memory");
            code = EXIT_FAIL;
        }
        started++;
    }
    if (code != EXIT_OK)
        for (int k = 0; k < started; k++)
            kill(ch[k].pid, SIGTERM);

    struct pollfd *pf = calloc((size_t)procs, sizeof(*pf));
    int64_t period = (int64_t)(o->progress_s * 1e6);
    int64_t next = c2d_mono_us() + period, prev_us = start_us;
    uint64_t prev_bytes = 0;
    int signalled = code != EXIT_OK;
    for (;;) {
        int open_fds = 0;
        for (int k = 0; k < started; k++) {
            pf[k].fd = ch[k].fd;
            pf[k].events = POLLIN;
            pf[k].revents = 0;
            open_fds += ch[k].fd >= 0;
        }
        if (!open_fds || !pf)
            break;
        int r = poll(pf, (nfds_t)started, TICK_MS);
        if (r < 0 && errno != EINTR)
            break;
        for (int k = 0; r > 0 && k < started; k++) {
            if (ch[k].fd < 0 || !(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (!ch[k].buf || ch[k].len == REPORT_LINE_MAX)
                ch[k].len = 0; /* a line this long is garbage */
            ssize_t got =
                ch[k].buf ? read(ch[k].fd, ch[k].buf + ch[k].len, REPORT_LINE_MAX - ch[k].len) : 0;
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                close(ch[k].fd);
                ch[k].fd = -1;
                continue;
            }
            ch[k].len += (size_t)got;
            child_lines(&ch[k]);
        }
        if (!signalled && wait_signal(0)) {
            c2d_warn("stop requested; stopping the engine's processes");
            signalled = 1;
            for (int k = 0; k < started; k++)
                kill(ch[k].pid, SIGTERM);
        }
        int64_t now = c2d_mono_us();
        if (period > 0 && now >= next) {
            memset(sum, 0, sizeof(*sum));
            for (int k = 0; k < started; k++)
                if (ch[k].have_last)
                    totals_merge(sum, &ch[k].last);
            print_progress(sum, start_us, now, &prev_bytes, &prev_us);
            next = now + period;
        }
    }
    memset(sum, 0, sizeof(*sum));
    for (int k = 0; k < started; k++) {
        int st = 0;
        while (waitpid(ch[k].pid, &st, 0) < 0 && errno == EINTR)
            ;
        int rc = WIFEXITED(st) ? WEXITSTATUS(st) : EXIT_FAIL;
        if (!ch[k].have_final) {
            c2d_err("engine process %d (pid %ld) ended without its summary", k + 1,
                    (long)ch[k].pid);
            rc = EXIT_FAIL;
        } else {
            totals_merge(sum, &ch[k].final);
        }
        if (rc != EXIT_OK && code == EXIT_OK)
            code = rc;
        if (ch[k].fd >= 0)
            close(ch[k].fd);
        free(ch[k].buf);
    }
    int64_t end_us = c2d_mono_us();
    if (period > 0)
        print_progress(sum, start_us, end_us, &prev_bytes, &prev_us);
    sum->cpu_s += cpu_seconds(RUSAGE_SELF);
    sum->peak_rss_kib += peak_rss_kib();
    if (print_summary(sum, start_us, end_us, procs) != 0 && code == EXIT_OK)
        code = EXIT_FAIL;
    free(pf);
    free(ch);
    free(sum);
    return code;
}

/* ---- command line ------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: c2d-sim-engine run --fleet DIR [--procs K] [--seconds S] [--progress-s P]\n"
               "                          [--journal-dir J] [--corrupt crc:N|content:N]\n"
               "                          [--speed X] [--stagger-s S] [-v]\n");
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

/* A process may need more descriptors than the usual soft limit. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int cmd_run(options *o)
{
    sim_dev *devs = NULL;
    size_t n = 0;
    int code = EXIT_USAGE;
    if (scan_fleet(o->fleet, &devs, &n) != 0)
        return EXIT_USAGE;
    if (n == 0) {
        c2d_err("--fleet %s: no */agent.json", o->fleet);
        goto out;
    }
    if (load_fleet(devs, n, o) != 0)
        goto out;
    if (o->journal_dir) {
        int rc = c2d_mkdirs(o->journal_dir, 0755);
        if (rc != 0) {
            c2d_err("--journal-dir %s: %s", o->journal_dir, strerror(-rc));
            goto out;
        }
    }
    size_t channels = 0;
    for (size_t i = 0; i < n; i++)
        channels += devs[i].cfg.n_channels;
    size_t fds = n * FDS_PER_AGENT + channels * FDS_PER_CHANNEL;
    int need = (int)((fds + FD_BUDGET - 1) / FD_BUDGET);
    int procs = o->procs;
    if (procs < need) {
        c2d_warn("%zu agents with %zu channels need about %zu descriptors, more than one process "
                 "can give libmosquitto (below %d): running %d processes",
                 n, channels, fds, FD_SETSIZE, need);
        procs = need;
    }
    if ((size_t)procs > n)
        procs = (int)n;
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    /* Every thread and child inherits this: the stop signals are taken
     * with sigtimedwait on the main thread only. */
    sigset_t stopsigs;
    sigemptyset(&stopsigs);
    sigaddset(&stopsigs, SIGINT);
    sigaddset(&stopsigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stopsigs, NULL);

    /* Cameras that started together would cut their segments at the same
     * moments and upload in bursts no real fleet makes: realtime fleets
     * start spread over one segment length unless told otherwise. */
    double stagger = o->stagger_s;
    if (stagger < 0) {
        stagger = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t c = 0; c < devs[i].cfg.n_channels; c++)
                if (devs[i].cfg.channels[c].realtime &&
                    (double)devs[i].cfg.segment_seconds > stagger)
                    stagger = (double)devs[i].cfg.segment_seconds;
        stagger /= o->speed > 0 ? o->speed : 1;
    }
    int64_t start_us = c2d_mono_us();
    for (size_t i = 0; i < n; i++)
        devs[i].start_at_us = start_us + (int64_t)(stagger * 1e6 * (double)i / (double)n);
    if (procs <= 1) {
        totals *t = calloc(1, sizeof(*t));
        if (!t) {
            c2d_err("out of memory");
            code = EXIT_FAIL;
            goto out;
        }
        code = run_slice(devs, n, o, start_us, -1, t);
        if (print_summary(t, start_us, c2d_mono_us(), 1) != 0 && code == EXIT_OK)
            code = EXIT_FAIL;
        free(t);
    } else {
        code = run_children(devs, n, procs, o, start_us);
    }
out:
    for (size_t i = 0; i < n; i++)
        if (devs[i].loaded)
            agent_config_free(&devs[i].cfg);
    free(devs);
    return code;
}

int main(int argc, char **argv)
{
    options o = {.procs = 1, .progress_s = PROGRESS_DEFAULT_S, .stagger_s = -1};
    c2d_log_set_name("c2d-sim-engine");
    agent_tune_malloc();
    if (argc < 2 || strcmp(argv[1], "run") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
            usage(stdout);
            return EXIT_OK;
        }
        usage(stderr);
        return EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            o.verbose++;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return EXIT_OK;
        }
        if (!v) {
            fprintf(stderr, "c2d-sim-engine: unexpected argument \"%s\"\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
        i++;
        if (strcmp(a, "--fleet") == 0) {
            o.fleet = v;
        } else if (strcmp(a, "--procs") == 0 && parse_double(v, 1, PROCS_MAX, &d) == 0 &&
                   d == (int)d) {
            o.procs = (int)d;
        } else if (strcmp(a, "--seconds") == 0 && parse_double(v, 0, 1e9, &d) == 0) {
            o.seconds = d;
        } else if (strcmp(a, "--progress-s") == 0 && parse_double(v, 0, 1e6, &d) == 0) {
            o.progress_s = d;
        } else if (strcmp(a, "--journal-dir") == 0) {
            o.journal_dir = v;
        } else if (strcmp(a, "--corrupt") == 0) {
            agent_config probe;
            memset(&probe, 0, sizeof(probe));
            if (agent_config_set_test_corrupt(&probe, v) != 0) {
                fprintf(stderr,
                        "c2d-sim-engine: --corrupt %s: expected crc:N or content:N, N "
                        "per mille (0..1000)\n",
                        v);
                return EXIT_USAGE;
            }
            o.corrupt = v;
        } else if (strcmp(a, "--stagger-s") == 0 && parse_double(v, 0, 1e6, &d) == 0) {
            o.stagger_s = d;
        } else if (strcmp(a, "--speed") == 0 && parse_double(v, 0.01, 1000, &d) == 0) {
            o.speed = d;
        } else {
            fprintf(stderr, "c2d-sim-engine: bad argument %s %s\n", a, v);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!o.fleet) {
        fprintf(stderr, "c2d-sim-engine: --fleet DIR is required\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    /* 200 agents log every segment at info: warnings only, unless -v. */
    c2d_log_set_level(o.verbose >= 2 ? C2D_LOG_DEBUG : o.verbose ? C2D_LOG_INFO : C2D_LOG_WARN);
    return cmd_run(&o);
}
