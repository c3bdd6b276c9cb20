
/*
 * Copyright (C) aigw authors
 */


/*
 * The audit log's writer.  One worker at a time (its pid in the zone)
 * posts a task to an nginx thread pool that takes the ready lines of the
 * ring in order, appends them to the segment and its index, syncs them,
 * adds their leaves to the Merkle tree, and then writes the state and a
 * signed checkpoint.  Only then are the slots given back: a worker that
 * dies mid-batch leaves the ring as it was, and the next writer cuts the
 * segment back to what the zone says is on disk and writes them again.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_aigw_module.h"
#include "ngx_http_aigw_audit.h"


#if (NGX_THREADS)

#define NGX_HTTP_AIGW_AUDIT_BATCH      (4 * 1024 * 1024)

/* an index line is at most its record's length and 64 bytes */
#define NGX_HTTP_AIGW_AUDIT_IDX        (2 * NGX_HTTP_AIGW_AUDIT_BATCH)


typedef struct {
    ngx_http_aigw_audit_conf_t    *acf;
    ngx_thread_pool_t             *pool;
    ngx_thread_task_t             *task;
    u_char                        *buf;        /* the batch's lines */
    u_char                        *idx;        /* and their index */
    EVP_MD_CTX                    *md;
    ngx_uint_t                     posted;
    ngx_int_t                      rc;
    time_t                         retry;      /* after a failed batch */
} ngx_http_aigw_audit_thread_t;


static void ngx_http_aigw_audit_writer_handler(void *data, ngx_log_t *log);
static void ngx_http_aigw_audit_writer_done(ngx_event_t *ev);
static ngx_int_t ngx_http_aigw_audit_batch(ngx_http_aigw_audit_thread_t *t,
    ngx_log_t *log);
static ngx_int_t ngx_http_aigw_audit_load(ngx_http_aigw_audit_thread_t *t,
    ngx_http_aigw_audit_tree_t *tree, ngx_log_t *log);
static ngx_int_t ngx_http_aigw_audit_tree_add(ngx_http_aigw_audit_thread_t *t,
    ngx_http_aigw_audit_tree_t *tree, u_char *leaf);
static ngx_int_t ngx_http_aigw_audit_root(ngx_http_aigw_audit_thread_t *t,
    ngx_http_aigw_audit_tree_t *tree, u_char *root);
static u_char *ngx_http_aigw_audit_index(u_char *p, u_char *line,
    size_t len, uint64_t leaf, off_t offset, u_char *hash);
static ngx_int_t ngx_http_aigw_audit_save(ngx_http_aigw_audit_thread_t *t,
    ngx_http_aigw_audit_tree_t *tree, ngx_log_t *log);
static ngx_int_t ngx_http_aigw_audit_start(ngx_http_aigw_audit_thread_t *t,
    ngx_http_aigw_audit_tree_t *tree, ngx_log_t *log);
static ngx_int_t ngx_http_aigw_audit_checkpoint(
    ngx_http_aigw_audit_thread_t *t, ngx_http_aigw_audit_tree_t *tree,
    ngx_log_t *log);
static ngx_fd_t ngx_http_aigw_audit_open(ngx_http_aigw_audit_conf_t *acf,
    ngx_uint_t segment, const char *ext, off_t offset, ngx_log_t *log);


ngx_int_t
ngx_http_aigw_audit_writer_init(ngx_cycle_t *cycle,
    ngx_http_aigw_audit_conf_t *acf)
{
    ngx_http_aigw_audit_thread_t  *t;

    t = ngx_pcalloc(cycle->pool, sizeof(ngx_http_aigw_audit_thread_t));
    if (t == NULL) {
        return NGX_ERROR;
    }

    t->acf = acf;

    t->pool = ngx_thread_pool_get(cycle, &acf->thread_pool);
    if (t->pool == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "aigw: thread pool \"%V\" not found",
                      &acf->thread_pool);
        return NGX_ERROR;
    }

    t->task = ngx_thread_task_alloc(cycle->pool, 0);
    t->buf = ngx_palloc(cycle->pool, NGX_HTTP_AIGW_AUDIT_BATCH);
    t->idx = ngx_palloc(cycle->pool, NGX_HTTP_AIGW_AUDIT_IDX);
    t->md = EVP_MD_CTX_new();

    if (t->task == NULL || t->buf == NULL || t->idx == NULL || t->md == NULL)
    {
        return NGX_ERROR;
    }

    t->task->handler = ngx_http_aigw_audit_writer_handler;
    t->task->ctx = t;
    t->task->event.handler = ngx_http_aigw_audit_writer_done;
    t->task->event.data = t;

    acf->thread = t;

    return NGX_OK;
}


/* the writer's role: free, or held by a worker that is gone */

static ngx_int_t
ngx_http_aigw_audit_lock(ngx_http_aigw_audit_sh_t *sh)
{
    ngx_pid_t  pid;

    pid = (ngx_pid_t) sh->writer;

    if (pid == ngx_pid) {
        return NGX_OK;
    }

    if (pid != 0 && (kill(pid, 0) == 0 || ngx_errno != NGX_ESRCH)) {
        return NGX_BUSY;
    }

    if (ngx_atomic_cmp_set(&sh->writer, pid, ngx_pid)) {
        return NGX_OK;
    }

    return NGX_BUSY;
}


static void
ngx_http_aigw_audit_unlock(ngx_http_aigw_audit_sh_t *sh)
{
    (void) ngx_atomic_cmp_set(&sh->writer, ngx_pid, 0);
}


void
ngx_http_aigw_audit_writer_kick(ngx_http_aigw_audit_conf_t *acf)
{
    ngx_http_aigw_audit_sh_t      *sh;
    ngx_http_aigw_audit_thread_t  *t;

    t = acf->thread;
    sh = acf->sh;

    if (t == NULL || t->posted || (sh->loaded && sh->head == sh->tail)
        || t->retry > ngx_time())
    {
        return;
    }

    if (ngx_http_aigw_audit_lock(sh) != NGX_OK) {
        return;
    }

    if (ngx_thread_task_post(t->pool, t->task) != NGX_OK) {
        ngx_http_aigw_audit_unlock(sh);
        return;
    }

    t->posted = 1;
}


static void
ngx_http_aigw_audit_writer_handler(void *data, ngx_log_t *log)
{
    ngx_http_aigw_audit_thread_t  *t = data;

    t->rc = ngx_http_aigw_audit_batch(t, log);
}


static void
ngx_http_aigw_audit_writer_done(ngx_event_t *ev)
{
    ngx_http_aigw_audit_thread_t  *t = ev->data;

    t->posted = 0;
    ngx_http_aigw_audit_unlock(t->acf->sh);

    /* a disk that fails is tried again a second later, not at once */

    if (t->rc != NGX_OK) {
        t->retry = ngx_time() + 1;
    }
}


/*
 * A worker exits (reload, stop): what is in the ring is written now, as
 * no event loop is left to wait for; its task, if one was posted, ran
 * before the thread pool stopped.
 */

void
ngx_http_aigw_audit_writer_exit(ngx_cycle_t *cycle,
    ngx_http_aigw_audit_conf_t *acf)
{
    ngx_uint_t                     n;
    ngx_http_aigw_audit_thread_t  *t;

    t = acf->thread;

    if (t == NULL || acf->sh == NULL) {
        return;
    }

    for (n = 0; n < 64; n++) {
        ngx_http_aigw_audit_release(acf);

        if (acf->sh->head == acf->sh->tail
            || ngx_http_aigw_audit_lock(acf->sh) != NGX_OK
            || ngx_http_aigw_audit_batch(t, cycle->log) != NGX_OK)
        {
            break;
        }
    }

    if (acf->held) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "aigw: %ui audit records lost at exit", acf->held);
    }

    ngx_http_aigw_audit_unlock(acf->sh);
}


/* one batch: the ready lines on disk, then the tree, state, checkpoint */

static ngx_int_t
ngx_http_aigw_audit_batch(ngx_http_aigw_audit_thread_t *t, ngx_log_t *log)
{
    u_char                        *p, *x;
    off_t                          offset;
    ssize_t                        n;
    uint64_t                       seq, head;
    ngx_fd_t                       fd, ifd;
    ngx_uint_t                     count;
    ngx_http_aigw_audit_sh_t      *sh;
    ngx_http_aigw_audit_slot_t    *slot;
    ngx_http_aigw_audit_conf_t    *acf;
    ngx_http_aigw_audit_tree_t     tree;

    acf = t->acf;
    sh = acf->sh;

    tree = sh->tree;

    if (!sh->loaded) {
        if (ngx_http_aigw_audit_load(t, &tree, log) != NGX_OK) {
            return NGX_ERROR;
        }

        sh->tree = tree;
        sh->loaded = 1;
    }

    /* the ready lines, in order, as many as the batch takes */

    p = t->buf;
    x = t->idx;
    offset = tree.offset;
    count = 0;

    head = sh->head;

    for (seq = sh->tail; seq < head; seq++) {
        slot = &sh->slots[seq % sh->nslots];

        if (slot->seq != seq + 1) {
            if (sh->stall_seq != seq + 1) {
                sh->stall_seq = seq + 1;
                sh->stall_time = ngx_time();
                break;
            }

            if (ngx_time() - sh->stall_time < NGX_HTTP_AIGW_AUDIT_STALL) {
                break;
            }

            /* its worker died between taking the number and the flag */

            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "aigw: audit record %uL never filled, skipped",
                          seq);
            continue;
        }

        ngx_memory_barrier();

        if ((size_t) (t->buf + NGX_HTTP_AIGW_AUDIT_BATCH - p) < slot->len
            || (size_t) (t->idx + NGX_HTTP_AIGW_AUDIT_IDX - x)
               < slot->len + 64)
        {
            break;
        }

        x = ngx_http_aigw_audit_index(x, slot->line, slot->len, tree.size,
                                      offset, slot->leaf);
        p = ngx_cpymem(p, slot->line, slot->len);
        offset += slot->len;

        if (ngx_http_aigw_audit_tree_add(t, &tree, slot->leaf) != NGX_OK) {
            return NGX_ERROR;
        }

        count++;
    }

    if (seq == sh->tail) {
        return NGX_OK;
    }

    /* the segment and its index, cut back to what is known on disk */

    fd = ngx_http_aigw_audit_open(acf, tree.segment, "log", tree.offset, log);
    if (fd == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    n = pwrite(fd, t->buf, p - t->buf, tree.offset);

    if (n != p - t->buf || fdatasync(fd) == -1) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "aigw: audit segment %06ui not written", tree.segment);
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    (void) ngx_close_file(fd);

    ifd = ngx_http_aigw_audit_open(acf, tree.segment, "idx", tree.idx_offset,
                                   log);
    if (ifd == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    n = pwrite(ifd, t->idx, x - t->idx, tree.idx_offset);

    if (n != x - t->idx || fdatasync(ifd) == -1) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "aigw: audit index %06ui not written", tree.segment);
        (void) ngx_close_file(ifd);
        return NGX_ERROR;
    }

    (void) ngx_close_file(ifd);

    tree.offset = offset;
    tree.idx_offset += x - t->idx;

    /* on disk: now the state and the signed checkpoint say so */

    if (ngx_http_aigw_audit_checkpoint(t, &tree, log) != NGX_OK) {
        return NGX_ERROR;
    }

    if (tree.offset >= acf->segment_size) {
        tree.segment++;
        tree.offset = 0;
        tree.idx_offset = 0;

        if (ngx_http_aigw_audit_start(t, &tree, log) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_aigw_audit_save(t, &tree, log) != NGX_OK) {
        return NGX_ERROR;
    }

    /* retention: whole leading segments only, and said */

    while (acf->keep && tree.segment - tree.first >= acf->keep) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "aigw: audit retention drops segment %06ui",
                      tree.first);

        tree.first++;

        if (ngx_http_aigw_audit_save(t, &tree, log) != NGX_OK) {
            return NGX_ERROR;
        }

        (void) ngx_http_aigw_audit_open(acf, tree.first - 1, NULL, 0, log);
    }

    sh->tree = tree;
    (void) ngx_atomic_fetch_add(&sh->written, count);

    ngx_memory_barrier();

    sh->tail = seq;

    return NGX_OK;
}


/*
 * A segment's file ("log", "idx", "start"), opened to write at offset:
 * anything past it is a batch of a writer that died, and goes (an
 * offset of -1 keeps all).  With
 * ext NULL, the segment's files are removed.
 */

static ngx_fd_t
ngx_http_aigw_audit_open(ngx_http_aigw_audit_conf_t *acf, ngx_uint_t segment,
    const char *ext, off_t offset, ngx_log_t *log)
{
    u_char           name[NGX_MAX_PATH];
    ngx_fd_t         fd;
    ngx_uint_t       i;
    ngx_file_info_t  fi;

    static const char  *exts[] = { "log", "idx", "start" };

    if (acf->dir.len + 32 > NGX_MAX_PATH) {
        return NGX_INVALID_FILE;
    }

    if (ext == NULL) {
        for (i = 0; i < 3; i++) {
            ngx_sprintf(name, "%Vaudit-%06ui.%s%Z", &acf->dir, segment,
                        exts[i]);
            (void) ngx_delete_file(name);
        }

        return NGX_INVALID_FILE;
    }

    ngx_sprintf(name, "%Vaudit-%06ui.%s%Z", &acf->dir, segment, ext);

    fd = ngx_open_file(name, NGX_FILE_RDWR, NGX_FILE_CREATE_OR_OPEN, 0640);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", name);
        return NGX_INVALID_FILE;
    }

    if (offset >= 0 && ngx_fd_info(fd, &fi) != NGX_FILE_ERROR
        && ngx_file_size(&fi) > offset)
    {
        if (ftruncate(fd, offset) == -1) {
            ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                          "ftruncate(\"%s\") failed", name);
            (void) ngx_close_file(fd);
            return NGX_INVALID_FILE;
        }
    }

    return fd;
}


/* RFC 6962: the right edge of the tree, one subtree root a bit of size */

static ngx_int_t
ngx_http_aigw_audit_tree_add(ngx_http_aigw_audit_thread_t *t,
    ngx_http_aigw_audit_tree_t *tree, u_char *leaf)
{
    uint64_t  s;

    if (tree->nstack >= NGX_HTTP_AIGW_AUDIT_DEPTH) {
        return NGX_ERROR;
    }

    ngx_memcpy(tree->stack[tree->nstack++], leaf, 32);
    tree->size++;

    for (s = tree->size; (s & 1) == 0; s >>= 1) {
        if (ngx_http_aigw_audit_hash(t->md, t->acf->sha256, 0x01,
                                     tree->stack[tree->nstack - 2], 32,
                                     tree->stack[tree->nstack - 1], 32,
                                     tree->stack[tree->nstack - 2])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        tree->nstack--;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigw_audit_root(ngx_http_aigw_audit_thread_t *t,
    ngx_http_aigw_audit_tree_t *tree, u_char *root)
{
    ngx_int_t  i;

    if (tree->nstack == 0) {
        return ngx_http_aigw_audit_hash(t->md, t->acf->sha256, -1, NULL, 0,
                                        NULL, 0, root);
    }

    ngx_memcpy(root, tree->stack[tree->nstack - 1], 32);

    for (i = tree->nstack - 2; i >= 0; i--) {
        if (ngx_http_aigw_audit_hash(t->md, t->acf->sha256, 0x01,
                                     tree->stack[i], 32, root, 32, root)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * An index line: leaf, ts, tenant (as escaped in the record), offset, and
 * the leaf hash's first 8 bytes, by which a verifier names an edited line.
 * A record starts {"v":1,"ts":N,"tenant":"..." as audit.c writes it; a
 * marker record has no tenant.
 */

static u_char *
ngx_http_aigw_audit_index(u_char *p, u_char *line, size_t len, uint64_t leaf,
    off_t offset, u_char *hash)
{
    u_char  *s, *e, *last;

    last = line + len;

    p = ngx_sprintf(p, "%uL\t", leaf);

    s = line + sizeof("{\"v\":1,\"ts\":") - 1;

    while (s < last && *s >= '0' && *s <= '9') {
        *p++ = *s++;
    }

    *p++ = '\t';

    if (last - s > 11 && ngx_strncmp(s, ",\"tenant\":\"", 11) == 0) {
        s += 11;

        for (e = s; e < last && *e != '"'; e++) {
            if (*e == '\\') {
                e++;
            }
        }

        if (e <= last) {
            p = ngx_cpymem(p, s, e - s);
        }
    }

    p = ngx_sprintf(p, "\t%O\t", offset);
    p = ngx_hex_dump(p, hash, 8);
    *p++ = '\n';

    return p;
}


/*
 * "state": what the writer knows is on disk, rewritten (a new file,
 * synced, renamed) after every batch:
 *
 *   aigw-audit-state 1
 *   size N
 *   segment S
 *   first F
 *   offset O
 *   idx_offset I
 *   stack HEX HEX ...
 */

static ngx_int_t
ngx_http_aigw_audit_save(ngx_http_aigw_audit_thread_t *t,
    ngx_http_aigw_audit_tree_t *tree, ngx_log_t *log)
{
    u_char      buf[512 + NGX_HTTP_AIGW_AUDIT_DEPTH * 65], *p;
    ngx_uint_t  i;

    p = ngx_sprintf(buf, "aigw-audit-state 1\nsize %uL\nsegment %ui\n"
                    "first %ui\noffset %O\nidx_offset %O\nstack",
                    tree->size, tree->segment, tree->first, tree->offset,
                    tree->idx_offset);

    for (i = 0; i < tree->nstack; i++) {
        *p++ = ' ';
        p = ngx_hex_dump(p, tree->stack[i], 32);
    }

    *p++ = '\n';

    return ngx_http_aigw_audit_replace(t->acf, "state", buf, p - buf, log);
}


/* a segment's ".start": the tree where it begins, so that a verifier
 * can go on from it when earlier segments are gone */

static ngx_int_t
ngx_http_aigw_audit_start(ngx_http_aigw_audit_thread_t *t,
    ngx_http_aigw_audit_tree_t *tree, ngx_log_t *log)
{
    u_char      buf[64 + NGX_HTTP_AIGW_AUDIT_DEPTH * 65], *p;
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_uint_t  i;

    p = ngx_sprintf(buf, "size %uL\nstack", tree->size);

    for (i = 0; i < tree->nstack; i++) {
        *p++ = ' ';
        p = ngx_hex_dump(p, tree->stack[i], 32);
    }

    *p++ = '\n';

    fd = ngx_http_aigw_audit_open(t->acf, tree->segment, "start", 0, log);
    if (fd == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    n = pwrite(fd, buf, p - buf, 0);

    if (n != p - buf || fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "aigw: audit segment start not written");
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    (void) ngx_close_file(fd);

    return NGX_OK;
}


/* a small file replaced whole: written aside, synced, renamed */

ngx_int_t
ngx_http_aigw_audit_replace(ngx_http_aigw_audit_conf_t *acf,
    const char *name, u_char *data, size_t len, ngx_log_t *log)
{
    u_char    tmp[NGX_MAX_PATH], to[NGX_MAX_PATH];
    ssize_t   n;
    ngx_fd_t  fd;

    if (acf->dir.len + 32 > NGX_MAX_PATH) {
        return NGX_ERROR;
    }

    ngx_sprintf(tmp, "%V%s.tmp%Z", &acf->dir, name);
    ngx_sprintf(to, "%V%s%Z", &acf->dir, name);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE, 0640);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", tmp);
        return NGX_ERROR;
    }

    n = write(fd, data, len);

    if (n != (ssize_t) len || fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      "aigw: \"%s\" not written", tmp);
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    (void) ngx_close_file(fd);

    if (ngx_rename_file(tmp, to) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                      ngx_rename_file_n " \"%s\" failed", tmp);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The checkpoint, a C2SP signed note (tlog-checkpoint):
 *
 *   <origin>\n<size>\n<base64 root>\n\n
 *   \u2014 <origin> <base64(key hash[4] || Ed25519 signature[64])>\n
 *
 * The signature is over the first three lines, newlines included.
 * Without sign_key= the note has no signature line.
 */

static ngx_int_t
ngx_http_aigw_audit_checkpoint(ngx_http_aigw_audit_thread_t *t,
    ngx_http_aigw_audit_tree_t *tree, ngx_log_t *log)
{
    u_char                       buf[2 * NGX_HTTP_AIGW_AUDIT_FIELD + 256];
    u_char                       root[32], sig[68], *p;
    size_t                       siglen;
    ngx_str_t                    src, dst;
    EVP_MD_CTX                  *sctx;
    ngx_http_aigw_audit_conf_t  *acf;

    acf = t->acf;

    if (ngx_http_aigw_audit_root(t, tree, root) != NGX_OK) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(buf, "%V\n%uL\n", &acf->origin, tree->size);

    src.data = root;
    src.len = 32;
    dst.data = p;
    ngx_encode_base64(&dst, &src);
    p += dst.len;
    *p++ = '\n';

    if (acf->sign_key) {
        ngx_memcpy(sig, acf->key_id, 4);
        siglen = 64;

        sctx = EVP_MD_CTX_new();

        if (sctx == NULL
            || EVP_DigestSignInit(sctx, NULL, NULL, NULL, acf->sign_key) != 1
            || EVP_DigestSign(sctx, sig + 4, &siglen, buf, p - buf) != 1
            || siglen != 64)
        {
            EVP_MD_CTX_free(sctx);
            ngx_log_error(NGX_LOG_CRIT, log, 0,
                          "aigw: audit checkpoint not signed");
            return NGX_ERROR;
        }

        EVP_MD_CTX_free(sctx);

        p = ngx_sprintf(p, "\n\xe2\x80\x94 %V ", &acf->origin);

        src.data = sig;
        src.len = 68;
        dst.data = p;
        ngx_encode_base64(&dst, &src);
        p += dst.len;
        *p++ = '\n';
    }

    return ngx_http_aigw_audit_replace(acf, "checkpoint", buf, p - buf, log);
}


/*
 * The first batch of a zone (nginx started): the tree from "state", and
 * the segment checked against it.  Whole lines past the state's offset
 * were synced by a writer that had no time to say so: their leaves are
 * added.  A last line without its newline is a torn write (power lost):
 * it is cut, and a record that says so takes its place in the tree.
 */

static ngx_int_t
ngx_http_aigw_audit_load(ngx_http_aigw_audit_thread_t *t,
    ngx_http_aigw_audit_tree_t *tree, ngx_log_t *log)
{
    u_char                      *p, *s, *e, *last, name[NGX_MAX_PATH];
    u_char                       leaf[32];
    off_t                        size, off;
    ssize_t                      n;
    ngx_fd_t                     fd;
    ngx_uint_t                   i;
    ngx_file_info_t              fi;
    ngx_http_aigw_audit_conf_t  *acf;

    acf = t->acf;

    ngx_memzero(tree, sizeof(ngx_http_aigw_audit_tree_t));

    ngx_sprintf(name, "%Vstate%Z", &acf->dir);

    fd = ngx_open_file(name, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        if (ngx_errno != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_CRIT, log, ngx_errno,
                          ngx_open_file_n " \"%s\" failed", name);
            return NGX_ERROR;
        }

        /* a new log, unless segments say otherwise: never written over */

        ngx_sprintf(name, "%Vaudit-000001.start%Z", &acf->dir);

        if (ngx_file_info(name, &fi) != NGX_FILE_ERROR
            || ngx_errno != NGX_ENOENT)
        {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "aigw: audit folder \"%V\" has segments but no "
                          "\"state\": nothing written", &acf->dir);
            return NGX_ERROR;
        }

        tree->segment = 1;
        tree->first = 1;

        if (ngx_http_aigw_audit_start(t, tree, log) != NGX_OK
            || ngx_http_aigw_audit_save(t, tree, log) != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "aigw: audit log started in \"%V\"", &acf->dir);

        return NGX_OK;
    }

    n = read(fd, t->buf, 4096);
    (void) ngx_close_file(fd);

    if (n <= 0 || n == 4096) {
        goto bad;
    }

    p = t->buf;
    last = p + n;
    *last = '\0';

    if (sscanf((char *) p, "aigw-audit-state 1\nsize %" SCNu64 "\n"
               "segment %lu\nfirst %lu\noffset %" SCNd64 "\n"
               "idx_offset %" SCNd64 "\nstack",
               &tree->size, (unsigned long *) &tree->segment,
               (unsigned long *) &tree->first, (int64_t *) &tree->offset,
               (int64_t *) &tree->idx_offset)
        != 5 || tree->segment == 0)
    {
        goto bad;
    }

    s = (u_char *) ngx_strstr(p, "\nstack");
    if (s == NULL) {
        goto bad;
    }

    s += sizeof("\nstack") - 1;

    while (*s == ' ') {
        s++;

        for (i = 0; i < 32; i++) {
            n = ngx_hextoi(s + 2 * i, 2);
            if (n == NGX_ERROR || tree->nstack >= NGX_HTTP_AIGW_AUDIT_DEPTH) {
                goto bad;
            }

            tree->stack[tree->nstack][i] = (u_char) n;
        }

        tree->nstack++;
        s += 64;
    }

    /* the segment against the state */

    fd = ngx_http_aigw_audit_open(acf, tree->segment, "log", (off_t) -1, log);
    if (fd == NGX_INVALID_FILE) {
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    size = ngx_file_size(&fi);

    if (size < tree->offset) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "aigw: audit segment %06ui is shorter than its state "
                      "(%O < %O bytes): records are missing",
                      tree->segment, size, tree->offset);
        (void) ngx_close_file(fd);
        return NGX_OK;
    }

    off = tree->offset;

    while (off < size) {
        n = pread(fd, t->buf, ngx_min(size - off, NGX_HTTP_AIGW_AUDIT_BATCH),
                  off);
        if (n <= 0) {
            (void) ngx_close_file(fd);
            return NGX_ERROR;
        }

        p = t->buf;
        last = p + n;
        e = t->idx;

        for (s = p; s < last; s = p) {
            p = ngx_strlchr(s, last, '\n');
            if (p == NULL) {
                break;
            }

            p++;

            if ((size_t) (t->idx + NGX_HTTP_AIGW_AUDIT_IDX - e)
                < (size_t) (p - s) + 64)
            {
                p = s;
                break;
            }

            if (ngx_http_aigw_audit_hash(t->md, acf->sha256, 0x00, s,
                                         p - 1 - s, NULL, 0, leaf)
                != NGX_OK)
            {
                (void) ngx_close_file(fd);
                return NGX_ERROR;
            }

            e = ngx_http_aigw_audit_index(e, s, p - s, tree->size,
                                          off + (s - t->buf), leaf);

            if (ngx_http_aigw_audit_tree_add(t, tree, leaf) != NGX_OK) {
                (void) ngx_close_file(fd);
                return NGX_ERROR;
            }
        }

        if (e > t->idx) {
            ngx_fd_t  ifd;

            ifd = ngx_http_aigw_audit_open(acf, tree->segment, "idx",
                                           tree->idx_offset, log);
            if (ifd != NGX_INVALID_FILE) {
                if (pwrite(ifd, t->idx, e - t->idx, tree->idx_offset)
                    == e - t->idx)
                {
                    tree->idx_offset += e - t->idx;
                }

                (void) ngx_close_file(ifd);
            }

            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "aigw: audit segment %06ui: records past the "
                          "state recovered", tree->segment);
        }

        off += s - t->buf;
        tree->offset = off;

        if (s == t->buf) {
            break;
        }
    }

    if (off < size) {

        /* a torn tail: cut, and marked by a record of its own */

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "aigw: audit segment %06ui has a torn tail of %O "
                      "bytes at %O: cut and marked",
                      tree->segment, size - off, off);

        if (ftruncate(fd, off) == -1) {
            (void) ngx_close_file(fd);
            return NGX_ERROR;
        }

        p = ngx_sprintf(t->buf, "{\"v\":1,\"ts\":%T%03M,\"type\":\"torn\","
                        "\"segment\":%ui,\"offset\":%O,\"bytes\":%O}",
                        ngx_time(), ngx_timeofday()->msec, tree->segment,
                        off, size - off);

        if (ngx_http_aigw_audit_hash(t->md, acf->sha256, 0x00, t->buf,
                                     p - t->buf, NULL, 0, leaf)
            != NGX_OK)
        {
            (void) ngx_close_file(fd);
            return NGX_ERROR;
        }

        *p++ = '\n';

        e = ngx_http_aigw_audit_index(t->idx, t->buf, p - t->buf, tree->size,
                                      off, leaf);

        if (pwrite(fd, t->buf, p - t->buf, off) != p - t->buf
            || fdatasync(fd) == -1
            || ngx_http_aigw_audit_tree_add(t, tree, leaf) != NGX_OK)
        {
            (void) ngx_close_file(fd);
            return NGX_ERROR;
        }

        tree->offset = off + (p - t->buf);

        (void) ngx_close_file(fd);

        fd = ngx_http_aigw_audit_open(acf, tree->segment, "idx",
                                      tree->idx_offset, log);
        if (fd != NGX_INVALID_FILE) {
            if (pwrite(fd, t->idx, e - t->idx, tree->idx_offset)
                == e - t->idx)
            {
                tree->idx_offset += e - t->idx;
            }
        }
    }

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    if (ngx_http_aigw_audit_checkpoint(t, tree, log) != NGX_OK
        || ngx_http_aigw_audit_save(t, tree, log) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;

bad:

    ngx_log_error(NGX_LOG_ALERT, log, 0,
                  "aigw: audit state \"%s\" is not valid: nothing written",
                  name);
    return NGX_ERROR;
}


#else


void
ngx_http_aigw_audit_writer_kick(ngx_http_aigw_audit_conf_t *acf)
{
}


ngx_int_t
ngx_http_aigw_audit_writer_init(ngx_cycle_t *cycle,
    ngx_http_aigw_audit_conf_t *acf)
{
    return NGX_ERROR;
}


void
ngx_http_aigw_audit_writer_exit(ngx_cycle_t *cycle,
    ngx_http_aigw_audit_conf_t *acf)
{
}


#endif
