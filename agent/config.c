#include "agent/config.h"

#include "agent/model.h"
#include "agent/pair.h"
#include "proto/c2d_proto.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds of the numeric keys (docs/components.md; the others in config.h). */
#define CHUNK_BYTES_MIN 4096
#define CHUNK_BYTES_MAX ((int64_t)C2D_CHUNK_MAX) /* the protocol's payload limit */
/* A paired agent's keepalive (c2d_broker_cfg's default). */
#define AGENT_PAIRED_KEEPALIVE_S 30
#define WINDOW_CHUNKS_MAX 256 /* 256 x 1 MiB is already far beyond the memory budget */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

#define TF(key, type, field, req, min, max, di, ds)                                                \
    {                                                                                              \
        key, type, offsetof(agent_config, field), req, min, max, di, ds                            \
    }
static const c2d_cfg_field top_fields[] = {
    /* Required unless "serial" is set (pairing: agent_config_load). */
    TF("device_id", C2D_CFG_STRING, device_id, 0, 0, 0, 0, NULL),
    /* Required unless a model supplies it (agent_config_load). */
    TF("state_dir", C2D_CFG_STRING, state_dir, 0, 0, 0, 0, NULL),
    {"broker", C2D_CFG_SKIP, 0, 0, 0, 0, 0, NULL},
    TF("serial", C2D_CFG_STRING, serial, 0, 0, 0, 0, NULL),
    TF("pairing_code", C2D_CFG_STRING, pairing_code, 0, 0, 0, 0, NULL),
    {"pairing", C2D_CFG_SKIP, 0, 0, 0, 0, 0, NULL},
    /* 0: the last third of the certificate's lifetime (agent/renew.h). */
    TF("renew_before_s", C2D_CFG_INT, renew_before_s, 0, 0, AGENT_JSON_INT_MAX, 0, NULL),
    TF("segment_seconds", C2D_CFG_INT, segment_seconds, 0, 1, AGENT_SEGMENT_SECONDS_MAX, 10, NULL),
    TF("chunk_bytes", C2D_CFG_INT, chunk_bytes, 0, CHUNK_BYTES_MIN, CHUNK_BYTES_MAX, 262144, NULL),
    TF("window_chunks", C2D_CFG_INT, window_chunks, 0, 1, WINDOW_CHUNKS_MAX, 8, NULL),
    TF("rate_limit_bps", C2D_CFG_INT, rate_limit_bps, 0, 0, AGENT_JSON_INT_MAX, 0, NULL),
    TF("spool_max_bytes", C2D_CFG_INT, spool_max_bytes, 0, AGENT_SPOOL_MIN_BYTES,
       AGENT_JSON_INT_MAX, 1LL << 30, NULL),
    TF("ack_timeout_s", C2D_CFG_INT, ack_timeout_s, 0, 1, 600, 10, NULL),
    TF("keep_sent_dir", C2D_CFG_STRING, keep_sent_dir, 0, 0, 0, 0, ""),
    TF("model", C2D_CFG_STRING, model, 0, 0, 0, 0, ""),
    TF("firmware_dir", C2D_CFG_STRING, firmware_dir, 0, 0, 0, 0, AGENT_FIRMWARE_DIR_DEFAULT),
    /* Device state (agent.h): heartbeat period; the recorder's own retention. */
    TF("state_interval_s", C2D_CFG_INT, state_interval_s, 0, 1, 3600,
       AGENT_STATE_INTERVAL_S_DEFAULT, NULL),
    TF("recorder_retention_s", C2D_CFG_INT, recorder_retention_s, 0, 0, AGENT_JSON_INT_MAX, 0,
       NULL),
    /* Required unless a model supplies them (load_channels). */
    {"channels", C2D_CFG_SKIP, 0, 0, 0, 0, 0, NULL},
};
#define N_TOP (sizeof(top_fields) / sizeof(top_fields[0]))

#define CF(key, type, field, req, min, max, di, ds)                                                \
    {                                                                                              \
        key, type, offsetof(agent_channel_conf, field), req, min, max, di, ds                      \
    }
static const c2d_cfg_field channel_fields[] = {
    CF("id", C2D_CFG_INT, id, 1, 0, 65535, 0, NULL),
    CF("name", C2D_CFG_STRING, name, 0, 0, 0, 0, ""),
    /* Required unless a model supplies it (load_channels). */
    CF("source", C2D_CFG_STRING, source, 0, 0, 0, 0, NULL),
    CF("realtime", C2D_CFG_BOOL, realtime, 0, 0, 0, 0, NULL),
    CF("loop", C2D_CFG_BOOL, loop, 0, 0, 0, 0, NULL),
};
#define N_CHANNEL (sizeof(channel_fields) / sizeof(channel_fields[0]))

int agent_source_is_url(const char *source)
{
    /* RFC 3986 scheme; two characters at least so "c:" stays a file. */
    size_t i = 0;
    if (!((source[0] >= 'a' && source[0] <= 'z') || (source[0] >= 'A' && source[0] <= 'Z')))
        return 0;
    for (i = 1; source[i] && source[i] != ':'; i++) {
        char c = source[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '.' || c == '-'))
            return 0;
    }
    return source[i] == ':' && i >= 2;
}

static void free_channels(agent_channel_conf *chs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        c2d_cfg_free_strings(channel_fields, N_CHANNEL, &chs[i]);
    free(chs);
}

/* The model's channels 1..N, for a configuration without "channels". */
static int model_channels(const agent_model *m, const char *path, agent_config *c, char *err,
                          size_t errlen)
{
    c->channels = calloc((size_t)m->channels, sizeof(*c->channels));
    if (!c->channels)
        return fail(err, errlen, "%s: out of memory", path);
    for (int64_t i = 0; i < m->channels; i++) {
        agent_channel_conf *ch = &c->channels[i];
        c->n_channels = (size_t)i + 1;
        ch->id = i + 1;
        ch->name = strdup("");
        if (!ch->name || agent_model_source(m, ch->id, &ch->source) != 0)
            return fail(err, errlen, "%s: out of memory", path);
    }
    return 0;
}

/* m is the configuration's model, NULL without one. */
static int load_channels(const cJSON *arr, const char *path, const char *base, const agent_model *m,
                         agent_config *c, char *err, size_t errlen)
{
    if (!arr && m)
        return model_channels(m, path, c, err, errlen);
    if (!arr)
        return fail(err, errlen, "%s: missing required key \"channels\"", path);
    if (!cJSON_IsArray(arr))
        return fail(err, errlen, "%s: key \"channels\" must be an array", path);
    int n = cJSON_GetArraySize(arr);
    if (n < 1 || n > AGENT_CHANNELS_MAX)
        return fail(err, errlen, "%s: key \"channels\" has %d entries, allowed 1..%d", path, n,
                    AGENT_CHANNELS_MAX);
    c->channels = calloc((size_t)n, sizeof(*c->channels));
    if (!c->channels)
        return fail(err, errlen, "%s: out of memory", path);
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        char where[PATH_MAX + 32];
        snprintf(where, sizeof(where), "%s: channels[%d]", path, i);
        agent_channel_conf *ch = &c->channels[i];
        c->n_channels = (size_t)i + 1; /* so a failure frees this entry's strings */
        if (c2d_cfg_apply(it, where, channel_fields, N_CHANNEL, ch, err, errlen) != 0)
            return -1;
        /* The recorder has channels 1..N; another id is a typo or the wrong
         * model. */
        if (m && (ch->id < 1 || ch->id > m->channels))
            return fail(err, errlen,
                        "%s: key \"id\" %lld is not a channel of model \"%s\" (1..%lld)", where,
                        (long long)ch->id, m->model, (long long)m->channels);
        if (!ch->source && !m)
            return fail(err, errlen, "%s: missing required key \"source\"", where);
        if (!ch->source && agent_model_source(m, ch->id, &ch->source) != 0)
            return fail(err, errlen, "%s: out of memory", where);
        if (ch->source[0] == '\0')
            return fail(err, errlen, "%s: key \"source\" must not be empty", where);
        for (int j = 0; j < i; j++)
            if (c->channels[j].id == ch->id)
                return fail(err, errlen, "%s: key \"id\" %lld is already used by channels[%d]",
                            where, (long long)ch->id, j);
        if (!agent_source_is_url(ch->source) &&
            c2d_cfg_resolve_path(&ch->source, base, where, "source", err, errlen) != 0)
            return -1;
        i++;
    }
    return 0;
}

static int empty(const char *s)
{
    return !s || s[0] == '\0';
}

/* Loads the model c->model names from c->firmware_dir into *m. Errors name
 * the configuration's key "model", then the model file's own error. */
static int load_model(const agent_config *c, const char *path, agent_model *m, char *err,
                      size_t errlen)
{
    if (!agent_model_name_valid(c->model))
        return fail(err, errlen,
                    "%s: key \"model\" must be 1..%d characters of [A-Za-z0-9_.-], not starting "
                    "with '.' or '-'",
                    path, AGENT_MODEL_NAME_MAX);
    char file[PATH_MAX];
    if ((size_t)snprintf(file, sizeof(file), "%s/%s.json", c->firmware_dir, c->model) >=
        sizeof(file))
        return fail(err, errlen, "%s: key \"firmware_dir\" is too long", path);
    char why[C2D_ERRMSG_MAX];
    if (agent_model_load(file, m, why, sizeof(why)) != 0)
        return fail(err, errlen, "%s: key \"model\": %s", path, why);
    return 0;
}

/* The model's defaults for the keys root does not set. */
static int apply_model(const cJSON *root, const agent_model *m, const char *path, agent_config *c,
                       char *err, size_t errlen)
{
    if (!cJSON_GetObjectItemCaseSensitive(root, "segment_seconds"))
        c->segment_seconds = m->segment_seconds;
    if (!cJSON_GetObjectItemCaseSensitive(root, "spool_max_bytes"))
        c->spool_max_bytes = m->spool_max_bytes;
    if (!c->state_dir && !(c->state_dir = strdup(m->spool_dir)))
        return fail(err, errlen, "%s: out of memory", path);
    c->budget_cpu_percent = m->cpu_percent;
    c->budget_memory_kib = m->memory_kib;
    return 0;
}

#define PF(key, type, field, req, min, max, di, ds)                                                \
    {                                                                                              \
        key, type, offsetof(agent_config, field), req, min, max, di, ds                            \
    }
static const c2d_cfg_field pairing_fields[] = {
    PF("host", C2D_CFG_STRING, pairing_host, 1, 0, 0, 0, NULL),
    PF("port", C2D_CFG_INT, pairing_port, 0, 1, 65535, 8884, NULL),
    PF("ca_file", C2D_CFG_STRING, pairing_ca_file, 1, 0, 0, 0, NULL),
};
#define N_PAIRING (sizeof(pairing_fields) / sizeof(pairing_fields[0]))

/* A pairing configuration: the "pairing" object, then the identity if
 * one is stored (after state_dir is resolved). */
static int load_pairing(const cJSON *root, const char *path, const char *base, agent_config *c,
                        char *err, size_t errlen)
{
    char where[PATH_MAX + 16];
    snprintf(where, sizeof(where), "%s: pairing", path);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pairing");
    if (!c2d_device_id_valid(c->serial))
        return fail(err, errlen,
                    "%s: key \"serial\" must be 1..%d characters of [A-Za-z0-9_.-], not "
                    "starting with '.' or '-'",
                    path, C2D_DEVICE_ID_MAX);
    if (c->device_id || cJSON_GetObjectItemCaseSensitive(root, "broker"))
        return fail(err, errlen,
                    "%s: keys \"device_id\" and \"broker\" come from pairing when \"serial\" "
                    "is set",
                    path);
    if (!p)
        return fail(err, errlen, "%s: missing required key \"pairing\"", path);
    if (c2d_cfg_apply(p, where, pairing_fields, N_PAIRING, c, err, errlen) != 0 ||
        c2d_cfg_resolve_path(&c->pairing_ca_file, base, where, "ca_file", err, errlen) != 0)
        return -1;
    if (empty(c->pairing_host))
        return fail(err, errlen, "%s: key \"host\" must not be empty", where);
    if (empty(c->pairing_code)) {
        free(c->pairing_code);
        c->pairing_code = NULL;
    }
    return 0;
}

static char *identity_file(const char *state_dir, const char *name)
{
    size_t n = strlen(state_dir) + strlen(AGENT_IDENTITY_DIR) + strlen(name) + 3;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s/%s", state_dir, AGENT_IDENTITY_DIR, name);
    return s;
}

static int apply_identity(const char *path, agent_config *c, char *err, size_t errlen)
{
    agent_identity id;
    int rc = agent_identity_load(c->state_dir, &id);
    if (rc == -ENOENT) {
        c->unpaired = 1;
        return 0;
    }
    if (rc != 0)
        return fail(err, errlen, "%s: identity in %s/%s: %s", path, c->state_dir,
                    AGENT_IDENTITY_DIR, strerror(-rc));
    c2d_broker_cfg *b = &c->broker;
    if (!(c->device_id = strdup(id.device_id)) || !(b->host = strdup(id.host)) ||
        !(b->client_id = strdup(id.device_id)) ||
        !(b->ca_file = identity_file(c->state_dir, AGENT_IDENTITY_CHAIN)) ||
        !(b->cert_file = identity_file(c->state_dir, AGENT_IDENTITY_CERT)) ||
        !(b->key_file = identity_file(c->state_dir, AGENT_IDENTITY_KEY)))
        return fail(err, errlen, "%s: out of memory", path);
    b->port = id.port;
    b->keepalive_s = AGENT_PAIRED_KEEPALIVE_S;
    return 0;
}

int agent_config_load(const char *path, agent_config *out, char *err, size_t errlen)
{
    agent_config c;
    agent_model m;
    memset(&c, 0, sizeof(c));
    memset(&m, 0, sizeof(m));
    cJSON *root = c2d_cfg_parse_file(path, err, errlen);
    if (!root)
        return -1;

    /* The directory relative paths are taken from, made absolute. */
    char base[PATH_MAX];
    if (c2d_cfg_base_dir(path, base, err, errlen) != 0)
        goto fail;

    if (c2d_cfg_apply(root, path, top_fields, N_TOP, &c, err, errlen) != 0)
        goto fail;
    if (c.serial) {
        if (load_pairing(root, path, base, &c, err, errlen) != 0)
            goto fail;
    } else if (!c.device_id) {
        fail(err, errlen, "%s: missing required key \"device_id\"", path);
        goto fail;
    } else if (!c2d_device_id_valid(c.device_id)) {
        fail(err, errlen,
             "%s: key \"device_id\" must be 1..%d characters of [A-Za-z0-9_.-], not starting "
             "with '.' or '-'",
             path, C2D_DEVICE_ID_MAX);
        goto fail;
    }
    if (empty(c.firmware_dir)) {
        fail(err, errlen, "%s: key \"firmware_dir\" must not be empty", path);
        goto fail;
    }
    if (c2d_cfg_resolve_path(&c.firmware_dir, base, path, "firmware_dir", err, errlen) != 0)
        goto fail;
    if (empty(c.model)) {
        free(c.model);
        c.model = NULL;
    } else if (load_model(&c, path, &m, err, errlen) != 0 ||
               apply_model(root, &m, path, &c, err, errlen) != 0) {
        goto fail;
    }
    if (!c.state_dir) {
        fail(err, errlen, "%s: missing required key \"state_dir\"", path);
        goto fail;
    }
    if (empty(c.state_dir)) {
        fail(err, errlen, "%s: key \"state_dir\" must not be empty", path);
        goto fail;
    }
    if (!c.serial && (c2d_broker_cfg_load(cJSON_GetObjectItemCaseSensitive(root, "broker"), path,
                                          &c.broker, err, errlen) != 0 ||
                      c2d_broker_cfg_resolve(&c.broker, base, path, err, errlen) != 0))
        goto fail;
    if (!c.serial && empty(c.broker.client_id)) {
        free(c.broker.client_id);
        c.broker.client_id = strdup(c.device_id);
        if (!c.broker.client_id) {
            fail(err, errlen, "%s: out of memory", path);
            goto fail;
        }
    }
    if (c2d_cfg_resolve_path(&c.state_dir, base, path, "state_dir", err, errlen) != 0)
        goto fail;
    if (c.serial && apply_identity(path, &c, err, errlen) != 0)
        goto fail;
    if (empty(c.keep_sent_dir)) {
        free(c.keep_sent_dir);
        c.keep_sent_dir = NULL;
    } else if (c2d_cfg_resolve_path(&c.keep_sent_dir, base, path, "keep_sent_dir", err, errlen) !=
               0) {
        goto fail;
    }
    if (load_channels(cJSON_GetObjectItemCaseSensitive(root, "channels"), path, base,
                      c.model ? &m : NULL, &c, err, errlen) != 0)
        goto fail;

    agent_model_free(&m);
    cJSON_Delete(root);
    *out = c;
    return 0;
fail:
    agent_model_free(&m);
    cJSON_Delete(root);
    agent_config_free(&c);
    return -1;
}

int agent_config_set_test_corrupt(agent_config *cfg, const char *spec)
{
    int content;
    const char *num;
    if (strncmp(spec, "crc:", 4) == 0) {
        content = 0;
        num = spec + 4;
    } else if (strncmp(spec, "content:", 8) == 0) {
        content = 1;
        num = spec + 8;
    } else {
        return -EINVAL;
    }
    if (*num < '0' || *num > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    long long n = strtoll(num, &end, 10);
    if (errno || *end || n < 0 || n > 1000)
        return -EINVAL;
    cfg->test_corrupt_permille = n;
    cfg->test_corrupt_content = content;
    return 0;
}

void agent_config_free(agent_config *cfg)
{
    if (!cfg)
        return;
    c2d_cfg_free_strings(top_fields, N_TOP, cfg);
    c2d_cfg_free_strings(pairing_fields, N_PAIRING, cfg);
    c2d_broker_cfg_free(&cfg->broker);
    free_channels(cfg->channels, cfg->n_channels);
    cfg->channels = NULL;
    cfg->n_channels = 0;
}
