/* A scratch directory for fuzz targets that keep files between inputs
 * (fuzz_ingest, fuzz_devmsg, fuzz_http, fuzz_identity, fuzz_model,
 * fuzz_renew_answer): under /dev/shm when it is writable (fast,
 * never the disk), else $TMPDIR or /tmp. Directories that earlier runs left
 * behind are removed first: libFuzzer exits from its crash handler without
 * running atexit, so a crashed run cannot clean up after itself. */
#ifndef C2D_FUZZ_SCRATCH_H
#define C2D_FUZZ_SCRATCH_H

#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline int fuzz_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes path and everything under it, without following links. */
static inline void fuzz_rm_tree(const char *path)
{
    nftw(path, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Removes base/<prefix>.<pid>.* whose process is gone. */
static inline void fuzz_remove_stale(const char *base, const char *prefix)
{
    DIR *d = opendir(base);
    if (!d)
        return;
    size_t pl = strlen(prefix);
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, prefix, pl) != 0 || e->d_name[pl] != '.')
            continue;
        long pid = strtol(e->d_name + pl + 1, NULL, 10);
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", base, e->d_name);
        fuzz_rm_tree(p);
    }
    closedir(d);
}

/* Makes base/<prefix>.<pid>.XXXXXX into out (cap bytes), after removing
 * what crashed runs left. Aborts (a fuzz failure) if it cannot. */
static inline void fuzz_scratch_dir(const char *prefix, char *out, size_t cap)
{
    struct stat sb;
    const char *base = "/dev/shm";
    if (stat(base, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(base, W_OK) != 0) {
        base = getenv("TMPDIR");
        if (!base || !*base)
            base = "/tmp";
    }
    fuzz_remove_stale(base, prefix);
    int n = snprintf(out, cap, "%s/%s.%ld.XXXXXX", base, prefix, (long)getpid());
    FUZZ_ASSERT(n > 0 && (size_t)n < cap);
    FUZZ_ASSERT(mkdtemp(out) != NULL);
}

#endif
