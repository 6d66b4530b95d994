# Stand-in for python:3.11.13-slim-bookworm where Docker Hub is unreachable (`lab swarm local up`): Debian's
# Python 3.11 on the debootstrap base. `python` is on PATH and `python -m venv` works, as in the upstream image.
ARG BASE=local/debian:bookworm
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       python3 python3-venv python-is-python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
