/* Keys, CSRs and certificates over mbedTLS 2.28 (see c2d_pki.h, docs/pki.md). */
#include "common/c2d_pki.h"

#include "common/c2d_fs.h"
#include "proto/c2d_proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>

/* Room for one PEM certificate or CSR we write (a P-256 one is < 1 KiB). */
#define PEM_OUT_MAX 4096
/* Room for the DER of a subjectAltName of C2D_PKI_SAN_MAX 253-byte names. */
#define SAN_DER_MAX (C2D_PKI_SAN_MAX * (253 + 4) + 8)
/* Backdating of notBefore, for peers whose clocks are a little behind. */
#define CLOCK_SKEW_S 300
/* Serial numbers: 128 random bits (RFC 5280 allows up to 20 octets). */
#define SERIAL_BYTES 16
#define DNS_NAME_MAX 253

struct c2d_pki {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    char err[256];
};

struct c2d_pki_key {
    mbedtls_pk_context pk;
};

struct c2d_pki_ca {
    mbedtls_x509_crt crt;
    c2d_pki_key *key;
    char dn[256]; /* the certificate's subject, as the issuer of what it signs */
};

/* ---- errors ---------------------------------------------------------- */

static int fail(c2d_pki *p, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(c2d_pki *p, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, ap);
    va_end(ap);
    return rc;
}

/* 1 if an mbedTLS error (high-level | low-level parts) is an allocation
 * failure of any module on the way. */
static int mbed_is_alloc(int ret)
{
    int e = -ret, hi = e & 0xFF80, lo = e & 0x007F;
    return hi == -MBEDTLS_ERR_X509_ALLOC_FAILED || hi == -MBEDTLS_ERR_PK_ALLOC_FAILED ||
           hi == -MBEDTLS_ERR_ECP_ALLOC_FAILED || hi == -MBEDTLS_ERR_PEM_ALLOC_FAILED ||
           lo == -MBEDTLS_ERR_MPI_ALLOC_FAILED || lo == -MBEDTLS_ERR_ASN1_ALLOC_FAILED;
}

/* Records "what: <mbedTLS's text> (-0xNNNN)"; returns -ENOMEM for an
 * allocation failure and rc otherwise. */
static int fail_mbed(c2d_pki *p, int rc, int ret, const char *what)
{
    char msg[160];
    mbedtls_strerror(ret, msg, sizeof(msg));
    fail(p, rc, "%s: %s (-0x%04x)", what, msg, (unsigned)-ret);
    return mbed_is_alloc(ret) ? -ENOMEM : rc;
}

/* Puts where in front of p's error ("where: <error>"); returns rc. */
static int fail_in(c2d_pki *p, int rc, const char *where)
{
    char why[sizeof(p->err)];
    snprintf(why, sizeof(why), "%s", p->err);
    return fail(p, rc, "%s: %s", where, why);
}

/* Copies len bytes of untrusted text into out for an error message, with
 * anything but printable ASCII as \xNN and the result cut to fit. */
static const char *escape(char *out, size_t outlen, const unsigned char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < outlen; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\' && s[i] != '"')
            out[o++] = (char)s[i];
        else
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", s[i]);
    }
    out[o] = '\0';
    return out;
}

/* ---- handle ---------------------------------------------------------- */

int c2d_pki_new(c2d_pki **out)
{
    static const char pers[] = "cam2drive pki";
    c2d_pki *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    mbedtls_entropy_init(&p->entropy);
    mbedtls_ctr_drbg_init(&p->drbg);
    int ret = mbedtls_ctr_drbg_seed(&p->drbg, mbedtls_entropy_func, &p->entropy,
                                    (const unsigned char *)pers, sizeof(pers) - 1);
    if (ret != 0) {
        c2d_pki_free(p);
        return -EIO;
    }
    *out = p;
    return 0;
}

void c2d_pki_free(c2d_pki *p)
{
    if (!p)
        return;
    mbedtls_ctr_drbg_free(&p->drbg);
    mbedtls_entropy_free(&p->entropy);
    free(p);
}

const char *c2d_pki_error(const c2d_pki *p)
{
    return p ? p->err : "no pki handle";
}

/* ---- files ----------------------------------------------------------- */

/* Puts tmp at path without replacing anything: renameat2(RENAME_NOREPLACE)
 * where the file system has it, else link (atomic on every POSIX one). */
static int place_noreplace(const char *tmp, const char *path)
{
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    if (link(tmp, path) != 0)
        return -errno;
    unlink(tmp);
    return 0;
}

int c2d_pki_write_file(c2d_pki *p, const char *path, const void *data, size_t len, mode_t mode,
                       unsigned flags)
{
    char tmp[4096];
    p->err[0] = '\0';
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= (int)sizeof(tmp))
        return fail(p, -ENAMETOOLONG, "%s: name too long", path);
    if (!(flags & C2D_PKI_OVERWRITE) && access(path, F_OK) == 0)
        return fail(p, -EEXIST, "%s: exists", path);
    /* mkostemp creates the file 0600, so a key is never readable by others,
     * not even for a moment; fchmod widens a certificate afterwards. */
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return fail(p, -errno, "%s: %s", tmp, strerror(errno));
    int rc = 0;
    const char *step = "write";
    if (fchmod(fd, mode) != 0)
        rc = -errno, step = "chmod";
    if (rc == 0 && (rc = c2d_write_all(fd, data, len)) != 0)
        step = "write";
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno, step = "fsync";
    if (close(fd) != 0 && rc == 0)
        rc = -errno, step = "close";
    if (rc == 0) {
        step = "rename";
        if (flags & C2D_PKI_OVERWRITE)
            rc = rename(tmp, path) == 0 ? 0 : -errno;
        else
            rc = place_noreplace(tmp, path);
    }
    if (rc != 0) {
        unlink(tmp);
        if (rc == -EEXIST)
            return fail(p, rc, "%s: exists", path);
        return fail(p, rc, "%s: %s: %s", path, step, strerror(-rc));
    }
    if ((rc = c2d_fsync_parent(path)) != 0)
        return fail(p, rc, "%s: fsync directory: %s", path, strerror(-rc));
    return 0;
}

/* Reads a file of at most C2D_PKI_FILE_MAX bytes (NUL terminated). */
static int read_small(c2d_pki *p, const char *path, char **buf, size_t *len)
{
    int rc = c2d_read_file(path, C2D_PKI_FILE_MAX, buf, len);
    if (rc == -EFBIG)
        return fail(p, rc, "%s: larger than %d bytes", path, C2D_PKI_FILE_MAX);
    if (rc != 0)
        return fail(p, rc, "%s: %s", path, strerror(-rc));
    return 0;
}

static void free_secret(char *buf, size_t len)
{
    if (buf)
        mbedtls_platform_zeroize(buf, len);
    free(buf);
}

/* mbedTLS parses PEM only from a NUL-terminated buffer whose length counts
 * the NUL, and DER from the exact bytes. Returns a malloc'd copy with a NUL
 * after it and the length to hand to mbedTLS. */
static unsigned char *pem_or_der(const void *buf, size_t len, size_t *mlen)
{
    unsigned char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    if (len)
        memcpy(copy, buf, len);
    copy[len] = '\0';
    *mlen = memmem(copy, len, "-----BEGIN", 10) ? len + 1 : len;
    return copy;
}

/* Parses a certificate (PEM or DER; of a chain, the first must parse)
 * into crt, which the caller has initialised and frees either way. 0,
 * -ENOMEM, or -EBADMSG with the error "what: ...". */
static int parse_cert(c2d_pki *p, const void *buf, size_t len, const char *what,
                      mbedtls_x509_crt *crt)
{
    size_t mlen;
    unsigned char *copy = pem_or_der(buf, len, &mlen);
    if (!copy)
        return fail(p, -ENOMEM, "out of memory");
    /* a chain parses partly (ret > 0) when one of its certificates does not */
    int ret = mbedtls_x509_crt_parse(crt, copy, mlen);
    free(copy);
    if (ret < 0 || crt->raw.p == NULL)
        return fail_mbed(p, -EBADMSG, ret < 0 ? ret : MBEDTLS_ERR_X509_INVALID_FORMAT, what);
    return 0;
}

/* ---- keys ------------------------------------------------------------ */

static int key_is_p256(const mbedtls_pk_context *pk)
{
    return mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECKEY &&
           mbedtls_pk_ec(*pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
}

int c2d_pki_key_generate(c2d_pki *p, c2d_pki_key **out)
{
    p->err[0] = '\0';
    c2d_pki_key *k = calloc(1, sizeof(*k));
    if (!k)
        return fail(p, -ENOMEM, "out of memory");
    mbedtls_pk_init(&k->pk);
    int rc = 0;
    int ret = mbedtls_pk_setup(&k->pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (ret == 0)
        ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(k->pk),
                                  mbedtls_ctr_drbg_random, &p->drbg);
    if (ret != 0) {
        rc = fail_mbed(p, -EIO, ret, "generating an EC P-256 key");
        c2d_pki_key_free(k);
        return rc;
    }
    *out = k;
    return 0;
}

int c2d_pki_key_parse(c2d_pki *p, const void *buf, size_t len, c2d_pki_key **out)
{
    p->err[0] = '\0';
    size_t mlen;
    unsigned char *copy = pem_or_der(buf, len, &mlen);
    c2d_pki_key *k = calloc(1, sizeof(*k));
    int rc = 0;
    if (!copy || !k) {
        rc = fail(p, -ENOMEM, "out of memory");
        goto fail;
    }
    mbedtls_pk_init(&k->pk);
    int ret = mbedtls_pk_parse_key(&k->pk, copy, mlen, NULL, 0);
    if (ret != 0) {
        rc = fail_mbed(p, -EBADMSG, ret, "private key");
        goto fail;
    }
    if (!key_is_p256(&k->pk)) {
        rc = fail(p, -EINVAL, "private key: not EC P-256");
        goto fail;
    }
    free_secret((char *)copy, len + 1);
    *out = k;
    return 0;
fail:
    if (copy)
        free_secret((char *)copy, len + 1);
    c2d_pki_key_free(k);
    return rc;
}

int c2d_pki_key_load(c2d_pki *p, const char *path, c2d_pki_key **out)
{
    char *buf;
    size_t len;
    int rc = read_small(p, path, &buf, &len);
    if (rc != 0)
        return rc;
    rc = c2d_pki_key_parse(p, buf, len, out);
    free_secret(buf, len);
    return rc != 0 ? fail_in(p, rc, path) : 0;
}

int c2d_pki_key_pem(c2d_pki *p, const c2d_pki_key *key, char **pem)
{
    p->err[0] = '\0';
    unsigned char buf[2048];
    int ret = mbedtls_pk_write_key_pem((mbedtls_pk_context *)&key->pk, buf, sizeof(buf));
    if (ret != 0) {
        mbedtls_platform_zeroize(buf, sizeof(buf));
        return fail_mbed(p, -EIO, ret, "writing the key");
    }
    char *s = strdup((char *)buf);
    mbedtls_platform_zeroize(buf, sizeof(buf));
    if (!s)
        return fail(p, -ENOMEM, "out of memory");
    *pem = s;
    return 0;
}

int c2d_pki_key_save(c2d_pki *p, const c2d_pki_key *key, const char *path, unsigned flags)
{
    char *pem;
    int rc = c2d_pki_key_pem(p, key, &pem);
    if (rc != 0)
        return rc;
    size_t len = strlen(pem);
    rc = c2d_pki_write_file(p, path, pem, len, 0600, flags);
    free_secret(pem, len);
    return rc;
}

void c2d_pki_key_free(c2d_pki_key *key)
{
    if (!key)
        return;
    mbedtls_pk_free(&key->pk);
    free(key);
}

/* ---- names ----------------------------------------------------------- */

/* A CN we put in a subject: the characters are safe both for mbedTLS's
 * "CN=..." parser (no ',', '=', '\\', '+') and for the broker's ACL. */
static int cn_ok(const char *cn)
{
    size_t n = cn ? strlen(cn) : 0;
    if (n == 0 || n > C2D_PKI_CN_MAX || cn[0] == ' ' || cn[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = cn[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == ' ' || c == '.' || c == '_' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

/* A host name: labels of 1..63 [A-Za-z0-9-] not starting or ending with
 * '-', separated by single dots, 253 at most in all. */
int c2d_pki_dns_name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0, label = 0;
    if (n == 0 || n > DNS_NAME_MAX)
        return 0;
    for (size_t i = 0; i <= n; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return 0;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c == '-' && label > 0)) {
            label++;
        } else {
            return 0;
        }
    }
    return 1;
}

/* ---- certificate requests ---------------------------------------------- */

int c2d_pki_csr_make(c2d_pki *p, const c2d_pki_key *key, const char *cn, char **pem)
{
    p->err[0] = '\0';
    if (!cn_ok(cn))
        return fail(p, -EINVAL, "CN must be 1-%d of [A-Za-z0-9 ._:-]", C2D_PKI_CN_MAX);
    char subject[C2D_PKI_CN_MAX + 4];
    snprintf(subject, sizeof(subject), "CN=%s", cn);
    mbedtls_x509write_csr w;
    mbedtls_x509write_csr_init(&w);
    mbedtls_x509write_csr_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_csr_set_key(&w, (mbedtls_pk_context *)&key->pk);
    unsigned char buf[PEM_OUT_MAX];
    int rc = 0;
    int ret = mbedtls_x509write_csr_set_subject_name(&w, subject);
    if (ret == 0)
        ret = mbedtls_x509write_csr_pem(&w, buf, sizeof(buf), mbedtls_ctr_drbg_random, &p->drbg);
    mbedtls_x509write_csr_free(&w);
    if (ret != 0)
        return fail_mbed(p, -EIO, ret, "writing the CSR");
    char *s = strdup((char *)buf);
    if (!s)
        return fail(p, -ENOMEM, "out of memory");
    *pem = s;
    return rc;
}

/* ---- CAs ------------------------------------------------------------- */

int c2d_pki_ca_parse(c2d_pki *p, const void *crt, size_t crt_len, const void *key, size_t key_len,
                     c2d_pki_ca **out)
{
    p->err[0] = '\0';
    c2d_pki_ca *ca = calloc(1, sizeof(*ca));
    if (!ca)
        return fail(p, -ENOMEM, "out of memory");
    mbedtls_x509_crt_init(&ca->crt);
    /* the CA is the first certificate of a chain file */
    int rc = parse_cert(p, crt, crt_len, "CA certificate", &ca->crt);
    if (rc != 0)
        goto fail;
    if (!ca->crt.ca_istrue) {
        rc = fail(p, -EINVAL, "CA certificate: not a CA (basicConstraints CA:false)");
        goto fail;
    }
    if (mbedtls_x509_dn_gets(ca->dn, sizeof(ca->dn), &ca->crt.subject) < 0) {
        rc = fail(p, -EINVAL, "CA certificate: subject too long");
        goto fail;
    }
    if ((rc = c2d_pki_key_parse(p, key, key_len, &ca->key)) != 0)
        goto fail;
    if (mbedtls_pk_check_pair(&ca->crt.pk, &ca->key->pk) != 0) {
        rc = fail(p, -EINVAL, "CA key does not belong to the CA certificate");
        goto fail;
    }
    *out = ca;
    return 0;
fail:
    c2d_pki_ca_free(ca);
    return rc;
}

int c2d_pki_ca_load(c2d_pki *p, const char *crt_path, const char *key_path, c2d_pki_ca **out)
{
    char *crt = NULL, *key = NULL;
    size_t crt_len, key_len = 0;
    int rc = read_small(p, crt_path, &crt, &crt_len);
    if (rc == 0 && (rc = read_small(p, key_path, &key, &key_len)) == 0) {
        rc = c2d_pki_ca_parse(p, crt, crt_len, key, key_len, out);
        if (rc != 0) {
            char why[sizeof(p->err)];
            snprintf(why, sizeof(why), "%s", p->err);
            fail(p, rc, "%s, %s: %s", crt_path, key_path, why);
        }
    }
    free(crt);
    free_secret(key, key_len);
    return rc;
}

void c2d_pki_ca_free(c2d_pki_ca *ca)
{
    if (!ca)
        return;
    mbedtls_x509_crt_free(&ca->crt);
    c2d_pki_key_free(ca->key);
    free(ca);
}

/* ---- issuing --------------------------------------------------------- */

static int64_t x509_time_unix(const mbedtls_x509_time *t)
{
    struct tm tm = {
        .tm_year = t->year - 1900,
        .tm_mon = t->mon - 1,
        .tm_mday = t->day,
        .tm_hour = t->hour,
        .tm_min = t->min,
        .tm_sec = t->sec,
    };
    return (int64_t)timegm(&tm);
}

static void x509_time_str(char out[16], int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 16, "%Y%m%d%H%M%S", &tm);
}

typedef struct {
    const char *cn;
    mbedtls_pk_context *key; /* the subject's public key */
    const c2d_pki_ca *ca;    /* NULL: self-signed with key */
    int days;
    int is_ca, pathlen;
    unsigned key_usage;
    const char *eku_oid; /* NULL for a CA */
    size_t eku_oid_len;
    const unsigned char *san; /* DER of GeneralNames, or NULL */
    size_t san_len;
} issue_req;

/* extKeyUsage ::= SEQUENCE SIZE (1..MAX) OF KeyPurposeId, with one purpose. */
static int set_eku(mbedtls_x509write_cert *w, const char *oid, size_t oid_len)
{
    unsigned char buf[32];
    unsigned char *q = buf + sizeof(buf);
    int n = mbedtls_asn1_write_oid(&q, buf, oid, oid_len);
    if (n < 0)
        return n;
    size_t len = (size_t)n;
    if ((n = mbedtls_asn1_write_len(&q, buf, len)) < 0)
        return n;
    len += (size_t)n;
    if ((n = mbedtls_asn1_write_tag(&q, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)) < 0)
        return n;
    len += (size_t)n;
    return mbedtls_x509write_crt_set_extension(w, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                                               MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0,
                                               q, len);
}

static int issue(c2d_pki *p, const issue_req *r, char **pem)
{
    int64_t now = (int64_t)time(NULL);
    int64_t nb = now - CLOCK_SKEW_S, na = now + (int64_t)r->days * 86400;
    if (r->ca) {
        /* never past the issuer: a chain is only as valid as its CA */
        int64_t ca_end = x509_time_unix(&r->ca->crt.valid_to);
        if (na > ca_end)
            na = ca_end;
        if (na <= now)
            return fail(p, -EINVAL, "the CA has expired");
    }
    char nb_s[16], na_s[16];
    x509_time_str(nb_s, nb);
    x509_time_str(na_s, na);

    unsigned char rnd[SERIAL_BYTES];
    mbedtls_mpi serial;
    mbedtls_mpi_init(&serial);
    mbedtls_x509write_cert w;
    mbedtls_x509write_crt_init(&w);
    mbedtls_x509_crt check;
    mbedtls_x509_crt_init(&check);
    unsigned char buf[PEM_OUT_MAX];
    char subject[C2D_PKI_CN_MAX + 4];
    snprintf(subject, sizeof(subject), "CN=%s", r->cn);
    int rc = 0, ret;
    const char *what = "random serial";

    /* a zero serial is not allowed; 2^-128 odds, but cheap to exclude */
    do {
        ret = mbedtls_ctr_drbg_random(&p->drbg, rnd, sizeof(rnd));
        if (ret == 0)
            ret = mbedtls_mpi_read_binary(&serial, rnd, sizeof(rnd));
    } while (ret == 0 && mbedtls_mpi_cmp_int(&serial, 0) == 0);
    if (ret != 0)
        goto mbed_fail;

    what = "building the certificate";
    mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w, r->key);
    mbedtls_x509write_crt_set_issuer_key(&w, r->ca ? &r->ca->key->pk : r->key);
    if ((ret = mbedtls_x509write_crt_set_subject_name(&w, subject)) != 0 ||
        (ret = mbedtls_x509write_crt_set_issuer_name(&w, r->ca ? r->ca->dn : subject)) != 0 ||
        (ret = mbedtls_x509write_crt_set_serial(&w, &serial)) != 0 ||
        (ret = mbedtls_x509write_crt_set_validity(&w, nb_s, na_s)) != 0 ||
        (ret = mbedtls_x509write_crt_set_basic_constraints(&w, r->is_ca,
                                                           r->is_ca ? r->pathlen : -1)) != 0 ||
        (ret = mbedtls_x509write_crt_set_subject_key_identifier(&w)) != 0 ||
        (ret = mbedtls_x509write_crt_set_authority_key_identifier(&w)) != 0 ||
        (ret = mbedtls_x509write_crt_set_key_usage(&w, r->key_usage)) != 0)
        goto mbed_fail;
    if (r->eku_oid && (ret = set_eku(&w, r->eku_oid, r->eku_oid_len)) != 0)
        goto mbed_fail;
    if (r->san && (ret = mbedtls_x509write_crt_set_extension(
                       &w, MBEDTLS_OID_SUBJECT_ALT_NAME,
                       MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0, r->san, r->san_len)) != 0)
        goto mbed_fail;
    what = "signing the certificate";
    if ((ret = mbedtls_x509write_crt_pem(&w, buf, sizeof(buf), mbedtls_ctr_drbg_random,
                                         &p->drbg)) != 0)
        goto mbed_fail;

    /* Read back what we wrote and verify it against its issuer: catches an
     * issuer name that did not survive the round trip through text. */
    what = "checking the new certificate";
    if ((ret = mbedtls_x509_crt_parse(&check, buf, strlen((char *)buf) + 1)) != 0)
        goto mbed_fail;
    uint32_t flags = 0;
    mbedtls_x509_crt *anchor = r->ca ? (mbedtls_x509_crt *)&r->ca->crt : &check;
    if ((ret = mbedtls_x509_crt_verify(&check, anchor, NULL, NULL, &flags, NULL, NULL)) != 0) {
        char why[128];
        mbedtls_x509_crt_verify_info(why, sizeof(why), "", flags);
        why[strcspn(why, "\n")] = '\0';
        rc = fail(p, -EIO, "the new certificate does not verify against its CA: %s", why);
        goto out;
    }
    char *s = strdup((char *)buf);
    if (!s) {
        rc = fail(p, -ENOMEM, "out of memory");
        goto out;
    }
    *pem = s;
    goto out;
mbed_fail:
    rc = fail_mbed(p, -EIO, ret, what);
out:
    mbedtls_x509_crt_free(&check);
    mbedtls_x509write_crt_free(&w);
    mbedtls_mpi_free(&serial);
    return rc;
}

static int check_days(c2d_pki *p, int days, int max)
{
    if (days < 1 || days > max)
        return fail(p, -EINVAL, "days must be 1-%d, not %d", max, days);
    return 0;
}

static int check_cn(c2d_pki *p, const char *cn)
{
    if (!cn_ok(cn))
        return fail(p, -EINVAL, "CN must be 1-%d of [A-Za-z0-9 ._:-]", C2D_PKI_CN_MAX);
    return 0;
}

/* A CA certificate for key, signed by parent (NULL: self-signed), that may
 * have pathlen CAs below it; days at most max_days. */
static int make_ca(c2d_pki *p, const c2d_pki_ca *parent, const c2d_pki_key *key, const char *cn,
                   int days, int max_days, int pathlen, char **pem)
{
    p->err[0] = '\0';
    int rc;
    if ((rc = check_cn(p, cn)) != 0 || (rc = check_days(p, days, max_days)) != 0)
        return rc;
    issue_req r = {
        .cn = cn,
        .key = (mbedtls_pk_context *)&key->pk,
        .ca = parent,
        .days = days,
        .is_ca = 1,
        .pathlen = pathlen,
        .key_usage = MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN,
    };
    return issue(p, &r, pem);
}

int c2d_pki_make_root(c2d_pki *p, const c2d_pki_key *key, const char *cn, int days, char **pem)
{
    return make_ca(p, NULL, key, cn, days, C2D_PKI_ROOT_DAYS, 1, pem);
}

int c2d_pki_make_issuing(c2d_pki *p, const c2d_pki_ca *root, const c2d_pki_key *key, const char *cn,
                         int days, char **pem)
{
    return make_ca(p, root, key, cn, days, C2D_PKI_ISSUING_DAYS, 0, pem);
}

/* Appends one GeneralName ([tag] IMPLICIT value) in front of *q. */
static int san_entry(unsigned char **q, unsigned char *start, int tag, const void *v, size_t n)
{
    int a, b, c;
    if ((a = mbedtls_asn1_write_raw_buffer(q, start, v, n)) < 0)
        return a;
    if ((b = mbedtls_asn1_write_len(q, start, n)) < 0)
        return b;
    if ((c = mbedtls_asn1_write_tag(q, start,
                                    (unsigned char)(MBEDTLS_ASN1_CONTEXT_SPECIFIC | tag))) < 0)
        return c;
    return a + b + c;
}

int c2d_pki_make_server(c2d_pki *p, const c2d_pki_ca *ca, const c2d_pki_key *key, const char *cn,
                        const char *const *dns, size_t n_dns, const char *const *ips, size_t n_ips,
                        int days, char **pem)
{
    p->err[0] = '\0';
    int rc;
    if ((rc = check_cn(p, cn)) != 0 || (rc = check_days(p, days, C2D_PKI_SERVER_DAYS)) != 0)
        return rc;
    if (n_dns + n_ips == 0 || n_dns + n_ips > C2D_PKI_SAN_MAX)
        return fail(p, -EINVAL, "a server certificate needs 1-%d names and addresses",
                    C2D_PKI_SAN_MAX);
    /* GeneralNames, written back to front as mbedTLS's ASN.1 writer does */
    unsigned char san[SAN_DER_MAX];
    unsigned char *q = san + sizeof(san);
    size_t len = 0;
    int n;
    for (size_t i = n_ips; i-- > 0;) {
        unsigned char addr[16];
        size_t alen;
        if (inet_pton(AF_INET, ips[i], addr) == 1)
            alen = 4;
        else if (inet_pton(AF_INET6, ips[i], addr) == 1)
            alen = 16;
        else
            return fail(p, -EINVAL, "not an IP address: \"%.64s\"", ips[i]);
        if ((n = san_entry(&q, san, 7, addr, alen)) < 0) /* iPAddress */
            return fail_mbed(p, -EIO, n, "subjectAltName");
        len += (size_t)n;
    }
    for (size_t i = n_dns; i-- > 0;) {
        if (!c2d_pki_dns_name_valid(dns[i]))
            return fail(p, -EINVAL, "not a DNS name: \"%.64s\"", dns[i]);
        if ((n = san_entry(&q, san, 2, dns[i], strlen(dns[i]))) < 0) /* dNSName */
            return fail_mbed(p, -EIO, n, "subjectAltName");
        len += (size_t)n;
    }
    if ((n = mbedtls_asn1_write_len(&q, san, len)) < 0)
        return fail_mbed(p, -EIO, n, "subjectAltName");
    len += (size_t)n;
    if ((n = mbedtls_asn1_write_tag(&q, san, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)) < 0)
        return fail_mbed(p, -EIO, n, "subjectAltName");
    len += (size_t)n;

    issue_req r = {
        .cn = cn,
        .key = (mbedtls_pk_context *)&key->pk,
        .ca = ca,
        .days = days,
        .key_usage = MBEDTLS_X509_KU_DIGITAL_SIGNATURE,
        .eku_oid = MBEDTLS_OID_SERVER_AUTH,
        .eku_oid_len = MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH),
        .san = q,
        .san_len = len,
    };
    return issue(p, &r, pem);
}

static int make_client(c2d_pki *p, const c2d_pki_ca *ca, mbedtls_pk_context *key, const char *cn,
                       int days, char **pem)
{
    issue_req r = {
        .cn = cn,
        .key = key,
        .ca = ca,
        .days = days,
        .key_usage = MBEDTLS_X509_KU_DIGITAL_SIGNATURE,
        .eku_oid = MBEDTLS_OID_CLIENT_AUTH,
        .eku_oid_len = MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH),
    };
    return issue(p, &r, pem);
}

int c2d_pki_make_client(c2d_pki *p, const c2d_pki_ca *ca, const c2d_pki_key *key, const char *cn,
                        int days, char **pem)
{
    p->err[0] = '\0';
    int rc;
    if ((rc = check_cn(p, cn)) != 0 || (rc = check_days(p, days, C2D_PKI_CLIENT_DAYS)) != 0)
        return rc;
    return make_client(p, ca, (mbedtls_pk_context *)&key->pk, cn, days, pem);
}

/* ---- signing CSRs ------------------------------------------------------ */

/* Verifies the CSR's signature over its CertificationRequestInfo with its
 * own key: proof that the requester holds the private key. */
static int csr_verify_self(c2d_pki *p, mbedtls_x509_csr *csr)
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(csr->sig_md);
    unsigned char hash[MBEDTLS_MD_MAX_SIZE];
    if (!md)
        return fail(p, -EPERM, "CSR: unsupported signature hash");
    int ret = mbedtls_md(md, csr->cri.p, csr->cri.len, hash);
    if (ret != 0)
        return fail_mbed(p, -EIO, ret, "CSR: hashing");
    ret = mbedtls_pk_verify_ext(csr->sig_pk, csr->sig_opts, &csr->pk, csr->sig_md, hash,
                                mbedtls_md_get_size(md), csr->sig.p, csr->sig.len);
    if (ret != 0)
        return fail_mbed(p, -EBADMSG, ret, "CSR: bad signature");
    return 0;
}

/* Checks that the subject holds exactly one CN, a UTF8String or
 * PrintableString equal to id byte for byte. */
static int csr_check_cn(c2d_pki *p, const mbedtls_x509_csr *csr, const char *id)
{
    const mbedtls_x509_buf *cn = NULL;
    for (const mbedtls_x509_name *n = &csr->subject; n; n = n->next) {
        if (n->oid.p == NULL || MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) != 0)
            continue;
        if (cn)
            return fail(p, -EPERM, "CSR: more than one CN");
        cn = &n->val;
    }
    if (!cn)
        return fail(p, -EPERM, "CSR: no CN");
    if (cn->tag != MBEDTLS_ASN1_UTF8_STRING && cn->tag != MBEDTLS_ASN1_PRINTABLE_STRING)
        return fail(p, -EPERM, "CSR: CN is not a UTF8String or PrintableString");
    size_t idlen = strlen(id);
    if (cn->len != idlen || memcmp(cn->p, id, idlen) != 0) {
        char got[C2D_DEVICE_ID_MAX * 4 + 8];
        return fail(p, -EPERM, "CSR: CN \"%s\" is not the device id \"%s\"",
                    escape(got, sizeof(got), cn->p, cn->len), id);
    }
    return 0;
}

static int device_id_ok(const char *id)
{
    return c2d_device_id_valid(id) &&
           strncasecmp(id, C2D_PKI_RESERVED_PREFIX, strlen(C2D_PKI_RESERVED_PREFIX)) != 0;
}

int c2d_pki_sign_csr(c2d_pki *p, const c2d_pki_ca *ca, const void *csr, size_t len,
                     const char *device_id, int days, char **pem)
{
    return c2d_pki_sign_csr_as(p, ca, csr, len, device_id, device_id, days, pem);
}

int c2d_pki_sign_csr_as(c2d_pki *p, const c2d_pki_ca *ca, const void *csr, size_t len,
                        const char *csr_cn, const char *device_id, int days, char **pem)
{
    p->err[0] = '\0';
    int rc;
    if (!device_id || !device_id_ok(device_id)) {
        char esc[C2D_DEVICE_ID_MAX * 4 + 8];
        return fail(p, -EINVAL,
                    "device id \"%s\" is not 1-%d of [A-Za-z0-9_.-] not starting with '.', '-' "
                    "or \"" C2D_PKI_RESERVED_PREFIX "\"",
                    device_id ? escape(esc, sizeof(esc), (const unsigned char *)device_id,
                                       strnlen(device_id, C2D_DEVICE_ID_MAX + 1))
                              : "(null)",
                    C2D_DEVICE_ID_MAX);
    }
    if (!csr_cn || !csr_cn[0] || strnlen(csr_cn, C2D_PKI_CN_MAX + 1) > C2D_PKI_CN_MAX)
        return fail(p, -EINVAL, "expected CSR CN is empty or longer than %d", C2D_PKI_CN_MAX);
    if ((rc = check_days(p, days, C2D_PKI_DEVICE_DAYS_MAX)) != 0)
        return rc;
    if (len > C2D_PKI_CSR_MAX)
        return fail(p, -EBADMSG, "CSR: larger than %d bytes", C2D_PKI_CSR_MAX);

    size_t mlen;
    unsigned char *copy = pem_or_der(csr, len, &mlen);
    if (!copy)
        return fail(p, -ENOMEM, "out of memory");
    mbedtls_x509_csr req;
    mbedtls_x509_csr_init(&req);
    int ret = mbedtls_x509_csr_parse(&req, copy, mlen);
    free(copy);
    if (ret != 0) {
        rc = fail_mbed(p, -EBADMSG, ret, "CSR");
        goto out;
    }
    if (!key_is_p256(&req.pk)) {
        rc = fail(p, -EPERM, "CSR: key is not EC P-256");
        goto out;
    }
    if (req.sig_pk != MBEDTLS_PK_ECDSA ||
        (req.sig_md != MBEDTLS_MD_SHA256 && req.sig_md != MBEDTLS_MD_SHA384 &&
         req.sig_md != MBEDTLS_MD_SHA512)) {
        rc = fail(p, -EPERM, "CSR: not signed with ECDSA and SHA-256 or stronger");
        goto out;
    }
    if ((rc = csr_verify_self(p, &req)) != 0 || (rc = csr_check_cn(p, &req, csr_cn)) != 0)
        goto out;
    rc = make_client(p, ca, &req.pk, device_id, days, pem);
out:
    mbedtls_x509_csr_free(&req);
    return rc;
}

/* ---- reading certificates ------------------------------------------------ */

int c2d_pki_cert_info(c2d_pki *p, const void *buf, size_t len, c2d_pki_certinfo *out)
{
    p->err[0] = '\0';
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    int rc = parse_cert(p, buf, len, "certificate", &crt);
    if (rc != 0)
        goto out;
    c2d_pki_certinfo info;
    memset(&info, 0, sizeof(info));
    for (const mbedtls_x509_name *n = &crt.subject; n; n = n->next) {
        if (n->oid.p == NULL || MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) != 0)
            continue;
        if (n->val.len > C2D_PKI_CN_MAX || memchr(n->val.p, 0, n->val.len)) {
            rc = fail(p, -EBADMSG, "certificate: CN too long or holds a NUL");
            goto out;
        }
        memcpy(info.cn, n->val.p, n->val.len);
        info.cn[n->val.len] = '\0';
        break;
    }
    /* DER INTEGER: a leading 00 only keeps the sign; openssl omits it */
    const unsigned char *s = crt.serial.p;
    size_t sn = crt.serial.len;
    while (sn > 1 && s[0] == 0)
        s++, sn--;
    if (sn * 2 >= sizeof(info.serial)) {
        rc = fail(p, -EBADMSG, "certificate: serial number too long");
        goto out;
    }
    for (size_t i = 0; i < sn; i++)
        snprintf(info.serial + 2 * i, 3, "%02X", s[i]);
    info.not_before = x509_time_unix(&crt.valid_from);
    info.not_after = x509_time_unix(&crt.valid_to);
    info.is_ca = crt.ca_istrue;
    *out = info;
out:
    mbedtls_x509_crt_free(&crt);
    return rc;
}

int c2d_pki_cert_info_file(c2d_pki *p, const char *path, c2d_pki_certinfo *out)
{
    char *buf;
    size_t len;
    int rc = read_small(p, path, &buf, &len);
    if (rc != 0)
        return rc;
    rc = c2d_pki_cert_info(p, buf, len, out);
    free(buf);
    return rc != 0 ? fail_in(p, rc, path) : 0;
}

int c2d_pki_cert_has_key(c2d_pki *p, const void *buf, size_t len, const c2d_pki_key *key)
{
    p->err[0] = '\0';
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    int ret, rc = parse_cert(p, buf, len, "certificate", &crt);
    if (rc == 0 && (ret = mbedtls_pk_check_pair(&crt.pk, &key->pk)) != 0)
        rc = mbed_is_alloc(ret) ? fail(p, -ENOMEM, "out of memory")
                                : fail(p, -EKEYREJECTED, "certificate: it holds another key");
    mbedtls_x509_crt_free(&crt);
    return rc;
}
