/* The controller's outbox (see mailer.h). */
#include "controller/mailer.h"

#include "common/c2d_fs.h"
#include "common/c2d_time.h"

#include <mbedtls/base64.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* RFC 5321: a local part is at most 64 bytes. */
#define LOCAL_MAX 64
/* From and link_base are operator settings; bound them like a header line. */
#define FROM_MAX 512
#define LINK_BASE_MAX 512
/* Raw bytes per RFC 2047 encoded word: 39 bytes are 52 base64 characters,
 * so even the first line, "Subject: =?UTF-8?B?...?=", stays within the 76
 * the RFC allows for lines with encoded words. */
#define EWORD_RAW 39
/* Header bytes besides From, To and Subject: names, Date, a Message-ID of
 * up to 47 + 254 bytes, the MIME lines. */
#define HEADERS_FIXED 1024
/* The wait for the command polls with sleeps growing to this (ms). */
#define WAIT_STEP_MAX_MS 50
/* Where to look for a command without '/' when PATH is unset. */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct ctl_mailer {
    pthread_mutex_t mu;
    unsigned counter; /* under mu */
    char *outbox;
    char *from;
    char domain[CTL_MAILER_ADDR_MAX + 1]; /* right side of Message-IDs */
    char *cmd;                            /* the sendmail words, NUL separated */
    char *argv[CTL_MAILER_ARGV_MAX + 1];  /* into cmd; argv[0] NULL: no command */
    int64_t timeout_s;
};

/* --- Validation --- */

static int is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* RFC 5322 atext: what a dot-atom local part may hold besides dots. */
static int is_atext(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

static int is_domain_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* A dot-separated run of n bytes of which every byte passes ok, with no
 * empty part (no leading, trailing or double dot). */
static int dotted(const char *s, size_t n, int (*ok)(unsigned char))
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.' ? s[i + 1] == '.' : !ok(c))
            return 0;
    }
    return 1;
}

static int addr_valid_n(const char *s, size_t n)
{
    if (n < 3 || n > CTL_MAILER_ADDR_MAX)
        return 0;
    const char *at = memchr(s, '@', n);
    if (!at)
        return 0;
    size_t local = (size_t)(at - s);
    /* "|cmd" and "/file" are program and file deliveries to some MTAs. */
    if (local > 0 && (s[0] == '|' || s[0] == '/'))
        return 0;
    return local <= LOCAL_MAX && dotted(s, local, is_atext) &&
           dotted(at + 1, n - local - 1, is_domain_char);
}

int ctl_mailer_addr_valid(const char *s)
{
    return s && addr_valid_n(s, strnlen(s, CTL_MAILER_ADDR_MAX + 1));
}

/* The address of a From value: either the whole value, or "Name <addr>"
 * with a name of plain words (no quoting, no specials that could start a
 * second address or a comment). */
static int from_addr(const char *from, const char **addr, size_t *n)
{
    const char *lt = strchr(from, '<');
    if (!lt) {
        *addr = from;
        *n = strlen(from);
    } else {
        const char *gt = strchr(lt, '>');
        if (!gt || gt[1] != '\0')
            return -EINVAL;
        for (const char *p = from; p < lt; p++)
            if (strchr("<>,;:\"@\\()[]", *p))
                return -EINVAL;
        *addr = lt + 1;
        *n = (size_t)(gt - lt - 1);
    }
    return addr_valid_n(*addr, *n) ? 0 : -EINVAL;
}

/* Splits a copy of the sendmail command in place; argv ends with NULL. */
static int split_cmd(char *cmd, char **argv)
{
    int argc = 0;
    for (char *p = cmd; *p;) {
        while (*p == ' ')
            *p++ = '\0';
        if (!*p)
            break;
        if (argc == CTL_MAILER_ARGV_MAX)
            return -E2BIG;
        argv[argc++] = p;
        while (*p && *p != ' ')
            p++;
    }
    argv[argc] = NULL;
    return argc;
}

#define BAD(k, w)                                                                                  \
    do {                                                                                           \
        *key = k;                                                                                  \
        *why = w;                                                                                  \
        return -EINVAL;                                                                            \
    } while (0)

int ctl_mailer_check_cfg(const ctl_mail_cfg *cfg, const char **key, const char **why)
{
    if (!cfg->outbox_dir || !cfg->outbox_dir[0])
        BAD("outbox_dir", "must not be empty");
    if (strlen(cfg->outbox_dir) + CTL_MAILER_ID_MAX + 8 >= PATH_MAX)
        BAD("outbox_dir", "path too long");

    const char *from = cfg->from ? cfg->from : "";
    const char *addr;
    size_t n;
    if (strlen(from) > FROM_MAX)
        BAD("from", "too long");
    for (const unsigned char *p = (const unsigned char *)from; *p; p++)
        if (is_ctl(*p) || *p >= 0x80)
            BAD("from", "must be ASCII without control characters");
    if (from_addr(from, &addr, &n) != 0)
        BAD("from", "must be an address, or a name and <address>");

    const char *cmd = cfg->sendmail ? cfg->sendmail : "";
    if (strlen(cmd) > CTL_MAILER_CMD_MAX)
        BAD("sendmail", "too long");
    for (const unsigned char *p = (const unsigned char *)cmd; *p; p++)
        if (is_ctl(*p))
            BAD("sendmail", "must not contain control characters (words are split on spaces)");
    char copy[CTL_MAILER_CMD_MAX + 1], *argv[CTL_MAILER_ARGV_MAX + 1];
    snprintf(copy, sizeof(copy), "%s", cmd);
    int argc = split_cmd(copy, argv);
    if (argc < 0)
        BAD("sendmail", "too many words");
    if (argc == 0 && cmd[0])
        BAD("sendmail", "has only spaces");
    if (argc > 0 && argv[0][0] != '/' && strchr(argv[0], '/'))
        BAD("sendmail", "must be an absolute path or a command name looked up in PATH");

    const char *lb = cfg->link_base ? cfg->link_base : "";
    if (lb[0]) {
        size_t len = strlen(lb);
        size_t scheme = strncmp(lb, "https://", 8) == 0  ? 8
                        : strncmp(lb, "http://", 7) == 0 ? 7
                                                         : 0;
        if (!scheme || len == scheme)
            BAD("link_base", "must be an http:// or https:// URL");
        if (len > LINK_BASE_MAX)
            BAD("link_base", "too long");
        for (const unsigned char *p = (const unsigned char *)lb; *p; p++)
            if (*p <= ' ' || *p >= 0x7f)
                BAD("link_base", "must not contain spaces, control or non-ASCII characters");
        if (lb[len - 1] == '/')
            BAD("link_base", "must not end with '/'");
    }
    if (cfg->sendmail_timeout_s < 1 || cfg->sendmail_timeout_s > CTL_MAILER_TIMEOUT_S_MAX)
        BAD("sendmail_timeout_s", "out of range");
    return 0;
}

/* --- Lifecycle --- */

int ctl_mailer_new(const ctl_mail_cfg *cfg, ctl_mailer **out)
{
    const char *key, *why;
    if (!cfg || !out || ctl_mailer_check_cfg(cfg, &key, &why) != 0)
        return -EINVAL;
    ctl_mailer *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    int rc = -ENOMEM;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return -ENOMEM;
    }
    m->outbox = strdup(cfg->outbox_dir);
    m->from = strdup(cfg->from);
    m->cmd = strdup(cfg->sendmail ? cfg->sendmail : "");
    if (!m->outbox || !m->from || !m->cmd)
        goto fail;
    split_cmd(m->cmd, m->argv); /* checked above */
    m->timeout_s = cfg->sendmail_timeout_s;
    const char *addr;
    size_t n;
    from_addr(m->from, &addr, &n);
    const char *at = memchr(addr, '@', n);
    snprintf(m->domain, sizeof(m->domain), "%.*s", (int)(n - (size_t)(at + 1 - addr)), at + 1);
    /* 0700: the messages hold one-time links. */
    if ((rc = c2d_mkdirs(m->outbox, 0700)) != 0)
        goto fail;
    *out = m;
    return 0;
fail:
    ctl_mailer_free(m);
    return rc;
}

void ctl_mailer_free(ctl_mailer *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m->outbox);
    free(m->from);
    free(m->cmd);
    free(m);
}

/* --- Composing --- */

typedef struct {
    char *p;
    size_t len, cap;
} buf;

static int put(buf *b, const void *s, size_t n)
{
    if (n > b->cap - b->len)
        return -ENOMEM; /* cap is computed up front: a bug, not a condition */
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static int puts_(buf *b, const char *s)
{
    return put(b, s, strlen(s));
}

static int subject_check(const char *s)
{
    size_t n = strnlen(s, CTL_MAILER_SUBJECT_MAX + 1);
    if (n > CTL_MAILER_SUBJECT_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (is_ctl((unsigned char)s[i]))
            return -EINVAL;
    return 0;
}

/* "Subject: " and the subject: as is when it is ASCII, else as RFC 2047
 * "B" encoded words of whole UTF-8 characters, folded one per line. */
static int put_subject(buf *b, const char *s)
{
    size_t n = strlen(s);
    int ascii = 1;
    for (size_t i = 0; i < n; i++)
        ascii &= (unsigned char)s[i] < 0x80;
    int rc = puts_(b, "Subject: ");
    if (rc != 0 || ascii)
        return rc ? rc : put(b, s, n);
    for (size_t off = 0; off < n;) {
        size_t take = n - off < EWORD_RAW ? n - off : EWORD_RAW;
        /* Do not cut a character: back off over continuation bytes. */
        size_t t = take;
        while (off + t < n && t > 0 && ((unsigned char)s[off + t] & 0xc0) == 0x80)
            t--;
        if (t > 0)
            take = t;
        unsigned char enc[4 * EWORD_RAW / 3 + 4];
        size_t elen = 0;
        if (mbedtls_base64_encode(enc, sizeof(enc), &elen, (const unsigned char *)s + off, take) !=
            0)
            return -EINVAL;
        if ((rc = puts_(b, off ? "\r\n =?UTF-8?B?" : "=?UTF-8?B?")) != 0 ||
            (rc = put(b, enc, elen)) != 0 || (rc = puts_(b, "?=")) != 0)
            return rc;
        off += take;
    }
    return 0;
}

/* The body with every line end as CRLF (a lone CR counts as one) and a
 * final CRLF; -EINVAL if a line is longer than CTL_MAILER_LINE_MAX. */
static int put_body(buf *b, const char *s)
{
    size_t line = 0;
    int rc;
    for (; *s; s++) {
        if (*s == '\r' || *s == '\n') {
            if (*s == '\r' && s[1] == '\n')
                s++;
            if ((rc = put(b, "\r\n", 2)) != 0)
                return rc;
            line = 0;
            continue;
        }
        if (++line > CTL_MAILER_LINE_MAX)
            return -EINVAL;
        if ((rc = put(b, s, 1)) != 0)
            return rc;
    }
    return line > 0 ? put(b, "\r\n", 2) : 0;
}

static void rfc5322_date(time_t t, char *out, size_t len)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    /* Names by hand: strftime's %a and %b follow the locale. */
    snprintf(out, len, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void make_id(ctl_mailer *m, time_t now, char *id, size_t len)
{
    pthread_mutex_lock(&m->mu);
    unsigned c = ++m->counter;
    pthread_mutex_unlock(&m->mu);
    /* The counter separates messages of one process; the random part
     * those of a restarted one in the same second. Not a secret, so a
     * clock fallback is enough if getrandom fails. */
    uint64_t r;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint64_t)c2d_mono_us() ^ ((uint64_t)getpid() << 32);
    snprintf(id, len, "%lld-%06u-%016" PRIx64, (long long)now, c % 1000000u, r);
}

/* --- The sendmail command --- */

/* The file execv runs for name: name itself when it has a '/', else the
 * first executable in PATH. */
static int find_exe(const char *name, char *out, size_t len)
{
    if (strchr(name, '/'))
        return snprintf(out, len, "%s", name) < (int)len ? 0 : -ENAMETOOLONG;
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = DEFAULT_PATH;
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, ":");
        int w = snprintf(out, len, "%.*s/%s", (int)n, n ? p : ".", name);
        if (w > 0 && (size_t)w < len && access(out, X_OK) == 0)
            return 0;
        p += n;
        if (*p == ':')
            p++;
    }
    return -ENOENT;
}

/* In the child, between fork and exec: async-signal-safe calls only. */
static void child_exec(const char *exe, char *const argv[], int in_fd)
{
    setpgid(0, 0); /* so a timeout kills the command and what it started */
    if (in_fd == STDIN_FILENO) {
        int fl = fcntl(in_fd, F_GETFD);
        if (fl < 0 || fcntl(in_fd, F_SETFD, fl & ~FD_CLOEXEC) != 0)
            _exit(127);
    } else if (dup2(in_fd, STDIN_FILENO) != STDIN_FILENO) {
        _exit(127);
    }
    /* Only stdin, stdout and stderr: the controller's sockets and files
     * are none of the command's business. */
    if (close_range(3, ~0u, 0) != 0)
        for (int fd = 3; fd < 65536; fd++)
            close(fd);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL; /* an ignored SIGPIPE survives exec */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(exe, argv);
    _exit(127);
}

/* Writes msg to fd (non-blocking) until done, an error or the deadline.
 * SIGPIPE is blocked in this thread meanwhile, and one it raised is taken
 * back, so a command that exits early is an EPIPE, not a dead process. */
static int feed(int fd, const char *msg, size_t len, int64_t deadline_us)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);
    int rc = 0;
    while (len > 0) {
        ssize_t w = write(fd, msg, len);
        if (w > 0) {
            msg += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN) {
            rc = -errno;
            break;
        }
        int64_t left_ms = (deadline_us - c2d_mono_us()) / 1000;
        if (left_ms <= 0) {
            rc = -ETIMEDOUT;
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, left_ms > INT_MAX ? INT_MAX : (int)left_ms) < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
    }
    if (rc == -EPIPE && !was_pending) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Reaps pid, killing its process group at the deadline. Returns the wait
 * status, or -1 if it cannot be had (e.g. SIGCHLD ignored). */
static int reap(pid_t pid, int64_t deadline_us)
{
    int st, step_ms = 1;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 && errno != EINTR)
            return -1;
        int64_t left_us = deadline_us - c2d_mono_us();
        if (left_us <= 0)
            break;
        int64_t sleep_us = (int64_t)step_ms * 1000 < left_us ? (int64_t)step_ms * 1000 : left_us;
        struct timespec ts = {(time_t)(sleep_us / 1000000), (long)(sleep_us % 1000000) * 1000};
        nanosleep(&ts, NULL);
        step_ms = step_ms * 2 > WAIT_STEP_MAX_MS ? WAIT_STEP_MAX_MS : step_ms * 2;
    }
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    for (;;) {
        pid_t r = waitpid(pid, &st, 0);
        if (r == pid)
            return -1; /* killed: a failure whatever the status */
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* Runs the configured command with msg on its stdin: 0 if it took all of
 * it and exited 0 within the timeout, else -EIO. */
static int run_sendmail(ctl_mailer *m, const char *msg, size_t len)
{
    char exe[PATH_MAX];
    if (find_exe(m->argv[0], exe, sizeof(exe)) != 0)
        return -EIO;
    int64_t deadline = c2d_mono_us() + m->timeout_s * INT64_C(1000000);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -EIO;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -EIO;
    }
    if (pid == 0)
        child_exec(exe, m->argv, fds[0]);
    setpgid(pid, pid); /* also here: no window where the kill misses the group */
    close(fds[0]);
    int rc = -EIO;
    int fl = fcntl(fds[1], F_GETFL);
    if (fl >= 0 && fcntl(fds[1], F_SETFL, fl | O_NONBLOCK) == 0)
        rc = feed(fds[1], msg, len, deadline);
    close(fds[1]); /* end of message */
    int st = reap(pid, deadline);
    if (rc == 0 && st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    return -EIO;
}

/* --- Sending --- */

int ctl_mailer_send(ctl_mailer *m, const char *to, const char *subject, const char *body_text,
                    char *id_out, size_t id_len)
{
    if (!m || !to || !subject || !body_text || !ctl_mailer_addr_valid(to) ||
        subject_check(subject) != 0)
        return -EINVAL;
    size_t body_len = strnlen(body_text, CTL_MAILER_BODY_MAX + 1);
    if (body_len > CTL_MAILER_BODY_MAX)
        return -EINVAL;
    if (id_out && id_len < CTL_MAILER_ID_MAX)
        return -ENAMETOOLONG;

    time_t now = time(NULL);
    char id[CTL_MAILER_ID_MAX], date[64], line[CTL_MAILER_ID_MAX + CTL_MAILER_ADDR_MAX + 32];
    make_id(m, now, id, sizeof(id));
    rfc5322_date(now, date, sizeof(date));

    /* Worst cases: every body byte a line end (doubled); a subject in
     * base64 (4/3) with a folded frame of 17 bytes per encoded word. */
    buf b = {NULL, 0, 0};
    b.cap = HEADERS_FIXED + strlen(m->from) + strlen(to) + 3 * CTL_MAILER_SUBJECT_MAX +
            2 * body_len + 2;
    b.p = malloc(b.cap);
    if (!b.p)
        return -ENOMEM;
    int rc;
    snprintf(line, sizeof(line), "Message-ID: <%s@%s>\r\n", id, m->domain);
    if ((rc = puts_(&b, "From: ")) != 0 || (rc = puts_(&b, m->from)) != 0 ||
        (rc = puts_(&b, "\r\nTo: ")) != 0 || (rc = puts_(&b, to)) != 0 ||
        (rc = puts_(&b, "\r\n")) != 0 || (rc = put_subject(&b, subject)) != 0 ||
        (rc = puts_(&b, "\r\nDate: ")) != 0 || (rc = puts_(&b, date)) != 0 ||
        (rc = puts_(&b, "\r\n")) != 0 || (rc = puts_(&b, line)) != 0 ||
        (rc = puts_(&b, "MIME-Version: 1.0\r\n"
                        "Content-Type: text/plain; charset=utf-8\r\n"
                        "Content-Transfer-Encoding: 8bit\r\n\r\n")) != 0 ||
        (rc = put_body(&b, body_text)) != 0)
        goto out;

    char path[PATH_MAX], name[CTL_MAILER_ID_MAX + 8];
    snprintf(name, sizeof(name), "%s.eml", id);
    if ((rc = c2d_path_join(path, sizeof(path), m->outbox, name)) != 0)
        goto out;
    /* 0600: the message holds a one-time link. The outbox is made again if
     * someone removed it since ctl_mailer_new. */
    rc = c2d_write_file_atomic(path, b.p, b.len, 0600);
    if (rc == -ENOENT && c2d_mkdirs(m->outbox, 0700) == 0)
        rc = c2d_write_file_atomic(path, b.p, b.len, 0600);
    if (rc != 0)
        goto out;
    if (m->argv[0])
        rc = run_sendmail(m, b.p, b.len);
    if (id_out)
        snprintf(id_out, id_len, "%s", id);
out:
    free(b.p);
    return rc;
}
