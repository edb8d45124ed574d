/* PBKDF2-HMAC-SHA256 password hashes (see password.h). */
#include "controller/password.h"

#include <mbedtls/base64.h>
#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define PREFIX "pbkdf2-sha256$"
/* base64 lengths with padding of the salt and the hash. */
#define SALT_B64_LEN 24
#define HASH_B64_LEN 44
/* Digits of CTL_PW_ITER_MAX. */
#define ITER_DIGITS_MAX 8

typedef struct {
    unsigned iterations;
    unsigned char salt[CTL_PW_SALT_LEN];
    unsigned char hash[CTL_PW_HASH_LEN];
} parsed_hash;

const char *ctl_pw_strerror(ctl_pw_err err)
{
    switch (err) {
    case CTL_PW_OK:
        return "ok";
    case CTL_PW_MISMATCH:
        return "wrong password";
    case CTL_PW_TOO_SHORT:
        return "password too short (at least 10 bytes)";
    case CTL_PW_TOO_LONG:
        return "password too long (at most 1024 bytes)";
    case CTL_PW_BAD_ENCODING:
        return "stored password hash is malformed";
    case CTL_PW_BAD_ARG:
        return "invalid argument";
    case CTL_PW_RNG:
        return "random source failed";
    case CTL_PW_CRYPTO:
        return "password hashing failed";
    }
    return "unknown error";
}

static ctl_pw_err derive(const char *pw, size_t pw_len, const unsigned char *salt,
                         unsigned iterations, unsigned char out[CTL_PW_HASH_LEN])
{
    mbedtls_md_context_t md;
    ctl_pw_err rc = CTL_PW_CRYPTO;

    mbedtls_md_init(&md);
    if (mbedtls_md_setup(&md, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 1) != 0)
        goto out;
    if (mbedtls_pkcs5_pbkdf2_hmac(&md, (const unsigned char *)pw, pw_len, salt, CTL_PW_SALT_LEN,
                                  iterations, CTL_PW_HASH_LEN, out) != 0)
        goto out;
    rc = CTL_PW_OK;
out:
    mbedtls_md_free(&md); /* wipes the HMAC pads */
    return rc;
}

/* Decodes exactly want bytes from the want_b64 characters at s, accepting
 * only the canonical encoding (re-encoding must give the same text). */
static int b64_field(const char *s, size_t len, size_t want_b64, unsigned char *dst, size_t want)
{
    unsigned char tmp[64];
    unsigned char again[64];
    size_t n = 0, m = 0;

    if (len != want_b64 || want > sizeof(tmp))
        return -1;
    if (mbedtls_base64_decode(tmp, sizeof(tmp), &n, (const unsigned char *)s, len) != 0 ||
        n != want)
        return -1;
    if (mbedtls_base64_encode(again, sizeof(again), &m, tmp, n) != 0 || m != len ||
        memcmp(again, s, len) != 0)
        return -1;
    memcpy(dst, tmp, want);
    return 0;
}

static int parse(const char *enc, parsed_hash *ph)
{
    const char *p, *salt, *hash;
    unsigned long iter = 0;
    size_t digits = 0;

    if (!enc || strncmp(enc, PREFIX, strlen(PREFIX)) != 0)
        return -1;
    p = enc + strlen(PREFIX);
    /* Decimal, no sign, no leading zero, at most ITER_DIGITS_MAX digits. */
    if (*p == '0')
        return -1;
    while (*p >= '0' && *p <= '9') {
        if (++digits > ITER_DIGITS_MAX)
            return -1;
        iter = iter * 10 + (unsigned long)(*p - '0');
        p++;
    }
    if (digits == 0 || *p != '$' || iter < 1 || iter > CTL_PW_ITER_MAX)
        return -1;
    salt = p + 1;
    p = strchr(salt, '$');
    if (!p)
        return -1;
    hash = p + 1;
    if (b64_field(salt, (size_t)(p - salt), SALT_B64_LEN, ph->salt, CTL_PW_SALT_LEN) != 0)
        return -1;
    if (b64_field(hash, strlen(hash), HASH_B64_LEN, ph->hash, CTL_PW_HASH_LEN) != 0)
        return -1;
    ph->iterations = (unsigned)iter;
    return 0;
}

ctl_pw_err ctl_pw_hash(ctl_rng *rng, const char *pw, size_t pw_len, unsigned iterations, char *out,
                       size_t out_size)
{
    unsigned char salt[CTL_PW_SALT_LEN];
    unsigned char hash[CTL_PW_HASH_LEN];
    char buf[CTL_PW_ENCODED_MAX];
    size_t n = 0;
    int len;
    ctl_pw_err rc;

    if (!rng || !pw || !out)
        return CTL_PW_BAD_ARG;
    if (iterations == 0)
        iterations = CTL_PW_ITER_DEFAULT;
    if (iterations > CTL_PW_ITER_MAX)
        return CTL_PW_BAD_ARG;
    if (pw_len < CTL_PW_MIN_LEN)
        return CTL_PW_TOO_SHORT;
    if (pw_len > CTL_PW_MAX_LEN)
        return CTL_PW_TOO_LONG;
    if (ctl_rng_bytes(rng, salt, sizeof(salt)) != 0)
        return CTL_PW_RNG;
    rc = derive(pw, pw_len, salt, iterations, hash);
    if (rc != CTL_PW_OK)
        goto out;
    rc = CTL_PW_CRYPTO;
    len = snprintf(buf, sizeof(buf), PREFIX "%u$", iterations);
    if (len < 0 || (size_t)len >= sizeof(buf))
        goto out;
    if (mbedtls_base64_encode((unsigned char *)buf + len, sizeof(buf) - (size_t)len, &n, salt,
                              sizeof(salt)) != 0)
        goto out;
    len += (int)n;
    if ((size_t)len + 1 >= sizeof(buf))
        goto out;
    buf[len++] = '$';
    if (mbedtls_base64_encode((unsigned char *)buf + len, sizeof(buf) - (size_t)len, &n, hash,
                              sizeof(hash)) != 0)
        goto out;
    len += (int)n; /* mbedtls_base64_encode wrote a NUL after the text */
    rc = CTL_PW_BAD_ARG;
    if ((size_t)len >= out_size)
        goto out;
    memcpy(out, buf, (size_t)len + 1);
    rc = CTL_PW_OK;
out:
    mbedtls_platform_zeroize(hash, sizeof(hash));
    mbedtls_platform_zeroize(buf, sizeof(buf));
    return rc;
}

ctl_pw_err ctl_pw_verify(const char *pw, size_t pw_len, const char *encoded)
{
    parsed_hash ph;
    unsigned char got[CTL_PW_HASH_LEN];
    volatile unsigned char diff = 0;
    ctl_pw_err rc;
    size_t i;

    if (!pw || !encoded)
        return CTL_PW_BAD_ARG;
    if (pw_len > CTL_PW_MAX_LEN)
        return CTL_PW_TOO_LONG;
    if (parse(encoded, &ph) != 0)
        return CTL_PW_BAD_ENCODING;
    rc = derive(pw, pw_len, ph.salt, ph.iterations, got);
    if (rc == CTL_PW_OK) {
        for (i = 0; i < CTL_PW_HASH_LEN; i++)
            diff |= (unsigned char)(got[i] ^ ph.hash[i]);
        rc = diff == 0 ? CTL_PW_OK : CTL_PW_MISMATCH;
    }
    mbedtls_platform_zeroize(got, sizeof(got));
    mbedtls_platform_zeroize(&ph, sizeof(ph));
    return rc;
}

int ctl_pw_needs_rehash(const char *encoded, unsigned iterations)
{
    parsed_hash ph;

    if (parse(encoded, &ph) != 0)
        return -1;
    if (iterations == 0)
        iterations = CTL_PW_ITER_DEFAULT;
    return ph.iterations < iterations ? 1 : 0;
}
