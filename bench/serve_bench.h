/* The serving benchmark, run as `strait bench serve ...`: an OpenAI-API load
 * generator. It sends streaming /v1/completions (or /v1/chat/completions)
 * requests with random or dataset prompts to a running server - strait run,
 * llama-server, vLLM, anything OpenAI-compatible over plain HTTP/1.1 - at a
 * Poisson request rate and/or a fixed concurrency, and reports request
 * throughput, output tok/s, TTFT, TPOT, ITL and end-to-end latency (mean,
 * p50, p90, p99) as a table and, with --json, one JSON line. */
#ifndef ST_SERVE_BENCH_H
#define ST_SERVE_BENCH_H

/* argv[0] is "serve". Returns the exit code: 0 when every request
 * succeeded, 1 when the server could not be reached or any request failed
 * (the report is printed anyway), 2 on a bad option (named on stderr). */
int st_bench_serve_main(int argc, char **argv);

#endif
