#include "proto/c2d_proto.h"

#include <string.h>
#include <zlib.h>

/* Header layout, big-endian (proto/README.md):
 *  0 magic "C2DK" | 4 version u8 | 5 flags u8 | 6 channel u16 | 8 start_us i64
 * 16 offset u64   | 24 length u32 | 28 crc32 u32 | 32 payload */
static const uint8_t chunk_magic[4] = {'C', '2', 'D', 'K'};

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

int c2d_is_chunk(const uint8_t *buf, size_t len)
{
    return buf && len >= sizeof(chunk_magic) && memcmp(buf, chunk_magic, sizeof(chunk_magic)) == 0;
}

void c2d_chunk_header_encode(uint8_t out[C2D_CHUNK_HEADER_LEN], uint16_t channel, int64_t start_us,
                             uint64_t offset, const uint8_t *data, uint32_t length)
{
    memcpy(out, chunk_magic, 4);
    out[4] = C2D_PROTO_VERSION;
    out[5] = 0;
    put_u16(out + 6, channel);
    put_u64(out + 8, (uint64_t)start_us);
    put_u64(out + 16, offset);
    put_u32(out + 24, length);
    uLong crc = crc32(0L, Z_NULL, 0);
    if (length)
        crc = crc32(crc, data, length);
    put_u32(out + 28, (uint32_t)crc);
}

c2d_status c2d_chunk_decode(const uint8_t *buf, size_t len, c2d_chunk *out)
{
    if (!buf)
        return C2D_ERR_TRUNCATED;
    /* A buffer too short for the header is truncated only if what it has
     * matches the magic; anything else is not a chunk at all. */
    size_t m = len < sizeof(chunk_magic) ? len : sizeof(chunk_magic);
    if (memcmp(buf, chunk_magic, m) != 0)
        return C2D_ERR_MAGIC;
    if (len < C2D_CHUNK_HEADER_LEN)
        return C2D_ERR_TRUNCATED;
    c2d_chunk c = {0};
    c.channel = get_u16(buf + 6);
    c.start_us = (int64_t)get_u64(buf + 8);
    c.offset = get_u64(buf + 16);
    c.length = get_u32(buf + 24);
    c.crc32 = get_u32(buf + 28);
    c.data = buf + C2D_CHUNK_HEADER_LEN;
    /* Let the receiver address a rejection even when the rest is bad. */
    out->channel = c.channel;
    out->start_us = c.start_us;
    if (buf[4] != C2D_PROTO_VERSION)
        return C2D_ERR_VERSION;
    /* Flags are reserved: refuse them so they can be given a meaning later
     * without old receivers misreading the frame. */
    if (buf[5] != 0)
        return C2D_ERR_FIELD;
    if (c.length > C2D_CHUNK_MAX)
        return C2D_ERR_LENGTH;
    if (len - C2D_CHUNK_HEADER_LEN < c.length)
        return C2D_ERR_TRUNCATED;
    if (len - C2D_CHUNK_HEADER_LEN > c.length)
        return C2D_ERR_LENGTH;
    /* The end of the chunk must fit an off_t on the receiver. */
    if (c.start_us < 0 || c.start_us > C2D_INT_MAX || c.offset > (uint64_t)INT64_MAX - c.length)
        return C2D_ERR_RANGE;
    uLong crc = crc32(0L, Z_NULL, 0);
    if (c.length)
        crc = crc32(crc, c.data, c.length);
    if ((uint32_t)crc != c.crc32)
        return C2D_ERR_CRC;
    *out = c;
    return C2D_OK;
}
