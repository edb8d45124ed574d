#include "controller/digest.h"

#include <errno.h>
#include <stdlib.h>

#include "common/c2d_hash.h"

struct ctl_sha256 {
    c2d_sha256 h;
};

int ctl_sha256_new(ctl_sha256 **out)
{
    ctl_sha256 *h = malloc(sizeof(*h));
    if (!h)
        return -ENOMEM;
    c2d_sha256_init(&h->h);
    *out = h;
    return 0;
}

void ctl_sha256_update(ctl_sha256 *h, const void *data, size_t len)
{
    c2d_sha256_update(&h->h, data, len);
}

int ctl_sha256_peek_hex(const ctl_sha256 *h, char hex[65])
{
    c2d_sha256_peek_hex(&h->h, hex);
    return 0;
}

void ctl_sha256_free(ctl_sha256 *h)
{
    if (!h)
        return;
    c2d_sha256_discard(&h->h);
    free(h);
}

const char *ctl_sha256_impl(void)
{
    return "OpenSSL libcrypto (SHA256_CTX)";
}
