/* A disk that fills up, for tests/test_faults.py: loaded with LD_PRELOAD into a training process.
 *
 * While $TEST_DISK_FULL_DIR is set (the process sets it when the fault should start), writes into files
 * under that folder get $TEST_DISK_FULL_FREE bytes in all (default 0), then fail with ENOSPC, as on a real
 * full disk: a write that does not fit is cut short, the next one fails. Every other write goes through.
 * Covered: write, pwrite, writev, sendfile and copy_file_range (shutil's copies use sendfile).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static long long left = -1; /* bytes still free under the folder, once the fault started */

/* How many of `count` bytes may go to `fd`: all of them, unless `fd` is a file under the full folder. */
static size_t room(int fd, size_t count) {
    const char *dir = getenv("TEST_DISK_FULL_DIR");
    if (dir == NULL || *dir == '\0') return count;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return count;
    path[n] = '\0';
    size_t len = strlen(dir);
    if (strncmp(path, dir, len) != 0 || (path[len] != '/' && path[len] != '\0')) return count;
    if (left < 0) left = atoll(getenv("TEST_DISK_FULL_FREE") ? getenv("TEST_DISK_FULL_FREE") : "0");
    size_t allowed = (long long)count < left ? count : (size_t)left;
    left -= (long long)allowed;
    return allowed;
}

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*sendfile_fn)(int, int, off_t *, size_t);
typedef ssize_t (*copy_fn)(int, off_t *, int, off_t *, size_t, unsigned int);

/* The C library's own function `name`, looked up once. */
#define REAL(type, name) \
    static type real_##name = NULL; \
    if (real_##name == NULL) real_##name = (type)dlsym(RTLD_NEXT, #name)

/* Fail with ENOSPC when none of `count` bytes fit; else `allowed` says how many do. */
#define FULL_IF_NO_ROOM(fd, count) \
    size_t allowed = room((fd), (count)); \
    if (allowed == 0 && (count) > 0) { errno = ENOSPC; return -1; }

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write_fn, write);
    FULL_IF_NO_ROOM(fd, count);
    return real_write(fd, buf, allowed);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite_fn, pwrite);
    FULL_IF_NO_ROOM(fd, count);
    return real_pwrite(fd, buf, allowed, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite_fn, pwrite64);
    FULL_IF_NO_ROOM(fd, count);
    return real_pwrite64(fd, buf, allowed, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL(writev_fn, writev);
    REAL(write_fn, write);
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) total += iov[i].iov_len;
    FULL_IF_NO_ROOM(fd, total);
    if (allowed == total) return real_writev(fd, iov, iovcnt);
    return real_write(fd, iov[0].iov_base, allowed < iov[0].iov_len ? allowed : iov[0].iov_len);
}

ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count) {
    REAL(sendfile_fn, sendfile);
    FULL_IF_NO_ROOM(out_fd, count);
    return real_sendfile(out_fd, in_fd, offset, allowed);
}

ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count) {
    REAL(sendfile_fn, sendfile64);
    FULL_IF_NO_ROOM(out_fd, count);
    return real_sendfile64(out_fd, in_fd, offset, allowed);
}

ssize_t copy_file_range(int fd_in, off_t *off_in, int fd_out, off_t *off_out, size_t len, unsigned int flags) {
    REAL(copy_fn, copy_file_range);
    FULL_IF_NO_ROOM(fd_out, len);
    return real_copy_file_range(fd_in, off_in, fd_out, off_out, allowed, flags);
}
