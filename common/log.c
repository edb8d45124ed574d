#include "common/c2d_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static int log_level = C2D_LOG_INFO;
static const char *log_name = "c2d";
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void c2d_log_set_level(int level)
{
    log_level = level;
}

void c2d_log_set_name(const char *program)
{
    log_name = program;
}

void c2d_log(int level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (level > log_level)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s.%03ldZ %s %s: ", when, ts.tv_nsec / 1000000, log_name,
            names[level < 0   ? 0
                  : level > 3 ? 3
                              : level]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&log_lock);
    va_end(ap);
}
