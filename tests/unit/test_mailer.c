/* Unit tests for controller/mailer.c (the outbox of set-password links) and
 * the "mail" object of controller/config.c: message format (headers, CRLF,
 * encoded subjects, mode 0600, one file per message), refused header
 * injection, the sendmail command (capture, failure, missing, hang killed
 * at the timeout with its children, early exit without SIGPIPE, no fd
 * leaks), concurrent senders, and the configuration keys and errors.
 * SIGPIPE keeps its default action here on purpose. */
#include "check.h"
#include "common/c2d_fs.h"
#include "common/c2d_time.h"
#include "controller/config.h"
#include "controller/mailer.h"

#include <mbedtls/base64.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

/* A mail configuration in dir/<outbox> with command cmd (may be NULL). */
static ctl_mail_cfg mk_cfg(char *outbox, size_t len, const char *name, char *cmd)
{
    snprintf(outbox, len, "%s/%s", dir, name);
    ctl_mail_cfg c = {outbox, "cam2drive <noreply@example.com>", cmd ? cmd : "", "", 10};
    return c;
}

/* Number of entries in d (without . and ..), or -1. */
static int count_files(const char *d, const char *suffix)
{
    DIR *dp = opendir(d);
    if (!dp)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (e->d_name[0] != '.' && l >= sl && strcmp(e->d_name + l - sl, suffix) == 0)
            n++;
    }
    closedir(dp);
    return n;
}

static int count_fds(void)
{
    return count_files("/proc/self/fd", "");
}

static char *read_eml(const char *outbox, const char *id, size_t *len, mode_t *mode)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s.eml", outbox, id);
    struct stat st;
    if (stat(p, &st) != 0)
        return NULL;
    if (mode)
        *mode = st.st_mode & 07777;
    char *text = NULL;
    return c2d_read_file(p, 1 << 20, &text, len) == 0 ? text : NULL;
}

/* Every LF is preceded by CR and every CR followed by LF. */
static int crlf_only(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
            return 0;
        if (s[i] == '\r' && (i + 1 == n || s[i + 1] != '\n'))
            return 0;
    }
    return 1;
}

static int write_script(const char *name, const char *body, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
    char text[1024];
    snprintf(text, sizeof(text), "#!/bin/sh\n%s\n", body);
    return c2d_write_file_atomic(path, text, strlen(text), 0755);
}

static void test_addr(void)
{
    CHECK(ctl_mailer_addr_valid("a@b"));
    CHECK(ctl_mailer_addr_valid("installer.one+x@mail.example.com"));
    CHECK(ctl_mailer_addr_valid("o'neil@example.com"));
    CHECK(!ctl_mailer_addr_valid(NULL));
    CHECK(!ctl_mailer_addr_valid(""));
    CHECK(!ctl_mailer_addr_valid("a@"));
    CHECK(!ctl_mailer_addr_valid("@b.c"));
    CHECK(!ctl_mailer_addr_valid("ab.c"));
    CHECK(!ctl_mailer_addr_valid("a@b@c"));
    CHECK(!ctl_mailer_addr_valid("a b@c.d"));
    CHECK(!ctl_mailer_addr_valid("a@b.c\r\nBcc: evil@x.y"));
    CHECK(!ctl_mailer_addr_valid("a@b.c\nBcc: evil@x.y"));
    CHECK(!ctl_mailer_addr_valid("a@b.c, evil@x.y"));
    CHECK(!ctl_mailer_addr_valid("a@b.c,evil@x.y"));
    CHECK(!ctl_mailer_addr_valid("Name <a@b.c>"));
    CHECK(!ctl_mailer_addr_valid("<a@b.c>"));
    CHECK(!ctl_mailer_addr_valid("\"a\"@b.c"));
    CHECK(!ctl_mailer_addr_valid("a@b..c"));
    CHECK(!ctl_mailer_addr_valid(".a@b.c"));
    CHECK(!ctl_mailer_addr_valid("a.@b.c"));
    CHECK(!ctl_mailer_addr_valid("a@b.c."));
    CHECK(!ctl_mailer_addr_valid("a@[127.0.0.1]"));
    CHECK(!ctl_mailer_addr_valid("|cmd@b.c"));
    CHECK(!ctl_mailer_addr_valid("/etc/x@b.c"));
    CHECK(!ctl_mailer_addr_valid("j\xc3\xb6rg@b.c"));
    char big[300];
    memset(big, 'a', sizeof(big));
    memcpy(big + 200, "@b.c", 5); /* local part of 200 */
    CHECK(!ctl_mailer_addr_valid(big));
    memcpy(big + 60, "@b.c", 5);
    CHECK(ctl_mailer_addr_valid(big));
    memset(big, 'a', sizeof(big));
    big[0] = 'x';
    big[1] = '@';
    big[255] = '\0'; /* 255 bytes */
    CHECK(!ctl_mailer_addr_valid(big));
    big[254] = '\0';
    CHECK(ctl_mailer_addr_valid(big));
}

static void test_check_cfg(void)
{
    char ob[PATH_MAX];
    ctl_mail_cfg c = mk_cfg(ob, sizeof(ob), "unused", NULL);
    const char *key = NULL, *why = NULL;
    CHECK(ctl_mailer_check_cfg(&c, &key, &why) == 0);
    ctl_mail_cfg b = c;
    b.from = "noreply@localhost";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == 0);
    b.from = "x <noreply@localhost>\r\nBcc: a@b";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == -EINVAL && strcmp(key, "from") == 0 && why);
    b.from = "x <noreply@localhost> y";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == -EINVAL && strcmp(key, "from") == 0);
    b.from = "x <a@b.c> <noreply@localhost>";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == -EINVAL && strcmp(key, "from") == 0);
    b.from = "a@b.c, <noreply@localhost>";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == -EINVAL && strcmp(key, "from") == 0);
    b.from = "\"quoted\" <noreply@localhost>";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == -EINVAL && strcmp(key, "from") == 0);
    b.from = "cam2drive";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == -EINVAL && strcmp(key, "from") == 0);
    b = c;
    b.sendmail = "bin/sendmail -t";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == -EINVAL && strcmp(key, "sendmail") == 0);
    b.sendmail = "   ";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == -EINVAL && strcmp(key, "sendmail") == 0);
    b.sendmail = "/usr/sbin/sendmail\t-t";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == -EINVAL && strcmp(key, "sendmail") == 0);
    b.sendmail = "s 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == -EINVAL && strcmp(key, "sendmail") == 0);
    b.sendmail = "sendmail  -t  -i ";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == 0);
    b = c;
    b.link_base = "https://portal.example.com";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == 0);
    b.link_base = "http://127.0.0.1:8080";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == 0);
    const char *bad_links[] = {"ftp://x", "https://", "https://x/", "https://a b", "portal"};
    for (size_t i = 0; i < sizeof(bad_links) / sizeof(bad_links[0]); i++) {
        b.link_base = (char *)bad_links[i];
        CHECK(ctl_mailer_check_cfg(&b, &key, &why) == -EINVAL && strcmp(key, "link_base") == 0);
    }
    b = c;
    b.sendmail_timeout_s = 0;
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == -EINVAL &&
          strcmp(key, "sendmail_timeout_s") == 0);
    b = c;
    b.outbox_dir = "";
    CHECK(ctl_mailer_check_cfg(&b, &key, &why) == -EINVAL && strcmp(key, "outbox_dir") == 0);
    ctl_mailer *m = NULL;
    CHECK(ctl_mailer_new(&b, &m) == -EINVAL && m == NULL);
    ctl_mailer_free(NULL);
}

static void test_message(void)
{
    char ob[PATH_MAX];
    ctl_mail_cfg c = mk_cfg(ob, sizeof(ob), "outbox/nested", NULL);
    ctl_mailer *m = NULL;
    CHECK(ctl_mailer_new(&c, &m) == 0 && m);
    if (!m)
        return;
    struct stat st;
    CHECK(stat(ob, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);

    char id[CTL_MAILER_ID_MAX], id2[CTL_MAILER_ID_MAX];
    int64_t before = c2d_now_us() / 1000000;
    CHECK(ctl_mailer_send(m, "installer@example.org", "Set your cam2drive password",
                          "Hello,\n\nopen https://x/set?t=abc\nwithin 24 h.\n", id,
                          sizeof(id)) == 0);
    long long t = 0;
    unsigned cnt = 0;
    char hex[32] = "";
    CHECK(sscanf(id, "%lld-%u-%31s", &t, &cnt, hex) == 3 && t >= before && strlen(hex) == 16);
    size_t len = 0;
    mode_t mode = 0;
    char *eml = read_eml(ob, id, &len, &mode);
    CHECK(eml != NULL);
    if (eml) {
        CHECK(mode == 0600);
        CHECK(crlf_only(eml, len));
        const char *want_head = "From: cam2drive <noreply@example.com>\r\n"
                                "To: installer@example.org\r\n"
                                "Subject: Set your cam2drive password\r\n"
                                "Date: ";
        CHECK(strncmp(eml, want_head, strlen(want_head)) == 0);
        char want_id[128];
        snprintf(want_id, sizeof(want_id), "\r\nMessage-ID: <%s@example.com>\r\n", id);
        CHECK(strstr(eml, want_id) != NULL);
        CHECK(strstr(eml, "\r\nMIME-Version: 1.0\r\n"
                          "Content-Type: text/plain; charset=utf-8\r\n"
                          "Content-Transfer-Encoding: 8bit\r\n\r\n"
                          "Hello,\r\n\r\nopen https://x/set?t=abc\r\nwithin 24 h.\r\n") != NULL);
        CHECK(len >= 2 && strcmp(eml + len - 2, "\r\n") == 0);
        /* Date: "Www, DD Mmm YYYY HH:MM:SS +0000" */
        const char *d = strstr(eml, "\r\nDate: ");
        char wd[4], mon[4];
        int dd, yy, hh, mi, ss;
        CHECK(d &&
              sscanf(d + 8, "%3[A-Za-z], %d %3s %d %d:%d:%d +0000", wd, &dd, mon, &yy, &hh, &mi,
                     &ss) == 7 &&
              yy >= 2024 && wd[3] == '\0');
        free(eml);
    }

    /* A second message: a second file; CRLF input stays CRLF; no final
     * newline gets one. */
    CHECK(ctl_mailer_send(m, "a@b", "s", "x\r\ny\rz", id2, sizeof(id2)) == 0);
    CHECK(strcmp(id, id2) != 0);
    CHECK(count_files(ob, ".eml") == 2 && count_files(ob, ".tmp") == 0);
    eml = read_eml(ob, id2, &len, NULL);
    CHECK(eml && strstr(eml, "\r\n\r\nx\r\ny\r\nz\r\n") && crlf_only(eml, len));
    free(eml);
    /* id_out may be NULL; a short one is refused before anything is written. */
    CHECK(ctl_mailer_send(m, "a@b", "s", "", NULL, 0) == 0);
    CHECK(ctl_mailer_send(m, "a@b", "s", "x", id, CTL_MAILER_ID_MAX - 1) == -ENAMETOOLONG);
    CHECK(count_files(ob, ".eml") == 3);

    /* Header injection and bad arguments: -EINVAL, nothing written. */
    const char *bad_to[] = {"a@b.c\r\nBcc: evil@x.y",
                            "a@b.c\nBcc: evil@x.y",
                            "a@b.c, evil@x.y",
                            "Evil <a@b.c>",
                            "",
                            "a@b.c\x01"};
    for (size_t i = 0; i < sizeof(bad_to) / sizeof(bad_to[0]); i++)
        CHECK(ctl_mailer_send(m, bad_to[i], "s", "b", id, sizeof(id)) == -EINVAL);
    const char *bad_subj[] = {"hi\r\nBcc: evil@x.y", "hi\nBcc: evil@x.y", "hi\rthere", "tab\there",
                              "del\x7f"};
    for (size_t i = 0; i < sizeof(bad_subj) / sizeof(bad_subj[0]); i++)
        CHECK(ctl_mailer_send(m, "a@b.c", bad_subj[i], "b", id, sizeof(id)) == -EINVAL);
    CHECK(ctl_mailer_send(m, NULL, "s", "b", id, sizeof(id)) == -EINVAL);
    CHECK(ctl_mailer_send(m, "a@b.c", NULL, "b", id, sizeof(id)) == -EINVAL);
    CHECK(ctl_mailer_send(m, "a@b.c", "s", NULL, id, sizeof(id)) == -EINVAL);
    CHECK(ctl_mailer_send(NULL, "a@b.c", "s", "b", id, sizeof(id)) == -EINVAL);

    /* Limits: subject, line and body lengths. */
    static char big[CTL_MAILER_BODY_MAX + 2];
    memset(big, 's', CTL_MAILER_SUBJECT_MAX + 1);
    big[CTL_MAILER_SUBJECT_MAX + 1] = '\0';
    CHECK(ctl_mailer_send(m, "a@b.c", big, "b", id, sizeof(id)) == -EINVAL);
    big[CTL_MAILER_SUBJECT_MAX] = '\0';
    CHECK(ctl_mailer_send(m, "a@b.c", big, "b", id, sizeof(id)) == 0);
    memset(big, 'l', CTL_MAILER_LINE_MAX + 1);
    big[CTL_MAILER_LINE_MAX + 1] = '\0';
    CHECK(ctl_mailer_send(m, "a@b.c", "s", big, id, sizeof(id)) == -EINVAL);
    big[CTL_MAILER_LINE_MAX] = '\n';
    CHECK(ctl_mailer_send(m, "a@b.c", "s", big, id, sizeof(id)) == 0);
    for (size_t i = 0; i < CTL_MAILER_BODY_MAX + 1; i++)
        big[i] = i % 80 == 79 ? '\n' : 'b';
    big[CTL_MAILER_BODY_MAX + 1] = '\0';
    CHECK(ctl_mailer_send(m, "a@b.c", "s", big, id, sizeof(id)) == -EINVAL);
    /* The largest body, all line ends: doubled in CRLF. */
    memset(big, '\n', CTL_MAILER_BODY_MAX);
    big[CTL_MAILER_BODY_MAX] = '\0';
    CHECK(ctl_mailer_send(m, "a@b.c", "s", big, id, sizeof(id)) == 0);
    eml = read_eml(ob, id, &len, NULL);
    CHECK(eml && crlf_only(eml, len) && strstr(eml, "\r\n\r\n") &&
          len - (size_t)(strstr(eml, "\r\n\r\n") + 4 - eml) == 2 * CTL_MAILER_BODY_MAX);
    free(eml);
    CHECK(count_files(ob, ".eml") == 6 && count_files(ob, ".tmp") == 0);

    /* The outbox is made again if it went away. */
    char p[PATH_MAX];
    DIR *dp = opendir(ob);
    struct dirent *e;
    while (dp && (e = readdir(dp)) != NULL)
        if (e->d_name[0] != '.' && snprintf(p, sizeof(p), "%s/%s", ob, e->d_name) > 0)
            unlink(p);
    if (dp)
        closedir(dp);
    CHECK(rmdir(ob) == 0);
    CHECK(ctl_mailer_send(m, "a@b.c", "s", "b", id, sizeof(id)) == 0);
    CHECK(count_files(ob, ".eml") == 1);
    ctl_mailer_free(m);
}

/* Decodes every encoded word of a folded Subject header into out. */
static int decode_subject(const char *eml, char *out, size_t outlen)
{
    const char *s = strstr(eml, "\r\nSubject: ");
    const char *end = s ? strstr(s + 2, "\r\nDate: ") : NULL;
    if (!s || !end)
        return -1;
    size_t o = 0;
    for (const char *p = s + 11; p < end;) {
        if (strncmp(p, "=?UTF-8?B?", 10) != 0)
            return -1;
        const char *q = strstr(p + 10, "?=");
        if (!q || q > end || q - p > 75)
            return -1;
        size_t n = 0;
        if (mbedtls_base64_decode((unsigned char *)out + o, outlen - o - 1, &n,
                                  (const unsigned char *)p + 10, (size_t)(q - p - 10)) != 0)
            return -1;
        o += n;
        p = q + 2;
        if (p < end && strncmp(p, "\r\n ", 3) != 0)
            return -1;
        if (p < end)
            p += 3;
    }
    out[o] = '\0';
    return 0;
}

static void test_utf8_subject(void)
{
    char ob[PATH_MAX];
    ctl_mail_cfg c = mk_cfg(ob, sizeof(ob), "outbox-utf8", NULL);
    ctl_mailer *m = NULL;
    CHECK(ctl_mailer_new(&c, &m) == 0);
    if (!m)
        return;
    const char *subjects[] = {
        "D\xc3\xa9"
        "finissez votre mot de passe",
        /* 3-byte and 4-byte characters across the 39-byte word limit */
        "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
        "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
        "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac x \xf0\x9f\x93\xb7\xf0\x9f\x93\xb7"
        "\xf0\x9f\x93\xb7\xf0\x9f\x93\xb7\xf0\x9f\x93\xb7\xf0\x9f\x93\xb7\xf0\x9f\x93\xb7",
    };
    for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
        char id[CTL_MAILER_ID_MAX], got[1024];
        CHECK(ctl_mailer_send(m, "a@b.c", subjects[i], "b", id, sizeof(id)) == 0);
        size_t len = 0;
        char *eml = read_eml(ob, id, &len, NULL);
        CHECK(eml && crlf_only(eml, len));
        CHECK(eml && decode_subject(eml, got, sizeof(got)) == 0 && strcmp(got, subjects[i]) == 0);
        /* Header lines within 78 characters (76 with encoded words), no
         * 8-bit header byte. */
        const char *hend = eml ? strstr(eml, "\r\n\r\n") : NULL;
        for (const char *l = eml; hend && l < hend;) {
            const char *nl = strstr(l, "\r\n");
            CHECK(nl - l <= (strncmp(l, "Subject: ", 9) == 0 || l[0] == ' ' ? 76 : 78));
            for (const char *q = l; q < nl; q++)
                CHECK((unsigned char)*q < 0x80);
            l = nl + 2;
        }
        free(eml);
    }
    /* The longest non-ASCII subject fits the message buffer. */
    char big[CTL_MAILER_SUBJECT_MAX + 1];
    for (size_t i = 0; i + 4 <= CTL_MAILER_SUBJECT_MAX; i += 4)
        memcpy(big + i, "\xf0\x9f\x93\xb7", 4);
    big[CTL_MAILER_SUBJECT_MAX] = '\0';
    char id[CTL_MAILER_ID_MAX], got[1024];
    CHECK(ctl_mailer_send(m, "a@b.c", big, "b", id, sizeof(id)) == 0);
    char *eml = read_eml(ob, id, NULL, NULL);
    CHECK(eml && decode_subject(eml, got, sizeof(got)) == 0 && strcmp(got, big) == 0);
    free(eml);
    ctl_mailer_free(m);
}

static void test_sendmail(void)
{
    char ob[PATH_MAX], script[PATH_MAX], cmd[PATH_MAX + 64], captured[300], args[300];
    char body[1024];
    snprintf(captured, sizeof(captured), "%s/captured", dir);
    snprintf(args, sizeof(args), "%s/args", dir);
    snprintf(body, sizeof(body), "cat > '%s'\necho \"$# $*\" > '%s'", captured, args);
    CHECK(write_script("capture.sh", body, script, sizeof(script)) == 0);
    snprintf(cmd, sizeof(cmd), "%s  -t -i", script);
    ctl_mail_cfg c = mk_cfg(ob, sizeof(ob), "outbox-sm", cmd);
    ctl_mailer *m = NULL;
    CHECK(ctl_mailer_new(&c, &m) == 0);
    if (!m)
        return;
    int fds = count_fds();
    char id[CTL_MAILER_ID_MAX];
    CHECK(ctl_mailer_send(m, "installer@example.org", "Set your password",
                          "Open http://127.0.0.1:8080/set-password?t=xyz\n", id, sizeof(id)) == 0);
    size_t elen = 0, clen = 0;
    char *eml = read_eml(ob, id, &elen, NULL), *cap = NULL, *argv_text = NULL;
    CHECK(c2d_read_file(captured, 1 << 20, &cap, &clen) == 0);
    CHECK(eml && cap && elen == clen && memcmp(eml, cap, elen) == 0);
    CHECK(c2d_read_file(args, 1024, &argv_text, NULL) == 0 && argv_text &&
          strcmp(argv_text, "2 -t -i\n") == 0);
    free(eml);
    free(cap);
    free(argv_text);
    CHECK(count_fds() == fds);
    ctl_mailer_free(m);

    /* The command fails: -EIO, and the .eml stays with its id. */
    CHECK(write_script("fail.sh", "cat >/dev/null; exit 1", script, sizeof(script)) == 0);
    c = mk_cfg(ob, sizeof(ob), "outbox-fail", script);
    CHECK(ctl_mailer_new(&c, &m) == 0);
    id[0] = '\0';
    CHECK(ctl_mailer_send(m, "a@b.c", "s", "b", id, sizeof(id)) == -EIO);
    eml = id[0] ? read_eml(ob, id, NULL, NULL) : NULL;
    CHECK(eml != NULL);
    free(eml);
    CHECK(count_files(ob, ".eml") == 1);
    ctl_mailer_free(m);

    /* A command that does not exist, by path and by name. */
    c = mk_cfg(ob, sizeof(ob), "outbox-missing", "/nonexistent/sendmail -t");
    CHECK(ctl_mailer_new(&c, &m) == 0);
    CHECK(ctl_mailer_send(m, "a@b.c", "s", "b", id, sizeof(id)) == -EIO);
    ctl_mailer_free(m);
    c.sendmail = "c2d-no-such-sendmail -t";
    CHECK(ctl_mailer_new(&c, &m) == 0);
    CHECK(ctl_mailer_send(m, "a@b.c", "s", "b", id, sizeof(id)) == -EIO);
    CHECK(count_files(ob, ".eml") == 2);
    ctl_mailer_free(m);

    /* A command that exits at once without reading a message larger than
     * the pipe: EPIPE inside, -EIO out, and no SIGPIPE kills this test. */
    CHECK(write_script("early.sh", "exit 0", script, sizeof(script)) == 0);
    c = mk_cfg(ob, sizeof(ob), "outbox-early", script);
    CHECK(ctl_mailer_new(&c, &m) == 0);
    static char big[CTL_MAILER_BODY_MAX];
    for (size_t i = 0; i < sizeof(big) - 1; i++)
        big[i] = i % 80 == 79 ? '\n' : 'b';
    fds = count_fds();
    CHECK(ctl_mailer_send(m, "a@b.c", "s", big, id, sizeof(id)) == -EIO);
    sigset_t pending;
    sigpending(&pending);
    CHECK(!sigismember(&pending, SIGPIPE));
    CHECK(count_fds() == fds);
    CHECK(count_files(ob, ".eml") == 1);
    ctl_mailer_free(m);
}

/* 1 if pid is gone or a zombie (killed but not yet reaped by init). */
static int dead(pid_t pid)
{
    char p[64], line[512];
    snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r"); /* not c2d_read_file: /proc files have size 0 */
    if (!f)
        return 1;
    int z = 0;
    if (fgets(line, sizeof(line), f)) {
        const char *rp = strrchr(line, ')');
        z = rp && (rp[2] == 'Z' || rp[2] == 'X');
    }
    fclose(f);
    return z;
}

static void test_timeout(void)
{
    char ob[PATH_MAX], script[PATH_MAX], pidfile[300], body[1024];
    snprintf(pidfile, sizeof(pidfile), "%s/sleep.pid", dir);
    /* The script's child sleeps too: the kill must reach the whole group. */
    snprintf(body, sizeof(body), "sleep 100 &\necho $! > '%s'\nwait", pidfile);
    CHECK(write_script("hang.sh", body, script, sizeof(script)) == 0);
    ctl_mail_cfg c = mk_cfg(ob, sizeof(ob), "outbox-hang", script);
    c.sendmail_timeout_s = 1;
    ctl_mailer *m = NULL;
    CHECK(ctl_mailer_new(&c, &m) == 0);
    if (!m)
        return;
    char id[CTL_MAILER_ID_MAX];
    int64_t t0 = c2d_mono_us();
    CHECK(ctl_mailer_send(m, "a@b.c", "s", "b", id, sizeof(id)) == -EIO);
    int64_t took = c2d_mono_us() - t0;
    CHECK(took >= 900000 && took < 5000000);
    CHECK(count_files(ob, ".eml") == 1);
    char *pid_text = NULL;
    CHECK(c2d_read_file(pidfile, 64, &pid_text, NULL) == 0);
    if (pid_text) {
        pid_t sp = (pid_t)atoi(pid_text);
        int gone = 0;
        for (int i = 0; i < 100 && !(gone = dead(sp)); i++)
            usleep(10000);
        CHECK(sp > 0 && gone);
        if (!gone && sp > 0)
            kill(sp, SIGKILL);
        free(pid_text);
    }
    ctl_mailer_free(m);
}

#define THREADS 4
#define PER_THREAD 6

static void *sender(void *arg)
{
    ctl_mailer *m = arg;
    intptr_t bad = 0;
    for (int i = 0; i < PER_THREAD; i++) {
        char id[CTL_MAILER_ID_MAX];
        if (ctl_mailer_send(m, "a@b.c", "s", "threaded\n", id, sizeof(id)) != 0)
            bad++;
    }
    return (void *)bad;
}

static void test_threads(void)
{
    char ob[PATH_MAX], script[PATH_MAX];
    CHECK(write_script("sink.sh", "cat >/dev/null", script, sizeof(script)) == 0);
    ctl_mail_cfg c = mk_cfg(ob, sizeof(ob), "outbox-threads", script);
    ctl_mailer *m = NULL;
    CHECK(ctl_mailer_new(&c, &m) == 0);
    if (!m)
        return;
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&th[i], NULL, sender, m) == 0);
    for (int i = 0; i < THREADS; i++) {
        void *bad = NULL;
        pthread_join(th[i], &bad);
        CHECK(bad == NULL);
    }
    CHECK(count_files(ob, ".eml") == THREADS * PER_THREAD);
    ctl_mailer_free(m);
}

static int write_cfg(const char *name, const char *text, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
    return c2d_write_file_atomic(path, text, strlen(text), 0644);
}

#define BROKER "\"broker\":{\"ca_file\":\"a\",\"cert_file\":\"b\",\"key_file\":\"c\"}"

static void test_config(void)
{
    char p[PATH_MAX], err[C2D_ERRMSG_MAX], base[PATH_MAX], want[PATH_MAX + 32];
    ctl_config c;
    CHECK(realpath(dir, base) != NULL);

    /* No "mail": every default, the outbox under data_dir. */
    CHECK(write_cfg("m1.json", "{" BROKER ",\"data_dir\":\"data\"}", p, sizeof(p)) == 0);
    CHECK(ctl_config_load(p, &c, err, sizeof(err)) == 0);
    snprintf(want, sizeof(want), "%s/data/outbox", base);
    CHECK(strcmp(c.mail.outbox_dir, want) == 0);
    CHECK(strcmp(c.mail.from, "cam2drive <noreply@localhost>") == 0);
    CHECK(strcmp(c.mail.sendmail, "") == 0 && strcmp(c.mail.link_base, "") == 0);
    CHECK(c.mail.sendmail_timeout_s == 10);
    ctl_mailer *m = NULL;
    CHECK(ctl_mailer_new(&c.mail, &m) == 0); /* defaults make a working mailer */
    ctl_mailer_free(m);
    ctl_config_free(&c);

    /* Every key; a relative outbox is taken from the file's directory. */
    CHECK(write_cfg("m2.json",
                    "{" BROKER ",\"mail\":{\"outbox_dir\":\"ob\",\"from\":\"x@y.z\","
                    "\"sendmail\":\"/usr/sbin/sendmail -t -i\","
                    "\"link_base\":\"https://portal.example.com\",\"sendmail_timeout_s\":3}}",
                    p, sizeof(p)) == 0);
    CHECK(ctl_config_load(p, &c, err, sizeof(err)) == 0);
    snprintf(want, sizeof(want), "%s/ob", base);
    CHECK(strcmp(c.mail.outbox_dir, want) == 0 && strcmp(c.mail.from, "x@y.z") == 0 &&
          strcmp(c.mail.sendmail, "/usr/sbin/sendmail -t -i") == 0 &&
          strcmp(c.mail.link_base, "https://portal.example.com") == 0 &&
          c.mail.sendmail_timeout_s == 3);
    ctl_config_free(&c);

    /* Errors name the file, "mail" and the key. */
    struct {
        const char *mail, *key;
    } bad[] = {
        {"{\"outbox\":\"x\"}", "outbox"},
        {"{\"outbox_dir\":\"\"}", "outbox_dir"},
        {"{\"outbox_dir\":5}", "outbox_dir"},
        {"{\"from\":\"a@b\\r\\nBcc: c@d\"}", "from"},
        {"{\"from\":\"nobody\"}", "from"},
        {"{\"sendmail\":\"bin/sendmail -t\"}", "sendmail"},
        {"{\"link_base\":\"https://x/\"}", "link_base"},
        {"{\"link_base\":\"javascript:alert(1)\"}", "link_base"},
        {"{\"sendmail_timeout_s\":0}", "sendmail_timeout_s"},
        {"{\"sendmail_timeout_s\":301}", "sendmail_timeout_s"},
        {"[]", "mail"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), "{" BROKER ",\"mail\":%s}", bad[i].mail);
        CHECK(write_cfg("m3.json", text, p, sizeof(p)) == 0);
        err[0] = '\0';
        int rc = ctl_config_load(p, &c, err, sizeof(err));
        CHECK(rc == -1);
        if (rc == 0)
            ctl_config_free(&c);
        else if (!strstr(err, "m3.json: mail") || !strstr(err, bad[i].key))
            fprintf(stderr, "case %zu: unexpected error \"%s\"\n", i, err), failures++;
    }
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/test_mailer.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_addr();
    test_check_cfg();
    test_message();
    test_utf8_subject();
    test_sendmail();
    test_timeout();
    test_threads();
    test_config();
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (failures) {
        fprintf(stderr, "test_mailer: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_mailer: ok\n");
    return 0;
}
