/* The pairing request parser (ctl_pair_req_parse) and the code input
 * (ctl_pair_code_norm) on arbitrary bytes. An accepted request has a code
 * of at most CTL_PAIR_CODE_INPUT_MAX bytes and a non-empty CSR of at most
 * C2D_PKI_CSR_MAX bytes without a NUL; a refusal leaves the output as it
 * was. The code is then checked against a stored state: no result but a
 * match changes nothing but the count. */
#include "controller/pairing.h"
#include "fuzz.h"

#include <errno.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ctl_pair_req r;
    memset(&r, 0xa5, sizeof(r));
    int rc = ctl_pair_req_parse(data, size, &r);
    if (rc != 0) {
        FUZZ_ASSERT(rc == -EINVAL || rc == -EFBIG || rc == -ENOMEM);
        FUZZ_ASSERT(rc != -EFBIG || size > CTL_PAIR_REQ_MAX);
        FUZZ_ASSERT(((const unsigned char *)&r)[0] == 0xa5);
        return 0;
    }
    FUZZ_ASSERT(strlen(r.code) <= CTL_PAIR_CODE_INPUT_MAX);
    FUZZ_ASSERT(r.csr && r.csr_len == strlen(r.csr) && r.csr_len > 0 &&
                r.csr_len <= C2D_PKI_CSR_MAX);
    char norm[CTL_PAIR_CODE_LEN + 1];
    if (ctl_pair_code_norm(r.code, norm) == 0) {
        FUZZ_ASSERT(strlen(norm) == CTL_PAIR_CODE_LEN);
        FUZZ_ASSERT(strspn(norm, CTL_PAIR_ALPHABET) == CTL_PAIR_CODE_LEN);
    }
    /* A state whose hash no input matches: only WRONG_CODE, counted. */
    ctl_pair_state st;
    memset(&st, 0, sizeof(st));
    memset(st.hash, '0', 64);
    st.expires_us = 1;
    FUZZ_ASSERT(ctl_pair_check(&st, "SN-1", r.code, 0) == CTL_PAIR_WRONG_CODE && st.fails == 1);
    ctl_pair_req_clear(&r);
    return 0;
}
