package swarmailab.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import swarmailab.worker.health.HealthCheck;
import swarmailab.worker.health.Heartbeat;

/** The heartbeat file in services/health.py's format, and --check's verdicts. */
class HealthTest {
    @Test
    void formatIsPythons() {
        assertEquals("{\"worker_id\": \"java-worker-1\", \"connected\": true, \"time\": 1733512345.25, \"pid\": 42}",
            Heartbeat.format("java-worker-1", true, 1733512345.25, 42));
        assertEquals("{\"worker_id\": \"w\", \"connected\": false, \"time\": 10.0, \"pid\": 1}",
            Heartbeat.format("w", false, 10.0, 1));
    }

    @Test
    void checks(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("health");
        String path = file.toString();
        HealthCheck.Unhealthy missing = assertThrows(HealthCheck.Unhealthy.class, () -> HealthCheck.check(path, 2000, 100));
        assertTrue(missing.getMessage().startsWith("no heartbeat file"));
        Heartbeat beat = new Heartbeat(path, "java-worker-1", () -> true);
        beat.write(true);
        double now = System.currentTimeMillis() / 1000.0;
        assertTrue(HealthCheck.check(path, 2000, now).startsWith("worker java-worker-1 is connected to MQTT"));
        HealthCheck.Unhealthy stale = assertThrows(HealthCheck.Unhealthy.class, () -> HealthCheck.check(path, 2000, now + 7));
        assertTrue(stale.getMessage().contains("gone or hung"), stale.getMessage());
        beat.write(false);
        assertThrows(HealthCheck.Unhealthy.class, () -> HealthCheck.check(path, 2000, now));
        Files.writeString(file, "junk");
        assertThrows(HealthCheck.Unhealthy.class, () -> HealthCheck.check(path, 2000, now));
        beat.close();
        assertFalse(Files.exists(file));
        beat.write(true); // a late write after close must not bring the file back
        assertFalse(Files.exists(file));
    }
}
