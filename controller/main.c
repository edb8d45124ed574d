/* c2d-controller: the cloud side of cam2drive (docs/components.md).
 *
 *   c2d-controller [run] -c CONFIG [-v]
 *   c2d-controller usage -c CONFIG [--json]
 *   c2d-controller segments -c CONFIG [--json]
 *   c2d-controller init -c CONFIG --email EMAIL [--link]
 *   c2d-controller fsck -c CONFIG [--repair] [--json] [--hashes]
 *       (with the daemon stopped: both lock data_dir/controller.lock)
 *       (password: one line on stdin; --link: a set-password link instead)
 */
#include "common/c2d_fs.h"
#include "common/c2d_log.h"
#include "controller/api.h"
#include "controller/cfgpub.h"
#include "controller/devstate.h"
#include "controller/committer.h"
#include "controller/config.h"
#include "controller/daemon.h"
#include "controller/digest.h"
#include "controller/directory.h"
#include "controller/fsck.h"
#include "controller/http.h"
#include "controller/ingest.h"
#include "controller/ledger.h"
#include "controller/mailer.h"
#include "controller/password.h"
#include "controller/report.h"
#include "controller/pairing.h"
#include "controller/revoke.h"
#include "controller/renew.h"
#include "controller/rng.h"
#include "controller/store.h"
#include "controller/token.h"
#include "proto/c2d_proto.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <inttypes.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define EXIT_USAGE 2

/* HTTP worker threads: a log-in costs half a second of PBKDF2, so a few
 * threads keep other requests moving meanwhile. */
#define HTTP_THREADS 4

/* The controller's MQTT client id when the configuration names none: made
 * once per installation and kept in data_dir. Client ids are one namespace
 * across the broker's listeners (docs/pki.md), so an anonymous pairing
 * client that knew the controller's id could connect with it and knock the
 * controller off; a random one it cannot know. Stable across restarts, so
 * that the broker keeps the controller's session. */
#define CLIENT_ID_FILE "mqtt_client_id"
#define CLIENT_ID_PREFIX CTL_DEFAULT_CLIENT_ID "-"

static int installation_client_id(ctl_config *cfg)
{
    char path[4096], *buf = NULL;
    size_t n = 0;
    int rc = c2d_path_join(path, sizeof(path), cfg->data_dir, CLIENT_ID_FILE);
    if (rc != 0)
        return rc;
    rc = c2d_read_file(path, 128, &buf, &n);
    if (rc == 0) {
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            buf[--n] = '\0';
        if (n <= strlen(CLIENT_ID_PREFIX) ||
            strncmp(buf, CLIENT_ID_PREFIX, strlen(CLIENT_ID_PREFIX)) || !c2d_device_id_valid(buf)) {
            free(buf);
            return -EBADMSG;
        }
        cfg->broker.client_id = buf;
        return 0;
    }
    if (rc != -ENOENT)
        return rc;
    ctl_rng *rng = NULL;
    unsigned char r[16];
    if ((rc = ctl_rng_new("c2d-controller client id", &rng)) == 0)
        rc = ctl_rng_bytes(rng, r, sizeof(r));
    ctl_rng_free(rng);
    if (rc != 0)
        return rc;
    char id[sizeof(CLIENT_ID_PREFIX) + 2 * sizeof(r) + 1];
    int len = snprintf(id, sizeof(id), "%s", CLIENT_ID_PREFIX);
    for (size_t i = 0; i < sizeof(r); i++)
        len += snprintf(id + len, sizeof(id) - (size_t)len, "%02x", r[i]);
    if ((rc = c2d_write_file_atomic(path, id, (size_t)len, 0600)) != 0)
        return rc;
    if (!(cfg->broker.client_id = strdup(id)))
        return -ENOMEM;
    return 0;
}

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fputs("usage: c2d-controller [run] -c CONFIG [-v]\n"
          "       c2d-controller usage -c CONFIG [--json]\n"
          "       c2d-controller segments -c CONFIG [--json]\n"
          "       c2d-controller init -c CONFIG --email EMAIL [--link]  (password on stdin, or a\n"
          "                                    set-password link in the outbox and on stdout)\n"
          "       c2d-controller fsck -c CONFIG [--repair] [--json] [--hashes]  (daemon stopped)\n",
          f);
}

static int ledger_path(const ctl_config *cfg, char *buf, size_t len)
{
    return c2d_path_join(buf, len, cfg->data_dir, "ledger.lmdb");
}

/* The API's messages go to the outbox (controller/mailer.h). */
static int mail_send(void *ud, const char *to, const char *subject, const char *body)
{
    char id[CTL_MAILER_ID_MAX];
    int rc = ctl_mailer_send(ud, to, subject, body, id, sizeof(id));
    if (rc == 0 || rc == -EIO)
        c2d_info("mail %s written to the outbox%s", id, rc ? "; the sendmail command failed" : "");
    return rc;
}

/* The API changed a device's config: the daemon republishes it. */
static void device_changed(void *ud, const char *device)
{
    ctl_cfgpub_mark(ud, device);
}

/* The base of set-password links: mail.link_base, else the listener. */
static void link_base(const ctl_config *cfg, unsigned port, char *buf, size_t len)
{
    if (cfg->mail.link_base && cfg->mail.link_base[0])
        snprintf(buf, len, "%s", cfg->mail.link_base);
    else if (strchr(cfg->http.listen, ':'))
        snprintf(buf, len, "http://[%s]:%u", cfg->http.listen, port);
    else
        snprintf(buf, len, "http://%s:%u", cfg->http.listen, port);
}

static int run(const ctl_config *cfg)
{
    ctl_store *store = NULL;
    ctl_ledger *ledger = NULL;
    ctl_ingest *ing = NULL;
    ctl_committer *committer = NULL;
    ctl_daemon *d = NULL;
    ctl_dir *dir = NULL;
    ctl_rng *rng = NULL;
    ctl_api *api = NULL;
    ctl_mailer *mailer = NULL;
    ctl_cfgpub *cfgpub = NULL;
    ctl_devstate *devstate = NULL;
    ctl_pairing *pairing = NULL;
    ctl_renew *renew = NULL;
    ctl_revoke *revoke = NULL;
    char base[300];
    ctl_http *http = NULL;
    int status = 1;
    char path[CTL_STORE_PATH_MAX], err[C2D_ERRMSG_MAX];

    int rc = ctl_store_fs_new(cfg->data_dir, &store);
    if (rc != 0) {
        c2d_err("data directory %s: %s", cfg->data_dir, strerror(-rc));
        goto out;
    }
    if ((rc = ledger_path(cfg, path, sizeof(path))) != 0 ||
        (rc = ctl_ledger_open(path, (uint64_t)cfg->ledger_map_bytes, 0, &ledger)) != 0) {
        c2d_err("ledger %s/ledger.lmdb: %s", cfg->data_dir, strerror(-rc));
        goto out;
    }
    ctl_ledger_set_open_mode(ledger, cfg->open_mode);
    if ((rc = ctl_cfgpub_new(ledger, &cfgpub)) != 0) {
        c2d_err("device configs: %s", strerror(-rc));
        goto out;
    }
    if ((rc = ctl_devstate_new(cfg->offline_after_s, cfg->alarm_retention_s, &devstate)) != 0) {
        c2d_err("device state: %s", strerror(-rc));
        goto out;
    }
    if (cfg->open_mode)
        c2d_warn("open_mode: segments of cameras without a virtual disk are stored (a lab "
                 "setting, not for production)");
    ctl_ingest_limits lim = {(uint64_t)cfg->max_segment_bytes, (uint32_t)cfg->max_channels};
    if ((rc = ctl_ingest_new(ledger, store, &lim, &ing)) != 0) {
        c2d_err("ingest: %s", strerror(-rc));
        goto out;
    }
    ctl_recovery rec;
    if ((rc = ctl_ingest_recover(ing, &rec)) != 0) {
        c2d_err("recovering %s: %s", cfg->data_dir, strerror(-rc));
        goto out;
    }
    c2d_info("data %s: %" PRIu64 " uploads in progress, %" PRIu64
             " stray partial files deleted, %" PRIu64 " partial records dropped, %" PRIu64
             " interrupted commits completed",
             cfg->data_dir, rec.partials, rec.partial_files_deleted, rec.partial_records_dropped,
             rec.segments_recovered);
    if (rec.store_orphans || rec.skipped_names)
        c2d_warn("data %s: %" PRIu64 " stored files without a ledger record and %" PRIu64
                 " unexpected names, left for fsck",
                 cfg->data_dir, rec.store_orphans, rec.skipped_names);

    /* The directory (people API, device telemetry) opens its databases
     * before any other thread uses the ledger (LMDB's mdb_dbi_open rule). */
    if ((rc = ctl_dir_open(ledger, &dir)) != 0 || (rc = ctl_revoke_open(dir)) != 0) {
        c2d_err("directory in %s/ledger.lmdb: %s", cfg->data_dir, strerror(-rc));
        goto out;
    }
    if (cfg->pki.enabled)
        ctl_pair_set_code_ttl_us(cfg->pki.code_ttl_s * 1000000);
    if (cfg->http.enabled) {
        ctl_api_params ap = {.session_idle_s = cfg->http.session_idle_s,
                             .session_max_s = cfg->http.session_max_s,
                             .link_ttl_s = cfg->http.link_ttl_s,
                             .mail = mail_send,
                             .mail_ud = NULL,
                             .ledger = ledger,
                             .data_dir = cfg->data_dir,
                             .device_changed = device_changed,
                             .device_changed_ud = cfgpub,
                             .devstate = devstate};
        ctl_http_config hc = {.address = cfg->http.listen,
                              .port = (uint16_t)cfg->http.port,
                              .body_max = (size_t)cfg->http.body_max,
                              .threads = HTTP_THREADS};
        if ((rc = ctl_mailer_new(&cfg->mail, &mailer)) != 0) {
            c2d_err("mail outbox %s: %s", cfg->mail.outbox_dir, strerror(-rc));
            goto out;
        }
        ap.mail_ud = mailer;
        if ((rc = ctl_rng_new("c2d-controller", &rng)) != 0 ||
            (rc = ctl_api_new(dir, rng, &ap, &api)) != 0 ||
            /* config.c checked the address: this cannot fail */
            (rc = ctl_api_set_pairing_listener(api, cfg->pki.enabled ? cfg->pki.pairing_host : NULL,
                                               (int)cfg->pki.pairing_port)) != 0 ||
            (rc = ctl_http_new(&hc, &http)) != 0 || (rc = ctl_api_routes(api, http)) != 0 ||
            (rc = ctl_http_start(http)) != 0) {
            c2d_err("http %s:%" PRId64 ": %s", cfg->http.listen, cfg->http.port, strerror(-rc));
            goto out;
        }
        link_base(cfg, ctl_http_port(http), base, sizeof(base));
        ctl_api_set_link_base(api, base);
        c2d_info("http listening on %s:%u", cfg->http.listen, (unsigned)ctl_http_port(http));
    }
    if ((rc = ctl_committer_new(store, ledger, &committer)) != 0) {
        c2d_err("commit worker: %s", strerror(-rc));
        goto out;
    }
    if (ctl_daemon_new(&cfg->broker, ing, committer, dir, &d, err, sizeof(err)) != 0) {
        c2d_err("%s", err);
        goto out;
    }
    ctl_devlimit_params dlim = {(uint64_t)cfg->device_msgs_per_s, (uint64_t)cfg->device_msgs_burst,
                                (uint64_t)cfg->device_bytes_per_s,
                                (uint64_t)cfg->device_bytes_burst, CTL_DEVLIMIT_CAPACITY};
    if ((rc = ctl_daemon_set_devlimit(d, &dlim)) != 0) {
        c2d_err("device rate limit: %s", strerror(-rc));
        goto out;
    }
    ctl_daemon_set_disks(d, ledger, cfg->data_dir, cfgpub, cfg->sweep_interval_s);
    ctl_daemon_set_devstate(d, devstate);
    if (cfg->revocation.enabled &&
        (rc = ctl_revoke_new(dir, cfg->revocation.acl_file, cfg->revocation.broker_pid_file,
                             &revoke)) != 0) {
        c2d_err("revocation: %s", strerror(-rc));
        goto out;
    }
    if (!revoke)
        c2d_info("revocation: no \"revocation\" object: revoked devices are ignored here, "
                 "not cut off at the broker");
    ctl_daemon_set_revocation(d, revoke, cfg->open_mode);
    if (cfg->pki.enabled) {
        ctl_pairing_cfg pc = {.issuing_cert = cfg->pki.issuing_cert,
                              .issuing_key = cfg->pki.issuing_key,
                              .chain = cfg->pki.chain,
                              .device_days = (int)cfg->pki.device_days,
                              .broker_host = cfg->pki.device_host,
                              .broker_port = cfg->pki.device_port};
        if (ctl_pairing_new(&pc, dir, NULL, &pairing, err, sizeof(err)) != 0) {
            c2d_err("pairing: %s", err);
            goto out;
        }
        ctl_daemon_set_pairing(d, pairing);
        c2d_info("pairing: answering c2d/v1/pair/+/req, devices go to %s:%" PRId64,
                 cfg->pki.device_host, cfg->pki.device_port);
        /* Renewal signs with the same CA and lifetime as pairing. */
        ctl_renew_cfg rc2 = {.issuing_cert = cfg->pki.issuing_cert,
                             .issuing_key = cfg->pki.issuing_key,
                             .chain = cfg->pki.chain,
                             .device_days = (int)cfg->pki.device_days};
        if (ctl_renew_new(&rc2, dir, &renew, err, sizeof(err)) != 0) {
            c2d_err("renewal: %s", err);
            goto out;
        }
        ctl_daemon_set_renew(d, renew);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: wake the network loop */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    c2d_info("serving %s:%" PRId64 " as %s, max_segment_bytes %" PRId64 ", max_channels %" PRId64
             ", SHA-256 by %s",
             cfg->broker.host, cfg->broker.port, cfg->broker.client_id, cfg->max_segment_bytes,
             cfg->max_channels, ctl_sha256_impl());
    ctl_daemon_run(d, &stop_requested);
    c2d_info("stopping");
    status = 0;
out:
    ctl_http_free(http); /* stops serving: before what its handlers use */
    ctl_api_free(api);
    ctl_mailer_free(mailer);
    ctl_rng_free(rng);
    ctl_daemon_free(d); /* answers the last commits: before the committer goes */
    ctl_pairing_free(pairing);
    ctl_renew_free(renew);
    ctl_revoke_free(revoke);
    ctl_cfgpub_free(cfgpub);
    ctl_devstate_free(devstate); /* after the daemon and the API that use it */
    ctl_committer_free(committer);
    ctl_ingest_free(ing);
    ctl_dir_free(dir);
    ctl_ledger_free(ledger);
    ctl_store_free(store);
    return status;
}

/* init: the distributor tenant and its first Administrator, once; the
 * password from stdin, or (with_link) a one-time set-password link written
 * to the outbox and printed. */
static int init(const ctl_config *cfg, const char *email, int with_link)
{
    char path[CTL_STORE_PATH_MAX], pw[CTL_PW_MAX_LEN + 2], hash[CTL_PW_ENCODED_MAX];
    char token[CTL_TOKEN_SIZE] = "";
    ctl_ledger *ledger = NULL;
    ctl_dir *dir = NULL;
    ctl_rng *rng = NULL;
    ctl_mailer *mailer = NULL;
    int status = 1, rc;
    memset(pw, 0, sizeof(pw));
    if (!ctl_api_email_valid(email)) {
        c2d_err("init: \"%s\" is not an email address", email);
        return 1;
    }
    if ((rc = ctl_rng_new("c2d-controller init", &rng)) != 0) {
        c2d_err("init: random source: %s", strerror(-rc));
        goto out;
    }
    if (!with_link) {
        if (!fgets(pw, sizeof(pw), stdin)) {
            c2d_err("init: no password on standard input (or use --link)");
            goto out;
        }
        size_t n = strcspn(pw, "\r\n");
        if (pw[n] == '\0' && n == sizeof(pw) - 1) {
            c2d_err("init: password longer than %d bytes", CTL_PW_MAX_LEN);
            goto out;
        }
        pw[n] = '\0';
        ctl_pw_err pe = ctl_pw_hash(rng, pw, n, 0, hash, sizeof(hash));
        if (pe != CTL_PW_OK) {
            c2d_err("init: password: %s", ctl_pw_strerror(pe));
            goto out;
        }
    } else if ((rc = ctl_mailer_new(&cfg->mail, &mailer)) != 0) {
        c2d_err("init: mail outbox %s: %s", cfg->mail.outbox_dir, strerror(-rc));
        goto out;
    }
    if ((rc = c2d_mkdirs(cfg->data_dir, 0750)) != 0 ||
        (rc = ledger_path(cfg, path, sizeof(path))) != 0 ||
        (rc = ctl_ledger_open(path, (uint64_t)cfg->ledger_map_bytes, 0, &ledger)) != 0 ||
        (rc = ctl_dir_open(ledger, &dir)) != 0) {
        c2d_err("init: ledger %s/ledger.lmdb: %s", cfg->data_dir, strerror(-rc));
        goto out;
    }
    rc = ctl_api_init_distributor(dir, rng, email, with_link ? NULL : hash, cfg->http.link_ttl_s,
                                  with_link ? token : NULL);
    if (rc == -EEXIST) {
        c2d_err("init: already initialised (the distributor administrator exists)");
        goto out;
    }
    if (rc != 0) {
        c2d_err("init: %s", strerror(-rc));
        goto out;
    }
    c2d_info("init: created the distributor and its administrator %s", email);
    if (with_link) {
        char base[300], url[400], body[800], id[CTL_MAILER_ID_MAX];
        link_base(cfg, (unsigned)(cfg->http.port ? cfg->http.port : 8080), base, sizeof(base));
        snprintf(url, sizeof(url), "%s/set-password?token=%s", base, token);
        snprintf(body, sizeof(body),
                 "Hello,\n\nyou are the first administrator of this cam2drive controller.\n"
                 "Choose your password here (the link works once, for %" PRId64 " hours):\n\n"
                 "%s\n",
                 cfg->http.link_ttl_s / 3600, url);
        rc = ctl_mailer_send(mailer, email, "Your cam2drive controller", body, id, sizeof(id));
        if (rc == 0 || rc == -EIO)
            c2d_info("init: set-password link written to the outbox as %s%s", id,
                     rc ? " (the sendmail command failed)" : "");
        else
            c2d_warn("init: could not write the link to the outbox: %s", strerror(-rc));
        /* The operator at the console gets it too: the outbox may be
         * unread, and init runs once. */
        printf("%s\n", url);
    }
    status = 0;
out:
    memset(pw, 0, sizeof(pw));
    memset(token, 0, sizeof(token));
    ctl_dir_free(dir);
    ctl_ledger_free(ledger);
    ctl_rng_free(rng);
    ctl_mailer_free(mailer);
    return status;
}

static int report(const ctl_config *cfg, int segments, int json)
{
    char path[CTL_STORE_PATH_MAX];
    ctl_ledger *ledger = NULL;
    int rc = ledger_path(cfg, path, sizeof(path));
    if (rc == 0)
        rc = ctl_ledger_open(path, (uint64_t)cfg->ledger_map_bytes, 1, &ledger);
    if (rc != 0 && rc != -ENOENT) { /* no ledger yet: nothing stored */
        c2d_err("ledger %s: %s", path, strerror(-rc));
        return 1;
    }
    rc = segments ? ctl_report_segments(ledger, stdout, json)
                  : ctl_report_usage(ledger, stdout, json);
    ctl_ledger_free(ledger);
    if (rc != 0) {
        c2d_err("reading ledger %s: %s", path, strerror(-rc));
        return 1;
    }
    return 0;
}

/* Locks data_dir/controller.lock (flock, released when the process ends)
 * so that the daemon and fsck never run at once. The fd, or -EWOULDBLOCK
 * if another holds it after wait_ms, or -errno. */
static int lock_data_dir(const char *data_dir, int wait_ms)
{
    char path[CTL_STORE_PATH_MAX];
    int rc = c2d_mkdirs(data_dir, 0750);
    if (rc == 0)
        rc = c2d_path_join(path, sizeof(path), data_dir, "controller.lock");
    if (rc != 0)
        return rc;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    for (int waited = 0;; waited += 100) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return fd;
        rc = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
        if (rc != -EWOULDBLOCK || waited >= wait_ms) {
            close(fd);
            return rc;
        }
        usleep(100 * 1000);
    }
}

/* fsck: the ledger against the store (controller/fsck.h). 0: nothing
 * found, or everything repaired; 1: findings remain, or it failed. */
static int fsck(const ctl_config *cfg, int repair, int json, int hashes)
{
    char path[CTL_STORE_PATH_MAX];
    ctl_ledger *ledger = NULL;
    ctl_fsck *f = NULL;
    cJSON *out = NULL;
    int status = 1, repaired = 0;
    int rc = ledger_path(cfg, path, sizeof(path));
    if (rc == 0)
        rc = ctl_ledger_open(path, (uint64_t)cfg->ledger_map_bytes, 0, &ledger);
    if (rc != 0) {
        c2d_err("fsck: ledger %s: %s", path, strerror(-rc));
        return 1;
    }
    if ((rc = ctl_fsck_new(ledger, cfg->data_dir, &f)) != 0 || (rc = ctl_fsck_check(f, hashes))) {
        c2d_err("fsck: checking %s: %s", cfg->data_dir, strerror(-rc));
        goto out;
    }
    ctl_fsck_stats st;
    ctl_fsck_get_stats(f, &st);
    if (repair && st.findings) {
        if ((rc = ctl_fsck_repair(f)) != 0)
            c2d_err("fsck: repairing %s: %s (run fsck again)", cfg->data_dir, strerror(-rc));
        else
            repaired = 1;
        ctl_fsck_get_stats(f, &st);
    }
    size_t n = ctl_fsck_count(f);
    cJSON *list = NULL;
    if (json &&
        (!(out = cJSON_CreateObject()) || !(list = cJSON_AddArrayToObject(out, "findings")))) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const ctl_fsck_finding *x = ctl_fsck_get(f, i);
        const char *kind = ctl_fsck_kind_name(x->kind);
        if (!json) {
            printf("%s %s: %s%s\n", kind, x->what,
                   x->info       ? ""
                   : x->repaired ? "repaired: "
                                 : "repair: ",
                   x->repair);
            continue;
        }
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(list, o) || !cJSON_AddStringToObject(o, "kind", kind) ||
            !cJSON_AddStringToObject(o, "what", x->what) ||
            !cJSON_AddStringToObject(o, "repair", x->repair) ||
            !cJSON_AddBoolToObject(o, "info", x->info) ||
            !cJSON_AddBoolToObject(o, "repaired", x->repaired)) {
            rc = -ENOMEM;
            goto out;
        }
    }
    int clean = st.findings == st.repaired;
    if (json) {
        char *s = NULL;
        if (!cJSON_AddBoolToObject(out, "repaired", repaired) ||
            !cJSON_AddNumberToObject(out, "segments", (double)st.segments) ||
            !cJSON_AddNumberToObject(out, "files", (double)st.files) ||
            !cJSON_AddNumberToObject(out, "disks", (double)st.disks) ||
            !(s = cJSON_PrintUnformatted(out))) {
            rc = -ENOMEM;
            goto out;
        }
        printf("%s\n", s);
        free(s);
    } else {
        printf("fsck %s: %" PRIu64 " segments, %" PRIu64 " files, %" PRIu64 " disks: %" PRIu64
               " findings%s\n",
               cfg->data_dir, st.segments, st.files, st.disks, st.findings,
               repaired      ? (clean ? ", all repaired" : ", some not repaired")
               : st.findings ? " (run with --repair to fix them)"
                             : "");
    }
    status = clean ? 0 : 1;
out:
    if (rc == -ENOMEM)
        c2d_err("fsck: out of memory");
    cJSON_Delete(out);
    ctl_fsck_free(f);
    ctl_ledger_free(ledger);
    return status;
}

int main(int argc, char **argv)
{
    c2d_log_set_name("c2d-controller");
    /* Every chunk arrives in a fresh libmosquitto buffer of up to 1 MiB:
     * keep them on the heap instead of an mmap/munmap (and page faults)
     * per message. */
    mallopt(M_MMAP_THRESHOLD, 2 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
    const char *cmd = "run";
    if (argc > 1 && argv[1][0] != '-') {
        cmd = argv[1];
        argv++;
        argc--;
    }
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"email", required_argument, NULL, 'e'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"link", no_argument, NULL, 'l'},
        {"repair", no_argument, NULL, 'r'},
        {"hashes", no_argument, NULL, 'H'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *email = NULL;
    int json = 0, verbose = 0, with_link = 0, repair = 0, hashes = 0, c;
    while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'e':
            email = optarg;
            break;
        case 'l':
            with_link = 1;
            break;
        case 'r':
            repair = 1;
            break;
        case 'H':
            hashes = 1;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    int is_run = strcmp(cmd, "run") == 0;
    int is_usage = strcmp(cmd, "usage") == 0;
    int is_segments = strcmp(cmd, "segments") == 0;
    int is_init = strcmp(cmd, "init") == 0;
    int is_fsck = strcmp(cmd, "fsck") == 0;
    if (optind != argc || !config || !(is_run || is_usage || is_segments || is_init || is_fsck) ||
        ((is_run || is_init) && json) || (is_init != (email != NULL)) || (with_link && !is_init) ||
        ((repair || hashes) && !is_fsck)) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (verbose)
        c2d_log_set_level(C2D_LOG_DEBUG);

    ctl_config cfg;
    char err[C2D_ERRMSG_MAX];
    if (ctl_config_load(config, &cfg, err, sizeof(err)) != 0) {
        c2d_err("%s", err);
        return 1;
    }
    int status, lock = -1;
    if (is_run || is_fsck) {
        /* The daemon waits a little for one stopping; fsck does not wait. */
        lock = lock_data_dir(cfg.data_dir, is_run ? 5000 : 0);
        if (lock < 0) {
            c2d_err("%s/controller.lock: %s", cfg.data_dir,
                    lock == -EWOULDBLOCK ? "the daemon or an fsck is running" : strerror(-lock));
            ctl_config_free(&cfg);
            return 1;
        }
    }
    int idrc;
    if (is_run && !cfg.broker.client_id && (idrc = installation_client_id(&cfg)) != 0) {
        c2d_err("%s/%s: %s", cfg.data_dir, CLIENT_ID_FILE, strerror(-idrc));
        status = 1;
    } else if (is_run) {
        mosquitto_lib_init();
        status = run(&cfg);
        mosquitto_lib_cleanup();
    } else if (is_fsck) {
        status = fsck(&cfg, repair, json, hashes);
    } else if (is_init) {
        status = init(&cfg, email, with_link);
    } else {
        status = report(&cfg, is_segments, json);
    }
    if (lock >= 0)
        close(lock);
    ctl_config_free(&cfg);
    return status;
}
