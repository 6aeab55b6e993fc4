/*
 * A failing disk, for tests/failing_disk.rs, loaded into the broker with
 * LD_PRELOAD. It acts on files and directories whose path, with a slash
 * after it, contains FAILING_DISK_UNDER, while a switch file exists:
 *
 * - FAILING_DISK_FSYNC_WHILE: fsync and fdatasync fail with EIO, as a
 *   disk's write-back error reaches the one fsync that covers it. The data
 *   itself still reaches the page cache: only the answer is a failure,
 *   which is the case a broker must not believe.
 * - FAILING_DISK_FULL_WHILE: the disk is full. Of each write, about half
 *   reaches the file and the next call on that thread fails with ENOSPC,
 *   as a write that runs out of room part way does, so the broker must cut
 *   the torn part off.
 * - FAILING_DISK_CUT_WHILE: ftruncate fails with EIO, so that cutting a
 *   torn write off fails too.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fd_under.h"

static int should_fail(int fd, const char *switch_variable) {
    const char *switch_file = getenv(switch_variable);
    const char *under = getenv("FAILING_DISK_UNDER");
    if (switch_file == NULL || under == NULL || access(switch_file, F_OK) != 0) {
        return 0;
    }
    return fd_is_under(fd, under);
}

static void *real(const char *name) {
    void *found = dlsym(RTLD_NEXT, name);
    if (found == NULL) {
        fprintf(stderr, "failing_disk: no %s to wrap\n", name);
        abort();
    }
    return found;
}

int fsync(int fd) {
    if (should_fail(fd, "FAILING_DISK_FSYNC_WHILE")) {
        errno = EIO;
        return -1;
    }
    return ((int (*)(int))real("fsync"))(fd);
}

int fdatasync(int fd) {
    if (should_fail(fd, "FAILING_DISK_FSYNC_WHILE")) {
        errno = EIO;
        return -1;
    }
    return ((int (*)(int))real("fdatasync"))(fd);
}

/* Whether this thread's last write to a full disk went through in part:
 * then this one fails. A writer loops on a short write, on its thread. */
static __thread int wrote_part;

/* How many of `len` bytes a full disk takes now; -1 (ENOSPC) for none.
 * A write of nothing takes nothing, as the kernel's does. */
static ssize_t room_for(size_t len) {
    if (len == 0) {
        return 0;
    }
    if (!wrote_part && len > 1) {
        wrote_part = 1;
        return (ssize_t)(len / 2);
    }
    wrote_part = 0;
    errno = ENOSPC;
    return -1;
}

ssize_t write(int fd, const void *buf, size_t len) {
    ssize_t (*write_fn)(int, const void *, size_t) = real("write");
    if (should_fail(fd, "FAILING_DISK_FULL_WHILE")) {
        ssize_t room = room_for(len);
        return room < 0 ? -1 : write_fn(fd, buf, (size_t)room);
    }
    return write_fn(fd, buf, len);
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
    ssize_t (*writev_fn)(int, const struct iovec *, int) = real("writev");
    if (count > 0 && should_fail(fd, "FAILING_DISK_FULL_WHILE")) {
        size_t total = 0;
        for (int i = 0; i < count; i++) {
            total += iov[i].iov_len;
        }
        ssize_t room = room_for(total);
        if (room < 0) {
            return -1;
        }
        /* The first `room` bytes, from the buffers in order. */
        struct iovec part[64];
        int used = 0;
        size_t left = (size_t)room;
        for (int i = 0; i < count && left > 0 && used < 64; i++, used++) {
            part[used] = iov[i];
            if (part[used].iov_len > left) {
                part[used].iov_len = left;
            }
            left -= part[used].iov_len;
        }
        return writev_fn(fd, part, used);
    }
    return writev_fn(fd, iov, count);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t offset) {
    ssize_t (*pwrite_fn)(int, const void *, size_t, off_t) = real("pwrite");
    if (should_fail(fd, "FAILING_DISK_FULL_WHILE")) {
        ssize_t room = room_for(len);
        return room < 0 ? -1 : pwrite_fn(fd, buf, (size_t)room, offset);
    }
    return pwrite_fn(fd, buf, len, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t offset) {
    ssize_t (*pwrite64_fn)(int, const void *, size_t, off64_t) = real("pwrite64");
    if (should_fail(fd, "FAILING_DISK_FULL_WHILE")) {
        ssize_t room = room_for(len);
        return room < 0 ? -1 : pwrite64_fn(fd, buf, (size_t)room, offset);
    }
    return pwrite64_fn(fd, buf, len, offset);
}

int ftruncate(int fd, off_t length) {
    if (should_fail(fd, "FAILING_DISK_CUT_WHILE")) {
        errno = EIO;
        return -1;
    }
    return ((int (*)(int, off_t))real("ftruncate"))(fd, length);
}

int ftruncate64(int fd, off64_t length) {
    if (should_fail(fd, "FAILING_DISK_CUT_WHILE")) {
        errno = EIO;
        return -1;
    }
    return ((int (*)(int, off64_t))real("ftruncate64"))(fd, length);
}
