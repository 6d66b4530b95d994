package swarmailab.worker;

import java.io.IOException;
import swarmailab.worker.callback.LoopbackMaster;
import swarmailab.worker.health.HealthCheck;
import swarmailab.worker.logging.Log;
import swarmailab.worker.settings.BadSetting;
import swarmailab.worker.settings.Env;
import swarmailab.worker.settings.Settings;
import swarmailab.worker.warmup.Warmup;

/**
 * The Java worker of Swarm AI Lab: `worker-java` runs it (settings from the environment), `worker-java --check`
 * reads the heartbeat of the worker running here (exit 0 or 1), `worker-java --warmup` runs one offline task and
 * one Gemini task against in-process stand-ins (the build records the classes it loads for a faster start).
 */
public final class Main {
    private static final String USAGE = "usage: worker-java [--check | --warmup]\n\n"
        + "Run a Swarm AI Lab worker (settings from the environment).\n"
        + "  --check   check the worker running here: exit 0 if healthy, 1 if not\n"
        + "  --warmup  answer three tasks against in-process stand-ins, then exit (build step)";

    private Main() {}

    public static void main(String[] args) {
        // Netty's epoll transport would be unpacked into /tmp and loaded at every start; NIO needs neither (and
        // works on a read-only or noexec /tmp).
        System.setProperty("io.grpc.netty.shaded.io.netty.transport.noNative", "true");
        System.exit(run(args));
    }

    static int run(String[] args) {
        boolean check = false;
        for (String a : args) {
            switch (a) {
                case "--check":
                    check = true;
                    break;
                case "--warmup":
                    return Warmup.run();
                case "-h": case "--help":
                    System.out.println(USAGE);
                    return 0;
                default:
                    System.err.println("worker-java: unexpected argument '" + a + "'\n" + USAGE);
                    return 2;
            }
        }
        Settings settings;
        try {
            settings = Settings.fromEnv(Env.system());
        } catch (BadSetting e) {
            return badSetting(e, check ? 1 : 2);
        }
        if (check) {
            return HealthCheck.run(settings.healthFile);
        }
        return serve(settings);
    }

    /** Starts loading gRPC on a thread of its own: it takes longer than the MQTT connect, and there are two cores. */
    public static void preloadGrpc() {
        Thread t = new Thread(() -> {
            try {
                LoopbackMaster.rehearse();
            } catch (IOException | InterruptedException | RuntimeException | LinkageError e) {
                Log.debug("could not preload gRPC: " + e);
            }
        }, "grpc-preload");
        t.setDaemon(true);
        t.start();
    }

    static int badSetting(BadSetting e, int code) {
        System.err.println("worker: bad setting: " + e.getMessage());
        return code;
    }

    /** Runs the worker until SIGTERM or SIGINT; 0 after a clean stop, 2 for a setting it cannot use. */
    static int serve(Settings settings) {
        Log.setLevel(settings.logLevel);
        if (!Boolean.getBoolean("worker.noRehearsal")) { // JAVA_OPTS=-Dworker.noRehearsal=true turns it off
            preloadGrpc();
        }
        Worker worker;
        try {
            worker = new Worker(settings);
        } catch (BadSetting e) {
            return badSetting(e, 2);
        }
        // Handlers before anything connects: a stop signal may come at once. Handled, not left to the JVM's
        // shutdown hooks, so that the stop runs in order and the exit code is 0 (not 143).
        Signals.onStop(worker::requestStop);
        worker.start();
        worker.awaitAndStop();
        return 0;
    }
}
