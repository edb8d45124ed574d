/* The unit tests' one assertion: CHECK(cond) reports the failed condition
 * with its place and counts it; main() returns check_result() so that one
 * run lists every failure, not only the first. */
#ifndef C2D_TEST_CHECK_H
#define C2D_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* Prints the count and gives main()'s exit status. */
static inline int check_result(void)
{
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}

#endif
