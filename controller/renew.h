/* Renewing a device's certificate before it expires (docs/pairing.md,
 * "Renewal").
 *
 * A paired agent sends a CSR for a new key on c2d/v1/d/{device}/csr (its
 * own topic on the device listener, so the broker has already checked its
 * certificate) and gets the answer on c2d/v1/d/{device}/cert. The device id
 * comes from the topic only. The controller signs when
 *   - a recorder holds the device id and it is not revoked
 *     (controller/revoke.h) (else "revoked": unpaired or deleted),
 *   - the device got no certificate from renewal in the last
 *     CTL_RENEW_MIN_GAP_US (else "too_soon"),
 *   - the CSR passes c2d_pki_sign_csr with CN = the device id (else
 *     "bad_csr"),
 * and audits it (actor "device:<id>", action "cert_renewed", serial and
 * not_after). Storage or signing failures answer "unavailable".
 *
 * The rate limit is kept in memory: a restart of the controller forgets
 * it, which at worst allows one more renewal per device and restart. */
#ifndef CTL_RENEW_H
#define CTL_RENEW_H

#include "common/c2d_pki.h"
#include "controller/directory.h"
#include "proto/c2d_proto.h"

#include <stddef.h>
#include <stdint.h>

/* Largest request payload: a CSR (C2D_PKI_CSR_MAX) plus JSON escaping. */
#define CTL_RENEW_REQ_MAX (2 * C2D_PKI_CSR_MAX + 64)
/* At most one renewal per device this often: an agent renews once per a
 * third of a lifetime of days, so anything faster is a bug or abuse. */
#define CTL_RENEW_MIN_GAP_US (INT64_C(3600) * 1000000)
/* Devices remembered by the rate limit at once (entries older than
 * CTL_RENEW_MIN_GAP_US are reused); beyond it answers are "too_soon" and
 * agents retry later. ~80 bytes each. */
#define CTL_RENEW_TRACK_MAX 65536
/* The request topic's last level, for the daemon's subscription; the topics
 * themselves are proto's C2D_TOPIC_CSR and C2D_TOPIC_CERT. */
#define CTL_RENEW_CSR_LEVEL "csr"

/* The names are the wire's "error" values. */
typedef enum {
    CTL_RENEW_OK = 0,
    CTL_RENEW_BAD_CSR,     /* the request does not parse or the CSR is refused */
    CTL_RENEW_TOO_SOON,    /* renewed less than CTL_RENEW_MIN_GAP_US ago */
    CTL_RENEW_REVOKED,     /* no recorder holds the device id */
    CTL_RENEW_UNAVAILABLE, /* storage or signing failed: retry later */
} ctl_renew_result;

/* "ok", "bad_csr", "too_soon", "revoked", "unavailable". */
const char *ctl_renew_result_name(ctl_renew_result r);

/* Parses a request {"csr": PEM string}, nothing else (unknown or duplicate
 * fields, trailing bytes, invalid UTF-8, an empty CSR or one longer than
 * C2D_PKI_CSR_MAX: -EINVAL; more than CTL_RENEW_REQ_MAX bytes: -EFBIG;
 * -ENOMEM). On 0 *csr is malloc'd (free it) and *csr_len its length. */
int ctl_renew_req_parse(const void *buf, size_t len, char **csr, size_t *csr_len);

typedef struct ctl_renew ctl_renew;

typedef struct {
    const char *issuing_cert, *issuing_key; /* files: the CA that signs devices */
    const char *chain;                      /* file: PEM handed to devices */
    int device_days;                        /* lifetime, as at pairing */
} ctl_renew_cfg;

/* Loads the CA and the chain. dir is borrowed and may be NULL for tests of
 * ctl_renew_decide only. 0, or -errno with err set. */
int ctl_renew_new(const ctl_renew_cfg *cfg, ctl_dir *dir, ctl_renew **out, char *err,
                  size_t errlen);
/* No-op on NULL. */
void ctl_renew_free(ctl_renew *r);

/* The policy without the directory: held says whether a recorder holds
 * device. In this order: REVOKED, TOO_SOON, BAD_CSR (UNAVAILABLE if
 * signing failed otherwise), OK with *cert (malloc'd PEM) and the device's
 * renewal time set to now_us (monotonic or not: it is only compared).
 * info (may be NULL) gets the certificate's facts on OK. */
ctl_renew_result ctl_renew_decide(ctl_renew *r, const char *device, int held, const void *csr,
                                  size_t csr_len, int64_t now_us, char **cert,
                                  c2d_pki_certinfo *info);

/* The answer to a renewal request of a revoked device id, which nothing
 * else of the request is read for (the daemon ignores revoked ids): 0 with
 * resp_topic (c2d/v1/d/{device}/cert) and *resp ({"ok":false,"error":
 * "revoked"}, malloc'd: free it) set, -EINVAL (device not valid or
 * c2d_id_reserved) or -ENOMEM. */
int ctl_renew_answer_revoked(const char *device, char resp_topic[C2D_TOPIC_MAX], char **resp);

/* Handles one message of c2d/v1/d/{device}/csr (c2d_topic_parse, kind
 * C2D_TOPIC_CSR: reserved ids are refused there): parses it, looks the
 * device up and decides in one directory write transaction, which also
 * holds the audit entry. Returns -EINVAL (not a renewal topic: nothing to
 * answer) or 0 with *result, resp_topic (c2d/v1/d/{device}/cert) and *resp
 * (JSON to publish with QoS 1, not retained; malloc'd, free it) set;
 * *resp is NULL only if out of memory. info as for ctl_renew_decide. */
int ctl_renew_handle(ctl_renew *r, const char *topic, const void *payload, size_t len,
                     ctl_renew_result *result, char resp_topic[C2D_TOPIC_MAX], char **resp,
                     c2d_pki_certinfo *info);

#endif
