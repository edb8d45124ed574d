/* A cryptographic random source: mbedTLS CTR-DRBG (AES-256) seeded from the
 * mbedTLS entropy source (getrandom / /dev/urandom), behind one mutex so
 * every thread of the controller can share one handle. Used for session
 * tokens (controller/token.h) and password salts (controller/password.h).
 *
 * Lifecycle: ctl_rng_new, any number of ctl_rng_bytes from any thread,
 * ctl_rng_free once no thread uses it. The DRBG reseeds itself from the
 * entropy source every MBEDTLS_CTR_DRBG_RESEED_INTERVAL requests, and
 * reseeds when it notices it runs in a forked child (different pid), so a
 * parent and child never produce the same bytes.
 *
 * Functions return 0 or -errno: -ENOMEM (allocation), -EIO (the entropy
 * source or the DRBG failed; the caller must not fall back to weaker
 * randomness). */
#ifndef CTL_RNG_H
#define CTL_RNG_H

#include <stddef.h>

typedef struct ctl_rng ctl_rng;

/* Creates and seeds a random source. pers is a personalisation string
 * mixed into the seed (may be NULL), e.g. "c2d-controller". *out is set
 * only on success. */
int ctl_rng_new(const char *pers, ctl_rng **out);

/* Frees the source and wipes its state. NULL is a no-op. */
void ctl_rng_free(ctl_rng *r);

/* Fills buf with len random bytes (any len; served in DRBG-sized pieces).
 * Thread safe. On failure buf's contents are unspecified. */
int ctl_rng_bytes(ctl_rng *r, void *buf, size_t len);

#endif
