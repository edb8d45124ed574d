/* ctl_revoke_acl_text (controller/revoke.h): the controller reads the
 * broker's device ACL file back, keeps what is above its marker line and
 * rewrites the deny blocks below it, on every revocation and at start. The
 * file is the operator's (c2d-ca writes it; people edit it) and a crash or
 * a bad disk may damage it, so it is arbitrary bytes here.
 *
 * Input: a byte whose bits pick revoked ids from IDS, then the file.
 *
 * Invariants: the result is 0, or -EFBIG for an output over
 * CTL_REVOKE_ACL_MAX; the output keeps the input byte for byte up to its
 * first marker line, has exactly one marker line, then a deny block per id
 * and nothing else; building it again from the output gives the output
 * (applying twice changes nothing). */
#include "controller/revoke.h"
#include "fuzz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const IDS[8] = {
    "rec-1",
    "cam-2",
    "Rec_9.x",
    "a..b",
    "d123456789012345678901234567890123456789012345678901234567890123",
    "x",
    "nvr-1",
    "dc-1",
};

/* Full lines equal to the marker in s. */
static size_t markers(const char *s, size_t len)
{
    const size_t ml = strlen(CTL_REVOKE_ACL_MARK);
    size_t n = 0;
    for (size_t i = 0; i + ml <= len; i++)
        if ((i == 0 || s[i - 1] == '\n') && memcmp(s + i, CTL_REVOKE_ACL_MARK, ml) == 0 &&
            (i + ml == len || s[i + ml] == '\n'))
            n++;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *ids[8];
    size_t n = 0;
    for (int i = 0; i < 8; i++)
        if (data[0] & (1u << i))
            ids[n++] = IDS[i];
    const char *base = (const char *)data + 1;
    size_t len = size - 1;

    char *out = (char *)&out, *again = NULL;
    size_t olen = 12345, alen = 0;
    int rc = ctl_revoke_acl_text(base, len, ids, n, &out, &olen);
    if (rc != 0) {
        FUZZ_ASSERT(rc == -EFBIG || rc == -ENOMEM);
        FUZZ_ASSERT(rc != -EFBIG || len > CTL_REVOKE_ACL_MAX / 2);
        FUZZ_ASSERT(out == (char *)&out && olen == 12345);
        return 0;
    }
    FUZZ_ASSERT(olen <= CTL_REVOKE_ACL_MAX);
    /* The block: what follows the kept part (and a newline ending it). */
    char block[8192];
    size_t bl = (size_t)snprintf(block, sizeof(block), "%s\n", CTL_REVOKE_ACL_MARK);
    for (size_t i = 0; i < n; i++)
        bl += (size_t)snprintf(block + bl, sizeof(block) - bl, "user %s\ntopic deny c2d/v1/#\n\n",
                               ids[i]);
    FUZZ_ASSERT(olen >= bl && memcmp(out + olen - bl, block, bl) == 0);
    size_t keep = olen - bl;
    if (keep > 0 && (keep > len || memcmp(out, base, keep) != 0)) {
        /* Only a newline added after a kept part that lacked one. */
        FUZZ_ASSERT(out[keep - 1] == '\n' && memcmp(out, base, keep - 1) == 0);
        keep--;
    }
    FUZZ_ASSERT(keep <= len && memcmp(out, base, keep) == 0);
    FUZZ_ASSERT(markers(out, keep) == 0);
    FUZZ_ASSERT(keep == len || markers(base, len) > 0);
    FUZZ_ASSERT(markers(out, olen) == 1);

    FUZZ_ASSERT(ctl_revoke_acl_text(out, olen, ids, n, &again, &alen) == 0);
    FUZZ_ASSERT(alen == olen && memcmp(again, out, olen) == 0);
    free(again);
    free(out);
    return 0;
}
