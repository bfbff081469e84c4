/*
 * A small persistent thread pool: n_threads - 1 workers created once (with
 * the model), the calling thread participates as thread 0. One parallel
 * region at a time: rwe_threadpool_run(pool, fn, ctx) calls fn(ctx, ith, nth)
 * on every thread and returns when all are done. Workers spin briefly
 * between regions (a decode step dispatches ~5 regions per layer) and then
 * sleep on a condition variable, so an idle model costs no CPU.
 *
 * Plain pthreads + C11 atomics: Linux, macOS and Android.
 * Not reentrant: one region at a time, so each eval context owns a pool.
 */
#ifndef RWE_THREADPOOL_H
#define RWE_THREADPOOL_H

#include <stdint.h>

typedef struct rwe_threadpool rwe_threadpool;
typedef void (*rwe_task_fn)(void *ctx, int ith, int nth);

/* NULL on failure (out of memory or no threads). n_threads >= 1. */
rwe_threadpool *rwe_threadpool_create(int n_threads);
void rwe_threadpool_free(rwe_threadpool *pool);
int rwe_threadpool_size(const rwe_threadpool *pool);
void rwe_threadpool_run(rwe_threadpool *pool, rwe_task_fn fn, void *ctx);

/* Thread ith's share [*r0, *r1) of [0, n), in multiples of `grain` (except the tail). */
void rwe_split_range(int64_t n, int64_t grain, int ith, int nth, int64_t *r0, int64_t *r1);

#endif
