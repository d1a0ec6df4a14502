/* The strait command line: verbs and their shared helpers. */
#ifndef ST_CLI_H
#define ST_CLI_H

/* Entry point: `strait VERB [args]`. Returns the process exit code. */
int st_cli_main(int argc, char **argv);

/* Verbs (each parses its own flags; argv[0] is the verb). */
int st_cmd_generate(int argc, char **argv);
int st_cmd_tokenize(int argc, char **argv);
int st_cmd_inspect(int argc, char **argv);
int st_cmd_models(int argc, char **argv);
int st_cmd_bench(int argc, char **argv);
int st_cmd_run(int argc, char **argv);
int st_cmd_serve(int argc, char **argv);
int st_cmd_chat(int argc, char **argv);
int st_cmd_status(int argc, char **argv);
int st_cmd_join(int argc, char **argv);

#endif
