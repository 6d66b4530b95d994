package swarmailab.worker.protocol;

/**
 * The master's retained `master/status`: online or offline, when it started, where it takes results, and whether
 * it is lean (`task_messages: false`: it needs no busy, idle or log line per task).
 */
public record MasterPresence(String status, Long timestamp, String grpcEndpoint, boolean lean) {
    /** Reads a presence message as the Python worker validates it. */
    public static MasterPresence decode(byte[] payload) throws DecodeException {
        FieldReader r = FieldReader.of("master presence", payload);
        String status = r.string("status", true);
        if (!status.equals("online") && !status.equals("offline")) {
            throw new DecodeException("master presence", "status: Input should be 'online' or 'offline'");
        }
        Long timestamp = r.integer("timestamp", false, 0L);
        String endpoint = r.string("grpc_endpoint", false);
        return new MasterPresence(status, timestamp, endpoint == null ? "" : endpoint, r.isFalse("task_messages"));
    }
}
