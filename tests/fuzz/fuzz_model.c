/* agent_model_load (agent/model.h), a recorder model file, on arbitrary
 * contents. The file is fz.json in a temporary directory (a model's name
 * must be its file's: the seeds say "model": "fz"); fuzz_agent_config's
 * memfd cannot reach a model, whose path is firmware_dir/<model>.json.
 *
 * Invariants: a load that succeeds gives a model inside every documented
 * bound (name "fz", vendor not empty, a known kind, 1..AGENT_CHANNELS_MAX
 * channels, a template with {channel} and no other braces that is a URL or
 * an absolute path, an absolute spool_dir, numbers in range), and
 * agent_model_source expands every channel 1..channels into a source with
 * no braces and no longer than the template, and refuses 0 and
 * channels + 1; a load that fails leaves *out as it was and gives an error
 * that starts with the file's name. Leaks either way are LSan's. */
#include "agent/config.h"
#include "agent/model.h"
#include "fuzz.h"
#include "fuzz_scratch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Model files are read as configuration files, up to 1 MiB. */
#define MODEL_INPUT_MAX ((1u << 20) + 16)

static char dir[256], path[300];

static void at_exit(void)
{
    unlink(path);
    rmdir(dir);
}

static void check_ok(const agent_model *m)
{
    FUZZ_ASSERT(strcmp(m->model, "fz") == 0 && agent_model_name_valid(m->model));
    FUZZ_ASSERT(m->vendor && m->vendor[0] != '\0');
    FUZZ_ASSERT(strcmp(m->kind, "dvr") == 0 || strcmp(m->kind, "nvr") == 0 ||
                strcmp(m->kind, "dashcam") == 0);
    FUZZ_ASSERT(m->channels >= 1 && m->channels <= AGENT_CHANNELS_MAX);
    const char *t = m->source_template;
    FUZZ_ASSERT(t && strstr(t, AGENT_MODEL_PLACEHOLDER) != NULL);
    FUZZ_ASSERT(agent_source_is_url(t) || t[0] == '/');
    FUZZ_ASSERT(m->spool_dir && m->spool_dir[0] == '/');
    FUZZ_ASSERT(m->spool_max_bytes >= AGENT_SPOOL_MIN_BYTES &&
                m->spool_max_bytes <= AGENT_JSON_INT_MAX);
    FUZZ_ASSERT(m->segment_seconds >= 1 && m->segment_seconds <= AGENT_SEGMENT_SECONDS_MAX);
    FUZZ_ASSERT(m->cpu_percent >= 1 && m->cpu_percent <= 100);
    FUZZ_ASSERT(m->memory_kib >= 1024 && m->memory_kib <= (4LL << 20));
    char *s = (char *)&s;
    FUZZ_ASSERT(agent_model_source(m, 0, &s) == -EINVAL && s == (char *)&s);
    FUZZ_ASSERT(agent_model_source(m, m->channels + 1, &s) == -EINVAL && s == (char *)&s);
    for (int64_t ch = 1; ch <= m->channels; ch++) {
        FUZZ_ASSERT(agent_model_source(m, ch, &s) == 0);
        FUZZ_ASSERT(strlen(s) <= strlen(t) && !strchr(s, '{') && !strchr(s, '}'));
        char num[24];
        snprintf(num, sizeof(num), "%lld", (long long)ch);
        FUZZ_ASSERT(strstr(s, num) != NULL);
        free(s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MODEL_INPUT_MAX)
        return 0;
    if (!dir[0]) {
        fuzz_scratch_dir("c2d-fuzz-model", dir, sizeof(dir));
        snprintf(path, sizeof(path), "%s/fz.json", dir);
        atexit(at_exit);
    }
    FILE *f = fopen(path, "wb");
    FUZZ_ASSERT(f && (size == 0 || fwrite(data, 1, size, f) == size) && fclose(f) == 0);

    agent_model m, pattern;
    memset(&pattern, 0xa5, sizeof(pattern));
    memcpy(&m, &pattern, sizeof(m));
    char err[512];
    memset(err, 0, sizeof(err));
    if (agent_model_load(path, &m, err, sizeof(err)) == 0) {
        check_ok(&m);
        agent_model_free(&m);
        agent_model_free(NULL);
        return 0;
    }
    FUZZ_ASSERT(memcmp(&m, &pattern, sizeof(m)) == 0);
    size_t plen = strlen(path);
    FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL);
    FUZZ_ASSERT(strncmp(err, path, plen) == 0 && err[plen] == ':' && err[plen + 1] == ' ');
    return 0;
}
