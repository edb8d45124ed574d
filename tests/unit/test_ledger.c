/* Unit tests for controller/ledger.c and controller/report.c: records round
 * trip, one-transaction commits with usage, partial records, walks, a
 * read-only handle beside the writer, and the usage/segments output of
 * docs/components.md. Also controller/config.c. */
#include "check.h"
#include "common/c2d_fs.h"
#include "controller/config.h"
#include "controller/ledger.h"
#include "controller/report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHA_1 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char dir[256];

static void key(ctl_seg_key *k, const char *dev, uint16_t ch, int64_t start)
{
    if (ctl_seg_key_set(k, dev, ch, start) != 0)
        abort();
}

static ctl_segment_rec seg_rec(uint64_t size, const char *path)
{
    ctl_segment_rec r;
    memset(&r, 0, sizeof(r));
    r.duration_us = 10010000;
    r.size = size;
    memcpy(r.sha256, SHA_1, 65);
    r.committed_us = 42;
    snprintf(r.path, sizeof(r.path), "%s", path);
    return r;
}

static int count_cb(void *ud, const ctl_seg_key *k, const ctl_segment_rec *r)
{
    (*(int *)ud)++;
    return 0;
}

static int count_part_cb(void *ud, const ctl_seg_key *k, const ctl_partial_rec *r)
{
    (*(int *)ud)++;
    return 0;
}

/* Runs a report into a string. */
static char *report(ctl_ledger *l, int segments, int json)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int rc = segments ? ctl_report_segments(l, f, json) : ctl_report_usage(l, f, json);
    fclose(f);
    CHECK(rc == 0);
    return buf;
}

static void test_ledger(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/ledger.lmdb", dir);
    ctl_ledger *ro = NULL;
    CHECK(ctl_ledger_open(path, 1 << 20, 1, &ro) == -ENOENT); /* not yet created */
    ctl_ledger *l = NULL;
    CHECK(ctl_ledger_open(path, 8 << 20, 0, &l) == 0);
    ctl_ledger_set_open_mode(l, 1); /* no virtual disks here: quota has its own test */
    if (!l)
        return;

    ctl_seg_key a, b, c;
    key(&a, "rec-1", 2, INT64_C(1764480000000000));
    key(&b, "rec-1", 2, INT64_C(1764480010010000));
    key(&c, "rec-10", 0, 0);
    ctl_segment_rec r = seg_rec(1254300, "store/rec-1/2/1764480000000000.ts"), out;
    CHECK(ctl_ledger_get_segment(l, &a, &out) == -ENOENT);

    /* Partial record, then the commit deletes it in the same transaction. */
    ctl_partial_rec pr = {10010000, 1254300, SHA_1, 7}, pout;
    CHECK(ctl_ledger_put_partial(l, &a, &pr) == 0);
    CHECK(ctl_ledger_get_partial(l, &a, &pout) == 0);
    CHECK(pout.size == pr.size && pout.duration_us == pr.duration_us && pout.created_us == 7 &&
          strcmp(pout.sha256, SHA_1) == 0);
    CHECK(ctl_ledger_commit_segment(l, &a, &r) == 0);
    CHECK(ctl_ledger_get_partial(l, &a, &pout) == -ENOENT);
    CHECK(ctl_ledger_get_segment(l, &a, &out) == 0);
    CHECK(out.size == r.size && out.duration_us == r.duration_us && out.committed_us == 42 &&
          strcmp(out.sha256, SHA_1) == 0 && strcmp(out.path, r.path) == 0);
    /* Committing the same key again changes nothing. */
    CHECK(ctl_ledger_commit_segment(l, &a, &r) == -EEXIST);
    ctl_usage_rec u;
    CHECK(ctl_ledger_get_usage(l, "rec-1", 2, &u) == 0);
    CHECK(u.bytes == 1254300 && u.segments == 1);

    ctl_segment_rec r2 = seg_rec(1000, "store/rec-1/2/1764480010010000.ts");
    CHECK(ctl_ledger_commit_segment(l, &b, &r2) == 0);
    ctl_segment_rec r3 = seg_rec(5, "store/rec-10/0/0.ts");
    CHECK(ctl_ledger_commit_segment(l, &c, &r3) == 0);
    CHECK(ctl_ledger_get_usage(l, "rec-1", 2, &u) == 0);
    CHECK(u.bytes == 1255300 && u.segments == 2);
    CHECK(ctl_ledger_get_usage(l, "rec-1", 3, &u) == -ENOENT);

    /* Bad input to the API. */
    ctl_segment_rec bad = r;
    strcpy(bad.sha256, "XYZ");
    CHECK(ctl_ledger_commit_segment(l, &c, &bad) == -EINVAL);
    ctl_seg_key evil = a;
    strcpy(evil.device, "../x");
    CHECK(ctl_ledger_get_segment(l, &evil, &out) == -EINVAL);
    CHECK(ctl_ledger_put_partial(l, &evil, &pr) == -EINVAL);

    /* Partial walks by device: "rec-1" must not see "rec-10". */
    ctl_seg_key p1, p2;
    key(&p1, "rec-1", 0, 5);
    key(&p2, "rec-10", 0, 5);
    CHECK(ctl_ledger_put_partial(l, &p1, &pr) == 0);
    CHECK(ctl_ledger_put_partial(l, &p2, &pr) == 0);
    int n = 0;
    CHECK(ctl_ledger_foreach_partial(l, "rec-1", count_part_cb, &n) == 0);
    CHECK(n == 1);
    n = 0;
    CHECK(ctl_ledger_foreach_partial(l, NULL, count_part_cb, &n) == 0);
    CHECK(n == 2);
    CHECK(ctl_ledger_del_partial(l, &p2) == 0);
    CHECK(ctl_ledger_del_partial(l, &p2) == -ENOENT);

    /* A read-only handle next to the writer sees the commits. */
    CHECK(ctl_ledger_open(path, 1 << 20, 1, &ro) == 0);
    n = 0;
    CHECK(ctl_ledger_foreach_segment(ro, count_cb, &n) == 0);
    CHECK(n == 3);
    CHECK(ctl_ledger_put_partial(ro, &p2, &pr) == -EROFS);

    char *txt = report(ro, 0, 1);
    cJSON *j = cJSON_Parse(txt);
    CHECK(j != NULL);
    const cJSON *cams = cJSON_GetObjectItemCaseSensitive(j, "cameras");
    CHECK(cJSON_GetArraySize(cams) == 2);
    const cJSON *c0 = cJSON_GetArrayItem(cams, 0);
    CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(c0, "device")->valuestring, "rec-1") == 0);
    CHECK(cJSON_GetObjectItemCaseSensitive(c0, "channel")->valuedouble == 2);
    CHECK(cJSON_GetObjectItemCaseSensitive(c0, "bytes")->valuedouble == 1255300);
    CHECK(cJSON_GetObjectItemCaseSensitive(c0, "segments")->valuedouble == 2);
    CHECK(cJSON_GetObjectItemCaseSensitive(j, "total_bytes")->valuedouble == 1255305);
    cJSON_Delete(j);
    free(txt);

    txt = report(ro, 1, 1);
    /* Integers printed exactly, not as 1.76448e+15. */
    CHECK(strstr(txt, "\"start_us\":1764480000000000") != NULL);
    j = cJSON_Parse(txt);
    CHECK(j != NULL);
    const cJSON *segs = cJSON_GetObjectItemCaseSensitive(j, "segments");
    CHECK(cJSON_GetArraySize(segs) == 3);
    const cJSON *s0 = cJSON_GetArrayItem(segs, 0);
    static const char *const keys[] = {"device", "channel", "start_us", "duration_us",
                                       "size",   "sha256",  "path"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        CHECK(cJSON_GetObjectItemCaseSensitive(s0, keys[i]) != NULL);
    CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(s0, "path")->valuestring, r.path) == 0);
    cJSON_Delete(j);
    free(txt);

    txt = report(ro, 0, 0);
    CHECK(strstr(txt, "DEVICE") && strstr(txt, "rec-10") && strstr(txt, "1255305"));
    free(txt);
    txt = report(ro, 1, 0);
    CHECK(strstr(txt, "store/rec-10/0/0.ts") != NULL);
    free(txt);

    /* No ledger at all: empty reports that still parse. */
    txt = report(NULL, 0, 1);
    CHECK(strcmp(txt, "{\"cameras\":[],\"total_bytes\":0}\n") == 0);
    free(txt);
    txt = report(NULL, 1, 1);
    CHECK(strcmp(txt, "{\"segments\":[]}\n") == 0);
    free(txt);

    ctl_ledger_free(ro);
    ctl_ledger_free(l);
    ctl_ledger_free(NULL);
}

static void test_map_full(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/small.lmdb", dir);
    ctl_ledger *l = NULL;
    CHECK(ctl_ledger_open(path, 1 << 20, 0, &l) == 0);
    ctl_ledger_set_open_mode(l, 1);
    if (!l)
        return;
    int rc = 0;
    for (int i = 0; i < 100000 && rc == 0; i++) {
        ctl_seg_key k;
        key(&k, "rec-full", 0, i);
        ctl_segment_rec r = seg_rec(1, "store/rec-full/0/x.ts");
        rc = ctl_ledger_commit_segment(l, &k, &r);
    }
    CHECK(rc == -ENOSPC);
    ctl_ledger_free(l);
}

static int write_cfg(const char *name, const char *text, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
    return c2d_write_file_atomic(path, text, strlen(text), 0644);
}

static void test_config(void)
{
    char p[512], err[C2D_ERRMSG_MAX];
    ctl_config c;
    CHECK(write_cfg("c1.json",
                    "{\"broker\":{\"ca_file\":\"ca.crt\",\"cert_file\":\"/abs/c.crt\","
                    "\"key_file\":\"k.key\"},\"data_dir\":\"data\"}",
                    p, sizeof(p)) == 0);
    CHECK(ctl_config_load(p, &c, err, sizeof(err)) == 0);
    char base[512];
    CHECK(realpath(dir, base) != NULL);
    char want[600];
    snprintf(want, sizeof(want), "%s/data", base);
    CHECK(strcmp(c.data_dir, want) == 0);
    snprintf(want, sizeof(want), "%s/ca.crt", base);
    CHECK(strcmp(c.broker.ca_file, want) == 0);
    CHECK(strcmp(c.broker.cert_file, "/abs/c.crt") == 0);
    CHECK(c.max_segment_bytes == 268435456 && c.max_channels == 64 &&
          c.ledger_map_bytes == 1073741824 && c.broker.port == 8883);
    CHECK(c.broker.client_id == NULL); /* daemon uses CTL_DEFAULT_CLIENT_ID */
    ctl_config_free(&c);

    CHECK(write_cfg("c2.json",
                    "{\"broker\":{\"ca_file\":\"a\",\"cert_file\":\"b\",\"key_file\":\"c\"},"
                    "\"max_channel\":3}",
                    p, sizeof(p)) == 0);
    CHECK(ctl_config_load(p, &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "c2.json") && strstr(err, "max_channel"));
    CHECK(write_cfg("c3.json",
                    "{\"broker\":{\"ca_file\":\"a\",\"cert_file\":\"b\",\"key_file\":\"c\"},"
                    "\"max_channels\":0}",
                    p, sizeof(p)) == 0);
    CHECK(ctl_config_load(p, &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "max_channels") != NULL);
    CHECK(write_cfg("c4.json", "{\"data_dir\":\"/x\"}", p, sizeof(p)) == 0);
    CHECK(ctl_config_load(p, &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "broker") != NULL);
    CHECK(write_cfg("c5.json", "{\"broker\":{\"ca_file\":\"a\",\"cert_file\":\"b\"}}", p,
                    sizeof(p)) == 0);
    CHECK(ctl_config_load(p, &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "key_file") != NULL);
    /* The optional http object: defaults, and errors naming its keys. */
    CHECK(c.http.enabled == 0);
    CHECK(write_cfg("c6.json",
                    "{\"broker\":{\"ca_file\":\"a\",\"cert_file\":\"b\",\"key_file\":\"c\"},"
                    "\"http\":{\"port\":0}}",
                    p, sizeof(p)) == 0);
    CHECK(ctl_config_load(p, &c, err, sizeof(err)) == 0);
    CHECK(c.http.enabled == 1 && strcmp(c.http.listen, "127.0.0.1") == 0 && c.http.port == 0 &&
          c.http.body_max == 65536 && c.http.session_idle_s == 1800 &&
          c.http.session_max_s == 43200);
    ctl_config_free(&c);
    CHECK(write_cfg("c7.json",
                    "{\"broker\":{\"ca_file\":\"a\",\"cert_file\":\"b\",\"key_file\":\"c\"},"
                    "\"http\":{\"port\":70000}}",
                    p, sizeof(p)) == 0);
    CHECK(ctl_config_load(p, &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "http") && strstr(err, "port"));
    CHECK(write_cfg("c8.json",
                    "{\"broker\":{\"ca_file\":\"a\",\"cert_file\":\"b\",\"key_file\":\"c\"},"
                    "\"http\":{\"listen\":\"\",\"tls\":1}}",
                    p, sizeof(p)) == 0);
    CHECK(ctl_config_load(p, &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "tls") != NULL);
    CHECK(write_cfg("c9.json",
                    "{\"broker\":{\"ca_file\":\"a\",\"cert_file\":\"b\",\"key_file\":\"c\"},"
                    "\"http\":[]}",
                    p, sizeof(p)) == 0);
    CHECK(ctl_config_load(p, &c, err, sizeof(err)) == -1);
    CHECK(strstr(err, "http") != NULL);
    ctl_config_free(NULL);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/test_ledger.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_ledger();
    test_map_full();
    test_config();
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (failures) {
        fprintf(stderr, "test_ledger: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_ledger: ok\n");
    return 0;
}
