package swarmailab.worker.protocol;

import java.security.SecureRandom;
import java.util.regex.Pattern;

/** The worker id convention: `<language>-worker-<6 hex>`, and what any id must match (it is part of a topic). */
public final class WorkerIds {
    public static final String PATTERN = "[A-Za-z0-9_.:-]{1,128}";
    private static final Pattern VALID = Pattern.compile(PATTERN);
    private static final String SEPARATOR = "-worker-";

    private WorkerIds() {}

    public static boolean valid(String id) {
        return VALID.matcher(id).matches();
    }

    /** A new id, e.g. `java-worker-3f9a1c`. */
    public static String make(String language) {
        if (language.isEmpty() || language.contains(SEPARATOR)) {
            throw new IllegalArgumentException("invalid worker language " + language);
        }
        byte[] b = new byte[3];
        new SecureRandom().nextBytes(b);
        return language + SEPARATOR + java.util.HexFormat.of().formatHex(b);
    }
}
