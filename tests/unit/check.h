/* The unit tests' one assertion: CHECK(cond) reports the failed condition
 * with its place and counts it; main() returns check_result() so that one
 * run lists every failure, not only the first. */
#ifndef C2D_TEST_CHECK_H
#define C2D_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* Writes text to path, or exits: a test without its fixture file cannot
 * test anything. */
static inline void check_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* For loaders whose errors name the file and the key: counts a failure
 * (reported at file:line) unless err holds path and each of the
 * NULL-terminated strings in needles. */
static inline void check_err_names(const char *file, int line, const char *err, const char *path,
                                   va_list needles)
{
    int ok = strstr(err, path) != NULL;
    for (const char *s; (s = va_arg(needles, const char *));)
        ok = ok && strstr(err, s) != NULL;
    if (!ok) {
        fprintf(stderr, "%s:%d: unexpected error text: \"%s\"\n", file, line, err);
        failures++;
    }
}

/* Prints the count and gives main()'s exit status. */
static inline int check_result(void)
{
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}

#endif
