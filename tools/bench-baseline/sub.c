/* Baseline subscriber for tools/bench: subscribes at QoS 1 (MQTT v5, TLS with
 * a client certificate, set up like the controller's connection by
 * c2d_mqtt_new), appends every payload to --out, and once --bytes bytes have
 * arrived fsyncs the file and exits 0. Prints "ready" on stdout once the
 * subscription is acknowledged, so the caller knows when to start
 * publishing. Exit status 1 on any error; a short report goes to stderr. */
#include "common/c2d_config.h"
#include "common/c2d_mqtt.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <mqtt_protocol.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *topic;
    int fd;
    long long want, got, msgs;
    int failed;
    double t_first;
} sub_state;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void stop(struct mosquitto *m, sub_state *st, int failed)
{
    st->failed |= failed;
    mosquitto_disconnect(m);
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    sub_state *st = obj;
    if (rc != 0) {
        fprintf(stderr, "bench-sub: connection refused: %s\n", mosquitto_reason_string(rc));
        stop(m, st, 1);
        return;
    }
    rc = mosquitto_subscribe_v5(m, NULL, st->topic, 1, 0, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "bench-sub: subscribe: %s\n", mosquitto_strerror(rc));
        stop(m, st, 1);
    }
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
    sub_state *st = obj;
    if (rc != 0 && st->got < st->want) {
        /* A reconnect with a clean session would lose messages: give up. */
        fprintf(stderr, "bench-sub: disconnected: %s\n", mosquitto_strerror(rc));
        stop(m, st, 1);
    }
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted,
                         const mosquitto_property *props)
{
    sub_state *st = obj;
    if (n < 1 || granted[0] != 1) {
        fprintf(stderr, "bench-sub: subscription to %s refused (%d)\n", st->topic,
                n < 1 ? -1 : granted[0]);
        stop(m, st, 1);
        return;
    }
    printf("ready\n");
    fflush(stdout);
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    sub_state *st = obj;
    if (st->msgs++ == 0)
        st->t_first = now_s();
    const char *p = msg->payload;
    size_t left = (size_t)msg->payloadlen;
    while (left > 0) {
        ssize_t w = write(st->fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            fprintf(stderr, "bench-sub: write: %s\n", strerror(errno));
            stop(m, st, 1);
            return;
        }
        p += w;
        left -= (size_t)w;
    }
    st->got += msg->payloadlen;
    if (st->got >= st->want)
        stop(m, st, st->got != st->want);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: c2d-bench-sub --port P --ca CA --cert CRT --key KEY --topic T --bytes N\n"
               "                     --out FILE [--host H] [--id CLIENT_ID]\n");
}

int main(int argc, char **argv)
{
    c2d_broker_cfg b = {.host = "127.0.0.1", .port = 8883, .keepalive_s = 30};
    sub_state st = {.fd = -1, .want = -1};
    const char *out = NULL;
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"ca", required_argument, NULL, 'a'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"id", required_argument, NULL, 'i'},
        {"topic", required_argument, NULL, 't'},
        {"bytes", required_argument, NULL, 'n'},
        {"out", required_argument, NULL, 'o'},
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
            b.cert_file = optarg;
            break;
        case 'k':
            b.key_file = optarg;
            break;
        case 'i':
            b.client_id = optarg;
            break;
        case 't':
            st.topic = optarg;
            break;
        case 'n':
            st.want = atoll(optarg);
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (!b.ca_file || !b.cert_file || !b.key_file || !st.topic || st.want < 1 || !out ||
        b.port < 1 || b.port > 65535) {
        usage(stderr);
        return 1;
    }
    st.fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (st.fd < 0) {
        fprintf(stderr, "bench-sub: %s: %s\n", out, strerror(errno));
        return 1;
    }

    mosquitto_lib_init();
    char err[C2D_ERRMSG_MAX];
    int ret = 1;
    struct mosquitto *m = c2d_mqtt_new(&b, "c2d-bench-sub", 1, &st, err, sizeof(err));
    if (!m) {
        fprintf(stderr, "bench-sub: %s\n", err);
        goto fail;
    }
    mosquitto_connect_v5_callback_set(m, on_connect);
    mosquitto_disconnect_v5_callback_set(m, on_disconnect);
    mosquitto_subscribe_v5_callback_set(m, on_subscribe);
    mosquitto_message_v5_callback_set(m, on_message);
    int rc = mosquitto_connect(m, b.host, (int)b.port, (int)b.keepalive_s);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "bench-sub: connect %s:%lld: %s\n", b.host, (long long)b.port,
                mosquitto_strerror(rc));
        goto fail;
    }
    /* Returns once stop() has disconnected. */
    rc = mosquitto_loop_forever(m, -1, 1);
    if (rc != MOSQ_ERR_SUCCESS && !st.failed && st.got < st.want) {
        fprintf(stderr, "bench-sub: loop: %s\n", mosquitto_strerror(rc));
        goto fail;
    }
    if (st.failed || st.got != st.want) {
        fprintf(stderr, "bench-sub: received %lld of %lld bytes\n", st.got, st.want);
        goto fail;
    }
    double t1 = now_s();
    if (fsync(st.fd) != 0) {
        fprintf(stderr, "bench-sub: fsync %s: %s\n", out, strerror(errno));
        goto fail;
    }
    double t2 = now_s();
    fprintf(stderr, "bench-sub: %lld bytes in %lld messages, first to last %.3f s, fsync %.3f s\n",
            st.got, st.msgs, t1 - st.t_first, t2 - t1);
    ret = 0;
fail:
    if (st.fd >= 0 && close(st.fd) != 0 && ret == 0) {
        fprintf(stderr, "bench-sub: close %s: %s\n", out, strerror(errno));
        ret = 1;
    }
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    return ret;
}
