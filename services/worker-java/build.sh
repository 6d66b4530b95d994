#!/bin/sh
# Build the Java worker: target/worker-java.jar with its libraries in target/lib/, then a CDS archive of the
# classes a worker uses (target/worker-java.jsa: `worker-java --warmup` answers three tasks against in-process
# stand-ins), which makes it start faster. Needs JDK 17 and Maven 3.8.7+; the gRPC stubs are generated from
# ../../proto/worker.proto. SKIP_TESTS=1 skips the unit tests; SKIP_CDS=1 the archive (the image writes it
# with its own JVM: an archive serves only the JVM build that wrote it).
set -eu
cd "$(dirname "$0")"
if [ "${SKIP_TESTS:-0}" = "1" ]; then
    mvn -B -q -Dstyle.color=never package -DskipTests
else
    mvn -B -q -Dstyle.color=never package
fi
if [ "${SKIP_CDS:-0}" != "1" ]; then
    ./worker-java --warmup
fi
echo "built $(pwd)/target/worker-java.jar"
