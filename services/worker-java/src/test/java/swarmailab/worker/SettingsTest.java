package swarmailab.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import swarmailab.worker.settings.BadSetting;
import swarmailab.worker.settings.Env;
import swarmailab.worker.settings.Settings;

/** The Python worker's variables, defaults and messages (the cases of the Go worker's settings_test.go). */
class SettingsTest {
    @Test
    void defaults() throws BadSetting {
        Settings s = Settings.fromEnv(Env.of(Map.of()));
        assertTrue(s.workerId.matches("java-worker-[0-9a-f]{6}"), s.workerId);
        assertEquals("127.0.0.1", s.mqttHost);
        assertEquals(1883, s.mqttPort);
        assertEquals("upb", s.topicPrefix);
        assertEquals(5, s.mqttKeepalive);
        assertEquals("INFO", s.logLevel);
        assertEquals("auto", s.eventLoop);
        assertEquals(10.0, s.workSeconds);
        assertEquals("auto", s.modelMode);
        assertEquals("gemini-flash-latest", s.geminiModel);
        assertEquals(30.0, s.geminiTimeoutSeconds);
        assertEquals(6, s.grpcRetries);
        assertTrue(s.resultStream);
        assertEquals("/tmp/swarm-ai-lab-worker.health", s.healthFile);
        assertEquals(40000, s.maxTaskMs());
    }

    @Test
    void values(@TempDir Path dir) throws Exception {
        Path ca = dir.resolve("ca.pem");
        Path pw = dir.resolve("pw");
        Files.writeString(ca, "x");
        Files.writeString(pw, "  s3cret\n");
        Map<String, String> env = new LinkedHashMap<>();
        env.put("MQTT_HOST", " broker ");
        env.put("MQTT_PORT", "8883");
        env.put("TOPIC_PREFIX", "lab/a");
        env.put("MQTT_USERNAME", "worker");
        env.put("MQTT_PASSWORD_FILE", pw.toString());
        env.put("MQTT_TLS_CA", ca.toString());
        env.put("MQTT_KEEPALIVE", "2");
        env.put("LOG_LEVEL", "debug");
        env.put("WORKER_ID", "java-worker-abc");
        env.put("WORK_SECONDS", "0.2");
        env.put("MODEL_MODE", "OFFLINE");
        env.put("GEMINI_TIMEOUT_SECONDS", "1");
        env.put("OFFLINE_LATENCY_MS", "5");
        env.put("OFFLINE_LATENCY_SD_MS", "1");
        env.put("GRPC_RETRIES", "0");
        env.put("RESULT_STREAM", "off");
        env.put("GRPC_TLS_CA", ca.toString());
        env.put("EVENT_LOOP", "uvloop");
        Settings s = Settings.fromEnv(Env.of(env));
        assertEquals("broker", s.mqttHost);
        assertEquals(8883, s.mqttPort);
        assertEquals("lab/a", s.topicPrefix);
        assertEquals("s3cret", s.mqttPassword);
        assertEquals("DEBUG", s.logLevel);
        assertEquals("java-worker-abc", s.workerId);
        assertEquals("offline", s.modelMode);
        assertEquals(0, s.grpcRetries);
        assertFalse(s.resultStream);
        assertEquals(1200, s.maxTaskMs());
        Settings direct = Settings.fromEnv(Env.of(Map.of("MQTT_PASSWORD", "direct", "MQTT_PASSWORD_FILE", "/nonexistent")));
        assertEquals("direct", direct.mqttPassword);
    }

    @Test
    void errorsAreOneLineNamingTheVariable() {
        Map<String, String> cases = new LinkedHashMap<>();
        cases.put("MQTT_PORT=abc", "MQTT_PORT must be a whole number, got 'abc'");
        cases.put("MQTT_PORT=0", "MQTT_PORT must be between 1 and 65535, got '0'");
        cases.put("MQTT_PORT=70000", "MQTT_PORT must be between 1 and 65535, got '70000'");
        cases.put("MQTT_KEEPALIVE=0", "MQTT_KEEPALIVE must be between 1 and 3600, got '0'");
        cases.put("TOPIC_PREFIX=a/#", "TOPIC_PREFIX: invalid topic prefix 'a/#'");
        cases.put("TOPIC_PREFIX=a/", "TOPIC_PREFIX: invalid topic prefix 'a/'");
        cases.put("MQTT_TLS_CA=/nonexistent/ca", "MQTT_TLS_CA: no such file /nonexistent/ca");
        cases.put("GRPC_TLS_CA=/nonexistent/ca", "GRPC_TLS_CA: no such file /nonexistent/ca");
        cases.put("MQTT_PASSWORD_FILE=/nonexist", "MQTT_PASSWORD_FILE: cannot read /nonexist (No such file or directory)");
        cases.put("WORKER_ID=a/b", "WORKER_ID must be letters, digits and _.:- (at most 128), got 'a/b'");
        cases.put("WORKER_ID=" + "a".repeat(129),
            "WORKER_ID must be letters, digits and _.:- (at most 128), got '" + "a".repeat(129) + "'");
        cases.put("WORK_SECONDS=ten", "WORK_SECONDS must be a number, got 'ten'");
        cases.put("WORK_SECONDS=-1", "WORK_SECONDS must be a finite number >= 0, got '-1'");
        cases.put("WORK_SECONDS=inf", "WORK_SECONDS must be a finite number >= 0, got 'inf'");
        cases.put("WORK_SECONDS=nan", "WORK_SECONDS must be a finite number >= 0, got 'nan'");
        cases.put("WORK_SECONDS=0x10", "WORK_SECONDS must be a number, got '0x10'");
        cases.put("WORK_SECONDS=1d", "WORK_SECONDS must be a number, got '1d'");
        cases.put("GEMINI_TIMEOUT_SECONDS=0", "GEMINI_TIMEOUT_SECONDS must be a finite number >= 0.001, got '0'");
        cases.put("MODEL_MODE=cloud", "MODEL_MODE must be one of auto, gemini, offline, got 'cloud'");
        cases.put("EVENT_LOOP=tokio", "EVENT_LOOP must be one of auto, uvloop, asyncio, got 'tokio'");
        cases.put("RESULT_STREAM=maybe", "RESULT_STREAM: expected a boolean (true/false), got 'maybe'");
        cases.put("GRPC_RETRIES=-1", "GRPC_RETRIES must be >= 0, got '-1'");
        cases.put("GRPC_RETRIES=1.5", "GRPC_RETRIES must be a whole number, got '1.5'");
        cases.put("OFFLINE_LATENCY_SD_MS=3", "OFFLINE_LATENCY_SD_MS > 0 needs OFFLINE_LATENCY_MS > 0");
        cases.put("LOG_LEVEL=loud", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'");
        cases.forEach((assignment, want) -> {
            String[] kv = assignment.split("=", 2);
            BadSetting e = assertThrows(BadSetting.class, () -> Settings.fromEnv(Env.of(Map.of(kv[0], kv[1]))),
                assignment);
            assertEquals(want, e.getMessage(), assignment);
            assertFalse(e.getMessage().contains("\n"));
        });
    }

    /**
     * The original system's MQTT_BROKER stands for MQTT_HOST and MQTT_PORT when they are unset (our own
     * variables win; a port inside MQTT_BROKER beats the default): the Go worker's TestMQTTBroker.
     */
    @Test
    void mqttBrokerStandsForHostAndPort() throws BadSetting {
        Object[][] cases = {
            {Map.of("MQTT_BROKER", "mosquitto"), "mosquitto", 1883},
            {Map.of("MQTT_BROKER", "mosquitto:1884"), "mosquitto", 1884},
            {Map.of("MQTT_BROKER", "mqtt://mosquitto"), "mosquitto", 1883},
            {Map.of("MQTT_BROKER", " MQTT://10.0.0.7:1885 "), "10.0.0.7", 1885},
            {Map.of("MQTT_BROKER", "mqtt://mosquitto:1884", "MQTT_HOST", "broker"), "broker", 1884},
            {Map.of("MQTT_BROKER", "mqtt://mosquitto:1884", "MQTT_PORT", "1999"), "mosquitto", 1999},
            {Map.of("MQTT_BROKER", "mosquitto", "MQTT_PORT", "1999"), "mosquitto", 1999},
            {Map.of("MQTT_BROKER", "", "MQTT_HOST", ""), "127.0.0.1", 1883},
        };
        for (Object[] c : cases) {
            @SuppressWarnings("unchecked")
            Settings s = Settings.fromEnv(Env.of((Map<String, String>) c[0]));
            assertEquals(c[1], s.mqttHost, c[0].toString());
            assertEquals(c[2], s.mqttPort, c[0].toString());
        }
        for (String bad : new String[] {
            "http://x", "mqtt://:99999", "mqtt://x:0", "mqtt://x:70000", "mqtt://x/", "x:y", "u@x", "mqtts://x", "mqtt://"}) {
            String want = "MQTT_BROKER must be host, host:port or mqtt://host[:port], got '" + bad + "'";
            for (Map<String, String> env : java.util.List.of(
                Map.of("MQTT_BROKER", bad), Map.of("MQTT_BROKER", bad, "MQTT_HOST", "h", "MQTT_PORT", "1"))) {
                BadSetting e = assertThrows(BadSetting.class, () -> Settings.fromEnv(Env.of(env)), bad);
                assertEquals(want, e.getMessage());
            }
        }
    }

    @Test
    void numbersAsPythonReadsThem() throws BadSetting {
        Map<String, Double> cases = Map.of("1e3", 1000.0, "1_000", 1000.0, ".5", 0.5, "5.", 5.0, "+2", 2.0, " 3 ", 3.0);
        for (var c : cases.entrySet()) {
            assertEquals(c.getValue(), Settings.fromEnv(Env.of(Map.of("WORK_SECONDS", c.getKey()))).workSeconds,
                c.getKey());
        }
    }

    @Test
    void apiKey(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("key");
        Files.writeString(file, "\n from-file \n");
        Path empty = dir.resolve("empty");
        Files.writeString(empty, "");
        assertEquals("direct", Settings.loadApiKey(" direct ", file.toString()));
        assertEquals("from-file", Settings.loadApiKey("", file.toString()));
        assertEquals("", Settings.loadApiKey("", ""));
        assertEquals("", Settings.loadApiKey("", empty.toString()));
        BadSetting e = assertThrows(BadSetting.class, () -> Settings.loadApiKey("", "/nonexistent/key"));
        assertEquals("cannot read GEMINI_API_KEY_FILE '/nonexistent/key': No such file or directory", e.getMessage());
    }
}
