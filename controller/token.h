/* Opaque bearer tokens for sessions and one-time links.
 *
 * A token is 256 bits from the CTR-DRBG (controller/rng.h) written as
 * base64url without padding: exactly CTL_TOKEN_CHARS characters of
 * [A-Za-z0-9_-]. The ledger stores only the token's SHA-256 (lowercase hex
 * of the token text), so a copy of the ledger does not hand out sessions;
 * with 256 random bits no salt or slow hash is needed, and looking a
 * session up by the hash of what a client presents leaks nothing through
 * timing about stored tokens.
 *
 * Functions return 0 or -errno: -EIO (the random source failed), -EINVAL (a
 * string that is not a well-formed token). Outputs are written only on
 * success. Thread safe. */
#ifndef CTL_TOKEN_H
#define CTL_TOKEN_H

#include "controller/rng.h"

#include <stddef.h>

/* 256 bits: beyond guessing for any number of live sessions. */
#define CTL_TOKEN_BYTES 32
/* base64url of 32 bytes without padding: ceil(32 * 4 / 3). */
#define CTL_TOKEN_CHARS 43
/* A buffer for a token and its NUL. */
#define CTL_TOKEN_SIZE (CTL_TOKEN_CHARS + 1)
/* A buffer for the hex SHA-256 of a token and its NUL. */
#define CTL_TOKEN_HASH_SIZE 65

/* Makes a new token into token and its storage hash into hash_hex. */
int ctl_token_new(ctl_rng *rng, char token[CTL_TOKEN_SIZE], char hash_hex[CTL_TOKEN_HASH_SIZE]);

/* 1 if s (NUL-terminated) is a well-formed token, else 0 (NULL included).
 * Does not read past the first CTL_TOKEN_CHARS + 1 bytes. */
int ctl_token_valid(const char *s);

/* Writes the storage hash of token s, after checking it is well-formed
 * (-EINVAL otherwise: a malformed bearer never reaches a lookup). */
int ctl_token_hash(const char *s, char hash_hex[CTL_TOKEN_HASH_SIZE]);

#endif
