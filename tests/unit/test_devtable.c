/* Unit tests for controller/devtable.c: find on an empty table, inserts in
 * any order keep the table sorted, found and not-found positions, the
 * growth bound (-ENOSPC at max, the array never past it), remove, clear. */
#include "check.h"
#include "controller/devtable.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char device[16];
    int value;
} item;
_Static_assert(offsetof(item, device) == 0, "a devtable entry starts with its device id");

/* Adds device to t as the modules do; 0 or what reserve said. */
static int add(ctl_devtable *t, size_t max, item *it, const char *device, int value)
{
    int found;
    size_t i = ctl_devtable_find(t, device, &found);
    CHECK(!found);
    int rc = ctl_devtable_reserve(t, max);
    if (rc != 0)
        return rc;
    snprintf(it->device, sizeof(it->device), "%s", device);
    it->value = value;
    ctl_devtable_insert(t, i, it);
    return 0;
}

static int sorted(const ctl_devtable *t)
{
    for (size_t i = 1; i < t->n; i++)
        if (strcmp(((const item *)t->v[i - 1])->device, ((const item *)t->v[i])->device) >= 0)
            return 0;
    return 1;
}

static void test_empty(void)
{
    ctl_devtable t = {0};
    int found = 1;
    CHECK(ctl_devtable_find(&t, "rec-a", &found) == 0 && !found);
    ctl_devtable_clear(&t);
    CHECK(t.v == NULL && t.n == 0 && t.cap == 0);
}

static void test_order(void)
{
    static const char *const ids[] = {"rec-m", "rec-b", "rec-z", "rec-a", "rec-q", "rec-c"};
    enum { N = sizeof(ids) / sizeof(ids[0]) };
    item items[N];
    ctl_devtable t = {0};
    for (int k = 0; k < N; k++) {
        CHECK(add(&t, 100, &items[k], ids[k], k) == 0);
        CHECK(sorted(&t));
    }
    CHECK(t.n == N);
    for (int k = 0; k < N; k++) {
        int found = 0;
        size_t i = ctl_devtable_find(&t, ids[k], &found);
        CHECK(found && i < t.n && ((item *)t.v[i])->value == k);
    }
    /* not found: where it would go */
    int found = 1;
    CHECK(ctl_devtable_find(&t, "rec-0", &found) == 0 && !found);
    CHECK(ctl_devtable_find(&t, "rec-bb", &found) == 2 && !found);
    CHECK(ctl_devtable_find(&t, "rec-zz", &found) == N && !found);
    /* remove the middle, the first and the last */
    size_t i = ctl_devtable_find(&t, "rec-m", &found);
    CHECK(found && ((item *)ctl_devtable_remove(&t, i))->value == 0);
    CHECK(ctl_devtable_remove(&t, 0) == &items[3]);
    CHECK(ctl_devtable_remove(&t, t.n - 1) == &items[2]);
    CHECK(t.n == N - 3 && sorted(&t));
    CHECK(ctl_devtable_find(&t, "rec-m", &found) == 2 && !found);
    ctl_devtable_clear(&t);
    CHECK(t.v == NULL && t.n == 0);
}

static void test_bound(void)
{
    enum { MAX = 40 };
    item items[MAX + 1];
    ctl_devtable t = {0};
    char id[16];
    for (int k = 0; k < MAX; k++) {
        snprintf(id, sizeof(id), "rec-%03d", (k * 7) % MAX);
        CHECK(add(&t, MAX, &items[k], id, k) == 0);
        CHECK(t.cap <= MAX && t.n <= t.cap);
    }
    CHECK(t.n == MAX && t.cap == MAX && sorted(&t));
    CHECK(add(&t, MAX, &items[MAX], "rec-999", MAX) == -ENOSPC);
    CHECK(t.n == MAX);
    /* room again after a remove, without growing */
    ctl_devtable_remove(&t, 5);
    CHECK(add(&t, MAX, &items[MAX], "rec-999", MAX) == 0);
    CHECK(t.n == MAX && t.cap == MAX && sorted(&t));
    ctl_devtable_clear(&t);
}

int main(void)
{
    test_empty();
    test_order();
    test_bound();
    return check_result();
}
