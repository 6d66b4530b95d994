# Stand-in for node:22.12.0-bookworm-slim where Docker Hub is unreachable (`lab swarm local up`): Debian's Node.js
# and npm on the debootstrap base (Node 18: enough for `npm ci` of the chat page's one client package).
ARG BASE=local/debian:bookworm
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm ca-certificates \
    && rm -rf /var/lib/apt/lists/*
CMD ["node"]
