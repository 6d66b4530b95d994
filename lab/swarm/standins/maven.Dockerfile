# Stand-in for maven:3.8.7-eclipse-temurin-17 where Docker Hub is unreachable (`lab swarm local up`): Debian's
# OpenJDK 17 and Maven (3.8.7, the upstream tag's version) on the debootstrap base. JAVA_HOME is the upstream
# image's /opt/java/openjdk (a link to Debian's JDK): the worker's Dockerfile copies $JAVA_HOME/lib/security/cacerts
# (ca-certificates-java's keystore) to add the extra CA for Maven's downloads.
ARG BASE=local/debian:bookworm
FROM ${BASE}
# man1: the JDK's postinst registers its man pages there (a base without it fails to configure the JDK).
RUN mkdir -p /usr/share/man/man1 /opt/java \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       openjdk-17-jdk-headless maven ca-certificates-java \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")" /opt/java/openjdk \
    && test -s /opt/java/openjdk/lib/security/cacerts \
    && mvn -v
ENV JAVA_HOME=/opt/java/openjdk
CMD ["mvn", "-v"]
