/* Allocation-failure runs for the parsers (curl's torture mode): for every
 * N, make the Nth allocation fail and check that the operation fails
 * cleanly, with no crash and nothing leaked.
 *
 * Allocations are counted in two places: cJSON's, through cJSON_InitHooks,
 * and ours (proto/ and common/ are linked statically), through the linker's
 * --wrap=malloc,free,strdup (see tests/unit/meson.build). A live-allocation
 * count catches leaks without a sanitizer; under ASan, LSan checks too. */
#include "common/c2d_config.h"
#include "common/c2d_fs.h"
#include "proto/c2d_proto.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void *__real_malloc(size_t n);
void __real_free(void *p);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void __wrap_free(void *p);
char *__wrap_strdup(const char *s);

static long fail_at;  /* 1-based index of the allocation to fail; 0 = none */
static long n_allocs; /* allocations attempted since the last reset */
static long live;     /* successful allocations not yet freed */
static int injected;  /* the failure was injected in this run */

static int should_fail(void)
{
    n_allocs++;
    if (fail_at && n_allocs == fail_at) {
        injected = 1;
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    void *p = __real_malloc(n);
    if (p)
        live++;
    return p;
}

void __wrap_free(void *p)
{
    if (p)
        live--;
    __real_free(p);
}

char *__wrap_strdup(const char *s)
{
    if (should_fail())
        return NULL;
    char *p = __real_strdup(s);
    if (p)
        live++;
    return p;
}

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s (failing allocation %ld)\n", __FILE__,        \
                    __LINE__, #cond, fail_at);                                                     \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* An operation under test: returns 1 if it succeeded, 0 if it reported an
 * error. It must release everything it allocated either way. */
typedef int (*op_fn)(const void *arg);

/* Runs op with allocation N failing, for N = 1, 2, ... until a run makes
 * no more than N-1 allocations (all of them succeeded). Returns the number
 * of allocations of a clean run. */
static long torture(const char *name, op_fn op, const void *arg, int must_succeed)
{
    fail_at = 0;
    n_allocs = 0;
    live = 0;
    int ok = op(arg);
    long clean = n_allocs;
    CHECK(live == 0);
    if (must_succeed && !ok) {
        fprintf(stderr, "%s: fails even without injected failures\n", name);
        failures++;
        return 0;
    }
    for (fail_at = 1;; fail_at++) {
        n_allocs = 0;
        live = 0;
        injected = 0;
        int r = op(arg);
        if (live != 0) {
            fprintf(stderr, "%s: %ld allocation(s) leaked when allocation %ld failed\n", name, live,
                    fail_at);
            failures++;
        }
        if (!injected)
            break;
        /* A failed allocation must be reported, unless the operation could
         * do without it (none of ours can). */
        if (r && must_succeed) {
            fprintf(stderr, "%s: succeeded although allocation %ld failed\n", name, fail_at);
            failures++;
        }
    }
    fail_at = 0;
    return clean;
}

/* ---- Messages ---------------------------------------------------------- */

static int op_decode(const void *arg)
{
    const char *json = arg;
    c2d_msg m;
    return c2d_msg_decode(json, strlen(json), &m) == C2D_OK;
}

static int op_decode_any(const void *arg)
{
    op_decode(arg);
    return 1;
}

static int op_encode(const void *arg)
{
    const c2d_msg *m = arg;
    char *s = c2d_msg_encode(m);
    if (!s)
        return 0;
    c2d_msg back;
    int ok = c2d_msg_decode(s, strlen(s), &back) == C2D_OK;
    free(s);
    return ok;
}

/* ---- Config ------------------------------------------------------------ */

typedef struct {
    char *a, *b, *c;
    int64_t n;
    int flag;
} sample_cfg;

#define SF(key, type, field, req, min, max, di, ds)                                                \
    {                                                                                              \
        key, type, offsetof(sample_cfg, field), req, min, max, di, ds                              \
    }
static const c2d_cfg_field sample_fields[] = {
    SF("a", C2D_CFG_STRING, a, 1, 0, 0, 0, NULL),
    SF("b", C2D_CFG_STRING, b, 0, 0, 0, 0, "default-b"),
    SF("c", C2D_CFG_STRING, c, 0, 0, 0, 0, "default-c"),
    SF("n", C2D_CFG_INT, n, 0, 0, 100, 7, NULL),
    SF("flag", C2D_CFG_BOOL, flag, 0, 0, 0, 0, NULL),
    SF("broker", C2D_CFG_SKIP, a, 0, 0, 0, 0, NULL),
};
#define N_SAMPLE (sizeof(sample_fields) / sizeof(sample_fields[0]))

/* The whole path a program takes: read and parse the file, apply the
 * table, load the broker object, free it all. */
static int op_config_file(const void *arg)
{
    const char *path = arg;
    char err[C2D_ERRMSG_MAX];
    cJSON *root = c2d_cfg_parse_file(path, err, sizeof(err));
    if (!root)
        return 0;
    sample_cfg c;
    memset(&c, 0, sizeof(c));
    int ok = c2d_cfg_apply(root, "t.json", sample_fields, N_SAMPLE, &c, err, sizeof(err)) == 0;
    c2d_cfg_free_strings(sample_fields, N_SAMPLE, &c);
    if (ok) {
        c2d_broker_cfg b;
        ok = c2d_broker_cfg_load(cJSON_GetObjectItemCaseSensitive(root, "broker"), "t.json", &b,
                                 err, sizeof(err)) == 0;
        if (ok)
            c2d_broker_cfg_free(&b);
    }
    cJSON_Delete(root);
    return ok;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    cJSON_Hooks hooks = {.malloc_fn = __wrap_malloc, .free_fn = __wrap_free};
    cJSON_InitHooks(&hooks);

    static const char *const good[] = {
        "{\"v\":1,\"t\":\"begin\",\"ch\":2,\"start\":1764480000000000,\"dur\":10010000,"
        "\"size\":1254300,\"sha256\":"
        "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}",
        "{\"v\":1,\"t\":\"end\",\"ch\":2,\"start\":1764480000000000}",
        "{\"v\":1,\"t\":\"ack\",\"ch\":2,\"start\":1764480000000000,\"status\":\"rejected\","
        "\"offset\":0,\"reason\":\"hash_mismatch\"}",
        "{\"v\":1,\"t\":\"ack\",\"ch\":2,\"start\":1,\"status\":\"offset\",\"offset\":524288,"
        "\"extra\":{\"nested\":[1,2,{\"x\":\"y\"}],\"s\":\"\\u00e9\\n\"}}",
    };
    static const char *const bad[] = {
        "{\"v\":2,\"t\":\"begin\"}",
        "{\"v\":1,\"t\":\"begin\",\"ch\":2,\"start\":1,\"dur\":1,\"size\":1,\"sha256\":\"XY\"}",
        "{\"v\":1,\"t\":\"end\",\"ch\":2,\"start\":1,\"a\":[1,2,3",
        "[{\"a\":1},{\"b\":[true,false,null]}]",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        long n = torture("decode", op_decode, good[i], 1);
        CHECK(n > 0);
        c2d_msg m;
        if (c2d_msg_decode(good[i], strlen(good[i]), &m) == C2D_OK)
            torture("encode", op_encode, &m, 1);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        torture("decode (invalid)", op_decode_any, bad[i], 0);

    const char *base = getenv("TMPDIR");
    char tmpl[256];
    snprintf(tmpl, sizeof(tmpl), "%s/test_alloc.XXXXXX", base && *base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    if (!d) {
        perror("mkdtemp");
        return 1;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/t.json", d);
    const char *cfg =
        "{\n \"a\": \"alpha\", \"c\": \"gamma\", \"n\": 42, \"flag\": true,\n"
        " \"broker\": {\"host\": \"mq\", \"ca_file\": \"ca.pem\",\n"
        "  \"cert_file\": \"c.pem\", \"key_file\": \"k.pem\", \"client_id\": \"x\"}\n}\n";
    if (c2d_write_file_atomic(path, cfg, strlen(cfg), 0644) != 0) {
        perror("write");
        return 1;
    }
    long n = torture("config", op_config_file, path, 1);
    CHECK(n > 10);
    const char *bad_cfg = "{\"a\": \"alpha\", \"b\": \"beta\", \"n\": 101}";
    if (c2d_write_file_atomic(path, bad_cfg, strlen(bad_cfg), 0644) != 0)
        return 1;
    torture("config (invalid)", op_config_file, path, 0);
    nftw(d, rm_one, 8, FTW_DEPTH | FTW_PHYS);

    if (failures) {
        fprintf(stderr, "test_alloc: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_alloc: ok\n");
    return 0;
}
