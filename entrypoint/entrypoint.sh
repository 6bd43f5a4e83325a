#!/bin/sh
# The container ENTRYPOINT of a paid AWS Marketplace container product. Dockerfile.example copies
# it to /usr/local/bin/marketplace-entrypoint and names it in an exec-form ENTRYPOINT.
#
# The image's CMD (or the command the deployer passes instead, e.g. Kubernetes `args:`) arrives
# here as "$@" and is handed, word for word, to `marketplace-entitlement run`, which registers with
# AWS Marketplace, verifies the signed answer against the key pinned in the image
# (`marketplace-entitlement pin` at build time), and only then starts the command and supervises it.
#
# exec: this shell is replaced by Python, so the gate itself is PID 1 and receives the runtime's
#   signals (SIGTERM on stop) directly; no shell stays in between to swallow them or leave zombies.
# -I:   isolated mode. Python ignores every PYTHON* variable (PYTHONPATH, PYTHONSTARTUP,
#   PYTHONHOME, ...) and the user's site-packages, and puts neither the current directory nor a
#   script's directory on sys.path. The buyer controls the task's environment and working
#   directory; with -I neither can put other code in front of the installed package. (The command
#   started once entitled still gets the environment as it is.)
# -m:   runs the package installed in the image, as the `marketplace-entitlement` command does;
#   that console script cannot be used here, as its own first line starts Python without -I.
#
# Nothing else is configured here: the product code and key come from the pin file, every other
# setting from its MARKETPLACE_* variable.
exec python3 -I -m marketplace_entitlement run -- "$@"
