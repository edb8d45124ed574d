/* c2d-agent configuration: one JSON file, loaded by a table of keys (see
 * common/c2d_config.h and docs/components.md). Unknown keys are errors and
 * every error names the file and the key.
 *
 * "model" names a recorder model file (<firmware_dir>/<model>.json, see
 * agent/model.h) that supplies defaults: segment_seconds, spool_max_bytes,
 * state_dir (its spool_dir) and, without "channels", channels 1..N with the
 * model's sources. The configuration's own keys override them.
 *
 * Relative paths (broker certificates, state_dir, keep_sent_dir, and
 * channel sources that are not URLs) are resolved against the directory of
 * the configuration file, so the agent behaves the same whatever its
 * working directory (an init script runs it from /). */
#ifndef AGENT_CONFIG_H
#define AGENT_CONFIG_H

#include "common/c2d_config.h"

#include <stddef.h>
#include <stdint.h>

/* A recorder has at most this many camera channels; the state message and
 * the uploader's per-channel tables are sized by it. */
#define AGENT_CHANNELS_MAX 64

/* Bounds shared by the configuration and the model files. */
#define AGENT_SEGMENT_SECONDS_MAX 600 /* longer segments lose too much on a power cut */
#define AGENT_SPOOL_MIN_BYTES (1LL << 20)
/* Integers a JSON number carries exactly; beyond that a value is a typo. */
#define AGENT_JSON_INT_MAX (1LL << 53)
/* Seconds between two state messages when nothing changes (the
 * controller's offline_after_s default, 90, is several of these). */
#define AGENT_STATE_INTERVAL_S_DEFAULT 10

/* Where model files are looked up when firmware_dir is not given. */
#define AGENT_FIRMWARE_DIR_DEFAULT "/usr/share/c2d/firmware-configs"

typedef struct {
    int64_t id; /* 0..65535, unique */
    char *name; /* "" if not given */
    char *source;
    int realtime;
    int loop;
} agent_channel_conf;

typedef struct {
    char *device_id;
    char *state_dir;
    c2d_broker_cfg broker; /* client_id defaults to device_id */
    int64_t segment_seconds;
    int64_t chunk_bytes;
    int64_t window_chunks;
    int64_t rate_limit_bps;
    int64_t spool_max_bytes;
    int64_t ack_timeout_s;
    char *keep_sent_dir; /* NULL when not set or "" */
    char *model;         /* NULL when not set or "" */
    char *firmware_dir;  /* absolute; where "model" was looked up */
    /* The model's budget (informational for now: status and the wizard);
     * 0 without a model. */
    int64_t budget_cpu_percent;
    int64_t budget_memory_kib;
    /* State message (issue 5): heartbeat period, and the recorder's own
     * retention reported for the controller's spool_age alarm (0: not
     * reported). */
    int64_t state_interval_s; /* default AGENT_STATE_INTERVAL_S_DEFAULT */
    int64_t recorder_retention_s;
    agent_channel_conf *channels;
    size_t n_channels;
    /* Pairing (docs/pairing.md): with "serial" the device id and the broker
     * come from the identity agent_pair stored in state_dir; "broker" and
     * "device_id" must then be absent. */
    char *serial;       /* NULL: not a pairing configuration */
    char *pairing_code; /* NULL when not set or "" */
    char *pairing_host; /* the pairing listener */
    int64_t pairing_port;
    char *pairing_ca_file; /* verifies the broker (ca.crt) */
    int unpaired;          /* serial set and no identity yet: device_id and broker empty */
    /* Certificate renewal (agent/renew.h): renew this many seconds before
     * notAfter; 0: in the last third of the certificate's lifetime. */
    int64_t renew_before_s;
    /* Not JSON keys: set only by embedders (the fleet simulator) and by
     * c2d-agent from the environment (C2D_TEST_CORRUPT_CHUNKS), zero after
     * agent_config_load. */
    /* Test hook: damages this many per mille of chunk frames after they
     * leave the spool (the spool file is untouched), to test the
     * controller's checks: 0 the CRC no longer matches (bad_crc), 1
     * (test_corrupt_content) the payload changes with a valid CRC, so only
     * the segment's SHA-256 catches it (hash_mismatch). 0: off. */
    int64_t test_corrupt_permille; /* 0..1000 */
    int test_corrupt_content;
    /* Realtime pacing factor for every realtime channel (4: 4x faster than
     * the recording); 0 means 1. */
    double realtime_speed;
} agent_config;

/* Loads and validates path into *out (written only on success). Returns 0,
 * or -1 with err filled ("FILE: KEY: why"). Call agent_config_free on
 * success only. */
int agent_config_load(const char *path, agent_config *out, char *err, size_t errlen);

/* Frees everything a successful load allocated. NULL is a no-op. */
void agent_config_free(agent_config *cfg);

/* Sets the test hook's fields from "crc:N" or "content:N" (N per mille of
 * chunk frames, 0..1000; the value of C2D_TEST_CORRUPT_CHUNKS). Returns 0,
 * or -EINVAL (cfg unchanged) for anything else. */
int agent_config_set_test_corrupt(agent_config *cfg, const char *spec);

/* 1 if source is a URL ("scheme:..."), which is passed to libavformat as is
 * and never resolved against the configuration directory. */
int agent_source_is_url(const char *source);

#endif
