/* Failed-login throttling, per account (email, compared lowercased) and per
 * remote address.
 *
 * For each key: failures are counted in a window of window_us starting at
 * the first one. The max_failures-th failure in a window locks the key for
 * base_lockout_us; every further failure after a lockout ends locks it
 * again for twice as long as the last time, up to max_lockout_us. A key
 * forgets everything once it has been quiet (no failure, no lockout) for
 * window_us, and at once on ctl_throttle_success.
 *
 * Memory is bounded: at most capacity keys. Keys are stored as SHA-256
 * digests (no emails or addresses kept in memory). A new key in a full
 * table evicts the least recently used key that is not locked, or if every
 * key is locked, the one whose lockout ends first. Each call scans the
 * table (O(capacity), microseconds for 4096 keys: small beside one
 * password verify).
 *
 * Pure logic: time comes in as now_us (use c2d_mono_us()). Thread safe:
 * one mutex per table.
 *
 * Callers: throttle the address key with the IPv6 /64 (or the IPv4
 * address), not the full IPv6 address, or one host can rotate through keys.
 * Per-account lockouts let anyone delay a known account's logins by at most
 * max_lockout_us at a time; that is the price of stopping guessing. */
#ifndef CTL_THROTTLE_H
#define CTL_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ctl_throttle ctl_throttle;

typedef enum {
    CTL_THROTTLE_EMAIL = 0, /* key is an email address: ASCII case is ignored */
    CTL_THROTTLE_ADDR = 1,  /* key is a remote address: compared byte for byte */
} ctl_throttle_kind;

typedef struct {
    unsigned max_failures;   /* failures in a window before the first lockout */
    int64_t window_us;       /* counting window, and the quiet time that forgets a key */
    int64_t base_lockout_us; /* first lockout; doubles with each further one */
    int64_t max_lockout_us;  /* cap on one lockout */
    size_t capacity;         /* most keys remembered */
} ctl_throttle_params;

/* Defaults: 5 failures in 15 min; lockouts of 30 s doubling up to 15 min;
 * 4096 keys (about 0.4 MiB). */
#define CTL_THROTTLE_MAX_FAILURES 5
#define CTL_THROTTLE_WINDOW_US (15 * 60 * INT64_C(1000000))
#define CTL_THROTTLE_BASE_LOCKOUT_US (30 * INT64_C(1000000))
#define CTL_THROTTLE_MAX_LOCKOUT_US (15 * 60 * INT64_C(1000000))
#define CTL_THROTTLE_CAPACITY 4096
/* Largest capacity accepted (bounds the allocation and the scan). */
#define CTL_THROTTLE_CAPACITY_MAX 65536

/* Fills p with the defaults above. */
void ctl_throttle_params_default(ctl_throttle_params *p);

/* Creates a table. p NULL means the defaults. -EINVAL if a parameter is 0
 * or negative, base > max lockout, or capacity > CTL_THROTTLE_CAPACITY_MAX;
 * -ENOMEM. *out is set only on success. */
int ctl_throttle_new(const ctl_throttle_params *p, ctl_throttle **out);

/* Frees the table. NULL is a no-op. */
void ctl_throttle_free(ctl_throttle *t);

/* Before an attempt: 0 if key may try now; -EAGAIN if it is locked, with
 * *retry_after_us (may be NULL) set to the time until the lockout ends
 * (> 0). key is NUL-terminated, any length. */
int ctl_throttle_check(ctl_throttle *t, ctl_throttle_kind kind, const char *key, int64_t now_us,
                       int64_t *retry_after_us);

/* Records a failed attempt of key. Returns 0, or -EAGAIN if key is now
 * locked, with *retry_after_us (may be NULL) set as for check. */
int ctl_throttle_fail(ctl_throttle *t, ctl_throttle_kind kind, const char *key, int64_t now_us,
                      int64_t *retry_after_us);

/* Forgets key (a successful login). */
void ctl_throttle_success(ctl_throttle *t, ctl_throttle_kind kind, const char *key);

/* A login from addr for email: checks both keys; -EAGAIN with the longer
 * wait if either is locked, else 0. */
int ctl_throttle_login_check(ctl_throttle *t, const char *email, const char *addr, int64_t now_us,
                             int64_t *retry_after_us);

/* Records the outcome of a login that check allowed: ok forgets both keys
 * (a correct password from that address); a failure counts against both.
 * Returns what ctl_throttle_fail returns for the longer lockout (0 on ok). */
int ctl_throttle_login_result(ctl_throttle *t, const char *email, const char *addr, int ok,
                              int64_t now_us, int64_t *retry_after_us);

/* Number of keys remembered (for tests and metrics). */
size_t ctl_throttle_count(ctl_throttle *t);

#endif
