
/*
 * Copyright (C) aigw authors
 */


#ifndef _T_UNIT_H_INCLUDED_
#define _T_UNIT_H_INCLUDED_


/*
 * What every unit test of t/unit shares: checks counted by group and in
 * all, failures printed (the first T_MAX_FAILURES), memory that fails
 * loudly, and a random sequence that is the same on every platform.  A
 * test #includes the module source it tests, then this file.
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* inline: a test that does not use one is not warned about it */

#ifndef T_MAX_FAILURES
#define T_MAX_FAILURES  20
#endif


static ngx_uint_t  t_passed;
static ngx_uint_t  t_failed;
static ngx_uint_t  t_group_passed;
static ngx_uint_t  t_group_failed;
static const char *t_group;


static ngx_inline void
t_begin(const char *group)
{
    t_group = group;
    t_group_passed = 0;
    t_group_failed = 0;
}


static ngx_inline void
t_end(void)
{
    printf("%s - %s: %lu checks",
           t_group_failed ? "not ok" : "ok", t_group,
           (unsigned long) (t_group_passed + t_group_failed));

    if (t_group_failed) {
        printf(", %lu failed", (unsigned long) t_group_failed);
    }

    printf("\n");
}


static ngx_inline int
t_check(int ok, const char *fmt, ...)
{
    va_list  args;

    if (ok) {
        t_passed++;
        t_group_passed++;
        return 1;
    }

    t_failed++;
    t_group_failed++;

    if (t_failed <= T_MAX_FAILURES) {
        printf("#   %s: ", t_group);
        va_start(args, fmt);
        vprintf(fmt, args);
        va_end(args);
        printf("\n");
    }

    return 0;
}


static ngx_inline void *
t_alloc(size_t n)
{
    void  *p;

    p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }

    return p;
}


/* a copy in memory of exactly its size: a read past it is an ASan report */

static ngx_inline u_char *
t_dup(const u_char *s, size_t n)
{
    u_char  *p;

    p = t_alloc(n);

    if (n) {
        memcpy(p, s, n);
    }

    return p;
}


static ngx_inline ngx_uint_t
t_rand(uint64_t *seed)
{
    /* splitmix64: the same numbers on every platform, unlike rand() */

    uint64_t  z;

    z = (*seed += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return (ngx_uint_t) (z ^ (z >> 31));
}


/* a fixture file, whole, in memory of exactly its size; NULL if unread */

static ngx_inline u_char *
t_read(const char *dir, const char *file, size_t *n)
{
    char     path[1024];
    long     len;
    FILE    *f;
    u_char  *s;

    snprintf(path, sizeof(path), "%s/%s", dir, file);

    f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }

    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);

    s = t_alloc(len);

    if (len && fread(s, 1, len, f) != (size_t) len) {
        fclose(f);
        free(s);
        return NULL;
    }

    fclose(f);
    *n = len;

    return s;
}


#endif /* _T_UNIT_H_INCLUDED_ */
