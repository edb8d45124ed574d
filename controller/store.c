#include "controller/store.h"

#include "common/c2d_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Permissions: the controller's files are its own business (plus a group
 * for operators); never world readable. */
#define DIR_MODE 0750
#define FILE_MODE 0640

/* The backend seam: what a committed-segment store must do. */
typedef struct {
    int (*put)(ctl_store *st, const ctl_seg_key *key, int fd, char *relpath, size_t rellen);
    int (*unput)(ctl_store *st, const ctl_seg_key *key);
    int (*open)(ctl_store *st, const ctl_seg_key *key, int *fd, uint64_t *size);
    int (*remove)(ctl_store *st, const ctl_seg_key *key);
    int (*foreach)(ctl_store *st, ctl_store_visit visit, void *ud, uint64_t *skipped);
} store_ops;

struct ctl_store {
    const store_ops *ops;
    char *data_dir;
    char *store_dir;   /* data_dir/store */
    char *partial_dir; /* data_dir/partial */
};

/* ---- helpers ------------------------------------------------------------ */

static int fmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));
static int fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, len, f, ap);
    va_end(ap);
    return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

/* mkdir path; if it was created, fsync parent so the new entry is durable. */
static int mkdir_durable(const char *parent, const char *path)
{
    if (mkdir(path, DIR_MODE) == 0)
        return c2d_fsync_dir(parent);
    return errno == EEXIST ? 0 : -errno;
}

/* Strict decimal parse of s[0..len): no sign, no leading zeros, <= max. */
static int parse_dec(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int partial_dev_dir(const ctl_store *st, const ctl_seg_key *key, char *buf, size_t len)
{
    return fmt(buf, len, "%s/%s", st->partial_dir, key->device);
}

static int partial_path(const ctl_store *st, const ctl_seg_key *key, char *buf, size_t len)
{
    return fmt(buf, len, "%s/%s/%" PRIu16 "-%" PRId64 ".part", st->partial_dir, key->device,
               key->channel, key->start_us);
}

static int seg_rel(const ctl_seg_key *key, char *buf, size_t len)
{
    return fmt(buf, len, "store/%s/%" PRIu16 "/%" PRId64 ".ts", key->device, key->channel,
               key->start_us);
}

static int seg_path(const ctl_store *st, const ctl_seg_key *key, char *buf, size_t len)
{
    return fmt(buf, len, "%s/%s/%" PRIu16 "/%" PRId64 ".ts", st->store_dir, key->device,
               key->channel, key->start_us);
}

static int seg_dir(const ctl_store *st, const ctl_seg_key *key, char *buf, size_t len)
{
    return fmt(buf, len, "%s/%s/%" PRIu16, st->store_dir, key->device, key->channel);
}

/* ---- file system backend ------------------------------------------------- */

static int fs_put(ctl_store *st, const ctl_seg_key *key, int fd, char *relpath, size_t rellen)
{
    char from[CTL_STORE_PATH_MAX], to[CTL_STORE_PATH_MAX], dev[CTL_STORE_PATH_MAX],
        ch[CTL_STORE_PATH_MAX], rel[CTL_STORE_PATH_MAX];
    int rc;
    if ((rc = partial_path(st, key, from, sizeof(from))) != 0 ||
        (rc = seg_path(st, key, to, sizeof(to))) != 0 ||
        (rc = fmt(dev, sizeof(dev), "%s/%s", st->store_dir, key->device)) != 0 ||
        (rc = seg_dir(st, key, ch, sizeof(ch))) != 0 || (rc = seg_rel(key, rel, sizeof(rel))) != 0)
        return rc;
    if (strlen(rel) >= rellen)
        return -ENAMETOOLONG;
    if (fsync(fd) != 0)
        return -errno;
    if ((rc = mkdir_durable(st->store_dir, dev)) != 0 || (rc = mkdir_durable(dev, ch)) != 0)
        return rc;
    if (rename(from, to) != 0)
        return -errno;
    if ((rc = c2d_fsync_dir(ch)) != 0)
        return rc;
    strcpy(relpath, rel);
    return 0;
}

static int fs_unput(ctl_store *st, const ctl_seg_key *key)
{
    char from[CTL_STORE_PATH_MAX], to[CTL_STORE_PATH_MAX];
    int rc;
    if ((rc = seg_path(st, key, from, sizeof(from))) != 0 ||
        (rc = partial_path(st, key, to, sizeof(to))) != 0)
        return rc;
    return rename(from, to) == 0 ? 0 : -errno;
}

static int fs_open(ctl_store *st, const ctl_seg_key *key, int *fd, uint64_t *size)
{
    char path[CTL_STORE_PATH_MAX];
    int rc = seg_path(st, key, path, sizeof(path));
    if (rc != 0)
        return rc;
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f < 0)
        return -errno;
    struct stat sb;
    if (fstat(f, &sb) != 0) {
        rc = -errno;
        close(f);
        return rc;
    }
    *fd = f;
    if (size)
        *size = (uint64_t)sb.st_size;
    return 0;
}

static int fs_remove(ctl_store *st, const ctl_seg_key *key)
{
    char path[CTL_STORE_PATH_MAX], dir[CTL_STORE_PATH_MAX];
    int rc;
    if ((rc = seg_path(st, key, path, sizeof(path))) != 0 ||
        (rc = seg_dir(st, key, dir, sizeof(dir))) != 0)
        return rc;
    if (unlink(path) != 0)
        return -errno;
    return c2d_fsync_dir(dir);
}

/* Opens dir/name as a directory, or NULL (ENOENT is not an error). */
static DIR *open_subdir(const char *dir, const char *name, char *path, size_t len, int *rc)
{
    *rc = fmt(path, len, "%s/%s", dir, name);
    if (*rc != 0)
        return NULL;
    DIR *d = opendir(path);
    if (!d && errno != ENOENT && errno != ENOTDIR)
        *rc = -errno;
    return d;
}

static int fs_foreach(ctl_store *st, ctl_store_visit visit, void *ud, uint64_t *skipped)
{
    uint64_t skip = 0;
    int rc = 0;
    DIR *top = opendir(st->store_dir);
    if (!top)
        return -errno;
    struct dirent *de, *ce, *se;
    while (rc == 0 && (de = readdir(top)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (!c2d_device_id_valid(de->d_name)) {
            skip++;
            continue;
        }
        char devpath[CTL_STORE_PATH_MAX];
        DIR *dd = open_subdir(st->store_dir, de->d_name, devpath, sizeof(devpath), &rc);
        if (!dd) {
            skip += rc == 0;
            continue;
        }
        while (rc == 0 && (ce = readdir(dd)) != NULL) {
            if (strcmp(ce->d_name, ".") == 0 || strcmp(ce->d_name, "..") == 0)
                continue;
            uint64_t ch;
            char chpath[CTL_STORE_PATH_MAX];
            DIR *cd = NULL;
            if (parse_dec(ce->d_name, strlen(ce->d_name), UINT16_MAX, &ch) != 0 ||
                !(cd = open_subdir(devpath, ce->d_name, chpath, sizeof(chpath), &rc))) {
                skip += rc == 0;
                continue;
            }
            while (rc == 0 && (se = readdir(cd)) != NULL) {
                if (strcmp(se->d_name, ".") == 0 || strcmp(se->d_name, "..") == 0)
                    continue;
                size_t n = strlen(se->d_name);
                uint64_t start;
                if (n < 4 || strcmp(se->d_name + n - 3, ".ts") != 0 ||
                    parse_dec(se->d_name, n - 3, INT64_MAX, &start) != 0) {
                    skip++;
                    continue;
                }
                ctl_seg_key key;
                ctl_seg_key_set(&key, de->d_name, (uint16_t)ch, (int64_t)start);
                rc = visit(ud, &key);
            }
            closedir(cd);
        }
        closedir(dd);
    }
    closedir(top);
    if (skipped)
        *skipped = skip;
    return rc;
}

static const store_ops fs_ops = {
    .put = fs_put,
    .unput = fs_unput,
    .open = fs_open,
    .remove = fs_remove,
    .foreach = fs_foreach,
};

/* ---- public --------------------------------------------------------------- */

static char *join(const char *a, const char *b)
{
    char buf[CTL_STORE_PATH_MAX];
    return c2d_path_join(buf, sizeof(buf), a, b) == 0 ? strdup(buf) : NULL;
}

int ctl_store_fs_new(const char *data_dir, ctl_store **out)
{
    if (!data_dir || !data_dir[0])
        return -EINVAL;
    /* Leave room for the longest name built below the data directory. */
    if (strlen(data_dir) > CTL_STORE_PATH_MAX - 256)
        return -ENAMETOOLONG;
    ctl_store *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    int rc = -ENOMEM;
    st->ops = &fs_ops;
    st->data_dir = strdup(data_dir);
    st->store_dir = join(data_dir, "store");
    st->partial_dir = join(data_dir, "partial");
    if (!st->data_dir || !st->store_dir || !st->partial_dir)
        goto fail;
    if ((rc = c2d_mkdirs(data_dir, DIR_MODE)) != 0 ||
        (rc = mkdir_durable(data_dir, st->store_dir)) != 0 ||
        (rc = mkdir_durable(data_dir, st->partial_dir)) != 0)
        goto fail;
    *out = st;
    return 0;
fail:
    ctl_store_free(st);
    return rc;
}

void ctl_store_free(ctl_store *st)
{
    if (!st)
        return;
    free(st->data_dir);
    free(st->store_dir);
    free(st->partial_dir);
    free(st);
}

int ctl_store_partial_open(ctl_store *st, const ctl_seg_key *key, int create, int truncate, int *fd,
                           uint64_t *size)
{
    if (!ctl_seg_key_valid(key))
        return -EINVAL;
    char dir[CTL_STORE_PATH_MAX], path[CTL_STORE_PATH_MAX];
    int rc;
    if ((rc = partial_dev_dir(st, key, dir, sizeof(dir))) != 0 ||
        (rc = partial_path(st, key, path, sizeof(path))) != 0)
        return rc;
    /* Partial files need no durable directory entry: one lost in a power
     * cut is simply uploaded again. */
    if (create && mkdir(dir, DIR_MODE) != 0 && errno != EEXIST)
        return -errno;
    int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0) | (truncate ? O_TRUNC : 0);
    int f = open(path, flags, FILE_MODE);
    if (f < 0)
        return -errno;
    struct stat sb;
    if (fstat(f, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = -EINVAL;
        close(f);
        return rc;
    }
    *fd = f;
    if (size)
        *size = (uint64_t)sb.st_size;
    return 0;
}

int ctl_store_partial_remove(ctl_store *st, const ctl_seg_key *key)
{
    if (!ctl_seg_key_valid(key))
        return -EINVAL;
    char path[CTL_STORE_PATH_MAX];
    int rc = partial_path(st, key, path, sizeof(path));
    if (rc != 0)
        return rc;
    return unlink(path) == 0 ? 0 : -errno;
}

int ctl_store_foreach_partial(ctl_store *st, ctl_store_visit visit, void *ud, uint64_t *skipped)
{
    uint64_t skip = 0;
    int rc = 0;
    DIR *top = opendir(st->partial_dir);
    if (!top)
        return -errno;
    struct dirent *de, *fe;
    while (rc == 0 && (de = readdir(top)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char devpath[CTL_STORE_PATH_MAX];
        DIR *dd = NULL;
        if (!c2d_device_id_valid(de->d_name) ||
            !(dd = open_subdir(st->partial_dir, de->d_name, devpath, sizeof(devpath), &rc))) {
            skip += rc == 0;
            continue;
        }
        while (rc == 0 && (fe = readdir(dd)) != NULL) {
            if (strcmp(fe->d_name, ".") == 0 || strcmp(fe->d_name, "..") == 0)
                continue;
            const char *name = fe->d_name;
            size_t n = strlen(name);
            const char *dash = strchr(name, '-');
            uint64_t ch, start;
            if (n < 8 || strcmp(name + n - 5, ".part") != 0 || !dash ||
                parse_dec(name, (size_t)(dash - name), UINT16_MAX, &ch) != 0 ||
                parse_dec(dash + 1, (size_t)(name + n - 5 - (dash + 1)), INT64_MAX, &start) != 0) {
                skip++;
                continue;
            }
            ctl_seg_key key;
            ctl_seg_key_set(&key, de->d_name, (uint16_t)ch, (int64_t)start);
            rc = visit(ud, &key);
        }
        closedir(dd);
    }
    closedir(top);
    if (skipped)
        *skipped = skip;
    return rc;
}

int ctl_store_put(ctl_store *st, const ctl_seg_key *key, int fd, char *relpath, size_t rellen)
{
    return ctl_seg_key_valid(key) ? st->ops->put(st, key, fd, relpath, rellen) : -EINVAL;
}

int ctl_store_unput(ctl_store *st, const ctl_seg_key *key)
{
    return ctl_seg_key_valid(key) ? st->ops->unput(st, key) : -EINVAL;
}

int ctl_store_open(ctl_store *st, const ctl_seg_key *key, int *fd, uint64_t *size)
{
    return ctl_seg_key_valid(key) ? st->ops->open(st, key, fd, size) : -EINVAL;
}

int ctl_store_delete(ctl_store *st, const ctl_seg_key *key)
{
    return ctl_seg_key_valid(key) ? st->ops->remove(st, key) : -EINVAL;
}

int ctl_store_foreach(ctl_store *st, ctl_store_visit visit, void *ud, uint64_t *skipped)
{
    return st->ops->foreach (st, visit, ud, skipped);
}

int ctl_store_rel_path(const ctl_seg_key *key, int partial, char *buf, size_t len)
{
    if (!partial)
        return seg_rel(key, buf, len);
    return fmt(buf, len, "partial/%s/%" PRIu16 "-%" PRId64 ".part", key->device, key->channel,
               key->start_us);
}

int ctl_store_parse_rel(const char *rel, int partial, ctl_seg_key *key)
{
    const char *top = partial ? "partial/" : "store/";
    size_t tn = strlen(top);
    if (strncmp(rel, top, tn) != 0)
        return -1;
    const char *dev = rel + tn, *slash = strchr(dev, '/');
    if (!slash || (size_t)(slash - dev) > C2D_DEVICE_ID_MAX)
        return -1;
    char device[C2D_DEVICE_ID_MAX + 1];
    memcpy(device, dev, (size_t)(slash - dev));
    device[slash - dev] = '\0';
    const char *name = slash + 1, *sep = strchr(name, partial ? '-' : '/');
    const char *ext = partial ? ".part" : ".ts";
    size_t n = strlen(name), en = strlen(ext);
    uint64_t ch, start;
    if (!sep || n <= en || strcmp(name + n - en, ext) != 0 || name + n - en <= sep ||
        parse_dec(name, (size_t)(sep - name), UINT16_MAX, &ch) != 0 ||
        parse_dec(sep + 1, (size_t)(name + n - en - (sep + 1)), INT64_MAX, &start) != 0)
        return -1;
    return ctl_seg_key_set(key, device, (uint16_t)ch, (int64_t)start) == 0 ? 0 : -1;
}
