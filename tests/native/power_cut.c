/*
 * A disk that can lose power, for tests/power_cut.rs, loaded into the
 * broker with LD_PRELOAD. Each fsync or fdatasync of a file or directory
 * whose path, with a slash after it, contains POWER_CUT_UNDER records what
 * that call makes durable, in the directory POWER_CUT_STATE:
 *
 * - a file: a copy of its contents, in `file-<key>`;
 * - a directory: its entries, in `dir-<key>`, one line each:
 *   `f` or `d`, a tab, the entry's key, a tab, its name.
 *
 * A key names one file for good: its inode number and its birth time, so
 * an inode number the filesystem hands out again is another key. After the
 * broker is killed, the test puts the directory back as those records
 * have it, which is what a machine that lost power may be left with: a
 * file as of its last fsync (empty if it had none), a directory's entries
 * as of its last fsync (none if it had none).
 *
 * The copy is taken before the real call, under one lock, so that a
 * record is never older than a call that returned before it was taken.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fd_under.h"

static pthread_mutex_t recording = PTHREAD_MUTEX_INITIALIZER;

static void *real(const char *name) {
    void *found = dlsym(RTLD_NEXT, name);
    if (found == NULL) {
        fprintf(stderr, "power_cut: no %s to wrap\n", name);
        abort();
    }
    return found;
}

/* A record that cannot be written would make the test's verdict a lie. */
static void give_up(const char *what) {
    fprintf(stderr, "power_cut: %s: %s\n", what, strerror(errno));
    abort();
}

static int is_under_root(int fd) {
    const char *under = getenv("POWER_CUT_UNDER");
    return under != NULL && getenv("POWER_CUT_STATE") != NULL && fd_is_under(fd, under);
}

/* `<inode>-<birth seconds>-<birth nanoseconds>` of `name` in `dir_fd`
 * (AT_FDCWD and an absolute path, or "" with AT_EMPTY_PATH for an fd). */
static int key_of(int dir_fd, const char *name, int flags, char *key, size_t size, int *is_dir) {
    struct statx st;
    if (statx(dir_fd, name, flags | AT_SYMLINK_NOFOLLOW, STATX_INO | STATX_TYPE | STATX_BTIME, &st) != 0) {
        return -1;
    }
    if (!(st.stx_mask & STATX_BTIME)) {
        errno = ENOTSUP;
        give_up("this filesystem gives no birth times");
    }
    snprintf(key, size, "%llu-%lld-%u", (unsigned long long)st.stx_ino, (long long)st.stx_btime.tv_sec,
             st.stx_btime.tv_nsec);
    *is_dir = S_ISDIR(st.stx_mode);
    return 0;
}

/* Writes `len` bytes to `fd`, whole. */
static void write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            give_up("writing a record");
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Opens `<state>/<prefix><key>.part`, to be renamed over the record. */
static int open_record(const char *prefix, const char *key, char *part, char *record, size_t size) {
    const char *state = getenv("POWER_CUT_STATE");
    snprintf(record, size, "%s/%s%s", state, prefix, key);
    snprintf(part, size, "%s.part", record);
    int out = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        give_up("creating a record");
    }
    return out;
}

static void finish_record(int out, const char *part, const char *record) {
    if (close(out) != 0 || rename(part, record) != 0) {
        give_up("finishing a record");
    }
}

static void record_file(int fd, const char *key) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    /* A fresh description of the same file: `fd` may be write-only. */
    int in = open(link, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        give_up("reopening a file to copy it");
    }
    char part[4200];
    char record[4200];
    int out = open_record("file-", key, part, record, sizeof record);
    static char buf[1 << 16];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            give_up("copying a file");
        }
        if (n == 0) {
            break;
        }
        write_all(out, buf, (size_t)n);
    }
    close(in);
    finish_record(out, part, record);
}

static void record_dir(int fd, const char *key) {
    int listed = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (listed < 0) {
        give_up("reopening a directory to list it");
    }
    DIR *dir = fdopendir(listed);
    if (dir == NULL) {
        give_up("listing a directory");
    }
    char part[4200];
    char record[4200];
    int out = open_record("dir-", key, part, record, sizeof record);
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) {
            continue;
        }
        char entry_key[128];
        int is_dir = 0;
        if (key_of(dirfd(dir), entry->d_name, 0, entry_key, sizeof entry_key, &is_dir) != 0) {
            /* Gone since readdir saw it: it is not in the listing. */
            continue;
        }
        char line[4400];
        int n = snprintf(line, sizeof line, "%c\t%s\t%s\n", is_dir ? 'd' : 'f', entry_key, entry->d_name);
        write_all(out, line, (size_t)n);
    }
    closedir(dir);
    finish_record(out, part, record);
}

static void record(int fd) {
    char key[128];
    int is_dir = 0;
    if (key_of(fd, "", AT_EMPTY_PATH, key, sizeof key, &is_dir) != 0) {
        give_up("reading a synced file's inode");
    }
    if (is_dir) {
        record_dir(fd, key);
    } else {
        record_file(fd, key);
    }
}

static int synced(int fd, const char *name) {
    if (!is_under_root(fd)) {
        return ((int (*)(int))real(name))(fd);
    }
    pthread_mutex_lock(&recording);
    record(fd);
    int result = ((int (*)(int))real(name))(fd);
    pthread_mutex_unlock(&recording);
    return result;
}

int fsync(int fd) {
    return synced(fd, "fsync");
}

int fdatasync(int fd) {
    return synced(fd, "fdatasync");
}
