/* Pairing the recorder with a one-time code (docs/pairing.md). */
#include "agent/pair.h"

#include "common/c2d_config.h"
#include "common/c2d_fs.h"
#include "common/c2d_mqtt.h"
#include "common/c2d_pki.h"
#include "common/c2d_time.h"
#include "proto/c2d_proto.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Keepalive of the short pairing session. */
#define PAIR_KEEPALIVE_S 30

typedef struct {
    char resp_topic[C2D_TOPIC_MAX + 32];
    char *resp; /* the first answer, NUL terminated */
    int subscribed, connected, failed;
} pair_io;

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags,
                       const mosquitto_property *props)
{
    pair_io *io = ud;
    if (rc != 0) {
        io->failed = rc;
        return;
    }
    io->connected = 1;
    mosquitto_subscribe_v5(m, NULL, io->resp_topic, 1, 0, NULL);
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted,
                         const mosquitto_property *props)
{
    ((pair_io *)ud)->subscribed = 1;
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    pair_io *io = ud;
    if (io->resp || strcmp(msg->topic, io->resp_topic) != 0 || msg->payloadlen <= 0 ||
        msg->payloadlen > AGENT_PAIR_ANSWER_MAX)
        return;
    if ((io->resp = malloc((size_t)msg->payloadlen + 1))) {
        memcpy(io->resp, msg->payload, (size_t)msg->payloadlen);
        io->resp[msg->payloadlen] = '\0';
    }
}

/* Sends req and waits for the answer: 0 with *resp (malloc'd) or -errno. */
static int exchange(const agent_pair_params *p, const char *req, char **resp, char *err,
                    size_t errlen)
{
    c2d_broker_cfg b = {.host = (char *)p->host,
                        .port = p->port,
                        .ca_file = (char *)p->ca_file,
                        .keepalive_s = PAIR_KEEPALIVE_S,
                        .client_id = (char *)p->serial};
    pair_io io;
    memset(&io, 0, sizeof(io));
    snprintf(io.resp_topic, sizeof(io.resp_topic), "c2d/v1/pair/%s/resp", p->serial);
    struct mosquitto *m = c2d_mqtt_new(&b, p->serial, 1, &io, err, errlen);
    if (!m)
        return -EIO;
    mosquitto_connect_v5_callback_set(m, on_connect);
    mosquitto_subscribe_v5_callback_set(m, on_subscribe);
    mosquitto_message_v5_callback_set(m, on_message);
    int rc = -EIO,
        mrc = mosquitto_connect_bind_v5(m, p->host, (int)p->port, PAIR_KEEPALIVE_S, NULL, NULL);
    if (mrc != MOSQ_ERR_SUCCESS) {
        snprintf(err, errlen, "pairing broker %s:%lld: %s", p->host, (long long)p->port,
                 mrc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(mrc));
        goto out;
    }
    int64_t deadline =
        c2d_mono_us() + (int64_t)(p->timeout_s ? p->timeout_s : AGENT_PAIR_TIMEOUT_S) * 1000000;
    bool sent = false;
    while (!io.resp) {
        if (c2d_mono_us() > deadline) {
            snprintf(err, errlen, "no answer from the controller on %s within %d s", io.resp_topic,
                     p->timeout_s ? p->timeout_s : AGENT_PAIR_TIMEOUT_S);
            rc = -ETIMEDOUT;
            goto out;
        }
        if (io.failed) {
            snprintf(err, errlen, "pairing broker refused the connection: %s",
                     mosquitto_reason_string(io.failed));
            goto out;
        }
        /* Subscribed first: the answer is not retained. */
        if (io.subscribed && !sent) {
            char topic[C2D_TOPIC_MAX + 32];
            snprintf(topic, sizeof(topic), "c2d/v1/pair/%s/req", p->serial);
            if ((mrc = mosquitto_publish_v5(m, NULL, topic, (int)strlen(req), req, 1, false,
                                            NULL)) != MOSQ_ERR_SUCCESS) {
                snprintf(err, errlen, "publish %s: %s", topic, mosquitto_strerror(mrc));
                goto out;
            }
            sent = true;
        }
        if ((mrc = mosquitto_loop(m, 200, 1)) != MOSQ_ERR_SUCCESS) {
            snprintf(err, errlen, "pairing broker %s:%lld: %s", p->host, (long long)p->port,
                     mrc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(mrc));
            goto out;
        }
    }
    *resp = io.resp;
    io.resp = NULL;
    rc = 0;
out:
    if (io.connected)
        mosquitto_disconnect_v5(m, 0, NULL);
    free(io.resp);
    mosquitto_destroy(m);
    return rc;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int agent_pair_answer_parse(c2d_pki *pki, const void *buf, size_t len, agent_pair_answer *out,
                            char *err, size_t errlen)
{
    if (len == 0 || len > AGENT_PAIR_ANSWER_MAX) {
        snprintf(err, errlen, "the controller's answer is empty or larger than %d bytes",
                 AGENT_PAIR_ANSWER_MAX);
        return -EMSGSIZE;
    }
    int rc = -EPROTO;
    cJSON *r = cJSON_ParseWithLength(buf, len);
    if (!r || !cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(r, "ok"))) {
        snprintf(err, errlen, "the controller's answer does not parse");
        goto out;
    }
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok"))) {
        const char *e = jstr(r, "error");
        snprintf(err, errlen, "the controller refused the pairing: %s", e ? e : "(no reason)");
        rc = -EACCES;
        goto out;
    }
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(r, "broker");
    const char *dev = jstr(r, "device_id"), *cert = jstr(r, "cert"), *chain = jstr(r, "chain"),
               *host = jstr(b, "host");
    const cJSON *port = cJSON_GetObjectItemCaseSensitive(b, "port");
    agent_pair_answer a;
    memset(&a, 0, sizeof(a));
    if (!dev || !c2d_device_id_valid(dev) || !cert || !chain || !host || !host[0] ||
        strlen(host) >= sizeof(a.id.host) || !cJSON_IsNumber(port) || port->valuedouble < 1 ||
        port->valuedouble > 65535) {
        snprintf(err, errlen, "the controller's answer lacks a field or has a bad one");
        goto out;
    }
    /* The certificate must be for the device id. Whether it holds our key
     * is agent_pair_answer_check_key's question. */
    c2d_pki_certinfo info;
    if (c2d_pki_cert_info(pki, cert, strlen(cert), &info) != 0 || strcmp(info.cn, dev) != 0) {
        snprintf(err, errlen, "the certificate is not for device \"%s\"", dev);
        goto out;
    }
    snprintf(a.id.device_id, sizeof(a.id.device_id), "%s", dev);
    snprintf(a.id.host, sizeof(a.id.host), "%s", host);
    a.id.port = (int64_t)port->valuedouble;
    if (!(a.cert = strdup(cert)) || !(a.chain = strdup(chain))) {
        agent_pair_answer_clear(&a);
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    *out = a;
    rc = 0;
out:
    cJSON_Delete(r);
    return rc;
}

int agent_pair_answer_check_key(c2d_pki *pki, const agent_pair_answer *a, const c2d_pki_key *key,
                                char *err, size_t errlen)
{
    int rc = c2d_pki_cert_has_key(pki, a->cert, strlen(a->cert), key);
    if (rc == -EKEYREJECTED)
        snprintf(err, errlen,
                 "the controller's certificate for \"%s\" does not hold this "
                 "recorder's key",
                 a->id.device_id);
    else if (rc != 0)
        snprintf(err, errlen, "the controller's certificate: %s", c2d_pki_error(pki));
    return rc;
}

void agent_pair_answer_clear(agent_pair_answer *a)
{
    if (!a)
        return;
    free(a->cert);
    free(a->chain);
    memset(a, 0, sizeof(*a));
}

/* Writes the new identity directory and swaps the symlink to it. */
static int store(c2d_pki *pki, const char *state_dir, const c2d_pki_key *key, const char *cert,
                 const char *chain, const agent_identity *id, char *err, size_t errlen)
{
    char name[64], dir[PATH_MAX], path[PATH_MAX], link_tmp[PATH_MAX], link[PATH_MAX];
    snprintf(name, sizeof(name), "identity.%016llx",
             (unsigned long long)(c2d_now_us() ^ ((uint64_t)getpid() << 40)));
    if (c2d_path_join(dir, sizeof(dir), state_dir, name) != 0 ||
        c2d_path_join(link, sizeof(link), state_dir, AGENT_IDENTITY_DIR) != 0 ||
        c2d_path_join(link_tmp, sizeof(link_tmp), state_dir, AGENT_IDENTITY_DIR ".tmp") != 0) {
        snprintf(err, errlen, "%s: path too long", state_dir);
        return -ENAMETOOLONG;
    }
    int rc = c2d_mkdirs(state_dir, 0700);
    if (rc == 0 && mkdir(dir, 0700) != 0)
        rc = -errno;
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", dir, strerror(-rc));
        return rc;
    }
    char *kpem = NULL, *json = NULL;
    cJSON *j = cJSON_CreateObject();
    cJSON *b = j ? cJSON_AddObjectToObject(j, "broker") : NULL;
    if (!b || !cJSON_AddStringToObject(j, "device_id", id->device_id) ||
        !cJSON_AddStringToObject(b, "host", id->host) ||
        !cJSON_AddNumberToObject(b, "port", (double)id->port) ||
        !(json = cJSON_PrintUnformatted(j)) || c2d_pki_key_pem(pki, key, &kpem) != 0) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    const struct {
        const char *name, *data;
    } files[] = {{AGENT_IDENTITY_KEY, kpem},
                 {AGENT_IDENTITY_CERT, cert},
                 {AGENT_IDENTITY_CHAIN, chain},
                 {AGENT_IDENTITY_JSON, json}};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        c2d_path_join(path, sizeof(path), dir, files[i].name);
        if ((rc = c2d_pki_write_file(pki, path, files[i].data, strlen(files[i].data), 0600, 0)) !=
            0) {
            snprintf(err, errlen, "%s", c2d_pki_error(pki));
            goto out;
        }
    }
    /* The new directory is complete and durable before it is named. */
    unlink(link_tmp);
    if (symlink(name, link_tmp) != 0 || rename(link_tmp, link) != 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", link, strerror(-rc));
        unlink(link_tmp);
        goto out;
    }
    if ((rc = c2d_fsync_dir(state_dir)) != 0)
        snprintf(err, errlen, "%s: fsync: %s", state_dir, strerror(-rc));
out:
    if (kpem) {
        memset(kpem, 0, strlen(kpem));
        free(kpem);
    }
    free(json);
    cJSON_Delete(j);
    return rc;
}

/* Removes identity.* directories the link does not name (earlier
 * pairings, or one a crash left unnamed, with its temporary files). Best
 * effort. */
static void sweep_old(const char *state_dir)
{
    char link[PATH_MAX], target[NAME_MAX + 1], dir[PATH_MAX], path[PATH_MAX];
    if (c2d_path_join(link, sizeof(link), state_dir, AGENT_IDENTITY_DIR) != 0)
        return;
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0)
        return;
    target[n] = '\0';
    DIR *d = opendir(state_dir);
    if (!d)
        return;
    const size_t np = strlen(AGENT_IDENTITY_DIR ".");
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, AGENT_IDENTITY_DIR ".", np) != 0 || strcmp(e->d_name, target) == 0 ||
            strcmp(e->d_name, AGENT_IDENTITY_DIR ".tmp") == 0 ||
            c2d_path_join(dir, sizeof(dir), state_dir, e->d_name) != 0)
            continue;
        /* Every file: a killed store leaves its temporary ones too (and
         * maybe a private key nobody will use). */
        DIR *sd = opendir(dir);
        for (struct dirent *f; sd && (f = readdir(sd));)
            if (strcmp(f->d_name, ".") != 0 && strcmp(f->d_name, "..") != 0 &&
                c2d_path_join(path, sizeof(path), dir, f->d_name) == 0)
                unlink(path);
        if (sd)
            closedir(sd);
        rmdir(dir);
    }
    closedir(d);
}

int agent_pair(const agent_pair_params *p, agent_identity *out, char *err, size_t errlen)
{
    if (!p->serial || !c2d_device_id_valid(p->serial)) {
        snprintf(err, errlen, "serial \"%s\" is not 1-64 of [A-Za-z0-9_.-]",
                 p->serial ? p->serial : "");
        return -EINVAL;
    }
    c2d_pki *pki = NULL;
    c2d_pki_key *key = NULL;
    char *csr = NULL, *req = NULL, *resp = NULL;
    cJSON *rj = NULL;
    agent_pair_answer ans;
    memset(&ans, 0, sizeof(ans));
    int rc = c2d_pki_new(&pki);
    if (rc != 0) {
        snprintf(err, errlen, "random generator: %s", strerror(-rc));
        return rc;
    }
    /* A new key for every pairing: the old one goes with the old identity. */
    if ((rc = c2d_pki_key_generate(pki, &key)) != 0 ||
        (rc = c2d_pki_csr_make(pki, key, p->serial, &csr)) != 0) {
        snprintf(err, errlen, "key: %s", c2d_pki_error(pki));
        goto out;
    }
    if (!(rj = cJSON_CreateObject()) || !cJSON_AddStringToObject(rj, "code", p->code) ||
        !cJSON_AddStringToObject(rj, "csr", csr) || !(req = cJSON_PrintUnformatted(rj))) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = exchange(p, req, &resp, err, errlen)) != 0 ||
        (rc = agent_pair_answer_parse(pki, resp, strlen(resp), &ans, err, errlen)) != 0 ||
        (rc = agent_pair_answer_check_key(pki, &ans, key, err, errlen)) != 0)
        goto out;
    if ((rc = agent_identity_store(pki, p->state_dir, key, ans.cert, ans.chain, &ans.id, err,
                                   errlen)) != 0)
        goto out;
    *out = ans.id;
    rc = 0;
out:
    agent_pair_answer_clear(&ans);
    cJSON_Delete(rj);
    free(resp);
    free(req);
    free(csr);
    c2d_pki_key_free(key);
    c2d_pki_free(pki);
    return rc;
}

int agent_identity_store(c2d_pki *pki, const char *state_dir, const c2d_pki_key *key,
                         const char *cert, const char *chain, const agent_identity *id, char *err,
                         size_t errlen)
{
    int rc = store(pki, state_dir, key, cert, chain, id, err, errlen);
    if (rc == 0)
        sweep_old(state_dir);
    return rc;
}

int agent_identity_load(const char *state_dir, agent_identity *out)
{
    char path[PATH_MAX], *buf = NULL;
    size_t n;
    if (snprintf(path, sizeof(path), "%s/%s/%s", state_dir, AGENT_IDENTITY_DIR,
                 AGENT_IDENTITY_JSON) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int rc = c2d_read_file(path, 4096, &buf, &n);
    if (rc != 0)
        return rc;
    cJSON *j = cJSON_ParseWithLength(buf, n);
    free(buf);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "broker");
    const char *dev = jstr(j, "device_id"), *host = jstr(b, "host");
    const cJSON *port = cJSON_GetObjectItemCaseSensitive(b, "port");
    agent_identity id;
    memset(&id, 0, sizeof(id));
    rc = -EBADMSG;
    if (dev && c2d_device_id_valid(dev) && host && host[0] && strlen(host) < sizeof(id.host) &&
        cJSON_IsNumber(port) && port->valuedouble >= 1 && port->valuedouble <= 65535) {
        snprintf(id.device_id, sizeof(id.device_id), "%s", dev);
        snprintf(id.host, sizeof(id.host), "%s", host);
        id.port = (int64_t)port->valuedouble;
        *out = id;
        rc = 0;
    }
    cJSON_Delete(j);
    return rc;
}
