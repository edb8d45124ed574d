/* The agent's side of certificate renewal (agent/renew.h): an arbitrary
 * answer on c2d/v1/d/{device}/cert, given with agent_renew_deliver and
 * taken by agent_renew_step, against a real identity in a temporary state
 * directory (fuzz_scratch.h) and a pending request.
 *
 * Set-up: a root CA; an identity for device "rec-1" signed by it, stored
 * with agent_identity_store; an agent_renew whose window has come, stepped
 * once so that it has made its request (a new key and its CSR). "@CERT@"
 * in an input becomes a certificate the CA signs for that CSR
 * (JSON-escaped PEM), so inputs reach the checks of a good answer and the
 * identity swap (fuzz_renew_answer.dict has it). After a renewal, or a
 * "revoked" refusal (which stops renewing for good), a new agent_renew is
 * made and stepped: there is always a request pending.
 *
 * Invariants: an empty answer or one over AGENT_RENEW_ANSWER_MAX is dropped
 * (IDLE); any other is RENEWED, REFUSED or FAILED with a message. RENEWED
 * only for {"ok":true} whose "cert" is then the identity's certificate on
 * disk, with the identity's device id, host and port unchanged; REFUSED
 * only for {"ok":false}; REFUSED and FAILED leave the certificate on disk
 * byte for byte. */
#include "agent/pair.h"
#include "agent/renew.h"
#include "common/c2d_fs.h"
#include "common/c2d_pki.h"
#include "fuzz.h"
#include "fuzz_scratch.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define DEVICE_ID "rec-1"
#define HOST "mq.example.net"
#define PORT 8883
#define CERT_MARK "@CERT@"
/* Certificates live this long from now; the window opens a day from now
 * and the clock is two days ahead: every certificate is due at once. */
#define DAYS 825
#define RENEW_BEFORE_S ((int64_t)(DAYS - 1) * 86400)
#define CLOCK_AHEAD_S (2 * 86400)

static struct {
    c2d_pki *pki;
    c2d_pki_ca *ca;
    char *chain;
    char dir[256];
    agent_renew *r;
    int64_t now;
    char *csr;       /* of the pending request */
    char *cert_json; /* its certificate, made on demand; JSON-escaped */
} w;

static void at_exit(void)
{
    agent_renew_free(w.r);
    if (w.dir[0])
        fuzz_rm_tree(w.dir);
    free(w.csr);
    free(w.cert_json);
    free(w.chain);
    c2d_pki_ca_free(w.ca);
    c2d_pki_free(w.pki);
}

/* The identity's certificate file (malloc'd). */
static char *disk_cert(void)
{
    char path[PATH_MAX], *text = NULL;
    snprintf(path, sizeof(path), "%s/%s/%s", w.dir, AGENT_IDENTITY_DIR, AGENT_IDENTITY_CERT);
    FUZZ_ASSERT(c2d_read_file(path, C2D_PKI_FILE_MAX, &text, NULL) == 0);
    return text;
}

/* A new agent_renew over the stored identity, stepped to its request. */
static void make_request(void)
{
    agent_renew_free(w.r);
    w.r = NULL;
    free(w.csr);
    free(w.cert_json);
    w.csr = w.cert_json = NULL;
    agent_renew_cfg cfg = {w.dir, DEVICE_ID, RENEW_BEFORE_S};
    FUZZ_ASSERT(agent_renew_new(&cfg, &w.r) == 0);
    FUZZ_ASSERT(agent_renew_due(w.r) <= w.now);
    char *req = NULL, msg[512];
    FUZZ_ASSERT(agent_renew_step(w.r, w.now, 1, &req, msg, sizeof(msg)) == AGENT_RENEW_SEND);
    cJSON *j = cJSON_Parse(req);
    const cJSON *csr = cJSON_GetObjectItemCaseSensitive(j, "csr");
    FUZZ_ASSERT(cJSON_IsString(csr) && (w.csr = strdup(csr->valuestring)));
    cJSON_Delete(j);
    free(req);
}

/* The pending request's certificate as the inside of a JSON string. */
static const char *cert_json(void)
{
    if (w.cert_json)
        return w.cert_json;
    char *pem = NULL;
    FUZZ_ASSERT(c2d_pki_sign_csr(w.pki, w.ca, w.csr, strlen(w.csr), DEVICE_ID, DAYS, &pem) == 0);
    cJSON *s = cJSON_CreateString(pem);
    char *quoted = cJSON_PrintUnformatted(s);
    FUZZ_ASSERT(quoted && strlen(quoted) >= 2);
    size_t n = strlen(quoted) - 2;
    FUZZ_ASSERT((w.cert_json = malloc(n + 1)));
    memcpy(w.cert_json, quoted + 1, n);
    w.cert_json[n] = '\0';
    free(quoted);
    cJSON_Delete(s);
    free(pem);
    return w.cert_json;
}

static void init(void)
{
    c2d_pki_key *rk = NULL, *k = NULL;
    char *rkey = NULL, *csr = NULL, *cert = NULL, err[256];
    FUZZ_ASSERT(c2d_pki_new(&w.pki) == 0);
    FUZZ_ASSERT(c2d_pki_key_generate(w.pki, &rk) == 0 && c2d_pki_key_generate(w.pki, &k) == 0);
    FUZZ_ASSERT(c2d_pki_make_root(w.pki, rk, "fuzz root", 3650, &w.chain) == 0);
    FUZZ_ASSERT(c2d_pki_key_pem(w.pki, rk, &rkey) == 0);
    FUZZ_ASSERT(c2d_pki_ca_parse(w.pki, w.chain, strlen(w.chain), rkey, strlen(rkey), &w.ca) == 0);
    FUZZ_ASSERT(c2d_pki_csr_make(w.pki, k, DEVICE_ID, &csr) == 0);
    FUZZ_ASSERT(c2d_pki_sign_csr(w.pki, w.ca, csr, strlen(csr), DEVICE_ID, DAYS, &cert) == 0);

    fuzz_scratch_dir("c2d-fuzz-renew-answer", w.dir, sizeof(w.dir));
    agent_identity id;
    memset(&id, 0, sizeof(id));
    snprintf(id.device_id, sizeof(id.device_id), DEVICE_ID);
    snprintf(id.host, sizeof(id.host), HOST);
    id.port = PORT;
    FUZZ_ASSERT(agent_identity_store(w.pki, w.dir, k, cert, w.chain, &id, err, sizeof(err)) == 0);
    w.now = (int64_t)time(NULL) + CLOCK_AHEAD_S;
    atexit(at_exit);
    make_request();
    free(rkey);
    free(csr);
    free(cert);
    c2d_pki_key_free(rk);
    c2d_pki_key_free(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!w.pki)
        init();
    const char *const marks[] = {CERT_MARK};
    const char *values[] = {""};
    size_t n;
    if (size && memmem(data, size, CERT_MARK, strlen(CERT_MARK)))
        values[0] = cert_json();
    char *text = fuzz_subst(data, size, marks, values, 1, &n);
    char *before = disk_cert(), *req = NULL, msg[1024];
    memset(msg, 0, sizeof(msg));

    agent_renew_deliver(w.r, text, n);
    agent_renew_action act = agent_renew_step(w.r, w.now, 1, &req, msg, sizeof(msg));
    FUZZ_ASSERT(req == NULL);
    FUZZ_ASSERT(memchr(msg, '\0', sizeof(msg)) != NULL);
    char *after = disk_cert();
    int pending = 1;
    if (n == 0 || n > AGENT_RENEW_ANSWER_MAX) {
        FUZZ_ASSERT(act == AGENT_RENEW_IDLE);
        FUZZ_ASSERT(strcmp(before, after) == 0);
    } else {
        FUZZ_ASSERT(act == AGENT_RENEW_RENEWED || act == AGENT_RENEW_REFUSED ||
                    act == AGENT_RENEW_FAILED);
        FUZZ_ASSERT(msg[0] != '\0');
        cJSON *j = cJSON_Parse(text);
        const cJSON *ok = cJSON_GetObjectItemCaseSensitive(j, "ok");
        if (act == AGENT_RENEW_RENEWED) {
            const cJSON *cert = cJSON_GetObjectItemCaseSensitive(j, "cert");
            FUZZ_ASSERT(cJSON_IsTrue(ok) && cJSON_IsString(cert));
            FUZZ_ASSERT(strcmp(after, cert->valuestring) == 0);
            agent_identity id;
            FUZZ_ASSERT(agent_identity_load(w.dir, &id) == 0);
            FUZZ_ASSERT(strcmp(id.device_id, DEVICE_ID) == 0 && strcmp(id.host, HOST) == 0 &&
                        id.port == PORT);
            pending = 0;
        } else {
            FUZZ_ASSERT(strcmp(before, after) == 0);
            if (act == AGENT_RENEW_REFUSED) {
                FUZZ_ASSERT(cJSON_IsFalse(ok));
                const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
                if (cJSON_IsString(e) && strcmp(e->valuestring, "revoked") == 0)
                    pending = 0; /* renewal stopped: only a new agent asks again */
            }
        }
        cJSON_Delete(j);
    }
    free(before);
    free(after);
    free(text);
    if (!pending)
        make_request();
    return 0;
}
