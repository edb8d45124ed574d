/* The read-only command line reports over the ledger: per-camera usage and
 * the list of stored segments, as a table for people or as the JSON of
 * docs/components.md. They read in LMDB transactions of their own, so they
 * run while the daemon writes. */
#ifndef CTL_REPORT_H
#define CTL_REPORT_H

#include "controller/ledger.h"

#include <stdio.h>

/* Prints usage per (device, channel) and the total. l may be NULL (no
 * ledger yet): an empty report. json: {"cameras":[{"device","channel",
 * "bytes","segments"}],"total_bytes":n}. Returns 0 or -errno. */
int ctl_report_usage(ctl_ledger *l, FILE *out, int json);

/* Prints every stored segment in key order (device, channel, start). l may
 * be NULL. json: {"segments":[{"device","channel","start_us","duration_us",
 * "size","sha256","path"}]}, streamed one segment at a time. */
int ctl_report_segments(ctl_ledger *l, FILE *out, int json);

#endif
