/* c2d_chunk_decode on arbitrary bytes. Invariants: an accepted frame is
 * exactly header + payload, within every documented limit, and encoding its
 * fields again gives back the same header. */
#include "fuzz.h"
#include "proto/c2d_proto.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    c2d_chunk c;
    memset(&c, 0, sizeof(c));
    c2d_status st = c2d_chunk_decode(data, size, &c);
    FUZZ_ASSERT(c2d_strerror(st) != NULL);
    if (st != C2D_OK) {
        FUZZ_ASSERT(st == C2D_ERR_TRUNCATED || st == C2D_ERR_MAGIC || st == C2D_ERR_VERSION ||
                    st == C2D_ERR_FIELD || st == C2D_ERR_LENGTH || st == C2D_ERR_RANGE ||
                    st == C2D_ERR_CRC);
        return 0;
    }
    FUZZ_ASSERT(c2d_is_chunk(data, size));
    FUZZ_ASSERT(size == C2D_CHUNK_HEADER_LEN + (size_t)c.length);
    FUZZ_ASSERT(c.length <= C2D_CHUNK_MAX);
    FUZZ_ASSERT(c.start_us >= 0);
    FUZZ_ASSERT(c.offset <= (uint64_t)INT64_MAX - c.length);
    FUZZ_ASSERT(c.data == data + C2D_CHUNK_HEADER_LEN);
    uint8_t hdr[C2D_CHUNK_HEADER_LEN];
    c2d_chunk_header_encode(hdr, c.channel, c.start_us, c.offset, c.data, c.length);
    FUZZ_ASSERT(memcmp(hdr, data, sizeof(hdr)) == 0);
    return 0;
}
