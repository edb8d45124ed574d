/* Unit tests for common/: table-driven config, broker config, fs, sha256. */
#include "check.h"
#include "common/c2d_config.h"
#include "common/c2d_fs.h"
#include "common/c2d_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* err must contain every one of the NULL-terminated needles. */
static int contains_all(const char *err, ...)
{
    va_list ap;
    va_start(ap, err);
    int ok = 1;
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(err, s))
            ok = 0;
    va_end(ap);
    return ok;
}

#define CHECK_ERR(err, ...)                                                                        \
    do {                                                                                           \
        if (!contains_all((err), __VA_ARGS__, (const char *)NULL)) {                               \
            fprintf(stderr, "%s:%d: unexpected error text: \"%s\"\n", __FILE__, __LINE__, (err));  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static char tmpdir[256];

static void tmp_path(char *out, size_t len, const char *name)
{
    if (c2d_path_join(out, len, tmpdir, name) != 0)
        abort();
}

static void write_text(const char *name, const char *text)
{
    char p[512];
    tmp_path(p, sizeof(p), name);
    if (c2d_write_file_atomic(p, text, strlen(text), 0644) != 0)
        abort();
}

/* ---- Table-driven config ----------------------------------------------- */

typedef struct {
    char *name;
    char *mode;
    int64_t count;
    int64_t offset;
    int64_t wide;
    int enabled;
    int verbose;
} sample_cfg;

#define SF(key, type, field, req, min, max, di, ds)                                                \
    {                                                                                              \
        key, type, offsetof(sample_cfg, field), req, min, max, di, ds                              \
    }
static const c2d_cfg_field sample_fields[] = {
    SF("name", C2D_CFG_STRING, name, 1, 0, 0, 0, NULL),
    SF("mode", C2D_CFG_STRING, mode, 0, 0, 0, 0, "auto"),
    SF("count", C2D_CFG_INT, count, 0, 1, 10, 4, NULL),
    SF("offset", C2D_CFG_INT, offset, 0, -100, -1, -50, NULL),
    SF("wide", C2D_CFG_INT, wide, 0, INT64_MIN, INT64_MAX, 0, NULL),
    SF("enabled", C2D_CFG_BOOL, enabled, 0, 0, 0, 1, NULL),
    SF("verbose", C2D_CFG_BOOL, verbose, 0, 0, 0, 0, NULL),
    SF("extra", C2D_CFG_SKIP, name, 0, 0, 0, 0, NULL),
};
#define N_SAMPLE (sizeof(sample_fields) / sizeof(sample_fields[0]))

/* Applies json to a zeroed sample_cfg; returns the loader's result and
 * leaves err filled. The strings are freed unless keep is given. */
static int apply(const char *json, sample_cfg *keep, char *err, size_t errlen)
{
    cJSON *o = cJSON_Parse(json);
    if (!o) {
        fprintf(stderr, "bad test JSON: %s\n", json);
        abort();
    }
    sample_cfg c;
    memset(&c, 0, sizeof(c));
    err[0] = '\0';
    int rc = c2d_cfg_apply(o, "test.json", sample_fields, N_SAMPLE, &c, err, errlen);
    cJSON_Delete(o);
    if (keep)
        *keep = c;
    else
        c2d_cfg_free_strings(sample_fields, N_SAMPLE, &c);
    return rc;
}

static void test_cfg_defaults(void)
{
    char err[C2D_ERRMSG_MAX];
    sample_cfg c;
    CHECK(apply("{\"name\":\"cam\"}", &c, err, sizeof(err)) == 0);
    CHECK(c.name && strcmp(c.name, "cam") == 0);
    CHECK(c.mode && strcmp(c.mode, "auto") == 0);
    CHECK(c.count == 4 && c.offset == -50 && c.wide == 0);
    CHECK(c.enabled == 1 && c.verbose == 0);
    c2d_cfg_free_strings(sample_fields, N_SAMPLE, &c);
    CHECK(c.name == NULL && c.mode == NULL);

    CHECK(apply("{\"name\":\"\",\"mode\":\"x\",\"count\":10,\"offset\":-100,"
                "\"wide\":-9223372036854775808,\"enabled\":false,\"verbose\":true,"
                "\"extra\":{\"anything\":[1,2]}}",
                &c, err, sizeof(err)) == 0);
    CHECK(c.name && c.name[0] == '\0');
    CHECK(c.mode && strcmp(c.mode, "x") == 0);
    CHECK(c.count == 10 && c.offset == -100 && c.wide == INT64_MIN);
    CHECK(c.enabled == 0 && c.verbose == 1);
    c2d_cfg_free_strings(sample_fields, N_SAMPLE, &c);

    CHECK(apply("{\"name\":\"a\",\"count\":1.0,\"offset\":-1,\"wide\":9007199254740992}", &c, err,
                sizeof(err)) == 0);
    CHECK(c.count == 1 && c.offset == -1 && c.wide == 9007199254740992);
    c2d_cfg_free_strings(sample_fields, N_SAMPLE, &c);
}

static void test_cfg_errors(void)
{
    char err[C2D_ERRMSG_MAX];

    /* Unknown keys are named, with where they are. */
    CHECK(apply("{\"name\":\"a\",\"colour\":1}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "test.json", "unknown key", "\"colour\"");
    CHECK(apply("{\"Name\":\"a\"}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "unknown key \"Name\"");

    /* Missing required keys. */
    CHECK(apply("{}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "test.json", "missing required key \"name\"");

    /* Wrong types. */
    CHECK(apply("{\"name\":5}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"name\"", "must be a string");
    CHECK(apply("{\"name\":null}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"name\"", "must be a string");
    CHECK(apply("{\"name\":\"a\",\"count\":\"3\"}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"count\"", "must be an integer");
    CHECK(apply("{\"name\":\"a\",\"count\":2.5}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"count\"", "must be an integer");
    CHECK(apply("{\"name\":\"a\",\"count\":true}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"count\"", "must be an integer");
    CHECK(apply("{\"name\":\"a\",\"enabled\":1}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"enabled\"", "true or false");
    CHECK(apply("{\"name\":\"a\",\"enabled\":\"yes\"}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"enabled\"", "true or false");

    /* Range errors say the value and the range. */
    CHECK(apply("{\"name\":\"a\",\"count\":0}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"count\" is 0", "1..10");
    CHECK(apply("{\"name\":\"a\",\"count\":11}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"count\" is 11", "1..10");
    CHECK(apply("{\"name\":\"a\",\"offset\":0}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"offset\" is 0", "-100..-1");
    /* Values no int64_t can hold are range errors, not undefined casts. */
    CHECK(apply("{\"name\":\"a\",\"count\":1e300}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"count\"", "1..10");
    CHECK(apply("{\"name\":\"a\",\"count\":-1e300}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"count\"", "1..10");
    CHECK(apply("{\"name\":\"a\",\"count\":1e400}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"count\"");
    CHECK(apply("{\"name\":\"a\",\"wide\":9223372036854775808}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"wide\"");
    CHECK(apply("{\"name\":\"a\",\"wide\":-9223372036854777856}", NULL, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"wide\"");

    /* Not an object. */
    cJSON *arr = cJSON_Parse("[1]");
    sample_cfg c;
    memset(&c, 0, sizeof(c));
    CHECK(c2d_cfg_apply(arr, "x.json: list", sample_fields, N_SAMPLE, &c, err, sizeof(err)) == -1);
    CHECK_ERR(err, "x.json: list", "must be a JSON object");
    CHECK(c2d_cfg_apply(NULL, "x.json", sample_fields, N_SAMPLE, &c, err, sizeof(err)) == -1);
    cJSON_Delete(arr);

    /* A short error buffer is truncated, never overrun. */
    char small[8];
    CHECK(apply("{\"name\":\"a\",\"colour\":1}", NULL, small, sizeof(small)) == -1);
    CHECK(strlen(small) == sizeof(small) - 1);
}

static void test_cfg_file(void)
{
    char err[C2D_ERRMSG_MAX], p[512];
    cJSON *root;

    write_text("good.json", "{\n  \"name\": \"cam\",\n  \"count\": 3\n}\n");
    tmp_path(p, sizeof(p), "good.json");
    root = c2d_cfg_parse_file(p, err, sizeof(err));
    CHECK(root != NULL);
    CHECK(cJSON_GetObjectItemCaseSensitive(root, "count") != NULL);
    cJSON_Delete(root);

    /* Syntax errors name the file and the line. */
    write_text("syntax.json", "{\n  \"name\": \"cam\",\n  \"count\": 3,\n}\n");
    tmp_path(p, sizeof(p), "syntax.json");
    CHECK(c2d_cfg_parse_file(p, err, sizeof(err)) == NULL);
    CHECK_ERR(err, p, "invalid JSON", "line 4");

    /* Anything after the object is refused. */
    write_text("trailing.json", "{\"name\":\"cam\"}\n{\"name\":\"other\"}\n");
    tmp_path(p, sizeof(p), "trailing.json");
    CHECK(c2d_cfg_parse_file(p, err, sizeof(err)) == NULL);
    CHECK_ERR(err, p, "invalid JSON", "line 2");
    write_text("trailing2.json", "{\"name\":\"cam\"} x");
    tmp_path(p, sizeof(p), "trailing2.json");
    CHECK(c2d_cfg_parse_file(p, err, sizeof(err)) == NULL);
    write_text("ws.json", "\n\t {\"name\":\"cam\"} \n\n");
    tmp_path(p, sizeof(p), "ws.json");
    root = c2d_cfg_parse_file(p, err, sizeof(err));
    CHECK(root != NULL);
    cJSON_Delete(root);

    /* NUL bytes. */
    tmp_path(p, sizeof(p), "nul.json");
    CHECK(c2d_write_file_atomic(p, "{}\0{}", 5, 0644) == 0);
    CHECK(c2d_cfg_parse_file(p, err, sizeof(err)) == NULL);
    CHECK_ERR(err, p, "NUL");

    /* Top level must be an object. */
    write_text("array.json", "[]");
    tmp_path(p, sizeof(p), "array.json");
    CHECK(c2d_cfg_parse_file(p, err, sizeof(err)) == NULL);
    CHECK_ERR(err, p, "must be a JSON object");

    write_text("empty.json", "");
    tmp_path(p, sizeof(p), "empty.json");
    CHECK(c2d_cfg_parse_file(p, err, sizeof(err)) == NULL);
    CHECK_ERR(err, p, "invalid JSON");

    tmp_path(p, sizeof(p), "missing.json");
    CHECK(c2d_cfg_parse_file(p, err, sizeof(err)) == NULL);
    CHECK_ERR(err, p, "cannot read", strerror(ENOENT));

    /* Over 1 MiB. */
    size_t big_len = (1u << 20) + 1;
    char *big = malloc(big_len);
    memset(big, ' ', big_len);
    big[0] = '{';
    big[big_len - 1] = '}';
    tmp_path(p, sizeof(p), "big.json");
    CHECK(c2d_write_file_atomic(p, big, big_len, 0644) == 0);
    free(big);
    CHECK(c2d_cfg_parse_file(p, err, sizeof(err)) == NULL);
    CHECK_ERR(err, p, "cannot read");
}

/* ---- Broker config ----------------------------------------------------- */

static int broker(const char *json, c2d_broker_cfg *b, char *err, size_t errlen)
{
    cJSON *root = cJSON_Parse(json);
    if (!root)
        abort();
    int rc = c2d_broker_cfg_load(cJSON_GetObjectItemCaseSensitive(root, "broker"), "agent.json", b,
                                 err, errlen);
    cJSON_Delete(root);
    return rc;
}

static void test_broker_cfg(void)
{
    char err[C2D_ERRMSG_MAX];
    c2d_broker_cfg b;

    CHECK(broker("{\"broker\":{\"ca_file\":\"ca.pem\",\"cert_file\":\"c.pem\","
                 "\"key_file\":\"k.pem\"}}",
                 &b, err, sizeof(err)) == 0);
    CHECK(b.host && strcmp(b.host, "127.0.0.1") == 0);
    CHECK(b.port == 8883 && b.keepalive_s == 30);
    CHECK(strcmp(b.ca_file, "ca.pem") == 0 && strcmp(b.cert_file, "c.pem") == 0 &&
          strcmp(b.key_file, "k.pem") == 0);
    CHECK(b.client_id == NULL);
    c2d_broker_cfg_free(&b);
    CHECK(b.host == NULL && b.ca_file == NULL);
    c2d_broker_cfg_free(&b); /* twice is harmless */
    c2d_broker_cfg_free(NULL);

    CHECK(broker("{\"broker\":{\"host\":\"mq.example\",\"port\":1,\"ca_file\":\"a\","
                 "\"cert_file\":\"b\",\"key_file\":\"c\",\"keepalive_s\":3600,"
                 "\"client_id\":\"rec-1\"}}",
                 &b, err, sizeof(err)) == 0);
    CHECK(strcmp(b.host, "mq.example") == 0 && b.port == 1 && b.keepalive_s == 3600);
    CHECK(strcmp(b.client_id, "rec-1") == 0);
    c2d_broker_cfg_free(&b);

    /* Failures leave out untouched and free what they allocated. */
    memset(&b, 0x33, sizeof(b));
    CHECK(broker("{}", &b, err, sizeof(err)) == -1);
    CHECK_ERR(err, "agent.json", "missing required key \"broker\"");
    CHECK(broker("{\"broker\":{\"cert_file\":\"b\",\"key_file\":\"c\"}}", &b, err, sizeof(err)) ==
          -1);
    CHECK_ERR(err, "agent.json: broker", "\"ca_file\"");
    CHECK(broker("{\"broker\":{\"ca_file\":\"a\",\"cert_file\":\"b\",\"key_file\":\"c\","
                 "\"port\":65536}}",
                 &b, err, sizeof(err)) == -1);
    CHECK_ERR(err, "agent.json: broker", "\"port\" is 65536", "1..65535");
    CHECK(broker("{\"broker\":{\"ca_file\":\"a\",\"cert_file\":\"b\",\"key_file\":\"c\","
                 "\"port\":0}}",
                 &b, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"port\" is 0");
    CHECK(broker("{\"broker\":{\"ca_file\":\"a\",\"cert_file\":\"b\",\"key_file\":\"c\","
                 "\"keepalive_s\":4}}",
                 &b, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"keepalive_s\" is 4", "5..3600");
    CHECK(broker("{\"broker\":{\"ca_file\":\"a\",\"cert_file\":\"b\",\"key_file\":\"c\","
                 "\"hots\":\"x\"}}",
                 &b, err, sizeof(err)) == -1);
    CHECK_ERR(err, "agent.json: broker", "unknown key \"hots\"");
    CHECK(broker("{\"broker\":{\"ca_file\":\"a\",\"cert_file\":\"b\",\"key_file\":\"c\","
                 "\"client_id\":7}}",
                 &b, err, sizeof(err)) == -1);
    CHECK_ERR(err, "\"client_id\"", "must be a string");
    CHECK(broker("{\"broker\":\"mq:8883\"}", &b, err, sizeof(err)) == -1);
    CHECK_ERR(err, "agent.json: broker", "must be a JSON object");
    unsigned char *raw = (unsigned char *)&b;
    int untouched = 1;
    for (size_t i = 0; i < sizeof(b); i++)
        untouched &= raw[i] == 0x33;
    CHECK(untouched);
}

/* ---- File system ------------------------------------------------------- */

static void test_fs(void)
{
    char p[512], q[1024];
    char *buf = NULL;
    size_t len = 0;

    /* Atomic write creates, then replaces, and leaves no temp file. */
    tmp_path(p, sizeof(p), "atomic.bin");
    CHECK(c2d_write_file_atomic(p, "first version", 13, 0600) == 0);
    CHECK(c2d_read_file(p, 100, &buf, &len) == 0);
    CHECK(len == 13 && memcmp(buf, "first version", 13) == 0 && buf[13] == '\0');
    free(buf);
    struct stat st;
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(c2d_write_file_atomic(p, "2nd", 3, 0600) == 0);
    CHECK(c2d_read_file(p, 100, &buf, &len) == 0);
    CHECK(len == 3 && strcmp(buf, "2nd") == 0);
    free(buf);
    snprintf(q, sizeof(q), "%s.tmp", p);
    CHECK(access(q, F_OK) != 0 && errno == ENOENT);

    /* Empty file. */
    CHECK(c2d_write_file_atomic(p, "", 0, 0644) == 0);
    CHECK(c2d_read_file(p, 0, &buf, NULL) == 0);
    CHECK(buf && buf[0] == '\0');
    free(buf);

    /* A write that cannot happen leaves the old file and no temp file. */
    tmp_path(p, sizeof(p), "nodir/x.bin");
    CHECK(c2d_write_file_atomic(p, "x", 1, 0644) == -ENOENT);
    tmp_path(p, sizeof(p), "atomic.bin");
    CHECK(c2d_mkdirs(q, 0755) == 0); /* a directory squats the temp name */
    CHECK(c2d_write_file_atomic(p, "third", 5, 0644) == -EISDIR);
    CHECK(c2d_read_file(p, 100, &buf, &len) == 0 && len == 0);
    free(buf);
    CHECK(rmdir(q) == 0);

    /* Read limits and errors; outputs untouched on failure. */
    CHECK(c2d_write_file_atomic(p, "0123456789", 10, 0644) == 0);
    buf = (char *)p;
    len = 77;
    CHECK(c2d_read_file(p, 9, &buf, &len) == -EFBIG);
    CHECK(buf == (char *)p && len == 77);
    CHECK(c2d_read_file(p, 10, &buf, &len) == 0 && len == 10);
    free(buf);
    tmp_path(q, sizeof(q), "absent");
    CHECK(c2d_read_file(q, 10, &buf, &len) == -ENOENT);

    /* mkdir -p: nested, existing, trailing slash, over a file. */
    tmp_path(q, sizeof(q), "a/b/c");
    CHECK(c2d_mkdirs(q, 0755) == 0);
    CHECK(stat(q, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(c2d_mkdirs(q, 0755) == 0);
    tmp_path(q, sizeof(q), "a/b/d/");
    CHECK(c2d_mkdirs(q, 0755) == 0);
    CHECK(c2d_mkdirs(p, 0755) == -ENOTDIR);
    snprintf(q, sizeof(q), "%s/sub", p);
    CHECK(c2d_mkdirs(q, 0755) == -ENOTDIR);
    CHECK(c2d_mkdirs("", 0755) == -ENAMETOOLONG);

    CHECK(c2d_fsync_dir(tmpdir) == 0);
    CHECK(c2d_fsync_parent(p) == 0);
    CHECK(c2d_fsync_dir(p) == -ENOTDIR);

    /* write_all on a pipe larger than one write. */
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK(c2d_write_all(fds[1], "hello", 5) == 0);
    char r[8] = "";
    CHECK(read(fds[0], r, sizeof(r)) == 5 && memcmp(r, "hello", 5) == 0);
    close(fds[0]);
    CHECK(c2d_write_all(fds[1], "x", 1) == -EPIPE);
    close(fds[1]);

    char j[8];
    CHECK(c2d_path_join(j, sizeof(j), "ab", "cde") == 0 && strcmp(j, "ab/cde") == 0);
    CHECK(c2d_path_join(j, sizeof(j), "ab", "cdefg") == -ENAMETOOLONG);
}

/* ---- SHA-256 ----------------------------------------------------------- */

static void hex_of(const void *data, size_t len, char hex[65])
{
    c2d_sha256 h;
    c2d_sha256_init(&h);
    c2d_sha256_update(&h, data, len);
    c2d_sha256_final_hex(&h, hex);
}

static void test_sha256(void)
{
    char hex[65];
    /* FIPS 180-2 test vectors. */
    hex_of("", 0, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    hex_of("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(two, strlen(two), hex);
    CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);

    /* One million 'a', fed in uneven pieces. */
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    c2d_sha256 h;
    c2d_sha256_init(&h);
    size_t done = 0;
    for (size_t step = 1; done < 1000000; step = step * 3 + 1) {
        size_t n = step < 1000000 - done ? step : 1000000 - done;
        c2d_sha256_update(&h, a + done, n);
        done += n;
    }
    c2d_sha256_final_hex(&h, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);

    /* Files: whole, a prefix, a prefix longer than the file. */
    char p[512];
    tmp_path(p, sizeof(p), "million.a");
    CHECK(c2d_write_file_atomic(p, a, 1000000, 0644) == 0);
    free(a);
    CHECK(c2d_sha256_file_hex(p, hex) == 0);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
    c2d_sha256_init(&h);
    CHECK(c2d_sha256_file(p, 3, &h) == 0);
    c2d_sha256_final_hex(&h, hex);
    CHECK(strcmp(hex, "9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0") == 0);
    c2d_sha256_init(&h);
    CHECK(c2d_sha256_file(p, 1000001, &h) == -EIO);
    c2d_sha256_discard(&h);
    c2d_sha256_init(&h);
    CHECK(c2d_sha256_file(p, 0, &h) == 0);
    c2d_sha256_final_hex(&h, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    tmp_path(p, sizeof(p), "absent");
    CHECK(c2d_sha256_file_hex(p, hex) == -ENOENT);
}

/* ---- Temp dir ---------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_rf(const char *path)
{
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "could not remove %s\n", path);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_common.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_cfg_defaults();
    test_cfg_errors();
    test_cfg_file();
    test_broker_cfg();
    test_fs();
    test_sha256();
    rm_rf(tmpdir);
    if (failures) {
        fprintf(stderr, "test_common: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_common: ok\n");
    return 0;
}
