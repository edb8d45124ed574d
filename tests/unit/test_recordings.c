/* Unit tests for controller/recordings.c (and the ledger's ranged walk)
 * with a real ledger in a temp dir: overlap at the range's start, order,
 * other cameras left out, pages, the retention cutoff, gaps and the HLS
 * playlist text. */
#include "check.h"
#include "ledger_fixture.h"
#include "controller/ledger.h"
#include "controller/recordings.h"

#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S 1000000                    /* one second in µs */
#define T0 (INT64_C(1764489600) * S) /* 2025-11-30T08:00:00Z */

static char dir[LEDGER_FIXTURE_DIR_MAX];
static ctl_ledger *led;

static void commit(const char *dev, uint16_t ch, int64_t start, int64_t dur)
{
    ledger_fixture_commit(led, dev, ch, start, dur);
}

static int64_t cutoff_at;
static int cutoff_calls;

static int64_t cutoff(void *ud, const char *device, uint16_t ch)
{
    (void)ud;
    cutoff_calls++;
    CHECK(strcmp(device, "cam-b") == 0 && ch == 2);
    return cutoff_at;
}

static ctl_rec_list query(int64_t from, int64_t to, int64_t after, size_t max)
{
    ctl_rec_range r = {.device = "cam-b",
                       .channel = 2,
                       .from_us = from,
                       .to_us = to,
                       .after_us = after,
                       .max = max,
                       .cutoff = cutoff_at ? cutoff : NULL};
    ctl_rec_list l;
    CHECK(ctl_rec_query(led, NULL, &r, &l) == 0);
    return l;
}

static void test_query(void)
{
    /* Neighbours in key order on both sides: other device, other channel. */
    commit("cam-a", 2, T0, 10 * S);
    commit("cam-b", 1, T0, 10 * S);
    commit("cam-b", 3, T0, 10 * S);
    commit("cam-c", 2, T0 - 100 * S, 10 * S);
    /* cam-b/2: 0-10, 10-20, 20-30, gap, 40-50, 50-60 (s after T0). */
    int64_t starts[] = {0, 10, 20, 40, 50};
    for (size_t i = 0; i < 5; i++)
        commit("cam-b", 2, T0 + starts[i] * S, 10 * S);

    ctl_rec_list l = query(T0 + 15 * S, T0 + 45 * S, 0, 100);
    CHECK(l.n == 3 && !l.more); /* 10 (runs into 15), 20, 40 */
    if (l.n == 3) {
        CHECK(l.v[0].start_us == T0 + 10 * S && l.v[1].start_us == T0 + 20 * S &&
              l.v[2].start_us == T0 + 40 * S);
        CHECK(l.v[0].duration_us == 10 * S && l.v[0].size == 1000);
        CHECK(strcmp(l.v[0].sha256, LEDGER_FIXTURE_SHA) == 0);
        CHECK(strstr(l.v[0].path, "cam-b/2/") != NULL);
    }
    ctl_rec_list_clear(&l);
    /* A segment that ended exactly at from is not included; to is
     * exclusive. */
    l = query(T0 + 30 * S, T0 + 50 * S, 0, 100);
    CHECK(l.n == 1 && l.v[0].start_us == T0 + 40 * S);
    ctl_rec_list_clear(&l);
    /* Everything, from before the first and with no end. */
    l = query(0, 0, 0, 100);
    CHECK(l.n == 5);
    ctl_rec_list_clear(&l);
    /* From after the last: the last one if it still runs. */
    l = query(T0 + 55 * S, 0, 0, 100);
    CHECK(l.n == 1 && l.v[0].start_us == T0 + 50 * S);
    ctl_rec_list_clear(&l);
    l = query(T0 + 60 * S, 0, 0, 100);
    CHECK(l.n == 0);
    ctl_rec_list_clear(&l);
    /* A range before everything. */
    l = query(T0 - 50 * S, T0, 0, 100);
    CHECK(l.n == 0);
    ctl_rec_list_clear(&l);
    /* Pages of 2. */
    l = query(T0, T0 + 60 * S, 0, 2);
    CHECK(l.n == 2 && l.more && l.v[1].start_us == T0 + 10 * S);
    ctl_rec_list_clear(&l);
    l = query(T0, T0 + 60 * S, T0 + 10 * S, 2);
    CHECK(l.n == 2 && l.more && l.v[0].start_us == T0 + 20 * S);
    ctl_rec_list_clear(&l);
    l = query(T0, T0 + 60 * S, T0 + 40 * S, 2);
    CHECK(l.n == 1 && !l.more && l.v[0].start_us == T0 + 50 * S);
    ctl_rec_list_clear(&l);
    /* Retention: nothing that starts before the cutoff, asked once. */
    cutoff_at = T0 + 20 * S;
    cutoff_calls = 0;
    l = query(0, 0, 0, 100);
    CHECK(l.n == 3 && l.v[0].start_us == T0 + 20 * S && cutoff_calls == 1);
    ctl_rec_list_clear(&l);
    cutoff_at = 0;
    /* Bad arguments. */
    ctl_rec_range bad = {.device = "cam-b", .channel = 2, .from_us = 10, .to_us = 5, .max = 1};
    CHECK(ctl_rec_query(led, NULL, &bad, &l) == -EINVAL && l.n == 0 && l.v == NULL);
    bad.to_us = 0;
    bad.device = "bad/device";
    CHECK(ctl_rec_query(led, NULL, &bad, &l) == -EINVAL);
    bad.device = "cam-b";
    bad.max = 0;
    CHECK(ctl_rec_query(led, NULL, &bad, &l) == -EINVAL);
    /* Inside a transaction of the environment. */
    MDB_txn *txn;
    CHECK(mdb_txn_begin(ctl_ledger_env(led), NULL, MDB_RDONLY, &txn) == 0);
    ctl_rec_range r = {.device = "cam-b", .channel = 2, .max = 10};
    CHECK(ctl_rec_query(led, txn, &r, &l) == 0 && l.n == 5);
    ctl_rec_list_clear(&l);
    mdb_txn_abort(txn);
    ctl_rec_list_clear(NULL);
}

static ctl_rec_seg seg(int64_t start_s, int64_t dur_us)
{
    ctl_rec_seg s;
    memset(&s, 0, sizeof(s));
    s.start_us = T0 + start_s * S;
    s.duration_us = dur_us;
    return s;
}

static void test_gaps(void)
{
    ctl_rec_seg v[] = {seg(0, 10 * S), seg(10, 10 * S), seg(20, 9500000), seg(30, 10 * S),
                       seg(45, 10 * S)};
    ctl_rec_gap g[8];
    /* 29.5 -> 30 is within the 1 s tolerance; 40 -> 45 is a gap; edges. */
    size_t n = ctl_rec_gaps(v, 5, T0 - 5 * S, T0 + 70 * S, CTL_REC_GAP_US, g, 8);
    CHECK(n == 3);
    CHECK(g[0].from_us == T0 - 5 * S && g[0].to_us == T0);
    CHECK(g[1].from_us == T0 + 40 * S && g[1].to_us == T0 + 45 * S);
    CHECK(g[2].from_us == T0 + 55 * S && g[2].to_us == T0 + 70 * S);
    /* A tighter tolerance sees the half second. */
    n = ctl_rec_gaps(v, 5, 0, 0, 100000, g, 8);
    CHECK(n == 2 && g[0].from_us == T0 + 29500000 && g[0].to_us == T0 + 30 * S);
    /* Only max written, all counted. */
    n = ctl_rec_gaps(v, 5, T0 - 5 * S, T0 + 70 * S, CTL_REC_GAP_US, g, 1);
    CHECK(n == 3 && g[0].to_us == T0);
    /* No segments: the whole range. */
    n = ctl_rec_gaps(v, 0, T0, T0 + S, CTL_REC_GAP_US, g, 8);
    CHECK(n == 1 && g[0].from_us == T0 && g[0].to_us == T0 + S);
    CHECK(!ctl_rec_after_gap(v, 0, CTL_REC_GAP_US) && !ctl_rec_after_gap(v, 3, CTL_REC_GAP_US) &&
          ctl_rec_after_gap(v, 4, CTL_REC_GAP_US));
}

static void test_playlist(void)
{
    ctl_rec_seg v[] = {seg(0, 10 * S), seg(10, 10040000), seg(30, 4 * S)};
    char *p = NULL;
    size_t len = 0;
    CHECK(ctl_rec_playlist(v, 3, CTL_REC_GAP_US, "segments/", ".ts", &p, &len) == 0);
    char want[1024];
    snprintf(want, sizeof(want),
             "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:11\n"
             "#EXT-X-MEDIA-SEQUENCE:0\n"
             "#EXTINF:10.000000,\nsegments/%" PRId64 ".ts\n"
             "#EXTINF:10.040000,\nsegments/%" PRId64 ".ts\n"
             "#EXT-X-DISCONTINUITY\n#EXTINF:4.000000,\nsegments/%" PRId64 ".ts\n"
             "#EXT-X-ENDLIST\n",
             v[0].start_us, v[1].start_us, v[2].start_us);
    CHECK(p && strcmp(p, want) == 0 && len == strlen(want));
    if (p && strcmp(p, want) != 0)
        fprintf(stderr, "got:\n%s\nwant:\n%s\n", p, want);
    free(p);
    /* Empty: a valid, ended playlist. */
    CHECK(ctl_rec_playlist(v, 0, CTL_REC_GAP_US, "", ".ts", &p, &len) == 0);
    CHECK(p && strstr(p, "#EXT-X-TARGETDURATION:1\n") && strstr(p, "#EXT-X-ENDLIST\n") &&
          !strstr(p, "#EXTINF"));
    free(p);
    CHECK(ctl_rec_playlist(v, 3, CTL_REC_GAP_US, "a\nb", ".ts", &p, &len) == -EINVAL);
    /* Bounded. */
    size_t big = CTL_REC_PLAYLIST_MAX / 40;
    ctl_rec_seg *many = calloc(big, sizeof(*many));
    CHECK(many != NULL);
    if (many) {
        for (size_t i = 0; i < big; i++)
            many[i] = seg((int64_t)i * 10, 10 * S);
        CHECK(ctl_rec_playlist(many, big, CTL_REC_GAP_US, "segments/", ".ts", &p, &len) == -EFBIG);
        free(many);
    }
}

int main(void)
{
    if (ledger_fixture_open("test_recordings", dir, &led) != 0)
        return 1;
    test_query();
    test_gaps();
    test_playlist();
    ledger_fixture_close(dir, led);
    return check_result();
}
