package swarmailab.worker.protocol;

/** One attempt at one task, from `workers/{id}/tasks`; unknown keys are ignored. */
public record TaskMessage(
    String workerId,
    String sessionId,
    String query,
    String apiKey,
    String grpcEndpoint,
    long timestamp,
    String taskId,
    Long attempt,
    String token,
    String model) {

    /** Reads a task message as the Python worker validates it. */
    public static TaskMessage decode(byte[] payload) throws DecodeException {
        FieldReader r = FieldReader.of("task message", payload);
        String workerId = r.string("worker_id", true);
        if (!WorkerIds.valid(workerId)) {
            throw new DecodeException("task message",
                "worker_id: String should match pattern '^" + WorkerIds.PATTERN + "$'");
        }
        String sessionId = r.string("session_id", true);
        String query = r.string("query", true);
        String apiKey = r.string("api_key", false);
        String endpoint = r.string("grpc_endpoint", true);
        long timestamp = r.integer("timestamp", true, 0L);
        return new TaskMessage(workerId, sessionId, query, apiKey == null ? "" : apiKey, endpoint, timestamp,
            r.string("task_id", false), r.integer("attempt", false, null), r.string("token", false),
            r.string("model", false));
    }

    /** The first 8 characters of the task id (or session id), for log lines. */
    public String label() {
        String id = taskId != null && !taskId.isEmpty() ? taskId : sessionId;
        return swarmailab.worker.settings.PyText.head(id, 8);
    }

    /** Never shows the key (records print every field otherwise). */
    @Override
    public String toString() {
        return "TaskMessage[task " + label() + ", attempt " + attempt + "]";
    }
}
