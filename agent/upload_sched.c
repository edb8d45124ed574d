#include "agent/upload_sched.h"

uint32_t agent_sched_in_flight(uint64_t confirmed, uint64_t sent, uint32_t chunk_bytes)
{
    if (sent <= confirmed || chunk_bytes == 0)
        return 0;
    uint64_t n = (sent - confirmed + chunk_bytes - 1) / chunk_bytes;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

int agent_sched_pick(unsigned *cursor, const agent_sched_lane *lanes, size_t n, uint32_t window)
{
    if (n == 0)
        return -1;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += lanes[i].in_flight;
    if (total >= window)
        return -1;
    size_t start = *cursor % n;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        if (lanes[i].ready) {
            *cursor = (unsigned)((i + 1) % n);
            return (int)i;
        }
    }
    return -1;
}

static void refill(agent_bucket *b, int64_t now_us)
{
    if (now_us > b->last_us) {
        b->tokens += (double)b->rate * (double)(now_us - b->last_us) / 1e6;
        if (b->tokens > (double)b->burst)
            b->tokens = (double)b->burst;
    }
    b->last_us = now_us;
}

void agent_bucket_init(agent_bucket *b, uint64_t rate, uint64_t burst, int64_t now_us)
{
    b->rate = rate;
    b->burst = burst;
    b->tokens = (double)burst;
    b->last_us = now_us;
}

int64_t agent_bucket_wait(agent_bucket *b, uint64_t n, int64_t now_us)
{
    if (b->rate == 0)
        return 0;
    refill(b, now_us);
    if (n > b->burst)
        n = b->burst; /* a frame larger than the bucket waits for a full one */
    if (b->tokens >= (double)n)
        return 0;
    double wait = ((double)n - b->tokens) * 1e6 / (double)b->rate;
    return (int64_t)wait + 1;
}

void agent_bucket_take(agent_bucket *b, uint64_t n, int64_t now_us)
{
    if (b->rate == 0)
        return;
    refill(b, now_us);
    b->tokens -= (double)n;
}

int64_t agent_backoff_us(unsigned k, unsigned max_s)
{
    if (k == 0)
        k = 1;
    uint64_t s = k > 20 ? max_s : (1u << (k - 1));
    if (s > max_s)
        s = max_s;
    return (int64_t)s * 1000000;
}
