# Stand-in for eclipse-temurin:17-jre where Docker Hub is unreachable (`lab swarm local up`): Debian's OpenJDK 17
# runtime on the debootstrap base. Its module image has jdk.httpserver, which the Java worker's image uses at
# build time (`worker-java --warmup` answers tasks from an in-process stand-in server). JAVA_HOME as upstream.
ARG BASE=local/debian:bookworm
FROM ${BASE}
RUN mkdir -p /usr/share/man/man1 /opt/java \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /opt/java/openjdk \
    && java --list-modules | grep -q '^jdk.httpserver@'
ENV JAVA_HOME=/opt/java/openjdk
CMD ["java", "-version"]
