/* Unit tests for common/pki.c: keys, CSRs, the CA chain, CSR signing policy
 * (CN = device id, safe ids only, self-signature, lifetime) and key files. */
#include "check.h"
#include "common/c2d_fs.h"
#include "common/c2d_pki.h"
#include "proto/c2d_proto.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
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
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>

#define DAY 86400

static char tmpdir[256];
static c2d_pki *p;
static c2d_pki_ca *root, *issuing;
static char *root_pem, *issuing_pem;

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;

static void tmp_path(char *out, size_t len, const char *name)
{
    if (c2d_path_join(out, len, tmpdir, name) != 0)
        abort();
}

/* A CA from a fresh key: the root self-signed, others signed by parent. */
static c2d_pki_ca *make_ca(c2d_pki_ca *parent, const char *cn, int days, char **pem_out)
{
    c2d_pki_key *k = NULL;
    char *pem = NULL, *kpem = NULL;
    c2d_pki_ca *ca = NULL;
    if (c2d_pki_key_generate(p, &k) != 0 || c2d_pki_key_pem(p, k, &kpem) != 0)
        abort();
    int rc = parent ? c2d_pki_make_issuing(p, parent, k, cn, days, &pem)
                    : c2d_pki_make_root(p, k, cn, days, &pem);
    if (rc != 0 || c2d_pki_ca_parse(p, pem, strlen(pem), kpem, strlen(kpem), &ca) != 0) {
        fprintf(stderr, "make_ca %s: %s\n", cn, c2d_pki_error(p));
        abort();
    }
    c2d_pki_key_free(k);
    free(kpem);
    if (pem_out)
        *pem_out = pem;
    else
        free(pem);
    return ca;
}

/* A CSR for cn from a new P-256 key. */
static char *make_csr(const char *cn)
{
    c2d_pki_key *k;
    char *csr = NULL;
    if (c2d_pki_key_generate(p, &k) != 0)
        abort();
    CHECK(c2d_pki_csr_make(p, k, cn, &csr) == 0);
    c2d_pki_key_free(k);
    return csr;
}

/* A CSR written with mbedTLS directly, for shapes our library refuses to
 * make: a subject of the given CN values (may hold NUL), a key on curve. */
static int raw_csr(const char *const *cns, const size_t *lens, size_t n, mbedtls_ecp_group_id curve,
                   unsigned char *der, size_t cap, size_t *len)
{
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    mbedtls_x509write_csr w;
    mbedtls_x509write_csr_init(&w);
    int ret = mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (ret == 0)
        ret = mbedtls_ecp_gen_key(curve, mbedtls_pk_ec(pk), mbedtls_ctr_drbg_random, &drbg);
    mbedtls_x509write_csr_set_key(&w, &pk);
    mbedtls_x509write_csr_set_md_alg(&w, MBEDTLS_MD_SHA256);
    /* store_named_data replaces a same-OID entry, so a second CN goes in by
     * hand at the head of the list */
    for (size_t i = 0; ret == 0 && i < n; i++) {
        mbedtls_asn1_named_data *d = calloc(1, sizeof(*d));
        d->oid.p = malloc(MBEDTLS_OID_SIZE(MBEDTLS_OID_AT_CN));
        memcpy(d->oid.p, MBEDTLS_OID_AT_CN, MBEDTLS_OID_SIZE(MBEDTLS_OID_AT_CN));
        d->oid.len = MBEDTLS_OID_SIZE(MBEDTLS_OID_AT_CN);
        d->oid.tag = MBEDTLS_ASN1_OID;
        d->val.p = malloc(lens[i] ? lens[i] : 1);
        memcpy(d->val.p, cns[i], lens[i]);
        d->val.len = lens[i];
        d->val.tag = MBEDTLS_ASN1_UTF8_STRING;
        d->next = w.subject;
        w.subject = d;
    }
    if (ret == 0) {
        ret = mbedtls_x509write_csr_der(&w, der, cap, mbedtls_ctr_drbg_random, &drbg);
        if (ret > 0) {
            memmove(der, der + cap - (size_t)ret, (size_t)ret);
            *len = (size_t)ret;
            ret = 0;
        }
    }
    mbedtls_x509write_csr_free(&w);
    mbedtls_pk_free(&pk);
    return ret;
}

/* DER of a PEM CSR. */
static size_t csr_der(const char *pem, unsigned char *der, size_t cap)
{
    mbedtls_x509_csr c;
    mbedtls_x509_csr_init(&c);
    if (mbedtls_x509_csr_parse(&c, (const unsigned char *)pem, strlen(pem) + 1) != 0 ||
        c.raw.len > cap)
        abort();
    memcpy(der, c.raw.p, c.raw.len);
    size_t n = c.raw.len;
    mbedtls_x509_csr_free(&c);
    return n;
}

/* Verifies leaf (+ the issuing CA as intermediate) up to the root alone. */
static int verify_chain(const char *leaf_pem, uint32_t *flags)
{
    mbedtls_x509_crt chain, trust;
    mbedtls_x509_crt_init(&chain);
    mbedtls_x509_crt_init(&trust);
    int ret = mbedtls_x509_crt_parse(&chain, (const unsigned char *)leaf_pem, strlen(leaf_pem) + 1);
    if (ret == 0)
        ret = mbedtls_x509_crt_parse(&chain, (const unsigned char *)issuing_pem,
                                     strlen(issuing_pem) + 1);
    if (ret == 0)
        ret = mbedtls_x509_crt_parse(&trust, (const unsigned char *)root_pem, strlen(root_pem) + 1);
    *flags = 0;
    if (ret == 0)
        ret = mbedtls_x509_crt_verify(&chain, &trust, NULL, NULL, flags, NULL, NULL);
    mbedtls_x509_crt_free(&chain);
    mbedtls_x509_crt_free(&trust);
    return ret;
}

/* ---- tests ----------------------------------------------------------- */

static void test_round_trip(void)
{
    char *csr = make_csr("rec-1");
    char *crt = NULL;
    time_t now = time(NULL);
    CHECK(c2d_pki_sign_csr(p, issuing, csr, strlen(csr), "rec-1", 365, &crt) == 0);
    CHECK(crt != NULL);
    if (!crt) {
        free(csr);
        return;
    }
    uint32_t flags;
    CHECK(verify_chain(crt, &flags) == 0 && flags == 0);

    c2d_pki_certinfo info;
    CHECK(c2d_pki_cert_info(p, crt, strlen(crt), &info) == 0);
    CHECK(strcmp(info.cn, "rec-1") == 0);
    CHECK(strlen(info.serial) >= 16 && strlen(info.serial) <= 32);
    CHECK(!info.is_ca);
    CHECK(info.not_before <= now && info.not_before >= now - 600);
    CHECK(info.not_after >= now + 365 * DAY - 5 && info.not_after <= now + 365 * DAY + 5);

    mbedtls_x509_crt c;
    mbedtls_x509_crt_init(&c);
    CHECK(mbedtls_x509_crt_parse(&c, (const unsigned char *)crt, strlen(crt) + 1) == 0);
    char dn[128];
    CHECK(mbedtls_x509_dn_gets(dn, sizeof(dn), &c.subject) > 0 && strcmp(dn, "CN=rec-1") == 0);
    CHECK(c.ca_istrue == 0);
    CHECK(mbedtls_x509_crt_check_key_usage(&c, MBEDTLS_X509_KU_DIGITAL_SIGNATURE) == 0);
    CHECK(mbedtls_x509_crt_check_key_usage(&c, MBEDTLS_X509_KU_KEY_CERT_SIGN) != 0);
    CHECK(mbedtls_x509_crt_check_extended_key_usage(
              &c, MBEDTLS_OID_CLIENT_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)) == 0);
    CHECK(mbedtls_x509_crt_check_extended_key_usage(
              &c, MBEDTLS_OID_SERVER_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)) != 0);
    CHECK(c.serial.len >= 16 && c.serial.len <= 17);
    mbedtls_x509_crt_free(&c);

    /* DER input is accepted as well, and two signings differ in serial */
    unsigned char der[2048];
    size_t n = csr_der(csr, der, sizeof(der));
    char *crt2 = NULL;
    c2d_pki_certinfo info2;
    CHECK(c2d_pki_sign_csr(p, issuing, der, n, "rec-1", 30, &crt2) == 0);
    CHECK(crt2 && c2d_pki_cert_info(p, crt2, strlen(crt2), &info2) == 0);
    CHECK(crt2 && strcmp(info.serial, info2.serial) != 0);
    free(crt2);
    free(crt);
    free(csr);
}

static void test_cn_mismatch(void)
{
    char *csr = make_csr("rec-1");
    char *crt = NULL;
    CHECK(c2d_pki_sign_csr(p, issuing, csr, strlen(csr), "rec-2", 30, &crt) == -EPERM);
    CHECK(strstr(c2d_pki_error(p), "not the device id") != NULL);
    CHECK(c2d_pki_sign_csr(p, issuing, csr, strlen(csr), "rec-10", 30, &crt) == -EPERM);
    CHECK(c2d_pki_sign_csr(p, issuing, csr, strlen(csr), "REC-1", 30, &crt) == -EPERM);
    CHECK(crt == NULL);
    free(csr);

    /* CN "rec-1\0x" must not pass as "rec-1"; nor two CNs; nor none */
    unsigned char der[1024];
    size_t n;
    const char *nul[] = {"rec-1\0x"};
    size_t nul_len[] = {7};
    CHECK(raw_csr(nul, nul_len, 1, MBEDTLS_ECP_DP_SECP256R1, der, sizeof(der), &n) == 0);
    CHECK(c2d_pki_sign_csr(p, issuing, der, n, "rec-1", 30, &crt) == -EPERM);
    CHECK(strstr(c2d_pki_error(p), "\"rec-1\\x00x\" is not the device id") != NULL);
    const char *two[] = {"rec-1", "rec-1"};
    size_t two_len[] = {5, 5};
    CHECK(raw_csr(two, two_len, 2, MBEDTLS_ECP_DP_SECP256R1, der, sizeof(der), &n) == 0);
    CHECK(c2d_pki_sign_csr(p, issuing, der, n, "rec-1", 30, &crt) == -EPERM);
    CHECK(strstr(c2d_pki_error(p), "more than one CN") != NULL);
    CHECK(raw_csr(NULL, NULL, 0, MBEDTLS_ECP_DP_SECP256R1, der, sizeof(der), &n) == 0);
    /* an empty subject: mbedTLS already refuses to parse it */
    CHECK(c2d_pki_sign_csr(p, issuing, der, n, "rec-1", 30, &crt) == -EBADMSG);
    /* the same shape with a good CN is accepted (the helper itself works) */
    const char *one[] = {"rec-1"};
    size_t one_len[] = {5};
    CHECK(raw_csr(one, one_len, 1, MBEDTLS_ECP_DP_SECP256R1, der, sizeof(der), &n) == 0);
    CHECK(c2d_pki_sign_csr(p, issuing, der, n, "rec-1", 30, &crt) == 0);
    free(crt);
    crt = NULL;
    /* a key on another curve */
    CHECK(raw_csr(one, one_len, 1, MBEDTLS_ECP_DP_SECP384R1, der, sizeof(der), &n) == 0);
    CHECK(c2d_pki_sign_csr(p, issuing, der, n, "rec-1", 30, &crt) == -EPERM);
    CHECK(strstr(c2d_pki_error(p), "P-256") != NULL);
    CHECK(crt == NULL);
}

static void test_unsafe_ids(void)
{
    char long_id[C2D_DEVICE_ID_MAX + 2];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0'; /* 65 characters */
    const char *bad[] = {"",   "rec/1", "rec+1", "rec#1", "rec 1",          ".rec", "-rec",
                         "..", "rec\n", "réc",   long_id, "c2d-controller", "C2D-x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* the CSR's CN is the id itself whenever our CSR maker allows it, so
         * the refusal is the id check's and not a CN mismatch */
        char *csr = make_csr("rec-1");
        char *crt = NULL;
        int rc = c2d_pki_sign_csr(p, issuing, csr, strlen(csr), bad[i], 30, &crt);
        if (rc != -EINVAL)
            fprintf(stderr, "id \"%s\": rc %d\n", bad[i], rc);
        CHECK(rc == -EINVAL);
        CHECK(crt == NULL);
        free(csr);
    }
    /* a CSR whose CN is one of them, id equal to it: still refused */
    unsigned char der[1024];
    size_t n;
    const char *cn[] = {"rec/1"};
    size_t len[] = {5};
    char *crt = NULL;
    CHECK(raw_csr(cn, len, 1, MBEDTLS_ECP_DP_SECP256R1, der, sizeof(der), &n) == 0);
    CHECK(c2d_pki_sign_csr(p, issuing, der, n, "rec/1", 30, &crt) == -EINVAL);
    CHECK(c2d_pki_sign_csr(p, issuing, der, n, NULL, 30, &crt) == -EINVAL);
    /* the longest valid id works */
    char max_id[C2D_DEVICE_ID_MAX + 1];
    memset(max_id, 'b', sizeof(max_id) - 1);
    max_id[sizeof(max_id) - 1] = '\0';
    char *csr = make_csr(max_id);
    CHECK(c2d_pki_sign_csr(p, issuing, csr, strlen(csr), max_id, 30, &crt) == 0);
    free(crt);
    free(csr);
}

static void test_tampered(void)
{
    char *csr = make_csr("rec-1");
    unsigned char der[2048], bad[2048];
    size_t n = csr_der(csr, der, sizeof(der));
    char *crt = NULL;
    /* the last byte is inside the signature's s value */
    memcpy(bad, der, n);
    bad[n - 1] ^= 0x01;
    CHECK(c2d_pki_sign_csr(p, issuing, bad, n, "rec-1", 30, &crt) == -EBADMSG);
    CHECK(strstr(c2d_pki_error(p), "signature") != NULL);
    /* a byte of the signed part (the CN "rec-1" -> "rec-3") */
    memcpy(bad, der, n);
    unsigned char *at = memmem(bad, n, "rec-1", 5);
    CHECK(at != NULL);
    if (at) {
        at[4] = '3';
        CHECK(c2d_pki_sign_csr(p, issuing, bad, n, "rec-3", 30, &crt) == -EBADMSG);
    }
    /* truncated, empty, garbage, oversized */
    CHECK(c2d_pki_sign_csr(p, issuing, der, n - 1, "rec-1", 30, &crt) == -EBADMSG);
    CHECK(c2d_pki_sign_csr(p, issuing, "", 0, "rec-1", 30, &crt) == -EBADMSG);
    CHECK(c2d_pki_sign_csr(p, issuing, csr, strlen(csr) / 2, "rec-1", 30, &crt) == -EBADMSG);
    char *big = calloc(1, C2D_PKI_CSR_MAX + 1);
    CHECK(c2d_pki_sign_csr(p, issuing, big, C2D_PKI_CSR_MAX + 1, "rec-1", 30, &crt) == -EBADMSG);
    free(big);
    CHECK(crt == NULL);
    free(csr);
}

static void test_lifetime(void)
{
    char *csr = make_csr("rec-1");
    char *crt = NULL;
    time_t now = time(NULL);
    CHECK(c2d_pki_sign_csr(p, issuing, csr, strlen(csr), "rec-1", 0, &crt) == -EINVAL);
    CHECK(c2d_pki_sign_csr(p, issuing, csr, strlen(csr), "rec-1", -1, &crt) == -EINVAL);
    CHECK(c2d_pki_sign_csr(p, issuing, csr, strlen(csr), "rec-1", C2D_PKI_DEVICE_DAYS_MAX + 1,
                           &crt) == -EINVAL);
    CHECK(crt == NULL);
    c2d_pki_certinfo info;
    CHECK(c2d_pki_sign_csr(p, issuing, csr, strlen(csr), "rec-1", C2D_PKI_DEVICE_DAYS_MAX, &crt) ==
          0);
    CHECK(crt && c2d_pki_cert_info(p, crt, strlen(crt), &info) == 0);
    CHECK(info.not_after <= now + (int64_t)C2D_PKI_DEVICE_DAYS_MAX * DAY + 5);
    CHECK(info.not_after >= now + (int64_t)C2D_PKI_DEVICE_DAYS_MAX * DAY - 5);
    free(crt);
    crt = NULL;

    /* an issuing CA with 10 days left: a year's certificate ends with it */
    c2d_pki_certinfo ca_info;
    char *short_pem = NULL;
    c2d_pki_ca *short_ca = make_ca(root, "short CA", 10, &short_pem);
    CHECK(c2d_pki_cert_info(p, short_pem, strlen(short_pem), &ca_info) == 0 && ca_info.is_ca);
    CHECK(c2d_pki_sign_csr(p, short_ca, csr, strlen(csr), "rec-1", 365, &crt) == 0);
    CHECK(crt && c2d_pki_cert_info(p, crt, strlen(crt), &info) == 0);
    CHECK(info.not_after == ca_info.not_after);
    free(crt);
    free(short_pem);
    c2d_pki_ca_free(short_ca);

    /* the other kinds have their caps too */
    c2d_pki_key *k;
    CHECK(c2d_pki_key_generate(p, &k) == 0);
    crt = NULL;
    CHECK(c2d_pki_make_client(p, issuing, k, "c2d-controller", C2D_PKI_CLIENT_DAYS + 1, &crt) ==
          -EINVAL);
    CHECK(c2d_pki_make_root(p, k, "x", C2D_PKI_ROOT_DAYS + 1, &crt) == -EINVAL);
    CHECK(c2d_pki_make_issuing(p, root, k, "x", C2D_PKI_ISSUING_DAYS + 1, &crt) == -EINVAL);
    CHECK(crt == NULL);
    c2d_pki_key_free(k);
    free(csr);
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (st.st_mode & 07777) : (mode_t)-1;
}

static int dir_entries(void)
{
    DIR *d = opendir(tmpdir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    if (d)
        closedir(d);
    return n;
}

static void test_key_files(void)
{
    char path[512], cpath[512];
    tmp_path(path, sizeof(path), "dev.key");
    tmp_path(cpath, sizeof(cpath), "dev.crt");
    c2d_pki_key *k1, *k2, *loaded = NULL;
    CHECK(c2d_pki_key_generate(p, &k1) == 0);
    CHECK(c2d_pki_key_generate(p, &k2) == 0);
    mode_t old = umask(0); /* the modes must not depend on the umask */
    CHECK(c2d_pki_key_save(p, k1, path, 0) == 0);
    umask(old);
    CHECK(file_mode(path) == 0600);
    char *pem1 = NULL, *pem2 = NULL, *disk = NULL;
    CHECK(c2d_pki_key_pem(p, k1, &pem1) == 0);
    CHECK(c2d_pki_key_pem(p, k2, &pem2) == 0);
    CHECK(pem1 && pem2 && strstr(pem1, "BEGIN EC PRIVATE KEY") && strcmp(pem1, pem2) != 0);

    /* not overwritten without the flag; content and mode unchanged */
    CHECK(c2d_pki_key_save(p, k2, path, 0) == -EEXIST);
    CHECK(strstr(c2d_pki_error(p), "exists") != NULL);
    CHECK(c2d_read_file(path, 4096, &disk, NULL) == 0 && strcmp(disk, pem1) == 0);
    free(disk);
    CHECK(file_mode(path) == 0600);
    /* replaced with it */
    CHECK(c2d_pki_key_save(p, k2, path, C2D_PKI_OVERWRITE) == 0);
    CHECK(c2d_read_file(path, 4096, &disk, NULL) == 0 && strcmp(disk, pem2) == 0);
    free(disk);
    CHECK(file_mode(path) == 0600);

    /* a loaded key signs a CSR the CA accepts */
    CHECK(c2d_pki_key_load(p, path, &loaded) == 0);
    char *csr = NULL, *crt = NULL;
    CHECK(loaded && c2d_pki_csr_make(p, loaded, "rec-7", &csr) == 0);
    CHECK(csr && c2d_pki_sign_csr(p, issuing, csr, strlen(csr), "rec-7", 30, &crt) == 0);

    /* certificates are 0644, same no-overwrite rule */
    CHECK(crt && c2d_pki_write_file(p, cpath, crt, strlen(crt), 0644, 0) == 0);
    CHECK(file_mode(cpath) == 0644);
    CHECK(c2d_pki_write_file(p, cpath, "x", 1, 0644, 0) == -EEXIST);
    c2d_pki_certinfo info;
    CHECK(c2d_pki_cert_info_file(p, cpath, &info) == 0 && strcmp(info.cn, "rec-7") == 0);
    CHECK(dir_entries() == 2); /* no temp file left behind */

    /* errors name the file */
    char missing[512];
    tmp_path(missing, sizeof(missing), "missing.key");
    CHECK(c2d_pki_key_load(p, missing, &loaded) == -ENOENT);
    CHECK(strstr(c2d_pki_error(p), "missing.key") != NULL);
    CHECK(c2d_pki_key_load(p, cpath, &k2) == -EBADMSG); /* a certificate is no key */

    free(csr);
    free(crt);
    free(pem1);
    free(pem2);
    c2d_pki_key_free(k1);
    c2d_pki_key_free(k2);
    c2d_pki_key_free(loaded);
    unlink(path);
    unlink(cpath);
}

static void test_server_and_cas(void)
{
    c2d_pki_key *k;
    CHECK(c2d_pki_key_generate(p, &k) == 0);
    const char *dns[] = {"localhost", "broker.example.com"};
    const char *ips[] = {"127.0.0.1", "::1"};
    char *crt = NULL;
    CHECK(c2d_pki_make_server(p, issuing, k, "localhost", dns, 2, ips, 2, 825, &crt) == 0);
    uint32_t flags;
    CHECK(crt && verify_chain(crt, &flags) == 0);
    mbedtls_x509_crt c, trust;
    mbedtls_x509_crt_init(&c);
    mbedtls_x509_crt_init(&trust);
    CHECK(crt && mbedtls_x509_crt_parse(&c, (const unsigned char *)crt, strlen(crt) + 1) == 0);
    CHECK(mbedtls_x509_crt_parse(&c, (const unsigned char *)issuing_pem, strlen(issuing_pem) + 1) ==
          0);
    CHECK(mbedtls_x509_crt_parse(&trust, (const unsigned char *)root_pem, strlen(root_pem) + 1) ==
          0);
    /* the names are in subjectAltName: mbedTLS checks dNSName entries */
    CHECK(mbedtls_x509_crt_verify(&c, &trust, NULL, "broker.example.com", &flags, NULL, NULL) == 0);
    CHECK(mbedtls_x509_crt_verify(&c, &trust, NULL, "other.example.com", &flags, NULL, NULL) != 0 &&
          (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH));
    CHECK(mbedtls_x509_crt_check_extended_key_usage(
              &c, MBEDTLS_OID_SERVER_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)) == 0);
    mbedtls_x509_crt_free(&c);
    mbedtls_x509_crt_free(&trust);
    free(crt);
    crt = NULL;

    /* bad names, addresses, counts */
    const char *bad_dns[] = {"-x.example", "a..b", "a_b", "x/y", "", "a.-b"};
    for (size_t i = 0; i < sizeof(bad_dns) / sizeof(bad_dns[0]); i++)
        CHECK(c2d_pki_make_server(p, issuing, k, "b", &bad_dns[i], 1, NULL, 0, 30, &crt) ==
              -EINVAL);
    const char *bad_ip[] = {"1.2.3", "::g"};
    CHECK(c2d_pki_make_server(p, issuing, k, "b", NULL, 0, bad_ip, 1, 30, &crt) == -EINVAL);
    CHECK(c2d_pki_make_server(p, issuing, k, "b", NULL, 0, bad_ip + 1, 1, 30, &crt) == -EINVAL);
    CHECK(c2d_pki_make_server(p, issuing, k, "b", NULL, 0, NULL, 0, 30, &crt) == -EINVAL);
    const char *many[C2D_PKI_SAN_MAX + 1];
    for (size_t i = 0; i <= C2D_PKI_SAN_MAX; i++)
        many[i] = "a.example";
    CHECK(c2d_pki_make_server(p, issuing, k, "b", many, C2D_PKI_SAN_MAX + 1, NULL, 0, 30, &crt) ==
          -EINVAL);
    CHECK(c2d_pki_make_server(p, issuing, k, "b", many, C2D_PKI_SAN_MAX, NULL, 0, 30, &crt) == 0);
    free(crt);
    crt = NULL;
    /* unsafe CNs for the subject string */
    CHECK(c2d_pki_make_client(p, issuing, k, "a,CN=b", 30, &crt) == -EINVAL);
    CHECK(c2d_pki_make_client(p, issuing, k, "a/b", 30, &crt) == -EINVAL);
    CHECK(c2d_pki_csr_make(p, k, "a=b", &crt) == -EINVAL);
    CHECK(crt == NULL);

    /* a CA needs a CA certificate and its own key */
    char *client = NULL, *kpem = NULL, *other = NULL;
    c2d_pki_key *k2;
    CHECK(c2d_pki_key_generate(p, &k2) == 0);
    CHECK(c2d_pki_make_client(p, issuing, k, "c2d-controller", 30, &client) == 0);
    CHECK(c2d_pki_key_pem(p, k, &kpem) == 0);
    CHECK(c2d_pki_key_pem(p, k2, &other) == 0);
    c2d_pki_ca *ca = NULL;
    CHECK(c2d_pki_ca_parse(p, client, strlen(client), kpem, strlen(kpem), &ca) == -EINVAL);
    CHECK(c2d_pki_ca_parse(p, issuing_pem, strlen(issuing_pem), other, strlen(other), &ca) ==
          -EINVAL);
    CHECK(c2d_pki_ca_parse(p, "junk", 4, kpem, strlen(kpem), &ca) == -EBADMSG);
    CHECK(ca == NULL);
    c2d_pki_certinfo info;
    CHECK(c2d_pki_cert_info(p, client, strlen(client), &info) == 0);
    CHECK(strcmp(info.cn, "c2d-controller") == 0 && !info.is_ca);
    CHECK(c2d_pki_cert_info(p, root_pem, strlen(root_pem), &info) == 0 && info.is_ca);
    CHECK(c2d_pki_cert_info(p, "junk", 4, &info) == -EBADMSG);
    CHECK(c2d_pki_error(p)[0] != '\0');
    free(client);
    free(kpem);
    free(other);
    c2d_pki_key_free(k);
    c2d_pki_key_free(k2);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Pairing: the recorder asks under its serial, the certificate is for the
 * device id the controller chose (c2d_pki_sign_csr_as). */
static void test_sign_as(void)
{
    char *csr = make_csr("SN-0042");
    char *crt = NULL;
    CHECK(c2d_pki_sign_csr_as(p, issuing, csr, strlen(csr), "SN-0042", "rec-7", 30, &crt) == 0);
    c2d_pki_certinfo info;
    CHECK(crt && c2d_pki_cert_info(p, crt, strlen(crt), &info) == 0 &&
          strcmp(info.cn, "rec-7") == 0);
    uint32_t flags;
    CHECK(crt && verify_chain(crt, &flags) == 0 && flags == 0);
    free(crt);
    crt = NULL;
    /* the CSR's CN must be the expected one, byte for byte */
    CHECK(c2d_pki_sign_csr_as(p, issuing, csr, strlen(csr), "SN-004", "rec-7", 30, &crt) == -EPERM);
    CHECK(c2d_pki_sign_csr_as(p, issuing, csr, strlen(csr), "sn-0042", "rec-7", 30, &crt) ==
          -EPERM);
    /* the issued id is still checked: never a reserved or unsafe one */
    CHECK(c2d_pki_sign_csr_as(p, issuing, csr, strlen(csr), "SN-0042", "c2d-controller", 30,
                              &crt) == -EINVAL);
    CHECK(c2d_pki_sign_csr_as(p, issuing, csr, strlen(csr), "SN-0042", "a/b", 30, &crt) == -EINVAL);
    CHECK(c2d_pki_sign_csr_as(p, issuing, csr, strlen(csr), "", "rec-7", 30, &crt) == -EINVAL);
    CHECK(c2d_pki_sign_csr_as(p, issuing, csr, strlen(csr), NULL, "rec-7", 30, &crt) == -EINVAL);
    CHECK(crt == NULL);
    free(csr);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/c2d-test-pki-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0) != 0 ||
        c2d_pki_new(&p) != 0)
        return 1;
    root = make_ca(NULL, "test root CA", C2D_PKI_ROOT_DAYS, &root_pem);
    issuing = make_ca(root, "test issuing CA", C2D_PKI_ISSUING_DAYS, &issuing_pem);

    test_round_trip();
    test_cn_mismatch();
    test_sign_as();
    test_unsafe_ids();
    test_tampered();
    test_lifetime();
    test_key_files();
    test_server_and_cas();

    c2d_pki_ca_free(root);
    c2d_pki_ca_free(issuing);
    free(root_pem);
    free(issuing_pem);
    c2d_pki_free(p);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return check_result();
}
