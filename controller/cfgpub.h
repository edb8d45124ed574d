/* Device configs (proto/devcfg.h) to publish on c2d/v1/d/{device}/cfg,
 * retained: the API marks devices whose config changed (any thread), the
 * daemon's loop wakes on cfgpub_fd and publishes what is pending, built
 * from the ledger's covered cameras (quota.h). */
#ifndef CTL_CFGPUB_H
#define CTL_CFGPUB_H

#include "controller/ledger.h"

#include <stddef.h>

typedef struct ctl_cfgpub ctl_cfgpub;

/* Devices that may wait at once; beyond, every device is republished. */
#define CTL_CFGPUB_PENDING_MAX 1024

int ctl_cfgpub_new(ctl_ledger *l, ctl_cfgpub **out);
void ctl_cfgpub_free(ctl_cfgpub *p);

/* Marks device as changed and wakes the fd. Thread safe. */
void ctl_cfgpub_mark(ctl_cfgpub *p, const char *device);
/* Marks every device with covered cameras (after a reconnect: a broker
 * without persistence forgets retained messages). Thread safe. */
void ctl_cfgpub_mark_all(ctl_cfgpub *p);
/* Readable while devices are pending. */
int ctl_cfgpub_fd(const ctl_cfgpub *p);

/* Takes the pending devices and calls publish with each one's encoded
 * config (a NUL-terminated JSON text, valid during the call). 0 or
 * -errno. A failed publish is not retried: call ctl_cfgpub_mark_all after
 * the reconnect. */
typedef int (*ctl_cfgpub_fn)(void *ud, const char *device, const char *json);
int ctl_cfgpub_flush(ctl_cfgpub *p, ctl_cfgpub_fn publish, void *ud);

#endif
