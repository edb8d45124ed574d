/* c2d_topic_parse on arbitrary strings (MQTT topics hold no NUL, so the
 * input is cut at the first one). Invariants: an accepted topic names a
 * valid device id, and formatting it again gives back the exact topic. */
#include "fuzz.h"
#include "proto/c2d_proto.h"

#include <string.h>

/* Longer than any valid topic, so the length checks are reached. */
#define TOPIC_INPUT_MAX 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char topic[TOPIC_INPUT_MAX + 1];
    if (size > TOPIC_INPUT_MAX)
        size = TOPIC_INPUT_MAX;
    if (size)
        memcpy(topic, data, size);
    topic[size] = '\0';

    char device[C2D_DEVICE_ID_MAX + 1];
    c2d_topic_kind kind;
    c2d_status st = c2d_topic_parse(topic, device, &kind);
    if (st != C2D_OK) {
        FUZZ_ASSERT(st == C2D_ERR_TOPIC || st == C2D_ERR_NAME);
        return 0;
    }
    FUZZ_ASSERT(c2d_device_id_valid(device));
    FUZZ_ASSERT(strlen(device) <= C2D_DEVICE_ID_MAX);
    FUZZ_ASSERT(strcmp(device, ".") != 0 && strcmp(device, "..") != 0);
    FUZZ_ASSERT(strchr(device, '/') == NULL);
    char again[C2D_TOPIC_MAX];
    FUZZ_ASSERT(c2d_topic_format(again, sizeof(again), device, kind) == C2D_OK);
    FUZZ_ASSERT(strcmp(again, topic) == 0);
    return 0;
}
