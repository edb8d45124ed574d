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
#include <string.h>

static inline void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: invariant violated: %s\n", file, line, what);
    abort();
}

/* A copy of data (NUL terminated, length in *out_len) with every
 * occurrence of marks[i] replaced by values[i], i < n: how a target puts
 * what only exists at run time (a session token, a certificate for a key
 * made at start) into an input. The marks go in the target's dictionary. */
static inline char *fuzz_subst(const uint8_t *data, size_t size, const char *const *marks,
                               const char *const *values, size_t n, size_t *out_len)
{
    size_t cap = size + 1, longest = 0;
    for (size_t m = 0; m < n; m++)
        if (strlen(values[m]) > longest)
            longest = strlen(values[m]);
    for (size_t i = 0; i < size; i++)
        if (data[i] == '@')
            cap += longest;
    char *out = malloc(cap), *o = out;
    FUZZ_ASSERT(out != NULL);
    for (size_t i = 0; i < size;) {
        size_t k = n;
        for (size_t m = 0; m < n && k == n && data[i] == '@'; m++) {
            size_t ml = strlen(marks[m]);
            if (size - i >= ml && memcmp(data + i, marks[m], ml) == 0)
                k = m;
        }
        if (k == n) {
            *o++ = (char)data[i++];
            continue;
        }
        size_t vl = strlen(values[k]);
        memcpy(o, values[k], vl);
        o += vl;
        i += strlen(marks[k]);
    }
    *o = '\0';
    *out_len = (size_t)(o - out);
    return out;
}

#endif
