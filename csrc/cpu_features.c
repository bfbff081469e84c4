/* PLACEHOLDER: run-time CPU probing (being written). */
#include "rwkv_edge.h"

rwe_isa rwe_cpu_best_isa(void) { return RWE_ISA_REF; }
int rwe_cpu_supports(rwe_isa isa) { return isa == RWE_ISA_REF || isa == RWE_ISA_AUTO; }
