/* Keys, certificate requests and certificates of the broker's PKI, over
 * mbedTLS 2.28 (docs/pki.md). One library for three programs: tools/c2d-ca
 * (bootstrap and manual signing), the controller (signs a device's CSR at
 * pairing) and the agent (makes its key and CSR).
 *
 * Keys are EC P-256; signatures ECDSA with SHA-256. Every function returns 0
 * or a negative errno and, on failure, keeps a one-line reason in the handle
 * (c2d_pki_error). Output parameters are written only on success; PEM
 * strings handed out are malloc'd and NUL terminated (free them).
 *
 * Errors used throughout: -EINVAL (a bad argument: an unsafe name, days out
 * of range, too many names), -EBADMSG (input that does not parse, or a bad
 * signature), -EPERM (a CSR refused by policy), -ENOMEM, -EIO (mbedTLS
 * failed otherwise: RNG, signing), and the -errno of a file operation. */
#ifndef C2D_PKI_H
#define C2D_PKI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A CN we write is at most this long (X.520 ub-common-name). */
#define C2D_PKI_CN_MAX 64

/* Lifetimes in days. The root outlives the issuing CA, which outlives every
 * certificate it signs (a leaf is also cut at its issuer's notAfter). A
 * device renews its certificate before expiry over its own topics
 * (docs/pairing.md, "Renewal"); 825 days is the longest one may live, and
 * what CA/Browser rules allow a TLS leaf. */
#define C2D_PKI_ROOT_DAYS 7300
#define C2D_PKI_ISSUING_DAYS 3650
#define C2D_PKI_SERVER_DAYS 825
#define C2D_PKI_CLIENT_DAYS 825
#define C2D_PKI_DEVICE_DAYS_DEFAULT 365
#define C2D_PKI_DEVICE_DAYS_MAX 825

/* The controller's client certificate CN; the broker's ACL gives this user
 * all of c2d/v1/#, so no device id may take it (nor any "c2d-" name). */
#define C2D_PKI_CONTROLLER_CN "c2d-controller"
#define C2D_PKI_RESERVED_PREFIX "c2d-"

/* Largest CSR accepted: a P-256 CSR is about 450 bytes of PEM; this leaves
 * room for an RSA one to be refused for its key rather than its size. */
#define C2D_PKI_CSR_MAX 8192
/* Largest certificate or key file read (a chain of a few certificates). */
#define C2D_PKI_FILE_MAX 65536
/* subjectAltName entries of a server certificate, names plus addresses. */
#define C2D_PKI_SAN_MAX 16

/* Flag of c2d_pki_write_file / c2d_pki_key_save: replace an existing file.
 * Without it an existing file is never touched (-EEXIST). */
#define C2D_PKI_OVERWRITE 1u

typedef struct c2d_pki c2d_pki;         /* RNG and last error; one per thread */
typedef struct c2d_pki_key c2d_pki_key; /* an EC P-256 key pair */
typedef struct c2d_pki_ca c2d_pki_ca;   /* a CA certificate with its key */

/* ---- handle ---------------------------------------------------------- */

/* Seeds a CTR-DRBG from the system's entropy. -ENOMEM, -EIO. */
int c2d_pki_new(c2d_pki **out);
/* No-op on NULL. */
void c2d_pki_free(c2d_pki *p);
/* Reason of the last failure ("" if none). Valid until the next call. */
const char *c2d_pki_error(const c2d_pki *p);

/* Writes data to path atomically: a temp file in the same directory with
 * mode, fsync, then link (no C2D_PKI_OVERWRITE: -EEXIST if path exists,
 * even if it appeared meanwhile) or rename over it, then fsync of the
 * directory. Never leaves the temp file behind. */
int c2d_pki_write_file(c2d_pki *p, const char *path, const void *data, size_t len, mode_t mode,
                       unsigned flags);

/* ---- keys ------------------------------------------------------------ */

/* A new EC P-256 key. */
int c2d_pki_key_generate(c2d_pki *p, c2d_pki_key **out);
/* A private key from PEM or DER (len counts the bytes, not a NUL), unencrypted.
 * -EBADMSG if it does not parse, -EINVAL if it is not EC P-256. */
int c2d_pki_key_parse(c2d_pki *p, const void *buf, size_t len, c2d_pki_key **out);
/* c2d_pki_key_parse of a file of at most C2D_PKI_FILE_MAX bytes. */
int c2d_pki_key_load(c2d_pki *p, const char *path, c2d_pki_key **out);
/* The private key as PEM ("EC PRIVATE KEY"). */
int c2d_pki_key_pem(c2d_pki *p, const c2d_pki_key *key, char **pem);
/* The private key as PEM into path with mode 0600 (c2d_pki_write_file). */
int c2d_pki_key_save(c2d_pki *p, const c2d_pki_key *key, const char *path, unsigned flags);
/* No-op on NULL. */
void c2d_pki_key_free(c2d_pki_key *key);

/* ---- certificate requests ---------------------------------------------- */

/* A PEM CSR whose subject is CN=cn, signed by key. cn: 1..C2D_PKI_CN_MAX of
 * [A-Za-z0-9 ._:-] (-EINVAL otherwise). */
int c2d_pki_csr_make(c2d_pki *p, const c2d_pki_key *key, const char *cn, char **pem);

/* ---- certificate authorities ------------------------------------------- */

/* A CA for signing from its certificate (the first of a PEM/DER buffer) and
 * private key. -EBADMSG if either does not parse, -EINVAL if the
 * certificate is not a CA or the key is not its key. */
int c2d_pki_ca_parse(c2d_pki *p, const void *crt, size_t crt_len, const void *key, size_t key_len,
                     c2d_pki_ca **out);
/* c2d_pki_ca_parse of two files. */
int c2d_pki_ca_load(c2d_pki *p, const char *crt_path, const char *key_path, c2d_pki_ca **out);
/* No-op on NULL. */
void c2d_pki_ca_free(c2d_pki_ca *ca);

/* Each of the following makes a PEM certificate for the public half of key
 * (or of the CSR), valid from 5 minutes ago (clock skew) for days (1..the
 * constant above for its kind, else -EINVAL), with a random positive 128-bit
 * serial, SHA-256/ECDSA, subject CN=cn only and subject/authority key
 * identifiers. cn as for c2d_pki_csr_make. */

/* Self-signed root: CA:true with pathlen 1, keyCertSign|cRLSign. */
int c2d_pki_make_root(c2d_pki *p, const c2d_pki_key *key, const char *cn, int days, char **pem);
/* Issuing CA signed by root: CA:true with pathlen 0, keyCertSign|cRLSign. */
int c2d_pki_make_issuing(c2d_pki *p, const c2d_pki_ca *root, const c2d_pki_key *key, const char *cn,
                         int days, char **pem);
/* TLS server: CA:false, digitalSignature, serverAuth, subjectAltName of
 * the DNS names (1..253 of [A-Za-z0-9.-], labels as in a host name) and
 * IPv4/IPv6 addresses given in text; 1..C2D_PKI_SAN_MAX entries in all. */
int c2d_pki_make_server(c2d_pki *p, const c2d_pki_ca *ca, const c2d_pki_key *key, const char *cn,
                        const char *const *dns, size_t n_dns, const char *const *ips, size_t n_ips,
                        int days, char **pem);
/* 1 if s is a host name as c2d_pki_make_server takes it, else 0. */
int c2d_pki_dns_name_valid(const char *s);
/* TLS client: CA:false, digitalSignature, clientAuth. For the controller's
 * own certificate; devices get theirs through c2d_pki_sign_csr. */
int c2d_pki_make_client(c2d_pki *p, const c2d_pki_ca *ca, const c2d_pki_key *key, const char *cn,
                        int days, char **pem);

/* Signs a device's CSR (PEM or DER, at most C2D_PKI_CSR_MAX bytes) as a
 * client certificate for device_id, as c2d_pki_make_client does. The CSR is
 * refused unless
 *   - it parses and its self-signature verifies (-EBADMSG),
 *   - its key is EC P-256 and it is signed with SHA-256 or stronger
 *     (-EPERM),
 *   - device_id is c2d_device_id_valid and does not start with "c2d-"
 *     (-EINVAL),
 *   - its subject holds exactly one CN and that CN is device_id byte for
 *     byte (-EPERM).
 * Nothing else of the CSR is used: the subject is built from device_id and
 * requested extensions are ignored. days: 1..C2D_PKI_DEVICE_DAYS_MAX, and
 * the certificate ends no later than the CA. */
int c2d_pki_sign_csr(c2d_pki *p, const c2d_pki_ca *ca, const void *csr, size_t len,
                     const char *device_id, int days, char **pem);
/* c2d_pki_sign_csr for pairing, where the recorder asks under its serial
 * and the certificate is for the device id the controller chose: the CSR's
 * one CN must equal csr_cn (1..C2D_PKI_CN_MAX bytes, else -EINVAL) byte for
 * byte (-EPERM); the certificate's subject is built from device_id, which
 * is checked as above. c2d_pki_sign_csr(..., id, ...) is
 * c2d_pki_sign_csr_as(..., id, id, ...). */
int c2d_pki_sign_csr_as(c2d_pki *p, const c2d_pki_ca *ca, const void *csr, size_t len,
                        const char *csr_cn, const char *device_id, int days, char **pem);

/* ---- reading certificates ------------------------------------------------ */

typedef struct {
    char cn[C2D_PKI_CN_MAX + 1]; /* subject CN; "" if none */
    char serial[2 * 32 + 1];     /* uppercase hex, as `openssl x509 -serial` */
    int64_t not_before;          /* Unix seconds, UTC */
    int64_t not_after;
    int is_ca;
} c2d_pki_certinfo;

/* Facts of the first certificate in a PEM or DER buffer. -EBADMSG if it
 * does not parse or its CN is longer than C2D_PKI_CN_MAX or holds a NUL. */
int c2d_pki_cert_info(c2d_pki *p, const void *buf, size_t len, c2d_pki_certinfo *out);
/* c2d_pki_cert_info of a file of at most C2D_PKI_FILE_MAX bytes. */
int c2d_pki_cert_info_file(c2d_pki *p, const char *path, c2d_pki_certinfo *out);
/* 0 if the first certificate in a PEM or DER buffer holds the public half
 * of key: a certificate for another key would make every connection with
 * it fail, so pairing and renewal check before they store one. -EBADMSG if
 * it does not parse, -EKEYREJECTED if it holds another key, -ENOMEM. */
int c2d_pki_cert_has_key(c2d_pki *p, const void *buf, size_t len, const c2d_pki_key *key);

#endif
