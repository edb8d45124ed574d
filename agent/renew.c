/* Renewing the agent's certificate (docs/pairing.md, "Renewal"). */
#include "agent/renew.h"

#include "agent/pair.h"
#include "common/c2d_pki.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct agent_renew {
    const char *state_dir, *device_id;
    int64_t renew_before_s;
    c2d_pki *pki;
    int64_t not_before, not_after, due;
    c2d_pki_key *key; /* the pending request's key; NULL: none */
    unsigned attempts;
    int64_t next_at; /* no request before this */
    int revoked;     /* the controller said the device id is revoked: never again */

    pthread_mutex_t mu; /* guards answer */
    char *answer;
};

int64_t agent_renew_due_at(int64_t not_before, int64_t not_after, int64_t renew_before_s)
{
    if (renew_before_s > 0)
        return not_after - renew_before_s;
    return not_after - (not_after > not_before ? (not_after - not_before) / 3 : 0);
}

int64_t agent_renew_backoff_s(unsigned attempt)
{
    int64_t s = AGENT_RENEW_RETRY_MIN_S;
    for (unsigned i = 1; i < attempt && s < AGENT_RENEW_RETRY_MAX_S; i++)
        s *= 2;
    return s < AGENT_RENEW_RETRY_MAX_S ? s : AGENT_RENEW_RETRY_MAX_S;
}

/* Reads the identity's certificate and sets the renewal time. */
static int load_cert(agent_renew *r)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s/%s", r->state_dir, AGENT_IDENTITY_DIR,
                 AGENT_IDENTITY_CERT) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    c2d_pki_certinfo ci;
    int rc = c2d_pki_cert_info_file(r->pki, path, &ci);
    if (rc != 0)
        return rc;
    r->not_before = ci.not_before;
    r->not_after = ci.not_after;
    r->due = agent_renew_due_at(ci.not_before, ci.not_after, r->renew_before_s);
    return 0;
}

int agent_renew_new(const agent_renew_cfg *cfg, agent_renew **out)
{
    agent_renew *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->state_dir = cfg->state_dir;
    r->device_id = cfg->device_id;
    r->renew_before_s = cfg->renew_before_s;
    pthread_mutex_init(&r->mu, NULL);
    int rc = c2d_pki_new(&r->pki);
    if (rc == 0)
        rc = load_cert(r);
    if (rc != 0) {
        agent_renew_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void agent_renew_free(agent_renew *r)
{
    if (!r)
        return;
    c2d_pki_key_free(r->key);
    c2d_pki_free(r->pki);
    free(r->answer);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int64_t agent_renew_not_after(const agent_renew *r)
{
    return r->not_after;
}

int64_t agent_renew_due(const agent_renew *r)
{
    return r->due;
}

void agent_renew_deliver(agent_renew *r, const void *payload, size_t len)
{
    if (len == 0 || len > AGENT_RENEW_ANSWER_MAX)
        return;
    char *s = malloc(len + 1);
    if (!s)
        return;
    memcpy(s, payload, len);
    s[len] = '\0';
    pthread_mutex_lock(&r->mu);
    free(r->answer);
    r->answer = s;
    pthread_mutex_unlock(&r->mu);
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

/* Handles an answer to the pending request. */
static agent_renew_action take_answer(agent_renew *r, const char *text, int64_t now_s, char *msg,
                                      size_t msglen)
{
    cJSON *j = cJSON_Parse(text);
    agent_renew_action act = AGENT_RENEW_FAILED;
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(j, "ok");
    if (!cJSON_IsBool(ok)) {
        snprintf(msg, msglen, "certificate renewal: the controller's answer does not parse");
        goto out;
    }
    if (!cJSON_IsTrue(ok)) {
        const char *e = jstr(j, "error");
        if (e && strcmp(e, "revoked") == 0) {
            /* Unpaired or deleted: no certificate will ever come for this
             * id, so asking again only adds load. Only a new pairing helps. */
            r->revoked = 1;
            c2d_pki_key_free(r->key);
            r->key = NULL;
            snprintf(msg, msglen,
                     "certificate renewal refused: device id %s was revoked (the recorder was "
                     "unpaired or deleted); renewal stopped; pair this recorder again with a new "
                     "code (c2d-agent pair)",
                     r->device_id);
            act = AGENT_RENEW_REFUSED;
            goto out;
        }
        snprintf(msg, msglen, "certificate renewal refused by the controller: %s; retry in %llds",
                 e ? e : "(no reason)", (long long)(r->next_at - now_s));
        act = AGENT_RENEW_REFUSED;
        goto out;
    }
    const char *cert = jstr(j, "cert"), *chain = jstr(j, "chain");
    c2d_pki_certinfo ci;
    if (!cert || !chain || c2d_pki_cert_info(r->pki, cert, strlen(cert), &ci) != 0 ||
        strcmp(ci.cn, r->device_id) != 0 || ci.not_after <= now_s ||
        c2d_pki_cert_has_key(r->pki, cert, strlen(cert), r->key) != 0) {
        snprintf(msg, msglen,
                 "certificate renewal: the answer is not a certificate for device %s and the "
                 "pending key; ignored",
                 r->device_id);
        goto out;
    }
    agent_identity id;
    char err[256];
    int rc = agent_identity_load(r->state_dir, &id);
    if (rc != 0) {
        snprintf(msg, msglen, "certificate renewal: identity in %s: %s", r->state_dir,
                 strerror(-rc));
        goto out;
    }
    if ((rc = agent_identity_store(r->pki, r->state_dir, r->key, cert, chain, &id, err,
                                   sizeof(err))) != 0) {
        snprintf(msg, msglen, "certificate renewal: storing the new identity: %s", err);
        goto out;
    }
    c2d_pki_key_free(r->key);
    r->key = NULL;
    r->attempts = 0;
    r->next_at = now_s + AGENT_RENEW_GAP_S;
    if ((rc = load_cert(r)) != 0) {
        /* Stored, so in force from the next connection; only the timing
         * is unknown: try again after the gap. */
        r->due = r->next_at;
    }
    snprintf(msg, msglen, "certificate renewed: serial %s, valid until %lld (renewal due at %lld)",
             ci.serial, (long long)ci.not_after, (long long)r->due);
    act = AGENT_RENEW_RENEWED;
out:
    cJSON_Delete(j);
    return act;
}

/* A request {"csr": PEM} for the pending key (made now if there is none). */
static int make_request(agent_renew *r, char **request)
{
    char *csr = NULL;
    int rc = 0;
    /* A NEW key: the old one goes with the old identity. Kept across
     * retries so that a late answer still fits. */
    if (!r->key && (rc = c2d_pki_key_generate(r->pki, &r->key)) != 0)
        return rc;
    if ((rc = c2d_pki_csr_make(r->pki, r->key, r->device_id, &csr)) != 0)
        return rc;
    cJSON *j = cJSON_CreateObject();
    char *s = j && cJSON_AddStringToObject(j, "csr", csr) ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    free(csr);
    if (!s)
        return -ENOMEM;
    *request = s;
    return 0;
}

agent_renew_action agent_renew_step(agent_renew *r, int64_t now_s, int connected, char **request,
                                    char *msg, size_t msglen)
{
    pthread_mutex_lock(&r->mu);
    char *answer = r->answer;
    r->answer = NULL;
    pthread_mutex_unlock(&r->mu);
    if (answer) {
        /* Nothing pending (a duplicate, or one for a request made before a
         * restart): its key is gone, so it cannot be used. */
        agent_renew_action act = AGENT_RENEW_IDLE;
        if (r->key)
            act = take_answer(r, answer, now_s, msg, msglen);
        free(answer);
        return act;
    }
    if (r->revoked || !connected || now_s < r->due || now_s < r->next_at)
        return AGENT_RENEW_IDLE;
    r->attempts++;
    r->next_at = now_s + agent_renew_backoff_s(r->attempts);
    int rc = make_request(r, request);
    if (rc != 0) {
        snprintf(msg, msglen, "certificate renewal: making a key and request: %s; retry in %llds",
                 c2d_pki_error(r->pki)[0] ? c2d_pki_error(r->pki) : strerror(-rc),
                 (long long)(r->next_at - now_s));
        return AGENT_RENEW_FAILED;
    }
    snprintf(msg, msglen,
             "certificate expires at %lld: renewal request %u sent; next try in %llds unless "
             "answered",
             (long long)r->not_after, r->attempts, (long long)(r->next_at - now_s));
    return AGENT_RENEW_SEND;
}
