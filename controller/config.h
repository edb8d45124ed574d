/* c2d-controller configuration: one JSON file, loaded by a table of keys
 * (common/c2d_config.h). The keys and defaults are those of
 * docs/components.md; unknown keys are errors and every error names the file
 * and the key. Relative paths (data_dir, the broker's TLS files and
 * mail.outbox_dir) are resolved against the directory of the configuration
 * file, as the agent does, so the daemon behaves the same whatever its
 * working directory. */
#ifndef CTL_CONFIG_H
#define CTL_CONFIG_H

#include "common/c2d_config.h"

#include <stddef.h>
#include <stdint.h>

/* Client id used when the broker section has none. */
#define CTL_DEFAULT_CLIENT_ID "c2d-controller"

/* The optional "http" object: the HTTP/JSON API listener (issue 3). */
typedef struct {
    int enabled;            /* the object is present: serve the API */
    char *listen;           /* numeric address; default loopback (TLS: a reverse proxy) */
    int64_t port;           /* 0: any free port (logged) */
    int64_t body_max;       /* largest request body, bytes */
    int64_t session_idle_s; /* a session unused this long ends */
    int64_t session_max_s;  /* a session ends this long after log-in, used or not */
    int64_t link_ttl_s;     /* a set-password link works this long (24 h) */
} ctl_http_cfg;

/* The optional "mail" object: the outbox of one-time set-password links
 * (controller/mailer.h). Defaults apply when the object is absent. */
typedef struct {
    char *outbox_dir;           /* one .eml per message; default <data_dir>/outbox */
    char *from;                 /* From header, e.g. "cam2drive <noreply@localhost>" */
    char *sendmail;             /* "" : none; else a command split on spaces, no shell */
    char *link_base;            /* "" : the API builds http://<listen>:<port>; no trailing / */
    int64_t sendmail_timeout_s; /* the command is killed after this long */
} ctl_mail_cfg;

/* Longest pki.pairing_host: a DNS name is at most 253 bytes (RFC 1035). */
#define CTL_PAIRING_HOST_MAX 253

/* The optional "pki" object: pairing (docs/pairing.md). Present: the
 * daemon answers c2d/v1/pair/+/req, signing devices' CSRs with the issuing
 * CA and telling them the device listener's address. */
typedef struct {
    int enabled;         /* the object is present */
    char *issuing_cert;  /* c2d-ca's issuing.crt */
    char *issuing_key;   /* issuing.key */
    char *chain;         /* chain.crt: handed to devices */
    int64_t device_days; /* device certificate lifetime */
    char *device_host;   /* the device listener as devices reach it */
    int64_t device_port;
    int64_t code_ttl_s; /* a pairing code works this long (tests, unusual sites) */
    /* The pairing listener as installers' recorders reach it, told with
     * every pairing code (the API's "pairing"); NULL: not told. */
    char *pairing_host;
    int64_t pairing_port;
} ctl_pki_cfg;

/* The optional "revocation" object (docs/pairing.md "Unpairing"): the
 * device listener's ACL file the controller appends deny lines of revoked
 * device ids to, and the broker's pid file to send SIGHUP to. Absent: the
 * controller ignores revoked devices' messages, the broker is not told. */
typedef struct {
    int enabled;           /* the object is present */
    char *acl_file;        /* c2d-ca's DIR/acl */
    char *broker_pid_file; /* "" : the broker is not signalled */
} ctl_revocation_cfg;

typedef struct {
    char *data_dir;            /* store/, partial/ and ledger.lmdb/ live here */
    c2d_broker_cfg broker;     /* host, port, TLS files, keepalive, client id */
    int64_t max_segment_bytes; /* largest segment a device may declare */
    int64_t max_channels;      /* channels 0 .. max_channels-1 are accepted */
    int64_t ledger_map_bytes;  /* LMDB map size: the ledger's upper bound */
    int open_mode;             /* store segments of cameras no virtual disk covers (lab) */
    int64_t sweep_interval_s;  /* retention sweep and trash emptying period */
    int64_t offline_after_s;   /* a device silent this long is offline (devstate.h) */
    int64_t alarm_retention_s; /* spool_age alarm without the recorder's own retention; 0: none */
    /* Per-device rate limit on MQTT messages (controller/devlimit.h). */
    int64_t device_msgs_per_s, device_msgs_burst, device_bytes_per_s, device_bytes_burst;
    ctl_http_cfg http;             /* http.enabled 0: no API listener */
    ctl_mail_cfg mail;             /* always filled (defaults when "mail" is absent) */
    ctl_pki_cfg pki;               /* pki.enabled 0: no pairing */
    ctl_revocation_cfg revocation; /* revocation.enabled 0: no broker-side cut-off */
} ctl_config;

/* Loads path into *out (which is written only on success). Returns 0, or -1
 * with err naming the file, the key and the problem. On success the caller
 * must call ctl_config_free(out). */
int ctl_config_load(const char *path, ctl_config *out, char *err, size_t errlen);

/* Frees the strings of cfg (not cfg itself). NULL is a no-op. */
void ctl_config_free(ctl_config *cfg);

#endif
