/* c2d_pki_sign_csr on arbitrary bytes as the CSR (PEM or DER), for the
 * device id "rec-1", with a CA made once in memory. Invariants: the only
 * outcomes are a certificate, -EBADMSG (does not parse, bad signature) and
 * -EPERM (policy); a failure has a reason; a certificate is for CN rec-1,
 * not a CA, and within the device lifetime cap. */
#include "fuzz.h"
#include "common/c2d_pki.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEVICE_ID "rec-1"
#define DAYS 30

static c2d_pki *pki;
static c2d_pki_ca *ca;

/* Root -> issuing CA, as c2d-ca init makes them, kept for the whole run. */
static void setup(void)
{
    c2d_pki_key *rk = NULL, *ik = NULL;
    c2d_pki_ca *root = NULL;
    char *rpem = NULL, *rkey = NULL, *ipem = NULL, *ikey = NULL;
    FUZZ_ASSERT(c2d_pki_new(&pki) == 0);
    FUZZ_ASSERT(c2d_pki_key_generate(pki, &rk) == 0 && c2d_pki_key_generate(pki, &ik) == 0);
    FUZZ_ASSERT(c2d_pki_key_pem(pki, rk, &rkey) == 0 && c2d_pki_key_pem(pki, ik, &ikey) == 0);
    FUZZ_ASSERT(c2d_pki_make_root(pki, rk, "fuzz root", 30, &rpem) == 0);
    FUZZ_ASSERT(c2d_pki_ca_parse(pki, rpem, strlen(rpem), rkey, strlen(rkey), &root) == 0);
    FUZZ_ASSERT(c2d_pki_make_issuing(pki, root, ik, "fuzz issuing", 30, &ipem) == 0);
    FUZZ_ASSERT(c2d_pki_ca_parse(pki, ipem, strlen(ipem), ikey, strlen(ikey), &ca) == 0);
    c2d_pki_ca_free(root);
    c2d_pki_key_free(rk);
    c2d_pki_key_free(ik);
    free(rpem);
    free(rkey);
    free(ipem);
    free(ikey);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!pki)
        setup();
    char *pem = NULL;
    int rc = c2d_pki_sign_csr(pki, ca, data, size, DEVICE_ID, DAYS, &pem);
    if (rc != 0) {
        FUZZ_ASSERT(rc == -EBADMSG || rc == -EPERM);
        FUZZ_ASSERT(pem == NULL);
        FUZZ_ASSERT(c2d_pki_error(pki)[0] != '\0');
        return 0;
    }
    FUZZ_ASSERT(pem != NULL);
    c2d_pki_certinfo info;
    FUZZ_ASSERT(c2d_pki_cert_info(pki, pem, strlen(pem), &info) == 0);
    FUZZ_ASSERT(strcmp(info.cn, DEVICE_ID) == 0);
    FUZZ_ASSERT(!info.is_ca);
    FUZZ_ASSERT(info.not_after - info.not_before <= (int64_t)DAYS * 86400 + 600);
    free(pem);
    return 0;
}
