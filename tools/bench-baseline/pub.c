/* Baseline publisher for tools/bench: sends --bytes bytes in --chunk sized
 * QoS 1 messages (MQTT v5, TLS with a client certificate, set up exactly like
 * the agent's connection by c2d_mqtt_new) with at most --window messages
 * published but not yet acknowledged by the broker, the same bound the agent
 * keeps on its chunks. No segmenting, no spool, no protocol: the cost of
 * moving the bytes through libmosquitto, TLS and the broker.
 *
 * Exit status 0 once every message is acknowledged, 1 on any error. A short
 * report goes to stderr. */
#include "common/c2d_config.h"
#include "common/c2d_mqtt.h"

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

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int connected; /* 1 connected, -1 refused or lost */
    int inflight;
    uint64_t acked;
} pub_state;

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    pub_state *st = obj;
    pthread_mutex_lock(&st->lock);
    st->connected = rc == 0 ? 1 : -1;
    if (rc != 0)
        fprintf(stderr, "bench-pub: connection refused: %s\n", mosquitto_reason_string(rc));
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->lock);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
    pub_state *st = obj;
    pthread_mutex_lock(&st->lock);
    if (rc != 0) {
        fprintf(stderr, "bench-pub: disconnected: %s\n", mosquitto_strerror(rc));
        st->connected = -1;
    }
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->lock);
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int reason,
                       const mosquitto_property *props)
{
    pub_state *st = obj;
    pthread_mutex_lock(&st->lock);
    if (reason >= 0x80) {
        fprintf(stderr, "bench-pub: message %d refused: %s\n", mid,
                mosquitto_reason_string(reason));
        st->connected = -1;
    }
    st->inflight--;
    st->acked++;
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->lock);
}

/* Waits on st->cond until pred holds or the connection fails or times out.
 * Called with st->lock held. Returns 0 when pred holds. */
static int wait_for(pub_state *st, int (*pred)(const pub_state *, int), int arg)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += PUB_WAIT_S;
    while (!pred(st, arg)) {
        if (st->connected < 0)
            return -1;
        if (pthread_cond_timedwait(&st->cond, &st->lock, &dl) != 0)
            return -1;
    }
    return 0;
}

static int is_connected(const pub_state *st, int arg)
{
    return st->connected == 1;
}

static int window_has_room(const pub_state *st, int window)
{
    return st->connected == 1 && st->inflight < window;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: c2d-bench-pub --port P --ca CA --cert CRT --key KEY --topic T --bytes N\n"
               "                     [--host H] [--id CLIENT_ID] [--chunk B] [--window N]\n");
}

int main(int argc, char **argv)
{
    c2d_broker_cfg b = {.host = "127.0.0.1", .port = 8883, .keepalive_s = 30};
    const char *topic = NULL;
    long long total = -1, chunk = 262144, window = 8;
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},  {"port", required_argument, NULL, 'p'},
        {"ca", required_argument, NULL, 'a'},    {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},   {"id", required_argument, NULL, 'i'},
        {"topic", required_argument, NULL, 't'}, {"bytes", required_argument, NULL, 'n'},
        {"chunk", required_argument, NULL, 's'}, {"window", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
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
            b.cert_file = optarg;
            break;
        case 'k':
            b.key_file = optarg;
            break;
        case 'i':
            b.client_id = optarg;
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
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (!b.ca_file || !b.cert_file || !b.key_file || !topic || total < 0 || chunk < 1 ||
        chunk > PUB_CHUNK_MAX || window < 1 || window > PUB_WINDOW_MAX || b.port < 1 ||
        b.port > 65535) {
        usage(stderr);
        return 1;
    }

    pub_state st = {.connected = 0};
    pthread_mutex_init(&st.lock, NULL);
    pthread_cond_init(&st.cond, NULL);
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
    int ret = 1;
    int looping = 0;
    struct mosquitto *m = c2d_mqtt_new(&b, "c2d-bench-pub", 1, &st, err, sizeof(err));
    if (!m) {
        fprintf(stderr, "bench-pub: %s\n", err);
        goto fail;
    }
    mosquitto_connect_v5_callback_set(m, on_connect);
    mosquitto_disconnect_v5_callback_set(m, on_disconnect);
    mosquitto_publish_v5_callback_set(m, on_publish);

    double t0 = now_s();
    int rc = mosquitto_connect(m, b.host, (int)b.port, (int)b.keepalive_s);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "bench-pub: connect %s:%lld: %s\n", b.host, (long long)b.port,
                mosquitto_strerror(rc));
        goto fail;
    }
    rc = mosquitto_loop_start(m);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "bench-pub: loop_start: %s\n", mosquitto_strerror(rc));
        goto fail;
    }
    looping = 1;

    pthread_mutex_lock(&st.lock);
    if (wait_for(&st, is_connected, 0) != 0) {
        pthread_mutex_unlock(&st.lock);
        fprintf(stderr, "bench-pub: no connection\n");
        goto fail;
    }
    pthread_mutex_unlock(&st.lock);
    double t1 = now_s();

    long long sent = 0, msgs = 0;
    while (sent < total) {
        int n = (int)(total - sent < chunk ? total - sent : chunk);
        pthread_mutex_lock(&st.lock);
        if (wait_for(&st, window_has_room, (int)window) != 0) {
            pthread_mutex_unlock(&st.lock);
            fprintf(stderr, "bench-pub: stalled after %lld bytes\n", sent);
            goto fail;
        }
        st.inflight++; /* before publishing: the ack may arrive first */
        pthread_mutex_unlock(&st.lock);
        rc = mosquitto_publish_v5(m, NULL, topic, n, buf, 1, false, NULL);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "bench-pub: publish: %s\n", mosquitto_strerror(rc));
            goto fail;
        }
        sent += n;
        msgs++;
    }
    pthread_mutex_lock(&st.lock);
    while (st.acked < (uint64_t)msgs) {
        if (wait_for(&st, window_has_room, 1) != 0) {
            pthread_mutex_unlock(&st.lock);
            fprintf(stderr, "bench-pub: %llu of %lld messages acknowledged\n",
                    (unsigned long long)st.acked, msgs);
            goto fail;
        }
    }
    pthread_mutex_unlock(&st.lock);
    double t2 = now_s();
    fprintf(stderr,
            "bench-pub: %lld bytes in %lld messages, connect %.3f s, send %.3f s (%.1f MB/s)\n",
            sent, msgs, t1 - t0, t2 - t1, t2 > t1 ? (double)sent / (t2 - t1) / 1e6 : 0.0);
    ret = 0;
fail:
    if (m) {
        mosquitto_disconnect(m);
        if (looping)
            mosquitto_loop_stop(m, false);
        mosquitto_destroy(m);
    }
    mosquitto_lib_cleanup();
    free(buf);
    return ret;
}
