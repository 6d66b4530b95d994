package swarmailab.worker.logging;

import java.io.PrintStream;
import java.time.LocalDateTime;

/**
 * The worker's log lines on stdout in the Python services' format:
 * "2026-12-06 19:44:25,123 INFO worker-java: registered as java-worker-3f9a1c". Never give it a key or password.
 */
public final class Log {
    public static final int DEBUG = 10;
    public static final int INFO = 20;
    public static final int WARNING = 30;
    public static final int ERROR = 40;

    private static final String NAME = "worker-java";
    private static volatile int threshold = INFO;
    private static volatile PrintStream out = System.out;

    private Log() {}

    /** Sets the level from a Python logging level name or number (LOG_LEVEL). */
    public static void setLevel(String name) {
        threshold = level(name);
    }

    /** Sends the lines elsewhere (the warm-up keeps them quiet). */
    public static void setOutput(PrintStream stream) {
        out = stream;
    }

    static int level(String name) {
        switch (name) {
            case "DEBUG": case "NOTSET":
                return DEBUG;
            case "INFO":
                return INFO;
            case "WARNING": case "WARN":
                return WARNING;
            case "ERROR": case "CRITICAL": case "FATAL":
                return ERROR;
            default:
                try {
                    int n = Integer.parseInt(name);
                    return n <= 10 ? DEBUG : n <= 20 ? INFO : n <= 30 ? WARNING : ERROR;
                } catch (NumberFormatException e) {
                    return INFO;
                }
        }
    }

    public static boolean enabled(int level) {
        return level >= threshold;
    }

    public static void debug(String message) {
        write(DEBUG, "DEBUG", message);
    }

    public static void info(String message) {
        write(INFO, "INFO", message);
    }

    public static void warning(String message) {
        write(WARNING, "WARNING", message);
    }

    public static void error(String message) {
        write(ERROR, "ERROR", message);
    }

    private static StringBuilder two(StringBuilder b, int v) {
        return b.append(v < 10 ? "0" : "").append(v);
    }

    private static void write(int level, String label, String message) {
        if (level < threshold) {
            return;
        }
        // By hand rather than String.format, whose first use costs tens of ms (locale data) at start-up.
        LocalDateTime t = LocalDateTime.now();
        StringBuilder b = new StringBuilder(48 + message.length());
        b.append(t.getYear()).append('-');
        two(b, t.getMonthValue()).append('-');
        two(b, t.getDayOfMonth()).append(' ');
        two(b, t.getHour()).append(':');
        two(b, t.getMinute()).append(':');
        two(b, t.getSecond()).append(',');
        int ms = t.getNano() / 1_000_000;
        b.append(ms < 100 ? (ms < 10 ? "00" : "0") : "").append(ms);
        String line = b.append(' ').append(label).append(' ').append(NAME).append(": ").append(message).toString();
        PrintStream stream = out;
        synchronized (Log.class) {
            stream.println(line);
            stream.flush();
        }
    }
}
