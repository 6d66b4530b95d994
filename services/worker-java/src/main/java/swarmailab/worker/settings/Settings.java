package swarmailab.worker.settings;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import swarmailab.worker.protocol.Topics;
import swarmailab.worker.protocol.WorkerIds;

/**
 * Everything the worker can be told, read from the environment with the Python worker's variables, defaults
 * and messages (services/worker/settings.py and services/envconfig.py). The password and key are never logged.
 */
public final class Settings {
    /** This worker's language, the first part of its id. */
    public static final String LANGUAGE = "java";
    public static final String DEFAULT_GEMINI_MODEL = "gemini-flash-latest";
    public static final String DEFAULT_HEALTH_FILE = "/tmp/swarm-ai-lab-worker.health";

    static final List<String> MODEL_MODES = List.of("auto", "gemini", "offline");
    // EVENT_LOOP means nothing to a Java worker; it is read (and checked) so one environment serves every worker.
    static final List<String> LOOP_CHOICES = List.of("auto", "uvloop", "asyncio");
    static final List<String> LOG_LEVELS =
        List.of("CRITICAL", "FATAL", "ERROR", "WARNING", "WARN", "INFO", "DEBUG", "NOTSET");

    public String mqttHost;
    public int mqttPort;
    public String topicPrefix;
    public String mqttUsername;
    public String mqttPassword;
    public String mqttTlsCa;
    public int mqttKeepalive;
    public String logLevel;
    public String eventLoop;

    public String workerId;
    public double workSeconds;
    public String modelMode;
    public String geminiApiKey;
    public String geminiApiKeyFile;
    public String geminiModel;
    public String geminiBaseUrl;
    public double geminiTimeoutSeconds;
    public double offlineLatencyMs;
    public double offlineLatencySdMs;
    public int grpcRetries;
    public boolean resultStream;
    public String grpcTlsCa;
    public String healthFile;

    /** Reads every setting, in the Python worker's order; the first bad one is the error. */
    public static Settings fromEnv(Env e) throws BadSetting {
        Settings s = new Settings();
        // The original's MQTT_BROKER stands for MQTT_HOST and MQTT_PORT when they are unset (checked even then).
        Env.Broker broker = e.mqttBroker();
        s.mqttHost = e.text("MQTT_HOST", broker != null ? broker.host() : "127.0.0.1");
        s.mqttPort = e.raw("MQTT_PORT").isEmpty() && broker != null && broker.port() != 0
            ? broker.port()
            : e.integer("MQTT_PORT", 1883, 1, 65535);
        s.topicPrefix = e.text("TOPIC_PREFIX", Topics.DEFAULT_PREFIX);
        String prefixProblem = Topics.checkPrefix(s.topicPrefix);
        if (prefixProblem != null) {
            throw new BadSetting("TOPIC_PREFIX: " + prefixProblem);
        }
        s.mqttUsername = e.raw("MQTT_USERNAME");
        s.mqttPassword = e.secret("MQTT_PASSWORD");
        s.mqttTlsCa = e.existingFile("MQTT_TLS_CA");
        s.mqttKeepalive = e.integer("MQTT_KEEPALIVE", 5, 1, 3600);
        s.logLevel = e.text("LOG_LEVEL", "INFO").toUpperCase(java.util.Locale.ROOT);
        if (!LOG_LEVELS.contains(s.logLevel) && !s.logLevel.matches("-?\\d+")) {
            throw new BadSetting("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got "
                + PyText.repr(s.logLevel));
        }
        s.eventLoop = e.choice("EVENT_LOOP", "auto", LOOP_CHOICES);

        s.workerId = e.text("WORKER_ID", "");
        if (s.workerId.isEmpty()) {
            s.workerId = WorkerIds.make(LANGUAGE);
        } else if (!WorkerIds.valid(s.workerId)) {
            throw new BadSetting("WORKER_ID must be letters, digits and _.:- (at most 128), got "
                + PyText.repr(s.workerId));
        }
        s.workSeconds = e.number("WORK_SECONDS", 10.0, 0);
        s.modelMode = e.choice("MODEL_MODE", "auto", MODEL_MODES);
        s.geminiApiKey = e.raw("GEMINI_API_KEY");
        s.geminiApiKeyFile = e.raw("GEMINI_API_KEY_FILE");
        s.geminiModel = e.text("GEMINI_MODEL", DEFAULT_GEMINI_MODEL);
        s.geminiBaseUrl = e.raw("GEMINI_BASE_URL");
        s.geminiTimeoutSeconds = e.number("GEMINI_TIMEOUT_SECONDS", 30.0, 0.001);
        s.offlineLatencyMs = e.number("OFFLINE_LATENCY_MS", 0, 0);
        s.offlineLatencySdMs = e.number("OFFLINE_LATENCY_SD_MS", 0, 0);
        if (s.offlineLatencySdMs > 0 && s.offlineLatencyMs == 0) {
            throw new BadSetting("OFFLINE_LATENCY_SD_MS > 0 needs OFFLINE_LATENCY_MS > 0");
        }
        s.grpcRetries = e.integer("GRPC_RETRIES", 6, 0, null);
        s.resultStream = e.bool("RESULT_STREAM", true);
        s.grpcTlsCa = e.existingFile("GRPC_TLS_CA");
        s.healthFile = e.text("HEALTH_FILE", DEFAULT_HEALTH_FILE);
        return s;
    }

    /**
     * The longest a task may take here (simulated work plus the model's timeout), which the master sizes its
     * lease on; rounded half to even as Python's round().
     */
    public long maxTaskMs() {
        return (long) Math.rint((workSeconds + geminiTimeoutSeconds) * 1000);
    }

    /**
     * GEMINI_API_KEY if set, else the stripped content of GEMINI_API_KEY_FILE, else "" (an empty file means no
     * key). The error names the file and the reason, never the content.
     */
    public static String loadApiKey(String envKey, String keyFile) throws BadSetting {
        String key = PyText.strip(envKey == null ? "" : envKey);
        if (!key.isEmpty()) {
            return key;
        }
        if (keyFile == null || keyFile.isEmpty()) {
            return "";
        }
        try {
            return PyText.strip(Files.readString(Path.of(keyFile), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new BadSetting("cannot read GEMINI_API_KEY_FILE " + PyText.repr(keyFile) + ": " + Strerror.of(e));
        }
    }
}
