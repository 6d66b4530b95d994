package swarmailab.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.net.httpserver.HttpServer;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import swarmailab.worker.models.Answer;
import swarmailab.worker.models.GeminiModel;
import swarmailab.worker.models.ModelError;
import swarmailab.worker.models.ModelRouter;
import swarmailab.worker.models.OfflineModel;

/** Gemini through the SDK against a tiny in-test server: every failure in the Python worker's words. */
class GeminiModelTest {
    private static final String KEY = "test-key-SECRET-123";
    private HttpServer server;
    private volatile int status;
    private volatile String body;
    private volatile long delayMs;
    private final List<String> seen = new ArrayList<>();

    @BeforeEach
    void start() throws Exception {
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.createContext("/", exchange -> {
            synchronized (seen) {
                seen.add(exchange.getRequestURI() + " key-header=" + exchange.getRequestHeaders().getFirst("x-goog-api-key"));
            }
            exchange.getRequestBody().readAllBytes();
            try {
                Thread.sleep(delayMs);
            } catch (InterruptedException e) {
                return;
            }
            byte[] b = body.getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().add("Content-Type", "application/json");
            exchange.sendResponseHeaders(status, b.length);
            exchange.getResponseBody().write(b);
            exchange.close();
        });
        server.setExecutor(java.util.concurrent.Executors.newCachedThreadPool());
        server.start();
    }

    @AfterEach
    void stop() {
        server.stop(0);
    }

    private GeminiModel model(double timeout) {
        return new GeminiModel("gemini-test", "http://127.0.0.1:" + server.getAddress().getPort(), timeout);
    }

    private void answer(int code, String json) {
        status = code;
        body = json;
    }

    private static String error(int code, String status, String message) {
        return "{\"error\":{\"code\":" + code + ",\"status\":\"" + status + "\",\"message\":\"" + message + "\"}}";
    }

    private String fails(GeminiModel m, String model) {
        ModelError e = assertThrows(ModelError.class, () -> m.answer("question", KEY, model));
        assertFalse(e.getMessage().contains(KEY));
        assertFalse(e.getMessage().contains("http"));
        return e.getMessage();
    }

    @Test
    void answersWithTheTasksModelAndKeyInAHeader() throws Exception {
        answer(200, "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Paris.\"}]},"
            + "\"finishReason\":\"STOP\"}]}");
        Answer a = model(5).answer("capital?", " " + KEY + " ", "gemini-other");
        assertEquals("Paris.", a.text());
        assertEquals("gemini-other", a.model());
        Answer b = model(5).answer("capital?", KEY, null);
        assertEquals("gemini-test", b.model());
        synchronized (seen) {
            assertTrue(seen.get(0).contains("gemini-other"), seen.get(0));
            assertTrue(seen.get(1).contains("gemini-test"), seen.get(1));
            for (String s : seen) {
                assertTrue(s.endsWith("key-header=" + KEY), s);
                assertFalse(s.substring(0, s.indexOf(" key-header")).contains(KEY), s);
            }
        }
    }

    @Test
    void failuresReadAsPythons() {
        GeminiModel m = model(5);
        answer(429, error(429, "RESOURCE_EXHAUSTED", "quota"));
        assertEquals("Gemini quota exceeded (429): try again later or use your own API key", fails(m, null));
        answer(400, error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."));
        assertEquals("Gemini rejected the API key (400)", fails(m, null));
        answer(403, error(403, "PERMISSION_DENIED", "denied"));
        assertEquals("Gemini rejected the API key (403)", fails(m, null));
        answer(404, error(404, "NOT_FOUND", "no such model"));
        assertEquals("Gemini does not offer the model 'gemini-x' (404)", fails(m, "gemini-x"));
        answer(400, error(400, "INVALID_ARGUMENT", "bad   request " + KEY));
        assertEquals("Gemini rejected the request (400): bad request [redacted]", fails(m, null));
        answer(500, error(500, "INTERNAL", "boom"));
        assertEquals("Gemini is unavailable (500): try again later", fails(m, null));
        answer(503, error(503, "UNAVAILABLE", "overloaded"));
        int before;
        synchronized (seen) {
            before = seen.size();
        }
        long start = System.nanoTime();
        assertEquals("Gemini is unavailable (503): try again later", fails(m, null));
        synchronized (seen) {
            assertEquals(before + 1, seen.size(), "no SDK retries");
        }
        // The SDK would sleep its retry delay (~1 s) even after its only attempt.
        assertTrue(System.nanoTime() - start < 900_000_000L, "took " + (System.nanoTime() - start) / 1e6 + " ms");

        answer(504, error(504, "DEADLINE_EXCEEDED", "slow"));
        assertEquals("Gemini timed out (504): try again later", fails(m, null));
        answer(200, "{\"promptFeedback\":{\"blockReason\":\"SAFETY\"}}");
        assertEquals("Gemini refused to answer this question (blocked: SAFETY)", fails(m, null));
        answer(200, "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[]},\"finishReason\":\"MAX_TOKENS\"}]}");
        assertEquals("Gemini returned an empty answer (finish reason: MAX_TOKENS)", fails(m, null));
        answer(200, "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"  \"}]}}]}");
        assertEquals("Gemini returned an empty answer (finish reason: unknown)", fails(m, null));
    }

    @Test
    void timeoutIsAnErrorNotACrash() {
        answer(200, "{}");
        delayMs = 3000;
        long start = System.nanoTime();
        assertEquals("Gemini did not answer within 0.5 s", fails(model(0.5), null));
        assertTrue(System.nanoTime() - start < 2_500_000_000L);
    }

    @Test
    void unreachable() throws Exception {
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        GeminiModel m = new GeminiModel("gemini-test", "http://127.0.0.1:" + port, 2);
        assertEquals("could not reach Gemini: try again later", fails(m, null));
    }

    @Test
    void routerModes() throws Exception {
        answer(200, "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"g\"}]}}]}");
        OfflineModel offline = new OfflineModel(0, 0);
        ModelRouter auto = new ModelRouter("auto", () -> model(5), offline, "");
        assertEquals("offline", auto.answer("q", "", null).model());
        assertEquals("gemini-test", auto.answer("q", KEY, null).model());
        ModelRouter gemini = new ModelRouter("gemini", () -> model(5), offline, " ");
        ModelError e = assertThrows(ModelError.class, () -> gemini.answer("q", "", null));
        assertEquals("no Gemini API key configured", e.getMessage());
        ModelRouter off = new ModelRouter("offline", () -> model(5), offline, KEY);
        assertEquals("offline", off.answer("q", KEY, null).model());
    }
}
