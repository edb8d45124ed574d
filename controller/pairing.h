/* Pairing a recorder with a one-time code (docs/pairing.md).
 *
 * Two halves. The pure part (codes, their stored state, the lockout, the
 * request parser) needs no I/O and is what tests/unit/test_pairing.c and
 * tests/fuzz/fuzz_pairing.c exercise. The handler (ctl_pairing) answers a
 * request from c2d/v1/pair/{serial}/req: it checks the code against the
 * recorder holding that serial in the directory, signs the CSR for the
 * recorder's device id and stores the code's new state, all in one
 * directory write transaction.
 *
 * A recorder's pairing state lives in its own directory object, in the
 * field "_pair" (fields starting with '_' are kept out of the API's answers
 * and out of audit entries, so the code's hash is never shown):
 *   {"hash": sha256hex(serial "\n" code), "expires": us, "used": bool,
 *    "fails": n, "locked_until": us, "fails_at": us}
 */
#ifndef CTL_PAIRING_H
#define CTL_PAIRING_H

#include "common/c2d_pki.h"
#include "controller/directory.h"
#include "controller/rng.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits, in one place (docs/pairing.md) ----------------------------- */

/* Characters of a code: 31^8 ~ 8.5e11 codes, typed in under 10 s. */
#define CTL_PAIR_CODE_LEN 8
/* Shown as XXXX-XXXX: the displayed length. */
#define CTL_PAIR_CODE_SHOWN (CTL_PAIR_CODE_LEN + 1)
/* No 0/O, 1/I/L: what people misread on a label or a phone screen. */
#define CTL_PAIR_ALPHABET "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
/* A code works this long after it was issued. */
#define CTL_PAIR_TTL_US (INT64_C(15) * 60 * 1000000)
/* Wrong codes for one serial before it locks: with 5 tries per 15 min an
 * attacker needs ~10^9 years for an even chance at a live code. */
#define CTL_PAIR_MAX_FAILS 5
/* How long a locked serial refuses every code, even the right one. */
#define CTL_PAIR_LOCK_US (INT64_C(15) * 60 * 1000000)
/* Largest request payload: a CSR (C2D_PKI_CSR_MAX) plus JSON escaping. */
#define CTL_PAIR_REQ_MAX (2 * C2D_PKI_CSR_MAX + 256)
/* Longest code input accepted before normalising (dashes, spaces). */
#define CTL_PAIR_CODE_INPUT_MAX 32

/* What a check of a code gives; the names are the wire's "error" values. */
typedef enum {
    CTL_PAIR_OK = 0,
    CTL_PAIR_WRONG_CODE,
    CTL_PAIR_EXPIRED,
    CTL_PAIR_USED,
    CTL_PAIR_LOCKED,
    CTL_PAIR_UNKNOWN_SERIAL,
    CTL_PAIR_BAD_CSR,
    CTL_PAIR_BAD_REQUEST, /* not answered: the payload is not a request */
    CTL_PAIR_INTERNAL,    /* not answered: storage failed, the agent retries */
} ctl_pair_result;

/* "wrong_code", "expired", ... */
const char *ctl_pair_result_name(ctl_pair_result r);

/* A code's stored state (the "_pair" field). */
typedef struct {
    char hash[65]; /* "" : no code issued */
    int64_t expires_us;
    bool used;
    int fails; /* wrong codes since the last lock or success */
    int64_t locked_until_us;
} ctl_pair_state;

/* Reads "_pair" of a recorder's JSON; absent: an empty state. 0 or -EINVAL
 * (present but malformed). */
int ctl_pair_state_get(const cJSON *recorder, ctl_pair_state *out);
/* Replaces "_pair" of the recorder's JSON with st. 0 or -ENOMEM. */
int ctl_pair_state_put(cJSON *recorder, const ctl_pair_state *st);

/* What a recorder's "_pair" says, for people (GET .../state): never the
 * code or its hash. */
typedef enum {
    CTL_PAIR_PHASE_NONE = 0,    /* no code was ever issued */
    CTL_PAIR_PHASE_CODE_ISSUED, /* a code works now */
    CTL_PAIR_PHASE_PAIRED,      /* the code was used and the recorder holds a device id */
    CTL_PAIR_PHASE_USED,        /* the code is spent but the recorder is unpaired since */
    CTL_PAIR_PHASE_EXPIRED,     /* the code ran out unused */
    CTL_PAIR_PHASE_LOCKED,      /* too many wrong codes: every code refused until locked_until */
} ctl_pair_phase;

typedef struct {
    ctl_pair_phase phase;
    int64_t expires_us;      /* the code's expiry; 0: no code */
    int wrong_codes;         /* counted towards the lock now (0 once a lock ran out) */
    int64_t locked_until_us; /* 0: not locked at now */
} ctl_pair_view;

/* "none", "code_issued", "paired", "used", "expired", "locked". */
const char *ctl_pair_phase_name(ctl_pair_phase p);
/* Describes st at now; has_device: the recorder holds a device id. Locked
 * wins over the code's own state. */
void ctl_pair_describe(const ctl_pair_state *st, bool has_device, int64_t now_us,
                       ctl_pair_view *out);

/* Normalises typed input: ASCII letters upcased, '-' and ' ' dropped; the
 * rest must be exactly CTL_PAIR_CODE_LEN characters of the alphabet.
 * out gets them NUL terminated. 0 or -EINVAL. */
int ctl_pair_code_norm(const char *in, char out[CTL_PAIR_CODE_LEN + 1]);

/* Sets how long codes issued from now on work (pki.code_ttl_s; default
 * CTL_PAIR_TTL_US). Process-wide: call once at start, before threads. */
void ctl_pair_set_code_ttl_us(int64_t ttl_us);

/* Issues a new code for serial at now: replaces any earlier one (used or
 * not) and keeps the lockout. shown gets "XXXX-XXXX". 0, -EIO (RNG). */
int ctl_pair_issue(ctl_pair_state *st, const char *serial, ctl_rng *rng, int64_t now_us,
                   char shown[CTL_PAIR_CODE_SHOWN + 1]);

/* Checks typed code for serial at now and counts a wrong one (st changes:
 * store it whatever the result). A match is not consumed: call
 * ctl_pair_consume once the certificate is issued. Order: locked, then the
 * hash (a wrong code counts, the MAX_FAILS-th locks), then used, expired. */
ctl_pair_result ctl_pair_check(ctl_pair_state *st, const char *serial, const char *code,
                               int64_t now_us);
/* Marks the code used and clears the wrong-code count. */
void ctl_pair_consume(ctl_pair_state *st);

/* A pairing request: {"code": string, "csr": PEM string}, nothing else. */
typedef struct {
    char code[CTL_PAIR_CODE_INPUT_MAX + 1];
    char *csr; /* malloc'd PEM */
    size_t csr_len;
} ctl_pair_req;

/* Parses a request payload of at most CTL_PAIR_REQ_MAX bytes: 0 (free with
 * ctl_pair_req_clear), -EINVAL (not a request), -EFBIG, -ENOMEM. */
int ctl_pair_req_parse(const void *buf, size_t len, ctl_pair_req *out);
void ctl_pair_req_clear(ctl_pair_req *r);

/* ---- shared with renewal (controller/renew.c) --------------------------- */

/* Parses a device's request payload: valid UTF-8 without a \u0000 escape
 * (cJSON would end the string there and drop the rest), one JSON object and
 * nothing after it but white space. The object (cJSON_Delete it) or NULL. */
cJSON *ctl_pair_json_object(const void *buf, size_t len);

/* What signs device certificates: the issuing CA and the chain (PEM)
 * handed to devices with each certificate. */
typedef struct {
    c2d_pki *pki;
    c2d_pki_ca *ca;
    char *chain;
} ctl_pair_signer;

/* Loads s (zeroed by the caller) from the issuing CA's certificate and key
 * files and the chain file. 0, or -errno with err set ("pki: ...",
 * "issuing CA: ...", "<chain>: ..."). Call ctl_pair_signer_clear either
 * way. */
int ctl_pair_signer_load(ctl_pair_signer *s, const char *cert_path, const char *key_path,
                         const char *chain_path, char *err, size_t errlen);
void ctl_pair_signer_clear(ctl_pair_signer *s);

/* ---- the handler -------------------------------------------------------- */

typedef struct ctl_pairing ctl_pairing;

typedef struct {
    const char *issuing_cert, *issuing_key; /* files: the CA that signs devices */
    const char *chain;                      /* file: PEM handed to devices (issuing + root) */
    int device_days;                        /* certificate lifetime */
    const char *broker_host;                /* the device listener given to devices */
    int64_t broker_port;
} ctl_pairing_cfg;

/* Loads the CA and chain. 0, or -errno with err set. The directory and rng
 * are borrowed. */
int ctl_pairing_new(const ctl_pairing_cfg *cfg, ctl_dir *dir, ctl_rng *rng, ctl_pairing **out,
                    char *err, size_t errlen);
void ctl_pairing_free(ctl_pairing *p);

/* Handles one message of c2d/v1/pair/{serial}/req (c2d_pair_topic_parse:
 * any other topic or serial is BAD_REQUEST). Returns the result;
 * for every result but BAD_REQUEST and INTERNAL *resp gets the JSON to
 * publish on resp_topic (malloc'd; free it). device gets the device id on
 * success. */
ctl_pair_result ctl_pairing_handle(ctl_pairing *p, const char *topic, const void *payload,
                                   size_t len, char resp_topic[128], char **resp,
                                   char device[C2D_PKI_CN_MAX + 1]);

#endif
