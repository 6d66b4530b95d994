package swarmailab.worker.protocol;

/** A payload is not the message expected; the message says which and why ("invalid task message: ..."). */
public final class DecodeException extends Exception {
    private static final long serialVersionUID = 1L;

    public DecodeException(String kind, String reason) {
        super("invalid " + kind + ": " + reason, null, false, false);
    }
}
