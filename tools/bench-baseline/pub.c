/* Baseline publisher for tools/bench: sends --chunk sized QoS 1 messages
 * (MQTT v5, TLS with a client certificate, set up exactly like the agent's
 * connection by c2d_mqtt_new) with at most --window messages per connection
 * published but not yet acknowledged by the broker, the same bound the agent
 * keeps on its chunks. No segmenting, no spool, no protocol: the cost of
 * moving the bytes through libmosquitto, TLS and the broker.
 *
 * One connection (--cert, --key, --id, --topic), or many (--clients FILE:
 * one line per connection, "CLIENT_ID CERT KEY TOPIC", separated by spaces),
 * each with its own network thread, served round-robin by one publishing
 * thread: a fleet's devices through one broker (tools/bench fleet's relay
 * ceiling). It stops after --bytes bytes in all or after --seconds, and
 * waits for every PUBACK.
 *
 * With --sub-cert, --sub-key and --sub-topic (and --sub-id) a subscriber in
 * the same process takes the messages back from the broker at QoS 1 and
 * discards them, and a connection's window is its messages not yet
 * delivered to that subscriber, not those awaiting PUBACK: end to end, as
 * the agent's window awaits the controller's ack. Without it the broker
 * acknowledges faster than it delivers and drops what its queue for a slow
 * subscriber cannot hold, so publishing "as fast as it can" measures the
 * drops. The delivered bytes are counted from --warmup seconds after the
 * start of publishing for --seconds.
 *
 * A message the broker acknowledged but never delivered (mosquitto drops
 * for a subscriber whose queue it deems full) is counted lost after
 * PUB_LOST_S without delivery, and its connection's window reopens (one
 * delivered later after all is counted delivered, not lost).
 *
 * Exit status 0 once every message is acknowledged (and, with a subscriber,
 * delivered or lost), 1 on any error. A short report goes to stderr; with
 * --seconds, one JSON line on stdout: {"bytes", "msgs", "seconds", "MBps",
 * "clients", "delivered_bytes", "delivered_MBps", "lost_msgs"} (the last
 * three with a subscriber: bytes delivered in the measured window, per
 * second, and messages lost). */
#include "common/c2d_config.h"
#include "common/c2d_mqtt.h"

#include <errno.h>
#include <getopt.h>
#include <mqtt_protocol.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A payload over this would not fit the protocol's chunk frame either. */
#define PUB_CHUNK_MAX (1u << 20)
/* libmosquitto's default send maximum is 20; keep the window inside it so
 * that the bound is ours and not the library's. */
#define PUB_WINDOW_MAX 20
/* How long to wait for CONNACK or for the last PUBACK before giving up. */
#define PUB_WAIT_S 60
/* A fleet is at most a few thousand devices; each connection is a thread. */
#define PUB_CLIENTS_MAX 4096
/* A clients file line: id, two paths and a topic. */
#define PUB_LINE_MAX 4096
/* End to end: a connection whose every message the broker acknowledged but
 * that has had nothing delivered for this long counts what it still awaits
 * as lost (the broker dropped them: mosquitto does, for a subscriber whose
 * queue it deems full) and gets its window back. */
#define PUB_LOST_S 0.5

typedef struct {
    struct mosquitto *m;
    c2d_broker_cfg b;
    char *topic;
    int connected; /* 1 connected, -1 refused or lost */
    int inflight;  /* published, not yet acked (or delivered, end to end) */
    int looping;
    uint64_t published, acked, delivered, lost;
    double progress; /* when it last published or had a message delivered */
} pub_conn;

/* One lock and condition for every connection: the publishing thread waits
 * for any connection's PUBACK (or delivery). */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static int g_failed;

/* The end-to-end subscriber: its state, under g_lock. */
static struct {
    pub_conn *conns;
    size_t n;
    const char *topic;
    int on;         /* a subscriber is in use */
    int subscribed; /* 1 SUBACK granted QoS 1, -1 refused */
    double win_from, win_to;
    long long win_bytes, stray;
} g_sub;

static const char *name(const pub_conn *c)
{
    return c->b.client_id ? c->b.client_id : "c2d-bench-pub";
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    pub_conn *c = obj;
    pthread_mutex_lock(&g_lock);
    c->connected = rc == 0 ? 1 : -1;
    if (rc != 0) {
        fprintf(stderr, "bench-pub: %s: connection refused: %s\n", name(c),
                mosquitto_reason_string(rc));
        g_failed = 1;
    }
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
    pub_conn *c = obj;
    pthread_mutex_lock(&g_lock);
    if (rc != 0) {
        fprintf(stderr, "bench-pub: %s: disconnected: %s\n", name(c), mosquitto_strerror(rc));
        c->connected = -1;
        g_failed = 1;
    }
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int reason,
                       const mosquitto_property *props)
{
    pub_conn *c = obj;
    pthread_mutex_lock(&g_lock);
    if (reason >= 0x80) {
        fprintf(stderr, "bench-pub: %s: message %d refused: %s\n", name(c), mid,
                mosquitto_reason_string(reason));
        c->connected = -1;
        g_failed = 1;
    }
    if (!g_sub.on)
        c->inflight--;
    c->acked++;
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_sub_connect(struct mosquitto *m, void *obj, int rc, int flags,
                           const mosquitto_property *props)
{
    if (rc == 0)
        rc = mosquitto_subscribe_v5(m, NULL, g_sub.topic, 1, 0, NULL);
    if (rc != 0) {
        fprintf(stderr, "bench-pub: subscriber: %s\n", mosquitto_reason_string(rc));
        pthread_mutex_lock(&g_lock);
        g_sub.subscribed = -1;
        g_failed = 1;
        pthread_cond_broadcast(&g_cond);
        pthread_mutex_unlock(&g_lock);
    }
}

static void on_sub_disconnect(struct mosquitto *m, void *obj, int rc,
                              const mosquitto_property *props)
{
    if (rc == 0)
        return;
    fprintf(stderr, "bench-pub: subscriber disconnected: %s\n", mosquitto_strerror(rc));
    pthread_mutex_lock(&g_lock);
    g_failed = 1;
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted,
                         const mosquitto_property *props)
{
    pthread_mutex_lock(&g_lock);
    g_sub.subscribed = n >= 1 && granted[0] == 1 ? 1 : -1;
    if (g_sub.subscribed < 0) {
        fprintf(stderr, "bench-pub: subscription to %s refused\n", g_sub.topic);
        g_failed = 1;
    }
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
}

/* A message delivered to the subscriber: the window of the connection that
 * published it (found by its topic) opens by one. */
static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    double t = now_s();
    pthread_mutex_lock(&g_lock);
    pub_conn *c = NULL;
    for (size_t i = 0; i < g_sub.n && !c; i++)
        if (strcmp(g_sub.conns[i].topic, msg->topic) == 0)
            c = &g_sub.conns[i];
    if (!c) {
        g_sub.stray++;
    } else {
        if (c->inflight > 0)
            c->inflight--;
        else if (c->lost > 0)
            c->lost--; /* late, not lost: its window was given back already */
        c->delivered++;
        c->progress = t;
        if (t >= g_sub.win_from && t < g_sub.win_to)
            g_sub.win_bytes += msg->payloadlen;
    }
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
}

/* Waits on g_cond until woken or `s` seconds pass. Called with g_lock held.
 * Returns 0 when woken, -1 on timeout. */
static int wait_s(double s)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    long long ns = (long long)dl.tv_nsec + (long long)(s * 1e9);
    dl.tv_sec += (time_t)(ns / 1000000000LL);
    dl.tv_nsec = (long)(ns % 1000000000LL);
    return pthread_cond_timedwait(&g_cond, &g_lock, &dl) == 0 ? 0 : -1;
}

/* End to end: gives back the window of connections whose messages the
 * broker dropped (see PUB_LOST_S). Called with g_lock held. */
static void reclaim_lost(pub_conn *cs, size_t n, double now)
{
    for (size_t i = 0; i < n; i++) {
        pub_conn *c = &cs[i];
        if (g_sub.on && c->inflight > 0 && c->acked == c->published &&
            now - c->progress > PUB_LOST_S) {
            c->lost += (uint64_t)c->inflight;
            c->inflight = 0;
        }
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: c2d-bench-pub --port P --ca CA (--cert CRT --key KEY --topic T [--id ID] |\n"
               "                     --clients FILE) (--bytes N | --seconds S) [--host H]\n"
               "                     [--chunk B] [--window N] [--sub-cert CRT --sub-key KEY\n"
               "                     --sub-topic T [--sub-id ID] [--warmup W]]\n");
}

static void conn_free(pub_conn *c)
{
    free(c->b.client_id);
    free(c->b.cert_file);
    free(c->b.key_file);
    free(c->topic);
}

/* Reads FILE's lines "CLIENT_ID CERT KEY TOPIC" into *out (n entries).
 * Returns 0, or -1 with a message on stderr. */
static int load_clients(const char *path, const c2d_broker_cfg *tmpl, pub_conn **out, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench-pub: %s: %s\n", path, strerror(errno));
        return -1;
    }
    pub_conn *cs = NULL;
    size_t k = 0;
    char line[PUB_LINE_MAX];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        char id[PUB_LINE_MAX], crt[PUB_LINE_MAX], key[PUB_LINE_MAX], topic[PUB_LINE_MAX];
        if (line[0] == '\n' || line[0] == '#')
            continue;
        if (k == PUB_CLIENTS_MAX ||
            sscanf(line, "%4095s %4095s %4095s %4095s", id, crt, key, topic) != 4) {
            fprintf(stderr, "bench-pub: %s:%d: %s\n", path, lineno,
                    k == PUB_CLIENTS_MAX ? "too many clients" : "not CLIENT_ID CERT KEY TOPIC");
            rc = -1;
            break;
        }
        pub_conn *grown = realloc(cs, (k + 1) * sizeof(*cs));
        if (!grown) {
            rc = -1;
            break;
        }
        cs = grown;
        pub_conn *c = &cs[k++];
        memset(c, 0, sizeof(*c));
        c->b = *tmpl;
        c->b.client_id = strdup(id);
        c->b.cert_file = strdup(crt);
        c->b.key_file = strdup(key);
        c->topic = strdup(topic);
        if (!c->b.client_id || !c->b.cert_file || !c->b.key_file || !c->topic) {
            fprintf(stderr, "bench-pub: out of memory\n");
            rc = -1;
        }
    }
    fclose(f);
    if (rc == 0 && k == 0) {
        fprintf(stderr, "bench-pub: %s: no clients\n", path);
        rc = -1;
    }
    if (rc != 0) {
        for (size_t i = 0; i < k; i++)
            conn_free(&cs[i]);
        free(cs);
        return -1;
    }
    *out = cs;
    *n = k;
    return 0;
}

int main(int argc, char **argv)
{
    c2d_broker_cfg b = {.host = "127.0.0.1", .port = 8883, .keepalive_s = 30};
    const char *topic = NULL, *clients = NULL, *cert = NULL, *key = NULL, *id = NULL;
    long long total = -1, chunk = 262144, window = 8;
    double seconds = 0, warmup = 0;
    c2d_broker_cfg sb = {.keepalive_s = 30};
    static const struct option opts[] = {
        {"sub-cert", required_argument, NULL, 'X'},
        {"sub-key", required_argument, NULL, 'Y'},
        {"sub-id", required_argument, NULL, 'Z'},
        {"sub-topic", required_argument, NULL, 'T'},
        {"warmup", required_argument, NULL, 'U'},
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"ca", required_argument, NULL, 'a'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"id", required_argument, NULL, 'i'},
        {"topic", required_argument, NULL, 't'},
        {"bytes", required_argument, NULL, 'n'},
        {"chunk", required_argument, NULL, 's'},
        {"window", required_argument, NULL, 'w'},
        {"clients", required_argument, NULL, 'C'},
        {"seconds", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'H':
            b.host = optarg;
            break;
        case 'p':
            b.port = atoll(optarg);
            break;
        case 'a':
            b.ca_file = optarg;
            break;
        case 'c':
            cert = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'i':
            id = optarg;
            break;
        case 't':
            topic = optarg;
            break;
        case 'n':
            total = atoll(optarg);
            break;
        case 's':
            chunk = atoll(optarg);
            break;
        case 'w':
            window = atoll(optarg);
            break;
        case 'C':
            clients = optarg;
            break;
        case 'S':
            seconds = atof(optarg);
            break;
        case 'X':
            sb.cert_file = optarg;
            break;
        case 'Y':
            sb.key_file = optarg;
            break;
        case 'Z':
            sb.client_id = optarg;
            break;
        case 'T':
            g_sub.topic = optarg;
            break;
        case 'U':
            warmup = atof(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    int one = cert && key && topic;
    g_sub.on = sb.cert_file || sb.key_file || g_sub.topic;
    if (g_sub.on && (!sb.cert_file || !sb.key_file || !g_sub.topic)) {
        usage(stderr);
        return 1;
    }
    if (!b.ca_file || one == (clients != NULL) || (total < 0 && seconds <= 0) || chunk < 1 ||
        warmup < 0 || chunk > PUB_CHUNK_MAX || window < 1 || window > PUB_WINDOW_MAX ||
        b.port < 1 || b.port > 65535) {
        usage(stderr);
        return 1;
    }
    if (total < 0)
        total = INT64_MAX;

    pub_conn *cs = NULL;
    size_t n = 0;
    if (clients) {
        if (load_clients(clients, &b, &cs, &n) != 0)
            return 1;
    } else {
        cs = calloc(1, sizeof(*cs));
        if (!cs)
            return 1;
        n = 1;
        cs[0].b = b;
        cs[0].b.client_id = id ? strdup(id) : NULL;
        cs[0].b.cert_file = strdup(cert);
        cs[0].b.key_file = strdup(key);
        cs[0].topic = strdup(topic);
        if ((id && !cs[0].b.client_id) || !cs[0].b.cert_file || !cs[0].b.key_file || !cs[0].topic) {
            conn_free(&cs[0]);
            free(cs);
            return 1;
        }
    }
    unsigned char *buf = malloc((size_t)chunk);
    if (!buf) {
        fprintf(stderr, "bench-pub: out of memory\n");
        return 1;
    }
    /* Arbitrary bytes; TLS does not compress, the content does not matter. */
    uint32_t x = 2463534242u;
    for (long long i = 0; i < chunk; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (unsigned char)x;
    }

    mosquitto_lib_init();
    char err[C2D_ERRMSG_MAX];
    int ret = 1, sub_looping = 0;
    struct mosquitto *sm = NULL;
    double t0 = now_s();
    g_sub.conns = cs;
    g_sub.n = n;
    g_sub.win_from = g_sub.win_to = 1e300; /* nothing counted before publishing */
    if (g_sub.on) {
        sb.host = b.host;
        sb.port = b.port;
        sb.ca_file = b.ca_file;
        sm = c2d_mqtt_new(&sb, "c2d-bench-sub", 1, NULL, err, sizeof(err));
        if (!sm) {
            fprintf(stderr, "bench-pub: subscriber: %s\n", err);
            goto fail;
        }
        mosquitto_connect_v5_callback_set(sm, on_sub_connect);
        mosquitto_disconnect_v5_callback_set(sm, on_sub_disconnect);
        mosquitto_subscribe_v5_callback_set(sm, on_subscribe);
        mosquitto_message_v5_callback_set(sm, on_message);
        int rc = mosquitto_connect(sm, sb.host, (int)sb.port, (int)sb.keepalive_s);
        if (rc == MOSQ_ERR_SUCCESS)
            rc = mosquitto_loop_start(sm);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "bench-pub: subscriber: %s\n", mosquitto_strerror(rc));
            goto fail;
        }
        sub_looping = 1;
        pthread_mutex_lock(&g_lock);
        while (g_sub.subscribed == 0 && !g_failed && now_s() - t0 < PUB_WAIT_S)
            wait_s(1.0);
        int ok = g_sub.subscribed == 1;
        pthread_mutex_unlock(&g_lock);
        if (!ok) {
            fprintf(stderr, "bench-pub: the subscriber did not subscribe\n");
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        pub_conn *c = &cs[i];
        c->m = c2d_mqtt_new(&c->b, "c2d-bench-pub", 1, c, err, sizeof(err));
        if (!c->m) {
            fprintf(stderr, "bench-pub: %s\n", err);
            goto fail;
        }
        mosquitto_connect_v5_callback_set(c->m, on_connect);
        mosquitto_disconnect_v5_callback_set(c->m, on_disconnect);
        mosquitto_publish_v5_callback_set(c->m, on_publish);
        int rc = mosquitto_connect(c->m, c->b.host, (int)c->b.port, (int)c->b.keepalive_s);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "bench-pub: connect %s:%lld: %s\n", c->b.host, (long long)c->b.port,
                    mosquitto_strerror(rc));
            goto fail;
        }
        rc = mosquitto_loop_start(c->m);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "bench-pub: loop_start: %s\n", mosquitto_strerror(rc));
            goto fail;
        }
        c->looping = 1;
    }

    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < n; i++) {
        while (cs[i].connected == 0 && !g_failed && now_s() - t0 < PUB_WAIT_S)
            wait_s(1.0);
        if (cs[i].connected != 1) {
            pthread_mutex_unlock(&g_lock);
            fprintf(stderr, "bench-pub: no connection for %s\n", name(&cs[i]));
            goto fail;
        }
    }
    double t1 = now_s();
    if (seconds > 0) {
        g_sub.win_from = t1 + warmup;
        g_sub.win_to = t1 + warmup + seconds;
        seconds += warmup;
    }
    pthread_mutex_unlock(&g_lock);

    long long sent = 0, msgs = 0;
    size_t next = 0;
    double idle_since = now_s();
    while (sent < total && (seconds <= 0 || now_s() - t1 < seconds)) {
        /* The next connection with room in its window, round-robin. */
        pub_conn *c = NULL;
        pthread_mutex_lock(&g_lock);
        for (size_t k = 0; k < n && !c; k++) {
            pub_conn *t = &cs[(next + k) % n];
            if (t->connected == 1 && t->inflight < window) {
                c = t;
                next = (next + k + 1) % n;
            }
        }
        if (g_failed) {
            pthread_mutex_unlock(&g_lock);
            fprintf(stderr, "bench-pub: failed after %lld bytes\n", sent);
            goto fail;
        }
        if (!c) {
            wait_s(0.1);
            reclaim_lost(cs, n, now_s());
            pthread_mutex_unlock(&g_lock);
            if (now_s() - idle_since > PUB_WAIT_S) {
                fprintf(stderr, "bench-pub: stalled after %lld bytes\n", sent);
                goto fail;
            }
            continue;
        }
        c->inflight++; /* before publishing: the ack may arrive first */
        c->published++;
        c->progress = now_s();
        pthread_mutex_unlock(&g_lock);
        idle_since = now_s();
        int len = (int)(total - sent < chunk ? total - sent : chunk);
        int rc = mosquitto_publish_v5(c->m, NULL, c->topic, len, buf, 1, false, NULL);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "bench-pub: publish: %s\n", mosquitto_strerror(rc));
            goto fail;
        }
        sent += len;
        msgs++;
    }
    double t2 = now_s();
    pthread_mutex_lock(&g_lock);
    uint64_t lost = 0;
    for (;;) {
        uint64_t acked = 0, delivered = 0;
        reclaim_lost(cs, n, now_s());
        lost = 0;
        for (size_t i = 0; i < n; i++) {
            acked += cs[i].acked;
            delivered += cs[i].delivered;
            lost += cs[i].lost;
        }
        if (acked >= (uint64_t)msgs && (!g_sub.on || delivered + lost >= (uint64_t)msgs))
            break;
        if (g_failed || now_s() - t2 > PUB_WAIT_S) {
            pthread_mutex_unlock(&g_lock);
            fprintf(stderr, "bench-pub: %llu of %lld messages acknowledged, %llu delivered\n",
                    (unsigned long long)acked, msgs, (unsigned long long)delivered);
            goto fail;
        }
        wait_s(0.1);
    }
    long long win_bytes = g_sub.win_bytes, stray = g_sub.stray;
    pthread_mutex_unlock(&g_lock);
    double t3 = now_s();
    fprintf(stderr,
            "bench-pub: %lld bytes in %lld messages over %zu connection(s), connect %.3f s, send "
            "%.3f s (%.1f MB/s)\n",
            sent, msgs, n, t1 - t0, t3 - t1, t3 > t1 ? (double)sent / (t3 - t1) / 1e6 : 0.0);
    if (g_sub.on)
        fprintf(stderr,
                "bench-pub: %lld bytes delivered to the subscriber in %.1f s after %.1f s "
                "(%.1f MB/s), %llu messages lost%s\n",
                win_bytes, seconds - warmup, warmup,
                seconds > warmup ? (double)win_bytes / (seconds - warmup) / 1e6 : 0.0,
                (unsigned long long)lost, stray ? " and messages of other topics" : "");
    if (seconds > 0 && g_sub.on)
        printf("{\"bytes\": %lld, \"msgs\": %lld, \"seconds\": %.3f, \"MBps\": %.3f, "
               "\"clients\": %zu, \"delivered_bytes\": %lld, \"delivered_MBps\": %.3f, "
               "\"lost_msgs\": %llu}\n",
               sent, msgs, t3 - t1, t3 > t1 ? (double)sent / (t3 - t1) / 1e6 : 0.0, n, win_bytes,
               (double)win_bytes / (seconds - warmup) / 1e6, (unsigned long long)lost);
    else if (seconds > 0)
        printf("{\"bytes\": %lld, \"msgs\": %lld, \"seconds\": %.3f, \"MBps\": %.3f, "
               "\"clients\": %zu}\n",
               sent, msgs, t3 - t1, t3 > t1 ? (double)sent / (t3 - t1) / 1e6 : 0.0, n);
    ret = 0;
fail:
    if (sm) {
        mosquitto_disconnect(sm);
        if (sub_looping)
            mosquitto_loop_stop(sm, false);
        mosquitto_destroy(sm);
    }
    for (size_t i = 0; i < n; i++) {
        pub_conn *c = &cs[i];
        if (c->m) {
            mosquitto_disconnect(c->m);
            if (c->looping)
                mosquitto_loop_stop(c->m, false);
            mosquitto_destroy(c->m);
        }
        conn_free(c);
    }
    free(cs);
    mosquitto_lib_cleanup();
    free(buf);
    return ret;
}
