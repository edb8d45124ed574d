#include "controller/digest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef CTL_HAVE_LIBCRYPTO

#include <openssl/evp.h>

struct ctl_sha256 {
    EVP_MD_CTX *ctx;
};

int ctl_sha256_new(ctl_sha256 **out)
{
    ctl_sha256 *h = malloc(sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        ctl_sha256_free(h);
        return -ENOMEM;
    }
    *out = h;
    return 0;
}

void ctl_sha256_update(ctl_sha256 *h, const void *data, size_t len)
{
    EVP_DigestUpdate(h->ctx, data, len);
}

int ctl_sha256_peek_hex(const ctl_sha256 *h, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    int ok = copy && EVP_MD_CTX_copy_ex(copy, h->ctx) == 1 &&
             EVP_DigestFinal_ex(copy, md, &n) == 1 && n == 32;
    EVP_MD_CTX_free(copy);
    if (!ok)
        return -ENOMEM;
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

void ctl_sha256_free(ctl_sha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

const char *ctl_sha256_impl(void)
{
    return "OpenSSL libcrypto";
}

#else

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
    c2d_sha256 copy;
    mbedtls_sha256_init(&copy.ctx);
    mbedtls_sha256_clone(&copy.ctx, &h->h.ctx);
    c2d_sha256_final_hex(&copy, hex);
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
    return "mbedTLS";
}

#endif
