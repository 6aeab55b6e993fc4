/*
 * A disk that fails fsync, for tests/failing_disk.rs, loaded into the
 * broker with LD_PRELOAD. While the file named by FAIL_FSYNC_WHILE exists,
 * fsync and fdatasync of any file or directory whose path, with a slash
 * after it, contains FAIL_FSYNC_UNDER
 * fail with EIO, as a disk's write-back error reaches the one fsync that
 * covers it. The data itself still reaches the page cache: only the
 * answer is a failure, which is the case a broker must not believe.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int should_fail(int fd) {
    const char *switch_file = getenv("FAIL_FSYNC_WHILE");
    const char *under = getenv("FAIL_FSYNC_UNDER");
    if (switch_file == NULL || under == NULL || access(switch_file, F_OK) != 0) {
        return 0;
    }
    char link[64];
    char path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 2);
    if (n < 0) {
        return 0;
    }
    /* A trailing slash, so that a directory's own fsync matches too. */
    path[n] = '/';
    path[n + 1] = '\0';
    return strstr(path, under) != NULL;
}

typedef int (*sync_fn)(int);

static int call_real(const char *name, int fd) {
    sync_fn real = (sync_fn)dlsym(RTLD_NEXT, name);
    return real == NULL ? (errno = ENOSYS, -1) : real(fd);
}

int fsync(int fd) {
    if (should_fail(fd)) {
        errno = EIO;
        return -1;
    }
    return call_real("fsync", fd);
}

int fdatasync(int fd) {
    if (should_fail(fd)) {
        errno = EIO;
        return -1;
    }
    return call_real("fdatasync", fd);
}
