package swarmailab.worker.health;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.function.BooleanSupplier;
import swarmailab.worker.logging.Log;
import swarmailab.worker.protocol.JsonCodec;
import swarmailab.worker.settings.PyText;

/**
 * The heartbeat file of a running worker (services/health.py's format): rewritten every interval with whether
 * the worker is connected to the broker, at once when that changes, and removed when the worker stops cleanly.
 */
public final class Heartbeat {
    public static final long INTERVAL_MS = 2000;
    static final long POLL_MS = 200;

    private final Path path;
    private final String workerId;
    private final BooleanSupplier connected;
    private final Object lock = new Object();
    private boolean closed;
    private boolean failing;
    private Thread thread;

    public Heartbeat(String path, String workerId, BooleanSupplier connected) {
        this.path = Path.of(path);
        this.workerId = workerId;
        this.connected = connected;
    }

    /** One heartbeat exactly as Python's json.dumps writes it. */
    public static String format(String workerId, boolean connected, double unixSeconds, long pid) {
        // Put together here, not by Jackson: json.dumps separates with ", " and ": ", and writes the time as
        // Python's repr of a float (1733512345.25, where Java would write 1.73351234525E9).
        return "{\"worker_id\": " + JsonCodec.quote(workerId) + ", \"connected\": " + connected + ", \"time\": "
            + PyText.floatRepr(unixSeconds) + ", \"pid\": " + pid + "}";
    }

    /** Writes now and then every interval, and as soon as the connection comes or goes, on a daemon thread. */
    public void start() {
        thread = new Thread(this::run, "heartbeat");
        thread.setDaemon(true);
        thread.start();
    }

    private void run() {
        long ticks = Math.max(1, Math.round((double) INTERVAL_MS / POLL_MS));
        try {
            while (true) {
                boolean now = connected.getAsBoolean();
                write(now);
                for (long k = 0; k < ticks; k++) {
                    Thread.sleep(INTERVAL_MS / ticks);
                    if (connected.getAsBoolean() != now) {
                        break;
                    }
                }
            }
        } catch (InterruptedException e) {
            // close() stops the beat.
        }
    }

    /** Replaces the file atomically (a temporary file, then a rename); a failure is logged once. */
    public void write(boolean isConnected) {
        long pid = ProcessHandle.current().pid();
        java.time.Instant instant = java.time.Instant.now();
        double now = instant.getEpochSecond() + instant.getNano() / 1e9;
        String beat = format(workerId, isConnected, now, pid);
        Path parent = path.toAbsolutePath().getParent();
        Path temporary = parent.resolve("." + path.getFileName() + "." + pid + ".tmp");
        synchronized (lock) {
            if (closed) {
                return;
            }
            try {
                Files.writeString(temporary, beat, StandardCharsets.UTF_8);
                Files.move(temporary, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            } catch (IOException e) {
                if (!failing) {
                    Log.warning("cannot write the health file " + path + ": " + e);
                }
                failing = true;
                try {
                    Files.deleteIfExists(temporary);
                } catch (IOException ignored) {
                    // best effort
                }
                return;
            }
            if (failing) {
                Log.info("health file " + path + " written again");
            }
            failing = false;
        }
    }

    /** Stops writing and removes the file: a worker that stopped is not healthy. */
    public void close() {
        synchronized (lock) {
            closed = true;
            if (thread != null) {
                thread.interrupt();
            }
            try {
                Files.deleteIfExists(path);
            } catch (IOException ignored) {
                // nothing more to do
            }
        }
    }
}
