/* Unit tests for agent/config.c: a good configuration with its defaults and
 * resolved paths, and every kind of bad one, whose error must name the
 * file and the key. */
#include "check.h"
#include "agent/config.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];
static char cfg_path[PATH_MAX];

static void write_config(const char *text)
{
    check_write_file(cfg_path, text);
}

#define BROKER "\"broker\":{\"ca_file\":\"ca.crt\",\"cert_file\":\"d.crt\",\"key_file\":\"d.key\"}"
#define CHANNEL "{\"id\":1,\"source\":\"a.ts\"}"

/* Loads text, which must fail with an error naming the file and each of the
 * NULL-terminated needles (the key, usually). */
static void bad(int line, const char *text, ...)
{
    write_config(text);
    agent_config cfg;
    char err[C2D_ERRMSG_MAX];
    err[0] = '\0';
    if (agent_config_load(cfg_path, &cfg, err, sizeof(err)) == 0) {
        fprintf(stderr, "%s:%d: config loaded but should not have: %s\n", __FILE__, line, text);
        failures++;
        agent_config_free(&cfg);
        return;
    }
    va_list ap;
    va_start(ap, text);
    check_err_names(__FILE__, line, err, cfg_path, ap);
    va_end(ap);
}

#define BAD(text, ...) bad(__LINE__, text, __VA_ARGS__, (const char *)NULL)

static void test_good(void)
{
    write_config("{\"device_id\":\"rec-0001\",\"state_dir\":\"state\"," BROKER ","
                 "\"channels\":[{\"id\":1,\"name\":\"Entrance\",\"source\":\"media/ch1.ts\","
                 "\"realtime\":true,\"loop\":true},"
                 "{\"id\":0,\"source\":\"rtsp://cam/stream\"},"
                 "{\"id\":65535,\"source\":\"/abs/dir\"}]}");
    agent_config c;
    char err[C2D_ERRMSG_MAX] = "";
    int rc = agent_config_load(cfg_path, &c, err, sizeof(err));
    CHECK(rc == 0);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err);
        return;
    }
    char want[PATH_MAX + 32];
    CHECK(strcmp(c.device_id, "rec-0001") == 0);
    snprintf(want, sizeof(want), "%s/state", dir);
    CHECK(strcmp(c.state_dir, want) == 0);
    snprintf(want, sizeof(want), "%s/ca.crt", dir);
    CHECK(strcmp(c.broker.ca_file, want) == 0);
    snprintf(want, sizeof(want), "%s/d.key", dir);
    CHECK(strcmp(c.broker.key_file, want) == 0);
    CHECK(strcmp(c.broker.client_id, "rec-0001") == 0);
    CHECK(strcmp(c.broker.host, "127.0.0.1") == 0);
    CHECK(c.broker.port == 8883);
    CHECK(c.segment_seconds == 10);
    CHECK(c.chunk_bytes == 262144);
    CHECK(c.window_chunks == 8);
    CHECK(c.rate_limit_bps == 0);
    CHECK(c.spool_max_bytes == 1073741824);
    CHECK(c.ack_timeout_s == 10);
    CHECK(c.keep_sent_dir == NULL);
    CHECK(c.n_channels == 3);
    if (c.n_channels == 3) {
        snprintf(want, sizeof(want), "%s/media/ch1.ts", dir);
        CHECK(c.channels[0].id == 1);
        CHECK(strcmp(c.channels[0].name, "Entrance") == 0);
        CHECK(strcmp(c.channels[0].source, want) == 0);
        CHECK(c.channels[0].realtime == 1 && c.channels[0].loop == 1);
        CHECK(c.channels[1].id == 0);
        CHECK(strcmp(c.channels[1].name, "") == 0);
        CHECK(strcmp(c.channels[1].source, "rtsp://cam/stream") == 0);
        CHECK(c.channels[1].realtime == 0 && c.channels[1].loop == 0);
        CHECK(strcmp(c.channels[2].source, "/abs/dir") == 0);
    }
    agent_config_free(&c);

    /* Every key set explicitly. */
    write_config("{\"device_id\":\"r_1.x\",\"state_dir\":\"/var/lib/x\","
                 "\"broker\":{\"host\":\"broker.example\",\"port\":1883,\"ca_file\":\"/ca\","
                 "\"cert_file\":\"/c\",\"key_file\":\"/k\",\"keepalive_s\":60,"
                 "\"client_id\":\"custom\"},"
                 "\"segment_seconds\":600,\"chunk_bytes\":4096,\"window_chunks\":256,"
                 "\"rate_limit_bps\":1000000,\"spool_max_bytes\":1048576,\"ack_timeout_s\":1,"
                 "\"keep_sent_dir\":\"sent\",\"channels\":[" CHANNEL "]}");
    rc = agent_config_load(cfg_path, &c, err, sizeof(err));
    CHECK(rc == 0);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err);
        return;
    }
    CHECK(strcmp(c.state_dir, "/var/lib/x") == 0);
    CHECK(strcmp(c.broker.client_id, "custom") == 0);
    CHECK(c.broker.port == 1883 && c.broker.keepalive_s == 60);
    CHECK(c.segment_seconds == 600 && c.chunk_bytes == 4096 && c.window_chunks == 256);
    CHECK(c.rate_limit_bps == 1000000 && c.spool_max_bytes == 1048576 && c.ack_timeout_s == 1);
    snprintf(want, sizeof(want), "%s/sent", dir);
    CHECK(c.keep_sent_dir && strcmp(c.keep_sent_dir, want) == 0);
    agent_config_free(&c);
    agent_config_free(NULL);
}

#define HEAD "{\"device_id\":\"rec-1\",\"state_dir\":\"s\"," BROKER ","

static void test_bad(void)
{
    BAD("{", "invalid JSON");
    BAD("[]", "object");
    /* top level */
    BAD(HEAD "\"channels\":[" CHANNEL "],\"colour\":1}", "colour");
    BAD("{\"state_dir\":\"s\"," BROKER ",\"channels\":[" CHANNEL "]}", "device_id");
    BAD("{\"device_id\":\"-x\",\"state_dir\":\"s\"," BROKER ",\"channels\":[" CHANNEL "]}",
        "device_id");
    BAD("{\"device_id\":\"a/b\",\"state_dir\":\"s\"," BROKER ",\"channels\":[" CHANNEL "]}",
        "device_id");
    BAD("{\"device_id\":7,\"state_dir\":\"s\"," BROKER ",\"channels\":[" CHANNEL "]}", "device_id");
    BAD("{\"device_id\":\"r\"," BROKER ",\"channels\":[" CHANNEL "]}", "state_dir");
    BAD("{\"device_id\":\"r\",\"state_dir\":\"\"," BROKER ",\"channels\":[" CHANNEL "]}",
        "state_dir");
    BAD("{\"device_id\":\"r\",\"state_dir\":\"s\",\"channels\":[" CHANNEL "]}", "broker");
    BAD(HEAD "\"segment_seconds\":0,\"channels\":[" CHANNEL "]}", "segment_seconds");
    BAD(HEAD "\"segment_seconds\":601,\"channels\":[" CHANNEL "]}", "segment_seconds");
    BAD(HEAD "\"segment_seconds\":1.5,\"channels\":[" CHANNEL "]}", "segment_seconds");
    BAD(HEAD "\"chunk_bytes\":4095,\"channels\":[" CHANNEL "]}", "chunk_bytes");
    BAD(HEAD "\"chunk_bytes\":1048577,\"channels\":[" CHANNEL "]}", "chunk_bytes");
    BAD(HEAD "\"chunk_bytes\":\"big\",\"channels\":[" CHANNEL "]}", "chunk_bytes");
    BAD(HEAD "\"window_chunks\":0,\"channels\":[" CHANNEL "]}", "window_chunks");
    BAD(HEAD "\"window_chunks\":257,\"channels\":[" CHANNEL "]}", "window_chunks");
    BAD(HEAD "\"rate_limit_bps\":-1,\"channels\":[" CHANNEL "]}", "rate_limit_bps");
    BAD(HEAD "\"spool_max_bytes\":1048575,\"channels\":[" CHANNEL "]}", "spool_max_bytes");
    BAD(HEAD "\"ack_timeout_s\":0,\"channels\":[" CHANNEL "]}", "ack_timeout_s");
    BAD(HEAD "\"ack_timeout_s\":601,\"channels\":[" CHANNEL "]}", "ack_timeout_s");
    BAD(HEAD "\"keep_sent_dir\":false,\"channels\":[" CHANNEL "]}", "keep_sent_dir");
    /* broker */
    BAD("{\"device_id\":\"r\",\"state_dir\":\"s\",\"broker\":{\"cert_file\":\"c\","
        "\"key_file\":\"k\"},\"channels\":[" CHANNEL "]}",
        "broker", "ca_file");
    BAD("{\"device_id\":\"r\",\"state_dir\":\"s\",\"broker\":{\"ca_file\":\"\","
        "\"cert_file\":\"c\",\"key_file\":\"k\"},\"channels\":[" CHANNEL "]}",
        "broker", "ca_file");
    BAD("{\"device_id\":\"r\",\"state_dir\":\"s\",\"broker\":{\"ca_file\":\"a\","
        "\"cert_file\":\"c\",\"key_file\":\"k\",\"port\":0},\"channels\":[" CHANNEL "]}",
        "broker", "port");
    BAD("{\"device_id\":\"r\",\"state_dir\":\"s\",\"broker\":{\"ca_file\":\"a\","
        "\"cert_file\":\"c\",\"key_file\":\"k\",\"user\":\"x\"},\"channels\":[" CHANNEL "]}",
        "broker", "user");
    BAD("{\"device_id\":\"r\",\"state_dir\":\"s\",\"broker\":3,\"channels\":[" CHANNEL "]}",
        "broker");
    /* channels */
    BAD(HEAD "\"segment_seconds\":10}", "channels");
    BAD(HEAD "\"channels\":{}}", "channels");
    BAD(HEAD "\"channels\":[]}", "channels");
    {
        char big[8192];
        size_t n = (size_t)snprintf(big, sizeof(big), "%s", HEAD "\"channels\":[");
        for (int i = 0; i < AGENT_CHANNELS_MAX + 1; i++)
            n += (size_t)snprintf(big + n, sizeof(big) - n, "%s{\"id\":%d,\"source\":\"x\"}",
                                  i ? "," : "", i);
        snprintf(big + n, sizeof(big) - n, "]}");
        BAD(big, "channels");
    }
    BAD(HEAD "\"channels\":[3]}", "channels[0]");
    BAD(HEAD "\"channels\":[{\"source\":\"a\"}]}", "channels[0]", "id");
    BAD(HEAD "\"channels\":[{\"id\":-1,\"source\":\"a\"}]}", "channels[0]", "id");
    BAD(HEAD "\"channels\":[{\"id\":65536,\"source\":\"a\"}]}", "channels[0]", "id");
    BAD(HEAD "\"channels\":[" CHANNEL ",{\"id\":2,\"source\":\"b\"},{\"id\":1,\"source\":\"c\"}]}",
        "channels[2]", "id", "channels[0]");
    BAD(HEAD "\"channels\":[{\"id\":1}]}", "channels[0]", "source");
    BAD(HEAD "\"channels\":[{\"id\":1,\"source\":\"\"}]}", "channels[0]", "source");
    BAD(HEAD "\"channels\":[{\"id\":1,\"source\":5}]}", "channels[0]", "source");
    BAD(HEAD "\"channels\":[{\"id\":1,\"source\":\"a\",\"name\":1}]}", "channels[0]", "name");
    BAD(HEAD "\"channels\":[{\"id\":1,\"source\":\"a\",\"realtime\":1}]}", "channels[0]",
        "realtime");
    BAD(HEAD "\"channels\":[{\"id\":1,\"source\":\"a\",\"loop\":\"yes\"}]}", "channels[0]", "loop");
    BAD(HEAD "\"channels\":[{\"id\":1,\"source\":\"a\",\"fps\":25}]}", "channels[0]", "fps");

    /* A missing file names the file. */
    agent_config c;
    char err[C2D_ERRMSG_MAX];
    char missing[PATH_MAX + 16];
    snprintf(missing, sizeof(missing), "%s/nope.json", dir);
    CHECK(agent_config_load(missing, &c, err, sizeof(err)) != 0);
    CHECK(strstr(err, missing) != NULL);
}

static void test_url(void)
{
    CHECK(agent_source_is_url("rtsp://cam/1"));
    CHECK(agent_source_is_url("http://x"));
    CHECK(agent_source_is_url("udp:239.0.0.1:1234"));
    CHECK(!agent_source_is_url("media/ch1.ts"));
    CHECK(!agent_source_is_url("/data/ch1.ts"));
    CHECK(!agent_source_is_url("c:file"));
    CHECK(!agent_source_is_url("./a:b"));
    CHECK(!agent_source_is_url(""));
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/c2d-test-agent-config-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(cfg_path, sizeof(cfg_path), "%s/agent.json", dir);
    test_good();
    test_bad();
    test_url();
    unlink(cfg_path);
    rmdir(dir);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
