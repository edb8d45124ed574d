/* Unit tests for the security primitives of issue 3: controller/password.c
 * (PBKDF2 hashes: round trip, wrong password, tampered encodings, length
 * limits, the default count once), controller/token.c (length, charset,
 * uniqueness, hash stability) and controller/throttle.c (threshold,
 * lockout growth and cap, reset on success, window expiry, eviction). */
#include "check.h"
#include "controller/password.h"
#include "controller/rng.h"
#include "controller/throttle.h"
#include "controller/token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Low count for speed; the default is tested once. */
#define FAST_ITER 1000u
#define PW "correct horse battery"
#define SEC INT64_C(1000000)

static void test_password(ctl_rng *rng)
{
    char enc[CTL_PW_ENCODED_MAX], enc2[CTL_PW_ENCODED_MAX], bad[CTL_PW_ENCODED_MAX];
    char big[CTL_PW_MAX_LEN + 2];

    CHECK(ctl_pw_hash(rng, PW, strlen(PW), FAST_ITER, enc, sizeof(enc)) == CTL_PW_OK);
    CHECK(strncmp(enc, "pbkdf2-sha256$1000$", 19) == 0);
    CHECK(strlen(enc) == 19 + 24 + 1 + 44);
    CHECK(ctl_pw_verify(PW, strlen(PW), enc) == CTL_PW_OK);
    CHECK(ctl_pw_verify("correct horse battery!", strlen(PW) + 1, enc) == CTL_PW_MISMATCH);
    CHECK(ctl_pw_verify("Correct horse battery", strlen(PW), enc) == CTL_PW_MISMATCH);
    CHECK(ctl_pw_verify(PW, strlen(PW) - 1, enc) == CTL_PW_MISMATCH);
    /* Fresh salt each time. */
    CHECK(ctl_pw_hash(rng, PW, strlen(PW), FAST_ITER, enc2, sizeof(enc2)) == CTL_PW_OK);
    CHECK(strcmp(enc, enc2) != 0);
    CHECK(ctl_pw_verify(PW, strlen(PW), enc2) == CTL_PW_OK);
    CHECK(ctl_pw_needs_rehash(enc, 0) == 1);
    CHECK(ctl_pw_needs_rehash(enc, FAST_ITER) == 0);
    CHECK(ctl_pw_needs_rehash("nope", 0) == -1);

    /* Length limits. */
    memset(big, 'a', sizeof(big));
    CHECK(ctl_pw_hash(rng, "123456789", 9, FAST_ITER, bad, sizeof(bad)) == CTL_PW_TOO_SHORT);
    CHECK(ctl_pw_hash(rng, "", 0, FAST_ITER, bad, sizeof(bad)) == CTL_PW_TOO_SHORT);
    CHECK(ctl_pw_hash(rng, "1234567890", 10, FAST_ITER, bad, sizeof(bad)) == CTL_PW_OK);
    CHECK(ctl_pw_verify("1234567890", 10, bad) == CTL_PW_OK);
    CHECK(ctl_pw_hash(rng, big, CTL_PW_MAX_LEN, FAST_ITER, bad, sizeof(bad)) == CTL_PW_OK);
    CHECK(ctl_pw_verify(big, CTL_PW_MAX_LEN, bad) == CTL_PW_OK);
    CHECK(ctl_pw_hash(rng, big, CTL_PW_MAX_LEN + 1, FAST_ITER, bad, sizeof(bad)) ==
          CTL_PW_TOO_LONG);
    CHECK(ctl_pw_verify(big, CTL_PW_MAX_LEN + 1, enc) == CTL_PW_TOO_LONG);
    CHECK(strcmp(ctl_pw_strerror(CTL_PW_TOO_SHORT), "password too short (at least 10 bytes)") == 0);
    /* Arguments. */
    CHECK(ctl_pw_hash(rng, PW, strlen(PW), CTL_PW_ITER_MAX + 1, bad, sizeof(bad)) ==
          CTL_PW_BAD_ARG);
    CHECK(ctl_pw_hash(rng, PW, strlen(PW), FAST_ITER, bad, 20) == CTL_PW_BAD_ARG);
    CHECK(ctl_pw_verify(PW, strlen(PW), NULL) == CTL_PW_BAD_ARG);

    /* Tampered encodings. */
    {
        static const char *const malformed[] = {
            "",
            "pbkdf2-sha256$",
            "pbkdf2-sha1$1000$AAAAAAAAAAAAAAAAAAAAAA==$"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "pbkdf2-sha256$$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "pbkdf2-sha256$0$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "pbkdf2-sha256$01000$AAAAAAAAAAAAAAAAAAAAAA==$"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "pbkdf2-sha256$-1000$AAAAAAAAAAAAAAAAAAAAAA==$"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "pbkdf2-sha256$1e3$AAAAAAAAAAAAAAAAAAAAAA==$"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "pbkdf2-sha256$abc$AAAAAAAAAAAAAAAAAAAAAA==$"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "pbkdf2-sha256$10000001$AAAAAAAAAAAAAAAAAAAAAA==$"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "pbkdf2-sha256$999999999999$AAAAAAAAAAAAAAAAAAAAAA==$"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            /* bad base64 characters, wrong padding, wrong lengths */
            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAA!A==$"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*"
            "A=",
            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAAAA$"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAB==$"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA==$"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA==$"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=$",
            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA==$"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= ",
            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA==",
            "pbkdf2-sha256$1000",
        };
        size_t i, len = strlen(enc);

        for (i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
            if (ctl_pw_verify(PW, strlen(PW), malformed[i]) != CTL_PW_BAD_ENCODING) {
                fprintf(stderr, "accepted malformed #%zu: %s\n", i, malformed[i]);
                failures++;
            }
        }
        /* The well-formed all-zero template itself parses (and mismatches). */
        CHECK(ctl_pw_verify(PW, strlen(PW),
                            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA==$"
                            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=") == CTL_PW_MISMATCH);
        /* Every truncation of a real hash is refused. */
        for (i = 0; i < len; i++) {
            memcpy(bad, enc, i);
            bad[i] = '\0';
            CHECK(ctl_pw_verify(PW, strlen(PW), bad) == CTL_PW_BAD_ENCODING);
        }
        /* Another iteration count: well-formed, but not this hash. */
        snprintf(bad, sizeof(bad), "pbkdf2-sha256$1001%s", enc + strlen("pbkdf2-sha256$1000"));
        CHECK(ctl_pw_verify(PW, strlen(PW), bad) == CTL_PW_MISMATCH);
        /* A flipped character in salt or hash. */
        memcpy(bad, enc, len + 1);
        bad[20] = bad[20] == 'A' ? 'B' : 'A';
        CHECK(ctl_pw_verify(PW, strlen(PW), bad) == CTL_PW_MISMATCH);
        memcpy(bad, enc, len + 1);
        bad[len - 3] = bad[len - 3] == 'A' ? 'B' : 'A';
        CHECK(ctl_pw_verify(PW, strlen(PW), bad) == CTL_PW_MISMATCH);
    }

    /* The default count, once. */
    CHECK(CTL_PW_ITER_DEFAULT >= 600000u);
    CHECK(ctl_pw_hash(rng, PW, strlen(PW), 0, enc, sizeof(enc)) == CTL_PW_OK);
    snprintf(bad, sizeof(bad), "pbkdf2-sha256$%u$", CTL_PW_ITER_DEFAULT);
    CHECK(strncmp(enc, bad, strlen(bad)) == 0);
    CHECK(ctl_pw_needs_rehash(enc, 0) == 0);
    CHECK(ctl_pw_verify(PW, strlen(PW), enc) == CTL_PW_OK);
}

static int tok_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

#define NTOK 2000

static void test_token(ctl_rng *rng)
{
    static char toks[NTOK][CTL_TOKEN_SIZE];
    char hash[CTL_TOKEN_HASH_SIZE], hash2[CTL_TOKEN_HASH_SIZE], t[64];
    int seen_dash = 0, seen_us = 0;
    size_t i, j;

    for (i = 0; i < NTOK; i++) {
        CHECK(ctl_token_new(rng, toks[i], hash) == 0);
        CHECK(strlen(toks[i]) == CTL_TOKEN_CHARS);
        for (j = 0; j < CTL_TOKEN_CHARS; j++) {
            char c = toks[i][j];
            CHECK((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_');
            seen_dash |= c == '-';
            seen_us |= c == '_';
        }
        CHECK(ctl_token_valid(toks[i]));
        CHECK(strlen(hash) == 64);
        CHECK(ctl_token_hash(toks[i], hash2) == 0);
        CHECK(strcmp(hash, hash2) == 0); /* stable */
        CHECK(strcmp(hash, toks[i]) != 0);
    }
    CHECK(seen_dash && seen_us); /* the url alphabet is in use */
    qsort(toks, NTOK, sizeof(toks[0]), tok_cmp);
    for (i = 1; i < NTOK; i++)
        CHECK(strcmp(toks[i - 1], toks[i]) != 0);

    /* A known value: SHA-256 of 43 'A's. */
    memset(t, 'A', CTL_TOKEN_CHARS);
    t[CTL_TOKEN_CHARS] = '\0';
    CHECK(ctl_token_hash(t, hash) == 0);
    CHECK(strcmp(hash, "0f007385b6f9d4b7eeb2748605afe1a984a0a3bfa3f014d09e2a784ce9e5cd1a") == 0);
    CHECK(ctl_token_hash(t, hash2) == 0 && strcmp(hash, hash2) == 0);

    /* Malformed bearers. */
    CHECK(!ctl_token_valid(NULL));
    CHECK(!ctl_token_valid(""));
    t[CTL_TOKEN_CHARS - 1] = '\0'; /* 42 chars */
    CHECK(ctl_token_hash(t, hash) == -EINVAL);
    t[CTL_TOKEN_CHARS - 1] = 'A';
    t[CTL_TOKEN_CHARS] = 'A'; /* 44 chars */
    t[CTL_TOKEN_CHARS + 1] = '\0';
    CHECK(ctl_token_hash(t, hash) == -EINVAL);
    t[CTL_TOKEN_CHARS] = '\0';
    t[5] = '+';
    CHECK(!ctl_token_valid(t));
    t[5] = '=';
    CHECK(!ctl_token_valid(t));
    t[5] = 'A';
    t[CTL_TOKEN_CHARS - 1] = 'B'; /* non-zero padding bits */
    CHECK(!ctl_token_valid(t));
    t[CTL_TOKEN_CHARS - 1] = 'E';
    CHECK(ctl_token_valid(t));
}

static ctl_throttle *mk(unsigned maxf, size_t cap)
{
    ctl_throttle_params p;
    ctl_throttle *t = NULL;

    ctl_throttle_params_default(&p);
    p.max_failures = maxf;
    p.capacity = cap;
    if (ctl_throttle_new(&p, &t) != 0)
        abort();
    return t;
}

static void test_throttle(void)
{
    ctl_throttle_params p;
    ctl_throttle *t;
    int64_t now = 1000 * SEC, r = 0, prev;
    unsigned i;

    ctl_throttle_params_default(&p);
    CHECK(p.max_failures == 5 && p.capacity == 4096);
    CHECK(p.max_lockout_us == 15 * 60 * SEC);
    p.capacity = 0;
    CHECK(ctl_throttle_new(&p, &t) == -EINVAL);
    ctl_throttle_free(NULL);

    /* Threshold: 4 failures pass, the 5th locks for the base time. */
    t = mk(5, 4096);
    for (i = 0; i < 4; i++) {
        CHECK(ctl_throttle_check(t, CTL_THROTTLE_EMAIL, "a@x.org", now, &r) == 0);
        CHECK(ctl_throttle_fail(t, CTL_THROTTLE_EMAIL, "a@x.org", now, &r) == 0);
        now += SEC;
    }
    CHECK(ctl_throttle_fail(t, CTL_THROTTLE_EMAIL, "A@X.org", now, &r) == -EAGAIN);
    CHECK(r == CTL_THROTTLE_BASE_LOCKOUT_US);
    now += 10 * SEC;
    CHECK(ctl_throttle_check(t, CTL_THROTTLE_EMAIL, "a@X.ORG", now, &r) == -EAGAIN);
    CHECK(r == CTL_THROTTLE_BASE_LOCKOUT_US - 10 * SEC);
    /* The address kind is case sensitive and separate from emails. */
    CHECK(ctl_throttle_check(t, CTL_THROTTLE_ADDR, "a@x.org", now, &r) == 0);
    CHECK(ctl_throttle_check(t, CTL_THROTTLE_EMAIL, "b@x.org", now, &r) == 0);
    /* A failure during the lockout changes nothing. */
    CHECK(ctl_throttle_fail(t, CTL_THROTTLE_EMAIL, "a@x.org", now, &r) == -EAGAIN);
    CHECK(r == CTL_THROTTLE_BASE_LOCKOUT_US - 10 * SEC);

    /* Growth: each failure after a lockout ends doubles it, up to the cap. */
    prev = CTL_THROTTLE_BASE_LOCKOUT_US;
    now += 20 * SEC;
    CHECK(ctl_throttle_check(t, CTL_THROTTLE_EMAIL, "a@x.org", now, &r) == 0);
    for (i = 0; i < 10; i++) {
        int64_t want =
            prev * 2 > CTL_THROTTLE_MAX_LOCKOUT_US ? CTL_THROTTLE_MAX_LOCKOUT_US : prev * 2;
        CHECK(ctl_throttle_fail(t, CTL_THROTTLE_EMAIL, "a@x.org", now, &r) == -EAGAIN);
        CHECK(r == want);
        prev = want;
        now += r;
        CHECK(ctl_throttle_check(t, CTL_THROTTLE_EMAIL, "a@x.org", now, &r) == 0);
    }
    CHECK(prev == CTL_THROTTLE_MAX_LOCKOUT_US);

    /* Success resets. */
    ctl_throttle_success(t, CTL_THROTTLE_EMAIL, "A@x.org");
    CHECK(ctl_throttle_count(t) == 0);
    for (i = 0; i < 4; i++)
        CHECK(ctl_throttle_fail(t, CTL_THROTTLE_EMAIL, "a@x.org", now, &r) == 0);
    ctl_throttle_success(t, CTL_THROTTLE_EMAIL, "a@x.org");
    for (i = 0; i < 4; i++)
        CHECK(ctl_throttle_fail(t, CTL_THROTTLE_EMAIL, "a@x.org", now, &r) == 0);
    CHECK(ctl_throttle_fail(t, CTL_THROTTLE_EMAIL, "a@x.org", now, &r) == -EAGAIN);
    CHECK(r == CTL_THROTTLE_BASE_LOCKOUT_US);

    /* Window expiry: failures spread wider than the window never lock. */
    for (i = 0; i < 20; i++) {
        CHECK(ctl_throttle_fail(t, CTL_THROTTLE_ADDR, "192.0.2.1", now, &r) == 0);
        now += CTL_THROTTLE_WINDOW_US / 4 + SEC;
    }
    /* And a locked key is forgotten a quiet window after its lockout. */
    now += 5 * 3600 * SEC;
    CHECK(ctl_throttle_check(t, CTL_THROTTLE_EMAIL, "a@x.org", now, &r) == 0);
    for (i = 0; i < 4; i++)
        CHECK(ctl_throttle_fail(t, CTL_THROTTLE_EMAIL, "a@x.org", now, &r) == 0);
    CHECK(ctl_throttle_fail(t, CTL_THROTTLE_EMAIL, "a@x.org", now, &r) == -EAGAIN);
    CHECK(r == CTL_THROTTLE_BASE_LOCKOUT_US); /* level back to the base */

    /* Login helpers: per address across emails, success clears both. */
    ctl_throttle_free(t);
    t = mk(5, 4096);
    for (i = 0; i < 4; i++) {
        char email[32];
        snprintf(email, sizeof(email), "u%u@x.org", i);
        CHECK(ctl_throttle_login_check(t, email, "198.51.100.7", now, &r) == 0);
        CHECK(ctl_throttle_login_result(t, email, "198.51.100.7", 0, now, &r) == 0);
    }
    CHECK(ctl_throttle_login_result(t, "u9@x.org", "198.51.100.7", 0, now, &r) == -EAGAIN);
    CHECK(ctl_throttle_login_check(t, "new@x.org", "198.51.100.7", now, &r) == -EAGAIN);
    CHECK(r == CTL_THROTTLE_BASE_LOCKOUT_US);
    CHECK(ctl_throttle_login_check(t, "new@x.org", "198.51.100.8", now, &r) == 0);
    now += CTL_THROTTLE_BASE_LOCKOUT_US;
    CHECK(ctl_throttle_login_result(t, "u9@x.org", "198.51.100.7", 1, now, &r) == 0);
    CHECK(ctl_throttle_login_check(t, "u9@x.org", "198.51.100.7", now, &r) == 0);
    ctl_throttle_free(t);

    /* Eviction: never more than capacity keys; locked keys outlive LRU ones. */
    t = mk(2, 64);
    CHECK(ctl_throttle_fail(t, CTL_THROTTLE_ADDR, "locked", now, &r) == 0);
    CHECK(ctl_throttle_fail(t, CTL_THROTTLE_ADDR, "locked", now, &r) == -EAGAIN);
    for (i = 0; i < 10000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "10.0.%u.%u", i / 256, i % 256);
        CHECK(ctl_throttle_fail(t, CTL_THROTTLE_ADDR, key, now + i, &r) == 0);
        CHECK(ctl_throttle_count(t) <= 64);
    }
    CHECK(ctl_throttle_count(t) == 64);
    CHECK(ctl_throttle_check(t, CTL_THROTTLE_ADDR, "locked", now + i, &r) == -EAGAIN);
    /* The most recent keys are kept, the oldest went. */
    CHECK(ctl_throttle_fail(t, CTL_THROTTLE_ADDR, "10.0.39.15", now + i, &r) == -EAGAIN);
    CHECK(ctl_throttle_fail(t, CTL_THROTTLE_ADDR, "10.0.0.0", now + i, &r) == 0);
    ctl_throttle_free(t);

    /* Capacity 1 with a locked key: the new key takes its place. */
    t = mk(1, 1);
    CHECK(ctl_throttle_fail(t, CTL_THROTTLE_ADDR, "a", now, &r) == -EAGAIN);
    CHECK(ctl_throttle_fail(t, CTL_THROTTLE_ADDR, "b", now, &r) == -EAGAIN);
    CHECK(ctl_throttle_count(t) == 1);
    ctl_throttle_free(t);
}

int main(void)
{
    ctl_rng *rng = NULL;

    CHECK(ctl_rng_new("test_auth", &rng) == 0);
    if (!rng)
        return 1;
    {
        unsigned char big[5000], zero[5000];
        memset(big, 0, sizeof(big));
        memset(zero, 0, sizeof(zero));
        CHECK(ctl_rng_bytes(rng, big, sizeof(big)) == 0); /* more than one DRBG request */
        CHECK(memcmp(big + 4000, zero, 1000) != 0);
    }
    test_password(rng);
    test_token(rng);
    test_throttle();
    ctl_rng_free(rng);
    ctl_rng_free(NULL);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
