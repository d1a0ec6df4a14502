/* Strict option-value parsing (see opts.h). */
#include "tools/opts.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int st_opt_int(const char *verb, const char *name, const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "strait %s: invalid value '%s' for --%s (an integer in [%ld, %ld])\n", verb, s, name, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int st_opt_u64(const char *verb, const char *name, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || *s == '-') {
        fprintf(stderr, "strait %s: invalid value '%s' for --%s (a non-negative integer)\n", verb, s, name);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int st_opt_float(const char *verb, const char *name, const char *s, double lo, double hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "strait %s: invalid value '%s' for --%s (a number in [%g, %g])\n", verb, s, name, lo, hi);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int st_opt_usage_error(const char *verb, const char *what)
{
    fprintf(stderr, "strait %s: %s (see strait %s --help)\n", verb, what, verb);
    return 2;
}
