/* Unit tests for agent/model.c and the "model" key of agent/config.c: every
 * shipped firmware-configs/ *.json passes the loader's check, the models the
 * issue asks for exist, bad model files are refused naming the key (each
 * key schema.json requires, among others), and an agent configuration with
 * a model gets the model's channels and defaults unless it overrides them.
 *
 * usage: test_firmware_configs FIRMWARE_CONFIGS_DIR (meson passes the source
 * directory). */
#include "check.h"
#include "agent/config.h"
#include "agent/model.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *fw_dir; /* the shipped models */
static char dir[64];       /* temp: models and configurations written here */
static char cfg_path[PATH_MAX];

/* ---- the shipped models ------------------------------------------------ */

static void test_shipped(void)
{
    DIR *d = opendir(fw_dir);
    CHECK(d != NULL);
    if (!d)
        return;
    int n = 0, dvr4 = 0, nvr16 = 0, dashcam2 = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0 ||
            strcmp(e->d_name, "schema.json") == 0)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", fw_dir, e->d_name);
        agent_model m;
        char err[C2D_ERRMSG_MAX] = "";
        int rc = agent_model_load(path, &m, err, sizeof(err));
        CHECK(rc == 0);
        if (rc != 0) {
            fprintf(stderr, "shipped model refused: %s\n", err);
            continue;
        }
        n++;
        dvr4 += strcmp(m.kind, "dvr") == 0 && m.channels == 4;
        nvr16 += strcmp(m.kind, "nvr") == 0 && m.channels == 16;
        dashcam2 += strcmp(m.kind, "dashcam") == 0 && m.channels == 2;
        for (int64_t ch = 1; ch <= m.channels; ch++) {
            char *src = NULL;
            CHECK(agent_model_source(&m, ch, &src) == 0);
            CHECK(src && !strchr(src, '{') && !strchr(src, '}'));
            free(src);
        }
        agent_model_free(&m);
    }
    closedir(d);
    CHECK(n >= 3);
    CHECK(dvr4 >= 1);
    CHECK(nvr16 >= 1);
    CHECK(dashcam2 >= 1);
}

/* ---- bad model files --------------------------------------------------- */

#define GOOD_MODEL                                                                                 \
    "{\"model\":\"m\",\"vendor\":\"V\",\"kind\":\"nvr\",\"channels\":3,"                           \
    "\"source_template\":\"rtsp://nvr/ch{channel}/main\",\"spool_dir\":\"/spool\","                \
    "\"spool_max_bytes\":2097152,\"segment_seconds\":6,"                                           \
    "\"budget\":{\"cpu_percent\":20,\"memory_kib\":8192}}"

/* Writes text as dir/name.json; loading it must fail with an error naming
 * the file and each of the NULL-terminated needles. */
static void bad_model(int line, const char *name, const char *text, ...)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s.json", dir, name);
    check_write_file(path, text);
    agent_model m;
    char err[C2D_ERRMSG_MAX] = "";
    if (agent_model_load(path, &m, err, sizeof(err)) == 0) {
        fprintf(stderr, "%s:%d: model loaded but should not have: %s\n", __FILE__, line, text);
        failures++;
        agent_model_free(&m);
    } else {
        va_list ap;
        va_start(ap, text);
        check_err_names(__FILE__, line, err, path, ap);
        va_end(ap);
    }
    unlink(path);
}
#define BAD_MODEL(text, ...) bad_model(__LINE__, "m", text, __VA_ARGS__, (const char *)NULL)

/* GOOD_MODEL with "key":value replaced by "key":repl (repl NULL: removed). */
static char *edit(const char *key, const char *repl)
{
    cJSON *root = cJSON_Parse(GOOD_MODEL);
    cJSON *obj = root;
    if (strcmp(key, "cpu_percent") == 0 || strcmp(key, "memory_kib") == 0)
        obj = cJSON_GetObjectItemCaseSensitive(root, "budget");
    if (repl)
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, cJSON_Parse(repl));
    else
        cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static void bad_edit(int line, const char *key, const char *repl, const char *needle)
{
    char *text = edit(key, repl);
    bad_model(line, "m", text, needle, (const char *)NULL);
    free(text);
}
#define BAD_EDIT(key, repl) bad_edit(__LINE__, key, repl, key)

static void test_good_model(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/m.json", dir);
    check_write_file(path, GOOD_MODEL);
    agent_model m;
    char err[C2D_ERRMSG_MAX] = "";
    int rc = agent_model_load(path, &m, err, sizeof(err));
    CHECK(rc == 0);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err);
        return;
    }
    CHECK(strcmp(m.model, "m") == 0 && strcmp(m.vendor, "V") == 0);
    CHECK(strcmp(m.kind, "nvr") == 0 && m.channels == 3);
    CHECK(strcmp(m.spool_dir, "/spool") == 0);
    CHECK(m.spool_max_bytes == 2097152 && m.segment_seconds == 6);
    CHECK(m.cpu_percent == 20 && m.memory_kib == 8192);
    char *src = NULL;
    CHECK(agent_model_source(&m, 3, &src) == 0 && strcmp(src, "rtsp://nvr/ch3/main") == 0);
    free(src);
    CHECK(agent_model_source(&m, 0, &src) == -EINVAL);
    CHECK(agent_model_source(&m, 4, &src) == -EINVAL);
    agent_model_free(&m);
    agent_model_free(NULL);
    unlink(path);

    /* Several placeholders, and a directory template. */
    check_write_file(path, "{\"model\":\"m\",\"vendor\":\"V\",\"kind\":\"dashcam\",\"channels\":12,"
                           "\"source_template\":\"/sd/{channel}/x{channel}\",\"spool_dir\":\"/s\","
                           "\"spool_max_bytes\":1048576,\"segment_seconds\":600,"
                           "\"budget\":{\"cpu_percent\":100,\"memory_kib\":1024}}");
    rc = agent_model_load(path, &m, err, sizeof(err));
    CHECK(rc == 0);
    if (rc == 0) {
        CHECK(agent_model_source(&m, 12, &src) == 0 && strcmp(src, "/sd/12/x12") == 0);
        free(src);
        agent_model_free(&m);
    }
    unlink(path);
}

static void test_bad_models(void)
{
    /* Every key schema.json requires is required by the loader too, and
     * unknown keys are refused as the schema's additionalProperties says. */
    char schema_path[PATH_MAX];
    snprintf(schema_path, sizeof(schema_path), "%s/schema.json", fw_dir);
    char err[C2D_ERRMSG_MAX] = "";
    cJSON *schema = c2d_cfg_parse_file(schema_path, err, sizeof(err));
    CHECK(schema != NULL);
    if (schema) {
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(schema, "required");
        const cJSON *budget = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(schema, "properties"), "budget");
        const cJSON *breq = cJSON_GetObjectItemCaseSensitive(budget, "required");
        CHECK(cJSON_GetArraySize(req) == 9 && cJSON_GetArraySize(breq) == 2);
        const cJSON *k;
        cJSON_ArrayForEach(k, req) bad_edit(__LINE__, k->valuestring, NULL, k->valuestring);
        cJSON_ArrayForEach(k, breq) bad_edit(__LINE__, k->valuestring, NULL, k->valuestring);
        cJSON_Delete(schema);
    } else {
        fprintf(stderr, "error: %s\n", err);
    }

    BAD_MODEL("{\"model\":\"m\"", "invalid JSON");
    BAD_MODEL("[]", "top level");
    BAD_EDIT("model", "\"other\""); /* file and name disagree */
    BAD_EDIT("model", "\"../m\"");  /* not a name */
    BAD_EDIT("model", "7");
    BAD_EDIT("vendor", "\"\"");
    BAD_EDIT("kind", "\"hvr\"");
    BAD_EDIT("kind", "\"NVR\"");
    BAD_EDIT("channels", "0");
    BAD_EDIT("channels", "65");
    BAD_EDIT("channels", "2.5");
    BAD_EDIT("channels", "\"4\"");
    BAD_EDIT("source_template", "\"rtsp://nvr/main\"");          /* no placeholder */
    BAD_EDIT("source_template", "\"rtsp://nvr/{chan}\"");        /* unknown placeholder */
    BAD_EDIT("source_template", "\"rtsp://nvr/{channel}/{x}\""); /* and another */
    BAD_EDIT("source_template", "\"rtsp://nvr/{channel}}\"");    /* stray brace */
    BAD_EDIT("source_template", "\"rec/ch{channel}\"");          /* relative */
    BAD_EDIT("source_template", "\"\"");
    BAD_EDIT("spool_dir", "\"spool\"");
    BAD_EDIT("spool_dir", "\"\"");
    BAD_EDIT("spool_max_bytes", "1048575");
    BAD_EDIT("segment_seconds", "0");
    BAD_EDIT("segment_seconds", "601");
    BAD_EDIT("budget", "[]");
    BAD_EDIT("cpu_percent", "0");
    BAD_EDIT("cpu_percent", "101");
    BAD_EDIT("memory_kib", "1023");
    BAD_EDIT("memory_kib", "4194305");
    {
        char big[2048];
        int n = snprintf(big, sizeof(big), "\"/");
        while (n < 1030)
            big[n++] = 'a';
        snprintf(big + n, sizeof(big) - (size_t)n, "{channel}\"");
        bad_edit(__LINE__, "source_template", big, "source_template");
    }
    {
        char *text = edit("vendor", "\"V\"");
        cJSON *root = cJSON_Parse(text);
        cJSON_AddNumberToObject(root, "fps", 25);
        cJSON_AddNumberToObject(cJSON_GetObjectItemCaseSensitive(root, "budget"), "disk", 1);
        char *s = cJSON_PrintUnformatted(root);
        BAD_MODEL(s, "fps");
        free(s);
        cJSON_DeleteItemFromObjectCaseSensitive(root, "fps");
        s = cJSON_PrintUnformatted(root);
        BAD_MODEL(s, "budget", "disk");
        free(s);
        cJSON_Delete(root);
        free(text);
    }
    /* The file name must be <model>.json. */
    bad_model(__LINE__, "m.json", GOOD_MODEL, "model", (const char *)NULL);

    char missing[PATH_MAX];
    snprintf(missing, sizeof(missing), "%s/none.json", dir);
    agent_model m;
    CHECK(agent_model_load(missing, &m, err, sizeof(err)) != 0);
    CHECK(strstr(err, missing) != NULL);

    CHECK(agent_model_name_valid("generic-nvr-16ch"));
    CHECK(agent_model_name_valid("A_b.9"));
    CHECK(!agent_model_name_valid(""));
    CHECK(!agent_model_name_valid(".hidden"));
    CHECK(!agent_model_name_valid("-x"));
    CHECK(!agent_model_name_valid("a/b"));
    CHECK(!agent_model_name_valid("a b"));
    CHECK(
        agent_model_name_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    CHECK(!agent_model_name_valid(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

/* ---- agent configurations with "model" --------------------------------- */

#define HEAD                                                                                       \
    "{\"device_id\":\"rec-1\",\"broker\":{\"ca_file\":\"/ca\",\"cert_file\":\"/c\","               \
    "\"key_file\":\"/k\"},"

/* Loads text as the agent configuration into *c; 0 on success (printing the
 * error otherwise). */
static int load(int line, const char *text, agent_config *c)
{
    check_write_file(cfg_path, text);
    char err[C2D_ERRMSG_MAX] = "";
    if (agent_config_load(cfg_path, c, err, sizeof(err)) == 0)
        return 0;
    fprintf(stderr, "%s:%d: config refused: %s\n", __FILE__, line, err);
    failures++;
    return -1;
}

static void bad_config(int line, const char *text, ...)
{
    check_write_file(cfg_path, text);
    agent_config c;
    char err[C2D_ERRMSG_MAX] = "";
    if (agent_config_load(cfg_path, &c, err, sizeof(err)) == 0) {
        fprintf(stderr, "%s:%d: config loaded but should not have: %s\n", __FILE__, line, text);
        failures++;
        agent_config_free(&c);
        return;
    }
    va_list ap;
    va_start(ap, text);
    check_err_names(__FILE__, line, err, cfg_path, ap);
    va_end(ap);
}
#define BAD_CONFIG(text, ...) bad_config(__LINE__, text, __VA_ARGS__, (const char *)NULL)

static void test_config_model(void)
{
    char text[4096];
    agent_config c;

    /* A shipped model, found through an absolute firmware_dir: 16 channels
     * and every default from the model. */
    snprintf(text, sizeof(text), HEAD "\"model\":\"generic-nvr-16ch\",\"firmware_dir\":\"%s\"}",
             fw_dir);
    if (load(__LINE__, text, &c) == 0) {
        CHECK(strcmp(c.model, "generic-nvr-16ch") == 0);
        CHECK(c.n_channels == 16);
        for (size_t i = 0; i < c.n_channels; i++) {
            char want[128];
            snprintf(want, sizeof(want), "rtsp://127.0.0.1:554/Streaming/Channels/%zu01", i + 1);
            CHECK(c.channels[i].id == (int64_t)i + 1);
            CHECK(strcmp(c.channels[i].source, want) == 0);
            CHECK(strcmp(c.channels[i].name, "") == 0);
            CHECK(!c.channels[i].realtime && !c.channels[i].loop);
        }
        CHECK(strcmp(c.state_dir, "/mnt/hdd/c2d-spool") == 0);
        CHECK(c.segment_seconds == 10);
        CHECK(c.spool_max_bytes == 34359738368LL);
        CHECK(c.budget_cpu_percent == 25 && c.budget_memory_kib == 49152);
        CHECK(c.chunk_bytes == 262144); /* not a model key: the usual default */
        agent_config_free(&c);
    }

    /* A model of our own in a firmware_dir relative to the configuration. */
    char sub[PATH_MAX], mpath[PATH_MAX + 16];
    snprintf(sub, sizeof(sub), "%s/fw", dir);
    CHECK(mkdir(sub, 0700) == 0);
    snprintf(mpath, sizeof(mpath), "%s/m.json", sub);
    check_write_file(mpath, GOOD_MODEL);
    if (load(__LINE__, HEAD "\"model\":\"m\",\"firmware_dir\":\"fw\"}", &c) == 0) {
        CHECK(strcmp(c.firmware_dir, sub) == 0);
        CHECK(c.n_channels == 3);
        CHECK(c.n_channels == 3 && strcmp(c.channels[2].source, "rtsp://nvr/ch3/main") == 0);
        CHECK(c.segment_seconds == 6 && c.spool_max_bytes == 2097152);
        CHECK(strcmp(c.state_dir, "/spool") == 0);
        agent_config_free(&c);
    }

    /* The configuration's keys override the model's; channels may name a
     * subset and take their source from the model unless they give one. */
    if (load(__LINE__,
             HEAD "\"model\":\"m\",\"firmware_dir\":\"fw\",\"segment_seconds\":4,"
                  "\"spool_max_bytes\":1048576,\"state_dir\":\"state\",\"channels\":["
                  "{\"id\":3,\"name\":\"Gate\"},{\"id\":1,\"source\":\"media/one.ts\","
                  "\"realtime\":true}]}",
             &c) == 0) {
        char want[PATH_MAX + 16];
        CHECK(c.segment_seconds == 4 && c.spool_max_bytes == 1048576);
        snprintf(want, sizeof(want), "%s/state", dir);
        CHECK(strcmp(c.state_dir, want) == 0);
        CHECK(c.n_channels == 2);
        if (c.n_channels == 2) {
            CHECK(c.channels[0].id == 3 && strcmp(c.channels[0].name, "Gate") == 0);
            CHECK(strcmp(c.channels[0].source, "rtsp://nvr/ch3/main") == 0);
            snprintf(want, sizeof(want), "%s/media/one.ts", dir);
            CHECK(c.channels[1].id == 1 && strcmp(c.channels[1].source, want) == 0);
            CHECK(c.channels[1].realtime == 1);
        }
        agent_config_free(&c);
    }

    /* Without a model: no budget, the default firmware_dir, nothing else
     * changes. */
    if (load(__LINE__, HEAD "\"state_dir\":\"/s\",\"channels\":[{\"id\":0,\"source\":\"/a\"}]}",
             &c) == 0) {
        CHECK(c.model == NULL);
        CHECK(strcmp(c.firmware_dir, AGENT_FIRMWARE_DIR_DEFAULT) == 0);
        CHECK(c.budget_cpu_percent == 0 && c.budget_memory_kib == 0);
        CHECK(c.segment_seconds == 10 && c.spool_max_bytes == 1LL << 30);
        agent_config_free(&c);
    }
    if (load(__LINE__,
             HEAD "\"model\":\"\",\"state_dir\":\"/s\",\"channels\":[{\"id\":1,"
                  "\"source\":\"/a\"}]}",
             &c) == 0) {
        CHECK(c.model == NULL);
        agent_config_free(&c);
    }

    /* Refusals: a channel the model does not have, a model that is not
     * there or is bad, keys a model would have supplied. */
    BAD_CONFIG(HEAD "\"model\":\"m\",\"firmware_dir\":\"fw\",\"channels\":[{\"id\":4}]}",
               "channels[0]", "\"id\" 4", "\"m\"");
    BAD_CONFIG(HEAD "\"model\":\"m\",\"firmware_dir\":\"fw\",\"channels\":[{\"id\":1},"
                    "{\"id\":0,\"source\":\"/x\"}]}",
               "channels[1]", "\"id\" 0");
    BAD_CONFIG(HEAD "\"model\":\"m\",\"firmware_dir\":\"fw\",\"channels\":[{\"id\":1},{\"id\":1}]}",
               "channels[1]", "id");
    BAD_CONFIG(HEAD "\"model\":\"m\",\"firmware_dir\":\"fw\",\"channels\":[{\"id\":1,"
                    "\"source\":\"\"}]}",
               "channels[0]", "source");
    BAD_CONFIG(HEAD "\"model\":\"m\",\"firmware_dir\":\"fw\",\"channels\":[]}", "channels");
    BAD_CONFIG(HEAD "\"model\":\"nope\",\"firmware_dir\":\"fw\"}", "\"model\"", "fw/nope.json");
    BAD_CONFIG(HEAD "\"model\":\"../m\",\"firmware_dir\":\"fw\"}", "\"model\"");
    BAD_CONFIG(HEAD "\"model\":5}", "\"model\"");
    BAD_CONFIG(HEAD "\"model\":\"m\",\"firmware_dir\":\"\"}", "firmware_dir");
    BAD_CONFIG(HEAD "\"model\":\"m\",\"firmware_dir\":[]}", "firmware_dir");
    BAD_CONFIG(HEAD "\"model\":\"m\",\"firmware_dir\":\"fw\",\"segment_seconds\":0}",
               "segment_seconds");
    BAD_CONFIG(HEAD "\"model\":\"m\",\"firmware_dir\":\"fw\",\"state_dir\":\"\"}", "state_dir");
    BAD_CONFIG(HEAD "\"channels\":[{\"id\":1,\"source\":\"/a\"}]}", "state_dir");
    BAD_CONFIG(HEAD "\"state_dir\":\"/s\"}", "channels");
    BAD_CONFIG(HEAD "\"state_dir\":\"/s\",\"channels\":[{\"id\":1}]}", "channels[0]", "source");

    /* A bad model file: the error names the configuration's key and the
     * model file's key. */
    check_write_file(mpath, "{\"model\":\"m\",\"vendor\":\"V\",\"kind\":\"nvr\",\"channels\":3,"
                            "\"source_template\":\"rtsp://nvr/x\",\"spool_dir\":\"/spool\","
                            "\"spool_max_bytes\":2097152,\"segment_seconds\":6,"
                            "\"budget\":{\"cpu_percent\":20,\"memory_kib\":8192}}");
    BAD_CONFIG(HEAD "\"model\":\"m\",\"firmware_dir\":\"fw\"}", "\"model\"", mpath,
               "source_template");
    unlink(mpath);
    rmdir(sub);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIRMWARE_CONFIGS_DIR\n", argv[0]);
        return 2;
    }
    fw_dir = argv[1];
    snprintf(dir, sizeof(dir), "/tmp/c2d-test-fw-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(cfg_path, sizeof(cfg_path), "%s/agent.json", dir);
    test_shipped();
    test_good_model();
    test_bad_models();
    test_config_model();
    unlink(cfg_path);
    rmdir(dir);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
