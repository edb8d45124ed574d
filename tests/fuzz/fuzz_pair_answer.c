/* agent_pair_answer_parse (agent/pair.h), the controller's pairing answer
 * as the agent reads it, on arbitrary bytes. "@CERT@" in an input becomes
 * a real certificate for device "rec-1" (JSON-escaped PEM, made once at
 * start), so inputs reach the certificate check and success
 * (fuzz_pair_answer.dict has it).
 *
 * Invariants: the only results are 0, -EACCES, -EPROTO, -EMSGSIZE (exactly
 * for an empty answer or one over AGENT_PAIR_ANSWER_MAX) and -ENOMEM; a
 * failure leaves *out as it was and says why in err. An accepted answer
 * has a valid device id, a host of 1..255 bytes, a port 1..65535 and a
 * certificate whose CN is the device id; written back as the controller
 * writes it, it parses to the same answer. */
#include "agent/pair.h"
#include "common/c2d_pki.h"
#include "fuzz.h"
#include "proto/c2d_proto.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEVICE_ID "rec-1"
#define CERT_MARK "@CERT@"

static c2d_pki *pki;
static char *cert_json; /* the certificate as the inside of a JSON string */

/* A root CA and a certificate for DEVICE_ID it signs. */
static void init(void)
{
    c2d_pki_key *rk = NULL, *k = NULL;
    c2d_pki_ca *ca = NULL;
    char *root = NULL, *rkey = NULL, *pem = NULL;
    FUZZ_ASSERT(c2d_pki_new(&pki) == 0);
    FUZZ_ASSERT(c2d_pki_key_generate(pki, &rk) == 0 && c2d_pki_key_generate(pki, &k) == 0);
    FUZZ_ASSERT(c2d_pki_make_root(pki, rk, "fuzz root", 30, &root) == 0);
    FUZZ_ASSERT(c2d_pki_key_pem(pki, rk, &rkey) == 0);
    FUZZ_ASSERT(c2d_pki_ca_parse(pki, root, strlen(root), rkey, strlen(rkey), &ca) == 0);
    FUZZ_ASSERT(c2d_pki_make_client(pki, ca, k, DEVICE_ID, 10, &pem) == 0);
    cJSON *s = cJSON_CreateString(pem);
    char *quoted = cJSON_PrintUnformatted(s);
    FUZZ_ASSERT(quoted && strlen(quoted) >= 2);
    size_t n = strlen(quoted) - 2;
    FUZZ_ASSERT((cert_json = malloc(n + 1)));
    memcpy(cert_json, quoted + 1, n);
    cert_json[n] = '\0';
    free(quoted);
    cJSON_Delete(s);
    free(pem);
    free(root);
    free(rkey);
    c2d_pki_ca_free(ca);
    c2d_pki_key_free(rk);
    c2d_pki_key_free(k);
}

/* The answer as controller/pairing.c writes it. */
static char *write_back(const agent_pair_answer *a)
{
    cJSON *j = cJSON_CreateObject(), *b = cJSON_AddObjectToObject(j, "broker");
    FUZZ_ASSERT(b && cJSON_AddTrueToObject(j, "ok") &&
                cJSON_AddStringToObject(j, "device_id", a->id.device_id) &&
                cJSON_AddStringToObject(j, "cert", a->cert) &&
                cJSON_AddStringToObject(j, "chain", a->chain) &&
                cJSON_AddStringToObject(b, "host", a->id.host) &&
                cJSON_AddNumberToObject(b, "port", (double)a->id.port));
    char *s = cJSON_PrintUnformatted(j);
    FUZZ_ASSERT(s);
    cJSON_Delete(j);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!pki)
        init();
    const char *const marks[] = {CERT_MARK}, *const values[] = {cert_json};
    size_t n;
    char *text = fuzz_subst(data, size, marks, values, 1, &n);
    /* The parser must not read past len: hand it an exact-size copy. */
    char *exact = malloc(n ? n : 1);
    FUZZ_ASSERT(exact);
    memcpy(exact, text, n);
    free(text);

    agent_pair_answer a, pattern;
    memset(&pattern, 0xa5, sizeof(pattern));
    memcpy(&a, &pattern, sizeof(a));
    char err[256];
    memset(err, 0, sizeof(err));
    int rc = agent_pair_answer_parse(pki, exact, n, &a, err, sizeof(err));
    free(exact);
    if (rc != 0) {
        FUZZ_ASSERT(rc == -EACCES || rc == -EPROTO || rc == -EMSGSIZE || rc == -ENOMEM);
        FUZZ_ASSERT((rc == -EMSGSIZE) == (n == 0 || n > AGENT_PAIR_ANSWER_MAX));
        FUZZ_ASSERT(memcmp(&a, &pattern, sizeof(a)) == 0);
        FUZZ_ASSERT(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
        return 0;
    }
    FUZZ_ASSERT(n > 0 && n <= AGENT_PAIR_ANSWER_MAX);
    FUZZ_ASSERT(c2d_device_id_valid(a.id.device_id));
    size_t hl = strnlen(a.id.host, sizeof(a.id.host));
    FUZZ_ASSERT(hl >= 1 && hl < sizeof(a.id.host));
    FUZZ_ASSERT(a.id.port >= 1 && a.id.port <= 65535);
    FUZZ_ASSERT(a.cert && a.chain);
    c2d_pki_certinfo ci;
    FUZZ_ASSERT(c2d_pki_cert_info(pki, a.cert, strlen(a.cert), &ci) == 0);
    FUZZ_ASSERT(strcmp(ci.cn, a.id.device_id) == 0);

    /* (Escaping raw control bytes may make the copy longer than the
     * limit: then there is nothing to compare.) */
    char *again = write_back(&a);
    agent_pair_answer b;
    if (strlen(again) <= AGENT_PAIR_ANSWER_MAX) {
        FUZZ_ASSERT(agent_pair_answer_parse(pki, again, strlen(again), &b, err, sizeof(err)) == 0);
        FUZZ_ASSERT(strcmp(a.id.device_id, b.id.device_id) == 0 &&
                    strcmp(a.id.host, b.id.host) == 0);
        FUZZ_ASSERT(a.id.port == b.id.port && strcmp(a.cert, b.cert) == 0 &&
                    strcmp(a.chain, b.chain) == 0);
        agent_pair_answer_clear(&b);
    }
    free(again);
    agent_pair_answer_clear(&a);
    FUZZ_ASSERT(a.cert == NULL && a.chain == NULL);
    return 0;
}
