/* agent/pair.c: a crash while the agent stores a new identity (pairing or
 * renewal) leaves the old identity or the new one, whole, never a mix.
 *
 * A child process stores generation g+1 over generation g and is killed
 * with SIGKILL after a random delay, many times; after each kill the
 * identity that loads must be complete: its device id, certificate, chain
 * and key all of one generation, and that generation g or g+1. Leftover
 * directories of killed attempts are swept by the next successful store.
 * (A kill tests what becomes visible when; the fsyncs before the rename
 * are what makes the same hold across a power cut.) */
#include "agent/pair.h"
#include "check.h"
#include "common/c2d_fs.h"
#include "common/c2d_pki.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 60

static char state_dir[] = "/tmp/test_identity_crash.XXXXXX";

/* Stores generation gen; returns the store's result. */
static int store_gen(c2d_pki *pki, const c2d_pki_key *key, unsigned gen)
{
    char cert[64], chain[64], err[256];
    agent_identity id;
    memset(&id, 0, sizeof(id));
    snprintf(id.device_id, sizeof(id.device_id), "dev-%u", gen);
    snprintf(id.host, sizeof(id.host), "broker.example");
    id.port = 8883;
    snprintf(cert, sizeof(cert), "CERT %u\n", gen);
    snprintf(chain, sizeof(chain), "CHAIN %u\n", gen);
    return agent_identity_store(pki, state_dir, key, cert, chain, &id, err, sizeof(err));
}

static int read_gen(const char *file, const char *word, unsigned *gen)
{
    char path[512], *buf = NULL;
    size_t n;
    snprintf(path, sizeof(path), "%s/%s/%s", state_dir, AGENT_IDENTITY_DIR, file);
    if (c2d_read_file(path, 4096, &buf, &n) != 0)
        return -1;
    int ok = sscanf(buf, "%*s %u", gen) == 1 && strncmp(buf, word, strlen(word)) == 0;
    free(buf);
    return ok ? 0 : -1;
}

/* The loaded identity's generation, checking that every file is of it. */
static int loaded_gen(unsigned *gen)
{
    agent_identity id;
    unsigned g_cert, g_chain;
    if (agent_identity_load(state_dir, &id) != 0 || sscanf(id.device_id, "dev-%u", gen) != 1)
        return -1;
    if (read_gen(AGENT_IDENTITY_CERT, "CERT", &g_cert) != 0 ||
        read_gen(AGENT_IDENTITY_CHAIN, "CHAIN", &g_chain) != 0 || g_cert != *gen || g_chain != *gen)
        return -1;
    char path[512];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/%s/%s", state_dir, AGENT_IDENTITY_DIR, AGENT_IDENTITY_KEY);
    c2d_pki *pki = NULL;
    c2d_pki_key *key = NULL;
    int rc = stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600 ? 0 : -1;
    if (rc == 0 && (c2d_pki_new(&pki) != 0 || c2d_pki_key_load(pki, path, &key) != 0))
        rc = -1;
    c2d_pki_key_free(key);
    c2d_pki_free(pki);
    return rc;
}

static unsigned identity_dirs(void)
{
    unsigned n = 0;
    DIR *d = opendir(state_dir);
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strncmp(e->d_name, AGENT_IDENTITY_DIR ".", strlen(AGENT_IDENTITY_DIR ".")) == 0 &&
             strcmp(e->d_name, AGENT_IDENTITY_DIR ".tmp") != 0;
    closedir(d);
    return n;
}

int main(void)
{
    if (!mkdtemp(state_dir)) {
        perror("mkdtemp");
        return 1;
    }
    c2d_pki *pki = NULL;
    c2d_pki_key *key = NULL;
    CHECK(c2d_pki_new(&pki) == 0);
    CHECK(c2d_pki_key_generate(pki, &key) == 0);
    unsigned gen = 1, got = 0;
    /* How long one store takes on this machine (fsyncs: from well under a
     * millisecond to tens on a busy disk): the kills spread over 1.5 times
     * that, so that some land before the swap and some after. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(store_gen(pki, key, gen) == 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long store_us = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
    long spread_us = store_us * 3 / 2 + 50;
    CHECK(loaded_gen(&got) == 0 && got == gen);

    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    unsigned old_kept = 0, new_seen = 0;
    for (int r = 0; r < ROUNDS; r++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(store_gen(pki, key, gen + 1) == 0 ? 0 : 1);
        CHECK(pid > 0);
        /* Anywhere from before the first file to after the rename. */
        long us = rand() % spread_us;
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (loaded_gen(&got) != 0) {
            fprintf(stderr, "round %d: the identity does not load whole\n", r);
            CHECK(0);
            break;
        }
        CHECK(got == gen || got == gen + 1);
        if (got == gen + 1) {
            gen++;
            new_seen++;
        } else {
            old_kept++;
        }
    }
    /* Both outcomes happened (the kill landed before and after the swap). */
    fprintf(stderr, "store %ld us; old kept %u, new in force %u of %d kills\n", store_us, old_kept,
            new_seen, ROUNDS);
    CHECK(old_kept > 0 && new_seen > 0);

    /* The next store sweeps what killed attempts left. */
    CHECK(store_gen(pki, key, gen + 1) == 0);
    CHECK(loaded_gen(&got) == 0 && got == gen + 1);
    CHECK(identity_dirs() == 1);

    c2d_pki_key_free(key);
    c2d_pki_free(pki);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", state_dir);
    CHECK(system(cmd) == 0);
    return check_result();
}
