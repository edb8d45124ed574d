/* Entry point of a libFuzzer target (see tests/fuzz/meson.build). In
 * the normal build replay_main.c calls them on every file of the corpus. */
#ifndef C2D_FUZZ_H
#define C2D_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Invariant checks abort so libFuzzer (and the replay) report a crash. */
#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond);                                                  \
    } while (0)

#include <stdio.h>
#include <stdlib.h>

static inline void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: invariant violated: %s\n", file, line, what);
    abort();
}

#endif
