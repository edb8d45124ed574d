/* A real ledger in a temporary directory, for the unit tests of what reads
 * recordings back (test_recordings.c, test_rec_devices.c): make it, commit
 * segments into it, remove it. Header-only; the functions are static
 * inline so a test that uses only some of them builds without warnings. */
#ifndef C2D_TEST_LEDGER_FIXTURE_H
#define C2D_TEST_LEDGER_FIXTURE_H

#include "check.h"
#include "controller/ledger.h"

#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The hash every fixture segment carries: its bytes are never read. */
#define LEDGER_FIXTURE_SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
/* Room for $TMPDIR/name.XXXXXX. */
#define LEDGER_FIXTURE_DIR_MAX 256

/* Makes $TMPDIR (or /tmp)/name.XXXXXX in dir and opens a ledger there in
 * open mode (no virtual disks). 0, or -1 with the reason printed (and a
 * failure counted if the ledger does not open). */
static inline int ledger_fixture_open(const char *name, char dir[LEDGER_FIXTURE_DIR_MAX],
                                      ctl_ledger **led)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, LEDGER_FIXTURE_DIR_MAX, "%s/%s.XXXXXX", base && *base ? base : "/tmp", name);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return -1;
    }
    char path[LEDGER_FIXTURE_DIR_MAX + 16];
    snprintf(path, sizeof(path), "%s/ledger.lmdb", dir);
    *led = NULL;
    CHECK(ctl_ledger_open(path, 16 << 20, 0, led) == 0);
    if (!*led)
        return -1;
    ctl_ledger_set_open_mode(*led, 1);
    return 0;
}

/* Commits a 1000-byte segment (dev, ch, start, dur) with LEDGER_FIXTURE_SHA
 * and the path store/{dev}/{ch}/{start}.ts. */
static inline void ledger_fixture_commit(ctl_ledger *led, const char *dev, uint16_t ch,
                                         int64_t start, int64_t dur)
{
    ctl_seg_key k;
    CHECK(ctl_seg_key_set(&k, dev, ch, start) == 0);
    ctl_segment_rec r;
    memset(&r, 0, sizeof(r));
    r.duration_us = dur;
    r.size = 1000;
    memcpy(r.sha256, LEDGER_FIXTURE_SHA, sizeof(LEDGER_FIXTURE_SHA));
    snprintf(r.path, sizeof(r.path), "store/%s/%u/%" PRId64 ".ts", dev, (unsigned)ch, start);
    CHECK(ctl_ledger_commit_segment(led, &k, &r) == 0);
}

static inline int ledger_fixture_rm_one(const char *p, const struct stat *st, int flag,
                                        struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

/* Frees led (may be NULL) and removes dir with all it holds. */
static inline void ledger_fixture_close(const char *dir, ctl_ledger *led)
{
    ctl_ledger_free(led);
    nftw(dir, ledger_fixture_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
