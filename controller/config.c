#include "controller/config.h"
#include "controller/devlimit.h"
#include "controller/mailer.h"

#include "common/c2d_pki.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds: a segment must fit the 64-bit offsets of the protocol and the
 * 2^53 exactness of JSON numbers; 1 TiB is far beyond any camera segment.
 * Channels are 16-bit on the wire. The ledger map must hold at least the
 * LMDB meta pages and a few records; 1 TiB is a sane ceiling. */
#define SEGMENT_BYTES_MAX (INT64_C(1) << 40)
#define CHANNELS_MAX 65536
#define MAP_BYTES_MIN (INT64_C(1) << 20)
#define MAP_BYTES_MAX (INT64_C(1) << 40)

#define F(key, type, field, req, min, max, di, ds)                                                 \
    {                                                                                              \
        key, type, offsetof(ctl_config, field), req, min, max, di, ds                              \
    }
static const c2d_cfg_field fields[] = {
    F("data_dir", C2D_CFG_STRING, data_dir, 0, 0, 0, 0, "/var/lib/c2d-controller"),
    F("broker", C2D_CFG_SKIP, broker, 1, 0, 0, 0, NULL),
    F("max_segment_bytes", C2D_CFG_INT, max_segment_bytes, 0, 1, SEGMENT_BYTES_MAX,
      INT64_C(268435456), NULL),
    F("max_channels", C2D_CFG_INT, max_channels, 0, 1, CHANNELS_MAX, 64, NULL),
    F("ledger_map_bytes", C2D_CFG_INT, ledger_map_bytes, 0, MAP_BYTES_MIN, MAP_BYTES_MAX,
      INT64_C(1073741824), NULL),
    F("open_mode", C2D_CFG_BOOL, open_mode, 0, 0, 0, 0, NULL),
    F("sweep_interval_s", C2D_CFG_INT, sweep_interval_s, 0, 1, 86400, 60, NULL),
    /* Device state (controller/devstate.h): 3 heartbeats of an agent's default. */
    F("offline_after_s", C2D_CFG_INT, offline_after_s, 0, 1, 86400, 90, NULL),
    F("alarm_retention_s", C2D_CFG_INT, alarm_retention_s, 0, 0, INT64_C(315360000), 0, NULL),
    /* Per-device rate limit (controller/devlimit.h: why these defaults). */
    F("device_msgs_per_s", C2D_CFG_INT, device_msgs_per_s, 0, 1, CTL_DEVLIMIT_PARAM_MAX,
      CTL_DEVLIMIT_MSGS_PER_S, NULL),
    F("device_msgs_burst", C2D_CFG_INT, device_msgs_burst, 0, 1, CTL_DEVLIMIT_PARAM_MAX,
      CTL_DEVLIMIT_MSGS_BURST, NULL),
    F("device_bytes_per_s", C2D_CFG_INT, device_bytes_per_s, 0, 1, CTL_DEVLIMIT_PARAM_MAX,
      CTL_DEVLIMIT_BYTES_PER_S, NULL),
    F("device_bytes_burst", C2D_CFG_INT, device_bytes_burst, 0, CTL_DEVLIMIT_BYTES_BURST_MIN,
      CTL_DEVLIMIT_PARAM_MAX, CTL_DEVLIMIT_BYTES_BURST, NULL),
    F("http", C2D_CFG_SKIP, http, 0, 0, 0, 0, NULL),
    F("mail", C2D_CFG_SKIP, mail, 0, 0, 0, 0, NULL),
    F("pki", C2D_CFG_SKIP, pki, 0, 0, 0, 0, NULL),
    F("revocation", C2D_CFG_SKIP, revocation, 0, 0, 0, 0, NULL),
};
#define N_FIELDS (sizeof(fields) / sizeof(fields[0]))

/* Request bodies: at least 1 KiB (a log-in), at most 16 MiB (bounds memory
 * per connection). Sessions: idle 30 min and absolute 12 h by default
 * (OWASP session guidance); bounded by a week. */
#define BODY_MAX_MIN 1024
#define BODY_MAX_MAX (16 * 1024 * 1024)
#define SESSION_S_MAX (7 * 86400)

#define H(key, type, field, req, min, max, di, ds)                                                 \
    {                                                                                              \
        key, type, offsetof(ctl_http_cfg, field), req, min, max, di, ds                            \
    }
static const c2d_cfg_field http_fields[] = {
    H("listen", C2D_CFG_STRING, listen, 0, 0, 0, 0, "127.0.0.1"),
    H("port", C2D_CFG_INT, port, 0, 0, 65535, 8080, NULL),
    H("body_max", C2D_CFG_INT, body_max, 0, BODY_MAX_MIN, BODY_MAX_MAX, 65536, NULL),
    H("session_idle_s", C2D_CFG_INT, session_idle_s, 0, 1, SESSION_S_MAX, 1800, NULL),
    H("session_max_s", C2D_CFG_INT, session_max_s, 0, 1, SESSION_S_MAX, 43200, NULL),
    H("link_ttl_s", C2D_CFG_INT, link_ttl_s, 0, 1, SESSION_S_MAX, 86400, NULL),
};
#define N_HTTP_FIELDS (sizeof(http_fields) / sizeof(http_fields[0]))

/* outbox_dir has no static default: NULL becomes <data_dir>/outbox. The
 * sendmail command gets 10 s by default: a local MTA queues in well under
 * a second, and an HTTP handler waits for it. */
#define M(key, type, field, req, min, max, di, ds)                                                 \
    {                                                                                              \
        key, type, offsetof(ctl_mail_cfg, field), req, min, max, di, ds                            \
    }
static const c2d_cfg_field mail_fields[] = {
    M("outbox_dir", C2D_CFG_STRING, outbox_dir, 0, 0, 0, 0, NULL),
    M("from", C2D_CFG_STRING, from, 0, 0, 0, 0, "cam2drive <noreply@localhost>"),
    M("sendmail", C2D_CFG_STRING, sendmail, 0, 0, 0, 0, ""),
    M("link_base", C2D_CFG_STRING, link_base, 0, 0, 0, 0, ""),
    M("sendmail_timeout_s", C2D_CFG_INT, sendmail_timeout_s, 0, 1, CTL_MAILER_TIMEOUT_S_MAX, 10,
      NULL),
};
#define N_MAIL_FIELDS (sizeof(mail_fields) / sizeof(mail_fields[0]))

/* Device certificates: c2d_pki's bounds (docs/pki.md). */
#define K(key, type, field, req, min, max, di, ds)                                                 \
    {                                                                                              \
        key, type, offsetof(ctl_pki_cfg, field), req, min, max, di, ds                             \
    }
static const c2d_cfg_field pki_fields[] = {
    K("issuing_cert", C2D_CFG_STRING, issuing_cert, 1, 0, 0, 0, NULL),
    K("issuing_key", C2D_CFG_STRING, issuing_key, 1, 0, 0, 0, NULL),
    K("chain", C2D_CFG_STRING, chain, 1, 0, 0, 0, NULL),
    K("device_days", C2D_CFG_INT, device_days, 0, 1, C2D_PKI_DEVICE_DAYS_MAX,
      C2D_PKI_DEVICE_DAYS_DEFAULT, NULL),
    K("device_host", C2D_CFG_STRING, device_host, 1, 0, 0, 0, NULL),
    K("device_port", C2D_CFG_INT, device_port, 0, 1, 65535, 8883, NULL),
    /* 15 min (CTL_PAIR_TTL_US); shorter for tests, longer for a site where
     * the code travels before it is typed; at most a day. */
    K("code_ttl_s", C2D_CFG_INT, code_ttl_s, 0, 1, 86400, 900, NULL),
    /* Where recorders pair (c2d-ca's second listener, 8884 by default):
     * the API hands it out with each code so the installer need not know. */
    K("pairing_host", C2D_CFG_STRING, pairing_host, 0, 0, 0, 0, NULL),
    K("pairing_port", C2D_CFG_INT, pairing_port, 0, 1, 65535, 8884, NULL),
};
#define N_PKI_FIELDS (sizeof(pki_fields) / sizeof(pki_fields[0]))

/* The "pki" object (absent: no pairing), paths from the config's dir. */
static int load_pki(const cJSON *root, const char *path, const char *base, ctl_config *c, char *err,
                    size_t errlen)
{
    const cJSON *pki = cJSON_GetObjectItemCaseSensitive(root, "pki");
    if (!pki)
        return 0;
    char where[C2D_ERRMSG_MAX];
    snprintf(where, sizeof(where), "%s: pki", path);
    if (c2d_cfg_apply(pki, where, pki_fields, N_PKI_FIELDS, &c->pki, err, errlen) != 0)
        return -1;
    if (c->pki.device_host[0] == '\0') {
        snprintf(err, errlen, "%s: key \"device_host\" must not be empty", where);
        return -1;
    }
    if (c->pki.pairing_host &&
        (c->pki.pairing_host[0] == '\0' || strlen(c->pki.pairing_host) > CTL_PAIRING_HOST_MAX)) {
        snprintf(err, errlen, "%s: key \"pairing_host\" must be 1..%d bytes", where,
                 CTL_PAIRING_HOST_MAX);
        return -1;
    }
    if (c2d_cfg_resolve_path(&c->pki.issuing_cert, base, where, "issuing_cert", err, errlen) != 0 ||
        c2d_cfg_resolve_path(&c->pki.issuing_key, base, where, "issuing_key", err, errlen) != 0 ||
        c2d_cfg_resolve_path(&c->pki.chain, base, where, "chain", err, errlen) != 0)
        return -1;
    c->pki.enabled = 1;
    return 0;
}

#define R(key, type, field, req, min, max, di, ds)                                                 \
    {                                                                                              \
        key, type, offsetof(ctl_revocation_cfg, field), req, min, max, di, ds                      \
    }
static const c2d_cfg_field revocation_fields[] = {
    R("acl_file", C2D_CFG_STRING, acl_file, 1, 0, 0, 0, NULL),
    R("broker_pid_file", C2D_CFG_STRING, broker_pid_file, 0, 0, 0, 0, ""),
};
#define N_REVOCATION_FIELDS (sizeof(revocation_fields) / sizeof(revocation_fields[0]))

/* The "revocation" object (absent: no broker-side cut-off). */
static int load_revocation(const cJSON *root, const char *path, const char *base, ctl_config *c,
                           char *err, size_t errlen)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "revocation");
    if (!o)
        return 0;
    char where[C2D_ERRMSG_MAX];
    snprintf(where, sizeof(where), "%s: revocation", path);
    ctl_revocation_cfg *r = &c->revocation;
    if (c2d_cfg_apply(o, where, revocation_fields, N_REVOCATION_FIELDS, r, err, errlen) != 0)
        return -1;
    if (r->acl_file[0] == '\0') {
        snprintf(err, errlen, "%s: key \"acl_file\" must not be empty", where);
        return -1;
    }
    if (c2d_cfg_resolve_path(&r->acl_file, base, where, "acl_file", err, errlen) != 0 ||
        (r->broker_pid_file[0] && c2d_cfg_resolve_path(&r->broker_pid_file, base, where,
                                                       "broker_pid_file", err, errlen) != 0))
        return -1;
    r->enabled = 1;
    return 0;
}

/* The "mail" object (absent: every default), after data_dir is resolved. */
static int load_mail(const cJSON *root, const char *path, const char *base, ctl_config *c,
                     char *err, size_t errlen)
{
    char where[C2D_ERRMSG_MAX];
    snprintf(where, sizeof(where), "%s: mail", path);
    const cJSON *mail = cJSON_GetObjectItemCaseSensitive(root, "mail");
    cJSON *empty = NULL;
    if (!mail) {
        if (!(mail = empty = cJSON_CreateObject())) {
            snprintf(err, errlen, "%s: out of memory", where);
            return -1;
        }
    }
    int rc = c2d_cfg_apply(mail, where, mail_fields, N_MAIL_FIELDS, &c->mail, err, errlen);
    cJSON_Delete(empty);
    if (rc != 0)
        return -1;
    ctl_mail_cfg *m = &c->mail;
    if (m->outbox_dir && m->outbox_dir[0] == '\0') {
        snprintf(err, errlen, "%s: key \"outbox_dir\" must not be empty", where);
        return -1;
    }
    if (!m->outbox_dir) {
        size_t n = strlen(c->data_dir) + sizeof("/outbox");
        if (!(m->outbox_dir = malloc(n))) {
            snprintf(err, errlen, "%s: out of memory", where);
            return -1;
        }
        snprintf(m->outbox_dir, n, "%s/outbox", c->data_dir);
    }
    if (c2d_cfg_resolve_path(&m->outbox_dir, base, where, "outbox_dir", err, errlen) != 0)
        return -1;
    const char *key, *why;
    if (ctl_mailer_check_cfg(m, &key, &why) != 0) {
        snprintf(err, errlen, "%s: key \"%s\" %s", where, key, why);
        return -1;
    }
    return 0;
}

int ctl_config_load(const char *path, ctl_config *out, char *err, size_t errlen)
{
    ctl_config c;
    memset(&c, 0, sizeof(c));
    cJSON *root = c2d_cfg_parse_file(path, err, errlen);
    if (!root)
        return -1;
    /* Relative paths are taken from the configuration's directory, so the
     * daemon behaves the same whatever its working directory. */
    char base[PATH_MAX];
    if (c2d_cfg_base_dir(path, base, err, errlen) != 0)
        goto fail;
    if (c2d_cfg_apply(root, path, fields, N_FIELDS, &c, err, errlen) != 0)
        goto fail;
    if (c.data_dir[0] == '\0') {
        snprintf(err, errlen, "%s: key \"data_dir\" must not be empty", path);
        goto fail;
    }
    if (c2d_broker_cfg_load(cJSON_GetObjectItemCaseSensitive(root, "broker"), path, &c.broker, err,
                            errlen) != 0 ||
        c2d_broker_cfg_resolve(&c.broker, base, path, err, errlen) != 0)
        goto fail;
    if (c.broker.client_id && c.broker.client_id[0] == '\0') {
        free(c.broker.client_id); /* empty: use the default */
        c.broker.client_id = NULL;
    }
    if (c2d_cfg_resolve_path(&c.data_dir, base, path, "data_dir", err, errlen) != 0)
        goto fail;
    const cJSON *http = cJSON_GetObjectItemCaseSensitive(root, "http");
    if (http) {
        char where[C2D_ERRMSG_MAX];
        snprintf(where, sizeof(where), "%s: http", path);
        if (c2d_cfg_apply(http, where, http_fields, N_HTTP_FIELDS, &c.http, err, errlen) != 0)
            goto fail;
        if (c.http.listen[0] == '\0') {
            snprintf(err, errlen, "%s: key \"listen\" must not be empty", where);
            goto fail;
        }
        c.http.enabled = 1;
    }
    if (load_mail(root, path, base, &c, err, errlen) != 0 ||
        load_pki(root, path, base, &c, err, errlen) != 0 ||
        load_revocation(root, path, base, &c, err, errlen) != 0)
        goto fail;
    cJSON_Delete(root);
    *out = c;
    return 0;
fail:
    c2d_cfg_free_strings(fields, N_FIELDS, &c);
    c2d_cfg_free_strings(http_fields, N_HTTP_FIELDS, &c.http);
    c2d_cfg_free_strings(mail_fields, N_MAIL_FIELDS, &c.mail);
    c2d_cfg_free_strings(pki_fields, N_PKI_FIELDS, &c.pki);
    c2d_cfg_free_strings(revocation_fields, N_REVOCATION_FIELDS, &c.revocation);
    c2d_broker_cfg_free(&c.broker);
    cJSON_Delete(root);
    return -1;
}

void ctl_config_free(ctl_config *cfg)
{
    if (!cfg)
        return;
    c2d_cfg_free_strings(fields, N_FIELDS, cfg);
    c2d_cfg_free_strings(http_fields, N_HTTP_FIELDS, &cfg->http);
    c2d_cfg_free_strings(mail_fields, N_MAIL_FIELDS, &cfg->mail);
    c2d_cfg_free_strings(pki_fields, N_PKI_FIELDS, &cfg->pki);
    c2d_cfg_free_strings(revocation_fields, N_REVOCATION_FIELDS, &cfg->revocation);
    c2d_broker_cfg_free(&cfg->broker);
}
