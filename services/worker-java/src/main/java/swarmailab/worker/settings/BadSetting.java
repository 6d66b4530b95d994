package swarmailab.worker.settings;

/** A setting with a bad value; the message is one line that names the variable (the Python worker's wording). */
public final class BadSetting extends Exception {
    private static final long serialVersionUID = 1L;

    public BadSetting(String message) {
        super(message, null, false, false);
    }
}
