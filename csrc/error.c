/* Status names and the per-thread error detail (the only error channel). */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static _Thread_local char rwe_error_detail[512];

rwe_status rwe_fail(rwe_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rwe_error_detail, sizeof rwe_error_detail, fmt, ap);
    va_end(ap);
    return status;
}

void rwe_clear_error(void) { rwe_error_detail[0] = '\0'; }

const char *rwe_last_error(void) { return rwe_error_detail; }

const char *rwe_status_name(rwe_status status) {
    switch (status) {
    case RWE_OK: return "RWE_OK";
    case RWE_ERR_IO: return "RWE_ERR_IO";
    case RWE_ERR_FORMAT: return "RWE_ERR_FORMAT";
    case RWE_ERR_VERSION: return "RWE_ERR_VERSION";
    case RWE_ERR_SHAPE: return "RWE_ERR_SHAPE";
    case RWE_ERR_ARG: return "RWE_ERR_ARG";
    case RWE_ERR_ISA: return "RWE_ERR_ISA";
    case RWE_ERR_NOMEM: return "RWE_ERR_NOMEM";
    case RWE_ERR_TOKEN: return "RWE_ERR_TOKEN";
    case RWE_ERR_INTERNAL: return "RWE_ERR_INTERNAL";
    }
    return "RWE_ERR_UNKNOWN";
}
