/* Unit tests for agent/upload_sched.c: the uploader's window, round-robin fairness,
 * token bucket and backoff, as pure functions. */
#include "check.h"
#include "agent/upload_sched.h"

#include <stdio.h>
#include <string.h>

static void test_in_flight(void)
{
    CHECK(agent_sched_in_flight(0, 0, 100) == 0);
    CHECK(agent_sched_in_flight(100, 50, 100) == 0);
    CHECK(agent_sched_in_flight(0, 100, 100) == 1);
    CHECK(agent_sched_in_flight(0, 101, 100) == 2); /* last chunk short */
    CHECK(agent_sched_in_flight(300, 750, 100) == 5);
    CHECK(agent_sched_in_flight(0, 1, 0) == 0);
}

static void test_window(void)
{
    agent_sched_lane l[3] = {{1, 4}, {1, 3}, {1, 0}};
    unsigned cur = 0;
    CHECK(agent_sched_pick(&cur, l, 3, 7) == -1); /* 7 in flight: full */
    CHECK(cur == 0);
    CHECK(agent_sched_pick(&cur, l, 3, 8) == 0);
    CHECK(cur == 1);
    l[0].ready = l[1].ready = l[2].ready = 0;
    CHECK(agent_sched_pick(&cur, l, 3, 100) == -1); /* nobody ready */
    CHECK(cur == 1);
    CHECK(agent_sched_pick(&cur, l, 0, 100) == -1);
}

/* Simulates the uploader: lanes with endless data, a window, and acks that
 * always confirm the oldest chunk in flight globally (FIFO link). Every
 * ready lane must get a turn before any lane gets a second one. */
static void test_fairness(void)
{
    enum { N = 4, W = 3, ROUNDS = 400 };
    agent_sched_lane l[N];
    memset(l, 0, sizeof(l));
    for (int i = 0; i < N; i++)
        l[i].ready = 1;
    l[2].ready = 0; /* an idle channel never gets picked */
    int fifo[W + 1], head = 0, len = 0;
    unsigned cur = 0, sent[N] = {0};
    int last = -1;
    for (int r = 0; r < ROUNDS; r++) {
        int i;
        while ((i = agent_sched_pick(&cur, l, N, W)) >= 0) {
            CHECK(i != 2);
            CHECK(len < W);
            l[i].in_flight++;
            sent[i]++;
            fifo[(head + len) % (W + 1)] = i;
            len++;
            /* Round-robin: with 3 ready lanes the same lane never repeats. */
            CHECK(i != last);
            last = i;
        }
        CHECK(len == W);
        int done = fifo[head];
        head = (head + 1) % (W + 1);
        len--;
        l[done].in_flight--;
    }
    CHECK(sent[2] == 0);
    unsigned mn = sent[0], mx = sent[0];
    for (int i = 0; i < N; i++) {
        if (i == 2)
            continue;
        mn = sent[i] < mn ? sent[i] : mn;
        mx = sent[i] > mx ? sent[i] : mx;
    }
    CHECK(mx - mn <= 1);
    CHECK(mn > 100);

    /* A lane that becomes ready is served next, before the busy one repeats. */
    agent_sched_lane two[2] = {{1, 0}, {0, 0}};
    cur = 0;
    CHECK(agent_sched_pick(&cur, two, 2, 10) == 0);
    two[1].ready = 1;
    CHECK(agent_sched_pick(&cur, two, 2, 10) == 1);
    CHECK(agent_sched_pick(&cur, two, 2, 10) == 0);
}

static void test_bucket(void)
{
    agent_bucket b;
    agent_bucket_init(&b, 0, 1000, 0);
    CHECK(agent_bucket_wait(&b, 1u << 30, 0) == 0); /* unlimited */

    /* 1000 B/s, bucket of one 500-byte frame, starts full. */
    agent_bucket_init(&b, 1000, 500, 0);
    CHECK(agent_bucket_wait(&b, 500, 0) == 0);
    agent_bucket_take(&b, 500, 0);
    int64_t w = agent_bucket_wait(&b, 500, 0);
    CHECK(w >= 499000 && w <= 501000);
    CHECK(agent_bucket_wait(&b, 500, 250000) > 0);
    CHECK(agent_bucket_wait(&b, 500, 500000) == 0);

    /* Over a long run the rate is the cap: send whenever allowed. */
    agent_bucket_init(&b, 100000, 32 + 4096, 0);
    int64_t now = 0;
    uint64_t bytes = 0;
    while (now < 10000000) {
        int64_t wait = agent_bucket_wait(&b, 32 + 4096, now);
        if (wait > 0) {
            now += wait;
            continue;
        }
        agent_bucket_take(&b, 32 + 4096, now);
        bytes += 32 + 4096;
    }
    /* 10 s at 100 kB/s plus one initial bucket. */
    CHECK(bytes >= 990000 && bytes <= 1000000 + 2 * 4128);

    /* A frame larger than the bucket is not blocked forever. */
    agent_bucket_init(&b, 10, 100, 0);
    agent_bucket_take(&b, 100, 0);
    w = agent_bucket_wait(&b, 5000, 0);
    CHECK(w > 0 && w <= 10000001);
}

static void test_backoff(void)
{
    CHECK(agent_backoff_us(1, 60) == 1000000);
    CHECK(agent_backoff_us(2, 60) == 2000000);
    CHECK(agent_backoff_us(3, 60) == 4000000);
    CHECK(agent_backoff_us(7, 60) == 60000000);
    CHECK(agent_backoff_us(1000, 60) == 60000000);
    CHECK(agent_backoff_us(0, 60) == 1000000);
}

int main(void)
{
    test_in_flight();
    test_window();
    test_fairness();
    test_bucket();
    test_backoff();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
