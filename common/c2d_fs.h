/* File system helpers with the durability rules both sides rely on. All
 * return 0 on success or -errno. */
#ifndef C2D_FS_H
#define C2D_FS_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p with mode for each created component. */
int c2d_mkdirs(const char *path, mode_t mode);
/* fsync a directory so a rename or create in it survives a power cut. */
int c2d_fsync_dir(const char *path);
/* fsync the directory holding file. */
int c2d_fsync_parent(const char *file);
/* Write a whole file atomically: temp file, fsync, rename, fsync dir. */
int c2d_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Read a whole file of at most max bytes into a malloc'd NUL-terminated
 * buffer. -EFBIG if larger. */
int c2d_read_file(const char *path, size_t max, char **out, size_t *len);
/* Write all of buf to fd, retrying on EINTR and short writes. */
int c2d_write_all(int fd, const void *buf, size_t len);
/* Join dir and name into out; -ENAMETOOLONG if it does not fit. */
int c2d_path_join(char *out, size_t outlen, const char *dir, const char *name);

#endif
