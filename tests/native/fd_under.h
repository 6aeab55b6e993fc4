/*
 * Shared by the LD_PRELOAD shims in this directory: whether a file
 * descriptor's path lies under the part of a path they act on.
 */
#ifndef MINIKAFKA_FD_UNDER_H
#define MINIKAFKA_FD_UNDER_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Whether the path of `fd`, with a slash after it (so that a directory's
 * own descriptor matches too), contains `under`. */
static int fd_is_under(int fd, const char *under) {
    char link[64];
    char path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 2);
    if (n < 0) {
        return 0;
    }
    path[n] = '/';
    path[n + 1] = '\0';
    return strstr(path, under) != NULL;
}

#endif
