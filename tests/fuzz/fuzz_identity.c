/* agent_identity_load (agent/pair.h) on arbitrary contents of
 * state_dir/identity/identity.json, the file a pairing or a renewal wrote
 * and a crash or a bad disk may have damaged. The state directory is a
 * temporary one (fuzz_scratch.h).
 *
 * Invariants: the result is 0, -EBADMSG or -EFBIG (a file over the 4 KiB
 * read limit); a failure leaves *out as it was. An identity that loads has
 * a valid device id, a host of 1..255 bytes and a port 1..65535, and
 * written back as agent_identity_store writes it, loads the same. */
#include "agent/pair.h"
#include "fuzz.h"
#include "fuzz_scratch.h"
#include "proto/c2d_proto.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IDENTITY_INPUT_MAX 8192

static char dir[256], sub[300], path[400];

static void at_exit(void)
{
    unlink(path);
    rmdir(sub);
    rmdir(dir);
}

static void put(const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    FUZZ_ASSERT(f && (size == 0 || fwrite(data, 1, size, f) == size) && fclose(f) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > IDENTITY_INPUT_MAX)
        return 0;
    if (!dir[0]) {
        fuzz_scratch_dir("c2d-fuzz-identity", dir, sizeof(dir));
        snprintf(sub, sizeof(sub), "%s/%s", dir, AGENT_IDENTITY_DIR);
        snprintf(path, sizeof(path), "%s/%s", sub, AGENT_IDENTITY_JSON);
        FUZZ_ASSERT(mkdir(sub, 0700) == 0);
        atexit(at_exit);
    }
    put(data, size);

    agent_identity id, pattern;
    memset(&pattern, 0xa5, sizeof(pattern));
    memcpy(&id, &pattern, sizeof(id));
    int rc = agent_identity_load(dir, &id);
    if (rc != 0) {
        FUZZ_ASSERT(rc == -EBADMSG || (rc == -EFBIG && size > 4096));
        FUZZ_ASSERT(memcmp(&id, &pattern, sizeof(id)) == 0);
        return 0;
    }
    FUZZ_ASSERT(c2d_device_id_valid(id.device_id));
    size_t hl = strnlen(id.host, sizeof(id.host));
    FUZZ_ASSERT(hl >= 1 && hl < sizeof(id.host));
    FUZZ_ASSERT(id.port >= 1 && id.port <= 65535);

    /* As agent/pair.c's store writes it. */
    cJSON *j = cJSON_CreateObject(), *b = cJSON_AddObjectToObject(j, "broker");
    FUZZ_ASSERT(b && cJSON_AddStringToObject(j, "device_id", id.device_id) &&
                cJSON_AddStringToObject(b, "host", id.host) &&
                cJSON_AddNumberToObject(b, "port", (double)id.port));
    char *text = cJSON_PrintUnformatted(j);
    FUZZ_ASSERT(text);
    cJSON_Delete(j);
    agent_identity again;
    if (strlen(text) <= 4096) { /* escaping may make it longer */
        put(text, strlen(text));
        FUZZ_ASSERT(agent_identity_load(dir, &again) == 0);
        FUZZ_ASSERT(memcmp(&again, &id, sizeof(id)) == 0);
    }
    free(text);
    return 0;
}
