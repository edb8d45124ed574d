/* Per-device entries sorted by device id (see devtable.h). */
#include "controller/devtable.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* First size of the array; it doubles from there. */
#define DEVTABLE_INIT 16

size_t ctl_devtable_find(const ctl_devtable *t, const char *device, int *found)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp((const char *)t->v[mid], device); /* the entry's device id */
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

int ctl_devtable_reserve(ctl_devtable *t, size_t max)
{
    if (t->n >= max)
        return -ENOSPC;
    if (t->n < t->cap)
        return 0;
    size_t cap = t->cap ? t->cap * 2 : DEVTABLE_INIT;
    if (cap > max)
        cap = max;
    void **v = realloc(t->v, cap * sizeof(*v));
    if (!v)
        return -ENOMEM;
    t->v = v;
    t->cap = cap;
    return 0;
}

void ctl_devtable_insert(ctl_devtable *t, size_t i, void *e)
{
    memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof(*t->v));
    t->v[i] = e;
    t->n++;
}

void *ctl_devtable_remove(ctl_devtable *t, size_t i)
{
    void *e = t->v[i];
    memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(*t->v));
    t->n--;
    return e;
}

void ctl_devtable_clear(ctl_devtable *t)
{
    free(t->v);
    t->v = NULL;
    t->n = t->cap = 0;
}
