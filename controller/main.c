/* c2d-controller: the cloud side of cam2drive (docs/components.md).
 *
 *   c2d-controller [run] -c CONFIG [-v]
 *   c2d-controller usage -c CONFIG [--json]
 *   c2d-controller segments -c CONFIG [--json]
 */
#include "common/c2d_fs.h"
#include "common/c2d_log.h"
#include "controller/committer.h"
#include "controller/config.h"
#include "controller/daemon.h"
#include "controller/digest.h"
#include "controller/ingest.h"
#include "controller/ledger.h"
#include "controller/report.h"
#include "controller/store.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <inttypes.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define EXIT_USAGE 2

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
          "       c2d-controller segments -c CONFIG [--json]\n",
          f);
}

static int ledger_path(const ctl_config *cfg, char *buf, size_t len)
{
    return c2d_path_join(buf, len, cfg->data_dir, "ledger.lmdb");
}

static int run(const ctl_config *cfg)
{
    ctl_store *store = NULL;
    ctl_ledger *ledger = NULL;
    ctl_ingest *ing = NULL;
    ctl_committer *committer = NULL;
    ctl_daemon *d = NULL;
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

    if ((rc = ctl_committer_new(store, ledger, &committer)) != 0) {
        c2d_err("commit worker: %s", strerror(-rc));
        goto out;
    }
    if (ctl_daemon_new(&cfg->broker, ing, committer, &d, err, sizeof(err)) != 0) {
        c2d_err("%s", err);
        goto out;
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
             cfg->broker.host, cfg->broker.port,
             cfg->broker.client_id ? cfg->broker.client_id : CTL_DEFAULT_CLIENT_ID,
             cfg->max_segment_bytes, cfg->max_channels, ctl_sha256_impl());
    ctl_daemon_run(d, &stop_requested);
    c2d_info("stopping");
    status = 0;
out:
    ctl_daemon_free(d); /* answers the last commits: before the committer goes */
    ctl_committer_free(committer);
    ctl_ingest_free(ing);
    ctl_ledger_free(ledger);
    ctl_store_free(store);
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
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    int json = 0, verbose = 0, c;
    while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'j':
            json = 1;
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
    if (optind != argc || !config || !(is_run || is_usage || is_segments) || (is_run && json)) {
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
    int status;
    if (is_run) {
        mosquitto_lib_init();
        status = run(&cfg);
        mosquitto_lib_cleanup();
    } else {
        status = report(&cfg, is_segments, json);
    }
    ctl_config_free(&cfg);
    return status;
}
