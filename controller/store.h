/* The segment store: where committed segments live, behind a small seam
 * (put / open / delete / walk) so an object-store backend can replace the
 * file system one later; plus the partial (staging) area for uploads in
 * progress, which is always local files.
 *
 * File system layout under data_dir (docs/components.md):
 *   store/{device}/{ch}/{start}.ts     committed segments
 *   partial/{device}/{ch}-{start}.part uploads in progress
 *
 * Every path is built from a ctl_seg_key that passed ctl_seg_key_valid()
 * (safe device id, numbers printed in decimal), so nothing a device sends
 * can name a file outside data_dir. Every function re-checks the key and
 * returns -EINVAL for an invalid one.
 *
 * All functions return 0 or -errno. Threads: the handle is not changed
 * after ctl_store_fs_new, so threads may call these functions at once for
 * different keys (the daemon's network thread writes partial files while
 * its commit worker puts finished ones); ctl_store_free must not race. */
#ifndef CTL_STORE_H
#define CTL_STORE_H

#include "controller/segkey.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ctl_store ctl_store;

/* Longest path the store builds. */
#define CTL_STORE_PATH_MAX 4096

/* Opens the file system store rooted at data_dir, creating data_dir,
 * store/ and partial/ if needed. *out is set only on success. */
int ctl_store_fs_new(const char *data_dir, ctl_store **out);

/* Closes the store. NULL is a no-op. */
void ctl_store_free(ctl_store *st);

/* ---- partial area (local files) ---------------------------------------- */

/* Opens key's partial file read-write (O_CLOEXEC). create: create it (and
 * partial/{device}/) if missing; truncate: empty it. *size receives its
 * current size. -ENOENT if it does not exist and create is 0. */
int ctl_store_partial_open(ctl_store *st, const ctl_seg_key *key, int create, int truncate, int *fd,
                           uint64_t *size);

/* Deletes key's partial file; -ENOENT if there was none. */
int ctl_store_partial_remove(ctl_store *st, const ctl_seg_key *key);

/* Visitor for the walks below; a nonzero return stops the walk and is
 * returned by it. */
typedef int (*ctl_store_visit)(void *ud, const ctl_seg_key *key);

/* Calls visit for every partial file with a well-formed name. Entries with
 * other names are skipped and counted in *skipped (may be NULL). */
int ctl_store_foreach_partial(ctl_store *st, ctl_store_visit visit, void *ud, uint64_t *skipped);

/* ---- committed segments (the backend seam) ----------------------------- */

/* put-from-partial: makes key's partial file, open as fd, the committed
 * segment. The file system backend fsyncs fd, renames the file into
 * store/{device}/{ch}/ (creating and fsyncing new directories) and fsyncs
 * that directory: on return the segment is durable. An existing stored file
 * for key is replaced (it can only be a leftover without a ledger record).
 * relpath receives the segment's path relative to data_dir. fd stays open
 * and is still the caller's. */
int ctl_store_put(ctl_store *st, const ctl_seg_key *key, int fd, char *relpath, size_t rellen);

/* Undoes a put whose ledger commit failed: moves the segment back to the
 * partial area so the upload can be committed later. */
int ctl_store_unput(ctl_store *st, const ctl_seg_key *key);

/* Opens a committed segment for reading; *size receives its size. -ENOENT
 * if not stored. */
int ctl_store_open(ctl_store *st, const ctl_seg_key *key, int *fd, uint64_t *size);

/* Deletes a committed segment (file and, durably, its directory entry). */
int ctl_store_delete(ctl_store *st, const ctl_seg_key *key);

/* Calls visit for every stored segment with a well-formed path; others are
 * counted in *skipped (may be NULL). */
int ctl_store_foreach(ctl_store *st, ctl_store_visit visit, void *ud, uint64_t *skipped);

/* The data_dir-relative name of key's file: "store/{device}/{ch}/{start}.ts",
 * or with partial "partial/{device}/{ch}-{start}.part". 0 or -ENAMETOOLONG. */
int ctl_store_rel_path(const ctl_seg_key *key, int partial, char *buf, size_t len);

/* The inverse (fsck, the janitor): 0 with *key set, or -1 for any other
 * name (strict decimals, no leading zeros, valid device id). */
int ctl_store_parse_rel(const char *rel, int partial, ctl_seg_key *key);

#endif
