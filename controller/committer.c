#include "controller/committer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* ---- executing a batch ------------------------------------------------------ */

static void execute_some(ctl_store *st, ctl_ledger *l, ctl_commit_job *jobs, size_t n)
{
    ctl_seg_key keys[CTL_COMMITTER_BATCH_MAX];
    ctl_segment_rec recs[CTL_COMMITTER_BATCH_MAX];
    int rcs[CTL_COMMITTER_BATCH_MAX];
    size_t idx[CTL_COMMITTER_BATCH_MAX], m = 0;

#ifdef SYNC_FILE_RANGE_WRITE
    /* Start the write-back of every file before waiting for the first, so
     * the device sees the whole batch at once. Only a hint: fsync below is
     * what counts. */
    for (size_t i = 0; i < n; i++)
        (void)sync_file_range(jobs[i].fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#endif
    for (size_t i = 0; i < n; i++) {
        ctl_commit_job *j = &jobs[i];
        j->unput_error = 0;
        j->rec.path[0] = '\0';
        j->rc = ctl_store_put(st, &j->key, j->fd, j->rec.path, sizeof(j->rec.path));
        if (j->rc != 0)
            continue;
        keys[m] = j->key;
        recs[m] = j->rec;
        idx[m++] = i;
    }
    if (m == 0)
        return;
    ctl_ledger_commit_segments(l, keys, recs, m, rcs);
    for (size_t k = 0; k < m; k++) {
        ctl_commit_job *j = &jobs[idx[k]];
        if ((j->rc = rcs[k]) != 0)
            /* Back to the partial area: a later begin + end commits it. */
            j->unput_error = ctl_store_unput(st, &j->key) != 0;
    }
}

void ctl_commit_execute(ctl_store *st, ctl_ledger *l, ctl_commit_job *jobs, size_t n)
{
    while (n > 0) {
        size_t k = n < CTL_COMMITTER_BATCH_MAX ? n : CTL_COMMITTER_BATCH_MAX;
        execute_some(st, l, jobs, k);
        jobs += k;
        n -= k;
    }
}

/* ---- the worker ------------------------------------------------------------- */

/* A ring of jobs. */
typedef struct {
    ctl_commit_job *v;
    size_t head, len;
} ring;

struct ctl_committer {
    ctl_store *st;
    ctl_ledger *l;
    int efd;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work; /* todo not empty, or stop */
    pthread_cond_t idle; /* todo empty and nothing in progress */
    ring todo, done;
    size_t busy; /* jobs the worker is committing */
    int stop;
    ctl_commit_job batch[CTL_COMMITTER_BATCH_MAX]; /* the worker's */
};

static void ring_push(ring *r, const ctl_commit_job *j)
{
    r->v[(r->head + r->len) % CTL_COMMITTER_QUEUE_MAX] = *j;
    r->len++;
}

static ctl_commit_job *ring_pop(ring *r)
{
    ctl_commit_job *j = &r->v[r->head];
    r->head = (r->head + 1) % CTL_COMMITTER_QUEUE_MAX;
    r->len--;
    return j;
}

static void *worker(void *arg)
{
    ctl_committer *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->todo.len == 0 && !c->stop)
            pthread_cond_wait(&c->work, &c->mu);
        if (c->todo.len == 0)
            break; /* stopping, and everything is committed */
        size_t n = 0;
        while (c->todo.len > 0 && n < CTL_COMMITTER_BATCH_MAX)
            c->batch[n++] = *ring_pop(&c->todo);
        c->busy = n;
        pthread_mutex_unlock(&c->mu);

        ctl_commit_execute(c->st, c->l, c->batch, n);

        pthread_mutex_lock(&c->mu);
        for (size_t i = 0; i < n; i++)
            ring_push(&c->done, &c->batch[i]);
        c->busy = 0;
        uint64_t one = 1;
        if (write(c->efd, &one, sizeof(one)) < 0) {
            /* Only EAGAIN (counter saturated) is possible: readable anyway. */
        }
        if (c->todo.len == 0)
            pthread_cond_broadcast(&c->idle);
    }
    pthread_cond_broadcast(&c->idle);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int ctl_committer_new(ctl_store *st, ctl_ledger *l, ctl_committer **out)
{
    if (!st || !l)
        return -EINVAL;
    ctl_committer *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->st = st;
    c->l = l;
    c->todo.v = calloc(CTL_COMMITTER_QUEUE_MAX, sizeof(ctl_commit_job));
    c->done.v = calloc(CTL_COMMITTER_QUEUE_MAX, sizeof(ctl_commit_job));
    c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int rc = -ENOMEM;
    if (c->efd < 0)
        rc = -errno;
    if (!c->todo.v || !c->done.v || c->efd < 0)
        goto fail;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->work, NULL);
    pthread_cond_init(&c->idle, NULL);
    if ((rc = pthread_create(&c->thread, NULL, worker, c)) != 0) {
        rc = -rc;
        pthread_cond_destroy(&c->idle);
        pthread_cond_destroy(&c->work);
        pthread_mutex_destroy(&c->mu);
        goto fail;
    }
    *out = c;
    return 0;
fail:
    if (c->efd >= 0)
        close(c->efd);
    free(c->todo.v);
    free(c->done.v);
    free(c);
    return rc;
}

void ctl_committer_free(ctl_committer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->idle);
    pthread_cond_destroy(&c->work);
    pthread_mutex_destroy(&c->mu);
    close(c->efd);
    free(c->todo.v);
    free(c->done.v);
    free(c);
}

int ctl_committer_submit(ctl_committer *c, const ctl_commit_job *job)
{
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    if (c->stop || c->todo.len + c->busy + c->done.len >= CTL_COMMITTER_QUEUE_MAX) {
        rc = -EAGAIN;
    } else {
        ring_push(&c->todo, job);
        pthread_cond_signal(&c->work);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int ctl_committer_fd(const ctl_committer *c)
{
    return c->efd;
}

size_t ctl_committer_take(ctl_committer *c, ctl_commit_job *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&c->mu);
    while (n < max && c->done.len > 0)
        out[n++] = *ring_pop(&c->done);
    if (c->done.len == 0) {
        uint64_t v;
        if (read(c->efd, &v, sizeof(v)) < 0) {
            /* EAGAIN: already clear */
        }
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}

size_t ctl_committer_pending(ctl_committer *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->todo.len + c->busy + c->done.len;
    pthread_mutex_unlock(&c->mu);
    return n;
}

void ctl_committer_wait_idle(ctl_committer *c)
{
    pthread_mutex_lock(&c->mu);
    while (c->todo.len > 0 || c->busy > 0)
        pthread_cond_wait(&c->idle, &c->mu);
    pthread_mutex_unlock(&c->mu);
}
