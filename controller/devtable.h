/* A table of per-device entries sorted by device id: one binary search to
 * find a device, a memmove to add or drop one. Shared by the modules that
 * keep something per device (devlimit.c, devstate.c).
 *
 * The table holds pointers and owns only its array: the caller allocates
 * and frees the entries. Every entry starts with its device id, a
 * NUL-terminated string (a char array as the struct's first member; check
 * it with _Static_assert(offsetof(entry, device) == 0, ...)). Not thread
 * safe; the caller locks. */
#ifndef CTL_DEVTABLE_H
#define CTL_DEVTABLE_H

#include <stddef.h>

/* Zero-initialised is an empty table; ctl_devtable_clear frees the array. */
typedef struct {
    void **v; /* n entries, sorted by device id */
    size_t n, cap;
} ctl_devtable;

/* Index of device, or where it would go (*found 0). */
size_t ctl_devtable_find(const ctl_devtable *t, const char *device, int *found);
/* Makes room for one more entry, the array growing to at most max: 0,
 * -ENOSPC (t holds max entries already) or -ENOMEM. */
int ctl_devtable_reserve(ctl_devtable *t, size_t max);
/* Puts e at i (from ctl_devtable_find, after a ctl_devtable_reserve that
 * gave 0). */
void ctl_devtable_insert(ctl_devtable *t, size_t i, void *e);
/* Takes the entry at i out and returns it, for the caller to free. */
void *ctl_devtable_remove(ctl_devtable *t, size_t i);
/* Frees the array (not the entries: free those first) and empties t. */
void ctl_devtable_clear(ctl_devtable *t);

#endif
