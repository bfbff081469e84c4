/*
 * Private declarations shared by the C core's files (never seen by Python).
 */
#ifndef RWE_INTERNAL_H
#define RWE_INTERNAL_H

#include "rwkv_edge.h"

/* Record a status and a printf-style detail for this thread; returns status.
 * Use as: return rwe_fail(RWE_ERR_FORMAT, "tensor %s: bad offset", name); */
rwe_status rwe_fail(rwe_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rwe_clear_error(void);

#endif
