# Example task image for the e2e tests and for trying waypost out: the runner
# image with the repository's examples/ under /app, so a Task can say
# `entrypoint: examples.hello:hello` (or examples.orders:process_order, ...).
# This is also the pattern for your own task image.
#
#   make images       # builds waypost-runner, waypost-examples, waypost-operator
#
# Context: the repository root (see .dockerignore).
ARG RUNNER_IMAGE=waypost-runner:0.1.0
FROM ${RUNNER_IMAGE}
COPY examples/ /app/examples/
