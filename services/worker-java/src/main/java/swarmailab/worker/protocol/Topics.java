package swarmailab.worker.protocol;

/** Every MQTT topic the worker uses, under one prefix (services/protocol/topics.py). */
public final class Topics {
    public static final String DEFAULT_PREFIX = "upb";

    private final String prefix;

    public Topics(String prefix) {
        this.prefix = prefix;
    }

    /** Why a prefix is invalid (as Python says it), or null when it is fine. */
    public static String checkPrefix(String prefix) {
        if (prefix.isEmpty() || prefix.contains("+") || prefix.contains("#") || prefix.endsWith("/")) {
            return "invalid topic prefix " + swarmailab.worker.settings.PyText.repr(prefix);
        }
        return null;
    }

    public String register() {
        return prefix + "/workers/register";
    }

    public String status() {
        return prefix + "/workers/status";
    }

    public String tasks(String workerId) {
        return prefix + "/workers/" + workerId + "/tasks";
    }

    public String logs() {
        return prefix + "/logs";
    }

    public String masterStatus() {
        return prefix + "/master/status";
    }
}
