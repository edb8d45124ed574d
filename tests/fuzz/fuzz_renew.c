/* The renewal request parser (ctl_renew_req_parse) and the topic parser
 * (ctl_renew_topic_device) on arbitrary bytes. An accepted request has a
 * non-empty CSR of at most C2D_PKI_CSR_MAX bytes without a NUL; a refusal
 * writes nothing. An accepted topic is exactly c2d/v1/d/{device}/csr with
 * a valid device id that is not reserved. */
#include "controller/renew.h"
#include "fuzz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

    /* The same bytes as a topic (up to the first NUL). */
    char topic[C2D_TOPIC_MAX + 16], dev[C2D_DEVICE_ID_MAX + 1] = "unchanged", again[160];
    size_t tn = size < sizeof(topic) - 1 ? size : sizeof(topic) - 1;
    memcpy(topic, data, tn);
    topic[tn] = '\0';
    if (ctl_renew_topic_device(topic, dev) == 0) {
        FUZZ_ASSERT(c2d_device_id_valid(dev) && strncasecmp(dev, "c2d-", 4) != 0);
        snprintf(again, sizeof(again), "c2d/v1/d/%s/csr", dev);
        FUZZ_ASSERT(strcmp(again, topic) == 0);
    } else {
        FUZZ_ASSERT(strcmp(dev, "unchanged") == 0);
    }
    return 0;
}
