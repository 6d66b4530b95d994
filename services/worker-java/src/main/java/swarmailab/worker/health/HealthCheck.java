package swarmailab.worker.health;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Locale;
import swarmailab.worker.protocol.JsonCodec;
import swarmailab.worker.settings.PyText;
import swarmailab.worker.settings.Strerror;

/** `--check`: healthy = the heartbeat file is fresh and says the worker is connected (services/health.py). */
public final class HealthCheck {
    static final int STALE_AFTER_BEATS = 3;

    private HealthCheck() {}

    /** The worker is not able to do its job; the message says why, in one line. */
    public static final class Unhealthy extends Exception {
        private static final long serialVersionUID = 1L;

        Unhealthy(String reason) {
            super(reason, null, false, false);
        }
    }

    /** The healthy line, or Unhealthy saying why not. */
    public static String check(String path, long intervalMs, double nowSeconds) throws Unhealthy {
        String raw;
        try {
            raw = Files.readString(Path.of(path), StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new Unhealthy("no heartbeat file " + path + ": the worker is not running or has not started yet");
        } catch (IOException e) {
            throw new Unhealthy("cannot read the heartbeat file " + path + ": " + Strerror.of(e));
        }
        JsonNode beat;
        try {
            beat = JsonCodec.parse(raw);
        } catch (JsonProcessingException e) {
            beat = null;
        }
        if (beat == null || !beat.isObject() || !beat.has("worker_id") || !beat.has("connected")
            || !beat.path("time").isNumber()) {
            throw new Unhealthy("the heartbeat file " + path + " is not a worker's heartbeat");
        }
        JsonNode id = beat.get("worker_id");
        String workerId = id.isTextual() ? id.textValue() : id.toString();
        double age = nowSeconds - beat.get("time").doubleValue();
        double limit = STALE_AFTER_BEATS * intervalMs / 1000.0;
        // A clock set back must not keep a dead worker's file fresh.
        if (!(-limit <= age && age <= limit)) {
            throw new Unhealthy(String.format(Locale.ROOT, "worker %s: last heartbeat %.1f s ago (> %s s): gone or hung",
                workerId, age, PyText.formatG(limit)));
        }
        if (!beat.get("connected").booleanValue()) { // true only for JSON true, as Python's `is not True`
            throw new Unhealthy("worker " + workerId + " is not connected to the MQTT broker");
        }
        return String.format(Locale.ROOT, "worker %s is connected to MQTT (heartbeat %.1f s ago)", workerId,
            Math.max(age, 0));
    }

    /** Runs the check: 0 healthy, 1 not (never 2, which Docker reserves); one line on stdout or stderr. */
    public static int run(String path) {
        try {
            System.out.println("healthy: " + check(path, Heartbeat.INTERVAL_MS, System.currentTimeMillis() / 1000.0));
            return 0;
        } catch (Unhealthy e) {
            System.err.println("unhealthy: " + e.getMessage());
            return 1;
        } catch (RuntimeException e) {
            System.err.println("unhealthy: the check itself failed: " + e.getClass().getSimpleName() + ": "
                + e.getMessage());
            return 1;
        }
    }
}
