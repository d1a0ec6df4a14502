/* The `strait` entry point: dispatches to a verb. */
#include "tools/cli.h"

int main(int argc, char **argv) { return st_cli_main(argc, argv); }
