/* Renewing a device's certificate (docs/pairing.md, "Renewal"). */
#include "controller/renew.h"

#include "common/c2d_time.h"
#include "controller/pairing.h"
#include "controller/revoke.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* First size of the rate table; it doubles up to CTL_RENEW_TRACK_MAX. */
#define TRACK_INIT 64

const char *ctl_renew_result_name(ctl_renew_result r)
{
    switch (r) {
    case CTL_RENEW_OK:
        return "ok";
    case CTL_RENEW_BAD_CSR:
        return "bad_csr";
    case CTL_RENEW_TOO_SOON:
        return "too_soon";
    case CTL_RENEW_REVOKED:
        return "revoked";
    case CTL_RENEW_UNAVAILABLE:
        break;
    }
    return "unavailable";
}

int ctl_renew_req_parse(const void *buf, size_t len, char **csr, size_t *csr_len)
{
    if (len > CTL_RENEW_REQ_MAX)
        return -EFBIG;
    cJSON *j = ctl_pair_json_object(buf, len);
    if (!j)
        return -EINVAL;
    int rc = -EINVAL;
    const cJSON *c = NULL;
    for (const cJSON *it = j->child; it; it = it->next) {
        if (strcmp(it->string, "csr") != 0 || c || !cJSON_IsString(it))
            goto out;
        c = it;
    }
    size_t n = c ? strlen(c->valuestring) : 0;
    if (n == 0 || n > C2D_PKI_CSR_MAX)
        goto out;
    char *s = strdup(c->valuestring);
    if (!s) {
        rc = -ENOMEM;
        goto out;
    }
    *csr = s;
    *csr_len = n;
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

/* ---- the handler -------------------------------------------------------- */

typedef struct {
    char device[C2D_DEVICE_ID_MAX + 1];
    int64_t at_us;
} renewal;

struct ctl_renew {
    ctl_dir *dir;
    ctl_pair_signer signer;
    int days;
    renewal *seen; /* last renewal per device, in memory */
    size_t n_seen, cap_seen;
};

int ctl_renew_new(const ctl_renew_cfg *cfg, ctl_dir *dir, ctl_renew **out, char *err, size_t errlen)
{
    ctl_renew *r = calloc(1, sizeof(*r));
    int rc = -ENOMEM;
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    r->dir = dir;
    r->days = cfg->device_days;
    if ((rc = ctl_pair_signer_load(&r->signer, cfg->issuing_cert, cfg->issuing_key, cfg->chain, err,
                                   errlen)) != 0) {
        ctl_renew_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void ctl_renew_free(ctl_renew *r)
{
    if (!r)
        return;
    ctl_pair_signer_clear(&r->signer);
    free(r->seen);
    free(r);
}

static renewal *seen_find(ctl_renew *r, const char *device)
{
    for (size_t i = 0; i < r->n_seen; i++)
        if (strcmp(r->seen[i].device, device) == 0)
            return &r->seen[i];
    return NULL;
}

/* 1 if device may renew at now_us: not renewed within the gap, and room to
 * remember it. */
static int rate_ok(ctl_renew *r, const char *device, int64_t now_us)
{
    const renewal *e = seen_find(r, device);
    if (e)
        return now_us - e->at_us >= CTL_RENEW_MIN_GAP_US;
    if (r->n_seen < CTL_RENEW_TRACK_MAX)
        return 1;
    for (size_t i = 0; i < r->n_seen; i++)
        if (now_us - r->seen[i].at_us >= CTL_RENEW_MIN_GAP_US)
            return 1;
    return 0;
}

/* Remembers device's renewal at now_us (rate_ok said there is room). */
static int rate_mark(ctl_renew *r, const char *device, int64_t now_us)
{
    renewal *e = seen_find(r, device);
    for (size_t i = 0; !e && i < r->n_seen; i++)
        if (now_us - r->seen[i].at_us >= CTL_RENEW_MIN_GAP_US)
            e = &r->seen[i]; /* an expired entry */
    if (!e && r->n_seen == r->cap_seen) {
        size_t cap = r->cap_seen ? 2 * r->cap_seen : TRACK_INIT;
        if (cap > CTL_RENEW_TRACK_MAX)
            cap = CTL_RENEW_TRACK_MAX;
        renewal *s = cap > r->cap_seen ? realloc(r->seen, cap * sizeof(*s)) : NULL;
        if (!s)
            return -ENOMEM;
        r->seen = s;
        r->cap_seen = cap;
    }
    if (!e)
        e = &r->seen[r->n_seen++];
    snprintf(e->device, sizeof(e->device), "%s", device);
    e->at_us = now_us;
    return 0;
}

/* ctl_renew_decide without remembering the renewal. */
static ctl_renew_result decide(ctl_renew *r, const char *device, int held, const void *csr,
                               size_t csr_len, int64_t now_us, char **cert, c2d_pki_certinfo *info)
{
    if (!held)
        return CTL_RENEW_REVOKED;
    if (!rate_ok(r, device, now_us))
        return CTL_RENEW_TOO_SOON;
    char *pem = NULL;
    int rc = c2d_pki_sign_csr(r->signer.pki, r->signer.ca, csr, csr_len, device, r->days, &pem);
    if (rc == -EBADMSG || rc == -EPERM || rc == -EINVAL)
        return CTL_RENEW_BAD_CSR;
    if (rc != 0)
        return CTL_RENEW_UNAVAILABLE;
    c2d_pki_certinfo ci;
    if (c2d_pki_cert_info(r->signer.pki, pem, strlen(pem), &ci) != 0) {
        free(pem);
        return CTL_RENEW_UNAVAILABLE;
    }
    if (info)
        *info = ci;
    *cert = pem;
    return CTL_RENEW_OK;
}

ctl_renew_result ctl_renew_decide(ctl_renew *r, const char *device, int held, const void *csr,
                                  size_t csr_len, int64_t now_us, char **cert,
                                  c2d_pki_certinfo *info)
{
    char *pem = NULL;
    ctl_renew_result res = decide(r, device, held, csr, csr_len, now_us, &pem, info);
    if (res == CTL_RENEW_OK && rate_mark(r, device, now_us) != 0) {
        free(pem);
        return CTL_RENEW_UNAVAILABLE;
    }
    if (res == CTL_RENEW_OK)
        *cert = pem;
    return res;
}

static char *answer(ctl_renew_result res, const ctl_renew *r, const char *cert)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    int ok = cJSON_AddBoolToObject(j, "ok", res == CTL_RENEW_OK) != NULL;
    if (res == CTL_RENEW_OK)
        ok = ok && cJSON_AddStringToObject(j, "cert", cert) &&
             cJSON_AddStringToObject(j, "chain", r->signer.chain);
    else
        ok = ok && cJSON_AddStringToObject(j, "error", ctl_renew_result_name(res));
    char *s = ok ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return s;
}

/* Looks the device up, decides and audits inside t. */
static ctl_renew_result renew_txn(ctl_renew *r, ctl_dir_txn *t, const char *device, const void *csr,
                                  size_t csr_len, int64_t now_us, char **cert, c2d_pki_certinfo *ci)
{
    int kind = 0;
    uint64_t id = 0;
    int rc = ctl_dir_lookup(t, "device", device, &kind, &id);
    if (rc != 0 && rc != -ENOENT)
        return CTL_RENEW_UNAVAILABLE;
    int held = rc == 0 && kind == CTL_KIND_RECORDER;
    /* A revoked id stays refused even if a recorder took it again;
     * -ENXIO: revocation is not set up in this process. */
    int rv = ctl_revoke_is(t, device);
    if (rv < 0 && rv != -ENXIO)
        return CTL_RENEW_UNAVAILABLE;
    if (rv == 1)
        held = 0;
    ctl_renew_result res = decide(r, device, held, csr, csr_len, now_us, cert, ci);
    if (res != CTL_RENEW_OK)
        return res;
    ctl_dir_obj o = {0};
    char actor[C2D_DEVICE_ID_MAX + 16], not_after[32];
    snprintf(actor, sizeof(actor), "device:%s", device);
    time_t na = (time_t)ci->not_after;
    struct tm tm;
    if (!gmtime_r(&na, &tm) || !strftime(not_after, sizeof(not_after), "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(not_after, sizeof(not_after), "%lld", (long long)ci->not_after);
    cJSON *detail = cJSON_CreateObject();
    rc = -ENOMEM;
    if (detail && cJSON_AddStringToObject(detail, "serial", ci->serial) &&
        cJSON_AddStringToObject(detail, "not_after", not_after) &&
        (rc = ctl_dir_get(t, CTL_KIND_RECORDER, id, &o)) == 0)
        rc = ctl_dir_audit_note(t, actor, o.tenant, CTL_KIND_RECORDER, id, "cert_renewed", detail);
    cJSON_Delete(detail);
    ctl_dir_obj_clear(&o);
    if (rc != 0) {
        free(*cert);
        *cert = NULL;
        return CTL_RENEW_UNAVAILABLE;
    }
    return CTL_RENEW_OK;
}

int ctl_renew_answer_revoked(const char *device, char resp_topic[C2D_TOPIC_MAX], char **resp)
{
    char topic[C2D_TOPIC_MAX];
    if (c2d_topic_format(topic, sizeof(topic), device, C2D_TOPIC_CERT) != C2D_OK)
        return -EINVAL;
    char *s = answer(CTL_RENEW_REVOKED, NULL, NULL);
    if (!s)
        return -ENOMEM;
    memcpy(resp_topic, topic, sizeof(topic));
    *resp = s;
    return 0;
}

int ctl_renew_handle(ctl_renew *r, const char *topic, const void *payload, size_t len,
                     ctl_renew_result *result, char resp_topic[C2D_TOPIC_MAX], char **resp,
                     c2d_pki_certinfo *info)
{
    char device[C2D_DEVICE_ID_MAX + 1], *csr = NULL, *cert = NULL;
    size_t csr_len = 0;
    c2d_topic_kind kind;
    if (c2d_topic_parse(topic, device, &kind) != C2D_OK || kind != C2D_TOPIC_CSR ||
        c2d_topic_format(resp_topic, C2D_TOPIC_MAX, device, C2D_TOPIC_CERT) != C2D_OK)
        return -EINVAL;
    c2d_pki_certinfo ci;
    memset(&ci, 0, sizeof(ci));
    ctl_renew_result res = CTL_RENEW_BAD_CSR;
    int rc = ctl_renew_req_parse(payload, len, &csr, &csr_len);
    if (rc == -ENOMEM)
        res = CTL_RENEW_UNAVAILABLE;
    if (rc == 0) {
        ctl_dir_txn *t = NULL;
        int64_t now = c2d_mono_us();
        res = CTL_RENEW_UNAVAILABLE;
        if (r->dir && ctl_dir_begin(r->dir, 1, &t) == 0) {
            res = renew_txn(r, t, device, csr, csr_len, now, &cert, &ci);
            if (res != CTL_RENEW_OK)
                ctl_dir_abort(t);
            else if (ctl_dir_commit(t) != 0)
                res = CTL_RENEW_UNAVAILABLE;
            else if (rate_mark(r, device, now) != 0)
                res = CTL_RENEW_UNAVAILABLE; /* audited but not handed out: harmless */
        }
        free(csr);
    }
    *resp = answer(res, r, cert);
    free(cert);
    *result = res;
    if (info && res == CTL_RENEW_OK)
        *info = ci;
    return 0;
}
