package swarmailab.worker.protocol;

/**
 * The master's retained `master/status`: online or offline, when it started, where it takes results, whether it is
 * lean (`task_messages: false`: it needs no busy, idle or log line per task), and the leader's epoch (standby
 * masters: higher for each new leader; null from a single master).
 */
public record MasterPresence(String status, Long timestamp, String grpcEndpoint, boolean lean, Long epoch) {
    /** Reads a presence message as the Python worker validates it. */
    public static MasterPresence decode(byte[] payload) throws DecodeException {
        FieldReader r = FieldReader.of("master presence", payload);
        String status = r.string("status", true);
        if (!status.equals("online") && !status.equals("offline")) {
            throw new DecodeException("master presence", "status: Input should be 'online' or 'offline'");
        }
        Long timestamp = r.integer("timestamp", false, 0L);
        String endpoint = r.string("grpc_endpoint", false);
        boolean lean = r.isFalse("task_messages");
        Long epoch = r.integer("epoch", false, null);
        return new MasterPresence(status, timestamp, endpoint == null ? "" : endpoint, lean, epoch);
    }
}
