/* controller/pairing.c, the pure part: code generation and input, the
 * stored state, the lockout and the request parser (the topic is proto's
 * c2d_pair_topic_parse: tests/unit/test_proto.c). */
#include "controller/pairing.h"

#include "check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MIN_US (INT64_C(60) * 1000000)

static void test_codes(ctl_rng *rng)
{
    ctl_pair_state st;
    memset(&st, 0, sizeof(st));
    char shown[CTL_PAIR_CODE_SHOWN + 1], norm[CTL_PAIR_CODE_LEN + 1];
    int seen[256] = {0};
    for (int i = 0; i < 2000; i++) {
        CHECK(ctl_pair_issue(&st, "SN1", rng, 0, shown) == 0);
        CHECK(strlen(shown) == 9 && shown[4] == '-');
        for (int k = 0; k < 9; k++)
            if (k != 4) {
                CHECK(strchr(CTL_PAIR_ALPHABET, shown[k]) != NULL);
                seen[(unsigned char)shown[k]]++;
            }
    }
    /* every letter of the alphabet turns up, none of the ambiguous ones */
    for (const char *a = CTL_PAIR_ALPHABET; *a; a++)
        CHECK(seen[(unsigned char)*a] > 0);
    CHECK(!seen['0'] && !seen['O'] && !seen['1'] && !seen['I'] && !seen['L']);

    CHECK(ctl_pair_code_norm("abcd-efgh", norm) == 0 && strcmp(norm, "ABCDEFGH") == 0);
    CHECK(ctl_pair_code_norm(" AB-CD EF-GH ", norm) == 0 && strcmp(norm, "ABCDEFGH") == 0);
    CHECK(ctl_pair_code_norm("ABCDEFG", norm) == -EINVAL);
    CHECK(ctl_pair_code_norm("ABCDEFGHJ", norm) == -EINVAL);
    CHECK(ctl_pair_code_norm("ABCD-EFG0", norm) == -EINVAL); /* 0 is not in the alphabet */
    CHECK(ctl_pair_code_norm("ABCD_EFGH", norm) == -EINVAL);
    CHECK(ctl_pair_code_norm("", norm) == -EINVAL);
    CHECK(ctl_pair_code_norm(NULL, norm) == -EINVAL);
    CHECK(ctl_pair_code_norm("----------------------------------ABCDEFGH", norm) == -EINVAL);
}

static void test_check(ctl_rng *rng)
{
    ctl_pair_state st;
    memset(&st, 0, sizeof(st));
    char code[CTL_PAIR_CODE_SHOWN + 1], lower[CTL_PAIR_CODE_SHOWN + 1];
    int64_t t0 = INT64_C(1764480000000000);
    /* no code issued: every code is wrong */
    CHECK(ctl_pair_check(&st, "SN1", "ABCD-EFGH", t0) == CTL_PAIR_WRONG_CODE);
    memset(&st, 0, sizeof(st));
    CHECK(ctl_pair_issue(&st, "SN1", rng, t0, code) == 0);
    for (size_t i = 0; i <= strlen(code); i++)
        lower[i] = (char)(code[i] >= 'A' && code[i] <= 'Z' ? code[i] - 'A' + 'a' : code[i]);
    /* bound to the serial */
    CHECK(ctl_pair_check(&st, "SN2", code, t0) == CTL_PAIR_WRONG_CODE);
    CHECK(st.fails == 1);
    /* case- and dash-insensitive; a match is not consumed by the check */
    CHECK(ctl_pair_check(&st, "SN1", lower, t0 + 1) == CTL_PAIR_OK);
    CHECK(ctl_pair_check(&st, "SN1", lower + 0, t0 + 1) == CTL_PAIR_OK);
    ctl_pair_consume(&st);
    CHECK(st.fails == 0);
    CHECK(ctl_pair_check(&st, "SN1", code, t0 + 2) == CTL_PAIR_USED);
    /* a new code replaces the old one */
    char code2[CTL_PAIR_CODE_SHOWN + 1];
    CHECK(ctl_pair_issue(&st, "SN1", rng, t0, code2) == 0);
    if (strcmp(code, code2) != 0)
        CHECK(ctl_pair_check(&st, "SN1", code, t0 + 3) == CTL_PAIR_WRONG_CODE);
    CHECK(ctl_pair_check(&st, "SN1", code2, t0 + 3) == CTL_PAIR_OK);
    /* expiry: valid up to TTL, not at it */
    CHECK(ctl_pair_check(&st, "SN1", code2, t0 + CTL_PAIR_TTL_US - 1) == CTL_PAIR_OK);
    CHECK(ctl_pair_check(&st, "SN1", code2, t0 + CTL_PAIR_TTL_US) == CTL_PAIR_EXPIRED);
}

static void test_lockout(ctl_rng *rng)
{
    ctl_pair_state st;
    memset(&st, 0, sizeof(st));
    char code[CTL_PAIR_CODE_SHOWN + 1];
    int64_t t = INT64_C(1764480000000000);
    CHECK(ctl_pair_issue(&st, "SN1", rng, t, code) == 0);
    const char *wrong = strcmp(code, "2222-2222") ? "2222-2222" : "3333-3333";
    for (int i = 1; i < CTL_PAIR_MAX_FAILS; i++) {
        CHECK(ctl_pair_check(&st, "SN1", wrong, t) == CTL_PAIR_WRONG_CODE);
        CHECK(st.fails == i && st.locked_until_us == 0);
    }
    /* the MAX_FAILS-th wrong code locks; then even the right code is refused */
    CHECK(ctl_pair_check(&st, "SN1", wrong, t) == CTL_PAIR_WRONG_CODE);
    CHECK(st.locked_until_us == t + CTL_PAIR_LOCK_US);
    CHECK(ctl_pair_check(&st, "SN1", code, t + 1) == CTL_PAIR_LOCKED);
    CHECK(ctl_pair_check(&st, "SN1", code, t + CTL_PAIR_LOCK_US - 1) == CTL_PAIR_LOCKED);
    /* a new code does not lift the lock */
    CHECK(ctl_pair_issue(&st, "SN1", rng, t + 2, code) == 0);
    CHECK(ctl_pair_check(&st, "SN1", code, t + 3) == CTL_PAIR_LOCKED);
    /* after the lock, a fresh count and the right code works */
    CHECK(ctl_pair_check(&st, "SN1", code, t + CTL_PAIR_LOCK_US) == CTL_PAIR_OK);
    CHECK(st.fails == 0 && st.locked_until_us == 0);

    /* the state survives its JSON form */
    cJSON *r = cJSON_Parse("{\"serial\":\"SN1\",\"_pair\":{\"hash\":\"x\"}}");
    ctl_pair_state back;
    CHECK(r && ctl_pair_state_get(r, &back) == -EINVAL);
    st.fails = 3;
    CHECK(ctl_pair_state_put(r, &st) == 0);
    CHECK(ctl_pair_state_get(r, &back) == 0);
    CHECK(strcmp(back.hash, st.hash) == 0 && back.expires_us == st.expires_us &&
          back.used == st.used && back.fails == 3 && back.locked_until_us == st.locked_until_us);
    cJSON_Delete(r);
    r = cJSON_Parse("{}");
    CHECK(r && ctl_pair_state_get(r, &back) == 0 && back.hash[0] == '\0');
    cJSON_Delete(r);
}

static int parse(const char *s)
{
    ctl_pair_req r;
    int rc = ctl_pair_req_parse(s, strlen(s), &r);
    if (rc == 0)
        ctl_pair_req_clear(&r);
    return rc;
}

static void test_request(void)
{
    ctl_pair_req r;
    const char *ok = "{\"code\":\"abcd-efgh\",\"csr\":\"-----BEGIN\"}";
    CHECK(ctl_pair_req_parse(ok, strlen(ok), &r) == 0);
    CHECK(strcmp(r.code, "abcd-efgh") == 0 && strcmp(r.csr, "-----BEGIN") == 0 && r.csr_len == 10);
    ctl_pair_req_clear(&r);
    CHECK(parse("{\"code\":\"a\"}") == -EINVAL);
    CHECK(parse("{\"csr\":\"a\"}") == -EINVAL);
    CHECK(parse("{\"code\":\"a\",\"csr\":\"\"}") == -EINVAL);
    CHECK(parse("{\"code\":\"a\",\"csr\":\"b\",\"device_id\":\"x\"}") == -EINVAL);
    CHECK(parse("{\"code\":\"a\",\"csr\":\"b\",\"code\":\"c\"}") == -EINVAL);
    CHECK(parse("{\"code\":1,\"csr\":\"b\"}") == -EINVAL);
    CHECK(parse("[]") == -EINVAL);
    CHECK(parse("{\"code\":\"a\",\"csr\":\"b\"} x") == -EINVAL);
    CHECK(parse("{\"code\":\"a\",\"csr\":\"b\"") == -EINVAL);
    CHECK(parse("{\"code\":\"123456789012345678901234567890123\",\"csr\":\"b\"}") == -EINVAL);
    size_t big = CTL_PAIR_REQ_MAX + 1;
    char *b = malloc(big);
    if (b) {
        memset(b, ' ', big);
        CHECK(ctl_pair_req_parse(b, big, &r) == -EFBIG);
        free(b);
    }
    CHECK(ctl_pair_req_parse("{\"code\":\"a\0\",\"csr\":\"b\"}", 22, &r) == -EINVAL);
    /* an escaped NUL would cut the code short (test_40_attacker) */
    CHECK(parse("{\"code\":\"abcd-efgh\\u0000x\",\"csr\":\"b\"}") == -EINVAL);
    CHECK(parse("{\"code\":\"abcd-efgh\",\"csr\":\"-----BEGIN\\u0000\"}") == -EINVAL);
}

int main(void)
{
    ctl_rng *rng;
    if (ctl_rng_new("test_pairing", &rng) != 0)
        return 1;
    test_codes(rng);
    test_check(rng);
    test_lockout(rng);
    test_request();
    ctl_rng_free(rng);
    for (int r = CTL_PAIR_OK; r <= CTL_PAIR_INTERNAL; r++)
        CHECK(ctl_pair_result_name((ctl_pair_result)r)[0] != '\0');
    CHECK(strcmp(ctl_pair_result_name(CTL_PAIR_WRONG_CODE), "wrong_code") == 0);
    return check_result();
}
