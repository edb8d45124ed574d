/* LMDB helpers shared by the agent's spool and the controller's ledger. */
#ifndef C2D_LMDB_H
#define C2D_LMDB_H

#include <errno.h>
#include <lmdb.h>

/* Maps an LMDB return code to 0 or -errno, as every module here returns:
 * not found → -ENOENT, map or transaction full → -ENOSPC, key exists →
 * -EEXIST; LMDB passes system errors through as positive errno values;
 * anything else (corruption, version mismatch) → -EIO. */
static inline int c2d_mdb_errno(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return -ENOENT;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        return -ENOSPC;
    case MDB_KEYEXIST:
        return -EEXIST;
    default:
        return rc > 0 ? -rc : -EIO;
    }
}

#endif
