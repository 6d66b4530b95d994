package swarmailab.worker.models;

/** Sleeps by the monotonic clock, never less than asked (Thread.sleep may wake a little early). */
public final class Sleeper {
    private Sleeper() {}

    public static void sleepAtLeast(double seconds) throws InterruptedException {
        long deadline = System.nanoTime() + (long) (seconds * 1e9);
        for (long left = deadline - System.nanoTime(); left > 0; left = deadline - System.nanoTime()) {
            Thread.sleep(left / 1_000_000, (int) (left % 1_000_000));
        }
    }

    /** A duration in whole milliseconds, rounded half to even (Python's round()). */
    public static long roundMs(long nanos) {
        return (long) Math.rint(nanos / 1e6);
    }
}
