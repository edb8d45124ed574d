/* SHA-256 over mbedTLS, with lowercase hex output as used on the wire. */
#ifndef C2D_HASH_H
#define C2D_HASH_H

#include <mbedtls/sha256.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    mbedtls_sha256_context ctx;
} c2d_sha256;

void c2d_sha256_init(c2d_sha256 *h);
void c2d_sha256_update(c2d_sha256 *h, const void *data, size_t len);
/* Writes 64 hex chars + NUL and releases the context. */
void c2d_sha256_final_hex(c2d_sha256 *h, char hex[65]);
/* Releases a context that will not be finished. */
void c2d_sha256_discard(c2d_sha256 *h);
/* Hashes the first len bytes of a file (all of it if len is UINT64_MAX).
 * 0 or -errno (-EIO if the file is shorter than len). */
int c2d_sha256_file(const char *path, uint64_t len, c2d_sha256 *into);
int c2d_sha256_file_hex(const char *path, char hex[65]);

#endif
