// qeval: evaluation (placeholder).
#include "common/cli_main.h"
int main() { return qtrain::run_cli("qeval", [] { return 0; }); }
