/* CTR-DRBG random source (see rng.h). */
#include "controller/rng.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/platform_util.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ctl_rng {
    pthread_mutex_t mu;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    pid_t pid; /* the process that last seeded; a fork reseeds */
};

int ctl_rng_new(const char *pers, ctl_rng **out)
{
    ctl_rng *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return -ENOMEM;
    }
    mbedtls_entropy_init(&r->entropy);
    mbedtls_ctr_drbg_init(&r->drbg);
    if (mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->entropy,
                              (const unsigned char *)pers, pers ? strlen(pers) : 0) != 0)
        goto fail;
    r->pid = getpid();
    *out = r;
    return 0;
fail:
    ctl_rng_free(r);
    return -EIO;
}

void ctl_rng_free(ctl_rng *r)
{
    if (!r)
        return;
    mbedtls_ctr_drbg_free(&r->drbg);
    mbedtls_entropy_free(&r->entropy);
    pthread_mutex_destroy(&r->mu);
    mbedtls_platform_zeroize(r, sizeof(*r));
    free(r);
}

int ctl_rng_bytes(ctl_rng *r, void *buf, size_t len)
{
    unsigned char *p = buf;
    int rc = 0;

    pthread_mutex_lock(&r->mu);
    if (r->pid != getpid()) {
        if (mbedtls_ctr_drbg_reseed(&r->drbg, NULL, 0) != 0) {
            rc = -EIO;
            goto out;
        }
        r->pid = getpid();
    }
    while (len > 0) {
        size_t n = len < MBEDTLS_CTR_DRBG_MAX_REQUEST ? len : MBEDTLS_CTR_DRBG_MAX_REQUEST;
        if (mbedtls_ctr_drbg_random(&r->drbg, p, n) != 0) {
            rc = -EIO;
            goto out;
        }
        p += n;
        len -= n;
    }
out:
    pthread_mutex_unlock(&r->mu);
    return rc;
}
