/* Shared CLI plumbing (see load.h). */
#include "tools/load.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/st_common.h"
#include "kernels/cpu/cpu.h"
#include "tools/models.h"
#ifdef ST_HAVE_CUDA
#include "kernels/cuda/cuda.h"
#endif

int st_cli_fail(const char *verb, int rc)
{
    const char *msg = st_errmsg();
    fprintf(stderr, "strait %s: error: %s\n", verb, *msg ? msg : st_strerror(rc));
    return 1;
}

int st_cli_unknown_option(const char *verb, char **argv, int c)
{
    if (c)
        fprintf(stderr, "strait %s: unknown option '-%c' (see strait %s --help)\n", verb, c, verb);
    else
        fprintf(stderr, "strait %s: unknown option '%s' (see strait %s --help)\n", verb, argv[optind - 1], verb);
    return 2;
}

int st_cli_missing_value(const char *verb, char **argv, int c)
{
    if (c)
        fprintf(stderr, "strait %s: option '-%c' needs a value\n", verb, c);
    else
        fprintf(stderr, "strait %s: option '%s' needs a value\n", verb, argv[optind - 1]);
    return 2;
}

int st_cli_extra_arg(const char *verb, const char *arg)
{
    fprintf(stderr, "strait %s: unexpected argument '%s' (see strait %s --help)\n", verb, arg, verb);
    return 2;
}

/* --device: cpu, cuda[:N], or auto. auto stays on the CPU even when a GPU is
 * present until the CUDA backend has been validated on real hardware; it
 * says so in one log line. */
st_backend *st_cli_backend(const char *device, int threads)
{
    if (!device || !strcmp(device, "auto")) {
#ifdef ST_HAVE_CUDA
        int n = st_cuda_device_count();
        if (n > 0)
            ST_INFO("device auto: %d CUDA device(s) found, but the CUDA backend has not been validated on "
                    "hardware yet; using the CPU (--device cuda to use it)", n);
        else
            ST_INFO("device auto: no CUDA device; using the CPU");
#else
        ST_INFO("device auto: built without CUDA; using the CPU");
#endif
        device = "cpu";
    }
    if (!strcmp(device, "cpu")) {
        st_backend *be = st_backend_cpu_create(threads);
        if (!be)
            st_err(ST_ENOMEM, "cannot create the CPU backend");
        return be;
    }
    if (!strncmp(device, "cuda", 4) && (device[4] == 0 || device[4] == ':')) {
        int idx = 0;
        if (device[4] == ':') {
            char *end;
            long v = strtol(device + 5, &end, 10);
            if (!device[5] || *end || v < 0 || v > 255) {
                st_err(ST_EINVAL, "invalid device '%s' (auto, cpu, cuda or cuda:N)", device);
                return NULL;
            }
            idx = (int)v;
        }
#ifdef ST_HAVE_CUDA
        return st_backend_cuda_create(idx);
#else
        (void)idx;
        st_err(ST_ENOTSUP, "this strait was built without CUDA; use --device cpu");
        return NULL;
#endif
    }
    st_err(ST_EINVAL, "invalid device '%s' (auto, cpu, cuda or cuda:N)", device);
    return NULL;
}

int st_cli_load_model(const char *verb, const char *ref, const char *device, int threads, st_cli_model *out)
{
    char path[4096];
    memset(out, 0, sizeof *out);
    int rc = st_model_resolve(ref, 1, path, sizeof path);
    if (rc)
        return st_cli_fail(verb, rc);
    double t0 = st_now_s();
    if ((rc = st_model_load(path, 0, -1, &out->model)))
        return st_cli_fail(verb, rc);
    const st_model_config *c = &out->model->cfg;
    ST_INFO("loaded %s: %s, %d layers, dim %d, %d/%d heads, vocab %d, %.1f MB of weights in %.2f s", path,
            st_arch_name(c->arch), c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->vocab_size,
            (double)out->model->weight_bytes / 1e6, st_now_s() - t0);
    out->backend = st_cli_backend(device, threads);
    if (!out->backend) {
        int rc2 = st_cli_fail(verb, ST_ENOTSUP);
        st_model_free(out->model);
        out->model = NULL;
        return rc2;
    }
    return 0;
}

void st_cli_unload(st_cli_model *cm)
{
    st_backend_destroy(cm->backend);
    st_model_free(cm->model);
    memset(cm, 0, sizeof *cm);
}
