#include "agent/model.h"

#include "agent/config.h"
#include "common/c2d_config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A template longer than this is not a stream URL or a path but a mistake;
 * bounding it also bounds every expanded source. */
#define TEMPLATE_MAX 1024
/* Budgets: the agent cannot run in less than 1 MiB, and more than 4 GiB is
 * beyond any recorder (a value out of these bounds is a unit mistake). */
#define MEMORY_KIB_MIN 1024
#define MEMORY_KIB_MAX (4LL << 20)

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

#define MF(key, type, field, req, min, max)                                                        \
    {                                                                                              \
        key, type, offsetof(agent_model, field), req, min, max, 0, NULL                            \
    }
static const c2d_cfg_field model_fields[] = {
    MF("model", C2D_CFG_STRING, model, 1, 0, 0),
    MF("vendor", C2D_CFG_STRING, vendor, 1, 0, 0),
    MF("kind", C2D_CFG_STRING, kind, 1, 0, 0),
    MF("channels", C2D_CFG_INT, channels, 1, 1, AGENT_CHANNELS_MAX),
    MF("source_template", C2D_CFG_STRING, source_template, 1, 0, 0),
    MF("spool_dir", C2D_CFG_STRING, spool_dir, 1, 0, 0),
    MF("spool_max_bytes", C2D_CFG_INT, spool_max_bytes, 1, AGENT_SPOOL_MIN_BYTES,
       AGENT_JSON_INT_MAX),
    MF("segment_seconds", C2D_CFG_INT, segment_seconds, 1, 1, AGENT_SEGMENT_SECONDS_MAX),
    {"budget", C2D_CFG_SKIP, 0, 1, 0, 0, 0, NULL},
};
#define N_MODEL (sizeof(model_fields) / sizeof(model_fields[0]))

static const c2d_cfg_field budget_fields[] = {
    MF("cpu_percent", C2D_CFG_INT, cpu_percent, 1, 1, 100),
    MF("memory_kib", C2D_CFG_INT, memory_kib, 1, MEMORY_KIB_MIN, MEMORY_KIB_MAX),
};
#define N_BUDGET (sizeof(budget_fields) / sizeof(budget_fields[0]))

static const char *const kinds[] = {"dvr", "nvr", "dashcam"};

int agent_model_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > AGENT_MODEL_NAME_MAX || name[0] == '.' || name[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* 1 if every brace of t belongs to a {channel} and there is at least one. */
static int template_valid(const char *t)
{
    const size_t plen = strlen(AGENT_MODEL_PLACEHOLDER);
    int found = 0;
    for (const char *p = t; *p; p++) {
        if (*p == '{' && strncmp(p, AGENT_MODEL_PLACEHOLDER, plen) == 0) {
            found = 1;
            p += plen - 1;
        } else if (*p == '{' || *p == '}') {
            return 0;
        }
    }
    return found;
}

/* The model's name from its path: the last component without ".json". */
static int file_stem(const char *path, char *out, size_t outlen)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    size_t n = strlen(name);
    if (n <= 5 || strcmp(name + n - 5, ".json") != 0 || n - 5 >= outlen)
        return -1;
    memcpy(out, name, n - 5);
    out[n - 5] = '\0';
    return 0;
}

static int check(const agent_model *m, const char *path, char *err, size_t errlen)
{
    char stem[AGENT_MODEL_NAME_MAX + 1];
    if (!agent_model_name_valid(m->model))
        return fail(err, errlen,
                    "%s: key \"model\" must be 1..%d characters of [A-Za-z0-9_.-], not starting "
                    "with '.' or '-'",
                    path, AGENT_MODEL_NAME_MAX);
    /* The agent finds a model by its name: file and name must agree. */
    if (file_stem(path, stem, sizeof(stem)) != 0 || strcmp(stem, m->model) != 0)
        return fail(err, errlen, "%s: key \"model\" is \"%s\" but the file must then be %s.json",
                    path, m->model, m->model);
    if (m->vendor[0] == '\0')
        return fail(err, errlen, "%s: key \"vendor\" must not be empty", path);
    size_t k = 0;
    while (k < sizeof(kinds) / sizeof(kinds[0]) && strcmp(kinds[k], m->kind) != 0)
        k++;
    if (k == sizeof(kinds) / sizeof(kinds[0]))
        return fail(err, errlen, "%s: key \"kind\" is \"%s\", allowed: dvr, nvr, dashcam", path,
                    m->kind);
    if (strlen(m->source_template) > TEMPLATE_MAX)
        return fail(err, errlen, "%s: key \"source_template\" is longer than %d bytes", path,
                    TEMPLATE_MAX);
    if (!template_valid(m->source_template))
        return fail(err, errlen,
                    "%s: key \"source_template\" must contain " AGENT_MODEL_PLACEHOLDER
                    " and no other braces",
                    path);
    /* A model describes the recorder's own file system: relative paths
     * would depend on where the agent's configuration happens to be. */
    if (!agent_source_is_url(m->source_template) && m->source_template[0] != '/')
        return fail(err, errlen, "%s: key \"source_template\" must be a URL or an absolute path",
                    path);
    if (m->spool_dir[0] != '/')
        return fail(err, errlen, "%s: key \"spool_dir\" must be an absolute path", path);
    return 0;
}

int agent_model_load(const char *path, agent_model *out, char *err, size_t errlen)
{
    agent_model m;
    memset(&m, 0, sizeof(m));
    cJSON *root = c2d_cfg_parse_file(path, err, errlen);
    if (!root)
        return -1;
    char where[PATH_MAX + 16];
    snprintf(where, sizeof(where), "%s: budget", path);
    const cJSON *budget = cJSON_GetObjectItemCaseSensitive(root, "budget");
    if (c2d_cfg_apply(root, path, model_fields, N_MODEL, &m, err, errlen) != 0)
        goto fail;
    if (!budget) {
        fail(err, errlen, "%s: missing required key \"budget\"", path);
        goto fail;
    }
    if (c2d_cfg_apply(budget, where, budget_fields, N_BUDGET, &m, err, errlen) != 0 ||
        check(&m, path, err, errlen) != 0)
        goto fail;
    cJSON_Delete(root);
    *out = m;
    return 0;
fail:
    cJSON_Delete(root);
    agent_model_free(&m);
    return -1;
}

void agent_model_free(agent_model *m)
{
    if (!m)
        return;
    c2d_cfg_free_strings(model_fields, N_MODEL, m);
}

int agent_model_source(const agent_model *m, int64_t ch, char **out)
{
    if (ch < 1 || ch > m->channels)
        return -EINVAL;
    char num[24];
    int nlen = snprintf(num, sizeof(num), "%lld", (long long)ch);
    const size_t plen = strlen(AGENT_MODEL_PLACEHOLDER);
    /* Each placeholder is longer than any channel number: the result is
     * never longer than the template. */
    char *s = malloc(strlen(m->source_template) + 1);
    if (!s)
        return -ENOMEM;
    char *w = s;
    for (const char *p = m->source_template; *p;) {
        if (strncmp(p, AGENT_MODEL_PLACEHOLDER, plen) == 0) {
            memcpy(w, num, (size_t)nlen);
            w += nlen;
            p += plen;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    *out = s;
    return 0;
}
