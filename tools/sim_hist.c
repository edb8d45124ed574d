#include "tools/sim_hist.h"

#include <math.h>
#include <string.h>

void sim_hist_init(sim_hist *h)
{
    memset(h, 0, sizeof(*h));
}

int sim_hist_bucket(int64_t v)
{
    if (v < SIM_HIST_SUB)
        return v < 0 ? 0 : (int)v;
    int e = 63 - __builtin_clzll((unsigned long long)v); /* 4.. */
    if (e >= SIM_HIST_MAX_LOG2)
        return SIM_HIST_BUCKETS - 1;
    int sub = (int)((v >> (e - 4)) & (SIM_HIST_SUB - 1));
    return SIM_HIST_SUB + (e - 4) * SIM_HIST_SUB + sub;
}

int64_t sim_hist_bucket_low(int i)
{
    if (i < SIM_HIST_SUB)
        return i;
    int e = (i - SIM_HIST_SUB) / SIM_HIST_SUB + 4;
    int sub = (i - SIM_HIST_SUB) % SIM_HIST_SUB;
    return ((int64_t)SIM_HIST_SUB + sub) << (e - 4);
}

int64_t sim_hist_bucket_high(int i)
{
    if (i == SIM_HIST_BUCKETS - 1)
        return INT64_MAX;
    return sim_hist_bucket_low(i + 1) - 1;
}

void sim_hist_add(sim_hist *h, int64_t v)
{
    if (v < 0)
        v = 0;
    if (h->n == 0 || v < h->min)
        h->min = v;
    if (h->n == 0 || v > h->max)
        h->max = v;
    h->n++;
    h->sum += (double)v;
    h->b[sim_hist_bucket(v)]++;
}

void sim_hist_merge(sim_hist *into, const sim_hist *from)
{
    if (from->n == 0)
        return;
    if (into->n == 0 || from->min < into->min)
        into->min = from->min;
    if (into->n == 0 || from->max > into->max)
        into->max = from->max;
    into->n += from->n;
    into->sum += from->sum;
    for (int i = 0; i < SIM_HIST_BUCKETS; i++)
        into->b[i] += from->b[i];
}

int64_t sim_hist_percentile(const sim_hist *h, double p)
{
    if (h->n == 0)
        return 0;
    if (p < 0)
        p = 0;
    if (p > 1)
        p = 1;
    uint64_t rank = (uint64_t)ceil(p * (double)h->n);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < SIM_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            int64_t v = sim_hist_bucket_high(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}
