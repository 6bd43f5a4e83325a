#!/bin/sh
# A non-Python service, run as the CMD of `marketplace-entitlement run`: it starts only once the
# buyer's entitlement is verified, and receives the container's signals through the supervisor.
set -eu

trap 'echo "service: SIGTERM received, shutting down"; exit 0' TERM

echo "service: started as pid $$ for product ${MARKETPLACE_PRODUCT_CODE}"
while :; do
    # Your service's work. `sleep & wait` keeps the shell able to run its trap at once.
    sleep 1 &
    wait $!
done
