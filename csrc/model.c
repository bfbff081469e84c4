/* PLACEHOLDER: the model loader and forward pass (being written). */
#include <stddef.h>

#include "internal.h"


rwe_status rwe_model_load(const char *path, uint32_t n_threads, rwe_isa isa, rwe_model **out) {
    (void)n_threads; (void)isa;
    if (out) *out = NULL;
    return rwe_fail(RWE_ERR_IO, "cannot load '%s': the C model loader is not built yet",
                    path ? path : "(null)");
}
void rwe_model_free(rwe_model *model) { (void)model; }
rwe_status rwe_model_get_info(const rwe_model *m, rwe_model_info *o) { (void)m; (void)o; return rwe_fail(RWE_ERR_ARG, "no model"); }
rwe_status rwe_model_set_threads(rwe_model *m, uint32_t n) { (void)m; (void)n; return rwe_fail(RWE_ERR_ARG, "no model"); }
rwe_status rwe_state_init(const rwe_model *m, float *s, size_t n) { (void)m; (void)s; (void)n; return rwe_fail(RWE_ERR_ARG, "no model"); }
rwe_status rwe_eval(rwe_model *m, int32_t t, float *s, size_t sl, float *l, size_t ll) { (void)m; (void)t; (void)s; (void)sl; (void)l; (void)ll; return rwe_fail(RWE_ERR_ARG, "no model"); }
rwe_status rwe_eval_sequence(rwe_model *m, const int32_t *t, size_t n, float *s, size_t sl, float *l, size_t ll, int a) { (void)m; (void)t; (void)n; (void)s; (void)sl; (void)l; (void)ll; (void)a; return rwe_fail(RWE_ERR_ARG, "no model"); }
