/* tools/sim_hist.c: the fleet simulator's latency histogram: buckets,
 * percentiles against exact ones, merging equals adding everything to one. */
#include "tests/unit/check.h"
#include "tools/sim_hist.h"

#include <stdint.h>
#include <stdlib.h>

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The exact percentile by the same rank rule. */
static int64_t exact(const int64_t *sorted, size_t n, double p)
{
    size_t rank = (size_t)(p * (double)n + 0.999999999);
    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

static void test_buckets(void)
{
    /* every bucket's range is contiguous and its values map back to it */
    for (int i = 0; i < SIM_HIST_BUCKETS - 1; i++) {
        CHECK(sim_hist_bucket(sim_hist_bucket_low(i)) == i);
        CHECK(sim_hist_bucket(sim_hist_bucket_high(i)) == i);
        CHECK(sim_hist_bucket_high(i) + 1 == sim_hist_bucket_low(i + 1));
    }
    CHECK(sim_hist_bucket(-5) == 0);
    CHECK(sim_hist_bucket(15) == 15);
    CHECK(sim_hist_bucket(16) == 16);
    CHECK(sim_hist_bucket(INT64_MAX) == SIM_HIST_BUCKETS - 1);
    CHECK(sim_hist_bucket((int64_t)1 << 40) == SIM_HIST_BUCKETS - 1);
    CHECK(sim_hist_bucket(((int64_t)1 << 40) - 1) == SIM_HIST_BUCKETS - 2);
    /* relative width at most 1/16 */
    for (int i = SIM_HIST_SUB; i < SIM_HIST_BUCKETS - 1; i++) {
        int64_t lo = sim_hist_bucket_low(i), hi = sim_hist_bucket_high(i);
        CHECK((hi - lo + 1) * 16 <= lo);
    }
}

static void test_empty_and_small(void)
{
    sim_hist h;
    sim_hist_init(&h);
    CHECK(sim_hist_percentile(&h, 0.5) == 0);
    sim_hist_add(&h, 7);
    CHECK(h.n == 1 && h.min == 7 && h.max == 7);
    CHECK(sim_hist_percentile(&h, 0.0) == 7);
    CHECK(sim_hist_percentile(&h, 0.99) == 7);
    CHECK(sim_hist_percentile(&h, 1.0) == 7);
    sim_hist_add(&h, -3); /* counts as 0 */
    CHECK(h.min == 0 && h.n == 2);
    CHECK(sim_hist_percentile(&h, 0.5) == 0);
    CHECK(sim_hist_percentile(&h, 1.0) == 7);
    /* a single large value: the percentile is capped at the exact max */
    sim_hist_init(&h);
    sim_hist_add(&h, 1234567);
    CHECK(sim_hist_percentile(&h, 0.5) == 1234567);
}

static void test_percentiles_and_merge(void)
{
    enum { N = 20000 };
    int64_t *v = malloc(N * sizeof(*v));
    CHECK(v != NULL);
    if (!v)
        return;
    sim_hist all, a, b, m;
    sim_hist_init(&all);
    sim_hist_init(&a);
    sim_hist_init(&b);
    sim_hist_init(&m);
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* mostly 50..500 ms in microseconds, a tail to 30 s */
        int64_t us = 50000 + (int64_t)(x % 450000);
        if (i % 100 == 0)
            us = 1000000 + (int64_t)(x % 29000000);
        v[i] = us;
        sim_hist_add(&all, us);
        sim_hist_add(i % 3 ? &a : &b, us);
    }
    sim_hist_merge(&m, &a);
    sim_hist_merge(&m, &b);
    CHECK(m.n == all.n && m.min == all.min && m.max == all.max);
    for (int i = 0; i < SIM_HIST_BUCKETS; i++)
        CHECK(m.b[i] == all.b[i]);
    qsort(v, N, sizeof(*v), cmp64);
    CHECK(all.min == v[0] && all.max == v[N - 1]);
    const double ps[] = {0.0, 0.5, 0.9, 0.99, 0.999, 1.0};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        int64_t got = sim_hist_percentile(&m, ps[i]), want = exact(v, N, ps[i]);
        /* never below the exact value, at most one bucket (1/16) above */
        CHECK(got >= want);
        CHECK(got <= want + want / 16 + 1);
        CHECK(got == sim_hist_percentile(&all, ps[i]));
    }
    CHECK(sim_hist_percentile(&m, 1.0) == v[N - 1]);
    /* merging an empty one changes nothing */
    sim_hist e;
    sim_hist_init(&e);
    sim_hist_merge(&m, &e);
    CHECK(m.n == all.n && m.min == all.min);
    sim_hist_merge(&e, &m);
    CHECK(e.n == m.n && e.min == m.min && e.max == m.max);
    free(v);
}

int main(void)
{
    test_buckets();
    test_empty_and_small();
    test_percentiles_and_merge();
    return check_result();
}
