package swarmailab.worker.warmup;

import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import swarmailab.worker.Worker;
import swarmailab.worker.callback.LoopbackMaster;
import swarmailab.worker.health.HealthCheck;
import swarmailab.worker.health.Heartbeat;
import swarmailab.worker.logging.Log;
import swarmailab.worker.settings.Env;
import swarmailab.worker.settings.Settings;

/**
 * `--warmup`: the real worker answers three tasks (offline, Gemini, offline on the result stream) against
 * in-process stand-ins for the broker, the master's gRPC server and Gemini, then stops as on SIGTERM. The build
 * runs it once under -XX:ArchiveClassesAtExit, so the classes a worker needs are in a CDS archive and the next
 * start maps them instead of loading them (services/worker-java/build.sh).
 */
public final class Warmup {
    private static final String WARM_ANSWER = "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":"
        + "[{\"text\":\"warm\"}]},\"finishReason\":\"STOP\"}]}";

    private Warmup() {}

    /** 0 when every task was answered. */
    public static int run() {
        PrintStream quiet = new PrintStream(OutputStream.nullOutputStream());
        Log.setOutput(quiet);
        Path dir = null;
        LoopbackMaster master = null;
        HttpServer gemini = null;
        try (FakeBroker broker = new FakeBroker(3)) {
            dir = Files.createTempDirectory("worker-java-warmup");
            master = new LoopbackMaster();
            gemini = fakeGemini();
            String endpoint = master.endpoint();
            broker.setPresence("{\"status\":\"online\",\"timestamp\":1,\"grpc_endpoint\":\"" + endpoint + "\"}");
            for (int k = 1; k <= 3; k++) {
                String key = k == 2 ? "warmup-key" : "";
                broker.addTask("{\"worker_id\":\"java-worker-warmup\",\"session_id\":\"warm" + k + "\",\"query\":"
                    + "\"warm-up question " + k + "\",\"api_key\":\"" + key + "\",\"grpc_endpoint\":\"" + endpoint
                    + "\",\"timestamp\":1,\"task_id\":\"warm" + k + "\",\"attempt\":1,\"token\":\"t\"}");
            }
            Map<String, String> env = new HashMap<>();
            env.put("MQTT_HOST", "127.0.0.1");
            env.put("MQTT_PORT", String.valueOf(broker.port()));
            env.put("WORKER_ID", "java-worker-warmup");
            env.put("WORK_SECONDS", "0");
            env.put("MODEL_MODE", "auto");
            env.put("GEMINI_BASE_URL", "http://127.0.0.1:" + gemini.getAddress().getPort());
            env.put("GEMINI_TIMEOUT_SECONDS", "10");
            env.put("HEALTH_FILE", dir.resolve("health").toString());
            Settings settings = Settings.fromEnv(Env.of(env));
            Log.setLevel("DEBUG"); // the debug lines' classes too
            swarmailab.worker.Main.preloadGrpc();
            Worker worker = new Worker(settings);
            worker.start();
            boolean answered = broker.awaitDone(30);
            try {
                HealthCheck.check(settings.healthFile, Heartbeat.INTERVAL_MS, System.currentTimeMillis() / 1000.0);
            } catch (HealthCheck.Unhealthy e) {
                // only the classes matter here
            }
            worker.requestStop();
            worker.awaitAndStop();
            System.err.println(answered ? "warm-up: 3 tasks answered" : "warm-up: tasks not answered in time");
            return answered ? 0 : 1;
        } catch (Exception e) {
            System.err.println("warm-up failed: " + e);
            return 1;
        } finally {
            if (master != null) {
                master.close();
            }
            if (gemini != null) {
                gemini.stop(0);
            }
            if (dir != null) {
                dir.toFile().listFiles(f -> f.delete());
                dir.toFile().delete();
            }
        }
    }

    /** A Gemini stand-in that answers every request with one short text. */
    private static HttpServer fakeGemini() throws java.io.IOException {
        HttpServer server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.createContext("/", exchange -> {
            exchange.getRequestBody().readAllBytes();
            byte[] body = WARM_ANSWER.getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().add("Content-Type", "application/json");
            exchange.sendResponseHeaders(200, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
        });
        server.start();
        return server;
    }
}
