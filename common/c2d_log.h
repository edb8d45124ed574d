/* Logging for the programs (library code returns errors instead). Lines go
 * to stderr, which systemd's journal or the recorder's syslog collects. */
#ifndef C2D_LOG_H
#define C2D_LOG_H

enum { C2D_LOG_ERROR = 0, C2D_LOG_WARN, C2D_LOG_INFO, C2D_LOG_DEBUG };

void c2d_log_set_level(int level);
void c2d_log_set_name(const char *program);
void c2d_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define c2d_err(...) c2d_log(C2D_LOG_ERROR, __VA_ARGS__)
#define c2d_warn(...) c2d_log(C2D_LOG_WARN, __VA_ARGS__)
#define c2d_info(...) c2d_log(C2D_LOG_INFO, __VA_ARGS__)
#define c2d_debug(...) c2d_log(C2D_LOG_DEBUG, __VA_ARGS__)

#endif
