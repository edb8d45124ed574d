/* c2d-agent: the command line around agent_core (docs/components.md).
 *
 *   c2d-agent [run] -c CONFIG [--exit-when-done]
 *   c2d-agent status -c CONFIG
 *   c2d-agent check-config -c CONFIG
 *   c2d-agent pair -c CONFIG --code CODE
 *
 * pair (docs/pairing.md) needs a configuration with "serial" and
 * "pairing"; run pairs first when it has no identity yet and the
 * configuration holds "pairing_code".
 *
 * Exit codes: 0 success; 1 runtime failure, invalid configuration for
 * check-config and status, or --exit-when-done with parked segments;
 * 2 bad command line, or invalid configuration for run (so a supervisor
 * does not respawn an agent that cannot start).
 *
 * Test hook: C2D_TEST_CORRUPT_CHUNKS=crc:N or content:N damages N per mille
 * of the chunk frames run sends (agent_config's test_corrupt_*; tools/chaos
 * uses it). A malformed value is a usage error (exit 2). */
#include "agent/agent.h"
#include "agent/config.h"
#include "agent/pair.h"
#include "common/c2d_log.h"

#include <mosquitto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CORRUPT_ENV "C2D_TEST_CORRUPT_CHUNKS"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: c2d-agent [run] -c CONFIG [--exit-when-done] [-v]\n"
               "       c2d-agent status -c CONFIG\n"
               "       c2d-agent check-config -c CONFIG\n"
               "       c2d-agent pair -c CONFIG --code CODE\n");
}

static int cmd_run(const agent_config *cfg, int exit_when_done)
{
    char err[C2D_ERRMSG_MAX + 256];
    agent *a = NULL;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (mosquitto_lib_init() != MOSQ_ERR_SUCCESS) {
        c2d_err("cannot initialise libmosquitto");
        return AGENT_EXIT_ERROR;
    }
    int code = AGENT_EXIT_ERROR;
    if (agent_new(cfg, &a, err, sizeof(err)) != 0) {
        c2d_err("%s", err);
        goto out;
    }
    /* Worker threads inherit a mask without the stop signals, so the
     * handler always runs here and no library call sees an EINTR. */
    sigset_t stopsigs, old;
    sigemptyset(&stopsigs);
    sigaddset(&stopsigs, SIGTERM);
    sigaddset(&stopsigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stopsigs, &old);
    int rc = agent_start(a, err, sizeof(err));
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        c2d_err("%s", err);
        goto out;
    }
    code = agent_run(a, exit_when_done, &stop_requested);
    if (stop_requested)
        c2d_info("stop requested; shutting down");
out:
    agent_free(a);
    mosquitto_lib_cleanup();
    if (code == AGENT_EXIT_OK)
        c2d_info("stopped");
    return code;
}

/* Pairs with code and reloads *cfg with the new identity. */
static int do_pair(const char *config, agent_config *cfg, const char *code)
{
    char err[C2D_ERRMSG_MAX + 256];
    if (!cfg->serial) {
        c2d_err("%s: pairing needs the keys \"serial\" and \"pairing\"", config);
        return AGENT_EXIT_USAGE;
    }
    if (mosquitto_lib_init() != MOSQ_ERR_SUCCESS) {
        c2d_err("cannot initialise libmosquitto");
        return AGENT_EXIT_ERROR;
    }
    agent_pair_params pp = {.state_dir = cfg->state_dir,
                            .serial = cfg->serial,
                            .code = code,
                            .host = cfg->pairing_host,
                            .port = cfg->pairing_port,
                            .ca_file = cfg->pairing_ca_file};
    agent_identity id;
    int rc = agent_pair(&pp, &id, err, sizeof(err));
    mosquitto_lib_cleanup();
    if (rc != 0) {
        c2d_err("pairing serial %s: %s", cfg->serial, err);
        return AGENT_EXIT_ERROR;
    }
    c2d_info("paired: serial %s is device %s, broker %s:%lld", cfg->serial, id.device_id, id.host,
             (long long)id.port);
    agent_config fresh;
    if (agent_config_load(config, &fresh, err, sizeof(err)) != 0) {
        c2d_err("%s", err);
        return AGENT_EXIT_ERROR;
    }
    agent_config_free(cfg);
    *cfg = fresh;
    return AGENT_EXIT_OK;
}

static int cmd_status(const agent_config *cfg)
{
    char err[C2D_ERRMSG_MAX + 256];
    char *json = NULL;
    if (agent_status_json(cfg, &json, err, sizeof(err)) != 0) {
        c2d_err("%s", err);
        return AGENT_EXIT_ERROR;
    }
    printf("%s\n", json);
    free(json);
    return fflush(stdout) == 0 ? AGENT_EXIT_OK : AGENT_EXIT_ERROR;
}

int main(int argc, char **argv)
{
    const char *cmd = "run", *config = NULL, *pair_code = NULL;
    int exit_when_done = 0, verbose = 0, i = 1;
    c2d_log_set_name("c2d-agent");
    agent_tune_malloc();

    if (i < argc && argv[i][0] != '-') {
        cmd = argv[i++];
        if (strcmp(cmd, "run") != 0 && strcmp(cmd, "status") != 0 &&
            strcmp(cmd, "check-config") != 0 && strcmp(cmd, "pair") != 0) {
            fprintf(stderr, "c2d-agent: unknown command \"%s\"\n", cmd);
            usage(stderr);
            return AGENT_EXIT_USAGE;
        }
    }
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if ((strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0) && i + 1 < argc) {
            config = argv[++i];
        } else if (strncmp(arg, "--config=", 9) == 0) {
            config = arg + 9;
        } else if (strcmp(arg, "--code") == 0 && i + 1 < argc && strcmp(cmd, "pair") == 0) {
            pair_code = argv[++i];
        } else if (strcmp(arg, "--exit-when-done") == 0 && strcmp(cmd, "run") == 0) {
            exit_when_done = 1;
        } else if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
            verbose = 1;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return AGENT_EXIT_OK;
        } else {
            fprintf(stderr, "c2d-agent: unexpected argument \"%s\"\n", arg);
            usage(stderr);
            return AGENT_EXIT_USAGE;
        }
    }
    if (!config) {
        fprintf(stderr, "c2d-agent: -c CONFIG is required\n");
        usage(stderr);
        return AGENT_EXIT_USAGE;
    }
    if (strcmp(cmd, "pair") == 0 && !pair_code) {
        fprintf(stderr, "c2d-agent: pair needs --code CODE\n");
        usage(stderr);
        return AGENT_EXIT_USAGE;
    }
    if (verbose)
        c2d_log_set_level(C2D_LOG_DEBUG);

    agent_config cfg;
    char err[C2D_ERRMSG_MAX];
    int is_run = strcmp(cmd, "run") == 0;
    if (agent_config_load(config, &cfg, err, sizeof(err)) != 0) {
        c2d_err("%s", err);
        return is_run ? AGENT_EXIT_USAGE : AGENT_EXIT_ERROR;
    }
    int rc = AGENT_EXIT_OK;
    if (strcmp(cmd, "pair") == 0) {
        rc = do_pair(config, &cfg, pair_code);
        agent_config_free(&cfg);
        return rc;
    }
    if (is_run && cfg.unpaired) {
        /* First start: pair with the configured code, then run. */
        if (!cfg.pairing_code) {
            c2d_err("%s: serial %s is not paired: give \"pairing_code\" or run c2d-agent pair",
                    config, cfg.serial);
            agent_config_free(&cfg);
            return AGENT_EXIT_USAGE;
        }
        if ((rc = do_pair(config, &cfg, cfg.pairing_code)) != AGENT_EXIT_OK ||
            (cfg.unpaired && (rc = AGENT_EXIT_ERROR))) {
            agent_config_free(&cfg);
            return rc;
        }
    } else if (cfg.unpaired && strcmp(cmd, "status") == 0) {
        c2d_err("%s: serial %s is not paired yet", config, cfg.serial);
        agent_config_free(&cfg);
        return AGENT_EXIT_ERROR;
    }
    const char *corrupt = getenv(CORRUPT_ENV);
    if (is_run && corrupt && corrupt[0]) {
        if (agent_config_set_test_corrupt(&cfg, corrupt) != 0) {
            c2d_err("%s=\"%s\": expected crc:N or content:N with N per mille (0..1000)",
                    CORRUPT_ENV, corrupt);
            agent_config_free(&cfg);
            return AGENT_EXIT_USAGE;
        }
        c2d_warn("test hook %s=%s: damaging chunk frames on purpose", CORRUPT_ENV, corrupt);
    }
    int code;
    if (strcmp(cmd, "check-config") == 0) {
        printf("%s: OK (%zu channel(s))\n", config, cfg.n_channels);
        code = AGENT_EXIT_OK;
    } else if (strcmp(cmd, "status") == 0) {
        code = cmd_status(&cfg);
    } else {
        code = cmd_run(&cfg, exit_when_done);
    }
    agent_config_free(&cfg);
    return code;
}
