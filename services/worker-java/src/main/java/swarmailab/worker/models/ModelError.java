package swarmailab.worker.models;

/**
 * A model call failed; the message is fit for the user and never holds a key, a URL or a stack trace.
 * kind: quota, auth, timeout, unavailable, bad_request, other; status: the HTTP status, 0 when none.
 */
public final class ModelError extends Exception {
    private static final long serialVersionUID = 1L;

    private final String kind;
    private final int status;

    public ModelError(String userMessage, String kind, int status) {
        super(userMessage, null, false, false); // no stack trace: it is a message, not a bug
        this.kind = kind;
        this.status = status;
    }

    public ModelError(String userMessage, String kind) {
        this(userMessage, kind, 0);
    }

    public String kind() {
        return kind;
    }

    public int status() {
        return status;
    }
}
