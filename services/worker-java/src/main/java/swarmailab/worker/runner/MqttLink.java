package swarmailab.worker.runner;

import java.io.IOException;
import java.security.GeneralSecurityException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.eclipse.paho.client.mqttv3.IMqttActionListener;
import org.eclipse.paho.client.mqttv3.IMqttDeliveryToken;
import org.eclipse.paho.client.mqttv3.IMqttToken;
import org.eclipse.paho.client.mqttv3.MqttAsyncClient;
import org.eclipse.paho.client.mqttv3.MqttCallbackExtended;
import org.eclipse.paho.client.mqttv3.MqttConnectOptions;
import org.eclipse.paho.client.mqttv3.MqttException;
import org.eclipse.paho.client.mqttv3.MqttMessage;
import org.eclipse.paho.client.mqttv3.ScheduledExecutorPingSender;
import org.eclipse.paho.client.mqttv3.persist.MemoryPersistence;
import swarmailab.worker.logging.Log;
import swarmailab.worker.settings.Settings;

/**
 * The worker's MQTT connection (Paho mqttv3): a persistent session whose client id is the worker id, a Last
 * Will, QoS 1, and reconnection with backoff — also when the very first connect fails, which Paho's automatic
 * reconnect does not cover. Once {@link #close()} has begun nothing more is published.
 */
final class MqttLink {
    /** What the worker does with the connection. Called on Paho's threads: must not block. */
    interface Handler {
        void connected();

        void message(String topic, byte[] payload);
    }

    private static final long FIRST_RETRY_MS = 500;
    private static final long MAX_RETRY_MS = 10_000;

    private final MqttAsyncClient client;
    private final MqttConnectOptions options;
    private final Handler handler;
    private final ScheduledExecutorService retries = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "mqtt-connect");
        t.setDaemon(true);
        return t;
    });
    private final PahoExecutor threads = new PahoExecutor();
    private final Object gate = new Object(); // publishes and the goodbye pass here, in order
    private boolean closing;
    private long retryMs = FIRST_RETRY_MS;

    MqttLink(Settings s, String willTopic, byte[] will, Handler handler)
        throws MqttException, IOException, GeneralSecurityException {
        this.handler = handler;
        boolean tls = !s.mqttTlsCa.isEmpty();
        String host = s.mqttHost.contains(":") ? "[" + s.mqttHost + "]" : s.mqttHost;
        String uri = (tls ? "ssl://" : "tcp://") + host + ":" + s.mqttPort;
        // MemoryPersistence: the default one writes files into the working directory.
        long start = System.nanoTime();
        client = new MqttAsyncClient(uri, s.workerId, new MemoryPersistence(),
            new ScheduledExecutorPingSender(threads), threads);
        Log.debug("MQTT client made in " + (System.nanoTime() - start) / 1_000_000 + " ms");
        options = new MqttConnectOptions();
        options.setMqttVersion(MqttConnectOptions.MQTT_VERSION_3_1_1);
        options.setCleanSession(false); // the broker keeps our task messages while we reconnect
        options.setWill(willTopic, will, 1, false);
        options.setKeepAliveInterval(s.mqttKeepalive);
        options.setConnectionTimeout(10);
        options.setAutomaticReconnect(true);
        options.setMaxReconnectDelay((int) MAX_RETRY_MS);
        options.setMaxInflight(1000); // Paho's default (10) would refuse publishes during a burst
        if (!s.mqttUsername.isEmpty()) {
            options.setUserName(s.mqttUsername);
            options.setPassword(s.mqttPassword.toCharArray());
        }
        if (tls) {
            options.setSocketFactory(NoDelaySockets.tls(TlsContexts.trusting(s.mqttTlsCa)));
            options.setHttpsHostnameVerificationEnabled(true); // verify the broker's host name too
        } else {
            options.setSocketFactory(NoDelaySockets.plain());
        }
        client.setCallback(new Callback());
    }

    /** Connects in the background, retrying until it succeeds. */
    void start() {
        connect();
    }

    private void connect() {
        synchronized (gate) {
            if (closing) {
                return;
            }
        }
        try {
            client.connect(options, null, new IMqttActionListener() {
                @Override
                public void onSuccess(IMqttToken token) {
                    retryMs = FIRST_RETRY_MS;
                }

                @Override
                public void onFailure(IMqttToken token, Throwable e) {
                    retryLater("MQTT connection refused or failed (" + reason(e) + "); retrying");
                }
            });
        } catch (MqttException e) {
            retryLater("MQTT connection refused or failed (" + reason(e) + "); retrying");
        }
    }

    private void retryLater(String why) {
        Log.warning(why);
        long delay = retryMs;
        retryMs = Math.min(MAX_RETRY_MS, retryMs * 2);
        retries.schedule(this::connect, delay, TimeUnit.MILLISECONDS);
    }

    private static String reason(Throwable e) {
        Throwable cause = e.getCause() != null ? e.getCause() : e;
        return cause.getMessage() != null ? cause.getMessage() : cause.getClass().getSimpleName();
    }

    boolean isConnected() {
        return client.isConnected();
    }

    /** Subscribes (QoS 1) and then runs next, without blocking the calling (Paho's) thread. */
    void subscribe(String[] topics, Runnable next) {
        int[] qos = new int[topics.length];
        java.util.Arrays.fill(qos, 1);
        try {
            client.subscribe(topics, qos, null, new IMqttActionListener() {
                @Override
                public void onSuccess(IMqttToken token) {
                    next.run();
                }

                @Override
                public void onFailure(IMqttToken token, Throwable e) {
                    Log.warning("could not subscribe: " + reason(e));
                    next.run();
                }
            });
        } catch (MqttException e) {
            Log.warning("could not subscribe: " + reason(e));
        }
    }

    /** Publishes without waiting for the broker; false once the goodbye is on its way. */
    boolean publish(String topic, byte[] payload, int qos) {
        synchronized (gate) {
            if (closing) {
                return false;
            }
            publishNow(topic, payload, qos);
            return true;
        }
    }

    private IMqttDeliveryToken publishNow(String topic, byte[] payload, int qos) {
        try {
            return client.publish(topic, payload, qos, false);
        } catch (MqttException e) {
            if (qos > 0) {
                if (e.getReasonCode() == MqttException.REASON_CODE_CLIENT_NOT_CONNECTED) {
                    Log.warning("not connected to MQTT: dropped a message for " + topic);
                } else {
                    Log.warning("could not publish on " + topic + ": " + reason(e));
                }
            }
            return null;
        }
    }

    /**
     * Closes the gate (nothing published after this), publishes the last message when connected and waits for
     * the broker to take it, then disconnects.
     */
    void close(String topic, byte[] last, long timeoutMs) {
        IMqttDeliveryToken token;
        synchronized (gate) {
            closing = true;
            token = client.isConnected() ? publishNow(topic, last, 1) : null;
        }
        retries.shutdownNow();
        if (token != null) {
            try {
                token.waitForCompletion(timeoutMs / 2);
            } catch (MqttException e) {
                Log.warning("could not announce going offline: " + reason(e));
            }
        }
        try {
            client.disconnect(250).waitForCompletion(timeoutMs / 2);
        } catch (MqttException e) {
            // going away anyway
        }
        try {
            client.close(true);
        } catch (MqttException e) {
            // going away anyway
        }
        threads.shutdownNow();
    }

    /** Paho's events, on Paho's callback thread. */
    private final class Callback implements MqttCallbackExtended {
        @Override
        public void connectComplete(boolean reconnect, String serverURI) {
            handler.connected();
        }

        @Override
        public void connectionLost(Throwable cause) {
            Log.warning("MQTT connection lost (" + reason(cause) + "); reconnecting");
        }

        @Override
        public void messageArrived(String topic, MqttMessage message) {
            try {
                handler.message(topic, message.getPayload());
            } catch (RuntimeException e) { // one bad message must not take the connection down
                Log.error("error while handling a message on " + topic + ": " + e);
            }
        }

        @Override
        public void deliveryComplete(IMqttDeliveryToken token) {
            // Publishes are fire-and-forget, as in the Python worker.
        }
    }
}
