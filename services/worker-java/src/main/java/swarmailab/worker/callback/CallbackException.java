package swarmailab.worker.callback;

/** The result could not be delivered to the master; the message says where and why, without the result. */
public final class CallbackException extends Exception {
    private static final long serialVersionUID = 1L;

    public CallbackException(String message) {
        super(message, null, false, false);
    }
}
