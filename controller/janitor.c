#include "controller/janitor.h"

#include "controller/quota.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *data_dir;
    ctl_janitor_busy_fn busy;
    void *busy_ud;
} janitor_ctx;

/* Deletes data_dir/relpath; a file already gone is fine. Paths come from
 * the ledger (the store made them), never from a device. */
static int unlink_rel(void *ud, const ctl_seg_key *key, const char *relpath)
{
    const janitor_ctx *j = ud;
    if (j->busy && j->busy(j->busy_ud, key))
        return -EBUSY;
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/%s", j->data_dir, relpath);
    if (n < 0 || (size_t)n >= sizeof(path) || strstr(relpath, ".."))
        return -EINVAL;
    return unlink(path) == 0 || errno == ENOENT ? 0 : -errno;
}

int ctl_janitor_run(ctl_ledger *l, const char *data_dir, int sweep, int64_t now_us,
                    ctl_janitor_busy_fn busy, void *busy_ud, ctl_janitor_stats *st)
{
    janitor_ctx j = {data_dir, busy, busy_ud};
    memset(st, 0, sizeof(*st));
    int rc = 0;
    if (sweep)
        rc = ctl_quota_sweep(l, now_us, CTL_JANITOR_BUDGET, &st->expired);
    if (rc == 0)
        rc = ctl_quota_empty_trash(l, CTL_JANITOR_BUDGET, unlink_rel, &j, &st->deleted);
    return rc;
}
