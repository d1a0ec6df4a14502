/* The transport benchmark, run as `strait bench transport ...`. */
#ifndef ST_BENCH_TRANSPORT_H
#define ST_BENCH_TRANSPORT_H

/* argv[0] is "transport". Returns the exit code: 0, 1 on a failed run,
 * 2 on a bad option (named on stderr). */
int st_bench_transport_main(int argc, char **argv);

#endif
