/* The uploader's decisions as pure code (no I/O, no clock, no threads), so
 * they are unit tested: which channel sends the next chunk, how many chunks
 * are in flight, and when the rate cap allows the next send.
 *
 * Fairness: one lane per channel; the lanes that have a chunk ready share
 * the global window round-robin, one chunk at a time, starting after the
 * lane that sent last. A lane never sends twice in a row while another
 * ready lane waits, whatever order the acks come back in. */
#ifndef AGENT_UPLOAD_SCHED_H
#define AGENT_UPLOAD_SCHED_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int ready;          /* has a chunk it could send now */
    uint32_t in_flight; /* chunks sent and not yet confirmed */
} agent_sched_lane;

/* Chunks in [confirmed, sent) when chunks are chunk_bytes long (the last
 * one of a segment may be shorter). 0 if sent <= confirmed. */
uint32_t agent_sched_in_flight(uint64_t confirmed, uint64_t sent, uint32_t chunk_bytes);

/* Picks the lane that sends next: the first ready lane at or after
 * *cursor (wrapping), provided the sum of in_flight over all lanes is below
 * window. Advances *cursor past the chosen lane. Returns the lane index,
 * or -1 if the window is full or no lane is ready (*cursor unchanged). */
int agent_sched_pick(unsigned *cursor, const agent_sched_lane *lanes, size_t n, uint32_t window);

/* Token bucket in bytes. rate 0 = unlimited. The bucket holds at most
 * burst bytes (at least one frame, or a frame could never go out); it
 * starts full. */
typedef struct {
    uint64_t rate;  /* bytes per second, 0 = unlimited */
    uint64_t burst; /* capacity in bytes */
    double tokens;
    int64_t last_us;
} agent_bucket;

void agent_bucket_init(agent_bucket *b, uint64_t rate, uint64_t burst, int64_t now_us);

/* Microseconds until n bytes may be sent (0 = now). Does not consume. */
int64_t agent_bucket_wait(agent_bucket *b, uint64_t n, int64_t now_us);

/* Takes n bytes from the bucket (call after agent_bucket_wait said 0). */
void agent_bucket_take(agent_bucket *b, uint64_t n, int64_t now_us);

/* Backoff for the k-th consecutive failure (k >= 1): 1, 2, 4 .. max_s
 * seconds, in microseconds. */
int64_t agent_backoff_us(unsigned k, unsigned max_s);

#endif
