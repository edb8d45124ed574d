/* The renewal request parser (ctl_renew_req_parse) on arbitrary bytes. An
 * accepted request has a non-empty CSR of at most C2D_PKI_CSR_MAX bytes
 * without a NUL; a refusal writes nothing. The renewal topics are proto's
 * (C2D_TOPIC_CSR, C2D_TOPIC_CERT): tests/fuzz/fuzz_topic.c. */
#include "controller/renew.h"
#include "fuzz.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *csr = (char *)&csr; /* a canary: must stay unless accepted */
    size_t n = 12345;
    int rc = ctl_renew_req_parse(data, size, &csr, &n);
    if (rc != 0) {
        FUZZ_ASSERT(rc == -EINVAL || rc == -EFBIG || rc == -ENOMEM);
        FUZZ_ASSERT(rc != -EFBIG || size > CTL_RENEW_REQ_MAX);
        FUZZ_ASSERT(csr == (char *)&csr && n == 12345);
    } else {
        FUZZ_ASSERT(csr && n == strlen(csr) && n > 0 && n <= C2D_PKI_CSR_MAX);
        free(csr);
    }
    return 0;
}
