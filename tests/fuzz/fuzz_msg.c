/* c2d_msg_decode on arbitrary bytes, then the round trip: an accepted
 * message encodes to at most C2D_MSG_MAX bytes of JSON that decodes to the
 * same message and encodes to the same text. */
#include "fuzz.h"
#include "proto/c2d_proto.h"

#include <string.h>

static int is_lower_hex64(const char *s)
{
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[64] == '\0';
}

static void same(const c2d_msg *a, const c2d_msg *b)
{
    FUZZ_ASSERT(a->type == b->type);
    FUZZ_ASSERT(a->version == b->version);
    FUZZ_ASSERT(a->channel == b->channel);
    FUZZ_ASSERT(a->start_us == b->start_us);
    if (a->type == C2D_MSG_BEGIN) {
        FUZZ_ASSERT(a->duration_us == b->duration_us);
        FUZZ_ASSERT(a->size == b->size);
        FUZZ_ASSERT(strcmp(a->sha256, b->sha256) == 0);
    } else if (a->type == C2D_MSG_ACK) {
        FUZZ_ASSERT(a->status == b->status);
        FUZZ_ASSERT(a->offset == b->offset);
        FUZZ_ASSERT(strcmp(a->reason, b->reason) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    c2d_msg m;
    c2d_status st = c2d_msg_decode((const char *)data, size, &m);
    if (st == C2D_ERR_VERSION) {
        FUZZ_ASSERT(m.version != C2D_PROTO_VERSION);
        return 0;
    }
    if (st != C2D_OK) {
        FUZZ_ASSERT(st == C2D_ERR_LENGTH || st == C2D_ERR_JSON || st == C2D_ERR_TYPE ||
                    st == C2D_ERR_FIELD || st == C2D_ERR_RANGE);
        return 0;
    }
    FUZZ_ASSERT(size <= C2D_MSG_MAX);
    FUZZ_ASSERT(m.version == C2D_PROTO_VERSION);
    FUZZ_ASSERT(m.start_us >= 0 && m.start_us <= (INT64_C(1) << 53));
    if (m.type == C2D_MSG_BEGIN) {
        FUZZ_ASSERT(m.duration_us >= 0 && m.duration_us <= (INT64_C(1) << 53));
        FUZZ_ASSERT(m.size <= (UINT64_C(1) << 53));
        FUZZ_ASSERT(is_lower_hex64(m.sha256));
    } else if (m.type == C2D_MSG_ACK) {
        FUZZ_ASSERT(m.offset <= (UINT64_C(1) << 53));
        FUZZ_ASSERT(strlen(m.reason) < C2D_REASON_MAX);
    } else {
        FUZZ_ASSERT(m.type == C2D_MSG_END);
    }

    char *text = c2d_msg_encode(&m);
    FUZZ_ASSERT(text != NULL);
    size_t len = strlen(text);
    FUZZ_ASSERT(len <= C2D_MSG_MAX);
    c2d_msg back;
    FUZZ_ASSERT(c2d_msg_decode(text, len, &back) == C2D_OK);
    same(&m, &back);
    char *again = c2d_msg_encode(&back);
    FUZZ_ASSERT(again != NULL && strcmp(text, again) == 0);
    free(again);
    free(text);
    return 0;
}
