/* A fixed log-scale histogram for latencies (the fleet simulator's segment
 * ack latency): constant size, O(1) add, mergeable by adding buckets, so
 * the engine's child processes can send theirs to the parent instead of
 * every sample.
 *
 * Values are non-negative integers (microseconds here). 0..15 have a
 * bucket each; above, every power of two is split into 16 equal buckets,
 * so a reported percentile is within 1/16 (6.25%) of the true value, and
 * never above the largest value added. Values of 2^40 and more (12 days in
 * microseconds) share the last bucket. */
#ifndef TOOLS_SIM_HIST_H
#define TOOLS_SIM_HIST_H

#include <stdint.h>

#define SIM_HIST_SUB 16      /* buckets per power of two */
#define SIM_HIST_MAX_LOG2 40 /* values from 2^40 go into the last bucket */
/* exact 0..15, 16 per power of two up to 2^40, one for everything above */
#define SIM_HIST_BUCKETS (SIM_HIST_SUB + (SIM_HIST_MAX_LOG2 - 4) * SIM_HIST_SUB + 1)

typedef struct {
    uint64_t n;
    int64_t min, max; /* exact; 0 when empty */
    double sum;
    uint64_t b[SIM_HIST_BUCKETS];
} sim_hist;

void sim_hist_init(sim_hist *h);

/* Adds one value; a negative one counts as 0. */
void sim_hist_add(sim_hist *h, int64_t v);

/* into += from. */
void sim_hist_merge(sim_hist *into, const sim_hist *from);

/* The value at or below which a share p (0..1) of the values lie: the
 * upper end of the bucket holding the ceil(p * n)-th value, capped at max
 * (and at least min). 0 if empty. */
int64_t sim_hist_percentile(const sim_hist *h, double p);

/* The bucket a value goes into, and the smallest and largest value of a
 * bucket (for serialising and for tests). */
int sim_hist_bucket(int64_t v);
int64_t sim_hist_bucket_low(int i);
int64_t sim_hist_bucket_high(int i);

#endif
