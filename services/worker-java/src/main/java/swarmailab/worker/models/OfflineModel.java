package swarmailab.worker.models;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Random;
import swarmailab.worker.settings.PyText;

/**
 * A deterministic stand-in for Gemini with a configurable (optionally lognormal) latency; its text is byte for
 * byte Python's OfflineModel.text_for (lengths in code points, Python's whitespace).
 */
public final class OfflineModel implements Model {
    public static final String NAME = "offline";
    private static final String[] SENTENCES = {
        "Set a Gemini API key to get a real answer.",
        "This reply was produced without contacting any AI service.",
        "The worker is running in offline mode, so this is a placeholder answer.",
        "A real model would have something more useful to say here.",
        "Offline answers are deterministic: the same question gets the same reply.",
        "Use this mode to test the system without spending any quota.",
    };
    private static final int ECHO_CHARS = 200;

    private final double meanMs;
    private final double sdMs;
    private final double mu;
    private final double sigma;
    private final Random random = new Random();

    public OfflineModel(double meanMs, double sdMs) {
        if (meanMs < 0 || sdMs < 0) {
            throw new IllegalArgumentException("offline latency must be >= 0");
        }
        this.meanMs = meanMs;
        this.sdMs = sdMs;
        if (sdMs > 0 && meanMs > 0) {
            double sigma2 = Math.log1p((sdMs / meanMs) * (sdMs / meanMs));
            this.mu = Math.log(meanMs) - sigma2 / 2;
            this.sigma = Math.sqrt(sigma2);
        } else {
            this.mu = 0;
            this.sigma = 0;
        }
    }

    /** The deterministic offline answer to query. */
    public static String textFor(String query) {
        String echo = PyText.collapseSpaces(query);
        if (PyText.length(echo) > ECHO_CHARS) {
            // Cut by code points, never inside a surrogate pair (an emoji at the cut stays whole or goes).
            echo = PyText.rstrip(PyText.head(echo, ECHO_CHARS - 1)) + "…";
        }
        byte[] digest = sha256(query.getBytes(StandardCharsets.UTF_8));
        long first8 = 0;
        for (int k = 0; k < 8; k++) {
            first8 = (first8 << 8) | (digest[k] & 0xff);
        }
        String sentence = SENTENCES[(int) Long.remainderUnsigned(first8, SENTENCES.length)];
        return "[offline model] You asked: " + echo + "\n" + sentence;
    }

    private static byte[] sha256(byte[] data) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(data);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e); // every JVM has SHA-256
        }
    }

    /** One latency in milliseconds: the mean when sd is 0, else lognormal(mean, sd). */
    public double sampleLatencyMs() {
        if (sdMs <= 0 || meanMs <= 0) {
            return meanMs;
        }
        synchronized (random) {
            return Math.exp(mu + sigma * random.nextGaussian());
        }
    }

    @Override
    public Answer answer(String query, String apiKey, String model) throws InterruptedException {
        long start = System.nanoTime();
        double delayMs = sampleLatencyMs();
        if (delayMs > 0) {
            Sleeper.sleepAtLeast(delayMs / 1000);
        }
        return new Answer(textFor(query), NAME, Sleeper.roundMs(System.nanoTime() - start));
    }
}
