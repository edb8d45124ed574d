/* Bearer tokens (see token.h). */
#include "controller/token.h"

#include "common/c2d_hash.h"

#include <mbedtls/base64.h>
#include <mbedtls/platform_util.h>

#include <errno.h>
#include <string.h>

static int is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

int ctl_token_valid(const char *s)
{
    size_t i;

    if (!s)
        return 0;
    for (i = 0; i < CTL_TOKEN_CHARS; i++)
        if (!is_b64url(s[i]))
            return 0;
    /* 43 characters carry 258 bits: the last one holds 4 data bits and 2
     * zero bits, so only the canonical encoding of 32 bytes is accepted
     * (its value is a multiple of 4 in the base64 alphabet). */
    {
        static const char alpha[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char *pos = strchr(alpha, s[CTL_TOKEN_CHARS - 1]);
        if (!pos || (pos - alpha) % 4 != 0)
            return 0;
    }
    return s[CTL_TOKEN_CHARS] == '\0';
}

static void hash_of(const char *s, char hash_hex[CTL_TOKEN_HASH_SIZE])
{
    c2d_sha256 h;

    c2d_sha256_init(&h);
    c2d_sha256_update(&h, s, CTL_TOKEN_CHARS);
    c2d_sha256_final_hex(&h, hash_hex);
}

int ctl_token_hash(const char *s, char hash_hex[CTL_TOKEN_HASH_SIZE])
{
    if (!ctl_token_valid(s))
        return -EINVAL;
    hash_of(s, hash_hex);
    return 0;
}

int ctl_token_new(ctl_rng *rng, char token[CTL_TOKEN_SIZE], char hash_hex[CTL_TOKEN_HASH_SIZE])
{
    unsigned char raw[CTL_TOKEN_BYTES];
    unsigned char b64[64]; /* 44 chars + NUL */
    size_t n = 0, i;
    int rc = -EIO;

    if (ctl_rng_bytes(rng, raw, sizeof(raw)) != 0)
        goto out;
    if (mbedtls_base64_encode(b64, sizeof(b64), &n, raw, sizeof(raw)) != 0 ||
        n != CTL_TOKEN_CHARS + 1 || b64[CTL_TOKEN_CHARS] != '=')
        goto out;
    for (i = 0; i < CTL_TOKEN_CHARS; i++) {
        if (b64[i] == '+')
            b64[i] = '-';
        else if (b64[i] == '/')
            b64[i] = '_';
    }
    b64[CTL_TOKEN_CHARS] = '\0';
    memcpy(token, b64, CTL_TOKEN_SIZE);
    hash_of(token, hash_hex);
    rc = 0;
out:
    mbedtls_platform_zeroize(raw, sizeof(raw));
    mbedtls_platform_zeroize(b64, sizeof(b64));
    return rc;
}
