/* Pairing the recorder with a one-time code (docs/pairing.md).
 *
 * agent_pair makes the recorder's key pair (it never leaves the recorder),
 * sends a CSR whose CN is the serial with the code on
 * c2d/v1/pair/{serial}/req of the pairing listener (client id = serial),
 * waits for c2d/v1/pair/{serial}/resp and stores the identity: key,
 * certificate, chain, device id and broker address.
 *
 * The identity is one directory, state_dir/identity, a symlink to
 * state_dir/identity.<random>: a new pairing writes and fsyncs a new
 * directory, then renames a new symlink over the old one (atomic) and
 * fsyncs state_dir. A power cut at any point leaves the old identity or
 * the new one, never a mix. Files are 0600. */
#ifndef AGENT_PAIR_H
#define AGENT_PAIR_H

#include "common/c2d_pki.h"

#include <stddef.h>
#include <stdint.h>

/* The identity directory (a symlink) under state_dir, and its files. */
#define AGENT_IDENTITY_DIR "identity"
#define AGENT_IDENTITY_KEY "device.key"
#define AGENT_IDENTITY_CERT "device.crt"
#define AGENT_IDENTITY_CHAIN "chain.crt"
#define AGENT_IDENTITY_JSON "identity.json"

/* How long agent_pair waits for the controller's answer. */
#define AGENT_PAIR_TIMEOUT_S 30

typedef struct {
    const char *state_dir;
    const char *serial; /* the client id and the CSR's CN */
    const char *code;   /* as typed: case and dashes do not matter */
    const char *host;   /* the pairing listener */
    int64_t port;
    const char *ca_file; /* verifies the broker (ca.crt) */
    int timeout_s;       /* 0: AGENT_PAIR_TIMEOUT_S */
} agent_pair_params;

typedef struct {
    char device_id[65];
    char host[256];
    int64_t port;
} agent_identity;

/* Largest answer: a certificate and a chain of two, with JSON escaping. */
#define AGENT_PAIR_ANSWER_MAX (3 * C2D_PKI_FILE_MAX)

/* The controller's answer on c2d/v1/pair/{serial}/resp, checked. */
typedef struct {
    agent_identity id;
    char *cert;  /* PEM of the device's certificate, malloc'd */
    char *chain; /* PEM of the CA chain, malloc'd (may be "") */
} agent_pair_answer;

/* Parses the answer (len bytes, JSON, not NUL terminated) agent_pair
 * waits for: {"ok":true,"device_id","cert","chain","broker":{"host",
 * "port"}} or {"ok":false,"error"}. An accepted answer has a valid device
 * id, a host of 1..255 bytes, a port 1..65535 and a certificate that
 * parses with CN = device id (pki reads it; whether it holds the
 * recorder's key is agent_pair_answer_check_key's question). 0 with *out set (free it with
 * agent_pair_answer_clear); -EACCES: a refusal, err names the controller's
 * reason; -EPROTO: does not parse, or a field is missing or bad;
 * -EMSGSIZE: empty or over AGENT_PAIR_ANSWER_MAX; -ENOMEM. *out is written
 * only on success; err is always set on failure. */
int agent_pair_answer_parse(c2d_pki *pki, const void *buf, size_t len, agent_pair_answer *out,
                            char *err, size_t errlen);
/* 0 if the certificate of a parsed answer holds the public half of key
 * (the key agent_pair made for its CSR). A certificate for another key
 * would make every connection fail, so agent_pair stores nothing then.
 * -EKEYREJECTED: it holds another key; -EBADMSG: it does not parse;
 * -ENOMEM. err is always set on failure. */
int agent_pair_answer_check_key(c2d_pki *pki, const agent_pair_answer *a, const c2d_pki_key *key,
                                char *err, size_t errlen);
/* Frees what a successful parse allocated and zeroes a. NULL is a no-op. */
void agent_pair_answer_clear(agent_pair_answer *a);

/* Pairs (mosquitto_lib_init must have been called). 0 with out set and the
 * identity stored; -EACCES with err naming the controller's refusal
 * (wrong_code, expired, used, locked, unknown_serial, bad_csr);
 * -ETIMEDOUT; -EPROTO (an answer that does not parse); -EKEYREJECTED
 * (its certificate does not hold the key made for this pairing: nothing is
 * stored); -EIO and other
 * -errno (network, files). err is always set on failure. */
int agent_pair(const agent_pair_params *p, agent_identity *out, char *err, size_t errlen);

/* Reads state_dir's identity: 0, -ENOENT (never paired), -EBADMSG. */
int agent_identity_load(const char *state_dir, agent_identity *out);

/* Stores a new identity (key, PEM certificate and chain, id) in state_dir
 * as described above, then removes the directories of earlier ones (best
 * effort). Pairing and renewal (agent/renew.h) both use it. 0, or -errno
 * with err set; on failure the previous identity is still in force. */
int agent_identity_store(c2d_pki *pki, const char *state_dir, const c2d_pki_key *key,
                         const char *cert, const char *chain, const agent_identity *id, char *err,
                         size_t errlen);

#endif
