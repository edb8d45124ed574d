/* c2d-ca: the broker's PKI from the command line (docs/pki.md).
 *
 *   c2d-ca init --dir DIR --broker-name NAME [--broker-name NAME ...]
 *               [--broker-ip IP ...] [--device-port N] [--pairing-port N]
 *               [--bind ADDR] [--mosquitto-user USER] [--pid-file PATH] [--force]
 *   c2d-ca sign --ca-dir DIR --csr FILE --device-id ID [--days N] --out FILE [--force]
 *   c2d-ca show FILE
 *
 * init writes a root CA, an issuing CA, the broker's and the controller's
 * certificates and a ready-to-run mosquitto.conf with its ACL files; sign
 * makes a device certificate from a CSR; show prints a certificate's CN,
 * serial and validity. Exit status 0, 1 on failure, 2 on bad usage; every
 * error is one line on stderr. */
#include "common/c2d_fs.h"
#include "common/c2d_pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define EXIT_USAGE 2

#define ROOT_CN "cam2drive root CA"
#define ISSUING_CN "cam2drive issuing CA"
#define DEVICE_PORT_DEFAULT 8883
#define PAIRING_PORT_DEFAULT 8884
/* Loopback unless the operator says otherwise: a fresh broker should not be
 * reachable from the network before its configuration has been read. */
#define BIND_DEFAULT "127.0.0.1"

static const char usage_text[] =
    "usage: c2d-ca init --dir DIR --broker-name NAME [--broker-name NAME ...]\n"
    "                   [--broker-ip IP ...] [--device-port N] [--pairing-port N]\n"
    "                   [--bind ADDR] [--mosquitto-user USER] [--pid-file PATH] [--force]\n"
    "       c2d-ca sign --ca-dir DIR --csr FILE --device-id ID [--days N] --out FILE [--force]\n"
    "       c2d-ca show FILE\n";

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage(const char *fmt, ...)
{
    va_list ap;
    fputs("c2d-ca: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (c2d-ca --help)\n", stderr);
    return EXIT_USAGE;
}

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int die(const char *fmt, ...)
{
    va_list ap;
    fputs("c2d-ca: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    return EXIT_FAILURE;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* A value written into mosquitto.conf on one line: no control characters. */
static int conf_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* ---- init ------------------------------------------------------------ */

#define MAX_NAMES C2D_PKI_SAN_MAX

typedef struct {
    const char *dir;
    const char *names[MAX_NAMES];
    size_t n_names;
    const char *ips[MAX_NAMES];
    size_t n_ips;
    long device_port, pairing_port;
    const char *bind;
    const char *user;
    const char *pid_file; /* the controller signals the broker through it */
    int force;
} init_opts;

/* What init writes, in this order (keys first: a certificate without its
 * key is useless, the other way round merely incomplete). */
enum {
    F_CA_KEY,
    F_ISSUING_KEY,
    F_BROKER_KEY,
    F_CONTROLLER_KEY,
    F_CA_CRT,
    F_ISSUING_CRT,
    F_CHAIN,
    F_BROKER_CRT,
    F_CONTROLLER_CRT,
    F_ACL,
    F_ACL_PAIRING,
    F_CONF,
    F_COUNT
};

static const struct {
    const char *name;
    mode_t mode;
} init_files[F_COUNT] = {
    [F_CA_KEY] = {"ca.key", 0600},
    [F_ISSUING_KEY] = {"issuing.key", 0600},
    [F_BROKER_KEY] = {"broker.key", 0600},
    [F_CONTROLLER_KEY] = {"controller.key", 0600},
    [F_CA_CRT] = {"ca.crt", 0644},
    [F_ISSUING_CRT] = {"issuing.crt", 0644},
    [F_CHAIN] = {"chain.crt", 0644},
    [F_BROKER_CRT] = {"broker.crt", 0644},
    [F_CONTROLLER_CRT] = {"controller.crt", 0644},
    [F_ACL] = {"acl", 0644},
    [F_ACL_PAIRING] = {"acl-pairing", 0644},
    [F_CONF] = {"mosquitto.conf", 0644},
};

/* The device listener's ACL. Exact topics rather than c2d/v1/d/%u/#:
 * mosquitto 2.0.11 substitutes %u verbatim, '/' included, and a "#" pattern
 * also matches its parent level, so a CN "rec-b/seg" would get rec-b's seg
 * topic (proto/README.md). The CA only signs safe ids anyway. */
static const char acl_text[] =
    "# Device listener (written by c2d-ca init; docs/pki.md).\n"
    "# The controller reaches everything under c2d/v1.\n"
    "user " C2D_PKI_CONTROLLER_CN "\n"
    "topic readwrite c2d/v1/#\n"
    "\n"
    "# A device (username = its certificate's CN = device id) reaches its own\n"
    "# topics only, each with the direction it needs.\n"
    "pattern write c2d/v1/d/%u/seg\n"
    "pattern read c2d/v1/d/%u/ack\n"
    "pattern read c2d/v1/d/%u/cfg\n"
    "pattern readwrite c2d/v1/d/%u/state\n"
    "pattern write c2d/v1/d/%u/evt\n"
    "pattern write c2d/v1/d/%u/csr\n"
    "pattern read c2d/v1/d/%u/cert\n";

/* The pairing listener's ACL: no user lines, so a pairing client that sends
 * a username (say c2d-controller) gains nothing. Exact topics again: a
 * client id "S/req" gets c2d/v1/pair/S/req/req, not S's req topic. */
static const char acl_pairing_text[] =
    "# Pairing listener (written by c2d-ca init; docs/pki.md).\n"
    "# Anonymous clients; the client id is the recorder's serial.\n"
    "pattern write c2d/v1/pair/%c/req\n"
    "pattern read c2d/v1/pair/%c/resp\n";

static char *conf_text(const init_opts *o, const char *dir)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f)
        return NULL;
    fprintf(f, "# mosquitto 2.0 configuration written by c2d-ca init (docs/pki.md).\n"
               "#\n"
               "# Two listeners with different rules: per_listener_settings true gives each\n"
               "# its own acl_file and allow_anonymous. With false, allow_anonymous would\n"
               "# be global and any anonymous pairing client could claim the username\n"
               "# " C2D_PKI_CONTROLLER_CN " (there is no password file) and get its ACL.\n"
               "per_listener_settings true\n"
               "\n"
               "# Flow control for a fleet (issue 6; docs/decisions.md). The controller\n"
               "# takes every device's segment messages on one connection, so its queue\n"
               "# must hold every recorder's upload window: about 25 messages a recorder\n"
               "# (8 chunks, begin and end per channel, evt, state), more while they\n"
               "# re-send after an ack timeout. The default, 1000, is the windows of\n"
               "# about 40 recorders; past it chunks are dropped and resumed.\n"
               "# While acks keep up, what it holds is the recorders' windows\n"
               "# (window_chunks x chunk_bytes each), far below this number.\n"
               "max_queued_messages 100000\n"
               "max_queued_bytes 0\n"
               "# Our Receive Maximum: QoS 1 messages a client may have in flight to us.\n"
               "# The controller sends one ack per chunk; the default 20 made it wait\n"
               "# for our PUBACKs, which queue behind the chunks we send it.\n"
               "max_inflight_messages 1000\n"
               "# Small acks gate the upload window: Nagle would hold them back.\n"
               "set_tcp_nodelay true\n");
    if (o->user)
        fprintf(f, "user %s\n", o->user);
    if (o->pid_file)
        fprintf(f,
                "# The controller sends SIGHUP through it when it revokes a device\n"
                "# (docs/pairing.md, \"Unpairing\").\n"
                "pid_file %s\n",
                o->pid_file);
    fprintf(f,
            "\n"
            "# Devices and the controller: mutual TLS; the client certificate's CN\n"
            "# is the MQTT username the ACL sees. chain.crt holds the issuing CA\n"
            "# (which signs client certificates) and the root.\n"
            "listener %ld %s\n"
            "cafile %s/chain.crt\n"
            "certfile %s/broker.crt\n"
            "keyfile %s/broker.key\n"
            "tls_version tlsv1.2\n"
            "require_certificate true\n"
            "use_identity_as_username true\n"
            "allow_anonymous false\n"
            "acl_file %s/acl\n"
            "\n"
            "# Pairing: the broker proves itself, the client does not (it has no\n"
            "# certificate yet). Anonymous is allowed here only, with an explicit\n"
            "# client id (the recorder's serial), limited by acl-pairing. No cafile:\n"
            "# a client certificate is neither asked for nor looked at.\n"
            "listener %ld %s\n"
            "certfile %s/broker.crt\n"
            "keyfile %s/broker.key\n"
            "tls_version tlsv1.2\n"
            "require_certificate false\n"
            "allow_anonymous true\n"
            "allow_zero_length_clientid false\n"
            "acl_file %s/acl-pairing\n",
            o->device_port, o->bind, dir, dir, dir, dir, o->pairing_port, o->bind, dir, dir, dir);
    if (fclose(f) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

static int cat2(char **out, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (!s)
        return -ENOMEM;
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    *out = s;
    return 0;
}

static int run_init(const init_opts *o)
{
    int rc = c2d_mkdirs(o->dir, 0700);
    if (rc != 0)
        return die("init: %s: %s", o->dir, strerror(-rc));
    char dir[PATH_MAX];
    if (!realpath(o->dir, dir))
        return die("init: %s: %s", o->dir, strerror(errno));
    if (!conf_safe(dir))
        return die("init: %s: control characters in the path", dir);

    char paths[F_COUNT][PATH_MAX];
    for (int i = 0; i < F_COUNT; i++) {
        struct stat st;
        if (c2d_path_join(paths[i], sizeof(paths[i]), dir, init_files[i].name) != 0)
            return die("init: %s: path too long", dir);
        if (!o->force && lstat(paths[i], &st) == 0)
            return die("init: %s exists (--force replaces all files)", paths[i]);
    }

    c2d_pki *p = NULL;
    c2d_pki_key *k_ca = NULL, *k_iss = NULL, *k_broker = NULL, *k_ctl = NULL;
    c2d_pki_ca *ca_root = NULL, *ca_iss = NULL;
    char *data[F_COUNT] = {0};
    int status = EXIT_FAILURE;
    const char *step = "starting";

    if ((rc = c2d_pki_new(&p)) != 0) {
        die("init: cannot seed the random generator: %s", strerror(-rc));
        goto out;
    }
    step = "keys";
    if ((rc = c2d_pki_key_generate(p, &k_ca)) || (rc = c2d_pki_key_generate(p, &k_iss)) ||
        (rc = c2d_pki_key_generate(p, &k_broker)) || (rc = c2d_pki_key_generate(p, &k_ctl)) ||
        (rc = c2d_pki_key_pem(p, k_ca, &data[F_CA_KEY])) ||
        (rc = c2d_pki_key_pem(p, k_iss, &data[F_ISSUING_KEY])) ||
        (rc = c2d_pki_key_pem(p, k_broker, &data[F_BROKER_KEY])) ||
        (rc = c2d_pki_key_pem(p, k_ctl, &data[F_CONTROLLER_KEY])))
        goto pki_fail;
    step = "root CA";
    if ((rc = c2d_pki_make_root(p, k_ca, ROOT_CN, C2D_PKI_ROOT_DAYS, &data[F_CA_CRT])) ||
        (rc = c2d_pki_ca_parse(p, data[F_CA_CRT], strlen(data[F_CA_CRT]), data[F_CA_KEY],
                               strlen(data[F_CA_KEY]), &ca_root)))
        goto pki_fail;
    step = "issuing CA";
    if ((rc = c2d_pki_make_issuing(p, ca_root, k_iss, ISSUING_CN, C2D_PKI_ISSUING_DAYS,
                                   &data[F_ISSUING_CRT])) ||
        (rc = c2d_pki_ca_parse(p, data[F_ISSUING_CRT], strlen(data[F_ISSUING_CRT]),
                               data[F_ISSUING_KEY], strlen(data[F_ISSUING_KEY]), &ca_iss)))
        goto pki_fail;
    step = "broker certificate";
    char *leaf = NULL;
    if ((rc = c2d_pki_make_server(p, ca_iss, k_broker, o->names[0], o->names, o->n_names, o->ips,
                                  o->n_ips, C2D_PKI_SERVER_DAYS, &leaf)))
        goto pki_fail;
    /* the broker sends its issuer along: clients only trust the root */
    rc = cat2(&data[F_BROKER_CRT], leaf, data[F_ISSUING_CRT]);
    free(leaf);
    if (rc != 0)
        goto nomem;
    step = "controller certificate";
    if ((rc = c2d_pki_make_client(p, ca_iss, k_ctl, C2D_PKI_CONTROLLER_CN, C2D_PKI_CLIENT_DAYS,
                                  &data[F_CONTROLLER_CRT])))
        goto pki_fail;
    if (cat2(&data[F_CHAIN], data[F_ISSUING_CRT], data[F_CA_CRT]) != 0 ||
        !(data[F_ACL] = strdup(acl_text)) || !(data[F_ACL_PAIRING] = strdup(acl_pairing_text)) ||
        !(data[F_CONF] = conf_text(o, dir)))
        goto nomem;

    for (int i = 0; i < F_COUNT; i++) {
        if ((rc = c2d_pki_write_file(p, paths[i], data[i], strlen(data[i]), init_files[i].mode,
                                     o->force ? C2D_PKI_OVERWRITE : 0)) != 0) {
            die("init: %s", c2d_pki_error(p));
            goto out;
        }
    }
    printf("%s: root and issuing CA, broker (%s) and %s certificates, mosquitto.conf\n"
           "run: mosquitto -c %s/mosquitto.conf\n",
           dir, o->names[0], C2D_PKI_CONTROLLER_CN, dir);
    status = EXIT_SUCCESS;
    goto out;
nomem:
    die("init: out of memory");
    goto out;
pki_fail:
    die("init: %s: %s", step, c2d_pki_error(p));
out:
    for (int i = 0; i < F_CA_CRT; i++) /* the keys */
        if (data[i]) {
            memset(data[i], 0, strlen(data[i]));
            free(data[i]);
        }
    for (int i = F_CA_CRT; i < F_COUNT; i++)
        free(data[i]);
    c2d_pki_ca_free(ca_root);
    c2d_pki_ca_free(ca_iss);
    c2d_pki_key_free(k_ca);
    c2d_pki_key_free(k_iss);
    c2d_pki_key_free(k_broker);
    c2d_pki_key_free(k_ctl);
    c2d_pki_free(p);
    return status;
}

static int user_ok(const char *s)
{
    if (!*s || strlen(s) > 32)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == '-'))
            return 0;
    return 1;
}

static int cmd_init(int argc, char **argv)
{
    init_opts o = {.device_port = DEVICE_PORT_DEFAULT,
                   .pairing_port = PAIRING_PORT_DEFAULT,
                   .bind = BIND_DEFAULT};
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"broker-name", required_argument, NULL, 'n'},
        {"broker-ip", required_argument, NULL, 'i'},
        {"device-port", required_argument, NULL, 'D'},
        {"pairing-port", required_argument, NULL, 'P'},
        {"bind", required_argument, NULL, 'b'},
        {"mosquitto-user", required_argument, NULL, 'u'},
        {"pid-file", required_argument, NULL, 'p'},
        {"force", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    int c;
    unsigned char addr[16];
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o.dir = optarg;
            break;
        case 'n':
        case 'i':
            if (o.n_names + o.n_ips >= MAX_NAMES)
                return usage("init: at most %d --broker-name and --broker-ip in all", MAX_NAMES);
            if (c == 'n' && !c2d_pki_dns_name_valid(optarg))
                return usage("init: --broker-name: not a DNS name: \"%s\"", optarg);
            if (c == 'i' && inet_pton(AF_INET, optarg, addr) != 1 &&
                inet_pton(AF_INET6, optarg, addr) != 1)
                return usage("init: --broker-ip: not an IP address: \"%s\"", optarg);
            if (c == 'n')
                o.names[o.n_names++] = optarg;
            else
                o.ips[o.n_ips++] = optarg;
            break;
        case 'D':
        case 'P':
            if (parse_int(optarg, 1, 65535, c == 'D' ? &o.device_port : &o.pairing_port) != 0)
                return usage("init: %s: not a port: \"%s\"",
                             c == 'D' ? "--device-port" : "--pairing-port", optarg);
            break;
        case 'b':
            if (inet_pton(AF_INET, optarg, addr) != 1 && inet_pton(AF_INET6, optarg, addr) != 1)
                return usage("init: --bind: not an IP address: \"%s\"", optarg);
            o.bind = optarg;
            break;
        case 'u':
            if (!user_ok(optarg))
                return usage("init: --mosquitto-user: not a user name: \"%s\"", optarg);
            o.user = optarg;
            break;
        case 'p':
            /* Absolute (mosquitto resolves from its working directory) and
             * one plain line of the configuration. */
            if (optarg[0] != '/' || strcspn(optarg, " \t\r\n#") != strlen(optarg))
                return usage("init: --pid-file: not an absolute path without blanks: \"%s\"",
                             optarg);
            o.pid_file = optarg;
            break;
        case 'f':
            o.force = 1;
            break;
        default:
            return usage("init: bad option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return usage("init: unexpected argument \"%s\"", argv[optind]);
    if (!o.dir || !o.dir[0])
        return usage("init: --dir is required");
    if (o.n_names == 0)
        return usage("init: --broker-name is required (the broker's DNS name, its CN)");
    if (o.device_port == o.pairing_port)
        return usage("init: --device-port and --pairing-port must differ");
    return run_init(&o);
}

/* ---- sign ------------------------------------------------------------ */

static int cmd_sign(int argc, char **argv)
{
    const char *dir = NULL, *csr_path = NULL, *id = NULL, *out = NULL;
    long days = C2D_PKI_DEVICE_DAYS_DEFAULT;
    int force = 0;
    static const struct option opts[] = {
        {"ca-dir", required_argument, NULL, 'd'},
        {"csr", required_argument, NULL, 'c'},
        {"device-id", required_argument, NULL, 'i'},
        {"days", required_argument, NULL, 'n'},
        {"out", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'c':
            csr_path = optarg;
            break;
        case 'i':
            id = optarg;
            break;
        case 'n':
            if (parse_int(optarg, 1, C2D_PKI_DEVICE_DAYS_MAX, &days) != 0)
                return usage("sign: --days must be 1-%d, not \"%s\"", C2D_PKI_DEVICE_DAYS_MAX,
                             optarg);
            break;
        case 'o':
            out = optarg;
            break;
        case 'f':
            force = 1;
            break;
        default:
            return usage("sign: bad option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return usage("sign: unexpected argument \"%s\"", argv[optind]);
    if (!dir || !csr_path || !id || !out)
        return usage("sign: --ca-dir, --csr, --device-id and --out are required");

    char crt_path[PATH_MAX], key_path[PATH_MAX];
    if (c2d_path_join(crt_path, sizeof(crt_path), dir, "issuing.crt") != 0 ||
        c2d_path_join(key_path, sizeof(key_path), dir, "issuing.key") != 0)
        return die("sign: %s: path too long", dir);
    char *csr = NULL, *pem = NULL;
    size_t csr_len;
    int rc = c2d_read_file(csr_path, C2D_PKI_CSR_MAX, &csr, &csr_len);
    if (rc == -EFBIG)
        return die("sign: %s: larger than %d bytes", csr_path, C2D_PKI_CSR_MAX);
    if (rc != 0)
        return die("sign: %s: %s", csr_path, strerror(-rc));

    c2d_pki *p = NULL;
    c2d_pki_ca *ca = NULL;
    int status = EXIT_FAILURE;
    if ((rc = c2d_pki_new(&p)) != 0) {
        die("sign: cannot seed the random generator: %s", strerror(-rc));
        goto out;
    }
    if ((rc = c2d_pki_ca_load(p, crt_path, key_path, &ca)) != 0 ||
        (rc = c2d_pki_sign_csr(p, ca, csr, csr_len, id, (int)days, &pem)) != 0 ||
        (rc = c2d_pki_write_file(p, out, pem, strlen(pem), 0644, force ? C2D_PKI_OVERWRITE : 0)) !=
            0) {
        die("sign: %s", c2d_pki_error(p));
        goto out;
    }
    status = EXIT_SUCCESS;
out:
    free(pem);
    free(csr);
    c2d_pki_ca_free(ca);
    c2d_pki_free(p);
    return status;
}

/* ---- show ------------------------------------------------------------ */

static void print_time(const char *key, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    char buf[32];
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%s=%s\n", key, buf);
}

static int cmd_show(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-')
        return usage("show: one certificate file expected");
    c2d_pki *p = NULL;
    c2d_pki_certinfo info;
    int rc = c2d_pki_new(&p);
    if (rc != 0)
        return die("show: cannot seed the random generator: %s", strerror(-rc));
    rc = c2d_pki_cert_info_file(p, argv[1], &info);
    if (rc != 0) {
        rc = die("show: %s", c2d_pki_error(p));
        c2d_pki_free(p);
        return rc;
    }
    c2d_pki_free(p);
    /* the CN of a certificate someone else made may hold anything */
    printf("cn=");
    for (const char *s = info.cn; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch >= 0x20 && ch < 0x7f && ch != '\\')
            putchar(ch);
        else
            printf("\\x%02x", ch);
    }
    printf("\nserial=%s\n", info.serial);
    print_time("not_before", info.not_before);
    print_time("not_after", info.not_after);
    printf("ca=%s\n", info.is_ca ? "true" : "false");
    return fflush(stdout) == 0 ? EXIT_SUCCESS : die("show: stdout: %s", strerror(errno));
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage("a command is required");
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        fputs(usage_text, stdout);
        return EXIT_SUCCESS;
    }
    /* each command parses its own options from argv[1] on; getopt's own
     * messages are off so that every error is our one line */
    argv++, argc--;
    opterr = 0;
    if (strcmp(cmd, "init") == 0)
        return cmd_init(argc, argv);
    if (strcmp(cmd, "sign") == 0)
        return cmd_sign(argc, argv);
    if (strcmp(cmd, "show") == 0)
        return cmd_show(argc, argv);
    return usage("unknown command \"%s\"", cmd);
}
