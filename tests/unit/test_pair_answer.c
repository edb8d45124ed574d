/* agent/pair.c: agent_pair_answer_parse, the controller's pairing answer
 * as the agent reads it (docs/pairing.md): a good answer, a refusal, and
 * each way an answer can be bad; agent_pair_answer_check_key, the check
 * that the certificate holds the key made for the CSR. A CA and
 * certificates for "rec-1" are made in memory. */
#include "agent/pair.h"
#include "check.h"
#include "common/c2d_pki.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A certificate for cn and key (NULL: a fresh one) signed by a fresh root,
 * as PEM (malloc'd). */
static char *cert_key(c2d_pki *p, const char *cn, const c2d_pki_key *key)
{
    c2d_pki_key *rk = NULL, *k = NULL;
    c2d_pki_ca *ca = NULL;
    char *root = NULL, *rkey = NULL, *pem = NULL;
    if (c2d_pki_key_generate(p, &rk) || (!key && c2d_pki_key_generate(p, &k)) ||
        c2d_pki_make_root(p, rk, "test root", 30, &root) || c2d_pki_key_pem(p, rk, &rkey) ||
        c2d_pki_ca_parse(p, root, strlen(root), rkey, strlen(rkey), &ca) ||
        c2d_pki_make_client(p, ca, key ? key : k, cn, 10, &pem))
        pem = NULL;
    free(root);
    free(rkey);
    c2d_pki_ca_free(ca);
    c2d_pki_key_free(rk);
    c2d_pki_key_free(k);
    return pem;
}

static char *cert_for(c2d_pki *p, const char *cn)
{
    return cert_key(p, cn, NULL);
}

/* {"ok":true,...} with the given fields (NULL: left out), as text. */
static char *answer(const char *dev, const char *cert, const char *chain, const char *host,
                    double port)
{
    cJSON *j = cJSON_CreateObject(), *b = cJSON_AddObjectToObject(j, "broker");
    cJSON_AddTrueToObject(j, "ok");
    if (dev)
        cJSON_AddStringToObject(j, "device_id", dev);
    if (cert)
        cJSON_AddStringToObject(j, "cert", cert);
    if (chain)
        cJSON_AddStringToObject(j, "chain", chain);
    if (host)
        cJSON_AddStringToObject(b, "host", host);
    if (port >= 0)
        cJSON_AddNumberToObject(b, "port", port);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* Parses s; on failure checks *out was left as it was and err is set. */
static int parse(c2d_pki *p, const char *s, size_t n, agent_pair_answer *out, char *err)
{
    agent_pair_answer before;
    memset(out, 0x5a, sizeof(*out));
    memcpy(&before, out, sizeof(before));
    err[0] = '\0';
    int rc = agent_pair_answer_parse(p, s, n, out, err, 256);
    if (rc != 0) {
        CHECK(memcmp(out, &before, sizeof(before)) == 0);
        CHECK(err[0] != '\0');
    }
    return rc;
}

static void expect(c2d_pki *p, char *s, int want)
{
    agent_pair_answer a;
    char err[256];
    CHECK(s != NULL);
    if (!s)
        return;
    int rc = parse(p, s, strlen(s), &a, err);
    if (rc != want)
        fprintf(stderr, "%s -> %d (%s), want %d\n", s, rc, err, want);
    CHECK(rc == want);
    if (rc == 0)
        agent_pair_answer_clear(&a);
    free(s);
}

/* The certificate must hold the key the recorder made; another key is
 * refused with a reason (agent_pair then stores nothing). */
static void test_check_key(c2d_pki *p)
{
    c2d_pki_key *mine = NULL;
    CHECK(c2d_pki_key_generate(p, &mine) == 0);
    char *good = mine ? cert_key(p, "rec-1", mine) : NULL, *bad = cert_for(p, "rec-1");
    CHECK(good && bad);
    char err[256];
    agent_pair_answer a;
    char *s = answer("rec-1", good, "", "h", 1);
    CHECK(s && parse(p, s, strlen(s), &a, err) == 0);
    if (good && bad && s && a.cert) {
        err[0] = '\0';
        CHECK(agent_pair_answer_check_key(p, &a, mine, err, sizeof(err)) == 0);
        agent_pair_answer_clear(&a);
        free(s);
        s = answer("rec-1", bad, "", "h", 1);
        CHECK(parse(p, s, strlen(s), &a, err) == 0);
        err[0] = '\0';
        CHECK(agent_pair_answer_check_key(p, &a, mine, err, sizeof(err)) == -EKEYREJECTED);
        CHECK(strstr(err, "does not hold this recorder's key") != NULL);
        agent_pair_answer_clear(&a);
        /* The shared check itself, and a certificate that does not parse. */
        CHECK(c2d_pki_cert_has_key(p, good, strlen(good), mine) == 0);
        CHECK(c2d_pki_cert_has_key(p, bad, strlen(bad), mine) == -EKEYREJECTED);
        CHECK(c2d_pki_cert_has_key(p, "x", 1, mine) == -EBADMSG);
    }
    free(s);
    free(good);
    free(bad);
    c2d_pki_key_free(mine);
}

int main(void)
{
    c2d_pki *p = NULL;
    CHECK(c2d_pki_new(&p) == 0);
    char *cert = p ? cert_for(p, "rec-1") : NULL, *other = p ? cert_for(p, "rec-2") : NULL;
    CHECK(cert && other);
    if (!cert || !other)
        return check_result();

    /* A good answer: every field taken, the PEM copied. */
    agent_pair_answer a;
    char err[256], *s = answer("rec-1", cert, "CHAIN", "mq.example.net", 8883);
    CHECK(parse(p, s, strlen(s), &a, err) == 0);
    CHECK(strcmp(a.id.device_id, "rec-1") == 0 && strcmp(a.id.host, "mq.example.net") == 0);
    CHECK(a.id.port == 8883 && strcmp(a.cert, cert) == 0 && strcmp(a.chain, "CHAIN") == 0);
    agent_pair_answer_clear(&a);
    CHECK(a.cert == NULL && a.chain == NULL);
    agent_pair_answer_clear(NULL);
    /* Only len bytes are read: the same answer with garbage after it. */
    size_t n = strlen(s);
    char *longer = malloc(n + 8);
    memcpy(longer, s, n);
    memcpy(longer + n, "\"x\":[{]", 8);
    CHECK(parse(p, longer, n, &a, err) == 0);
    agent_pair_answer_clear(&a);
    free(longer);
    free(s);

    /* A refusal names the controller's reason. */
    const char *no = "{\"ok\":false,\"error\":\"wrong_code\"}";
    CHECK(parse(p, no, strlen(no), &a, err) == -EACCES && strstr(err, "wrong_code"));
    no = "{\"ok\":false}";
    CHECK(parse(p, no, strlen(no), &a, err) == -EACCES && strstr(err, "no reason"));

    /* Answers that do not parse or lack something. */
    const char *junk[] = {"x", "[]", "{}", "{\"ok\":1}", "{\"ok\":\"true\"}", "{\"ok\":true}"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        CHECK(parse(p, junk[i], strlen(junk[i]), &a, err) == -EPROTO);
    CHECK(parse(p, "", 0, &a, err) == -EMSGSIZE);
    CHECK(parse(p, "{", AGENT_PAIR_ANSWER_MAX + 1, &a, err) == -EMSGSIZE);

    char host256[257];
    memset(host256, 'h', 256);
    host256[256] = '\0';
    expect(p, answer("rec-1", cert, "", "h", 1), 0);
    expect(p, answer("rec-1", cert, "", host256 + 1, 65535), 0);
    expect(p, answer(NULL, cert, "", "h", 1), -EPROTO);
    expect(p, answer("../x", cert, "", "h", 1), -EPROTO);
    expect(p, answer("rec-1", NULL, "", "h", 1), -EPROTO);
    expect(p, answer("rec-1", cert, NULL, "h", 1), -EPROTO);
    expect(p, answer("rec-1", cert, "", NULL, 1), -EPROTO);
    expect(p, answer("rec-1", cert, "", "", 1), -EPROTO);
    expect(p, answer("rec-1", cert, "", host256, 1), -EPROTO);
    expect(p, answer("rec-1", cert, "", "h", -1), -EPROTO);
    expect(p, answer("rec-1", cert, "", "h", 0), -EPROTO);
    expect(p, answer("rec-1", cert, "", "h", 65536), -EPROTO);
    /* A certificate for another device, or none at all. */
    expect(p, answer("rec-1", other, "", "h", 1), -EPROTO);
    expect(p, answer("rec-1", "-----BEGIN CERTIFICATE-----", "", "h", 1), -EPROTO);

    test_check_key(p);

    free(cert);
    free(other);
    c2d_pki_free(p);
    return check_result();
}
