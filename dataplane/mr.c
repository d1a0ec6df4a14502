/* Memory regions: mmap (anonymous or memfd), optional huge pages. */
#define _GNU_SOURCE
#include "mr.h"

#include "common/st_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A shared region's size is sealed: a peer that maps it can then trust
 * that the file will not shrink under the mapping (which would turn its
 * next access into SIGBUS). */
#define MR_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static uint32_t next_key = 1;

static st_mr *mr_new(uint8_t *addr, size_t len, int flags, int fd, int owned)
{
    st_mr *mr = st_xcalloc(1, sizeof *mr);
    mr->addr = addr;
    mr->len = len;
    mr->flags = flags;
    mr->fd = fd;
    mr->owned = owned;
    mr->key = __atomic_fetch_add(&next_key, 1, __ATOMIC_RELAXED);
    return mr;
}

int st_mr_alloc(size_t len, int flags, st_mr **out)
{
    *out = NULL;
    if (len == 0 || len > ((size_t)1 << 40))
        return st_err(ST_EINVAL, "mr: region of %zu bytes", len);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t huge = (size_t)2 << 20;
    len = ST_ALIGN_UP(len, (flags & ST_MR_HUGEPAGE) ? huge : page);
    int fd = -1;
    void *p;
    if (flags & ST_MR_SHARED) {
        /* hugetlbfs first when asked (needs reserved huge pages), else a
         * plain memfd, which madvise below may still back with THP */
        fd = (flags & ST_MR_HUGEPAGE) ? memfd_create("strait-mr", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB) : -1;
        if (fd >= 0 && ftruncate(fd, (off_t)len) == 0 && fcntl(fd, F_ADD_SEALS, MR_SEALS) == 0) {
            p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED)
                goto mapped;
        }
        if (fd >= 0)
            close(fd);
        fd = memfd_create("strait-mr", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
            return st_err(ST_EIO, "mr: memfd_create: %s", strerror(errno));
        if (ftruncate(fd, (off_t)len) != 0 || fcntl(fd, F_ADD_SEALS, MR_SEALS) != 0) {
            int e = errno;
            close(fd);
            return st_err(ST_EIO, "mr: size and seal a %zu-byte memfd: %s", len, strerror(e));
        }
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    } else {
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    }
    if (p == MAP_FAILED) {
        if (fd >= 0)
            close(fd);
        return st_err(ST_ENOMEM, "mr: mmap %zu bytes: %s", len, strerror(errno));
    }
mapped:
    if (flags & ST_MR_HUGEPAGE)
        (void)madvise(p, len, MADV_HUGEPAGE); /* a hint: ignored where THP is off */
    if (flags & ST_MR_PREFAULT)
        for (size_t i = 0; i < len; i += page)
            ((volatile uint8_t *)p)[i] = 0;
    *out = mr_new(p, len, flags, fd, 1);
    return ST_OK;
}

int st_mr_register(void *addr, size_t len, st_mr **out)
{
    *out = NULL;
    if (!addr || len == 0)
        return st_err(ST_EINVAL, "mr: register %p + %zu", addr, len);
    *out = mr_new(addr, len, 0, -1, 0);
    return ST_OK;
}

int st_mr_import(int fd, size_t len, st_mr **out)
{
    *out = NULL;
    /* the fd comes from another process: map it only if it is a file at
     * least len bytes long whose size is sealed against shrinking */
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || len == 0 || (uint64_t)st.st_size < len) {
        close(fd);
        return st_err(ST_EPROTO, "mr: shared region is not a file of at least %zu bytes", len);
    }
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
        close(fd);
        return st_err(ST_EPROTO, "mr: shared region of %zu bytes is not sealed against shrinking", len);
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return st_err(ST_EIO, "mr: map shared region of %zu bytes: %s", len, strerror(errno));
    }
    *out = mr_new(p, len, ST_MR_SHARED, fd, 1);
    return ST_OK;
}

void st_mr_free(st_mr *mr)
{
    if (!mr)
        return;
    if (mr->owned)
        munmap(mr->addr, mr->len);
    if (mr->fd >= 0)
        close(mr->fd);
    free(mr);
}

int st_mr_contains(const st_mr *mr, const void *p, size_t n)
{
    const uint8_t *b = p;
    return mr && b >= mr->addr && n <= mr->len && (size_t)(b - mr->addr) <= mr->len - n;
}
