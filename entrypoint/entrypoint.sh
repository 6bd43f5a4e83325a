#!/bin/sh
# The container ENTRYPOINT of a paid AWS Marketplace container product.
#
# It hands the image's command (CMD, or whatever the deployer passes instead) to
# `marketplace-entitlement run`, which registers with AWS Marketplace, verifies the signed answer,
# and only then starts the command and supervises it as PID 1. `exec` replaces this shell, so no
# shell stays between the container runtime's signals and the supervisor.
#
# The only thing this script adds is a default a seller may bake into the image: the product's
# public key at /etc/marketplace/public-key.pem, used when neither MARKETPLACE_PUBLIC_KEY nor
# MARKETPLACE_PUBLIC_KEY_FILE is set and that file exists. Every other setting is read by
# `marketplace-entitlement` itself from its MARKETPLACE_* environment variables.
set -eu

if [ "$#" -eq 0 ]; then
    echo "entrypoint.sh: no command given; usage: entrypoint.sh CMD [ARG...]" >&2
    echo "entrypoint.sh: set the image's CMD (or pass a command) to the application to start once entitled" >&2
    exit 64
fi

if [ -z "${MARKETPLACE_PUBLIC_KEY:-}" ] && [ -z "${MARKETPLACE_PUBLIC_KEY_FILE:-}" ] \
    && [ -f /etc/marketplace/public-key.pem ]; then
    MARKETPLACE_PUBLIC_KEY_FILE=/etc/marketplace/public-key.pem
    export MARKETPLACE_PUBLIC_KEY_FILE
fi

exec marketplace-entitlement run -- "$@"
