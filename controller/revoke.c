/* Revoked device ids and the broker-side cut-off (docs/pairing.md). */
#include "controller/revoke.h"

#include "common/c2d_fs.h"
#include "common/c2d_lmdb.h"
#include "proto/c2d_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/types.h>

#define GEN_KEY "#gen"
/* The broker's process name (/proc/PID/comm): only it gets the SIGHUP. */
#define BROKER_COMM "mosquitto"
/* A pid file holds a number and a newline. */
#define PID_FILE_MAX 32
/* One deny block: "user " id "\ntopic deny c2d/v1/#\n\n". */
#define DENY_FMT "user %s\ntopic deny c2d/v1/#\n\n"

/* Process-wide, like every handle of the environment (see revoke.h). */
static MDB_dbi revoked_dbi;
static bool revoked_open;

int ctl_revoke_open(ctl_dir *dir)
{
    ctl_dir_txn *t;
    int rc = ctl_dir_begin(dir, 1, &t);
    if (rc != 0)
        return rc;
    rc = c2d_mdb_errno(mdb_dbi_open(ctl_dir_txn_mdb(t), "revoked", MDB_CREATE, &revoked_dbi));
    if (rc != 0) {
        ctl_dir_abort(t);
        return rc;
    }
    if ((rc = ctl_dir_commit(t)) == 0)
        revoked_open = true;
    return rc;
}

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int read_gen(MDB_txn *txn, uint64_t *gen)
{
    MDB_val k = {strlen(GEN_KEY), GEN_KEY}, v;
    int rc = c2d_mdb_errno(mdb_get(txn, revoked_dbi, &k, &v));
    if (rc == -ENOENT) {
        *gen = 0;
        return 0;
    }
    if (rc != 0)
        return rc;
    if (v.mv_size != 8)
        return -EIO;
    *gen = get_be64(v.mv_data);
    return 0;
}

int ctl_revoke_is(ctl_dir_txn *t, const char *device)
{
    if (!revoked_open)
        return -ENXIO;
    if (!device || !c2d_device_id_valid(device))
        return 0; /* never a key of ours */
    MDB_val k = {strlen(device), (void *)device}, v;
    int rc = c2d_mdb_errno(mdb_get(ctl_dir_txn_mdb(t), revoked_dbi, &k, &v));
    return rc == 0 ? 1 : rc == -ENOENT ? 0 : rc;
}

int ctl_revoke_mark(ctl_dir_txn *t, const char *device, uint64_t rid)
{
    if (!revoked_open)
        return -ENXIO;
    if (!device || !c2d_device_id_valid(device))
        return -EINVAL;
    int rc = ctl_revoke_is(t, device);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    MDB_txn *txn = ctl_dir_txn_mdb(t);
    unsigned char rec[16], g[8];
    put_be64(rec, rid);
    put_be64(rec + 8, (uint64_t)ctl_dir_txn_now(t));
    MDB_val k = {strlen(device), (void *)device}, v = {sizeof(rec), rec};
    uint64_t gen;
    if ((rc = c2d_mdb_errno(mdb_put(txn, revoked_dbi, &k, &v, 0))) != 0 ||
        (rc = read_gen(txn, &gen)) != 0)
        return rc;
    put_be64(g, gen + 1);
    MDB_val gk = {strlen(GEN_KEY), GEN_KEY}, gv = {sizeof(g), g};
    return c2d_mdb_errno(mdb_put(txn, revoked_dbi, &gk, &gv, 0));
}

int ctl_revoke_ids_of(ctl_dir_txn *t, uint64_t rid, ctl_revoke_id_cb cb, void *ud)
{
    if (!revoked_open)
        return -ENXIO;
    MDB_cursor *c;
    int rc = c2d_mdb_errno(mdb_cursor_open(ctl_dir_txn_mdb(t), revoked_dbi, &c));
    if (rc != 0)
        return rc;
    MDB_val k, v;
    int op = MDB_FIRST;
    while ((rc = c2d_mdb_errno(mdb_cursor_get(c, &k, &v, op))) == 0) {
        op = MDB_NEXT;
        if (k.mv_size == 0 || k.mv_size > C2D_DEVICE_ID_MAX || ((char *)k.mv_data)[0] == '#' ||
            v.mv_size != 16 || get_be64(v.mv_data) != rid)
            continue;
        char id[C2D_DEVICE_ID_MAX + 1];
        memcpy(id, k.mv_data, k.mv_size);
        id[k.mv_size] = '\0';
        if (c2d_device_id_valid(id) &&
            (rc = cb(ud, id, (int64_t)get_be64((unsigned char *)v.mv_data + 8))) != 0)
            break;
    }
    mdb_cursor_close(c);
    return rc == -ENOENT ? 0 : rc;
}

int ctl_revoke_status(ctl_dir *dir, const char *device)
{
    ctl_dir_txn *t;
    int rc = ctl_dir_begin(dir, 0, &t);
    if (rc != 0)
        return rc;
    int kind;
    uint64_t id;
    if ((rc = ctl_revoke_is(t, device)) == 1)
        rc = CTL_DEV_REVOKED;
    else if (rc == 0)
        rc = ctl_dir_lookup(t, "device", device, &kind, &id) == 0 && kind == CTL_KIND_RECORDER
                 ? CTL_DEV_HELD
                 : CTL_DEV_UNKNOWN;
    ctl_dir_abort(t);
    return rc;
}

/* ---- the ACL file ------------------------------------------------------- */

int ctl_revoke_acl_text(const char *base, size_t len, const char *const *ids, size_t n, char **out,
                        size_t *outlen)
{
    /* The kept part: up to the marker line, if there is one. */
    const size_t ml = strlen(CTL_REVOKE_ACL_MARK);
    size_t keep = len;
    for (size_t i = 0; i + ml <= len; i++) {
        if ((i == 0 || base[i - 1] == '\n') && memcmp(base + i, CTL_REVOKE_ACL_MARK, ml) == 0 &&
            (i + ml == len || base[i + ml] == '\n')) {
            keep = i;
            break;
        }
    }
    size_t cap = keep + 2 + ml + 2;
    for (size_t i = 0; i < n; i++)
        cap += strlen(ids[i]) + sizeof(DENY_FMT);
    if (cap > CTL_REVOKE_ACL_MAX)
        return -EFBIG;
    char *s = malloc(cap);
    if (!s)
        return -ENOMEM;
    memcpy(s, base, keep);
    size_t w = keep;
    if (w > 0 && s[w - 1] != '\n')
        s[w++] = '\n';
    w += (size_t)snprintf(s + w, cap - w, "%s\n", CTL_REVOKE_ACL_MARK);
    for (size_t i = 0; i < n; i++)
        w += (size_t)snprintf(s + w, cap - w, DENY_FMT, ids[i]);
    *out = s;
    *outlen = w;
    return 0;
}

struct ctl_revoke {
    ctl_dir *dir;
    char *acl, *pid;
    bool applied;
    uint64_t gen;
};

int ctl_revoke_new(ctl_dir *dir, const char *acl_file, const char *pid_file, ctl_revoke **out)
{
    ctl_revoke *r = calloc(1, sizeof(*r));
    if (!r || !(r->acl = strdup(acl_file)) ||
        (pid_file && pid_file[0] && !(r->pid = strdup(pid_file)))) {
        ctl_revoke_free(r);
        return -ENOMEM;
    }
    r->dir = dir;
    *out = r;
    return 0;
}

void ctl_revoke_free(ctl_revoke *r)
{
    if (!r)
        return;
    free(r->acl);
    free(r->pid);
    free(r);
}

/* The revoked ids, sorted (LMDB's order), "#gen" left out. */
typedef struct {
    char **ids;
    size_t n, cap;
} id_list;

static void ids_clear(id_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->ids[i]);
    free(l->ids);
}

static int read_ids(MDB_txn *txn, id_list *l)
{
    MDB_cursor *c;
    int rc = c2d_mdb_errno(mdb_cursor_open(txn, revoked_dbi, &c));
    if (rc != 0)
        return rc;
    MDB_val k, v;
    int op = MDB_FIRST;
    while ((rc = c2d_mdb_errno(mdb_cursor_get(c, &k, &v, op))) == 0) {
        op = MDB_NEXT;
        if (k.mv_size == 0 || k.mv_size > C2D_DEVICE_ID_MAX || ((char *)k.mv_data)[0] == '#')
            continue;
        char id[C2D_DEVICE_ID_MAX + 1];
        memcpy(id, k.mv_data, k.mv_size);
        id[k.mv_size] = '\0';
        if (!c2d_device_id_valid(id))
            continue; /* never written by ctl_revoke_mark: not for the ACL */
        if (l->n == l->cap) {
            size_t cap = l->cap ? 2 * l->cap : 64;
            char **p = realloc(l->ids, cap * sizeof(*p));
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            l->ids = p, l->cap = cap;
        }
        if (!(l->ids[l->n] = strdup(id))) {
            rc = -ENOMEM;
            break;
        }
        l->n++;
    }
    mdb_cursor_close(c);
    return rc == -ENOENT ? 0 : rc;
}

static int signal_broker(const char *pid_file, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t n;
    int rc = c2d_read_file(pid_file, PID_FILE_MAX, &buf, &n);
    if (rc != 0) {
        snprintf(err, errlen, "broker pid file %s: %s", pid_file, strerror(-rc));
        return rc;
    }
    char *end;
    long pid = strtol(buf, &end, 10);
    bool ok = end != buf && (*end == '\0' || *end == '\n') && pid > 1;
    free(buf);
    if (!ok) {
        snprintf(err, errlen, "broker pid file %s: not a process id", pid_file);
        return -EINVAL;
    }
    /* A stale pid file (the broker died, its pid was reused) must not get
     * another process a SIGHUP, whose default action ends it. */
    char comm_path[64], comm[32];
    snprintf(comm_path, sizeof(comm_path), "/proc/%ld/comm", pid);
    int fd = open(comm_path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, comm, sizeof(comm) - 1) : -1; /* procfs: no size */
    if (fd >= 0)
        close(fd);
    if (got < 0) {
        snprintf(err, errlen, "broker pid file %s: process %ld: not running (stale pid file)",
                 pid_file, pid);
        return -ESRCH;
    }
    n = (size_t)got;
    while (n && comm[n - 1] == '\n')
        n--;
    ok = n == strlen(BROKER_COMM) && memcmp(comm, BROKER_COMM, n) == 0;
    if (!ok) {
        snprintf(err, errlen, "broker pid file %s: process %ld is not %s (stale pid file)",
                 pid_file, pid, BROKER_COMM);
        return -ESRCH;
    }
    if (kill((pid_t)pid, SIGHUP) != 0) {
        rc = -errno;
        snprintf(err, errlen, "SIGHUP to the broker (pid %ld): %s", pid, strerror(-rc));
        return rc;
    }
    return 0;
}

int ctl_revoke_apply(ctl_revoke *r, int force, size_t *count, char *err, size_t errlen)
{
    if (!revoked_open) {
        snprintf(err, errlen, "revocation database not open");
        return -ENXIO;
    }
    ctl_dir_txn *t;
    id_list l = {0};
    uint64_t gen;
    char *old = NULL, *text = NULL;
    size_t oldlen = 0, len;
    int rc = ctl_dir_begin(r->dir, 0, &t);
    if (rc != 0) {
        snprintf(err, errlen, "ledger: %s", strerror(-rc));
        return rc;
    }
    if ((rc = read_gen(ctl_dir_txn_mdb(t), &gen)) != 0) {
        ctl_dir_abort(t);
        snprintf(err, errlen, "revoked ids: %s", strerror(-rc));
        return rc;
    }
    if (!force && r->applied && gen == r->gen) {
        ctl_dir_abort(t);
        return 0;
    }
    rc = read_ids(ctl_dir_txn_mdb(t), &l);
    ctl_dir_abort(t);
    if (rc != 0) {
        snprintf(err, errlen, "revoked ids: %s", strerror(-rc));
        goto out;
    }
    if ((rc = c2d_read_file(r->acl, CTL_REVOKE_ACL_MAX, &old, &oldlen)) != 0) {
        snprintf(err, errlen, "%s: %s", r->acl, strerror(-rc));
        goto out;
    }
    if ((rc = ctl_revoke_acl_text(old, oldlen, (const char *const *)l.ids, l.n, &text, &len)) !=
        0) {
        snprintf(err, errlen, "%s: %s", r->acl, strerror(-rc));
        goto out;
    }
    /* The broker reads the file as another user: world-readable, as c2d-ca
     * writes it; it holds no secret. */
    if ((len != oldlen || memcmp(text, old, len) != 0) &&
        (rc = c2d_write_file_atomic(r->acl, text, len, 0644)) != 0) {
        snprintf(err, errlen, "%s: %s", r->acl, strerror(-rc));
        goto out;
    }
    if (r->pid && (rc = signal_broker(r->pid, err, errlen)) != 0)
        goto out;
    r->applied = true;
    r->gen = gen;
    if (count)
        *count = l.n;
    rc = 1;
out:
    free(old);
    free(text);
    ids_clear(&l);
    return rc;
}
