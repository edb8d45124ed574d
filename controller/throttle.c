/* Failed-login throttling (see throttle.h). */
#include "controller/throttle.h"

#include <mbedtls/sha256.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned char digest[32];
    int used;
    unsigned fails;        /* failures in the current window */
    unsigned lockouts;     /* lockouts since the key was last forgotten */
    int64_t window_start;  /* first failure of the window */
    int64_t lockout_until; /* 0: never locked */
    int64_t last_seen;     /* for eviction */
} entry;

struct ctl_throttle {
    pthread_mutex_t mu;
    ctl_throttle_params p;
    size_t count;
    entry *e;
};

void ctl_throttle_params_default(ctl_throttle_params *p)
{
    p->max_failures = CTL_THROTTLE_MAX_FAILURES;
    p->window_us = CTL_THROTTLE_WINDOW_US;
    p->base_lockout_us = CTL_THROTTLE_BASE_LOCKOUT_US;
    p->max_lockout_us = CTL_THROTTLE_MAX_LOCKOUT_US;
    p->capacity = CTL_THROTTLE_CAPACITY;
}

int ctl_throttle_new(const ctl_throttle_params *p, ctl_throttle **out)
{
    ctl_throttle_params d;
    ctl_throttle *t;

    if (!p) {
        ctl_throttle_params_default(&d);
        p = &d;
    }
    if (p->max_failures == 0 || p->window_us <= 0 || p->base_lockout_us <= 0 ||
        p->max_lockout_us < p->base_lockout_us || p->capacity == 0 ||
        p->capacity > CTL_THROTTLE_CAPACITY_MAX)
        return -EINVAL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->e = calloc(p->capacity, sizeof(*t->e));
    if (!t->e || pthread_mutex_init(&t->mu, NULL) != 0) {
        free(t->e);
        free(t);
        return -ENOMEM;
    }
    t->p = *p;
    *out = t;
    return 0;
}

void ctl_throttle_free(ctl_throttle *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t->e);
    free(t);
}

/* SHA-256 of kind byte + key, emails lowercased (ASCII). */
static void digest_key(ctl_throttle_kind kind, const char *key, unsigned char out[32])
{
    mbedtls_sha256_context c;
    unsigned char k = (unsigned char)kind;
    unsigned char buf[64];
    size_t n = 0;

    mbedtls_sha256_init(&c);
    mbedtls_sha256_starts_ret(&c, 0);
    mbedtls_sha256_update_ret(&c, &k, 1);
    for (; *key; key++) {
        unsigned char ch = (unsigned char)*key;
        if (kind == CTL_THROTTLE_EMAIL && ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch - 'A' + 'a');
        buf[n++] = ch;
        if (n == sizeof(buf)) {
            mbedtls_sha256_update_ret(&c, buf, n);
            n = 0;
        }
    }
    mbedtls_sha256_update_ret(&c, buf, n);
    mbedtls_sha256_finish_ret(&c, out);
    mbedtls_sha256_free(&c);
}

/* A key that has been quiet for a window is forgotten: no lockout running
 * and window_us since the later of its window start and its lockout end. */
static int expired(const ctl_throttle *t, const entry *e, int64_t now)
{
    int64_t since = e->lockout_until > e->window_start ? e->lockout_until : e->window_start;
    return now >= since && now - since >= t->p.window_us;
}

static void forget(ctl_throttle *t, entry *e)
{
    memset(e, 0, sizeof(*e));
    t->count--;
}

static entry *find(ctl_throttle *t, const unsigned char d[32], int64_t now)
{
    size_t i;

    for (i = 0; i < t->p.capacity; i++) {
        entry *e = &t->e[i];
        if (e->used && memcmp(e->digest, d, 32) == 0) {
            if (expired(t, e, now)) {
                forget(t, e);
                return NULL;
            }
            return e;
        }
    }
    return NULL;
}

/* A free slot, or the victim described in throttle.h. */
static entry *slot(ctl_throttle *t, int64_t now)
{
    entry *lru = NULL, *locked = NULL;
    size_t i;

    for (i = 0; i < t->p.capacity; i++) {
        entry *e = &t->e[i];
        if (!e->used)
            return e;
        if (expired(t, e, now)) {
            forget(t, e);
            return e;
        }
        if (e->lockout_until > now) {
            if (!locked || e->lockout_until < locked->lockout_until)
                locked = e;
        } else if (!lru || e->last_seen < lru->last_seen) {
            lru = e;
        }
    }
    lru = lru ? lru : locked;
    forget(t, lru);
    return lru;
}

static int check_locked(ctl_throttle *t, const unsigned char d[32], int64_t now, int64_t *retry)
{
    entry *e = find(t, d, now);

    if (e && e->lockout_until > now) {
        *retry = e->lockout_until - now;
        return -EAGAIN;
    }
    *retry = 0;
    return 0;
}

static int fail_locked(ctl_throttle *t, const unsigned char d[32], int64_t now, int64_t *retry)
{
    entry *e = find(t, d, now);
    int64_t lock;
    unsigned shift;

    if (!e) {
        e = slot(t, now);
        memcpy(e->digest, d, 32);
        e->used = 1;
        e->window_start = now;
        t->count++;
    }
    e->last_seen = now;
    if (e->lockout_until > now) { /* an attempt the caller did not check */
        *retry = e->lockout_until - now;
        return -EAGAIN;
    }
    if (e->lockouts == 0 && now - e->window_start >= t->p.window_us) {
        e->fails = 0; /* a new window */
        e->window_start = now;
    }
    if (e->fails < t->p.max_failures)
        e->fails++;
    if (e->fails < t->p.max_failures) {
        *retry = 0;
        return 0;
    }
    /* Locked: base << lockouts, capped (the shift stops before overflow). */
    lock = t->p.base_lockout_us;
    for (shift = 0; shift < e->lockouts && lock < t->p.max_lockout_us; shift++)
        lock *= 2;
    if (lock > t->p.max_lockout_us)
        lock = t->p.max_lockout_us;
    e->lockouts++;
    e->lockout_until = now + lock;
    *retry = lock;
    return -EAGAIN;
}

static void success_locked(ctl_throttle *t, const unsigned char d[32])
{
    size_t i;

    for (i = 0; i < t->p.capacity; i++)
        if (t->e[i].used && memcmp(t->e[i].digest, d, 32) == 0) {
            forget(t, &t->e[i]);
            return;
        }
}

int ctl_throttle_check(ctl_throttle *t, ctl_throttle_kind kind, const char *key, int64_t now_us,
                       int64_t *retry_after_us)
{
    unsigned char d[32];
    int64_t r;
    int rc;

    digest_key(kind, key, d);
    pthread_mutex_lock(&t->mu);
    rc = check_locked(t, d, now_us, &r);
    pthread_mutex_unlock(&t->mu);
    if (rc && retry_after_us)
        *retry_after_us = r;
    return rc;
}

int ctl_throttle_fail(ctl_throttle *t, ctl_throttle_kind kind, const char *key, int64_t now_us,
                      int64_t *retry_after_us)
{
    unsigned char d[32];
    int64_t r;
    int rc;

    digest_key(kind, key, d);
    pthread_mutex_lock(&t->mu);
    rc = fail_locked(t, d, now_us, &r);
    pthread_mutex_unlock(&t->mu);
    if (rc && retry_after_us)
        *retry_after_us = r;
    return rc;
}

void ctl_throttle_success(ctl_throttle *t, ctl_throttle_kind kind, const char *key)
{
    unsigned char d[32];

    digest_key(kind, key, d);
    pthread_mutex_lock(&t->mu);
    success_locked(t, d);
    pthread_mutex_unlock(&t->mu);
}

int ctl_throttle_login_check(ctl_throttle *t, const char *email, const char *addr, int64_t now_us,
                             int64_t *retry_after_us)
{
    unsigned char de[32], da[32];
    int64_t re, ra;
    int rce, rca;

    digest_key(CTL_THROTTLE_EMAIL, email, de);
    digest_key(CTL_THROTTLE_ADDR, addr, da);
    pthread_mutex_lock(&t->mu);
    rce = check_locked(t, de, now_us, &re);
    rca = check_locked(t, da, now_us, &ra);
    pthread_mutex_unlock(&t->mu);
    if (!rce && !rca)
        return 0;
    if (retry_after_us)
        *retry_after_us = re > ra ? re : ra;
    return -EAGAIN;
}

int ctl_throttle_login_result(ctl_throttle *t, const char *email, const char *addr, int ok,
                              int64_t now_us, int64_t *retry_after_us)
{
    unsigned char de[32], da[32];
    int64_t re = 0, ra = 0;
    int rce = 0, rca = 0;

    digest_key(CTL_THROTTLE_EMAIL, email, de);
    digest_key(CTL_THROTTLE_ADDR, addr, da);
    pthread_mutex_lock(&t->mu);
    if (ok) {
        success_locked(t, de);
        success_locked(t, da);
    } else {
        rce = fail_locked(t, de, now_us, &re);
        rca = fail_locked(t, da, now_us, &ra);
    }
    pthread_mutex_unlock(&t->mu);
    if (!rce && !rca)
        return 0;
    if (retry_after_us)
        *retry_after_us = re > ra ? re : ra;
    return -EAGAIN;
}

size_t ctl_throttle_count(ctl_throttle *t)
{
    size_t n;

    pthread_mutex_lock(&t->mu);
    n = t->count;
    pthread_mutex_unlock(&t->mu);
    return n;
}
