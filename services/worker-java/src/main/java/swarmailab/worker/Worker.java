package swarmailab.worker;

import java.io.IOException;
import java.security.GeneralSecurityException;
import java.util.concurrent.CountDownLatch;
import org.eclipse.paho.client.mqttv3.MqttException;
import swarmailab.worker.callback.ResultSender;
import swarmailab.worker.health.Heartbeat;
import swarmailab.worker.logging.Log;
import swarmailab.worker.models.GeminiModel;
import swarmailab.worker.models.ModelRouter;
import swarmailab.worker.models.OfflineModel;
import swarmailab.worker.runner.Runner;
import swarmailab.worker.settings.BadSetting;
import swarmailab.worker.settings.PyText;
import swarmailab.worker.settings.Settings;

/** One running worker put together from its settings: the model, the result sender, the runner, the heartbeat. */
public final class Worker {
    /** Bounds the goodbye: the work thread's stop, then the offline status. */
    static final long STOP_TIMEOUT_MS = 2000;
    private static final long GEMINI_PRELOAD_DELAY_MS = 1500;

    private final Settings settings;
    private final Runner runner;
    private final Heartbeat heartbeat;
    private final CountDownLatch stop = new CountDownLatch(1);

    /** Builds the worker; a BadSetting names what in the settings cannot be used (a key file, a CA). */
    public Worker(Settings s) throws BadSetting {
        this.settings = s;
        String key = Settings.loadApiKey(s.geminiApiKey, s.geminiApiKeyFile);
        ResultSender sender;
        try {
            sender = new ResultSender(s.grpcRetries, s.grpcTlsCa, s.resultStream);
        } catch (IOException | IllegalArgumentException e) {
            throw new BadSetting("GRPC_TLS_CA: cannot use " + s.grpcTlsCa + ": " + e.getMessage());
        }
        ModelRouter router = new ModelRouter(s.modelMode,
            () -> new GeminiModel(s.geminiModel, s.geminiBaseUrl, s.geminiTimeoutSeconds),
            new OfflineModel(s.offlineLatencyMs, s.offlineLatencySdMs), key);
        try {
            runner = new Runner(s, router, sender);
        } catch (IOException | GeneralSecurityException e) {
            throw new BadSetting("MQTT_TLS_CA: cannot use " + s.mqttTlsCa + ": " + e.getMessage());
        } catch (MqttException | IllegalArgumentException e) {
            throw new BadSetting("MQTT_HOST: cannot use " + PyText.repr(s.mqttHost) + ": " + e.getMessage());
        }
        if (router.mayUseGemini()) {
            // Load the SDK's classes once registered, beside the work thread, not before: the worker takes tasks
            // sooner, and the first Gemini task does not pay for the loading.
            runner.onConnected(this::preloadGeminiOnce);
        }
        heartbeat = new Heartbeat(s.healthFile, s.workerId, runner::connected);
    }

    private final java.util.concurrent.atomic.AtomicBoolean geminiPreloaded =
        new java.util.concurrent.atomic.AtomicBoolean();

    private void preloadGeminiOnce() {
        if (!geminiPreloaded.getAndSet(true)) {
            preloadGemini();
        }
    }

    private static void preloadGemini() {
        Thread t = new Thread(() -> {
            try {
                // A while after the connect: the SDK's classes (Jackson, OkHttp, Kotlin) take hundreds of ms
                // of CPU, which a first, offline task should not have to share on a small machine.
                Thread.sleep(GEMINI_PRELOAD_DELAY_MS);
                GeminiModel.preload();
            } catch (InterruptedException e) {
                return;
            } catch (RuntimeException | LinkageError e) {
                Log.debug("could not preload the Gemini SDK: " + e);
            }
        }, "gemini-preload");
        t.setDaemon(true);
        t.start();
    }

    /** Connects, starts working and beating; returns at once. */
    public void start() {
        runner.start();
        heartbeat.start();
        Log.info("worker " + settings.workerId + " up (model mode " + settings.modelMode + ", "
            + PyText.floatRepr(settings.workSeconds) + " s of simulated work)");
    }

    /** Asks the worker to stop (from a signal handler: returns at once). */
    public void requestStop() {
        stop.countDown();
    }

    /** Waits for requestStop, then stops: the heartbeat file goes, the task in progress stops, the goodbye. */
    public void awaitAndStop() {
        try {
            stop.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        heartbeat.close();
        runner.stop(STOP_TIMEOUT_MS);
        Log.info("worker " + settings.workerId + " stopped");
    }
}
