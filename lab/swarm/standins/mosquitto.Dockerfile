# Stand-in for eclipse-mosquitto:2.0.22 where Docker Hub is unreachable (`lab swarm local up`): Debian's Mosquitto
# with the upstream image's layout (/mosquitto/{config,data,log}) and user (mosquitto, uid/gid 1883), which
# stack.yml relies on (the password file secret is given to uid 1883).
ARG BASE=local/debian:bookworm
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mosquitto mosquitto-clients \
    && rm -rf /var/lib/apt/lists/* \
    && groupmod --gid 1883 mosquitto \
    && usermod --uid 1883 --gid 1883 mosquitto \
    && mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log /var/lib/mosquitto /var/log/mosquitto \
    && chown -R 1883:1883 /mosquitto /var/lib/mosquitto /var/log/mosquitto
EXPOSE 1883
CMD ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
