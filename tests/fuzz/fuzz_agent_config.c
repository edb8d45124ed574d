/* agent_config_load on arbitrary file contents, written to a memfd so no
 * disk is touched (the file is /proc/self/fd/N; relative paths resolve
 * against /proc/<pid>/fd and are never opened by the loader).
 *
 * Invariants: a successful load returns a configuration inside every
 * documented bound (valid device id, absolute paths, 1..AGENT_CHANNELS_MAX
 * channels with unique ids, client_id defaulted) and agent_config_free
 * releases all of it; a failed load returns -1 with an error that starts with
 * the file's name and says why, and leaves *out untouched.
 * Leaks either way are LSan's to report. */
#include "agent/config.h"
#include "fuzz.h"
#include "proto/c2d_proto.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Configuration files over 1 MiB are refused before parsing; stay just
 * above. */
#define CONFIG_INPUT_MAX ((1u << 20) + 16)

static int memfd = -1;
static char memfd_path[64];

static int absolute(const char *p)
{
    return p && p[0] == '/';
}

static void check_ok(const agent_config *c)
{
    FUZZ_ASSERT(c->device_id && c2d_device_id_valid(c->device_id));
    FUZZ_ASSERT(absolute(c->state_dir));
    FUZZ_ASSERT(c->broker.host && c->broker.host[0] != '\0');
    FUZZ_ASSERT(c->broker.port >= 1 && c->broker.port <= 65535);
    FUZZ_ASSERT(c->broker.keepalive_s >= 5 && c->broker.keepalive_s <= 3600);
    FUZZ_ASSERT(absolute(c->broker.ca_file) && absolute(c->broker.cert_file) &&
                absolute(c->broker.key_file));
    FUZZ_ASSERT(c->broker.client_id && c->broker.client_id[0] != '\0');
    FUZZ_ASSERT(c->segment_seconds >= 1 && c->segment_seconds <= 600);
    FUZZ_ASSERT(c->chunk_bytes >= 4096 && c->chunk_bytes <= (int64_t)C2D_CHUNK_MAX);
    FUZZ_ASSERT(c->window_chunks >= 1 && c->window_chunks <= 256);
    FUZZ_ASSERT(c->rate_limit_bps >= 0 && c->rate_limit_bps <= (INT64_C(1) << 53));
    FUZZ_ASSERT(c->spool_max_bytes >= (INT64_C(1) << 20) &&
                c->spool_max_bytes <= (INT64_C(1) << 53));
    FUZZ_ASSERT(c->ack_timeout_s >= 1 && c->ack_timeout_s <= 600);
    FUZZ_ASSERT(c->keep_sent_dir == NULL || absolute(c->keep_sent_dir));
    FUZZ_ASSERT(c->channels != NULL);
    FUZZ_ASSERT(c->n_channels >= 1 && c->n_channels <= AGENT_CHANNELS_MAX);
    for (size_t i = 0; i < c->n_channels; i++) {
        const agent_channel_conf *ch = &c->channels[i];
        FUZZ_ASSERT(ch->id >= 0 && ch->id <= 65535);
        for (size_t j = 0; j < i; j++)
            FUZZ_ASSERT(c->channels[j].id != ch->id);
        FUZZ_ASSERT(ch->name != NULL);
        FUZZ_ASSERT(ch->source && ch->source[0] != '\0');
        FUZZ_ASSERT(agent_source_is_url(ch->source) || absolute(ch->source));
        FUZZ_ASSERT(ch->realtime == 0 || ch->realtime == 1);
        FUZZ_ASSERT(ch->loop == 0 || ch->loop == 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > CONFIG_INPUT_MAX)
        return 0;
    if (memfd < 0) {
        memfd = memfd_create("fuzz_agent_config", MFD_CLOEXEC);
        FUZZ_ASSERT(memfd >= 0);
        snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
    }
    FUZZ_ASSERT(ftruncate(memfd, 0) == 0);
    FUZZ_ASSERT(size == 0 || pwrite(memfd, data, size, 0) == (ssize_t)size);

    /* Output parameters are written only on success: fill with a pattern
     * and check it survives a failure. */
    agent_config cfg, pattern;
    memset(&pattern, 0xa5, sizeof(pattern));
    memcpy(&cfg, &pattern, sizeof(cfg));
    char err[C2D_ERRMSG_MAX];
    memset(err, 0, sizeof(err));
    if (agent_config_load(memfd_path, &cfg, err, sizeof(err)) == 0) {
        check_ok(&cfg);
        agent_config_free(&cfg);
        FUZZ_ASSERT(cfg.channels == NULL && cfg.n_channels == 0);
        agent_config_free(NULL);
        return 0;
    }
    FUZZ_ASSERT(memcmp(&cfg, &pattern, sizeof(cfg)) == 0);
    /* "FILE: why" or "FILE: KEY: why", NUL terminated within err. */
    size_t plen = strlen(memfd_path);
    FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL);
    FUZZ_ASSERT(strncmp(err, memfd_path, plen) == 0);
    FUZZ_ASSERT(err[plen] == ':' && err[plen + 1] == ' ' && err[plen + 2] != '\0');
    return 0;
}
