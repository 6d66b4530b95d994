package swarmailab.worker.runner;

import java.io.IOException;
import java.security.GeneralSecurityException;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import org.eclipse.paho.client.mqttv3.MqttException;
import swarmailab.worker.callback.CallbackException;
import swarmailab.worker.callback.ResultSender;
import swarmailab.worker.logging.Log;
import swarmailab.worker.models.Answer;
import swarmailab.worker.models.Model;
import swarmailab.worker.models.ModelError;
import swarmailab.worker.models.Sleeper;
import swarmailab.worker.protocol.DecodeException;
import swarmailab.worker.protocol.MasterEpochs;
import swarmailab.worker.protocol.MasterPresence;
import swarmailab.worker.protocol.Messages;
import swarmailab.worker.protocol.TaskMessage;
import swarmailab.worker.protocol.Topics;
import swarmailab.worker.settings.Settings;
import worker.Worker.ResultAck;
import worker.Worker.TaskResult;

/**
 * The worker's life (services/worker/runner.py): stay connected, register, take tasks one at a time on a thread
 * of its own (never Paho's), answer, report; and on stop, stop the task, then say goodbye, then nothing.
 */
public final class Runner {
    private final Settings settings;
    private final String workerId;
    private final Topics topics;
    private final Model model;
    private final ResultSender sender;
    private final long maxTaskMs;
    private final MqttLink mqtt;
    private final BlockingQueue<TaskMessage> tasks = new LinkedBlockingQueue<>();
    private final Thread work;
    // Set once the connection has subscribed and registered (the heartbeat's "connected" needs both).
    private volatile boolean registered;
    private volatile Runnable onConnected = () -> { };

    private final Object state = new Object();
    private boolean busy;
    private TaskMessage current; // the task being worked on
    private Long masterStarted; // the timestamp of the master presence we last saw
    private final MasterEpochs masterEpochs = new MasterEpochs(); // a presence with a lower epoch is ignored
    private boolean lean; // the master's presence said it needs no per-task messages

    public Runner(Settings settings, Model model, ResultSender sender)
        throws MqttException, IOException, GeneralSecurityException {
        this.settings = settings;
        this.workerId = settings.workerId;
        this.topics = new Topics(settings.topicPrefix);
        this.model = model;
        this.sender = sender;
        this.maxTaskMs = settings.maxTaskMs();
        byte[] will = Messages.status(workerId, "offline", null, null, null);
        this.mqtt = new MqttLink(settings, topics.status(), will, new MqttLink.Handler() {
            @Override
            public void connected() {
                onConnect();
            }

            @Override
            public void message(String topic, byte[] payload) {
                onMessage(topic, payload);
            }
        });
        this.work = new Thread(this::workLoop, "work");
    }

    /** Runs r (once per connection) after the worker has registered; must not block. */
    public void onConnected(Runnable r) {
        onConnected = r;
    }

    /** Starts the work thread and connects (retrying in the background until it succeeds). */
    public void start() {
        work.start();
        mqtt.start();
    }

    /** Whether the worker is connected to the broker and has registered. */
    public boolean connected() {
        return registered && mqtt.isConnected();
    }

    private void onConnect() {
        mqtt.subscribe(new String[] {topics.tasks(workerId), topics.masterStatus()}, () -> {
            register();
            registered = true;
            onConnected.run();
        });
    }

    /** Announces this worker; a worker in the middle of a task says so right after. */
    private void register() {
        boolean leanNow;
        synchronized (state) {
            leanNow = lean;
        }
        byte[] message = Messages.register(workerId, Settings.LANGUAGE, Messages.nowMs(), maxTaskMs, leanNow);
        if (!mqtt.publish(topics.register(), message, 1)) {
            return;
        }
        TaskMessage doing;
        synchronized (state) {
            doing = busy ? current : null;
        }
        if (doing != null) {
            publishStatus("busy", doing);
        }
        Log.info("registered as " + workerId);
    }

    private void onMessage(String topic, byte[] payload) {
        if (topic.equals(topics.masterStatus())) {
            MasterPresence presence;
            try {
                presence = MasterPresence.decode(payload);
            } catch (DecodeException e) {
                Log.warning("ignored a bad message on " + topic + ": " + e.getMessage());
                return;
            }
            boolean fresh;
            synchronized (state) {
                if (masterEpochs.deposed(presence)) {
                    Log.info("ignored the " + presence.status() + " presence of a deposed master (epoch "
                        + presence.epoch() + " < " + masterEpochs.highest() + ")");
                    return;
                }
                fresh = presence.status().equals("online") && !java.util.Objects.equals(presence.timestamp(),
                    masterStarted);
                if (fresh) {
                    masterStarted = presence.timestamp();
                    lean = presence.lean();
                }
            }
            // Every master we see for the first time learns about us at once: a restarted one, and also the
            // first, when we started before it and our registration reached nobody.
            if (fresh) {
                register();
                if (!presence.grpcEndpoint().isEmpty()) {
                    sender.prepareInBackground(presence.grpcEndpoint());
                }
            }
            return;
        }
        if (!topic.equals(topics.tasks(workerId))) {
            return;
        }
        TaskMessage task;
        try {
            task = TaskMessage.decode(payload);
        } catch (DecodeException e) {
            Log.warning("ignored a bad message on " + topic + ": " + e.getMessage());
            return;
        }
        if (!task.workerId().equals(workerId)) {
            Log.warning("ignored a task addressed to " + task.workerId());
            return;
        }
        tasks.add(task);
    }

    private void publishStatus(String status, TaskMessage task) {
        mqtt.publish(topics.status(), Messages.status(workerId, status, Messages.nowMs(),
            task == null ? null : task.taskId(), task == null ? null : task.attempt()), 1);
    }

    private void logLine(String text) {
        Log.info(text);
        mqtt.publish(topics.logs(), Messages.log(Messages.nowMs(), workerId, text), 0);
    }

    /** A routine line about one task: on the log topic only when the master wants those. */
    private void taskLine(String text) {
        boolean leanNow;
        synchronized (state) {
            leanNow = lean;
        }
        if (leanNow) {
            Log.info(text);
        } else {
            logLine(text);
        }
    }

    /** Takes tasks one at a time; the model and the simulated work run here. */
    private void workLoop() {
        while (true) {
            TaskMessage task;
            try {
                task = tasks.take();
            } catch (InterruptedException e) {
                return;
            }
            boolean leanTask; // for the whole task: a presence arriving meanwhile changes the next one
            synchronized (state) {
                busy = true;
                current = task;
                leanTask = lean;
            }
            if (!leanTask) {
                publishStatus("busy", task);
            }
            boolean stopped = false;
            boolean accepted = false;
            try {
                ResultAck ack = process(task);
                accepted = ack != null && ack.getSuccess();
            } catch (InterruptedException e) {
                stopped = true; // stopping: no result; our "idle" gives the task back to the master at once
            } catch (RuntimeException e) {
                Log.error("unexpected error on task " + task.label() + ": " + e);
            }
            synchronized (state) {
                busy = false;
            }
            // Even with the next task already here: "idle with task X" says X is finished. A lean master knows
            // it from the accepted result, and needs it only when the result did not get through.
            if (!leanTask || !accepted) {
                publishStatus("idle", task);
            }
            if (stopped || Thread.currentThread().isInterrupted()) {
                return;
            }
        }
    }

    /** Answers one task and reports it; returns the master's acknowledgement, or null when it was not taken. */
    ResultAck process(TaskMessage task) throws InterruptedException {
        String label = task.label();
        long attempt = task.attempt() == null ? 0 : task.attempt();
        taskLine("task " + label + " started (attempt " + (attempt == 0 ? 1 : attempt) + ")");
        long startedWall = Messages.nowMs();
        long started = System.nanoTime();
        sender.prepare(task.grpcEndpoint());
        Log.debug("task " + label + ": result channel ready after " + Sleeper.roundMs(System.nanoTime() - started)
            + " ms");
        String text = "";
        String error = "";
        String modelName = "";
        long modelMs = 0;
        try {
            Answer answer = model.answer(task.query(), task.apiKey(), task.model());
            text = answer.text();
            modelName = answer.model();
            modelMs = answer.elapsedMs();
            Sleeper.sleepAtLeast(settings.workSeconds); // the simulated long processing
        } catch (ModelError e) {
            error = e.getMessage();
        }
        long processingMs = Sleeper.roundMs(System.nanoTime() - started);
        Log.debug("task " + label + ": answered after " + processingMs + " ms");
        TaskResult result = TaskResult.newBuilder()
            .setWorkerId(workerId)
            .setSessionId(task.sessionId())
            .setOriginalQuery(task.query())
            .setAiResponse(text)
            .setApiKey("") // keys are never echoed
            .setProcessingTimeMs(processingMs)
            .setQueryTimestamp(task.timestamp())
            .setCompletionTimestamp(Messages.nowMs())
            .setTaskId(task.taskId() == null ? "" : task.taskId())
            .setAttempt((int) attempt)
            .setToken(task.token() == null ? "" : task.token())
            .setError(error)
            .setModel(modelName)
            .setStartedTimestamp(startedWall)
            .setModelTimeMs(modelMs)
            .build();
        ResultAck ack;
        try {
            ack = sender.send(task.grpcEndpoint(), result);
        } catch (CallbackException e) {
            logLine("task " + label + ": " + e.getMessage());
            return null;
        }
        if (ack.getSuccess()) {
            taskLine("task " + label + " " + (error.isEmpty() ? "done" : "failed") + " in " + processingMs + " ms");
        } else {
            logLine("task " + label + " result refused by the master: " + ack.getMessage());
        }
        return ack;
    }

    /**
     * Says goodbye before a clean shutdown (a clean disconnect does not fire the Last Will): stop the work first
     * (a task in progress reports "idle" without a result, so the master gives it to another worker at once),
     * then the goodbye, then nothing more — the gate in MqttLink drops anything a late thread still publishes.
     */
    public void stop(long timeoutMs) {
        work.interrupt();
        try {
            work.join(timeoutMs / 2);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (work.isAlive()) {
            Log.warning("the task in progress did not stop in time");
        }
        registered = false;
        mqtt.close(topics.status(), Messages.status(workerId, "offline", Messages.nowMs(), null, null), timeoutMs);
        sender.close();
    }
}
