/* Strict option-value parsing for the CLI: the whole string must be a
 * valid value within range, else an error naming the option. */
#ifndef ST_OPTS_H
#define ST_OPTS_H

#include <stdint.h>

/* Each returns 0 and stores the value, or prints
 * "strait VERB: invalid value 'S' for --NAME (...)" and returns -1. */
int st_opt_int(const char *verb, const char *name, const char *s, long lo, long hi, int *out);
int st_opt_u64(const char *verb, const char *name, const char *s, uint64_t *out);
int st_opt_float(const char *verb, const char *name, const char *s, double lo, double hi, float *out);

/* Report an unknown option / missing value as getopt saw it; returns 2. */
int st_opt_usage_error(const char *verb, const char *what);

#endif
