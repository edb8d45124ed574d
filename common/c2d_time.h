#ifndef C2D_TIME_H
#define C2D_TIME_H

#include <stdint.h>

/* Wall clock, microseconds since the Unix epoch. */
int64_t c2d_now_us(void);
/* Monotonic clock in microseconds, for timeouts and rates. */
int64_t c2d_mono_us(void);

#endif
