/* Password hashing: PBKDF2-HMAC-SHA256 (mbedTLS) with a 16-byte random salt,
 * stored as a self-describing string
 *
 *     pbkdf2-sha256$<iterations>$<base64 salt>$<base64 hash>
 *
 * (standard base64 with padding; hash is 32 bytes). The iteration count
 * travels with each hash, so the default can be raised later: old hashes
 * still verify, and ctl_pw_needs_rehash tells the login code to store a new
 * hash while it holds the plain password.
 *
 * Nothing here logs, and no function keeps or prints a password; the
 * derived key and intermediate buffers are wiped before return. Functions
 * are thread safe (the ctl_rng serialises itself). Each hash or verify at
 * the default count costs about half a second of one CPU: callers that
 * verify on behalf of a peer throttle first (controller/throttle.h). */
#ifndef CTL_PASSWORD_H
#define CTL_PASSWORD_H

#include "controller/rng.h"

#include <stddef.h>

/* OWASP 2023 minimum for PBKDF2-HMAC-SHA256. */
#define CTL_PW_ITER_DEFAULT 600000u
/* Largest count accepted in an encoded hash: bounds the CPU one verify can
 * cost if a stored hash is corrupted or planted (about 16x the default). */
#define CTL_PW_ITER_MAX 10000000u
/* NIST SP 800-63B asks for at least 8; we ask for 10. */
#define CTL_PW_MIN_LEN 10
/* Bounds the bytes fed to HMAC per request (a peer controls them). */
#define CTL_PW_MAX_LEN 1024
#define CTL_PW_SALT_LEN 16
#define CTL_PW_HASH_LEN 32
/* Size of a buffer that holds any encoded hash with its NUL:
 * "pbkdf2-sha256$" (14) + 8 digits + "$" + 24 + "$" + 44 + NUL = 93. */
#define CTL_PW_ENCODED_MAX 128

typedef enum {
    CTL_PW_OK = 0,
    CTL_PW_MISMATCH,     /* verify: well-formed hash, wrong password */
    CTL_PW_TOO_SHORT,    /* hash: fewer than CTL_PW_MIN_LEN bytes */
    CTL_PW_TOO_LONG,     /* more than CTL_PW_MAX_LEN bytes */
    CTL_PW_BAD_ENCODING, /* encoded hash malformed (prefix, iterations, base64, lengths) */
    CTL_PW_BAD_ARG,      /* iterations out of range, output buffer too small, NULL */
    CTL_PW_RNG,          /* the random source failed: no salt, no hash */
    CTL_PW_CRYPTO,       /* mbedTLS failed (allocation in md setup included) */
} ctl_pw_err;

/* A static English message for err, fit for an API error message. */
const char *ctl_pw_strerror(ctl_pw_err err);

/* Hashes pw (pw_len bytes, any bytes; UTF-8 expected but not checked) with
 * a fresh salt from rng and iterations rounds (0 = CTL_PW_ITER_DEFAULT;
 * else 1..CTL_PW_ITER_MAX: counts below the default are for tests only).
 * Writes the NUL-terminated encoding to out (out_size >= CTL_PW_ENCODED_MAX
 * is always enough); out is written only on success.
 * Errors: TOO_SHORT, TOO_LONG, BAD_ARG, RNG, CRYPTO. */
ctl_pw_err ctl_pw_hash(ctl_rng *rng, const char *pw, size_t pw_len, unsigned iterations, char *out,
                       size_t out_size);

/* Checks pw against encoded (NUL-terminated, as made by ctl_pw_hash). The
 * final comparison is constant time. Only the upper length limit applies
 * (a later, stricter minimum must not lock out existing passwords).
 * Returns OK on a match, MISMATCH, or TOO_LONG, BAD_ENCODING, BAD_ARG,
 * CRYPTO: every result other than OK means "refuse". */
ctl_pw_err ctl_pw_verify(const char *pw, size_t pw_len, const char *encoded);

/* 1 if encoded is well-formed but uses fewer than iterations rounds
 * (0 = CTL_PW_ITER_DEFAULT), so it should be replaced after a successful
 * verify; 0 if it is current; -1 if it is malformed. */
int ctl_pw_needs_rehash(const char *encoded, unsigned iterations);

#endif
