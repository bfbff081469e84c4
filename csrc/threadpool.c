/* Persistent pthread pool with a spin-then-sleep dispatch (see threadpool.h). */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* How long a worker spins before it sleeps: long enough to bridge the serial
 * work (layer norms, WKV: microseconds) between two regions of a token, short
 * enough not to burn a core between tokens, where another pool (another
 * model, or another call's context) may want it (docs/ENGINE_NOTES.md). */
#define SPIN_NS 100000

struct rwe_threadpool {
    int n_threads;
    pthread_t *workers;               /* n_threads - 1 */
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    int sleepers;                     /* workers waiting on `wake` (guarded by mutex) */
    atomic_uint generation;           /* bumped once per region */
    atomic_int done;                  /* workers finished with the current region */
    atomic_int stop;
    rwe_task_fn fn;                   /* the current region, published by `generation` */
    void *ctx;
};

typedef struct {
    rwe_threadpool *pool;
    int ith;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Wait until the generation moves past `seen`; spin first, then sleep. */
static unsigned wait_next(rwe_threadpool *p, unsigned seen) {
    uint64_t t0 = now_ns();
    for (unsigned i = 1;; i++) {
        unsigned g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen) return g;
        cpu_relax();
        if ((i & 63) == 0) {
            if (now_ns() - t0 > SPIN_NS) break;
            if ((i & 255) == 0) sched_yield(); /* give the core away when oversubscribed */
        }
    }
    pthread_mutex_lock(&p->mutex);
    while (atomic_load(&p->generation) == seen) {
        p->sleepers++;
        pthread_cond_wait(&p->wake, &p->mutex);
        p->sleepers--;
    }
    pthread_mutex_unlock(&p->mutex);
    return atomic_load(&p->generation);
}

static void *worker_main(void *arg) {
    worker_arg *w = arg;
    rwe_threadpool *p = w->pool;
    int ith = w->ith;
    free(w);
    unsigned seen = 0;
    for (;;) {
        seen = wait_next(p, seen);
        if (atomic_load(&p->stop)) return NULL;
        p->fn(p->ctx, ith, p->n_threads);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

/* Publish a region (or the stop flag) and wake sleepers. */
static void publish(rwe_threadpool *p) {
    pthread_mutex_lock(&p->mutex);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    if (p->sleepers) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);
}

rwe_threadpool *rwe_threadpool_create(int n_threads) {
    if (n_threads < 1) return NULL;
    rwe_threadpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->workers || pthread_mutex_init(&p->mutex, NULL) || pthread_cond_init(&p->wake, NULL)) {
        free(p->workers);
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *w = malloc(sizeof *w);
        if (w) *w = (worker_arg){p, i};
        if (!w || pthread_create(&p->workers[i - 1], NULL, worker_main, w)) {
            free(w);
            p->n_threads = i; /* free() joins the i - 1 workers that did start */
            rwe_threadpool_free(p);
            return NULL;
        }
    }
    return p;
}

void rwe_threadpool_free(rwe_threadpool *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    publish(p);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->workers[i - 1], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mutex);
    free(p->workers);
    free(p);
}

int rwe_threadpool_size(const rwe_threadpool *p) { return p->n_threads; }

void rwe_threadpool_run(rwe_threadpool *p, rwe_task_fn fn, void *ctx) {
    if (p->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    publish(p);
    fn(ctx, 0, p->n_threads);
    /* The workers' share is about the same size as ours: spin, yielding now and then. */
    int workers = p->n_threads - 1;
    for (unsigned i = 0; atomic_load_explicit(&p->done, memory_order_acquire) < workers; i++) {
        cpu_relax();
        if ((i & 255) == 255) sched_yield();
    }
}

void rwe_split_range(int64_t n, int64_t grain, int ith, int nth, int64_t *r0, int64_t *r1) {
    int64_t blocks = (n + grain - 1) / grain;
    int64_t b0 = blocks * ith / nth, b1 = blocks * (ith + 1) / nth;
    *r0 = b0 * grain < n ? b0 * grain : n;
    *r1 = b1 * grain < n ? b1 * grain : n;
}
