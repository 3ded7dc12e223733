// qtrain: the training job. (Placeholder until the config system lands.)
#include "common/cli_main.h"
int main() { return qtrain::run_cli("qtrain", [] { return 0; }); }
