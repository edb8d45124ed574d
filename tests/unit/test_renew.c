/* Certificate renewal: the controller's policy (controller/renew.c:
 * revoked, wrong CN, rate limit, the request parser, the topics) and the
 * agent's side (agent/renew.c: not before the window, backoff, a new key,
 * an answer for another key refused, the identity swapped). A CA is made
 * in a temporary directory; no broker, no directory database. */
#include "agent/pair.h"
#include "agent/renew.h"
#include "common/c2d_pki.h"
#include "controller/renew.h"

#include "check.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HOUR_US (INT64_C(3600) * 1000000)

static char tmp[256];

static void path(char *buf, const char *name)
{
    snprintf(buf, PATH_MAX, "%s/%s", tmp, name);
}

/* root -> issuing in tmp: issuing.crt, issuing.key, chain.crt. */
static int make_ca(c2d_pki *p)
{
    c2d_pki_key *rk = NULL, *ik = NULL;
    c2d_pki_ca *root = NULL;
    char *rpem = NULL, *rkey = NULL, *ipem = NULL, *ikey = NULL, f[PATH_MAX];
    int rc = -1;
    if (c2d_pki_key_generate(p, &rk) || c2d_pki_key_generate(p, &ik) ||
        c2d_pki_make_root(p, rk, "test root", 30, &rpem) || c2d_pki_key_pem(p, rk, &rkey) ||
        c2d_pki_ca_parse(p, rpem, strlen(rpem), rkey, strlen(rkey), &root) ||
        c2d_pki_make_issuing(p, root, ik, "test issuing", 20, &ipem) ||
        c2d_pki_key_pem(p, ik, &ikey))
        goto out;
    size_t n = strlen(ipem) + strlen(rpem) + 1;
    char *chain = malloc(n);
    if (!chain)
        goto out;
    snprintf(chain, n, "%s%s", ipem, rpem);
    path(f, "issuing.crt");
    rc = c2d_pki_write_file(p, f, ipem, strlen(ipem), 0644, C2D_PKI_OVERWRITE);
    path(f, "issuing.key");
    rc = rc ? rc : c2d_pki_write_file(p, f, ikey, strlen(ikey), 0600, C2D_PKI_OVERWRITE);
    path(f, "chain.crt");
    rc = rc ? rc : c2d_pki_write_file(p, f, chain, strlen(chain), 0644, C2D_PKI_OVERWRITE);
    free(chain);
out:
    free(rpem);
    free(rkey);
    free(ipem);
    free(ikey);
    c2d_pki_ca_free(root);
    c2d_pki_key_free(rk);
    c2d_pki_key_free(ik);
    return rc;
}

static ctl_renew *new_renew(void)
{
    char crt[PATH_MAX], key[PATH_MAX], chain[PATH_MAX], err[256];
    path(crt, "issuing.crt");
    path(key, "issuing.key");
    path(chain, "chain.crt");
    ctl_renew_cfg cfg = {crt, key, chain, 1};
    ctl_renew *r = NULL;
    CHECK(ctl_renew_new(&cfg, NULL, &r, err, sizeof(err)) == 0);
    return r;
}

static char *csr_for(c2d_pki *p, c2d_pki_key **key, const char *cn)
{
    char *csr = NULL;
    CHECK(c2d_pki_key_generate(p, key) == 0);
    CHECK(c2d_pki_csr_make(p, *key, cn, &csr) == 0);
    return csr;
}

static void test_parsers(void)
{
    char *csr = NULL;
    size_t n = 0;
    const char *ok = "{\"csr\":\"-----BEGIN\"} \n";
    CHECK(ctl_renew_req_parse(ok, strlen(ok), &csr, &n) == 0 && n == 10 &&
          strcmp(csr, "-----BEGIN") == 0);
    free(csr);
    const char *bad[] = {"",
                         "{}",
                         "{\"csr\":\"\"}",
                         "{\"csr\":1}",
                         "{\"csr\":\"x\",\"csr\":\"y\"}",
                         "{\"csr\":\"x\",\"code\":\"y\"}",
                         "{\"csr\":\"x\"} x",
                         "[\"csr\"]",
                         "{\"csr\":\"\xff\"}",
                         "{\"csr\":\"-----BEGIN\\u0000x\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(ctl_renew_req_parse(bad[i], strlen(bad[i]), &csr, &n) == -EINVAL);
    static char big[CTL_RENEW_REQ_MAX + 2];
    memset(big, ' ', sizeof(big) - 1);
    CHECK(ctl_renew_req_parse(big, sizeof(big) - 1, &csr, &n) == -EFBIG);
}

/* Only c2d/v1/d/{device}/csr is a request (c2d_topic_parse; its rules are
 * in test_proto.c): another topic gets no answer, and neither does a
 * reserved id. */
static void test_topics(void)
{
    ctl_renew *r = new_renew();
    if (!r)
        return;
    static const char *const not_req[] = {
        "c2d/v1/d/rec-1/cert", "c2d/v1/d/a/b/csr",
        "c2d/v1/d//csr",       "c2d/v1/d/c2d-controller/csr",
        "c2d/v1/d/C2D-x/csr",  "c2d/v1/d/+/csr",
        "c2d/v1/d/rec-1/#",    "c2d/v1/pair/rec-1/csr",
        "c2d/v1/d/rec-1/seg",  "c2d/v1/d/rec-1/csr/x",
    };
    char rt[C2D_TOPIC_MAX] = "untouched", *resp = NULL;
    ctl_renew_result res;
    c2d_pki_certinfo ci;
    for (size_t i = 0; i < sizeof(not_req) / sizeof(not_req[0]); i++) {
        CHECK(ctl_renew_handle(r, not_req[i], "{}", 2, &res, rt, &resp, &ci) == -EINVAL);
        CHECK(resp == NULL && strcmp(rt, "untouched") == 0);
    }
    CHECK(ctl_renew_answer_revoked("rec-1", rt, &resp) == 0);
    CHECK(strcmp(rt, "c2d/v1/d/rec-1/cert") == 0 && resp && strstr(resp, "\"revoked\""));
    free(resp);
    resp = NULL;
    CHECK(ctl_renew_answer_revoked("c2d-controller", rt, &resp) == -EINVAL && !resp);
    CHECK(ctl_renew_answer_revoked("a/b", rt, &resp) == -EINVAL && !resp);
    ctl_renew_free(r);
}

/* The controller's policy: revoked, wrong CN, once per hour per device. */
static void test_policy(c2d_pki *p)
{
    ctl_renew *r = new_renew();
    if (!r)
        return;
    c2d_pki_key *k1 = NULL, *k2 = NULL, *k3 = NULL;
    char *csr = csr_for(p, &k1, "rec-1"), *other = csr_for(p, &k2, "rec-2"),
         *csr_b = csr_for(p, &k3, "rec-b"), *cert = NULL;
    c2d_pki_certinfo ci;
    int64_t t0 = INT64_C(1000) * HOUR_US;

    /* no recorder holds the device id */
    CHECK(ctl_renew_decide(r, "rec-1", 0, csr, strlen(csr), t0, &cert, &ci) == CTL_RENEW_REVOKED);
    /* a CSR whose CN is another device's */
    CHECK(ctl_renew_decide(r, "rec-1", 1, other, strlen(other), t0, &cert, &ci) ==
          CTL_RENEW_BAD_CSR);
    CHECK(ctl_renew_decide(r, "rec-1", 1, "junk", 4, t0, &cert, &ci) == CTL_RENEW_BAD_CSR);
    CHECK(cert == NULL);
    /* refusals do not count for the rate limit */
    CHECK(ctl_renew_decide(r, "rec-1", 1, csr, strlen(csr), t0, &cert, &ci) == CTL_RENEW_OK);
    CHECK(cert && strcmp(ci.cn, "rec-1") == 0 && !ci.is_ca);
    CHECK(ci.not_after - ci.not_before >= 86400 && ci.not_after - ci.not_before <= 86400 + 600);
    free(cert);
    cert = NULL;
    /* a second renewal within the hour, another device is not affected */
    CHECK(ctl_renew_decide(r, "rec-1", 1, csr, strlen(csr), t0 + HOUR_US - 1, &cert, &ci) ==
          CTL_RENEW_TOO_SOON);
    CHECK(ctl_renew_decide(r, "rec-b", 1, csr_b, strlen(csr_b), t0 + 1, &cert, &ci) ==
          CTL_RENEW_OK);
    free(cert);
    cert = NULL;
    CHECK(ctl_renew_decide(r, "rec-1", 1, csr, strlen(csr), t0 + HOUR_US, &cert, &ci) ==
          CTL_RENEW_OK);
    free(cert);
    CHECK(strcmp(ctl_renew_result_name(CTL_RENEW_TOO_SOON), "too_soon") == 0);
    CHECK(strcmp(ctl_renew_result_name(CTL_RENEW_UNAVAILABLE), "unavailable") == 0);
    free(csr);
    free(other);
    free(csr_b);
    c2d_pki_key_free(k1);
    c2d_pki_key_free(k2);
    c2d_pki_key_free(k3);
    ctl_renew_free(r);
}

static void test_window(void)
{
    int64_t nb = 1000000, na = nb + 3 * 86400;
    /* too soon: nothing before the last third, or before renew_before_s */
    CHECK(agent_renew_due_at(nb, na, 0) == na - 86400);
    CHECK(agent_renew_due_at(nb, na, 3600) == na - 3600);
    CHECK(agent_renew_due_at(nb, na, 10 * 86400) == na - 10 * 86400);
    CHECK(agent_renew_due_at(na, na, 0) == na);
    CHECK(agent_renew_backoff_s(1) == 60 && agent_renew_backoff_s(2) == 120 &&
          agent_renew_backoff_s(6) == 1920 && agent_renew_backoff_s(7) == 3600 &&
          agent_renew_backoff_s(1000) == 3600);
}

/* Signs a request the way the controller does and wraps the answer. */
static char *answer_for(ctl_renew *r, const char *req, int64_t now_us)
{
    char *csr = NULL, *cert = NULL, *out = NULL, chain[PATH_MAX];
    size_t n;
    path(chain, "chain.crt");
    if (ctl_renew_req_parse(req, strlen(req), &csr, &n) != 0 ||
        ctl_renew_decide(r, "rec-1", 1, csr, n, now_us, &cert, NULL) != CTL_RENEW_OK)
        goto out;
    /* PEM newlines as JSON escapes */
    size_t len = 2 * strlen(cert) + 64;
    char *ec = malloc(len), *q = ec;
    for (const char *s = cert; *s; s++)
        if (*s == '\n')
            *q++ = '\\', *q++ = 'n';
        else
            *q++ = *s;
    *q = '\0';
    len = strlen(ec) + 128;
    out = malloc(len);
    snprintf(out, len, "{\"ok\":true,\"cert\":\"%s\",\"chain\":\"x\"}", ec);
    free(ec);
out:
    free(csr);
    free(cert);
    return out;
}

static void test_agent(c2d_pki *p)
{
    ctl_renew *cr = new_renew();
    if (!cr)
        return;
    char state[PATH_MAX], link1[PATH_MAX], link2[PATH_MAX], idpath[PATH_MAX + 16], msg[512],
        err[256];
    path(state, "state");
    snprintf(idpath, sizeof(idpath), "%s/identity", state);
    /* a paired identity: certificate from the CA, 1 day */
    c2d_pki_key *k = NULL;
    char *csr = csr_for(p, &k, "rec-1"), *cert = NULL;
    CHECK(ctl_renew_decide(cr, "rec-1", 1, csr, strlen(csr), 0, &cert, NULL) == CTL_RENEW_OK);
    agent_identity id = {.device_id = "rec-1", .host = "localhost", .port = 8883};
    CHECK(cert && agent_identity_store(p, state, k, cert, "chain", &id, err, sizeof(err)) == 0);
    free(csr);
    free(cert);
    c2d_pki_key_free(k);
    ssize_t ln = readlink(idpath, link1, sizeof(link1) - 1);
    CHECK(ln > 0);
    link1[ln > 0 ? ln : 0] = '\0';

    agent_renew *r = NULL;
    agent_renew_cfg cfg = {.state_dir = state, .device_id = "rec-1", .renew_before_s = 0};
    CHECK(agent_renew_new(&cfg, &r) == 0);
    if (!r) {
        ctl_renew_free(cr);
        return;
    }
    int64_t due = agent_renew_due(r), now = (int64_t)time(NULL);
    CHECK(due > now && due < agent_renew_not_after(r));
    char *req = NULL;
    /* too soon, or not connected: nothing */
    CHECK(agent_renew_step(r, now, 1, &req, msg, sizeof(msg)) == AGENT_RENEW_IDLE);
    CHECK(agent_renew_step(r, due, 0, &req, msg, sizeof(msg)) == AGENT_RENEW_IDLE);
    /* an answer with nothing pending is ignored */
    agent_renew_deliver(r, "{\"ok\":false,\"error\":\"too_soon\"}", 31);
    CHECK(agent_renew_step(r, due - 1, 1, &req, msg, sizeof(msg)) == AGENT_RENEW_IDLE);
    /* due: a request; the next only after the backoff */
    CHECK(agent_renew_step(r, due, 1, &req, msg, sizeof(msg)) == AGENT_RENEW_SEND && req);
    char *req2 = NULL;
    CHECK(agent_renew_step(r, due + 59, 1, &req2, msg, sizeof(msg)) == AGENT_RENEW_IDLE);
    /* a refusal is reported; the retry uses the same key */
    agent_renew_deliver(r, "{\"ok\":false,\"error\":\"too_soon\"}", 31);
    CHECK(agent_renew_step(r, due + 1, 1, &req2, msg, sizeof(msg)) == AGENT_RENEW_REFUSED);
    CHECK(strstr(msg, "too_soon") != NULL);
    CHECK(agent_renew_step(r, due + 60, 1, &req2, msg, sizeof(msg)) == AGENT_RENEW_SEND && req2);
    /* an answer for another key (someone else's request) is refused */
    c2d_pki_key *ko = NULL;
    char *ocsr = csr_for(p, &ko, "rec-1"), oreq[4096];
    char *q = oreq;
    q += sprintf(q, "{\"csr\":\"");
    for (const char *s = ocsr; *s; s++)
        q += *s == '\n' ? sprintf(q, "\\n") : sprintf(q, "%c", *s);
    sprintf(q, "\"}");
    char *ans = answer_for(cr, oreq, 2 * HOUR_US);
    CHECK(ans != NULL);
    if (ans)
        agent_renew_deliver(r, ans, strlen(ans));
    free(ans);
    CHECK(agent_renew_step(r, due + 61, 1, &req2, msg, sizeof(msg)) == AGENT_RENEW_FAILED);
    free(ocsr);
    c2d_pki_key_free(ko);
    /* the real answer: stored, the old directory gone */
    ans = answer_for(cr, req, 4 * HOUR_US);
    CHECK(ans != NULL);
    if (ans)
        agent_renew_deliver(r, ans, strlen(ans));
    free(ans);
    CHECK(agent_renew_step(r, due + 62, 1, &req2, msg, sizeof(msg)) == AGENT_RENEW_RENEWED);
    ln = readlink(idpath, link2, sizeof(link2) - 1);
    CHECK(ln > 0);
    link2[ln > 0 ? ln : 0] = '\0';
    CHECK(strcmp(link1, link2) != 0);
    char old[2 * PATH_MAX];
    snprintf(old, sizeof(old), "%s/%s", state, link1);
    CHECK(access(old, F_OK) != 0);
    agent_identity got;
    CHECK(agent_identity_load(state, &got) == 0 && strcmp(got.device_id, "rec-1") == 0 &&
          got.port == 8883);
    /* the gap after a renewal: no request even if "due" */
    CHECK(agent_renew_step(r, due + 63, 1, &req2, msg, sizeof(msg)) == AGENT_RENEW_IDLE);
    free(req);
    free(req2);
    req = req2 = NULL;
    /* revoked (unpaired): said plainly, and never asked again */
    int64_t later = agent_renew_due(r);
    if (later < due + 62 + AGENT_RENEW_GAP_S)
        later = due + 62 + AGENT_RENEW_GAP_S;
    CHECK(agent_renew_step(r, later, 1, &req, msg, sizeof(msg)) == AGENT_RENEW_SEND && req);
    agent_renew_deliver(r, "{\"ok\":false,\"error\":\"revoked\"}", 30);
    CHECK(agent_renew_step(r, later + 1, 1, &req2, msg, sizeof(msg)) == AGENT_RENEW_REFUSED);
    CHECK(strstr(msg, "revoked") && strstr(msg, "pair this recorder again"));
    CHECK(agent_renew_step(r, later + 30 * 86400, 1, &req2, msg, sizeof(msg)) == AGENT_RENEW_IDLE &&
          !req2);
    free(req);
    agent_renew_free(r);
    ctl_renew_free(cr);
}

int main(void)
{
    snprintf(tmp, sizeof(tmp), "/tmp/test_renew.XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    c2d_pki *p = NULL;
    CHECK(c2d_pki_new(&p) == 0);
    CHECK(make_ca(p) == 0);
    test_parsers();
    test_topics();
    test_window();
    test_policy(p);
    test_agent(p);
    c2d_pki_free(p);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return check_result();
}
