package swarmailab.worker.protocol;

/**
 * The messages a worker publishes, as compact UTF-8 JSON with the Python worker's keys, in its order (pydantic
 * writes a model's fields in declaration order); a null field is left out, as exclude_none=True does.
 */
public final class Messages {
    private Messages() {}

    /** The wire's clock: milliseconds since the Unix epoch. */
    public static long nowMs() {
        return System.currentTimeMillis();
    }

    /** `workers/register`: always idle, with the longest a task may take here. */
    public static byte[] register(String workerId, String language, long timestamp, long maxTaskMs) {
        return register(workerId, language, timestamp, maxTaskMs, false);
    }

    /** `workers/register`; `lean`: it follows a lean master and says `task_messages: false`. */
    public static byte[] register(String workerId, String language, long timestamp, long maxTaskMs, boolean lean) {
        return JsonCodec.utf8(JsonCodec.object().put("worker_id", workerId).put("language", language)
            .put("status", "idle").put("timestamp", timestamp).put("max_task_ms", maxTaskMs > 0 ? maxTaskMs : null)
            .put("task_messages", lean ? Boolean.FALSE : null));
    }

    /** `workers/status`; timestamp, task id and attempt are left out when null (the Will has none). */
    public static byte[] status(String workerId, String status, Long timestamp, String taskId, Long attempt) {
        return JsonCodec.utf8(JsonCodec.object().put("worker_id", workerId).put("status", status)
            .put("timestamp", timestamp).put("task_id", taskId).put("attempt", attempt));
    }

    /** One line on `logs`. */
    public static byte[] log(long timestamp, String source, String message) {
        return JsonCodec.utf8(JsonCodec.object().put("timestamp", timestamp).put("source", source)
            .put("message", message));
    }
}
