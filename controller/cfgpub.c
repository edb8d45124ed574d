#include "controller/cfgpub.h"

#include "common/c2d_time.h"
#include "controller/quota.h"
#include "proto/devcfg.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct ctl_cfgpub {
    ctl_ledger *l;
    pthread_mutex_t mu;
    int efd;
    char (*pending)[C2D_DEVICE_ID_MAX + 1];
    size_t n;
    int all;
    uint64_t last_version;
};

int ctl_cfgpub_new(ctl_ledger *l, ctl_cfgpub **out)
{
    ctl_cfgpub *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->l = l;
    p->pending = calloc(CTL_CFGPUB_PENDING_MAX, sizeof(*p->pending));
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!p->pending || p->efd < 0 || pthread_mutex_init(&p->mu, NULL) != 0) {
        int rc = p->efd < 0 ? -errno : -ENOMEM;
        if (p->efd >= 0)
            close(p->efd);
        free(p->pending);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void ctl_cfgpub_free(ctl_cfgpub *p)
{
    if (!p)
        return;
    close(p->efd);
    pthread_mutex_destroy(&p->mu);
    free(p->pending);
    free(p);
}

static void wake(ctl_cfgpub *p)
{
    uint64_t one = 1;
    (void)!write(p->efd, &one, sizeof(one));
}

void ctl_cfgpub_mark(ctl_cfgpub *p, const char *device)
{
    if (!c2d_device_id_valid(device))
        return;
    pthread_mutex_lock(&p->mu);
    size_t i = 0;
    while (i < p->n && strcmp(p->pending[i], device) != 0)
        i++;
    if (i == p->n) {
        if (p->n == CTL_CFGPUB_PENDING_MAX)
            p->all = 1;
        else
            memcpy(p->pending[p->n++], device, strlen(device) + 1);
    }
    pthread_mutex_unlock(&p->mu);
    wake(p);
}

void ctl_cfgpub_mark_all(ctl_cfgpub *p)
{
    pthread_mutex_lock(&p->mu);
    p->all = 1;
    pthread_mutex_unlock(&p->mu);
    wake(p);
}

int ctl_cfgpub_fd(const ctl_cfgpub *p)
{
    return p->efd;
}

static int add_channel(void *ud, const char *device, uint16_t ch, const ctl_camera_rec *rec)
{
    (void)device;
    c2d_devcfg *c = ud;
    if (c->n_channels == C2D_DEVCFG_CHANNELS_MAX)
        return 1;
    c->channels[c->n_channels].ch = ch;
    c->channels[c->n_channels].backup = rec->backup;
    c->n_channels++;
    return 0;
}

typedef struct {
    char (*devs)[C2D_DEVICE_ID_MAX + 1];
    size_t n, cap;
} dev_list;

static int add_device(void *ud, const char *device, uint16_t ch, const ctl_camera_rec *rec)
{
    (void)ch, (void)rec;
    dev_list *d = ud;
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        void *q = realloc(d->devs, cap * sizeof(*d->devs));
        if (!q)
            return -ENOMEM;
        d->devs = q;
        d->cap = cap;
    }
    memcpy(d->devs[d->n++], device, strlen(device) + 1);
    return 0;
}

/* Publishes one device's config, built in a read transaction. */
static int publish_one(ctl_cfgpub *p, MDB_txn *txn, const char *device, ctl_cfgpub_fn fn, void *ud)
{
    c2d_devcfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    /* Versions only grow: the time in µs, bumped past the last one. */
    uint64_t v = (uint64_t)c2d_now_us();
    cfg.version = v > p->last_version ? v : p->last_version + 1;
    if (cfg.version > C2D_INT_MAX)
        cfg.version = C2D_INT_MAX;
    p->last_version = cfg.version;
    int rc = ctl_quota_cameras(p->l, txn, device, 0, add_channel, &cfg);
    if (rc != 0)
        return rc;
    char *json = c2d_devcfg_encode(&cfg);
    if (!json)
        return -ENOMEM;
    rc = fn(ud, device, json);
    free(json);
    return rc;
}

int ctl_cfgpub_flush(ctl_cfgpub *p, ctl_cfgpub_fn fn, void *ud)
{
    uint64_t junk;
    (void)!read(p->efd, &junk, sizeof(junk));
    pthread_mutex_lock(&p->mu);
    dev_list d = {0};
    int all = p->all, rc = 0;
    d.cap = d.n = p->n;
    if (p->n && !(d.devs = malloc(p->n * sizeof(*d.devs))))
        rc = -ENOMEM;
    else if (p->n)
        memcpy(d.devs, p->pending, p->n * sizeof(*d.devs));
    if (rc == 0) {
        p->n = 0;
        p->all = 0;
    }
    pthread_mutex_unlock(&p->mu);
    if (rc != 0)
        return rc;
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(ctl_ledger_env(p->l), NULL, MDB_RDONLY, &txn)) != 0) {
        free(d.devs);
        return -EIO;
    }
    if (all)
        rc = ctl_quota_cameras(p->l, txn, NULL, 1, add_device, &d);
    /* A publish that fails is not retried here (the connection is going:
     * the reconnect republishes every device). */
    for (size_t i = 0; rc == 0 && i < d.n; i++)
        if (publish_one(p, txn, d.devs[i], fn, ud) == -ENOMEM)
            rc = -ENOMEM;
    mdb_txn_abort(txn);
    free(d.devs);
    return rc;
}
