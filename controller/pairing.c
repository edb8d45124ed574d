/* Pairing a recorder with a one-time code (docs/pairing.md). */
#include "controller/pairing.h"

#include "common/c2d_fs.h"
#include "common/c2d_hash.h"
#include "common/c2d_time.h"
#include "proto/c2d_proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Serials come out of c2d_pair_topic_parse into CN-sized buffers. */
_Static_assert(C2D_PKI_CN_MAX == C2D_DEVICE_ID_MAX, "a serial is a CN and a topic id");

const char *ctl_pair_result_name(ctl_pair_result r)
{
    switch (r) {
    case CTL_PAIR_OK:
        return "ok";
    case CTL_PAIR_WRONG_CODE:
        return "wrong_code";
    case CTL_PAIR_EXPIRED:
        return "expired";
    case CTL_PAIR_USED:
        return "used";
    case CTL_PAIR_LOCKED:
        return "locked";
    case CTL_PAIR_UNKNOWN_SERIAL:
        return "unknown_serial";
    case CTL_PAIR_BAD_CSR:
        return "bad_csr";
    case CTL_PAIR_BAD_REQUEST:
        return "bad_request";
    case CTL_PAIR_INTERNAL:
        break;
    }
    return "internal";
}

/* ---- stored state ------------------------------------------------------- */

static int64_t jint(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

int ctl_pair_state_get(const cJSON *recorder, ctl_pair_state *out)
{
    ctl_pair_state st;
    memset(&st, 0, sizeof(st));
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(recorder, "_pair");
    if (p) {
        if (!cJSON_IsObject(p))
            return -EINVAL;
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(p, "hash");
        if (cJSON_IsString(h)) {
            if (strlen(h->valuestring) != 64)
                return -EINVAL;
            memcpy(st.hash, h->valuestring, 65);
        }
        st.expires_us = jint(p, "expires");
        st.used = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "used"));
        st.fails = (int)jint(p, "fails");
        st.locked_until_us = jint(p, "locked_until");
    }
    *out = st;
    return 0;
}

int ctl_pair_state_put(cJSON *recorder, const ctl_pair_state *st)
{
    cJSON *p = cJSON_CreateObject();
    if (!p || !cJSON_AddStringToObject(p, "hash", st->hash) ||
        !cJSON_AddNumberToObject(p, "expires", (double)st->expires_us) ||
        !cJSON_AddBoolToObject(p, "used", st->used) ||
        !cJSON_AddNumberToObject(p, "fails", st->fails) ||
        !cJSON_AddNumberToObject(p, "locked_until", (double)st->locked_until_us)) {
        cJSON_Delete(p);
        return -ENOMEM;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(recorder, "_pair");
    cJSON_AddItemToObject(recorder, "_pair", p);
    return 0;
}

const char *ctl_pair_phase_name(ctl_pair_phase p)
{
    switch (p) {
    case CTL_PAIR_PHASE_NONE:
        break;
    case CTL_PAIR_PHASE_CODE_ISSUED:
        return "code_issued";
    case CTL_PAIR_PHASE_PAIRED:
        return "paired";
    case CTL_PAIR_PHASE_USED:
        return "used";
    case CTL_PAIR_PHASE_EXPIRED:
        return "expired";
    case CTL_PAIR_PHASE_LOCKED:
        return "locked";
    }
    return "none";
}

void ctl_pair_describe(const ctl_pair_state *st, bool has_device, int64_t now_us,
                       ctl_pair_view *out)
{
    ctl_pair_view v = {.phase = CTL_PAIR_PHASE_NONE, .wrong_codes = st->fails};
    if (st->hash[0]) {
        v.expires_us = st->expires_us;
        v.phase = st->used ? (has_device ? CTL_PAIR_PHASE_PAIRED : CTL_PAIR_PHASE_USED)
                  : now_us >= st->expires_us ? CTL_PAIR_PHASE_EXPIRED
                                             : CTL_PAIR_PHASE_CODE_ISSUED;
    }
    if (st->locked_until_us > now_us) {
        v.phase = CTL_PAIR_PHASE_LOCKED;
        v.locked_until_us = st->locked_until_us;
    } else if (st->locked_until_us) {
        v.wrong_codes = 0; /* as ctl_pair_check: the lock ran out, a fresh count */
    }
    *out = v;
}

/* ---- codes -------------------------------------------------------------- */

int ctl_pair_code_norm(const char *in, char out[CTL_PAIR_CODE_LEN + 1])
{
    char buf[CTL_PAIR_CODE_LEN + 1];
    size_t n = 0;
    if (!in || strnlen(in, CTL_PAIR_CODE_INPUT_MAX + 1) > CTL_PAIR_CODE_INPUT_MAX)
        return -EINVAL;
    for (; *in; in++) {
        char c = *in;
        if (c == '-' || c == ' ')
            continue;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c == '\0' || !strchr(CTL_PAIR_ALPHABET, c) || n == CTL_PAIR_CODE_LEN)
            return -EINVAL;
        buf[n++] = c;
    }
    if (n != CTL_PAIR_CODE_LEN)
        return -EINVAL;
    buf[n] = '\0';
    memcpy(out, buf, sizeof(buf));
    return 0;
}

/* The serial is part of the hash: a code is bound to its recorder, and the
 * same code for two serials is stored differently. */
static void code_hash(const char *serial, const char *norm, char hex[65])
{
    c2d_sha256 h;
    c2d_sha256_init(&h);
    c2d_sha256_update(&h, serial, strlen(serial));
    c2d_sha256_update(&h, "\n", 1);
    c2d_sha256_update(&h, norm, strlen(norm));
    c2d_sha256_final_hex(&h, hex);
}

/* Set at start from the configuration; the API reaches codes only through
 * its transactions, so the lifetime is process-wide. */
static int64_t code_ttl_us = CTL_PAIR_TTL_US;

void ctl_pair_set_code_ttl_us(int64_t ttl_us)
{
    code_ttl_us = ttl_us > 0 ? ttl_us : CTL_PAIR_TTL_US;
}

int ctl_pair_issue(ctl_pair_state *st, const char *serial, ctl_rng *rng, int64_t now_us,
                   char shown[CTL_PAIR_CODE_SHOWN + 1])
{
    const size_t na = sizeof(CTL_PAIR_ALPHABET) - 1;
    /* Rejection sampling: bytes past the last whole multiple of the
     * alphabet would favour its first letters. */
    const unsigned limit = (unsigned)(256 / na * na);
    char code[CTL_PAIR_CODE_LEN + 1];
    size_t n = 0;
    while (n < CTL_PAIR_CODE_LEN) {
        unsigned char b[16];
        if (ctl_rng_bytes(rng, b, sizeof(b)) != 0)
            return -EIO;
        for (size_t i = 0; i < sizeof(b) && n < CTL_PAIR_CODE_LEN; i++)
            if (b[i] < limit)
                code[n++] = CTL_PAIR_ALPHABET[b[i] % na];
    }
    code[n] = '\0';
    code_hash(serial, code, st->hash);
    st->expires_us = now_us + code_ttl_us;
    st->used = false;
    memcpy(shown, code, 4);
    shown[4] = '-';
    memcpy(shown + 5, code + 4, 4);
    shown[9] = '\0';
    return 0;
}

/* Constant time: the hashes are of secrets. */
static bool hex_equal(const char *a, const char *b)
{
    unsigned char d = 0;
    for (size_t i = 0; i < 64; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

ctl_pair_result ctl_pair_check(ctl_pair_state *st, const char *serial, const char *code,
                               int64_t now_us)
{
    if (st->locked_until_us > now_us)
        return CTL_PAIR_LOCKED;
    if (st->locked_until_us) {
        /* The lock ran out: a fresh count. */
        st->locked_until_us = 0;
        st->fails = 0;
    }
    char norm[CTL_PAIR_CODE_LEN + 1], hex[65];
    if (!st->hash[0] || ctl_pair_code_norm(code, norm) != 0 ||
        (code_hash(serial, norm, hex), !hex_equal(hex, st->hash))) {
        if (++st->fails >= CTL_PAIR_MAX_FAILS) {
            st->locked_until_us = now_us + CTL_PAIR_LOCK_US;
            st->fails = 0;
        }
        return CTL_PAIR_WRONG_CODE;
    }
    if (st->used)
        return CTL_PAIR_USED;
    if (now_us >= st->expires_us)
        return CTL_PAIR_EXPIRED;
    return CTL_PAIR_OK;
}

void ctl_pair_consume(ctl_pair_state *st)
{
    st->used = true;
    st->fails = 0;
}

/* ---- shared with renewal ------------------------------------------------ */

cJSON *ctl_pair_json_object(const void *buf, size_t len)
{
    /* "CODE\u0000x" would be read as the code; no valid code or CSR holds a
     * backslash. */
    if (!c2d_utf8_valid(buf, len) || memmem(buf, len, "\\u0000", 6))
        return NULL;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!j)
        return NULL;
    while (end < (const char *)buf + len && *end && strchr(" \t\r\n", *end))
        end++;
    if (!cJSON_IsObject(j) || end != (const char *)buf + len) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

int ctl_pair_signer_load(ctl_pair_signer *s, const char *cert_path, const char *key_path,
                         const char *chain_path, char *err, size_t errlen)
{
    int rc;
    if ((rc = c2d_pki_new(&s->pki)) != 0) {
        snprintf(err, errlen, "pki: %s", strerror(-rc));
        return rc;
    }
    if ((rc = c2d_pki_ca_load(s->pki, cert_path, key_path, &s->ca)) != 0) {
        snprintf(err, errlen, "issuing CA: %s", c2d_pki_error(s->pki));
        return rc;
    }
    size_t n;
    if ((rc = c2d_read_file(chain_path, C2D_PKI_FILE_MAX, &s->chain, &n)) != 0) {
        snprintf(err, errlen, "%s: %s", chain_path, strerror(-rc));
        return rc;
    }
    return 0;
}

void ctl_pair_signer_clear(ctl_pair_signer *s)
{
    c2d_pki_ca_free(s->ca);
    c2d_pki_free(s->pki);
    free(s->chain);
    memset(s, 0, sizeof(*s));
}

/* ---- request ------------------------------------------------------------ */

int ctl_pair_req_parse(const void *buf, size_t len, ctl_pair_req *out)
{
    if (len > CTL_PAIR_REQ_MAX)
        return -EFBIG;
    cJSON *j = ctl_pair_json_object(buf, len);
    if (!j)
        return -EINVAL;
    int rc = -EINVAL;
    const cJSON *code = NULL, *csr = NULL;
    for (const cJSON *it = j->child; it; it = it->next) {
        const cJSON **slot = !strcmp(it->string, "code")  ? &code
                             : !strcmp(it->string, "csr") ? &csr
                                                          : NULL;
        if (!slot || *slot || !cJSON_IsString(it))
            goto out;
        *slot = it;
    }
    if (!code || !csr || strlen(code->valuestring) > CTL_PAIR_CODE_INPUT_MAX ||
        !csr->valuestring[0] || strlen(csr->valuestring) > C2D_PKI_CSR_MAX)
        goto out;
    ctl_pair_req r;
    memset(&r, 0, sizeof(r));
    snprintf(r.code, sizeof(r.code), "%s", code->valuestring);
    r.csr_len = strlen(csr->valuestring);
    if (!(r.csr = strdup(csr->valuestring))) {
        rc = -ENOMEM;
        goto out;
    }
    *out = r;
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

void ctl_pair_req_clear(ctl_pair_req *r)
{
    if (!r)
        return;
    free(r->csr);
    r->csr = NULL;
}

/* ---- the handler -------------------------------------------------------- */

struct ctl_pairing {
    ctl_dir *dir;
    ctl_rng *rng;
    ctl_pair_signer signer;
    int days;
    char *host;
    int64_t port;
};

int ctl_pairing_new(const ctl_pairing_cfg *cfg, ctl_dir *dir, ctl_rng *rng, ctl_pairing **out,
                    char *err, size_t errlen)
{
    ctl_pairing *p = calloc(1, sizeof(*p));
    int rc = -ENOMEM;
    if (!p)
        goto fail;
    p->dir = dir;
    p->rng = rng;
    p->days = cfg->device_days;
    p->port = cfg->broker_port;
    if (!(p->host = strdup(cfg->broker_host ? cfg->broker_host : "")))
        goto fail;
    if ((rc = ctl_pair_signer_load(&p->signer, cfg->issuing_cert, cfg->issuing_key, cfg->chain, err,
                                   errlen)) != 0)
        goto fail;
    *out = p;
    return 0;
fail:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    ctl_pairing_free(p);
    return rc;
}

void ctl_pairing_free(ctl_pairing *p)
{
    if (!p)
        return;
    ctl_pair_signer_clear(&p->signer);
    free(p->host);
    free(p);
}

static char *answer(ctl_pair_result r, const ctl_pairing *p, const char *device, const char *cert)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    bool ok = cJSON_AddBoolToObject(j, "ok", r == CTL_PAIR_OK) != NULL;
    if (r == CTL_PAIR_OK) {
        cJSON *b = cJSON_AddObjectToObject(j, "broker");
        ok = ok && cJSON_AddStringToObject(j, "device_id", device) &&
             cJSON_AddStringToObject(j, "cert", cert) &&
             cJSON_AddStringToObject(j, "chain", p->signer.chain) && b &&
             cJSON_AddStringToObject(b, "host", p->host) &&
             cJSON_AddNumberToObject(b, "port", (double)p->port);
    } else {
        ok = ok && cJSON_AddStringToObject(j, "error", ctl_pair_result_name(r));
    }
    char *s = ok ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return s;
}

/* Checks and signs inside t; on OK sets *cert and device. */
static ctl_pair_result pair_txn(ctl_pairing *p, ctl_dir_txn *t, const char *serial,
                                const ctl_pair_req *req, char **cert,
                                char device[C2D_PKI_CN_MAX + 1])
{
    int kind;
    uint64_t id;
    if (ctl_dir_lookup(t, "serial", serial, &kind, &id) != 0 || kind != CTL_KIND_RECORDER)
        return CTL_PAIR_UNKNOWN_SERIAL;
    ctl_dir_obj o = {0};
    cJSON *j = NULL;
    ctl_pair_result r = CTL_PAIR_INTERNAL;
    if (ctl_dir_get(t, CTL_KIND_RECORDER, id, &o) != 0 || !(j = cJSON_Parse(o.json)))
        goto out;
    ctl_pair_state st;
    if (ctl_pair_state_get(j, &st) != 0)
        goto out;
    r = ctl_pair_check(&st, serial, req->code, ctl_dir_txn_now(t));
    const char *dev = jstr(j, "device_id");
    if (r == CTL_PAIR_OK) {
        if (!dev) {
            /* The API sets a device id with the code; none: unpaired since. */
            r = CTL_PAIR_UNKNOWN_SERIAL;
        } else if (c2d_pki_sign_csr_as(p->signer.pki, p->signer.ca, req->csr, req->csr_len, serial,
                                       dev, p->days, cert) != 0) {
            r = CTL_PAIR_BAD_CSR; /* the code stays usable */
        } else {
            ctl_pair_consume(&st);
            snprintf(device, C2D_PKI_CN_MAX + 1, "%s", dev);
        }
    }
    const char *action = r == CTL_PAIR_OK ? "paired" : "pairing_refused";
    cJSON *detail = cJSON_CreateObject();
    if (ctl_pair_state_put(j, &st) != 0 || !detail ||
        !cJSON_AddStringToObject(detail, "serial", serial) ||
        !cJSON_AddStringToObject(detail, "result", ctl_pair_result_name(r))) {
        cJSON_Delete(detail);
        r = CTL_PAIR_INTERNAL;
        goto out;
    }
    char *txt = cJSON_PrintUnformatted(j);
    char *old = o.json;
    o.json = txt;
    /* NULL keys keep the recorder's serial and device keys; no actor: the
     * '_pair' change alone is not an audit entry, the note below is. */
    int rc = txt ? ctl_dir_put(t, NULL, &o, NULL, 0) : -ENOMEM;
    o.json = old;
    free(txt);
    if (rc == 0)
        rc = ctl_dir_audit_note(t, "device:pairing", o.tenant, CTL_KIND_RECORDER, id, action,
                                detail);
    cJSON_Delete(detail);
    if (rc != 0)
        r = CTL_PAIR_INTERNAL;
out:
    if (r != CTL_PAIR_OK && *cert) {
        free(*cert);
        *cert = NULL;
    }
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return r;
}

ctl_pair_result ctl_pairing_handle(ctl_pairing *p, const char *topic, const void *payload,
                                   size_t len, char resp_topic[128], char **resp,
                                   char device[C2D_PKI_CN_MAX + 1])
{
    char serial[C2D_PKI_CN_MAX + 1];
    ctl_pair_req req;
    c2d_pair_kind kind;
    if (c2d_pair_topic_parse(topic, serial, &kind) != C2D_OK || kind != C2D_PAIR_REQ ||
        c2d_pair_topic_format(resp_topic, 128, serial, C2D_PAIR_RESP) != C2D_OK)
        return CTL_PAIR_BAD_REQUEST;
    if (ctl_pair_req_parse(payload, len, &req) != 0)
        return CTL_PAIR_BAD_REQUEST;
    ctl_dir_txn *t = NULL;
    char *cert = NULL;
    ctl_pair_result r = CTL_PAIR_INTERNAL;
    if (ctl_dir_begin(p->dir, 1, &t) == 0) {
        r = pair_txn(p, t, serial, &req, &cert, device);
        if (r == CTL_PAIR_INTERNAL || r == CTL_PAIR_UNKNOWN_SERIAL)
            ctl_dir_abort(t);
        else if (ctl_dir_commit(t) != 0)
            r = CTL_PAIR_INTERNAL;
    }
    ctl_pair_req_clear(&req);
    if (r != CTL_PAIR_INTERNAL && !(*resp = answer(r, p, device, cert)))
        r = CTL_PAIR_INTERNAL;
    free(cert);
    return r;
}
