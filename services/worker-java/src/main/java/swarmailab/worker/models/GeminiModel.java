package swarmailab.worker.models;

import com.google.genai.Client;
import com.google.genai.errors.ApiException;
import com.google.genai.errors.GenAiIOException;
import com.google.genai.types.Candidate;
import com.google.genai.types.GenerateContentResponse;
import com.google.genai.types.HttpOptions;
import com.google.genai.types.HttpRetryOptions;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import swarmailab.worker.logging.Log;
import swarmailab.worker.settings.PyText;

/**
 * Gemini through the official SDK (com.google.genai): the key in a header (the SDK's x-goog-api-key), never in
 * the URL; the task's model before GEMINI_MODEL; our base URL and timeout; no SDK retries. Every failure becomes
 * a readable ModelError; an interrupt (the worker stopping) abandons the call at once.
 */
public final class GeminiModel implements Model {
    private static final int CLIENT_CACHE_SIZE = 32;
    // Slack over the SDK's own timeout, so that the SDK's fires first and this belt only catches a hang.
    private static final long BELT_SLACK_MS = 500;

    private final String defaultModel;
    private final String baseUrl;
    private final double timeoutSeconds;
    // One client per key, keyed by a digest so that the cache never holds a key as its index.
    private final Map<String, Client> clients = new LinkedHashMap<>(16, 0.75f, true);
    // The call runs here so that the work thread can be interrupted while the SDK blocks on I/O.
    private final ExecutorService calls = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "gemini-call");
        t.setDaemon(true);
        return t;
    });

    public GeminiModel(String defaultModel, String baseUrl, double timeoutSeconds) {
        if (timeoutSeconds <= 0) {
            throw new IllegalArgumentException("Gemini timeout must be > 0 s");
        }
        this.defaultModel = defaultModel;
        this.baseUrl = baseUrl == null || baseUrl.isEmpty() ? null : baseUrl;
        this.timeoutSeconds = timeoutSeconds;
    }

    private static volatile boolean warm;
    private static volatile boolean preloading;

    /**
     * Loads and initialises the SDK now (Jackson, OkHttp, Kotlin: about a second of CPU when cold): an answer
     * and a quota error from a loopback stand-in. The worker does it a while after connecting, and the first
     * Gemini task waits for it before its own call, so that GEMINI_TIMEOUT_SECONDS times the call, not the JVM.
     */
    public static synchronized void preload() {
        if (warm || preloading) { // preloading: its own calls come back here
            return;
        }
        preloading = true;
        try (LoopbackGemini stand = new LoopbackGemini()) {
            GeminiModel model = new GeminiModel("preload", stand.baseUrl(), 10);
            try {
                model.answer("preload", "preload", null);
                model.answer("preload", "fail-preload", null);
            } catch (ModelError e) {
                // the quota error is expected
            } finally {
                model.close();
            }
        } catch (IOException | InterruptedException | RuntimeException e) {
            Log.debug("could not preload the Gemini SDK: " + e);
        } finally {
            preloading = false;
            warm = true; // set last: a first task that comes meanwhile waits for the preload (synchronized)
        }
    }

    /** Closes every cached client. */
    public synchronized void close() {
        clients.values().forEach(GeminiModel::closeQuietly);
        clients.clear();
        calls.shutdownNow();
    }

    private synchronized Client client(String key) {
        String digest = digest(key);
        Client c = clients.get(digest);
        if (c != null) {
            return c;
        }
        HttpOptions.Builder options = HttpOptions.builder()
            // The SDK's timeout is in whole milliseconds.
            .timeout((int) Math.max(1, Math.ceil(timeoutSeconds * 1000)))
            // attempts(1): no retries, which would break our timeout and spend the user's quota. No status codes
            // to retry either: SDK 2.3.0 still sleeps its retry delay (~1 s) after the last attempt when the
            // status is one it retries (429, 5xx) — measured; this answers those errors at once.
            .retryOptions(HttpRetryOptions.builder().attempts(1).httpStatusCodes(List.of()).build());
        if (baseUrl != null) {
            options.baseUrl(baseUrl);
        }
        // vertexAI(false): never let GOOGLE_GENAI_USE_VERTEXAI send the call elsewhere; the key is always given
        // (without one the SDK would read GEMINI_API_KEY/GOOGLE_API_KEY itself).
        c = Client.builder().apiKey(key).vertexAI(false).httpOptions(options.build()).build();
        clients.put(digest, c);
        while (clients.size() > CLIENT_CACHE_SIZE) { // one task at a time: the oldest is not in use
            var oldest = clients.entrySet().iterator().next();
            clients.remove(oldest.getKey());
            closeQuietly(oldest.getValue());
        }
        return c;
    }

    private static void closeQuietly(Client c) {
        try {
            c.close();
        } catch (Exception e) {
            Log.debug("closing a Gemini client failed: " + e.getClass().getSimpleName());
        }
    }

    private static String digest(String key) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256")
                .digest(key.getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    @Override
    public Answer answer(String query, String apiKey, String model) throws ModelError, InterruptedException {
        String key = apiKey == null ? "" : PyText.strip(apiKey);
        if (key.isEmpty()) {
            throw new ModelError(ModelRouter.NO_KEY_MESSAGE, "auth");
        }
        String modelName = model != null && !model.isEmpty() ? model : defaultModel;
        if (!warm) {
            preload();
        }
        long start = System.nanoTime();
        Future<GenerateContentResponse> call;
        try {
            Client c = client(key);
            call = calls.submit(() -> c.models.generateContent(modelName, query, null));
        } catch (RuntimeException e) {
            throw logged(GeminiErrors.other(e), e, key);
        }
        GenerateContentResponse response;
        try {
            response = call.get((long) Math.ceil(timeoutSeconds * 1000) + BELT_SLACK_MS, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            call.cancel(true); // stopping: nothing to report to the user
            throw e;
        } catch (TimeoutException e) {
            call.cancel(true);
            throw logged(GeminiErrors.timeout(timeoutSeconds), e, key);
        } catch (ExecutionException e) {
            throw logged(map(e.getCause(), modelName, key), e.getCause(), key);
        }
        String text = answerText(response);
        return new Answer(text, modelName, Sleeper.roundMs(System.nanoTime() - start));
    }

    /** Any failure of the SDK call as a ModelError (ApiException and GenAiIOException are unrelated types). */
    ModelError map(Throwable e, String model, String key) {
        if (e instanceof ApiException) {
            ApiException a = (ApiException) e;
            return GeminiErrors.fromStatus(a.code(), a.status(), a.message(), model, key);
        }
        if (e instanceof GenAiIOException || e instanceof java.io.IOException) {
            return GeminiErrors.fromIo(e, timeoutSeconds);
        }
        if (e instanceof IllegalArgumentException) {
            return GeminiErrors.invalid(e, key);
        }
        return GeminiErrors.other(e);
    }

    /** The response's text, or a ModelError when Gemini gave none (a safety block, an empty candidate). */
    static String answerText(GenerateContentResponse response) throws ModelError {
        String text;
        try {
            text = response.text();
        } catch (RuntimeException e) {
            text = null;
        }
        if (text != null && !PyText.strip(text).isEmpty()) {
            return text;
        }
        var blocked = response.promptFeedback().flatMap(f -> f.blockReason());
        if (blocked.isPresent()) {
            throw new ModelError("Gemini refused to answer this question (blocked: " + blocked.get() + ")",
                "bad_request");
        }
        List<Candidate> candidates = response.candidates().orElse(List.of());
        String reason = candidates.isEmpty() ? "unknown"
            : candidates.get(0).finishReason().map(Object::toString).filter(s -> !s.isEmpty()).orElse("unknown");
        throw new ModelError("Gemini returned an empty answer (finish reason: " + reason + ")", "other");
    }

    /** Logs a failed call (without the key or a URL) and returns err. */
    private static ModelError logged(ModelError err, Throwable cause, String key) {
        if (preloading) {
            return err; // the preload's own quota error is expected, not news
        }
        Log.warning(String.format("Gemini call failed: kind=%s status=%s cause=%s: %s", err.kind(),
            err.status() == 0 ? "None" : String.valueOf(err.status()), cause.getClass().getSimpleName(),
            GeminiErrors.shortText(GeminiErrors.redact(String.valueOf(cause.getMessage()), key))));
        return err;
    }
}
