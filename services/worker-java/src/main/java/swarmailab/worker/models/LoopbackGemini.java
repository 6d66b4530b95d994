package swarmailab.worker.models;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

/**
 * A stand-in for Gemini on the loopback interface: a key starting with "fail" gets a 429 in Google's error
 * format, any other key a one-word answer. The warm-up and the SDK's preload talk to it, so that the first real
 * call does not pay for the SDK's cold start inside its timeout.
 */
public final class LoopbackGemini implements AutoCloseable {
    private static final String ANSWER = "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":"
        + "[{\"text\":\"warm\"}]},\"finishReason\":\"STOP\"}]}";
    private static final String QUOTA = "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\","
        + "\"message\":\"quota\"}}";

    private final HttpServer server;

    public LoopbackGemini() throws IOException {
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.createContext("/", exchange -> {
            exchange.getRequestBody().readAllBytes();
            String key = exchange.getRequestHeaders().getFirst("x-goog-api-key");
            boolean fail = key != null && key.startsWith("fail");
            byte[] body = (fail ? QUOTA : ANSWER).getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().add("Content-Type", "application/json");
            exchange.sendResponseHeaders(fail ? 429 : 200, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
        });
        server.start();
    }

    /** Its base URL (GEMINI_BASE_URL). */
    public String baseUrl() {
        return "http://127.0.0.1:" + server.getAddress().getPort();
    }

    @Override
    public void close() {
        server.stop(0);
    }
}
