package swarmailab.worker.models;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.util.List;
import java.util.Locale;
import swarmailab.worker.settings.PyText;

/**
 * Turns every Gemini failure into a ModelError with the Python worker's wording (services/worker/gemini.py):
 * no key, no URL, no stack trace in it.
 */
public final class GeminiErrors {
    // Substrings (lower case) that mark a 400/403 as being about the key rather than the request.
    private static final List<String> KEY_MARKERS =
        List.of("api key", "api_key", "apikey", "unregistered callers", "credential");
    private static final int DETAIL_CHARS = 300;

    private GeminiErrors() {}

    /** An HTTP error answer from Gemini (code, its status name, its message). */
    public static ModelError fromStatus(int code, String status, String message, String model, String key) {
        String said = shortText(redact(message != null && !message.isEmpty() ? message : status == null ? "" : status,
            key));
        if (code == 429) {
            return new ModelError("Gemini quota exceeded (429): try again later or use your own API key", "quota",
                code);
        }
        if ((code == 400 || code == 401 || code == 403) && isKeyProblem(code, status, message)) {
            return new ModelError("Gemini rejected the API key (" + code + ")", "auth", code);
        }
        if (code == 404) {
            return new ModelError("Gemini does not offer the model " + PyText.repr(model) + " (404)", "bad_request",
                code);
        }
        if (code == 408 || code == 504) {
            return new ModelError("Gemini timed out (" + code + "): try again later", "timeout", code);
        }
        if (code >= 500 && code < 600) {
            return new ModelError("Gemini is unavailable (" + code + "): try again later", "unavailable", code);
        }
        if (code >= 400 && code < 500) {
            String suffix = said.isEmpty() ? "" : ": " + said;
            return new ModelError("Gemini rejected the request (" + code + ")" + suffix, "bad_request", code);
        }
        return new ModelError("Gemini answered with an unexpected status (" + code + ")", "other", code);
    }

    static boolean isKeyProblem(int code, String status, String message) {
        if (code == 401 || "UNAUTHENTICATED".equals(status) || "PERMISSION_DENIED".equals(status)) {
            return true;
        }
        String haystack = (message == null ? "" : message).toLowerCase(Locale.ROOT);
        return KEY_MARKERS.stream().anyMatch(haystack::contains);
    }

    /** The call did not finish in time. */
    public static ModelError timeout(double timeoutSeconds) {
        return new ModelError("Gemini did not answer within " + PyText.formatG(timeoutSeconds) + " s", "timeout");
    }

    /** The call failed below HTTP: a timeout (OkHttp's are InterruptedIOExceptions) or no connection. */
    public static ModelError fromIo(Throwable e, double timeoutSeconds) {
        for (Throwable c = e; c != null; c = c.getCause()) {
            if (c instanceof InterruptedIOException) {
                return timeout(timeoutSeconds);
            }
        }
        for (Throwable c = e; c != null; c = c.getCause()) {
            if (c instanceof IOException) {
                return new ModelError("could not reach Gemini: try again later", "unavailable");
            }
        }
        return other(e);
    }

    /** The SDK refused the arguments before sending anything (Python's ValueError). */
    public static ModelError invalid(Throwable e, String key) {
        return new ModelError("invalid Gemini request: " + shortText(redact(String.valueOf(e.getMessage()), key)),
            "bad_request");
    }

    /** Anything else, named by its type only. */
    public static ModelError other(Throwable e) {
        return new ModelError("Gemini call failed (" + e.getClass().getSimpleName() + ")", "other");
    }

    /** text with every occurrence of secret replaced, and URLs left out (they may carry anything). */
    public static String redact(String text, String secret) {
        if (secret != null && !secret.isEmpty()) {
            text = text.replace(secret, "[redacted]");
        }
        return text.replaceAll("(?i)\\b(https?|wss?)://\\S+", "[url]");
    }

    /** text on one line, cut to a readable length (in code points, with "…" as Python does). */
    public static String shortText(String text) {
        text = PyText.collapseSpaces(text);
        return PyText.length(text) <= DETAIL_CHARS ? text : PyText.head(text, DETAIL_CHARS - 1) + "…";
    }
}
