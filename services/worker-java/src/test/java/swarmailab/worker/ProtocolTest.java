package swarmailab.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;
import swarmailab.worker.protocol.DecodeException;
import swarmailab.worker.protocol.MasterEpochs;
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

    private static final String TASK = "{\"worker_id\":\"w\",\"session_id\":\"s\",\"query\":\"q\","
        + "\"grpc_endpoint\":\"e\",\"timestamp\":1";

    @Test
    void refusesWhatPydanticRefuses() {
        String[] bad = {
            TASK + ",\"attempt\":3.0}", TASK + ",\"attempt\":3e0}", TASK + ",\"attempt\":true}",
            TASK + ",\"attempt\":NaN}", TASK + ",\"attempt\":\"3\"}", TASK + ",\"attempt\":[3]}",
            TASK + ",\"attempt\":9223372036854775808}", TASK + ",\"token\":7}", TASK + ",\"model\":{}}",
            TASK + ",\"query\":false}", TASK + ",\"query\":null}", TASK + ",\"timestamp\":1} {}",
            TASK + ",}", TASK + "}\u000c", "\ufeff" + TASK + "}", TASK + ",'x':1}", TASK + "} // c", "", " ", "null",
            TASK + ",\"x\":INF}", TASK + ",\"x\":01}", TASK + ",\"x\":\"\u0001\"}", TASK + ",\"x\":\"\\x\"}",
        };
        for (String b : bad) {
            assertThrows(DecodeException.class, () -> TaskMessage.decode(bytes(b)), b);
        }
    }

    @Test
    void acceptsWhatPythonAccepts() throws DecodeException {
        // Python's json: the last of repeated keys wins; NaN and Infinity are numbers, harmless where ignored.
        TaskMessage t = TaskMessage.decode(bytes(TASK + ",\"attempt\":1,\"attempt\":2,\"x\":NaN,\"y\":-Infinity,"
            + "\"z\":1e999,\"attempt\":-0} \r\n\t"));
        assertEquals(0L, t.attempt());
        assertEquals("", t.apiKey());
        assertEquals(Long.MAX_VALUE, TaskMessage.decode(bytes(TASK + ",\"attempt\":9223372036854775807}")).attempt());
        assertEquals("\ud800", TaskMessage.decode(bytes(TASK + ",\"token\":\"\\ud800\"}")).token());
    }

    @Test
    void decodeErrorsAreOneLineWithoutTheKey() {
        DecodeException e = assertThrows(DecodeException.class,
            () -> TaskMessage.decode(bytes(TASK + ",\"api_key\":AIzaSecretKey}")));
        assertTrue(e.getMessage().startsWith("invalid task message: not UTF-8 JSON ("), e.getMessage());
        assertTrue(!e.getMessage().contains("Secret") && !e.getMessage().contains("\n"), e.getMessage());
        assertEquals("invalid task message: expected a JSON object, got array",
            assertThrows(DecodeException.class, () -> TaskMessage.decode(bytes("[1]"))).getMessage());
        assertEquals("invalid task message: attempt: Input should be a valid integer",
            assertThrows(DecodeException.class, () -> TaskMessage.decode(bytes(TASK + ",\"attempt\":2.0}"))).getMessage());
        assertEquals("invalid task message: timestamp: Input should be greater than or equal to 0",
            assertThrows(DecodeException.class, () -> TaskMessage.decode(bytes(TASK.replace(":1", ":-1") + "}")))
                .getMessage());
    }

    @Test
    void encodesEscapesAsJsonRequires() {
        // Control characters as \\uXXXX (Jackson writes upper-case hex, pydantic lower: both JSON); non-ASCII and
        // emoji as UTF-8; a lone surrogate as '?', as Java's UTF-8 encoder writes it.
        assertEquals("{\"timestamp\":1,\"source\":\"w\",\"message\":\"\\t\\u0001/\u2028😀?\"}",
            text(Messages.log(1, "w", "\t\u0001/\u2028😀\ud800")));
        assertEquals("{\"worker_id\":\"w\",\"language\":\"java\",\"status\":\"idle\",\"timestamp\":5}",
            text(Messages.register("w", "java", 5, 0)));
    }

    @Test
    void presence() throws DecodeException {
        MasterPresence p = MasterPresence.decode(bytes("{\"status\":\"online\",\"timestamp\":9,\"grpc_endpoint\":\"m:1\"}"));
        assertFalse(p.lean());
        assertTrue(MasterPresence.decode(bytes("{\"status\":\"online\",\"task_messages\":false}")).lean());
        assertFalse(MasterPresence.decode(bytes("{\"status\":\"online\",\"task_messages\":true}")).lean());
        assertFalse(MasterPresence.decode(bytes("{\"status\":\"online\",\"task_messages\":0}")).lean());
        assertEquals("{\"worker_id\":\"w\",\"language\":\"java\",\"status\":\"idle\",\"timestamp\":5,"
            + "\"task_messages\":false}", text(Messages.register("w", "java", 5, 0, true)));
        assertEquals(9L, p.timestamp());
        assertEquals("m:1", p.grpcEndpoint());
        assertThrows(DecodeException.class, () -> MasterPresence.decode(bytes("{\"status\":\"gone\"}")));
        assertNull(p.epoch());
        assertEquals(12L, MasterPresence.decode(bytes("{\"status\":\"offline\",\"epoch\":12}")).epoch());
        DecodeException e = assertThrows(DecodeException.class,
            () -> MasterPresence.decode(bytes("{\"status\":\"online\",\"epoch\":1.5}")));
        assertEquals("invalid master presence: epoch: Input should be a valid integer", e.getMessage());
    }

    /** A presence with a lower epoch than one already seen is ignored (docs/PROTOCOL.md, Epochs). */
    @Test
    void epochs() throws DecodeException {
        MasterEpochs epochs = new MasterEpochs();
        assertFalse(epochs.deposed(MasterPresence.decode(bytes("{\"status\":\"online\",\"timestamp\":1}"))));
        assertNull(epochs.highest());
        String[][] steps = {
            // presence, deposed, highest epoch after it
            {"{\"status\":\"online\",\"timestamp\":2,\"epoch\":7}", "false", "7"},
            {"{\"status\":\"online\",\"timestamp\":3,\"epoch\":5}", "true", "7"},
            {"{\"status\":\"online\",\"timestamp\":4,\"epoch\":7}", "false", "7"},
            {"{\"status\":\"online\",\"timestamp\":5}", "false", "7"}, // no epoch: read as always
            {"{\"status\":\"online\",\"timestamp\":6,\"epoch\":6}", "true", "7"},
            {"{\"status\":\"offline\",\"epoch\":9}", "false", "9"}, // a newer leader's Will
            {"{\"status\":\"online\",\"timestamp\":7,\"epoch\":8}", "true", "9"},
            {"{\"status\":\"offline\",\"epoch\":3}", "true", "9"},
            {"{\"status\":\"online\",\"timestamp\":8,\"epoch\":10}", "false", "10"},
        };
        for (String[] step : steps) {
            assertEquals(Boolean.parseBoolean(step[1]), epochs.deposed(MasterPresence.decode(bytes(step[0]))), step[0]);
            assertEquals(Long.valueOf(step[2]), epochs.highest(), step[0]);
        }
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
