/* One camera channel: a thread that reads the source with libavformat
 * (remux only), cuts MPEG-TS segments at keyframes and commits them to the
 * spool. Source errors are retried with exponential backoff (1 s .. 60 s)
 * without disturbing other channels; the state is readable at any time.
 *
 * File and directory sources resume after a restart from the checkpoint
 * stored with each committed segment (file name + packets consumed), so a
 * power cut neither loses nor repeats video. */
#ifndef AGENT_CHANNEL_H
#define AGENT_CHANNEL_H

#include "agent/observer.h"
#include "agent/spool.h"

#include <stdint.h>

typedef struct agent_channel agent_channel;

typedef struct {
    uint16_t id;
    const char *name;
    const char *source; /* URL, file, or directory of files read in name order */
    int realtime;       /* pace file sources at their timestamps */
    int loop;           /* restart file sources at their end */
    int64_t segment_us; /* target segment duration */
    /* Realtime pacing factor: 4 feeds a realtime file source 4x faster
     * (the fleet simulator); <= 0 means 1. */
    double speed;
    agent_seg_observer observer; /* may be NULL (agent/observer.h) */
    void *observer_ud;
} agent_channel_cfg;

typedef enum {
    AGENT_CH_STARTING,
    AGENT_CH_RECORDING,
    AGENT_CH_RETRYING, /* source error; waiting to retry */
    AGENT_CH_FINISHED, /* file source read to its end (no loop) */
} agent_channel_state;

typedef struct {
    agent_channel_state state;
    char error[160];   /* last source error, empty if none */
    uint64_t segments; /* committed since start */
    uint64_t retries;
    int64_t last_segment_us; /* start of the last committed segment */
} agent_channel_status;

/* Copies cfg strings, starts the thread. 0 or -errno. */
int agent_channel_start(const agent_channel_cfg *cfg, agent_spool *spool, agent_channel **out);
/* Asks the thread to stop (an unfinished segment is discarded; the
 * checkpoint makes it come again next start), joins it, frees. NULL ok. */
void agent_channel_stop(agent_channel *ch);
void agent_channel_get_status(agent_channel *ch, agent_channel_status *out);
const char *agent_channel_state_name(agent_channel_state s);

#endif
