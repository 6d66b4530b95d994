package swarmailab.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;
import swarmailab.worker.protocol.DecodeException;
import swarmailab.worker.protocol.MasterPresence;
import swarmailab.worker.protocol.Messages;
import swarmailab.worker.protocol.TaskMessage;
import swarmailab.worker.protocol.Topics;
import swarmailab.worker.protocol.WorkerIds;

/** The MQTT messages of docs/PROTOCOL.md as the Python worker writes and reads them. */
class ProtocolTest {
    private static String text(byte[] b) {
        return new String(b, StandardCharsets.UTF_8);
    }

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    @Test
    void encodesAsPydanticDoes() {
        assertEquals("{\"worker_id\":\"java-worker-abc123\",\"language\":\"java\",\"status\":\"idle\","
            + "\"timestamp\":5,\"max_task_ms\":40000}", text(Messages.register("java-worker-abc123", "java", 5, 40000)));
        assertEquals("{\"worker_id\":\"w\",\"status\":\"offline\"}",
            text(Messages.status("w", "offline", null, null, null)));
        assertEquals("{\"worker_id\":\"w\",\"status\":\"busy\",\"timestamp\":7,\"task_id\":\"t\",\"attempt\":2}",
            text(Messages.status("w", "busy", 7L, "t", 2L)));
        assertEquals("{\"timestamp\":1,\"source\":\"w\",\"message\":\"a \\\"q\\\" é\\n\"}",
            text(Messages.log(1, "w", "a \"q\" é\n")));
    }

    @Test
    void decodesTasks() throws DecodeException {
        TaskMessage t = TaskMessage.decode(bytes("{\"worker_id\":\"java-worker-1\",\"session_id\":\"s\",\"query\":"
            + "\"q \\ud83d\\ude00\",\"grpc_endpoint\":\"h:1\",\"timestamp\":3,\"task_id\":\"abcdefghij\",\"attempt\":2,"
            + "\"token\":\"tok\",\"model\":null,\"unknown\":[1,{\"x\":true}]}"));
        assertEquals("q 😀", t.query());
        assertEquals("", t.apiKey());
        assertEquals(2L, t.attempt());
        assertNull(t.model());
        assertEquals("abcdefgh", t.label());
        assertTrue(!t.toString().contains("tok"));
    }

    @Test
    void refusesMalformed() {
        String[] bad = {
            "not json", "[1]", "\"x\"", "{}", "{\"worker_id\":\"a/b\",\"session_id\":\"s\",\"query\":\"q\","
                + "\"grpc_endpoint\":\"e\",\"timestamp\":1}",
            "{\"worker_id\":\"w\",\"session_id\":\"s\",\"query\":\"q\",\"grpc_endpoint\":\"e\",\"timestamp\":1.0}",
            "{\"worker_id\":\"w\",\"session_id\":\"s\",\"query\":\"q\",\"grpc_endpoint\":\"e\",\"timestamp\":-1}",
            "{\"worker_id\":\"w\",\"session_id\":\"s\",\"query\":5,\"grpc_endpoint\":\"e\",\"timestamp\":1}",
            "{\"worker_id\":\"w\",\"session_id\":\"s\",\"query\":\"q\",\"grpc_endpoint\":\"e\",\"timestamp\":\"1\"}",
            "{\"worker_id\":\"w\"} trailing",
        };
        for (String b : bad) {
            assertThrows(DecodeException.class, () -> TaskMessage.decode(bytes(b)), b);
        }
        assertThrows(DecodeException.class, () -> TaskMessage.decode(new byte[] {(byte) 0xff, '{'}));
    }

    @Test
    void presence() throws DecodeException {
        MasterPresence p = MasterPresence.decode(bytes("{\"status\":\"online\",\"timestamp\":9,\"grpc_endpoint\":\"m:1\"}"));
        assertEquals(9L, p.timestamp());
        assertEquals("m:1", p.grpcEndpoint());
        assertThrows(DecodeException.class, () -> MasterPresence.decode(bytes("{\"status\":\"gone\"}")));
    }

    @Test
    void topicsAndIds() {
        Topics t = new Topics("lab/x");
        assertEquals("lab/x/workers/java-worker-1/tasks", t.tasks("java-worker-1"));
        assertEquals("lab/x/master/status", t.masterStatus());
        assertTrue(WorkerIds.make("java").matches("java-worker-[0-9a-f]{6}"));
        assertTrue(WorkerIds.valid("a.b:c-d_e"));
        assertTrue(!WorkerIds.valid("a b"));
    }
}
