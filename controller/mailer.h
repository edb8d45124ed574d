/* The controller's outbox: one-time set-password links and other notices
 * go out as mail without a mail server in the controller. Each message is
 * written as one RFC 5322 file <outbox>/<id>.eml (CRLF lines, UTF-8 text,
 * mode 0600: the link in it is a secret), atomically (temp file, fsync,
 * rename, fsync of the directory). When a sendmail command is configured,
 * the message is then piped to it (fork + exec, no shell; "-t" lets it read
 * the recipient from the To header, "-i" keeps a line with a lone dot).
 * The .eml stays either way: it is the record of what was sent.
 *
 * Lifecycle: ctl_mailer_new, any number of ctl_mailer_send from any thread,
 * ctl_mailer_free once no thread uses it.
 *
 * The command runs in its own process group with the controller's stdout
 * and stderr, an empty signal mask and default SIGPIPE, and no other file
 * descriptors. It is killed (the whole group) after sendmail_timeout_s.
 * ctl_mailer_send blocks SIGPIPE in the calling thread while it writes to
 * the pipe, so a command that exits early gives -EIO, never a SIGPIPE, even
 * where the process does not ignore SIGPIPE (c2d-controller ignores it in
 * main.c anyway). A SIGCHLD disposition of SIG_IGN in the process would
 * make every command fail with -EIO (its status is lost). */
#ifndef CTL_MAILER_H
#define CTL_MAILER_H

#include "controller/config.h"

#include <stddef.h>

typedef struct ctl_mailer ctl_mailer;

/* An id is "<unix seconds>-<counter>-<16 hex digits>": the file name
 * without ".eml" and the left part of the Message-ID. Buffer size: */
#define CTL_MAILER_ID_MAX 48
/* Limits (bound memory and keep every line within RFC 5322's 998 bytes):
 * addresses as in RFC 5321 (64-byte local part, 254 in all), a subject of
 * 256 bytes, a body of 256 KiB with lines of at most 998 bytes. */
#define CTL_MAILER_ADDR_MAX 254
#define CTL_MAILER_SUBJECT_MAX 256
#define CTL_MAILER_BODY_MAX (256 * 1024)
#define CTL_MAILER_LINE_MAX 998
/* The sendmail command: at most this many words, this many bytes. */
#define CTL_MAILER_ARGV_MAX 16
#define CTL_MAILER_CMD_MAX 1024
/* sendmail_timeout_s bounds (the caller, an HTTP handler, waits that long). */
#define CTL_MAILER_TIMEOUT_S_MAX 300

/* Checks a mail configuration: from is ASCII without control bytes, an
 * address (ctl_mailer_addr_valid) or "Name <address>" with a name free of
 * <>,;:"@\()[] (no quoting, no second address); sendmail is empty or at most
 * CTL_MAILER_ARGV_MAX words whose first is an absolute path or a name
 * looked up in PATH (no relative path with '/': it would depend on the
 * working directory); link_base is empty or an http:// or https:// URL
 * without spaces, control bytes or a trailing '/'; outbox_dir is not empty;
 * the timeout is within 1..CTL_MAILER_TIMEOUT_S_MAX. Returns 0, or -EINVAL
 * with *key (the offending key) and *why (a short reason, static) set. */
int ctl_mailer_check_cfg(const ctl_mail_cfg *cfg, const char **key, const char **why);

/* Creates a mailer for cfg (copied: cfg may be freed afterwards) and
 * creates the outbox directory (mode 0700) if it is missing. Returns 0;
 * -EINVAL (ctl_mailer_check_cfg fails); -ENOMEM; -errno from creating the
 * directory. *out is set only on success. */
int ctl_mailer_new(const ctl_mail_cfg *cfg, ctl_mailer **out);

/* Frees the mailer. NULL is a no-op. */
void ctl_mailer_free(ctl_mailer *m);

/* 1 if s is an address the mailer accepts as To: ASCII local@domain, at
 * most CTL_MAILER_ADDR_MAX bytes (local part at most 64), the local part
 * of RFC 5322 atext and dots and not starting with '|' or '/' (program and
 * file deliveries to some MTAs), the domain of letters, digits, '-' and
 * dots (no empty labels). Nothing that a header or "sendmail -t" could read
 * as a second address or header. Else 0. */
int ctl_mailer_addr_valid(const char *s);

/* Writes one message to the outbox and, when configured, pipes it to the
 * sendmail command. to: ctl_mailer_addr_valid; subject: UTF-8 without
 * control bytes, at most CTL_MAILER_SUBJECT_MAX bytes (non-ASCII is sent
 * as RFC 2047 encoded words); body_text: UTF-8, LF or CRLF line ends (sent
 * as CRLF), at most CTL_MAILER_BODY_MAX bytes and lines of
 * CTL_MAILER_LINE_MAX. id_out (may be NULL) receives the message id; it
 * needs id_len >= CTL_MAILER_ID_MAX.
 *
 * Returns 0: written (and the command, if any, exited 0). -EINVAL: a bad
 * argument, nothing written. -ENAMETOOLONG: id_len too small, nothing
 * written. -ENOMEM. -errno from writing the file (nothing left behind).
 * -EIO: the .eml was written but the command could not start, did not
 * take the whole message, exited non-zero, died or was killed after the
 * timeout. id_out is written on 0 and on -EIO (the .eml exists). Thread
 * safe; blocks at most about sendmail_timeout_s plus the file writes. */
int ctl_mailer_send(ctl_mailer *m, const char *to, const char *subject, const char *body_text,
                    char *id_out, size_t id_len);

#endif
