/* The common configuration path on arbitrary bytes: c2d_cfg_parse_file
 * (through a memfd, so no disk is touched), c2d_cfg_apply with a table that
 * has every field type and extreme bounds, and c2d_broker_cfg_load on the
 * "broker" object. Invariants: success yields values inside their bounds,
 * failure yields an error message, and nothing leaks either way. */
#include "common/c2d_config.h"
#include "fuzz.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    char *name;
    char *path;
    int64_t small;
    int64_t wide;
    int64_t negative;
    int flag;
} sample_cfg;

#define SF(key, type, field, req, min, max, di, ds)                                                \
    {                                                                                              \
        key, type, offsetof(sample_cfg, field), req, min, max, di, ds                              \
    }
static const c2d_cfg_field sample_fields[] = {
    SF("name", C2D_CFG_STRING, name, 1, 0, 0, 0, NULL),
    SF("path", C2D_CFG_STRING, path, 0, 0, 0, 0, "/var/lib/c2d"),
    SF("small", C2D_CFG_INT, small, 0, 1, 10, 5, NULL),
    SF("wide", C2D_CFG_INT, wide, 0, INT64_MIN, INT64_MAX, 0, NULL),
    SF("negative", C2D_CFG_INT, negative, 0, -1000, -1, -1, NULL),
    SF("flag", C2D_CFG_BOOL, flag, 0, 0, 0, 0, NULL),
    SF("broker", C2D_CFG_SKIP, name, 0, 0, 0, 0, NULL),
    SF("channels", C2D_CFG_SKIP, name, 0, 0, 0, 0, NULL),
};
#define N_SAMPLE (sizeof(sample_fields) / sizeof(sample_fields[0]))

/* Config files over 1 MiB are refused before parsing; stay just above. */
#define CONFIG_INPUT_MAX ((1u << 20) + 16)

static int memfd = -1;
static char memfd_path[64];

static void check_cfg(const cJSON *root)
{
    char err[C2D_ERRMSG_MAX] = "";
    sample_cfg c;
    memset(&c, 0, sizeof(c));
    if (c2d_cfg_apply(root, "fuzz.json", sample_fields, N_SAMPLE, &c, err, sizeof(err)) == 0) {
        FUZZ_ASSERT(c.name != NULL && c.path != NULL);
        FUZZ_ASSERT(c.small >= 1 && c.small <= 10);
        FUZZ_ASSERT(c.negative >= -1000 && c.negative <= -1);
        FUZZ_ASSERT(c.flag == 0 || c.flag == 1);
    } else {
        FUZZ_ASSERT(strncmp(err, "fuzz.json", 9) == 0);
    }
    c2d_cfg_free_strings(sample_fields, N_SAMPLE, &c);

    c2d_broker_cfg b;
    err[0] = '\0';
    if (c2d_broker_cfg_load(cJSON_GetObjectItemCaseSensitive(root, "broker"), "fuzz.json", &b, err,
                            sizeof(err)) == 0) {
        FUZZ_ASSERT(b.host && b.ca_file && b.cert_file && b.key_file);
        FUZZ_ASSERT(b.port >= 1 && b.port <= 65535);
        FUZZ_ASSERT(b.keepalive_s >= 5 && b.keepalive_s <= 3600);
        c2d_broker_cfg_free(&b);
    } else {
        FUZZ_ASSERT(strncmp(err, "fuzz.json", 9) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > CONFIG_INPUT_MAX)
        return 0;
    if (memfd < 0) {
        memfd = memfd_create("fuzz_config", MFD_CLOEXEC);
        FUZZ_ASSERT(memfd >= 0);
        snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
    }
    FUZZ_ASSERT(ftruncate(memfd, 0) == 0);
    FUZZ_ASSERT(size == 0 || pwrite(memfd, data, size, 0) == (ssize_t)size);

    char err[C2D_ERRMSG_MAX] = "";
    cJSON *root = c2d_cfg_parse_file(memfd_path, err, sizeof(err));
    if (!root) {
        FUZZ_ASSERT(strncmp(err, memfd_path, strlen(memfd_path)) == 0);
        return 0;
    }
    FUZZ_ASSERT(cJSON_IsObject(root));
    check_cfg(root);
    cJSON_Delete(root);
    return 0;
}
