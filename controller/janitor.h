/* The janitor: the retention sweep and the deletion of files whose records
 * are gone (evicted, expired, cancelled: quota.h's trash). The daemon runs
 * it after commits and every sweep_interval_s, on its own thread. */
#ifndef CTL_JANITOR_H
#define CTL_JANITOR_H

#include "controller/ledger.h"

#include <stddef.h>
#include <stdint.h>

/* Segments and files one run handles at most: bounds the time the daemon's
 * loop spends away from the network; the next run continues. */
#define CTL_JANITOR_BUDGET 1000

typedef struct {
    size_t expired; /* segments removed by retention */
    size_t deleted; /* files deleted */
} ctl_janitor_stats;

/* Whether a commit of key is in flight (its file may be in the store
 * already under the path an evicted copy left in the trash): 1 keeps that
 * trash entry for a later run. */
typedef int (*ctl_janitor_busy_fn)(void *ud, const ctl_seg_key *key);

/* sweep 1: retention sweep at now_us, then the trash; sweep 0: the trash
 * only. Files are data_dir relative. busy may be NULL. 0 or -errno (the
 * ledger's). */
int ctl_janitor_run(ctl_ledger *l, const char *data_dir, int sweep, int64_t now_us,
                    ctl_janitor_busy_fn busy, void *busy_ud, ctl_janitor_stats *st);

#endif
