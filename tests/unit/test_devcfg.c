/* Unit tests for proto/devcfg.c: the device config of the cfg topic. A
 * table of payloads with the status and reason each must get, then the
 * encoder: round trips, limits and what it refuses to write. */
#include "check.h"
#include "proto/devcfg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *json;
    c2d_status st;
    const char *why; /* prefix of the reason */
} cases[] = {
    {"{\"v\":1,\"version\":7,\"channels\":[{\"ch\":1,\"backup\":true},{\"ch\":2,\"backup\":false}]"
     "}",
     C2D_OK, "ok"},
    {"{\"v\":1,\"version\":0,\"channels\":[]}", C2D_OK, "ok"},
    {" {\"channels\":[],\"version\":9007199254740992,\"v\":1} \n", C2D_OK, "ok"},
    {"{\"v\":1,\"version\":1,\"channels\":[{\"backup\":true,\"ch\":65535}]}", C2D_OK, "ok"},
    /* not JSON, not an object, trailing bytes, escapes, bad UTF-8 */
    {"", C2D_ERR_JSON, "bad_json"},
    {"{", C2D_ERR_JSON, "bad_json"},
    {"[]", C2D_ERR_JSON, "bad_json: not an object"},
    {"{\"v\":1,\"version\":1,\"channels\":[]} x", C2D_ERR_JSON, "bad_json"},
    {"{\"v\":1,\"version\":1,\"channels\":[]}{}", C2D_ERR_JSON, "bad_json"},
    {"{\"v\":1,\"vers\\u0069on\":1,\"channels\":[]}", C2D_ERR_JSON, "bad_json: escape"},
    {"{\"v\":1,\"version\":1,\"channels\":[],\"\xc3\x28\":1}", C2D_ERR_JSON, "bad_utf8"},
    /* version of the protocol */
    {"{\"v\":2,\"version\":1,\"channels\":[],\"names\":[]}", C2D_ERR_VERSION,
     "unsupported_version: 2"},
    {"{\"v\":\"1\",\"version\":1,\"channels\":[]}", C2D_ERR_FIELD, "bad_field: v"},
    {"{\"version\":1,\"channels\":[]}", C2D_ERR_FIELD, "missing_field: v"},
    /* fields */
    {"{\"v\":1,\"version\":1,\"channels\":[],\"rate\":5}", C2D_ERR_FIELD, "unknown_field: rate"},
    {"{\"v\":1,\"version\":1,\"version\":2,\"channels\":[]}", C2D_ERR_FIELD,
     "duplicate_field: version"},
    {"{\"v\":1,\"channels\":[]}", C2D_ERR_FIELD, "missing_field: version"},
    {"{\"v\":1,\"version\":1}", C2D_ERR_FIELD, "missing_field: channels"},
    {"{\"v\":1,\"version\":-1,\"channels\":[]}", C2D_ERR_RANGE, "out_of_range: version"},
    {"{\"v\":1,\"version\":1.5,\"channels\":[]}", C2D_ERR_RANGE, "out_of_range: version"},
    {"{\"v\":1,\"version\":9007199254740994,\"channels\":[]}", C2D_ERR_RANGE,
     "out_of_range: version"},
    {"{\"v\":1,\"version\":true,\"channels\":[]}", C2D_ERR_FIELD, "bad_field: version"},
    {"{\"v\":1,\"version\":1,\"channels\":{}}", C2D_ERR_FIELD, "bad_field: channels"},
    /* channels */
    {"{\"v\":1,\"version\":1,\"channels\":[1]}", C2D_ERR_FIELD, "bad_field: channels[0]"},
    {"{\"v\":1,\"version\":1,\"channels\":[{\"ch\":1,\"backup\":true},{\"ch\":1,\"backup\":false}]"
     "}",
     C2D_ERR_FIELD, "duplicate_channel: 1"},
    {"{\"v\":1,\"version\":1,\"channels\":[{\"ch\":1,\"backup\":true,\"name\":\"x\"}]}",
     C2D_ERR_FIELD, "unknown_field: channels[0].name"},
    {"{\"v\":1,\"version\":1,\"channels\":[{\"ch\":1}]}", C2D_ERR_FIELD,
     "missing_field: channels[0].backup"},
    {"{\"v\":1,\"version\":1,\"channels\":[{\"backup\":true}]}", C2D_ERR_FIELD,
     "missing_field: channels[0].ch"},
    {"{\"v\":1,\"version\":1,\"channels\":[{\"ch\":1,\"backup\":1}]}", C2D_ERR_FIELD,
     "bad_field: channels[0].backup"},
    {"{\"v\":1,\"version\":1,\"channels\":[{\"ch\":1,\"backup\":null}]}", C2D_ERR_FIELD,
     "bad_field: channels[0].backup"},
    {"{\"v\":1,\"version\":1,\"channels\":[{\"ch\":65536,\"backup\":true}]}", C2D_ERR_RANGE,
     "out_of_range: channels[0].ch"},
    {"{\"v\":1,\"version\":1,\"channels\":[{\"ch\":1,\"backup\":true,\"ch\":2}]}", C2D_ERR_FIELD,
     "duplicate_field: channels[0].ch"},
};

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c2d_devcfg cfg;
        memset(&cfg, 0xa5, sizeof(cfg));
        char why[C2D_DEVCFG_WHY_MAX];
        c2d_status st =
            c2d_devcfg_decode(cases[i].json, strlen(cases[i].json), &cfg, why, sizeof(why));
        if (st != cases[i].st || strncmp(why, cases[i].why, strlen(cases[i].why)) != 0) {
            fprintf(stderr, "case %zu (%s): got %s \"%s\", want %s \"%s\"\n", i, cases[i].json,
                    c2d_reason(st), why, c2d_reason(cases[i].st), cases[i].why);
            failures++;
        }
        if (st != C2D_OK)
            CHECK(cfg.n_channels != 0); /* untouched: still the 0xa5 fill */
    }
}

static void test_decoded_values(void)
{
    const char *j = "{\"v\":1,\"version\":7,\"channels\":[{\"ch\":3,\"backup\":true},"
                    "{\"ch\":2,\"backup\":false}]}";
    c2d_devcfg cfg;
    CHECK(c2d_devcfg_decode(j, strlen(j), &cfg, NULL, 0) == C2D_OK);
    CHECK(cfg.version == 7 && cfg.n_channels == 2);
    CHECK(cfg.channels[0].ch == 3 && cfg.channels[0].backup == 1);
    CHECK(cfg.channels[1].ch == 2 && cfg.channels[1].backup == 0);
    CHECK(c2d_devcfg_find(&cfg, 2) == &cfg.channels[1]);
    CHECK(c2d_devcfg_find(&cfg, 4) == NULL);
    /* Not NUL terminated: only len bytes are read. */
    char buf[128];
    size_t n = strlen(j);
    memcpy(buf, j, n);
    buf[n] = '}';
    CHECK(c2d_devcfg_decode(buf, n, &cfg, NULL, 0) == C2D_OK);
    CHECK(c2d_devcfg_decode(buf, n + 1, &cfg, NULL, 0) == C2D_ERR_JSON);
    /* A NUL inside */
    memcpy(buf, j, n);
    buf[5] = '\0';
    CHECK(c2d_devcfg_decode(buf, n, &cfg, NULL, 0) == C2D_ERR_JSON);
    CHECK(c2d_devcfg_decode(NULL, 0, &cfg, NULL, 0) == C2D_ERR_JSON);
}

static void test_limits(void)
{
    /* 64 channels pass, 65 do not. */
    c2d_devcfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.version = 12;
    cfg.n_channels = C2D_DEVCFG_CHANNELS_MAX;
    for (size_t i = 0; i < cfg.n_channels; i++) {
        cfg.channels[i].ch = (uint16_t)(1000 + i * 7);
        cfg.channels[i].backup = (int)(i % 2);
    }
    char *text = c2d_devcfg_encode(&cfg);
    CHECK(text != NULL);
    size_t len = text ? strlen(text) : 0;
    CHECK(len <= C2D_DEVCFG_MAX);
    c2d_devcfg back;
    CHECK(text && c2d_devcfg_decode(text, len, &back, NULL, 0) == C2D_OK);
    CHECK(back.n_channels == cfg.n_channels && back.version == 12);
    CHECK(memcmp(back.channels, cfg.channels, sizeof(cfg.channels)) == 0);
    if (text) {
        /* one more channel in the text */
        char *more = malloc(len + 64);
        memcpy(more, text, len - 2);
        len = len - 2 + (size_t)sprintf(more + len - 2, ",{\"ch\":1,\"backup\":true}]}");
        char why[C2D_DEVCFG_WHY_MAX];
        CHECK(c2d_devcfg_decode(more, len, &back, why, sizeof(why)) == C2D_ERR_RANGE);
        CHECK(strncmp(why, "out_of_range: channels", 22) == 0);
        free(more);
    }
    free(text);

    /* Over 16 KiB: refused unparsed, even if it is only whitespace. */
    size_t big = C2D_DEVCFG_MAX + 1;
    char *pad = malloc(big);
    memset(pad, ' ', big);
    const char *j = "{\"v\":1,\"version\":1,\"channels\":[]}";
    memcpy(pad, j, strlen(j));
    CHECK(c2d_devcfg_decode(pad, big, &back, NULL, 0) == C2D_ERR_LENGTH);
    CHECK(c2d_devcfg_decode(pad, big - 1, &back, NULL, 0) == C2D_OK);
    free(pad);
}

static void test_encode(void)
{
    c2d_devcfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.version = 9007199254740992ULL; /* 2^53: exact, as digits */
    cfg.n_channels = 2;
    cfg.channels[0] = (c2d_devcfg_channel){.ch = 1, .backup = 1};
    cfg.channels[1] = (c2d_devcfg_channel){.ch = 2, .backup = 0};
    char *text = c2d_devcfg_encode(&cfg);
    CHECK(text && strcmp(text, "{\"v\":1,\"version\":9007199254740992,\"channels\":[{\"ch\":1,"
                               "\"backup\":true},{\"ch\":2,\"backup\":false}]}") == 0);
    free(text);
    /* What the decoder would refuse is not written. */
    cfg.version++;
    CHECK(c2d_devcfg_encode(&cfg) == NULL);
    cfg.version = 1;
    cfg.channels[1].ch = 1;
    CHECK(c2d_devcfg_encode(&cfg) == NULL);
    cfg.channels[1].ch = 2;
    cfg.channels[1].backup = 2;
    CHECK(c2d_devcfg_encode(&cfg) == NULL);
    cfg.channels[1].backup = 0;
    cfg.n_channels = C2D_DEVCFG_CHANNELS_MAX + 1;
    CHECK(c2d_devcfg_encode(&cfg) == NULL);
    cfg.n_channels = 0;
    text = c2d_devcfg_encode(&cfg);
    CHECK(text && strcmp(text, "{\"v\":1,\"version\":1,\"channels\":[]}") == 0);
    free(text);
}

int main(void)
{
    test_table();
    test_decoded_values();
    test_limits();
    test_encode();
    if (!failures)
        printf("ok\n");
    return check_result();
}
