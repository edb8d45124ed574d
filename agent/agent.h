/* The agent process minus its command line: ties the configuration, the
 * spool, one thread per channel, the uploader and the MQTT connection
 * together, and publishes the retained state message.
 *
 * Threads: channel threads (agent/channel.h), the uploader thread
 * (agent/uploader.h), libmosquitto's network thread (mosquitto_loop_start)
 * and the caller's thread, which runs agent_run(): state publishing every
 * AGENT_STATE_PERIOD_S and on change, and the --exit-when-done check.
 *
 * The state directory is locked (flock on state_dir/agent.lock) for the
 * life of the agent, so two agents never share a spool; agent_status_json
 * uses the lock to tell whether an agent is running.
 *
 * Device config: the agent subscribes to its retained cfg topic and applies
 * each config that decodes (proto/devcfg.h) without restart: cloud backup
 * per channel, and a new version releases lanes held by quota_full /
 * no_disk. The applied config is saved as state_dir/devcfg.json and applied
 * at start; its version is "cfg_version" in the state (proto/README.md,
 * "Device config"). */
#ifndef AGENT_AGENT_H
#define AGENT_AGENT_H

#include "agent/config.h"
#include "agent/observer.h"

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct agent agent;

/* Seconds between two state messages when nothing changes, unless the
 * config's state_interval_s says otherwise. */
#define AGENT_STATE_PERIOD_S AGENT_STATE_INTERVAL_S_DEFAULT

/* Process exit codes of c2d-agent (docs/components.md). */
enum {
    AGENT_EXIT_OK = 0,    /* stopped by a signal, or done (--exit-when-done) */
    AGENT_EXIT_ERROR = 1, /* runtime failure; or done with segments parked */
    AGENT_EXIT_USAGE = 2, /* bad command line or invalid configuration */
};

/* Locks and opens the state directory and the spool, creates the MQTT
 * client (TLS, last will). Starts no thread. cfg must outlive the agent.
 * Returns 0, or -1 with err filled; *out is written only on success. */
int agent_new(const agent_config *cfg, agent **out, char *err, size_t errlen);

/* Starts the channels, the uploader and the MQTT connection (which retries
 * in the background if the broker is not reachable yet). Threads inherit
 * the caller's signal mask. Returns 0, or -1 with err filled (call
 * agent_free anyway). */
int agent_start(agent *a, char *err, size_t errlen);

/* Before agent_start: fn receives every segment event (agent/observer.h).
 * Called from the channel and uploader threads: must be quick and thread
 * safe. Without an observer the agent pays one NULL check per event. */
void agent_set_seg_observer(agent *a, agent_seg_observer fn, void *ud);

/* Counters an embedder polls (any thread, after agent_start). */
typedef struct {
    int connected;             /* to the broker now */
    uint64_t connects;         /* successful connections since start */
    uint64_t disconnects;      /* connections lost since start (not our own stop) */
    uint64_t corrupted_frames; /* chunk frames damaged by the test hook */
} agent_counters;
void agent_get_counters(agent *a, agent_counters *out);

/* Process-wide settings for a process that runs agents: malloc arenas and
 * thresholds tuned for many threads that allocate little (c2d-agent, the
 * fleet simulator). Call first thing in main. */
void agent_tune_malloc(void);

/* Runs on the caller's thread until *stop is nonzero, or, if
 * exit_when_done, until every channel has finished and the spool is empty.
 * Returns an AGENT_EXIT_* code. */
int agent_run(agent *a, int exit_when_done, volatile sig_atomic_t *stop);

/* Stops every thread, publishes the retained offline state, disconnects
 * and frees. NULL is a no-op. */
void agent_free(agent *a);

/* The `c2d-agent status` report as JSON (malloc'd, caller frees): spool
 * statistics, the saved device config's version ("cfg_version", null if
 * none) and per channel its source checkpoint and queued segments.
 * If an agent is running on this state directory, its last snapshot
 * (state_dir/status.json, refreshed with every state message) is returned
 * instead, with live channel and upload state and "running": true.
 * Returns 0, or -1 with err filled. */
int agent_status_json(const agent_config *cfg, char **out, char *err, size_t errlen);

#endif
