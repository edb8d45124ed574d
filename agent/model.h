/* Recorder model files (firmware-configs/<model>.json): what one supported
 * recorder looks like to the agent — its channel count, the stream URL (or
 * directory) of each channel, where the spool lives and how big it may get,
 * and the CPU/memory budget the agent must respect on it. An agent
 * configuration names its model (key "model"); the model supplies defaults
 * that the configuration's own keys override (agent/config.c).
 *
 * This loader is the real check of a model file; firmware-configs/schema.json
 * documents the same rules for people and editors. */
#ifndef AGENT_MODEL_H
#define AGENT_MODEL_H

#include <stddef.h>
#include <stdint.h>

/* A model name is also a file name: 1..64 of [A-Za-z0-9_.-], not starting
 * with '.' or '-' (so it never escapes firmware_dir or reads as an option). */
#define AGENT_MODEL_NAME_MAX 64

/* The only placeholder of source_template; it becomes the channel number. */
#define AGENT_MODEL_PLACEHOLDER "{channel}"

typedef struct {
    char *model;           /* equals the file's name without ".json" */
    char *vendor;          /* not empty */
    char *kind;            /* "dvr", "nvr" or "dashcam" */
    int64_t channels;      /* 1..AGENT_CHANNELS_MAX, numbered 1..channels */
    char *source_template; /* URL or absolute path with {channel} */
    char *spool_dir;       /* absolute */
    int64_t spool_max_bytes;
    int64_t segment_seconds;
    int64_t cpu_percent; /* budget.cpu_percent, 1..100 */
    int64_t memory_kib;  /* budget.memory_kib */
} agent_model;

/* 1 if name is a valid model name (see AGENT_MODEL_NAME_MAX). */
int agent_model_name_valid(const char *name);

/* Loads and checks the model file path into *out (written only on success).
 * Returns 0, or -1 with err filled ("FILE: KEY: why", or "FILE: cannot
 * read: ..."). Call agent_model_free on success only. */
int agent_model_load(const char *path, agent_model *out, char *err, size_t errlen);

/* Frees what a successful load allocated. NULL is a no-op; so is a zeroed
 * struct. */
void agent_model_free(agent_model *m);

/* The source of channel ch (1..m->channels): source_template with every
 * {channel} replaced by ch, malloc'd into *out. Returns 0, -EINVAL when ch is
 * out of range, or -ENOMEM. */
int agent_model_source(const agent_model *m, int64_t ch, char **out);

#endif
