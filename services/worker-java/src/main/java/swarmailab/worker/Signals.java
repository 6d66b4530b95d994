package swarmailab.worker;

import sun.misc.Signal;

/** SIGTERM and SIGINT as a request to stop cleanly (the JVM's default would run hooks and exit with 143). */
final class Signals {
    private Signals() {}

    static void onStop(Runnable stop) {
        for (String name : new String[] {"TERM", "INT"}) {
            try {
                Signal.handle(new Signal(name), s -> stop.run());
            } catch (IllegalArgumentException e) {
                // The signal is not available here (or reserved by the JVM): the JVM's default applies.
                Runtime.getRuntime().addShutdownHook(new Thread(stop, "stop"));
            }
        }
    }
}
