# Stand-in for golang:1.26.8-bookworm where Docker Hub is unreachable (`lab swarm local up`): this host's own Go
# toolchain (its GOROOT is the build context, copied whole; Debian bookworm's golang is 1.19, older than what
# services/worker-go/go.mod asks for) on the debootstrap base, with the upstream image's GOROOT, GOPATH and
# PATH. ca-certificates: the worker's Dockerfile adds the extra CA to /etc/ssl/certs/ca-certificates.crt.
ARG BASE=local/debian:bookworm
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY . /usr/local/go/
# The imported base has no ENV: PATH is written out whole (as in the upstream image).
ENV GOPATH=/go \
    PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /go/bin /go/src && go version
WORKDIR /go
CMD ["go", "version"]
