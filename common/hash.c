#include "common/c2d_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void c2d_sha256_init(c2d_sha256 *h)
{
    SHA256_Init(&h->ctx);
}

void c2d_sha256_update(c2d_sha256 *h, const void *data, size_t len)
{
    SHA256_Update(&h->ctx, data, len);
}

void c2d_sha256_final_hex(c2d_sha256 *h, char hex[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256_Final(digest, &h->ctx);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

void c2d_sha256_discard(c2d_sha256 *h)
{
    (void)h; /* nothing allocated */
}

void c2d_sha256_peek_hex(const c2d_sha256 *h, char hex[65])
{
    c2d_sha256 copy = *h;
    c2d_sha256_final_hex(&copy, hex);
}

/* Read size of c2d_sha256_file: large reads, few syscalls. Allocated per
 * call: as static thread-local storage it was reserved and zeroed in every
 * thread of every program linking common (64 KiB each: 1.2 MiB of the
 * agent's RSS with 16 channels), for a function only tests call today. */
#define HASH_FILE_BUF (64u << 10)

int c2d_sha256_file(const char *path, uint64_t len, c2d_sha256 *into)
{
    unsigned char *buf = malloc(HASH_FILE_BUF);
    if (!buf)
        return -ENOMEM;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        free(buf);
        return rc;
    }
    uint64_t left = len;
    int rc = 0;
    while (left > 0) {
        size_t want = left < HASH_FILE_BUF ? (size_t)left : HASH_FILE_BUF;
        ssize_t r = read(fd, buf, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            break;
        }
        if (r == 0) {
            rc = len == UINT64_MAX ? 0 : -EIO;
            break;
        }
        c2d_sha256_update(into, buf, (size_t)r);
        left -= (uint64_t)r;
    }
    close(fd);
    free(buf);
    return rc;
}

int c2d_sha256_file_hex(const char *path, char hex[65])
{
    c2d_sha256 h;
    c2d_sha256_init(&h);
    int rc = c2d_sha256_file(path, UINT64_MAX, &h);
    if (rc != 0) {
        c2d_sha256_discard(&h);
        return rc;
    }
    c2d_sha256_final_hex(&h, hex);
    return 0;
}
