/* Streaming SHA-256 state for one upload in progress, heap-allocated so
 * ingest can keep many of them in its LRU; common/c2d_hash.h does the
 * hashing. Lowercase hex out, as on the wire. */
#ifndef CTL_DIGEST_H
#define CTL_DIGEST_H

#include <stddef.h>

typedef struct ctl_sha256 ctl_sha256;

/* A started hash. 0, or -ENOMEM. *out is set only on success. */
int ctl_sha256_new(ctl_sha256 **out);

void ctl_sha256_update(ctl_sha256 *h, const void *data, size_t len);

/* Writes the hex digest of what h has seen so far (64 chars + NUL) without
 * finishing h, which can take more data. 0, or -ENOMEM. */
int ctl_sha256_peek_hex(const ctl_sha256 *h, char hex[65]);

/* NULL is a no-op. */
void ctl_sha256_free(ctl_sha256 *h);

/* Name of the implementation, for the start-up log. */
const char *ctl_sha256_impl(void);

#endif
