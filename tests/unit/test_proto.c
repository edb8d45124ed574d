/* Unit tests for proto/: topics, chunk frames and control messages. */
#include "check.h"
#include "proto/c2d_proto.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_ST(expr, want)                                                                       \
    do {                                                                                           \
        c2d_status got_ = (expr);                                                                  \
        c2d_status want_ = (want);                                                                 \
        if (got_ != want_) {                                                                       \
            fprintf(stderr, "%s:%d: %s is %s, want %s\n", __FILE__, __LINE__, #expr,               \
                    c2d_reason(got_), c2d_reason(want_));                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA63 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85"
#define SHA_UP "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
#define SHA_G "g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define R63 "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"
#define R64 R63 "r"

static const char sha_a[] = SHA;

/* ---- Topics ------------------------------------------------------------ */

static void test_device_id(void)
{
    char id64[C2D_DEVICE_ID_MAX + 1], id65[C2D_DEVICE_ID_MAX + 2];
    memset(id64, 'a', C2D_DEVICE_ID_MAX);
    id64[C2D_DEVICE_ID_MAX] = '\0';
    memset(id65, 'b', C2D_DEVICE_ID_MAX + 1);
    id65[C2D_DEVICE_ID_MAX + 1] = '\0';

    CHECK(c2d_device_id_valid("cam-01"));
    CHECK(c2d_device_id_valid("a"));
    CHECK(c2d_device_id_valid("Rec_9.x-y"));
    CHECK(c2d_device_id_valid("_x"));
    CHECK(c2d_device_id_valid("a..b"));
    CHECK(c2d_device_id_valid("x-"));
    CHECK(c2d_device_id_valid(id64));

    CHECK(!c2d_device_id_valid(NULL));
    CHECK(!c2d_device_id_valid(""));
    CHECK(!c2d_device_id_valid("."));
    CHECK(!c2d_device_id_valid(".."));
    CHECK(!c2d_device_id_valid(".hidden"));
    CHECK(!c2d_device_id_valid("-x"));
    CHECK(!c2d_device_id_valid("--help"));
    CHECK(!c2d_device_id_valid(id65));
    CHECK(!c2d_device_id_valid("a/b"));
    CHECK(!c2d_device_id_valid("../x"));
    CHECK(!c2d_device_id_valid("a b"));
    CHECK(!c2d_device_id_valid("a+"));
    CHECK(!c2d_device_id_valid("a#"));
    CHECK(!c2d_device_id_valid("caf\xc3\xa9"));
    CHECK(!c2d_device_id_valid("a\\b"));
    CHECK(!c2d_device_id_valid("a\nb"));
}

static void test_topic_parse(void)
{
    static const struct {
        const char *topic;
        c2d_topic_kind kind;
    } ok[] = {
        {"c2d/v1/d/cam-01/seg", C2D_TOPIC_SEG},   {"c2d/v1/d/cam-01/ack", C2D_TOPIC_ACK},
        {"c2d/v1/d/cam-01/cfg", C2D_TOPIC_CFG},   {"c2d/v1/d/cam-01/state", C2D_TOPIC_STATE},
        {"c2d/v1/d/cam-01/evt", C2D_TOPIC_EVT},   {"c2d/v1/d/cam-01/csr", C2D_TOPIC_CSR},
        {"c2d/v1/d/cam-01/cert", C2D_TOPIC_CERT},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char dev[C2D_DEVICE_ID_MAX + 1] = "";
        c2d_topic_kind kind = (c2d_topic_kind)-1;
        CHECK_ST(c2d_topic_parse(ok[i].topic, dev, &kind), C2D_OK);
        CHECK(strcmp(dev, "cam-01") == 0);
        CHECK(kind == ok[i].kind);
    }

    char topic[256], dev[C2D_DEVICE_ID_MAX + 1];
    c2d_topic_kind kind;
    char id[C2D_DEVICE_ID_MAX + 2];
    memset(id, 'z', sizeof(id) - 1);
    id[C2D_DEVICE_ID_MAX] = '\0';
    snprintf(topic, sizeof(topic), "c2d/v1/d/%s/seg", id);
    CHECK_ST(c2d_topic_parse(topic, dev, &kind), C2D_OK);
    CHECK(strcmp(dev, id) == 0);
    id[C2D_DEVICE_ID_MAX] = 'z';
    id[C2D_DEVICE_ID_MAX + 1] = '\0';
    snprintf(topic, sizeof(topic), "c2d/v1/d/%s/seg", id);
    CHECK_ST(c2d_topic_parse(topic, dev, &kind), C2D_ERR_NAME);

    static const struct {
        const char *topic;
        c2d_status want;
    } bad[] = {
        {"", C2D_ERR_TOPIC},
        {"c2d/v1/d/", C2D_ERR_TOPIC},
        {"c2d/v1/d//seg", C2D_ERR_TOPIC},
        {"c2d/v1/d/cam", C2D_ERR_TOPIC},
        {"c2d/v1/d/cam/", C2D_ERR_TOPIC},
        {"c2d/v1/d/cam/seg/", C2D_ERR_TOPIC},
        {"c2d/v1/d/cam/seg/x", C2D_ERR_TOPIC},
        {"c2d/v1/d/a/b/seg", C2D_ERR_TOPIC},
        {"c2d/v1/d/cam/SEG", C2D_ERR_TOPIC},
        {"c2d/v1/d/cam/segx", C2D_ERR_TOPIC},
        {"c2d/v1/d/cam/se", C2D_ERR_TOPIC},
        {"c2d/v1/d/cam/#", C2D_ERR_TOPIC},
        {"c2d/v2/d/cam/seg", C2D_ERR_TOPIC},
        {"C2D/v1/d/cam/seg", C2D_ERR_TOPIC},
        {"/c2d/v1/d/cam/seg", C2D_ERR_TOPIC},
        {"c2d/v1/pair/cam/req", C2D_ERR_TOPIC},
        {"c2d/v1/d/../seg", C2D_ERR_NAME},
        {"c2d/v1/d/./seg", C2D_ERR_NAME},
        {"c2d/v1/d/-x/seg", C2D_ERR_NAME},
        {"c2d/v1/d/.cam/ack", C2D_ERR_NAME},
        {"c2d/v1/d/ca m/seg", C2D_ERR_NAME},
        {"c2d/v1/d/+/seg", C2D_ERR_NAME},
        {"c2d/v1/d/#/seg", C2D_ERR_NAME},
        {"c2d/v1/d/caf\xc3\xa9/seg", C2D_ERR_NAME},
        /* csr and cert lead to a certificate for the id: never a reserved one */
        {"c2d/v1/d/c2d-controller/csr", C2D_ERR_NAME},
        {"c2d/v1/d/C2D-x/csr", C2D_ERR_NAME},
        {"c2d/v1/d/c2D-/cert", C2D_ERR_NAME},
        {"c2d/v1/d/a/b/csr", C2D_ERR_TOPIC},
        {"c2d/v1/d//csr", C2D_ERR_TOPIC},
        {"c2d/v1/d/+/csr", C2D_ERR_NAME},
        {"c2d/v1/d/rec-1/csr/", C2D_ERR_TOPIC},
        {"c2d/v1/d/rec-1/CSR", C2D_ERR_TOPIC},
        {"c2d/v1/d/rec-1/certs", C2D_ERR_TOPIC},
        {"c2d/v1/pair/rec-1/csr", C2D_ERR_TOPIC},
        {"c2d/v1/d/rec-1/req", C2D_ERR_TOPIC},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[C2D_DEVICE_ID_MAX + 1];
        memcpy(out, "untouched", 10);
        kind = (c2d_topic_kind)42;
        c2d_status st = c2d_topic_parse(bad[i].topic, out, &kind);
        if (st != bad[i].want) {
            fprintf(stderr, "topic \"%s\": %s, want %s\n", bad[i].topic, c2d_reason(st),
                    c2d_reason(bad[i].want));
            failures++;
        }
        /* Outputs are written only on success. */
        CHECK(strcmp(out, "untouched") == 0);
        CHECK(kind == (c2d_topic_kind)42);
    }
    CHECK_ST(c2d_topic_parse(NULL, dev, &kind), C2D_ERR_TOPIC);

    /* MQTT topics carry no NUL: a C string ends at the first one, so a NUL
     * can only cut a topic short, never smuggle a suffix in. */
    static const char with_nul[] = "c2d/v1/d/ca\0m/seg";
    CHECK_ST(c2d_topic_parse(with_nul, dev, &kind), C2D_ERR_TOPIC);
    static const char with_nul2[] = "c2d/v1/d/cam/seg\0/extra";
    CHECK_ST(c2d_topic_parse(with_nul2, dev, &kind), C2D_OK);

    /* Reserved ids are refused only where a certificate is at stake; the
     * controller's own user may still write elsewhere in c2d/v1/d/. */
    CHECK_ST(c2d_topic_parse("c2d/v1/d/c2d-controller/seg", dev, &kind), C2D_OK);
    CHECK_ST(c2d_topic_parse("c2d/v1/d/c2dx/csr", dev, &kind), C2D_OK);
    CHECK(strcmp(dev, "c2dx") == 0 && kind == C2D_TOPIC_CSR);
}

static void test_id_reserved(void)
{
    CHECK(c2d_id_reserved("c2d-controller"));
    CHECK(c2d_id_reserved("C2D-x"));
    CHECK(c2d_id_reserved("c2D-"));
    CHECK(!c2d_id_reserved("c2d"));
    CHECK(!c2d_id_reserved("c2d_x"));
    CHECK(!c2d_id_reserved("xc2d-"));
    CHECK(!c2d_id_reserved(""));
    CHECK(!c2d_id_reserved(NULL));
}

static void test_pair_topic(void)
{
    char s[C2D_DEVICE_ID_MAX + 1] = "", buf[C2D_TOPIC_MAX];
    c2d_pair_kind kind = (c2d_pair_kind)-1;
    CHECK_ST(c2d_pair_topic_parse("c2d/v1/pair/SN-1/req", s, &kind), C2D_OK);
    CHECK(strcmp(s, "SN-1") == 0 && kind == C2D_PAIR_REQ);
    CHECK_ST(c2d_pair_topic_parse("c2d/v1/pair/SN_2.x/resp", s, &kind), C2D_OK);
    CHECK(strcmp(s, "SN_2.x") == 0 && kind == C2D_PAIR_RESP);

    char id[C2D_DEVICE_ID_MAX + 2], topic[256];
    memset(id, 's', sizeof(id) - 1);
    id[C2D_DEVICE_ID_MAX] = '\0';
    snprintf(topic, sizeof(topic), "c2d/v1/pair/%s/req", id);
    CHECK_ST(c2d_pair_topic_parse(topic, s, &kind), C2D_OK);
    CHECK(strcmp(s, id) == 0);
    /* The longest pairing topic fits C2D_TOPIC_MAX. */
    CHECK_ST(c2d_pair_topic_format(buf, sizeof(buf), id, C2D_PAIR_RESP), C2D_OK);
    id[C2D_DEVICE_ID_MAX] = 's';
    id[C2D_DEVICE_ID_MAX + 1] = '\0';
    snprintf(topic, sizeof(topic), "c2d/v1/pair/%s/req", id);
    CHECK_ST(c2d_pair_topic_parse(topic, s, &kind), C2D_ERR_NAME);

    static const struct {
        const char *topic;
        c2d_status want;
    } bad[] = {
        {"", C2D_ERR_TOPIC},
        {"c2d/v1/pair/", C2D_ERR_TOPIC},
        {"c2d/v1/pair//req", C2D_ERR_TOPIC},
        {"c2d/v1/pair/SN-1", C2D_ERR_TOPIC},
        {"c2d/v1/pair/SN-1/", C2D_ERR_TOPIC},
        {"c2d/v1/pair/SN-1/req/", C2D_ERR_TOPIC},
        {"c2d/v1/pair/SN-1/req/x", C2D_ERR_TOPIC},
        {"c2d/v1/pair/SN-1/REQ", C2D_ERR_TOPIC},
        {"c2d/v1/pair/SN-1/csr", C2D_ERR_TOPIC},
        {"c2d/v1/pair/SN-1/#", C2D_ERR_TOPIC},
        {"c2d/v1/pair/SN-1/+", C2D_ERR_TOPIC},
        {"c2d/v1/pair/a/b/req", C2D_ERR_TOPIC},
        {"c2d/v1/d/SN-1/req", C2D_ERR_TOPIC},
        {"c2d/v1/pairx/SN-1/req", C2D_ERR_TOPIC},
        {"c2d/v2/pair/SN-1/req", C2D_ERR_TOPIC},
        {"c2d/v1/pair/c2d-controller/req", C2D_ERR_NAME},
        {"c2d/v1/pair/C2D-x/req", C2D_ERR_NAME},
        {"c2d/v1/pair/c2d-x/resp", C2D_ERR_NAME},
        {"c2d/v1/pair/.x/req", C2D_ERR_NAME},
        {"c2d/v1/pair/-x/req", C2D_ERR_NAME},
        {"c2d/v1/pair/../req", C2D_ERR_NAME},
        {"c2d/v1/pair/+/req", C2D_ERR_NAME},
        {"c2d/v1/pair/#/req", C2D_ERR_NAME},
        {"c2d/v1/pair/S N/req", C2D_ERR_NAME},
        {"c2d/v1/pair/caf\xc3\xa9/req", C2D_ERR_NAME},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[C2D_DEVICE_ID_MAX + 1];
        memcpy(out, "untouched", 10);
        kind = (c2d_pair_kind)42;
        c2d_status st = c2d_pair_topic_parse(bad[i].topic, out, &kind);
        if (st != bad[i].want) {
            fprintf(stderr, "pair topic \"%s\": %s, want %s\n", bad[i].topic, c2d_reason(st),
                    c2d_reason(bad[i].want));
            failures++;
        }
        CHECK(strcmp(out, "untouched") == 0);
        CHECK(kind == (c2d_pair_kind)42);
    }
    CHECK_ST(c2d_pair_topic_parse(NULL, s, &kind), C2D_ERR_TOPIC);

    CHECK_ST(c2d_pair_topic_format(buf, sizeof(buf), "SN-1", C2D_PAIR_REQ), C2D_OK);
    CHECK(strcmp(buf, "c2d/v1/pair/SN-1/req") == 0);
    CHECK_ST(c2d_pair_topic_format(buf, sizeof(buf), "SN-1", C2D_PAIR_RESP), C2D_OK);
    CHECK(strcmp(buf, "c2d/v1/pair/SN-1/resp") == 0);
    CHECK_ST(c2d_pair_topic_parse(buf, s, &kind), C2D_OK);
    CHECK(strcmp(s, "SN-1") == 0 && kind == C2D_PAIR_RESP);
    CHECK_ST(c2d_pair_topic_format(buf, strlen("c2d/v1/pair/SN-1/resp"), "SN-1", C2D_PAIR_RESP),
             C2D_ERR_BUFFER);
    CHECK_ST(c2d_pair_topic_format(buf, sizeof(buf), "c2d-controller", C2D_PAIR_REQ), C2D_ERR_NAME);
    CHECK_ST(c2d_pair_topic_format(buf, sizeof(buf), "a/b", C2D_PAIR_REQ), C2D_ERR_NAME);
    CHECK_ST(c2d_pair_topic_format(buf, sizeof(buf), NULL, C2D_PAIR_REQ), C2D_ERR_NAME);
    CHECK_ST(c2d_pair_topic_format(buf, sizeof(buf), "SN-1", (c2d_pair_kind)9), C2D_ERR_TOPIC);
}

static void test_topic_format(void)
{
    char buf[C2D_TOPIC_MAX], dev[C2D_DEVICE_ID_MAX + 1];
    c2d_topic_kind kind;
    const c2d_topic_kind kinds[] = {C2D_TOPIC_SEG, C2D_TOPIC_ACK, C2D_TOPIC_CFG, C2D_TOPIC_STATE,
                                    C2D_TOPIC_EVT, C2D_TOPIC_CSR, C2D_TOPIC_CERT};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        CHECK_ST(c2d_topic_format(buf, sizeof(buf), "rec.7", kinds[i]), C2D_OK);
        CHECK_ST(c2d_topic_parse(buf, dev, &kind), C2D_OK);
        CHECK(strcmp(dev, "rec.7") == 0 && kind == kinds[i]);
    }
    CHECK_ST(c2d_topic_format(buf, sizeof(buf), "cam", C2D_TOPIC_SEG), C2D_OK);
    CHECK(strcmp(buf, "c2d/v1/d/cam/seg") == 0);

    /* The longest topic fits C2D_TOPIC_MAX. */
    char id[C2D_DEVICE_ID_MAX + 1];
    memset(id, 'q', C2D_DEVICE_ID_MAX);
    id[C2D_DEVICE_ID_MAX] = '\0';
    CHECK_ST(c2d_topic_format(buf, sizeof(buf), id, C2D_TOPIC_STATE), C2D_OK);

    /* Exactly enough room, then one byte short. */
    CHECK_ST(c2d_topic_format(buf, strlen("c2d/v1/d/cam/seg") + 1, "cam", C2D_TOPIC_SEG), C2D_OK);
    CHECK_ST(c2d_topic_format(buf, strlen("c2d/v1/d/cam/seg"), "cam", C2D_TOPIC_SEG),
             C2D_ERR_BUFFER);
    CHECK_ST(c2d_topic_format(buf, sizeof(buf), "..", C2D_TOPIC_SEG), C2D_ERR_NAME);
    CHECK_ST(c2d_topic_format(buf, sizeof(buf), "a/b", C2D_TOPIC_SEG), C2D_ERR_NAME);
    CHECK_ST(c2d_topic_format(buf, sizeof(buf), NULL, C2D_TOPIC_SEG), C2D_ERR_NAME);
    CHECK_ST(c2d_topic_format(buf, sizeof(buf), "cam", (c2d_topic_kind)99), C2D_ERR_TOPIC);
    CHECK_ST(c2d_topic_format(buf, sizeof(buf), "rec-1", C2D_TOPIC_CERT), C2D_OK);
    CHECK(strcmp(buf, "c2d/v1/d/rec-1/cert") == 0);
    CHECK_ST(c2d_topic_format(buf, sizeof(buf), "c2d-controller", C2D_TOPIC_CERT), C2D_ERR_NAME);
    CHECK_ST(c2d_topic_format(buf, sizeof(buf), "C2D-x", C2D_TOPIC_CSR), C2D_ERR_NAME);
    CHECK_ST(c2d_topic_format(buf, sizeof(buf), "c2d-controller", C2D_TOPIC_CFG), C2D_OK);
}

/* ---- Chunk frames ------------------------------------------------------ */

/* Builds a frame in a buffer of exactly its size (so ASan sees over-reads). */
static uint8_t *make_frame(uint16_t ch, int64_t start, uint64_t off, const uint8_t *data,
                           uint32_t len, size_t *frame_len)
{
    uint8_t *f = malloc(C2D_CHUNK_HEADER_LEN + (size_t)len);
    if (!f)
        abort();
    c2d_chunk_header_encode(f, ch, start, off, data, len);
    if (len)
        memcpy(f + C2D_CHUNK_HEADER_LEN, data, len);
    *frame_len = C2D_CHUNK_HEADER_LEN + (size_t)len;
    return f;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static void test_chunk_roundtrip(void)
{
    const uint32_t lens[] = {0, 1, 31, 32, 1000, 65536, C2D_CHUNK_MAX};
    uint8_t *payload = malloc(C2D_CHUNK_MAX);
    if (!payload)
        abort();
    for (uint32_t i = 0; i < C2D_CHUNK_MAX; i++)
        payload[i] = (uint8_t)(i * 2654435761u >> 24);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n;
        uint8_t *f = make_frame(65535, 1764480000000000, 524288 * i, payload, lens[i], &n);
        c2d_chunk c;
        memset(&c, 0xa5, sizeof(c));
        CHECK(c2d_is_chunk(f, n));
        CHECK_ST(c2d_chunk_decode(f, n, &c), C2D_OK);
        CHECK(c.channel == 65535);
        CHECK(c.start_us == 1764480000000000);
        CHECK(c.offset == 524288 * i);
        CHECK(c.length == lens[i]);
        CHECK(c.data == f + C2D_CHUNK_HEADER_LEN);
        CHECK(lens[i] == 0 || memcmp(c.data, payload, lens[i]) == 0);
        free(f);
    }

    /* Wire layout (big-endian) and the zlib CRC-32 of "123456789". */
    size_t n;
    uint8_t *f = make_frame(0x0102, 0x0304050607080900, 0x1112131415161718,
                            (const uint8_t *)"123456789", 9, &n);
    static const uint8_t want[C2D_CHUNK_HEADER_LEN] = {
        'C',  '2',  'D',  'K',  1,    0,    0x01, 0x02, 0x03, 0x04, 0x05,
        0x06, 0x07, 0x08, 0x09, 0x00, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
        0x17, 0x18, 0,    0,    0,    9,    0xcb, 0xf4, 0x39, 0x26,
    };
    CHECK(n == C2D_CHUNK_HEADER_LEN + 9);
    CHECK(memcmp(f, want, sizeof(want)) == 0);
    free(f);

    /* Largest offset whose end still fits an off_t. */
    f = make_frame(1, 0, (uint64_t)INT64_MAX - 9, payload, 9, &n);
    c2d_chunk c;
    CHECK_ST(c2d_chunk_decode(f, n, &c), C2D_OK);
    free(f);
    f = make_frame(1, C2D_INT_MAX, (uint64_t)INT64_MAX, payload, 0, &n);
    CHECK_ST(c2d_chunk_decode(f, n, &c), C2D_OK);
    free(f);
    /* A start no ack could carry (JSON integers end at 2^53). */
    f = make_frame(1, C2D_INT_MAX + 1, 0, payload, 0, &n);
    CHECK_ST(c2d_chunk_decode(f, n, &c), C2D_ERR_RANGE);
    free(f);
    free(payload);
}

static void test_chunk_errors(void)
{
    const uint8_t data[16] = "0123456789abcdef";
    size_t n;
    uint8_t *good = make_frame(7, 1000, 64, data, sizeof(data), &n);
    uint8_t *f = malloc(n + 1);
    c2d_chunk c, sentinel;
    memset(&sentinel, 0x5a, sizeof(sentinel));

#define EXPECT(len, want)                                                                          \
    do {                                                                                           \
        c = sentinel;                                                                              \
        CHECK_ST(c2d_chunk_decode(f, (len), &c), (want));                                          \
        CHECK(c.length == sentinel.length && c.offset == sentinel.offset &&                        \
              c.data == sentinel.data);                                                            \
    } while (0)

    /* Truncated: every length shorter than the header that matches the
     * magic so far, and every payload cut short. */
    memcpy(f, good, n);
    for (size_t len = 0; len < n; len++)
        EXPECT(len, C2D_ERR_TRUNCATED);
    CHECK_ST(c2d_chunk_decode(NULL, 0, &c), C2D_ERR_TRUNCATED);
    CHECK_ST(c2d_chunk_decode(NULL, 100, &c), C2D_ERR_TRUNCATED);

    /* Bad magic, long and short. */
    memcpy(f, good, n);
    f[3] = 'X';
    EXPECT(n, C2D_ERR_MAGIC);
    EXPECT(3, C2D_ERR_TRUNCATED); /* "C2D" is a prefix of the magic */
    EXPECT(4, C2D_ERR_MAGIC);
    f[0] = '{';
    EXPECT(1, C2D_ERR_MAGIC);
    EXPECT(n, C2D_ERR_MAGIC);
    CHECK(!c2d_is_chunk(f, n));
    CHECK(!c2d_is_chunk((const uint8_t *)"C2D", 3));
    CHECK(!c2d_is_chunk(NULL, 4));

    /* Version: channel and start are still reported. */
    memcpy(f, good, n);
    f[4] = 2;
    c = sentinel;
    CHECK_ST(c2d_chunk_decode(f, n, &c), C2D_ERR_VERSION);
    CHECK(c.channel == 7 && c.start_us == 1000);
    f[4] = 0;
    EXPECT(n, C2D_ERR_VERSION);

    /* Reserved flags. */
    memcpy(f, good, n);
    f[5] = 1;
    EXPECT(n, C2D_ERR_FIELD);

    /* CRC: damaged payload, damaged CRC field. */
    memcpy(f, good, n);
    f[C2D_CHUNK_HEADER_LEN + 3] ^= 0x10;
    EXPECT(n, C2D_ERR_CRC);
    memcpy(f, good, n);
    f[31] ^= 1;
    EXPECT(n, C2D_ERR_CRC);

    /* Trailing bytes after the declared payload. */
    memcpy(f, good, n);
    f[n] = 0;
    EXPECT(n + 1, C2D_ERR_LENGTH);

    /* Declared length over 1 MiB wins over truncation. */
    memcpy(f, good, n);
    put_be(f + 24, C2D_CHUNK_MAX + 1, 4);
    EXPECT(n, C2D_ERR_LENGTH);
    put_be(f + 24, UINT32_MAX, 4);
    EXPECT(n, C2D_ERR_LENGTH);
    EXPECT(C2D_CHUNK_HEADER_LEN, C2D_ERR_LENGTH);

    /* Negative start. */
    memcpy(f, good, n);
    put_be(f + 8, (uint64_t)-1, 8);
    EXPECT(n, C2D_ERR_RANGE);
    put_be(f + 8, (uint64_t)INT64_MIN, 8);
    EXPECT(n, C2D_ERR_RANGE);

    /* Offset + length past INT64_MAX, and past UINT64_MAX. */
    memcpy(f, good, n);
    put_be(f + 16, (uint64_t)INT64_MAX - sizeof(data) + 1, 8);
    EXPECT(n, C2D_ERR_RANGE);
    put_be(f + 16, (uint64_t)INT64_MAX, 8);
    EXPECT(n, C2D_ERR_RANGE);
    put_be(f + 16, UINT64_MAX - 4, 8);
    EXPECT(n, C2D_ERR_RANGE);
    put_be(f + 16, UINT64_MAX, 8);
    EXPECT(n, C2D_ERR_RANGE);
#undef EXPECT

    free(f);
    free(good);
}

/* ---- Control messages -------------------------------------------------- */

static c2d_status decode_str(const char *s, c2d_msg *m)
{
    /* Copy into a buffer of exactly strlen bytes: not NUL terminated. */
    size_t n = strlen(s);
    char *b = malloc(n ? n : 1);
    if (!b)
        abort();
    memcpy(b, s, n);
    c2d_status st = c2d_msg_decode(b, n, m);
    free(b);
    return st;
}

static int msg_equal(const c2d_msg *a, const c2d_msg *b)
{
    if (a->type != b->type || a->version != b->version || a->channel != b->channel ||
        a->start_us != b->start_us)
        return 0;
    if (a->type == C2D_MSG_BEGIN)
        return a->duration_us == b->duration_us && a->size == b->size &&
               strcmp(a->sha256, b->sha256) == 0;
    if (a->type == C2D_MSG_ACK)
        return a->status == b->status && a->offset == b->offset &&
               strcmp(a->reason, b->reason) == 0;
    return 1;
}

static void roundtrip(const c2d_msg *m)
{
    char *s = c2d_msg_encode(m);
    CHECK(s != NULL);
    if (!s)
        return;
    CHECK(strlen(s) <= C2D_MSG_MAX);
    c2d_msg back;
    CHECK_ST(decode_str(s, &back), C2D_OK);
    if (!msg_equal(m, &back)) {
        fprintf(stderr, "round trip changed the message: %s\n", s);
        failures++;
    }
    free(s);
}

static void test_msg_readme_examples(void)
{
    c2d_msg m;
    char begin[256];
    snprintf(begin, sizeof(begin),
             "{\"v\":1,\"t\":\"begin\",\"ch\":2,\"start\":1764480000000000,\"dur\":10010000,"
             "\"size\":1254300,\"sha256\":\"%s\"}",
             sha_a);
    CHECK_ST(decode_str(begin, &m), C2D_OK);
    CHECK(m.type == C2D_MSG_BEGIN && m.version == 1 && m.channel == 2);
    CHECK(m.start_us == 1764480000000000 && m.duration_us == 10010000 && m.size == 1254300);
    CHECK(strcmp(m.sha256, sha_a) == 0);
    /* The encoder writes exactly the README's form, integers as digits. */
    char *s = c2d_msg_encode(&m);
    CHECK(s && strcmp(s, begin) == 0);
    if (s && strcmp(s, begin) != 0)
        fprintf(stderr, "encoded: %s\n", s);
    free(s);

    static const char *const exact[] = {
        "{\"v\":1,\"t\":\"end\",\"ch\":2,\"start\":1764480000000000}",
        "{\"v\":1,\"t\":\"ack\",\"ch\":2,\"start\":1764480000000000,\"status\":\"offset\","
        "\"offset\":524288}",
        "{\"v\":1,\"t\":\"ack\",\"ch\":2,\"start\":1764480000000000,\"status\":\"committed\","
        "\"offset\":1254300}",
        "{\"v\":1,\"t\":\"ack\",\"ch\":2,\"start\":1764480000000000,\"status\":\"rejected\","
        "\"offset\":0,\"reason\":\"hash_mismatch\"}",
        "{\"v\":1,\"t\":\"ack\",\"ch\":0,\"start\":0,\"status\":\"duplicate\",\"offset\":0}",
    };
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
        memset(&m, 0, sizeof(m));
        CHECK_ST(decode_str(exact[i], &m), C2D_OK);
        s = c2d_msg_encode(&m);
        CHECK(s && strcmp(s, exact[i]) == 0);
        if (s && strcmp(s, exact[i]) != 0)
            fprintf(stderr, "encoded: %s\nwant:    %s\n", s, exact[i]);
        free(s);
    }
    CHECK_ST(decode_str(exact[3], &m), C2D_OK);
    CHECK(m.type == C2D_MSG_ACK && m.status == C2D_ACK_REJECTED && m.offset == 0);
    CHECK(strcmp(m.reason, "hash_mismatch") == 0);
    CHECK_ST(decode_str(exact[1], &m), C2D_OK);
    CHECK(m.status == C2D_ACK_OFFSET && m.offset == 524288 && m.reason[0] == '\0');

    /* Whitespace, key order and unknown extra keys are fine. */
    CHECK_ST(decode_str(" {\n\"start\" : 5, \"ch\":3,\"t\":\"end\",\"v\":1,\"x\":[1,{}]}\n\t", &m),
             C2D_OK);
    CHECK(m.type == C2D_MSG_END && m.channel == 3 && m.start_us == 5);
}

static void test_msg_roundtrip(void)
{
    c2d_msg m;
    memset(&m, 0, sizeof(m));
    m.version = 1;
    m.type = C2D_MSG_BEGIN;
    m.channel = 65535;
    m.start_us = 9007199254740992; /* 2^53, the largest accepted */
    m.duration_us = 9007199254740991;
    m.size = 9007199254740991;
    memcpy(m.sha256, sha_a, 65);
    roundtrip(&m);
    m.start_us = 9007199254740991;
    roundtrip(&m);
    m.start_us = 4503599627370497; /* 2^52 + 1: lost by "%1.15g" */
    roundtrip(&m);
    m.start_us = 0;
    m.duration_us = 0;
    m.size = 0;
    roundtrip(&m);

    memset(&m, 0, sizeof(m));
    m.version = 1;
    m.type = C2D_MSG_END;
    m.channel = 9;
    m.start_us = 1764480012345678;
    roundtrip(&m);

    for (int st = C2D_ACK_OFFSET; st <= C2D_ACK_REJECTED; st++) {
        memset(&m, 0, sizeof(m));
        m.version = 1;
        m.type = C2D_MSG_ACK;
        m.status = (c2d_ack_status)st;
        m.start_us = 1764480000000000;
        m.offset = 1u << 20;
        roundtrip(&m);
        snprintf(m.reason, sizeof(m.reason), "%s", "quote\" back\\slash /~ 63 chars..............");
        roundtrip(&m);
        memset(m.reason, 'r', C2D_REASON_MAX - 1);
        m.reason[C2D_REASON_MAX - 1] = '\0';
        roundtrip(&m);
    }

    /* A deterministic spread of values. */
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 2000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memset(&m, 0, sizeof(m));
        m.version = 1;
        m.type = (c2d_msg_type)(x % 3);
        m.channel = (uint16_t)(x >> 8);
        m.start_us = (int64_t)((x >> 11) % 9007199254740993u);
        m.duration_us = (int64_t)((x >> 3) & ((1ull << (x % 54)) - 1));
        m.size = (x >> 5) & ((1ull << ((x >> 17) % 54)) - 1);
        for (int k = 0; k < 64; k++)
            m.sha256[k] = "0123456789abcdef"[(x >> (k % 60)) & 15];
        m.status = (c2d_ack_status)((x >> 20) % 4);
        m.offset = (x >> 9) & ((1ull << ((x >> 30) % 54)) - 1);
        if (m.status == C2D_ACK_REJECTED)
            snprintf(m.reason, sizeof(m.reason), "r%" PRIu64, x % 100000);
        roundtrip(&m);
    }

    /* Invalid type cannot be encoded. */
    m.type = (c2d_msg_type)3;
    CHECK(c2d_msg_encode(&m) == NULL);
    CHECK(strcmp(c2d_ack_status_name((c2d_ack_status)9), "unknown") == 0);
    CHECK(strcmp(c2d_ack_status_name(C2D_ACK_DUPLICATE), "duplicate") == 0);
}

static void test_msg_version(void)
{
    c2d_msg m;
    memset(&m, 0, sizeof(m));
    CHECK_ST(decode_str("{\"v\":2,\"t\":\"begin\"}", &m), C2D_ERR_VERSION);
    CHECK(m.version == 2);
    CHECK_ST(decode_str("{\"v\":0}", &m), C2D_ERR_VERSION);
    CHECK(m.version == 0);
    CHECK_ST(decode_str("{\"t\":\"nonsense\",\"v\":65535}", &m), C2D_ERR_VERSION);
    CHECK(m.version == 65535);
    /* Version is checked before anything else. */
    CHECK_ST(decode_str("{\"v\":7,\"ch\":\"x\",\"start\":-1}", &m), C2D_ERR_VERSION);
    CHECK(m.version == 7);

    memset(&m, 0, sizeof(m));
    m.version = 99;
    CHECK_ST(decode_str("{\"t\":\"end\",\"ch\":1,\"start\":1}", &m), C2D_ERR_FIELD);
    CHECK(m.version == 99); /* untouched */
    CHECK_ST(decode_str("{\"v\":\"1\",\"t\":\"end\",\"ch\":1,\"start\":1}", &m), C2D_ERR_FIELD);
    CHECK_ST(decode_str("{\"v\":null,\"t\":\"end\",\"ch\":1,\"start\":1}", &m), C2D_ERR_FIELD);
    CHECK_ST(decode_str("{\"v\":1.5,\"t\":\"end\",\"ch\":1,\"start\":1}", &m), C2D_ERR_RANGE);
    CHECK_ST(decode_str("{\"v\":-1,\"t\":\"end\",\"ch\":1,\"start\":1}", &m), C2D_ERR_RANGE);
    CHECK(m.version == 99);
}

static void test_msg_errors(void)
{
    static const struct {
        const char *json;
        c2d_status want;
    } cases[] = {
        /* Not JSON, or not an object. */
        {"x", C2D_ERR_JSON},
        {"{", C2D_ERR_JSON},
        {"[]", C2D_ERR_JSON},
        {"1", C2D_ERR_JSON},
        {"\"begin\"", C2D_ERR_JSON},
        {"null", C2D_ERR_JSON},
        {"{\"v\":1,\"t\":\"end\",\"ch\":1,\"start\":1} x", C2D_ERR_JSON},
        {"{\"v\":1,\"t\":\"end\",\"ch\":1,\"start\":1}{}", C2D_ERR_JSON},
        {"C2DK\x01", C2D_ERR_JSON},
        /* Type. */
        {"{\"v\":1,\"ch\":1,\"start\":1}", C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":1,\"ch\":1,\"start\":1}", C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"hello\",\"ch\":1,\"start\":1}", C2D_ERR_TYPE},
        {"{\"v\":1,\"t\":\"BEGIN\",\"ch\":1,\"start\":1}", C2D_ERR_TYPE},
        {"{\"v\":1,\"t\":\"\",\"ch\":1,\"start\":1}", C2D_ERR_TYPE},
        /* Missing common fields. */
        {"{\"v\":1,\"t\":\"end\",\"start\":1}", C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"end\",\"ch\":1}", C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"end\",\"ch\":\"1\",\"start\":1}", C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"end\",\"ch\":1,\"start\":true}", C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"end\",\"ch\":1,\"start\":null}", C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"end\",\"Ch\":1,\"start\":1}", C2D_ERR_FIELD},
        /* Non-integral and out-of-range numbers. */
        {"{\"v\":1,\"t\":\"end\",\"ch\":1.5,\"start\":1}", C2D_ERR_RANGE},
        {"{\"v\":1,\"t\":\"end\",\"ch\":1,\"start\":1.000001}", C2D_ERR_RANGE},
        {"{\"v\":1,\"t\":\"end\",\"ch\":1,\"start\":1e300}", C2D_ERR_RANGE},
        {"{\"v\":1,\"t\":\"end\",\"ch\":1,\"start\":1e400}", C2D_ERR_RANGE},
        {"{\"v\":1,\"t\":\"end\",\"ch\":1,\"start\":-1e400}", C2D_ERR_RANGE},
        {"{\"v\":1,\"t\":\"end\",\"ch\":1,\"start\":-1}", C2D_ERR_RANGE},
        {"{\"v\":1,\"t\":\"end\",\"ch\":1,\"start\":9007199254740994}", C2D_ERR_RANGE},
        {"{\"v\":1,\"t\":\"end\",\"ch\":-1,\"start\":1}", C2D_ERR_RANGE},
        {"{\"v\":1,\"t\":\"end\",\"ch\":65536,\"start\":1}", C2D_ERR_RANGE},
        {"{\"v\":1,\"t\":\"end\",\"ch\":1e5,\"start\":1}", C2D_ERR_RANGE},
        /* Begin fields. */
        {"{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":1,\"size\":1,\"sha256\":\"" SHA "\"}",
         C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":1,\"dur\":1,\"sha256\":\"" SHA "\"}",
         C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":1,\"dur\":1,\"size\":1}", C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":1,\"dur\":-1,\"size\":1,\"sha256\":\"" SHA
         "\"}",
         C2D_ERR_RANGE},
        {"{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":1,\"dur\":1,\"size\":0.5,\"sha256\":\"" SHA
         "\"}",
         C2D_ERR_RANGE},
        {"{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":1,\"dur\":1,\"size\":1,\"sha256\":1}",
         C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":1,\"dur\":1,\"size\":1,\"sha256\":\"\"}",
         C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":1,\"dur\":1,\"size\":1,\"sha256\":\"" SHA63
         "\"}",
         C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":1,\"dur\":1,\"size\":1,\"sha256\":\"" SHA
         "0\"}",
         C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":1,\"dur\":1,\"size\":1,\"sha256\":\"" SHA_UP
         "\"}",
         C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":1,\"dur\":1,\"size\":1,\"sha256\":\"" SHA_G
         "\"}",
         C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"begin\",\"ch\":1,\"start\":1,\"dur\":1,\"size\":1,\"sha256\":\"" SHA63
         "\\u0000\"}",
         C2D_ERR_FIELD},
        /* Ack fields. */
        {"{\"v\":1,\"t\":\"ack\",\"ch\":1,\"start\":1,\"offset\":0}", C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"ack\",\"ch\":1,\"start\":1,\"status\":\"offset\"}", C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"ack\",\"ch\":1,\"start\":1,\"status\":\"maybe\",\"offset\":0}",
         C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"ack\",\"ch\":1,\"start\":1,\"status\":0,\"offset\":0}", C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"ack\",\"ch\":1,\"start\":1,\"status\":\"offset\",\"offset\":-5}",
         C2D_ERR_RANGE},
        {"{\"v\":1,\"t\":\"ack\",\"ch\":1,\"start\":1,\"status\":\"rejected\",\"offset\":0,"
         "\"reason\":7}",
         C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"ack\",\"ch\":1,\"start\":1,\"status\":\"rejected\",\"offset\":0,"
         "\"reason\":\"" R64 "\"}",
         C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"ack\",\"ch\":1,\"start\":1,\"status\":\"rejected\",\"offset\":0,"
         "\"reason\":\"a\\nb\"}",
         C2D_ERR_FIELD},
        {"{\"v\":1,\"t\":\"ack\",\"ch\":1,\"start\":1,\"status\":\"rejected\",\"offset\":0,"
         "\"reason\":\"caf\xc3\xa9\"}",
         C2D_ERR_FIELD},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c2d_msg m;
        memset(&m, 0x77, sizeof(m));
        c2d_status st = decode_str(cases[i].json, &m);
        if (st != cases[i].want) {
            fprintf(stderr, "decode %s: %s, want %s\n", cases[i].json, c2d_reason(st),
                    c2d_reason(cases[i].want));
            failures++;
        }
        /* Outputs are written only on success (or VERSION). */
        CHECK(m.version == 0x77777777 && m.channel == 0x7777);
    }

    c2d_msg m;
    /* Reasons up to C2D_REASON_MAX - 1 printable characters are accepted. */
    CHECK_ST(decode_str("{\"v\":1,\"t\":\"ack\",\"ch\":1,\"start\":1,\"status\":\"rejected\","
                        "\"offset\":0,\"reason\":\"" R63 "\"}",
                        &m),
             C2D_OK);
    CHECK(strlen(m.reason) == C2D_REASON_MAX - 1);

    /* Empty input, NULL, and embedded NUL bytes. */
    CHECK_ST(c2d_msg_decode(NULL, 0, &m), C2D_ERR_JSON);
    CHECK_ST(c2d_msg_decode("{}", 0, &m), C2D_ERR_JSON);
    static const char nul_inside[] = "{\"v\":1,\"t\":\"end\",\"ch\":1,\"start\":1}\0junk";
    CHECK_ST(c2d_msg_decode(nul_inside, sizeof(nul_inside) - 1, &m), C2D_ERR_JSON);
    CHECK_ST(c2d_msg_decode(nul_inside, strlen(nul_inside), &m), C2D_OK);
    CHECK_ST(c2d_msg_decode(nul_inside, strlen(nul_inside) + 1, &m), C2D_ERR_JSON);

    /* Size limit: C2D_MSG_MAX bytes are parsed, one more is refused. */
    char *big = malloc(C2D_MSG_MAX + 1);
    const char *body = "{\"v\":1,\"t\":\"end\",\"ch\":1,\"start\":1}";
    memset(big, ' ', C2D_MSG_MAX + 1);
    memcpy(big, body, strlen(body));
    CHECK_ST(c2d_msg_decode(big, C2D_MSG_MAX, &m), C2D_OK);
    CHECK_ST(c2d_msg_decode(big, C2D_MSG_MAX + 1, &m), C2D_ERR_LENGTH);
    CHECK_ST(c2d_msg_decode(big, SIZE_MAX, &m), C2D_ERR_LENGTH);
    free(big);
}

static void test_strings(void)
{
    for (int st = C2D_OK; st <= C2D_ERR_BUFFER + 1; st++) {
        CHECK(c2d_strerror((c2d_status)st) != NULL);
        CHECK(c2d_reason((c2d_status)st) != NULL);
        for (int o = C2D_OK; o < st; o++)
            CHECK(strcmp(c2d_reason((c2d_status)o), c2d_reason((c2d_status)st)) != 0);
    }
    CHECK(strcmp(c2d_reason(C2D_ERR_VERSION), "unsupported_version") == 0);
    CHECK(strcmp(c2d_reason(C2D_ERR_CRC), "bad_crc") == 0);
}

int main(void)
{
    test_device_id();
    test_topic_parse();
    test_topic_format();
    test_id_reserved();
    test_pair_topic();
    test_chunk_roundtrip();
    test_chunk_errors();
    test_msg_readme_examples();
    test_msg_roundtrip();
    test_msg_version();
    test_msg_errors();
    test_strings();
    if (failures) {
        fprintf(stderr, "test_proto: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_proto: ok\n");
    return 0;
}
