/* The topic parsers and builders of proto/topic.c on arbitrary strings
 * (MQTT topics hold no NUL, so the input is cut at the first one), both
 * namespaces: c2d/v1/d/{device}/{kind} and c2d/v1/pair/{serial}/{kind}.
 * Invariants:
 *   - an accepted topic names a valid id (alphabet, length, no '/'), never
 *     a reserved one where a certificate is at stake (csr, cert, pairing),
 *     and formatting it again gives back the exact topic;
 *   - a refusal is C2D_ERR_TOPIC or C2D_ERR_NAME and writes nothing;
 *   - the parser accepts exactly what the builder can write: the text
 *     between the prefix and the last '/' is taken as the id, and the topic
 *     is accepted iff one kind's topic for that id is the input;
 *   - the input as an id: the builder writes a topic for it iff the id is
 *     valid (and not reserved for the certificate kinds), and that topic
 *     parses back to the same id and kind;
 *   - no topic is accepted by both namespaces. */
#include "fuzz.h"
#include "proto/c2d_proto.h"

#include <string.h>

/* Longer than any valid topic, so the length checks are reached. */
#define TOPIC_INPUT_MAX 512

static const c2d_topic_kind device_kinds[] = {
    C2D_TOPIC_SEG, C2D_TOPIC_ACK, C2D_TOPIC_CFG,  C2D_TOPIC_STATE,
    C2D_TOPIC_EVT, C2D_TOPIC_CSR, C2D_TOPIC_CERT,
};
static const c2d_pair_kind pair_kinds[] = {C2D_PAIR_REQ, C2D_PAIR_RESP};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int certifies(c2d_topic_kind k)
{
    return k == C2D_TOPIC_CSR || k == C2D_TOPIC_CERT;
}

static void check_id(const char *id, int reserved_ok)
{
    FUZZ_ASSERT(c2d_device_id_valid(id));
    FUZZ_ASSERT(strlen(id) >= 1 && strlen(id) <= C2D_DEVICE_ID_MAX);
    FUZZ_ASSERT(strcmp(id, ".") != 0 && strcmp(id, "..") != 0);
    FUZZ_ASSERT(strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") ==
                strlen(id));
    FUZZ_ASSERT(id[0] != '.' && id[0] != '-');
    FUZZ_ASSERT(reserved_ok || !c2d_id_reserved(id));
}

/* The id candidate of topic under prefix: the text up to the last '/'.
 * 0 if topic is not under prefix or the candidate does not fit. */
static int candidate(const char *topic, const char *prefix, char *id, size_t cap)
{
    size_t plen = strlen(prefix);
    if (strncmp(topic, prefix, plen) != 0)
        return 0;
    const char *last = strrchr(topic + plen, '/');
    if (!last || (size_t)(last - topic) - plen >= cap)
        return 0;
    size_t n = (size_t)(last - topic) - plen;
    memcpy(id, topic + plen, n);
    id[n] = '\0';
    return 1;
}

static void device_ns(const char *topic)
{
    char device[C2D_DEVICE_ID_MAX + 1] = "unchanged";
    c2d_topic_kind kind = (c2d_topic_kind)77;
    c2d_status st = c2d_topic_parse(topic, device, &kind);
    if (st != C2D_OK) {
        FUZZ_ASSERT(st == C2D_ERR_TOPIC || st == C2D_ERR_NAME);
        FUZZ_ASSERT(strcmp(device, "unchanged") == 0 && kind == (c2d_topic_kind)77);
    } else {
        check_id(device, !certifies(kind));
        char again[C2D_TOPIC_MAX];
        FUZZ_ASSERT(c2d_topic_format(again, sizeof(again), device, kind) == C2D_OK);
        FUZZ_ASSERT(strcmp(again, topic) == 0);
    }

    /* The oracle: accepted iff some kind's topic for the candidate id is
     * the input. */
    char id[TOPIC_INPUT_MAX + 1], t[C2D_TOPIC_MAX];
    int want = 0;
    c2d_topic_kind want_kind = C2D_TOPIC_SEG;
    if (candidate(topic, "c2d/v1/d/", id, sizeof(id))) {
        for (size_t i = 0; i < N(device_kinds); i++) {
            if (c2d_topic_format(t, sizeof(t), id, device_kinds[i]) == C2D_OK &&
                strcmp(t, topic) == 0) {
                want = 1;
                want_kind = device_kinds[i];
            }
        }
    }
    FUZZ_ASSERT(want == (st == C2D_OK));
    FUZZ_ASSERT(!want || (kind == want_kind && strcmp(device, id) == 0));
}

static void pair_ns(const char *topic)
{
    char serial[C2D_DEVICE_ID_MAX + 1] = "unchanged";
    c2d_pair_kind kind = (c2d_pair_kind)77;
    c2d_status st = c2d_pair_topic_parse(topic, serial, &kind);
    if (st != C2D_OK) {
        FUZZ_ASSERT(st == C2D_ERR_TOPIC || st == C2D_ERR_NAME);
        FUZZ_ASSERT(strcmp(serial, "unchanged") == 0 && kind == (c2d_pair_kind)77);
    } else {
        check_id(serial, 0);
        char again[C2D_TOPIC_MAX];
        FUZZ_ASSERT(c2d_pair_topic_format(again, sizeof(again), serial, kind) == C2D_OK);
        FUZZ_ASSERT(strcmp(again, topic) == 0);
    }

    char id[TOPIC_INPUT_MAX + 1], t[C2D_TOPIC_MAX];
    int want = 0;
    c2d_pair_kind want_kind = C2D_PAIR_REQ;
    if (candidate(topic, "c2d/v1/pair/", id, sizeof(id))) {
        for (size_t i = 0; i < N(pair_kinds); i++) {
            if (c2d_pair_topic_format(t, sizeof(t), id, pair_kinds[i]) == C2D_OK &&
                strcmp(t, topic) == 0) {
                want = 1;
                want_kind = pair_kinds[i];
            }
        }
    }
    FUZZ_ASSERT(want == (st == C2D_OK));
    FUZZ_ASSERT(!want || (kind == want_kind && strcmp(serial, id) == 0));
}

/* The input as an id, through every builder and back. */
static void as_id(const char *id)
{
    int valid = c2d_device_id_valid(id), reserved = c2d_id_reserved(id);
    char t[C2D_TOPIC_MAX], back[C2D_DEVICE_ID_MAX + 1];
    for (size_t i = 0; i < N(device_kinds); i++) {
        c2d_topic_kind k;
        c2d_status st = c2d_topic_format(t, sizeof(t), id, device_kinds[i]);
        FUZZ_ASSERT((st == C2D_OK) == (valid && !(reserved && certifies(device_kinds[i]))));
        FUZZ_ASSERT(st == C2D_OK || st == C2D_ERR_NAME);
        if (st != C2D_OK)
            continue;
        FUZZ_ASSERT(c2d_topic_parse(t, back, &k) == C2D_OK);
        FUZZ_ASSERT(k == device_kinds[i] && strcmp(back, id) == 0);
    }
    for (size_t i = 0; i < N(pair_kinds); i++) {
        c2d_pair_kind k;
        c2d_status st = c2d_pair_topic_format(t, sizeof(t), id, pair_kinds[i]);
        FUZZ_ASSERT((st == C2D_OK) == (valid && !reserved));
        FUZZ_ASSERT(st == C2D_OK || st == C2D_ERR_NAME);
        if (st != C2D_OK)
            continue;
        FUZZ_ASSERT(c2d_pair_topic_parse(t, back, &k) == C2D_OK);
        FUZZ_ASSERT(k == pair_kinds[i] && strcmp(back, id) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char topic[TOPIC_INPUT_MAX + 1];
    if (size > TOPIC_INPUT_MAX)
        size = TOPIC_INPUT_MAX;
    if (size)
        memcpy(topic, data, size);
    topic[size] = '\0';

    device_ns(topic);
    pair_ns(topic);
    as_id(topic);

    /* The namespaces are disjoint. */
    char a[C2D_DEVICE_ID_MAX + 1], b[C2D_DEVICE_ID_MAX + 1];
    c2d_topic_kind k;
    c2d_pair_kind pk;
    FUZZ_ASSERT(c2d_topic_parse(topic, a, &k) != C2D_OK ||
                c2d_pair_topic_parse(topic, b, &pk) != C2D_OK);
    return 0;
}
